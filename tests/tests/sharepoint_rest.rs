//! sharepoint-resumable's SharePoint REST uploader against the emulator's SharePoint host over
//! real HTTP: chunks in every OData flavour, resets, lost answers reconciled with
//! GetUploadStatus, throttling, crashes, step mode, expired sessions, cookies with form digests,
//! tokens, conflicts and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use sharepoint_resumable::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
use sharepoint_resumable::error::rest_codes;
use sharepoint_resumable::upload_core::{Classify, PartSize, PlanError, Secret, UploadError};
use sharepoint_resumable::{
    Auth, Drive, Error, FileRef, InvalidInput, Item, OData, RestAuth, RestClient, RestConfig, RestUploader, Source,
    Step, UploadOptions, Uploader,
};
use tests::fake::{pattern, temp_dir};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const LIBRARY: &str = "/sites/emulator/Shared Documents";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

fn config(emu: &Emulator, auth: RestAuth, odata: OData) -> RestConfig {
    let mut config = RestConfig::new(&emu.site_url(), auth).unwrap();
    config.login_url = emu.login_url();
    config.odata = odata;
    config
}

fn bearer(emu: &Emulator) -> RestClient {
    RestClient::new(emu.rest_config().unwrap()).unwrap()
}

fn options(chunk: u64) -> UploadOptions {
    UploadOptions {
        part_size: PartSize::Exact(chunk),
        retry: sharepoint_resumable::upload_core::RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        ..UploadOptions::default()
    }
}

fn count(emu: &Emulator, op: Operation) -> usize {
    emu.requests().iter().filter(|r| r.operation == Some(op)).count()
}

fn calls(emu: &Emulator) -> Vec<(Option<Operation>, u64, u16)> {
    emu.requests().iter().map(|r| (r.operation, r.body_len, r.status)).collect()
}

fn slow_chunks(emu: &Emulator, delay: Duration) {
    for op in [Operation::StartUpload, Operation::ContinueUpload, Operation::FinishUpload] {
        emu.inject(fault(op, None, 1000, FaultAction::Delay(delay)));
    }
}

/// A fault on one operation (and part, when given), spent after `times` requests.
fn fault(operation: Operation, part_number: Option<u32>, times: u32, action: FaultAction) -> Fault {
    Fault { operation: Some(operation), part_number, times, action }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_odata_flavour_and_tricky_names_store_the_bytes() {
    let emu = emulator().await;
    // A folder made through Graph is the same folder in the library.
    let graph = sharepoint_resumable::Client::new(emu.client_config()).unwrap();
    Uploader::new(graph)
        .upload(Drive::Me, Item::Path("dir/seed.bin".into()), Source::bytes(Bytes::from_static(b"seed")))
        .unwrap()
        .run()
        .await
        .unwrap();
    let data = Bytes::from(pattern(10 * MIB as usize + 777, 1));
    let cases = [
        (OData::Verbose, "Shared Documents", "plain.bin", "plain.bin"),
        (
            OData::MinimalMetadata,
            "/sites/emulator/Shared Documents/dir",
            "with space #1 % 中文.bin",
            "dir/with space #1 % 中文.bin",
        ),
        (OData::NoMetadata, "Shared Documents/dir/", "it's.bin", "dir/it's.bin"),
    ];
    for (odata, folder, name, path) in cases {
        let token = RestAuth::Bearer(Auth::Token(Secret::new(emu.token())));
        let client = RestClient::new(config(&emu, token, odata)).unwrap();
        let done = RestUploader::new(client.clone())
            .with_options(options(3 * MIB))
            .upload(folder, name, Source::bytes(data.clone()))
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(emu.item_content("drive-1", path).unwrap(), data, "{odata:?} {path}");
        assert_eq!(done.output.len(), Some(data.len() as u64));
        assert_eq!(done.output.name.as_deref(), Some(name));
        let file = FileRef::Path(format!("{LIBRARY}/{path}"));
        assert_eq!(client.download(&file).await.unwrap(), data);
        assert_eq!(client.get_file(&file).await.unwrap().unique_id, done.output.unique_id);
    }
    // Strictly in order: one StartUpload, two ContinueUploads and one FinishUpload per file.
    assert_eq!(count(&emu, Operation::StartUpload), 3);
    assert_eq!(count(&emu, Operation::ContinueUpload), 6);
    assert_eq!(count(&emu, Operation::FinishUpload), 3);
    assert_eq!(count(&emu, Operation::ContextInfo), 0, "no form digest with a bearer token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_lost_answers_and_throttling_are_reconciled_without_failing() {
    let emu = emulator().await;
    emu.inject(fault(
        Operation::StartUpload,
        None,
        1,
        FaultAction::Error {
            status: 429,
            code: "-2147024860, Microsoft.SharePoint.SPQueryThrottledException".into(),
            retry_after: Some(1),
        },
    ));
    // Stored, answer lost: the retry finds the chunk held and goes on.
    emu.inject(fault(Operation::ContinueUpload, None, 1, FaultAction::LoseResponse));
    emu.inject(fault(Operation::ContinueUpload, None, 1, FaultAction::ResetMidBody { after: 100 * 1024 }));
    emu.inject(fault(
        Operation::FinishUpload,
        None,
        1,
        FaultAction::Error { status: 503, code: "-1, Microsoft.SharePoint.SPException".into(), retry_after: Some(1) },
    ));
    let data = Bytes::from(pattern(5 * MIB as usize + 5, 2));
    let done = RestUploader::new(bearer(&emu))
        .with_options(options(MIB))
        .upload("Shared Documents", "faults.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "faults.bin").unwrap(), data);
    assert!(done.report.part_retries >= 3, "{:?}", done.report);
    let log = calls(&emu);
    assert!(log.contains(&(Some(Operation::StartUpload), MIB, 429)), "{log:?}");
    assert!(count(&emu, Operation::GetUploadStatus) >= 1, "the lost answer was looked up: {log:?}");
    // Every chunk went once, but the one cut mid-body and the throttled ones: no byte was
    // sent a third time.
    assert!(done.report.bytes_resent <= 3 * MIB, "{:?}", done.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_then_resume_in_another_process_sends_only_what_the_session_lacks() {
    let emu = emulator().await;
    let dir = temp_dir("rest-crash");
    let path = dir.join("source.bin");
    let data = pattern(8 * MIB as usize + 99, 3);
    std::fs::write(&path, &data).unwrap();
    let checkpoint = dir.join("upload.json");
    let opts = UploadOptions { checkpoint: Some(checkpoint.clone()), ..options(MIB) };
    slow_chunks(&emu, Duration::from_millis(100));
    let mut upload = RestUploader::new(bearer(&emu))
        .with_options(opts.clone())
        .upload(LIBRARY, "crash.bin", Source::file(&path).unwrap())
        .unwrap();
    assert!(matches!(upload.step(Duration::from_millis(450)).await.unwrap(), Step::Pending { .. }));
    drop(upload);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&checkpoint).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let continued = count(&emu, Operation::ContinueUpload);
    let done = RestUploader::new(bearer(&emu))
        .with_options(opts)
        .upload(LIBRARY, "crash.bin", Source::file(&path).unwrap())
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "crash.bin").unwrap(), data);
    assert_eq!(count(&emu, Operation::StartUpload), 1, "the first chunk was held: not sent again");
    assert_eq!(count(&emu, Operation::ContinueUpload) - continued + 1, 8 - continued, "{:?}", calls(&emu));
    assert_eq!(done.output.len(), Some(data.len() as u64));
    assert!(!checkpoint.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_in_one_second_budgets_across_fresh_clients_and_an_expired_session() {
    let emu = emulator().await;
    slow_chunks(&emu, Duration::from_millis(150));
    let data = Bytes::from(pattern(12 * MIB as usize, 4));
    let mut saved: Option<String> = None;
    let mut steps = 0;
    let file = loop {
        steps += 1;
        assert!(steps < 60);
        let uploader = RestUploader::new(bearer(&emu)).with_options(options(MIB));
        let source = Source::bytes(data.clone());
        let mut upload = match &saved {
            None => uploader.upload("Shared Documents", "steps.bin", source).unwrap(),
            Some(json) => uploader.resume(source, serde_json::from_str(json).unwrap()),
        };
        match upload.step(Duration::from_secs(1)).await.unwrap() {
            Step::Done(done) => break done.output,
            Step::Pending { .. } => saved = Some(serde_json::to_string(&upload.into_state().unwrap()).unwrap()),
        }
        if steps == 1 {
            // The session expires between two requests of the web app: the next step starts
            // over with a new session on the same file instead of failing forever.
            emu.expire_rest_sessions();
        }
    };
    assert!(steps >= 3, "{steps} steps");
    assert_eq!(emu.item_content("drive-1", "steps.bin").unwrap(), data);
    assert_eq!(file.len(), Some(data.len() as u64));
    assert_eq!(count(&emu, Operation::StartUpload), 2, "one new session after the expiry");
    assert_eq!(count(&emu, Operation::AddFile), 1, "the file made for the first session is reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_finish_upload_finds_the_file() {
    let emu = emulator().await;
    emu.inject(fault(Operation::FinishUpload, None, 1, FaultAction::LoseResponse));
    let data = Bytes::from(pattern(3 * MIB as usize + 1, 5));
    let done = RestUploader::new(bearer(&emu))
        .with_options(options(MIB))
        .upload("Shared Documents", "finish.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "finish.bin").unwrap(), data);
    assert_eq!(done.output.len(), Some(data.len() as u64));
    assert_eq!(count(&emu, Operation::FinishUpload), 1, "finished once: {:?}", calls(&emu));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_replace_keeps_the_old_content_until_the_end_and_cancel_removes_the_new_file() {
    let emu = emulator().await;
    let client = bearer(&emu);
    let old = Bytes::from_static(b"old content");
    client.add_using_path(LIBRARY, "taken.bin", false, old.clone()).await.unwrap();
    let data = Bytes::from(pattern(4 * MIB as usize, 6));
    // fail: refused before a byte is sent.
    let before = emu.requests().len();
    let err = RestUploader::new(client.clone())
        .with_conflict_behavior("fail")
        .unwrap()
        .with_options(options(MIB))
        .upload("Shared Documents", "taken.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err.vendor_error(), Some(Error::Invalid(InvalidInput::Exists { .. }))), "{err}");
    assert!(err.to_string().contains("conflict behavior is fail"), "{err}");
    assert!(emu.requests()[before..].iter().all(|r| r.operation == Some(Operation::GetFile)), "{:?}", calls(&emu));
    assert!(RestUploader::new(client.clone()).with_conflict_behavior("rename").is_err());
    // replace: the old content stays readable until FinishUpload.
    slow_chunks(&emu, Duration::from_millis(100));
    let mut upload = RestUploader::new(client.clone())
        .with_options(options(MIB))
        .upload("Shared Documents", "taken.bin", Source::bytes(data.clone()))
        .unwrap();
    assert!(matches!(upload.step(Duration::from_millis(250)).await.unwrap(), Step::Pending { .. }));
    assert_eq!(emu.item_content("drive-1", "taken.bin").unwrap(), old);
    upload.run().await.unwrap();
    assert_eq!(emu.item_content("drive-1", "taken.bin").unwrap(), data);
    // Cancel: a file made empty for this upload goes away with it.
    let mut upload = RestUploader::new(client.clone())
        .with_options(options(MIB))
        .upload("Shared Documents", "cancelled.bin", Source::bytes(data.clone()))
        .unwrap();
    assert!(matches!(upload.step(Duration::from_millis(150)).await.unwrap(), Step::Pending { .. }));
    let state = upload.state().unwrap().clone();
    assert!(state.session.created_stub);
    upload.abort().await.unwrap();
    assert!(emu.item_content("drive-1", "cancelled.bin").is_none());
    let err = client.get_upload_status(&FileRef::Path(state.session.file.clone()), &state.session.upload_id).await;
    assert!(err.is_err(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_with_form_digests_and_expiring_tokens() {
    let emu = Emulator::start(EmulatorConfig { digest_lifetime: Duration::from_secs(2), ..EmulatorConfig::default() })
        .await
        .unwrap();
    let cookie = RestAuth::Cookie(Secret::new("FedAuth=emulator-cookie; rtFa=x".to_owned()));
    let client = RestClient::new(config(&emu, cookie, OData::Verbose)).unwrap();
    slow_chunks(&emu, Duration::from_millis(400));
    let data = Bytes::from(pattern(8 * MIB as usize, 7));
    RestUploader::new(client)
        .with_options(options(MIB))
        .upload("Shared Documents", "cookie.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(emu.item_content("drive-1", "cookie.bin").unwrap(), data);
    // The digest lasts 2 s and the upload more than 3 s: it was renewed before it ran out, and
    // no POST was refused for it.
    assert!(count(&emu, Operation::ContextInfo) >= 2, "{:?}", calls(&emu));
    assert!(emu.requests().iter().all(|r| r.status != 403), "{:?}", calls(&emu));

    let wrong = RestAuth::Cookie(Secret::new("FedAuth=stolen-and-wrong".to_owned()));
    let err = RestClient::new(config(&emu, wrong, OData::NoMetadata))
        .unwrap()
        .get_file(&FileRef::Path(format!("{LIBRARY}/cookie.bin")))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("stolen-and-wrong"));

    // Client credentials: the token expires mid-upload and is replaced once on 401.
    let auth = Auth::ClientCredentials {
        tenant: "emulator-tenant".into(),
        client_id: "emulator-client-id".into(),
        client_secret: Secret::new("emulator-client-secret"),
        scope: RestConfig::new(&emu.site_url(), RestAuth::Cookie(Secret::new(String::new()))).unwrap().default_scope(),
    };
    let client = RestClient::new(config(&emu, RestAuth::Bearer(auth), OData::MinimalMetadata)).unwrap();
    let mut upload = RestUploader::new(client)
        .with_options(options(MIB))
        .upload("Shared Documents", "ccg.bin", Source::bytes(data.clone()))
        .unwrap();
    upload.step(Duration::from_millis(500)).await.unwrap();
    emu.expire_tokens();
    upload.run().await.unwrap();
    assert_eq!(emu.item_content("drive-1", "ccg.bin").unwrap(), data);
    assert_eq!(count(&emu, Operation::Token), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_rule_it_breaks() {
    let emu = Emulator::start(EmulatorConfig { rest_max_request: 2 * MIB, ..EmulatorConfig::default() }).await.unwrap();
    let client = bearer(&emu);
    let data = Bytes::from(vec![1u8; 3 * MIB as usize]);
    let uploader = RestUploader::new(client.clone()).with_options(options(MIB));
    for (folder, name) in
        [("Shared Documents", "bad:name.bin"), ("Shared Documents", "trailing."), ("Shared Documents", " lead")]
    {
        let err = uploader.upload(folder, name, Source::bytes(data.clone())).unwrap_err();
        assert!(matches!(err, UploadError::Input(Error::Invalid(InvalidInput::Path { .. }))), "{name}: {err}");
    }
    let err = uploader.upload("Shared Documents", &"x".repeat(256), Source::bytes(data.clone())).unwrap_err();
    assert!(err.to_string().contains("at most 255 characters"), "{err}");
    let err =
        uploader.upload(&format!("{LIBRARY}/{}", "d/".repeat(190)), "a.bin", Source::bytes(data.clone())).unwrap_err();
    assert!(err.to_string().contains("at most 400 characters"), "{err}");
    let err = RestUploader::new(client.clone())
        .with_options(options(300 * MIB))
        .upload("Shared Documents", "big.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::Plan(PlanError::PartTooLarge { .. })), "{err}");
    let err = uploader.upload("Shared Documents", "empty.bin", Source::bytes(Bytes::new())).unwrap().run().await;
    assert!(matches!(err, Err(UploadError::Plan(PlanError::SourceTooSmall { .. }))), "{err:?}");
    assert!(emu.requests().is_empty(), "{:?}", calls(&emu));
    // What only the server knows: a folder that is not there, a body over its request limit.
    let err = uploader
        .upload("Shared Documents/nowhere", "a.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.vendor_error().and_then(Error::status), Some(404), "{err}");
    let err = RestUploader::new(client.clone())
        .with_options(options(3 * MIB))
        .upload("Shared Documents", "too-big-chunks.bin", Source::bytes(Bytes::from(vec![2u8; 7 * MIB as usize])))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    let sp = err.vendor_error().and_then(Error::sharepoint).unwrap_or_else(|| panic!("{err}"));
    assert!(sp.is(rest_codes::INVALID_CLIENT_QUERY) && sp.message.contains("too big"), "{sp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_finish_upload_that_meets_the_finished_session_finds_the_file() {
    let emu = emulator().await;
    // FinishUpload is done but its answer is lost; the look at the session fails for a moment,
    // so the chunk is sent again and meets a session that ended with the upload.
    emu.inject(fault(Operation::FinishUpload, None, 1, FaultAction::LoseResponse));
    emu.inject(fault(
        Operation::GetUploadStatus,
        None,
        1,
        FaultAction::Error { status: 503, code: "-1, Microsoft.SharePoint.SPException".into(), retry_after: None },
    ));
    let data = Bytes::from(pattern(3 * MIB as usize + 1, 8));
    let done = RestUploader::new(bearer(&emu))
        .with_options(options(MIB))
        .upload("Shared Documents", "finish-retried.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", calls(&emu)));
    assert_eq!(emu.item_content("drive-1", "finish-retried.bin").unwrap(), data);
    assert_eq!(done.output.len(), Some(data.len() as u64));
    assert_eq!(count(&emu, Operation::FinishUpload), 2, "{:?}", calls(&emu));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_before_the_first_chunk_or_after_expiry_removes_the_stub_and_nothing_else() {
    let emu = emulator().await;
    let client = bearer(&emu);
    let data = Bytes::from(pattern(3 * MIB as usize, 9));
    // A crash between Files/AddUsingPath and StartUpload: no session on the server yet.
    let mut upload = RestUploader::new(client.clone())
        .with_options(options(MIB))
        .upload("Shared Documents", "never-started.bin", Source::bytes(data.clone()))
        .unwrap();
    assert!(matches!(upload.step(Duration::ZERO).await.unwrap(), Step::Pending { .. }));
    assert_eq!(count(&emu, Operation::StartUpload), 0, "{:?}", calls(&emu));
    assert_eq!(emu.item_content("drive-1", "never-started.bin").as_deref(), Some(&b""[..]));
    upload.abort().await.unwrap_or_else(|e| panic!("{e}: {:?}", calls(&emu)));
    assert!(emu.item_content("drive-1", "never-started.bin").is_none(), "{:?}", calls(&emu));
    // The session expired after some chunks.
    slow_chunks(&emu, Duration::from_millis(100));
    let mut upload = RestUploader::new(client.clone())
        .with_options(options(MIB))
        .upload("Shared Documents", "expired-abort.bin", Source::bytes(data.clone()))
        .unwrap();
    assert!(matches!(upload.step(Duration::from_millis(250)).await.unwrap(), Step::Pending { .. }));
    emu.expire_rest_sessions();
    upload.abort().await.unwrap_or_else(|e| panic!("{e}: {:?}", calls(&emu)));
    assert!(emu.item_content("drive-1", "expired-abort.bin").is_none(), "{:?}", calls(&emu));
    // A file that was there before keeps its content.
    let old = Bytes::from_static(b"old content");
    client.add_using_path(LIBRARY, "kept.bin", false, old.clone()).await.unwrap();
    let mut upload = RestUploader::new(client.clone())
        .with_options(options(MIB))
        .upload("Shared Documents", "kept.bin", Source::bytes(data.clone()))
        .unwrap();
    assert!(matches!(upload.step(Duration::ZERO).await.unwrap(), Step::Pending { .. }));
    upload.abort().await.unwrap();
    assert_eq!(emu.item_content("drive-1", "kept.bin").unwrap(), old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_conflict_fail_a_new_session_after_expiry_reuses_its_own_empty_file() {
    let emu = emulator().await;
    slow_chunks(&emu, Duration::from_millis(100));
    let data = Bytes::from(pattern(4 * MIB as usize, 10));
    let uploader = RestUploader::new(bearer(&emu)).with_conflict_behavior("fail").unwrap().with_options(options(MIB));
    let mut upload = uploader.upload("Shared Documents", "fail-expired.bin", Source::bytes(data.clone())).unwrap();
    assert!(matches!(upload.step(Duration::from_millis(250)).await.unwrap(), Step::Pending { .. }));
    let state = upload.into_state().unwrap();
    emu.expire_rest_sessions();
    let mut upload = uploader.resume(Source::bytes(data.clone()), state);
    let done = upload.run().await.unwrap_or_else(|e| panic!("{e}: {:?}", calls(&emu)));
    assert_eq!(emu.item_content("drive-1", "fail-expired.bin").unwrap(), data);
    assert_eq!(done.output.len(), Some(data.len() as u64));
    assert_eq!(count(&emu, Operation::StartUpload), 2, "one new session after the expiry");
    assert_eq!(count(&emu, Operation::AddFile), 1, "{:?}", calls(&emu));
    // Someone else's file is still refused.
    let err = uploader
        .upload("Shared Documents", "fail-expired.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err.vendor_error(), Some(Error::Invalid(InvalidInput::Exists { .. }))), "{err}");
}
