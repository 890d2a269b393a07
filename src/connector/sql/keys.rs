//! How a row's primary key becomes the last element of its entity key,
//! and back (docs/format.md, "SQL key encoding").
//!
//! Encoding 2 (written by every snapshot since it existed) keeps the type
//! of each key component, so that keys distinct in the database stay
//! distinct in the snapshot — SQLite stores any storage class in any
//! column, so `X'00'`, `'x''00'''`, `1.5` and `'1.5'` can all be keys of
//! one table:
//!
//! - one INTEGER component is the numeric id (as in encoding 1, so integer
//!   keys, and dedup against older snapshots, are unchanged);
//! - any other single component is the name: TEXT as it is, unless it
//!   starts with `%`; everything else as a tagged form `%` + letter +
//!   payload (`%T` text, `%R` real, `%X` blob in hex, `%U` TEXT that is not
//!   UTF-8 in hex, `%N` NULL);
//! - several components are joined by `/`, each escaped (`%` → `%25`,
//!   `/` → `%2F`): integers in decimal, text as it is, other types tagged,
//!   and text that reads as an integer tagged `%T` when its column can hold
//!   integers too (a SQLite column without TEXT affinity), so `('x', 5)`
//!   and `('x', '5')` differ.
//!
//! Encoding 1 (snapshots taken before) wrote reals and blobs as their text
//! (`1.5`, `x'00'`) and text as it is, so those could collide; it is
//! still read, by restores of such snapshots, through [`KeyEncoding::V1`].

use std::borrow::Cow;

use crate::model::ElementId;

/// Which encoding a snapshot's keys of one table use; recorded in the
/// table's `kindsnap.schema` entity (`key_encoding`), absent meaning 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum KeyEncoding {
    /// Before typed keys: reals and blobs as text, no tags.
    V1,
    /// Typed components (this module's doc).
    #[default]
    V2,
}

impl KeyEncoding {
    pub(crate) fn number(self) -> i64 {
        match self {
            KeyEncoding::V1 => 1,
            KeyEncoding::V2 => 2,
        }
    }
}

/// One component of a primary key, typed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part<'a> {
    Null,
    Int(i64),
    /// Text in a column that holds only text (or whose type fixes it).
    Text(Cow<'a, str>),
    /// Text in a column that may hold integers too (SQLite without TEXT
    /// affinity): tagged in a composite key when it reads as an integer.
    LooseText(Cow<'a, str>),
    Real(f64),
    Blob(Cow<'a, [u8]>),
    /// SQLite TEXT that is not valid UTF-8, byte for byte.
    TextBytes(Cow<'a, [u8]>),
}

impl Part<'_> {
    /// The text a database that casts text (PostgreSQL) reads this
    /// component from.
    pub(crate) fn text_form(&self) -> Option<String> {
        Some(match self {
            Part::Null => return None,
            Part::Int(i) => i.to_string(),
            Part::Text(t) | Part::LooseText(t) => t.to_string(),
            Part::Real(f) => real_text(*f),
            Part::Blob(b) => format!("\\x{}", hex::encode(b)),
            Part::TextBytes(b) => String::from_utf8_lossy(b).into_owned(),
        })
    }
}

/// A real as a key shows it: Rust's shortest text that reads back as the
/// same double (`1.5`, `1e300`, `-0.0`), the same from either engine.
fn real_text(f: f64) -> String {
    format!("{f:?}")
}

/// `i.to_string() == t` for some i64: text an integer component would
/// also give.
fn reads_as_integer(t: &str) -> bool {
    t.parse::<i64>().is_ok_and(|i| i.to_string() == t)
}

/// The tagged form of a component that is not plain, without escaping:
/// `None` for plain text and integers.
fn tagged(p: &Part<'_>, composite: bool) -> Option<String> {
    Some(match p {
        Part::Null => "%N".into(),
        Part::Int(_) => return None,
        Part::Text(t) if composite || !t.starts_with('%') => return None,
        Part::LooseText(t) if composite && !reads_as_integer(t) => return None,
        Part::LooseText(t) if !composite && !t.starts_with('%') => return None,
        Part::Text(t) | Part::LooseText(t) => format!("%T{t}"),
        Part::Real(f) => format!("%R{}", real_text(*f)),
        Part::Blob(b) => format!("%X{}", hex::encode(b)),
        Part::TextBytes(b) => format!("%U{}", hex::encode(b)),
    })
}

/// The key of a row from its primary-key components, in `encoding`.
pub(crate) fn element_id(parts: &[Part<'_>], encoding: KeyEncoding) -> ElementId {
    if encoding == KeyEncoding::V1 {
        return element_id_v1(parts);
    }
    match parts {
        [Part::Int(i)] => ElementId::Id(*i),
        [p] => ElementId::Name(tagged(p, false).unwrap_or_else(|| plain(p))),
        parts => {
            let mut out = String::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push('/');
                }
                match tagged(p, true) {
                    // Tags are `%` + a letter; escaping never makes one.
                    Some(t) => {
                        out.push_str(&t[..2]);
                        escape_into(&mut out, &t[2..]);
                    }
                    None => escape_into(&mut out, &plain(p)),
                }
            }
            ElementId::Name(out)
        }
    }
}

/// Plain text of an integer or text component.
fn plain(p: &Part<'_>) -> String {
    match p {
        Part::Int(i) => i.to_string(),
        Part::Text(t) | Part::LooseText(t) => t.to_string(),
        other => other.text_form().unwrap_or_default(),
    }
}

/// Encoding 1: one integer is an id, one text the name as it is, anything
/// else the components' text forms joined by `/` (reals as `1.5`, blobs
/// as `x'00'`, NULL as `%N`).
fn element_id_v1(parts: &[Part<'_>]) -> ElementId {
    let v1_text = |p: &Part<'_>| match p {
        Part::Real(f) => real_text(*f),
        Part::Blob(b) => format!("x'{}'", hex::encode(b)),
        Part::TextBytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => plain(other),
    };
    match parts {
        [Part::Int(i)] => ElementId::Id(*i),
        [p @ (Part::Text(_) | Part::LooseText(_) | Part::TextBytes(_))] => {
            ElementId::Name(v1_text(p))
        }
        parts => {
            let mut out = String::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push('/');
                }
                match p {
                    Part::Null => out.push_str("%N"),
                    p => escape_into(&mut out, &v1_text(p)),
                }
            }
            ElementId::Name(out)
        }
    }
}

fn escape_into(out: &mut String, t: &str) {
    for c in t.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
}

fn unescape(t: &str) -> String {
    t.replace("%2F", "/").replace("%25", "%")
}

/// A tagged component back; `None` when `t` is not a well-formed tag.
fn untag(t: &str) -> Option<Part<'static>> {
    let payload = t.get(2..)?;
    let bytes = || hex::decode(payload).ok();
    Some(match t.get(..2)? {
        "%N" if payload.is_empty() => Part::Null,
        "%T" => Part::Text(Cow::Owned(payload.to_string())),
        "%R" => Part::Real(payload.parse().ok()?),
        "%X" => Part::Blob(Cow::Owned(bytes()?)),
        "%U" => Part::TextBytes(Cow::Owned(bytes()?)),
        _ => return None,
    })
}

/// Inverse of [`element_id`] for a key of `columns` components; `None`
/// for an incomplete key. Integers of a composite key come back as
/// integers (encoding 2; as text in encoding 1, where nothing said which
/// they were): the column's affinity or type does the rest.
pub(crate) fn key_parts(
    id: &ElementId,
    columns: usize,
    encoding: KeyEncoding,
) -> Option<Vec<Part<'_>>> {
    Some(match (id, encoding) {
        (ElementId::Incomplete, _) => return None,
        (ElementId::Id(i), _) => vec![Part::Int(*i)],
        (ElementId::Name(n), _) if columns == 1 && encoding == KeyEncoding::V1 => {
            vec![Part::Text(Cow::Borrowed(n))]
        }
        (ElementId::Name(n), KeyEncoding::V1) => split_composite(n)
            .into_iter()
            .map(|p| p.map_or(Part::Null, |t| Part::Text(Cow::Owned(t))))
            .collect(),
        (ElementId::Name(n), KeyEncoding::V2) if columns == 1 => {
            vec![untag(n).unwrap_or(Part::Text(Cow::Borrowed(n)))]
        }
        (ElementId::Name(n), KeyEncoding::V2) => n
            .split('/')
            .map(|c| {
                if c.starts_with('%') && c.as_bytes().get(1).is_some_and(u8::is_ascii_uppercase) {
                    let payload = unescape(&c[2..]);
                    if let Some(p) = untag(&format!("{}{payload}", &c[..2])) {
                        return p;
                    }
                }
                let t = unescape(c);
                match t.parse::<i64>() {
                    Ok(i) if reads_as_integer(&t) => Part::Int(i),
                    _ => Part::Text(Cow::Owned(t)),
                }
            })
            .collect(),
    })
}

/// Encoding 1's composite names split: each component's text (`None` for
/// NULL).
pub(crate) fn split_composite(name: &str) -> Vec<Option<String>> {
    name.split('/')
        .map(|p| if p == "%N" { None } else { Some(unescape(p)) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(parts: &[Part<'_>]) -> String {
        match element_id(parts, KeyEncoding::V2) {
            ElementId::Name(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn storage_classes_give_distinct_keys_and_come_back() {
        let keys = [
            Part::Blob(Cow::Borrowed(&[0u8][..])),
            Part::Text("x'00'".into()),
            Part::Real(1.5),
            Part::Text("1.5".into()),
            Part::Text("%R1.5".into()),
            Part::TextBytes(Cow::Borrowed(&[0xffu8, b'a'][..])),
            Part::Null,
            Part::Text("%N".into()),
            Part::Text("".into()),
        ];
        let names: Vec<String> = keys.iter().map(|p| name(std::slice::from_ref(p))).collect();
        assert_eq!(
            names,
            ["%X00", "x'00'", "%R1.5", "1.5", "%T%R1.5", "%Uff61", "%N", "%T%N", ""]
        );
        for (p, n) in keys.iter().zip(&names) {
            let id = ElementId::Name(n.clone());
            let back = key_parts(&id, 1, KeyEncoding::V2).unwrap();
            assert_eq!(&back[0], p, "{n}");
        }
        assert_eq!(
            element_id(&[Part::Int(7)], KeyEncoding::V2),
            ElementId::Id(7)
        );
    }

    #[test]
    fn composite_keys_keep_types_and_escape() {
        let int = [Part::Text("x".into()), Part::Int(5)];
        let text = [Part::Text("x".into()), Part::LooseText("5".into())];
        assert_eq!(name(&int), "x/5");
        assert_eq!(name(&text), "x/%T5");
        // In a text column, text that reads as an integer is plain (as
        // PostgreSQL's text columns give it).
        assert_eq!(
            name(&[Part::Text("x".into()), Part::Text("5".into())]),
            "x/5"
        );
        let parts = [
            Part::Int(3),
            Part::Text("a/b%c".into()),
            Part::Null,
            Part::Real(-0.5),
            Part::Blob(Cow::Borrowed(&[1u8, 2][..])),
            Part::LooseText("%T/".into()),
        ];
        let n = name(&parts);
        assert_eq!(n, "3/a%2Fb%25c/%N/%R-0.5/%X0102/%25T%2F");
        let id = ElementId::Name(n);
        let back = key_parts(&id, parts.len(), KeyEncoding::V2).unwrap();
        let want: Vec<Part> = parts
            .iter()
            .map(|p| match p {
                Part::LooseText(t) => Part::Text(t.clone()),
                p => p.clone(),
            })
            .collect();
        assert_eq!(back, want);
        let id = ElementId::Name("x/%T5".into());
        let back = key_parts(&id, 2, KeyEncoding::V2).unwrap();
        assert_eq!(back, [Part::Text("x".into()), Part::Text("5".into())]);
    }

    #[test]
    fn encoding_1_reads_and_writes_as_before() {
        let v1 = |p: &[Part<'_>]| element_id(p, KeyEncoding::V1);
        assert_eq!(v1(&[Part::Real(2.5)]), ElementId::Name("2.5".into()));
        assert_eq!(
            v1(&[Part::Blob(Cow::Borrowed(&[1u8, 2][..]))]),
            ElementId::Name("x'0102'".into())
        );
        assert_eq!(
            v1(&[Part::Text("%Tx".into())]),
            ElementId::Name("%Tx".into())
        );
        assert_eq!(
            v1(&[Part::Int(3), Part::Text("x/y".into()), Part::Null]),
            ElementId::Name("3/x%2Fy/%N".into())
        );
        let id = ElementId::Name("%Tx".into());
        assert_eq!(
            key_parts(&id, 1, KeyEncoding::V1).unwrap(),
            [Part::Text("%Tx".into())]
        );
        let id = ElementId::Name("3/x%2Fy/%N".into());
        assert_eq!(
            key_parts(&id, 3, KeyEncoding::V1).unwrap(),
            [Part::Text("3".into()), Part::Text("x/y".into()), Part::Null]
        );
        assert_eq!(key_parts(&ElementId::Incomplete, 1, KeyEncoding::V2), None);
    }
}
