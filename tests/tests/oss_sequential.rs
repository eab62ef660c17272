//! OSS sequential uploads (`?sequential`): the emulator keeps OSS's rules (parts in ascending
//! order, never overwritten), and a retried part that meets `PartAlreadyExist` is accepted when
//! OSS holds exactly its bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
use oss_multipart::types::ObjectOptions;
use oss_multipart::{Client, ErrorCode, PartSize, Source, UploadOptions, Uploader};
use tests::fake::pattern;
use upload_core::{Digests, Hashes, RetryPolicy};

const KIB: u64 = 1024;

fn sequential() -> ObjectOptions {
    ObjectOptions { sequential: true, ..ObjectOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_keeps_the_rules_of_sequential_uploads() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = Client::new(emu.client_config()).unwrap();
    let id = client.initiate_multipart_upload("bucket", "seq", &sequential()).await.unwrap().upload_id;
    let part = |n: u8| Bytes::from(vec![n; 100 * KIB as usize]);
    let md5 = |b: &Bytes| Digests::compute(Hashes::MD5, b).md5_base64();
    for n in [1u8, 2] {
        client.upload_part("bucket", "seq", &id, u32::from(n), part(n), md5(&part(n)).as_deref()).await.unwrap();
    }
    let again = client.upload_part("bucket", "seq", &id, 2, part(9), None).await.unwrap_err();
    assert_eq!(again.code(), Some(&ErrorCode::PartAlreadyExist), "{again}");
    assert_eq!(again.status(), Some(409));
    let back = client.upload_part("bucket", "seq", &id, 1, part(9), None).await.unwrap_err();
    assert_eq!(back.code(), Some(&ErrorCode::PartAlreadyExist), "{back}");
    let parts = client.list_all_parts("bucket", "seq", &id).await.unwrap();
    assert_eq!(
        parts[1].etag.trim_matches('"'),
        upload_core::hash::hex(&Digests::compute(Hashes::MD5, &part(2)).md5.unwrap()).to_ascii_uppercase(),
        "the refused bytes did not replace the part"
    );

    // Ordinary uploads still overwrite a part.
    let plain = client.initiate_multipart_upload("bucket", "plain", &ObjectOptions::default()).await.unwrap().upload_id;
    client.upload_part("bucket", "plain", &plain, 2, part(2), None).await.unwrap();
    client.upload_part("bucket", "plain", &plain, 1, part(1), None).await.unwrap();
    client.upload_part("bucket", "plain", &plain, 2, part(3), None).await.unwrap();
    let out_of_order = client.initiate_multipart_upload("bucket", "seq2", &sequential()).await.unwrap().upload_id;
    client.upload_part("bucket", "seq2", &out_of_order, 2, part(2), None).await.unwrap();
    let err = client.upload_part("bucket", "seq2", &out_of_order, 1, part(1), None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::PartNotSequential), "{err}");
}

/// The answer to part 2 is lost and the look at the server fails too, so the part is sent again:
/// OSS refuses to overwrite it, and the upload goes on because OSS holds exactly these bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_sequential_part_that_oss_already_holds_is_accepted() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: Some(2),
        times: 1,
        action: FaultAction::LoseResponse,
    });
    emu.inject(Fault {
        operation: Some(Operation::ListParts),
        part_number: None,
        times: 1,
        action: FaultAction::Error { status: 503, code: "ServiceUnavailable".into(), retry_after: None },
    });
    let options = UploadOptions {
        part_size: PartSize::Exact(256 * KIB),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        ..UploadOptions::default()
    };
    let uploader = Uploader::new(Client::new(emu.client_config()).unwrap())
        .with_options(options)
        .with_object_options(sequential());
    let data = Bytes::from(pattern(4 * 256 * KIB as usize + 5, 9));
    let done = uploader.upload("bucket", "retried.bin", Source::bytes(data.clone())).unwrap().run().await.unwrap();
    assert_eq!(emu.object("bucket", "retried.bin").unwrap(), data);
    let refused = emu.requests().iter().filter(|r| r.error_code.as_deref() == Some("PartAlreadyExist")).count();
    assert_eq!(refused, 1, "the retry met the part it had stored");
    assert!(done.report.part_retries >= 1);
}
