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
//! No user trigger fires during a restore: the session runs with
//! `session_replication_role = replica` (superusers), else each restored
//! table's triggers are disabled (`ALTER TABLE … DISABLE TRIGGER USER`, the
//! table's owner) and re-enabled in `finish`; when neither is allowed the
//! restore goes on and says so in a warning.
//!
//! A restore drops the restored tables' foreign-key constraints for the
//! load (so tables load in any order, cycles included), remembers them in
//! a `kindsnap_pending_constraints` table on the target (so an interrupted
//! restore re-adds them when resumed) and re-adds them, validated, in
//! `finish`.

mod objects;
mod reflect;
mod text;
mod tls;

use std::collections::{BTreeSet, HashMap};

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use self::reflect::{reflect, ColType, PgTable};
use self::text::{is_int, parse_array, parse_text, to_text};
use super::dialect::{Dialect, Reader, Row};
use super::target::SqlTarget;
use super::{
    ddl, ident, meaning, scan, text_value, with_meaning, Column, ObjectKind, Part, SchemaObject,
    Table,
};
use crate::connector::EntitySource;
use crate::error::{Error, Result};
use crate::filter::KindFilter;
use crate::model::{Entity, Key, Value, ValueKind};
use crate::net::{self, Timeouts};

const PENDING: &str = "kindsnap_pending_constraints";
/// The `tbl` of pending rows that create recorded views after the load
/// (no table is named ''): they run after every table's own.
const OBJECTS: &str = "";

/// The sequences behind a key column (`$1` the table, `$2` the column):
/// the one it owns (`serial`, identity) and those its default takes
/// `nextval` from (`DEFAULT nextval('s')` with `s` owned by nobody or
/// shared), each with whether it is the owned one.
const KEY_SEQUENCES: &str = "SELECT s::text, coalesce(s = pg_get_serial_sequence($1, $2)::regclass, false) \
     FROM (SELECT pg_get_serial_sequence($1, $2)::regclass AS s \
       UNION SELECT d.refobjid::regclass FROM pg_attrdef ad \
       JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid \
         AND d.refclassid = 'pg_class'::regclass \
       JOIN pg_class c ON c.oid = d.refobjid AND c.relkind = 'S' \
       WHERE ad.adrelid = $1::regclass \
         AND ad.adnum = (SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2)) x \
     WHERE s IS NOT NULL";
const FETCH_ROWS: i32 = 2000;

/// The URL without its password, for ids and messages.
fn redacted(url: &str) -> String {
    let url = url.split_once('?').map_or(url, |(base, _)| base);
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
    let (mut cfg, options) = parse_url(url)?;
    let tls = tls::connector(&options).map_err(|why| Error::BadLocation {
        spec: shown.clone(),
        why,
    })?;
    let host = first_host(&cfg);
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
                .connect(tls)
                .map_err(|e| connect_error(&who, e, &options, &host))
                .and_then(|mut client| {
                    client
                        .batch_execute(SESSION_SETUP)
                        .map_err(db_error(&who))?;
                    Ok(client)
                });
            let _ = tx.send(opened);
        })
        .map_err(|e| Error::Setup {
            what: "start a thread to connect to PostgreSQL",
            source: Box::new(e),
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

/// The URL as the `postgres` crate takes it, and how it uses TLS (from
/// the URL, else libpq's `PGSSL*` variables; see [`tls`]).
fn parse_url(url: &str) -> Result<(postgres::Config, tls::TlsOptions)> {
    let bad = |why: String| Error::BadLocation {
        spec: redacted(url),
        why,
    };
    let (plain, options) = tls::split(url, &|v| std::env::var(v).ok()).map_err(bad)?;
    let mut cfg: postgres::Config = plain.parse().map_err(|e| bad(format!("{e}")))?;
    cfg.ssl_mode(options.negotiate());
    Ok((cfg, options))
}

fn first_host(cfg: &postgres::Config) -> String {
    match cfg.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    }
}

fn connect_error(shown: &str, e: postgres::Error, options: &tls::TlsOptions, host: &str) -> Error {
    use postgres::error::SqlState;
    if let Some(why) = tls::describe(&e, options, host) {
        return Error::DbConnect {
            target: shown.to_string(),
            why,
            hint: String::new(),
        };
    }
    let (why, hint) = match e.as_db_error() {
        Some(d) if d.message().contains("no encryption") => (
            d.message().to_string(),
            "the server accepts only TLS connections from here; connect with sslmode=require \
             (or verify-full with sslrootcert=FILE) instead of sslmode=disable",
        ),
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
            return Error::DbUnreachable {
                target: shown.to_string(),
                why: msg,
            };
        }
    };
    Error::DbConnect {
        target: shown.to_string(),
        why,
        hint: hint.to_string(),
    }
}

fn db_error(shown: &str) -> impl Fn(postgres::Error) -> Error + '_ {
    move |e| Error::DbStatement {
        target: shown.to_string(),
        why: why(&e),
    }
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

pub(crate) struct PostgresSource {
    url: String,
    shown: String,
    /// Lent to the reading thread during `for_each`; gone after a reading
    /// that was abandoned.
    client: Option<Client>,
    filter: Option<KindFilter>,
    timeouts: Timeouts,
    /// What the last reading could not record.
    warnings: Vec<String>,
}

impl PostgresSource {
    pub(crate) fn open(url: &str, timeouts: &Timeouts) -> Result<PostgresSource> {
        Ok(PostgresSource {
            client: Some(connect(url, timeouts)?),
            url: url.to_string(),
            shown: redacted(url),
            filter: None,
            timeouts: *timeouts,
            warnings: Vec::new(),
        })
    }
}

/// What the reading thread sends: rows, then the connection back with
/// how the reading ended.
enum Batch {
    Rows(Vec<(Entity, u64)>),
    /// The connection, how the reading ended, and what the snapshot could
    /// not record.
    Done(Box<Client>, Result<()>, Vec<String>),
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

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        let shown = self.shown.clone();
        let mut client = self.client.take().ok_or_else(|| Error::DbStatement {
            target: shown.clone(),
            why: "the connection was given up after an earlier error; run the command again".into(),
        })?;
        let filter = self.filter.clone();
        let (sender, batches) = std::sync::mpsc::sync_channel::<Batch>(2);
        let reader_shown = shown.clone();
        std::thread::Builder::new()
            .name("kindsnap-pg-read".into())
            .spawn(move || {
                let mut rows = Vec::new();
                let mut warnings = Vec::new();
                let read = Self::read_tables(
                    &mut client,
                    filter.as_ref(),
                    &reader_shown,
                    &mut warnings,
                    &mut |e, o| {
                        rows.push((e, o));
                        if rows.len() >= FETCH_ROWS as usize {
                            sender
                                .send(Batch::Rows(std::mem::take(&mut rows)))
                                .map_err(|_| Error::Interrupted)?;
                        }
                        Ok(())
                    },
                );
                let read = read.and_then(|()| {
                    sender
                        .send(Batch::Rows(rows))
                        .map_err(|_| Error::Interrupted)
                });
                let _ = sender.send(Batch::Done(Box::new(client), read, warnings));
            })
            .map_err(|e| Error::Setup {
                what: "start a thread to read PostgreSQL",
                source: Box::new(e),
            })?;
        // The wait for each batch is what the answer timeout bounds; the
        // time `f` takes is not counted.
        loop {
            match batches.recv_timeout(self.timeouts.answer) {
                Ok(Batch::Rows(rows)) => {
                    for (e, origin) in rows {
                        f(e, origin)?;
                    }
                }
                Ok(Batch::Done(client, read, warnings)) => {
                    self.client = Some(*client);
                    self.warnings = warnings;
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
    /// Read every table `filter` allows (see [`scan::scan`]) inside one
    /// repeatable-read transaction.
    fn read_tables(
        client: &mut Client,
        filter: Option<&KindFilter>,
        shown: &str,
        warnings: &mut Vec<String>,
        f: &mut dyn FnMut(Entity, u64) -> Result<()>,
    ) -> Result<()> {
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(db_error(shown))?;
        scan::scan_reporting(&mut PgReader { tx: &mut tx, shown }, filter, f, warnings)?;
        tx.commit().map_err(db_error(shown))
    }
}

/// A snapshot's view of the server, inside its read transaction.
struct PgReader<'a, 't> {
    tx: &'a mut postgres::Transaction<'t>,
    shown: &'a str,
}

impl Reader for PgReader<'_, '_> {
    const ENGINE: &'static str = PostgresDb::ENGINE;
    type Table = PgTable;

    fn tables(&mut self) -> Result<Vec<PgTable>> {
        reflect(&mut |s, p| self.tx.query(s, p)).map_err(db_error(self.shown))
    }

    fn columns(t: &PgTable) -> Vec<&Column> {
        t.read_columns().map(|(c, _)| c).collect()
    }

    fn objects(&mut self, tables: &[&Table]) -> Result<(Vec<SchemaObject>, Vec<String>)> {
        let found = objects::reflect_objects(&mut |s, p| self.tx.query(s, p), tables)
            .map_err(db_error(self.shown))?;
        Ok((found.objects, found.warnings))
    }

    fn rows(&mut self, t: &PgTable, f: &mut dyn FnMut(&dyn Row) -> Result<()>) -> Result<()> {
        let err = db_error(self.shown);
        let types: Vec<&ColType> = t.read_columns().map(|(_, ty)| ty).collect();
        let stmt = self.tx.prepare(&select(t)).map_err(&err)?;
        let portal = self.tx.bind(&stmt, &[]).map_err(&err)?;
        loop {
            let rows = self.tx.query_portal(&portal, FETCH_ROWS).map_err(&err)?;
            if rows.is_empty() {
                return Ok(());
            }
            for r in &rows {
                let texts = (0..types.len()).map(|i| r.get(i)).collect();
                f(&PgRow {
                    texts,
                    types: &types,
                })?;
            }
        }
    }
}

/// The query that reads a table's rows: every column as text (arrays as
/// JSON), in primary-key order, text keys in byte order.
fn select(t: &PgTable) -> String {
    let select: Vec<String> = t
        .read_columns()
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
        .map(|p| match t.read_columns().find(|(c, _)| &c.name == p) {
            Some((_, ty)) if ty.category == "S" => format!("t.{} COLLATE \"C\"", ident(p)),
            _ => format!("t.{}", ident(p)),
        })
        .collect();
    // Qualified names: an unqualified ORDER BY "id" would sort by the
    // output column "id", which is the key's *text*.
    format!(
        "SELECT {} FROM {} AS t ORDER BY {}",
        select.join(", "),
        t.from,
        order.join(", ")
    )
}

/// A row read as text, column `i` of type `types[i]`.
struct PgRow<'a> {
    texts: Vec<Option<&'a str>>,
    types: &'a [&'a ColType],
}

/// A column's text as a key component, typed by the column: integers,
/// reals and `bytea` as such (so keys read as SQLite's of the same
/// values), anything else its text.
fn part_of<'a>(text: Option<&'a str>, ty: &ColType) -> Part<'a> {
    let Some(s) = text else { return Part::Null };
    let typed = match ty.typname.as_str() {
        t if is_int(t) => s.parse().ok().map(Part::Int),
        "float4" | "float8" => s.parse().ok().map(Part::Real),
        "bytea" => s
            .strip_prefix("\\x")
            .and_then(|h| hex::decode(h).ok())
            .map(|b| Part::Blob(b.into())),
        _ => None,
    };
    typed.unwrap_or(Part::Text(s.into()))
}

impl Row for PgRow<'_> {
    fn rowid(&self) -> Result<i64> {
        Err(Error::Internal("a PostgreSQL table has no rowid"))
    }

    fn part(&self, i: usize) -> Result<Part<'_>> {
        Ok(part_of(self.texts[i], self.types[i]))
    }

    fn value(&self, i: usize) -> Result<Value> {
        let ty = self.types[i];
        Ok(match self.texts[i] {
            None => Value::new(ValueKind::Null),
            Some(s) if ty.category == "A" => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(j) => parse_array(&j, ty.elem.as_deref().unwrap_or("")),
                Err(_) => with_meaning(text_value(s.to_string()), meaning::TEXT_FORM),
            },
            Some(s) => parse_text(s, &ty.typname),
        })
    }
}

/// Rows waiting to be written: one table, one column list, many rows.
#[derive(Default)]
struct Pending {
    table: Option<PgTable>,
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

/// A PostgreSQL database as a restore target.
pub(crate) type PostgresTarget = SqlTarget<PostgresDb>;

impl SqlTarget<PostgresDb> {
    pub(crate) fn open(url: &str, timeouts: &Timeouts) -> Result<PostgresTarget> {
        // Fails early on a bad URL; the connection opens in `start`.
        parse_url(url)?;
        Ok(SqlTarget::new(PostgresDb {
            url: url.to_string(),
            shown: redacted(url),
            client: None,
            pending: Pending::default(),
            statements: HashMap::new(),
            timeouts: *timeouts,
            replica: false,
            warnings: Vec::new(),
            objects_kept: 0,
            retry: Vec::new(),
        }))
    }
}

/// The PostgreSQL side of a restore: one session, one transaction from
/// `start` (committed at every sync) to `finish`; rows are written a
/// thousand to an `INSERT`.
pub(crate) struct PostgresDb {
    url: String,
    shown: String,
    client: Option<Client>,
    pending: Pending,
    /// Prepared `INSERT`s by their text.
    statements: HashMap<String, postgres::Statement>,
    timeouts: Timeouts,
    /// Whether the session runs as a replica (no user trigger fires).
    replica: bool,
    warnings: Vec<String>,
    /// Views kept for after the load so far (their order).
    objects_kept: usize,
    /// Functions the target refused before the tables existed, to try
    /// again after them.
    retry: Vec<String>,
}

impl PostgresDb {
    fn client(&mut self) -> Result<&mut Client> {
        self.client
            .as_mut()
            .ok_or(Error::Internal("PostgreSQL target used before start"))
    }

    fn exec(&mut self, sql: &str) -> Result<()> {
        let shown = self.shown.clone();
        self.client()?.batch_execute(sql).map_err(db_error(&shown))
    }

    /// Remember a constraint to add (validated) in `finish`.
    fn keep_pending(&mut self, kind: &str, name: &str, def: &str) -> Result<()> {
        let shown = self.shown.clone();
        self.client()?
            .execute(
                &format!("INSERT INTO {PENDING} (tbl, name, def) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"),
                &[&kind, &name, &def],
            )
            .map_err(db_error(&shown))?;
        Ok(())
    }

    /// Drop the foreign keys of existing restored tables (and those
    /// pointing at them), remembering them in the pending table.
    fn drop_foreign_keys(&mut self, restoring: &BTreeSet<String>) -> Result<()> {
        let shown = self.shown.clone();
        let rows = self
            .client()?
            .query(
                "SELECT c.conname::text, pg_get_constraintdef(c.oid), \
                 quote_ident(n.nspname) || '.' || quote_ident(t.relname), \
                 CASE WHEN n.nspname = 'public' THEN t.relname::text ELSE n.nspname || '.' || t.relname END, \
                 CASE WHEN rn.nspname = 'public' THEN r.relname::text ELSE rn.nspname || '.' || r.relname END \
                 FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
                 JOIN pg_namespace n ON n.oid = t.relnamespace \
                 JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace \
                 WHERE c.contype = 'f' AND c.conparentid = 0",
                &[],
            )
            .map_err(db_error(&shown))?;
        for r in rows {
            let (name, def, qual, kind, refkind): (String, String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            if !restoring.contains(&kind) && !restoring.contains(&refkind) {
                continue;
            }
            let add = format!("ALTER TABLE {qual} ADD CONSTRAINT {} {def}", ident(&name));
            self.keep_pending(&kind, &name, &add)?;
            self.exec(&format!(
                "ALTER TABLE {qual} DROP CONSTRAINT {}",
                ident(&name)
            ))?;
        }
        Ok(())
    }

    /// Without `session_replication_role`: disable the user triggers of
    /// the restored tables until `finish` (kept in the pending table, so an
    /// interrupted restore re-enables them when resumed), or say which
    /// will fire.
    fn disable_triggers(&mut self, restoring: &BTreeSet<String>) -> Result<()> {
        let shown = self.shown.clone();
        let rows = self
            .client()?
            .query(
                "SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                 CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END \
                 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE NOT g.tgisinternal AND g.tgenabled <> 'D'",
                &[],
            )
            .map_err(db_error(&shown))?;
        for r in rows {
            let (qual, kind): (String, String) = (r.get(0), r.get(1));
            if !restoring.contains(&kind) {
                continue;
            }
            let disabled = self.exec(&format!(
                "SAVEPOINT kindsnap_triggers; ALTER TABLE {qual} DISABLE TRIGGER USER; \
                 RELEASE SAVEPOINT kindsnap_triggers"
            ));
            match disabled {
                Ok(()) => self.keep_pending(
                    &kind,
                    "enable-triggers",
                    &format!("ALTER TABLE {qual} ENABLE TRIGGER USER"),
                )?,
                Err(e) => {
                    self.exec("ROLLBACK TO SAVEPOINT kindsnap_triggers")?;
                    self.warnings.push(format!(
                        "the triggers of table `{kind}` fired during the restore ({e}): \
                         session_replication_role needs a superuser and DISABLE TRIGGER the \
                         table's owner; restore as one of them to write exactly the snapshot"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The prepared statement for `sql`, from the cache when it is there.
    fn prepared(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let shown = self.shown.clone();
        let s = self.client()?.prepare(sql).map_err(db_error(&shown))?;
        if self.statements.len() > 64 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Run one recorded piece of code (a view, a trigger, a function);
    /// when the target refuses it (a function it calls is missing, a
    /// language is not installed) the restore goes on without it, as
    /// pg_restore does, and says so.
    fn try_code(&mut self, def: &str) -> Result<()> {
        if let Some(warning) = self.attempt(def)? {
            self.warnings.push(warning);
        }
        Ok(())
    }

    /// Run `def` in a savepoint; `Some` says why the target refused it
    /// (and nothing of it is left).
    fn attempt(&mut self, def: &str) -> Result<Option<String>> {
        let shown = self.shown.clone();
        self.exec("SAVEPOINT kindsnap_code")?;
        match self.client()?.batch_execute(def) {
            Ok(()) => self.exec("RELEASE SAVEPOINT kindsnap_code").map(|()| None),
            Err(e) => {
                self.exec("ROLLBACK TO SAVEPOINT kindsnap_code")?;
                let first = def.lines().next().unwrap_or_default();
                let first: String = first.chars().take(100).collect();
                Ok(Some(format!(
                    "`{first}…` from the snapshot could not be created in {shown}: {}; \
                     the rest of the restore went on without it",
                    why(&e)
                )))
            }
        }
    }

    /// Re-add, validated, every constraint the load set aside.
    fn restore_constraints(&mut self) -> Result<()> {
        let shown = self.shown.clone();
        let has_pending: bool = self
            .client()?
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&PENDING])
            .map_err(db_error(&shown))?
            .get(0);
        if !has_pending {
            return Ok(());
        }
        // Each table's constraints and triggers, then the recorded views
        // in their order (names sort as they were kept).
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT tbl, name, def FROM {PENDING} ORDER BY tbl = $1, tbl, name COLLATE \"C\""
                ),
                &[&OBJECTS],
            )
            .map_err(db_error(&shown))?;
        for r in rows {
            let (tbl, def): (String, String) = (r.get(0), r.get(2));
            if tbl == OBJECTS || ddl::is_trigger(&def) {
                self.try_code(&def)?;
                continue;
            }
            self.client()?
                .batch_execute(&def)
                .map_err(|e| Error::BrokenForeignKeys {
                    target: shown.clone(),
                    what: format!("a foreign key of table `{tbl}` ({})", why(&e)),
                })?;
        }
        self.exec(&format!("DROP TABLE {PENDING}"))
    }
}

/// `INSERT … VALUES (…), (…) … ON CONFLICT DO UPDATE` for `rows` rows of
/// `columns`, each value text cast to its column's type.
fn insert(t: &PgTable, columns: &[String], rows: usize) -> String {
    let casts: Vec<&str> = columns
        .iter()
        .map(|c| {
            t.table
                .column(c)
                .map_or("text", |col| col.sql_type.as_str())
        })
        .collect();
    let pk: BTreeSet<&String> = t.table.primary_key.iter().collect();
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !pk.contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", ident(c)))
        .collect();
    let action = if updates.is_empty() {
        "NOTHING".to_string()
    } else {
        format!("UPDATE SET {}", updates.join(", "))
    };
    let mut n = 0;
    let values: Vec<String> = (0..rows)
        .map(|_| {
            let row: Vec<String> = casts
                .iter()
                .map(|ty| {
                    n += 1;
                    format!("${n}::text::{ty}")
                })
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    let cols: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let pk_cols: Vec<String> = t.table.primary_key.iter().map(|c| ident(c)).collect();
    format!(
        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES {} ON CONFLICT ({}) DO {action}",
        t.qualified,
        cols.join(", "),
        values.join(", "),
        pk_cols.join(", ")
    )
}

/// `--keys uuid` needs a key column that can hold text.
fn uuid_problem(t: &Table, shown: &str) -> Option<String> {
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
            "--keys uuid needs a key column that can hold text, but `{}`.`{}` in {shown} is {}; \
             restore with --keys keep, or change the column to text or uuid",
            t.kind, pk.name, pk.sql_type
        ));
    }
    None
}

type Param<'a> = &'a (dyn postgres::types::ToSql + Sync);

impl Dialect for PostgresDb {
    const ENGINE: &'static str = "postgres";
    const NAME: &'static str = "PostgreSQL";
    const DDL: ddl::Engine = ddl::Engine::Postgres;
    type Table = PgTable;
    type Param = Option<String>;

    fn target_id(&self) -> String {
        self.shown.clone()
    }

    fn shown(&self) -> &str {
        &self.shown
    }

    fn is_open(&self) -> bool {
        self.client.is_some()
    }

    fn open(&mut self) -> Result<()> {
        self.client = Some(connect(&self.url, &self.timeouts)?);
        // A restore that waits for a lock an application holds gives up
        // after the timeout instead of hanging the nightly job; long
        // statements (a foreign key validated over millions of rows) are
        // not limited.
        let ms = self.timeouts.answer.as_millis().max(1);
        self.exec(&format!("SET lock_timeout = {ms}"))?;
        // No user trigger fires while the snapshot is written (pg_restore
        // --disable-triggers); only a superuser may say so for the session.
        self.replica = self.exec("SET session_replication_role = replica").is_ok();
        Ok(())
    }

    fn reflect(&mut self) -> Result<Vec<PgTable>> {
        let shown = self.shown.clone();
        let client = self.client()?;
        reflect(&mut |s, p| client.query(s, p)).map_err(db_error(&shown))
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.exec(sql)
    }

    fn execute(&mut self, sql: &str) -> Result<u64> {
        let shown = self.shown.clone();
        self.client()?.execute(sql, &[]).map_err(db_error(&shown))
    }

    fn run_ddl(&mut self, stmt: &str) -> std::result::Result<(), String> {
        let client = self.client().map_err(|e| e.to_string())?;
        client.batch_execute(stmt).map_err(|e| {
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or(e.to_string())
        })
    }

    fn defer(&mut self, kind: &str, statements: &[String]) -> Result<()> {
        for (i, def) in statements.iter().enumerate() {
            self.keep_pending(kind, &format!("recorded-{i}"), def)?;
        }
        Ok(())
    }

    fn has_object(&mut self, o: &SchemaObject) -> Result<bool> {
        let (sql, params): (&str, Vec<&str>) = match o.object {
            ObjectKind::Extension => (
                "SELECT 1 FROM pg_extension WHERE extname = $1",
                vec![&o.name],
            ),
            ObjectKind::Type | ObjectKind::Domain => (
                "SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                 WHERE n.nspname = $1 AND t.typname = $2",
                vec![&o.schema, &o.name],
            ),
            ObjectKind::Function => (
                "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = $1 AND p.proname = $2 \
                 AND pg_get_function_identity_arguments(p.oid) = $3",
                vec![&o.schema, &o.name, &o.arguments],
            ),
            ObjectKind::Sequence | ObjectKind::View | ObjectKind::MaterializedView => (
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                vec![&o.schema, &o.name],
            ),
        };
        let shown = self.shown.clone();
        let params: Vec<Param> = params.iter().map(|p| p as Param).collect();
        let client = self.client()?;
        // Argument types print as they were recorded: qualified.
        let mut lookup = || -> std::result::Result<bool, postgres::Error> {
            let path: String = client
                .query_one("SELECT current_setting('search_path')", &[])?
                .get(0);
            client.query_one("SELECT set_config('search_path', 'pg_catalog', true)", &[])?;
            let found = !client.query(sql, &params)?.is_empty();
            client.query_one("SELECT set_config('search_path', $1, true)", &[&path])?;
            Ok(found)
        };
        lookup().map_err(db_error(&shown))
    }

    /// Types, domains, functions, sequences (with their current value)
    /// at once, in their schema; views and materialized views kept in the
    /// pending table, created after the load (and after the tables'
    /// foreign keys and triggers).
    fn create_object(&mut self, o: &SchemaObject, vetted: &[String]) -> Result<()> {
        if matches!(o.object, ObjectKind::View | ObjectKind::MaterializedView) {
            // Named so that they sort in creation order.
            self.objects_kept += 1;
            for (i, stmt) in vetted.iter().enumerate() {
                let name = format!("object-{:06}-{i:03} {}", self.objects_kept, o.id());
                self.keep_pending(OBJECTS, &name, stmt)?;
            }
            return Ok(());
        }
        let shown = self.shown.clone();
        let failed = |e: String| Error::CreateFailed {
            what: format!("{} `{}`", o.object.word(), o.id()),
            target: shown.clone(),
            why: e,
            kept: None,
        };
        let mut statements = Vec::new();
        if !o.schema.is_empty() && o.schema != "public" {
            statements.push(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&o.schema)));
        }
        if o.object == ObjectKind::Function {
            // Bodies may use tables that do not exist yet (as pg_dump);
            // a signature may name a table's row type (`RETURNS SETOF
            // film`): such a function is tried again once the tables exist.
            statements.push("SET LOCAL check_function_bodies = off".into());
            for stmt in statements.iter().chain(vetted) {
                if self.attempt(stmt)?.is_some() {
                    self.retry.push(stmt.clone());
                }
            }
            return Ok(());
        }
        statements.extend(vetted.iter().cloned());
        for stmt in &statements {
            self.run_ddl(stmt).map_err(failed)?;
        }
        if let (ObjectKind::Sequence, Some((last, called))) = (o.object, o.value) {
            let qual = format!("{}.{}", ident(&o.schema), ident(&o.name));
            self.client()?
                .query(
                    "SELECT setval($1::text::regclass, $2, $3)",
                    &[&qual, &last, &called],
                )
                .map_err(|e| failed(why(&e)))?;
        }
        Ok(())
    }

    fn trusted_extension(&mut self, name: &str) -> Result<bool> {
        let shown = self.shown.clone();
        Ok(self
            .client()?
            .query_one(
                "SELECT coalesce(bool_and(v.trusted), false) FROM pg_available_extension_versions v \
                 JOIN pg_available_extensions a ON a.name = v.name AND a.default_version = v.version \
                 WHERE v.name = $1",
                &[&name],
            )
            .map_err(db_error(&shown))?
            .get(0))
    }

    /// Only a populated one: refreshing one created `WITH NO DATA` would
    /// fill it.
    fn after_tables(&mut self) -> Result<()> {
        for stmt in std::mem::take(&mut self.retry) {
            self.try_code(&stmt)?;
        }
        Ok(())
    }

    fn refresh_later(&mut self, o: &SchemaObject) -> Result<()> {
        let qual = format!("{}.{}", ident(&o.schema), ident(&o.name));
        let shown = self.shown.clone();
        let populated = self
            .client()?
            .query(
                "SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND relispopulated",
                &[&qual],
            )
            .map_err(db_error(&shown))?;
        if populated.is_empty() {
            return Ok(());
        }
        self.keep_pending(
            OBJECTS,
            &format!("refresh-{}", o.id()),
            &format!("REFRESH MATERIALIZED VIEW {qual}"),
        )
    }

    fn name(t: &PgTable) -> String {
        t.qualified.clone()
    }

    fn uuid_problem(&self, t: &Table) -> Option<String> {
        uuid_problem(t, &self.shown)
    }

    /// Before anything is cleared or written: the foreign keys of the
    /// tables restored (and pointing at them) go, until `finish`.
    fn before_load(&mut self, restoring: &BTreeSet<String>) -> Result<()> {
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {PENDING} (tbl text NOT NULL, name text NOT NULL, def text NOT NULL, PRIMARY KEY (tbl, name))"
        ))?;
        if !self.replica {
            self.disable_triggers(restoring)?;
        }
        self.drop_foreign_keys(restoring)
    }

    fn param(v: &Value) -> Option<String> {
        to_text(v)
    }

    fn key_param(p: &Part<'_>) -> Option<String> {
        p.text_form()
    }

    fn write(&mut self, t: &PgTable, columns: Vec<String>, row: Vec<Option<String>>) -> Result<()> {
        let same_table = self
            .pending
            .table
            .as_ref()
            .is_some_and(|p| p.table.kind == t.table.kind);
        if !same_table || columns != self.pending.columns {
            self.flush()?;
            self.pending.table = Some(t.clone());
            self.pending.columns = columns;
        }
        self.pending.rows.push(row);
        if self.pending.rows.len() >= 1000 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.rows.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let t = pending
            .table
            .ok_or(Error::Internal("PostgreSQL target: rows outside a table"))?;
        let per_batch = (30_000 / pending.columns.len().max(1)).clamp(1, 1000);
        let shown = self.shown.clone();
        for chunk in pending.rows.chunks(per_batch) {
            let stmt = self.prepared(&insert(&t, &pending.columns, chunk.len()))?;
            let params: Vec<Param> = chunk
                .iter()
                .flat_map(|r| r.iter().map(|v| v as Param))
                .collect();
            self.client()?
                .execute(&stmt, &params)
                .map_err(|e| Error::DbWrite {
                    target: shown.clone(),
                    table: t.table.kind.clone(),
                    why: why(&e),
                })?;
        }
        Ok(())
    }

    fn key_rows(
        &mut self,
        t: &PgTable,
        f: &mut dyn FnMut(&[Part<'_>]) -> Result<()>,
    ) -> Result<()> {
        let pk = &t.table.primary_key;
        let select: Vec<String> = pk.iter().map(|c| format!("{}::text", ident(c))).collect();
        let types: Vec<&ColType> = pk.iter().filter_map(|c| t.type_of(c)).collect();
        let shown = self.shown.clone();
        let mut it = self
            .client()?
            .query_raw(
                &format!("SELECT {} FROM {}", select.join(", "), t.qualified),
                std::iter::empty::<i32>(),
            )
            .map_err(db_error(&shown))?;
        while let Some(r) = it.next().map_err(db_error(&shown))? {
            let parts: Vec<Part> = types
                .iter()
                .enumerate()
                .map(|(i, ty)| part_of(r.get(i), ty))
                .collect();
            f(&parts)?;
        }
        Ok(())
    }

    fn delete(&mut self, t: &PgTable, key: Vec<Option<String>>) -> Result<()> {
        let cond: Vec<String> = t
            .table
            .primary_key
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Compared as the column's type: a key's text (a real's,
                // a timestamp's) need not be PostgreSQL's own spelling.
                let ty = t
                    .table
                    .column(c)
                    .map_or("text", |col| col.sql_type.as_str());
                format!("{} IS NOT DISTINCT FROM ${}::text::{ty}", ident(c), i + 1)
            })
            .collect();
        let params: Vec<Param> = key.iter().map(|v| v as Param).collect();
        let shown = self.shown.clone();
        self.client()?
            .execute(
                &format!("DELETE FROM {} WHERE {}", t.qualified, cond.join(" AND ")),
                &params,
            )
            .map_err(db_error(&shown))?;
        Ok(())
    }

    fn reserve_ids(&mut self, t: &PgTable, _keys: &[Key]) -> Result<()> {
        let [col] = &t.table.primary_key[..] else {
            return Ok(());
        };
        if !t.type_of(col).is_some_and(|ty| is_int(&ty.typname)) {
            return Ok(());
        }
        let shown = self.shown.clone();
        let client = self.client()?;
        // Past the largest id in the table (restored or already there).
        let max: Option<i64> = client
            .query_one(
                &format!("SELECT max({})::bigint FROM {}", ident(col), t.qualified),
                &[],
            )
            .map_err(db_error(&shown))?
            .get(0);
        let Some(max) = max else { return Ok(()) };
        for r in client
            .query(KEY_SEQUENCES, &[&t.qualified, col])
            .map_err(db_error(&shown))?
        {
            let (seq, owned): (String, bool) = (r.get(0), r.get(1));
            // A sequence the column owns is the table's: it moves to the
            // largest id. One only named in the default may be shared
            // with other tables: it only ever moves forward.
            let sql = if owned {
                "SELECT setval($1::text::regclass, $2)".to_string()
            } else {
                format!("SELECT setval($1::text::regclass, $2) FROM {seq} WHERE NOT is_called OR last_value < $2")
            };
            client
                .query(&sql, &[&seq, &max])
                .map_err(db_error(&shown))?;
        }
        Ok(())
    }

    fn reserve_method(&self) -> &'static str {
        "postgres: setval of the key column's sequence (its own, or one its default takes nextval from) past the largest id"
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn discard(&mut self) {
        if let Some(mut c) = self.client.take() {
            let _ = c.batch_execute("ROLLBACK");
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.exec("COMMIT; BEGIN")?;
        self.restore_constraints()?;
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
}
