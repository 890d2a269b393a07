//! Export a snapshot's entities, kind by kind in key order.

use crate::error::Result;
use crate::model::Entity;
use crate::progress::Progress;
use crate::repo::manifest::{Chain, SnapshotInfo};
use crate::repo::store::Store;
use crate::repo::Repository;

/// Call `sink` for every entity of `snap` (of `kinds` only, if given).
/// Returns the number of entities. The export stops at the first error
/// `sink` returns (a caller's cancellation token included).
pub fn export(
    repo: &Repository,
    snap: &SnapshotInfo,
    kinds: Option<&[String]>,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(Entity) -> Result<()>,
) -> Result<u64> {
    let _lock = repo.lock_shared()?;
    let chain = Chain::open(repo, &snap.id)?;
    let store = Store::open(repo)?;
    let mut n = 0;
    for k in chain.head().kinds()? {
        if k.entities == 0 || !kinds.map(|ks| ks.contains(&k.kind)).unwrap_or(true) {
            continue;
        }
        progress.phase(&format!("exporting {}", k.kind), Some(k.entities));
        let mut state = chain.state(&k.namespace, &k.kind)?;
        while let Some(e) = state.next_entry()? {
            sink(store.get(&e.hash)?)?;
            n += 1;
            progress.advance(1);
        }
        progress.done();
    }
    Ok(n)
}
