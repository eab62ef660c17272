//! SharePoint document libraries add their metadata to Office, PDF and HTML files once stored,
//! so the stored size and QuickXorHash are not the ones sent. The uploaders recognise the file
//! their session stored and report it as modified by the server, once: no integrity failure,
//! no checkpoint left to resume, and never a second upload of the same file, even when the
//! answer to the last request was lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sharepoint_resumable::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
use sharepoint_resumable::upload_core::{Event, PartSize, RetryPolicy, UploadError};
use sharepoint_resumable::{Client, Drive, Item, RestClient, RestUploader, Source, UploadOptions, Uploader};
use tests::fake::{pattern, temp_dir};

const KIB: u64 = 1024;
const FRAGMENT: u64 = 320 * KIB;

async fn library() -> Emulator {
    Emulator::start(EmulatorConfig { document_libraries: vec!["drive-1".into()], ..EmulatorConfig::default() })
        .await
        .unwrap()
}

fn options(part_size: u64, checkpoint: &std::path::Path) -> (Arc<Mutex<Vec<Event>>>, UploadOptions) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let options = UploadOptions {
        part_size: PartSize::Exact(part_size),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        checkpoint: Some(checkpoint.to_owned()),
        observer: Some(Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()))),
        ..UploadOptions::default()
    };
    (events, options)
}

fn count(emu: &Emulator, op: Operation) -> usize {
    emu.requests().iter().filter(|r| r.operation == Some(op)).count()
}

fn modified_events(events: &Mutex<Vec<Event>>) -> usize {
    events.lock().unwrap().iter().filter(|e| matches!(e, Event::ServerModified(_))).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_upload_the_library_rewrites_is_reported_once_and_not_sent_again() {
    let emu = library().await;
    let dir = temp_dir("library-graph");
    let checkpoint = dir.join("report.docx.upload.json");
    let data = Bytes::from(pattern(3 * FRAGMENT as usize + 10, 21));
    let (events, opts) = options(FRAGMENT, &checkpoint);
    let uploader = Uploader::new(Client::new(emu.client_config()).unwrap()).with_options(opts.clone());
    let done = uploader.upload(Drive::Me, Item::Path("docs/report.docx".into()), Source::bytes(data.clone())).unwrap();
    let done = {
        let mut u = done;
        u.run().await.unwrap()
    };
    let modified = done.server_modified.expect("reported as modified by the server");
    assert_eq!(modified.sent.len, Some(data.len() as u64));
    let stored = emu.item_content("drive-1", "docs/report.docx").unwrap();
    assert_eq!(modified.stored.len, Some(stored.len() as u64));
    assert!(stored.len() > data.len() && stored.starts_with(&data), "the library appended its metadata");
    assert_ne!(modified.sent.digest, modified.stored.digest);
    assert!(modified.to_string().contains("SharePoint library added its metadata"), "{modified}");
    assert_eq!(modified_events(&events), 1);
    assert!(!checkpoint.exists(), "nothing is left to resume");
    assert_eq!(count(&emu, Operation::UploadFragment), 4);

    // The same file that is not one a library rewrites is checked byte for byte as always.
    let plain = uploader.upload(Drive::Me, Item::Path("docs/report.bin".into()), Source::bytes(data.clone())).unwrap();
    let plain = {
        let mut u = plain;
        u.run().await.unwrap()
    };
    assert!(plain.server_modified.is_none());
    assert_eq!(emu.item_content("drive-1", "docs/report.bin").unwrap(), data);

    // Told to treat it as an error: the upload is still over (no checkpoint), once.
    let strict = Uploader::new(Client::new(emu.client_config()).unwrap())
        .with_options(UploadOptions { accept_server_modified: false, ..opts });
    let mut upload =
        strict.upload(Drive::Me, Item::Path("docs/strict.pdf".into()), Source::bytes(data.clone())).unwrap();
    let err = upload.run().await.err().unwrap();
    assert!(matches!(err, UploadError::ServerModified(_)), "{err}");
    assert!(err.to_string().starts_with("the upload finished, but"), "{err}");
    assert!(!checkpoint.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The answer to the last fragment is lost: the session is gone, the item at the path is longer
/// than what was sent. It is this session's item (newer than the session, a rewritten type):
/// the upload completes from it instead of starting over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_last_answer_finds_the_rewritten_item_instead_of_uploading_again() {
    let emu = library().await;
    emu.inject(Fault {
        operation: Some(Operation::UploadFragment),
        part_number: Some(2),
        times: 1,
        action: FaultAction::LoseResponse,
    });
    let dir = temp_dir("library-graph-lost");
    let (events, opts) = options(FRAGMENT, &dir.join("state.json"));
    let uploader = Uploader::new(Client::new(emu.client_config()).unwrap()).with_options(opts);
    let data = Bytes::from(pattern(3 * FRAGMENT as usize - 7, 22));
    let mut upload = uploader.upload(Drive::Me, Item::Path("deck.pptx".into()), Source::bytes(data.clone())).unwrap();
    let done = upload.run().await.unwrap();
    assert!(done.server_modified.is_some());
    assert!(emu.item_content("drive-1", "deck.pptx").unwrap().starts_with(&data));
    assert_eq!(count(&emu, Operation::CreateUploadSession), 1, "one session: nothing was uploaded again");
    assert_eq!(count(&emu, Operation::UploadFragment), 3);
    assert!(!events.lock().unwrap().iter().any(|e| matches!(e, Event::SessionRestarted { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharepoint_rest_upload_the_library_rewrites_is_reported_once() {
    let emu = library().await;
    let dir = temp_dir("library-rest");
    let checkpoint = dir.join("scan.pdf.upload.json");
    let (events, opts) = options(256 * KIB, &checkpoint);
    let uploader = RestUploader::new(RestClient::new(emu.rest_config().unwrap()).unwrap()).with_options(opts);
    let data = Bytes::from(pattern(3 * 256 * KIB as usize + 1, 23));
    emu.inject(Fault {
        operation: Some(Operation::FinishUpload),
        part_number: None,
        times: 1,
        action: FaultAction::LoseResponse,
    });
    let mut upload = uploader.upload("Shared Documents", "scan.pdf", Source::bytes(data.clone())).unwrap();
    let done = upload.run().await.unwrap();
    let modified = done.server_modified.expect("reported as modified by the server");
    assert_eq!((modified.sent.len, modified.stored.len), (Some(data.len() as u64), done.output.len()));
    assert!(emu.item_content("drive-1", "scan.pdf").unwrap().starts_with(&data));
    assert_eq!(modified_events(&events), 1);
    assert_eq!(count(&emu, Operation::StartUpload), 1, "the file was not uploaded again");
    assert!(!checkpoint.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A rewrite only adds a little: a file of a rewritten type whose stored size is smaller than
/// what was sent, or far larger, is someone else's, not this session's. Here a colleague
/// replaces the file while the session sits half done, and the session then expires: the
/// upload starts over and stores its own bytes, rather than calling the colleague's file done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_by_someone_else_is_not_taken_for_this_sessions_rewrite() {
    use sharepoint_resumable::upload_core::CancellationToken;
    let emu = library().await;
    let dir = temp_dir("library-graph-replaced");
    let checkpoint = dir.join("state.json");
    let data = Bytes::from(pattern(3 * FRAGMENT as usize, 24));
    let (_, opts) = options(FRAGMENT, &checkpoint);
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    let stopping = UploadOptions {
        concurrency: 1,
        cancel,
        observer: Some(Arc::new(move |e: &Event| {
            if matches!(e, Event::PartDone { .. }) {
                stopper.cancel();
            }
        })),
        ..opts.clone()
    };
    let client = Client::new(emu.client_config()).unwrap();
    let first = Uploader::new(client.clone()).with_options(stopping).with_conflict_behavior("replace");
    let mut upload = first.upload(Drive::Me, Item::Path("deck.pptx".into()), Source::bytes(data.clone())).unwrap();
    assert!(matches!(upload.run().await, Err(UploadError::Cancelled)));

    // The half-done session expires, and a colleague stores their own, small deck.pptx.
    emu.expire_sessions();
    let theirs = Bytes::from(pattern(1000, 25));
    let colleague = Uploader::new(client.clone()).with_conflict_behavior("replace");
    colleague
        .upload(Drive::Me, Item::Path("deck.pptx".into()), Source::bytes(theirs.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();

    let resumed = Uploader::new(client).with_options(opts).with_conflict_behavior("replace");
    let mut upload = resumed.upload(Drive::Me, Item::Path("deck.pptx".into()), Source::bytes(data.clone())).unwrap();
    let done = upload.run().await.unwrap();
    let stored = emu.item_content("drive-1", "deck.pptx").unwrap();
    assert!(stored.starts_with(&data), "the colleague's file was taken for this upload's");
    assert_eq!(done.server_modified.map(|m| m.sent.len), Some(Some(data.len() as u64)));
    std::fs::remove_dir_all(&dir).unwrap();
}
