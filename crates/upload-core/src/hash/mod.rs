//! The digests vendors ask for, computed once and in the right stage.
//!
//! | vendor | per part | whole file |
//! |---|---|---|
//! | Box | SHA-1 (`Digest: sha=`) | SHA-1 at commit |
//! | OSS | MD5 (`Content-MD5`), CRC-64 returned | CRC-64 (combined from the parts) |
//! | QingStor | MD5 (`Content-MD5`) | — |
//! | Graph | — | QuickXorHash, compared with the finished item |
//!
//! Per-part digests ([`Digests::compute`]) run in the parallel part stage. Whole-file digests
//! ([`WholeHasher`]) run in the sequential reading stage, exactly once per byte, and their state
//! serializes ([`WholeHashState`]) so that a step-mode upload or a resumed process carries on
//! where the last one stopped instead of hashing a byte twice or losing the digest.
//! Implementations, the fastest measured on x86_64: AWS-LC's assembly for SHA-1 and MD5
//! ([`native`]), `crc-fast` for CRC-64 (PCLMULQDQ / VPCLMULQDQ), and our own lane-parallel
//! QuickXorHash.

pub mod crc64;
pub mod native;
pub mod quickxor;

use std::ops::BitOr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

pub use crc64::{Crc64, Crc64Stream};
pub use native::{Md5, Sha1};
pub use quickxor::QuickXor;

/// A set of hash algorithms.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hashes(u8);

impl Hashes {
    /// No hash.
    pub const NONE: Self = Self(0);
    /// SHA-1.
    pub const SHA1: Self = Self(1);
    /// MD5.
    pub const MD5: Self = Self(2);
    /// CRC-64/XZ.
    pub const CRC64: Self = Self(4);
    /// QuickXorHash.
    pub const QUICKXOR: Self = Self(8);

    /// Whether every hash of `other` is in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The set without the hashes of `other`.
    pub fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Hashes {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::fmt::Debug for Hashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [(Self::SHA1, "SHA1"), (Self::MD5, "MD5"), (Self::CRC64, "CRC64"), (Self::QUICKXOR, "QUICKXOR")];
        let mut set = f.debug_set();
        for (h, n) in names {
            if self.contains(h) {
                set.entry(&format_args!("{n}"));
            }
        }
        set.finish()
    }
}

/// Digests of some bytes; a field is `Some` when its hash was asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// SHA-1.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
    pub sha1: Option<[u8; 20]>,
    /// MD5.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
    pub md5: Option<[u8; 16]>,
    /// CRC-64/XZ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64: Option<u64>,
    /// QuickXorHash.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
    pub quickxor: Option<[u8; 20]>,
}

/// Hashing walks the input in slices of this size so that every hash of one slice reads it from
/// cache.
const SLICE: usize = 64 * 1024;

impl Digests {
    /// Computes the requested hashes of `data` in one pass over it.
    pub fn compute(hashes: Hashes, data: &[u8]) -> Self {
        let mut h = WholeHasher::new(hashes);
        h.update(data);
        h.finish()
    }

    /// SHA-1 in base64, as Box's `Digest: sha=` header wants it.
    pub fn sha1_base64(&self) -> Option<String> {
        self.sha1.map(|d| STANDARD.encode(d))
    }

    /// SHA-1 in lowercase hex, as Box reports it.
    pub fn sha1_hex(&self) -> Option<String> {
        self.sha1.map(|d| hex(&d))
    }

    /// MD5 in base64, for `Content-MD5`.
    pub fn md5_base64(&self) -> Option<String> {
        self.md5.map(|d| STANDARD.encode(d))
    }

    /// MD5 in lowercase hex, as in an ETag.
    pub fn md5_hex(&self) -> Option<String> {
        self.md5.map(|d| hex(&d))
    }

    /// QuickXorHash in base64, as Graph reports it.
    pub fn quickxor_base64(&self) -> Option<String> {
        self.quickxor.map(|d| STANDARD.encode(d))
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Bytes from their hex form (either case), such as an MD5 from an ETag; `None` for anything else.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer, const N: usize>(v: &Option<[u8; N]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&super::hex(b)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<Option<[u8; N]>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => {
                super::from_hex(&s).map(Some).ok_or_else(|| D::Error::custom(format!("expected {N} bytes of hex")))
            }
        }
    }
}

/// Streaming hashes of a whole source, fed in order, with a serializable state.
#[derive(Clone)]
pub struct WholeHasher {
    hashes: Hashes,
    len: u64,
    sha1: Option<Sha1>,
    md5: Option<Md5>,
    /// The CRC of the bytes before this process (restored state), and of those since.
    crc64: Option<(Crc64, Crc64Stream)>,
    quickxor: Option<QuickXor>,
}

impl std::fmt::Debug for WholeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WholeHasher").field("hashes", &self.hashes).field("len", &self.len).finish()
    }
}

/// The state of a [`WholeHasher`], to store in a checkpoint or a step-mode state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WholeHashState {
    /// The hashes computed.
    pub hashes: Hashes,
    /// Bytes hashed so far.
    pub len: u64,
    /// SHA-1 state (chaining words, bit count, pending bytes), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    /// MD5 state, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// CRC-64 so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64: Option<Crc64>,
    /// QuickXorHash lanes and length, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quickxor: Option<String>,
}

/// A [`WholeHashState`] that cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the saved {algorithm} state is corrupt or from another version")]
pub struct HashStateError {
    /// The hash whose state failed.
    pub algorithm: &'static str,
}

impl WholeHasher {
    /// A hasher of the empty input for the given hashes.
    pub fn new(hashes: Hashes) -> Self {
        Self {
            hashes,
            len: 0,
            sha1: hashes.contains(Hashes::SHA1).then(Sha1::new),
            md5: hashes.contains(Hashes::MD5).then(Md5::new),
            crc64: hashes.contains(Hashes::CRC64).then(|| (Crc64::default(), Crc64Stream::default())),
            quickxor: hashes.contains(Hashes::QUICKXOR).then(QuickXor::new),
        }
    }

    /// The hashes this hasher computes.
    pub fn hashes(&self) -> Hashes {
        self.hashes
    }

    /// Bytes hashed so far: the offset of the next byte in the source.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the next bytes of the source.
    pub fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        // Every hash takes each slice while it is in cache.
        for slice in data.chunks(SLICE) {
            if let Some((_, h)) = &mut self.crc64 {
                h.update(slice);
            }
            if let Some(h) = &mut self.sha1 {
                h.update(slice);
            }
            if let Some(h) = &mut self.md5 {
                h.update(slice);
            }
            if let Some(h) = &mut self.quickxor {
                h.update(slice);
            }
        }
    }

    /// The digests of everything added so far (the hasher can go on).
    pub fn finish(&self) -> Digests {
        Digests {
            sha1: self.sha1.as_ref().map(Sha1::finish),
            md5: self.md5.as_ref().map(Md5::finish),
            crc64: self.crc64_value().map(|c| c.crc),
            quickxor: self.quickxor.as_ref().map(QuickXor::finish),
        }
    }

    fn crc64_value(&self) -> Option<Crc64> {
        self.crc64.as_ref().map(|(base, since)| {
            let mut c = *base;
            c.append(since.value());
            c
        })
    }

    /// The serializable state.
    pub fn state(&self) -> WholeHashState {
        WholeHashState {
            hashes: self.hashes,
            len: self.len,
            sha1: self.sha1.as_ref().map(|h| STANDARD.encode(h.to_state())),
            md5: self.md5.as_ref().map(|h| STANDARD.encode(h.to_state())),
            crc64: self.crc64_value(),
            quickxor: self.quickxor.as_ref().map(|q| STANDARD.encode(q.to_state())),
        }
    }

    /// Restores a hasher from its state.
    pub fn from_state(state: &WholeHashState) -> Result<Self, HashStateError> {
        let h = state.hashes;
        let decode = |s: &Option<String>, algorithm| {
            let err = HashStateError { algorithm };
            let bytes = STANDARD.decode(s.as_deref().ok_or(err.clone())?).map_err(|_| err.clone())?;
            Ok::<_, HashStateError>(bytes)
        };
        let sha1 = if h.contains(Hashes::SHA1) {
            let bytes = decode(&state.sha1, "SHA-1")?;
            Some(Sha1::from_state(&bytes, state.len).ok_or(HashStateError { algorithm: "SHA-1" })?)
        } else {
            None
        };
        let md5 = if h.contains(Hashes::MD5) {
            let bytes = decode(&state.md5, "MD5")?;
            Some(Md5::from_state(&bytes, state.len).ok_or(HashStateError { algorithm: "MD5" })?)
        } else {
            None
        };
        let quickxor = if h.contains(Hashes::QUICKXOR) {
            let err = HashStateError { algorithm: "QuickXorHash" };
            let bytes = STANDARD.decode(state.quickxor.as_deref().ok_or(err.clone())?).map_err(|_| err.clone())?;
            let q = QuickXor::from_state(&bytes).ok_or(err.clone())?;
            if q.len() != state.len {
                return Err(err);
            }
            Some(q)
        } else {
            None
        };
        let crc64 = if h.contains(Hashes::CRC64) {
            let c = state.crc64.ok_or(HashStateError { algorithm: "CRC-64" })?;
            if c.len != state.len {
                return Err(HashStateError { algorithm: "CRC-64" });
            }
            Some(c)
        } else {
            None
        };
        let crc64 = crc64.map(|c| (c, Crc64Stream::default()));
        Ok(Self { hashes: h, len: state.len, sha1, md5, crc64, quickxor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: Hashes = Hashes(15);

    #[test]
    fn known_values() {
        let d = Digests::compute(ALL, b"abc");
        assert_eq!(d.sha1_hex().unwrap(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(d.md5_hex().unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(d.md5_base64().unwrap(), "kAFQmDzST7DWlj99KOF/cg==");
        assert_eq!(Digests::compute(Hashes::CRC64, b"123456789").crc64, Some(11051210869376104954));
        // Box's documented digest of the empty-ish examples is base64 of the raw SHA-1.
        assert_eq!(Digests::compute(Hashes::SHA1, b"").sha1_base64().unwrap(), "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
        assert_eq!(format!("{:?}", Hashes::SHA1 | Hashes::CRC64), "{SHA1, CRC64}");
    }

    #[test]
    fn digests_serialize_as_hex() {
        let d = Digests::compute(Hashes::SHA1 | Hashes::CRC64, b"abc");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, r#"{"sha1":"a9993e364706816aba3e25717850c26c9cd0d89d","crc64":3231342946509354535}"#);
        assert_eq!(serde_json::from_str::<Digests>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digests>(r#"{"sha1":"abc"}"#).is_err());
    }

    #[test]
    fn corrupt_state_is_a_typed_error() {
        let mut h = WholeHasher::new(Hashes::SHA1 | Hashes::QUICKXOR);
        h.update(b"some bytes");
        let mut state = h.state();
        state.sha1 = Some("bm90IGEgc3RhdGU=".into());
        assert_eq!(WholeHasher::from_state(&state).unwrap_err().algorithm, "SHA-1");
        // A state whose length disagrees with the hash's own count is refused.
        let mut state = h.state();
        state.len += 1;
        assert_eq!(WholeHasher::from_state(&state).unwrap_err().algorithm, "SHA-1");
        let mut q = WholeHasher::new(Hashes::QUICKXOR);
        q.update(b"some bytes");
        let mut state = q.state();
        state.len += 1;
        assert_eq!(WholeHasher::from_state(&state).unwrap_err().algorithm, "QuickXorHash");
    }

    proptest! {
        /// Hashing in pieces with the state serialized to JSON and back between them gives the
        /// digests of the whole, for every hash: what step mode relies on.
        #[test]
        fn state_survives_serialization_between_pieces(
            data in prop::collection::vec(any::<u8>(), 0..5_000),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut h = WholeHasher::new(ALL);
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                h.update(&data[start..cut]);
                let json = serde_json::to_string(&h.state()).unwrap();
                h = WholeHasher::from_state(&serde_json::from_str(&json).unwrap()).unwrap();
                start = cut;
            }
            prop_assert_eq!(h.finish(), Digests::compute(ALL, &data));
            prop_assert_eq!(h.finish().sha1, Some(<sha1::Sha1 as sha1::Digest>::digest(&data).into()));
        }
    }
}
