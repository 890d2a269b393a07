//! SQL databases as sources and targets. The layout:
//!
//! - here: what every engine shares and nothing that talks to a database —
//!   the recorded table schema (the `kindsnap.schema` kind), foreign-key
//!   ordering, comparing a recorded table with an existing one, and the
//!   text forms values take on their way into a database;
//! - `keys.rs`: how primary keys become keys and back (typed, encoding 2;
//!   docs/format.md "SQL key encoding");
//! - `crossengine.rs`: restores into the other engine — type maps, tables
//!   made from the recorded structure, the compatibility check;
//! - `dialect.rs`: the traits an engine implements (`Dialect` for a
//!   restore, `Reader` and `Row` for a snapshot), and what a new engine
//!   must provide;
//! - `target.rs`: the one restore target, `SqlTarget<D: Dialect>`;
//!   `scan.rs`: the one snapshot loop;
//! - [`ddl`]: recorded statements vetted before a restore runs them;
//! - `sqlite.rs`, `postgres/`: the engines.
//!
//! See docs/sql.md for the mapping these implement.

mod crossengine;
pub mod ddl;
mod dialect;
mod keys;
pub(crate) mod postgres;
mod scan;
pub(crate) mod sqlite;
mod target;

pub(crate) use keys::{element_id, key_parts, KeyEncoding, Part};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::model::{
    ElementId, EmbeddedEntity, Entity, Key, PartitionId, PathElement, Properties, Value, ValueKind,
};

/// The kind holding one entity per table: its columns, key, foreign keys
/// and the DDL that recreates it. Restores read it first.
pub(crate) const SCHEMA_KIND: &str = "kindsnap.schema";

/// The kinds of SQLite tables whose names start with `kindsnap.` (the
/// prefix of kindsnap's own kinds) start with this, so that a user table
/// called `kindsnap.schema` never meets the schema kind.
const USER_TABLE_PREFIX: &str = "kindsnap.table.";

/// The kind of a SQLite table: its name, or [`USER_TABLE_PREFIX`] + its
/// name when that starts with `kindsnap.`.
pub(crate) fn kind_for_table(name: &str) -> String {
    if name.starts_with("kindsnap.") {
        format!("{USER_TABLE_PREFIX}{name}")
    } else {
        name.to_string()
    }
}

/// Inverse of [`kind_for_table`]: the SQLite table of a kind.
pub(crate) fn table_for_kind(kind: &str) -> &str {
    kind.strip_prefix(USER_TABLE_PREFIX).unwrap_or(kind)
}

/// Meanings on values whose SQL type the model has no exact type for; a
/// restore writes the value's text form back into a column of that type.
pub(crate) mod meaning {
    /// `numeric`/`decimal`: the exact decimal text.
    pub const NUMERIC: i32 = 1001;
    /// `date`: a timestamp at midnight UTC.
    pub const DATE: i32 = 1002;
    /// `time`: the text `HH:MM:SS[.ffffff]`.
    pub const TIME: i32 = 1003;
    /// `timestamp without time zone`: a timestamp read as if UTC.
    pub const TIMESTAMP: i32 = 1004;
    /// `json`: the text as stored.
    pub const JSON: i32 = 1005;
    /// `jsonb`: PostgreSQL's normalised text.
    pub const JSONB: i32 = 1006;
    /// `uuid`: the canonical text.
    pub const UUID: i32 = 1007;
    /// Any other type (interval, inet, enums, …): PostgreSQL's text output.
    pub const TEXT_FORM: i32 = 1008;
    /// On a blob: SQLite TEXT that is not valid UTF-8, its bytes exactly;
    /// restored as TEXT with the same bytes.
    pub const TEXT_BYTES: i32 = 1009;
}

/// Strings and blobs longer than this are excluded from indexes (Cloud
/// Datastore refuses longer indexed values), so a SQL snapshot restores into
/// Datastore too.
const INDEXED_LIMIT: usize = 1500;

/// One column as recorded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub name: String,
    /// The declared type (SQLite) or `format_type` (PostgreSQL).
    pub sql_type: String,
    pub not_null: bool,
    pub default: Option<String>,
}

/// A foreign key as recorded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ForeignKey {
    pub columns: Vec<String>,
    /// The referenced table's kind.
    pub kind: String,
    /// Empty: the referenced table's primary key.
    pub ref_columns: Vec<String>,
}

/// A table as recorded in (and read back from) the schema kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub kind: String,
    /// `sqlite` or `postgres`.
    pub engine: String,
    pub columns: Vec<Column>,
    /// Empty with `rowid`: SQLite's rowid is the key.
    pub primary_key: Vec<String>,
    pub rowid: bool,
    pub foreign_keys: Vec<ForeignKey>,
    /// Statements that create the table, its sequences and indexes.
    pub ddl: Vec<String>,
    /// Statements run after every table is loaded (PostgreSQL's foreign-key
    /// constraints).
    pub after: Vec<String>,
    /// Settings of the whole database, `NAME=VALUE`, recorded with every
    /// table (so any `--kinds` keeps them): SQLite's `user_version` and
    /// `application_id` when not 0. Absent when empty, so snapshots taken
    /// before this existed hash the same.
    pub pragmas: Vec<String>,
}

impl AsRef<Table> for Table {
    fn as_ref(&self) -> &Table {
        self
    }
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Single-column foreign keys to the referenced table's single-column
    /// primary key: column → referenced kind. Their values become keys.
    pub fn reference_columns(
        &self,
        pk_of: &dyn Fn(&str) -> Option<Vec<String>>,
    ) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for fk in &self.foreign_keys {
            if fk.columns.len() != 1 {
                continue;
            }
            let Some(pk) = pk_of(&fk.kind) else { continue };
            let to_pk = fk.ref_columns.is_empty() || fk.ref_columns == pk;
            if pk.len() == 1 && to_pk {
                out.insert(fk.columns[0].clone(), fk.kind.clone());
            }
        }
        out
    }

    pub fn to_entity(&self) -> Entity {
        let columns = self.columns.iter().map(Column::to_value).collect();
        let fks = self.foreign_keys.iter().map(ForeignKey::to_value).collect();
        let statements = |v: &[String]| {
            let long = v.iter().map(|d| {
                let mut v = string(d);
                v.exclude_from_indexes = true;
                v
            });
            Value::new(ValueKind::Array(long.collect()))
        };
        let mut p = Properties::new();
        p.insert("engine".into(), string(&self.engine));
        p.insert("columns".into(), Value::new(ValueKind::Array(columns)));
        p.insert("primary_key".into(), strings(&self.primary_key));
        p.insert("rowid".into(), Value::new(ValueKind::Boolean(self.rowid)));
        p.insert("foreign_keys".into(), Value::new(ValueKind::Array(fks)));
        p.insert("ddl".into(), statements(&self.ddl));
        p.insert("after".into(), statements(&self.after));
        if !self.pragmas.is_empty() {
            p.insert("pragmas".into(), strings(&self.pragmas));
        }
        // Absent when every key is an id: those are the same in every
        // encoding, so such tables' schema entities hash as before.
        if !self.ids_only() {
            let n = KeyEncoding::default().number();
            p.insert("key_encoding".into(), Value::new(ValueKind::Integer(n)));
        }
        Entity {
            key: Key::new(
                PartitionId::default(),
                vec![PathElement::name(SCHEMA_KIND, &self.kind)],
            ),
            properties: p,
        }
    }

    /// Whether every key of the table is an integer id, whatever its
    /// values: the rowid, SQLite's rowid alias (`INTEGER PRIMARY KEY` in a
    /// rowid table), one PostgreSQL integer column.
    pub fn ids_only(&self) -> bool {
        if self.rowid {
            return true;
        }
        let [pk] = &self.primary_key[..] else {
            return false;
        };
        let Some(c) = self.column(pk) else {
            return false;
        };
        match self.engine.as_str() {
            "postgres" => matches!(c.sql_type.as_str(), "smallint" | "integer" | "bigint"),
            _ => {
                let create = self.ddl.first().map(|d| d.to_ascii_uppercase());
                c.sql_type.eq_ignore_ascii_case("INTEGER")
                    && !create.is_some_and(|d| d.contains("WITHOUT ROWID"))
            }
        }
    }

    /// The key encoding a recorded table's entities use: `key_encoding`,
    /// absent in snapshots from before encoding 2 (and for tables whose
    /// keys are all ids, the same in both).
    pub fn key_encoding_of(e: &Entity) -> Result<KeyEncoding> {
        match e.properties.get("key_encoding").map(|v| &v.kind) {
            None => Ok(KeyEncoding::V1),
            Some(ValueKind::Integer(2)) => Ok(KeyEncoding::V2),
            Some(other) => Err(Error::NewerSchema {
                key: e.key.to_string(),
                found: format!("{other:?}"),
            }),
        }
    }

    pub fn from_entity(e: &Entity) -> Result<Table> {
        let kind = match e.key.path.last().map(|p| &p.id) {
            Some(ElementId::Name(n)) => n.clone(),
            _ => return Err(bad_schema("?", "its key is not a table name")),
        };
        let props = Recorded {
            kind: &kind,
            props: &e.properties,
        };
        let columns = props
            .entities("columns")?
            .into_iter()
            .map(|p| {
                Ok(Column {
                    name: p.text("name")?,
                    sql_type: p.text("type")?,
                    not_null: p.flag("not_null"),
                    default: p.text("default").ok(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let foreign_keys = props
            .entities("foreign_keys")?
            .into_iter()
            .map(|p| {
                Ok(ForeignKey {
                    columns: p.list("columns")?,
                    kind: p.text("references")?,
                    ref_columns: p.list("ref_columns")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Table {
            engine: props.text("engine")?,
            columns,
            primary_key: props.list("primary_key")?,
            rowid: props.flag("rowid"),
            foreign_keys,
            ddl: props.list("ddl")?,
            after: props.list("after")?,
            pragmas: match e.properties.contains_key("pragmas") {
                true => props.list("pragmas")?,
                false => Vec::new(),
            },
            kind,
        })
    }
}

/// What a schema-level object is (PostgreSQL): how it is vetted, when a
/// restore creates it and how it is looked up on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ObjectKind {
    Extension,
    /// An enum, composite or range type.
    Type,
    Domain,
    Function,
    /// A sequence no column owns.
    Sequence,
    View,
    MaterializedView,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Extension,
        ObjectKind::Type,
        ObjectKind::Domain,
        ObjectKind::Function,
        ObjectKind::Sequence,
        ObjectKind::View,
        ObjectKind::MaterializedView,
    ];

    /// The word in the record, the key and messages.
    pub fn word(self) -> &'static str {
        match self {
            ObjectKind::Extension => "extension",
            ObjectKind::Type => "type",
            ObjectKind::Domain => "domain",
            ObjectKind::Function => "function",
            ObjectKind::Sequence => "sequence",
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized view",
        }
    }

    pub fn from_word(w: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.word() == w)
    }

    /// When a restore creates it: extensions, then types and domains,
    /// functions (table defaults and checks may call them; their bodies
    /// are not checked until called), sequences, then the tables; views
    /// and materialized views after the load.
    pub fn rank(self) -> u8 {
        match self {
            ObjectKind::Extension => 0,
            ObjectKind::Type | ObjectKind::Domain => 1,
            ObjectKind::Function => 2,
            ObjectKind::Sequence => 3,
            ObjectKind::View | ObjectKind::MaterializedView => 4,
        }
    }
}

/// Objects in creation order: by [`ObjectKind::rank`], and within a rank
/// each after the objects it depends on (a cycle keeps the record's
/// order).
pub(crate) fn creation_order<T>(objects: Vec<(SchemaObject, T)>) -> Vec<(SchemaObject, T)> {
    let mut by_id: HashMap<String, (SchemaObject, T)> = HashMap::new();
    let mut groups: BTreeMap<u8, Vec<(String, String)>> = BTreeMap::new();
    let mut deps = BTreeMap::new();
    for (o, t) in objects {
        let id = o.id();
        groups
            .entry(o.object.rank())
            .or_default()
            .push((String::new(), id.clone()));
        deps.insert(id.clone(), o.depends.iter().cloned().collect());
        by_id.insert(id, (o, t));
    }
    groups
        .into_values()
        .flat_map(|ids| order_kinds(ids, &deps))
        .filter_map(|(_, id)| by_id.remove(&id))
        .collect()
}

/// A schema-level object as recorded in the schema kind (PostgreSQL): a
/// type, a domain, a sequence no column owns, a function, a view, an
/// extension. Its key has two elements, `kindsnap.schema:"type"/
/// kindsnap.schema:"public.mood"`, so it can never take a table's key (one
/// element), and a snapshot without objects hashes as before.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SchemaObject {
    pub object: ObjectKind,
    pub engine: String,
    /// The schema it lives in (an extension: the schema it is installed
    /// in, not part of its name).
    pub schema: String,
    pub name: String,
    /// A function's identity arguments (`integer, text`), so overloads
    /// are distinct objects; empty otherwise.
    pub arguments: String,
    /// The statements that create it, vetted before they run.
    pub ddl: Vec<String>,
    /// Other objects (their [`SchemaObject::id`]) to create first.
    pub depends: Vec<String>,
    /// A sequence's `last_value` and `is_called`, set when the restore
    /// creates it (as pg_dump does).
    pub value: Option<(i64, bool)>,
}

impl SchemaObject {
    /// The name in the key and in messages: `public.mood`,
    /// `public.f(integer)`, `citext`.
    pub fn id(&self) -> String {
        let mut id = if self.schema.is_empty() || self.object == ObjectKind::Extension {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        };
        if self.object == ObjectKind::Function {
            id.push_str(&format!("({})", self.arguments));
        }
        id
    }

    /// Whether a schema entity is an object (two-element key), not a table.
    pub fn is_object(e: &Entity) -> bool {
        e.key.path.len() == 2
    }

    pub fn to_entity(&self) -> Entity {
        let mut p = Properties::new();
        p.insert("engine".into(), string(&self.engine));
        p.insert("schema".into(), string(&self.schema));
        p.insert("name".into(), string(&self.name));
        if !self.arguments.is_empty() {
            p.insert("arguments".into(), string(&self.arguments));
        }
        let long = self.ddl.iter().map(|d| {
            let mut v = string(d);
            v.exclude_from_indexes = true;
            v
        });
        p.insert("ddl".into(), Value::new(ValueKind::Array(long.collect())));
        if !self.depends.is_empty() {
            p.insert("depends".into(), strings(&self.depends));
        }
        if let Some((last, called)) = self.value {
            p.insert("last_value".into(), Value::new(ValueKind::Integer(last)));
            p.insert("is_called".into(), Value::new(ValueKind::Boolean(called)));
        }
        Entity {
            key: Key::new(
                PartitionId::default(),
                vec![
                    PathElement::name(SCHEMA_KIND, self.object.word()),
                    PathElement::name(SCHEMA_KIND, self.id()),
                ],
            ),
            properties: p,
        }
    }

    pub fn from_entity(e: &Entity) -> Result<SchemaObject> {
        let name_of = |i: usize| match e.key.path.get(i).map(|p| &p.id) {
            Some(ElementId::Name(n)) => Some(n.clone()),
            _ => None,
        };
        let id = name_of(1).unwrap_or_else(|| "?".into());
        let object = name_of(0)
            .as_deref()
            .and_then(ObjectKind::from_word)
            .ok_or_else(|| bad_object(&id, "its key does not say what it is"))?;
        let props = Recorded {
            kind: &id,
            props: &e.properties,
        };
        let id_ref = &id;
        let damaged = |name: &'static str| {
            move |_| bad_object(id_ref, &format!("`{name}` is missing or damaged"))
        };
        let value = match (
            e.properties.get("last_value").map(|v| &v.kind),
            props.flag("is_called"),
        ) {
            (Some(ValueKind::Integer(n)), called) => Some((*n, called)),
            (None, _) => None,
            _ => return Err(bad_object(&id, "`last_value` is not an integer")),
        };
        Ok(SchemaObject {
            object,
            engine: props.text("engine").map_err(damaged("engine"))?,
            schema: props.text("schema").map_err(damaged("schema"))?,
            name: props.text("name").map_err(damaged("name"))?,
            arguments: props.text("arguments").unwrap_or_default(),
            ddl: props.list("ddl").map_err(damaged("ddl"))?,
            depends: props.list("depends").map_err(damaged("depends"))?,
            value,
        })
    }
}

fn bad_object(id: &str, why: &str) -> Error {
    Error::DamagedSchema {
        what: format!("object `{id}`"),
        why: why.to_string(),
        fix: "restore with --kinds leaving out kindsnap.schema into a database that has the schema",
    }
}

impl Column {
    fn to_value(&self) -> Value {
        let mut p = Properties::new();
        p.insert("name".into(), string(&self.name));
        p.insert("type".into(), string(&self.sql_type));
        p.insert(
            "not_null".into(),
            Value::new(ValueKind::Boolean(self.not_null)),
        );
        p.insert(
            "default".into(),
            match &self.default {
                Some(d) => string(d),
                None => Value::new(ValueKind::Null),
            },
        );
        embedded(p)
    }
}

impl ForeignKey {
    fn to_value(&self) -> Value {
        let mut p = Properties::new();
        p.insert("columns".into(), strings(&self.columns));
        p.insert("references".into(), string(&self.kind));
        p.insert("ref_columns".into(), strings(&self.ref_columns));
        embedded(p)
    }
}

fn string(t: &str) -> Value {
    Value::new(ValueKind::String(t.to_string()))
}

fn strings(v: &[String]) -> Value {
    Value::new(ValueKind::Array(v.iter().map(|c| string(c)).collect()))
}

fn embedded(properties: Properties) -> Value {
    Value::new(ValueKind::Entity(EmbeddedEntity {
        key: None,
        properties,
    }))
}

/// The properties of a recorded table (or of one of its columns or
/// foreign keys), read back with a clear error when damaged.
struct Recorded<'a> {
    kind: &'a str,
    props: &'a Properties,
}

impl<'a> Recorded<'a> {
    fn get(&self, name: &str) -> Option<&'a ValueKind> {
        self.props.get(name).map(|v| &v.kind)
    }

    fn bad(&self, why: String) -> Error {
        bad_schema(self.kind, &why)
    }

    fn text(&self, name: &str) -> Result<String> {
        match self.get(name) {
            Some(ValueKind::String(s)) => Ok(s.clone()),
            _ => Err(self.bad(format!("`{name}` is missing"))),
        }
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some(ValueKind::Boolean(true)))
    }

    /// A list; absent is empty.
    fn items(&self, name: &str) -> Result<&'a [Value]> {
        match self.get(name) {
            Some(ValueKind::Array(vs)) => Ok(vs),
            None => Ok(&[]),
            _ => Err(self.bad(format!("`{name}` is not a list"))),
        }
    }

    fn list(&self, name: &str) -> Result<Vec<String>> {
        self.items(name)?
            .iter()
            .map(|v| match &v.kind {
                ValueKind::String(s) => Ok(s.clone()),
                _ => Err(self.bad(format!("`{name}` holds a non-string"))),
            })
            .collect()
    }

    fn entities(&self, name: &str) -> Result<Vec<Recorded<'a>>> {
        self.items(name)?
            .iter()
            .map(|v| match &v.kind {
                ValueKind::Entity(e) => Ok(Recorded {
                    kind: self.kind,
                    props: &e.properties,
                }),
                _ => Err(self.bad(format!("`{name}` holds a non-entity"))),
            })
            .collect()
    }
}

fn bad_schema(kind: &str, why: &str) -> Error {
    Error::DamagedSchema {
        what: format!("table `{kind}`"),
        why: why.to_string(),
        fix: "restore the table into an existing table instead",
    }
}

/// A text value, excluded from indexes when long.
pub(crate) fn text_value(s: String) -> Value {
    let long = s.len() > INDEXED_LIMIT;
    let mut v = Value::new(ValueKind::String(s));
    v.exclude_from_indexes = long;
    v
}

pub(crate) fn blob_value(b: Vec<u8>) -> Value {
    let long = b.len() > INDEXED_LIMIT;
    let mut v = Value::new(ValueKind::Blob(b));
    v.exclude_from_indexes = long;
    v
}

pub(crate) fn with_meaning(mut v: Value, m: i32) -> Value {
    v.meaning = Some(m);
    v
}

/// A key of `kind` with one element.
pub(crate) fn key(kind: &str, id: ElementId) -> Key {
    Key::new(
        PartitionId::default(),
        vec![PathElement {
            kind: kind.to_string(),
            id,
        }],
    )
}

/// Each table's kind → the kinds its foreign keys reference, for
/// [`order_kinds`].
pub(crate) fn fk_deps<'a>(
    tables: impl IntoIterator<Item = &'a Table>,
) -> BTreeMap<String, BTreeSet<String>> {
    tables
        .into_iter()
        .map(|t| {
            (
                t.kind.clone(),
                t.foreign_keys.iter().map(|f| f.kind.clone()).collect(),
            )
        })
        .collect()
}

/// A restore into a table the target lacks and no recorded schema creates.
pub(crate) fn missing_table(kind: &str, target: &str, has_schema: bool) -> Error {
    Error::MissingTable {
        kind: kind.to_string(),
        target: target.to_string(),
        has_schema,
    }
}

/// Kinds in foreign-key dependency order (referenced tables first); a
/// cycle keeps the incoming order among its members. The schema kind goes
/// first. Kinds with no known table keep their place at the end.
pub(crate) fn order_kinds(
    kinds: Vec<(String, String)>,
    deps: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = kinds
        .iter()
        .filter(|(_, k)| k == SCHEMA_KIND)
        .cloned()
        .collect();
    let mut rest: Vec<(String, String)> = kinds
        .into_iter()
        .filter(|(_, k)| k != SCHEMA_KIND)
        .collect();
    let names: BTreeSet<String> = rest.iter().map(|(_, k)| k.clone()).collect();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    while !rest.is_empty() {
        let ready = rest.iter().position(|(_, k)| {
            deps.get(k).is_none_or(|d| {
                d.iter()
                    .all(|r| r == k || placed.contains(r) || !names.contains(r))
            })
        });
        // In a cycle nothing is ready: take the first and go on.
        let i = ready.unwrap_or(0);
        let item = rest.remove(i);
        placed.insert(item.1.clone());
        out.push(item);
    }
    out
}

/// Plain JSON for values a column has no native form for (arrays and
/// embedded entities from a Datastore snapshot).
pub(crate) fn plain_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.kind {
        ValueKind::Null => J::Null,
        ValueKind::Boolean(b) => J::Bool(*b),
        ValueKind::Integer(i) => J::from(*i),
        ValueKind::Double(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        ValueKind::Timestamp(t) => J::String(crate::model::json::format_timestamp(*t)),
        ValueKind::String(s) => J::String(s.clone()),
        ValueKind::Blob(b) => J::String(hex::encode(b)),
        ValueKind::Key(k) => J::String(k.display_path()),
        ValueKind::GeoPoint(g) => {
            serde_json::json!({"latitude": g.latitude, "longitude": g.longitude})
        }
        ValueKind::Array(vs) => J::Array(vs.iter().map(plain_json).collect()),
        ValueKind::Entity(e) => J::Object(
            e.properties
                .iter()
                .map(|(k, v)| (k.clone(), plain_json(v)))
                .collect(),
        ),
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) of µs since the epoch; with
/// `date_only`, `YYYY-MM-DD`.
pub(crate) fn format_sql_timestamp(us: i64, date_only: bool) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return crate::model::json::format_timestamp(us);
    };
    let date = format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day());
    if date_only {
        return date;
    }
    let mut s = format!("{date} {:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    if micros != 0 {
        s.push_str(&format!(".{micros:06}"));
    }
    s
}

/// Parse `YYYY-MM-DD[ HH:MM:SS[.f…]][+HH[:MM]]` into µs since the epoch.
/// `None` for anything else (BC dates, infinity), which then stays text.
pub(crate) fn parse_sql_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = match s.split_once(' ').or_else(|| s.split_once('T')) {
        Some((d, r)) => (d, Some(r)),
        None => (s, None),
    };
    let mut dp = date.splitn(3, '-');
    let y: i32 = dp.next()?.parse().ok()?;
    let m: u8 = dp.next()?.parse().ok()?;
    let d: u8 = dp.next()?.parse().ok()?;
    if date.len() != 10 {
        return None;
    }
    let day = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    let mut us = (day.to_julian_day() as i64 - 2_440_588) * 86_400_000_000;
    let Some(rest) = rest else { return Some(us) };
    let (clock, offset) = match rest.find(['+', '-']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (clock, None),
    };
    let mut tp = hms.split(':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let se: i64 = tp.next()?.parse().ok()?;
    if tp.next().is_some() || h > 24 || mi > 59 || se > 60 {
        return None;
    }
    us += ((h * 60 + mi) * 60 + se) * 1_000_000;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: i64 = f.parse().ok()?;
        us += n * 10i64.pow(6 - f.len() as u32);
    }
    if let Some(o) = offset {
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let o = &o[1..];
        let (oh, om) = match o.split_once(':') {
            Some((a, b)) => (a.parse::<i64>().ok()?, b.parse::<i64>().ok()?),
            None if o.len() == 4 => (o[..2].parse().ok()?, o[2..].parse().ok()?),
            None => (o.parse().ok()?, 0),
        };
        us -= sign * (oh * 60 + om) * 60_000_000;
    }
    Some(us)
}

/// Quote an SQL identifier (both engines use double quotes).
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One line naming every difference between the recorded table and the
/// one on the target; `None` when they are compatible.
pub(crate) fn compare_tables(
    recorded: &Table,
    target: &Table,
    normalise: &dyn Fn(&str) -> String,
) -> Option<String> {
    let mut problems = Vec::new();
    for c in &recorded.columns {
        match target.column(&c.name) {
            None => problems.push(format!("column `{}` is missing", c.name)),
            Some(t) if normalise(&t.sql_type) != normalise(&c.sql_type) => problems.push(format!(
                "column `{}` is {} on the target, {} in the snapshot",
                c.name, t.sql_type, c.sql_type
            )),
            _ => {}
        }
    }
    for t in &target.columns {
        if recorded.column(&t.name).is_none() && t.not_null && t.default.is_none() {
            problems.push(format!(
                "column `{}` is NOT NULL without a default and not in the snapshot",
                t.name
            ));
        }
    }
    if recorded.primary_key != target.primary_key || recorded.rowid != target.rowid {
        problems.push(format!(
            "the primary key is ({}) on the target, ({}) in the snapshot",
            target.primary_key.join(", "),
            if recorded.rowid {
                "rowid".to_string()
            } else {
                recorded.primary_key.join(", ")
            }
        ));
    }
    mismatch(&recorded.kind, &problems)
}

/// The line naming every difference between a table on the target and
/// the snapshot's (`None` when there is none).
pub(crate) fn mismatch(kind: &str, problems: &[String]) -> Option<String> {
    (!problems.is_empty()).then(|| {
        format!(
            "table `{kind}` on the target does not match the snapshot: {}; restore into an empty database or change the table",
            problems.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_locations_parse() {
        use crate::connector::{parse_location, Location};
        let sqlite = |p: &str| Location::Sqlite(p.into());
        assert_eq!(parse_location("sqlite:app.db").unwrap(), sqlite("app.db"));
        assert_eq!(parse_location("sqlite:///tmp/x").unwrap(), sqlite("/tmp/x"));
        assert_eq!(
            parse_location("data/app.sqlite3").unwrap(),
            sqlite("data/app.sqlite3")
        );
        assert_eq!(parse_location("app.db").unwrap(), sqlite("app.db"));
        assert!(parse_location("sqlite:").is_err());
        for url in ["postgres://u:p@h:5432/db", "postgresql://h/db"] {
            assert_eq!(parse_location(url).unwrap(), Location::Postgres(url.into()));
        }
        assert!(parse_location("mysql://h/db").is_err());
    }

    #[test]
    fn timestamps_parse_and_format() {
        let us = parse_sql_timestamp("2024-02-29 13:14:15.123456+00").unwrap();
        assert_eq!(
            format_sql_timestamp(us, false),
            "2024-02-29 13:14:15.123456"
        );
        assert_eq!(
            parse_sql_timestamp("2024-02-29 15:14:15.123456+02:00"),
            Some(us)
        );
        assert_eq!(parse_sql_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_sql_timestamp("1969-12-31 23:59:59.5"), Some(-500_000));
        assert_eq!(parse_sql_timestamp("infinity"), None);
        assert_eq!(parse_sql_timestamp("0044-03-15 BC"), None);
    }

    #[test]
    fn schema_entities_round_trip() {
        let t = Table {
            kind: "auth_user".into(),
            engine: "sqlite".into(),
            columns: vec![Column {
                name: "id".into(),
                sql_type: "integer".into(),
                not_null: true,
                default: None,
            }],
            primary_key: vec!["id".into()],
            rowid: false,
            foreign_keys: vec![ForeignKey {
                columns: vec!["g".into()],
                kind: "auth_group".into(),
                ref_columns: vec![],
            }],
            ddl: vec!["CREATE TABLE auth_user (id integer)".into()],
            after: vec![],
            pragmas: vec![],
        };
        assert_eq!(Table::from_entity(&t.to_entity()).unwrap(), t);
    }

    #[test]
    fn order_puts_referenced_tables_first_and_survives_cycles() {
        let kinds = |v: &[&str]| {
            v.iter()
                .map(|k| (String::new(), k.to_string()))
                .collect::<Vec<_>>()
        };
        let mut deps = BTreeMap::new();
        deps.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
        deps.insert(
            "c".to_string(),
            BTreeSet::from(["d".to_string(), "c".to_string()]),
        );
        deps.insert("d".to_string(), BTreeSet::from(["c".to_string()]));
        let got = order_kinds(kinds(&["c", "b", "kindsnap.schema", "a", "d"]), &deps);
        let names: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(names, ["kindsnap.schema", "a", "b", "c", "d"]);
    }

    #[test]
    fn schema_objects_round_trip_and_never_take_a_table_key() {
        let o = |kind, name: &str, depends: &[&str]| SchemaObject {
            object: kind,
            engine: "postgres".into(),
            schema: "public".into(),
            name: name.into(),
            arguments: String::new(),
            ddl: vec![format!("CREATE … {name}")],
            depends: depends.iter().map(|d| d.to_string()).collect(),
            value: None,
        };
        let mut f = o(ObjectKind::Function, "f", &[]);
        f.arguments = "integer, text".into();
        let mut s = o(ObjectKind::Sequence, "s", &[]);
        s.value = Some((41, true));
        for obj in [
            f.clone(),
            s.clone(),
            o(ObjectKind::Domain, "d", &["public.t"]),
        ] {
            let e = obj.to_entity();
            assert!(SchemaObject::is_object(&e));
            assert_eq!(e.key.kind(), SCHEMA_KIND);
            assert_eq!(SchemaObject::from_entity(&e).unwrap(), obj);
        }
        assert_eq!(f.id(), "public.f(integer, text)");
        let table = Table::from_entity(
            &Table {
                kind: "public.f(integer, text)".into(),
                engine: "postgres".into(),
                columns: vec![],
                primary_key: vec![],
                rowid: false,
                foreign_keys: vec![],
                ddl: vec![],
                after: vec![],
                pragmas: vec![],
            }
            .to_entity(),
        )
        .unwrap();
        assert_ne!(table.to_entity().key, f.to_entity().key);
        assert!(!SchemaObject::is_object(&table.to_entity()));
        // Creation order: by rank, then dependencies first.
        let ordered = creation_order(vec![
            (o(ObjectKind::View, "v2", &["public.v1"]), ()),
            (o(ObjectKind::View, "v1", &[]), ()),
            (o(ObjectKind::Domain, "d", &["public.t"]), ()),
            (o(ObjectKind::Sequence, "s", &[]), ()),
            (o(ObjectKind::Type, "t", &[]), ()),
            (o(ObjectKind::Extension, "x", &[]), ()),
        ]);
        let ids: Vec<String> = ordered.iter().map(|(o, _)| o.id()).collect();
        assert_eq!(
            ids,
            [
                "x",
                "public.t",
                "public.d",
                "public.s",
                "public.v1",
                "public.v2"
            ]
        );
    }
}
