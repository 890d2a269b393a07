//! SQLite and PostgreSQL as sources and targets, through the real binary:
//! every column type round-trips with identical hashes (snapshot → restore
//! into an empty database → snapshot exports the same entities), foreign
//! keys with a cycle, sequences after a restore, diffs after changes,
//! --exact, --keys uuid, bad input, and a 1,000,000-row table snapshotted
//! with flat memory. PostgreSQL tests run a private server (see
//! tests/sql_support) on Debian's binaries (scripts/postgres.sh).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sql_support;

use std::path::Path;
use std::time::Duration;

use common::{count_changes, Work};
use rusqlite::Connection;
use sql_support::{sqlite, sqlite_one};

/// Every storage class and the declared types apps use, a composite key,
/// a text key, a table without a primary key, a self reference and a
/// foreign-key cycle (author.best_book → book, book.author_id → author).
const SQLITE_SCHEMA: &str = r#"
CREATE TABLE author (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
  best_book INTEGER REFERENCES book(id) DEFERRABLE INITIALLY DEFERRED,
  active bool, score REAL, price decimal(10, 2), avatar BLOB,
  joined datetime, born date, meta text CHECK (meta IS NULL OR json_valid(meta)),
  big bigint, anything);
CREATE TABLE book (id INTEGER PRIMARY KEY, title TEXT, author_id INTEGER REFERENCES author(id),
  parent_id INTEGER REFERENCES book(id));
CREATE INDEX book_title ON book(title);
CREATE TABLE tag (slug TEXT PRIMARY KEY, label TEXT UNIQUE);
CREATE TABLE book_tag (book_id INTEGER REFERENCES book(id), tag TEXT REFERENCES tag(slug),
  PRIMARY KEY (book_id, tag)) WITHOUT ROWID;
CREATE TABLE log (msg TEXT);
CREATE TRIGGER log_upper AFTER INSERT ON log BEGIN SELECT 1; END;
"#;

const SQLITE_DATA: &str = r#"
INSERT INTO author VALUES (1, 'Ann', NULL, 1, 1.5, '12.50', x'00ff10', '2024-01-01 10:00:00.123456',
  '2024-02-29', '{"a": [1, 2]}', 9223372036854775807, 'text in an untyped column');
INSERT INTO author VALUES (2, 'Bob', NULL, 0, -0.0, 3, x'', NULL, NULL, NULL, -9223372036854775808, 4.25);
INSERT INTO author VALUES (3, 'Zoë 𝄞', NULL, 2, 1e300, 'abc', NULL, 'not a date', NULL, NULL, 0, x'01');
INSERT INTO book VALUES (10, 'B1', 1, NULL), (11, 'B2', 2, 10), (12, NULL, 1, 11);
UPDATE author SET best_book = 12 WHERE id = 1;
INSERT INTO tag VALUES ('sci/fi', 'Sci-fi'), ('x%y', 'odd'), ('', 'empty');
INSERT INTO book_tag VALUES (10, 'sci/fi'), (11, 'x%y'), (11, 'sci/fi');
INSERT INTO log VALUES ('hello'), ('world'), (NULL);
"#;

fn export(w: &Work, snap: &str, file: &str) -> String {
    w.ok(&["export", snap, "--to", &format!("jsonl:{file}")]);
    std::fs::read_to_string(w.path(file)).unwrap()
}

#[test]
fn sqlite_round_trip_every_type_with_identical_hashes() {
    let w = Work::new();
    w.init();
    let src = w.path("src.sqlite3");
    sqlite(&src, SQLITE_SCHEMA);
    sqlite(&src, SQLITE_DATA);
    // A bare *.sqlite3 path is a SQLite location too.
    w.ok(&["snapshot", "--from", src.to_str().unwrap(), "--name", "a"]);
    let dst = w.path("restored.db");
    // Trusted: the trigger is recreated as recorded.
    let out = w.ok(&[
        "restore",
        "a",
        "--to",
        &format!("sqlite:{}", dst.display()),
        "--trust-schema",
    ]);
    assert!(out.contains("restored a into"), "{out}");
    w.ok(&[
        "snapshot",
        "--from",
        &format!("sqlite:{}", dst.display()),
        "--name",
        "b",
    ]);
    let a = export(&w, "a", "a.jsonl");
    let b = export(&w, "b", "b.jsonl");
    assert_eq!(a, b, "the restored database snapshots to other entities");
    assert!(
        a.contains(r#""kind":"kindsnap.schema","name":"book_tag""#),
        "{a}"
    );
    // Key-valued foreign keys, booleans, composite and rowid keys.
    assert!(a.contains(r#""best_book":{"keyValue":{"partitionId":{"projectId":""},"path":[{"kind":"book","id":"12"}]}}"#), "{a}");
    assert!(a.contains(r#""active":{"booleanValue":true}"#));
    assert!(a.contains(r#""name":"11/sci%2Ffi""#), "{a}");
    assert!(a.contains(r#"{"kind":"log","id":"3"}"#));
    // Storage classes survive: text stays text, blobs stay blobs.
    for (sql, want) in [
        ("SELECT typeof(price) FROM author WHERE id = 1", "real"),
        ("SELECT typeof(price) FROM author WHERE id = 3", "text"),
        ("SELECT typeof(anything) FROM author WHERE id = 2", "real"),
        ("SELECT typeof(anything) FROM author WHERE id = 3", "blob"),
        ("SELECT hex(avatar) FROM author WHERE id = 1", "00FF10"),
        ("SELECT active FROM author WHERE id = 3", "2"),
        (
            "SELECT big FROM author WHERE id = 2",
            "-9223372036854775808",
        ),
        (
            "SELECT count(*) FROM sqlite_master WHERE name IN ('book_title', 'log_upper')",
            "2",
        ),
    ] {
        assert_eq!(sqlite_one(&dst, sql), want, "{sql}");
    }
    // The automatic ids continue past the restored ones.
    sqlite(&dst, "PRAGMA foreign_keys = ON; INSERT INTO author (name) VALUES ('new'); INSERT INTO book (title) VALUES ('nb')");
    assert_eq!(sqlite_one(&dst, "SELECT max(id) FROM author"), "4");
    assert_eq!(sqlite_one(&dst, "SELECT max(id) FROM book"), "13");
    assert_eq!(
        sqlite_one(
            &dst,
            "SELECT seq FROM sqlite_sequence WHERE name = 'author'"
        ),
        "4"
    );
    assert_eq!(
        sqlite_one(&dst, "SELECT count(*) FROM pragma_foreign_key_check"),
        "0"
    );
}

#[test]
fn sqlite_diff_shows_exactly_the_changed_rows() {
    let w = Work::new();
    w.init();
    let src = w.path("app.db");
    sqlite(&src, SQLITE_SCHEMA);
    sqlite(&src, SQLITE_DATA);
    let from = format!("sqlite:{}", src.display());
    w.ok(&["snapshot", "--from", &from, "--name", "day1"]);
    sqlite(
        &src,
        "UPDATE author SET name = 'Annie' WHERE id = 1; INSERT INTO book VALUES (13, 'B4', 2, NULL);
         DELETE FROM book_tag WHERE book_id = 11 AND tag = 'x%y'; DELETE FROM log WHERE rowid = 2;",
    );
    w.ok(&["snapshot", "--from", &from, "--name", "day2"]);
    let d: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "day1", "day2", "--json"])).unwrap();
    let keys: Vec<(String, String)> = d["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["change"].as_str().unwrap().to_string(),
                e["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("changed".to_string(), "author:1".to_string()),
            ("added".into(), "book:13".into()),
            ("removed".into(), "book_tag:\"11/x%25y\"".into()),
            ("removed".into(), "log:2".into()),
        ],
        "{d:#}"
    );
    assert_eq!(count_changes(&d, "changed"), 1);
}

#[test]
fn sqlite_restore_into_existing_exact_and_uuid() {
    let w = Work::new();
    w.init();
    let src = w.path("app.db");
    sqlite(&src, SQLITE_SCHEMA);
    sqlite(&src, SQLITE_DATA);
    w.ok(&[
        "snapshot",
        "--from",
        &format!("sqlite:{}", src.display()),
        "--name",
        "s",
    ]);

    // Into an existing copy with extra and changed rows: --exact puts it
    // back exactly.
    let dst = w.path("dst.db");
    let dst_loc = format!("sqlite:{}", dst.display());
    // Trusted, so the trigger comes back and the schema matches exactly.
    w.ok(&["restore", "s", "--to", &dst_loc, "--trust-schema"]);
    sqlite(
        &dst,
        "INSERT INTO log VALUES ('extra'); UPDATE tag SET label = 'changed' WHERE slug = 'x%y';
         INSERT INTO book_tag VALUES (12, 'sci/fi');",
    );
    w.ok(&["restore", "s", "--to", &dst_loc, "--exact", "--yes"]);
    w.ok(&["snapshot", "--from", &dst_loc, "--name", "t"]);
    assert_eq!(export(&w, "s", "s.jsonl"), export(&w, "t", "t.jsonl"));

    // --clear empties the kinds first, and the tables stay.
    w.ok(&[
        "restore", "s", "--to", &dst_loc, "--clear", "--yes", "--kinds", "log",
    ]);
    assert_eq!(sqlite_one(&dst, "SELECT count(*) FROM log"), "3");

    // kindsnap clear empties a table (and the foreign-key check notices
    // what that breaks).
    w.ok(&["clear", "--to", &dst_loc, "--kinds", "log", "--yes"]);
    assert_eq!(sqlite_one(&dst, "SELECT count(*) FROM log"), "0");
    let err = w.fails(&["clear", "--to", &dst_loc, "--kinds", "tag", "--yes"]);
    assert!(
        err.contains("breaks 3 foreign keys (first: table `book_tag`"),
        "{err}"
    );

    // --keys uuid: an INTEGER PRIMARY KEY cannot hold a uuid name.
    let err = w.fails(&[
        "restore",
        "s",
        "--to",
        &format!("sqlite:{}", w.path("u.db").display()),
        "--keys",
        "uuid",
    ]);
    assert!(
        err.contains("--keys uuid needs a key column that can hold text"),
        "{err}"
    );
    assert!(err.contains("`author`") || err.contains("`book`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A table with text keys can take them.
    let t = w.path("t.db");
    sqlite(
        &t,
        "CREATE TABLE note (id TEXT PRIMARY KEY, body TEXT, parent TEXT REFERENCES note(id));
                INSERT INTO note VALUES ('a', 'x', NULL), ('b', 'y', 'a');",
    );
    w.ok(&[
        "snapshot",
        "--from",
        &format!("sqlite:{}", t.display()),
        "--name",
        "notes",
    ]);
    w.ok(&[
        "restore",
        "notes",
        "--to",
        &format!("sqlite:{}", w.path("t2.db").display()),
        "--keys",
        "uuid",
    ]);
    assert_eq!(
        sqlite_one(&w.path("t2.db"), "SELECT count(*) FROM note"),
        "2"
    );
}

#[test]
fn sqlite_bad_input_gets_one_clear_line() {
    let w = Work::new();
    w.init();
    let one_line = |err: &str| {
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    };
    let err = w.fails(&["snapshot", "--from", "sqlite:missing.db"]);
    assert!(err.contains("no such file"), "{err}");
    one_line(&err);
    w.write(
        "notes.db",
        "this is not a database, just text that is long enough to have a header........",
    );
    let err = w.fails(&["snapshot", "--from", "sqlite:notes.db"]);
    assert!(err.contains("is not a SQLite database"), "{err}");
    one_line(&err);

    // A schema mismatch on restore names each difference.
    let src = w.path("src.db");
    sqlite(&src, "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER); INSERT INTO t VALUES (1, 'x', 2);");
    w.ok(&[
        "snapshot",
        "--from",
        &format!("sqlite:{}", src.display()),
        "--name",
        "s",
    ]);
    let dst = w.path("dst.db");
    sqlite(
        &dst,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a BLOB, c TEXT NOT NULL);",
    );
    let err = w.fails(&["restore", "s", "--to", &format!("sqlite:{}", dst.display())]);
    assert!(
        err.contains("table `t` on the target does not match the snapshot"),
        "{err}"
    );
    assert!(
        err.contains("column `a` is BLOB on the target, TEXT in the snapshot"),
        "{err}"
    );
    assert!(err.contains("column `b` is missing"), "{err}");
    assert!(
        err.contains("column `c` is NOT NULL without a default"),
        "{err}"
    );
    one_line(&err);
    assert_eq!(sqlite_one(&dst, "SELECT count(*) FROM t"), "0");

    // A restore of one table without the schema kind into a database
    // that lacks it.
    let err = w.fails(&[
        "restore",
        "s",
        "--to",
        &format!("sqlite:{}", w.path("e.db").display()),
        "--kinds",
        "t",
    ]);
    assert!(err.contains("table `t` does not exist"), "{err}");
    one_line(&err);
}

/// Snapshot a 1,000,000-row table from `from` (1,000,001 entities with
/// the schema) and require memory to stay flat.
fn snapshot_in_flat_memory(w: &Work, from: &str, engine: &str) {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"));
    cmd.arg("--repo")
        .arg(w.repo())
        .args(["snapshot", "--from", from])
        .env_remove("KINDSNAP_REPO");
    let (status, peak) = peak_rss_kib(cmd);
    assert!(status.success(), "snapshot failed");
    eprintln!(
        "1,000,000-row {engine} snapshot: peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        peak < 150 * 1024,
        "peak RSS {} MiB for a 1,000,000-row table; memory should stay flat",
        peak / 1024
    );
    let show: serde_json::Value =
        serde_json::from_str(&w.ok(&["show", "latest", "--json"])).unwrap();
    assert_eq!(show["entities"], 1_000_001);
}

/// Peak resident memory of a child, from /proc (VmHWM), sampled until it
/// exits.
fn peak_rss_kib(mut cmd: std::process::Command) -> (std::process::ExitStatus, u64) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
            {
                peak = peak.max(kb);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            return (st, peak);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sqlite_million_rows_snapshot_with_flat_memory() {
    let w = Work::new();
    w.init();
    let src = w.path("big.db");
    {
        let mut c = Connection::open(&src).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             CREATE TABLE item (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, qty INTEGER, price REAL, note TEXT);",
        )
        .unwrap();
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare("INSERT INTO item VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap();
            for i in 1..=1_000_000i64 {
                st.execute(rusqlite::params![
                    i,
                    format!("SKU-{i:08}"),
                    i % 97,
                    (i % 1000) as f64 / 7.0,
                    format!("item number {i} with a short note")
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    snapshot_in_flat_memory(&w, &format!("sqlite:{}", src.display()), "SQLite");
}

// ---------------------------------------------------------------- PostgreSQL

const PG_SCHEMA: &str = r#"
CREATE TABLE author (id serial PRIMARY KEY, name text NOT NULL, best_book int, active boolean,
  score double precision, f4 real, price numeric(12,4), avatar bytea, joined timestamptz,
  born date, naive timestamp, wake time, meta jsonb, raw json, uid uuid, tags text[], nums int[],
  grid int[][], span interval, ip inet, big bigint, small smallint, code char(3), label varchar(20),
  mood text DEFAULT 'ok' CHECK (mood <> ''));
CREATE TABLE book (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text,
  author_id int REFERENCES author(id), parent_id int REFERENCES book(id));
ALTER TABLE author ADD CONSTRAINT best FOREIGN KEY (best_book) REFERENCES book(id);
CREATE INDEX book_title ON book (title);
CREATE SCHEMA shop;
CREATE TABLE shop.tag (slug text PRIMARY KEY, label text UNIQUE);
CREATE TABLE shop.book_tag (book_id int REFERENCES book(id), tag text REFERENCES shop.tag(slug),
  PRIMARY KEY (book_id, tag));
CREATE TABLE note (id uuid PRIMARY KEY, body text, parent uuid REFERENCES note(id));
CREATE TABLE nopk (msg text);
"#;

const PG_DATA: &str = r#"
INSERT INTO author (name, active, score, f4, price, avatar, joined, born, naive, wake, meta, raw,
  uid, tags, nums, grid, span, ip, big, small, code, label) VALUES
('Ann', true, 1.5, 0.1, 12.5000, '\x00ff', '2024-01-01 10:00:00.123456+02', '2024-02-29',
 '2024-01-01 10:00:00', '12:34:56.5', '{"b": 1, "a": [1, 2]}', '{"b":1,  "a":2}',
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', ARRAY['x', 'y,z', 'q"u\ote', NULL], ARRAY[1, 2, NULL],
 ARRAY[[1, 2], [3, 4]], '1 day 02:00:00', '10.0.0.1/8', 9223372036854775807, -32768, 'ab', 'hé'),
('Bob', NULL, 'NaN', '-Infinity', 0.0001, '\x', 'infinity', '0044-03-15 BC', NULL, NULL, 'null',
 NULL, NULL, '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
('Zoë', false, 1e300, 3.4e38, -99999999.9999, NULL, '1969-12-31 23:59:59.999999+00', '1970-01-01',
 '2999-12-31 23:59:59.999999', '00:00', '[]', '"s"', NULL, ARRAY['']::text[], ARRAY[]::int[],
 NULL, '-3 mons', '::1', 0, 0, 'xyz', '');
INSERT INTO book (title, author_id) VALUES ('B1', 1), ('B2', 2);
INSERT INTO book (title, author_id, parent_id) VALUES ('B3', 1, 1);
UPDATE author SET best_book = 3 WHERE id = 1;
INSERT INTO shop.tag VALUES ('sci/fi', 'Sci-fi'), ('x%y', 'odd');
INSERT INTO shop.book_tag VALUES (1, 'sci/fi'), (2, 'x%y'), (2, 'sci/fi');
INSERT INTO note VALUES ('00000000-0000-4000-8000-000000000001', 'root', NULL),
  ('00000000-0000-4000-8000-000000000002', 'child', '00000000-0000-4000-8000-000000000001');
INSERT INTO nopk VALUES ('hello');
"#;

#[test]
fn postgres_round_trip_every_type_with_identical_hashes() {
    let pg = sql_support::server();
    let src = pg.create_db("src");
    pg.psql(&src, PG_SCHEMA);
    pg.psql(&src, PG_DATA);
    let w = Work::new();
    w.init();
    let out = w
        .ks()
        .args(["snapshot", "--from", &src, "--name", "a"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipping table `nopk`: it has no primary key"),
        "{stderr}"
    );
    let dst = pg.create_db("dst");
    let out = w.ok(&["restore", "a", "--to", &dst]);
    assert!(
        !out.contains(sql_support::PASSWORD),
        "the password is shown: {out}"
    );
    w.ok(&["snapshot", "--from", &dst, "--name", "b"]);
    let a = export(&w, "a", "a.jsonl");
    let b = export(&w, "b", "b.jsonl");
    assert_eq!(a, b, "the restored database snapshots to other entities");
    assert!(
        a.contains(r#"{"kind":"shop.book_tag","name":"2/x%25y"}"#),
        "{a}"
    );
    assert!(
        a.contains(r#""price":{"stringValue":"12.5000","meaning":1001}"#),
        "{a}"
    );
    assert!(
        a.contains(r#""joined":{"timestampValue":"2024-01-01T08:00:00.123456Z"}"#),
        "{a}"
    );
    assert!(a.contains(r#""best_book":{"keyValue""#), "{a}");
    // Sequences and identity columns continue past the restored ids, and
    // the foreign keys are back.
    assert_eq!(
        pg.psql(
            &dst,
            "INSERT INTO author (name) VALUES ('new') RETURNING id"
        ),
        "4"
    );
    assert_eq!(
        pg.psql(&dst, "INSERT INTO book (title) VALUES ('nb') RETURNING id"),
        "4"
    );
    assert_eq!(
        pg.psql(&dst, "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f'"),
        "best,book_author_id_fkey,book_parent_id_fkey,book_tag_book_id_fkey,book_tag_tag_fkey,note_parent_fkey"
    );
    assert_eq!(
        pg.psql(
            &dst,
            "SELECT to_regclass('kindsnap_pending_constraints') IS NULL"
        ),
        "t"
    );
    assert_eq!(
        pg.psql(
            &dst,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'book_title'"
        ),
        "1"
    );

    // Restoring again into the now-existing tables upserts (and checks the
    // schema); --keys uuid works where the key column is a uuid.
    w.ok(&["restore", "a", "--to", &dst, "--exact", "--yes"]);
    assert_eq!(pg.psql(&dst, "SELECT count(*) FROM author"), "3");
    // --clear empties tables other tables reference (their foreign keys are
    // off for the restore and validated again at the end).
    pg.psql(
        &dst,
        "DELETE FROM book WHERE id = 4; DELETE FROM author WHERE id = 4",
    );
    w.ok(&["restore", "a", "--to", &dst, "--clear", "--yes"]);
    w.ok(&["snapshot", "--from", &dst, "--name", "c"]);
    assert_eq!(export(&w, "c", "c.jsonl"), a);
    assert_eq!(
        pg.psql(
            &dst,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
        ),
        "6"
    );
    let err = w.fails(&["restore", "a", "--to", &pg.create_db("u"), "--keys", "uuid"]);
    assert!(
        err.contains("--keys uuid needs a key column that can hold text"),
        "{err}"
    );
    let notes = pg.create_db("notes");
    w.ok(&[
        "restore",
        "a",
        "--to",
        &notes,
        "--keys",
        "uuid",
        "--kinds",
        "note,kindsnap.schema",
    ]);
    assert_eq!(
        pg.psql(&notes, "SELECT count(*) FROM note WHERE parent IS NOT NULL"),
        "1"
    );
}

#[test]
fn postgres_diff_shows_exactly_the_changed_rows() {
    let pg = sql_support::server();
    let src = pg.create_db("diff");
    pg.psql(&src, PG_SCHEMA);
    pg.psql(&src, PG_DATA);
    let w = Work::new();
    w.init();
    w.ok(&["snapshot", "--from", &src, "--name", "day1"]);
    pg.psql(
        &src,
        "UPDATE author SET price = 12.5001 WHERE id = 1; INSERT INTO shop.tag VALUES ('new', 'New');
         DELETE FROM shop.book_tag WHERE book_id = 2 AND tag = 'x%y';",
    );
    w.ok(&["snapshot", "--from", &src, "--name", "day2"]);
    let d: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "day1", "day2", "--json"])).unwrap();
    let keys: Vec<String> = d["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["change"].as_str().unwrap(),
                e["key"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            "changed author:1",
            "removed shop.book_tag:\"2/x%25y\"",
            "added shop.tag:new"
        ],
        "{d:#}"
    );
}

#[test]
fn postgres_bad_input_gets_one_clear_line() {
    let pg = sql_support::server();
    let w = Work::new();
    w.init();
    let one_line = |err: &str| assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    let wrong = format!("postgres://postgres:wrong@127.0.0.1:{}/postgres", pg.port);
    let err = w.fails(&["snapshot", "--from", &wrong]);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(err.contains("check the user and password"), "{err}");
    assert!(!err.contains("wrong"), "the password is shown: {err}");
    one_line(&err);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = w.fails(&[
        "snapshot",
        "--from",
        &format!("postgres://u:p@127.0.0.1:{closed}/db"),
    ]);
    assert!(
        err.contains("cannot connect to postgres://u@127.0.0.1"),
        "{err}"
    );
    assert!(err.contains("is the server running"), "{err}");
    one_line(&err);
    let err = w.fails(&["snapshot", "--from", &pg.url("no_such_db")]);
    assert!(err.contains("does not exist"), "{err}");
    one_line(&err);

    // Schema mismatch on restore.
    let src = pg.create_db("mm_src");
    pg.psql(
        &src,
        "CREATE TABLE t (id int PRIMARY KEY, a text, b int); INSERT INTO t VALUES (1, 'x', 2);",
    );
    w.ok(&["snapshot", "--from", &src, "--name", "s"]);
    let dst = pg.create_db("mm_dst");
    pg.psql(
        &dst,
        "CREATE TABLE t (id bigint PRIMARY KEY, a text, c text NOT NULL);",
    );
    let err = w.fails(&["restore", "s", "--to", &dst]);
    assert!(
        err.contains("table `t` on the target does not match the snapshot"),
        "{err}"
    );
    assert!(
        err.contains("column `id` is bigint on the target, integer in the snapshot"),
        "{err}"
    );
    assert!(err.contains("column `b` is missing"), "{err}");
    one_line(&err);
}

#[test]
fn postgres_million_rows_snapshot_with_flat_memory() {
    let pg = sql_support::server();
    let db = pg.create_db("big");
    pg.psql(
        &db,
        "CREATE TABLE item (id bigint PRIMARY KEY, sku text NOT NULL, qty int, price double precision, note text);
         INSERT INTO item SELECT i, 'SKU-' || lpad(i::text, 8, '0'), i % 97, (i % 1000) / 7.0,
           'item number ' || i || ' with a short note' FROM generate_series(1, 1000000) i;",
    );
    let w = Work::new();
    w.init();
    snapshot_in_flat_memory(&w, &db, "PostgreSQL");
}

/// Restore, SIGKILL it at several points, restore again: the result is the
/// uninterrupted one (rows, foreign keys back, sequences), for both engines.
fn kill_and_resume(w: &Work, target: &dyn Fn(usize) -> String, check: &dyn Fn(&str)) -> usize {
    let t = std::time::Instant::now();
    w.ok(&["restore", "s", "--to", &target(0)]);
    let full = t.elapsed();
    check(&target(0));
    let mut resumed = 0;
    for i in 1..=3 {
        let to = target(i);
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kindsnap"))
            .current_dir(w.dir.path())
            .arg("--repo")
            .arg(w.repo())
            .env("KINDSNAP_CHECKPOINT_EVERY", "700")
            .args(["restore", "s", "--to", &to])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(i as f64 / 4.0));
        // On a busy machine the timed first restore can be slower than
        // this one, which then finishes before the kill: the target is
        // complete, and restoring again would (rightly) ask for a mode.
        let _ = child.kill();
        let finished = child.wait().is_ok_and(|s| s.success());
        if !finished {
            let out = w.ok(&["restore", "s", "--to", &to]);
            if out.contains("resumed an interrupted restore") {
                resumed += 1;
            }
        }
        check(&to);
    }
    resumed
}

#[test]
fn sqlite_restore_killed_and_resumed_gives_the_same_database() {
    let w = Work::new();
    w.init();
    let src = w.path("src.db");
    sqlite(
        &src,
        "PRAGMA foreign_keys = OFF;
         CREATE TABLE parent (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, fav INTEGER REFERENCES child(id));
         CREATE TABLE child (id INTEGER PRIMARY KEY AUTOINCREMENT, parent_id INTEGER NOT NULL REFERENCES parent(id), body TEXT);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2000)
           INSERT INTO parent SELECT i, 'p' || i, i * 10 FROM c;
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 40000)
           INSERT INTO child SELECT i, 1 + i % 2000, printf('%.200c', 'x') FROM c;",
    );
    w.ok(&[
        "snapshot",
        "--from",
        &format!("sqlite:{}", src.display()),
        "--name",
        "s",
    ]);
    let want = export(&w, "s", "want.jsonl");
    let n = std::cell::Cell::new(0);
    let resumed = kill_and_resume(
        &w,
        &|i| format!("sqlite:{}", w.path(&format!("t{i}.db")).display()),
        &|to| {
            n.set(n.get() + 1);
            w.ok(&["snapshot", "--from", to, "--name", &format!("r{}", n.get())]);
            assert_eq!(
                export(&w, &format!("r{}", n.get()), "got.jsonl"),
                want,
                "{to}"
            );
            let path = to.strip_prefix("sqlite:").unwrap();
            assert_eq!(
                sqlite_one(
                    Path::new(path),
                    "SELECT count(*) FROM pragma_foreign_key_check"
                ),
                "0"
            );
            assert_eq!(
                sqlite_one(
                    Path::new(path),
                    "SELECT seq FROM sqlite_sequence WHERE name = 'child'"
                ),
                "40000"
            );
        },
    );
    eprintln!("{resumed} of 3 SQLite restores resumed");
}

#[test]
fn postgres_restore_killed_and_resumed_gives_the_same_database() {
    let pg = sql_support::server();
    let src = pg.create_db("resume_src");
    pg.psql(
        &src,
        "CREATE TABLE parent (id serial PRIMARY KEY, name text, fav int);
         CREATE TABLE child (id serial PRIMARY KEY, parent_id int NOT NULL REFERENCES parent(id), body text);
         ALTER TABLE parent ADD CONSTRAINT fav FOREIGN KEY (fav) REFERENCES child(id);
         INSERT INTO parent (id, name) SELECT i, 'p' || i FROM generate_series(1, 2000) i;
         INSERT INTO child SELECT i, 1 + i % 2000, repeat('x', 200) FROM generate_series(1, 40000) i;
         UPDATE parent SET fav = id * 10;",
    );
    let w = Work::new();
    w.init();
    w.ok(&["snapshot", "--from", &src, "--name", "s"]);
    let want = export(&w, "s", "want.jsonl");
    let dbs: Vec<String> = (0..4).map(|_| pg.create_db("resume")).collect();
    let n = std::cell::Cell::new(0);
    let resumed = kill_and_resume(&w, &|i| dbs[i].clone(), &|to| {
        n.set(n.get() + 1);
        w.ok(&["snapshot", "--from", to, "--name", &format!("r{}", n.get())]);
        assert_eq!(
            export(&w, &format!("r{}", n.get()), "got.jsonl"),
            want,
            "{to}"
        );
        assert_eq!(
            pg.psql(to, "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f'"),
            "child_parent_id_fkey,fav"
        );
        assert_eq!(
            pg.psql(
                to,
                "SELECT to_regclass('kindsnap_pending_constraints') IS NULL"
            ),
            "t"
        );
        assert_eq!(pg.psql(to, "SELECT nextval('child_id_seq')"), "40001");
        pg.psql(to, "SELECT setval('child_id_seq', 40000)");
    });
    eprintln!("{resumed} of 3 PostgreSQL restores resumed");
}

/// A restore into a table another session keeps locked gives up after the
/// timeout with one line, instead of waiting for the lock.
#[test]
fn postgres_restore_gives_up_on_a_held_lock() {
    let pg = sql_support::server();
    let src = pg.create_db("lock_src");
    pg.psql(
        &src,
        "CREATE TABLE item (id int PRIMARY KEY, n int); INSERT INTO item VALUES (1, 1), (2, 2);",
    );
    let w = Work::new();
    w.init();
    w.ok(&["snapshot", "--from", &src, "--name", "s"]);
    let dst = pg.create_db("lock_dst");
    pg.psql(&dst, "CREATE TABLE item (id int PRIMARY KEY, n int)");
    // Another session holds the table for 30 s.
    let mut holder = std::process::Command::new(sql_support::bin_dir().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &dst])
        .args([
            "-c",
            "BEGIN; LOCK TABLE item IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30); COMMIT;",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the lock is held.
    for _ in 0..100 {
        let held = pg.psql(
            &dst,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = 'item' AND l.mode = 'AccessExclusiveLock' AND l.granted",
        );
        if held == "1" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = w.run(&["--timeout", "2", "restore", "s", "--to", &dst]);
    let _ = holder.kill();
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines().count() == 1 && err.contains("lock timeout") && err.contains("--timeout"),
        "{err}"
    );
}

/// A table whose triggers rewrite `last_update` on every write and log
/// every insert into `audit`; one row `(1, 'old')` besides.
const SQLITE_TRIGGERS: &str = r#"
CREATE TABLE film (id INTEGER PRIMARY KEY, title TEXT, last_update TEXT);
CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT);
CREATE TRIGGER film_touch AFTER UPDATE ON film BEGIN
  UPDATE film SET last_update = 'touched' WHERE id = new.id AND last_update IS NOT 'touched'; END;
CREATE TRIGGER film_audit AFTER INSERT ON film BEGIN INSERT INTO audit (note) VALUES (new.title); END;
"#;

fn sqlite_dump(db: &Path) -> String {
    sqlite_one(
        db,
        "SELECT (SELECT group_concat(id || '/' || title || '/' || ifnull(last_update, '-'), ',') \
         FROM (SELECT * FROM film ORDER BY id)) || ' | ' || \
         (SELECT group_concat(id || '/' || note, ',') FROM (SELECT * FROM audit ORDER BY id))",
    )
}

#[test]
fn sqlite_restores_fire_no_trigger() {
    let w = Work::new();
    w.init();
    let src = w.path("src.db");
    sqlite(&src, SQLITE_TRIGGERS);
    sqlite(
        &src,
        "INSERT INTO film VALUES (1, 'Alien', '2020-01-01'), (2, 'Brazil', '2020-01-02');",
    );
    let src_loc = format!("sqlite:{}", src.display());
    w.ok(&["snapshot", "--from", &src_loc, "--name", "s"]);
    let want = sqlite_dump(&src);
    assert_eq!(
        want,
        "1/Alien/2020-01-01,2/Brazil/2020-01-02 | 1/Alien,2/Brazil"
    );

    // Into an empty file: the recorded triggers are created after the data.
    let fresh = w.path("fresh.db");
    w.ok(&[
        "restore",
        "s",
        "--to",
        &format!("sqlite:{}", fresh.display()),
        "--trust-schema",
    ]);
    assert_eq!(sqlite_dump(&fresh), want);

    // Over existing rows, film only: its triggers do not fire, and come back.
    let dst = w.path("dst.db");
    sqlite(&dst, SQLITE_TRIGGERS);
    sqlite(
        &dst,
        "INSERT INTO film VALUES (1, 'old', 'x'), (3, 'Heat', 'y');",
    );
    let before = sqlite_dump(&dst);
    let dst_loc = format!("sqlite:{}", dst.display());
    w.ok(&[
        "restore", "s", "--to", &dst_loc, "--kinds", "film", "--merge",
    ]);
    let after = sqlite_dump(&dst);
    assert_eq!(
        after, "1/Alien/2020-01-01,2/Brazil/2020-01-02,3/Heat/y | 1/old,2/Heat",
        "before: {before}"
    );
    w.ok(&[
        "restore", "s", "--to", &dst_loc, "--kinds", "film", "--merge",
    ]);
    assert_eq!(
        sqlite_dump(&dst),
        after,
        "a second restore changed something"
    );
    for db in [&fresh, &dst] {
        assert_eq!(
            sqlite_one(
                db,
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
            ),
            "2"
        );
        assert_eq!(
            sqlite_one(
                db,
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'kindsnap%'"
            ),
            "0"
        );
        sqlite(
            db,
            "INSERT INTO film VALUES (9, 'Z', NULL); UPDATE film SET title = 'A' WHERE id = 1",
        );
        assert_eq!(
            sqlite_one(db, "SELECT note FROM audit ORDER BY id DESC LIMIT 1"),
            "Z"
        );
        assert_eq!(
            sqlite_one(db, "SELECT last_update FROM film WHERE id = 1"),
            "touched"
        );
    }
}

/// PostgreSQL: the same with plpgsql triggers.
const PG_TRIGGERS: &str = r#"
CREATE TABLE film (id int PRIMARY KEY, title text, last_update timestamptz);
CREATE TABLE audit (id serial PRIMARY KEY, note text);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.last_update := '2099-01-01'; RETURN NEW; END $$;
CREATE FUNCTION log_film() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO audit (note) VALUES (NEW.title); RETURN NEW; END $$;
CREATE TRIGGER film_touch BEFORE UPDATE ON film FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TRIGGER film_audit AFTER INSERT ON film FOR EACH ROW EXECUTE FUNCTION log_film();
"#;

fn pg_dump(pg: &sql_support::Server, db: &str) -> String {
    pg.psql(
        db,
        "SELECT (SELECT string_agg(id || '/' || title || '/' || last_update::date, ',' ORDER BY id) FROM film) \
         || ' | ' || (SELECT string_agg(id || '/' || note, ',' ORDER BY id) FROM audit)",
    )
}

#[test]
fn postgres_restores_fire_no_trigger_as_superuser_or_owner() {
    let pg = sql_support::server();
    let src = pg.create_db("trg_src");
    pg.psql(
        &src,
        "CREATE TABLE film (id int PRIMARY KEY, title text, last_update timestamptz);
         INSERT INTO film VALUES (1, 'Alien', '2020-01-01'), (2, 'Brazil', '2020-01-02');",
    );
    let w = Work::new();
    w.init();
    w.ok(&["snapshot", "--from", &src, "--name", "s"]);
    pg.psql(
        "postgres",
        "DO $$ BEGIN CREATE ROLE trg_owner LOGIN PASSWORD 'owner'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    // The superuser's session runs as a replica; the owner disables the
    // table's triggers.
    for owner in [false, true] {
        let dst = pg.create_db("trg_dst");
        pg.psql(&dst, PG_TRIGGERS);
        pg.psql(
            &dst,
            "INSERT INTO film VALUES (1, 'old', '2000-01-01'), (3, 'Heat', '2000-01-03')",
        );
        let to = if owner {
            pg.psql(
                &dst,
                "ALTER TABLE film OWNER TO trg_owner; ALTER TABLE audit OWNER TO trg_owner; \
                 GRANT CREATE ON SCHEMA public TO trg_owner",
            );
            dst.replace("postgres:kindsnap-test@", "trg_owner:owner@")
        } else {
            dst.clone()
        };
        let want = "1/Alien/2020-01-01,2/Brazil/2020-01-02,3/Heat/2000-01-03 | 1/old,2/Heat";
        w.ok(&["restore", "s", "--to", &to, "--merge"]);
        assert_eq!(pg_dump(pg, &dst), want, "owner: {owner}");
        w.ok(&["restore", "s", "--to", &to, "--merge"]);
        assert_eq!(pg_dump(pg, &dst), want, "second restore, owner: {owner}");
        // The triggers are back on, and the bookkeeping is gone.
        pg.psql(
            &dst,
            "INSERT INTO film VALUES (9, 'Z', NULL); UPDATE film SET title = 'A' WHERE id = 1",
        );
        assert_eq!(
            pg.psql(&dst, "SELECT note FROM audit ORDER BY id DESC LIMIT 1"),
            "Z"
        );
        assert_eq!(
            pg.psql(&dst, "SELECT last_update::date FROM film WHERE id = 1"),
            "2099-01-01"
        );
        assert_eq!(
            pg.psql(
                &dst,
                "SELECT to_regclass('kindsnap_pending_constraints') IS NULL"
            ),
            "t"
        );
    }
}

#[test]
fn postgres_restore_says_when_triggers_cannot_be_turned_off() {
    let pg = sql_support::server();
    let src = pg.create_db("trg_warn_src");
    pg.psql(&src, "CREATE TABLE film (id int PRIMARY KEY, title text, last_update timestamptz); INSERT INTO film VALUES (1, 'Alien', NULL);");
    let w = Work::new();
    w.init();
    w.ok(&["snapshot", "--from", &src, "--name", "s"]);
    let dst = pg.create_db("trg_warn_dst");
    pg.psql(&dst, PG_TRIGGERS);
    pg.psql(
        &dst,
        "DO $$ BEGIN CREATE ROLE trg_writer LOGIN PASSWORD 'writer'; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON film, audit TO trg_writer; \
         GRANT USAGE ON SEQUENCE audit_id_seq TO trg_writer; GRANT CREATE ON SCHEMA public TO trg_writer",
    );
    let to = dst.replace("postgres:kindsnap-test@", "trg_writer:writer@");
    let out = w.run(&["restore", "s", "--to", &to, "--merge"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The report's warnings are on stdout.
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("warning: the triggers of table `film` fired during the restore"),
        "{report}"
    );
    assert!(report.contains("restore as one of them"), "{report}");
    assert_eq!(pg.psql(&dst, "SELECT count(*) FROM audit"), "1");
}

#[test]
fn postgres_restore_moves_sequences_named_in_a_key_default() {
    let pg = sql_support::server();
    // `s` is owned by no column, and shared by two tables.
    let schema = "CREATE SEQUENCE s; \
        CREATE TABLE item (id int PRIMARY KEY DEFAULT nextval('s'), name text); \
        CREATE TABLE other (id bigint PRIMARY KEY DEFAULT nextval('s'));";
    let src = pg.create_db("seq_src");
    pg.psql(&src, schema);
    pg.psql(&src, "INSERT INTO item (name) VALUES ('a'), ('b'), ('c')");
    let w = Work::new();
    w.init();
    w.ok(&["snapshot", "--from", &src, "--name", "s", "--kinds", "item"]);
    // A fresh sequence moves past the restored ids.
    let dst = pg.create_db("seq_dst");
    pg.psql(&dst, schema);
    w.ok(&["restore", "s", "--to", &dst]);
    assert_eq!(
        pg.psql(&dst, "INSERT INTO item (name) VALUES ('new') RETURNING id"),
        "4"
    );
    // One already further on (another table took ids) stays where it is.
    let ahead = pg.create_db("seq_ahead");
    pg.psql(&ahead, schema);
    pg.psql(&ahead, "SELECT setval('s', 100)");
    w.ok(&["restore", "s", "--to", &ahead]);
    assert_eq!(
        pg.psql(&ahead, "INSERT INTO other DEFAULT VALUES RETURNING id"),
        "101"
    );
}

#[test]
fn sqlite_kinds_keep_their_schema_types_ignore_case_and_spaces_and_pragmas_come_back() {
    let w = Work::new();
    w.init();
    let src = w.path("src.db");
    sqlite(
        &src,
        "CREATE TABLE film (id INTEGER PRIMARY KEY, price numeric(10,2)); \
         CREATE TABLE other (id INTEGER PRIMARY KEY); \
         INSERT INTO film VALUES (1, 9.5); INSERT INTO other VALUES (1); \
         PRAGMA user_version = 42; PRAGMA application_id = 1234567;",
    );
    let src_loc = format!("sqlite:{}", src.display());
    w.ok(&[
        "snapshot", "--from", &src_loc, "--kinds", "film", "--name", "s",
    ]);
    let stats = w.ok(&["stats", "s"]);
    assert!(
        stats.lines().any(|l| l.starts_with("kindsnap.schema ")),
        "{stats}"
    );

    // Into a new file: the chosen table only, and the database's settings.
    let fresh = w.path("fresh.db");
    w.ok(&[
        "restore",
        "s",
        "--to",
        &format!("sqlite:{}", fresh.display()),
    ]);
    assert_eq!(sqlite_one(&fresh, "SELECT price FROM film"), "9.5");
    assert_eq!(
        sqlite_one(
            &fresh,
            "SELECT count(*) FROM sqlite_master WHERE name = 'other'"
        ),
        "0"
    );
    assert_eq!(sqlite_one(&fresh, "PRAGMA user_version"), "42");
    assert_eq!(sqlite_one(&fresh, "PRAGMA application_id"), "1234567");

    // Into an existing table typed `NUMERIC(10, 2)`, whose file has its
    // own user_version: accepted, and the version is kept with a warning.
    let dst = w.path("dst.db");
    sqlite(
        &dst,
        "CREATE TABLE film (id INTEGER PRIMARY KEY, price NUMERIC(10, 2)); PRAGMA user_version = 43;",
    );
    let out = w.ok(&["restore", "s", "--to", &format!("sqlite:{}", dst.display())]);
    assert!(
        out.contains("warning: PRAGMA user_version is 43 in") && out.contains("42 in the snapshot"),
        "{out}"
    );
    assert_eq!(sqlite_one(&dst, "PRAGMA user_version"), "43");
    assert_eq!(sqlite_one(&dst, "PRAGMA application_id"), "1234567");
    assert_eq!(sqlite_one(&dst, "SELECT price FROM film"), "9.5");
    // A type that differs is still refused.
    let other = w.path("other.db");
    sqlite(
        &other,
        "CREATE TABLE film (id INTEGER PRIMARY KEY, price NUMERIC(12, 2));",
    );
    let err = w.fails(&[
        "restore",
        "s",
        "--to",
        &format!("sqlite:{}", other.display()),
    ]);
    assert!(
        err.contains("column `price` is NUMERIC(12, 2) on the target"),
        "{err}"
    );
}

#[test]
fn postgres_kinds_keep_their_schema() {
    let pg = sql_support::server();
    let src = pg.create_db("kinds_src");
    pg.psql(
        &src,
        "CREATE TABLE film (id int PRIMARY KEY, price numeric(10,2)); CREATE TABLE other (id int PRIMARY KEY); \
         INSERT INTO film VALUES (1, 9.5); INSERT INTO other VALUES (1);",
    );
    let w = Work::new();
    w.init();
    w.ok(&["snapshot", "--from", &src, "--kinds", "film", "--name", "s"]);
    let dst = pg.create_db("kinds_dst");
    w.ok(&["restore", "s", "--to", &dst]);
    assert_eq!(pg.psql(&dst, "SELECT price FROM film"), "9.50");
    assert_eq!(pg.psql(&dst, "SELECT to_regclass('other') IS NULL"), "t");
}

/// A snapshot of a JSON Lines file restored into an empty SQLite file:
/// there is no recorded SQL schema to create the table from, and the
/// error says so (and not "include kindsnap.schema in --kinds", which
/// such a snapshot does not have).
#[test]
fn a_non_sql_snapshot_into_an_empty_database_says_to_create_the_table() {
    let w = Work::new();
    w.init();
    w.write(
        "a.jsonl",
        r#"{"key":{"path":[{"kind":"note","id":"1"}]},"properties":{"body":{"stringValue":"hi"}}}
"#,
    );
    w.ok(&["snapshot", "--from", "jsonl:a.jsonl", "--name", "j"]);
    let db = w.path("empty.db");
    let err = w.fails(&["restore", "j", "--to", &format!("sqlite:{}", db.display())]);
    assert!(
        err.contains("table `note` does not exist")
            && err.contains("no recorded SQL schema")
            && err.contains("create the table first"),
        "{err}"
    );
    assert!(!err.contains("--kinds"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // With the table made by hand, the same restore goes through.
    sqlite(&db, "CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)");
    w.ok(&["restore", "j", "--to", &format!("sqlite:{}", db.display())]);
    assert_eq!(sqlite_one(&db, "SELECT body FROM note WHERE id = 1"), "hi");
}
