//! Fault soak: for every vendor, a seeded loop of uploads of random sizes through the emulator
//! with a random mix of injected faults (resets mid-body, stalls past the part timeout, 5xx,
//! 429 with `Retry-After`, lost answers, partial stores, errors after storing).
//!
//! Every upload must end either verified (the stored bytes are the source's) or with a typed
//! error and a resumable checkpoint, which is then resumed until it is verified; never with a
//! wrong object, never hanging (each run is under a timeout).
//!
//! * `SOAK_SEED=<n>` replays a run (the seed is printed at the start and in every failure);
//! * `SOAK_UPLOADS=<n>` sets the uploads per vendor (default 10);
//! * `SOAK_RATE=<p>` sets the chance of a fault per part and per call (default 0.3).
//!
//! Not covered here, because the emulators cannot inject them: truncated or malformed answer
//! bodies (see `hostile.rs`, which scripts them), clock skew between client and server, and
//! faults in the middle of an answer body (the emulators answer whole or not at all).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tests::fake::{pattern, temp_dir};
use upload_core::emulator::{Fault, FaultAction};
use upload_core::{PartSize, Protocol, RetryPolicy, Upload, UploadError, UploadOptions};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Longest time one run of one upload may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(45);

/// Attempts per call in the faulty run: low, so that some uploads give up and are resumed.
const FIRST_ATTEMPTS: u32 = 4;

/// SplitMix64: small, seedable, the same on every platform.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The run's seed: `SOAK_SEED`, or the clock's.
fn master_seed() -> u64 {
    env_u64("SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

fn uploads_per_vendor() -> usize {
    env_u64("SOAK_UPLOADS").map_or(10, |n| n.max(1) as usize)
}

fn rate() -> f64 {
    std::env::var("SOAK_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(0.3)
}

/// The seed of one vendor's loop, derived from the run's seed.
fn vendor_seed(seed: u64, vendor: &str) -> u64 {
    vendor.bytes().fold(seed ^ 0xA076_1D64_78BD_642F, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3))
}

/// How one vendor's emulator names its calls, and which faults it can inject.
struct Ops<Op> {
    /// The calls that carry part bytes (SharePoint REST: StartUpload, ContinueUpload, FinishUpload).
    part: Vec<Op>,
    /// Part numbers of the fault filter for a given part index (`None`: the vendor's parts go
    /// strictly in order, so the next part request is the one to hit).
    part_number: fn(u32) -> Option<u32>,
    create: Op,
    complete: Op,
    list: Option<Op>,
    code_5xx: &'static str,
    code_503: &'static str,
    code_429: &'static str,
    /// Whether the vendor's sessions track bytes, so that a server may keep part of a body.
    partial: bool,
    /// A stall: longer than the part timeout.
    stall: Duration,
    /// Whether the create call's answer may be lost. Not for Graph: its emulator refuses a
    /// second session for a path while one is open (409 nameAlreadyExists), and the lost answer
    /// held the only handle on the first one, so the path stays blocked until that session
    /// expires (reported as a finding, not a fault the client can recover from).
    lose_create: bool,
}

/// A random set of faults for an upload of `parts` parts of `part_len` bytes.
fn plan_faults<Op: Copy>(rng: &mut Rng, ops: &Ops<Op>, parts: u32, part_len: usize, rate: f64) -> Vec<Fault<Op>> {
    let mut faults = Vec::new();
    let error = |status: u16, code: &str, retry_after| FaultAction::Error { status, code: code.into(), retry_after };
    // Now and then a part fails every attempt of the first run: a typed error, then a resume.
    if rng.chance(0.2) {
        let index = rng.below(u64::from(parts)) as u32;
        faults.push(Fault {
            operation: Some(ops.part[0]),
            part_number: (ops.part_number)(index),
            times: FIRST_ATTEMPTS,
            action: error(503, ops.code_503, None),
        });
    }
    for index in 0..parts {
        if !rng.chance(rate) {
            continue;
        }
        let kinds = if ops.partial { 7 } else { 6 };
        let action = match rng.below(kinds) {
            0 => FaultAction::ResetMidBody { after: rng.below(part_len as u64) as usize },
            1 => FaultAction::Delay(ops.stall),
            2 => error([500, 502, 503][rng.below(3) as usize], ops.code_5xx, None),
            3 if rng.chance(0.4) => error(429, ops.code_429, Some(1)),
            3 => error(503, ops.code_503, None),
            4 => FaultAction::LoseResponse,
            5 => FaultAction::ErrorAfter { status: 500, code: ops.code_5xx.into() },
            _ => FaultAction::PartialThenError {
                keep: rng.below(part_len as u64) as usize,
                status: 500,
                code: ops.code_5xx.into(),
            },
        };
        let operation = ops.part[rng.below(ops.part.len() as u64) as usize];
        let part_number = if rng.chance(0.5) { (ops.part_number)(index) } else { None };
        faults.push(Fault { operation: Some(operation), part_number, times: 1, action });
    }
    let short = Duration::from_millis(100);
    if rng.chance(rate / 2.0) {
        let action = match rng.below(4) {
            0 => error(503, ops.code_503, None),
            1 => error(429, ops.code_429, Some(1)),
            2 if ops.lose_create => FaultAction::LoseResponse,
            _ => FaultAction::Delay(short),
        };
        faults.push(Fault { operation: Some(ops.create), part_number: None, times: 1, action });
    }
    if rng.chance(rate / 2.0) {
        let action = match rng.below(4) {
            0 => error(500, ops.code_5xx, None),
            1 => FaultAction::LoseResponse,
            2 => FaultAction::ErrorAfter { status: 500, code: ops.code_5xx.into() },
            _ => FaultAction::Delay(short),
        };
        faults.push(Fault { operation: Some(ops.complete), part_number: None, times: 1, action });
    }
    if let Some(list) = ops.list
        && rng.chance(rate / 2.0)
    {
        let action = if rng.chance(0.5) { error(503, ops.code_503, None) } else { FaultAction::LoseResponse };
        faults.push(Fault { operation: Some(list), part_number: None, times: 1, action });
    }
    faults
}

/// The options of a run: small backoff, a small part timeout, a checkpoint file.
fn options(
    part_size: PartSize,
    concurrency: usize,
    attempts: u32,
    seed: u64,
    timeout: Duration,
    ckpt: &Path,
) -> UploadOptions {
    UploadOptions {
        part_size,
        concurrency,
        retry: RetryPolicy {
            max_attempts: attempts,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            seed: Some(seed),
            ..RetryPolicy::default()
        },
        part_timeout: Some(timeout),
        checkpoint: Some(ckpt.to_path_buf()),
        checkpoint_interval: Duration::from_millis(50),
        ..UploadOptions::default()
    }
}

/// What one upload of the loop is, for failure messages.
struct Case<'a> {
    label: String,
    /// The vendor makes the file, empty, before the bytes come (SharePoint REST: `Files/add`,
    /// then `StartUpload`): an empty object between the runs is its placeholder.
    placeholder: bool,
    data: &'a Bytes,
    checkpoint: PathBuf,
    faults: String,
}

impl Case<'_> {
    fn fail(&self, what: &str) -> ! {
        panic!("{}: {what}\n  replay with SOAK_SEED={} (faults: {})", self.label, replay(), self.faults)
    }

    /// Whatever the server holds under the name is the source or nothing.
    fn check_no_wrong_object(&self, stored: Option<Bytes>) {
        if let Some(stored) = stored
            && stored != *self.data
            && !(self.placeholder && stored.is_empty())
        {
            self.fail(&format!(
                "a wrong object was stored: {} bytes, not the source's {}",
                stored.len(),
                self.data.len()
            ));
        }
    }
}

/// How an upload ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Verified at the first run.
    Verified,
    /// A typed error, then verified after this many resumes.
    Resumed(u32),
}

/// Runs one upload with faults on, then (after a typed error) resumes it until it is verified.
/// `make` builds the upload for the options (from the checkpoint file when there is one);
/// `stored` reads what the server holds under the upload's name.
async fn soak_one<P, M, S>(case: &Case<'_>, first: UploadOptions, again: UploadOptions, make: M, stored: S) -> Ended
where
    P: Protocol,
    M: Fn(UploadOptions) -> Result<Upload<P>, UploadError<P::Error>>,
    S: Fn() -> Option<Bytes>,
{
    let run = |options: UploadOptions| {
        let made = make(options);
        async move {
            let mut upload = match made {
                Ok(u) => u,
                Err(e) => return Err(e),
            };
            upload.run().await.map(drop)
        }
    };
    let verify = |when: &str| {
        match stored() {
            Some(s) if s == *case.data => {}
            Some(s) => {
                case.fail(&format!("{when}: the stored object has {} bytes and differs from the source", s.len()))
            }
            None => case.fail(&format!("{when}: the upload reported success and nothing is stored")),
        }
        if case.checkpoint.exists() {
            case.fail(&format!("{when}: the checkpoint file is still there after success"));
        }
    };
    // A typed error that leaves something to resume, or a failure of the test.
    let judge = |when: &str, e: &UploadError<P::Error>| {
        eprintln!("{}: {when} stopped: {e}", case.label);
        let needs_checkpoint = match e {
            UploadError::Vendor { operation, .. } => *operation != upload_core::Operation::Create,
            UploadError::PartTimeout { .. } => true,
            other => case.fail(&format!("{when}: an error that is not a vendor failure or a part timeout: {other}")),
        };
        if needs_checkpoint && !case.checkpoint.exists() {
            case.fail(&format!("{when}: {e}, and no checkpoint to resume from"));
        }
        case.check_no_wrong_object(stored());
    };
    match tokio::time::timeout(HANG, run(first)).await {
        Err(_) => case.fail(&format!("the faulty run hung for {HANG:?}")),
        Ok(Ok(())) => {
            verify("faulty run");
            return Ended::Verified;
        }
        Ok(Err(e)) => judge("faulty run", &e),
    }
    // Faults not spent yet are still armed: each resume spends some; a handful gets through.
    for round in 1..=4 {
        match tokio::time::timeout(HANG, run(again.clone())).await {
            Err(_) => case.fail(&format!("resume {round} hung for {HANG:?}")),
            Ok(Ok(())) => {
                verify(&format!("resume {round}"));
                return Ended::Resumed(round);
            }
            Ok(Err(e)) => judge(&format!("resume {round}"), &e),
        }
    }
    case.fail("still not uploaded after 4 resumes")
}

/// The loop of one vendor: sizes, faults, and the tally printed at the end.
struct Loop {
    vendor: &'static str,
    rng: Rng,
    dir: PathBuf,
    started: Instant,
    tally: Vec<Ended>,
}

impl Loop {
    fn new(vendor: &'static str) -> Self {
        let seed = master_seed();
        // Every test of this file derives the same seed; the first one keeps it for messages.
        let seed = *SEED.get_or_init(|| seed);
        eprintln!("soak {vendor}: SOAK_SEED={seed} uploads={} rate={}", uploads_per_vendor(), rate());
        Self {
            vendor,
            rng: Rng(vendor_seed(seed, vendor)),
            dir: temp_dir(&format!("soak-{vendor}")),
            started: Instant::now(),
            tally: Vec::new(),
        }
    }

    fn case<'a>(&self, i: usize, data: &'a Bytes, faults: &str) -> Case<'a> {
        Case {
            label: format!("soak {} upload {i} ({} bytes)", self.vendor, data.len()),
            data,
            placeholder: self.vendor == "sharepoint-rest",
            checkpoint: self.dir.join(format!("upload-{i}.json")),
            faults: faults.to_owned(),
        }
    }

    fn finish(self) {
        let resumed = self.tally.iter().filter(|e| matches!(e, Ended::Resumed(_))).count();
        eprintln!(
            "soak {}: {} uploads verified ({} after a typed error and a resume) in {:.1?}",
            self.vendor,
            self.tally.len(),
            resumed,
            self.started.elapsed()
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// A failure message's replay seed.
fn replay() -> String {
    SEED.get().map(u64::to_string).unwrap_or_default()
}

fn describe<Op: std::fmt::Debug>(faults: &[Fault<Op>]) -> String {
    let all: Vec<String> =
        faults.iter().map(|f| format!("{:?}#{:?}x{} {:?}", f.operation, f.part_number, f.times, f.action)).collect();
    format!("[{}]", all.join(", "))
}

// ---------------------------------------------------------------------------------------------

mod oss {
    use super::*;
    use oss_multipart::emulator::{Emulator, EmulatorConfig, Operation};
    use oss_multipart::{Client, SignatureVersion, Uploader};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn soak_oss() {
        let mut l = Loop::new("oss");
        let part = 128 * KIB;
        let ops = Ops {
            part: vec![Operation::UploadPart],
            part_number: |i| Some(i + 1),
            create: Operation::InitiateMultipartUpload,
            complete: Operation::CompleteMultipartUpload,
            list: Some(Operation::ListParts),
            code_5xx: "InternalError",
            code_503: "ServiceUnavailable",
            code_429: "TooManyRequests",
            partial: false,
            stall: Duration::from_millis(1200),
            lose_create: true,
        };
        for i in 0..uploads_per_vendor() {
            let size = l.rng.range(1, 12 * part + 999);
            let data = Bytes::from(pattern(size, l.rng.next()));
            let parts = size.div_ceil(part) as u32;
            let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
            let faults = plan_faults(&mut l.rng, &ops, parts, part, rate());
            let case = l.case(i, &data, &describe(&faults));
            for f in faults {
                emu.inject(f);
            }
            let version = if l.rng.chance(0.5) { SignatureVersion::V1 } else { SignatureVersion::V4 };
            let client = Client::new(emu.client_config().with_signature_version(version)).unwrap();
            let concurrency = l.rng.range(1, 4);
            let seed = l.rng.next();
            let size = PartSize::Exact(part as u64);
            let first = options(size, concurrency, FIRST_ATTEMPTS, seed, Duration::from_millis(400), &case.checkpoint);
            let again = options(size, concurrency, 12, seed, Duration::from_secs(5), &case.checkpoint);
            let key = format!("soak/{i}.bin");
            let ended = soak_one(
                &case,
                first,
                again,
                |o| {
                    Uploader::new(client.clone()).with_options(o).upload(
                        "bucket",
                        &key,
                        oss_multipart::Source::bytes(data.clone()),
                    )
                },
                || emu.object("bucket", &key),
            )
            .await;
            l.tally.push(ended);
        }
        l.finish();
    }
}

mod qingstor {
    use super::*;
    use qingstor_multipart::emulator::{Emulator, EmulatorConfig, Operation};
    use qingstor_multipart::{Client, Uploader};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn soak_qingstor() {
        let mut l = Loop::new("qingstor");
        // QingStor's smallest part.
        let part = 4 * MIB;
        let ops = Ops {
            part: vec![Operation::UploadMultipart],
            part_number: Some,
            create: Operation::InitiateMultipartUpload,
            complete: Operation::CompleteMultipartUpload,
            list: Some(Operation::ListMultipart),
            code_5xx: "internal_error",
            code_503: "service_unavailable",
            code_429: "too_many_requests",
            partial: false,
            stall: Duration::from_millis(2500),
            lose_create: true,
        };
        for i in 0..uploads_per_vendor() {
            let size = l.rng.range(1, 3 * part + 999);
            let data = Bytes::from(pattern(size, l.rng.next()));
            let parts = size.div_ceil(part) as u32;
            let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
            let faults = plan_faults(&mut l.rng, &ops, parts, part, rate());
            let case = l.case(i, &data, &describe(&faults));
            for f in faults {
                emu.inject(f);
            }
            let mut config = emu.client_config();
            config.call_timeout = Duration::from_secs(3);
            let client = Client::new(config).unwrap();
            let concurrency = l.rng.range(1, 3);
            let seed = l.rng.next();
            let size = PartSize::Exact(part as u64);
            let first = options(size, concurrency, FIRST_ATTEMPTS, seed, Duration::from_secs(1), &case.checkpoint);
            let again = options(size, concurrency, 12, seed, Duration::from_secs(10), &case.checkpoint);
            let key = format!("soak/{i}.bin");
            let ended = soak_one(
                &case,
                first,
                again,
                |o| {
                    Uploader::new(client.clone()).with_options(o).upload(
                        "bucket",
                        &key,
                        qingstor_multipart::Source::bytes(data.clone()),
                    )
                },
                || emu.object("bucket", &key),
            )
            .await;
            l.tally.push(ended);
        }
        l.finish();
    }
}

mod r#box {
    use super::*;
    use box_chunked::emulator::{Emulator, EmulatorConfig, Operation};
    use box_chunked::{Client, Uploader};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn soak_box() {
        let mut l = Loop::new("box");
        // The part size the emulator picks, as Box does.
        let part = 128 * KIB;
        let ops = Ops {
            part: vec![Operation::UploadPart],
            part_number: Some,
            create: Operation::CreateUploadSession,
            complete: Operation::Commit,
            list: Some(Operation::ListParts),
            code_5xx: "internal_server_error",
            code_503: "unavailable",
            code_429: "rate_limit_exceeded",
            partial: false,
            stall: Duration::from_millis(1200),
            lose_create: true,
        };
        for i in 0..uploads_per_vendor() {
            let size = l.rng.range(1000, 10 * part + 999);
            let data = Bytes::from(pattern(size, l.rng.next()));
            let parts = size.div_ceil(part) as u32;
            let processing_commits = l.rng.below(2) as u32;
            let emu = Emulator::start(EmulatorConfig {
                min_chunked: 1000,
                part_size: Some(part as u64),
                processing_commits,
                processing_retry_after: 0,
                ..EmulatorConfig::default()
            })
            .await
            .unwrap();
            let faults = plan_faults(&mut l.rng, &ops, parts, part, rate());
            let case = l.case(i, &data, &describe(&faults));
            for f in faults {
                emu.inject(f);
            }
            let mut config = emu.client_config();
            config.call_timeout = Duration::from_secs(3);
            let client = Client::new(config).unwrap();
            let concurrency = l.rng.range(1, 4);
            let seed = l.rng.next();
            let first = options(
                PartSize::Auto,
                concurrency,
                FIRST_ATTEMPTS,
                seed,
                Duration::from_millis(400),
                &case.checkpoint,
            );
            let again = options(PartSize::Auto, concurrency, 12, seed, Duration::from_secs(5), &case.checkpoint);
            let name = format!("soak-{i}.bin");
            let ended = soak_one(
                &case,
                first,
                again,
                |o| {
                    Uploader::new(client.clone()).with_options(o).upload(
                        "0",
                        &name,
                        box_chunked::Source::bytes(data.clone()),
                    )
                },
                || emu.find_file("0", &name).and_then(|id| emu.file_content(&id)),
            )
            .await;
            l.tally.push(ended);
        }
        l.finish();
    }
}

mod graph {
    use super::*;
    use sharepoint_resumable::emulator::{Emulator, EmulatorConfig, Operation};
    use sharepoint_resumable::{Client, Drive, Item, Uploader};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn soak_graph() {
        let mut l = Loop::new("graph");
        let part = 320 * KIB;
        let ops = Ops {
            part: vec![Operation::UploadFragment],
            part_number: |_| None,
            create: Operation::CreateUploadSession,
            complete: Operation::UploadFragment,
            list: Some(Operation::GetSessionStatus),
            code_5xx: "generalException",
            code_503: "serviceNotAvailable",
            code_429: "activityLimitReached",
            partial: true,
            stall: Duration::from_millis(1200),
            lose_create: false,
        };
        for i in 0..uploads_per_vendor() {
            let size = l.rng.range(1, 5 * part + 999);
            let data = Bytes::from(pattern(size, l.rng.next()));
            let parts = size.div_ceil(part) as u32;
            let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
            let faults = plan_faults(&mut l.rng, &ops, parts, part, rate());
            let case = l.case(i, &data, &describe(&faults));
            for f in faults {
                emu.inject(f);
            }
            let mut config = emu.client_config();
            config.call_timeout = Duration::from_secs(3);
            let client = Client::new(config).unwrap();
            let seed = l.rng.next();
            let size = PartSize::Exact(part as u64);
            let first = options(size, 1, FIRST_ATTEMPTS, seed, Duration::from_millis(400), &case.checkpoint);
            let again = options(size, 1, 12, seed, Duration::from_secs(5), &case.checkpoint);
            let path = format!("soak/{i}.bin");
            let ended = soak_one(
                &case,
                first,
                again,
                |o| {
                    Uploader::new(client.clone()).with_options(o).upload(
                        Drive::Me,
                        Item::Path(path.clone()),
                        sharepoint_resumable::Source::bytes(data.clone()),
                    )
                },
                || emu.item_content("drive-1", &path),
            )
            .await;
            l.tally.push(ended);
        }
        l.finish();
    }
}

mod sharepoint_rest {
    use super::*;
    use sharepoint_resumable::emulator::{Emulator, EmulatorConfig, Operation};
    use sharepoint_resumable::{RestClient, RestUploader};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn soak_sharepoint_rest() {
        let mut l = Loop::new("sharepoint-rest");
        let part = 128 * KIB;
        let ops = Ops {
            part: vec![Operation::StartUpload, Operation::ContinueUpload, Operation::FinishUpload],
            part_number: |_| None,
            create: Operation::StartUpload,
            complete: Operation::FinishUpload,
            list: Some(Operation::GetUploadStatus),
            code_5xx: "-2146232832, Microsoft.SharePoint.SPException",
            code_503: "-2146232832, Microsoft.SharePoint.SPException",
            code_429: "-2146232832, Microsoft.SharePoint.SPException",
            partial: true,
            stall: Duration::from_millis(1200),
            lose_create: true,
        };
        for i in 0..uploads_per_vendor() {
            let size = l.rng.range(1, 6 * part + 999);
            let data = Bytes::from(pattern(size, l.rng.next()));
            let parts = size.div_ceil(part) as u32;
            let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
            let faults = plan_faults(&mut l.rng, &ops, parts, part, rate());
            let case = l.case(i, &data, &describe(&faults));
            for f in faults {
                emu.inject(f);
            }
            let mut config = emu.rest_config().unwrap();
            config.call_timeout = Duration::from_secs(3);
            let client = RestClient::new(config).unwrap();
            let seed = l.rng.next();
            let size = PartSize::Exact(part as u64);
            let first = options(size, 1, FIRST_ATTEMPTS, seed, Duration::from_millis(400), &case.checkpoint);
            let again = options(size, 1, 12, seed, Duration::from_secs(5), &case.checkpoint);
            let name = format!("soak-{i}.bin");
            let ended = soak_one(
                &case,
                first,
                again,
                |o| {
                    RestUploader::new(client.clone()).with_options(o).upload(
                        "/sites/emulator/Shared Documents",
                        &name,
                        sharepoint_resumable::Source::bytes(data.clone()),
                    )
                },
                || emu.item_content("drive-1", &name),
            )
            .await;
            l.tally.push(ended);
        }
        l.finish();
    }
}
