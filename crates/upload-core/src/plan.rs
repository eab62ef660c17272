//! Part planning: from a source length and a vendor's part rules to an exact cover of the source.
//!
//! Every vendor cuts a large upload into parts, and every vendor has its own rules: the smallest
//! and largest part, a size every part must be a multiple of (Graph: 320 KiB), the largest number of
//! parts, whether part numbers start at 0 (QingStor) or 1 (OSS), and whether the server dictates the
//! part size (Box). [`PartRules`] states those rules once per vendor; [`PartPlan::new`] turns a
//! length and a [`PartSize`] request into a plan, or into a [`PlanError`] that names the rule
//! broken, before a byte is sent.
//!
//! A plan is `part_size`-sized parts followed by one last part that may be smaller; that is what
//! every supported vendor accepts, and it lets a resumed upload recompute any part's range from
//! the plan alone.

use serde::{Deserialize, Serialize};

use crate::size::ByteSize;

/// What a vendor allows of the parts of one upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRules {
    /// The vendor's name as users know it ("OSS", "Box"); it appears in every error message.
    pub vendor: &'static str,
    /// Smallest size of every part but the last.
    pub min_part_size: u64,
    /// Largest size of any part.
    pub max_part_size: u64,
    /// Every part but the last must be a multiple of this (1 when the vendor has no such rule).
    pub part_size_multiple: u64,
    /// Largest number of parts in one upload.
    pub max_parts: u32,
    /// The number of the first part on the wire: 0 (QingStor, Box offsets) or 1 (OSS).
    pub first_part_number: u32,
    /// Part size used when the caller expresses no preference.
    pub default_part_size: u64,
    /// Smallest source this upload type accepts (Box's chunked minimum); 0 when there is none.
    pub min_source_len: u64,
    /// Largest source the vendor stores as one object.
    pub max_source_len: u64,
    /// The server picks the part size when the session is created (Box); the client's request is
    /// ignored and the plan is made from the server's answer.
    pub server_picks_part_size: bool,
    /// The vendor needs the total length when the session is created (Box, Graph).
    pub needs_total_len: bool,
    /// Parts must be sent one at a time, in order (Graph, SharePoint REST).
    pub sequential: bool,
}

impl PartRules {
    /// Rules with no limits beyond the given vendor name; a starting point for builders and tests.
    pub fn unrestricted(vendor: &'static str) -> Self {
        Self {
            vendor,
            min_part_size: 1,
            max_part_size: u64::MAX,
            part_size_multiple: 1,
            max_parts: u32::MAX,
            first_part_number: 1,
            default_part_size: 8 * crate::size::MIB,
            min_source_len: 0,
            max_source_len: u64::MAX,
            server_picks_part_size: false,
            needs_total_len: false,
            sequential: false,
        }
    }
}

/// How the caller wants the part size chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartSize {
    /// The vendor's default, grown as needed to stay within the part count limit.
    #[default]
    Auto,
    /// At least this size; grown (to a valid multiple) when the source would need too many parts.
    AtLeast(u64),
    /// Exactly this size, or an error. The server's size for vendors that pick it (Box).
    Exact(u64),
}

/// Why no valid plan exists. Each variant names the vendor and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The requested part size is below the vendor's minimum.
    #[error("part size {} is below {vendor}'s minimum of {}", ByteSize(*size), ByteSize(*min))]
    PartTooSmall {
        /// Vendor name.
        vendor: &'static str,
        /// Requested size.
        size: u64,
        /// The vendor's minimum.
        min: u64,
    },
    /// The requested part size is above the vendor's maximum.
    #[error("part size {} is above {vendor}'s maximum of {}", ByteSize(*size), ByteSize(*max))]
    PartTooLarge {
        /// Vendor name.
        vendor: &'static str,
        /// Requested size.
        size: u64,
        /// The vendor's maximum.
        max: u64,
    },
    /// The requested part size is not a multiple of the vendor's unit.
    #[error("part size {} is not a multiple of {}, as {vendor} requires", ByteSize(*size), ByteSize(*multiple))]
    NotAMultiple {
        /// Vendor name.
        vendor: &'static str,
        /// Requested size.
        size: u64,
        /// The unit every part size must be a multiple of.
        multiple: u64,
    },
    /// An exact part size would need more parts than the vendor allows.
    #[error(
        "a source of {} in parts of {} needs {parts} parts, more than {vendor}'s limit of {max_parts}",
        ByteSize(*len), ByteSize(*size)
    )]
    TooManyParts {
        /// Vendor name.
        vendor: &'static str,
        /// Source length.
        len: u64,
        /// The part size.
        size: u64,
        /// Parts needed.
        parts: u64,
        /// The vendor's part count limit.
        max_parts: u32,
    },
    /// The source is smaller than this upload type accepts.
    #[error("a source of {} is below {vendor}'s minimum of {} for this upload type{hint}", ByteSize(*len), ByteSize(*min))]
    SourceTooSmall {
        /// Vendor name.
        vendor: &'static str,
        /// Source length.
        len: u64,
        /// The vendor's minimum.
        min: u64,
        /// What to use instead, with a leading separator (may be empty).
        hint: &'static str,
    },
    /// The source is larger than the vendor stores, or than its part rules can cover.
    #[error("a source of {} is above {vendor}'s maximum of {}", ByteSize(*len), ByteSize(*max))]
    SourceTooLarge {
        /// Vendor name.
        vendor: &'static str,
        /// Source length.
        len: u64,
        /// The largest source the vendor accepts.
        max: u64,
    },
    /// The vendor must know the total length up front, and the source has none.
    #[error("{vendor} needs the total length when the upload starts; the source's length is unknown")]
    UnknownLength {
        /// Vendor name.
        vendor: &'static str,
    },
}

/// One part of a plan: its number on the wire and the bytes it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSpec {
    /// Index in the plan, from 0.
    pub index: u32,
    /// The part number the vendor expects (index + the vendor's first part number).
    pub number: u32,
    /// First byte of the part in the source.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

impl PartSpec {
    /// One past the last byte of the part.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// An exact cover of the source: `part_size` parts and a last part that may be smaller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartPlan {
    /// Size of every part but the last.
    pub part_size: u64,
    /// Total length, when known in advance.
    pub total_len: Option<u64>,
    /// The wire number of the first part.
    pub first_part_number: u32,
    /// The vendor's part count limit (bounds a stream of unknown length).
    pub max_parts: u32,
}

fn round_up(n: u64, multiple: u64) -> Option<u64> {
    if multiple <= 1 {
        return Some(n);
    }
    n.div_ceil(multiple).checked_mul(multiple)
}

impl PartPlan {
    /// Plans the parts of a source of `total_len` bytes (`None` for a stream of unknown length).
    ///
    /// `Auto` and `AtLeast` grow the part size to the smallest valid size that fits the vendor's
    /// part count limit; `Exact` never changes the size and fails instead.
    pub fn new(rules: &PartRules, total_len: Option<u64>, size: PartSize) -> Result<Self, PlanError> {
        let vendor = rules.vendor;
        match total_len {
            None if rules.needs_total_len => return Err(PlanError::UnknownLength { vendor }),
            Some(len) if len < rules.min_source_len => {
                return Err(PlanError::SourceTooSmall { vendor, len, min: rules.min_source_len, hint: "" });
            }
            Some(len) if len > rules.max_source_len => {
                return Err(PlanError::SourceTooLarge { vendor, len, max: rules.max_source_len });
            }
            _ => {}
        }
        let (requested, grow) = match size {
            PartSize::Auto => (rules.default_part_size, true),
            PartSize::AtLeast(n) => (n, true),
            PartSize::Exact(n) => (n, false),
        };
        // An explicit request is checked as given, so the error names what the caller asked for.
        if !matches!(size, PartSize::Auto) {
            check_size(rules, requested)?;
        }
        let mut part_size = requested.clamp(rules.min_part_size.max(1), rules.max_part_size);
        part_size = round_up(part_size, rules.part_size_multiple).unwrap_or(u64::MAX);
        if let Some(len) = total_len {
            let parts = len.div_ceil(part_size).max(1);
            if parts > u64::from(rules.max_parts) {
                if !grow {
                    return Err(PlanError::TooManyParts {
                        vendor,
                        len,
                        size: part_size,
                        parts,
                        max_parts: rules.max_parts,
                    });
                }
                let needed = len.div_ceil(u64::from(rules.max_parts.max(1)));
                part_size = match round_up(needed, rules.part_size_multiple) {
                    Some(s) if s <= rules.max_part_size => s,
                    _ => {
                        let max = rules.max_part_size.saturating_mul(u64::from(rules.max_parts));
                        return Err(PlanError::SourceTooLarge { vendor, len, max });
                    }
                };
            }
        }
        // Rounding to the multiple may have crossed the maximum: then no size satisfies the rules.
        check_size(rules, part_size)?;
        // Small sources: one part of the whole source is still a valid plan (the last part may be
        // smaller than the minimum), so nothing else to check.
        Ok(Self { part_size, total_len, first_part_number: rules.first_part_number, max_parts: rules.max_parts })
    }

    /// Number of parts, when the total length is known. An empty source is one empty part.
    pub fn part_count(&self) -> Option<u32> {
        let len = self.total_len?;
        // `new` guarantees the count fits the vendor's limit, which is a u32.
        Some(u32::try_from(len.div_ceil(self.part_size).max(1)).unwrap_or(u32::MAX))
    }

    /// The part at `index`, if the plan has one (for an unknown length, any index below the
    /// vendor's limit; its length is `part_size`, the reader cuts the last one short).
    pub fn part(&self, index: u32) -> Option<PartSpec> {
        let offset = u64::from(index).checked_mul(self.part_size)?;
        let number = self.first_part_number.checked_add(index)?;
        match self.total_len {
            Some(total) => {
                if index >= self.part_count()? {
                    return None;
                }
                Some(PartSpec { index, number, offset, len: (total - offset).min(self.part_size) })
            }
            None if index < self.max_parts => Some(PartSpec { index, number, offset, len: self.part_size }),
            None => None,
        }
    }

    /// The index of the part with this wire number.
    pub fn index_of(&self, number: u32) -> Option<u32> {
        number.checked_sub(self.first_part_number)
    }

    /// Iterates over the parts of a plan with a known length.
    pub fn parts(&self) -> impl Iterator<Item = PartSpec> + '_ {
        (0..self.part_count().unwrap_or(0)).filter_map(|i| self.part(i))
    }

    /// The plan with its total length fixed once a stream of unknown length has ended.
    pub fn with_total_len(mut self, len: u64) -> Self {
        self.total_len = Some(len);
        self
    }
}

/// Checks a part size against the vendor's bounds and multiple.
pub fn check_size(rules: &PartRules, size: u64) -> Result<(), PlanError> {
    let vendor = rules.vendor;
    if size < rules.min_part_size || size == 0 {
        return Err(PlanError::PartTooSmall { vendor, size, min: rules.min_part_size.max(1) });
    }
    if size > rules.max_part_size {
        return Err(PlanError::PartTooLarge { vendor, size, max: rules.max_part_size });
    }
    if rules.part_size_multiple > 1 && !size.is_multiple_of(rules.part_size_multiple) {
        return Err(PlanError::NotAMultiple { vendor, size, multiple: rules.part_size_multiple });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::{GIB, KIB, MIB, TIB};
    use proptest::prelude::*;

    fn oss() -> PartRules {
        PartRules {
            vendor: "OSS",
            min_part_size: 100 * KIB,
            max_part_size: 5 * GIB,
            part_size_multiple: 1,
            max_parts: 10_000,
            first_part_number: 1,
            default_part_size: 8 * MIB,
            min_source_len: 0,
            max_source_len: 48_800 * GIB,
            server_picks_part_size: false,
            needs_total_len: false,
            sequential: false,
        }
    }

    #[test]
    fn too_small_names_vendor_and_minimum() {
        let err = PartPlan::new(&oss(), Some(GIB), PartSize::Exact(64 * KIB)).unwrap_err();
        assert_eq!(err.to_string(), "part size 64 KiB is below OSS's minimum of 100 KiB");
    }

    #[test]
    fn grows_to_fit_part_limit() {
        let plan = PartPlan::new(&oss(), Some(100 * GIB), PartSize::Auto).unwrap();
        assert!(plan.part_count().unwrap() <= 10_000);
        assert_eq!(plan.part_size, (100 * GIB).div_ceil(10_000));
        let exact = PartPlan::new(&oss(), Some(100 * GIB), PartSize::Exact(8 * MIB)).unwrap_err();
        assert!(matches!(exact, PlanError::TooManyParts { parts: 12_800, .. }), "{exact}");
    }

    #[test]
    fn graph_multiple_is_kept_when_growing() {
        let rules = PartRules {
            vendor: "Graph",
            min_part_size: 320 * KIB,
            max_part_size: 60 * MIB,
            part_size_multiple: 320 * KIB,
            max_parts: 100,
            ..oss()
        };
        let plan = PartPlan::new(&rules, Some(GIB), PartSize::AtLeast(320 * KIB)).unwrap();
        assert_eq!(plan.part_size % (320 * KIB), 0);
        assert!(plan.part_count().unwrap() <= 100);
        let err = PartPlan::new(&rules, Some(GIB), PartSize::Exact(MIB)).unwrap_err();
        assert_eq!(err.to_string(), "part size 1 MiB is not a multiple of 320 KiB, as Graph requires");
        let err = PartPlan::new(&rules, Some(10 * GIB), PartSize::Auto).unwrap_err();
        assert!(matches!(err, PlanError::SourceTooLarge { .. }), "{err}");
    }

    #[test]
    fn source_bounds_and_unknown_length() {
        let rules = PartRules { vendor: "Box", min_source_len: 20_000_000, needs_total_len: true, ..oss() };
        let err = PartPlan::new(&rules, Some(MIB), PartSize::Auto).unwrap_err();
        assert_eq!(err.to_string(), "a source of 1 MiB is below Box's minimum of 20000000 bytes for this upload type");
        assert_eq!(
            PartPlan::new(&rules, None, PartSize::Auto).unwrap_err(),
            PlanError::UnknownLength { vendor: "Box" }
        );
        let err = PartPlan::new(&oss(), Some(50_000 * GIB), PartSize::Auto).unwrap_err();
        assert!(matches!(err, PlanError::SourceTooLarge { .. }));
        let err = PartPlan::new(&oss(), Some(GIB), PartSize::Exact(6 * GIB)).unwrap_err();
        assert_eq!(err.to_string(), "part size 6 GiB is above OSS's maximum of 5 GiB");
    }

    #[test]
    fn empty_source_is_one_empty_part_and_numbers_follow_the_vendor() {
        let plan = PartPlan::new(&oss(), Some(0), PartSize::Auto).unwrap();
        assert_eq!(plan.parts().collect::<Vec<_>>(), vec![PartSpec { index: 0, number: 1, offset: 0, len: 0 }]);
        let qs = PartRules { first_part_number: 0, ..oss() };
        let plan = PartPlan::new(&qs, Some(20 * MIB + 1), PartSize::Exact(8 * MIB)).unwrap();
        let parts: Vec<_> = plan.parts().collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].number, 0);
        assert_eq!(parts[2], PartSpec { index: 2, number: 2, offset: 16 * MIB, len: 4 * MIB + 1 });
        assert_eq!(plan.index_of(2), Some(2));
    }

    #[test]
    fn stream_plan_is_bounded_by_part_limit() {
        let plan = PartPlan::new(&oss(), None, PartSize::Auto).unwrap();
        assert_eq!(plan.part_count(), None);
        assert!(plan.part(9_999).is_some());
        assert!(plan.part(10_000).is_none());
    }

    fn rules_strategy() -> impl Strategy<Value = PartRules> {
        (1u64..=4 * MIB, 1u64..=8, 1u32..=10_000, 0u32..=1, prop::sample::select(vec![1u64, 4096, 320 * KIB])).prop_map(
            |(min, span, max_parts, first, multiple)| PartRules {
                vendor: "Test",
                min_part_size: min,
                max_part_size: min * span * 1024,
                part_size_multiple: multiple,
                max_parts,
                first_part_number: first,
                default_part_size: min,
                min_source_len: 0,
                max_source_len: TIB,
                server_picks_part_size: false,
                needs_total_len: false,
                sequential: false,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Every successful plan covers the source exactly, in order, without overlap, and within
        /// the rules; every failure is one of the named rules.
        #[test]
        fn plans_cover_exactly_within_rules(
            rules in rules_strategy(),
            len in prop_oneof![0u64..=10 * MIB, 0u64..=4 * TIB],
            request in prop_oneof![
                Just(PartSize::Auto),
                (1u64..=64 * MIB).prop_map(PartSize::AtLeast),
                (1u64..=64 * MIB).prop_map(PartSize::Exact),
            ],
        ) {
            match PartPlan::new(&rules, Some(len), request) {
                Ok(plan) => {
                    let parts: Vec<_> = plan.parts().collect();
                    prop_assert!(!parts.is_empty());
                    prop_assert!(parts.len() as u64 <= u64::from(rules.max_parts));
                    let mut expected_offset = 0;
                    for (i, p) in parts.iter().enumerate() {
                        prop_assert_eq!(p.offset, expected_offset);
                        prop_assert_eq!(p.index as usize, i);
                        prop_assert_eq!(p.number, rules.first_part_number + i as u32);
                        prop_assert!(p.len <= rules.max_part_size);
                        if i + 1 < parts.len() {
                            prop_assert_eq!(p.len, plan.part_size);
                            prop_assert!(p.len >= rules.min_part_size);
                            prop_assert_eq!(p.len % rules.part_size_multiple, 0);
                        }
                        expected_offset = p.end();
                    }
                    prop_assert_eq!(expected_offset, len);
                    if let PartSize::Exact(n) = request {
                        prop_assert_eq!(plan.part_size, n);
                    }
                    if let PartSize::AtLeast(n) = request {
                        prop_assert!(plan.part_size >= n);
                    }
                }
                Err(PlanError::PartTooSmall { size, min, .. }) => prop_assert!(size < min),
                Err(PlanError::PartTooLarge { size, max, .. }) => prop_assert!(size > max),
                Err(PlanError::NotAMultiple { size, multiple, .. }) => prop_assert!(size % multiple != 0),
                Err(PlanError::TooManyParts { parts, max_parts, .. }) => {
                    prop_assert!(matches!(request, PartSize::Exact(_)));
                    prop_assert!(parts > u64::from(max_parts));
                }
                Err(PlanError::SourceTooLarge { len: l, max, .. }) => prop_assert!(l > max),
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
        }
    }
}
