//! The upload state: one plain serializable value that is both the checkpoint and the step-mode
//! state.

use serde::{Deserialize, Serialize};

use crate::hash::{Crc64, Digests, WholeHashState};
use crate::plan::{PartPlan, PartSpec};
use crate::source::Fingerprint;

/// A part the vendor stores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DonePart<R> {
    /// Index in the plan.
    pub index: u32,
    /// Wire part number.
    pub number: u32,
    /// First byte in the source.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// Digests of the part's bytes (computed here, or reported by the server on resume).
    #[serde(default)]
    pub digests: Digests,
    /// What the vendor returned for the part (ETag, part id…), needed to complete.
    pub receipt: R,
}

impl<R> DonePart<R> {
    /// The part's place in the plan.
    pub fn spec(&self) -> PartSpec {
        PartSpec { index: self.index, number: self.number, offset: self.offset, len: self.len }
    }
}

/// Everything needed to continue an upload in another step, process or machine.
///
/// `S` is the vendor's session (upload id, session URLs) and `R` its per-part receipt. Serialize
/// it with serde (a web app may keep it in its database), or let the engine write it as a
/// checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState<S, R> {
    /// Always [`crate::checkpoint::FORMAT`].
    pub format: String,
    /// Always [`crate::checkpoint::VERSION`].
    pub version: u32,
    /// Vendor name, as in its part rules ("OSS").
    pub vendor: String,
    /// Where the object goes, as the vendor crate names it (`oss://bucket/key`).
    pub target: String,
    /// The vendor's session.
    pub session: S,
    /// The part plan. The part size never changes within a session.
    pub plan: PartPlan,
    /// The source the upload started with.
    pub source: Fingerprint,
    /// Parts the vendor stores, by index.
    pub parts: Vec<DonePart<R>>,
    /// The whole-file hashes, as far as the source has been read in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole: Option<WholeHashState>,
}

impl<S, R> UploadState<S, R> {
    /// Bytes the vendor stores.
    pub fn bytes_done(&self) -> u64 {
        self.parts.iter().map(|p| p.len).sum()
    }

    /// Parts the vendor stores.
    pub fn parts_done(&self) -> u32 {
        self.parts.len() as u32
    }

    /// Whether every part of a plan with a known length is stored.
    pub fn all_parts_done(&self) -> bool {
        self.plan.part_count().is_some_and(|n| n == self.parts_done())
    }

    /// The done part with this index.
    pub fn part(&self, index: u32) -> Option<&DonePart<R>> {
        self.parts.binary_search_by_key(&index, |p| p.index).ok().map(|i| &self.parts[i])
    }

    /// Records a done part, replacing one with the same index.
    pub fn insert(&mut self, part: DonePart<R>) {
        match self.parts.binary_search_by_key(&part.index, |p| p.index) {
            Ok(i) => self.parts[i] = part,
            Err(i) => self.parts.insert(i, part),
        }
    }

    /// The CRC-64 of the whole source, combined from the parts' CRCs, when every part has one.
    pub fn combined_crc64(&self) -> Option<u64> {
        let mut crc = Crc64::default();
        for p in &self.parts {
            crc.append(Crc64 { crc: p.digests.crc64?, len: p.len });
        }
        Some(crc.crc)
    }
}
