//! Recorded DDL, vetted before a restore runs it.
//!
//! A snapshot records the statements that recreate each table (the
//! `kindsnap.schema` kind). Whoever can write a repository — or hand
//! kindsnap a JSON Lines file — chooses that text, so a restore never runs
//! it as it stands: each entry is parsed ([`sqlparser`]) and accepted only
//! when it is one statement that recreates the recorded table itself or one
//! of its parts (the table, its indexes, its sequences and schema, its
//! foreign keys). Triggers are code by nature: they are recreated only when
//! the user trusts the repository (`--trust-schema`); without it they are
//! skipped and reported. Expressions (defaults, checks, index expressions)
//! may call only a list of built-in functions that read nothing outside
//! the row; any other call needs `--trust-schema` too.
//!
//! Nothing here talks to a database; the SQLite target adds an authorizer
//! on top (no ATTACH, no writes outside the target) as defence in depth.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, AlterTableOperation, CommentObject, Expr, InTarget, ObjectName, SchemaName,
    Statement,
};
use sqlparser::dialect::{Dialect as ParserDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{ObjectKind, SchemaObject, Table};
use crate::error::Error;

/// The engine a statement was recorded from (and will run on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    fn parser_dialect(self) -> Box<dyn ParserDialect> {
        match self {
            Engine::Sqlite => Box::new(SQLiteDialect {}),
            Engine::Postgres => Box::new(PostgreSqlDialect {}),
        }
    }

    /// Names compare as the engine compares them: SQLite ignores ASCII
    /// case everywhere; PostgreSQL folds unquoted names to lower case.
    fn ident_value(self, ident: &sqlparser::ast::Ident) -> String {
        match (self, ident.quote_style) {
            (Engine::Sqlite, _) | (Engine::Postgres, None) => ident.value.to_ascii_lowercase(),
            (Engine::Postgres, Some(_)) => ident.value.clone(),
        }
    }
}

/// What a restore may do with one recorded statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It recreates the table or one of its parts: run it.
    Run,
    /// It is code (a trigger, a call to a function outside the built-in
    /// list): run it only when the repository is trusted. `skippable`: the
    /// restored table is still the table without it (a trigger, an index),
    /// so an untrusted restore leaves it out rather than stopping.
    Code { what: String, skippable: bool },
}

/// How a restore treats the schema a snapshot recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaPolicy {
    /// The snapshot's name, for messages.
    pub snapshot: String,
    /// `--trust-schema`: recreate triggers and run calls to any function,
    /// and statements kindsnap cannot parse, as recorded.
    pub trust: bool,
}

/// The statements of one recorded table that a restore runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Vetted {
    /// Run before the rows are loaded, in order.
    pub ddl: Vec<String>,
    /// Run after every table is loaded (foreign keys).
    pub after: Vec<String>,
    /// Recorded objects not recreated, each with the reason (for the
    /// report).
    pub skipped: Vec<String>,
}

/// Vet every statement recorded for `table` before any of them runs.
/// A statement that is not for the table refuses the whole restore; code
/// (triggers, unknown functions) is skipped and reported unless trusted,
/// except in the table's own definition, which cannot be skipped.
pub(crate) fn vet_table(
    engine: Engine,
    table: &Table,
    policy: &SchemaPolicy,
) -> Result<Vetted, Error> {
    let refuse = |why: String| Error::UnsafeSchema {
        snapshot: policy.snapshot.clone(),
        object: format!("table `{}`", table.kind),
        why,
    };
    let mut out = Vetted::default();
    let mut partitions = BTreeSet::new();
    let statements = table
        .ddl
        .iter()
        .map(|s| (s, false))
        .chain(table.after.iter().map(|s| (s, true)));
    for (stmt, after) in statements {
        let verdict = match vet_in(engine, table, stmt, &mut partitions) {
            Ok(v) => v,
            Err(Refusal::Unreadable(_)) if policy.trust => Verdict::Run,
            // An index or trigger the parser cannot read is left out (the
            // table is still the table); anything else is refused.
            Err(Refusal::Unreadable(_)) if !after && index_or_trigger(stmt) => Verdict::Code {
                what: format!("{} (which kindsnap cannot parse)", excerpt(stmt)),
                skippable: true,
            },
            Err(Refusal::Unreadable(why)) => {
                return Err(refuse(format!(
                    "{why}; pass --trust-schema to run it as recorded if you trust whoever wrote this repository"
                )))
            }
            Err(Refusal::Refused(why)) => return Err(refuse(why)),
        };
        match verdict {
            Verdict::Code { .. } if policy.trust => {}
            Verdict::Code {
                what,
                skippable: false,
            } => {
                return Err(refuse(format!(
                    "its definition contains {what}, which is code; pass --trust-schema if you trust whoever wrote this repository"
                )))
            }
            Verdict::Code { what, .. } => {
                out.skipped.push(format!(
                    "{what} of table `{}` was not recreated: it is code from the snapshot (--trust-schema recreates it)",
                    table.kind
                ));
                continue;
            }
            Verdict::Run => {}
        }
        // Triggers come after the data, so that loading fires none.
        if after || is_trigger(stmt) {
            out.after.push(stmt.clone());
        } else {
            out.ddl.push(stmt.clone());
        }
    }
    Ok(out)
}

/// Whether a statement starts `CREATE [TEMP] TRIGGER` (or PostgreSQL's
/// `CREATE [OR REPLACE] [CONSTRAINT] TRIGGER`), from its first words.
pub(crate) fn is_trigger(stmt: &str) -> bool {
    let mut words = stmt.split_whitespace().map(|w| w.to_ascii_uppercase());
    words.next().as_deref() == Some("CREATE")
        && words
            .find(|w| {
                !matches!(
                    w.as_str(),
                    "TEMP" | "TEMPORARY" | "OR" | "REPLACE" | "CONSTRAINT"
                )
            })
            .as_deref()
            == Some("TRIGGER")
}

/// Whether a statement starts `CREATE [UNIQUE] INDEX`, `CREATE [TEMP]
/// TRIGGER` or `COMMENT ON` (read from its first words only).
fn index_or_trigger(stmt: &str) -> bool {
    let words: Vec<String> = stmt
        .split_whitespace()
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        words.as_slice(),
        ["CREATE", "INDEX" | "TRIGGER", ..]
            | ["COMMENT", "ON", ..]
            | [
                "CREATE",
                "UNIQUE" | "TEMP" | "TEMPORARY",
                "INDEX" | "TRIGGER"
            ]
    )
}

/// Why a statement is not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The parser cannot read it: it may be harmless, but nothing can tell.
    Unreadable(String),
    /// It does something other than recreate the table.
    Refused(String),
}

/// Whether a restore into `engine` may run `stmt`, recorded for `table`.
#[cfg(test)]
pub(crate) fn vet(engine: Engine, table: &Table, stmt: &str) -> Result<Verdict, Refusal> {
    vet_in(engine, table, stmt, &mut BTreeSet::new())
}

/// [`vet`] among the statements of one table: `partitions` holds the
/// partitions (name parts) its earlier statements created, which later
/// ones may partition further.
fn vet_in(
    engine: Engine,
    table: &Table,
    stmt: &str,
    partitions: &mut BTreeSet<Vec<String>>,
) -> Result<Verdict, Refusal> {
    if engine == Engine::Postgres {
        if let Some(v) = vet_alter_sequence(table, stmt).map_err(Refusal::Refused)? {
            return Ok(v);
        }
    }
    let dialect = engine.parser_dialect();
    let parsed = Parser::parse_sql(dialect.as_ref(), stmt).map_err(|e| {
        Refusal::Unreadable(format!(
            "a statement kindsnap cannot parse ({e}): {}",
            excerpt(stmt)
        ))
    })?;
    let [statement] = parsed.as_slice() else {
        return Err(Refusal::Refused(format!(
            "{} statements in one entry (one is allowed): {}",
            parsed.len(),
            excerpt(stmt)
        )));
    };
    let vetter = Vetter {
        engine,
        table,
        partitions,
    };
    let part = vetter.statement(statement).map_err(Refusal::Refused)?;
    let code = vetter.expressions(statement).map_err(Refusal::Refused)?;
    if let Part::Partition(name) = &part {
        partitions.insert(name.clone());
    }
    if let Part::Trigger(name) = part {
        return Ok(Verdict::Code {
            what: format!("trigger `{name}`"),
            skippable: true,
        });
    }
    Ok(match code {
        None => Verdict::Run,
        Some(what) => Verdict::Code {
            what,
            skippable: part == Part::Index,
        },
    })
}

/// Shortened text of a statement, for messages.
fn excerpt(stmt: &str) -> String {
    let flat: String = stmt
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if flat.chars().count() > 80 {
        format!("`{}…`", flat.chars().take(80).collect::<String>())
    } else {
        format!("`{flat}`")
    }
}

/// What a statement recreates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// The table, its schema, sequences or constraints.
    Table,
    Index,
    Trigger(String),
    /// A partition (PostgreSQL) of the table or of one of its partitions:
    /// its name parts.
    Partition(Vec<String>),
}

struct Vetter<'a> {
    engine: Engine,
    table: &'a Table,
    /// Partitions created by the table's earlier statements.
    partitions: &'a BTreeSet<Vec<String>>,
}

impl Vetter<'_> {
    fn statement(&self, s: &Statement) -> Result<Part, String> {
        let t = &self.table.kind;
        match s {
            Statement::CreateTable(ct) if ct.partition_of.is_some() => self.partition(ct),
            Statement::CreateTable(ct) => {
                self.expect_table(&ct.name, "CREATE TABLE")?;
                if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
                    return Err(format!(
                        "CREATE TABLE `{t}` copies from another table or query; only column definitions are allowed"
                    ));
                }
                if ct.temporary {
                    return Err(format!(
                        "CREATE TEMPORARY TABLE `{t}` would not survive the restore"
                    ));
                }
                Ok(Part::Table)
            }
            Statement::CreateIndex(ci) => {
                self.expect_table_or_partition(&ci.table_name, "CREATE INDEX")?;
                Ok(Part::Index)
            }
            Statement::Comment {
                object_type,
                object_name,
                ..
            } if self.engine == Engine::Postgres => self.comment(object_type, object_name),
            Statement::CreateTrigger(tr) => {
                self.expect_table_or_partition(&tr.table_name, "CREATE TRIGGER")?;
                Ok(Part::Trigger(tr.name.to_string()))
            }
            Statement::AlterTable(at) if self.engine == Engine::Postgres => {
                self.expect_table_or_partition(&at.name, "ALTER TABLE")?;
                for op in &at.operations {
                    if !matches!(op, AlterTableOperation::AddConstraint { .. }) {
                        return Err(format!(
                            "ALTER TABLE `{t}` does more than add a constraint: {op}"
                        ));
                    }
                }
                Ok(Part::Table)
            }
            Statement::CreateSchema {
                schema_name: SchemaName::Simple(name),
                ..
            } if self.engine == Engine::Postgres => {
                let schema = self.names(name);
                if schema.len() == 1 && Some(schema[0].as_str()) == self.schema().as_deref() {
                    Ok(Part::Table)
                } else {
                    Err(format!(
                        "CREATE SCHEMA {name} is not the schema of table `{t}`"
                    ))
                }
            }
            Statement::CreateSequence { name, .. } if self.engine == Engine::Postgres => {
                if self.sequences().contains(&self.names(name)) {
                    Ok(Part::Table)
                } else {
                    Err(format!(
                        "CREATE SEQUENCE {name} is not a sequence that a column of table `{t}` takes its default from"
                    ))
                }
            }
            other => Err(format!(
                "`{}` does not recreate table `{t}`",
                excerpt(&other.to_string()).trim_matches('`')
            )),
        }
    }

    /// `COMMENT ON TABLE t` or `COMMENT ON COLUMN t.c` (PostgreSQL), for
    /// the recorded table and its columns.
    fn comment(&self, what: &CommentObject, name: &ObjectName) -> Result<Part, String> {
        let ok = match what {
            CommentObject::Table => self.is_table(name),
            CommentObject::Column => {
                let mut parts = name.0.clone();
                let column = parts
                    .pop()
                    .and_then(|p| p.as_ident().map(|i| self.engine.ident_value(i)));
                column.is_some_and(|c| self.table.column(&c).is_some())
                    && self.is_table(&ObjectName(parts))
            }
            _ => false,
        };
        match ok {
            true => Ok(Part::Table),
            false => Err(format!(
                "COMMENT ON {what} {name} is not about table `{}` or its columns",
                self.table.kind
            )),
        }
    }

    /// `CREATE TABLE p PARTITION OF parent FOR VALUES …` (PostgreSQL): a
    /// new table in an application schema, partitioning the
    /// recorded table or a partition created before it, nothing else.
    fn partition(&self, ct: &sqlparser::ast::CreateTable) -> Result<Part, String> {
        let t = &self.table.kind;
        let refused = |why: &str| format!("CREATE TABLE {} {why}", ct.name);
        let Some(parent) = &ct.partition_of else {
            return Err(refused("is not a partition"));
        };
        if self.engine != Engine::Postgres {
            return Err(refused("is a PostgreSQL partition in a SQLite schema"));
        }
        let parent_parts = self.qualified(parent);
        if !self.is_table(parent) && !self.partitions.contains(&parent_parts) {
            return Err(refused(&format!(
                "partitions {parent}, which is neither table `{t}` nor one of its partitions"
            )));
        }
        let name = self.qualified(&ct.name);
        let system = name[0] == "information_schema" || name[0].starts_with("pg_");
        if name.len() != 2 || system || self.is_table(&ct.name) {
            return Err(refused(&format!(
                "is not a new partition of table `{t}` in an application schema"
            )));
        }
        if ct.temporary
            || ct.query.is_some()
            || ct.like.is_some()
            || ct.clone.is_some()
            || ct.inherits.is_some()
            || ct.for_values.is_none()
        {
            return Err(refused(
                "is more than a partition (only FOR VALUES and PARTITION BY are allowed)",
            ));
        }
        Ok(Part::Partition(name))
    }

    /// A PostgreSQL name as (schema, name): unqualified is `public`.
    fn qualified(&self, name: &ObjectName) -> Vec<String> {
        let mut parts = self.names(name);
        if parts.len() == 1 {
            parts.insert(0, "public".into());
        }
        parts
    }

    /// Every function an expression of the statement calls must be on the
    /// built-in list (`Some` names the first that is not); no subqueries.
    fn expressions(&self, s: &Statement) -> Result<Option<String>, String> {
        let mut code = None;
        // `PARTITION BY RANGE (a)` reads as a call to `RANGE`: the method,
        // not a function; its arguments are checked as any expression.
        let method = match s {
            Statement::CreateTable(ct) => ct.partition_by.as_deref().filter(|e| {
                matches!(e, Expr::Function(f) if matches!(
                    self.names(&f.name).as_slice(),
                    [m] if m == "range" || m == "list" || m == "hash"
                ))
            }),
            _ => None,
        };
        let flow = visit_expressions(s, |e: &Expr| {
            match e {
                Expr::Function(_) if method.is_some_and(|m| std::ptr::eq(m, e)) => {}
                Expr::Function(f) => {
                    let parts = self.names(&f.name);
                    let (schema, name) = match parts.as_slice() {
                        [name] => (None, name.as_str()),
                        [schema, name] => (Some(schema.as_str()), name.as_str()),
                        _ => (Some("?"), ""),
                    };
                    let builtin = matches!(schema, None | Some("pg_catalog" | "main"))
                        && BUILTIN_FUNCTIONS.contains(&name);
                    if !builtin && code.is_none() {
                        code = Some(format!("a call to function `{}`", f.name));
                    }
                }
                Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::In {
                    target: InTarget::Subquery(_),
                    ..
                } => {
                    return ControlFlow::Break(format!(
                        "a subquery in the definition of table `{}`",
                        self.table.kind
                    ));
                }
                _ => {}
            }
            ControlFlow::Continue(())
        });
        match flow {
            ControlFlow::Break(why) => Err(why),
            ControlFlow::Continue(()) => Ok(code),
        }
    }

    fn names(&self, name: &ObjectName) -> Vec<String> {
        name.0
            .iter()
            .map(|p| match p.as_ident() {
                Some(i) => self.engine.ident_value(i),
                None => p.to_string(),
            })
            .collect()
    }

    /// The recorded table's schema (PostgreSQL): `public` unless the kind
    /// names one.
    fn schema(&self) -> Option<String> {
        match self.engine {
            Engine::Sqlite => None,
            Engine::Postgres => Some(
                self.table
                    .kind
                    .split_once('.')
                    .map(|(s, _)| s.to_string())
                    .unwrap_or_else(|| "public".into()),
            ),
        }
    }

    /// Whether `name` is the recorded table.
    fn is_table(&self, name: &ObjectName) -> bool {
        let parts = self.names(name);
        let kind = &self.table.kind;
        let sqlite_name = super::table_for_kind(kind);
        match (self.engine, parts.as_slice()) {
            (Engine::Sqlite, [t]) => t.eq_ignore_ascii_case(sqlite_name),
            (Engine::Sqlite, [schema, t]) => {
                schema == "main" && t.eq_ignore_ascii_case(sqlite_name)
            }
            (Engine::Postgres, [t]) => t == kind,
            (Engine::Postgres, [schema, t]) => {
                let as_kind = if schema == "public" {
                    t.clone()
                } else {
                    format!("{schema}.{t}")
                };
                &as_kind == kind
            }
            _ => false,
        }
    }

    /// The recorded table or (PostgreSQL) one of the partitions its
    /// earlier statements created: their own indexes, constraints and
    /// triggers.
    fn expect_table_or_partition(&self, name: &ObjectName, what: &str) -> Result<(), String> {
        let partition =
            self.engine == Engine::Postgres && self.partitions.contains(&self.qualified(name));
        match partition {
            true => Ok(()),
            false => self.expect_table(name, what),
        }
    }

    fn expect_table(&self, name: &ObjectName, what: &str) -> Result<(), String> {
        if self.is_table(name) {
            Ok(())
        } else {
            Err(format!(
                "{what} {name} is not for table `{}`",
                self.table.kind
            ))
        }
    }

    /// The sequences the table's column defaults take values from
    /// (`nextval('schema.seq'::regclass)`), as name parts.
    fn sequences(&self) -> BTreeSet<Vec<String>> {
        let mut out = BTreeSet::new();
        for c in &self.table.columns {
            let Some(d) = &c.default else { continue };
            let Some(inner) = d
                .strip_prefix("nextval('")
                .and_then(|s| s.split_once("'::regclass)"))
                .map(|(s, _)| s.replace("''", "'"))
            else {
                continue;
            };
            if let Ok(name) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&inner)
                .and_then(|mut p| p.parse_object_name(false))
            {
                let mut parts = self.names(&name);
                if parts.len() == 1 {
                    parts.insert(0, self.schema().unwrap_or_default());
                }
                out.insert(parts.clone());
                // Unqualified in the statement when on the search path.
                if parts[0] == "public" {
                    out.insert(vec![parts[1].clone()]);
                }
            }
        }
        out
    }
}

/// `ALTER SEQUENCE seq OWNED BY table.column` (which the parser does not
/// know): allowed for the table's own sequences and columns. `None` when
/// the statement is something else.
fn vet_alter_sequence(table: &Table, stmt: &str) -> Result<Option<Verdict>, String> {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, stmt).tokenize() else {
        return Ok(None);
    };
    let tokens: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let word = |t: &Token, k: &str| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(k));
    if !(tokens.len() >= 2 && word(tokens[0], "ALTER") && word(tokens[1], "SEQUENCE")) {
        return Ok(None);
    }
    let refused = || {
        format!(
            "{} is not the OWNED BY of a sequence of table `{}`",
            excerpt(stmt),
            table.kind
        )
    };
    // ALTER SEQUENCE name OWNED BY owner [;]
    let rest = &tokens[2..];
    let owned = rest
        .windows(2)
        .position(|w| word(w[0], "OWNED") && word(w[1], "BY"))
        .ok_or_else(refused)?;
    let mut end = rest.len();
    if matches!(rest.last(), Some(Token::SemiColon)) {
        end -= 1;
    }
    let text = |ts: &[&Token]| ts.iter().map(|t| t.to_string()).collect::<String>();
    let seq_text = text(&rest[..owned]);
    let owner_text = text(&rest[owned + 2..end]);
    let parse = |s: &str| {
        Parser::new(&dialect)
            .try_with_sql(s)
            .and_then(|mut p| {
                let name = p.parse_object_name(false)?;
                p.expect_token(&Token::EOF)?;
                Ok(name)
            })
            .map_err(|_| refused())
    };
    let seq = parse(&seq_text)?;
    let owner = parse(&owner_text)?;
    let no_partitions = BTreeSet::new();
    let vetter = Vetter {
        engine: Engine::Postgres,
        table,
        partitions: &no_partitions,
    };
    if !vetter.sequences().contains(&vetter.names(&seq)) {
        return Err(refused());
    }
    let mut owner_parts = owner.0.clone();
    let Some(column) = owner_parts.pop() else {
        return Err(refused());
    };
    let column = column
        .as_ident()
        .map(|i| Engine::Postgres.ident_value(i))
        .unwrap_or_default();
    if !vetter.is_table(&ObjectName(owner_parts)) || table.column(&column).is_none() {
        return Err(refused());
    }
    Ok(Some(Verdict::Run))
}

/// What a restore does with one recorded schema object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ObjectPlan {
    /// Run these statements (when the object is missing on the target).
    Create(Vec<String>),
    /// Leave it out; the reason, for the report.
    Skip(String),
}

/// Range types may name these built-in difference functions; any other
/// function in a range type's definition is code.
const RANGE_DIFFS: &[&str] = &[
    "float8mi",
    "int4range_subdiff",
    "int8range_subdiff",
    "numrange_subdiff",
    "daterange_subdiff",
    "tsrange_subdiff",
    "tstzrange_subdiff",
];

/// Vet every statement recorded for a schema object: each must create
/// exactly the object the record names (a type, a domain whose checks call
/// only built-ins, a sequence no column owns). Functions, views,
/// materialized views and extensions are code: created only with
/// `--trust-schema`, otherwise skipped and reported.
pub(crate) fn vet_object(
    engine: Engine,
    o: &SchemaObject,
    policy: &SchemaPolicy,
) -> Result<ObjectPlan, Error> {
    let what = format!("{} `{}`", o.object.word(), o.id());
    let refuse = |why: String| Error::UnsafeSchema {
        snapshot: policy.snapshot.clone(),
        object: what.clone(),
        why,
    };
    if engine != Engine::Postgres {
        return Err(refuse(
            "schema objects are recorded from PostgreSQL only".into(),
        ));
    }
    if o.ddl.is_empty() {
        return Err(refuse("it has no statement".into()));
    }
    let mut code = None;
    for (i, stmt) in o.ddl.iter().enumerate() {
        let verdict = match vet_object_statement(o, i, stmt) {
            Ok(v) => v,
            Err(Refusal::Unreadable(_)) if policy.trust => Verdict::Run,
            Err(Refusal::Unreadable(_)) if is_code(o.object) => Verdict::Code {
                what: format!("{what} (which kindsnap cannot parse)"),
                skippable: true,
            },
            Err(Refusal::Unreadable(why)) => {
                return Err(refuse(format!(
                    "{why}; pass --trust-schema to run it as recorded if you trust whoever wrote this repository"
                )))
            }
            Err(Refusal::Refused(why)) => return Err(refuse(why)),
        };
        if let Verdict::Code { what, skippable } = verdict {
            if !skippable && !policy.trust {
                return Err(refuse(format!(
                    "its definition contains {what}, which is code; pass --trust-schema if you trust whoever wrote this repository"
                )));
            }
            code.get_or_insert(what);
        }
    }
    Ok(match code {
        Some(_) if !policy.trust => ObjectPlan::Skip(format!(
            "{what} was not recreated: it is code from the snapshot (--trust-schema recreates it)"
        )),
        _ => ObjectPlan::Create(o.ddl.clone()),
    })
}

/// Functions, views, materialized views and extensions: code by nature.
fn is_code(k: ObjectKind) -> bool {
    matches!(
        k,
        ObjectKind::Function
            | ObjectKind::View
            | ObjectKind::MaterializedView
            | ObjectKind::Extension
    )
}

/// Statement `i` of object `o`: the first creates the object; a domain
/// may add `ALTER DOMAIN … SET NOT NULL` (which the parser does not know).
fn vet_object_statement(o: &SchemaObject, i: usize, stmt: &str) -> Result<Verdict, Refusal> {
    let as_table = Table {
        kind: o.id(),
        engine: o.engine.clone(),
        columns: Vec::new(),
        primary_key: Vec::new(),
        rowid: false,
        foreign_keys: Vec::new(),
        ddl: Vec::new(),
        after: Vec::new(),
        pragmas: Vec::new(),
    };
    let none = BTreeSet::new();
    let vetter = Vetter {
        engine: Engine::Postgres,
        table: &as_table,
        partitions: &none,
    };
    if i > 0 {
        if let (ObjectKind::Domain, Some(name)) = (o.object, alter_domain_not_null(stmt)) {
            return match vetter.is_object(o, &name) {
                true => Ok(Verdict::Run),
                false => Err(Refusal::Refused(format!(
                    "{} is not the SET NOT NULL of domain `{}`",
                    excerpt(stmt),
                    o.id()
                ))),
            };
        }
    }
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, stmt).map_err(|e| {
        Refusal::Unreadable(format!(
            "a statement kindsnap cannot parse ({e}): {}",
            excerpt(stmt)
        ))
    })?;
    let [statement] = parsed.as_slice() else {
        return Err(Refusal::Refused(format!(
            "{} statements in one entry (one is allowed): {}",
            parsed.len(),
            excerpt(stmt)
        )));
    };
    let verdict = match (i, statement) {
        // A materialized view's indexes follow it; so does the comment
        // of any object.
        (1.., Statement::CreateIndex(ci))
            if o.object == ObjectKind::MaterializedView && vetter.is_object(o, &ci.table_name) =>
        {
            Verdict::Run
        }
        (
            1..,
            Statement::Comment {
                object_type,
                object_name,
                ..
            },
        ) if comment_word(o.object) == Some(object_type.to_string())
            && vetter.is_object(o, object_name) =>
        {
            Verdict::Run
        }
        (1.., _) => {
            return Err(Refusal::Refused(format!(
            "{} is neither the comment nor an index of {} `{}` (one statement creates an object)",
            excerpt(stmt),
            o.object.word(),
            o.id()
        )))
        }
        _ => vetter.object(o, statement).map_err(Refusal::Refused)?,
    };
    if verdict != Verdict::Run {
        return Ok(verdict);
    }
    Ok(
        match vetter.expressions(statement).map_err(Refusal::Refused)? {
            None => Verdict::Run,
            Some(what) => Verdict::Code {
                what,
                skippable: false,
            },
        },
    )
}

/// How `COMMENT ON` names an object of this kind (as the parser prints
/// it).
fn comment_word(k: ObjectKind) -> Option<String> {
    let word = match k {
        ObjectKind::Type => CommentObject::Type,
        ObjectKind::Domain => CommentObject::Domain,
        ObjectKind::Sequence => CommentObject::Sequence,
        ObjectKind::View => CommentObject::View,
        ObjectKind::MaterializedView => CommentObject::MaterializedView,
        ObjectKind::Function | ObjectKind::Extension => return None,
    };
    Some(word.to_string())
}

/// `ALTER DOMAIN name SET NOT NULL [;]`: the name's text.
fn alter_domain_not_null(stmt: &str) -> Option<ObjectName> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, stmt).tokenize().ok()?;
    let mut tokens: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    if matches!(tokens.last(), Some(Token::SemiColon)) {
        tokens.pop();
    }
    let word = |t: &Token, k: &str| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(k));
    let n = tokens.len();
    let shape = n > 5
        && word(tokens[0], "ALTER")
        && word(tokens[1], "DOMAIN")
        && word(tokens[n - 3], "SET")
        && word(tokens[n - 2], "NOT")
        && word(tokens[n - 1], "NULL");
    if !shape {
        return None;
    }
    let text: String = tokens[2..n - 3].iter().map(|t| t.to_string()).collect();
    Parser::new(&dialect)
        .try_with_sql(&text)
        .and_then(|mut p| {
            let name = p.parse_object_name(false)?;
            p.expect_token(&Token::EOF)?;
            Ok(name)
        })
        .ok()
}

impl Vetter<'_> {
    /// Whether `name` is the object's (an unqualified name is `public`).
    fn is_object(&self, o: &SchemaObject, name: &ObjectName) -> bool {
        if o.object == ObjectKind::Extension {
            return self.names(name) == [o.name.clone()];
        }
        self.qualified(name) == [o.schema.clone(), o.name.clone()]
    }

    /// The first statement of an object: it must create that object.
    fn object(&self, o: &SchemaObject, s: &Statement) -> Result<Verdict, String> {
        let id = o.id();
        let word = o.object.word();
        let code = |what: String| Verdict::Code {
            what,
            skippable: true,
        };
        let not_it = || format!("{} does not create {word} `{id}`", excerpt(&s.to_string()));
        let name_ok = |name: &ObjectName| {
            if self.is_object(o, name) {
                Ok(())
            } else {
                Err(not_it())
            }
        };
        match (o.object, s) {
            (
                ObjectKind::Type,
                Statement::CreateType {
                    name,
                    representation,
                },
            ) => {
                name_ok(name)?;
                self.type_representation(&id, representation.as_ref())
            }
            (ObjectKind::Domain, Statement::CreateDomain(d)) => {
                name_ok(&d.name)?;
                Ok(Verdict::Run)
            }
            (
                ObjectKind::Sequence,
                Statement::CreateSequence {
                    temporary,
                    name,
                    sequence_options,
                    ..
                },
            ) => {
                name_ok(name)?;
                let owned = sequence_options
                    .iter()
                    .any(|o| matches!(o, sqlparser::ast::SequenceOptions::OwnedBy(_)));
                if *temporary || owned {
                    return Err(format!(
                        "CREATE SEQUENCE {name} is temporary or owned by a column (a table records its own sequences)"
                    ));
                }
                Ok(Verdict::Run)
            }
            (ObjectKind::Function, Statement::CreateFunction(f)) => {
                name_ok(&f.name)?;
                Ok(code(format!("function `{id}`")))
            }
            (ObjectKind::View | ObjectKind::MaterializedView, Statement::CreateView(v))
                if v.materialized == (o.object == ObjectKind::MaterializedView) =>
            {
                name_ok(&v.name)?;
                Ok(code(format!("{word} `{id}`")))
            }
            (ObjectKind::Extension, Statement::CreateExtension(e)) => {
                if Engine::Postgres.ident_value(&e.name) != o.name || e.cascade {
                    return Err(not_it());
                }
                Ok(code(format!("extension `{id}`")))
            }
            _ => Err(not_it()),
        }
    }

    /// Enum, composite and range types; a range's functions only from
    /// [`RANGE_DIFFS`]; base types (written in C) are code.
    fn type_representation(
        &self,
        id: &str,
        r: Option<&sqlparser::ast::UserDefinedTypeRepresentation>,
    ) -> Result<Verdict, String> {
        use sqlparser::ast::{UserDefinedTypeRangeOption as O, UserDefinedTypeRepresentation as R};
        match r {
            Some(R::Enum { .. } | R::Composite { .. }) => Ok(Verdict::Run),
            Some(R::Range { options }) => {
                for opt in options {
                    let function = match opt {
                        O::Canonical(f) | O::SubtypeDiff(f) => f,
                        _ => continue,
                    };
                    let parts = self.names(function);
                    let builtin = match parts.as_slice() {
                        [f] => RANGE_DIFFS.contains(&f.as_str()),
                        [s, f] => s == "pg_catalog" && RANGE_DIFFS.contains(&f.as_str()),
                        _ => false,
                    };
                    if !builtin {
                        return Ok(Verdict::Code {
                            what: format!("a call to function `{function}`"),
                            skippable: false,
                        });
                    }
                }
                Ok(Verdict::Run)
            }
            _ => Err(format!(
                "type `{id}` is not an enum, composite or range type (base types are written in C)"
            )),
        }
    }
}

/// Functions an expression in a recorded table may call without
/// `--trust-schema`: SQLite's and PostgreSQL's built-ins that compute from
/// their arguments (and the clock) alone; none reads or writes files,
/// other tables or settings.
const BUILTIN_FUNCTIONS: &[&str] = &[
    // both
    "abs",
    "coalesce",
    "concat",
    "concat_ws",
    "format",
    "length",
    "lower",
    "upper",
    "ltrim",
    "rtrim",
    "trim",
    "btrim",
    "max",
    "min",
    "nullif",
    "replace",
    "round",
    "substr",
    "substring",
    "octet_length",
    "char_length",
    "character_length",
    "random",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtimestamp",
    "localtime",
    "sign",
    "greatest",
    "least",
    "mod",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "power",
    "sqrt",
    // SQLite
    "char",
    "glob",
    "hex",
    "ifnull",
    "iif",
    "instr",
    "like",
    "likelihood",
    "likely",
    "printf",
    "quote",
    "randomblob",
    "soundex",
    "typeof",
    "unhex",
    "unicode",
    "unlikely",
    "zeroblob",
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
    "json",
    "jsonb",
    "json_array",
    "json_object",
    "json_valid",
    "json_extract",
    "json_type",
    "json_quote",
    "json_array_length",
    "regexp",
    // PostgreSQL
    "nextval",
    "now",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timezone",
    "date_trunc",
    "date_part",
    "extract",
    "age",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "to_tsvector",
    "to_tsquery",
    "setweight",
    "left",
    "right",
    "position",
    "strpos",
    "split_part",
    "lpad",
    "rpad",
    "initcap",
    "md5",
    "regexp_replace",
    "regexp_match",
    "regexp_like",
    "starts_with",
    "array_length",
    "array_position",
    "array_to_string",
    "string_to_array",
    "cardinality",
    "jsonb_typeof",
    "json_typeof",
    "jsonb_array_length",
    "jsonb_build_object",
    "jsonb_build_array",
    "json_build_object",
    "json_build_array",
    "isfinite",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    "lower_inc",
    "upper_inc",
    "isempty",
    "num_nonnulls",
    "num_nulls",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::sql::Column;

    fn table(kind: &str, defaults: &[(&str, Option<&str>)]) -> Table {
        Table {
            kind: kind.into(),
            engine: "x".into(),
            columns: defaults
                .iter()
                .map(|(n, d)| Column {
                    name: n.to_string(),
                    sql_type: "integer".into(),
                    not_null: false,
                    default: d.map(str::to_string),
                })
                .collect(),
            primary_key: vec![],
            rowid: false,
            foreign_keys: vec![],
            ddl: vec![],
            after: vec![],
            pragmas: vec![],
        }
    }

    #[test]
    fn sqlite_accepts_its_own_table_and_indexes() {
        let t = table("product", &[]);
        for s in [
            "CREATE TABLE product (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT (lower('X')), price REAL CHECK (price > 0))",
            "CREATE TABLE \"product\" (sku TEXT PRIMARY KEY, n INT) WITHOUT ROWID",
            "CREATE TABLE [Product] (id INTEGER PRIMARY KEY AUTOINCREMENT)",
            "CREATE UNIQUE INDEX product_name ON product (lower(name))",
            "CREATE INDEX IF NOT EXISTS i2 ON \"product\"(name) WHERE price > 10",
        ] {
            assert_eq!(vet(Engine::Sqlite, &t, s), Ok(Verdict::Run), "{s}");
        }
    }

    #[test]
    fn sqlite_refuses_attacks() {
        let t = table("product", &[]);
        for s in [
            "CREATE TABLE product (id INTEGER); ATTACH DATABASE '/tmp/x.db' AS p",
            "CREATE TABLE product (id INTEGER); COMMIT; ATTACH '/other_app.db' AS q; DELETE FROM q.users; BEGIN",
            "ATTACH DATABASE '/tmp/x.db' AS p",
            "DELETE FROM users",
            "CREATE TABLE users (id INTEGER)",
            "CREATE TABLE other.product (id INTEGER)",
            "CREATE TABLE product AS SELECT * FROM users",
            "CREATE INDEX i ON users (id)",
            "CREATE TEMP TABLE product (id INTEGER)",
            "VACUUM INTO '/tmp/copy.db'",
            "PRAGMA writable_schema = 1",
            "CREATE TABLE product (id INTEGER CHECK (id IN (SELECT id FROM users)))",
        ] {
            assert!(vet(Engine::Sqlite, &t, s).is_err(), "accepted: {s}");
        }
    }

    #[test]
    fn triggers_are_told_from_their_first_words() {
        assert!(is_trigger(
            "create temp trigger t after insert on x begin select 1; end"
        ));
        assert!(is_trigger(
            "CREATE OR REPLACE CONSTRAINT TRIGGER t AFTER INSERT ON x"
        ));
        assert!(!is_trigger("CREATE TABLE trigger (a)"));
        assert!(!is_trigger("CREATE INDEX trigger ON x (a)"));
    }

    #[test]
    fn triggers_and_unknown_functions_are_code() {
        let t = table("product", &[]);
        let trigger = "CREATE TRIGGER audit AFTER INSERT ON product BEGIN INSERT INTO log VALUES (new.id); END";
        assert!(matches!(
            vet(Engine::Sqlite, &t, trigger),
            Ok(Verdict::Code {
                skippable: true,
                ..
            })
        ));
        let f = "CREATE TABLE product (id INTEGER DEFAULT (load_extension('/tmp/evil.so')))";
        assert!(
            matches!(vet(Engine::Sqlite, &t, f), Ok(Verdict::Code { what, skippable: false }) if what.contains("load_extension"))
        );
        let other = "CREATE TRIGGER audit AFTER INSERT ON users BEGIN SELECT 1; END";
        assert!(vet(Engine::Sqlite, &t, other).is_err());
    }

    #[test]
    fn unreadable_indexes_are_left_out_other_statements_refused() {
        let mut t = table("t", &[]);
        t.ddl = vec![
            "CREATE TABLE t (a TEXT)".into(),
            "CREATE INDEX i ON t (a) %%% not sql".into(),
        ];
        let policy = SchemaPolicy::default();
        let v = vet_table(Engine::Sqlite, &t, &policy).unwrap();
        assert_eq!(v.ddl, ["CREATE TABLE t (a TEXT)"]);
        assert_eq!(v.skipped.len(), 1, "{:?}", v.skipped);
        t.ddl[1] = "ATTACH 'x' AS y %%% not sql".into();
        assert!(vet_table(Engine::Sqlite, &t, &policy).is_err());
        t.ddl[1] = "CREATE INDEX i ON t (a); ATTACH 'x' AS y".into();
        assert!(vet_table(Engine::Sqlite, &t, &policy).is_err());
        assert!(index_or_trigger("  create unique index x on t(a)"));
        assert!(!index_or_trigger("CREATE TABLE x (a)"));
    }

    #[test]
    fn postgres_accepts_what_reflection_writes() {
        let t = table(
            "shop.order",
            &[
                ("id", Some("nextval('shop.order_id_seq'::regclass)")),
                ("n", None),
            ],
        );
        for s in [
            "CREATE SCHEMA IF NOT EXISTS \"shop\"",
            "CREATE SEQUENCE IF NOT EXISTS shop.order_id_seq",
            "CREATE TABLE \"shop\".\"order\" (\n  \"id\" integer DEFAULT nextval('shop.order_id_seq'::regclass) NOT NULL,\n  \"n\" numeric(10,2),\n  CONSTRAINT \"order_pkey\" PRIMARY KEY (id),\n  CONSTRAINT \"n_pos\" CHECK ((n > (0)::numeric))\n)",
            "ALTER SEQUENCE shop.order_id_seq OWNED BY \"shop\".\"order\".\"id\"",
            "CREATE INDEX order_n ON shop.\"order\" USING btree (n)",
            "ALTER TABLE \"shop\".\"order\" ADD CONSTRAINT \"fk\" FOREIGN KEY (n) REFERENCES shop.other(id) ON DELETE CASCADE",
        ] {
            assert_eq!(vet(Engine::Postgres, &t, s), Ok(Verdict::Run), "{s}");
        }
        let public = table("item", &[("id", Some("nextval('item_id_seq'::regclass)"))]);
        for s in [
            "CREATE SEQUENCE IF NOT EXISTS item_id_seq",
            "CREATE TABLE \"public\".\"item\" (\"id\" integer DEFAULT nextval('item_id_seq'::regclass) NOT NULL, \"at\" timestamp with time zone DEFAULT now(), \"tags\" text[])",
            "ALTER SEQUENCE item_id_seq OWNED BY \"public\".\"item\".\"id\"",
        ] {
            assert_eq!(vet(Engine::Postgres, &public, s), Ok(Verdict::Run), "{s}");
        }
    }

    #[test]
    fn postgres_refuses_attacks() {
        let t = table("item", &[("id", Some("nextval('item_id_seq'::regclass)"))]);
        for s in [
            "CREATE TABLE item (id integer); COPY (SELECT 1) TO '/tmp/x'",
            "COPY (SELECT 1) TO '/tmp/x'",
            "CREATE SCHEMA evil",
            "CREATE SEQUENCE other_seq",
            "ALTER SEQUENCE item_id_seq OWNED BY users.id",
            "ALTER SEQUENCE item_id_seq OWNED BY item.id; DROP TABLE users",
            "ALTER TABLE item DROP COLUMN id",
            "ALTER TABLE users ADD CONSTRAINT c CHECK (true)",
            "DROP TABLE users",
            "CREATE TABLE item (id integer DEFAULT nextval('x'::regclass)) ; SELECT pg_sleep(100)",
        ] {
            assert!(vet(Engine::Postgres, &t, s).is_err(), "accepted: {s}");
        }
        let code = "CREATE TABLE item (id integer CHECK (lo_export(1, '/tmp/x') > 0))";
        assert!(
            matches!(vet(Engine::Postgres, &t, code), Ok(Verdict::Code { what, .. }) if what.contains("lo_export"))
        );
        let qualified = "CREATE TABLE item (id integer DEFAULT evil.now())";
        assert!(matches!(
            vet(Engine::Postgres, &t, qualified),
            Ok(Verdict::Code { .. })
        ));
    }

    fn object(kind: ObjectKind, schema: &str, name: &str, ddl: &[&str]) -> SchemaObject {
        SchemaObject {
            object: kind,
            engine: "postgres".into(),
            schema: schema.into(),
            name: name.into(),
            arguments: String::new(),
            ddl: ddl.iter().map(|d| d.to_string()).collect(),
            depends: vec![],
            value: None,
        }
    }

    fn plan(o: &SchemaObject, trust: bool) -> Result<ObjectPlan, Error> {
        let policy = SchemaPolicy {
            snapshot: "s".into(),
            trust,
        };
        vet_object(Engine::Postgres, o, &policy)
    }

    #[test]
    fn postgres_types_domains_and_sequences_are_created_as_recorded() {
        for o in [
            object(ObjectKind::Type, "public", "mood", &["CREATE TYPE public.mood AS ENUM ('sad', 'it''s')"]),
            object(ObjectKind::Type, "shop", "addr", &["CREATE TYPE \"shop\".\"addr\" AS (street text, zip integer)"]),
            object(ObjectKind::Type, "public", "fr", &["CREATE TYPE fr AS RANGE (SUBTYPE = double precision, SUBTYPE_DIFF = float8mi)"]),
            object(ObjectKind::Domain, "public", "year", &[
                "CREATE DOMAIN public.year AS integer DEFAULT 1901 CONSTRAINT year_check CHECK (((VALUE >= 1901) AND (VALUE <= 2155)))",
                "ALTER DOMAIN public.year SET NOT NULL",
            ]),
            object(ObjectKind::Sequence, "public", "ids", &["CREATE SEQUENCE public.ids AS bigint INCREMENT BY 5 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 100 CACHE 1 NO CYCLE"]),
        ] {
            assert_eq!(plan(&o, false).unwrap(), ObjectPlan::Create(o.ddl.clone()), "{o:?}");
        }
    }

    #[test]
    fn postgres_objects_must_create_exactly_what_they_claim() {
        let refused = |kind, name: &str, ddl: &[&str]| {
            let o = object(kind, "public", name, ddl);
            assert!(plan(&o, false).is_err(), "accepted: {ddl:?}");
        };
        refused(
            ObjectKind::Type,
            "mood",
            &["CREATE TYPE public.other AS ENUM ('a')"],
        );
        refused(
            ObjectKind::Type,
            "mood",
            &["CREATE TYPE public.mood AS ENUM ('a'); DROP TABLE users"],
        );
        refused(ObjectKind::Type, "mood", &["DROP TABLE users"]);
        refused(
            ObjectKind::Type,
            "mood",
            &["CREATE TYPE mood AS ENUM ('a')", "DROP TABLE users"],
        );
        refused(
            ObjectKind::Type,
            "mood",
            &["CREATE TYPE mood (INPUT = evil_in, OUTPUT = evil_out)"],
        );
        refused(
            ObjectKind::Type,
            "mood",
            &["CREATE FUNCTION mood() RETURNS int LANGUAGE sql AS 'SELECT 1'"],
        );
        refused(
            ObjectKind::Domain,
            "d",
            &["CREATE DOMAIN d AS int", "ALTER DOMAIN other SET NOT NULL"],
        );
        refused(
            ObjectKind::Domain,
            "d",
            &["CREATE DOMAIN d AS int CHECK ((SELECT count(*) FROM users) > 0)"],
        );
        refused(
            ObjectKind::Sequence,
            "s",
            &["CREATE SEQUENCE s OWNED BY users.id"],
        );
        refused(ObjectKind::Sequence, "s", &["CREATE TEMPORARY SEQUENCE s"]);
        refused(ObjectKind::View, "v", &["CREATE VIEW other AS SELECT 1"]);
        refused(
            ObjectKind::View,
            "v",
            &["CREATE MATERIALIZED VIEW v AS SELECT 1"],
        );
        refused(
            ObjectKind::MaterializedView,
            "m",
            &[
                "CREATE MATERIALIZED VIEW m AS SELECT 1",
                "CREATE INDEX i ON users (id)",
            ],
        );
        refused(
            ObjectKind::Extension,
            "citext",
            &["CREATE EXTENSION citext CASCADE"],
        );
        refused(
            ObjectKind::Extension,
            "citext",
            &["CREATE EXTENSION dblink"],
        );
        // A check calling a function outside the built-ins is code the
        // domain cannot do without: refused unless trusted.
        let evil = object(
            ObjectKind::Domain,
            "public",
            "d",
            &["CREATE DOMAIN d AS int CHECK (pg_read_file('/etc/passwd') <> '')"],
        );
        assert!(plan(&evil, false).is_err());
        assert!(matches!(plan(&evil, true), Ok(ObjectPlan::Create(_))));
        let range = object(
            ObjectKind::Type,
            "public",
            "r",
            &["CREATE TYPE r AS RANGE (SUBTYPE = int, CANONICAL = evil)"],
        );
        assert!(plan(&range, false).is_err());
    }

    #[test]
    fn postgres_code_objects_need_trust() {
        for o in [
            object(ObjectKind::Function, "public", "touch", &["CREATE OR REPLACE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $function$ BEGIN RETURN NEW; END $function$"]),
            object(ObjectKind::View, "public", "v", &["CREATE VIEW public.v AS SELECT id FROM public.film"]),
            object(ObjectKind::MaterializedView, "public", "m", &[
                "CREATE MATERIALIZED VIEW public.m AS SELECT id FROM public.film",
                "CREATE UNIQUE INDEX m_id ON public.m USING btree (id)",
            ]),
            object(ObjectKind::Extension, "public", "dblink", &["CREATE EXTENSION IF NOT EXISTS \"dblink\" WITH SCHEMA \"public\""]),
            // Unreadable code is left out too.
            object(ObjectKind::View, "public", "w", &["CREATE VIEW public.w AS SELECT %%% not sql"]),
        ] {
            assert!(matches!(plan(&o, false), Ok(ObjectPlan::Skip(why)) if why.contains("--trust-schema")), "{o:?}");
            assert_eq!(plan(&o, true).unwrap(), ObjectPlan::Create(o.ddl.clone()));
        }
        // An unreadable type is refused: it is not code to skip.
        let t = object(ObjectKind::Type, "public", "t", &["CREATE TYPE t AS %%%"]);
        assert!(plan(&t, false).is_err());
    }

    #[test]
    fn postgres_partitions_belong_to_their_table() {
        let mut t = table("measurement", &[]);
        t.ddl = vec![
            "CREATE TABLE public.measurement (city integer, logdate date) PARTITION BY RANGE (logdate)".into(),
            "CREATE TABLE public.m_2024 PARTITION OF public.measurement FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (city)".into(),
            "CREATE TABLE public.m_2024_1 PARTITION OF public.m_2024 FOR VALUES IN (1)".into(),
            "CREATE TABLE public.m_other PARTITION OF public.measurement DEFAULT".into(),
            "CREATE INDEX m_city ON public.measurement USING btree (city)".into(),
            "ALTER TABLE public.m_2024_1 ADD CONSTRAINT c CHECK ((city > 0))".into(),
            "CREATE INDEX m_other_city ON public.m_other USING btree (city)".into(),
        ];
        t.after = vec![
            "ALTER TABLE public.m_other ADD CONSTRAINT fk FOREIGN KEY (city) REFERENCES public.city(id)".into(),
        ];
        let v = vet_table(Engine::Postgres, &t, &SchemaPolicy::default()).unwrap();
        assert_eq!(v.ddl, t.ddl);
        assert_eq!(v.after, t.after);
        for bad in [
            "CREATE TABLE public.x PARTITION OF public.users FOR VALUES IN (1)",
            "CREATE TABLE public.x PARTITION OF public.m_2099 FOR VALUES IN (1)",
            "CREATE TABLE pg_catalog.x PARTITION OF public.measurement DEFAULT",
            "CREATE TEMPORARY TABLE x PARTITION OF public.measurement DEFAULT",
            "CREATE TABLE public.measurement PARTITION OF public.measurement DEFAULT",
            "CREATE TABLE public.x PARTITION OF public.measurement FOR VALUES IN ((SELECT 1))",
            "ALTER TABLE public.m_2099 ADD CONSTRAINT c CHECK (true)",
            "CREATE INDEX i ON public.users (id)",
            "ALTER TABLE public.m_other DROP COLUMN city",
        ] {
            let mut tampered = t.clone();
            tampered.ddl.push(bad.into());
            assert!(
                vet_table(Engine::Postgres, &tampered, &SchemaPolicy::default()).is_err(),
                "accepted: {bad}"
            );
        }
        // The partitioning method is not a function call.
        let partitioned = "CREATE TABLE measurement (a int) PARTITION BY HASH (a)";
        assert_eq!(vet(Engine::Postgres, &t, partitioned), Ok(Verdict::Run));
        let evil = "CREATE TABLE measurement (a int) PARTITION BY RANGE (evil(a))";
        assert!(matches!(
            vet(Engine::Postgres, &t, evil),
            Ok(Verdict::Code { .. })
        ));
    }

    #[test]
    fn postgres_triggers_as_pg_get_triggerdef_writes_them_are_code() {
        let t = table("film", &[]);
        for s in [
            "CREATE TRIGGER film_fulltext_trigger BEFORE INSERT OR UPDATE ON public.film FOR EACH ROW EXECUTE FUNCTION tsvector_update_trigger('fulltext', 'pg_catalog.english', 'title', 'description')",
            "CREATE TRIGGER last_updated BEFORE UPDATE ON public.film FOR EACH ROW EXECUTE FUNCTION last_updated()",
            "CREATE TRIGGER t AFTER UPDATE OF title ON public.film FOR EACH ROW WHEN ((old.title IS DISTINCT FROM new.title)) EXECUTE FUNCTION public.log()",
        ] {
            assert!(
                matches!(vet(Engine::Postgres, &t, s), Ok(Verdict::Code { skippable: true, .. }))
                    || matches!(vet(Engine::Postgres, &t, s), Err(Refusal::Unreadable(_))),
                "{s}: {:?}",
                vet(Engine::Postgres, &t, s)
            );
        }
        let other =
            "CREATE TRIGGER t BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION f()";
        assert!(matches!(
            vet(Engine::Postgres, &t, other),
            Err(Refusal::Refused(_))
        ));
    }
}
