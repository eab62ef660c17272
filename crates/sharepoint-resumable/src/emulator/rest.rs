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

use super::{
    Content, FaultAction, ItemRec, Kind, Operation, Shared, Store, after, authenticate, find_header, guid, item_guid,
    join, later, mime_type, new_item_id, random_hex, random_u64, split_parent, write_at,
};

/// The document library of every REST site, below the site's URL.
const LIBRARY: &str = "Shared Documents";
/// Who the cookies act as (in the request log and lock messages).
const COOKIE_USER: &str = "emulator-cookie-user";
/// The longest name SharePoint takes.
const MAX_NAME: usize = 255;
/// The longest decoded server-relative path SharePoint takes.
const MAX_PATH: usize = 400;

// ---------------------------------------------------------------------------------------------
// State.

/// A chunked upload session.
#[derive(Debug)]
pub(super) struct RestSession {
    drive: String,
    /// The file's path in the drive.
    path: String,
    /// Who started it (lock messages, the log).
    owner: String,
    /// Bytes held: the `fileOffset` the next chunk must give.
    received: u64,
    /// Chunks accepted (the fault part number of the next one).
    chunks: u32,
    content: Content,
    quickxor: QuickXor,
    expires: Instant,
    expires_at: DateTime<Utc>,
    /// A chunk is on its way in.
    busy: bool,
}

/// The REST host's part of the store.
#[derive(Default)]
pub(super) struct RestState {
    /// Sessions by upload id (lower case, no braces).
    sessions: HashMap<String, RestSession>,
    /// Form digests and their expiry.
    digests: HashMap<String, Instant>,
    /// Item ids of the files `Files/add` created empty (CancelUpload deletes them).
    stubs: HashSet<String>,
}

impl std::fmt::Debug for RestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Digests are credentials: counted, never shown.
        f.debug_struct("RestState")
            .field("sessions", &self.sessions)
            .field("digests", &self.digests.len())
            .field("stubs", &self.stubs)
            .finish()
    }
}

impl RestState {
    /// Removes sessions past their idle expiry (their bytes dropped).
    fn sweep(&mut self) {
        let now = Instant::now();
        let dead: Vec<String> =
            self.sessions.iter().filter(|(_, s)| now >= s.expires).map(|(id, _)| id.clone()).collect();
        for id in dead {
            if let Some(s) = self.sessions.remove(&id) {
                s.content.discard();
            }
        }
    }

    /// Ends every session now.
    pub(super) fn expire_all(&mut self) {
        for (_, s) in self.sessions.drain() {
            s.content.discard();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// An error answer: status, `"<hresult>, <.NET type>"` and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SpError {
    status: u16,
    code: String,
    message: String,
    retry_after: Option<u64>,
}

const SP_EXCEPTION: &str = "Microsoft.SharePoint.SPException";
const LOCK_EXCEPTION: &str = "-2147018894, Microsoft.SharePoint.SPFileLockException";
const BAD_QUERY: &str = "-1, Microsoft.SharePoint.Client.InvalidClientQueryException";

impl SpError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), retry_after: None }
    }

    fn bad_query(message: impl Into<String>) -> Self {
        Self::new(400, BAD_QUERY, message)
    }

    fn not_found(path: &str) -> Self {
        Self::new(
            404,
            "-1, Microsoft.SharePoint.Client.ResourceNotFoundException",
            format!("Cannot find resource for the request {path}."),
        )
    }

    fn file_not_found(server_relative: &str) -> Self {
        Self::new(404, &format!("-2130575338, {SP_EXCEPTION}"), format!("The file {server_relative} does not exist."))
    }

    fn folder_not_found() -> Self {
        Self::new(404, "-2147024894, System.IO.FileNotFoundException", "File Not Found.")
    }

    fn session_not_found() -> Self {
        Self::new(404, &format!("-2130246326, {SP_EXCEPTION}"), "The upload session was not found or has expired.")
    }

    fn access_denied() -> Self {
        Self::new(
            401,
            "-2147024891, System.UnauthorizedAccessException",
            "Access denied. You do not have permission to perform this action or access this resource.",
        )
    }

    fn security_validation() -> Self {
        Self::new(
            403,
            &format!("-2130575251, {SP_EXCEPTION}"),
            "The security validation for this page is invalid and might be corrupted. Please use your web browser's Back button to try your operation again.",
        )
    }

    fn too_big(max: u64) -> Self {
        Self::bad_query(format!(
            "The request message is too big. The server does not allow messages larger than {max} bytes."
        ))
    }

    fn locked(server_relative: &str, who: &str) -> Self {
        Self::new(423, LOCK_EXCEPTION, format!("The file \"{server_relative}\" is locked for shared use by {who}."))
    }

    fn busy() -> Self {
        Self::new(409, LOCK_EXCEPTION, "The file is locked: another chunk of this upload session is being received.")
    }

    fn bad_offset() -> Self {
        Self::new(
            400,
            "-2147024809, System.ArgumentOutOfRangeException",
            "Specified argument was out of the range of valid values.\r\nParameter name: fileOffset",
        )
    }

    fn bad_name() -> Self {
        Self::new(
            400,
            &format!("-2130575245, {SP_EXCEPTION}"),
            "The file or folder name contains characters that are not permitted. Please use a different name.",
        )
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(500, &format!("-2146232832, {SP_EXCEPTION}"), message)
    }

    fn storage(e: &std::io::Error) -> Self {
        if is_unstorable(e) { Self::bad_name() } else { Self::internal(e.to_string()) }
    }
}

// ---------------------------------------------------------------------------------------------
// The URL grammar.

/// A literal argument of a function segment.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    /// `'…'` (with `''` unescaped).
    Str(String),
    /// `guid'…'`.
    Guid(String),
    /// An integer (`123`, `123L`).
    Int(i64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A JSON object given through an alias (`@v={"DecodedUrl":"…"}`): its members are named
    /// arguments.
    Object(Vec<(String, Value)>),
}

impl Value {
    fn text(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Guid(s) => Some(s),
            _ => None,
        }
    }
}

/// One segment of an `_api` path: a name and, for a function, its arguments (named or
/// positional).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Segment {
    /// The name as written.
    pub(super) name: String,
    /// `None` without parentheses.
    pub(super) args: Option<Vec<(Option<String>, Value)>>,
}

impl Segment {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The argument named `name` (any case, also inside an object argument), else the
    /// positional argument at `position`.
    fn arg(&self, name: &str, position: Option<usize>) -> Option<&Value> {
        let args = self.args.as_deref()?;
        let named = args.iter().find_map(|(n, v)| n.as_deref().filter(|n| n.eq_ignore_ascii_case(name)).map(|_| v));
        let in_object = || {
            args.iter().find_map(|(n, v)| match (n, v) {
                (None, Value::Object(members)) => {
                    members.iter().find(|(m, _)| m.eq_ignore_ascii_case(name)).map(|(_, v)| v)
                }
                _ => None,
            })
        };
        let positional = || {
            let index = position?;
            args.iter().filter(|(n, v)| n.is_none() && !matches!(v, Value::Object(_))).nth(index).map(|(_, v)| v)
        };
        named.or_else(in_object).or_else(positional)
    }
}

/// Splits a decoded `_api` path into segments (on `/` outside parentheses and quotes) and
/// parses each; aliases (`@name`) are looked up in `aliases` (the decoded query string).
pub(super) fn parse_path(path: &str, aliases: &[(String, String)]) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut start = 0;
    let (mut depth, mut quoted) = (0usize, false);
    for (i, c) in path.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.checked_sub(1).ok_or("Unbalanced parentheses.")?,
            '/' if !quoted && depth == 0 => {
                segments.push(parse_segment(&path[start..i], aliases)?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted || depth != 0 {
        return Err("Unterminated string literal or parentheses.".into());
    }
    segments.push(parse_segment(&path[start..], aliases)?);
    Ok(segments)
}

fn parse_segment(text: &str, aliases: &[(String, String)]) -> Result<Segment, String> {
    if text.is_empty() {
        return Err("The path has an empty segment.".into());
    }
    let Some(open) = text.find('(') else {
        return Ok(Segment { name: text.to_owned(), args: None });
    };
    let name = &text[..open];
    let inner = text[open + 1..].strip_suffix(')').ok_or_else(|| format!("The segment {text:?} is malformed."))?;
    if name.is_empty() {
        return Err(format!("The segment {text:?} has no name."));
    }
    let mut args = Vec::new();
    for piece in split_args(inner) {
        let piece = piece.trim();
        if piece.is_empty() {
            if inner.trim().is_empty() {
                break;
            }
            return Err(format!("The segment {text:?} has an empty argument."));
        }
        // `name=value` when an identifier comes before the first `=` (a string literal or a
        // guid'…' starts with a quote or `guid'`, so `=` inside it is not seen here).
        let ident_end = piece.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(piece.len());
        let (arg_name, literal) = match piece[ident_end..].trim_start().strip_prefix('=') {
            Some(value) if ident_end > 0 => (Some(piece[..ident_end].to_owned()), value.trim()),
            _ => (None, piece),
        };
        args.push((arg_name, parse_literal(literal, aliases, true)?));
    }
    Ok(Segment { name: name.to_owned(), args: Some(args) })
}

/// The arguments of a function, split on `,` outside quotes.
fn split_args(inner: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in inner.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            ',' if !quoted => {
                pieces.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&inner[start..]);
    pieces
}

fn parse_literal(text: &str, aliases: &[(String, String)], alias_allowed: bool) -> Result<Value, String> {
    let quoted = |s: &str| -> Option<String> {
        let body = s.strip_prefix('\'')?.strip_suffix('\'')?;
        // Every quote inside comes doubled.
        let mut out = String::with_capacity(body.len());
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if c == '\'' && chars.next() != Some('\'') {
                return None;
            }
            out.push(c);
        }
        Some(out)
    };
    if text.starts_with('\'') {
        return quoted(text).map(Value::Str).ok_or_else(|| format!("The string literal {text} is malformed."));
    }
    // `get`, not indexing: the text is decoded user input, and byte 4 may fall inside a character.
    if let Some(rest) = text.get(..4).filter(|p| p.eq_ignore_ascii_case("guid")).and_then(|_| text.get(4..))
        && rest.starts_with('\'')
    {
        return quoted(rest).map(Value::Guid).ok_or_else(|| format!("The guid literal {text} is malformed."));
    }
    if let Some(alias) = text.strip_prefix('@') {
        if !alias_allowed {
            return Err(format!("The alias {text} names another alias."));
        }
        let value = aliases
            .iter()
            .find(|(n, _)| n.strip_prefix('@').is_some_and(|n| n.eq_ignore_ascii_case(alias)))
            .map(|(_, v)| v.trim())
            .ok_or_else(|| format!("The parameter alias {text} has no value in the query string."))?;
        if value.starts_with('{') {
            return json_object(value);
        }
        return parse_literal(value, aliases, false);
    }
    match text.to_ascii_lowercase().as_str() {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "null" => return Ok(Value::Null),
        _ => {}
    }
    let digits = text.strip_suffix(['L', 'l']).unwrap_or(text);
    let unsigned = digits.strip_prefix('-').unwrap_or(digits);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return digits.parse().map(Value::Int).map_err(|_| format!("The number {text} is out of range."));
    }
    Err(format!("The literal {text} is not valid."))
}

/// A JSON object alias as named arguments (strings, numbers, booleans, null).
fn json_object(text: &str) -> Result<Value, String> {
    let Ok(Json::Object(members)) = serde_json::from_str::<Json>(text) else {
        return Err(format!("The parameter alias value {text} is not a JSON object."));
    };
    let members = members
        .into_iter()
        .filter(|(k, _)| k != "__metadata")
        .map(|(k, v)| {
            let v = match v {
                Json::String(s) => Value::Str(s),
                Json::Bool(b) => Value::Bool(b),
                Json::Null => Value::Null,
                Json::Number(n) => n.as_i64().map(Value::Int).ok_or("A number in the alias is not an integer.")?,
                _ => return Err("The alias holds a nested value.".to_owned()),
            };
            Ok((k, v))
        })
        .collect::<Result<_, String>>()?;
    Ok(Value::Object(members))
}

/// How a request names a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FileRef {
    /// By server-relative (or site-relative) path, decoded.
    Path(String),
    /// By `UniqueId`.
    Id(String),
}

/// A recognised REST call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Call {
    /// `POST contextinfo`
    ContextInfo,
    /// `POST {folder}/Files/add(…)` or `…/Files/AddUsingPath(…)`.
    AddFile {
        /// The folder, decoded (server- or site-relative).
        folder: String,
        /// The `url` / `DecodedUrl` argument.
        name: String,
        /// `overwrite`.
        overwrite: bool,
    },
    /// `GET {file}`.
    GetFile(FileRef),
    /// `GET {file}/$value`.
    Download(FileRef),
    /// `{file}/StartUpload(…)` and the rest of the family.
    Chunk {
        /// Which one.
        op: Operation,
        /// The file.
        file: FileRef,
        /// `uploadId`, lower case without braces (`None`: not in the URL; CancelUpload and
        /// GetUploadStatus may carry it in a JSON body).
        upload_id: Option<String>,
        /// `fileOffset`.
        offset: Option<u64>,
    },
}

impl Call {
    pub(super) fn operation(&self) -> Operation {
        match self {
            Call::ContextInfo => Operation::ContextInfo,
            Call::AddFile { .. } => Operation::AddFile,
            Call::GetFile(_) => Operation::GetFile,
            Call::Download(_) => Operation::DownloadFile,
            Call::Chunk { op, .. } => *op,
        }
    }

    fn file(&self) -> Option<&FileRef> {
        match self {
            Call::GetFile(f) | Call::Download(f) | Call::Chunk { file: f, .. } => Some(f),
            _ => None,
        }
    }
}

/// A GUID in its plain lower-case form (braces, `guid'…'` already gone); `None` if it is not one.
pub(super) fn normalize_guid(text: &str) -> Option<String> {
    let t = text.trim().trim_start_matches('{').trim_end_matches('}');
    let groups: Vec<&str> = t.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
    (shape && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))).then(|| t.to_ascii_lowercase())
}

/// The call a request makes, from the segments after `_api/`.
pub(super) fn recognise(method: &str, segments: &[Segment]) -> Result<Call, SpError> {
    let wrong_method = || SpError::bad_query(format!("The HTTP method {method} is not allowed for this resource."));
    let bad_query = |m: String| SpError::bad_query(m);
    match segments {
        [one] if one.is("contextinfo") && one.args.is_none() => {
            if method == "POST" {
                Ok(Call::ContextInfo)
            } else {
                Err(wrong_method())
            }
        }
        [web, folder, files, add] if web.is("web") && files.is("files") && files.args.is_none() => {
            let folder = folder_path(folder).ok_or_else(|| SpError::not_found(&folder.name))?;
            let (name, overwrite) = if add.is("add") || add.is("addusingpath") {
                let name = add
                    .arg("url", Some(0))
                    .or_else(|| add.arg("decodedurl", Some(0)))
                    .and_then(Value::text)
                    .ok_or_else(|| bad_query("The file name (url or DecodedUrl) is missing.".into()))?;
                let overwrite = match add.arg("overwrite", Some(1)) {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(bad_query("overwrite must be true or false.".into())),
                };
                (name.to_owned(), overwrite)
            } else {
                return Err(SpError::not_found(&add.name));
            };
            if method != "POST" {
                return Err(wrong_method());
            }
            Ok(Call::AddFile { folder, name, overwrite })
        }
        [web, file, rest @ ..] if web.is("web") && rest.len() <= 1 => {
            let file = file_ref(file)?;
            let Some(action) = rest.first() else {
                return if method == "GET" { Ok(Call::GetFile(file)) } else { Err(wrong_method()) };
            };
            if action.is("$value") && action.args.is_none() {
                return if method == "GET" { Ok(Call::Download(file)) } else { Err(wrong_method()) };
            }
            let op = [
                ("startupload", Operation::StartUpload),
                ("continueupload", Operation::ContinueUpload),
                ("finishupload", Operation::FinishUpload),
                ("cancelupload", Operation::CancelUpload),
                ("getuploadstatus", Operation::GetUploadStatus),
            ]
            .into_iter()
            .find(|(n, _)| action.is(n))
            .map(|(_, op)| op)
            .ok_or_else(|| SpError::not_found(&action.name))?;
            let allowed = method == "POST" || (method == "GET" && op == Operation::GetUploadStatus);
            if !allowed {
                return Err(wrong_method());
            }
            let upload_id = match action.arg("uploadid", Some(0)) {
                None => None,
                Some(v) => Some(
                    v.text()
                        .and_then(normalize_guid)
                        .ok_or_else(|| bad_query("The uploadId parameter is not a valid Guid.".into()))?,
                ),
            };
            let offset = match action.arg("fileoffset", Some(1)) {
                None => None,
                Some(Value::Int(n)) => Some(u64::try_from(*n).map_err(|_| SpError::bad_offset())?),
                Some(Value::Str(s)) => Some(s.trim().parse().map_err(|_| SpError::bad_offset())?),
                Some(_) => return Err(bad_query("The fileOffset parameter is not a valid Int64.".into())),
            };
            let needs_id = matches!(op, Operation::StartUpload | Operation::ContinueUpload | Operation::FinishUpload);
            if needs_id && upload_id.is_none() {
                return Err(bad_query("The uploadId parameter is missing.".into()));
            }
            let needs_offset = matches!(op, Operation::ContinueUpload | Operation::FinishUpload);
            if needs_offset && offset.is_none() {
                return Err(bad_query("The fileOffset parameter is missing.".into()));
            }
            Ok(Call::Chunk { op, file, upload_id, offset })
        }
        _ => Err(SpError::not_found(&segments.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join("/"))),
    }
}

fn folder_path(segment: &Segment) -> Option<String> {
    if segment.is("getfolderbyserverrelativeurl") {
        segment.arg("serverrelativeurl", Some(0)).and_then(Value::text).map(str::to_owned)
    } else if segment.is("getfolderbyserverrelativepath") {
        segment.arg("decodedurl", Some(0)).and_then(Value::text).map(str::to_owned)
    } else {
        None
    }
}

fn file_ref(segment: &Segment) -> Result<FileRef, SpError> {
    let missing = || SpError::bad_query(format!("{} needs its argument.", segment.name));
    if segment.is("getfilebyserverrelativeurl") {
        let url = segment.arg("serverrelativeurl", Some(0)).and_then(Value::text).ok_or_else(missing)?;
        Ok(FileRef::Path(url.to_owned()))
    } else if segment.is("getfilebyserverrelativepath") {
        let url = segment.arg("decodedurl", Some(0)).and_then(Value::text).ok_or_else(missing)?;
        Ok(FileRef::Path(url.to_owned()))
    } else if segment.is("getfilebyid") {
        let id = segment.arg("uniqueid", Some(0)).and_then(Value::text).ok_or_else(missing)?;
        let id = normalize_guid(id).ok_or_else(|| SpError::bad_query("The file id is not a valid Guid."))?;
        Ok(FileRef::Id(id))
    } else {
        Err(SpError::not_found(&segment.name))
    }
}

/// The site (its index in `sites`) and the decoded `_api` path of a request path; `None` when
/// the path is not under the `_api` of a known site.
pub(super) fn split_site(sites: &[(String, String)], decoded: &str) -> Option<(usize, String)> {
    let lower = decoded.to_ascii_lowercase();
    let at = lower.find("/_api/")?;
    let site = decoded[..at].trim_end_matches('/');
    let index = sites.iter().position(|(s, _)| s.trim_end_matches('/').eq_ignore_ascii_case(site))?;
    Some((index, decoded[at + "/_api/".len()..].to_owned()))
}

/// The drive path ("" for the library root) of a server-relative (`/sites/x/Shared Documents/a`)
/// or site-relative (`Shared Documents/a`) path of `site`; `None` when it is outside the
/// library. Absolute URLs lose their scheme and host first.
pub(super) fn library_path(site: &str, given: &str) -> Option<String> {
    let mut given = given.trim();
    for scheme in ["https://", "http://"] {
        // `get`, not indexing: the end of the scheme may fall inside a character of user input.
        if given.len() > scheme.len()
            && let Some(rest) =
                given.get(..scheme.len()).filter(|h| h.eq_ignore_ascii_case(scheme)).and(given.get(scheme.len()..))
        {
            given = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    let strip = |s: &str, prefix: &str| -> Option<String> {
        let head = s.get(..prefix.len())?;
        head.eq_ignore_ascii_case(prefix).then(|| s[prefix.len()..].to_owned())
    };
    let rest = if given.starts_with('/') {
        strip(given, &format!("{}/{LIBRARY}", site.trim_end_matches('/')))?
    } else {
        strip(given, LIBRARY)?
    };
    let rest = rest.strip_suffix('/').unwrap_or(&rest);
    match rest.strip_prefix('/') {
        None if rest.is_empty() => Some(String::new()),
        Some(inner) if !inner.is_empty() && !inner.split('/').any(str::is_empty) => Some(inner.to_owned()),
        _ => None,
    }
}

/// The server-relative URL of a drive path in a site.
fn server_relative(site: &str, path: &str) -> String {
    let library = format!("{}/{LIBRARY}", site.trim_end_matches('/'));
    if path.is_empty() { library } else { format!("{library}/{path}") }
}

/// Whether SharePoint takes `name` as a file name.
pub(super) fn valid_name(name: &str) -> bool {
    const FORBIDDEN: &[char] = &['"', '*', ':', '<', '>', '?', '/', '\\', '|'];
    !name.is_empty()
        && name.chars().count() <= MAX_NAME
        && !name.contains(FORBIDDEN)
        && !name.chars().any(char::is_control)
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && !name.ends_with('.')
}

// ---------------------------------------------------------------------------------------------
// Answers.

/// The OData JSON flavour of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavour {
    Verbose,
    Minimal,
    NoMetadata,
}

impl Flavour {
    pub(super) fn from_accept(accept: Option<&str>) -> Self {
        let accept = accept.unwrap_or_default().to_ascii_lowercase();
        if accept.contains("odata=verbose") {
            Flavour::Verbose
        } else if accept.contains("odata=nometadata") {
            Flavour::NoMetadata
        } else {
            Flavour::Minimal
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Flavour::Verbose => "application/json;odata=verbose;streaming=true;charset=utf-8",
            Flavour::Minimal => "application/json;odata=minimalmetadata;streaming=true;charset=utf-8",
            Flavour::NoMetadata => "application/json;odata=nometadata;streaming=true;charset=utf-8",
        }
    }
}

fn json_reply(flavour: Flavour, doc: &Json) -> Result<Reply, SpError> {
    let body = serde_json::to_vec(doc).map_err(|e| SpError::internal(e.to_string()))?;
    Response::builder()
        .status(200)
        .header("content-type", flavour.content_type())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| SpError::internal(e.to_string()))
}

fn error_reply(e: &SpError, flavour: Flavour, tenant: &str) -> Reply {
    let error = json!({ "code": e.code, "message": { "lang": "en-US", "value": e.message } });
    let doc = match flavour {
        Flavour::Verbose => json!({ "error": error }),
        _ => json!({ "odata.error": error }),
    };
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", flavour.content_type());
    if let Some(s) = e.retry_after {
        builder = builder.header("retry-after", s.to_string());
    }
    if e.status == 401 {
        builder = builder.header(
            "www-authenticate",
            format!("Bearer realm=\"{tenant}\",client_id=\"00000003-0000-0ff1-ce00-000000000000\""),
        );
    }
    let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    builder.body(Full::new(body)).unwrap_or_else(|_| empty(500))
}

/// An Int64 result (as a JSON string) of method `method`.
fn int64(flavour: Flavour, web: &str, method: &str, value: u64) -> Json {
    match flavour {
        Flavour::Verbose => json!({ "d": { method: value.to_string() } }),
        Flavour::Minimal => {
            json!({ "odata.metadata": format!("{web}/_api/$metadata#Edm.Int64"), "value": value.to_string() })
        }
        Flavour::NoMetadata => json!({ "value": value.to_string() }),
    }
}

/// An entity in the flavour: `fields` plus its metadata.
fn entity(flavour: Flavour, type_name: &str, metadata: &str, id: Option<&str>, fields: Map<String, Json>) -> Json {
    match flavour {
        Flavour::NoMetadata => Json::Object(fields),
        Flavour::Minimal => {
            let mut doc = Map::new();
            doc.insert("odata.metadata".into(), metadata.into());
            doc.insert("odata.type".into(), type_name.into());
            if let Some(id) = id {
                doc.insert("odata.id".into(), id.into());
                let edit = id.split_once("/_api/").map_or(id, |(_, e)| e);
                doc.insert("odata.editLink".into(), edit.into());
            }
            doc.extend(fields);
            Json::Object(doc)
        }
        Flavour::Verbose => {
            let mut meta = Map::new();
            if let Some(id) = id {
                meta.insert("id".into(), id.into());
                meta.insert("uri".into(), id.into());
            }
            meta.insert("type".into(), type_name.into());
            let mut doc = Map::new();
            doc.insert("__metadata".into(), Json::Object(meta));
            doc.extend(fields);
            json!({ "d": doc })
        }
    }
}

/// SharePoint's time format (UTC, seconds, `Z`) of a Graph time.
fn sp_time(graph: &str) -> String {
    DateTime::parse_from_rfc3339(graph)
        .map(|t| t.with_timezone(&Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| graph.to_owned())
}

/// The `UniqueId` of an item: its stable GUID, in lower case.
fn unique_id(item: &ItemRec) -> String {
    item_guid(&item.id).to_ascii_lowercase()
}

/// The SP.File of a file item.
fn file_doc(flavour: Flavour, web: &str, site: &str, path: &str, item: &ItemRec) -> Json {
    let size = match &item.kind {
        Kind::File { size, .. } => *size,
        Kind::Folder => 0,
    };
    let tag = item_guid(&item.id);
    let v = item.version;
    let url = server_relative(site, path);
    let fields = json!({
        "CheckInComment": "",
        "CheckOutType": 2,
        "ContentTag": format!("{{{tag}}},{v},{v}"),
        "CustomizedPageStatus": 0,
        "ETag": format!("\"{{{tag}}},{v}\""),
        "Exists": true,
        "IrmEnabled": false,
        "Length": size.to_string(),
        "Level": 1,
        "LinkingUri": null,
        "LinkingUrl": "",
        "MajorVersion": v,
        "MinorVersion": 0,
        "Name": split_parent(path).1,
        "ServerRelativeUrl": url,
        "TimeCreated": sp_time(&item.created),
        "TimeLastModified": sp_time(&item.modified),
        "Title": null,
        "UIVersion": 512 * v,
        "UIVersionLabel": format!("{v}.0"),
        "UniqueId": unique_id(item),
    });
    let Json::Object(fields) = fields else { return Json::Null };
    let id = format!("{web}/_api/Web/GetFileByServerRelativePath(decodedurl='{}')", url.replace('\'', "''"));
    entity(flavour, "SP.File", &format!("{web}/_api/$metadata#SP.ApiData.Files12/@Element"), Some(&id), fields)
}

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

/// Who holds a lock on (drive, path), if a live session does.
fn lock_holder(store: &mut Store, drive: &str, path: &str, except: Option<&str>) -> Option<String> {
    store.rest.sweep();
    store
        .rest
        .sessions
        .iter()
        .find(|(id, s)| s.drive == drive && s.path == path && Some(id.as_str()) != except)
        .map(|(_, s)| s.owner.clone())
}

fn add_file(req: &Req<'_>, folder: &str, name: &str, overwrite: bool, body: Bytes) -> Result<Reply, SpError> {
    let config = &req.shared.config;
    let folder_path = library_path(&req.site, folder).ok_or_else(SpError::folder_not_found)?;
    {
        let store = req.shared.store();
        match store.item(&req.drive, &folder_path) {
            Some(ItemRec { kind: Kind::Folder, .. }) => {}
            _ => return Err(SpError::folder_not_found()),
        }
    }
    // A name, or a path that ends in the folder.
    let name = if name.contains('/') {
        let path = library_path(&req.site, name).ok_or_else(SpError::bad_name)?;
        let (parent, leaf) = split_parent(&path);
        if parent != folder_path {
            return Err(SpError::bad_name());
        }
        leaf.to_owned()
    } else {
        name.to_owned()
    };
    if !valid_name(&name) {
        return Err(SpError::bad_name());
    }
    let path = join(&folder_path, &name);
    let url = server_relative(&req.site, &path);
    if url.chars().count() > MAX_PATH {
        return Err(SpError::new(
            400,
            &format!("-2130575245, {SP_EXCEPTION}"),
            "The specified file or folder name is too long. The URL path for all files and folders must be 400 characters or less (and no more than 255 characters for any single file or folder name in the URL). Please enter a shorter file or folder name.",
        ));
    }
    if !req.shared.storage.accepts_key(&path) {
        return Err(SpError::bad_name());
    }
    {
        let mut store = req.shared.store();
        match store.item(&req.drive, &path) {
            Some(ItemRec { kind: Kind::Folder, .. }) => {
                return Err(SpError::new(
                    400,
                    &format!("-2130575257, {SP_EXCEPTION}"),
                    format!("A folder with the name {url} already exists."),
                ));
            }
            Some(existing) if !overwrite => {
                return Err(SpError::new(
                    400,
                    &format!("-2130575257, {SP_EXCEPTION}"),
                    format!(
                        "A file with the name {url} already exists. It was last modified by {} on {}.",
                        req.user,
                        sp_time(&existing.modified)
                    ),
                ));
            }
            _ => {}
        }
        if let Some(holder) = lock_holder(&mut store, &req.drive, &path, None) {
            return Err(SpError::locked(&url, &holder));
        }
    }
    // The bytes: kept beside, then made the file (a rename in directory mode).
    let mut quickxor = QuickXor::new();
    quickxor.update(&body);
    let size = body.len() as u64;
    let blob = if config.discard_bodies {
        Blob::Discarded
    } else {
        let kept =
            req.shared.storage.keep(&format!("rest-add-{}", unique()), &body).map_err(|e| SpError::storage(&e))?;
        req.shared.storage.promote(&req.drive, &path, kept).map_err(|e| SpError::storage(&e))?
    };
    let mut store = req.shared.store();
    let created = store.item(&req.drive, &path).is_none();
    let stored = super::library::Stored { blob, size, quickxor: quickxor.finish() };
    let library = store.libraries.contains(&req.drive);
    let stored = super::library::keep(library, &path, stored).map_err(|e| SpError::storage(&e))?;
    let id = put_file(&mut store, &req.drive, &path, stored);
    if created && size == 0 {
        store.rest.stubs.insert(id);
    } else {
        store.rest.stubs.remove(&id);
    }
    let item = store.item(&req.drive, &path).ok_or_else(SpError::folder_not_found)?;
    json_reply(req.flavour, &file_doc(req.flavour, &req.web, &req.site, &path, item))
}

/// Makes `blob` the content of the file at `path` (a new item, or the same item with a new
/// version); the folders on the way exist from now on. Returns the item id.
fn put_file(store: &mut Store, drive: &str, path: &str, stored: super::library::Stored) -> String {
    let super::library::Stored { blob, size, quickxor } = stored;
    let now = super::iso(Utc::now());
    let mut folder = split_parent(path).0;
    while !folder.is_empty() {
        let key = (drive.to_owned(), folder.to_owned());
        if !store.items.contains_key(&key) {
            let fid = new_item_id();
            store.ids.insert(fid.clone(), key.clone());
            let rec = ItemRec {
                id: fid,
                kind: Kind::Folder,
                version: 1,
                created: now.clone(),
                modified: now.clone(),
                description: None,
            };
            store.items.insert(key, rec);
        }
        folder = split_parent(folder).0;
    }
    let key = (drive.to_owned(), path.to_owned());
    let previous = store.items.get(&key).cloned();
    let item = ItemRec {
        id: previous.as_ref().map_or_else(new_item_id, |p| p.id.clone()),
        kind: Kind::File { blob, size, quickxor, mime: mime_type(split_parent(path).1).into() },
        version: previous.as_ref().map_or(1, |p| p.version + 1),
        created: previous.as_ref().map_or_else(|| now.clone(), |p| p.created.clone()),
        modified: now,
        description: previous.and_then(|p| p.description),
    };
    let id = item.id.clone();
    store.ids.insert(id.clone(), key.clone());
    store.items.insert(key, item);
    id
}

/// Where a session keeps its bytes in directory mode.
fn session_file(req: &Req<'_>, upload_id: &str) -> Option<std::path::PathBuf> {
    let dir = req.shared.storage.dir()?;
    (!req.shared.config.discard_bodies).then(|| dir.join(".uploads").join(format!("rest-{upload_id}-{}", unique())))
}

fn start_upload(req: &Req<'_>, file: &FileRef, upload_id: &str, body: Bytes) -> Result<Reply, SpError> {
    let config = &req.shared.config;
    let path = {
        let mut store = req.shared.store();
        let path = existing_file(req, &store, file)?;
        if let Some(holder) = lock_holder(&mut store, &req.drive, &path, Some(upload_id)) {
            return Err(SpError::locked(&server_relative(&req.site, &path), &holder));
        }
        if let Some(s) = store.rest.sessions.get(upload_id)
            && (s.drive != req.drive || s.path != path)
        {
            return Err(SpError::new(
                400,
                "-2147024809, System.ArgumentException",
                "The upload session belongs to another file.",
            ));
        }
        path
    };
    // The first chunk, written outside the lock.
    let target = session_file(req, upload_id);
    if let Some(p) = &target {
        write_at(p, 0, &body).map_err(|e| SpError::storage(&e))?;
    }
    let mut quickxor = QuickXor::new();
    quickxor.update(&body);
    let content = match target {
        Some(p) => Content::File(p),
        None if config.discard_bodies => Content::Discarded,
        None => Content::Memory(vec![body.clone()]),
    };
    let mut store = req.shared.store();
    let session = RestSession {
        drive: req.drive.clone(),
        path,
        owner: req.user.clone(),
        received: body.len() as u64,
        chunks: 1,
        content,
        quickxor,
        expires: after(config.rest_session_idle),
        expires_at: later(config.rest_session_idle),
        // Still claimed by this request if it restarts a session.
        busy: store.rest.sessions.get(upload_id).is_some_and(|s| s.busy),
    };
    let received = session.received;
    // The same uploadId starts over with the new body.
    if let Some(old) = store.rest.sessions.insert(upload_id.to_owned(), session) {
        old.content.discard();
    }
    json_reply(req.flavour, &int64(req.flavour, &req.web, "StartUpload", received))
}

/// The live session `upload_id` on the file at `path`.
fn live_session<'s>(
    store: &'s mut Store,
    drive: &str,
    path: &str,
    upload_id: &str,
) -> Result<&'s mut RestSession, SpError> {
    store.rest.sweep();
    match store.rest.sessions.get_mut(upload_id) {
        Some(s) if s.drive == drive && s.path == path => Ok(s),
        _ => Err(SpError::session_not_found()),
    }
}

fn chunk(
    req: &Req<'_>,
    op: Operation,
    file: &FileRef,
    upload_id: &str,
    offset: u64,
    body: Bytes,
) -> Result<Reply, SpError> {
    let config = &req.shared.config;
    let (path, target) = {
        let mut store = req.shared.store();
        let path = resolve_file(&store, &req.site, &req.drive, file)?;
        let s = live_session(&mut store, &req.drive, &path, upload_id)?;
        if offset != s.received {
            return Err(SpError::bad_offset());
        }
        let target = match &s.content {
            Content::File(p) => Some(p.clone()),
            _ => None,
        };
        (path, target)
    };
    // Written outside the lock; the claim keeps other chunks of the session out meanwhile.
    if let Some(p) = &target {
        write_at(p, offset, &body).map_err(|e| SpError::storage(&e))?;
    }
    let mut store = req.shared.store();
    let Some(s) = store.rest.sessions.get_mut(upload_id) else {
        // Cancelled while the chunk was on its way.
        return Err(SpError::session_not_found());
    };
    if let Content::Memory(parts) = &mut s.content
        && !config.discard_bodies
    {
        parts.push(body.clone());
    }
    s.quickxor.update(&body);
    s.received += body.len() as u64;
    s.chunks += 1;
    s.expires = after(config.rest_session_idle);
    s.expires_at = later(config.rest_session_idle);
    if op == Operation::ContinueUpload {
        let received = s.received;
        return json_reply(req.flavour, &int64(req.flavour, &req.web, "ContinueUpload", received));
    }
    // FinishUpload: the session's bytes become the file.
    let Some(s) = store.rest.sessions.remove(upload_id) else { return Err(SpError::session_not_found()) };
    let blob = match s.content {
        Content::Memory(parts) => Blob::Parts(parts),
        Content::File(p) => Blob::File(p),
        Content::Discarded => Blob::Discarded,
    };
    let blob = req.shared.storage.promote(&req.drive, &path, blob).map_err(|e| SpError::storage(&e))?;
    let stored = super::library::Stored { blob, size: s.received, quickxor: s.quickxor.finish() };
    let library = store.libraries.contains(&req.drive);
    let stored = super::library::keep(library, &path, stored).map_err(|e| SpError::storage(&e))?;
    let id = put_file(&mut store, &req.drive, &path, stored);
    store.rest.stubs.remove(&id);
    let item = store.item(&req.drive, &path).ok_or_else(SpError::folder_not_found)?;
    json_reply(req.flavour, &file_doc(req.flavour, &req.web, &req.site, &path, item))
}

fn cancel_upload(req: &Req<'_>, file: &FileRef, upload_id: &str) -> Result<Reply, SpError> {
    let mut store = req.shared.store();
    let path = resolve_file(&store, &req.site, &req.drive, file)?;
    live_session(&mut store, &req.drive, &path, upload_id)?;
    if let Some(s) = store.rest.sessions.remove(upload_id) {
        s.content.discard();
    }
    // A stub Files/add made for this upload, never written since, goes too.
    let key = (req.drive.clone(), path);
    let stub = store.items.get(&key).filter(|item| {
        store.rest.stubs.contains(&item.id)
            && item.version == 1
            && matches!(item.kind, Kind::File { size: 0, .. })
            && !store.rest.sessions.values().any(|s| s.drive == key.0 && s.path == key.1)
    });
    if let Some(item) = stub.cloned() {
        store.rest.stubs.remove(&item.id);
        store.ids.remove(&item.id);
        store.items.remove(&key);
        if let Kind::File { blob, .. } = item.kind {
            blob.remove();
        }
    }
    let doc = match req.flavour {
        Flavour::Verbose => json!({ "d": { "CancelUpload": null } }),
        _ => json!({ "odata.null": true }),
    };
    json_reply(req.flavour, &doc)
}

fn upload_status(req: &Req<'_>, file: &FileRef, upload_id: &str) -> Result<Reply, SpError> {
    let mut store = req.shared.store();
    let path = resolve_file(&store, &req.site, &req.drive, file)?;
    let s = live_session(&mut store, &req.drive, &path, upload_id)?;
    let fields = json!({
        "ExpectedContentRange": s.received.to_string(),
        "ExpirationDateTime": s.expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "UploadId": upload_id,
    });
    let Json::Object(fields) = fields else { return Err(SpError::internal("unreachable")) };
    let doc = entity(
        req.flavour,
        "SP.Utilities.UploadStatus",
        &format!("{}/_api/$metadata#SP.Utilities.UploadStatus", req.web),
        None,
        fields,
    );
    let doc = match (req.flavour, doc) {
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
