//! Output helpers: a stdout writer whose broken-pipe errors end the program
//! quietly, human-readable sizes, aligned tables.

use std::io::{self, Write};

pub struct Out {
    inner: io::BufWriter<io::StdoutLock<'static>>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            inner: io::BufWriter::new(io::stdout().lock()),
        }
    }
    pub fn line(&mut self, s: impl AsRef<str>) -> io::Result<()> {
        self.inner.write_all(s.as_ref().as_bytes())?;
        self.inner.write_all(b"\n")
    }
    pub fn json(&mut self, v: &serde_json::Value) -> io::Result<()> {
        let s = serde_json::to_string_pretty(v).unwrap_or_default();
        self.line(s)
    }
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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

pub fn time(us: i64) -> String {
    let s = kindsnap::model::json::format_timestamp(us - us.rem_euclid(1_000_000));
    s.replace('T', " ").trim_end_matches('Z').to_string()
}

/// Left-align the first `left` columns, right-align the rest.
pub fn table(rows: &[Vec<String>], left: usize) -> Vec<String> {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut width = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i] - c.chars().count();
                if i < left {
                    line.push_str(c);
                    if i + 1 < r.len() {
                        line.push_str(&" ".repeat(pad));
                    }
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                }
            }
            line
        })
        .collect()
}

pub fn kind_label(namespace: &str, kind: &str) -> String {
    if namespace.is_empty() {
        kind.to_string()
    } else {
        format!("{namespace}/{kind}")
    }
}
