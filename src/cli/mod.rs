//! Command-line glue: clap definitions, settings resolution, output helpers
//! and the exit-code policy. One module per subcommand, each a
//! `run(args, &Settings) -> anyhow::Result<ExitCode>`.
//!
//! Exit codes: 0 success; 1 error (one line on stderr); 2 usage error;
//! 3 finished, but problems were found (`check`) or entities were skipped;
//! a closed stdout (`kindsnap log | head`) is not an error.

mod cat;
mod check;
mod clear;
mod diff;
mod export;
mod init;
mod keymap;
mod log;
mod output;
mod restore;
mod show;
mod snapshot;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::Out;

/// Git-style snapshots, diffs and restores for datastores.
#[derive(Debug, Parser)]
#[command(name = "kindsnap", version, about, long_about = None, after_help = EXAMPLES, args_override_self = true)]
pub struct Cli {
    /// Repository directory [env: KINDSNAP_REPO; default: ./.kindsnap]
    #[arg(long, global = true, value_name = "PATH")]
    repo: Option<PathBuf>,

    /// Settings file [default: ./kindsnap.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print nothing but errors.
    #[arg(long, short, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  kindsnap init
  kindsnap snapshot --from jsonl:entities.jsonl --name day1
  kindsnap log
  kindsnap diff day1 latest --keys
  kindsnap cat latest User:alice/Post:7
  kindsnap export day1 --to jsonl:day1.jsonl";

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new repository.
    Init(init::Args),
    /// Store a snapshot of a source; only what changed is stored again.
    Snapshot(snapshot::Args),
    /// List snapshots, newest first.
    Log(log::Args),
    /// Show a snapshot's kinds with their sizes.
    Show(show::Args),
    /// Print one entity of a snapshot as JSON.
    Cat(cat::Args),
    /// Compare two snapshots by kind, key and property.
    Diff(diff::Args),
    /// Write a snapshot's entities out (JSON Lines).
    Export(export::Args),
    /// Verify the repository; with --read-data also every stored byte.
    Check(check::Args),
    /// Write a snapshot into a target (original keys or uuid names).
    Restore(restore::Args),
    /// Delete entities on a target (all its kinds, or --kinds).
    Clear(clear::Args),
    /// Look up the uuid name a `--keys uuid` restore gave a key, or back.
    Keymap(keymap::Args),
}

/// Settings resolved once from flags, environment and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub repo: PathBuf,
    pub quiet: bool,
    pub config: kindsnap::config::Config,
}

impl Settings {
    /// Flags, then the environment, then kindsnap.toml, then defaults.
    fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        let config = kindsnap::config::Config::load(cli.config.as_deref())?;
        let repo = cli
            .repo
            .clone()
            .or_else(|| {
                std::env::var_os("KINDSNAP_REPO")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| config.repo.clone())
            .unwrap_or_else(|| PathBuf::from(".kindsnap"));
        Ok(Settings {
            repo,
            quiet: cli.quiet,
            config,
        })
    }

    pub fn open_repo(&self) -> anyhow::Result<kindsnap::repo::Repository> {
        Ok(kindsnap::repo::Repository::open(&self.repo)?)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::resolve(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kindsnap: error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::Init(a) => init::run(a, &settings),
        Command::Snapshot(a) => snapshot::run(a, &settings),
        Command::Log(a) => log::run(a, &settings),
        Command::Show(a) => show::run(a, &settings),
        Command::Cat(a) => cat::run(a, &settings),
        Command::Diff(a) => diff::run(a, &settings),
        Command::Export(a) => export::run(a, &settings),
        Command::Check(a) => check::run(a, &settings),
        Command::Restore(a) => restore::run(a, &settings),
        Command::Keymap(a) => keymap::run(a, &settings),
        Command::Clear(a) => clear::run(a, &settings),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if output::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("kindsnap: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
