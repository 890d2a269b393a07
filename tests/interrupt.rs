//! Ctrl-C (SIGINT) stops a snapshot or a restore cleanly: exit code 130, a
//! repository that `check` passes, and a restore that resumes where it
//! stopped.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, canonical_set, Data, Work};

fn sigint(child: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT");
}

/// Start `kindsnap ARGS`, send SIGINT after `after`, return (exit code,
/// stderr). `None` if it finished before the signal.
fn interrupt(w: &Work, args: &[&str], after: Duration) -> Option<(i32, String)> {
    let mut child = Command::new(bin())
        .current_dir(w.dir.path())
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .arg("--repo")
        .arg(w.repo())
        .args(args)
        .env("KINDSNAP_CHECKPOINT_EVERY", "500")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

/// How long an uninterrupted `kindsnap ARGS` takes in `w`.
fn timed(w: &Work, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = w.run(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

#[test]
fn ctrl_c_stops_a_snapshot_cleanly() {
    let w = Work::new();
    w.init();
    let data = Data::generate(60_000, 5);
    data.write_shuffled(&w.path("cur.jsonl"), 1);
    let probe = Work::new();
    probe.init();
    std::fs::copy(w.path("cur.jsonl"), probe.path("cur.jsonl")).unwrap();
    let full = timed(&probe, &["snapshot", "--from", "jsonl:cur.jsonl"]);

    let mut stopped = 0;
    for i in 1..=4u32 {
        let after = full * i / 6;
        let Some((code, stderr)) = interrupt(&w, &["snapshot", "--from", "jsonl:cur.jsonl"], after)
        else {
            continue;
        };
        if code == 0 {
            continue; // the signal came after the commit point
        }
        assert_eq!(code, 130, "{stderr}");
        assert!(stderr.contains("stopping"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stopped += 1;
        let check = w.ok(&["check", "--read-data"]);
        assert!(check.contains("no problems found"), "{check}");
    }
    assert!(
        stopped > 0,
        "no run was interrupted mid-way ({full:?} per run)"
    );
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "after"]);
    let out = w.path("export.jsonl");
    w.ok(&[
        "export",
        "after",
        "--to",
        &format!("jsonl:{}", out.display()),
    ]);
    let want = w.path("want.jsonl");
    data.write_sorted(&want);
    assert_eq!(canonical_set(&out), canonical_set(&want));
}

#[test]
fn ctrl_c_stops_a_restore_and_the_same_command_resumes() {
    let w = Work::new();
    w.init();
    let data = Data::generate(60_000, 6);
    data.write_shuffled(&w.path("cur.jsonl"), 1);
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "s"]);
    let full = timed(&w, &["restore", "s", "--to", "jsonl:probe.jsonl"]);

    let args = ["restore", "s", "--to", "jsonl:out.jsonl", "--json"];
    let mut stopped = false;
    for i in 1..=4u32 {
        match interrupt(&w, &args, full * i / 5) {
            Some((130, stderr)) => {
                assert!(stderr.contains("stopping"), "{stderr}");
                assert!(!stderr.contains("panicked"), "{stderr}");
                stopped = true;
                break;
            }
            Some((code, stderr)) => assert_eq!(code, 0, "{stderr}"),
            None => {}
        }
        // It finished: start over with a fresh target.
        let _ = std::fs::remove_file(w.path("out.jsonl"));
        let _ = std::fs::remove_dir_all(w.repo().join("restores"));
    }
    assert!(
        stopped,
        "no restore was interrupted mid-way ({full:?} per run)"
    );
    assert!(
        !w.path("out.jsonl").exists(),
        "an interrupted file restore publishes nothing"
    );
    let report: serde_json::Value = serde_json::from_str(&w.ok(&args)).unwrap();
    assert!(
        report["resumed"].is_string(),
        "the second run resumes: {report}"
    );
    assert_eq!(
        canonical_set(&w.path("out.jsonl")),
        canonical_set(&w.path("probe.jsonl")),
        "a resumed restore writes exactly what an uninterrupted one does"
    );
}

/// Ctrl-C reaches requests in flight: a Datastore snapshot waiting on a
/// server that accepted the connection and never answers (with a minute's
/// timeout) stops within seconds of the signal, exit 130, nothing
/// published.
#[test]
fn ctrl_c_ends_a_wait_on_a_silent_server() {
    let w = Work::new();
    w.init();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn); // open, silent
        }
    });
    let from = format!("datastore://127.0.0.1:{port}/p");
    let t = Instant::now();
    let got = interrupt(
        &w,
        &[
            "snapshot",
            "--from",
            &from,
            "--timeout",
            "60",
            "--name",
            "x",
        ],
        Duration::from_millis(1500),
    );
    let (code, err) = got.expect("the snapshot ended before the signal");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "stopped only after {:?}: {err}",
        t.elapsed()
    );
    assert_eq!(code, 130, "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(w.ok(&["log", "--json"]).trim(), "[]");
}
