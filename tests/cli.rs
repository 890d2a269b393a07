//! End-to-end tests of the `kindsnap` binary on real files and real
//! processes: snapshots, incremental storage, diff, cat, export, check,
//! and the errors a user meets.

#![allow(clippy::unwrap_used)]

mod common;

use common::{canonical_set, walk, Data, Work};

fn snapshot(w: &Work, file: &str, name: &str) -> String {
    w.ok(&[
        "snapshot",
        "--from",
        &format!("jsonl:{file}"),
        "--name",
        name,
    ])
}

fn export_matches(w: &Work, snap: &str, data: &Data) {
    let out = w.path(&format!("export-{snap}.jsonl"));
    w.ok(&["export", snap, "--to", &format!("jsonl:{}", out.display())]);
    let expected_file = w.path(&format!("expected-{snap}.jsonl"));
    data.write_sorted(&expected_file);
    let (got, want) = (canonical_set(&out), canonical_set(&expected_file));
    assert_eq!(got.len(), want.len(), "entity count of {snap}");
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "entity {k} in {snap}");
    }
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in walk(p) {
        n += std::fs::metadata(&e).map(|m| m.len()).unwrap_or(0);
    }
    n
}

#[test]
fn snapshot_log_show_cat_export_round_trip() {
    let w = Work::new();
    w.init();
    let data = Data::generate(3000, 1);
    data.write_shuffled(&w.path("cur.jsonl"), 7);
    let out = snapshot(&w, "cur.jsonl", "day1");
    assert!(out.contains("no parent"), "{out}");
    assert!(out.contains("total"), "{out}");
    let log = w.ok(&["log"]);
    assert!(log.contains("day1") && log.contains("3000"), "{log}");
    let show = w.ok(&["show", "day1"]);
    assert!(show.contains("Comment") && show.contains("t1"), "{show}");
    export_matches(&w, "day1", &data);
    // cat, by name and by id, and through `latest`.
    let cat = w.ok(&["cat", "latest", "Post:1/Comment:2"]);
    assert!(cat.contains("\"Comment\""), "{cat}");
    let cat = w.ok(&["cat", "day1", "User:user0"]);
    assert!(cat.contains("user0"), "{cat}");
    let cat_ns = w.ok(&["cat", "day1", "User:user3", "--namespace", "t1"]);
    assert!(cat_ns.contains("\"namespaceId\": \"t1\""), "{cat_ns}");
    let err = w.fails(&["cat", "day1", "Post:999999"]);
    assert!(err.contains("not found"), "{err}");
    let err = w.fails(&["cat", "day1", "Post:"]);
    assert!(err.contains("invalid key"), "{err}");
    // A kind alone lists the kind (JSON Lines for a JSON Lines source).
    let all = w.ok(&["cat", "day1", "Post", "--limit", "3"]);
    assert_eq!(all.lines().count(), 3, "{all}");
}

#[test]
fn incremental_snapshots_store_only_changes_and_diff_exactly() {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(6000, 2);
    data.write_shuffled(&w.path("cur.jsonl"), 1);
    snapshot(&w, "cur.jsonl", "day1");
    let after1 = dir_size(&w.repo());

    let (changed, removed, added) = data.mutate(5, 60, 12, 30);
    data.write_shuffled(&w.path("cur.jsonl"), 2);
    let out = snapshot(&w, "cur.jsonl", "day2");
    assert!(out.contains("parent day1"), "{out}");
    let after2 = dir_size(&w.repo());
    export_matches(&w, "day2", &data);
    export_matches(&w, "day1", &Data::generate(6000, 2));

    // Day 2 stores only what changed: far less than day 1.
    let grew = after2 - after1;
    assert!(
        grew * 10 < after1,
        "day 2 grew by {grew} bytes, day 1 took {after1}"
    );

    // Unchanged data: only a small manifest.
    snapshot(&w, "cur.jsonl", "day3");
    let grew3 = dir_size(&w.repo()) - after2;
    assert!(grew3 <= 64 * 1024, "day 3 grew by {grew3} bytes");

    // diff day1 day2 lists exactly the mutated keys.
    let json = w.ok(&["diff", "day1", "day2", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let count = |c: &str| common::count_changes(&v, c);
    assert_eq!(count("changed"), changed.len());
    assert_eq!(count("removed"), removed.len());
    assert_eq!(count("added"), added.len());
    // The same through a merge of full states (day1 → day3 is not adjacent).
    let json13 = w.ok(&["diff", "day1", "day3", "--json"]);
    let v13: serde_json::Value = serde_json::from_str(&json13).unwrap();
    assert_eq!(v["kinds"], v13["kinds"]);
    // Reverse direction swaps added and removed.
    let rev: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "day2", "day1", "--json"])).unwrap();
    let rcount = |c: &str| common::count_changes(&rev, c);
    assert_eq!(rcount("added"), removed.len());
    assert_eq!(rcount("removed"), added.len());
    // Property-level view names the changed property.
    let props = w.ok(&["diff", "day1", "day2", "--props", "--kind", "Post"]);
    assert!(props.contains("v: "), "{props}");
    assert!(w.ok(&["diff", "day2", "day3"]).contains("no differences"));
    let stat = w.ok(&["diff", "day1", "day2"]);
    assert!(stat.contains("kinds differ"), "{stat}");
    w.ok(&["check", "--read-data"]);
}

#[test]
fn long_histories_cross_keyframes_and_read_back_exactly() {
    let w = Work::new();
    w.init();
    // Keyframe every 3 snapshots so the chain logic is exercised.
    let cfg = w.repo().join("config");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"keyframe_interval\": 32", "\"keyframe_interval\": 3");
    std::fs::write(&cfg, text).unwrap();
    let mut data = Data::generate(900, 3);
    let mut history = Vec::new();
    for day in 0..8u64 {
        if day > 0 {
            data.mutate(100 + day, 20, 5, 7);
        }
        data.write_shuffled(&w.path("cur.jsonl"), day);
        snapshot(&w, "cur.jsonl", &format!("d{day}"));
        history.push(data.clone());
    }
    for (day, d) in history.iter().enumerate() {
        export_matches(&w, &format!("d{day}"), d);
    }
    // Diff across keyframes equals diff of the exports.
    let v: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "d1", "d6", "--json"])).unwrap();
    let total: usize = v["entries"].as_array().unwrap().len();
    let (a, b) = (&history[1].lines, &history[6].lines);
    let expected = a.keys().filter(|k| !b.contains_key(*k)).count()
        + b.keys().filter(|k| !a.contains_key(*k)).count()
        + a.iter()
            .filter(|(k, v)| b.get(*k).map(|w| w != *v).unwrap_or(false))
            .count();
    assert_eq!(total, expected);
    w.ok(&["check", "--read-data"]);
}

#[test]
fn kinds_filter_and_snapshotignore() {
    let w = Work::new();
    w.init();
    let data = Data::generate(300, 4);
    data.write_sorted(&w.path("cur.jsonl"));
    w.write(".snapshotignore", "Comment\nt1/\n");
    let out = w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "a"]);
    assert!(out.contains("skipped") && out.contains("Comment"), "{out}");
    let show = w.ok(&["show", "a"]);
    assert!(!show.contains("Comment") && !show.contains("t1"), "{show}");
    std::fs::remove_file(w.path(".snapshotignore")).unwrap();
    w.ok(&[
        "snapshot",
        "--from",
        "jsonl:cur.jsonl",
        "--name",
        "b",
        "--kinds",
        "User",
    ]);
    let show = w.ok(&["show", "b"]);
    assert!(show.contains("User") && !show.contains("Post"), "{show}");
    let err = w.fails(&[
        "snapshot",
        "--from",
        "jsonl:cur.jsonl",
        "--ignore-file",
        "nope",
    ]);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let w = Work::new();
    // Missing repository.
    let err = w.fails(&["log"]);
    assert!(
        err.contains("no kindsnap repository") && err.contains("kindsnap init"),
        "{err}"
    );
    w.init();
    let err = w.fails(&["init"]);
    assert!(err.contains("not empty"), "{err}");
    let good = Data::generate(30, 5);
    good.write_sorted(&w.path("cur.jsonl"));
    snapshot(&w, "cur.jsonl", "one");
    let before = walk(&w.repo()).len();

    // Malformed line: file and line number.
    let mut text = std::fs::read_to_string(w.path("cur.jsonl")).unwrap();
    text.push_str("{\"key\": oops}\n");
    w.write("bad.jsonl", &text);
    let err = w.fails(&["snapshot", "--from", "jsonl:bad.jsonl"]);
    assert!(err.contains("bad.jsonl:31"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Duplicate key: both lines named.
    let first = text.lines().next().unwrap().to_string();
    w.write(
        "dup.jsonl",
        &format!(
            "{first}\n{}{first}\n",
            text.lines()
                .skip(1)
                .take(29)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        ),
    );
    let err = w.fails(&["snapshot", "--from", "jsonl:dup.jsonl"]);
    assert!(
        err.contains("duplicate key")
            && err.contains("dup.jsonl:1")
            && err.contains("dup.jsonl:31"),
        "{err}"
    );
    // Unknown value type.
    w.write("typo.jsonl", "{\"key\":{\"path\":[{\"kind\":\"A\",\"id\":\"1\"}]},\"properties\":{\"x\":{\"strngValue\":\"a\"}}}\n");
    let err = w.fails(&["snapshot", "--from", "jsonl:typo.jsonl"]);
    assert!(
        err.contains("typo.jsonl:1") && err.contains("strngValue"),
        "{err}"
    );
    // Missing source file.
    let err = w.fails(&["snapshot", "--from", "jsonl:missing.jsonl"]);
    assert!(err.contains("no such file"), "{err}");
    let err = w.fails(&["snapshot", "--from", "mysql://x"]);
    assert!(err.contains("invalid source"), "{err}");
    // Name taken (by a snapshot of another source) unless --force.
    std::fs::copy(w.path("cur.jsonl"), w.path("other.jsonl")).unwrap();
    let err = w.fails(&["snapshot", "--from", "jsonl:other.jsonl", "--name", "one"]);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    let err = w.fails(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "latest"]);
    assert!(err.contains("reserved"), "{err}");
    // Unknown snapshot.
    let err = w.fails(&["show", "nope"]);
    assert!(
        err.contains("`nope` not found") && err.contains("kindsnap log"),
        "{err}"
    );
    let err = w.fails(&["diff", "one", "latest~5"]);
    assert!(err.contains("latest~5"), "{err}");
    // Nothing was added by any of the failures.
    assert_eq!(walk(&w.repo()).len(), before);
    w.ok(&["check"]);
    // --force reuses the name; the name then means the newest.
    w.ok(&[
        "snapshot",
        "--from",
        "jsonl:cur.jsonl",
        "--name",
        "one",
        "--force",
    ]);
    assert_eq!(w.ok(&["log"]).matches(" one ").count(), 2);

    // A repository from a newer kindsnap.
    let cfg = w.repo().join("config");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("\"kindsnap_repository\": 1", "\"kindsnap_repository\": 99"),
    )
    .unwrap();
    let err = w.fails(&["log"]);
    assert!(
        err.contains("format version 99") && err.contains("upgrade kindsnap"),
        "{err}"
    );
    std::fs::write(&cfg, &text).unwrap();
    // Something that is not a repository.
    std::fs::create_dir_all(w.path("other")).unwrap();
    w.write("other/file.txt", "hello");
    let err = w
        .ks()
        .arg("--repo")
        .arg(w.path("other"))
        .arg("log")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(err.contains("not a kindsnap repository"), "{err}");
}

#[test]
fn rerunning_a_named_snapshot_of_unchanged_data_is_a_no_op() {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(300, 8);
    data.write_shuffled(&w.path("cur.jsonl"), 1);
    snapshot(&w, "cur.jsonl", "day1");
    let files = walk(&w.repo());
    // The cron job runs again (the same file, in another order, and without
    // the line cache): nothing to do, and nothing is written.
    data.write_shuffled(&w.path("cur.jsonl"), 2);
    for extra in [&[][..], &["--no-cache"]] {
        let mut args = vec!["snapshot", "--from", "jsonl:cur.jsonl", "--name", "day1"];
        args.extend_from_slice(extra);
        let out = w.ok(&args);
        assert!(
            out.contains("snapshot `day1`")
                && out.contains("already exists with identical content; nothing to do"),
            "{out}"
        );
    }
    let log = w.ok(&["log"]);
    assert_eq!(log.matches("day1").count(), 1, "{log}");
    let mut after = walk(&w.repo());
    let mut before = files.clone();
    after.retain(|p| !p.starts_with(w.repo().join("index")));
    before.retain(|p| !p.starts_with(w.repo().join("index")));
    after.sort();
    before.sort();
    assert_eq!(after, before, "no manifest, pack or temp file added");

    // Other content under the same name is refused, before anything is
    // stored: one entity removed, and (separately) one changed.
    let mut fewer = data.clone();
    fewer.mutate(1, 0, 1, 0);
    fewer.write_sorted(&w.path("cur.jsonl"));
    let err = w.fails(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "day1"]);
    assert!(
        err.contains("a snapshot named `day1` already exists"),
        "{err}"
    );
    data.mutate(2, 1, 0, 0);
    data.write_sorted(&w.path("cur.jsonl"));
    let err = w.fails(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "day1"]);
    assert!(
        err.contains("a snapshot named `day1` already exists"),
        "{err}"
    );
    let mut after = walk(&w.repo());
    after.retain(|p| !p.starts_with(w.repo().join("index")));
    after.sort();
    assert_eq!(after, before, "nothing stored for a refused name");
    assert_eq!(w.ok(&["log"]).matches("day1").count(), 1);
    w.ok(&["check", "--read-data"]);
}

#[test]
fn corrupt_pack_and_manifest_are_named_by_check() {
    let w = Work::new();
    w.init();
    let data = Data::generate(2000, 6);
    data.write_sorted(&w.path("cur.jsonl"));
    snapshot(&w, "cur.jsonl", "s1");
    let mut d2 = data.clone();
    d2.mutate(9, 10, 0, 0);
    d2.write_sorted(&w.path("cur.jsonl"));
    snapshot(&w, "cur.jsonl", "s2");
    w.ok(&["check", "--read-data"]);

    // Flip a byte in the middle of the largest pack.
    let packs: Vec<_> = walk(&w.repo().join("packs"));
    let pack = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(pack).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x55;
    std::fs::write(pack, &bytes).unwrap();
    let out = w.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let name = pack.file_name().unwrap().to_string_lossy();
    assert!(stdout.contains(&name[..8]), "{stdout}");
    assert!(stdout.contains("affects snapshot s1"), "{stdout}");
    // Reading a damaged entity fails cleanly instead of returning bad data.
    let err = w.fails(&["export", "s1", "--to", "jsonl:x.jsonl"]);
    assert!(
        err.starts_with("kindsnap: error: pack ") && err.contains(&format!("{name} is damaged (")),
        "{err}"
    );
    assert!(err.ends_with("run `kindsnap check --read-data`\n"), "{err}");
    assert!(!w.path("x.jsonl").exists());
    bytes[mid] ^= 0x55;
    std::fs::write(pack, &bytes).unwrap();
    w.ok(&["check", "--read-data"]);

    // Flip a byte in a manifest.
    let snaps = walk(&w.repo().join("snapshots"));
    let s1 = snaps.iter().find(|p| {
        let id = p.file_name().unwrap().to_string_lossy().to_string();
        w.ok(&["show", &id[..12]]).contains("snapshot s1")
    });
    let s1 = s1.unwrap();
    let mut bytes = std::fs::read(s1).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    std::fs::write(s1, &bytes).unwrap();
    let out = w.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = s1.file_name().unwrap().to_string_lossy();
    assert!(
        stdout.contains(&id[..8]) && stdout.contains("does not match its id"),
        "{stdout}"
    );
    // s2 is a delta on s1, so it is affected too.
    assert!(stdout.contains("s2"), "{stdout}");
}

#[test]
fn unsorted_input_with_a_tiny_sort_budget_gives_the_same_snapshot() {
    let w = Work::new();
    w.init();
    let data = Data::generate(2500, 8);
    data.write_sorted(&w.path("sorted.jsonl"));
    data.write_shuffled(&w.path("shuffled.jsonl"), 3);
    w.ok(&[
        "snapshot",
        "--from",
        "jsonl:sorted.jsonl",
        "--name",
        "sorted",
    ]);
    w.ks()
        .env("KINDSNAP_SORT_BUDGET", "20000")
        .args([
            "snapshot",
            "--from",
            "jsonl:shuffled.jsonl",
            "--name",
            "shuffled",
        ])
        .assert()
        .success();
    assert!(w
        .ok(&["diff", "sorted", "shuffled"])
        .contains("no differences"));
    assert!(
        walk(&w.repo().join("tmp")).is_empty(),
        "sort runs left behind"
    );
    export_matches(&w, "shuffled", &data);
}

#[test]
fn the_index_can_be_rebuilt_from_the_packs() {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(1500, 12);
    data.write_shuffled(&w.path("cur.jsonl"), 1);
    snapshot(&w, "cur.jsonl", "one");
    data.mutate(3, 40, 5, 5);
    data.write_shuffled(&w.path("cur.jsonl"), 2);
    snapshot(&w, "cur.jsonl", "two");
    std::fs::remove_file(w.repo().join("index/index.db")).unwrap();
    let err = w.fails(&["export", "two", "--to", "jsonl:x.jsonl"]);
    assert!(err.contains("--rebuild-index"), "{err}");
    let out = w.ok(&["check", "--rebuild-index", "--read-data"]);
    assert!(
        out.contains("rebuilt the index") && out.contains("no problems"),
        "{out}"
    );
    export_matches(&w, "two", &data);
}

#[test]
fn a_symlink_rotated_daily_is_one_source() {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(300, 13);
    data.write_sorted(&w.path("monday.jsonl"));
    data.mutate(2, 5, 1, 1);
    data.write_sorted(&w.path("tuesday.jsonl"));
    std::os::unix::fs::symlink(w.path("monday.jsonl"), w.path("latest.jsonl")).unwrap();
    snapshot(&w, "latest.jsonl", "mon");
    std::fs::remove_file(w.path("latest.jsonl")).unwrap();
    std::os::unix::fs::symlink(w.path("tuesday.jsonl"), w.path("latest.jsonl")).unwrap();
    let out = snapshot(&w, "latest.jsonl", "tue");
    assert!(out.contains("parent mon"), "{out}");
}

#[test]
fn many_kinds_and_namespaces_beyond_every_open_limit() {
    // 3 namespaces × 70 kinds: more kinds than the snapshot keeps parent
    // cursors or open packs for at once.
    let w = Work::new();
    w.init();
    let mut rng = common::Rng::new(77);
    let mut data = Data::default();
    for ns in ["", "a", "b"] {
        for k in 0..70 {
            for id in 1..=12 {
                data.insert(ns, &[(&*format!("K{k}"), format!("#{id}"))], 1, &mut rng);
            }
        }
    }
    data.write_sorted(&w.path("cur.jsonl"));
    snapshot(&w, "cur.jsonl", "one");
    // In key order (cursors are opened and given up kind after kind) …
    data.mutate(8, 200, 40, 10);
    data.write_sorted(&w.path("cur.jsonl"));
    let out = snapshot(&w, "cur.jsonl", "two");
    assert!(out.contains("parent one"), "{out}");
    export_matches(&w, "two", &data);
    let v: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "one", "two", "--json"])).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 250);
    // … and shuffled (cursors see keys out of order and step aside).
    data.mutate(9, 100, 20, 5);
    data.write_shuffled(&w.path("cur.jsonl"), 4);
    snapshot(&w, "cur.jsonl", "three");
    export_matches(&w, "three", &data);
    w.ok(&["check", "--read-data"]);
}

#[test]
fn snapshots_are_found_by_date() {
    let w = Work::new();
    w.init();
    w.write(
        "a.jsonl",
        "{\"key\":{\"path\":[{\"kind\":\"Post\",\"id\":\"1\"}]},\"properties\":{}}\n",
    );
    for (day, name) in [
        ("2026-11-19", "thu"),
        ("2026-11-20", "fri"),
        ("2026-11-23", "mon"),
    ] {
        let out = w
            .ks()
            .args(["snapshot", "--from", "jsonl:a.jsonl", "--name", name])
            .env("KINDSNAP_NOW", format!("{day}T02:00:00Z"))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let name_of = |spec: &str| {
        let v: serde_json::Value = serde_json::from_str(&w.ok(&["show", spec, "--json"])).unwrap();
        v["name"].as_str().unwrap().to_string()
    };
    assert_eq!(name_of("@2026-11-20"), "fri");
    assert_eq!(name_of("@2026-11-22"), "fri", "the weekend has no snapshot");
    assert_eq!(name_of("@2026-11-20T01:00:00Z"), "thu");
    assert_eq!(name_of("@2027-01-01"), "mon");
    let err = w.fails(&["show", "@2026-11-18"]);
    assert!(err.contains("`@2026-11-18` not found"), "{err}");
    let err = w.fails(&["show", "@friday"]);
    assert!(err.contains("give a UTC date"), "{err}");
    let err = w.fails(&["snapshot", "--from", "jsonl:a.jsonl", "--name", "@x"]);
    assert!(err.contains("may not start with"), "{err}");
}

/// `kindsnap config` never prints a password from kindsnap.toml.
#[test]
fn config_redacts_passwords() {
    let w = Work::new();
    w.init();
    w.write(
        "kindsnap.toml",
        "source = \"postgres://app:hunter2@db.example:5432/shop\"\n\
         target = \"postgresql://me@localhost/dev?sslmode=require&password=hunter3\"\n",
    );
    for args in [&["config"][..], &["config", "--json"][..]] {
        let out = w.ok(args);
        assert!(!out.contains("hunter"), "{out}");
        assert!(
            out.contains("postgres://app:***@db.example:5432/shop")
                && out.contains("sslmode=require&password=***"),
            "{out}"
        );
    }
}

/// Two snapshots without `--name` started in the same second get two
/// names: the default name is checked again under the commit lock. The
/// second one's source is a FIFO, so it chooses its name, then waits for
/// data while the first publishes.
#[test]
fn default_names_taken_meanwhile_move_on() {
    let w = Work::new();
    w.init();
    let fifo = w.path("slow.jsonl");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    w.write(
        "a.jsonl",
        r#"{"key":{"partitionId":{"projectId":"p"},"path":[{"kind":"A","id":"1"}]},"properties":{}}"#,
    );
    let now = "2026-05-01T00:00:00Z";
    let mut slow = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"))
        .current_dir(w.dir.path())
        .env("KINDSNAP_NOW", now)
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .args(["--repo", w.repo().to_str().unwrap()])
        .args(["snapshot", "--from", "jsonl:slow.jsonl", "-q"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = w
        .ks()
        .env("KINDSNAP_NOW", now)
        .args(["snapshot", "--from", "jsonl:a.jsonl", "-q"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        &fifo,
        r#"{"key":{"partitionId":{"projectId":"p"},"path":[{"kind":"B","id":"1"}]},"properties":{}}"#,
    )
    .unwrap();
    assert!(slow.wait().unwrap().success());
    let log: Vec<serde_json::Value> = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    let mut names: Vec<&str> = log.iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["2026-05-01T00:00:00Z", "2026-05-01T00:00:00Z-2"]);
}

/// `cat`, `show`, `diff` and `export` hold the shared repository lock
/// while they read, so a prune (which holds it exclusive) cannot delete
/// what they read: while the test holds the lock exclusive, each waits,
/// and finishes once it is released.
#[test]
fn reads_wait_for_an_exclusive_lock() {
    let w = Work::new();
    w.init();
    w.write(
        "a.jsonl",
        r#"{"key":{"partitionId":{"projectId":"p"},"path":[{"kind":"A","id":"1"}]},"properties":{}}"#,
    );
    w.ok(&["snapshot", "--from", "jsonl:a.jsonl", "--name", "s", "-q"]);
    w.ok(&["snapshot", "--from", "jsonl:a.jsonl", "--name", "t", "-q"]);
    let lock = std::fs::File::open(w.repo().join("locks").join("repo")).unwrap();
    for args in [
        &["cat", "s", "A:1"][..],
        &["show", "s"][..],
        &["diff", "s", "t"][..],
        &["export", "s", "--to", "jsonl:out.jsonl"][..],
    ] {
        lock.lock().unwrap();
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"))
            .current_dir(w.dir.path())
            .env("KINDSNAP_CACHE_DIR", w.cache_dir())
            .args(["--repo", w.repo().to_str().unwrap()])
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "{args:?} ran while the repository was locked exclusively"
        );
        lock.unlock().unwrap();
        assert!(child.wait().unwrap().success(), "{args:?}");
    }
}

#[test]
fn mistyped_names_get_a_suggestion_on_one_line() {
    let w = Work::new();
    w.init();
    w.write(
        "a.jsonl",
        concat!(
            "{\"key\":{\"path\":[{\"kind\":\"product\",\"name\":\"SKU-007\"}]},\"properties\":{}}\n",
            "{\"key\":{\"path\":[{\"kind\":\"customer\",\"id\":\"1\"}]},\"properties\":{}}\n",
        ),
    );
    for (day, name) in [("2026-12-04", "monday"), ("2026-12-05", "tuesday")] {
        let out = w
            .ks()
            .args(["snapshot", "--from", "jsonl:a.jsonl", "--name", name])
            .env("KINDSNAP_NOW", format!("{day}T18:31:03Z"))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let one_line = |args: &[&str], want: &[&str]| {
        let err = w.fails(args);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for s in want {
            assert!(err.contains(s), "{args:?}: want {s:?} in {err}");
        }
    };
    // Snapshot names: the closest names, and what to run.
    one_line(
        &["show", "mondya"],
        &["did you mean `monday`?", "`kindsnap log` lists snapshots"],
    );
    // How far back latest~N goes, and where @DATE starts.
    one_line(
        &["show", "latest~2"],
        &["has 2 snapshots, `latest` to `latest~1`"],
    );
    one_line(
        &["show", "@2026-12-01"],
        &["the oldest snapshot, `monday`, was taken 2026-12-04T18:31:03Z"],
    );
    // A prefix too short to read as an id.
    one_line(
        &["show", "ab"],
        &["an id prefix needs at least 4 hex digits"],
    );
    one_line(
        &["show", "ffffff"],
        &["no snapshot id starts with `ffffff`"],
    );
    // Kinds: case-insensitive, then by edit distance.
    one_line(
        &["cat", "tuesday", "Product:SKU-007"],
        &[
            "kind `Product` is not in snapshot `tuesday`",
            "did you mean `product`?",
            "`kindsnap show tuesday` lists its kinds",
        ],
    );
    one_line(
        &["diff", "monday", "tuesday", "--kind", "custmer"],
        &["kind `custmer`", "did you mean `customer`?"],
    );
    one_line(
        &[
            "restore",
            "monday",
            "--to",
            "jsonl:out.jsonl",
            "--kinds",
            "prodct",
        ],
        &["did you mean `product`?"],
    );
    one_line(
        &["diff", "monday", "tuesday", "--kind", "zebra"],
        &["(it has: customer, product)"],
    );
    // A missing key of a present kind is still "not found".
    one_line(&["cat", "tuesday", "product:SKU-999"], &["not found"]);
}

#[test]
fn log_has_aliases_and_kinds_has_one_spelling() {
    let w = Work::new();
    w.init();
    w.write(
        "a.jsonl",
        concat!(
            "{\"key\":{\"path\":[{\"kind\":\"product\",\"name\":\"p1\"}]},\"properties\":{}}\n",
            "{\"key\":{\"path\":[{\"kind\":\"customer\",\"id\":\"1\"}]},\"properties\":{}}\n",
        ),
    );
    snapshot(&w, "a.jsonl", "one");
    w.write(
        "a.jsonl",
        "{\"key\":{\"path\":[{\"kind\":\"order\",\"id\":\"1\"}]},\"properties\":{}}\n",
    );
    snapshot(&w, "a.jsonl", "two");
    let log = w.ok(&["log"]);
    assert_eq!(w.ok(&["ls"]), log);
    assert_eq!(w.ok(&["snapshots"]), log);
    // `--kinds` on every command; the old singular still works, and
    // comma-separated equals repeated.
    let diff = |args: &[&str]| {
        let mut all = vec!["diff", "one", "two", "--json"];
        all.extend_from_slice(args);
        w.ok(&all)
    };
    let two = diff(&["--kinds", "product,customer"]);
    assert!(two.contains("product") && two.contains("customer") && !two.contains("order"));
    assert_eq!(diff(&["--kind", "product", "--kind", "customer"]), two);
    assert_eq!(diff(&["--kinds", "product", "--kinds", "customer"]), two);
    w.ok(&[
        "export",
        "one",
        "--to",
        "jsonl:e.jsonl",
        "--kind",
        "product",
    ]);
    w.ok(&[
        "restore",
        "one",
        "--to",
        "jsonl:r.jsonl",
        "--kind",
        "product",
        "-n",
    ]);
}

#[test]
fn source_errors_are_one_clean_line() {
    let w = Work::new();
    w.init();
    let clean = |err: &str| {
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(
            !err.contains('\u{1b}'),
            "no colour when not a terminal: {err}"
        );
        assert!(!err.contains("WARN"), "no library log lines: {err}");
    };
    // Production Datastore without any credentials: gcp_auth's retry
    // warnings stay out of the way of the one error.
    let home = w.path("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = w
        .ks()
        .args([
            "snapshot",
            "--from",
            "datastore:acme-prod",
            "--timeout",
            "10",
        ])
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("CLOUDSDK_CONFIG", home.join("gcloud"))
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_SERVICE_ACCOUNT")
        .env_remove("DATASTORE_EMULATOR_HOST")
        .env_remove("KINDSNAP_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    clean(&err);
    assert!(err.contains("credentials"), "{err}");
    // `file:` is not a scheme kindsnap knows; it says what to write.
    let err = w.fails(&["snapshot", "--from", "file:shop.db"]);
    clean(&err);
    assert!(!err.contains("sqlite:file:"), "{err}");
    assert!(
        err.contains("`file:`") && err.contains("write `sqlite:shop.db`"),
        "{err}"
    );
    // A line in the wrong shape points at the entity format.
    w.write("ids.jsonl", "{\"id\": 1}\n");
    let err = w.fails(&["snapshot", "--from", "jsonl:ids.jsonl"]);
    clean(&err);
    assert!(
        err.contains("ids.jsonl:1")
            && err.contains("Datastore v1 entity")
            && err.contains("docs/format.md"),
        "{err}"
    );
}

#[test]
fn counts_and_times_read_the_same_everywhere() {
    let w = Work::new();
    w.init();
    w.write(
        "a.jsonl",
        "{\"key\":{\"path\":[{\"kind\":\"Post\",\"id\":\"1\"}]},\"properties\":{}}\n",
    );
    let out = w
        .ks()
        .args(["snapshot", "--from", "jsonl:a.jsonl", "--name", "only"])
        .env("KINDSNAP_NOW", "2026-12-05T18:31:03.123456Z")
        .output()
        .unwrap();
    assert!(out.status.success());
    // One snapshot, one entity: no "1 snapshots".
    let stats = w.ok(&["stats"]);
    assert!(stats.contains(": 1 snapshot,"), "{stats}");
    let check = w.ok(&["check", "--read-data"]);
    assert!(check.contains("checked 1 snapshot, "), "{check}");
    assert!(check.contains("read 1 entity "), "{check}");
    let prune = w.ok(&["prune", "--dry-run"]);
    assert!(prune.contains("1 snapshot references 1 entity;"), "{prune}");
    let export = w.ok(&["export", "only", "--to", "jsonl:e.jsonl"]);
    assert!(export.contains("exported 1 entity "), "{export}");
    for text in [&stats, &check, &prune, &export] {
        for wrong in ["1 snapshots", "1 packs", "1 entities", "(s)"] {
            assert!(!text.contains(wrong), "{wrong:?} in {text}");
        }
    }
    // The same time, the same way: RFC 3339 in UTC to the second.
    let forget = w.ok(&["forget", "--keep-last", "1", "--dry-run"]);
    let show = w.ok(&["show", "only"]);
    for text in [w.ok(&["log"]), stats, forget, show] {
        assert!(text.contains("2026-12-05T18:31:03Z"), "{text}");
        assert!(!text.contains("18:31:03.123"), "{text}");
        assert!(!text.contains("2026-12-05 18:31"), "{text}");
    }
}

/// `diff --keys` prints the per-kind summary first, then the keys;
/// `--stat` is the summary alone; `--exit-code` exits 1 when the snapshots
/// differ and 0 when they do not, whatever the format.
#[test]
fn diff_summary_first_stat_and_exit_code() {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(300, 2);
    data.write_sorted(&w.path("cur.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "a"]);
    data.mutate(3, 5, 2, 4);
    data.write_sorted(&w.path("cur.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "b"]);

    let out = w.ok(&["diff", "a", "b", "--keys", "--color", "never"]);
    let lines: Vec<&str> = out.lines().collect();
    let totals = lines
        .iter()
        .position(|l| l.contains("4 added, 2 removed, 5 changed"))
        .unwrap_or_else(|| panic!("no totals line:\n{out}"));
    let keys: Vec<&&str> = lines
        .iter()
        .filter(|l| l.trim_start().starts_with(['+', '-', '~']) && l.starts_with("  "))
        .collect();
    assert_eq!(keys.len(), 11, "{out}");
    let first_key = lines.iter().position(|l| l == keys[0]).unwrap();
    assert!(totals < first_key, "summary after the keys:\n{out}");

    let plain = w.ok(&["diff", "a", "b", "--color", "never"]);
    assert_eq!(
        w.ok(&["diff", "a", "b", "--stat", "--color", "never"]),
        plain
    );
    assert!(plain.contains("4 added, 2 removed, 5 changed"), "{plain}");

    for (args, want) in [
        (&["diff", "a", "b", "--exit-code", "--stat"][..], 1),
        (&["diff", "a", "b", "--exit-code", "--keys"][..], 1),
        (&["diff", "a", "b", "--exit-code", "--json"][..], 1),
        (&["diff", "a", "a", "--exit-code"][..], 0),
        (&["diff", "a", "a", "--exit-code", "--keys"][..], 0),
        (&["diff", "a", "b"][..], 0),
    ] {
        let out = w.run(args);
        assert_eq!(out.status.code(), Some(want), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}");
    }
    let json = w.run(&["diff", "a", "b", "--exit-code", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 11);
}

/// On a terminal, `diff` and `log` page their text through `$PAGER` (here
/// a `sed` that marks each line), as git does; `KINDSNAP_PAGER=` turns it
/// off; JSON is never paged. Run through util-linux `script`, which gives
/// the command a pseudo-terminal.
#[test]
fn text_output_goes_through_the_pager_on_a_terminal() {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(60, 2);
    data.write_sorted(&w.path("cur.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "a"]);
    data.mutate(3, 2, 1, 1);
    data.write_sorted(&w.path("cur.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "b"]);
    let on_terminal = |args: &str, pager: &str| -> String {
        let cmd = format!(
            "{} --repo {} {args}",
            common::bin().display(),
            w.repo().display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("PAGER", "sed 's/^/paged: /'")
            .env("KINDSNAP_PAGER", pager)
            .env("KINDSNAP_CACHE_DIR", w.cache_dir())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args}");
        String::from_utf8_lossy(&out.stdout).replace('\r', "")
    };
    let text = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    // KINDSNAP_PAGER wins over PAGER; here it is the marking sed too.
    let paged = on_terminal("diff a b --keys", "sed 's/^/paged: /'");
    let lines = text(&paged);
    assert!(lines.len() > 3, "{paged}");
    assert!(lines.iter().all(|l| l.starts_with("paged: ")), "{paged}");
    let plain = on_terminal("diff a b --keys", "");
    assert!(
        text(&plain).iter().all(|l| !l.starts_with("paged: ")),
        "{plain}"
    );
    // The same lines, blank ones aside.
    let unpaged: Vec<String> = lines
        .iter()
        .map(|l| l["paged: ".len()..].to_string())
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(text(&plain), unpaged);
    let log = on_terminal("log", "sed 's/^/paged: /'");
    assert!(text(&log).iter().all(|l| l.starts_with("paged: ")), "{log}");
    let json = on_terminal("diff a b --json", "sed 's/^/paged: /'");
    assert!(!json.contains("paged: "), "{json}");
}
