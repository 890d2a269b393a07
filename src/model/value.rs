//! Entities and property values: everything Cloud Datastore can store, plus
//! the per-value `exclude_from_indexes` flag and `meaning`, so that a restore
//! writes back exactly what was read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::key::Key;

/// Property name → value. A `BTreeMap` so the canonical encoding is
/// independent of the order properties arrived in.
pub type Properties = BTreeMap<String, Value>;

/// A stored entity: its complete key and its properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    #[serde(rename = "k")]
    pub key: Key,
    #[serde(rename = "p")]
    pub properties: Properties,
}

/// An entity embedded in a property; its key is optional and may be
/// incomplete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedEntity {
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    #[serde(rename = "p")]
    pub properties: Properties,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    #[serde(rename = "a")]
    pub latitude: f64,
    #[serde(rename = "o")]
    pub longitude: f64,
}

/// The typed payload of a value. Short serde names keep the canonical
/// encoding compact; they are part of the repository format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ValueKind {
    #[serde(rename = "z")]
    Null,
    #[serde(rename = "b")]
    Boolean(bool),
    #[serde(rename = "i")]
    Integer(i64),
    #[serde(rename = "d")]
    Double(f64),
    /// Microseconds since the Unix epoch, UTC (Datastore's precision).
    #[serde(rename = "t")]
    Timestamp(i64),
    #[serde(rename = "s")]
    String(String),
    #[serde(rename = "y")]
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
    #[serde(rename = "k")]
    Key(Key),
    #[serde(rename = "g")]
    GeoPoint(GeoPoint),
    #[serde(rename = "a")]
    Array(Vec<Value>),
    #[serde(rename = "e")]
    Entity(EmbeddedEntity),
}

/// A property value with its indexing flag and optional meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Value {
    #[serde(rename = "v")]
    pub kind: ValueKind,
    #[serde(rename = "x", default, skip_serializing_if = "is_false")]
    pub exclude_from_indexes: bool,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub meaning: Option<i32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Value {
    pub fn new(kind: ValueKind) -> Self {
        Value {
            kind,
            exclude_from_indexes: false,
            meaning: None,
        }
    }

    /// The name Datastore's JSON uses for this value's type.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ValueKind::Null => "null",
            ValueKind::Boolean(_) => "boolean",
            ValueKind::Integer(_) => "integer",
            ValueKind::Double(_) => "double",
            ValueKind::Timestamp(_) => "timestamp",
            ValueKind::String(_) => "string",
            ValueKind::Blob(_) => "blob",
            ValueKind::Key(_) => "key",
            ValueKind::GeoPoint(_) => "geoPoint",
            ValueKind::Array(_) => "array",
            ValueKind::Entity(_) => "entity",
        }
    }

    /// Visit every key stored in this value (inside arrays and embedded
    /// entities too).
    pub fn for_each_key<'a>(&'a self, f: &mut dyn FnMut(&'a Key)) {
        match &self.kind {
            ValueKind::Key(k) => f(k),
            ValueKind::Array(vs) => vs.iter().for_each(|v| v.for_each_key(f)),
            ValueKind::Entity(e) => e.properties.values().for_each(|v| v.for_each_key(f)),
            _ => {}
        }
    }

    /// Make doubles canonical: every NaN is the same NaN.
    pub(crate) fn canonicalize(&mut self) {
        match &mut self.kind {
            ValueKind::Double(d) if d.is_nan() => *d = f64::NAN,
            ValueKind::Array(vs) => vs.iter_mut().for_each(Value::canonicalize),
            ValueKind::Entity(e) => e.properties.values_mut().for_each(Value::canonicalize),
            ValueKind::GeoPoint(g) => {
                if g.latitude.is_nan() {
                    g.latitude = f64::NAN;
                }
                if g.longitude.is_nan() {
                    g.longitude = f64::NAN;
                }
            }
            _ => {}
        }
    }
}

impl Entity {
    pub(crate) fn canonicalize(&mut self) {
        self.properties.values_mut().for_each(Value::canonicalize);
    }
}
