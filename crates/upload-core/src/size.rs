//! Human-readable byte sizes for error messages and logs.

use std::fmt;

/// Unit sizes.
pub const KIB: u64 = 1024;
/// One mebibyte.
pub const MIB: u64 = 1024 * KIB;
/// One gibibyte.
pub const GIB: u64 = 1024 * MIB;
/// One tebibyte.
pub const TIB: u64 = 1024 * GIB;

/// Displays a byte count exactly: `64 KiB` when it is a whole number of a binary unit, otherwise
/// `20000000 bytes`. Error messages use it so that the number a user reads is the number the
/// vendor documents.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if n >= unit && n.is_multiple_of(unit) {
                return write!(f, "{} {name}", n / unit);
            }
        }
        if n == 1 { f.write_str("1 byte") } else { write!(f, "{n} bytes") }
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_units_and_bytes() {
        assert_eq!(ByteSize(64 * KIB).to_string(), "64 KiB");
        assert_eq!(ByteSize(100 * KIB).to_string(), "100 KiB");
        assert_eq!(ByteSize(5 * GIB).to_string(), "5 GiB");
        assert_eq!(ByteSize(320 * KIB * 3).to_string(), "960 KiB");
        assert_eq!(ByteSize(20_000_000).to_string(), "20000000 bytes");
        assert_eq!(ByteSize(0).to_string(), "0 bytes");
        assert_eq!(ByteSize(1).to_string(), "1 byte");
    }
}
