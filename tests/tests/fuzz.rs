//! Fuzzing on stable: every parser that reads what comes off the wire (or off the disk) is fed
//! the committed seeds of `tests/fuzz-corpus/<target>/`, mutated (truncated, bytes flipped, two
//! seeds spliced, huge numbers, deep nesting, long strings, invalid UTF-8, ranges duplicated or
//! dropped), and fully random input. Each call must return (a value or a typed error): never
//! panic, never take more than [`TIME_BUDGET`], never allocate more than [`alloc_budget`] (a
//! counting allocator measures the peak of each call on its thread). The seeds themselves must
//! still be accepted.
//!
//! A short run by default (`cargo test -p tests --test fuzz`); `FUZZ_CASES=N` (or
//! `PROPTEST_CASES=N`) runs N cases per target: `cargo xtask fuzz --cases N`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The longest a single call may take (debug build, two busy cores).
const TIME_BUDGET: Duration = Duration::from_secs(3);

/// The most a call may allocate at its peak: a bounded multiple of its input.
fn alloc_budget(input_len: usize) -> usize {
    64 * input_len + (4 << 20)
}

/// Default number of cases per target; `FUZZ_CASES` or `PROPTEST_CASES` overrides it.
const DEFAULT_CASES: u32 = 512;

fn cases() -> u32 {
    ["FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|s| s.trim().parse().ok()))
        .unwrap_or(DEFAULT_CASES)
}

// ---------------------------------------------------------------------------------------------
// The allocation meter: a global allocator that counts, per thread, the bytes live and their peak.

#[allow(unsafe_code)]
mod meter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn note(delta: isize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| {
                if now > peak.get() {
                    peak.set(now);
                }
            });
        });
    }

    /// Counts every allocation of the test binary on the thread that makes it.
    pub(crate) struct Meter;

    // SAFETY: every call forwards to the system allocator with the caller's arguments; the
    // counting touches only const-initialised thread locals (no allocation, no re-entry).
    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            // SAFETY: forwarded as received.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            // SAFETY: forwarded as received.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            note(-(layout.size() as isize));
            // SAFETY: forwarded as received.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size as isize - layout.size() as isize);
            // SAFETY: forwarded as received.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Runs `f`, returning its peak allocation above what was live before.
    pub(crate) fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let start = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(start));
        let out = f();
        let peak = PEAK.with(Cell::get);
        (out, (peak - start).max(0) as usize)
    }
}

#[global_allocator]
static GLOBAL: meter::Meter = meter::Meter;

// ---------------------------------------------------------------------------------------------
// Corpus and mutations.

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus").join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} has no seed", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Tokens a mutation inserts or substitutes: the inputs parsers get wrong.
fn token() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<&'static [u8]> = vec![
        b"18446744073709551615",
        b"18446744073709551616",
        b"99999999999999999999999999999999999999",
        b"-1",
        b"-0",
        b"1e999",
        b"-9223372036854775809",
        b"4294967296",
        b"0x10",
        b"NaN",
        b"null",
        b"true",
        b"\"\"",
        b"{}",
        b"[]",
        b"\xff\xfe\xc3\x28",
        b"\xed\xa0\x80",
        b"\0",
        b"\\u0000",
        b"\\ud800",
        b"&amp;&lt;&#0;&#x110000;&#99999999999;&unknown;",
        b"<![CDATA[x]]>",
        b"<!DOCTYPE a [<!ENTITY e \"x\">]>",
        b"<?xml version=\"1.0\"?>",
        b"</a>",
        b"%",
        b"%F",
        b"%FF",
        b"%zz",
        b"%00",
        b"%C3%28",
        b"'",
        b"''",
        b"(",
        b")",
        b",",
        b"=",
        b"&",
        b"?",
        b"/",
        b"-",
        b"--",
        b" ",
        b"\r\n",
        b"bytes ",
        b"@a1",
        b"guid'",
    ];
    prop_oneof![
        4 => proptest::sample::select(fixed).prop_map(<[u8]>::to_vec),
        1 => (1usize..20_000, proptest::sample::select(vec![&b"["[..], b"{\"a\":", b"<a>", b"(", b"f(", b"{\"error\":"]))
            .prop_map(|(n, open)| open.repeat(n)),
        1 => (1usize..200_000, any::<u8>()).prop_map(|(n, b)| vec![if b.is_ascii_graphic() { b } else { b'A' }; n]),
        1 => proptest::collection::vec(any::<u8>(), 0..32),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Replace(prop::sample::Index, prop::sample::Index, Vec<u8>),
    Splice(prop::sample::Index, prop::sample::Index, prop::sample::Index),
    Duplicate(prop::sample::Index, prop::sample::Index),
    Drop(prop::sample::Index, prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use prop::sample::Index;
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), token()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        (any::<Index>(), any::<Index>(), token()).prop_map(|(i, j, t)| Mutation::Replace(i, j, t)),
        (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(s, i, j)| Mutation::Splice(s, i, j)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::Duplicate(i, j)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::Drop(i, j)),
    ]
}

fn range(len: usize, a: &prop::sample::Index, b: &prop::sample::Index) -> (usize, usize) {
    let (x, y) = (a.index(len + 1), b.index(len + 1));
    (x.min(y), x.max(y))
}

fn apply(seeds: &[Vec<u8>], base: usize, mutations: &[Mutation]) -> Vec<u8> {
    let mut v = seeds[base].clone();
    for m in mutations {
        match m {
            Mutation::Truncate(i) => v.truncate(i.index(v.len() + 1)),
            Mutation::Flip(i, b) if !v.is_empty() => {
                let at = i.index(v.len());
                v[at] ^= b | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, t) => {
                let at = i.index(v.len() + 1);
                v.splice(at..at, t.iter().copied());
            }
            Mutation::Replace(a, b, t) => {
                let (x, y) = range(v.len(), a, b);
                v.splice(x..y, t.iter().copied());
            }
            Mutation::Splice(s, a, b) => {
                // The head of this input, the tail of another seed.
                let other = &seeds[s.index(seeds.len())];
                v.truncate(a.index(v.len() + 1));
                v.extend_from_slice(&other[b.index(other.len() + 1)..]);
            }
            Mutation::Duplicate(a, b) => {
                let (x, y) = range(v.len(), a, b);
                let copy = v[x..y].to_vec();
                v.splice(y..y, copy);
            }
            Mutation::Drop(a, b) => {
                let (x, y) = range(v.len(), a, b);
                v.drain(x..y);
            }
        }
        if v.len() > 4 << 20 {
            v.truncate(4 << 20);
        }
    }
    v
}

/// Inputs of a target: mostly mutated seeds, some fully random bytes.
fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    prop_oneof![
        6 => (0..n, proptest::collection::vec(mutation(), 0..6)).prop_map(move |(base, ms)| apply(&seeds, base, &ms)),
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        1 => "\\PC{0,200}".prop_map(String::into_bytes),
    ]
}

fn show(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(&input[..input.len().min(600)]).into_owned();
    format!("{} bytes: {text:?}{}", input.len(), if input.len() > 600 { "…" } else { "" })
}

/// Runs one call under the time and allocation budgets.
fn bounded<T>(input: &[u8], f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let started = Instant::now();
    let (out, peak) = meter::peak_of(f);
    let took = started.elapsed();
    if took > TIME_BUDGET {
        return Err(TestCaseError::fail(format!("took {took:?} on {}", show(input))));
    }
    if peak > alloc_budget(input.len()) {
        return Err(TestCaseError::fail(format!("allocated {peak} bytes at peak on {}", show(input))));
    }
    Ok(out)
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: cases(), failure_persistence: None, max_shrink_iters: 2048, ..Config::default() })
}

/// Fuzzes `target` with `run` (which returns whether it accepted the input); the seeds must be
/// accepted.
fn fuzz(target: &str, run: impl Fn(&[u8]) -> bool) {
    let seeds = seeds(target);
    for (i, s) in seeds.iter().enumerate() {
        let accepted = bounded(s, || run(s)).unwrap_or_else(|e| panic!("{target}: seed {i}: {e}"));
        assert!(accepted, "{target}: seed {i} is refused: {}", show(s));
    }
    let started = Instant::now();
    let result = runner().run(&inputs(seeds), |input| bounded(&input, || run(&input)).map(drop));
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
    println!("{target}: {} cases in {:.2?}", cases(), started.elapsed());
}

fn text(input: &[u8]) -> String {
    // What `reqwest::Response::text` makes of a body.
    String::from_utf8_lossy(input).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Response parsers.

#[test]
fn oss_initiate() {
    fuzz("oss-initiate", |b| oss_multipart::fuzzing::initiate(&text(b)).is_ok());
}

#[test]
fn oss_list_parts() {
    fuzz("oss-list-parts", |b| oss_multipart::fuzzing::list_parts(&text(b)).is_ok());
}

#[test]
fn oss_list_uploads() {
    fuzz("oss-list-uploads", |b| oss_multipart::fuzzing::list_uploads(&text(b)).is_ok());
}

#[test]
fn oss_complete() {
    fuzz("oss-complete", |b| oss_multipart::fuzzing::complete(&text(b)).is_some());
}

#[test]
fn oss_error() {
    use base64::Engine as _;
    fuzz("oss-error", |b| {
        let body = text(b);
        let e = oss_multipart::fuzzing::error(404, &[("x-oss-request-id".into(), "r".into())], false, &body);
        // HEAD answers carry the document base64-encoded in `x-oss-err`.
        let header = base64::engine::general_purpose::STANDARD.encode(b);
        let h = oss_multipart::fuzzing::error(404, &[("x-oss-err".into(), header)], true, "");
        let _ = (e.to_string(), h.to_string());
        let parsed = |e: &oss_multipart::Error| matches!(e, oss_multipart::Error::Service(s) if !s.body.code.is_empty() && !s.body.message.as_deref().unwrap_or_default().starts_with("HTTP "));
        parsed(&e) && parsed(&h)
    });
}

#[test]
fn qingstor_initiate() {
    fuzz("qingstor-initiate", |b| qingstor_multipart::fuzzing::initiate(b).is_ok());
}

#[test]
fn qingstor_list_multipart() {
    fuzz("qingstor-list-multipart", |b| qingstor_multipart::fuzzing::list_multipart(b).is_ok());
}

#[test]
fn qingstor_list_uploads() {
    fuzz("qingstor-list-uploads", |b| qingstor_multipart::fuzzing::list_uploads(b).is_ok());
}

#[test]
fn qingstor_error() {
    fuzz("qingstor-error", |b| {
        let e = qingstor_multipart::fuzzing::error(404, &[("x-qs-request-id".into(), "r".into())], b);
        let _ = e.to_string();
        matches!(&e, qingstor_multipart::Error::Service(s) if !s.body.message.as_deref().unwrap_or_default().starts_with("HTTP "))
    });
}

#[test]
fn box_upload_session() {
    fuzz("box-upload-session", |b| box_chunked::fuzzing::upload_session(b).is_ok());
}

#[test]
fn box_parts() {
    fuzz("box-parts", |b| box_chunked::fuzzing::parts(b).is_ok() || box_chunked::fuzzing::uploaded_part(b).is_ok());
}

#[test]
fn box_commit() {
    fuzz("box-commit", |b| box_chunked::fuzzing::commit(b).is_ok() && box_chunked::fuzzing::file(b).is_err());
}

#[test]
fn box_error() {
    fuzz("box-error", |b| {
        let (e, part, items) = box_chunked::fuzzing::error(409, &[("box-request-id".into(), "r".into())], b);
        let _ = e.to_string();
        let is_doc = matches!(&e, box_chunked::Error::Service(s) if !s.body.message.as_deref().unwrap_or_default().starts_with("HTTP "));
        is_doc && (part.is_some() || !items.is_empty() || !text(b).contains("context_info"))
    });
}

#[test]
fn box_token() {
    fuzz("box-token", |b| {
        let ok = box_chunked::fuzzing::token(200, b);
        let refused = box_chunked::fuzzing::token(400, b);
        let described = matches!(&refused, Err(box_chunked::Error::Auth { detail, .. }) if !detail.ends_with("from the token endpoint"));
        ok.is_ok() || described
    });
}

#[test]
fn graph_upload_session() {
    fuzz("graph-upload-session", |b| {
        let Ok(s) = sharepoint_resumable::fuzzing::upload_session(b) else { return false };
        let fragment = sharepoint_resumable::fuzzing::last_fragment(b);
        // The first byte expected, for totals at and past the edges.
        let mut all = true;
        for total in [0, 1, 128, u64::MAX] {
            all &= sharepoint_resumable::fuzzing::next_expected(&s, total).is_some();
        }
        fragment.is_ok() && all
    });
}

#[test]
fn graph_drive_item() {
    fuzz("graph-drive-item", |b| {
        sharepoint_resumable::fuzzing::drive_item(b).is_ok() && sharepoint_resumable::fuzzing::last_fragment(b).is_ok()
    });
}

#[test]
fn graph_error() {
    fuzz("graph-error", |b| {
        let e = sharepoint_resumable::fuzzing::graph_error(429, b);
        if let Some(e) = &e {
            let _ = e.to_string();
        }
        e.is_some()
    });
}

#[test]
fn graph_token() {
    fuzz("graph-token", |b| {
        let ok = sharepoint_resumable::fuzzing::token(200, b);
        let refused = sharepoint_resumable::fuzzing::token(401, b);
        let described = matches!(&refused, Err(sharepoint_resumable::Error::Auth { detail, .. }) if !detail.ends_with("from the token endpoint"));
        ok.is_ok() || described
    });
}

#[test]
fn sharepoint_rest_file() {
    fuzz("sharepoint-rest-file", |b| {
        let mut ok = true;
        for method in ["FinishUpload", "AddUsingPath", "add", "GetFileByServerRelativePath"] {
            ok &= sharepoint_resumable::fuzzing::rest_file(method, b).is_ok_and(|f| f.len().is_some());
        }
        ok
    });
}

#[test]
fn sharepoint_rest_offset() {
    fuzz("sharepoint-rest-offset", |b| {
        // The method names the scalar in the verbose flavour (`{"d":{"StartUpload":"…"}}`).
        let start = sharepoint_resumable::fuzzing::rest_offset("StartUpload", b).is_ok();
        let next = sharepoint_resumable::fuzzing::rest_offset("ContinueUpload", b).is_ok();
        start || next
    });
}

#[test]
fn sharepoint_rest_status() {
    fuzz("sharepoint-rest-status", |b| {
        sharepoint_resumable::fuzzing::rest_upload_status(b).is_ok_and(|(_, held)| held.is_some())
    });
}

#[test]
fn sharepoint_rest_contextinfo() {
    fuzz("sharepoint-rest-contextinfo", |b| {
        sharepoint_resumable::fuzzing::rest_context_info(b).is_ok_and(|c| c.form_digest_value.is_some())
    });
}

#[test]
fn sharepoint_rest_error() {
    fuzz("sharepoint-rest-error", |b| {
        let e = sharepoint_resumable::fuzzing::rest_error(423, b);
        if let Some(e) = &e {
            let _ = e.to_string();
        }
        e.is_some()
    });
}

// ---------------------------------------------------------------------------------------------
// Headers and URLs.

#[test]
fn retry_after() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fuzz("retry-after", |b| {
        let v = text(b);
        let core = upload_core::retry::parse_retry_after(&v, now);
        let late =
            upload_core::retry::parse_retry_after(&v, SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX.into()));
        let early = upload_core::retry::parse_retry_after(&v, SystemTime::UNIX_EPOCH);
        let graph = sharepoint_resumable::fuzzing::retry_after(&v);
        let headers = [("retry-after".to_owned(), v.clone())];
        let _ = oss_multipart::fuzzing::error(503, &headers, false, "");
        let _ = qingstor_multipart::fuzzing::error(503, &headers, b"");
        let _ = box_chunked::fuzzing::error(429, &headers, b"");
        let _ = (late, early);
        core.is_some() || graph.is_some()
    });
}

#[test]
fn content_range() {
    fuzz("content-range", |b| box_chunked::fuzzing::emulator_content_range(&text(b)).is_some());
}

#[test]
fn url_query() {
    fuzz("url-query", |b| {
        let v = text(b);
        let lossy = upload_core::emulator::decode(&v);
        let strict = upload_core::emulator::decode_strict(&v);
        let pairs = upload_core::emulator::parse_query(&v);
        let _ = (lossy, strict);
        !pairs.is_empty()
    });
}

// ---------------------------------------------------------------------------------------------
// Checkpoints: `checkpoint::load` of arbitrary file contents, and each vendor's state type.

fn scratch_file(bytes: &[u8]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("cloud-upload-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("state-{}.json", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn checkpoint<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> bool {
    let path = scratch_file(bytes);
    let loaded = upload_core::checkpoint::load::<T>(&path);
    let _ = std::fs::remove_file(&path);
    if let Err(e) = &loaded {
        let _ = e.to_string();
    }
    let direct = serde_json::from_slice::<T>(bytes);
    loaded.is_ok() && direct.is_ok()
}

#[test]
fn checkpoint_oss() {
    fuzz("checkpoint-oss", checkpoint::<oss_multipart::OssUploadState>);
}

#[test]
fn checkpoint_qingstor() {
    fuzz("checkpoint-qingstor", checkpoint::<qingstor_multipart::QingStorUploadState>);
}

#[test]
fn checkpoint_box() {
    fuzz("checkpoint-box", checkpoint::<box_chunked::BoxUploadState>);
}

#[test]
fn checkpoint_graph() {
    fuzz("checkpoint-graph", checkpoint::<sharepoint_resumable::GraphUploadState>);
}

#[test]
fn checkpoint_rest() {
    fuzz("checkpoint-rest", checkpoint::<sharepoint_resumable::RestUploadState>);
}

// ---------------------------------------------------------------------------------------------
// The emulators' request parsing, through raw HTTP to in-process emulators.

struct Emulators {
    _runtime: tokio::runtime::Runtime,
    _oss: oss_multipart::emulator::Emulator,
    _qingstor: qingstor_multipart::emulator::Emulator,
    _box: box_chunked::emulator::Emulator,
    _graph: sharepoint_resumable::emulator::Emulator,
    oss: SocketAddr,
    qingstor: SocketAddr,
    box_api: SocketAddr,
    box_upload: SocketAddr,
    graph: SocketAddr,
    graph_upload: SocketAddr,
    sharepoint: SocketAddr,
    box_token: String,
    graph_token: String,
    /// A live Graph upload session's path (`/up/…`), for `Content-Range` on the emulator side.
    graph_session: String,
}

/// Panics on the emulators' threads (a handler's panic only drops its connection).
static EMULATOR_PANICS: AtomicUsize = AtomicUsize::new(0);
const EMULATOR_THREAD: &str = "fuzz-emulator";

fn addr_of(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("http://").unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

fn emulators() -> &'static Emulators {
    static E: OnceLock<Emulators> = OnceLock::new();
    E.get_or_init(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name().is_some_and(|n| n.starts_with(EMULATOR_THREAD)) {
                EMULATOR_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default_hook(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(EMULATOR_THREAD)
            .enable_all()
            .build()
            .unwrap();
        let (oss, qingstor, bx, graph) = runtime.block_on(async {
            (
                oss_multipart::emulator::Emulator::start(Default::default()).await.unwrap(),
                qingstor_multipart::emulator::Emulator::start(Default::default()).await.unwrap(),
                box_chunked::emulator::Emulator::start(Default::default()).await.unwrap(),
                sharepoint_resumable::emulator::Emulator::start(Default::default()).await.unwrap(),
            )
        });
        let graph_addr = addr_of(&graph.graph_url());
        let graph_token = graph.token();
        // One live session of 1 GiB for the fragments' Content-Range.
        let body = br#"{"item":{"@microsoft.graph.conflictBehavior":"replace"}}"#;
        let head = format!(
            "POST /v1.0/drives/drive-1/root:/fuzz.bin:/createUploadSession HTTP/1.1\r\nhost: {graph_addr}\r\nauthorization: Bearer {graph_token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let answer = http(graph_addr, &[head.as_bytes(), body].concat(), false).unwrap_or_default();
        let answer = String::from_utf8_lossy(&answer);
        let graph_session = answer
            .split("\"uploadUrl\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|u| u.find('/').map(|i| u[i..].to_owned()))
            .unwrap_or_else(|| "/up/none".to_owned());
        Emulators {
            oss: oss.addr(),
            qingstor: qingstor.addr(),
            box_api: addr_of(&bx.api_url()),
            box_upload: bx.upload_addr(),
            graph: graph_addr,
            graph_upload: graph.upload_addr(),
            sharepoint: addr_of(&graph.sharepoint_url()),
            box_token: bx.token(),
            graph_token,
            graph_session,
            _runtime: runtime,
            _oss: oss,
            _qingstor: qingstor,
            _box: bx,
            _graph: graph,
        }
    })
}

/// Sends `request` and reads the answer to the end. `raw`: the request may be anything, so the
/// write side is closed after it (the server sees the end at once).
fn http(addr: SocketAddr, request: &[u8], raw: bool) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
    // A server may answer (and close) before reading a whole body: a failed write is no error.
    let _ = stream.write_all(request);
    if raw {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Some(answer)
}

/// A seed file is a request head (`METHOD target HTTP/1.1`, headers) and a body; the
/// well-formed request made of a (mutated) one: method and header names reduced to token
/// characters, other bytes of the target percent-encoded, `Host`, `Content-Length` and
/// `Connection: close` set.
fn well_formed(input: &[u8], host: SocketAddr, extra: &[(&str, &str)]) -> Vec<u8> {
    let (head, body) = match input.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&input[..i], &input[i + 4..]),
        None => (input, &b""[..]),
    };
    let mut lines = head.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut words = first.splitn(3, |b| *b == b' ');
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    let method: Vec<u8> = words.next().unwrap_or_default().iter().copied().filter(token).collect();
    let method = if method.is_empty() { b"GET".to_vec() } else { method };
    let mut target = Vec::new();
    for &b in words.next().unwrap_or_default() {
        if (0x21..0x7f).contains(&b) && !b"\"<>\\^`{|}".contains(&b) {
            target.push(b);
        } else {
            target.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    if target.first() != Some(&b'/') {
        target.insert(0, b'/');
    }
    let mut out = Vec::new();
    out.extend_from_slice(&method);
    out.push(b' ');
    out.extend_from_slice(&target);
    out.extend_from_slice(format!(" HTTP/1.1\r\nhost: {host}\r\n").as_bytes());
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let name: Vec<u8> = line[..colon].iter().copied().filter(token).collect();
        let lower = String::from_utf8_lossy(&name).to_ascii_lowercase();
        if name.is_empty()
            || ["host", "content-length", "connection", "transfer-encoding", "expect"].contains(&lower.as_str())
        {
            continue;
        }
        let value: Vec<u8> = line[colon + 1..]
            .iter()
            .copied()
            .filter(|b| *b == b'\t' || (0x20..0x7f).contains(b) || *b >= 0x80)
            .collect();
        out.extend_from_slice(&name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    for (n, v) in extra {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// Sends a (mutated) seed to `addr` twice: well formed (an HTTP answer must come back) and as
/// raw bytes (anything may come back); no emulator thread may panic. Returns whether the
/// well-formed request got an answer of `2xx`.
fn emulator_request(addr: SocketAddr, input: &[u8], extra: &[(&str, &str)]) -> bool {
    let before = EMULATOR_PANICS.load(Ordering::SeqCst);
    let answer = http(addr, &well_formed(input, addr, extra), false).unwrap_or_default();
    let _ = http(addr, input, true);
    let panics = EMULATOR_PANICS.load(Ordering::SeqCst) - before;
    assert_eq!(panics, 0, "an emulator panicked on {}", show(input));
    assert!(answer.starts_with(b"HTTP/1.1 "), "no HTTP answer to {}", show(input));
    // An answer at all is what a valid seed gets (most are refused: signatures are made up).
    true
}

#[test]
fn emulator_oss() {
    let e = emulators();
    fuzz("emulator-oss", |b| emulator_request(e.oss, b, &[]));
}

#[test]
fn emulator_qingstor() {
    let e = emulators();
    fuzz("emulator-qingstor", |b| emulator_request(e.qingstor, b, &[]));
}

#[test]
fn emulator_box() {
    let e = emulators();
    let auth = format!("Bearer {}", e.box_token);
    fuzz("emulator-box", |b| {
        emulator_request(e.box_api, b, &[("authorization", &auth)])
            && emulator_request(e.box_upload, b, &[("authorization", &auth)])
    });
}

#[test]
fn emulator_graph() {
    let e = emulators();
    let auth = format!("Bearer {}", e.graph_token);
    fuzz("emulator-graph", |b| {
        emulator_request(e.graph, b, &[("authorization", &auth)]) && emulator_request(e.graph_upload, b, &[])
    });
}

#[test]
fn emulator_sharepoint_rest() {
    let e = emulators();
    fuzz("emulator-sharepoint-rest", |b| emulator_request(e.sharepoint, b, &[]));
}

#[test]
fn emulator_content_range() {
    // The Graph emulator's Content-Range, on a live session (its parser is private to the
    // emulator: reached through a fragment PUT).
    let e = emulators();
    fuzz("content-range", |b| {
        let mut request = format!("PUT {} HTTP/1.1\r\ncontent-range: ", e.graph_session).into_bytes();
        request.extend(b.iter().copied().filter(|c| *c != b'\r' && *c != b'\n'));
        request.extend_from_slice(b"\r\n\r\nhello");
        emulator_request(e.graph_upload, &request, &[])
    });
}

// ---------------------------------------------------------------------------------------------
// Signature verification in the emulators: random headers and queries get a typed refusal.

/// Names a signature check reads, and values that look almost right.
fn auth_entry() -> impl Strategy<Value = (String, String)> {
    let names = vec![
        "authorization",
        "Authorization",
        "date",
        "x-oss-date",
        "x-oss-content-sha256",
        "x-oss-security-token",
        "x-qs-date",
        "content-md5",
        "content-type",
        "x-oss-signature-version",
        "x-oss-credential",
        "x-oss-expires",
        "x-oss-signature",
        "x-oss-additional-headers",
        "OSSAccessKeyId",
        "Expires",
        "Signature",
        "access_key_id",
        "expires",
        "signature",
        "uploadId",
        "partNumber",
    ];
    let values = prop_oneof![
        Just(String::new()),
        Just("OSS4-HMAC-SHA256 Credential=emulator-access-key/20240101/cn-hangzhou/oss/aliyun_v4_request,AdditionalHeaders=host;x-oss-date,Signature=00".to_owned()),
        Just("OSS4-HMAC-SHA256 Credential=/,,,=,Signature".to_owned()),
        Just("OSS4-HMAC-SHA256 ".to_owned()),
        Just("OSS emulator-access-key:".to_owned()),
        Just("OSS :".to_owned()),
        Just("QS emulator-access-key:".to_owned()),
        Just("QS :::".to_owned()),
        Just("OSS4-HMAC-SHA256".to_owned()),
        Just("emulator-access-key/99999999/cn-hangzhou/oss/aliyun_v4_request".to_owned()),
        Just("20240101T000000Z".to_owned()),
        Just("99999999T999999Z".to_owned()),
        Just("Wed, 21 Oct 2015 07:28:00 GMT".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("18446744073709551616".to_owned()),
        "\\PC{0,80}",
        "[a-zA-Z0-9/=+;:, -]{0,120}",
    ];
    (proptest::sample::select(names).prop_map(str::to_owned), values)
}

#[derive(Clone, Debug)]
enum Tamper {
    /// Sets header or query entry (by index) to a value.
    Set(bool, prop::sample::Index, String),
    /// Removes a header or query entry.
    Remove(bool, prop::sample::Index),
    /// Adds a header or query entry.
    Add(bool, (String, String)),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<bool>(), any::<prop::sample::Index>(), auth_entry()).prop_map(|(h, i, (_, v))| Tamper::Set(h, i, v)),
        (any::<bool>(), any::<prop::sample::Index>()).prop_map(|(h, i)| Tamper::Remove(h, i)),
        (any::<bool>(), auth_entry()).prop_map(|(h, e)| Tamper::Add(h, e)),
    ]
}

fn tampered(
    mut headers: Vec<(String, String)>,
    mut query: Vec<(String, String)>,
    ts: &[Tamper],
) -> [Vec<(String, String)>; 2] {
    for t in ts {
        match t {
            Tamper::Set(h, i, v) => {
                let list = if *h { &mut headers } else { &mut query };
                if !list.is_empty() {
                    let at = i.index(list.len());
                    list[at].1 = v.clone();
                }
            }
            Tamper::Remove(h, i) => {
                let list = if *h { &mut headers } else { &mut query };
                if !list.is_empty() {
                    list.remove(i.index(list.len()));
                }
            }
            Tamper::Add(h, e) => (if *h { &mut headers } else { &mut query }).push(e.clone()),
        }
    }
    [headers, query]
}

const AK: &str = "emulator-access-key";
const SK: &str = "emulator-secret-key";

fn oss_signed(now: SystemTime) -> Vec<oss_multipart::signing::SignableRequest> {
    use oss_multipart::signing::{SignableRequest, v1, v4};
    let creds = oss_multipart::Credentials::new(AK, SK);
    let unix = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let date = chrono::DateTime::<chrono::Utc>::from(now).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let base = || {
        SignableRequest::new("PUT", Some("bucket"), Some("dir/big file.bin"))
            .query("partNumber", "1")
            .query("uploadId", "0004B9894A22E5B1888A1E29F8236E2D")
            .header("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg==")
    };
    let mut out = Vec::new();
    let mut r = base().header("Date", &date);
    let a = v1::authorization(&creds, &r).unwrap();
    r.headers.push(("Authorization".into(), a));
    out.push(r);
    let mut r =
        base().header("x-oss-date", &v4::format_datetime(unix)).header("x-oss-content-sha256", v4::UNSIGNED_PAYLOAD);
    let a = v4::authorization(&creds, &r, "cn-hangzhou", &[]).unwrap();
    r.headers.push(("Authorization".into(), a));
    out.push(r);
    let mut r = base();
    let q = v1::presign(&creds, &r, unix + 600);
    r.query.extend(q);
    out.push(r);
    let mut r = base();
    let q = v4::presign(&creds, &r, "cn-hangzhou", &v4::format_datetime(unix), 600, &[]).unwrap();
    r.query.extend(q);
    out.push(r);
    out
}

#[test]
fn oss_signature_verification() {
    let keys = vec![(AK.to_owned(), SK.to_owned())];
    let now = SystemTime::now();
    let signed = oss_signed(now);
    for (i, r) in signed.iter().enumerate() {
        let v = oss_multipart::fuzzing::verify_signature(r, &keys, "cn-hangzhou", now);
        assert_eq!(v, Ok(AK.to_owned()), "valid OSS request {i} refused: {r:?}");
    }
    let n = signed.len();
    let strategy = (0..n, proptest::collection::vec(tamper(), 0..5));
    runner()
        .run(&strategy, |(i, ts)| {
            let mut r = signed[i].clone();
            [r.headers, r.query] = tampered(r.headers, r.query, &ts);
            let input = format!("{r:?}");
            let v =
                bounded(input.as_bytes(), || oss_multipart::fuzzing::verify_signature(&r, &keys, "cn-hangzhou", now))?;
            match v {
                Ok(ak) => prop_assert_eq!(ak, AK),
                Err((status, code)) => {
                    prop_assert!((400..500).contains(&status) && !code.is_empty(), "{status} {code} for {input}");
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("OSS signature check: {e}"));
}

fn qingstor_signed(now: SystemTime) -> Vec<qingstor_multipart::signing::SignableRequest> {
    use qingstor_multipart::signing::{self, SignableRequest};
    let creds = qingstor_multipart::Credentials::new(AK, SK);
    let unix = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let date = chrono::DateTime::<chrono::Utc>::from(now).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let base = || {
        SignableRequest::new("PUT", "/bucket/music%20file.mp3")
            .query("part_number", "0")
            .query("upload_id", "9d37dd6ccee643075ca4e597ad65655c")
            .header("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg==")
    };
    let mut r = base().header("Date", &date);
    let a = signing::authorization(&creds, &r);
    r.headers.push(("Authorization".into(), a));
    let mut p = base();
    let q = signing::presign(&creds, &p, unix + 600);
    p.query.extend(q);
    vec![r, p]
}

#[test]
fn qingstor_signature_verification() {
    let keys = vec![(AK.to_owned(), SK.to_owned())];
    let now = SystemTime::now();
    let signed = qingstor_signed(now);
    for (i, r) in signed.iter().enumerate() {
        let v = qingstor_multipart::fuzzing::verify_signature(r, &keys, now, true);
        assert_eq!(v, Ok(AK.to_owned()), "valid QingStor request {i} refused: {r:?}");
    }
    let n = signed.len();
    let strategy = (0..n, proptest::collection::vec(tamper(), 0..5), any::<bool>());
    runner()
        .run(&strategy, |(i, ts, check_time)| {
            let mut r = signed[i].clone();
            [r.headers, r.query] = tampered(r.headers, r.query, &ts);
            let input = format!("{r:?}");
            let v = bounded(input.as_bytes(), || {
                qingstor_multipart::fuzzing::verify_signature(&r, &keys, now, check_time)
            })?;
            match v {
                Ok(ak) => prop_assert_eq!(ak, AK),
                Err((status, code)) => {
                    prop_assert!((400..500).contains(&status) && !code.is_empty(), "{status} {code} for {input}");
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("QingStor signature check: {e}"));
}

#[test]
fn box_emulator_routes() {
    // Route parsing of the Box emulator on each host, on paths made of its own pieces.
    let pieces = vec![
        "/",
        "api",
        "2.0",
        "files",
        "upload_sessions",
        "commit",
        "parts",
        "log",
        "content",
        "oauth2",
        "token",
        "S1",
        "",
        "..",
        "%2F",
        "\u{0}",
        "é",
    ];
    let strategy = (
        proptest::sample::select(vec!["GET", "PUT", "POST", "DELETE", "HEAD", "", "get"]),
        proptest::collection::vec(proptest::sample::select(pieces), 0..10),
        "\\PC{0,20}",
    );
    runner()
        .run(&strategy, |(method, pieces, tail)| {
            let path = format!("{}{tail}", pieces.join("/"));
            let routes = bounded(path.as_bytes(), || box_chunked::fuzzing::emulator_route(method, &path))?;
            let _ = routes;
            Ok(())
        })
        .unwrap();
    let [api, upload, _] = box_chunked::fuzzing::emulator_route("POST", "/api/2.0/files/upload_sessions");
    assert!(api.is_none() && upload.is_some());
}
