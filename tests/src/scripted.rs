//! A scripted HTTP server (raw tokio, one request per connection) that answers what a test
//! tells it to, records every request, and counts the body bytes it wrote: a hostile or broken
//! server for the vendor clients.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use upload_core::RetryPolicy;

/// Longest time any case may take.
pub const CASE: Duration = Duration::from_secs(20);

/// A huge answer: a client that reads it whole holds 200 MiB.
pub const HUGE: u64 = 200 << 20;

/// One request as a listener received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes received.
    pub body_len: usize,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What a listener answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// These bytes, then the connection closes.
    Raw(Vec<u8>),
    /// A head, then `len` bytes of spaces (`None`: for ever), as fast as the client reads.
    Stream {
        /// The status line and headers.
        head: String,
        /// Body bytes.
        len: Option<u64>,
    },
    /// No answer at all, the connection kept open: a stalled server.
    Stall,
}

pub fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut head = format!("HTTP/1.1 {status} Hostile\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.as_bytes());
    Answer::Raw(raw)
}

pub fn json(status: u16, body: &str) -> Answer {
    answer(status, &[("content-type", "application/json")], body)
}

pub fn xml(status: u16, body: &str) -> Answer {
    answer(status, &[("content-type", "application/xml")], body)
}

/// 200 with 200 MiB of whitespace, announced.
pub fn huge(content_type: &str) -> Answer {
    huge_with(200, content_type)
}

/// This status with 200 MiB of whitespace, announced.
pub fn huge_with(status: u16, content_type: &str) -> Answer {
    Answer::Stream {
        head: format!("HTTP/1.1 {status} Big\r\ncontent-type: {content_type}\r\ncontent-length: {HUGE}\r\n\r\n"),
        len: Some(HUGE),
    }
}

/// 200 with a chunked body that never ends.
pub fn endless(content_type: &str) -> Answer {
    endless_with(200, content_type)
}

/// This status with a chunked body that never ends.
pub fn endless_with(status: u16, content_type: &str) -> Answer {
    Answer::Stream {
        head: format!(
            "HTTP/1.1 {status} Endless\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        ),
        len: None,
    }
}

/// A redirect to another listener.
pub fn redirect(status: u16, to: &str) -> Answer {
    answer(status, &[("location", to)], "")
}

/// What a listener answers to a request.
pub type Script = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// A scripted listener that records every request and counts the body bytes it wrote.
pub struct Hostile {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    written: Arc<AtomicU64>,
    script: Arc<Mutex<Script>>,
}

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hostile").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Hostile {
    /// Listens on a free port of 127.0.0.1; it answers 500 until scripted.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(AtomicU64::new(0));
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Arc::new(|_: &Seen| answer(500, &[], ""))));
        let (s, w, sc) = (seen.clone(), written.clone(), script.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, w, sc) = (s.clone(), w.clone(), sc.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, s, w, sc).await;
                });
            }
        });
        Self { addr, seen, written, script }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every later request with `f`.
    pub fn script(&self, f: impl Fn(&Seen) -> Answer + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(f);
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Body bytes written by streamed answers so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// No request here carried a credential of the client: this listener is not one it was
    /// configured for.
    pub fn assert_no_credentials(&self, case: &str) {
        for r in self.seen() {
            for name in ["authorization", "x-oss-security-token", "cookie", "x-requestdigest", "x-qs-date"] {
                assert!(r.header(name).is_none(), "{case}: {name} was sent to a foreign host: {r:?}");
            }
            let target = r.target.to_ascii_lowercase();
            for word in ["signature", "x-oss-credential", "access_key_id", "tempauth"] {
                assert!(!target.contains(word), "{case}: {word} in a URL sent to a foreign host: {}", r.target);
            }
        }
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    written: Arc<AtomicU64>,
    script: Arc<Mutex<Script>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 1 << 20 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (first.next().unwrap_or_default().to_owned(), first.next().unwrap_or_default().to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body_len = buf.len() - head_end;
    while body_len < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body_len += n;
    }
    let request = Seen { method, target, headers, body_len };
    seen.lock().unwrap().push(request.clone());
    let script = script.lock().unwrap().clone();
    match script(&request) {
        Answer::Raw(bytes) => stream.write_all(&bytes).await?,
        Answer::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
        Answer::Stream { head, len } => {
            stream.write_all(head.as_bytes()).await?;
            let spaces = vec![b' '; 64 * 1024];
            let chunked = len.is_none();
            let mut left = len.unwrap_or(u64::MAX);
            while left > 0 {
                let n = spaces.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                if chunked {
                    stream.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                }
                stream.write_all(&spaces[..n]).await?;
                if chunked {
                    stream.write_all(b"\r\n").await?;
                }
                written.fetch_add(n as u64, Ordering::SeqCst);
                left -= n as u64;
            }
        }
    }
    stream.shutdown().await
}

/// Runs a case under the case timeout: a hang fails the test.
pub async fn bounded<T>(case: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CASE, f).await.unwrap_or_else(|_| panic!("{case}: the client hung for {CASE:?}"))
}

/// A huge or endless answer was not read whole: the client stopped (capped) well before.
pub fn assert_capped(case: &str, server: &Hostile, before: u64) {
    let read = server.written() - before;
    assert!(read < 64 << 20, "{case}: the client read {read} bytes of a huge answer into memory");
}

pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        seed: Some(7),
        ..RetryPolicy::default()
    }
}
