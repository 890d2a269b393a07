//! Google managed exports (`datastore-export:PATH`), through the real
//! binary. The exports are written by tests/gexport/gen.py with Google's
//! own serializer (App Engine's EntityProto, filled by App Engine's v1 → v3
//! converter) and a LevelDB log writer; beside each, the same entities as
//! Google's v3 → v1 converter shows them (`*.expected.jsonl`). So "no
//! differences" below means: kindsnap reads an export exactly as the Cloud
//! Datastore v1 API shows the same data — and, through the dev server, as
//! a Datastore holding it answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/devserver.rs"]
mod devserver;
#[path = "common/s3.rs"]
mod s3;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::Work;

/// Where gen.py wrote everything (once per test run), and its manifest.
struct Fixtures {
    dir: PathBuf,
    manifest: serde_json::Value,
    _tmp: tempfile::TempDir,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var_os("KINDSNAP_DEVSERVER_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/devserver-venv/bin/python"));
        assert!(
            python.exists(),
            "the dev server's virtualenv is missing: run tests/gexport/setup.sh (scripts/test.sh does)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gen");
        let out = std::process::Command::new(python)
            .arg(root.join("tests/gexport/gen.py"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gen.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap())
            .unwrap();
        Fixtures {
            dir,
            manifest,
            _tmp: tmp,
        }
    })
}

impl Fixtures {
    fn export(&self, name: &str) -> String {
        self.manifest[name].as_str().unwrap().to_string()
    }

    fn expected(&self, name: &str) -> String {
        format!(
            "jsonl:{}",
            self.dir.join(format!("{name}.expected.jsonl")).display()
        )
    }
}

fn snap(w: &Work, from: &str, name: &str) -> String {
    w.ok(&["snapshot", "--from", from, "--name", name])
}

fn assert_same(w: &Work, a: &str, b: &str) {
    let out = w.ok(&["diff", a, b]);
    assert!(
        out.contains("no differences"),
        "{a} and {b} differ:\n{out}\n{}",
        w.ok(&["diff", a, b, "--keys", "--props"])
    );
}

fn entities(w: &Work, snapshot: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == snapshot)
        .map(|s| s["entities"].as_u64().unwrap())
        .unwrap()
}

#[test]
fn every_value_type_reads_as_the_v1_api_shows_it() {
    let f = fixtures();
    let w = Work::new();
    w.init();
    // Every v1 value type, legacy-only properties (ratings, links, dates
    // past 9999, non-UTF-8 strings, points without meaning, user values,
    // zlib blobs, empty lists, mixed-index lists), two namespaces,
    // ancestors, a record over several blocks, an empty data file.
    snap(
        &w,
        &format!("datastore-export:{}", f.export("day1")),
        "export",
    );
    snap(&w, &f.expected("day1"), "v1");
    assert_same(&w, "v1", "export");
    assert_eq!(entities(&w, "export"), 90);
    // The overall metadata file names the same export.
    let meta = std::fs::read_dir(f.export("day1"))
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".overall_export_metadata")
        })
        .unwrap()
        .path();
    snap(
        &w,
        &format!("datastore-export:{}", meta.display()),
        "by-metadata",
    );
    assert_same(&w, "export", "by-metadata");
}

#[test]
fn a_dev_server_holding_the_same_entities_shows_them_identically() {
    let f = fixtures();
    let w = Work::new();
    w.init();
    let server = devserver::DevServer::start(&[]);
    // Not `Legacy`: the v1 API refuses to write some of what it shows
    // of legacy data (an unindexed empty list).
    let kinds = "Every,User,Order,Big";
    snap(&w, &f.expected("day1"), "v1");
    w.ok(&[
        "restore",
        "v1",
        "--to",
        &server.url("proj"),
        "--kinds",
        kinds,
    ]);
    w.ok(&[
        "snapshot",
        "--from",
        &server.url("proj"),
        "--name",
        "devserver",
    ]);
    let from = format!("datastore-export:{}", f.export("day1"));
    w.ok(&[
        "snapshot", "--from", &from, "--name", "export", "--kinds", kinds,
    ]);
    assert_eq!(entities(&w, "export"), 89);
    assert_same(&w, "devserver", "export");
}

#[test]
fn domain_scoped_projects_and_filtered_exports() {
    let f = fixtures();
    let w = Work::new();
    w.init();
    snap(
        &w,
        &format!("datastore-export:{}", f.export("domain")),
        "domain",
    );
    snap(&w, &f.expected("domain"), "domain-v1");
    assert_same(&w, "domain", "domain-v1");
    let entity = w.ok(&["cat", "domain", "Every:1"]);
    assert!(
        entity.contains("\"projectId\": \"example.com:proj\""),
        "{entity}"
    );

    snap(
        &w,
        &format!("datastore-export:{}", f.export("filtered")),
        "filtered",
    );
    snap(&w, &f.expected("filtered"), "filtered-v1");
    assert_same(&w, "filtered", "filtered-v1");
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    let source = log
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "filtered")
        .unwrap()["source"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        source.ends_with("(proj; kinds=Every,Order namespaces=-,shop)"),
        "{source}"
    );
}

#[test]
fn daily_exports_into_one_folder_form_one_history() {
    let f = fixtures();
    let w = Work::new();
    w.init();
    for day in ["day1", "day2"] {
        snap(&w, &format!("datastore-export:{}", f.export(day)), day);
        snap(&w, &f.expected(day), &format!("{day}-v1"));
    }
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    let find = |n: &str| {
        log.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .unwrap()
            .clone()
    };
    let (d1, d2) = (find("day1"), find("day2"));
    assert_eq!(d1["source"], d2["source"]);
    assert_eq!(d2["parent"], d1["id"], "{d2}");
    let series = PathBuf::from(f.export("day1"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert_eq!(
        d1["source"].as_str().unwrap(),
        format!("datastore-export:{} (proj)", series.display())
    );
    // Two days of exports differ exactly as the same data read over v1.
    let json = |a: &str, b: &str| -> serde_json::Value {
        serde_json::from_str(&w.ok(&["diff", a, b, "--json"])).unwrap()
    };
    let (exports, v1) = (json("day1", "day2"), json("day1-v1", "day2-v1"));
    assert_eq!(exports["kinds"], v1["kinds"]);
    assert_eq!(exports["entries"], v1["entries"]);
    let by_kind = w.ok(&["diff", "day1", "day2"]);
    assert!(by_kind.contains("-8"), "{by_kind}");
}

#[test]
fn a_corrupt_block_fails_with_the_file_and_byte_offset() {
    let f = fixtures();
    let w = Work::new();
    w.init();
    let from = format!("datastore-export:{}", f.export("corrupt"));
    let file = f.manifest["corrupt_file"].as_str().unwrap();
    let offset = f.manifest["corrupt_offset"].as_u64().unwrap();
    let err = w.fails(&["snapshot", "--from", &from, "--name", "c"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{file} at byte {offset}: checksum mismatch (CRC32C)"
        )) && err.contains("--tolerate"),
        "{err}"
    );
    assert!(
        w.ok(&["log"]).lines().count() <= 1,
        "no snapshot was stored"
    );

    let out = w.run(&["snapshot", "--from", &from, "--name", "c", "--tolerate"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "skipped a damaged record: {file} at byte {offset}"
        )),
        "{stderr}"
    );
    // The rest of the damaged block is lost, everything else is read, and
    // what was read is right.
    let n = entities(&w, "c");
    assert!(n > 60 && n < 90, "{n}");
    snap(&w, &f.expected("day1"), "v1");
    let diff: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "v1", "c", "--json", "--keys"])).unwrap();
    let text = diff.to_string();
    assert!(!text.contains("\"changed\":[{"), "only removals: {text}");
}

#[test]
fn an_export_written_by_kindsnap_reads_back_identical() {
    let f = fixtures();
    let w = Work::new();
    w.init();
    snap(&w, &f.expected("day1"), "v1");
    let dir = w.path("out/2026-12-01T00:00:00_1");
    w.ok(&[
        "export",
        "v1",
        "--to",
        &format!("datastore-export:{}", dir.display()),
    ]);
    assert!(dir
        .join("2026-12-01T00:00:00_1.overall_export_metadata")
        .is_file());
    assert!(dir
        .join("all_namespaces/all_kinds/all_namespaces_all_kinds.export_metadata")
        .is_file());
    snap(&w, &format!("datastore-export:{}", dir.display()), "back");
    assert_same(&w, "v1", "back");

    // As a restore target: a subset, then the whole, upserting.
    let target = w.path("restored/dump");
    let to = format!("datastore-export:{}", target.display());
    w.ok(&["restore", "v1", "--to", &to, "--kinds", "Every"]);
    snap(&w, &to, "restored-every");
    assert_eq!(
        entities(&w, "restored-every"),
        80,
        "Every, in both namespaces"
    );
    w.ok(&["restore", "v1", "--to", &to, "--merge"]);
    snap(&w, &to, "restored");
    assert_same(&w, "v1", "restored");
}

#[test]
fn an_empty_snapshot_makes_an_empty_export() {
    let w = Work::new();
    w.init();
    w.write("empty.jsonl", "");
    snap(&w, "jsonl:empty.jsonl", "nothing");
    let dir = w.path("empty-export");
    w.ok(&[
        "export",
        "nothing",
        "--to",
        &format!("datastore-export:{}", dir.display()),
    ]);
    assert_eq!(
        std::fs::metadata(dir.join("all_namespaces/all_kinds/output-0"))
            .unwrap()
            .len(),
        0
    );
    snap(&w, &format!("datastore-export:{}", dir.display()), "back");
    assert_eq!(entities(&w, "back"), 0);
}

#[test]
fn paths_that_are_not_one_export_get_one_line() {
    let f = fixtures();
    let w = Work::new();
    w.init();
    let day1 = PathBuf::from(f.export("day1"));
    let series = day1.parent().unwrap();
    let cases = [
        (
            format!("datastore-export:{}", series.display()),
            format!(
                "holds 2 exports, not one; name one, as in `datastore-export:{}",
                day1.display()
            ),
        ),
        ("datastore-export:nowhere".into(), "no such folder".into()),
        (
            "datastore-export:plain".into(),
            "no DATE.overall_export_metadata here".into(),
        ),
    ];
    std::fs::create_dir(w.path("plain")).unwrap();
    for (from, want) in cases {
        let err = w.fails(&["snapshot", "--from", &from]);
        assert!(err.contains(&want), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let err = w.fails(&["snapshot", "--from", "jsonl:x.jsonl", "--tolerate"]);
    assert!(
        err.contains("--tolerate applies to datastore-export sources only"),
        "{err}"
    );
}

/// Upload every file of `dir` under `prefix` in `bucket`.
fn upload(moto: &s3::Moto, bucket: &str, prefix: &str, dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace(':', "%3A");
            let status = moto.request(
                "PUT",
                &format!("/{bucket}/{prefix}/{rel}"),
                &std::fs::read(&p).unwrap(),
            );
            assert_eq!(status, 200, "{rel}");
        }
    }
}

#[test]
fn exports_are_read_from_object_storage() {
    let f = fixtures();
    let moto = s3::Moto::start();
    moto.create_bucket("backups");
    let day1 = PathBuf::from(f.export("day1"));
    let name = day1.file_name().unwrap().to_string_lossy().to_string();
    upload(
        &moto,
        "backups",
        &format!("daily/{}", name.replace(':', "%3A")),
        &day1,
    );
    let w = Work::new();
    w.init();
    let url = format!("datastore-export:s3://backups/daily/{name}");
    let out = w
        .ks()
        .args(["snapshot", "--from", &url, "--name", "s3"])
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", moto.port),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    snap(&w, &f.expected("day1"), "v1");
    assert_same(&w, "v1", "s3");
    let log = w.ok(&["log"]);
    assert!(
        log.contains("datastore-export:s3://backups/daily (proj)"),
        "{log}"
    );
}

#[test]
fn a_filtered_export_reads_only_the_folders_a_snapshot_wants() {
    let f = fixtures();
    let w = Work::new();
    w.init();
    let copy = w.path("filtered");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(f.export("filtered"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    // Damage a folder of a kind the snapshot does not want.
    let victim = copy.join("namespace_shop/kind_Every/output-0");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let from = format!("datastore-export:{}", copy.display());
    let err = w.fails(&["snapshot", "--from", &from]);
    assert!(err.contains("kind_Every/output-0 at byte 0"), "{err}");
    w.ok(&[
        "snapshot", "--from", &from, "--kinds", "Order", "--name", "orders",
    ]);
    assert_eq!(entities(&w, "orders"), 6);
}

#[test]
fn a_cut_data_file_or_damaged_metadata_is_named() {
    let f = fixtures();
    let w = Work::new();
    w.init();
    let copy = w.path("2026-11-20T03:00:00_9");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(f.export("day1"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let from = format!("datastore-export:{}", copy.display());
    // A data file cut in the middle of a record (a copy that stopped).
    let data = copy.join("all_namespaces/all_kinds/output-0");
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() - 100]).unwrap();
    let err = w.fails(&["snapshot", "--from", &from]);
    assert!(
        err.contains(&format!("{} at byte ", data.display())) && err.contains("truncated"),
        "{err}"
    );
    // Damaged metadata (in its second record, the message, which starts
    // after the 8 bytes of the version record): the export cannot be
    // trusted to be complete.
    let meta = copy.join("2026-11-20T03:00:00_1001.overall_export_metadata");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&meta, bytes).unwrap();
    let err = w.fails(&["snapshot", "--from", &from]);
    assert!(
        err.contains(&format!("{} at byte 8: checksum mismatch", meta.display())),
        "{err}"
    );
}
