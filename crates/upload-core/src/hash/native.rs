//! SHA-1 and MD5 from AWS-LC, with a serializable state.
//!
//! AWS-LC's assembly is the fastest SHA-1 and MD5 measured on x86_64 (`cargo xtask bench`:
//! about 1.7 × the RustCrypto `sha1` crate with SHA-NI, 1.2 × `md-5`), and it is already linked
//! by the TLS stack. Its hash contexts are plain C structs (`h`, the bit count `Nl`/`Nh`, the
//! pending block and its length), so the state of a whole-file hash can be saved between steps
//! of an upload and restored in another process. This module and `sys` (one system call) are the
//! only `unsafe` code of the crate: each call passes an exclusively borrowed, initialised
//! context and a valid slice.
#![allow(unsafe_code)]

use aws_lc_sys as sys;

macro_rules! native_hash {
    ($name:ident, $ctx:ident, $words:literal, $out:literal, $init:ident, $update:ident, $final:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone)]
        pub struct $name(sys::$ctx);

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let len = (u64::from(self.0.Nh) << 32 | u64::from(self.0.Nl)) / 8;
                f.debug_struct(stringify!($name)).field("len", &len).finish_non_exhaustive()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $name {
            /// The hash of the empty input.
            pub fn new() -> Self {
                let mut ctx = Self::empty();
                // SAFETY: `ctx` is a valid context owned by this frame.
                unsafe { sys::$init(&mut ctx) };
                Self(ctx)
            }

            fn empty() -> sys::$ctx {
                sys::$ctx { h: [0; $words], Nl: 0, Nh: 0, data: [0; 64], num: 0 }
            }

            /// Adds bytes.
            pub fn update(&mut self, data: &[u8]) {
                // SAFETY: the context is initialised and exclusively borrowed; `data` is a valid
                // slice of `data.len()` bytes.
                unsafe { sys::$update(&mut self.0, data.as_ptr().cast(), data.len()) };
            }

            /// The digest of everything added (the hash can go on).
            pub fn finish(&self) -> [u8; $out] {
                let mut ctx = self.0;
                let mut out = [0u8; $out];
                // SAFETY: `ctx` is an initialised copy owned by this frame; `out` has room for
                // the digest.
                unsafe { sys::$final(out.as_mut_ptr(), &mut ctx) };
                out
            }

            /// One-shot digest.
            pub fn digest(data: &[u8]) -> [u8; $out] {
                let mut h = Self::new();
                h.update(data);
                h.finish()
            }

            /// The state: chaining words, bit count, pending bytes.
            pub fn to_state(&self) -> Vec<u8> {
                let c = &self.0;
                let mut v = Vec::with_capacity(4 * $words + 12 + c.num as usize);
                for w in c.h {
                    v.extend_from_slice(&w.to_le_bytes());
                }
                v.extend_from_slice(&c.Nl.to_le_bytes());
                v.extend_from_slice(&c.Nh.to_le_bytes());
                v.extend_from_slice(&c.num.to_le_bytes());
                v.extend_from_slice(&c.data[..(c.num as usize).min(64)]);
                v
            }

            /// Restores a state made by `to_state` for an input of `len` bytes; `None` when the
            /// bytes are not such a state.
            pub fn from_state(state: &[u8], len: u64) -> Option<Self> {
                let word = |i: usize| -> Option<u32> {
                    Some(u32::from_le_bytes(state.get(4 * i..4 * i + 4)?.try_into().ok()?))
                };
                let mut c = Self::empty();
                for (i, h) in c.h.iter_mut().enumerate() {
                    *h = word(i)?;
                }
                c.Nl = word($words)?;
                c.Nh = word($words + 1)?;
                c.num = word($words + 2)?;
                let pending = state.get(4 * $words + 12..)?;
                let bits = len.checked_mul(8)?;
                if pending.len() != c.num as usize || c.num >= 64 || u64::from(c.num) != len % 64 {
                    return None;
                }
                if c.Nl != bits as u32 || c.Nh != (bits >> 32) as u32 {
                    return None;
                }
                c.data[..pending.len()].copy_from_slice(pending);
                Some(Self(c))
            }
        }
    };
}

native_hash!(Sha1, SHA_CTX, 5, 20, SHA1_Init, SHA1_Update, SHA1_Final, "SHA-1 (AWS-LC).");
native_hash!(Md5, MD5_CTX, 4, 16, MD5_Init, MD5_Update, MD5_Final, "MD5 (AWS-LC).");

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;
    use proptest::prelude::*;

    proptest! {
        /// The same digests as the RustCrypto implementations, for any split of the input and a
        /// state round trip at every split.
        #[test]
        fn agrees_with_rustcrypto_across_state_round_trips(
            data in prop::collection::vec(any::<u8>(), 0..3_000),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            cuts.sort_unstable();
            let (mut s, mut m) = (Sha1::new(), Md5::new());
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                s.update(&data[start..cut]);
                m.update(&data[start..cut]);
                s = Sha1::from_state(&s.to_state(), cut as u64).unwrap();
                m = Md5::from_state(&m.to_state(), cut as u64).unwrap();
                start = cut;
            }
            prop_assert_eq!(s.finish().to_vec(), sha1::Sha1::digest(&data).to_vec());
            prop_assert_eq!(m.finish().to_vec(), md5::Md5::digest(&data).to_vec());
        }
    }

    #[test]
    fn a_state_for_another_length_is_refused() {
        let mut s = Sha1::new();
        s.update(b"hello");
        assert!(Sha1::from_state(&s.to_state(), 5).is_some());
        assert!(Sha1::from_state(&s.to_state(), 6).is_none());
        assert!(Sha1::from_state(&s.to_state()[..10], 5).is_none());
    }
}
