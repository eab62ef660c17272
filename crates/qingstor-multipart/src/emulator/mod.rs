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
mod request;

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

fn check_key(ctx: &Ctx<'_>) -> Result<(), QsFault> {
    let key = &ctx.key;
    if key.is_empty() || key.len() > 1023 || key.starts_with('/') {
        return Err(QsFault::new(400, "invalid_object_name", "The object name is invalid."));
    }
    if !ctx.shared.storage.accepts_key(key) {
        return Err(QsFault::new(
            400,
            "invalid_object_name",
            "The emulator's directory storage keeps objects as files and cannot store this key; use memory storage.",
        ));
    }
    Ok(())
}

fn initiate(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    check_key(ctx)?;
    if let Some(class) = ctx.headers.header_value("x-qs-storage-class")
        && !matches!(class.as_str(), "STANDARD" | "STANDARD_IA")
    {
        return Err(QsFault::new(400, "invalid_request", "x-qs-storage-class must be STANDARD or STANDARD_IA."));
    }
    let upload_id = {
        let mut store = ctx.shared.store();
        store.counter += 1;
        let serial = store.counter;
        // 32 hex digits that sort by creation: the serial, then a digest of bucket, key and serial.
        let digest = hex(&Digests::compute(Hashes::MD5, format!("{}/{}#{serial}", ctx.bucket, ctx.key).as_bytes())
            .md5
            .unwrap_or_default());
        let id = format!("{serial:016x}{}", &digest[..16]);
        store.uploads.insert(
            id.clone(),
            UploadRec {
                bucket: ctx.bucket.clone(),
                key: ctx.key.clone(),
                created: ctx.shared.iso_now(),
                serial,
                content_type: ctx.headers.header_value("content-type"),
                parts: BTreeMap::new(),
            },
        );
        id
    };
    ok_json(
        200,
        &InitiateMultipartUploadOutput { upload_id, bucket: Some(ctx.bucket.clone()), key: Some(ctx.key.clone()) },
    )
}

fn part_number(ctx: &Ctx<'_>) -> Result<u32, QsFault> {
    let raw = ctx.q("part_number").unwrap_or_default();
    match raw.parse::<u32>() {
        Ok(n) if n <= crate::client::MAX_PART_NUMBER => Ok(n),
        _ => Err(QsFault::new(
            400,
            "invalid_argument",
            &format!("part_number {raw:?} is not an integer between 0 and 10000."),
        )),
    }
}

fn check_upload(store: &Store, ctx: &Ctx<'_>) -> Result<(), QsFault> {
    match store.uploads.get(ctx.upload_id()) {
        Some(u) if u.bucket == ctx.bucket && u.key == ctx.key => Ok(()),
        _ => Err(QsFault::upload_not_exists()),
    }
}

/// The MD5 a `Content-MD5` header value names, if one is sent; `invalid_argument` when it is
/// not the base64 of 16 bytes.
fn content_md5(value: Option<&str>) -> Result<Option<[u8; 16]>, QsFault> {
    let Some(value) = value else { return Ok(None) };
    STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|g| <[u8; 16]>::try_from(g.as_slice()).ok())
        .map(Some)
        .ok_or_else(|| QsFault::new(400, "invalid_argument", "Content-MD5 is not the base64 of 16 bytes."))
}

/// Checks and keeps the bytes of a part or object: size, `Content-MD5` (`given_md5`, the
/// request's), and the MD5 that makes the ETag. `discarded` describes a request body that was
/// not kept (discard mode).
fn save_part(
    ctx: &Ctx<'_>,
    name: &str,
    bytes: Bytes,
    discarded: Option<Discarded>,
    given_md5: Option<String>,
) -> Result<StoredPart, QsFault> {
    let len = discarded.map_or(bytes.len() as u64, |d| d.len);
    if len > ctx.shared.config.max_part_size {
        return Err(QsFault::new(400, "entity_too_large", "The part or object is larger than 5 GB."));
    }
    let given = content_md5(given_md5.as_deref())?;
    let md5 = if ctx.shared.config.verify_md5 {
        let md5 = match discarded {
            Some(d) => d.md5.unwrap_or_default(),
            None => Digests::compute(Hashes::MD5, &bytes).md5.unwrap_or_default(),
        };
        if given.is_some_and(|g| g != md5) {
            return Err(QsFault::new(
                400,
                "bad_digest",
                "The Content-MD5 you specified did not match what was received.",
            ));
        }
        md5
    } else {
        // Benchmarks: the client's Content-MD5 when sent, else an opaque id from the CRC-64.
        given.unwrap_or_else(|| {
            let crc = discarded
                .map_or_else(|| Digests::compute(Hashes::CRC64, &bytes).crc64.unwrap_or_default(), |d| d.crc64);
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&crc.to_be_bytes());
            id[8..].copy_from_slice(&len.to_be_bytes());
            id
        })
    };
    let blob = match discarded {
        Some(_) => Blob::Discarded,
        None => ctx.shared.storage.keep(name, &bytes).map_err(|e| QsFault::storage(&e))?,
    };
    Ok(StoredPart { blob, len, md5, created: ctx.shared.iso_now() })
}

fn part_reply(part: &StoredPart) -> Result<Reply, QsFault> {
    Response::builder()
        .status(201)
        .header("etag", format!("\"{}\"", hex(&part.md5)))
        .body(Full::new(Bytes::new()))
        .map_err(|e| QsFault::new(500, "internal_error", &e.to_string()))
}

fn keep_part(ctx: &Ctx<'_>, number: u32, part: StoredPart) -> Result<(), QsFault> {
    let mut store = ctx.shared.store();
    // Checked again: the upload may have been completed or aborted meanwhile.
    if let Err(e) = check_upload(&store, ctx) {
        part.blob.remove();
        return Err(e);
    }
    // Every part has a file name of its own: the one it replaces goes.
    if let Some(u) = store.uploads.get_mut(ctx.upload_id())
        && let Some(old) = u.parts.insert(number, part)
    {
        old.blob.remove();
    }
    Ok(())
}

fn upload_part(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let number = part_number(ctx)?;
    check_upload(&ctx.shared.store(), ctx)?;
    let name = format!("{}-{number}-{}", ctx.upload_id(), upload_core::emulator::unique());
    let part = save_part(ctx, &name, ctx.body.clone(), ctx.discarded, ctx.headers.header_value("content-md5"))?;
    let reply = part_reply(&part)?;
    keep_part(ctx, number, part)?;
    Ok(reply)
}

fn upload_part_copy(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let number = part_number(ctx)?;
    check_upload(&ctx.shared.store(), ctx)?;
    let source = decode(&ctx.headers.header_value("x-qs-copy-source").unwrap_or_default());
    let (src_bucket, src_key) = source
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| QsFault::new(400, "invalid_argument", "x-qs-copy-source must be /bucket/key."))?;
    let object = ctx
        .shared
        .store()
        .objects
        .get(&(src_bucket.to_owned(), src_key.to_owned()))
        .cloned()
        .ok_or_else(|| QsFault::new(404, "object_not_exists", "The copy source does not exist."))?;
    let bytes = object.blob.read().map_err(|e| QsFault::storage(&e))?;
    let total = bytes.len();
    let (bytes, range) = match ctx.headers.header_value("x-qs-copy-range") {
        Some(range) => {
            let (a, b) = range
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                .filter(|(a, b)| a <= b && *b < total)
                .ok_or_else(|| QsFault::new(416, "invalid_range", "x-qs-copy-range is not satisfiable."))?;
            (bytes.slice(a..=b), Some(format!("bytes {a}-{b}/{total}")))
        }
        None => (bytes, None),
    };
    let name = format!("{}-{number}-{}", ctx.upload_id(), upload_core::emulator::unique());
    let part = save_part(ctx, &name, bytes, None, None)?;
    let mut reply = part_reply(&part)?;
    if let Some(r) = range.and_then(|r| r.parse().ok()) {
        reply.headers_mut().insert("x-qs-content-copy-range", r);
    }
    keep_part(ctx, number, part)?;
    Ok(reply)
}

fn complete(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let doc: CompleteMultipartUploadInput = serde_json::from_slice(&ctx.body)
        .map_err(|e| QsFault::new(400, "invalid_json", &format!("The request body is not valid JSON: {e}.")))?;
    let listed = doc.object_parts;
    if listed.is_empty() {
        return Err(QsFault::new(400, "invalid_request", "object_parts must list at least one part."));
    }
    if listed.len() > 10_000 {
        return Err(QsFault::new(400, "max_parts_exceeded", "An object has at most 10000 parts."));
    }
    if listed.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
        return Err(QsFault::new(400, "invalid_request", "object_parts must be in ascending part_number order."));
    }
    let mut store = ctx.shared.store();
    check_upload(&store, ctx)?;
    let upload = store.uploads.get(ctx.upload_id()).ok_or_else(QsFault::upload_not_exists)?;
    let mut parts = Vec::with_capacity(listed.len());
    for (i, p) in listed.iter().enumerate() {
        let Some(stored) = upload.parts.get(&p.part_number) else {
            return Err(QsFault::new(
                400,
                "invalid_request",
                &format!("Part {} has not been uploaded.", p.part_number),
            ));
        };
        if let Some(etag) = &p.etag
            && !etag.trim().trim_matches('"').eq_ignore_ascii_case(&hex(&stored.md5))
        {
            return Err(QsFault::new(
                400,
                "invalid_request",
                &format!("The etag of part {} does not match the uploaded part.", p.part_number),
            ));
        }
        if i + 1 < listed.len() && stored.len < MIN_PART {
            return Err(QsFault::new(
                400,
                "entity_too_small",
                &format!("Part {} is smaller than 4 MB and is not the last part.", p.part_number),
            ));
        }
        parts.push(stored);
    }
    let len: u64 = parts.iter().map(|p| p.len).sum();
    let blobs: Vec<&Blob> = parts.iter().map(|p| &p.blob).collect();
    let blob = ctx.shared.storage.assemble(&ctx.bucket, &ctx.key, &blobs).map_err(|e| QsFault::storage(&e))?;
    let content_type = upload.content_type.clone();
    // QingStor does not compute a multipart object's ETag: it keeps what the ETag header says.
    let etag = ctx.headers.header_value("etag");
    if let Some(u) = store.uploads.remove(ctx.upload_id()) {
        u.parts.values().for_each(|p| p.blob.remove());
    }
    store.objects.insert(
        (ctx.bucket.clone(), ctx.key.clone()),
        Object { blob, len, etag, content_type, last_modified: ctx.shared.http_date() },
    );
    Ok(empty(201))
}

fn abort(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let mut store = ctx.shared.store();
    // 204 whether or not the upload exists (QingStor made Abort idempotent).
    if check_upload(&store, ctx).is_ok()
        && let Some(u) = store.uploads.remove(ctx.upload_id())
    {
        u.parts.values().for_each(|p| p.blob.remove());
    }
    Ok(empty(204))
}

fn limit(ctx: &Ctx<'_>, default: u32) -> Result<u32, QsFault> {
    match ctx.q("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(QsFault::new(400, "invalid_argument", "limit must be an integer between 1 and 1000.")),
        },
    }
}

fn list_parts(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let limit = limit(ctx, 1000)? as usize;
    let marker = match ctx.q("part_number_marker") {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| QsFault::new(400, "invalid_argument", "part_number_marker must be an integer."))?,
        ),
    };
    let store = ctx.shared.store();
    check_upload(&store, ctx)?;
    let upload = store.uploads.get(ctx.upload_id()).ok_or_else(QsFault::upload_not_exists)?;
    let start = marker.map_or(0, |m| m.saturating_add(1));
    let object_parts: Vec<ObjectPart> = upload
        .parts
        .range(start..)
        .take(limit)
        .map(|(n, p)| ObjectPart {
            part_number: *n,
            size: Some(p.len),
            created: Some(p.created.clone()),
            etag: Some(hex(&p.md5)),
        })
        .collect();
    // `count` is the number of parts in the upload, as the SDKs' paging assumes.
    ok_json(200, &ListMultipartOutput { count: Some(upload.parts.len() as u64), object_parts })
}

fn list_uploads(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let limit = limit(ctx, 200)? as usize;
    let prefix = ctx.q("prefix").unwrap_or_default().to_owned();
    let delimiter = ctx.q("delimiter").filter(|d| !d.is_empty()).map(str::to_owned);
    if delimiter.as_ref().is_some_and(|d| d.chars().count() > 1) {
        return Err(QsFault::new(400, "invalid_argument", "delimiter must be a single character."));
    }
    let key_marker = ctx.q("key_marker").unwrap_or_default().to_owned();
    let id_marker = ctx.q("upload_id_marker").filter(|_| !key_marker.is_empty()).unwrap_or_default().to_owned();
    let store = ctx.shared.store();
    let mut all: Vec<(&String, &UploadRec)> =
        store.uploads.iter().filter(|(_, u)| u.bucket == ctx.bucket && u.key.starts_with(&prefix)).collect();
    all.sort_by(|a, b| (&a.1.key, a.1.serial).cmp(&(&b.1.key, b.1.serial)));
    // After the markers: later keys, or later uploads of the marker key (ids sort by creation,
    // so this holds when the marker's own upload is gone meanwhile).
    let after: Vec<(&String, &UploadRec)> = all
        .into_iter()
        .filter(|(id, u)| {
            key_marker.is_empty()
                || u.key > key_marker
                || (u.key == key_marker && !id_marker.is_empty() && id.as_str() > id_marker.as_str())
        })
        .collect();
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut has_more = false;
    let mut last: Option<(String, String)> = None;
    for (id, u) in after {
        let common = delimiter.as_ref().and_then(|d| {
            u.key[prefix.len()..].find(d.as_str()).map(|pos| u.key[..prefix.len() + pos + d.len()].to_owned())
        });
        if common.as_ref().is_some_and(|c| prefixes.contains(c)) {
            last = Some((u.key.clone(), id.clone()));
            continue;
        }
        if uploads.len() + prefixes.len() >= limit {
            has_more = true;
            break;
        }
        match common {
            Some(c) => prefixes.push(c),
            None => uploads.push(UploadSummary {
                key: u.key.clone(),
                upload_id: id.clone(),
                created: Some(u.created.clone()),
            }),
        }
        last = Some((u.key.clone(), id.clone()));
    }
    let (next_key_marker, next_upload_id_marker) = match (has_more, last) {
        (true, Some((k, id))) => (Some(k), Some(id)),
        _ => (None, None),
    };
    ok_json(
        200,
        &ListMultipartUploadsOutput {
            name: Some(ctx.bucket.clone()),
            prefix: Some(prefix),
            delimiter,
            limit: Some(limit as u32),
            marker: Some(key_marker),
            next_key_marker,
            next_upload_id_marker,
            has_more: Some(has_more),
            common_prefixes: prefixes,
            uploads,
        },
    )
}

fn put_object(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    check_key(ctx)?;
    let name = format!("put-{}", upload_core::emulator::unique());
    let part = save_part(ctx, &name, ctx.body.clone(), ctx.discarded, ctx.headers.header_value("content-md5"))?;
    let reply = part_reply(&part)?;
    let blob = ctx.shared.storage.promote(&ctx.bucket, &ctx.key, part.blob.clone()).map_err(|e| {
        part.blob.remove();
        QsFault::storage(&e)
    })?;
    let object = Object {
        blob,
        len: part.len,
        etag: Some(format!("\"{}\"", hex(&part.md5))),
        content_type: ctx.headers.header_value("content-type"),
        last_modified: ctx.shared.http_date(),
    };
    ctx.shared.store().objects.insert((ctx.bucket.clone(), ctx.key.clone()), object);
    Ok(reply)
}

fn get_object(ctx: &Ctx<'_>, head: bool) -> Result<Reply, QsFault> {
    let object = ctx
        .shared
        .store()
        .objects
        .get(&(ctx.bucket.clone(), ctx.key.clone()))
        .cloned()
        .ok_or_else(|| QsFault::new(404, "object_not_exists", "The object you are accessing does not exist."))?;
    let body = if head { Bytes::new() } else { object.blob.read().map_err(|e| QsFault::storage(&e))? };
    let mut builder = Response::builder()
        .status(200)
        .header("last-modified", object.last_modified.as_str())
        .header("content-length", object.len.to_string())
        .header("content-type", object.content_type.as_deref().unwrap_or("application/octet-stream"));
    if let Some(etag) = &object.etag {
        builder = builder.header("etag", etag.as_str());
    }
    builder.body(Full::new(body)).map_err(|e| QsFault::new(500, "internal_error", &e.to_string()))
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
