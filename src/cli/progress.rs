//! Drawing progress: indicatif bars on a terminal; on anything else (cron,
//! CI, a pipe) a plain line every 10 seconds for long phases, and nothing
//! for short ones; nothing at all with `--quiet`.
//!
//! Every count names its unit (`entities`, `packs`, `snapshots`), rates
//! are rounded for reading (`12.5k entities/s`), and where the total is
//! known the line shows the percentage and an ETA. A restore also gets an
//! overall bar over all its kinds ([`Progress::overall`]), with its own
//! ETA.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use kindsnap::progress::Progress;

pub enum Bars {
    Quiet,
    Terminal(Mutex<Term>),
    Lines(Mutex<Lines>),
}

pub struct Term {
    multi: MultiProgress,
    /// The current phase.
    phase: Option<ProgressBar>,
    /// The whole operation, when its total is known.
    overall: Option<ProgressBar>,
}

pub struct Lines {
    name: String,
    unit: &'static str,
    total: Option<u64>,
    pos: u64,
    started: Instant,
    last: Instant,
    /// The whole operation: total and done.
    overall: Option<(u64, u64, Instant)>,
}

const EVERY: Duration = Duration::from_secs(10);

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        if quiet {
            Bars::Quiet
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
            Bars::Terminal(Mutex::new(Term {
                multi,
                phase: None,
                overall: None,
            }))
        } else {
            let now = Instant::now();
            Bars::Lines(Mutex::new(Lines {
                name: String::new(),
                unit: "entities",
                total: None,
                pos: 0,
                started: now,
                last: now,
                overall: None,
            }))
        }
    }
}

/// What a phase counts, from its name: the library's phases count
/// entities, except these.
pub fn unit_of(phase: &str) -> &'static str {
    const PACKS: [&str; 3] = ["reading packs", "repacking", "rebuilding index"];
    const SNAPSHOTS: [&str; 7] = [
        "checking snapshots",
        "planning repairs",
        "repairing snapshots",
        "rewriting snapshots",
        "finding live data",
        "checking references",
        "attributing damage",
    ];
    if phase == "reading data" {
        "bytes"
    } else if PACKS.contains(&phase) {
        "packs"
    } else if SNAPSHOTS.contains(&phase) {
        "snapshots"
    } else {
        "entities"
    }
}

/// `n` per second, rounded for reading: `850 entities/s`, `12.5k
/// entities/s`, `3.2M entities/s`.
pub fn rate(n: u64, d: Duration, unit: &str) -> String {
    let per_sec = n as f64 / d.as_secs_f64().max(1e-3);
    if unit == "bytes" {
        return format!("{}/s", super::output::bytes(per_sec as u64));
    }
    format!("{} {unit}/s", short_number(per_sec))
}

/// A count rounded for reading: 850, 12.5k, 3.2M.
pub fn short_number(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.1}M", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.1}k", r / 1e3)
    } else if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A duration for people: `45 s`, `3 min 20 s`, `2 h 05 min`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, s % 3600 / 60)
    }
}

fn style(unit: &'static str, total: bool) -> ProgressStyle {
    let template = if unit == "bytes" {
        "{msg:24!} {bar:25.cyan/blue} {percent:>3}% {binary_bytes:>10}/{binary_total_bytes:10} {binary_bytes_per_sec:>12} ETA {eta}"
    } else if total {
        "{msg:24!} {bar:25.cyan/blue} {percent:>3}% {human_pos:>9}/{human_len:9} {unit} {rate:>14} ETA {eta}"
    } else {
        "{spinner} {msg:24!} {human_pos:>9} {unit} {rate:>14} {elapsed}"
    };
    let base = if total {
        ProgressStyle::default_bar()
    } else {
        ProgressStyle::default_spinner()
    };
    ProgressStyle::with_template(template)
        .unwrap_or(base)
        .progress_chars("=> ")
        .with_key(
            "unit",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(unit);
            },
        )
        .with_key(
            "rate",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let per_sec = s.pos() as f64 / s.elapsed().as_secs_f64().max(1e-3);
                let _ = write!(w, "{}/s", short_number(per_sec));
            },
        )
}

impl Progress for Bars {
    fn phase(&self, name: &str, total: Option<u64>) {
        let unit = unit_of(name);
        let name = super::output::escape(name).into_owned();
        match self {
            Bars::Quiet => {}
            Bars::Terminal(t) => {
                let pb = match total {
                    Some(n) => ProgressBar::new(n),
                    None => ProgressBar::new_spinner(),
                }
                .with_style(style(unit, total.is_some()))
                .with_message(name);
                if let Ok(mut t) = t.lock() {
                    if let Some(old) = t.phase.take() {
                        old.finish_and_clear();
                        t.multi.remove(&old);
                    }
                    let pb = match &t.overall {
                        Some(o) => t.multi.insert_before(o, pb),
                        None => t.multi.add(pb),
                    };
                    pb.enable_steady_tick(Duration::from_millis(125));
                    t.phase = Some(pb);
                }
            }
            Bars::Lines(l) => {
                if let Ok(mut l) = l.lock() {
                    let now = Instant::now();
                    l.name = name;
                    l.unit = unit;
                    l.total = total;
                    l.pos = 0;
                    l.started = now;
                    l.last = now;
                }
            }
        }
    }

    fn wants_totals(&self) -> bool {
        !matches!(self, Bars::Quiet)
    }

    fn overall(&self, total: Option<u64>) {
        match self {
            Bars::Quiet => {}
            Bars::Terminal(t) => {
                if let Ok(mut t) = t.lock() {
                    if let Some(old) = t.overall.take() {
                        old.finish_and_clear();
                    }
                    if let Some(n) = total.filter(|n| *n > 0) {
                        let pb = t.multi.add(
                            ProgressBar::new(n)
                                .with_style(style("entities", true))
                                .with_message("overall"),
                        );
                        t.overall = Some(pb);
                    }
                }
            }
            Bars::Lines(l) => {
                if let Ok(mut l) = l.lock() {
                    l.overall = total.map(|n| (n, 0, Instant::now()));
                }
            }
        }
    }

    fn advance(&self, n: u64) {
        match self {
            Bars::Quiet => {}
            Bars::Terminal(t) => {
                if let Ok(t) = t.lock() {
                    if let Some(pb) = &t.phase {
                        pb.inc(n);
                        // An estimated total that was too small grows.
                        if pb.length().is_some_and(|len| pb.position() > len) {
                            pb.set_length(pb.position());
                        }
                    }
                    if let Some(pb) = &t.overall {
                        pb.inc(n);
                    }
                }
            }
            Bars::Lines(l) => {
                if let Ok(mut l) = l.lock() {
                    l.advance(n);
                }
            }
        }
    }

    fn done(&self) {
        match self {
            Bars::Quiet => {}
            Bars::Terminal(t) => {
                if let Ok(mut t) = t.lock() {
                    if let Some(pb) = t.phase.take() {
                        pb.finish_and_clear();
                        t.multi.remove(&pb);
                    }
                }
            }
            Bars::Lines(l) => {
                if let Ok(l) = l.lock() {
                    let took = l.started.elapsed();
                    if took >= EVERY {
                        eprintln!(
                            "kindsnap: {}: {} {} in {} ({})",
                            l.name,
                            l.pos,
                            l.unit,
                            duration(took),
                            rate(l.pos, took, l.unit)
                        );
                    }
                }
            }
        }
    }
}

impl Lines {
    fn advance(&mut self, n: u64) {
        self.pos += n;
        // An estimated total that was too small grows.
        if let Some(t) = self.total.as_mut() {
            *t = (*t).max(self.pos);
        }
        if let Some((_, done, _)) = &mut self.overall {
            *done += n;
        }
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        let took = self.started.elapsed();
        let mut line = format!("kindsnap: {}: {}", self.name, self.pos);
        if let Some(t) = self.total.filter(|t| *t > 0) {
            line.push_str(&format!("/{t} {} ({}%", self.unit, self.pos * 100 / t));
            line.push_str(&format!(", {}", rate(self.pos, took, self.unit)));
            line.push_str(&eta(self.pos, t, took));
            line.push(')');
        } else {
            line.push_str(&format!(
                " {} ({})",
                self.unit,
                rate(self.pos, took, self.unit)
            ));
        }
        if let Some((t, done, since)) = self.overall.filter(|o| o.0 > 0) {
            line.push_str(&format!(
                "; overall {}%{}",
                done * 100 / t,
                eta(done, t, since.elapsed())
            ));
        }
        eprintln!("{line}");
    }
}

/// `, ETA 3 min 20 s` from the pace so far; empty before any progress.
fn eta(done: u64, total: u64, took: Duration) -> String {
    if done == 0 || done >= total {
        return String::new();
    }
    let left = took.as_secs_f64() * (total - done) as f64 / done as f64;
    format!(", ETA {}", duration(Duration::from_secs_f64(left)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations_read_well() {
        assert_eq!(
            rate(125_193, Duration::from_secs(1), "entities"),
            "125.2k entities/s"
        );
        assert_eq!(rate(850, Duration::from_secs(1), "packs"), "850 packs/s");
        assert_eq!(rate(3 << 20, Duration::from_secs(2), "bytes"), "1.5 MiB/s");
        assert_eq!(duration(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(duration(Duration::from_millis(15)), "15 ms");
        assert_eq!(unit_of("reading packs"), "packs");
        assert_eq!(unit_of("reading data"), "bytes");
        assert_eq!(unit_of("restoring Post"), "entities");
        assert_eq!(eta(50, 100, Duration::from_secs(10)), ", ETA 10.0 s");
    }
}
