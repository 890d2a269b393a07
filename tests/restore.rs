//! `kindsnap restore` into the JSON Lines target: keys kept or turned into
//! uuid names with references following, dry run, exact and clear, resume
//! after SIGKILL, references closure, transform, kindsnap.toml, bad input.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{bin, canonical_set, Data, Work};
use serde_json::{json, Value as J};

fn key(ns: &str, path: &[(&str, &str)]) -> J {
    let path: Vec<J> = path
        .iter()
        .map(|(kind, id)| match id.strip_prefix('#') {
            Some(n) => json!({"kind": kind, "id": n}),
            None => json!({"kind": kind, "name": id}),
        })
        .collect();
    let mut partition = json!({"projectId": "prod"});
    if !ns.is_empty() {
        partition["namespaceId"] = json!(ns);
    }
    json!({"partitionId": partition, "path": path})
}

fn kv(k: J) -> J {
    json!({ "keyValue": k })
}

/// A graph with numeric ids, ancestors, a reference cycle (Order ↔
/// Customer), references inside arrays and embedded entities, and one
/// reference to an entity that is not in the snapshot. Also an unrelated
/// kind (Log) no one references.
fn graph() -> Vec<J> {
    let mut out = Vec::new();
    for c in 1..=5 {
        let id = format!("#{c}");
        out.push(json!({"key": key("", &[("Customer", &id)]), "properties": {
            "name": {"stringValue": format!("customer {c}")},
            "lastOrder": kv(key("", &[("Customer", &id), ("Order", &format!("#{}", c * 10))])),
        }}));
        for o in [c * 10, c * 10 + 1] {
            let oid = format!("#{o}");
            out.push(
                json!({"key": key("", &[("Customer", &id), ("Order", &oid)]), "properties": {
                    "customer": kv(key("", &[("Customer", &id)])),
                    "items": {"arrayValue": {"values": [
                        kv(key("", &[("Product", "#7")])),
                        kv(key("", &[("Product", "widget")])),
                    ]}},
                    "shipping": {"entityValue": {"properties": {
                        "warehouse": kv(key("", &[("Warehouse", "#3")])),
                    }}},
                    "gone": kv(key("", &[("Product", "#999")])),
                }}),
            );
        }
    }
    out.push(
        json!({"key": key("", &[("Product", "#7")]), "properties": {"n": {"integerValue": "7"}}}),
    );
    out.push(json!({"key": key("", &[("Product", "widget")]), "properties": {"n": {"integerValue": "8"}}}));
    out.push(
        json!({"key": key("", &[("Warehouse", "#3")]), "properties": {
            "home": kv(key("", &[("Customer", "#1")])),
        }}),
    );
    for l in 1..=4 {
        out.push(json!({"key": key("t1", &[("Log", &format!("#{l}"))]), "properties": {"m": {"stringValue": "x"}}}));
    }
    out
}

fn write_lines(w: &Work, name: &str, lines: &[J]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    w.write(name, &text);
}

fn read_lines(w: &Work, name: &str) -> Vec<J> {
    std::fs::read_to_string(w.path(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn key_text(k: &J) -> String {
    let ns = k["partitionId"]["namespaceId"].as_str().unwrap_or("");
    let path: Vec<String> = k["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let id = e["id"]
                .as_str()
                .map(|i| format!("#{i}"))
                .or_else(|| e["name"].as_str().map(String::from))
                .unwrap();
            format!("{}:{id}", e["kind"].as_str().unwrap())
        })
        .collect();
    format!("{ns}|{}", path.join("/"))
}

fn collect_refs(v: &J, out: &mut Vec<J>) {
    match v {
        J::Object(m) => {
            if let Some(k) = m.get("keyValue") {
                out.push(k.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        J::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn kind_counts(lines: &[J]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        let path = l["key"]["path"].as_array().unwrap();
        let kind = path.last().unwrap()["kind"].as_str().unwrap().to_string();
        *m.entry(kind).or_default() += 1;
    }
    m
}

fn setup_graph() -> Work {
    let w = Work::new();
    w.init();
    write_lines(&w, "src.jsonl", &graph());
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "g"]);
    w
}

#[test]
fn keep_keys_round_trips_and_restoring_again_changes_nothing() {
    let w = setup_graph();
    let out = w.ok(&["restore", "g", "--to", "jsonl:out.jsonl"]);
    assert!(out.contains("restored g"), "{out}");
    assert_eq!(
        canonical_set(&w.path("out.jsonl")),
        canonical_set(&w.path("src.jsonl"))
    );
    let first = std::fs::read(w.path("out.jsonl")).unwrap();
    w.ok(&["restore", "g", "--to", "jsonl:out.jsonl", "--merge"]);
    assert_eq!(std::fs::read(w.path("out.jsonl")).unwrap(), first);
    // Nothing left behind: no staging file, no journal.
    let names: Vec<String> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("staging")), "{names:?}");
    let restores = w.repo().join("restores");
    let left: Vec<_> = std::fs::read_dir(&restores)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".db"))
        .collect();
    assert!(left.is_empty(), "journal left behind: {left:?}");
}

#[test]
fn uuid_keys_rewrite_every_reference_and_ancestor() {
    let w = setup_graph();
    let out = w.ok(&[
        "restore",
        "g",
        "--to",
        "jsonl:out.jsonl",
        "--keys",
        "uuid",
        "--json",
    ]);
    let report: J = serde_json::from_str(&out).unwrap();
    let src = read_lines(&w, "src.jsonl");
    let dst = read_lines(&w, "out.jsonl");
    assert_eq!(kind_counts(&src), kind_counts(&dst), "counts per kind");

    let restored: BTreeSet<String> = dst.iter().map(|l| key_text(&l["key"])).collect();
    for l in &dst {
        // No numeric id remains in any key.
        for e in l["key"]["path"].as_array().unwrap() {
            assert!(e.get("id").is_none(), "numeric id left in {}", l["key"]);
            let name = e["name"].as_str().unwrap();
            assert!(!name.is_empty());
        }
        // The ancestor of every Order is a restored Customer.
        let path = l["key"]["path"].as_array().unwrap();
        if path.len() == 2 {
            let parent = json!({"partitionId": l["key"]["partitionId"], "path": [path[0]]});
            assert!(
                restored.contains(&key_text(&parent)),
                "ancestor of {}",
                l["key"]
            );
        }
        // Every reference resolves, except the one to Product:999, which
        // was never in the snapshot and is left alone.
        let mut refs = Vec::new();
        collect_refs(&l["properties"], &mut refs);
        for r in refs {
            let t = key_text(&r);
            if t == "|Product:#999" {
                continue;
            }
            assert!(
                restored.contains(&t),
                "dangling reference {t} in {}",
                l["key"]
            );
        }
    }
    // The report counts the outside reference once per Order.
    let orders = report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "Order")
        .unwrap();
    assert_eq!(orders["references_outside"], 10);
    assert_eq!(orders["written"], 10);

    // Deterministic: a second restore gives the same file (no duplicates).
    let first = std::fs::read(w.path("out.jsonl")).unwrap();
    w.ok(&[
        "restore",
        "g",
        "--to",
        "jsonl:out.jsonl",
        "--keys",
        "uuid",
        "--merge",
    ]);
    assert_eq!(std::fs::read(w.path("out.jsonl")).unwrap(), first);

    // The key map answers both ways.
    let m = w.ok(&["keymap", "jsonl:out.jsonl", "Customer:3/Order:30"]);
    let (orig, new) = m.trim().split_once(" -> ").unwrap();
    assert_eq!(orig, "Customer:3/Order:30");
    let back = w.ok(&["keymap", "jsonl:out.jsonl", new]);
    assert_eq!(back.trim(), m.trim());
    let err = w.fails(&["keymap", "jsonl:out.jsonl", "Customer:12345"]);
    assert!(err.contains("not in the key map"), "{err}");
}

#[test]
fn dry_run_writes_nothing_and_exact_removes_extras() {
    let w = setup_graph();
    // The target has an extra Product and a changed Customer.
    let mut existing = graph();
    existing.push(json!({"key": key("", &[("Product", "#12")]), "properties": {}}));
    existing[0]["properties"]["name"] = json!({"stringValue": "changed"});
    write_lines(&w, "out.jsonl", &existing);
    let before = std::fs::read(w.path("out.jsonl")).unwrap();
    let repo_files = |w: &Work| -> BTreeSet<String> { walk(&w.repo()) };
    let files_before = repo_files(&w);

    let plan = w.ok(&[
        "restore",
        "g",
        "--to",
        "jsonl:out.jsonl",
        "--exact",
        "--dry-run",
        "--json",
    ]);
    let plan: J = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["dry_run"], true);
    let product = plan["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "Product")
        .unwrap();
    assert_eq!(product["deleted"], 1, "{plan}");
    assert_eq!(product["written"], 2);
    assert_eq!(
        std::fs::read(w.path("out.jsonl")).unwrap(),
        before,
        "dry run wrote"
    );
    assert_eq!(
        repo_files(&w),
        files_before,
        "dry run changed the repository"
    );
    assert_eq!(
        std::fs::read_dir(w.dir.path()).unwrap().count(),
        3,
        "dry run left files: repo, src.jsonl, out.jsonl only"
    );

    // Without --yes and without a terminal, --exact refuses.
    let err = w.fails(&["restore", "g", "--to", "jsonl:out.jsonl", "--exact"]);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(std::fs::read(w.path("out.jsonl")).unwrap(), before);

    w.ok(&[
        "restore",
        "g",
        "--to",
        "jsonl:out.jsonl",
        "--exact",
        "--yes",
    ]);
    assert_eq!(
        canonical_set(&w.path("out.jsonl")),
        canonical_set(&w.path("src.jsonl"))
    );

    // --clear on one kind: the target's extra of that kind goes, the rest stays.
    write_lines(&w, "out.jsonl", &existing);
    w.ok(&[
        "restore",
        "g",
        "--to",
        "jsonl:out.jsonl",
        "--clear",
        "--yes",
        "--kinds",
        "Product",
    ]);
    let got = canonical_set(&w.path("out.jsonl"));
    assert_eq!(got.len(), existing.len() - 1);
    assert!(!got.keys().any(|k| k.contains("\"12\"")));
    // The changed Customer was not restored (not a chosen kind).
    let text = std::fs::read_to_string(w.path("out.jsonl")).unwrap();
    assert!(text.contains("\"changed\""));
}

fn walk(dir: &std::path::Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.insert(p.display().to_string());
        }
    }
    out
}

#[test]
fn with_references_restores_the_closure_through_cycles() {
    let w = setup_graph();
    // Warehouse → Customer:1 → its Order:10 (lastOrder) → Products,
    // Warehouse (cycle), Customer:1 (cycle).
    w.ok(&[
        "restore",
        "g",
        "--to",
        "jsonl:out.jsonl",
        "--kinds",
        "Warehouse",
        "--with-references",
    ]);
    let got: BTreeSet<String> = read_lines(&w, "out.jsonl")
        .iter()
        .map(|l| key_text(&l["key"]))
        .collect();
    let want: BTreeSet<String> = [
        "|Warehouse:#3",
        "|Customer:#1",
        "|Customer:#1/Order:#10",
        "|Product:#7",
        "|Product:widget",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);

    // The closure is complete: every reference of a restored entity that
    // is in the snapshot was restored.
    let all: BTreeSet<String> = graph().iter().map(|l| key_text(&l["key"])).collect();
    for l in read_lines(&w, "out.jsonl") {
        let mut refs = Vec::new();
        collect_refs(&l["properties"], &mut refs);
        for r in refs {
            let t = key_text(&r);
            if all.contains(&t) {
                assert!(got.contains(&t), "{t} missing from the closure");
            }
        }
    }
}

#[test]
fn sigkill_then_resume_gives_the_uninterrupted_result() {
    let w = Work::new();
    w.init();
    let data = Data::generate(30_000, 5);
    data.write_shuffled(&w.path("src.jsonl"), 3);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "s"]);

    // uuid names derive from the target, so every run writes to t.jsonl.
    let target = "jsonl:t.jsonl";
    let t = Instant::now();
    w.ok(&["restore", "s", "--to", target, "--keys", "uuid"]);
    let full = t.elapsed();
    let want = std::fs::read(w.path("t.jsonl")).unwrap();

    let mut resumed = 0;
    let steps = 6;
    for i in 1..=steps {
        std::fs::remove_file(w.path("t.jsonl")).unwrap();
        let delay = full.mul_f64(i as f64 / (steps + 1) as f64);
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("kindsnap"))
            .current_dir(w.dir.path())
            .arg("--repo")
            .arg(w.repo())
            .env("KINDSNAP_CHECKPOINT_EVERY", "700")
            .args(["restore", "s", "--to", target, "--keys", "uuid"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let out = w.ok(&["restore", "s", "--to", target, "--keys", "uuid"]);
        if out.contains("resumed an interrupted restore") {
            resumed += 1;
        }
        let got = std::fs::read(w.path("t.jsonl")).unwrap();
        assert!(
            got == want,
            "restore killed at {delay:?} then resumed differs"
        );
    }
    assert!(resumed >= 2, "only {resumed} of {steps} runs resumed");
    // Same for the key map: every uuid name maps back.
    let m = w.ok(&["keymap", target, "Post:1"]);
    assert!(m.starts_with("Post:1 -> Post:"), "{m}");
}

#[test]
fn transform_filters_and_rewrites_entities() {
    let w = setup_graph();
    // Drop Log entities, scrub customer names.
    let script = w.write(
        "scrub.py",
        r#"import json, sys
for line in sys.stdin:
    e = json.loads(line)
    kind = e["key"]["path"][-1]["kind"]
    if kind == "Log":
        print("null")
        continue
    if "name" in e["properties"]:
        e["properties"]["name"] = {"stringValue": "redacted"}
    print(json.dumps(e))
"#,
    );
    let out = w.ok(&[
        "restore",
        "g",
        "--to",
        "jsonl:out.jsonl",
        "--transform",
        &format!("python3 {}", script.display()),
        "--json",
    ]);
    let report: J = serde_json::from_str(&out).unwrap();
    let log = report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "Log")
        .unwrap();
    assert_eq!(log["dropped"], 4);
    let lines = read_lines(&w, "out.jsonl");
    assert_eq!(lines.len(), graph().len() - 4);
    assert!(lines
        .iter()
        .filter(|l| l["key"]["path"][0]["kind"] == "Customer"
            && l["key"]["path"].as_array().unwrap().len() == 1)
        .all(|l| l["properties"]["name"]["stringValue"] == "redacted"));

    // A transform that crashes, prints garbage or changes a key: one line,
    // non-zero exit, the target untouched.
    let before = std::fs::read(w.path("out.jsonl")).unwrap();
    for (cmd, expect) in [
        ("exit 3", "exited with status 3"),
        ("echo nonsense; cat >/dev/null", "invalid JSON"),
        ("sed 's/\"Customer\"/\"Client\"/'", "changed the key"),
    ] {
        let err = w.fails(&[
            "restore",
            "g",
            "--to",
            "jsonl:out.jsonl",
            "--merge",
            "--transform",
            cmd,
        ]);
        assert!(err.contains(expect), "{cmd}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("Customer:1") || expect.contains("status"),
            "names the key: {err}"
        );
        assert_eq!(std::fs::read(w.path("out.jsonl")).unwrap(), before);
    }
}

#[test]
fn bad_input_is_one_clear_line() {
    let w = setup_graph();
    let err = w.fails(&["restore", "g", "--to", "jsonl:out.jsonl", "--kinds", "Nope"]);
    assert!(err.contains("kind `Nope` is not in snapshot `g`"), "{err}");
    assert!(err.contains("Customer"), "lists the kinds: {err}");
    let err = w.fails(&["restore", "nosuch", "--to", "jsonl:out.jsonl"]);
    assert!(err.contains("not found"), "{err}");
    let err = w.fails(&["restore", "g", "--to", "ftp://x"]);
    assert!(err.contains("invalid source or target"), "{err}");

    // kindsnap.toml: unknown settings and bad values are errors.
    w.write("kindsnap.toml", "[kinds.Order]\nbatch_sise = 3\n");
    let err = w.fails(&["restore", "g", "--to", "jsonl:out.jsonl"]);
    assert!(
        err.contains("kindsnap.toml") && err.contains("batch_sise"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");
    w.write("kindsnap.toml", "[kinds.Order]\nconcurrency = 0\n");
    let err = w.fails(&["restore", "g", "--to", "jsonl:out.jsonl"]);
    assert!(err.contains("at least 1"), "{err}");
    w.write(
        "kindsnap.toml",
        "target = 'jsonl:fromconfig.jsonl'\n[kinds.Order]\nbatch_size = 1\nconcurrency = 2\n",
    );
    w.ok(&["restore", "g"]);
    assert_eq!(
        canonical_set(&w.path("fromconfig.jsonl")),
        canonical_set(&w.path("src.jsonl"))
    );
}

#[test]
fn the_documented_transform_example_works() {
    let w = Work::new();
    w.init();
    let lines = vec![
        json!({"key": key("", &[("User", "#1")]), "properties": {
            "email": {"stringValue": "Contact: ada@lovelace.org"},
            "fullname": {"stringValue": "Ada"},
        }}),
        json!({"key": key("", &[("AuditLog", "#1")]), "properties": {}}),
        json!({"key": key("", &[("Post", "#1")]), "properties": {"title": {"stringValue": "no address here"}}}),
    ];
    write_lines(&w, "src.jsonl", &lines);
    w.ok(&["snapshot", "--from", "jsonl:src.jsonl", "--name", "s"]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/scrub-emails.py");
    w.ok(&[
        "restore",
        "s",
        "--to",
        "jsonl:out.jsonl",
        "--transform",
        &format!("python3 {}", script.display()),
    ]);
    let out = read_lines(&w, "out.jsonl");
    assert_eq!(out.len(), 2, "AuditLog left out");
    let user = out
        .iter()
        .find(|l| l["key"]["path"][0]["kind"] == "User")
        .unwrap();
    assert_eq!(
        user["properties"]["email"]["stringValue"],
        "Contact: user@example.com"
    );
    assert_eq!(user["properties"]["name"]["stringValue"], "Ada");
    assert!(user["properties"].get("fullname").is_none());
}

/// `kindsnap restore` through a pseudo-terminal (util-linux `script`), the
/// answer `answer` typed at any prompt. Returns the exit code and what the
/// terminal showed.
fn restore_on_a_terminal(w: &Work, args: &str, answer: &str) -> (Option<i32>, String) {
    let cmd = format!(
        "{} --repo {} restore {args}",
        bin().display(),
        w.repo().display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(w.dir.path())
        .env("KINDSNAP_CACHE_DIR", w.cache_dir())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    // Typed once the prompt is up (script passes it on as typed input).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(answer.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    )
}

/// A restore into kinds the target already holds entities of needs a
/// mode: without a terminal it is refused in one line naming the kinds and
/// the three choices, writing nothing and leaving no journal; a dry run
/// counts what is there; --merge goes ahead; on a terminal it asks. A
/// fresh target needs no flag.
#[test]
fn a_live_target_needs_a_mode() {
    let w = setup_graph();
    w.ok(&["restore", "g", "--to", "jsonl:out.jsonl"]);
    let first = std::fs::read(w.path("out.jsonl")).unwrap();
    let n = first.iter().filter(|b| **b == b'\n').count() as u64;

    let err = w.fails(&["restore", "g", "--to", "jsonl:out.jsonl"]);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for needle in [
        "already holds entities of",
        "--merge",
        "--exact",
        "--clear",
        "--dry-run",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(std::fs::read(w.path("out.jsonl")).unwrap(), first);
    let journals: Vec<_> = std::fs::read_dir(w.repo().join("restores"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
        .collect();
    assert!(journals.is_empty(), "a refused restore left a journal");

    let plan: J = serde_json::from_str(&w.ok(&[
        "restore",
        "g",
        "--to",
        "jsonl:out.jsonl",
        "--dry-run",
        "--json",
    ]))
    .unwrap();
    let existing: u64 = plan["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["existing"].as_u64().unwrap())
        .sum();
    assert_eq!(existing, n, "{plan}");
    let text = w.ok(&["restore", "g", "--to", "jsonl:out.jsonl", "--dry-run"]);
    assert!(
        text.contains(&format!("the target holds {n} entities")),
        "{text}"
    );

    let merged = w.ok(&["restore", "g", "--to", "jsonl:out.jsonl", "--merge"]);
    assert!(merged.contains("restored g"), "{merged}");
    assert_eq!(std::fs::read(w.path("out.jsonl")).unwrap(), first);

    // On a terminal: asked; "c" clears and restores, anything else cancels.
    let (code, shown) = restore_on_a_terminal(&w, "g --to jsonl:out.jsonl", "no\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("Restore how?") && shown.contains("cancelled"),
        "{shown}"
    );
    assert_eq!(std::fs::read(w.path("out.jsonl")).unwrap(), first);
    let (code, shown) = restore_on_a_terminal(&w, "g --to jsonl:out.jsonl", "c\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("restored g"), "{shown}");
    assert_eq!(
        canonical_set(&w.path("out.jsonl")),
        canonical_set(&w.path("src.jsonl"))
    );
}
