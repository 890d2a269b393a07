//! `kindsnap stats [SNAP] [--json]`

use std::process::ExitCode;

use kindsnap::ops::stats;

use super::output::{bytes, count, kind_label, table, time_text};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap stats                        the repository: size, dedup ratio, growth
  kindsnap stats latest                 one snapshot, per kind
  kindsnap stats --json | jq .dedup_ratio")]
pub struct Args {
    /// Only this snapshot: a name, an id prefix, `latest` or `latest~N`.
    #[arg(add = super::complete::snap())]
    snapshot: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let mut out = Out::new();
    if let Some(spec) = &args.snapshot {
        let s = stats::snapshot_stats(&repo, spec)?;
        if args.json {
            out.json(&serde_json::to_value(&s)?)?;
        } else if !settings.quiet {
            print_snapshot(&mut out, &s)?;
        }
    } else {
        let s = stats::repo_stats(&repo)?;
        if args.json {
            out.json(&serde_json::to_value(&s)?)?;
        } else if !settings.quiet {
            print_repo(&mut out, &repo.location(), &s, settings.local_time)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn print_snapshot(out: &mut Out, s: &stats::SnapshotStats) -> std::io::Result<()> {
    out.line(format!("snapshot {}  {}", s.name, s.id))?;
    out.line(format!(
        "entities {}, raw {}, stored (est.) {}, {}",
        s.entities,
        bytes(s.raw_bytes),
        bytes(s.stored_bytes_estimate),
        if s.keyframe {
            "keyframe".to_string()
        } else {
            format!("delta {} after its keyframe", s.depth)
        }
    ))?;
    out.line(format!(
        "added packs {}, manifest {}",
        bytes(s.pack_bytes_added),
        bytes(s.manifest_bytes)
    ))?;
    let mut rows = vec![vec![
        "kind".to_string(),
        "entities".into(),
        "raw".into(),
        "stored (est.)".into(),
        "new".into(),
        "changed".into(),
        "removed".into(),
        "added".into(),
    ]];
    for k in &s.kinds {
        rows.push(vec![
            kind_label(&k.namespace, &k.kind),
            k.entities.to_string(),
            bytes(k.raw_bytes),
            bytes(k.stored_bytes_estimate),
            k.added.to_string(),
            k.changed.to_string(),
            k.removed.to_string(),
            bytes(k.bytes_added),
        ]);
    }
    out.line("")?;
    for l in table(&rows, 1) {
        out.line(l)?;
    }
    Ok(())
}

fn print_repo(
    out: &mut Out,
    location: &str,
    s: &stats::RepoStats,
    local: bool,
) -> std::io::Result<()> {
    out.line(format!(
        "repository {}: {}, {} total",
        location,
        count(s.snapshots, "snapshot"),
        bytes(s.total_bytes)
    ))?;
    out.line(format!(
        "  packs      {:>10}  ({})",
        bytes(s.pack_bytes),
        count(s.packs, "file")
    ))?;
    out.line(format!("  index      {:>10}", bytes(s.index_bytes)))?;
    out.line(format!(
        "  manifests  {:>10}  ({})",
        bytes(s.manifest_bytes),
        count(s.manifests, "file")
    ))?;
    out.line(format!(
        "raw bytes of all snapshots {}; deduplication ratio {:.2}x (raw / packs), {:.2}x (raw / total)",
        bytes(s.raw_bytes),
        s.dedup_ratio,
        s.overall_ratio
    ))?;
    out.line("")?;
    let mut rows = vec![vec![
        "snapshot".to_string(),
        "time".into(),
        "entities".into(),
        "raw".into(),
        "added".into(),
    ]];
    for g in &s.growth {
        rows.push(vec![
            g.name.clone(),
            time_text(&g.time, local),
            g.entities.to_string(),
            bytes(g.raw_bytes),
            bytes(g.bytes_added),
        ]);
    }
    for l in table(&rows, 2) {
        out.line(l)?;
    }
    out.line("")?;
    let mut rows = vec![vec![
        "kind".to_string(),
        "packs".into(),
        "pack bytes".into(),
        "added (all snapshots)".into(),
        "entities (newest)".into(),
    ]];
    for k in &s.kinds {
        rows.push(vec![
            kind_label(&k.namespace, &k.kind),
            k.packs.to_string(),
            bytes(k.pack_bytes),
            bytes(k.bytes_added),
            k.latest_entities.to_string(),
        ]);
    }
    for l in table(&rows, 1) {
        out.line(l)?;
    }
    Ok(())
}
