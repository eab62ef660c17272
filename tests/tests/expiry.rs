//! Sessions that end during a run, not only between runs: the run starts over by itself (as a
//! resume would), within a bound, warns when its pace would outlast the session, and leaves the
//! state to the caller when told not to start over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tests::fake::{pattern, temp_dir};
use upload_core::{Event, PartSize, RetryPolicy, Source, UploadError, UploadOptions};

const KIB: u64 = 1024;

fn recorder() -> (Arc<Mutex<Vec<Event>>>, upload_core::Observer) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    (events, Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone())))
}

fn quick(part_size: u64) -> UploadOptions {
    UploadOptions {
        part_size: PartSize::Exact(part_size),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        ..UploadOptions::default()
    }
}

fn restarts(events: &Mutex<Vec<Event>>) -> usize {
    events.lock().unwrap().iter().filter(|e| matches!(e, Event::SessionRestarted { .. })).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_session_that_expires_mid_run_is_started_over_in_the_run() {
    use sharepoint_resumable::emulator::{Emulator, EmulatorConfig};
    use sharepoint_resumable::{Drive, Item};
    let emu = Arc::new(Emulator::start(EmulatorConfig::default()).await.unwrap());
    let (events, record) = recorder();
    // The session ends (as after its idle time) once the second fragment is stored.
    let expirer = emu.clone();
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = expired.clone();
    let observer: upload_core::Observer = Arc::new(move |e: &Event| {
        record(e);
        if matches!(e, Event::PartDone { parts_done: 2, .. }) && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            expirer.expire_sessions();
        }
    });
    let dir = temp_dir("expiry-graph");
    let options =
        UploadOptions { observer: Some(observer), checkpoint: Some(dir.join("state.json")), ..quick(320 * KIB) };
    let uploader = sharepoint_resumable::Uploader::new(sharepoint_resumable::Client::new(emu.client_config()).unwrap())
        .with_options(options);
    let data = Bytes::from(pattern(5 * 320 * KIB as usize + 99, 4));
    let mut upload =
        uploader.upload(Drive::Me, Item::Path("expiring.bin".into()), Source::bytes(data.clone())).unwrap();
    let done = upload.run().await.unwrap();
    assert!(expired.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(restarts(&events), 1, "{:?}", events.lock().unwrap());
    assert_eq!(emu.item_content("drive-1", "expiring.bin").unwrap(), data);
    assert_eq!(done.output.size, Some(data.len() as u64));
    assert!(!dir.join("state.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oss_upload_aborted_elsewhere_mid_run_starts_over_unless_told_not_to() {
    use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let gone = |times| Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(3),
        times,
        action: FaultAction::Error { status: 404, code: "NoSuchUpload".into(), retry_after: None },
    };
    let client = oss_multipart::Client::new(emu.client_config()).unwrap();
    let data = Bytes::from(pattern(5 * 256 * KIB as usize, 5));

    emu.inject(gone(1));
    let (events, observer) = recorder();
    let options = UploadOptions { observer: Some(observer), concurrency: 1, ..quick(256 * KIB) };
    let uploader = oss_multipart::Uploader::new(client.clone()).with_options(options);
    uploader.upload("bucket", "gone.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(emu.object("bucket", "gone.bin").unwrap(), data);
    assert_eq!(restarts(&events), 1);

    // Told not to start over: the run stops with the session gone and the state kept.
    emu.inject(gone(1));
    let dir = temp_dir("expiry-oss");
    let checkpoint = dir.join("state.json");
    let options = UploadOptions {
        restart_gone_session: false,
        concurrency: 1,
        checkpoint: Some(checkpoint.clone()),
        ..quick(256 * KIB)
    };
    let uploader = oss_multipart::Uploader::new(client.clone()).with_options(options);
    let err = uploader.upload("bucket", "kept.bin", Source::bytes(data.clone())).unwrap().run().await.err().unwrap();
    assert!(matches!(err, UploadError::SessionGone { .. }), "{err}");
    assert!(checkpoint.exists(), "the caller decides what to do with the state");

    // A server that loses every session: the run gives up after a few, it does not loop.
    emu.inject(gone(1000));
    let (events, observer) = recorder();
    let options = UploadOptions { observer: Some(observer), concurrency: 1, ..quick(256 * KIB) };
    let uploader = oss_multipart::Uploader::new(client).with_options(options);
    let err = uploader.upload("bucket", "lost.bin", Source::bytes(data)).unwrap().run().await.err().unwrap();
    assert!(err.to_string().contains("new sessions were lost the same way"), "{err}");
    assert_eq!(restarts(&events), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_upload_slower_than_its_session_says_so_before_the_session_ends() {
    use box_chunked::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let config = EmulatorConfig {
        min_chunked: 1000,
        part_size: Some(256 * KIB),
        processing_commits: 0,
        session_lifetime: Duration::from_secs(3),
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(config).await.unwrap();
    // Every part takes a second: six parts cannot finish within the session's three seconds.
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: None,
        times: 1000,
        action: FaultAction::Delay(Duration::from_secs(1)),
    });
    let (events, observer) = recorder();
    let options = UploadOptions { observer: Some(observer), concurrency: 1, ..quick(256 * KIB) };
    let uploader =
        box_chunked::Uploader::new(box_chunked::Client::new(emu.client_config()).unwrap()).with_options(options);
    let data = Bytes::from(pattern(6 * 256 * KIB as usize, 6));
    let result = uploader.upload("0", "slow.bin", Source::bytes(data)).unwrap().run().await;
    let events = events.lock().unwrap();
    let warned = events.iter().position(|e| matches!(e, Event::SessionMayExpire { .. })).expect("no warning");
    let Event::SessionMayExpire { remaining, estimated } = &events[warned] else { unreachable!() };
    assert!(estimated > remaining, "{estimated:?} {remaining:?}");
    let first_restart = events.iter().position(|e| matches!(e, Event::SessionRestarted { .. }));
    assert!(first_restart.is_none_or(|r| r > warned), "the warning comes before the session ends");
    // Every new session is as short: the run ends, bounded, with the session gone.
    assert!(matches!(result, Err(UploadError::SessionGone { .. })), "{:?}", result.err());
}
