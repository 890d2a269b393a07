//! The frame every page shares, and the small pieces pages are made of:
//! numbers, times, links and property values. maud escapes every string
//! it interpolates, so names from the data (kinds, keys, property values)
//! are shown as text, never read as HTML.

use maud::{html, Markup, DOCTYPE};

use kindsnap::model::key::{self, PartitionId};
use kindsnap::model::{json, Value, ValueKind};
use kindsnap::repo::manifest::SnapshotInfo;

/// A whole page: `title` in the tab, `body` in the frame.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · kindsnap" }
                link rel="stylesheet" href="/static/style.css";
                link rel="icon" href="/static/icon.svg" type="image/svg+xml";
            }
            body {
                header.top {
                    a.brand href="/" { "kindsnap" }
                    nav {
                        a href="/" { "History" }
                        a href="/diff" { "Diff" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// `1.5 MiB`, as the CLI prints sizes.
pub use crate::cli::output::bytes;

/// A snapshot's time to the second, UTC (`2026-12-05 18:31:03`).
pub fn time(us: i64) -> String {
    json::format_timestamp(us - us.rem_euclid(1_000_000))
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// The date part of [`time`].
pub fn date(us: i64) -> String {
    time(us).chars().take(10).collect()
}

/// `Kind`, or `namespace/Kind` outside the default namespace.
pub fn kind_label(namespace: &str, kind: &str) -> String {
    if namespace.is_empty() {
        kind.to_string()
    } else {
        format!("{namespace}/{kind}")
    }
}

/// A URL: `path` with its query pairs, encoded.
pub fn url(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{path}?{q}")
}

/// The snapshot page's URL.
pub fn snapshot_url(reference: &str) -> String {
    let seg = percent_encoding::utf8_percent_encode(reference, percent_encoding::NON_ALPHANUMERIC);
    format!("/snapshot/{seg}")
}

/// How links name a snapshot: its name while no other snapshot has it
/// (readable, and it survives `forget` rewriting the manifest), else its
/// id.
pub fn reference(info: &SnapshotInfo, all: &[SnapshotInfo]) -> String {
    let unique = all.iter().filter(|i| i.name == info.name).count() == 1;
    if unique {
        info.name.clone()
    } else {
        info.logical.to_hex()
    }
}

/// The entity page of `key_text` in `snapshot`.
pub fn entity_url(snapshot: &str, namespace: &str, key_text: &str) -> String {
    let mut pairs = vec![("snapshot", snapshot), ("key", key_text)];
    if !namespace.is_empty() {
        pairs.push(("ns", namespace));
    }
    url("/entity", &pairs)
}

/// The readable path of a key's bytes (hex when they do not decode).
pub fn key_text(bytes: &[u8]) -> String {
    key::decode_path(bytes)
        .map(|p| key::display_path(&p))
        .unwrap_or_else(|| hex::encode(bytes))
}

/// One property value, for a table cell. Keys link to the entity they
/// name in `snapshot`.
pub fn value(v: &Value, snapshot: &str) -> Markup {
    html! {
        (value_body(v, snapshot))
        @if v.exclude_from_indexes { " " span.flag title="excluded from indexes" { "unindexed" } }
        @if let Some(m) = v.meaning { " " span.flag { "meaning " (m) } }
    }
}

fn value_body(v: &Value, snapshot: &str) -> Markup {
    match &v.kind {
        ValueKind::Null => html! { span.null { "null" } },
        ValueKind::Boolean(b) => html! { (b) },
        ValueKind::Integer(i) => html! { (i) },
        ValueKind::Double(x) => html! { (x) },
        ValueKind::Timestamp(t) => html! { (json::format_timestamp(*t)) },
        ValueKind::String(s) => string(s),
        ValueKind::Blob(b) => {
            let head: String = hex::encode(&b[..b.len().min(16)]);
            html! { span.blob { (bytes(b.len() as u64)) " " code { (head) @if b.len() > 16 { "…" } } } }
        }
        ValueKind::Key(k) => key_link(&k.partition, &k.display_path(), snapshot),
        ValueKind::GeoPoint(g) => html! { "(" (g.latitude) ", " (g.longitude) ")" },
        ValueKind::Array(vs) => html! {
            @if vs.is_empty() { span.null { "[]" } }
            ol.array { @for x in vs { li { span.type { (x.type_name()) } " " (value(x, snapshot)) } } }
        },
        ValueKind::Entity(e) => html! {
            @if let Some(k) = &e.key { div { "key " (key_link(&k.partition, &k.display_path(), snapshot)) } }
            table.embedded {
                @for (name, x) in &e.properties {
                    tr { th { (name) } td.type { (x.type_name()) } td { (value(x, snapshot)) } }
                }
            }
        },
    }
}

/// A string, quoted; long ones cut, with the whole in a `<details>`.
fn string(s: &str) -> Markup {
    const SHOWN: usize = 200;
    let quoted = |t: &str| serde_json::to_string(t).unwrap_or_default();
    if s.chars().count() <= SHOWN {
        return html! { span.string { (quoted(s)) } };
    }
    let cut: String = s.chars().take(SHOWN).collect();
    html! {
        details.long {
            summary { span.string { (quoted(&cut)) "…" } " (" (s.chars().count()) " characters)" }
            span.string { (quoted(s)) }
        }
    }
}

/// A key as a link to its entity.
pub fn key_link(partition: &PartitionId, path: &str, snapshot: &str) -> Markup {
    let ns = &partition.namespace;
    html! {
        a.key href=(entity_url(snapshot, ns, path)) {
            @if !ns.is_empty() { "[" (ns) "] " }
            (path)
        }
    }
}
