//! Ctrl-C, as the library sees it: a flag the CLI sets from its signal
//! handler and long operations poll at safe points, so they stop with
//! [`Error::Interrupted`] and the usual cleanup (temp files removed, no
//! manifest published, a restore's journal at its last checkpoint) instead
//! of dying half-way.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ask running operations to stop.
pub fn request() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// `Err(Interrupted)` once a stop was requested.
pub fn check() -> Result<()> {
    if requested() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
