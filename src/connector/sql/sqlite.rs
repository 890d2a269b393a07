//! SQLite files as sources (`sqlite:PATH`) and targets.
//!
//! A snapshot reads every table inside one read transaction, rows in
//! primary-key order, one row in memory at a time. Values keep the storage
//! class SQLite gave them (SQLite has no date or decimal type), so a
//! restore writes back exactly what was read. A table without a primary
//! key uses its rowid as the key.
//!
//! A restore runs with `PRAGMA foreign_keys=OFF` (so tables load in any
//! order, cycles included) and runs `PRAGMA foreign_key_check` before it
//! reports success.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::{
    composite_name, ddl, ident, key, split_composite, text_value, Column, ForeignKey, Part, Table,
    SCHEMA_KIND,
};
use crate::connector::{Encoded, EncodedBatch, EntitySource, EntityTarget, KindOptions, Rejection};
use crate::error::{Error, Result};
use crate::filter::KindFilter;
use crate::model::{ElementId, Entity, Key, Properties, Value, ValueKind};

fn spec(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

/// Map "file is not a database" and friends to one line.
fn open_error(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::Database(format!(
            "{} is not a SQLite database; check the path",
            path.display()
        )),
        Some(rusqlite::ErrorCode::CannotOpen) => Error::Database(format!(
            "cannot open the SQLite database {} (check the path and its permissions)",
            path.display()
        )),
        _ => Error::sql(path)(e),
    }
}

/// Every user table of a database, in name order.
fn reflect(conn: &Connection, path: &Path) -> Result<Vec<Table>> {
    let mut st = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .map_err(|e| open_error(path, e))?;
    let tables: Vec<(String, Option<String>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(|e| open_error(path, e))?;
    let mut out = Vec::new();
    for (name, create) in tables {
        let create = create.unwrap_or_default();
        if create.to_ascii_uppercase().starts_with("CREATE VIRTUAL") {
            tracing::warn!("sqlite: skipping virtual table `{name}` (its shadow tables are kept)");
            continue;
        }
        let mut columns = Vec::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        let mut st = conn
            .prepare(&format!("PRAGMA table_xinfo({})", ident(&name)))
            .map_err(Error::sql(path))?;
        let mut rows = st.query([]).map_err(Error::sql(path))?;
        while let Some(r) = rows.next().map_err(Error::sql(path))? {
            let hidden: i64 = r.get(6).map_err(Error::sql(path))?;
            if hidden != 0 {
                // Generated and virtual-table hidden columns cannot be
                // inserted; the DDL recreates them.
                continue;
            }
            let c = Column {
                name: r.get(1).map_err(Error::sql(path))?,
                sql_type: r.get(2).map_err(Error::sql(path))?,
                not_null: r.get::<_, i64>(3).map_err(Error::sql(path))? != 0,
                default: r.get(4).map_err(Error::sql(path))?,
            };
            let pos: i64 = r.get(5).map_err(Error::sql(path))?;
            if pos > 0 {
                pk.push((pos, c.name.clone()));
            }
            columns.push(c);
        }
        pk.sort();
        let mut fks: BTreeMap<i64, ForeignKey> = BTreeMap::new();
        let mut st = conn
            .prepare(&format!("PRAGMA foreign_key_list({})", ident(&name)))
            .map_err(Error::sql(path))?;
        let mut rows = st.query([]).map_err(Error::sql(path))?;
        while let Some(r) = rows.next().map_err(Error::sql(path))? {
            let id: i64 = r.get(0).map_err(Error::sql(path))?;
            let table: String = r.get(2).map_err(Error::sql(path))?;
            let from: String = r.get(3).map_err(Error::sql(path))?;
            let to: Option<String> = r.get(4).map_err(Error::sql(path))?;
            let fk = fks.entry(id).or_insert_with(|| ForeignKey {
                columns: vec![],
                kind: table,
                ref_columns: vec![],
            });
            fk.columns.push(from);
            if let Some(to) = to {
                fk.ref_columns.push(to);
            }
        }
        let mut ddl = vec![create];
        let mut st = conn
            .prepare(
                "SELECT sql FROM sqlite_master WHERE tbl_name = ?1 AND type IN ('index', 'trigger') \
                 AND sql IS NOT NULL ORDER BY type, name",
            )
            .map_err(Error::sql(path))?;
        let more: Vec<String> = st
            .query_map([&name], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(Error::sql(path))?;
        ddl.extend(more);
        out.push(Table {
            rowid: pk.is_empty(),
            primary_key: pk.into_iter().map(|(_, n)| n).collect(),
            kind: name,
            engine: "sqlite".into(),
            columns,
            foreign_keys: fks.into_values().collect(),
            ddl,
            after: vec![],
        });
    }
    Ok(out)
}

fn pk_lookup(tables: &[Table]) -> impl Fn(&str) -> Option<Vec<String>> + '_ {
    move |kind: &str| {
        tables
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.primary_key.clone())
    }
}

fn is_bool_type(decl: &str) -> bool {
    decl.to_ascii_lowercase().contains("bool")
}

/// A column value as a property.
fn value_of(v: ValueRef<'_>, boolean: bool, reference: Option<&str>) -> Value {
    match (v, reference) {
        (ValueRef::Integer(i), Some(kind)) => {
            Value::new(ValueKind::Key(key(kind, ElementId::Id(i))))
        }
        (ValueRef::Text(t), Some(kind)) => Value::new(ValueKind::Key(key(
            kind,
            ElementId::Name(String::from_utf8_lossy(t).into_owned()),
        ))),
        (ValueRef::Null, _) => Value::new(ValueKind::Null),
        (ValueRef::Integer(i), _) if boolean && (i == 0 || i == 1) => {
            Value::new(ValueKind::Boolean(i == 1))
        }
        (ValueRef::Integer(i), _) => Value::new(ValueKind::Integer(i)),
        (ValueRef::Real(f), _) => Value::new(ValueKind::Double(f)),
        (ValueRef::Text(t), _) => text_value(String::from_utf8_lossy(t).into_owned()),
        (ValueRef::Blob(b), _) => super::blob_value(b.to_vec()),
    }
}

/// The key of a single-column primary key: an integer is an id, text is
/// the name as is, anything else the name of its text form.
fn single_id(v: ValueRef<'_>) -> ElementId {
    match v {
        ValueRef::Integer(i) => ElementId::Id(i),
        ValueRef::Text(t) => ElementId::Name(String::from_utf8_lossy(t).into_owned()),
        v => ElementId::Name(composite_name(&[part_of(v)])),
    }
}

fn part_of(v: ValueRef<'_>) -> Part<'_> {
    match v {
        ValueRef::Null => Part::Null,
        ValueRef::Integer(i) => Part::Int(i),
        ValueRef::Real(f) => Part::Other(format!("{f:?}")),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Part::Text(s),
            Err(_) => Part::Other(String::from_utf8_lossy(t).into_owned()),
        },
        ValueRef::Blob(b) => Part::Other(format!("x'{}'", hex::encode(b))),
    }
}

pub struct SqliteSource {
    path: PathBuf,
    conn: Connection,
    filter: Option<KindFilter>,
}

impl SqliteSource {
    pub fn open(path: &Path) -> Result<SqliteSource> {
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

    /// Stream every chosen table: the schema kind first, then each table in
    /// name order, rows in primary-key order.
    fn scan(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        let path = self.path.clone();
        let sql = || Error::sql(&path);
        // One read transaction: every table is read at the same moment.
        self.conn.execute_batch("BEGIN").map_err(sql())?;
        let result = (|| {
            let all = reflect(&self.conn, &path)?;
            let tables: Vec<&Table> = all
                .iter()
                .filter(|t| self.filter.as_ref().is_none_or(|f| f.allows("", &t.kind)))
                .collect();
            let mut origin = 0u64;
            for t in &tables {
                origin += 1;
                f(t.to_entity(), origin)?;
            }
            let pk_of = pk_lookup(&all);
            for t in tables {
                let refs = t.reference_columns(&pk_of);
                let cols: Vec<&Column> = t.columns.iter().collect();
                let select: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
                let order = if t.rowid {
                    "rowid".to_string()
                } else {
                    t.primary_key
                        .iter()
                        .map(|c| ident(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let q = format!(
                    "SELECT rowid, {} FROM {} ORDER BY {order}",
                    select.join(", "),
                    ident(&t.kind)
                );
                // WITHOUT ROWID tables have no rowid column.
                let q = if t.rowid {
                    q
                } else {
                    q.replacen("SELECT rowid, ", "SELECT 0, ", 1)
                };
                let mut st = self.conn.prepare(&q).map_err(sql())?;
                let pk_at: Vec<usize> = t
                    .primary_key
                    .iter()
                    .filter_map(|p| cols.iter().position(|c| &c.name == p))
                    .collect();
                let single = pk_at.len() == 1;
                let booleans: Vec<bool> = cols.iter().map(|c| is_bool_type(&c.sql_type)).collect();
                let references: Vec<Option<&str>> = cols
                    .iter()
                    .map(|c| refs.get(&c.name).map(|s| s.as_str()))
                    .collect();
                let mut rows = st.query([]).map_err(sql())?;
                while let Some(r) = rows.next().map_err(sql())? {
                    origin += 1;
                    let id = if t.rowid {
                        ElementId::Id(r.get(0).map_err(sql())?)
                    } else if single {
                        single_id(r.get_ref(pk_at[0] + 1).map_err(sql())?)
                    } else {
                        let parts: Vec<Part> = pk_at
                            .iter()
                            .map(|&i| r.get_ref(i + 1).map(part_of))
                            .collect::<rusqlite::Result<_>>()
                            .map_err(sql())?;
                        ElementId::Name(composite_name(&parts))
                    };
                    let mut properties = Properties::new();
                    for (i, c) in cols.iter().enumerate() {
                        if single && pk_at[0] == i {
                            continue;
                        }
                        let v = r.get_ref(i + 1).map_err(sql())?;
                        properties.insert(c.name.clone(), value_of(v, booleans[i], references[i]));
                    }
                    f(
                        Entity {
                            key: key(&t.kind, id),
                            properties,
                        },
                        origin,
                    )?;
                }
            }
            Ok(())
        })();
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

/// A SQLite file as a restore target (created when missing).
pub struct SqliteTarget {
    path: PathBuf,
    conn: Option<Connection>,
    /// Tables on the target, by kind (re-read after creating some).
    tables: HashMap<String, Table>,
    /// Tables recorded in the snapshot's schema kind.
    recorded: BTreeMap<String, Table>,
    /// The kinds this restore writes.
    restoring: BTreeSet<String>,
    uuid_checks: BTreeSet<String>,
    current: Option<String>,
    policy: ddl::SchemaPolicy,
    /// Recorded objects left out, for the report.
    warnings: Vec<String>,
}

impl SqliteTarget {
    pub fn open(path: &Path) -> Result<SqliteTarget> {
        if path.is_dir() {
            return Err(Error::BadLocation {
                spec: spec(path),
                why: "is a directory; give a database file".into(),
            });
        }
        Ok(SqliteTarget {
            path: path.to_path_buf(),
            conn: None,
            tables: HashMap::new(),
            recorded: BTreeMap::new(),
            restoring: BTreeSet::new(),
            uuid_checks: BTreeSet::new(),
            current: None,
            policy: ddl::SchemaPolicy::default(),
            warnings: Vec::new(),
        })
    }

    fn conn(&self) -> Result<&Connection> {
        self.conn
            .as_ref()
            .ok_or(Error::Internal("SQLite target used before start"))
    }

    fn sql(&self) -> impl FnOnce(rusqlite::Error) -> Error + use<> {
        Error::sql(self.path.clone())
    }

    fn refresh(&mut self) -> Result<()> {
        let tables = reflect(self.conn()?, &self.path)?;
        self.tables = tables.into_iter().map(|t| (t.kind.clone(), t)).collect();
        Ok(())
    }

    fn table(&self, kind: &str) -> Result<&Table> {
        self.tables
            .get(kind)
            .ok_or_else(|| super::missing_table(kind, &self.path.display().to_string()))
    }

    fn uuid_problem(&self, t: &Table) -> Option<String> {
        if t.rowid || (t.primary_key.len() == 1 && self.is_rowid_alias(t)) {
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

    fn is_rowid_alias(&self, t: &Table) -> bool {
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

    /// After the schema kind: create recorded tables that are missing,
    /// check the ones that exist.
    fn apply_schema(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        // Every recorded table missing on the target is created (tables
        // that were empty have no kind to restore but belong to the
        // schema); existing ones are checked when rows go into them.
        let recorded: Vec<Table> = self.recorded.values().cloned().collect();
        // Every statement is vetted before any runs.
        let mut create = Vec::new();
        for t in &recorded {
            match self.tables.get(&t.kind) {
                Some(_) if !self.restoring.contains(&t.kind) => {}
                Some(existing) => {
                    if let Some(p) = super::compare_tables(t, existing, &normalise_type) {
                        problems.push(p);
                    }
                }
                None if t.engine != "sqlite" => problems.push(format!(
                    "table `{}` was recorded from {}; create it in the SQLite database first \
                     (tables are created only from a SQLite snapshot)",
                    t.kind, t.engine
                )),
                None => {
                    let vetted = ddl::vet_table(ddl::Engine::Sqlite, t, &self.policy)?;
                    self.warnings.extend(vetted.skipped);
                    create.push((t.kind.clone(), vetted.ddl));
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Database(problems.join("\n")));
        }
        for (kind, statements) in &create {
            let conn = self.conn()?;
            for stmt in statements {
                conn.execute_batch(stmt).map_err(|e| {
                    Error::Database(format!(
                        "creating table `{kind}` in {} failed: {e}",
                        self.path.display()
                    ))
                })?;
            }
        }
        self.refresh()?;
        for kind in std::mem::take(&mut self.uuid_checks) {
            if let Some(p) = self.tables.get(&kind).and_then(|t| self.uuid_problem(t)) {
                return Err(Error::BadArgument(p));
            }
        }
        Ok(())
    }

    fn write_row(&mut self, entity: Entity) -> Result<()> {
        let kind = self
            .current
            .clone()
            .ok_or(Error::Internal("SQLite target: put outside a kind"))?;
        let t = self.table(&kind)?;
        let mut names: Vec<String> = Vec::new();
        let mut values: Vec<SqlValue> = Vec::new();
        let id = entity
            .key
            .path
            .last()
            .map(|p| p.id.clone())
            .ok_or(Error::Internal("SQLite target: empty key"))?;
        if t.rowid || t.primary_key.len() == 1 {
            names.push(if t.rowid {
                "rowid".into()
            } else {
                t.primary_key[0].clone()
            });
            values.push(match id {
                ElementId::Id(i) => SqlValue::Integer(i),
                ElementId::Name(n) => SqlValue::Text(n),
                ElementId::Incomplete => {
                    return Err(Error::Internal("SQLite target: incomplete key"))
                }
            });
        }
        for (name, v) in &entity.properties {
            if t.column(name).is_none() {
                return Err(Error::Database(format!(
                    "table `{kind}` in {} has no column `{name}` (entity {}); add the column or restore into an empty database",
                    self.path.display(),
                    entity.key
                )));
            }
            names.push(name.clone());
            values.push(to_sql(v));
        }
        let conflict = if t.rowid {
            None
        } else {
            Some(
                t.primary_key
                    .iter()
                    .map(|c| ident(c))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        };
        let cols: Vec<String> = names
            .iter()
            .map(|n| if n == "rowid" { n.clone() } else { ident(n) })
            .collect();
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let q = match conflict {
            None => format!(
                "INSERT OR REPLACE INTO {} ({}) VALUES ({})",
                ident(&kind),
                cols.join(", "),
                marks.join(", ")
            ),
            Some(pk) => {
                let pk_names: BTreeSet<&String> = t.primary_key.iter().collect();
                let updates: Vec<String> = names
                    .iter()
                    .filter(|n| !pk_names.contains(n))
                    .map(|n| format!("{0} = excluded.{0}", ident(n)))
                    .collect();
                let action = if updates.is_empty() {
                    "NOTHING".to_string()
                } else {
                    format!("UPDATE SET {}", updates.join(", "))
                };
                format!(
                    "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({pk}) DO {action}",
                    ident(&kind),
                    cols.join(", "),
                    marks.join(", ")
                )
            }
        };
        let conn = self.conn()?;
        let mut st = conn.prepare_cached(&q).map_err(self.sql())?;
        st.execute(rusqlite::params_from_iter(values.iter()))
            .map_err(self.sql())?;
        Ok(())
    }

    fn key_where(&self, t: &Table, k: &Key) -> (String, Vec<SqlValue>) {
        let id = k
            .path
            .last()
            .map(|p| p.id.clone())
            .unwrap_or(ElementId::Incomplete);
        let cols: Vec<String> = if t.rowid {
            vec!["rowid".into()]
        } else {
            t.primary_key.iter().map(|c| ident(c)).collect()
        };
        let vals: Vec<SqlValue> = match id {
            ElementId::Id(i) => vec![SqlValue::Integer(i)],
            ElementId::Name(n) if cols.len() == 1 => vec![SqlValue::Text(n)],
            ElementId::Name(n) => split_composite(&n)
                .into_iter()
                .map(|p| p.map_or(SqlValue::Null, SqlValue::Text))
                .collect(),
            ElementId::Incomplete => vec![],
        };
        let cond: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} IS ?{}", i + 1))
            .collect();
        (cond.join(" AND "), vals)
    }
}

/// SQLite type names compare by what they say, not their spelling.
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

fn normalise_type(t: &str) -> String {
    t.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
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

impl EntityTarget for SqliteTarget {
    fn target_id(&self) -> String {
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("sqlite:{}", abs.display())
    }

    fn start(&mut self, _resuming: bool) -> Result<()> {
        let conn = Connection::open(&self.path).map_err(|e| open_error(&self.path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(self.sql())?;
        guard(&conn).map_err(self.sql())?;
        // Off during the load (any table order, cycles); checked in finish.
        conn.execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(self.sql())?;
        self.conn = Some(conn);
        self.refresh()?;
        self.conn()?.execute_batch("BEGIN").map_err(self.sql())?;
        Ok(())
    }

    fn set_schema_policy(&mut self, policy: ddl::SchemaPolicy) {
        self.policy = policy;
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn list_kinds(&mut self) -> Result<Vec<(String, String)>> {
        if self.conn.is_none() {
            self.start(false)?;
        }
        let mut kinds: Vec<(String, String)> = self
            .tables
            .keys()
            .map(|k| (String::new(), k.clone()))
            .collect();
        kinds.sort();
        Ok(kinds)
    }

    fn check_uuid_names(&mut self, _ns: &str, kind: &str) -> Result<()> {
        if kind == SCHEMA_KIND {
            return Ok(());
        }
        match self.tables.get(kind) {
            Some(t) => match self.uuid_problem(t) {
                Some(p) => Err(Error::BadArgument(p)),
                None => Ok(()),
            },
            // Created from the recorded schema later; checked then.
            None => {
                self.uuid_checks.insert(kind.to_string());
                Ok(())
            }
        }
    }

    fn order_kinds(&mut self, kinds: Vec<(String, String)>) -> Result<Vec<(String, String)>> {
        self.restoring = kinds.iter().map(|(_, k)| k.clone()).collect();
        Ok(super::order_kinds(
            kinds,
            &super::fk_deps(self.tables.values()),
        ))
    }

    fn begin_kind(&mut self, _ns: &str, kind: &str, _o: KindOptions) -> Result<()> {
        if kind != SCHEMA_KIND {
            self.table(kind)?;
        }
        self.current = Some(kind.to_string());
        Ok(())
    }

    fn put(&mut self, entity: Entity) -> Result<()> {
        if self.current.as_deref() == Some(SCHEMA_KIND) {
            let t = Table::from_entity(&entity)?;
            self.recorded.insert(t.kind.clone(), t);
            return Ok(());
        }
        self.write_row(entity)
    }

    fn sync(&mut self) -> Result<()> {
        self.conn()?
            .execute_batch("COMMIT; BEGIN")
            .map_err(self.sql())
    }

    fn take_rejections(&mut self) -> Vec<Rejection> {
        Vec::new()
    }

    fn end_kind(&mut self) -> Result<()> {
        if self.current.take().as_deref() == Some(SCHEMA_KIND) {
            self.apply_schema()?;
        }
        Ok(())
    }

    fn reserve_ids(&mut self, _ns: &str, kind: &str, keys: &[Key]) -> Result<()> {
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
                rusqlite::params![kind, max],
            )
            .map_err(self.sql())?;
        }
        Ok(())
    }

    fn reserve_method(&self) -> &'static str {
        "sqlite: max(rowid)+1 and sqlite_sequence past the restored ids"
    }

    fn scan_keys(
        &mut self,
        _ns: &str,
        kind: &str,
        f: &mut dyn FnMut(Key) -> Result<()>,
    ) -> Result<()> {
        if kind == SCHEMA_KIND {
            // Tables are never deleted by --exact or --clear.
            return Ok(());
        }
        let t = self.table(kind)?.clone();
        let cols: Vec<String> = if t.rowid {
            vec!["rowid".into()]
        } else {
            t.primary_key.iter().map(|c| ident(c)).collect()
        };
        let conn = self.conn()?;
        let mut st = conn
            .prepare(&format!("SELECT {} FROM {}", cols.join(", "), ident(kind)))
            .map_err(self.sql())?;
        let mut rows = st.query([]).map_err(self.sql())?;
        while let Some(r) = rows.next().map_err(self.sql())? {
            let id = if cols.len() == 1 {
                single_id(r.get_ref(0).map_err(self.sql())?)
            } else {
                let parts: Vec<Part> = (0..cols.len())
                    .map(|i| r.get_ref(i).map(part_of))
                    .collect::<rusqlite::Result<_>>()
                    .map_err(self.sql())?;
                ElementId::Name(composite_name(&parts))
            };
            f(key(kind, id))?;
        }
        Ok(())
    }

    fn delete(&mut self, keys: Vec<Key>) -> Result<()> {
        for k in keys {
            let kind = k.kind().to_string();
            if kind == SCHEMA_KIND {
                continue;
            }
            let t = self.table(&kind)?.clone();
            let (cond, vals) = self.key_where(&t, &k);
            self.conn()?
                .prepare_cached(&format!("DELETE FROM {} WHERE {cond}", ident(&kind)))
                .and_then(|mut st| st.execute(rusqlite::params_from_iter(vals.iter())))
                .map_err(self.sql())?;
        }
        Ok(())
    }

    fn clear_kind(&mut self, _ns: &str, kind: &str) -> Result<u64> {
        if kind == SCHEMA_KIND || !self.tables.contains_key(kind) {
            return Ok(0);
        }
        let n = self
            .conn()?
            .execute(&format!("DELETE FROM {}", ident(kind)), [])
            .map_err(self.sql())?;
        Ok(n as u64)
    }

    fn discard(&mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        let sql = Error::sql(self.path.clone());
        conn.execute_batch("COMMIT").map_err(sql)?;
        let mut st = conn
            .prepare("PRAGMA foreign_key_check")
            .map_err(Error::sql(&self.path))?;
        let bad: Vec<(String, Option<i64>, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.take(1000).collect())
            .map_err(Error::sql(&self.path))?;
        if let Some((table, rowid, parent)) = bad.first() {
            return Err(Error::Database(format!(
                "{2} now breaks {0} foreign key{1} (first: table `{table}` row {3} points at a missing `{parent}` row); \
                 restore the referenced kinds too (--with-references), clear the referencing ones, or fix the rows",
                if bad.len() >= 1000 {
                    "1000 or more".to_string()
                } else {
                    bad.len().to_string()
                },
                if bad.len() == 1 { "" } else { "s" },
                self.path.display(),
                rowid.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
            )));
        }
        Ok(())
    }
}
