//! A snapshot never runs code on restore. The recorded schema
//! (`kindsnap.schema`) is data whoever writes a repository or a JSON Lines
//! file chooses: these tests tamper with it the way an attacker would and
//! check that the restore refuses, names the snapshot and table, and left
//! nothing behind — on SQLite (with the authorizer as a second wall) and
//! on PostgreSQL. Triggers come back only with `--trust-schema`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sql_support;

use std::path::PathBuf;

use common::Work;
use sql_support::{sqlite, sqlite_one};

/// Changes a table's recorded `ddl` and `after` lists.
type Edit = Box<dyn Fn(&mut Vec<String>, &mut Vec<String>)>;

/// Export `snap`, let `edit` change the recorded `ddl` and `after` lists of
/// `table`'s schema entity, and snapshot the result as `name`.
fn tampered(
    w: &Work,
    snap: &str,
    table: &str,
    name: &str,
    edit: impl Fn(&mut Vec<String>, &mut Vec<String>),
) {
    let file = w.path(&format!("{name}.jsonl"));
    w.ok(&["export", snap, "--to", &format!("jsonl:{}", file.display())]);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut e: serde_json::Value = serde_json::from_str(line).unwrap();
            let path = &e["key"]["path"][0];
            if path["kind"] != "kindsnap.schema" || path["name"] != table {
                return line.to_string();
            }
            found = true;
            let strings = |e: &serde_json::Value, p: &str| -> Vec<String> {
                e["properties"][p]["arrayValue"]["values"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .map(|v| v["stringValue"].as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (mut ddl, mut after) = (strings(&e, "ddl"), strings(&e, "after"));
            edit(&mut ddl, &mut after);
            let list = |v: &[String]| {
                serde_json::json!({"arrayValue": {"values": v.iter().map(|s| serde_json::json!({
                    "stringValue": s, "excludeFromIndexes": true
                })).collect::<Vec<_>>()}})
            };
            e["properties"]["ddl"] = list(&ddl);
            e["properties"]["after"] = list(&after);
            e.to_string()
        })
        .collect();
    assert!(found, "no schema entity for `{table}` in {text}");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    w.ok(&[
        "snapshot",
        "--from",
        &format!("jsonl:{}", file.display()),
        "--name",
        name,
    ]);
}

/// A snapshot of a small SQLite shop: `item` and an `audit` table that a
/// trigger on `item` fills.
fn sqlite_snapshot(w: &Work) -> PathBuf {
    let src = w.path("src.db");
    sqlite(
        &src,
        "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL CHECK (length(name) > 0));
         CREATE INDEX item_name ON item (lower(name));
         CREATE TABLE audit (id INTEGER PRIMARY KEY, item_id INTEGER);
         CREATE TRIGGER item_audit AFTER INSERT ON item BEGIN INSERT INTO audit (item_id) VALUES (new.id); END;
         INSERT INTO item (name) VALUES ('a'), ('b'), ('c');",
    );
    w.ok(&[
        "snapshot",
        "--from",
        &format!("sqlite:{}", src.display()),
        "--name",
        "s",
    ]);
    src
}

#[test]
fn sqlite_restore_refuses_statements_that_do_not_recreate_the_table() {
    let w = Work::new();
    w.init();
    sqlite_snapshot(&w);
    let elsewhere = w.path("elsewhere.db");
    let other = w.path("other_app.db");
    sqlite(
        &other,
        "CREATE TABLE users (id INTEGER PRIMARY KEY); INSERT INTO users VALUES (1), (2), (3);",
    );
    let (e, o) = (elsewhere.display().to_string(), other.display().to_string());
    let attacks: Vec<(&str, Edit)> = vec![
        (
            "statements in one entry",
            Box::new({
                let (e, o) = (e.clone(), o.clone());
                move |ddl: &mut Vec<String>, _: &mut Vec<String>| {
                    ddl[0].push_str(&format!(
                        "; COMMIT; ATTACH DATABASE '{e}' AS p; CREATE TABLE p.x (a); \
                     ATTACH '{o}' AS q; DELETE FROM q.users; BEGIN"
                    ))
                }
            }),
        ),
        (
            "does not recreate table `item`",
            Box::new({
                let e = e.clone();
                move |ddl: &mut Vec<String>, _: &mut Vec<String>| {
                    ddl.push(format!("ATTACH DATABASE '{e}' AS p"))
                }
            }),
        ),
        (
            "does not recreate table `item`",
            Box::new(|ddl, _| ddl.push("DROP TABLE audit".into())),
        ),
        (
            "is not for table `item`",
            Box::new(|ddl, _| ddl.push("CREATE INDEX evil ON audit (id)".into())),
        ),
        (
            "copies from another table or query",
            Box::new(|ddl, _| ddl[0] = "CREATE TABLE item AS SELECT * FROM sqlite_master".into()),
        ),
        (
            "which is code; pass --trust-schema",
            Box::new(|ddl, _| {
                ddl[0] = "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT \
                          CHECK (load_extension('/nonexistent/evil.so') IS NULL))"
                    .into()
            }),
        ),
    ];
    for (i, (why, attack)) in attacks.into_iter().enumerate() {
        let name = format!("evil{i}");
        tampered(&w, "s", "item", &name, attack);
        let target = w.path(&format!("target{i}.db"));
        let err = w.fails(&[
            "restore",
            &name,
            "--to",
            &format!("sqlite:{}", target.display()),
        ]);
        assert!(
            err.contains(&format!(
                "snapshot `{name}`: refusing the recorded schema of table `item`"
            )) && err.contains(why),
            "attack {i}: {err}"
        );
        assert!(!elsewhere.exists(), "attack {i} created {e}");
        assert_eq!(
            sqlite_one(&other, "SELECT count(*) FROM users"),
            "3",
            "attack {i}"
        );
        if target.exists() {
            assert_eq!(
                sqlite_one(&target, "SELECT count(*) FROM sqlite_master"),
                "0",
                "attack {i} left tables in the target"
            );
        }
    }
}

#[test]
fn sqlite_authorizer_stops_attach_even_in_a_trusted_restore() {
    let w = Work::new();
    w.init();
    sqlite_snapshot(&w);
    let elsewhere = w.path("elsewhere.db");
    let e = elsewhere.display().to_string();
    // Unparseable, so only --trust-schema runs it: the ATTACH in front
    // still meets the authorizer.
    tampered(&w, "s", "item", "evil", move |ddl, _| {
        ddl.insert(
            0,
            format!("ATTACH DATABASE '{e}' AS p; CREATE TABLE p.x (a) !!! not sql"),
        )
    });
    let target = w.path("target.db");
    let err = w.fails(&[
        "restore",
        "evil",
        "--to",
        &format!("sqlite:{}", target.display()),
        "--trust-schema",
    ]);
    assert!(err.contains("not authorized"), "{err}");
    assert!(!elsewhere.exists());
    // Untrusted, the same entry is refused before anything runs.
    let err = w.fails(&[
        "restore",
        "evil",
        "--to",
        &format!("sqlite:{}", w.path("t2.db").display()),
    ]);
    assert!(
        err.contains("cannot parse") && err.contains("--trust-schema"),
        "{err}"
    );
}

#[test]
fn sqlite_triggers_come_back_only_when_trusted() {
    let w = Work::new();
    w.init();
    sqlite_snapshot(&w);
    let plain = w.path("plain.db");
    let out = w.ok(&[
        "restore",
        "s",
        "--to",
        &format!("sqlite:{}", plain.display()),
    ]);
    assert!(
        out.contains("warning: trigger `item_audit` of table `item` was not recreated"),
        "{out}"
    );
    let has_trigger = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'";
    assert_eq!(sqlite_one(&plain, has_trigger), "0");
    // The data is exactly the snapshot's, the index is there.
    assert_eq!(sqlite_one(&plain, "SELECT count(*) FROM item"), "3");
    assert_eq!(sqlite_one(&plain, "SELECT count(*) FROM audit"), "3");
    assert_eq!(
        sqlite_one(
            &plain,
            "SELECT count(*) FROM sqlite_master WHERE name = 'item_name'"
        ),
        "1"
    );
    let json = w.ok(&[
        "restore",
        "s",
        "--to",
        &format!("sqlite:{}", w.path("j.db").display()),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1, "{json}");

    let trusted = w.path("trusted.db");
    let out = w.ok(&[
        "restore",
        "s",
        "--to",
        &format!("sqlite:{}", trusted.display()),
        "--trust-schema",
    ]);
    assert!(!out.contains("warning"), "{out}");
    assert_eq!(sqlite_one(&trusted, has_trigger), "1");
}

/// The `CREATE TABLE` among a table's recorded statements.
fn create_table(ddl: &mut [String]) -> &mut String {
    ddl.iter_mut()
        .find(|s| s.starts_with("CREATE TABLE"))
        .expect("a CREATE TABLE")
}

#[test]
fn postgres_restore_refuses_statements_that_do_not_recreate_the_table() {
    let pg = sql_support::server();
    let src = pg.create_db("safe_src");
    pg.psql(
        &src,
        "CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL CHECK (length(name) > 0));
         CREATE TABLE note (id serial PRIMARY KEY, item_id int REFERENCES item(id));
         CREATE INDEX item_name ON item (lower(name));
         INSERT INTO item (name) VALUES ('a'), ('b');
         INSERT INTO note (item_id) VALUES (1);",
    );
    let w = Work::new();
    w.init();
    w.ok(&["snapshot", "--from", &src, "--name", "s"]);
    // The server runs as another user: give it a folder it could write to.
    let open_dir = w.path("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(
        &open_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let written = open_dir.join("written-by-server.txt");
    let f = written.display().to_string();
    let attacks: Vec<(&str, &str, Edit)> = vec![
        (
            "item",
            "statements in one entry",
            Box::new({
                let f = f.clone();
                move |ddl, _| {
                    create_table(ddl).push_str(&format!("; COPY (SELECT 'pwned') TO '{f}'"))
                }
            }),
        ),
        (
            "item",
            "does not recreate table `item`",
            Box::new({
                let f = f.clone();
                move |ddl, _| ddl.push(format!("COPY (SELECT 'pwned') TO '{f}'"))
            }),
        ),
        (
            "note",
            "does more than add a constraint",
            Box::new(|_, after| after.push("ALTER TABLE note DROP COLUMN item_id".into())),
        ),
        (
            "item",
            "which is code; pass --trust-schema",
            Box::new({
                let f = f.clone();
                move |ddl, _| {
                    *create_table(ddl) = format!(
                        "CREATE TABLE public.item (id integer CHECK (lo_export(1, '{f}') > 0), name text)"
                    )
                }
            }),
        ),
    ];
    for (i, (table, why, attack)) in attacks.into_iter().enumerate() {
        let name = format!("evil{i}");
        tampered(&w, "s", table, &name, attack);
        let dst = pg.create_db("safe_dst");
        let err = w.fails(&["restore", &name, "--to", &dst]);
        assert!(
            err.contains(&format!(
                "snapshot `{name}`: refusing the recorded schema of table `{table}`"
            )) && err.contains(why),
            "attack {i}: {err}"
        );
        assert!(!written.exists(), "attack {i}: the server wrote {f}");
        assert_eq!(
            pg.psql(
                &dst,
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public'"
            ),
            "0",
            "attack {i} left objects in the target"
        );
    }
    // The untampered snapshot restores, sequences and foreign keys included.
    let dst = pg.create_db("safe_ok");
    w.ok(&["restore", "s", "--to", &dst]);
    assert_eq!(pg.psql(&dst, "SELECT count(*) FROM item"), "2");
    assert_eq!(
        pg.psql(
            &dst,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'note'::regclass"
        ),
        "1"
    );
}
