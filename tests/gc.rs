//! Retention and space: `forget` policies and delta folding, `prune`,
//! `stats`, with real repositories through the `kindsnap` binary; forget
//! and prune cut at every durable file operation (through the library's
//! fault-injecting storage), prune killed at random moments, and a snapshot
//! running during prune.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{bin, canonical_set, copy_dir, Data, Work};
use kindsnap::ops::forget::{forget, ForgetOptions, Policy};
use kindsnap::ops::prune::{prune, PruneOptions};
use kindsnap::progress::NoProgress;
use kindsnap::repo::storage::{FaultyDisk, Op as DiskOp, Storage};
use kindsnap::repo::Repository;

const EVERY_OP: [DiskOp; 6] = [
    DiskOp::Create,
    DiskOp::Write,
    DiskOp::Sync,
    DiskOp::Rename,
    DiskOp::SyncDir,
    DiskOp::Remove,
];

type Export = BTreeMap<String, serde_json::Value>;

/// Take a snapshot of `data` named `name` at time `at` (RFC 3339).
fn snap_at(w: &Work, data: &Data, name: &str, at: &str) {
    data.write_shuffled(&w.path("cur.jsonl"), name.len() as u64);
    let out = w
        .ks()
        .env("KINDSNAP_NOW", at)
        .args([
            "snapshot",
            "--from",
            "jsonl:cur.jsonl",
            "--name",
            name,
            "-q",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Change `changed` entities (their `v` property set to `seed`), delete
/// `removed` and add `added`: like `Data::mutate`, but an entity may change
/// any number of times.
fn churn(data: &mut Data, seed: u64, changed: usize, removed: usize, added: usize) {
    let mut rng = common::Rng::new(seed);
    let keys: Vec<String> = data.lines.keys().cloned().collect();
    for _ in 0..changed {
        let k = &keys[rng.below(keys.len() as u64) as usize];
        let Some(line) = data.lines.get(k).cloned() else {
            continue;
        };
        let start = line.find("\"v\":{\"integerValue\":\"").unwrap() + 21;
        let end = start + line[start..].find('"').unwrap();
        let new = format!(
            "{}{}{}",
            &line[..start],
            seed * 100_000 + rng.below(99_999),
            &line[end..]
        );
        data.lines.insert(k.clone(), new);
    }
    for _ in 0..removed {
        let k = &keys[rng.below(keys.len() as u64) as usize];
        data.lines.remove(k);
    }
    for i in 0..added {
        let path = vec![(
            "Post",
            format!("#{}", 50_000_000 + seed * 10_000 + i as u64),
        )];
        data.insert("", &path, seed, &mut rng);
    }
}

fn export(w: &Work, snap: &str) -> Export {
    let out = w.path(&format!("export-{snap}.jsonl"));
    w.ok(&["export", snap, "--to", &format!("jsonl:{}", out.display())]);
    canonical_set(&out)
}

fn names_in_log(w: &Work) -> Vec<String> {
    let log: Vec<serde_json::Value> = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    let mut v: Vec<String> = log
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Names kept by a policy, per `forget --dry-run --json`, sorted, with
/// the reasons of each.
fn kept(w: &Work, policy: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut args = vec!["forget", "--dry-run", "--json"];
    args.extend_from_slice(policy);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&args)).unwrap();
    let mut out = BTreeMap::new();
    for g in v["groups"].as_array().unwrap() {
        for s in g["snapshots"].as_array().unwrap() {
            if s["keep"] == true {
                let reasons = s["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect();
                out.insert(s["name"].as_str().unwrap().to_string(), reasons);
            }
        }
    }
    out
}

fn keys(m: &BTreeMap<String, Vec<String>>) -> Vec<&str> {
    m.keys().map(|s| s.as_str()).collect()
}

/// Make the repository write a keyframe every `n` snapshots.
fn set_keyframe_interval(w: &Work, n: u32) {
    let cfg = w.repo().join("config");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["keyframe_interval"] = n.into();
    std::fs::write(&cfg, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn forget_policies_follow_restic() {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(30, 1);
    // Two a day at 08:00 and 20:00 from 2025-12-26 to 2026-01-10 (crossing a
    // year and a month), plus one in 2024 and one tagged release.
    let mut times = vec![("y2024".to_string(), "2024-06-01T12:00:00Z".to_string())];
    for day in 0..16 {
        let (y, m, d) = if day < 6 {
            (2025, 12, 26 + day)
        } else {
            (2026, 1, day - 5)
        };
        for h in [8, 20] {
            times.push((
                format!("s{y}{m:02}{d:02}h{h:02}"),
                format!("{y}-{m:02}-{d:02}T{h:02}:00:00Z"),
            ));
        }
    }
    for (i, (name, at)) in times.iter().enumerate() {
        churn(&mut data, i as u64 + 10, 2, 0, 1);
        snap_at(&w, &data, name, at);
    }

    let k = kept(&w, &["--keep-last", "3"]);
    assert_eq!(
        keys(&k),
        ["s20260109h20", "s20260110h08", "s20260110h20"],
        "{k:?}"
    );
    assert_eq!(k["s20260110h20"], ["last"]);

    // Daily: the newest of each of the 3 newest days.
    let k = kept(&w, &["--keep-daily", "3"]);
    assert_eq!(keys(&k), ["s20260108h20", "s20260109h20", "s20260110h20"]);

    // Hourly: each snapshot is its own hour.
    let k = kept(&w, &["--keep-hourly", "2"]);
    assert_eq!(keys(&k), ["s20260110h08", "s20260110h20"]);

    // Weekly (ISO weeks; 2026-01-05 is a Monday): weeks of 01-10, 01-04.
    let k = kept(&w, &["--keep-weekly", "2"]);
    assert_eq!(keys(&k), ["s20260104h20", "s20260110h20"]);

    // Monthly and yearly: the newest of each period that has snapshots.
    let k = kept(&w, &["--keep-monthly", "3"]);
    assert_eq!(keys(&k), ["s20251231h20", "s20260110h20", "y2024"]);
    let k = kept(&w, &["--keep-yearly", "5"]);
    assert_eq!(keys(&k), ["s20251231h20", "s20260110h20", "y2024"]);

    // Name globs, and several rules: each kept snapshot says why.
    let k = kept(
        &w,
        &[
            "--keep-last",
            "1",
            "--keep-daily",
            "2",
            "--keep-name",
            "y20*",
        ],
    );
    assert_eq!(keys(&k), ["s20260109h20", "s20260110h20", "y2024"]);
    assert_eq!(k["s20260110h20"], ["last", "daily"]);
    assert_eq!(k["s20260109h20"], ["daily"]);
    assert_eq!(k["y2024"], ["name y20*"]);

    // A dry run changed nothing.
    assert_eq!(names_in_log(&w).len(), times.len());

    // The human output says why, line by line.
    let text = w.ok(&[
        "forget",
        "--dry-run",
        "--keep-last",
        "1",
        "--keep-name",
        "y2024",
    ]);
    assert!(
        text.contains("keep") && text.contains("name y2024"),
        "{text}"
    );
    assert!(text.contains("no rule keeps it"), "{text}");
}

#[test]
fn forget_refuses_no_policy_and_empty_groups() {
    let w = Work::new();
    w.init();
    let data = Data::generate(20, 2);
    snap_at(&w, &data, "a", "2026-01-01T00:00:00Z");
    snap_at(&w, &data, "b", "2026-01-02T00:00:00Z");
    let err = w.fails(&["forget"]);
    assert!(err.contains("no keep-policy"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let err = w.fails(&["forget", "--keep-name", "nothing-*"]);
    assert!(
        err.contains("would remove all 2 snapshots") && err.contains("--allow-empty"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(names_in_log(&w), ["a", "b"]);
    w.ok(&["forget", "--keep-name", "nothing-*", "--allow-empty"]);
    assert!(names_in_log(&w).is_empty());
    w.ok(&["check"]);
}

/// Many deltas and keyframes, a kind that vanishes and comes back; forget
/// every other snapshot, then more: every kept snapshot exports exactly as
/// before, the repository checks, and snapshots continue on top.
#[test]
fn forget_folds_deltas_and_kept_snapshots_read_back_identically() {
    let w = Work::new();
    w.init();
    set_keyframe_interval(&w, 4);
    let mut data = Data::generate(600, 3);
    let mut before: BTreeMap<String, Export> = BTreeMap::new();
    for day in 1..=14u64 {
        churn(&mut data, day * 7, 30, 10, 8);
        let mut d = data.clone();
        if (5..=7).contains(&day) {
            // Comments vanish for three days, then come back.
            d.lines.retain(|k, _| !k.contains("Comment"));
        }
        let name = format!("day{day:02}");
        snap_at(&w, &d, &name, &format!("2026-03-{day:02}T06:00:00Z"));
        before.insert(name.clone(), export(&w, &name));
    }
    let ids_before: Vec<serde_json::Value> =
        serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();

    // Keep the odd days (and so forget deltas, keyframes, and the days a
    // kind was missing).
    let out = w.ok(&[
        "forget",
        "--keep-name",
        "day?1",
        "--keep-name",
        "day?3",
        "--keep-name",
        "day?5",
        "--keep-name",
        "day?7",
        "--keep-name",
        "day?9",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["removed"], 7, "{v}");
    assert!(v["rewritten"].as_u64().unwrap() >= 1, "{v}");
    let kept = names_in_log(&w);
    assert_eq!(
        kept,
        ["day01", "day03", "day05", "day07", "day09", "day11", "day13"]
    );
    for name in &kept {
        assert_eq!(export(&w, name), before[name], "{name} after forget");
    }
    // Snapshots not rewritten keep their ids.
    let ids_after: Vec<serde_json::Value> =
        serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    let before_day1 = ids_before.iter().find(|s| s["name"] == "day01").unwrap();
    let after_day1 = ids_after.iter().find(|s| s["name"] == "day01").unwrap();
    assert_eq!(before_day1["id"], after_day1["id"]);
    w.ok(&["check", "--read-data"]);
    let diff: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "day03", "day05", "--json"])).unwrap();
    assert!(common::count_changes(&diff, "removed") > 0, "{diff}");

    // Forget more (the oldest now), prune, and read everything back.
    w.ok(&["forget", "--keep-last", "3"]);
    assert_eq!(names_in_log(&w), ["day09", "day11", "day13"]);
    w.ok(&["prune", "--max-unused", "0"]);
    w.ok(&["check", "--read-data"]);
    for name in ["day09", "day11", "day13"] {
        assert_eq!(export(&w, name), before[name], "{name} after prune");
    }
    // The chain continues: a new snapshot on top of the rewritten ones.
    churn(&mut data, 999, 20, 5, 5);
    snap_at(&w, &data, "day15", "2026-03-15T06:00:00Z");
    let want = {
        let p = w.path("want.jsonl");
        data.write_sorted(&p);
        canonical_set(&p)
    };
    assert_eq!(export(&w, "day15"), want);
    w.ok(&["check", "--read-data"]);
}

fn repo_files(w: &Work) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                if !rel.starts_with("tmp") && !rel.starts_with("locks") {
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&w.repo(), &w.repo(), &mut out);
    out
}

/// A repository with 8 daily snapshots of 3,000 entities where a lot
/// changes daily; returns the exports of the last 2 (kept by
/// `--keep-last 2`).
fn churned_repo(w: &Work) -> BTreeMap<String, Export> {
    w.init();
    let mut data = Data::generate(3000, 5);
    let mut out = BTreeMap::new();
    for day in 1..=8u64 {
        churn(&mut data, day, 600, 50, 100);
        let name = format!("d{day}");
        snap_at(w, &data, &name, &format!("2026-04-0{day}T06:00:00Z"));
        if day >= 7 {
            out.insert(name.clone(), export(w, &name));
        }
    }
    out
}

#[test]
fn prune_frees_space_and_dry_run_changes_nothing() {
    let w = Work::new();
    let want = churned_repo(&w);
    let stats: serde_json::Value = serde_json::from_str(&w.ok(&["stats", "--json"])).unwrap();
    assert_eq!(stats["snapshots"], 8);
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 3.0, "{stats}");
    assert_eq!(stats["growth"].as_array().unwrap().len(), 8);
    let kinds: Vec<String> = stats["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            format!(
                "{}/{}",
                k["namespace"].as_str().unwrap(),
                k["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "/Comment",
            "/Post",
            "/User",
            "t1/Comment",
            "t1/Post",
            "t1/User"
        ],
        "{stats}"
    );
    let one: serde_json::Value = serde_json::from_str(&w.ok(&["stats", "d8", "--json"])).unwrap();
    assert_eq!(one["name"], "d8");
    assert!(one["kinds"].as_array().unwrap().len() >= 3);

    // Dry runs change nothing, byte for byte.
    let files = repo_files(&w);
    w.ok(&["forget", "--keep-last", "2", "--dry-run"]);
    assert_eq!(repo_files(&w), files);
    w.ok(&["forget", "--keep-last", "2"]);
    let files = repo_files(&w);
    let dry: serde_json::Value =
        serde_json::from_str(&w.ok(&["prune", "--dry-run", "--json"])).unwrap();
    assert_eq!(
        repo_files(&w),
        files,
        "prune --dry-run changed the repository"
    );
    assert!(dry["bytes_freed"].as_u64().unwrap() > 0, "{dry}");

    let r: serde_json::Value = serde_json::from_str(&w.ok(&["prune", "--json"])).unwrap();
    assert!(r["bytes_freed"].as_u64().unwrap() > 0, "{r}");
    assert!(
        r["packs_deleted"].as_u64().unwrap() + r["packs_repacked"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert_eq!(
        r["bytes_after"].as_u64().unwrap(),
        r["bytes_before"].as_u64().unwrap() - r["bytes_freed"].as_u64().unwrap()
    );
    w.ok(&["check", "--read-data"]);
    for (name, exp) in &want {
        assert_eq!(&export(&w, name), exp, "{name}");
    }
    // Nothing left to do the second time.
    let again: serde_json::Value = serde_json::from_str(&w.ok(&["prune", "--json"])).unwrap();
    assert_eq!(again["packs_deleted"], 0, "{again}");
    assert_eq!(again["packs_repacked"], 0, "{again}");
    let after: serde_json::Value = serde_json::from_str(&w.ok(&["stats", "--json"])).unwrap();
    assert!(
        after["pack_bytes"].as_u64().unwrap() < stats["pack_bytes"].as_u64().unwrap(),
        "{after}"
    );
}

#[test]
fn prune_refuses_a_damaged_repository_unless_forced() {
    let w = Work::new();
    w.init();
    let data = Data::generate(300, 6);
    snap_at(&w, &data, "a", "2026-01-01T00:00:00Z");
    // Lose a pack the snapshot needs.
    let packs = w.repo().join("packs");
    let sub = std::fs::read_dir(&packs).unwrap().flatten().next().unwrap();
    let pack = std::fs::read_dir(sub.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    std::fs::remove_file(pack.path()).unwrap();
    let err = w.fails(&["prune"]);
    assert!(
        err.contains("refuses") && err.contains("--force") && err.contains("problem"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    w.ok(&["prune", "--force"]);
}

/// Run `op` on the repository of `w` with its durable file operations
/// going through `storage`.
fn through<T>(
    w: &Work,
    storage: Arc<dyn Storage>,
    op: impl FnOnce(&mut Repository) -> kindsnap::Result<T>,
) -> kindsnap::Result<T> {
    let mut repo = Repository::open(&w.repo())?.with_storage(storage);
    op(&mut repo)
}

fn forget_last_2(repo: &mut Repository) -> kindsnap::Result<()> {
    let policy = Policy {
        last: Some(2),
        ..Default::default()
    };
    forget(repo, &policy, &ForgetOptions::default(), &NoProgress).map(|_| ())
}

fn prune_all(repo: &mut Repository) -> kindsnap::Result<()> {
    let opts = PruneOptions {
        max_unused: 0.0,
        ..Default::default()
    };
    prune(repo, &opts, &NoProgress).map(|_| ())
}

/// The cut points to try out of `total` operations: every one when there
/// are few, else the first and last two and an even spread between
/// (each point costs a copy, a check and two prunes).
fn cut_points(total: u64) -> Vec<u64> {
    if total <= 10 {
        return (1..=total).collect();
    }
    let mut points: Vec<u64> = (1..=2).chain(total - 1..=total).collect();
    points.extend((1..7).map(|i| 2 + i * (total - 4) / 7));
    points.sort();
    points.dedup();
    points
}

/// Forget and prune whose N-th durable file operation (create, write,
/// fsync, rename, delete) fails, for N over the whole run: the error names
/// the fault, and the repository passes `check --read-data`, lists each
/// snapshot once, reads back the kept snapshots exactly, and the same
/// command run again completes the job.
#[test]
fn forget_and_prune_cut_at_each_step_leave_a_checkable_repository() {
    let template = Work::new();
    let want = churned_repo(&template);
    let verify = |w: &Work, when: &str| {
        let out = w.run(&["check", "--read-data"]);
        assert!(
            out.status.success(),
            "check after {when}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let names = names_in_log(w);
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique, "a snapshot shows twice after {when}");
        for (name, exp) in &want {
            assert_eq!(&export(w, name), exp, "{name} after {when}");
        }
    };
    let fresh = |forgotten: bool| {
        let w = Work::new();
        copy_dir(&template.repo(), &w.repo());
        if forgotten {
            w.ok(&["forget", "--keep-last", "2"]);
        }
        w
    };
    type Op = fn(&mut Repository) -> kindsnap::Result<()>;
    for (what, forgotten, op) in [
        ("forget", false, forget_last_2 as Op),
        ("prune", true, prune_all as Op),
    ] {
        let counting = FaultyDisk::new(u64::MAX, &EVERY_OP);
        through(&fresh(forgotten), counting.clone(), op).unwrap();
        let total = counting.ops();
        assert!(total >= 5, "{what}: only {total} durable operations");
        for n in cut_points(total) {
            let when = format!("{what} cut at operation {n} of {total}");
            let w = fresh(forgotten);
            let err = through(&w, FaultyDisk::new(n, &EVERY_OP), op)
                .expect_err(&format!("{when} succeeded"));
            let msg = format!("{:#}", anyhow::Error::from(err));
            assert!(msg.contains("injected fault"), "{when}: {msg}");
            verify(&w, &when);
            // The same command again completes the job.
            if what == "forget" {
                w.ok(&["forget", "--keep-last", "2"]);
                assert_eq!(names_in_log(&w), ["d7", "d8"], "after {when}");
            }
            let again: serde_json::Value =
                serde_json::from_str(&w.ok(&["prune", "--max-unused", "0", "--json"])).unwrap();
            verify(&w, &format!("{when}, then prune"));
            let last: serde_json::Value =
                serde_json::from_str(&w.ok(&["prune", "--max-unused", "0", "--json"])).unwrap();
            assert_eq!(last["packs_deleted"], 0, "{when}: {again} then {last}");
            assert_eq!(last["packs_repacked"], 0, "{when}: {last}");
            assert_eq!(last["unindexed_deleted"], 0, "{when}: {last}");
        }
    }
}

#[test]
fn prune_sigkilled_at_random_moments_recovers() {
    let template = Work::new();
    let want = churned_repo(&template);
    let w = Work::new();
    let status = Command::new("cp")
        .arg("-a")
        .arg(template.repo())
        .arg(w.repo())
        .status()
        .unwrap();
    assert!(status.success());
    w.ok(&["forget", "--keep-last", "2"]);
    for delay_ms in [5u64, 20, 40, 80, 160] {
        let mut child = Command::new(bin())
            .arg("--repo")
            .arg(w.repo())
            .args(["prune", "--max-unused", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        w.ok(&["check", "--read-data"]);
    }
    w.ok(&["prune", "--max-unused", "0"]);
    w.ok(&["check", "--read-data"]);
    for (name, exp) in &want {
        assert_eq!(&export(&w, name), exp, "{name}");
    }
}

#[test]
fn a_snapshot_running_during_prune_loses_nothing() {
    let w = Work::new();
    let _ = churned_repo(&w);
    w.ok(&["forget", "--keep-last", "1"]);
    let big = Data::generate(20_000, 9);
    big.write_shuffled(&w.path("big.jsonl"), 3);
    for prune_first in [false, true] {
        let name = format!("big{prune_first}");
        let spawn = |args: &[&str]| {
            Command::new(bin())
                .current_dir(w.dir.path())
                .env("KINDSNAP_CACHE_DIR", w.cache_dir())
                .arg("--repo")
                .arg(w.repo())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let snap_args = ["snapshot", "--from", "jsonl:big.jsonl", "--name", &name];
        let prune_args = ["prune", "--max-unused", "0"];
        let first = if prune_first {
            spawn(&prune_args)
        } else {
            spawn(&snap_args)
        };
        std::thread::sleep(std::time::Duration::from_millis(30));
        let other = if prune_first {
            spawn(&snap_args)
        } else {
            spawn(&prune_args)
        };
        for c in [first, other] {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        w.ok(&["check", "--read-data"]);
        let want = {
            let p = w.path("want.jsonl");
            big.write_sorted(&p);
            canonical_set(&p)
        };
        assert_eq!(export(&w, &name), want, "{name}");
        // Forget the big one again so the next round's prune has work.
        if !prune_first {
            w.ok(&["forget", "--keep-name", "d8", "--allow-empty"]);
        }
    }
}

/// Keys of `info`'s entities, read through the library.
fn library_keys(
    repo: &kindsnap::repo::Repository,
    info: &kindsnap::repo::manifest::SnapshotInfo,
) -> kindsnap::Result<Vec<String>> {
    let mut keys = Vec::new();
    kindsnap::ops::export::export(
        repo,
        info,
        None,
        &kindsnap::progress::NoProgress,
        &mut |e| {
            keys.push(format!("{:?}", e.key));
            Ok(())
        },
    )?;
    Ok(keys)
}

/// A reader resolves a name, then a `forget` rewrites that snapshot (a
/// new manifest id) before the reader takes its lock: the read still
/// succeeds, with the same entities.
#[test]
fn a_read_resolved_before_a_forget_rewrote_the_snapshot_still_reads_it() {
    let w = Work::new();
    w.init();
    set_keyframe_interval(&w, 8);
    let mut data = Data::generate(300, 5);
    for day in 1..=4u64 {
        churn(&mut data, day * 3, 20, 5, 5);
        snap_at(
            &w,
            &data,
            &format!("day{day}"),
            &format!("2026-04-0{day}T06:00:00Z"),
        );
    }
    let repo = kindsnap::repo::Repository::open(&w.repo()).unwrap();
    let stale = kindsnap::ops::find_snapshot(&repo, "day3").unwrap();
    let want = library_keys(&repo, &stale).unwrap();
    assert!(want.len() > 250, "{}", want.len());
    // Forgetting day2 folds its delta into day3, which gets a new id.
    let out = w.ok(&[
        "forget",
        "--keep-name",
        "day1",
        "--keep-name",
        "day3",
        "--keep-name",
        "day4",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["removed"], 1, "{v}");
    let fresh = kindsnap::ops::find_snapshot(&repo, "day3").unwrap();
    assert_ne!(fresh.id, stale.id, "forget did not rewrite day3: {v}");
    assert_eq!(library_keys(&repo, &stale).unwrap(), want);
    assert_eq!(library_keys(&repo, &fresh).unwrap(), want);
}

/// `forget NAME|ID…` removes exactly the snapshots named (by name or id
/// prefix) and keeps every other, folding a forgotten delta into its
/// child; the rest reads back exactly. Unknown names and mixing with
/// keep-rules are refused in one line, changing nothing.
#[test]
fn forget_named_snapshots_keeps_the_rest() {
    let w = Work::new();
    let want = churned_repo(&w);
    let log: Vec<serde_json::Value> = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    let d3 = log.iter().find(|s| s["name"] == "d3").unwrap()["id"]
        .as_str()
        .unwrap()[..10]
        .to_string();
    let before = repo_files(&w);
    for (args, needle) in [
        (vec!["forget", "nosuch"], "snapshot `nosuch` not found"),
        (vec!["forget", "d1", "--keep-last", "1"], "not both"),
    ] {
        let err = w.fails(&args);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    assert_eq!(
        repo_files(&w),
        before,
        "a refused forget changed the repository"
    );

    let v: serde_json::Value =
        serde_json::from_str(&w.ok(&["forget", "d7", &d3, "--json"])).unwrap();
    assert_eq!(v["removed"], 2, "{v}");
    assert_eq!(v["kept"], 6, "{v}");
    assert_eq!(names_in_log(&w), ["d1", "d2", "d4", "d5", "d6", "d8"]);
    w.ok(&["check", "--read-data"]);
    assert_eq!(export(&w, "d8"), want["d8"]);
}
