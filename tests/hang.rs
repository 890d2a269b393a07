//! Servers that accept the connection and never answer: a Datastore, a
//! PostgreSQL server (silent from the start, and silent after the
//! start-up exchange) and an S3 endpoint. With a small timeout configured
//! each way the settings allow (flag, environment, kindsnap.toml, URL
//! parameter), `kindsnap snapshot` must end, non-zero, with one line that
//! names the endpoint, the timeout and how to raise it. A guard kills a
//! command still running after a minute and fails the test; nothing here
//! asserts how fast anything is.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Work;

/// Past this, a command is taken to hang: killed, and the test fails.
const GUARD: Duration = Duration::from_secs(60);

/// A listener on 127.0.0.1 that accepts every connection, reads what the
/// client sends and never writes a byte — except that `greet` may first
/// hold a scripted exchange on each connection. Lives as long as the test.
fn silent_server(greet: fn(&mut TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                greet(&mut conn);
                // Hold the socket open, swallowing whatever arrives.
                let mut buf = [0u8; 4096];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

fn no_greeting(_: &mut TcpStream) {}

/// Run `cmd` to its end (or kill it at the guard and fail); returns its
/// exit code and stderr.
fn run_guarded(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > GUARD {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {GUARD:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The command failed with exactly one line holding every `needle`, and
/// the exit code of a transient error (75: worth running again).
fn one_line_with(code: Option<i32>, err: &str, needles: &[&str]) {
    assert_eq!(code, Some(75), "exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from: {err}");
    }
}

fn snapshot_cmd(w: &Work, from: &str) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("kindsnap"));
    c.current_dir(w.dir.path())
        .env_remove("KINDSNAP_REPO")
        .env_remove("KINDSNAP_TIMEOUT")
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .arg("--repo")
        .arg(w.repo())
        .args(["snapshot", "--from", from, "--name", "night"]);
    c
}

#[test]
fn a_datastore_that_never_answers_ends_the_snapshot() {
    let w = Work::new();
    w.init();
    let port = silent_server(no_greeting);
    let endpoint = format!("127.0.0.1:{port}");
    // The flag.
    let mut c = snapshot_cmd(&w, &format!("datastore://{endpoint}/dev"));
    c.args(["--timeout", "2"]);
    let (code, err) = run_guarded(c);
    one_line_with(
        code,
        &err,
        &[
            &format!("datastore {endpoint} did not answer within 2 s"),
            "3 tries",
            "raise --timeout",
            "kindsnap.toml",
        ],
    );
    // The location's own parameter wins, and the message says so.
    let c = snapshot_cmd(&w, &format!("datastore://{endpoint}/dev?timeout=1"));
    let (code, err) = run_guarded(c);
    one_line_with(
        code,
        &err,
        &[
            "did not answer within 1 s",
            "raise `timeout=` in the datastore location",
        ],
    );
    assert!(!w.ok(&["log"]).contains("night"));
}

#[test]
fn a_postgres_server_silent_from_the_start_ends_the_snapshot() {
    let w = Work::new();
    w.init();
    let port = silent_server(no_greeting);
    // `connect_timeout` in the URL bounds start-up and authentication too,
    // not only the TCP connect (which succeeds at once here).
    let url = format!("postgres://app:secret@127.0.0.1:{port}/shop?connect_timeout=2");
    let (code, err) = run_guarded(snapshot_cmd(&w, &url));
    one_line_with(
        code,
        &err,
        &[
            &format!(
                "PostgreSQL server postgres://app@127.0.0.1:{port}/shop did not answer within 2 s"
            ),
            "connecting",
            "raise `connect_timeout` in the URL",
        ],
    );
    assert!(!err.contains("secret"), "{err}");
    // Without it, the timeout from kindsnap.toml.
    w.write("kindsnap.toml", "timeout = 2\n");
    let url = format!("postgres://app@127.0.0.1:{port}/shop");
    let (code, err) = run_guarded(snapshot_cmd(&w, &url));
    one_line_with(
        code,
        &err,
        &["did not answer within 2 s", "connecting", "raise --timeout"],
    );
}

/// One PostgreSQL protocol message: type, then length (itself included).
fn pg_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A server that lets the client in (start-up, no password, the session's
/// first query answered) and then never answers again.
fn pg_greeting(conn: &mut TcpStream) {
    let read_exact = |conn: &mut TcpStream, n: usize| {
        let mut b = vec![0u8; n];
        conn.read_exact(&mut b).ok().map(|_| b)
    };
    // Start-up message (or an SSL request first, which is declined).
    let Some(len) = read_exact(conn, 4) else {
        return;
    };
    let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
    let Some(body) = read_exact(conn, len - 4) else {
        return;
    };
    if body[..4] == 80877103u32.to_be_bytes() {
        conn.write_all(b"N").unwrap();
        let len = read_exact(conn, 4).unwrap();
        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        read_exact(conn, len - 4).unwrap();
    }
    let mut hello = pg_message(b'R', &0u32.to_be_bytes()); // AuthenticationOk
    hello.extend(pg_message(b'K', &[0, 0, 0, 7, 0, 0, 0, 9])); // BackendKeyData
    hello.extend(pg_message(b'Z', b"I")); // ReadyForQuery
    conn.write_all(&hello).unwrap();
    // The session setup (one simple query of four SETs): answered.
    let Some(head) = read_exact(conn, 5) else {
        return;
    };
    let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    read_exact(conn, len - 4).unwrap();
    let mut done = Vec::new();
    for _ in 0..4 {
        done.extend(pg_message(b'C', b"SET\0"));
    }
    done.extend(pg_message(b'Z', b"I"));
    conn.write_all(&done).unwrap();
}

#[test]
fn a_postgres_server_that_stops_answering_queries_ends_the_snapshot() {
    let w = Work::new();
    w.init();
    let port = silent_server(pg_greeting);
    let url = format!("postgres://app@127.0.0.1:{port}/shop");
    let mut c = snapshot_cmd(&w, &url);
    c.env("KINDSNAP_TIMEOUT", "2");
    let (code, err) = run_guarded(c);
    one_line_with(
        code,
        &err,
        &[
            &format!(
                "PostgreSQL server postgres://app@127.0.0.1:{port}/shop did not answer within 2 s"
            ),
            "waiting for rows",
            "raise --timeout (or KINDSNAP_TIMEOUT",
        ],
    );
}

#[test]
fn an_s3_endpoint_that_never_answers_ends_the_command() {
    let w = Work::new();
    w.write("d.jsonl", "");
    let port = silent_server(no_greeting);
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("kindsnap"));
    c.current_dir(w.dir.path())
        .env_remove("KINDSNAP_REPO")
        .env_remove("AWS_PROFILE")
        .env_remove("KINDSNAP_S3_ENDPOINT")
        .env_remove("KINDSNAP_REMOTE_TIMEOUT")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .env("KINDSNAP_TIMEOUT", "2")
        .args([
            "--repo",
            "s3://bkt/r",
            "snapshot",
            "--from",
            "jsonl:d.jsonl",
        ]);
    let (code, err) = run_guarded(c);
    one_line_with(
        code,
        &err,
        &[
            &format!("object store http://127.0.0.1:{port} did not answer within 2 s"),
            "s3://bkt/r",
            "retried for 6 s",
            "raise --timeout",
        ],
    );
}

#[test]
fn bad_timeouts_are_refused_with_one_line() {
    let w = Work::new();
    w.init();
    let err = w.fails(&["--timeout", "soon", "log"]);
    assert!(
        err.contains("--timeout soon: give a number of seconds"),
        "{err}"
    );
    let out = w
        .ks()
        .env("KINDSNAP_TIMEOUT", "0")
        .arg("log")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("KINDSNAP_TIMEOUT=0: give a number of seconds"),
        "{err}"
    );
    w.write("kindsnap.toml", "timeout = 0\n");
    let err = w.fails(&["log"]);
    assert!(err.contains("timeout must be at least 1"), "{err}");
    w.write("kindsnap.toml", "timeout = 5\n");
    let out = w.ok(&["config"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("timeout") && l.contains("5 s") && l.contains("kindsnap.toml")),
        "{out}"
    );
    let out = w.ok(&["--timeout", "7", "config"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("timeout") && l.contains("7 s") && l.contains("--timeout")),
        "{out}"
    );
    let err = w.fails(&[
        "snapshot",
        "--from",
        "datastore://localhost:1/p?timeout=never",
    ]);
    assert!(err.contains("timeout must be a number of seconds"), "{err}");
}
