//! `kindsnap prune [--dry-run] [--max-unused PERCENT] [--force] [--json]`

use std::process::ExitCode;

use kindsnap::ops::prune::{self, PruneOptions};

use super::output::{bytes, count};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prune takes the repository's exclusive lock: it waits for running \
snapshots, and snapshots started meanwhile wait for it. See docs/retention.md.

Examples:
  kindsnap prune --dry-run              what would be deleted and repacked
  kindsnap prune                        repack packs more than 5% unused
  kindsnap prune --max-unused 20%       repack less, finish sooner"
)]
pub struct Args {
    /// Show what would be deleted and repacked; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Repack a pack when more than this share of it is unused (e.g. 5 or 5%).
    #[arg(long, value_name = "PERCENT", default_value = "5", value_parser = parse_percent)]
    max_unused: f64,
    /// Prune even when `check` finds problems in the repository.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a percentage (e.g. 5 or 5%)"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("`{s}` is not between 0 and 100"));
    }
    Ok(v / 100.0)
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let opts = PruneOptions {
        dry_run: args.dry_run,
        max_unused: args.max_unused,
        force: args.force,
        cancel: settings.cancel.clone(),
    };
    let r = prune::prune(&repo, &opts, &settings.progress())?;
    let mut out = Out::new();
    if args.json {
        out.json(&serde_json::to_value(&r)?)?;
    } else if !settings.quiet {
        let would = if r.dry_run { "would " } else { "" };
        out.line(format!(
            "{} {} {}; {}",
            count(r.snapshots, "snapshot"),
            if r.snapshots == 1 {
                "references"
            } else {
                "reference"
            },
            count(r.live_entities, "entity"),
            count(r.packs_before, "pack")
        ))?;
        out.line(format!(
            "{would}delete {} and {} no index knows; {would}repack {} ({} into {})",
            count(r.packs_deleted, "unused pack"),
            count(r.unindexed_deleted, "pack"),
            count(r.packs_repacked, "pack"),
            count(r.entities_moved, "entity"),
            count(r.packs_written, "new pack")
        ))?;
        if r.leftover_manifests_removed > 0 {
            out.line(format!(
                "removed {} left by an interrupted forget",
                count(r.leftover_manifests_removed, "manifest")
            ))?;
        }
        out.line(format!(
            "repository {} → {}{}: {} {}freed{}",
            bytes(r.bytes_before),
            bytes(r.bytes_after),
            if r.dry_run { " (estimate)" } else { "" },
            bytes(r.bytes_freed),
            if r.dry_run { "would be " } else { "" },
            super::output::took(settings.started)
        ))?;
        if r.unused_bytes_kept > 0 {
            out.line(format!(
                "{} unused left in packs under the --max-unused limit",
                bytes(r.unused_bytes_kept)
            ))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
