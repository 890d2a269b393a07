//! `kindsnap keymap TARGET KEY`: what a `--keys uuid` restore named an
//! entity, and back.

use std::process::ExitCode;

use kindsnap::connector;
use kindsnap::model::key;
use kindsnap::repo::keymap::KeyMap;

use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap keymap datastore://localhost:8081/dev Post:42
  kindsnap keymap jsonl:dev.jsonl User:alice/Post:1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed")]
pub struct Args {
    /// The target restored into (as given to `restore --to`).
    target: String,
    /// A key path, original (`Post:42`) or restored (`Post:<uuid>`).
    key: String,
    /// The key's namespace.
    #[arg(long, default_value = "", hide_default_value = true)]
    namespace: String,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let target = connector::open_target(&args.target, &settings.remote)?;
    let path = key::parse_path(&args.key).map_err(|why| kindsnap::Error::BadKey {
        text: args.key.clone(),
        why,
    })?;
    let shown = key::display_path(&path);
    match KeyMap::lookup(&repo, &target.target_id(), &args.namespace, &shown)? {
        Some((original, restored)) => {
            let mut out = Out::new();
            out.line(format!("{original} -> {restored}"))?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "{shown} is not in the key map of {} (neither as an original nor as a restored key)",
            args.target
        ),
    }
}
