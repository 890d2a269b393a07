//! The documentation's examples run. In docs/*.md and README.md, every
//! fenced block whose info string says `tested` (```` ```sh tested ````),
//! and every hidden `<!-- tested: … -->` comment (set-up a reader does not
//! need to see, such as "a day passes"), is run in file order as one bash
//! script with `set -euo pipefail`, in a fresh home directory, with the real
//! `kindsnap` binary on PATH.
//!
//! Files that talk to Datastore get a real dev server standing in for
//! production: `DATASTORE_EMULATOR_HOST` points at it and project
//! `acme-prod` holds a small shop (User, and Order under User). The command
//! `ks-doc-day N` (on PATH) turns production into day N of the shop's
//! history (N = 1, 2, 3), so a guide can let time pass. `KS_ROOT` is the
//! source tree, for sample files such as docs/examples/shop.sql.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/devserver.rs"]
mod devserver;

use std::path::{Path, PathBuf};
use std::process::Command;

use devserver::DevServer;

/// One runnable piece of a document, with the line it starts on.
struct Piece {
    line: usize,
    code: String,
}

fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        let t = l.trim_start();
        let tested_fence = t.starts_with("```")
            && t.trim_start_matches('`')
                .split_whitespace()
                .any(|w| w == "tested");
        let tested_comment = t.starts_with("<!-- tested:");
        if !tested_fence && !tested_comment {
            continue;
        }
        let mut code = String::new();
        for (_, l) in lines.by_ref() {
            if (tested_fence && l.trim_start().starts_with("```"))
                || (tested_comment && l.trim_start().starts_with("-->"))
            {
                break;
            }
            code.push_str(l);
            code.push('\n');
        }
        out.push(Piece { line: i + 1, code });
    }
    out
}

fn shop_day(day: u32) -> String {
    let user = |name: &str, email: &str| {
        format!(
            r#"{{"key":{{"path":[{{"kind":"User","name":"{name}"}}]}},"properties":{{"email":{{"stringValue":"{email}"}}}}}}"#
        )
    };
    let order = |owner: &str, id: u32, state: &str, total: u32| {
        format!(
            r#"{{"key":{{"path":[{{"kind":"User","name":"{owner}"}},{{"kind":"Order","id":"{id}"}}]}},"properties":{{"state":{{"stringValue":"{state}"}},"total":{{"integerValue":"{total}"}},"customer":{{"keyValue":{{"path":[{{"kind":"User","name":"{owner}"}}]}}}}}}}}"#
        )
    };
    let mut lines = vec![
        user("alice", "alice@example.com"),
        user("bob", "bob@example.com"),
        user(
            "carol",
            if day >= 3 {
                "carol@example.org"
            } else {
                "carol@example.com"
            },
        ),
        order(
            "alice",
            1,
            match day {
                1 => "open",
                2 => "paid",
                _ => "shipped",
            },
            30,
        ),
        order("bob", 3, "open", 7),
    ];
    if day < 3 {
        lines.push(order("alice", 2, "open", 12));
    }
    if day >= 2 {
        lines.push(order("carol", 4, "paid", 99));
    }
    if day >= 3 {
        lines.push(order("bob", 5, "open", 5));
    }
    lines.join("\n") + "\n"
}

struct Env {
    home: PathBuf,
    bin: PathBuf,
    server: Option<DevServer>,
    _dir: tempfile::TempDir,
}

fn kindsnap() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kindsnap"))
}

fn ok(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Env {
    fn new(datastore: bool) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let server = datastore.then(|| {
            let server = DevServer::start(&[]);
            let samples = dir.path().join("samples");
            let ks = |args: &[&str]| {
                let mut c = Command::new(kindsnap());
                c.arg("--repo").arg(&samples).arg("-q").args(args);
                ok(&mut c);
            };
            ks(&["init"]);
            for day in 1..=3 {
                let file = dir.path().join(format!("day{day}.jsonl"));
                std::fs::write(&file, shop_day(day)).unwrap();
                let from = format!("jsonl:{}", file.display());
                ks(&["snapshot", "--from", &from, "--name", &format!("day{day}")]);
            }
            let prod = server.url("acme-prod");
            ks(&["restore", "day1", "--to", &prod]);
            let script = bin.join("ks-doc-day");
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\nexec '{}' --repo '{}' -q restore \"day$1\" --to '{prod}' --exact --yes\n",
                    kindsnap().display(),
                    samples.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            server
        });
        Env {
            home,
            bin,
            server,
            _dir: dir,
        }
    }

    fn run(&self, doc: &Path, pieces: &[Piece]) {
        let mut script = String::from("set -euo pipefail\n");
        for p in pieces {
            script.push_str(&format!(
                "echo '--- {}:{}' >&2\n{}",
                doc.display(),
                p.line,
                p.code
            ));
        }
        let path = format!(
            "{}:{}:{}",
            self.bin.display(),
            kindsnap().parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(&script)
            .current_dir(&self.home)
            .env("HOME", &self.home)
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env("KS_ROOT", env!("CARGO_MANIFEST_DIR"))
            .env_remove("KINDSNAP_REPO")
            .env_remove("KINDSNAP_NOW")
            .env_remove("DATASTORE_EMULATOR_HOST")
            .env_remove("DATASTORE_PROJECT_ID");
        if let Some(s) = &self.server {
            cmd.env("DATASTORE_EMULATOR_HOST", format!("127.0.0.1:{}", s.port))
                .env("DATASTORE_PROJECT_ID", "acme-prod");
        }
        let out = cmd.output().expect("bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the examples in {} fail; the last `---` line names the block\n--- stdout\n{}\n--- stderr\n{stderr}",
            doc.display(),
            String::from_utf8_lossy(&out.stdout),
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

fn docs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut d: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    d.sort();
    files.extend(d);
    files
}

fn run_doc(name: &str) {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name);
    let text = std::fs::read_to_string(&doc).unwrap();
    let ps = pieces(&text);
    assert!(!ps.is_empty(), "{name} has no tested examples");
    Env::new(text.contains("datastore:")).run(&doc, &ps);
}

#[test]
fn the_user_guide_runs() {
    run_doc("docs/guide.md");
}

#[test]
fn the_readme_tour_runs() {
    run_doc("README.md");
}

#[test]
fn the_retention_examples_run() {
    run_doc("docs/retention.md");
}

#[test]
fn the_ui_examples_run() {
    run_doc("docs/ui.md");
}

#[test]
fn every_document_with_tested_examples_has_a_test_here() {
    // A new document with `tested` blocks must be added to this file, so
    // that no example silently goes unrun.
    let covered = [
        "README.md",
        "docs/guide.md",
        "docs/retention.md",
        "docs/ui.md",
    ];
    for f in docs() {
        let text = std::fs::read_to_string(&f).unwrap();
        let rel = f
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap()
            .display()
            .to_string();
        if !pieces(&text).is_empty() {
            assert!(
                covered.contains(&rel.as_str()),
                "{rel} has tested examples but no test runs them"
            );
        }
    }
}

#[test]
fn the_runner_finds_blocks_and_comments() {
    let ps =
        pieces("a\n```sh tested\necho 1\n```\n```sh\nnot me\n```\n<!-- tested:\necho 2\n-->\n");
    assert_eq!(ps.len(), 2);
    assert_eq!((ps[0].line, ps[0].code.as_str()), (2, "echo 1\n"));
    assert_eq!((ps[1].line, ps[1].code.as_str()), (8, "echo 2\n"));
}

#[test]
fn the_demo_finds_the_binary_where_cargo_puts_it() {
    // scripts/demo.sh asks cargo for the target directory instead of
    // assuming ./target. A `cargo` shim skips the release build (too slow
    // for a test) and passes `cargo metadata` through; CARGO_TARGET_DIR
    // points at a directory whose release/kindsnap is the test binary.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::os::unix::fs::symlink(kindsnap(), target.join("release/kindsnap")).unwrap();
    let shims = dir.path().join("bin");
    std::fs::create_dir_all(&shims).unwrap();
    let real = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let shim = shims.join("cargo");
    std::fs::write(
        &shim,
        format!("#!/bin/sh\n[ \"$1\" = build ] && exit 0\nexec '{real}' \"$@\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh"))
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("KINDSNAP_REPO")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("no problems found"), "{stdout}");
}

#[test]
fn installs_are_stripped_and_profiling_keeps_symbols() {
    // README.md promises a small installed binary and docs/benchmarks.md a
    // `profiling` profile with line tables.
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap();
    let cargo: toml::Value = toml::from_str(&text).unwrap();
    let release = &cargo["profile"]["release"];
    assert_eq!(release["strip"].as_bool(), Some(true));
    assert_eq!(release["debug"].as_bool(), Some(false));
    let profiling = &cargo["profile"]["profiling"];
    assert_eq!(profiling["inherits"].as_str(), Some("release"));
    assert_eq!(profiling["debug"].as_integer(), Some(1));
    assert_eq!(profiling["strip"].as_str(), Some("none"));
}
