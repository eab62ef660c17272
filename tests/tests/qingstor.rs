//! qingstor-multipart against its emulator over real HTTP: tricky keys at concurrency 1 and 8,
//! faults on the wire, lost answers, crashes, step mode, presigned parts, the 15-minute rule,
//! virtual-host requests, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use qingstor_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
use qingstor_multipart::signing::{SignableRequest, authorization};
use qingstor_multipart::types::ObjectPart;
use qingstor_multipart::upload_core::{Digests, Event, Hashes, PlanError, UploadError};
use qingstor_multipart::{
    Client, Credentials, Error, ErrorCode, InvalidInput, PartSize, Source, Step, UploadOptions, Uploader,
};
use tests::fake::{pattern, temp_dir};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

fn client(emu: &Emulator) -> Client {
    Client::new(emu.client_config()).unwrap()
}

fn quick_options() -> UploadOptions {
    UploadOptions {
        part_size: PartSize::Exact(4 * MIB),
        retry: qingstor_multipart::upload_core::RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        ..UploadOptions::default()
    }
}

fn md5_hex(data: &[u8]) -> String {
    qingstor_multipart::upload_core::hash::hex(&Digests::compute(Hashes::MD5, data).md5.unwrap())
}

fn md5_base64(data: &[u8]) -> String {
    Digests::compute(Hashes::MD5, data).md5_base64().unwrap()
}

fn successful_part_uploads(emu: &Emulator) -> std::collections::BTreeMap<u32, u32> {
    let mut counts = std::collections::BTreeMap::new();
    for r in emu.requests() {
        if r.operation == Some(Operation::UploadMultipart) && r.status == 201 {
            *counts.entry(r.part_number.unwrap()).or_insert(0) += 1;
        }
    }
    counts
}

fn http_date(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Sends a hand-written request (for Host headers and paths an HTTP client would not produce).
async fn raw(emu: &Emulator, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(emu.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricky_keys_at_concurrency_8_and_1_store_the_bytes_and_the_right_etag() {
    let emu = emulator().await;
    let data = Bytes::from(pattern(9 * MIB as usize + 4321, 1));
    let keys = [
        "plain.bin",
        "with space.bin",
        "plus+sign",
        "100%.txt",
        "tilde~x",
        "what?",
        "equals=sign",
        "('this is test',)",
        "中文/ファイル.bin",
    ];
    for (concurrency, keys) in [(8, &keys[..]), (1, &keys[..2])] {
        let uploader = Uploader::new(client(&emu)).with_options(UploadOptions { concurrency, ..quick_options() });
        for key in keys {
            let mut upload = uploader.upload("bucket", key, Source::bytes(data.clone())).unwrap();
            let done = upload.run().await.unwrap_or_else(|e| panic!("{concurrency} {key:?}: {e}"));
            assert_eq!(emu.object("bucket", key).unwrap(), data, "{concurrency} {key:?}");
            // The whole-object ETag is the MD5 of the bytes in order, whatever order parts finished in.
            assert_eq!(emu.object_etag("bucket", key), Some(format!("\"{}\"", md5_hex(&data))), "{key:?}");
            assert_eq!(done.output.len, data.len() as u64);
        }
    }
    assert!(emu.uploads().is_empty(), "every upload completed");
    let parts: Vec<u32> = emu
        .requests()
        .iter()
        .filter(|r| r.operation == Some(Operation::UploadMultipart) && r.key.as_deref() == Some("plain.bin"))
        .map(|r| r.part_number.unwrap())
        .collect();
    assert!(parts.contains(&0) && parts.contains(&2) && !parts.contains(&3), "parts 0..=2: {parts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_during_a_part_and_503_with_retry_after() {
    let emu = emulator().await;
    emu.inject(Fault {
        operation: Some(Operation::UploadMultipart),
        part_number: Some(1),
        times: 1,
        action: FaultAction::ResetMidBody { after: 256 * 1024 },
    });
    emu.inject(Fault {
        operation: Some(Operation::UploadMultipart),
        part_number: Some(2),
        times: 1,
        action: FaultAction::Error { status: 503, code: "service_unavailable".into(), retry_after: Some(1) },
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let options = UploadOptions {
        observer: Some(Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()))),
        ..quick_options()
    };
    let data = Bytes::from(pattern(10 * MIB as usize, 2));
    let uploader = Uploader::new(client(&emu)).with_options(options);
    let done = uploader.upload("bucket", "faults.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(emu.object("bucket", "faults.bin").unwrap(), data);
    assert!(done.report.part_retries >= 2, "{:?}", done.report);
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
    assert!(emu.requests().iter().any(|r| r.part_number == Some(1) && r.status == 0), "the reset happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_complete_answer_is_checked_with_head_object() {
    let emu = emulator().await;
    emu.inject(Fault {
        operation: Some(Operation::CompleteMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::LoseResponse,
    });
    let data = Bytes::from(pattern(5 * MIB as usize, 3));
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    let done = uploader.upload("bucket", "lost.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(emu.object("bucket", "lost.bin").unwrap(), data);
    assert_eq!(done.output.len, data.len() as u64);
    let ops: Vec<(Option<Operation>, u16, Option<String>)> = emu
        .requests()
        .into_iter()
        .map(|r| (r.operation, r.status, r.error_code))
        .filter(|r| r.0 != Some(Operation::UploadMultipart))
        .collect();
    assert!(
        ops.contains(&(Some(Operation::CompleteMultipartUpload), 404, Some("upload_not_exists".into()))),
        "{ops:?}"
    );
    assert!(ops.contains(&(Some(Operation::HeadObject), 200, None)), "{ops:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_upload_then_resume_sends_no_stored_part_again() {
    let emu = emulator().await;
    let dir = temp_dir("qingstor-crash");
    let path = dir.join("source.bin");
    let data = pattern(24 * MIB as usize + 99, 4);
    std::fs::write(&path, &data).unwrap();
    let checkpoint = dir.join("upload.json");
    emu.inject(Fault {
        operation: Some(Operation::UploadMultipart),
        part_number: None,
        times: 1000,
        action: FaultAction::Delay(Duration::from_millis(30)),
    });
    let done_parts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let d = done_parts.clone();
    let options = UploadOptions {
        concurrency: 2,
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
        let mut upload = uploader.upload("bucket", "crash.bin", Source::file(&path).unwrap()).unwrap();
        tokio::select! {
            r = upload.run() => panic!("should be interrupted: {r:?}"),
            _ = async { while done_parts.load(std::sync::atomic::Ordering::SeqCst) < 3 { tokio::time::sleep(Duration::from_millis(2)).await } } => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(checkpoint.exists());
    // A fresh client in a "new process" resumes from the checkpoint file.
    let uploader = Uploader::new(client(&emu)).with_options(UploadOptions { observer: None, ..options });
    uploader.upload("bucket", "crash.bin", Source::file(&path).unwrap()).unwrap().run().await.unwrap();
    assert_eq!(emu.object("bucket", "crash.bin").unwrap(), data);
    assert_eq!(emu.object_etag("bucket", "crash.bin"), Some(format!("\"{}\"", md5_hex(&data))));
    let counts = successful_part_uploads(&emu);
    assert_eq!(counts.len(), 7);
    assert!(counts.values().all(|&n| n == 1), "no stored part was sent twice: {counts:?}");
    assert!(!checkpoint.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_in_one_second_budgets_across_fresh_clients() {
    let emu = emulator().await;
    emu.inject(Fault {
        operation: Some(Operation::UploadMultipart),
        part_number: None,
        times: 1000,
        action: FaultAction::Delay(Duration::from_millis(400)),
    });
    let dir = temp_dir("qingstor-steps");
    let path = dir.join("source.bin");
    let data = pattern(26 * MIB as usize, 5);
    std::fs::write(&path, &data).unwrap();
    let mut saved: Option<String> = None;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 60);
        // Every step is a new request handler: a new client, the state from storage.
        let uploader = Uploader::new(client(&emu)).with_options(UploadOptions { concurrency: 2, ..quick_options() });
        let source = Source::file(&path).unwrap();
        let mut upload = match &saved {
            None => uploader.upload("bucket", "steps.bin", source).unwrap(),
            Some(json) => uploader.resume("bucket", "steps.bin", source, serde_json::from_str(json).unwrap()),
        };
        match upload.step(Duration::from_secs(1)).await.unwrap() {
            Step::Done(_) => break,
            Step::Pending { .. } => saved = Some(serde_json::to_string(&upload.into_state().unwrap()).unwrap()),
        }
    }
    assert!(steps >= 2, "{steps} steps");
    assert_eq!(emu.object("bucket", "steps.bin").unwrap(), data);
    // The whole-object MD5 carried across steps in the saved state.
    assert_eq!(emu.object_etag("bucket", "steps.bin"), Some(format!("\"{}\"", md5_hex(&data))));
    assert!(successful_part_uploads(&emu).values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_parts_are_sent_without_the_secret() {
    let emu = emulator().await;
    let backend = client(&emu);
    let key = "browser upload+=.bin";
    let upload = backend.initiate_multipart_upload("bucket", key, None).await.unwrap();
    let data = Bytes::from(pattern(5 * MIB as usize, 6));
    // The "browser": a plain HTTP client sending only what it was given.
    let browser = reqwest::Client::new();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(4 * MIB as usize).enumerate() {
        let n = i as u32;
        let md5 = md5_base64(chunk);
        let presigned = backend
            .presign_upload_multipart("bucket", key, &upload.upload_id, n, Some(&md5), Duration::from_secs(300))
            .unwrap();
        let mut request = browser.put(presigned.url.expose());
        for (name, value) in &presigned.headers {
            request = request.header(name, value);
        }
        let response = request.body(Bytes::copy_from_slice(chunk)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 201, "{}", response.text().await.unwrap());
        parts.push(ObjectPart { part_number: n, etag: Some(md5_hex(chunk)), ..ObjectPart::default() });
    }
    backend.complete_multipart_upload("bucket", key, &upload.upload_id, &parts, None).await.unwrap();
    assert_eq!(emu.object("bucket", key).unwrap(), data);

    // A presigned URL used for another key, or after it expired, is refused with QingStor's codes.
    let presigned = backend.presign("GET", "bucket", key, &[], &[], Duration::from_secs(60)).unwrap();
    let other = presigned.url.expose().replace("browser", "other");
    let response = browser.get(&other).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.text().await.unwrap().contains("\"signature_not_matched\""));
    let response = browser.get(presigned.url.expose()).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap(), data);
    let url = presigned.url.expose().to_owned();
    let (before, after) = url.split_once("&expires=").unwrap();
    let rest = after.split_once('&').map_or("", |(_, r)| r);
    let expired = format!("{before}&expires=1000000000&{rest}");
    let response = browser.get(&expired).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(response.text().await.unwrap().contains("\"request_expired\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_qingstor_codes_and_no_secret_in_errors() {
    let emu = emulator().await;
    let mut unknown = emu.client_config();
    unknown.credentials = Credentials::new("NOBODY", "x");
    let err = Client::new(unknown).unwrap().initiate_multipart_upload("bucket", "k", None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidAccessKeyId));

    let mut wrong = emu.client_config();
    wrong.credentials = Credentials::new(emu.credentials().access_key_id, "wrong-secret");
    let uploader = Uploader::new(Client::new(wrong).unwrap()).with_options(quick_options());
    let err = uploader.upload("bucket", "k.bin", Source::bytes(vec![1u8; 100])).unwrap().run().await.unwrap_err();
    let vendor = err.vendor_error().unwrap();
    assert_eq!(vendor.code(), Some(&ErrorCode::SignatureNotMatched), "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("signature_not_matched") && text.contains("401"), "{text}");
    assert!(!text.contains("wrong-secret"), "the secret never appears: {text}");
    // Not retried: a signature does not get better by waiting.
    let initiates = emu.requests().iter().filter(|r| r.operation == Some(Operation::InitiateMultipartUpload)).count();
    assert_eq!(initiates, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_request() {
    let emu = emulator().await;
    let data = Bytes::from(vec![7u8; 9 * MIB as usize]);
    let c = client(&emu);
    let with_size = |size| {
        Uploader::new(c.clone()).with_options(UploadOptions { part_size: PartSize::Exact(size), ..quick_options() })
    };
    let err = with_size(MIB).upload("bucket", "k", Source::bytes(data.clone())).unwrap().run().await.unwrap_err();
    assert_eq!(err.to_string(), "part size 1 MiB is below QingStor's minimum of 4 MiB");
    let err =
        with_size(6 * 1024 * MIB).upload("bucket", "k", Source::bytes(data.clone())).unwrap().run().await.unwrap_err();
    assert_eq!(err.to_string(), "part size 6 GiB is above QingStor's maximum of 5 GiB");
    let big = Source::reader(tokio::io::repeat(0), Some(50 * 1024 * MIB));
    let err = with_size(4 * MIB).upload("bucket", "k", big).unwrap().run().await.unwrap_err();
    assert!(matches!(err, UploadError::Plan(PlanError::TooManyParts { .. })), "{err}");
    assert!(err.to_string().contains("more than QingStor's limit of 10000"), "{err}");

    let uploader = Uploader::new(c.clone()).with_options(quick_options());
    let err = uploader.upload("bucket", "", Source::bytes(data.clone())).unwrap_err();
    assert!(matches!(err, UploadError::Input(Error::Invalid(InvalidInput::ObjectKey(_)))), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    let err = uploader.upload("Bad_Bucket", "k", Source::bytes(data.clone())).unwrap_err();
    assert!(matches!(err, UploadError::Input(Error::Invalid(InvalidInput::BucketName(_)))), "{err}");
    let err = c.upload_multipart("bucket", "k", "U", 10_001, Bytes::new(), None).await.unwrap_err();
    assert_eq!(err.to_string(), "part number 10001 is outside QingStor's range of 0 to 10000");
    assert!(emu.requests().is_empty(), "no request was sent: {:?}", emu.requests());

    // A checkpoint of another file.
    let dir = temp_dir("qingstor-other-file");
    let (a, b) = (dir.join("a.bin"), dir.join("b.bin"));
    std::fs::write(&a, pattern(9 * MIB as usize, 7)).unwrap();
    std::fs::write(&b, pattern(9 * MIB as usize, 8)).unwrap();
    let checkpoint = dir.join("state.json");
    emu.inject(Fault {
        operation: Some(Operation::UploadMultipart),
        part_number: Some(1),
        times: 1,
        action: FaultAction::Error { status: 403, code: "permission_denied".into(), retry_after: None },
    });
    let uploader =
        Uploader::new(c).with_options(UploadOptions { checkpoint: Some(checkpoint.clone()), ..quick_options() });
    uploader.upload("bucket", "cp.bin", Source::file(&a).unwrap()).unwrap().run().await.unwrap_err();
    let err = uploader.upload("bucket", "cp.bin", Source::file(&b).unwrap()).unwrap().run().await.unwrap_err();
    assert!(matches!(err, UploadError::SourceChanged(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_rules_listing_pages_and_abort() {
    let emu = emulator().await;
    let c = client(&emu);
    let small = Bytes::from(pattern(1000, 9));
    let full = Bytes::from(pattern(4 * MIB as usize, 10));
    let id = c.initiate_multipart_upload("bucket", "rules.bin", None).await.unwrap().upload_id;
    for (n, body) in [(0, &small), (1, &small), (2, &full), (5, &full), (7, &small)] {
        c.upload_multipart("bucket", "rules.bin", &id, n, body.clone(), Some(&md5_base64(body))).await.unwrap();
    }
    let err = c.upload_multipart("bucket", "rules.bin", &id, 3, full.clone(), Some(&md5_base64(&small))).await;
    assert_eq!(err.unwrap_err().code(), Some(&ErrorCode::BadDigest));
    let part = |n: u32| ObjectPart { part_number: n, ..ObjectPart::default() };
    // A part under 4 MiB that is not the last one.
    let err = c.complete_multipart_upload("bucket", "rules.bin", &id, &[part(0), part(2)], None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::EntityTooSmall), "{err}");
    assert!(err.to_string().contains("Part 0"), "{err}");
    let err = c.complete_multipart_upload("bucket", "rules.bin", &id, &[part(5), part(2)], None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidRequest), "{err}");
    let err = c.complete_multipart_upload("bucket", "rules.bin", &id, &[part(2), part(3)], None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidRequest), "{err}");
    let wrong_etag = ObjectPart { part_number: 2, etag: Some(md5_hex(&small)), ..ObjectPart::default() };
    let err = c.complete_multipart_upload("bucket", "rules.bin", &id, &[wrong_etag], None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidRequest), "{err}");

    // List Multipart pages after the marker; count is the number of parts in the upload.
    let page = c.list_multipart("bucket", "rules.bin", &id, Some(2), None).await.unwrap();
    assert_eq!(page.object_parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(page.count, Some(5));
    let page = c.list_multipart("bucket", "rules.bin", &id, Some(2), Some(1)).await.unwrap();
    assert_eq!(page.object_parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), [2, 5]);
    assert_eq!(page.object_parts[0].etag.as_deref(), Some(md5_hex(&full).as_str()));
    assert_eq!(page.object_parts[0].size, Some(4 * MIB));
    let all = c.list_all_parts("bucket", "rules.bin", &id).await.unwrap();
    assert_eq!(all.len(), 5);

    // Gaps and left-out parts are allowed; the object is what was listed.
    c.complete_multipart_upload("bucket", "rules.bin", &id, &[part(2), part(5), part(7)], Some("\"abc\""))
        .await
        .unwrap();
    let mut expected = full.to_vec();
    expected.extend_from_slice(&full);
    expected.extend_from_slice(&small);
    assert_eq!(emu.object("bucket", "rules.bin").unwrap(), expected);
    assert_eq!(emu.object_etag("bucket", "rules.bin").as_deref(), Some("\"abc\""), "the ETag is kept as sent");
    let err = c.list_multipart("bucket", "rules.bin", &id, None, None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::UploadNotExists));
    // Abort answers 204 for a finished upload and for one that never existed.
    c.abort_multipart_upload("bucket", "rules.bin", &id).await.unwrap();
    c.abort_multipart_upload("bucket", "rules.bin", "no-such-upload").await.unwrap();

    // List Multipart Uploads: sorted by key then creation, paged with has_more and the markers.
    let mut ids = Vec::new();
    for key in ["u/b", "u/a", "u/a", "u/c", "v/x"] {
        ids.push((key, c.initiate_multipart_upload("bucket", key, None).await.unwrap().upload_id));
    }
    let mut seen = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = c
            .list_multipart_uploads("bucket", Some("u/"), key_marker.as_deref(), id_marker.as_deref(), Some(2))
            .await
            .unwrap();
        seen.extend(page.uploads.iter().map(|u| (u.key.clone(), u.upload_id.clone())));
        if page.has_more != Some(true) {
            break;
        }
        assert!(seen.len() < 10);
        (key_marker, id_marker) = (page.next_key_marker, page.next_upload_id_marker);
    }
    let expected: Vec<(String, String)> =
        [1, 2, 0, 3].iter().map(|&i| (ids[i].0.to_owned(), ids[i].1.clone())).collect();
    assert_eq!(seen, expected);
    for (key, id) in &ids {
        c.abort_multipart_upload("bucket", key, id).await.unwrap();
    }
    assert!(emu.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_more_than_15_minutes_off_is_refused() {
    let emu = emulator().await;
    let creds = emu.credentials();
    for (minutes, use_x_qs_date, expect_ok) in
        [(-20i64, false, false), (20, true, false), (-10, false, true), (10, true, true)]
    {
        let date = http_date(chrono::Utc::now() + chrono::Duration::minutes(minutes));
        let header = if use_x_qs_date { "x-qs-date" } else { "Date" };
        let req = SignableRequest::new("POST", "/bucket/skew.bin").query("uploads", "").header(header, &date);
        let response = reqwest::Client::new()
            .post(format!("{}/bucket/skew.bin?uploads", emu.endpoint()))
            .header(header, &date)
            .header("Authorization", authorization(&creds, &req))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        if expect_ok {
            assert_eq!(status, 200, "{minutes} min: {body}");
        } else {
            assert_eq!(status, 403, "{minutes} min");
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(doc["code"], "request_expired");
            assert!(doc["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host_requests_sign_the_bucket_and_reach_the_same_store() {
    let emu = emulator().await;
    let date = http_date(chrono::Utc::now());
    // `<bucket>.<zone>.<host>`, path `/<key>`; the canonical resource carries `/<bucket>`.
    let req = SignableRequest::new("PUT", "/bucket/v%20host.bin").header("Date", &date);
    let auth = authorization(&emu.credentials(), &req);
    let answer = raw(
        &emu,
        &format!(
            "PUT /v%20host.bin HTTP/1.1\r\nHost: bucket.emu1.qingstor.test:{}\r\nDate: {date}\r\n\
             Authorization: {auth}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            emu.addr().port()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("server: qingstor"), "{answer}");
    assert_eq!(emu.object("bucket", "v host.bin").as_deref(), Some(&b"hello"[..]));
    // A bucket-level virtual-host request signs `/<bucket>/`.
    let req = SignableRequest::new("GET", "/bucket/").query("uploads", "").header("Date", &date);
    let auth = authorization(&emu.credentials(), &req);
    let answer = raw(
        &emu,
        &format!(
            "GET /?uploads HTTP/1.1\r\nHost: bucket.emu1.qingstor.test\r\nDate: {date}\r\n\
             Authorization: {auth}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"has_more\":false"), "{answer}");
    // The same path-style path signed without the bucket is refused.
    let req = SignableRequest::new("GET", "/").query("uploads", "").header("Date", &date);
    let auth = authorization(&emu.credentials(), &req);
    let answer = raw(
        &emu,
        &format!(
            "GET /?uploads HTTP/1.1\r\nHost: bucket.emu1.qingstor.test\r\nDate: {date}\r\n\
             Authorization: {auth}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("signature_not_matched"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_with_a_range() {
    let emu = emulator().await;
    let c = client(&emu);
    let source = Bytes::from(pattern(6 * MIB as usize, 11));
    c.put_object("bucket", "source object.bin", source.clone(), Some(&md5_base64(&source)), None).await.unwrap();
    let id = c.initiate_multipart_upload("bucket", "copy.bin", None).await.unwrap().upload_id;
    let out = c
        .upload_multipart_copy("bucket", "copy.bin", &id, 0, "bucket", "source object.bin", Some((0, 4 * MIB - 1)))
        .await
        .unwrap();
    assert_eq!(out.etag, Some(format!("\"{}\"", md5_hex(&source[..4 * MIB as usize]))));
    c.upload_multipart_copy("bucket", "copy.bin", &id, 1, "bucket", "source object.bin", None).await.unwrap();
    let parts = c.list_all_parts("bucket", "copy.bin", &id).await.unwrap();
    c.complete_multipart_upload("bucket", "copy.bin", &id, &parts, None).await.unwrap();
    let mut expected = source[..4 * MIB as usize].to_vec();
    expected.extend_from_slice(&source);
    assert_eq!(emu.object("bucket", "copy.bin").unwrap(), expected);
    let meta = c.head_object("bucket", "copy.bin").await.unwrap();
    assert_eq!(meta.len, expected.len() as u64);
    let err = c
        .upload_multipart_copy("bucket", "copy.bin", "gone", 0, "bucket", "source object.bin", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::UploadNotExists));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_upload_is_gone_starts_over_instead_of_failing_forever() {
    let emu = emulator().await;
    let dir = temp_dir("qingstor-gone");
    let path = dir.join("source.bin");
    let data = pattern(9 * MIB as usize + 17, 12);
    std::fs::write(&path, &data).unwrap();
    let c = client(&emu);
    let uploader = Uploader::new(c.clone()).with_options(UploadOptions { concurrency: 1, ..quick_options() });
    let mut upload = uploader.upload("bucket", "gone.bin", Source::file(&path).unwrap()).unwrap();
    upload.step(Duration::from_millis(1)).await.unwrap();
    let state = upload.into_state().unwrap();
    // A lifecycle rule (or another process) aborts the upload.
    c.abort_multipart_upload("bucket", "gone.bin", &state.session.upload_id).await.unwrap();
    uploader.resume("bucket", "gone.bin", Source::file(&path).unwrap(), state).run().await.unwrap();
    assert_eq!(emu.object("bucket", "gone.bin").unwrap(), data);
    assert_eq!(emu.object_etag("bucket", "gone.bin"), Some(format!("\"{}\"", md5_hex(&data))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_storage_keeps_plain_files_and_stays_inside_its_directory() {
    let dir = temp_dir("qingstor-dir");
    let data_dir = dir.join("data");
    let emu = Emulator::start(EmulatorConfig { data_dir: Some(data_dir.clone()), ..EmulatorConfig::default() })
        .await
        .unwrap();
    let data = Bytes::from(pattern(9 * MIB as usize + 5, 13));
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    uploader.upload("bucket", "nested/dir/file.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(std::fs::read(data_dir.join("bucket/nested/dir/file.bin")).unwrap(), data);
    let leftovers: Vec<_> = std::fs::read_dir(data_dir.join(".uploads")).unwrap().collect();
    assert!(leftovers.is_empty(), "part files are removed after Complete: {leftovers:?}");

    // upload_file: one Put Object for a file that fits in one part, multipart otherwise.
    let small = dir.join("small.bin");
    std::fs::write(&small, pattern(3 * MIB as usize, 14)).unwrap();
    let done = uploader.upload_file("bucket", "small.bin", &small).await.unwrap();
    assert_eq!((done.len, done.parts), (3 * MIB, 1));
    assert_eq!(done.md5, Some(md5_hex(&std::fs::read(&small).unwrap())));
    assert_eq!(std::fs::read(data_dir.join("bucket/small.bin")).unwrap(), std::fs::read(&small).unwrap());
    let large = dir.join("large.bin");
    std::fs::write(&large, &data).unwrap();
    let done = uploader.upload_file("bucket", "large.bin", &large).await.unwrap();
    assert_eq!(done.parts, 3);
    assert_eq!(std::fs::read(data_dir.join("bucket/large.bin")).unwrap(), data);
    let puts = emu.requests().iter().filter(|r| r.operation == Some(Operation::PutObject)).count();
    assert_eq!(puts, 1, "only the small file went in one Put Object");

    // A raw request (our client refuses such keys before sending) with `..` segments.
    let date = http_date(chrono::Utc::now());
    let req = SignableRequest::new("PUT", "/bucket/a/../../../escaped.bin").header("Date", &date);
    let auth = authorization(&emu.credentials(), &req);
    let answer = raw(
        &emu,
        &format!(
            "PUT /bucket/a/../../../escaped.bin HTTP/1.1\r\nHost: {}\r\nDate: {date}\r\nAuthorization: {auth}\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\nx",
            emu.addr()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid_object_name"), "{answer}");
    assert!(!dir.join("escaped.bin").exists() && !dir.parent().unwrap().join("escaped.bin").exists());
}

// Regressions found in review: each failed before its fix.

/// Sends a signed PUT announcing `declared` bytes, writes `sent`, then (when short) stops
/// writing as a client that dies mid-body does; returns the answer's status line.
async fn signed_put(
    emu: &Emulator,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    declared: usize,
    sent: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let date = http_date(chrono::Utc::now());
    let mut req = SignableRequest::new("PUT", path).header("Date", &date);
    for (n, v) in query {
        req = req.query(n, v);
    }
    for (n, v) in headers {
        req = req.header(n, v);
    }
    let auth = authorization(&emu.credentials(), &req);
    let qs: Vec<String> =
        query.iter().map(|(n, v)| if v.is_empty() { (*n).to_owned() } else { format!("{n}={v}") }).collect();
    let target = if qs.is_empty() { path.to_owned() } else { format!("{path}?{}", qs.join("&")) };
    let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: {}\r\nDate: {date}\r\nAuthorization: {auth}\r\n{extra}Content-Length: {declared}\r\nConnection: close\r\n\r\n",
        emu.addr()
    );
    let mut stream = tokio::net::TcpStream::connect(emu.addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    if sent.len() < declared {
        stream.shutdown().await.unwrap();
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    // The emulator logs the request after the connection closes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_is_never_stored() {
    let emu = emulator().await;
    let c = client(&emu);
    c.put_object("bucket", "obj.bin", Bytes::from(vec![b'A'; 100]), None, None).await.unwrap();
    let answer = signed_put(&emu, "/bucket/obj.bin", &[], &[], 100, b"BBBBBBBBBB").await;
    assert!(!answer.contains("201"), "{answer}");
    assert_eq!(emu.object("bucket", "obj.bin").unwrap(), Bytes::from(vec![b'A'; 100]), "the object is untouched");
    let id = c.initiate_multipart_upload("bucket", "mp.bin", None).await.unwrap().upload_id;
    signed_put(
        &emu,
        "/bucket/mp.bin",
        &[("part_number", "0"), ("upload_id", &id)],
        &[],
        4 * MIB as usize,
        &[7u8; 1000],
    )
    .await;
    let parts = c.list_multipart("bucket", "mp.bin", &id, None, None).await.unwrap();
    assert!(parts.object_parts.is_empty(), "a fragment is not a part: {:?}", parts.object_parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_the_emulator_does_not_have_never_overwrite_objects() {
    let emu = emulator().await;
    let c = client(&emu);
    c.put_object("bucket", "obj", Bytes::from_static(b"hello"), None, None).await.unwrap();
    c.put_object("bucket", "dst", Bytes::from_static(b"precious"), None, None).await.unwrap();
    let copy = signed_put(&emu, "/bucket/dst", &[], &[("x-qs-copy-source", "/bucket/obj")], 0, b"").await;
    let append = signed_put(&emu, "/bucket/obj", &[("append", ""), ("position", "5")], &[], 5, b"world").await;
    assert!(copy.contains("405") && append.contains("405"), "{copy} / {append}");
    assert_eq!(emu.object("bucket", "dst").unwrap(), Bytes::from_static(b"precious"));
    assert_eq!(emu.object("bucket", "obj").unwrap(), Bytes::from_static(b"hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_are_not_utf8_are_refused_not_merged() {
    let emu = emulator().await;
    let first = signed_put(&emu, "/bucket/%FF", &[], &[], 3, b"one").await;
    assert!(first.contains("400"), "{first}");
    let codes: Vec<Option<String>> = emu.requests().iter().map(|r| r.error_code.clone()).collect();
    assert_eq!(codes, [Some("invalid_object_name".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_files_upload_as_empty_objects() {
    let emu = emulator().await;
    let dir = temp_dir("qingstor-empty");
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    let done = uploader.upload_file("bucket", "empty.bin", &empty).await.unwrap();
    assert_eq!((done.len, done.parts), (0, 1));
    uploader.upload("bucket", "empty2.bin", Source::bytes(Bytes::new())).unwrap().run().await.unwrap();
    assert_eq!(emu.object("bucket", "empty.bin").unwrap(), Bytes::new());
    assert_eq!(emu.object("bucket", "empty2.bin").unwrap(), Bytes::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_complete_does_not_outlive_a_step_budget_forever() {
    let emu = emulator().await;
    emu.inject(Fault {
        operation: Some(Operation::CompleteMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::Delay(Duration::from_secs(3600)),
    });
    // Calls without a large body have an overall timeout (120 s by default).
    let mut config = emu.client_config();
    config.call_timeout = Duration::from_secs(1);
    let uploader = Uploader::new(Client::new(config).unwrap()).with_options(quick_options());
    let mut upload =
        uploader.upload("bucket", "stall.bin", Source::bytes(Bytes::from(pattern(5 * MIB as usize, 4)))).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), upload.step(Duration::from_secs(2))).await;
    assert!(outcome.is_ok(), "the step came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_reset_on_a_request_without_a_body_still_resets() {
    let emu = emulator().await;
    emu.inject(Fault {
        operation: Some(Operation::InitiateMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::ResetMidBody { after: 0 },
    });
    let err = client(&emu).initiate_multipart_upload("bucket", "k", None).await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_uploads_page_by_page_while_aborting_them_misses_none() {
    let emu = emulator().await;
    let c = client(&emu);
    for _ in 0..3 {
        c.initiate_multipart_upload("bucket", "same-key", None).await.unwrap();
    }
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    let mut aborted = 0;
    loop {
        let page = c
            .list_multipart_uploads("bucket", None, key_marker.as_deref(), id_marker.as_deref(), Some(1))
            .await
            .unwrap();
        for u in &page.uploads {
            c.abort_multipart_upload("bucket", &u.key, &u.upload_id).await.unwrap();
            aborted += 1;
        }
        if page.has_more != Some(true) {
            break;
        }
        (key_marker, id_marker) = (page.next_key_marker, page.next_upload_id_marker);
    }
    assert_eq!(aborted, 3);
    assert!(emu.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_mode_still_checks_content_md5() {
    let emu = Emulator::start(EmulatorConfig { discard_bodies: true, ..EmulatorConfig::default() }).await.unwrap();
    let uploader = Uploader::new(client(&emu)).with_options(quick_options());
    let data = Bytes::from(pattern(9 * MIB as usize, 3));
    let done = uploader.upload("bucket", "bench.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(done.output.len, data.len() as u64);
    let c = client(&emu);
    let id = c.initiate_multipart_upload("bucket", "bad.bin", None).await.unwrap().upload_id;
    let err = c.upload_multipart("bucket", "bad.bin", &id, 0, data.slice(..1000), Some(&md5_base64(b"x"))).await;
    assert_eq!(err.unwrap_err().code(), Some(&ErrorCode::BadDigest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_storage_refuses_keys_that_collide_and_leaves_no_temporary_files() {
    use qingstor_multipart::upload_core::Classify;
    let dir = temp_dir("qingstor-collide");
    let emu =
        Emulator::start(EmulatorConfig { data_dir: Some(dir.clone()), ..EmulatorConfig::default() }).await.unwrap();
    let c = client(&emu);
    c.put_object("bucket", "a", Bytes::from_static(b"x"), None, None).await.unwrap();
    let err = c.put_object("bucket", "a/b", Bytes::from_static(b"y"), None, None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidObjectName), "{err}");
    assert!(!err.is_retryable());
    c.put_object("bucket", "x/y", Bytes::from_static(b"y"), None, None).await.unwrap();
    let uploader = Uploader::new(c).with_options(quick_options());
    let err =
        uploader.upload("bucket", "x", Source::bytes(Bytes::from_static(b"xx"))).unwrap().run().await.unwrap_err();
    assert_eq!(err.vendor_error().and_then(Error::code), Some(&ErrorCode::InvalidObjectName), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.join(".uploads")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().starts_with("assemble-")), "{leftovers:?}");
}

/// A server that answers every request with one canned response.
async fn canned(answer: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_page_is_classified_by_status_and_a_cut_answer_is_retried() {
    use qingstor_multipart::Config;
    use qingstor_multipart::upload_core::Classify;
    let at = |endpoint: &str| {
        Client::new(Config::new(Credentials::new("ak", "sk")).with_endpoint(endpoint).unwrap().with_zone("pek3a"))
            .unwrap()
    };
    let html =
        canned("HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: 22\r\n\r\n<html>forbidden</html>")
            .await;
    let err = at(&html).initiate_multipart_upload("bucket", "k", None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::PermissionDenied), "{err:?}");
    assert!(!err.is_retryable());
    let cut =
        canned("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"upload_id\":\"abc")
            .await;
    let err = at(&cut).initiate_multipart_upload("bucket", "k", None).await.unwrap_err();
    assert!(err.is_retryable(), "a body cut off in transit is transient: {err:?}");
}

/// The official vectors (reference §1.9 and the multipart-shaped §1.10), sent over HTTP with
/// their published signatures: the emulator accepts them, so its verification is the SDKs'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_vectors_pass_the_emulators_signature_check() {
    let emu = Emulator::start(EmulatorConfig {
        keys: vec![
            ("HOKUMWFMUIDFDIWEKLCA".into(), "YD0vaP82NQX6R7t0lZVtNtC1JsnkGxgFcXAiwLCN".into()),
            ("ENV_ACCESS_KEY_ID".into(), "ENV_SECRET_ACCESS_KEY".into()),
            ("ACCESS_KEY_ID".into(), "SECRET_ACCESS_KEY".into()),
        ],
        buckets: vec!["mybucket".into(), "bucket-name".into(), "aaa".into()],
        check_time: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let d = "Sun, 16 Aug 2015 13:25:10 GMT";
    let u = "4d26b37a469230619604ecdc0e314782";
    let host = emu.addr();
    let send = |line: String, headers: String| {
        let emu = &emu;
        async move {
            raw(emu, &format!("{line} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"))
                .await
                .lines()
                .next()
                .unwrap()
                .to_owned()
        }
    };
    let cases: Vec<(String, String, &str)> = vec![
        (
            "POST /mybucket/large-object?uploads".into(),
            format!(
                "Host: {host}\r\nDate: {d}\r\nAuthorization: QS HOKUMWFMUIDFDIWEKLCA:PVqYVdiwSj0UEaW3PaKY6HK7TRAOZSmMG6I3nyL9DPU=\r\nContent-Length: 0\r\n"
            ),
            "200",
        ),
        (
            format!("PUT /mybucket/large-object?part_number=0&upload_id={u}"),
            format!(
                "Host: {host}\r\nDate: {d}\r\nContent-MD5: XrY7u+Ae7tCTyyK7j1rNww==\r\nContent-Type: application/octet-stream\r\nAuthorization: QS HOKUMWFMUIDFDIWEKLCA:2eubYBpMgWqINiV4aafqiRyKWMJVY97I/C179KxdzPc=\r\nContent-Length: 11\r\n\r\nhello world"
            ),
            "404",
        ),
        (
            format!("GET /mybucket/large-object?upload_id={u}&limit=10&part_number_marker=3"),
            format!(
                "Host: {host}\r\nDate: {d}\r\nAuthorization: QS HOKUMWFMUIDFDIWEKLCA:+P/wKENUbAv6KrZjK8bpGfg/6KfA0o1DOeFX36gPQ2s=\r\n"
            ),
            "404",
        ),
        (
            "GET /?uploads".into(),
            format!(
                "Host: mybucket.pek3a.qingstor.com\r\nDate: {d}\r\nAuthorization: QS HOKUMWFMUIDFDIWEKLCA:1k8CSJ7S7kjWy+rfbbVHSKo7RrIRgwzG/JtqNKpq5kk=\r\n"
            ),
            "200",
        ),
        (
            format!("PUT /mybucket/%E4%B8%AD%E6%96%87%E5%88%86%E5%9D%97%E6%B5%8B%E8%AF%95?part_number=2&upload_id={u}"),
            format!(
                "Host: {host}\r\nDate: {d}\r\nContent-Type: application/octet-stream\r\nAuthorization: QS HOKUMWFMUIDFDIWEKLCA:kNasy7bDQj+/TyaGGpe13ytU6WxjO60Ds3BKphbc+rE=\r\nContent-Length: 0\r\n"
            ),
            "404",
        ),
        (
            format!("PUT /mybucket/large-object?part_number=1&upload_id={u}"),
            format!(
                "Host: {host}\r\nx-qs-date: {d}\r\nContent-Type: application/octet-stream\r\nAuthorization: QS HOKUMWFMUIDFDIWEKLCA:lofqO5Uu/fmJWBKAFmbaPQNdHBBb8ELbiCGTzWUD2ek=\r\nContent-Length: 0\r\n"
            ),
            "404",
        ),
        (
            format!(
                "PUT /mybucket/large-object?part_number=3&upload_id={u}&access_key_id=HOKUMWFMUIDFDIWEKLCA&expires=1479107162&signature=FveuQPYoJuiE7568n2jLlGKB52RLZ0BK0VPulmghj9Y%3D"
            ),
            format!("Host: {host}\r\nContent-Length: 0\r\n"),
            "404",
        ),
        (
            "GET /bucket-name/%E4%B8%AD%E6%96%87".into(),
            format!(
                "Host: {host}\r\nDate: Mon, 01 Jan 0001 00:00:00 GMT\r\nAuthorization: QS ENV_ACCESS_KEY_ID:XsTXX50kzqBf92zLG1aIUIJmZ0hqIHoaHgkumwnV3fs=\r\n"
            ),
            "404",
        ),
        (
            "GET /aaa/bbb/ccc-ddd?upload_id=0".into(),
            format!(
                "Host: {host}\r\nDate: Thu, 01 Sep 2016 15:30:00 GMT\r\nContent-Type: application/json\r\nAuthorization: QS ACCESS_KEY_ID:pA7G9qo4iQ6YHu7p4fX9Wcg4V9S6Mcgvz7p/0wEdz78=\r\n"
            ),
            "404",
        ),
    ];
    for (line, headers, status) in cases {
        let answer = send(line.clone(), headers.clone()).await;
        assert!(answer.contains(status), "{line}: {answer}");
        // The same request with one signature character changed is refused.
        let tampered_line = line.replacen("signature=F", "signature=G", 1);
        let tampered = headers.replacen("QS HOKUMWFMUIDFDIWEKLCA:", "QS HOKUMWFMUIDFDIWEKLCA:x", 1).replacen(
            "_KEY_ID:",
            "_KEY_ID:x",
            1,
        );
        let answer = send(tampered_line, tampered).await;
        assert!(answer.contains("401"), "{line} tampered: {answer}");
    }
    // The 404s are the upload that does not exist, after the signature checked out.
    let codes: std::collections::BTreeSet<String> =
        emu.requests().iter().filter_map(|r| r.error_code.clone()).collect();
    assert!(
        codes.iter().all(|c| [
            "upload_not_exists",
            "object_not_exists",
            "invalid_access_key_id",
            "signature_not_matched"
        ]
        .contains(&c.as_str())),
        "{codes:?}"
    );
}

/// The requests since `from` in the emulator's log, and the refused ones among them.
fn refused_since(emu: &Emulator, from: usize) -> (usize, Vec<qingstor_multipart::emulator::LoggedRequest>) {
    let log = emu.requests();
    let refused = log[from..].iter().filter(|r| r.status >= 300).cloned().collect();
    (log.len() - from, refused)
}

/// A server clock 30 minutes ahead of this machine's, or behind it: beyond QingStor's 15
/// minutes. The client is refused once with `request_expired`, learns the offset from the
/// answer's Date, signs that request again and everything after it with the corrected time: the
/// upload goes through with one refused request, not one per part. A client that only presigns
/// cannot learn the offset by itself: its URLs are refused until one corrected call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_local_clock_is_corrected_after_one_refused_request() {
    let data = Bytes::from(pattern(9 * MIB as usize + 4321, 21));
    for minutes in [30i64, -30] {
        let what = format!("server {minutes:+} min");
        let skew = chrono::Duration::minutes(minutes);
        let emu = Emulator::start(EmulatorConfig { clock_offset: skew, ..EmulatorConfig::default() }).await.unwrap();
        let c = client(&emu);
        assert_eq!(c.clock_offset(), chrono::Duration::zero());
        let uploader = Uploader::new(c.clone()).with_options(quick_options());
        let key = format!("skewed {minutes}.bin");
        let mut upload = uploader.upload("bucket", &key, Source::bytes(data.clone())).unwrap();
        let done = upload.run().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((done.report.parts_uploaded, done.report.part_requests), (3, 3), "{what}");
        assert_eq!(emu.object("bucket", &key).unwrap(), data, "{what}");
        let log = emu.requests();
        let (sent, refused) = refused_since(&emu, 0);
        assert_eq!(refused.len(), 1, "{what}: {refused:?}");
        assert_eq!(log[0].error_code.as_deref(), Some("request_expired"), "{what}");
        assert_eq!(log[0].operation, Some(Operation::InitiateMultipartUpload), "{what}");
        // Initiate twice, 3 parts, Complete, and whatever checks the uploader makes.
        assert!(sent >= 6, "{what}: {sent}");
        assert_eq!(successful_part_uploads(&emu).values().sum::<u32>(), 3, "{what}");
        assert!((c.clock_offset() - skew).num_seconds().abs() <= 2, "{what}: {:?}", c.clock_offset());
        // Clones share the offset: no more refusals.
        let from = emu.requests().len();
        c.clone().head_object("bucket", &key).await.unwrap();
        assert!(refused_since(&emu, from).1.is_empty(), "{what}");

        // A fresh client used only to presign: with the server 30 minutes ahead its URLs have
        // expired before they are made (30 minutes behind, they simply last longer); after one
        // call, corrected as above, they are accepted.
        let browser = reqwest::Client::new();
        let fresh = client(&emu);
        let presign = |c: &Client| c.presign("GET", "bucket", &key, &[], &[], Duration::from_secs(600)).unwrap();
        let early = browser.get(presign(&fresh).url.expose()).send().await.unwrap();
        let expected = if minutes > 0 { 403 } else { 200 };
        assert_eq!(early.status().as_u16(), expected, "{what}: {}", early.text().await.unwrap());
        let from = emu.requests().len();
        fresh.list_multipart_uploads("bucket", None, None, None, None).await.unwrap();
        assert_eq!(refused_since(&emu, from), (2, vec![emu.requests()[from].clone()]), "{what}");
        let response = browser.get(presign(&fresh).url.expose()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{what}");
        assert_eq!(response.bytes().await.unwrap(), data, "{what}");
    }
}

/// A stale offset (the server's clock was set right meanwhile) is corrected the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_clock_offset_is_corrected_again() {
    let emu = emulator().await;
    let c = client(&emu);
    c.set_clock_offset(chrono::Duration::hours(-2));
    c.initiate_multipart_upload("bucket", "stale.bin", None).await.unwrap();
    assert!(c.clock_offset().num_seconds().abs() <= 2, "{:?}", c.clock_offset());
    let log = emu.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].error_code.as_deref(), Some("request_expired"));
    assert_eq!(log[1].status, 200);
}
