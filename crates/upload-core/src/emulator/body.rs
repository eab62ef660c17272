//! Request bodies: read whole, read under a limit, or refused unread.
//!
//! An emulator decides what it can from a request's headers (credentials, the announced
//! length) before it reads a byte of the body: a request it refuses then is answered at once,
//! and its body is left unread but for a bounded drain ([`PendingBody::refuse`]), so that a
//! client sending gigabytes costs the server a few MiB of reading and no memory.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

/// A request body as received.
#[derive(Debug)]
pub struct Body {
    /// The bytes (empty in discard mode).
    pub bytes: Bytes,
    /// Length and digests of a body that was not kept (discard mode).
    pub discarded: Option<Discarded>,
}

/// What is known of a body whose bytes were not kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Discarded {
    /// Bytes received.
    pub len: u64,
    /// Its CRC-64/XZ.
    pub crc64: u64,
    /// Its MD5, when asked for.
    pub md5: Option<[u8; 16]>,
    /// Its SHA-1, when asked for.
    pub sha1: Option<[u8; 20]>,
}

impl Body {
    /// Bytes received.
    pub fn len(&self) -> u64 {
        self.discarded.map_or(self.bytes.len() as u64, |d| d.len)
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Most bytes reserved up front for a body: a larger one grows as it arrives (and is paid for
/// by a request that got that far), so an announced length alone cannot exhaust memory.
const PREALLOCATE_MAX: usize = 256 << 20;

/// Most bytes of a refused request's body read (and dropped) after its answer, before the
/// connection is closed: a client that sends its body without waiting for an answer gets to
/// read the refusal instead of a reset, and a body of any size costs at most this.
pub const LINGER_BYTES: u64 = 8 << 20;

/// Longest time spent reading a refused request's body (a client that sends it slowly is not
/// waited for).
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// A body read under a limit ([`PendingBody::read`]).
#[derive(Debug)]
pub enum Capped {
    /// The whole body, within the limit.
    Whole(Body),
    /// More than the limit: announced (nothing was read) or sent (reading stopped at the first
    /// frame past it, nothing of it kept).
    TooLarge {
        /// Bytes read before reading stopped.
        received: u64,
    },
}

/// The body of a request, not read yet, with what its headers say of it.
#[derive(Debug)]
pub struct PendingBody {
    body: Incoming,
    expects_continue: bool,
}

impl PendingBody {
    /// The body of `req`.
    pub fn new(req: hyper::Request<Incoming>) -> Self {
        let expects_continue = req
            .headers()
            .get(hyper::header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        Self { body: req.into_body(), expects_continue }
    }

    /// Its length as framed: `Content-Length`, 0 for a request without a body, `None` for a
    /// chunked one (its length is known only at its end).
    pub fn length(&self) -> Option<u64> {
        self.body.size_hint().exact()
    }

    /// Leaves the body unread, for a request answered without it: at most [`LINGER_BYTES`] of
    /// it are read and dropped in the background (for [`LINGER_TIME`] at most), then the
    /// connection closes unless the body had ended. A client that waits for `100 Continue`
    /// is not asked for its body at all.
    pub fn refuse(self) {
        if self.expects_continue {
            // Dropped unread: the server answers without asking for the body.
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let mut body = self.body;
        runtime.spawn(async move {
            let drain = async {
                let mut got = 0u64;
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        got = got.saturating_add(data.len() as u64);
                        if got > LINGER_BYTES {
                            break;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_TIME, drain).await;
        });
    }

    /// Reads the body, at most `max` bytes of it: into one buffer (the announced length
    /// reserved up front, up to a bound), or (`discard`: the hashes to compute as the frames
    /// pass, CRC-64 always) only its length and digests. A body announced longer than `max` is
    /// not read at all, and one without a length stops being read at the first frame that
    /// takes it past `max`; either is [`Capped::TooLarge`], and what is left of it is treated
    /// as [`PendingBody::refuse`] does.
    ///
    /// `Err(received)` means the caller drops the connection without an answer: the client went
    /// away or broke the body off (hyper reports a body shorter than its `Content-Length` as an
    /// error), or an injected reset (`reset_after`) fired; a reset fires at the end of a body
    /// shorter than `reset_after` too, so a fault is never spent without effect.
    pub async fn read(
        self,
        max: u64,
        discard: Option<crate::hash::Hashes>,
        reset_after: Option<usize>,
    ) -> Result<Capped, u64> {
        let announced = self.length();
        if announced.is_some_and(|n| n > max) {
            self.refuse();
            return Ok(Capped::TooLarge { received: 0 });
        }
        let reserve = match (discard, announced) {
            (None, Some(n)) => usize::try_from(n).unwrap_or(usize::MAX).min(PREALLOCATE_MAX),
            _ => 0,
        };
        let mut pending = self;
        match collect(&mut pending.body, max, reserve, discard, reset_after).await? {
            Ok(body) => Ok(Capped::Whole(body)),
            Err(received) => {
                pending.refuse();
                Ok(Capped::TooLarge { received })
            }
        }
    }
}

/// Reads the frames of a body: `Ok(Err(received))` at the first frame that takes it past
/// `max` (nothing of it kept), `Err(received)` when the connection is to be dropped.
async fn collect(
    body: &mut Incoming,
    max: u64,
    reserve: usize,
    discard: Option<crate::hash::Hashes>,
    reset_after: Option<usize>,
) -> Result<Result<Body, u64>, u64> {
    let mut received = BytesMut::with_capacity(reserve);
    let mut hasher = discard.map(|h| crate::hash::WholeHasher::new(h | crate::hash::Hashes::CRC64));
    let mut got = 0u64;
    let reset_due = |got: u64| reset_after.is_some_and(|n| got >= n as u64);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(got) };
        if let Ok(data) = frame.into_data() {
            got = got.saturating_add(data.len() as u64);
            if got > max && !reset_due(got) {
                return Ok(Err(got));
            }
            match &mut hasher {
                Some(h) => h.update(&data),
                None => received.extend_from_slice(&data),
            }
        }
        if reset_due(got) {
            return Err(got);
        }
    }
    if reset_after.is_some() {
        return Err(got);
    }
    let discarded = hasher.map(|h| {
        let d = h.finish();
        Discarded { len: got, crc64: d.crc64.unwrap_or_default(), md5: d.md5, sha1: d.sha1 }
    });
    Ok(Ok(Body { bytes: received.freeze(), discarded }))
}

/// Reads a request body with no limit: into one buffer of the announced length, or (`discard`:
/// the hashes to compute as the frames pass, CRC-64 always) only its length and digests.
///
/// `Err(received)` as for [`PendingBody::read`]. Emulators that face clients they do not trust
/// read through [`PendingBody`] instead, under the vendor's limit.
pub async fn read_body(
    mut body: Incoming,
    content_length: usize,
    discard: Option<crate::hash::Hashes>,
    reset_after: Option<usize>,
) -> Result<Body, u64> {
    let reserve = if discard.is_some() { 0 } else { content_length.min(PREALLOCATE_MAX) };
    // No body passes u64::MAX bytes: the limit never applies.
    collect(&mut body, u64::MAX, reserve, discard, reset_after).await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{Server, empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that refuses a body of more than 10 bytes (413) or one sent to `/refuse`
    /// (403, unread), and otherwise answers 200 with the body's length in `x-len`.
    async fn server() -> Server {
        Server::start("127.0.0.1:0".parse().unwrap(), |req: hyper::Request<Incoming>| async move {
            let refuse = req.uri().path() == "/refuse";
            let body = PendingBody::new(req);
            if refuse {
                body.refuse();
                return Ok(empty(403));
            }
            Ok(match body.read(10, None, None).await {
                Ok(Capped::Whole(b)) => {
                    let mut r = empty(200);
                    r.headers_mut().insert("x-len", b.len().into());
                    r
                }
                Ok(Capped::TooLarge { .. }) => empty(413),
                Err(_) => empty(500),
            })
        })
        .await
        .unwrap()
    }

    async fn exchange(server: &Server, request: &str) -> String {
        let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer)).await.unwrap().unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_limit_and_refused_ones_are_not_asked_for() {
        let server = server().await;
        let chunked = |path: &str, frames: &str| {
            format!("PUT {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{frames}")
        };
        let within = exchange(&server, &chunked("/", "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")).await;
        assert!(within.starts_with("HTTP/1.1 200") && within.contains("x-len: 10"), "{within}");
        // Past the limit in a chunked body (not ended): refused without waiting for its end.
        let over = exchange(&server, &chunked("/", "6\r\nhello \r\n6\r\nworld!\r\n")).await;
        assert!(over.starts_with("HTTP/1.1 413"), "{over}");
        // Announced past it: refused unread.
        let announced = exchange(&server, "PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n").await;
        assert!(announced.starts_with("HTTP/1.1 413"), "{announced}");
        // A client waiting for 100 Continue is answered without being asked for its body.
        let waiting = "PUT /refuse HTTP/1.1\r\nhost: x\r\ncontent-length: 5000000\r\nexpect: 100-continue\r\n\r\n";
        let refused = exchange(&server, waiting).await;
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    }
}
