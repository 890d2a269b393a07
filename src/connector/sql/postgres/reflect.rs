//! PostgreSQL's catalogue read into [`Table`]s: columns with their types,
//! the primary key, constraints (foreign keys kept apart, to be added
//! after a load), indexes, and the DDL that recreates the table.
//!
//! Reads only; runs through whatever session the caller lends (a
//! snapshot's read transaction, a restore's connection).

use super::{PostgresDb, PENDING};
use crate::connector::sql::dialect::Dialect;
use crate::connector::sql::{ident, Column, ForeignKey, Table};

/// What a column's values are parsed by.
#[derive(Debug, Clone)]
pub(super) struct ColType {
    pub(super) typname: String,
    /// The element type of an array column.
    pub(super) elem: Option<String>,
    pub(super) category: String,
    pub(super) generated: bool,
}

/// A table on a server: the shared [`Table`] plus what reading it needs.
#[derive(Debug, Clone)]
pub(crate) struct PgTable {
    pub(super) table: Table,
    pub(super) qualified: String,
    /// What a snapshot reads rows from.
    pub(super) from: String,
    pub(super) types: Vec<ColType>,
}

impl AsRef<Table> for PgTable {
    fn as_ref(&self) -> &Table {
        &self.table
    }
}

impl PgTable {
    /// The columns a snapshot reads (generated ones are recreated by the
    /// DDL, not read), with their types.
    pub(super) fn read_columns(&self) -> impl Iterator<Item = (&Column, &ColType)> {
        self.table
            .columns
            .iter()
            .zip(&self.types)
            .filter(|(_, ty)| !ty.generated)
    }

    /// The type of column `name`.
    pub(super) fn type_of(&self, name: &str) -> Option<&ColType> {
        self.table
            .columns
            .iter()
            .position(|c| c.name == name)
            .map(|i| &self.types[i])
    }
}

/// A table's kind: its name, schema-qualified outside `public`.
pub(super) fn kind_of(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    }
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

type PgResult<T> = std::result::Result<T, postgres::Error>;

/// A query on the lent session.
type Query<'a> =
    dyn FnMut(&str, &[&(dyn postgres::types::ToSql + Sync)]) -> PgResult<Vec<postgres::Row>> + 'a;

/// Every user table, in kind order (`pending` bookkeeping excluded).
pub(super) fn reflect(q: &mut Query<'_>) -> PgResult<Vec<PgTable>> {
    let rows = q(
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
         AND c.relname <> $1",
        &[&PENDING],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let relation = Relation {
            oid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            partitioned: r.get::<_, String>(3) == "p",
        };
        out.push(table(q, relation)?);
    }
    out.sort_by(|a, b| a.table.kind.cmp(&b.table.kind));
    Ok(out)
}

struct Relation {
    oid: u32,
    schema: String,
    name: String,
    partitioned: bool,
}

fn table(q: &mut Query<'_>, rel: Relation) -> PgResult<PgTable> {
    let qual = qualified(&rel.schema, &rel.name);
    let mut cols = columns(q, rel.oid)?;
    let primary_key = primary_key(q, rel.oid)?;
    let constraints = constraints(q, rel.oid, &qual)?;
    cols.ddl.extend(constraints.in_table);
    let mut ddl = create_statements(&rel.schema, &qual, &cols);
    ddl.extend(indexes(q, rel.oid)?);
    Ok(PgTable {
        table: Table {
            kind: kind_of(&rel.schema, &rel.name),
            engine: PostgresDb::ENGINE.into(),
            columns: cols.columns,
            rowid: false,
            primary_key,
            foreign_keys: constraints.foreign_keys,
            ddl,
            after: constraints.after,
            pragmas: Vec::new(),
        },
        // A partitioned table is read through its parent; an ordinary
        // one without its inheritance children (they are kinds of
        // their own).
        from: if rel.partitioned {
            qual.clone()
        } else {
            format!("ONLY {qual}")
        },
        qualified: qual,
        types: cols.types,
    })
}

/// A table's columns, their types, their lines of `CREATE TABLE`, and
/// the sequences their defaults draw from.
#[derive(Default)]
struct Columns {
    columns: Vec<Column>,
    types: Vec<ColType>,
    ddl: Vec<String>,
    /// (sequence, column) of `nextval` defaults.
    sequences: Vec<(String, String)>,
}

fn columns(q: &mut Query<'_>, oid: u32) -> PgResult<Columns> {
    let rows = q(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
         pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text, \
         t.typname::text, t.typcategory::text, et.typname::text \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        &[&oid],
    )?;
    let mut out = Columns::default();
    for c in rows {
        let column = Column {
            name: c.get(0),
            sql_type: c.get(1),
            not_null: c.get(2),
            default: c.get(3),
        };
        let identity: String = c.get(4);
        let generated: String = c.get(5);
        out.ddl.push(column_ddl(
            &column,
            &identity,
            &generated,
            &mut out.sequences,
        ));
        out.types.push(ColType {
            typname: c.get(6),
            category: c.get(7),
            elem: c.get(8),
            generated: generated == "s",
        });
        out.columns.push(column);
    }
    Ok(out)
}

/// A column's line of `CREATE TABLE`; a `nextval` default's sequence goes
/// into `sequences`.
fn column_ddl(
    column: &Column,
    identity: &str,
    generated: &str,
    sequences: &mut Vec<(String, String)>,
) -> String {
    let mut d = format!("{} {}", ident(&column.name), column.sql_type);
    match (generated, identity, &column.default) {
        ("s", _, Some(expr)) => d.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED")),
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
    d
}

fn primary_key(q: &mut Query<'_>, oid: u32) -> PgResult<Vec<String>> {
    let rows = q(
        "SELECT a.attname::text FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
        &[&oid],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A table's constraints: foreign keys (recorded, and as statements for
/// after the load) and the rest as lines of `CREATE TABLE`.
struct Constraints {
    foreign_keys: Vec<ForeignKey>,
    after: Vec<String>,
    in_table: Vec<String>,
}

fn constraints(q: &mut Query<'_>, oid: u32, qual: &str) -> PgResult<Constraints> {
    let rows = q(
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
    )?;
    let mut out = Constraints {
        foreign_keys: Vec::new(),
        after: Vec::new(),
        in_table: Vec::new(),
    };
    for c in rows {
        let name: String = c.get(0);
        let def: String = c.get(1);
        let contype: String = c.get(2);
        if contype == "f" {
            let rs: String = c.get(3);
            let rn: String = c.get(4);
            out.foreign_keys.push(ForeignKey {
                columns: c.get(5),
                kind: kind_of(&rs, &rn),
                ref_columns: c.get(6),
            });
            out.after.push(format!(
                "ALTER TABLE {qual} ADD CONSTRAINT {} {def}",
                ident(&name)
            ));
        } else {
            out.in_table
                .push(format!("CONSTRAINT {} {def}", ident(&name)));
        }
    }
    Ok(out)
}

/// The schema, the sequences, the table and the sequences' ownership.
fn create_statements(schema: &str, qual: &str, cols: &Columns) -> Vec<String> {
    let mut ddl = Vec::new();
    if schema != "public" {
        ddl.push(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)));
    }
    for (seq, _) in &cols.sequences {
        ddl.push(format!("CREATE SEQUENCE IF NOT EXISTS {seq}"));
    }
    ddl.push(format!(
        "CREATE TABLE {qual} (\n  {}\n)",
        cols.ddl.join(",\n  ")
    ));
    for (seq, col) in &cols.sequences {
        ddl.push(format!(
            "ALTER SEQUENCE {seq} OWNED BY {qual}.{}",
            ident(col)
        ));
    }
    ddl
}

/// Indexes that no constraint owns.
fn indexes(q: &mut Query<'_>, oid: u32) -> PgResult<Vec<String>> {
    let rows = q(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
         WHERE i.indrelid = $1 AND NOT EXISTS \
         (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid) \
         ORDER BY 1",
        &[&oid],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
