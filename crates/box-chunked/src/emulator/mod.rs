//! An in-process Box server (feature `emulator`) for tests, benchmarks, the CLI and users' own
//! tests.
//!
//! It runs two listeners, as Box has two hosts: the API host (`…/2.0`, file information and
//! content, and the token endpoint `/oauth2/token`) and the upload host (`…/api/2.0`, the chunked
//! upload sessions and the plain upload). Sessions name their later calls in absolute
//! `session_endpoints` on the upload host, which clients must follow. What makes Box strict:
//!
//! * bearer tokens on every call: fixed tokens, and tokens from the token endpoint (Client
//!   Credentials Grant, rotating refresh tokens) that expire; `As-User`; only the user who
//!   created a session may use it (403 `forbidden`);
//! * the server picks the part size; the chunked minimum (20,000,000 bytes by default:
//!   `file_size_too_small`); name clashes (409 `item_name_in_use` with `context_info.conflicts`);
//! * parts: `Content-Range` on the part grid of the session (416 otherwise), `Digest: sha=`
//!   checked, parts immutable (416 `range_overlaps_existing_part` with
//!   `context_info.conflicting_part`), any order and in parallel;
//! * List Parts with index offsets and limits; Commit with the whole-file `Digest`
//!   (`digest_mismatch`), the parts matching what is stored (`parts_mismatch`), `If-Match`
//!   (412), attributes, and 202 with `Retry-After` while Box "processes" the parts (the first
//!   commits of each session, configurable);
//! * Abort (204), expiry (410 `session_expired`), malformed ids (400
//!   `invalid_upload_session_id`), unknown sessions (404 `not_found`);
//! * a request refused from its headers (the bearer token; for a part its range, digest,
//!   session and a `Content-Length` equal to the range, 411 `length_required` without one) is
//!   answered before a byte of its body is read; the plain upload takes 50 MB (413
//!   `request_entity_too_large` above, unread when its length says so, as soon as a chunked
//!   body passes it), and any other body is bounded alike; issued tokens and sessions long
//!   expired are forgotten;
//! * Box's error document on every error, `box-request-id` on every answer;
//! * storage in memory or in a directory (`<dir>/<folder id>/<name>`), the shared fault
//!   injection and request log (the latest [`EmulatorConfig::log_capacity`] requests).
//!
//! ```
//! use box_chunked::emulator::{Emulator, EmulatorConfig};
//! use box_chunked::{Client, Source, Uploader};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = Emulator::start(EmulatorConfig { min_chunked: 10, ..EmulatorConfig::default() }).await?;
//! let uploader = Uploader::new(Client::new(emulator.client_config())?);
//! let dir = std::env::temp_dir().join(format!("box-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("hello.txt"), b"hello")?;
//! let done = uploader.upload_file("0", "hello.txt", dir.join("hello.txt")).await?;
//! assert_eq!(emulator.file_content(&done.file.id).as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```

mod form;
mod request;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde::Serialize;
use upload_core::emulator::{Blob, Reply, RequestLog, Server, Storage, empty, is_unstorable};
use upload_core::hash::{Digests, Hashes, hex};

pub use upload_core::emulator::FaultAction;

use crate::types::*;

/// The operations the emulator knows, for faults and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Operation {
    /// POST /oauth2/token
    Token,
    /// POST /files/upload_sessions
    CreateUploadSession,
    /// POST /files/{id}/upload_sessions
    CreateFileUploadSession,
    /// GET /files/upload_sessions/{id}
    GetUploadSession,
    /// PUT /files/upload_sessions/{id}
    UploadPart,
    /// GET /files/upload_sessions/{id}/parts
    ListParts,
    /// POST /files/upload_sessions/{id}/commit
    Commit,
    /// DELETE /files/upload_sessions/{id}
    Abort,
    /// POST /files/upload_sessions/{id}/log
    LogEvent,
    /// POST /files/content
    UploadFile,
    /// POST /files/{id}/content
    UploadFileVersion,
    /// GET /files/{id}
    GetFile,
    /// GET /files/{id}/content
    DownloadFile,
}

/// A fault: which requests it hits, how often, and what it does. For part uploads the part
/// number is the part's index (offset / part size).
pub type Fault = upload_core::emulator::Fault<Operation>;

/// One request as the emulator saw it (`access_key_id` holds the acting user).
pub type LoggedRequest = upload_core::emulator::LoggedRequest<Operation>;

/// How an emulator starts.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address of the API host (`127.0.0.1:0` picks a free port).
    pub api_listen: SocketAddr,
    /// Address of the upload host.
    pub upload_listen: SocketAddr,
    /// Fixed access tokens and the user each acts as.
    pub tokens: Vec<(String, String)>,
    /// OAuth clients (client id, client secret) the token endpoint knows.
    pub clients: Vec<(String, String)>,
    /// Refresh tokens the token endpoint accepts at start (each for the user "1001").
    pub refresh_tokens: Vec<String>,
    /// Lifetime of the tokens the token endpoint issues.
    pub token_lifetime: Duration,
    /// The part size Box picks; `None`: by file size (8 MiB below 256 MiB, 32 MiB below 4 GiB,
    /// 64 MiB above), as observed.
    pub part_size: Option<u64>,
    /// The chunked upload minimum (Box: 20 MB).
    pub min_chunked: u64,
    /// How many commits of each session are answered 202 (Box still processing) first.
    pub processing_commits: u32,
    /// The `Retry-After` of those 202 answers, in seconds.
    pub processing_retry_after: u64,
    /// How long a session lives (Box: 7 days).
    pub session_lifetime: Duration,
    /// Folder ids that exist besides the root "0".
    pub folders: Vec<String>,
    /// Keep files and parts as files here (`<dir>/<folder id>/<name>`) instead of in memory.
    pub data_dir: Option<PathBuf>,
    /// Keep only the length and digests of part bodies, not the bytes (benchmarks).
    pub discard_bodies: bool,
    /// The base of `session_endpoints` (default: a regional upload host of its own, as Box
    /// returns); tests point it elsewhere to check that clients refuse untrusted hosts.
    pub session_endpoint_base: Option<String>,
    /// Users who may act as others with `As-User` (service accounts always may).
    pub admins: Vec<String>,
    /// How many requests the log keeps (the latest; [`Emulator::requests`]).
    pub log_capacity: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            api_listen: local,
            upload_listen: local,
            tokens: vec![("emulator-token".into(), "1001".into())],
            clients: vec![("emulator-client-id".into(), "emulator-client-secret".into())],
            refresh_tokens: vec!["emulator-refresh-token".into()],
            token_lifetime: Duration::from_secs(3600),
            part_size: None,
            min_chunked: crate::CHUNKED_MIN,
            processing_commits: 1,
            processing_retry_after: 1,
            session_lifetime: Duration::from_secs(7 * 24 * 3600),
            folders: Vec::new(),
            data_dir: None,
            discard_bodies: false,
            session_endpoint_base: None,
            admins: vec!["1001".into()],
            log_capacity: upload_core::emulator::LOG_CAPACITY,
        }
    }
}

const HELP_URL: &str = "https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/";

/// An error answer.
#[derive(Clone, Debug)]
struct BoxFault {
    status: u16,
    code: String,
    message: String,
    context: Option<serde_json::Value>,
    retry_after: Option<u64>,
}

impl BoxFault {
    fn new(status: u16, code: &str, message: &str) -> Self {
        Self { status, code: code.into(), message: message.into(), context: None, retry_after: None }
    }

    fn context(mut self, context: serde_json::Value) -> Self {
        self.context = Some(context);
        self
    }

    fn storage(e: &std::io::Error) -> Self {
        if is_unstorable(e) {
            Self::new(400, "item_name_invalid", "The emulator's directory storage cannot keep this name as a file.")
        } else {
            Self::new(500, "internal_server_error", &e.to_string())
        }
    }

    fn not_found() -> Self {
        Self::new(404, "not_found", "Could not find the specified resource")
    }
}

#[derive(Clone, Debug)]
struct StoredPart {
    part_id: String,
    size: u64,
    sha1: [u8; 20],
    blob: Blob,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Folder { folder_id: String, name: String },
    Version { file_id: String, new_name: Option<String> },
}

#[derive(Debug)]
enum SessionState {
    Open,
    Committed(String),
}

#[derive(Debug)]
struct SessionRec {
    owner: String,
    file_size: u64,
    part_size: u64,
    total_parts: u32,
    target: Target,
    parts: BTreeMap<u64, StoredPart>,
    expires: Instant,
    expires_at: String,
    commits: u32,
    state: SessionState,
}

#[derive(Clone, Debug)]
struct FileRec {
    folder_id: String,
    name: String,
    blob: Blob,
    size: u64,
    sha1: [u8; 20],
    version: u64,
    description: Option<String>,
    content_modified_at: Option<String>,
}

#[derive(Debug, Default)]
struct Store {
    sessions: HashMap<String, SessionRec>,
    files: BTreeMap<String, FileRec>,
    /// Access tokens: the user and when the token expires (`None`: never).
    tokens: HashMap<String, (String, Option<Instant>)>,
    /// Refresh tokens and the user they act as.
    refresh: HashMap<String, String>,
    faults: Vec<Fault>,
    log: RequestLog<Operation>,
    counter: u64,
}

struct Shared {
    config: EmulatorConfig,
    storage: Storage,
    upload_base: String,
    store: Mutex<Store>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running emulator. Dropping it stops both listeners.
pub struct Emulator {
    api: Server,
    upload: Server,
    /// Where session endpoints point.
    regional: Server,
    shared: Arc<Shared>,
}

/// Which listener a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Host {
    Api,
    Upload,
    Session,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("api", &self.api.addr())
            .field("upload", &self.upload.addr())
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts an emulator on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let mut folders = vec!["0".to_owned()];
        folders.extend(config.folders.iter().cloned());
        let storage = Storage::new(config.data_dir.clone(), &folders)?;
        let api_listen = config.api_listen;
        let upload_listen = config.upload_listen;
        // The upload listener is bound first: its address goes into session endpoints.
        let slot: Arc<Mutex<Option<Arc<Shared>>>> = Arc::new(Mutex::new(None));
        let upload_slot = slot.clone();
        let upload = Server::start(upload_listen, move |req| {
            let shared = upload_slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            request::handle(shared, Host::Upload, req)
        })
        .await?;
        let api_slot = slot.clone();
        let api = Server::start(api_listen, move |req| {
            let shared = api_slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            request::handle(shared, Host::Api, req)
        })
        .await?;
        // The session endpoints go to a host of their own, as Box's regional upload hosts do:
        // a client that builds the URLs itself instead of following them fails.
        let regional_slot = slot.clone();
        let regional = Server::start(SocketAddr::new(upload_listen.ip(), 0), move |req| {
            let shared = regional_slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            request::handle(shared, Host::Session, req)
        })
        .await?;
        let upload_base = config
            .session_endpoint_base
            .clone()
            .unwrap_or_else(|| format!("http://{}/api/2.0", regional.addr()))
            .trim_end_matches('/')
            .to_owned();
        let mut store = Store { log: RequestLog::new(config.log_capacity), ..Store::default() };
        for (token, user) in &config.tokens {
            store.tokens.insert(token.clone(), (user.clone(), None));
        }
        for r in &config.refresh_tokens {
            store.refresh.insert(r.clone(), "1001".into());
        }
        let shared = Arc::new(Shared { config, storage, upload_base, store: Mutex::new(store) });
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(shared.clone());
        Ok(Self { api, upload, regional, shared })
    }

    /// The API base, `http://127.0.0.1:<port>/2.0`.
    pub fn api_url(&self) -> String {
        format!("http://{}/2.0", self.api.addr())
    }

    /// The upload base, `http://127.0.0.1:<port>/api/2.0`.
    pub fn upload_url(&self) -> String {
        format!("http://{}/api/2.0", self.upload.addr())
    }

    /// The token endpoint.
    pub fn oauth_url(&self) -> String {
        format!("http://{}/oauth2/token", self.api.addr())
    }

    /// The API host's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.addr()
    }

    /// The upload host's address.
    pub fn upload_addr(&self) -> SocketAddr {
        self.upload.addr()
    }

    /// The first fixed token.
    pub fn token(&self) -> String {
        self.shared.config.tokens.first().map(|(t, _)| t.clone()).unwrap_or_default()
    }

    /// A client configuration for this emulator (its URLs and first fixed token).
    pub fn client_config(&self) -> crate::Config {
        self.config_with(crate::Auth::Token(upload_core::Secret::new(self.token())))
    }

    /// A client configuration for this emulator with other authentication.
    pub fn config_with(&self, auth: crate::Auth) -> crate::Config {
        let base = crate::Config::new(auth);
        let mut config = base.clone().with_urls(&self.api_url(), &self.upload_url(), &self.oauth_url()).unwrap_or(base);
        config.chunked_min = self.shared.config.min_chunked;
        // The regional host of the session endpoints, as Box's own *.box.com hosts are trusted.
        config.trusted_urls.push(format!("http://{}", self.regional.addr()));
        config
    }

    /// The host the session endpoints point at (Box's regional upload host).
    pub fn session_url(&self) -> String {
        format!("http://{}/api/2.0", self.regional.addr())
    }

    /// Makes every token the token endpoint issued expire now (fixed tokens stay).
    pub fn expire_tokens(&self) {
        let fixed: Vec<&String> = self.shared.config.tokens.iter().map(|(t, _)| t).collect();
        self.shared.store().tokens.retain(|t, _| fixed.contains(&t));
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.store().faults.push(fault);
    }

    /// The requests so far, oldest first: the latest [`EmulatorConfig::log_capacity`] of them.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.store().log.entries()
    }

    /// How many requests arrived so far and the sum of their body lengths, the ones the log no
    /// longer keeps included (what a benchmark reports).
    pub fn request_totals(&self) -> (u64, u64) {
        self.shared.store().log.totals()
    }

    /// The content of a file, if it exists.
    pub fn file_content(&self, file_id: &str) -> Option<Bytes> {
        let file = self.shared.store().files.get(file_id).cloned()?;
        file.blob.read().ok()
    }

    /// The id of the file named `name` in a folder.
    pub fn find_file(&self, folder_id: &str, name: &str) -> Option<String> {
        let store = self.shared.store();
        store.files.iter().find(|(_, f)| f.folder_id == folder_id && f.name == name).map(|(id, _)| id.clone())
    }

    /// The sessions not committed: (session id, parts stored).
    pub fn open_sessions(&self) -> Vec<(String, usize)> {
        let store = self.shared.store();
        store
            .sessions
            .iter()
            .filter(|(_, s)| matches!(s.state, SessionState::Open))
            .map(|(id, s)| (id.clone(), s.parts.len()))
            .collect()
    }
}

fn ok_json<T: Serialize>(status: u16, doc: &T) -> Result<Reply, BoxFault> {
    let body = serde_json::to_vec(doc).map_err(|e| BoxFault::new(500, "internal_server_error", &e.to_string()))?;
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| BoxFault::new(500, "internal_server_error", &e.to_string()))
}

/// The emulator's request parsing on its own, for the fuzz tests: the route of `method` and
/// `path` on each host (API, upload, session), named with the id in the path.
#[cfg(feature = "fuzzing")]
pub(crate) fn route_for_fuzzing(method: &str, path: &str) -> [Option<(String, Option<String>)>; 3] {
    [Host::Api, Host::Upload, Host::Session]
        .map(|host| request::route(host, method, path).map(|(op, id)| (format!("{op:?}"), id)))
}

/// The emulator's `Content-Range` parsing on its own, for the fuzz tests.
#[cfg(feature = "fuzzing")]
pub(crate) fn content_range_for_fuzzing(value: &str) -> Option<(u64, u64, u64)> {
    request::content_range(value)
}

struct Ctx<'a> {
    shared: &'a Shared,
    user: String,
    id: String,
    query: &'a [(String, String)],
    headers: &'a [(String, String)],
    body: Bytes,
    discarded: Option<upload_core::emulator::Discarded>,
    content_length: Option<usize>,
}

impl Ctx<'_> {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
    }

    fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, BoxFault> {
        serde_json::from_slice(&self.body).map_err(|e| BoxFault::new(400, "bad_request", &format!("Invalid JSON: {e}")))
    }
}

fn dispatch(op: Operation, ctx: &Ctx<'_>) -> Result<Reply, BoxFault> {
    match op {
        Operation::Token => Err(BoxFault::not_found()),
        Operation::CreateUploadSession => create_session(ctx, None),
        Operation::CreateFileUploadSession => create_session(ctx, Some(ctx.id.clone())),
        Operation::GetUploadSession => {
            let store = ctx.shared.store();
            let s = session(&store, ctx)?;
            ok_json(200, &session_doc(ctx.shared, &ctx.id, s))
        }
        Operation::UploadPart => upload_part(ctx),
        Operation::ListParts => list_parts(ctx),
        Operation::Commit => commit(ctx),
        Operation::Abort => abort(ctx),
        Operation::LogEvent => {
            let store = ctx.shared.store();
            session(&store, ctx)?;
            Ok(empty(204))
        }
        Operation::UploadFile => plain_upload(ctx, None),
        Operation::UploadFileVersion => plain_upload(ctx, Some(ctx.id.clone())),
        Operation::GetFile => {
            let store = ctx.shared.store();
            let file = store.files.get(&ctx.id).ok_or_else(BoxFault::not_found)?;
            ok_json(200, &file_doc(&ctx.id, file))
        }
        Operation::DownloadFile => {
            let file = ctx.shared.store().files.get(&ctx.id).cloned().ok_or_else(BoxFault::not_found)?;
            let bytes = file.blob.read().map_err(|e| BoxFault::storage(&e))?;
            Response::builder()
                .status(200)
                .header("content-type", "application/octet-stream")
                .body(Full::new(bytes))
                .map_err(|e| BoxFault::new(500, "internal_server_error", &e.to_string()))
        }
    }
}

fn check_name(name: &str) -> Result<(), BoxFault> {
    crate::client::validate_file_name(name).map_err(|e| BoxFault::new(400, "item_name_invalid", &e.to_string()))
}

fn name_in_use(store: &Store, folder_id: &str, name: &str, except: Option<&str>) -> Result<(), BoxFault> {
    match store.files.iter().find(|(id, f)| f.folder_id == folder_id && f.name == name && Some(id.as_str()) != except) {
        Some((id, f)) => Err(BoxFault::new(409, "item_name_in_use", "Item with the same name already exists")
            .context(serde_json::json!({"conflicts": [file_doc(id, f)]}))),
        None => Ok(()),
    }
}

fn folder_exists(ctx: &Ctx<'_>, folder_id: &str) -> bool {
    folder_id == "0" || ctx.shared.config.folders.iter().any(|f| f == folder_id)
}

fn new_id(store: &mut Store, bytes: usize) -> String {
    store.counter += 1;
    let digest =
        Digests::compute(Hashes::SHA1, format!("{}#{}", store.counter, upload_core::emulator::unique()).as_bytes());
    hex(&digest.sha1.unwrap_or_default())[..bytes * 2].to_ascii_uppercase()
}

fn part_size_for(config: &EmulatorConfig, file_size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    config.part_size.unwrap_or(match file_size {
        s if s < 256 * MIB => 8 * MIB,
        s if s < 4096 * MIB => 32 * MIB,
        _ => 64 * MIB,
    })
}

fn session_doc(shared: &Shared, id: &str, s: &SessionRec) -> UploadSession {
    let base = format!("{}/files/upload_sessions/{id}", shared.upload_base);
    UploadSession {
        id: id.to_owned(),
        kind: Some("upload_session".into()),
        session_expires_at: Some(s.expires_at.clone()),
        part_size: s.part_size,
        total_parts: s.total_parts,
        num_parts_processed: Some(u32::try_from(s.parts.len()).unwrap_or(u32::MAX)),
        session_endpoints: Some(SessionEndpoints {
            upload_part: Some(base.clone()),
            commit: Some(format!("{base}/commit")),
            abort: Some(base.clone()),
            list_parts: Some(format!("{base}/parts")),
            status: Some(base.clone()),
            log_event: Some(format!("{base}/log")),
        }),
    }
}

fn file_doc(id: &str, f: &FileRec) -> File {
    File {
        kind: Some("file".into()),
        id: id.to_owned(),
        etag: Some((f.version - 1).to_string()),
        sequence_id: Some((f.version - 1).to_string()),
        name: Some(f.name.clone()),
        size: Some(f.size),
        sha1: Some(hex(&f.sha1)),
        description: f.description.clone(),
        content_modified_at: f.content_modified_at.clone(),
        parent: Some(ItemRef { kind: Some("folder".into()), id: f.folder_id.clone(), ..ItemRef::default() }),
        file_version: Some(FileVersion {
            kind: Some("file_version".into()),
            id: format!("{id}{:04}", f.version),
            sha1: Some(hex(&f.sha1)),
        }),
    }
}

fn create_session(ctx: &Ctx<'_>, file_id: Option<String>) -> Result<Reply, BoxFault> {
    let body: serde_json::Value = ctx.json()?;
    let file_size = match body.get("file_size") {
        None => return Err(BoxFault::new(400, "missing_file_size", "file_size is required")),
        Some(v) => v.as_u64().ok_or_else(|| BoxFault::new(400, "invalid_file_size", "file_size is not valid"))?,
    };
    let name = body.get("file_name").and_then(|v| v.as_str()).map(str::to_owned);
    let mut store = ctx.shared.store();
    let target = match file_id {
        None => {
            let folder_id = match body.get("folder_id") {
                None => return Err(BoxFault::new(400, "missing_destination", "folder_id is required")),
                Some(v) => v
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| BoxFault::new(400, "invalid_folder_id", "folder_id is not valid"))?,
            };
            let name = name.ok_or_else(|| BoxFault::new(400, "missing_file_name", "file_name is required"))?;
            check_name(&name)?;
            if !folder_exists(ctx, &folder_id) {
                return Err(BoxFault::new(404, "invalid_parameter", "The folder does not exist"));
            }
            name_in_use(&store, &folder_id, &name, None)?;
            if !ctx.shared.storage.accepts_key(&name) {
                return Err(BoxFault::new(
                    400,
                    "item_name_invalid",
                    "The emulator's directory storage cannot keep this name.",
                ));
            }
            Target::Folder { folder_id, name }
        }
        Some(file_id) => {
            let existing = store.files.get(&file_id).ok_or_else(BoxFault::not_found)?;
            if let Some(n) = &name {
                check_name(n)?;
                name_in_use(&store, &existing.folder_id, n, Some(&file_id))?;
            }
            Target::Version { file_id, new_name: name }
        }
    };
    if file_size < ctx.shared.config.min_chunked {
        return Err(BoxFault::new(
            400,
            "file_size_too_small",
            &format!("file_size is below the minimum of {} bytes for a chunked upload", ctx.shared.config.min_chunked),
        ));
    }
    let part_size = part_size_for(&ctx.shared.config, file_size);
    let total_parts = u32::try_from(file_size.div_ceil(part_size).max(1)).unwrap_or(u32::MAX);
    let lifetime = ctx.shared.config.session_lifetime;
    let expires_at = (chrono::Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or_default())
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let id = new_id(&mut store, 16);
    let rec = SessionRec {
        owner: ctx.user.clone(),
        file_size,
        part_size,
        total_parts,
        target,
        parts: BTreeMap::new(),
        expires: Instant::now() + lifetime,
        expires_at,
        commits: 0,
        state: SessionState::Open,
    };
    let doc = session_doc(ctx.shared, &id, &rec);
    prune_sessions(&mut store, lifetime);
    store.sessions.insert(id, rec);
    ok_json(201, &doc)
}

/// Forgets the sessions that expired longer ago than they lived (until then their URLs answer
/// 410 `session_expired`, as Box's do), with their parts: the sessions kept are those of a
/// bounded span of time.
fn prune_sessions(store: &mut Store, lifetime: Duration) {
    let now = Instant::now();
    let gone: Vec<String> = store
        .sessions
        .iter()
        .filter(|(_, s)| s.expires.checked_add(lifetime).is_some_and(|forget| now >= forget))
        .map(|(id, _)| id.clone())
        .collect();
    for id in gone {
        if let Some(s) = store.sessions.remove(&id) {
            s.parts.values().for_each(|p| p.blob.remove());
        }
    }
}

/// The session of the request, checked: well-formed id, exists, not expired, the caller's.
fn session<'s>(store: &'s Store, ctx: &Ctx<'_>) -> Result<&'s SessionRec, BoxFault> {
    if ctx.id.len() != 32 || !ctx.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BoxFault::new(400, "invalid_upload_session_id", "The upload session id is not valid"));
    }
    let s = store.sessions.get(&ctx.id).ok_or_else(BoxFault::not_found)?;
    if Instant::now() >= s.expires {
        return Err(BoxFault::new(410, "session_expired", "The upload session has expired"));
    }
    if s.owner != ctx.user {
        return Err(BoxFault::new(403, "forbidden", "Only the user who created the upload session may use it"));
    }
    Ok(s)
}

fn part_doc(offset: u64, p: &StoredPart) -> UploadPart {
    UploadPart { part_id: p.part_id.clone(), offset, size: p.size, sha1: Some(hex(&p.sha1)) }
}

fn digest_value(value: Option<String>) -> Result<[u8; 20], BoxFault> {
    let value = value.ok_or_else(|| BoxFault::new(400, "bad_request", "The Digest header is required"))?;
    let b64 = value
        .split(',')
        .find_map(|item| {
            let (alg, v) = item.trim().split_once('=')?;
            alg.trim().eq_ignore_ascii_case("sha").then(|| v.trim().to_owned())
        })
        .ok_or_else(|| BoxFault::new(400, "bad_request", "The Digest header must carry sha=<base64 SHA-1>"))?;
    STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| <[u8; 20]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| BoxFault::new(400, "bad_request", "The sha digest is not the base64 of 20 bytes"))
}

/// Where a part goes, from its headers: its range on the session's part grid and the SHA-1 its
/// `Digest` names.
struct PartRange {
    first: u64,
    last: u64,
    /// Its length, which its body must have.
    len: u64,
    want_sha1: [u8; 20],
}

/// The checks of a part upload that need no body: `Content-Range` and `Digest` well-formed, the
/// session the caller's and open, the range one part of its grid.
fn part_range(ctx: &Ctx<'_>) -> Result<PartRange, BoxFault> {
    let (first, last, total) =
        ctx.header("content-range").as_deref().and_then(request::content_range).ok_or_else(|| {
            BoxFault::new(416, "requested_range_not_satisfiable", "Content-Range is missing or malformed")
        })?;
    let want_sha1 = digest_value(ctx.header("digest"))?;
    let (part_size, file_size) = {
        let store = ctx.shared.store();
        let s = session(&store, ctx)?;
        if !matches!(s.state, SessionState::Open) {
            return Err(BoxFault::new(400, "bad_request", "The upload session is committed"));
        }
        (s.part_size, s.file_size)
    };
    let expected_last = first.saturating_add(part_size).min(file_size).saturating_sub(1);
    if total != file_size || !first.is_multiple_of(part_size) || first >= file_size.max(1) || last != expected_last {
        return Err(BoxFault::new(
            416,
            "requested_range_not_satisfiable",
            &format!("The range does not fit the session: parts of {part_size} bytes of a {file_size}-byte file"),
        ));
    }
    Ok(PartRange { first, last, len: last - first + 1, want_sha1 })
}

/// Upload part. Its headers were checked before the body was read ([`part_range`]); they are
/// checked again, as the session may have been committed or aborted meanwhile.
fn upload_part(ctx: &Ctx<'_>) -> Result<Reply, BoxFault> {
    let PartRange { first, last, len, want_sha1 } = part_range(ctx)?;
    let (got_len, sha1) = match ctx.discarded {
        Some(d) => (d.len, d.sha1.unwrap_or_default()),
        None => (ctx.body.len() as u64, Digests::compute(Hashes::SHA1, &ctx.body).sha1.unwrap_or_default()),
    };
    if got_len != len {
        return Err(BoxFault::new(
            416,
            "requested_range_not_satisfiable",
            "The body length does not match Content-Range",
        ));
    }
    if sha1 != want_sha1 {
        return Err(BoxFault::new(400, "bad_digest", "The digest of the part does not match its content"));
    }
    let blob = match ctx.discarded {
        Some(_) => Blob::Discarded,
        None => {
            let name = format!("{}-{first}-{}", ctx.id, upload_core::emulator::unique());
            ctx.shared.storage.keep(&name, &ctx.body).map_err(|e| BoxFault::storage(&e))?
        }
    };
    let mut store = ctx.shared.store();
    let part_id = new_id(&mut store, 4);
    let Some(s) = store.sessions.get_mut(&ctx.id).filter(|s| matches!(s.state, SessionState::Open)) else {
        blob.remove();
        return Err(BoxFault::not_found());
    };
    // Parts are immutable: any overlap with a stored range is refused.
    let overlap = s
        .parts
        .range(..=last)
        .next_back()
        .filter(|(offset, p)| **offset + p.size > first)
        .map(|(offset, p)| part_doc(*offset, p));
    if let Some(existing) = overlap {
        blob.remove();
        return Err(BoxFault::new(
            416,
            "range_overlaps_existing_part",
            &format!(
                "Part overlaps with previously uploaded part: {}",
                serde_json::to_string(&existing).unwrap_or_default()
            ),
        )
        .context(serde_json::json!({ "conflicting_part": existing })));
    }
    let part = StoredPart { part_id, size: len, sha1, blob };
    let doc = part_doc(first, &part);
    s.parts.insert(first, part);
    ok_json(200, &UploadedPart { part: doc })
}

fn list_parts(ctx: &Ctx<'_>) -> Result<Reply, BoxFault> {
    let offset: u64 = match ctx.q("offset") {
        None => 0,
        Some(v) => v.parse().map_err(|_| BoxFault::new(400, "bad_request", "offset must be a number"))?,
    };
    if offset > 10_000 {
        return Err(BoxFault::new(400, "bad_request", "offset must not exceed 10000"));
    }
    let limit: u64 = match ctx.q("limit") {
        None => 1000,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(BoxFault::new(400, "bad_request", "limit must be between 1 and 1000")),
        },
    };
    let store = ctx.shared.store();
    let s = session(&store, ctx)?;
    let entries: Vec<UploadPart> = s
        .parts
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(1000))
        .map(|(o, p)| part_doc(*o, p))
        .collect();
    ok_json(
        200,
        &UploadParts { total_count: Some(s.parts.len() as u64), limit: Some(limit), offset: Some(offset), entries },
    )
}

fn commit(ctx: &Ctx<'_>) -> Result<Reply, BoxFault> {
    let want_sha1 = digest_value(ctx.header("digest"))?;
    let input: CommitInput = ctx.json()?;
    let mut store = ctx.shared.store();
    let s = session(&store, ctx)?;
    if let SessionState::Committed(file_id) = &s.state {
        // A repeated commit (its first answer lost) answers with the file again.
        let file = store.files.get(file_id).ok_or_else(BoxFault::not_found)?;
        return ok_json(201, &Files { total_count: Some(1), entries: vec![file_doc(file_id, file)] });
    }
    // The listed parts must be the stored ones and cover the file, in order.
    let mismatch = |p: &UploadPart| {
        BoxFault::new(
            400,
            "parts_mismatch",
            &format!("No matching part found on server for {}", serde_json::to_string(p).unwrap_or_default()),
        )
    };
    let mut next = 0u64;
    let mut blobs = Vec::with_capacity(input.parts.len());
    for p in &input.parts {
        let stored = s.parts.get(&p.offset).filter(|sp| sp.part_id == p.part_id && sp.size == p.size);
        let Some(stored) = stored else { return Err(mismatch(p)) };
        if p.offset != next || p.sha1.as_deref().is_some_and(|h| !h.eq_ignore_ascii_case(&hex(&stored.sha1))) {
            return Err(mismatch(p));
        }
        next = p.offset + p.size;
        blobs.push(stored.blob.clone());
    }
    if next != s.file_size || (input.parts.is_empty() && s.file_size > 0) {
        return Err(BoxFault::new(400, "parts_mismatch", "The parts do not cover the whole file"));
    }
    let (target, commits) = (s.target.clone(), s.commits);
    // Box processes parts after they arrive: the first commits are answered 202.
    if commits < ctx.shared.config.processing_commits {
        if let Some(s) = store.sessions.get_mut(&ctx.id) {
            s.commits += 1;
        }
        return Response::builder()
            .status(202)
            .header("retry-after", ctx.shared.config.processing_retry_after.to_string())
            .body(Full::new(Bytes::new()))
            .map_err(|e| BoxFault::new(500, "internal_server_error", &e.to_string()));
    }
    // The whole-file SHA-1: combined from the parts' bytes (discarded parts cannot be checked).
    let discarded = blobs.iter().any(|b| matches!(b, Blob::Discarded));
    let actual = if discarded {
        want_sha1
    } else {
        let mut hasher = upload_core::hash::WholeHasher::new(Hashes::SHA1);
        for b in &blobs {
            hasher.update(&b.read().map_err(|e| BoxFault::storage(&e))?);
        }
        hasher.finish().sha1.unwrap_or_default()
    };
    if actual != want_sha1 {
        return Err(BoxFault::new(
            400,
            "digest_mismatch",
            &format!(
                "File digest was incorrect. Actual: {} Expected: {}",
                STANDARD.encode(actual),
                STANDARD.encode(want_sha1)
            ),
        ));
    }
    let attributes = input.attributes.unwrap_or_default();
    let attr = |k: &str| attributes.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let (file_id, folder_id, name, version) = match &target {
        Target::Folder { folder_id, name } => {
            name_in_use(&store, folder_id, name, None)?;
            (new_file_id(&mut store), folder_id.clone(), name.clone(), 1)
        }
        Target::Version { file_id, new_name } => {
            let existing = store.files.get(file_id).ok_or_else(BoxFault::not_found)?;
            if let Some(etag) = ctx.header("if-match")
                && etag.trim_matches('"') != (existing.version - 1).to_string()
            {
                return Err(BoxFault::new(
                    412,
                    "precondition_failed",
                    "The resource has been modified. Please retrieve the resource again and retry",
                ));
            }
            let name = new_name.clone().unwrap_or_else(|| existing.name.clone());
            (file_id.clone(), existing.folder_id.clone(), name, existing.version + 1)
        }
    };
    let refs: Vec<&Blob> = blobs.iter().collect();
    let blob = ctx.shared.storage.assemble(&folder_id, &name, &refs).map_err(|e| BoxFault::storage(&e))?;
    let size = next;
    let rec = FileRec {
        folder_id,
        name,
        blob,
        size,
        sha1: want_sha1,
        version,
        description: attr("description"),
        content_modified_at: attr("content_modified_at"),
    };
    let doc = file_doc(&file_id, &rec);
    if let Some(s) = store.sessions.get_mut(&ctx.id) {
        s.state = SessionState::Committed(file_id.clone());
        // The bytes are the file's now; the parts stay listed (a resume from a state saved
        // before the commit's answer finds them all and commits again, which answers the file).
        for p in s.parts.values_mut() {
            p.blob.remove();
            p.blob = Blob::Discarded;
        }
    }
    store.files.insert(file_id, rec);
    ok_json(201, &Files { total_count: Some(1), entries: vec![doc] })
}

fn new_file_id(store: &mut Store) -> String {
    store.counter += 1;
    format!("{}", 1_000_000_000_000 + store.counter * 7919)
}

fn abort(ctx: &Ctx<'_>) -> Result<Reply, BoxFault> {
    let mut store = ctx.shared.store();
    session(&store, ctx)?;
    if let Some(s) = store.sessions.remove(&ctx.id) {
        for p in s.parts.into_values() {
            p.blob.remove();
        }
    }
    Ok(empty(204))
}

fn plain_upload(ctx: &Ctx<'_>, file_id: Option<String>) -> Result<Reply, BoxFault> {
    let content_type = ctx.header("content-type").unwrap_or_default();
    let fields = form::parse(&content_type, &ctx.body).ok_or_else(|| {
        BoxFault::new(400, "bad_request", "The body is not multipart/form-data with attributes and file")
    })?;
    let attributes: serde_json::Value = fields
        .iter()
        .find(|(name, _)| name == "attributes")
        .and_then(|(_, v)| serde_json::from_slice(v).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let content = fields
        .into_iter()
        .find(|(name, _)| name == "file")
        .map(|(_, v)| v)
        .ok_or_else(|| BoxFault::new(400, "bad_request", "The file field is missing"))?;
    if content.len() as u64 > request::PLAIN_FILE_MAX {
        return Err(request::too_large());
    }
    let sha1 = Digests::compute(Hashes::SHA1, &content).sha1.unwrap_or_default();
    if let Some(given) = ctx.header("content-md5")
        && !given.eq_ignore_ascii_case(&hex(&sha1))
    {
        return Err(BoxFault::new(400, "bad_digest", "The content-md5 (SHA-1) does not match the file"));
    }
    let attr = |k: &str| attributes.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let mut store = ctx.shared.store();
    let (file_id, folder_id, name, version) = match file_id {
        None => {
            let name =
                attr("name").ok_or_else(|| BoxFault::new(400, "missing_file_name", "attributes.name is required"))?;
            check_name(&name)?;
            let folder_id = attributes
                .get("parent")
                .and_then(|p| p.get("id"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| BoxFault::new(400, "missing_destination", "attributes.parent.id is required"))?;
            if !folder_exists(ctx, &folder_id) {
                return Err(BoxFault::new(404, "invalid_parameter", "The folder does not exist"));
            }
            name_in_use(&store, &folder_id, &name, None)?;
            (new_file_id(&mut store), folder_id, name, 1)
        }
        Some(file_id) => {
            let existing = store.files.get(&file_id).ok_or_else(BoxFault::not_found)?;
            if let Some(etag) = ctx.header("if-match")
                && etag.trim_matches('"') != (existing.version - 1).to_string()
            {
                return Err(BoxFault::new(412, "precondition_failed", "The resource has been modified"));
            }
            let name = attr("name").unwrap_or_else(|| existing.name.clone());
            (file_id, existing.folder_id.clone(), name, existing.version + 1)
        }
    };
    let kept = ctx
        .shared
        .storage
        .keep(&format!("plain-{}", upload_core::emulator::unique()), &Bytes::from(content.clone()))
        .map_err(|e| BoxFault::storage(&e))?;
    let blob = ctx.shared.storage.promote(&folder_id, &name, kept).map_err(|e| BoxFault::storage(&e))?;
    let rec = FileRec {
        folder_id,
        name,
        blob,
        size: content.len() as u64,
        sha1,
        version,
        description: attr("description"),
        content_modified_at: attr("content_modified_at"),
    };
    let doc = file_doc(&file_id, &rec);
    store.files.insert(file_id, rec);
    ok_json(201, &Files { total_count: Some(1), entries: vec![doc] })
}

#[cfg(test)]
mod tests {
    use super::request::{content_range, route};
    use super::tokens::token;
    use super::*;

    #[test]
    fn routes_and_ranges() {
        let up = Host::Upload;
        assert_eq!(route(up, "POST", "/api/2.0/files/upload_sessions"), Some((Operation::CreateUploadSession, None)));
        assert_eq!(
            route(Host::Session, "PUT", "/api/2.0/files/upload_sessions/ABC"),
            Some((Operation::UploadPart, Some("ABC".into())))
        );
        assert_eq!(
            route(up, "POST", "/api/2.0/files/12/upload_sessions"),
            Some((Operation::CreateFileUploadSession, Some("12".into())))
        );
        assert_eq!(
            route(Host::Api, "GET", "/2.0/files/12/content"),
            Some((Operation::DownloadFile, Some("12".into())))
        );
        assert_eq!(route(Host::Api, "POST", "/oauth2/token"), Some((Operation::Token, None)));
        assert_eq!(route(Host::Api, "GET", "/2.0/folders/0"), None);
        // Each host serves its own calls only.
        assert_eq!(route(Host::Api, "POST", "/2.0/files/upload_sessions"), None);
        assert_eq!(route(up, "GET", "/api/2.0/files/12/content"), None);
        assert_eq!(route(up, "POST", "/oauth2/token"), None);
        assert_eq!(content_range("bytes 8388608-16777215/445856194"), Some((8388608, 16777215, 445856194)));
        assert_eq!(content_range("bytes=0-1/2"), None);
    }

    #[tokio::test]
    async fn expired_tokens_and_sessions_are_pruned() {
        let config = EmulatorConfig {
            token_lifetime: Duration::from_millis(1),
            session_lifetime: Duration::from_millis(1),
            min_chunked: 1,
            ..EmulatorConfig::default()
        };
        let emu = Emulator::start(config).await.unwrap();
        let shared = &emu.shared;
        let form = Bytes::from_static(b"grant_type=client_credentials&client_id=emulator-client-id&client_secret=emulator-client-secret&box_subject_type=user&box_subject_id=7");
        let create = |name: &str| {
            let body = serde_json::json!({"folder_id": "0", "file_size": 10, "file_name": name});
            let ctx = Ctx {
                shared,
                user: "7".into(),
                id: String::new(),
                query: &[],
                headers: &[],
                body: Bytes::from(body.to_string()),
                discarded: None,
                content_length: None,
            };
            create_session(&ctx, None).unwrap();
        };
        for i in 0..50 {
            token(shared, &form).unwrap();
            create(&format!("f{i}"));
        }
        std::thread::sleep(Duration::from_millis(20));
        token(shared, &form).unwrap();
        create("last");
        let store = shared.store();
        // The fixed token and the one just issued; the one session just created.
        assert_eq!(store.tokens.len(), 2);
        assert_eq!(store.sessions.len(), 1);
    }

    #[test]
    fn digests_accept_either_case_and_lists() {
        let ab = digest_value(Some("SHA=2iNhTgJGmg18e9G9q1ycR0sZBNw=".into())).unwrap();
        assert_eq!(hex(&ab), "da23614e02469a0d7c7bd1bdab5c9c474b1904dc");
        assert!(digest_value(Some("md5=abc, sha=2iNhTgJGmg18e9G9q1ycR0sZBNw=".into())).is_ok());
        assert_eq!(digest_value(Some("sha-256=abc".into())).unwrap_err().code, "bad_request");
        assert_eq!(digest_value(None).unwrap_err().code, "bad_request");
    }
}
