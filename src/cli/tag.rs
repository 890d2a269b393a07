//! `kindsnap tag add|remove TAG SNAPSHOT…`

use std::process::ExitCode;

use super::output::{count, escape};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Tags do not change a snapshot's id: the manifest is rewritten with the \
same content and the id printed before stays. `forget --keep-tag TAG` keeps tagged snapshots; \
`log --tag TAG` lists them. See docs/retention.md.

Examples:
  kindsnap tag add audit latest
  kindsnap tag add release-1.2 monday 9f3c1a2e
  kindsnap tag remove audit monday
  kindsnap forget --keep-daily 7 --keep-tag audit"
)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Add TAG to each snapshot.
    Add(TagArgs),
    /// Remove TAG from each snapshot.
    #[command(visible_alias = "rm")]
    Remove(TagArgs),
}

#[derive(Debug, clap::Args)]
struct TagArgs {
    /// The tag: 1 to 64 characters, no white space or commas.
    #[arg(add = super::complete::tag())]
    tag: String,
    /// Snapshots: names, id prefixes, `latest`, `latest~N`, `@DATE`.
    #[arg(add = super::complete::snap(), value_name = "SNAPSHOT", required = true, num_args = 1..)]
    snapshots: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut repo = settings.open_repo()?;
    let (a, adding) = match &args.action {
        Action::Add(a) => (a, true),
        Action::Remove(a) => (a, false),
    };
    let one = std::slice::from_ref(&a.tag);
    let (add, remove): (&[String], &[String]) = if adding { (one, &[]) } else { (&[], one) };
    let report = kindsnap::ops::tag::tag(&mut repo, &a.snapshots, add, remove)?;
    let mut out = Out::new();
    if a.json {
        out.json(&serde_json::to_value(&report)?)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    if settings.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    for s in &report.snapshots {
        let state = match (s.changed, adding) {
            (true, true) => "tagged",
            (true, false) => "untagged",
            (false, true) => "already tagged",
            (false, false) => "was not tagged",
        };
        let tags = if s.tags.is_empty() {
            "no tags".to_string()
        } else {
            format!("tags: {}", s.tags.join(", "))
        };
        out.line(format!(
            "{state}: {} ({}); {}",
            escape(&s.name),
            &s.id[..8],
            escape(&tags)
        ))?;
    }
    let n = report.snapshots.iter().filter(|s| s.changed).count();
    out.line(format!(
        "{} {}; ids unchanged",
        count(n, "snapshot"),
        if adding { "tagged" } else { "untagged" }
    ))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
