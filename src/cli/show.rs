//! `kindsnap show SNAP`

use std::process::ExitCode;

use kindsnap::ops;
use kindsnap::repo::index::Index;
use kindsnap::repo::manifest::Manifest;

use super::output::{bytes, table, time};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap show latest
  kindsnap show latest~1 --json")]
pub struct Args {
    /// Snapshot: a name, an id prefix, `latest`, `latest~N`, or `@DATE`
    /// (the newest taken at or before 2026-11-20 or 2026-11-20T06:00:00Z).
    snapshot: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let info = ops::find_snapshot(&repo, &args.snapshot)?;
    let m = Manifest::open(&repo, &info.id)?;
    let index = Index::open(&repo.index_path(), false)?;
    let mut kinds = Vec::new();
    for k in m.kinds()? {
        if k.entities == 0 {
            continue;
        }
        // Stored size is estimated from the kind's compression ratio.
        let st = index.kind_storage(&k.namespace, &k.kind)?;
        let stored = if st.raw_bytes > 0 {
            (k.raw_bytes as f64 * st.size as f64 / st.raw_bytes as f64) as u64
        } else {
            0
        };
        kinds.push((k, stored));
    }
    let mut out = Out::new();
    if args.json {
        out.json(&serde_json::json!({
            "id": info.id.to_hex(),
            "name": info.name,
            "time": kindsnap::model::json::format_timestamp(info.time_us),
            "source": info.source,
            "parent": info.parent.map(|p| p.to_hex()),
            "keyframe": info.keyframe,
            "entities": info.entities,
            "kinds": kinds.iter().map(|(k, stored)| serde_json::json!({
                "namespace": k.namespace, "kind": k.kind, "entities": k.entities,
                "raw_bytes": k.raw_bytes, "stored_bytes": stored,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        out.line(format!("snapshot {}  {}", info.name, info.id))?;
        out.line(format!("time     {} UTC", time(info.time_us)))?;
        out.line(format!("source   {}", info.source))?;
        match info.parent {
            Some(p) => out.line(format!(
                "parent   {}{}",
                p.short(),
                if info.keyframe {
                    " (stored in full)"
                } else {
                    ""
                }
            ))?,
            None => out.line("parent   none")?,
        }
        let mut rows = vec![vec![
            "namespace".to_string(),
            "kind".into(),
            "entities".into(),
            "raw bytes".into(),
            "stored (est.)".into(),
        ]];
        for (k, stored) in &kinds {
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
                bytes(*stored),
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
