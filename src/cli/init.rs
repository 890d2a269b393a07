//! `kindsnap init`

use std::process::ExitCode;

use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap init                         ./.kindsnap
  kindsnap --repo /backups/shop init
  kindsnap --repo s3://my-bucket/shop init
  KINDSNAP_REPO=/backups/shop kindsnap init")]
pub struct Args {}

pub fn run(_args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = match settings.remote_url() {
        Some(url) => kindsnap::repo::remote::init(url, &settings.cache_dir, &settings.remote)?,
        None => kindsnap::repo::Repository::init(&settings.repo)?,
    };
    if !settings.quiet {
        let mut out = Out::new();
        out.line(format!(
            "created repository {} (id {})",
            settings.repo.display(),
            &repo.config.id[..8]
        ))?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
