//! Cloud Datastore / Firestore in Datastore mode / the emulator, over the
//! v1 REST API with JSON.
//!
//! Locations:
//! - `datastore://HOST:PORT/PROJECT` — the emulator or a v1-compatible dev
//!   server, plain HTTP, no credentials;
//! - `datastore:PROJECT` — production, `https://datastore.googleapis.com`,
//!   with Application Default Credentials;
//! - `datastore:` — `DATASTORE_EMULATOR_HOST` and `DATASTORE_PROJECT_ID`
//!   (or `DATASTORE_DATASET`), the way Google's client libraries read them.
//!
//! Query parameters: `database=NAME` (a named database), `namespaces=a,b`
//! (only these; `-` is the default namespace), `concurrency=N` (kinds read
//! or commits in flight at once), `read_time=RFC3339` (a consistent
//! point-in-time snapshot), `timeout=SECONDS` (how long to wait for an
//! answer; else the caller's [`Timeouts`]), `max_rps=N` (requests per
//! second at most, shared by every request in flight).
//!
//! A snapshot reads each kind in key order. A kind bigger than one page is
//! split into key ranges read in parallel (`__key__` filters, ordered by
//! `__key__`), with split points sampled the way Google's query splitters
//! do (a keys-only query ordered by `__scatter__`); the ranges are passed
//! on in order, each fetching at most a few pages ahead, so a kind's
//! entities still arrive in key order and memory stays bounded. A server
//! without `__scatter__` (the emulator) is read with one cursor per kind.
//!
//! Every call goes through [`Client::call`], the one place that retries:
//! ABORTED, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and INTERNAL
//! (and, once the server has answered before, a refused or dropped
//! connection) with exponential backoff and jitter, honouring Retry-After.
//! A request the server does not answer within the timeout is abandoned
//! and tried again at most twice more, then the call fails with
//! [`Error::Timeout`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod changed;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value as J};

use super::{
    ChangedProperty, Encoded, EncodedBatch, EntitySource, EntityTarget, KindOptions, ParentState,
    ReadCounts, ReadInfo, Rejection,
};
use crate::error::{Error, Result};
use crate::filter::KindFilter;
use crate::model::{json as mjson, ElementId, Entity, Key, PartitionId, Value, ValueKind};
use crate::net::{self, Timeouts};

const PRODUCTION: &str = "https://datastore.googleapis.com";
const SCOPES: &[&str] = &["https://www.googleapis.com/auth/datastore"];
/// Mutations per commit to start with: what emulators and older servers
/// accept. Halved when a server says a batch is too large.
const DEFAULT_MUTATIONS: usize = 500;
/// Stay well under the 10 MiB request limit.
const MAX_REQUEST_BYTES: usize = 9 * 1024 * 1024;
/// Datastore's entity size limit (the serialized entity, key included).
const MAX_ENTITY_BYTES: usize = 1_048_572;
const MAX_INDEXED_BYTES: usize = 1500;
const DEFAULT_CONCURRENCY: usize = 4;
/// Queries in flight at once in a snapshot (kinds and key ranges of
/// kinds): reading is waiting for round trips, not CPU, so more than the
/// commits of a restore.
const DEFAULT_READ_CONCURRENCY: usize = 8;
/// Pages a key range may fetch ahead of the one being passed on: with
/// ranges of about this many pages, every range in progress runs at full
/// speed and memory stays at (ranges at once) × (this + 1) pages.
const RANGE_PAGES_AHEAD: usize = 4;
/// Key ranges per kind at most.
const MAX_RANGES: usize = 512;
/// Scatter keys sampled per range read at once (Apache Beam's and
/// google-cloud-java's QuerySplitter use 32 per split).
const SAMPLES_PER_SPLIT: usize = 32;
const MAX_ATTEMPTS: u32 = 10;
/// Tries of a request that the server does not answer in time: each has
/// waited the whole timeout already.
const TIMEOUT_ATTEMPTS: u32 = 3;

/// A parsed `datastore:` location.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `http://host:port` or the production URL.
    pub base: String,
    pub project: String,
    pub database: String,
    pub namespaces: Option<Vec<String>>,
    pub concurrency: Option<usize>,
    pub read_time: Option<String>,
    /// `timeout=SECONDS`: overrides the caller's answer timeout.
    pub timeout: Option<Duration>,
    /// `max_rps=N`: requests per second at most (all requests together).
    pub max_rps: Option<f64>,
    /// `ramp_up=START/PERCENT/MINUTES` (or `off`): restores write at most
    /// START entities a second, PERCENT more every MINUTES. Google's
    /// 500/50/5 rule by default in production; off for the emulator and
    /// dev servers (`datastore://`).
    pub ramp_up: Option<RampUp>,
    /// Production: use Application Default Credentials.
    pub auth: bool,
}

impl Endpoint {
    pub fn parse(spec: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::BadLocation {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        let (head, query) = match spec.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (spec, None),
        };
        let mut ep = if let Some(rest) = head.strip_prefix("datastore://") {
            let (host, project) = rest
                .split_once('/')
                .ok_or_else(|| bad("expected datastore://HOST:PORT/PROJECT"))?;
            if host.is_empty() || project.is_empty() || project.contains('/') {
                return Err(bad("expected datastore://HOST:PORT/PROJECT"));
            }
            Endpoint::new(format!("http://{host}"), project, false)
        } else if let Some(project) = head.strip_prefix("datastore:") {
            if project.is_empty() {
                Self::from_env(spec)?
            } else {
                Endpoint::new(PRODUCTION.into(), project, true)
            }
        } else {
            return Err(bad("not a datastore location"));
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "database" => ep.database = v.to_string(),
                "namespaces" => {
                    ep.namespaces = Some(
                        v.split(',')
                            .map(|n| {
                                if n == "-" {
                                    String::new()
                                } else {
                                    n.to_string()
                                }
                            })
                            .collect(),
                    )
                }
                "concurrency" => {
                    let n: usize = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("concurrency must be a number ≥ 1"))?;
                    ep.concurrency = Some(n);
                }
                "read_time" => {
                    mjson::parse_timestamp(v).map_err(|e| bad(&e))?;
                    ep.read_time = Some(v.to_string());
                }
                "max_rps" => {
                    let n: f64 = v
                        .parse()
                        .ok()
                        .filter(|n: &f64| n.is_finite() && *n > 0.0)
                        .ok_or_else(|| bad("max_rps must be a number of requests per second > 0"))?;
                    ep.max_rps = Some(n);
                }
                "ramp_up" => ep.ramp_up = RampUp::parse(v).map_err(|e| bad(&e))?,
                "timeout" => {
                    ep.timeout = Some(
                        net::parse_seconds(v)
                            .ok_or_else(|| bad("timeout must be a number of seconds > 0"))?,
                    );
                }
                _ => {
                    return Err(bad(&format!(
                    "unknown parameter `{k}` (known: database, namespaces, concurrency, read_time, timeout, max_rps, ramp_up)"
                )))
                }
            }
        }
        Ok(ep)
    }

    fn new(base: String, project: &str, auth: bool) -> Endpoint {
        Endpoint {
            base,
            project: project.to_string(),
            database: String::new(),
            namespaces: None,
            concurrency: None,
            read_time: None,
            timeout: None,
            max_rps: None,
            ramp_up: auth.then_some(RampUp::GOOGLE),
            auth,
        }
    }

    fn from_env(spec: &str) -> Result<Endpoint> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let project = var("DATASTORE_PROJECT_ID")
            .or_else(|| var("DATASTORE_DATASET"))
            .or_else(|| var("GOOGLE_CLOUD_PROJECT"));
        match (var("DATASTORE_EMULATOR_HOST"), project) {
            (Some(host), Some(p)) => {
                let host = host.trim_start_matches("http://").trim_end_matches('/');
                Ok(Endpoint::new(format!("http://{host}"), &p, false))
            }
            (None, Some(p)) => Ok(Endpoint::new(PRODUCTION.into(), &p, true)),
            (_, None) => Err(Error::BadLocation {
                spec: spec.to_string(),
                why: "`datastore:` alone needs DATASTORE_PROJECT_ID (and DATASTORE_EMULATOR_HOST for the emulator); or write datastore://HOST:PORT/PROJECT or datastore:PROJECT".into(),
            }),
        }
    }

    /// The stable identity (no tuning parameters).
    pub fn id(&self) -> String {
        let mut s = if self.auth {
            format!("datastore:{}", self.project)
        } else {
            format!(
                "datastore://{}/{}",
                self.base.trim_start_matches("http://"),
                self.project
            )
        };
        if !self.database.is_empty() {
            s.push_str("?database=");
            s.push_str(&self.database);
        }
        s
    }
}

/// Google's ramp-up rule for writes to a new or cold key range ("500/50/5":
/// start at 500 operations a second and add 50% every 5 minutes), so a big
/// restore into a live production database does not overload it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RampUp {
    /// Writes per second at the start.
    pub start: f64,
    /// Growth per step, as a fraction (0.5 is 50%).
    pub growth: f64,
    pub every: Duration,
}

impl RampUp {
    pub const GOOGLE: RampUp = RampUp {
        start: 500.0,
        growth: 0.5,
        every: Duration::from_secs(300),
    };

    /// `off`, or `START/PERCENT/MINUTES` (`500/50/5`).
    pub fn parse(text: &str) -> std::result::Result<Option<RampUp>, String> {
        if text == "off" {
            return Ok(None);
        }
        let parts: Vec<f64> = text
            .split('/')
            .map(|p| p.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                format!("ramp_up `{text}`: give START/PERCENT/MINUTES (as 500/50/5) or off")
            })?;
        match parts[..] {
            [start, pct, min]
                if start > 0.0 && pct >= 0.0 && min > 0.0 && (start + pct + min).is_finite() =>
            {
                Ok(Some(RampUp {
                    start,
                    growth: pct / 100.0,
                    every: Duration::from_secs_f64(min * 60.0),
                }))
            }
            _ => Err(format!(
                "ramp_up `{text}`: give START/PERCENT/MINUTES, each > 0 (as 500/50/5), or off"
            )),
        }
    }

    /// Writes per second allowed `elapsed` after the first write.
    fn rate(&self, elapsed: Duration) -> f64 {
        let steps = (elapsed.as_secs_f64() / self.every.as_secs_f64()).floor();
        self.start * (1.0 + self.growth).powf(steps.min(200.0))
    }
}

/// Paces writes to a [`RampUp`]: each commit of n entities waits until the
/// n writes fit the rate at that moment, however many commits are in flight.
struct Ramp {
    rule: RampUp,
    began: tokio::time::Instant,
    next: Mutex<tokio::time::Instant>,
}

impl Ramp {
    fn new(rule: RampUp) -> Ramp {
        let now = tokio::time::Instant::now();
        Ramp {
            rule,
            began: now,
            next: Mutex::new(now),
        }
    }

    async fn wait(&self, writes: usize) {
        let at = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let at = (*next).max(tokio::time::Instant::now());
            let rate = self.rule.rate(at - self.began);
            *next = at + Duration::from_secs_f64(writes as f64 / rate);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

// ---------------------------------------------------------------------------
// The HTTP client

/// A failed call, classified.
#[derive(Debug, Clone)]
struct CallError {
    /// gRPC status name (`INVALID_ARGUMENT` …) or `HTTP` / `CONNECT`.
    status: String,
    http: u16,
    message: String,
}

/// The status of a call the caller's cancellation token ended.
const CANCELLED: &str = "KINDSNAP_CANCELLED";

impl CallError {
    fn cancelled() -> CallError {
        CallError {
            status: CANCELLED.into(),
            http: 0,
            message: "cancelled".into(),
        }
    }

    fn transient(&self) -> bool {
        matches!(
            self.status.as_str(),
            "ABORTED" | "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "RESOURCE_EXHAUSTED" | "INTERNAL"
        )
    }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    ep: Arc<Endpoint>,
    auth: Option<Arc<dyn gcp_auth::TokenProvider>>,
    /// Once the server has answered, a lost connection is worth retrying
    /// (it is restarting); before that it means a wrong address.
    answered: Arc<std::sync::atomic::AtomicBool>,
    /// Test knob: no sleeping between retries beyond this (ms).
    max_backoff_ms: u64,
    /// How long to wait for an answer, and where that was set.
    timeouts: Timeouts,
    knob: &'static str,
    /// `max_rps`: one pacer for every request of this client.
    pacer: Option<Arc<Pacer>>,
    /// `ramp_up`: one pace for the writes of every commit of this client.
    ramp: Option<Arc<Ramp>>,
    /// Read at this moment (RFC 3339) rather than the location's
    /// `read_time`: the changed reads of an incremental snapshot.
    read_time: Option<Arc<str>>,
    /// Cancelled: every call in flight, and every wait between retries,
    /// ends at once with `Error::Interrupted`.
    cancel: crate::interrupt::Cancel,
}

/// A token bucket holding one token, refilled at `max_rps`: requests
/// start at least 1/`max_rps` apart, however many tasks send them, so any
/// one second sees at most `max_rps` + 1 of them.
struct Pacer {
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(rps: f64) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / rps),
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let at = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

impl Client {
    /// The key of an entity (or key-only) result the server sent.
    fn parse_key(&self, entity_json: &str) -> Result<Key> {
        #[derive(Deserialize)]
        struct KeyOnly {
            key: Box<RawValue>,
        }
        let unreadable = |why: String| Error::DatastoreAnswer {
            endpoint: self.ep.base.clone(),
            what: "a result".into(),
            why,
        };
        let k: KeyOnly =
            serde_json::from_str(entity_json).map_err(|e| unreadable(format!("no key: {e}")))?;
        let text = format!("{{\"key\":{},\"properties\":{{}}}}", k.key.get());
        mjson::entity_from_json(&text)
            .map(|e| e.key)
            .map_err(|e| unreadable(format!("its key does not parse: {e}")))
    }

    async fn new(ep: Endpoint, timeouts: Timeouts) -> Result<Client> {
        let (timeouts, knob) = match ep.timeout {
            Some(t) => (Timeouts::new(t), "`timeout=` in the datastore location"),
            None => (timeouts, net::TIMEOUT_KNOBS),
        };
        // The read timeout bounds each wait for the server's next bytes,
        // the response's first ones included; the total one a whole
        // request (a 9 MiB commit going up a slow line takes a while).
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120).max(timeouts.answer * 4))
            .read_timeout(timeouts.answer)
            .connect_timeout(timeouts.connect)
            .tcp_keepalive(net::KEEPALIVE)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| Error::Setup {
                what: "set up the HTTP client",
                source: Box::new(e),
            })?;
        let auth = if ep.auth {
            // Finding credentials may ask the metadata server, which can
            // be as silent as any other.
            let found = tokio::time::timeout(timeouts.answer, gcp_auth::provider())
                .await
                .map_err(|_| Error::Timeout {
                    service: "credentials provider",
                    endpoint: "(Application Default Credentials)".into(),
                    timeout: timeouts.answer,
                    waiting: format!("looking for credentials for project {}", ep.project),
                    knob: knob.into(),
                })?;
            match found {
                Ok(p) => Some(p),
                Err(e) => {
                    // The library's own words (type names, serde paths)
                    // only with -vv; the user gets what is wrong.
                    tracing::debug!("credentials provider: {e}");
                    return Err(Error::NoCredentials {
                        project: ep.project.clone(),
                        why: credentials_problem(&e.to_string()),
                    });
                }
            }
        } else {
            None
        };
        let ep_pacer = ep.max_rps.map(|r| Arc::new(Pacer::new(r)));
        let ramp = ep.ramp_up.map(|r| Arc::new(Ramp::new(r)));
        let max_backoff_ms = std::env::var("KINDSNAP_MAX_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        Ok(Client {
            http,
            ep: Arc::new(ep),
            auth,
            answered: Default::default(),
            max_backoff_ms,
            timeouts,
            knob,
            pacer: ep_pacer,
            ramp,
            read_time: None,
            cancel: Default::default(),
        })
    }

    fn url(&self, method: &str) -> String {
        format!("{}/v1/projects/{}:{method}", self.ep.base, self.ep.project)
    }

    /// The request for one call, with an access token where one is needed.
    async fn request(
        &self,
        method: &str,
        body: &[u8],
    ) -> std::result::Result<reqwest::RequestBuilder, CallError> {
        let req = self
            .http
            .post(self.url(method))
            .header("content-type", "application/json")
            .body(body.to_vec());
        let Some(auth) = &self.auth else {
            return Ok(req);
        };
        let token = tokio::time::timeout(self.timeouts.answer, auth.token(SCOPES))
            .await
            .map_err(|_| CallError {
                status: "TIMEOUT".into(),
                http: 0,
                message: "an access token".into(),
            })?
            .map_err(|e| CallError {
                status: "UNAUTHENTICATED".into(),
                http: 401,
                message: format!("cannot get an access token: {e}"),
            })?;
        Ok(req.bearer_auth(token.as_str()))
    }

    /// One try of a call: the answer body, or the error and the server's
    /// Retry-After.
    async fn once(
        &self,
        method: &str,
        body: &[u8],
    ) -> std::result::Result<Vec<u8>, (CallError, Option<Duration>)> {
        if let Some(p) = &self.pacer {
            p.wait().await;
        }
        let req = self.request(method, body).await.map_err(|e| (e, None))?;
        let resp = req
            .send()
            .await
            .map_err(|e| (send_error(method, &e), None))?;
        let http = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.bytes().await.map_err(|e| {
            let err = if e.is_timeout() {
                CallError {
                    status: "TIMEOUT".into(),
                    http,
                    message: format!("the rest of the answer to {method}"),
                }
            } else {
                CallError {
                    status: "UNAVAILABLE".into(),
                    http,
                    message: format!("the answer was cut off: {e}"),
                }
            };
            (err, None)
        })?;
        self.answered.store(true, Ordering::Relaxed);
        if (200..300).contains(&http) {
            if !looks_like_json(&bytes) {
                return Err((not_datastore(http, &content_type, &bytes), None));
            }
            return Ok(bytes.to_vec());
        }
        Err((error_answer(http, &content_type, &bytes), retry_after))
    }

    /// One API call with retries. Returns the answer body.
    async fn call(&self, method: &str, body: &J) -> std::result::Result<Vec<u8>, CallError> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        self.call_raw(method, &body).await
    }

    async fn call_raw(&self, method: &str, body: &[u8]) -> std::result::Result<Vec<u8>, CallError> {
        let (mut attempt, mut timeouts) = (0u32, 0u32);
        loop {
            attempt += 1;
            let once = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(CallError::cancelled()),
                once = self.once(method, body) => once,
            };
            let (mut err, retry_after) = match once {
                Ok(bytes) => return Ok(bytes),
                Err(e) => e,
            };
            let retry = if err.status == "TIMEOUT" {
                timeouts += 1;
                if timeouts >= TIMEOUT_ATTEMPTS {
                    err.message = format!("{}; {timeouts} tries", err.message);
                    return Err(err);
                }
                true
            } else {
                err.transient()
                    || (err.status == "CONNECT" && self.answered.load(Ordering::Relaxed))
            };
            if !retry || attempt >= MAX_ATTEMPTS {
                return Err(err);
            }
            let base = 100u64
                .saturating_mul(1 << attempt.min(10))
                .min(self.max_backoff_ms);
            let jitter = rand::random::<u64>() % (base / 2 + 1);
            let mut wait = Duration::from_millis(base / 2 + jitter);
            if let Some(ra) = retry_after {
                wait = wait.max(ra);
            }
            tracing_note(&format!(
                "{method}: {} {}; retrying in {wait:?} (attempt {attempt})",
                err.status, err.message
            ));
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(CallError::cancelled()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Turn a final call error into the user's one line.
    fn explain(&self, method: &str, e: CallError) -> Error {
        let ep = &self.ep;
        if e.status == CANCELLED {
            return Error::Interrupted;
        }
        if e.status == "TIMEOUT" {
            return Error::Timeout {
                service: "datastore",
                endpoint: ep
                    .base
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .to_string(),
                timeout: if e.message.starts_with("a connection") {
                    self.timeouts.connect
                } else {
                    self.timeouts.answer
                },
                waiting: format!("waiting for {}", e.message),
                knob: self.knob.into(),
            };
        }
        match e.status.as_str() {
            "CONNECT" => Error::DatastoreUnreachable {
                endpoint: ep.base.clone(),
                why: e.message,
            },
            "UNAUTHENTICATED" => Error::DatastoreDenied {
                who: format!("the datastore at {} refused the credentials", ep.base),
                http: e.http,
                message: e.message,
                hint: credentials_hint(ep),
            },
            "PERMISSION_DENIED" => Error::DatastoreDenied {
                who: format!("no permission on project {}", ep.project),
                http: e.http,
                message: e.message,
                hint: credentials_hint(ep),
            },
            "NOT_FOUND" if method != "commit" => Error::DatastoreNotFound {
                endpoint: ep.base.clone(),
                call: method.to_string(),
                message: e.message,
                project: ep.project.clone(),
                database: ep.database.clone(),
            },
            "NOT_DATASTORE" | "SHAPE" => Error::NotDatastore {
                endpoint: ep.base.clone(),
                why: e.message,
            },
            _ => Error::DatastoreCall {
                endpoint: ep.base.clone(),
                call: method.to_string(),
                attempts: e.transient().then_some(MAX_ATTEMPTS),
                status: e.status,
                message: e.message,
            },
        }
    }

    fn partition(&self, namespace: &str) -> J {
        let mut p = json!({ "projectId": self.ep.project });
        if !self.ep.database.is_empty() {
            p["databaseId"] = json!(self.ep.database);
        }
        if !namespace.is_empty() {
            p["namespaceId"] = json!(namespace);
        }
        p
    }

    fn read_options(&self) -> Option<J> {
        match &self.read_time {
            Some(t) => Some(json!({ "readTime": &**t })),
            None => self.ep.read_time.as_ref().map(|t| json!({ "readTime": t })),
        }
    }

    /// This client, reading at `time` (RFC 3339).
    fn at(&self, time: &str) -> Client {
        Client {
            read_time: Some(time.into()),
            ..self.clone()
        }
    }

    /// One batch of a query.
    async fn run_query(
        &self,
        namespace: &str,
        query: &J,
        cursor: Option<&str>,
    ) -> Result<QueryBatch> {
        self.try_query(namespace, query, cursor)
            .await
            .map_err(|e| self.explain_query(e))
    }

    /// One batch of a query; the error as the server gave it, for callers
    /// that can do without (sampling `__scatter__`).
    async fn try_query(
        &self,
        namespace: &str,
        query: &J,
        cursor: Option<&str>,
    ) -> std::result::Result<QueryBatch, CallError> {
        let mut q = query.clone();
        if let Some(c) = cursor {
            q["startCursor"] = json!(c);
        }
        let mut body = json!({ "partitionId": self.partition(namespace), "query": q });
        if !self.ep.database.is_empty() {
            body["databaseId"] = json!(self.ep.database);
        }
        if let Some(ro) = self.read_options() {
            body["readOptions"] = ro;
        }
        let bytes = self.call("runQuery", &body).await?;
        #[derive(Deserialize)]
        struct Resp {
            batch: QueryBatch,
        }
        serde_json::from_slice::<Resp>(&bytes)
            .map(|r| r.batch)
            .map_err(|e| CallError {
                status: "SHAPE".into(),
                http: 200,
                message: format!("answered runQuery with an unexpected shape: {e}"),
            })
    }

    fn explain_query(&self, e: CallError) -> Error {
        if (self.ep.read_time.is_some() || self.read_time.is_some())
            && e.status == "INVALID_ARGUMENT"
            && e.message.contains("readTime")
        {
            Error::DatastoreUnsupported {
                endpoint: self.ep.base.clone(),
                feature: "--read-time / read_time",
                message: e.message,
                hint: "snapshot without it",
            }
        } else {
            self.explain("runQuery", e)
        }
    }

    /// All keys of a keys-only query (names of namespaces or kinds), paged.
    async fn metadata(&self, namespace: &str, kind: &str) -> Result<Vec<Key>> {
        let query = json!({
            "kind": [{ "name": kind }],
            "projection": [{ "property": { "name": "__key__" } }],
        });
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let batch = self.run_query(namespace, &query, cursor.as_deref()).await?;
            for r in batch.entity_results {
                out.push(self.parse_key(r.entity.get())?);
            }
            if batch.more_results != "NOT_FINISHED" || batch.end_cursor.is_none() {
                return Ok(out);
            }
            cursor = batch.end_cursor;
        }
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        if let Some(ns) = &self.ep.namespaces {
            return Ok(ns.clone());
        }
        let keys = self.metadata("", "__namespace__").await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| match k.path.last().map(|e| e.id.clone()) {
                Some(ElementId::Name(n)) => Some(n),
                Some(ElementId::Id(_)) => Some(String::new()),
                _ => None,
            })
            .collect())
    }

    async fn kinds(&self, namespace: &str) -> Result<Vec<String>> {
        let keys = self.metadata(namespace, "__kind__").await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| match k.path.last().map(|e| e.id.clone()) {
                Some(ElementId::Name(n)) if !KindFilter::is_internal(&n) => Some(n),
                _ => None,
            })
            .collect())
    }
}

fn tracing_note(msg: &str) {
    if std::env::var_os("KINDSNAP_DEBUG").is_some() {
        eprintln!("kindsnap: {msg}");
    }
}

fn credentials_hint(ep: &Endpoint) -> String {
    if ep.auth {
        let which = match std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
            Ok(p) if !p.is_empty() => format!("the key file {p} (GOOGLE_APPLICATION_CREDENTIALS)"),
            _ => "Application Default Credentials (gcloud's, or the metadata server)".into(),
        };
        format!(
            "kindsnap used {which}; grant it the Cloud Datastore User role on the project, or run `gcloud auth application-default login` as someone who has it"
        )
    } else {
        "this is a datastore:// (no credentials) location; for production use datastore:PROJECT"
            .into()
    }
}

/// A request that got no answer: our own deadline (connecting, or
/// waiting for the answer; the server's own DEADLINE_EXCEEDED is an
/// answer) or no connection.
fn send_error(method: &str, e: &reqwest::Error) -> CallError {
    let mut why = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        why = s.to_string();
        src = s.source();
    }
    let (status, message) = if e.is_timeout() && e.is_connect() {
        ("TIMEOUT", "a connection".to_string())
    } else if e.is_timeout() {
        ("TIMEOUT", format!("the answer to {method}"))
    } else {
        ("CONNECT", why)
    };
    CallError {
        status: status.into(),
        http: 0,
        message,
    }
}

/// A non-2xx answer, classified by its Google error body (or, without
/// one, by its HTTP status).
fn error_answer(http: u16, content_type: &str, bytes: &[u8]) -> CallError {
    #[derive(Deserialize)]
    struct Wrapper {
        error: ErrorBody,
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        message: String,
        #[serde(default)]
        status: String,
    }
    match serde_json::from_slice::<Wrapper>(bytes) {
        Ok(w) => CallError {
            status: if w.error.status.is_empty() {
                status_of_http(http).into()
            } else {
                w.error.status
            },
            http,
            message: w.error.message,
        },
        Err(_) if http == 404 || http == 405 => CallError {
            status: "NOT_FOUND".into(),
            http,
            message: format!("HTTP {http} {}", snippet(bytes)),
        },
        Err(_) if matches!(http, 502..=504 | 429) => CallError {
            status: status_of_http(http).into(),
            http,
            message: format!("HTTP {http}"),
        },
        Err(_) => not_datastore(http, content_type, bytes),
    }
}

fn status_of_http(http: u16) -> &'static str {
    match http {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 | 502 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

fn looks_like_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .map(|b| *b == b'{')
        .unwrap_or(false)
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]);
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("`{}`", s.trim())
}

fn not_datastore(http: u16, content_type: &str, bytes: &[u8]) -> CallError {
    CallError {
        status: "NOT_DATASTORE".into(),
        http,
        message: format!(
            "is not a Datastore API: it answered HTTP {http} with {} {}; check the host and port",
            if content_type.is_empty() {
                "no content type"
            } else {
                content_type
            },
            snippet(bytes)
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryBatch {
    #[serde(default)]
    entity_results: Vec<EntityResult>,
    #[serde(default)]
    end_cursor: Option<String>,
    #[serde(default)]
    more_results: String,
    /// The moment the batch was read at (RFC 3339), where the server says.
    #[serde(default)]
    read_time: Option<String>,
}

#[derive(Deserialize)]
struct EntityResult {
    entity: Box<RawValue>,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Setup {
            what: "start the I/O runtime",
            source: Box::new(e),
        })
}

// ---------------------------------------------------------------------------
// Source

pub struct DatastoreSource {
    ep: Endpoint,
    timeouts: Timeouts,
    cancel: crate::interrupt::Cancel,
    filter: Option<KindFilter>,
    kinds: Mutex<Vec<String>>,
    kind_options: std::collections::BTreeMap<String, KindOptions>,
    /// Reads of the last scan per kind (same order as `kinds`).
    reads: Vec<(String, String, ReadCounts)>,
    /// Read only what changed, where there is a parent.
    changed: Option<ChangedProperty>,
    /// How the last scan went.
    info: Option<ReadInfo>,
}

impl DatastoreSource {
    pub fn open(spec: &str, timeouts: &Timeouts) -> Result<DatastoreSource> {
        Ok(DatastoreSource {
            ep: Endpoint::parse(spec)?,
            timeouts: *timeouts,
            cancel: Default::default(),
            filter: None,
            kinds: Mutex::new(Vec::new()),
            kind_options: Default::default(),
            reads: Vec::new(),
            changed: None,
            info: None,
        })
    }
}

/// Origins of scanned entities: the kind's number in the high bits, the
/// entity's 1-based position within its kind (in key order) in the low 40.
#[derive(Debug, Default)]
struct Positions {
    per_kind: Vec<u64>,
}

impl Positions {
    fn next(&mut self, kind_no: u32) -> u64 {
        let k = kind_no as usize;
        if self.per_kind.len() <= k {
            self.per_kind.resize(k + 1, 0);
        }
        self.per_kind[k] += 1;
        ((kind_no as u64) << 40) | (self.per_kind[k] & ((1 << 40) - 1))
    }

    fn decode(origin: u64) -> (u32, u64) {
        ((origin >> 40) as u32, origin & ((1 << 40) - 1))
    }
}

/// What the scan tasks send the caller's thread, each about kind number
/// `.0`.
enum Msg {
    /// A page of entities, encoded on a runtime thread.
    Entities(u32, EncodedBatch),
    /// A page of the changed query of an incremental kind.
    Changed(u32, EncodedBatch),
    /// A page of an incremental kind's keys-only scan, in key order: each
    /// key's order-preserving bytes and the key.
    Keys(u32, Vec<(Vec<u8>, Key)>),
    /// How the kind is read.
    Mode(u32, super::KindRead),
    /// The kind's keys-only scan is complete.
    Done(u32),
}

type Page = Result<Msg>;

impl EntitySource for DatastoreSource {
    fn set_cancel(&mut self, cancel: &crate::interrupt::Cancel) {
        self.cancel = cancel.clone();
    }

    /// The endpoint, and the namespaces when `namespaces=` chooses some: a
    /// snapshot of a few namespaces is another history than one of all
    /// (it must not take the whole datastore's snapshot as its parent).
    fn source_id(&self) -> String {
        let mut id = self.ep.id();
        if let Some(ns) = &self.ep.namespaces {
            let mut names: Vec<&str> = ns
                .iter()
                .map(|n| if n.is_empty() { "-" } else { n.as_str() })
                .collect();
            names.sort_unstable();
            names.dedup();
            id.push(if id.contains('?') { '&' } else { '?' });
            id.push_str("namespaces=");
            id.push_str(&names.join(","));
        }
        id
    }

    fn set_filter(&mut self, filter: &KindFilter) {
        self.filter = Some(filter.clone());
    }

    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        self.for_each_encoded(&mut |e| {
            let body = e
                .body
                .ok_or(Error::Internal("an encoded entity has no body"))?;
            let entity = crate::model::codec::decode(body)
                .map_err(|_| Error::Internal("an encoded entity does not decode"))?;
            f(entity, e.origin)
        })
    }

    fn describe(&self, origin: u64) -> String {
        let kinds = self.kinds.lock().map(|k| k.clone()).unwrap_or_default();
        let (kind_no, n) = Positions::decode(origin);
        let kind = kinds.get(kind_no as usize).cloned().unwrap_or_default();
        format!("{} kind {kind} (entity {n} of the kind)", self.ep.id())
    }

    fn set_kind_options(&mut self, options: &std::collections::BTreeMap<String, KindOptions>) {
        self.kind_options = options.clone();
    }

    fn read_counts(&self) -> Vec<(String, String, ReadCounts)> {
        self.reads.clone()
    }

    fn for_each_encoded(&mut self, f: &mut dyn FnMut(Encoded<'_>) -> Result<()>) -> Result<()> {
        self.read(None, f)
    }

    fn for_each_since(
        &mut self,
        parent: &dyn ParentState,
        f: &mut dyn FnMut(Encoded<'_>) -> Result<()>,
    ) -> Result<()> {
        self.read(Some(parent), f)
    }

    fn set_changed_property(&mut self, changed: &ChangedProperty) {
        self.changed = changed.is_set().then(|| changed.clone());
    }

    fn read_info(&self) -> Option<ReadInfo> {
        self.info.clone()
    }
}

impl DatastoreSource {
    /// Every kind the filter allows, in each namespace.
    async fn list_kinds(&self, client: &Client) -> Result<Vec<(String, String)>> {
        let mut work: Vec<(String, String)> = Vec::new();
        for ns in client.namespaces().await? {
            for kind in client.kinds(&ns).await? {
                if self.filter.as_ref().is_none_or(|f| f.allows(&ns, &kind)) {
                    work.push((ns.clone(), kind));
                }
            }
        }
        Ok(work)
    }

    /// Read every kind, each in full or (with a parent and a changed
    /// property) only what changed, passing entities to `f` on this thread.
    fn read(
        &mut self,
        parent: Option<&dyn ParentState>,
        f: &mut dyn FnMut(Encoded<'_>) -> Result<()>,
    ) -> Result<()> {
        let rt = runtime()?;
        let concurrency = self.ep.concurrency.unwrap_or(DEFAULT_READ_CONCURRENCY);
        let mut client = rt.block_on(Client::new(self.ep.clone(), self.timeouts))?;
        client.cancel = self.cancel.clone();
        // The moment to read at, and the namespaces and kinds (small), at
        // once; then the scans.
        let (moment, work) = rt.block_on(async {
            tokio::join!(
                changed::Moment::find(&client, self.changed.is_some()),
                self.list_kinds(&client)
            )
        });
        let (moment, work) = (moment?, work?);
        if let Ok(mut k) = self.kinds.lock() {
            *k = work.iter().map(|(ns, k)| kind_label(ns, k)).collect();
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Page>(concurrency * 2);
        let counters: Arc<Vec<ReadCounter>> =
            Arc::new(work.iter().map(|_| ReadCounter::default()).collect());
        let client_at = match &moment.at {
            Some(t) => client.at(t),
            None => client.clone(),
        };
        let ctx = Arc::new(ScanCtx {
            client,
            client_at: client_at.clone(),
            tx,
            slots: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            counters: Arc::clone(&counters),
            shown: self.ep.id(),
        });
        let mut modes: Vec<Option<super::KindRead>> = Vec::with_capacity(work.len());
        for (i, (ns, kind)) in work.iter().enumerate() {
            let plan = changed::KindPlan::decide(self.changed.as_ref(), parent, ns, kind)?;
            modes.push(plan.full_why());
            let ctx = Arc::clone(&ctx);
            let (ns, kind) = (ns.clone(), kind.clone());
            let at_once = self
                .kind_options
                .get(&kind)
                .and_then(|o| o.concurrency)
                .unwrap_or(concurrency)
                .clamp(1, concurrency);
            let partition = PartitionId {
                project: self.ep.project.clone(),
                database: self.ep.database.clone(),
                namespace: ns.clone(),
            };
            let splits = changed::parent_splits(parent, &partition, &kind, at_once)?;
            rt.spawn(async move {
                let at = (ns.as_str(), kind.as_str(), i as u32);
                if let Err(e) = plan.run(&ctx, at, at_once, splits).await {
                    let _ = ctx.tx.send(Err(e)).await;
                }
            });
        }
        // The tasks hold the only senders now: the loop ends when they do.
        drop(ctx);
        let mut carry = changed::Carry::new(parent, &rt, client_at, &work);
        let result = receive(&mut rx, &mut carry, &mut modes, f);
        let lookups = carry.lookups();
        let kinds = carry.finish(&work, modes);
        drop(rx);
        rt.shutdown_background();
        self.reads = work
            .into_iter()
            .zip(counters.iter().zip(lookups))
            .map(|((ns, kind), (c, looked_up))| (ns, kind, c.get(looked_up)))
            .collect();
        self.info = Some(ReadInfo {
            read_time_us: Some(moment.read_time_us),
            consistent: moment.at.is_some() || self.ep.read_time.is_some(),
            kinds,
            notes: moment.notes,
        });
        result
    }
}

/// The caller's side of a read: pass entities on, merge incremental kinds'
/// keys with the parent, until every task is done or something failed.
fn receive(
    rx: &mut tokio::sync::mpsc::Receiver<Page>,
    carry: &mut changed::Carry<'_, '_>,
    modes: &mut [Option<super::KindRead>],
    f: &mut dyn FnMut(Encoded<'_>) -> Result<()>,
) -> Result<()> {
    let mut positions = Positions::default();
    let mut emit = |kind_no: u32, e: Encoded<'_>| -> Result<()> {
        let origin = positions.next(kind_no);
        f(Encoded { origin, ..e })
    };
    while let Some(page) = rx.blocking_recv() {
        match page? {
            Msg::Entities(k, batch) => {
                for e in batch.iter() {
                    emit(k, e)?;
                }
            }
            Msg::Changed(k, batch) => {
                for e in batch.iter() {
                    carry.note_changed(k, e.key);
                    emit(k, e)?;
                }
            }
            Msg::Keys(k, keys) => carry.keys(k, keys, &mut emit)?,
            Msg::Done(k) => carry.done(k, &mut emit)?,
            Msg::Mode(k, m) => {
                if let Some(slot) = modes.get_mut(k as usize) {
                    *slot = Some(m);
                }
            }
        }
    }
    Ok(())
}

fn kind_label(ns: &str, kind: &str) -> String {
    if ns.is_empty() {
        kind.to_string()
    } else {
        format!("{ns}/{kind}")
    }
}

/// Reads billed for one kind, counted as the answers come.
#[derive(Debug, Default)]
struct ReadCounter {
    entity_reads: AtomicU64,
    small_ops: AtomicU64,
}

impl ReadCounter {
    /// A full-entity query answered with `n` results: one read each, at
    /// least one per query.
    fn entities(&self, n: usize) {
        self.entity_reads
            .fetch_add((n as u64).max(1), Ordering::Relaxed);
    }

    /// A keys-only query: one read, a small operation per key.
    fn keys(&self, n: usize) {
        self.entity_reads.fetch_add(1, Ordering::Relaxed);
        self.small_ops.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counts, with `looked_up` keys of lookups (one entity read each).
    fn get(&self, looked_up: u64) -> ReadCounts {
        ReadCounts {
            entity_reads: self.entity_reads.load(Ordering::Relaxed) + looked_up,
            small_ops: self.small_ops.load(Ordering::Relaxed),
            lookups: looked_up,
        }
    }
}

/// What every scan task of one snapshot shares.
struct ScanCtx {
    client: Client,
    /// The client for the reads of incremental kinds (at the snapshot's
    /// read time where the server supports it).
    client_at: Client,
    /// Pages to the caller's thread.
    tx: tokio::sync::mpsc::Sender<Page>,
    /// Queries (cursors of kinds or key ranges) in progress at once. A
    /// range holds its slot until it is done, also while its pages wait
    /// to be passed on.
    slots: Arc<tokio::sync::Semaphore>,
    counters: Arc<Vec<ReadCounter>>,
    shown: String,
}

/// One page of a scan, transcoded and hashed (or its keys).
struct Fetched {
    msg: Msg,
    /// The next page's cursor, if there is more.
    more: Option<String>,
    /// The page's last key.
    last: Option<Key>,
}

/// What a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Whole entities.
    Entities,
    /// Whole entities of an incremental kind's changed query.
    Changed,
    /// Keys only (small operations).
    Keys,
}

impl ScanCtx {
    /// Fetch one page and transcode it (or parse its keys).
    async fn fetch(
        &self,
        (ns, kind, kind_no): (&str, &str, u32),
        want: Want,
        query: &J,
        cursor: Option<&str>,
    ) -> Result<Fetched> {
        let client = match want {
            Want::Entities => &self.client,
            _ => &self.client_at,
        };
        let batch = client.run_query(ns, query, cursor).await?;
        if let Some(c) = self.counters.get(kind_no as usize) {
            match want {
                Want::Keys => c.keys(batch.entity_results.len()),
                _ => c.entities(batch.entity_results.len()),
            }
        }
        let more = if batch.more_results == "NOT_FINISHED" {
            batch.end_cursor
        } else {
            None
        };
        let last = match batch.entity_results.last() {
            Some(r) => Some(client.parse_key(r.entity.get())?),
            None => None,
        };
        let results = batch.entity_results;
        if want == Want::Keys {
            let mut keys = Vec::with_capacity(results.len());
            for r in &results {
                let k = client.parse_key(r.entity.get())?;
                keys.push((k.path_bytes(), k));
            }
            let msg = Msg::Keys(kind_no, keys);
            return Ok(Fetched { msg, more, last });
        }
        let page = self.transcode(kind, results).await?;
        let msg = match want {
            Want::Changed => Msg::Changed(kind_no, page),
            _ => Msg::Entities(kind_no, page),
        };
        Ok(Fetched { msg, more, last })
    }

    /// Transcoding and hashing is CPU work: off the I/O threads.
    async fn transcode(&self, kind: &str, results: Vec<EntityResult>) -> Result<EncodedBatch> {
        let shown = self.shown.clone();
        let kind_owned = kind.to_string();
        tokio::task::spawn_blocking(move || -> Result<EncodedBatch> {
            let bytes: usize = results.iter().map(|r| r.entity.get().len()).sum();
            let mut out = EncodedBatch::with_capacity(bytes + 1024);
            for r in &results {
                out.push_json(r.entity.get().as_bytes(), 0).map_err(|e| {
                    Error::DatastoreAnswer {
                        endpoint: shown.to_string(),
                        what: format!("an entity of kind {kind_owned}"),
                        why: e.to_string(),
                    }
                })?;
            }
            Ok(out)
        })
        .await
        .map_err(|_| Error::Internal("a transcoding task panicked"))?
    }

    /// Up to `limit` keys of `kind` in `__scatter__` order (a stable,
    /// pseudo-random sample); `None` when the server has no `__scatter__`.
    async fn scatter_sample(
        &self,
        ns: &str,
        kind: &str,
        kind_no: u32,
        limit: usize,
    ) -> Result<Option<Vec<Key>>> {
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        while keys.len() < limit {
            let query = json!({
                "kind": [{ "name": kind }],
                "projection": [{ "property": { "name": "__key__" } }],
                "order": [{ "property": { "name": "__scatter__" }, "direction": "ASCENDING" }],
                "limit": limit - keys.len(),
            });
            let batch = match self.client.try_query(ns, &query, cursor.as_deref()).await {
                Ok(b) => b,
                // The emulator and other servers without the property.
                Err(e)
                    if matches!(
                        e.status.as_str(),
                        "INVALID_ARGUMENT" | "UNIMPLEMENTED" | "FAILED_PRECONDITION" | "NOT_FOUND"
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(self.client.explain_query(e)),
            };
            if let Some(c) = self.counters.get(kind_no as usize) {
                c.keys(batch.entity_results.len());
            }
            for r in &batch.entity_results {
                keys.push(self.client.parse_key(r.entity.get())?);
            }
            match batch.end_cursor {
                Some(c)
                    if batch.more_results == "NOT_FINISHED" && !batch.entity_results.is_empty() =>
                {
                    cursor = Some(c)
                }
                _ => break,
            }
        }
        Ok((!keys.is_empty()).then_some(keys))
    }
}

/// Where one key range of a kind starts and ends.
#[derive(Debug, Clone, PartialEq)]
struct Range {
    /// Keys after this one (the first page's last key), or from this one.
    start: Option<(Key, bool)>,
    /// Keys before this one.
    end: Option<Key>,
}

impl Range {
    fn query(&self, kind: &str, want: Want) -> J {
        let key_filter = |op: &str, k: &Key| {
            json!({ "propertyFilter": {
                "property": { "name": "__key__" },
                "op": op,
                "value": { "keyValue": mjson::key_to_json(k) },
            }})
        };
        let mut filters = Vec::new();
        if let Some((k, inclusive)) = &self.start {
            let op = if *inclusive {
                "GREATER_THAN_OR_EQUAL"
            } else {
                "GREATER_THAN"
            };
            filters.push(key_filter(op, k));
        }
        if let Some(k) = &self.end {
            filters.push(key_filter("LESS_THAN", k));
        }
        let mut q = json!({
            "kind": [{ "name": kind }],
            "order": [{ "property": { "name": "__key__" }, "direction": "ASCENDING" }],
        });
        if want == Want::Keys {
            q["projection"] = json!([{ "property": { "name": "__key__" } }]);
        }
        match filters.len() {
            0 => {}
            1 => q["filter"] = filters.remove(0),
            _ => q["filter"] = json!({ "compositeFilter": { "op": "AND", "filters": filters } }),
        }
        q
    }
}

/// How many ranges to read the rest of a kind in, after its first page
/// (`first_len` entities ending at `last`), from a `__scatter__` sample:
/// the share of the sample at or before `last` estimates the kind's size in
/// pages (whatever share of entities the server gives a scatter value).
/// Ranges of about [`RANGE_PAGES_AHEAD`] pages keep every range in progress
/// busy; at least `at_once` when there are that many pages.
fn plan_ranges(sample: &[Key], last: &Key, at_once: usize) -> Vec<Range> {
    let last_bytes = last.path_bytes();
    let mut after: Vec<(Vec<u8>, &Key)> = sample
        .iter()
        .map(|k| (k.path_bytes(), k))
        .filter(|(b, _)| *b > last_bytes)
        .collect();
    after.sort_by(|a, b| a.0.cmp(&b.0));
    after.dedup_by(|a, b| a.0 == b.0);
    let before = sample.len() - after.len();
    // Pages after the first one.
    let rest = if before == 0 {
        f64::INFINITY
    } else {
        sample.len() as f64 / before as f64 - 1.0
    };
    let by_size = (rest / RANGE_PAGES_AHEAD as f64).ceil();
    let wanted = by_size.max(rest.ceil().min(at_once as f64));
    let n = if wanted.is_finite() {
        wanted as usize
    } else {
        MAX_RANGES
    }
    .clamp(1, MAX_RANGES.min(after.len() + 1));
    let whole = Range {
        start: Some((last.clone(), false)),
        end: None,
    };
    if n <= 1 {
        return vec![whole];
    }
    // Evenly spaced sample keys, as Beam's getSplitsFromSampledKeys.
    let per = after.len() as f64 / n as f64;
    let mut points: Vec<&Key> = Vec::new();
    for i in 1..n {
        let idx = ((i as f64 * per).round() as usize).saturating_sub(1);
        if let Some((_, k)) = after.get(idx) {
            if points.last().map(|p| p.path_bytes()) != Some(k.path_bytes()) {
                points.push(k);
            }
        }
    }
    let mut ranges = Vec::with_capacity(points.len() + 1);
    let mut start = Some((last.clone(), false));
    for p in points {
        ranges.push(Range {
            start: start.take(),
            end: Some(p.clone()),
        });
        start = Some((p.clone(), true));
    }
    ranges.push(Range { start, end: None });
    ranges
}

/// Read one kind (its entities, or with [`Want::Keys`] its keys): its
/// first page with a plain cursor (a small kind ends there), then the rest
/// in key ranges, `at_once` of them in progress. Pages arrive in key
/// order.
async fn scan_kind(
    ctx: &Arc<ScanCtx>,
    (ns, kind, kind_no): (&str, &str, u32),
    want: Want,
    at_once: usize,
    splits: Vec<Key>,
) -> Result<()> {
    let Ok(permit) = Arc::clone(&ctx.slots).acquire_owned().await else {
        return Ok(());
    };
    let at = (ns, kind, kind_no);
    if !splits.is_empty() {
        // Split points from the parent's keys: no first page, no sample.
        let mut ranges = Vec::with_capacity(splits.len() + 1);
        let mut start = None;
        for k in splits {
            ranges.push(Range {
                start: start.take(),
                end: Some(k.clone()),
            });
            start = Some((k, true));
        }
        ranges.push(Range { start, end: None });
        return scan_ranges(ctx, at, want, ranges, at_once, permit).await;
    }
    let plain = Range {
        start: None,
        end: None,
    }
    .query(kind, want);
    let first = ctx.fetch(at, want, &plain, None).await?;
    let (mut cursor, last) = (first.more, first.last);
    if ctx.tx.send(Ok(first.msg)).await.is_err() {
        return Ok(());
    }
    let (Some(_), Some(last)) = (&cursor, last) else {
        return Ok(());
    };
    let sample = if at_once > 1 {
        ctx.scatter_sample(ns, kind, kind_no, at_once * SAMPLES_PER_SPLIT)
            .await?
    } else {
        None
    };
    let ranges = match &sample {
        Some(sample) => plan_ranges(sample, &last, at_once),
        None => Vec::new(),
    };
    if ranges.len() <= 1 {
        // One cursor: no sample, or a kind of few pages.
        while let Some(c) = cursor {
            let page = ctx.fetch(at, want, &plain, Some(&c)).await?;
            cursor = page.more;
            if ctx.tx.send(Ok(page.msg)).await.is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    scan_ranges(ctx, at, want, ranges, at_once, permit).await
}

/// Read `ranges` of a kind, `at_once` in progress, passing their pages on
/// in range order.
async fn scan_ranges(
    ctx: &Arc<ScanCtx>,
    (ns, kind, kind_no): (&str, &str, u32),
    want: Want,
    ranges: Vec<Range>,
    at_once: usize,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<()> {
    // Each range sends into its own small channel; the forwarder passes
    // the ranges on in order.
    type Pages = tokio::sync::mpsc::Receiver<Page>;
    let (rtx, mut rrx) = tokio::sync::mpsc::unbounded_channel::<Pages>();
    let out = ctx.tx.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(mut range) = rrx.recv().await {
            while let Some(page) = range.recv().await {
                let failed = page.is_err();
                if out.send(page).await.is_err() || failed {
                    return;
                }
            }
        }
    });
    let mine = Arc::new(tokio::sync::Semaphore::new(at_once));
    let mut permit = Some(permit);
    for range in ranges {
        let Ok(own) = Arc::clone(&mine).acquire_owned().await else {
            break;
        };
        let slot = match permit.take() {
            Some(p) => p,
            None => match Arc::clone(&ctx.slots).acquire_owned().await {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (ptx, prx) = tokio::sync::mpsc::channel::<Page>(RANGE_PAGES_AHEAD);
        if rtx.send(prx).is_err() {
            break;
        }
        let (ctx, ns, kind) = (Arc::clone(ctx), ns.to_string(), kind.to_string());
        tokio::spawn(async move {
            let _held = (own, slot);
            let query = range.query(&kind, want);
            let mut cursor: Option<String> = None;
            loop {
                let at = (ns.as_str(), kind.as_str(), kind_no);
                let page = match ctx.fetch(at, want, &query, cursor.as_deref()).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ptx.send(Err(e)).await;
                        return;
                    }
                };
                cursor = page.more;
                if ptx.send(Ok(page.msg)).await.is_err() || cursor.is_none() {
                    return;
                }
            }
        });
    }
    drop(rtx);
    forwarder
        .await
        .map_err(|_| Error::Internal("a forwarding task panicked"))
}

// ---------------------------------------------------------------------------
// Target

pub struct DatastoreTarget {
    ep: Endpoint,
    timeouts: Timeouts,
    cancel: crate::interrupt::Cancel,
    rt: Option<tokio::runtime::Runtime>,
    client: Option<Client>,
    /// The batch being filled: mutation JSON texts and their keys.
    batch: Vec<(Key, String)>,
    batch_bytes: usize,
    in_flight: VecDeque<tokio::task::JoinHandle<Result<Vec<Rejection>>>>,
    rejections: Vec<Rejection>,
    /// Mutations per commit; shared with the tasks, which halve it when a
    /// server says a batch is too large.
    max_mutations: Arc<AtomicUsize>,
    options: KindOptions,
    reserve: ReserveState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReserveState {
    Unknown,
    Works,
    Unsupported,
}

impl DatastoreTarget {
    pub fn open(spec: &str, timeouts: &Timeouts) -> Result<DatastoreTarget> {
        Ok(DatastoreTarget {
            ep: Endpoint::parse(spec)?,
            timeouts: *timeouts,
            cancel: Default::default(),
            rt: None,
            client: None,
            batch: Vec::new(),
            batch_bytes: 0,
            in_flight: VecDeque::new(),
            rejections: Vec::new(),
            max_mutations: Arc::new(AtomicUsize::new(DEFAULT_MUTATIONS)),
            options: KindOptions::default(),
            reserve: ReserveState::Unknown,
        })
    }

    fn parts(&self) -> Result<(&tokio::runtime::Runtime, &Client)> {
        match (&self.rt, &self.client) {
            (Some(rt), Some(c)) => Ok((rt, c)),
            _ => Err(Error::Internal("datastore target used before start")),
        }
    }

    fn concurrency(&self) -> usize {
        self.options
            .concurrency
            .or(self.ep.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY)
    }

    fn batch_limit(&self) -> usize {
        let adaptive = self.max_mutations.load(Ordering::Relaxed);
        self.options
            .batch_size
            .map(|b| b.min(adaptive))
            .unwrap_or(adaptive)
    }

    /// Send the current batch as one commit (in the background).
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        while self.in_flight.len() >= self.concurrency() {
            self.wait_one()?;
        }
        let (rt, client) = self.parts()?;
        let client = client.clone();
        let max = Arc::clone(&self.max_mutations);
        let handle = rt.spawn(async move { commit_upserts(&client, batch, &max).await });
        self.in_flight.push_back(handle);
        Ok(())
    }

    fn wait_one(&mut self) -> Result<()> {
        let Some(h) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let (rt, _) = self.parts()?;
        let result = rt
            .block_on(h)
            .map_err(|_| Error::Internal("a commit task panicked"))?;
        self.rejections.extend(result?);
        Ok(())
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> Result<T> {
        let (rt, _) = self.parts()?;
        Ok(rt.block_on(f))
    }

    fn client(&self) -> Result<Client> {
        Ok(self.parts()?.1.clone())
    }

    /// Delete keys in commits the server accepts.
    fn delete_keys(&mut self, keys: Vec<Key>) -> Result<()> {
        let client = self.client()?;
        let max = Arc::clone(&self.max_mutations);
        let ep = self.ep.clone();
        for chunk in keys.chunks(self.batch_limit().max(1)) {
            let mutations: Vec<J> = chunk
                .iter()
                .map(|k| json!({ "delete": mjson::key_to_json(&with_partition(k, &ep)) }))
                .collect();
            self.block_on(commit_json(&client, mutations, &max))??;
        }
        Ok(())
    }
}

fn with_partition(k: &Key, ep: &Endpoint) -> Key {
    let mut k = k.clone();
    k.partition.project = ep.project.clone();
    k.partition.database = ep.database.clone();
    k
}

/// Commit a list of mutations as is, splitting when the server says the
/// batch is too large. Errors are final.
async fn commit_json(client: &Client, mutations: Vec<J>, max: &AtomicUsize) -> Result<()> {
    let mut queue = VecDeque::from([mutations]);
    while let Some(ms) = queue.pop_front() {
        if let Some(r) = &client.ramp {
            r.wait(ms.len()).await;
        }
        let mut body = json!({ "mode": "NON_TRANSACTIONAL", "mutations": ms });
        if !client.ep.database.is_empty() {
            body["databaseId"] = json!(client.ep.database);
        }
        match client.call("commit", &body).await {
            Ok(_) => {}
            Err(e) if too_large(&e) && ms.len() > 1 => {
                shrink(max, ms.len());
                let mut ms = ms;
                let second = ms.split_off(ms.len() / 2);
                queue.push_front(second);
                queue.push_front(ms);
            }
            Err(e) => return Err(client.explain("commit", e)),
        }
    }
    Ok(())
}

fn too_large(e: &CallError) -> bool {
    e.status == "INVALID_ARGUMENT"
        && (e.message.contains("in a single call")
            || e.message.contains("payload size exceeds")
            || e.message.contains("too many mutations")
            || e.message.contains("Transaction too big"))
}

fn shrink(max: &AtomicUsize, tried: usize) {
    let half = (tried / 2).max(1);
    max.fetch_min(half, Ordering::Relaxed);
}

/// Commit upserts; a batch the server refuses because of one entity is
/// split until that entity is found and handed back as a rejection.
async fn commit_upserts(
    client: &Client,
    batch: Vec<(Key, String)>,
    max: &AtomicUsize,
) -> Result<Vec<Rejection>> {
    let mut rejections = Vec::new();
    let mut queue = VecDeque::from([batch]);
    while let Some(batch) = queue.pop_front() {
        if let Some(r) = &client.ramp {
            r.wait(batch.len()).await;
        }
        let mut body =
            String::with_capacity(batch.iter().map(|(_, m)| m.len() + 1).sum::<usize>() + 128);
        body.push_str("{\"mode\":\"NON_TRANSACTIONAL\",");
        if !client.ep.database.is_empty() {
            body.push_str(&format!("\"databaseId\":{},", json!(client.ep.database)));
        }
        body.push_str("\"mutations\":[");
        for (i, (_, m)) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(m);
        }
        body.push_str("]}");
        match client.call_raw("commit", body.as_bytes()).await {
            Ok(_) => {}
            Err(e) if too_large(&e) && batch.len() > 1 => {
                shrink(max, batch.len());
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                queue.push_front(second);
                queue.push_front(first);
            }
            Err(e) if e.status == "INVALID_ARGUMENT" && batch.len() > 1 => {
                // Find the entity it is about.
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                queue.push_front(second);
                queue.push_front(first);
            }
            Err(e) if e.status == "INVALID_ARGUMENT" || e.status == "FAILED_PRECONDITION" => {
                for (key, _) in batch {
                    rejections.push(Rejection {
                        key,
                        reason: e.message.clone(),
                    });
                }
            }
            Err(e) => return Err(client.explain("commit", e)),
        }
    }
    Ok(rejections)
}

/// The limits Datastore enforces per entity, checked before sending so one
/// entity never sinks its batch: `Some(reason)` if it breaks one.
fn check_limits(e: &Entity, json_len: usize) -> Option<String> {
    if json_len > MAX_ENTITY_BYTES + MAX_ENTITY_BYTES / 3 + 4096 {
        // JSON is bigger than the wire form (base64, names); only the
        // clear cases are caught here, the server has the last word.
        return Some(format!(
            "entity is too big ({json_len} bytes as JSON; Datastore's limit is 1 MiB)"
        ));
    }
    fn walk(name: &str, v: &Value, out: &mut Option<String>) {
        if out.is_some() {
            return;
        }
        match &v.kind {
            ValueKind::String(s) if !v.exclude_from_indexes && s.len() > MAX_INDEXED_BYTES => {
                *out = Some(format!(
                    "the indexed string property \"{name}\" is {} bytes; Datastore indexes at most 1500 (mark it excludeFromIndexes)",
                    s.len()
                ))
            }
            ValueKind::Blob(b) if !v.exclude_from_indexes && b.len() > MAX_INDEXED_BYTES => {
                *out = Some(format!(
                    "the indexed blob property \"{name}\" is {} bytes; Datastore indexes at most 1500 (mark it excludeFromIndexes)",
                    b.len()
                ))
            }
            ValueKind::Array(vs) => vs.iter().for_each(|x| walk(name, x, out)),
            ValueKind::Entity(e) if !v.exclude_from_indexes => {
                for (k, x) in &e.properties {
                    walk(&format!("{name}.{k}"), x, out)
                }
            }
            _ => {}
        }
    }
    let mut out = None;
    for (name, v) in &e.properties {
        walk(name, v, &mut out);
    }
    out
}

impl EntityTarget for DatastoreTarget {
    fn target_id(&self) -> String {
        self.ep.id()
    }

    fn set_cancel(&mut self, cancel: &crate::interrupt::Cancel) {
        self.cancel = cancel.clone();
    }

    fn start(&mut self, _resuming: bool) -> Result<()> {
        let rt = runtime()?;
        let mut client = rt.block_on(Client::new(self.ep.clone(), self.timeouts))?;
        client.cancel = self.cancel.clone();
        // One cheap call, so a wrong address or project fails now with a
        // clear message instead of inside the first commit.
        rt.block_on(client.metadata("", "__namespace__"))?;
        self.rt = Some(rt);
        self.client = Some(client);
        Ok(())
    }

    fn project(&self) -> Option<String> {
        Some(self.ep.project.clone())
    }

    fn database(&self) -> Option<String> {
        Some(self.ep.database.clone())
    }

    fn begin_kind(&mut self, _namespace: &str, _kind: &str, options: KindOptions) -> Result<()> {
        self.options = options;
        Ok(())
    }

    fn put(&mut self, entity: Entity) -> Result<()> {
        let text = mjson::entity_to_json(&entity);
        if let Some(reason) = check_limits(&entity, text.len()) {
            self.rejections.push(Rejection {
                key: entity.key,
                reason,
            });
            return Ok(());
        }
        let mutation = format!("{{\"upsert\":{text}}}");
        if !self.batch.is_empty()
            && (self.batch.len() >= self.batch_limit()
                || self.batch_bytes + mutation.len() > MAX_REQUEST_BYTES)
        {
            self.flush()?;
        }
        self.batch_bytes += mutation.len() + 1;
        self.batch.push((entity.key, mutation));
        if self.batch.len() >= self.batch_limit() {
            self.flush()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.flush()?;
        let mut first_err = None;
        while !self.in_flight.is_empty() {
            if let Err(e) = self.wait_one() {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn take_rejections(&mut self) -> Vec<Rejection> {
        std::mem::take(&mut self.rejections)
    }

    fn end_kind(&mut self) -> Result<()> {
        self.sync()
    }

    fn reserve_ids(&mut self, _namespace: &str, _kind: &str, keys: &[Key]) -> Result<()> {
        if self.reserve == ReserveState::Unsupported {
            return Ok(());
        }
        let client = self.client()?;
        for chunk in keys.chunks(500) {
            let keys: Vec<J> = chunk
                .iter()
                .map(|k| mjson::key_to_json(&with_partition(k, &self.ep)))
                .collect();
            let mut body = json!({ "keys": keys });
            if !self.ep.database.is_empty() {
                body["databaseId"] = json!(self.ep.database);
            }
            match self.block_on(client.call("reserveIds", &body))? {
                Ok(_) => self.reserve = ReserveState::Works,
                Err(e) if matches!(e.status.as_str(), "UNIMPLEMENTED" | "NOT_FOUND") => {
                    self.reserve = ReserveState::Unsupported;
                    return Ok(());
                }
                Err(e) => return Err(client.explain("reserveIds", e)),
            }
        }
        Ok(())
    }

    fn reserve_method(&self) -> &'static str {
        match self.reserve {
            ReserveState::Unsupported => {
                "nothing: this server has no reserveIds, so its automatic ids may collide with restored ones (use --keys uuid there)"
            }
            _ => "reserveIds (the server's automatic ids skip them)",
        }
    }

    fn scan_keys(
        &mut self,
        namespace: &str,
        kind: &str,
        f: &mut dyn FnMut(Key) -> Result<()>,
    ) -> Result<()> {
        let client = self.client()?;
        let query = json!({
            "kind": [{ "name": kind }],
            "projection": [{ "property": { "name": "__key__" } }],
        });
        let mut cursor: Option<String> = None;
        loop {
            let batch = self.block_on(client.run_query(namespace, &query, cursor.as_deref()))??;
            for r in &batch.entity_results {
                f(client.parse_key(r.entity.get())?)?;
            }
            if batch.more_results != "NOT_FINISHED" || batch.end_cursor.is_none() {
                return Ok(());
            }
            cursor = batch.end_cursor;
        }
    }

    fn delete(&mut self, keys: Vec<Key>) -> Result<()> {
        self.delete_keys(keys)
    }

    fn clear_kind(&mut self, namespace: &str, kind: &str) -> Result<u64> {
        let mut n = 0u64;
        let mut pending = Vec::new();
        // Page through the keys, deleting as we go (a delete does not move
        // the query's cursor past unseen keys).
        let client = self.client()?;
        let query = json!({
            "kind": [{ "name": kind }],
            "projection": [{ "property": { "name": "__key__" } }],
        });
        let mut cursor: Option<String> = None;
        loop {
            let batch = self.block_on(client.run_query(namespace, &query, cursor.as_deref()))??;
            for r in &batch.entity_results {
                pending.push(client.parse_key(r.entity.get())?);
            }
            n += pending.len() as u64;
            self.delete_keys(std::mem::take(&mut pending))?;
            if batch.more_results != "NOT_FINISHED" || batch.end_cursor.is_none() {
                return Ok(n);
            }
            cursor = batch.end_cursor;
        }
    }

    fn list_kinds(&mut self) -> Result<Vec<(String, String)>> {
        let client = self.client()?;
        let mut out = Vec::new();
        for ns in self.block_on(client.namespaces())?? {
            for kind in self.block_on(client.kinds(&ns))?? {
                out.push((ns.clone(), kind));
            }
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<()> {
        self.sync()?;
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        Ok(())
    }
}

impl Drop for DatastoreTarget {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A key in the default project, for the tests below.
#[cfg(test)]
fn key_for(namespace: &str, path: Vec<crate::model::PathElement>) -> Key {
    Key::new(
        crate::model::PartitionId {
            namespace: namespace.to_string(),
            ..Default::default()
        },
        path,
    )
}

/// Why Application Default Credentials were not found, in the user's
/// terms: the file GOOGLE_APPLICATION_CREDENTIALS names is missing or is
/// not a credentials file, or there is nothing anywhere.
fn credentials_problem(library_error: &str) -> String {
    match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|v| !v.is_empty()) {
        Some(path) => {
            let shown = std::path::Path::new(&path).display().to_string();
            if !std::path::Path::new(&path).is_file() {
                format!("GOOGLE_APPLICATION_CREDENTIALS names {shown}, which is not a file")
            } else if library_error.contains("deserialize") || library_error.contains("parse") {
                format!(
                    "{shown} (GOOGLE_APPLICATION_CREDENTIALS) is not a service account key \
                     or user credentials file"
                )
            } else {
                format!("{shown} (GOOGLE_APPLICATION_CREDENTIALS) was not accepted")
            }
        }
        None => "none found (GOOGLE_APPLICATION_CREDENTIALS is not set, gcloud has no \
                 application default credentials, no metadata server answered)"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PathElement;

    #[test]
    fn ramp_up_is_google_s_rule_in_production_and_off_for_emulators() {
        let prod = Endpoint::parse("datastore:acme").unwrap();
        assert_eq!(prod.ramp_up, Some(RampUp::GOOGLE));
        let local = Endpoint::parse("datastore://localhost:8081/dev").unwrap();
        assert_eq!(local.ramp_up, None);
        let off = Endpoint::parse("datastore:acme?ramp_up=off").unwrap();
        assert_eq!(off.ramp_up, None);
        let own = Endpoint::parse("datastore://h:1/p?ramp_up=100/10/1").unwrap();
        let r = own.ramp_up.unwrap();
        assert_eq!(
            (r.start, r.growth, r.every),
            (100.0, 0.1, Duration::from_secs(60))
        );
        for bad in ["500/50", "0/50/5", "a/b/c", "500/50/0"] {
            assert!(
                Endpoint::parse(&format!("datastore:acme?ramp_up={bad}")).is_err(),
                "{bad}"
            );
        }
        let g = RampUp::GOOGLE;
        assert_eq!(g.rate(Duration::from_secs(0)), 500.0);
        assert_eq!(g.rate(Duration::from_secs(299)), 500.0);
        assert_eq!(g.rate(Duration::from_secs(300)), 750.0);
        assert_eq!(g.rate(Duration::from_secs(900)), 500.0 * 1.5 * 1.5 * 1.5);
    }

    #[test]
    fn the_ramp_paces_writes_to_the_rate() {
        let rt = runtime().unwrap();
        let ramp = Ramp::new(RampUp {
            start: 2000.0,
            growth: 0.5,
            every: Duration::from_secs(300),
        });
        let start = std::time::Instant::now();
        // 500 writes in commits of 100: the last starts after 400 at 2,000/s.
        rt.block_on(async {
            for _ in 0..5 {
                ramp.wait(100).await;
            }
        });
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(195), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[test]
    fn positions_count_within_each_kind() {
        let mut p = Positions::default();
        // Pages of two kinds interleave as their scans finish.
        let got: Vec<(u32, u64)> = [0, 0, 1, 0, 1, 1, 2]
            .into_iter()
            .map(|k| Positions::decode(p.next(k)))
            .collect();
        assert_eq!(
            got,
            [(0, 1), (0, 2), (1, 1), (0, 3), (1, 2), (1, 3), (2, 1)]
        );
    }

    #[test]
    fn namespaces_are_part_of_the_source_identity() {
        let open = |spec: &str| DatastoreSource::open(spec, &Timeouts::default()).unwrap();
        let all = open("datastore://localhost:8081/dev").source_id();
        let some = open("datastore://localhost:8081/dev?namespaces=t1,-").source_id();
        let same = open("datastore://localhost:8081/dev?namespaces=-,t1,t1").source_id();
        assert_eq!(all, "datastore://localhost:8081/dev");
        assert_eq!(some, "datastore://localhost:8081/dev?namespaces=-,t1");
        assert_eq!(some, same);
        let db = open("datastore:acme?database=orders&namespaces=a").source_id();
        assert_eq!(db, "datastore:acme?database=orders&namespaces=a");
    }

    #[test]
    fn locations_parse() {
        let e = Endpoint::parse("datastore://localhost:8081/dev").unwrap();
        assert_eq!(e.base, "http://localhost:8081");
        assert_eq!(e.project, "dev");
        assert!(!e.auth);
        assert_eq!(e.id(), "datastore://localhost:8081/dev");
        let e =
            Endpoint::parse("datastore:acme-prod?database=orders&namespaces=-,t1&concurrency=3")
                .unwrap();
        assert_eq!(e.base, PRODUCTION);
        assert!(e.auth);
        assert_eq!(e.database, "orders");
        assert_eq!(e.namespaces, Some(vec![String::new(), "t1".into()]));
        assert_eq!(e.concurrency, Some(3));
        assert_eq!(e.id(), "datastore:acme-prod?database=orders");
        for bad in [
            "datastore://localhost:8081",
            "datastore:///p",
            "datastore:p?bogus=1",
            "datastore:p?concurrency=0",
            "datastore:p?read_time=yesterday",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_follow_the_scatter_sample() {
        let key = |i: i64| key_for("", vec![PathElement::id("K", i)]);
        // A sample of every 10th id up to 10,000, scrambled; the first page
        // ended at id 100: 10 of 1,000 sampled keys at or before it, so
        // about 99 pages follow, in ranges of about RANGE_PAGES_AHEAD pages.
        let mut sample: Vec<Key> = (1..=1000).map(|i| key(i * 10)).collect();
        sample.reverse();
        let ranges = plan_ranges(&sample, &key(100), 8);
        assert_eq!(ranges.len(), 25);
        assert_eq!(ranges[0].start, Some((key(100), false)));
        assert_eq!(ranges.last().map(|r| r.end.clone()), Some(None));
        for pair in ranges.windows(2) {
            // Contiguous, in key order: each ends where the next starts.
            let end = pair[0].end.clone().unwrap();
            assert_eq!(pair[1].start, Some((end, true)));
        }
        let q = ranges[1].query("K", Want::Entities);
        assert_eq!(
            q["filter"]["compositeFilter"]["filters"][0]["propertyFilter"]["op"],
            "GREATER_THAN_OR_EQUAL"
        );
        assert_eq!(q["order"][0]["property"]["name"], "__key__");
        // A kind of a few pages: at least one range per page up to `at_once`.
        let few: Vec<Key> = (1..=30).map(|i| key(i * 10)).collect();
        assert_eq!(plan_ranges(&few, &key(100), 8).len(), 2);
        // Nothing sampled after the first page: one range, the rest.
        assert_eq!(plan_ranges(&few, &key(1000), 8).len(), 1);
        // Nothing at or before it: as many ranges as the sample allows.
        // (evenly spaced points of 30 keys for 31 ranges: two coincide)
        assert_eq!(plan_ranges(&few, &key(1), 8).len(), 30);
    }

    #[test]
    fn max_rps_parses() {
        let e = Endpoint::parse("datastore:acme?max_rps=2.5").unwrap();
        assert_eq!(e.max_rps, Some(2.5));
        assert_eq!(e.id(), "datastore:acme");
        for bad in ["0", "-1", "x", "inf"] {
            assert!(Endpoint::parse(&format!("datastore:p?max_rps={bad}")).is_err());
        }
    }

    #[test]
    fn limits_are_checked_before_sending() {
        let mut e = Entity {
            key: key_for("", vec![PathElement::id("K", 1)]),
            properties: Default::default(),
        };
        e.properties
            .insert("s".into(), Value::new(ValueKind::String("x".repeat(1501))));
        assert!(check_limits(&e, 100).unwrap().contains("\"s\""));
        let v = e.properties.get_mut("s").unwrap();
        v.exclude_from_indexes = true;
        assert!(check_limits(&e, 100).is_none());
        assert!(check_limits(&e, 3 << 20).unwrap().contains("too big"));
    }
}
