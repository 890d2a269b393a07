//! Incremental reads: with a parent snapshot and a property every write
//! bumps (`updated`), a kind is read as
//!
//! 1. the changed query, `property > parent's read time − margin`: the
//!    entities written since (whole entities, billed reads);
//! 2. a keys-only scan in key order (small operations, nearly free),
//!    merged here, on the caller's thread, with the parent's keys of the
//!    kind (streamed from the parent's manifest in key order): a parent key
//!    the scan does not see was deleted; a key in both that the changed
//!    query did not return is carried from the parent by hash; a key only
//!    the scan has (written without the property, or with an old value) is
//!    fetched by `lookup`.
//!
//! All of it at one `readTime` (the server's time at the start) where the
//! server supports that. Memory: the keys the changed query returned (a
//! set, as big as the change), a page of keys, a batch of lookups and the
//! parent reader's page.
//!
//! What this cannot see: a write that does not bump the property (or
//! leaves it unindexed on that entity). `--full` now and then catches it.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::{
    kind_label, mjson, scan_kind, Client, EncodedBatch, Msg, ScanCtx, Want, RANGE_PAGES_AHEAD,
};
use crate::connector::{ChangedProperty, Encoded, KindRead, ParentEntry, ParentState};
use crate::error::{Error, Result};
use crate::model::Key;

/// Keys per lookup call (Datastore's limit).
const LOOKUP_BATCH: usize = 1000;

/// The moment a snapshot reads at.
pub(super) struct Moment {
    /// Recorded in the snapshot for the next one.
    pub read_time_us: i64,
    /// `readTime` for the incremental kinds' reads, when the server
    /// supports it.
    pub at: Option<String>,
    pub notes: Vec<String>,
}

impl Moment {
    /// The server's time now (asked with a one-key query), and whether it
    /// reads at a given `readTime`; the client's clock for snapshots that
    /// do not read incrementally.
    pub async fn find(client: &Client, incremental: bool) -> Result<Moment> {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        if let Some(t) = &client.ep.read_time {
            let us = mjson::parse_timestamp(t)
                .map_err(|why| Error::BadArgument(format!("--read-time: {why}")))?;
            return Ok(Moment {
                read_time_us: us,
                at: None,
                notes: Vec::new(),
            });
        }
        let mut m = Moment {
            read_time_us: before,
            at: None,
            notes: Vec::new(),
        };
        if !incremental {
            return Ok(m);
        }
        let probe = json!({
            "kind": [{ "name": "__namespace__" }],
            "projection": [{ "property": { "name": "__key__" } }],
            "limit": 1,
        });
        let batch = client.run_query("", &probe, None).await?;
        let Some(t) = batch
            .read_time
            .filter(|t| mjson::parse_timestamp(t).is_ok())
        else {
            m.notes.push(format!(
                "{} gives no read time: incremental reads are not at one consistent moment (writes made during the snapshot are read again next time)",
                client.ep.base
            ));
            return Ok(m);
        };
        m.read_time_us = mjson::parse_timestamp(&t).unwrap_or(before);
        match client.at(&t).try_query("", &probe, None).await {
            Ok(_) => m.at = Some(t),
            Err(e)
                if matches!(
                    e.status.as_str(),
                    "INVALID_ARGUMENT" | "UNIMPLEMENTED" | "FAILED_PRECONDITION"
                ) =>
            {
                m.notes.push(format!(
                    "{} does not read at a given readTime ({}): incremental reads are not at one consistent moment (writes made during the snapshot are read again next time)",
                    client.ep.base, e.message
                ));
            }
            Err(e) => return Err(client.explain_query(e)),
        }
        Ok(m)
    }
}

/// How one kind will be read.
pub(super) enum KindPlan {
    /// In full; `why` when changed reads were asked for.
    Full { why: Option<String> },
    /// Only what changed: `property > since` (RFC 3339).
    Changed { property: String, since: String },
}

impl KindPlan {
    pub fn decide(
        changed: Option<&ChangedProperty>,
        parent: Option<&dyn ParentState>,
        ns: &str,
        kind: &str,
    ) -> Result<KindPlan> {
        let full = |why: &str| {
            Ok(KindPlan::Full {
                why: Some(why.to_string()),
            })
        };
        let Some(changed) = changed else {
            return Ok(KindPlan::Full { why: None });
        };
        let Some(property) = changed.for_kind(kind) else {
            return full("no changed_property for this kind");
        };
        let Some(parent) = parent else {
            return full("no parent snapshot to start from (the first snapshot of this source)");
        };
        if !parent.may_carry() {
            return full("--full (or full_every)");
        }
        let Some(parent_time) = parent.read_time_us() else {
            return full("the parent snapshot recorded no read time (taken by an older kindsnap or from another source); this snapshot records one");
        };
        if parent.entries(ns, kind)?.next().is_none() {
            return full("not in the parent snapshot");
        }
        let since = parent_time - changed.margin.as_micros() as i64;
        Ok(KindPlan::Changed {
            property: property.to_string(),
            since: mjson::format_timestamp(since),
        })
    }

    /// The reason a kind is read in full, if changed reads were asked for.
    pub fn full_why(&self) -> Option<KindRead> {
        match self {
            KindPlan::Full { why: Some(why) } => Some(KindRead::Full { why: why.clone() }),
            _ => None,
        }
    }

    pub async fn run(
        self,
        ctx: &Arc<ScanCtx>,
        at: (&str, &str, u32),
        at_once: usize,
        splits: Vec<Key>,
    ) -> Result<()> {
        let (ns, kind, kind_no) = at;
        let (property, since) = match self {
            KindPlan::Full { .. } => {
                return scan_kind(ctx, at, Want::Entities, at_once, splits).await
            }
            KindPlan::Changed { property, since } => (property, since),
        };
        if !indexed(&ctx.client_at, ns, kind, &property).await? {
            let why = format!(
                "`{property}` is not an indexed property of {} (no entity has it, or it is excluded from indexes)",
                kind_label(ns, kind)
            );
            if ctx
                .tx
                .send(Ok(Msg::Mode(kind_no, KindRead::Full { why })))
                .await
                .is_err()
            {
                return Ok(());
            }
            return scan_kind(ctx, at, Want::Entities, at_once, splits).await;
        }
        let mode = KindRead::Incremental {
            property: property.clone(),
            changed: 0,
            looked_up: 0,
            carried: 0,
        };
        if ctx.tx.send(Ok(Msg::Mode(kind_no, mode))).await.is_err() {
            return Ok(());
        }
        // The keys-only scan starts at once, into a small channel of its
        // own (its ranges stop a few pages ahead when it is full); its
        // pages are passed on once the changed query is done, since the
        // merge needs every changed key first.
        let (ktx, mut krx) = tokio::sync::mpsc::channel(RANGE_PAGES_AHEAD);
        let keys_ctx = Arc::new(ScanCtx {
            client: ctx.client.clone(),
            client_at: ctx.client_at.clone(),
            tx: ktx,
            slots: Arc::clone(&ctx.slots),
            counters: Arc::clone(&ctx.counters),
            shown: ctx.shown.clone(),
        });
        let (ns_owned, kind_owned) = (ns.to_string(), kind.to_string());
        let keys = tokio::spawn(async move {
            let at = (ns_owned.as_str(), kind_owned.as_str(), kind_no);
            if let Err(e) = scan_kind(&keys_ctx, at, Want::Keys, at_once, splits).await {
                let _ = keys_ctx.tx.send(Err(e)).await;
            }
        });
        changed_query(ctx, at, &property, &since).await?;
        while let Some(page) = krx.recv().await {
            let failed = page.is_err();
            if ctx.tx.send(page).await.is_err() || failed {
                return Ok(());
            }
        }
        keys.await
            .map_err(|_| Error::Internal("a keys-only scan panicked"))?;
        let _ = ctx.tx.send(Ok(Msg::Done(kind_no))).await;
        Ok(())
    }
}

/// Where to cut a kind into key ranges, from the parent's keys of it (free
/// and exact): about [`ENTITIES_PER_RANGE`] entities a range, at least
/// `at_once` ranges, at most [`super::MAX_RANGES`]. Empty for a kind of a
/// few pages (read with one cursor and a `__scatter__` sample, if at all).
pub(super) fn parent_splits(
    parent: Option<&dyn ParentState>,
    partition: &crate::model::PartitionId,
    kind: &str,
    at_once: usize,
) -> Result<Vec<Key>> {
    let Some(parent) = parent else {
        return Ok(Vec::new());
    };
    let count = parent.count(&partition.namespace, kind)?;
    if at_once <= 1 || count < 2 * ENTITIES_PER_RANGE {
        return Ok(Vec::new());
    }
    let n = (count / ENTITIES_PER_RANGE)
        .max(at_once as u64)
        .min(super::MAX_RANGES as u64);
    let step = (count / n).max(1);
    let mut out = Vec::with_capacity(n as usize);
    for (i, entry) in parent.entries(&partition.namespace, kind)?.enumerate() {
        let entry = entry?;
        if i > 0 && (i as u64).is_multiple_of(step) && out.len() + 1 < n as usize {
            let path = crate::model::key::decode_path(&entry.key)
                .ok_or(Error::Internal("a parent key does not decode"))?;
            out.push(Key {
                partition: partition.clone(),
                path,
            });
        }
    }
    Ok(out)
}

/// Entities per key range cut from the parent's keys: four pages of 300.
const ENTITIES_PER_RANGE: u64 = 1200;

/// Whether `property` is indexed on some entity of `kind` (the
/// `__property__` metadata lists only indexed properties).
async fn indexed(client: &Client, ns: &str, kind: &str, property: &str) -> Result<bool> {
    let mut kind_key = json!({ "path": [{ "kind": "__kind__", "name": kind }] });
    kind_key["partitionId"] = client.partition(ns);
    let query = json!({
        "kind": [{ "name": "__property__" }],
        "projection": [{ "property": { "name": "__key__" } }],
        "filter": { "propertyFilter": {
            "property": { "name": "__key__" },
            "op": "HAS_ANCESTOR",
            "value": { "keyValue": kind_key },
        }},
    });
    let mut cursor: Option<String> = None;
    loop {
        let batch = client.run_query(ns, &query, cursor.as_deref()).await?;
        for r in &batch.entity_results {
            let key = client.parse_key(r.entity.get())?;
            let name = key.path.last().and_then(|e| match &e.id {
                crate::model::ElementId::Name(n) => Some(n.as_str()),
                _ => None,
            });
            if name == Some(property) {
                return Ok(true);
            }
        }
        match batch.end_cursor {
            Some(c) if batch.more_results == "NOT_FINISHED" && !batch.entity_results.is_empty() => {
                cursor = Some(c)
            }
            _ => return Ok(false),
        }
    }
}

/// The entities of `kind` whose `property` is later than `since`.
async fn changed_query(
    ctx: &Arc<ScanCtx>,
    at: (&str, &str, u32),
    property: &str,
    since: &str,
) -> Result<()> {
    let query = json!({
        "kind": [{ "name": at.1 }],
        "filter": { "propertyFilter": {
            "property": { "name": property },
            "op": "GREATER_THAN",
            "value": { "timestampValue": since },
        }},
    });
    let mut cursor: Option<String> = None;
    loop {
        let page = ctx
            .fetch(at, Want::Changed, &query, cursor.as_deref())
            .await?;
        if ctx.tx.send(Ok(page.msg)).await.is_err() {
            return Ok(());
        }
        match page.more {
            Some(c) => cursor = Some(c),
            None => return Ok(()),
        }
    }
}

impl Client {
    /// Whole entities by key, in batches, following `deferred` keys; keys
    /// not found are left out. The JSON text of each entity.
    pub(super) async fn lookup(&self, keys: &[Key]) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Found {
            entity: Box<serde_json::value::RawValue>,
        }
        #[derive(serde::Deserialize)]
        struct Resp {
            #[serde(default)]
            found: Vec<Found>,
            #[serde(default)]
            deferred: Vec<serde_json::Value>,
        }
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(LOOKUP_BATCH) {
            let mut todo: Vec<serde_json::Value> = chunk.iter().map(mjson::key_to_json).collect();
            while !todo.is_empty() {
                let mut body = json!({ "keys": todo });
                if !self.ep.database.is_empty() {
                    body["databaseId"] = json!(self.ep.database);
                }
                if let Some(ro) = self.read_options() {
                    body["readOptions"] = ro;
                }
                let bytes = self
                    .call("lookup", &body)
                    .await
                    .map_err(|e| self.explain_query(e))?;
                let resp: Resp =
                    serde_json::from_slice(&bytes).map_err(|e| Error::DatastoreAnswer {
                        endpoint: self.ep.base.clone(),
                        what: "an answer to lookup".into(),
                        why: e.to_string(),
                    })?;
                out.extend(resp.found.into_iter().map(|f| f.entity.get().to_string()));
                todo = resp.deferred;
            }
        }
        Ok(out)
    }
}

/// One incremental kind on the caller's side.
struct KindCarry<'p> {
    changed: HashSet<Vec<u8>>,
    parent: Option<Box<dyn Iterator<Item = Result<ParentEntry>> + 'p>>,
    /// The parent's next entry not yet passed.
    next: Option<ParentEntry>,
    to_look_up: Vec<Key>,
    counts: (u64, u64, u64),
}

/// The caller's side of the incremental kinds: the parent merge and the
/// lookups.
pub(super) struct Carry<'p, 'r> {
    parent: Option<&'p dyn ParentState>,
    rt: &'r tokio::runtime::Runtime,
    client: Client,
    names: Vec<(String, String)>,
    kinds: Vec<Option<KindCarry<'p>>>,
    /// Keys looked up per kind.
    looked_up: Vec<u64>,
    /// (changed, looked up, carried) per kind, kept when a kind is done.
    done: Vec<Option<(u64, u64, u64)>>,
    scratch: EncodedBatch,
}

type Emit<'e> = dyn FnMut(u32, Encoded<'_>) -> Result<()> + 'e;

impl<'p, 'r> Carry<'p, 'r> {
    pub fn new(
        parent: Option<&'p dyn ParentState>,
        rt: &'r tokio::runtime::Runtime,
        client: Client,
        work: &[(String, String)],
    ) -> Self {
        Carry {
            parent,
            rt,
            client,
            names: work.to_vec(),
            kinds: work.iter().map(|_| None).collect(),
            looked_up: vec![0; work.len()],
            done: vec![None; work.len()],
            scratch: EncodedBatch::default(),
        }
    }

    fn kind(&mut self, k: u32) -> Result<&mut KindCarry<'p>> {
        let i = k as usize;
        if self.kinds.get(i).is_some_and(|c| c.is_none()) {
            self.kinds[i] = Some(KindCarry {
                changed: HashSet::new(),
                parent: None,
                next: None,
                to_look_up: Vec::new(),
                counts: (0, 0, 0),
            });
        }
        self.kinds
            .get_mut(i)
            .and_then(|c| c.as_mut())
            .ok_or(Error::Internal("an incremental kind out of range"))
    }

    /// The changed query returned this key (its entity is passed on).
    pub fn note_changed(&mut self, k: u32, key: &[u8]) {
        if let Ok(c) = self.kind(k) {
            c.changed.insert(key.to_vec());
            c.counts.0 += 1;
        }
    }

    /// A page of the keys-only scan, in key order.
    pub fn keys(&mut self, k: u32, keys: Vec<(Vec<u8>, Key)>, emit: &mut Emit<'_>) -> Result<()> {
        let (ns, kind) = self.names[k as usize].clone();
        let parent = self.parent;
        let c = self.kind(k)?;
        if c.parent.is_none() {
            let p = parent.ok_or(Error::Internal("an incremental kind without a parent"))?;
            let mut it = p.entries(&ns, &kind)?;
            c.next = it.next().transpose()?;
            c.parent = Some(it);
        }
        for (bytes, key) in keys {
            // Parent keys before this one were deleted.
            while c.next.as_ref().is_some_and(|p| p.key < bytes) {
                c.next = c.parent.as_mut().and_then(|it| it.next()).transpose()?;
            }
            if c.changed.contains(&bytes) {
                continue;
            }
            match &c.next {
                Some(p) if p.key == bytes => {
                    c.counts.2 += 1;
                    emit(
                        k,
                        Encoded {
                            namespace: &ns,
                            kind: &kind,
                            key: &p.key,
                            hash: p.hash,
                            body: None,
                            size: p.size as u32,
                            json: &[],
                            origin: 0,
                        },
                    )?;
                }
                _ => c.to_look_up.push(key),
            }
        }
        if self.kinds[k as usize]
            .as_ref()
            .is_some_and(|c| c.to_look_up.len() >= LOOKUP_BATCH)
        {
            self.look_up(k, emit)?;
        }
        Ok(())
    }

    /// Fetch the keys waiting for a lookup and pass their entities on.
    fn look_up(&mut self, k: u32, emit: &mut Emit<'_>) -> Result<()> {
        let keys = match self.kinds[k as usize].as_mut() {
            Some(c) => std::mem::take(&mut c.to_look_up),
            None => return Ok(()),
        };
        if keys.is_empty() {
            return Ok(());
        }
        let found = self.rt.block_on(self.client.lookup(&keys))?;
        self.looked_up[k as usize] += keys.len() as u64;
        let shown = self.client.ep.id();
        let kind = kind_label(&self.names[k as usize].0, &self.names[k as usize].1);
        for text in &found {
            self.scratch.clear();
            self.scratch
                .push_json(text.as_bytes(), 0)
                .map_err(|e| Error::DatastoreAnswer {
                    endpoint: shown.to_string(),
                    what: format!("an entity of kind {kind}"),
                    why: e.to_string(),
                })?;
            for e in self.scratch.iter() {
                emit(k, e)?;
            }
        }
        if let Some(c) = self.kinds[k as usize].as_mut() {
            c.counts.1 += found.len() as u64;
        }
        Ok(())
    }

    /// The kind's keys-only scan is complete.
    pub fn done(&mut self, k: u32, emit: &mut Emit<'_>) -> Result<()> {
        self.look_up(k, emit)?;
        if let Some(c) = self.kinds.get_mut(k as usize).and_then(|c| c.take()) {
            self.done[k as usize] = Some(c.counts);
        }
        Ok(())
    }

    /// Keys looked up per kind (billed as entity reads).
    pub fn lookups(&self) -> Vec<u64> {
        self.looked_up.clone()
    }

    /// How each kind was read (for kinds whose mode is known).
    pub fn finish(
        self,
        work: &[(String, String)],
        modes: Vec<Option<KindRead>>,
    ) -> Vec<(String, String, KindRead)> {
        work.iter()
            .zip(modes)
            .zip(self.done)
            .filter_map(|(((ns, kind), mode), counts)| {
                let mode = match (mode?, counts) {
                    (KindRead::Incremental { property, .. }, Some((c, l, k))) => {
                        KindRead::Incremental {
                            property,
                            changed: c,
                            looked_up: l,
                            carried: k,
                        }
                    }
                    (m, _) => m,
                };
                Some((ns.clone(), kind.clone(), mode))
            })
            .collect()
    }
}
