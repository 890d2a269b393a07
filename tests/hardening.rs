//! Hostile names and hostile environments, through the real binary:
//! control characters in names never reach the terminal raw, a repository
//! config with impossible numbers is refused in one line, existing
//! outputs keep their modes, and the repository is private whatever the
//! umask.

#![allow(clippy::unwrap_used)]

mod common;

use common::Work;

/// A line whose kind, namespace and key name carry ESC, CR, BEL and a
/// bidi override, and a string property with the same.
fn hostile_line(prop: &str) -> String {
    let key = r#"{"partitionId":{"projectId":"p","namespaceId":"n\u001b]0;x\u0007s"},"path":[{"kind":"K\u001b[31mred\rover\u202e","name":"a\u001b[2Jb"}]}"#;
    format!(r#"{{"key":{key},"properties":{{"p":{{"stringValue":"{prop}\u001b[5m"}}}}}}"#)
}

fn assert_no_raw_controls(what: &str, out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    for bad in ['\u{1b}', '\r', '\u{7}', '\u{0}', '\u{202e}'] {
        assert!(
            !text.contains(bad),
            "{what}: raw {:?} in output:\n{text}",
            bad
        );
    }
}

#[test]
fn control_characters_in_names_are_escaped_on_the_terminal() {
    let w = Work::new();
    w.init();
    w.write("a.jsonl", &format!("{}\n", hostile_line("one")));
    w.write("b.jsonl", &format!("{}\n", hostile_line("two")));
    w.ok(&["snapshot", "--from", "jsonl:a.jsonl", "--name", "a"]);
    w.ok(&["snapshot", "--from", "jsonl:b.jsonl", "--name", "b"]);
    for args in [
        &["log"][..],
        &["show", "a"],
        &["diff", "a", "b"],
        &["diff", "a", "b", "--keys"],
        &["diff", "a", "b", "--props"],
        &["stats"],
        &["forget", "--keep-last", "1", "--dry-run"],
    ] {
        let out = w.run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert_no_raw_controls(&format!("{args:?} stdout"), &out.stdout);
        assert_no_raw_controls(&format!("{args:?} stderr"), &out.stderr);
    }
    // The names are still there, escaped, and ordinary Unicode is kept.
    let show = w.ok(&["show", "a"]);
    assert!(show.contains(r"K\u{1b}[31mred\rover\u{202e}"), "{show}");
    // Coloured output keeps its own colour codes and nothing else.
    for args in [
        &["diff", "a", "b", "--color", "always"][..],
        &["diff", "a", "b", "--props", "--color", "always"],
    ] {
        let text = w.ok(args);
        assert!(text.contains("\u{1b}[1m"), "{text}");
        let plain = text
            .replace("\u{1b}[0m", "")
            .replace("\u{1b}[1m", "")
            .replace("\u{1b}[31m\"one", "")
            .replace("\u{1b}[32m\"two", "")
            .replace("\u{1b}[33m", "");
        assert_no_raw_controls(&format!("{args:?} without its colours"), plain.as_bytes());
    }
    // An error naming the kind: one line, escaped.
    let out = w.run(&["cat", "a", "Nope:1"]);
    assert!(!out.status.success());
    assert_no_raw_controls("cat error", &out.stderr);
    // A restore into JSON Lines reports its kinds escaped.
    let out = w.run(&["restore", "a", "--to", "jsonl:restored.jsonl"]);
    assert!(out.status.success(), "{out:?}");
    assert_no_raw_controls("restore", &out.stdout);
    // JSON output stays JSON: the names come back exactly.
    let json: serde_json::Value = serde_json::from_str(&w.ok(&["show", "a", "--json"])).unwrap();
    assert_eq!(json["kinds"][0]["kind"], "K\u{1b}[31mred\rover\u{202e}");
    // A snapshot name with a control character is refused at --name.
    let err = w.fails(&[
        "snapshot",
        "--from",
        "jsonl:a.jsonl",
        "--name",
        "x\u{1b}[2Jy",
    ]);
    assert!(err.contains("control characters"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Set `key` in the repository's `config` file to the JSON `value`.
fn set_config(w: &Work, key: &str, value: serde_json::Value) {
    let path = w.repo().join("config");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

#[test]
fn impossible_config_values_fail_in_one_line() {
    let w = Work::new();
    w.init();
    let data = common::Data::generate(50, 3);
    data.write_sorted(&w.path("cur.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "one"]);
    let original = std::fs::read(w.repo().join("config")).unwrap();
    let huge = serde_json::json!(1_000_000_000_000_000u64);
    for (key, value) in [
        ("block_size", huge.clone()),
        ("block_size", serde_json::json!(0)),
        ("block_size", serde_json::json!(1e15)),
        ("block_size", serde_json::json!(-1)),
        ("pack_size", huge.clone()),
        ("pack_size", serde_json::json!(0)),
        ("zstd_level", serde_json::json!(100)),
        ("zstd_level", serde_json::json!(-1_000_000)),
        ("keyframe_interval", serde_json::json!(0)),
        ("keyframe_interval", serde_json::json!(4_000_000_000u64)),
        ("kindsnap_repository", serde_json::json!(0)),
    ] {
        std::fs::write(w.repo().join("config"), &original).unwrap();
        set_config(&w, key, value.clone());
        for args in [
            &["snapshot", "--from", "jsonl:cur.jsonl"][..],
            &["log"],
            &["export", "one", "--to", "jsonl:out.jsonl"],
        ] {
            let out = w.run(args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{key}={value} {args:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{key}={value}: {err}");
            assert!(
                !err.contains("panicked") && !err.contains("backtrace"),
                "{err}"
            );
            assert!(
                err.contains("config") && err.contains(key) && err.contains(&value.to_string()),
                "{key}={value}: {err}"
            );
            assert!(err.contains(" to "), "no allowed range: {err}");
        }
    }
    // The bounds themselves are accepted.
    std::fs::write(w.repo().join("config"), &original).unwrap();
    set_config(&w, "block_size", serde_json::json!(4096));
    set_config(&w, "keyframe_interval", serde_json::json!(1));
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "two"]);
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
#[test]
fn existing_outputs_keep_their_mode() {
    use std::os::unix::fs::PermissionsExt;
    let w = Work::new();
    w.init();
    let data = common::Data::generate(40, 4);
    data.write_sorted(&w.path("cur.jsonl"));
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "one"]);
    for (file, args) in [
        ("exported.jsonl", &["export", "one", "--to"][..]),
        ("restored.jsonl", &["restore", "one", "--to"]),
    ] {
        let path = w.write(file, "");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut all = args.to_vec();
        let to = format!("jsonl:{file}");
        all.push(&to);
        w.ok(&all);
        assert!(
            std::fs::metadata(&path).unwrap().len() > 0,
            "{file} not written"
        );
        assert_eq!(mode(&path), 0o600, "{file} lost its mode");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        // Again, over what the first run wrote (a restore says how).
        if file == "restored.jsonl" {
            all.push("--merge");
        }
        w.ok(&all);
        assert_eq!(mode(&path), 0o640, "{file} lost its mode");
    }
}

/// Run kindsnap under `umask 000`.
#[cfg(unix)]
fn under_umask_000(w: &Work, args: &[&str]) -> String {
    let bin = assert_cmd::cargo::cargo_bin("kindsnap");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(&bin)
        .arg("--repo")
        .arg(w.repo())
        .args(args)
        .current_dir(w.dir.path())
        .env_remove("KINDSNAP_REPO")
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "kindsnap {args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Every file and directory below `root` with a group or other bit.
#[cfg(unix)]
fn public_entries(root: &std::path::Path) -> Vec<String> {
    let mut found = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = mode(&p);
        if m & 0o077 != 0 {
            found.push(format!("{} {:o}", p.display(), m));
        }
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    found
}

#[cfg(unix)]
#[test]
fn the_repository_is_private_whatever_the_umask() {
    let w = Work::new();
    let mut data = common::Data::generate(300, 5);
    data.write_sorted(&w.path("cur.jsonl"));
    under_umask_000(&w, &["init"]);
    under_umask_000(
        &w,
        &["snapshot", "--from", "jsonl:cur.jsonl", "--name", "one"],
    );
    data.mutate(9, 30, 10, 10);
    data.write_sorted(&w.path("cur.jsonl"));
    under_umask_000(
        &w,
        &["snapshot", "--from", "jsonl:cur.jsonl", "--name", "two"],
    );
    under_umask_000(&w, &["restore", "one", "--to", "jsonl:restored.jsonl"]);
    under_umask_000(
        &w,
        &[
            "restore",
            "one",
            "--to",
            "jsonl:uuid.jsonl",
            "--keys",
            "uuid",
        ],
    );
    under_umask_000(&w, &["forget", "--keep-last", "1"]);
    under_umask_000(&w, &["prune"]);
    under_umask_000(&w, &["check", "--rebuild-index"]);
    under_umask_000(
        &w,
        &["snapshot", "--from", "jsonl:cur.jsonl", "--name", "three"],
    );
    for dir in ["restores", "keymaps"] {
        assert!(w.repo().join(dir).is_dir(), "{dir}/ was not made");
    }
    assert!(w.cache_dir().join("lines").is_dir(), "no line cache made");
    let public = public_entries(&w.repo());
    assert!(public.is_empty(), "readable by others: {public:#?}");
    let public = public_entries(&w.cache_dir().join("lines"));
    assert!(public.is_empty(), "readable by others: {public:#?}");
    // Outputs outside the repository follow the umask as before.
    assert_eq!(mode(&w.path("restored.jsonl")), 0o666);
}
