//! The snapshot loop every SQL source shares: which tables are read, the
//! schema kind first, then each table's rows as entities (the key from the
//! primary key, foreign-key columns as keys of the referenced kind).
//!
//! The caller opens the read transaction and closes it; nothing here
//! knows an engine (see [`super::dialect`]).

use std::collections::HashMap;

use super::dialect::{Reader, Row};
use super::{element_id, key, KeyEncoding, Part, Table};
use crate::error::Result;
use crate::filter::KindFilter;
use crate::model::{ElementId, Entity, Properties, Value, ValueKind};

/// Stream every table `filter` allows: first one schema entity per table,
/// then each table's rows in primary-key order. `f` gets each entity with
/// its position in the stream (for messages). A table with neither a
/// primary key nor a rowid has no identity to snapshot: skipped with a
/// warning.
pub(crate) fn scan<R: Reader>(
    reader: &mut R,
    filter: Option<&KindFilter>,
    f: &mut dyn FnMut(Entity, u64) -> Result<()>,
) -> Result<()> {
    scan_reporting(reader, filter, f, &mut Vec::new())
}

/// [`scan`], also recording the engine's schema-level objects (after the
/// tables' schema entities) and collecting in `warnings` what the
/// snapshot leaves out: tables without a key, objects it cannot record.
pub(crate) fn scan_reporting<R: Reader>(
    reader: &mut R,
    filter: Option<&KindFilter>,
    f: &mut dyn FnMut(Entity, u64) -> Result<()>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let all = reader.tables()?;
    let mut tables = Vec::new();
    for t in &all {
        let table = t.as_ref();
        if !filter.is_none_or(|f| f.allows("", &table.kind)) {
            continue;
        }
        if table.kind == super::SCHEMA_KIND {
            return Err(crate::error::Error::ReservedTable {
                engine: R::ENGINE,
                table: table.kind.clone(),
            });
        }
        if table.primary_key.is_empty() && !table.rowid {
            tracing::warn!(
                "{}: skipping table `{}`: it has no primary key (add one to snapshot it)",
                R::ENGINE,
                table.kind
            );
            warnings.push(format!(
                "table `{}` is not in the snapshot: it has no primary key (add one to snapshot it)",
                table.kind
            ));
            continue;
        }
        tables.push(t);
    }
    let mut origin = 0u64;
    for t in &tables {
        origin += 1;
        f(t.as_ref().to_entity(), origin)?;
    }
    let recorded: Vec<&Table> = tables.iter().map(|t| t.as_ref()).collect();
    let (objects, left_out) = reader.objects(&recorded)?;
    warnings.extend(left_out);
    for o in objects {
        origin += 1;
        f(o.to_entity(), origin)?;
    }
    let pk_of = |kind: &str| {
        all.iter()
            .map(AsRef::as_ref)
            .find(|t: &&Table| t.kind == kind)
            .map(|t| t.primary_key.clone())
    };
    for t in tables {
        let layout = Layout::new(t.as_ref(), R::columns(t), &pk_of);
        reader.rows(t, &mut |row| {
            origin += 1;
            f(layout.entity(row)?, origin)
        })?;
    }
    Ok(())
}

/// How a table's rows become entities.
struct Layout<'t> {
    table: &'t Table,
    /// The columns read, in the rows' order.
    names: Vec<&'t str>,
    /// Where the primary key's columns are among them.
    pk_at: Vec<usize>,
    /// The kind a column's values point at (single-column foreign keys).
    references: Vec<Option<String>>,
}

impl<'t> Layout<'t> {
    fn new(
        table: &'t Table,
        columns: Vec<&'t super::Column>,
        pk_of: &dyn Fn(&str) -> Option<Vec<String>>,
    ) -> Layout<'t> {
        let mut refs: HashMap<String, String> = table.reference_columns(pk_of);
        let pk_at = table
            .primary_key
            .iter()
            .filter_map(|p| columns.iter().position(|c| &c.name == p))
            .collect();
        Layout {
            table,
            references: columns.iter().map(|c| refs.remove(&c.name)).collect(),
            names: columns.iter().map(|c| c.name.as_str()).collect(),
            pk_at,
        }
    }

    /// A single-column key is the key, not a property too.
    fn single_key(&self) -> Option<usize> {
        match self.pk_at[..] {
            [i] => Some(i),
            _ => None,
        }
    }

    fn entity(&self, row: &dyn Row) -> Result<Entity> {
        let id = if self.table.rowid {
            ElementId::Id(row.rowid()?)
        } else {
            let parts = self
                .pk_at
                .iter()
                .map(|&i| row.part(i))
                .collect::<Result<Vec<_>>>()?;
            element_id(&parts, KeyEncoding::default())
        };
        let mut properties = Properties::new();
        for (i, name) in self.names.iter().enumerate() {
            if self.single_key() == Some(i) {
                continue;
            }
            let v = match &self.references[i] {
                Some(kind) => reference(row, i, kind)?,
                None => row.value(i)?,
            };
            properties.insert(name.to_string(), v);
        }
        Ok(Entity {
            key: key(&self.table.kind, id),
            properties,
        })
    }
}

/// A foreign-key column's value: a key of the referenced kind when it is
/// an integer or text; NULL stays NULL, anything else its value.
fn reference(row: &dyn Row, i: usize, kind: &str) -> Result<Value> {
    let id = match row.part(i)? {
        Part::Null => return Ok(Value::new(ValueKind::Null)),
        Part::Int(n) => ElementId::Id(n),
        Part::Text(s) | Part::LooseText(s) => ElementId::Name(s.into_owned()),
        Part::Real(_) | Part::Blob(_) | Part::TextBytes(_) => return row.value(i),
    };
    Ok(Value::new(ValueKind::Key(key(kind, id))))
}
