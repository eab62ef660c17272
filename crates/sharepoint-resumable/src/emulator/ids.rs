//! Ids, times and replies of the Graph emulator.

use super::*;
#[allow(unused_imports)]
use super::{items::*, records::*, server::*, sessions::*, tokens::*};

// ---------------------------------------------------------------------------------------------
// Identifiers and times.

/// 64 unpredictable bits (the standard library's randomly keyed hasher over a counter and the
/// clock).
pub(super) fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one((unique(), Instant::now(), std::time::SystemTime::now()))
}

pub(super) fn random_hex(words: usize) -> String {
    (0..words).map(|_| format!("{:016x}", random_u64())).collect()
}

/// An item id in Graph's style: "01" and 32 characters of base32.
pub(super) fn new_item_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (a, b) = (random_u64(), random_u64());
    let chars = (0..32).map(|i| {
        let bits = if i < 16 { a >> (i * 4) } else { b >> ((i - 16) * 4) };
        char::from(ALPHABET[(bits & 31) as usize])
    });
    std::iter::once('0').chain(std::iter::once('1')).chain(chars).collect()
}

/// A GUID-shaped id (request ids, the GUID inside eTags).
pub(super) fn guid(seed: u64, more: u64) -> String {
    let h = format!("{seed:016x}{more:016x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The stable GUID of an item, from its id.
pub(super) fn item_guid(id: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let part = |salt: u8| {
        let mut h = DefaultHasher::new();
        (salt, id).hash(&mut h);
        h.finish()
    };
    guid(part(1), part(2)).to_ascii_uppercase()
}

/// UTC with milliseconds and `Z`, as Graph writes times.
pub(super) fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The wall-clock time `d` from now (saturating).
pub(super) fn later(d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| Utc::now().checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The instant `d` from now (saturating at a century).
pub(super) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(Duration::from_secs(100 * 365 * 24 * 3600))).unwrap_or(now)
}

// ---------------------------------------------------------------------------------------------
// Answers.

pub(super) fn error_reply(e: &GraphError, style: Style, request_id: &str, client_request_id: &str) -> Reply {
    let body = match style {
        Style::Graph => {
            let mut inner = serde_json::json!({
                "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": request_id,
                "client-request-id": client_request_id,
            });
            if let Some(code) = &e.inner {
                inner["code"] = code.as_str().into();
            }
            serde_json::json!({ "error": { "code": e.code, "message": e.message, "innerError": inner } })
        }
        Style::Upload => {
            let mut error = serde_json::json!({ "code": e.code, "message": e.message });
            if let Some(code) = &e.inner {
                error["innererror"] = serde_json::json!({ "code": code });
            }
            serde_json::json!({ "error": error })
        }
        Style::OAuth => serde_json::json!({
            "error": e.code,
            "error_description": e.message,
            "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": request_id,
            "correlation_id": client_request_id,
        }),
    };
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if let Some(s) = e.retry_after {
        builder = builder.header("retry-after", s.to_string());
    }
    if e.status == 401 && style != Style::OAuth {
        let mut challenge = match style {
            Style::Graph => String::from(
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\", error=\"invalid_token\"",
            ),
            _ => String::from("Bearer error=\"invalid_token\""),
        };
        if e.expired {
            challenge.push_str(", error_description=\"expired_token\"");
        }
        builder = builder.header("www-authenticate", challenge);
    }
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    builder.body(Full::new(body)).unwrap_or_else(|_| empty(500))
}

pub(super) fn ok_json<T: Serialize>(status: u16, doc: &T) -> Result<Reply, GraphError> {
    let body = serde_json::to_vec(doc).map_err(|e| GraphError::internal(e.to_string()))?;
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| GraphError::internal(e.to_string()))
}
