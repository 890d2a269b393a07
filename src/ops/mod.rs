//! The operations, as plain functions over a [`Repository`]: `snapshot`,
//! `diff`, `export`, `restore`, `check` (and `rebuild_index`), `repair`,
//! `forget`, `prune`, `stats`, the reads for people (`read`: `cat`,
//! `show`, `log`) and one entity's life across snapshots (`history`).
//! Each takes the repository lock it needs, returns a
//! report (`Serialize`, so the CLI's `--json` is the report itself), never
//! prints, and stops at a safe point when the cancellation token in its
//! options is cancelled ([`crate::interrupt::Cancel`]).
//!
//! [`Repository`]: crate::repo::Repository

pub mod check;
pub mod copy;
pub mod diff;
pub mod export;
pub mod forget;
pub mod history;
pub mod prune;
pub mod read;
pub mod repair;
pub mod restore;
pub mod snapshot;
pub mod stats;
pub mod tag;

use crate::error::{Error, Result};
use crate::repo::manifest::{self, SnapshotInfo};
use crate::repo::Repository;

/// Resolve a snapshot reference against the repository. A reference
/// that matches nothing while some manifest cannot be read gets that
/// manifest's error (a damaged or tampered manifest may be the one meant).
pub fn find_snapshot(repo: &Repository, spec: &str) -> Result<SnapshotInfo> {
    let (infos, mut bad) = manifest::list(repo)?;
    match manifest::resolve(&infos, spec) {
        Err(Error::UnknownSnapshot { .. }) if !bad.is_empty() => Err(bad.swap_remove(0).1),
        r => r,
    }
}

/// The error for a kind named on the command line that `within` (one or
/// two snapshots) lacks, with the closest of the kinds it has as a hint
/// (`product` for `Product`).
pub(crate) fn unknown_kind<'a>(
    kind: &str,
    within: String,
    show: &str,
    kinds: impl IntoIterator<Item = &'a str>,
) -> Error {
    let mut all: Vec<&str> = kinds.into_iter().collect();
    all.sort_unstable();
    all.dedup();
    let close = crate::suggest::closest(kind, all.iter().copied());
    // Nothing close: name the kinds there are, when they fit on a line.
    let hint = match crate::suggest::did_you_mean(&close) {
        Some(h) => format!(" ({h})"),
        None if all.is_empty() => " (it has no kinds)".to_string(),
        None if all.len() <= 8 => format!(" (it has: {})", all.join(", ")),
        None => String::new(),
    };
    Error::UnknownKind {
        kind: kind.to_string(),
        within,
        hint,
        show: show.to_string(),
    }
}

/// Validate a user-chosen snapshot name.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::BadName {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() || name.len() > 128 {
        return bad("use 1 to 128 characters");
    }
    if name == "latest" || name.starts_with("latest~") {
        return bad("`latest` and `latest~N` are reserved");
    }
    if name.starts_with('-') || name.starts_with('@') {
        return bad("a name may not start with `-` or `@`");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '\\')
    {
        return bad("no spaces, slashes or control characters");
    }
    if name.len() >= 4 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        return bad("a name of only hex digits would read as a snapshot id");
    }
    Ok(())
}
