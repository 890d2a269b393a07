//! `copy`: snapshots of one repository into another (restic's `copy`),
//! the way a plain repository becomes an encrypted one. Each snapshot is
//! taken again in the destination, oldest first, from the source
//! repository's state, with its name, time, source and kind selection; so
//! the destination chains each to the one before it, stores only what
//! changed (its own dedup, under its own keys), and a copy run twice
//! publishes nothing new.

use crate::connector::EntitySource;
use crate::error::Result;
use crate::filter::KindFilter;
use crate::model::Entity;
use crate::progress::{NoProgress, Progress};
use crate::repo::manifest::{self, SnapshotInfo};
use crate::repo::Repository;

use super::snapshot::{snapshot, SnapshotOptions, SnapshotReport};

/// What `copy` did with one snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    pub name: String,
    /// The snapshot's id in the source repository.
    pub from: String,
    pub report: SnapshotReport,
}

/// A source repository's snapshot as an entity source: its state, kind
/// by kind in key order, with the source string it was taken from.
struct SnapshotSource<'a> {
    repo: &'a Repository,
    info: &'a SnapshotInfo,
}

impl EntitySource for SnapshotSource<'_> {
    fn source_id(&self) -> String {
        self.info.source.clone()
    }

    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        let mut n = 0u64;
        super::export::export(self.repo, self.info, None, &NoProgress, &mut |e| {
            n += 1;
            f(e, n)
        })?;
        Ok(())
    }

    fn describe(&self, origin: u64) -> String {
        format!("entity {origin} of snapshot {}", self.info.id.short())
    }
}

/// The snapshots of `from` to copy: those named by `specs` (all when
/// empty), oldest first.
fn chosen(from: &Repository, specs: &[String]) -> Result<Vec<SnapshotInfo>> {
    let (infos, _) = manifest::list(from)?;
    if specs.is_empty() {
        return Ok(infos);
    }
    let mut ids = std::collections::HashSet::new();
    for spec in specs {
        ids.insert(manifest::resolve(&infos, spec)?.id);
    }
    Ok(infos.into_iter().filter(|i| ids.contains(&i.id)).collect())
}

/// Copy `specs` (every snapshot when empty) from `from` into `to`.
/// A snapshot the destination holds already (same name, source, kinds
/// and content) is reported with `existed` and not written again.
pub fn copy(
    from: &Repository,
    to: &Repository,
    specs: &[String],
    base: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<Vec<Copied>> {
    let mut out = Vec::new();
    for info in chosen(from, specs)? {
        base.cancel.check()?;
        let kinds: Vec<String> = info
            .kinds_filter
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        let opts = SnapshotOptions {
            name: Some(info.name.clone()),
            time_us: Some(info.time_us),
            filter: KindFilter::new((!kinds.is_empty()).then_some(&kinds[..]), &[], &[])?,
            cache_dir: None,
            full: true,
            cancel: base.cancel.clone(),
            ..SnapshotOptions::default()
        };
        let mut source = SnapshotSource {
            repo: from,
            info: &info,
        };
        progress.phase(&format!("copying {}", info.name), Some(info.entities));
        let report = snapshot(to, &mut source, &opts, progress)?;
        out.push(Copied {
            name: info.name.clone(),
            from: info.id.to_hex(),
            report,
        });
    }
    Ok(out)
}
