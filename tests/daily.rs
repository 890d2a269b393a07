//! Daily use (issue 16): ids that stay once printed, tags, dynamic shell
//! completion, tables for SQL-shaped data. Each test runs the real binary
//! on real files in its own temp dir.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Data, Work};

/// Three snapshots a, b, c of one changing data set.
fn three_snapshots(w: &Work) -> Data {
    w.init();
    let mut data = Data::generate(200, 3);
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        if i > 0 {
            data.mutate(i as u64, 5, 2, 2);
        }
        data.write_sorted(&w.path("cur.jsonl"));
        w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", name]);
    }
    data
}

fn log_json(w: &Work) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&w.ok(&["log", "--json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn id_of(log: &[serde_json::Value], name: &str) -> String {
    log.iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {log:?}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn manifest_files(w: &Work) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(w.repo().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// `forget b` rewrites c's manifest (b's changes folded in), yet c keeps
/// the id printed before: log, show, diff, cat and restore by that id
/// prefix still work, and `--json` and the parent pointer of log show the
/// logical ids.
#[test]
fn an_id_printed_before_forget_still_works_after_it() {
    let w = Work::new();
    let data = three_snapshots(&w);
    let before = log_json(&w);
    let c = id_of(&before, "c");
    let a = id_of(&before, "a");
    let files_before = manifest_files(&w);
    assert!(files_before.contains(&c));
    w.ok(&["forget", "b"]);
    // The manifest file of c was rewritten: a new file, the old one gone.
    let files_after = manifest_files(&w);
    assert!(!files_after.contains(&c), "{files_after:?}");
    assert_eq!(files_after.len(), 2);
    let after = log_json(&w);
    assert_eq!(id_of(&after, "c"), c);
    assert_eq!(id_of(&after, "a"), a);
    let c_entry = after.iter().find(|s| s["name"] == "c").unwrap();
    assert_eq!(c_entry["parent"], a.as_str());
    let text = w.ok(&["log"]);
    assert!(text.contains(&c[..8]), "{text}");
    let show = w.ok(&["show", &c[..8]]);
    assert!(show.contains(&c), "{show}");
    // The new manifest's own id (what builds before logical ids printed)
    // names the same snapshot.
    let file = files_after.iter().find(|f| **f != a).unwrap();
    let show = w.ok(&["show", &file[..8]]);
    assert!(show.contains(&c) && show.contains("snapshot c"), "{show}");
    let diff = w.ok(&["diff", &a[..8], &c[..10], "--json"]);
    let v: serde_json::Value = serde_json::from_str(&diff).unwrap();
    assert_eq!(v["to"]["id"], c.as_str());
    assert_eq!(v["from"]["id"], a.as_str());
    // Restore by the old id reads c's state.
    let out = w.path("c.jsonl");
    w.ok(&[
        "restore",
        &c[..8],
        "--to",
        &format!("jsonl:{}", out.display()),
    ]);
    let want = w.path("want.jsonl");
    data.write_sorted(&want);
    assert_eq!(common::canonical_set(&out), common::canonical_set(&want));
    w.ok(&["check"]);
}

/// Tags: `snapshot --tag`, `tag add`, `tag remove`; `log` shows them (text
/// and JSON) and filters by them; ids never change; `forget --keep-tag`
/// keeps a tagged snapshot that every other rule would remove.
#[test]
fn tags_keep_ids_and_snapshots() {
    let w = Work::new();
    three_snapshots(&w);
    let before = log_json(&w);
    let a = id_of(&before, "a");
    let diff_before = w.ok(&["diff", "a", "b", "--json"]);
    let out = w.ok(&["tag", "add", "audit", "a", "c"]);
    // Tagging a parent changes nothing its children's diffs see.
    assert_eq!(w.ok(&["diff", "a", "b", "--json"]), diff_before);
    assert!(out.contains("2 snapshots tagged"), "{out}");
    let out = w.ok(&["tag", "add", "audit", "a"]);
    assert!(
        out.contains("already tagged") && out.contains("0 snapshots"),
        "{out}"
    );
    let after = log_json(&w);
    for s in &before {
        let name = s["name"].as_str().unwrap();
        assert_eq!(id_of(&after, name), s["id"].as_str().unwrap(), "{name}");
    }
    let tags = |log: &[serde_json::Value], name: &str| -> Vec<String> {
        log.iter().find(|s| s["name"] == name).unwrap()["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(tags(&after, "a"), ["audit"]);
    assert!(tags(&after, "b").is_empty());
    let text = w.ok(&["log"]);
    assert!(text.lines().next().unwrap().contains("tags"), "{text}");
    let only = w.ok(&["log", "--tag", "audit"]);
    assert!(only.contains(" a ") && !only.contains(" b "), "{only}");
    // The repository moved to format 3 (tags in manifest headers).
    let config = std::fs::read_to_string(w.repo().join("config")).unwrap();
    assert!(config.contains("\"kindsnap_repository\": 3"), "{config}");
    // A new snapshot with tags.
    w.ok(&[
        "snapshot",
        "--from",
        "jsonl:cur.jsonl",
        "--name",
        "d",
        "--tag",
        "weekly",
    ]);
    assert_eq!(tags(&log_json(&w), "d"), ["weekly"]);
    let d = id_of(&log_json(&w), "d");
    // A rerun that finds `d` published already still adds its tags.
    let out = w.ok(&[
        "snapshot",
        "--from",
        "jsonl:cur.jsonl",
        "--name",
        "d",
        "--tag",
        "extra",
    ]);
    assert!(out.contains("already exists"), "{out}");
    assert_eq!(tags(&log_json(&w), "d"), ["extra", "weekly"]);
    assert_eq!(id_of(&log_json(&w), "d"), d);
    // --json says the snapshot's tags after the run.
    let out = w.ok(&[
        "snapshot",
        "--from",
        "jsonl:cur.jsonl",
        "--name",
        "d",
        "--tag",
        "more",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["tags"],
        serde_json::json!(["extra", "more", "weekly"]),
        "{v}"
    );
    assert_eq!(v["id"].as_str(), Some(d.as_str()));
    // Keep the last one and what is tagged `audit`: only b goes.
    let report = w.ok(&[
        "forget",
        "--keep-last",
        "1",
        "--keep-tag",
        "audit",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["removed"], 1);
    let left: Vec<String> = log_json(&w)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["d", "c", "a"]);
    assert_eq!(id_of(&log_json(&w), "a"), a);
    // Removing the tag keeps the id too.
    w.ok(&["tag", "remove", "audit", &a[..8]]);
    let log = log_json(&w);
    assert_eq!(id_of(&log, "a"), a);
    assert!(tags(&log, "a").is_empty());
    w.ok(&["check"]);
    let err = w.fails(&["tag", "add", "a b", "a"]);
    assert!(err.contains("white space"), "{err}");
    let err = w.fails(&["tag", "add", "x", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
}

/// The bash script of `kindsnap completions bash`, sourced in a real bash,
/// completes `kindsnap diff mo` to the snapshot `monday` and `--kinds us`
/// to the kind `User` (case ignored), reading the repository named by
/// `--repo` on the command line being completed.
#[test]
fn bash_completes_snapshot_names_and_kinds_from_the_repository() {
    let w = Work::new();
    w.init();
    let data = Data::generate(20, 1);
    data.write_sorted(&w.path("cur.jsonl"));
    for name in ["monday", "tuesday", "moon"] {
        w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", name]);
    }
    w.ok(&["tag", "add", "audit", "moon"]);
    let script = w.ok(&["completions", "bash"]);
    std::fs::write(w.path("kindsnap.bash"), script).unwrap();
    let repo = w.repo().display().to_string();
    let complete = |words: &[&str]| -> Vec<String> {
        let quoted: Vec<String> = words.iter().map(|s| format!("'{s}'")).collect();
        let cmd = format!(
            "source kindsnap.bash; COMP_WORDS=({}); COMP_CWORD={}; \
             _clap_complete_kindsnap kindsnap {} {}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            quoted.join(" "),
            words.len() - 1,
            quoted[words.len() - 1],
            quoted[words.len() - 2],
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &cmd])
            .current_dir(w.path(""))
            .env_remove("KINDSNAP_REPO")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let got = complete(&["kindsnap", "--repo", &repo, "diff", "mo"]);
    assert_eq!(got, ["moon", "monday"], "newest first");
    let got = complete(&["kindsnap", "--repo", &repo, "diff", "monday", "tu"]);
    assert_eq!(got, ["tuesday"]);
    let got = complete(&[
        "kindsnap", "--repo", &repo, "diff", "a", "b", "--kinds", "us",
    ]);
    assert_eq!(got, ["User"]);
    let got = complete(&["kindsnap", "--repo", &repo, "forget", "--keep-tag", ""]);
    assert_eq!(got, ["audit"]);
    // No repository there: nothing, and no error on the terminal.
    let none = w.path("none").display().to_string();
    assert!(complete(&["kindsnap", "--repo", &none, "show", "m"]).is_empty());
}

/// A SQLite database with one table: `cat` and `diff --props` print SQL
/// rows as tables by default (NULL shown, long text cut with …), JSON on
/// request; `cat SNAP KIND` lists every row of the kind.
#[test]
fn sql_rows_print_as_tables() {
    let w = Work::new();
    w.init();
    let db = w.path("shop.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE product(sku TEXT PRIMARY KEY, title TEXT, price REAL, note TEXT);
         INSERT INTO product VALUES ('A1', 'anvil', 9.5, NULL);
         INSERT INTO product VALUES ('B2', 'bolt', 0.25, 'x');",
    )
    .unwrap();
    c.execute(
        "UPDATE product SET note = ?1 WHERE sku = 'B2'",
        [&"long ".repeat(30)],
    )
    .unwrap();
    let from = format!("sqlite:{}", db.display());
    w.ok(&["snapshot", "--from", &from, "--name", "mon"]);
    c.execute_batch("UPDATE product SET price = 11 WHERE sku = 'A1'")
        .unwrap();
    w.ok(&["snapshot", "--from", &from, "--name", "tue"]);

    let one = w.ok(&["cat", "mon", "product:A1"]);
    let lines: Vec<&str> = one.lines().collect();
    assert_eq!(lines.len(), 2, "{one}");
    for col in ["key", "note", "price", "title"] {
        assert!(lines[0].contains(col), "{one}");
    }
    assert!(
        lines[1].contains("NULL") && lines[1].contains("anvil"),
        "{one}"
    );
    let json = w.ok(&["cat", "mon", "product:A1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["properties"]["title"]["stringValue"], "anvil");

    let all = w.ok(&["cat", "mon", "product"]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3, "{all}");
    assert!(
        lines[2].contains('…') && !lines[2].contains(&"long ".repeat(30)),
        "{all}"
    );
    let jsonl = w.ok(&["cat", "mon", "product", "--format", "json", "--limit", "1"]);
    assert_eq!(jsonl.lines().count(), 1, "{jsonl}");
    let err = w.fails(&["cat", "mon", "Produkt"]);
    assert!(err.contains("did you mean `product`"), "{err}");
    // A key in the wrong case, or a small edit away.
    let err = w.fails(&["cat", "mon", "product:a1"]);
    assert!(err.contains("did you mean `product:A1`"), "{err}");
    let err = w.fails(&["cat", "mon", "product:B3"]);
    assert!(err.contains("`product:B2`"), "{err}");

    let diff = w.ok(&["diff", "mon", "tue", "--props"]);
    let row = diff
        .lines()
        .find(|l| l.contains("product:A1"))
        .unwrap_or_else(|| panic!("{diff}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells, ["~", "product:A1", "price", "9.5", "11"], "{diff}");
    let lines = w.ok(&["diff", "mon", "tue", "--props", "--format", "json"]);
    assert!(lines.contains("price: 9.5 → 11"), "{lines}");
}

/// A missing or malformed credentials file named by
/// GOOGLE_APPLICATION_CREDENTIALS: one line that names the file and what
/// to do, none of the auth library's words, no colour off a terminal.
#[test]
fn credential_errors_are_one_clean_line() {
    let w = Work::new();
    w.init();
    let bad = w.write("bad.json", "{\"type\":\"service_account\"}");
    let missing = w.path("nowhere/key.json");
    for (file, says) in [
        (&missing, "which is not a file"),
        (&bad, "is not a service account key"),
    ] {
        let out = w
            .ks()
            .args([
                "snapshot",
                "--from",
                "datastore:acme-prod",
                "--timeout",
                "10",
            ])
            .env("GOOGLE_APPLICATION_CREDENTIALS", file)
            .env_remove("DATASTORE_EMULATOR_HOST")
            .env_remove("KINDSNAP_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(says) && err.contains(&file.display().to_string()),
            "{err}"
        );
        assert!(
            err.contains("gcloud auth application-default login"),
            "{err}"
        );
        for internal in [
            "deserialize",
            "ApplicationCredentials",
            "os error",
            "\u{1b}[",
        ] {
            assert!(!err.contains(internal), "{internal}: {err}");
        }
        assert!(out.stdout.is_empty());
    }
}

/// On a terminal (a pseudo-terminal through util-linux `script`), the
/// first snapshot of a JSON Lines file shows its total (the file's lines)
/// with an ETA; a restore draws a bar per kind and an overall one, each
/// with its unit,
/// percentage and ETA, and no rate with a fraction of an entity; the
/// summaries of snapshot, restore, check say how long they took.
#[test]
fn progress_on_a_terminal_names_units_and_an_overall_eta() {
    let w = Work::new();
    w.init();
    let data = Data::generate(40_000, 5);
    data.write_sorted(&w.path("cur.jsonl"));
    // The first snapshot, on a terminal: no parent to guess a total
    // from, but a JSON Lines file counts its lines.
    let cmd = format!(
        "{} --repo {} snapshot --from jsonl:{} --name a --no-cache",
        common::bin().display(),
        w.repo().display(),
        w.path("cur.jsonl").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    assert!(
        screen
            .lines()
            .any(|l| l.contains("reading") && l.contains("/40,000") && l.contains("ETA")),
        "{screen}"
    );
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("repository grew by") && l.contains(" in ")),
        "{screen}"
    );
    let check = w.ok(&["check"]);
    assert!(
        check.starts_with("checked 1 snapshot, ") && check.contains(" in "),
        "{check}"
    );
    let cmd = format!(
        "{} --repo {} restore a --to jsonl:{}",
        common::bin().display(),
        w.repo().display(),
        w.path("out.jsonl").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let screen = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let bars: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("overall") && l.contains('%'))
        .collect();
    assert!(!bars.is_empty(), "no overall bar:\n{screen}");
    assert!(
        bars.iter()
            .any(|l| l.contains("/40,000") && l.contains("entities") && l.contains("ETA")),
        "{bars:?}"
    );
    assert!(screen.contains("restoring "), "{screen}");
    // Rates are rounded: `12.5k/s`, never `125193.1575/s`.
    for l in screen.lines().filter(|l| l.contains("/s")) {
        let rate = l.split_whitespace().find(|w| w.ends_with("/s")).unwrap();
        let digits = rate.trim_end_matches("/s").trim_end_matches(['k', 'M']);
        assert!(digits.len() <= 5, "{rate} in {l}");
    }
    assert!(screen.contains("done in "), "{screen}");
    // `check --read-data` counts bytes (a bar that moves with the data).
    let cmd = format!(
        "{} --repo {} check --read-data",
        common::bin().display(),
        w.repo().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    assert!(
        screen
            .lines()
            .any(|l| l.contains("reading data") && l.contains("B/s") && l.contains('%')),
        "{screen}"
    );
}

/// `forget --tag T` applies the rules to the snapshots tagged T only, as
/// restic's does: the others are kept and not listed.
#[test]
fn forget_with_tag_considers_only_tagged_snapshots() {
    let w = Work::new();
    three_snapshots(&w);
    w.ok(&["tag", "add", "x", "a", "b"]);
    let report = w.ok(&["forget", "--tag", "x", "--keep-last", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        (v["kept"].as_u64(), v["removed"].as_u64()),
        (Some(1), Some(1))
    );
    let listed: Vec<&str> = v["groups"][0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["b", "a"]);
    let left: Vec<String> = log_json(&w)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["c", "b"]);
    w.ok(&["check"]);
}

/// Times print one way, RFC 3339 in UTC; `--local-time` prints the same
/// moment with the local offset (here TZ=Asia/Kolkata, +05:30), which `@`
/// accepts back; `--json` stays UTC.
#[test]
fn local_time_on_request() {
    let w = Work::new();
    w.init();
    Data::generate(10, 1).write_sorted(&w.path("cur.jsonl"));
    w.ks()
        .args(["snapshot", "--from", "jsonl:cur.jsonl", "--name", "a"])
        .env("KINDSNAP_NOW", "2026-11-20T06:00:00Z")
        .assert()
        .success();
    let utc = w.ok(&["log"]);
    assert!(utc.contains("2026-11-20T06:00:00Z"), "{utc}");
    let run = |args: &[&str]| {
        let out = w
            .ks()
            .args(args)
            .env("TZ", "Asia/Kolkata")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let local = run(&["--local-time", "log"]);
    assert!(local.contains("2026-11-20T11:30:00+05:30"), "{local}");
    let show = run(&["show", "@2026-11-20T11:30:00+05:30", "--local-time"]);
    assert!(
        show.contains("snapshot a") && show.contains("+05:30"),
        "{show}"
    );
    let json = run(&["--local-time", "log", "--json"]);
    assert!(json.contains("2026-11-20T06:00:00"), "{json}");
}
