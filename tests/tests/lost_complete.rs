//! A completion whose answer was lost, then the check of the object failed too: the run fails
//! resumably (the checkpoint kept, nothing started over), and a later run finishes from the
//! checkpoint without sending a part again. Only an object proven absent or different starts
//! the upload over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use tests::fake::{pattern, temp_dir};
use upload_core::{PartSize, RetryPolicy, Source, UploadOptions};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Attempts of each call in the first run: one lost completion, then this many minus one
/// completions answered "no such upload", each followed by a HEAD that fails.
const ATTEMPTS: u32 = 3;

fn options(part_size: u64, checkpoint: std::path::PathBuf) -> UploadOptions {
    UploadOptions {
        part_size: PartSize::Exact(part_size),
        retry: RetryPolicy {
            max_attempts: ATTEMPTS,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        checkpoint: Some(checkpoint),
        ..UploadOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oss_a_failed_head_after_a_lost_completion_keeps_the_checkpoint() {
    use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::CompleteMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::LoseResponse,
    });
    emu.inject(Fault {
        operation: Some(Operation::HeadObject),
        part_number: None,
        times: ATTEMPTS - 1,
        action: FaultAction::Error { status: 503, code: "ServiceUnavailable".into(), retry_after: None },
    });
    let dir = temp_dir("lost-complete-oss");
    let checkpoint = dir.join("state.json");
    let data = Bytes::from(pattern(3 * 256 * KIB as usize + 11, 61));
    let uploader = oss_multipart::Uploader::new(oss_multipart::Client::new(emu.client_config()).unwrap());
    let parts = |emu: &Emulator| emu.requests().iter().filter(|r| r.operation == Some(Operation::UploadPart)).count();
    let result = uploader
        .clone()
        .with_options(options(256 * KIB, checkpoint.clone()))
        .upload("bucket", "lost.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await;
    let Err(err) = result else { panic!("a completion that could not be checked must not start over") };
    assert!(err.to_string().contains("ServiceUnavailable"), "the HEAD's failure is reported: {err}");
    assert!(checkpoint.exists(), "the checkpoint is kept for a resume");
    let sent = parts(&emu);
    assert_eq!(sent, 4, "each part sent once");
    let done = uploader
        .with_options(options(256 * KIB, checkpoint.clone()))
        .upload("bucket", "lost.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(parts(&emu), sent, "no part sent again");
    assert_eq!(done.report.bytes_sent, 0);
    assert_eq!(emu.object("bucket", "lost.bin").unwrap(), data);
    assert!(!checkpoint.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qingstor_a_failed_head_after_a_lost_completion_keeps_the_checkpoint() {
    use qingstor_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::CompleteMultipartUpload),
        part_number: None,
        times: 1,
        action: FaultAction::LoseResponse,
    });
    emu.inject(Fault {
        operation: Some(Operation::HeadObject),
        part_number: None,
        times: ATTEMPTS - 1,
        action: FaultAction::Error { status: 503, code: "service_unavailable".into(), retry_after: None },
    });
    let dir = temp_dir("lost-complete-qingstor");
    let checkpoint = dir.join("state.json");
    let data = Bytes::from(pattern(9 * MIB as usize + 5, 62));
    let uploader = qingstor_multipart::Uploader::new(qingstor_multipart::Client::new(emu.client_config()).unwrap());
    let parts =
        |emu: &Emulator| emu.requests().iter().filter(|r| r.operation == Some(Operation::UploadMultipart)).count();
    let result = uploader
        .clone()
        .with_options(options(4 * MIB, checkpoint.clone()))
        .upload("bucket", "lost.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await;
    let Err(err) = result else { panic!("a completion that could not be checked must not start over") };
    assert!(err.to_string().contains("503"), "the HEAD's failure is reported: {err}");
    assert!(checkpoint.exists(), "the checkpoint is kept for a resume");
    let sent = parts(&emu);
    assert_eq!(sent, 3, "each part sent once");
    let done = uploader
        .with_options(options(4 * MIB, checkpoint.clone()))
        .upload("bucket", "lost.bin", Source::bytes(data.clone()))
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(parts(&emu), sent, "no part sent again");
    assert_eq!(done.report.bytes_sent, 0);
    assert_eq!(emu.object("bucket", "lost.bin").unwrap(), data);
    assert!(!checkpoint.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
