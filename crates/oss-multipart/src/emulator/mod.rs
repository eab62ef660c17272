//! An in-process OSS server (feature `emulator`) for tests, benchmarks, the CLI and users' own
//! tests.
//!
//! It speaks the multipart family, PutObject, GetObject, HeadObject and DeleteObject over HTTP/1.1
//! on loopback, with what makes OSS strict:
//!
//! * path-style and virtual-host addressing (`<bucket>.<anything>` when the first label is a
//!   bucket, path style for IP and `localhost` hosts);
//! * V1 and V4 signatures, header and presigned, checked with the 15-minute skew rule, unknown
//!   keys refused with InvalidAccessKeyId, and SignatureDoesNotMatch echoing the server's
//!   StringToSign (and CanonicalRequest for V4);
//! * the multipart rules: part numbers 1–10000, Content-MD5 checked (InvalidDigest), parts
//!   overwritten by number, completion in ascending order with matching ETags, 100 KiB minimum
//!   for every listed part but the last, `x-oss-complete-all`, NoSuchUpload after completion or
//!   abort, ListParts and ListMultipartUploads with their paging;
//! * `x-oss-hash-crc64ecma` on parts and objects, ETags as OSS forms them;
//! * a request refused from its headers (signature, bucket, the form of `Content-MD5`) is
//!   answered before a byte of its body is read; a part or PutObject body over
//!   [`EmulatorConfig::max_part_size`] (5 GiB) is `EntityTooLarge`, unread when its
//!   `Content-Length` says so and as soon as it passes the limit when it is chunked, and any
//!   other body is bounded alike;
//! * storage in memory or in a directory (objects as plain files, comparable with `cmp`);
//! * fault injection per operation and per part ([`Fault`]) and a request log of the latest
//!   requests ([`EmulatorConfig::log_capacity`]).
//!
//! ```
//! use oss_multipart::emulator::{Emulator, EmulatorConfig};
//! use oss_multipart::{Client, Source, Uploader};
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
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde::Serialize;
use upload_core::emulator::{Blob, Discarded, Reply, RequestLog, Server, Storage, decode, empty, is_unstorable};
use upload_core::hash::crc64::Crc64;
use upload_core::hash::{Digests, Hashes, hex};

use crate::signing::{Credentials, SignableRequest};
use crate::types::*;

/// The operations the emulator knows, for faults and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Operation {
    /// POST ?uploads
    InitiateMultipartUpload,
    /// PUT ?partNumber&uploadId
    UploadPart,
    /// PUT ?partNumber&uploadId with x-oss-copy-source
    UploadPartCopy,
    /// POST ?uploadId
    CompleteMultipartUpload,
    /// DELETE ?uploadId
    AbortMultipartUpload,
    /// GET ?uploadId
    ListParts,
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

pub use upload_core::emulator::FaultAction;

/// A fault: which requests it hits, how often, and what it does.
pub type Fault = upload_core::emulator::Fault<Operation>;

/// One request as the emulator saw it.
pub type LoggedRequest = upload_core::emulator::LoggedRequest<Operation>;

/// How an emulator starts.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Region ID that V4 signatures must name.
    pub region: String,
    /// Access keys and their secrets.
    pub keys: Vec<(String, String)>,
    /// Buckets that exist.
    pub buckets: Vec<String>,
    /// Keep objects and parts as files here instead of in memory.
    pub data_dir: Option<PathBuf>,
    /// Compute the MD5 of every part to check `Content-MD5` and form the ETag, as OSS does.
    /// Benchmarks turn it off so the server does not compete with the client for the CPU: the
    /// ETag then comes from `Content-MD5` when sent, or from the CRC-64 (ETags are opaque).
    pub verify_md5: bool,
    /// Keep only the length and CRC-64 of what is uploaded, not the bytes (benchmarks of
    /// multi-gigabyte uploads; objects then read back as empty).
    pub discard_bodies: bool,
    /// How far the emulator's clock is from the real one (positive: ahead). Its "now" for the
    /// 15-minute skew rule, presigned expiry, stored timestamps and the `Date` header of every
    /// answer is the real clock plus this offset, to test clients whose clock is skewed.
    pub clock_offset: chrono::Duration,
    /// The largest part or PutObject body ([`MAX_PART`], as OSS); larger ones are refused with
    /// `EntityTooLarge`. Parts are kept in memory unless [`EmulatorConfig::data_dir`] is set:
    /// lower it to bound what one request may hold.
    pub max_part_size: u64,
    /// How many requests the log keeps (the latest; [`Emulator::requests`]).
    pub log_capacity: usize,
}

/// The largest part or object OSS takes in one request: 5 GiB.
pub const MAX_PART: u64 = 5 << 30;

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            region: "cn-hangzhou".into(),
            keys: vec![("emulator-access-key".into(), "emulator-secret-key".into())],
            buckets: vec!["bucket".into()],
            data_dir: None,
            verify_md5: true,
            discard_bodies: false,
            clock_offset: chrono::Duration::zero(),
            max_part_size: MAX_PART,
            log_capacity: upload_core::emulator::LOG_CAPACITY,
        }
    }
}

/// An error answer, built by the handlers and the signature checks.
#[derive(Clone, Debug)]
pub(crate) struct OssFault {
    status: u16,
    code: String,
    message: String,
    ec: Option<String>,
    extra: Vec<(String, String)>,
    retry_after: Option<u64>,
}

impl OssFault {
    pub(crate) fn new(status: u16, code: &str, message: &str) -> Self {
        Self { status, code: code.into(), message: message.into(), ec: None, extra: Vec::new(), retry_after: None }
    }

    pub(crate) fn ec(mut self, ec: &str) -> Self {
        self.ec = Some(ec.into());
        self
    }

    pub(crate) fn extra(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    fn no_such_upload(upload_id: &str) -> Self {
        Self::new(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")
            .ec("0017-00000244")
            .extra("UploadId", upload_id)
    }

    fn invalid_argument(message: &str, name: &str, value: &str, ec: &str) -> Self {
        Self::new(400, "InvalidArgument", message).ec(ec).extra("ArgumentName", name).extra("ArgumentValue", value)
    }
}

/// The signature check of the emulator on its own, for the fuzz tests: the access key that
/// signed `req`, or the refusal's status and code.
#[cfg(feature = "fuzzing")]
pub(crate) fn verify_for_fuzzing(
    req: &SignableRequest,
    keys: &[(String, String)],
    region: &str,
    now: std::time::SystemTime,
) -> Result<String, (u16, String)> {
    let keys: HashMap<String, String> = keys.iter().cloned().collect();
    auth::verify(req, &keys, region, now).map(|v| v.0).map_err(|f| (f.status, f.code))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[derive(Clone, Debug)]
struct StoredPart {
    blob: Blob,
    len: u64,
    md5: [u8; 16],
    crc: u64,
    last_modified: String,
}

#[derive(Debug)]
struct UploadRec {
    bucket: String,
    key: String,
    initiated: String,
    parts: BTreeMap<u32, StoredPart>,
    /// Initiated with `?sequential`: parts must come in ascending order and cannot be replaced.
    sequential: bool,
}

#[derive(Clone, Debug)]
struct Object {
    blob: Blob,
    len: u64,
    etag: String,
    crc: u64,
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
    fn now_http(&self) -> String {
        self.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
    }

    /// [`Shared::now`] as ISO 8601 with a zero millisecond field, as OSS sends it.
    fn now_iso(&self) -> String {
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
            .field("region", &self.shared.config.region)
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

    /// The region ID V4 signatures must name.
    pub fn region(&self) -> &str {
        &self.shared.config.region
    }

    /// The first access key and secret.
    pub fn credentials(&self) -> Credentials {
        let (ak, sk) = self.shared.config.keys.first().cloned().unwrap_or_default();
        Credentials::new(ak, sk)
    }

    /// A client configuration for this emulator (path style, V4, its region and first key).
    pub fn client_config(&self) -> crate::Config {
        let mut c = crate::Config::new(&self.endpoint(), self.credentials()).unwrap_or_else(|_| unreachable_config());
        c.region = Some(self.shared.config.region.clone());
        c
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

fn unreachable_config() -> crate::Config {
    // `Emulator::endpoint` is always a valid http URL; this keeps `client_config` total.
    crate::Config {
        scheme: "http".into(),
        host: "127.0.0.1".into(),
        port: None,
        addressing: crate::Addressing::Path,
        region: None,
        credentials: Credentials::new("", ""),
        signature_version: crate::SignatureVersion::V4,
        retry: upload_core::RetryPolicy::default(),
        connect_timeout: Duration::from_secs(10),
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

    fn encode_url(&self) -> bool {
        self.q("encoding-type") == Some("url")
    }

    fn name(&self, s: &str) -> String {
        if self.encode_url() { crate::signing::uri_encode(s, false) } else { s.to_owned() }
    }

    fn upload_id(&self) -> &str {
        self.q("uploadId").unwrap_or_default()
    }
}

fn ok_xml<T: Serialize>(doc: &T) -> Result<Reply, OssFault> {
    let xml = quick_xml::se::to_string(doc).map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))?;
    Response::builder()
        .status(200)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}"))))
        .map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))
}

fn etag_of(md5: &[u8; 16]) -> String {
    format!("\"{}\"", hex(md5).to_ascii_uppercase())
}

fn dispatch(op: Operation, ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    match op {
        Operation::InitiateMultipartUpload => initiate(ctx),
        Operation::UploadPart => upload_part(ctx),
        Operation::UploadPartCopy => upload_part_copy(ctx),
        Operation::CompleteMultipartUpload => complete(ctx),
        Operation::AbortMultipartUpload => abort(ctx),
        Operation::ListParts => list_parts(ctx),
        Operation::ListMultipartUploads => list_uploads(ctx),
        Operation::PutObject => put_object(ctx),
        Operation::GetObject | Operation::HeadObject => get_object(ctx, op == Operation::HeadObject),
        Operation::DeleteObject => {
            ctx.shared.store().objects.remove(&(ctx.bucket.clone(), ctx.key.clone()));
            Ok(empty(204))
        }
    }
}

/// A storage failure: the key cannot be a file there (directory storage), or an internal error.
fn internal(e: &std::io::Error) -> OssFault {
    if is_unstorable(e) {
        OssFault::new(
            400,
            "InvalidObjectName",
            "The emulator's directory storage keeps objects as files and cannot store this key next to the others; use memory storage.",
        )
    } else {
        OssFault::new(500, "InternalError", &e.to_string())
    }
}
