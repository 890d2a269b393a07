//! What people read: `--help`, `log`, `show` and `diff` output, pinned with
//! insta snapshots (tests/snapshots/). Times, ids and temp paths are
//! redacted. A change to any of these is a change users see: review it with
//! `cargo insta review` (or read the `.snap.new` file) and commit the new
//! snapshot with the code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Work;

fn filters(w: &Work) -> Vec<(String, String)> {
    let dir = w.dir.path().display().to_string();
    vec![
        (regex_escape(&dir), "[WORK]".into()),
        (
            r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?".into(),
            "[TIME]".into(),
        ),
        (r"\b[0-9a-f]{64}\b".into(), "[ID]".into()),
        (r"\b[0-9a-f]{8}\b".into(), "[SHORT]".into()),
        // Byte counts depend on zstd and SQLite page layout, not on us.
        (r"\d+(\.\d)? (B|KiB|MiB)\b".into(), "[SIZE]".into()),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

fn assert_out(w: &Work, name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    for (re, with) in filters(w) {
        settings.add_filter(&re, with);
    }
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

const DAY1: &str = concat!(
    r#"{"key":{"path":[{"kind":"User","name":"alice"}]},"properties":{"email":{"stringValue":"alice@example.com"}}}"#,
    "\n",
    r#"{"key":{"path":[{"kind":"User","name":"bob"}]},"properties":{"email":{"stringValue":"bob@example.com"}}}"#,
    "\n",
    r#"{"key":{"path":[{"kind":"User","name":"alice"},{"kind":"Order","id":"1"}]},"properties":{"total":{"integerValue":"30"},"state":{"stringValue":"open"}}}"#,
    "\n",
    r#"{"key":{"path":[{"kind":"User","name":"alice"},{"kind":"Order","id":"2"}]},"properties":{"total":{"integerValue":"12"},"state":{"stringValue":"open"}}}"#,
    "\n",
    r#"{"key":{"partitionId":{"namespaceId":"shop"},"path":[{"kind":"Item","id":"7"}]},"properties":{"name":{"stringValue":"tea"}}}"#,
    "\n",
);

const DAY2: &str = concat!(
    r#"{"key":{"path":[{"kind":"User","name":"alice"}]},"properties":{"email":{"stringValue":"alice@example.com"}}}"#,
    "\n",
    r#"{"key":{"path":[{"kind":"User","name":"carol"}]},"properties":{"email":{"stringValue":"carol@example.com"}}}"#,
    "\n",
    r#"{"key":{"path":[{"kind":"User","name":"alice"},{"kind":"Order","id":"1"}]},"properties":{"total":{"integerValue":"30"},"state":{"stringValue":"shipped"},"tracking":{"stringValue":"Z123"}}}"#,
    "\n",
    r#"{"key":{"path":[{"kind":"User","name":"alice"},{"kind":"Order","id":"2"}]},"properties":{"total":{"integerValue":"12"},"state":{"stringValue":"open"}}}"#,
    "\n",
    r#"{"key":{"partitionId":{"namespaceId":"shop"},"path":[{"kind":"Item","id":"7"}]},"properties":{"name":{"stringValue":"tea"}}}"#,
    "\n",
);

fn two_days() -> Work {
    let w = Work::new();
    w.init();
    w.write("shop.jsonl", DAY1);
    w.ok(&["snapshot", "--from", "jsonl:shop.jsonl", "--name", "monday"]);
    w.write("shop.jsonl", DAY2);
    w.ok(&[
        "snapshot",
        "--from",
        "jsonl:shop.jsonl",
        "--name",
        "tuesday",
    ]);
    w
}

#[test]
fn log_show_and_diff_read_well() {
    let w = two_days();
    assert_out(&w, "log", &w.ok(&["log"]));
    assert_out(&w, "show", &w.ok(&["show", "tuesday"]));
    assert_out(&w, "diff", &w.ok(&["diff", "monday", "tuesday"]));
    assert_out(
        &w,
        "diff_keys",
        &w.ok(&["diff", "monday", "tuesday", "--keys"]),
    );
    assert_out(
        &w,
        "diff_props",
        &w.ok(&["diff", "monday", "tuesday", "--props", "--kind", "Order"]),
    );
    assert_out(&w, "diff_none", &w.ok(&["diff", "tuesday", "tuesday"]));
}

#[test]
fn colours_only_on_request_and_never_with_no_color() {
    let w = two_days();
    // Not a terminal: no colours by default.
    let plain = w.ok(&["diff", "monday", "tuesday", "--keys"]);
    assert!(!plain.contains('\x1b'), "{plain}");
    let coloured = w.ok(&["diff", "monday", "tuesday", "--keys", "--color", "always"]);
    assert!(
        coloured.contains("\x1b[32m+ User:carol\x1b[0m"),
        "{coloured}"
    );
    assert!(coloured.contains("\x1b[31m- User:bob\x1b[0m"), "{coloured}");
    // Stripped of escapes, the coloured output is the plain one: colours
    // never change the alignment.
    let stripped = {
        let mut s = String::new();
        let mut chars = coloured.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                s.push(c);
            }
        }
        s
    };
    assert_eq!(stripped, plain);
    let out = w
        .ks()
        .args(["diff", "monday", "tuesday", "--color", "auto"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
}

#[test]
fn progress_is_plain_and_quiet_off_a_terminal() {
    let w = Work::new();
    w.init();
    w.write("shop.jsonl", DAY1);
    // stderr is a pipe here: no bar drawing, no escape codes, no carriage
    // returns; short runs print no progress lines at all.
    let out = w
        .ks()
        .args(["snapshot", "--from", "jsonl:shop.jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    let out = w
        .ks()
        .args(["-q", "snapshot", "--from", "jsonl:shop.jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn help_carries_examples() {
    let w = Work::new();
    assert_out(&w, "help", &w.ok(&["--help"]));
    for cmd in [
        "snapshot", "log", "show", "cat", "diff", "export", "check", "restore", "clear", "keymap",
        "config", "stats", "forget", "prune", "ui",
    ] {
        let help = w.ok(&[cmd, "--help"]);
        assert!(
            help.contains("Examples:"),
            "`kindsnap {cmd} --help` has no examples:\n{help}"
        );
    }
    assert_out(&w, "help_restore", &w.ok(&["restore", "--help"]));
    assert_out(&w, "help_snapshot", &w.ok(&["snapshot", "--help"]));
}

#[test]
fn completions_and_man_pages_are_generated() {
    let w = Work::new();
    // Dynamic: each script calls the binary back (tests/daily.rs runs
    // the bash one).
    let bash = w.ok(&["completions", "bash"]);
    assert!(bash.contains("KINDSNAP_COMPLETE=\"bash\"") && bash.contains("complete "));
    let zsh = w.ok(&["completions", "zsh"]);
    assert!(zsh.contains("#compdef kindsnap") && zsh.contains("KINDSNAP_COMPLETE"));
    let fish = w.ok(&["completions", "fish"]);
    assert!(fish.contains("--command kindsnap") && fish.contains("KINDSNAP_COMPLETE=fish"));
    let man = w.ok(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH kindsnap"),
        "{man}"
    );
    w.ok(&["man", "--out-dir", "man1"]);
    let page = std::fs::read_to_string(w.path("man1/kindsnap-restore.1")).unwrap();
    assert!(page.contains(".TH kindsnap-restore") && page.contains("uuid"));
    // Every page a page refers to exists (nested commands too, no pages
    // for clap's `help`), and each carries the version.
    let version = env!("CARGO_PKG_VERSION");
    for e in std::fs::read_dir(w.path("man1")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let th = text.lines().find(|l| l.starts_with(".TH")).unwrap();
        assert!(th.contains(version), "{th}");
        for (i, _) in text.match_indices("(1)") {
            let start = text[..i].rfind(|c: char| c.is_whitespace()).unwrap() + 1;
            let name = text[start..i].replace('\\', "");
            let name = name.trim_start_matches("\\fB");
            if name.starts_with("kindsnap") {
                assert!(
                    w.path(&format!("man1/{name}.1")).exists(),
                    "{name}(1) missing"
                );
            }
        }
    }
    assert!(w.path("man1/kindsnap-tag-add.1").exists());
    assert!(!w.path("man1/kindsnap-help.1").exists());
}
