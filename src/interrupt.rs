//! Cancellation: a token the caller hands to an operation (in its options)
//! and cancels from anywhere — the CLI from its Ctrl-C handler, an
//! embedding program from another thread. Operations check it at safe
//! points, so they stop with [`Error::Interrupted`] and the usual cleanup
//! (temp files removed, no manifest published, a restore's journal at its
//! last checkpoint) instead of dying half-way. Async tasks await
//! [`Cancel::cancelled`] alongside their work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A cancellation token: clones share one state. The default token is
/// never cancelled unless someone holding a clone cancels it.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Ask every operation holding this token (or a clone) to stop.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` once cancelled: for the safe points of
    /// synchronous loops.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Completes when the token is cancelled (at once if it already is):
    /// for async tasks, to `select!` against their work.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cancel;

    #[test]
    fn clones_share_the_state_and_waiters_wake() {
        let token = Cancel::new();
        let other = token.clone();
        assert!(other.check().is_ok());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let waiter = {
            let t = token.clone();
            std::thread::spawn(move || rt.block_on(t.cancelled()))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        other.cancel();
        assert!(waiter.join().is_ok());
        assert!(token.is_cancelled());
        assert!(matches!(token.check(), Err(crate::Error::Interrupted)));
        // A fresh token is independent.
        assert!(!Cancel::new().is_cancelled());
    }
}
