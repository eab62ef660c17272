//! The engine driven through an in-memory vendor with injected faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tests::fake::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;

use upload_core::source::ReadAt;
use upload_core::{
    Event, Fingerprint, Hashes, PartRules, PartSize, PlanError, Source, Step, Upload, UploadError, UploadOptions,
    UploadState,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn options() -> UploadOptions {
    UploadOptions { concurrency: 4, retry: quick_retry(), ..UploadOptions::default() }
}

fn stored_object(fake: &Fake) -> Bytes {
    let w = fake.world();
    let s = w.sessions.values().find(|s| s.completed).expect("a completed session");
    let mut out = Vec::new();
    for p in s.parts.values() {
        out.extend_from_slice(p.bytes.as_ref().unwrap());
    }
    Bytes::from(out)
}

/// Box-like: the server picks the part size, parts carry a SHA-1, completion checks the SHA-1 of
/// the whole file.
fn box_like() -> Config {
    let mut c = Config::new(PartRules {
        server_picks_part_size: true,
        needs_total_len: true,
        first_part_number: 0,
        ..rules(64 * KIB)
    });
    c.server_part_size = Some(96 * KIB);
    c.part_hashes = Hashes::SHA1 | Hashes::CRC64;
    c.whole_hashes = Hashes::SHA1 | Hashes::CRC64;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_still_store_exactly_the_source() {
    let data = Bytes::from(pattern(5 * MIB as usize + 12_345, 1));
    let mut config = Config::new(rules(128 * KIB));
    config.random_failure = 0.35;
    config.seed = 99;
    let fake = Fake::new(config);
    let rec = Recorder::default();
    let opts = UploadOptions { observer: Some(rec.observer()), ..options() };
    let mut upload = Upload::new(fake.clone(), Source::bytes(data.clone()), opts);
    let done = upload.run().await.unwrap();

    assert_eq!(stored_object(&fake), data, "stored bytes equal the source");
    assert_eq!(done.output.len, data.len() as u64);
    assert_eq!(done.digests.crc64, Some(upload_core::hash::crc64::crc64(&data)));
    assert!(done.report.part_retries > 0, "faults were injected and retried: {:?}", done.report);
    let w = fake.world();
    assert!(w.stores.values().all(|&n| n == 1), "a part stored on an ambiguous failure is not sent again");
    let found = rec.events().iter().filter(|e| matches!(e, Event::PartFoundOnServer { .. })).count();
    assert_eq!(found as u32, done.report.parts_skipped);
    assert!(found > 0, "some failures happened after the part was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_failure_is_checked_on_the_server_before_resending() {
    let data = Bytes::from(pattern(MIB as usize, 2));
    let mut config = Config::new(rules(128 * KIB));
    config.script.insert((3, 1), Fault::StoreThenFail);
    let fake = Fake::new(config);
    let mut upload = Upload::new(fake.clone(), Source::bytes(data.clone()), options());
    let done = upload.run().await.unwrap();
    assert_eq!(stored_object(&fake), data);
    let w = fake.world();
    assert_eq!(w.attempts[&3], 1, "part 3 was found on the server, not sent twice");
    assert_eq!(done.report.parts_skipped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_part_is_timed_out_and_retried() {
    let data = Bytes::from(pattern(MIB as usize, 3));
    let mut config = Config::new(rules(256 * KIB));
    config.script.insert((2, 1), Fault::Stall);
    let fake = Fake::new(config);
    let rec = Recorder::default();
    let opts =
        UploadOptions { part_timeout: Some(Duration::from_millis(200)), observer: Some(rec.observer()), ..options() };
    let mut upload = Upload::new(fake.clone(), Source::bytes(data.clone()), opts);
    upload.run().await.unwrap();
    assert_eq!(stored_object(&fake), data);
    assert_eq!(fake.world().attempts[&2], 2);
    assert!(rec.events().iter().any(|e| matches!(e,
        Event::PartRetrying { number: 2, error, .. } if error.contains("no answer within 200ms"))));
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_a_part_is_honoured() {
    let data = Bytes::from(pattern(512 * KIB as usize, 4));
    let mut config = Config::new(rules(128 * KIB));
    config.part_hashes = Hashes::NONE;
    config.whole_hashes = Hashes::NONE;
    config.script.insert((2, 1), Fault::Status(429, Some(Duration::from_secs(7))));
    config.script.insert((2, 2), Fault::Status(503, Some(Duration::from_secs(11))));
    let fake = Fake::new(config);
    let rec = Recorder::default();
    let opts = UploadOptions { observer: Some(rec.observer()), part_timeout: None, ..options() };
    let started = tokio::time::Instant::now();
    Upload::new(fake.clone(), Source::bytes(data.clone()), opts).run().await.unwrap();
    let delays: Vec<_> = rec
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::PartRetrying { number: 2, delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [Duration::from_secs(7), Duration::from_secs(11)]);
    assert!(started.elapsed() >= Duration::from_secs(18), "the waits were slept: {:?}", started.elapsed());
    assert_eq!(stored_object(&fake), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_error_is_not_retried_and_leaves_a_resumable_state() {
    let data = Bytes::from(pattern(2 * MIB as usize, 5));
    let mut config = Config::new(rules(256 * KIB));
    config.script.insert((5, 1), Fault::Status(403, None));
    let fake = Fake::new(config);
    let dir = temp_dir("client-error");
    let cp = dir.join("state.json");
    let opts = UploadOptions { checkpoint: Some(cp.clone()), concurrency: 1, ..options() };
    let mut upload = Upload::new(fake.clone(), Source::bytes(data.clone()), opts.clone());
    let err = upload.run().await.unwrap_err();
    match &err {
        UploadError::Vendor { part: Some(5), source, .. } => assert_eq!(source.attempts, 1),
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().starts_with("uploading a part 5 failed: fake vendor answered 403"), "{err}");
    // The checkpoint holds the four parts that made it, and a resume sends only the rest.
    let state: UploadState<String, String> = upload_core::checkpoint::load(&cp).unwrap();
    assert_eq!(state.parts_done(), 4);
    let mut resumed = Upload::resume_or_new(fake.clone(), Source::bytes(data.clone()), opts).unwrap();
    resumed.run().await.unwrap();
    assert_eq!(stored_object(&fake), data);
    assert!(fake.world().stores.values().all(|&n| n == 1));
    assert!(!cp.exists(), "the checkpoint is removed once the object exists");
}

/// Runs an upload until `parts` parts are done, then drops it mid-flight, as a crash would.
async fn crash_after(upload: &mut Upload<Fake>, parts: u32, counter: Arc<AtomicU32>) {
    tokio::select! {
        r = upload.run() => panic!("the upload should have been interrupted: {r:?}"),
        _ = async {
            while counter.load(Ordering::SeqCst) < parts {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } => {}
    }
}

fn counting(counter: &Arc<AtomicU32>) -> upload_core::Observer {
    let c = counter.clone();
    Arc::new(move |e: &Event| {
        if matches!(e, Event::PartDone { .. }) {
            c.fetch_add(1, Ordering::SeqCst);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_then_resume_from_checkpoint_keeps_parts_and_whole_file_digest() {
    // Two checkpoint cadences: every part (the hash state is mid-file), and never after the
    // first write (the checkpoint knows no part; the server is the truth).
    for interval in [Duration::ZERO, Duration::from_secs(3600)] {
        let dir = temp_dir("crash");
        let path = dir.join("source.bin");
        let data = pattern(3 * MIB as usize + 777, 6);
        std::fs::write(&path, &data).unwrap();
        let mut config = box_like();
        config.part_latency = Duration::from_millis(4);
        let fake = Fake::new(config);
        let cp = dir.join("state.json");
        let counter = Arc::new(AtomicU32::new(0));
        let opts = UploadOptions {
            checkpoint: Some(cp.clone()),
            checkpoint_interval: interval,
            observer: Some(counting(&counter)),
            ..options()
        };

        let mut first = Upload::new(fake.clone(), Source::file(&path).unwrap(), opts.clone());
        crash_after(&mut first, 12, counter.clone()).await;
        drop(first);
        // A crashed process runs nothing more: let the dropped tasks finish unwinding.
        tokio::time::sleep(Duration::from_millis(50)).await;

        let rec = Recorder::default();
        let opts = UploadOptions { observer: Some(rec.observer()), ..opts };
        let mut second = Upload::resume_or_new(fake.clone(), Source::file(&path).unwrap(), opts).unwrap();
        let done = second.run().await.unwrap();
        let on_server = rec
            .events()
            .iter()
            .find_map(|e| match e {
                Event::Resumed { parts_on_server, .. } => Some(*parts_on_server),
                _ => None,
            })
            .expect("the second run resumed");
        assert!(on_server >= 12, "the server's parts were found: {on_server}");
        assert_eq!(stored_object(&fake), data, "interval {interval:?}");
        assert_eq!(done.digests.sha1_hex().unwrap(), hex_sha1(&data), "whole-file SHA-1 survived the crash");
        let w = fake.world();
        assert_eq!(w.creates, 1, "the session was resumed, not recreated");
        assert!(w.stores.values().all(|&n| n == 1), "no part was sent twice: {:?}", w.stores);
        let total = w.stores.len() as u32;
        assert_eq!(on_server + done.report.parts_uploaded + done.report.parts_skipped, total);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_carries_the_upload_across_processes() {
    let dir = temp_dir("steps");
    let path = dir.join("source.bin");
    let data = pattern(4 * MIB as usize + 5, 7);
    std::fs::write(&path, &data).unwrap();
    let mut config = box_like();
    config.part_latency = Duration::from_millis(20);
    let fake = Fake::new(config);

    // Each step is a "request": a new Upload from the JSON the last one stored.
    let mut saved: Option<String> = None;
    let mut steps = 0;
    let done = loop {
        steps += 1;
        assert!(steps < 200, "step mode made no progress");
        let source = Source::file(&path).unwrap();
        let mut upload = match &saved {
            None => Upload::new(fake.clone(), source, options()),
            Some(json) => Upload::resume(fake.clone(), source, serde_json::from_str(json).unwrap(), options()),
        };
        match upload.step(Duration::from_millis(60)).await.unwrap() {
            Step::Done(done) => break done,
            Step::Pending { .. } => saved = Some(serde_json::to_string(&upload.into_state().unwrap()).unwrap()),
        }
    };
    assert!(steps > 2, "the budget forced several steps ({steps})");
    assert_eq!(stored_object(&fake), data);
    assert_eq!(done.digests.sha1_hex().unwrap(), hex_sha1(&data));
    let w = fake.world();
    assert_eq!(w.creates, 1);
    assert!(w.stores.values().all(|&n| n == 1), "parts cut off by a deadline were found, not resent: {:?}", w.stores);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_changing_during_upload_is_an_error_with_parts_kept() {
    let dir = temp_dir("changing");
    let path = dir.join("source.bin");
    let data = pattern(2 * MIB as usize, 8);
    std::fs::write(&path, &data).unwrap();
    let mut config = Config::new(rules(128 * KIB));
    config.part_latency = Duration::from_millis(5);
    let fake = Fake::new(config);
    let counter = Arc::new(AtomicU32::new(0));
    let p = path.clone();
    let c = counter.clone();
    let observer: upload_core::Observer = Arc::new(move |e: &Event| {
        if matches!(e, Event::PartDone { .. }) && c.fetch_add(1, Ordering::SeqCst) == 2 {
            // Another program appends to the file while it uploads.
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            std::io::Write::write_all(&mut f, b"more").unwrap();
        }
    });
    let opts = UploadOptions { observer: Some(observer), concurrency: 2, ..options() };
    let mut upload = Upload::new(fake.clone(), Source::file(&path).unwrap(), opts);
    let err = upload.run().await.unwrap_err();
    assert!(matches!(err, UploadError::SourceChanged(_)), "{err}");
    assert!(err.to_string().contains("its size went from 2 MiB to 2097156 bytes"), "{err}");
    assert!(upload.state().unwrap().parts_done() >= 3, "parts already stored stay in the state");
    assert_eq!(fake.world().completes, 0, "nothing made of two versions was completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_of_another_file_or_vendor_is_refused() {
    let dir = temp_dir("mismatch");
    let (a, b) = (dir.join("a.bin"), dir.join("b.bin"));
    std::fs::write(&a, pattern(MIB as usize, 9)).unwrap();
    std::fs::write(&b, pattern(MIB as usize, 10)).unwrap();
    let mut config = Config::new(rules(128 * KIB));
    config.script.insert((3, 1), Fault::Status(400, None));
    let fake = Fake::new(config);
    let cp = dir.join("state.json");
    let opts = UploadOptions { checkpoint: Some(cp.clone()), ..options() };
    let mut upload = Upload::new(fake.clone(), Source::file(&a).unwrap(), opts.clone());
    upload.run().await.unwrap_err();
    assert!(cp.exists());

    let mut other_file = Upload::resume_or_new(fake.clone(), Source::file(&b).unwrap(), opts.clone()).unwrap();
    let err = other_file.run().await.unwrap_err();
    assert!(matches!(err, UploadError::SourceChanged(_)), "{err}");

    let other_vendor = Fake::new(Config::new(PartRules { vendor: "Other", ..rules(128 * KIB) }));
    let mut upload = Upload::resume_or_new(other_vendor, Source::file(&a).unwrap(), opts.clone()).unwrap();
    let err = upload.run().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the saved upload state is for Fake fake://bucket/key, not Other fake://bucket/key: a saved session must be its own target's"
    );

    std::fs::write(&cp, br#"{"format":"cloud-upload/upload-state","version":99}"#).unwrap();
    let err = Upload::resume_or_new(fake.clone(), Source::file(&a).unwrap(), opts).unwrap_err();
    assert!(err.to_string().contains("has version 99"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_errors_come_before_any_request() {
    let fake = Fake::new(Config::new(rules(5 * MIB)));
    let opts = UploadOptions { part_size: PartSize::Exact(MIB), ..options() };
    let mut upload = Upload::new(fake.clone(), Source::bytes(vec![0u8; 20 * MIB as usize]), opts);
    let err = upload.run().await.unwrap_err();
    assert!(matches!(err, UploadError::Plan(PlanError::PartTooSmall { .. })));
    assert_eq!(err.to_string(), "part size 1 MiB is below Fake's minimum of 5 MiB");
    assert_eq!(fake.world().calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_vendor_gets_parts_in_order() {
    let data = Bytes::from(pattern(3 * MIB as usize + 1, 11));
    let mut config = Config::new(PartRules { sequential: true, ..rules(128 * KIB) });
    config.random_failure = 0.2;
    let fake = Fake::new(config);
    let opts = UploadOptions { concurrency: 8, ..options() };
    Upload::new(fake.clone(), Source::bytes(data.clone()), opts).run().await.unwrap();
    assert_eq!(stored_object(&fake), data);
    let w = fake.world();
    assert!(w.store_order.windows(2).all(|p| p[0] < p[1]), "{:?}", w.store_order);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_vendor_has_one_part_in_flight_while_the_next_is_read() {
    let part = 128 * KIB;
    let data = Bytes::from(pattern(8 * part as usize, 12));
    let mut config = Config::new(PartRules { sequential: true, ..rules(part) });
    config.part_latency = Duration::from_millis(40);
    config.whole_hashes = Hashes::SHA1;
    let fake = Fake::new(config);
    let opts = UploadOptions { concurrency: 4, part_size: PartSize::Exact(part), ..options() };
    let done = Upload::new(fake.clone(), Source::bytes(data.clone()), opts).run().await.unwrap();
    assert_eq!(stored_object(&fake), data);
    assert_eq!(fake.world().max_in_flight, 1, "one part at a time");
    // The next part was read (and hashed) while one was on the wire: two parts buffered, never
    // more.
    assert_eq!(done.report.peak_buffered, 2 * part, "{:?}", done.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_unknown_length_including_edge_lengths() {
    for len in [0usize, 1, 128 * KIB as usize, 3 * 128 * KIB as usize, 1_000_003] {
        let data = pattern(len, len as u64);
        let fake = Fake::new(Config::new(rules(128 * KIB)));
        let source = Source::reader(std::io::Cursor::new(data.clone()), None);
        let done = Upload::new(fake.clone(), source, options()).run().await.unwrap();
        assert_eq!(stored_object(&fake), data, "length {len}");
        assert_eq!(done.output.len, len as u64);
    }
    // A vendor that needs the length up front refuses before any request.
    let fake = Fake::new(Config::new(PartRules { needs_total_len: true, ..rules(128 * KIB) }));
    let source = Source::reader(std::io::Cursor::new(vec![1u8; 10]), None);
    let err = Upload::new(fake.clone(), source, options()).run().await.unwrap_err();
    assert_eq!(err.to_string(), "Fake needs the total length when the upload starts; the source's length is unknown");
    assert_eq!(fake.world().calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_stream_part_is_kept_for_the_next_run() {
    let data = pattern(MIB as usize, 12);
    let mut config = Config::new(rules(128 * KIB));
    config.script.insert((4, 1), Fault::Status(400, None));
    let fake = Fake::new(config);
    let source = Source::reader(std::io::Cursor::new(data.clone()), Some(data.len() as u64));
    let mut upload = Upload::new(fake.clone(), source, UploadOptions { concurrency: 1, ..options() });
    upload.run().await.unwrap_err();
    upload.run().await.unwrap();
    assert_eq!(stored_object(&fake), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_cancel() {
    let data = Bytes::from(pattern(2 * MIB as usize, 13));
    let dir = temp_dir("abort");
    let cp = dir.join("state.json");
    let mut config = Config::new(rules(128 * KIB));
    config.part_latency = Duration::from_millis(5);
    let fake = Fake::new(config);
    let counter = Arc::new(AtomicU32::new(0));
    let opts = UploadOptions { checkpoint: Some(cp.clone()), observer: Some(counting(&counter)), ..options() };
    let cancel = opts.cancel.clone();
    let mut upload = Upload::new(fake.clone(), Source::bytes(data.clone()), opts);
    let c = counter.clone();
    tokio::spawn(async move {
        while c.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        cancel.cancel();
    });
    let err = upload.run().await.unwrap_err();
    assert!(matches!(err, UploadError::Cancelled), "{err}");
    let saved: UploadState<String, String> = upload_core::checkpoint::load(&cp).unwrap();
    assert!(saved.parts_done() >= 3, "cancelling keeps a resumable state");

    upload.abort().await.unwrap();
    assert_eq!(fake.world().aborts, 1);
    assert!(fake.world().sessions.values().all(|s| s.aborted && s.parts.is_empty()));
    assert!(!cp.exists());
}

/// A 1 GiB source generated on the fly (nothing of it is kept).
#[derive(Debug)]
struct Generated(u64);

impl ReadAt for Generated {
    fn len(&self) -> u64 {
        self.0
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let mut v = Vec::with_capacity(len);
        let mut x = offset / 8 + 1;
        while v.len() < len {
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
            v.extend_from_slice(&x.to_le_bytes()[..(len - v.len()).min(8)]);
        }
        Ok(Bytes::from(v))
    }
    fn fingerprint(&self) -> std::io::Result<Fingerprint> {
        Ok(Fingerprint { len: Some(self.0), ..Fingerprint::default() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_concurrency_times_part_size_for_1_gib() {
    const GIB: u64 = 1024 * MIB;
    for (whole, concurrency) in [(Hashes::CRC64, 4usize), (Hashes::SHA1 | Hashes::CRC64, 3)] {
        let mut config = Config::new(rules(5 * MIB));
        config.store_bytes = false;
        config.whole_hashes = whole;
        let fake = Fake::new(config);
        let opts = UploadOptions { part_size: PartSize::Exact(8 * MIB), concurrency, ..options() };
        let done = Upload::new(fake.clone(), Source::read_at(Generated(GIB)), opts).run().await.unwrap();
        assert_eq!(done.output.len, GIB);
        assert_eq!(done.digests.crc64, Some(done.output.crc64), "combined CRC-64 matches the stored object");
        let peak = done.report.peak_buffered;
        assert!(peak > 0 && peak <= concurrency as u64 * 8 * MIB, "peak {peak} for concurrency {concurrency}");
        if whole.contains(Hashes::SHA1) {
            assert!(done.digests.sha1.is_some());
        }
    }
}

// Regressions found in review: deadlines, streams, cancellation, and saved states from outside.

#[tokio::test(start_paused = true)]
async fn a_step_returns_within_its_budget_even_when_parts_are_slow() {
    let data = Bytes::from(pattern(MIB as usize, 21));
    let mut config = Config::new(rules(128 * KIB));
    config.part_latency = Duration::from_secs(2);
    let fake = Fake::new(config);
    let mut upload = Upload::new(fake.clone(), Source::bytes(data), options());
    let started = tokio::time::Instant::now();
    let step = upload.step(Duration::from_millis(100)).await.unwrap();
    assert!(matches!(step, Step::Pending { .. }));
    assert!(started.elapsed() < Duration::from_secs(2), "the step waited for slow parts: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_parts_dropped_in_flight_are_sent_by_the_next_run() {
    let data = pattern(MIB as usize, 22);
    let mut config = Config::new(rules(128 * KIB));
    config.part_latency = Duration::from_millis(50);
    config.script.insert((2, 1), Fault::Status(400, None));
    let fake = Fake::new(config);
    let source = Source::reader(std::io::Cursor::new(data.clone()), Some(data.len() as u64));
    let mut upload = Upload::new(fake.clone(), source, options());
    upload.run().await.unwrap_err();
    upload.run().await.unwrap();
    assert_eq!(stored_object(&fake), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_never_completes_with_a_partial_whole_file_digest() {
    use upload_core::source::BytesSource;
    use upload_core::{Digests, PartPlan, PartUpload, Protocol};
    let data = Bytes::from(pattern(16 * MIB as usize, 23));
    let config = box_like();
    let rules = config.rules.clone();
    let fake = Fake::new(config);
    // Every part is on the server, but the saved hash state is at byte 0 (an early checkpoint).
    let plan = PartPlan::new(&rules, Some(data.len() as u64), PartSize::Exact(96 * KIB)).unwrap();
    let session = fake.create(Some(data.len() as u64), plan.part_size).await.unwrap().session;
    for spec in plan.parts() {
        let body = data.slice(spec.offset as usize..spec.end() as usize);
        let digests = Digests::compute(Hashes::SHA1 | Hashes::CRC64, &body);
        let part = PartUpload { spec, total_len: plan.total_len, is_last: false, body, digests };
        fake.upload_part(&session, part).await.unwrap();
    }
    let state: UploadState<String, String> = UploadState {
        format: upload_core::checkpoint::FORMAT.into(),
        version: upload_core::checkpoint::VERSION,
        vendor: "Fake".into(),
        target: "fake://bucket/key".into(),
        session,
        plan,
        source: BytesSource(data.clone()).fingerprint().unwrap(),
        parts: vec![],
        whole: Some(upload_core::hash::WholeHasher::new(Hashes::SHA1).state()),
    };
    let mut upload = Upload::resume(fake.clone(), Source::bytes(data.clone()), state, options());
    let first = upload.step(Duration::from_millis(2)).await.unwrap();
    assert!(matches!(first, Step::Pending { .. }), "a step cut short must not complete");
    let done = loop {
        if let Step::Done(done) = upload.step(Duration::from_secs(5)).await.unwrap() {
            break done;
        }
    };
    assert_eq!(done.digests.sha1_hex().unwrap(), hex_sha1(&data));
    assert!(fake.world().stores.values().all(|&n| n == 1), "no part was sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_declared_is_refused() {
    let data = pattern(300 * KIB as usize, 24);
    let fake = Fake::new(Config::new(rules(128 * KIB)));
    let source = Source::reader(std::io::Cursor::new(data), Some(200 * KIB));
    let err = Upload::new(fake.clone(), source, options()).run().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the source changed since the upload started: the stream declared 200 KiB but gave more"
    );
    assert_eq!(fake.world().completes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_ends_the_retries() {
    let data = Bytes::from(pattern(256 * KIB as usize, 25));
    let mut config = Config::new(rules(128 * KIB));
    config.script.insert((1, 1), Fault::Status(429, Some(Duration::MAX)));
    let fake = Fake::new(config);
    let err = Upload::new(fake.clone(), Source::bytes(data), options()).run().await.unwrap_err();
    match err {
        UploadError::Vendor { part: Some(1), source, .. } => {
            assert_eq!(source.reason, upload_core::retry::GiveUp::Time);
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_length_stream_at_the_part_limit() {
    let rules = PartRules { max_parts: 4, ..rules(128 * KIB) };
    let exact = pattern(512 * KIB as usize, 26);
    let fake = Fake::new(Config::new(rules.clone()));
    let source = Source::reader(std::io::Cursor::new(exact.clone()), None);
    Upload::new(fake.clone(), source, options()).run().await.unwrap();
    assert_eq!(stored_object(&fake), exact);

    let fake = Fake::new(Config::new(rules));
    let source = Source::reader(std::io::Cursor::new(pattern(512 * KIB as usize + 1, 27)), None);
    let err = Upload::new(fake.clone(), source, options()).run().await.unwrap_err();
    assert!(matches!(err, UploadError::Plan(PlanError::SourceTooLarge { .. })), "{err}");
    assert_eq!(fake.world().completes, 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_is_prompt_while_a_part_stalls() {
    let data = Bytes::from(pattern(256 * KIB as usize, 28));
    let mut config = Config::new(rules(128 * KIB));
    config.script.insert((1, 1), Fault::Stall);
    let fake = Fake::new(config);
    let opts = UploadOptions { part_timeout: None, ..options() };
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let err = Upload::new(fake.clone(), Source::bytes(data), opts).run().await.unwrap_err();
    assert!(matches!(err, UploadError::Cancelled), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_state_with_an_impossible_plan_is_refused() {
    let data = Bytes::from(pattern(MIB as usize, 29));
    let fake = Fake::new(Config::new(rules(128 * KIB)));
    let mut upload =
        Upload::new(fake.clone(), Source::bytes(data.clone()), UploadOptions { concurrency: 1, ..options() });
    upload.step(Duration::ZERO).await.unwrap();
    let mut state = upload.into_state().unwrap();
    state.plan.part_size = 0;
    let err = Upload::resume(fake.clone(), Source::bytes(data), state, options()).run().await.unwrap_err();
    assert!(matches!(err, UploadError::StateCorrupt(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_the_vendor_no_longer_has_is_replaced() {
    use upload_core::Protocol;
    let data = Bytes::from(pattern(2 * MIB as usize, 30));
    let fake = Fake::new(Config::new(rules(128 * KIB)));
    let mut upload =
        Upload::new(fake.clone(), Source::bytes(data.clone()), UploadOptions { concurrency: 1, ..options() });
    upload.step(Duration::from_millis(1)).await.unwrap();
    let state = upload.into_state().unwrap();
    // The session expires on the server (a lifecycle rule, or an abort from elsewhere).
    fake.abort(&state.session).await.unwrap();
    let rec = Recorder::default();
    let opts = UploadOptions { observer: Some(rec.observer()), ..options() };
    let done = Upload::resume(fake.clone(), Source::bytes(data.clone()), state, opts).run().await.unwrap();
    assert_eq!(stored_object(&fake), data);
    assert_eq!(done.output.len, data.len() as u64);
    assert_eq!(fake.world().creates, 2, "a new session replaced the one that was gone");
    assert!(rec.events().iter().any(|e| matches!(e, Event::SessionRestarted { .. })));
}
