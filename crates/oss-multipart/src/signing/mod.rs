//! Request signing, as pure functions: no I/O, no clock, no HTTP library.
//!
//! A [`SignableRequest`] describes what a signature covers (method, bucket, decoded key, decoded
//! query pairs, headers). [`v1`] computes the `OSS <ak>:<signature>` header (HMAC-SHA1) and V1
//! presigned URLs; [`v4`] computes `OSS4-HMAC-SHA256` headers and V4 presigned URLs. The client
//! and the emulator both use these functions, which is why CI also runs the official Python SDKs
//! against the emulator: a bug shared by both sides would otherwise go unseen.

pub mod v1;
pub mod v4;

use std::fmt;

use upload_core::Secret;

/// An access key, its secret and an optional STS token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// AccessKeyId.
    pub access_key_id: String,
    /// AccessKeySecret (never printed).
    pub access_key_secret: Secret,
    /// STS security token (never printed), sent as `x-oss-security-token`.
    pub security_token: Option<Secret>,
}

impl Credentials {
    /// Long-term credentials.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: Secret::new(access_key_secret),
            security_token: None,
        }
    }

    /// Adds an STS token.
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(Secret::new(token));
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .finish()
    }
}

/// What a signature covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignableRequest {
    /// Upper-case HTTP method.
    pub method: String,
    /// Bucket, for bucket and object requests.
    pub bucket: Option<String>,
    /// Object key, decoded (as the user wrote it), for object requests.
    pub key: Option<String>,
    /// Query parameters, decoded, in any order. An empty value is a bare `name`.
    pub query: Vec<(String, String)>,
    /// Headers as sent, names in any case.
    pub headers: Vec<(String, String)>,
}

impl SignableRequest {
    /// A request for `method` on `bucket`/`key`.
    pub fn new(method: &str, bucket: Option<&str>, key: Option<&str>) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            bucket: bucket.map(str::to_owned),
            key: key.map(str::to_owned),
            ..Self::default()
        }
    }

    /// Adds a query parameter.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The value of a header (case-insensitive); repeated headers are joined with `,`.
    pub fn header_value(&self, name: &str) -> Option<String> {
        let values: Vec<&str> =
            self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()).collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// `/bucket/key`, `/bucket/` or `/`, with the key decoded.
    pub fn resource_path(&self) -> String {
        match (&self.bucket, &self.key) {
            (Some(b), Some(k)) => format!("/{b}/{k}"),
            (Some(b), None) => format!("/{b}/"),
            _ => "/".to_owned(),
        }
    }

    /// Lower-cased, trimmed `x-oss-*` headers (plus `extra` names), sorted, repeats joined with
    /// `,`: the canonical header lines of both signature versions.
    fn canonical_headers(&self, include: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut names: Vec<String> =
            self.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).filter(|n| include(n)).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let v = self.header_value(&n).unwrap_or_default();
                (n, v)
            })
            .collect()
    }
}

/// RFC 3986 encoding as OSS V4 wants it: every byte but `A-Z a-z 0-9 - . _ ~` as `%XX` (upper
/// case), and `/` kept when `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why a request cannot be signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The request carries neither `Date` nor `x-oss-date` (V1), or no `x-oss-date` (V4).
    #[error("the request has no {0} header to sign")]
    MissingDate(&'static str),
    /// V4 needs the region ID (such as `cn-hangzhou`).
    #[error("V4 signing needs a region ID such as cn-hangzhou")]
    MissingRegion,
    /// A V4 `x-oss-date` that is not `yyyymmddTHHMMSSZ`.
    #[error("x-oss-date {0:?} is not in the form yyyymmddTHHMMSSZ")]
    BadDate(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encoding_of_tricky_keys() {
        assert_eq!(uri_encode("1234+-/123/1.txt", true), "1234%2B-/123/1.txt");
        assert_eq!(uri_encode("a b%c~d?e#f", true), "a%20b%25c~d%3Fe%23f");
        assert_eq!(uri_encode("dir//x", true), "dir//x");
        assert_eq!(uri_encode("dir//x", false), "dir%2F%2Fx");
        assert_eq!(uri_encode("中文", true), "%E4%B8%AD%E6%96%87");
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials::new("AKID", "very-secret").with_security_token("sts-token");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKID") && !shown.contains("very-secret") && !shown.contains("sts-token"), "{shown}");
    }
}
