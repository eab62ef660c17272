//! Saved states are read back from disk or a database and may be stale, crafted or planted:
//! for every vendor, a checkpoint whose session names another object (bucket, key, item, file,
//! destination) or whose source fingerprint was emptied is refused before a single request,
//! and the object the upload is for can still be finished from the genuine checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tests::fake::{pattern, temp_dir};
use upload_core::{
    CancellationToken, Event, PartSize, Protocol, RetryPolicy, Source, Upload, UploadError, UploadOptions,
};

const KIB: u64 = 1024;

/// Options that write `checkpoint` and cancel the upload once its first part is stored.
fn stop_after_first_part(checkpoint: &Path, part_size: Option<u64>) -> UploadOptions {
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    UploadOptions {
        part_size: part_size.map_or(PartSize::Auto, PartSize::Exact),
        concurrency: 1,
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        checkpoint: Some(checkpoint.to_owned()),
        observer: Some(Arc::new(move |e: &Event| {
            if matches!(e, Event::PartDone { .. }) {
                stopper.cancel();
            }
        })),
        cancel,
        ..UploadOptions::default()
    }
}

fn options(checkpoint: &Path, part_size: Option<u64>) -> UploadOptions {
    UploadOptions { observer: None, cancel: CancellationToken::new(), ..stop_after_first_part(checkpoint, part_size) }
}

/// Rewrites the checkpoint as an attacker (or a stale copy) would, owner-only as the real one.
fn craft(checkpoint: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut state: Value = serde_json::from_slice(&std::fs::read(checkpoint).unwrap()).unwrap();
    edit(&mut state);
    let crafted = checkpoint.with_extension("crafted.json");
    upload_core::checkpoint::write_private(&crafted, &serde_json::to_vec(&state).unwrap()).unwrap();
    crafted
}

/// Runs an upload that must be refused for its state, and says what it was refused with.
async fn refused<P: Protocol>(mut upload: Upload<P>) -> String {
    match upload.run().await {
        Err(e @ (UploadError::StateMismatch { .. } | UploadError::SourceChanged(_))) => e.to_string(),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a crafted state was used"),
    }
}

/// The checks every vendor gets: `make` builds the upload of `data` with `options`; `session`
/// edits the state's session to name another object.
async fn check_vendor<P: Protocol>(
    name: &str,
    part_size: Option<u64>,
    requests: impl Fn() -> usize,
    make: impl Fn(UploadOptions) -> Upload<P>,
    session: impl Fn(&mut Value),
) {
    let dir = temp_dir(&format!("crafted-{name}"));
    let checkpoint = dir.join("state.json");
    let stopped = make(stop_after_first_part(&checkpoint, part_size)).run().await;
    assert!(matches!(stopped, Err(UploadError::Cancelled)), "{name}: {:?}", stopped.err());
    assert!(checkpoint.exists());

    // Another object's session in the state.
    let crafted = craft(&checkpoint, |s| session(&mut s["session"]));
    let before = requests();
    let why = refused(make(options(&crafted, part_size))).await;
    assert!(why.contains("the saved upload state is for a session of"), "{name}: {why}");
    assert!(!why.contains("Some("), "{name}: plain numbers, not debug output: {why}");
    assert!(why.ends_with("a saved session must be its own target's"), "{name}: the rule is named: {why}");
    assert_eq!(requests(), before, "{name}: not one request was made with the crafted session");

    // Aborting a crafted state reaches nothing either, and is refused in the same words.
    let before = requests();
    let aborted = make(options(&crafted, part_size)).abort().await;
    assert!(matches!(aborted, Err(UploadError::StateMismatch { .. })), "{name}: {aborted:?}");
    assert_eq!(aborted.err().map(|e| e.to_string()), Some(why), "{name}: abort and resume say the same");
    assert_eq!(requests(), before, "{name}: abort made no request");
    assert!(crafted.exists(), "{name}: a refused abort keeps the file");

    // An emptied source fingerprint matches no file.
    let emptied = craft(&checkpoint, |s| s["source"] = json!({}));
    let why = refused(make(options(&emptied, part_size))).await;
    assert!(why.contains("does not record the source's size"), "{name}: {why}");

    // The genuine checkpoint still finishes the upload.
    make(options(&checkpoint, part_size)).run().await.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(!checkpoint.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn data() -> Bytes {
    Bytes::from(pattern(1300 * KIB as usize, 7))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oss_refuses_a_session_of_another_bucket_or_key() {
    use oss_multipart::emulator::{Emulator, EmulatorConfig};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let uploader = oss_multipart::Uploader::new(oss_multipart::Client::new(emu.client_config()).unwrap());
    let data = data();
    let make = |o| uploader.clone().with_options(o).upload("bucket", "mine.bin", Source::bytes(data.clone())).unwrap();
    for edit in [("bucket", "victim"), ("key", "theirs.bin")] {
        check_vendor("oss", Some(256 * KIB), || emu.requests().len(), make, |s| s[edit.0] = json!(edit.1)).await;
    }
    assert_eq!(emu.object("bucket", "mine.bin").unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qingstor_refuses_a_session_of_another_bucket_or_key() {
    use qingstor_multipart::emulator::{Emulator, EmulatorConfig};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let uploader = qingstor_multipart::Uploader::new(qingstor_multipart::Client::new(emu.client_config()).unwrap());
    let data = Bytes::from(pattern(9 * 1024 * KIB as usize, 8));
    let make = |o| uploader.clone().with_options(o).upload("bucket", "mine.bin", Source::bytes(data.clone())).unwrap();
    for edit in [("bucket", "victim"), ("key", "theirs.bin")] {
        check_vendor("qingstor", Some(4096 * KIB), || emu.requests().len(), make, |s| s[edit.0] = json!(edit.1)).await;
    }
    assert_eq!(emu.object("bucket", "mine.bin").unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_refuses_a_session_of_another_folder_or_file() {
    use box_chunked::emulator::{Emulator, EmulatorConfig};
    let config = EmulatorConfig {
        min_chunked: 1000,
        part_size: Some(256 * KIB),
        processing_commits: 0,
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(config).await.unwrap();
    let uploader = box_chunked::Uploader::new(box_chunked::Client::new(emu.client_config()).unwrap());
    let data = data();
    let edits: [fn(&mut Value); 3] = [
        |s| s["destination"]["Folder"]["folder_id"] = json!("12345"),
        |s| s["destination"]["Folder"]["name"] = json!("theirs.bin"),
        |s| s["destination"] = json!({"Version": {"file_id": "777", "new_name": null}}),
    ];
    for (i, edit) in edits.into_iter().enumerate() {
        // Box refuses a second file of the same name: one name per round.
        let name = format!("mine-{i}.bin");
        let make = |o| uploader.clone().with_options(o).upload("0", &name, Source::bytes(data.clone())).unwrap();
        check_vendor("box", None, || emu.requests().len(), make, edit).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_refuses_a_session_of_another_drive_or_item() {
    use sharepoint_resumable::emulator::{Emulator, EmulatorConfig};
    use sharepoint_resumable::{Drive, Item};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let uploader = sharepoint_resumable::Uploader::new(sharepoint_resumable::Client::new(emu.client_config()).unwrap());
    let data = data();
    let make = |o| {
        uploader
            .clone()
            .with_options(o)
            .upload(Drive::Me, Item::Path("dir/mine.bin".into()), Source::bytes(data.clone()))
            .unwrap()
    };
    let edits: [fn(&mut Value); 3] = [
        |s| s["item"] = json!({"Path": "dir/theirs.bin"}),
        |s| s["drive"] = json!({"Id": "someone-elses"}),
        |s| s["file_size"] = json!(1),
    ];
    for edit in edits {
        check_vendor("graph", Some(320 * KIB), || emu.requests().len(), make, edit).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharepoint_rest_refuses_a_session_of_another_file() {
    use sharepoint_resumable::emulator::{Emulator, EmulatorConfig};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = sharepoint_resumable::RestClient::new(emu.rest_config().unwrap()).unwrap();
    let uploader = sharepoint_resumable::RestUploader::new(client);
    let data = data();
    let make = |o| {
        uploader.clone().with_options(o).upload("Shared Documents", "mine.bin", Source::bytes(data.clone())).unwrap()
    };
    let edits: [fn(&mut Value); 2] =
        [|s| s["file"] = json!("/sites/emulator/Shared Documents/theirs.bin"), |s| s["file_size"] = json!(5)];
    for edit in edits {
        check_vendor("sharepoint-rest", Some(256 * KIB), || emu.requests().len(), make, edit).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_refuses_an_upload_url_graph_does_not_hand_out() {
    use sharepoint_resumable::emulator::{Emulator, EmulatorConfig};
    use sharepoint_resumable::{Drive, Item};
    use tests::scripted::Hostile;
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let elsewhere = Hostile::start().await;
    let uploader = sharepoint_resumable::Uploader::new(sharepoint_resumable::Client::new(emu.client_config()).unwrap());
    let data = data();
    let make = |o| {
        uploader
            .clone()
            .with_options(o)
            .upload(Drive::Me, Item::Path("dir/mine.bin".into()), Source::bytes(data.clone()))
            .unwrap()
    };
    let dir = temp_dir("crafted-graph-url");
    let checkpoint = dir.join("state.json");
    let stopped = make(stop_after_first_part(&checkpoint, Some(320 * KIB))).run().await;
    assert!(matches!(stopped, Err(UploadError::Cancelled)), "{:?}", stopped.err());
    let genuine: Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    let real = genuine["session"]["upload_url"].as_str().unwrap().to_owned();
    let tempauth = real.split("tempauth=").nth(1).unwrap().to_owned();
    // An internal address over plain http, a foreign https host, the emulator's own upload host
    // under another name or scheme: each is refused before a request, and no message repeats
    // the URL's credential.
    let port = reqwest::Url::parse(&real).unwrap().port().unwrap();
    let urls = [
        format!("{}/up/x?tempauth={tempauth}", elsewhere.url()),
        format!("https://evil.example/up/x?tempauth={tempauth}"),
        format!("https://contoso.sharepoint.com.evil.example/up/x?tempauth={tempauth}"),
        format!("http://localhost:{port}/up/x?tempauth={tempauth}"),
        real.replacen("http://", "https://", 1),
        "not a url".to_owned(),
    ];
    for url in urls {
        let crafted = craft(&checkpoint, |s| s["session"]["upload_url"] = json!(url));
        let before = emu.requests().len();
        let why = refused(make(options(&crafted, Some(320 * KIB)))).await;
        assert!(why.contains("a session whose upload URL"), "{url}: {why}");
        assert!(!why.contains(&tempauth), "{why}");
        assert_eq!(emu.requests().len(), before, "{url}: no request with the crafted session");
    }
    assert!(elsewhere.seen().is_empty(), "a fragment went to {:?}", elsewhere.seen());
    make(options(&checkpoint, Some(320 * KIB))).run().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
