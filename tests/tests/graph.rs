//! sharepoint-resumable against its Graph emulator over real HTTP: sequential fragments, the
//! upload URL without Authorization, lost and partial fragments reconciled with
//! nextExpectedRanges, crashes, step mode, expired sessions, tokens, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use sharepoint_resumable::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
use sharepoint_resumable::upload_core::{Classify, Digests, Hashes, PartSize, PlanError, Secret, UploadError};
use sharepoint_resumable::{Auth, Client, Drive, Error, ErrorCode, Item, Source, Step, UploadOptions, Uploader};
use tests::fake::{pattern, temp_dir};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const FRAGMENT: u64 = 320 * KIB;

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

fn client(emu: &Emulator) -> Client {
    Client::new(emu.client_config()).unwrap()
}

fn options(fragments: u64) -> UploadOptions {
    UploadOptions {
        part_size: PartSize::Exact(fragments * FRAGMENT),
        retry: sharepoint_resumable::upload_core::RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        ..UploadOptions::default()
    }
}

fn quickxor(data: &[u8]) -> String {
    Digests::compute(Hashes::QUICKXOR, data).quickxor_base64().unwrap()
}

fn fragments(emu: &Emulator) -> Vec<(Option<u32>, u16)> {
    emu.requests()
        .into_iter()
        .filter(|r| r.operation == Some(Operation::UploadFragment))
        .map(|r| (r.part_number, r.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drive_form_and_tricky_names_store_the_bytes_and_the_hash() {
    let emu = emulator().await;
    let data = Bytes::from(pattern(3 * FRAGMENT as usize + 777, 1));
    let uploader = Uploader::new(client(&emu)).with_options(options(1));
    let cases = [
        (Drive::Id("drive-1".into()), Item::Path("dir/plain.bin".into())),
        (Drive::Me, Item::Path("with space #1 % 中文.bin".into())),
        (Drive::Site("site-1".into()), Item::Path("sites/a+b.bin".into())),
        (Drive::Group("group-1".into()), Item::Path("group.bin".into())),
    ];
    for (drive, item) in cases {
        let path = match &item {
            Item::Path(p) => p.clone(),
            _ => unreachable!(),
        };
        let done = uploader.upload(drive.clone(), item, Source::bytes(data.clone())).unwrap().run().await.unwrap();
        assert_eq!(emu.item_content("drive-1", &path).unwrap(), data, "{drive:?} {path}");
        let hash = done.output.file.as_ref().and_then(|f| f.hashes.as_ref()).and_then(|h| h.quick_xor_hash.clone());
        assert_eq!(hash, Some(quickxor(&data)));
        assert_eq!(done.output.size, Some(data.len() as u64));
    }
    // Strictly in order, one at a time: fragment indexes rise 0, 1, 2, 3 per upload.
    let numbers: Vec<u32> = fragments(&emu).into_iter().filter_map(|(n, _)| n).collect();
    assert_eq!(numbers.len(), 16);
    assert!(numbers.chunks(4).all(|c| c == [0, 1, 2, 3]), "{numbers:?}");
    // The upload URL never got the bearer token: the emulator answers 401 to any that does.
    assert!(fragments(&emu).iter().all(|(_, s)| *s != 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_fragment_answer_and_a_reset_are_reconciled_with_next_expected_ranges() {
    let emu = emulator().await;
    // Stored, answer lost: the retry meets 416, the status shows it arrived, the upload goes on.
    emu.inject(Fault {
        operation: Some(Operation::UploadFragment),
        part_number: Some(1),
        times: 1,
        action: FaultAction::LoseResponse,
    });
    emu.inject(Fault {
        operation: Some(Operation::UploadFragment),
        part_number: Some(2),
        times: 1,
        action: FaultAction::ResetMidBody { after: 100 * 1024 },
    });
    emu.inject(Fault {
        operation: Some(Operation::UploadFragment),
        part_number: Some(3),
        times: 1,
        action: FaultAction::Error { status: 503, code: "serviceNotAvailable".into(), retry_after: Some(1) },
    });
    let data = Bytes::from(pattern(5 * FRAGMENT as usize + 5, 2));
    let uploader = Uploader::new(client(&emu)).with_options(options(1));
    let done = uploader
        .upload(Drive::Me, Item::Path("faults.bin".into()), Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "faults.bin").unwrap(), data);
    assert!(done.report.part_retries >= 2, "{:?}", done.report);
    let sent: Vec<(Option<u32>, u16)> = fragments(&emu);
    assert!(sent.contains(&(Some(1), 0)), "the lost answer: {sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_then_resume_in_another_process_sends_only_what_the_server_lacks() {
    let emu = emulator().await;
    let dir = temp_dir("graph-crash");
    let path = dir.join("source.bin");
    let data = pattern(8 * FRAGMENT as usize + 99, 3);
    std::fs::write(&path, &data).unwrap();
    let checkpoint = dir.join("upload.json");
    let opts = UploadOptions { checkpoint: Some(checkpoint.clone()), ..options(1) };
    emu.inject(Fault {
        operation: Some(Operation::UploadFragment),
        part_number: None,
        times: 1000,
        action: FaultAction::Delay(Duration::from_millis(100)),
    });
    let uploader = Uploader::new(client(&emu)).with_options(opts.clone());
    let mut upload = uploader.upload(Drive::Me, Item::Path("crash.bin".into()), Source::file(&path).unwrap()).unwrap();
    // A few fragments' worth, then the process "dies" (the upload is dropped).
    assert!(matches!(upload.step(Duration::from_millis(450)).await.unwrap(), Step::Pending { .. }));
    drop(upload);
    assert!(checkpoint.exists());
    let text = std::fs::read_to_string(&checkpoint).unwrap();
    assert!(text.contains("tempauth"), "the upload URL is in the checkpoint, for another process");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&checkpoint).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let before = fragments(&emu).len();
    let uploader = Uploader::new(client(&emu)).with_options(opts);
    let done = uploader
        .upload(Drive::Me, Item::Path("crash.bin".into()), Source::file(&path).unwrap())
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "crash.bin").unwrap(), data);
    let resumed: Vec<u32> = fragments(&emu)[before..].iter().filter_map(|(n, _)| *n).collect();
    assert!(!resumed.contains(&0), "fragment 0 was on the server: {resumed:?}");
    assert_eq!(done.output.size, Some(data.len() as u64));
    assert!(!checkpoint.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_across_fresh_clients_and_a_session_that_expired_starts_over() {
    let emu = emulator().await;
    emu.inject(Fault {
        operation: Some(Operation::UploadFragment),
        part_number: None,
        times: 1000,
        action: FaultAction::Delay(Duration::from_millis(150)),
    });
    let data = Bytes::from(pattern(24 * FRAGMENT as usize, 4));
    let mut saved: Option<String> = None;
    let mut steps = 0;
    let item = loop {
        steps += 1;
        assert!(steps < 60);
        let uploader = Uploader::new(client(&emu)).with_options(options(2));
        let source = Source::bytes(data.clone());
        let mut upload = match &saved {
            None => uploader.upload(Drive::Me, Item::Path("steps.bin".into()), source).unwrap(),
            Some(json) => uploader.resume(source, serde_json::from_str(json).unwrap()),
        };
        match upload.step(Duration::from_secs(1)).await.unwrap() {
            Step::Done(done) => break done.output,
            Step::Pending { .. } => saved = Some(serde_json::to_string(&upload.into_state().unwrap()).unwrap()),
        }
        if steps == 1 {
            // The session expires between two requests of the web app: the next step starts
            // over with a new session instead of failing forever.
            emu.expire_sessions();
        }
    };
    assert!(steps >= 3, "{steps} steps");
    assert_eq!(emu.item_content("drive-1", "steps.bin").unwrap(), data);
    assert_eq!(item.size, Some(data.len() as u64));
    let creates = emu.requests().iter().filter(|r| r.operation == Some(Operation::CreateUploadSession)).count();
    assert_eq!(creates, 2, "one new session after the expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_refresh_and_bad_secrets_are_reported_without_them() {
    let emu = emulator().await;
    let auth = Auth::client_credentials("emulator-tenant", "emulator-client-id", Secret::new("emulator-client-secret"));
    let c = Client::new(emu.config_with(auth)).unwrap();
    let uploader = Uploader::new(c).with_options(options(1));
    let data = Bytes::from(pattern(2 * FRAGMENT as usize, 5));
    let mut upload = uploader.upload(Drive::Me, Item::Path("ccg.bin".into()), Source::bytes(data.clone())).unwrap();
    upload.step(Duration::from_millis(300)).await.unwrap();
    emu.expire_tokens();
    upload.run().await.unwrap();
    assert_eq!(emu.item_content("drive-1", "ccg.bin").unwrap(), data);
    let tokens = emu.requests().iter().filter(|r| r.operation == Some(Operation::Token)).count();
    assert!((1..=2).contains(&tokens), "{tokens}");

    let wrong = Auth::client_credentials("emulator-tenant", "emulator-client-id", Secret::new("wrong-secret"));
    let err = Client::new(emu.config_with(wrong))
        .unwrap()
        .get_item(&Drive::Me, &Item::Path("ccg.bin".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let text = format!("{err} {err:?}");
    assert!(text.contains("invalid_client") && !text.contains("wrong-secret"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_request() {
    let emu = emulator().await;
    let data = Bytes::from(vec![1u8; 2 * MIB as usize]);
    let c = client(&emu);
    let err = Uploader::new(c.clone())
        .with_options(UploadOptions { part_size: PartSize::Exact(5 * MIB + 1), ..options(1) })
        .upload(Drive::Me, Item::Path("x.bin".into()), Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::Plan(PlanError::NotAMultiple { .. })), "{err}");
    assert!(err.to_string().contains("multiple of 320 KiB"), "{err}");
    let uploader = Uploader::new(c.clone()).with_options(options(1));
    let err = uploader.upload(Drive::Me, Item::Path("bad:name.bin".into()), Source::bytes(data.clone())).unwrap_err();
    assert!(matches!(err, UploadError::Input(Error::Invalid(_))), "{err}");
    let err =
        uploader.upload(Drive::Me, Item::Path("empty.bin".into()), Source::bytes(Bytes::new())).unwrap().run().await;
    assert!(matches!(err, Err(UploadError::Plan(PlanError::SourceTooSmall { .. }))), "{err:?}");
    let err = Uploader::new(c.clone())
        .with_conflict_behavior("overwrite")
        .upload(Drive::Me, Item::Path("x.bin".into()), Source::bytes(data.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("fail, replace or rename"), "{err}");
    // A fragment off the 320 KiB grid is refused before sending.
    let err = c
        .put_fragment(&Secret::new("http://127.0.0.1:9/up/x"), 0, 1_000_000, Bytes::from(vec![0u8; 1000]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("multiple of 320 KiB"), "{err}");
    assert!(emu.requests().is_empty(), "{:?}", emu.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_deferred_commit_and_cancel() {
    let emu = emulator().await;
    let c = client(&emu);
    let data = Bytes::from(pattern(FRAGMENT as usize + 10, 6));
    let uploader = Uploader::new(c.clone()).with_options(options(1));
    uploader
        .upload(Drive::Me, Item::Path("taken.bin".into()), Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    // fail on a taken name: 409 nameAlreadyExists, not retried.
    let err = Uploader::new(c.clone())
        .with_options(options(1))
        .with_conflict_behavior("fail")
        .upload(Drive::Me, Item::Path("taken.bin".into()), Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.vendor_error().and_then(Error::code), Some(&ErrorCode::NameAlreadyExists), "{err}");
    // deferCommit: the last fragment waits; the uploader commits.
    let deferred = Uploader::new(c.clone()).with_options(options(1)).with_defer_commit(true);
    let done = deferred
        .upload(Drive::Me, Item::Path("deferred.bin".into()), Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "deferred.bin").unwrap(), data);
    assert!(emu.requests().iter().any(|r| r.operation == Some(Operation::CommitSession)));
    assert_eq!(done.output.size, Some(data.len() as u64));
    // Cancel: the session is gone after.
    let mut upload =
        uploader.upload(Drive::Me, Item::Path("cancelled.bin".into()), Source::bytes(data.clone())).unwrap();
    upload.step(Duration::from_millis(1)).await.unwrap();
    let state = upload.into_state().unwrap();
    c.cancel(&state.session.upload_url).await.unwrap();
    let err = c.session_status(&state.session.upload_url).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::ItemNotFound));
    assert!(emu.open_sessions().is_empty(), "{:?}", emu.open_sessions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_graph_kept_only_in_part_is_finished_with_its_tail() {
    let emu = emulator().await;
    // Graph keeps 100 KiB of fragment 1 and answers 500: the next expected byte is off the grid.
    emu.inject(Fault {
        operation: Some(Operation::UploadFragment),
        part_number: Some(1),
        times: 1,
        action: FaultAction::PartialThenError { keep: 100 * 1024, status: 500, code: "generalException".into() },
    });
    let data = Bytes::from(pattern(3 * FRAGMENT as usize + 1, 7));
    let uploader = Uploader::new(client(&emu)).with_options(options(1));
    uploader
        .upload(Drive::Me, Item::Path("partial.bin".into()), Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "partial.bin").unwrap(), data);
    // Only the missing 220 KiB of fragment 1 went again, after Graph said where it stood.
    let tail = emu.requests().iter().any(|r| {
        r.operation == Some(Operation::UploadFragment) && r.body_len == FRAGMENT - 100 * 1024 && r.status == 202
    });
    assert!(
        tail,
        "{:?}",
        emu.requests().iter().map(|r| (r.operation, r.part_number, r.body_len, r.status)).collect::<Vec<_>>()
    );
}

// Regressions found in review: each failed before its fix.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_the_last_fragment_or_a_resume_after_it_finds_the_item() {
    let emu = emulator().await;
    let data = Bytes::from(pattern(3 * FRAGMENT as usize, 8));
    emu.inject(Fault {
        operation: Some(Operation::UploadFragment),
        part_number: Some(2),
        times: 1,
        action: FaultAction::LoseResponse,
    });
    let uploader = Uploader::new(client(&emu)).with_options(options(1));
    let done = uploader
        .upload(Drive::Me, Item::Path("last.bin".into()), Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "last.bin").unwrap(), data);
    assert_eq!(done.output.size, Some(data.len() as u64));

    // The state was saved before the last fragment, whose request then finished the upload.
    let mut upload = uploader.upload(Drive::Me, Item::Path("again.bin".into()), Source::bytes(data.clone())).unwrap();
    upload.step(Duration::from_millis(1)).await.unwrap();
    let state = upload.into_state().unwrap();
    let c = client(&emu);
    c.put_fragment(&state.session.upload_url, 0, data.len() as u64, data.clone()).await.unwrap();
    let done = uploader.resume(Source::bytes(data.clone()), state).run().await.unwrap();
    assert_eq!(done.output.size, Some(data.len() as u64));
    let creates = emu.requests().iter().filter(|r| r.operation == Some(Operation::CreateUploadSession)).count();
    assert_eq!(creates, 2, "no new session, no second copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_url_past_its_token_lifetime_is_replaced_by_a_new_session() {
    // The URL's token and the idle session both run out (a live session would block the name).
    let emu = Emulator::start(EmulatorConfig {
        session_max: Duration::from_millis(300),
        session_idle: Duration::from_millis(300),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let data = Bytes::from(pattern(2 * FRAGMENT as usize, 9));
    let uploader = Uploader::new(client(&emu)).with_options(options(1));
    let mut upload = uploader.upload(Drive::Me, Item::Path("old.bin".into()), Source::bytes(data.clone())).unwrap();
    upload.step(Duration::from_millis(1)).await.unwrap();
    let state = upload.into_state().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The new session lives 300 ms too: enough for two fragments on loopback.
    uploader.resume(Source::bytes(data.clone()), state).run().await.unwrap();
    assert_eq!(emu.item_content("drive-1", "old.bin").unwrap(), data);
    let codes: Vec<Option<String>> = emu.requests().iter().map(|r| r.error_code.clone()).collect();
    assert!(codes.iter().any(|c| c.as_deref() == Some("unauthenticated")), "{codes:?}");
}
