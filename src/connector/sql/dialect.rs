//! What one SQL engine provides, so that everything about kindsnap's
//! semantics is written once for every engine.
//!
//! The generic code owns the meaning: the schema kind (`kindsnap.schema`)
//! and what a restore does with it (vetting recorded DDL through
//! [`ddl::vet_table`] under the [`ddl::SchemaPolicy`], comparing recorded
//! tables with existing ones, creating missing ones, uuid checks deferred
//! until the tables exist), foreign-key ordering of kinds, warnings, how a
//! row becomes an entity and an entity a row, and how keys are built from
//! primary keys ([`super::element_id`]). [`super::target::SqlTarget`] is
//! the one restore target; [`super::scan::scan`] the one snapshot loop.
//!
//! An engine provides the rest, and nothing here may decide semantics:
//!
//! - for a restore, a [`Dialect`]: connecting and setting the session up,
//!   reflecting its catalogue into [`Table`]s (with whatever else it needs
//!   to read and write them, [`Dialect::Table`]), quoting table names,
//!   converting values and key components to the parameters its driver
//!   binds, writing rows (at once or in batches), deleting by key, listing
//!   keys, reserving ids, its engine name and the [`ddl::Engine`] its
//!   recorded statements are parsed as, and the steps around the load that
//!   are its own (PostgreSQL drops and re-adds foreign keys; SQLite turns
//!   them off and checks them at the end; both keep user triggers from
//!   firing, since a restore writes exactly the snapshot);
//! - for a snapshot, a [`Reader`] over one read transaction: the tables,
//!   the columns it reads of each, and the rows in primary-key order, each
//!   a [`Row`] that gives a column as a key component or as a property.
//!
//! A new engine (MySQL, MariaDB) is a module with a `Dialect`, a `Reader`,
//! a source type that opens the read transaction and calls `scan`, and
//! `SqlTarget<ItsDialect>` as its target; plus its `ddl::Engine` (the
//! parser dialect and how it compares names) and a location scheme.

use std::collections::BTreeSet;

use super::{ddl, Column, Part, SchemaObject, Table};
use crate::error::Result;
use crate::model::{Key, Value};

/// One SQL engine as a restore target.
pub(crate) trait Dialect {
    /// The engine's name as recorded in [`Table::engine`] (`sqlite`).
    const ENGINE: &'static str;
    /// The engine's name in messages (`SQLite`).
    const NAME: &'static str;
    /// How [`ddl`] parses and vets statements recorded from this engine.
    const DDL: ddl::Engine;
    /// A table as reflected: the shared [`Table`] and whatever else the
    /// engine needs to write it.
    type Table: AsRef<Table>;
    /// One value as the driver binds it.
    type Param;

    /// A stable identity of the database (see `EntityTarget::target_id`).
    fn target_id(&self) -> String;
    /// The database in messages: a path, a URL without its password.
    fn shown(&self) -> &str;

    /// Whether [`Dialect::open`] has run (and `finish` or `discard` not).
    fn is_open(&self) -> bool;
    /// Connect and set the session up for a restore; no transaction yet.
    fn open(&mut self) -> Result<()>;
    /// Every table of the database, as it is now.
    fn reflect(&mut self) -> Result<Vec<Self::Table>>;
    /// Run statements without results (`BEGIN`, `COMMIT; BEGIN`).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Run one statement; how many rows it changed.
    fn execute(&mut self, sql: &str) -> Result<u64>;
    /// Run one vetted schema statement; `Err` is the engine's message.
    fn run_ddl(&mut self, stmt: &str) -> std::result::Result<(), String>;
    /// Keep statements to run after the load (a created table's foreign
    /// keys), so that an interrupted restore still runs them when resumed.
    fn defer(&mut self, kind: &str, statements: &[String]) -> Result<()>;

    /// Whether a recorded schema-level object exists on the target (it is
    /// then left as it is). Engines that record none have none.
    fn has_object(&mut self, _o: &SchemaObject) -> Result<bool> {
        Ok(false)
    }
    /// Create a recorded schema-level object from its vetted statements:
    /// at once, or — views, materialized views — kept to run after the
    /// load (so that an interrupted restore still creates them when
    /// resumed). `Err` is the engine's message.
    fn create_object(&mut self, o: &SchemaObject, _vetted: &[String]) -> Result<()> {
        Err(crate::error::Error::CreateFailed {
            what: format!("{} `{}`", o.object.word(), o.id()),
            target: format!("a {} database", Self::NAME),
            why: "the engine has no such objects".into(),
            kept: None,
        })
    }
    /// After the recorded tables are created (before the load): what
    /// waited for them (PostgreSQL: functions whose signature names a
    /// table's row type).
    fn after_tables(&mut self) -> Result<()> {
        Ok(())
    }
    /// Whether the target marks extension `name` as trusted (creatable
    /// by non-superusers: its install script is the server's and harmless),
    /// so a restore creates it without `--trust-schema`.
    fn trusted_extension(&mut self, _name: &str) -> Result<bool> {
        Ok(false)
    }
    /// Bring a materialized view that exists on the target up to date
    /// with the restored rows, after the load.
    fn refresh_later(&mut self, _o: &SchemaObject) -> Result<()> {
        Ok(())
    }

    /// The table's name in a statement, quoted (and qualified).
    fn name(t: &Self::Table) -> String;
    /// Type names as compared between a recorded table and an existing
    /// one: case and spaces ignored (`NUMERIC(10, 2)` is `numeric(10,2)`).
    fn normalise_type(t: &str) -> String {
        t.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase()
    }
    /// Why the table's key cannot take uuid names (`--keys uuid`), if so.
    fn uuid_problem(&self, t: &Table) -> Option<String>;

    /// Before anything is cleared or written into the tables of the kinds
    /// `restoring` (PostgreSQL drops their foreign keys until `finish`).
    fn before_load(&mut self, _restoring: &BTreeSet<String>) -> Result<()> {
        Ok(())
    }
    /// Put back the recorded database settings ([`Table::pragmas`]) after
    /// the schema is applied; each is recorded text, to vet.
    fn apply_pragmas(&mut self, _recorded: &BTreeSet<String>) -> Result<()> {
        Ok(())
    }
    /// A property as a parameter.
    fn param(v: &Value) -> Self::Param;
    /// A key component as a parameter.
    fn key_param(p: &Part<'_>) -> Self::Param;
    /// Upsert one row: `columns` (the key column first when the key is
    /// one column, `rowid` for a rowid table) take `row`. May buffer
    /// until [`Dialect::flush`].
    fn write(&mut self, t: &Self::Table, columns: Vec<String>, row: Vec<Self::Param>)
        -> Result<()>;
    /// Write whatever `write` buffered.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Call `f` with the key components of every row of `t`.
    fn key_rows(
        &mut self,
        t: &Self::Table,
        f: &mut dyn FnMut(&[Part<'_>]) -> Result<()>,
    ) -> Result<()>;
    /// Delete the row whose key components are `key`.
    fn delete(&mut self, t: &Self::Table, key: Vec<Self::Param>) -> Result<()>;
    /// Make sure the engine never hands out these keys' ids by itself.
    fn reserve_ids(&mut self, t: &Self::Table, keys: &[Key]) -> Result<()>;
    /// How [`Dialect::reserve_ids`] does it, for the plan and the report.
    fn reserve_method(&self) -> &'static str;
    /// What the engine could not do as asked, for the report (a trigger
    /// that could not be turned off).
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Roll back and close.
    fn discard(&mut self);
    /// Commit (buffered rows are flushed already), check or restore the
    /// constraints the load set aside, and close.
    fn finish(&mut self) -> Result<()>;
}

/// One row as a snapshot reads it: column `i` is the `i`-th of
/// [`Reader::columns`].
pub(crate) trait Row {
    /// The rowid (asked only of tables keyed by it).
    fn rowid(&self) -> Result<i64>;
    /// Column `i` as a key component: an integer only when the column's
    /// type is one, so that an integer key is an id.
    fn part(&self, i: usize) -> Result<Part<'_>>;
    /// Column `i` as a property.
    fn value(&self, i: usize) -> Result<Value>;
}

/// One SQL engine as a snapshot source, inside one read transaction.
pub(crate) trait Reader {
    /// The engine's name in log lines.
    const ENGINE: &'static str;
    type Table: AsRef<Table>;
    /// Every table, in kind order.
    fn tables(&mut self) -> Result<Vec<Self::Table>>;
    /// The columns a snapshot reads of `t` (not generated ones), in the
    /// order [`Reader::rows`] gives them.
    fn columns(t: &Self::Table) -> Vec<&Column>;
    /// Call `f` with every row of `t`, in primary-key order.
    fn rows(&mut self, t: &Self::Table, f: &mut dyn FnMut(&dyn Row) -> Result<()>) -> Result<()>;
    /// The schema-level objects (PostgreSQL's types, sequences, functions,
    /// views…) that go with the recorded `tables`, and one warning per
    /// object the snapshot cannot record. None by default.
    fn objects(&mut self, _tables: &[&Table]) -> Result<(Vec<SchemaObject>, Vec<String>)> {
        Ok((Vec::new(), Vec::new()))
    }
}
