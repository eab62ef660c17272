//! CRC-64/XZ, the checksum OSS reports in `x-oss-hash-crc64ecma`, with combination.
//!
//! CRC-64/XZ is the ECMA-182 polynomial, reflected, with all-ones init and final XOR. The check
//! value of `"123456789"` is 11051210869376104954. The CRC of a concatenation is computed from the
//! CRCs of its pieces and the length of the second ([`combine`]), so per-part CRCs computed in
//! parallel give the whole object's CRC without a second pass over the bytes.

use crc_fast::CrcAlgorithm;
use serde::{Deserialize, Serialize};

const ALGORITHM: CrcAlgorithm = CrcAlgorithm::Crc64Xz;

/// The CRC-64/XZ of `data`.
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(ALGORITHM, data)
}

/// The CRC-64/XZ of `A || B`, from `crc64(A)`, `crc64(B)` and `B`'s length.
pub fn combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    if len_b == 0 {
        return crc_a;
    }
    crc_fast::checksum_combine(ALGORITHM, crc_a, crc_b, len_b)
}

/// A streaming CRC-64/XZ for data that arrives in small pieces (a request body in frames).
#[derive(Clone)]
pub struct Crc64Stream {
    digest: crc_fast::Digest,
    len: u64,
}

impl Default for Crc64Stream {
    fn default() -> Self {
        Self { digest: crc_fast::Digest::new(ALGORITHM), len: 0 }
    }
}

impl std::fmt::Debug for Crc64Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crc64Stream").field("len", &self.len).finish_non_exhaustive()
    }
}

impl Crc64Stream {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
        self.len += data.len() as u64;
    }

    /// The CRC and length so far.
    pub fn value(&self) -> Crc64 {
        Crc64 { crc: self.digest.finalize(), len: self.len }
    }
}

/// A CRC-64/XZ with the length it covers: a value that can be extended with more bytes or with
/// the CRC of a following piece, and serialized as two numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crc64 {
    /// The CRC of the bytes so far.
    pub crc: u64,
    /// How many bytes it covers.
    pub len: u64,
}

impl Crc64 {
    /// The CRC of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self { crc: crc64(data), len: data.len() as u64 }
    }

    /// Appends a piece whose CRC is already known.
    pub fn append(&mut self, next: Crc64) {
        if self.len == 0 {
            // The CRC of an empty prefix followed by B is the CRC of B: no combination needed.
            *self = next;
            return;
        }
        self.crc = combine(self.crc, next.crc, next.len);
        self.len += next.len;
    }

    /// Appends bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.append(Self::of(data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_values() {
        assert_eq!(crc64(b"123456789"), 11051210869376104954);
        assert_eq!(crc64(b""), 0);
        assert_eq!(crc64(b"12345"), 6748440630437108969);
        assert_eq!(crc64(b"67890"), 6285347597771850461);
        assert_eq!(combine(6748440630437108969, 6285347597771850461, 5), 12811388247244714686);
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut s = Crc64Stream::default();
        for piece in data.chunks(1000) {
            s.update(piece);
        }
        assert_eq!(s.value(), Crc64::of(&data));
    }

    proptest! {
        /// Combining the CRCs of a random split equals the CRC of the whole.
        #[test]
        fn combination_of_random_splits_equals_whole(
            data in prop::collection::vec(any::<u8>(), 0..4096),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut total = Crc64::default();
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                total.append(Crc64::of(&data[start..cut]));
                start = cut;
            }
            prop_assert_eq!(total, Crc64::of(&data));
        }
    }
}
