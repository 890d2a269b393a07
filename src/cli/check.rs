//! `kindsnap check [--read-data]`

use std::process::ExitCode;

use super::output::{bytes, count};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap check                        manifests, index and references
  kindsnap check --read-data            also re-hash every stored entity
  kindsnap check --rebuild-index        after the index was lost or damaged")]
pub struct Args {
    /// Also read every pack and re-hash every stored entity.
    #[arg(long)]
    read_data: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Rebuild the index from the packs (re-hashing every body) first.
    #[arg(long)]
    rebuild_index: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    if args.rebuild_index {
        rebuild(&repo, settings)?;
    }
    let report = kindsnap::ops::check::check(&repo, args.read_data, &settings.progress())?;
    let mut out = Out::new();
    if args.json {
        out.json(&serde_json::to_value(&report)?)?;
    } else if !settings.quiet {
        out.line(format!(
            "checked {}, {}{}{}",
            count(report.snapshots, "snapshot"),
            count(report.packs, "pack"),
            if args.read_data {
                format!(
                    ", read {} ({})",
                    count(report.entities_read, "entity"),
                    bytes(report.bytes_read)
                )
            } else {
                String::new()
            },
            super::output::took(settings.started)
        ))?;
        for n in &report.notes {
            out.line(format!("note: {n}"))?;
        }
        for p in &report.problems {
            out.line(format!("damaged: {}", p.problem))?;
            for a in &p.affects {
                out.line(format!("  affects {a}"))?;
            }
        }
        if report.problems.is_empty() {
            out.line("no problems found")?;
        }
    }
    out.flush()?;
    if report.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "kindsnap: check found {}",
            count(report.problems.len(), "problem")
        );
        Ok(ExitCode::from(3))
    }
}

/// `check --rebuild-index` and `repair index`: rebuild, and say what was
/// salvaged from damaged packs.
pub fn rebuild(repo: &kindsnap::repo::Repository, settings: &Settings) -> anyhow::Result<()> {
    let r = kindsnap::ops::check::rebuild_index(repo, &settings.progress())?;
    if !settings.quiet {
        let mut out = Out::new();
        out.line(format!(
            "rebuilt the index: {} in {}",
            count(r.entities, "entity"),
            count(r.packs, "pack")
        ))?;
        for d in &r.damaged {
            out.line(format!(
                "damaged pack {} ({}): salvaged {} from {}{}",
                &d.pack[..8],
                d.why,
                count(d.entities_salvaged, "entity"),
                count(d.blocks_salvaged, "block"),
                if d.had_toc {
                    ""
                } else {
                    " (no table of contents: blocks found by walking the pack)"
                }
            ))?;
        }
        if !r.damaged.is_empty() {
            out.line(format!(
                "salvaged {} from {}; `kindsnap check` lists what is lost",
                count(r.entities_salvaged, "entity"),
                count(r.damaged.len(), "damaged pack")
            ))?;
        }
        out.flush()?;
    }
    Ok(())
}
