//! `forget`: choose snapshots to keep with restic's keep-policies, remove
//! the others, and keep every remaining snapshot restorable.
//!
//! Policies apply per group: snapshots of the same source with the same
//! `--kinds` selection (the snapshots that form one delta chain). A
//! snapshot kept by any rule is kept; each kept snapshot lists the rules
//! that keep it.
//!
//! A forgotten snapshot's manifest may hold changes that kept, later
//! snapshots build on. Such a kept snapshot K is rewritten: its new
//! manifest K' holds the changes from its nearest kept ancestor A to K
//! (the forgotten deltas between them folded in), or is a keyframe, and it
//! lists K's id in `replaces`, so K's children, whose parent pointer names
//! K, reach K' instead and need no rewrite (their ids stay). The state of
//! K' is exactly K's: the same per-kind digests.
//!
//! Crash safety: every K' is published (temp → fsync → rename) before any
//! manifest is deleted; a published K' hides K at once (`manifest::list`),
//! so at every moment each snapshot is visible exactly once and every
//! visible chain resolves. Deletions go newest first. A forget stopped
//! half-way is finished by the next forget or prune.
//!
//! This module never prints; the CLI renders its report.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::ids::SnapshotId;
use crate::progress::Progress;
use crate::repo::manifest::{
    self, Chain, ChangeEntry, KindInfo, Manifest, ManifestWriter, NameVerdict, NewSnapshot, Op,
    PagedRows, Published, SnapshotInfo,
};
use crate::repo::{fsutil, Repository};

/// restic's keep-policy. `None` and `Some(0)` leave a rule out.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    /// Keep snapshots whose name matches one of these globs (`*`, `?`).
    pub names: Vec<String>,
    /// Keep snapshots that carry one of these tags (restic's
    /// `--keep-tag`).
    pub tags: Vec<String>,
    /// Only snapshots that carry one of these tags are considered
    /// (restic's `forget --tag`); the others are kept and not listed.
    pub only_tags: Vec<String>,
    /// Instead of keep-rules: forget exactly these snapshots (names, id
    /// prefixes, `latest~N`, `@DATE`) and keep every other.
    pub forget: Vec<String>,
}

impl Policy {
    /// No keep-rule given (a list of snapshots to forget aside).
    fn no_rules(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|n| n.unwrap_or(0) == 0)
            && self.names.is_empty()
            && self.tags.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.no_rules() && self.forget.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    pub dry_run: bool,
    /// Allow a policy to remove every snapshot of a group.
    pub allow_empty: bool,
}

/// One snapshot's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: String,
    pub name: String,
    pub time: String,
    pub keep: bool,
    /// The rules that keep it (`last`, `hourly`, `daily`, `weekly`,
    /// `monthly`, `yearly`, `name GLOB`, `tag TAG`); empty when removed.
    pub reasons: Vec<String>,
    /// The id of its rewritten manifest file, when forget folded a
    /// forgotten parent into it. The snapshot's `id` stays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_id: Option<String>,
    /// The manifest file decided on (internal: `id` is the logical id).
    #[serde(skip)]
    pub manifest: SnapshotId,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub source: String,
    pub kinds_filter: String,
    /// Newest first.
    pub snapshots: Vec<Decision>,
}

/// `kindsnap forget --json`. Documented in docs/retention.md.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    pub groups: Vec<Group>,
    pub kept: u64,
    pub removed: u64,
    /// Kept snapshots whose manifest was rewritten (a forgotten parent
    /// folded in).
    pub rewritten: u64,
    /// Manifests left by an interrupted forget, removed now.
    pub leftovers_removed: u64,
}

/// Match `*` (any run) and `?` (one character) against a whole name.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The period a snapshot falls in for each bucket rule (UTC).
fn period(time_us: i64, rule: &str) -> (i64, i64, i64) {
    let t = OffsetDateTime::from_unix_timestamp_nanos(time_us as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let y = t.year() as i64;
    match rule {
        "hourly" => (y, t.ordinal() as i64, t.hour() as i64),
        "daily" => (y, t.ordinal() as i64, 0),
        "weekly" => {
            let (iy, w, _) = t.to_iso_week_date();
            (iy as i64, w as i64, 0)
        }
        "monthly" => (y, t.month() as i64, 0),
        _ => (y, 0, 0),
    }
}

/// Apply a policy to one group's snapshots (any order). Returns, newest
/// first, each snapshot with the rules that keep it (none: removed).
pub fn apply_policy(snaps: &[SnapshotInfo], policy: &Policy) -> Vec<(SnapshotInfo, Vec<String>)> {
    let mut sorted: Vec<SnapshotInfo> = snaps.to_vec();
    // Newest first; a repaired snapshot (same time as its original) first.
    let gen = manifest::same_time_generation(&sorted);
    sorted.sort_by_key(|i| {
        std::cmp::Reverse((i.time_us, gen.get(&i.id).copied().unwrap_or(0), i.id))
    });
    let mut out: Vec<(SnapshotInfo, Vec<String>)> =
        sorted.into_iter().map(|s| (s, Vec::new())).collect();
    if let Some(n) = policy.last {
        for (_, reasons) in out.iter_mut().take(n as usize) {
            reasons.push("last".into());
        }
    }
    let rules = [
        ("hourly", policy.hourly),
        ("daily", policy.daily),
        ("weekly", policy.weekly),
        ("monthly", policy.monthly),
        ("yearly", policy.yearly),
    ];
    for (rule, n) in rules {
        let Some(n) = n.filter(|n| *n > 0) else {
            continue;
        };
        // restic: walking newest to oldest, the first snapshot seen in each
        // period is that period's; the newest n periods that have a
        // snapshot are kept.
        let mut last = None;
        let mut count = 0u32;
        for (s, reasons) in out.iter_mut() {
            if count >= n {
                break;
            }
            let p = period(s.time_us, rule);
            if last != Some(p) {
                last = Some(p);
                count += 1;
                reasons.push(rule.to_string());
            }
        }
    }
    for glob in &policy.names {
        for (s, reasons) in out.iter_mut() {
            if glob_match(glob, &s.name) {
                reasons.push(format!("name {glob}"));
            }
        }
    }
    for tag in &policy.tags {
        for (s, reasons) in out.iter_mut() {
            if s.tags.contains(tag) {
                reasons.push(format!("tag {tag}"));
            }
        }
    }
    out
}

/// `forget NAME…`: one group's snapshots, newest first, each listed one
/// forgotten and every other kept ("not listed").
fn forget_listed(
    snaps: &[SnapshotInfo],
    listed: &HashSet<SnapshotId>,
) -> Vec<(SnapshotInfo, Vec<String>)> {
    let mut out: Vec<(SnapshotInfo, Vec<String>)> = snaps
        .iter()
        .map(|s| {
            let why = match listed.contains(&s.id) {
                true => vec![],
                false => vec!["not listed".to_string()],
            };
            (s.clone(), why)
        })
        .collect();
    out.sort_by_key(|(s, _)| std::cmp::Reverse((s.time_us, s.id)));
    out
}

fn group_key(i: &SnapshotInfo) -> (String, String) {
    (i.source.clone(), i.kinds_filter.clone())
}

pub fn forget(
    repo: &mut Repository,
    policy: &Policy,
    opts: &ForgetOptions,
    progress: &dyn Progress,
) -> Result<ForgetReport> {
    if policy.is_empty() {
        return Err(Error::BadArgument(
            "no keep-policy given; say what to keep, e.g. `--keep-daily 7 --keep-weekly 4`, or name the snapshots to forget (see `kindsnap forget --help`)".into(),
        ));
    }
    if !policy.forget.is_empty() && !policy.no_rules() {
        return Err(Error::BadArgument(
            "name the snapshots to forget or give keep-rules, not both; run them as two commands"
                .into(),
        ));
    }
    // Exclusive: no snapshot may pick a manifest as its parent while it is
    // being replaced, and prune must not run at the same time.
    let _lock = repo.lock_to_delete(opts.dry_run)?;
    let (all, bad) = manifest::list_all(repo)?;
    if let Some((id, e)) = bad.into_iter().next() {
        return Err(Error::DamagedSnapshot {
            id: id.to_hex(),
            why: format!("cannot be read ({e}); forget needs every manifest: run `kindsnap check`"),
        });
    }
    let hidden = manifest::replaced_ids(&all);
    let visible: Vec<SnapshotInfo> = all
        .iter()
        .filter(|i| !hidden.contains(&i.id))
        .cloned()
        .collect();
    // 1. Decide, per group.
    let listed = policy
        .forget
        .iter()
        .map(|spec| manifest::resolve(&visible, spec).map(|i| i.id))
        .collect::<Result<HashSet<SnapshotId>>>()?;
    let decided = decide(&visible, policy, &listed, opts.allow_empty)?;
    let mut report = ForgetReport {
        dry_run: opts.dry_run,
        // The snapshots the policy looked at (not those `only_tags` left out).
        kept: decided
            .groups
            .iter()
            .flat_map(|g| &g.snapshots)
            .filter(|d| d.keep)
            .count() as u64,
        removed: decided.forgotten.len() as u64,
        groups: decided.groups,
        rewritten: 0,
        leftovers_removed: 0,
    };
    // 2. Which kept snapshots lose a parent.
    let plans = fold_plans(&all, &visible, &decided.keep)?;
    report.rewritten = plans.len() as u64;
    if opts.dry_run {
        return Ok(report);
    }
    if !plans.is_empty() {
        repo.upgrade_format()?;
    }
    // 3. Publish the rewritten manifests, parents before children.
    let new_ids = publish_folds(repo, &plans, progress)?;
    for g in &mut report.groups {
        for d in &mut g.snapshots {
            d.new_id = new_ids.get(&d.manifest).map(|(n, _)| n.to_hex());
        }
    }
    // 4. Delete, newest first: forgotten snapshots, replaced manifests.
    let mut doomed: Vec<&SnapshotInfo> = all
        .iter()
        .filter(|i| {
            decided.forgotten.contains(&i.id)
                || hidden.contains(&i.id)
                || new_ids.contains_key(&i.id)
        })
        .collect();
    doomed.sort_by(|a, b| b.time_us.cmp(&a.time_us).then(b.id.cmp(&a.id)));
    for i in doomed {
        repo.remove_manifest(&i.id)?;
        if hidden.contains(&i.id) {
            report.leftovers_removed += 1;
        }
    }
    fsutil::sync_dir(&repo.snapshots_dir())?;
    Ok(report)
}

/// What the policy decided, over every group.
struct Decided {
    groups: Vec<Group>,
    keep: HashSet<SnapshotId>,
    forgotten: HashSet<SnapshotId>,
}

/// Apply the policy to each group of snapshots (same source and kinds);
/// refuses to empty a group unless `allow_empty`.
fn decide(
    visible: &[SnapshotInfo],
    policy: &Policy,
    listed: &HashSet<SnapshotId>,
    allow_empty: bool,
) -> Result<Decided> {
    let mut by_group: BTreeMap<(String, String), Vec<SnapshotInfo>> = BTreeMap::new();
    let mut out = Decided {
        groups: Vec::new(),
        keep: HashSet::new(),
        forgotten: HashSet::new(),
    };
    for i in visible {
        let selected =
            policy.only_tags.is_empty() || i.tags.iter().any(|t| policy.only_tags.contains(t));
        if selected {
            by_group.entry(group_key(i)).or_default().push(i.clone());
        } else {
            // Not considered: kept, so chains through it stay as they are.
            out.keep.insert(i.id);
        }
    }
    for ((source, kinds_filter), snaps) in &by_group {
        let decided = match listed.is_empty() {
            true => apply_policy(snaps, policy),
            false => forget_listed(snaps, listed),
        };
        if decided.iter().all(|(_, r)| r.is_empty()) && !allow_empty {
            return Err(Error::BadArgument(format!(
                "the policy would remove all {} snapshots of {source}{}; nothing was changed (keep at least one, e.g. --keep-last 1, or pass --allow-empty)",
                decided.len(),
                if kinds_filter.is_empty() {
                    String::new()
                } else {
                    format!(" (kinds {kinds_filter})")
                }
            )));
        }
        let mut decisions = Vec::new();
        for (s, reasons) in decided {
            let k = !reasons.is_empty();
            if k {
                out.keep.insert(s.id);
            } else {
                out.forgotten.insert(s.id);
            }
            decisions.push(Decision {
                id: s.logical.to_hex(),
                manifest: s.id,
                name: s.name.clone(),
                time: crate::model::json::format_timestamp(s.time_us),
                keep: k,
                reasons,
                new_id: None,
            });
        }
        out.groups.push(Group {
            source: source.clone(),
            kinds_filter: kinds_filter.clone(),
            snapshots: decisions,
        });
    }
    Ok(out)
}

/// A kept snapshot whose chain runs through forgotten ones: those (oldest
/// first) fold into it, onto its nearest kept ancestor.
type FoldPlan = (SnapshotInfo, Vec<SnapshotInfo>, Option<SnapshotInfo>);

/// The kept snapshots that lose a parent, oldest first, each with the
/// forgotten snapshots between it and its nearest kept ancestor.
fn fold_plans(
    all: &[SnapshotInfo],
    visible: &[SnapshotInfo],
    keep: &HashSet<SnapshotId>,
) -> Result<Vec<FoldPlan>> {
    let present: HashMap<SnapshotId, SnapshotInfo> =
        all.iter().map(|i| (i.id, i.clone())).collect();
    let replacements = manifest::replacement_map(all);
    let resolve = |p: SnapshotId| manifest::resolve_parent(p, &present, &replacements);
    let mut plans = Vec::new();
    let mut kept_sorted: Vec<&SnapshotInfo> =
        visible.iter().filter(|i| keep.contains(&i.id)).collect();
    kept_sorted.sort_by(|a, b| a.time_us.cmp(&b.time_us).then(a.id.cmp(&b.id)));
    for k in kept_sorted {
        let mut path = Vec::new();
        let mut ancestor = None;
        let mut next = k.parent;
        while let Some(p) = next {
            let Some(p) = resolve(p) else {
                return Err(Error::DamagedSnapshot {
                    id: k.logical.to_hex(),
                    why: format!(
                        "its chain needs snapshot {} which is missing; run `kindsnap check`",
                        p.short()
                    ),
                });
            };
            let info = &present[&p];
            if keep.contains(&p) {
                ancestor = Some(info.clone());
                break;
            }
            path.push(info.clone());
            if path.len() > present.len() {
                return Err(Error::DamagedSnapshot {
                    id: k.id.to_hex(),
                    why: "parent chain loops".into(),
                });
            }
            next = info.parent;
        }
        if !path.is_empty() {
            path.reverse(); // oldest first
            plans.push((k.clone(), path, ancestor));
        }
    }
    Ok(plans)
}

/// Publish each fold, parents before children (a child's new parent is
/// its ancestor's new manifest). Returns old id → (new id, depth).
fn publish_folds(
    repo: &Repository,
    plans: &[FoldPlan],
    progress: &dyn Progress,
) -> Result<HashMap<SnapshotId, (SnapshotId, u32)>> {
    progress.phase("rewriting snapshots", Some(plans.len() as u64));
    let mut new_ids: HashMap<SnapshotId, (SnapshotId, u32)> = HashMap::new();
    for (k, path, ancestor) in plans {
        let (new_parent, parent_depth) = match ancestor {
            Some(a) => match new_ids.get(&a.id) {
                Some((id, depth)) => (Some(*id), *depth),
                None => (Some(a.id), a.depth),
            },
            None => (None, 0),
        };
        let (id, depth) = fold(repo, k, path, ancestor.as_ref(), new_parent, parent_depth)?;
        new_ids.insert(k.id, (id, depth));
        progress.advance(1);
    }
    progress.done();
    Ok(new_ids)
}

/// Remove the manifests a stopped forget left behind (replaced ones).
/// The caller holds the exclusive lock.
pub fn remove_replaced(repo: &Repository) -> Result<u64> {
    let (all, _) = manifest::list_all(repo)?;
    let hidden = manifest::replaced_ids(&all);
    let mut n = 0;
    for id in hidden {
        if repo.remove_manifest(&id)? {
            n += 1;
        }
    }
    if n > 0 {
        fsutil::sync_dir(&repo.snapshots_dir())?;
    }
    Ok(n)
}

/// Write K' (K's state; changes against `ancestor`; the forgotten `path`
/// folded in) and publish it. Returns its id and depth.
fn fold(
    repo: &Repository,
    k: &SnapshotInfo,
    path: &[SnapshotInfo],
    ancestor: Option<&SnapshotInfo>,
    new_parent: Option<SnapshotId>,
    parent_depth: u32,
) -> Result<(SnapshotId, u32)> {
    // Chains are read from the original manifests, all still present.
    let k_chain = Chain::open(repo, &k.id)?;
    let a_chain = ancestor.map(|a| Chain::open(repo, &a.id)).transpose()?;
    let layers: Vec<Manifest> = path
        .iter()
        .map(|p| Manifest::open(repo, &p.id))
        .collect::<Result<_>>()?;
    // A keyframe when K was one, when nothing is left to be a delta
    // against, when the chain would grow past the interval, or when a
    // forgotten keyframe is folded (so no depth ever grows).
    let keyframe = k.keyframe
        || ancestor.is_none()
        || path.iter().any(|p| p.keyframe)
        || parent_depth + 1 >= repo.config.keyframe_interval.max(1);
    let depth = if keyframe { 0 } else { parent_depth + 1 };
    let mut writer = ManifestWriter::create(repo)?;
    let head = k_chain.head();
    for info in head.kinds()? {
        let kid = writer.add_kind(&info.namespace, &info.kind)?;
        let (mut added, mut changed, mut removed) = (0u64, 0u64, 0u64);
        let mut put = |row: &ChangeEntry| -> Result<()> {
            match row.op {
                Op::Added => added += 1,
                Op::Changed => changed += 1,
                Op::Removed => removed += 1,
            }
            writer.put_change(kid, &row.key, row.op, row.hash.as_ref(), row.size)
        };
        if let Some(a_chain) = &a_chain {
            compose_kind(&layers, &k_chain, a_chain, &info, &mut put)?;
        }
        if keyframe {
            let mut st = k_chain.state(&info.namespace, &info.kind)?;
            while let Some(e) = st.next_entry()? {
                writer.put_entry(kid, &e.key, &e.hash, e.size)?;
            }
        }
        let bytes_added = info.bytes_added
            + layers
                .iter()
                .filter_map(|m| m.kind(&info.namespace, &info.kind).ok().flatten())
                .map(|k| k.bytes_added)
                .sum::<u64>();
        writer.set_kind_totals(KindInfo {
            added,
            changed,
            removed,
            bytes_added,
            ..info.clone()
        })?;
    }
    let mut replaces = vec![k.id];
    replaces.extend(k.replaces.iter().copied());
    let meta = NewSnapshot {
        name: k.name.clone(),
        time_us: k.time_us,
        source: k.source.clone(),
        kinds_filter: k.kinds_filter.clone(),
        parent: if a_chain.is_some() { new_parent } else { None },
        depth,
        keyframe,
        entities: k.entities,
        raw_bytes: k.raw_bytes,
        bytes_added: k.bytes_added + path.iter().map(|p| p.bytes_added).sum::<u64>(),
        packs_added: k.packs_added + path.iter().map(|p| p.packs_added).sum::<u64>(),
        replaces,
        tags: k.tags.clone(),
    };
    drop(layers);
    drop(a_chain);
    drop(k_chain);
    let id = match writer.publish(repo, &meta, |_, _| Ok(NameVerdict::Publish))? {
        Published::New { id, .. } | Published::Existing(id) => id,
    };
    Ok((id, depth))
}

/// The changes of one kind from the ancestor's state to K's. When every
/// folded manifest and K hold the kind, their change rows are merged (the
/// common, cheap case: only changed keys are read); otherwise the two
/// full states are compared.
fn compose_kind(
    layers: &[Manifest],
    k_chain: &Chain,
    a_chain: &Chain,
    info: &KindInfo,
    put: &mut dyn FnMut(&ChangeEntry) -> Result<()>,
) -> Result<()> {
    let (ns, kind) = (info.namespace.as_str(), info.kind.as_str());
    let mut kids = Vec::new();
    for m in layers.iter().chain(std::iter::once(k_chain.head())) {
        match m.kind(ns, kind)? {
            Some(k) => kids.push((m, k.kid)),
            None => break,
        }
    }
    if kids.len() == layers.len() + 1 {
        // Oldest first: for each key, the first row says whether the
        // ancestor had it, the last what K has.
        let mut rows: Vec<PagedRows> = kids.iter().map(|(m, kid)| m.changes(*kid)).collect();
        loop {
            let mut min: Option<Vec<u8>> = None;
            for r in rows.iter_mut() {
                if let Some(row) = r.peek()? {
                    if min.as_ref().map(|m| row.key < *m).unwrap_or(true) {
                        min = Some(row.key.clone());
                    }
                }
            }
            let Some(key) = min else { break };
            let mut first: Option<Op> = None;
            let mut last: Option<ChangeEntry> = None;
            for r in rows.iter_mut() {
                if r.peek()?.map(|row| row.key == key).unwrap_or(false) {
                    if let Some(row) = r.next_row()? {
                        first.get_or_insert(row.op);
                        last = Some(row);
                    }
                }
            }
            let (Some(first), Some(last)) = (first, last) else {
                continue;
            };
            let in_ancestor = first != Op::Added;
            let in_k = last.op != Op::Removed;
            match (in_ancestor, in_k) {
                (false, false) => {}
                (false, true) => put(&ChangeEntry {
                    op: Op::Added,
                    ..last
                })?,
                (true, false) => put(&ChangeEntry {
                    key: last.key,
                    op: Op::Removed,
                    hash: None,
                    size: 0,
                })?,
                (true, true) => {
                    let before = a_chain.lookup(ns, kind, &key)?.map(|e| e.hash);
                    if before != last.hash {
                        put(&ChangeEntry {
                            op: if before.is_some() {
                                Op::Changed
                            } else {
                                Op::Added
                            },
                            ..last
                        })?;
                    }
                }
            }
        }
        return Ok(());
    }
    // Full comparison (a folded manifest lacks the kind: its state was
    // empty there, and the ancestor's keys must be listed as removed).
    let mut a = a_chain.state(ns, kind)?;
    let mut b = k_chain.state(ns, kind)?;
    let (mut x, mut y) = (a.next_entry()?, b.next_entry()?);
    loop {
        match (x.take(), y.take()) {
            (None, None) => break,
            (Some(old), None) => {
                put(&removed_row(old.key))?;
                x = a.next_entry()?;
            }
            (None, Some(new)) => {
                put(&added_row(new))?;
                y = b.next_entry()?;
            }
            (Some(old), Some(new)) => {
                if old.key < new.key {
                    put(&removed_row(old.key))?;
                    x = a.next_entry()?;
                    y = Some(new);
                } else if new.key < old.key {
                    put(&added_row(new))?;
                    x = Some(old);
                    y = b.next_entry()?;
                } else {
                    if old.hash != new.hash {
                        put(&ChangeEntry {
                            key: new.key,
                            op: Op::Changed,
                            hash: Some(new.hash),
                            size: new.size,
                        })?;
                    }
                    x = a.next_entry()?;
                    y = b.next_entry()?;
                }
            }
        }
    }
    Ok(())
}

fn added_row(new: manifest::StateEntry) -> ChangeEntry {
    ChangeEntry {
        key: new.key,
        op: Op::Added,
        hash: Some(new.hash),
        size: new.size,
    }
}

fn removed_row(key: Vec<u8>) -> ChangeEntry {
    ChangeEntry {
        key,
        op: Op::Removed,
        hash: None,
        size: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::{apply_policy, Policy};
    use crate::ids::SnapshotId;
    use crate::repo::manifest::SnapshotInfo;

    /// A snapshot named after its time, at `rfc3339`.
    fn snap(rfc3339: &str) -> SnapshotInfo {
        let time_us = crate::model::json::parse_timestamp(rfc3339)
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
        SnapshotInfo {
            id: SnapshotId::of(rfc3339.as_bytes()),
            logical: SnapshotId::of(rfc3339.as_bytes()),
            name: rfc3339[..16].replace('T', "_"),
            time_us,
            source: "jsonl:/shop.jsonl".into(),
            kinds_filter: String::new(),
            parent: None,
            depth: 0,
            keyframe: true,
            entities: 1,
            raw_bytes: 1,
            bytes_added: 1,
            packs_added: 0,
            tool: String::new(),
            manifest_bytes: 1,
            replaces: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// A nightly job at 06:00 from 2025-11-01 to 2026-12-05, two of its
    /// nights missed (2026-11-20, 2026-12-01), plus hourly snapshots on
    /// the last day and a tagged release.
    fn history() -> Vec<SnapshotInfo> {
        let start = crate::model::json::parse_timestamp("2025-11-01T06:00:00Z").unwrap_or(0);
        let day = 86_400_000_000i64;
        let mut out = Vec::new();
        for d in 0..400 {
            let t = crate::model::json::format_timestamp(start + d * day);
            if t.starts_with("2026-11-20") || t.starts_with("2026-12-01") {
                continue;
            }
            if t.as_str() > "2026-12-05T23" {
                break;
            }
            out.push(snap(&t));
        }
        for h in 7..12 {
            out.push(snap(&format!("2026-12-05T{h:02}:00:00Z")));
        }
        let mut release = snap("2026-03-15T12:30:00Z");
        release.name = "release-3.1".into();
        out.push(release);
        out
    }

    /// Every policy over one history, as a table a person can review:
    /// the snapshots each keeps, newest first, with the rules that keep
    /// them (restic's semantics; docs/retention.md).
    #[test]
    fn policies_over_a_year_of_nightly_snapshots() {
        let snaps = history();
        let policies: Vec<(&str, Policy)> = vec![
            (
                "--keep-last 3",
                Policy {
                    last: Some(3),
                    ..Default::default()
                },
            ),
            (
                "--keep-hourly 3",
                Policy {
                    hourly: Some(3),
                    ..Default::default()
                },
            ),
            (
                "--keep-daily 7",
                Policy {
                    daily: Some(7),
                    ..Default::default()
                },
            ),
            (
                "--keep-weekly 4",
                Policy {
                    weekly: Some(4),
                    ..Default::default()
                },
            ),
            (
                "--keep-monthly 6",
                Policy {
                    monthly: Some(6),
                    ..Default::default()
                },
            ),
            (
                "--keep-yearly 3",
                Policy {
                    yearly: Some(3),
                    ..Default::default()
                },
            ),
            (
                "--keep-daily 2 --keep-weekly 2 --keep-monthly 2 --keep-name 'release-*'",
                Policy {
                    daily: Some(2),
                    weekly: Some(2),
                    monthly: Some(2),
                    names: vec!["release-*".into()],
                    ..Default::default()
                },
            ),
        ];
        let mut table = String::new();
        for (flags, policy) in &policies {
            let kept: Vec<String> = apply_policy(&snaps, policy)
                .into_iter()
                .filter(|(_, why)| !why.is_empty())
                .map(|(s, why)| format!("  {:<16} {}", s.name, why.join(", ")))
                .collect();
            table.push_str(&format!("{flags}: keeps {}\n", kept.len()));
            table.push_str(&kept.join("\n"));
            table.push('\n');
        }
        insta::assert_snapshot!(table);
    }
}
