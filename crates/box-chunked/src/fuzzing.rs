//! Entry points for the fuzz tests (feature `fuzzing`, not a stable API): the parsers the client
//! and the emulator run on what comes off the wire, callable on arbitrary input. Each one must
//! answer a value or a typed error, never panic.

use std::time::SystemTime;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use upload_core::token::Granted;

use crate::client::Commit;
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

/// An upload session (create, get), as the client reads it.
pub fn upload_session(bytes: &[u8]) -> Result<UploadSession, Error> {
    json("Create upload session", bytes)
}

/// A page of parts, as the client reads it.
pub fn parts(bytes: &[u8]) -> Result<UploadParts, Error> {
    json("List parts", bytes)
}

/// An uploaded part's answer, as the client reads it.
pub fn uploaded_part(bytes: &[u8]) -> Result<UploadedPart, Error> {
    json("Upload part", bytes)
}

/// A commit's answer (201), as the client reads it.
pub fn commit(bytes: &[u8]) -> Result<Commit, Error> {
    json::<Files>("Commit upload session", bytes).and_then(crate::client::committed)
}

/// A file's information, as the client reads it.
pub fn file(bytes: &[u8]) -> Result<File, Error> {
    json("Get file information", bytes)
}

/// The error an answer of `status` with these headers and body becomes, with what the error's
/// `context_info` names (the conflicting part, the conflicting items).
pub fn error(status: u16, headers: &[(String, String)], body: &[u8]) -> (Error, Option<UploadPart>, Vec<String>) {
    let e = crate::client::error_from_answer(status, &header_map(headers), body, SystemTime::now());
    let (part, items) = match e.service() {
        Some(s) => (s.conflicting_part(), s.conflicting_item_ids()),
        None => (None, Vec::new()),
    };
    (e, part, items)
}

/// The token endpoint's answer: the token granted and the new refresh token, or the error.
pub fn token(status: u16, bytes: &[u8]) -> Result<(Granted, Option<upload_core::Secret>), Error> {
    crate::auth::token_answer(status, bytes)
}

/// The emulator's route of `method` and `path` on its API, upload and session hosts.
#[cfg(feature = "emulator")]
pub fn emulator_route(method: &str, path: &str) -> [Option<(String, Option<String>)>; 3] {
    crate::emulator::route_for_fuzzing(method, path)
}

/// The emulator's reading of `Content-Range: bytes a-b/total`.
#[cfg(feature = "emulator")]
pub fn emulator_content_range(value: &str) -> Option<(u64, u64, u64)> {
    crate::emulator::content_range_for_fuzzing(value)
}
