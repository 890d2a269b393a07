//! SQLite files as sources (`sqlite:PATH`) and targets: the SQLite
//! [`Reader`] and [`Dialect`] behind the shared scan and target.
//!
//! A snapshot reads every table inside one read transaction, rows in
//! primary-key order, one row in memory at a time. Values keep the storage
//! class SQLite gave them (SQLite has no date or decimal type), so a
//! restore writes back exactly what was read. A table without a primary
//! key uses its rowid as the key.
//!
//! A restore runs with `PRAGMA foreign_keys=OFF` (so tables load in any
//! order, cycles included) and runs `PRAGMA foreign_key_check` before it
//! reports success. No trigger fires during a restore: the triggers of the
//! restored tables are dropped before the load and recreated after it, and
//! triggers of created tables are created after their data. Until then
//! they wait in a `kindsnap_pending_constraints` table in the file, so an
//! interrupted restore recreates them when resumed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::crossengine::{affinity, Affinity};
use super::dialect::{Dialect, Reader, Row};
use super::target::SqlTarget;
use super::{
    ddl, ident, kind_for_table, meaning, scan, table_for_kind, text_value, with_meaning, Column,
    ForeignKey, Part, Table,
};

/// Statements to run after the load (triggers), kept in the target.
const PENDING: &str = "kindsnap_pending_constraints";
use crate::connector::{Encoded, EncodedBatch, EntitySource};
use crate::error::{Error, Result};
use crate::filter::KindFilter;
use crate::model::{ElementId, Entity, Key, Value, ValueKind};

fn spec(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

/// Map "file is not a database" and friends to one line.
fn open_error(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::NotSqlite { path: path.into() },
        Some(rusqlite::ErrorCode::CannotOpen) => Error::SqliteOpen {
            path: path.into(),
            source: e,
        },
        _ => Error::sql(path)(e),
    }
}

/// Every user table of a database, in name order.
fn reflect(conn: &Connection, path: &Path) -> Result<Vec<Table>> {
    let mut st = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> ?1 ORDER BY name",
        )
        .map_err(|e| open_error(path, e))?;
    let tables: Vec<(String, Option<String>)> = st
        .query_map([PENDING], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(|e| open_error(path, e))?;
    let pragmas = database_pragmas(conn).map_err(Error::sql(path))?;
    let mut out = Vec::new();
    for (name, create) in tables {
        let create = create.unwrap_or_default();
        if create.to_ascii_uppercase().starts_with("CREATE VIRTUAL") {
            tracing::warn!("sqlite: skipping virtual table `{name}` (its shadow tables are kept)");
            continue;
        }
        let (columns, pk) = columns(conn, &name).map_err(Error::sql(path))?;
        let mut ddl = vec![create];
        ddl.extend(indexes_and_triggers(conn, &name).map_err(Error::sql(path))?);
        out.push(Table {
            rowid: pk.is_empty(),
            primary_key: pk,
            foreign_keys: foreign_keys(conn, &name).map_err(Error::sql(path))?,
            kind: kind_for_table(&name),
            engine: SqliteDb::ENGINE.into(),
            columns,
            ddl,
            after: vec![],
            pragmas: pragmas.clone(),
        });
    }
    Ok(out)
}

/// A table's insertable columns and its primary key's columns in order.
/// The database settings a restore puts back (see [`Table::pragmas`]).
const PRAGMAS: [&str; 2] = ["user_version", "application_id"];

/// `NAME=VALUE` for each of [`PRAGMAS`] that is not 0.
fn database_pragmas(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    for name in PRAGMAS {
        let v: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
        if v != 0 {
            out.push(format!("{name}={v}"));
        }
    }
    Ok(out)
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<(Vec<Column>, Vec<String>)> {
    let mut columns = Vec::new();
    let mut pk: Vec<(i64, String)> = Vec::new();
    let mut st = conn.prepare(&format!("PRAGMA table_xinfo({})", ident(table)))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let hidden: i64 = r.get(6)?;
        if hidden != 0 {
            // Generated and virtual-table hidden columns cannot be
            // inserted; the DDL recreates them.
            continue;
        }
        let c = Column {
            name: r.get(1)?,
            sql_type: r.get(2)?,
            not_null: r.get::<_, i64>(3)? != 0,
            default: r.get(4)?,
        };
        let pos: i64 = r.get(5)?;
        if pos > 0 {
            pk.push((pos, c.name.clone()));
        }
        columns.push(c);
    }
    pk.sort();
    Ok((columns, pk.into_iter().map(|(_, n)| n).collect()))
}

fn foreign_keys(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ForeignKey>> {
    let mut fks: BTreeMap<i64, ForeignKey> = BTreeMap::new();
    let mut st = conn.prepare(&format!("PRAGMA foreign_key_list({})", ident(table)))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let referenced: String = r.get(2)?;
        let from: String = r.get(3)?;
        let to: Option<String> = r.get(4)?;
        let fk = fks.entry(id).or_insert_with(|| ForeignKey {
            columns: vec![],
            kind: kind_for_table(&referenced),
            ref_columns: vec![],
        });
        fk.columns.push(from);
        if let Some(to) = to {
            fk.ref_columns.push(to);
        }
    }
    Ok(fks.into_values().collect())
}

fn indexes_and_triggers(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ?1 AND type IN ('index', 'trigger') \
         AND sql IS NOT NULL ORDER BY type, name",
    )?;
    let rows = st.query_map([table], |r| r.get(0))?;
    rows.collect()
}

fn is_bool_type(decl: &str) -> bool {
    decl.to_ascii_lowercase().contains("bool")
}

/// A column value as a property. TEXT that is not valid UTF-8 becomes
/// its bytes, marked, so a restore writes the same bytes back as TEXT.
fn value_of(v: ValueRef<'_>, boolean: bool) -> Value {
    match v {
        ValueRef::Null => Value::new(ValueKind::Null),
        ValueRef::Integer(i) if boolean && (i == 0 || i == 1) => {
            Value::new(ValueKind::Boolean(i == 1))
        }
        ValueRef::Integer(i) => Value::new(ValueKind::Integer(i)),
        ValueRef::Real(f) => Value::new(ValueKind::Double(f)),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => text_value(s.to_string()),
            Err(_) => with_meaning(super::blob_value(t.to_vec()), meaning::TEXT_BYTES),
        },
        ValueRef::Blob(b) => super::blob_value(b.to_vec()),
    }
}

/// A column value as a key component, with its storage class. `loose`:
/// the column has no TEXT affinity, so it may hold `5` and `'5'` both.
fn part_of(v: ValueRef<'_>, loose: bool) -> Part<'_> {
    match v {
        ValueRef::Null => Part::Null,
        ValueRef::Integer(i) => Part::Int(i),
        ValueRef::Real(f) => Part::Real(f),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) if loose => Part::LooseText(s.into()),
            Ok(s) => Part::Text(s.into()),
            Err(_) => Part::TextBytes(t.into()),
        },
        ValueRef::Blob(b) => Part::Blob(b.into()),
    }
}

/// Per column of `t`: whether it lacks TEXT affinity (see [`part_of`]).
fn loose_columns<'a>(t: &Table, names: impl Iterator<Item = &'a str>) -> Vec<bool> {
    names
        .map(|n| {
            t.column(n)
                .is_none_or(|c| affinity(&c.sql_type) != Affinity::Text)
        })
        .collect()
}

/// A value SQLite binds: any SQLite value, or TEXT given as bytes that
/// are not UTF-8 (which `rusqlite::types::Value` cannot hold).
#[derive(Debug, Clone)]
pub(crate) enum SqliteParam {
    Value(SqlValue),
    TextBytes(Vec<u8>),
}

impl rusqlite::ToSql for SqliteParam {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            SqliteParam::Value(v) => v.to_sql(),
            SqliteParam::TextBytes(b) => {
                Ok(rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Text(b)))
            }
        }
    }
}

pub(crate) struct SqliteSource {
    path: PathBuf,
    conn: Connection,
    filter: Option<KindFilter>,
}

impl SqliteSource {
    pub(crate) fn open(path: &Path) -> Result<SqliteSource> {
        match std::fs::metadata(path) {
            Err(_) => {
                return Err(Error::BadLocation {
                    spec: spec(path),
                    why: "no such file".into(),
                })
            }
            Ok(m) if m.is_dir() => {
                return Err(Error::BadLocation {
                    spec: spec(path),
                    why: "is a directory".into(),
                })
            }
            _ => {}
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(Error::sql(path))?;
        // Fails here, not half-way, on a file that is not a database.
        reflect(&conn, path)?;
        Ok(SqliteSource {
            path: path.to_path_buf(),
            conn,
            filter: None,
        })
    }

    /// Stream every chosen table (see [`scan::scan`]) inside one read
    /// transaction: every table is read at the same moment.
    fn scan(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        self.conn
            .execute_batch("BEGIN")
            .map_err(Error::sql(&self.path))?;
        let mut reader = SqliteReader {
            conn: &self.conn,
            path: &self.path,
        };
        let result = scan::scan(&mut reader, self.filter.as_ref(), f);
        let _ = self.conn.execute_batch("COMMIT");
        result
    }
}

impl EntitySource for SqliteSource {
    fn source_id(&self) -> String {
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("sqlite:{}", abs.display())
    }

    fn set_filter(&mut self, filter: &KindFilter) {
        self.filter = Some(filter.clone());
    }

    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        self.scan(f)
    }

    fn describe(&self, origin: u64) -> String {
        format!("{} (row {origin})", self.path.display())
    }

    fn for_each_encoded(&mut self, f: &mut dyn FnMut(Encoded<'_>) -> Result<()>) -> Result<()> {
        // One batch buffer, reused for every row.
        let mut batch = EncodedBatch::with_capacity(1 << 16);
        self.scan(&mut |e, origin| {
            batch.clear();
            batch.push(e, origin);
            for e in batch.iter() {
                f(e)?;
            }
            Ok(())
        })
    }
}

/// A snapshot's view of the database, inside its read transaction.
struct SqliteReader<'c> {
    conn: &'c Connection,
    path: &'c Path,
}

impl Reader for SqliteReader<'_> {
    const ENGINE: &'static str = SqliteDb::ENGINE;
    type Table = Table;

    fn tables(&mut self) -> Result<Vec<Table>> {
        reflect(self.conn, self.path)
    }

    fn columns(t: &Table) -> Vec<&Column> {
        t.columns.iter().collect()
    }

    fn rows(&mut self, t: &Table, f: &mut dyn FnMut(&dyn Row) -> Result<()>) -> Result<()> {
        let sql = || Error::sql(self.path);
        let select: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
        let order = if t.rowid {
            "rowid".to_string()
        } else {
            let pk: Vec<String> = t.primary_key.iter().map(|c| ident(c)).collect();
            pk.join(", ")
        };
        // WITHOUT ROWID tables have no rowid column.
        let q = format!(
            "SELECT {}, {} FROM {} ORDER BY {order}",
            if t.rowid { "rowid" } else { "0" },
            select.join(", "),
            ident(table_for_kind(&t.kind))
        );
        let booleans: Vec<bool> = t
            .columns
            .iter()
            .map(|c| is_bool_type(&c.sql_type))
            .collect();
        let loose = loose_columns(t, t.columns.iter().map(|c| c.name.as_str()));
        let mut st = self.conn.prepare(&q).map_err(sql())?;
        let mut rows = st.query([]).map_err(sql())?;
        while let Some(row) = rows.next().map_err(sql())? {
            f(&SqliteRow {
                row,
                booleans: &booleans,
                loose: &loose,
                path: self.path,
            })?;
        }
        Ok(())
    }
}

/// A row of `SELECT rowid, columns…`: column `i` is at `i + 1`.
struct SqliteRow<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    booleans: &'a [bool],
    loose: &'a [bool],
    path: &'a Path,
}

impl Row for SqliteRow<'_, '_> {
    fn rowid(&self) -> Result<i64> {
        self.row.get(0).map_err(Error::sql(self.path))
    }

    fn part(&self, i: usize) -> Result<Part<'_>> {
        let v = self.row.get_ref(i + 1).map_err(Error::sql(self.path))?;
        Ok(part_of(v, self.loose[i]))
    }

    fn value(&self, i: usize) -> Result<Value> {
        let v = self.row.get_ref(i + 1).map_err(Error::sql(self.path))?;
        Ok(value_of(v, self.booleans[i]))
    }
}

/// A SQLite file as a restore target (created when missing).
pub(crate) type SqliteTarget = SqlTarget<SqliteDb>;

impl SqlTarget<SqliteDb> {
    pub(crate) fn open(path: &Path) -> Result<SqliteTarget> {
        if path.is_dir() {
            return Err(Error::BadLocation {
                spec: spec(path),
                why: "is a directory; give a database file".into(),
            });
        }
        Ok(SqlTarget::new(SqliteDb {
            path: path.to_path_buf(),
            shown: path.display().to_string(),
            conn: None,
            warnings: Vec::new(),
        }))
    }
}

/// The SQLite side of a restore: one connection, one transaction from
/// `start` (committed at every sync) to `finish`.
pub(crate) struct SqliteDb {
    path: PathBuf,
    /// The path in messages.
    shown: String,
    conn: Option<Connection>,
    warnings: Vec<String>,
}

impl SqliteDb {
    fn conn(&self) -> Result<&Connection> {
        self.conn
            .as_ref()
            .ok_or(Error::Internal("SQLite target used before start"))
    }

    fn sql(&self) -> impl FnOnce(rusqlite::Error) -> Error + use<> {
        Error::sql(self.path.clone())
    }

    /// Keep `def` to run after the load.
    fn keep_pending(&self, tbl: &str, name: &str, def: &str) -> Result<()> {
        let conn = self.conn()?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {PENDING} (tbl TEXT NOT NULL, name TEXT NOT NULL, \
             def TEXT NOT NULL, PRIMARY KEY (tbl, name))"
        ))
        .map_err(self.sql())?;
        conn.execute(
            &format!("INSERT OR IGNORE INTO {PENDING} (tbl, name, def) VALUES (?1, ?2, ?3)"),
            rusqlite::params![tbl, name, def],
        )
        .map_err(self.sql())?;
        Ok(())
    }

    /// Run what the load set aside (in the order kept), in one
    /// transaction, and forget it.
    fn run_pending(&self, conn: &Connection) -> Result<()> {
        let exists: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [PENDING],
                |r| r.get::<_, i64>(0),
            )
            .map_err(self.sql())?
            > 0;
        if !exists {
            return Ok(());
        }
        conn.execute_batch("BEGIN").map_err(self.sql())?;
        let defs: Vec<(String, String)> = conn
            .prepare(&format!("SELECT tbl, def FROM {PENDING} ORDER BY rowid"))
            .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(self.sql())?;
        for (tbl, def) in defs {
            conn.execute_batch(&def).map_err(|e| Error::CreateFailed {
                what: format!("a trigger of table `{tbl}`"),
                target: self.shown.clone(),
                why: e.to_string(),
                kept: Some(format!(
                    "it is kept in {PENDING} (column def) to create by hand"
                )),
            })?;
        }
        conn.execute_batch(&format!("DROP TABLE {PENDING}; COMMIT"))
            .map_err(self.sql())
    }

    /// The key columns in a statement: the rowid or the primary key.
    fn key_columns(t: &Table) -> Vec<String> {
        if t.rowid {
            vec!["rowid".into()]
        } else {
            t.primary_key.iter().map(|c| ident(c)).collect()
        }
    }
}

/// `--keys uuid` needs a key that can hold text; a rowid (or its alias,
/// `INTEGER PRIMARY KEY` in a rowid table) cannot.
fn uuid_problem(t: &Table) -> Option<String> {
    if t.rowid || (t.primary_key.len() == 1 && is_rowid_alias(t)) {
        return Some(format!(
            "--keys uuid needs a key column that can hold text, but the key of table `{}` is \
             SQLite's integer rowid{}; restore with --keys keep",
            t.kind,
            t.primary_key
                .first()
                .map(|c| format!(" (`{c}` INTEGER PRIMARY KEY)"))
                .unwrap_or_default()
        ));
    }
    None
}

fn is_rowid_alias(t: &Table) -> bool {
    let Some(c) = t.primary_key.first().and_then(|p| t.column(p)) else {
        return false;
    };
    let create = t
        .ddl
        .first()
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_default();
    c.sql_type.eq_ignore_ascii_case("INTEGER") && !create.contains("WITHOUT ROWID")
}

/// The statement that upserts a row of `t` into `columns`: a rowid table
/// replaces the row, a keyed one updates every other column.
fn upsert(t: &Table, columns: &[String]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|n| if n == "rowid" { n.clone() } else { ident(n) })
        .collect();
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let into = format!(
        "INTO {} ({}) VALUES ({})",
        ident(table_for_kind(&t.kind)),
        cols.join(", "),
        marks.join(", ")
    );
    if t.rowid {
        return format!("INSERT OR REPLACE {into}");
    }
    let pk_names: BTreeSet<&String> = t.primary_key.iter().collect();
    let updates: Vec<String> = columns
        .iter()
        .filter(|n| !pk_names.contains(n))
        .map(|n| format!("{0} = excluded.{0}", ident(n)))
        .collect();
    let action = if updates.is_empty() {
        "NOTHING".to_string()
    } else {
        format!("UPDATE SET {}", updates.join(", "))
    };
    let pk: Vec<String> = t.primary_key.iter().map(|c| ident(c)).collect();
    format!("INSERT {into} ON CONFLICT ({}) DO {action}", pk.join(", "))
}

impl Dialect for SqliteDb {
    const ENGINE: &'static str = "sqlite";
    const NAME: &'static str = "SQLite";
    const DDL: ddl::Engine = ddl::Engine::Sqlite;
    type Table = Table;
    type Param = SqliteParam;

    fn target_id(&self) -> String {
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("sqlite:{}", abs.display())
    }

    fn shown(&self) -> &str {
        &self.shown
    }

    fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    fn open(&mut self) -> Result<()> {
        let conn = Connection::open(&self.path).map_err(|e| open_error(&self.path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(self.sql())?;
        guard(&conn).map_err(self.sql())?;
        // Off during the load (any table order, cycles); checked in finish.
        conn.execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(self.sql())?;
        self.conn = Some(conn);
        Ok(())
    }

    fn reflect(&mut self) -> Result<Vec<Table>> {
        reflect(self.conn()?, &self.path)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn()?.execute_batch(sql).map_err(self.sql())
    }

    fn execute(&mut self, sql: &str) -> Result<u64> {
        let n = self.conn()?.execute(sql, []).map_err(self.sql())?;
        Ok(n as u64)
    }

    fn run_ddl(&mut self, stmt: &str) -> std::result::Result<(), String> {
        let conn = self.conn().map_err(|e| e.to_string())?;
        conn.execute_batch(stmt).map_err(|e| e.to_string())
    }

    /// Foreign keys are part of SQLite's `CREATE TABLE`; what comes
    /// after the load is a created table's triggers.
    fn defer(&mut self, kind: &str, statements: &[String]) -> Result<()> {
        for (i, def) in statements.iter().enumerate() {
            self.keep_pending(kind, &format!("recorded-{i}"), def)?;
        }
        Ok(())
    }

    /// The triggers of the tables restored go until `finish`, so that
    /// the load fires none.
    fn before_load(&mut self, restoring: &BTreeSet<String>) -> Result<()> {
        let triggers: Vec<(String, String, String)> = self
            .conn()?
            .prepare("SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'trigger'")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(self.sql())?;
        for (tbl, name, sql) in triggers {
            if !restoring.contains(&kind_for_table(&tbl)) {
                continue;
            }
            self.keep_pending(&tbl, &format!("trigger-{name}"), &sql)?;
            self.conn()?
                .execute_batch(&format!("DROP TRIGGER {}", ident(&name)))
                .map_err(self.sql())?;
        }
        Ok(())
    }

    fn name(t: &Table) -> String {
        ident(table_for_kind(&t.kind))
    }

    fn uuid_problem(&self, t: &Table) -> Option<String> {
        uuid_problem(t)
    }

    /// `user_version` and `application_id` as recorded, into a database
    /// whose own are 0; one that has its own keeps it, with a warning.
    fn apply_pragmas(&mut self, recorded: &BTreeSet<String>) -> Result<()> {
        for setting in recorded {
            let parsed = setting
                .split_once('=')
                .filter(|(name, _)| PRAGMAS.contains(name))
                .and_then(|(name, v)| Some((name, v.parse::<i32>().ok()?)));
            let Some((name, value)) = parsed else {
                self.warnings.push(format!(
                    "the recorded database setting `{setting}` is not one kindsnap restores; left out"
                ));
                continue;
            };
            let conn = self.conn()?;
            let now: i64 = conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .map_err(self.sql())?;
            if now == 0 {
                conn.execute_batch(&format!("PRAGMA {name} = {value}"))
                    .map_err(self.sql())?;
            } else if now != i64::from(value) {
                self.warnings.push(format!(
                    "PRAGMA {name} is {now} in {}, {value} in the snapshot; left as it is \
                     (set it by hand if the restored data needs it)",
                    self.shown
                ));
            }
        }
        Ok(())
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn param(v: &Value) -> SqliteParam {
        match &v.kind {
            ValueKind::Blob(b) if v.meaning == Some(meaning::TEXT_BYTES) => {
                SqliteParam::TextBytes(b.clone())
            }
            _ => SqliteParam::Value(to_sql(v)),
        }
    }

    fn key_param(p: &Part<'_>) -> SqliteParam {
        SqliteParam::Value(match p {
            Part::Null => SqlValue::Null,
            Part::Int(i) => SqlValue::Integer(*i),
            Part::Text(t) | Part::LooseText(t) => SqlValue::Text(t.to_string()),
            Part::Real(f) => SqlValue::Real(*f),
            Part::Blob(b) => SqlValue::Blob(b.to_vec()),
            Part::TextBytes(b) => return SqliteParam::TextBytes(b.to_vec()),
        })
    }

    fn write(&mut self, t: &Table, columns: Vec<String>, row: Vec<SqliteParam>) -> Result<()> {
        let q = upsert(t, &columns);
        let mut st = self.conn()?.prepare_cached(&q).map_err(self.sql())?;
        st.execute(rusqlite::params_from_iter(row.iter()))
            .map_err(self.sql())?;
        Ok(())
    }

    fn key_rows(&mut self, t: &Table, f: &mut dyn FnMut(&[Part<'_>]) -> Result<()>) -> Result<()> {
        let cols = SqliteDb::key_columns(t);
        let loose = loose_columns(t, t.primary_key.iter().map(String::as_str));
        let q = format!(
            "SELECT {} FROM {}",
            cols.join(", "),
            ident(table_for_kind(&t.kind))
        );
        let mut st = self.conn()?.prepare(&q).map_err(self.sql())?;
        let mut rows = st.query([]).map_err(self.sql())?;
        while let Some(r) = rows.next().map_err(self.sql())? {
            let parts: Vec<Part> = (0..cols.len())
                .map(|i| {
                    r.get_ref(i)
                        .map(|v| part_of(v, loose.get(i) == Some(&true)))
                })
                .collect::<rusqlite::Result<_>>()
                .map_err(self.sql())?;
            f(&parts)?;
        }
        Ok(())
    }

    fn delete(&mut self, t: &Table, key: Vec<SqliteParam>) -> Result<()> {
        let cond: Vec<String> = SqliteDb::key_columns(t)
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} IS ?{}", i + 1))
            .collect();
        let q = format!(
            "DELETE FROM {} WHERE {}",
            ident(table_for_kind(&t.kind)),
            cond.join(" AND ")
        );
        self.conn()?
            .prepare_cached(&q)
            .and_then(|mut st| st.execute(rusqlite::params_from_iter(key.iter())))
            .map_err(self.sql())?;
        Ok(())
    }

    fn reserve_ids(&mut self, t: &Table, keys: &[Key]) -> Result<()> {
        // SQLite hands out max(rowid)+1, and raises sqlite_sequence itself
        // when an explicit larger id is inserted into an AUTOINCREMENT
        // table; raise it here too in case rows were deleted since.
        let max = keys
            .iter()
            .filter_map(|k| match k.path.last().map(|p| &p.id) {
                Some(ElementId::Id(i)) => Some(*i),
                _ => None,
            })
            .max();
        let Some(max) = max else { return Ok(()) };
        let conn = self.conn()?;
        let has_seq: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(self.sql())?
            > 0;
        if has_seq {
            conn.execute(
                "UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1 AND seq < ?2",
                rusqlite::params![table_for_kind(&t.kind), max],
            )
            .map_err(self.sql())?;
        }
        Ok(())
    }

    fn reserve_method(&self) -> &'static str {
        "sqlite: max(rowid)+1 and sqlite_sequence past the restored ids"
    }

    fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }

    fn finish(&mut self) -> Result<()> {
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        conn.execute_batch("COMMIT").map_err(self.sql())?;
        self.run_pending(&conn)?;
        foreign_key_check(&conn, &self.path)
    }
}

/// After the load: refuse to report success while a row points at a
/// missing one.
fn foreign_key_check(conn: &Connection, path: &Path) -> Result<()> {
    let mut st = conn
        .prepare("PRAGMA foreign_key_check")
        .map_err(Error::sql(path))?;
    let bad: Vec<(String, Option<i64>, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|rows| rows.take(1000).collect())
        .map_err(Error::sql(path))?;
    let Some((table, rowid, parent)) = bad.first() else {
        return Ok(());
    };
    Err(Error::BrokenForeignKeys {
        target: path.display().to_string(),
        what: format!(
            "{0} foreign key{1} (first: table `{table}` row {2} points at a missing `{parent}` row)",
            if bad.len() >= 1000 {
                "1000 or more".to_string()
            } else {
                bad.len().to_string()
            },
            if bad.len() == 1 { "" } else { "s" },
            rowid.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
        ),
    })
}

/// Defence in depth for a restore, whatever the recorded schema says:
/// SQLite's defensive mode (no writes to the schema table, no corrupting
/// pragmas), and an authorizer that denies ATTACH and DETACH, writes to any
/// database but the target, and the functions that reach files.
fn guard(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.authorizer(Some(|ctx: AuthContext<'_>| {
        let elsewhere = !matches!(ctx.database_name, None | Some("main" | "temp"));
        match ctx.action {
            AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
            AuthAction::Function { function_name }
                if [
                    "load_extension",
                    "readfile",
                    "writefile",
                    "edit",
                    "fts3_tokenizer",
                ]
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)) =>
            {
                Authorization::Deny
            }
            AuthAction::Read { .. } | AuthAction::Select | AuthAction::Transaction { .. } => {
                Authorization::Allow
            }
            AuthAction::Pragma { .. } | AuthAction::Function { .. } => Authorization::Allow,
            _ if elsewhere => Authorization::Deny,
            _ => Authorization::Allow,
        }
    }));
    Ok(())
}

/// A property as a SQLite value.
fn to_sql(v: &Value) -> SqlValue {
    match &v.kind {
        ValueKind::Null => SqlValue::Null,
        ValueKind::Boolean(b) => SqlValue::Integer(*b as i64),
        ValueKind::Integer(i) => SqlValue::Integer(*i),
        ValueKind::Double(d) => SqlValue::Real(*d),
        ValueKind::Timestamp(t) => SqlValue::Text(super::format_sql_timestamp(
            *t,
            v.meaning == Some(super::meaning::DATE),
        )),
        ValueKind::String(s) => SqlValue::Text(s.clone()),
        ValueKind::Blob(b) => SqlValue::Blob(b.clone()),
        ValueKind::Key(k) => match k.path.last().map(|p| &p.id) {
            Some(ElementId::Id(i)) => SqlValue::Integer(*i),
            Some(ElementId::Name(n)) => SqlValue::Text(n.clone()),
            _ => SqlValue::Null,
        },
        ValueKind::GeoPoint(_) | ValueKind::Array(_) | ValueKind::Entity(_) => {
            SqlValue::Text(super::plain_json(v).to_string())
        }
    }
}
