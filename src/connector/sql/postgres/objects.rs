//! PostgreSQL's schema-level objects read into [`SchemaObject`]s —
//! extensions, enum, composite and range types, domains, functions,
//! sequences no column owns, views and materialized views — and what
//! cannot be recorded, as warnings for the snapshot's report (nothing is
//! left out silently).
//!
//! Objects that belong to an extension are the extension's (recreated by
//! `CREATE EXTENSION`), never recorded one by one. Definitions are read
//! with `search_path` set to `pg_catalog` alone, so every name in them is
//! schema-qualified and means the same on the target.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::reflect::{kind_of, PgResult, Query};
use crate::connector::sql::{ident, ObjectKind, SchemaObject, Table};

/// Schemas that are the server's, not the application's.
const USER_SCHEMA: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_%'";

/// `X` is not a member of an extension (`$catalog` the catalogue of X).
fn not_extension_member(catalog: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass \
         AND e.objid = {oid} AND e.deptype = 'e')"
    )
}

/// What a snapshot records besides the tables, and what it cannot.
#[derive(Default)]
pub(crate) struct Objects {
    pub objects: Vec<SchemaObject>,
    pub warnings: Vec<String>,
}

/// Read every schema-level object; `tables` are the tables the snapshot
/// records (views reading other tables are left out, with a warning).
pub(super) fn reflect_objects(q: &mut Query<'_>, tables: &[&Table]) -> PgResult<Objects> {
    let path: String = q("SELECT current_setting('search_path')", &[])?[0].get(0);
    q("SELECT set_config('search_path', 'pg_catalog', true)", &[])?;
    let mut out = Objects::default();
    read_all(q, tables, &mut out)?;
    q("SELECT set_config('search_path', $1, true)", &[&path])?;
    Ok(out)
}

fn read_all(q: &mut Query<'_>, tables: &[&Table], out: &mut Objects) -> PgResult<()> {
    extensions(q, out)?;
    types(q, out)?;
    functions(q, out)?;
    sequences(q, out)?;
    let kinds: BTreeSet<&str> = tables.iter().map(|t| t.kind.as_str()).collect();
    views(q, &kinds, out)?;
    object_comments(q, out)?;
    let recorded = tables
        .iter()
        .flat_map(|t| &t.ddl)
        .chain(out.objects.iter().flat_map(|o| &o.ddl))
        .filter(|d| d.starts_with("COMMENT ON "))
        .count();
    unrecorded(q, &kinds, recorded, out)
}

/// `COMMENT ON TYPE / DOMAIN / SEQUENCE / VIEW / MATERIALIZED VIEW`, for
/// the recorded objects that have one.
fn object_comments(q: &mut Query<'_>, out: &mut Objects) -> PgResult<()> {
    for o in &mut out.objects {
        let (catalog, word) = match o.object {
            ObjectKind::Type => ("pg_type", "TYPE"),
            ObjectKind::Domain => ("pg_type", "DOMAIN"),
            ObjectKind::Sequence => ("pg_class", "SEQUENCE"),
            ObjectKind::View => ("pg_class", "VIEW"),
            ObjectKind::MaterializedView => ("pg_class", "MATERIALIZED VIEW"),
            ObjectKind::Function | ObjectKind::Extension => continue,
        };
        let qual = qualified(&o.schema, &o.name);
        let lookup = match catalog {
            "pg_type" => "SELECT obj_description(to_regtype($1), 'pg_type')",
            _ => "SELECT obj_description(to_regclass($1), 'pg_class')",
        };
        let rows = q(lookup, &[&qual])?;
        if let Some(text) = rows.first().and_then(|r| r.get::<_, Option<String>>(0)) {
            o.ddl.push(format!(
                "COMMENT ON {word} {qual} IS {}",
                super::reflect::comment_literal(&text)
            ));
        }
    }
    Ok(())
}

fn object(kind: ObjectKind, schema: String, name: String) -> SchemaObject {
    SchemaObject {
        object: kind,
        engine: "postgres".into(),
        schema,
        name,
        arguments: String::new(),
        ddl: Vec::new(),
        depends: Vec::new(),
        value: None,
    }
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// An SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Extensions (`plpgsql` is always there): recreated only with
/// `--trust-schema` (creating one runs its install script).
fn extensions(q: &mut Query<'_>, out: &mut Objects) -> PgResult<()> {
    let rows = q(
        "SELECT e.extname::text, n.nspname::text FROM pg_extension e \
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1",
        &[],
    )?;
    for r in rows {
        let (name, schema): (String, String) = (r.get(0), r.get(1));
        let mut o = object(ObjectKind::Extension, schema.clone(), name.clone());
        o.ddl.push(format!(
            "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}",
            ident(&name),
            ident(&schema)
        ));
        out.objects.push(o);
    }
    Ok(())
}

/// Enum, composite and range types and domains, each after the types it
/// is built from; base and shell types are warnings.
fn types(q: &mut Query<'_>, out: &mut Objects) -> PgResult<()> {
    let rows = q(
        &format!(
            "SELECT t.oid, n.nspname::text, t.typname::text, t.typtype::text FROM pg_type t \
             JOIN pg_namespace n ON n.oid = t.typnamespace \
             LEFT JOIN pg_class c ON c.oid = t.typrelid \
             WHERE {USER_SCHEMA} AND t.typtype IN ('b', 'c', 'd', 'e', 'p', 'r') \
             AND (t.typrelid = 0 OR c.relkind = 'c') \
             AND NOT EXISTS (SELECT 1 FROM pg_type a WHERE a.typarray = t.oid) \
             AND {} ORDER BY t.oid",
            not_extension_member("pg_type", "t.oid")
        ),
        &[],
    )?;
    let mut ids: HashMap<u32, String> = HashMap::new();
    let mut found = Vec::new();
    for r in rows {
        let (oid, schema, name, typtype): (u32, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let kind = if typtype == "d" {
            ObjectKind::Domain
        } else {
            ObjectKind::Type
        };
        let mut o = object(kind, schema.clone(), name.clone());
        let qual = qualified(&schema, &name);
        let made = match typtype.as_str() {
            "e" => enum_type(q, oid, &qual)?,
            "c" => composite_type(q, oid, &qual)?,
            "r" => range_type(q, oid, &qual)?,
            "d" => domain(q, oid, &qual)?,
            _ => Err(format!(
                "type `{}` is a base or shell type (written in C), which a snapshot cannot record; create it on the target before restoring",
                o.id()
            )),
        };
        match made {
            Ok(ddl) => {
                o.ddl = ddl;
                ids.insert(oid, o.id());
                found.push((oid, o));
            }
            Err(why) => out.warnings.push(why),
        }
    }
    let deps = type_dependencies(q)?;
    for (oid, mut o) in found {
        o.depends = deps
            .get(&oid)
            .into_iter()
            .flatten()
            .filter_map(|d| ids.get(d).cloned())
            .filter(|d| *d != o.id())
            .collect();
        out.objects.push(o);
    }
    Ok(())
}

type Made = PgResult<Result<Vec<String>, String>>;

fn enum_type(q: &mut Query<'_>, oid: u32, qual: &str) -> Made {
    let labels: Vec<String> = q(
        "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder",
        &[&oid],
    )?
    .iter()
    .map(|r| literal(&r.get::<_, String>(0)))
    .collect();
    Ok(Ok(vec![format!(
        "CREATE TYPE {qual} AS ENUM ({})",
        labels.join(", ")
    )]))
}

fn composite_type(q: &mut Query<'_>, oid: u32, qual: &str) -> Made {
    let attributes: Vec<String> = q(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_type t \
         JOIN pg_attribute a ON a.attrelid = t.typrelid \
         WHERE t.oid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        &[&oid],
    )?
    .iter()
    .map(|r| {
        format!(
            "{} {}",
            ident(&r.get::<_, String>(0)),
            r.get::<_, String>(1)
        )
    })
    .collect();
    Ok(Ok(vec![format!(
        "CREATE TYPE {qual} AS ({})",
        attributes.join(", ")
    )]))
}

fn range_type(q: &mut Query<'_>, oid: u32, qual: &str) -> Made {
    let r = q(
        "SELECT format_type(r.rngsubtype, NULL), r.rngcanonical::oid <> 0, \
         CASE WHEN r.rngsubdiff::oid <> 0 THEN r.rngsubdiff::regproc::text END, \
         CASE WHEN NOT o.opcdefault THEN quote_ident(on_.nspname) || '.' || quote_ident(o.opcname) END \
         FROM pg_range r JOIN pg_opclass o ON o.oid = r.rngsubopc \
         JOIN pg_namespace on_ ON on_.oid = o.opcnamespace WHERE r.rngtypid = $1",
        &[&oid],
    )?;
    let Some(r) = r.first() else {
        return Ok(Err(format!("range type {qual} has no pg_range entry")));
    };
    if r.get::<_, bool>(1) {
        return Ok(Err(format!(
            "range type {qual} has a canonical function (written in C), which a snapshot cannot record; create it on the target before restoring"
        )));
    }
    let mut options = vec![format!("SUBTYPE = {}", r.get::<_, String>(0))];
    if let Some(opclass) = r.get::<_, Option<String>>(3) {
        options.push(format!("SUBTYPE_OPCLASS = {opclass}"));
    }
    if let Some(diff) = r.get::<_, Option<String>>(2) {
        options.push(format!("SUBTYPE_DIFF = {diff}"));
    }
    Ok(Ok(vec![format!(
        "CREATE TYPE {qual} AS RANGE ({})",
        options.join(", ")
    )]))
}

fn domain(q: &mut Query<'_>, oid: u32, qual: &str) -> Made {
    let t = q(
        "SELECT format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault FROM pg_type t WHERE t.oid = $1",
        &[&oid],
    )?;
    let Some(t) = t.first() else {
        return Ok(Err(format!("domain {qual} vanished while it was read")));
    };
    let mut create = format!("CREATE DOMAIN {qual} AS {}", t.get::<_, String>(0));
    if let Some(default) = t.get::<_, Option<String>>(2) {
        create.push_str(&format!(" DEFAULT {default}"));
    }
    for c in q(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE contypid = $1 AND contype = 'c' ORDER BY conname",
        &[&oid],
    )? {
        create.push_str(&format!(
            " CONSTRAINT {} {}",
            ident(&c.get::<_, String>(0)),
            c.get::<_, String>(1)
        ));
    }
    let mut ddl = vec![create];
    if t.get::<_, bool>(1) {
        ddl.push(format!("ALTER DOMAIN {qual} SET NOT NULL"));
    }
    Ok(Ok(ddl))
}

/// Each type → the types it is built from (a domain's base, a
/// composite's attributes, a range's subtype; arrays as their element).
fn type_dependencies(q: &mut Query<'_>) -> PgResult<HashMap<u32, BTreeSet<u32>>> {
    let rows = q(
        "SELECT t.oid, CASE WHEN r.typcategory = 'A' AND r.typelem <> 0 THEN r.typelem ELSE r.oid END \
         FROM pg_type t JOIN pg_depend d ON (d.classid = 'pg_type'::regclass AND d.objid = t.oid) \
           OR (t.typrelid <> 0 AND d.classid = 'pg_class'::regclass AND d.objid = t.typrelid) \
         JOIN pg_type r ON d.refclassid = 'pg_type'::regclass AND r.oid = d.refobjid",
        &[],
    )?;
    let mut out: HashMap<u32, BTreeSet<u32>> = HashMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().insert(r.get(1));
    }
    Ok(out)
}

/// Functions and procedures (code: recreated only with
/// `--trust-schema`); aggregates and window functions are warnings.
fn functions(q: &mut Query<'_>, out: &mut Objects) -> PgResult<()> {
    let rows = q(
        &format!(
            "SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), \
             p.prokind::text, CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE {USER_SCHEMA} AND {} ORDER BY p.oid",
            // Also not the constructors a range type makes for itself.
            not_extension_member("pg_proc", "p.oid").replace("= 'e'", "IN ('e', 'i')")
        ),
        &[],
    )?;
    for r in rows {
        let mut o = object(ObjectKind::Function, r.get(0), r.get(1));
        o.arguments = r.get(2);
        match r.get::<_, Option<String>>(4) {
            Some(def) => {
                o.ddl.push(def.trim_end().to_string());
                out.objects.push(o);
            }
            None => out.warnings.push(format!(
                "aggregate or window function `{}` is not recorded; create it on the target before restoring",
                o.id()
            )),
        }
    }
    Ok(())
}

/// Sequences no column owns, with their options and current value (a
/// table records the sequences its columns own).
fn sequences(q: &mut Query<'_>, out: &mut Objects) -> PgResult<()> {
    let rows = q(
        &format!(
            "SELECT n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL), \
             s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, s.seqcycle, ps.last_value \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_sequence s ON s.seqrelid = c.oid \
             LEFT JOIN pg_sequences ps ON ps.schemaname = n.nspname AND ps.sequencename = c.relname \
             WHERE c.relkind = 'S' AND {USER_SCHEMA} AND NOT EXISTS (SELECT 1 FROM pg_depend d \
               WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i', 'e')) \
             ORDER BY 1, 2"
        ),
        &[],
    )?;
    for r in rows {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        let mut o = object(ObjectKind::Sequence, schema.clone(), name.clone());
        let (inc, min, max, start, cache): (i64, i64, i64, i64, i64) =
            (r.get(3), r.get(4), r.get(5), r.get(6), r.get(7));
        o.ddl.push(format!(
            "CREATE SEQUENCE {} AS {} INCREMENT BY {inc} MINVALUE {min} MAXVALUE {max} START WITH {start} CACHE {cache}{}",
            qualified(&schema, &name),
            r.get::<_, String>(2),
            if r.get::<_, bool>(8) { " CYCLE" } else { " NO CYCLE" }
        ));
        o.value = r.get::<_, Option<i64>>(9).map(|v| (v, true));
        out.objects.push(o);
    }
    Ok(())
}

/// Views and materialized views whose tables the snapshot records (the
/// others are warnings), each after the views it reads.
fn views(q: &mut Query<'_>, kinds: &BTreeSet<&str>, out: &mut Objects) -> PgResult<()> {
    let rows = q(
        &format!(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, pg_get_viewdef(c.oid), \
             array_to_string(c.reloptions, ', '), c.relispopulated \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('v', 'm') AND {USER_SCHEMA} AND {} ORDER BY c.oid",
            not_extension_member("pg_class", "c.oid")
        ),
        &[],
    )?;
    // What each view reads: (view, relation, its relkind, partition?, kind).
    let reads = q(
        "SELECT DISTINCT r.ev_class, d.refobjid, rc.relkind::text, rc.relispartition, \
         rn.nspname::text, rc.relname::text FROM pg_rewrite r \
         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid \
           AND d.refclassid = 'pg_class'::regclass \
         JOIN pg_class rc ON rc.oid = d.refobjid JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
         WHERE d.refobjid <> r.ev_class",
        &[],
    )?;
    let mut views: BTreeMap<u32, (SchemaObject, Vec<u32>, Option<String>)> = BTreeMap::new();
    for r in rows {
        let (oid, schema, name): (u32, String, String) = (r.get(0), r.get(1), r.get(2));
        let kind = if r.get::<_, String>(3) == "m" {
            ObjectKind::MaterializedView
        } else {
            ObjectKind::View
        };
        let mut o = object(kind, schema.clone(), name.clone());
        let def: String = r.get(4);
        let word = if kind == ObjectKind::View {
            "VIEW"
        } else {
            "MATERIALIZED VIEW"
        };
        // A view's options (`security_barrier`, `check_option`) and an
        // unpopulated materialized view are as they were; statements the
        // parser cannot read are code that only a trusted restore runs,
        // as every view is.
        let options = match r.get::<_, Option<String>>(5) {
            Some(o) if kind == ObjectKind::View && !o.is_empty() => format!(" WITH ({o})"),
            _ => String::new(),
        };
        let no_data = match r.get::<_, bool>(6) {
            false => "\nWITH NO DATA",
            true => "",
        };
        o.ddl.push(format!(
            "CREATE {word} {}{options} AS\n{}{no_data}",
            qualified(&schema, &name),
            def.trim_end().trim_end_matches(';')
        ));
        if kind == ObjectKind::MaterializedView {
            for i in q(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = $1 ORDER BY 1",
                &[&oid],
            )? {
                o.ddl.push(i.get(0));
            }
        }
        views.insert(oid, (o, Vec::new(), None));
    }
    for r in reads {
        let (view, rel, relkind, partition): (u32, u32, String, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let Some(entry) = views.get_mut(&view) else {
            continue;
        };
        let kind = kind_of(&r.get::<_, String>(4), &r.get::<_, String>(5));
        match relkind.as_str() {
            "v" | "m" => entry.1.push(rel),
            "r" | "p" if !partition && !kinds.contains(kind.as_str()) => {
                entry.2.get_or_insert(kind);
            }
            _ => {}
        }
    }
    leave_out_views(views, out);
    Ok(())
}

/// Record the views whose tables (and views) are recorded; the others
/// are warnings.
fn leave_out_views(
    mut views: BTreeMap<u32, (SchemaObject, Vec<u32>, Option<String>)>,
    out: &mut Objects,
) {
    // A view reading a view that is left out is left out too.
    loop {
        let out_ids: BTreeSet<u32> = views
            .iter()
            .filter(|(_, v)| v.2.is_some())
            .map(|(k, _)| *k)
            .collect();
        let mut changed = false;
        let names: HashMap<u32, String> = views.iter().map(|(k, v)| (*k, v.0.id())).collect();
        for v in views.values_mut() {
            if v.2.is_none() {
                if let Some(d) = v.1.iter().find(|d| out_ids.contains(d)) {
                    v.2 = Some(names[d].clone());
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let names: HashMap<u32, String> = views.iter().map(|(k, v)| (*k, v.0.id())).collect();
    for (_, (mut o, reads, left_out)) in views {
        match left_out {
            Some(what) => out.warnings.push(format!(
                "{} `{}` is not recorded: it reads `{what}`, which the snapshot does not hold (left out by --kinds or .snapshotignore, or without a primary key)",
                o.object.word(),
                o.id()
            )),
            None => {
                o.depends = reads.iter().filter_map(|r| names.get(r).cloned()).collect();
                out.objects.push(o);
            }
        }
    }
}

/// Every comment on an application object (not an extension's, not the
/// `public` schema's own).
const COMMENTS: &str = "SELECT count(*) FROM pg_description d \
     LEFT JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND c.oid = d.objoid \
     LEFT JOIN pg_type t ON d.classoid = 'pg_type'::regclass AND t.oid = d.objoid \
     LEFT JOIN pg_proc p ON d.classoid = 'pg_proc'::regclass AND p.oid = d.objoid \
     LEFT JOIN pg_constraint k ON d.classoid = 'pg_constraint'::regclass AND k.oid = d.objoid \
     LEFT JOIN pg_trigger g ON d.classoid = 'pg_trigger'::regclass AND g.oid = d.objoid \
     LEFT JOIN pg_class gc ON gc.oid = g.tgrelid \
     LEFT JOIN pg_namespace s ON d.classoid = 'pg_namespace'::regclass AND s.oid = d.objoid \
     JOIN pg_namespace n ON n.oid = coalesce(c.relnamespace, t.typnamespace, p.pronamespace, \
       k.connamespace, gc.relnamespace, s.oid) \
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
     AND (s.oid IS NULL OR s.nspname <> 'public') \
     AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = d.classoid AND e.objid = d.objoid \
       AND e.deptype = 'e')";

/// What a snapshot cannot record, one warning each.
fn unrecorded(
    q: &mut Query<'_>,
    kinds: &BTreeSet<&str>,
    recorded_comments: usize,
    out: &mut Objects,
) -> PgResult<()> {
    let rows = q(
        &format!(
            "SELECT 'event trigger `' || evtname || '`' FROM pg_event_trigger \
             UNION ALL SELECT 'policy `' || pol.polname || '` on table `' || \
               CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END || '`' \
               FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             UNION ALL SELECT 'rule `' || rulename || '` on `' || \
               CASE WHEN schemaname = 'public' THEN tablename::text ELSE schemaname || '.' || tablename END || '`' \
               FROM pg_rules WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
             UNION ALL SELECT 'foreign table `' || n.nspname || '.' || c.relname || '`' \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'f' \
             UNION ALL SELECT 'operator `' || n.nspname || '.' || o.oprname || '`' FROM pg_operator o \
               JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE {USER_SCHEMA} AND {} \
             UNION ALL SELECT 'collation `' || n.nspname || '.' || c.collname || '`' FROM pg_collation c \
               JOIN pg_namespace n ON n.oid = c.collnamespace WHERE {USER_SCHEMA} AND {} \
             UNION ALL SELECT 'text search configuration `' || n.nspname || '.' || c.cfgname || '`' \
               FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE {USER_SCHEMA} AND {} \
             UNION ALL SELECT 'table inheritance `' || \
               CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END || \
               '` INHERITS `' || p.relname || '` (each table is restored on its own)' \
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.relkind = 'r' \
             ORDER BY 1",
            not_extension_member("pg_operator", "o.oid"),
            not_extension_member("pg_collation", "c.oid"),
            not_extension_member("pg_ts_config", "c.oid"),
        ),
        &[],
    )?;
    for r in rows {
        out.warnings.push(format!(
            "{} is not recorded by the snapshot; recreate it on the target by hand",
            r.get::<_, String>(0)
        ));
    }
    let rls = q(
        &format!(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relrowsecurity AND c.relkind IN ('r', 'p') AND {USER_SCHEMA} ORDER BY 1, 2"
        ),
        &[],
    )?;
    for r in rls {
        let kind = kind_of(&r.get::<_, String>(0), &r.get::<_, String>(1));
        if kinds.contains(kind.as_str()) {
            out.warnings.push(format!(
                "row-level security of table `{kind}` (ENABLE ROW LEVEL SECURITY) is not recorded; enable it on the target by hand"
            ));
        }
    }
    let comments: i64 = q(COMMENTS, &[])?[0].get(0);
    let left_out = comments - recorded_comments as i64;
    if left_out > 0 {
        out.warnings.push(format!(
            "{left_out} comment(s) (COMMENT ON functions, indexes, constraints, triggers, schemas, \
             or on what the snapshot does not hold) are not recorded"
        ));
    }
    Ok(())
}
