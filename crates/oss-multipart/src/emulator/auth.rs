//! Signature verification as OSS does it: V1 and V4, header and presigned, with the 15-minute
//! clock-skew rule, and errors that echo the server's StringToSign.

use std::collections::HashMap;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::OssFault;
use crate::signing::{SignableRequest, v1, v4};

/// Largest clock difference OSS accepts.
pub(crate) const MAX_SKEW_SECS: i64 = 900;

/// The access key a request proved it holds.
pub(crate) struct Verified(pub(crate) String);

fn hex_bytes(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}

fn mismatch(ak: &str, provided: &str, string_to_sign: &str, canonical: Option<String>) -> OssFault {
    let mut f = OssFault::new(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
        .ec("0002-00000040")
        .extra("OSSAccessKeyId", ak)
        .extra("SignatureProvided", provided)
        .extra("StringToSign", string_to_sign)
        .extra("StringToSignBytes", &hex_bytes(string_to_sign));
    if let Some(c) = canonical {
        f = f.extra("CanonicalRequest", &c);
    }
    f
}

fn skewed(request_time: DateTime<Utc>, now: DateTime<Utc>) -> OssFault {
    OssFault::new(
        403,
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
    )
    .ec("0002-00000504")
    .extra("MaxAllowedSkewMilliseconds", "900000")
    .extra("RequestTime", &request_time.format("%Y-%m-%dT%H:%M:%S.000Z").to_string())
    .extra("ServerTime", &now.format("%Y-%m-%dT%H:%M:%S.000Z").to_string())
}

fn check_skew(t: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), OssFault> {
    if (t - now).num_seconds().abs() > MAX_SKEW_SECS { Err(skewed(t, now)) } else { Ok(()) }
}

fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%a, %d %b %Y %H:%M:%S GMT").ok().map(|t| t.and_utc())
}

fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y%m%dT%H%M%SZ").ok().map(|t| t.and_utc())
}

fn secret<'a>(keys: &'a HashMap<String, String>, ak: &str) -> Result<&'a str, OssFault> {
    keys.get(ak).map(String::as_str).ok_or_else(|| {
        OssFault::new(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
            .ec("0002-00000040")
            .extra("OSSAccessKeyId", ak)
    })
}

/// Verifies a request. `req` holds every header and query parameter as received (decoded).
pub(crate) fn verify(
    req: &SignableRequest,
    keys: &HashMap<String, String>,
    region: &str,
    now: SystemTime,
) -> Result<Verified, OssFault> {
    let now: DateTime<Utc> = now.into();
    let query = |name: &str| req.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    if let Some(auth) = req.header_value("authorization") {
        if let Some(rest) = auth.strip_prefix("OSS4-HMAC-SHA256 ") {
            return verify_v4_header(req, rest, keys, region, now);
        }
        if let Some(rest) = auth.strip_prefix("OSS ") {
            return verify_v1_header(req, rest, keys, now);
        }
        return Err(OssFault::new(400, "InvalidArgument", "Authorization header is invalid.").ec("0002-00000201"));
    }
    if query("x-oss-signature-version").is_some() {
        return verify_v4_query(req, keys, region, now);
    }
    if query("OSSAccessKeyId").is_some() {
        return verify_v1_query(req, keys, now);
    }
    Err(OssFault::new(403, "AccessDenied", "You have no right to access this object because of bucket acl.")
        .ec("0003-00000001"))
}

fn verify_v1_header(
    req: &SignableRequest,
    rest: &str,
    keys: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Verified, OssFault> {
    let (ak, provided) = rest
        .split_once(':')
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "Authorization header is invalid.").ec("0002-00000201"))?;
    let sk = secret(keys, ak)?;
    let date = v1::date_line(req)
        .map_err(|_| OssFault::new(403, "AccessDenied", "Missing Date Header.").ec("0002-00000503"))?;
    let t = parse_http_date(&date)
        .ok_or_else(|| OssFault::new(403, "AccessDenied", "Invalid Date Header.").ec("0002-00000502"))?;
    check_skew(t, now)?;
    let sts = v1::string_to_sign(req, &date);
    if v1::signature(sk, &sts) != provided {
        return Err(mismatch(ak, provided, &sts, None));
    }
    Ok(Verified(ak.to_owned()))
}

fn verify_v1_query(
    req: &SignableRequest,
    keys: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Verified, OssFault> {
    let get = |name: &str| req.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (ak, expires, provided) = (get("OSSAccessKeyId"), get("Expires"), get("Signature"));
    let sk = secret(keys, &ak)?;
    let expires_at: i64 =
        expires.parse().map_err(|_| OssFault::new(403, "AccessDenied", "Invalid Expires.").ec("0002-00000070"))?;
    if expires_at < now.timestamp() {
        return Err(OssFault::new(403, "AccessDenied", "Request has expired.")
            .ec("0002-00000069")
            .extra("Expires", &DateTime::from_timestamp(expires_at, 0).unwrap_or_default().to_rfc3339())
            .extra("ServerTime", &now.to_rfc3339()));
    }
    let mut signed = req.clone();
    signed.query.retain(|(n, _)| !matches!(n.as_str(), "OSSAccessKeyId" | "Expires" | "Signature"));
    let sts = v1::string_to_sign(&signed, &expires);
    if v1::signature(sk, &sts) != provided {
        return Err(mismatch(&ak, &provided, &sts, None));
    }
    Ok(Verified(ak))
}

/// The fields of an `OSS4-HMAC-SHA256` Authorization header, in any order, with `,` or `, `.
fn parse_v4_fields(rest: &str) -> Result<HashMap<String, String>, OssFault> {
    let mut fields = HashMap::new();
    for part in rest.split(',') {
        let part = part.trim();
        let (name, value) = part.split_once('=').ok_or_else(|| {
            OssFault::new(400, "InvalidArgument", "Authorization header is invalid.").ec("0002-00000203")
        })?;
        if name == "AdditionalHeaders" && value.is_empty() {
            return Err(OssFault::new(400, "InvalidArgument", "AdditionalHeaders is empty.").ec("0002-00000209"));
        }
        fields.insert(name.to_owned(), value.to_owned());
    }
    Ok(fields)
}

/// Checks a V4 credential scope and returns the access key id and the scope date.
fn check_credential(credential: &str, region: &str) -> Result<(String, String), OssFault> {
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts[4] != "aliyun_v4_request" {
        return Err(OssFault::new(400, "InvalidArgument", "Credential is invalid.").ec("0002-00000213"));
    }
    if parts[1].len() != 8 || !parts[1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(OssFault::new(400, "InvalidArgument", "Credential date is invalid.").ec("0002-00000212"));
    }
    if parts[2] != region {
        return Err(OssFault::new(
            400,
            "InvalidArgument",
            &format!("Invalid signing region in Authorization header, expected {region}."),
        )
        .ec("0002-00000226"));
    }
    if parts[3] != v4::PRODUCT {
        return Err(OssFault::new(400, "InvalidArgument", "Invalid signing product in Authorization header.")
            .ec("0002-00000227"));
    }
    Ok((parts[0].to_owned(), parts[1].to_owned()))
}

fn additional_list(value: Option<&String>) -> Result<Vec<String>, OssFault> {
    let Some(v) = value else { return Ok(Vec::new()) };
    let names: Vec<String> = v.split(';').map(|n| n.trim().to_ascii_lowercase()).collect();
    if names.iter().any(String::is_empty) {
        return Err(OssFault::new(400, "InvalidArgument", "AdditionalHeaders has an empty entry.").ec("0002-00000210"));
    }
    Ok(names)
}

fn verify_v4_header(
    req: &SignableRequest,
    rest: &str,
    keys: &HashMap<String, String>,
    region: &str,
    now: DateTime<Utc>,
) -> Result<Verified, OssFault> {
    let fields = parse_v4_fields(rest)?;
    let credential = fields
        .get("Credential")
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "Credential is missing.").ec("0002-00000203"))?;
    let provided = fields
        .get("Signature")
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "Signature is missing.").ec("0002-00000203"))?;
    let (ak, scope_date) = check_credential(credential, region)?;
    let sk = secret(keys, &ak)?;
    let datetime = req
        .header_value("x-oss-date")
        .ok_or_else(|| OssFault::new(403, "AccessDenied", "Missing x-oss-date header.").ec("0002-00000503"))?;
    let t = parse_iso(&datetime)
        .ok_or_else(|| OssFault::new(403, "AccessDenied", "Invalid x-oss-date header.").ec("0002-00000502"))?;
    if !datetime.starts_with(&scope_date) {
        return Err(
            OssFault::new(400, "InvalidArgument", "The credential date does not match x-oss-date.").ec("0002-00000223")
        );
    }
    check_skew(t, now)?;
    let payload = req.header_value("x-oss-content-sha256").unwrap_or_default();
    if payload != v4::UNSIGNED_PAYLOAD {
        return Err(
            OssFault::new(400, "InvalidArgument", "x-oss-content-sha256 must be UNSIGNED-PAYLOAD.").ec("0002-00000214")
        );
    }
    let additional = additional_list(fields.get("AdditionalHeaders"))?;
    if let Some(missing) = additional.iter().find(|n| req.header_value(n).is_none()) {
        return Err(OssFault::new(
            400,
            "InvalidArgument",
            &format!("AdditionalHeaders lists {missing}, which the request lacks."),
        )
        .ec("0002-00000211"));
    }
    let canonical = v4::canonical_request(req, &additional, &payload);
    let sts = v4::string_to_sign(&datetime, region, &canonical)
        .map_err(|e| OssFault::new(400, "InvalidArgument", &e.to_string()))?;
    let expected =
        v4::signature(sk, region, &sts).map_err(|e| OssFault::new(400, "InvalidArgument", &e.to_string()))?;
    if &expected != provided {
        return Err(mismatch(&ak, provided, &sts, Some(canonical)));
    }
    Ok(Verified(ak))
}

fn verify_v4_query(
    req: &SignableRequest,
    keys: &HashMap<String, String>,
    region: &str,
    now: DateTime<Utc>,
) -> Result<Verified, OssFault> {
    let get = |name: &str| req.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    if get("x-oss-signature-version").as_deref() != Some(v4::ALGORITHM) {
        return Err(OssFault::new(400, "InvalidArgument", "Unsupported x-oss-signature-version.").ec("0002-00000217"));
    }
    let credential = get("x-oss-credential")
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "x-oss-credential is missing.").ec("0002-00000218"))?;
    let provided = get("x-oss-signature")
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "x-oss-signature is missing.").ec("0002-00000219"))?;
    let (ak, scope_date) = check_credential(&credential, region)?;
    let sk = secret(keys, &ak)?;
    let datetime = get("x-oss-date").unwrap_or_default();
    let t = parse_iso(&datetime)
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "x-oss-date is invalid.").ec("0002-00000220"))?;
    if !datetime.starts_with(&scope_date) {
        return Err(
            OssFault::new(400, "InvalidArgument", "The credential date does not match x-oss-date.").ec("0002-00000223")
        );
    }
    let expires: i64 = get("x-oss-expires")
        .and_then(|v| v.parse().ok())
        .filter(|&e: &i64| (1..=v4::MAX_EXPIRES_SECS as i64).contains(&e))
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "x-oss-expires is invalid.").ec("0002-00000221"))?;
    if (t - now).num_seconds() > MAX_SKEW_SECS {
        return Err(OssFault::new(403, "AccessDenied", "Request is not yet valid.").ec("0002-00000235"));
    }
    if now.timestamp() > t.timestamp() + expires {
        return Err(OssFault::new(403, "AccessDenied", "Request has expired.")
            .ec("0002-00000069")
            .extra("ServerTime", &now.to_rfc3339()));
    }
    let additional = additional_list(get("x-oss-additional-headers").as_ref())?;
    let mut signed = req.clone();
    signed.query.retain(|(n, _)| n != "x-oss-signature");
    let canonical = v4::canonical_request(&signed, &additional, v4::UNSIGNED_PAYLOAD);
    let sts = v4::string_to_sign(&datetime, region, &canonical)
        .map_err(|e| OssFault::new(400, "InvalidArgument", &e.to_string()))?;
    let expected =
        v4::signature(sk, region, &sts).map_err(|e| OssFault::new(400, "InvalidArgument", &e.to_string()))?;
    if expected != provided {
        return Err(mismatch(&ak, &provided, &sts, Some(canonical)));
    }
    Ok(Verified(ak))
}
