//! Values in their PostgreSQL text form: a snapshot reads every column as
//! text and parses it by the column's type; a restore writes text back,
//! cast to the column's type, so every type PostgreSQL can print
//! round-trips (docs/sql.md has the table).

use crate::connector::sql::{
    blob_value, format_sql_timestamp, meaning, parse_sql_timestamp, plain_json, text_value,
    with_meaning,
};
use crate::model::{ElementId, Value, ValueKind};

pub(super) fn is_int(t: &str) -> bool {
    matches!(t, "int2" | "int4" | "int8")
}

/// A column's text form as a property.
pub(super) fn parse_text(text: &str, typname: &str) -> Value {
    let other = || with_meaning(text_value(text.to_string()), meaning::TEXT_FORM);
    match typname {
        t if is_int(t) => text
            .parse()
            .map_or_else(|_| other(), |i| Value::new(ValueKind::Integer(i))),
        "float4" | "float8" => {
            let d = match text {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                t => t.parse().ok(),
            };
            d.map_or_else(other, |d| Value::new(ValueKind::Double(d)))
        }
        "bool" => match text {
            "t" | "true" => Value::new(ValueKind::Boolean(true)),
            "f" | "false" => Value::new(ValueKind::Boolean(false)),
            _ => other(),
        },
        "numeric" => with_meaning(text_value(text.to_string()), meaning::NUMERIC),
        "bytea" => text
            .strip_prefix("\\x")
            .and_then(|h| hex::decode(h).ok())
            .map_or_else(other, blob_value),
        "date" => parse_sql_timestamp(text).map_or_else(other, |t| {
            with_meaning(Value::new(ValueKind::Timestamp(t)), meaning::DATE)
        }),
        "timestamp" => parse_sql_timestamp(text).map_or_else(other, |t| {
            with_meaning(Value::new(ValueKind::Timestamp(t)), meaning::TIMESTAMP)
        }),
        "timestamptz" => {
            parse_sql_timestamp(text).map_or_else(other, |t| Value::new(ValueKind::Timestamp(t)))
        }
        "time" => with_meaning(text_value(text.to_string()), meaning::TIME),
        "json" => with_meaning(text_value(text.to_string()), meaning::JSON),
        "jsonb" => with_meaning(text_value(text.to_string()), meaning::JSONB),
        "uuid" => with_meaning(text_value(text.to_string()), meaning::UUID),
        "text" | "varchar" | "bpchar" | "name" | "citext" => text_value(text.to_string()),
        _ => other(),
    }
}

/// An array column, read as `to_jsonb(col::text[])`: elements parsed by
/// the element type, nested arrays for more dimensions.
pub(super) fn parse_array(json: &serde_json::Value, elem: &str) -> Value {
    match json {
        serde_json::Value::Array(items) => Value::new(ValueKind::Array(
            items.iter().map(|i| parse_array(i, elem)).collect(),
        )),
        serde_json::Value::String(s) => parse_text(s, elem),
        serde_json::Value::Null => Value::new(ValueKind::Null),
        other => parse_text(&other.to_string(), elem),
    }
}

/// A value in the text form PostgreSQL's input functions read.
pub(super) fn to_text(v: &Value) -> Option<String> {
    Some(match &v.kind {
        ValueKind::Null => return None,
        ValueKind::Boolean(b) => if *b { "t" } else { "f" }.to_string(),
        ValueKind::Integer(i) => i.to_string(),
        ValueKind::Double(d) => {
            if d.is_nan() {
                "NaN".into()
            } else if d.is_infinite() {
                if *d > 0.0 { "Infinity" } else { "-Infinity" }.into()
            } else {
                format!("{d:?}")
            }
        }
        ValueKind::Timestamp(t) => {
            let date_only = v.meaning == Some(meaning::DATE);
            let mut s = format_sql_timestamp(*t, date_only);
            if !date_only && v.meaning != Some(meaning::TIMESTAMP) {
                s.push_str("+00");
            }
            s
        }
        ValueKind::String(s) => s.clone(),
        ValueKind::Blob(b) => format!("\\x{}", hex::encode(b)),
        ValueKind::Key(k) => match k.path.last().map(|p| &p.id) {
            Some(ElementId::Id(i)) => i.to_string(),
            Some(ElementId::Name(n)) => n.clone(),
            _ => return None,
        },
        ValueKind::Array(vs) => array_literal(vs),
        ValueKind::GeoPoint(_) | ValueKind::Entity(_) => plain_json(v).to_string(),
    })
}

/// `{"a","b",NULL}`: every element quoted, nested arrays nested.
fn array_literal(vs: &[Value]) -> String {
    let mut s = String::from("{");
    for (i, v) in vs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match (&v.kind, to_text(v)) {
            (ValueKind::Array(inner), _) => s.push_str(&array_literal(inner)),
            (_, None) => s.push_str("NULL"),
            (_, Some(t)) => {
                s.push('"');
                for c in t.chars() {
                    if c == '"' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
            }
        }
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_parse_by_type_and_write_back() {
        let v = parse_text("12.5000", "numeric");
        assert_eq!(v.meaning, Some(meaning::NUMERIC));
        assert_eq!(to_text(&v).as_deref(), Some("12.5000"));
        let v = parse_text("2024-01-02 03:04:05.5+00", "timestamptz");
        assert_eq!(
            to_text(&v).as_deref(),
            Some("2024-01-02 03:04:05.500000+00")
        );
        let v = parse_text("2024-02-29", "date");
        assert_eq!(to_text(&v).as_deref(), Some("2024-02-29"));
        let v = parse_text("\\x00ff", "bytea");
        assert_eq!(v.kind, ValueKind::Blob(vec![0, 255]));
        assert_eq!(to_text(&v).as_deref(), Some("\\x00ff"));
        let v = parse_text("infinity", "timestamptz");
        assert_eq!(v.meaning, Some(meaning::TEXT_FORM));
        let arr = parse_array(&serde_json::json!([["a\"b", null], ["c\\d", "e"]]), "text");
        assert_eq!(
            to_text(&arr).as_deref(),
            Some(r#"{{"a\"b",NULL},{"c\\d","e"}}"#)
        );
    }
}
