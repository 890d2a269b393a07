//! App Engine's `EntityProto` (the legacy "v3" entity of an export record)
//! to kindsnap's model and back, exactly as the Cloud Datastore v1 API shows
//! the same data: the rules are those of Google's own v1 ⇄ v3 converter
//! (App Engine's `datastore_pbs`), which is also what the dev server runs,
//! so an entity read from an export and the same entity read over the v1
//! API hash the same. docs/format-gcloud-export.md lists every rule.

use super::proto::{self, Field, Fields, WireResult};
use crate::model::{
    ElementId, EmbeddedEntity, Entity, GeoPoint, Key, PartitionId, PathElement, Properties, Value,
    ValueKind,
};

/// The `Property.meaning` values the mapping looks at (entity.proto).
pub mod meaning {
    pub const NONE: i32 = 0;
    pub const BLOB: i32 = 14;
    pub const TEXT: i32 = 15;
    pub const BYTESTRING: i32 = 16;
    pub const GD_WHEN: i32 = 7;
    pub const GD_RATING: i32 = 13;
    pub const GEORSS_POINT: i32 = 9;
    pub const INDEX_VALUE: i32 = 18;
    pub const ENTITY_PROTO: i32 = 19;
    pub const EMPTY_LIST: i32 = 24;
    /// v1-only meanings: a user value as an entity, a zlib-compressed blob,
    /// a geo point that had no GEORSS_POINT meaning.
    pub const USER: i32 = 20;
    pub const ZLIB: i32 = 22;
    pub const POINT_WITHOUT_MEANING: i32 = 23;
}

const ZLIB_URI: &[u8] = b"ZLIB";
/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in microseconds.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;
/// Embedded entities deeper than this are refused (Datastore allows 20).
const MAX_DEPTH: u32 = 40;

/// The project id of an App Engine app id: the partition prefix (`s~`,
/// `e~`, `dev~` …) goes, a domain (`example.com:proj`) stays.
pub fn project_of(app: &str) -> &str {
    app.rsplit('~').next().unwrap_or(app)
}

/// The app id written for a project: `s~` (the US partition) + project.
pub fn app_of(project: &str) -> String {
    format!("s~{project}")
}

/// Decode one export record: an `EntityProto` with a complete key.
pub fn decode_entity(record: &[u8]) -> WireResult<Entity> {
    let (key, properties) = entity_proto(record, 0)?;
    let key = key.ok_or_else(|| "the entity has no key (no app id)".to_string())?;
    if !key.is_complete() {
        return Err(format!("the key {key} is incomplete"));
    }
    Ok(Entity { key, properties })
}

/// A property as it is on the wire.
struct RawProperty<'a> {
    meaning: i32,
    uri: Option<&'a [u8]>,
    name: &'a str,
    multiple: bool,
    value: RawValue<'a>,
}

#[derive(Default)]
struct RawValue<'a> {
    int: Option<i64>,
    boolean: Option<bool>,
    string: Option<&'a [u8]>,
    double: Option<f64>,
    point: Option<&'a [u8]>,
    user: Option<&'a [u8]>,
    reference: Option<&'a [u8]>,
}

impl RawValue<'_> {
    fn set_fields(&self) -> usize {
        [
            self.int.is_some(),
            self.boolean.is_some(),
            self.string.is_some(),
            self.double.is_some(),
            self.point.is_some(),
            self.user.is_some(),
            self.reference.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

fn entity_proto(buf: &[u8], depth: u32) -> WireResult<(Option<Key>, Properties)> {
    if depth > MAX_DEPTH {
        return Err("embedded entities nested too deeply".into());
    }
    let mut key = None;
    let mut props = Properties::new();
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            13 => key = reference(v.bytes()?)?,
            14 | 15 => {
                let raw = raw_property(v.bytes()?)?;
                add_property(&mut props, raw, n == 14, depth)?;
            }
            _ => {}
        }
    }
    Ok((key, props))
}

/// A `Reference` message (fields 13 app, 20 name_space, 14 path,
/// 23 database_id); `None` without an app id, as the v1 converter does.
fn reference(buf: &[u8]) -> WireResult<Option<Key>> {
    let (mut app, mut ns, mut db) = ("", "", "");
    let mut path = Vec::new();
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            13 => app = v.str()?,
            20 => ns = v.str()?,
            23 => db = v.str()?,
            14 => {
                let mut p = Fields::new(v.bytes()?);
                while let Some((n, v)) = p.next_field()? {
                    if n == 1 {
                        path.push(path_element(v.bytes()?, (2, 3, 4))?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(key_of(app, ns, db, path))
}

fn key_of(app: &str, ns: &str, db: &str, path: Vec<PathElement>) -> Option<Key> {
    (!app.is_empty()).then(|| {
        Key::new(
            PartitionId {
                project: project_of(app).to_string(),
                database: db.to_string(),
                namespace: ns.to_string(),
            },
            path,
        )
    })
}

/// A path element group: `fields` are the numbers of type, id and name
/// (2, 3, 4 in a `Path`; 15, 16, 17 in a `ReferenceValue`).
fn path_element(buf: &[u8], fields: (u32, u32, u32)) -> WireResult<PathElement> {
    let (mut kind, mut id, mut name) = ("", None, None);
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        if n == fields.0 {
            kind = v.str()?;
        } else if n == fields.1 {
            id = Some(v.varint()? as i64);
        } else if n == fields.2 {
            name = Some(v.str()?);
        }
    }
    let id = match (name, id) {
        (Some(name), _) => ElementId::Name(name.to_string()),
        (None, Some(id)) => ElementId::Id(id),
        (None, None) => ElementId::Incomplete,
    };
    Ok(PathElement {
        kind: kind.to_string(),
        id,
    })
}

fn reference_value(buf: &[u8]) -> WireResult<Key> {
    let (mut app, mut ns, mut db) = ("", "", "");
    let mut path = Vec::new();
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            13 => app = v.str()?,
            20 => ns = v.str()?,
            23 => db = v.str()?,
            14 => path.push(path_element(v.bytes()?, (15, 16, 17))?),
            _ => {}
        }
    }
    // A reference value always names an app; an empty one gives an empty
    // project, as the v1 converter's key would.
    Ok(key_of(app, ns, db, path.clone()).unwrap_or_else(|| Key::new(PartitionId::default(), path)))
}

fn raw_property(buf: &[u8]) -> WireResult<RawProperty<'_>> {
    let mut p = RawProperty {
        meaning: meaning::NONE,
        uri: None,
        name: "",
        multiple: false,
        value: RawValue::default(),
    };
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => p.meaning = v.varint()? as i32,
            2 => p.uri = Some(v.bytes()?),
            3 => p.name = v.str()?,
            4 => p.multiple = v.varint()? != 0,
            5 => p.value = raw_value(v.bytes()?)?,
            _ => {}
        }
    }
    Ok(p)
}

fn raw_value(buf: &[u8]) -> WireResult<RawValue<'_>> {
    let mut r = RawValue::default();
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => r.int = Some(v.varint()? as i64),
            2 => r.boolean = Some(v.varint()? != 0),
            3 => r.string = Some(v.bytes()?),
            4 => r.double = Some(v.double()?),
            5 => r.point = Some(v.bytes()?),
            8 => r.user = Some(v.bytes()?),
            12 => r.reference = Some(v.bytes()?),
            _ => {}
        }
    }
    Ok(r)
}

/// Whether a v3 meaning fits the value it is on (`datastore_pbs`' table);
/// one that does not is dropped.
fn meaning_fits(m: i32, v: &RawValue) -> bool {
    match m {
        meaning::NONE | meaning::INDEX_VALUE | meaning::EMPTY_LIST => true,
        1..=6 | 8 | 10..=12 | 14..=17 | meaning::ENTITY_PROTO => v.string.is_some(),
        meaning::GD_WHEN | meaning::GD_RATING => v.int.is_some(),
        meaning::GEORSS_POINT => v.point.is_some(),
        _ => false,
    }
}

/// Add one wire property to the entity, the way the v1 converter does: a
/// `multiple` property appends to an array, any other replaces.
fn add_property(
    props: &mut Properties,
    raw: RawProperty,
    indexed: bool,
    depth: u32,
) -> WireResult<()> {
    let value = to_value(&raw, indexed, depth)?;
    if !raw.multiple {
        props.insert(raw.name.to_string(), value);
        return Ok(());
    }
    let slot = props
        .entry(raw.name.to_string())
        .or_insert_with(|| Value::new(ValueKind::Array(Vec::new())));
    match &mut slot.kind {
        ValueKind::Array(values) => values.push(value),
        other => *other = ValueKind::Array(vec![value]),
    }
    Ok(())
}

fn to_value(raw: &RawProperty, indexed: bool, depth: u32) -> WireResult<Value> {
    let v = &raw.value;
    let mut m = Some(raw.meaning);
    let mut uri = raw.uri;
    if v.set_fields() > 1 {
        (m, uri) = (None, None);
    } else if raw.meaning == meaning::NONE || !meaning_fits(raw.meaning, v) {
        m = None;
    }
    let zlib = uri == Some(ZLIB_URI) && v.string.is_some();
    if zlib {
        m = Some(meaning::BLOB);
    }
    let mut forced = None;
    let kind = if raw.meaning == meaning::EMPTY_LIST {
        m = None;
        ValueKind::Array(Vec::new())
    } else if let Some(b) = v.boolean {
        ValueKind::Boolean(b)
    } else if let Some(i) = v.int {
        if m == Some(meaning::GD_WHEN) && (MIN_MICROS..=MAX_MICROS).contains(&i) {
            m = None;
            ValueKind::Timestamp(i)
        } else {
            ValueKind::Integer(i)
        }
    } else if let Some(d) = v.double {
        ValueKind::Double(d)
    } else if let Some(r) = v.reference {
        ValueKind::Key(reference_value(r)?)
    } else if let Some(s) = v.string {
        string_value(s, &mut m, indexed, depth)?
    } else if let Some(p) = v.point {
        if m != Some(meaning::GEORSS_POINT) {
            forced = Some(meaning::POINT_WITHOUT_MEANING);
        }
        m = None;
        ValueKind::GeoPoint(point(p)?)
    } else if let Some(u) = v.user {
        forced = Some(meaning::USER);
        m = None;
        ValueKind::Entity(user(u)?)
    } else {
        ValueKind::Null
    };
    let meaning = if zlib {
        Some(meaning::ZLIB)
    } else {
        m.or(forced)
    };
    Ok(Value {
        kind,
        exclude_from_indexes: !indexed,
        meaning,
    })
}

/// A `stringValue`: an embedded entity (ENTITY_PROTO), a blob (BLOB,
/// BYTESTRING, or bytes that are not UTF-8) or a string.
fn string_value(s: &[u8], m: &mut Option<i32>, indexed: bool, depth: u32) -> WireResult<ValueKind> {
    Ok(match *m {
        Some(meaning::ENTITY_PROTO) => {
            *m = None;
            let (key, properties) = entity_proto(s, depth + 1)?;
            ValueKind::Entity(EmbeddedEntity { key, properties })
        }
        Some(meaning::BLOB) | Some(meaning::BYTESTRING) => {
            if indexed || *m == Some(meaning::BLOB) {
                *m = None;
            }
            ValueKind::Blob(s.to_vec())
        }
        _ => match std::str::from_utf8(s) {
            Ok(text) => ValueKind::String(text.to_string()),
            Err(_) => {
                if *m != Some(meaning::INDEX_VALUE) {
                    *m = None;
                }
                ValueKind::Blob(s.to_vec())
            }
        },
    })
}

fn point(buf: &[u8]) -> WireResult<GeoPoint> {
    let (mut x, mut y) = (0.0, 0.0);
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            6 => x = v.double()?,
            7 => y = v.double()?,
            _ => {}
        }
    }
    Ok(GeoPoint {
        latitude: x,
        longitude: y,
    })
}

/// A `UserValue` group as the v1 API shows it: an entity of unindexed
/// `email`, `auth_domain`, `internal_id` (the gaia id, when not 0),
/// `user_id`, `federated_identity`, `federated_provider`.
fn user(buf: &[u8]) -> WireResult<EmbeddedEntity> {
    let mut props = Properties::new();
    let unindexed = |kind| Value {
        kind,
        exclude_from_indexes: true,
        meaning: None,
    };
    let text = |v: Field| -> WireResult<ValueKind> {
        Ok(ValueKind::String(
            String::from_utf8_lossy(v.bytes()?).into_owned(),
        ))
    };
    let mut f = Fields::new(buf);
    props.insert("email".into(), unindexed(ValueKind::String(String::new())));
    props.insert(
        "auth_domain".into(),
        unindexed(ValueKind::String(String::new())),
    );
    while let Some((n, v)) = f.next_field()? {
        let (name, kind) = match n {
            9 => ("email", text(v)?),
            10 => ("auth_domain", text(v)?),
            18 => match v.varint()? as i64 {
                0 => continue,
                id => ("internal_id", ValueKind::Integer(id)),
            },
            19 => ("user_id", text(v)?),
            21 => ("federated_identity", text(v)?),
            22 => ("federated_provider", text(v)?),
            _ => continue,
        };
        props.insert(name.into(), unindexed(kind));
    }
    Ok(EmbeddedEntity {
        key: None,
        properties: props,
    })
}

// ---------------------------------------------------------------- writing

/// Encode an entity as an export record, the way Google's v1 → v3
/// converter does. Fails on what v3 cannot hold (a user value without an
/// email).
pub fn encode_entity(e: &Entity, out: &mut Vec<u8>) -> Result<(), String> {
    encode_entity_proto(Some(&e.key), &e.properties, out)
}

fn encode_entity_proto(
    key: Option<&Key>,
    props: &Properties,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let key = key.filter(|k| !k.partition.project.is_empty());
    if let Some(k) = key {
        proto::put_message(out, 13, |r| encode_reference(k, r));
    }
    let mut raw = Vec::new();
    for (name, value) in props {
        match &value.kind {
            ValueKind::Array(values) if values.is_empty() => {
                let target = if value.exclude_from_indexes {
                    &mut raw
                } else {
                    &mut *out
                };
                let field = if value.exclude_from_indexes { 15 } else { 14 };
                let mut p = Vec::new();
                proto::put_uint(&mut p, 1, meaning::EMPTY_LIST as u64);
                proto::put_bytes(&mut p, 3, name.as_bytes());
                proto::put_uint(&mut p, 4, 0);
                proto::put_bytes(&mut p, 5, &[]);
                proto::put_bytes(target, field, &p);
            }
            ValueKind::Array(values) => {
                for v in values {
                    encode_property(name, true, v, out, &mut raw)?;
                }
            }
            _ => encode_property(name, false, value, out, &mut raw)?,
        }
    }
    out.extend_from_slice(&raw);
    if let Some(k) = key {
        proto::put_message(out, 16, |g| {
            if let Some(root) = k.path.first() {
                proto::put_group(g, 1, |e| put_element(e, root, (2, 3, 4)));
            }
        });
    }
    Ok(())
}

fn encode_reference(k: &Key, out: &mut Vec<u8>) {
    proto::put_bytes(out, 13, app_of(&k.partition.project).as_bytes());
    proto::put_message(out, 14, |p| {
        for e in &k.path {
            proto::put_group(p, 1, |g| put_element(g, e, (2, 3, 4)));
        }
    });
    if !k.partition.namespace.is_empty() {
        proto::put_bytes(out, 20, k.partition.namespace.as_bytes());
    }
    if !k.partition.database.is_empty() {
        proto::put_bytes(out, 23, k.partition.database.as_bytes());
    }
}

fn put_element(out: &mut Vec<u8>, e: &PathElement, (kind, id, name): (u32, u32, u32)) {
    proto::put_bytes(out, kind, e.kind.as_bytes());
    match &e.id {
        ElementId::Incomplete => {}
        ElementId::Id(i) => proto::put_int(out, id, *i),
        ElementId::Name(n) => proto::put_bytes(out, name, n.as_bytes()),
    }
}

/// One v3 property for a value (an element of an array when `multiple`);
/// indexed ones go to `out` (field 14), the others to `raw` (field 15).
fn encode_property(
    name: &str,
    multiple: bool,
    v: &Value,
    out: &mut Vec<u8>,
    raw: &mut Vec<u8>,
) -> Result<(), String> {
    let mut m = v.meaning;
    let mut v3_meaning = None;
    let mut uri = None;
    match &v.kind {
        ValueKind::Timestamp(_) => v3_meaning = Some(meaning::GD_WHEN),
        ValueKind::Blob(_) => {
            if m == Some(meaning::ZLIB) {
                uri = Some(ZLIB_URI);
            }
            if m != Some(meaning::BYTESTRING) {
                v3_meaning = Some(if v.exclude_from_indexes {
                    meaning::BLOB
                } else {
                    meaning::BYTESTRING
                });
                m = None;
            }
        }
        ValueKind::Entity(_) => {
            if m != Some(meaning::USER) {
                v3_meaning = Some(meaning::ENTITY_PROTO);
            }
            m = None;
        }
        ValueKind::GeoPoint(_) => {
            if m != Some(meaning::POINT_WITHOUT_MEANING) {
                v3_meaning = Some(meaning::GEORSS_POINT);
            }
            m = None;
        }
        ValueKind::Integer(_) if m == Some(meaning::GD_WHEN) => {
            v3_meaning = Some(meaning::GD_WHEN);
            m = None;
        }
        _ => {}
    }
    let meaning = m.or(v3_meaning);
    let mut value = Vec::new();
    encode_value(v, &mut value)?;
    let mut p = Vec::new();
    if let Some(mn) = meaning {
        proto::put_uint(&mut p, 1, mn as u64);
    }
    if let Some(u) = uri {
        proto::put_bytes(&mut p, 2, u);
    }
    proto::put_bytes(&mut p, 3, name.as_bytes());
    proto::put_uint(&mut p, 4, u64::from(multiple));
    proto::put_bytes(&mut p, 5, &value);
    if v.exclude_from_indexes {
        proto::put_bytes(raw, 15, &p);
    } else {
        proto::put_bytes(out, 14, &p);
    }
    Ok(())
}

fn encode_value(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match &v.kind {
        ValueKind::Null | ValueKind::Array(_) => {}
        ValueKind::Boolean(b) => proto::put_uint(out, 2, u64::from(*b)),
        ValueKind::Integer(i) | ValueKind::Timestamp(i) => proto::put_int(out, 1, *i),
        ValueKind::Double(d) => proto::put_double(out, 4, *d),
        ValueKind::String(s) => proto::put_bytes(out, 3, s.as_bytes()),
        ValueKind::Blob(b) => proto::put_bytes(out, 3, b),
        ValueKind::GeoPoint(g) => proto::put_group(out, 5, |p| {
            proto::put_double(p, 6, g.latitude);
            proto::put_double(p, 7, g.longitude);
        }),
        ValueKind::Key(k) => proto::put_group(out, 12, |r| {
            if !k.partition.project.is_empty() {
                proto::put_bytes(r, 13, app_of(&k.partition.project).as_bytes());
            }
            for e in &k.path {
                proto::put_group(r, 14, |g| put_element(g, e, (15, 16, 17)));
            }
            if !k.partition.namespace.is_empty() {
                proto::put_bytes(r, 20, k.partition.namespace.as_bytes());
            }
            if !k.partition.database.is_empty() {
                proto::put_bytes(r, 23, k.partition.database.as_bytes());
            }
        }),
        ValueKind::Entity(e) if v.meaning == Some(meaning::USER) => encode_user(e, out)?,
        ValueKind::Entity(e) => {
            let mut inner = Vec::new();
            encode_entity_proto(e.key.as_ref(), &e.properties, &mut inner)?;
            proto::put_bytes(out, 3, &inner);
        }
    }
    Ok(())
}

fn encode_user(e: &EmbeddedEntity, out: &mut Vec<u8>) -> Result<(), String> {
    let text = |name: &str| match e.properties.get(name).map(|v| &v.kind) {
        Some(ValueKind::String(s)) => Ok(Some(s.as_str())),
        None => Ok(None),
        Some(_) => Err(format!("the user value's `{name}` is not a string")),
    };
    let email = text("email")?.ok_or("a user value (meaning 20) needs an `email` string")?;
    let domain =
        text("auth_domain")?.ok_or("a user value (meaning 20) needs an `auth_domain` string")?;
    let gaia = match e.properties.get("internal_id").map(|v| &v.kind) {
        Some(ValueKind::Integer(i)) => *i,
        None => 0,
        Some(_) => return Err("the user value's `internal_id` is not an integer".into()),
    };
    let (uid, fid, fprov) = (
        text("user_id")?,
        text("federated_identity")?,
        text("federated_provider")?,
    );
    proto::put_group(out, 8, |u| {
        proto::put_bytes(u, 9, email.as_bytes());
        proto::put_bytes(u, 10, domain.as_bytes());
        proto::put_int(u, 18, gaia);
        for (n, s) in [(19, uid), (21, fid), (22, fprov)] {
            if let Some(s) = s {
                proto::put_bytes(u, n, s.as_bytes());
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::codec;
    use proptest::prelude::*;

    fn arb_key() -> impl Strategy<Value = Key> {
        let el = (
            "[A-Za-z]{1,5}",
            prop_oneof![
                (1i64..).prop_map(ElementId::Id),
                "\\PC{1,5}".prop_map(ElementId::Name)
            ],
        )
            .prop_map(|(kind, id)| PathElement { kind, id });
        (
            prop::collection::vec(el, 1..3),
            prop_oneof![
                Just("proj".to_string()),
                Just("example.com:proj".to_string())
            ],
            "[a-z]{0,3}",
        )
            .prop_map(|(path, project, namespace)| {
                Key::new(
                    PartitionId {
                        project,
                        database: String::new(),
                        namespace,
                    },
                    path,
                )
            })
    }

    /// Values as the v1 API can hold them and v3 can carry back: the
    /// meanings Google's converter keeps.
    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just((ValueKind::Null, None)),
            any::<bool>().prop_map(|b| (ValueKind::Boolean(b), None)),
            any::<i64>().prop_map(|i| (ValueKind::Integer(i), None)),
            any::<f64>().prop_map(|d| (ValueKind::Double(d), None)),
            (MIN_MICROS..MAX_MICROS).prop_map(|t| (ValueKind::Timestamp(t), None)),
            ("\\PC{0,20}", prop::option::of(Just(meaning::TEXT)))
                .prop_map(|(s, m)| (ValueKind::String(s), m)),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(|b| (ValueKind::Blob(b), None)),
            arb_key().prop_map(|k| (ValueKind::Key(k), None)),
            (
                -90.0f64..90.0,
                -180.0f64..180.0,
                prop::option::of(Just(meaning::POINT_WITHOUT_MEANING))
            )
                .prop_map(|(latitude, longitude, m)| {
                    let g = GeoPoint {
                        latitude,
                        longitude,
                    };
                    (ValueKind::GeoPoint(g), m)
                }),
        ];
        let value = (leaf, any::<bool>()).prop_map(|((kind, meaning), x)| Value {
            kind,
            exclude_from_indexes: x,
            meaning,
        });
        value.prop_recursive(2, 16, 4, |inner| {
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..4), any::<bool>()).prop_map(|(vs, x)| {
                    let vs: Vec<Value> = vs
                        .into_iter()
                        .filter(|v| !matches!(v.kind, ValueKind::Array(_)))
                        .collect();
                    Value {
                        // Only an empty array keeps its own flag.
                        exclude_from_indexes: x && vs.is_empty(),
                        ..Value::new(ValueKind::Array(vs))
                    }
                }),
                (
                    prop::option::of(arb_key()),
                    prop::collection::btree_map("[a-z]{1,4}", inner, 0..4),
                    any::<bool>()
                )
                    .prop_map(|(key, properties, x)| Value {
                        exclude_from_indexes: x,
                        ..Value::new(ValueKind::Entity(EmbeddedEntity { key, properties }))
                    }),
            ]
        })
    }

    /// Through canonical bytes: NaN != NaN.
    fn same(a: &Entity, b: &Entity) -> bool {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        codec::encode(&mut a.clone(), &mut x);
        codec::encode(&mut b.clone(), &mut y);
        x == y
    }

    /// Indexed elements come back before unindexed ones (v3 keeps them
    /// in two lists), as the v1 API shows such arrays.
    fn v3_order(mut e: Entity) -> Entity {
        fn fix(v: &mut Value) {
            match &mut v.kind {
                ValueKind::Array(vs) => {
                    vs.sort_by_key(|v| v.exclude_from_indexes);
                    vs.iter_mut().for_each(fix);
                }
                ValueKind::Entity(e) => e.properties.values_mut().for_each(fix),
                _ => {}
            }
        }
        e.properties.values_mut().for_each(fix);
        e
    }

    proptest! {
        #[test]
        fn entities_round_trip_through_entity_proto(
            key in arb_key(),
            properties in prop::collection::btree_map("\\PC{1,8}", arb_value(), 0..6),
        ) {
            let e = Entity { key, properties };
            let mut bytes = Vec::new();
            encode_entity(&e, &mut bytes).unwrap();
            let back = decode_entity(&bytes).unwrap();
            let want = v3_order(e);
            prop_assert!(same(&want, &back), "{want:?}\n{back:?}");
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_entity(&bytes);
        }
    }

    #[test]
    fn project_ids_lose_the_partition_prefix_only() {
        for (app, project) in [
            ("s~acme", "acme"),
            ("e~acme", "acme"),
            ("dev~acme", "acme"),
            ("acme", "acme"),
            ("s~example.com:acme", "example.com:acme"),
        ] {
            assert_eq!(project_of(app), project);
        }
    }
}
