//! `kindsnap log`

use std::process::ExitCode;

use kindsnap::ops;

use super::output::{bytes, table, time};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap log
  kindsnap log --json | jq -r '.[0].id'")]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let log = ops::read::log(&repo)?;
    let mut out = Out::new();
    if args.json {
        out.json(&serde_json::to_value(&log.snapshots)?)?;
    } else if log.snapshots.is_empty() {
        out.line("no snapshots yet; `kindsnap snapshot --from SOURCE` takes one")?;
    } else {
        let mut rows = vec![vec![
            "id".to_string(),
            "name".into(),
            "time".into(),
            "source".into(),
            "entities".into(),
            "added".into(),
        ]];
        for s in &log.snapshots {
            rows.push(vec![
                s.id[..8].to_string(),
                s.name.clone(),
                time(s.time_us),
                s.source.clone(),
                s.entities.to_string(),
                bytes(s.bytes_added),
            ]);
        }
        for l in table(&rows, 4) {
            out.line(l)?;
        }
    }
    out.flush()?;
    for u in &log.unreadable {
        eprintln!(
            "kindsnap: warning: snapshot {} cannot be read: {}",
            &u.id[..8],
            super::output::escape(&u.why)
        );
    }
    Ok(ExitCode::SUCCESS)
}
