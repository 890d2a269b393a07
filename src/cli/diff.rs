//! `kindsnap diff A B`

use std::process::ExitCode;

use kindsnap::model::{json, key, Value, ValueKind};
use kindsnap::ops::{self, diff as d};
use kindsnap::repo::store::Store;

use super::output::{escape, kind_label, painted_table, Paint};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap diff latest~1                 what changed since the snapshot before
  kindsnap diff monday friday --kinds Order --keys
  kindsnap diff latest~1 latest --props  each changed property, old → new
  kindsnap diff day1 day2 --json | jq '.kinds[] | select(.changed > 0)'
  kindsnap diff latest~1 --exit-code --stat || echo changed

Colours follow --color (auto: on a terminal, unless NO_COLOR is set).")]
pub struct Args {
    /// The older snapshot.
    #[arg(add = super::complete::snap())]
    a: String,
    /// The newer snapshot.
    #[arg(add = super::complete::snap(), default_value = "latest")]
    b: String,
    /// Only these kinds (comma-separated or repeated; `--kind` also works).
    #[arg(add = super::complete::kind(), long, alias = "kind", value_delimiter = ',', value_name = "KIND,…")]
    kinds: Vec<String>,
    /// List the keys that differ (+ added, - removed, ~ changed), after
    /// the per-kind summary.
    #[arg(long, visible_alias = "name-only")]
    keys: bool,
    /// Show each changed property, old → new (implies --keys).
    #[arg(long)]
    props: bool,
    /// Only the per-kind summary (the default without --keys or --props).
    #[arg(long, conflicts_with_all = ["keys", "props", "json"])]
    stat: bool,
    /// Exit with 1 when the snapshots differ, 0 when they do not (as
    /// `git diff --exit-code`).
    #[arg(long)]
    exit_code: bool,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// How --props shows values: json (`name: old → new` lines, values as
    /// JSON) or table (key, column, old, new; NULL shown, long values cut)
    /// [default: table for snapshots of SQL databases, json for the rest].
    #[arg(long, value_name = "FORMAT", requires = "props")]
    format: Option<super::rows::Format>,
}

/// The meaning SQLite snapshots give TEXT that is not valid UTF-8
/// (`connector::sql::meaning::TEXT_BYTES`).
pub(crate) const TEXT_BYTES: i32 = 1009;

pub(super) fn short(v: &Value) -> String {
    let mut s = match &v.kind {
        ValueKind::Null => "null".to_string(),
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::Integer(i) => i.to_string(),
        ValueKind::Double(x) => x.to_string(),
        ValueKind::Timestamp(t) => json::format_timestamp(*t),
        ValueKind::String(s) => {
            let cut: String = s.chars().take(80).collect();
            let mut q = serde_json::to_string(&cut).unwrap_or_default();
            if cut.len() < s.len() {
                q.push('…');
            }
            q
        }
        // SQLite TEXT that is not UTF-8 (docs/sql.md): readable, bad
        // bytes as U+FFFD; the value itself keeps every byte.
        ValueKind::Blob(b) if v.meaning == Some(TEXT_BYTES) => {
            let text = String::from_utf8_lossy(b);
            let cut: String = text.chars().take(80).collect();
            format!(
                "{} (text, not UTF-8)",
                serde_json::to_string(&cut).unwrap_or_default()
            )
        }
        ValueKind::Blob(b) => format!("<blob {}>", super::output::count(b.len(), "byte")),
        ValueKind::Key(k) => format!("Key({})", k),
        ValueKind::GeoPoint(g) => format!("({}, {})", g.latitude, g.longitude),
        ValueKind::Array(vs) => {
            format!("[{}]", vs.iter().map(short).collect::<Vec<_>>().join(", "))
        }
        ValueKind::Entity(e) => format!(
            "{{{}}}",
            e.properties
                .iter()
                .map(|(k, v)| format!("{k}: {}", short(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if v.exclude_from_indexes {
        s.push_str(" (unindexed)");
    }
    if let Some(m) = v.meaning {
        s.push_str(&format!(" (meaning {m})"));
    }
    s
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let a = ops::find_snapshot(&repo, &args.a)?;
    let b = ops::find_snapshot(&repo, &args.b)?;
    let opts = d::DiffOptions {
        kinds: (!args.kinds.is_empty()).then(|| args.kinds.clone()),
        entries: args.keys || args.props || args.json,
    };
    let mut printer = Printer {
        store: if args.props {
            Some(Store::open(&repo)?)
        } else {
            None
        },
        paint: Paint::new(settings.color),
        // JSON goes straight out; text through a pager on a terminal.
        out: if args.json { Out::new() } else { Out::paged() },
        json: args.json,
        show_keys: (args.keys || args.props) && !args.json,
        first: true,
        current: None,
        table: (args.props
            && super::rows::choose(args.format, &b.source) == super::rows::Format::Table)
            .then(|| super::rows::Table::new(Vec::new())),
    };
    if args.json {
        // Entries stream out as they are found (a diff may have millions);
        // the per-kind counts, known at the end, come last.
        let head = serde_json::json!({
            "from": {"id": a.logical.to_hex(), "name": a.name},
            "to": {"id": b.logical.to_hex(), "name": b.name},
        });
        let head = serde_json::to_string(&head)?;
        printer
            .out
            .raw(&format!("{},\n\"entries\": [", &head[..head.len() - 1]))?;
    }
    if printer.show_keys {
        // The summary first (a counting pass: header reads where the
        // snapshots are adjacent), then the keys.
        let counts = d::DiffOptions {
            entries: false,
            ..opts.clone()
        };
        let (kinds, _) = d::diff(&repo, &a, &b, &counts, &mut |_, _| Ok(()))?;
        summary(
            &mut printer.out,
            &printer.paint,
            &a.name,
            &b.name,
            &kinds,
            None,
        )?;
        if kinds.is_empty() {
            printer.out.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
        printer.out.line("")?;
    }
    let (kinds, _method) = d::diff(&repo, &a, &b, &opts, &mut |k, e| printer.entry(k, e))?;
    printer.flush_table()?;
    let mut out = printer.out;
    let code = match args.exit_code && !kinds.is_empty() {
        true => ExitCode::from(1),
        false => ExitCode::SUCCESS,
    };
    if args.json {
        let kinds = serde_json::to_string_pretty(&kinds)?;
        out.raw(&format!("\n],\n\"kinds\": {kinds}\n}}"))?;
        out.flush()?;
        return Ok(code);
    }
    if !printer.show_keys {
        // How long it took, on a terminal only: piped, a diff is data.
        use std::io::IsTerminal;
        let took = std::io::stdout().is_terminal().then_some(settings.started);
        summary(&mut out, &printer.paint, &a.name, &b.name, &kinds, took)?;
    }
    out.flush()?;
    Ok(code)
}

/// Prints each differing entity as the diff finds it.
struct Printer<'a> {
    /// Set with `--props`: the bodies to compare.
    store: Option<Store<'a>>,
    paint: Paint,
    out: Out,
    json: bool,
    show_keys: bool,
    /// No JSON entry printed yet.
    first: bool,
    /// The kind whose heading was printed last.
    current: Option<(String, String)>,
    /// `--props` as a table (`--format table`): the current kind's rows.
    table: Option<super::rows::Table>,
}

impl Printer<'_> {
    fn entry(&mut self, k: &d::KindDiff, e: d::DiffEntry) -> kindsnap::Result<()> {
        let path = key::decode_path(&e.key)
            .map(|p| key::display_path(&p))
            .unwrap_or_else(|| hex::encode(&e.key));
        let mut props = Vec::new();
        if let (Some(store), d::Change::Changed, Some(o), Some(n)) =
            (&self.store, e.change, e.old, e.new)
        {
            props = d::diff_properties(&store.get(&o)?, &store.get(&n)?);
        }
        if self.json {
            let v = serde_json::json!({
                "namespace": k.namespace, "kind": k.kind, "key": path, "change": e.change,
                "old": e.old.map(|h| h.to_hex()), "new": e.new.map(|h| h.to_hex()),
                "properties": props.iter().map(|p| serde_json::json!({
                    "name": p.name,
                    "old": p.old.as_ref().map(json::value_to_json),
                    "new": p.new.as_ref().map(json::value_to_json),
                })).collect::<Vec<_>>(),
            });
            let sep = if std::mem::take(&mut self.first) {
                ""
            } else {
                ","
            };
            return self.raw(&format!("{sep}{v}"));
        }
        if !self.show_keys {
            return Ok(());
        }
        let here = (k.namespace.clone(), k.kind.clone());
        if self.current.as_ref() != Some(&here) {
            self.flush_table()?;
            let heading = self
                .paint
                .bold(&format!("{}:", kind_label(&k.namespace, &k.kind)));
            self.raw(&heading)?;
            self.current = Some(here);
            if self.table.is_some() {
                self.table = Some(super::rows::Table::new(
                    ["", "key", "column", "old", "new"]
                        .map(String::from)
                        .to_vec(),
                ));
            }
        }
        if self.table.is_some() {
            return self.table_rows(&e, &path, &props);
        }
        let line = match e.change {
            d::Change::Added => self.paint.green(&format!("+ {path}")),
            d::Change::Removed => self.paint.red(&format!("- {path}")),
            d::Change::Changed => self.paint.yellow(&format!("~ {path}")),
        };
        self.raw(&format!("  {line}"))?;
        for p in props {
            let shown =
                |v: &Option<Value>| v.as_ref().map(short).unwrap_or_else(|| "(absent)".into());
            let (o, n) = (shown(&p.old), shown(&p.new));
            let line = format!(
                "      {}: {} → {}",
                escape(&p.name),
                self.paint.red(&o),
                self.paint.green(&n)
            );
            self.raw(&line)?;
        }
        Ok(())
    }

    /// One entity's rows of the `--props` table: a row per changed
    /// property, or one row for an added or removed entity.
    fn table_rows(
        &mut self,
        e: &d::DiffEntry,
        path: &str,
        props: &[d::PropChange],
    ) -> kindsnap::Result<()> {
        use super::rows::cell;
        let mark = match e.change {
            d::Change::Added => "+",
            d::Change::Removed => "-",
            d::Change::Changed => "~",
        };
        let mut rows = Vec::new();
        if props.is_empty() {
            rows.push(vec![mark.to_string(), path.to_string()]);
        }
        for p in props {
            rows.push(vec![
                mark.to_string(),
                path.to_string(),
                p.name.clone(),
                cell(p.old.as_ref()),
                cell(p.new.as_ref()),
            ]);
        }
        for row in rows {
            let lines = match self.table.as_mut() {
                Some(t) => t.push(row),
                None => Vec::new(),
            };
            for l in lines {
                self.raw(&l)?;
            }
        }
        Ok(())
    }

    /// Print the rows the `--props` table holds.
    fn flush_table(&mut self) -> kindsnap::Result<()> {
        let lines = match self.table.as_mut() {
            Some(t) => t.flush(),
            None => Vec::new(),
        };
        for l in lines {
            self.raw(&l)?;
        }
        Ok(())
    }

    fn raw(&mut self, line: &str) -> kindsnap::Result<()> {
        self.out.raw(line).map_err(kindsnap::Error::Output)
    }
}

/// The per-kind table and the totals line.
fn summary(
    out: &mut Out,
    paint: &Paint,
    a: &str,
    b: &str,
    kinds: &[d::KindDiff],
    started: Option<std::time::Instant>,
) -> std::io::Result<()> {
    let took = started.map(super::output::took).unwrap_or_default();
    if kinds.is_empty() {
        return out.line(format!("no differences between {a} and {b}{took}"));
    }
    let mut rows = vec![vec![
        "kind".to_string(),
        "added".into(),
        "removed".into(),
        "changed".into(),
    ]];
    for k in kinds {
        rows.push(vec![
            kind_label(&k.namespace, &k.kind),
            format!("+{}", k.added),
            format!("-{}", k.removed),
            format!("~{}", k.changed),
        ]);
    }
    // Row 0 is the header; row r is kinds[r - 1]. Zero counts stay plain.
    let colour = |row: usize, col: usize, cell: &str| -> String {
        let Some(k) = row.checked_sub(1).and_then(|i| kinds.get(i)) else {
            return paint.bold(cell);
        };
        match col {
            1 if k.added > 0 => paint.green(cell),
            2 if k.removed > 0 => paint.red(cell),
            3 if k.changed > 0 => paint.yellow(cell),
            _ => cell.to_string(),
        }
    };
    for l in painted_table(&rows, 1, colour) {
        out.raw(&l)?;
    }
    let (ad, re, ch) = kinds.iter().fold((0, 0, 0), |s, k| {
        (s.0 + k.added, s.1 + k.removed, s.2 + k.changed)
    });
    let kinds_differ = match kinds.len() {
        1 => "1 kind differs".to_string(),
        n => format!("{n} kinds differ"),
    };
    out.line(format!(
        "{kinds_differ}: {ad} added, {re} removed, {ch} changed{took}"
    ))
}
