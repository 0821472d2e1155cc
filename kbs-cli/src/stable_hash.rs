//! FNV-1a (64 bit): a hash whose value never changes between runs, builds or Rust versions
//! (unlike `std`'s `DefaultHasher`), for names and ids derived from content: default restore
//! and import ids, Avro sync markers, cut folder names.

use std::hash::Hasher;

/// FNV-1a's offset basis.
pub(crate) const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// An FNV-1a hasher, from the offset basis or another seed.
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    /// A hasher starting from `seed` (FNV-1a proper: [`FNV_OFFSET_BASIS`]).
    pub(crate) fn with_seed(seed: u64) -> Fnv1a {
        Fnv1a(seed)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
    }
}

/// FNV-1a of `bytes`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv1a::with_seed(FNV_OFFSET_BASIS);
    hasher.write(bytes);
    hasher.finish()
}
