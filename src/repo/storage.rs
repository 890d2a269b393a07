//! The durable file operations of a repository, behind one small trait:
//! creating a file, writing it, fsyncing it, renaming it into place,
//! fsyncing its directory. Packs, manifests and the config are written
//! through it. [`LocalDisk`] does them; [`FaultyDisk`] (for tests) fails
//! the N-th of them, so a test can cut a write at every step of an
//! operation inside one process, without killing it.
//!
//! What does not go through it: SQLite files (the index, restore
//! journals), whose I/O is SQLite's own, and scratch files that are never
//! part of a commit. Remote repositories write their local cache through
//! it too; uploads are object_store's.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::fsutil;

/// One kind of durable file operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Write,
    Sync,
    Rename,
    SyncDir,
    Remove,
}

/// The file operations a repository makes durable state with.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// A new private file, truncated, open for writing.
    fn create(&self, path: &Path) -> io::Result<File>;
    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<()>;
    fn sync(&self, file: &File, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Delete a file (packs and manifests that nothing needs any more).
    fn remove(&self, path: &Path) -> io::Result<()>;
}

/// The local file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalDisk;

impl Storage for LocalDisk {
    fn create(&self, path: &Path) -> io::Result<File> {
        fsutil::private_file(path, true)
    }
    fn write(&self, file: &mut File, _path: &Path, buf: &[u8]) -> io::Result<()> {
        file.write_all(buf)
    }
    fn sync(&self, file: &File, _path: &Path) -> io::Result<()> {
        file.sync_all()
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}

/// [`LocalDisk`] that fails the `fail_at`-th operation (counting from 1)
/// of the chosen kinds with an I/O error, and every one after it (a disk
/// that broke stays broken). `ops()` tells how many it saw.
#[derive(Debug)]
pub struct FaultyDisk {
    fail_at: u64,
    kinds: Vec<Op>,
    seen: AtomicU64,
}

impl FaultyDisk {
    pub fn new(fail_at: u64, kinds: &[Op]) -> Arc<FaultyDisk> {
        Arc::new(FaultyDisk {
            fail_at,
            kinds: kinds.to_vec(),
            seen: AtomicU64::new(0),
        })
    }

    /// Operations of the chosen kinds seen so far (failed ones included).
    pub fn ops(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }

    fn step(&self, op: Op, path: &Path) -> io::Result<()> {
        if !self.kinds.contains(&op) {
            return Ok(());
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.fail_at {
            return Err(io::Error::other(format!(
                "injected fault: {op:?} #{n} on {}",
                path.display()
            )));
        }
        Ok(())
    }
}

impl Storage for FaultyDisk {
    fn create(&self, path: &Path) -> io::Result<File> {
        self.step(Op::Create, path)?;
        LocalDisk.create(path)
    }
    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<()> {
        self.step(Op::Write, path)?;
        LocalDisk.write(file, path, buf)
    }
    fn sync(&self, file: &File, path: &Path) -> io::Result<()> {
        self.step(Op::Sync, path)?;
        LocalDisk.sync(file, path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(Op::Rename, to)?;
        LocalDisk.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(Op::SyncDir, dir)?;
        LocalDisk.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.step(Op::Remove, path)?;
        LocalDisk.remove(path)
    }
}

/// A file being written through a [`Storage`]: `Write` for buffered
/// writers, every write going through the storage.
pub struct StorageFile {
    storage: Arc<dyn Storage>,
    file: File,
    path: std::path::PathBuf,
}

impl StorageFile {
    pub fn create(storage: Arc<dyn Storage>, path: &Path) -> io::Result<StorageFile> {
        let file = storage.create(path)?;
        Ok(StorageFile {
            storage,
            file,
            path: path.to_path_buf(),
        })
    }

    /// fsync the file.
    pub fn sync(&self) -> io::Result<()> {
        self.storage.sync(&self.file, &self.path)
    }
}

impl Write for StorageFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.storage.write(&mut self.file, &self.path, buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
