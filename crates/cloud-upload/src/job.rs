//! One upload job: the file, the target and the settings, kept next to the engine's checkpoint
//! (`<checkpoint>.job.json`) so that `resume`, `abort` and `status` need only the checkpoint path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use upload_core::{
    CancellationToken, Completed, PartSize, Protocol, Source, Step, Upload, UploadError, UploadOptions, UploadState,
};

use crate::progress::Ui;
use crate::target::Target;

/// How the command ended, as its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Bad input: a wrong argument, a file the vendor refuses, a checkpoint of another file.
    BadInput = 2,
    /// The credentials were refused.
    Auth = 3,
    /// Stopped in a resumable state (the checkpoint path is printed).
    Interrupted = 4,
    /// The vendor refused the upload (its code is printed).
    Vendor = 5,
}

/// A failure, with its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into() }
    }
}

/// What the user asked for besides file and target.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) zone: Option<String>,
    pub(crate) signature_version: Option<String>,
    pub(crate) concurrency: usize,
    pub(crate) part_size: Option<u64>,
}

/// A job as stored beside its checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) file: PathBuf,
    pub(crate) target: Target,
    pub(crate) settings: Settings,
}

pub(crate) fn job_path(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".job.json");
    checkpoint.with_file_name(name)
}

impl Job {
    pub(crate) fn save(&self, checkpoint: &Path) -> Result<(), Failure> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Failure::new(Exit::BadInput, e.to_string()))?;
        std::fs::write(job_path(checkpoint), text)
            .map_err(|e| Failure::new(Exit::BadInput, format!("cannot write {}: {e}", job_path(checkpoint).display())))
    }

    pub(crate) fn load(checkpoint: &Path) -> Result<Self, Failure> {
        let path = job_path(checkpoint);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Failure::new(
                Exit::BadInput,
                format!("{}: {e} (is {} a cloud-upload checkpoint?)", path.display(), checkpoint.display()),
            )
        })?;
        serde_json::from_str(&text).map_err(|e| Failure::new(Exit::BadInput, format!("{}: {e}", path.display())))
    }
}

/// A vendor client for a target.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Oss(oss_multipart::Client),
    QingStor(qingstor_multipart::Client),
    Box(box_chunked::Client),
    Graph(sharepoint_resumable::Client),
    Rest(sharepoint_resumable::RestClient),
}

fn config_error(e: impl std::fmt::Display) -> Failure {
    Failure::new(Exit::BadInput, e.to_string())
}

impl Backend {
    /// A client from the vendor's usual environment variables and config files, with the
    /// command line's settings on top.
    pub(crate) fn from_env(target: &Target, s: &Settings) -> Result<Self, Failure> {
        match target {
            Target::Oss { .. } => {
                let mut config = match &s.endpoint {
                    Some(endpoint) => {
                        let var = |n: &str| std::env::var(n).map_err(|_| config_error(format!("{n} is not set")));
                        let mut credentials =
                            oss_multipart::Credentials::new(var("OSS_ACCESS_KEY_ID")?, var("OSS_ACCESS_KEY_SECRET")?);
                        if let Ok(token) = std::env::var("OSS_SESSION_TOKEN") {
                            credentials = credentials.with_security_token(token);
                        }
                        oss_multipart::Config::new(endpoint, credentials).map_err(config_error)?
                    }
                    None => oss_multipart::Config::from_env().map_err(config_error)?,
                };
                if let Some(r) = &s.region {
                    config = config.with_region(r.clone());
                }
                match s.signature_version.as_deref() {
                    None | Some("v4" | "V4") => {}
                    Some("v1" | "V1") => config = config.with_signature_version(oss_multipart::SignatureVersion::V1),
                    Some(other) => return Err(config_error(format!("--signature-version {other:?}: v1 or v4"))),
                }
                oss_multipart::Client::new(config).map(Backend::Oss).map_err(config_error)
            }
            Target::QingStor { .. } => {
                let mut config = qingstor_multipart::Config::load().map_err(config_error)?;
                if let Some(endpoint) = &s.endpoint {
                    config = config.with_endpoint(endpoint).map_err(config_error)?;
                }
                if let Some(zone) = &s.zone {
                    config = config.with_zone(zone.clone());
                }
                qingstor_multipart::Client::new(config).map(Backend::QingStor).map_err(config_error)
            }
            Target::BoxFolder { .. } | Target::BoxFile { .. } => {
                let config = box_chunked::Config::from_env().map_err(config_error)?;
                box_chunked::Client::new(config).map(Backend::Box).map_err(config_error)
            }
            Target::Graph { .. } => {
                let config = sharepoint_resumable::Config::from_env().map_err(config_error)?;
                sharepoint_resumable::Client::new(config).map(Backend::Graph).map_err(config_error)
            }
            Target::SharePointRest { .. } => {
                let config = match &s.endpoint {
                    Some(site) => sharepoint_resumable::RestConfig::from_env_for_site(site),
                    None => sharepoint_resumable::RestConfig::from_env(),
                }
                .map_err(config_error)?;
                sharepoint_resumable::RestClient::new(config).map(Backend::Rest).map_err(config_error)
            }
        }
    }
}

/// What a finished (or paused) job did.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Outcome {
    pub(crate) vendor: &'static str,
    pub(crate) target: String,
    pub(crate) done: bool,
    pub(crate) bytes: u64,
    pub(crate) parts: u32,
    pub(crate) parts_found_on_server: u32,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_resent: u64,
    pub(crate) retries: u64,
    pub(crate) seconds: f64,
    /// The vendor's name for what was stored (ETag, file id…).
    pub(crate) stored: Option<String>,
    pub(crate) checkpoint: Option<PathBuf>,
}

/// How each vendor's errors map to exit codes: (auth failure?, the vendor's code).
type Classifier<E> = fn(&E) -> (bool, Option<String>);

fn oss_class(e: &oss_multipart::Error) -> (bool, Option<String>) {
    use oss_multipart::ErrorCode as C;
    let code = e.code().map(|c| c.to_string());
    (matches!(e.code(), Some(C::InvalidAccessKeyId | C::SignatureDoesNotMatch)), code)
}

fn qingstor_class(e: &qingstor_multipart::Error) -> (bool, Option<String>) {
    use qingstor_multipart::ErrorCode as C;
    let code = e.code().map(|c| c.to_string());
    (matches!(e.code(), Some(C::InvalidAccessKeyId | C::SignatureNotMatched | C::RequestExpired)), code)
}

fn box_class(e: &box_chunked::Error) -> (bool, Option<String>) {
    let auth = matches!(e, box_chunked::Error::Auth { .. }) || e.code() == Some(&box_chunked::ErrorCode::InvalidToken);
    (auth, e.code().map(|c| c.to_string()))
}

/// The code [`graph_class`] gives a name held by an orphaned upload session.
const SESSION_HELD: &str = "uploadSessionHeld";

fn graph_class(e: &sharepoint_resumable::Error) -> (bool, Option<String>) {
    if e.is_session_held() {
        return (false, Some(SESSION_HELD.to_owned()));
    }
    let auth = matches!(e, sharepoint_resumable::Error::Auth { .. })
        || e.code() == Some(&sharepoint_resumable::ErrorCode::Unauthenticated);
    (auth, e.code().map(|c| c.to_string()))
}

fn rest_class(e: &sharepoint_resumable::Error) -> (bool, Option<String>) {
    use sharepoint_resumable::error::rest_codes;
    let sp = e.sharepoint();
    let auth = matches!(e, sharepoint_resumable::Error::Auth { .. })
        || sp.is_some_and(|s| s.status == 401 || s.is(rest_codes::SECURITY_VALIDATION));
    (auth, sp.map(|s| s.code.clone()).filter(|c| !c.is_empty()))
}

fn rest_protocol(
    c: &sharepoint_resumable::RestClient,
    target: &Target,
) -> Result<sharepoint_resumable::uploader::RestProtocol, Failure> {
    match target {
        Target::SharePointRest { path } => {
            let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
            sharepoint_resumable::uploader::RestProtocol::new(c.clone(), folder, name).map_err(config_error)
        }
        _ => Err(Failure::new(Exit::BadInput, "not a SharePoint REST target")),
    }
}

fn graph_protocol(
    c: &sharepoint_resumable::Client,
    target: &Target,
) -> Result<sharepoint_resumable::uploader::GraphProtocol, Failure> {
    match target {
        Target::Graph { drive, path } => Ok(sharepoint_resumable::uploader::GraphProtocol::new(
            c.clone(),
            drive.clone(),
            sharepoint_resumable::Item::Path(path.clone()),
        )),
        _ => Err(Failure::new(Exit::BadInput, "not a Graph target")),
    }
}

fn failure<E: std::error::Error + upload_core::Classify + 'static>(
    e: UploadError<E>,
    class: Classifier<E>,
    checkpoint: &Path,
) -> Failure {
    let resumable = format!("{e}\nthe upload can be resumed: cloud-upload resume {}", checkpoint.display());
    match &e {
        UploadError::Plan(_)
        | UploadError::Input(_)
        | UploadError::SourceChanged(_)
        | UploadError::StateMismatch { .. }
        | UploadError::StateCorrupt(_)
        | UploadError::Checkpoint(_) => Failure::new(Exit::BadInput, e.to_string()),
        UploadError::Vendor { source, .. } => {
            let (auth, code) = class(&source.error);
            if code.as_deref() == Some(SESSION_HELD) {
                // Graph keeps the name for the session a killed run created: it expires by itself.
                return Failure::new(
                    Exit::Interrupted,
                    format!(
                        "{e}\nan upload session for this name, created by an earlier run that stopped before it could record it, holds the name until it expires (about 15 minutes after its last fragment); run the same command again then"
                    ),
                );
            }
            if auth {
                Failure::new(Exit::Auth, e.to_string())
            } else if upload_core::Classify::is_retryable(&source.error) {
                // Gave up after its retries on a failure that may pass: resumable.
                Failure::new(Exit::Interrupted, resumable)
            } else {
                let code = code.map(|c| format!(" [{c}]")).unwrap_or_default();
                Failure::new(Exit::Vendor, format!("{e}{code}"))
            }
        }
        UploadError::Integrity(_) | UploadError::Protocol(_) => Failure::new(Exit::Vendor, e.to_string()),
        _ => Failure::new(Exit::Interrupted, resumable),
    }
}

/// Runs an upload to its end, or for one step.
async fn drive<P: Protocol>(
    mut upload: Upload<P>,
    step: Option<Duration>,
) -> Result<(Option<Completed<P::Output>>, Option<UploadState<P::Session, P::Receipt>>), UploadError<P::Error>> {
    match step {
        None => upload.run().await.map(|done| (Some(done), None)),
        Some(budget) => match upload.step(budget).await? {
            Step::Done(done) => Ok((Some(done), None)),
            Step::Pending { .. } => Ok((None, upload.into_state())),
        },
    }
}

/// How a run is driven: to the end or for one step, cancelled by the token, and (the demo's
/// deliberate interruption) cancelled once `stop_at` bytes are stored.
#[derive(Clone, Debug, Default)]
pub(crate) struct Control {
    pub(crate) step: Option<Duration>,
    pub(crate) cancel: CancellationToken,
    pub(crate) stop_at: Option<u64>,
}

/// Runs a job: a new upload, or the checkpoint's when one exists.
pub(crate) async fn run(
    backend: &Backend,
    job: &Job,
    checkpoint: &Path,
    ui: &Ui,
    label: &str,
    control: Control,
) -> Result<Outcome, Failure> {
    let Control { step, cancel, stop_at } = control;
    let source =
        Source::file(&job.file).map_err(|e| Failure::new(Exit::BadInput, format!("{}: {e}", job.file.display())))?;
    let total = source.len().unwrap_or(0);
    let (shown, tracker) = ui.observer(label, total);
    // `stop_at`: cancel once that many bytes are stored (the demo's deliberate interruption).
    let stopper = cancel.clone();
    let observer: upload_core::Observer = std::sync::Arc::new(move |event: &upload_core::Event| {
        shown(event);
        if let (Some(limit), upload_core::Event::PartDone { bytes_done, .. }) = (stop_at, event)
            && *bytes_done >= limit
        {
            stopper.cancel();
        }
    });
    let retry = match backend {
        Backend::Oss(c) => c.config().retry.clone(),
        Backend::QingStor(c) => c.config().retry.clone(),
        Backend::Box(c) => c.config().retry.clone(),
        Backend::Graph(c) => c.config().retry.clone(),
        Backend::Rest(c) => c.config().retry.clone(),
    };
    let options = UploadOptions {
        part_size: job.settings.part_size.map_or(PartSize::Auto, PartSize::Exact),
        concurrency: job.settings.concurrency.max(1),
        retry,
        checkpoint: Some(checkpoint.to_owned()),
        observer: Some(observer),
        cancel,
        ..UploadOptions::default()
    };
    job.save(checkpoint)?;
    let started = Instant::now();
    let mut outcome = Outcome {
        vendor: job.target.vendor(),
        target: job.target.to_string(),
        done: false,
        bytes: total,
        parts: 0,
        parts_found_on_server: 0,
        bytes_sent: 0,
        bytes_resent: 0,
        retries: 0,
        seconds: 0.0,
        stored: None,
        checkpoint: Some(checkpoint.to_owned()),
    };
    macro_rules! finish {
        ($upload:expr, $class:expr, $describe:expr) => {{
            let upload = $upload.map_err(|e| failure(e, $class, checkpoint))?;
            match drive(upload, step).await {
                Ok((Some(done), _)) => {
                    outcome.done = true;
                    // Parts found at resume, found after a lost answer, and sent now.
                    let resumed = u32::try_from(tracker.resumed_parts.load(std::sync::atomic::Ordering::Relaxed))
                        .unwrap_or(u32::MAX);
                    outcome.parts_found_on_server = resumed + done.report.parts_skipped;
                    outcome.parts = done.report.parts_uploaded + outcome.parts_found_on_server;
                    outcome.bytes_sent = done.report.bytes_sent;
                    outcome.bytes_resent = done.report.bytes_resent;
                    outcome.retries = done.report.part_retries;
                    outcome.stored = $describe(&done.output);
                    outcome.checkpoint = None;
                }
                Ok((None, state)) => {
                    outcome.parts = state.map(|s| s.parts_done()).unwrap_or_default();
                }
                Err(e) => return Err(failure(e, $class, checkpoint)),
            }
        }};
    }
    match (backend, &job.target) {
        (Backend::Oss(client), Target::Oss { bucket, key }) => {
            let uploader = oss_multipart::Uploader::new(client.clone()).with_options(options);
            finish!(uploader.upload(bucket, key, source), oss_class, |o: &oss_multipart::types::CompleteOutput| o
                .result
                .as_ref()
                .map(|r| format!("ETag {}", r.etag)))
        }
        (Backend::QingStor(client), Target::QingStor { bucket, key }) => {
            let uploader = qingstor_multipart::Uploader::new(client.clone()).with_options(options);
            finish!(
                uploader.upload(bucket, key, source),
                qingstor_class,
                |o: &qingstor_multipart::client::ObjectMeta| o.etag.as_ref().map(|e| format!("ETag {e}"))
            )
        }
        (Backend::Box(client), Target::BoxFolder { folder_id, name }) => {
            let uploader = box_chunked::Uploader::new(client.clone()).with_options(options);
            finish!(uploader.upload(folder_id, name, source), box_class, |f: &box_chunked::types::File| Some(format!(
                "file {} sha1 {}",
                f.id,
                f.sha1.clone().unwrap_or_default()
            )))
        }
        (Backend::Box(client), Target::BoxFile { file_id }) => {
            let uploader = box_chunked::Uploader::new(client.clone()).with_options(options);
            finish!(uploader.upload_version(file_id, source), box_class, |f: &box_chunked::types::File| Some(format!(
                "file {} sha1 {}",
                f.id,
                f.sha1.clone().unwrap_or_default()
            )))
        }
        (Backend::Graph(client), Target::Graph { drive, path }) => {
            let uploader = sharepoint_resumable::Uploader::new(client.clone()).with_options(options);
            let item = sharepoint_resumable::Item::Path(path.clone());
            finish!(
                uploader.upload(drive.clone(), item, source),
                graph_class,
                |i: &sharepoint_resumable::types::DriveItem| Some(format!("item {}", i.id))
            )
        }
        (Backend::Rest(client), Target::SharePointRest { path }) => {
            let uploader = sharepoint_resumable::RestUploader::new(client.clone()).with_options(options);
            let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
            finish!(uploader.upload(folder, name, source), rest_class, |f: &sharepoint_resumable::types::SpFile| f
                .unique_id
                .as_ref()
                .map(|id| format!("file {id}")))
        }
        _ => return Err(Failure::new(Exit::BadInput, "the client does not match the target's vendor")),
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    if outcome.retries == 0 {
        outcome.retries = tracker.retries.load(std::sync::atomic::Ordering::Relaxed);
    }
    if outcome.done {
        let _ = std::fs::remove_file(job_path(checkpoint));
    }
    Ok(outcome)
}

/// A checkpoint's state, refused unless it is this job's: its target, and a session of that
/// target (a crafted state must not make `status` or `abort` reach another upload).
fn load_state<P: Protocol>(protocol: &P, checkpoint: &Path) -> Result<UploadState<P::Session, P::Receipt>, Failure> {
    let state: UploadState<P::Session, P::Receipt> =
        upload_core::checkpoint::load(checkpoint).map_err(|e| Failure::new(Exit::BadInput, e.to_string()))?;
    let target = protocol.target();
    let found = if state.target != target {
        Some(state.target.clone())
    } else {
        protocol.check_session(&state.session, &state.plan).err()
    };
    match found {
        Some(found) => Err(Failure::new(
            Exit::BadInput,
            format!("{}: the saved upload state is for {}, not {target}", checkpoint.display(), found.escape_debug()),
        )),
        None => Ok(state),
    }
}

/// What the server holds for a checkpoint's upload: (parts held, bytes held, parts planned).
pub(crate) async fn status(
    backend: &Backend,
    job: &Job,
    checkpoint: &Path,
) -> Result<(u32, u64, Option<u32>), Failure> {
    async fn held<P: Protocol>(
        protocol: P,
        checkpoint: &Path,
        class: Classifier<P::Error>,
    ) -> Result<(u32, u64, Option<u32>), Failure> {
        let state = load_state(&protocol, checkpoint)?;
        let parts = protocol.list_parts(&state.session, &state.plan).await.map_err(|e| {
            let (auth, _) = class(&e);
            Failure::new(if auth { Exit::Auth } else { Exit::Vendor }, e.to_string())
        })?;
        let bytes = parts.iter().map(|p| p.len).sum();
        Ok((u32::try_from(parts.len()).unwrap_or(u32::MAX), bytes, state.plan.part_count()))
    }
    match (backend, &job.target) {
        (Backend::Oss(c), Target::Oss { bucket, key }) => {
            held(
                oss_multipart::uploader::OssProtocol::new(c.clone(), bucket, key, Default::default()),
                checkpoint,
                oss_class,
            )
            .await
        }
        (Backend::QingStor(c), Target::QingStor { bucket, key }) => {
            held(
                qingstor_multipart::uploader::QingStorProtocol::new(c.clone(), bucket, key, None),
                checkpoint,
                qingstor_class,
            )
            .await
        }
        (Backend::Box(c), target) => held(box_protocol(c, target)?, checkpoint, box_class).await,
        (Backend::Graph(c), target) => held(graph_protocol(c, target)?, checkpoint, graph_class).await,
        (Backend::Rest(c), target) => held(rest_protocol(c, target)?, checkpoint, rest_class).await,
        _ => Err(Failure::new(Exit::BadInput, "the client does not match the target's vendor")),
    }
}

/// Aborts a checkpoint's upload on the server and removes the checkpoint.
pub(crate) async fn abort(backend: &Backend, job: &Job, checkpoint: &Path) -> Result<(), Failure> {
    async fn stop<P: Protocol>(protocol: P, checkpoint: &Path, class: Classifier<P::Error>) -> Result<(), Failure> {
        let state = load_state(&protocol, checkpoint)?;
        protocol.abort(&state.session).await.map_err(|e| {
            let (auth, _) = class(&e);
            Failure::new(if auth { Exit::Auth } else { Exit::Vendor }, e.to_string())
        })?;
        let _ = upload_core::checkpoint::remove(checkpoint);
        let _ = std::fs::remove_file(job_path(checkpoint));
        Ok(())
    }
    match (backend, &job.target) {
        (Backend::Oss(c), Target::Oss { bucket, key }) => {
            stop(
                oss_multipart::uploader::OssProtocol::new(c.clone(), bucket, key, Default::default()),
                checkpoint,
                oss_class,
            )
            .await
        }
        (Backend::QingStor(c), Target::QingStor { bucket, key }) => {
            stop(
                qingstor_multipart::uploader::QingStorProtocol::new(c.clone(), bucket, key, None),
                checkpoint,
                qingstor_class,
            )
            .await
        }
        (Backend::Box(c), target) => stop(box_protocol(c, target)?, checkpoint, box_class).await,
        (Backend::Graph(c), target) => stop(graph_protocol(c, target)?, checkpoint, graph_class).await,
        (Backend::Rest(c), target) => stop(rest_protocol(c, target)?, checkpoint, rest_class).await,
        _ => Err(Failure::new(Exit::BadInput, "the client does not match the target's vendor")),
    }
}

fn box_protocol(client: &box_chunked::Client, target: &Target) -> Result<box_chunked::uploader::BoxProtocol, Failure> {
    let destination = match target {
        Target::BoxFolder { folder_id, name } => {
            box_chunked::Destination::Folder { folder_id: folder_id.clone(), name: name.clone() }
        }
        Target::BoxFile { file_id } => box_chunked::Destination::Version { file_id: file_id.clone(), new_name: None },
        _ => return Err(Failure::new(Exit::BadInput, "not a Box target")),
    };
    Ok(box_chunked::uploader::BoxProtocol::new(client.clone(), destination))
}
