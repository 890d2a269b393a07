//! The Datastore connector against the dev server (Google's App Engine
//! datastore behind the v1 REST API, over real HTTP): fidelity, scale,
//! faults, limits, id reservation, bad input.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/devserver.rs"]
mod devserver;

use std::process::Stdio;

use common::{count_changes, Data, Work};
use devserver::DevServer;
use serde_json::{json, Value as J};

fn k(ns: &str, project: &str, path: &[(&str, &str)]) -> J {
    let path: Vec<J> = path
        .iter()
        .map(|(kind, id)| match id.strip_prefix('#') {
            Some(n) => json!({"kind": kind, "id": n}),
            None => json!({"kind": kind, "name": id}),
        })
        .collect();
    let mut p = json!({"projectId": project});
    if !ns.is_empty() {
        p["namespaceId"] = json!(ns);
    }
    json!({"partitionId": p, "path": path})
}

/// Every value type and the awkward corners: meaning, excludeFromIndexes,
/// ancestors, namespaces, references, embedded entities, arrays, long
/// unindexed strings, a blob near 1 MiB, non-ASCII names.
fn every_type(project: &str) -> Vec<J> {
    let big_blob = base64_of(&vec![7u8; 1_000_000]);
    vec![
        json!({"key": k("", project, &[("Thing", "#1")]), "properties": {
            "null": {"nullValue": null},
            "bool": {"booleanValue": true},
            "int": {"integerValue": "-9223372036854775808"},
            "double": {"doubleValue": 1.5},
            "nan": {"doubleValue": "NaN"},
            "inf": {"doubleValue": "-Infinity"},
            "ts": {"timestampValue": "2026-11-22T10:11:12.123456Z"},
            "str": {"stringValue": "héllo wörld ✓"},
            "blob": {"blobValue": "AAEC/w=="},
            "geo": {"geoPointValue": {"latitude": 51.5, "longitude": -0.12}},
            "ref": {"keyValue": k("", project, &[("Thing", "#2"), ("Child", "ünï")])},
            "arr": {"arrayValue": {"values": [{"integerValue": "1"}, {"stringValue": "two"}, {"nullValue": null}]}},
            "empty": {"arrayValue": {}},
            "emb": {"entityValue": {"key": k("", project, &[("Inner", "#5")]), "properties": {
                "x": {"integerValue": "3", "meaning": 9},
                "deep": {"entityValue": {"properties": {"y": {"booleanValue": false}}}, "excludeFromIndexes": true}
            }}},
            "meaning": {"integerValue": "20", "meaning": 14},
            "unindexed": {"stringValue": "x".repeat(5000), "excludeFromIndexes": true},
        }}),
        json!({"key": k("", project, &[("Thing", "#2")]), "properties": {}}),
        json!({"key": k("", project, &[("Thing", "#2"), ("Child", "ünï")]), "properties": {
            "big": {"blobValue": big_blob, "excludeFromIndexes": true},
        }}),
        json!({"key": k("tenant-a", project, &[("Thing", "name with spaces/and:colons")]), "properties": {
            "mixed": {"arrayValue": {"values": [{"stringValue": "a", "excludeFromIndexes": true}, {"stringValue": "b"}]}},
        }}),
        json!({"key": k("tenant-a", project, &[("Émoji✓", "#9007199254740993")]), "properties": {
            "n": {"integerValue": "1"},
        }}),
    ]
}

fn base64_of(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn write_lines(w: &Work, name: &str, lines: &[J]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    w.write(name, &text);
}

fn diff_json(w: &Work, a: &str, b: &str) -> J {
    serde_json::from_str(&w.ok(&["diff", a, b, "--keys", "--json"])).unwrap()
}

fn assert_same(w: &Work, a: &str, b: &str) {
    let d = diff_json(w, a, b);
    for c in ["added", "removed", "changed"] {
        assert_eq!(count_changes(&d, c), 0, "{a} vs {b}: {c}\n{d:#}");
    }
}

#[test]
fn every_value_type_round_trips_with_identical_hashes() {
    let w = Work::new();
    w.init();
    write_lines(&w, "src.jsonl", &every_type("prod"));
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);

    // Into one server (the project rewritten to its `dev`), then read back.
    let a = DevServer::start(&[]);
    w.ok(&["restore", "src", "--to", &a.url("prod")]);
    w.ok(&["snapshot", "--from", &a.url("prod"), "--name", "a"]);
    assert_same(&w, "src", "a");

    // Snapshot a datastore, restore into an empty one, snapshot that.
    let b = DevServer::start(&[]);
    w.ok(&["restore", "a", "--to", &b.url("prod")]);
    w.ok(&["snapshot", "--from", &b.url("prod"), "--name", "b"]);
    assert_same(&w, "a", "b");

    // Another project: every key and reference follows.
    w.ok(&["restore", "a", "--to", &b.url("dev")]);
    let (status, got) = b.call(
        "dev",
        "lookup",
        &json!({"keys": [k("", "dev", &[("Thing", "#1")])]}),
    );
    assert_eq!(status, 200);
    let props = &got["found"][0]["entity"]["properties"];
    assert_eq!(props["ref"]["keyValue"]["partitionId"]["projectId"], "dev");
    assert_eq!(props["meaning"]["meaning"], 14);
}

#[test]
fn fifty_thousand_entities_snapshot_and_restore() {
    let w = Work::new();
    w.init();
    let data = Data::generate(50_000, 8);
    data.write_shuffled(&w.path("src.jsonl"), 1);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let server = DevServer::start(&[]);
    let out = w.ok(&["restore", "src", "--to", &server.url("test")]);
    assert!(out.contains("restored src"), "{out}");
    w.ok(&["snapshot", "--from", &server.url("test"), "--name", "back"]);
    assert_same(&w, "src", "back");
    // Only some namespaces.
    let url = server.url("test");
    let out = w.ok(&[
        "snapshot",
        "--from",
        &url,
        "--namespaces",
        "t1",
        "--name",
        "t1",
        "--json",
    ]);
    let r: J = serde_json::from_str(&out).unwrap();
    assert_eq!(r["entities"], 5000, "{r}");
    // A snapshot of one namespace is a history of its own: it does not
    // take the whole datastore's snapshot as its parent, so it records no
    // other namespace as removed.
    assert!(r["parent"].is_null(), "{r}");
    assert!(
        r["source"].as_str().unwrap().ends_with("namespaces=t1"),
        "{r}"
    );
    for k in r["kinds"].as_array().unwrap() {
        assert_eq!(k["removed"], 0, "{k}");
        assert_eq!(k["namespace"], "t1", "{k}");
    }
}

#[test]
fn injected_faults_lose_and_duplicate_nothing() {
    let w = Work::new();
    w.init();
    let data = Data::generate(6_000, 2);
    data.write_shuffled(&w.path("src.jsonl"), 1);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let server = DevServer::start(&[
        "--fail-rate",
        "0.1",
        "--fail-after-apply-rate",
        "0.05",
        "--retry-after",
        "0",
        "--seed",
        "7",
    ]);
    let mut cmd = w.ks();
    cmd.env("KINDSNAP_MAX_BACKOFF_MS", "50");
    let out = cmd
        .args(["restore", "src", "--to", &server.url("test")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = w.ks();
    cmd.env("KINDSNAP_MAX_BACKOFF_MS", "50");
    let out = cmd
        .args(["snapshot", "--from", &server.url("test"), "--name", "back"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(&w, "src", "back");
}

#[test]
fn a_server_killed_and_restarted_mid_restore_does_not_stop_it() {
    let w = Work::new();
    w.init();
    let data = Data::generate(20_000, 3);
    data.write_shuffled(&w.path("src.jsonl"), 1);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let mut server = DevServer::start(&["--latency-ms", "150"]);
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"))
        .current_dir(w.dir.path())
        .arg("--repo")
        .arg(w.repo())
        .env("KINDSNAP_MAX_BACKOFF_MS", "1000")
        .args(["restore", "src", "--to", &server.url("test")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the restore ended before the server was killed; make it slower"
    );
    server.kill();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    server.restart();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restore across a restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.ok(&["snapshot", "--from", &server.url("test"), "--name", "back"]);
    assert_same(&w, "src", "back");
}

#[test]
fn service_limits_are_kept_or_reported_by_key() {
    let w = Work::new();
    w.init();
    // 600 small entities against a server that takes 100 per commit (and a
    // kindsnap.toml asking for 600 per commit), 55 entities of 200 KB
    // (11 MB in all), one 2 MiB entity, one 2,000-byte indexed string.
    let mut lines = Vec::new();
    for i in 1..=600 {
        lines.push(json!({"key": k("", "p", &[("Small", &format!("#{i}"))]), "properties": {"i": {"integerValue": i.to_string()}}}));
    }
    for i in 1..=55 {
        lines.push(json!({"key": k("", "p", &[("Wide", &format!("#{i}"))]), "properties": {"s": {"stringValue": "w".repeat(200_000), "excludeFromIndexes": true}}}));
    }
    lines.push(json!({"key": k("", "p", &[("Huge", "#1")]), "properties": {"s": {"stringValue": "h".repeat(2 << 20), "excludeFromIndexes": true}}}));
    lines.push(json!({"key": k("", "p", &[("Huge", "#2")]), "properties": {"s": {"stringValue": "i".repeat(2000)}}}));
    lines.push(
        json!({"key": k("", "p", &[("Huge", "#3")]), "properties": {"ok": {"booleanValue": true}}}),
    );
    write_lines(&w, "src.jsonl", &lines);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    w.write("kindsnap.toml", "[kinds.Small]\nbatch_size = 600\n");
    let server = DevServer::start(&["--max-mutations", "100"]);

    // Without --tolerate the first rejection stops the restore, naming it.
    let err = w.fails(&["restore", "src", "--to", &server.url("p")]);
    assert!(err.contains("Huge:1") || err.contains("Huge:2"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = w.run(&[
        "restore",
        "src",
        "--to",
        &server.url("p"),
        "--tolerate",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: J = serde_json::from_slice(&out.stdout).unwrap();
    let rej: Vec<String> = r["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| format!("{} {}", j["key"], j["reason"]))
        .collect();
    assert_eq!(rej.len(), 2, "{rej:?}");
    assert!(
        rej.iter()
            .any(|j| j.contains("Huge:1") && j.contains("too big")),
        "{rej:?}"
    );
    assert!(
        rej.iter()
            .any(|j| j.contains("Huge:2") && j.contains("1500")),
        "{rej:?}"
    );
    w.ok(&["snapshot", "--from", &server.url("p"), "--name", "back"]);
    let d = diff_json(&w, "src", "back");
    assert_eq!(count_changes(&d, "removed"), 2, "{d:#}");
    assert_eq!(count_changes(&d, "added") + count_changes(&d, "changed"), 0);
}

/// With `--map-namespace`, a rejected entity is counted against its own
/// kind and namespace as the snapshot has them.
#[test]
fn rejections_under_a_namespace_map_count_against_their_kind() {
    let w = Work::new();
    w.init();
    let mut lines = vec![
        json!({"key": k("a", "p", &[("Huge", "#1")]), "properties": {"s": {"stringValue": "h".repeat(2 << 20), "excludeFromIndexes": true}}}),
        json!({"key": k("a", "p", &[("Huge", "#2")]), "properties": {"ok": {"booleanValue": true}}}),
    ];
    for i in 1..=300 {
        lines.push(json!({"key": k("a", "p", &[("Small", &format!("#{i}"))]), "properties": {"i": {"integerValue": i.to_string()}}}));
    }
    write_lines(&w, "src.jsonl", &lines);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let server = DevServer::start(&[]);
    let out = w.run(&[
        "restore",
        "src",
        "--to",
        &server.url("p"),
        "--map-namespace",
        "a=b",
        "--tolerate",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: J = serde_json::from_slice(&out.stdout).unwrap();
    let kind = |name: &str| {
        r["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == name)
            .cloned()
            .unwrap()
    };
    let (huge, small) = (kind("Huge"), kind("Small"));
    assert_eq!(huge["namespace"], "a", "{r}");
    assert_eq!(
        (&huge["written"], &huge["rejected"]),
        (&json!(1), &json!(1)),
        "{r}"
    );
    assert_eq!(
        (&small["written"], &small["rejected"]),
        (&json!(300), &json!(0)),
        "{r}"
    );
}

#[test]
fn reserved_ids_never_come_back_as_automatic_ids() {
    let w = Work::new();
    w.init();
    let lines: Vec<J> = (1..=50)
        .map(|i| json!({"key": k("", "p", &[("Post", &format!("#{i}"))]), "properties": {}}))
        .collect();
    write_lines(&w, "src.jsonl", &lines);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let server = DevServer::start(&["--auto-id-policy", "sequential"]);
    let out = w.ok(&["restore", "src", "--to", &server.url("p")]);
    assert!(out.contains("reserveIds"), "{out}");
    // An entity inserted with an incomplete key gets a fresh id.
    let (status, r) = server.call(
        "p",
        "commit",
        &json!({"mode": "NON_TRANSACTIONAL", "mutations": [
            {"insert": {"key": {"partitionId": {"projectId": "p"}, "path": [{"kind": "Post"}]}, "properties": {}}}
        ]}),
    );
    assert_eq!(status, 200, "{r}");
    let id: i64 = r["mutationResults"][0]["key"]["path"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(id > 50, "automatic id {id} collides with a restored one");
}

#[test]
fn uuid_keys_on_the_datastore_and_clear() {
    let w = Work::new();
    w.init();
    let data = Data::generate(900, 4);
    data.write_shuffled(&w.path("src.jsonl"), 1);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let server = DevServer::start(&[]);
    w.ok(&[
        "restore",
        "src",
        "--to",
        &server.url("test"),
        "--keys",
        "uuid",
    ]);
    w.ok(&["snapshot", "--from", &server.url("test"), "--name", "u"]);
    w.ok(&["export", "u", "--to", "jsonl:u.jsonl"]);
    let text = std::fs::read_to_string(w.path("u.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 900);
    assert!(!text.contains("\"id\":"), "numeric ids remain");
    // Restoring again (--merge: the target holds the kinds now) updates
    // in place.
    w.ok(&[
        "restore",
        "src",
        "--to",
        &server.url("test"),
        "--keys",
        "uuid",
        "--merge",
    ]);
    w.ok(&["snapshot", "--from", &server.url("test"), "--name", "u2"]);
    assert_same(&w, "u", "u2");
    // --exact removes an extra; clear empties a kind.
    let (status, _) = server.call(
        "test",
        "commit",
        &json!({"mode": "NON_TRANSACTIONAL", "mutations": [
            {"upsert": {"key": k("", "test", &[("User", "intruder")]), "properties": {}}}
        ]}),
    );
    assert_eq!(status, 200);
    w.ok(&[
        "restore",
        "src",
        "--to",
        &server.url("test"),
        "--keys",
        "uuid",
        "--exact",
        "--yes",
    ]);
    w.ok(&["snapshot", "--from", &server.url("test"), "--name", "u3"]);
    assert_same(&w, "u", "u3");
    let err = w.fails(&["clear", "--to", &server.url("test"), "--kinds", "User"]);
    assert!(err.contains("--yes"), "{err}");
    let out = w.ok(&[
        "clear",
        "--to",
        &server.url("test"),
        "--kinds",
        "User",
        "--namespace",
        "",
        "--yes",
    ]);
    assert!(out.contains("User"), "{out}");
    let out = w.ok(&["clear", "--to", &server.url("test"), "--yes"]);
    assert!(out.contains("Post"), "{out}");
    let out = w.ok(&[
        "snapshot",
        "--from",
        &server.url("test"),
        "--name",
        "empty",
        "--json",
    ]);
    let r: J = serde_json::from_str(&out).unwrap();
    assert_eq!(r["entities"], 0, "{r}");
}

#[test]
fn bad_servers_and_addresses_are_one_clear_line() {
    let w = Work::new();
    w.init();
    write_lines(&w, "src.jsonl", &every_type("p")[1..2]);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);

    // Nothing listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("datastore://127.0.0.1:{port}/p");
    for args in [
        vec!["snapshot", "--from", url.as_str()],
        vec!["restore", "src", "--to", url.as_str()],
    ] {
        let out = w.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot reach the datastore"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        // A server that may come back later: EX_TEMPFAIL, so a scheduler
        // retries (error.rs, "Whose move it is").
        assert_eq!(out.status.code(), Some(75), "{err}");
    }

    // A web server that is not a Datastore, and one that refuses us.
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<html>hello</html>").unwrap();
    let py = std::process::Command::new("python3")
        .args(["-c", FAKE])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
        }
    }
    let mut py = Kill(py);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(py.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let err = w.fails(&[
        "snapshot",
        "--from",
        &format!("datastore://127.0.0.1:{port}/html"),
    ]);
    assert!(
        err.contains("is not a Datastore API") && err.contains("text/html"),
        "{err}"
    );
    let err = w.fails(&[
        "snapshot",
        "--from",
        &format!("datastore://127.0.0.1:{port}/denied"),
    ]);
    assert!(err.contains("no permission on project denied"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = w.run(&[
        "snapshot",
        "--from",
        &format!("datastore://127.0.0.1:{port}/denied"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "credentials are the user's to fix"
    );

    // A server without point-in-time reads says so.
    let server = DevServer::start(&["--no-read-time"]);
    let err = w.fails(&[
        "snapshot",
        "--from",
        &server.url("p"),
        "--read-time",
        "2026-01-01T00:00:00Z",
    ]);
    assert!(err.contains("does not support --read-time"), "{err}");
    // Malformed locations.
    let err = w.fails(&["snapshot", "--from", "datastore://localhost:8081"]);
    assert!(err.contains("datastore://HOST:PORT/PROJECT"), "{err}");
}

/// A web server that answers HTML on /v1/projects/html:… and a Google-shaped
/// 403 on /v1/projects/denied:….
const FAKE: &str = r#"
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length') or 0))
        if 'denied' in self.path:
            body = json.dumps({"error": {"code": 403, "message": "Missing or insufficient permissions.", "status": "PERMISSION_DENIED"}}).encode()
            self.send_response(403); self.send_header('content-type', 'application/json')
        else:
            body = b'<html><body>Welcome to nginx!</body></html>'
            self.send_response(200); self.send_header('content-type', 'text/html')
        self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.HTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[test]
fn sigkilled_restores_resume_and_the_emulator_env_is_read() {
    let w = Work::new();
    w.init();
    let data = Data::generate(8_000, 6);
    data.write_shuffled(&w.path("src.jsonl"), 1);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let server = DevServer::start(&["--latency-ms", "40"]);
    let mut resumed = 0;
    for delay in [700u64, 1500, 2500] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"))
            .current_dir(w.dir.path())
            .arg("--repo")
            .arg(w.repo())
            .env("KINDSNAP_CHECKPOINT_EVERY", "500")
            .args([
                "restore",
                "src",
                "--to",
                &server.url("test"),
                "--keys",
                "uuid",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        // `datastore:` alone, as Google's client libraries read it.
        let out = w
            .ks()
            .env(
                "DATASTORE_EMULATOR_HOST",
                format!("127.0.0.1:{}", server.port),
            )
            .env("DATASTORE_PROJECT_ID", "test")
            .args([
                "restore",
                "src",
                "--to",
                &server.url("test"),
                "--keys",
                "uuid",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if String::from_utf8_lossy(&out.stdout).contains("resumed") {
            resumed += 1;
        }
        let out = w
            .ks()
            .env(
                "DATASTORE_EMULATOR_HOST",
                format!("127.0.0.1:{}", server.port),
            )
            .env("DATASTORE_PROJECT_ID", "test")
            .args(["snapshot", "--from", "datastore:", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: J = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["entities"], 8_000, "no entity lost or duplicated: {r}");
        let (status, _) = server.call(
            "test",
            "runQuery",
            &json!({"query": {"kind": [{"name": "Post"}], "limit": 1}}),
        );
        assert_eq!(status, 200);
        // Start the next round from an empty server.
        let out = w.ok(&["clear", "--to", &server.url("test"), "--yes"]);
        assert!(out.contains("Post"), "{out}");
    }
    assert!(resumed >= 1, "no run was interrupted mid-way");
}

/// `(namespace/kind → reads)` from a snapshot's `--json`.
fn reported_reads(r: &J) -> std::collections::BTreeMap<String, J> {
    r["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let ns = k["namespace"].as_str().unwrap();
            let kind = k["kind"].as_str().unwrap();
            let label = if ns.is_empty() {
                kind.to_string()
            } else {
                format!("{ns}/{kind}")
            };
            let reads = &k["reads"];
            (
                label,
                json!({
                    "entity_reads": reads["entity_reads"],
                    "small_ops": reads["small_ops"],
                    "lookups": reads["lookups"],
                }),
            )
        })
        .collect()
}

/// The reads the server billed, per user kind (metadata queries aside).
fn server_reads(stats: &J) -> std::collections::BTreeMap<String, J> {
    stats["kinds"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.contains("__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn entity_counts(w: &Work, name: &str) -> Vec<(String, u64)> {
    let show: J = serde_json::from_str(&w.ok(&["show", name, "--json"])).unwrap();
    show["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                format!("{}/{}", k["namespace"], k["kind"]),
                k["entities"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn split_reads_give_the_same_snapshot_as_one_cursor_and_count_reads() {
    let w = Work::new();
    w.init();
    // 6,000 entities (1,800 a kind; comments are children of posts, so the
    // key ranges cut through ancestor paths) in pages of 50: 36 pages a
    // kind, enough to be split.
    Data::generate(6_000, 14).write_shuffled(&w.path("src.jsonl"), 2);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let server = DevServer::start(&["--batch-size", "50"]);
    let url = server.url("test");
    w.ok(&["restore", "src", "--to", &url]);

    let snap = |name: &str, extra: &[&str]| -> J {
        server.stats(true);
        let mut args = vec!["snapshot", "--from", &url, "--name", name, "--json"];
        args.extend_from_slice(extra);
        let r: J = serde_json::from_str(&w.ok(&args)).unwrap();
        let stats = server.stats(false);
        // The reads reported are the reads the server billed.
        assert_eq!(
            reported_reads(&r),
            server_reads(&stats),
            "{name}: {r:#}\n{stats:#}"
        );
        let total = r["reads"]["entity_reads"].as_u64().unwrap();
        let usd = r["reads"]["estimated_usd"].as_f64().unwrap();
        assert!((usd - total as f64 * 0.06 / 100_000.0).abs() < 1e-12, "{r}");
        r
    };

    // One cursor per kind.
    let one = snap("one", &["--concurrency", "1"]);
    for (kind, reads) in reported_reads(&one) {
        assert_eq!(reads["small_ops"], 0, "{kind}: no sample with one cursor");
    }
    // Split: a `__scatter__` sample per big kind, then key ranges.
    let split = snap("split", &[]);
    let user = &reported_reads(&split)["User"];
    assert!(user["small_ops"].as_u64().unwrap() > 0, "{split:#}");
    let three = snap("three", &["--concurrency", "3"]);
    for other in ["split", "three"] {
        assert_same(&w, "one", other);
        assert_eq!(entity_counts(&w, "one"), entity_counts(&w, other));
    }
    assert_same(&w, "src", "split");
    for r in [&one, &split, &three] {
        assert_eq!(r["entities"], 6000, "{r}");
    }
    // Full-entity reads are the same whichever way the kind is cut, give or
    // take one query per range that ends on a short page.
    let reads = |r: &J, k: &str| reported_reads(r)[k]["entity_reads"].as_u64().unwrap();
    assert!(reads(&split, "User") >= reads(&one, "User"));

    // kindsnap.toml can keep a kind to one cursor.
    w.write("kindsnap.toml", "[kinds.User]\nconcurrency = 1\n");
    let toml = snap("toml", &[]);
    assert_eq!(reported_reads(&toml)["User"]["small_ops"], 0, "{toml:#}");
    assert!(reported_reads(&toml)["Post"]["small_ops"].as_u64().unwrap() > 0);
    assert_same(&w, "one", "toml");
    std::fs::remove_file(w.path("kindsnap.toml")).unwrap();

    // A server without `__scatter__` (the emulator) is read with one
    // cursor per kind, and gives the same snapshot.
    let plain = DevServer::start(&["--batch-size", "50", "--no-scatter"]);
    w.ok(&["restore", "src", "--to", &plain.url("test")]);
    let r: J = serde_json::from_str(&w.ok(&[
        "snapshot",
        "--from",
        &plain.url("test"),
        "--name",
        "noscatter",
        "--json",
    ]))
    .unwrap();
    assert_eq!(r["entities"], 6000);
    assert_same(&w, "src", "noscatter");
}

#[test]
fn max_rps_bounds_the_requests_in_any_second() {
    let w = Work::new();
    w.init();
    Data::generate(300, 3).write_sorted(&w.path("src.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let server = DevServer::start(&["--batch-size", "20"]);
    let url = server.url("test");
    w.ok(&["restore", "src", "--to", &url]);
    server.stats(true);
    w.ok(&[
        "snapshot",
        "--from",
        &url,
        "--max-rps",
        "8",
        "--name",
        "paced",
    ]);
    let stats = server.stats(false);
    // Counted by the server as requests arrive: enough requests that an
    // unpaced run sends far more than 8 in a second, and never more than
    // the pace (one token in the bucket: 8 a second, plus one at a
    // window's edge and one for requests bunched on their way).
    assert!(stats["total_requests"].as_u64().unwrap() > 16, "{stats}");
    assert!(stats["max_per_second"].as_u64().unwrap() <= 10, "{stats}");
    assert_same(&w, "src", "paced");
}

// ---------------------------------------------------------------------------
// Incremental reads (`--changed-property`)

/// An entity of `kind` with number `id`, `n`, and (unless `None`) an
/// `updated` timestamp (µs), indexed or not.
fn event(kind: &str, id: u64, n: i64, updated: Option<(i64, bool)>) -> J {
    let mut props = json!({ "n": { "integerValue": n.to_string() } });
    if let Some((us, indexed)) = updated {
        let mut v = json!({ "timestampValue": kindsnap::model::json::format_timestamp(us) });
        if !indexed {
            v["excludeFromIndexes"] = json!(true);
        }
        props["updated"] = v;
    }
    json!({ "key": k("", "test", &[(kind, &format!("#{id}"))]), "properties": props })
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Upsert (or delete, for bare keys) through the v1 API.
fn commit(server: &DevServer, upserts: &[J], deletes: &[J]) {
    let mut mutations: Vec<J> = upserts.iter().map(|e| json!({ "upsert": e })).collect();
    mutations.extend(deletes.iter().map(|k| json!({ "delete": k })));
    for chunk in mutations.chunks(500) {
        let (status, body) = server.call(
            "test",
            "commit",
            &json!({ "mode": "NON_TRANSACTIONAL", "mutations": chunk }),
        );
        assert_eq!(status, 200, "{body}");
    }
}

fn snap_json(w: &Work, args: &[&str]) -> J {
    let mut all = vec!["snapshot", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&w.ok(&all)).unwrap()
}

fn kind_of<'a>(r: &'a J, kind: &str) -> &'a J {
    r["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == kind)
        .unwrap_or_else(|| panic!("no kind {kind} in {r:#}"))
}

#[test]
fn incremental_snapshots_equal_full_ones_under_every_kind_of_change() {
    let w = Work::new();
    w.init();
    let server = DevServer::start(&["--batch-size", "100"]);
    let url = server.url("test");
    // Written two hours ago (the margin is five minutes).
    let t0 = now_us() - 7_200_000_000;
    // Event: 1,500 with an indexed `updated`; Note: no `updated` at all;
    // Tag: `updated` excluded from indexes.
    // (2,600 Events: enough to be cut at the parent's keys.)
    let events: Vec<J> = (1..=2600)
        .map(|i| event("Event", i, 0, Some((t0, true))))
        .collect();
    let notes: Vec<J> = (1..=120).map(|i| event("Note", i, 0, None)).collect();
    let tags: Vec<J> = (1..=80)
        .map(|i| event("Tag", i, 0, Some((t0, false))))
        .collect();
    commit(&server, &[events, notes, tags].concat(), &[]);

    let day1 = snap_json(
        &w,
        &[
            "--from",
            &url,
            "--changed-property",
            "updated",
            "--name",
            "d1",
        ],
    );
    assert_eq!(day1["entities"], 2800, "{day1:#}");
    let why = kind_of(&day1, "Event")["read"]["why"].as_str().unwrap();
    assert!(why.contains("no parent"), "{day1:#}");
    let d1_time =
        kindsnap::model::json::parse_timestamp(day1["read_time"].as_str().unwrap()).unwrap();
    assert_eq!(day1["consistent"], true, "{day1:#}");

    // Day 2: 20 updated, 10 inserted, 15 deleted, 5 inserted without the
    // property, 3 updated with a clock 90 s behind the snapshot's (inside
    // the 5-minute margin), a Note and a Tag changed.
    let now = now_us();
    let mut up: Vec<J> = (1..=20)
        .map(|i| event("Event", i * 7, 1, Some((now, true))))
        .collect();
    up.extend((4001..=4010).map(|i| event("Event", i, 1, Some((now, true)))));
    up.extend((3001..=3005).map(|i| event("Event", i, 1, None)));
    up.extend((1..=3).map(|i| event("Event", 1000 + i, 1, Some((d1_time - 90_000_000, true)))));
    up.push(event("Note", 5, 1, None));
    up.push(event("Tag", 6, 1, Some((now, false))));
    let gone: Vec<J> = (1..=15)
        .map(|i| k("", "test", &[("Event", &format!("#{}", 1200 + i))]))
        .collect();
    commit(&server, &up, &gone);

    server.stats(true);
    let inc = snap_json(
        &w,
        &[
            "--from",
            &url,
            "--changed-property",
            "updated",
            "--name",
            "inc",
        ],
    );
    let stats = server.stats(false);
    assert_eq!(
        reported_reads(&inc),
        server_reads(&stats),
        "{inc:#}\n{stats:#}"
    );
    let full = snap_json(
        &w,
        &[
            "--from",
            &url,
            "--changed-property",
            "updated",
            "--full",
            "--name",
            "full",
        ],
    );
    assert_same(&w, "inc", "full");
    assert_eq!(inc["entities"], full["entities"]);
    // `--full` with a parent cuts Event at the parent's keys: no
    // `__scatter__` sample (no keys-only query), all 26 pages read.
    let ev_full = kind_of(&full, "Event");
    assert_eq!(ev_full["read"]["why"], "--full (or full_every)", "{full:#}");
    assert_eq!(ev_full["reads"]["small_ops"], 0, "{full:#}");
    assert!(
        ev_full["reads"]["entity_reads"].as_u64().unwrap() >= 2600,
        "{ev_full:#}"
    );
    assert_eq!(inc["entities"], 2800 + 10 + 5 - 15);
    let d = diff_json(&w, "d1", "inc");
    assert_eq!(count_changes(&d, "added"), 15, "{d:#}");
    assert_eq!(count_changes(&d, "removed"), 15, "{d:#}");
    assert_eq!(count_changes(&d, "changed"), 20 + 3 + 2, "{d:#}");

    // How each kind was read, and why.
    let ev = kind_of(&inc, "Event");
    assert_eq!(ev["read"]["mode"], "incremental", "{inc:#}");
    assert_eq!(ev["read"]["changed"], 20 + 10 + 3, "{inc:#}");
    assert_eq!(ev["read"]["looked_up"], 5, "{inc:#}");
    assert_eq!(ev["read"]["carried"], 2600 - 15 - 20 - 3, "{inc:#}");
    assert_eq!(ev["reads"]["lookups"], 5);
    // Entity reads: the changed ones, the lookups and one per query.
    let reads = ev["reads"]["entity_reads"].as_u64().unwrap();
    assert!(reads <= 33 + 5 + 40, "{ev:#}");
    assert!(ev["reads"]["small_ops"].as_u64().unwrap() >= 2600, "{ev:#}");
    for kind in ["Note", "Tag"] {
        let k = kind_of(&inc, kind);
        assert_eq!(k["read"]["mode"], "full", "{inc:#}");
        assert!(
            k["read"]["why"]
                .as_str()
                .unwrap()
                .contains("not an indexed property"),
            "{inc:#}"
        );
    }
    // The text report says the same.
    let text = w.ok(&[
        "snapshot",
        "--from",
        &url,
        "--changed-property",
        "updated",
        "--name",
        "inc-text",
    ]);
    // (The five-minute margin reads day 2's changes again.)
    assert!(
        text.contains("Event: read what changed (updated): 33 changed, 0 looked up, 2567 carried from the parent"),
        "{text}"
    );
    assert!(
        text.contains("Note: read in full: `updated` is not an indexed property"),
        "{text}"
    );

    // What incremental reads cannot see: a write that sets the property
    // older than the margin. `--full` finds it.
    commit(
        &server,
        &[event("Event", 1, 9, Some((d1_time - 3_600_000_000, true)))],
        &[],
    );
    snap_json(
        &w,
        &[
            "--from",
            &url,
            "--changed-property",
            "updated",
            "--name",
            "blind",
        ],
    );
    snap_json(
        &w,
        &[
            "--from",
            &url,
            "--changed-property",
            "updated",
            "--full",
            "--name",
            "seen",
        ],
    );
    let d = diff_json(&w, "blind", "seen");
    assert_eq!(count_changes(&d, "changed"), 1, "{d:#}");
    assert_same(&w, "inc-text", "blind");

    // kindsnap.toml: the property per kind, and a full read every 2nd.
    w.write(
        "kindsnap.toml",
        "full_every = 2\n\n[kinds.Event]\nchanged_property = \"updated\"\n",
    );
    let one = snap_json(&w, &["--from", &url, "--name", "t1"]);
    assert_eq!(
        kind_of(&one, "Event")["read"]["mode"],
        "incremental",
        "{one:#}"
    );
    let why = kind_of(&one, "Note")["read"]["why"].as_str().unwrap();
    assert!(why.contains("no changed_property"), "{one:#}");
    let two = snap_json(&w, &["--from", &url, "--name", "t2"]);
    assert_eq!(kind_of(&two, "Event")["read"]["mode"], "full", "{two:#}");
    assert!(
        two["notes"][0].as_str().unwrap().contains("full_every = 2"),
        "{two:#}"
    );
    let three = snap_json(&w, &["--from", &url, "--name", "t3"]);
    assert_eq!(
        kind_of(&three, "Event")["read"]["mode"],
        "incremental",
        "{three:#}"
    );
    assert_same(&w, "t1", "t3");
}

#[test]
fn an_incremental_snapshot_reads_one_moment_while_the_app_writes() {
    let w = Work::new();
    w.init();
    let server = DevServer::start(&["--batch-size", "50", "--latency-ms", "40"]);
    let url = server.url("test");
    // Written two hours ago (the margin is five minutes).
    let t0 = now_us() - 7_200_000_000;
    let events: Vec<J> = (1..=600)
        .map(|i| event("Event", i, 0, Some((t0, true))))
        .collect();
    commit(&server, &events, &[]);
    snap_json(
        &w,
        &[
            "--from",
            &url,
            "--changed-property",
            "updated",
            "--name",
            "d1",
        ],
    );
    commit(
        &server,
        &[event("Event", 3, 1, Some((now_us(), true)))],
        &[],
    );

    // The app writes while the snapshot runs: after the snapshot's first
    // queries (its read time is fixed by then).
    server.stats(true);
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"))
        .current_dir(w.dir.path())
        .arg("--repo")
        .arg(w.repo())
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .args([
            "snapshot",
            "--json",
            "--from",
            &url,
            "--changed-property",
            "updated",
            "--name",
            "during",
            "--concurrency",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        let s = server.stats(false);
        if s["requests"]["runQuery"].as_u64().unwrap_or(0) >= 8 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let now = now_us();
    commit(
        &server,
        &[
            event("Event", 590, 2, Some((now, true))),
            event("Event", 9000, 2, Some((now, true))),
        ],
        &[k("", "test", &[("Event", "#595")])],
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let during: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(during["consistent"], true, "{during:#}");
    // The snapshot is the state at its read time: the writes made during
    // it are in none of its kinds.
    assert_eq!(during["entities"], 600, "{during:#}");
    let d = diff_json(&w, "d1", "during");
    assert_eq!(count_changes(&d, "changed"), 1, "{d:#}");
    // The next one reads them, and equals a full read.
    let after = snap_json(
        &w,
        &[
            "--from",
            &url,
            "--changed-property",
            "updated",
            "--name",
            "after",
        ],
    );
    assert_eq!(kind_of(&after, "Event")["read"]["changed"], 3, "{after:#}");
    snap_json(&w, &["--from", &url, "--full", "--name", "full"]);
    assert_same(&w, "after", "full");

    // A server that cannot read at a given time: a note, and still right.
    let old = DevServer::start(&["--no-read-time"]);
    let old_url = old.url("test");
    commit(&old, &events, &[]);
    let w2 = Work::new();
    w2.init();
    snap_json(
        &w2,
        &[
            "--from",
            &old_url,
            "--changed-property",
            "updated",
            "--name",
            "a",
        ],
    );
    commit(&old, &[event("Event", 7, 5, Some((now_us(), true)))], &[]);
    let b = snap_json(
        &w2,
        &[
            "--from",
            &old_url,
            "--changed-property",
            "updated",
            "--name",
            "b",
        ],
    );
    assert_eq!(b["consistent"], false, "{b:#}");
    assert!(
        b["notes"][0].as_str().unwrap().contains("readTime"),
        "{b:#}"
    );
    assert_eq!(kind_of(&b, "Event")["read"]["changed"], 1, "{b:#}");
    snap_json(&w2, &["--from", &old_url, "--full", "--name", "c"]);
    assert_same(&w2, "b", "c");
}

/// A snapshot killed half-way through its reads (SIGKILL) publishes
/// nothing and leaves the repository sound; the same command run again
/// reads the datastore whole and gives the snapshot an uninterrupted run
/// gives.
#[test]
fn a_snapshot_killed_mid_read_reruns_to_the_same_result() {
    let w = Work::new();
    w.init();
    let data = Data::generate(3000, 12);
    data.write_shuffled(&w.path("src.jsonl"), 1);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "src"]);
    let server = DevServer::start(&["--latency-ms", "100"]);
    let url = server.url("p");
    w.ok(&["restore", "src", "--to", &url]);
    w.ok(&["snapshot", "--from", &url, "--name", "whole"]);

    server.stats(true);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"))
        .current_dir(w.dir.path())
        .arg("--repo")
        .arg(w.repo())
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .args(["snapshot", "--from", &url, "--name", "again"])
        .args(["--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Six kinds read one query at a time, each 100 ms away: after the
    // second query most of the reading is still to come.
    loop {
        let s = server.stats(false);
        if s["requests"]["runQuery"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    w.ok(&["check", "--read-data"]);
    assert!(
        !w.ok(&["log"]).contains("again"),
        "a killed snapshot was published"
    );
    w.ok(&["snapshot", "--from", &url, "--name", "again"]);
    w.ok(&["check", "--read-data"]);
    assert_same(&w, "whole", "again");
}
