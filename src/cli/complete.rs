//! Dynamic shell completion: snapshot names, kinds and tags come from the
//! repository while the user types (`kindsnap diff mo<TAB>` → `monday`).
//!
//! `kindsnap completions SHELL` prints a small registration script that
//! calls the binary back with `KINDSNAP_COMPLETE=SHELL` and the words
//! typed so far (clap_complete's `CompleteEnv`); [`main`](super::main)
//! answers those calls before anything else runs. The candidate lists
//! read manifest headers of a local repository only: no lock, no network
//! (a repository on object storage completes no names), and every failure
//! is an empty list, since a completion must never print an error.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::engine::CompletionCandidate;

use super::Cli;

/// The environment variable the registration scripts set.
pub const VAR: &str = "KINDSNAP_COMPLETE";

/// Answer a completion call (`KINDSNAP_COMPLETE` set) and exit; a no-op
/// otherwise.
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .complete();
}

/// Print the registration script for `shell`: it calls this binary (by
/// the path it was started with) for every completion.
pub fn write_registration(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    let completer: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &Bash,
        clap_complete::Shell::Zsh => &Zsh,
        clap_complete::Shell::Fish => &Fish,
        clap_complete::Shell::Elvish => &Elvish,
        clap_complete::Shell::PowerShell => &Powershell,
        _ => {
            anyhow::bail!("no completion for this shell; use bash, zsh, fish, elvish or powershell")
        }
    };
    let argv0 = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kindsnap"));
    // A path with a directory is made absolute (the script runs anywhere);
    // a bare name is found on PATH, as the shell found it.
    let bin = if argv0.components().count() > 1 {
        std::env::current_dir()
            .map(|d| d.join(&argv0))
            .unwrap_or(argv0)
    } else {
        argv0
    };
    completer.write_registration(VAR, "kindsnap", "kindsnap", &bin.to_string_lossy(), out)?;
    Ok(())
}

/// The words of the command line being completed (after the `--` the
/// registration script puts before them).
fn typed_words() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => Vec::new(),
    }
}

/// The repository the command being typed would use: `--repo`, else
/// `KINDSNAP_REPO`, else `repo` in kindsnap.toml (or `--config`), else
/// `./.kindsnap` — the order of [`super::Settings`].
fn repo_dir() -> PathBuf {
    let words = typed_words();
    let flag = |name: &str| -> Option<OsString> {
        let eq = format!("--{name}=");
        words.iter().enumerate().rev().find_map(|(i, w)| {
            let s = w.to_string_lossy();
            if s == format!("--{name}") {
                words.get(i + 1).cloned()
            } else {
                s.strip_prefix(&eq).map(OsString::from)
            }
        })
    };
    if let Some(r) = flag("repo") {
        return PathBuf::from(r);
    }
    if let Some(r) = std::env::var_os("KINDSNAP_REPO").filter(|v| !v.is_empty()) {
        return PathBuf::from(r);
    }
    let config = flag("config").map(PathBuf::from);
    if let Ok(c) = kindsnap::config::Config::load(config.as_deref()) {
        if let Some(r) = c.repo {
            return r;
        }
    }
    PathBuf::from(".kindsnap")
}

/// The snapshots of the repository, read from headers (oldest first).
fn infos() -> Vec<kindsnap::repo::manifest::SnapshotInfo> {
    let dir = repo_dir();
    if dir
        .to_str()
        .is_some_and(kindsnap::repo::remote::is_remote_url)
    {
        return Vec::new();
    }
    kindsnap::repo::Repository::open(&dir)
        .and_then(|r| kindsnap::repo::manifest::list(&r))
        .map(|(infos, _)| infos)
        .unwrap_or_default()
}

/// Snapshot names (newest first, each once), then `latest`.
pub fn snapshots() -> Vec<CompletionCandidate> {
    let infos = infos();
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<CompletionCandidate> = infos
        .iter()
        .rev()
        .filter(|i| seen.insert(i.name.clone()))
        .map(|i| {
            CompletionCandidate::new(i.name.clone()).help(Some(
                kindsnap::model::json::format_timestamp(
                    i.time_us - i.time_us.rem_euclid(1_000_000),
                )
                .into(),
            ))
        })
        .collect();
    if !infos.is_empty() {
        out.push(CompletionCandidate::new("latest"));
    }
    out
}

/// The kinds of the newest snapshot (`--kinds`; namespaced kinds as
/// `namespace/Kind`).
pub fn kinds() -> Vec<CompletionCandidate> {
    let infos = infos();
    let (Some(newest), Ok(repo)) = (infos.last(), kindsnap::repo::Repository::open(&repo_dir()))
    else {
        return Vec::new();
    };
    let Ok(m) = kindsnap::repo::manifest::Manifest::open(&repo, &newest.id) else {
        return Vec::new();
    };
    let mut names: Vec<String> = m
        .kinds()
        .unwrap_or_default()
        .into_iter()
        .filter(|k| k.entities > 0)
        .map(|k| super::output::kind_label(&k.namespace, &k.kind))
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// Tags in use (`--keep-tag`, `log --tag`, `tag remove`).
pub fn tags() -> Vec<CompletionCandidate> {
    let mut tags: Vec<String> = infos().into_iter().flat_map(|i| i.tags).collect();
    tags.sort();
    tags.dedup();
    tags.into_iter().map(CompletionCandidate::new).collect()
}

/// Completes snapshot names.
pub fn snap() -> clap_complete::engine::ArgValueCandidates {
    clap_complete::engine::ArgValueCandidates::new(snapshots)
}

/// Completes kinds, ignoring case as kind names on the command line do
/// (`--kinds us` → `User`).
pub fn kind() -> clap_complete::engine::ArgValueCompleter {
    clap_complete::engine::ArgValueCompleter::new(|current: &std::ffi::OsStr| {
        let typed = current.to_string_lossy().to_lowercase();
        kinds()
            .into_iter()
            .filter(|c| {
                c.get_value()
                    .to_string_lossy()
                    .to_lowercase()
                    .starts_with(&typed)
            })
            .collect::<Vec<_>>()
    })
}

/// Completes tags.
pub fn tag() -> clap_complete::engine::ArgValueCandidates {
    clap_complete::engine::ArgValueCandidates::new(tags)
}
