//! Drawing progress: indicatif bars on a terminal; on anything else (cron,
//! CI, a pipe) a plain line every 10 seconds for long phases, and nothing
//! for short ones; nothing at all with `--quiet`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kindsnap::progress::Progress;

pub enum Bars {
    Quiet,
    Terminal(Mutex<Option<ProgressBar>>),
    Lines(Mutex<Lines>),
}

pub struct Lines {
    name: String,
    total: Option<u64>,
    pos: u64,
    started: Instant,
    last: Instant,
}

const EVERY: Duration = Duration::from_secs(10);

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        if quiet {
            Bars::Quiet
        } else if std::io::stderr().is_terminal() {
            Bars::Terminal(Mutex::new(None))
        } else {
            let now = Instant::now();
            Bars::Lines(Mutex::new(Lines {
                name: String::new(),
                total: None,
                pos: 0,
                started: now,
                last: now,
            }))
        }
    }
}

fn rate(n: u64, d: Duration) -> String {
    let r = n as f64 / d.as_secs_f64().max(1e-3);
    if r >= 10_000.0 {
        format!("{:.0}k/s", r / 1000.0)
    } else {
        format!("{r:.0}/s")
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str, total: Option<u64>) {
        match self {
            Bars::Quiet => {}
            Bars::Terminal(bar) => {
                let pb = match total {
                    Some(n) => ProgressBar::new(n).with_style(
                        ProgressStyle::with_template(
                            "{msg:24!} {bar:30.cyan/blue} {human_pos:>9}/{human_len:9} {per_sec:>10} ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    ),
                    None => ProgressBar::new_spinner().with_style(
                        ProgressStyle::with_template("{spinner} {msg:24!} {human_pos:>9} {per_sec:>10} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                };
                pb.set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
                pb.set_message(super::output::escape(name).into_owned());
                pb.enable_steady_tick(Duration::from_millis(125));
                if let Ok(mut b) = bar.lock() {
                    if let Some(old) = b.replace(pb) {
                        old.finish_and_clear();
                    }
                }
            }
            Bars::Lines(l) => {
                if let Ok(mut l) = l.lock() {
                    let now = Instant::now();
                    *l = Lines {
                        name: super::output::escape(name).into_owned(),
                        total,
                        pos: 0,
                        started: now,
                        last: now,
                    };
                }
            }
        }
    }

    fn advance(&self, n: u64) {
        match self {
            Bars::Quiet => {}
            Bars::Terminal(bar) => {
                if let Ok(b) = bar.lock() {
                    if let Some(pb) = b.as_ref() {
                        pb.inc(n);
                    }
                }
            }
            Bars::Lines(l) => {
                if let Ok(mut l) = l.lock() {
                    l.pos += n;
                    if l.last.elapsed() >= EVERY {
                        l.last = Instant::now();
                        let of = l.total.map(|t| format!("/{t}")).unwrap_or_default();
                        eprintln!(
                            "kindsnap: {}: {}{of} ({})",
                            l.name,
                            l.pos,
                            rate(l.pos, l.started.elapsed())
                        );
                    }
                }
            }
        }
    }

    fn done(&self) {
        match self {
            Bars::Quiet => {}
            Bars::Terminal(bar) => {
                if let Ok(mut b) = bar.lock() {
                    if let Some(pb) = b.take() {
                        pb.finish_and_clear();
                    }
                }
            }
            Bars::Lines(l) => {
                if let Ok(l) = l.lock() {
                    let took = l.started.elapsed();
                    if took >= EVERY {
                        eprintln!(
                            "kindsnap: {}: {} in {:.0} s ({})",
                            l.name,
                            l.pos,
                            took.as_secs_f64(),
                            rate(l.pos, took)
                        );
                    }
                }
            }
        }
    }
}
