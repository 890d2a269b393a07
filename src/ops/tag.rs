//! `tag`: add tags to snapshots or remove them (restic's `tag --add`,
//! `--remove`), so that `forget --keep-tag` keeps them and `log` shows
//! them.
//!
//! Tags live in the manifest header. Changing them writes a new manifest
//! with the same database and header (tags aside) that *replaces* the old
//! one (docs/format.md `replaces`), as `forget` does when it folds a
//! parent in: the snapshot's logical id, its state and its children's
//! parent pointers stay. The first tag raises the repository to format 3.
//!
//! Locking: the exclusive repository lock (the old manifest is deleted,
//! so no reader may be resolving it and no snapshot may pick it as a
//! parent meanwhile), and the commit lock around each publish. Crash
//! safety: the new manifest is published before the old one is deleted;
//! a crash between the two leaves a hidden manifest that the next
//! `forget`, `tag` or `prune` removes. This module never prints.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::repo::manifest::{self, SnapshotInfo};
use crate::repo::{fsutil, Repository};

/// What `kindsnap tag` did to one snapshot (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Tagged {
    /// The snapshot's logical id (unchanged by tagging).
    pub id: String,
    pub name: String,
    /// Its tags afterwards, sorted.
    pub tags: Vec<String>,
    /// False when the snapshot already had (or lacked) the tag.
    pub changed: bool,
}

/// `kindsnap tag --json`.
#[derive(Debug, Clone, Serialize)]
pub struct TagReport {
    pub snapshots: Vec<Tagged>,
}

/// A tag is 1 to 64 characters without white space or commas (restic
/// joins tags with commas on its command line).
pub fn validate_tag(tag: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::BadArgument(format!(
            "tag `{tag}`: {why}; use letters, digits and -_.:/ such as `audit` or `release-1.2`"
        )))
    };
    if tag.is_empty() || tag.chars().count() > 64 {
        return bad("give 1 to 64 characters");
    }
    if tag
        .chars()
        .any(|c| c.is_whitespace() || c == ',' || c.is_control())
    {
        return bad("white space and commas are not allowed");
    }
    Ok(())
}

/// Add `add` and remove `remove` on each snapshot named in `specs`
/// (names, id prefixes, `latest~N`, `@DATE`). Every name is resolved
/// before anything changes.
pub fn tag(
    repo: &mut Repository,
    specs: &[String],
    add: &[String],
    remove: &[String],
) -> Result<TagReport> {
    for t in add.iter().chain(remove) {
        validate_tag(t)?;
    }
    if specs.is_empty() {
        return Err(Error::BadArgument(
            "name the snapshots to tag (names, ids, `latest`); `kindsnap log` lists them".into(),
        ));
    }
    let _lock = repo.lock_to_delete(false)?;
    super::forget::remove_replaced(repo)?;
    let (infos, _) = manifest::list(repo)?;
    let mut chosen: Vec<SnapshotInfo> = Vec::new();
    for spec in specs {
        let info = manifest::resolve(&infos, spec)?;
        if !chosen.iter().any(|c| c.id == info.id) {
            chosen.push(info);
        }
    }
    let mut report = TagReport {
        snapshots: Vec::new(),
    };
    let mut removed_any = false;
    for info in chosen {
        let mut tags: BTreeSet<String> = info.tags.iter().cloned().collect();
        tags.extend(add.iter().cloned());
        for r in remove {
            tags.remove(r);
        }
        let tags: Vec<String> = tags.into_iter().collect();
        let changed = tags != info.tags;
        if changed {
            if !tags.is_empty() {
                repo.require_format(crate::repo::TAGS_FORMAT_VERSION)?;
            }
            manifest::publish_retagged(repo, &info, tags.clone())?;
            repo.remove_manifest(&info.id)?;
            removed_any = true;
        }
        report.snapshots.push(Tagged {
            id: info.logical.to_hex(),
            name: info.name,
            tags,
            changed,
        });
    }
    if removed_any {
        fsutil::sync_dir(&repo.snapshots_dir())?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::validate_tag;

    #[test]
    fn tags_without_space_or_comma_are_valid() {
        assert!(validate_tag("audit").is_ok());
        assert!(validate_tag("release-1.2").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag("a b").is_err());
        assert!(validate_tag("a,b").is_err());
        assert!(validate_tag(&"x".repeat(65)).is_err());
    }
}
