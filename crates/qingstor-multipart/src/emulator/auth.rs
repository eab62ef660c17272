//! Signature verification as QingStor does it: `Authorization: QS <ak>:<signature>` or the
//! presigned `access_key_id`, `expires`, `signature` query, over the path exactly as it arrived
//! (never decoded and re-encoded: the official SDKs encode keys differently and all of them are
//! accepted), with the 15-minute rule on `Date` / `x-qs-date`.

use std::collections::HashMap;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use super::QsFault;
use crate::signing::{SignableRequest, date_line, signature, string_to_sign};

/// Largest clock difference QingStor accepts, in seconds.
pub(crate) const MAX_SKEW_SECS: i64 = 900;

fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim()).ok().map(|t| t.with_timezone(&Utc))
}

fn secret<'a>(keys: &'a HashMap<String, String>, ak: &str) -> Result<&'a str, QsFault> {
    keys.get(ak)
        .map(String::as_str)
        .ok_or_else(|| QsFault::new(401, "invalid_access_key_id", "The access key id you provided does not exist."))
}

/// Compares two signatures without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mismatch() -> QsFault {
    QsFault::new(401, "signature_not_matched", "The signature you provided does not match.")
}

/// Verifies a request whose `path` is the canonical path (raw request path, with `/<bucket>` in
/// front for a virtual-host request); returns the access key that signed it. `check_time`
/// switches the clock rules off (to check the official vectors, dated years ago).
pub(crate) fn verify(
    req: &SignableRequest,
    keys: &HashMap<String, String>,
    now: SystemTime,
    check_time: bool,
) -> Result<String, QsFault> {
    let now: DateTime<Utc> = now.into();
    let query = |name: &str| req.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    if let Some(auth) = req.header_value("authorization") {
        let (ak, provided) = auth
            .strip_prefix("QS ")
            .and_then(|rest| rest.trim().split_once(':'))
            .ok_or_else(|| QsFault::new(401, "invalid_access_key_id", "The Authorization header is malformed."))?;
        let secret = secret(keys, ak)?;
        if check_time {
            let date = req.header_value("x-qs-date").or_else(|| req.header_value("date")).unwrap_or_default();
            let t = parse_http_date(&date).ok_or_else(|| {
                QsFault::new(403, "request_expired", "The request has no valid Date or X-QS-Date header.")
            })?;
            if (t - now).num_seconds().abs() > MAX_SKEW_SECS {
                return Err(QsFault::new(
                    403,
                    "request_expired",
                    "The request time differs from the server time by more than 15 minutes.",
                ));
            }
        }
        let expected = signature(secret, &string_to_sign(req, &date_line(req)));
        return if same(provided.trim(), &expected) { Ok(ak.to_owned()) } else { Err(mismatch()) };
    }
    match (query("access_key_id"), query("expires"), query("signature")) {
        (Some(ak), Some(expires), Some(provided)) => {
            let secret = secret(keys, &ak)?;
            let at: i64 = expires
                .parse()
                .map_err(|_| QsFault::new(400, "invalid_argument", "The expires parameter is not a number."))?;
            if check_time && now.timestamp() > at {
                return Err(QsFault::new(403, "request_expired", "The presigned request has expired."));
            }
            let expected = signature(secret, &string_to_sign(req, &expires));
            if same(provided.trim(), &expected) { Ok(ak) } else { Err(mismatch()) }
        }
        _ => Err(QsFault::new(401, "invalid_access_key_id", "The request is not signed; this bucket is private.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{Credentials, authorization, presign};

    fn keys() -> HashMap<String, String> {
        [("AK".to_owned(), "SK".to_owned())].into_iter().collect()
    }

    #[test]
    fn header_and_query_signatures_round_trip_and_tampering_fails() {
        let now = SystemTime::now();
        let date = chrono::DateTime::<Utc>::from(now).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let mut req = SignableRequest::new("PUT", "/bucket/a%20b").query("part_number", "0").header("Date", &date);
        req.query.push(("upload_id".into(), "U".into()));
        let auth = authorization(&Credentials::new("AK", "SK"), &req);
        let signed = req.clone().header("Authorization", &auth);
        assert_eq!(verify(&signed, &keys(), now, true).unwrap(), "AK");

        let tampered = req.clone().header("Authorization", &auth.replace("QS AK:", "QS AK:x"));
        assert_eq!(verify(&tampered, &keys(), now, true).unwrap_err().code, "signature_not_matched");
        let unknown = req.clone().header("Authorization", &auth.replace("QS AK:", "QS NOPE:"));
        assert_eq!(verify(&unknown, &keys(), now, true).unwrap_err().code, "invalid_access_key_id");
        let later = now + std::time::Duration::from_secs(16 * 60);
        assert_eq!(verify(&signed, &keys(), later, true).unwrap_err().code, "request_expired");
        assert_eq!(verify(&req, &keys(), now, true).unwrap_err().status, 401);

        let expires = chrono::DateTime::<Utc>::from(now).timestamp() + 60;
        let mut presigned = SignableRequest::new("GET", "/bucket/a%20b");
        presigned.query = presign(&Credentials::new("AK", "SK"), &presigned, expires);
        assert_eq!(verify(&presigned, &keys(), now, true).unwrap(), "AK");
        let after = now + std::time::Duration::from_secs(61);
        assert_eq!(verify(&presigned, &keys(), after, true).unwrap_err().code, "request_expired");
    }
}
