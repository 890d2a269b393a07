//! Typed 32-byte identifiers. Every hash in kindsnap has its own type so an
//! entity hash can never be passed where a pack id is expected.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                Some(Self(b.try_into().ok()?))
            }
            /// The first 8 hex digits, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(b: [u8; 32]) -> Self {
                Self(b)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

id_type!(
    /// blake3 of an entity's canonical encoding.
    EntityHash
);
id_type!(
    /// blake3 of a whole pack file.
    PackId
);
id_type!(
    /// blake3 of a whole snapshot manifest file.
    SnapshotId
);
id_type!(
    /// Random identity of a repository.
    RepoId
);

/// A set of entity hashes. They are uniformly random already, so their
/// first eight bytes serve as the table's hash: SipHash over 32 bytes cost
/// more than the rest of a lookup.
pub type EntityHashSet = std::collections::HashSet<EntityHash, BuildPrefixHasher>;

pub type BuildPrefixHasher = std::hash::BuildHasherDefault<PrefixHasher>;

/// Hashes a random byte string by its first eight bytes (see
/// [`EntityHashSet`]), mixed with a per-process random key so that
/// entities crafted to share table buckets cannot slow a snapshot down.
#[derive(Default)]
pub struct PrefixHasher(u64);

impl std::hash::Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let key = *KEY.get_or_init(rand::random);
        let m = ((self.0 ^ key) as u128) * 0x9e37_79b9_7f4a_7c15_u128;
        (m as u64) ^ ((m >> 64) as u64)
    }

    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(b) => self.0 ^= u64::from_le_bytes(*b),
            None => {
                for &b in bytes {
                    self.0 = self.0.rotate_left(8) ^ b as u64;
                }
            }
        }
    }

    // The length prefix of a slice says nothing here.
    fn write_usize(&mut self, _: usize) {}
}
