//! Signature V1: `Authorization: OSS <AccessKeyId>:<base64(HMAC-SHA1(secret, StringToSign))>`.
//!
//! ```text
//! StringToSign = VERB \n Content-MD5 \n Content-Type \n Date \n CanonicalizedOSSHeaders CanonicalizedResource
//! ```
//! The date line is `x-oss-date` when present, else `Date`; a presigned URL puts its absolute
//! `Expires` there. Only `x-oss-*` headers are canonical. The resource is `/bucket/key` with the
//! key as written (not percent-encoded), followed by the sub-resources among the query parameters
//! ([`SUBRESOURCES`]), sorted, with decoded values.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use super::{Credentials, SignableRequest, SigningError};

/// Query parameters that V1 signs (the union of the official SDKs' lists); every other query
/// parameter (paging, `encoding-type`, `prefix`…) is left out of the signature.
pub const SUBRESOURCES: &[&str] = &[
    "acl",
    "append",
    "asyncFetch",
    "bucketInfo",
    "callback",
    "callback-var",
    "cname",
    "comp",
    "continuation-token",
    "cors",
    "delete",
    "endTime",
    "img",
    "inventory",
    "inventoryId",
    "lifecycle",
    "live",
    "location",
    "logging",
    "metaQuery",
    "objectMeta",
    "partNumber",
    "policy",
    "position",
    "qos",
    "referer",
    "regionList",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "requestPayment",
    "resourceGroup",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "sequential",
    "startTime",
    "stat",
    "status",
    "style",
    "styleName",
    "symlink",
    "tagging",
    "transferAcceleration",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "vod",
    "website",
    "worm",
    "wormExtend",
    "wormId",
    "x-oss-ac-forward-allow",
    "x-oss-ac-source-ip",
    "x-oss-ac-subnet-mask",
    "x-oss-ac-vpc-id",
    "x-oss-enable-md5",
    "x-oss-enable-sha1",
    "x-oss-enable-sha256",
    "x-oss-hash-ctx",
    "x-oss-md5-ctx",
    "x-oss-process",
    "x-oss-request-payer",
    "x-oss-traffic-limit",
];

/// Whether V1 signs this query parameter.
pub fn is_subresource(name: &str) -> bool {
    SUBRESOURCES.contains(&name)
}

/// The canonicalized resource: path plus the sorted sub-resources.
pub fn canonical_resource(req: &SignableRequest) -> String {
    let mut resource = req.resource_path();
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

/// The string to sign, with `date` on the date line (the request's date, or a presigned URL's
/// `Expires`).
pub fn string_to_sign(req: &SignableRequest, date: &str) -> String {
    let mut s = String::new();
    s.push_str(&req.method);
    s.push('\n');
    s.push_str(&req.header_value("content-md5").unwrap_or_default());
    s.push('\n');
    s.push_str(&req.header_value("content-type").unwrap_or_default());
    s.push('\n');
    s.push_str(date);
    s.push('\n');
    for (name, value) in req.canonical_headers(|n| n.starts_with("x-oss-")) {
        s.push_str(&name);
        s.push(':');
        s.push_str(&value);
        s.push('\n');
    }
    s.push_str(&canonical_resource(req));
    s
}

/// `base64(HMAC-SHA1(secret, string_to_sign))`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    #[allow(clippy::expect_used)] // HMAC accepts keys of every length: this cannot fail.
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The date line of a header-signed request: `x-oss-date`, else `Date`.
pub fn date_line(req: &SignableRequest) -> Result<String, SigningError> {
    req.header_value("x-oss-date").or_else(|| req.header_value("date")).ok_or(SigningError::MissingDate("Date"))
}

/// The `Authorization` header value. The request must already carry its `Date` (or `x-oss-date`)
/// and, with STS credentials, its `x-oss-security-token` header.
pub fn authorization(credentials: &Credentials, req: &SignableRequest) -> Result<String, SigningError> {
    let sts = string_to_sign(req, &date_line(req)?);
    Ok(format!("OSS {}:{}", credentials.access_key_id, signature(credentials.access_key_secret.expose(), &sts)))
}

/// The query parameters of a V1 presigned URL that expires at `expires` (Unix seconds):
/// `OSSAccessKeyId`, `Expires`, `Signature`, and `security-token` with STS credentials. Add them
/// to the request's own query parameters.
pub fn presign(credentials: &Credentials, req: &SignableRequest, expires: i64) -> Vec<(String, String)> {
    let mut req = req.clone();
    let mut extra = Vec::new();
    if let Some(token) = &credentials.security_token {
        req.query.push(("security-token".into(), token.expose().to_owned()));
        extra.push(("security-token".to_owned(), token.expose().to_owned()));
    }
    let sts = string_to_sign(&req, &expires.to_string());
    let mut out = vec![
        ("OSSAccessKeyId".to_owned(), credentials.access_key_id.clone()),
        ("Expires".to_owned(), expires.to_string()),
        ("Signature".to_owned(), signature(credentials.access_key_secret.expose(), &sts)),
    ];
    out.extend(extra);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Wed, 28 Dec 2022 10:27:41 GMT";

    fn ak() -> Credentials {
        Credentials::new("ak", "sk")
    }

    fn put_nelson() -> SignableRequest {
        SignableRequest::new("PUT", Some("examplebucket"), Some("nelson"))
            .header("Content-MD5", "eB5eJF1ptWaXm4bijSPyxw==")
            .header("Content-Type", "text/html")
            .header("x-oss-meta-author", "alice")
            .header("x-oss-meta-magic", "abracadabra")
            .header("x-oss-date", DATE)
    }

    /// The official go-sdk-v2 / python-sdk-v2 vectors.
    #[test]
    fn official_header_vectors() {
        let req = put_nelson();
        assert_eq!(
            string_to_sign(&req, DATE),
            "PUT\neB5eJF1ptWaXm4bijSPyxw==\ntext/html\nWed, 28 Dec 2022 10:27:41 GMT\n\
             x-oss-date:Wed, 28 Dec 2022 10:27:41 GMT\nx-oss-meta-author:alice\n\
             x-oss-meta-magic:abracadabra\n/examplebucket/nelson"
        );
        assert_eq!(authorization(&ak(), &req).unwrap(), "OSS ak:kSHKmLxlyEAKtZPkJhG9bZb5k7M=");
        assert_eq!(
            authorization(&ak(), &put_nelson().query("acl", "")).unwrap(),
            "OSS ak:/afkugFbmWDQ967j1vr6zygBLQk="
        );

        let get = SignableRequest::new("GET", Some("examplebucket"), None)
            .header("x-oss-date", DATE)
            .query("resourceGroup", "")
            .query("non-resousce", "null");
        assert_eq!(
            string_to_sign(&get, DATE),
            "GET\n\n\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-date:Wed, 28 Dec 2022 10:27:41 GMT\n/examplebucket/?resourceGroup"
        );
        assert_eq!(authorization(&ak(), &get).unwrap(), "OSS ak:vkQmfuUDyi1uDi3bKt67oemssIs=");
        let get = SignableRequest::new("GET", Some("examplebucket"), None)
            .header("x-oss-date", DATE)
            .query("resourceGroup", "")
            .query("acl", "");
        assert_eq!(authorization(&ak(), &get).unwrap(), "OSS ak:x3E5TgOvl/i7PN618s5mEvpJDYk=");
    }

    #[test]
    fn official_presign_vectors() {
        let req = SignableRequest::new("GET", Some("bucket"), Some("key")).query("versionId", "versionId");
        let q = presign(&ak(), &req, 1699807420);
        assert_eq!(string_to_sign(&req, "1699807420"), "GET\n\n\n1699807420\n/bucket/key?versionId=versionId");
        assert_eq!(q[2], ("Signature".into(), "dcLTea+Yh9ApirQ8o8dOPqtvJXQ=".into()));

        let req = SignableRequest::new("GET", Some("bucket"), Some("key+123")).query("versionId", "versionId");
        let q = presign(&ak().with_security_token("token"), &req, 1699808204);
        assert_eq!(q[2], ("Signature".into(), "jzKYRrM5y6Br0dRFPaTGOsbrDhY=".into()));
        assert_eq!(q[3], ("security-token".into(), "token".into()));
    }

    /// Multipart vectors cross-checked against python-sdk-v2's `SignerV1`.
    #[test]
    fn multipart_vectors() {
        let upload_id = "0004B9894A22E5B1888A1E29F823ABCD";
        let base =
            |m: &str| SignableRequest::new(m, Some("examplebucket"), Some("multipart.data")).header("Date", DATE);
        let initiate = base("POST").query("uploads", "").header("Content-Type", "application/octet-stream");
        assert_eq!(
            string_to_sign(&initiate, DATE),
            "POST\n\napplication/octet-stream\nWed, 28 Dec 2022 10:27:41 GMT\n/examplebucket/multipart.data?uploads"
        );
        assert_eq!(authorization(&ak(), &initiate).unwrap(), "OSS ak:KQ3PJnFGaP+UO/zEv21P7CP1qLk=");
        let part = base("PUT").query("partNumber", "1").query("uploadId", upload_id);
        assert_eq!(authorization(&ak(), &part).unwrap(), "OSS ak:fQR6dyr8xbg5LL62JbSgjMnSdBs=");
        let complete = base("POST").query("uploadId", upload_id).header("Content-Type", "application/xml");
        assert_eq!(authorization(&ak(), &complete).unwrap(), "OSS ak:gipnENuic/GVxFK7msypRIVPaGI=");
        // Paging and encoding parameters are not sub-resources.
        let listed = base("GET").query("uploadId", upload_id).query("max-parts", "5").query("encoding-type", "url");
        assert!(
            string_to_sign(&listed, DATE)
                .ends_with("/examplebucket/multipart.data?uploadId=0004B9894A22E5B1888A1E29F823ABCD")
        );
    }

    #[test]
    fn keys_are_signed_as_written() {
        for key in ["a b", "a+b", "100%", "x~y", "what?", "hash#tag", "dir//file", "中文/ファイル"] {
            let req = SignableRequest::new("PUT", Some("b"), Some(key)).header("Date", DATE);
            assert!(string_to_sign(&req, DATE).ends_with(&format!("\n/b/{key}")), "{key}");
        }
    }

    #[test]
    fn missing_date_is_an_error() {
        let req = SignableRequest::new("GET", Some("b"), Some("k"));
        assert_eq!(authorization(&ak(), &req), Err(SigningError::MissingDate("Date")));
    }
}
