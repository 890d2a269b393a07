//! Diff two snapshots by kind. Equal per-kind digests mean nothing to
//! read; a snapshot and its parent differ by exactly the child's change
//! rows; anything else is a merge join of the two key-ordered states.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::ids::EntityHash;
use crate::repo::manifest::{Chain, KindInfo, Op, SnapshotInfo, StateEntry};
use crate::repo::Repository;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One differing key.
#[derive(Debug, Clone)]
pub struct DiffEntry {
    pub change: Change,
    pub key: Vec<u8>,
    pub old: Option<EntityHash>,
    pub new: Option<EntityHash>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct KindDiff {
    pub namespace: String,
    pub kind: String,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    /// Entities of the kind in the newer snapshot.
    pub entities: u64,
}

#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Only these kinds.
    pub kinds: Option<Vec<String>>,
    /// Report each differing key (otherwise counts only).
    pub entries: bool,
}

/// How the diff was computed, for the curious and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// B's parent is A (or the reverse): the change rows were read.
    Adjacent,
    /// Two states were merged.
    Merge,
}

pub fn diff(
    repo: &Repository,
    a: &SnapshotInfo,
    b: &SnapshotInfo,
    opts: &DiffOptions,
    on_entry: &mut dyn FnMut(&KindDiff, DiffEntry) -> Result<()>,
) -> Result<(Vec<KindDiff>, Method)> {
    // Shared: a prune or forget waits until the diff has read what it needs.
    let _lock = repo.lock_shared()?;
    let chain_a = Chain::open(repo, &a.id)?;
    let chain_b = Chain::open(repo, &b.id)?;
    let kinds_a = chain_a.head().kinds()?;
    let kinds_b = chain_b.head().kinds()?;
    check_kinds(opts, a, b, &kinds_a, &kinds_b)?;
    // Adjacent: one is the other's parent, and the child recorded changes.
    // The parent pointer may name a manifest the parent's present one
    // replaces (`forget`, `tag`): the same state.
    let is_parent = |p: &SnapshotInfo, child: &SnapshotInfo| {
        child
            .parent
            .is_some_and(|id| id == p.id || p.replaces.contains(&id))
    };
    let forward = is_parent(a, b);
    let backward = is_parent(b, a);
    let method = if forward || backward {
        Method::Adjacent
    } else {
        Method::Merge
    };
    let find = |ks: &[KindInfo], ns: &str, kind: &str| {
        ks.iter()
            .find(|k| k.namespace == ns && k.kind == kind)
            .cloned()
    };
    let mut out = Vec::new();
    for (ns, kind) in kind_names(opts, &kinds_a, &kinds_b) {
        let ka = find(&kinds_a, &ns, &kind);
        let kb = find(&kinds_b, &ns, &kind);
        let mut d = KindDiff {
            namespace: ns.clone(),
            kind: kind.clone(),
            entities: kb.as_ref().map(|k| k.entities).unwrap_or(0),
            ..Default::default()
        };
        let ea = ka.as_ref().map(|k| k.entities).unwrap_or(0);
        if ea == 0 && d.entities == 0 {
            continue;
        }
        if let (Some(x), Some(y)) = (&ka, &kb) {
            if x.digest == y.digest && x.entities == y.entities {
                continue;
            }
        }
        let (child_chain, child_kind, parent_chain) = if forward {
            (&chain_b, &kb, &chain_a)
        } else {
            (&chain_a, &ka, &chain_b)
        };
        // Adjacent, and the child has the kind: its change rows are the diff.
        // Otherwise (not adjacent, or the kind appeared or vanished
        // entirely) merge the two states.
        match child_kind {
            Some(ck) if method == Method::Adjacent => {
                let adjacent = Adjacent {
                    child: child_chain,
                    parent: parent_chain,
                    forward,
                };
                adjacent.kind(ck, &mut d, opts.entries, on_entry)?;
            }
            _ => merge(
                &chain_a,
                &chain_b,
                &ns,
                &kind,
                &mut d,
                opts.entries,
                on_entry,
            )?,
        }
        if d.added + d.removed + d.changed > 0 {
            out.push(d);
        }
    }
    Ok((out, method))
}

/// Every kind `opts.kinds` names must be in one of the snapshots.
fn check_kinds(
    opts: &DiffOptions,
    a: &SnapshotInfo,
    b: &SnapshotInfo,
    kinds_a: &[KindInfo],
    kinds_b: &[KindInfo],
) -> Result<()> {
    let Some(ks) = &opts.kinds else {
        return Ok(());
    };
    let present = |k: &KindInfo| k.entities > 0 || k.removed > 0;
    for w in ks {
        if !kinds_a.iter().chain(kinds_b).any(|k| &k.kind == w) {
            let within = if a.id == b.id {
                format!("snapshot `{}`", a.name)
            } else {
                format!("either snapshot, `{}` or `{}`", a.name, b.name)
            };
            let names = kinds_a.iter().chain(kinds_b).filter(|k| present(k));
            return Err(super::unknown_kind(
                w,
                within,
                &b.name,
                names.map(|k| k.kind.as_str()),
            ));
        }
    }
    Ok(())
}

/// The (namespace, kind) pairs to compare: wanted, and with entities or
/// removals in either snapshot.
fn kind_names(
    opts: &DiffOptions,
    kinds_a: &[KindInfo],
    kinds_b: &[KindInfo],
) -> BTreeSet<(String, String)> {
    let wanted = |k: &str| {
        opts.kinds
            .as_ref()
            .map(|ks| ks.iter().any(|x| x == k))
            .unwrap_or(true)
    };
    kinds_a
        .iter()
        .chain(kinds_b)
        .filter(|k| wanted(&k.kind) && (k.entities > 0 || k.removed > 0))
        .map(|k| (k.namespace.clone(), k.kind.clone()))
        .collect()
}

/// A diff of a snapshot and its parent, from the child's change rows.
struct Adjacent<'a> {
    child: &'a Chain,
    parent: &'a Chain,
    /// The child is the newer snapshot (`diff parent child`).
    forward: bool,
}

impl Adjacent<'_> {
    /// One kind the child holds: counts from its header, or with
    /// `entries` each change row (old bodies looked up in the parent).
    fn kind(
        &self,
        ck: &KindInfo,
        d: &mut KindDiff,
        entries: bool,
        on_entry: &mut dyn FnMut(&KindDiff, DiffEntry) -> Result<()>,
    ) -> Result<()> {
        if !entries {
            let (add, rem) = if self.forward {
                (ck.added, ck.removed)
            } else {
                (ck.removed, ck.added)
            };
            d.added = add;
            d.removed = rem;
            d.changed = ck.changed;
            return Ok(());
        }
        let mut rows = self.child.head().changes(ck.kid);
        while let Some(row) = rows.next_row()? {
            let old = match row.op {
                Op::Added => None,
                _ => self
                    .parent
                    .lookup(&d.namespace, &d.kind, &row.key)?
                    .map(|e| e.hash),
            };
            let (change, o, n) = match (row.op, self.forward) {
                (Op::Added, true) => (Change::Added, None, row.hash),
                (Op::Added, false) => (Change::Removed, row.hash, None),
                (Op::Removed, true) => (Change::Removed, old, None),
                (Op::Removed, false) => (Change::Added, None, old),
                (Op::Changed, true) => (Change::Changed, old, row.hash),
                (Op::Changed, false) => (Change::Changed, row.hash, old),
            };
            match change {
                Change::Added => d.added += 1,
                Change::Removed => d.removed += 1,
                Change::Changed => d.changed += 1,
            }
            let entry = DiffEntry {
                change,
                key: row.key,
                old: o,
                new: n,
            };
            on_entry(d, entry)?;
        }
        Ok(())
    }
}

fn merge(
    a: &Chain,
    b: &Chain,
    ns: &str,
    kind: &str,
    d: &mut KindDiff,
    entries: bool,
    on_entry: &mut dyn FnMut(&KindDiff, DiffEntry) -> Result<()>,
) -> Result<()> {
    let mut ra = a.state(ns, kind)?;
    let mut rb = b.state(ns, kind)?;
    let mut x: Option<StateEntry> = ra.next_entry()?;
    let mut y: Option<StateEntry> = rb.next_entry()?;
    loop {
        let (change, key, old, new) = match (&x, &y) {
            (None, None) => return Ok(()),
            (Some(p), Some(q)) if p.key == q.key => {
                let r = (p.hash != q.hash)
                    .then(|| (Change::Changed, p.key.clone(), Some(p.hash), Some(q.hash)));
                x = ra.next_entry()?;
                y = rb.next_entry()?;
                match r {
                    Some(r) => r,
                    None => continue,
                }
            }
            (Some(p), q) if q.as_ref().map(|q| p.key < q.key).unwrap_or(true) => {
                let r = (Change::Removed, p.key.clone(), Some(p.hash), None);
                x = ra.next_entry()?;
                r
            }
            (_, Some(q)) => {
                let r = (Change::Added, q.key.clone(), None, Some(q.hash));
                y = rb.next_entry()?;
                r
            }
            (Some(_), None) => unreachable!("covered by the arm above"),
        };
        match change {
            Change::Added => d.added += 1,
            Change::Removed => d.removed += 1,
            Change::Changed => d.changed += 1,
        }
        if entries {
            on_entry(
                d,
                DiffEntry {
                    change,
                    key,
                    old,
                    new,
                },
            )?;
        }
    }
}

/// One property that differs between two versions of an entity.
#[derive(Debug, Clone, PartialEq)]
pub struct PropChange {
    pub name: String,
    pub old: Option<crate::model::Value>,
    pub new: Option<crate::model::Value>,
}

/// Property-level differences, in property-name order.
pub fn diff_properties(old: &crate::model::Entity, new: &crate::model::Entity) -> Vec<PropChange> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = old.properties.keys().chain(new.properties.keys()).collect();
    for name in names {
        let (o, n) = (old.properties.get(name), new.properties.get(name));
        let same = match (o, n) {
            (Some(a), Some(b)) => {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                let _ = ciborium::ser::into_writer(a, &mut x);
                let _ = ciborium::ser::into_writer(b, &mut y);
                x == y
            }
            (None, None) => true,
            _ => false,
        };
        if !same {
            out.push(PropChange {
                name: name.clone(),
                old: o.cloned(),
                new: n.cloned(),
            });
        }
    }
    out
}

/// One page of the keys of one kind that differ between `a` and `b`, in
/// key order: the `take` entries after the first `skip`, and whether more
/// follow. Reading stops once the page is full, so a page costs what
/// comes before it, never the whole kind (for the web UI's paged diff).
pub fn entries_page(
    repo: &Repository,
    a: &SnapshotInfo,
    b: &SnapshotInfo,
    namespace: &str,
    kind: &str,
    skip: u64,
    take: usize,
) -> Result<(Vec<DiffEntry>, bool)> {
    let opts = DiffOptions {
        kinds: Some(vec![kind.to_string()]),
        entries: true,
    };
    let mut seen = 0u64;
    let mut page = Vec::with_capacity(take);
    let mut more = false;
    // The walk is cut short by returning `Interrupted` from the callback:
    // nothing else in `diff` can raise it (it does not poll Ctrl-C).
    let res = diff(repo, a, b, &opts, &mut |k, e| {
        if k.namespace != namespace {
            return Ok(());
        }
        seen += 1;
        if seen <= skip {
            return Ok(());
        }
        if page.len() == take {
            more = true;
            return Err(crate::error::Error::Interrupted);
        }
        page.push(e);
        Ok(())
    });
    match res {
        Ok(_) => Ok((page, false)),
        Err(crate::error::Error::Interrupted) if more => Ok((page, true)),
        Err(e) => Err(e),
    }
}
