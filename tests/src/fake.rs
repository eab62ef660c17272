//! An in-memory vendor for engine tests: it stores parts, checks what a strict vendor checks
//! (part digests, part order for sequential vendors, the whole-file SHA-1 at completion), and
//! injects faults: scripted per part and attempt, or random from a seed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use upload_core::hash::{Crc64, hex};
use upload_core::{
    Classify, Created, Digests, DonePart, Hashes, IntegrityError, PartPlan, PartRules, PartUpload, Protocol, ServerPart,
};

/// A failure the fake returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fake vendor answered {status}: {message}")]
pub struct FakeError {
    pub status: u16,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The request was processed before the failure was reported.
    pub took_effect: bool,
}

impl Classify for FakeError {
    fn is_retryable(&self) -> bool {
        upload_core::retry::status_is_retryable(self.status)
    }
    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    fn may_have_taken_effect(&self) -> bool {
        self.took_effect || self.status >= 500
    }
}

/// What the fake does to one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this status without storing.
    Status(u16, Option<Duration>),
    /// Store the part, then answer 500 (the client cannot know it was stored).
    StoreThenFail,
    /// Never answer.
    Stall,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub rules: PartRules,
    pub part_hashes: Hashes,
    pub whole_hashes: Hashes,
    /// Part size the server imposes (Box-like).
    pub server_part_size: Option<u64>,
    /// Keep part bytes (false: keep only their CRC, for very large sources).
    pub store_bytes: bool,
    /// Scripted faults by (part number, attempt).
    pub script: HashMap<(u32, u32), Fault>,
    /// Probability that an attempt fails with a random retryable fault, and the seed.
    pub random_failure: f64,
    pub seed: u64,
    /// Time each part upload takes (half before storing, half after).
    pub part_latency: Duration,
}

impl Config {
    pub fn new(rules: PartRules) -> Self {
        Self {
            rules,
            part_hashes: Hashes::CRC64,
            whole_hashes: Hashes::CRC64,
            server_part_size: None,
            store_bytes: true,
            script: HashMap::new(),
            random_failure: 0.0,
            seed: 1,
            part_latency: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredPart {
    pub len: u64,
    pub crc: Crc64,
    pub sha1: [u8; 20],
    pub bytes: Option<Bytes>,
}

#[derive(Debug, Default)]
pub struct Session {
    pub parts: BTreeMap<u32, StoredPart>,
    pub aborted: bool,
    pub completed: bool,
}

#[derive(Debug, Default)]
pub struct World {
    pub sessions: BTreeMap<String, Session>,
    /// Successful stores per part number (all sessions).
    pub stores: BTreeMap<u32, u32>,
    /// Attempts per part number.
    pub attempts: BTreeMap<u32, u32>,
    /// Part numbers in the order they were stored.
    pub store_order: Vec<u32>,
    pub creates: u32,
    pub lists: u32,
    pub completes: u32,
    pub aborts: u32,
    pub calls: u32,
    pub rng: u64,
    /// Part uploads running now, and the most that ever ran at once.
    pub in_flight: u32,
    pub max_in_flight: u32,
}

/// Counts a part upload as running until dropped.
struct Running(Fake);

impl Running {
    fn start(fake: &Fake) -> Self {
        let mut w = fake.world();
        w.in_flight += 1;
        w.max_in_flight = w.max_in_flight.max(w.in_flight);
        drop(w);
        Running(fake.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.world().in_flight -= 1;
    }
}

/// The finished object.
#[derive(Debug, Clone)]
pub struct Object {
    pub len: u64,
    pub crc64: u64,
    pub bytes: Option<Bytes>,
}

#[derive(Debug, Clone)]
pub struct Fake {
    pub config: Arc<Config>,
    pub world: Arc<Mutex<World>>,
}

impl Fake {
    pub fn new(config: Config) -> Self {
        let seed = config.seed;
        Self { config: Arc::new(config), world: Arc::new(Mutex::new(World { rng: seed, ..World::default() })) }
    }

    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    fn random(&self) -> f64 {
        let mut w = self.world();
        w.rng = w.rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (w.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fail(status: u16, message: &str) -> FakeError {
        FakeError { status, message: message.into(), retry_after: None, took_effect: false }
    }
}

pub type Receipt = String;

impl Protocol for Fake {
    type Session = String;
    type Receipt = Receipt;
    type Output = Object;
    type Error = FakeError;

    fn rules(&self) -> PartRules {
        self.config.rules.clone()
    }

    fn target(&self) -> String {
        "fake://bucket/key".into()
    }

    fn check_session(&self, session: &String, _plan: &PartPlan) -> Result<(), String> {
        // The fake names its sessions `session-N`; anything else is not one of its own.
        if session.starts_with("session-") { Ok(()) } else { Err(format!("a session {session:?} of another vendor")) }
    }

    fn part_hashes(&self) -> Hashes {
        self.config.part_hashes
    }

    fn whole_hashes(&self) -> Hashes {
        self.config.whole_hashes
    }

    async fn create(&self, total_len: Option<u64>, _part_size: u64) -> Result<Created<String>, FakeError> {
        let mut w = self.world();
        w.calls += 1;
        w.creates += 1;
        if self.config.rules.needs_total_len && total_len.is_none() {
            return Err(Self::fail(400, "size required"));
        }
        let id = format!("session-{}", w.creates);
        w.sessions.insert(id.clone(), Session::default());
        Ok(Created { session: id, part_size: self.config.server_part_size })
    }

    async fn upload_part(&self, session: &String, part: PartUpload) -> Result<Receipt, FakeError> {
        let _running = Running::start(self);
        let number = part.spec.number;
        let attempt = {
            let mut w = self.world();
            w.calls += 1;
            let a = w.attempts.entry(number).or_default();
            *a += 1;
            *a
        };
        let mut fault = self.config.script.get(&(number, attempt)).cloned();
        if fault.is_none() && self.config.random_failure > 0.0 && self.random() < self.config.random_failure {
            fault = Some(match (self.random() * 3.0) as u32 {
                0 => Fault::Status(503, None),
                1 => Fault::Status(429, Some(Duration::from_millis(3))),
                _ => Fault::StoreThenFail,
            });
        }
        match fault {
            Some(Fault::Status(status, retry_after)) => {
                return Err(FakeError { status, message: "injected".into(), retry_after, took_effect: false });
            }
            Some(Fault::Stall) => std::future::pending::<()>().await,
            _ => {}
        }
        tokio::time::sleep(self.config.part_latency / 2).await;
        // A strict vendor checks what it can before storing.
        let crc = Crc64::of(&part.body);
        if part.body.len() as u64 != part.spec.len {
            return Err(Self::fail(400, "body length differs from the part"));
        }
        if self.config.part_hashes.contains(Hashes::CRC64) && part.digests.crc64 != Some(crc.crc) {
            return Err(Self::fail(400, "crc64 mismatch"));
        }
        let sha1 = if self.config.part_hashes.contains(Hashes::SHA1) {
            let d = Digests::compute(Hashes::SHA1, &part.body).sha1.unwrap();
            if part.digests.sha1 != Some(d) {
                return Err(Self::fail(400, "digest mismatch"));
            }
            d
        } else {
            [0; 20]
        };
        {
            let mut w = self.world();
            let rules = &self.config.rules;
            let s = w.sessions.get_mut(session).ok_or_else(|| Self::fail(404, "no such session"))?;
            if s.aborted || s.completed {
                return Err(Self::fail(404, "session ended"));
            }
            if rules.sequential {
                let expected = rules.first_part_number + s.parts.len() as u32;
                if number != expected {
                    return Err(Self::fail(416, &format!("expected part {expected}, got {number}")));
                }
            }
            let bytes = self.config.store_bytes.then(|| part.body.clone());
            s.parts.insert(number, StoredPart { len: part.spec.len, crc, sha1, bytes });
            *w.stores.entry(number).or_default() += 1;
            w.store_order.push(number);
        }
        tokio::time::sleep(self.config.part_latency / 2).await;
        if fault == Some(Fault::StoreThenFail) {
            return Err(FakeError {
                status: 500,
                message: "stored, then failed".into(),
                retry_after: None,
                took_effect: true,
            });
        }
        Ok(format!("{:016x}", crc.crc))
    }

    async fn list_parts(&self, session: &String, _plan: &PartPlan) -> Result<Vec<ServerPart<Receipt>>, FakeError> {
        let mut w = self.world();
        w.calls += 1;
        w.lists += 1;
        let s = w.sessions.get(session).ok_or_else(|| Self::fail(404, "no such session"))?;
        if s.aborted || s.completed {
            return Err(Self::fail(404, "session ended"));
        }
        Ok(s.parts
            .iter()
            .map(|(&number, p)| ServerPart {
                number,
                len: p.len,
                digests: Digests {
                    crc64: Some(p.crc.crc),
                    sha1: self.config.part_hashes.contains(Hashes::SHA1).then_some(p.sha1),
                    ..Digests::default()
                },
                receipt: format!("{:016x}", p.crc.crc),
            })
            .collect())
    }

    async fn complete(
        &self,
        session: &String,
        parts: &[DonePart<Receipt>],
        whole: &Digests,
        total_len: u64,
    ) -> Result<Object, FakeError> {
        let mut w = self.world();
        w.calls += 1;
        w.completes += 1;
        let s = w.sessions.get_mut(session).ok_or_else(|| Self::fail(404, "no such session"))?;
        let mut crc = Crc64::default();
        let mut bytes = self.config.store_bytes.then(Vec::new);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 && parts[i - 1].number >= p.number {
                return Err(Self::fail(400, "parts not in ascending order"));
            }
            let stored = s.parts.get(&p.number).ok_or_else(|| Self::fail(400, "part not uploaded"))?;
            if p.receipt != format!("{:016x}", stored.crc.crc) {
                return Err(Self::fail(400, "etag mismatch"));
            }
            crc.append(stored.crc);
            if let (Some(b), Some(sb)) = (&mut bytes, &stored.bytes) {
                b.extend_from_slice(sb);
            }
        }
        if crc.len != total_len {
            return Err(Self::fail(400, "parts do not add up to the declared size"));
        }
        if self.config.whole_hashes.contains(Hashes::SHA1)
            && let Some(b) = &bytes
            && whole.sha1 != Digests::compute(Hashes::SHA1, b).sha1
        {
            return Err(Self::fail(400, "whole-file digest mismatch"));
        }
        s.completed = true;
        Ok(Object { len: crc.len, crc64: crc.crc, bytes: bytes.map(Bytes::from) })
    }

    fn verify(&self, output: &Object, whole: &Digests) -> Result<(), IntegrityError> {
        match whole.crc64 {
            Some(expected) if expected != output.crc64 => Err(IntegrityError {
                what: "CRC-64".into(),
                expected: expected.to_string(),
                actual: output.crc64.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn is_session_gone(&self, error: &FakeError) -> bool {
        error.status == 404
    }

    async fn abort(&self, session: &String) -> Result<(), FakeError> {
        let mut w = self.world();
        w.calls += 1;
        w.aborts += 1;
        let s = w.sessions.get_mut(session).ok_or_else(|| Self::fail(404, "no such session"))?;
        s.aborted = true;
        s.parts.clear();
        Ok(())
    }
}

/// OSS-like rules scaled down: small parts so tests have many of them.
pub fn rules(min_part: u64) -> PartRules {
    PartRules {
        vendor: "Fake",
        min_part_size: min_part,
        max_part_size: 1 << 30,
        part_size_multiple: 1,
        max_parts: 10_000,
        first_part_number: 1,
        default_part_size: min_part,
        min_source_len: 0,
        max_source_len: 1 << 40,
        server_picks_part_size: false,
        needs_total_len: false,
        sequential: false,
    }
}

/// Deterministic bytes that differ at every offset: byte `i` of the source is `pattern(i)`.
pub fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push((x >> 24) as u8);
    }
    v
}

/// Events seen by an observer.
#[derive(Clone, Debug, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<upload_core::Event>>>);

impl Recorder {
    pub fn observer(&self) -> upload_core::Observer {
        let events = self.0.clone();
        Arc::new(move |e: &upload_core::Event| events.lock().unwrap().push(e.clone()))
    }

    pub fn events(&self) -> Vec<upload_core::Event> {
        self.0.lock().unwrap().clone()
    }
}

pub fn hex_sha1(data: &[u8]) -> String {
    hex(&Digests::compute(Hashes::SHA1, data).sha1.unwrap())
}

/// A fast retry policy for tests.
pub fn quick_retry() -> upload_core::RetryPolicy {
    upload_core::RetryPolicy {
        max_attempts: 8,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        seed: Some(42),
        ..upload_core::RetryPolicy::default()
    }
}

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("upload-core-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
