//! One upload job: the file, the target and the settings, kept next to the engine's checkpoint
//! (`<checkpoint>.job.json`) so that `resume`, `abort` and `status` need only the checkpoint path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use upload_core::{
    CancellationToken, Completed, PartSize, Protocol, Source, Step, Upload, UploadError, UploadOptions, UploadState,
};

use crate::backend::{Backend, config_error};
use crate::endpoint::Endpoint;
use crate::progress::Ui;
use crate::target::Target;
use crate::term;

/// How the command ended, as its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Anything else: an internal error, a local file that cannot be written.
    Other = 1,
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
    /// The source, absolute and canonical (`put` resolves it).
    pub(crate) file: PathBuf,
    pub(crate) target: Target,
    pub(crate) settings: Settings,
    /// Where the job was started, whether the command line, the environment or a config file
    /// said so (absent in job files of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint: Option<Endpoint>,
}

pub(crate) fn job_path(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".job.json");
    checkpoint.with_file_name(name)
}

impl Job {
    /// Writes the job file beside `checkpoint`: atomically, owner-only, never through a planted
    /// file or link (as the checkpoint).
    pub(crate) fn save(&self, checkpoint: &Path) -> Result<(), Failure> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| Failure::new(Exit::Other, e.to_string()))?;
        upload_core::checkpoint::write_private(&job_path(checkpoint), &text).map_err(|e| {
            Failure::new(Exit::Other, format!("cannot write the job file {}: {e}", job_path(checkpoint).display()))
        })
    }

    /// Reads the job file beside `checkpoint`, refusing one someone else could have written
    /// (owned by another user, group- or world-writable, not a regular file), as ssh refuses
    /// such keys: it says where the bytes and the credentials go.
    pub(crate) fn load(checkpoint: &Path) -> Result<Self, Failure> {
        use upload_core::checkpoint::CheckpointError;
        let path = job_path(checkpoint);
        let bytes = upload_core::checkpoint::read_private(&path).map_err(|e| match e {
            CheckpointError::Io { source, .. } => Failure::new(
                Exit::BadInput,
                format!("{}: {source} (is {} a cloud-upload checkpoint?)", path.display(), checkpoint.display()),
            ),
            other => Failure::new(Exit::BadInput, other.to_string()),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Failure::new(Exit::BadInput, format!("{}: {e}", path.display())))
    }

    /// Refuses to start this job where `existing` (the job file already beside the checkpoint)
    /// is another upload: another source, target or endpoint. Its checkpoint is its own.
    pub(crate) fn check_same(&self, existing: &Job, checkpoint: &Path) -> Result<(), Failure> {
        // Job files of earlier versions named the source as given, relative to where put ran.
        let existing_file = match existing.file.is_relative() {
            true => std::fs::canonicalize(&existing.file).unwrap_or_else(|_| existing.file.clone()),
            false => existing.file.clone(),
        };
        let differs = if existing_file != self.file {
            Some(format!("of {}", existing.file.display()))
        } else if existing.target != self.target {
            Some(format!("to {}", existing.target))
        } else if existing.endpoint.is_some() && existing.endpoint != self.endpoint {
            existing.endpoint.as_ref().map(|e| format!("at {e}"))
        } else {
            None
        };
        match differs {
            Some(other) => Err(Failure::new(
                Exit::BadInput,
                format!(
                    "{} belongs to another upload, {other}; resume or abort that one (cloud-upload resume {}), or give this one its own --checkpoint",
                    job_path(checkpoint).display(),
                    checkpoint.display()
                ),
            )),
            None => Ok(()),
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
    /// The service rewrote the file once stored (SharePoint's metadata in Office files): what it
    /// stores is not byte for byte what was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_modified: Option<Modified>,
}

/// What was sent and what the service stores instead.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Modified {
    pub(crate) reason: String,
    pub(crate) sent_bytes: Option<u64>,
    pub(crate) sent_digest: Option<String>,
    pub(crate) stored_bytes: Option<u64>,
    pub(crate) stored_digest: Option<String>,
}

impl From<&upload_core::ServerModified> for Modified {
    fn from(m: &upload_core::ServerModified) -> Self {
        Self {
            reason: m.reason.clone(),
            sent_bytes: m.sent.len,
            sent_digest: m.sent.digest.clone(),
            stored_bytes: m.stored.len,
            stored_digest: m.stored.digest.clone(),
        }
    }
}

impl std::fmt::Display for Modified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |len: Option<u64>, digest: &Option<String>| {
            let len = len.map_or_else(|| "an unknown length".to_owned(), |n| format!("{n} bytes"));
            match digest {
                Some(d) => format!("{len}, {d}"),
                None => len,
            }
        };
        write!(
            f,
            "the service rewrote the file after upload ({}): sent {}, it stores {}",
            self.reason,
            side(self.sent_bytes, &self.sent_digest),
            side(self.stored_bytes, &self.stored_digest)
        )
    }
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
        | UploadError::Read(_)
        | UploadError::Input(_)
        | UploadError::SourceChanged(_)
        | UploadError::StateMismatch { .. }
        | UploadError::StateCorrupt(_) => Failure::new(Exit::BadInput, e.to_string()),
        // A checkpoint that cannot be written (a full disk, a directory made read-only) is not
        // bad input: what the server holds is kept, and the run can be repeated once it can.
        UploadError::Checkpoint(upload_core::checkpoint::CheckpointError::Io { .. }) => Failure::new(
            Exit::Other,
            format!(
                "{e}
what was uploaded is kept on the server; fix the checkpoint's directory, then run the same command again"
            ),
        ),
        UploadError::Checkpoint(_) => Failure::new(Exit::BadInput, e.to_string()),
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
        UploadError::Integrity(_) | UploadError::Protocol(_) | UploadError::ServerModified(_) => {
            Failure::new(Exit::Vendor, e.to_string())
        }
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
        server_modified: None,
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
                    outcome.server_modified = done.server_modified.as_deref().map(Modified::from);
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
            format!(
                "{}: the saved upload state is for {}, not {target}: a saved session must be its own target's",
                checkpoint.display(),
                term::escape(&found)
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_that_cannot_be_read_is_bad_input_not_resumable() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let f = failure(UploadError::<oss_multipart::Error>::Read(denied), oss_class, Path::new("cp.json"));
        assert_eq!(f.exit, Exit::BadInput, "{}", f.message);
        assert!(!f.message.contains("can be resumed"), "{}", f.message);
    }

    #[test]
    fn a_checkpoint_that_cannot_be_written_is_not_bad_input() {
        use upload_core::checkpoint::CheckpointError;
        let full = CheckpointError::Io { path: "cp.json".into(), source: std::io::Error::other("no space left") };
        let f = failure(UploadError::<oss_multipart::Error>::Checkpoint(full), oss_class, Path::new("cp.json"));
        assert_eq!(f.exit, Exit::Other, "{}", f.message);
        assert!(f.message.contains("kept on the server"), "{}", f.message);
        let bad = CheckpointError::Malformed { path: "cp.json".into(), reason: "not JSON".into() };
        let f = failure(UploadError::<oss_multipart::Error>::Checkpoint(bad), oss_class, Path::new("cp.json"));
        assert_eq!(f.exit, Exit::BadInput, "{}", f.message);
    }

    #[test]
    fn a_rewritten_file_says_what_was_sent_and_what_is_stored() {
        let m = Modified {
            reason: "the library added its metadata".into(),
            sent_bytes: Some(10),
            sent_digest: Some("QuickXorHash a=".into()),
            stored_bytes: Some(12),
            stored_digest: None,
        };
        assert_eq!(
            m.to_string(),
            "the service rewrote the file after upload (the library added its metadata): sent 10 bytes, QuickXorHash a=, it stores 12 bytes"
        );
    }
}
