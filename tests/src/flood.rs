//! A hostile client for the emulators: one request over a raw connection whose body is made up
//! as it is sent (one reused MiB of zeros, so the sender itself holds no memory), while this
//! process's resident memory (the emulators run in it) is watched. The sender ignores the
//! answer: it stops when the server closes the connection, when the whole body is sent, or
//! when the memory grew past a limit (so a server that keeps everything fails the test instead
//! of exhausting the machine).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

/// Growth of the resident memory past which the sender gives up (the body is cut short).
pub const RSS_GIVE_UP: u64 = 512 * MIB;

/// Longest wait for an answer, and for the server to take or refuse the rest of the body
/// after it (hang detection, not a speed requirement).
const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// How the body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`, frames of 1 MiB (the head must say so).
    Chunked,
    /// Plain bytes (the head announces their `Content-Length`).
    Plain,
}

/// What one flood did.
#[derive(Clone, Debug)]
pub struct Flood {
    /// The answer's head and body as text (empty: none arrived).
    pub answer: String,
    /// Body bytes handed to the connection before the server closed it (or sending stopped).
    pub sent: u64,
    /// The largest growth of this process's resident memory seen while sending.
    pub rss_growth: u64,
}

impl Flood {
    /// The status of the answer (0: none).
    pub fn status(&self) -> u16 {
        self.answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// Whether the answer has this header (a name: value line, any case).
    pub fn has_header(&self, name: &str, value: &str) -> bool {
        let head = self.answer.split("\r\n\r\n").next().unwrap_or_default();
        head.lines()
            .any(|l| l.split_once(':').is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.trim() == value))
    }
}

/// This process's resident memory in bytes (`VmRSS` of `/proc/self/status`; 0 elsewhere).
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Sends `head` (the request line and headers, ending with the empty line) to `addr`, then up to
/// `total` body bytes of zeros framed as `framing`, and reads the answer meanwhile.
pub async fn flood(addr: SocketAddr, head: &str, framing: Framing, total: u64) -> Flood {
    let socket = tokio::net::TcpStream::connect(addr).await.expect("connect to the emulator");
    let (mut reader, mut writer) = socket.into_split();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let growth = Arc::new(AtomicU64::new(0));
    let start = rss();
    let head = head.as_bytes().to_vec();
    let send = {
        let (stop, sent, growth) = (stop.clone(), sent.clone(), growth.clone());
        tokio::spawn(async move {
            let zeros = vec![0u8; MIB as usize];
            if writer.write_all(&head).await.is_err() {
                return;
            }
            let mut done = 0u64;
            while done < total {
                let n = MIB.min(total - done);
                let chunk = &zeros[..n as usize];
                let written = match framing {
                    Framing::Chunked => {
                        let frame_head = format!("{n:x}\r\n");
                        async {
                            writer.write_all(frame_head.as_bytes()).await?;
                            writer.write_all(chunk).await?;
                            writer.write_all(b"\r\n").await
                        }
                        .await
                    }
                    Framing::Plain => writer.write_all(chunk).await,
                };
                if written.is_err() {
                    break;
                }
                done += n;
                sent.store(done, Ordering::SeqCst);
                if done.is_multiple_of(8 * MIB) {
                    let grew = rss().saturating_sub(start);
                    growth.fetch_max(grew, Ordering::SeqCst);
                    if grew > RSS_GIVE_UP {
                        break;
                    }
                }
            }
            if done == total && framing == Framing::Chunked {
                let _ = writer.write_all(b"0\r\n\r\n").await;
            }
            // A body cut short ends here: the server sees it broken off.
            if done < total {
                let _ = writer.shutdown().await;
            }
            // Kept open (a complete body) until the answer is read.
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
            if complete(&answer) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(ANSWER_WAIT, read).await;
    stop.store(true, Ordering::SeqCst);
    // The sender goes on until the server closes the connection: it is stuck only when the
    // server neither reads nor closes.
    if tokio::time::timeout(ANSWER_WAIT, send).await.is_err() {
        panic!("the server neither read the body nor closed the connection");
    }
    growth.fetch_max(rss().saturating_sub(start), Ordering::SeqCst);
    Flood {
        answer: String::from_utf8_lossy(&answer).into_owned(),
        sent: sent.load(Ordering::SeqCst),
        rss_growth: growth.load(Ordering::SeqCst),
    }
}

/// Whether `answer` holds a whole response: its head and the body its `Content-Length` names.
fn complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&answer[..end]);
    let length = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    answer.len() >= end + 4 + length
}
