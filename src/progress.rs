//! Progress reporting, as the library sees it: a trait the operations call,
//! with a no-op implementation. The CLI decides how (or whether) to draw.

pub trait Progress: Sync {
    /// A new phase begins (`reading`, `writing Post` …); `total` if known
    /// or well estimated (a snapshot guesses its parent's count: `advance`
    /// may go past it).
    fn phase(&self, _name: &str, _total: Option<u64>) {}
    /// The whole operation's total over all its phases (a restore: every
    /// entity it writes), for an overall ETA; `advance` counts toward it
    /// too. `None` ends it.
    fn overall(&self, _total: Option<u64>) {}
    /// Whether totals are shown: an operation may then spend a little
    /// work to learn one (a JSON Lines file counts its lines).
    fn wants_totals(&self) -> bool {
        false
    }
    /// `n` more items of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The current phase is done.
    fn done(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
