//! `kindsnap cat SNAP KEY`

use std::process::ExitCode;

use kindsnap::model::json;
use kindsnap::ops;

use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap cat latest User:alice
  kindsnap cat friday User:alice/Order:12
  kindsnap cat latest Item:7 --namespace shop")]
pub struct Args {
    /// Snapshot: a name, an id prefix, `latest`, `latest~N`, or `@DATE`
    /// (the newest taken at or before 2026-11-20 or 2026-11-20T06:00:00Z).
    #[arg(add = super::complete::snap())]
    snapshot: String,
    /// Key path, e.g. `Post:42`, `User:alice/Post:7`, `Post:"42"` (a name).
    key: String,
    /// Namespace of the key [default: the default namespace].
    #[arg(long, default_value = "")]
    namespace: String,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let (_, entity) = ops::read::cat(&repo, &args.snapshot, &args.namespace, &args.key)?;
    let mut out = Out::new();
    out.raw(&json::entity_to_json_pretty(&entity))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
