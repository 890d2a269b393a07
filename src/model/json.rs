//! The entity JSON format: Cloud Datastore v1 REST's `Entity` shape, one
//! per line in JSON Lines files, and the same shape the Datastore connector
//! speaks. int64 values are decimal strings, bytes are base64, timestamps
//! RFC 3339 (truncated to microseconds, as Datastore stores them), doubles
//! numbers or "NaN" / "Infinity" / "-Infinity".
//!
//! Parsing is strict: an unknown field or a value with two types is an
//! error, because silently dropping data is worse than stopping.

use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::key::{ElementId, Key, PartitionId, PathElement};
use super::value::{EmbeddedEntity, Entity, GeoPoint, Properties, Value, ValueKind};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Parse one entity from its JSON text. There is one parser: the
/// transcoder writes the canonical encoding, which is then decoded.
pub fn entity_from_json(text: &str) -> Result<Entity, serde_json::Error> {
    let mut bytes = Vec::with_capacity(text.len());
    transcode::entity(text.as_bytes(), &mut bytes)?;
    super::codec::decode(&bytes).map_err(de::Error::custom)
}

/// Write an entity as compact JSON.
pub fn entity_to_json(entity: &Entity) -> String {
    // Serialising plain data to a String cannot fail.
    serde_json::to_string(&EntityRef(entity)).unwrap_or_default()
}

/// Write an entity as indented JSON.
pub fn entity_to_json_pretty(entity: &Entity) -> String {
    serde_json::to_string_pretty(&EntityRef(entity)).unwrap_or_default()
}

/// A key as Datastore JSON.
pub fn key_to_json(key: &Key) -> serde_json::Value {
    serde_json::to_value(KeyRef(key)).unwrap_or_default()
}

/// A value as Datastore JSON.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(ValueRef(value)).unwrap_or_default()
}

// ---------------------------------------------------------------- reading

/// An int64 written as a decimal string (or, leniently, a JSON integer).
struct I64Str(i64);

impl<'de> Deserialize<'de> for I64Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = I64Str;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an int64 as a decimal string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<I64Str, E> {
                s.parse()
                    .map(I64Str)
                    .map_err(|_| E::custom(format!("`{s}` is not an int64")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<I64Str, E> {
                Ok(I64Str(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<I64Str, E> {
                i64::try_from(v)
                    .map(I64Str)
                    .map_err(|_| E::custom(format!("{v} is out of int64 range")))
            }
        }
        d.deserialize_any(V)
    }
}

struct F64Json(f64);

impl<'de> Deserialize<'de> for F64Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = F64Json;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or \"NaN\", \"Infinity\", \"-Infinity\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<F64Json, E> {
                match s {
                    "NaN" => Ok(F64Json(f64::NAN)),
                    "Infinity" => Ok(F64Json(f64::INFINITY)),
                    "-Infinity" => Ok(F64Json(f64::NEG_INFINITY)),
                    _ => s
                        .parse()
                        .map(F64Json)
                        .map_err(|_| E::custom(format!("`{s}` is not a double"))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<F64Json, E> {
                Ok(F64Json(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<F64Json, E> {
                Ok(F64Json(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<F64Json, E> {
                Ok(F64Json(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonGeo {
    #[serde(default)]
    latitude: Option<F64Json>,
    #[serde(default)]
    longitude: Option<F64Json>,
}

/// Parse an RFC 3339 timestamp to microseconds since the epoch, rounding
/// sub-microsecond digits down the way Datastore stores them.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp: {e}"))?;
    let nanos = t.unix_timestamp_nanos();
    Ok(nanos.div_euclid(1000) as i64)
}

/// Format microseconds since the epoch as RFC 3339 in UTC with 0, 3 or 6
/// fractional digits, as Google's JSON mapping does.
pub fn format_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return format!("{micros}us");
    };
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if frac == 0 {
        format!("{base}Z")
    } else if frac % 1000 == 0 {
        format!("{base}.{:03}Z", frac / 1000)
    } else {
        format!("{base}.{frac:06}Z")
    }
}

const VALUE_FIELDS: &[&str] = &[
    "nullValue",
    "booleanValue",
    "integerValue",
    "doubleValue",
    "timestampValue",
    "keyValue",
    "stringValue",
    "blobValue",
    "geoPointValue",
    "entityValue",
    "arrayValue",
    "excludeFromIndexes",
    "meaning",
];

// ---------------------------------------------------------------- writing

struct EntityRef<'a>(&'a Entity);

impl Serialize for EntityRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", &KeyRef(&self.0.key))?;
        m.serialize_entry("properties", &PropsRef(&self.0.properties))?;
        m.end()
    }
}

struct PropsRef<'a>(&'a Properties);

impl Serialize for PropsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, &ValueRef(v))?;
        }
        m.end()
    }
}

struct KeyRef<'a>(&'a Key);

impl Serialize for KeyRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let k = self.0;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("partitionId", &PartitionRef(&k.partition))?;
        m.serialize_entry("path", &PathRef(&k.path))?;
        m.end()
    }
}

struct PartitionRef<'a>(&'a PartitionId);

impl Serialize for PartitionRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("projectId", &p.project)?;
        if !p.database.is_empty() {
            m.serialize_entry("databaseId", &p.database)?;
        }
        if !p.namespace.is_empty() {
            m.serialize_entry("namespaceId", &p.namespace)?;
        }
        m.end()
    }
}

struct PathRef<'a>(&'a [PathElement]);

impl Serialize for PathRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            seq.serialize_element(&ElementRef(e))?;
        }
        seq.end()
    }
}

struct ElementRef<'a>(&'a PathElement);

impl Serialize for ElementRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("kind", &self.0.kind)?;
        match &self.0.id {
            ElementId::Incomplete => {}
            ElementId::Id(id) => m.serialize_entry("id", &id.to_string())?,
            ElementId::Name(n) => m.serialize_entry("name", n)?,
        }
        m.end()
    }
}

struct F64Ref(f64);

impl Serialize for F64Ref {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v == f64::INFINITY {
            s.serialize_str("Infinity")
        } else if v == f64::NEG_INFINITY {
            s.serialize_str("-Infinity")
        } else {
            s.serialize_f64(v)
        }
    }
}

struct ValueRef<'a>(&'a Value);

struct ValuesRef<'a>(&'a [Value]);

impl Serialize for ValuesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        if !self.0.is_empty() {
            let vs: Vec<ValueRef> = self.0.iter().map(ValueRef).collect();
            m.serialize_entry("values", &vs)?;
        }
        m.end()
    }
}

struct GeoRef<'a>(&'a GeoPoint);

impl Serialize for GeoRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("latitude", &F64Ref(self.0.latitude))?;
        m.serialize_entry("longitude", &F64Ref(self.0.longitude))?;
        m.end()
    }
}

struct EmbeddedRef<'a>(&'a EmbeddedEntity);

impl Serialize for EmbeddedRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(k) = &self.0.key {
            m.serialize_entry("key", &KeyRef(k))?;
        }
        m.serialize_entry("properties", &PropsRef(&self.0.properties))?;
        m.end()
    }
}

impl Serialize for ValueRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        let mut m = s.serialize_map(None)?;
        match &v.kind {
            ValueKind::Null => m.serialize_entry("nullValue", &())?,
            ValueKind::Boolean(b) => m.serialize_entry("booleanValue", b)?,
            ValueKind::Integer(i) => m.serialize_entry("integerValue", &i.to_string())?,
            ValueKind::Double(d) => m.serialize_entry("doubleValue", &F64Ref(*d))?,
            ValueKind::Timestamp(t) => {
                m.serialize_entry("timestampValue", &format_timestamp(*t))?
            }
            ValueKind::String(st) => m.serialize_entry("stringValue", st)?,
            ValueKind::Blob(b) => m.serialize_entry("blobValue", &B64.encode(b))?,
            ValueKind::Key(k) => m.serialize_entry("keyValue", &KeyRef(k))?,
            ValueKind::GeoPoint(g) => m.serialize_entry("geoPointValue", &GeoRef(g))?,
            ValueKind::Array(vs) => m.serialize_entry("arrayValue", &ValuesRef(vs))?,
            ValueKind::Entity(e) => m.serialize_entry("entityValue", &EmbeddedRef(e))?,
        }
        if v.exclude_from_indexes {
            m.serialize_entry("excludeFromIndexes", &true)?;
        }
        if let Some(meaning) = v.meaning {
            m.serialize_entry("meaning", &meaning)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::codec;
    use proptest::prelude::*;

    #[test]
    fn a_repeated_key_or_properties_member_is_refused() {
        let k = r#"{"partitionId":{"projectId":"p"},"path":[{"kind":"A","id":"1"}]}"#;
        let k2 = r#"{"partitionId":{"projectId":"p"},"path":[{"kind":"A","id":"2"}]}"#;
        for line in [
            format!(r#"{{"key":{k},"key":{k2},"properties":{{}}}}"#),
            format!(r#"{{"key":{k},"properties":{{}},"properties":{{}}}}"#),
        ] {
            let err = entity_from_json(&line).unwrap_err().to_string();
            assert!(err.contains("duplicate field"), "{line}: {err}");
        }
        let one = format!(r#"{{"key":{k},"properties":{{}}}}"#);
        assert!(entity_from_json(&one).is_ok());
    }

    #[test]
    fn parses_the_rest_shape() {
        let line = r#"{"key":{"partitionId":{"projectId":"p","namespaceId":"ns"},"path":[{"kind":"User","name":"alice"},{"kind":"Post","id":"42"}]},"properties":{"title":{"stringValue":"hé"},"n":{"integerValue":"-7","meaning":9},"d":{"doubleValue":"NaN"},"t":{"timestampValue":"2026-01-02T03:04:05.123456789+01:00"},"b":{"blobValue":"aGk="},"g":{"geoPointValue":{"latitude":1.5,"longitude":-2}},"z":{"nullValue":null},"a":{"arrayValue":{}},"e":{"entityValue":{"properties":{"x":{"booleanValue":true,"excludeFromIndexes":true}}}}}}"#;
        let e = entity_from_json(line).unwrap();
        assert_eq!(e.key.partition.namespace, "ns");
        assert_eq!(e.key.path[1], PathElement::id("Post", 42));
        assert_eq!(e.properties["n"].meaning, Some(9));
        assert_eq!(
            e.properties["t"].kind,
            ValueKind::Timestamp(1767319445123456)
        );
        assert_eq!(e.properties["a"].kind, ValueKind::Array(vec![]));
        assert_eq!(
            format_timestamp(1767319445123456),
            "2026-01-02T02:04:05.123456Z"
        );
        let back = entity_from_json(&entity_to_json(&e)).unwrap();
        let (mut a, mut b) = (e, back);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        codec::encode(&mut a, &mut x);
        codec::encode(&mut b, &mut y);
        assert_eq!(x, y);
    }

    #[test]
    fn rejects_what_it_cannot_keep() {
        for bad in [
            r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"x":{"stringValue":"a","integerValue":"1"}}}"#,
            r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"x":{"strngValue":"a"}}}"#,
            r#"{"key":{"path":[{"kind":"A","id":"x"}]}}"#,
            r#"{"key":{"path":[{"kind":"A","id":"1"}]},"extra":1}"#,
            r#"{"properties":{}}"#,
            r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"t":{"timestampValue":"yesterday"}}}"#,
        ] {
            assert!(entity_from_json(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn json_round_trip(mut e in codec::tests::arb_entity()) {
            let mut x = Vec::new();
            codec::encode(&mut e, &mut x);
            let mut back = entity_from_json(&entity_to_json(&e)).unwrap();
            let mut y = Vec::new();
            codec::encode(&mut back, &mut y);
            prop_assert_eq!(x, y);
        }
    }
}

/// JSON straight to the canonical encoding, without building an [`Entity`]:
/// the snapshot's hot path. Property values are transcoded into a scratch
/// buffer as they are read (strings borrowed from the input where they have
/// no escapes), then the properties are written in name order. The bytes
/// are exactly those `codec::encode` writes for the entity the JSON
/// describes — a property test holds the two together. This is the only
/// JSON parser: [`entity_from_json`] decodes what it writes.
pub mod transcode {
    use std::borrow::Cow;
    use std::cell::RefCell;

    use serde::de::DeserializeSeed;

    use super::*;
    use crate::model::codec::fast;
    use crate::model::key::IdParts;

    /// What the caller needs besides the bytes: the entity's key, borrowed
    /// from the input where it can be.
    pub struct Transcoded<'a> {
        pub key: KeyRef<'a>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct PartitionRef<'a> {
        #[serde(borrow, default)]
        project_id: Cow<'a, str>,
        #[serde(borrow, default)]
        database_id: Cow<'a, str>,
        #[serde(borrow, default)]
        namespace_id: Cow<'a, str>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ElementRef<'a> {
        #[serde(borrow)]
        kind: Cow<'a, str>,
        #[serde(default)]
        id: Option<I64Str>,
        #[serde(borrow, default)]
        name: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct KeyRaw<'a> {
        #[serde(borrow, default)]
        partition_id: Option<PartitionRef<'a>>,
        #[serde(borrow, default)]
        path: Vec<ElementRef<'a>>,
    }

    /// A key whose strings point into the JSON text (no copies unless a
    /// string has escapes).
    pub struct KeyRef<'a> {
        pub project: Cow<'a, str>,
        pub database: Cow<'a, str>,
        pub namespace: Cow<'a, str>,
        path: Vec<(Cow<'a, str>, IdRef<'a>)>,
    }

    enum IdRef<'a> {
        Incomplete,
        Id(i64),
        Name(Cow<'a, str>),
    }

    impl<'de> Deserialize<'de> for KeyRef<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let raw = KeyRaw::deserialize(d)?;
            let p = raw.partition_id.unwrap_or(PartitionRef {
                project_id: Cow::Borrowed(""),
                database_id: Cow::Borrowed(""),
                namespace_id: Cow::Borrowed(""),
            });
            let mut path = Vec::with_capacity(raw.path.len());
            for e in raw.path {
                let id = match (e.id, e.name) {
                    (Some(_), Some(_)) => {
                        return Err(de::Error::custom("a path element has both `id` and `name`"))
                    }
                    (Some(id), None) => IdRef::Id(id.0),
                    (None, Some(name)) => IdRef::Name(name),
                    (None, None) => IdRef::Incomplete,
                };
                path.push((e.kind, id));
            }
            Ok(KeyRef {
                project: p.project_id,
                database: p.database_id,
                namespace: p.namespace_id,
                path,
            })
        }
    }

    impl KeyRef<'_> {
        pub fn is_complete(&self) -> bool {
            !self.path.is_empty()
                && self
                    .path
                    .iter()
                    .all(|(_, id)| !matches!(id, IdRef::Incomplete))
        }

        /// The kind of the entity itself.
        pub fn kind(&self) -> &str {
            self.path.last().map(|(k, _)| &**k).unwrap_or("")
        }

        fn parts(&self) -> impl ExactSizeIterator<Item = (&str, IdParts<'_>)> {
            self.path.iter().map(|(kind, id)| {
                let id = match id {
                    IdRef::Incomplete => IdParts::Incomplete,
                    IdRef::Id(i) => IdParts::Id(*i),
                    IdRef::Name(n) => IdParts::Name(n),
                };
                (&**kind, id)
            })
        }

        /// The order-preserving path bytes (as `Key::path_bytes`).
        pub fn write_path_bytes(&self, out: &mut Vec<u8>) {
            for (kind, id) in self.parts() {
                crate::model::key::encode_element(out, kind, id);
            }
        }

        /// The canonical encoding (as `fast::key`).
        fn write_cbor(&self, out: &mut Vec<u8>) {
            fast::key_parts(
                out,
                [&self.project, &self.database, &self.namespace],
                self.parts(),
            );
        }
    }

    /// A visitor that writes into `out`, and its `DeserializeSeed` impl.
    macro_rules! seed {
        ($name:ident, $value:ty, $method:ident) => {
            struct $name<'o> {
                out: &'o mut Vec<u8>,
            }

            impl<'de> serde::de::DeserializeSeed<'de> for $name<'_> {
                type Value = $value;
                fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<$value, D::Error> {
                    d.$method(self)
                }
            }
        };
    }

    thread_local! {
        static SCRATCH: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    fn take_buf() -> Vec<u8> {
        SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default()
    }

    fn give_buf(mut b: Vec<u8>) {
        b.clear();
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < 16 {
                s.push(b);
            }
        });
    }

    /// Transcode one entity; appends its canonical bytes to `out`.
    pub fn entity<'a>(
        text: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<Transcoded<'a>, serde_json::Error> {
        // Checked once here, strings need no check each as they are read.
        if let Ok(text) = std::str::from_utf8(text) {
            let mut de = serde_json::Deserializer::from_str(text);
            let key = EntitySeed { out }.deserialize(&mut de)?;
            de.end()?;
            return Ok(Transcoded { key });
        }
        // Not UTF-8: the slice reader says where.
        let mut de = serde_json::Deserializer::from_slice(text);
        let key = EntitySeed { out }.deserialize(&mut de)?;
        de.end()?;
        Ok(Transcoded { key })
    }

    struct EntitySeed<'o> {
        out: &'o mut Vec<u8>,
    }

    impl<'de> serde::de::DeserializeSeed<'de> for EntitySeed<'_> {
        type Value = KeyRef<'de>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyRef<'de>, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for EntitySeed<'_> {
        type Value = KeyRef<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an entity object with `key` and `properties`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyRef<'de>, A::Error> {
            let (key, props) = key_and_properties(&mut map)?;
            let Some(key) = key else {
                give_buf(props);
                return Err(de::Error::custom("entity has no `key`"));
            };
            write_entity(self.out, Some(&key), &props);
            give_buf(props);
            Ok(key)
        }
    }

    /// Read an entity object's `key` and `properties` (transcoded, sorted)
    /// in whatever order they come.
    fn key_and_properties<'de, A: MapAccess<'de>>(
        map: &mut A,
    ) -> Result<(Option<KeyRef<'de>>, Vec<u8>), A::Error> {
        let mut key = None;
        let mut props = take_buf();
        let (mut seen_key, mut seen_props) = (false, false);
        let result = (|| {
            while let Some(field) = map.next_key::<Cow<'de, str>>()? {
                match &*field {
                    // A repeated member would silently win over the first.
                    "key" if seen_key => return Err(de::Error::duplicate_field("key")),
                    "properties" if seen_props => {
                        return Err(de::Error::duplicate_field("properties"))
                    }
                    "key" => {
                        seen_key = true;
                        key = map.next_value::<Option<KeyRef<'de>>>()?
                    }
                    "properties" => {
                        seen_props = true;
                        props.clear();
                        if !map.next_value_seed(PropsSeed { out: &mut props })? {
                            props.clear();
                        }
                    }
                    other => return Err(de::Error::unknown_field(other, &["key", "properties"])),
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok((key, props)),
            Err(e) => {
                give_buf(props);
                Err(e)
            }
        }
    }

    /// `{"k": key, "p": properties}`; the key is left out when absent (an
    /// embedded entity), an absent properties map is an empty one.
    fn write_entity(out: &mut Vec<u8>, key: Option<&KeyRef<'_>>, props: &[u8]) {
        fast::head(out, 5, 1 + key.is_some() as u64);
        if let Some(k) = key {
            fast::text(out, "k");
            k.write_cbor(out);
        }
        fast::text(out, "p");
        if props.is_empty() {
            fast::head(out, 5, 0);
        } else {
            out.extend_from_slice(props);
        }
    }

    // Writes a properties map (sorted by name) into `out`; returns whether
    // it was present (`null` counts as absent).
    seed!(PropsSeed, bool, deserialize_option);

    impl<'de> Visitor<'de> for PropsSeed<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of property names to values")
        }
        fn visit_none<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut frags = take_buf();
            let mut entries: Vec<(Cow<'de, str>, usize, usize)> = Vec::new();
            let result = (|| {
                while let Some(name) = map.next_key::<Cow<'de, str>>()? {
                    let start = frags.len();
                    map.next_value_seed(ValueSeed { out: &mut frags })?;
                    entries.push((name, start, frags.len()));
                }
                Ok(())
            })();
            if let Err(e) = result {
                give_buf(frags);
                return Err(e);
            }
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
                give_buf(frags);
                return Err(de::Error::custom(format!(
                    "property `{}` appears twice",
                    w[0].0
                )));
            }
            fast::head(self.out, 5, entries.len() as u64);
            for (name, s, e) in &entries {
                fast::text(self.out, name);
                self.out.extend_from_slice(&frags[*s..*e]);
            }
            give_buf(frags);
            Ok(true)
        }
    }

    seed!(ValueSeed, (), deserialize_map);

    impl<'de> Visitor<'de> for ValueSeed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a Datastore value object such as {\"stringValue\": \"x\"}")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let out = self.out;
            let head_at = out.len();
            out.push(0xa1);
            fast::text(out, "v");
            let mut typed = false;
            let mut exclude = false;
            let mut meaning: Option<i32> = None;
            while let Some(field) = map.next_key::<Cow<'de, str>>()? {
                let is_type = !matches!(&*field, "excludeFromIndexes" | "meaning");
                if is_type && typed {
                    return Err(de::Error::custom(format!(
                        "a value has two types (second: `{field}`)"
                    )));
                }
                match &*field {
                    "nullValue" => {
                        map.next_value::<IgnoredAny>()?;
                        fast::text(out, "z");
                    }
                    "booleanValue" => {
                        let b: bool = map.next_value()?;
                        fast::tagged(out, "b");
                        out.push(if b { 0xf5 } else { 0xf4 });
                    }
                    "integerValue" => {
                        let i = map.next_value::<I64Str>()?.0;
                        fast::tagged(out, "i");
                        fast::int(out, i);
                    }
                    "doubleValue" => {
                        let d = canonical(map.next_value::<F64Json>()?.0);
                        fast::tagged(out, "d");
                        fast::float(out, d);
                    }
                    "timestampValue" => {
                        let s: Cow<'de, str> = map.next_value()?;
                        let t = parse_timestamp(&s).map_err(de::Error::custom)?;
                        fast::tagged(out, "t");
                        fast::int(out, t);
                    }
                    "keyValue" => {
                        let k = map.next_value::<KeyRef<'de>>()?;
                        fast::tagged(out, "k");
                        k.write_cbor(out);
                    }
                    "stringValue" => {
                        let s: Cow<'de, str> = map.next_value()?;
                        fast::tagged(out, "s");
                        fast::text(out, &s);
                    }
                    "blobValue" => {
                        let s: Cow<'de, str> = map.next_value()?;
                        let bytes = B64
                            .decode(s.as_bytes())
                            .or_else(|_| {
                                base64::engine::general_purpose::URL_SAFE.decode(s.as_bytes())
                            })
                            .map_err(|e| {
                                de::Error::custom(format!("blobValue is not base64: {e}"))
                            })?;
                        fast::tagged(out, "y");
                        fast::head(out, 2, bytes.len() as u64);
                        out.extend_from_slice(&bytes);
                    }
                    "geoPointValue" => {
                        let g: JsonGeo = map.next_value()?;
                        fast::tagged(out, "g");
                        fast::head(out, 5, 2);
                        fast::text(out, "a");
                        fast::float(out, canonical(g.latitude.map(|v| v.0).unwrap_or(0.0)));
                        fast::text(out, "o");
                        fast::float(out, canonical(g.longitude.map(|v| v.0).unwrap_or(0.0)));
                    }
                    "entityValue" => {
                        fast::tagged(out, "e");
                        map.next_value_seed(EmbeddedSeed { out: &mut *out })?;
                    }
                    "arrayValue" => {
                        fast::tagged(out, "a");
                        map.next_value_seed(ArraySeed { out: &mut *out })?;
                    }
                    "excludeFromIndexes" => exclude = map.next_value()?,
                    "meaning" => meaning = Some(map.next_value()?),
                    other => return Err(de::Error::unknown_field(other, VALUE_FIELDS)),
                }
                typed |= is_type;
            }
            if !typed {
                return Err(de::Error::custom(
                    "a value object has no type field such as `stringValue`",
                ));
            }
            if exclude {
                fast::text(out, "x");
                out.push(0xf5);
            }
            if let Some(m) = meaning {
                fast::text(out, "m");
                fast::int(out, m as i64);
            }
            out[head_at] = 0xa1 + exclude as u8 + meaning.is_some() as u8;
            Ok(())
        }
    }

    fn canonical(d: f64) -> f64 {
        if d.is_nan() {
            f64::NAN
        } else {
            d
        }
    }

    seed!(ArraySeed, (), deserialize_map);

    impl<'de> Visitor<'de> for ArraySeed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array value `{\"values\": [...]}`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut items = take_buf();
            let mut count = 0u64;
            let result = (|| {
                while let Some(field) = map.next_key::<Cow<'de, str>>()? {
                    match &*field {
                        "values" => {
                            items.clear();
                            count = map.next_value_seed(ValuesSeed { out: &mut items })?;
                        }
                        other => return Err(de::Error::unknown_field(other, &["values"])),
                    }
                }
                Ok(())
            })();
            if let Err(e) = result {
                give_buf(items);
                return Err(e);
            }
            fast::head(self.out, 4, count);
            self.out.extend_from_slice(&items);
            give_buf(items);
            Ok(())
        }
    }

    // The `values` list (or null): writes the elements, returns how many.
    seed!(ValuesSeed, u64, deserialize_option);

    impl<'de> Visitor<'de> for ValuesSeed<'_> {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of values")
        }
        fn visit_none<E: de::Error>(self) -> Result<u64, E> {
            Ok(0)
        }
        fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
            Ok(0)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
            let mut n = 0;
            while seq
                .next_element_seed(ValueSeed {
                    out: &mut *self.out,
                })?
                .is_some()
            {
                n += 1;
            }
            Ok(n)
        }
    }

    seed!(EmbeddedSeed, (), deserialize_map);

    impl<'de> Visitor<'de> for EmbeddedSeed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an embedded entity object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let (key, props) = key_and_properties(&mut map)?;
            write_entity(self.out, key.as_ref(), &props);
            give_buf(props);
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::model::codec;
        use proptest::prelude::*;

        /// Transcode, decode, encode again: the round trip through the model.
        fn via_model(text: &str) -> Result<Vec<u8>, String> {
            let mut e = entity_from_json(text).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            codec::encode(&mut e, &mut out);
            Ok(out)
        }

        fn via_transcoder(text: &str) -> Result<Vec<u8>, String> {
            let mut out = Vec::new();
            entity(text.as_bytes(), &mut out).map_err(|e| e.to_string())?;
            Ok(out)
        }

        proptest! {
            #[test]
            fn transcoder_writes_the_canonical_bytes(mut e in codec::tests::arb_entity()) {
                let text = entity_to_json(&e);
                let mut want = Vec::new();
                codec::encode(&mut e, &mut want);
                prop_assert_eq!(via_transcoder(&text), Ok(want));
                // And the key it hands back reads as the model's key.
                let mut out = Vec::new();
                let t = entity(text.as_bytes(), &mut out).unwrap();
                let mut path = Vec::new();
                t.key.write_path_bytes(&mut path);
                prop_assert_eq!(path, e.key.path_bytes());
                prop_assert_eq!(&*t.key.namespace, e.key.partition.namespace.as_str());
                prop_assert_eq!(t.key.kind(), e.key.kind());
                prop_assert_eq!(t.key.is_complete(), e.key.is_complete());
            }
        }

        #[test]
        fn same_bytes_and_same_refusals_on_edge_cases() {
            for text in [
                r#"{"properties":{"b":{"nullValue":null}},"key":{"path":[{"kind":"A","id":"1"}]}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":null}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"a":{"meaning":3,"excludeFromIndexes":true,"arrayValue":{"values":null}}}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"a":{"entityValue":{"properties":{"z":{"integerValue":5},"y":{"doubleValue":"NaN"}}}}}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"a\u0000b":{"stringValue":"x\ny"}}}"#,
            ] {
                assert_eq!(via_transcoder(text), via_model(text), "{text}");
            }
            for bad in [
                r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"x":{"stringValue":"a","integerValue":"1"}}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"x":{"strngValue":"a"}}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"x"}]}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]},"extra":1}"#,
                r#"{"properties":{}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"x":{"meaning":1}}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"x":{"nullValue":null},"x":{"nullValue":null}}}"#,
                r#"{"key":{"path":[{"kind":"A","id":"1"}]}} trailing"#,
            ] {
                assert!(via_transcoder(bad).is_err(), "{bad}");
                assert!(via_model(bad).is_err(), "{bad}");
            }
        }
    }
}
