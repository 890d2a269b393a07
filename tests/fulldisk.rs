//! A full disk is named as such and loses nothing. The repository lives
//! on a tmpfs of fixed size (mounted by the test: it runs as root, as CI
//! does); a snapshot that fills it fails with one line about space, the
//! earlier snapshot stays intact and readable, `prune` frees the space on
//! the full disk, and afterwards the repository is as good as before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Data, Rng, Work};

/// A tmpfs mounted at a path; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// JSON Lines of `n` entities carrying `bytes` of incompressible data each.
fn bulky(path: &Path, n: usize, bytes: usize, seed: u64) {
    use base64::Engine as _;
    let mut rng = Rng::new(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let raw: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
        let mut line = String::new();
        write!(
            line,
            r#"{{"key":{{"partitionId":{{"projectId":"p"}},"path":[{{"kind":"Blob","id":"{}"}}]}},"properties":{{"data":{{"blobValue":"{}","excludeFromIndexes":true}}}}}}"#,
            i + 1,
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
        .unwrap();
        writeln!(f, "{line}").unwrap();
    }
}

/// Write a file until the disk is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
            return;
        }
    }
}

fn export(w: &Work, snap: &str, to: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(to);
    w.ok(&["export", snap, "--to", &format!("jsonl:{}", to.display())]);
    std::fs::read(to).unwrap()
}

#[test]
fn a_full_disk_is_named_and_prune_frees_it() {
    let w = Work::new();
    let _disk = Tmpfs::mount(&w.repo(), "8m");
    w.init();
    let data = Data::generate(1_500, 3);
    data.write_sorted(&w.path("day1.jsonl"));
    w.ok(&[
        "snapshot",
        "--from",
        "jsonl:day1.jsonl",
        "--name",
        "day1",
        "-q",
    ]);
    let day1 = export(&w, "day1", &w.path("day1-before.jsonl"));

    // 24 MB that does not compress: the snapshot runs out of space.
    bulky(&w.path("day2.jsonl"), 6_000, 4_000, 9);
    let out = w.run(&["snapshot", "--from", "jsonl:day2.jsonl", "--name", "day2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines().count() == 1
            && err.contains("no space left on the device holding")
            && !err.contains("damaged"),
        "{err}"
    );

    // The disk stays full to the last byte for what follows.
    let filler = w.repo().join("filler");
    fill(&filler);
    let out = w.run(&["check"]);
    assert!(
        out.status.success(),
        "check on a full disk: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(export(&w, "day1", &w.path("day1-full.jsonl")), day1);
    let log = w.ok(&["log"]);
    assert!(log.contains("day1") && !log.contains("day2"), "{log}");

    // prune deletes what the failed snapshot left, on the full disk.
    let out = w.ok(&["prune", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["bytes_freed"].as_u64().unwrap() > 1 << 20, "{v}");

    // As good as before once space returns.
    std::fs::remove_file(&filler).unwrap();
    w.ok(&["check", "--read-data"]);
    assert_eq!(export(&w, "day1", &w.path("day1-after.jsonl")), day1);
    w.ok(&[
        "snapshot",
        "--from",
        "jsonl:day1.jsonl",
        "--name",
        "day3",
        "-q",
    ]);
    assert_eq!(export(&w, "day3", &w.path("day3.jsonl")), day1);
}
