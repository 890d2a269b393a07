//! Repairs that repair: a damaged pack loses only the bodies in its
//! damaged part (`check --rebuild-index` salvages the rest), `check`
//! names every snapshot that needs a lost body, and `repair snapshots`
//! leaves a repository that `check --read-data` passes, whose repaired
//! snapshots export everything but the lost entities.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{canonical_set, Data, Work};
use rusqlite::Connection;

/// Small blocks and packs, so one pack holds many blocks and a damaged
/// one takes only part of the data with it.
fn init_small(w: &Work) {
    w.init();
    let cfg = w.repo().join("config");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["block_size"] = 4096.into();
    v["pack_size"] = (256 * 1024).into();
    std::fs::write(&cfg, serde_json::to_string(&v).unwrap()).unwrap();
}

type Exports = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// Four snapshots `a1`..`a4` of one source that share most entities, then
/// one snapshot `b1` of another source (other entities, its own packs).
/// Returns each snapshot's export and the packs written by `a1`.
fn build(w: &Work) -> (Exports, Vec<PathBuf>) {
    init_small(w);
    let mut exports = Exports::new();
    let mut data = Data::generate(3_000, 7);
    let mut a1_packs = Vec::new();
    for day in 1..=4u64 {
        if day > 1 {
            data.mutate(day, 30, 10, 10);
        }
        data.write_sorted(&w.path("a.jsonl"));
        let name = format!("a{day}");
        w.ok(&["snapshot", "--from", "jsonl:a.jsonl", "--name", &name, "-q"]);
        if day == 1 {
            a1_packs = packs(w);
        }
        exports.insert(name.clone(), export(w, &name).expect("export"));
    }
    Data::generate(500, 99).write_sorted(&w.path("b.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:b.jsonl", "--name", "b1", "-q"]);
    exports.insert("b1".into(), export(w, "b1").expect("export"));
    (exports, a1_packs)
}

fn packs(w: &Work) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(w.repo().join("packs")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

fn export(w: &Work, snap: &str) -> Option<BTreeMap<String, serde_json::Value>> {
    let file = w.path(&format!("x-{snap}.jsonl"));
    let _ = std::fs::remove_file(&file);
    let out = w.run(&["export", snap, "--to", &format!("jsonl:{}", file.display())]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        return None;
    }
    Some(canonical_set(&file))
}

fn json(w: &Work, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = w.run(args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

/// The largest pack `a1` wrote.
fn largest(packs: &[PathBuf]) -> PathBuf {
    packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .clone()
}

/// After the damage and a rebuilt index: `repair snapshots --forget`
/// leaves a repository `check --read-data` passes, and every repaired
/// snapshot exports exactly its old export less the dropped entities.
fn repair_and_verify(w: &Work, exports: &Exports, lost: u64) {
    let (_, dry) = json(w, &["repair", "snapshots", "--dry-run", "--json"]);
    assert_eq!(dry["lost_entities"], lost, "{dry}");
    let (code, r) = json(w, &["repair", "snapshots", "--forget", "--json"]);
    assert_eq!(code, Some(0), "{r}");
    let mut done = r["repaired"].clone();
    for s in done.as_array_mut().unwrap() {
        assert!(s["new_id"].is_string(), "{s}");
        s.as_object_mut().unwrap().remove("new_id");
    }
    assert_eq!(done, dry["repaired"], "the plan is what is done");
    let dropped: BTreeMap<String, u64> = r["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["dropped"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(dropped.len(), 4, "{r}");
    let out = w.run(&["check", "--read-data"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (name, before) in exports {
        let after = export(w, name).expect("a repaired snapshot exports");
        let n = dropped.get(name).copied().unwrap_or(0);
        assert_eq!(after.len() as u64 + n, before.len() as u64, "{name}");
        for (k, v) in &after {
            assert_eq!(before.get(k), Some(v), "{name}: {k} differs");
        }
    }
    // Nothing is left to repair; a new snapshot stores the lost bodies again.
    let again = w.ok(&["repair", "snapshots"]);
    assert!(again.contains("nothing to repair"), "{again}");
}

#[test]
fn a_truncated_pack_loses_only_its_truncated_part() {
    let w = Work::new();
    let (exports, a1_packs) = build(&w);
    let victim = largest(&a1_packs);
    let len = std::fs::metadata(&victim).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);

    // What the old index can still read, to compare the rebuilt one with.
    let (_, before) = json(
        &w,
        &["repair", "snapshots", "--dry-run", "--read-data", "--json"],
    );
    let lost_before = before["lost_entities"].as_u64().unwrap();
    assert!(lost_before > 0, "{before}");

    let out = w.run(&["check", "--rebuild-index"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("salvaged"), "{stdout}");
    assert!(stdout.contains("no table of contents"), "{stdout}");

    // Only the lost entities, attributed to all four snapshots that hold
    // them, in one problem; b1 untouched.
    let (code, check) = json(&w, &["check", "--read-data", "--json"]);
    assert_eq!(code, Some(3));
    let problems = check["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{check}");
    let problem = problems[0]["problem"].as_str().unwrap();
    assert!(
        problem.starts_with(&format!("{lost_before} entities are not in the index")),
        "the rebuilt index is no worse than the old one: {problem}"
    );
    let affects: Vec<&str> = problems[0]["affects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for s in ["a1", "a2", "a3", "a4"] {
        assert!(
            affects
                .iter()
                .any(|a| a.starts_with(&format!("snapshot {s} ("))),
            "{s} not named: {affects:?}"
        );
    }
    // By name: an id may hold the letters `b1` too.
    assert!(
        !affects.iter().any(|a| a.starts_with("snapshot b1 (")),
        "{affects:?}"
    );

    // b1 is untouched; the a-snapshots fail cleanly.
    assert_eq!(export(&w, "b1").as_ref(), exports.get("b1"));
    for s in ["a1", "a2", "a3", "a4"] {
        assert!(
            export(&w, s).is_none(),
            "{s} exported with entities missing"
        );
    }
    repair_and_verify(&w, &exports, lost_before);
}

#[test]
fn a_flipped_byte_in_one_block_loses_only_that_block() {
    let w = Work::new();
    let (exports, a1_packs) = build(&w);
    let victim = largest(&a1_packs);
    let id = victim.file_name().unwrap().to_string_lossy().to_string();
    // A block in the middle of the pack, from the index.
    let c = Connection::open(w.repo().join("index").join("index.db")).unwrap();
    let blocks: Vec<(i64, i64, i64)> = {
        let mut st = c
            .prepare(
                "SELECT b.bid, b.off, b.clen FROM blocks b JOIN packs p ON p.pid = b.pid \
                 WHERE hex(p.id) = upper(?1) ORDER BY b.off",
            )
            .unwrap();
        st.query_map([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert!(blocks.len() >= 4, "{} blocks", blocks.len());
    let (bid, off, clen) = blocks[blocks.len() / 2];
    let in_block: u64 = c
        .query_row("SELECT count(*) FROM entities WHERE bid = ?1", [bid], |r| {
            r.get(0)
        })
        .unwrap();
    drop(c);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[(off + clen / 2) as usize] ^= 0x5a;
    std::fs::write(&victim, &bytes).unwrap();

    let out = w.run(&["check", "--rebuild-index"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("damaged pack") && stdout.contains("salvaged"),
        "{stdout}"
    );
    let (_, dry) = json(&w, &["repair", "snapshots", "--dry-run", "--json"]);
    let lost = dry["lost_entities"].as_u64().unwrap();
    assert!(
        (1..=in_block).contains(&lost),
        "lost {lost}, the damaged block held {in_block}"
    );
    // Every snapshot that holds a lost body is named, with its kinds.
    let (_, check) = json(&w, &["check", "--json"]);
    let problems = check["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{check}");
    assert!(problems[0]["affects"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a.as_str().unwrap().contains(": kind ")));
    assert_eq!(export(&w, "b1").as_ref(), exports.get("b1"));
    repair_and_verify(&w, &exports, lost);
}

#[test]
fn repair_without_forget_keeps_the_original_and_names_resolve_to_the_repair() {
    let w = Work::new();
    let (exports, a1_packs) = build(&w);
    let victim = largest(&a1_packs);
    let len = std::fs::metadata(&victim).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap();
    f.set_len(len * 2 / 3).unwrap();
    drop(f);
    w.ok(&["repair", "index"]);
    let before = w.ok(&["log"]).lines().count();
    let out = w.ok(&["repair", "snapshots"]);
    assert!(out.contains("the originals stay"), "{out}");
    assert_eq!(w.ok(&["log"]).lines().count(), before + 4);
    // The name resolves to the repair, which exports.
    for s in ["a1", "a4"] {
        let got = export(&w, s).expect("the repair exports");
        assert!(got.len() < exports[s].len());
    }
    // The next snapshot of the source takes the repair as parent and
    // stores the lost bodies again: it reads back whole.
    w.ok(&["snapshot", "--from", "jsonl:a.jsonl", "--name", "a5", "-q"]);
    assert_eq!(export(&w, "a5").as_ref(), exports.get("a4"));
    // The originals are still damaged; a second run does not repair them again.
    let again = w.ok(&["repair", "snapshots", "--dry-run"]);
    assert!(again.contains("nothing to repair"), "{again}");
}

#[test]
fn repair_help_has_examples() {
    let w = Work::new();
    let help = w.ok(&["repair", "--help"]);
    assert!(
        help.contains("kindsnap repair snapshots --forget"),
        "{help}"
    );
    assert!(help.contains("kindsnap repair index"), "{help}");
}
