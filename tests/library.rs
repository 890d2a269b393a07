//! The library used directly, as an embedding program would: snapshots
//! through `ops::snapshot`, manifest chains read back through
//! `repo::manifest::Chain`, diffs through `ops::diff`, reads through
//! `ops::read`, retention through `ops::forget`, and cancellation through
//! the options' token. No `kindsnap` process runs here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{canonical_set, Data, Work};
use kindsnap::connector::jsonl::JsonlSink;
use kindsnap::interrupt::Cancel;
use kindsnap::ops::diff::{diff, Change, DiffOptions};
use kindsnap::ops::snapshot::{snapshot, SnapshotOptions, SnapshotReport};
use kindsnap::progress::NoProgress;
use kindsnap::repo::manifest::Chain;
use kindsnap::repo::Repository;

fn take(
    repo: &Repository,
    file: &Path,
    name: &str,
    cancel: Cancel,
) -> kindsnap::Result<SnapshotReport> {
    let opts = SnapshotOptions {
        name: Some(name.into()),
        cancel,
        ..Default::default()
    };
    take_with(repo, file, &opts)
}

fn take_with(
    repo: &Repository,
    file: &Path,
    opts: &SnapshotOptions,
) -> kindsnap::Result<SnapshotReport> {
    let spec = format!("jsonl:{}", file.display());
    let mut source = kindsnap::connector::open_source(&spec, &Default::default())?;
    snapshot(repo, source.as_mut(), opts, &NoProgress)
}

/// Each kind's name and digest (its live keys and entity hashes) in the
/// manifest of snapshot `id`.
fn digests(repo: &Repository, id: &kindsnap::ids::SnapshotId) -> BTreeSet<(String, [u8; 32])> {
    let chain = Chain::open(repo, id).unwrap();
    let kinds = chain.head().kinds().unwrap();
    kinds.into_iter().map(|k| (k.kind, k.digest)).collect()
}

/// Every entity of snapshot `spec`, as canonical JSON keyed by key.
fn exported(w: &Work, repo: &Repository, spec: &str) -> BTreeMap<String, serde_json::Value> {
    let info = kindsnap::ops::find_snapshot(repo, spec).unwrap();
    let out = w.path(&format!("export-{spec}.jsonl"));
    let mut sink = JsonlSink::create(&out).unwrap();
    kindsnap::ops::export::export(repo, &info, None, &NoProgress, &mut |e| sink.write(&e)).unwrap();
    sink.finish().unwrap();
    canonical_set(&out)
}

/// Five days of changes, every state kept: each snapshot reads back as
/// its day's data through the chain of manifests (keyframes and deltas
/// alike), every key the state lists is found by `lookup` with the same
/// hash, and the diff of two days names exactly the keys whose content
/// differs.
#[test]
fn a_chain_of_manifests_reads_back_every_day() {
    let w = Work::new();
    let repo = Repository::init(&w.repo()).unwrap();
    let mut data = Data::generate(1_500, 3);
    let mut days = Vec::new();
    for day in 1..=5u64 {
        if day > 1 {
            data.mutate(day, 60, 20, 30);
        }
        // One file, as a nightly export would be: one source, one history.
        let file = w.path("shop.jsonl");
        data.write_shuffled(&file, day);
        let report = take(&repo, &file, &format!("day{day}"), Cancel::new()).unwrap();
        assert_eq!(report.name, format!("day{day}"));
        assert_eq!(report.parent.is_some(), day > 1, "day {day}");
        days.push((report, canonical_set(&file)));
    }
    for (report, want) in &days {
        assert_eq!(&exported(&w, &repo, &report.name), want, "{}", report.name);
        let chain = Chain::open(&repo, &report.id).unwrap();
        let mut listed = 0u64;
        for k in chain.head().kinds().unwrap() {
            let mut state = chain.state(&k.namespace, &k.kind).unwrap();
            let mut last: Option<Vec<u8>> = None;
            while let Some(entry) = state.next_entry().unwrap() {
                assert!(
                    last.as_ref().is_none_or(|l| *l < entry.key),
                    "keys in order"
                );
                let found = chain.lookup(&k.namespace, &k.kind, &entry.key).unwrap();
                assert_eq!(found.map(|f| f.hash), Some(entry.hash));
                last = Some(entry.key);
                listed += 1;
            }
        }
        assert_eq!(listed, want.len() as u64, "{}", report.name);
        assert_eq!(report.entities, listed, "{}", report.name);
    }
    // Diffs name exactly the keys whose content differs, adjacent or not.
    for (a, b) in [(0, 1), (1, 4), (4, 0)] {
        let (ra, wa) = &days[a];
        let (rb, wb) = &days[b];
        let ia = kindsnap::ops::find_snapshot(&repo, &ra.name).unwrap();
        let ib = kindsnap::ops::find_snapshot(&repo, &rb.name).unwrap();
        let opts = DiffOptions {
            entries: true,
            ..Default::default()
        };
        let mut seen: BTreeMap<Change, u64> = BTreeMap::new();
        let (kinds, _) = diff(&repo, &ia, &ib, &opts, &mut |_, e| {
            *seen.entry(e.change).or_default() += 1;
            Ok(())
        })
        .unwrap();
        let keys_a: BTreeSet<&String> = wa.keys().collect();
        let keys_b: BTreeSet<&String> = wb.keys().collect();
        let added = keys_b.difference(&keys_a).count() as u64;
        let removed = keys_a.difference(&keys_b).count() as u64;
        let changed = keys_a
            .intersection(&keys_b)
            .filter(|k| wa[**k] != wb[**k])
            .count() as u64;
        let sum = |f: fn(&kindsnap::ops::diff::KindDiff) -> u64| kinds.iter().map(f).sum::<u64>();
        let what = format!("{} → {}", ra.name, rb.name);
        assert_eq!(sum(|k| k.added), added, "{what}");
        assert_eq!(sum(|k| k.removed), removed, "{what}");
        assert_eq!(sum(|k| k.changed), changed, "{what}");
        assert_eq!(
            seen.get(&Change::Added).copied().unwrap_or(0),
            added,
            "{what}"
        );
        assert_eq!(
            seen.get(&Change::Changed).copied().unwrap_or(0),
            changed,
            "{what}"
        );
        assert!(added + removed + changed > 0, "{what}");
    }
    // References resolve against the history.
    let prev = kindsnap::ops::find_snapshot(&repo, "latest~1").unwrap();
    assert_eq!(prev.name, "day4");
    let log = kindsnap::ops::read::log(&repo).unwrap();
    let names: Vec<&str> = log.snapshots.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["day5", "day4", "day3", "day2", "day1"]);
    assert!(log.unreadable.is_empty());
}

/// A cancelled token stops a snapshot before it publishes anything; the
/// repository is unchanged and the next snapshot, with a fresh token,
/// goes through.
#[test]
fn a_cancelled_snapshot_publishes_nothing() {
    let w = Work::new();
    let repo = Repository::init(&w.repo()).unwrap();
    let data = Data::generate(20_000, 9);
    let file = w.path("big.jsonl");
    data.write_shuffled(&file, 1);
    let cancel = Cancel::new();
    cancel.cancel();
    let err = take(&repo, &file, "big", cancel).unwrap_err();
    assert!(matches!(err, kindsnap::Error::Interrupted), "{err}");
    assert!(kindsnap::ops::read::log(&repo)
        .unwrap()
        .snapshots
        .is_empty());
    take(&repo, &file, "big", Cancel::new()).unwrap();
    assert_eq!(exported(&w, &repo, "big"), canonical_set(&file));
}

/// The JSON Lines line cache through the library: the report counts the
/// lines it vouched for (exactly the lines that did not change since the
/// parent), and the snapshot it helps make holds the same keys and
/// entity hashes as one read without it. A cache written for another
/// parent is not used.
#[test]
fn the_line_cache_vouches_for_unchanged_lines_only() {
    let w = Work::new();
    let cached = Repository::init(&w.path("cached")).unwrap();
    let plain = Repository::init(&w.path("plain")).unwrap();
    let with_cache = |name: &str| SnapshotOptions {
        name: Some(name.into()),
        cache_dir: Some(w.cache_dir()),
        ..Default::default()
    };
    let without = |name: &str| SnapshotOptions {
        name: Some(name.into()),
        ..Default::default()
    };
    let file = w.path("shop.jsonl");
    let mut data = Data::generate(3_000, 11);
    data.write_sorted(&file);
    let day1 = std::fs::read_to_string(&file).unwrap();
    let c1 = take_with(&cached, &file, &with_cache("d1")).unwrap();
    take_with(&plain, &file, &without("d1")).unwrap();
    assert_eq!(c1.from_cache, 0, "a first snapshot has nothing cached");

    data.mutate(2, 70, 20, 40);
    data.write_sorted(&file);
    let day2 = std::fs::read_to_string(&file).unwrap();
    let old: BTreeSet<&str> = day1.lines().collect();
    let unchanged = day2.lines().filter(|l| old.contains(l)).count() as u64;
    assert!(unchanged > 2_800 && unchanged < 3_000, "{unchanged}");
    let c2 = take_with(&cached, &file, &with_cache("d2")).unwrap();
    let p2 = take_with(&plain, &file, &without("d2")).unwrap();
    assert_eq!(c2.from_cache, unchanged, "every unchanged line, no other");
    assert_eq!(p2.from_cache, 0, "no cache, no hits");
    assert_eq!(digests(&cached, &c2.id), digests(&plain, &p2.id));
    assert_eq!(c2.entities, p2.entities);
    assert_eq!(exported(&w, &cached, "d2"), canonical_set(&file));

    // A snapshot taken without the cache becomes the parent; the cache
    // still describes d2, so the next snapshot may not trust it.
    data.mutate(3, 50, 10, 10);
    data.write_sorted(&file);
    take_with(&cached, &file, &without("d3")).unwrap();
    data.mutate(4, 50, 10, 10);
    data.write_sorted(&file);
    let c4 = take_with(&cached, &file, &with_cache("d4")).unwrap();
    assert_eq!(c4.from_cache, 0, "a cache of another parent is ignored");
    assert_eq!(exported(&w, &cached, "d4"), canonical_set(&file));
    // … and is whole again after that run.
    let c5 = take_with(&cached, &file, &with_cache("d5")).unwrap();
    assert_eq!(c5.from_cache, c5.entities);
}
