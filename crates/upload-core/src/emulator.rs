//! What the vendor emulators share (feature `emulator`): the HTTP/1.1 server loop, fault
//! injection, the request log ([`RequestLog`], bounded), request bodies read under a limit with
//! resets and discard mode or refused unread ([`PendingBody`]), and part storage in memory or
//! in a directory.
//!
//! Each vendor crate's `emulator` module builds its own rules (routing, signatures, error
//! documents, the multipart state machine) on these pieces, so that faults, logs and storage
//! behave the same for every vendor.

mod body;
mod log;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;

pub use body::{Body, Capped, Discarded, LINGER_BYTES, LINGER_TIME, PendingBody, read_body};
pub use log::{LOG_CAPACITY, LoggedRequest, RequestLog, log_stats};

/// The largest body of a request that is not an upload (an XML or JSON document: a list of
/// parts to complete, a session to create): more than any vendor's largest such document.
pub const DOCUMENT_MAX: u64 = 16 << 20;

/// The response type of the emulators.
pub type Reply = Response<Full<Bytes>>;

/// What an injected fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer this status with this error code (and `Retry-After` seconds), without doing anything.
    Error {
        /// HTTP status.
        status: u16,
        /// The vendor's error code.
        code: String,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// Read this many body bytes, then drop the connection without an answer.
    ResetMidBody {
        /// Bytes read before the reset.
        after: usize,
    },
    /// Do the operation, then drop the connection without an answer (a lost response).
    LoseResponse,
    /// Keep only the first `keep` bytes of the body, then answer this status and error code
    /// (a server that stored part of a fragment; vendors whose sessions track bytes only).
    PartialThenError {
        /// Bytes kept.
        keep: usize,
        /// HTTP status.
        status: u16,
        /// The vendor's error code.
        code: String,
    },
    /// Do the operation, then answer this status and error code anyway (a server that stored
    /// the part and still failed).
    ErrorAfter {
        /// HTTP status.
        status: u16,
        /// The vendor's error code.
        code: String,
    },
    /// Wait this long before handling the request.
    Delay(Duration),
}

/// A fault: which requests it hits, how often, and what it does. `Op` is the vendor emulator's
/// operation type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault<Op> {
    /// The operation it applies to (`None`: every operation).
    pub operation: Option<Op>,
    /// The part number it applies to (`None`: every part).
    pub part_number: Option<u32>,
    /// How many requests it hits before it is spent.
    pub times: u32,
    /// What it does.
    pub action: FaultAction,
}

/// Takes the first unspent fault that applies to a request, spending one of its uses.
pub fn take_fault<Op: PartialEq + Copy>(
    faults: &mut [Fault<Op>],
    operation: Option<Op>,
    part_number: Option<u32>,
) -> Option<FaultAction> {
    let fault = faults.iter_mut().find(|f| {
        f.times > 0
            && (f.operation.is_none() || f.operation == operation)
            && (f.part_number.is_none() || f.part_number == part_number)
    })?;
    fault.times -= 1;
    Some(fault.action.clone())
}

/// Dropping the connection without an answer.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

/// A running HTTP server; dropping it stops accepting connections.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Binds `listen` and serves every connection with `handler` on the current tokio runtime.
    pub async fn start<H, F>(listen: SocketAddr, handler: H) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Reply, Dropped>> + Send + 'static,
    {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let handler = Arc::new(handler);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let handler = handler.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| handler(req));
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                        });
                    }
                }
            }
        });
        Ok(Self { addr, stop: Some(stop) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The headers of a request whose values are text, in order.
pub fn text_headers(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers.iter().filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_owned(), v.to_owned()))).collect()
}

/// The host name a request was sent to (the `Host` header without its port).
pub fn host_name<B>(req: &Request<B>) -> String {
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_owned(),
        _ => host,
    }
}

/// Percent-decoding (UTF-8, lossy).
pub fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Percent-decoding of a name: `None` when the bytes are not UTF-8 (two different byte strings
/// must never become one key).
pub fn decode_strict(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

/// A query string as decoded pairs: `+` is a space there (form encoding), then percent-decoding.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let component = |s: &str| decode(&s.replace('+', " "));
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (component(n), component(v)),
            None => (component(p), String::new()),
        })
        .collect()
}

/// Where stored bytes live.
#[derive(Clone, Debug)]
pub enum Blob {
    /// In memory.
    Memory(Bytes),
    /// An object made of parts, kept as they are (no copy at completion).
    Parts(Vec<Bytes>),
    /// A file.
    File(PathBuf),
    /// Only the length and checksum were kept (benchmarks).
    Discarded,
}

impl Blob {
    /// The bytes (empty for [`Blob::Discarded`]).
    pub fn read(&self) -> std::io::Result<Bytes> {
        match self {
            Blob::Memory(b) => Ok(b.clone()),
            Blob::Parts(parts) => {
                let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                for p in parts {
                    all.extend_from_slice(p);
                }
                Ok(all.freeze())
            }
            Blob::File(p) => std::fs::read(p).map(Bytes::from),
            Blob::Discarded => Ok(Bytes::new()),
        }
    }

    /// Removes the file behind a [`Blob::File`].
    pub fn remove(&self) {
        if let Blob::File(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Storage of parts and objects: memory, or files under a directory (objects as plain files at
/// `<dir>/<bucket>/<key>`, comparable with `cmp`; parts under `<dir>/.uploads`).
#[derive(Clone, Debug)]
pub struct Storage {
    dir: Option<PathBuf>,
}

impl Storage {
    /// Storage in memory (`None`) or under a directory, which is created with a folder per bucket.
    pub fn new(dir: Option<PathBuf>, buckets: &[String]) -> std::io::Result<Self> {
        if let Some(dir) = &dir {
            for b in buckets {
                std::fs::create_dir_all(dir.join(b))?;
            }
            std::fs::create_dir_all(dir.join(".uploads"))?;
        }
        Ok(Self { dir })
    }

    /// The directory, if objects are kept as files.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Keeps the bytes of a part (or a body on its way to being an object) under `name`.
    pub fn keep(&self, name: &str, bytes: &Bytes) -> std::io::Result<Blob> {
        match &self.dir {
            None => Ok(Blob::Memory(bytes.clone())),
            Some(dir) => {
                let path = dir.join(".uploads").join(name);
                std::fs::write(&path, bytes)?;
                Ok(Blob::File(path))
            }
        }
    }

    /// Where an object lives in directory mode, for keys that are plain relative paths; `None`
    /// for a key with `.`, `..` or empty segments (or a backslash), which cannot be a file there
    /// without escaping the directory or colliding.
    pub fn object_path(dir: &Path, bucket: &str, key: &str) -> Option<PathBuf> {
        let plain = key.split('/').all(|s| !s.is_empty() && s != "." && s != "..") && !key.contains('\\');
        plain.then(|| dir.join(bucket).join(key))
    }

    /// Whether this storage can keep an object under `key`.
    pub fn accepts_key(&self, key: &str) -> bool {
        self.dir.is_none() || Self::object_path(Path::new(""), "b", key).is_some()
    }

    /// Joins parts into an object: kept as they are in memory, written to its file in
    /// directory mode; [`Blob::Discarded`] when any part was discarded.
    pub fn assemble(&self, bucket: &str, key: &str, parts: &[&Blob]) -> std::io::Result<Blob> {
        if parts.iter().any(|p| matches!(p, Blob::Discarded)) {
            return Ok(Blob::Discarded);
        }
        match &self.dir {
            None => Ok(Blob::Parts(parts.iter().map(|p| p.read()).collect::<Result<_, _>>()?)),
            Some(dir) => {
                let path = Self::object_path(dir, bucket, key).ok_or_else(|| unstorable(key))?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                // Written beside, then renamed: a reader never sees half an object.
                let temp = dir.join(".uploads").join(format!("assemble-{}", unique()));
                let written = (|| {
                    let mut out = std::fs::File::create(&temp)?;
                    for p in parts {
                        std::io::Write::write_all(&mut out, &p.read()?)?;
                    }
                    drop(out);
                    std::fs::rename(&temp, &path)
                })();
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&temp);
                    return Err(e);
                }
                Ok(Blob::File(path))
            }
        }
    }

    /// Makes a kept body the object `bucket/key` (a rename in directory mode).
    pub fn promote(&self, bucket: &str, key: &str, kept: Blob) -> std::io::Result<Blob> {
        match (&self.dir, kept) {
            (Some(dir), Blob::File(temp)) => {
                let moved = Self::object_path(dir, bucket, key).ok_or_else(|| unstorable(key)).and_then(|path| {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::rename(&temp, &path)?;
                    Ok(path)
                });
                match moved {
                    Ok(path) => Ok(Blob::File(path)),
                    Err(e) => {
                        let _ = std::fs::remove_file(&temp);
                        Err(e)
                    }
                }
            }
            (_, blob) => Ok(blob),
        }
    }
}

fn unstorable(key: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("directory storage keeps objects as files and cannot store the key {key:?}"),
    )
}

/// Whether a storage error means the key cannot be a file there (another object is in the way
/// as a file or a directory, or the key is not a plain path): the vendor's invalid-name error,
/// not an internal one.
pub fn is_unstorable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), InvalidInput | AlreadyExists | NotADirectory | IsADirectory | DirectoryNotEmpty)
}

/// A process-wide counter for names of temporary files and request ids.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A body-less response with this status.
pub fn empty(status: u16) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r
}

/// The current time as an HTTP date (`Sun, 22 Nov 2026 05:26:20 GMT`).
pub fn http_date() -> String {
    chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// The current time as ISO 8601 with a zero millisecond field (`2026-11-22T05:26:20.000Z`), the
/// form the vendors send and some official SDKs insist on.
pub fn iso_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S.000Z").to_string()
}

/// For benchmark clients: exactly the hashing a vendor needs over a file, as the limit to compare
/// an upload's CPU with: `part` hashes over each part of `part_size` bytes, `whole` hashes over
/// the file in order. Returns the bytes read.
pub fn hash_file(path: &Path, part_size: usize, part: crate::Hashes, whole: crate::Hashes) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; part_size.max(1)];
    let mut hasher = crate::hash::WholeHasher::new(whole);
    let mut total = 0u64;
    loop {
        // A whole part, or what is left of the file.
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read(&mut buffer[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        let chunk = &buffer[..filled];
        std::hint::black_box(crate::Digests::compute(part, chunk));
        hasher.update(chunk);
        total += filled as u64;
    }
    std::hint::black_box(hasher.finish());
    Ok(total)
}

/// CPU seconds (user, system) and peak RSS bytes of this process, from `/proc` (Linux; zeros
/// elsewhere), for the benchmark clients that run against the emulators.
pub fn process_usage() -> (f64, f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; USER_HZ is 100.
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let (user, system) = (field(11), field(12));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (user as f64 / 100.0, system as f64 / 100.0, hwm_kib * 1024)
}

/// Serves an emulator process until its standard input closes. Each line `stats` read there is
/// answered on standard output with one JSON line, `{"requests":N,"body_bytes":B}`: the requests
/// received so far and the bytes of their bodies (from `stats`), so that a benchmark counts what
/// every client sent from the server's side, the same way for all.
pub async fn serve_stdin(stats: impl Fn() -> (u64, u64)) {
    serve_stdin_with(stats, |_| false).await;
}

/// As [`serve_stdin`], with more commands: any other line goes to `command`, and when it
/// returns true (done) the line is answered with `{"done":"<line>"}`, so the sender knows it took
/// effect before it goes on.
pub async fn serve_stdin_with(stats: impl Fn() -> (u64, u64), command: impl Fn(&str) -> bool) {
    use std::io::Write as _;
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        let answer = if line == "stats" {
            let (requests, body_bytes) = stats();
            serde_json::json!({ "requests": requests, "body_bytes": body_bytes })
        } else if !line.is_empty() && command(line) {
            serde_json::json!({ "done": line })
        } else {
            continue;
        };
        let mut out = std::io::stdout().lock();
        // A reader that went away is the end of the run, not an error of the server.
        let _ = writeln!(out, "{answer}").and_then(|()| out.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_spent_in_order_and_filtered() {
        let mut faults = vec![
            Fault { operation: Some(1u8), part_number: Some(2), times: 1, action: FaultAction::LoseResponse },
            Fault { operation: None, part_number: None, times: 2, action: FaultAction::Delay(Duration::ZERO) },
        ];
        assert_eq!(take_fault(&mut faults, Some(1), Some(3)), Some(FaultAction::Delay(Duration::ZERO)));
        assert_eq!(take_fault(&mut faults, Some(1), Some(2)), Some(FaultAction::LoseResponse));
        assert_eq!(take_fault(&mut faults, Some(1), Some(2)), Some(FaultAction::Delay(Duration::ZERO)));
        assert_eq!(take_fault(&mut faults, Some(1), Some(2)), None);
    }

    #[test]
    fn queries_decode_plus_and_percent() {
        assert_eq!(
            parse_query("a=b+c&uploads&x=%2B%20y"),
            vec![("a".into(), "b c".into()), ("uploads".into(), String::new()), ("x".into(), "+ y".into())]
        );
    }

    #[test]
    fn directory_storage_refuses_keys_that_are_not_plain_paths() {
        let dir = Path::new("/data");
        assert_eq!(Storage::object_path(dir, "b", "a/b.bin"), Some(PathBuf::from("/data/b/a/b.bin")));
        for key in ["../x", "a/../../x", "a//b", "a/", "./a", "a\\b"] {
            assert_eq!(Storage::object_path(dir, "b", key), None, "{key}");
        }
    }

    #[test]
    fn parts_read_back_joined() {
        let blob = Blob::Parts(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
        assert_eq!(blob.read().unwrap(), Bytes::from_static(b"abcd"));
        assert_eq!(Blob::Discarded.read().unwrap(), Bytes::new());
    }
}
