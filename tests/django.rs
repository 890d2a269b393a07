//! A Django project round-trips: migrate and fill a database through
//! manage.py, snapshot it, restore into an empty database, and run
//! Django's checks on the restored one (`manage.py check`,
//! `migrate --check`, foreign-key and integrity checks, an ORM summary
//! identical to the original's, new rows get fresh ids). SQLite and
//! PostgreSQL. The virtualenv comes from tests/django/setup.sh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sql_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Work;

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/django")
}

fn python() -> String {
    let out = Command::new(project().join("setup.sh"))
        .output()
        .expect("run tests/django/setup.sh");
    assert!(
        out.status.success(),
        "tests/django/setup.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `manage.py ARGS` against a database given as (env var, value).
fn manage(py: &str, db: (&str, &str), args: &[&str]) -> String {
    let out = Command::new(py)
        .arg("manage.py")
        .args(args)
        .current_dir(project())
        .env_remove("KINDSNAP_DJANGO_DB")
        .env_remove("KINDSNAP_DJANGO_PG")
        .env(db.0, db.1)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run manage.py");
    assert!(
        out.status.success(),
        "manage.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn round_trip(
    w: &Work,
    py: &str,
    var: &str,
    original: &str,
    restored: &str,
    loc: &dyn Fn(&str) -> String,
) {
    manage(py, (var, original), &["migrate", "-v", "0"]);
    assert_eq!(manage(py, (var, original), &["fill"]), "filled");
    let before = manage(py, (var, original), &["verify"]);
    w.ok(&["snapshot", "--from", &loc(original), "--name", "django"]);
    w.ok(&["restore", "django", "--to", &loc(restored)]);
    manage(py, (var, restored), &["check", "--database", "default"]);
    manage(py, (var, restored), &["migrate", "--check"]);
    let after = manage(py, (var, restored), &["verify"]);
    assert_eq!(
        before, after,
        "the restored database reads differently through the ORM"
    );
    // New rows get ids past the restored ones (6 users, 3 categories, 20
    // products made and the last deleted: sequences move past the largest
    // restored id, not to the original's counter).
    assert_eq!(manage(py, (var, restored), &["addrow"]), "7 4 20");
    // And the restored database snapshots to the same entities.
    w.ok(&["snapshot", "--from", &loc(original), "--name", "again"]);
    let d = w.ok(&["diff", "django", "again"]);
    assert!(d.contains("no differences"), "{d}");
}

#[test]
fn django_sqlite_project_round_trips() {
    let py = python();
    let w = Work::new();
    w.init();
    let original = w.path("app.sqlite3");
    let restored = w.path("restored.sqlite3");
    round_trip(
        &w,
        &py,
        "KINDSNAP_DJANGO_DB",
        original.to_str().unwrap(),
        restored.to_str().unwrap(),
        &|p| format!("sqlite:{p}"),
    );
}

#[test]
fn django_postgres_project_round_trips() {
    let py = python();
    let pg = sql_support::server();
    let w = Work::new();
    w.init();
    let original = pg.create_db("django");
    let restored = pg.create_db("django_restored");
    round_trip(&w, &py, "KINDSNAP_DJANGO_PG", &original, &restored, &|u| {
        u.to_string()
    });
}

/// The loop the issue names: production on PostgreSQL, a developer's
/// local copy on SQLite. Django migrates and fills PostgreSQL; the
/// snapshot is restored into an empty SQLite file (tables, keys, foreign
/// keys and indexes made from the recorded structure, docs/sql.md "Across
/// engines"); Django then checks it, finds every migration applied, reads
/// the same data through the ORM and adds rows; and a snapshot of the
/// SQLite file has every key of production's.
#[test]
fn django_production_postgres_to_local_sqlite() {
    let py = python();
    let pg = sql_support::server();
    let w = Work::new();
    w.init();
    let prod = pg.create_db("django_prod");
    let pg_db = ("KINDSNAP_DJANGO_PG", prod.as_str());
    manage(&py, pg_db, &["migrate", "-v", "0"]);
    assert_eq!(manage(&py, pg_db, &["fill"]), "filled");
    let before = manage(&py, pg_db, &["verify"]);
    w.ok(&["snapshot", "--from", &prod, "--name", "prod"]);

    let local = w.path("local.sqlite3");
    let local_db = ("KINDSNAP_DJANGO_DB", local.to_str().unwrap());
    w.ok(&[
        "restore",
        "prod",
        "--to",
        &format!("sqlite:{}", local.display()),
    ]);
    manage(&py, local_db, &["check", "--database", "default"]);
    manage(&py, local_db, &["migrate", "--check"]);
    assert_eq!(
        manage(&py, local_db, &["verify"]),
        before,
        "the local copy reads differently through the ORM"
    );
    w.ok(&[
        "snapshot",
        "--from",
        &format!("sqlite:{}", local.display()),
        "--name",
        "local",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&w.ok(&["diff", "prod", "local", "--json"])).unwrap();
    assert_eq!(
        (
            common::count_changes(&v, "added"),
            common::count_changes(&v, "removed")
        ),
        (0, 0),
        "{v}"
    );
    assert_eq!(manage(&py, local_db, &["addrow"]), "7 4 20");
}
