//! The one SQL restore target: [`SqlTarget`] over an engine's
//! [`Dialect`].
//!
//! What a restore into any SQL database means lives here: the schema kind
//! is read first and recorded tables the target lacks are created from
//! their vetted DDL ([`ddl::vet_table`] under the [`ddl::SchemaPolicy`]),
//! existing ones are compared with what was recorded, uuid checks on
//! tables still to be created wait until they exist, kinds are ordered by
//! their foreign keys, and each entity becomes one upserted row. The
//! engine only runs statements (see [`super::dialect`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::dialect::Dialect;
use super::{
    compare_tables, crossengine, ddl, element_id, fk_deps, key, key_parts, missing_table,
    KeyEncoding, ObjectKind, Part, SchemaObject, Table, SCHEMA_KIND,
};
use crate::connector::{EntityTarget, KindOptions, Rejection};
use crate::error::{Error, Result};
use crate::model::{Entity, Key};

/// The table of `kind` on the target, or why a restore cannot write it.
/// (`restoring`: the kinds this restore writes; the schema kind among
/// them means the snapshot records a SQL schema.)
fn table<'t, D: Dialect>(
    tables: &'t HashMap<String, D::Table>,
    kind: &str,
    db: &D,
    restoring: &BTreeSet<String>,
) -> Result<&'t D::Table> {
    tables
        .get(kind)
        .ok_or_else(|| missing_table(kind, db.shown(), restoring.contains(SCHEMA_KIND)))
}

/// A SQL database as a restore target.
pub(crate) struct SqlTarget<D: Dialect> {
    db: D,
    /// Tables on the target, by kind (re-read after creating some).
    tables: HashMap<String, D::Table>,
    /// Tables recorded in the snapshot's schema kind.
    recorded: BTreeMap<String, Table>,
    /// The key encoding of each recorded table's entities.
    encodings: HashMap<String, KeyEncoding>,
    /// Schema-level objects recorded there (PostgreSQL's types, views…).
    objects: Vec<SchemaObject>,
    /// The kinds this restore writes.
    restoring: BTreeSet<String>,
    /// Kinds whose uuid check waits for their table to be created.
    uuid_checks: BTreeSet<String>,
    current: Option<String>,
    policy: ddl::SchemaPolicy,
    /// Recorded objects left out, for the report.
    warnings: Vec<String>,
}

impl<D: Dialect> SqlTarget<D> {
    pub(crate) fn new(db: D) -> SqlTarget<D> {
        SqlTarget {
            db,
            tables: HashMap::new(),
            recorded: BTreeMap::new(),
            encodings: HashMap::new(),
            objects: Vec::new(),
            restoring: BTreeSet::new(),
            uuid_checks: BTreeSet::new(),
            current: None,
            policy: ddl::SchemaPolicy::default(),
            warnings: Vec::new(),
        }
    }

    fn refresh(&mut self) -> Result<()> {
        let tables = self.db.reflect()?;
        self.tables = tables
            .into_iter()
            .map(|t| (t.as_ref().kind.clone(), t))
            .collect();
        Ok(())
    }

    fn table(&self, kind: &str) -> Result<&D::Table> {
        table(&self.tables, kind, &self.db, &self.restoring)
    }

    fn uuid_check(&self, t: &D::Table) -> Result<()> {
        match self.db.uuid_problem(t.as_ref()) {
            Some(p) => Err(Error::BadArgument(p)),
            None => Ok(()),
        }
    }

    /// After the schema kind: vet every recorded table the target lacks
    /// and compare the restored ones it has, then create the missing ones.
    /// Tables that were empty have no kind to restore but belong to the
    /// schema, so every missing one is created.
    fn apply_schema(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        // Every statement is vetted before any runs.
        let mut create = Vec::new();
        let user_types = crossengine::user_types(&self.objects);
        for t in self.recorded.values() {
            let based;
            let t = if t.engine != D::ENGINE {
                based = crossengine::with_base_types(t, &user_types);
                &based
            } else {
                t
            };
            match self.tables.get(&t.kind) {
                Some(_) if !self.restoring.contains(&t.kind) => {}
                Some(existing) if t.engine != D::ENGINE => {
                    problems.extend(crossengine::compare(t, existing.as_ref()))
                }
                Some(existing) => {
                    problems.extend(compare_tables(t, existing.as_ref(), &D::normalise_type))
                }
                // Generated from the recorded structure, every name quoted:
                // nothing recorded runs.
                None if t.engine != D::ENGINE => {
                    let made = crossengine::create(D::DDL, t, &self.recorded);
                    self.warnings.extend(
                        made.skipped
                            .iter()
                            .map(|s| format!("not recreated in {}: {s}", D::NAME)),
                    );
                    create.push((
                        t.kind.clone(),
                        ddl::Vetted {
                            ddl: made.ddl,
                            after: made.after,
                            skipped: made.skipped,
                        },
                    ));
                }
                None => {
                    let vetted = ddl::vet_table(D::DDL, t, &self.policy)?;
                    self.warnings.extend(vetted.skipped.iter().cloned());
                    create.push((t.kind.clone(), vetted));
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::SchemaMismatch { problems });
        }
        let objects = self.vet_objects()?;
        // Types, sequences and functions before the tables that use them;
        // views (kept by the engine) after the load.
        for (o, vetted) in &objects {
            self.db.create_object(o, vetted)?;
        }
        for (kind, vetted) in &create {
            for stmt in &vetted.ddl {
                self.db.run_ddl(stmt).map_err(|e| Error::CreateFailed {
                    what: format!("table `{kind}`"),
                    target: self.db.shown().to_string(),
                    why: e.to_string(),
                    kept: None,
                })?;
            }
        }
        self.db.after_tables()?;
        // Foreign keys and triggers of created tables come after the load.
        for (kind, vetted) in &create {
            self.db.defer(kind, &vetted.after)?;
        }
        let pragmas: BTreeSet<String> = self
            .recorded
            .values()
            .filter(|t| t.engine == D::ENGINE)
            .flat_map(|t| t.pragmas.iter().cloned())
            .collect();
        self.db.apply_pragmas(&pragmas)?;
        self.refresh()?;
        for kind in std::mem::take(&mut self.uuid_checks) {
            if let Some(t) = self.tables.get(&kind) {
                self.uuid_check(t)?;
            }
        }
        Ok(())
    }

    /// Vet every recorded object (before anything runs) and choose those
    /// to create: missing on the target, of this engine, not code left
    /// out without `--trust-schema` (reported). In creation order: by
    /// [`ObjectKind::rank`], each after the objects it depends on.
    fn vet_objects(&mut self) -> Result<Vec<(SchemaObject, Vec<String>)>> {
        let mut plans = Vec::new();
        for o in &self.objects {
            if o.engine != D::ENGINE {
                self.warnings.push(format!(
                    "{} `{}` was not created: it was recorded from {}",
                    o.object.word(),
                    o.id(),
                    o.engine
                ));
                continue;
            }
            plans.push((o.clone(), ddl::vet_object(D::DDL, o, &self.policy)?));
        }
        let mut out = Vec::new();
        for (o, plan) in plans {
            if self.db.has_object(&o)? {
                if o.object == ObjectKind::MaterializedView && self.policy.trust {
                    self.db.refresh_later(&o)?;
                }
                continue;
            }
            match plan {
                ddl::ObjectPlan::Create(vetted) => out.push((o, vetted)),
                // The install script is the server's, and the server says
                // a non-superuser may run it.
                ddl::ObjectPlan::Skip(_)
                    if o.object == ObjectKind::Extension
                        && self.db.trusted_extension(&o.name)? =>
                {
                    let vetted = o.ddl.clone();
                    out.push((o, vetted));
                }
                ddl::ObjectPlan::Skip(why) => self.warnings.push(why),
            }
        }
        Ok(super::creation_order(out))
    }

    /// One entity as one row of the current kind's table.
    fn write_row(&mut self, entity: Entity) -> Result<()> {
        let kind = self
            .current
            .as_deref()
            .ok_or(Error::Internal("SQL target: put outside a kind"))?;
        let t = table(&self.tables, kind, &self.db, &self.restoring)?;
        let table = t.as_ref();
        let id = entity
            .key
            .path
            .last()
            .map(|p| &p.id)
            .ok_or(Error::Internal("SQL target: empty key"))?;
        let mut columns = Vec::with_capacity(entity.properties.len() + 1);
        let mut row = Vec::with_capacity(entity.properties.len() + 1);
        let key_column = match &table.primary_key[..] {
            _ if table.rowid => Some("rowid"),
            [one] => Some(one.as_str()),
            _ => None,
        };
        let encoding = self.encodings.get(kind).copied().unwrap_or_default();
        let incomplete = || Error::Internal("SQL target: incomplete key");
        if let Some(c) = key_column {
            let part = key_parts(id, 1, encoding).ok_or_else(incomplete)?;
            columns.push(c.to_string());
            row.extend(part.iter().map(D::key_param));
        }
        // Across engines a composite key's columns are written from the
        // key, not converted from the properties (a timestamp's text
        // differs between engines): every key survives the trip.
        let from_key: Vec<(&String, Part<'_>)> = match self.recorded.get(kind) {
            Some(r) if r.engine != D::ENGINE && key_column.is_none() => {
                let parts =
                    key_parts(id, table.primary_key.len(), encoding).ok_or_else(incomplete)?;
                table.primary_key.iter().zip(parts).collect()
            }
            _ => Vec::new(),
        };
        for (name, part) in &from_key {
            columns.push(name.to_string());
            row.push(D::key_param(part));
        }
        for (name, v) in &entity.properties {
            if from_key.iter().any(|(k, _)| *k == name) {
                continue;
            }
            if table.column(name).is_none() {
                return Err(Error::NoSuchColumn {
                    kind: kind.to_string(),
                    target: self.db.shown().to_string(),
                    column: name.clone(),
                    key: entity.key.to_string(),
                });
            }
            columns.push(name.clone());
            row.push(D::param(v));
        }
        self.db.write(t, columns, row)
    }
}

impl<D: Dialect> EntityTarget for SqlTarget<D> {
    fn target_id(&self) -> String {
        self.db.target_id()
    }

    fn start(&mut self, _resuming: bool) -> Result<()> {
        self.db.open()?;
        self.refresh()?;
        self.db.batch("BEGIN")
    }

    fn set_schema_policy(&mut self, policy: ddl::SchemaPolicy) {
        self.policy = policy;
    }

    fn take_warnings(&mut self) -> Vec<String> {
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.extend(self.db.take_warnings());
        warnings
    }

    fn list_kinds(&mut self) -> Result<Vec<(String, String)>> {
        if !self.db.is_open() {
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
            Some(t) => self.uuid_check(t),
            // Created from the recorded schema later; checked then.
            None => {
                self.uuid_checks.insert(kind.to_string());
                Ok(())
            }
        }
    }

    fn order_kinds(&mut self, kinds: Vec<(String, String)>) -> Result<Vec<(String, String)>> {
        self.restoring = kinds.iter().map(|(_, k)| k.clone()).collect();
        let deps = fk_deps(self.tables.values().map(AsRef::as_ref));
        self.db.before_load(&self.restoring)?;
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
        if self.current.as_deref() == Some(SCHEMA_KIND) {
            if SchemaObject::is_object(&entity) {
                self.objects.push(SchemaObject::from_entity(&entity)?);
                return Ok(());
            }
            let t = Table::from_entity(&entity)?;
            self.encodings
                .insert(t.kind.clone(), Table::key_encoding_of(&entity)?);
            self.recorded.insert(t.kind.clone(), t);
            return Ok(());
        }
        self.write_row(entity)
    }

    fn sync(&mut self) -> Result<()> {
        self.db.flush()?;
        self.db.batch("COMMIT; BEGIN")
    }

    fn take_rejections(&mut self) -> Vec<Rejection> {
        Vec::new()
    }

    fn end_kind(&mut self) -> Result<()> {
        self.db.flush()?;
        if self.current.take().as_deref() == Some(SCHEMA_KIND) {
            self.apply_schema()?;
        }
        Ok(())
    }

    fn reserve_ids(&mut self, _ns: &str, kind: &str, keys: &[Key]) -> Result<()> {
        let t = table(&self.tables, kind, &self.db, &self.restoring)?;
        self.db.reserve_ids(t, keys)
    }

    fn reserve_method(&self) -> &'static str {
        self.db.reserve_method()
    }

    fn has_entities(&mut self, ns: &str, kind: &str) -> Result<bool> {
        // A table the database does not have yet holds nothing.
        if kind == SCHEMA_KIND || !self.tables.contains_key(kind) {
            return Ok(false);
        }
        crate::connector::any_key(|f| self.scan_keys(ns, kind, f))
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
        let t = table(&self.tables, kind, &self.db, &self.restoring)?;
        if t.as_ref().primary_key.is_empty() && !t.as_ref().rowid {
            return Ok(());
        }
        // In the snapshot's encoding, so that keys compare with its own.
        let encoding = self.encodings.get(kind).copied().unwrap_or_default();
        self.db
            .key_rows(t, &mut |parts| f(key(kind, element_id(parts, encoding))))
    }

    fn delete(&mut self, keys: Vec<Key>) -> Result<()> {
        for k in keys {
            let kind = k.kind();
            if kind == SCHEMA_KIND {
                continue;
            }
            let t = table(&self.tables, kind, &self.db, &self.restoring)?;
            let width = if t.as_ref().rowid {
                1
            } else {
                t.as_ref().primary_key.len()
            };
            let encoding = self.encodings.get(kind).copied().unwrap_or_default();
            let Some(parts) = k
                .path
                .last()
                .and_then(|p| key_parts(&p.id, width, encoding))
            else {
                continue;
            };
            self.db
                .delete(t, parts.iter().map(D::key_param).collect())?;
        }
        Ok(())
    }

    fn clear_kind(&mut self, _ns: &str, kind: &str) -> Result<u64> {
        if kind == SCHEMA_KIND {
            return Ok(0);
        }
        let Some(t) = self.tables.get(kind) else {
            return Ok(0);
        };
        let sql = format!("DELETE FROM {}", D::name(t));
        self.db.execute(&sql)
    }

    fn discard(&mut self) -> Result<()> {
        self.db.discard();
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if !self.db.is_open() {
            return Ok(());
        }
        self.db.flush()?;
        self.db.finish()
    }
}
