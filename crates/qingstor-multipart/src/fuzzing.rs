//! Entry points for the fuzz tests (feature `fuzzing`, not a stable API): the parsers the client
//! and the emulator run on what comes off the wire, callable on arbitrary input. Each one must
//! answer a value or a typed error, never panic.

use std::time::SystemTime;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Error;
use crate::types::*;

/// A header map of the pairs an HTTP stack would deliver (invalid names or values are left out).
pub fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            map.append(n, v);
        }
    }
    map
}

fn json<T: serde::de::DeserializeOwned>(operation: &'static str, bytes: &[u8]) -> Result<T, Error> {
    // The client's reading of a JSON answer (`Client::json`).
    serde_json::from_slice(bytes).map_err(|e| Error::MalformedResponse { operation, detail: e.to_string() })
}

/// Initiate Multipart Upload's answer, as the client reads it.
pub fn initiate(bytes: &[u8]) -> Result<InitiateMultipartUploadOutput, Error> {
    json("Initiate Multipart Upload", bytes)
}

/// List Multipart's answer, as the client reads it.
pub fn list_multipart(bytes: &[u8]) -> Result<ListMultipartOutput, Error> {
    json("List Multipart", bytes)
}

/// List Multipart Uploads' answer, as the client reads it.
pub fn list_uploads(bytes: &[u8]) -> Result<ListMultipartUploadsOutput, Error> {
    json("List Multipart Uploads", bytes)
}

/// The error an answer of `status` with these headers and body becomes.
pub fn error(status: u16, headers: &[(String, String)], body: &[u8]) -> Error {
    crate::client::error_from_answer(status, &header_map(headers), body, SystemTime::now())
}

/// The emulator's signature check (header and presigned): the access key that signed `req`, or
/// the refusal's status and QingStor error code.
#[cfg(feature = "emulator")]
pub fn verify_signature(
    req: &crate::signing::SignableRequest,
    keys: &[(String, String)],
    now: SystemTime,
    check_time: bool,
) -> Result<String, (u16, String)> {
    crate::emulator::verify_for_fuzzing(req, keys, now, check_time)
}
