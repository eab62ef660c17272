//! Cancelling reaches every wait of an upload: a `Retry-After` sleep before a session exists,
//! one between part attempts, one before completing again, and Box's commit polling while it
//! processes the parts. Each stops promptly with the state saved, and the upload finishes from it
//! afterwards. A create in flight at the cancel is let finish, and its session is saved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tests::fake::{pattern, temp_dir};
use upload_core::{CancellationToken, Event, PartSize, RetryPolicy, Source, UploadError, UploadOptions};

const KIB: u64 = 1024;
/// Far above how long a cancelled upload may take to stop: a wait that ignores the token shows.
const LONG_WAIT: u64 = 30;
/// How long a cancelled upload may take to stop on a busy machine.
const PROMPT: Duration = Duration::from_secs(5);

fn options(cancel: CancellationToken, checkpoint: Option<std::path::PathBuf>) -> UploadOptions {
    UploadOptions {
        part_size: PartSize::Exact(256 * KIB),
        retry: RetryPolicy { max_elapsed: Duration::from_secs(300), ..RetryPolicy::default() },
        checkpoint,
        cancel,
        ..UploadOptions::default()
    }
}

/// Cancels `token` once `delay` has passed.
fn cancel_after(token: &CancellationToken, delay: Duration) {
    let token = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        token.cancel();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_sleep_before_the_session_exists_ends_at_cancel() {
    use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::InitiateMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::Error { status: 503, code: "ServiceUnavailable".into(), retry_after: Some(LONG_WAIT) },
    });
    let cancel = CancellationToken::new();
    let uploader = oss_multipart::Uploader::new(oss_multipart::Client::new(emu.client_config()).unwrap())
        .with_options(options(cancel.clone(), None));
    let data = Bytes::from(pattern(600 * KIB as usize, 1));
    let mut upload = uploader.upload("bucket", "k", Source::bytes(data)).unwrap();
    cancel_after(&cancel, Duration::from_millis(300));
    let started = Instant::now();
    let result = tokio::time::timeout(PROMPT, upload.run()).await.expect("the Retry-After sleep ignored the cancel");
    assert!(matches!(result, Err(UploadError::Cancelled)), "{:?}", result.err());
    assert!(started.elapsed() < PROMPT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_sleep_between_part_attempts_ends_at_cancel() {
    use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(2),
        times: 1,
        action: FaultAction::Error { status: 503, code: "ServiceUnavailable".into(), retry_after: Some(LONG_WAIT) },
    });
    let dir = temp_dir("cancel-part");
    let checkpoint = dir.join("state.json");
    let cancel = CancellationToken::new();
    let uploader = oss_multipart::Uploader::new(oss_multipart::Client::new(emu.client_config()).unwrap());
    let data = Bytes::from(pattern(600 * KIB as usize, 2));
    let mut upload = uploader
        .clone()
        .with_options(options(cancel.clone(), Some(checkpoint.clone())))
        .upload("bucket", "k", Source::bytes(data.clone()))
        .unwrap();
    cancel_after(&cancel, Duration::from_millis(500));
    let result = tokio::time::timeout(PROMPT, upload.run()).await.expect("the part's Retry-After ignored the cancel");
    assert!(matches!(result, Err(UploadError::Cancelled)), "{:?}", result.err());
    // The state was saved: the upload finishes from it.
    let mut again = uploader
        .with_options(options(CancellationToken::new(), Some(checkpoint)))
        .upload("bucket", "k", Source::bytes(data.clone()))
        .unwrap();
    again.run().await.unwrap();
    assert_eq!(emu.object("bucket", "k").unwrap(), data);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_commit_polling_ends_at_cancel_with_every_part_saved() {
    use box_chunked::emulator::{Emulator, EmulatorConfig};
    let config = EmulatorConfig {
        min_chunked: 1000,
        part_size: Some(256 * KIB),
        processing_commits: 1000,
        processing_retry_after: LONG_WAIT,
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(config).await.unwrap();
    let dir = temp_dir("cancel-box");
    let checkpoint = dir.join("state.json");
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    let observer: upload_core::Observer = Arc::new(move |e: &Event| {
        if matches!(e, Event::Completing { .. }) {
            cancel_after(&stopper, Duration::from_millis(300));
        }
    });
    let uploader = box_chunked::Uploader::new(box_chunked::Client::new(emu.client_config()).unwrap())
        .with_options(UploadOptions { observer: Some(observer), ..options(cancel, Some(checkpoint.clone())) });
    let data = Bytes::from(pattern(700 * KIB as usize, 3));
    let mut upload = uploader.upload("0", "processing.bin", Source::bytes(data)).unwrap();
    let result = tokio::time::timeout(PROMPT, upload.run()).await.expect("the commit wait ignored the cancel");
    assert!(matches!(result, Err(UploadError::Cancelled)), "{:?}", result.err());
    let state: box_chunked::uploader::BoxUploadState = upload_core::checkpoint::load(&checkpoint).unwrap();
    assert!(state.all_parts_done(), "the checkpoint holds every part, ready to commit again");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A retry policy that would wait out an hour's `Retry-After`: only the cancel can end the wait.
fn patient(cancel: CancellationToken, checkpoint: Option<std::path::PathBuf>) -> UploadOptions {
    let retry = RetryPolicy { max_elapsed: Duration::from_secs(2 * 3600), ..RetryPolicy::default() };
    UploadOptions { retry, ..options(cancel, checkpoint) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_long_retry_after_on_create_ends_at_cancel() {
    use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::InitiateMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::Error { status: 503, code: "ServiceUnavailable".into(), retry_after: Some(3600) },
    });
    let cancel = CancellationToken::new();
    let uploader = oss_multipart::Uploader::new(oss_multipart::Client::new(emu.client_config()).unwrap())
        .with_options(patient(cancel.clone(), None));
    let mut upload =
        uploader.upload("bucket", "k", Source::bytes(Bytes::from(pattern(600 * KIB as usize, 4)))).unwrap();
    cancel_after(&cancel, Duration::from_millis(300));
    let result = tokio::time::timeout(PROMPT, upload.run()).await.expect("the Retry-After sleep ignored the cancel");
    assert!(matches!(result, Err(UploadError::Cancelled)), "{:?}", result.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_long_retry_after_on_complete_ends_at_cancel_with_the_checkpoint_kept() {
    use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::CompleteMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::Error { status: 503, code: "ServiceUnavailable".into(), retry_after: Some(3600) },
    });
    let dir = temp_dir("cancel-complete");
    let checkpoint = dir.join("state.json");
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    let observer: upload_core::Observer = Arc::new(move |e: &Event| {
        if matches!(e, Event::Completing { .. }) {
            cancel_after(&stopper, Duration::from_millis(300));
        }
    });
    let uploader = oss_multipart::Uploader::new(oss_multipart::Client::new(emu.client_config()).unwrap());
    let data = Bytes::from(pattern(600 * KIB as usize, 5));
    let mut upload = uploader
        .clone()
        .with_options(UploadOptions { observer: Some(observer), ..patient(cancel, Some(checkpoint.clone())) })
        .upload("bucket", "k", Source::bytes(data.clone()))
        .unwrap();
    let result = tokio::time::timeout(PROMPT, upload.run()).await.expect("the Retry-After sleep ignored the cancel");
    assert!(matches!(result, Err(UploadError::Cancelled)), "{:?}", result.err());
    let mut again = uploader
        .with_options(options(CancellationToken::new(), Some(checkpoint)))
        .upload("bucket", "k", Source::bytes(data.clone()))
        .unwrap();
    assert_eq!(again.run().await.unwrap().report.bytes_sent, 0, "every part was kept");
    assert_eq!(emu.object("bucket", "k").unwrap(), data);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_in_flight_at_cancel_finishes_and_its_session_is_saved() {
    use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::InitiateMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::Delay(Duration::from_secs(1)),
    });
    let dir = temp_dir("cancel-create");
    let checkpoint = dir.join("state.json");
    let cancel = CancellationToken::new();
    let uploader = oss_multipart::Uploader::new(oss_multipart::Client::new(emu.client_config()).unwrap());
    let data = Bytes::from(pattern(600 * KIB as usize, 6));
    let mut upload = uploader
        .clone()
        .with_options(options(cancel.clone(), Some(checkpoint.clone())))
        .upload("bucket", "k", Source::bytes(data.clone()))
        .unwrap();
    cancel_after(&cancel, Duration::from_millis(100));
    let result = tokio::time::timeout(PROMPT, upload.run()).await.expect("the create did not end");
    assert!(matches!(result, Err(UploadError::Cancelled)), "{:?}", result.err());
    let state: oss_multipart::uploader::OssUploadState = upload_core::checkpoint::load(&checkpoint)
        .expect("the session made by the create in flight is in the checkpoint");
    assert!(!state.session.upload_id.is_empty());
    let creates = || emu.requests().iter().filter(|r| r.operation == Some(Operation::InitiateMultipartUpload)).count();
    assert_eq!(creates(), 1);
    assert!(
        emu.requests().iter().all(|r| r.operation != Some(Operation::UploadPart)),
        "no part is sent after the cancel"
    );
    let mut again = uploader
        .with_options(options(CancellationToken::new(), Some(checkpoint)))
        .upload("bucket", "k", Source::bytes(data.clone()))
        .unwrap();
    again.run().await.unwrap();
    assert_eq!(creates(), 1, "the resume used the saved session");
    assert_eq!(emu.object("bucket", "k").unwrap(), data);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Graph refuses a second session for the same name while one is open: a session made by a
/// create in flight at the cancel must be kept, and the resume uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_session_created_during_the_cancel_is_saved_and_resumed() {
    use sharepoint_resumable::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    use sharepoint_resumable::{Drive, Item};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::CreateUploadSession),
        part_number: None,
        times: 1,
        action: FaultAction::Delay(Duration::from_secs(1)),
    });
    let dir = temp_dir("cancel-graph-create");
    let checkpoint = dir.join("state.json");
    let cancel = CancellationToken::new();
    let graph = |cancel: CancellationToken| {
        let options =
            UploadOptions { part_size: PartSize::Exact(320 * KIB), ..options(cancel, Some(checkpoint.clone())) };
        sharepoint_resumable::Uploader::new(sharepoint_resumable::Client::new(emu.client_config()).unwrap())
            .with_options(options)
    };
    let data = Bytes::from(pattern(3 * 320 * KIB as usize + 5, 7));
    let item = || Item::Path("cancelled.bin".into());
    let mut upload = graph(cancel.clone()).upload(Drive::Me, item(), Source::bytes(data.clone())).unwrap();
    cancel_after(&cancel, Duration::from_millis(100));
    let result = tokio::time::timeout(PROMPT, upload.run()).await.expect("the create did not end");
    assert!(matches!(result, Err(UploadError::Cancelled)), "{:?}", result.err());
    assert!(checkpoint.exists(), "the session is in the checkpoint");
    graph(CancellationToken::new())
        .upload(Drive::Me, item(), Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    let creates = emu.requests().iter().filter(|r| r.operation == Some(Operation::CreateUploadSession)).count();
    assert_eq!(creates, 1, "the resume used the saved session");
    assert_eq!(emu.item_content("drive-1", "cancelled.bin").unwrap(), data);
    std::fs::remove_dir_all(&dir).unwrap();
}
