//! Shared helpers for the integration tests: a temp workspace, the real
//! `kindsnap` binary, and a deterministic data generator that writes
//! Datastore-shaped JSON Lines.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// Whether `KINDSNAP_TEST_ENCRYPTED=1` asks for encrypted repositories:
/// `KINDSNAP_TEST_ENCRYPTED=1 KINDSNAP_PASSWORD='kindsnap test suite'
/// cargo test --test cli` runs a suite's life cycles on encrypted
/// repositories (the password in the environment too, for tests that run
/// the binary without [`Work::ks`], such as those on a pseudo-terminal,
/// which would otherwise wait at the password prompt). Tests that edit
/// `config` or damage files by hand fail there by design: an encrypted
/// repository reports that as tampering, and so do tests that open the
/// repository through the library without a password. On 2026-12-06:
/// tests/restore.rs 9 of 9, tests/cli.rs 18 of 21, tests/gc.rs 7 of 10
/// (the others edit `config`, flip bytes in packs, or open the library
/// directly).
pub fn encrypted_suite() -> bool {
    std::env::var("KINDSNAP_TEST_ENCRYPTED").is_ok_and(|v| v == "1")
}

/// The password of the suite's encrypted repositories.
pub const SUITE_PASSWORD: &str = "kindsnap test suite";

pub struct Work {
    pub dir: tempfile::TempDir,
    /// KINDSNAP_CACHE_DIR of every command, outside `dir`.
    cache: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().expect("temp dir"),
            cache: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache.path().to_path_buf()
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// `kindsnap --repo <repo> ARGS` run in the work dir.
    pub fn ks(&self) -> Command {
        let mut c = Command::cargo_bin("kindsnap").expect("binary");
        c.current_dir(self.dir.path())
            .arg("--repo")
            .arg(self.repo())
            .env_remove("KINDSNAP_REPO")
            .env("KINDSNAP_CACHE_DIR", self.cache.path());
        if encrypted_suite() {
            c.env("KINDSNAP_PASSWORD", SUITE_PASSWORD);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.ks().args(args).output().expect("run kindsnap")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kindsnap {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Run and require failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "kindsnap {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr.contains("panicked"), "panic: {stderr}");
        stderr
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// A new repository: plain, or encrypted when the suite runs with
    /// `KINDSNAP_TEST_ENCRYPTED=1` (every test that uses this helper then
    /// runs its life cycle on an encrypted repository).
    pub fn init(&self) {
        if encrypted_suite() {
            self.ok(&["init", "--encrypt"]);
        } else {
            self.ok(&["init"]);
        }
    }
}

/// A data set: key text (namespace|path) → JSON line.
#[derive(Clone, Debug, Default)]
pub struct Data {
    pub lines: BTreeMap<String, String>,
}

fn key_json(project: &str, ns: &str, path: &[(&str, String)]) -> String {
    let mut s = String::new();
    write!(s, "{{\"partitionId\":{{\"projectId\":\"{project}\"").unwrap();
    if !ns.is_empty() {
        write!(s, ",\"namespaceId\":\"{ns}\"").unwrap();
    }
    s.push_str("},\"path\":[");
    for (i, (kind, id)) in path.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if let Some(num) = id.strip_prefix('#') {
            write!(s, "{{\"kind\":\"{kind}\",\"id\":\"{num}\"}}").unwrap();
        } else {
            write!(s, "{{\"kind\":\"{kind}\",\"name\":\"{id}\"}}").unwrap();
        }
    }
    s.push_str("]}");
    s
}

/// Deterministic pseudo-random numbers (no extra dependency).
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn entity(ns: &str, path: &[(&str, String)], version: u64, rng: &mut Rng) -> String {
    let kind = path.last().map(|p| p.0).unwrap_or("X");
    let mut props = String::new();
    write!(props, "\"v\":{{\"integerValue\":\"{version}\"}}").unwrap();
    write!(
        props,
        ",\"title\":{{\"stringValue\":\"{kind} number {} — é\"}}",
        rng.below(1000)
    )
    .unwrap();
    let body_len = 20 + rng.below(400) as usize;
    let body: String = (0..body_len)
        .map(|i| (b'a' + ((i as u64 * 7 + version) % 26) as u8) as char)
        .collect();
    write!(
        props,
        ",\"body\":{{\"stringValue\":\"{body}\",\"excludeFromIndexes\":true}}"
    )
    .unwrap();
    write!(
        props,
        ",\"score\":{{\"doubleValue\":{}}}",
        rng.below(10000) as f64 / 7.0
    )
    .unwrap();
    write!(
        props,
        ",\"at\":{{\"timestampValue\":\"2026-0{}-1{}T10:00:00.{:06}Z\"}}",
        1 + rng.below(9),
        rng.below(10),
        rng.below(1_000_000)
    )
    .unwrap();
    write!(props, ",\"tags\":{{\"arrayValue\":{{\"values\":[{{\"stringValue\":\"a\"}},{{\"integerValue\":\"{}\",\"meaning\":9}}]}}}}", rng.below(5)).unwrap();
    if kind == "Post" {
        let user = format!("user{}", rng.below(50));
        write!(
            props,
            ",\"author\":{{\"keyValue\":{}}}",
            key_json("test", ns, &[("User", user)])
        )
        .unwrap();
        write!(
            props,
            ",\"loc\":{{\"geoPointValue\":{{\"latitude\":1.5,\"longitude\":{}}}}}",
            rng.below(90)
        )
        .unwrap();
        write!(props, ",\"meta\":{{\"entityValue\":{{\"properties\":{{\"x\":{{\"booleanValue\":true}},\"n\":{{\"nullValue\":null}}}}}}}}").unwrap();
        write!(props, ",\"pic\":{{\"blobValue\":\"aGVsbG8gd29ybGQ=\"}}").unwrap();
    }
    format!(
        "{{\"key\":{},\"properties\":{{{props}}}}}",
        key_json("test", ns, path)
    )
}

impl Data {
    /// `n` entities over User (names), Post (ids, referencing users),
    /// Comment (children of posts), in the default namespace and `t1`.
    pub fn generate(n: usize, seed: u64) -> Data {
        let mut rng = Rng::new(seed);
        let mut d = Data::default();
        for i in 0..n {
            let ns = if i % 10 == 9 { "t1" } else { "" };
            let path: Vec<(&str, String)> = match i % 3 {
                0 => vec![("User", format!("user{}", i / 3))],
                1 => vec![("Post", format!("#{}", i / 3 + 1))],
                _ => vec![
                    ("Post", format!("#{}", i / 3 + 1)),
                    ("Comment", format!("#{}", i)),
                ],
            };
            d.insert(ns, &path, 1, &mut rng);
        }
        d
    }

    pub fn insert(&mut self, ns: &str, path: &[(&str, String)], version: u64, rng: &mut Rng) {
        let key = format!(
            "{ns}|{}",
            path.iter()
                .map(|(k, i)| format!("{k}:{i}"))
                .collect::<Vec<_>>()
                .join("/")
        );
        self.lines.insert(key, entity(ns, path, version, rng));
    }

    /// Change `changed`, delete `removed` and add `added` entities, chosen
    /// at random. Returns the keys of each group.
    pub fn mutate(
        &mut self,
        seed: u64,
        changed: usize,
        removed: usize,
        added: usize,
    ) -> (Vec<String>, Vec<String>, Vec<String>) {
        let mut rng = Rng::new(seed);
        let keys: Vec<String> = self.lines.keys().cloned().collect();
        let mut picked = std::collections::BTreeSet::new();
        while picked.len() < changed + removed {
            picked.insert(keys[rng.below(keys.len() as u64) as usize].clone());
        }
        let picked: Vec<String> = picked.into_iter().collect();
        let (ch, rm) = picked.split_at(changed.min(picked.len()));
        for k in ch {
            let line = self.lines[k].clone();
            let v = seed + 1000;
            let new = line.replacen(
                "\"v\":{\"integerValue\":\"",
                &format!("\"v\":{{\"integerValue\":\"{v}"),
                1,
            );
            self.lines.insert(k.clone(), new);
        }
        for k in rm {
            self.lines.remove(k);
        }
        let mut add = Vec::new();
        for i in 0..added {
            let path = vec![(
                "Post",
                format!("#{}", 10_000_000 + seed * 10_000 + i as u64),
            )];
            self.insert("", &path, 1, &mut rng);
            add.push(format!("|Post:#{}", 10_000_000 + seed * 10_000 + i as u64));
        }
        (ch.to_vec(), rm.to_vec(), add)
    }

    /// Write in a shuffled order (sources need not be sorted).
    pub fn write_shuffled(&self, path: &Path, seed: u64) {
        let mut lines: Vec<&String> = self.lines.values().collect();
        let mut rng = Rng::new(seed);
        for i in (1..lines.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            lines.swap(i, j);
        }
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(path, text).expect("write data");
    }

    pub fn write_sorted(&self, path: &Path) {
        let mut text = String::new();
        for l in self.lines.values() {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(path, text).expect("write data");
    }
}

/// The entities of a JSON Lines file as canonical JSON values, keyed by
/// their key JSON, for order-independent comparison.
pub fn canonical_set(path: &Path) -> BTreeMap<String, serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let k = v["key"].to_string();
        assert!(
            out.insert(k.clone(), normalize(v)).is_none(),
            "duplicate {k}"
        );
    }
    out
}

/// Normalise JSON numbers and timestamps written differently but equal.
fn normalize(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Object(m) => J::Object(
            m.into_iter()
                .map(|(k, v)| {
                    if k == "doubleValue" {
                        let f = v.as_f64().unwrap_or(f64::NAN);
                        (k, J::String(format!("{f:?}")))
                    } else if k == "timestampValue" {
                        let t = v.as_str().unwrap_or("").trim_end_matches('Z');
                        let t = if t.contains('.') {
                            t.trim_end_matches('0').trim_end_matches('.')
                        } else {
                            t
                        };
                        (k, J::String(t.to_string()))
                    } else {
                        (k, normalize(v))
                    }
                })
                .collect(),
        ),
        J::Array(a) => J::Array(a.into_iter().map(normalize).collect()),
        J::Number(n) => J::String(format!("{:?}", n.as_f64().unwrap_or(f64::NAN))),
        other => other,
    }
}

/// `kindsnap diff --json` output: how many entries have this `change`.
pub fn count_changes(diff: &serde_json::Value, change: &str) -> usize {
    diff["entries"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["change"] == change).count())
        .unwrap_or(0)
}

/// The `kindsnap` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("kindsnap")
}

/// Every file under `dir` (not directories), sorted; a missing directory
/// has none.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Copy the directory tree `from` to `to` (created).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}
