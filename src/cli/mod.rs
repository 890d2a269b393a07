//! Command-line glue: clap definitions, settings resolution, output helpers
//! and the exit-code policy. One module per subcommand, each a
//! `run(args, &Settings) -> anyhow::Result<ExitCode>`.
//!
//! Exit codes: 0 success; 1 error (one line on stderr); 2 usage error;
//! 3 finished, but problems were found (`check`) or entities were skipped
//! (`restore --tolerate`, `snapshot --tolerate` of a damaged export); 75 (EX_TEMPFAIL) a transient error — a server
//! that did not answer, a lock held elsewhere — worth running again as is
//! ([`kindsnap::error::ErrorClass`]); 130 stopped by Ctrl-C after a clean
//! stop; a closed stdout (`kindsnap log | head`) is not an error.

mod cat;
mod check;
mod clear;
mod complete;
mod config;
mod copy;
mod diff;
mod export;
mod forget;
mod init;
mod key;
mod keymap;
mod log;
pub(crate) mod output;
mod password;
mod progress;
mod prune;
mod repair;
mod restore;
mod rows;
mod show;
mod snapshot;
mod stats;
mod tag;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::Out;

/// Git-style snapshots, diffs and restores for datastores.
#[derive(Debug, Parser)]
#[command(name = "kindsnap", version, about, long_about = None, after_help = EXAMPLES, args_override_self = true)]
pub struct Cli {
    /// Repository: a directory, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX
    /// [env: KINDSNAP_REPO; default: ./.kindsnap]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH|URL"
    )]
    repo: Option<PathBuf>,

    /// Settings file [default: ./kindsnap.toml if present]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// Seconds to wait for a server's answer (Datastore, PostgreSQL,
    /// object storage) [env: KINDSNAP_TIMEOUT; default: 60]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "SECONDS"
    )]
    timeout: Option<String>,

    /// Print nothing but errors.
    #[arg(long, short, global = true, help_heading = "Global options")]
    quiet: bool,

    /// More logging on stderr (-v: what is done, -vv: every request).
    #[arg(long, short, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    verbose: u8,

    /// Colours on stdout: auto (a terminal, unless NO_COLOR is set),
    /// always, never.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "WHEN",
        default_value = "auto"
    )]
    color: ColorChoice,

    /// Print times in the local time zone (RFC 3339 with its offset)
    /// instead of UTC; --json stays UTC.
    #[arg(long, global = true, help_heading = "Global options")]
    local_time: bool,

    /// Read an encrypted repository's password from this file
    /// (before --password-command and KINDSNAP_PASSWORD; else a prompt)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    password_file: Option<PathBuf>,

    /// Run this command (a secret manager's) and use what it prints as
    /// the password
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "COMMAND"
    )]
    password_command: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

const EXAMPLES: &str = "Examples:
  kindsnap init
  kindsnap snapshot --from datastore://localhost:8081/dev --name day1
  kindsnap snapshot --from jsonl:entities.jsonl
  kindsnap log
  kindsnap diff day1 latest --keys
  kindsnap cat latest User:alice/Post:7
  kindsnap restore day1 --to datastore://localhost:8081/dev --keys uuid
  kindsnap export day1 --to jsonl:day1.jsonl
  kindsnap ui --open

Exit codes: 0 ok, 1 error, 2 usage, 3 finished with problems (check) or
skipped entities (restore/snapshot --tolerate), 130 stopped by Ctrl-C.
Docs: README.md and docs/ (user guide, restore, datastore, format).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new repository.
    Init(init::Args),
    /// Manage the password keys of an encrypted repository.
    Key(key::Args),
    /// Copy snapshots from another repository into this one (e.g. into
    /// a new encrypted repository).
    Copy(copy::Args),
    /// Store a snapshot of a source; only what changed is stored again.
    Snapshot(snapshot::Args),
    /// List snapshots, newest first.
    #[command(visible_aliases = ["snapshots", "ls"])]
    Log(log::Args),
    /// Show a snapshot's kinds with their sizes.
    Show(show::Args),
    /// Print one entity of a snapshot, or every entity of a kind (JSON, or
    /// a table for SQL).
    Cat(cat::Args),
    /// Compare two snapshots by kind, key and property.
    Diff(diff::Args),
    /// Write a snapshot's entities out (JSON Lines, or a Datastore export).
    Export(export::Args),
    /// Verify the repository; with --read-data also every stored byte.
    Check(check::Args),
    /// Repository size, deduplication ratio, growth per snapshot and kind.
    Stats(stats::Args),
    /// Remove snapshots by keep-policy (restic's --keep-* rules).
    Forget(forget::Args),
    /// Add or remove a tag on snapshots (ids do not change).
    Tag(tag::Args),
    /// Delete data no snapshot needs; repack mostly unused packs.
    Prune(prune::Args),
    /// Write a snapshot into a target (original keys or uuid names).
    Restore(restore::Args),
    /// Repair a damaged repository: rebuild the index, rewrite snapshots
    /// without the entities whose bodies are lost.
    Repair(repair::Args),
    /// Delete entities on a target (all its kinds, or --kinds).
    Clear(clear::Args),
    /// Show the effective settings and where each came from.
    Config(config::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell) that also completes snapshot names, kinds and tags.
    Completions(config::CompletionArgs),
    /// Print the man page (roff).
    Man(config::ManArgs),
    /// Look up the uuid name a `--keys uuid` restore gave a key, or back.
    Keymap(keymap::Args),
    /// Browse the repository in a web browser: history, diffs, entities
    /// (read-only; loopback unless given a token).
    Ui(ui::Args),
}

/// Settings resolved once from flags, environment and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub repo: PathBuf,
    /// Where `repo` came from: `--repo`, `KINDSNAP_REPO`, the file, default.
    pub repo_from: &'static str,
    pub quiet: bool,
    /// Where caches of repositories on object storage live
    /// (KINDSNAP_CACHE_DIR, else $XDG_CACHE_HOME/kindsnap, else ~/.cache/kindsnap).
    pub cache_dir: PathBuf,
    /// Whether stdout gets ANSI colours.
    pub color: bool,
    /// How long to wait for servers.
    pub timeouts: kindsnap::net::Timeouts,
    /// Where the timeout came from: `--timeout`, `KINDSNAP_TIMEOUT`, the
    /// file, default.
    pub timeout_from: &'static str,
    /// Object storage: the timeouts, and `KINDSNAP_S3_ENDPOINT`,
    /// `KINDSNAP_REMOTE_TIMEOUT` (seconds).
    pub remote: kindsnap::repo::remote::RemoteOptions,
    pub config: kindsnap::config::Config,
    /// Cancelled by Ctrl-C; every operation gets a clone.
    pub cancel: kindsnap::interrupt::Cancel,
    /// When the command started: summaries say how long it took.
    pub started: std::time::Instant,
    /// `--local-time`: tables print local times instead of UTC.
    pub local_time: bool,
    /// Where an encrypted repository's password comes from.
    pub password: password::PasswordOptions,
}

impl Settings {
    /// Flags, then the environment, then kindsnap.toml, then defaults.
    fn resolve(cli: &Cli, cancel: kindsnap::interrupt::Cancel) -> anyhow::Result<Settings> {
        let config = kindsnap::config::Config::load(cli.config.as_deref())?;
        let env = std::env::var_os("KINDSNAP_REPO")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let (repo, repo_from) = if let Some(r) = &cli.repo {
            (r.clone(), "--repo")
        } else if let Some(r) = env {
            (r, "KINDSNAP_REPO")
        } else if let Some(r) = &config.repo {
            (r.clone(), "kindsnap.toml")
        } else {
            (PathBuf::from(".kindsnap"), "default")
        };
        let (timeout, timeout_from) = Self::timeout(cli, &config)?;
        let env_dir = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let cache_dir = env_dir("KINDSNAP_CACHE_DIR")
            .or_else(|| env_dir("XDG_CACHE_HOME").map(|d| d.join("kindsnap")))
            .or_else(|| env_dir("HOME").map(|d| d.join(".cache").join("kindsnap")))
            .unwrap_or_else(|| std::env::temp_dir().join("kindsnap-cache"));
        let timeouts = kindsnap::net::Timeouts::new(timeout);
        let remote = kindsnap::repo::remote::RemoteOptions {
            timeouts,
            s3_endpoint: std::env::var("KINDSNAP_S3_ENDPOINT")
                .ok()
                .filter(|v| !v.is_empty()),
            retry_window: match std::env::var("KINDSNAP_REMOTE_TIMEOUT") {
                Ok(v) => Some(std::time::Duration::from_secs(v.parse().map_err(|_| {
                    anyhow::anyhow!("KINDSNAP_REMOTE_TIMEOUT={v}: give whole seconds, such as 60")
                })?)),
                Err(_) => None,
            },
        };
        Ok(Settings {
            repo,
            repo_from,
            quiet: cli.quiet,
            cache_dir,
            timeouts,
            timeout_from,
            remote,
            cancel,
            started: std::time::Instant::now(),
            local_time: cli.local_time,
            password: password::PasswordOptions {
                file: cli.password_file.clone(),
                command: cli.password_command.clone(),
                env: None,
            },
            color: match cli.color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => {
                    use std::io::IsTerminal;
                    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                        && std::io::stdout().is_terminal()
                }
            },
            config,
        })
    }

    /// `--timeout`, then `KINDSNAP_TIMEOUT`, then `timeout` in the file,
    /// then the default.
    fn timeout(
        cli: &Cli,
        config: &kindsnap::config::Config,
    ) -> anyhow::Result<(std::time::Duration, &'static str)> {
        let parse = |text: &str, from: &str| {
            kindsnap::net::parse_seconds(text).ok_or_else(|| {
                anyhow::anyhow!("{from}{text}: give a number of seconds, such as 30")
            })
        };
        if let Some(t) = &cli.timeout {
            return Ok((parse(t, "--timeout ")?, "--timeout"));
        }
        if let Some(t) = std::env::var("KINDSNAP_TIMEOUT")
            .ok()
            .filter(|v| !v.is_empty())
        {
            return Ok((parse(&t, "KINDSNAP_TIMEOUT=")?, "KINDSNAP_TIMEOUT"));
        }
        if let Some(t) = config.timeout {
            return Ok((std::time::Duration::from_secs(t), "kindsnap.toml"));
        }
        Ok((
            std::time::Duration::from_secs(kindsnap::net::DEFAULT_TIMEOUT_SECS),
            "default",
        ))
    }

    /// The repository's URL when it lives on object storage.
    pub fn remote_url(&self) -> Option<&str> {
        self.repo
            .to_str()
            .filter(|s| kindsnap::repo::remote::is_remote_url(s))
    }

    /// Open the repository; an encrypted one with its password (asked
    /// for only then).
    pub fn open_repo(&self) -> anyhow::Result<kindsnap::repo::Repository> {
        let location = self.repo.display().to_string();
        let password = || self.password.password(&location);
        Ok(match self.remote_url() {
            Some(url) => {
                kindsnap::repo::remote::open(url, &self.cache_dir, &self.remote, &password)?
            }
            None => kindsnap::repo::Repository::open_with(&self.repo, &password)?,
        })
    }

    /// How long operations show their progress.
    pub fn progress(&self) -> progress::Bars {
        progress::Bars::new(self.quiet)
    }
}

/// Log lines go to stderr. By default only kindsnap's own warnings show:
/// libraries' retries (gcp_auth trying the metadata server five times
/// when there are no credentials) would bury the one-line error that
/// follows; `-vv` or `KINDSNAP_LOG` (an env-filter, such as
/// `gcp_auth=debug`) shows them. Colours only on a terminal, and never
/// with NO_COLOR.
fn init_logging(verbose: u8) {
    use std::io::IsTerminal;
    let default = match verbose {
        0 => "kindsnap=warn",
        1 => "kindsnap=info",
        2 => "kindsnap=debug,warn",
        _ => "kindsnap=debug,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KINDSNAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Ctrl-C: the first cancels `cancel`, which running operations check at
/// safe points to stop cleanly; a second one ends the process at once.
fn install_ctrl_c(cancel: kindsnap::interrupt::Cancel) {
    let _ = ctrlc::set_handler(move || {
        if cancel.is_cancelled() {
            std::process::exit(130);
        }
        eprintln!("kindsnap: stopping (Ctrl-C again to quit at once)…");
        cancel.cancel();
    });
}

pub fn main() -> ExitCode {
    complete::answer_if_asked();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let cancel = kindsnap::interrupt::Cancel::new();
    install_ctrl_c(cancel.clone());
    let settings = match Settings::resolve(&cli, cancel.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kindsnap: error: {}", output::escape(&format!("{e:#}")));
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::Init(a) => init::run(a, &settings),
        Command::Key(a) => key::run(a, &settings),
        Command::Copy(a) => copy::run(a, &settings),
        Command::Snapshot(a) => snapshot::run(a, &settings),
        Command::Log(a) => log::run(a, &settings),
        Command::Show(a) => show::run(a, &settings),
        Command::Cat(a) => cat::run(a, &settings),
        Command::Diff(a) => diff::run(a, &settings),
        Command::Export(a) => export::run(a, &settings),
        Command::Check(a) => check::run(a, &settings),
        Command::Stats(a) => stats::run(a, &settings),
        Command::Forget(a) => forget::run(a, &settings),
        Command::Tag(a) => tag::run(a, &settings),
        Command::Prune(a) => prune::run(a, &settings),
        Command::Restore(a) => restore::run(a, &settings),
        Command::Repair(a) => repair::run(a, &settings),
        Command::Keymap(a) => keymap::run(a, &settings),
        Command::Clear(a) => clear::run(a, &settings),
        Command::Config(a) => config::run(a, &settings),
        Command::Completions(a) => config::completions(a),
        Command::Man(a) => config::man(a),
        Command::Ui(a) => ui::run(a, &settings),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if output::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("kindsnap: error: {}", output::escape(&format!("{e:#}")));
            let error = e.downcast_ref::<kindsnap::Error>();
            let interrupted = matches!(error, Some(kindsnap::Error::Interrupted));
            if interrupted || cancel.is_cancelled() {
                return ExitCode::from(130);
            }
            match error.map(|e| e.class()) {
                Some(kindsnap::error::ErrorClass::Transient) => ExitCode::from(75),
                _ => ExitCode::from(1),
            }
        }
    }
}
