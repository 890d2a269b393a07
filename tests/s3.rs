//! Repositories on object storage, through the real binary against a real
//! S3-compatible server (moto's server mode, tests/s3/setup.sh): the whole
//! life cycle, the cache, two writers at once, the endpoint going down in
//! the middle of a snapshot, locks, and bad input.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/s3.rs"]
mod s3;

use std::path::PathBuf;
use std::process::Stdio;

use common::{canonical_set, Data, Work};
use s3::{Moto, Proxy};

/// A work dir whose commands talk to the server on `port` with repository
/// `url`, caching under `cache` (a name inside the work dir).
struct Remote {
    w: Work,
    url: String,
    port: u16,
}

impl Remote {
    fn new(port: u16, url: &str) -> Remote {
        Remote {
            w: Work::new(),
            url: url.to_string(),
            port,
        }
    }

    fn cmd(&self, cache: &str) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("kindsnap").unwrap();
        c.current_dir(self.w.dir.path())
            .arg("--repo")
            .arg(&self.url)
            .env_remove("KINDSNAP_REPO")
            .env_remove("AWS_PROFILE")
            .env_remove("KINDSNAP_S3_ENDPOINT")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("KINDSNAP_CACHE_DIR", self.w.path(cache))
            .env("KINDSNAP_REMOTE_TIMEOUT", "2")
            .env("KINDSNAP_LOCK_WAIT", "20");
        c
    }

    fn run(&self, cache: &str, args: &[&str]) -> std::process::Output {
        self.cmd(cache).args(args).output().unwrap()
    }

    fn ok(&self, cache: &str, args: &[&str]) -> String {
        let out = self.run(cache, args);
        assert!(
            out.status.success(),
            "kindsnap {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Fails with exactly one line on stderr; returns it.
    fn fails(&self, cache: &str, args: &[&str]) -> String {
        let out = self.run(cache, args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!err.contains("panicked"), "panic: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        err
    }

    fn path(&self, name: &str) -> PathBuf {
        self.w.path(name)
    }

    fn write_data(&self, name: &str, d: &Data) -> String {
        let p = self.path(name);
        d.write_sorted(&p);
        format!("jsonl:{}", p.display())
    }

    /// One source (`src.jsonl`) whose content changes day by day, with a
    /// copy of each day's content in `name` for comparisons.
    fn write_day(&self, name: &str, d: &Data) -> String {
        d.write_sorted(&self.path(name));
        self.write_data("src.jsonl", d)
    }

    /// Pack files in a cache directory.
    fn cached_packs(&self, cache: &str) -> usize {
        fn walk(p: &std::path::Path, n: &mut usize, in_packs: bool) {
            let Ok(rd) = std::fs::read_dir(p) else { return };
            for e in rd.flatten() {
                let path = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                if path.is_dir() {
                    walk(&path, n, in_packs || name == "packs");
                } else if in_packs && !name.ends_with(".tmp") {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(&self.path(cache), &mut n, false);
        n
    }
}

#[test]
fn life_cycle_on_s3() {
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let r = Remote::new(moto.port, "s3://bkt/shop");
    let out = r.ok("cache", &["init"]);
    assert!(out.contains("created repository s3://bkt/shop"), "{out}");
    assert!(moto
        .keys("bkt", "shop/")
        .contains(&"shop/config".to_string()));

    let mut d = Data::generate(3000, 1);
    let src1 = r.write_day("day1.jsonl", &d);
    r.ok("cache", &["snapshot", "--from", &src1, "--name", "day1"]);
    d.mutate(2, 40, 10, 20);
    let src2 = r.write_day("day2.jsonl", &d);
    r.ok("cache", &["snapshot", "--from", &src2, "--name", "day2"]);
    let keys = moto.keys("bkt", "shop/");
    assert!(
        keys.iter().any(|k| k.starts_with("shop/packs/")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("shop/index/")),
        "{keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("shop/snapshots/"))
            .count(),
        2
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("shop/locks/")),
        "locks released: {keys:?}"
    );

    // A fresh machine: log, show and diff read manifests only.
    let log = r.ok("fresh", &["log"]);
    assert!(log.contains("day1") && log.contains("day2"), "{log}");
    r.ok("fresh", &["show", "day2"]);
    let diff = r.ok("fresh", &["diff", "day1", "day2"]);
    assert!(diff.contains('~') || diff.contains('+'), "{diff}");
    assert_eq!(r.cached_packs("fresh"), 0, "log/show/diff downloaded packs");

    // Restore (export) reads the packs it needs, on demand.
    r.ok(
        "fresh",
        &[
            "export",
            "day2",
            "--to",
            &format!("jsonl:{}", r.path("out.jsonl").display()),
        ],
    );
    assert_eq!(
        canonical_set(&r.path("out.jsonl")),
        canonical_set(&r.path("day2.jsonl"))
    );
    assert!(r.cached_packs("fresh") > 0);
    let check = r.ok("fresh", &["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");

    // Forget and prune from yet another machine; the others follow.
    d.mutate(3, 0, 0, 5);
    let src3 = r.write_day("day3.jsonl", &d);
    r.ok("cache", &["snapshot", "--from", &src3, "--name", "day3"]);
    let forgot = r.ok("other", &["forget", "--keep-last", "1"]);
    assert!(forgot.contains("removed 2"), "{forgot}");
    let pruned = r.ok("other", &["prune", "--max-unused", "0"]);
    assert!(pruned.contains("freed"), "{pruned}");
    let keys = moto.keys("bkt", "shop/");
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("shop/snapshots/"))
            .count(),
        1
    );
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("shop/index/")).count(),
        1,
        "prune compacts the index segments: {keys:?}"
    );
    for cache in ["cache", "fresh", "other", "new"] {
        let log = r.ok(cache, &["log"]);
        assert!(
            log.contains("day3") && !log.contains("day1"),
            "{cache}: {log}"
        );
        let check = r.ok(cache, &["check", "--read-data"]);
        assert!(check.contains("no problems found"), "{cache}: {check}");
    }
    r.ok(
        "cache",
        &[
            "export",
            "day3",
            "--to",
            &format!("jsonl:{}", r.path("out3.jsonl").display()),
        ],
    );
    assert_eq!(
        canonical_set(&r.path("out3.jsonl")),
        canonical_set(&r.path("day3.jsonl"))
    );
    // The first machine snapshots again after the prune elsewhere.
    d.mutate(4, 10, 3, 3);
    let src4 = r.write_day("day4.jsonl", &d);
    r.ok("cache", &["snapshot", "--from", &src4, "--name", "day4"]);
    let check = r.ok("new2", &["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");
}

#[test]
fn two_machines_snapshot_at_once() {
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let r = Remote::new(moto.port, "s3://bkt/r");
    r.ok("a", &["init"]);
    let da = Data::generate(4000, 7);
    let db = Data::generate(4000, 8);
    let sa = r.write_data("a.jsonl", &da);
    let sb = r.write_data("b.jsonl", &db);
    let mut ca = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"));
    let mut cb = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"));
    for (c, cache, src, name) in [(&mut ca, "a", &sa, "from-a"), (&mut cb, "b", &sb, "from-b")] {
        let tmpl = r.cmd(cache);
        for (k, v) in tmpl.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.current_dir(r.w.dir.path())
            .args(["--repo", &r.url, "snapshot", "--from", src, "--name", name])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    }
    let pa = ca.spawn().unwrap();
    let pb = cb.spawn().unwrap();
    let (oa, ob) = (
        pa.wait_with_output().unwrap(),
        pb.wait_with_output().unwrap(),
    );
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    assert!(
        ob.status.success(),
        "{}",
        String::from_utf8_lossy(&ob.stderr)
    );
    let log = r.ok("c", &["log"]);
    assert!(log.contains("from-a") && log.contains("from-b"), "{log}");
    let check = r.ok("c", &["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");
    for (name, file) in [("from-a", "a.jsonl"), ("from-b", "b.jsonl")] {
        let out = r.path(&format!("{name}.out"));
        r.ok(
            "c",
            &["export", name, "--to", &format!("jsonl:{}", out.display())],
        );
        assert_eq!(canonical_set(&out), canonical_set(&r.path(file)));
    }
}

#[test]
fn endpoint_down_mid_snapshot() {
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let proxy = Proxy::start(moto.port);
    let r = Remote::new(proxy.port, "s3://bkt/r");
    r.ok("c", &["init"]);
    let mut d = Data::generate(2000, 3);
    let s1 = r.write_data("d1.jsonl", &d);
    r.ok("c", &["snapshot", "--from", &s1, "--name", "one"]);
    d.mutate(5, 50, 5, 50);
    let s2 = r.write_data("d2.jsonl", &d);
    // Down as the first pack goes up, then (another try) as the manifest does.
    for needle in ["PUT /bkt/r/packs/", "PUT /bkt/r/snapshots/"] {
        proxy.trip_on(needle);
        let err = r.fails("c", &["snapshot", "--from", &s2, "--name", "two"]);
        assert!(proxy.tripped.load(std::sync::atomic::Ordering::SeqCst));
        assert!(
            err.contains("cannot reach") || err.contains("s3://bkt/r"),
            "{err}"
        );
        proxy.up();
        let log = r.ok("c", &["log"]);
        assert!(!log.contains("two"), "{log}");
        let check = r.ok("other", &["check"]);
        assert!(check.contains("no problems found"), "{check}");
    }
    r.ok("c", &["snapshot", "--from", &s2, "--name", "two"]);
    let check = r.ok("other", &["check", "--read-data"]);
    assert!(check.contains("no problems found"), "{check}");
    let out = r.path("out.jsonl");
    r.ok(
        "other",
        &["export", "two", "--to", &format!("jsonl:{}", out.display())],
    );
    assert_eq!(canonical_set(&out), canonical_set(&r.path("d2.jsonl")));
}

#[test]
fn locks_on_object_storage() {
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let r = Remote::new(moto.port, "s3://bkt/r");
    r.ok("c", &["init"]);
    let d = Data::generate(200, 1);
    let src = r.write_data("d.jsonl", &d);
    let lock = |expires_us: u64| {
        format!(
            r#"{{"host":"elsewhere","pid":4242,"mode":"exclusive","expires_us":{expires_us},"id":"x"}}"#
        )
    };
    let far = 4_000_000_000_000_000u64;
    assert_eq!(
        moto.request("PUT", "/bkt/r/locks/exclusive", lock(far).as_bytes()),
        200
    );
    let out = r
        .cmd("c")
        .env("KINDSNAP_LOCK_WAIT", "1")
        .args(["snapshot", "--from", &src])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("is locked") && err.contains("pid 4242 on elsewhere"),
        "{err}"
    );
    // A lock whose holder stopped renewing it is broken.
    let r = Remote::new(moto.port, "s3://bkt/r2");
    r.ok("c", &["init"]);
    assert_eq!(
        moto.request("PUT", "/bkt/r2/locks/exclusive", lock(1).as_bytes()),
        200
    );
    r.ok("c", &["snapshot", "--from", &src, "--name", "s"]);
    r.ok("c", &["prune"]);
    assert!(moto.keys("bkt", "r2/locks/").is_empty());
}

#[test]
fn bad_remote_input() {
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let r = Remote::new(moto.port, "s3://nope/r");
    let err = r.fails("c", &["log"]);
    assert!(err.contains("bucket `nope` does not exist"), "{err}");
    let err = r.fails("c", &["init"]);
    assert!(err.contains("bucket `nope` does not exist"), "{err}");

    let r = Remote::new(moto.port, "s3://bkt/empty");
    let err = r.fails("c", &["log"]);
    assert!(
        err.contains("no kindsnap repository at s3://bkt/empty"),
        "{err}"
    );

    assert_eq!(moto.request("PUT", "/bkt/junk/photo.jpg", b"jpeg"), 200);
    let r = Remote::new(moto.port, "s3://bkt/junk");
    let err = r.fails("c", &["log"]);
    assert!(
        err.contains("s3://bkt/junk is not a kindsnap repository"),
        "{err}"
    );
    let err = r.fails("c", &["init"]);
    assert!(err.contains("not empty"), "{err}");

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = Remote::new(closed, "s3://bkt/r");
    let err = r.fails("c", &["log"]);
    assert!(err.contains("cannot reach"), "{err}");

    let r = Remote::new(moto.port, "s3:///r");
    let err = r.fails("c", &["log"]);
    assert!(err.contains("bucket name is missing"), "{err}");
}

#[test]
fn wrong_credentials() {
    // With this, moto checks signatures against its own IAM users.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let r = Remote::new(moto.port, "s3://bkt/r");
    let err = r.fails("c", &["log"]);
    assert!(
        err.contains("access denied") && err.contains("InvalidAccessKeyId"),
        "{err}"
    );
}

#[test]
fn keys_and_region_come_from_an_aws_profile() {
    let moto = Moto::start();
    moto.create_bucket("prof");
    let r = Remote::new(moto.port, "s3://prof/repo");
    let home = r.path("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[backup]\naws_access_key_id = test\naws_secret_access_key = test\n",
    )
    .unwrap();
    std::fs::write(
        home.join(".aws/config"),
        "[profile backup]\nregion = us-east-1\n",
    )
    .unwrap();
    let with_profile = |args: &[&str]| {
        r.cmd("c")
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_REGION")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env_remove("AWS_CONFIG_FILE")
            .env("HOME", &home)
            .env("AWS_PROFILE", "backup")
            .output()
            .unwrap()
    };
    let out = with_profile(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_profile(&["log"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!moto.keys("prof", "repo/").is_empty());
}

// ---- lock races, between real processes --------------------------------
//
// The lock code reads its TTL and wait from the environment of the
// process, so each contender is this test binary run again as a child
// running one `child_*` test below (which does nothing unless
// KINDSNAP_TEST_CHILD_DIR is set). Parent and children meet through files
// in a shared directory, never through timing.

/// This test binary, run again to execute only the test `name`.
fn spawn_child(
    name: &str,
    moto: &Moto,
    url: &str,
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env_remove("KINDSNAP_REPO")
        .env_remove("AWS_PROFILE")
        .env_remove("KINDSNAP_S3_ENDPOINT")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", moto.port),
        )
        .env("KINDSNAP_REMOTE_TIMEOUT", "5")
        .env("KINDSNAP_TEST_CHILD_DIR", dir)
        .env("KINDSNAP_TEST_REPO", url)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait (polling) for `path` to exist; a child that exits first, or a
/// generous deadline, fails the test with the children's output.
fn wait_for_file(path: &std::path::Path, children: &mut [std::process::Child]) {
    let start = std::time::Instant::now();
    while !path.exists() {
        for c in children.iter_mut() {
            if let Some(status) = c.try_wait().unwrap() {
                if !status.success() {
                    let mut err = String::new();
                    use std::io::Read;
                    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                    c.stdout.take().unwrap().read_to_string(&mut err).unwrap();
                    panic!("a child failed before {}: {err}", path.display());
                }
            }
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Write a file whole (temp, then rename), so its appearance is its content.
fn publish(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn child_env() -> Option<(PathBuf, String, String)> {
    let dir = PathBuf::from(std::env::var_os("KINDSNAP_TEST_CHILD_DIR")?);
    let url = std::env::var("KINDSNAP_TEST_REPO").unwrap();
    let name = std::env::var("KINDSNAP_TEST_CHILD_NAME").unwrap_or_else(|_| "holder".into());
    Some((dir, url, name))
}

fn child_open(dir: &std::path::Path, url: &str, name: &str) -> kindsnap::repo::Repository {
    // The library reads no KINDSNAP_* variable: the test server's endpoint
    // is an option, as the CLI passes it.
    let options = kindsnap::repo::remote::RemoteOptions {
        s3_endpoint: std::env::var("KINDSNAP_S3_ENDPOINT").ok(),
        ..kindsnap::repo::remote::RemoteOptions::new(kindsnap::net::Timeouts::new(
            std::time::Duration::from_secs(5),
        ))
    };
    let plain = || {
        Err(kindsnap::Error::Internal(
            "a plain repository needs no password",
        ))
    };
    kindsnap::repo::remote::open(url, &dir.join(format!("cache-{name}")), &options, &plain).unwrap()
}

/// A contender for the exclusive lock (see `racing_to_break_an_expired_lock`).
#[test]
fn child_lock_contender() {
    let Some((dir, url, name)) = child_env() else {
        return;
    };
    let repo = child_open(&dir, &url, &name);
    publish(&dir.join(format!("ready-{name}")), "");
    while !dir.join("go").exists() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    match repo.lock_exclusive() {
        Ok(guard) => {
            publish(&dir.join(format!("result-{name}")), "won");
            while !dir.join("release").exists() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            drop(guard);
        }
        Err(e) => publish(&dir.join(format!("result-{name}")), &format!("lost: {e}")),
    }
}

/// Four processes meet one expired exclusive lock at the same moment and
/// all try to break it: exactly one may end up holding the lock.
#[test]
fn racing_to_break_an_expired_lock() {
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let r = Remote::new(moto.port, "s3://bkt/r");
    r.ok("c", &["init"]);
    let expired =
        r#"{"host":"elsewhere","pid":4242,"mode":"exclusive","expires_us":1,"id":"dead"}"#;
    for round in 0..4 {
        let dir = r.path(&format!("race{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            moto.request("PUT", "/bkt/r/locks/exclusive", expired.as_bytes()),
            200
        );
        let names = ["a", "b", "c", "d"];
        let mut children: Vec<_> = names
            .iter()
            .map(|n| {
                spawn_child(
                    "child_lock_contender",
                    &moto,
                    &r.url,
                    &dir,
                    &[("KINDSNAP_TEST_CHILD_NAME", n), ("KINDSNAP_LOCK_WAIT", "0")],
                )
            })
            .collect();
        for n in names {
            wait_for_file(&dir.join(format!("ready-{n}")), &mut children);
        }
        publish(&dir.join("go"), "");
        for n in names {
            wait_for_file(&dir.join(format!("result-{n}")), &mut children);
        }
        let results: Vec<String> = names
            .iter()
            .map(|n| std::fs::read_to_string(dir.join(format!("result-{n}"))).unwrap())
            .collect();
        publish(&dir.join("release"), "");
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let winners = results.iter().filter(|r| *r == "won").count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for res in results.iter().filter(|r| *r != "won") {
            assert!(res.contains("is locked"), "round {round}: {res}");
        }
        assert!(moto.keys("bkt", "r/locks/").is_empty(), "round {round}");
    }
}

/// Holds the exclusive lock until the parent plants another holder's lock
/// over it, then writes to the repository until a write fails.
#[test]
fn child_lock_holder() {
    let Some((dir, url, name)) = child_env() else {
        return;
    };
    let repo = child_open(&dir, &url, &name);
    let guard = repo.lock_exclusive().unwrap();
    publish(&dir.join("locked"), "");
    while !dir.join("planted").exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // A write of the repository: deleting a manifest that is not there.
    let none = kindsnap::ids::SnapshotId::from([7u8; 32]);
    let start = std::time::Instant::now();
    let outcome = loop {
        match repo.remove_manifest(&none) {
            Err(e) => break format!("{e}"),
            Ok(_) if start.elapsed() > std::time::Duration::from_secs(30) => {
                break "every write succeeded".to_string()
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    drop(guard);
    publish(&dir.join("result"), &outcome);
}

/// A holder that stalled while its lock expired and was taken by another
/// process must not overwrite (renew) or delete the new holder's lock, and
/// its next write must fail with one line saying it lost the lock.
#[test]
fn a_renewer_whose_lock_was_taken_stops() {
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let r = Remote::new(moto.port, "s3://bkt/r");
    r.ok("c", &["init"]);
    let dir = r.path("holder");
    std::fs::create_dir_all(&dir).unwrap();
    let mut children = vec![spawn_child(
        "child_lock_holder",
        &moto,
        &r.url,
        &dir,
        &[("KINDSNAP_LOCK_TTL", "3")],
    )];
    wait_for_file(&dir.join("locked"), &mut children);
    // What a process that broke the lock (it saw it expired) leaves.
    let thief = r#"{"host":"thief","pid":777,"mode":"exclusive","expires_us":4000000000000000,"id":"thief"}"#;
    let planted = s3::http_signed(moto.port, "PUT", "/bkt/r/locks/exclusive", thief.as_bytes());
    assert_eq!(planted.0, 200, "{}", planted.1);
    publish(&dir.join("planted"), "");
    wait_for_file(&dir.join("result"), &mut children);
    let out = children.pop().unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = std::fs::read_to_string(dir.join("result")).unwrap();
    assert!(
        result.starts_with("lost the repository lock of s3://bkt/r to another process")
            && result.contains("pid 777 on thief")
            && result.ends_with("; run the command again")
            && !result.contains('\n'),
        "{result}"
    );
    // Neither renewed over nor deleted.
    let (status, body) = s3::http_signed(moto.port, "GET", "/bkt/r/locks/exclusive", b"");
    assert_eq!((status, body.as_str()), (200, thief));
}
