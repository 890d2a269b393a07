//! PostgreSQL databases as sources (`postgres://USER:PASSWORD@HOST:PORT/DB`)
//! and targets, through the synchronous `postgres` crate.
//!
//! A snapshot reads every table inside one `REPEATABLE READ READ ONLY`
//! transaction, through a portal fetched a few thousand rows at a time, in
//! primary-key order (text keys in byte order, `COLLATE "C"`). The
//! synchronous client has no read timeout, so the reading runs on a thread
//! of its own and the caller waits for each batch of rows at most the
//! answer timeout; connecting (start-up and authentication included) runs
//! on a thread too, bounded by `connect_timeout` from the URL or the
//! caller's [`Timeouts`]. A server that stops answering then ends the
//! command with [`Error::Timeout`]; the abandoned thread stays blocked on
//! its socket until the process exits. Values are
//! read in their text form and parsed by column type (see docs/sql.md); a
//! restore writes text back with a cast to the column's type, so every
//! type PostgreSQL can print round-trips. Tables without a primary key are
//! skipped with a warning (`ctid` is not a stable identity).
//!
//! A restore drops the restored tables' foreign-key constraints for the
//! load (so tables load in any order, cycles included), remembers them in
//! a `kindsnap_pending_constraints` table on the target (so an interrupted
//! restore re-adds them when resumed) and re-adds them, validated, in
//! `finish`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use super::{
    composite_name, ddl, ident, key, meaning, split_composite, text_value, with_meaning, Column,
    ForeignKey, Part, Table, SCHEMA_KIND,
};
use crate::connector::{EntitySource, EntityTarget, KindOptions, Rejection};
use crate::error::{Error, Result};
use crate::filter::KindFilter;
use crate::model::{ElementId, Entity, Key, Properties, Value, ValueKind};
use crate::net::{self, Timeouts};

const PENDING: &str = "kindsnap_pending_constraints";
const FETCH_ROWS: i32 = 2000;

/// The URL without its password, for ids and messages.
fn redacted(url: &str) -> String {
    let Ok(cfg) = url.parse::<postgres::Config>() else {
        return "postgres://?".into();
    };
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(s) => s.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = cfg.get_dbname().or(cfg.get_user()).unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db}")
}

/// What every session sets first, so values print the same everywhere.
const SESSION_SETUP: &str = "SET TimeZone TO 'UTC'; SET DateStyle TO 'ISO, YMD'; \
     SET IntervalStyle TO 'postgres'; SET extra_float_digits TO 3";

/// Open a session. The `postgres` crate's `connect_timeout` bounds only
/// the TCP connect; a server that accepts and then says nothing would hold
/// the start-up exchange forever. So the whole of it — connect, start-up,
/// authentication, the session setup — runs on a thread, and the caller
/// waits `connect_timeout` (from the URL, else `timeouts.connect`).
fn connect(url: &str, timeouts: &Timeouts) -> Result<Client> {
    let shown = redacted(url);
    let mut cfg: postgres::Config = url.parse().map_err(|e| Error::BadLocation {
        spec: shown.clone(),
        why: format!("{e}"),
    })?;
    let (deadline, knob) = match cfg.get_connect_timeout() {
        Some(t) => (*t, "`connect_timeout` in the URL"),
        None => {
            cfg.connect_timeout(timeouts.connect);
            (timeouts.connect, net::TIMEOUT_KNOBS)
        }
    };
    // Keepalive probes after 30 s of silence instead of the system's two
    // hours, and unacknowledged data gives up after the answer timeout,
    // unless the URL says otherwise (`keepalives_idle`, `tcp_user_timeout`):
    // a vanished peer is noticed by the kernel.
    if cfg.get_keepalives_idle() == std::time::Duration::from_secs(2 * 60 * 60) {
        cfg.keepalives_idle(net::KEEPALIVE);
    }
    if cfg.get_tcp_user_timeout().is_none() {
        cfg.tcp_user_timeout(timeouts.answer);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let who = shown.clone();
    std::thread::Builder::new()
        .name("kindsnap-pg-connect".into())
        .spawn(move || {
            let opened = cfg
                .connect(NoTls)
                .map_err(|e| connect_error(&who, e))
                .and_then(|mut client| {
                    client
                        .batch_execute(SESSION_SETUP)
                        .map_err(db_error(&who))?;
                    Ok(client)
                });
            let _ = tx.send(opened);
        })
        .map_err(|e| {
            Error::Database(format!("cannot start a thread to connect to {shown}: {e}"))
        })?;
    match rx.recv_timeout(deadline) {
        Ok(opened) => opened,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout {
            service: "PostgreSQL server",
            endpoint: shown,
            timeout: deadline,
            waiting: "connecting: start-up and authentication".into(),
            knob: knob.into(),
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::Internal(
            "the PostgreSQL connecting thread ended without a word",
        )),
    }
}

fn connect_error(shown: &str, e: postgres::Error) -> Error {
    use postgres::error::SqlState;
    let (why, hint) = match e.as_db_error() {
        Some(d) if *d.code() == SqlState::INVALID_PASSWORD => (
            d.message().to_string(),
            "check the user and password in the URL",
        ),
        Some(d) if *d.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => (
            d.message().to_string(),
            "check the user in the URL and the server's pg_hba.conf",
        ),
        Some(d) if *d.code() == SqlState::INVALID_CATALOG_NAME => (
            d.message().to_string(),
            "create the database first (createdb) or fix its name",
        ),
        Some(d) => (d.message().to_string(), "check the URL"),
        None => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = s.to_string();
                src = s.source();
            }
            (
                msg,
                "is the server running and reachable at that host and port?",
            )
        }
    };
    Error::Database(format!("cannot connect to {shown}: {why}; {hint}"))
}

fn db_error(shown: &str) -> impl Fn(postgres::Error) -> Error + '_ {
    move |e| Error::Database(format!("{shown}: {}", why(&e)))
}

/// The server's message, with its detail when it gives one.
fn why(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) if d.code() == &postgres::error::SqlState::LOCK_NOT_AVAILABLE => format!(
            "{}: another session holds a lock on the table; let it finish, or raise --timeout \
             (or KINDSNAP_TIMEOUT, or `timeout` in kindsnap.toml), and run the restore again",
            d.message()
        ),
        Some(d) => match d.detail() {
            Some(detail) => format!("{} ({detail})", d.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// What a column's values are parsed by.
#[derive(Debug, Clone)]
struct ColType {
    typname: String,
    /// The element type of an array column.
    elem: Option<String>,
    category: String,
    generated: bool,
}

/// A table on a server: the shared [`Table`] plus what reading it needs.
#[derive(Debug, Clone)]
struct PgTable {
    table: Table,
    qualified: String,
    /// What a snapshot reads rows from.
    from: String,
    types: Vec<ColType>,
}

fn kind_of(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    }
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

type Query<'a> = dyn FnMut(
        &str,
        &[&(dyn postgres::types::ToSql + Sync)],
    ) -> std::result::Result<Vec<postgres::Row>, postgres::Error>
    + 'a;

/// Every user table, in kind order (`pending` bookkeeping excluded).
fn reflect(q: &mut Query<'_>, shown: &str) -> Result<Vec<PgTable>> {
    let err = db_error(shown);
    let rows = q(
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
         AND c.relname <> $1",
        &[&PENDING],
    )
    .map_err(&err)?;
    let mut out = Vec::new();
    for r in rows {
        let oid: u32 = r.get(0);
        let schema: String = r.get(1);
        let name: String = r.get(2);
        let relkind: String = r.get(3);
        let kind = kind_of(&schema, &name);
        let qual = qualified(&schema, &name);
        let cols = q(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
             pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text, \
             t.typname::text, t.typcategory::text, et.typname::text \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .map_err(&err)?;
        let mut columns = Vec::new();
        let mut types = Vec::new();
        let mut col_ddl = Vec::new();
        let mut sequences = Vec::new();
        for c in cols {
            let column = Column {
                name: c.get(0),
                sql_type: c.get(1),
                not_null: c.get(2),
                default: c.get(3),
            };
            let identity: String = c.get(4);
            let generated: String = c.get(5);
            let mut d = format!("{} {}", ident(&column.name), column.sql_type);
            match (generated.as_str(), identity.as_str(), &column.default) {
                ("s", _, Some(expr)) => {
                    d.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED"))
                }
                (_, "a", _) => d.push_str(" GENERATED ALWAYS AS IDENTITY"),
                (_, "d", _) => d.push_str(" GENERATED BY DEFAULT AS IDENTITY"),
                (_, _, Some(expr)) => {
                    if let Some(seq) = expr
                        .strip_prefix("nextval('")
                        .and_then(|s| s.split_once("'::regclass)"))
                        .map(|(s, _)| s.to_string())
                    {
                        sequences.push((seq, column.name.clone()));
                    }
                    d.push_str(&format!(" DEFAULT {expr}"));
                }
                _ => {}
            }
            if column.not_null {
                d.push_str(" NOT NULL");
            }
            col_ddl.push(d);
            types.push(ColType {
                typname: c.get(6),
                category: c.get(7),
                elem: c.get(8),
                generated: generated == "s",
            });
            columns.push(column);
        }
        let pk: Vec<String> = q(
            "SELECT a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
            &[&oid],
        )
        .map_err(&err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let constraints = q(
            "SELECT c.conname::text, pg_get_constraintdef(c.oid), c.contype::text, \
             rn.nspname::text, rc.relname::text, \
             ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) \
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), \
             ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) \
                   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o) \
             FROM pg_constraint c LEFT JOIN pg_class rc ON rc.oid = c.confrelid \
             LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
             WHERE c.conrelid = $1 AND c.contype IN ('p', 'u', 'c', 'x', 'f') ORDER BY c.contype, c.conname",
            &[&oid],
        )
        .map_err(&err)?;
        let mut foreign_keys = Vec::new();
        let mut after = Vec::new();
        for c in constraints {
            let name: String = c.get(0);
            let def: String = c.get(1);
            let contype: String = c.get(2);
            if contype == "f" {
                let rs: String = c.get(3);
                let rn: String = c.get(4);
                foreign_keys.push(ForeignKey {
                    columns: c.get(5),
                    kind: kind_of(&rs, &rn),
                    ref_columns: c.get(6),
                });
                after.push(format!(
                    "ALTER TABLE {qual} ADD CONSTRAINT {} {def}",
                    ident(&name)
                ));
            } else {
                col_ddl.push(format!("CONSTRAINT {} {def}", ident(&name)));
            }
        }
        let mut ddl = Vec::new();
        if schema != "public" {
            ddl.push(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&schema)));
        }
        for (seq, _) in &sequences {
            ddl.push(format!("CREATE SEQUENCE IF NOT EXISTS {seq}"));
        }
        ddl.push(format!(
            "CREATE TABLE {qual} (\n  {}\n)",
            col_ddl.join(",\n  ")
        ));
        for (seq, col) in &sequences {
            ddl.push(format!(
                "ALTER SEQUENCE {seq} OWNED BY {qual}.{}",
                ident(col)
            ));
        }
        let indexes = q(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
             WHERE i.indrelid = $1 AND NOT EXISTS \
             (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid) \
             ORDER BY 1",
            &[&oid],
        )
        .map_err(&err)?;
        ddl.extend(indexes.iter().map(|r| r.get::<_, String>(0)));
        out.push(PgTable {
            table: Table {
                kind,
                engine: "postgres".into(),
                columns,
                rowid: false,
                primary_key: pk,
                foreign_keys,
                ddl,
                after,
            },
            // A partitioned table is read through its parent; an ordinary
            // one without its inheritance children (they are kinds of
            // their own).
            from: if relkind == "p" {
                qual.clone()
            } else {
                format!("ONLY {qual}")
            },
            qualified: qual,
            types,
        });
    }
    out.sort_by(|a, b| a.table.kind.cmp(&b.table.kind));
    Ok(out)
}

fn is_int(t: &str) -> bool {
    matches!(t, "int2" | "int4" | "int8")
}

/// A column's text form as a property.
fn parse_text(text: &str, typname: &str) -> Value {
    let other = || with_meaning(text_value(text.to_string()), meaning::TEXT_FORM);
    match typname {
        t if is_int(t) => text
            .parse()
            .map_or_else(|_| other(), |i| Value::new(ValueKind::Integer(i))),
        "float4" | "float8" => {
            let d = match text {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                t => t.parse().ok(),
            };
            d.map_or_else(other, |d| Value::new(ValueKind::Double(d)))
        }
        "bool" => match text {
            "t" | "true" => Value::new(ValueKind::Boolean(true)),
            "f" | "false" => Value::new(ValueKind::Boolean(false)),
            _ => other(),
        },
        "numeric" => with_meaning(text_value(text.to_string()), meaning::NUMERIC),
        "bytea" => text
            .strip_prefix("\\x")
            .and_then(|h| hex::decode(h).ok())
            .map_or_else(other, super::blob_value),
        "date" => super::parse_sql_timestamp(text).map_or_else(other, |t| {
            with_meaning(Value::new(ValueKind::Timestamp(t)), meaning::DATE)
        }),
        "timestamp" => super::parse_sql_timestamp(text).map_or_else(other, |t| {
            with_meaning(Value::new(ValueKind::Timestamp(t)), meaning::TIMESTAMP)
        }),
        "timestamptz" => super::parse_sql_timestamp(text)
            .map_or_else(other, |t| Value::new(ValueKind::Timestamp(t))),
        "time" => with_meaning(text_value(text.to_string()), meaning::TIME),
        "json" => with_meaning(text_value(text.to_string()), meaning::JSON),
        "jsonb" => with_meaning(text_value(text.to_string()), meaning::JSONB),
        "uuid" => with_meaning(text_value(text.to_string()), meaning::UUID),
        "text" | "varchar" | "bpchar" | "name" | "citext" => text_value(text.to_string()),
        _ => other(),
    }
}

/// An array column, read as `to_jsonb(col::text[])`: elements parsed by
/// the element type, nested arrays for more dimensions.
fn parse_array(json: &serde_json::Value, elem: &str) -> Value {
    match json {
        serde_json::Value::Array(items) => Value::new(ValueKind::Array(
            items.iter().map(|i| parse_array(i, elem)).collect(),
        )),
        serde_json::Value::String(s) => parse_text(s, elem),
        serde_json::Value::Null => Value::new(ValueKind::Null),
        other => parse_text(&other.to_string(), elem),
    }
}

pub struct PostgresSource {
    url: String,
    shown: String,
    /// Lent to the reading thread during `for_each`; gone after a reading
    /// that was abandoned.
    client: Option<Client>,
    filter: Option<KindFilter>,
    timeouts: Timeouts,
}

impl PostgresSource {
    pub fn open(url: &str, timeouts: &Timeouts) -> Result<PostgresSource> {
        Ok(PostgresSource {
            client: Some(connect(url, timeouts)?),
            url: url.to_string(),
            shown: redacted(url),
            filter: None,
            timeouts: *timeouts,
        })
    }
}

/// What the reading thread sends: rows, then the connection back with
/// how the reading ended.
enum Batch {
    Rows(Vec<(Entity, u64)>),
    Done(Box<Client>, Result<()>),
}

impl EntitySource for PostgresSource {
    fn source_id(&self) -> String {
        redacted(&self.url)
    }

    fn set_filter(&mut self, filter: &KindFilter) {
        self.filter = Some(filter.clone());
    }

    fn describe(&self, origin: u64) -> String {
        format!("{} (row {origin})", self.shown)
    }

    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        let shown = self.shown.clone();
        let mut client = self.client.take().ok_or_else(|| {
            Error::Database(format!(
                "{shown}: the connection was given up after an earlier error; run the command again"
            ))
        })?;
        let filter = self.filter.clone();
        let (sender, batches) = std::sync::mpsc::sync_channel::<Batch>(2);
        let reader_shown = shown.clone();
        std::thread::Builder::new()
            .name("kindsnap-pg-read".into())
            .spawn(move || {
                let mut rows = Vec::new();
                let read =
                    Self::read_tables(&mut client, filter.as_ref(), &reader_shown, &mut |e, o| {
                        rows.push((e, o));
                        if rows.len() >= FETCH_ROWS as usize {
                            sender
                                .send(Batch::Rows(std::mem::take(&mut rows)))
                                .map_err(|_| Error::Interrupted)?;
                        }
                        Ok(())
                    });
                let read = read.and_then(|()| {
                    sender
                        .send(Batch::Rows(rows))
                        .map_err(|_| Error::Interrupted)
                });
                let _ = sender.send(Batch::Done(Box::new(client), read));
            })
            .map_err(|e| Error::Database(format!("cannot start a thread to read {shown}: {e}")))?;
        // The wait for each batch is what the answer timeout bounds; the
        // time `f` takes is not counted.
        loop {
            match batches.recv_timeout(self.timeouts.answer) {
                Ok(Batch::Rows(rows)) => {
                    for (e, origin) in rows {
                        f(e, origin)?;
                    }
                }
                Ok(Batch::Done(client, read)) => {
                    self.client = Some(*client);
                    return read;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout {
                        service: "PostgreSQL server",
                        endpoint: shown,
                        timeout: self.timeouts.answer,
                        waiting: "waiting for rows".into(),
                        knob: net::TIMEOUT_KNOBS.into(),
                    })
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Internal("the PostgreSQL reading thread stopped"))
                }
            }
        }
    }
}

impl PostgresSource {
    /// Read every table `filter` allows, in key order, inside one
    /// repeatable-read transaction; `f` gets the schema entities, then the rows.
    fn read_tables(
        client: &mut Client,
        filter: Option<&KindFilter>,
        shown: &str,
        f: &mut dyn FnMut(Entity, u64) -> Result<()>,
    ) -> Result<()> {
        let err = db_error(shown);
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(&err)?;
        let all = reflect(&mut |s, p| tx.query(s, p), shown)?;
        let mut tables = Vec::new();
        for t in &all {
            if !filter.is_none_or(|f| f.allows("", &t.table.kind)) {
                continue;
            }
            if t.table.primary_key.is_empty() {
                tracing::warn!(
                    "postgres: skipping table `{}`: it has no primary key (add one to snapshot it)",
                    t.table.kind
                );
                continue;
            }
            tables.push(t);
        }
        let mut origin = 0u64;
        for t in &tables {
            origin += 1;
            f(t.table.to_entity(), origin)?;
        }
        let pk_of = |kind: &str| {
            all.iter()
                .find(|t| t.table.kind == kind)
                .map(|t| t.table.primary_key.clone())
        };
        for t in tables {
            let refs = t.table.reference_columns(&pk_of);
            let cols: Vec<(&Column, &ColType)> = t
                .table
                .columns
                .iter()
                .zip(&t.types)
                .filter(|(_, ty)| !ty.generated)
                .collect();
            let select: Vec<String> = cols
                .iter()
                .map(|(c, ty)| {
                    if ty.category == "A" {
                        format!("to_jsonb(t.{}::text[])::text", ident(&c.name))
                    } else {
                        format!("t.{}::text", ident(&c.name))
                    }
                })
                .collect();
            let order: Vec<String> = t
                .table
                .primary_key
                .iter()
                .map(|p| {
                    let ty = cols.iter().find(|(c, _)| &c.name == p).map(|(_, ty)| ty);
                    match ty {
                        Some(ty) if ty.category == "S" => format!("t.{} COLLATE \"C\"", ident(p)),
                        _ => format!("t.{}", ident(p)),
                    }
                })
                .collect();
            // Qualified names: an unqualified ORDER BY "id" would sort by
            // the output column "id", which is the key's *text*.
            let q = format!(
                "SELECT {} FROM {} AS t ORDER BY {}",
                select.join(", "),
                t.from,
                order.join(", ")
            );
            let pk_at: Vec<usize> = t
                .table
                .primary_key
                .iter()
                .filter_map(|p| cols.iter().position(|(c, _)| &c.name == p))
                .collect();
            let single = pk_at.len() == 1;
            let stmt = tx.prepare(&q).map_err(&err)?;
            let portal = tx.bind(&stmt, &[]).map_err(&err)?;
            loop {
                let rows = tx.query_portal(&portal, FETCH_ROWS).map_err(&err)?;
                if rows.is_empty() {
                    break;
                }
                for r in rows {
                    origin += 1;
                    let texts: Vec<Option<&str>> = (0..cols.len()).map(|i| r.get(i)).collect();
                    let id = if single {
                        let text = texts[pk_at[0]].unwrap_or("");
                        match text.parse::<i64>() {
                            Ok(i) if is_int(&cols[pk_at[0]].1.typname) => ElementId::Id(i),
                            _ => ElementId::Name(text.to_string()),
                        }
                    } else {
                        let parts: Vec<Part> = pk_at
                            .iter()
                            .map(|&i| texts[i].map_or(Part::Null, Part::Text))
                            .collect();
                        ElementId::Name(composite_name(&parts))
                    };
                    let mut properties = Properties::new();
                    for (i, (c, ty)) in cols.iter().enumerate() {
                        if single && pk_at[0] == i {
                            continue;
                        }
                        let v = match (texts[i], refs.get(&c.name)) {
                            (None, _) => Value::new(ValueKind::Null),
                            (Some(s), Some(kind)) => {
                                let id = match s.parse::<i64>() {
                                    Ok(n) if is_int(&ty.typname) => ElementId::Id(n),
                                    _ => ElementId::Name(s.to_string()),
                                };
                                Value::new(ValueKind::Key(key(kind, id)))
                            }
                            (Some(s), None) if ty.category == "A" => {
                                match serde_json::from_str::<serde_json::Value>(s) {
                                    Ok(j) => parse_array(&j, ty.elem.as_deref().unwrap_or("")),
                                    Err(_) => {
                                        with_meaning(text_value(s.to_string()), meaning::TEXT_FORM)
                                    }
                                }
                            }
                            (Some(s), None) => parse_text(s, &ty.typname),
                        };
                        properties.insert(c.name.clone(), v);
                    }
                    f(
                        Entity {
                            key: key(&t.table.kind, id),
                            properties,
                        },
                        origin,
                    )?;
                }
            }
        }
        tx.commit().map_err(&err)?;
        Ok(())
    }
}

/// A value in the text form PostgreSQL's input functions read.
fn to_text(v: &Value) -> Option<String> {
    Some(match &v.kind {
        ValueKind::Null => return None,
        ValueKind::Boolean(b) => if *b { "t" } else { "f" }.to_string(),
        ValueKind::Integer(i) => i.to_string(),
        ValueKind::Double(d) => {
            if d.is_nan() {
                "NaN".into()
            } else if d.is_infinite() {
                if *d > 0.0 { "Infinity" } else { "-Infinity" }.into()
            } else {
                format!("{d:?}")
            }
        }
        ValueKind::Timestamp(t) => {
            let date_only = v.meaning == Some(meaning::DATE);
            let mut s = super::format_sql_timestamp(*t, date_only);
            if !date_only && v.meaning != Some(meaning::TIMESTAMP) {
                s.push_str("+00");
            }
            s
        }
        ValueKind::String(s) => s.clone(),
        ValueKind::Blob(b) => format!("\\x{}", hex::encode(b)),
        ValueKind::Key(k) => match k.path.last().map(|p| &p.id) {
            Some(ElementId::Id(i)) => i.to_string(),
            Some(ElementId::Name(n)) => n.clone(),
            _ => return None,
        },
        ValueKind::Array(vs) => array_literal(vs),
        ValueKind::GeoPoint(_) | ValueKind::Entity(_) => super::plain_json(v).to_string(),
    })
}

/// `{"a","b",NULL}`: every element quoted, nested arrays nested.
fn array_literal(vs: &[Value]) -> String {
    let mut s = String::from("{");
    for (i, v) in vs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match (&v.kind, to_text(v)) {
            (ValueKind::Array(inner), _) => s.push_str(&array_literal(inner)),
            (_, None) => s.push_str("NULL"),
            (_, Some(t)) => {
                s.push('"');
                for c in t.chars() {
                    if c == '"' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
            }
        }
    }
    s.push('}');
    s
}

/// Rows waiting to be written: one column list, many rows.
#[derive(Default)]
struct Pending {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

pub struct PostgresTarget {
    url: String,
    shown: String,
    client: Option<Client>,
    tables: HashMap<String, PgTable>,
    recorded: BTreeMap<String, Table>,
    restoring: BTreeSet<String>,
    uuid_checks: BTreeSet<String>,
    current: Option<String>,
    pending: Pending,
    statements: HashMap<String, postgres::Statement>,
    policy: ddl::SchemaPolicy,
    /// Recorded objects left out, for the report.
    warnings: Vec<String>,
    timeouts: Timeouts,
}

impl PostgresTarget {
    pub fn open(url: &str, timeouts: &Timeouts) -> Result<PostgresTarget> {
        // Fails early on a bad URL; the connection opens in `start`.
        url.parse::<postgres::Config>()
            .map_err(|e| Error::BadLocation {
                spec: redacted(url),
                why: e.to_string(),
            })?;
        Ok(PostgresTarget {
            url: url.to_string(),
            shown: redacted(url),
            client: None,
            tables: HashMap::new(),
            recorded: BTreeMap::new(),
            restoring: BTreeSet::new(),
            uuid_checks: BTreeSet::new(),
            current: None,
            policy: ddl::SchemaPolicy::default(),
            warnings: Vec::new(),
            pending: Pending::default(),
            statements: HashMap::new(),
            timeouts: *timeouts,
        })
    }

    fn client(&mut self) -> Result<&mut Client> {
        self.client
            .as_mut()
            .ok_or(Error::Internal("PostgreSQL target used before start"))
    }

    fn exec(&mut self, sql: &str) -> Result<()> {
        let shown = self.shown.clone();
        self.client()?.batch_execute(sql).map_err(db_error(&shown))
    }

    fn refresh(&mut self) -> Result<()> {
        let shown = self.shown.clone();
        let client = self.client()?;
        let tables = reflect(&mut |s, p| client.query(s, p), &shown)?;
        self.tables = tables
            .into_iter()
            .map(|t| (t.table.kind.clone(), t))
            .collect();
        Ok(())
    }

    fn table(&self, kind: &str) -> Result<&PgTable> {
        self.tables
            .get(kind)
            .ok_or_else(|| super::missing_table(kind, &self.shown))
    }

    fn uuid_problem(&self, t: &Table) -> Option<String> {
        let text_like = |ty: &str| {
            let ty = ty.to_ascii_lowercase();
            ty == "text" || ty == "uuid" || ty.starts_with("character varying") || ty == "citext"
        };
        if t.primary_key.len() != 1 {
            return None;
        }
        let pk = t.column(&t.primary_key[0])?;
        if !text_like(&pk.sql_type) {
            return Some(format!(
                "--keys uuid needs a key column that can hold text, but `{}`.`{}` in {} is {}; \
                 restore with --keys keep, or change the column to text or uuid",
                t.kind, pk.name, self.shown, pk.sql_type
            ));
        }
        None
    }

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
                    if let Some(p) = super::compare_tables(t, &existing.table, &normalise_type) {
                        problems.push(p);
                    }
                }
                None if t.engine != "postgres" => problems.push(format!(
                    "table `{}` was recorded from {}; create it in the PostgreSQL database first \
                     (tables are created only from a PostgreSQL snapshot)",
                    t.kind, t.engine
                )),
                None => {
                    let vetted = ddl::vet_table(ddl::Engine::Postgres, t, &self.policy)?;
                    self.warnings.extend(vetted.skipped.iter().cloned());
                    create.push((t.kind.clone(), vetted));
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Database(problems.join("\n")));
        }
        for (kind, vetted) in &create {
            for stmt in &vetted.ddl {
                let shown = self.shown.clone();
                self.client()?.batch_execute(stmt).map_err(|e| {
                    Error::Database(format!(
                        "creating table `{kind}` in {shown} failed: {}",
                        e.as_db_error()
                            .map(|d| d.message().to_string())
                            .unwrap_or(e.to_string())
                    ))
                })?;
            }
        }
        // Foreign keys of created tables are added after the load.
        for (kind, vetted) in &create {
            for (i, def) in vetted.after.iter().enumerate() {
                let shown = self.shown.clone();
                self.client()?
                    .execute(
                        &format!("INSERT INTO {PENDING} (tbl, name, def) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"),
                        &[kind, &format!("recorded-{i}"), def],
                    )
                    .map_err(db_error(&shown))?;
            }
        }
        self.refresh()?;
        for kind in std::mem::take(&mut self.uuid_checks) {
            if let Some(p) = self
                .tables
                .get(&kind)
                .and_then(|t| self.uuid_problem(&t.table))
            {
                return Err(Error::BadArgument(p));
            }
        }
        Ok(())
    }

    /// Drop the foreign keys of existing restored tables (and those
    /// pointing at them), remembering them in the pending table.
    fn drop_foreign_keys(&mut self) -> Result<()> {
        let shown = self.shown.clone();
        let restoring: Vec<String> = self.restoring.iter().cloned().collect();
        let client = self.client()?;
        let rows = client
            .query(
                "SELECT c.conname::text, pg_get_constraintdef(c.oid), \
                 quote_ident(n.nspname) || '.' || quote_ident(t.relname), \
                 CASE WHEN n.nspname = 'public' THEN t.relname::text ELSE n.nspname || '.' || t.relname END, \
                 CASE WHEN rn.nspname = 'public' THEN r.relname::text ELSE rn.nspname || '.' || r.relname END \
                 FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
                 JOIN pg_namespace n ON n.oid = t.relnamespace \
                 JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace \
                 WHERE c.contype = 'f'",
                &[],
            )
            .map_err(db_error(&shown))?;
        for r in rows {
            let (name, def, qual, kind, refkind): (String, String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            if !restoring.contains(&kind) && !restoring.contains(&refkind) {
                continue;
            }
            client
                .execute(
                    &format!("INSERT INTO {PENDING} (tbl, name, def) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"),
                    &[&kind, &name, &format!("ALTER TABLE {qual} ADD CONSTRAINT {} {def}", ident(&name))],
                )
                .map_err(db_error(&shown))?;
            client
                .batch_execute(&format!(
                    "ALTER TABLE {qual} DROP CONSTRAINT {}",
                    ident(&name)
                ))
                .map_err(db_error(&shown))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.rows.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let kind = self
            .current
            .clone()
            .ok_or(Error::Internal("PostgreSQL target: rows outside a kind"))?;
        let t = self.table(&kind)?.clone();
        let casts: Vec<String> = pending
            .columns
            .iter()
            .map(|c| {
                t.table
                    .column(c)
                    .map(|col| col.sql_type.clone())
                    .unwrap_or_else(|| "text".into())
            })
            .collect();
        let ncols = pending.columns.len();
        let per_batch = (30_000 / ncols.max(1)).clamp(1, 1000);
        let pk: BTreeSet<&String> = t.table.primary_key.iter().collect();
        let updates: Vec<String> = pending
            .columns
            .iter()
            .filter(|c| !pk.contains(c))
            .map(|c| format!("{0} = EXCLUDED.{0}", ident(c)))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_string()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        let cols: Vec<String> = pending.columns.iter().map(|c| ident(c)).collect();
        let pk_cols: Vec<String> = t.table.primary_key.iter().map(|c| ident(c)).collect();
        for chunk in pending.rows.chunks(per_batch) {
            let mut values = Vec::with_capacity(chunk.len());
            let mut n = 0;
            for _ in chunk {
                let row: Vec<String> = casts
                    .iter()
                    .map(|ty| {
                        n += 1;
                        format!("${n}::text::{ty}")
                    })
                    .collect();
                values.push(format!("({})", row.join(", ")));
            }
            let sql = format!(
                "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES {} ON CONFLICT ({}) DO {action}",
                t.qualified,
                cols.join(", "),
                values.join(", "),
                pk_cols.join(", ")
            );
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = chunk
                .iter()
                .flat_map(|r| r.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)))
                .collect();
            let shown = self.shown.clone();
            let stmt = match self.statements.get(&sql) {
                Some(s) => s.clone(),
                None => {
                    let s = self.client()?.prepare(&sql).map_err(db_error(&shown))?;
                    if self.statements.len() > 64 {
                        self.statements.clear();
                    }
                    self.statements.insert(sql.clone(), s.clone());
                    s
                }
            };
            self.client()?.execute(&stmt, &params).map_err(|e| {
                Error::Database(format!("writing table `{kind}` in {shown}: {}", why(&e)))
            })?;
        }
        Ok(())
    }
}

fn normalise_type(t: &str) -> String {
    t.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

impl EntityTarget for PostgresTarget {
    fn target_id(&self) -> String {
        self.shown.clone()
    }

    fn start(&mut self, _resuming: bool) -> Result<()> {
        self.client = Some(connect(&self.url, &self.timeouts)?);
        // A restore that waits for a lock an application holds gives up
        // after the timeout instead of hanging the nightly job; long
        // statements (a foreign key validated over millions of rows) are
        // not limited.
        let ms = self.timeouts.answer.as_millis().max(1);
        self.exec(&format!("SET lock_timeout = {ms}"))?;
        self.refresh()?;
        self.exec("BEGIN")
    }

    fn set_schema_policy(&mut self, policy: ddl::SchemaPolicy) {
        self.policy = policy;
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn list_kinds(&mut self) -> Result<Vec<(String, String)>> {
        if self.client.is_none() {
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
            Some(t) => match self.uuid_problem(&t.table) {
                Some(p) => Err(Error::BadArgument(p)),
                None => Ok(()),
            },
            None => {
                self.uuid_checks.insert(kind.to_string());
                Ok(())
            }
        }
    }

    fn order_kinds(&mut self, kinds: Vec<(String, String)>) -> Result<Vec<(String, String)>> {
        self.restoring = kinds.iter().map(|(_, k)| k.clone()).collect();
        let deps = super::fk_deps(self.tables.values().map(|t| &t.table));
        // Before anything is cleared or written: the foreign keys of the
        // tables restored (and pointing at them) go, until `finish`.
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {PENDING} (tbl text NOT NULL, name text NOT NULL, def text NOT NULL, PRIMARY KEY (tbl, name))"
        ))?;
        self.drop_foreign_keys()?;
        Ok(super::order_kinds(kinds, &deps))
    }

    fn begin_kind(&mut self, _ns: &str, kind: &str, _o: KindOptions) -> Result<()> {
        if kind != SCHEMA_KIND {
            self.table(kind)?;
        }
        self.current = Some(kind.to_string());
        Ok(())
    }

    fn put(&mut self, entity: Entity) -> Result<()> {
        let kind = self.current.clone().unwrap_or_default();
        if kind == SCHEMA_KIND {
            let t = Table::from_entity(&entity)?;
            self.recorded.insert(t.kind.clone(), t);
            return Ok(());
        }
        let t = self.table(&kind)?;
        let mut columns = Vec::new();
        let mut row = Vec::new();
        let id = entity
            .key
            .path
            .last()
            .map(|p| p.id.clone())
            .ok_or(Error::Internal("PostgreSQL target: empty key"))?;
        if t.table.primary_key.len() == 1 {
            columns.push(t.table.primary_key[0].clone());
            row.push(match id {
                ElementId::Id(i) => Some(i.to_string()),
                ElementId::Name(n) => Some(n),
                ElementId::Incomplete => None,
            });
        }
        for (name, v) in &entity.properties {
            if t.table.column(name).is_none() {
                return Err(Error::Database(format!(
                    "table `{kind}` in {} has no column `{name}` (entity {}); add the column or restore into an empty database",
                    self.shown, entity.key
                )));
            }
            columns.push(name.clone());
            row.push(to_text(v));
        }
        if columns != self.pending.columns {
            self.flush()?;
            self.pending.columns = columns;
        }
        self.pending.rows.push(row);
        if self.pending.rows.len() >= 1000 {
            self.flush()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.exec("COMMIT; BEGIN")
    }

    fn take_rejections(&mut self) -> Vec<Rejection> {
        Vec::new()
    }

    fn end_kind(&mut self) -> Result<()> {
        self.flush()?;
        if self.current.take().as_deref() == Some(SCHEMA_KIND) {
            self.apply_schema()?;
        }
        Ok(())
    }

    fn reserve_ids(&mut self, _ns: &str, kind: &str, _keys: &[Key]) -> Result<()> {
        let t = self.table(kind)?.clone();
        if t.table.primary_key.len() != 1 {
            return Ok(());
        }
        let col = &t.table.primary_key[0];
        let shown = self.shown.clone();
        // Past the largest id in the table (restored or already there).
        self.client()?
            .execute(
                &format!(
                    "SELECT setval(s, (SELECT max({c}) FROM {q})) FROM pg_get_serial_sequence($1, $2) s \
                     WHERE s IS NOT NULL AND (SELECT max({c}) FROM {q}) IS NOT NULL",
                    c = ident(col),
                    q = t.qualified
                ),
                &[&t.qualified, col],
            )
            .map_err(db_error(&shown))?;
        Ok(())
    }

    fn reserve_method(&self) -> &'static str {
        "postgres: setval of each key column's sequence past the largest id"
    }

    fn scan_keys(
        &mut self,
        _ns: &str,
        kind: &str,
        f: &mut dyn FnMut(Key) -> Result<()>,
    ) -> Result<()> {
        if kind == SCHEMA_KIND {
            return Ok(());
        }
        let t = self.table(kind)?.clone();
        let pk: Vec<String> = t
            .table
            .primary_key
            .iter()
            .map(|c| format!("{}::text", ident(c)))
            .collect();
        if pk.is_empty() {
            return Ok(());
        }
        let int_key = t.table.primary_key.len() == 1
            && t.table
                .columns
                .iter()
                .zip(&t.types)
                .any(|(c, ty)| c.name == t.table.primary_key[0] && is_int(&ty.typname));
        let shown = self.shown.clone();
        let client = self.client()?;
        let mut it = client
            .query_raw(
                &format!("SELECT {} FROM {}", pk.join(", "), t.qualified),
                std::iter::empty::<i32>(),
            )
            .map_err(db_error(&shown))?;
        while let Some(r) = it.next().map_err(db_error(&shown))? {
            let texts: Vec<Option<&str>> = (0..pk.len()).map(|i| r.get(i)).collect();
            let id = if pk.len() == 1 {
                let s = texts[0].unwrap_or("");
                match s.parse::<i64>() {
                    Ok(i) if int_key => ElementId::Id(i),
                    _ => ElementId::Name(s.to_string()),
                }
            } else {
                ElementId::Name(composite_name(
                    &texts
                        .iter()
                        .map(|t| t.map_or(Part::Null, Part::Text))
                        .collect::<Vec<_>>(),
                ))
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
            let vals: Vec<Option<String>> = match k.path.last().map(|p| &p.id) {
                Some(ElementId::Id(i)) => vec![Some(i.to_string())],
                Some(ElementId::Name(n)) if t.table.primary_key.len() == 1 => vec![Some(n.clone())],
                Some(ElementId::Name(n)) => split_composite(n),
                _ => continue,
            };
            let cond: Vec<String> = t
                .table
                .primary_key
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}::text IS NOT DISTINCT FROM ${}", ident(c), i + 1))
                .collect();
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = vals
                .iter()
                .map(|v| v as &(dyn postgres::types::ToSql + Sync))
                .collect();
            let shown = self.shown.clone();
            self.client()?
                .execute(
                    &format!("DELETE FROM {} WHERE {}", t.qualified, cond.join(" AND ")),
                    &params,
                )
                .map_err(db_error(&shown))?;
        }
        Ok(())
    }

    fn clear_kind(&mut self, _ns: &str, kind: &str) -> Result<u64> {
        if kind == SCHEMA_KIND {
            return Ok(0);
        }
        let Some(t) = self.tables.get(kind).cloned() else {
            return Ok(0);
        };
        let shown = self.shown.clone();
        self.client()?
            .execute(&format!("DELETE FROM {}", t.qualified), &[])
            .map_err(db_error(&shown))
    }

    fn discard(&mut self) -> Result<()> {
        if let Some(mut c) = self.client.take() {
            let _ = c.batch_execute("ROLLBACK");
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.client.is_none() {
            return Ok(());
        }
        self.flush()?;
        self.exec("COMMIT; BEGIN")?;
        let shown = self.shown.clone();
        let has_pending: bool = self
            .client()?
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&PENDING])
            .map_err(db_error(&shown))?
            .get(0);
        if has_pending {
            let rows = self
                .client()?
                .query(
                    &format!("SELECT tbl, name, def FROM {PENDING} ORDER BY tbl, name"),
                    &[],
                )
                .map_err(db_error(&shown))?;
            for r in rows {
                let (tbl, def): (String, String) = (r.get(0), r.get(2));
                self.client()?.batch_execute(&def).map_err(|e| {
                    Error::Database(format!(
                        "the restored data breaks a foreign key of table `{tbl}` in {shown}: {}; \
                         restore the referenced kinds too (--with-references) or fix the rows, then run the restore again",
                        why(&e)
                    ))
                })?;
            }
            self.exec(&format!("DROP TABLE {PENDING}"))?;
        }
        self.exec("COMMIT")?;
        self.client = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            redacted("postgres://me:s3cret@db.internal:6543/shop"),
            "postgres://me@db.internal:6543/shop"
        );
        assert_eq!(redacted("postgresql://db/shop"), "postgres://db:5432/shop");
    }

    #[test]
    fn text_forms_parse_by_type_and_write_back() {
        let v = parse_text("12.5000", "numeric");
        assert_eq!(v.meaning, Some(meaning::NUMERIC));
        assert_eq!(to_text(&v).as_deref(), Some("12.5000"));
        let v = parse_text("2024-01-02 03:04:05.5+00", "timestamptz");
        assert_eq!(
            to_text(&v).as_deref(),
            Some("2024-01-02 03:04:05.500000+00")
        );
        let v = parse_text("2024-02-29", "date");
        assert_eq!(to_text(&v).as_deref(), Some("2024-02-29"));
        let v = parse_text("\\x00ff", "bytea");
        assert_eq!(v.kind, ValueKind::Blob(vec![0, 255]));
        assert_eq!(to_text(&v).as_deref(), Some("\\x00ff"));
        let v = parse_text("infinity", "timestamptz");
        assert_eq!(v.meaning, Some(meaning::TEXT_FORM));
        let arr = parse_array(&serde_json::json!([["a\"b", null], ["c\\d", "e"]]), "text");
        assert_eq!(
            to_text(&arr).as_deref(),
            Some(r#"{{"a\"b",NULL},{"c\\d","e"}}"#)
        );
    }
}
