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
mod handlers;
mod request;
mod tokens;
use handlers::*;

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
