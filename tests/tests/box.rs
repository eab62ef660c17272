//! box-chunked against its emulator over real HTTP: the server's part size, 202 at commit,
//! faults on the wire, parts stored behind a lost answer, crashes, step mode, new versions,
//! small files, tokens that refresh, untrusted endpoints, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use box_chunked::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
use box_chunked::types::UploadPart;
use box_chunked::upload_core::{Classify, Digests, Event, Hashes, PlanError, Secret, UploadError};
use box_chunked::{
    Auth, Client, Commit, Error, ErrorCode, InvalidInput, Source, Step, Subject, UploadOptions, Uploader,
};
use bytes::Bytes;
use tests::fake::{pattern, temp_dir};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Small parts and a small minimum, so tests move little data; no 202 at commit unless asked.
fn small() -> EmulatorConfig {
    EmulatorConfig { min_chunked: 1000, part_size: Some(256 * KIB), processing_commits: 0, ..EmulatorConfig::default() }
}

async fn emulator(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.unwrap()
}

fn client(emu: &Emulator) -> Client {
    Client::new(emu.client_config()).unwrap()
}

fn quick_options() -> UploadOptions {
    UploadOptions {
        retry: box_chunked::upload_core::RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        ..UploadOptions::default()
    }
}

fn sha1(data: &[u8]) -> [u8; 20] {
    Digests::compute(Hashes::SHA1, data).sha1.unwrap()
}

fn sha1_hex(data: &[u8]) -> String {
    box_chunked::upload_core::hash::hex(&sha1(data))
}

fn ops(emu: &Emulator, op: Operation) -> Vec<(Option<u32>, u16, Option<String>)> {
    emu.requests()
        .into_iter()
        .filter(|r| r.operation == Some(op))
        .map(|r| (r.part_number, r.status, r.error_code))
        .collect()
}

fn stored_parts(emu: &Emulator) -> std::collections::BTreeMap<u32, u32> {
    let mut counts = std::collections::BTreeMap::new();
    for (n, status, _) in ops(emu, Operation::UploadPart) {
        if status == 200 {
            *counts.entry(n.unwrap()).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricky_names_at_concurrency_4_and_1_through_a_202_commit() {
    let emu = emulator(EmulatorConfig { processing_commits: 1, ..small() }).await;
    let data = Bytes::from(pattern(MIB as usize + 4321, 1));
    let names = ["plain.bin", "with space.bin", "中文 ファイル.bin", "quote\"s.bin", "plus+%#.bin"];
    for (concurrency, names) in [(4, &names[..]), (1, &names[..1])] {
        let uploader = Uploader::new(client(&emu)).with_options(UploadOptions { concurrency, ..quick_options() });
        for name in names {
            let name = format!("c{concurrency}-{name}");
            let done = uploader.upload("0", &name, Source::bytes(data.clone())).unwrap().run().await.unwrap();
            assert_eq!(done.output.sha1.as_deref(), Some(sha1_hex(&data).as_str()));
            assert_eq!(done.output.name.as_deref(), Some(name.as_str()));
            assert_eq!(emu.file_content(&done.output.id).unwrap(), data, "{name}");
        }
    }
    // Every session's first commit was answered 202 and the uploader committed again.
    let commits: Vec<u16> = ops(&emu, Operation::Commit).into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(commits.iter().filter(|s| **s == 202).count(), 6, "{commits:?}");
    assert_eq!(commits.iter().filter(|s| **s == 201).count(), 6, "{commits:?}");
    assert!(emu.open_sessions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_minimum_and_part_size_with_the_reference_digests() {
    // Box's defaults: 20,000,000-byte minimum, 8 MiB parts for this size, one 202.
    let emu = emulator(EmulatorConfig::default()).await;
    let zeros = Bytes::from(vec![0u8; 20 * MIB as usize]);
    // Reference vectors (shared/reference/box.md section 7): 20 MiB of zeros in 8 MiB parts.
    let b64 = |d: &[u8]| box_chunked::client::digest_header(&sha1(d));
    assert_eq!(b64(&zeros[..8 * MIB as usize]), "sha=X94czmA+ZWbSDagRyci8zLBE1K4=");
    assert_eq!(b64(&zeros[16 * MIB as usize..]), "sha=K8y9LzjxXBPrfVqJ/Z2F9ZXiO8M=");
    assert_eq!(b64(&zeros), "sha=lnQ0TJDC8GRvC3gCbhJ8m4bjrXc=");
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    let done = uploader.upload("0", "zeros.bin", Source::bytes(zeros.clone())).unwrap().run().await.unwrap();
    assert_eq!(done.output.size, Some(20 * MIB));
    assert_eq!(emu.file_content(&done.output.id).unwrap(), zeros);
    let parts: Vec<Option<u32>> = ops(&emu, Operation::UploadPart).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(parts.len(), 3, "8 + 8 + 4 MiB: {parts:?}");

    // Below the minimum: refused before any request, naming the plain upload.
    let before = emu.requests().len();
    let err = uploader.upload("0", "small.bin", Source::bytes(vec![1u8; 19_999_999])).unwrap_err();
    assert!(matches!(err, UploadError::Plan(PlanError::SourceTooSmall { .. })), "{err}");
    assert!(err.to_string().contains("below Box's minimum") && err.to_string().contains("plain upload"), "{err}");
    assert_eq!(emu.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_503_and_a_part_stored_behind_a_lost_answer_are_each_sent_once() {
    let emu = emulator(small()).await;
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(1),
        times: 1,
        action: FaultAction::ResetMidBody { after: 64 * 1024 },
    });
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(2),
        times: 1,
        action: FaultAction::Error { status: 503, code: "unavailable".into(), retry_after: Some(1) },
    });
    // Box stores the part and the answer never arrives.
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(3),
        times: 1,
        action: FaultAction::LoseResponse,
    });
    // Box stores the part and answers 500 all the same.
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(0),
        times: 1,
        action: FaultAction::ErrorAfter { status: 500, code: "internal_server_error".into() },
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let options = UploadOptions {
        observer: Some(Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()))),
        ..quick_options()
    };
    let data = Bytes::from(pattern(MIB as usize + 77, 2));
    let uploader = Uploader::new(client(&emu)).with_options(options);
    let done = uploader.upload("0", "faults.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(emu.file_content(&done.output.id).unwrap(), data);
    let delays: Vec<Duration> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|ev| match ev {
            Event::PartRetrying { number: 2, delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [Duration::from_secs(1)], "Retry-After: 1 was honoured");
    let counts = stored_parts(&emu);
    // Part 3 was stored by the request whose answer was lost (logged as status 0), part 0 by the
    // one answered 500: both found with List Parts, never sent again, so no 416 overlap either.
    assert_eq!((counts.get(&3), counts.get(&0)), (None, None), "{counts:?}");
    let sends = |n: u32| ops(&emu, Operation::UploadPart).iter().filter(|(p, _, _)| *p == Some(n)).count();
    assert_eq!((sends(0), sends(3)), (1, 1));
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let overlaps = ops(&emu, Operation::UploadPart).iter().filter(|(_, s, _)| *s == 416).count();
    assert_eq!(overlaps, 0);
    assert!(!ops(&emu, Operation::ListParts).is_empty(), "the lost part was looked up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_then_resume_keeps_the_whole_file_sha1_and_sends_no_stored_part_again() {
    let emu = emulator(small()).await;
    let dir = temp_dir("box-crash");
    let path = dir.join("source.bin");
    let data = pattern(3 * MIB as usize + 99, 4);
    std::fs::write(&path, &data).unwrap();
    let checkpoint = dir.join("upload.json");
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: None,
        times: 1000,
        action: FaultAction::Delay(Duration::from_millis(20)),
    });
    let done_parts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let d = done_parts.clone();
    let options = UploadOptions {
        checkpoint: Some(checkpoint.clone()),
        observer: Some(Arc::new(move |ev: &Event| {
            if matches!(ev, Event::PartDone { .. }) {
                d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })),
        ..quick_options()
    };
    let uploader = Uploader::new(client(&emu)).with_options(options.clone());
    {
        let mut upload = uploader.upload("0", "crash.bin", Source::file(&path).unwrap()).unwrap();
        tokio::select! {
            r = upload.run() => panic!("should be interrupted: {r:?}"),
            _ = async { while done_parts.load(std::sync::atomic::Ordering::SeqCst) < 5 { tokio::time::sleep(Duration::from_millis(2)).await } } => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(checkpoint.exists());
    let uploader = Uploader::new(client(&emu)).with_options(UploadOptions { observer: None, ..options });
    let done = uploader.upload("0", "crash.bin", Source::file(&path).unwrap()).unwrap().run().await.unwrap();
    assert_eq!(emu.file_content(&done.output.id).unwrap(), data);
    assert_eq!(done.output.sha1, Some(sha1_hex(&data)), "the whole-file SHA-1 survived the crash");
    let counts = stored_parts(&emu);
    assert_eq!(counts.len(), 13);
    assert!(counts.values().all(|&n| n == 1), "no stored part was sent twice: {counts:?}");
    assert!(!checkpoint.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_in_one_second_budgets_across_fresh_clients() {
    let emu = emulator(EmulatorConfig { processing_commits: 1, ..small() }).await;
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: None,
        times: 1000,
        action: FaultAction::Delay(Duration::from_millis(150)),
    });
    let dir = temp_dir("box-steps");
    let path = dir.join("source.bin");
    let data = pattern(4 * MIB as usize, 5);
    std::fs::write(&path, &data).unwrap();
    let mut saved: Option<String> = None;
    let mut steps = 0;
    let file = loop {
        steps += 1;
        assert!(steps < 60);
        let uploader = Uploader::new(client(&emu)).with_options(quick_options());
        let source = Source::file(&path).unwrap();
        let mut upload = match &saved {
            None => uploader.upload("0", "steps.bin", source).unwrap(),
            Some(json) => uploader.resume(source, serde_json::from_str(json).unwrap()),
        };
        match upload.step(Duration::from_secs(1)).await.unwrap() {
            Step::Done(done) => break done.output,
            Step::Pending { .. } => saved = Some(serde_json::to_string(&upload.into_state().unwrap()).unwrap()),
        }
    };
    assert!(steps >= 2, "{steps} steps");
    assert_eq!(emu.file_content(&file.id).unwrap(), data);
    assert_eq!(file.sha1, Some(sha1_hex(&data)));
    assert!(stored_parts(&emu).values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_versions_plain_and_chunked_with_if_match() {
    let emu = emulator(small()).await;
    let dir = temp_dir("box-versions");
    let first = dir.join("v1.bin");
    std::fs::write(&first, b"version one").unwrap();
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    // Below the minimum: upload_file takes the plain upload by itself.
    let v1 = uploader.upload_file("0", "doc.bin", &first).await.unwrap();
    assert_eq!(v1.parts, 1);
    assert!(ops(&emu, Operation::UploadFile).iter().all(|(_, s, _)| *s == 201));
    let id = v1.file.id.clone();
    let data = Bytes::from(pattern(MIB as usize, 6));
    let done = uploader.upload_version(&id, Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(done.output.id, id, "same file, new version");
    assert_eq!(emu.file_content(&id).unwrap(), data);
    assert_eq!(done.output.etag.as_deref(), Some("1"));
    // If-Match with the old etag: the file changed since, 412.
    let stale = Uploader::new(client(&emu)).with_options(quick_options()).with_if_match("0");
    let err = stale.upload_version(&id, Source::bytes(data.clone())).unwrap().run().await.unwrap_err();
    assert_eq!(err.vendor_error().and_then(Error::code), Some(&ErrorCode::PreconditionFailed), "{err}");
    let small_version = dir.join("v3.bin");
    std::fs::write(&small_version, b"three").unwrap();
    let v3 = uploader.upload_file_version(&id, &small_version).await.unwrap();
    assert_eq!(v3.file.etag.as_deref(), Some("2"));
    assert_eq!(emu.file_content(&id).unwrap(), Bytes::from_static(b"three"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_token_endpoint_refresh_on_401_and_rotate() {
    let emu = emulator(small()).await;
    let ccg = Auth::ClientCredentials {
        client_id: "emulator-client-id".into(),
        client_secret: Secret::new("emulator-client-secret"),
        subject: Subject::Enterprise("900".into()),
    };
    let c = Client::new(emu.config_with(ccg)).unwrap();
    let uploader = Uploader::new(c.clone()).with_options(UploadOptions { concurrency: 1, ..quick_options() });
    let data = Bytes::from(pattern(MIB as usize, 7));
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: None,
        times: 1000,
        action: FaultAction::Delay(Duration::from_millis(100)),
    });
    let mut upload = uploader.upload("0", "ccg.bin", Source::bytes(data.clone())).unwrap();
    // The first step gets a token, creates the session and sends a part or two.
    assert!(matches!(upload.step(Duration::from_millis(400)).await.unwrap(), Step::Pending { .. }));
    assert_eq!(ops(&emu, Operation::Token).len(), 1);
    // Every issued token is revoked mid-upload: the next call gets 401, refreshes once, goes on.
    emu.expire_tokens();
    let done = match upload.step(Duration::from_secs(30)).await.unwrap() {
        Step::Done(done) => done,
        Step::Pending { .. } => panic!("not finished"),
    };
    assert_eq!(emu.file_content(&done.output.id).unwrap(), data);
    assert_eq!(ops(&emu, Operation::Token).len(), 2);
    let users: Vec<Option<String>> = emu.requests().iter().map(|r| r.access_key_id.clone()).collect();
    assert!(users.contains(&Some("service-account-900".into())));

    // Refresh tokens rotate: the client keeps the newest one to store.
    let refresh = Auth::RefreshToken {
        client_id: "emulator-client-id".into(),
        client_secret: Secret::new("emulator-client-secret"),
        refresh_token: Secret::new("emulator-refresh-token"),
    };
    let c = Client::new(emu.config_with(refresh)).unwrap();
    c.upload_file("0", "refreshed.txt", b"hello", None).await.unwrap();
    let rotated = c.refresh_token().unwrap();
    assert_ne!(rotated.expose(), "emulator-refresh-token");
    emu.expire_tokens();
    c.get_file(&emu.find_file("0", "refreshed.txt").unwrap()).await.unwrap();
    assert_ne!(c.refresh_token().unwrap(), rotated, "rotated again at the second refresh");

    // A wrong client secret: the token endpoint's error, without the secret.
    let wrong = Auth::ClientCredentials {
        client_id: "emulator-client-id".into(),
        client_secret: Secret::new("wrong-client-secret"),
        subject: Subject::User("1001".into()),
    };
    let err = Client::new(emu.config_with(wrong)).unwrap().get_file("1").await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("invalid_client") && !text.contains("wrong-client-secret"), "{text}");

    // A fixed token that Box refuses is not retried.
    let fixed = Client::new(emu.config_with(Auth::Token(Secret::new("not-a-token")))).unwrap();
    let before = emu.requests().len();
    let err = fixed.get_file("1").await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidToken));
    assert!(!err.is_retryable());
    assert_eq!(emu.requests().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_user_owns_its_sessions_and_session_urls_must_be_trusted() {
    let emu = emulator(small()).await;
    let admin = Client::new(emu.client_config().with_as_user("2002")).unwrap();
    let session = admin.create_upload_session("0", "as-user.bin", 5000).await.unwrap();
    // Another user may not use it.
    let other = client(&emu);
    let err = other.list_parts(&session, 0, 10).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::Forbidden), "{err}");
    assert!(admin.list_parts(&session, 0, 10).await.is_ok());

    // Session endpoints on a host the client was not configured for: no token goes there.
    let elsewhere =
        emulator(EmulatorConfig { session_endpoint_base: Some("http://127.0.0.1:9/api/2.0".into()), ..small() }).await;
    let uploader = Uploader::new(client(&elsewhere)).with_options(quick_options());
    let err = uploader.upload("0", "x.bin", Source::bytes(vec![1u8; 5000])).unwrap().run().await.unwrap_err();
    assert!(matches!(err.vendor_error(), Some(Error::Invalid(InvalidInput::UntrustedEndpoint(_)))), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert!(!err.to_string().contains("emulator-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_request() {
    let emu = emulator(small()).await;
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    let data = Bytes::from(vec![3u8; 5000]);
    for (folder, name, fragment) in [
        ("0", "a/b.bin", "cannot contain /"),
        ("0", " lead.bin", "start or end with a space"),
        ("0", "", "empty"),
        ("root", "x.bin", "not a Box id"),
    ] {
        let err = uploader.upload(folder, name, Source::bytes(data.clone())).unwrap_err();
        assert!(matches!(err, UploadError::Input(Error::Invalid(_))), "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    }
    assert!(emu.requests().is_empty(), "{:?}", emu.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_enforce_box_rules() {
    let emu = emulator(small()).await;
    let c = client(&emu);
    let data = Bytes::from(pattern(600 * KIB as usize, 8));
    let session = c.create_upload_session("0", "rules.bin", data.len() as u64).await.unwrap();
    assert_eq!((session.part_size, session.total_parts), (256 * KIB, 3));
    let chunk = |i: usize| data.slice(i * 256 * KIB as usize..((i + 1) * 256 * KIB as usize).min(data.len()));
    let mut parts: Vec<UploadPart> = Vec::new();
    for i in [2usize, 0] {
        let body = chunk(i);
        parts.push(
            c.upload_part(&session, i as u64 * 256 * KIB, data.len() as u64, body.clone(), &sha1(&body)).await.unwrap(),
        );
    }
    // A wrong digest: refused, nothing stored.
    let body = chunk(1);
    let err = c.upload_part(&session, 256 * KIB, data.len() as u64, body.clone(), &sha1(b"other")).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::BadDigest));
    // Off the part grid: caught before sending.
    let before = emu.requests().len();
    let err = c.upload_part(&session, 1000, data.len() as u64, body.clone(), &sha1(&body)).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(InvalidInput::ContentRange { .. })), "{err}");
    assert!(err.to_string().contains("multiples of the part size 262144"), "{err}");
    let short = body.slice(..1000);
    let err = c.upload_part(&session, 256 * KIB, data.len() as u64, short.clone(), &sha1(&short)).await.unwrap_err();
    assert!(err.to_string().contains("exactly the part size"), "{err}");
    assert_eq!(emu.requests().len(), before, "nothing was sent");
    // Overlap with a stored part: 416 naming it.
    let again = chunk(0);
    let err = c.upload_part(&session, 0, data.len() as u64, again.clone(), &sha1(&again)).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::RangeOverlapsExistingPart));
    let conflicting = err.service().and_then(|e| e.conflicting_part()).unwrap();
    assert_eq!((conflicting.offset, conflicting.size), (0, 256 * KIB));
    // Commit with a part missing, then with a wrong whole-file digest.
    let whole = sha1(&data);
    let err = c.commit(&session, &parts, &whole, None, None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::PartsMismatch), "{err}");
    parts.push(c.upload_part(&session, 256 * KIB, data.len() as u64, body.clone(), &sha1(&body)).await.unwrap());
    // List Parts pages by index.
    let page = c.list_parts(&session, 1, 1).await.unwrap();
    assert_eq!(page.entries.iter().map(|p| p.offset).collect::<Vec<_>>(), [256 * KIB]);
    assert_eq!(page.total_count, Some(3));
    assert_eq!(c.list_all_parts(&session).await.unwrap().len(), 3);
    let err = c.commit(&session, &parts, &sha1(b"wrong"), None, None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::DigestMismatch), "{err}");
    let attributes =
        serde_json::json!({"description": "made by a test", "content_modified_at": "2026-11-22T05:00:00Z"});
    let Commit::Done(file) = c.commit(&session, &parts, &whole, Some(attributes), None).await.unwrap() else {
        panic!("no 202 configured")
    };
    assert_eq!(file.description.as_deref(), Some("made by a test"));
    assert_eq!(emu.file_content(&file.id).unwrap(), data);
    // The name is taken now: 409 naming the existing file.
    let err = c.create_upload_session("0", "rules.bin", 5000).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::ItemNameInUse));
    assert_eq!(err.service().unwrap().conflicting_item_ids(), vec![file.id.clone()]);
    // Abort; the session is gone after.
    let session = c.create_upload_session("0", "aborted.bin", 5000).await.unwrap();
    c.abort(&session).await.unwrap();
    assert_eq!(c.get_upload_session(&session).await.unwrap_err().code(), Some(&ErrorCode::NotFound));
    // Below the minimum of this emulator.
    let err = c.create_upload_session("0", "tiny.bin", 999).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::FileSizeTooSmall));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_aborted_session_is_replaced_on_resume() {
    let emu = emulator(EmulatorConfig { session_lifetime: Duration::from_secs(2), ..small() }).await;
    let dir = temp_dir("box-expired");
    let path = dir.join("source.bin");
    let data = pattern(MIB as usize + 17, 9);
    std::fs::write(&path, &data).unwrap();
    let c = client(&emu);
    let uploader = Uploader::new(c.clone()).with_options(UploadOptions { concurrency: 1, ..quick_options() });
    for (name, expire) in [("expired.bin", true), ("aborted.bin", false)] {
        let mut upload = uploader.upload("0", name, Source::file(&path).unwrap()).unwrap();
        upload.step(Duration::from_millis(1)).await.unwrap();
        let state = upload.into_state().unwrap();
        if expire {
            tokio::time::sleep(Duration::from_millis(2100)).await;
        } else {
            c.abort(&state.session.session).await.unwrap();
        }
        let done = uploader.resume(Source::file(&path).unwrap(), state).run().await.unwrap();
        assert_eq!(emu.file_content(&done.output.id).unwrap(), data, "{name}");
    }
    let codes: Vec<Option<String>> = emu.requests().iter().map(|r| r.error_code.clone()).collect();
    assert!(codes.contains(&Some("session_expired".into())), "{codes:?}");
    assert!(codes.contains(&Some("not_found".into())), "{codes:?}");
    assert_eq!(ops(&emu, Operation::CreateUploadSession).len(), 4, "each gone session was replaced once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_then_reported() {
    // Tokens that are dead on arrival: the refresh cannot help.
    let emu = emulator(EmulatorConfig { token_lifetime: Duration::ZERO, ..small() }).await;
    let ccg = Auth::ClientCredentials {
        client_id: "emulator-client-id".into(),
        client_secret: Secret::new("emulator-client-secret"),
        subject: Subject::User("1001".into()),
    };
    let c = Client::new(emu.config_with(ccg)).unwrap();
    let err = c.create_upload_session("0", "x.bin", 5000).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidToken), "{err}");
    assert_eq!(ops(&emu, Operation::Token).len(), 2, "the first token, then one refresh");
    assert_eq!(ops(&emu, Operation::CreateUploadSession).len(), 2, "one retry after the refresh");
}

// Regressions found in review: each failed before its fix.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_saved_before_the_commit_answered_resumes_to_the_same_file() {
    let emu = emulator(EmulatorConfig { processing_commits: 1, ..small() }).await;
    let data = Bytes::from(pattern(MIB as usize, 21));
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    let mut upload = uploader.upload("0", "twice.bin", Source::bytes(data.clone())).unwrap();
    // The first step stores every part and meets the 202 of the first commit.
    let mut saved = None;
    for _ in 0..10 {
        match upload.step(Duration::from_millis(800)).await.unwrap() {
            Step::Pending { .. } if ops(&emu, Operation::Commit).is_empty() => {}
            Step::Pending { .. } => {
                saved = Some(serde_json::to_string(&upload.into_state().unwrap()).unwrap());
                break;
            }
            Step::Done(_) => panic!("the first commit is answered 202"),
        }
    }
    let saved = saved.expect("a state saved during the commit");
    let state = || serde_json::from_str(&saved).unwrap();
    let done = uploader.resume(Source::bytes(data.clone()), state()).run().await.unwrap();
    let puts = ops(&emu, Operation::UploadPart).len();
    // The handler's answer was lost: the same saved state is resumed again.
    let again = uploader.resume(Source::bytes(data.clone()), state()).run().await.unwrap();
    assert_eq!(again.output.id, done.output.id);
    assert_eq!(emu.file_content(&done.output.id).unwrap(), data);
    assert_eq!(ops(&emu, Operation::UploadPart).len(), puts, "no part was sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_wait_within_their_limit_and_never_spin() {
    // Box keeps answering 202: the wait ends at its limit with a typed error, not retried.
    let emu = emulator(EmulatorConfig { processing_commits: 1000, ..small() }).await;
    let uploader = Uploader::new(client(&emu)).with_options(quick_options()).with_commit_wait(Duration::from_secs(2));
    let err = uploader.upload("0", "slow.bin", Source::bytes(vec![1u8; 5000])).unwrap().run().await.unwrap_err();
    assert!(matches!(err.vendor_error(), Some(Error::Processing { .. })), "{err}");
    assert!(!err.vendor_error().unwrap().is_retryable());
    let commits = ops(&emu, Operation::Commit).len();
    assert!((2..=4).contains(&commits), "one commit a second within the 2 s wait: {commits}");
    // Retry-After: 0 is taken as a second, not as no wait at all.
    let emu = emulator(EmulatorConfig { processing_commits: 2, processing_retry_after: 0, ..small() }).await;
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    uploader.upload("0", "zero.bin", Source::bytes(vec![2u8; 5000])).unwrap().run().await.unwrap();
    assert_eq!(ops(&emu, Operation::Commit).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_down_for_a_moment_is_retried_and_as_user_needs_an_admin() {
    let emu = emulator(small()).await;
    emu.inject(Fault {
        operation: Some(Operation::Token),
        part_number: None,
        times: 1,
        action: FaultAction::Error { status: 503, code: "unavailable".into(), retry_after: None },
    });
    let ccg = Auth::ClientCredentials {
        client_id: "emulator-client-id".into(),
        client_secret: Secret::new("emulator-client-secret"),
        subject: Subject::User("1001".into()),
    };
    let uploader = Uploader::new(Client::new(emu.config_with(ccg)).unwrap()).with_options(quick_options());
    let data = Bytes::from(vec![5u8; 5000]);
    let done = uploader.upload("0", "token.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(emu.file_content(&done.output.id).unwrap(), data);
    assert_eq!(ops(&emu, Operation::Token).iter().map(|(_, s, _)| *s).collect::<Vec<_>>(), [503, 200]);
    // A user who is not an admin cannot act as another.
    let emu = emulator(EmulatorConfig { tokens: vec![("user-token".into(), "3003".into())], ..small() }).await;
    let config = emu.config_with(Auth::Token(Secret::new("user-token"))).with_as_user("1001");
    let err = Client::new(config).unwrap().create_upload_session("0", "x.bin", 5000).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::AccessDeniedInsufficientPermissions), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_stops_at_its_deadline_while_the_session_is_created() {
    let emu = emulator(small()).await;
    emu.inject(Fault {
        operation: Some(Operation::CreateUploadSession),
        part_number: None,
        times: 1,
        action: FaultAction::Error { status: 429, code: "rate_limit_exceeded".into(), retry_after: Some(4) },
    });
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    let mut upload = uploader.upload("0", "budget.bin", Source::bytes(vec![7u8; 5000])).unwrap();
    // The 429 asks for 4 s; a 1 s step must not wait for it.
    let step = tokio::time::timeout(Duration::from_millis(3500), upload.step(Duration::from_secs(1))).await;
    assert!(matches!(step, Ok(Ok(Step::Pending { .. }))), "{step:?}");
}
