//! How long kindsnap waits for a server: the Datastore API, a PostgreSQL
//! server, an object store. One value, resolved by the CLI (`--timeout`,
//! `KINDSNAP_TIMEOUT`, `timeout` in kindsnap.toml, else the default) and
//! handed to every connection, so that a server which accepts the
//! connection and never answers ends the command with
//! [`crate::Error::Timeout`] instead of hanging a nightly job.
//!
//! This module only holds the numbers; each client applies them in its own
//! terms (docs/datastore.md, docs/sql.md, docs/storage.md). It never reads
//! the environment.

use std::time::Duration;

/// Seconds kindsnap waits for an answer unless told otherwise. Long enough
/// for Cloud Datastore's own 60-second deadline to answer first.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// The longest a connection may take to open, whatever the answer timeout:
/// a host that drops packets is found out quickly.
const MAX_CONNECT: Duration = Duration::from_secs(10);

/// How to raise the timeout, for messages.
pub const TIMEOUT_KNOBS: &str = "--timeout (or KINDSNAP_TIMEOUT, or `timeout` in kindsnap.toml)";

/// TCP keepalive probes on every connection start after this much
/// silence, so a peer that vanished (a dropped NAT entry, a dead host) is
/// noticed by the kernel even between requests.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The longest wait for a server's answer: a request's response, the
    /// next batch of rows, the next bytes of a download.
    pub answer: Duration,
    /// The longest wait for a connection to open (TCP, and for PostgreSQL
    /// the start-up and authentication exchange).
    pub connect: Duration,
}

impl Timeouts {
    /// Wait up to `answer` for answers; connections get the same, at most
    /// 10 s.
    pub fn new(answer: Duration) -> Timeouts {
        Timeouts {
            answer,
            connect: answer.min(MAX_CONNECT),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::new(Duration::from_secs(DEFAULT_TIMEOUT_SECS))
    }
}

/// A duration as messages show it: `30 s`, `2.5 s`.
pub fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A timeout given as a number of seconds (a URL parameter, an
/// environment variable, a flag): a positive number, fractions allowed.
pub fn parse_seconds(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0 && secs <= 86_400.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_is_capped_and_numbers_parse() {
        let t = Timeouts::new(Duration::from_secs(2));
        assert_eq!(
            (t.answer, t.connect),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        assert_eq!(Timeouts::default().connect, Duration::from_secs(10));
        assert_eq!(parse_seconds("2.5"), Some(Duration::from_millis(2500)));
        for bad in ["0", "-1", "x", "", "inf", "1e9"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5 s");
    }
}
