//! Output helpers: a stdout writer whose broken-pipe errors end the program
//! quietly, human-readable sizes, aligned tables, and [`escape`], which
//! every line of human-readable text passes through so that names from a
//! crafted manifest or source (kinds, namespaces, keys, snapshot names)
//! cannot move the cursor, recolour or rewrite the terminal.

use std::borrow::Cow;
use std::io::{self, Write};

/// `s` with its control characters (C0, DEL, C1) and Unicode bidi
/// overrides written as escapes: `\t`, `\n`, `\r`, else `\u{1b}`.
/// Ordinary Unicode is kept as it is; a string without such characters is
/// returned unchanged (borrowed).
pub fn escape(s: &str) -> Cow<'_, str> {
    fn needs(c: char) -> bool {
        c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub struct Out {
    /// `None` only while dropping.
    inner: Option<io::BufWriter<Box<dyn Write>>>,
    /// The pager the lines go through, waited for on drop.
    pager: Option<std::process::Child>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            inner: Some(io::BufWriter::new(Box::new(io::stdout().lock()))),
            pager: None,
        }
    }

    /// Like [`Out::new`], but on a terminal the lines go through a pager,
    /// as git's do: `$KINDSNAP_PAGER`, else `$PAGER`, else `less` (with
    /// `LESS=FRX` unless set: one screen is printed as it is, colours kept).
    /// An empty pager, or `cat`, means none; so does a pager that cannot
    /// start.
    pub fn paged() -> Out {
        use std::io::IsTerminal;
        if !io::stdout().is_terminal() {
            return Out::new();
        }
        let pager = std::env::var("KINDSNAP_PAGER")
            .or_else(|_| std::env::var("PAGER"))
            .unwrap_or_else(|_| "less".into());
        if pager.trim().is_empty() || pager.trim() == "cat" {
            return Out::new();
        }
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&pager)
            .stdin(std::process::Stdio::piped());
        if std::env::var_os("LESS").is_none() {
            cmd.env("LESS", "FRX");
        }
        let Ok(mut child) = cmd.spawn() else {
            return Out::new();
        };
        let Some(stdin) = child.stdin.take() else {
            return Out::new();
        };
        Out {
            inner: Some(io::BufWriter::new(Box::new(stdin))),
            pager: Some(child),
        }
    }

    fn inner(&mut self) -> &mut io::BufWriter<Box<dyn Write>> {
        self.inner
            .get_or_insert_with(|| io::BufWriter::new(Box::new(io::stdout())))
    }
    /// One line of human-readable text, its control characters escaped.
    pub fn line(&mut self, s: impl AsRef<str>) -> io::Result<()> {
        self.raw(&escape(s.as_ref()))
    }
    /// A line written as it is: JSON (whose strings serde has escaped
    /// already) or a line [`Paint`] coloured, whose pieces were escaped
    /// before the colour codes went in.
    pub fn raw(&mut self, s: &str) -> io::Result<()> {
        let inner = self.inner();
        inner.write_all(s.as_bytes())?;
        inner.write_all(b"\n")
    }
    pub fn json(&mut self, v: &serde_json::Value) -> io::Result<()> {
        let s = serde_json::to_string_pretty(v).unwrap_or_default();
        self.raw(&s)
    }
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner().flush()
    }
}

impl Drop for Out {
    /// Close the pager's input and wait until the reader quits it.
    fn drop(&mut self) {
        if let Some(mut inner) = self.inner.take() {
            let _ = inner.flush();
        }
        if let Some(mut pager) = self.pager.take() {
            let _ = pager.wait();
        }
    }
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .map(|e| e.kind() == io::ErrorKind::BrokenPipe)
            .unwrap_or(false)
    })
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A snapshot's time as every command prints it: RFC 3339 in UTC, to the
/// second (`2026-12-05T18:31:03Z`). `--json` keeps the microseconds.
pub fn time(us: i64) -> String {
    kindsnap::model::json::format_timestamp(us - us.rem_euclid(1_000_000))
}

/// [`time`], or with `local` (`--local-time`) the same moment in the
/// local time zone, RFC 3339 with its offset (`2026-12-05T19:31:03+01:00`),
/// which `@DATE` accepts too.
pub fn time_at(us: i64, local: bool) -> String {
    if !local {
        return time(us);
    }
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(us.div_euclid(1_000_000), 0) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        }
        chrono::LocalResult::None => time(us),
    }
}

/// ` in 1.2 s`: how long the command has run, for its summary line.
pub fn took(started: std::time::Instant) -> String {
    format!(" in {}", super::progress::duration(started.elapsed()))
}

/// [`time_at`] for a time a report carries as RFC 3339 text.
pub fn time_text(rfc3339: &str, local: bool) -> String {
    kindsnap::model::json::parse_timestamp(rfc3339)
        .map(|us| time_at(us, local))
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// `1 snapshot`, `2 snapshots`, `0 entities`: a count with its noun, in
/// the singular only for one. `noun` is the singular; a final consonant
/// + `y` becomes `ies` (entity, body).
pub fn count<N>(n: N, noun: &str) -> String
where
    N: TryInto<u64> + Copy + std::fmt::Display,
{
    if n.try_into().is_ok_and(|v| v == 1) {
        return format!("{n} {noun}");
    }
    let plural = match noun.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{stem}ies"),
        _ => format!("{noun}s"),
    };
    format!("{n} {plural}")
}

#[cfg(test)]
mod count_tests {
    #[test]
    fn singular_only_for_one() {
        assert_eq!(super::count(1u64, "snapshot"), "1 snapshot");
        assert_eq!(super::count(0usize, "pack"), "0 packs");
        assert_eq!(super::count(2u32, "entity"), "2 entities");
        assert_eq!(super::count(1usize, "entity"), "1 entity");
        assert_eq!(super::count(3u64, "key"), "3 keys");
        assert_eq!(super::time(1_796_495_463_123_456), "2026-12-05T18:31:03Z");
    }
}

/// Left-align the first `left` columns, right-align the rest.
pub fn table(rows: &[Vec<String>], left: usize) -> Vec<String> {
    painted_table(rows, left, |_, _, c| c.to_string())
}

pub fn kind_label(namespace: &str, kind: &str) -> String {
    if namespace.is_empty() {
        kind.to_string()
    } else {
        format!("{namespace}/{kind}")
    }
}

/// ANSI colours for one run: all empty when colours are off.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    on: bool,
}

impl Paint {
    pub fn new(on: bool) -> Paint {
        Paint { on }
    }
    /// `s` escaped, then coloured: the only escape codes in a painted
    /// line are the ones added here.
    fn wrap(&self, code: &str, s: &str) -> String {
        let s = escape(s);
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.into_owned()
        }
    }
    pub fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
}

/// Like [`table`], then `paint(row, column, padded cell)` colours each cell
/// (after padding, so escape codes never upset the alignment). Cells are
/// [`escape`]d first, so widths are those of what is printed; write the
/// lines with [`Out::raw`] when `paint` colours them.
pub fn painted_table(
    rows: &[Vec<String>],
    left: usize,
    paint: impl Fn(usize, usize, &str) -> String,
) -> Vec<String> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape(c).into_owned()).collect())
        .collect();
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut width = vec![0; cols];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    rows.iter()
        .enumerate()
        .map(|(ri, r)| {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(width[i] - c.chars().count());
                let cell = if i < left {
                    if i + 1 < r.len() {
                        format!("{c}{pad}")
                    } else {
                        c.clone()
                    }
                } else {
                    format!("{pad}{c}")
                };
                line.push_str(&paint(ri, i, &cell));
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_writes_controls_and_keeps_unicode() {
        assert!(matches!(escape("Ünïcödé/日本"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\u{1b}[31m\r\n\t\u{7}\u{0}\u{9b}\u{202e}é"),
            "a\\u{1b}[31m\\r\\n\\t\\u{7}\\u{0}\\u{9b}\\u{202e}é"
        );
        assert_eq!(escape(&escape("x\u{1b}")), escape("x\u{1b}"));
    }
}
