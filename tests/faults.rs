//! Fault injection through the storage trait: a snapshot whose N-th
//! durable file operation (create, write, fsync, rename, directory fsync)
//! fails — for every N until the snapshot gets through — ends in an error
//! naming the file, and leaves a repository that `check --read-data`
//! passes, with the earlier snapshot intact and no half snapshot listed.
//! The library is called directly with a `FaultyDisk`; no process is
//! killed and no hook hides in release code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{copy_dir, Data, Work};
use kindsnap::ops::snapshot::{snapshot, SnapshotOptions};
use kindsnap::progress::NoProgress;
use kindsnap::repo::storage::{FaultyDisk, Op, Storage};
use kindsnap::repo::Repository;

const EVERY_OP: [Op; 6] = [
    Op::Create,
    Op::Write,
    Op::Sync,
    Op::Rename,
    Op::SyncDir,
    Op::Remove,
];

/// Snapshot `file` as `day2` into the repository at `root`, its durable
/// writes going through `storage`.
fn snapshot_through(root: &Path, file: &Path, storage: Arc<dyn Storage>) -> kindsnap::Result<()> {
    let repo = Repository::open(root)?.with_storage(storage);
    let spec = format!("jsonl:{}", file.display());
    let mut source = kindsnap::connector::open_source(&spec, &Default::default())?;
    let opts = SnapshotOptions {
        name: Some("day2".into()),
        ..Default::default()
    };
    snapshot(&repo, source.as_mut(), &opts, &NoProgress).map(|_| ())
}

#[test]
fn a_snapshot_cut_at_every_durable_write_leaves_a_sound_repository() {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(2_000, 21);
    data.write_sorted(&w.path("day1.jsonl"));
    w.ok(&[
        "snapshot",
        "--from",
        "jsonl:day1.jsonl",
        "--name",
        "day1",
        "-q",
    ]);
    w.ok(&["export", "day1", "--to", "jsonl:day1-out.jsonl"]);
    let day1_bytes = std::fs::read(w.path("day1-out.jsonl")).unwrap();
    data.mutate(2, 200, 50, 300);
    data.write_sorted(&w.path("day2.jsonl"));
    let base = w.path("base");
    copy_dir(&w.repo(), &base);

    // How many durable operations a whole day-2 snapshot makes.
    let counting = FaultyDisk::new(u64::MAX, &EVERY_OP);
    let dry = w.path("count");
    copy_dir(&base, &dry);
    snapshot_through(&dry, &w.path("day2.jsonl"), counting.clone()).unwrap();
    let total = counting.ops();
    assert!(total >= 10, "only {total} durable operations");

    for n in 1..=total {
        // A fresh copy of the day-1 repository as `repo`, cut at op n.
        std::fs::remove_dir_all(w.repo()).unwrap();
        copy_dir(&base, &w.repo());
        let faulty = FaultyDisk::new(n, &EVERY_OP);
        let err = snapshot_through(&w.repo(), &w.path("day2.jsonl"), faulty).expect_err(&format!(
            "the snapshot survived a fault at op {n} of {total}"
        ));
        // As the CLI prints it: the error and its sources on one line.
        let msg = format!("{:#}", anyhow::Error::from(err));
        assert!(msg.contains("injected fault"), "op {n}: {msg}");
        assert_eq!(msg.lines().count(), 1, "op {n}: {msg}");

        // Sound, day 1 intact, no day 2.
        let out = w.run(&["check", "--read-data"]);
        assert!(
            out.status.success(),
            "op {n}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // No half snapshot: day 2 is listed only when the fault hit the
        // directory fsync after its manifest's rename (the commit point),
        // and then it is whole.
        let log = w.ok(&["log"]);
        if log.contains("day2") {
            assert_eq!(n, total, "op {n} of {total} left a listed day 2: {log}");
            w.ok(&["export", "day2", "--to", "jsonl:day2-out.jsonl"]);
            assert_eq!(
                common::canonical_set(&w.path("day2-out.jsonl")),
                common::canonical_set(&w.path("day2.jsonl")),
                "op {n}"
            );
        }
        w.ok(&["export", "day1", "--to", "jsonl:again.jsonl"]);
        assert_eq!(
            std::fs::read(w.path("again.jsonl")).unwrap(),
            day1_bytes,
            "op {n}"
        );
        // The same command again gets through (or finds day 2 whole, as a
        // cron rerun does) and everything is stored.
        w.ok(&[
            "snapshot",
            "--from",
            "jsonl:day2.jsonl",
            "--name",
            "day2",
            "-q",
        ]);
        w.ok(&["check", "--read-data"]);
        w.ok(&["export", "day2", "--to", "jsonl:day2-out.jsonl"]);
        assert_eq!(
            common::canonical_set(&w.path("day2-out.jsonl")),
            common::canonical_set(&w.path("day2.jsonl")),
            "op {n}"
        );
    }
}
