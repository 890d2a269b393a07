//! Crash safety and concurrency with real processes: SIGKILL at many
//! moments of a snapshot, two snapshots at once, a read-only repository.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::{bin, canonical_set, Data, Work};

fn export_equals(w: &Work, snap: &str, data: &Data) {
    let out = w.path("export.jsonl");
    w.ok(&["export", snap, "--to", &format!("jsonl:{}", out.display())]);
    let want = w.path("want.jsonl");
    data.write_sorted(&want);
    assert_eq!(
        canonical_set(&out),
        canonical_set(&want),
        "snapshot {snap} reads back what was snapshotted"
    );
}

#[test]
fn sigkill_at_many_moments_leaves_a_consistent_repository() {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(12_000, 11);
    data.write_shuffled(&w.path("cur.jsonl"), 1);
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "base"]);
    data.mutate(3, 3000, 500, 2000);
    data.write_shuffled(&w.path("cur.jsonl"), 2);

    // How long does an uninterrupted snapshot take?
    let t = Instant::now();
    let probe = w.path("probe-repo");
    Command::new(bin())
        .args(["--repo"])
        .arg(&probe)
        .arg("init")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    Command::new(bin())
        .current_dir(w.dir.path())
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .arg("--repo")
        .arg(&probe)
        .args(["snapshot", "--from", "jsonl:cur.jsonl"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let full = t.elapsed();

    let steps = 14u32;
    for i in 0..steps {
        let delay = full.mul_f64(i as f64 / steps as f64 * 1.1);
        let mut child = Command::new(bin())
            .current_dir(w.dir.path())
            .env("KINDSNAP_CACHE_DIR", w.cache_dir())
            .arg("--repo")
            .arg(w.repo())
            // A small sort budget so spill files exist to be interrupted.
            .env("KINDSNAP_SORT_BUDGET", "400000")
            .args(["snapshot", "--from", "jsonl:cur.jsonl"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        // Whatever moment it died at, the repository checks clean.
        let out = w.run(&["check"]);
        assert!(
            out.status.success(),
            "check after kill at {delay:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every snapshot that did commit is complete and correct.
    let log = w.ok(&["log", "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    for s in &snaps {
        if s["name"] != "base" {
            export_equals(&w, s["id"].as_str().unwrap(), &data);
        }
    }
    // And the next snapshot succeeds, is correct, and cleans up after the dead.
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "after"]);
    export_equals(&w, "after", &data);
    let leftovers: Vec<_> = std::fs::read_dir(w.repo().join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    // The line cache files the killed runs were writing are gone too.
    let cache_temps: Vec<_> = walk_all(&w.cache_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(cache_temps.is_empty(), "{cache_temps:?}");
    w.ok(&["check", "--read-data"]);
}

/// A pid no process has: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn temp_files_of_dead_processes_are_removed_and_live_ones_kept() {
    let w = Work::new();
    w.init();
    let data = Data::generate(500, 41);
    data.write_sorted(&w.path("cur.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "one"]);
    let lines = walk_all(&w.cache_dir().join("lines"))
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .expect("a line cache");
    std::fs::create_dir_all(w.path("out")).unwrap();

    // What killed runs leave: each writer's pid is in the name. This test
    // process is alive, so files named with its pid must stay.
    let (dead, live) = (dead_pid(), std::process::id());
    let plant = |dir: &std::path::Path, prefix: &str, suffix: &str| {
        let mut paths = Vec::new();
        for pid in [dead, live] {
            let p = dir.join(format!("{prefix}-{pid}-00c0ffee00c0ffee.tmp{suffix}"));
            std::fs::write(&p, b"half written").unwrap();
            paths.push(p);
        }
        paths
    };
    let repo = w.repo();
    let planted = [
        plant(&repo, ".write", ""),
        plant(&repo.join("tmp"), "pack", ""),
        plant(&repo.join("tmp"), "sortrun", ""),
        plant(&repo.join("tmp"), "snapshot", ""),
        plant(&repo.join("tmp"), "prune-live", "-journal"),
        plant(&lines, ".lines", ""),
        plant(&w.path("out"), ".export", ""),
    ];
    // Not a temp file of ours, though it looks close: never touched.
    let mine = w.path("out/.export-notes.tmp");
    std::fs::write(&mine, b"keep").unwrap();

    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "two"]);
    w.ok(&["export", "two", "--to", "jsonl:out/two.jsonl"]);
    for pair in &planted {
        assert!(
            !pair[0].exists(),
            "{} (dead writer) is left",
            pair[0].display()
        );
        assert!(
            pair[1].exists(),
            "{} (live writer) was removed",
            pair[1].display()
        );
    }
    assert!(mine.exists());
    assert_eq!(canonical_set(&w.path("out/two.jsonl")).len(), 500);
    w.ok(&["check"]);
}

#[test]
fn two_snapshots_at_once_are_both_correct() {
    let w = Work::new();
    w.init();
    let a = Data::generate(5000, 21);
    let mut b = Data::generate(5000, 21);
    b.mutate(4, 500, 100, 100);
    a.write_shuffled(&w.path("a.jsonl"), 1);
    b.write_shuffled(&w.path("b.jsonl"), 2);
    let spawn = |file: &str, name: &str| {
        Command::new(bin())
            .current_dir(w.dir.path())
            .env("KINDSNAP_CACHE_DIR", w.cache_dir())
            .arg("--repo")
            .arg(w.repo())
            .args([
                "snapshot",
                "--from",
                &format!("jsonl:{file}"),
                "--name",
                name,
            ])
            .output()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn("a.jsonl", "a"));
        let hb = s.spawn(|| spawn("b.jsonl", "b"));
        (ha.join().unwrap().unwrap(), hb.join().unwrap().unwrap())
    });
    assert!(
        ra.status.success(),
        "{}",
        String::from_utf8_lossy(&ra.stderr)
    );
    assert!(
        rb.status.success(),
        "{}",
        String::from_utf8_lossy(&rb.stderr)
    );
    export_equals(&w, "a", &a);
    export_equals(&w, "b", &b);
    w.ok(&["check", "--read-data"]);

    // The same name from two processes at once: one wins, the other fails
    // with a clear message, and the repository stays sound.
    let (r1, r2) = std::thread::scope(|s| {
        let h1 = s.spawn(|| spawn("a.jsonl", "same"));
        let h2 = s.spawn(|| spawn("b.jsonl", "same"));
        (h1.join().unwrap().unwrap(), h2.join().unwrap().unwrap())
    });
    let oks = [&r1, &r2].iter().filter(|r| r.status.success()).count();
    assert_eq!(oks, 1, "exactly one `same` wins");
    let loser = if r1.status.success() { &r2 } else { &r1 };
    assert!(String::from_utf8_lossy(&loser.stderr).contains("already exists"));
    w.ok(&["check"]);
}

#[test]
fn a_read_only_repository_can_be_read_but_not_written() {
    let w = Work::new();
    w.init();
    let data = Data::generate(200, 31);
    data.write_sorted(&w.path("cur.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "one"]);
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    // Root ignores permissions, so as root the commands run as `nobody` on
    // a repository nobody may read but not write.
    let run = |args: &[&str]| {
        let mut c = if is_root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(bin());
            c
        } else {
            Command::new(bin())
        };
        c.current_dir(w.dir.path())
            .env("KINDSNAP_CACHE_DIR", w.cache_dir())
            .arg("--repo")
            .arg(w.repo())
            .args(args)
            .output()
            .unwrap()
    };
    use std::os::unix::fs::PermissionsExt;
    let set_mode = |mode: u32| {
        std::fs::set_permissions(w.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for p in walk_all(&w.repo()) {
            let m = if p.is_dir() { mode } else { mode & 0o444 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::fs::set_permissions(w.path("cur.jsonl"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    };
    set_mode(0o555);
    let before: Vec<_> = walk_all(&w.repo());
    let out = run(&["snapshot", "--from", "jsonl:cur.jsonl"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not writable"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for args in [
        &["log"][..],
        &["show", "one"],
        &["cat", "one", "User:user0"],
        &["check", "--read-data"],
    ] {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(walk_all(&w.repo()), before);
    set_mode(0o755);
}

fn walk_all(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            out.extend(walk_all(&e));
        }
    }
    out
}
