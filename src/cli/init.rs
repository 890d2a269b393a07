//! `kindsnap init`

use std::process::ExitCode;

use kindsnap::repo::crypto::KdfParams;

use super::{password, Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap init                         ./.kindsnap
  kindsnap --repo /backups/shop init --encrypt
  kindsnap --repo s3://my-bucket/shop init --encrypt --password-file pw.txt
  KINDSNAP_REPO=/backups/shop kindsnap init --plain

Without --encrypt or --plain, init asks on a terminal (default: encrypt)
and creates a plain repository when run from a script.")]
pub struct Args {
    /// Encrypt everything the repository stores (XChaCha20-Poly1305; the
    /// key is kept in keys/, wrapped by the password: --password-file,
    /// --password-command, KINDSNAP_PASSWORD or a prompt).
    #[arg(long, conflicts_with = "plain")]
    encrypt: bool,

    /// Do not encrypt, and do not ask.
    #[arg(long)]
    plain: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let encrypt = if args.encrypt {
        true
    } else if args.plain || !password::can_ask() {
        false
    } else {
        password::ask_encrypt()?
    };
    let location = settings.repo.display().to_string();
    let pw = if encrypt {
        Some(settings.password.new_password(None, true, &location)?)
    } else {
        None
    };
    let with = pw.as_ref().map(|p| (p.as_bytes(), KdfParams::default()));
    let repo = match settings.remote_url() {
        Some(url) => {
            kindsnap::repo::remote::init(url, &settings.cache_dir, &settings.remote, with)?
        }
        None => kindsnap::repo::Repository::init_with(&settings.repo, with)?,
    };
    if !settings.quiet {
        let mut out = Out::new();
        out.line(format!(
            "created {}repository {} (id {})",
            if repo.is_encrypted() {
                "encrypted "
            } else {
                ""
            },
            settings.repo.display(),
            &repo.config.id[..8]
        ))?;
        if repo.is_encrypted() {
            out.line(
                "keep the password safe: without it (or another key's) nothing in the repository can be read",
            )?;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
