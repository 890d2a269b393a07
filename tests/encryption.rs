//! Encrypted repositories (issue 19): nothing of the data is readable in
//! the repository's files, ids cannot be guessed, every stored byte is
//! authenticated, and every command works as on a plain repository.
//! Each test runs the real binary in its own temp dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/s3.rs"]
mod s3;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{canonical_set, Data, Work};

/// A unique marker in the data's values, keys and kind names.
const MARKER: &str = "zqxMarker7Kv";
const PASSWORD: &str = "correct horse battery staple";

/// `kindsnap --repo <repo>` with the password in the environment.
fn ks(w: &Work, args: &[&str]) -> Output {
    w.ks()
        .env("KINDSNAP_PASSWORD", PASSWORD)
        .args(args)
        .output()
        .unwrap()
}

fn ok(w: &Work, args: &[&str]) -> String {
    let out = ks(w, args);
    assert!(
        out.status.success(),
        "kindsnap {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn fails(w: &Work, args: &[&str]) -> String {
    let out = ks(w, args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "kindsnap {args:?} should have failed; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}

/// Data whose values, key names and one kind's name carry the marker.
fn marked_data(n: usize, seed: u64) -> Data {
    let mut d = Data::generate(n, seed);
    let mut rng = common::Rng::new(seed + 1);
    for i in 0..20 {
        d.insert(
            "",
            &[(
                "SecretKindzqxMarker7Kv",
                format!("{MARKER}-user{i}@example.com"),
            )],
            1,
            &mut rng,
        );
    }
    let lines = std::mem::take(&mut d.lines);
    d.lines = lines
        .into_iter()
        .map(|(k, v)| {
            let v = v.replacen(
                "\"properties\":{",
                &format!("\"properties\":{{\"email\":{{\"stringValue\":\"{MARKER}@shop\"}},"),
                1,
            );
            (k, v)
        })
        .collect();
    d
}

fn init_encrypted(w: &Work) {
    let out = ok(w, &["init", "--encrypt"]);
    assert!(out.contains("created encrypted repository"), "{out}");
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The life cycle on an encrypted repository: two snapshots, log, show,
/// diff, cat, export, restore, forget, prune, check --read-data; then no
/// file of the repository holds the marker, a kind name or a key.
#[test]
fn no_plaintext_of_the_data_in_any_file_of_an_encrypted_repository() {
    let w = Work::new();
    init_encrypted(&w);
    let mut data = marked_data(600, 1);
    let src = w.path("src.jsonl");
    data.write_sorted(&src);
    ok(
        &w,
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "day1"],
    );
    data.mutate(2, 30, 10, 15);
    data.write_sorted(&src);
    ok(
        &w,
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "day2"],
    );
    let log = ok(&w, &["log"]);
    assert!(log.contains("day1") && log.contains("day2"), "{log}");
    assert!(ok(&w, &["show", "day2"]).contains("SecretKind"));
    let diff = ok(&w, &["diff", "day1", "day2", "--keys"]);
    assert!(diff.contains("changed") || diff.contains('~'), "{diff}");
    let cat = ok(
        &w,
        &[
            "cat",
            "day1",
            &format!("SecretKind{MARKER}:{MARKER}-user3@example.com"),
        ],
    );
    assert!(cat.contains(MARKER), "{cat}");
    ok(&w, &["export", "day2", "--to", "jsonl:out.jsonl"]);
    assert_eq!(canonical_set(&w.path("out.jsonl")), canonical_set(&src));
    ok(&w, &["restore", "day1", "--to", "jsonl:restored.jsonl"]);
    ok(&w, &["stats"]);
    ok(&w, &["forget", "day1"]);
    // Repack everything that holds a forgotten body: prune reads sealed
    // blocks and writes sealed packs.
    let pruned = ok(&w, &["prune", "--max-unused", "0"]);
    assert!(!pruned.contains("repack 0 packs"), "{pruned}");
    let check = ok(&w, &["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");
    // The index rebuilt from the sealed packs alone.
    ok(&w, &["check", "--rebuild-index"]);
    let check = ok(&w, &["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");
    ok(&w, &["export", "day2", "--to", "jsonl:again.jsonl"]);
    assert_eq!(canonical_set(&w.path("again.jsonl")), canonical_set(&src));

    let all = files(&w.repo());
    assert!(all.iter().any(|p| p.starts_with(w.repo().join("packs"))));
    for needle in [
        MARKER,
        "SecretKind",
        "user1",
        "Comment",
        "shop",
        "src.jsonl",
    ] {
        for f in &all {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{} holds `{needle}` in the clear",
                f.display()
            );
        }
    }
}

/// The object names of a repository: packs, manifests, key files.
fn object_names(repo: &Path) -> BTreeSet<String> {
    files(repo)
        .into_iter()
        .filter(|p| {
            ["packs", "snapshots", "keys"]
                .iter()
                .any(|d| p.starts_with(repo.join(d)))
        })
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect()
}

/// Ids are keyed: two encrypted repositories of the same data share no
/// file name (two plain ones share every pack name, which shows the
/// comparison can fail).
#[test]
fn two_encrypted_repositories_of_the_same_data_share_no_file_names() {
    let data = marked_data(300, 5);
    let names = |encrypt: bool| {
        let w = Work::new();
        if encrypt {
            init_encrypted(&w);
        } else {
            ok(&w, &["init", "--plain"]);
        }
        data.write_sorted(&w.path("src.jsonl"));
        ok(
            &w,
            &["snapshot", "--from", "jsonl:src.jsonl", "--name", "a"],
        );
        (object_names(&w.repo()), w)
    };
    let (a, _wa) = names(true);
    let (b, _wb) = names(true);
    assert!(a.len() >= 3, "{a:?}");
    assert_eq!(a.intersection(&b).count(), 0, "{a:?} {b:?}");
    let (p, _wp) = names(false);
    let (q, _wq) = names(false);
    assert!(
        p.intersection(&q).count() >= 1,
        "plain packs are named by content"
    );
}

#[test]
fn wrong_password_missing_password_and_missing_key_files() {
    let w = Work::new();
    init_encrypted(&w);
    let data = Data::generate(30, 3);
    data.write_sorted(&w.path("src.jsonl"));
    ok(&w, &["snapshot", "--from", "jsonl:src.jsonl"]);

    let out = w
        .ks()
        .env("KINDSNAP_PASSWORD", "not it")
        .arg("log")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("wrong password: no key in") && err.contains("keys/"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // No password from anywhere, and no terminal: one line naming the options.
    let out = w
        .ks()
        .env_remove("KINDSNAP_PASSWORD")
        .arg("log")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for option in ["--password-file", "--password-command", "KINDSNAP_PASSWORD"] {
        assert!(err.contains(option), "{err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");

    // --password-file and --password-command come before the environment.
    let pw = w.write("pw.txt", &format!("{PASSWORD}\n"));
    let out = w
        .ks()
        .env("KINDSNAP_PASSWORD", "not it")
        .arg("--password-file")
        .arg(&pw)
        .arg("log")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = w
        .ks()
        .env("KINDSNAP_PASSWORD", "not it")
        .args(["--password-command", "cat pw.txt", "log"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The key files gone: nothing can open the repository.
    for f in files(&w.repo().join("keys")) {
        std::fs::remove_file(f).unwrap();
    }
    let err = fails(&w, &["log"]);
    assert!(err.contains("holds no key file in keys/"), "{err}");
}

#[test]
fn keys_can_be_added_removed_and_changed_while_one_remains() {
    let w = Work::new();
    init_encrypted(&w);
    let data = Data::generate(30, 4);
    data.write_sorted(&w.path("src.jsonl"));
    ok(
        &w,
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "s"],
    );
    let first = ok(&w, &["key", "list"]);
    assert_eq!(first.lines().count(), 1);
    let first_id = first.split_whitespace().nth(1).unwrap().to_string();

    w.write("second.txt", "second password\n");
    ok(&w, &["key", "add", "--new-password-file", "second.txt"]);
    assert_eq!(ok(&w, &["key", "list"]).lines().count(), 2);
    // The key in use cannot be removed.
    let err = fails(&w, &["key", "remove", &first_id]);
    assert!(err.contains("is the one in use or the last one"), "{err}");

    // Opened with the second key, the first can go; the repository works.
    let second = |args: &[&str]| {
        w.ks()
            .arg("--password-file")
            .arg(w.path("second.txt"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = second(&["key", "remove", &first_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fails(&w, &["log"]).contains("wrong password"));
    let out = second(&["export", "s", "--to", "jsonl:out.jsonl"]);
    assert!(out.status.success());
    assert_eq!(
        canonical_set(&w.path("out.jsonl")),
        canonical_set(&w.path("src.jsonl"))
    );
    // The last key cannot be removed.
    let list = String::from_utf8_lossy(&second(&["key", "list"]).stdout).to_string();
    let last = list.split_whitespace().nth(1).unwrap().to_string();
    let out = second(&["key", "remove", &last]);
    assert!(!out.status.success());

    // passwd: the new password opens it, the old one no longer does.
    w.write("third.txt", "third password");
    let out = second(&["key", "passwd", "--new-password-file", "third.txt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!second(&["log"]).status.success());
    let out = w
        .ks()
        .arg("--password-file")
        .arg(w.path("third.txt"))
        .arg("log")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Flip one byte of `file` at `at` (from the end when negative).
fn flip(file: &Path, at: i64) {
    let mut bytes = std::fs::read(file).unwrap();
    let i = if at < 0 {
        bytes.len() - (-at) as usize
    } else {
        at as usize
    };
    bytes[i] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

/// A repository with one snapshot, copied fresh for each damage.
fn damaged_copy(w: &Work, name: &str) -> Work {
    let c = Work::new();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(w.repo())
        .arg(c.repo())
        .status()
        .unwrap();
    assert!(status.success());
    let _ = name;
    c
}

fn only_file(dir: &Path) -> PathBuf {
    let f = files(dir);
    assert_eq!(f.len(), 1, "{f:?}");
    f[0].clone()
}

/// A flipped byte in a pack (a block, the table of contents), a manifest
/// (its header, its database), the config: an authentication failure
/// naming the file, never wrong data.
#[test]
fn a_flipped_byte_in_every_file_type_is_an_authentication_failure() {
    let w = Work::new();
    init_encrypted(&w);
    let data = marked_data(200, 6);
    data.write_sorted(&w.path("src.jsonl"));
    ok(
        &w,
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "s"],
    );

    // (what, where, which byte, the command, whether it must fail: check
    // finds a damaged table of contents but every entity still reads back)
    let export: &[&str] = &["export", "s", "--to", "jsonl:out.jsonl"];
    let cases: Vec<(&str, &str, i64, &[&str], bool)> = vec![
        ("pack block", "packs", 40, export, true),
        (
            "pack block, check",
            "packs",
            40,
            &["check", "--read-data"],
            true,
        ),
        ("pack toc", "packs", -20, &["check", "--read-data"], false),
        ("manifest header", "snapshots", 30, &["log"], false),
        ("manifest header, check", "snapshots", 30, &["check"], true),
        ("manifest database", "snapshots", -30, export, true),
        ("manifest, check", "snapshots", -30, &["check"], true),
    ];
    for (what, dir, at, args, must_fail) in cases {
        let c = damaged_copy(&w, what);
        let file = files(&c.repo().join(dir))
            .into_iter()
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap();
        flip(&file, at);
        let out = ks(&c, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(!out.status.success(), must_fail, "{what}: {text}");
        assert!(text.contains("authentication failed"), "{what}: {text}");
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(text.contains(&name[..8]), "{what} names the file: {text}");
        // Never wrong data: an export either fails or is not there.
        assert!(!c.path("out.jsonl").exists(), "{what}");
    }

    // The config: its MAC no longer matches.
    let c = damaged_copy(&w, "config");
    let config = c.repo().join("config");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"zstd_level\": 1", "\"zstd_level\": 3"),
    )
    .unwrap();
    let err = fails(&c, &["log"]);
    assert!(err.contains("config: authentication failed"), "{err}");

    // A key file: its sealed key no longer opens (the password cannot be
    // told apart from a changed file).
    let c = damaged_copy(&w, "key");
    let key = only_file(&c.repo().join("keys"));
    let text = std::fs::read_to_string(&key).unwrap();
    let at = text.find("\"data\": \"").unwrap() + 12;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&key, bytes).unwrap();
    let err = fails(&c, &["log"]);
    assert!(err.contains("wrong password"), "{err}");

    // The index's sealed kind names.
    let c = damaged_copy(&w, "index");
    let db = rusqlite::Connection::open(c.repo().join("index/index.db")).unwrap();
    let kind: String = db
        .query_row("SELECT kind FROM packs LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let mut b = kind.into_bytes();
    b[10] = if b[10] == b'A' { b'B' } else { b'A' };
    db.execute(
        "UPDATE packs SET kind = ?1 WHERE pid = (SELECT min(pid) FROM packs)",
        [String::from_utf8(b).unwrap()],
    )
    .unwrap();
    drop(db);
    let err = fails(&c, &["stats"]);
    assert!(
        err.contains("index.db") && err.contains("authentication failed"),
        "{err}"
    );
}

#[test]
fn init_encrypt_refuses_a_plain_repository_and_plain_ones_stay_as_they_were() {
    let w = Work::new();
    ok(&w, &["init"]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.repo().join("config")).unwrap()).unwrap();
    assert_eq!(config["kindsnap_repository"], 1);
    assert!(config.get("encryption").is_none());
    assert!(!w.repo().join("keys").exists());
    let err = fails(&w, &["init", "--encrypt"]);
    assert!(err.contains("cannot be encrypted in place"), "{err}");
    assert!(err.contains("copy --from-repo"), "{err}");

    // An encrypted repository is format 3: older builds (which read up to
    // 2) refuse it with "upgrade kindsnap".
    let e = Work::new();
    init_encrypted(&e);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.repo().join("config")).unwrap()).unwrap();
    assert_eq!(config["kindsnap_repository"], 3);
    assert_eq!(config["encryption"]["cipher"], "xchacha20-poly1305");
}

/// `copy` turns a plain repository into an encrypted one: every snapshot
/// with its name, the second stored as its changes only, and a second
/// copy writes nothing.
#[test]
fn copy_moves_a_plain_repository_into_an_encrypted_one() {
    let plain = Work::new();
    ok(&plain, &["init", "--plain"]);
    let mut data = marked_data(400, 8);
    data.write_sorted(&plain.path("src.jsonl"));
    ok(
        &plain,
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "mon"],
    );
    data.mutate(9, 10, 5, 5);
    data.write_sorted(&plain.path("src.jsonl"));
    ok(
        &plain,
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "tue"],
    );

    let enc = Work::new();
    init_encrypted(&enc);
    let from = plain.repo().display().to_string();
    let out = ok(&enc, &["copy", "--from-repo", &from]);
    assert!(
        out.contains("copied mon") && out.contains("copied tue"),
        "{out}"
    );
    let again = ok(&enc, &["copy", "--from-repo", &from]);
    assert!(
        again.contains("had mon") && again.contains("had tue"),
        "{again}"
    );
    // Dedup: tue stored its changes only.
    let added = |name: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("copied {name} ")))
            .unwrap();
        line.split(", ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(added("tue") * 4 < added("mon"), "{out}");
    ok(&enc, &["export", "tue", "--to", "jsonl:tue.jsonl"]);
    assert_eq!(
        canonical_set(&enc.path("tue.jsonl")),
        canonical_set(&plain.path("src.jsonl"))
    );
    ok(&enc, &["export", "mon", "--to", "jsonl:mon.jsonl"]);
    let diff = ok(&enc, &["diff", "mon", "tue", "--stat"]);
    assert!(!diff.is_empty());
    for f in files(&enc.repo()) {
        assert!(
            !contains(&std::fs::read(&f).unwrap(), MARKER.as_bytes()),
            "{}",
            f.display()
        );
    }
}

/// `kindsnap --repo URL` on the moto server, with its own cache.
fn s3_cmd(w: &Work, port: u16, cache: &str, args: &[&str]) -> Output {
    assert_cmd::Command::cargo_bin("kindsnap")
        .unwrap()
        .current_dir(w.dir.path())
        .args(["--repo", "s3://bkt/enc"])
        .args(args)
        .env_remove("KINDSNAP_REPO")
        .env_remove("AWS_PROFILE")
        .env_remove("KINDSNAP_S3_ENDPOINT")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("KINDSNAP_CACHE_DIR", w.path(cache))
        .env("KINDSNAP_PASSWORD", PASSWORD)
        .env("KINDSNAP_REMOTE_TIMEOUT", "2")
        .output()
        .unwrap()
}

fn s3_ok(w: &Work, port: u16, cache: &str, args: &[&str]) -> String {
    let out = s3_cmd(w, port, cache, args);
    assert!(
        out.status.success(),
        "kindsnap {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The life cycle of an encrypted repository on the S3 test server, from
/// two machines (caches); no object holds the marker; a key added on
/// one machine opens the repository on another; a flipped index segment
/// fails authentication.
#[test]
fn encrypted_life_cycle_on_s3() {
    let moto = s3::Moto::start();
    moto.create_bucket("bkt");
    let w = Work::new();
    let port = moto.port;
    let out = s3_ok(&w, port, "a", &["init", "--encrypt"]);
    assert!(out.contains("created encrypted repository"), "{out}");
    let keys = moto.keys("bkt", "enc/");
    assert!(keys.iter().any(|k| k.starts_with("enc/keys/")), "{keys:?}");

    let mut data = marked_data(500, 11);
    let src = w.path("src.jsonl");
    data.write_sorted(&src);
    s3_ok(
        &w,
        port,
        "a",
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "d1"],
    );
    data.mutate(12, 20, 5, 10);
    data.write_sorted(&src);
    s3_ok(
        &w,
        port,
        "a",
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "d2"],
    );

    // Another machine: log, diff, export, check --read-data.
    let log = s3_ok(&w, port, "b", &["log"]);
    assert!(log.contains("d1") && log.contains("d2"), "{log}");
    s3_ok(&w, port, "b", &["diff", "d1", "d2"]);
    s3_ok(&w, port, "b", &["export", "d2", "--to", "jsonl:out.jsonl"]);
    assert_eq!(canonical_set(&w.path("out.jsonl")), canonical_set(&src));
    let check = s3_ok(&w, port, "b", &["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");
    s3_ok(&w, port, "b", &["forget", "d1"]);
    s3_ok(&w, port, "b", &["prune"]);
    let check = s3_ok(&w, port, "a", &["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");

    let keys = moto.keys("bkt", "enc/");
    assert!(keys.iter().any(|k| k.starts_with("enc/index/")), "{keys:?}");
    for k in &keys {
        let (status, body) = s3::http_signed_bytes(port, "GET", &format!("/bkt/{k}"), b"");
        assert_eq!(status, 200, "{k}");
        assert!(!body.is_empty(), "{k}");
        for needle in [MARKER, "SecretKind", "src.jsonl"] {
            assert!(
                !contains(&body, needle.as_bytes()),
                "object {k} holds `{needle}`"
            );
        }
    }

    // A key added on machine a opens the repository on machine c.
    w.write("second.txt", "second");
    s3_ok(
        &w,
        port,
        "a",
        &["key", "add", "--new-password-file", "second.txt"],
    );
    let out = s3_cmd(&w, port, "c", &["--password-file", "second.txt", "log"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s3_cmd(&w, port, "c", &["--password-file", "src.jsonl", "log"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));

    // A flipped byte in the index segment: a fresh cache refuses it.
    let seg = keys.iter().find(|k| k.starts_with("enc/index/")).unwrap();
    let (status, mut bytes) = s3::http_signed_bytes(port, "GET", &format!("/bkt/{seg}"), b"");
    assert_eq!(status, 200);
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let (status, _) = s3::http_signed_bytes(port, "PUT", &format!("/bkt/{seg}"), &bytes);
    assert_eq!(status, 200);
    let out = s3_cmd(&w, port, "d", &["log"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("authentication failed") && err.contains(&seg[4..]),
        "{err}"
    );
}

/// Restore journals and key maps of an encrypted repository hold no name
/// or key in the clear, whether the restore finished or was killed; a
/// killed restore resumes to the uninterrupted result, and the key map
/// answers both ways.
#[test]
fn restore_journals_and_key_maps_are_sealed() {
    let w = Work::new();
    init_encrypted(&w);
    let data = marked_data(6000, 13);
    data.write_sorted(&w.path("src.jsonl"));
    ok(
        &w,
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "s"],
    );
    let target = "jsonl:t.jsonl";
    let t = std::time::Instant::now();
    ok(&w, &["restore", "s", "--to", target, "--keys", "uuid"]);
    let full = t.elapsed();
    let want = std::fs::read(w.path("t.jsonl")).unwrap();
    let scan = |when: &str| {
        for dir in ["restores", "keymaps"] {
            let d = w.repo().join(dir);
            if !d.exists() {
                continue;
            }
            for f in files(&d) {
                let bytes = std::fs::read(&f).unwrap();
                for needle in [MARKER, "SecretKind", "User", "t.jsonl"] {
                    assert!(
                        !contains(&bytes, needle.as_bytes()),
                        "{when}: {} holds `{needle}`",
                        f.display()
                    );
                }
            }
        }
    };
    scan("after a restore");
    let mut journals = 0;
    for i in 1..=3 {
        std::fs::remove_file(w.path("t.jsonl")).unwrap();
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"))
            .current_dir(w.dir.path())
            .arg("--repo")
            .arg(w.repo())
            .env("KINDSNAP_PASSWORD", PASSWORD)
            .env("KINDSNAP_CHECKPOINT_EVERY", "300")
            .args(["restore", "s", "--to", target, "--keys", "uuid"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(i as f64 / 4.0));
        let _ = child.kill();
        let _ = child.wait();
        journals += files(&w.repo().join("restores"))
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "db"))
            .count();
        scan("after a killed restore");
        ok(&w, &["restore", "s", "--to", target, "--keys", "uuid"]);
        assert!(
            std::fs::read(w.path("t.jsonl")).unwrap() == want,
            "run {i} differs"
        );
    }
    assert!(journals >= 1, "no run left a journal to look at");
    let m = ok(&w, &["keymap", target, "Post:1"]);
    let (orig, new) = m.trim().split_once(" -> ").unwrap();
    assert_eq!(orig, "Post:1");
    assert_eq!(ok(&w, &["keymap", target, new]).trim(), m.trim());
}

/// The line cache of an encrypted repository is sealed: day 2 reuses
/// day 1's lines (the cache works), the cache file holds no marker, and a
/// flipped byte in it makes lines be parsed again with the same result.
#[test]
fn the_line_cache_is_sealed_and_still_used() {
    let w = Work::new();
    init_encrypted(&w);
    let mut data = marked_data(3000, 14);
    data.write_sorted(&w.path("src.jsonl"));
    ok(
        &w,
        &["snapshot", "--from", "jsonl:src.jsonl", "--name", "d1"],
    );
    data.mutate(15, 30, 10, 10);
    data.write_sorted(&w.path("src.jsonl"));
    let hits = |name: &str| -> u64 {
        let out = ks(
            &w,
            &[
                "-vv",
                "snapshot",
                "--from",
                "jsonl:src.jsonl",
                "--name",
                name,
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        stderr
            .lines()
            .find_map(|l| {
                l.split("line cache: ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    assert!(hits("d2") > 2500, "day 2 reuses the sealed cache");
    let caches = files(&w.cache_dir().join("lines"));
    assert_eq!(caches.len(), 1, "{caches:?}");
    let bytes = std::fs::read(&caches[0]).unwrap();
    for needle in [MARKER, "SecretKind", "User", "src.jsonl"] {
        assert!(
            !contains(&bytes, needle.as_bytes()),
            "the line cache holds `{needle}`"
        );
    }
    // Damage: the cache is a shortcut only.
    flip(&caches[0], 100);
    data.mutate(16, 5, 0, 0);
    data.write_sorted(&w.path("src.jsonl"));
    assert_eq!(hits("d3"), 0, "a damaged sealed cache is not used");
    ok(&w, &["export", "d3", "--to", "jsonl:out.jsonl"]);
    assert_eq!(
        canonical_set(&w.path("out.jsonl")),
        canonical_set(&w.path("src.jsonl"))
    );
}

/// The encrypted format is fixed: a repository made by the build that
/// introduced it (tests/fixtures/repo-v3-encrypted) reads, checks and
/// dedups with today's.
#[test]
fn encrypted_format_v3_fixture_reads_and_dedups() {
    let w = Work::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::copy_dir(&root.join("tests/fixtures/repo-v3-encrypted"), &w.repo());
    let run = |args: &[&str]| {
        let out = w
            .ks()
            .env("KINDSNAP_PASSWORD", "kindsnap fixture")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let log = run(&["log"]);
    assert!(log.contains("monday") && log.contains("tuesday"), "{log}");
    assert!(run(&["check", "--read-data"]).contains("no problems found"));
    for (snap, file) in [("monday", "day1.jsonl"), ("tuesday", "day2.jsonl")] {
        let out = w.path(&format!("{snap}.jsonl"));
        run(&["export", snap, "--to", &format!("jsonl:{}", out.display())]);
        assert_eq!(
            canonical_set(&out),
            canonical_set(&root.join("docs/examples").join(file)),
            "{snap}"
        );
    }
    std::fs::copy(root.join("docs/examples/day2.jsonl"), w.path("again.jsonl")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&run(&[
        "snapshot",
        "--from",
        "jsonl:again.jsonl",
        "--name",
        "again",
        "--json",
    ]))
    .unwrap();
    for k in s["kinds"].as_array().unwrap() {
        assert_eq!(k["bytes_added"], 0, "kind {} stored new bodies", k["kind"]);
    }
}

/// Tags (kindsnap tag, snapshot --tag, forget --keep-tag) on an encrypted
/// repository: the rewritten header is sealed like any manifest, the
/// snapshot's id stays, the tag is in no file in the clear, and `check
/// --read-data` verifies the rewritten manifest.
#[test]
fn tags_on_an_encrypted_repository_are_sealed_and_keep_ids() {
    let w = Work::new();
    init_encrypted(&w);
    let data = marked_data(300, 31);
    data.write_sorted(&w.path("cur.jsonl"));
    ok(
        &w,
        &["snapshot", "--from", "jsonl:cur.jsonl", "--name", "a"],
    );
    ok(
        &w,
        &[
            "snapshot",
            "--from",
            "jsonl:cur.jsonl",
            "--name",
            "b",
            "--tag",
            "TagzqxA",
        ],
    );
    let log = |w: &Work| -> serde_json::Value {
        serde_json::from_str(&ok(w, &["log", "--json"])).unwrap()
    };
    let id_a = log(&w)
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "a")
        .unwrap()["id"]
        .clone();
    ok(&w, &["tag", "add", "TagzqxB", "a"]);
    let after = log(&w);
    let a = after
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "a")
        .unwrap();
    assert_eq!(a["id"], id_a, "{after}");
    assert_eq!(a["tags"], serde_json::json!(["TagzqxB"]), "{after}");
    for f in files(&w.repo()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, b"Tagzqx"),
            "a tag in the clear in {}",
            f.display()
        );
    }
    ok(&w, &["forget", "--keep-tag", "TagzqxB"]);
    let names: Vec<String> = log(&w)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a"]);
    ok(&w, &["check", "--read-data"]);
    // Without the password, nothing about the tags can be read.
    let out = w
        .ks()
        .args(["log"])
        .env_remove("KINDSNAP_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Taking `encryption` out of an encrypted repository's config (to make
/// the next snapshot write in the clear) is refused, and so is
/// `encryption` in a config of an older format; a plain repository that
/// tags raised to format 3 opens as before.
#[test]
fn a_config_stripped_of_its_encryption_is_refused() {
    let w = Work::new();
    init_encrypted(&w);
    let path = w.repo().join("config");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config.as_object_mut().unwrap().remove("encryption");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    w.write(
        "a.jsonl",
        &marked_data(5, 3)
            .lines
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let err = fails(&w, &["snapshot", "--from", "jsonl:a.jsonl"]);
    assert!(err.contains("keys/ holds key files"), "{err}");
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["kindsnap_repository"] = 2.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let err = fails(&w, &["log"]);
    assert!(err.contains("older than 3"), "{err}");

    let plain = Work::new();
    plain.init();
    plain.write(
        "a.jsonl",
        &marked_data(5, 3)
            .lines
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    );
    plain.ok(&[
        "snapshot",
        "--from",
        "jsonl:a.jsonl",
        "--name",
        "s",
        "--tag",
        "t",
    ]);
    let config = std::fs::read_to_string(plain.repo().join("config")).unwrap();
    assert!(config.contains("\"kindsnap_repository\": 3"), "{config}");
    plain.ok(&["check", "--read-data"]);
}
