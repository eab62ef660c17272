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

mod ids;
mod items;
mod library;
mod records;
mod rest;
mod routes;
mod server;
mod sessions;
mod tokens;
use ids::*;
use records::*;
use server::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use super::{items::*, sessions::*, tokens::*};

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
