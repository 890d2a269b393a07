//! The repository: a directory of write-once packs and manifests plus a
//! rebuildable index. See docs/format.md for the layout and docs/design.md
//! for the commit protocol.
//!
//! This module owns the layout and the locks; it never prints and never
//! reads CLI types.

pub(crate) mod cells;
pub mod crypto;
pub(crate) mod fsutil;
pub mod index;
pub(crate) mod journal;
pub mod keymap;
pub mod keyring;
pub mod manifest;
pub mod pack;
pub mod remote;
pub mod storage;
pub mod store;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{EntityHash, PackId, RepoId, SnapshotId};

/// The newest repository format this build reads and writes.
/// Version 3 is an encrypted repository (only encrypted ones carry it, so
/// an older build refuses them with "upgrade kindsnap", and plain ones stay
/// readable by older builds). Version 2 adds manifests that replace earlier ones
/// (`forget` folds a forgotten parent into its child): a parent pointer may
/// then name a manifest that exists only through a replacement, which a
/// version-1 reader would take for a broken chain. Version-1 repositories
/// are read as they are and upgraded by the first `forget` that rewrites a
/// manifest (docs/format.md). Version 3 adds manifest headers with
/// `tags` (`kindsnap tag`, `snapshot --tag`), written only by those, and
/// encrypted repositories (created at 3; docs/format.md, "Encrypted
/// repositories").
pub const FORMAT_VERSION: u32 = 3;

/// The version a manifest with `tags` needs (`kindsnap tag`, `snapshot
/// --tag`): older builds reject header fields they do not know.
pub const TAGS_FORMAT_VERSION: u32 = 3;

/// The format of every encrypted repository.
pub const ENCRYPTED_FORMAT_VERSION: u32 = 3;

/// The version `init` writes: nothing of version 2 exists in a repository
/// until `forget` rewrites a manifest, so a new repository stays readable
/// by version-1 builds until then.
pub const INIT_FORMAT_VERSION: u32 = 1;

/// `<repo>/config`: set at `init`, never changed afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version of the repository.
    pub kindsnap_repository: u32,
    /// Random id of this repository.
    pub id: String,
    /// Uncompressed bytes per compressed block inside a pack.
    pub block_size: usize,
    /// Target size of a pack file, compressed bytes.
    pub pack_size: usize,
    /// zstd level for blocks.
    pub zstd_level: i32,
    /// A full key → hash table every this many snapshots of one source;
    /// the snapshots in between store only their changes.
    pub keyframe_interval: u32,
    /// Set in encrypted repositories only (format 3), so a plain
    /// repository's `config` is byte for byte what older builds wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// How an encrypted repository is sealed (docs/format.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// `xchacha20-poly1305`.
    pub cipher: String,
    /// `blake3-keyed`: how entity, pack and manifest ids are made.
    pub ids: String,
    /// `argon2id`: how key files wrap the master key.
    pub kdf: String,
    /// Keyed blake3 of this config with `mac` empty: the config was
    /// written by a holder of the master key and not changed since.
    pub mac: String,
}

/// The allowed range of each number in `config` (docs/format.md): what
/// the code can work with, well beyond what anyone would choose.
/// `block_size`: a block is held in memory whole, and its raw length is a
/// u32 in the pack's table of contents. `pack_size`: a pack is written and
/// uploaded as one file. `zstd_level`: zstd's levels. `keyframe_interval`:
/// reading a state merges up to this many manifests.
pub const CONFIG_BOUNDS: [(&str, i64, i64); 5] = [
    ("kindsnap_repository", 1, FORMAT_VERSION as i64),
    ("block_size", 4096, 64 * 1024 * 1024),
    ("pack_size", 16 * 1024, 1024 * 1024 * 1024),
    ("zstd_level", 1, 22),
    ("keyframe_interval", 1, 1024),
];

/// Every number of a parsed `config` within [`CONFIG_BOUNDS`]; else the
/// first that is not (a float or an integer too large for its field
/// included), named with the file it came from.
fn check_config_numbers(value: &serde_json::Value, path: &Path) -> Result<()> {
    for (key, lo, hi) in CONFIG_BOUNDS {
        let Some(v) = value.get(key).filter(|v| v.is_number()) else {
            continue;
        };
        if !v.as_i64().is_some_and(|n| (lo..=hi).contains(&n)) {
            return Err(Error::BadRepoConfig {
                path: path.to_path_buf(),
                key,
                value: v.to_string(),
                range: format!("{lo} to {hi}"),
            });
        }
    }
    Ok(())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kindsnap_repository: INIT_FORMAT_VERSION,
            id: RepoId::from(rand::random::<[u8; 32]>()).to_hex(),
            block_size: 128 * 1024,
            pack_size: 4 * 1024 * 1024,
            zstd_level: 1,
            keyframe_interval: 32,
            encryption: None,
        }
    }
}

/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    root: PathBuf,
    pub config: Config,
    /// Decided once, on first use (see [`Repository::scratch_dir`]).
    scratch: std::sync::OnceLock<PathBuf>,
    /// Set when this directory is the cache of a repository on object
    /// storage (src/repo/remote.rs); None for a local repository.
    remote: Option<Arc<remote::Remote>>,
    /// How packs, manifests and the config are made durable.
    storage: Arc<dyn storage::Storage>,
    /// The keys of an encrypted repository, once unlocked; None for a
    /// plain one (and for an encrypted one not unlocked yet, which only
    /// this module and key management see).
    keys: Option<Arc<crypto::Keys>>,
    /// The key file that opened it (`keys/<name>`).
    key_name: Option<String>,
}

/// Asks for the password of an encrypted repository; called only when
/// the repository turns out to be encrypted, at most once.
pub type PasswordFn<'a> = &'a dyn Fn() -> Result<zeroize::Zeroizing<String>>;

/// A held repository lock; dropping it releases the lock (so does the
/// process dying, since these are OS file locks).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    /// Held after the file lock; dropped (released) first.
    _remote: Option<remote::RemoteLock>,
}

impl Repository {
    /// Create a plain repository in `root` (which must not exist or be empty).
    pub fn init(root: &Path) -> Result<Repository> {
        Self::init_with(root, None)
    }

    /// Create a repository in `root`; encrypted when given a new key's
    /// password and argon2id parameters.
    pub fn init_with(
        root: &Path,
        encrypt: Option<(&[u8], crypto::KdfParams)>,
    ) -> Result<Repository> {
        if root.join("config").exists() && encrypt.is_some() {
            return Err(Error::EncryptExisting {
                path: root.to_path_buf(),
            });
        }
        if root.exists() {
            let mut entries = fs::read_dir(root).map_err(Error::io("reading", root))?;
            if entries.next().is_some() {
                return Err(Error::NotEmpty {
                    path: root.to_path_buf(),
                });
            }
        }
        fsutil::private_dir(root).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::ReadOnly {
                path: root.to_path_buf(),
                source: e,
            },
            _ => Error::Io {
                op: "creating",
                path: root.to_path_buf(),
                source: e,
            },
        })?;
        for dir in ["packs", "index", "snapshots", "locks", "tmp"] {
            let p = root.join(dir);
            fsutil::private_dir(&p).map_err(Error::io("creating", &p))?;
        }
        for lock in ["repo", "commit"] {
            let p = root.join("locks").join(lock);
            fsutil::private_file(&p, true).map_err(Error::io("creating", &p))?;
        }
        // Created private first: SQLite keeps an existing file's mode.
        let index_db = root.join("index").join("index.db");
        fsutil::private_file(&index_db, true).map_err(Error::io("creating", &index_db))?;
        index::Index::create(&index_db)?;
        let mut config = Config::default();
        let mut keys = None;
        let mut key_name = None;
        if let Some((password, params)) = encrypt {
            let master = crypto::MasterKey::random();
            let (name, bytes) = keyring::new_key_file(&master, password, params, &config.id)?;
            let dir = root.join("keys");
            fsutil::private_dir(&dir).map_err(Error::io("creating", &dir))?;
            fsutil::write_atomic(&dir.join(&name), &bytes)?;
            let k = crypto::Keys::new(master);
            config.kindsnap_repository = ENCRYPTED_FORMAT_VERSION;
            config.encryption = Some(keyring::sealed_encryption(&config, &k));
            keys = Some(Arc::new(k));
            key_name = Some(name);
        }
        let text = serde_json::to_vec_pretty(&config).unwrap_or_default();
        // The config arrives last: its presence means the repository exists.
        fsutil::write_atomic(&root.join("config"), &text)?;
        fsutil::sync_dir(root)?;
        Ok(Repository {
            root: root.to_path_buf(),
            config,
            scratch: Default::default(),
            remote: None,
            storage: Arc::new(storage::LocalDisk),
            keys,
            key_name,
        })
    }

    /// The same repository, writing its durable files through `storage`
    /// (tests inject faults this way).
    pub fn with_storage(mut self, storage: Arc<dyn storage::Storage>) -> Repository {
        self.storage = storage;
        self
    }

    pub fn storage(&self) -> &Arc<dyn storage::Storage> {
        &self.storage
    }

    /// A new repository file (a pack or manifest being written), through
    /// the storage.
    pub(crate) fn create_file(&self, path: &Path) -> Result<storage::StorageFile> {
        storage::StorageFile::create(Arc::clone(&self.storage), path)
            .map_err(Error::io("creating", path))
    }

    /// A finished repository file into place, through the storage: made
    /// private, fsynced, renamed (its directory created 0700 when
    /// missing), its directory fsynced.
    pub(crate) fn commit_file(&self, tmp: &Path, dest: &Path) -> Result<()> {
        fsutil::make_private(tmp).map_err(Error::io("setting the mode of", tmp))?;
        let f = File::open(tmp).map_err(Error::io("syncing", tmp))?;
        self.storage
            .sync(&f, tmp)
            .map_err(Error::io("syncing", tmp))?;
        drop(f);
        let parent = fsutil::parent_dir(dest);
        fsutil::private_dir(parent).map_err(Error::io("creating directory", parent))?;
        self.storage
            .rename(tmp, dest)
            .map_err(Error::io("renaming into", dest))?;
        self.storage
            .sync_dir(parent)
            .map_err(Error::io("syncing directory", parent))
    }

    /// Replace `path` atomically with `bytes`, through the storage.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = fsutil::temp_path(fsutil::parent_dir(path), ".write");
        let res = (|| -> std::io::Result<()> {
            let mut f = storage::StorageFile::create(Arc::clone(&self.storage), &tmp)?;
            std::io::Write::write_all(&mut f, bytes)?;
            f.sync()?;
            self.storage.rename(&tmp, path)
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("writing", path)(e));
        }
        let dir = fsutil::parent_dir(path);
        self.storage
            .sync_dir(dir)
            .map_err(Error::io("syncing directory", dir))
    }

    /// Open an existing plain repository (an encrypted one needs
    /// [`Repository::open_with`]).
    pub fn open(root: &Path) -> Result<Repository> {
        let repo = Self::open_locked(root)?;
        if repo.is_encrypted() {
            return Err(Error::PasswordNeeded {
                path: root.to_path_buf(),
            });
        }
        Ok(repo)
    }

    /// Open an existing repository, asking `password` for the password
    /// when it is encrypted.
    pub fn open_with(root: &Path, password: PasswordFn) -> Result<Repository> {
        let mut repo = Self::open_locked(root)?;
        if repo.is_encrypted() {
            repo.unlock(password)?;
        }
        Ok(repo)
    }

    /// Unlock an encrypted repository with the first key file of `keys/`
    /// that `password` opens, and check its config's MAC.
    pub fn unlock(&mut self, password: PasswordFn) -> Result<()> {
        let (name, keys) = keyring::unlock(self, &password()?)?;
        keyring::check_config(self, &keys)?;
        self.keys = Some(Arc::new(keys));
        self.key_name = Some(name);
        Ok(())
    }

    /// The config as read, without the keys: for opening remote caches
    /// and for unlocking.
    pub(crate) fn open_locked(root: &Path) -> Result<Repository> {
        let config_path = root.join("config");
        let text = match fs::read(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let empty = fs::read_dir(root)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(true);
                return Err(if empty {
                    Error::NoRepository {
                        path: root.to_path_buf(),
                    }
                } else {
                    Error::NotARepository {
                        path: root.to_path_buf(),
                        why: "it has no `config` file".into(),
                    }
                });
            }
            Err(e) => {
                return Err(Error::Io {
                    op: "reading",
                    path: config_path,
                    source: e,
                })
            }
        };
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| Error::NotARepository {
                path: root.to_path_buf(),
                why: format!("its config is not valid JSON: {e}"),
            })?;
        let found = value
            .get("kindsnap_repository")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::NotARepository {
                path: root.to_path_buf(),
                why: "its config has no `kindsnap_repository` version".into(),
            })?;
        if found > FORMAT_VERSION as u64 {
            return Err(Error::NewerFormat {
                path: root.to_path_buf(),
                found: found.min(u32::MAX as u64) as u32,
                supported: FORMAT_VERSION,
            });
        }
        check_config_numbers(&value, &config_path)?;
        let config: Config = serde_json::from_value(value).map_err(|e| Error::NotARepository {
            path: root.to_path_buf(),
            why: format!("its config is invalid: {e}"),
        })?;
        if config.encryption.is_some() && config.kindsnap_repository < ENCRYPTED_FORMAT_VERSION {
            return Err(Error::NotARepository {
                path: root.to_path_buf(),
                why: "its config has `encryption` in a format older than 3".into(),
            });
        }
        // A plain config beside key files: someone took `encryption` out
        // of the config, and writing on would store the data in the clear
        // in an encrypted repository.
        if config.encryption.is_none() && has_key_files(root) {
            return Err(Error::NotARepository {
                path: root.to_path_buf(),
                why: "its config says it is not encrypted but keys/ holds key files: the config \
                      was changed; put back the config that `init --encrypt` wrote"
                    .into(),
            });
        }
        Ok(Repository {
            root: root.to_path_buf(),
            config,
            scratch: Default::default(),
            remote: None,
            storage: Arc::new(storage::LocalDisk),
            keys: None,
            key_name: None,
        })
    }

    /// Whether the repository is encrypted (its config says so).
    pub fn is_encrypted(&self) -> bool {
        self.config.encryption.is_some()
    }

    /// The keys of an unlocked encrypted repository; None when plain.
    pub fn keys(&self) -> Option<&Arc<crypto::Keys>> {
        self.keys.as_ref()
    }

    /// The key file (`keys/<name>`) that unlocked the repository.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// An entity's id in this repository, from the blake3 of its canonical
    /// encoding: that hash itself in a plain repository, a keyed hash of it
    /// in an encrypted one (docs/format.md).
    pub fn entity_id(&self, plain: EntityHash) -> EntityHash {
        match &self.keys {
            Some(k) => k.entity_id(&plain),
            None => plain,
        }
    }

    /// The id of a stored body (see [`Repository::entity_id`]).
    pub fn body_id(&self, body: &[u8]) -> EntityHash {
        self.entity_id(crate::model::codec::hash(body))
    }

    /// The hasher that names packs, manifests and index segments: plain
    /// blake3, or keyed in an encrypted repository.
    pub fn object_hasher(&self) -> blake3::Hasher {
        match &self.keys {
            Some(k) => k.object_hasher(),
            None => blake3::Hasher::new(),
        }
    }

    /// The id of a pack's bytes (see [`Repository::object_hasher`]).
    pub fn pack_id_of(&self, bytes: &[u8]) -> PackId {
        let mut h = self.object_hasher();
        h.update(bytes);
        PackId::from(*h.finalize().as_bytes())
    }

    /// How a failed id check reads: a mismatch in a plain repository,
    /// an authentication failure in an encrypted one (a keyed id is a MAC).
    pub fn id_mismatch(&self) -> &'static str {
        if self.is_encrypted() {
            "authentication failed: its keyed id does not match its content (changed or damaged)"
        } else {
            "content does not match its id"
        }
    }

    /// The index, with its kind names sealed in an encrypted repository.
    pub fn open_index(&self, write: bool) -> Result<index::Index> {
        Ok(index::Index::open(&self.index_path(), write)?.sealed(self.keys.clone()))
    }

    /// Raise the repository's format version to 2, which manifests that
    /// replace others need (rewrites `config` atomically; a no-op when it
    /// is there). Called before the first write that older builds could
    /// not read.
    pub fn upgrade_format(&mut self) -> Result<()> {
        self.require_format(2)
    }

    /// Raise the repository's format version to at least `version` (one
    /// this build writes): 2 before a manifest replaces another, 3 before
    /// a manifest carries tags. A no-op when it is there already.
    pub fn require_format(&mut self, version: u32) -> Result<()> {
        let version = version.min(FORMAT_VERSION);
        if self.config.kindsnap_repository >= version {
            return Ok(());
        }
        let mut config = self.config.clone();
        config.kindsnap_repository = version;
        let text = serde_json::to_vec_pretty(&config).unwrap_or_default();
        if let Some(r) = &self.remote {
            r.put_config(text.clone())?;
        }
        self.write_atomic(&self.root.join("config"), &text)?;
        self.config = config;
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where this repository lives, for messages: its URL or its directory.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(r) => r.url().to_string(),
            None => self.root.display().to_string(),
        }
    }

    /// A pack's local file, downloaded into the cache first when the
    /// repository is remote and it is not cached yet.
    pub fn local_pack(&self, id: &PackId) -> Result<PathBuf> {
        let path = self.pack_path(id);
        if let Some(r) = &self.remote {
            if !path.exists() && !r.download_pack(id, &path, &self.scratch_dir())? {
                return Err(Error::DamagedPack {
                    pack: id.to_hex(),
                    why: format!("it is missing from {}", r.url()),
                });
            }
        }
        Ok(path)
    }

    /// A new pack is durable at `path`: on a remote repository, upload it
    /// (before its index rows are written, so every indexed pack exists).
    pub fn pack_written(&self, id: &PackId, path: &Path) -> Result<()> {
        match &self.remote {
            Some(r) => r.upload_pack(id, path),
            None => Ok(()),
        }
    }

    /// Delete a pack (remote object first, then the local file).
    pub fn remove_pack(&self, id: &PackId) -> Result<()> {
        if let Some(r) = &self.remote {
            r.delete_pack(id)?;
        }
        let path = self.pack_path(id);
        match self.storage.remove(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", &path)(e)),
        }
    }

    /// Delete a manifest (remote object first, then the local file).
    /// Returns whether the local file existed.
    pub fn remove_manifest(&self, id: &SnapshotId) -> Result<bool> {
        if let Some(r) = &self.remote {
            r.delete_manifest(id)?;
        }
        let path = self.snapshot_path(id);
        match self.storage.remove(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("removing", &path)(e)),
        }
    }

    /// A finished manifest is about to be renamed into `snapshots/`: on a
    /// remote repository, publish the index rows it needs and then it.
    pub fn manifest_written(&self, file: &Path, id: &SnapshotId) -> Result<()> {
        match &self.remote {
            Some(r) => r.publish_manifest(self, file, id),
            None => Ok(()),
        }
    }

    /// After prune rewrote the index: on a remote repository, replace the
    /// index segments by one of the whole index (before any pack goes).
    pub fn index_rewritten(&self) -> Result<()> {
        match &self.remote {
            Some(r) => r.compact_index(self),
            None => Ok(()),
        }
    }

    /// Bytes the repository stores (packs, index, manifests), wherever
    /// it lives.
    pub fn stored_bytes(&self) -> Result<u64> {
        if let Some(r) = &self.remote {
            return r.stored_bytes();
        }
        let mut n = 0;
        for dir in [
            self.root.join("packs"),
            self.root.join("index"),
            self.snapshots_dir(),
        ] {
            n += fsutil::dir_bytes(&dir)?.1;
        }
        Ok(n)
    }

    /// Every pack the repository holds (in its object store when remote).
    pub fn list_packs(&self) -> Result<std::collections::BTreeSet<PackId>> {
        if let Some(r) = &self.remote {
            return r.list_packs();
        }
        let mut out = std::collections::BTreeSet::new();
        let root = self.root.join("packs");
        for sub in fs::read_dir(&root).map_err(Error::io("reading", &root))? {
            let sub = sub.map_err(Error::io("reading", &root))?;
            if !sub.path().is_dir() {
                continue;
            }
            for f in fs::read_dir(sub.path()).map_err(Error::io("reading", sub.path()))? {
                let f = f.map_err(Error::io("reading", sub.path()))?;
                if let Some(id) = PackId::from_hex(&f.file_name().to_string_lossy()) {
                    out.insert(id);
                }
            }
        }
        Ok(out)
    }

    pub fn pack_path(&self, id: &PackId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join("packs").join(&hex[..2]).join(hex)
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn snapshot_path(&self, id: &SnapshotId) -> PathBuf {
        self.snapshots_dir().join(id.to_hex())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where this process may put scratch files: the repository's `tmp/`
    /// when it is writable, else the system temp directory (read-only
    /// repositories stay readable).
    pub fn scratch_dir(&self) -> PathBuf {
        self.scratch
            .get_or_init(|| {
                let _ = fsutil::private_dir(&self.tmp_dir());
                let probe = fsutil::temp_path(&self.tmp_dir(), ".probe");
                match File::create(&probe) {
                    Ok(_) => {
                        let _ = fs::remove_file(&probe);
                        self.tmp_dir()
                    }
                    Err(_) => std::env::temp_dir(),
                }
            })
            .clone()
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join("index").join("index.db")
    }

    /// Fail early, with a clear message, when the repository cannot be
    /// written (rather than half-way through a snapshot).
    pub fn check_writable(&self) -> Result<()> {
        // tmp/ is scratch: recreate it if a copy of the repository lost it
        // (git, for one, keeps no empty directories).
        let _ = fsutil::private_dir(&self.tmp_dir());
        let probe = fsutil::temp_path(&self.tmp_dir(), ".probe");
        match File::create(&probe) {
            Ok(_) => {
                let _ = fs::remove_file(&probe);
                Ok(())
            }
            Err(e) => Err(Error::ReadOnly {
                path: self.root.clone(),
                source: e,
            }),
        }
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<LockGuard> {
        let path = self.root.join("locks").join(name);
        let file = File::open(&path).map_err(Error::io("opening lock", &path))?;
        let res = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        res.map_err(Error::io("locking", &path))?;
        let remote = match (&self.remote, name) {
            (Some(r), "repo") => {
                let lock = r.lock(exclusive)?;
                // What we saw before holding the lock may be stale (a prune
                // elsewhere may have run meanwhile): look again.
                r.sync(self)?;
                Some(lock)
            }
            _ => None,
        };
        Ok(LockGuard {
            _file: file,
            _remote: remote,
        })
    }

    /// Shared lock: snapshots, restores and reads run side by side.
    pub fn lock_shared(&self) -> Result<LockGuard> {
        self.lock("repo", false)
    }

    /// Exclusive lock: for operations that delete data (prune).
    pub fn lock_exclusive(&self) -> Result<LockGuard> {
        self.lock("repo", true)
    }

    /// The lock for an operation that deletes (forget, prune): exclusive
    /// on a writable repository; for a dry run, which changes nothing,
    /// shared.
    pub fn lock_to_delete(&self, dry_run: bool) -> Result<LockGuard> {
        if dry_run {
            return self.lock_shared();
        }
        self.check_writable()?;
        self.lock_exclusive()
    }

    /// Short exclusive lock around publishing a snapshot (name checks).
    pub fn lock_commit(&self) -> Result<LockGuard> {
        self.lock("commit", true)
    }

    /// Remove temp files left by processes that died. Only files whose
    /// writer is gone are removed: names carry the writer's pid
    /// (`fsutil::remove_dead_temps`).
    pub fn clean_stale_temps(&self) {
        // The root holds `.write-*` temps of `config`; `tmp/` everything
        // else (packs, manifests, sort runs, scratch databases).
        for dir in [
            self.root.clone(),
            self.tmp_dir(),
            self.snapshots_dir(),
            self.root.join("packs"),
            self.root.join("index"),
        ] {
            fsutil::remove_dead_temps(&dir, None);
        }
    }
}

/// Whether `root/keys/` holds any file (an encrypted repository's key
/// files).
fn has_key_files(root: &Path) -> bool {
    fs::read_dir(root.join("keys"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}
