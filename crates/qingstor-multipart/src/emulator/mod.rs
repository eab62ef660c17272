//! An in-process QingStor server (feature `emulator`) for tests, benchmarks, the CLI and users'
//! own tests.
//!
//! It speaks the multipart family, Put Object, Get Object, Head Object and Delete Object over
//! HTTP/1.1 on loopback, with what makes QingStor strict:
//!
//! * path-style and virtual-host addressing (`<bucket>.<zone>.<host>`: a Host whose first label
//!   is a bucket; path style for IP and `localhost` hosts);
//! * QS signatures, header and presigned, verified over the request path exactly as it arrived
//!   (the official SDKs encode keys differently and QingStor accepts them all), with unknown keys
//!   refused as `401 invalid_access_key_id`, mismatches as `401 signature_not_matched`, and
//!   requests more than 15 minutes from the server clock (or past their `expires`) as
//!   `403 request_expired`;
//! * the multipart rules: part numbers 0–10000, Content-MD5 checked (`bad_digest`), parts
//!   overwritten by number, 201 for parts and Complete, Complete in ascending order with
//!   matching ETags and the 4 MiB minimum for every listed part but the last
//!   (`entity_too_small`), the whole-object ETag stored as the `ETag` header gave it, Abort
//!   answering 204 whether or not the upload exists, `upload_not_exists` after Complete or Abort,
//!   List Multipart and List Multipart Uploads with their paging;
//! * JSON error documents (`code`, `message`, `request_id`, `url`), `x-qs-request-id` and
//!   `Server: QingStor` on every answer;
//! * a request refused from its headers (bucket, signature, a missing `Content-Length` of a
//!   part or object, the form of `Content-MD5`) is answered before a byte of its body is read;
//!   a part or object over [`EmulatorConfig::max_part_size`] (5 GB) is `entity_too_large`,
//!   unread when its `Content-Length` says so, and any other body is bounded (a chunked one
//!   stops being read as soon as it passes the bound);
//! * storage in memory or in a directory (objects as plain files, comparable with `cmp`);
//! * fault injection per operation and per part ([`Fault`]) and a request log of the latest
//!   requests ([`EmulatorConfig::log_capacity`]), shared with the other emulators.
//!
//! ```
//! use qingstor_multipart::emulator::{Emulator, EmulatorConfig};
//! use qingstor_multipart::{Client, Source, Uploader};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! let uploader = Uploader::new(Client::new(emulator.client_config())?);
//! let mut upload = uploader.upload("bucket", "hello.txt", Source::bytes(&b"hello"[..]))?;
//! upload.run().await?;
//! assert_eq!(emulator.object("bucket", "hello.txt").as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```

mod auth;
mod handlers;
mod request;
use handlers::*;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde::Serialize;
use upload_core::emulator::{Blob, Discarded, Reply, RequestLog, Server, Storage, decode, empty, is_unstorable};
use upload_core::hash::{Digests, Hashes, hex};

pub use upload_core::emulator::FaultAction;

use crate::signing::{Credentials, SignableRequest};
use crate::types::*;

/// The operations the emulator knows, for faults and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Operation {
    /// POST ?uploads
    InitiateMultipartUpload,
    /// PUT ?part_number&upload_id
    UploadMultipart,
    /// PUT ?part_number&upload_id with x-qs-copy-source
    UploadMultipartCopy,
    /// POST ?upload_id
    CompleteMultipartUpload,
    /// DELETE ?upload_id
    AbortMultipartUpload,
    /// GET ?upload_id
    ListMultipart,
    /// GET bucket ?uploads
    ListMultipartUploads,
    /// PUT object
    PutObject,
    /// GET object
    GetObject,
    /// HEAD object
    HeadObject,
    /// DELETE object
    DeleteObject,
}

/// A fault: which requests it hits, how often, and what it does.
pub type Fault = upload_core::emulator::Fault<Operation>;

/// One request as the emulator saw it.
pub type LoggedRequest = upload_core::emulator::LoggedRequest<Operation>;

/// The smallest part QingStor accepts, except the last.
pub const MIN_PART: u64 = 4 * 1024 * 1024;

/// The largest part or single object.
pub const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;

/// How an emulator starts.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The zone it presents itself as (virtual-host names are `<bucket>.<zone>.<host>`).
    pub zone: String,
    /// Access keys and their secrets.
    pub keys: Vec<(String, String)>,
    /// Buckets that exist.
    pub buckets: Vec<String>,
    /// Keep objects and parts as files here instead of in memory.
    pub data_dir: Option<PathBuf>,
    /// Compute the MD5 of every part to check `Content-MD5` and form the ETag, as QingStor does.
    /// Benchmarks turn it off so the server does not compete with the client for the CPU: the
    /// ETag then comes from `Content-MD5` when sent (ETags are opaque otherwise).
    pub verify_md5: bool,
    /// Keep only the length and CRC-64 of what is uploaded, not the bytes (benchmarks of
    /// multi-gigabyte uploads; objects then read back as empty).
    pub discard_bodies: bool,
    /// Apply the 15-minute rule and presigned expiry (off only to replay old signed requests).
    pub check_time: bool,
    /// How far the emulator's clock is from the real one (positive: ahead). Its "now" for the
    /// 15-minute rule, presigned expiry, stored timestamps and the `Date` header of every answer
    /// is the real clock plus this offset, to test clients whose clock is skewed.
    pub clock_offset: chrono::Duration,
    /// The largest part or Put Object body ([`MAX_PART`], as QingStor); larger ones are refused
    /// with `entity_too_large`. Parts are kept in memory unless [`EmulatorConfig::data_dir`]
    /// is set: lower it to bound what one request may hold.
    pub max_part_size: u64,
    /// How many requests the log keeps (the latest; [`Emulator::requests`]).
    pub log_capacity: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            zone: "emu1".into(),
            keys: vec![("EMULATORACCESSKEY".into(), "emulator-secret-access-key".into())],
            buckets: vec!["bucket".into()],
            data_dir: None,
            verify_md5: true,
            discard_bodies: false,
            check_time: true,
            clock_offset: chrono::Duration::zero(),
            max_part_size: MAX_PART,
            log_capacity: upload_core::emulator::LOG_CAPACITY,
        }
    }
}

const ERROR_DOCS: &str = "https://docsv4.qingcloud.com/user_guide/storage/object_storage/api/error_code/";

/// An error answer, built by the handlers and the signature checks.
#[derive(Clone, Debug)]
pub(crate) struct QsFault {
    status: u16,
    code: String,
    message: String,
    retry_after: Option<u64>,
}

/// The signature check of the emulator on its own, for the fuzz tests: the access key that
/// signed `req`, or the refusal's status and code.
#[cfg(feature = "fuzzing")]
pub(crate) fn verify_for_fuzzing(
    req: &SignableRequest,
    keys: &[(String, String)],
    now: std::time::SystemTime,
    check_time: bool,
) -> Result<String, (u16, String)> {
    let keys: HashMap<String, String> = keys.iter().cloned().collect();
    auth::verify(req, &keys, now, check_time).map_err(|f| (f.status, f.code))
}

impl QsFault {
    pub(crate) fn new(status: u16, code: &str, message: &str) -> Self {
        Self { status, code: code.into(), message: message.into(), retry_after: None }
    }

    fn upload_not_exists() -> Self {
        Self::new(404, "upload_not_exists", "The upload does not exist; it may have been completed or aborted.")
    }

    /// A storage failure: the key cannot be a file there (directory storage), or an internal error.
    fn storage(e: &std::io::Error) -> Self {
        if is_unstorable(e) {
            Self::new(
                400,
                "invalid_object_name",
                "The emulator's directory storage keeps objects as files and cannot store this key next to the others; use memory storage.",
            )
        } else {
            Self::new(500, "internal_error", &e.to_string())
        }
    }
}

#[derive(Clone, Debug)]
struct StoredPart {
    blob: Blob,
    len: u64,
    md5: [u8; 16],
    created: String,
}

#[derive(Debug)]
struct UploadRec {
    bucket: String,
    key: String,
    created: String,
    /// Initiate order, for listing uploads of one key by creation time.
    serial: u64,
    content_type: Option<String>,
    parts: BTreeMap<u32, StoredPart>,
}

#[derive(Clone, Debug)]
struct Object {
    blob: Blob,
    len: u64,
    etag: Option<String>,
    content_type: Option<String>,
    last_modified: String,
}

#[derive(Debug, Default)]
struct Store {
    objects: BTreeMap<(String, String), Object>,
    uploads: BTreeMap<String, UploadRec>,
    faults: Vec<Fault>,
    log: RequestLog<Operation>,
    counter: u64,
}

struct Shared {
    config: EmulatorConfig,
    keys: HashMap<String, String>,
    storage: Storage,
    store: Mutex<Store>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The emulator's clock: the real one plus [`EmulatorConfig::clock_offset`].
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let real = chrono::Utc::now();
        real.checked_add_signed(self.config.clock_offset).unwrap_or(real)
    }

    /// [`Shared::now`] as an HTTP date (`Sun, 22 Nov 2026 05:26:20 GMT`).
    fn http_date(&self) -> String {
        self.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
    }

    /// [`Shared::now`] as ISO 8601 with a zero millisecond field.
    fn iso_now(&self) -> String {
        self.now().format("%Y-%m-%dT%H:%M:%S.000Z").to_string()
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    server: Server,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.server.addr())
            .field("zone", &self.shared.config.zone)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts an emulator on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let storage = Storage::new(config.data_dir.clone(), &config.buckets)?;
        let keys = config.keys.iter().cloned().collect();
        let listen = config.listen;
        let store = Store { log: RequestLog::new(config.log_capacity), ..Store::default() };
        let shared = Arc::new(Shared { config, keys, storage, store: Mutex::new(store) });
        let server = shared.clone();
        let server = Server::start(listen, move |req| request::handle(server.clone(), req)).await?;
        Ok(Self { server, shared })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The endpoint to give a client: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The zone it presents itself as.
    pub fn zone(&self) -> &str {
        &self.shared.config.zone
    }

    /// The first access key and secret.
    pub fn credentials(&self) -> Credentials {
        let (ak, sk) = self.shared.config.keys.first().cloned().unwrap_or_default();
        Credentials::new(ak, sk)
    }

    /// A client configuration for this emulator (path style, its first key).
    pub fn client_config(&self) -> crate::Config {
        let base = crate::Config::new(self.credentials());
        let mut config = base.clone().with_endpoint(&self.endpoint()).unwrap_or(base);
        config.zone = Some(self.shared.config.zone.clone());
        config
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

    /// The bytes of an object, if it exists.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Bytes> {
        let object = self.shared.store().objects.get(&(bucket.to_owned(), key.to_owned())).cloned()?;
        object.blob.read().ok()
    }

    /// The ETag an object was stored with, if it exists and has one.
    pub fn object_etag(&self, bucket: &str, key: &str) -> Option<String> {
        self.shared.store().objects.get(&(bucket.to_owned(), key.to_owned())).and_then(|o| o.etag.clone())
    }

    /// The unfinished uploads: (bucket, key, upload id, part numbers).
    pub fn uploads(&self) -> Vec<(String, String, String, Vec<u32>)> {
        self.shared
            .store()
            .uploads
            .iter()
            .map(|(id, u)| (u.bucket.clone(), u.key.clone(), id.clone(), u.parts.keys().copied().collect()))
            .collect()
    }
}

struct Ctx<'a> {
    shared: &'a Shared,
    bucket: String,
    key: String,
    query: &'a [(String, String)],
    headers: &'a SignableRequest,
    body: Bytes,
    /// Length and digests of a body that was not kept (discard mode).
    discarded: Option<Discarded>,
}

impl Ctx<'_> {
    fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn upload_id(&self) -> &str {
        self.q("upload_id").unwrap_or_default()
    }
}

fn ok_json<T: Serialize>(status: u16, doc: &T) -> Result<Reply, QsFault> {
    let body = serde_json::to_vec(doc).map_err(|e| QsFault::new(500, "internal_error", &e.to_string()))?;
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| QsFault::new(500, "internal_error", &e.to_string()))
}

fn dispatch(op: Operation, ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    match op {
        Operation::InitiateMultipartUpload => initiate(ctx),
        Operation::UploadMultipart => upload_part(ctx),
        Operation::UploadMultipartCopy => upload_part_copy(ctx),
        Operation::CompleteMultipartUpload => complete(ctx),
        Operation::AbortMultipartUpload => abort(ctx),
        Operation::ListMultipart => list_parts(ctx),
        Operation::ListMultipartUploads => list_uploads(ctx),
        Operation::PutObject => put_object(ctx),
        Operation::GetObject | Operation::HeadObject => get_object(ctx, op == Operation::HeadObject),
        Operation::DeleteObject => {
            let removed = ctx.shared.store().objects.remove(&(ctx.bucket.clone(), ctx.key.clone()));
            if let Some(o) = removed {
                o.blob.remove();
            }
            Ok(empty(204))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::request::error_reply;
    use super::*;

    #[test]
    fn error_documents_are_qingstor_json() {
        let reply = error_reply(&QsFault::upload_not_exists(), "abc", false);
        assert_eq!(reply.status(), 404);
        assert_eq!(reply.headers()["content-type"], "application/json");
        let head = error_reply(&QsFault::upload_not_exists(), "abc", true);
        assert_eq!(head.status(), 404);
    }
}
