//! One entity's life across the snapshots: every snapshot in which it was
//! added, changed or removed (against that snapshot's parent), with the
//! properties that changed. `kindsnap log --key` and the web UI's entity
//! page print it.
//!
//! It reads headers first: a snapshot whose header says the entity's kind
//! did not change against its parent is passed over without opening its
//! database. Otherwise it reads the one change row of the key; only a
//! snapshot without a parent (the first of its source), whose state is
//! all in its keyframe, is looked up in its table of entries. It never
//! writes, and holds the shared lock while it reads.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::ids::{EntityHash, SnapshotId};
use crate::model::{key, Entity};
use crate::repo::manifest::{self, Chain, Manifest, Op, SnapshotInfo};
use crate::repo::store::Store;
use crate::repo::Repository;

use super::diff::{diff_properties, Change, PropChange};

/// The history of one key.
#[derive(Debug, Clone)]
pub struct EntityHistory {
    pub namespace: String,
    pub kind: String,
    /// The key's readable path (`User:alice/Post:7`).
    pub key: String,
    /// Oldest first.
    pub events: Vec<EntityEvent>,
}

/// One snapshot in which the entity differs from that snapshot's parent.
#[derive(Debug, Clone)]
pub struct EntityEvent {
    pub snapshot: SnapshotInfo,
    /// The snapshot compared against: the parent's logical id (None for
    /// the first snapshot of a source, where the entity is `added`).
    pub parent: Option<SnapshotId>,
    pub change: Change,
    pub old: Option<EntityHash>,
    pub new: Option<EntityHash>,
    /// Property by property, old → new (every property for an entity added
    /// or removed).
    pub properties: Vec<PropChange>,
}

/// The history of the entity `key_text` (`User:alice/Post:7`) in
/// `namespace`, over every snapshot of the repository, oldest first.
pub fn entity_history(repo: &Repository, namespace: &str, key_text: &str) -> Result<EntityHistory> {
    let path = key::parse_path(key_text).map_err(|why| Error::BadKey {
        text: key_text.to_string(),
        why,
    })?;
    let kind = path.last().map(|e| e.kind.clone()).unwrap_or_default();
    let key_bytes = key::encode_path(&path);
    let _lock = repo.lock_shared()?;
    let (infos, _) = manifest::list(repo)?;
    let present: HashMap<SnapshotId, SnapshotInfo> =
        infos.iter().map(|i| (i.id, i.clone())).collect();
    let replacements = manifest::replacement_map(&manifest::list_all(repo)?.0);
    let target = Target {
        namespace,
        kind: &kind,
        key: &key_bytes,
    };
    // The key's hash in each snapshot seen so far (None: absent).
    let mut state: HashMap<SnapshotId, Option<EntityHash>> = HashMap::new();
    let mut found = Vec::new();
    for info in &infos {
        let parent = info
            .parent
            .and_then(|p| manifest::resolve_parent(p, &present, &replacements));
        let before = match parent {
            None => None,
            Some(p) => match state.get(&p) {
                Some(h) => *h,
                None => target.lookup(repo, &p)?,
            },
        };
        let now = target.hash_in(repo, info, parent.is_some(), before)?;
        state.insert(info.id, now);
        let change = match (before, now) {
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (Some(a), Some(b)) if a != b => Change::Changed,
            _ => continue,
        };
        // People see the parent's logical id (docs/format.md).
        let shown = parent.and_then(|p| present.get(&p)).map(|p| p.logical);
        found.push((info.clone(), shown, change, before, now));
    }
    if found.is_empty() {
        kind_exists(repo, &infos, namespace, &kind)?;
    }
    let events = with_properties(repo, found)?;
    Ok(EntityHistory {
        namespace: namespace.to_string(),
        kind,
        key: key::display_path(&path),
        events,
    })
}

/// A key in no snapshot is an empty history, but a kind in no snapshot is
/// more likely a typo: say which kinds are close.
fn kind_exists(
    repo: &Repository,
    infos: &[SnapshotInfo],
    namespace: &str,
    kind: &str,
) -> Result<()> {
    let mut names = std::collections::BTreeSet::new();
    for info in infos.iter().rev() {
        for k in Manifest::open(repo, &info.id)?.kinds()? {
            if k.namespace == namespace && k.entities > 0 {
                if k.kind == kind {
                    return Ok(());
                }
                names.insert(k.kind);
            }
        }
    }
    let within = if namespace.is_empty() {
        "any snapshot".to_string()
    } else {
        format!("namespace `{namespace}` of any snapshot")
    };
    Err(super::unknown_kind(
        kind,
        within,
        "latest",
        names.iter().map(String::as_str),
    ))
}

/// The key looked for.
struct Target<'a> {
    namespace: &'a str,
    kind: &'a str,
    key: &'a [u8],
}

impl Target<'_> {
    /// The key's hash in `info`, given its hash in the parent (`before`).
    fn hash_in(
        &self,
        repo: &Repository,
        info: &SnapshotInfo,
        has_parent: bool,
        before: Option<EntityHash>,
    ) -> Result<Option<EntityHash>> {
        if !has_parent {
            // The first snapshot of its source: its state is its keyframe.
            return self.lookup(repo, &info.id);
        }
        let m = Manifest::open(repo, &info.id)?;
        let Some(k) = m.kind(self.namespace, self.kind)? else {
            // The kind is not in the snapshot: neither is the key.
            return Ok(None);
        };
        if k.added + k.changed + k.removed == 0 {
            return Ok(before);
        }
        Ok(match m.change_at(k.kid, self.key)? {
            None => before,
            Some(row) => match row.op {
                Op::Removed => None,
                Op::Added | Op::Changed => row.hash,
            },
        })
    }

    /// The key's hash in a snapshot's state, through its whole chain.
    fn lookup(&self, repo: &Repository, id: &SnapshotId) -> Result<Option<EntityHash>> {
        let chain = Chain::open(repo, id)?;
        Ok(chain
            .lookup(self.namespace, self.kind, self.key)?
            .map(|e| e.hash))
    }
}

type Found = (
    SnapshotInfo,
    Option<SnapshotId>,
    Change,
    Option<EntityHash>,
    Option<EntityHash>,
);

/// Read the bodies the events name and compare them property by property.
fn with_properties(repo: &Repository, found: Vec<Found>) -> Result<Vec<EntityEvent>> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let store = Store::open(repo)?;
    // Consecutive events share a body (one's new is the next one's old).
    let mut last: Option<(EntityHash, Entity)> = None;
    let mut body = |h: Option<EntityHash>| -> Result<Option<Entity>> {
        let Some(h) = h else { return Ok(None) };
        if let Some((lh, e)) = &last {
            if *lh == h {
                return Ok(Some(e.clone()));
            }
        }
        let e = store.get(&h)?;
        last = Some((h, e.clone()));
        Ok(Some(e))
    };
    let mut events = Vec::with_capacity(found.len());
    for (snapshot, parent, change, old, new) in found {
        let o = body(old)?;
        let n = body(new)?;
        let empty = |e: &Option<Entity>, other: &Option<Entity>| {
            e.clone().unwrap_or_else(|| Entity {
                key: other
                    .as_ref()
                    .map(|x| x.key.clone())
                    .unwrap_or_else(|| crate::model::Key::new(Default::default(), Vec::new())),
                properties: Default::default(),
            })
        };
        let properties = diff_properties(&empty(&o, &n), &empty(&n, &o));
        events.push(EntityEvent {
            snapshot,
            parent,
            change,
            old,
            new,
            properties,
        });
    }
    Ok(events)
}
