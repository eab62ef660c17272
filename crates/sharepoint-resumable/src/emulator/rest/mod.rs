//! The SharePoint host of the emulator: the classic REST API's chunked upload
//! (`StartUpload` / `ContinueUpload` / `FinishUpload` / `CancelUpload` / `GetUploadStatus`),
//! `Files/add`, file metadata and content, and `contextinfo` form digests, on the same store
//! as the Graph host: the root of a site's document library (`{site}/Shared Documents`) is the
//! root of that site's Graph drive.
//!
//! What it holds a client to:
//!
//! * every call under `{web}/_api/`, where `{web}` is the tenant host and one of
//!   [`EmulatorConfig::rest_sites`](super::EmulatorConfig::rest_sites); a bearer token of the
//!   Graph host, or a cookie of [`EmulatorConfig::cookies`](super::EmulatorConfig::cookies) with
//!   an `X-RequestDigest` from `POST {web}/_api/contextinfo` on every POST but that one (403
//!   `-2130575251` when it is missing, unknown or older than
//!   [`EmulatorConfig::digest_lifetime`](super::EmulatorConfig::digest_lifetime)); 401
//!   `System.UnauthorizedAccessException` otherwise;
//! * the OData URL grammar: function names and parameter names in any case, `'…'` strings with
//!   `''` for a quote, `guid'…'`, integers (with or without `L`), `true`/`false`, positional
//!   arguments, parameter aliases from the query string (`DecodedUrl=@a1` with `?@a1='…'`), the
//!   path percent-decoded once before it is parsed;
//! * folders by `GetFolderByServerRelativeUrl('…')` or `GetFolderByServerRelativePath(DecodedUrl='…')`
//!   (server-relative or site-relative), files by the same two forms or `GetFileById('…')`;
//! * `Files/add(url=…,overwrite=…)` and `Files/AddUsingPath(DecodedUrl=…,Overwrite=…)` with
//!   SharePoint's name rules (`" * : < > ? / \ |`, control characters, leading or trailing
//!   space, trailing dot, 255 characters per name, 400 per decoded path; `#` and `%` allowed);
//! * chunks strictly in order (`fileOffset` must be the bytes held, 400 otherwise), one at a
//!   time per session (409), one session per file (another `uploadId` gets 423 while the
//!   session lives), `StartUpload` with the same `uploadId` restarting the session, the file's
//!   content unchanged until `FinishUpload`, `CancelUpload` deleting an empty stub that
//!   `Files/add` made, sessions expiring
//!   [`EmulatorConfig::rest_session_idle`](super::EmulatorConfig::rest_session_idle) after their
//!   last chunk (404 `-2130246326`);
//! * any body over [`EmulatorConfig::rest_max_request`](super::EmulatorConfig::rest_max_request)
//!   refused from its `Content-Length` (400 `InvalidClientQueryException`);
//! * answers in the OData flavour `Accept` asks for (verbose, minimalmetadata, the default, or
//!   nometadata), Int64 results as JSON strings, errors in `odata.error` (verbose: `error`), and
//!   `SPRequestGuid` and `request-id` on every answer.
//!
//! Where the service's behaviour is not documented the emulator decides, and says so here: a
//! wrong `fileOffset` is 400 `System.ArgumentOutOfRangeException`; an unknown, finished,
//! cancelled or expired `uploadId` is 404 `-2130246326`; a lock held by another session is 423
//! `SPFileLockException` and a second chunk in flight 409 with the same code; `CancelUpload`
//! answers 200 with a null value; `GetUploadStatus` answers GET and POST. `CancelUpload` and
//! `GetUploadStatus` also take their `uploadId` from a JSON body (`{"uploadId":"…"}`), the way
//! SharePoint accepts parameters of service operations that have no stream.
//!
//! ```
//! use sharepoint_resumable::emulator::{Emulator, EmulatorConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! let web = emulator.site_url(); // http://127.0.0.1:<port>/sites/emulator
//! let http = reqwest::Client::new();
//! let file = format!("{web}/_api/web/GetFileByServerRelativePath(DecodedUrl='/sites/emulator/Shared%20Documents/big.bin')");
//! // An empty stub, then the chunks on it.
//! let stub = http
//!     .post(format!("{web}/_api/web/GetFolderByServerRelativeUrl('Shared%20Documents')/Files/add(url='big.bin',overwrite=true)"))
//!     .bearer_auth(emulator.token())
//!     .send()
//!     .await?;
//! assert_eq!(stub.status(), 200);
//! let id = "guid'0f8fad5b-d9cb-469f-a165-70867728950e'";
//! let started = http
//!     .post(format!("{file}/StartUpload(uploadId={id})"))
//!     .bearer_auth(emulator.token())
//!     .header("accept", "application/json;odata=nometadata")
//!     .body("hello ")
//!     .send()
//!     .await?;
//! assert_eq!(started.text().await?, r#"{"value":"6"}"#);
//! let finished = http
//!     .post(format!("{file}/FinishUpload(uploadId={id},fileOffset=6)"))
//!     .bearer_auth(emulator.token())
//!     .body("world")
//!     .send()
//!     .await?;
//! assert_eq!(finished.status(), 200);
//! // The same item the Graph host sees.
//! assert_eq!(emulator.item_content("drive-1", "big.bin").as_deref(), Some(&b"hello world"[..]));
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value as Json, json};
use upload_core::emulator::{
    Blob, Body, Discarded, Dropped, LoggedRequest, Reply, decode_strict, empty, is_unstorable, parse_query, read_body,
    take_fault, text_headers, unique,
};
use upload_core::hash::{Hashes as HashKinds, QuickXor};

use super::{FaultAction, Operation};
use super::{ids::*, records::*, server::*, tokens::*};
mod calls;
mod errors;
mod files;
mod replies;
mod state;
use calls::*;
use errors::*;
use files::*;
use replies::error_reply;
use replies::*;
pub(super) use state::*;

/// The document library of every REST site, below the site's URL.
const LIBRARY: &str = "Shared Documents";
/// Who the cookies act as (in the request log and lock messages).
const COOKIE_USER: &str = "emulator-cookie-user";
/// The longest name SharePoint takes.
const MAX_NAME: usize = 255;
/// The longest decoded server-relative path SharePoint takes.
const MAX_PATH: usize = 400;

// ---------------------------------------------------------------------------------------------
// The request loop.

/// What a request is about, once it is routed and authenticated.
struct Req<'a> {
    shared: &'a Shared,
    /// The site's server-relative URL.
    site: String,
    drive: String,
    /// `{sharepoint_url}{site}`.
    web: String,
    flavour: Flavour,
    user: String,
}

/// Marks a session busy while one chunk is on its way in; dropping it frees the session.
struct Claim {
    shared: Arc<Shared>,
    upload_id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(s) = self.shared.store().rest.sessions.get_mut(&self.upload_id) {
            s.busy = false;
        }
    }
}

/// The SharePoint listener's handler.
pub(super) async fn handle(
    shared: Option<Arc<Shared>>,
    base: String,
    req: Request<Incoming>,
) -> Result<Reply, Dropped> {
    let Some(shared) = shared else { return Ok(empty(503)) };
    let method = req.method().as_str().to_owned();
    let query = parse_query(req.uri().query().unwrap_or_default());
    let headers = text_headers(req.headers());
    let header = |name: &str| find_header(&headers, name);
    let flavour = Flavour::from_accept(header("accept").as_deref());
    let tenant = shared.config.tenant.clone();
    let content_length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
    let max = shared.config.rest_max_request;

    // Routing: the site, then the call (an error is answered after the body is drained).
    let decoded = decode_strict(req.uri().path());
    let site = decoded.as_deref().and_then(|d| split_site(&shared.config.rest_sites, d));
    let routed: Result<Call, SpError> = match (&decoded, &site) {
        (None, _) => Err(SpError::bad_query("The request path is not UTF-8 after percent-decoding.")),
        (Some(d), None) => Err(SpError::not_found(d)),
        (Some(_), Some((_, api))) => {
            parse_path(api, &query).map_err(SpError::bad_query).and_then(|segments| recognise(&method, &segments))
        }
    };
    let operation = routed.as_ref().ok().map(Call::operation);
    let site = site.and_then(|(i, _)| shared.config.rest_sites.get(i).cloned());
    let mut entry = LoggedRequest {
        method: method.clone(),
        bucket: site.as_ref().map(|(_, d)| d.clone()),
        key: None,
        operation,
        part_number: None,
        body_len: 0,
        status: 0,
        error_code: None,
        access_key_id: None,
    };

    // Authentication, the digest, the size: decided before the body is read.
    let who = authenticate_rest(&shared, &headers, &method, operation);
    entry.access_key_id = who.as_ref().ok().cloned();
    let mut early = match (&routed, &who, content_length) {
        (_, Err(e), _) if site.is_some() => Some(e.clone()),
        (Err(e), _, _) => Some(e.clone()),
        (_, _, Some(n)) if n > max => Some(SpError::too_big(max)),
        _ => None,
    };

    // The item and the fault part number of a chunk call.
    let chunk_id = match (&routed, &site) {
        (Ok(Call::Chunk { op, upload_id: Some(id), file, .. }), Some((site_url, drive))) => {
            let store = shared.store();
            entry.key = resolve_file(&store, site_url, drive, file).ok();
            let session = store.rest.sessions.get(id);
            entry.part_number = match (op, session) {
                (Operation::StartUpload, _) => Some(0),
                (Operation::ContinueUpload | Operation::FinishUpload, Some(s)) => Some(s.chunks),
                _ => None,
            };
            let chunk = matches!(op, Operation::StartUpload | Operation::ContinueUpload | Operation::FinishUpload);
            chunk.then(|| id.clone())
        }
        (Ok(call), Some((site_url, drive))) => {
            if let Some(file) = call.file() {
                entry.key = resolve_file(&shared.store(), site_url, drive, file).ok();
            }
            None
        }
        _ => None,
    };

    // A slow server: before anything of the request is read or claimed.
    let fault = take_fault(&mut shared.store().faults, operation, entry.part_number);
    if let Some(FaultAction::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    // One chunk in flight per session: claimed while its body arrives and is stored.
    let mut claim = None;
    if let Some(id) = chunk_id
        && early.is_none()
        && let Some(s) = shared.store().rest.sessions.get_mut(&id)
    {
        if s.busy {
            early = Some(SpError::busy());
        } else {
            s.busy = true;
            claim = Some(Claim { shared: shared.clone(), upload_id: id });
        }
    }
    let reset_after = match &fault {
        Some(FaultAction::ResetMidBody { after }) => Some(*after),
        _ => None,
    };
    // A body refused anyway is read through without being kept.
    let drain = early.is_some().then_some(HashKinds::NONE);
    let expected = if drain.is_some() { 0 } else { usize::try_from(content_length.unwrap_or(0)).unwrap_or(0) };
    let read = match content_length {
        Some(_) => read_body(req.into_body(), expected, drain, reset_after).await,
        // A body without a length (chunked) is read only up to the limit.
        None => read_unannounced(req.into_body(), max, drain.is_none(), reset_after).await,
    };
    let body = match read {
        Ok(b) => b,
        Err(got) => {
            entry.body_len = got;
            shared.store().log.push(entry);
            return Err(Dropped);
        }
    };
    entry.body_len = body.len();
    if early.is_none() && body.len() > max {
        early = Some(SpError::too_big(max));
    }

    let result = match (early, routed, who, site) {
        (Some(e), ..) => Err(e),
        (None, Ok(call), Ok(user), Some((site, drive))) => {
            let r = Req { shared: &shared, web: format!("{base}{site}"), site, drive, flavour, user };
            respond(&r, &call, body.bytes, fault.as_ref())
        }
        _ => Err(SpError::internal("The request could not be routed.")),
    };
    drop(claim);
    let request_id = guid(random_u64(), unique());
    let mut reply = match result {
        Ok(r) => r,
        Err(e) => {
            entry.error_code = Some(e.code.clone());
            error_reply(&e, flavour, &tenant)
        }
    };
    for name in ["sprequestguid", "request-id"] {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&request_id) {
            reply.headers_mut().insert(name, v);
        }
    }
    entry.status = reply.status().as_u16();
    let lose = matches!(fault, Some(FaultAction::LoseResponse));
    if lose {
        entry.status = 0;
    }
    shared.store().log.push(entry);
    if lose {
        return Err(Dropped);
    }
    Ok(reply)
}

/// Reads a body sent without `Content-Length` (chunked), as [`read_body`] does, but never past
/// `max` bytes: a longer one stops being read there and comes back as a discarded body of more
/// than `max` bytes, refused by the caller. `keep`: false reads the bytes through.
async fn read_unannounced(mut body: Incoming, max: u64, keep: bool, reset_after: Option<usize>) -> Result<Body, u64> {
    use http_body_util::BodyExt;
    let mut received = bytes::BytesMut::new();
    let mut got = 0u64;
    let discarded = |len| Body { bytes: Bytes::new(), discarded: Some(Discarded { len, ..Discarded::default() }) };
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(got) };
        if let Ok(data) = frame.into_data() {
            got += data.len() as u64;
            if got > max {
                return Ok(discarded(got));
            }
            if keep {
                received.extend_from_slice(&data);
            }
        }
        if reset_after.is_some_and(|n| got >= n as u64) {
            return Err(got);
        }
    }
    if reset_after.is_some() {
        return Err(got);
    }
    Ok(if keep { Body { bytes: received.freeze(), discarded: None } } else { discarded(got) })
}

/// Who a request acts as: a bearer token of the Graph host (no digest needed), or a configured
/// cookie, with a live `X-RequestDigest` on every POST but `contextinfo`.
fn authenticate_rest(
    shared: &Shared,
    headers: &[(String, String)],
    method: &str,
    operation: Option<Operation>,
) -> Result<String, SpError> {
    let header = |name: &str| find_header(headers, name);
    if let Some(authorization) = header("authorization") {
        return authenticate(shared, Some(&authorization)).map_err(|_| SpError::access_denied());
    }
    let cookie_header = header("cookie").unwrap_or_default();
    let has_cookie = cookie_header
        .split(';')
        .map(str::trim)
        .any(|pair| !pair.is_empty() && shared.config.cookies.iter().any(|c| c.trim() == pair));
    if !has_cookie {
        return Err(SpError::access_denied());
    }
    if method == "POST" && operation != Some(Operation::ContextInfo) {
        let digest = header("x-requestdigest").unwrap_or_default();
        let mut store = shared.store();
        let now = Instant::now();
        store.rest.digests.retain(|_, expires| now < *expires);
        if !store.rest.digests.contains_key(&digest) {
            return Err(SpError::security_validation());
        }
    }
    Ok(COOKIE_USER.into())
}

/// The drive path of the file a request names (it need not exist for a path).
fn resolve_file(store: &Store, site: &str, drive: &str, file: &FileRef) -> Result<String, SpError> {
    match file {
        FileRef::Path(p) => library_path(site, p).ok_or_else(|| SpError::file_not_found(p)),
        FileRef::Id(id) => store
            .items
            .iter()
            .find(|((d, _), item)| d == drive && matches!(item.kind, Kind::File { .. }) && unique_id(item) == *id)
            .map(|((_, p), _)| p.clone())
            .ok_or_else(|| SpError::file_not_found(id)),
    }
}

/// The path of an existing file a request names.
fn existing_file(req: &Req<'_>, store: &Store, file: &FileRef) -> Result<String, SpError> {
    let path = resolve_file(store, &req.site, &req.drive, file)?;
    match store.item(&req.drive, &path) {
        Some(ItemRec { kind: Kind::File { .. }, .. }) => Ok(path),
        _ => Err(SpError::file_not_found(&match file {
            FileRef::Path(p) => p.clone(),
            FileRef::Id(_) => server_relative(&req.site, &path),
        })),
    }
}

fn respond(req: &Req<'_>, call: &Call, body: Bytes, fault: Option<&FaultAction>) -> Result<Reply, SpError> {
    if let Some(FaultAction::Error { status, code, retry_after }) = fault {
        let mut e = SpError::new(*status, code, "Injected by the emulator.");
        e.retry_after = *retry_after;
        return Err(e);
    }
    let done = match (call, fault) {
        (
            Call::Chunk {
                op: op @ (Operation::StartUpload | Operation::ContinueUpload | Operation::FinishUpload), ..
            },
            Some(FaultAction::PartialThenError { keep, status, code }),
        ) if *keep > 0 && *keep < body.len() => {
            // Part of the chunk is kept (the session holds those bytes), then the server fails.
            // A FinishUpload keeps its part as a ContinueUpload would: the session stays open.
            let op = if *op == Operation::FinishUpload { Operation::ContinueUpload } else { *op };
            let partial = match call {
                Call::Chunk { file, upload_id, offset, .. } => {
                    Call::Chunk { op, file: file.clone(), upload_id: upload_id.clone(), offset: *offset }
                }
                other => other.clone(),
            };
            execute(req, &partial, body.slice(..*keep))?;
            Err(SpError::new(*status, code, "Injected by the emulator after keeping part of the chunk."))
        }
        _ => execute(req, call, body),
    };
    match fault {
        Some(FaultAction::ErrorAfter { status, code }) => {
            done.and_then(|_| Err(SpError::new(*status, code, "Injected by the emulator after the operation.")))
        }
        _ => done,
    }
}

fn execute(req: &Req<'_>, call: &Call, body: Bytes) -> Result<Reply, SpError> {
    match call {
        Call::ContextInfo => context_info(req),
        Call::AddFile { folder, name, overwrite } => add_file(req, folder, name, *overwrite, body),
        Call::GetFile(file) => {
            let store = req.shared.store();
            let path = existing_file(req, &store, file)?;
            let item = store.item(&req.drive, &path).ok_or_else(SpError::folder_not_found)?;
            json_reply(req.flavour, &file_doc(req.flavour, &req.web, &req.site, &path, item))
        }
        Call::Download(file) => {
            let item = {
                let store = req.shared.store();
                let path = existing_file(req, &store, file)?;
                store.item(&req.drive, &path).cloned().ok_or_else(SpError::folder_not_found)?
            };
            let Kind::File { blob, .. } = item.kind else { return Err(SpError::folder_not_found()) };
            let bytes = blob.read().map_err(|e| SpError::storage(&e))?;
            Response::builder()
                .status(200)
                .header("content-type", "application/octet-stream")
                .body(Full::new(bytes))
                .map_err(|e| SpError::internal(e.to_string()))
        }
        Call::Chunk { op, file, upload_id, offset } => {
            // CancelUpload and GetUploadStatus may carry their parameters in a JSON body.
            let upload_id = match upload_id {
                Some(id) => id.clone(),
                None => body_upload_id(&body)
                    .ok_or_else(|| SpError::bad_query("The uploadId parameter is missing or is not a valid Guid."))?,
            };
            match op {
                Operation::StartUpload => start_upload(req, file, &upload_id, body),
                Operation::ContinueUpload | Operation::FinishUpload => {
                    chunk(req, *op, file, &upload_id, offset.unwrap_or(u64::MAX), body)
                }
                Operation::CancelUpload => cancel_upload(req, file, &upload_id),
                Operation::GetUploadStatus => upload_status(req, file, &upload_id),
                _ => Err(SpError::internal("Not a chunk operation.")),
            }
        }
    }
}

/// `uploadId` from a JSON body (`{"uploadId":"…"}`, in any case, also inside `parameters`).
fn body_upload_id(body: &[u8]) -> Option<String> {
    let doc: Json = serde_json::from_slice(body).ok()?;
    let find = |o: &Map<String, Json>| {
        o.iter().find(|(k, _)| k.eq_ignore_ascii_case("uploadid")).and_then(|(_, v)| v.as_str()).map(str::to_owned)
    };
    let object = doc.as_object()?;
    let id = find(object).or_else(|| object.get("parameters").and_then(Json::as_object).and_then(find))?;
    normalize_guid(&id)
}

fn context_info(req: &Req<'_>) -> Result<Reply, SpError> {
    let lifetime = req.shared.config.digest_lifetime;
    let digest = format!("0x{},{}", random_hex(8).to_ascii_uppercase(), Utc::now().format("%d %b %Y %H:%M:%S -0000"));
    req.shared.store().rest.digests.insert(digest.clone(), after(lifetime));
    let versions = ["14.0.0.0", "15.0.0.0"];
    let mut fields = Map::new();
    fields.insert("FormDigestTimeoutSeconds".into(), lifetime.as_secs().into());
    fields.insert("FormDigestValue".into(), digest.into());
    fields.insert("LibraryVersion".into(), "16.0.0.0".into());
    fields.insert("SiteFullUrl".into(), req.web.clone().into());
    fields.insert(
        "SupportedSchemaVersions".into(),
        match req.flavour {
            // Verbose writes collections as `results` with their type.
            Flavour::Verbose => json!({ "__metadata": { "type": "Collection(Edm.String)" }, "results": versions }),
            _ => json!(versions),
        },
    );
    fields.insert("WebFullUrl".into(), req.web.clone().into());
    let doc = match req.flavour {
        Flavour::Verbose => {
            let Json::Object(mut inner) = json!({ "__metadata": { "type": "SP.ContextWebInformation" } }) else {
                return Err(SpError::internal("unreachable"));
            };
            inner.extend(fields);
            json!({ "d": { "GetContextWebInformation": inner } })
        }
        flavour => entity(
            flavour,
            "SP.ContextWebInformation",
            &format!("{}/_api/$metadata#SP.ContextWebInformation", req.web),
            None,
            fields,
        ),
    };
    let doc = match (req.flavour, doc) {
        // The minimal form has only odata.metadata, not odata.type.
        (Flavour::Minimal, Json::Object(mut o)) => {
            o.remove("odata.type");
            Json::Object(o)
        }
        (_, d) => d,
    };
    json_reply(req.flavour, &doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Vec<Segment> {
        parse_path(path, &[]).unwrap()
    }

    fn args(segment: &Segment) -> Vec<(Option<String>, Value)> {
        segment.args.clone().unwrap()
    }

    #[test]
    fn slashes_inside_quotes_and_parentheses_do_not_split() {
        let s = parse(
            "web/GetFolderByServerRelativeUrl('/sites/x/Shared Documents/a/b')/Files/add(url='c.bin',overwrite=true)",
        );
        assert_eq!(s.len(), 4);
        assert_eq!(args(&s[1]), vec![(None, Value::Str("/sites/x/Shared Documents/a/b".into()))]);
        assert_eq!(
            args(&s[3]),
            vec![(Some("url".into()), Value::Str("c.bin".into())), (Some("overwrite".into()), Value::Bool(true))]
        );
    }

    #[test]
    fn doubled_quotes_commas_and_equals_inside_strings() {
        let s = parse("web/GetFileByServerRelativePath(DecodedUrl='/a/it''s, x=1 (2).bin')");
        assert_eq!(s[1].arg("decodedurl", Some(0)), Some(&Value::Str("/a/it's, x=1 (2).bin".into())));
        assert_eq!(parse("f('''')")[0].arg("x", Some(0)), Some(&Value::Str("'".into())));
        // A lone quote inside a string is not a literal.
        assert!(parse_path("f('a'b')", &[]).is_err());
        assert!(parse_path("f('abc)", &[]).is_err());
        assert!(parse_path("f(a))", &[]).is_err());
    }

    #[test]
    fn literals_of_every_kind() {
        let s = parse(
            "StartUpload(uploadId=guid'0F8FAD5B-D9CB-469F-A165-70867728950E',fileOffset=10485760L,b=FALSE,n=null,m=-3)",
        );
        let a = &s[0];
        assert_eq!(a.arg("UPLOADID", None), Some(&Value::Guid("0F8FAD5B-D9CB-469F-A165-70867728950E".into())));
        assert_eq!(a.arg("fileoffset", None), Some(&Value::Int(10_485_760)));
        assert_eq!(a.arg("b", None), Some(&Value::Bool(false)));
        assert_eq!(a.arg("n", None), Some(&Value::Null));
        assert_eq!(a.arg("m", None), Some(&Value::Int(-3)));
        assert!(parse_path("f(x=abc)", &[]).is_err());
        assert!(parse_path("f(x=99999999999999999999)", &[]).is_err());
        assert_eq!(
            normalize_guid("{0F8FAD5B-D9CB-469F-A165-70867728950E}").as_deref(),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        assert_eq!(normalize_guid("0f8fad5b-d9cb-469f-a165"), None);
        assert_eq!(normalize_guid("zf8fad5b-d9cb-469f-a165-70867728950e"), None);
    }

    #[test]
    fn aliases_come_from_the_query_string() {
        let query = parse_query(
            "@a1='%2Fsites%2Fx%2FShared%20Documents%2F100%25%20%23.bin'&@V=%7B%22DecodedUrl%22%3A%22%2Fa%2Fb%22%7D",
        );
        let s = parse_path("web/GetFileByServerRelativePath(DecodedUrl=@a1)", &query).unwrap();
        assert_eq!(s[1].arg("decodedurl", None), Some(&Value::Str("/sites/x/Shared Documents/100% #.bin".into())));
        // Alias names in any case; a JSON object gives named members.
        let s = parse_path("web/GetFolderByServerRelativePath(@v)", &query).unwrap();
        assert_eq!(s[1].arg("DecodedUrl", Some(0)), Some(&Value::Str("/a/b".into())));
        assert!(parse_path("f(x=@missing)", &query).is_err());
    }

    #[test]
    fn method_and_parameter_names_in_any_case() {
        let segments = parse(
            "WEB/getfilebyid('0F8FAD5B-D9CB-469F-A165-70867728950E')/startUpload(uploadID='0f8fad5b-d9cb-469f-a165-70867728950e')",
        );
        let call = recognise("POST", &segments).unwrap();
        assert_eq!(
            call,
            Call::Chunk {
                op: Operation::StartUpload,
                file: FileRef::Id("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
                upload_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
                offset: None,
            }
        );
        let segments = parse(
            "web/getfolderbyserverrelativepath(decodedurl='Shared Documents')/files/ADDUSINGPATH(decodedurl='a.bin',OVERWRITE=true)",
        );
        assert_eq!(
            recognise("POST", &segments).unwrap(),
            Call::AddFile { folder: "Shared Documents".into(), name: "a.bin".into(), overwrite: true }
        );
        // Continue needs its offset; GET is only for status, file and content.
        let c = parse(
            "web/GetFileByServerRelativeUrl('/a')/ContinueUpload(uploadId=guid'0f8fad5b-d9cb-469f-a165-70867728950e')",
        );
        assert_eq!(recognise("POST", &c).unwrap_err().status, 400);
        let s = parse(
            "web/GetFileByServerRelativeUrl('/a')/StartUpload(uploadId=guid'0f8fad5b-d9cb-469f-a165-70867728950e')",
        );
        assert_eq!(recognise("GET", &s).unwrap_err().status, 400);
        assert_eq!(
            recognise("GET", &parse("web/GetFileByServerRelativeUrl('/a')/$value")).unwrap(),
            Call::Download(FileRef::Path("/a".into()))
        );
        assert_eq!(recognise("POST", &parse("ContextInfo")).unwrap(), Call::ContextInfo);
        assert_eq!(recognise("POST", &parse("web/lists")).unwrap_err().status, 404);
    }

    #[test]
    fn paths_are_percent_decoded_once() {
        let sites = vec![("/sites/emulator".to_owned(), "drive-1".to_owned())];
        // The request path as sent: %27 is a quote, %2C a comma, %2525 stays %25 after one decoding.
        let raw = "/sites/Emulator/_api/web/GetFileByServerRelativePath(DecodedUrl=%27%2Fsites%2Femulator%2FShared%20Documents%2F50%2525%2C%20it%27%27s.bin%27)";
        let decoded = decode_strict(raw).unwrap();
        let (site, api) = split_site(&sites, &decoded).unwrap();
        assert_eq!(site, 0);
        let segments = parse_path(&api, &[]).unwrap();
        let call = recognise("GET", &segments).unwrap();
        let Call::GetFile(FileRef::Path(p)) = call else { panic!("{call:?}") };
        assert_eq!(p, "/sites/emulator/Shared Documents/50%25, it's.bin");
        assert_eq!(library_path("/sites/emulator", &p).as_deref(), Some("50%25, it's.bin"));
        assert_eq!(split_site(&sites, "/sites/other/_api/web"), None);
    }

    #[test]
    fn library_paths_server_or_site_relative() {
        let site = "/sites/emulator";
        assert_eq!(library_path(site, "/sites/emulator/Shared Documents").as_deref(), Some(""));
        assert_eq!(library_path(site, "/sites/emulator/shared documents/").as_deref(), Some(""));
        assert_eq!(library_path(site, "Shared Documents/dir/a.bin").as_deref(), Some("dir/a.bin"));
        assert_eq!(
            library_path(site, "https://contoso.sharepoint.com/sites/emulator/Shared Documents/a").as_deref(),
            Some("a")
        );
        for bad in [
            "/sites/other/Shared Documents/a",
            "/sites/emulator/Shared Documentsx/a",
            "Shared Documents//a",
            "Documents/a",
        ] {
            assert_eq!(library_path(site, bad), None, "{bad}");
        }
    }

    #[test]
    fn sharepoints_name_rules() {
        for good in ["a.bin", "with space.bin", "100% #1.bin", "it's.bin", "中文.bin", ".profile", "a+b=c&d;e.bin"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "x".repeat(256);
        for bad in
            ["a\"b", "a*b", "a:b", "a<b", "a>b", "a?b", "a/b", "a\\b", "a|b", "a\nb", " a", "a ", "a.", "", &long]
        {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn flavours_from_accept() {
        assert_eq!(Flavour::from_accept(Some("application/json;odata=verbose")), Flavour::Verbose);
        assert_eq!(Flavour::from_accept(Some("application/json; odata=NoMetadata")), Flavour::NoMetadata);
        assert_eq!(Flavour::from_accept(Some("application/json")), Flavour::Minimal);
        assert_eq!(Flavour::from_accept(None), Flavour::Minimal);
        assert_eq!(int64(Flavour::Verbose, "w", "StartUpload", 5), json!({ "d": { "StartUpload": "5" } }));
        assert_eq!(int64(Flavour::NoMetadata, "w", "StartUpload", 5), json!({ "value": "5" }));
    }
}
