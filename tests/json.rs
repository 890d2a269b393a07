//! The `--json` outputs are a documented wire format (docs/json.md). Each
//! is parsed here into structs that refuse unknown fields and require every
//! documented one, so a field added, renamed or dropped fails this test
//! until docs/json.md and these structs say so too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Work;
use serde::Deserialize;

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> T {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"))
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogEntry {
    id: String,
    name: String,
    time: String,
    source: String,
    parent: Option<String>,
    entities: u64,
    bytes_added: u64,
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotKind {
    namespace: String,
    kind: String,
    entities: u64,
    added: u64,
    changed: u64,
    removed: u64,
    raw_bytes: u64,
    bytes_added: u64,
    /// `null` for sources that do not bill reads (all but Datastore; the
    /// Datastore shape is checked in tests/datastore.rs).
    reads: Option<ReadCost>,
    /// Only when changed reads were asked for (Datastore; checked in
    /// tests/datastore.rs).
    read: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ReadCost {
    entity_reads: u64,
    small_ops: u64,
    lookups: u64,
    estimated_usd: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotSummary {
    id: String,
    name: String,
    parent: Option<String>,
    source: String,
    keyframe: bool,
    entities: u64,
    bytes_added: u64,
    manifest_bytes: u64,
    kinds: Vec<SnapshotKind>,
    skipped_kinds: Vec<String>,
    reads: Option<ReadCost>,
    existed: bool,
    from_cache: u64,
    tags: Vec<String>,
    /// The moment the source was read (Datastore); `null` for the others.
    read_time: Option<String>,
    consistent: Option<bool>,
    notes: Vec<String>,
    /// What the source could not record (PostgreSQL), one line each.
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowKind {
    namespace: String,
    kind: String,
    entities: u64,
    raw_bytes: u64,
    stored_bytes: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Show {
    id: String,
    name: String,
    time: String,
    source: String,
    parent: Option<String>,
    keyframe: bool,
    entities: u64,
    tags: Vec<String>,
    kinds: Vec<ShowKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapRef {
    id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffKind {
    namespace: String,
    kind: String,
    entities: u64,
    added: u64,
    removed: u64,
    changed: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffProperty {
    name: String,
    old: Option<serde_json::Value>,
    new: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffEntry {
    namespace: String,
    kind: String,
    key: String,
    change: String,
    old: Option<String>,
    new: Option<String>,
    properties: Vec<DiffProperty>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Diff {
    from: SnapRef,
    to: SnapRef,
    kinds: Vec<DiffKind>,
    entries: Vec<DiffEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Problem {
    problem: String,
    affects: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    snapshots: u64,
    packs: u64,
    entities_read: u64,
    bytes_read: u64,
    problems: Vec<Problem>,
    notes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreKind {
    namespace: String,
    kind: String,
    written: u64,
    deleted: u64,
    rejected: u64,
    dropped: u64,
    ids_reserved: u64,
    references_rewritten: u64,
    references_outside: u64,
    /// Only in a dry run given no write mode.
    existing: Option<u64>,
}

// Filled only by targets that refuse entities (tests/datastore.rs); the
// shape is pinned here all the same.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rejection {
    key: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Restore {
    snapshot: String,
    target: String,
    dry_run: bool,
    keys: String,
    mode: String,
    reserve_method: String,
    resumed: Option<String>,
    kinds: Vec<RestoreKind>,
    rejections: Vec<Rejection>,
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Setting {
    setting: String,
    value: String,
    from: String,
}

#[test]
fn every_json_output_parses_strictly_and_holds_the_right_numbers() {
    let w = Work::new();
    w.init();
    w.write(
        "a.jsonl",
        concat!(
            r#"{"key":{"path":[{"kind":"User","name":"alice"}]},"properties":{"email":{"stringValue":"a@example.com"}}}"#,
            "\n",
            r#"{"key":{"path":[{"kind":"Post","id":"1"}]},"properties":{"title":{"stringValue":"one"},"by":{"keyValue":{"path":[{"kind":"User","name":"alice"}]}}}}"#,
            "\n",
            r#"{"key":{"path":[{"kind":"Post","id":"2"}]},"properties":{"title":{"stringValue":"two"}}}"#,
            "\n",
        ),
    );
    let s1: SnapshotSummary = parse(
        &w.ok(&[
            "snapshot",
            "--from",
            "jsonl:a.jsonl",
            "--name",
            "d1",
            "--json",
        ]),
        "snapshot",
    );
    assert!(is_hex_id(&s1.id) && s1.parent.is_none() && s1.name == "d1");
    assert!(s1.keyframe && s1.source.starts_with("jsonl:") && s1.skipped_kinds.is_empty());
    assert!(s1.warnings.is_empty(), "{:?}", s1.warnings);
    assert_eq!(s1.entities, 3);
    assert!(s1.bytes_added >= s1.manifest_bytes && s1.manifest_bytes > 0);
    let post = s1.kinds.iter().find(|k| k.kind == "Post").expect("Post");
    assert_eq!(
        (post.entities, post.added, post.changed, post.removed),
        (2, 2, 0, 0)
    );
    assert!(post.namespace.is_empty() && post.raw_bytes > 0 && post.bytes_added > 0);

    w.write(
        "a.jsonl",
        concat!(
            r#"{"key":{"path":[{"kind":"User","name":"alice"}]},"properties":{"email":{"stringValue":"a@example.com"}}}"#,
            "\n",
            r#"{"key":{"path":[{"kind":"Post","id":"1"}]},"properties":{"title":{"stringValue":"ONE"},"by":{"keyValue":{"path":[{"kind":"User","name":"alice"}]}}}}"#,
            "\n",
            r#"{"key":{"path":[{"kind":"Post","id":"3"}]},"properties":{"title":{"stringValue":"three"}}}"#,
            "\n",
        ),
    );
    let s2: SnapshotSummary = parse(
        &w.ok(&[
            "snapshot",
            "--from",
            "jsonl:a.jsonl",
            "--name",
            "d2",
            "--json",
        ]),
        "snapshot",
    );
    assert_eq!(s2.parent.as_deref(), Some(s1.id.as_str()));
    let post = s2.kinds.iter().find(|k| k.kind == "Post").expect("Post");
    assert_eq!((post.added, post.changed, post.removed), (1, 1, 1));
    assert!(!s1.existed && !s2.existed);
    assert_eq!(s1.from_cache, 0, "a first snapshot has no cache to use");
    assert!(s1.tags.is_empty() && s2.tags.is_empty());
    // A JSON Lines source bills no reads.
    assert!(s1.reads.is_none() && s1.kinds.iter().all(|k| k.reads.is_none()));
    // How the source was read: Datastore only (checked in tests/datastore.rs).
    assert!(s1.read_time.is_none() && s1.consistent.is_none() && s1.notes.is_empty());
    assert!(s1.kinds.iter().all(|k| k.read.is_none()));
    // A rerun of the same job finds its snapshot there already.
    let again: SnapshotSummary = parse(
        &w.ok(&[
            "snapshot",
            "--from",
            "jsonl:a.jsonl",
            "--name",
            "d2",
            "--json",
        ]),
        "snapshot",
    );
    assert!(again.existed && again.id == s2.id && again.manifest_bytes == 0);

    let log: Vec<LogEntry> = parse(&w.ok(&["log", "--json"]), "log");
    assert_eq!(
        log.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["d2", "d1"]
    );
    assert_eq!(log[0].parent.as_deref(), Some(log[1].id.as_str()));
    assert!(log.iter().all(|l| is_hex_id(&l.id)
        && l.time.ends_with('Z')
        && l.source == s1.source
        && l.entities == 3
        && l.bytes_added > 0
        && l.tags.is_empty()));

    let show: Show = parse(&w.ok(&["show", "d2", "--json"]), "show");
    assert_eq!(
        (show.id.as_str(), show.name.as_str()),
        (s2.id.as_str(), "d2")
    );
    assert_eq!(show.time, log[0].time);
    assert_eq!(show.source, s1.source);
    assert_eq!(show.parent, s2.parent);
    assert!(!show.keyframe);
    assert_eq!(show.entities, 3);
    assert!(show.tags.is_empty());
    assert_eq!(
        show.kinds
            .iter()
            .map(|k| (k.namespace.as_str(), k.kind.as_str(), k.entities))
            .collect::<Vec<_>>(),
        [("", "Post", 2), ("", "User", 1)]
    );
    assert!(show
        .kinds
        .iter()
        .all(|k| k.raw_bytes > 0 && k.stored_bytes > 0));

    let diff: Diff = parse(&w.ok(&["diff", "d1", "d2", "--props", "--json"]), "diff");
    assert_eq!(
        (diff.from.name.as_str(), diff.to.id.as_str()),
        ("d1", s2.id.as_str())
    );
    assert!(is_hex_id(&diff.from.id));
    assert_eq!(diff.kinds.len(), 1);
    let k = &diff.kinds[0];
    assert_eq!(
        (
            k.namespace.as_str(),
            k.kind.as_str(),
            k.entities,
            k.added,
            k.removed,
            k.changed
        ),
        ("", "Post", 2, 1, 1, 1)
    );
    let by_key = |key: &str| diff.entries.iter().find(|e| e.key == key).expect(key);
    let changed = by_key("Post:1");
    assert_eq!(
        (changed.change.as_str(), changed.kind.as_str()),
        ("changed", "Post")
    );
    assert!(changed.namespace.is_empty());
    assert!(changed.old.as_deref().is_some_and(is_hex_id));
    assert!(changed.new.as_deref().is_some_and(is_hex_id));
    assert_eq!(changed.properties.len(), 1);
    let p = &changed.properties[0];
    assert_eq!(p.name, "title");
    assert_eq!(p.old, Some(serde_json::json!({"stringValue": "one"})));
    assert_eq!(p.new, Some(serde_json::json!({"stringValue": "ONE"})));
    let removed = by_key("Post:2");
    assert_eq!(removed.change, "removed");
    assert!(removed.new.is_none() && removed.properties.is_empty());
    assert_eq!(by_key("Post:3").change, "added");
    assert_eq!(diff.entries.len(), 3);

    let check: Check = parse(&w.ok(&["check", "--read-data", "--json"]), "check");
    assert_eq!(check.snapshots, 2);
    assert!(check.packs >= 1 && check.problems.is_empty() && check.notes.is_empty());
    assert_eq!(
        check.entities_read, 5,
        "3 bodies stored by d1, 2 more by d2"
    );
    assert!(check.bytes_read > 0);

    let dry: Restore = parse(
        &w.ok(&[
            "restore",
            "d2",
            "--to",
            "jsonl:out.jsonl",
            "--dry-run",
            "--json",
        ]),
        "restore --dry-run",
    );
    assert!(dry.dry_run);
    assert!(!w.path("out.jsonl").exists());
    // No mode given: the plan counts what the (fresh) target holds.
    assert!(dry.kinds.iter().all(|k| k.existing == Some(0)));
    let restore: Restore = parse(
        &w.ok(&[
            "restore",
            "d2",
            "--to",
            "jsonl:out.jsonl",
            "--keys",
            "uuid",
            "--yes",
            "--json",
        ]),
        "restore",
    );
    assert_eq!(
        (
            restore.snapshot.as_str(),
            restore.keys.as_str(),
            restore.mode.as_str()
        ),
        ("d2", "uuid", "upsert")
    );
    assert!(restore.target.starts_with("jsonl:") && restore.target.ends_with("out.jsonl"));
    assert!(!restore.dry_run && restore.resumed.is_none() && restore.rejections.is_empty());
    assert!(restore.kinds.iter().all(|k| k.existing.is_none()));
    assert!(restore.warnings.is_empty(), "{:?}", restore.warnings);
    assert_eq!(
        restore.reserve_method,
        "none needed (a file hands out no ids)"
    );
    let post = restore
        .kinds
        .iter()
        .find(|k| k.kind == "Post")
        .expect("Post");
    assert_eq!(
        (
            post.written,
            post.deleted,
            post.rejected,
            post.dropped,
            post.ids_reserved
        ),
        (2, 0, 0, 0, 0)
    );
    assert_eq!((post.references_rewritten, post.references_outside), (0, 0));
    assert!(post.namespace.is_empty());

    // Damage: flip a byte in the middle of every pack.
    let mut packs = Vec::new();
    let mut stack = vec![w.repo().join("packs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                packs.push(p);
            }
        }
    }
    assert!(!packs.is_empty());
    for p in &packs {
        let mut b = std::fs::read(p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        std::fs::write(p, b).unwrap();
    }
    let out = w.run(&["check", "--read-data", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let damaged: Check = parse(&String::from_utf8_lossy(&out.stdout), "check (damaged)");
    assert!(!damaged.problems.is_empty());
    assert!(damaged.problems.iter().all(|p| p.problem.contains("pack")));
    assert!(damaged
        .problems
        .iter()
        .any(|p| p.affects.iter().any(|a| a.contains("snapshot d2"))));

    let config: Vec<Setting> = parse(&w.ok(&["config", "--json"]), "config");
    let repo = config.iter().find(|s| s.setting == "repo").expect("repo");
    assert_eq!(repo.from, "--repo");
    assert_eq!(repo.value, w.repo().display().to_string());
}

#[test]
fn entities_a_transform_drops_are_counted_in_restore_json() {
    // (Rejections need a target that refuses entities: tests/datastore.rs.)
    let w = Work::new();
    w.init();
    w.write(
        "a.jsonl",
        concat!(
            r#"{"key":{"path":[{"kind":"Post","id":"1"}]},"properties":{"drop":{"booleanValue":true}}}"#,
            "\n",
            r#"{"key":{"path":[{"kind":"Post","id":"2"}]},"properties":{"drop":{"booleanValue":false}}}"#,
            "\n",
        ),
    );
    w.ok(&["snapshot", "--from", "jsonl:a.jsonl"]);
    w.write(
        "t.py",
        "import sys, json\nfor l in sys.stdin:\n    e = json.loads(l)\n    print('null' if e['properties']['drop']['booleanValue'] else json.dumps(e), flush=True)\n",
    );
    let r: Restore = parse(
        &w.ok(&[
            "restore",
            "latest",
            "--to",
            "jsonl:out.jsonl",
            "--transform",
            "python3 t.py",
            "--json",
        ]),
        "restore",
    );
    assert_eq!((r.kinds[0].written, r.kinds[0].dropped), (1, 1));
    assert!(r.rejections.is_empty());
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Growth {
    id: String,
    name: String,
    time: String,
    source: String,
    entities: u64,
    raw_bytes: u64,
    pack_bytes_added: u64,
    manifest_bytes: u64,
    bytes_added: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsKind {
    namespace: String,
    kind: String,
    packs: u64,
    pack_bytes: u64,
    raw_bytes: u64,
    bytes_added: u64,
    latest_entities: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Stats {
    snapshots: u64,
    packs: u64,
    pack_bytes: u64,
    index_bytes: u64,
    manifests: u64,
    manifest_bytes: u64,
    total_bytes: u64,
    raw_bytes: u64,
    stored_raw_bytes: u64,
    dedup_ratio: f64,
    overall_ratio: f64,
    growth: Vec<Growth>,
    kinds: Vec<StatsKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapStatsKind {
    namespace: String,
    kind: String,
    entities: u64,
    raw_bytes: u64,
    stored_bytes_estimate: u64,
    added: u64,
    changed: u64,
    removed: u64,
    bytes_added: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapStats {
    id: String,
    name: String,
    time: String,
    source: String,
    parent: Option<String>,
    keyframe: bool,
    depth: u32,
    entities: u64,
    raw_bytes: u64,
    stored_bytes_estimate: u64,
    pack_bytes_added: u64,
    manifest_bytes: u64,
    kinds: Vec<SnapStatsKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    id: String,
    name: String,
    time: String,
    keep: bool,
    reasons: Vec<String>,
    #[serde(default)]
    new_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgetGroup {
    source: String,
    kinds_filter: String,
    snapshots: Vec<Decision>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Forget {
    dry_run: bool,
    groups: Vec<ForgetGroup>,
    kept: u64,
    removed: u64,
    rewritten: u64,
    leftovers_removed: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Prune {
    dry_run: bool,
    snapshots: u64,
    live_entities: u64,
    packs_before: u64,
    packs_deleted: u64,
    packs_repacked: u64,
    packs_written: u64,
    unindexed_deleted: u64,
    entities_moved: u64,
    leftover_manifests_removed: u64,
    bytes_before: u64,
    bytes_after: u64,
    bytes_freed: u64,
    unused_bytes_kept: u64,
}

#[test]
fn stats_forget_and_prune_json_parse_strictly() {
    let w = Work::new();
    w.init();
    let line = |id: u32, v: &str| {
        format!(
            "{{\"key\":{{\"path\":[{{\"kind\":\"Post\",\"id\":\"{id}\"}}]}},\"properties\":{{\"v\":{{\"stringValue\":\"{v}\"}}}}}}\n"
        )
    };
    for (day, v) in [
        ("2026-11-01", "a"),
        ("2026-11-02", "b"),
        ("2026-11-03", "c"),
    ] {
        w.write("p.jsonl", &(line(1, v) + &line(2, "same")));
        let out = w
            .ks()
            .args(["snapshot", "--from", "jsonl:p.jsonl", "--name", day])
            .env("KINDSNAP_NOW", format!("{day}T00:00:00Z"))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let stats: Stats = parse(&w.ok(&["stats", "--json"]), "stats");
    assert_eq!((stats.snapshots, stats.manifests), (3, 3));
    assert_eq!(
        stats.total_bytes,
        stats.pack_bytes + stats.index_bytes + stats.manifest_bytes
    );
    assert!(stats.packs >= 1 && stats.raw_bytes > stats.stored_raw_bytes);
    assert!(stats.dedup_ratio > 0.0 && stats.overall_ratio > 0.0);
    assert_eq!(
        stats
            .growth
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        ["2026-11-01", "2026-11-02", "2026-11-03"]
    );
    assert!(stats.growth.iter().all(|g| is_hex_id(&g.id)
        && g.time.ends_with('Z')
        && g.source.starts_with("jsonl:")
        && g.entities == 2
        && g.raw_bytes > 0
        && g.bytes_added == g.pack_bytes_added + g.manifest_bytes));
    let k = &stats.kinds[0];
    assert_eq!(
        (k.namespace.as_str(), k.kind.as_str(), k.latest_entities),
        ("", "Post", 2)
    );
    assert!(k.packs >= 1 && k.pack_bytes > 0 && k.raw_bytes > 0 && k.bytes_added > 0);

    let snap: SnapStats = parse(&w.ok(&["stats", "latest", "--json"]), "stats SNAP");
    assert_eq!((snap.name.as_str(), snap.entities), ("2026-11-03", 2));
    assert!(is_hex_id(&snap.id) && snap.parent.is_some() && !snap.keyframe && snap.depth >= 1);
    assert!(snap.time.ends_with('Z') && snap.source.starts_with("jsonl:"));
    assert!(snap.raw_bytes > 0 && snap.stored_bytes_estimate > 0 && snap.manifest_bytes > 0);
    assert!(snap.pack_bytes_added > 0);
    let sk = &snap.kinds[0];
    assert_eq!(
        (
            sk.namespace.as_str(),
            sk.kind.as_str(),
            sk.entities,
            sk.added,
            sk.changed,
            sk.removed
        ),
        ("", "Post", 2, 0, 1, 0)
    );
    assert!(sk.raw_bytes > 0 && sk.stored_bytes_estimate > 0 && sk.bytes_added > 0);

    let forget: Forget = parse(
        &w.ok(&[
            "forget",
            "--keep-last",
            "1",
            "--keep-name",
            "2026-11-01",
            "--json",
        ]),
        "forget",
    );
    assert!(!forget.dry_run);
    assert_eq!(
        (forget.kept, forget.removed, forget.leftovers_removed),
        (2, 1, 0)
    );
    assert_eq!(forget.rewritten, 1, "11-03 built on the forgotten 11-02");
    let g = &forget.groups[0];
    assert!(g.source.starts_with("jsonl:") && g.kinds_filter.is_empty());
    let by = |n: &str| g.snapshots.iter().find(|d| d.name == n).unwrap();
    assert!(by("2026-11-03").keep && by("2026-11-03").reasons == ["last"]);
    assert!(by("2026-11-03").new_id.as_deref().is_some_and(is_hex_id));
    assert!(by("2026-11-01").keep && by("2026-11-01").reasons[0].starts_with("name"));
    let gone = by("2026-11-02");
    assert!(!gone.keep && gone.reasons.is_empty() && gone.new_id.is_none());
    assert!(is_hex_id(&gone.id) && gone.time.starts_with("2026-11-02"));

    let prune: Prune = parse(&w.ok(&["prune", "--max-unused", "0", "--json"]), "prune");
    assert!(!prune.dry_run);
    assert_eq!((prune.snapshots, prune.live_entities), (2, 3));
    assert!(prune.packs_before >= 1);
    assert_eq!(prune.bytes_freed, prune.bytes_before - prune.bytes_after);
    assert!(
        prune.packs_deleted + prune.packs_repacked >= 1,
        "the 11-02 body goes"
    );
    assert_eq!(prune.unused_bytes_kept, 0);
    let _ = (
        prune.packs_written,
        prune.unindexed_deleted,
        prune.entities_moved,
        prune.leftover_manifests_removed,
    );
}
