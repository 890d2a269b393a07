//! `kindsnap copy --from-repo SRC [SNAPSHOT…]`: snapshots of another
//! repository into this one (restic's `copy`); how a plain repository
//! becomes an encrypted one.

use std::path::PathBuf;
use std::process::ExitCode;

use kindsnap::ops::copy;
use kindsnap::ops::snapshot::SnapshotOptions;

use super::output::escape;
use super::password::PasswordOptions;
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap --repo new init --encrypt
  kindsnap --repo new copy --from-repo .kindsnap
  kindsnap --repo s3://bkt/shop copy --from-repo /backups/shop latest

Each snapshot is taken again in this repository, oldest first, with its
name, time, source and kinds; only what changed is stored, under this
repository's keys. Snapshots copied before are recognised and skipped.
The source's password: --from-password-file, --from-password-command,
KINDSNAP_FROM_PASSWORD, else a prompt.")]
pub struct Args {
    /// The repository to copy from (a directory or a URL).
    #[arg(long, value_name = "PATH|URL")]
    from_repo: PathBuf,

    /// The source repository's password file.
    #[arg(long, value_name = "FILE")]
    from_password_file: Option<PathBuf>,

    /// A command printing the source repository's password.
    #[arg(long, value_name = "COMMAND")]
    from_password_command: Option<String>,

    /// Snapshots to copy (names, ids, latest~N); all when none are given.
    snapshots: Vec<String>,
}

fn open_source(args: &Args, settings: &Settings) -> anyhow::Result<kindsnap::repo::Repository> {
    let pw = PasswordOptions {
        file: args.from_password_file.clone(),
        command: args.from_password_command.clone(),
        env: Some("KINDSNAP_FROM_PASSWORD"),
    };
    let location = args.from_repo.display().to_string();
    let password = || pw.password(&location);
    Ok(
        match args
            .from_repo
            .to_str()
            .filter(|s| kindsnap::repo::remote::is_remote_url(s))
        {
            Some(url) => {
                kindsnap::repo::remote::open(url, &settings.cache_dir, &settings.remote, &password)?
            }
            None => kindsnap::repo::Repository::open_with(&args.from_repo, &password)?,
        },
    )
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let from = open_source(&args, settings)?;
    let to = settings.open_repo()?;
    let base = SnapshotOptions {
        cancel: settings.cancel.clone(),
        ..SnapshotOptions::default()
    };
    let progress = settings.progress();
    let copied = copy::copy(&from, &to, &args.snapshots, &base, &progress)?;
    if !settings.quiet {
        let mut out = Out::new();
        for c in &copied {
            out.line(format!(
                "{} {} ({}) as {}: {} entities, {} bytes added",
                if c.report.existed { "had" } else { "copied" },
                escape(&c.name),
                &c.from[..8],
                c.report.id.short(),
                c.report.entities,
                c.report.bytes_added
            ))?;
        }
        out.line(format!("{} snapshots", copied.len()))?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
