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
    /// The column's type; a domain's base type (through up to three
    /// domains), so that values of `year AS integer` read as integers.
    pub(super) typname: String,
    /// The element type of an array column (a domain's base type, one
    /// level).
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
pub(crate) fn kind_of(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    }
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

pub(super) type PgResult<T> = std::result::Result<T, postgres::Error>;

/// A query on the lent session.
pub(super) type Query<'a> =
    dyn FnMut(&str, &[&(dyn postgres::types::ToSql + Sync)]) -> PgResult<Vec<postgres::Row>> + 'a;

/// Every user table, in kind order (`pending` bookkeeping excluded).
pub(super) fn reflect(q: &mut Query<'_>) -> PgResult<Vec<PgTable>> {
    let rows = q(
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, \
         c.relpersistence = 'u' FROM pg_class c \
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
            unlogged: r.get(4),
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
    /// `UNLOGGED`: not crash-safe, not replicated (kept as it was).
    unlogged: bool,
}

fn table(q: &mut Query<'_>, rel: Relation) -> PgResult<PgTable> {
    let qual = qualified(&rel.schema, &rel.name);
    let mut cols = columns(q, rel.oid)?;
    let primary_key = primary_key(q, rel.oid)?;
    let mut constraints = constraints(q, rel.oid, &qual, false)?;
    cols.ddl.extend(std::mem::take(&mut constraints.in_table));
    let partition_by: Option<String> = match rel.partitioned {
        true => q("SELECT pg_get_partkeydef($1)", &[&rel.oid])?[0].get(0),
        false => None,
    };
    let mut ddl = create_statements(&rel, &qual, &cols, partition_by.as_deref());
    let parts = partitions(q, rel.oid)?;
    ddl.extend(parts.ddl);
    constraints.after.extend(parts.after);
    ddl.extend(indexes(q, rel.oid, rel.partitioned)?);
    ddl.extend(triggers(q, rel.oid)?);
    ddl.extend(comments(q, rel.oid, &qual)?);
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
    /// The sequences of `nextval` defaults.
    sequences: Vec<DefaultSequence>,
}

/// A sequence a column's default takes `nextval` from.
struct DefaultSequence {
    /// As the default names it.
    name: String,
    column: String,
    /// Whether the column owns it (`serial`).
    owned: bool,
    /// ` AS integer INCREMENT BY 1 …`, so that it is created as it was.
    options: String,
}

fn columns(q: &mut Query<'_>, oid: u32) -> PgResult<Columns> {
    let rows = q(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
         pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text, \
         COALESCE(b3.typname, b2.typname, b1.typname, t.typname)::text, \
         COALESCE(b3.typcategory, b2.typcategory, b1.typcategory, t.typcategory)::text, \
         COALESCE(eb.typname, et.typname)::text, \
         EXISTS (SELECT 1 FROM pg_depend dd JOIN pg_depend od ON od.classid = 'pg_class'::regclass \
           AND od.objid = dd.refobjid AND od.refobjid = a.attrelid AND od.refobjsubid = a.attnum \
           AND od.deptype = 'a' \
           WHERE dd.classid = 'pg_attrdef'::regclass AND dd.objid = d.oid \
           AND dd.refclassid = 'pg_class'::regclass), \
         (SELECT ' AS ' || format_type(s.seqtypid, NULL) || ' INCREMENT BY ' || s.seqincrement \
           || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax || ' START WITH ' || s.seqstart \
           || ' CACHE ' || s.seqcache || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END \
           FROM pg_depend dd JOIN pg_sequence s ON s.seqrelid = dd.refobjid \
           WHERE dd.classid = 'pg_attrdef'::regclass AND dd.objid = d.oid \
           AND dd.refclassid = 'pg_class'::regclass LIMIT 1), \
         (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co \
           JOIN pg_namespace cn ON cn.oid = co.collnamespace \
           WHERE co.oid = a.attcollation AND a.attcollation <> t.typcollation) \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_type b1 ON b1.oid = t.typbasetype AND t.typtype = 'd' \
         LEFT JOIN pg_type b2 ON b2.oid = b1.typbasetype AND b1.typtype = 'd' \
         LEFT JOIN pg_type b3 ON b3.oid = b2.typbasetype AND b2.typtype = 'd' \
         LEFT JOIN pg_type et ON et.oid = \
           COALESCE(b3.typelem, b2.typelem, b1.typelem, t.typelem) \
           AND COALESCE(b3.typcategory, b2.typcategory, b1.typcategory, t.typcategory) = 'A' \
         LEFT JOIN pg_type eb ON eb.oid = et.typbasetype AND et.typtype = 'd' \
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
        let sequence = DefaultSequence {
            name: String::new(),
            column: column.name.clone(),
            owned: c.get(9),
            options: c.get::<_, Option<String>>(10).unwrap_or_default(),
        };
        let collation: Option<String> = c.get(11);
        out.ddl.push(column_ddl(
            &column,
            (&identity, &generated, collation.as_deref(), sequence),
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
    (identity, generated, collation, sequence): (&str, &str, Option<&str>, DefaultSequence),
    sequences: &mut Vec<DefaultSequence>,
) -> String {
    let mut d = format!("{} {}", ident(&column.name), column.sql_type);
    if let Some(c) = collation {
        d.push_str(&format!(" COLLATE {c}"));
    }
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
                sequences.push(DefaultSequence {
                    name: seq,
                    ..sequence
                });
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

/// `only_local`: a partition's own, not those it inherits.
fn constraints(q: &mut Query<'_>, oid: u32, qual: &str, only_local: bool) -> PgResult<Constraints> {
    let rows = q(
        "SELECT c.conname::text, pg_get_constraintdef(c.oid), c.contype::text, \
         rn.nspname::text, rc.relname::text, \
         ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) \
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), \
         ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) \
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o) \
         FROM pg_constraint c LEFT JOIN pg_class rc ON rc.oid = c.confrelid \
         LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
         WHERE c.conrelid = $1 AND c.contype IN ('p', 'u', 'c', 'x', 'f') AND c.conparentid = 0 \
         AND (c.conislocal OR NOT $2) ORDER BY c.contype, c.conname",
        &[&oid, &only_local],
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

/// The schema, the sequences, the table (`PARTITION BY` for a
/// partitioned one) and the ownership of the sequences its columns own
/// (a sequence only named in a default is recorded on its own, see
/// `objects.rs`, and stays owned by nobody).
fn create_statements(
    rel: &Relation,
    qual: &str,
    cols: &Columns,
    partition_by: Option<&str>,
) -> Vec<String> {
    let schema = rel.schema.as_str();
    let mut ddl = Vec::new();
    if schema != "public" {
        ddl.push(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)));
    }
    for seq in &cols.sequences {
        ddl.push(format!(
            "CREATE SEQUENCE IF NOT EXISTS {}{}",
            seq.name, seq.options
        ));
    }
    let partitioned = partition_by
        .map(|p| format!(" PARTITION BY {p}"))
        .unwrap_or_default();
    let unlogged = if rel.unlogged { "UNLOGGED " } else { "" };
    ddl.push(format!(
        "CREATE {unlogged}TABLE {qual} (\n  {}\n){partitioned}",
        cols.ddl.join(",\n  ")
    ));
    for seq in cols.sequences.iter().filter(|s| s.owned) {
        ddl.push(format!(
            "ALTER SEQUENCE {} OWNED BY {qual}.{}",
            seq.name,
            ident(&seq.column)
        ));
    }
    ddl
}

/// A partitioned table's partitions, parents before their children:
/// `CREATE TABLE p PARTITION OF parent FOR VALUES …` (or `DEFAULT`), with
/// `PARTITION BY` for a partition partitioned in turn. Rows land in them
/// by themselves when the restore writes the parent.
fn partitions(q: &mut Query<'_>, oid: u32) -> PgResult<Partitions> {
    let rows = q(
        "WITH RECURSIVE tree AS (\
           SELECT i.inhrelid AS oid, i.inhparent AS parent, 1 AS depth FROM pg_inherits i WHERE i.inhparent = $1 \
           UNION ALL SELECT i.inhrelid, i.inhparent, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid) \
         SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.oid, \
           quote_ident(pn.nspname) || '.' || quote_ident(pc.relname), pg_get_expr(c.relpartbound, c.oid), \
           CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END \
         FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_class pc ON pc.oid = t.parent JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
         WHERE c.relispartition AND c.relkind IN ('r', 'p') ORDER BY t.depth, c.oid",
        &[&oid],
    )?;
    let mut out = Partitions::default();
    let mut own = Vec::new();
    for r in rows {
        let (name, part, parent, bound): (String, u32, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let by = r
            .get::<_, Option<String>>(4)
            .map(|p| format!(" PARTITION BY {p}"))
            .unwrap_or_default();
        out.ddl.push(format!(
            "CREATE TABLE {name} PARTITION OF {parent} {bound}{by}"
        ));
        own.push((part, name));
    }
    // What each partition has of its own, once every partition exists.
    for (part, name) in own {
        let constraints = constraints(q, part, &name, true)?;
        out.ddl.extend(
            constraints
                .in_table
                .iter()
                .map(|c| format!("ALTER TABLE {name} ADD {c}")),
        );
        out.after.extend(constraints.after);
        out.ddl.extend(indexes(q, part, false)?);
        out.ddl.extend(triggers(q, part)?);
    }
    Ok(out)
}

/// A partitioned table's partitions and what they have of their own
/// (constraints, indexes, triggers not inherited from their parent).
#[derive(Default)]
struct Partitions {
    ddl: Vec<String>,
    /// Their own foreign keys.
    after: Vec<String>,
}

/// `COMMENT ON TABLE` and `COMMENT ON COLUMN`, for the comments the
/// table and its columns have.
fn comments(q: &mut Query<'_>, oid: u32, qual: &str) -> PgResult<Vec<String>> {
    let rows = q(
        "SELECT a.attname::text, d.description FROM pg_description d \
         LEFT JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid \
         WHERE d.classoid = 'pg_class'::regclass AND d.objoid = $1 ORDER BY d.objsubid",
        &[&oid],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let text = comment_literal(&r.get::<_, String>(1));
            match r.get::<_, Option<String>>(0) {
                Some(column) => format!("COMMENT ON COLUMN {qual}.{} IS {text}", ident(&column)),
                None => format!("COMMENT ON TABLE {qual} IS {text}"),
            }
        })
        .collect())
}

/// A comment as an SQL string literal (`standard_conforming_strings`,
/// the default since PostgreSQL 9.1: only `'` is doubled).
pub(super) fn comment_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// User triggers (not those a foreign key makes, nor the copies a
/// partition gets of its parent's): recreated after the data, and only
/// with `--trust-schema`.
fn triggers(q: &mut Query<'_>, oid: u32) -> PgResult<Vec<String>> {
    let rows = q(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger \
         WHERE tgrelid = $1 AND NOT tgisinternal AND tgparentid = 0 ORDER BY tgname",
        &[&oid],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Indexes that no constraint owns (and, of a partition, its own: not
/// those its parent's indexes made). A partitioned table's are created
/// on the parent *and* its partitions (`ON`, not `ON ONLY`), after them.
fn indexes(q: &mut Query<'_>, oid: u32, partitioned: bool) -> PgResult<Vec<String>> {
    let rows = q(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
         WHERE i.indrelid = $1 AND NOT EXISTS \
         (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid) \
         AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid) \
         ORDER BY 1",
        &[&oid],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let def: String = r.get(0);
            match partitioned {
                true => def.replacen(" ON ONLY ", " ON ", 1),
                false => def,
            }
        })
        .collect())
}
