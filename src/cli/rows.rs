//! Entities as table rows, for data that came from SQL: a kind is a
//! table, its properties are columns. `cat` and `diff --props` print this
//! with `--format table`, their default for snapshots of SQLite and
//! PostgreSQL sources (JSON stays the default for the rest, whose entities
//! nest arrays and embedded entities that a cell cannot show).

use kindsnap::model::{json, Value, ValueKind};

use super::diff::TEXT_BYTES;

/// `--format`: how `cat` and `diff --props` print entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Datastore v1 JSON (`cat`) or property lines old → new (`diff`).
    Json,
    /// Rows and columns: NULL shown, long values cut with `…`.
    Table,
}

/// The format to use: the one asked for, else table for snapshots of a
/// SQL source (`sqlite:`, `postgres://`), else JSON.
pub fn choose(asked: Option<Format>, source: &str) -> Format {
    asked.unwrap_or(if is_sql(source) {
        Format::Table
    } else {
        Format::Json
    })
}

fn is_sql(source: &str) -> bool {
    source.starts_with("sqlite:") || source.starts_with("postgres")
}

/// The widest a cell is printed; longer values end in `…`.
pub const MAX_CELL: usize = 40;

/// One value as a table cell: NULL, numbers and text as they are (text
/// unquoted), keys in their readable form, blobs by size, arrays and
/// embedded entities as compact JSON; cut at [`MAX_CELL`] characters.
pub fn cell(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return String::new();
    };
    let text = match &v.kind {
        ValueKind::Null => "NULL".to_string(),
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::Integer(i) => i.to_string(),
        ValueKind::Double(x) => x.to_string(),
        ValueKind::Timestamp(t) => json::format_timestamp(*t),
        ValueKind::String(s) => s.clone(),
        // SQLite TEXT that is not UTF-8 (docs/sql.md): readable, bad
        // bytes as U+FFFD.
        ValueKind::Blob(b) if v.meaning == Some(TEXT_BYTES) => {
            format!("{} (not UTF-8)", String::from_utf8_lossy(b))
        }
        ValueKind::Blob(b) => format!("<{}>", super::output::count(b.len(), "byte")),
        ValueKind::Key(k) => kindsnap::model::key::display_path(&k.path),
        ValueKind::GeoPoint(g) => format!("({}, {})", g.latitude, g.longitude),
        ValueKind::Array(_) | ValueKind::Entity(_) => json::value_to_json(v).to_string(),
    };
    cut(&text, MAX_CELL)
}

/// `s` cut to `max` characters, the last one `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Rows printed in batches: the header, the column widths and which
/// columns are numbers (aligned right) come from the first batch; later
/// rows are cut to those widths, so memory stays one batch whatever the
/// number of rows.
pub struct Table {
    header: Vec<String>,
    /// Per column: width, and whether it is aligned right.
    layout: Option<Vec<(usize, bool)>>,
    batch: Vec<Vec<String>>,
}

/// A cell of a number column: a number, NULL or empty.
fn numeric(c: &str) -> bool {
    c.is_empty() || c == "NULL" || c.parse::<f64>().is_ok()
}

/// Rows held before the widths are fixed.
const BATCH: usize = 200;

impl Table {
    pub fn new(header: Vec<String>) -> Table {
        Table {
            header,
            layout: None,
            batch: Vec::new(),
        }
    }

    /// Add a row; returns lines ready to print (none until a batch fills).
    pub fn push(&mut self, row: Vec<String>) -> Vec<String> {
        self.batch.push(row);
        if self.batch.len() >= BATCH {
            return self.flush();
        }
        Vec::new()
    }

    /// The lines of the rows held (with the header, the first time).
    pub fn flush(&mut self) -> Vec<String> {
        let rows = std::mem::take(&mut self.batch);
        let layout = self.layout.get_or_insert_with(|| {
            let mut w: Vec<(usize, bool)> = self
                .header
                .iter()
                .map(|h| (h.chars().count(), true))
                .collect();
            for r in &rows {
                for (i, c) in r.iter().enumerate() {
                    let n = super::output::escape(c).chars().count();
                    if i >= w.len() {
                        w.push((0, true));
                    }
                    w[i].0 = w[i].0.max(n);
                    w[i].1 &= numeric(c);
                }
            }
            w
        });
        let mut lines = Vec::new();
        // The header goes out once, with the first batch.
        let header = std::mem::take(&mut self.header);
        if !header.is_empty() {
            lines.push(render(&header, layout));
        }
        for r in &rows {
            lines.push(render(r, layout));
        }
        lines
    }
}

fn render(row: &[String], layout: &[(usize, bool)]) -> String {
    let mut line = String::new();
    for (i, c) in row.iter().enumerate() {
        let (w, right) = layout.get(i).copied().unwrap_or((0, false));
        let c = cut(&super::output::escape(c), w.max(1));
        let pad = " ".repeat(w.saturating_sub(c.chars().count()));
        if i > 0 {
            line.push_str("  ");
        }
        if right {
            line.push_str(&pad);
            line.push_str(&c);
        } else {
            line.push_str(&c);
            line.push_str(&pad);
        }
    }
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_show_null_and_cut_long_text() {
        let null = Value::new(ValueKind::Null);
        assert_eq!(cell(Some(&null)), "NULL");
        assert_eq!(cell(None), "");
        let long = Value::new(ValueKind::String("x".repeat(100)));
        let c = cell(Some(&long));
        assert_eq!(c.chars().count(), MAX_CELL);
        assert!(c.ends_with('…'));
        assert_eq!(choose(None, "sqlite:/a.db"), Format::Table);
        assert_eq!(choose(None, "jsonl:/a.jsonl"), Format::Json);
        assert_eq!(choose(Some(Format::Json), "sqlite:/a.db"), Format::Json);
    }

    #[test]
    fn a_table_fixes_its_widths_on_the_first_batch() {
        let mut t = Table::new(vec!["id".into(), "name".into()]);
        assert!(t.push(vec!["1".into(), "ann".into()]).is_empty());
        let lines = t.flush();
        assert_eq!(lines, ["id  name", " 1  ann"]);
        t.push(vec!["22".into(), "bartholomew".into()]);
        assert_eq!(t.flush(), ["22  bar…"]);
    }
}
