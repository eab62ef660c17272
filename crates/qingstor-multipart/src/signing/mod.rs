//! QingStor's `QS` signature, as pure functions: no I/O, no clock, no HTTP library.
//!
//! ```text
//! Authorization: QS <access_key_id>:<base64(HMAC-SHA256(secret, StringToSign))>
//! StringToSign = VERB \n Content-MD5 \n Content-Type \n Date \n CanonicalizedHeaders CanonicalizedResource
//! ```
//!
//! * The Date line is empty when the request carries `x-qs-date` (which is then signed among the
//!   canonical headers); a presigned URL puts its `expires` there.
//! * Canonical headers are the `x-qs-*` headers, lower-cased, sorted, values trimmed, as sent.
//! * The canonical resource is the **request path as sent** (percent-encoded), prefixed with
//!   `/<bucket>` for virtual-host requests, followed by the signed sub-resources, sorted, with
//!   values decoded once.
//!
//! On path encoding the official SDKs disagree (Go keeps `=`, Python encodes it, JS encodes `/`),
//! and all of them talk to the same service, so the service must sign the path exactly as it
//! received it. This crate therefore sends and signs one deterministic form, [`encode_key`]:
//! every byte except the RFC 3986 unreserved set and `/` percent-encoded with upper-case hex —
//! the form of the documentation's own example (`/mybucket/%28%27this%20is%20test%27%2C%29`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use upload_core::Secret;

/// An access key and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// access_key_id.
    pub access_key_id: String,
    /// secret_access_key (never printed).
    pub secret_access_key: Secret,
}

impl Credentials {
    /// Credentials from their two parts.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self { access_key_id: access_key_id.into(), secret_access_key: Secret::new(secret_access_key) }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .finish()
    }
}

/// Query parameters QingStor signs; all others (`limit`, `part_number_marker`, `prefix`, the
/// presigning parameters…) are left out.
pub const SUBRESOURCES: &[&str] = &[
    "acl",
    "append",
    "cname",
    "cors",
    "delete",
    "image",
    "lifecycle",
    "logging",
    "mirror",
    "notification",
    "part_number",
    "policy",
    "position",
    "replication",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "stats",
    "upload_id",
    "uploads",
    "version_id",
    "versioning",
    "versions",
];

/// Whether QingStor signs this query parameter.
pub fn is_subresource(name: &str) -> bool {
    SUBRESOURCES.contains(&name)
}

/// What a signature covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignableRequest {
    /// Upper-case HTTP method.
    pub method: String,
    /// The path of the canonical resource: the request path as sent (percent-encoded), with
    /// `/<bucket>` in front for a virtual-host request.
    pub path: String,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// Headers as sent, names in any case.
    pub headers: Vec<(String, String)>,
}

impl SignableRequest {
    /// A request for `method` on the canonical path `path`.
    pub fn new(method: &str, path: &str) -> Self {
        Self { method: method.to_ascii_uppercase(), path: path.to_owned(), ..Self::default() }
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

    /// The first value of a header (case-insensitive), trimmed.
    pub fn header_value(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
    }
}

/// The path form this crate sends and signs: RFC 3986 unreserved bytes and `/` as they are,
/// everything else `%XX` with upper-case hex.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 3 / 2);
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonicalized resource: the path and the sorted sub-resources.
pub fn canonical_resource(req: &SignableRequest) -> String {
    let mut resource = if req.path.is_empty() { "/".to_owned() } else { req.path.clone() };
    let mut subs: Vec<(&str, &str)> =
        req.query.iter().filter(|(n, _)| is_subresource(n)).map(|(n, v)| (n.as_str(), v.as_str())).collect();
    subs.sort();
    for (i, (name, value)) in subs.iter().enumerate() {
        resource.push(if i == 0 { '?' } else { '&' });
        resource.push_str(name);
        if !value.is_empty() {
            resource.push('=');
            resource.push_str(value);
        }
    }
    resource
}

/// The canonicalized `x-qs-*` header lines.
fn canonical_headers(req: &SignableRequest) -> String {
    let mut names: Vec<String> =
        req.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).filter(|n| n.starts_with("x-qs-")).collect();
    names.sort();
    names.dedup();
    names.into_iter().map(|n| format!("{n}:{}\n", req.header_value(&n).unwrap_or_default())).collect()
}

/// The string to sign with `date` on the date line: see [`date_line`] for header signing; a
/// presigned URL puts its `expires` there (even when `x-qs-date` is present, as the Go SDK's
/// vector shows).
pub fn string_to_sign(req: &SignableRequest, date: &str) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}{}",
        req.method,
        req.header_value("content-md5").unwrap_or_default(),
        req.header_value("content-type").unwrap_or_default(),
        date,
        canonical_headers(req),
        canonical_resource(req)
    )
}

/// `base64(HMAC-SHA256(secret, string_to_sign))`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    #[allow(clippy::expect_used)] // HMAC accepts keys of every length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The date line of a header-signed request: empty when `x-qs-date` is present (it is then
/// signed among the `x-qs-*` headers), otherwise the `Date` header.
pub fn date_line(req: &SignableRequest) -> String {
    if req.header_value("x-qs-date").is_some() { String::new() } else { req.header_value("date").unwrap_or_default() }
}

/// The `Authorization` header value for a request carrying `Date` or `x-qs-date`.
pub fn authorization(credentials: &Credentials, req: &SignableRequest) -> String {
    let sts = string_to_sign(req, &date_line(req));
    format!("QS {}:{}", credentials.access_key_id, signature(credentials.secret_access_key.expose(), &sts))
}

/// The query parameters of a presigned URL that expires at `expires` (Unix seconds):
/// `access_key_id`, `expires` and `signature` (decoded; percent-encode it in the URL).
pub fn presign(credentials: &Credentials, req: &SignableRequest, expires: i64) -> Vec<(String, String)> {
    let sts = string_to_sign(req, &expires.to_string());
    vec![
        ("access_key_id".to_owned(), credentials.access_key_id.clone()),
        ("expires".to_owned(), expires.to_string()),
        ("signature".to_owned(), signature(credentials.secret_access_key.expose(), &sts)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "Mon, 01 Jan 0001 00:00:00 GMT";
    const U: &str = "fde133b5f6d932cd9c79bac3c7318da1";

    fn go() -> Credentials {
        Credentials::new("ENV_ACCESS_KEY_ID", "ENV_SECRET_ACCESS_KEY")
    }

    fn v1_request() -> SignableRequest {
        SignableRequest::new("GET", "/")
            .query("acl", "")
            .query("upload_id", U)
            .query("part_number", "0")
            .query("other", "abc")
            .header("Date", D)
            .header("X-QS-Test-2", "Test 2")
            .header("X-QS-Test-1", "Test 1")
    }

    /// The Go SDK's signer vectors.
    #[test]
    fn go_vectors() {
        let req = v1_request();
        assert_eq!(
            string_to_sign(&req, D),
            format!("GET\n\n\n{D}\nx-qs-test-1:Test 1\nx-qs-test-2:Test 2\n/?acl&part_number=0&upload_id={U}")
        );
        assert_eq!(authorization(&go(), &req), "QS ENV_ACCESS_KEY_ID:bvglZF9iMOv1RaCTxPYWxexmt1UN2m5WKngYnhDEp2c=");
        let with_date = v1_request().header("X-QS-Date", D);
        assert_eq!(
            authorization(&go(), &with_date),
            "QS ENV_ACCESS_KEY_ID:qkY+tOMdqfDAVv+ZBtlWeEBxlbyIKaQmj5lQlylENzo="
        );
        let chinese = SignableRequest::new("GET", &format!("/bucket-name/{}", encode_key("中文"))).header("Date", D);
        assert_eq!(string_to_sign(&chinese, D), format!("GET\n\n\n{D}\n/bucket-name/%E4%B8%AD%E6%96%87"));
        assert_eq!(authorization(&go(), &chinese), "QS ENV_ACCESS_KEY_ID:XsTXX50kzqBf92zLG1aIUIJmZ0hqIHoaHgkumwnV3fs=");

        let mut query = v1_request();
        query.query.retain(|(n, _)| n != "other");
        query.headers.retain(|(n, _)| n != "Date");
        assert_eq!(presign(&go(), &query, 3600)[2].1, "GRL3p3NOgHR9CQygASvyo344vdnO1hFke6ZvQ5mDVHM=");
        let query = query.header("X-QS-Date", D);
        assert_eq!(presign(&go(), &query, 3600)[2].1, "plFxMFP1EzKVtdF+bApT8rhW9AUAIWfmZcOGH3m27t0=");
        let disposition = SignableRequest::new("GET", "/").query(
            "response-content-disposition",
            "attachment; filename=\"%E4%B8%AD%E6%96%87.jpg\"; filename*=utf-8''%E4%B8%AD%E6%96%87.jpg",
        );
        assert_eq!(presign(&go(), &disposition, 3600)[2].1, "XPMfomqMYu7ej62eqitVcPJyZMvfi72ZxXwGpPWv07I=");

        let cname = SignableRequest::new("PUT", "/bucket-name")
            .query("cname", "")
            .header("Date", D)
            .header("X-QS-Test-2", "Test 2")
            .header("X-QS-Test-1", "Test 1");
        assert_eq!(authorization(&go(), &cname), "QS ENV_ACCESS_KEY_ID:Kqc4/+6T7zfSrUPgkvswHbtL4ESch9vOVQP0nPwlkBs=");
        let vhost = SignableRequest::new("GET", "/bucket-name/").query("acl", "").header("Date", D);
        assert_eq!(authorization(&go(), &vhost), "QS ENV_ACCESS_KEY_ID:y0rP8LnEGUiV/JcuCMHZC4OMRZNzKRw9w7AnqehJZW8=");
        let json = SignableRequest::new("GET", "/aaa/bbb/ccc-ddd")
            .query("upload_id", "0")
            .header("Content-Type", "application/json")
            .header("Date", "Thu, 01 Sep 2016 15:30:00 GMT");
        assert_eq!(
            authorization(&Credentials::new("ACCESS_KEY_ID", "SECRET_ACCESS_KEY"), &json),
            "QS ACCESS_KEY_ID:pA7G9qo4iQ6YHu7p4fX9Wcg4V9S6Mcgvz7p/0wEdz78="
        );
    }

    /// The Python, JS and Java SDKs' vectors.
    #[test]
    fn python_js_and_java_vectors() {
        let py = Credentials::new("ACCESS_KEY_ID", "SECRET_ACCESS_KEY");
        let p1 = SignableRequest::new("GET", "/test_bucket/%E4%B8%AD%E6%96%87%E6%B5%8B%E8%AF%95.json")
            .query("test_params_1", "test_val")
            .query("test_params_2", "中文")
            .header("Content-Type", "application/json")
            .header("Date", "Wed, 10 Dec 2014 17:20:31 GMT")
            .header("x-qs-copy-source", "%E4%B8%AD%E6%96%87%E6%B5%8B%E8%AF%95")
            .header("x-qs-fetch-source", "https://google.com/logo.png")
            .header("x-qs-test-header1", "test");
        assert_eq!(authorization(&py, &p1), "QS ACCESS_KEY_ID:L1Aiatm0YRH9qk8/4phJYtOlJiyHvq+ejH3sRlyUusI=");
        let mut p2 = p1.clone();
        p2.headers.retain(|(n, _)| n != "Content-Type" && n != "Date");
        assert_eq!(presign(&py, &p2, 100)[2].1, "y7/aT93vwQ3UMGhAnrYJCQbuu9gqj5j9kFG/4Ni/T7Q=");

        let js = Credentials::new("test_key", "test_secret");
        let base = || {
            SignableRequest::new("PUT", "/test_bucket/test_object.jpg")
                .query("acl", "")
                .query("upload_id", "test_upload_id")
                .header("x-qs-a", "test-a")
                .header("x-qs-a-abc", "test-abc")
                .header("x-qs-z", "test-z")
        };
        let j1 = base().header("Content-Type", "image/jpeg").header("x-qs-date", "Fri, 01 Nov 2019 07:40:08 GMT");
        assert_eq!(authorization(&js, &j1), "QS test_key:ZwavbCq3ylBMlU3fb5EFOabtNyUYWzqi2e0rQBTHkcM=");
        assert_eq!(presign(&js, &base(), 1572592959)[2].1, "HjroQB6ac19fmFt/1rOMHMco0eJ17gGAGexLYD98u88=");
        assert_eq!(
            signature("test_secret", &string_to_sign(&base(), "")),
            "L6q5iKoyWbQky0T5/MYELz5jAFecGbvLDyjLdz6fClw="
        );

        let java = SignableRequest::new("PUT", "/test/test/test.jpg")
            .header("Content-MD5", "Content-MD5")
            .header("Content-Type", "image/jpeg")
            .header("Date", "Thu, 06 Dec 2018 06:47:43 GMT");
        assert_eq!(
            signature(
                "VdVyOLO6oG7wzzilGbuuqiDrwR1K0NgD0DzFaNKX",
                &string_to_sign(&java, "Thu, 06 Dec 2018 06:47:43 GMT")
            ),
            "PiwbpsStHI4p3OF3Y68bX9TV72OEOFbgqJGkmu7mN8E="
        );
    }

    /// Multipart-shaped vectors derived with the algorithm that reproduces all of the above.
    #[test]
    fn multipart_vectors() {
        let docs = Credentials::new("HOKUMWFMUIDFDIWEKLCA", "YD0vaP82NQX6R7t0lZVtNtC1JsnkGxgFcXAiwLCN");
        let d = "Sun, 16 Aug 2015 13:25:10 GMT";
        let u = "4d26b37a469230619604ecdc0e314782";
        let object = |m: &str| SignableRequest::new(m, "/mybucket/large-object");
        let sig = |req: &SignableRequest| {
            authorization(&docs, &req.clone().header("Date", d)).split(':').nth(1).unwrap().to_owned()
        };
        assert_eq!(sig(&object("POST").query("uploads", "")), "PVqYVdiwSj0UEaW3PaKY6HK7TRAOZSmMG6I3nyL9DPU=");
        let part = object("PUT")
            .query("part_number", "0")
            .query("upload_id", u)
            .header("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww==")
            .header("Content-Type", "application/octet-stream");
        assert_eq!(sig(&part), "2eubYBpMgWqINiV4aafqiRyKWMJVY97I/C179KxdzPc=");
        let complete = object("POST").query("upload_id", u).header("Content-Type", "application/json");
        assert_eq!(sig(&complete), "OncUcDYfJ78KGTpzB36ciT8o7wmAb4QWAySJjcPREGM=");
        assert_eq!(sig(&object("DELETE").query("upload_id", u)), "n2oWJZh/BmUymfvkDVb+UiHJb9B44lHEis6LGBKveUw=");
        let list = object("GET").query("upload_id", u).query("limit", "10").query("part_number_marker", "3");
        assert_eq!(sig(&list), "+P/wKENUbAv6KrZjK8bpGfg/6KfA0o1DOeFX36gPQ2s=");
        assert_eq!(
            sig(&SignableRequest::new("GET", "/mybucket/").query("uploads", "")),
            "1k8CSJ7S7kjWy+rfbbVHSKo7RrIRgwzG/JtqNKpq5kk="
        );
        let dated = object("PUT")
            .query("part_number", "1")
            .query("upload_id", u)
            .header("Content-Type", "application/octet-stream")
            .header("x-qs-date", d);
        assert_eq!(sig(&dated), "lofqO5Uu/fmJWBKAFmbaPQNdHBBb8ELbiCGTzWUD2ek=");
        let chinese = SignableRequest::new("PUT", &format!("/mybucket/{}", encode_key("中文分块测试")))
            .query("part_number", "2")
            .query("upload_id", u)
            .header("Content-Type", "application/octet-stream");
        assert_eq!(sig(&chinese), "kNasy7bDQj+/TyaGGpe13ytU6WxjO60Ds3BKphbc+rE=");
        let presigned = object("PUT").query("part_number", "3").query("upload_id", u);
        assert_eq!(presign(&docs, &presigned, 1479107162)[2].1, "FveuQPYoJuiE7568n2jLlGKB52RLZ0BK0VPulmghj9Y=");
    }

    #[test]
    fn tricky_keys_are_encoded_once_and_deterministically() {
        assert_eq!(encode_key("('this is test',)"), "%28%27this%20is%20test%27%2C%29");
        assert_eq!(encode_key("a+b%c~d?e#f=g"), "a%2Bb%25c~d%3Fe%23f%3Dg");
        assert_eq!(encode_key("dir//x"), "dir//x");
        assert_eq!(encode_key("中"), "%E4%B8%AD");
    }

    #[test]
    fn credentials_are_redacted() {
        let shown = format!("{:?}", Credentials::new("AKID", "very-secret"));
        assert!(shown.contains("AKID") && !shown.contains("very-secret"), "{shown}");
    }
}
