//! `kindsnap log`

use std::process::ExitCode;

use kindsnap::repo::manifest;

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
    let (infos, bad) = manifest::list(&repo)?;
    let mut out = Out::new();
    if args.json {
        let v: Vec<serde_json::Value> = infos
            .iter()
            .rev()
            .map(|i| {
                serde_json::json!({
                    "id": i.id.to_hex(),
                    "name": i.name,
                    "time": kindsnap::model::json::format_timestamp(i.time_us),
                    "source": i.source,
                    "parent": i.parent.map(|p| p.to_hex()),
                    "entities": i.entities,
                    "bytes_added": i.bytes_added + i.manifest_bytes,
                })
            })
            .collect();
        out.json(&serde_json::Value::Array(v))?;
    } else {
        let mut rows = vec![vec![
            "id".to_string(),
            "name".into(),
            "time".into(),
            "source".into(),
            "entities".into(),
            "added".into(),
        ]];
        for i in infos.iter().rev() {
            rows.push(vec![
                i.id.short(),
                i.name.clone(),
                time(i.time_us),
                i.source.clone(),
                i.entities.to_string(),
                bytes(i.bytes_added + i.manifest_bytes),
            ]);
        }
        if infos.is_empty() {
            out.line("no snapshots yet; `kindsnap snapshot --from SOURCE` takes one")?;
        } else {
            for l in table(&rows, 4) {
                out.line(l)?;
            }
        }
    }
    out.flush()?;
    for (id, e) in bad {
        eprintln!(
            "kindsnap: warning: snapshot {} cannot be read: {}",
            id.short(),
            super::output::escape(&e.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}
