//! Where an encrypted repository's password comes from, in this order:
//! `--password-file`, `--password-command` (a secret manager's command,
//! split like a shell would, run without one), `KINDSNAP_PASSWORD`, then a
//! prompt on the terminal. With none of them and no terminal, one error
//! line lists the options. New passwords (`init --encrypt`, `key add`,
//! `key passwd`) come from `--new-password-file`, else the same sources
//! for `init`, else a prompt asked twice.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use kindsnap::Error;
use zeroize::Zeroizing;

/// The password options given on the command line.
#[derive(Debug, Clone, Default)]
pub struct PasswordOptions {
    pub file: Option<PathBuf>,
    pub command: Option<String>,
    /// The environment variable to read (`KINDSNAP_PASSWORD` when None;
    /// `copy` reads the source's from `KINDSNAP_FROM_PASSWORD`).
    pub env: Option<&'static str>,
}

type Password = kindsnap::error::Result<Zeroizing<String>>;

/// A password file's text without its final line break.
fn from_file(path: &Path) -> Password {
    let text = std::fs::read(path).map_err(|e| Error::Io {
        op: "reading the password file",
        path: path.to_path_buf(),
        source: e,
    })?;
    let text = Zeroizing::new(String::from_utf8_lossy(&text).to_string());
    Ok(Zeroizing::new(trim_newline(&text).to_string()))
}

fn trim_newline(s: &str) -> &str {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.strip_suffix('\r').unwrap_or(s)
}

/// The first line a command prints; it must succeed.
fn from_command(command: &str) -> Password {
    let failed = |why: String| Error::PasswordCommand {
        command: command.to_string(),
        why,
    };
    let words = shlex::split(command).ok_or_else(|| failed("unbalanced quotes".into()))?;
    let (program, args) = words
        .split_first()
        .ok_or_else(|| failed("it is empty".into()))?;
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(format!("it exited with {}", out.status)));
    }
    let text = Zeroizing::new(String::from_utf8_lossy(&out.stdout).to_string());
    Ok(Zeroizing::new(trim_newline(&text).to_string()))
}

fn from_env(var: Option<&str>) -> Option<Zeroizing<String>> {
    // Empty counts as unset, as for the other KINDSNAP_* variables.
    std::env::var(var.unwrap_or("KINDSNAP_PASSWORD"))
        .ok()
        .filter(|p| !p.is_empty())
        .map(Zeroizing::new)
}

fn prompt(text: &str) -> Password {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(|e| Error::PasswordCommand {
            command: "the terminal prompt".into(),
            why: e.to_string(),
        })
}

fn on_terminal() -> bool {
    std::io::stdin().is_terminal()
}

impl PasswordOptions {
    /// The password of the repository at `location`, from the first
    /// source given.
    pub fn password(&self, location: &str) -> Password {
        if let Some(f) = &self.file {
            return from_file(f);
        }
        if let Some(c) = &self.command {
            return from_command(c);
        }
        if let Some(p) = from_env(self.env) {
            return Ok(p);
        }
        if on_terminal() {
            return prompt(&format!("password for repository {location}: "));
        }
        Err(Error::PasswordNeeded {
            path: PathBuf::from(location),
        })
    }

    /// A new password: from `new_file`, else (for `init`) the ordinary
    /// sources, else asked twice on the terminal. Never empty.
    pub fn new_password(
        &self,
        new_file: Option<&Path>,
        for_init: bool,
        location: &str,
    ) -> Password {
        let p = match new_file {
            Some(f) => from_file(f)?,
            None if for_init
                && (self.file.is_some()
                    || self.command.is_some()
                    || from_env(self.env).is_some()) =>
            {
                self.password(location)?
            }
            None if on_terminal() => {
                let a = prompt(&format!("new password for {location}: "))?;
                let b = prompt("enter it again: ")?;
                if a != b {
                    return Err(Error::PasswordCommand {
                        command: "the terminal prompt".into(),
                        why: "the two passwords differ".into(),
                    });
                }
                a
            }
            None if for_init => {
                return Err(Error::PasswordNeeded {
                    path: PathBuf::from(location),
                })
            }
            None => return Err(Error::PasswordCommand {
                command: "--new-password-file".into(),
                why: "no new password given; name a file with it, or run on a terminal to be asked"
                    .into(),
            }),
        };
        if p.is_empty() {
            return Err(Error::PasswordCommand {
                command: "the new password".into(),
                why: "it is empty".into(),
            });
        }
        Ok(p)
    }
}

/// Whether `init` without `--encrypt` or `--plain` asks (on a terminal).
pub fn can_ask() -> bool {
    on_terminal()
}

/// Ask whether to encrypt a new repository (default yes).
pub fn ask_encrypt() -> std::io::Result<bool> {
    use std::io::Write;
    eprint!("encrypt the new repository with a password? [Y/n] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(!matches!(line.trim(), "n" | "N" | "no" | "No"))
}
