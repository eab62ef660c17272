//! oss-multipart against its emulator over real HTTP: both signature versions, tricky keys,
//! faults on the wire, lost answers, crashes, step mode, presigned parts, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
use oss_multipart::types::{CompletePart, CompleteParts, ListUploadsPage, ObjectOptions};
use oss_multipart::upload_core::{Event, PlanError, UploadError};
use oss_multipart::{
    Client, Credentials, ErrorCode, PartSize, SignatureVersion, Source, Step, UploadOptions, Uploader,
};
use tests::fake::{pattern, temp_dir};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

fn client(emu: &Emulator, version: SignatureVersion) -> Client {
    Client::new(emu.client_config().with_signature_version(version)).unwrap()
}

fn quick_options() -> UploadOptions {
    UploadOptions {
        part_size: PartSize::Exact(256 * KIB),
        retry: oss_multipart::upload_core::RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        ..UploadOptions::default()
    }
}

fn successful_part_uploads(emu: &Emulator) -> std::collections::BTreeMap<u32, u32> {
    let mut counts = std::collections::BTreeMap::new();
    for r in emu.requests() {
        if r.operation == Some(Operation::UploadPart) && r.status == 200 {
            *counts.entry(r.part_number.unwrap()).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_with_v1_and_v4_and_tricky_keys() {
    let emu = emulator().await;
    let data = Bytes::from(pattern(MIB as usize + 4321, 1));
    let keys = [
        "plain.bin",
        "with space.bin",
        "plus+sign",
        "100%.txt",
        "tilde~x",
        "what?",
        "hash#tag",
        "dir//twice",
        "中文/ファイル.bin",
    ];
    for version in [SignatureVersion::V1, SignatureVersion::V4] {
        let uploader = Uploader::new(client(&emu, version)).with_options(quick_options());
        for key in keys {
            let mut upload = uploader.upload("bucket", key, Source::bytes(data.clone())).unwrap();
            let done = upload.run().await.unwrap_or_else(|e| panic!("{version:?} {key:?}: {e}"));
            assert_eq!(emu.object("bucket", key).unwrap(), data, "{version:?} {key:?}");
            assert_eq!(done.digests.crc64, Some(oss_multipart::upload_core::hash::crc64::crc64(&data)));
        }
    }
    assert!(emu.uploads().is_empty(), "every upload completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_during_a_part_and_503_with_retry_after() {
    let emu = emulator().await;
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(2),
        times: 1,
        action: FaultAction::ResetMidBody { after: 64 * 1024 },
    });
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(3),
        times: 1,
        action: FaultAction::Error { status: 503, code: "ServiceUnavailable".into(), retry_after: Some(1) },
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let options = UploadOptions {
        observer: Some(Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()))),
        ..quick_options()
    };
    let data = Bytes::from(pattern(MIB as usize, 2));
    let uploader = Uploader::new(client(&emu, SignatureVersion::V4)).with_options(options);
    let done = uploader.upload("bucket", "faults.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(emu.object("bucket", "faults.bin").unwrap(), data);
    assert!(done.report.part_retries >= 2, "{:?}", done.report);
    let delays: Vec<Duration> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|ev| match ev {
            Event::PartRetrying { number: 3, delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [Duration::from_secs(1)], "Retry-After: 1 was honoured");
    let reset = emu.requests().iter().any(|r| r.part_number == Some(2) && r.status == 0);
    assert!(reset, "the reset happened");
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
    let data = Bytes::from(pattern(700 * KIB as usize, 3));
    let uploader = Uploader::new(client(&emu, SignatureVersion::V4)).with_options(quick_options());
    let done = uploader.upload("bucket", "lost.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(emu.object("bucket", "lost.bin").unwrap(), data);
    assert_eq!(done.output.crc64, done.digests.crc64);
    let ops: Vec<(Option<Operation>, u16, Option<String>)> = emu
        .requests()
        .into_iter()
        .map(|r| (r.operation, r.status, r.error_code))
        .filter(|r| r.0 != Some(Operation::UploadPart))
        .collect();
    assert!(ops.contains(&(Some(Operation::CompleteMultipartUpload), 404, Some("NoSuchUpload".into()))), "{ops:?}");
    assert!(ops.contains(&(Some(Operation::HeadObject), 200, None)), "{ops:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_upload_then_resume_sends_no_stored_part_again() {
    let emu = emulator().await;
    let dir = temp_dir("oss-crash");
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
    let uploader = Uploader::new(client(&emu, SignatureVersion::V4)).with_options(options.clone());
    {
        let mut upload = uploader.upload("bucket", "crash.bin", Source::file(&path).unwrap()).unwrap();
        tokio::select! {
            r = upload.run() => panic!("should be interrupted: {r:?}"),
            _ = async { while done_parts.load(std::sync::atomic::Ordering::SeqCst) < 5 { tokio::time::sleep(Duration::from_millis(2)).await } } => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(checkpoint.exists());
    // A fresh client in a "new process" resumes from the checkpoint file.
    let uploader =
        Uploader::new(client(&emu, SignatureVersion::V4)).with_options(UploadOptions { observer: None, ..options });
    let mut upload = uploader.upload("bucket", "crash.bin", Source::file(&path).unwrap()).unwrap();
    upload.run().await.unwrap();
    assert_eq!(emu.object("bucket", "crash.bin").unwrap(), data);
    let counts = successful_part_uploads(&emu);
    assert_eq!(counts.len(), 13);
    assert!(counts.values().all(|&n| n == 1), "no stored part was sent twice: {counts:?}");
    assert!(!checkpoint.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_in_one_second_budgets_across_fresh_clients() {
    let emu = emulator().await;
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: None,
        times: 1000,
        action: FaultAction::Delay(Duration::from_millis(150)),
    });
    let dir = temp_dir("oss-steps");
    let path = dir.join("source.bin");
    let data = pattern(8 * MIB as usize, 5);
    std::fs::write(&path, &data).unwrap();
    let mut saved: Option<String> = None;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 60);
        // Every step is a new request handler: a new client, the state from storage.
        let uploader = Uploader::new(client(&emu, SignatureVersion::V4)).with_options(quick_options());
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
    assert!(successful_part_uploads(&emu).values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_parts_are_sent_without_the_secret() {
    let emu = emulator().await;
    for version in [SignatureVersion::V1, SignatureVersion::V4] {
        let backend = client(&emu, version);
        let key = format!("browser {version:?}+.bin");
        let upload = backend.initiate_multipart_upload("bucket", &key, &ObjectOptions::default()).await.unwrap();
        let data = Bytes::from(pattern(300 * KIB as usize, 6));
        // The "browser": a client whose credentials are wrong, sending only what it was given.
        let browser = Client::new(emu.client_config().with_signature_version(version)).unwrap();
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(150 * KIB as usize).enumerate() {
            let n = i as u32 + 1;
            let md5 = oss_multipart::upload_core::Digests::compute(oss_multipart::upload_core::Hashes::MD5, chunk)
                .md5_base64();
            let presigned = backend
                .presign_upload_part("bucket", &key, &upload.upload_id, n, md5.as_deref(), Duration::from_secs(300))
                .unwrap();
            let headers = browser.send_presigned(&presigned, Bytes::copy_from_slice(chunk)).await.unwrap();
            let etag = headers.get("etag").unwrap().to_str().unwrap().to_owned();
            parts.push(CompletePart { part_number: n, etag });
        }
        backend
            .complete_multipart_upload("bucket", &key, &upload.upload_id, &CompleteParts::List(parts))
            .await
            .unwrap();
        assert_eq!(emu.object("bucket", &key).unwrap(), data, "{version:?}");
    }
    // A tampered URL is refused with OSS's code.
    let backend = client(&emu, SignatureVersion::V4);
    let mut presigned = backend.presign("GET", "bucket", "whatever", &[], &[], Duration::from_secs(60)).unwrap();
    let tampered = presigned.url.expose().replace("whatever", "other");
    presigned.url = oss_multipart::upload_core::Secret::new(tampered);
    let err = backend.send_presigned(&presigned, Bytes::new()).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::SignatureDoesNotMatch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_oss_codes_and_the_string_to_sign() {
    let emu = emulator().await;
    let mut unknown = emu.client_config();
    unknown.credentials = Credentials::new("nobody", "x");
    let err = Client::new(unknown)
        .unwrap()
        .initiate_multipart_upload("bucket", "k", &ObjectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidAccessKeyId));

    for version in [SignatureVersion::V1, SignatureVersion::V4] {
        let mut wrong = emu.client_config().with_signature_version(version);
        wrong.credentials = Credentials::new(emu.credentials().access_key_id, "wrong-secret");
        let err = Client::new(wrong)
            .unwrap()
            .initiate_multipart_upload("bucket", "k", &ObjectOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&ErrorCode::SignatureDoesNotMatch), "{version:?}");
        let text = err.to_string();
        assert!(text.contains("the server signed"), "{text}");
        assert!(!text.contains("wrong-secret"), "the secret never appears: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_request() {
    let emu = emulator().await;
    let data = Bytes::from(vec![7u8; 2 * MIB as usize]);
    let c = client(&emu, SignatureVersion::V4);
    let with_size = |size| {
        Uploader::new(c.clone()).with_options(UploadOptions { part_size: PartSize::Exact(size), ..quick_options() })
    };
    let err = with_size(64 * KIB).upload("bucket", "k", Source::bytes(data.clone())).unwrap().run().await.unwrap_err();
    assert_eq!(err.to_string(), "part size 64 KiB is below OSS's minimum of 100 KiB");
    let err =
        with_size(6 * 1024 * MIB).upload("bucket", "k", Source::bytes(data.clone())).unwrap().run().await.unwrap_err();
    assert_eq!(err.to_string(), "part size 6 GiB is above OSS's maximum of 5 GiB");
    let big = Source::reader(tokio::io::repeat(0), Some(2000 * MIB));
    let err = with_size(100 * KIB).upload("bucket", "k", big).unwrap().run().await.unwrap_err();
    assert!(matches!(err, UploadError::Plan(PlanError::TooManyParts { .. })), "{err}");
    assert!(err.to_string().contains("more than OSS's limit of 10000"), "{err}");
    let uploader = Uploader::new(c.clone()).with_options(quick_options());
    assert!(uploader.upload("bucket", "", Source::bytes(data.clone())).unwrap_err().to_string().contains("empty"));
    assert!(
        uploader
            .upload("bucket", &"k".repeat(1024), Source::bytes(data.clone()))
            .unwrap_err()
            .to_string()
            .contains("1023")
    );
    assert!(emu.requests().is_empty(), "no request was sent: {:?}", emu.requests());

    // A checkpoint of another file.
    let dir = temp_dir("oss-other-file");
    let (a, b) = (dir.join("a.bin"), dir.join("b.bin"));
    std::fs::write(&a, pattern(MIB as usize, 7)).unwrap();
    std::fs::write(&b, pattern(MIB as usize, 8)).unwrap();
    let checkpoint = dir.join("state.json");
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(2),
        times: 1,
        action: FaultAction::Error { status: 403, code: "AccessDenied".into(), retry_after: None },
    });
    let uploader =
        Uploader::new(c).with_options(UploadOptions { checkpoint: Some(checkpoint.clone()), ..quick_options() });
    uploader.upload("bucket", "cp.bin", Source::file(&a).unwrap()).unwrap().run().await.unwrap_err();
    let err = uploader.upload("bucket", "cp.bin", Source::file(&b).unwrap()).unwrap().run().await.unwrap_err();
    assert!(matches!(err, UploadError::SourceChanged(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_rules_and_listing_and_abort() {
    let emu = emulator().await;
    let c = client(&emu, SignatureVersion::V4);
    let up = c.initiate_multipart_upload("bucket", "rules.bin", &ObjectOptions::default()).await.unwrap();
    let small = Bytes::from(vec![1u8; 50 * 1024]);
    let p1 = c.upload_part("bucket", "rules.bin", &up.upload_id, 1, small.clone(), None).await.unwrap();
    let p2 = c.upload_part("bucket", "rules.bin", &up.upload_id, 2, small.clone(), None).await.unwrap();
    let list = |parts: &[(u32, &str)]| {
        CompleteParts::List(
            parts.iter().map(|(n, e)| CompletePart { part_number: *n, etag: (*e).to_owned() }).collect(),
        )
    };
    let err = c
        .complete_multipart_upload("bucket", "rules.bin", &up.upload_id, &list(&[(2, &p2.etag), (1, &p1.etag)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidPartOrder));
    let err = c
        .complete_multipart_upload("bucket", "rules.bin", &up.upload_id, &list(&[(1, &p1.etag), (2, &p2.etag)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::EntityTooSmall));
    let err =
        c.complete_multipart_upload("bucket", "rules.bin", &up.upload_id, &list(&[(1, "\"00\"")])).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidPart));
    let err = c
        .upload_part("bucket", "rules.bin", &up.upload_id, 3, small.clone(), Some("AAAAAAAAAAAAAAAAAAAAAA=="))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidDigest));

    let listed = c.list_uploads_all().await;
    assert_eq!(listed, vec!["rules.bin".to_owned()]);
    let page = c
        .list_parts(
            "bucket",
            "rules.bin",
            &up.upload_id,
            &oss_multipart::types::ListPartsPage { max_parts: Some(1), part_number_marker: None },
        )
        .await
        .unwrap();
    assert!(page.is_truncated);
    assert_eq!(c.list_all_parts("bucket", "rules.bin", &up.upload_id).await.unwrap().len(), 2);

    // complete-all takes every stored part: the last (part 2) may be small, part 1 may not.
    let err = c.complete_multipart_upload("bucket", "rules.bin", &up.upload_id, &CompleteParts::All).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::EntityTooSmall));
    c.abort_multipart_upload("bucket", "rules.bin", &up.upload_id).await.unwrap();
    let err = c.abort_multipart_upload("bucket", "rules.bin", &up.upload_id).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::NoSuchUpload));
    assert!(emu.uploads().is_empty());

    let up = c.initiate_multipart_upload("bucket", "all.bin", &ObjectOptions::default()).await.unwrap();
    let big = Bytes::from(pattern(200 * KIB as usize, 9));
    c.upload_part("bucket", "all.bin", &up.upload_id, 1, big.clone(), None).await.unwrap();
    c.upload_part("bucket", "all.bin", &up.upload_id, 2, small.clone(), None).await.unwrap();
    let out = c.complete_multipart_upload("bucket", "all.bin", &up.upload_id, &CompleteParts::All).await.unwrap();
    let mut whole = big.to_vec();
    whole.extend_from_slice(&small);
    assert_eq!(emu.object("bucket", "all.bin").unwrap(), whole);
    assert_eq!(out.crc64, Some(oss_multipart::upload_core::hash::crc64::crc64(&whole)));
    let head = c.head_object("bucket", "all.bin").await.unwrap();
    assert_eq!((head.len, head.crc64), (whole.len() as u64, out.crc64));
    let err = c.head_object("bucket", "missing").await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::NoSuchKey));
}

trait ListAll {
    async fn list_uploads_all(&self) -> Vec<String>;
}

impl ListAll for Client {
    async fn list_uploads_all(&self) -> Vec<String> {
        let r = self.list_multipart_uploads("bucket", &ListUploadsPage::default()).await.unwrap();
        r.uploads.into_iter().map(|u| u.key).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_go_in_one_put_and_directory_storage_keeps_plain_files() {
    let dir = temp_dir("oss-data-dir");
    let emu = Emulator::start(EmulatorConfig { data_dir: Some(dir.join("data")), ..EmulatorConfig::default() })
        .await
        .unwrap();
    let path = dir.join("small.txt");
    std::fs::write(&path, b"hello, OSS").unwrap();
    let uploader = Uploader::new(client(&emu, SignatureVersion::V4));
    let out = uploader.upload_file("bucket", "notes/small.txt", &path).await.unwrap();
    assert_eq!(out.parts, 1);
    assert_eq!(std::fs::read(dir.join("data/bucket/notes/small.txt")).unwrap(), b"hello, OSS");
    let big = dir.join("big.bin");
    std::fs::write(&big, pattern(9 * MIB as usize, 10)).unwrap();
    let out = uploader.upload_file("bucket", "big.bin", &big).await.unwrap();
    assert_eq!(out.parts, 2);
    assert_eq!(std::fs::read(dir.join("data/bucket/big.bin")).unwrap(), std::fs::read(&big).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_more_than_15_minutes_off_is_refused() {
    use oss_multipart::signing::{SignableRequest, v1};
    let emu = emulator().await;
    let creds = emu.credentials();
    for (minutes, expect_ok) in [(-20i64, false), (20, false), (-10, true)] {
        let at = chrono::Utc::now() + chrono::Duration::minutes(minutes);
        let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let req =
            SignableRequest::new("POST", Some("bucket"), Some("skew.bin")).query("uploads", "").header("Date", &date);
        let auth = v1::authorization(&creds, &req).unwrap();
        let response = reqwest::Client::new()
            .post(format!("{}/bucket/skew.bin?uploads", emu.endpoint()))
            .header("Date", &date)
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        if expect_ok {
            assert_eq!(status, 200, "{minutes} min: {body}");
        } else {
            assert_eq!(status, 403, "{minutes} min");
            assert!(body.contains("<Code>RequestTimeTooSkewed</Code>"), "{body}");
            assert!(body.contains("<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>"), "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_and_listing_pages() {
    let emu = emulator().await;
    let c = client(&emu, SignatureVersion::V4);
    let source = Bytes::from(pattern(400 * KIB as usize, 11));
    c.put_object("bucket", "src dir/source+.bin", source.clone(), None, &ObjectOptions::default()).await.unwrap();
    let up = c.initiate_multipart_upload("bucket", "copy.bin", &ObjectOptions::default()).await.unwrap();
    let a = c
        .upload_part_copy("bucket", "copy.bin", &up.upload_id, 1, "bucket", "src dir/source+.bin", Some((0, 204_799)))
        .await
        .unwrap();
    let b = c
        .upload_part_copy("bucket", "copy.bin", &up.upload_id, 2, "bucket", "src dir/source+.bin", None)
        .await
        .unwrap();
    let parts = vec![CompletePart { part_number: 1, etag: a.etag }, CompletePart { part_number: 2, etag: b.etag }];
    c.complete_multipart_upload("bucket", "copy.bin", &up.upload_id, &CompleteParts::List(parts)).await.unwrap();
    let mut expected = source[..204_800].to_vec();
    expected.extend_from_slice(&source);
    assert_eq!(emu.object("bucket", "copy.bin").unwrap(), expected);

    // Three unfinished uploads listed one per page, with key and upload-id markers.
    let mut ids = Vec::new();
    for key in ["a/1", "a/1", "b/2"] {
        ids.push(c.initiate_multipart_upload("bucket", key, &ObjectOptions::default()).await.unwrap().upload_id);
    }
    let mut page = ListUploadsPage { max_uploads: Some(1), ..ListUploadsPage::default() };
    let mut seen = Vec::new();
    loop {
        let r = c.list_multipart_uploads("bucket", &page).await.unwrap();
        seen.extend(r.uploads.iter().map(|u| (u.key.clone(), u.upload_id.clone())));
        if !r.is_truncated {
            break;
        }
        page.key_marker = r.next_key_marker;
        page.upload_id_marker = r.next_upload_id_marker;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let r = c
        .list_multipart_uploads(
            "bucket",
            &ListUploadsPage { delimiter: Some("/".into()), ..ListUploadsPage::default() },
        )
        .await
        .unwrap();
    let prefixes: Vec<_> = r.common_prefixes.into_iter().map(|p| p.prefix).collect();
    assert_eq!(prefixes, ["a/", "b/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sts_token_never_shows_in_errors() {
    let emu = emulator().await;
    for version in [SignatureVersion::V1, SignatureVersion::V4] {
        let mut config = emu.client_config().with_signature_version(version);
        config.credentials =
            Credentials::new(emu.credentials().access_key_id, "wrong").with_security_token("STS-TOKEN-SECRET");
        let err = Client::new(config)
            .unwrap()
            .initiate_multipart_upload("bucket", "k", &ObjectOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&ErrorCode::SignatureDoesNotMatch));
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("STS-TOKEN-SECRET"), "{version:?}: {shown}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_reads_plus_as_space_and_survives_huge_markers() {
    use oss_multipart::signing::{SignableRequest, v4};
    let emu = emulator().await;
    let c = client(&emu, SignatureVersion::V4);
    let up = c.initiate_multipart_upload("bucket", "my dir/x", &ObjectOptions::default()).await.unwrap();
    let datetime = v4::format_datetime(chrono::Utc::now().timestamp());
    let signed = |query: &[(&str, &str)], key: Option<&str>| {
        let mut req = SignableRequest::new("GET", Some("bucket"), key)
            .header("x-oss-date", &datetime)
            .header("x-oss-content-sha256", v4::UNSIGNED_PAYLOAD);
        for (n, v) in query {
            req = req.query(n, v);
        }
        v4::authorization(&emu.credentials(), &req, emu.region(), &[]).unwrap()
    };
    let get = |url: String, auth: String| {
        reqwest::Client::new()
            .get(url)
            .header("x-oss-date", &datetime)
            .header("x-oss-content-sha256", v4::UNSIGNED_PAYLOAD)
            .header("Authorization", auth)
            .send()
    };
    // A form-encoding client sends the space of "my dir" as +.
    let auth = signed(&[("uploads", ""), ("prefix", "my dir")], None);
    let response = get(format!("{}/bucket/?uploads&prefix=my+dir", emu.endpoint()), auth).await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let query = [("uploadId", up.upload_id.as_str()), ("part-number-marker", "4294967295")];
    let auth = signed(&query, Some("my dir/x"));
    let url = format!("{}/bucket/my%20dir/x?uploadId={}&part-number-marker=4294967295", emu.endpoint(), up.upload_id);
    let response = get(url, auth).await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_puts_in_directory_mode_keep_their_own_bytes() {
    let dir = temp_dir("oss-parallel-puts");
    let emu = Emulator::start(EmulatorConfig { data_dir: Some(dir.join("data")), ..EmulatorConfig::default() })
        .await
        .unwrap();
    let c = client(&emu, SignatureVersion::V4);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u64 {
        let c = c.clone();
        tasks.spawn(async move {
            let body = Bytes::from(pattern(64 * KIB as usize, 100 + i));
            c.put_object("bucket", &format!("p{i}.bin"), body.clone(), None, &ObjectOptions::default()).await.unwrap();
            (i, body)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, body) = done.unwrap();
        assert_eq!(emu.object("bucket", &format!("p{i}.bin")).unwrap(), body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_upload_is_gone_starts_over_instead_of_failing_forever() {
    let emu = emulator().await;
    let dir = temp_dir("oss-gone");
    let path = dir.join("source.bin");
    let data = pattern(MIB as usize + 17, 12);
    std::fs::write(&path, &data).unwrap();
    let c = client(&emu, SignatureVersion::V4);
    let uploader = Uploader::new(c.clone()).with_options(UploadOptions { concurrency: 1, ..quick_options() });
    let mut upload = uploader.upload("bucket", "gone.bin", Source::file(&path).unwrap()).unwrap();
    upload.step(Duration::from_millis(1)).await.unwrap();
    let state = upload.into_state().unwrap();
    // A lifecycle rule (or another process) aborts the upload.
    c.abort_multipart_upload("bucket", "gone.bin", &state.session.upload_id).await.unwrap();
    let mut resumed = uploader.resume("bucket", "gone.bin", Source::file(&path).unwrap(), state);
    resumed.run().await.unwrap();
    assert_eq!(emu.object("bucket", "gone.bin").unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_storage_never_writes_outside_its_directory() {
    use oss_multipart::signing::{SignableRequest, v1};
    let dir = temp_dir("oss-traversal");
    let emu = Emulator::start(EmulatorConfig { data_dir: Some(dir.join("data")), ..EmulatorConfig::default() })
        .await
        .unwrap();
    // A raw request (our client refuses such keys before sending) with `..` segments.
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let req = SignableRequest::new("PUT", Some("bucket"), Some("a/../../../escaped.bin")).header("Date", &date);
    let auth = v1::authorization(&emu.credentials(), &req).unwrap();
    // Written by hand: HTTP clients normalise `..` away before sending.
    let request = format!(
        "PUT /bucket/a/../../../escaped.bin HTTP/1.1\r\nHost: {}\r\nDate: {date}\r\nAuthorization: {auth}\r\n\
         Content-Length: 1\r\nConnection: close\r\n\r\nx",
        emu.addr()
    );
    let mut stream = tokio::net::TcpStream::connect(emu.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("InvalidObjectName"), "{answer}");
    assert!(!dir.join("escaped.bin").exists() && !dir.parent().unwrap().join("escaped.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_mode_checks_content_md5_and_directory_collisions_are_invalid_names() {
    use oss_multipart::upload_core::Classify;
    let emu = Emulator::start(EmulatorConfig { discard_bodies: true, ..EmulatorConfig::default() }).await.unwrap();
    let data = Bytes::from(pattern(700 * KIB as usize, 14));
    let uploader = Uploader::new(client(&emu, SignatureVersion::V4)).with_options(quick_options());
    uploader.upload("bucket", "discarded.bin", Source::bytes(data)).unwrap().run().await.unwrap();

    let dir = temp_dir("oss-collide");
    let emu =
        Emulator::start(EmulatorConfig { data_dir: Some(dir.clone()), ..EmulatorConfig::default() }).await.unwrap();
    let c = client(&emu, SignatureVersion::V4);
    c.put_object("bucket", "x/y", Bytes::from_static(b"y"), None, &ObjectOptions::default()).await.unwrap();
    let err = Uploader::new(c.clone())
        .with_options(quick_options())
        .upload("bucket", "x", Source::bytes(Bytes::from(vec![1u8; 300_000])))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    let vendor = err.vendor_error().unwrap();
    assert_eq!(vendor.code(), Some(&ErrorCode::InvalidObjectName), "{err}");
    assert!(!vendor.is_retryable());
    let leftovers: Vec<_> = std::fs::read_dir(dir.join(".uploads")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().starts_with("assemble-")), "{leftovers:?}");
}

/// The requests since `from` in the emulator's log, and the refused ones among them.
fn refused_since(emu: &Emulator, from: usize) -> (usize, Vec<oss_multipart::emulator::LoggedRequest>) {
    let log = emu.requests();
    let refused = log[from..].iter().filter(|r| r.status >= 300).cloned().collect();
    (log.len() - from, refused)
}

/// A server clock 30 minutes ahead of this machine's, or behind it: beyond OSS's 15 minutes.
/// Each client (V1 and V4) is refused once with RequestTimeTooSkewed, learns the offset from the
/// answer's Date, signs that request again and everything after it with the corrected time: the
/// upload goes through with one refused request, not one per part. A client that only presigns
/// cannot learn the offset by itself: its URLs are refused until one corrected call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_local_clock_is_corrected_after_one_refused_request() {
    let data = Bytes::from(pattern(MIB as usize + 4321, 21));
    for minutes in [30i64, -30] {
        let skew = chrono::Duration::minutes(minutes);
        let emu = Emulator::start(EmulatorConfig { clock_offset: skew, ..EmulatorConfig::default() }).await.unwrap();
        for version in [SignatureVersion::V1, SignatureVersion::V4] {
            let what = format!("server {minutes:+} min, {version:?}");
            let c = client(&emu, version);
            assert_eq!(c.clock_offset(), chrono::Duration::zero());
            let from = emu.requests().len();
            let uploader = Uploader::new(c.clone()).with_options(quick_options());
            let key = format!("skewed {minutes} {version:?}.bin");
            let mut upload = uploader.upload("bucket", &key, Source::bytes(data.clone())).unwrap();
            let done = upload.run().await.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!((done.report.parts_uploaded, done.report.part_requests), (5, 5), "{what}");
            assert_eq!(emu.object("bucket", &key).unwrap(), data, "{what}");
            let log = emu.requests();
            let (sent, refused) = refused_since(&emu, from);
            assert_eq!(refused.len(), 1, "{what}: {refused:?}");
            assert_eq!(log[from].error_code.as_deref(), Some("RequestTimeTooSkewed"), "{what}");
            assert_eq!(log[from].operation, Some(Operation::InitiateMultipartUpload), "{what}");
            // Initiate twice, 5 parts, Complete, and whatever checks the uploader makes.
            assert!(sent >= 8, "{what}: {sent}");
            assert!((c.clock_offset() - skew).num_seconds().abs() <= 2, "{what}: {:?}", c.clock_offset());
            // Clones share the offset: no more refusals.
            let from = emu.requests().len();
            c.clone().head_object("bucket", &key).await.unwrap();
            assert!(refused_since(&emu, from).1.is_empty(), "{what}");
        }

        // A fresh client used only to presign: its clock is 30 minutes off, so its URLs are
        // refused (except a V1 URL dated 30 minutes late, which simply lasts longer); after one
        // call, corrected as above, they are accepted.
        let browser = client(&emu, SignatureVersion::V4);
        for version in [SignatureVersion::V1, SignatureVersion::V4] {
            let what = format!("presign, server {minutes:+} min, {version:?}");
            let fresh = client(&emu, version);
            let key = format!("presigned {minutes} {version:?}.txt");
            let presign = |c: &Client| c.presign("PUT", "bucket", &key, &[], &[], Duration::from_secs(600)).unwrap();
            let early = browser.send_presigned(&presign(&fresh), Bytes::from_static(b"early")).await;
            if minutes < 0 && version == SignatureVersion::V1 {
                early.unwrap_or_else(|e| panic!("{what}: {e}"));
            } else {
                let err = early.unwrap_err();
                assert_eq!(err.status(), Some(403), "{what}: {err}");
            }
            let from = emu.requests().len();
            fresh.list_multipart_uploads("bucket", &ListUploadsPage::default()).await.unwrap();
            assert_eq!(refused_since(&emu, from), (2, vec![emu.requests()[from].clone()]), "{what}");
            browser.send_presigned(&presign(&fresh), Bytes::from_static(b"on time")).await.unwrap();
            assert_eq!(emu.object("bucket", &key).unwrap(), Bytes::from_static(b"on time"), "{what}");
        }
    }
}

/// A stale offset (the server's clock was set right meanwhile) is corrected the same way, and
/// an emulator without an offset keeps refusing what is really skewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_clock_offset_is_corrected_again() {
    let emu = emulator().await;
    let c = client(&emu, SignatureVersion::V4);
    c.set_clock_offset(chrono::Duration::hours(2));
    c.initiate_multipart_upload("bucket", "stale.bin", &ObjectOptions::default()).await.unwrap();
    assert!(c.clock_offset().num_seconds().abs() <= 2, "{:?}", c.clock_offset());
    let log = emu.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].error_code.as_deref(), Some("RequestTimeTooSkewed"));
    assert_eq!(log[1].status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_stopped_after_completing_is_resumed_without_sending_a_part_again() {
    let emu = emulator().await;
    let dir = temp_dir("oss-completed-then-killed");
    let checkpoint = dir.join("upload.json");
    let data = Bytes::from(pattern(5 * 256 * KIB as usize + 7, 41));
    // OSS completes the object, but the answer is an error and the client gives up at once: the
    // checkpoint says every part is stored, and the session is gone from the server.
    emu.inject(Fault {
        operation: Some(Operation::CompleteMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::ErrorAfter { status: 500, code: "InternalError".into() },
    });
    let once = oss_multipart::upload_core::RetryPolicy { max_attempts: 1, ..quick_options().retry };
    let first = UploadOptions { checkpoint: Some(checkpoint.clone()), retry: once, ..quick_options() };
    let err = Uploader::new(client(&emu, SignatureVersion::V4))
        .with_options(first)
        .upload("bucket", "completed.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("InternalError"), "{err}");
    assert_eq!(emu.object("bucket", "completed.bin").unwrap(), data, "OSS had completed it");
    assert!(checkpoint.exists());
    let parts_before = emu.requests().iter().filter(|r| r.operation == Some(Operation::UploadPart)).count();
    // The next run finds the session gone and every part stored: it completes (OSS's answer
    // NoSuchUpload, then the object of this size and CRC-64) instead of uploading again; that is
    // not starting over, so a caller who forbids restarts gets the object too.
    let again = UploadOptions { checkpoint: Some(checkpoint.clone()), restart_gone_session: false, ..quick_options() };
    let done = Uploader::new(client(&emu, SignatureVersion::V4))
        .with_options(again)
        .upload("bucket", "completed.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    let parts_after = emu.requests().iter().filter(|r| r.operation == Some(Operation::UploadPart)).count();
    assert_eq!(parts_after, parts_before, "no part sent again");
    assert_eq!(done.report.bytes_sent, 0);
    assert_eq!(emu.object("bucket", "completed.bin").unwrap(), data);
    assert!(!checkpoint.exists());
}
