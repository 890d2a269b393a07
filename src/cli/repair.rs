//! `kindsnap repair index` and `kindsnap repair snapshots [--dry-run] [--forget]`

use std::process::ExitCode;

use kindsnap::ops::repair::{self, RepairOptions};

use super::output::count;
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "A damaged repository is repaired in two steps, as with restic:
first the index (every body that still reads back is found again, damaged
packs included), then the snapshots (each snapshot that needs a lost body is
rewritten without those entities). See docs/retention.md, \"Repairing a
damaged repository\".

Examples:
  kindsnap check --read-data                  what is damaged, and which snapshots it takes
  kindsnap repair index                       rebuild the index, salvaging damaged packs
  kindsnap repair snapshots --dry-run         which snapshots lose which entities
  kindsnap repair snapshots                   write repaired snapshots beside the originals
  kindsnap repair snapshots --forget          replace the damaged snapshots by their repairs
  kindsnap check --read-data                  passes once every damaged snapshot is replaced"
)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Rebuild the index from the packs, salvaging every intact block of
    /// damaged packs (the same as `check --rebuild-index`, without the check).
    Index,
    /// Rewrite each snapshot that needs a lost body without the entities
    /// whose bodies are lost; the repair keeps the snapshot's name and time.
    Snapshots(SnapshotsArgs),
}

#[derive(Debug, clap::Args)]
struct SnapshotsArgs {
    /// Show which snapshots would lose which entities; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Replace each damaged snapshot by its repair (otherwise the original
    /// stays beside it, under its id).
    #[arg(long)]
    forget: bool,
    /// Read every pack first (as `check --read-data`), to find bodies lost
    /// inside packs the index still lists.
    #[arg(long)]
    read_data: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Index => {
            let repo = settings.open_repo()?;
            super::check::rebuild(&repo, settings)?;
            Ok(ExitCode::SUCCESS)
        }
        What::Snapshots(a) => snapshots(a, settings),
    }
}

fn snapshots(args: SnapshotsArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut repo = settings.open_repo()?;
    let opts = RepairOptions {
        dry_run: args.dry_run,
        forget: args.forget,
        read_data: args.read_data,
    };
    let r = repair::repair_snapshots(&mut repo, &opts, &settings.progress())?;
    let mut out = Out::new();
    if args.json {
        out.json(&serde_json::to_value(&r)?)?;
    } else if !settings.quiet {
        let would = if r.dry_run { "would " } else { "" };
        for s in &r.repaired {
            let kinds = s
                .kinds
                .iter()
                .map(|k| format!("{} {}", k.kind, k.dropped))
                .collect::<Vec<_>>()
                .join(", ");
            // A repair that replaces its original keeps the id.
            let new = s
                .new_id
                .as_deref()
                .filter(|n| *n != s.id)
                .map(|n| format!(" -> {}", &n[..8]))
                .unwrap_or_default();
            out.line(format!(
                "snapshot {} ({}{new}): {would}drop {} ({kinds})",
                s.name,
                &s.id[..8],
                count(s.dropped, "entity")
            ))?;
        }
        for c in &r.cannot {
            out.line(format!(
                "cannot repair snapshot {} ({}): {}",
                c.name,
                &c.id[..8.min(c.id.len())],
                c.why
            ))?;
        }
        if r.repaired.is_empty() && r.cannot.is_empty() {
            out.line(if r.lost_entities == 0 {
                "nothing to repair: every snapshot's entities read back".to_string()
            } else {
                format!(
                    "nothing to repair: no snapshot needs the {} lost",
                    count(r.lost_entities, "entity")
                )
            })?;
        } else if !r.repaired.is_empty() {
            out.line(format!(
                "{would}repair {}; {} lost{}",
                count(r.repaired.len(), "snapshot"),
                count(r.lost_entities, "entity body"),
                if r.forget {
                    format!(
                        "; {would}remove the {}",
                        if r.repaired.len() == 1 {
                            "original"
                        } else {
                            "originals"
                        }
                    )
                } else {
                    "; the originals stay (`--forget` replaces them)".to_string()
                }
            ))?;
        }
    }
    out.flush()?;
    if let Some(first) = r.cannot.first() {
        anyhow::bail!(
            "{} cannot be repaired by dropping entities (first: {} {}: {}); \
             `kindsnap forget` can remove them",
            count(r.cannot.len(), "snapshot"),
            first.name,
            &first.id[..8.min(first.id.len())],
            first.why
        );
    }
    Ok(ExitCode::SUCCESS)
}
