//! Signature V4: `OSS4-HMAC-SHA256`.
//!
//! ```text
//! CanonicalRequest = VERB \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n AdditionalHeaders \n HashedPayload
//! StringToSign     = "OSS4-HMAC-SHA256" \n x-oss-date \n yyyymmdd/region/oss/aliyun_v4_request \n hex(sha256(CanonicalRequest))
//! SigningKey       = HMAC chain of "aliyun_v4"+secret over yyyymmdd, region, "oss", "aliyun_v4_request"
//! ```
//! The canonical URI is `/bucket/key` RFC 3986-encoded with `/` kept (the bucket is there even
//! for virtual-host requests); every query parameter is signed, encoded with `/` encoded too;
//! canonical headers are the `x-oss-*` headers, `content-type`, `content-md5`, and the headers
//! named in AdditionalHeaders.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::{Credentials, SignableRequest, SigningError, uri_encode};

/// The algorithm name.
pub const ALGORITHM: &str = "OSS4-HMAC-SHA256";
/// The payload hash OSS accepts for header-signed requests.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The product in the scope.
pub const PRODUCT: &str = "oss";
/// Longest validity of a V4 presigned URL (7 days).
pub const MAX_EXPIRES_SECS: u64 = 604_800;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    #[allow(clippy::expect_used)] // HMAC accepts keys of every length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    upload_core::hash::hex(bytes)
}

/// Whether V4 signs a header whatever AdditionalHeaders says.
fn signed_by_default(name: &str) -> bool {
    name.starts_with("x-oss-") || name == "content-type" || name == "content-md5"
}

/// AdditionalHeaders as the official SDKs send them: lower-cased, sorted, without duplicates,
/// without the headers signed anyway, and without the ones the request does not carry.
pub fn additional_headers(req: &SignableRequest, names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && !signed_by_default(n) && req.header_value(n).is_some())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The canonical query: every parameter, encoded (with `/` encoded), sorted by encoded name,
/// `name=value` or a bare `name` when the value is empty.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(n, v)| (uri_encode(n, false), uri_encode(v, false))).collect();
    pairs.sort();
    pairs.into_iter().map(|(n, v)| if v.is_empty() { n } else { format!("{n}={v}") }).collect::<Vec<_>>().join("&")
}

/// The canonical request. `additional` must be normalised ([`additional_headers`]) for a client;
/// a server passes the list as received.
pub fn canonical_request(req: &SignableRequest, additional: &[String], hashed_payload: &str) -> String {
    let headers = req.canonical_headers(|n| signed_by_default(n) || additional.iter().any(|a| a == n));
    let mut s = String::new();
    s.push_str(&req.method);
    s.push('\n');
    s.push_str(&uri_encode(&req.resource_path(), true));
    s.push('\n');
    s.push_str(&canonical_query(&req.query));
    s.push('\n');
    for (name, value) in headers {
        s.push_str(&name);
        s.push(':');
        s.push_str(&value);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&additional.join(";"));
    s.push('\n');
    s.push_str(hashed_payload);
    s
}

/// `yyyymmdd/region/oss/aliyun_v4_request`.
pub fn scope(date: &str, region: &str) -> String {
    format!("{date}/{region}/{PRODUCT}/aliyun_v4_request")
}

/// The string to sign for a request signed at `datetime` (`yyyymmddTHHMMSSZ`).
pub fn string_to_sign(datetime: &str, region: &str, canonical_request: &str) -> Result<String, SigningError> {
    let date = date_of(datetime)?;
    let hash = hex(&Sha256::digest(canonical_request.as_bytes()));
    Ok(format!("{ALGORITHM}\n{datetime}\n{}\n{hash}", scope(date, region)))
}

fn date_of(datetime: &str) -> Result<&str, SigningError> {
    let ok = datetime.len() == 16
        && datetime.as_bytes()[8] == b'T'
        && datetime.ends_with('Z')
        && datetime[..8].bytes().all(|b| b.is_ascii_digit())
        && datetime[9..15].bytes().all(|b| b.is_ascii_digit());
    if ok { Ok(&datetime[..8]) } else { Err(SigningError::BadDate(datetime.to_owned())) }
}

/// The signing key of a secret for a day and region.
pub fn signing_key(secret: &str, date: &str, region: &str) -> [u8; 32] {
    let k_date = hmac(format!("aliyun_v4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_product = hmac(&k_region, PRODUCT.as_bytes());
    hmac(&k_product, b"aliyun_v4_request")
}

/// Lower-case hex HMAC-SHA256 of the string to sign.
pub fn signature(secret: &str, region: &str, string_to_sign: &str) -> Result<String, SigningError> {
    let datetime = string_to_sign.lines().nth(1).unwrap_or_default();
    let key = signing_key(secret, date_of(datetime)?, region);
    Ok(hex(&hmac(&key, string_to_sign.as_bytes())))
}

/// The `Authorization` header value. The request must carry `x-oss-date` and
/// `x-oss-content-sha256` (and `x-oss-security-token` with STS credentials).
pub fn authorization(
    credentials: &Credentials,
    req: &SignableRequest,
    region: &str,
    additional: &[String],
) -> Result<String, SigningError> {
    if region.is_empty() {
        return Err(SigningError::MissingRegion);
    }
    let datetime = req.header_value("x-oss-date").ok_or(SigningError::MissingDate("x-oss-date"))?;
    let additional = additional_headers(req, additional);
    let payload = req.header_value("x-oss-content-sha256").unwrap_or_else(|| UNSIGNED_PAYLOAD.to_owned());
    let sts = string_to_sign(&datetime, region, &canonical_request(req, &additional, &payload))?;
    let sig = signature(credentials.access_key_secret.expose(), region, &sts)?;
    let credential = format!("{}/{}", credentials.access_key_id, scope(date_of(&datetime)?, region));
    Ok(if additional.is_empty() {
        format!("{ALGORITHM} Credential={credential},Signature={sig}")
    } else {
        format!("{ALGORITHM} Credential={credential},AdditionalHeaders={},Signature={sig}", additional.join(";"))
    })
}

/// The query parameters of a V4 presigned URL signed at `datetime` and valid for `expires`
/// seconds: `x-oss-signature-version`, `x-oss-credential`, `x-oss-date`, `x-oss-expires`, the
/// optional `x-oss-additional-headers` and `x-oss-security-token`, and `x-oss-signature` last.
/// Add them to the request's own query parameters.
pub fn presign(
    credentials: &Credentials,
    req: &SignableRequest,
    region: &str,
    datetime: &str,
    expires: u64,
    additional: &[String],
) -> Result<Vec<(String, String)>, SigningError> {
    if region.is_empty() {
        return Err(SigningError::MissingRegion);
    }
    let date = date_of(datetime)?;
    let additional = additional_headers(req, additional);
    let mut added = vec![
        ("x-oss-signature-version".to_owned(), ALGORITHM.to_owned()),
        ("x-oss-credential".to_owned(), format!("{}/{}", credentials.access_key_id, scope(date, region))),
        ("x-oss-date".to_owned(), datetime.to_owned()),
        ("x-oss-expires".to_owned(), expires.to_string()),
    ];
    if !additional.is_empty() {
        added.push(("x-oss-additional-headers".to_owned(), additional.join(";")));
    }
    if let Some(token) = &credentials.security_token {
        added.push(("x-oss-security-token".to_owned(), token.expose().to_owned()));
    }
    let mut signed = req.clone();
    signed.query.extend(added.iter().cloned());
    let sts = string_to_sign(datetime, region, &canonical_request(&signed, &additional, UNSIGNED_PAYLOAD))?;
    added.push(("x-oss-signature".to_owned(), signature(credentials.access_key_secret.expose(), region, &sts)?));
    Ok(added)
}

/// `yyyymmddTHHMMSSZ` for a Unix time.
pub fn format_datetime(unix_secs: i64) -> String {
    chrono::DateTime::from_timestamp(unix_secs, 0).unwrap_or_default().format("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ak() -> Credentials {
        Credentials::new("ak", "sk")
    }

    /// The request of go-sdk-v2's TestV4AuthHeader.
    fn sdk_request(datetime: &str) -> SignableRequest {
        SignableRequest::new("PUT", Some("bucket"), Some("1234+-/123/1.txt"))
            .header("x-oss-head1", "value")
            .header("abc", "value")
            .header("ZAbc", "value")
            .header("XYZ", "value")
            .header("content-type", "text/plain")
            .header("x-oss-content-sha256", "UNSIGNED-PAYLOAD")
            .header("x-oss-date", datetime)
            .query("param1", "value1")
            .query("+param1", "value3")
            .query("|param1", "value4")
            .query("+param2", "")
            .query("|param2", "")
            .query("param2", "")
    }

    #[test]
    fn official_header_vectors() {
        let t = format_datetime(1702743657);
        assert_eq!(t, "20231216T162057Z");
        let req = sdk_request(&t);
        let canonical = canonical_request(&req, &[], UNSIGNED_PAYLOAD);
        assert_eq!(
            canonical,
            "PUT\n/bucket/1234%2B-/123/1.txt\n\
             %2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2\n\
             content-type:text/plain\nx-oss-content-sha256:UNSIGNED-PAYLOAD\nx-oss-date:20231216T162057Z\n\
             x-oss-head1:value\n\n\nUNSIGNED-PAYLOAD"
        );
        assert_eq!(
            string_to_sign(&t, "cn-hangzhou", &canonical).unwrap(),
            "OSS4-HMAC-SHA256\n20231216T162057Z\n20231216/cn-hangzhou/oss/aliyun_v4_request\n\
             f4613657f1b108998e8dbd10a1aa5da621dc2c6e02c9ddec0f163664848704c4"
        );
        assert_eq!(
            authorization(&ak(), &req, "cn-hangzhou", &[]).unwrap(),
            "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,\
             Signature=e21d18daa82167720f9b1047ae7e7f1ce7cb77a31e8203a7d5f4624fa0284afe"
        );

        let req = sdk_request(&format_datetime(1702747512));
        let expected = "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,\
                        AdditionalHeaders=abc;zabc,\
                        Signature=4a4183c187c07c8947db7620deb0a6b38d9fbdd34187b6dbaccb316fa251212f";
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(authorization(&ak(), &req, "cn-hangzhou", &names(&["ZAbc", "abc"])).unwrap(), expected);
        let noisy = names(&["x-oss-no-exist", "ZAbc", "x-oss-head1", "abc"]);
        assert_eq!(authorization(&ak(), &req, "cn-hangzhou", &noisy).unwrap(), expected);

        let req = sdk_request(&format_datetime(1702784856)).header("x-oss-security-token", "token");
        assert_eq!(
            authorization(&ak().with_security_token("token"), &req, "cn-hangzhou", &[]).unwrap(),
            "OSS4-HMAC-SHA256 Credential=ak/20231217/cn-hangzhou/oss/aliyun_v4_request,\
             Signature=b94a3f999cf85bcdc00d332fbd3734ba03e48382c36fa4d5af5df817395bd9ea"
        );
    }

    #[test]
    fn official_presign_vector() {
        let req = SignableRequest::new("PUT", Some("bucket"), Some("1234+-/123/1.txt"))
            .header("x-oss-head1", "value")
            .header("abc", "value")
            .header("ZAbc", "value")
            .header("XYZ", "value")
            .header("content-type", "application/octet-stream")
            .query("param1", "value1")
            .query("+param1", "value3")
            .query("|param1", "value4")
            .query("+param2", "")
            .query("|param2", "")
            .query("param2", "");
        let q = presign(&ak(), &req, "cn-hangzhou", &format_datetime(1702781677), 599, &[]).unwrap();
        assert_eq!(q[1].1, "ak/20231217/cn-hangzhou/oss/aliyun_v4_request");
        assert_eq!(
            q.last().unwrap(),
            &(
                "x-oss-signature".to_owned(),
                "a39966c61718be0d5b14e668088b3fa07601033f6518ac7b523100014269c0fe".to_owned()
            )
        );
    }

    /// The documentation's example, as reproduced by reqsign's golden test.
    #[test]
    fn documentation_vector() {
        let creds = Credentials::new("testid", "yourAccessKeySecret");
        let req = SignableRequest::new("PUT", Some("examplebucket"), Some("exampleobject"))
            .header("Content-Disposition", "attachment")
            .header("Content-Length", "3")
            .header("Content-MD5", "ICy5YqxZB1uWSwcVLSNLcA==")
            .header("Content-Type", "text/plain")
            .header("x-oss-content-sha256", "UNSIGNED-PAYLOAD")
            .header("x-oss-date", "20250411T064124Z");
        let additional = additional_headers(&req, &["content-disposition".into(), "content-length".into()]);
        let canonical = canonical_request(&req, &additional, UNSIGNED_PAYLOAD);
        assert_eq!(
            hex(&Sha256::digest(canonical.as_bytes())),
            "c46d96390bdbc2d739ac9363293ae9d710b14e48081fcb22cd8ad54b63136eca"
        );
        let auth = authorization(&creds, &req, "cn-hangzhou", &additional).unwrap();
        assert!(auth.ends_with("Signature=d3694c2dfc5371ee6acd35e88c4871ac95a7ba01d3a2f476768fe61218590097"), "{auth}");
    }

    /// Multipart vectors cross-checked against python-sdk-v2's `SignerV4`.
    #[test]
    fn multipart_vectors() {
        let base = |m: &str| {
            SignableRequest::new(m, Some("examplebucket"), Some("multipart.data"))
                .header("x-oss-content-sha256", UNSIGNED_PAYLOAD)
                .header("x-oss-date", "20221228T102741Z")
        };
        let part = base("PUT").query("partNumber", "1").query("uploadId", "0004B9894A22E5B1888A1E29F823ABCD");
        assert_eq!(
            canonical_request(&part, &[], UNSIGNED_PAYLOAD),
            "PUT\n/examplebucket/multipart.data\npartNumber=1&uploadId=0004B9894A22E5B1888A1E29F823ABCD\n\
             x-oss-content-sha256:UNSIGNED-PAYLOAD\nx-oss-date:20221228T102741Z\n\n\nUNSIGNED-PAYLOAD"
        );
        assert!(
            authorization(&ak(), &part, "cn-hangzhou", &[])
                .unwrap()
                .ends_with("Signature=075d48091115dea2f1f250fbce10840489bee58da5ef74e1d74ba6a62a414913")
        );
        let initiate = base("POST")
            .query("uploads", "")
            .query("encoding-type", "url")
            .header("Content-Type", "application/octet-stream");
        assert!(
            authorization(&ak(), &initiate, "cn-hangzhou", &[])
                .unwrap()
                .ends_with("Signature=e77ccc53bdd2ee52fd018b6163168ed38ea8a30d38032b0750d8e1a63c811385")
        );
    }

    #[test]
    fn tricky_keys_are_encoded_in_the_canonical_uri() {
        for (key, uri) in [
            ("a b", "/b/a%20b"),
            ("a+b", "/b/a%2Bb"),
            ("100%", "/b/100%25"),
            ("x~y", "/b/x~y"),
            ("what?#", "/b/what%3F%23"),
            ("dir//file", "/b/dir//file"),
            ("中", "/b/%E4%B8%AD"),
        ] {
            let req = SignableRequest::new("GET", Some("b"), Some(key));
            assert_eq!(canonical_request(&req, &[], UNSIGNED_PAYLOAD).lines().nth(1), Some(uri), "{key}");
        }
    }

    #[test]
    fn errors_name_what_is_missing() {
        let req = SignableRequest::new("GET", Some("b"), Some("k"));
        assert_eq!(authorization(&ak(), &req, "cn-hangzhou", &[]), Err(SigningError::MissingDate("x-oss-date")));
        assert_eq!(authorization(&ak(), &req, "", &[]), Err(SigningError::MissingRegion));
        let req = req.header("x-oss-date", "2023-12-16");
        assert_eq!(
            authorization(&ak(), &req, "cn-hangzhou", &[]).unwrap_err().to_string(),
            "x-oss-date \"2023-12-16\" is not in the form yyyymmddTHHMMSSZ"
        );
    }
}
