//! The key files of an encrypted repository (`keys/<name>`): creating the
//! first at `init`, unlocking the repository with a password, and `kindsnap
//! key list|add|remove|passwd`. A repository keeps working while any one
//! key file remains; each wraps the same master key (docs/format.md).
//!
//! On object storage the key files are objects `keys/<name>`; the cache
//! keeps a copy pulled when the repository is opened, and changes go to
//! the bucket first.

use std::fs;
use std::path::PathBuf;

use super::crypto::{self, KdfParams, KeyFile, Keys, MasterKey};
use super::{fsutil, Config, Encryption, Repository};
use crate::error::{Error, Result};

/// One key file, as `key list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub name: String,
    pub created: String,
    pub host: String,
    pub user: String,
    /// The key that opened the repository in this process.
    pub current: bool,
}

fn who() -> (String, String, String) {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    (super::remote::hostname(), user, now)
}

/// A new key file for `master`: its name and bytes.
pub(crate) fn new_key_file(
    master: &MasterKey,
    password: &[u8],
    params: KdfParams,
    repo_id: &str,
) -> Result<(String, Vec<u8>)> {
    let file = KeyFile::wrap(master, password, params, repo_id, who()).map_err(|why| {
        Error::BadKeyFile {
            path: PathBuf::from("keys/(new)"),
            why,
        }
    })?;
    let bytes = file.to_bytes();
    Ok((KeyFile::name_of(&bytes), bytes))
}

/// The bytes the config's MAC covers: the config with `mac` empty, as
/// compact JSON.
fn canonical(config: &Config) -> Vec<u8> {
    let mut c = config.clone();
    if let Some(e) = c.encryption.as_mut() {
        e.mac.clear();
    }
    serde_json::to_vec(&c).unwrap_or_default()
}

/// The `encryption` field of a new encrypted repository's config.
pub(crate) fn sealed_encryption(config: &Config, keys: &Keys) -> Encryption {
    let scheme = Encryption {
        cipher: crypto::CIPHER.into(),
        ids: crypto::ID_HASH.into(),
        kdf: crypto::KDF.into(),
        mac: String::new(),
    };
    let mut c = config.clone();
    c.kindsnap_repository = super::ENCRYPTED_FORMAT_VERSION;
    c.encryption = Some(scheme.clone());
    Encryption {
        mac: keys.config_mac(&canonical(&c)),
        ..scheme
    }
}

/// The config's MAC matches (it was written with this master key and not
/// changed since), and its scheme is the one this build speaks.
pub(crate) fn check_config(repo: &Repository, keys: &Keys) -> Result<()> {
    let path = format!("{}/config", repo.location().trim_end_matches('/'));
    let Some(e) = &repo.config.encryption else {
        return Ok(());
    };
    if e.cipher != crypto::CIPHER || e.ids != crypto::ID_HASH || e.kdf != crypto::KDF {
        return Err(Error::NotARepository {
            path: repo.root().to_path_buf(),
            why: format!(
                "its encryption ({}, {}, {}) is not one this kindsnap knows; upgrade kindsnap",
                e.cipher, e.ids, e.kdf
            ),
        });
    }
    if keys.config_mac(&canonical(&repo.config)) != e.mac {
        return Err(Error::AuthFailed {
            file: path,
            at: String::new(),
        });
    }
    Ok(())
}

fn keys_dir(repo: &Repository) -> PathBuf {
    repo.root().join("keys")
}

/// Every key file of the repository: (name, parsed file or why not).
fn read_all(repo: &Repository) -> Result<Vec<(String, Result<KeyFile>)>> {
    let dir = keys_dir(repo);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading", &dir)(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(Error::io("reading", &dir))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let path = e.path();
        let parsed = fs::read(&path)
            .map_err(Error::io("reading", &path))
            .and_then(|b| {
                serde_json::from_slice::<KeyFile>(&b).map_err(|err| Error::BadKeyFile {
                    path: path.clone(),
                    why: err.to_string(),
                })
            });
        out.push((name, parsed));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The key file `password` opens, and the keys it holds.
pub(crate) fn unlock(repo: &Repository, password: &str) -> Result<(String, Keys)> {
    let files = read_all(repo)?;
    if files.is_empty() {
        return Err(Error::NoKeys {
            path: PathBuf::from(repo.location()),
        });
    }
    // A damaged key file is reported only when no sound one was tried:
    // otherwise the password is what is wrong.
    let (mut damaged, mut tried) = (None, false);
    for (name, file) in files {
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                damaged = Some(e);
                continue;
            }
        };
        match file.unwrap_with(password.as_bytes(), &repo.config.id) {
            Ok(Some(master)) => return Ok((name, Keys::new(master))),
            Ok(None) => tried = true,
            Err(why) => {
                damaged = Some(Error::BadKeyFile {
                    path: keys_dir(repo).join(&name),
                    why,
                })
            }
        }
    }
    Err(match damaged {
        Some(e) if !tried => e,
        _ => Error::WrongPassword {
            path: PathBuf::from(repo.location()),
        },
    })
}

/// `key list`.
pub fn list(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for (name, file) in read_all(repo)? {
        let f = file?;
        out.push(KeyInfo {
            current: repo.key_name() == Some(name.as_str()),
            name,
            created: f.created,
            host: f.host,
            user: f.user,
        });
    }
    Ok(out)
}

fn unlocked(repo: &Repository) -> Result<&Keys> {
    repo.keys()
        .map(|k| &**k)
        .ok_or_else(|| Error::NotEncrypted {
            path: PathBuf::from(repo.location()),
        })
}

/// `key add`: a new key file for the same master key, opened by
/// `password`. Returns its name.
pub fn add(repo: &Repository, password: &str, params: KdfParams) -> Result<String> {
    let keys = unlocked(repo)?;
    let (name, bytes) = new_key_file(keys.master(), password.as_bytes(), params, &repo.config.id)?;
    if let Some(r) = &repo.remote {
        r.put(&format!("keys/{name}"), bytes.clone())?;
    }
    let dir = keys_dir(repo);
    fsutil::private_dir(&dir).map_err(Error::io("creating", &dir))?;
    repo.write_atomic(&dir.join(&name), &bytes)?;
    Ok(name)
}

/// The one key file whose name starts with `prefix`.
fn find(repo: &Repository, prefix: &str) -> Result<String> {
    let names: Vec<String> = read_all(repo)?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !prefix.is_empty() && n.starts_with(prefix))
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::UnknownKey {
            spec: prefix.to_string(),
            matches: names.len(),
        }),
    }
}

/// `key remove ID`: never the last key, nor the one in use (a repository
/// must stay openable by the person removing keys).
pub fn remove(repo: &Repository, prefix: &str) -> Result<String> {
    unlocked(repo)?;
    let name = find(repo, prefix)?;
    if repo.key_name() == Some(name.as_str()) || read_all(repo)?.len() <= 1 {
        return Err(Error::KeyInUse {
            name: name[..8].to_string(),
        });
    }
    delete(repo, &name)?;
    Ok(name)
}

fn delete(repo: &Repository, name: &str) -> Result<()> {
    if let Some(r) = &repo.remote {
        r.delete(&format!("keys/{name}"))?;
    }
    let path = keys_dir(repo).join(name);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", &path)(e)),
    }
}

/// `key passwd`: a new key file with the new password, then the one in
/// use removed (in that order: a crash between leaves both).
pub fn passwd(repo: &Repository, password: &str, params: KdfParams) -> Result<(String, String)> {
    let old = repo
        .key_name()
        .map(str::to_string)
        .ok_or_else(|| Error::NotEncrypted {
            path: PathBuf::from(repo.location()),
        })?;
    let new = add(repo, password, params)?;
    delete(repo, &old)?;
    Ok((old, new))
}
