//! Entry points for the fuzz tests (feature `fuzzing`, not a stable API): the parsers the Graph
//! and SharePoint REST clients run on what comes off the wire, callable on arbitrary input. Each
//! one must answer a value or a typed error, never panic. (The emulator's request parsing is
//! fuzzed through its public face: raw HTTP to an in-process emulator.)

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use upload_core::token::Granted;

use crate::error::{Error, RestServiceError, ServiceError};
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
    // The Graph client's reading of a JSON answer (`Client::json`).
    serde_json::from_slice(bytes).map_err(|e| Error::MalformedResponse { operation, detail: e.to_string() })
}

/// A Graph upload session (create, status, a 202 to a fragment), as the client reads it.
pub fn upload_session(bytes: &[u8]) -> Result<UploadSession, Error> {
    json("create upload session", bytes)
}

/// A Graph driveItem (commit, get item), as the client reads it.
pub fn drive_item(bytes: &[u8]) -> Result<DriveItem, Error> {
    json("get item", bytes)
}

/// The 200/201 answer to the last fragment as the client reads it: the item, or (as some
/// services answer) the session again. `Ok(true)`: the item.
pub fn last_fragment(bytes: &[u8]) -> Result<bool, Error> {
    match serde_json::from_slice::<DriveItem>(bytes) {
        Ok(_) => Ok(true),
        Err(_) => json::<UploadSession>("upload fragment", bytes).map(|_| false),
    }
}

/// The first byte a session expects (`nextExpectedRanges`), as the uploader reads it.
pub fn next_expected(session: &UploadSession, total: u64) -> Option<u64> {
    crate::client::next_expected(session, total)
}

/// Graph's error document (either envelope); `None` when the body is not one.
pub fn graph_error(status: u16, body: &[u8]) -> Option<ServiceError> {
    ServiceError::from_document(status, body, None, None)
}

/// SharePoint REST's error document (verbose `odata.error` or JSON light `error`).
pub fn rest_error(status: u16, body: &[u8]) -> Option<RestServiceError> {
    RestServiceError::from_document(status, body, None, None)
}

/// `Retry-After` as the Graph and REST clients read it (fractional seconds or an HTTP date).
pub fn retry_after(value: &str) -> Option<Duration> {
    crate::client::retry_after(&header_map(&[("retry-after".to_owned(), value.to_owned())]))
}

/// An `SP.File` answer (Files/add, AddUsingPath, FinishUpload, get file) in any OData flavour.
pub fn rest_file(method: &str, bytes: &[u8]) -> Result<SpFile, Error> {
    crate::rest::parse_entity("FinishUpload", method, bytes)
}

/// The context information answer (form digest) in any OData flavour.
pub fn rest_context_info(bytes: &[u8]) -> Result<ContextWebInformation, Error> {
    crate::rest::parse_entity("contextinfo", "GetContextWebInformation", bytes)
}

/// GetUploadStatus' answer in any OData flavour, with the bytes held it names.
pub fn rest_upload_status(bytes: &[u8]) -> Result<(UploadStatus, Option<u64>), Error> {
    crate::rest::parse_entity::<UploadStatus>("GetUploadStatus", "GetUploadStatus", bytes).map(|s| {
        let held = s.held();
        (s, held)
    })
}

/// The bytes-received answer of StartUpload / ContinueUpload in any OData flavour.
pub fn rest_offset(method: &str, bytes: &[u8]) -> Result<u64, Error> {
    crate::rest::parse_offset("ContinueUpload", method, bytes)
}

/// The token endpoint's answer: the token granted, or the error.
pub fn token(status: u16, bytes: &[u8]) -> Result<Granted, Error> {
    crate::auth::token_answer(status, bytes)
}
