//! `kindsnap.toml`: project settings, found in the current directory (or
//! given with `--config`). Unknown settings are an error, so a typo never
//! goes unnoticed.
//!
//! ```toml
//! repo = ".kindsnap"
//! source = "sqlite:app.db"
//! target = "datastore://localhost:8081/dev"
//! ignore_file = ".snapshotignore"
//! timeout = 60        # seconds to wait for a server's answer
//! max_rps = 50        # Datastore: requests per second at most
//! datastore_read_price = 0.06   # US$ per 100,000 entity reads (estimates)
//! changed_property = "updated"  # Datastore: read only what changed since the parent
//! changed_margin = 300          # seconds before the parent's read time to look
//! full_every = 7                # every 7th snapshot of a source reads in full
//! ramp_up = "500/50/5"          # Datastore restores: writes/s, +%, every N minutes; or "off"
//!
//! [kinds.Image]
//! batch_size = 1
//! concurrency = 2
//!
//! [kinds.Event]
//! changed_property = "updated_at"   # "" reads the kind in full
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::connector::KindOptions;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub repo: Option<PathBuf>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub ignore_file: Option<PathBuf>,
    /// Seconds to wait for a server (Datastore, PostgreSQL, object
    /// storage) to answer before giving up (src/net.rs).
    pub timeout: Option<u64>,
    /// Datastore: requests per second at most (`max_rps=` in the location
    /// and `--max-rps` win).
    pub max_rps: Option<f64>,
    /// US dollars per 100,000 Datastore entity reads, for the snapshot's
    /// cost estimate.
    pub datastore_read_price: Option<f64>,
    /// Datastore: the property every write bumps; snapshots with a parent
    /// read only entities whose property is later than the parent's read
    /// time minus `changed_margin` (docs/datastore.md).
    pub changed_property: Option<String>,
    /// Seconds before the parent's read time the changed query starts at.
    pub changed_margin: Option<u64>,
    /// Every Nth snapshot of a source reads in full (catches writes that
    /// did not set the changed property).
    pub full_every: Option<u32>,
    /// Datastore restores: `START/PERCENT/MINUTES` or `off` (the default
    /// is Google's 500/50/5 in production, off for emulators).
    pub ramp_up: Option<String>,
    #[serde(default)]
    pub kinds: BTreeMap<String, KindSettings>,
    /// Where it was read from (not a setting).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSettings {
    pub batch_size: Option<usize>,
    pub concurrency: Option<usize>,
    /// This kind's changed property (`""`: read it in full).
    pub changed_property: Option<String>,
}

impl Config {
    /// Read `path`, or `./kindsnap.toml` if it exists; defaults otherwise.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("kindsnap.toml"), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(e) => return Err(Error::io("reading", &path)(e)),
        };
        let mut config: Config = toml::from_str(&text).map_err(|e| Error::BadConfig {
            path: path.clone(),
            why: e.message().to_string(),
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
        })?;
        for (kind, k) in &config.kinds {
            for (name, v) in [("batch_size", k.batch_size), ("concurrency", k.concurrency)] {
                if v == Some(0) {
                    return Err(Error::BadConfig {
                        path: path.clone(),
                        why: format!("[kinds.{kind}] {name} must be at least 1"),
                        line: None,
                    });
                }
            }
        }
        if config.max_rps.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(Error::BadConfig {
                path: path.clone(),
                why: "max_rps must be a number of requests per second > 0".into(),
                line: None,
            });
        }
        if config
            .datastore_read_price
            .is_some_and(|p| !(p.is_finite() && p >= 0.0))
        {
            return Err(Error::BadConfig {
                path: path.clone(),
                why: "datastore_read_price must be a number of US dollars ≥ 0".into(),
                line: None,
            });
        }
        if config.changed_margin.is_some_and(|m| m > 7 * 86_400) {
            return Err(Error::BadConfig {
                path: path.clone(),
                why: "changed_margin is in seconds and at most 604800 (7 days)".into(),
                line: None,
            });
        }
        if config.full_every == Some(0) {
            return Err(Error::BadConfig {
                path: path.clone(),
                why: "full_every must be at least 1 (1: every snapshot reads in full)".into(),
                line: None,
            });
        }
        if let Some(r) = &config.ramp_up {
            crate::connector::datastore::RampUp::parse(r).map_err(|why| Error::BadConfig {
                path: path.clone(),
                why,
                line: None,
            })?;
        }
        if config.timeout == Some(0) {
            return Err(Error::BadConfig {
                path: path.clone(),
                why: "timeout must be at least 1 (seconds)".into(),
                line: None,
            });
        }
        // Paths in the file are relative to the file.
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for p in [&mut config.repo, &mut config.ignore_file]
            .into_iter()
            .flatten()
        {
            let url = p.to_str().is_some_and(crate::repo::remote::is_remote_url);
            if p.is_relative() && !url {
                *p = base.join(&*p);
            }
        }
        config.path = Some(path);
        Ok(config)
    }

    /// `changed_property` and `changed_margin` of the file and its kinds.
    pub fn changed_property(&self) -> crate::connector::ChangedProperty {
        crate::connector::ChangedProperty {
            default: self.changed_property.clone(),
            per_kind: self
                .kinds
                .iter()
                .filter_map(|(k, s)| Some((k.clone(), s.changed_property.clone()?)))
                .collect(),
            margin: self
                .changed_margin
                .map(std::time::Duration::from_secs)
                .unwrap_or(crate::connector::DEFAULT_CHANGED_MARGIN),
        }
    }

    pub fn kind_options(&self) -> BTreeMap<String, KindOptions> {
        self.kinds
            .iter()
            .map(|(k, s)| {
                let o = KindOptions {
                    batch_size: s.batch_size,
                    concurrency: s.concurrency,
                };
                (k.clone(), o)
            })
            .collect()
    }
}
