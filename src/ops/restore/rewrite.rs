//! Keys as the target gets them: project and database of the target,
//! `--map-project`, `--map-namespace`, and with `--keys uuid` every numeric
//! id turned into a uuid name derived from the original path (references
//! into the snapshot follow; references outside it are left alone).

use std::collections::HashMap;

use super::{KeyMode, RestoreOptions};
use crate::error::Result;
use crate::model::key::encode_path;
use crate::model::{ElementId, Entity, Key, Value, ValueKind};
use crate::repo::manifest::Chain;

#[derive(Default)]
pub(super) struct RewriteStats {
    pub rewritten: u64,
    pub outside: u64,
}

pub(super) struct Rewriter {
    uuid_key: Option<[u8; 32]>,
    project: Option<String>,
    database: Option<String>,
    map_project: Vec<(String, String)>,
    map_namespace: Vec<(String, String)>,
    chain: Chain,
    /// Whether a referenced key is in the snapshot (bounded cache).
    known: std::cell::RefCell<HashMap<(String, Vec<u8>), bool>>,
}

impl Rewriter {
    pub(super) fn new(
        opts: &RestoreOptions,
        project: Option<String>,
        database: Option<String>,
        target_id: &str,
        chain: Chain,
    ) -> Rewriter {
        Rewriter {
            uuid_key: (opts.keys == KeyMode::Uuid).then(|| uuid_key(target_id)),
            project,
            database,
            map_project: opts.map_project.clone(),
            map_namespace: opts.map_namespace.clone(),
            chain,
            known: Default::default(),
        }
    }

    pub(super) fn rewrite_entity(&self, e: &mut Entity) -> Result<RewriteStats> {
        let mut stats = RewriteStats::default();
        self.rewrite_key(&mut e.key, true)?;
        for v in e.properties.values_mut() {
            self.rewrite_value(v, &mut stats)?;
        }
        Ok(stats)
    }

    fn rewrite_value(&self, v: &mut Value, stats: &mut RewriteStats) -> Result<()> {
        match &mut v.kind {
            ValueKind::Key(k) => {
                let inside = k.is_complete() && self.in_snapshot(k)?;
                if !inside {
                    stats.outside += 1;
                }
                if self.rewrite_key(k, inside)? {
                    stats.rewritten += 1;
                }
            }
            ValueKind::Array(vs) => {
                for v in vs {
                    self.rewrite_value(v, stats)?;
                }
            }
            ValueKind::Entity(e) => {
                if let Some(k) = &mut e.key {
                    let inside = k.is_complete() && self.in_snapshot(k)?;
                    self.rewrite_key(k, inside)?;
                }
                for v in e.properties.values_mut() {
                    self.rewrite_value(v, stats)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn in_snapshot(&self, k: &Key) -> Result<bool> {
        let path = k.path_bytes();
        let cache_key = (k.partition.namespace.clone(), path);
        if let Some(&hit) = self.known.borrow().get(&cache_key) {
            return Ok(hit);
        }
        let found = self
            .chain
            .lookup(&k.partition.namespace, k.kind(), &cache_key.1)?
            .is_some();
        let mut known = self.known.borrow_mut();
        if known.len() > 200_000 {
            known.clear();
        }
        known.insert(cache_key, found);
        Ok(found)
    }

    /// Rewrite one key; `uuid` says whether numeric ids become uuid names
    /// (the entity's own key, or a reference into the snapshot). Returns
    /// whether any id was replaced.
    fn rewrite_key(&self, k: &mut Key, uuid: bool) -> Result<bool> {
        let mut replaced = false;
        if let (Some(secret), true) = (&self.uuid_key, uuid) {
            let original = k.path.clone();
            for i in 0..k.path.len() {
                if matches!(k.path[i].id, ElementId::Id(_)) {
                    let name = uuid_name(secret, &k.partition.namespace, &original[..=i]);
                    k.path[i].id = ElementId::Name(name);
                    replaced = true;
                }
            }
        }
        if let Some((_, to)) = self
            .map_namespace
            .iter()
            .find(|(from, _)| *from == k.partition.namespace)
        {
            k.partition.namespace = to.clone();
        }
        if let Some((_, to)) = self
            .map_project
            .iter()
            .find(|(from, _)| *from == k.partition.project)
        {
            k.partition.project = to.clone();
        } else if let Some(p) = &self.project {
            k.partition.project = p.clone();
        }
        if let Some(d) = &self.database {
            k.partition.database = d.clone();
        }
        Ok(replaced)
    }
}

/// The per-target secret the uuid names derive from: deterministic, so the
/// same entity gets the same name every time it is restored into the same
/// target (a second restore updates instead of duplicating).
fn uuid_key(target_id: &str) -> [u8; 32] {
    blake3::derive_key("kindsnap --keys uuid v1", target_id.as_bytes())
}

/// The uuid name of the path element `prefix.last()`, from the whole
/// original path up to it (so `User:1/Post:7` and `User:2/Post:7` differ).
fn uuid_name(secret: &[u8; 32], namespace: &str, prefix: &[crate::model::PathElement]) -> String {
    let mut h = blake3::Hasher::new_keyed(secret);
    h.update(namespace.as_bytes());
    h.update(&[0]);
    h.update(&encode_path(prefix));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&h.finalize().as_bytes()[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}
