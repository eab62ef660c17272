//! Secrets never leak: for every vendor, a full upload through faults and a refused credential,
//! with every `tracing` event and `log` record captured at trace level (ours and our
//! dependencies'), and every client, configuration, credential, state and error formatted with
//! `Debug` and `Display`. No key secret, token, cookie, form digest, signature or Graph upload URL
//! may appear in any of it. Checkpoints, which must keep an upload URL to resume, are owner-only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tests::fake::{pattern, temp_dir};
use upload_core::{PartSize, Source, UploadOptions};

/// Everything written by `tracing` and `log`, from every test of this file.
static CAPTURED: Mutex<String> = Mutex::new(String::new());

struct Capture;

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut out = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
        let _ = write!(out, "span {}", span.metadata().name());
        span.record(&mut Fields(&mut out));
        out.push('\n');
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut out = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
        values.record(&mut Fields(&mut out));
        out.push('\n');
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut out = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
        let _ = write!(out, "{} {}", event.metadata().level(), event.metadata().target());
        event.record(&mut Fields(&mut out));
        out.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut out = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{} {} {}", record.level(), record.target(), record.args());
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

fn capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing::subscriber::set_global_default(Capture).expect("the only subscriber");
        log::set_logger(&LOGGER).expect("the only logger");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Fails naming the secret and where it showed.
fn assert_hidden(secrets: &[&str], what: &str, text: &str) {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!text.contains(secret), "{what} shows the secret {secret:?}:\n{text}");
    }
    for marker in ["Signature=", "OSS4-HMAC-SHA256 Credential", "Bearer ", "tempauth=", "X-RequestDigest: 0x"] {
        assert!(!text.contains(marker), "{what} shows {marker:?}:\n{text}");
    }
}

fn captured() -> String {
    let text = CAPTURED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if std::env::var_os("SHOW_CAPTURE").is_some() {
        eprintln!("{text}");
    }
    // The capture works: the HTTP stack's connection records are in it.
    assert!(text.lines().count() > 10, "too little was captured to prove anything:\n{text}");
    text
}

fn quick(part: u64) -> UploadOptions {
    UploadOptions {
        part_size: if part == 0 { PartSize::Auto } else { PartSize::Exact(part) },
        retry: upload_core::RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..Default::default()
        },
        ..UploadOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oss_and_qingstor_keep_their_secret_keys_and_signatures_to_themselves() {
    capture();
    let mut shown = String::new();
    {
        use oss_multipart::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let secret = emu.credentials().access_key_secret.expose().to_owned();
        emu.inject(Fault {
            operation: Some(Operation::UploadPart),
            part_number: Some(2),
            times: 1,
            action: FaultAction::Error { status: 503, code: "ServiceUnavailable".into(), retry_after: None },
        });
        let config = emu.client_config();
        let client = oss_multipart::Client::new(config.clone()).unwrap();
        let uploader = oss_multipart::Uploader::new(client.clone()).with_options(quick(100 * 1024));
        let mut upload = uploader.upload("bucket", "s.bin", Source::bytes(Bytes::from(pattern(400_000, 1)))).unwrap();
        let done = upload.run().await.unwrap();
        let _ = write!(shown, "{config:?} {client:?} {uploader:?} {:?} {:?}", done.output, done.report);
        let wrong = oss_multipart::Credentials::new(emu.credentials().access_key_id, "the-wrong-oss-secret");
        let mut bad = config.clone();
        bad.credentials = wrong.clone();
        let err = oss_multipart::Uploader::new(oss_multipart::Client::new(bad.clone()).unwrap())
            .upload("bucket", "denied.bin", Source::bytes(Bytes::from_static(b"x")))
            .unwrap()
            .run()
            .await
            .unwrap_err();
        let _ = write!(shown, "{wrong:?} {bad:?} {err} {err:?}");
        assert_hidden(&[&secret, "the-wrong-oss-secret"], "OSS", &shown);
    }
    {
        use qingstor_multipart::emulator::{Emulator, EmulatorConfig};
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let secret = emu.credentials().secret_access_key.expose().to_owned();
        let config = emu.client_config();
        let client = qingstor_multipart::Client::new(config.clone()).unwrap();
        let uploader = qingstor_multipart::Uploader::new(client.clone()).with_options(quick(4 << 20));
        let mut upload = uploader.upload("bucket", "s.bin", Source::bytes(Bytes::from(pattern(9 << 20, 2)))).unwrap();
        let state = {
            upload.step(Duration::from_millis(1)).await.unwrap();
            format!("{:?}", upload.state())
        };
        let done = upload.run().await.unwrap();
        let _ = write!(shown, "{config:?} {client:?} {uploader:?} {state} {:?}", done.output);
        let presigned = client.presign("GET", "bucket", "s.bin", &[], &[], Duration::from_secs(60)).unwrap();
        let _ = write!(shown, "{presigned:?}");
        let presigned = presigned.url.expose().to_owned();
        let wrong = qingstor_multipart::Credentials::new(emu.credentials().access_key_id, "the-wrong-qs-secret");
        let mut bad = config.clone();
        bad.credentials = wrong.clone();
        let err =
            qingstor_multipart::Client::new(bad.clone()).unwrap().head_object("bucket", "s.bin").await.unwrap_err();
        let _ = write!(shown, "{wrong:?} {bad:?} {err} {err:?}");
        // A presigned URL is a credential in itself: it is what the caller asked for, and must
        // not show in anything else.
        let signature = presigned.split("signature=").nth(1).unwrap_or_default().split('&').next().unwrap_or_default();
        assert!(!signature.is_empty(), "{presigned}");
        assert_hidden(&[&secret, "the-wrong-qs-secret", signature], "QingStor", &shown);
    }
    assert_hidden(&[], "the trace-level logs", &captured());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_tokens_and_client_secrets_stay_out_of_logs_and_errors() {
    capture();
    use box_chunked::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig { min_chunked: 1 << 20, ..EmulatorConfig::default() }).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::UploadPart),
        part_number: None,
        times: 1,
        action: FaultAction::Error { status: 500, code: "internal_server_error".into(), retry_after: None },
    });
    let auth = box_chunked::Auth::ClientCredentials {
        client_id: "emulator-client-id".into(),
        client_secret: upload_core::Secret::new("emulator-client-secret"),
        subject: box_chunked::Subject::Enterprise("900".into()),
    };
    let config = emu.config_with(auth.clone());
    let client = box_chunked::Client::new(config.clone()).unwrap();
    let uploader = box_chunked::Uploader::new(client.clone());
    let dir = temp_dir("secrets-box");
    let checkpoint = dir.join("up.json");
    let mut upload = uploader
        .clone()
        .with_options(UploadOptions { checkpoint: Some(checkpoint.clone()), ..quick(0) })
        .upload("0", "s.bin", Source::bytes(Bytes::from(pattern(3 << 20, 3))))
        .unwrap();
    let done = upload.run().await.unwrap();
    let mut shown = format!("{auth:?} {config:?} {client:?} {uploader:?} {:?} {:?}", done.output, done.report);
    let bad = emu.config_with(box_chunked::Auth::Token(upload_core::Secret::new("the-wrong-box-token")));
    let err = box_chunked::Client::new(bad.clone()).unwrap().get_file("1").await.unwrap_err();
    let _ = write!(shown, "{bad:?} {err} {err:?}");
    assert_hidden(
        &["emulator-client-secret", "emulator-token", "the-wrong-box-token", "emulator-refresh-token"],
        "Box",
        &shown,
    );
    assert_hidden(&["emulator-client-secret", "the-wrong-box-token"], "the trace-level logs", &captured());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_upload_urls_tokens_and_sharepoint_cookies_never_show() {
    capture();
    use sharepoint_resumable::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.inject(Fault {
        operation: Some(Operation::UploadFragment),
        part_number: Some(1),
        times: 1,
        action: FaultAction::ResetMidBody { after: 1000 },
    });
    let auth = sharepoint_resumable::Auth::client_credentials(
        "emulator-tenant",
        "emulator-client-id",
        upload_core::Secret::new("emulator-client-secret"),
    );
    let config = emu.config_with(auth.clone());
    let client = sharepoint_resumable::Client::new(config.clone()).unwrap();
    let dir = temp_dir("secrets-graph");
    let checkpoint = dir.join("up.json");
    let uploader = sharepoint_resumable::Uploader::new(client.clone())
        .with_options(UploadOptions { checkpoint: Some(checkpoint.clone()), ..quick(320 * 1024) });
    let mut upload = uploader
        .upload(
            sharepoint_resumable::Drive::Me,
            sharepoint_resumable::Item::Path("s.bin".into()),
            Source::bytes(Bytes::from(pattern(1 << 20, 4))),
        )
        .unwrap();
    upload.step(Duration::from_millis(1)).await.unwrap();
    let state = upload.state().cloned().unwrap();
    let upload_url = state.session.upload_url.expose().to_owned();
    let tempauth = upload_url.split("tempauth=").nth(1).unwrap_or_default().to_owned();
    assert!(!tempauth.is_empty(), "the emulator's upload URLs carry a tempauth token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let text = std::fs::read_to_string(&checkpoint).unwrap();
        assert!(text.contains(&tempauth), "the checkpoint keeps the upload URL to resume");
        assert_eq!(std::fs::metadata(&checkpoint).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let mut shown = format!("{auth:?} {config:?} {client:?} {uploader:?} {state:?} {:?}", state.session);
    let done = upload.run().await.unwrap();
    let _ = write!(shown, "{:?} {:?}", done.output, done.report);
    // An upload URL that has gone: the error names the session, not its URL.
    let err = client.session_status(&state.session.upload_url).await.unwrap_err();
    let _ = write!(shown, "{err} {err:?}");
    let gone =
        client.put_fragment(&state.session.upload_url, 0, 10, Bytes::from_static(b"0123456789")).await.unwrap_err();
    let _ = write!(shown, "{gone} {gone:?}");
    let dead = upload_core::Secret::new(format!("http://127.0.0.1:9/up/x?tempauth={tempauth}"));
    let unreachable = client.session_status(&dead).await.unwrap_err();
    let _ = write!(shown, "{unreachable} {unreachable:?}");
    assert_hidden(&[&upload_url, &tempauth, "emulator-client-secret", "emulator-token"], "Graph", &shown);

    // SharePoint REST with cookies and form digests.
    let cookie = "FedAuth=emulator-cookie";
    let rest_config = sharepoint_resumable::RestConfig::new(
        &emu.site_url(),
        sharepoint_resumable::RestAuth::Cookie(upload_core::Secret::new(cookie.to_owned())),
    )
    .unwrap();
    let rest = sharepoint_resumable::RestClient::new(rest_config.clone()).unwrap();
    let digest = rest.context_info().await.unwrap().form_digest_value.unwrap();
    let done = sharepoint_resumable::RestUploader::new(rest.clone())
        .with_options(quick(256 * 1024))
        .upload("Shared Documents", "s.bin", Source::bytes(Bytes::from(pattern(600_000, 5))))
        .unwrap()
        .run()
        .await
        .unwrap();
    let _ = write!(shown, "{rest_config:?} {rest:?} {:?}", done.output);
    let stolen = sharepoint_resumable::RestClient::new(
        sharepoint_resumable::RestConfig::new(
            &emu.site_url(),
            sharepoint_resumable::RestAuth::Cookie(upload_core::Secret::new("FedAuth=the-stolen-cookie".to_owned())),
        )
        .unwrap(),
    )
    .unwrap();
    let err = stolen.context_info().await.unwrap_err();
    let _ = write!(shown, "{stolen:?} {err} {err:?}");
    assert_hidden(&[cookie, "the-stolen-cookie", &digest], "SharePoint REST", &shown);
    assert_hidden(
        &[&upload_url, &tempauth, "emulator-client-secret", cookie, "the-stolen-cookie", &digest],
        "the trace-level logs",
        &captured(),
    );
}
