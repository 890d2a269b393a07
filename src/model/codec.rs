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
    entity.canonicalize();
    out.clear();
    // Writing into a Vec cannot fail, and the model has no type serde
    // cannot express, so an error here is a bug worth a loud panic.
    #[allow(clippy::expect_used)]
    ciborium::ser::into_writer(&*entity, &mut *out).expect("encoding an entity into memory");
}

/// Encode an entity canonically, appending to `out`.
pub fn encode_into(entity: &mut Entity, out: &mut Vec<u8>) {
    entity.canonicalize();
    #[allow(clippy::expect_used)]
    ciborium::ser::into_writer(&*entity, &mut *out).expect("encoding an entity into memory");
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
