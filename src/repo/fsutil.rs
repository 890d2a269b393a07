//! Durable file writes: temp file → fsync → rename → fsync directory.
//! Everything the repository commits goes through here.
//!
//! Modes: what kindsnap keeps in a repository or a cache is private —
//! files 0600, directories 0700, whatever the umask ([`private_dir`],
//! [`private_file`], [`commit_file`]). Outputs written for the user
//! ([`commit_output`]) keep the mode of the file they replace, and new
//! ones get the umask's.

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

/// A unique temp path in `dir` (same file system as the final place):
/// `PREFIX-PID-RANDOM.tmp`. The writer's pid in the name is what lets a
/// later run remove the files of a process that died ([`remove_dead_temps`]).
pub fn temp_path(dir: &Path, prefix: &str) -> PathBuf {
    let r: u64 = rand::random();
    dir.join(format!("{prefix}-{}-{r:016x}.tmp", std::process::id()))
}

/// The prefix and writer's pid of a name [`temp_path`] made (or of the
/// `-journal`, `-wal` and `-shm` files SQLite keeps beside such a file);
/// `None` for any other name.
pub fn temp_owner(name: &str) -> Option<(&str, u32)> {
    let stem = ["", "-journal", "-wal", "-shm"]
        .iter()
        .find_map(|s| name.strip_suffix(&format!(".tmp{s}")[..]))?;
    let (rest, random) = stem.rsplit_once('-')?;
    if random.len() != 16 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (prefix, pid) = rest.rsplit_once('-')?;
    if prefix.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((prefix, pid.parse().ok()?))
}

/// Whether process `pid` has ended, when this system can tell: read from
/// `/proc`, the way [`super::Repository::clean_stale_temps`] always has.
/// `None` where there is no `/proc` (macOS, BSD): callers then leave the
/// file alone rather than guess. This process is never gone; a zombie
/// still has its `/proc` entry and counts as alive.
pub fn process_gone(pid: u32) -> Option<bool> {
    if !pids_visible() {
        return None;
    }
    if pid == std::process::id() {
        return Some(false);
    }
    Some(!Path::new(&format!("/proc/{pid}")).exists())
}

/// Whether [`process_gone`] can tell on this system.
pub fn pids_visible() -> bool {
    Path::new("/proc/self").exists()
}

/// Remove the temp files in `dir` (not below it) whose writer has died,
/// restricted to names starting with `prefix` when one is given (in a
/// directory that is not kindsnap's own). A live process's file is never
/// touched; where liveness cannot be told, nothing is. Returns how many
/// files were removed. Best effort: a file that cannot be removed stays.
pub fn remove_dead_temps(dir: &Path, prefix: Option<&str>) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some((p, pid)) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if prefix.is_some_and(|want| want != p) {
            continue;
        }
        if process_gone(pid) == Some(true)
            && e.file_type().is_ok_and(|t| t.is_file())
            && fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Mode bits of repository files and directories.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// `create_dir_all`, every directory it makes 0700 whatever the umask
/// (one that exists already is left as it is).
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    // The umask can only take bits away from DIR_MODE.
    b.create(path)
}

/// Open `path` for writing, created 0600 when missing (the umask can only
/// take bits away from that); an existing file keeps its mode and, unless
/// `truncate`, its contents. For SQLite databases, create the file
/// through this before opening it: SQLite gives its journals and WAL the
/// database file's mode.
pub fn private_file(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, FILE_MODE);
    o.open(path)
}

/// Make a file private (0600), whatever mode its writer gave it.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Write `bytes` to `path` atomically (a repository file: 0600).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let tmp = temp_path(dir, ".write");
    let res = (|| -> std::io::Result<()> {
        let mut f = private_file(&tmp, true)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("writing", path)(e));
    }
    sync_dir(dir)
}

/// A finished repository file: made private (0600, whoever created it
/// and however), fsynced, moved into place (its directory created 0700
/// when missing) and its directory fsynced.
pub fn commit_file(tmp: &Path, dest: &Path) -> Result<()> {
    make_private(tmp).map_err(Error::io("setting the mode of", tmp))?;
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("syncing", tmp))?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        private_dir(parent).map_err(Error::io("creating directory", parent))?;
    }
    fs::rename(tmp, dest).map_err(Error::io("renaming into", dest))?;
    sync_dir(parent_dir(dest))
}

/// A finished output file for the user (an export, a JSON Lines restore):
/// it takes the mode of the file it replaces, so a 0600 file stays 0600
/// (a new one keeps the umask's mode it was created with); then fsync,
/// rename, fsync the directory.
pub fn commit_output(tmp: &Path, dest: &Path) -> Result<()> {
    if let Ok(old) = fs::metadata(dest) {
        if old.is_file() {
            fs::set_permissions(tmp, old.permissions())
                .map_err(Error::io("setting the mode of", tmp))?;
        }
    }
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("syncing", tmp))?;
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

/// Files and bytes under `dir`, recursively, leaving out `.tmp` files;
/// a missing directory holds nothing.
pub fn dir_bytes(dir: &std::path::Path) -> crate::error::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0u64, 0u64);
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(crate::error::Error::io("reading", dir)(e)),
    };
    for e in rd {
        let e = e.map_err(crate::error::Error::io("reading", dir))?;
        let md = e
            .metadata()
            .map_err(crate::error::Error::io("reading", e.path()))?;
        if md.is_dir() {
            let (f, b) = dir_bytes(&e.path())?;
            files += f;
            bytes += b;
        } else if !e.file_name().to_string_lossy().ends_with(".tmp") {
            files += 1;
            bytes += md.len();
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn temp_names_give_their_writer() {
        let p = temp_path(Path::new("/x"), "prune-live");
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_owner(name), Some(("prune-live", std::process::id())));
        assert_eq!(
            temp_owner(".write-42-00112233aabbccdd.tmp"),
            Some((".write", 42))
        );
        assert_eq!(
            temp_owner("manifestdb-7-00112233aabbccdd.tmp-journal"),
            Some(("manifestdb", 7))
        );
        for other in [
            "notes.tmp",
            "-42-00112233aabbccdd.tmp",
            "a-42-0011.tmp",
            "a-x2-00112233aabbccdd.tmp",
            "a-42-00112233aabbccdd.tmpx",
            "a-42-00112233aabbccdd",
        ] {
            assert_eq!(temp_owner(other), None, "{other}");
        }
    }

    #[test]
    fn only_dead_writers_files_go() {
        if !pids_visible() {
            return; // no /proc: nothing is ever removed
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        let names = [
            format!(".lines-{dead}-00112233aabbccdd.tmp"),
            format!("pack-{dead}-00112233aabbccdd.tmp"),
            format!(".lines-{me}-00112233aabbccdd.tmp"),
            format!("keep-{dead}.tmp"),
        ];
        for n in &names {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        assert_eq!(remove_dead_temps(dir.path(), Some(".lines")), 1);
        assert!(!dir.path().join(&names[0]).exists());
        assert!(dir.path().join(&names[1]).exists());
        assert_eq!(remove_dead_temps(dir.path(), None), 1);
        assert!(!dir.path().join(&names[1]).exists());
        assert!(dir.path().join(&names[2]).exists());
        assert!(dir.path().join(&names[3]).exists());
    }
}
