//! Datastore keys: partition + path, their total order, their sortable byte
//! form (used as the manifest's primary key), and the readable text form
//! (`User:alice/Post:7`) people type on the command line.
//!
//! The byte form must sort exactly like [`Key`]'s `Ord` (which is Cloud
//! Datastore's order); a proptest in this module holds the two together.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which project, database and namespace a key lives in.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId {
    #[serde(rename = "p", default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    #[serde(rename = "d", default, skip_serializing_if = "String::is_empty")]
    pub database: String,
    #[serde(rename = "n", default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// The identifier of one path element. Variant order is the Datastore order:
/// an incomplete element sorts first, ids before names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ElementId {
    #[serde(rename = "x")]
    Incomplete,
    #[serde(rename = "i")]
    Id(i64),
    #[serde(rename = "s")]
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PathElement {
    #[serde(rename = "k")]
    pub kind: String,
    #[serde(rename = "i")]
    pub id: ElementId,
}

impl PathElement {
    pub fn id(kind: impl Into<String>, id: i64) -> Self {
        PathElement {
            kind: kind.into(),
            id: ElementId::Id(id),
        }
    }
    pub fn name(kind: impl Into<String>, name: impl Into<String>) -> Self {
        PathElement {
            kind: kind.into(),
            id: ElementId::Name(name.into()),
        }
    }
}

/// A key: partition, then the path from the root ancestor to the entity.
/// The derived order compares the partition, then the path element by
/// element (kind, then id/name), a shorter path (an ancestor) first — which
/// is how Cloud Datastore orders keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    #[serde(rename = "t")]
    pub partition: PartitionId,
    #[serde(rename = "e")]
    pub path: Vec<PathElement>,
}

impl Key {
    pub fn new(partition: PartitionId, path: Vec<PathElement>) -> Self {
        Key { partition, path }
    }

    /// The kind of the entity itself (the last path element).
    pub fn kind(&self) -> &str {
        self.path.last().map(|e| e.kind.as_str()).unwrap_or("")
    }

    /// True when every path element has an id or a name.
    pub fn is_complete(&self) -> bool {
        !self.path.is_empty() && self.path.iter().all(|e| e.id != ElementId::Incomplete)
    }

    /// The order-preserving byte form of the path (partition excluded).
    pub fn path_bytes(&self) -> Vec<u8> {
        encode_path(&self.path)
    }

    /// The readable form of the path, e.g. `User:alice/Post:7`.
    pub fn display_path(&self) -> String {
        display_path(&self.path)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.partition.namespace.is_empty() {
            write!(f, "[{}] ", self.partition.namespace)?;
        }
        f.write_str(&display_path(&self.path))
    }
}

const ESC: u8 = 0x00;
const ESC_ZERO: u8 = 0xFF;
const TERM: u8 = 0x01;
const TAG_INCOMPLETE: u8 = 0x01;
const TAG_ID: u8 = 0x02;
const TAG_NAME: u8 = 0x03;

fn put_escaped(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if b == 0 {
            out.extend_from_slice(&[ESC, ESC_ZERO]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[ESC, TERM]);
}

/// Encode a path so that `memcmp` order equals the path order.
///
/// Each element: the escaped kind, then a tag (incomplete < id < name) and
/// the id as big-endian with the sign bit flipped, or the escaped name.
/// Strings escape 0x00 as 0x00 0xFF and end with 0x00 0x01, so a string
/// sorts before its extensions; an ancestor's bytes are a prefix of its
/// descendants' and so sort first.
pub fn encode_path(path: &[PathElement]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() * 24);
    for e in path {
        encode_element(&mut out, &e.kind, IdParts::from(&e.id));
    }
    out
}

/// A path element's identifier, borrowed.
pub enum IdParts<'a> {
    Incomplete,
    Id(i64),
    Name(&'a str),
}

impl<'a> From<&'a ElementId> for IdParts<'a> {
    fn from(id: &'a ElementId) -> Self {
        match id {
            ElementId::Incomplete => IdParts::Incomplete,
            ElementId::Id(i) => IdParts::Id(*i),
            ElementId::Name(n) => IdParts::Name(n),
        }
    }
}

/// Append one element of [`encode_path`]'s form.
pub fn encode_element(out: &mut Vec<u8>, kind: &str, id: IdParts<'_>) {
    put_escaped(out, kind.as_bytes());
    match id {
        IdParts::Incomplete => out.push(TAG_INCOMPLETE),
        IdParts::Id(id) => {
            out.push(TAG_ID);
            out.extend_from_slice(&((id as u64) ^ (1 << 63)).to_be_bytes());
        }
        IdParts::Name(n) => {
            out.push(TAG_NAME);
            put_escaped(out, n.as_bytes());
        }
    }
}

fn take_escaped(bytes: &[u8], pos: &mut usize) -> Option<String> {
    let mut s = Vec::new();
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        if b == ESC {
            let next = *bytes.get(*pos)?;
            *pos += 1;
            match next {
                ESC_ZERO => s.push(0),
                TERM => break,
                _ => return None,
            }
        } else {
            s.push(b);
        }
    }
    String::from_utf8(s).ok()
}

/// Inverse of [`encode_path`]; `None` when the bytes are not a valid path.
pub fn decode_path(bytes: &[u8]) -> Option<Vec<PathElement>> {
    let mut pos = 0;
    let mut path = Vec::new();
    while pos < bytes.len() {
        let kind = take_escaped(bytes, &mut pos)?;
        let tag = *bytes.get(pos)?;
        pos += 1;
        let id = match tag {
            TAG_INCOMPLETE => ElementId::Incomplete,
            TAG_ID => {
                let raw: [u8; 8] = bytes.get(pos..pos + 8)?.try_into().ok()?;
                pos += 8;
                ElementId::Id((u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
            }
            TAG_NAME => ElementId::Name(take_escaped(bytes, &mut pos)?),
            _ => return None,
        };
        path.push(PathElement { kind, id });
    }
    Some(path)
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.parse::<i64>().is_ok()
        || s.starts_with('"')
        || s.chars()
            .any(|c| c == ':' || c == '/' || c.is_whitespace() || c.is_control())
}

fn push_component(out: &mut String, s: &str) {
    if needs_quotes(s) {
        // JSON string quoting is unambiguous and familiar.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        out.push_str(s);
    }
}

/// `Kind:id/Kind:name`; names that read as numbers, or hold `:` `/` or
/// spaces, are written as JSON strings (`Post:"42"`).
pub fn display_path(path: &[PathElement]) -> String {
    let mut out = String::new();
    for (i, e) in path.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        push_component(&mut out, &e.kind);
        out.push(':');
        match &e.id {
            ElementId::Incomplete => out.push('?'),
            ElementId::Id(id) => out.push_str(&id.to_string()),
            ElementId::Name(n) => push_component(&mut out, n),
        }
    }
    out
}

/// Parse the readable form written by [`display_path`].
pub fn parse_path(text: &str) -> Result<Vec<PathElement>, String> {
    let mut rest = text.trim();
    let mut path = Vec::new();
    let component = |rest: &mut &str| -> Result<(String, bool), String> {
        if rest.starts_with('"') {
            let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
            let s = de
                .next()
                .ok_or_else(|| "unterminated quoted name".to_string())?
                .map_err(|e| format!("bad quoted name: {e}"))?;
            *rest = &rest[de.byte_offset()..];
            Ok((s, true))
        } else {
            let end = rest.find([':', '/']).unwrap_or(rest.len());
            let s = rest[..end].to_string();
            *rest = &rest[end..];
            Ok((s, false))
        }
    };
    loop {
        let (kind, _) = component(&mut rest)?;
        if kind.is_empty() {
            return Err(format!(
                "`{text}`: a path element needs a kind, as in `Post:42`"
            ));
        }
        rest = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("`{text}`: expected `Kind:id` or `Kind:name` after `{kind}`"))?;
        let (id, quoted) = component(&mut rest)?;
        let id = if quoted {
            ElementId::Name(id)
        } else if let Ok(n) = id.parse::<i64>() {
            ElementId::Id(n)
        } else if id.is_empty() {
            return Err(format!("`{text}`: `{kind}:` needs an id or a name"));
        } else {
            ElementId::Name(id)
        };
        path.push(PathElement { kind, id });
        if rest.is_empty() {
            return Ok(path);
        }
        rest = rest
            .strip_prefix('/')
            .ok_or_else(|| format!("`{text}`: expected `/` between path elements"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_element() -> impl Strategy<Value = PathElement> {
        let kind = prop_oneof!["[A-Za-z_]{1,6}", "\\PC{0,4}", Just("a\u{0}b".to_string())];
        let id = prop_oneof![
            Just(ElementId::Incomplete),
            any::<i64>().prop_map(ElementId::Id),
            (-3i64..3).prop_map(ElementId::Id),
            "\\PC{0,6}".prop_map(ElementId::Name),
            Just(ElementId::Name("\u{0}".into())),
        ];
        (kind, id).prop_map(|(kind, id)| PathElement { kind, id })
    }

    proptest! {
        #[test]
        fn byte_order_matches_key_order(a in prop::collection::vec(arb_element(), 0..4),
                                        b in prop::collection::vec(arb_element(), 0..4)) {
            prop_assert_eq!(encode_path(&a).cmp(&encode_path(&b)), a.cmp(&b));
        }

        #[test]
        fn bytes_round_trip(a in prop::collection::vec(arb_element(), 0..5)) {
            prop_assert_eq!(decode_path(&encode_path(&a)), Some(a));
        }

        #[test]
        fn text_round_trip(a in prop::collection::vec(arb_element(), 1..4)) {
            let a: Vec<_> = a.into_iter().filter(|e| e.id != ElementId::Incomplete && !e.kind.is_empty()).collect();
            prop_assume!(!a.is_empty());
            let text = display_path(&a);
            prop_assert_eq!(parse_path(&text), Ok(a), "{}", text);
        }
    }

    #[test]
    fn datastore_order_examples() {
        let k = |p: Vec<PathElement>| p;
        let ordered = [
            k(vec![PathElement::id("A", -5)]),
            k(vec![PathElement::id("A", 1)]),
            k(vec![PathElement::id("A", 1), PathElement::id("B", 1)]),
            k(vec![PathElement::id("A", 2)]),
            k(vec![PathElement::id("A", 10)]),
            k(vec![PathElement::name("A", "")]),
            k(vec![PathElement::name("A", "a")]),
            k(vec![PathElement::name("A", "ab")]),
            k(vec![PathElement::name("A", "b")]),
            k(vec![PathElement::id("B", 0)]),
        ];
        for w in ordered.windows(2) {
            assert!(w[0] < w[1], "{:?} < {:?}", w[0], w[1]);
            assert!(encode_path(&w[0]) < encode_path(&w[1]));
        }
    }

    #[test]
    fn parse_examples() {
        assert_eq!(
            parse_path("Post:42").unwrap(),
            vec![PathElement::id("Post", 42)]
        );
        assert_eq!(
            parse_path("User:alice/Post:7").unwrap(),
            vec![
                PathElement::name("User", "alice"),
                PathElement::id("Post", 7)
            ]
        );
        assert_eq!(
            parse_path("Post:\"42\"").unwrap(),
            vec![PathElement::name("Post", "42")]
        );
        assert!(parse_path("Post").is_err());
        assert!(parse_path(":4").is_err());
    }
}
