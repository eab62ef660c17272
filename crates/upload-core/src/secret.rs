//! Secrets: keys, tokens and URLs that are credentials.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A string that is a credential. `Debug` and `Display` print `"<redacted>"`; the value is only
/// reachable through [`Secret::expose`], so it cannot reach a log by accident. It serializes as
/// the plain string, because checkpoints need it (checkpoint files are owner-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("https://upload.example/session?tempauth=abc");
        assert_eq!(format!("{s:?} {s}"), "\"<redacted>\" <redacted>");
        assert_eq!(s.expose(), "https://upload.example/session?tempauth=abc");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"https://upload.example/session?tempauth=abc\"");
    }
}
