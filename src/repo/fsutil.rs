//! Durable file writes: temp file → fsync → rename → fsync directory.
//! Everything the repository commits goes through here.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// fsync a directory so a rename inside it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("syncing directory", dir))
}

/// A unique temp path in `dir` (same file system as the final place).
pub fn temp_path(dir: &Path, prefix: &str) -> PathBuf {
    let r: u64 = rand::random();
    dir.join(format!("{prefix}-{}-{r:016x}.tmp", std::process::id()))
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let tmp = temp_path(dir, ".write");
    let res = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io {
            op: "writing",
            path: path.to_path_buf(),
            source: e,
        });
    }
    sync_dir(dir)
}

/// fsync a finished file, then move it into place and fsync its directory.
pub fn commit_file(tmp: &Path, dest: &Path) -> Result<()> {
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("syncing", tmp))?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(Error::io("creating directory", parent))?;
    }
    fs::rename(tmp, dest).map_err(Error::io("renaming into", dest))?;
    sync_dir(parent_dir(dest))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
