//! Repositories on object storage (`s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX`).
//!
//! A remote repository is the local layout as objects (`config`,
//! `packs/ab/<id>`, `snapshots/<id>`), plus index *segments* (`index/<id>`)
//! instead of the mutable `index.db`, plus lock objects (`locks/…`). Every
//! process works on a local **cache** that is itself a repository in the
//! ordinary format, so every operation runs the same code as on a local
//! repository; this module only moves objects between the two:
//!
//! - **pull** ([`Remote::sync`]): the config, manifests not yet cached, and
//!   index segments not yet applied to the cache's `index.db`. Packs are
//!   not pulled: [`super::Repository::local_pack`] downloads one the first
//!   time a body in it is read.
//! - **push**: each pack as soon as it is durable in the cache (before its
//!   index rows); at the manifest's publication first a segment holding
//!   the index rows of every pack not yet published, then the manifest —
//!   its arrival is the commit, as locally. Deletions come last.
//!
//! docs/storage.md describes the protocol, its locks and consistency
//! argument; docs/format.md the segment format. This module never prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::crypto::Keys;
use super::index::{Index, Location, NewPack};
use super::{fsutil, Repository};
use crate::error::{Error, Result};
use crate::ids::{EntityHash, PackId, SnapshotId};
use crate::net::Timeouts;

/// Whether a `--repo` value names object storage rather than a directory.
pub fn is_remote_url(s: &str) -> bool {
    s.starts_with("s3://") || s.starts_with("gs://")
}

/// Segment objects start with this; the rest is one zstd frame of CBOR.
const SEGMENT_MAGIC: &[u8; 8] = b"KSSEG001";
/// An encrypted repository's segment: the magic, then `nonce ‖ sealed
/// zstd frame ‖ tag` (the same frame a plain segment holds).
const SEALED_SEGMENT_MAGIC: &[u8; 8] = b"KSSEGE01";

/// An object's path (relative to the repository) and bytes.
type Named = (String, Vec<u8>);

/// One entity in a segment: hash, offset in its block, length.
type SegEntity = (serde_bytes::ByteBuf, u32, u32);

/// Concurrent requests when pulling many objects.
const PARALLEL: usize = 8;

/// A connection to one remote repository.
pub struct Remote {
    url: String,
    bucket: String,
    prefix: String,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    /// The endpoint requests go to, for messages.
    endpoint: String,
    timeouts: Timeouts,
    /// How long one operation's retries may go on.
    retry_window: Duration,
    /// The locks held through this connection, by lock id.
    held: Mutex<BTreeMap<String, Held>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The error's whole source chain on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Whether the client gave up waiting (connecting, or for an answer).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            if h.kind() == object_store::client::HttpErrorKind::Timeout {
                return true;
            }
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

/// A service's error reply on one line: S3's XML `<Code>` and `<Message>`
/// rather than the whole document.
fn one_line(why: &str) -> String {
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = why.find(&open)? + open.len();
        let end = why[start..].find(&format!("</{t}>"))? + start;
        Some(why[start..end].to_string())
    };
    let head = why
        .split("<?xml")
        .next()
        .unwrap_or(why)
        .trim_end_matches([':', ' ']);
    let short = match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{head}: {c}: {m}"),
        (Some(c), None) => format!("{head}: {c}"),
        _ => why.to_string(),
    };
    short.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How to reach an object store beyond what its URL says. The library
/// reads no `KINDSNAP_*` variable itself: the CLI fills this from
/// `--timeout`/`KINDSNAP_TIMEOUT`, `KINDSNAP_S3_ENDPOINT` and
/// `KINDSNAP_REMOTE_TIMEOUT`. (Credentials, regions and `AWS_ENDPOINT_URL`
/// follow the providers' own conventions, read by the object store.)
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    pub timeouts: Timeouts,
    /// An S3-compatible endpoint (MinIO, moto, R2…) instead of AWS's.
    pub s3_endpoint: Option<String>,
    /// Retry a timed-out request within this window (default: three
    /// answer timeouts).
    pub retry_window: Option<Duration>,
}

impl RemoteOptions {
    pub fn new(timeouts: Timeouts) -> RemoteOptions {
        RemoteOptions {
            timeouts,
            ..Default::default()
        }
    }
}

impl Remote {
    /// Connect (lazily: no request is made here) to `url`, as `options`
    /// say.
    pub fn new(url: &str, options: &RemoteOptions) -> Result<Remote> {
        let timeouts = &options.timeouts;
        let bad = |why: &str| Error::BadLocation {
            spec: url.to_string(),
            why: why.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket name is missing"));
        }
        let prefix = prefix.trim_matches('/').to_string();
        // A request that times out is retried (reads; writes when they
        // are idempotent) within this window: three answer timeouts' worth.
        // Failures that come fast (a refused connection) run out of their
        // six retries first. `retry_window` sets it outright.
        let retry_window = options.retry_window.unwrap_or(timeouts.answer * 3);
        let retry = object_store::RetryConfig {
            max_retries: 6,
            retry_timeout: retry_window,
            ..Default::default()
        };
        // These options replace the ones `from_env` read, so the
        // environment's http switch is carried over here.
        let allow_http = |var: &str| {
            std::env::var(var).is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
        };
        // The answer timeout bounds each wait for bytes (a server that
        // accepted and went silent); a whole request, a 4 MiB pack going
        // up a slow line included, may take longer. TCP keepalive is on in
        // the HTTP client (reqwest's default, every 15 s).
        let client = object_store::ClientOptions::new()
            .with_connect_timeout(timeouts.connect)
            .with_read_timeout(timeouts.answer)
            .with_timeout(Duration::from_secs(300).max(timeouts.answer * 5))
            .with_allow_http(match scheme {
                "s3" => allow_http("AWS_ALLOW_HTTP"),
                _ => allow_http("GOOGLE_ALLOW_HTTP"),
            });
        let mut endpoints = Vec::new();
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client);
                let profile = aws_profile();
                if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                    if let Some((key, secret, token)) = profile.credentials {
                        b = b.with_access_key_id(key).with_secret_access_key(secret);
                        if let Some(t) = token {
                            b = b.with_token(t);
                        }
                    }
                }
                if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                {
                    b = b.with_region(profile.region.as_deref().unwrap_or("us-east-1"));
                }
                let endpoint = options
                    .s3_endpoint
                    .clone()
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                    .unwrap_or_else(|| format!("https://{bucket}.s3.amazonaws.com"));
                endpoints.push(endpoint);
                if let Some(ep) = options.s3_endpoint.clone() {
                    if ep.starts_with("http://") {
                        b = b.with_allow_http(true);
                    }
                    b = b.with_endpoint(ep);
                } else if let Ok(ep) = std::env::var("AWS_ENDPOINT_URL") {
                    if ep.starts_with("http://") {
                        b = b.with_allow_http(true);
                    }
                }
                Arc::new(b.build().map_err(|e| bad(&chain(&e)))?)
            }
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(|e| bad(&chain(&e)))?,
            ),
            _ => return Err(bad("expected s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Remote {
                op: "starting the I/O runtime for",
                url: url.to_string(),
                why: e.to_string(),
            })?;
        Ok(Remote {
            url: url.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            prefix,
            store,
            rt,
            endpoint: endpoints
                .pop()
                .unwrap_or_else(|| "https://storage.googleapis.com".into()),
            timeouts: *timeouts,
            held: Mutex::new(BTreeMap::new()),
            retry_window,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, rel: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// An object-store error as one actionable line.
    fn err(&self, op: &'static str, e: object_store::Error) -> Error {
        let why = one_line(&chain(&e));
        let lower = why.to_lowercase();
        if timed_out(&e) {
            return Error::Timeout {
                service: "object store",
                endpoint: self.endpoint.clone(),
                timeout: self.timeouts.answer,
                waiting: format!(
                    "{op} {}, retried for {}",
                    self.url,
                    crate::net::seconds(self.retry_window)
                ),
                knob: crate::net::TIMEOUT_KNOBS.into(),
            };
        }
        match &e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::RemoteDenied {
                url: self.url.clone(),
                why,
            },
            _ if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") => {
                Error::NoBucket {
                    url: self.url.clone(),
                    bucket: self.bucket.clone(),
                }
            }
            _ if lower.contains("accessdenied")
                || lower.contains("invalidaccesskeyid")
                || lower.contains("signaturedoesnotmatch")
                || lower.contains("403 forbidden")
                || lower.contains("401 unauthorized") =>
            {
                Error::RemoteDenied {
                    url: self.url.clone(),
                    why,
                }
            }
            _ if lower.contains("error sending request")
                || lower.contains("connect")
                || lower.contains("dns error")
                || lower.contains("timed out") =>
            {
                Error::RemoteUnreachable {
                    url: self.url.clone(),
                    why,
                }
            }
            _ => Error::Remote {
                op,
                url: self.url.clone(),
                why,
            },
        }
    }

    /// The object's bytes, or None when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let key = self.key(rel);
        self.rt.block_on(async {
            match self.store.get(&key).await {
                Ok(r) => match r.bytes().await {
                    Ok(b) => Ok(Some(b.to_vec())),
                    Err(e) => Err(self.err("reading", e)),
                },
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err("reading", e)),
            }
        })
    }

    /// Bytes `range` of an object: large objects (an export's data files)
    /// are read a piece at a time.
    pub fn get_range(&self, rel: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let key = self.key(rel);
        self.rt
            .block_on(self.store.get_range(&key, range))
            .map(|b| b.to_vec())
            .map_err(|e| self.err("reading", e))
    }

    /// Write an object of the repository (refused once a lock held
    /// through this connection is lost).
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.check_locks()?;
        let key = self.key(rel);
        self.rt
            .block_on(self.store.put(&key, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.err("writing", e))
    }

    /// Create the object unless it exists (a conditional write: S3
    /// `If-None-Match: *`). Returns false when it existed.
    pub fn put_new(&self, rel: &str, bytes: Vec<u8>) -> Result<bool> {
        let key = self.key(rel);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .rt
            .block_on(self.store.put_opts(&key, PutPayload::from(bytes), opts))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err("writing", e)),
        }
    }

    /// Delete an object of the repository; one that is gone already is
    /// fine (refused once a lock held through this connection is lost).
    pub fn delete(&self, rel: &str) -> Result<()> {
        self.check_locks()?;
        self.delete_raw(rel)
    }

    /// Delete an object whatever the locks (for the lock objects).
    fn delete_raw(&self, rel: &str) -> Result<()> {
        let key = self.key(rel);
        match self.rt.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("deleting", e)),
        }
    }

    /// Every object under `dir` (recursively): (path relative to `dir`, size).
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let base = self.key(dir);
        let strip = format!("{}/", base.as_ref());
        self.rt.block_on(async {
            let metas: Vec<object_store::ObjectMeta> = self
                .store
                .list(Some(&base))
                .try_collect()
                .await
                .map_err(|e| self.err("listing", e))?;
            Ok(metas
                .into_iter()
                .filter_map(|m| {
                    let p = m.location.as_ref().strip_prefix(&strip)?.to_string();
                    Some((p, m.size))
                })
                .collect())
        })
    }

    /// Whether anything at all lies under the prefix (bucket errors surface).
    fn prefix_is_empty(&self) -> Result<bool> {
        let base = (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()));
        self.rt.block_on(async {
            let mut s = self.store.list(base.as_ref());
            match s.next().await {
                None => Ok(true),
                Some(Ok(_)) => Ok(false),
                Some(Err(e)) => Err(self.err("listing", e)),
            }
        })
    }

    /// Download `rel` to `dest` (temp file in `tmp_dir`, then rename).
    /// Returns false when the object does not exist.
    pub fn download(&self, rel: &str, dest: &Path, tmp_dir: &Path) -> Result<bool> {
        let Some(bytes) = self.get(rel)? else {
            return Ok(false);
        };
        write_into(dest, tmp_dir, &bytes)?;
        Ok(true)
    }

    /// Many objects at once: (rel, bytes) for those that exist.
    fn get_many(&self, rels: Vec<String>) -> Result<Vec<(String, Vec<u8>)>> {
        self.rt.block_on(async {
            let results: Vec<Result<Option<Named>>> =
                futures::stream::iter(rels.into_iter().map(|rel| async move {
                    let key = self.key(&rel);
                    match self.store.get(&key).await {
                        Ok(r) => match r.bytes().await {
                            Ok(b) => Ok(Some((rel, b.to_vec()))),
                            Err(e) => Err(self.err("reading", e)),
                        },
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(self.err("reading", e)),
                    }
                }))
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            let mut out = Vec::new();
            for r in results {
                if let Some(v) = r? {
                    out.push(v);
                }
            }
            Ok(out)
        })
    }

    // ---- the repository protocol ------------------------------------------

    /// Every pack object's id.
    pub fn list_packs(&self) -> Result<BTreeSet<PackId>> {
        Ok(self
            .list("packs")?
            .into_iter()
            .filter_map(|(p, _)| PackId::from_hex(p.rsplit('/').next()?))
            .collect())
    }

    /// Total bytes of packs, index segments and manifests.
    pub fn stored_bytes(&self) -> Result<u64> {
        let mut n = 0;
        for d in ["packs", "index", "snapshots"] {
            n += self.list(d)?.iter().map(|(_, s)| s).sum::<u64>();
        }
        Ok(n)
    }

    fn pack_rel(id: &PackId) -> String {
        let hex = id.to_hex();
        format!("packs/{}/{hex}", &hex[..2])
    }

    pub fn upload_pack(&self, id: &PackId, path: &Path) -> Result<()> {
        let bytes = fs::read(path).map_err(Error::io("reading", path))?;
        self.put(&Self::pack_rel(id), bytes)
    }

    pub fn download_pack(&self, id: &PackId, dest: &Path, tmp_dir: &Path) -> Result<bool> {
        self.download(&Self::pack_rel(id), dest, tmp_dir)
    }

    pub fn delete_pack(&self, id: &PackId) -> Result<()> {
        self.delete(&Self::pack_rel(id))
    }

    pub fn delete_manifest(&self, id: &SnapshotId) -> Result<()> {
        self.delete(&format!("snapshots/{}", id.to_hex()))
    }

    pub fn put_config(&self, bytes: Vec<u8>) -> Result<()> {
        self.put("config", bytes)
    }

    /// Publish a finished manifest: first a segment with the index rows of
    /// every pack not yet published, then the manifest (the commit point).
    pub fn publish_manifest(&self, repo: &Repository, file: &Path, id: &SnapshotId) -> Result<()> {
        self.publish_segment(repo)?;
        let bytes = fs::read(file).map_err(Error::io("reading", file))?;
        self.put(&format!("snapshots/{}", id.to_hex()), bytes)
    }

    /// Upload the index rows of the cache's packs that no segment holds yet.
    pub fn publish_segment(&self, repo: &Repository) -> Result<()> {
        let index = repo.open_index(true)?;
        index.ensure_remote_tables()?;
        let packs = index.unpublished_packs()?;
        if packs.is_empty() {
            return Ok(());
        }
        let bytes = encode_segment(repo.keys().map(|k| &**k), &packs)?;
        let name = segment_name(repo, &bytes);
        self.put(&format!("index/{name}"), bytes)?;
        let ids: Vec<PackId> = packs.iter().map(|p| p.id).collect();
        index.mark_published(&name, &ids, false)
    }

    /// Replace every index segment with one holding the whole index (after
    /// prune moved or dropped packs): new segment first, then the old ones
    /// go. Other caches notice a segment they applied is gone and rebuild.
    pub fn compact_index(&self, repo: &Repository) -> Result<()> {
        let index = repo.open_index(true)?;
        index.ensure_remote_tables()?;
        let packs = index.all_packs()?;
        let bytes = encode_segment(repo.keys().map(|k| &**k), &packs)?;
        let name = segment_name(repo, &bytes);
        self.put(&format!("index/{name}"), bytes)?;
        let ids: Vec<PackId> = packs.iter().map(|p| p.id).collect();
        index.mark_published(&name, &ids, true)?;
        for (old, _) in self.list("index")? {
            if old != name {
                self.delete(&format!("index/{old}"))?;
            }
        }
        Ok(())
    }

    /// Make the cache's `keys/` the bucket's: key files added elsewhere
    /// are fetched, removed ones dropped.
    pub fn pull_keys(&self, dir: &Path) -> Result<()> {
        let keys = dir.join("keys");
        fsutil::private_dir(&keys).map_err(Error::io("creating", &keys))?;
        let remote: BTreeSet<String> = self
            .list("keys")?
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| !p.contains('/'))
            .collect();
        for e in fs::read_dir(&keys)
            .map_err(Error::io("reading", &keys))?
            .flatten()
        {
            if !remote.contains(&*e.file_name().to_string_lossy()) {
                let _ = fs::remove_file(e.path());
            }
        }
        let missing: Vec<String> = remote
            .iter()
            .filter(|n| !keys.join(n).exists())
            .map(|n| format!("keys/{n}"))
            .collect();
        for (rel, bytes) in self.get_many(missing)? {
            let name = rel.trim_start_matches("keys/");
            write_into(&keys.join(name), &dir.join("tmp"), &bytes)?;
        }
        Ok(())
    }

    /// Bring the cache up to date: manifests added or deleted elsewhere,
    /// index segments not yet applied (all of them again when one that was
    /// applied is gone: a prune elsewhere compacted the index).
    pub fn sync(&self, repo: &Repository) -> Result<()> {
        // Manifests. Publishing uploads and then renames under the commit
        // lock, so under it a cached manifest missing remotely was deleted.
        {
            let _commit = repo.lock_commit()?;
            let remote: BTreeSet<String> = self
                .list("snapshots")?
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| SnapshotId::from_hex(p).is_some())
                .collect();
            let dir = repo.snapshots_dir();
            let mut local = BTreeSet::new();
            for e in fs::read_dir(&dir)
                .map_err(Error::io("reading", &dir))?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().to_string();
                if SnapshotId::from_hex(&name).is_some() {
                    local.insert(name);
                }
            }
            for gone in local.difference(&remote) {
                let p = dir.join(gone);
                let _ = fs::remove_file(&p);
            }
            let missing: Vec<String> = remote
                .difference(&local)
                .map(|n| format!("snapshots/{n}"))
                .collect();
            let tmp = repo.tmp_dir();
            for (rel, bytes) in self.get_many(missing)? {
                let name = rel.trim_start_matches("snapshots/");
                write_into(&dir.join(name), &tmp, &bytes)?;
            }
        }
        // Index segments.
        let remote: BTreeSet<String> = self
            .list("index")?
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| !p.contains('/'))
            .collect();
        let index = repo.open_index(true)?;
        index.ensure_remote_tables()?;
        let applied = index.applied_segments()?;
        let reset = applied.iter().any(|s| !remote.contains(s));
        let wanted: Vec<String> = remote
            .iter()
            .filter(|s| reset || !applied.contains(*s))
            .map(|s| format!("index/{s}"))
            .collect();
        if wanted.is_empty() && !reset {
            return Ok(());
        }
        let mut segments = Vec::new();
        for (rel, bytes) in self.get_many(wanted)? {
            let name = rel.trim_start_matches("index/").to_string();
            let keys = repo.keys().map(|k| &**k);
            let url = format!("{}/{rel}", self.url);
            if keys.is_some() && segment_name(repo, &bytes) != name {
                return Err(Error::AuthFailed {
                    file: url,
                    at: " (its keyed name does not match its content)".into(),
                });
            }
            let packs = decode_segment(keys, &bytes).map_err(|why| match why {
                SegmentError::Auth => Error::AuthFailed {
                    file: url.clone(),
                    at: String::new(),
                },
                SegmentError::Bad(why) => Error::Remote {
                    op: "reading index segment",
                    url: url.clone(),
                    why,
                },
            })?;
            segments.push((name, packs));
        }
        index.apply_segments(reset, &segments)
    }

    // ---- locks -------------------------------------------------------------

    /// A lock object's content (None when it is not a lock we can read)
    /// and the version to condition a replacement on; None when absent.
    fn read_lock(&self, rel: &str) -> Result<Option<(Option<LockInfo>, UpdateVersion)>> {
        let key = self.key(rel);
        self.rt.block_on(async {
            match self.store.get(&key).await {
                Ok(r) => {
                    let version = UpdateVersion {
                        e_tag: r.meta.e_tag.clone(),
                        version: r.meta.version.clone(),
                    };
                    match r.bytes().await {
                        Ok(b) => Ok(Some((serde_json::from_slice::<LockInfo>(&b).ok(), version))),
                        Err(e) => Err(self.err("reading", e)),
                    }
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err("reading", e)),
            }
        })
    }

    /// Write a lock object only if it is absent (`None`: S3
    /// `If-None-Match: *`, GCS `ifGenerationMatch=0`) or still at `version`
    /// (S3 `If-Match: <etag>`, GCS `ifGenerationMatch=<generation>`).
    /// Returns the new version, or None when the condition failed.
    ///
    /// The store retries a request whose answer was lost; when the lost
    /// attempt had landed, the retry's condition fails on our own write.
    /// So a failed condition is checked against the object's `id`: if the
    /// object holds `lock.id`, it is ours and its version is returned.
    fn put_lock(
        &self,
        rel: &str,
        lock: &LockInfo,
        version: Option<UpdateVersion>,
    ) -> Result<Option<UpdateVersion>> {
        let key = self.key(rel);
        let opts = PutOptions {
            mode: match version {
                None => PutMode::Create,
                Some(v) => PutMode::Update(v),
            },
            ..Default::default()
        };
        let put = self.rt.block_on(self.store.put_opts(
            &key,
            PutPayload::from(lock.to_json()),
            opts,
        ));
        match put {
            Ok(r) if r.e_tag.is_some() || r.version.is_some() => Ok(Some(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            })),
            // No version in the answer: read it back.
            Ok(_)
            | Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(match self.read_lock(rel)? {
                Some((Some(l), v)) if l.id == lock.id => Some(v),
                _ => None,
            }),
            Err(e) => Err(self.err("writing", e)),
        }
    }

    /// Take the repository's lock: shared (snapshot, restore, check…) or
    /// exclusive (prune, forget). Waits up to `KINDSNAP_LOCK_WAIT` seconds
    /// (default 300) for a conflicting holder to finish. Every write of a
    /// lock object is conditional (docs/storage.md, "Locks").
    pub fn lock(self: &Arc<Self>, exclusive: bool) -> Result<RemoteLock> {
        let ttl = Duration::from_secs(env_secs("KINDSNAP_LOCK_TTL", 120).max(3));
        let wait = Duration::from_secs(env_secs("KINDSNAP_LOCK_WAIT", 300));
        let started = std::time::Instant::now();
        let me = uuid::Uuid::from_bytes(rand::random()).to_string();
        let mode = if exclusive { "exclusive" } else { "shared" };
        let info = {
            let me = me.clone();
            move || LockInfo {
                host: hostname(),
                pid: std::process::id(),
                mode: mode.to_string(),
                expires_us: now_us() + ttl.as_micros() as u64,
                id: me.clone(),
            }
        };
        let too_long = |holder: &LockInfo| -> Result<()> {
            if started.elapsed() >= wait {
                Err(Error::Locked {
                    url: self.url.clone(),
                    holder: holder.describe(),
                })
            } else {
                std::thread::sleep(Duration::from_millis(500));
                Ok(())
            }
        };
        if !exclusive {
            // Our own object, named by our id: nobody else creates it.
            let own = format!("locks/{me}");
            loop {
                let mine = info();
                let version = self
                    .put_lock(&own, &mine, None)?
                    .ok_or_else(|| Error::Remote {
                        op: "creating a lock object in",
                        url: self.url.clone(),
                        why: format!("`{own}` exists already and is not ours"),
                    })?;
                match self.read_lock(EXCLUSIVE)? {
                    Some((Some(ex), _)) if !ex.expired() => {
                        self.delete_raw(&own)?;
                        too_long(&ex)?;
                    }
                    _ => {
                        return Ok(RemoteLock::start(
                            self.clone(),
                            own,
                            version,
                            mine.expires_us,
                            info,
                            ttl,
                        ))
                    }
                }
            }
        }
        let (version, expires_us) = loop {
            let mine = info();
            if let Some(v) = self.put_lock(EXCLUSIVE, &mine, None)? {
                break (v, mine.expires_us);
            }
            match self.read_lock(EXCLUSIVE)? {
                // Gone meanwhile (released): try creating it again.
                None => continue,
                Some((Some(ex), _)) if !ex.expired() => too_long(&ex)?,
                // Expired (its process died) or unreadable: replace it, but
                // only if it is still the object we found expired. Of
                // several processes breaking it at once, one wins; the
                // others find the winner's lock at their next look.
                Some((_, seen)) => {
                    let mine = info();
                    if let Some(v) = self.put_lock(EXCLUSIVE, &mine, Some(seen))? {
                        break (v, mine.expires_us);
                    }
                }
            }
        };
        let guard = RemoteLock::start(
            self.clone(),
            EXCLUSIVE.to_string(),
            version,
            expires_us,
            info,
            ttl,
        );
        // Wait for shared holders that came before us to finish; new ones
        // see our lock and back off.
        loop {
            let mut holder = None;
            for (name, _) in self.list("locks")? {
                if name == "exclusive" {
                    continue;
                }
                let rel = format!("locks/{name}");
                match self.read_lock(&rel)? {
                    Some((Some(l), _)) if !l.expired() => {
                        holder = Some(l);
                        break;
                    }
                    // A dead process's lock: tidy it away (see tidy_lock).
                    Some((l, seen)) => self.tidy_lock(&rel, l, seen)?,
                    None => {}
                }
            }
            match holder {
                None => return Ok(guard),
                Some(h) => too_long(&h)?,
            }
        }
    }

    /// Remove an expired shared lock. Only its holder writes it, and only
    /// on the condition that it is at the version the holder wrote; so it
    /// is first overwritten on the condition that it is still the expired
    /// object we read (a holder that revived meanwhile keeps its lock), and
    /// then, its holder being unable to write it again, deleted.
    fn tidy_lock(&self, rel: &str, seen: Option<LockInfo>, version: UpdateVersion) -> Result<()> {
        let tomb = LockInfo {
            host: hostname(),
            pid: std::process::id(),
            mode: "broken".into(),
            expires_us: 0,
            id: format!("broken:{}", seen.map(|l| l.id).unwrap_or_default()),
        };
        if self.put_lock(rel, &tomb, Some(version))?.is_some() {
            self.delete_raw(rel)?;
        }
        Ok(())
    }

    /// Refuse a repository write when a lock held through this connection
    /// was lost or may have expired: another process may hold it now.
    fn check_locks(&self) -> Result<()> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for h in held.values() {
            if let Some(why) = &h.lost {
                return Err(Error::LockLost {
                    url: self.url.clone(),
                    why: why.clone(),
                });
            }
            if h.valid_until_us < now_us() {
                return Err(Error::LockLost {
                    url: self.url.clone(),
                    why: "(it expired: it could not be renewed in time)".into(),
                });
            }
        }
        Ok(())
    }

    fn update_held(&self, id: &str, f: impl FnOnce(&mut Held)) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = held.get_mut(id) {
            f(h);
        }
    }
}

/// The exclusive lock's object.
const EXCLUSIVE: &str = "locks/exclusive";

/// What a connection knows of a lock it holds.
#[derive(Debug, Default)]
struct Held {
    /// Our lock object's expiry as last written.
    valid_until_us: u64,
    /// Set when another process broke the lock: why, for the message.
    lost: Option<String>,
}

/// A lock object's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockInfo {
    host: String,
    pid: u32,
    /// "shared" or "exclusive".
    mode: String,
    /// Microseconds since the Unix epoch after which the lock is void.
    expires_us: u64,
    id: String,
}

impl LockInfo {
    fn expired(&self) -> bool {
        self.expires_us < now_us()
    }
    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    fn describe(&self) -> String {
        let until = time::OffsetDateTime::from_unix_timestamp((self.expires_us / 1_000_000) as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        format!(
            "a {} lock of pid {} on {} (valid until {until} unless renewed)",
            self.mode, self.pid, self.host
        )
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub(crate) fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// A held remote lock: renewed in the background until dropped; dropping
/// deletes the lock object if it is still ours.
pub struct RemoteLock {
    remote: Arc<Remote>,
    key: String,
    id: String,
    ttl: Duration,
    /// The version of our lock object as we last wrote it; None once the
    /// lock is lost.
    version: Arc<Mutex<Option<UpdateVersion>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for RemoteLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteLock({})", self.key)
    }
}

impl RemoteLock {
    fn start(
        remote: Arc<Remote>,
        key: String,
        version: UpdateVersion,
        expires_us: u64,
        info: impl Fn() -> LockInfo + Send + 'static,
        ttl: Duration,
    ) -> RemoteLock {
        let id = info().id;
        remote
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.clone(),
                Held {
                    valid_until_us: expires_us,
                    lost: None,
                },
            );
        let version = Arc::new(Mutex::new(Some(version)));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (r, k, v, s) = (remote.clone(), key.clone(), version.clone(), stop.clone());
        let renewer = std::thread::spawn(move || {
            let (lock, cv) = &*s;
            let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let (g, _) = cv
                    .wait_timeout(stopped, ttl / 4)
                    .unwrap_or_else(|e| e.into_inner());
                stopped = g;
                if *stopped {
                    return;
                }
                if !renew(&r, &k, &v, &info) {
                    return;
                }
            }
        });
        RemoteLock {
            remote,
            key,
            id,
            ttl,
            version,
            stop,
            renewer: Some(renewer),
        }
    }
}

/// Rewrite our lock object with a later expiry, on the condition that it
/// is still the version we wrote last. Returns false when the lock is
/// lost (another process broke it): the renewer then stops, and the
/// holder's next repository write fails ([`Remote::check_locks`]).
fn renew(
    remote: &Remote,
    key: &str,
    version: &Mutex<Option<UpdateVersion>>,
    info: &impl Fn() -> LockInfo,
) -> bool {
    let mut version = version.lock().unwrap_or_else(|e| e.into_inner());
    let Some(current) = version.clone() else {
        return false;
    };
    let mine = info();
    match remote.put_lock(key, &mine, Some(current)) {
        Ok(Some(v)) => {
            *version = Some(v);
            remote.update_held(&mine.id, |h| h.valid_until_us = mine.expires_us);
            true
        }
        Ok(None) => {
            let why = match remote.read_lock(key) {
                Ok(Some((Some(other), _))) => format!("to another process ({})", other.describe()),
                Ok(_) => "to another process (it deleted our lock object)".to_string(),
                Err(e) => format!("to another process ({e})"),
            };
            *version = None;
            remote.update_held(&mine.id, |h| h.lost = Some(why));
            false
        }
        // A failed renewal is retried at the next tick; the lock stays
        // valid until its expiry meanwhile (and writes check that).
        Err(e) => {
            tracing::warn!("renewing lock {key}: {e}");
            true
        }
    }
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
        let held = self
            .remote
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        let ours = self
            .version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Delete only our own lock, and only while it has at least half
        // its TTL left: nobody breaks it before it expires, so the object
        // that was ours when read is still ours when the delete arrives.
        // A lock left behind expires by itself.
        let (Some(ours), Some(held)) = (ours, held) else {
            return;
        };
        if held.valid_until_us < now_us() + (self.ttl / 2).as_micros() as u64 {
            return;
        }
        if let Ok(Some((_, now))) = self.remote.read_lock(&self.key) {
            if now.e_tag == ours.e_tag && now.version == ours.version {
                let _ = self.remote.delete_raw(&self.key);
            }
        }
    }
}

// ---- opening ----------------------------------------------------------------

/// The cache directory of `url` under `cache_root`: one per repository URL.
pub fn cache_dir(cache_root: &Path, url: &str) -> PathBuf {
    let url = url.trim_end_matches('/');
    let readable: String = url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect();
    let h = blake3::hash(url.as_bytes()).to_hex();
    cache_root.join(format!("{readable}-{}", &h[..12]))
}

/// Create a repository at `url` (the prefix must hold nothing);
/// encrypted when given a first key's password and argon2id parameters.
pub fn init(
    url: &str,
    cache_root: &Path,
    options: &RemoteOptions,
    encrypt: Option<(&[u8], super::crypto::KdfParams)>,
) -> Result<Repository> {
    let remote = Remote::new(url, options)?;
    if !remote.prefix_is_empty()? {
        if encrypt.is_some() && remote.get("config")?.is_some() {
            return Err(Error::EncryptExisting {
                path: PathBuf::from(url),
            });
        }
        return Err(Error::NotEmpty {
            path: PathBuf::from(url),
        });
    }
    let mut config = super::Config::default();
    if let Some((password, params)) = encrypt {
        let master = super::crypto::MasterKey::random();
        let (name, bytes) = super::keyring::new_key_file(&master, password, params, &config.id)?;
        // The key first: a config without a key would be a repository
        // nobody can open.
        remote.put(&format!("keys/{name}"), bytes)?;
        let keys = super::crypto::Keys::new(master);
        config.kindsnap_repository = super::ENCRYPTED_FORMAT_VERSION;
        config.encryption = Some(super::keyring::sealed_encryption(&config, &keys));
    }
    let text = serde_json::to_vec_pretty(&config).unwrap_or_default();
    if !remote.put_new("config", text)? {
        return Err(Error::NotEmpty {
            path: PathBuf::from(url),
        });
    }
    // Opened as any other command opens it: with the password just given.
    let password = zeroize::Zeroizing::new(
        encrypt
            .map(|(p, _)| String::from_utf8_lossy(p).to_string())
            .unwrap_or_default(),
    );
    open_with(remote, cache_root, &|| Ok(password.clone()))
}

/// Open the repository at `url` through its cache under `cache_root`,
/// pulling what changed since the last time; `password` is asked when
/// the repository is encrypted.
pub fn open(
    url: &str,
    cache_root: &Path,
    options: &RemoteOptions,
    password: super::PasswordFn,
) -> Result<Repository> {
    open_with(Remote::new(url, options)?, cache_root, password)
}

fn open_with(remote: Remote, cache_root: &Path, password: super::PasswordFn) -> Result<Repository> {
    let url = remote.url.clone();
    let Some(config) = remote.get("config")? else {
        return Err(if remote.prefix_is_empty()? {
            Error::NoRepository {
                path: PathBuf::from(&url),
            }
        } else {
            Error::NotARepository {
                path: PathBuf::from(&url),
                why: "it holds objects but no `config`".into(),
            }
        });
    };
    let dir = cache_dir(cache_root, &url);
    prepare_cache(&dir, &config)?;
    let mut repo = Repository::open_locked(&dir).map_err(|e| match e {
        Error::NotARepository { why, .. } => Error::NotARepository {
            path: PathBuf::from(&url),
            why,
        },
        Error::NewerFormat {
            found, supported, ..
        } => Error::NewerFormat {
            path: PathBuf::from(&url),
            found,
            supported,
        },
        // The numbers came from the bucket's `config`: name that.
        Error::BadRepoConfig {
            key, value, range, ..
        } => Error::BadRepoConfig {
            path: PathBuf::from(format!("{}/config", url.trim_end_matches('/'))),
            key,
            value,
            range,
        },
        e => e,
    })?;
    let remote = Arc::new(remote);
    repo.remote = Some(remote.clone());
    if repo.is_encrypted() {
        remote.pull_keys(&dir)?;
        repo.unlock(password)?;
    }
    remote.sync(&repo)?;
    Ok(repo)
}

/// Make `dir` a local repository holding `config`: created when missing,
/// emptied when it caches a different repository (same URL, new id).
fn prepare_cache(dir: &Path, config: &[u8]) -> Result<()> {
    let cfg_path = dir.join("config");
    let id_of = |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
    };
    match fs::read(&cfg_path) {
        Ok(old) if old == config => {}
        Ok(old) if id_of(&old).is_some() && id_of(&old) == id_of(config) => {
            fsutil::write_atomic(&cfg_path, config)?;
        }
        Ok(_) => {
            // Another repository lived at this URL once: start afresh.
            fs::remove_dir_all(dir).map_err(Error::io("removing", dir))?;
        }
        Err(_) => {}
    }
    for d in ["packs", "index", "snapshots", "locks", "tmp"] {
        let p = dir.join(d);
        fsutil::private_dir(&p).map_err(Error::io("creating", &p))?;
    }
    for lock in ["repo", "commit"] {
        let p = dir.join("locks").join(lock);
        fsutil::private_file(&p, false).map_err(Error::io("creating", &p))?;
    }
    let index = dir.join("index").join("index.db");
    if !index.exists() {
        let tmp = fsutil::temp_path(&dir.join("tmp"), "index");
        fsutil::private_file(&tmp, true).map_err(Error::io("creating", &tmp))?;
        Index::create(&tmp)?;
        // Another process may have created it meanwhile: keep theirs.
        if !index.exists() {
            fsutil::commit_file(&tmp, &index)?;
        } else {
            let _ = fs::remove_file(&tmp);
        }
    }
    if !cfg_path.exists() {
        fsutil::write_atomic(&cfg_path, config)?;
    }
    Ok(())
}

/// Write `bytes` to `dest` through a temp file in `tmp_dir` and a rename.
fn write_into(dest: &Path, tmp_dir: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = fsutil::temp_path(tmp_dir, "download");
    let res = (|| -> std::io::Result<()> {
        let mut f = fsutil::private_file(&tmp, true)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("writing", &tmp)(e));
    }
    fsutil::commit_file(&tmp, dest).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

// ---- index segments ---------------------------------------------------------

/// An index segment (docs/format.md).
#[derive(Serialize, Deserialize)]
struct Segment {
    nonce: u64,
    packs: Vec<SegPack>,
}

/// One pack in a segment.
#[derive(Serialize, Deserialize)]
struct SegPack {
    #[serde(with = "serde_bytes")]
    id: Vec<u8>,
    namespace: String,
    kind: String,
    size: u64,
    raw_bytes: u64,
    /// (file offset, compressed length, uncompressed length,
    ///  [(entity hash, offset in block, length)])
    blocks: Vec<(u64, u32, u32, Vec<SegEntity>)>,
}

/// A segment's object name: the blake3 of its bytes, keyed in an
/// encrypted repository.
fn segment_name(repo: &Repository, bytes: &[u8]) -> String {
    let mut h = repo.object_hasher();
    h.update(bytes);
    h.finalize().to_hex().to_string()
}

/// Why a segment could not be read.
enum SegmentError {
    /// A sealed segment failed authentication.
    Auth,
    Bad(String),
}

impl From<&str> for SegmentError {
    fn from(s: &str) -> Self {
        SegmentError::Bad(s.to_string())
    }
}

impl From<String> for SegmentError {
    fn from(s: String) -> Self {
        SegmentError::Bad(s)
    }
}

fn encode_segment(keys: Option<&Keys>, packs: &[NewPack]) -> Result<Vec<u8>> {
    let seg: Vec<SegPack> = packs
        .iter()
        .map(|p| {
            let mut blocks: BTreeMap<u64, (u32, u32, Vec<SegEntity>)> = BTreeMap::new();
            for (h, l) in &p.entries {
                blocks
                    .entry(l.block_off)
                    .or_insert_with(|| (l.block_len, l.block_raw, Vec::new()))
                    .2
                    .push((
                        serde_bytes::ByteBuf::from(h.as_bytes().to_vec()),
                        l.off,
                        l.len,
                    ));
            }
            SegPack {
                id: p.id.as_bytes().to_vec(),
                namespace: p.namespace.clone(),
                kind: p.kind.clone(),
                size: p.size,
                raw_bytes: p.raw_bytes,
                blocks: blocks
                    .into_iter()
                    .map(|(off, (clen, raw, es))| (off, clen, raw, es))
                    .collect(),
            }
        })
        .collect();
    // A random nonce makes every segment's name new, even one with the
    // same rows as an earlier segment: other caches notice a compaction
    // only by a name they applied disappearing.
    let seg = Segment {
        nonce: rand::random(),
        packs: seg,
    };
    let mut cbor = Vec::new();
    ciborium::ser::into_writer(&seg, &mut cbor).map_err(|_| Error::Internal("segment encoding"))?;
    let z = zstd::bulk::compress(&cbor, 3).map_err(|_| Error::Internal("segment compression"))?;
    let mut out = Vec::with_capacity(z.len() + 48);
    match keys {
        Some(k) => {
            out.extend_from_slice(SEALED_SEGMENT_MAGIC);
            out.extend_from_slice(&k.seal(SEALED_SEGMENT_MAGIC, &z));
        }
        None => {
            out.extend_from_slice(SEGMENT_MAGIC);
            out.extend_from_slice(&z);
        }
    }
    Ok(out)
}

fn decode_segment(
    keys: Option<&Keys>,
    bytes: &[u8],
) -> std::result::Result<Vec<NewPack>, SegmentError> {
    let opened;
    let body = match keys {
        Some(k) => {
            let sealed = bytes
                .strip_prefix(SEALED_SEGMENT_MAGIC)
                .ok_or(SegmentError::Auth)?;
            opened = k
                .open(SEALED_SEGMENT_MAGIC, sealed)
                .map_err(|_| SegmentError::Auth)?;
            &opened[..]
        }
        None => bytes
            .strip_prefix(SEGMENT_MAGIC)
            .ok_or("not a kindsnap index segment (bad magic)")?,
    };
    let cbor = zstd::stream::decode_all(body).map_err(|e| e.to_string())?;
    let seg: Segment = ciborium::de::from_reader(&cbor[..]).map_err(|e| e.to_string())?;
    let to32 = |b: &[u8]| -> std::result::Result<[u8; 32], String> {
        b.try_into()
            .map_err(|_| "a hash is not 32 bytes".to_string())
    };
    let mut out = Vec::with_capacity(seg.packs.len());
    for p in seg.packs {
        let id = PackId::from(to32(&p.id)?);
        let mut entries = Vec::new();
        for (block_off, block_len, block_raw, es) in p.blocks {
            for (h, off, len) in es {
                entries.push((
                    EntityHash::from(to32(&h)?),
                    Location::new(id, (block_off, block_len, block_raw), (off, len)),
                ));
            }
        }
        out.push(NewPack {
            id,
            namespace: p.namespace,
            kind: p.kind,
            size: p.size,
            raw_bytes: p.raw_bytes,
            entries,
        });
    }
    Ok(out)
}

/// What the AWS shared files say for `AWS_PROFILE` (else `default`):
/// `~/.aws/credentials` (or `AWS_SHARED_CREDENTIALS_FILE`) for keys,
/// `~/.aws/config` (or `AWS_CONFIG_FILE`) for the region. `object_store`
/// reads only the environment, so the CLI's usual profiles are read here.
#[derive(Debug, Default)]
struct AwsProfile {
    credentials: Option<(String, String, Option<String>)>,
    region: Option<String>,
}

fn aws_profile() -> AwsProfile {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |var: &str, name: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    aws_profile_from(
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        file("AWS_CONFIG_FILE", "config"),
        &profile,
    )
}

fn aws_profile_from(
    credentials: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
    profile: &str,
) -> AwsProfile {
    let mut out = AwsProfile::default();
    if let Some(ini) = credentials.and_then(|p| ini::Ini::load_from_file(p).ok()) {
        if let Some(sec) = ini.section(Some(profile)) {
            if let (Some(k), Some(s)) = (
                sec.get("aws_access_key_id"),
                sec.get("aws_secret_access_key"),
            ) {
                out.credentials = Some((
                    k.to_string(),
                    s.to_string(),
                    sec.get("aws_session_token").map(str::to_string),
                ));
            }
        }
    }
    if let Some(ini) = config.and_then(|p| ini::Ini::load_from_file(p).ok()) {
        // In `config`, profiles other than the default are `[profile NAME]`.
        let name = if profile == "default" {
            profile.to_string()
        } else {
            format!("profile {profile}")
        };
        out.region = ini
            .section(Some(name.as_str()))
            .and_then(|s| s.get("region"))
            .map(str::to_string);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aws_profiles_are_read_from_the_shared_files() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AK0\naws_secret_access_key = S0\n\n[ci]\naws_access_key_id = AK1\naws_secret_access_key = S1\naws_session_token = T1\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[default]\nregion = eu-west-1\n\n[profile ci]\nregion = ap-south-1\n",
        )
        .unwrap();
        let p = super::aws_profile_from(Some(creds.clone()), Some(config.clone()), "ci");
        assert_eq!(
            p.credentials,
            Some(("AK1".into(), "S1".into(), Some("T1".into())))
        );
        assert_eq!(p.region.as_deref(), Some("ap-south-1"));
        let d = super::aws_profile_from(Some(creds), Some(config), "default");
        assert_eq!(d.credentials, Some(("AK0".into(), "S0".into(), None)));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        let none = super::aws_profile_from(None, Some(dir.path().join("missing")), "x");
        assert!(none.credentials.is_none() && none.region.is_none());
    }

    use super::*;

    #[test]
    fn segments_round_trip() {
        let id = PackId::from([7u8; 32]);
        let loc = |block_off, off| Location {
            pack: id,
            block_off,
            block_len: 10,
            block_raw: 20,
            off,
            len: 5,
        };
        let p = NewPack {
            id,
            namespace: "ns".into(),
            kind: "K".into(),
            size: 99,
            raw_bytes: 40,
            entries: vec![
                (EntityHash::from([1u8; 32]), loc(8, 0)),
                (EntityHash::from([2u8; 32]), loc(8, 5)),
                (EntityHash::from([3u8; 32]), loc(18, 0)),
            ],
        };
        let bytes = encode_segment(None, std::slice::from_ref(&p)).unwrap();
        let Ok(back) = decode_segment(None, &bytes) else {
            panic!("segment does not decode")
        };
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].entries, p.entries);
        assert_eq!(back[0].kind, "K");
        assert!(decode_segment(None, b"junk").is_err());
        let keys =
            crate::repo::crypto::Keys::new(crate::repo::crypto::MasterKey::from_bytes([3; 32]));
        let sealed = encode_segment(Some(&keys), std::slice::from_ref(&p)).unwrap();
        assert!(decode_segment(Some(&keys), &sealed).is_ok());
        let mut flipped = sealed.clone();
        flipped[40] ^= 1;
        assert!(matches!(
            decode_segment(Some(&keys), &flipped),
            Err(SegmentError::Auth)
        ));
    }

    #[test]
    fn cache_dirs_differ_per_url() {
        let a = cache_dir(Path::new("/c"), "s3://b/p");
        let b = cache_dir(Path::new("/c"), "s3://b/q");
        assert_ne!(a, b);
        assert_eq!(a, cache_dir(Path::new("/c"), "s3://b/p/"));
    }
}
