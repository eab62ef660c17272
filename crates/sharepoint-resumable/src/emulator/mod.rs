//! An in-process Microsoft Graph and SharePoint server (feature `emulator`) for tests,
//! benchmarks, the CLI and users' own tests.
//!
//! It runs three listeners. Graph uploads meet two hosts: the Graph host (`…/v1.0`, which also
//! serves the identity platform's token endpoint `/{tenant}/oauth2/v2.0/token`) and the upload
//! host, where the opaque, pre-authenticated `uploadUrl` of every session points
//! (`http://127.0.0.1:<port>/up/<session>?tempauth=<token>`). The third is the SharePoint host
//! ([`Emulator::sharepoint_url`], the tenant's `https://contoso.sharepoint.com`), serving the
//! classic REST API's chunked upload (`StartUpload`, `ContinueUpload`, `FinishUpload`,
//! `CancelUpload`, `GetUploadStatus`), `Files/add`, file metadata and content and `contextinfo`
//! under `{site}/_api/` for each of [`EmulatorConfig::rest_sites`]. The document library of a
//! REST site (`{site}/Shared Documents`) is the root of its Graph drive: a file stored through
//! REST is the item Graph sees, and the other way round. The REST host takes the Graph host's
//! bearer tokens, or a cookie of [`EmulatorConfig::cookies`] with a form digest; its rules, and
//! what the emulator decides where SharePoint's behaviour is not documented, are described in
//! the `rest` module's documentation, reproduced here in short: OData function names and
//! parameters in any case, `''` quotes, `guid'…'`, parameter aliases; 400 for a wrong
//! `fileOffset`, 404 for an unknown or expired `uploadId`, 423 while another session holds the
//! file, 409 for a second chunk in flight, 403 for a cookie request without a live digest, 401
//! without credentials, 400 for a body over [`EmulatorConfig::rest_max_request`]; answers in
//! the verbose, minimalmetadata or nometadata flavour `Accept` asks for.
//!
//! What makes Graph strict:
//!
//! * a bearer token on every Graph call (fixed tokens, and client-credentials tokens that
//!   expire; 401 `unauthenticated`), and **no** `Authorization` header on the upload URL (401
//!   there too, unless [`EmulatorConfig::allow_auth_on_upload_url`]), whose `tempauth` lasts
//!   [`EmulatorConfig::session_max`] from creation and is never extended (401
//!   `unauthenticated`/`expiredToken` with `WWW-Authenticate: … expired_token`);
//! * createUploadSession for `/drives/{id}`, `/me/drive`, `/sites/{id}/drive`,
//!   `/groups/{id}/drive` and `/users/{id}/drive`, by `root:/{path}:`, by
//!   `items/{parent}:/{name}:` or by `items/{id}` (replace that file), and the whole
//!   `root:/{path}:` or `{item-id}:/{name}:` percent-encoded as one id segment, as
//!   Kiota-generated SDKs send it (`items/root%3A%2Fdir%2Fa.bin%3A/createUploadSession`: the
//!   segment is decoded once and then read like the colon syntax; this holds for every Graph
//!   call); path segments decoded one by one and strictly; `item.name` matching the path;
//!   `conflictBehavior` fail, replace or rename (the default is configurable: the docs say
//!   fail, the service does replace); `If-Match`/`If-None-Match` (412 `resourceModified`); one
//!   live session per name (409 `nameAlreadyExists`); `deferCommit`; `fileSize` checked against
//!   [`EmulatorConfig::quota`] with what the drive holds (507 `quotaLimitReached`, no session);
//! * fragments strictly in order and one at a time: `Content-Range: bytes s-e/T` with a matching
//!   `Content-Length` (411, 400), the same total every time (400 `fragmentLengthMismatch`),
//!   below 60 MiB (413 `maxFragmentLengthExceeded`), starting at the next missing byte (416
//!   `invalidRange` with `fragmentOverlap` or `fragmentOutOfOrder`), multiples of 320 KiB but
//!   the last (400, [`EmulatorConfig::strict_alignment`]); a second fragment while one is in
//!   flight on the same session is refused with 409;
//! * bounded bodies on both hosts: one of 60 MiB or more is refused (413; a fragment's as
//!   `maxFragmentLengthExceeded`) without being kept, and one sent without `Content-Length`
//!   (chunked) is read only up to that limit, never to its end (a fragment's not kept at all:
//!   it is refused with 411);
//! * 202 with `nextExpectedRanges` while bytes are missing (`"26-"` as documented, or
//!   `"26-127"` as the service has also been seen to write it, with
//!   [`EmulatorConfig::ranges_with_end`]; status GETs alike), the session's expiry pushed by each
//!   fragment; 201 (new) or 200 (replaced) with the driveItem on the last byte, or 202 with
//!   `nextExpectedRanges: []` and a `POST` to commit when the session defers; a name taken in
//!   the meantime with `fail` answers 409 and keeps the session, so does a drive over its
//!   quota (507); `rename` picks `name 1.ext`;
//! * the explicit commit: `PUT` to an item's Graph address (any drive form, `root:/{path}:`,
//!   `items/{parent}:/{name}:` or `items/{id}`) with the bearer token and a JSON body with
//!   `"@microsoft.graph.sourceUrl": "<uploadUrl>"` (and optionally `name`, which must be the
//!   address's, and `@microsoft.graph.conflictBehavior`, else the session's) commits a session
//!   whose bytes are all in (deferred, or kept after a 409 or 507 on its last fragment) as the
//!   item at that address: 201 or 200 with the driveItem, 409 for `fail` on a taken name, 412
//!   for `If-Match`/`If-None-Match`, 400 `uploadSessionIncomplete` while bytes are missing, 404
//!   for a URL that is not a live session's;
//! * `GET` (status), `DELETE` (204, then 404) and expiry (404 `itemNotFound`) of upload URLs;
//! * items with id, eTag, cTag, times, parent reference and the QuickXorHash of their content;
//! * Graph's error document with `innerError` (date, request-id, client-request-id) on the Graph
//!   host, the OneDrive form with a lower-case `innererror` and a detail code on the upload host,
//!   `request-id` on every answer (and `SPRequestGuid` on the upload host);
//! * storage in memory or in a directory (`<dir>/<drive>/<path>`), the shared fault injection
//!   and request log.
//!
//! Folders are implied by the paths of files: committing `dir/sub/a.bin` creates `dir` and
//! `dir/sub` (each gets an id, usable as `items/{id}:/{name}:` parent and readable with GET). The
//! drive root is the item `root` (an alias of its id). Names are compared exactly (OneDrive
//! compares them without regard to case).
//!
//! ```
//! use sharepoint_resumable::emulator::{Emulator, EmulatorConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! let config = emulator.client_config();
//! let http = reqwest::Client::new();
//! // createUploadSession needs the bearer token…
//! let created = http
//!     .post(format!("{}/me/drive/root:/docs/hello.txt:/createUploadSession", config.graph_url))
//!     .bearer_auth(emulator.token())
//!     .send()
//!     .await?;
//! assert_eq!(created.status(), 200);
//! let session: serde_json::Value = serde_json::from_slice(&created.bytes().await?)?;
//! let upload_url = session["uploadUrl"].as_str().ok_or("no uploadUrl")?;
//! // …and the upload URL must not get it.
//! let done = http.put(upload_url).header("content-range", "bytes 0-4/5").body("hello").send().await?;
//! assert_eq!(done.status(), 201);
//! assert_eq!(emulator.item_content("drive-1", "docs/hello.txt").as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```

mod library;
mod rest;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::io::{Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use upload_core::emulator::{
    Blob, Body, Discarded, Dropped, Reply, Server, Storage, empty, is_unstorable, parse_query, read_body, take_fault,
    text_headers, unique,
};
use upload_core::hash::{Hashes as HashKinds, QuickXor};

pub use upload_core::emulator::FaultAction;

use crate::types::*;
use routes::{DriveRef, Host, Route, Target};

/// The operations the emulator knows, for faults and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Operation {
    /// `POST /{tenant}/oauth2/v2.0/token` (identity platform)
    Token,
    /// `POST …/createUploadSession` (Graph)
    CreateUploadSession,
    /// `PUT {uploadUrl}`
    UploadFragment,
    /// `GET {uploadUrl}`
    GetSessionStatus,
    /// `DELETE {uploadUrl}`
    CancelSession,
    /// `POST {uploadUrl}` (the commit of a deferred session)
    CommitSession,
    /// `GET …/root:/{path}` or `GET …/items/{id}` (Graph)
    GetItem,
    /// `GET …/content` (Graph)
    DownloadItem,
    /// `PUT …/root:/{path}:`, `PUT …/items/{parent}:/{name}:` or `PUT …/items/{id}` (Graph) with
    /// `@microsoft.graph.sourceUrl`: the explicit commit of an upload session
    CommitBySourceUrl,
    /// `POST {web}/_api/contextinfo` (SharePoint REST)
    ContextInfo,
    /// `POST {folder}/Files/add(…)` or `…/Files/AddUsingPath(…)` (SharePoint REST)
    AddFile,
    /// `GET {file}` (SharePoint REST)
    GetFile,
    /// `POST {file}/StartUpload(…)` (SharePoint REST); its fault part number is 0
    StartUpload,
    /// `POST {file}/ContinueUpload(…)` (SharePoint REST); its fault part number is the number of
    /// chunks the session accepted before it (1 for the first ContinueUpload)
    ContinueUpload,
    /// `POST {file}/FinishUpload(…)` (SharePoint REST); part number as for ContinueUpload
    FinishUpload,
    /// `POST {file}/CancelUpload(…)` (SharePoint REST)
    CancelUpload,
    /// `GET` or `POST {file}/GetUploadStatus(…)` (SharePoint REST)
    GetUploadStatus,
    /// `GET {file}/$value` (SharePoint REST)
    DownloadFile,
}

/// A fault: which requests it hits, how often, and what it does. For fragments the part number
/// is the fragment's index on the 320 KiB grid: its first byte / 327,680.
pub type Fault = upload_core::emulator::Fault<Operation>;

/// One request as the emulator saw it: `bucket` is the drive id, `key` the item's path
/// (`dir/name.bin`), `access_key_id` who the token (or the upload URL's session) belongs to.
pub type LoggedRequest = upload_core::emulator::LoggedRequest<Operation>;

/// Every fragment but the last is a multiple of this (320 KiB).
const FRAGMENT_ALIGN: u64 = 327_680;
/// A fragment must be smaller than this (60 MiB).
const MAX_FRAGMENT: u64 = 62_914_560;
/// Who the fixed tokens act as (in the request log).
const FIXED_TOKEN_USER: &str = "emulator-user";

/// How an emulator starts. Its `Debug` output leaves out tokens, client secrets and cookies.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Address of the Graph host and the token endpoint (`127.0.0.1:0` picks a free port).
    pub graph_listen: SocketAddr,
    /// Address of the upload host.
    pub upload_listen: SocketAddr,
    /// The tenant the token endpoint serves.
    pub tenant: String,
    /// App registrations (client id, client secret) the token endpoint knows.
    pub clients: Vec<(String, String)>,
    /// Fixed bearer tokens, valid for ever.
    pub tokens: Vec<String>,
    /// Lifetime of the tokens the token endpoint issues.
    pub token_lifetime: Duration,
    /// Drives that exist.
    pub drives: Vec<String>,
    /// The drive of `/me/drive` and of `/users/{any}/drive`.
    pub me_drive: String,
    /// Sites and their default drive (site id, drive id).
    pub sites: Vec<(String, String)>,
    /// Groups and their drive (group id, drive id).
    pub groups: Vec<(String, String)>,
    /// `conflictBehavior` when a session does not give one: "replace" as observed (the docs
    /// say "fail").
    pub default_conflict: String,
    /// Refuse at once (400 `invalidRequest`) a fragment that is not the last and whose length
    /// is not a multiple of 320 KiB; off: accept any length.
    pub strict_alignment: bool,
    /// How long a session lives without a fragment (each accepted fragment pushes its expiry).
    pub session_idle: Duration,
    /// How long the upload URL's `tempauth` lasts from creation (never extended).
    pub session_max: Duration,
    /// Keep items (as plain files `<dir>/<drive>/<path>`) and session data here instead of in
    /// memory.
    pub data_dir: Option<PathBuf>,
    /// Keep only the length and QuickXorHash of what is uploaded, not the bytes (benchmarks;
    /// items then read back as empty).
    pub discard_bodies: bool,
    /// Accept an `Authorization` header on upload URLs (the old lenient service); off: 401.
    pub allow_auth_on_upload_url: bool,
    /// Address of the SharePoint host (the tenant, like `https://contoso.sharepoint.com`), which
    /// serves the REST API under `{site}/_api/`.
    pub sharepoint_listen: SocketAddr,
    /// REST sites: (server-relative site URL, drive id). Each has one document library,
    /// `{site}/Shared Documents`, whose root is the root of that Graph drive.
    pub rest_sites: Vec<(String, String)>,
    /// Session cookies the REST host accepts (`name=value`, matched as one pair of the `Cookie`
    /// header); a cookie request's POSTs need a form digest from `contextinfo`.
    pub cookies: Vec<String>,
    /// How long a form digest from `contextinfo` lives (`FormDigestTimeoutSeconds`).
    pub digest_lifetime: Duration,
    /// How long a REST upload session (and its lock on the file) lives after its last chunk.
    pub rest_session_idle: Duration,
    /// The largest request body the REST host takes (262,144,000 bytes, 250 MiB).
    pub rest_max_request: u64,
    /// The storage of each drive in bytes, `None` for no limit. createUploadSession whose
    /// `fileSize` with what the drive holds is over it answers 507 `quotaLimitReached` (no session
    /// is made); so does the commit of a session whose bytes would not fit (the session stays,
    /// for an explicit commit after room is made).
    pub quota: Option<u64>,
    /// Write `nextExpectedRanges` as `"N-{T-1}"` (`"26-127"`), as the service has been seen to
    /// do, instead of the documented open form `"N-"` (`"26-"`), once the total is known.
    pub ranges_with_end: bool,
    /// Drives that are SharePoint document libraries (`driveType` `documentLibrary`; the others
    /// are `business`): once an Office, PDF or HTML file is stored in one, by Graph or REST, the
    /// library adds its metadata to it, so the stored size and QuickXorHash differ from what was
    /// sent, as SharePoint does (see `sharepoint_resumable::library`). None by default.
    pub document_libraries: Vec<String>,
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client_ids: Vec<&str> = self.clients.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("EmulatorConfig")
            .field("graph_listen", &self.graph_listen)
            .field("upload_listen", &self.upload_listen)
            .field("sharepoint_listen", &self.sharepoint_listen)
            .field("tenant", &self.tenant)
            .field("clients", &client_ids)
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field("token_lifetime", &self.token_lifetime)
            .field("drives", &self.drives)
            .field("me_drive", &self.me_drive)
            .field("sites", &self.sites)
            .field("groups", &self.groups)
            .field("default_conflict", &self.default_conflict)
            .field("strict_alignment", &self.strict_alignment)
            .field("session_idle", &self.session_idle)
            .field("session_max", &self.session_max)
            .field("data_dir", &self.data_dir)
            .field("discard_bodies", &self.discard_bodies)
            .field("allow_auth_on_upload_url", &self.allow_auth_on_upload_url)
            .field("rest_sites", &self.rest_sites)
            .field("cookies", &format_args!("[{} redacted]", self.cookies.len()))
            .field("digest_lifetime", &self.digest_lifetime)
            .field("rest_session_idle", &self.rest_session_idle)
            .field("rest_max_request", &self.rest_max_request)
            .field("quota", &self.quota)
            .field("ranges_with_end", &self.ranges_with_end)
            .field("document_libraries", &self.document_libraries)
            .finish()
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            graph_listen: local,
            upload_listen: local,
            tenant: "emulator-tenant".into(),
            clients: vec![("emulator-client-id".into(), "emulator-client-secret".into())],
            tokens: vec!["emulator-token".into()],
            token_lifetime: Duration::from_secs(3600),
            drives: vec!["drive-1".into()],
            me_drive: "drive-1".into(),
            sites: vec![("site-1".into(), "drive-1".into())],
            groups: vec![("group-1".into(), "drive-1".into())],
            default_conflict: "replace".into(),
            strict_alignment: true,
            session_idle: Duration::from_secs(15 * 60),
            session_max: Duration::from_secs(24 * 3600),
            data_dir: None,
            discard_bodies: false,
            allow_auth_on_upload_url: false,
            sharepoint_listen: local,
            rest_sites: vec![("/sites/emulator".into(), "drive-1".into())],
            cookies: vec!["FedAuth=emulator-cookie".into()],
            digest_lifetime: Duration::from_secs(1800),
            rest_session_idle: Duration::from_secs(30 * 60),
            rest_max_request: 262_144_000,
            quota: None,
            ranges_with_end: false,
            document_libraries: Vec::new(),
        }
    }
}

/// Which error document an answer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// Graph: `innerError` with date, request-id and client-request-id.
    Graph,
    /// The upload host: lower-case `innererror` with a detail code.
    Upload,
    /// The identity platform: `error` and `error_description`.
    OAuth,
}

/// An error answer.
#[derive(Clone, Debug)]
struct GraphError {
    status: u16,
    code: String,
    message: String,
    /// The detail code (`fragmentOverlap`, `expiredToken`…).
    inner: Option<String>,
    retry_after: Option<u64>,
    /// A 401 for an expired token (`WWW-Authenticate: … expired_token`).
    expired: bool,
}

impl GraphError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), inner: None, retry_after: None, expired: false }
    }

    fn inner(mut self, code: &str) -> Self {
        self.inner = Some(code.into());
        self
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalidRequest", message)
    }

    fn item_not_found() -> Self {
        Self::new(404, "itemNotFound", "The resource could not be found.")
    }

    fn session_not_found() -> Self {
        Self::new(404, "itemNotFound", "The upload session was not found: it expired, was cancelled or completed.")
            .inner("uploadSessionNotFound")
    }

    fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, "unauthenticated", message)
    }

    fn name_exists(message: &str) -> Self {
        Self::new(409, "nameAlreadyExists", message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "generalException", message)
    }

    fn quota_exceeded() -> Self {
        Self::new(
            507,
            "quotaLimitReached",
            "Insufficient Space Available: the drive's quota does not leave room for the file.",
        )
    }

    fn too_large() -> Self {
        Self::new(413, "invalidRequest", "The entity size in the request exceeds the maximum limit.")
    }

    fn storage(e: &std::io::Error) -> Self {
        if is_unstorable(e) {
            Self::invalid("The emulator's directory storage cannot keep this path as a file.")
        } else {
            Self::internal(e.to_string())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conflict {
    Fail,
    Replace,
    Rename,
}

impl Conflict {
    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "fail" => Some(Self::Fail),
            "replace" => Some(Self::Replace),
            "rename" => Some(Self::Rename),
            _ => None,
        }
    }
}

/// The bytes a session has received.
#[derive(Debug)]
enum Content {
    /// Fragments in memory, in order.
    Memory(Vec<Bytes>),
    /// One file in the data directory's `.uploads`, written at each fragment's offset.
    File(PathBuf),
    /// Nothing kept (discard mode).
    Discarded,
}

impl Content {
    /// Drops what was kept (a session that ends without a commit).
    fn discard(self) {
        if let Content::File(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[derive(Debug)]
struct SessionRec {
    drive: String,
    /// The target path (`dir/name.bin`).
    path: String,
    /// The item replaced, for `items/{id}/createUploadSession`.
    replace_id: Option<String>,
    /// Who created it (for the log).
    owner: String,
    conflict: Conflict,
    defer_commit: bool,
    /// The total size: `fileSize`, else the first fragment's total.
    total: Option<u64>,
    /// Bytes received: the next expected byte.
    received: u64,
    content: Content,
    quickxor: QuickXor,
    tempauth: String,
    created: Instant,
    created_at: DateTime<Utc>,
    expires: Instant,
    expires_at: DateTime<Utc>,
    /// A fragment is on its way in.
    busy: bool,
    description: Option<String>,
    file_system_info: Option<FileSystemInfo>,
}

impl SessionRec {
    fn complete(&self) -> bool {
        self.total.is_some_and(|t| self.received >= t)
    }

    /// The status document; `with_end` writes the range as `"N-{T-1}"` once the total is known.
    fn status(&self, with_end: bool) -> UploadSession {
        let next = match self.total {
            _ if self.complete() => Vec::new(),
            Some(total) if with_end => vec![format!("{}-{}", self.received, total - 1)],
            _ => vec![format!("{}-", self.received)],
        };
        UploadSession { upload_url: None, expiration_date_time: Some(iso(self.expires_at)), next_expected_ranges: next }
    }
}

#[derive(Clone, Debug)]
enum Kind {
    Folder,
    File { blob: Blob, size: u64, quickxor: [u8; 20], mime: String },
}

#[derive(Clone, Debug)]
struct ItemRec {
    id: String,
    kind: Kind,
    /// Bumped by every change of the content: the number in eTag and cTag.
    version: u64,
    created: String,
    modified: String,
    description: Option<String>,
}

#[derive(Debug, Default)]
struct Store {
    /// Every item by (drive, path); the root of a drive has the path "".
    items: BTreeMap<(String, String), ItemRec>,
    /// Item ids → (drive, path).
    ids: HashMap<String, (String, String)>,
    sessions: HashMap<String, SessionRec>,
    /// Tokens the token endpoint issued: who they belong to (the client id) and their expiry.
    issued: HashMap<String, (String, Instant)>,
    faults: Vec<Fault>,
    /// The latest requests (bounded), and totals of all.
    log: upload_core::emulator::RequestLog<Operation>,
    /// The SharePoint REST host's sessions, digests and stubs.
    rest: rest::RestState,
    /// The drives that are document libraries (`EmulatorConfig::document_libraries`).
    libraries: Vec<String>,
}

impl Store {
    /// The path of an item id in a drive ("root" is the root's alias).
    fn path_of(&self, drive: &str, id: &str) -> Option<String> {
        if id == "root" {
            return Some(String::new());
        }
        self.ids.get(id).filter(|(d, _)| d == drive).map(|(_, p)| p.clone())
    }

    fn item(&self, drive: &str, path: &str) -> Option<&ItemRec> {
        self.items.get(&(drive.to_owned(), path.to_owned()))
    }

    /// The bytes of every file in a drive (what counts against its quota).
    fn drive_bytes(&self, drive: &str) -> u64 {
        self.items
            .iter()
            .filter(|((d, _), _)| d == drive)
            .map(|(_, item)| match item.kind {
                Kind::File { size, .. } => size,
                Kind::Folder => 0,
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Removes sessions past their idle expiry.
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
}

struct Shared {
    config: EmulatorConfig,
    /// Every drive: `drives`, `me_drive` and those of sites and groups.
    drives: Vec<String>,
    storage: Storage,
    /// `http://127.0.0.1:<upload port>`.
    upload_base: String,
    store: Mutex<Store>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running emulator. Dropping it stops its three listeners.
pub struct Emulator {
    graph: Server,
    upload: Server,
    sharepoint: Server,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("graph", &self.graph.addr())
            .field("upload", &self.upload.addr())
            .field("sharepoint", &self.sharepoint.addr())
            .finish_non_exhaustive()
    }
}

/// The address clients use for a listener (a wildcard address is reached on loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() { SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()) } else { addr }
}

impl Emulator {
    /// Starts an emulator on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let mut drives: Vec<String> = Vec::new();
        let named = config.drives.iter().chain([&config.me_drive]).chain(config.sites.iter().map(|(_, d)| d));
        let named = named.chain(config.rest_sites.iter().map(|(_, d)| d));
        for d in named.chain(config.groups.iter().map(|(_, d)| d)) {
            if !drives.contains(d) {
                drives.push(d.clone());
            }
        }
        let storage = Storage::new(config.data_dir.clone(), &drives)?;
        // The listeners find the state through this slot, filled once both are bound (the
        // upload listener's address goes into every uploadUrl).
        let slot: Arc<Mutex<Option<Arc<Shared>>>> = Arc::new(Mutex::new(None));
        let upload_slot = slot.clone();
        let upload = Server::start(config.upload_listen, move |req| {
            let shared = upload_slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            handle(shared, Host::Upload, req)
        })
        .await?;
        let graph_slot = slot.clone();
        let graph = Server::start(config.graph_listen, move |req| {
            let shared = graph_slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            handle(shared, Host::Graph, req)
        })
        .await?;
        let sharepoint_slot = slot.clone();
        let sharepoint_base: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
        let base_slot = sharepoint_base.clone();
        let sharepoint = Server::start(config.sharepoint_listen, move |req| {
            let shared = sharepoint_slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let base = base_slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            rest::handle(shared, base, req)
        })
        .await?;
        *sharepoint_base.lock().unwrap_or_else(|e| e.into_inner()) = format!("http://{}", reachable(sharepoint.addr()));
        let mut store = Store { libraries: config.document_libraries.clone(), ..Store::default() };
        let now = iso(Utc::now());
        for d in &drives {
            let id = new_item_id();
            store.ids.insert(id.clone(), (d.clone(), String::new()));
            store.items.insert(
                (d.clone(), String::new()),
                ItemRec {
                    id,
                    kind: Kind::Folder,
                    version: 1,
                    created: now.clone(),
                    modified: now.clone(),
                    description: None,
                },
            );
        }
        let upload_base = format!("http://{}", reachable(upload.addr()));
        let shared = Arc::new(Shared { config, drives, storage, upload_base, store: Mutex::new(store) });
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(shared.clone());
        Ok(Self { graph, upload, sharepoint, shared })
    }

    /// The Graph base, `http://127.0.0.1:<port>/v1.0`.
    pub fn graph_url(&self) -> String {
        format!("http://{}/v1.0", reachable(self.graph.addr()))
    }

    /// The identity platform, `http://127.0.0.1:<port>` (the token endpoint is
    /// `{login_url}/{tenant}/oauth2/v2.0/token`, on the Graph listener).
    pub fn login_url(&self) -> String {
        format!("http://{}", reachable(self.graph.addr()))
    }

    /// The upload host's address.
    pub fn upload_addr(&self) -> SocketAddr {
        self.upload.addr()
    }

    /// The SharePoint host, `http://127.0.0.1:<port>` (the tenant, like
    /// `https://contoso.sharepoint.com`).
    pub fn sharepoint_url(&self) -> String {
        format!("http://{}", reachable(self.sharepoint.addr()))
    }

    /// The first REST site, `{sharepoint_url}/sites/emulator` by default (the `{web}` of REST
    /// calls, which go to `{web}/_api/…`).
    pub fn site_url(&self) -> String {
        let site = self.shared.config.rest_sites.first().map(|(s, _)| s.as_str()).unwrap_or_default();
        format!("{}{site}", self.sharepoint_url())
    }

    /// The first cookie the REST host accepts (`FedAuth=emulator-cookie` by default).
    pub fn cookie(&self) -> String {
        self.shared.config.cookies.first().cloned().unwrap_or_default()
    }

    /// Makes every REST upload session expire now (their bytes dropped, their locks gone):
    /// later calls with their `uploadId` answer 404.
    pub fn expire_rest_sessions(&self) {
        self.shared.store().rest.expire_all();
    }

    /// The first fixed token.
    pub fn token(&self) -> String {
        self.shared.config.tokens.first().cloned().unwrap_or_default()
    }

    /// A client configuration for this emulator: its URLs and the first fixed token.
    pub fn client_config(&self) -> crate::Config {
        self.config_with(crate::Auth::Token(upload_core::Secret::new(self.token())))
    }

    /// A client configuration for this emulator with other authentication (client credentials
    /// with [`EmulatorConfig::tenant`] and one of [`EmulatorConfig::clients`], say).
    pub fn config_with(&self, auth: crate::Auth) -> crate::Config {
        let base = crate::Config::new(auth);
        let mut config = base.clone().with_urls(&self.graph_url(), &self.login_url()).unwrap_or(base);
        config.trusted_urls.push(self.upload_url());
        config
    }

    /// The upload host's base (`http://127.0.0.1:<port>`), where every session's `uploadUrl`
    /// points: a client must trust it ([`Config::trusted_urls`](crate::Config::trusted_urls)).
    pub fn upload_url(&self) -> String {
        self.shared.upload_base.clone()
    }

    /// A SharePoint REST client configuration for the first site: its URL, the first fixed
    /// token as bearer, and this emulator's identity platform.
    pub fn rest_config(&self) -> Result<crate::RestConfig, crate::InvalidInput> {
        let auth = crate::RestAuth::Bearer(crate::Auth::Token(upload_core::Secret::new(self.token())));
        let mut config = crate::RestConfig::new(&self.site_url(), auth)?;
        config.login_url = self.login_url();
        Ok(config)
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.store().faults.push(fault);
    }

    /// The latest requests (up to the log's capacity), oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.store().log.entries()
    }

    /// Every request received since the start and the sum of their body lengths (the log keeps
    /// only the latest).
    pub fn request_totals(&self) -> (u64, u64) {
        self.shared.store().log.totals()
    }

    /// Makes every token the token endpoint issued expire now (fixed tokens stay valid).
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for (_, expires) in self.shared.store().issued.values_mut() {
            *expires = now;
        }
    }

    /// The content of a file (`path` like `dir/name.bin`, decoded, no leading slash); empty in
    /// discard mode.
    pub fn item_content(&self, drive_id: &str, path: &str) -> Option<Bytes> {
        let item = self.shared.store().item(drive_id, path).cloned()?;
        match item.kind {
            Kind::File { blob, .. } => blob.read().ok(),
            Kind::Folder => None,
        }
    }

    /// The id of the item (file or folder) at `path` in a drive.
    pub fn item_id(&self, drive_id: &str, path: &str) -> Option<String> {
        self.shared.store().item(drive_id, path).map(|i| i.id.clone())
    }

    /// The live sessions: (session id, bytes received).
    pub fn open_sessions(&self) -> Vec<(String, u64)> {
        let mut store = self.shared.store();
        store.sweep();
        let max = self.shared.config.session_max;
        let now = Instant::now();
        let mut open: Vec<(String, u64)> = store
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.created) < max)
            .map(|(id, s)| (id.clone(), s.received))
            .collect();
        open.sort();
        open
    }

    /// Makes every open session expire now: its upload URL answers 404 `itemNotFound`.
    pub fn expire_sessions(&self) {
        let mut store = self.shared.store();
        for (_, s) in store.sessions.drain() {
            s.content.discard();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers and times.

/// 64 unpredictable bits (the standard library's randomly keyed hasher over a counter and the
/// clock).
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one((unique(), Instant::now(), std::time::SystemTime::now()))
}

fn random_hex(words: usize) -> String {
    (0..words).map(|_| format!("{:016x}", random_u64())).collect()
}

/// An item id in Graph's style: "01" and 32 characters of base32.
fn new_item_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (a, b) = (random_u64(), random_u64());
    let chars = (0..32).map(|i| {
        let bits = if i < 16 { a >> (i * 4) } else { b >> ((i - 16) * 4) };
        char::from(ALPHABET[(bits & 31) as usize])
    });
    std::iter::once('0').chain(std::iter::once('1')).chain(chars).collect()
}

/// A GUID-shaped id (request ids, the GUID inside eTags).
fn guid(seed: u64, more: u64) -> String {
    let h = format!("{seed:016x}{more:016x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The stable GUID of an item, from its id.
fn item_guid(id: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let part = |salt: u8| {
        let mut h = DefaultHasher::new();
        (salt, id).hash(&mut h);
        h.finish()
    };
    guid(part(1), part(2)).to_ascii_uppercase()
}

/// UTC with milliseconds and `Z`, as Graph writes times.
fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The wall-clock time `d` from now (saturating).
fn later(d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| Utc::now().checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The instant `d` from now (saturating at a century).
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(Duration::from_secs(100 * 365 * 24 * 3600))).unwrap_or(now)
}

// ---------------------------------------------------------------------------------------------
// Answers.

fn error_reply(e: &GraphError, style: Style, request_id: &str, client_request_id: &str) -> Reply {
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

fn ok_json<T: Serialize>(status: u16, doc: &T) -> Result<Reply, GraphError> {
    let body = serde_json::to_vec(doc).map_err(|e| GraphError::internal(e.to_string()))?;
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| GraphError::internal(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// The request loop.

/// What is known of a request before its body is read, for faults, the log and the check that
/// one fragment at a time arrives per session.
#[derive(Debug, Default)]
struct Seen {
    bucket: Option<String>,
    key: Option<String>,
    /// The session's creator, when the upload URL's `tempauth` matches.
    owner: Option<String>,
}

fn describe(shared: &Shared, routed: Option<&Route>, query: &[(String, String)]) -> Seen {
    match routed {
        Some(Route::Graph { drive, target, .. }) => {
            let Ok(drive) = resolve_drive(shared, drive) else { return Seen::default() };
            let key = target_path(&shared.store(), &drive, target).ok();
            Seen { bucket: Some(drive), key, owner: None }
        }
        Some(Route::Upload { session, .. }) => {
            let store = shared.store();
            let Some(s) = store.sessions.get(session) else { return Seen::default() };
            let owner = (q(query, "tempauth") == Some(s.tempauth.as_str())).then(|| s.owner.clone());
            Seen { bucket: Some(s.drive.clone()), key: Some(s.path.clone()), owner }
        }
        _ => Seen::default(),
    }
}

/// Marks a session busy while one fragment is on its way in; dropping it (the request answered,
/// or its connection gone) frees the session.
struct Claim {
    shared: Arc<Shared>,
    session: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(s) = self.shared.store().sessions.get_mut(&self.session) {
            s.busy = false;
        }
    }
}

/// `Ok(None)`: no such session; `Err(())`: another fragment is in flight.
fn claim(shared: &Arc<Shared>, session: &str) -> Result<Option<Claim>, ()> {
    let mut store = shared.store();
    match store.sessions.get_mut(session) {
        None => Ok(None),
        Some(s) if s.busy => Err(()),
        Some(s) => {
            s.busy = true;
            Ok(Some(Claim { shared: shared.clone(), session: session.to_owned() }))
        }
    }
}

fn q<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn find_header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
}

async fn handle(shared: Option<Arc<Shared>>, host: Host, req: Request<Incoming>) -> Result<Reply, Dropped> {
    let Some(shared) = shared else { return Ok(empty(503)) };
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or_default());
    let headers = text_headers(req.headers());
    let header = |name: &str| find_header(&headers, name);
    let routed = routes::route(host, &method, &path);
    let operation = routed.as_ref().map(Route::operation);
    let range = header("content-range").as_deref().and_then(routes::content_range);
    // The fragment's index on the 320 KiB grid, for faults and the log.
    let part_number = match (operation, range) {
        (Some(Operation::UploadFragment), Some((first, _, _))) => u32::try_from(first / FRAGMENT_ALIGN).ok(),
        _ => None,
    };
    let seen = describe(&shared, routed.as_ref(), &query);
    let mut entry = LoggedRequest {
        method,
        bucket: seen.bucket,
        key: seen.key,
        operation,
        part_number,
        body_len: 0,
        status: 0,
        error_code: None,
        access_key_id: None,
    };
    let fault = take_fault(&mut shared.store().faults, operation, part_number);
    // A slow server: before anything of the request is read or claimed.
    if let Some(FaultAction::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let content_length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
    // One fragment at a time per session: claimed while its body arrives and is stored.
    let mut busy = false;
    let _claim = match &routed {
        Some(Route::Upload { op: Operation::UploadFragment, session }) if seen.owner.is_some() => {
            claim(&shared, session).unwrap_or_else(|()| {
                busy = true;
                None
            })
        }
        _ => None,
    };
    // No body of 60 MiB or more is taken (413; for a fragment, maxFragmentLengthExceeded).
    let mut too_big = content_length.is_some_and(|n| n >= MAX_FRAGMENT);
    // A body that is refused anyway is read through without being kept.
    let drain = (busy || too_big).then_some(HashKinds::NONE);
    let reset_after = match &fault {
        Some(FaultAction::ResetMidBody { after }) => Some(*after),
        _ => None,
    };
    let expected = if drain.is_some() { 0 } else { usize::try_from(content_length.unwrap_or(0)).unwrap_or(0) };
    let read = match content_length {
        Some(_) => read_body(req.into_body(), expected, drain, reset_after).await,
        // A body without a length (chunked) is read only up to the limit. A fragment's is not
        // kept at all: it is refused for its missing Content-Length (411).
        None => {
            let keep = drain.is_none() && operation != Some(Operation::UploadFragment);
            read_unannounced(req.into_body(), MAX_FRAGMENT - 1, keep, reset_after).await
        }
    };
    let received = match read {
        Ok(b) => b,
        Err(got) => {
            // Nothing of a broken-off body is kept.
            entry.body_len = got;
            shared.store().log.push(entry);
            return Err(Dropped);
        }
    };
    entry.body_len = received.len();
    if received.len() >= MAX_FRAGMENT {
        too_big = true;
    }
    let style = match (&routed, host) {
        (Some(Route::Token { .. }), _) => Style::OAuth,
        (_, Host::Graph) => Style::Graph,
        (_, Host::Upload) => Style::Upload,
    };
    let ctx = Ctx {
        shared: &shared,
        query: &query,
        headers: &headers,
        body: received.bytes,
        content_length,
        range,
        busy,
        too_big,
        partial: false,
    };
    let mut user = None;
    let result = respond(&ctx, host, routed.as_ref(), fault.as_ref(), seen.owner.as_deref(), &mut user);
    let request_id = guid(random_u64(), unique());
    let client_request_id = header("client-request-id").unwrap_or_else(|| request_id.clone());
    let mut reply = match result {
        Ok(r) => r,
        Err(e) => {
            entry.error_code = Some(e.code.clone());
            error_reply(&e, style, &request_id, &client_request_id)
        }
    };
    let (second, value) = match host {
        Host::Graph => ("client-request-id", &client_request_id),
        Host::Upload => ("sprequestguid", &request_id),
    };
    for (name, value) in [("request-id", &request_id), (second, value)] {
        if let Ok(v) = hyper::header::HeaderValue::from_str(value) {
            reply.headers_mut().insert(name, v);
        }
    }
    entry.status = reply.status().as_u16();
    entry.access_key_id = user;
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

/// Reads a body sent without `Content-Length` (chunked) as [`read_body`] does, but never past
/// `max` bytes: at the first frame beyond them it stops reading and answers a body of more than
/// `max` bytes whose bytes were not kept (the caller refuses it; the connection is then closed
/// with the rest unread). `keep`: false reads the bytes through without keeping them.
async fn read_unannounced(mut body: Incoming, max: u64, keep: bool, reset_after: Option<usize>) -> Result<Body, u64> {
    use http_body_util::BodyExt;
    let mut kept = bytes::BytesMut::new();
    let mut got = 0u64;
    let reset_due = |got: u64| reset_after.is_some_and(|n| got >= n as u64);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(got) };
        if let Ok(data) = frame.into_data() {
            got = got.saturating_add(data.len() as u64);
            if got > max && !reset_due(got) {
                return Ok(Body {
                    bytes: Bytes::new(),
                    discarded: Some(Discarded { len: got, ..Discarded::default() }),
                });
            }
            if keep {
                kept.extend_from_slice(&data);
            }
        }
        if reset_due(got) {
            return Err(got);
        }
    }
    // An injected reset fires at the end of a shorter body too.
    if reset_after.is_some() {
        return Err(got);
    }
    Ok(if keep {
        Body { bytes: kept.freeze(), discarded: None }
    } else {
        Body { bytes: Bytes::new(), discarded: Some(Discarded { len: got, ..Discarded::default() }) }
    })
}

/// The answer to a request whose body has arrived, with the injected faults that act here.
fn respond(
    ctx: &Ctx<'_>,
    host: Host,
    routed: Option<&Route>,
    fault: Option<&FaultAction>,
    owner: Option<&str>,
    user: &mut Option<String>,
) -> Result<Reply, GraphError> {
    if let Some(FaultAction::Error { status, code, retry_after }) = fault {
        let mut e = GraphError::new(*status, code, "Injected by the emulator.");
        e.retry_after = *retry_after;
        return Err(e);
    }
    // A body over the limit (a fragment's is refused as maxFragmentLengthExceeded, after the
    // session's own checks).
    if ctx.too_big && !matches!(routed, Some(Route::Upload { op: Operation::UploadFragment, .. })) {
        return Err(GraphError::too_large());
    }
    let done = match routed {
        None => match host {
            Host::Graph => Err(GraphError::invalid("The emulator does not serve this request.")),
            Host::Upload => Err(GraphError::session_not_found()),
        },
        Some(Route::Token { tenant }) => token(ctx, tenant, user),
        Some(Route::Graph { op, drive, target }) => {
            let who = authenticate(ctx.shared, ctx.header("authorization").as_deref())?;
            *user = Some(who.clone());
            graph(ctx, *op, drive, target, &who)
        }
        Some(Route::Upload { op, session }) => {
            let answer = match (fault, *op, ctx.range) {
                // Part of the fragment is kept, then the server fails (the next expected byte is
                // then off the 320 KiB grid, as Graph has been seen to do).
                (
                    Some(FaultAction::PartialThenError { keep, status, code }),
                    Operation::UploadFragment,
                    Some((first, _, total)),
                ) if *keep > 0 && (*keep as u64) < ctx.body.len() as u64 => {
                    let kept = ctx.body.slice(..*keep);
                    let partial = Ctx {
                        shared: ctx.shared,
                        query: ctx.query,
                        headers: ctx.headers,
                        body: kept,
                        content_length: Some(*keep as u64),
                        range: Some((first, first + *keep as u64 - 1, total)),
                        busy: ctx.busy,
                        too_big: false,
                        partial: true,
                    };
                    upload(&partial, *op, session).and_then(|_| {
                        Err(GraphError::new(
                            *status,
                            code,
                            "Injected by the emulator after keeping part of the fragment.",
                        ))
                    })
                }
                _ => upload(ctx, *op, session),
            };
            if !matches!(&answer, Err(e) if e.status == 401) {
                *user = owner.map(str::to_owned);
            }
            answer
        }
    };
    match fault {
        // Done, and answered with an error all the same.
        Some(FaultAction::ErrorAfter { status, code }) => {
            Err(GraphError::new(*status, code, "Injected by the emulator after the operation."))
        }
        _ => done,
    }
}

struct Ctx<'a> {
    shared: &'a Shared,
    query: &'a [(String, String)],
    headers: &'a [(String, String)],
    body: Bytes,
    content_length: Option<u64>,
    range: Option<(u64, u64, u64)>,
    /// Another fragment of the session is in flight (the body was read through, not kept).
    busy: bool,
    /// The body is 60 MiB or more, by its Content-Length or, without one, as it was read (it was
    /// not kept).
    too_big: bool,
    /// The emulator's own partial store (an injected fault): no alignment rule.
    partial: bool,
}

impl Ctx<'_> {
    fn header(&self, name: &str) -> Option<String> {
        find_header(self.headers, name)
    }

    fn q(&self, name: &str) -> Option<&str> {
        q(self.query, name)
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens.

/// Who a bearer token acts as.
fn authenticate(shared: &Shared, authorization: Option<&str>) -> Result<String, GraphError> {
    let token = authorization
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| GraphError::unauthenticated("Access token is empty."))?;
    if shared.config.tokens.iter().any(|t| t == token) {
        return Ok(FIXED_TOKEN_USER.into());
    }
    let store = shared.store();
    match store.issued.get(token) {
        Some((owner, expires)) if Instant::now() < *expires => Ok(owner.clone()),
        Some(_) => {
            let mut e =
                GraphError::unauthenticated("Lifetime validation failed, the token is expired.").inner("expiredToken");
            e.expired = true;
            Err(e)
        }
        None => Err(GraphError::unauthenticated("Invalid authentication token.")),
    }
}

/// The identity platform's token endpoint: the client credentials grant.
fn token(ctx: &Ctx<'_>, tenant: &str, user: &mut Option<String>) -> Result<Reply, GraphError> {
    let config = &ctx.shared.config;
    if tenant != config.tenant {
        return Err(GraphError::new(
            400,
            "invalid_request",
            format!("AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
        ));
    }
    let form = parse_query(std::str::from_utf8(&ctx.body).unwrap_or_default());
    let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let grant = field("grant_type");
    if grant != "client_credentials" {
        return Err(GraphError::new(
            400,
            "unsupported_grant_type",
            format!("AADSTS70003: The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let client_id = field("client_id");
    match config.clients.iter().find(|(id, _)| *id == client_id) {
        None => {
            return Err(GraphError::new(
                401,
                "invalid_client",
                format!(
                    "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'."
                ),
            ));
        }
        Some((_, secret)) if *secret != field("client_secret") => {
            return Err(GraphError::new(
                401,
                "invalid_client",
                format!(
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            ));
        }
        Some(_) => {}
    }
    let scope = field("scope");
    if scope.is_empty() {
        return Err(GraphError::new(
            400,
            "invalid_request",
            "AADSTS90014: The required field 'scope' is missing from the credential.",
        ));
    }
    if !scope.ends_with("/.default") {
        return Err(GraphError::new(
            400,
            "invalid_scope",
            format!(
                "AADSTS1002012: The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    let access = format!("eyJ0eXAiOiJKV1Qi.emulator.{}", random_hex(3));
    let lifetime = config.token_lifetime;
    ctx.shared.store().issued.insert(access.clone(), (client_id.clone(), after(lifetime)));
    *user = Some(client_id);
    ok_json(
        200,
        &TokenResponse {
            access_token: access,
            expires_in: Some(lifetime.as_secs()),
            token_type: Some("Bearer".into()),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Graph: drives, items, sessions.

fn resolve_drive(shared: &Shared, drive: &DriveRef) -> Result<String, GraphError> {
    let config = &shared.config;
    let lookup = |list: &[(String, String)], id: &str, what: &str| {
        list.iter()
            .find(|(k, _)| k == id)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| GraphError::new(404, "itemNotFound", format!("The {what} '{id}' does not exist.")))
    };
    match drive {
        DriveRef::Id(id) if shared.drives.contains(id) => Ok(id.clone()),
        DriveRef::Id(id) => Err(GraphError::new(404, "itemNotFound", format!("The drive '{id}' does not exist."))),
        DriveRef::Me | DriveRef::User(_) => Ok(config.me_drive.clone()),
        DriveRef::Site(id) => lookup(&config.sites, id, "site"),
        DriveRef::Group(id) => lookup(&config.groups, id, "group"),
    }
}

/// The path an addressed item has (or would have): `items/{id}` must exist; a path below a
/// parent needs the parent to be a folder, and names that decode.
fn target_path(store: &Store, drive: &str, target: &Target) -> Result<String, GraphError> {
    match target {
        Target::Item(id) => store.path_of(drive, id).ok_or_else(GraphError::item_not_found),
        Target::Path { parent, raw } => {
            let base = store.path_of(drive, parent).ok_or_else(GraphError::item_not_found)?;
            if let Some(ItemRec { kind: Kind::File { .. }, .. }) = store.item(drive, &base) {
                return Err(GraphError::invalid("The parent item is a file, not a folder."));
            }
            let names = routes::decode_path(raw).map_err(GraphError::invalid)?;
            Ok(join(&base, &names.join("/")))
        }
    }
}

fn join(base: &str, rest: &str) -> String {
    if base.is_empty() { rest.to_owned() } else { format!("{base}/{rest}") }
}

/// (parent path, name) of a path.
fn split_parent(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn graph(ctx: &Ctx<'_>, op: Operation, drive: &DriveRef, target: &Target, who: &str) -> Result<Reply, GraphError> {
    let drive = resolve_drive(ctx.shared, drive)?;
    match op {
        Operation::CreateUploadSession => create_session(ctx, &drive, target, who),
        Operation::CommitBySourceUrl => commit_by_source_url(ctx, &drive, target),
        Operation::GetItem => {
            let store = ctx.shared.store();
            let path = target_path(&store, &drive, target)?;
            let item = store.item(&drive, &path).ok_or_else(GraphError::item_not_found)?;
            ok_json(200, &item_doc(&store, &drive, &path, item))
        }
        Operation::DownloadItem => {
            let item = {
                let store = ctx.shared.store();
                let path = target_path(&store, &drive, target)?;
                store.item(&drive, &path).cloned().ok_or_else(GraphError::item_not_found)?
            };
            let Kind::File { blob, mime, .. } = item.kind else {
                return Err(GraphError::invalid("The item is a folder: it has no content to download."));
            };
            let bytes = blob.read().map_err(|e| GraphError::storage(&e))?;
            Response::builder()
                .status(200)
                .header("content-type", mime)
                .body(Full::new(bytes))
                .map_err(|e| GraphError::internal(e.to_string()))
        }
        _ => Err(GraphError::invalid("The emulator does not serve this request.")),
    }
}

fn create_session(ctx: &Ctx<'_>, drive: &str, target: &Target, who: &str) -> Result<Reply, GraphError> {
    let config = &ctx.shared.config;
    let input: CreateUploadSessionInput = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        CreateUploadSessionInput::default()
    } else {
        serde_json::from_slice(&ctx.body).map_err(|e| {
            GraphError::invalid(format!("The request body is not a valid createUploadSession body: {e}"))
        })?
    };
    let item = input.item.unwrap_or_default();
    let behaviour = item
        .conflict_behavior
        .clone()
        .or_else(|| ctx.q("@microsoft.graph.conflictBehavior").map(str::to_owned))
        .unwrap_or_else(|| config.default_conflict.clone());
    let conflict = Conflict::parse(&behaviour).ok_or_else(|| {
        GraphError::invalid(format!(
            "Invalid value '{behaviour}' for @microsoft.graph.conflictBehavior: expected fail, replace or rename."
        ))
    })?;
    let mut store = ctx.shared.store();
    store.sweep();
    let (path, replace_id) = match target {
        Target::Item(id) => {
            let path = store.path_of(drive, id).ok_or_else(GraphError::item_not_found)?;
            match store.item(drive, &path) {
                Some(ItemRec { id, kind: Kind::File { .. }, .. }) => (path, Some(id.clone())),
                Some(_) => {
                    return Err(GraphError::invalid("The item is a folder: only a file's content can be replaced."));
                }
                None => return Err(GraphError::item_not_found()),
            }
        }
        Target::Path { .. } => (target_path(&store, drive, target)?, None),
    };
    let name = split_parent(&path).1;
    if let Some(given) = &item.name
        && given != name
    {
        return Err(GraphError::invalid(format!(
            "The name in the request body ({given:?}) does not match the name in the path ({name:?})."
        )));
    }
    if !ctx.shared.storage.accepts_key(&path) {
        return Err(GraphError::invalid("The emulator's directory storage cannot keep this path as a file."));
    }
    check_parents(&store, drive, &path)?;
    let existing = store.item(drive, &path);
    preconditions(ctx, existing)?;
    if replace_id.is_none()
        && let Some(e) = existing
    {
        match (conflict, &e.kind) {
            (Conflict::Rename, _) | (Conflict::Replace, Kind::File { .. }) => {}
            _ => return Err(GraphError::name_exists("The specified item name already exists.")),
        }
    }
    if let (Some(quota), Some(size)) = (config.quota, item.file_size)
        && store.drive_bytes(drive).saturating_add(size) > quota
    {
        return Err(GraphError::quota_exceeded());
    }
    if store.sessions.values().any(|s| s.drive == drive && s.path == path) {
        return Err(GraphError::name_exists("An upload session already exists for this file"));
    }
    let id = random_hex(2);
    let tempauth = random_hex(4);
    let now = Instant::now();
    let session = SessionRec {
        drive: drive.to_owned(),
        path,
        replace_id,
        owner: who.to_owned(),
        conflict,
        defer_commit: input.defer_commit.unwrap_or(false),
        total: item.file_size,
        received: 0,
        content: Content::Discarded,
        quickxor: QuickXor::new(),
        tempauth: tempauth.clone(),
        created: now,
        created_at: Utc::now(),
        expires: after(config.session_idle),
        expires_at: later(config.session_idle),
        busy: false,
        description: item.description.clone(),
        file_system_info: item.file_system_info.clone(),
    };
    let first = match session.total {
        Some(total) if total > 0 && config.ranges_with_end => format!("0-{}", total - 1),
        _ => "0-".into(),
    };
    let doc = UploadSession {
        upload_url: Some(format!("{}/up/{id}?tempauth={tempauth}", ctx.shared.upload_base)),
        expiration_date_time: Some(iso(session.expires_at)),
        next_expected_ranges: vec![first],
    };
    store.sessions.insert(id, session);
    ok_json(200, &doc)
}

/// Every folder on the way to `path` must be a folder (or not exist yet).
fn check_parents(store: &Store, drive: &str, path: &str) -> Result<(), GraphError> {
    let mut parent = split_parent(path).0;
    while !parent.is_empty() {
        if let Some(ItemRec { kind: Kind::File { .. }, .. }) = store.item(drive, parent) {
            return Err(GraphError::name_exists(&format!("A file is in the way of the folder {parent:?}.")));
        }
        parent = split_parent(parent).0;
    }
    Ok(())
}

/// `If-Match` and `If-None-Match` against the item's eTag or cTag (412 `resourceModified`).
fn preconditions(ctx: &Ctx<'_>, existing: Option<&ItemRec>) -> Result<(), GraphError> {
    let bare = |v: &str| v.trim().trim_start_matches("W/").trim_matches('"').to_owned();
    let matches = |value: &str| match existing {
        None => false,
        Some(_) if value.trim() == "*" => true,
        Some(item) => [e_tag(item), c_tag(item)].iter().any(|t| bare(t) == bare(value)),
    };
    let modified = || GraphError::new(412, "resourceModified", "ETag does not match current item's value");
    if let Some(v) = ctx.header("if-match")
        && !matches(&v)
    {
        return Err(modified());
    }
    if let Some(v) = ctx.header("if-none-match")
        && matches(&v)
    {
        return Err(modified());
    }
    Ok(())
}

fn e_tag(item: &ItemRec) -> String {
    format!("\"{{{}}},{}\"", item_guid(&item.id), item.version)
}

fn c_tag(item: &ItemRec) -> String {
    format!("\"c:{{{}}},{}\"", item_guid(&item.id), item.version)
}

fn mime_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/x-zip-compressed",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "mp4" => "video/mp4",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => "application/octet-stream",
    }
}

/// The driveItem document of an item.
fn item_doc(store: &Store, drive: &str, path: &str, item: &ItemRec) -> serde_json::Value {
    let (parent, name) = split_parent(path);
    let library = store.libraries.iter().any(|l| l == drive);
    let parent_reference = (!path.is_empty()).then(|| ItemReference {
        drive_type: Some(if library { "documentLibrary" } else { "business" }.to_owned()),
        drive_id: Some(drive.to_owned()),
        id: store.item(drive, parent).map(|p| p.id.clone()),
        path: Some(if parent.is_empty() {
            format!("/drives/{drive}/root:")
        } else {
            format!("/drives/{drive}/root:/{parent}")
        }),
    });
    let inside = |p: &str| path.is_empty() || p.strip_prefix(path).is_some_and(|rest| rest.starts_with('/'));
    let (size, file) = match &item.kind {
        Kind::File { size, quickxor, mime, .. } => (
            *size,
            Some(FileFacet {
                mime_type: Some(mime.clone()),
                hashes: Some(Hashes { quick_xor_hash: Some(STANDARD.encode(quickxor)), ..Hashes::default() }),
            }),
        ),
        Kind::Folder => {
            let total = store
                .items
                .iter()
                .filter(|((d, p), _)| d == drive && !p.is_empty() && inside(p))
                .map(|(_, i)| match i.kind {
                    Kind::File { size, .. } => size,
                    Kind::Folder => 0,
                })
                .sum();
            (total, None)
        }
    };
    let doc = DriveItem {
        id: item.id.clone(),
        name: Some(if path.is_empty() { "root".to_owned() } else { name.to_owned() }),
        size: Some(size),
        e_tag: Some(e_tag(item)),
        c_tag: Some(c_tag(item)),
        description: item.description.clone(),
        created_date_time: Some(item.created.clone()),
        last_modified_date_time: Some(item.modified.clone()),
        file,
        parent_reference,
    };
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    if let Kind::Folder = item.kind {
        let children = store
            .items
            .keys()
            .filter(|(d, p)| d == drive && !p.is_empty() && p != path && split_parent(p).0 == path)
            .count();
        value["folder"] = serde_json::json!({ "childCount": children });
        if path.is_empty() {
            value["root"] = serde_json::json!({});
        }
    }
    value
}

// ---------------------------------------------------------------------------------------------
// The upload host.

fn upload(ctx: &Ctx<'_>, op: Operation, id: &str) -> Result<Reply, GraphError> {
    if !ctx.shared.config.allow_auth_on_upload_url && ctx.header("authorization").is_some() {
        return Err(GraphError::unauthenticated(
            "The upload URL is pre-authenticated: requests to it must not carry an Authorization header.",
        ));
    }
    match op {
        Operation::UploadFragment => put_fragment(ctx, id),
        Operation::GetSessionStatus => {
            let mut store = ctx.shared.store();
            let s = open_session(&mut store, ctx, id)?;
            ok_json(200, &s.status(ctx.shared.config.ranges_with_end))
        }
        Operation::CancelSession => {
            let mut store = ctx.shared.store();
            open_session(&mut store, ctx, id)?;
            if let Some(s) = store.sessions.remove(id) {
                s.content.discard();
            }
            Ok(empty(204))
        }
        Operation::CommitSession => {
            if !ctx.body.is_empty() {
                return Err(GraphError::invalid("The commit of an upload session has no body (Content-Length: 0)."));
            }
            let mut store = ctx.shared.store();
            let s = open_session(&mut store, ctx, id)?;
            if !s.complete() {
                return Err(GraphError::invalid("The upload session has not received all the bytes of the file.")
                    .inner("uploadSessionIncomplete"));
            }
            commit(ctx.shared, &mut store, id)
        }
        _ => Err(GraphError::session_not_found()),
    }
}

/// The session of an upload URL, checked: it exists, the `tempauth` is its own and has not
/// expired (24 h from creation), and it has not expired for lack of fragments.
fn open_session<'s>(store: &'s mut Store, ctx: &Ctx<'_>, id: &str) -> Result<&'s mut SessionRec, GraphError> {
    open_session_with(store, ctx.shared, id, ctx.q("tempauth"))
}

/// [`open_session`] for the session id and `tempauth` of an upload URL.
fn open_session_with<'s>(
    store: &'s mut Store,
    shared: &Shared,
    id: &str,
    tempauth: Option<&str>,
) -> Result<&'s mut SessionRec, GraphError> {
    let now = Instant::now();
    let s = store.sessions.get(id).ok_or_else(GraphError::session_not_found)?;
    if tempauth != Some(s.tempauth.as_str()) {
        return Err(GraphError::unauthenticated("The upload URL's token is not valid for this session."));
    }
    if now.duration_since(s.created) >= shared.config.session_max {
        let until = chrono::Duration::from_std(shared.config.session_max)
            .ok()
            .and_then(|d| s.created_at.checked_add_signed(d))
            .unwrap_or(s.created_at);
        let mut e = GraphError::unauthenticated(format!(
            "The access token has expired. It's valid from '{}' and to '{}'.",
            s.created_at.format("%-m/%-d/%Y %-I:%M:%S %p"),
            until.format("%-m/%-d/%Y %-I:%M:%S %p")
        ))
        .inner("expiredToken");
        e.expired = true;
        return Err(e);
    }
    if now >= s.expires {
        if let Some(s) = store.sessions.remove(id) {
            s.content.discard();
        }
        return Err(GraphError::session_not_found());
    }
    store.sessions.get_mut(id).ok_or_else(GraphError::session_not_found)
}

fn put_fragment(ctx: &Ctx<'_>, id: &str) -> Result<Reply, GraphError> {
    let config = &ctx.shared.config;
    // The checks, under the lock.
    let (first, last, total, mut hasher, target) = {
        let mut store = ctx.shared.store();
        let s = open_session(&mut store, ctx, id)?;
        if ctx.busy {
            return Err(GraphError::new(
                409,
                "conflict",
                "Optimistic concurrency failure during fragmented upload: another fragment of this session is being uploaded.",
            ));
        }
        let Some(length) = ctx.content_length else {
            return Err(GraphError::new(411, "invalidRequest", "Content-Length is required."));
        };
        if ctx.too_big {
            return Err(GraphError::new(
                413,
                "invalidRequest",
                "The entity size in the request exceeds the maximum limit.",
            )
            .inner("maxFragmentLengthExceeded"));
        }
        let (first, last, total) = ctx.range.ok_or_else(|| {
            GraphError::invalid("The Content-Range header is missing or malformed (expected bytes first-last/total).")
        })?;
        let len = last - first + 1;
        if length != len || ctx.body.len() as u64 != len {
            return Err(GraphError::invalid(format!(
                "Content-Length {length} does not match Content-Range bytes {first}-{last}/{total}."
            )));
        }
        if s.total.is_some_and(|t| t != total) {
            return Err(GraphError::invalid(
                "Declared total size for this fragment is different from that of the upload session.",
            )
            .inner("fragmentLengthMismatch"));
        }
        if first < s.received {
            return Err(GraphError::new(416, "invalidRange", "Uploaded fragment overlaps with existing data.")
                .inner("fragmentOverlap"));
        }
        if first > s.received {
            return Err(
                GraphError::new(416, "invalidRange", "Uploaded fragment is out of order.").inner("fragmentOutOfOrder")
            );
        }
        // Fragments end on the 320 KiB grid (all but the last), so that the rest of a fragment
        // Graph kept only in part can be sent on its own.
        if config.strict_alignment && !ctx.partial && last + 1 < total && !(last + 1).is_multiple_of(FRAGMENT_ALIGN) {
            return Err(GraphError::invalid(format!(
                "A fragment that is not the last must end on a multiple of 320 KiB (327680 bytes); this one has {len} bytes and ends at {}.",
                last + 1
            )));
        }
        let target = match (&s.content, ctx.shared.storage.dir()) {
            (_, _) if config.discard_bodies => None,
            (Content::File(path), _) => Some(path.clone()),
            (_, Some(dir)) => Some(dir.join(".uploads").join(format!("graph-session-{id}"))),
            (_, None) => None,
        };
        (first, last, total, s.quickxor.clone(), target)
    };
    // The bytes are hashed and written outside the lock; the claim on the session keeps other
    // fragments out meanwhile.
    hasher.update(&ctx.body);
    if let Some(path) = &target {
        write_at(path, first, &ctx.body).map_err(|e| GraphError::storage(&e))?;
    }
    let mut store = ctx.shared.store();
    let Some(s) = store.sessions.get_mut(id) else {
        // Cancelled while the fragment was on its way.
        if let Some(path) = target {
            let _ = std::fs::remove_file(path);
        }
        return Err(GraphError::session_not_found());
    };
    s.content = match (std::mem::replace(&mut s.content, Content::Discarded), target) {
        (_, Some(path)) => Content::File(path),
        (Content::Memory(mut parts), None) if !config.discard_bodies => {
            parts.push(ctx.body.clone());
            Content::Memory(parts)
        }
        (_, None) if !config.discard_bodies => Content::Memory(vec![ctx.body.clone()]),
        (_, None) => Content::Discarded,
    };
    s.total = Some(total);
    s.received = last + 1;
    s.quickxor = hasher;
    s.expires = after(config.session_idle);
    s.expires_at = later(config.session_idle);
    if !s.complete() {
        return ok_json(202, &s.status(config.ranges_with_end));
    }
    if s.defer_commit {
        // Every byte is in: the session waits for its commit (POST to the upload URL, or PUT
        // to the item's Graph address with the upload URL as `@microsoft.graph.sourceUrl`).
        return ok_json(202, &s.status(config.ranges_with_end));
    }
    commit(ctx.shared, &mut store, id)
}

/// Writes a fragment at its offset in the session's file (cut back on failure, so the file
/// holds exactly the bytes received).
fn write_at(path: &std::path::Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    let written = file.seek(SeekFrom::Start(offset)).and_then(|_| file.write_all(bytes));
    if let Err(e) = written {
        let _ = file.set_len(offset);
        return Err(e);
    }
    Ok(())
}

/// Makes the session's bytes the item: where by the conflict behaviour, 201 for a new item and
/// 200 for a replaced one. A name taken meanwhile with `fail` answers 409 and keeps the session.
fn commit(shared: &Shared, store: &mut Store, id: &str) -> Result<Reply, GraphError> {
    let s = store.sessions.get(id).ok_or_else(GraphError::session_not_found)?;
    let drive = s.drive.clone();
    let taken = || {
        GraphError::name_exists(
            "Another file exists with the same name as the uploaded session. You can redirect the upload session to use a new filename by calling PUT with the new metadata and @microsoft.graph.sourceUrl attribute.",
        )
    };
    let (path, replaced) = match &s.replace_id {
        Some(rid) => {
            let path = store.path_of(&drive, rid).ok_or_else(GraphError::item_not_found)?;
            (path, Some(rid.clone()))
        }
        None => match store.item(&drive, &s.path) {
            None => (s.path.clone(), None),
            Some(existing) => match (s.conflict, &existing.kind) {
                (Conflict::Replace, Kind::File { .. }) => (s.path.clone(), Some(existing.id.clone())),
                (Conflict::Rename, _) => (free_name(store, &drive, &s.path), None),
                _ => return Err(taken()),
            },
        },
    };
    if check_parents(store, &drive, &path).is_err() {
        return Err(taken());
    }
    store_session(shared, store, id, &drive, path, replaced)
}

/// Makes a session's bytes the file at `path` of its drive (replacing the item `replaced`): 201
/// for a new item, 200 for a replaced one. 507 `quotaLimitReached`, with the session kept, when
/// the drive has no room for it.
fn store_session(
    shared: &Shared,
    store: &mut Store,
    id: &str,
    drive: &str,
    path: String,
    replaced: Option<String>,
) -> Result<Reply, GraphError> {
    let received = store.sessions.get(id).ok_or_else(GraphError::session_not_found)?.received;
    if let Some(quota) = shared.config.quota {
        let freed = match replaced.as_deref().and_then(|r| store.path_of(drive, r)).and_then(|p| store.item(drive, &p))
        {
            Some(ItemRec { kind: Kind::File { size, .. }, .. }) => *size,
            _ => 0,
        };
        if store.drive_bytes(drive).saturating_sub(freed).saturating_add(received) > quota {
            return Err(GraphError::quota_exceeded());
        }
    }
    let drive = drive.to_owned();
    let Some(s) = store.sessions.remove(id) else { return Err(GraphError::session_not_found()) };
    let size = s.received;
    let blob = match s.content {
        Content::Memory(parts) => Blob::Parts(parts),
        Content::File(temp) => Blob::File(temp),
        Content::Discarded => Blob::Discarded,
    };
    let blob = shared.storage.promote(&drive, &path, blob).map_err(|e| GraphError::storage(&e))?;
    let library = store.libraries.contains(&drive);
    let stored = library::Stored { blob, size, quickxor: s.quickxor.finish() };
    let stored = library::keep(library, &path, stored).map_err(|e| GraphError::storage(&e))?;
    // The folders on the way exist from now on.
    let now = iso(Utc::now());
    let mut folder = split_parent(&path).0;
    while !folder.is_empty() {
        let key = (drive.clone(), folder.to_owned());
        if !store.items.contains_key(&key) {
            let fid = new_item_id();
            store.ids.insert(fid.clone(), key.clone());
            store.items.insert(
                key,
                ItemRec {
                    id: fid,
                    kind: Kind::Folder,
                    version: 1,
                    created: now.clone(),
                    modified: now.clone(),
                    description: None,
                },
            );
        }
        folder = split_parent(folder).0;
    }
    let key = (drive.clone(), path.clone());
    let previous = store.items.get(&key).cloned();
    let info = s.file_system_info.unwrap_or_default();
    let item = ItemRec {
        id: replaced.clone().unwrap_or_else(new_item_id),
        kind: Kind::File {
            blob: stored.blob,
            size: stored.size,
            quickxor: stored.quickxor,
            mime: mime_type(split_parent(&path).1).into(),
        },
        version: previous.as_ref().map_or(1, |p| p.version + 1),
        created: info
            .created_date_time
            .or_else(|| previous.as_ref().map(|p| p.created.clone()))
            .unwrap_or_else(|| now.clone()),
        modified: info.last_modified_date_time.unwrap_or(now),
        description: s.description.or_else(|| previous.and_then(|p| p.description)),
    };
    store.ids.insert(item.id.clone(), key.clone());
    store.items.insert(key, item);
    let item = store.item(&drive, &path).ok_or_else(GraphError::item_not_found)?;
    ok_json(if replaced.is_some() { 200 } else { 201 }, &item_doc(store, &drive, &path, item))
}

/// The explicit commit: `PUT` to an item's Graph address (bearer token checked by the caller)
/// with `{"@microsoft.graph.sourceUrl": "<uploadUrl>", "name": …,
/// "@microsoft.graph.conflictBehavior": …}`. The session (of this drive, every byte in:
/// deferred, or kept after its last fragment met a taken name or a full drive) becomes the item
/// at that address, which need not be the one it was created for. `conflictBehavior` (the
/// body's, else the query's, else the session's own) and `If-Match`/`If-None-Match` apply to the
/// item at the address; `items/{id}` replaces that file. The upload URL is never repeated in
/// an answer.
fn commit_by_source_url(ctx: &Ctx<'_>, drive: &str, target: &Target) -> Result<Reply, GraphError> {
    let doc: serde_json::Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| GraphError::invalid(format!("The request body is not valid JSON: {e}")))?;
    let field = |name: &str| -> Result<Option<&str>, GraphError> {
        match doc.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(GraphError::invalid(format!("The property {name} must be a string."))),
        }
    };
    let source = field("@microsoft.graph.sourceUrl")?.ok_or_else(|| {
        GraphError::invalid(
            "The emulator updates an item by PUT only to commit an upload session: @microsoft.graph.sourceUrl is required.",
        )
    })?;
    let (session_id, tempauth) = upload_url_parts(&ctx.shared.upload_base, source).ok_or_else(|| {
        GraphError::invalid("@microsoft.graph.sourceUrl is not the uploadUrl of an upload session of this service.")
    })?;
    let given_conflict = field("@microsoft.graph.conflictBehavior")?
        .map(str::to_owned)
        .or_else(|| ctx.q("@microsoft.graph.conflictBehavior").map(str::to_owned));
    let conflict = match &given_conflict {
        None => None,
        Some(b) => Some(Conflict::parse(b).ok_or_else(|| {
            GraphError::invalid(format!(
                "Invalid value '{b}' for @microsoft.graph.conflictBehavior: expected fail, replace or rename."
            ))
        })?),
    };
    let name = field("name")?;
    let mut store = ctx.shared.store();
    store.sweep();
    // The URL's own token, checked as the upload host checks it; a wrong or expired one is no
    // session (a 401 from Graph would say the bearer token is wrong).
    let s =
        open_session_with(&mut store, ctx.shared, &session_id, tempauth.as_deref()).map_err(|e| match e.status {
            401 => GraphError::session_not_found(),
            _ => e,
        })?;
    if s.drive != drive {
        return Err(GraphError::invalid("The upload session belongs to another drive."));
    }
    if !s.complete() {
        return Err(GraphError::invalid("The upload session has not received all the bytes of the file.")
            .inner("uploadSessionIncomplete"));
    }
    let conflict = conflict.unwrap_or(s.conflict);
    // `name`, when given, is the name in the address.
    let same_name = |path: &str| match name {
        Some(given) if given != split_parent(path).1 => Err(GraphError::invalid(format!(
            "The name in the request body ({given:?}) does not match the name in the path ({:?}).",
            split_parent(path).1
        ))),
        _ => Ok(()),
    };
    let (path, replaced) = match target {
        Target::Item(item_id) => {
            let path = store.path_of(drive, item_id).ok_or_else(GraphError::item_not_found)?;
            same_name(&path)?;
            let existing = store.item(drive, &path).ok_or_else(GraphError::item_not_found)?;
            if !matches!(existing.kind, Kind::File { .. }) {
                return Err(GraphError::invalid("The item is a folder: only a file's content can be replaced."));
            }
            preconditions(ctx, Some(existing))?;
            (path, Some(existing.id.clone()))
        }
        Target::Path { .. } => {
            let path = target_path(&store, drive, target)?;
            same_name(&path)?;
            if !ctx.shared.storage.accepts_key(&path) {
                return Err(GraphError::invalid("The emulator's directory storage cannot keep this path as a file."));
            }
            check_parents(&store, drive, &path)?;
            let existing = store.item(drive, &path);
            preconditions(ctx, existing)?;
            match existing {
                None => (path, None),
                Some(e) => match (conflict, &e.kind) {
                    (Conflict::Replace, Kind::File { .. }) => (path, Some(e.id.clone())),
                    (Conflict::Rename, _) => (free_name(&store, drive, &path), None),
                    _ => return Err(GraphError::name_exists("The specified item name already exists.")),
                },
            }
        }
    };
    store_session(ctx.shared, &mut store, &session_id, drive, path, replaced)
}

/// The session id and `tempauth` of one of this emulator's upload URLs.
fn upload_url_parts(upload_base: &str, url: &str) -> Option<(String, Option<String>)> {
    let rest = url.strip_prefix(upload_base)?.strip_prefix("/up/")?;
    let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
    if id.is_empty() || id.contains('/') {
        return None;
    }
    let tempauth = q(&parse_query(query), "tempauth").map(str::to_owned);
    Some((id.to_owned(), tempauth))
}

/// `name 1.ext`, `name 2.ext`… : the first name not taken next to `path`.
fn free_name(store: &Store, drive: &str, path: &str) -> String {
    let (parent, name) = split_parent(path);
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    (1u64..)
        .map(|n| join(parent, &format!("{stem} {n}{ext}")))
        .find(|candidate| store.item(drive, candidate).is_none())
        .unwrap_or_else(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_names_keep_the_extension() {
        let mut store = Store::default();
        let file = |id: &str| ItemRec {
            id: id.into(),
            kind: Kind::Folder,
            version: 1,
            created: String::new(),
            modified: String::new(),
            description: None,
        };
        store.items.insert(("d".into(), "dir/a.bin".into()), file("1"));
        store.items.insert(("d".into(), "dir/a 1.bin".into()), file("2"));
        assert_eq!(free_name(&store, "d", "dir/a.bin"), "dir/a 2.bin");
        assert_eq!(free_name(&store, "d", ".profile"), ".profile 1");
        assert_eq!(free_name(&store, "d", "x.tar.gz"), "x.tar 1.gz");
    }

    #[test]
    fn ids_and_tags_look_like_graphs() {
        let id = new_item_id();
        assert_eq!(id.len(), 34);
        assert!(id.starts_with("01") && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{id}");
        assert_ne!(new_item_id(), id);
        let g = item_guid(&id);
        assert_eq!(g, item_guid(&id));
        assert_eq!(g.len(), 36);
        assert_eq!(g.matches('-').count(), 4);
        assert_eq!(split_parent("a/b/c.bin"), ("a/b", "c.bin"));
        assert_eq!(split_parent("c.bin"), ("", "c.bin"));
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("a", "x"), "a/x");
    }

    #[test]
    fn error_documents_use_each_hosts_spelling() {
        let e = GraphError::new(416, "invalidRange", "m").inner("fragmentOverlap");
        let body = |r: Reply| {
            let bytes = body_of(r);
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        let up = body(error_reply(&e, Style::Upload, "rid", "crid"));
        assert_eq!(up["error"]["innererror"]["code"], "fragmentOverlap");
        assert!(up["error"].get("innerError").is_none());
        let g = body(error_reply(&e, Style::Graph, "rid", "crid"));
        assert_eq!(g["error"]["innerError"]["request-id"], "rid");
        assert_eq!(g["error"]["innerError"]["client-request-id"], "crid");
        assert!(g["error"].get("innererror").is_none());
        let o = body(error_reply(&GraphError::new(401, "invalid_client", "AADSTS7000215"), Style::OAuth, "r", "c"));
        assert_eq!(o["error"], "invalid_client");
        let mut expired = GraphError::unauthenticated("x").inner("expiredToken");
        expired.expired = true;
        let r = error_reply(&expired, Style::Upload, "r", "c");
        assert_eq!(
            r.headers().get("www-authenticate").unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"expired_token\""
        );
    }

    /// The bytes of a reply built from `Full` (ready at once).
    fn body_of(r: Reply) -> Bytes {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { r.into_body().collect().await.unwrap().to_bytes() })
    }
}
