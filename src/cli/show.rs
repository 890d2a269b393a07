//! `kindsnap show SNAP`

use std::process::ExitCode;

use kindsnap::ops;

use super::output::{bytes, table, time_at};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap show latest
  kindsnap show latest~1 --json")]
pub struct Args {
    /// Snapshot: a name, an id prefix, `latest`, `latest~N`, or `@DATE`
    /// (the newest taken at or before 2026-11-20 or 2026-11-20T06:00:00Z).
    #[arg(add = super::complete::snap())]
    snapshot: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let r = ops::read::show(&repo, &args.snapshot)?;
    let mut out = Out::new();
    if args.json {
        out.json(&serde_json::to_value(&r)?)?;
    } else {
        out.line(format!("snapshot {}  {}", r.name, r.id))?;
        out.line(format!(
            "time     {}",
            time_at(r.time_us, settings.local_time)
        ))?;
        out.line(format!("source   {}", r.source))?;
        match &r.parent {
            Some(p) => out.line(format!(
                "parent   {}{}",
                &p[..8.min(p.len())],
                if r.keyframe { " (stored in full)" } else { "" }
            ))?,
            None => out.line("parent   none")?,
        }
        if !r.tags.is_empty() {
            out.line(format!(
                "tags     {}",
                super::output::escape(&r.tags.join(", "))
            ))?;
        }
        let mut rows = vec![vec![
            "namespace".to_string(),
            "kind".into(),
            "entities".into(),
            "raw bytes".into(),
            "stored (est.)".into(),
        ]];
        for k in &r.kinds {
            let ns = if k.namespace.is_empty() {
                "(default)".to_string()
            } else {
                k.namespace.clone()
            };
            rows.push(vec![
                ns,
                k.kind.clone(),
                k.entities.to_string(),
                bytes(k.raw_bytes),
                bytes(k.stored_bytes),
            ]);
        }
        out.line("")?;
        for l in table(&rows, 2) {
            out.line(l)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
