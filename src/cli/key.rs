//! `kindsnap key list|add|remove|passwd`: the password keys of an
//! encrypted repository (restic's `key`).

use std::path::PathBuf;
use std::process::ExitCode;

use kindsnap::repo::crypto::KdfParams;
use kindsnap::repo::keyring;

use super::output::escape;
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap key list
  kindsnap key add --new-password-file second.txt
  kindsnap key passwd
  kindsnap key remove 3f2a1b

The repository keeps working while any one key remains; the key in use
and the last key cannot be removed.")]
pub struct Args {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeyCommand {
    /// List the key files (the one in use is marked with *).
    List {
        /// One JSON object per key.
        #[arg(long)]
        json: bool,
    },
    /// Add a key: another password that opens the repository.
    Add {
        /// Read the new password from this file (else it is asked twice).
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Remove a key by its id (a unique prefix).
    Remove { id: String },
    /// Change the password: add a key with the new one, remove the one in use.
    Passwd {
        /// Read the new password from this file (else it is asked twice).
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let location = settings.repo.display().to_string();
    let mut out = Out::new();
    match args.command {
        KeyCommand::List { json } => {
            for k in keyring::list(&repo)? {
                if json {
                    out.line(serde_json::to_string(&k)?)?;
                } else {
                    out.line(format!(
                        "{} {}  {}  {}@{}",
                        if k.current { "*" } else { " " },
                        &k.name[..12],
                        escape(&k.created),
                        escape(&k.user),
                        escape(&k.host)
                    ))?;
                }
            }
        }
        KeyCommand::Add { new_password_file } => {
            let pw =
                settings
                    .password
                    .new_password(new_password_file.as_deref(), false, &location)?;
            let name = keyring::add(&repo, &pw, KdfParams::default())?;
            if !settings.quiet {
                out.line(format!("added key {}", &name[..12]))?;
            }
        }
        KeyCommand::Remove { id } => {
            let name = keyring::remove(&repo, &id)?;
            if !settings.quiet {
                out.line(format!("removed key {}", &name[..12]))?;
            }
        }
        KeyCommand::Passwd { new_password_file } => {
            let pw =
                settings
                    .password
                    .new_password(new_password_file.as_deref(), false, &location)?;
            let (old, new) = keyring::passwd(&repo, &pw, KdfParams::default())?;
            if !settings.quiet {
                out.line(format!(
                    "changed the password: key {} replaces {}",
                    &new[..12],
                    &old[..12]
                ))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
