//! Format compatibility: repositories written by earlier builds stay
//! readable, and the canonical encoding does not drift (a fresh snapshot of
//! the same data stores no new entity bodies in an old repository).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{canonical_set, copy_dir, Work};

#[test]
fn repository_format_v1_reads_and_dedups() {
    let w = Work::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&root.join("tests/fixtures/repo-v1"), &w.repo());
    // As in a git checkout: the empty tmp/ is not there.
    let _ = std::fs::remove_dir_all(w.repo().join("tmp"));

    let log = w.ok(&["log"]);
    assert!(log.contains("monday") && log.contains("tuesday"), "{log}");
    w.ok(&["check", "--read-data"]);

    for (snap, file) in [("monday", "day1.jsonl"), ("tuesday", "day2.jsonl")] {
        let out = w.path(&format!("{snap}.jsonl"));
        w.ok(&["export", snap, "--to", &format!("jsonl:{}", out.display())]);
        assert_eq!(
            canonical_set(&out),
            canonical_set(&root.join("docs/examples").join(file)),
            "{snap}"
        );
    }

    let v: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "monday", "tuesday", "--json"])).unwrap();
    let count = |c: &str| common::count_changes(&v, c);
    assert_eq!(
        (count("added"), count("removed"), count("changed")),
        (2, 1, 3)
    );

    // Today's build encodes the same data to the same hashes: nothing new
    // is stored.
    std::fs::copy(root.join("docs/examples/day2.jsonl"), w.path("again.jsonl")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&w.ok(&[
        "snapshot",
        "--from",
        "jsonl:again.jsonl",
        "--name",
        "again",
        "--json",
    ]))
    .unwrap();
    for k in s["kinds"].as_array().unwrap() {
        assert_eq!(
            k["bytes_added"], 0,
            "kind {} stored new bodies: the encoding drifted",
            k["kind"]
        );
    }
    assert!(w
        .ok(&["diff", "tuesday", "again"])
        .contains("no differences"));
}
