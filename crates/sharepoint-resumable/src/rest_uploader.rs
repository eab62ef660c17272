//! The SharePoint REST half of the uploader: chunked `StartUpload`, `ContinueUpload` and
//! `FinishUpload` on the shared engine. Its types are re-exported by [`crate::uploader`].
//!
//! * Chunks have no alignment, at most 250 MB a request, strictly in order; the session is the
//!   file's upload id, and the file itself is made (empty) first when it does not exist.
//! * What the server holds is asked of the session (`GetUploadStatus`, or the file when the
//!   session is gone); a file changed since the session began is this session's when its size
//!   fits (see [`crate::library::rewrite_fits`] for the files a library rewrites).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use upload_core::size::MIB;
use upload_core::{
    Created, Digests, DonePart, IntegrityError, ObjectSummary, PartPlan, PartRules, PartUpload, Protocol,
    ServerModified, ServerPart, Source, Upload, UploadError, UploadOptions, UploadState,
};

use crate::error::{Error, InvalidInput, rest_codes};
use crate::rest::{
    FileRef, MAX_REQUEST as REST_MAX_REQUEST, RestClient, is_session_gone as is_rest_session_gone, new_upload_id,
    validate_name, validate_server_relative,
};
use crate::types::SpFile;
use crate::uploader::held_below;
/// SharePoint REST's chunk rules: no alignment, at most 250 MB a request, strictly in order.
pub fn rest_rules() -> PartRules {
    PartRules {
        vendor: "SharePoint REST",
        min_part_size: 1,
        max_part_size: REST_MAX_REQUEST,
        part_size_multiple: 1,
        max_parts: 1_000_000,
        first_part_number: 0,
        default_part_size: 10 * MIB,
        min_source_len: 1,
        max_source_len: 250_000_000_000,
        server_picks_part_size: false,
        needs_total_len: true,
        sequential: true,
    }
}

/// A SharePoint REST chunked upload session, as the checkpoint keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestSession {
    /// The file's server-relative path.
    pub file: String,
    /// The client-chosen GUID of the session.
    pub upload_id: String,
    /// The file's size.
    pub file_size: u64,
    /// Whether the file was created empty for this upload (cancelling then deletes it).
    pub created_stub: bool,
    /// When the session began (RFC 3339): a file changed before it is not this upload's.
    pub created_at: String,
    /// The file's `ETag` when the session began: FinishUpload makes a new version, so a file
    /// still carrying it was not finished by this upload (no clocks compared).
    #[serde(default)]
    pub etag_before: Option<String>,
}

impl RestSession {
    fn file_ref(&self) -> FileRef {
        FileRef::Path(self.file.clone())
    }

    /// Whether `file` is still the empty file this session created (same `ETag`, no bytes).
    fn is_own_stub(&self, file: &SpFile) -> bool {
        self.created_stub && file.len() == Some(0) && self.etag_before.is_some() && file.e_tag == self.etag_before
    }

    /// Whether `file` is what this session stored: its size (or, for a file the library
    /// rewrites, a little more, see [`crate::library::rewrite_fits`]), and a version newer than the one the session began with
    /// (by `ETag`; by time when the server sent none).
    fn stored_as(&self, file: &SpFile) -> bool {
        let size_fits = file.len() == Some(self.file_size)
            || (crate::library::may_rewrite(&self.file) && crate::library::rewrite_fits(self.file_size, file.len()));
        if let (Some(before), Some(now)) = (&self.etag_before, &file.e_tag) {
            return size_fits && before != now;
        }
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        let newer = match (file.time_last_modified.as_deref().and_then(parse), parse(&self.created_at)) {
            (Some(m), Some(c)) => m + chrono::Duration::seconds(1) >= c,
            _ => false,
        };
        size_fits && newer
    }
}

/// The upload state of a SharePoint REST upload (checkpoint and step-mode state).
pub type RestUploadState = UploadState<RestSession, Option<SpFile>>;

/// A SharePoint REST upload on the engine.
pub type RestUpload = Upload<RestProtocol>;

/// SharePoint REST's chunked upload protocol for the engine.
#[derive(Clone, Debug)]
pub struct RestProtocol {
    client: RestClient,
    folder: String,
    name: String,
    replace: bool,
    /// The `ETag` of the empty file a gone session had created: the next session reuses it
    /// (with `fail`, it is not someone else's file).
    gone_stub: Arc<Mutex<Option<String>>>,
}

impl RestProtocol {
    /// The protocol for `name` in `folder` (server-relative, or relative to the site), replacing
    /// an existing file.
    pub fn new(client: RestClient, folder: &str, name: &str) -> Result<Self, InvalidInput> {
        let folder = server_relative_folder(&client, folder);
        validate_server_relative(&folder)?;
        validate_name(name)?;
        validate_server_relative(&format!("{folder}/{name}"))?;
        Ok(Self { client, folder, name: name.to_owned(), replace: true, gone_stub: Arc::default() })
    }

    fn path(&self) -> String {
        format!("{}/{}", self.folder, self.name)
    }
}

impl Protocol for RestProtocol {
    type Session = RestSession;
    type Receipt = Option<SpFile>;
    type Output = SpFile;
    type Error = Error;

    fn rules(&self) -> PartRules {
        rest_rules()
    }

    fn target(&self) -> String {
        let host = url::Url::parse(&self.client.config().site_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        format!("sharepoint-rest://{host}{}", self.path())
    }

    fn check_session(&self, session: &RestSession, plan: &PartPlan) -> Result<(), String> {
        if session.file != self.path() {
            return Err(format!("a session of the file {}", session.file.escape_debug()));
        }
        if plan.total_len != Some(session.file_size) {
            return Err(format!(
                "a session of {} bytes, planned as {} bytes",
                session.file_size,
                plan.total_len.unwrap_or_default()
            ));
        }
        Ok(())
    }

    async fn create(&self, total_len: Option<u64>, _part_size: u64) -> Result<Created<RestSession>, Error> {
        let path = self.path();
        // The file must exist for StartUpload. An existing one keeps its content until
        // FinishUpload; a new one is created empty (and deleted again if the upload is cancelled).
        let existing = |e: &Error| e.sharepoint().is_some_and(|s| s.is(rest_codes::ALREADY_EXISTS));
        let own_stub = self.gone_stub.lock().ok().and_then(|mut g| g.take());
        let (created_stub, before) = match self.client.get_file(&FileRef::Path(path.clone())).await {
            // The empty file of this upload's previous session (expired or cancelled).
            Ok(file) if own_stub.is_some() && file.len() == Some(0) && file.e_tag == own_stub => (true, file),
            Ok(_) if !self.replace => return Err(InvalidInput::Exists { path }.into()),
            Ok(file) => (false, file),
            Err(e) if e.status() == Some(404) => {
                match self.client.add_using_path(&self.folder, &self.name, false, bytes::Bytes::new()).await {
                    Ok(file) => (true, file),
                    Err(e) if existing(&e) && !self.replace => return Err(InvalidInput::Exists { path }.into()),
                    // Made by someone else in between: replaced like any existing file.
                    Err(e) if existing(&e) => (false, self.client.get_file(&FileRef::Path(path.clone())).await?),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        Ok(Created {
            session: RestSession {
                file: path,
                upload_id: new_upload_id(),
                file_size: total_len.unwrap_or(0),
                created_stub,
                created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                etag_before: before.e_tag,
            },
            part_size: None,
        })
    }

    async fn upload_part(&self, session: &RestSession, part: PartUpload) -> Result<Option<SpFile>, Error> {
        let (offset, end) = (part.spec.offset, part.spec.offset + part.spec.len);
        match self.send_from(session, offset, end, part.body.clone(), part.is_last).await {
            Err(e) if e.status() == Some(400) && offset > 0 => {
                // A fileOffset the session does not hold: an earlier attempt of this chunk (or a
                // part of it) had arrived after all. Ask where the session stands, and send only
                // what it lacks.
                let held = self.held(session).await?;
                match held {
                    Some(h) if h >= end && !part.is_last => Ok(None),
                    Some(h) if h > offset && h <= end => {
                        let rest = part.body.slice(usize::try_from(h - offset).unwrap_or(0)..);
                        self.send_from(session, h, end, rest, part.is_last).await
                    }
                    _ => Err(e),
                }
            }
            // The last chunk of an earlier attempt (answer lost, or still in flight when this one
            // met 409) had finished the upload: the session is gone, and complete checks the file.
            Err(e) if part.is_last && e.sharepoint().is_some_and(|s| s.is(rest_codes::UPLOAD_SESSION_NOT_FOUND)) => {
                Ok(None)
            }
            other => other,
        }
    }

    async fn list_parts(
        &self,
        session: &RestSession,
        plan: &PartPlan,
    ) -> Result<Vec<ServerPart<Option<SpFile>>>, Error> {
        let held = match self.client.get_upload_status(&session.file_ref(), &session.upload_id).await {
            Ok(status) => status.held().ok_or_else(|| Error::MalformedResponse {
                operation: "GetUploadStatus",
                detail: format!("ExpectedContentRange {:?} cannot be read", status.expected_content_range),
            })?,
            Err(e) if is_rest_session_gone(&e) => {
                // Finished (the file is there, of this size, changed since the session began):
                // every part is stored and complete reads the file. Otherwise the session expired
                // or was cancelled, and the engine starts again.
                return match self.client.get_file(&session.file_ref()).await {
                    Ok(file) if session.stored_as(&file) => Ok(held_below(plan, u64::MAX)),
                    Ok(file) => {
                        if session.is_own_stub(&file)
                            && let Ok(mut stub) = self.gone_stub.lock()
                        {
                            *stub = file.e_tag;
                        }
                        Err(e)
                    }
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        Ok(held_below(plan, held))
    }

    async fn complete(
        &self,
        session: &RestSession,
        parts: &[DonePart<Option<SpFile>>],
        _whole: &Digests,
        total_len: u64,
    ) -> Result<SpFile, Error> {
        let file = match parts.iter().rev().find_map(|p| p.receipt.clone()) {
            Some(file) => file,
            None => {
                // The answer to FinishUpload was lost: the file tells, if it changed since the
                // session began. If it did not, the session still holds every byte: finish it.
                let file = self.client.get_file(&session.file_ref()).await?;
                if session.stored_as(&file) {
                    file
                } else {
                    let held = self.held(session).await?.unwrap_or(0);
                    if held != total_len {
                        return Err(IntegrityError {
                            what: "bytes held by the upload session".into(),
                            expected: total_len.to_string(),
                            actual: held.to_string(),
                        }
                        .into());
                    }
                    self.client
                        .finish_upload(&session.file_ref(), &session.upload_id, held, bytes::Bytes::new())
                        .await?
                }
            }
        };
        match file.len() {
            Some(len) if len == total_len => Ok(file),
            // A file the library rewrites is reported by `server_modified` instead.
            // The file the session's own answer named (or one `stored_as` found to fit).
            Some(_) if crate::library::may_rewrite(&session.file) => Ok(file),
            other => Err(IntegrityError {
                what: "file size".into(),
                expected: total_len.to_string(),
                actual: other.map_or("no Length".into(), |l| l.to_string()),
            }
            .into()),
        }
    }

    fn server_modified(&self, output: &SpFile, _whole: &Digests, total_len: u64) -> Option<ServerModified> {
        let stored = output.len()?;
        if stored == total_len || !crate::library::may_rewrite(&self.path()) {
            return None;
        }
        let summary = |len| ObjectSummary::new(Some(len), None);
        Some(ServerModified::new(crate::library::REASON, summary(total_len), summary(stored)))
    }

    fn is_session_gone(&self, error: &Error) -> bool {
        is_rest_session_gone(error)
    }

    async fn abort(&self, session: &RestSession) -> Result<(), Error> {
        let (file, id) = (session.file_ref(), session.upload_id.as_str());
        match self.client.cancel_upload(&file, id).await {
            // Never started (a crash before the first chunk) or expired: nothing to cancel, but
            // the empty file made for it stays unless a session on it is cancelled.
            Err(e) if e.sharepoint().is_some_and(|s| s.is(rest_codes::UPLOAD_SESSION_NOT_FOUND)) => {
                match self.client.get_file(&file).await {
                    Ok(f) if session.is_own_stub(&f) => {
                        self.client.start_upload(&file, id, bytes::Bytes::new()).await?;
                        self.client.cancel_upload(&file, id).await
                    }
                    _ => Ok(()),
                }
            }
            other => other,
        }
    }
}

impl RestProtocol {
    /// Sends `[offset, end)` of the file: StartUpload at 0, FinishUpload for the last chunk
    /// (after a StartUpload when the file is one chunk), ContinueUpload between. The bytes the
    /// session reports must be `end`.
    async fn send_from(
        &self,
        session: &RestSession,
        offset: u64,
        end: u64,
        body: bytes::Bytes,
        is_last: bool,
    ) -> Result<Option<SpFile>, Error> {
        let (file, id) = (session.file_ref(), session.upload_id.as_str());
        let held = match (offset, is_last) {
            (0, _) => self.client.start_upload(&file, id, body).await?,
            (_, false) => self.client.continue_upload(&file, id, offset, body).await?,
            (_, true) => return self.client.finish_upload(&file, id, offset, body).await.map(Some),
        };
        if held != end {
            return Err(Error::MalformedResponse {
                operation: if offset == 0 { "StartUpload" } else { "ContinueUpload" },
                detail: format!("the session holds {held} bytes after the chunk ending at {end}"),
            });
        }
        if is_last {
            return self.client.finish_upload(&file, id, end, bytes::Bytes::new()).await.map(Some);
        }
        Ok(None)
    }

    /// The bytes the session holds (`None` when the answer has no number).
    async fn held(&self, session: &RestSession) -> Result<Option<u64>, Error> {
        Ok(self.client.get_upload_status(&session.file_ref(), &session.upload_id).await?.held())
    }
}

/// A folder as the server names it: `/sites/x/Shared Documents/dir` for `Shared Documents/dir`.
fn server_relative_folder(client: &RestClient, folder: &str) -> String {
    let folder = folder.trim_end_matches('/');
    if folder.starts_with('/') { folder.to_owned() } else { format!("{}/{folder}", client.config().site_path()) }
}

/// The high-level uploader for SharePoint REST: files and streams to a document library folder,
/// in chunks (10 MiB by default, up to 250 MB), resumable across processes.
#[derive(Clone, Debug)]
pub struct RestUploader {
    client: RestClient,
    options: UploadOptions,
    replace: bool,
}

impl RestUploader {
    /// An uploader with the engine's defaults (10 MiB chunks, one at a time); an existing file is
    /// replaced (its content stays until the last chunk).
    pub fn new(client: RestClient) -> Self {
        let options = UploadOptions { retry: client.config().retry.clone(), ..UploadOptions::default() };
        Self { client, options, replace: true }
    }

    /// Sets the engine options (chunk size, checkpoint file, progress, cancel).
    pub fn with_options(mut self, options: UploadOptions) -> Self {
        self.options = options;
        self
    }

    /// What happens when the name is taken: `replace` (the default) or `fail` (a typed error
    /// before any byte is sent).
    pub fn with_conflict_behavior(mut self, behavior: &str) -> Result<Self, InvalidInput> {
        self.replace = match behavior {
            "replace" => true,
            "fail" => false,
            other => {
                return Err(InvalidInput::Config(format!(
                    "conflict behavior {other:?}: SharePoint REST uploads take fail or replace"
                )));
            }
        };
        Ok(self)
    }

    fn protocol(&self, folder: String, name: String) -> RestProtocol {
        RestProtocol { client: self.client.clone(), folder, name, replace: self.replace, gone_stub: Arc::default() }
    }

    /// An upload of `source` as `name` in `folder` (server-relative, `/sites/x/Shared
    /// Documents/dir`, or relative to the site, `Shared Documents/dir`): resumed from the
    /// checkpoint file of the options when it exists, new otherwise. Drive it with `run()` or
    /// `step(budget)`.
    pub fn upload(&self, folder: &str, name: &str, source: Source) -> Result<RestUpload, UploadError<Error>> {
        let mut protocol =
            RestProtocol::new(self.client.clone(), folder, name).map_err(|e| UploadError::Input(Error::Invalid(e)))?;
        protocol.replace = self.replace;
        Upload::resume_or_new(protocol, source, self.options.clone())
    }

    /// Continues an upload from a stored state (step mode).
    pub fn resume(&self, source: Source, state: RestUploadState) -> RestUpload {
        let (folder, name) = state.session.file.rsplit_once('/').unwrap_or(("", &state.session.file));
        let protocol = self.protocol(folder.to_owned(), name.to_owned());
        Upload::resume(protocol, source, state, self.options.clone())
    }
}
