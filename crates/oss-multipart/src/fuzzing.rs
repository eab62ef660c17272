//! Entry points for the fuzz tests (feature `fuzzing`, not a stable API): the parsers the client
//! and the emulator run on what comes off the wire, callable on arbitrary input. Each one must
//! answer a value or a typed error, never panic.

use std::time::SystemTime;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::client::{complete_result, decode_initiate, decode_list_parts, decode_list_uploads, parse_xml};
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

/// InitiateMultipartUpload's answer, as the client reads it.
pub fn initiate(text: &str) -> Result<InitiateMultipartUploadResult, Error> {
    parse_xml("InitiateMultipartUpload", text).map(decode_initiate)
}

/// ListParts' answer, as the client reads it.
pub fn list_parts(text: &str) -> Result<ListPartsResult, Error> {
    parse_xml("ListParts", text).map(decode_list_parts)
}

/// ListMultipartUploads' answer, as the client reads it.
pub fn list_uploads(text: &str) -> Result<ListMultipartUploadsResult, Error> {
    parse_xml("ListMultipartUploads", text).map(decode_list_uploads)
}

/// CompleteMultipartUpload's answer, as the client reads it.
pub fn complete(text: &str) -> Option<CompleteMultipartUploadResult> {
    complete_result(text)
}

/// UploadPartCopy's answer, as the client reads it.
pub fn copy_part(text: &str) -> Result<CopyPartResult, Error> {
    parse_xml("UploadPartCopy", text)
}

/// The error an answer of `status` with these headers and body becomes (`head`: a HEAD answer,
/// whose document comes in `x-oss-err`).
pub fn error(status: u16, headers: &[(String, String)], head: bool, body: &str) -> Error {
    error_at(status, headers, head, body, SystemTime::now())
}

/// [`error`] at a given time (for `Retry-After` dates).
pub fn error_at(status: u16, headers: &[(String, String)], head: bool, body: &str, now: SystemTime) -> Error {
    crate::client::error_from_answer(status, &header_map(headers), head, body, "fuzz", now)
}

/// The emulator's signature check (V1 and V4, header and presigned): the access key that signed
/// `req`, or the refusal's status and OSS error code.
#[cfg(feature = "emulator")]
pub fn verify_signature(
    req: &crate::signing::SignableRequest,
    keys: &[(String, String)],
    region: &str,
    now: SystemTime,
) -> Result<String, (u16, String)> {
    crate::emulator::verify_for_fuzzing(req, keys, region, now)
}
