//! `kindsnap forget --keep-… | SNAPSHOT… [--dry-run] [--json]`

use std::process::ExitCode;

use kindsnap::ops::forget::{self, ForgetOptions, Policy};

use super::output::{count, table, time_text};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Policies apply per group of snapshots (same source, same --kinds); a \
snapshot kept by any rule is kept. Periods are UTC calendar hours, days, ISO weeks, months and \
years; each period rule keeps the newest snapshot of each of the newest N periods that have one. \
Kept snapshots that built on a forgotten one are rewritten (the forgotten changes folded in); \
`kindsnap prune` then frees the data nothing needs. See docs/retention.md.

Examples:
  kindsnap forget --keep-daily 14 --keep-weekly 8 --keep-monthly 24 --dry-run
  kindsnap forget --keep-last 3 --keep-name 'release-*'
  kindsnap forget --keep-daily 7 --keep-tag audit
  kindsnap forget --keep-daily 7 && kindsnap prune
  kindsnap forget before-experiment 9f3c1a2e    forget these two, keep the rest"
)]
pub struct Args {
    /// Forget exactly these snapshots (names, id prefixes, `latest~N`,
    /// `@DATE`) and keep every other; instead of --keep-… rules.
    #[arg(add = super::complete::snap(), value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep snapshots whose name matches GLOB (`*`, `?`); repeatable.
    #[arg(long, value_name = "GLOB")]
    keep_name: Vec<String>,
    /// Apply the rules only to snapshots that carry TAG (repeatable: any
    /// of them); the others are kept and not listed.
    #[arg(long, value_name = "TAG", add = super::complete::tag())]
    tag: Vec<String>,
    /// Keep snapshots that carry TAG (`kindsnap tag add`); repeatable.
    #[arg(add = super::complete::tag(), long, value_name = "TAG")]
    keep_tag: Vec<String>,
    /// Show what would be kept and removed; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Allow the policy to remove every snapshot of a group.
    #[arg(long)]
    allow_empty: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut repo = settings.open_repo()?;
    let policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        names: args.keep_name,
        tags: args.keep_tag,
        only_tags: args.tag,
        forget: args.snapshots,
    };
    let opts = ForgetOptions {
        dry_run: args.dry_run,
        allow_empty: args.allow_empty,
    };
    let report = forget::forget(&mut repo, &policy, &opts, &settings.progress())?;
    let mut out = Out::new();
    if args.json {
        out.json(&serde_json::to_value(&report)?)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    if settings.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    for g in &report.groups {
        out.line(format!(
            "{}{}:",
            g.source,
            if g.kinds_filter.is_empty() {
                String::new()
            } else {
                format!(" (kinds {})", g.kinds_filter)
            }
        ))?;
        let mut rows = vec![vec![
            "".to_string(),
            "id".into(),
            "name".into(),
            "time".into(),
            "why".into(),
        ]];
        for d in &g.snapshots {
            rows.push(vec![
                if d.keep { "keep" } else { "remove" }.to_string(),
                d.id[..8].to_string(),
                d.name.clone(),
                time_text(&d.time, settings.local_time),
                if d.keep {
                    let mut why = d.reasons.join(", ");
                    if d.new_id.is_some() {
                        // The manifest is new; the snapshot's id stays.
                        why.push_str(" (removed changes folded in)");
                    }
                    why
                } else {
                    "no rule keeps it".to_string()
                },
            ]);
        }
        for l in table(&rows, 5) {
            out.line(format!("  {}", l.trim_end()))?;
        }
    }
    let (keep, remove, rewrite) = match report.dry_run {
        true => ("would keep", "would remove", "would fold"),
        false => ("kept", "removed", "folded"),
    };
    let mut line = format!(
        "{keep} {}, {remove} {}{}",
        count(report.kept, "snapshot"),
        report.removed,
        super::output::took(settings.started)
    );
    if report.rewritten > 0 {
        line.push_str(&format!(
            "; {rewrite} the removed changes into {}",
            count(report.rewritten, "kept snapshot")
        ));
    }
    if !report.dry_run && report.removed > 0 {
        line.push_str("; `kindsnap prune` frees the data they alone used");
    }
    out.line(line)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
