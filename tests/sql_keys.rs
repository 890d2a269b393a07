//! SQLite keys keep their storage class (key encoding 2, docs/format.md):
//! keys distinct in SQLite stay distinct through snapshot → restore →
//! snapshot, a key whose type changed shows in a diff, TEXT that is not
//! UTF-8 comes back byte for byte, and a snapshot taken by a build before
//! encoding 2 (tests/fixtures/sql-keys-v1) still restores as it did.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sql_support;

use std::path::Path;

use common::{count_changes, Work};
use sql_support::{sqlite, sqlite_one};

/// Untyped key columns hold every storage class: these are ten distinct
/// single keys and five distinct composite ones.
const SCHEMA: &str = r#"
CREATE TABLE k (id PRIMARY KEY, v TEXT) WITHOUT ROWID;
INSERT INTO k VALUES (x'00', 'blob'), ('x''00''', 'text'), (1.5, 'real'), ('1.5', 'text 1.5'),
  (7, 'integer'), ('7', 'text 7'), ('%R1.5', 'looks tagged'), (CAST(x'ff61' AS TEXT), 'not utf-8'),
  ('', 'empty'), (8, 'eight');
CREATE TABLE c (a, b, v, PRIMARY KEY (a, b));
INSERT INTO c VALUES ('x', 5, 'int'), ('x', '5', 'text'), ('x', 5.5, 'real'), ('x', x'05', 'blob'),
  ('x/y', '%', 'escaped');
CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO t VALUES (1, CAST(x'ff00fe41' AS TEXT)), (2, 'plain');
"#;

fn diff_json(w: &Work, a: &str, b: &str) -> serde_json::Value {
    serde_json::from_str(&w.ok(&["diff", a, b, "--json"])).unwrap()
}

fn export(w: &Work, snap: &str) -> String {
    let file = w.path(&format!("{snap}.jsonl"));
    w.ok(&["export", snap, "--to", &format!("jsonl:{}", file.display())]);
    std::fs::read_to_string(file).unwrap()
}

/// `(typeof, hex)` of every key of `table`'s column `col`, sorted.
fn classes(db: &Path, table: &str, col: &str) -> String {
    sqlite_one(
        db,
        &format!(
            "SELECT group_concat(x, ' ') FROM (SELECT typeof({col}) || ':' || hex({col}) AS x \
             FROM {table} ORDER BY x)"
        ),
    )
}

#[test]
fn sqlite_keys_keep_their_storage_class_through_a_round_trip() {
    let w = Work::new();
    w.init();
    let src = w.path("src.db");
    sqlite(&src, SCHEMA);
    let loc = |p: &Path| format!("sqlite:{}", p.display());
    // Before encoding 2 these keys collided and failed the snapshot.
    w.ok(&["snapshot", "--from", &loc(&src), "--name", "a"]);
    let a = export(&w, "a");
    for name in [
        r#""name":"%X00""#,
        r#""name":"x'00'""#,
        r#""name":"%R1.5""#,
        r#""name":"1.5""#,
        r#""id":"7""#,
        r#""name":"7""#,
        r#""name":"%T%R1.5""#,
        r#""name":"%Uff61""#,
        r#""name":"x/5""#,
        r#""name":"x/%T5""#,
        r#""name":"x/%R5.5""#,
        r#""name":"x/%X05""#,
        r#""name":"x%2Fy/%25""#,
    ] {
        assert!(a.contains(name), "{name} missing from {a}");
    }

    let dst = w.path("dst.db");
    w.ok(&["restore", "a", "--to", &loc(&dst)]);
    for (table, col) in [("k", "id"), ("c", "b"), ("c", "a"), ("t", "body")] {
        assert_eq!(
            classes(&dst, table, col),
            classes(&src, table, col),
            "{table}.{col}"
        );
    }
    w.ok(&["snapshot", "--from", &loc(&dst), "--name", "b"]);
    assert_eq!(export(&w, "b"), a);
    let d = w.ok(&["diff", "a", "b"]);
    assert!(d.contains("no differences"), "{d}");

    // --exact over the restored database deletes nothing of its own.
    w.ok(&["restore", "a", "--to", &loc(&dst), "--exact", "--yes"]);
    assert_eq!(sqlite_one(&dst, "SELECT count(*) FROM k"), "10");
    assert_eq!(sqlite_one(&dst, "SELECT count(*) FROM c"), "5");

    // A key whose type changed is another key: removed and added.
    sqlite(
        &src,
        "UPDATE k SET id = '8' WHERE id = 8; UPDATE t SET body = CAST(x'ff01' AS TEXT) WHERE id = 1",
    );
    w.ok(&["snapshot", "--from", &loc(&src), "--name", "c"]);
    let v = diff_json(&w, "a", "c");
    let count = |c: &str| count_changes(&v, c);
    assert_eq!(
        (count("added"), count("removed"), count("changed")),
        (1, 1, 1),
        "{v}"
    );
    let d = w.ok(&["diff", "a", "c", "--props"]);
    assert!(d.contains("k:8") && d.contains(r#"k:"8""#), "{d}");
    // The TEXT that is not UTF-8 shows readably.
    assert!(d.contains("(not UTF-8)"), "{d}");
}

#[test]
fn sqlite_text_that_is_not_utf8_comes_back_byte_for_byte() {
    let w = Work::new();
    w.init();
    let src = w.path("src.db");
    sqlite(&src, SCHEMA);
    w.ok(&["snapshot", "--from", &format!("sqlite:{}", src.display())]);
    let a = export(&w, "latest");
    assert!(
        a.contains(r#""body":{"blobValue":"/wD+QQ==","meaning":1009}"#),
        "{a}"
    );
    let dst = w.path("dst.db");
    w.ok(&[
        "restore",
        "latest",
        "--to",
        &format!("sqlite:{}", dst.display()),
    ]);
    assert_eq!(
        sqlite_one(
            &dst,
            "SELECT typeof(body) || ' ' || hex(body) FROM t WHERE id = 1"
        ),
        "text FF00FE41"
    );
}

#[test]
fn snapshots_from_before_typed_keys_restore_as_before_and_dedup() {
    let w = Work::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sql-keys-v1");
    common::copy_dir(&root.join("repo"), &w.repo());
    let _ = std::fs::remove_dir_all(w.repo().join("tmp"));
    let dst = w.path("dst.db");
    let to = format!("sqlite:{}", dst.display());
    w.ok(&["restore", "old", "--to", &to]);
    // Encoding 1 gave reals and blobs as text; that is what comes back.
    assert_eq!(
        classes(&dst, "code", "k"),
        "integer:37 text:255478 text:322E35 text:706C61696E text:78273031303227"
    );
    assert_eq!(sqlite_one(&dst, "SELECT count(*) FROM pair"), "3");
    // Read in its own encoding: --exact finds its keys and deletes none
    // (`%Tx` would read as the text `x` in encoding 2).
    w.ok(&["restore", "old", "--to", &to, "--exact", "--yes"]);
    assert_eq!(sqlite_one(&dst, "SELECT count(*) FROM code"), "5");

    // Today's snapshot of the same database: integer keys, their rows and
    // their tables' schema entities are the same entities as before.
    let app = w.path("app.db");
    std::fs::copy(root.join("app.db"), &app).unwrap();
    let s: serde_json::Value = serde_json::from_str(&w.ok(&[
        "snapshot",
        "--from",
        &format!("sqlite:{}", app.display()),
        "--name",
        "new",
        "--json",
    ]))
    .unwrap();
    let item = s["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "item")
        .unwrap();
    assert_eq!(item["bytes_added"], 0, "{s}");
    let v = diff_json(&w, "old", "new");
    let changed: Vec<String> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["change"], e["key"]))
        .collect();
    // Only the keys encoding 1 got wrong, and the schema entities that now
    // record encoding 2, differ.
    assert!(!changed.iter().any(|c| c.contains("item")), "{changed:?}");
    assert!(changed.iter().any(|c| c.contains("2.5")), "{changed:?}");
}

#[test]
fn a_sqlite_table_called_kindsnap_schema_is_an_ordinary_kind() {
    let w = Work::new();
    w.init();
    let src = w.path("src.db");
    sqlite(
        &src,
        r#"CREATE TABLE "kindsnap.schema" (id INTEGER PRIMARY KEY, what TEXT);
           CREATE TABLE "kindsnap.table.x" (k TEXT PRIMARY KEY);
           CREATE TABLE uses (id INTEGER PRIMARY KEY, s INTEGER REFERENCES "kindsnap.schema"(id));
           CREATE INDEX what ON "kindsnap.schema"(what);
           INSERT INTO "kindsnap.schema" VALUES (1, 'a user table'), (2, 'b');
           INSERT INTO "kindsnap.table.x" VALUES ('x');
           INSERT INTO uses VALUES (1, 2);"#,
    );
    let loc = |p: &Path| format!("sqlite:{}", p.display());
    w.ok(&["snapshot", "--from", &loc(&src), "--name", "a"]);
    let a = export(&w, "a");
    assert!(
        a.contains(r#"{"kind":"kindsnap.table.kindsnap.schema","id":"2"}"#),
        "{a}"
    );
    assert!(
        a.contains(r#""s":{"keyValue":{"partitionId":{"projectId":""},"path":[{"kind":"kindsnap.table.kindsnap.schema","id":"2"}]}}"#),
        "{a}"
    );
    let dst = w.path("dst.db");
    w.ok(&["restore", "a", "--to", &loc(&dst)]);
    assert_eq!(
        sqlite_one(&dst, r#"SELECT what FROM "kindsnap.schema" WHERE id = 1"#),
        "a user table"
    );
    assert_eq!(sqlite_one(&dst, r#"SELECT k FROM "kindsnap.table.x""#), "x");
    w.ok(&["snapshot", "--from", &loc(&dst), "--name", "b"]);
    assert_eq!(export(&w, "b"), a);
}
