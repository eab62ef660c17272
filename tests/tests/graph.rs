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

/// A fault on one operation (and part, when given), spent after `times` requests.
fn fault(operation: Operation, part_number: Option<u32>, times: u32, action: FaultAction) -> Fault {
    Fault { operation: Some(operation), part_number, times, action }
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
    emu.inject(fault(Operation::UploadFragment, Some(1), 1, FaultAction::LoseResponse));
    emu.inject(fault(Operation::UploadFragment, Some(2), 1, FaultAction::ResetMidBody { after: 100 * 1024 }));
    emu.inject(fault(
        Operation::UploadFragment,
        Some(3),
        1,
        FaultAction::Error { status: 503, code: "serviceNotAvailable".into(), retry_after: Some(1) },
    ));
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
    emu.inject(fault(Operation::UploadFragment, None, 1000, FaultAction::Delay(Duration::from_millis(100))));
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
    emu.inject(fault(Operation::UploadFragment, None, 1000, FaultAction::Delay(Duration::from_millis(150))));
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
    emu.inject(fault(
        Operation::UploadFragment,
        Some(1),
        1,
        FaultAction::PartialThenError { keep: 100 * 1024, status: 500, code: "generalException".into() },
    ));
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
    emu.inject(fault(Operation::UploadFragment, Some(2), 1, FaultAction::LoseResponse));
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

// The explicit commit, the quota, ranges with their end, Kiota's encoded paths, chunked bodies.

/// A session for `item` that holds every byte of `data`, with `deferCommit` (or without it: then
/// the last fragment commits, or fails as the emulator decides): its upload URL and the answer
/// to its last fragment.
async fn filled_session(
    c: &Client,
    drive: &Drive,
    item: &Item,
    data: &Bytes,
    defer: bool,
    conflict: Option<&str>,
) -> (Secret, Result<sharepoint_resumable::Fragment, Error>) {
    use sharepoint_resumable::types::{CreateUploadSessionInput, DriveItemUploadableProperties};
    let input = CreateUploadSessionInput {
        item: Some(DriveItemUploadableProperties {
            conflict_behavior: conflict.map(str::to_owned),
            name: item.name().map(str::to_owned),
            file_size: Some(data.len() as u64),
            ..DriveItemUploadableProperties::default()
        }),
        defer_commit: defer.then_some(true),
    };
    let session = c.create_upload_session(drive, item, &input, None).await.unwrap();
    let url = Secret::new(session.upload_url.unwrap());
    let total = data.len() as u64;
    let mut offset = 0;
    loop {
        let end = (offset + FRAGMENT).min(total);
        let answer = c.put_fragment(&url, offset, total, data.slice(offset as usize..end as usize)).await;
        if end == total || answer.is_err() {
            return (url, answer);
        }
        offset = end;
    }
}

async fn json_of(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn graph_error(err: &Error) -> (u16, ErrorCode, Vec<String>) {
    let e = err.service().unwrap_or_else(|| panic!("not a service error: {err:?}"));
    (e.status, e.code.clone(), e.inner.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_commit_by_put_with_the_source_url_in_every_address_form() {
    let emu = emulator().await;
    let c = client(&emu);
    let data = Bytes::from(pattern(2 * FRAGMENT as usize + 321, 10));
    let hash = quickxor(&data);

    // By path: the deferred session's last fragment waits (202, nothing expected), the PUT
    // commits it (201 + item), and the session is gone.
    let (url, last) = filled_session(&c, &Drive::Me, &Item::Path("commit/a.bin".into()), &data, true, None).await;
    match last.unwrap() {
        sharepoint_resumable::Fragment::Accepted(s) => assert!(s.next_expected_ranges.is_empty(), "{s:?}"),
        done => panic!("a deferred session committed on its last fragment: {done:?}"),
    }
    assert!(emu.item_content("drive-1", "commit/a.bin").is_none());
    let item = c.commit_by_source_url(&Drive::Me, &Item::Path("commit/a.bin".into()), &url, None, None).await.unwrap();
    assert_eq!((item.name.as_deref(), item.size), (Some("a.bin"), Some(data.len() as u64)));
    assert_eq!(item.file.as_ref().and_then(|f| f.hashes.as_ref()).and_then(|h| h.quick_xor_hash.clone()), Some(hash));
    assert_eq!(emu.item_content("drive-1", "commit/a.bin").unwrap(), data);
    let err = c.session_status(&url).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::ItemNotFound));
    let commits: Vec<u16> =
        emu.requests().iter().filter(|r| r.operation == Some(Operation::CommitBySourceUrl)).map(|r| r.status).collect();
    assert_eq!(commits, [201]);

    // By parent id and name, on /drives/{id}; the session was made for another name: the
    // commit puts its bytes where the PUT says.
    let folder = emu.item_id("drive-1", "commit").unwrap();
    let child = Item::Child { parent_id: folder.clone(), name: "b.bin".into() };
    let (url, _) =
        filled_session(&c, &Drive::Id("drive-1".into()), &Item::Path("commit/x.bin".into()), &data, true, None).await;
    let item = c.commit_by_source_url(&Drive::Id("drive-1".into()), &child, &url, None, None).await.unwrap();
    assert_eq!(item.name.as_deref(), Some("b.bin"));
    assert_eq!(item.parent_reference.and_then(|p| p.id), Some(folder));
    assert_eq!(emu.item_content("drive-1", "commit/b.bin").unwrap(), data);
    assert!(emu.item_content("drive-1", "commit/x.bin").is_none());

    // By item id on a site's drive: replaces that file (200, same id).
    let a_id = emu.item_id("drive-1", "commit/a.bin").unwrap();
    let other = Bytes::from(pattern(FRAGMENT as usize + 1, 11));
    let site = Drive::Site("site-1".into());
    let (url, _) = filled_session(&c, &site, &Item::Path("commit/new.bin".into()), &other, true, None).await;
    let item = c.commit_by_source_url(&site, &Item::Id(a_id.clone()), &url, None, None).await.unwrap();
    assert_eq!((item.id.as_str(), item.size), (a_id.as_str(), Some(other.len() as u64)));
    assert_eq!(emu.item_content("drive-1", "commit/a.bin").unwrap(), other);
    let statuses: Vec<u16> =
        emu.requests().iter().filter(|r| r.operation == Some(Operation::CommitBySourceUrl)).map(|r| r.status).collect();
    assert_eq!(statuses, [201, 201, 200]);

    // No bearer token: 401 from Graph, and the session is untouched.
    let (url, _) = filled_session(&c, &Drive::Me, &Item::Path("commit/c.bin".into()), &data, true, None).await;
    let http = reqwest::Client::new();
    let body = serde_json::json!({ "@microsoft.graph.sourceUrl": url.expose() });
    let answer = http
        .put(format!("{}/me/drive/root:/commit/c.bin:", emu.graph_url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let doc = json_of(answer).await;
    assert_eq!(doc["error"]["code"], "unauthenticated");
    assert!(c.session_status(&url).await.unwrap().next_expected_ranges.is_empty());
    // A PUT without sourceUrl is not a commit; a URL not of a session is refused.
    let put = |body: serde_json::Value| {
        http.put(format!("{}/me/drive/root:/commit/c.bin:", emu.graph_url()))
            .bearer_auth(emu.token())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(put(serde_json::json!({ "name": "c.bin" })).await.unwrap().status(), 400);
    let forged = format!("{}?tempauth=forged", url.expose().split('?').next().unwrap());
    let answer = put(serde_json::json!({ "@microsoft.graph.sourceUrl": forged })).await.unwrap();
    assert_eq!(answer.status(), 404);
    // The name in the body must be the address's.
    let answer = put(serde_json::json!({ "@microsoft.graph.sourceUrl": url.expose(), "name": "d.bin" })).await.unwrap();
    assert_eq!(answer.status(), 400);
    let item = c.commit_by_source_url(&Drive::Me, &Item::Path("commit/c.bin".into()), &url, None, None).await.unwrap();
    assert_eq!(item.size, Some(data.len() as u64));

    // A session still missing bytes cannot be committed.
    let total = data.len() as u64;
    let input =
        sharepoint_resumable::types::CreateUploadSessionInput { defer_commit: Some(true), ..Default::default() };
    let session =
        c.create_upload_session(&Drive::Me, &Item::Path("commit/half.bin".into()), &input, None).await.unwrap();
    let url = Secret::new(session.upload_url.unwrap());
    c.put_fragment(&url, 0, total, data.slice(..FRAGMENT as usize)).await.unwrap();
    let err =
        c.commit_by_source_url(&Drive::Me, &Item::Path("commit/half.bin".into()), &url, None, None).await.unwrap_err();
    assert_eq!(graph_error(&err), (400, ErrorCode::InvalidRequest, vec!["uploadSessionIncomplete".to_owned()]));
    assert!(emu.item_content("drive-1", "commit/half.bin").is_none());

    // The upload URL is a credential: not in the errors, their Debug, nor the client's Debug.
    let text = format!("{err} {err:?} {c:?}");
    assert!(!text.contains("tempauth") && !text.contains(url.expose()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_commit_honours_conflict_behavior_and_if_match() {
    let emu = emulator().await;
    let c = client(&emu);
    let old = Bytes::from(pattern(FRAGMENT as usize + 3, 12));
    let new = Bytes::from(pattern(FRAGMENT as usize + 9, 13));
    let taken = Item::Path("taken.bin".into());
    Uploader::new(c.clone())
        .with_options(options(1))
        .upload(Drive::Me, taken.clone(), Source::bytes(old.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    let before = c.get_item(&Drive::Me, &taken).await.unwrap();
    let (url, _) = filled_session(&c, &Drive::Me, &Item::Path("incoming.bin".into()), &new, true, None).await;

    // fail on a taken name: 409, the file unchanged, the session still there to try again.
    let err = c.commit_by_source_url(&Drive::Me, &taken, &url, Some("fail"), None).await.unwrap_err();
    assert_eq!(graph_error(&err).0, 409);
    assert_eq!(err.code(), Some(&ErrorCode::NameAlreadyExists));
    assert!(!err.is_retryable());
    assert_eq!(emu.item_content("drive-1", "taken.bin").unwrap(), old);
    assert!(c.session_status(&url).await.unwrap().next_expected_ranges.is_empty());

    // If-Match with a tag the item does not have: 412, nothing changes.
    let stale = "\"{00000000-0000-0000-0000-000000000000},1\"";
    let err = c.commit_by_source_url(&Drive::Me, &taken, &url, Some("replace"), Some(stale)).await.unwrap_err();
    assert_eq!(graph_error(&err).0, 412);
    assert_eq!(err.code(), Some(&ErrorCode::ResourceModified));
    assert_eq!(emu.item_content("drive-1", "taken.bin").unwrap(), old);

    // replace with the item's current eTag: 200, the same item with the new bytes.
    let etag = before.e_tag.clone().unwrap();
    let item = c.commit_by_source_url(&Drive::Me, &taken, &url, Some("replace"), Some(&etag)).await.unwrap();
    assert_eq!((item.id.as_str(), item.size), (before.id.as_str(), Some(new.len() as u64)));
    assert_ne!(item.e_tag, before.e_tag);
    assert_eq!(emu.item_content("drive-1", "taken.bin").unwrap(), new);
    assert!(emu.item_content("drive-1", "incoming.bin").is_none());

    // The eTag read before is stale now: 412 again (cTag works as well as eTag).
    let (url, _) = filled_session(&c, &Drive::Me, &Item::Path("incoming.bin".into()), &old, true, None).await;
    let err = c.commit_by_source_url(&Drive::Me, &taken, &url, Some("replace"), Some(&etag)).await.unwrap_err();
    assert_eq!(graph_error(&err).0, 412);
    let ctag = item.c_tag.clone().unwrap();
    // rename keeps both: a new item next to the taken name.
    let renamed = c.commit_by_source_url(&Drive::Me, &taken, &url, Some("rename"), Some(&ctag)).await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("taken 1.bin"));
    assert_ne!(renamed.id, before.id);
    assert_eq!(emu.item_content("drive-1", "taken 1.bin").unwrap(), old);
    assert_eq!(emu.item_content("drive-1", "taken.bin").unwrap(), new);

    // The recovery Graph's own 409 message suggests: the name was taken while the session ran
    // (conflict fail, no deferCommit); its last fragment gets 409 and the session stays, to be
    // committed under another name.
    let race = Item::Path("race.bin".into());
    let input = sharepoint_resumable::types::CreateUploadSessionInput {
        item: Some(sharepoint_resumable::types::DriveItemUploadableProperties {
            conflict_behavior: Some("fail".into()),
            ..Default::default()
        }),
        defer_commit: None,
    };
    let session = c.create_upload_session(&Drive::Me, &race, &input, None).await.unwrap();
    let url = Secret::new(session.upload_url.unwrap());
    let total = new.len() as u64;
    c.put_fragment(&url, 0, total, new.slice(..FRAGMENT as usize)).await.unwrap();
    // Another session's explicit commit takes the name meanwhile.
    let (other, _) = filled_session(&c, &Drive::Me, &Item::Path("other.bin".into()), &old, true, None).await;
    c.commit_by_source_url(&Drive::Me, &race, &other, None, None).await.unwrap();
    let err = c.put_fragment(&url, FRAGMENT, total, new.slice(FRAGMENT as usize..)).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::NameAlreadyExists));
    let item =
        c.commit_by_source_url(&Drive::Me, &Item::Path("race (mine).bin".into()), &url, None, None).await.unwrap();
    assert_eq!(item.name.as_deref(), Some("race (mine).bin"));
    assert_eq!(emu.item_content("drive-1", "race (mine).bin").unwrap(), new);
    assert_eq!(emu.item_content("drive-1", "race.bin").unwrap(), old);
    assert!(emu.open_sessions().is_empty(), "{:?}", emu.open_sessions());

    // A conflict behavior Graph does not know is refused before any request.
    let before = emu.requests().len();
    let err = c.commit_by_source_url(&Drive::Me, &taken, &url, Some("overwrite"), None).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_eq!(emu.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_drive_is_a_typed_507_that_is_not_retried_and_sends_no_fragment() {
    let emu = Emulator::start(EmulatorConfig { quota: Some(MIB), ..EmulatorConfig::default() }).await.unwrap();
    let c = client(&emu);
    let uploader = Uploader::new(c.clone()).with_options(options(1));
    let piece = Bytes::from(pattern(600 * KIB as usize, 14));
    uploader
        .upload(Drive::Me, Item::Path("first.bin".into()), Source::bytes(piece.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();

    // 600 KiB held + 600 KiB more > 1 MiB: createUploadSession answers 507 quotaLimitReached.
    let err = uploader
        .upload(Drive::Me, Item::Path("second.bin".into()), Source::bytes(piece.clone()))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    match &err {
        UploadError::Vendor { operation, source, .. } => {
            assert_eq!(*operation, sharepoint_resumable::upload_core::Operation::Create, "{err}");
            assert_eq!(source.attempts, 1, "a full drive is not retried: {err}");
        }
        other => panic!("{other:?}"),
    }
    let e = err.vendor_error().unwrap();
    assert_eq!(e.status(), Some(507));
    assert_eq!(e.code(), Some(&ErrorCode::QuotaLimitReached));
    assert!(!e.is_retryable());
    assert!(err.to_string().contains("quotaLimitReached"), "{err}");
    let second: Vec<_> = emu.requests().into_iter().filter(|r| r.key.as_deref() == Some("second.bin")).collect();
    assert_eq!(second.len(), 1, "one create, no fragment: {second:?}");
    assert_eq!((second[0].operation, second[0].status), (Some(Operation::CreateUploadSession), 507));
    assert!(emu.open_sessions().is_empty());

    // Graph's error document on the Graph host.
    let answer = reqwest::Client::new()
        .post(format!("{}/me/drive/root:/third.bin:/createUploadSession", emu.graph_url()))
        .bearer_auth(emu.token())
        .header("content-type", "application/json")
        .body(serde_json::json!({ "item": { "fileSize": 500 * KIB } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 507);
    assert!(answer.headers().contains_key("request-id"));
    let doc = json_of(answer).await;
    assert_eq!(doc["error"]["code"], "quotaLimitReached");
    assert!(doc["error"]["innerError"]["request-id"].is_string(), "{doc}");
    // What fits still goes.
    let small = Bytes::from(pattern(400 * KIB as usize, 15));
    uploader
        .upload(Drive::Me, Item::Path("small.bin".into()), Source::bytes(small.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "small.bin").unwrap(), small);

    // A session created without fileSize learns at its last fragment: 507, and it stays.
    let session =
        c.create_upload_session(&Drive::Me, &Item::Path("late.bin".into()), &Default::default(), None).await.unwrap();
    let url = Secret::new(session.upload_url.unwrap());
    let err = c.put_fragment(&url, 0, 100 * KIB, Bytes::from(vec![7u8; 100 * KIB as usize])).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(507), Some(&ErrorCode::QuotaLimitReached)));
    assert!(c.session_status(&url).await.unwrap().next_expected_ranges.is_empty());
    assert!(emu.item_content("drive-1", "late.bin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_with_their_end_are_followed_through_lost_answers_and_partial_fragments() {
    let emu = Emulator::start(EmulatorConfig { ranges_with_end: true, ..EmulatorConfig::default() }).await.unwrap();
    let c = client(&emu);
    let data = Bytes::from(pattern(5 * FRAGMENT as usize + 5, 16));
    let total = data.len() as u64;
    let last = total - 1;

    // The form itself: "N-{T-1}" at creation, in 202 answers and in status.
    let input = sharepoint_resumable::types::CreateUploadSessionInput {
        item: Some(sharepoint_resumable::types::DriveItemUploadableProperties {
            file_size: Some(total),
            ..Default::default()
        }),
        defer_commit: None,
    };
    let session = c.create_upload_session(&Drive::Me, &Item::Path("form.bin".into()), &input, None).await.unwrap();
    assert_eq!(session.next_expected_ranges, [format!("0-{last}")]);
    let url = Secret::new(session.upload_url.unwrap());
    match c.put_fragment(&url, 0, total, data.slice(..FRAGMENT as usize)).await.unwrap() {
        sharepoint_resumable::Fragment::Accepted(s) => {
            assert_eq!(s.next_expected_ranges, [format!("{FRAGMENT}-{last}")])
        }
        done => panic!("{done:?}"),
    }
    assert_eq!(c.session_status(&url).await.unwrap().next_expected_ranges, [format!("{FRAGMENT}-{last}")]);
    c.cancel(&url).await.unwrap();

    // The uploader: a lost answer (the retry meets 416, the status says where it stands) and a
    // fragment kept in part (the next byte off the 320 KiB grid).
    emu.inject(fault(Operation::UploadFragment, Some(1), 1, FaultAction::LoseResponse));
    emu.inject(fault(
        Operation::UploadFragment,
        Some(3),
        1,
        FaultAction::PartialThenError { keep: 100 * 1024, status: 500, code: "generalException".into() },
    ));
    let uploader = Uploader::new(c.clone()).with_options(options(1));
    let done = uploader
        .upload(Drive::Me, Item::Path("ends.bin".into()), Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "ends.bin").unwrap(), data);
    assert_eq!(done.output.size, Some(total));
    let log = emu.requests();
    let ends = log.iter().filter(|r| r.key.as_deref() == Some("ends.bin"));
    let statuses = ends.clone().filter(|r| r.operation == Some(Operation::GetSessionStatus)).count();
    assert!(statuses >= 2, "both faults were looked up: {log:?}");
    let tail = ends.clone().any(|r| {
        r.operation == Some(Operation::UploadFragment) && r.body_len == FRAGMENT - 100 * 1024 && r.status == 202
    });
    assert!(tail, "only the rest of fragment 3 went again: {log:?}");

    // A crash and a resume read the same form.
    let mut upload = uploader.upload(Drive::Me, Item::Path("resumed.bin".into()), Source::bytes(data.clone())).unwrap();
    upload.step(Duration::from_millis(1)).await.unwrap();
    let state = upload.into_state().unwrap();
    uploader.resume(Source::bytes(data.clone()), state).run().await.unwrap();
    assert_eq!(emu.item_content("drive-1", "resumed.bin").unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiota_encoded_item_paths_address_like_the_colon_syntax() {
    let emu = emulator().await;
    let http = reqwest::Client::new();
    let graph = emu.graph_url();
    let create = |path: String, body: serde_json::Value| {
        http.post(format!("{graph}/drives/drive-1/items/{path}/createUploadSession"))
            .bearer_auth(emu.token())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let put_all = |url: String, data: &'static [u8]| {
        http.put(url).header("content-range", format!("bytes 0-{}/{}", data.len() - 1, data.len())).body(data).send()
    };
    // `root:/kiota/a #1.bin:` as one segment, as Kiota's URL template encodes it.
    let answer =
        create("root%3A%2Fkiota%2Fa%20%231.bin%3A".into(), serde_json::json!({ "item": { "name": "a #1.bin" } }))
            .await
            .unwrap();
    assert_eq!(answer.status(), 200);
    let session = json_of(answer).await;
    let done = put_all(session["uploadUrl"].as_str().unwrap().to_owned(), b"kiota").await.unwrap();
    assert_eq!(done.status(), 201);
    let item = json_of(done).await;
    assert_eq!(item["name"], "a #1.bin");
    assert_eq!(emu.item_content("drive-1", "kiota/a #1.bin").unwrap(), "kiota");

    // `{item-id}:/b.bin:` under the folder the first upload made.
    let folder = emu.item_id("drive-1", "kiota").unwrap();
    let answer = create(format!("{folder}%3A%2Fb.bin%3A"), serde_json::json!({})).await.unwrap();
    assert_eq!(answer.status(), 200);
    let session = json_of(answer).await;
    assert_eq!(put_all(session["uploadUrl"].as_str().unwrap().to_owned(), b"bee").await.unwrap().status(), 201);
    assert_eq!(emu.item_content("drive-1", "kiota/b.bin").unwrap(), "bee");

    // The same address form reads the item and its content, as the SDK's GETs do.
    let get = |path: &str| http.get(format!("{graph}/me/drive/items/{path}")).bearer_auth(emu.token()).send();
    let meta = json_of(get("root%3A%2Fkiota%2Fb.bin%3A").await.unwrap()).await;
    assert_eq!((meta["name"].as_str(), meta["size"].as_u64()), (Some("b.bin"), Some(3)));
    assert_eq!(get("root%3A%2Fkiota%2Fb.bin%3A/content").await.unwrap().bytes().await.unwrap(), "bee");

    // Names still decode strictly and must match the body's; a missing parent is 404.
    let refused = create("root%3A%2F%FF.bin%3A".into(), serde_json::json!({})).await.unwrap();
    assert_eq!(refused.status(), 400);
    let refused =
        create("root%3A%2Fc.bin%3A".into(), serde_json::json!({ "item": { "name": "d.bin" } })).await.unwrap();
    assert_eq!(refused.status(), 400);
    let missing = create("01NOSUCHITEM%3A%2Fc.bin%3A".into(), serde_json::json!({})).await.unwrap();
    assert_eq!(missing.status(), 404);
    // Without the bearer token it is still Graph: 401.
    let anonymous =
        http.post(format!("{graph}/drives/drive-1/items/root%3A%2Fc.bin%3A/createUploadSession")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// Sends a request with a chunked body of `frames` × 64 KiB over a raw connection, giving up
/// when the server stops reading; what it answered, if anything arrived.
async fn send_chunked(addr: &str, head: &str, frames: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
    let send = async {
        for _ in 0..frames {
            socket.write_all(&frame).await?;
        }
        socket.write_all(b"0\r\n\r\n").await
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), send).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_without_a_length_is_not_read_past_the_60_mib_limit() {
    let emu = emulator().await;
    let c = client(&emu);
    let limit = 60 * MIB;
    // A fragment without Content-Length, 96 MiB: refused (411) after at most the limit is read.
    let session = c
        .create_upload_session(&Drive::Me, &Item::Path("chunked.bin".into()), &Default::default(), None)
        .await
        .unwrap();
    let url = reqwest::Url::parse(session.upload_url.as_deref().unwrap()).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nhost: {addr}\r\ncontent-range: bytes 0-100663295/100663296\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        url.path(),
        url.query().unwrap()
    );
    send_chunked(&addr, &head, 1536).await;
    let logged = emu.requests();
    let entry = logged.iter().find(|r| r.operation == Some(Operation::UploadFragment)).unwrap();
    assert!(matches!(entry.status, 411 | 413), "{entry:?}");
    assert!(entry.body_len <= limit + 64 * KIB, "read {} bytes of a body over the limit", entry.body_len);
    assert_eq!(c.session_status(&session_url(&session)).await.unwrap().next_expected_ranges, ["0-"]);

    // The Graph host: a createUploadSession body over the limit is refused (413), not kept.
    let graph = reqwest::Url::parse(&emu.graph_url()).unwrap();
    let graph_addr = format!("{}:{}", graph.host_str().unwrap(), graph.port().unwrap());
    let head = format!(
        "POST {}/me/drive/root:/big.bin:/createUploadSession HTTP/1.1\r\nhost: {graph_addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        graph.path(),
        emu.token()
    );
    send_chunked(&graph_addr, &head, 1536).await;
    let logged = emu.requests();
    let entry = logged.iter().find(|r| r.key.as_deref() == Some("big.bin")).unwrap();
    assert_eq!(entry.status, 413, "{entry:?}");
    assert!(entry.body_len <= limit + 64 * KIB, "read {} bytes of a body over the limit", entry.body_len);

    // A small chunked body is still read whole.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(&graph_addr).await.unwrap();
    let body = br#"{"item":{"name":"small.bin"}}"#;
    let request = format!(
        "POST {}/me/drive/root:/small.bin:/createUploadSession HTTP/1.1\r\nhost: {graph_addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        graph.path(),
        emu.token(),
        body.len(),
        std::str::from_utf8(body).unwrap()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("uploadUrl"), "{answer}");
}

fn session_url(session: &sharepoint_resumable::types::UploadSession) -> Secret {
    Secret::new(session.upload_url.clone().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_reported_when_the_caller_does_not_allow_a_restart() {
    let emu = emulator().await;
    emu.inject(fault(Operation::UploadFragment, None, 1000, FaultAction::Delay(Duration::from_millis(100))));
    let data = Bytes::from(pattern(6 * FRAGMENT as usize, 9));
    let strict = UploadOptions { restart_gone_session: false, ..options(1) };
    let uploader = Uploader::new(client(&emu)).with_options(strict);
    let mut upload = uploader.upload(Drive::Me, Item::Path("strict.bin".into()), Source::bytes(data.clone())).unwrap();
    assert!(matches!(upload.step(Duration::from_millis(250)).await.unwrap(), Step::Pending { .. }));
    let state = upload.into_state().unwrap();
    emu.expire_sessions();
    let mut resumed = uploader.resume(Source::bytes(data.clone()), state.clone());
    let err = resumed.run().await.unwrap_err();
    assert!(matches!(err, UploadError::SessionGone { .. }), "{err}");
    assert!(err.to_string().contains("session is gone"), "{err}");
    let creates = || emu.requests().iter().filter(|r| r.operation == Some(Operation::CreateUploadSession)).count();
    assert_eq!(creates(), 1, "no new session without the caller's leave");
    // With the default, the same state starts over and finishes.
    let done =
        Uploader::new(client(&emu)).with_options(options(1)).resume(Source::bytes(data.clone()), state).run().await;
    assert_eq!(done.unwrap().output.size, Some(data.len() as u64));
    assert_eq!(creates(), 2);
    assert_eq!(emu.item_content("drive-1", "strict.bin").unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gone_before_its_commit_over_an_older_file_is_started_over() {
    let emu = emulator().await;
    let old = Bytes::from(pattern(2 * FRAGMENT as usize, 10));
    Uploader::new(client(&emu))
        .with_options(options(1))
        .upload(Drive::Me, Item::Path("recommit.bin".into()), Source::bytes(old))
        .unwrap()
        .run()
        .await
        .unwrap();
    // Every byte of the new upload is in, but the commit is held past the step's budget; then
    // the session expires before the next step.
    emu.inject(fault(Operation::CommitSession, None, 1, FaultAction::Delay(Duration::from_secs(3))));
    let data = Bytes::from(pattern(3 * FRAGMENT as usize + 5, 11));
    let uploader = Uploader::new(client(&emu)).with_options(options(1)).with_defer_commit(true);
    let mut upload =
        uploader.upload(Drive::Me, Item::Path("recommit.bin".into()), Source::bytes(data.clone())).unwrap();
    assert!(matches!(upload.step(Duration::from_millis(800)).await.unwrap(), Step::Pending { .. }));
    let state = upload.into_state().unwrap();
    assert!(state.all_parts_done(), "every fragment was in before the commit");
    emu.expire_sessions();
    // The item at the path is the older file: completing finds nothing of this upload, so it
    // starts over instead of failing on every run.
    let done = uploader.resume(Source::bytes(data.clone()), state).run().await.unwrap();
    assert_eq!(done.output.size, Some(data.len() as u64));
    assert_eq!(emu.item_content("drive-1", "recommit.bin").unwrap(), data);
    let creates = emu.requests().iter().filter(|r| r.operation == Some(Operation::CreateUploadSession)).count();
    assert_eq!(creates, 3, "the old file's session, the expired one, and the new one");
}
