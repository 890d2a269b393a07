//! Restores across engines: a snapshot of PostgreSQL into SQLite and the
//! other way round (docs/sql.md, "Across engines").
//!
//! Tables the target lacks are created from the recorded *structure* —
//! columns, primary key, foreign keys, unique constraints and plain
//! indexes — with each column's type mapped by [`sqlite_type`] or
//! [`postgres_type`]; the recorded statements of the other engine are only
//! parsed (never run, never translated as text), to find the indexes.
//! Tables the target has are accepted when every column's type
//! [`accepts`] the recorded one (the compatibility table). Values convert
//! on the way in as every restore converts them (see the dialects'
//! `param`); composite keys are written from the key itself so that every
//! key survives the trip.
//!
//! Nothing here talks to a database.

use std::collections::{BTreeMap, HashMap};

use sqlparser::ast::{ColumnOption, Expr, IndexColumn, Statement, TableConstraint};
use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::{ddl, ident, ObjectKind, SchemaObject, Table};

/// A type name as a key: quotes dropped, lower case.
fn type_key(name: &str) -> String {
    name.replace('"', "").trim().to_ascii_lowercase()
}

/// PostgreSQL's user-defined types as the other engine sees them, from
/// the recorded schema objects: a domain is its base type (through
/// domains of domains), an enum, composite or range type is text. Keyed
/// by [`type_key`] of the schema-qualified name and, where no other
/// schema has a type of that name, of the bare name (`format_type`
/// leaves out a schema on the search path).
pub(crate) fn user_types(objects: &[SchemaObject]) -> HashMap<String, String> {
    let mut types = HashMap::new();
    let mut bare: HashMap<String, Vec<String>> = HashMap::new();
    for o in objects.iter().filter(|o| o.engine == "postgres") {
        let base = match o.object {
            ObjectKind::Type => "text".to_string(),
            ObjectKind::Domain => match o.ddl.first().and_then(|d| domain_base(d)) {
                Some(b) => b,
                None => continue,
            },
            _ => continue,
        };
        types.insert(type_key(&format!("{}.{}", o.schema, o.name)), base.clone());
        bare.entry(type_key(&o.name)).or_default().push(base);
    }
    // A column's type is written unqualified when its schema is on the
    // search path: the bare name stands for the type when only one
    // schema has a type of that name.
    for (name, bases) in bare {
        if let [base] = bases.as_slice() {
            types.entry(name).or_insert_with(|| base.clone());
        }
    }
    // Domains over domains (or over enums): follow, a few levels at most.
    for _ in 0..8 {
        let next: HashMap<String, String> = types
            .iter()
            .map(|(k, v)| (k.clone(), resolve(&types, v).unwrap_or_else(|| v.clone())))
            .collect();
        if next == types {
            break;
        }
        types = next;
    }
    types
}

/// The base type of a recorded `CREATE DOMAIN name AS base [DEFAULT …]
/// [CONSTRAINT …]`.
fn domain_base(stmt: &str) -> Option<String> {
    let (_, rest) = stmt.split_once(" AS ")?;
    let end = [
        " DEFAULT ",
        " CONSTRAINT ",
        " COLLATE ",
        " NOT NULL",
        " CHECK ",
    ]
    .iter()
    .filter_map(|w| rest.find(w))
    .min()
    .unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

/// `ty` (perhaps an array of it) when it names a user type; `None` when
/// it does not.
fn resolve(types: &HashMap<String, String>, ty: &str) -> Option<String> {
    let (bare, dims) = match ty.find('[') {
        Some(i) => (&ty[..i], &ty[i..]),
        None => (ty, ""),
    };
    types.get(&type_key(bare)).map(|b| format!("{b}{dims}"))
}

/// `t` with each column of a user-defined type given the type it stands
/// for in [`user_types`], so the type mapping and the compatibility
/// table see `integer`, not the domain `public.year`.
pub(crate) fn with_base_types(t: &Table, types: &HashMap<String, String>) -> Table {
    let mut t = t.clone();
    for c in &mut t.columns {
        if let Some(base) = resolve(types, &c.sql_type) {
            c.sql_type = base;
        }
    }
    t
}

/// SQLite's column affinity, from the declared type by SQLite's rules
/// (section 3.1 of "Datatypes In SQLite").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

pub(crate) fn affinity(decl: &str) -> Affinity {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        Affinity::Integer
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|s| d.contains(s)) {
        Affinity::Text
    } else if d.contains("BLOB") || d.trim().is_empty() {
        Affinity::Blob
    } else if ["REAL", "FLOA", "DOUB"].iter().any(|s| d.contains(s)) {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

/// What a column holds, as far as moving values between engines goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Integer,
    Boolean,
    Real,
    Numeric,
    Text,
    Blob,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Json,
    Uuid,
    /// A SQLite column without a declared type: holds anything.
    Any,
    /// Another PostgreSQL type (interval, inet, enums…): its text form.
    Other,
}

/// The family of a type as the engine named it (`format_type` in
/// PostgreSQL, the declared type in SQLite).
pub(crate) fn family(engine: &str, ty: &str) -> Family {
    let t = ty.trim().to_ascii_lowercase();
    let word = t.split(['(', ' ']).next().unwrap_or("");
    if engine == "postgres" {
        return match word {
            _ if t.ends_with("[]") => Family::Text,
            "smallint" | "integer" | "bigint" => Family::Integer,
            "real" | "double" => Family::Real,
            "numeric" => Family::Numeric,
            "boolean" => Family::Boolean,
            "text" | "character" | "citext" | "name" => Family::Text,
            "bytea" => Family::Blob,
            "date" => Family::Date,
            "time" => Family::Time,
            "timestamp" if t.contains("with time zone") && !t.contains("without") => {
                Family::TimestampTz
            }
            "timestamp" => Family::Timestamp,
            "json" | "jsonb" => Family::Json,
            "uuid" => Family::Uuid,
            _ => Family::Other,
        };
    }
    match word {
        _ if t.contains("bool") => Family::Boolean,
        "timestamptz" => Family::TimestampTz,
        "timestamp" if t.contains("with time zone") && !t.contains("without") => {
            Family::TimestampTz
        }
        "datetime" | "timestamp" => Family::Timestamp,
        "date" => Family::Date,
        "time" => Family::Time,
        "json" | "jsonb" => Family::Json,
        "uuid" => Family::Uuid,
        "" => Family::Any,
        _ => match affinity(&t) {
            Affinity::Integer => Family::Integer,
            Affinity::Text => Family::Text,
            Affinity::Blob => Family::Blob,
            Affinity::Real => Family::Real,
            Affinity::Numeric => Family::Numeric,
        },
    }
}

/// Whether a target column of family `target` takes the values of a
/// recorded column of family `from` (the compatibility table of
/// docs/sql.md).
pub(crate) fn accepts(target: Family, from: Family) -> bool {
    use Family::*;
    target == from
        || matches!(
            (target, from),
            (Any | Text, _)
                | (Integer, Boolean)
                | (Boolean, Integer)
                | (Real, Integer | Numeric)
                | (Numeric, Integer | Real | Text)
                | (
                    Timestamp | TimestampTz,
                    Timestamp | TimestampTz | Date | Text
                )
                | (Date | Time | Json | Uuid | Other, Text)
        )
}

/// The SQLite declared type for a PostgreSQL column. The PostgreSQL name
/// is kept where SQLite's affinity rules read it right (so a trip back
/// gives the same type); `in_key`: the column is (part of) the primary key.
pub(crate) fn sqlite_type(pg: &str, in_key: bool) -> String {
    let t = pg.trim().to_ascii_lowercase();
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit() || c == ',');
    let args = t
        .split_once('(')
        .and_then(|(_, r)| r.strip_suffix(')'))
        .filter(|a| digits(a));
    match family("postgres", &t) {
        Family::Integer if in_key => "INTEGER".into(),
        Family::Integer => t,
        Family::Real | Family::Boolean | Family::Date | Family::Uuid => t,
        Family::Time | Family::Timestamp | Family::TimestampTz
            if !t.contains('(') && !t.starts_with("time with") =>
        {
            t
        }
        Family::Time | Family::Timestamp | Family::TimestampTz => "TEXT".into(),
        // NUMERIC affinity turns '12.50' into the REAL 12.5 (what apps
        // such as Django read back); only up to 15 digits survive that,
        // so wider decimals and key columns keep their exact text.
        Family::Numeric => match args.map(|a| a.split(',').next().unwrap_or("").to_string()) {
            Some(p) if !in_key && p.parse::<u32>().is_ok_and(|p| p <= 15) => {
                format!("numeric({})", args.unwrap_or_default())
            }
            _ => "TEXT".into(),
        },
        Family::Text => match (t.starts_with("character"), args) {
            (true, Some(a)) if t.starts_with("character varying") => {
                format!("varchar({a})")
            }
            (true, Some(a)) => format!("char({a})"),
            _ => "TEXT".into(),
        },
        Family::Blob => "BLOB".into(),
        Family::Json | Family::Other | Family::Any => "TEXT".into(),
    }
}

/// The PostgreSQL type for a SQLite declared type: by name where SQLite
/// apps use one (`DATETIME`, `BOOLEAN`, `DATE`, `UUID`, `JSON`), else by
/// affinity. A column without a declared type, or one of a name
/// PostgreSQL cannot read back, becomes `text`: it may hold any value.
pub(crate) fn postgres_type(decl: &str) -> String {
    let t = decl.trim().to_ascii_lowercase();
    let args = t
        .split_once('(')
        .and_then(|(_, r)| r.strip_suffix(')'))
        .map(|a| a.replace(' ', ""))
        .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_digit() || c == ','));
    match family("sqlite", &t) {
        Family::Integer => "bigint".into(),
        Family::Boolean => "boolean".into(),
        Family::Real => "double precision".into(),
        Family::Numeric if t.starts_with("numeric") || t.starts_with("decimal") => match args {
            Some(a) => format!("numeric({a})"),
            None => "numeric".into(),
        },
        Family::Blob => "bytea".into(),
        Family::Date => "date".into(),
        Family::Time => "time".into(),
        Family::Timestamp => "timestamp".into(),
        Family::TimestampTz => "timestamptz".into(),
        Family::Json if t == "jsonb" => "jsonb".into(),
        Family::Json => "json".into(),
        Family::Uuid => "uuid".into(),
        _ => "text".into(),
    }
}

/// One index to recreate: plain columns only.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Index {
    pub name: String,
    pub unique: bool,
    pub columns: Vec<String>,
}

/// The statements that create a recorded table of the other engine in
/// `target`, and what was left out.
#[derive(Debug, Default)]
pub(crate) struct Created {
    pub ddl: Vec<String>,
    pub after: Vec<String>,
    pub skipped: Vec<String>,
}

fn column_name(c: &IndexColumn) -> Option<String> {
    match &c.column.expr {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        _ => None,
    }
}

/// The unique constraints and indexes of a recorded table, read from its
/// recorded statements (parsed, never run). Indexes on expressions, and
/// partial ones, are left out and named in the second list.
pub(crate) fn indexes(t: &Table) -> (Vec<Index>, Vec<String>) {
    let mut out: Vec<Index> = Vec::new();
    let mut skipped = Vec::new();
    let mut add = |name: Option<String>, unique: bool, cols: &[IndexColumn], partial: bool| {
        let columns: Option<Vec<String>> = cols.iter().map(column_name).collect();
        let Some(columns) = columns.filter(|_| !partial) else {
            skipped.push(name.unwrap_or_else(|| "an unnamed index".into()));
            return;
        };
        if columns == t.primary_key
            || out
                .iter()
                .any(|i| i.columns == columns && i.unique == unique)
        {
            return;
        }
        let name = name.unwrap_or_else(|| format!("{}_{}_key", t.kind, columns.join("_")));
        out.push(Index {
            name,
            unique,
            columns,
        });
    };
    for stmt in &t.ddl {
        let parsed = if t.engine == "postgres" {
            Parser::parse_sql(&PostgreSqlDialect {}, stmt)
        } else {
            Parser::parse_sql(&SQLiteDialect {}, stmt)
        };
        let Ok(statements) = parsed else { continue };
        for s in statements {
            match s {
                Statement::CreateIndex(ci) => add(
                    ci.name
                        .map(|n| n.0.last().map(|p| p.to_string()).unwrap_or_default()),
                    ci.unique,
                    &ci.columns,
                    ci.predicate.is_some(),
                ),
                Statement::CreateTable(ct) => {
                    for c in &ct.columns {
                        for o in &c.options {
                            if let ColumnOption::Unique(_) = o.option {
                                add(None, true, &[IndexColumn::from(c.name.clone())], false);
                            }
                        }
                    }
                    for c in &ct.constraints {
                        if let TableConstraint::Unique(u) = c {
                            add(
                                u.name.as_ref().map(|n| n.value.clone()),
                                true,
                                &u.columns,
                                false,
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }
    (out, skipped)
}

/// Unquote a name `to_string` of an identifier part may have quoted.
fn bare(name: &str) -> String {
    name.trim_matches('"').replace("\"\"", "\"")
}

/// The table's name in `target`: in PostgreSQL, a kind `schema.table`
/// is that table in that schema (as PostgreSQL kinds are named).
fn table_name(target: ddl::Engine, kind: &str) -> (Option<String>, String) {
    match (target, kind.split_once('.')) {
        (ddl::Engine::Sqlite, _) => (None, ident(super::table_for_kind(kind))),
        // A SQLite table named `kindsnap.…`: one name, so that its kind
        // stays the same in PostgreSQL.
        (ddl::Engine::Postgres, _) if kind.starts_with("kindsnap.") => {
            (None, format!("\"public\".{}", ident(kind)))
        }
        (ddl::Engine::Postgres, Some((schema, table))) => (
            Some(ident(schema)),
            format!("{}.{}", ident(schema), ident(table)),
        ),
        (ddl::Engine::Postgres, None) => (None, format!("\"public\".{}", ident(kind))),
    }
}

/// Create `t`, recorded from the other engine, in `target`: columns with
/// mapped types and NOT NULL, the primary key, foreign keys (in SQLite
/// part of the table; in PostgreSQL added after the load), unique
/// constraints and plain indexes. Defaults, checks, triggers and
/// expression indexes are the other engine's code: left out, reported.
pub(crate) fn create(
    target: ddl::Engine,
    t: &Table,
    recorded: &BTreeMap<String, Table>,
) -> Created {
    let mut out = Created::default();
    let (schema, name) = table_name(target, &t.kind);
    if let Some(s) = schema {
        out.ddl.push(format!("CREATE SCHEMA IF NOT EXISTS {s}"));
    }
    let mut lines: Vec<String> = Vec::new();
    // The key column of a table keyed by SQLite's rowid (alias or not)
    // takes automatic ids in PostgreSQL too.
    let identity = target == ddl::Engine::Postgres && t.ids_only();
    if t.rowid && target == ddl::Engine::Postgres {
        lines.push("\"rowid\" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL".into());
    }
    for c in &t.columns {
        let in_key = t.primary_key.contains(&c.name);
        let ty = match target {
            ddl::Engine::Sqlite => sqlite_type(&c.sql_type, in_key && t.primary_key.len() == 1),
            ddl::Engine::Postgres => postgres_type(&c.sql_type),
        };
        let mut line = format!("{} {ty}", ident(&c.name));
        if identity && in_key {
            line = format!("{} bigint GENERATED BY DEFAULT AS IDENTITY", ident(&c.name));
        } else if let Some(d) = c.default.as_deref().and_then(literal) {
            line.push_str(&format!(" DEFAULT {d}"));
        }
        if c.not_null || (in_key && target == ddl::Engine::Postgres) {
            line.push_str(" NOT NULL");
        }
        lines.push(line);
    }
    let pk: Vec<String> = if t.rowid && target == ddl::Engine::Postgres {
        vec![ident("rowid")]
    } else {
        t.primary_key.iter().map(|c| ident(c)).collect()
    };
    if !pk.is_empty() {
        lines.push(format!("PRIMARY KEY ({})", pk.join(", ")));
    }
    for fk in &t.foreign_keys {
        let Some(to) = referenced_columns(fk, recorded) else {
            out.skipped.push(format!(
                "the foreign key ({}) of table `{}` (it points at columns of `{}` that are not its key)",
                fk.columns.join(", "),
                t.kind,
                fk.kind
            ));
            continue;
        };
        let cols: Vec<String> = fk.columns.iter().map(|c| ident(c)).collect();
        let clause = format!(
            "FOREIGN KEY ({}) REFERENCES {} ({})",
            cols.join(", "),
            table_name(target, &fk.kind).1,
            to.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        );
        match target {
            ddl::Engine::Sqlite => lines.push(format!("{clause} DEFERRABLE INITIALLY DEFERRED")),
            ddl::Engine::Postgres => out.after.push(format!(
                "ALTER TABLE {name} ADD CONSTRAINT {} {clause}",
                ident(&format!("{}_{}_fkey", t.kind, fk.columns.join("_")))
            )),
        }
    }
    out.ddl.push(format!(
        "CREATE TABLE {name} (\n  {}\n)",
        lines.join(",\n  ")
    ));
    let (indexes, skipped) = indexes(t);
    for i in indexes {
        let cols: Vec<String> = i.columns.iter().map(|c| ident(c)).collect();
        out.ddl.push(format!(
            "CREATE {}INDEX {} ON {name} ({})",
            if i.unique { "UNIQUE " } else { "" },
            ident(&bare(&i.name)),
            cols.join(", ")
        ));
    }
    out.skipped.extend(skipped.into_iter().map(|i| {
        format!(
            "index {i} of table `{}` (an expression or partial index of {}; create it by hand)",
            t.kind, t.engine
        )
    }));
    // A key's automatic ids are recreated as the target's own (above).
    let automatic = |c: &&super::Column| {
        t.ids_only()
            && t.primary_key.contains(&c.name)
            && c.default
                .as_deref()
                .is_some_and(|d| d.starts_with("nextval("))
    };
    let code = t
        .columns
        .iter()
        .filter(|c| {
            let plain = c.default.as_deref().and_then(literal).is_some();
            c.default.is_some() && !automatic(c) && !plain
        })
        .count();
    if code > 0 {
        out.skipped.push(format!(
            "the column defaults of table `{}` ({code}; {} expressions, not translated)",
            t.kind, t.engine
        ));
    }
    out
}

/// A recorded default that is a plain literal both engines read alike —
/// a number, a quoted string, TRUE or FALSE, without PostgreSQL's
/// `::type` cast — as it is written; `None` for anything else (an
/// expression is the other engine's code).
fn literal(default: &str) -> Option<String> {
    let d = default.trim();
    let d = match d.find("::") {
        Some(i) if d.starts_with('\'') || !d[..i].contains('\'') => &d[..i],
        _ => d,
    };
    let d = d.trim().trim_start_matches('(').trim_end_matches(')');
    let number = !d.is_empty()
        && d.parse::<f64>().is_ok()
        && d.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    let quoted = d.len() >= 2
        && d.starts_with('\'')
        && d.ends_with('\'')
        && !d[1..d.len() - 1].replace("''", "").contains('\'');
    let boolean = d.eq_ignore_ascii_case("true") || d.eq_ignore_ascii_case("false");
    (number || quoted || boolean).then(|| d.to_string())
}

/// The columns a foreign key points at: as recorded, or the referenced
/// table's primary key; `None` when they are not that key or a unique
/// index of it (PostgreSQL would refuse the constraint).
fn referenced_columns(
    fk: &super::ForeignKey,
    recorded: &BTreeMap<String, Table>,
) -> Option<Vec<String>> {
    let Some(to) = recorded.get(&fk.kind) else {
        return (!fk.ref_columns.is_empty()).then(|| fk.ref_columns.clone());
    };
    let key = if to.rowid && to.primary_key.is_empty() {
        vec!["rowid".to_string()]
    } else {
        to.primary_key.clone()
    };
    if fk.ref_columns.is_empty() || fk.ref_columns == key {
        return Some(key);
    }
    let unique = indexes(to)
        .0
        .into_iter()
        .any(|i| i.unique && i.columns == fk.ref_columns);
    unique.then(|| fk.ref_columns.clone())
}

/// One line naming every column of an existing target table that cannot
/// take the recorded values (by [`accepts`]), a missing column, or a
/// different key; `None` when the table takes the snapshot.
pub(crate) fn compare(recorded: &Table, target: &Table) -> Option<String> {
    let mut problems = Vec::new();
    for c in &recorded.columns {
        match target.column(&c.name) {
            None => problems.push(format!("column `{}` is missing", c.name)),
            Some(tc) => {
                let (to, from) = (
                    family(&target.engine, &tc.sql_type),
                    family(&recorded.engine, &c.sql_type),
                );
                if !accepts(to, from) {
                    problems.push(format!(
                        "column `{}` is {} on the target, which cannot take {} {} (docs/sql.md, \"Across engines\")",
                        c.name, tc.sql_type, recorded.engine, c.sql_type
                    ));
                }
            }
        }
    }
    for tc in &target.columns {
        let keyed = target.primary_key.contains(&tc.name);
        if recorded.column(&tc.name).is_none() && tc.not_null && tc.default.is_none() && !keyed {
            problems.push(format!(
                "column `{}` is NOT NULL without a default and not in the snapshot",
                tc.name
            ));
        }
    }
    let same_key = recorded.primary_key == target.primary_key
        || (recorded.rowid && target.primary_key == ["rowid"])
        || (target.rowid && recorded.primary_key.is_empty());
    if !same_key {
        problems.push(format!(
            "the primary key is ({}) on the target, ({}) in the snapshot",
            target.primary_key.join(", "),
            recorded.primary_key.join(", ")
        ));
    }
    super::mismatch(&recorded.kind, &problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::sql::{Column, ForeignKey};

    #[test]
    fn affinities_follow_sqlite_rules() {
        assert_eq!(affinity("BIGINT"), Affinity::Integer);
        assert_eq!(affinity("varchar(40)"), Affinity::Text);
        assert_eq!(affinity(""), Affinity::Blob);
        assert_eq!(affinity("double precision"), Affinity::Real);
        assert_eq!(affinity("decimal(10, 2)"), Affinity::Numeric);
        assert_eq!(affinity("timestamp with time zone"), Affinity::Numeric);
    }

    #[test]
    fn types_map_both_ways() {
        for (pg, key, lite) in [
            ("integer", true, "INTEGER"),
            ("bigint", false, "bigint"),
            ("numeric(10,2)", false, "numeric(10,2)"),
            ("numeric(30,2)", false, "TEXT"),
            ("numeric", false, "TEXT"),
            ("numeric(10,2)", true, "TEXT"),
            ("character varying(150)", false, "varchar(150)"),
            (
                "timestamp with time zone",
                false,
                "timestamp with time zone",
            ),
            ("timestamp(3) with time zone", false, "TEXT"),
            ("boolean", false, "boolean"),
            ("bytea", false, "BLOB"),
            ("jsonb", false, "TEXT"),
            ("integer[]", false, "TEXT"),
            ("uuid", false, "uuid"),
            ("interval", false, "TEXT"),
        ] {
            assert_eq!(sqlite_type(pg, key), lite, "{pg}");
        }
        for (lite, pg) in [
            ("INTEGER", "bigint"),
            ("bool", "boolean"),
            ("REAL", "double precision"),
            ("decimal(10, 2)", "numeric(10,2)"),
            ("datetime", "timestamp"),
            ("timestamp with time zone", "timestamptz"),
            ("varchar(40)", "text"),
            ("BLOB", "bytea"),
            ("", "text"),
            ("STRING", "text"),
            ("date", "date"),
            ("uuid", "uuid"),
        ] {
            assert_eq!(postgres_type(lite), pg, "{lite}");
        }
    }

    #[test]
    fn only_literal_defaults_cross() {
        for (d, want) in [
            ("1", Some("1")),
            ("'ok'::text", Some("'ok'")),
            ("'it''s'::character varying", Some("'it''s'")),
            ("(-2.5)", Some("-2.5")),
            ("true", Some("true")),
            ("now()", None),
            ("nextval('s'::regclass)", None),
            ("'a' || 'b'", None),
            ("CURRENT_TIMESTAMP", None),
        ] {
            assert_eq!(literal(d).as_deref(), want, "{d}");
        }
    }

    #[test]
    fn compatibility_takes_what_apps_create() {
        let ok = |pg: &str, lite: &str| {
            accepts(family("sqlite", lite), family("postgres", pg))
                && accepts(family("postgres", pg), family("sqlite", lite))
        };
        assert!(ok("timestamp with time zone", "datetime"));
        assert!(ok("timestamp with time zone", "TEXT"));
        assert!(ok("bytea", "BLOB"));
        assert!(ok("boolean", "bool"));
        assert!(ok("numeric(10,2)", "decimal"));
        assert!(ok("uuid", "char(32)"));
        assert!(ok("jsonb", "text"));
        assert!(!accepts(
            family("sqlite", "BLOB"),
            family("postgres", "integer")
        ));
        assert!(!accepts(
            family("postgres", "bytea"),
            family("sqlite", "INTEGER")
        ));
    }

    fn table(engine: &str, ddl: &[&str]) -> Table {
        let col = |n: &str, t: &str| Column {
            name: n.into(),
            sql_type: t.into(),
            not_null: false,
            default: None,
        };
        Table {
            kind: "book".into(),
            engine: engine.into(),
            columns: vec![
                col("id", "integer"),
                col("title", "text"),
                col("a", "bigint"),
            ],
            primary_key: vec!["id".into()],
            rowid: false,
            foreign_keys: vec![ForeignKey {
                columns: vec!["a".into()],
                kind: "author".into(),
                ref_columns: vec!["id".into()],
            }],
            ddl: ddl.iter().map(|s| s.to_string()).collect(),
            after: vec![],
            pragmas: vec![],
        }
    }

    #[test]
    fn indexes_come_from_parsed_statements() {
        let t = table(
            "postgres",
            &[
                "CREATE TABLE public.book (id integer NOT NULL, title text, a bigint, CONSTRAINT book_title_key UNIQUE (title))",
                "CREATE INDEX book_a_idx ON public.book USING btree (a)",
                "CREATE INDEX book_lower ON public.book USING btree (lower(title))",
            ],
        );
        let (found, skipped) = indexes(&t);
        assert_eq!(
            found,
            [
                Index {
                    name: "book_title_key".into(),
                    unique: true,
                    columns: vec!["title".into()]
                },
                Index {
                    name: "book_a_idx".into(),
                    unique: false,
                    columns: vec!["a".into()]
                }
            ]
        );
        assert_eq!(skipped, ["book_lower"]);
        let c = create(ddl::Engine::Sqlite, &t, &BTreeMap::new());
        assert!(c.ddl[0].contains("\"id\" INTEGER"), "{:?}", c.ddl);
        assert!(c.ddl[0].contains(
            "FOREIGN KEY (\"a\") REFERENCES \"author\" (\"id\") DEFERRABLE INITIALLY DEFERRED"
        ));
        assert_eq!(
            c.ddl[1],
            "CREATE UNIQUE INDEX \"book_title_key\" ON \"book\" (\"title\")"
        );
    }
}
