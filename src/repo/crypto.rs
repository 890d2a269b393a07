//! Encryption at rest: the master key and the keys derived from it, the
//! AEAD that seals packs' blocks, manifests, index segments and the index's
//! kind names, the chunked stream that seals files too large to hold in
//! memory, and the key files that keep the master key wrapped by a
//! password (docs/format.md, "Encrypted repositories").
//!
//! The cipher is XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`,
//! audited) with random 24-byte nonces: a random nonce of that size never
//! repeats in practice, so no counter has to be kept anywhere. Ids are
//! blake3 in keyed mode, so whoever holds the files but not the key cannot
//! confirm a guessed entity by hashing it. The password is stretched with
//! argon2id, its parameters recorded in each key file.
//!
//! This module never reads a password itself (the CLI does) and never
//! prints; key material is zeroed when dropped.

use std::io::{self, Read, Write};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ids::EntityHash;

/// Bytes of a nonce, prepended to every sealed object.
pub const NONCE_LEN: usize = 24;
/// Bytes of the authentication tag after every sealed object or chunk.
pub const TAG_LEN: usize = 16;
/// Plaintext bytes per chunk of a sealed stream.
pub const CHUNK: usize = 64 * 1024;
/// Bytes of a stream's random nonce prefix; the other 5 bytes of each
/// chunk's nonce are its number (u32 big-endian) and the last-chunk flag.
pub const STREAM_PREFIX_LEN: usize = 19;

/// `blake3::derive_key` contexts: one independent key per use.
pub const CONTEXT_DATA: &str = "kindsnap 2026-12-06 data encryption key";
pub const CONTEXT_ENTITY: &str = "kindsnap 2026-12-06 entity id key";
pub const CONTEXT_OBJECT: &str = "kindsnap 2026-12-06 object id key";
pub const CONTEXT_CONFIG: &str = "kindsnap 2026-12-06 config mac key";
pub const CONTEXT_LOOKUP: &str = "kindsnap 2026-12-06 lookup tag key";

/// What `config` records of an encrypted repository's scheme.
pub const CIPHER: &str = "xchacha20-poly1305";
pub const ID_HASH: &str = "blake3-keyed";
pub const KDF: &str = "argon2id";

/// The 32 random bytes everything else is derived from.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    pub fn random() -> MasterKey {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut k[..]);
        MasterKey(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(Zeroizing::new(bytes))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The keys of an unlocked repository, derived from its master key.
pub struct Keys {
    master: MasterKey,
    aead: XChaCha20Poly1305,
    entity: Zeroizing<[u8; 32]>,
    object: Zeroizing<[u8; 32]>,
    config: Zeroizing<[u8; 32]>,
    lookup: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// A sealed object or stream chunk did not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthentic;

impl Keys {
    pub fn new(master: MasterKey) -> Keys {
        let derive = |ctx: &str| Zeroizing::new(blake3::derive_key(ctx, master.bytes()));
        let data = derive(CONTEXT_DATA);
        Keys {
            aead: XChaCha20Poly1305::new((&*data).into()),
            entity: derive(CONTEXT_ENTITY),
            object: derive(CONTEXT_OBJECT),
            config: derive(CONTEXT_CONFIG),
            lookup: derive(CONTEXT_LOOKUP),
            master,
        }
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plain`, with a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        self.seal_with_nonce(&nonce, aad, plain)
    }

    /// [`Keys::seal`] with a given nonce: for the documented test vector
    /// only; everything written uses a random one.
    pub fn seal_with_nonce(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(nonce);
        // Encryption with a valid key cannot fail for inputs this size.
        let ct = self
            .aead
            .encrypt(XNonce::from_slice(nonce), Payload { msg: plain, aad })
            .unwrap_or_default();
        out.extend_from_slice(&ct);
        out
    }

    /// The plaintext of `nonce ‖ ciphertext ‖ tag`, if it authenticates.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Unauthentic> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(Unauthentic);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| Unauthentic)
    }

    fn chunk(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.aead
            .encrypt(XNonce::from_slice(nonce), Payload { msg: plain, aad })
            .unwrap_or_default()
    }

    fn unchunk(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ct: &[u8],
    ) -> Result<Vec<u8>, Unauthentic> {
        self.aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| Unauthentic)
    }

    /// An entity's id in the repository: blake3 keyed with the entity key
    /// over the blake3 of its canonical encoding. Equal bodies get equal
    /// ids (dedup is exact), and without the key a guessed body's id
    /// cannot be computed.
    pub fn entity_id(&self, plain: &EntityHash) -> EntityHash {
        EntityHash::from(*blake3::keyed_hash(&self.entity, plain.as_bytes()).as_bytes())
    }

    /// The hasher that names packs, manifests and index segments.
    pub fn object_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.object)
    }

    /// The MAC of an encrypted repository's `config`.
    pub fn config_mac(&self, canonical: &[u8]) -> String {
        blake3::keyed_hash(&self.config, canonical)
            .to_hex()
            .to_string()
    }

    /// `plain` sealed deterministically: the nonce is a keyed hash of the
    /// associated data and the plaintext (as in SIV), so equal values seal
    /// to equal bytes, which SQLite can look up. It reveals which stored
    /// values are equal and nothing else; for restore journals and key
    /// maps, whose rows are found by equality.
    pub fn seal_deterministic(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut h = blake3::Hasher::new_keyed(&self.lookup);
        h.update(b"deterministic nonce\0");
        h.update(&(aad.len() as u64).to_le_bytes());
        h.update(aad);
        h.update(plain);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&h.finalize().as_bytes()[..NONCE_LEN]);
        self.seal_with_nonce(&nonce, aad, plain)
    }

    /// A deterministic tag of `bytes` (equal input, equal tag): for the
    /// index's kind column, which is looked up by kind.
    pub fn lookup_tag(&self, bytes: &[u8]) -> String {
        hex::encode(&blake3::keyed_hash(&self.lookup, bytes).as_bytes()[..16])
    }
}

/// The nonce of chunk `n` of a stream.
fn chunk_nonce(prefix: &[u8; STREAM_PREFIX_LEN], n: u32, last: bool) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..STREAM_PREFIX_LEN].copy_from_slice(prefix);
    nonce[STREAM_PREFIX_LEN..STREAM_PREFIX_LEN + 4].copy_from_slice(&n.to_be_bytes());
    nonce[NONCE_LEN - 1] = last as u8;
    nonce
}

/// Writes a sealed stream: a random nonce prefix, then chunks of
/// [`CHUNK`] plaintext bytes, each sealed with the prefix, its number and
/// whether it is the last; so chunks cannot be reordered, dropped or cut
/// off without the reader noticing. Memory: one chunk. Call
/// [`SealWriter::finish`]; a stream without its last chunk does not read.
pub struct SealWriter<W: Write> {
    keys: std::sync::Arc<Keys>,
    inner: W,
    aad: Vec<u8>,
    prefix: [u8; STREAM_PREFIX_LEN],
    buf: Vec<u8>,
    n: u32,
}

impl<W: Write> SealWriter<W> {
    /// Starts the stream (writes the prefix). `aad` binds it to its kind
    /// of file (the file's magic).
    pub fn new(keys: std::sync::Arc<Keys>, mut inner: W, aad: &[u8]) -> io::Result<Self> {
        let mut prefix = [0u8; STREAM_PREFIX_LEN];
        rand::rngs::OsRng.fill_bytes(&mut prefix);
        inner.write_all(&prefix)?;
        Ok(SealWriter {
            keys,
            inner,
            aad: aad.to_vec(),
            prefix,
            buf: Vec::with_capacity(CHUNK + 1),
            n: 0,
        })
    }

    fn emit(&mut self, last: bool) -> io::Result<()> {
        let take = self.buf.len().min(CHUNK);
        let nonce = chunk_nonce(&self.prefix, self.n, last);
        let ct = self.keys.chunk(&nonce, &self.aad, &self.buf[..take]);
        self.inner.write_all(&ct)?;
        self.buf.drain(..take);
        self.n = self
            .n
            .checked_add(1)
            .ok_or_else(|| io::Error::other("sealed stream longer than 2^32 chunks"))?;
        Ok(())
    }

    /// Seal the last chunk; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        while self.buf.len() > CHUNK {
            self.emit(false)?;
        }
        self.emit(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A chunk is sealed as not-last only once more data is known to
        // follow it, so the last chunk may be a full one.
        self.buf.extend_from_slice(data);
        while self.buf.len() > CHUNK {
            self.emit(false)?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a sealed stream written by [`SealWriter`], verifying each chunk
/// before handing out any of its bytes. A chunk that does not
/// authenticate, a stream cut off before its last chunk or bytes after it
/// are an `InvalidData` error whose inner error is [`Unauthentic`]-shaped
/// text with the chunk's offset (see [`auth_failure_offset`]).
pub struct SealReader<R: Read> {
    keys: std::sync::Arc<Keys>,
    inner: R,
    aad: Vec<u8>,
    prefix: [u8; STREAM_PREFIX_LEN],
    plain: Vec<u8>,
    at: usize,
    n: u32,
    done: bool,
    /// The first byte of the next chunk, read ahead to learn that the
    /// chunk before it was not the last.
    ahead: Option<u8>,
    /// Offset in the file of the next chunk.
    offset: u64,
}

/// The message of a chunk that failed; [`auth_failure_offset`] reads it back.
const AUTH_MARK: &str = "failed authentication at byte ";

/// The file offset in a [`SealReader`] error, when it is an
/// authentication failure (a changed, reordered or missing chunk).
pub fn auth_failure_offset(e: &io::Error) -> Option<u64> {
    e.to_string().strip_prefix(AUTH_MARK)?.parse().ok()
}

impl<R: Read> SealReader<R> {
    /// Reads the prefix. `header_len` is how many bytes preceded the stream
    /// in its file (for the offsets in errors).
    pub fn new(
        keys: std::sync::Arc<Keys>,
        mut inner: R,
        aad: &[u8],
        header_len: u64,
    ) -> io::Result<Self> {
        let mut prefix = [0u8; STREAM_PREFIX_LEN];
        if read_full(&mut inner, &mut prefix)? < STREAM_PREFIX_LEN {
            return Err(auth_error(header_len));
        }
        Ok(SealReader {
            keys,
            inner,
            aad: aad.to_vec(),
            prefix,
            plain: Vec::new(),
            at: 0,
            n: 0,
            done: false,
            ahead: None,
            offset: header_len + STREAM_PREFIX_LEN as u64,
        })
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        // One byte more than a full chunk tells whether another follows.
        let mut ct = vec![0u8; CHUNK + TAG_LEN + 1];
        let mut got = 0;
        if let Some(b) = self.ahead.take() {
            ct[0] = b;
            got = 1;
        }
        got += read_full(&mut self.inner, &mut ct[got..])?;
        let last = got <= CHUNK + TAG_LEN;
        let len = got.min(CHUNK + TAG_LEN);
        let nonce = chunk_nonce(&self.prefix, self.n, last);
        self.plain = self
            .keys
            .unchunk(&nonce, &self.aad, &ct[..len])
            .map_err(|_| auth_error(self.offset))?;
        self.offset += len as u64;
        self.at = 0;
        self.n = self.n.wrapping_add(1);
        if last {
            self.done = true;
        } else {
            self.ahead = Some(ct[CHUNK + TAG_LEN]);
        }
        Ok(())
    }
}

/// The error a failed chunk gives.
fn auth_error(offset: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{AUTH_MARK}{offset}"))
}

/// Read until `buf` is full or the reader ends; the number read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> Read for SealReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.plain.len() - self.at);
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// argon2id's cost, recorded in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// OWASP's recommended argon2id setting (19 MiB, 2 passes, one lane):
    /// every command on an encrypted repository pays it once, so it is
    /// kept to tens of milliseconds (RFC 9106's 64 MiB × 3 took 0.2 s and
    /// doubled a day-2 snapshot's time); key files record their own
    /// parameters, so stronger ones can be chosen later without a format
    /// change.
    fn default() -> Self {
        KdfParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// `keys/<id>`: the master key, sealed with a key derived from a password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// When it was made, RFC 3339.
    pub created: String,
    pub host: String,
    pub user: String,
    pub kdf: String,
    #[serde(flatten)]
    pub params: KdfParams,
    /// 32 random bytes, base64.
    pub salt: String,
    /// `nonce ‖ sealed master key ‖ tag`, base64.
    pub data: String,
}

/// What a key file's sealing is bound to: its repository.
fn key_aad(repo_id: &str) -> Vec<u8> {
    format!("kindsnap key file {repo_id}").into_bytes()
}

fn kek(password: &[u8], salt: &[u8], p: KdfParams) -> Result<Zeroizing<[u8; 32]>, String> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| format!("key derivation parameters: {e}"))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(password, salt, &mut out[..])
        .map_err(|e| format!("key derivation: {e}"))?;
    Ok(out)
}

impl KeyFile {
    /// A new key file holding `master`, opened by `password`.
    pub fn wrap(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        repo_id: &str,
        (host, user, created): (String, String, String),
    ) -> Result<KeyFile, String> {
        use base64::Engine;
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let kek = kek(password, &salt, params)?;
        let wrapper = Keys::wrapping(&kek);
        let data = wrapper.seal(&key_aad(repo_id), master.bytes());
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(KeyFile {
            created,
            host,
            user,
            kdf: KDF.into(),
            params,
            salt: b64.encode(salt),
            data: b64.encode(data),
        })
    }

    /// The master key, if `password` opens this file. `Err` for a file
    /// that is not a key file of this scheme.
    pub fn unwrap_with(&self, password: &[u8], repo_id: &str) -> Result<Option<MasterKey>, String> {
        use base64::Engine;
        if self.kdf != KDF {
            return Err(format!("unknown key derivation `{}`", self.kdf));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode(&self.salt).map_err(|e| format!("salt: {e}"))?;
        let data = b64.decode(&self.data).map_err(|e| format!("data: {e}"))?;
        let kek = kek(password, &salt, self.params)?;
        let wrapper = Keys::wrapping(&kek);
        let Ok(plain) = wrapper.open(&key_aad(repo_id), &data) else {
            return Ok(None);
        };
        let plain = Zeroizing::new(plain);
        let bytes: [u8; 32] = plain[..]
            .try_into()
            .map_err(|_| "the sealed key is not 32 bytes".to_string())?;
        Ok(Some(MasterKey::from_bytes(bytes)))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The file's name in `keys/`: the blake3 of its bytes.
    pub fn name_of(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }
}

impl Keys {
    /// An AEAD keyed directly by a password-derived key (key files only).
    fn wrapping(kek: &[u8; 32]) -> Keys {
        Keys::new(MasterKey::from_bytes(blake3::derive_key(
            "kindsnap 2026-12-06 key file wrapping key",
            kek,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Also in docs/format.md: keep them equal.
    const VECTOR_SEALED: &str = "01010101010101010101010101010101010101010101010117bd9c7151e1546e93692a73b491b0601f2ef3a853e9bad9";
    const VECTOR_ENTITY_ID: &str =
        "fee756f0b0c4b7713da9e9a3cfbb0ea59cf39305fa0c2b5914161b761d7694ea";

    fn fixed() -> Keys {
        Keys::new(MasterKey::from_bytes([7u8; 32]))
    }

    fn shared() -> std::sync::Arc<Keys> {
        std::sync::Arc::new(fixed())
    }

    /// The test vector of docs/format.md: master key 32 × 0x07, nonce
    /// 24 × 0x01, aad "KSPACKE1", plaintext "kindsnap".
    #[test]
    fn test_vector_of_the_format_doc() {
        let k = fixed();
        let sealed = k.seal_with_nonce(&[1u8; NONCE_LEN], b"KSPACKE1", b"kindsnap");
        assert_eq!(hex::encode(&sealed), VECTOR_SEALED);
        assert_eq!(k.open(b"KSPACKE1", &sealed).unwrap(), b"kindsnap");
        assert_eq!(
            hex::encode(k.entity_id(&EntityHash::from([0u8; 32])).as_bytes()),
            VECTOR_ENTITY_ID
        );
    }

    #[test]
    fn sealed_objects_reject_any_change() {
        let k = fixed();
        let sealed = k.seal(b"a", b"hello world");
        assert_ne!(k.seal(b"a", b"hello world"), sealed, "fresh nonces");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(k.open(b"a", &bad), Err(Unauthentic), "byte {i}");
        }
        assert_eq!(k.open(b"b", &sealed), Err(Unauthentic));
        assert_eq!(k.open(b"a", &sealed[..20]), Err(Unauthentic));
    }

    fn stream(k: &std::sync::Arc<Keys>, data: &[u8]) -> Vec<u8> {
        let mut w = SealWriter::new(k.clone(), Vec::new(), b"T").unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn unstream(k: &std::sync::Arc<Keys>, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        SealReader::new(k.clone(), bytes, b"T", 0)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn streams_round_trip_and_detect_cuts_and_swaps() {
        let k = shared();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let s = stream(&k, &data);
            assert_eq!(unstream(&k, &s).unwrap(), data, "len {len}");
            let c = CHUNK + TAG_LEN;
            if len > CHUNK {
                // Cut at a chunk boundary: the remaining last chunk is not
                // marked last.
                let cut = &s[..STREAM_PREFIX_LEN + c];
                let e = unstream(&k, cut).unwrap_err();
                assert_eq!(auth_failure_offset(&e), Some(STREAM_PREFIX_LEN as u64));
            }
            if len > 2 * CHUNK {
                let mut swapped = s.clone();
                let a = STREAM_PREFIX_LEN;
                let (x, y) = (s[a..a + c].to_vec(), s[a + c..a + 2 * c].to_vec());
                swapped[a..a + c].copy_from_slice(&y);
                swapped[a + c..a + 2 * c].copy_from_slice(&x);
                assert!(unstream(&k, &swapped).is_err());
            }
            let mut flipped = s.clone();
            let at = flipped.len() / 2;
            flipped[at] ^= 0x40;
            assert!(unstream(&k, &flipped).is_err(), "len {len}");
            let mut longer = s.clone();
            longer.push(0);
            assert!(unstream(&k, &longer).is_err(), "len {len}");
        }
    }

    #[test]
    fn key_files_open_with_their_password_only() {
        let m = MasterKey::from_bytes([9u8; 32]);
        let p = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let who = ("h".to_string(), "u".to_string(), "t".to_string());
        let f = KeyFile::wrap(&m, b"secret", p, "repo", who).unwrap();
        let back = f.unwrap_with(b"secret", "repo").unwrap().unwrap();
        assert_eq!(back.bytes(), m.bytes());
        assert!(f.unwrap_with(b"Secret", "repo").unwrap().is_none());
        assert!(f.unwrap_with(b"secret", "other").unwrap().is_none());
    }
}
