//! The canonical encoding of an entity (deterministic CBOR through
//! ciborium) and the entity hash (blake3 of that encoding).
//!
//! Determinism comes from the model, not from a CBOR canonicaliser:
//! properties live in a `BTreeMap` (UTF-8 byte order of names), structs
//! serialise their fields in declaration order, optional fields are
//! omitted when empty, integers and floats take ciborium's shortest
//! lossless form, and every NaN is made the same NaN before encoding. So
//! equal entities always encode to equal bytes, whatever order their
//! properties arrived in. This module must never change the bytes it
//! produces for a given entity without a repository format bump.

use super::value::Entity;
use crate::ids::EntityHash;

/// Encode an entity canonically. Canonicalises doubles in place first.
pub fn encode(entity: &mut Entity, out: &mut Vec<u8>) {
    out.clear();
    encode_into(entity, out);
}

/// Encode an entity canonically, appending to `out`.
///
/// This is a direct writer of exactly the bytes ciborium produces for the
/// model's serde representation (a property test holds the two together),
/// several times faster than going through serde.
pub fn encode_into(entity: &mut Entity, out: &mut Vec<u8>) {
    entity.canonicalize();
    fast::entity(entity, out);
}

/// The hand-written encoder. Field names and variant tags are the serde
/// names in `key.rs` and `value.rs`; maps have definite lengths that count
/// only the fields serde would write.
pub(crate) mod fast {
    use super::super::key::{IdParts, Key};
    use super::super::value::{EmbeddedEntity, Entity, Properties, Value, ValueKind};

    pub(crate) fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            out.push(m | n as u8);
        } else if n <= u8::MAX as u64 {
            out.extend_from_slice(&[m | 24, n as u8]);
        } else if n <= u16::MAX as u64 {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= u32::MAX as u64 {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }

    pub(crate) fn text(out: &mut Vec<u8>, s: &str) {
        head(out, 3, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn int(out: &mut Vec<u8>, v: i64) {
        if v >= 0 {
            head(out, 0, v as u64);
        } else {
            head(out, 1, !(v as u64));
        }
    }

    pub(crate) fn float(out: &mut Vec<u8>, v: f64) {
        // Rare enough to leave the shortest-lossless-float rules to ciborium.
        let _ = ciborium::ser::into_writer(&v, &mut *out);
    }

    pub(crate) fn tagged(out: &mut Vec<u8>, tag: &str) {
        head(out, 5, 1);
        text(out, tag);
    }

    /// A key from its parts: the model's [`Key`] and the transcoder's
    /// borrowed keys both write through here.
    pub(crate) fn key_parts<'a>(
        out: &mut Vec<u8>,
        partition: [&str; 3],
        path: impl ExactSizeIterator<Item = (&'a str, IdParts<'a>)>,
    ) {
        head(out, 5, 2);
        text(out, "t");
        head(
            out,
            5,
            partition.iter().filter(|s| !s.is_empty()).count() as u64,
        );
        for (name, v) in ["p", "d", "n"].into_iter().zip(partition) {
            if !v.is_empty() {
                text(out, name);
                text(out, v);
            }
        }
        text(out, "e");
        head(out, 4, path.len() as u64);
        for (kind, id) in path {
            head(out, 5, 2);
            text(out, "k");
            text(out, kind);
            text(out, "i");
            match id {
                IdParts::Incomplete => text(out, "x"),
                IdParts::Id(i) => {
                    tagged(out, "i");
                    int(out, i);
                }
                IdParts::Name(n) => {
                    tagged(out, "s");
                    text(out, n);
                }
            }
        }
    }

    pub(crate) fn key(out: &mut Vec<u8>, k: &Key) {
        let p = &k.partition;
        key_parts(
            out,
            [&p.project, &p.database, &p.namespace],
            k.path
                .iter()
                .map(|e| (e.kind.as_str(), IdParts::from(&e.id))),
        );
    }

    fn properties(out: &mut Vec<u8>, p: &Properties) {
        head(out, 5, p.len() as u64);
        for (name, v) in p {
            text(out, name);
            value(out, v);
        }
    }

    fn embedded(out: &mut Vec<u8>, e: &EmbeddedEntity) {
        head(out, 5, 1 + e.key.is_some() as u64);
        if let Some(k) = &e.key {
            text(out, "k");
            key(out, k);
        }
        text(out, "p");
        properties(out, &e.properties);
    }

    fn value(out: &mut Vec<u8>, v: &Value) {
        head(
            out,
            5,
            1 + v.exclude_from_indexes as u64 + v.meaning.is_some() as u64,
        );
        text(out, "v");
        match &v.kind {
            ValueKind::Null => text(out, "z"),
            ValueKind::Boolean(b) => {
                tagged(out, "b");
                out.push(if *b { 0xf5 } else { 0xf4 });
            }
            ValueKind::Integer(i) => {
                tagged(out, "i");
                int(out, *i);
            }
            ValueKind::Double(d) => {
                tagged(out, "d");
                float(out, *d);
            }
            ValueKind::Timestamp(t) => {
                tagged(out, "t");
                int(out, *t);
            }
            ValueKind::String(s) => {
                tagged(out, "s");
                text(out, s);
            }
            ValueKind::Blob(b) => {
                tagged(out, "y");
                head(out, 2, b.len() as u64);
                out.extend_from_slice(b);
            }
            ValueKind::Key(k) => {
                tagged(out, "k");
                key(out, k);
            }
            ValueKind::GeoPoint(g) => {
                tagged(out, "g");
                head(out, 5, 2);
                text(out, "a");
                float(out, g.latitude);
                text(out, "o");
                float(out, g.longitude);
            }
            ValueKind::Array(vs) => {
                tagged(out, "a");
                head(out, 4, vs.len() as u64);
                for v in vs {
                    value(out, v);
                }
            }
            ValueKind::Entity(e) => {
                tagged(out, "e");
                embedded(out, e);
            }
        }
        if v.exclude_from_indexes {
            text(out, "x");
            out.push(0xf5);
        }
        if let Some(m) = v.meaning {
            text(out, "m");
            int(out, m as i64);
        }
    }

    pub(super) fn entity(e: &Entity, out: &mut Vec<u8>) {
        head(out, 5, 2);
        text(out, "k");
        key(out, &e.key);
        text(out, "p");
        properties(out, &e.properties);
    }
}

/// Decode a canonical encoding.
pub fn decode(bytes: &[u8]) -> Result<Entity, String> {
    ciborium::de::from_reader(bytes).map_err(|e| e.to_string())
}

/// The identity of an encoded entity.
pub fn hash(encoded: &[u8]) -> EntityHash {
    EntityHash::from(*blake3::hash(encoded).as_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::key::{ElementId, Key, PartitionId, PathElement};
    use crate::model::value::*;
    use proptest::prelude::*;

    fn arb_key() -> impl Strategy<Value = Key> {
        let el = (
            "[A-Za-z]{1,5}",
            prop_oneof![
                any::<i64>().prop_map(ElementId::Id),
                "\\PC{1,5}".prop_map(ElementId::Name)
            ],
        )
            .prop_map(|(kind, id)| PathElement { kind, id });
        (prop::collection::vec(el, 1..3), "[a-z]{0,3}", "[a-z]{0,3}").prop_map(
            |(path, project, namespace)| Key {
                partition: PartitionId {
                    project,
                    database: String::new(),
                    namespace,
                },
                path,
            },
        )
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(ValueKind::Null),
            any::<bool>().prop_map(ValueKind::Boolean),
            any::<i64>().prop_map(ValueKind::Integer),
            any::<f64>().prop_map(ValueKind::Double),
            (-62_135_596_800_000_000_i64..253_402_300_799_999_999).prop_map(ValueKind::Timestamp),
            "\\PC{0,20}".prop_map(ValueKind::String),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(ValueKind::Blob),
            arb_key().prop_map(ValueKind::Key),
            (-90.0f64..90.0, -180.0f64..180.0).prop_map(|(latitude, longitude)| {
                ValueKind::GeoPoint(GeoPoint {
                    latitude,
                    longitude,
                })
            }),
        ];
        let value =
            (leaf, any::<bool>(), prop::option::of(0i32..30)).prop_map(|(kind, x, meaning)| {
                Value {
                    kind,
                    exclude_from_indexes: x,
                    meaning,
                }
            });
        value.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|vs| Value::new(ValueKind::Array(vs))),
                (
                    prop::option::of(arb_key()),
                    prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                )
                    .prop_map(|(key, properties)| Value::new(ValueKind::Entity(
                        EmbeddedEntity { key, properties }
                    ))),
            ]
        })
    }

    pub(crate) fn arb_entity() -> impl Strategy<Value = Entity> {
        (
            arb_key(),
            prop::collection::btree_map("\\PC{1,8}", arb_value(), 0..6),
        )
            .prop_map(|(key, properties)| Entity { key, properties })
    }

    /// NaN != NaN, so compare through the canonical bytes.
    fn same(a: &Entity, b: &Entity) -> bool {
        let (mut a, mut b) = (a.clone(), b.clone());
        let (mut x, mut y) = (Vec::new(), Vec::new());
        encode(&mut a, &mut x);
        encode(&mut b, &mut y);
        x == y
    }

    proptest! {
        #[test]
        fn fast_encoder_writes_what_ciborium_writes(mut e in arb_entity()) {
            e.canonicalize();
            let mut via_serde = Vec::new();
            ciborium::ser::into_writer(&e, &mut via_serde).unwrap();
            let mut fast = Vec::new();
            encode_into(&mut e, &mut fast);
            prop_assert_eq!(via_serde, fast);
        }

        #[test]
        fn decode_inverts_encode(mut e in arb_entity()) {
            let mut buf = Vec::new();
            encode(&mut e, &mut buf);
            let back = decode(&buf).unwrap();
            prop_assert!(same(&back, &e));
            let mut again = Vec::new();
            let mut back = back;
            encode(&mut back, &mut again);
            prop_assert_eq!(buf, again);
        }

        #[test]
        fn property_order_does_not_change_the_hash(e in arb_entity()) {
            // Rebuild the map inserting in reverse order.
            let mut reversed = Entity { key: e.key.clone(), properties: Properties::new() };
            for (k, v) in e.properties.iter().rev() {
                reversed.properties.insert(k.clone(), v.clone());
            }
            let (mut a, mut b) = (e.clone(), reversed);
            let (mut x, mut y) = (Vec::new(), Vec::new());
            encode(&mut a, &mut x);
            encode(&mut b, &mut y);
            prop_assert_eq!(hash(&x), hash(&y));
        }
    }

    #[test]
    fn nan_payloads_hash_equal() {
        let key = Key {
            partition: PartitionId::default(),
            path: vec![PathElement::id("A", 1)],
        };
        let mk = |d: f64| {
            let mut p = Properties::new();
            p.insert("d".into(), Value::new(ValueKind::Double(d)));
            Entity {
                key: key.clone(),
                properties: p,
            }
        };
        let (mut a, mut b) = (mk(f64::NAN), mk(f64::from_bits(0x7ff8_0000_0000_0001)));
        let (mut x, mut y) = (Vec::new(), Vec::new());
        encode(&mut a, &mut x);
        encode(&mut b, &mut y);
        assert_eq!(x, y);
    }
}
