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
mod request;

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

fn check_key(ctx: &Ctx<'_>) -> Result<(), OssFault> {
    let key = &ctx.key;
    if key.is_empty() || key.len() > 1023 || key.starts_with('/') || key.starts_with('\\') {
        return Err(OssFault::new(400, "InvalidObjectName", "The specified object is not valid.").ec("0016-00000005"));
    }
    if !ctx.shared.storage.accepts_key(key) {
        return Err(OssFault::new(
            400,
            "InvalidObjectName",
            "The emulator's directory storage keeps objects as files and cannot store this key; use memory storage.",
        ));
    }
    Ok(())
}

fn initiate(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    check_key(ctx)?;
    let upload_id = {
        let mut store = ctx.shared.store();
        store.counter += 1;
        let id = hex(&Digests::compute(Hashes::MD5, format!("{}{}{}", ctx.bucket, ctx.key, store.counter).as_bytes())
            .md5
            .unwrap_or_default())
        .to_ascii_uppercase();
        store.uploads.insert(
            id.clone(),
            UploadRec {
                bucket: ctx.bucket.clone(),
                key: ctx.key.clone(),
                initiated: ctx.shared.now_iso(),
                parts: BTreeMap::new(),
                sequential: ctx.q("sequential").is_some(),
            },
        );
        id
    };
    ok_xml(&InitiateMultipartUploadResult {
        bucket: ctx.bucket.clone(),
        key: ctx.name(&ctx.key),
        upload_id,
        encoding_type: ctx.encode_url().then(|| "url".to_owned()),
    })
}

fn part_number(ctx: &Ctx<'_>) -> Result<u32, OssFault> {
    let Some(raw) = ctx.q("partNumber") else {
        return Err(OssFault::invalid_argument(
            "Unexpected query string parameter.",
            "ResourceType",
            "partNumber",
            "0017-00000219",
        ));
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(OssFault::invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive.",
            "PartNumber",
            raw,
            "0017-00000220",
        )),
    }
}

fn check_upload(store: &Store, ctx: &Ctx<'_>) -> Result<(), OssFault> {
    match store.uploads.get(ctx.upload_id()) {
        Some(u) if u.bucket == ctx.bucket && u.key == ctx.key => Ok(()),
        _ => Err(OssFault::no_such_upload(ctx.upload_id())),
    }
}

fn store_blob(ctx: &Ctx<'_>, name: &str, bytes: &Bytes) -> Result<Blob, OssFault> {
    ctx.shared.storage.keep(name, bytes).map_err(|e| internal(&e))
}

/// The MD5 a `Content-MD5` header value names, if one is sent; `InvalidDigest` when it is not
/// the base64 of 16 bytes.
fn content_md5(value: Option<&str>) -> Result<Option<[u8; 16]>, OssFault> {
    let Some(value) = value else { return Ok(None) };
    match STANDARD.decode(value.trim()).ok().and_then(|g| <[u8; 16]>::try_from(g.as_slice()).ok()) {
        Some(md5) => Ok(Some(md5)),
        None => {
            Err(OssFault::new(400, "InvalidDigest", "The Content-MD5 you specified is not valid.").ec("0017-00000502"))
        }
    }
}

/// Checks and keeps the bytes of a part or object: size, `Content-MD5` (the request's, when
/// `check_md5`), the MD5 that makes the ETag and the CRC-64. A request body that was not kept
/// (discard mode) is described by `ctx.discarded`.
fn save_part(ctx: &Ctx<'_>, number: u32, bytes: Bytes, check_md5: bool) -> Result<StoredPart, OssFault> {
    let discarded = ctx.discarded.filter(|_| check_md5);
    let len = discarded.map_or(bytes.len() as u64, |d| d.len);
    if len > ctx.shared.config.max_part_size {
        return Err(OssFault::new(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."));
    }
    let given = if check_md5 { content_md5(ctx.headers.header_value("content-md5").as_deref())? } else { None };
    let (crc, computed_md5) = match discarded {
        Some(d) => (d.crc64, d.md5),
        None => {
            let hashes = if ctx.shared.config.verify_md5 { Hashes::MD5 | Hashes::CRC64 } else { Hashes::CRC64 };
            let d = Digests::compute(hashes, &bytes);
            (d.crc64.unwrap_or_default(), d.md5)
        }
    };
    let md5 = if ctx.shared.config.verify_md5 {
        let md5 = computed_md5.unwrap_or_default();
        if given.is_some_and(|g| g != md5) {
            return Err(
                OssFault::new(400, "InvalidDigest", "The Content-MD5 you specified was invalid.").ec("0017-00000503")
            );
        }
        md5
    } else {
        // Benchmarks: the client's Content-MD5 when sent, else an opaque id from the CRC-64.
        given.unwrap_or_else(|| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&crc.to_be_bytes());
            id[8..].copy_from_slice(&len.to_be_bytes());
            id
        })
    };
    let blob = match discarded {
        Some(_) => Blob::Discarded,
        None => store_blob(
            ctx,
            &format!("{}-{number}", if ctx.upload_id().is_empty() { "put" } else { ctx.upload_id() }),
            &bytes,
        )?,
    };
    Ok(StoredPart { blob, len, md5, crc, last_modified: ctx.shared.now_iso() })
}

fn part_reply(part: &StoredPart) -> Result<Reply, OssFault> {
    Response::builder()
        .status(200)
        .header("etag", etag_of(&part.md5))
        .header("x-oss-hash-crc64ecma", part.crc.to_string())
        .header("content-md5", STANDARD.encode(part.md5))
        .body(Full::new(Bytes::new()))
        .map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))
}

/// A sequential upload takes each part number once, in ascending order.
fn check_sequential(upload: &UploadRec, number: u32) -> Result<(), OssFault> {
    if upload.parts.contains_key(&number) {
        return Err(OssFault::new(
            409,
            "PartAlreadyExist",
            "For sequential multipart upload, you can't overwrite uploaded parts.",
        )
        .ec("0042-00000108"));
    }
    if upload.parts.keys().next_back().is_some_and(|&last| number < last) {
        return Err(OssFault::new(
            400,
            "PartNotSequential",
            "For sequential multipart upload, you must upload or complete parts with sequential part number.",
        ));
    }
    Ok(())
}

fn upload_part(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let number = part_number(ctx)?;
    {
        // Refused before the bytes are kept: a sequential upload's stored part stays as it is.
        let store = ctx.shared.store();
        check_upload(&store, ctx)?;
        if let Some(u) = store.uploads.get(ctx.upload_id()).filter(|u| u.sequential) {
            check_sequential(u, number)?;
        }
    }
    let part = save_part(ctx, number, ctx.body.clone(), true)?;
    let mut store = ctx.shared.store();
    // Checked again: the upload may have been completed or aborted meanwhile.
    check_upload(&store, ctx)?;
    if let Some(u) = store.uploads.get_mut(ctx.upload_id()) {
        if u.sequential {
            check_sequential(u, number)?;
        }
        u.parts.insert(number, part.clone());
    }
    part_reply(&part)
}

fn upload_part_copy(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let number = part_number(ctx)?;
    check_upload(&ctx.shared.store(), ctx)?;
    let source = ctx.headers.header_value("x-oss-copy-source").unwrap_or_default();
    let source = decode(source.split('?').next().unwrap_or_default());
    let (src_bucket, src_key) = source
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "x-oss-copy-source is invalid."))?;
    let object = ctx
        .shared
        .store()
        .objects
        .get(&(src_bucket.to_owned(), src_key.to_owned()))
        .cloned()
        .ok_or_else(|| OssFault::new(404, "NoSuchKey", "The specified key does not exist."))?;
    let bytes = object.blob.read().map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))?;
    let bytes = match ctx.headers.header_value("x-oss-copy-source-range") {
        Some(range) => {
            let (a, b) = range
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                .filter(|(a, b)| a <= b && *b < bytes.len())
                .ok_or_else(|| OssFault::new(416, "InvalidRange", "The requested range is not satisfiable."))?;
            bytes.slice(a..=b)
        }
        None => bytes,
    };
    let part = save_part(ctx, number, bytes, false)?;
    {
        let mut store = ctx.shared.store();
        check_upload(&store, ctx)?;
        if let Some(u) = store.uploads.get_mut(ctx.upload_id()) {
            u.parts.insert(number, part.clone());
        }
    }
    ok_xml(&CopyPartResult { last_modified: part.last_modified.clone(), etag: etag_of(&part.md5) })
}

fn complete(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    const MIN_PART: u64 = 100 * 1024;
    let all = ctx.headers.header_value("x-oss-complete-all").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let mut store = ctx.shared.store();
    check_upload(&store, ctx)?;
    let upload = store.uploads.get(ctx.upload_id()).ok_or_else(|| OssFault::no_such_upload(ctx.upload_id()))?;
    let listed: Vec<CompletePart> = if all {
        if !ctx.body.is_empty() {
            return Err(OssFault::invalid_argument(
                "Should not speficy both complete all header and http body.",
                "x-oss-complete-all",
                "yes",
                "0042-00000216",
            ));
        }
        upload.parts.iter().map(|(n, p)| CompletePart { part_number: *n, etag: etag_of(&p.md5) }).collect()
    } else {
        let text = std::str::from_utf8(&ctx.body).unwrap_or_default();
        let doc: CompleteMultipartUpload = quick_xml::de::from_str(text).map_err(|_| {
            OssFault::new(
                400,
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema.",
            )
            .ec("0042-00000205")
        })?;
        if doc.parts.is_empty() {
            return Err(OssFault::new(
                400,
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema.",
            )
            .ec("0042-00000205"));
        }
        doc.parts
    };
    if listed.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
        return Err(OssFault::new(
            400,
            "InvalidPartOrder",
            "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
        )
        .ec("0042-00000209"));
    }
    let mut parts = Vec::with_capacity(listed.len());
    for (i, p) in listed.iter().enumerate() {
        let stored = upload.parts.get(&p.part_number).filter(|s| etag_of(&s.md5).eq_ignore_ascii_case(p.etag.trim()));
        let Some(stored) = stored else {
            return Err(OssFault::new(400, "InvalidPart", "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag.")
                .ec("0042-00000204")
                .extra("ETag", &p.etag)
                .extra("PartNumber", &p.part_number.to_string())
                .extra("UploadId", ctx.upload_id()));
        };
        if i + 1 < listed.len() && stored.len < MIN_PART {
            return Err(OssFault::new(
                400,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size.",
            )
            .ec("0042-00000213")
            .extra("PartNumber", &p.part_number.to_string()));
        }
        parts.push(stored.clone());
    }
    let mut crc = Crc64::default();
    let mut md5s = Vec::with_capacity(parts.len() * 16);
    for p in &parts {
        crc.append(Crc64 { crc: p.crc, len: p.len });
        md5s.extend_from_slice(&p.md5);
    }
    let etag = format!(
        "\"{}-{}\"",
        hex(&Digests::compute(Hashes::MD5, &md5s).md5.unwrap_or_default()).to_ascii_uppercase(),
        parts.len()
    );
    let blobs: Vec<&Blob> = parts.iter().map(|p| &p.blob).collect();
    let blob = ctx.shared.storage.assemble(&ctx.bucket, &ctx.key, &blobs).map_err(|e| internal(&e))?;
    if let Some(u) = store.uploads.remove(ctx.upload_id()) {
        u.parts.values().for_each(|p| p.blob.remove());
    }
    store.objects.insert(
        (ctx.bucket.clone(), ctx.key.clone()),
        Object {
            blob,
            len: crc.len,
            etag: etag.clone(),
            crc: crc.crc,
            content_type: None,
            last_modified: ctx.shared.now_http(),
        },
    );
    drop(store);
    let mut reply = ok_xml(&CompleteMultipartUploadResult {
        encoding_type: ctx.encode_url().then(|| "url".to_owned()),
        location: format!("http://{}/{}", ctx.bucket, ctx.key),
        bucket: ctx.bucket.clone(),
        key: ctx.name(&ctx.key),
        etag,
    })?;
    if let Ok(v) = crc.crc.to_string().parse() {
        reply.headers_mut().insert("x-oss-hash-crc64ecma", v);
    }
    Ok(reply)
}

fn abort(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let mut store = ctx.shared.store();
    check_upload(&store, ctx)?;
    if let Some(u) = store.uploads.remove(ctx.upload_id()) {
        u.parts.values().for_each(|p| p.blob.remove());
    }
    Ok(empty(204))
}

fn bounded(ctx: &Ctx<'_>, name: &str, default: u32) -> Result<u32, OssFault> {
    match ctx.q(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(OssFault::invalid_argument(
                &format!("Argument {name} must be between 1 and 1000."),
                name,
                v,
                "0017-00000301",
            )),
        },
    }
}

fn list_parts(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let max = bounded(ctx, "max-parts", 1000)?;
    let marker: u32 = ctx.q("part-number-marker").and_then(|v| v.parse().ok()).unwrap_or(0);
    let store = ctx.shared.store();
    check_upload(&store, ctx)?;
    let upload = store.uploads.get(ctx.upload_id()).ok_or_else(|| OssFault::no_such_upload(ctx.upload_id()))?;
    let after: Vec<(&u32, &StoredPart)> = upload.parts.range(marker.saturating_add(1)..).collect();
    let page: Vec<PartSummary> = after
        .iter()
        .take(max as usize)
        .map(|(n, p)| PartSummary {
            part_number: **n,
            last_modified: p.last_modified.clone(),
            etag: etag_of(&p.md5),
            hash_crc64ecma: Some(p.crc),
            size: p.len,
        })
        .collect();
    let truncated = after.len() > page.len();
    ok_xml(&ListPartsResult {
        bucket: ctx.bucket.clone(),
        key: ctx.name(&ctx.key),
        upload_id: ctx.upload_id().to_owned(),
        encoding_type: ctx.encode_url().then(|| "url".to_owned()),
        part_number_marker: Some(marker),
        // Always present (the official SDKs require it): the last part listed, or the marker.
        next_part_number_marker: Some(page.last().map_or(marker, |p| p.part_number)),
        max_parts: Some(max),
        is_truncated: truncated,
        storage_class: Some("Standard".into()),
        parts: page,
    })
}

fn list_uploads(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let max = bounded(ctx, "max-uploads", 1000)? as usize;
    let prefix = ctx.q("prefix").unwrap_or_default().to_owned();
    let delimiter = ctx.q("delimiter").filter(|d| !d.is_empty()).map(str::to_owned);
    let key_marker = ctx.q("key-marker").unwrap_or_default().to_owned();
    let id_marker = ctx.q("upload-id-marker").filter(|_| !key_marker.is_empty()).unwrap_or_default().to_owned();
    let store = ctx.shared.store();
    let mut all: Vec<(&String, &UploadRec)> = store
        .uploads
        .iter()
        .filter(|(_, u)| u.bucket == ctx.bucket && u.key.starts_with(&prefix))
        .filter(|(id, u)| u.key > key_marker || (u.key == key_marker && !id_marker.is_empty() && **id > id_marker))
        .collect();
    all.sort_by(|a, b| (&a.1.key, a.0).cmp(&(&b.1.key, b.0)));
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last: Option<(String, String)> = None;
    for (id, u) in all {
        if uploads.len() + prefixes.len() >= max {
            truncated = true;
            break;
        }
        if let Some(d) = &delimiter
            && let Some(pos) = u.key[prefix.len()..].find(d.as_str())
        {
            let common = u.key[..prefix.len() + pos + d.len()].to_owned();
            if !prefixes.contains(&common) {
                prefixes.push(common);
            }
            last = Some((u.key.clone(), id.clone()));
            continue;
        }
        uploads.push(MultipartUpload {
            key: ctx.name(&u.key),
            upload_id: id.clone(),
            initiated: u.initiated.clone(),
            storage_class: Some("Standard".into()),
        });
        last = Some((u.key.clone(), id.clone()));
    }
    let opt = |s: &str| Some(ctx.name(s));
    ok_xml(&ListMultipartUploadsResult {
        bucket: ctx.bucket.clone(),
        encoding_type: ctx.encode_url().then(|| "url".to_owned()),
        key_marker: opt(&key_marker),
        upload_id_marker: Some(id_marker.clone()),
        next_key_marker: if truncated { last.as_ref().map(|(k, _)| ctx.name(k)) } else { None },
        next_upload_id_marker: if truncated { last.as_ref().map(|(_, id)| id.clone()) } else { None },
        delimiter: delimiter.as_deref().map(|d| ctx.name(d)),
        prefix: opt(&prefix),
        max_uploads: Some(max as u32),
        is_truncated: truncated,
        uploads,
        common_prefixes: prefixes.into_iter().map(|p| CommonPrefix { prefix: ctx.name(&p) }).collect(),
    })
}

fn put_object(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    check_key(ctx)?;
    // A name of its own for the temporary file: parallel PUTs must not share one.
    let temp_number = {
        let mut store = ctx.shared.store();
        store.counter += 1;
        u32::try_from(store.counter % u64::from(u32::MAX)).unwrap_or_default()
    };
    let part = save_part(ctx, temp_number, ctx.body.clone(), true)?;
    let blob = ctx.shared.storage.promote(&ctx.bucket, &ctx.key, part.blob.clone()).map_err(|e| internal(&e))?;
    ctx.shared.store().objects.insert(
        (ctx.bucket.clone(), ctx.key.clone()),
        Object {
            blob,
            len: part.len,
            etag: etag_of(&part.md5),
            crc: part.crc,
            content_type: ctx.headers.header_value("content-type"),
            last_modified: ctx.shared.now_http(),
        },
    );
    part_reply(&part)
}

fn get_object(ctx: &Ctx<'_>, head: bool) -> Result<Reply, OssFault> {
    let object = ctx
        .shared
        .store()
        .objects
        .get(&(ctx.bucket.clone(), ctx.key.clone()))
        .cloned()
        .ok_or_else(|| OssFault::new(404, "NoSuchKey", "The specified key does not exist.").ec("0026-00000001"))?;
    let body = if head {
        Bytes::new()
    } else {
        object.blob.read().map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))?
    };
    let mut builder = Response::builder()
        .status(200)
        .header("etag", object.etag.as_str())
        .header("x-oss-hash-crc64ecma", object.crc.to_string())
        .header("last-modified", object.last_modified.as_str())
        .header("content-length", object.len.to_string());
    if let Some(t) = &object.content_type {
        builder = builder.header("content-type", t.as_str());
    }
    builder.body(Full::new(body)).map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))
}
