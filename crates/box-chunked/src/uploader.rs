//! The resumable uploader: Box's chunked upload sessions on the shared engine.
//!
//! * Box picks the part size; every part but the last has exactly that size, and parts go in
//!   parallel (Box advises a few at once: 4 by default), each with its SHA-1 in `Digest`.
//! * The whole-file SHA-1 for Commit is computed once, in the engine's in-order reading stage,
//!   and its state is part of the checkpoint: a resumed upload neither hashes a byte twice nor
//!   loses the digest (the old Python SDK updated it twice for a retried part and got
//!   `digest_mismatch`).
//! * A part whose request failed in a way that may have stored it (a 5xx, a lost answer) is
//!   looked up with List Parts before it is sent again; a 416 `range_overlaps_existing_part`
//!   that names the very same part counts as stored.
//! * Commit is repeated through 202 (Box still processing the parts) with its `Retry-After`,
//!   and through the transient `parts_mismatch` right after the last part; the file Box returns
//!   is checked against the source (size and SHA-1).
//! * Files below Box's chunked minimum (20 MB) are refused by [`Uploader::upload`] with an error
//!   that names the plain upload; [`Uploader::upload_file`] picks it by itself.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use upload_core::size::{GIB, MIB};
use upload_core::{
    Created, Digests, DonePart, Hashes, IntegrityError, PartPlan, PartRules, PartUpload, PlanError, Protocol,
    ServerPart, Source, Upload, UploadError, UploadOptions, UploadState,
};

use crate::client::{CHUNKED_MIN, Client, Commit, validate_file_name, validate_id};
use crate::error::{Error, ErrorCode};
use crate::types::{File, UploadPart, UploadSession};

/// The largest file Box stores (Enterprise Plus accounts; smaller plans have lower limits,
/// which Box reports when the session is created).
const MAX_FILE: u64 = 500_000_000_000;

/// Box's part rules: the server picks the part size; 0-based part indexes; the chunked minimum.
pub fn rules() -> PartRules {
    rules_with_min(CHUNKED_MIN)
}

fn rules_with_min(min_source_len: u64) -> PartRules {
    PartRules {
        vendor: "Box",
        min_part_size: 1,
        max_part_size: 4 * GIB,
        part_size_multiple: 1,
        // List Parts refuses offsets above 10000: more parts could not be reconciled on resume.
        max_parts: 10_000,
        first_part_number: 0,
        default_part_size: 8 * MIB,
        min_source_len,
        max_source_len: MAX_FILE,
        server_picks_part_size: true,
        needs_total_len: true,
        sequential: false,
    }
}

/// Where the uploaded bytes go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// A new file in a folder.
    Folder {
        /// The folder id ("0" is the root).
        folder_id: String,
        /// The file name.
        name: String,
    },
    /// A new version of an existing file, optionally renamed.
    Version {
        /// The file id.
        file_id: String,
        /// A new name, if any.
        new_name: Option<String>,
    },
}

/// The session of a Box chunked upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxSession {
    /// The session as Box returned it (id, part size, endpoints).
    pub session: UploadSession,
    /// The file size the session was created for.
    pub file_size: u64,
    /// Where it goes.
    pub destination: Destination,
}

/// The upload state of a Box upload (checkpoint and step-mode state).
pub type BoxUploadState = UploadState<BoxSession, UploadPart>;

/// A Box upload on the engine.
pub type BoxUpload = Upload<BoxProtocol>;

/// How commits and versions behave.
#[derive(Clone, Debug, Default)]
struct CommitOptions {
    attributes: Option<serde_json::Value>,
    if_match: Option<String>,
    wait: Option<Duration>,
}

/// Box's chunked upload protocol for the engine.
#[derive(Clone, Debug)]
pub struct BoxProtocol {
    client: Client,
    destination: Destination,
    commit: CommitOptions,
}

/// How long Commit is repeated through 202 by default.
const COMMIT_WAIT: Duration = Duration::from_secs(600);

impl BoxProtocol {
    /// The protocol for one destination.
    pub fn new(client: Client, destination: Destination) -> Self {
        Self { client, destination, commit: CommitOptions::default() }
    }

    fn sha1(digests: &Digests) -> Result<[u8; 20], Error> {
        digests.sha1.ok_or_else(|| Error::MalformedResponse {
            operation: "Upload part",
            detail: "the engine gave no SHA-1 for the part".into(),
        })
    }
}

fn sha1_of_hex(hex: &str) -> Option<[u8; 20]> {
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Protocol for BoxProtocol {
    type Session = BoxSession;
    type Receipt = UploadPart;
    type Output = File;
    type Error = Error;

    fn rules(&self) -> PartRules {
        rules_with_min(self.client.config().chunked_min)
    }

    fn target(&self) -> String {
        match &self.destination {
            Destination::Folder { folder_id, name } => format!("box://folder/{folder_id}/{name}"),
            Destination::Version { file_id, .. } => format!("box://file/{file_id}"),
        }
    }

    fn check_session(&self, session: &BoxSession, plan: &PartPlan) -> Result<(), String> {
        if session.destination != self.destination {
            let other = BoxProtocol {
                client: self.client.clone(),
                destination: session.destination.clone(),
                commit: CommitOptions::default(),
            };
            return Err(format!("a session of {}", other.target().escape_debug()));
        }
        if plan.total_len != Some(session.file_size)
            || plan.part_size != session.session.part_size
            || plan.part_count() != Some(session.session.total_parts)
        {
            return Err(format!(
                "a session of {} bytes in {} parts of {}, planned as {} bytes in {} parts of {}",
                session.file_size,
                session.session.total_parts,
                session.session.part_size,
                plan.total_len.unwrap_or_default(),
                plan.part_count().unwrap_or_default(),
                plan.part_size
            ));
        }
        Ok(())
    }

    fn part_hashes(&self) -> Hashes {
        Hashes::SHA1
    }

    fn whole_hashes(&self) -> Hashes {
        Hashes::SHA1
    }

    async fn create(&self, total_len: Option<u64>, _part_size: u64) -> Result<Created<BoxSession>, Error> {
        let file_size = total_len.unwrap_or(0);
        let created = match &self.destination {
            Destination::Folder { folder_id, name } => {
                self.client.create_upload_session(folder_id, name, file_size).await
            }
            Destination::Version { file_id, new_name } => {
                self.client.create_file_upload_session(file_id, file_size, new_name.as_deref()).await
            }
        };
        let session = match created {
            Ok(s) => s,
            // A retried create that met the session the first attempt made: Box names it.
            Err(Error::Service(e)) if e.code == ErrorCode::SessionConflict => e
                .body
                .context_info
                .as_ref()
                .and_then(|c| c.get("session"))
                .and_then(|s| serde_json::from_value::<UploadSession>(s.clone()).ok())
                .ok_or(Error::Service(e))?,
            Err(e) => return Err(e),
        };
        let part_size = session.part_size;
        Ok(Created {
            session: BoxSession { session, file_size, destination: self.destination.clone() },
            part_size: Some(part_size),
        })
    }

    async fn upload_part(&self, session: &BoxSession, part: PartUpload) -> Result<UploadPart, Error> {
        let sha1 = Self::sha1(&part.digests)?;
        let (offset, len) = (part.spec.offset, part.spec.len);
        match self.client.upload_part(&session.session, offset, session.file_size, part.body, &sha1).await {
            Err(Error::Service(e)) if e.code == ErrorCode::RangeOverlapsExistingPart => {
                // The same part, stored by an attempt whose answer was lost: done, once its
                // SHA-1 is known to be ours (List Parts tells when the error does not).
                let ours = upload_core::hash::hex(&sha1);
                let same = |p: &UploadPart| p.offset == offset && p.size == len;
                let Some(conflict) = e.conflicting_part().filter(same) else { return Err(Error::Service(e)) };
                let stored = match conflict.sha1 {
                    Some(_) => Some(conflict),
                    None => self.client.list_all_parts(&session.session).await?.into_iter().find(same),
                };
                match stored {
                    Some(p) if p.sha1.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(&ours)) => Ok(p),
                    _ => Err(Error::Service(e)),
                }
            }
            other => other,
        }
    }

    async fn list_parts(&self, session: &BoxSession, _plan: &PartPlan) -> Result<Vec<ServerPart<UploadPart>>, Error> {
        let part_size = session.session.part_size.max(1);
        let parts = self.client.list_all_parts(&session.session).await?;
        Ok(parts
            .into_iter()
            .filter(|p| p.offset % part_size == 0)
            .filter_map(|p| {
                Some(ServerPart {
                    number: u32::try_from(p.offset / part_size).ok()?,
                    len: p.size,
                    digests: Digests { sha1: p.sha1.as_deref().and_then(sha1_of_hex), ..Digests::default() },
                    receipt: p,
                })
            })
            .collect())
    }

    async fn complete(
        &self,
        session: &BoxSession,
        parts: &[DonePart<UploadPart>],
        whole: &Digests,
        total_len: u64,
    ) -> Result<File, Error> {
        let sha1 = whole.sha1.ok_or_else(|| Error::MalformedResponse {
            operation: "Commit upload session",
            detail: "the engine gave no whole-file SHA-1".into(),
        })?;
        let list: Vec<UploadPart> = parts.iter().map(|p| p.receipt.clone()).collect();
        let started = Instant::now();
        let wait_limit = self.commit.wait.unwrap_or(COMMIT_WAIT);
        let mut mismatches = 0u32;
        loop {
            let answer = self
                .client
                .commit(&session.session, &list, &sha1, self.commit.attributes.clone(), self.commit.if_match.as_deref())
                .await;
            let wait = match answer {
                Ok(Commit::Done(file)) => {
                    if file.size.is_some_and(|s| s != total_len) {
                        return Err(IntegrityError {
                            what: "file size".into(),
                            expected: total_len.to_string(),
                            actual: file.size.unwrap_or_default().to_string(),
                        }
                        .into());
                    }
                    return Ok(*file);
                }
                // Box has the parts and is still processing them (at least a second between commits,
                // whatever Retry-After says).
                Ok(Commit::Processing { retry_after }) => retry_after.unwrap_or_default().max(Duration::from_secs(1)),
                // Box can report this right after the last part, before it has registered it.
                Err(e) if e.code() == Some(&ErrorCode::PartsMismatch) && mismatches < 3 => {
                    mismatches += 1;
                    Duration::from_secs(1 << mismatches)
                }
                Err(e) => return Err(e),
            };
            if started.elapsed() >= wait_limit {
                return Err(Error::Processing { waited: started.elapsed() });
            }
            tokio::time::sleep(wait.min(Duration::from_secs(60)).min(wait_limit.saturating_sub(started.elapsed())))
                .await;
        }
    }

    fn verify(&self, output: &File, whole: &Digests) -> Result<(), IntegrityError> {
        match (whole.sha1, output.sha1.as_deref()) {
            (Some(ours), Some(theirs)) if !theirs.eq_ignore_ascii_case(&upload_core::hash::hex(&ours)) => {
                Err(IntegrityError {
                    what: "SHA-1 of the file".into(),
                    expected: upload_core::hash::hex(&ours),
                    actual: theirs.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    fn is_session_gone(&self, error: &Error) -> bool {
        matches!(error.code(), Some(ErrorCode::NotFound | ErrorCode::SessionExpired | ErrorCode::UploadFailed))
    }

    fn session_expires(&self, session: &BoxSession) -> Option<std::time::SystemTime> {
        let at = chrono::DateTime::parse_from_rfc3339(session.session.session_expires_at.as_deref()?).ok()?;
        Some(at.with_timezone(&chrono::Utc).into())
    }

    async fn abort(&self, session: &BoxSession) -> Result<(), Error> {
        self.client.abort(&session.session).await
    }
}

/// What [`Uploader::upload_file`] did.
#[derive(Debug)]
pub struct FileUploaded {
    /// The file as Box reports it.
    pub file: File,
    /// Parts used (1 for the plain upload).
    pub parts: u32,
    /// What the engine did (empty for the plain upload).
    pub report: upload_core::UploadReport,
}

/// The high-level uploader: files and streams to Box, resumable.
#[derive(Clone, Debug)]
pub struct Uploader {
    client: Client,
    options: UploadOptions,
    commit: CommitOptions,
}

fn too_small(len: u64, min: u64) -> UploadError<Error> {
    UploadError::Plan(PlanError::SourceTooSmall {
        vendor: "Box",
        len,
        min,
        hint: "; files below 20 MB take the plain upload (Uploader::upload_file picks it, or Client::upload_file)",
    })
}

impl Uploader {
    /// An uploader with the engine's defaults (4 parts in flight; Box picks the part size).
    pub fn new(client: Client) -> Self {
        let options = UploadOptions { retry: client.config().retry.clone(), ..UploadOptions::default() };
        Self { client, options, commit: CommitOptions::default() }
    }

    /// Sets the engine options (concurrency, checkpoint file, progress, cancel).
    pub fn with_options(mut self, options: UploadOptions) -> Self {
        self.options = options;
        self
    }

    /// File attributes sent with Commit (`content_modified_at`, `description`…).
    pub fn with_attributes(mut self, attributes: serde_json::Value) -> Self {
        self.commit.attributes = Some(attributes);
        self
    }

    /// For a new version: commit only if the file's etag is still this one (`If-Match`).
    pub fn with_if_match(mut self, etag: impl Into<String>) -> Self {
        self.commit.if_match = Some(etag.into());
        self
    }

    /// How long Commit is repeated while Box answers 202 (10 minutes by default).
    pub fn with_commit_wait(mut self, wait: Duration) -> Self {
        self.commit.wait = Some(wait);
        self
    }

    fn protocol(&self, destination: Destination) -> BoxProtocol {
        BoxProtocol { client: self.client.clone(), destination, commit: self.commit.clone() }
    }

    fn check(&self, destination: &Destination, source: &Source) -> Result<(), UploadError<Error>> {
        let invalid = |e: crate::error::InvalidInput| UploadError::Input(Error::Invalid(e));
        match destination {
            Destination::Folder { folder_id, name } => {
                validate_id("folder id", folder_id).map_err(invalid)?;
                validate_file_name(name).map_err(invalid)?;
            }
            Destination::Version { file_id, new_name } => {
                validate_id("file id", file_id).map_err(invalid)?;
                if let Some(n) = new_name {
                    validate_file_name(n).map_err(invalid)?;
                }
            }
        }
        let min = self.client.config().chunked_min;
        match source.len() {
            Some(len) if len < min => Err(too_small(len, min)),
            _ => Ok(()),
        }
    }

    /// A chunked upload of a new file into a folder: resumed from the checkpoint file of the
    /// options when it exists, new otherwise. Drive it with `run()` or `step(budget)`.
    pub fn upload(&self, folder_id: &str, name: &str, source: Source) -> Result<BoxUpload, UploadError<Error>> {
        let destination = Destination::Folder { folder_id: folder_id.to_owned(), name: name.to_owned() };
        self.check(&destination, &source)?;
        Upload::resume_or_new(self.protocol(destination), source, self.options.clone())
    }

    /// A chunked upload of a new version of an existing file.
    pub fn upload_version(&self, file_id: &str, source: Source) -> Result<BoxUpload, UploadError<Error>> {
        let destination = Destination::Version { file_id: file_id.to_owned(), new_name: None };
        self.check(&destination, &source)?;
        Upload::resume_or_new(self.protocol(destination), source, self.options.clone())
    }

    /// Continues an upload from a stored state (step mode).
    pub fn resume(&self, source: Source, state: BoxUploadState) -> BoxUpload {
        let destination = state.session.destination.clone();
        Upload::resume(self.protocol(destination), source, state, self.options.clone())
    }

    /// Uploads a file into a folder: the plain upload below Box's chunked minimum, a resumable
    /// chunked upload otherwise.
    pub async fn upload_file(
        &self,
        folder_id: &str,
        name: &str,
        path: impl AsRef<Path>,
    ) -> Result<FileUploaded, UploadError<Error>> {
        self.file(Destination::Folder { folder_id: folder_id.to_owned(), name: name.to_owned() }, path.as_ref()).await
    }

    /// Uploads a file as a new version of an existing file, plain or chunked by size.
    pub async fn upload_file_version(
        &self,
        file_id: &str,
        path: impl AsRef<Path>,
    ) -> Result<FileUploaded, UploadError<Error>> {
        self.file(Destination::Version { file_id: file_id.to_owned(), new_name: None }, path.as_ref()).await
    }

    async fn file(&self, destination: Destination, path: &Path) -> Result<FileUploaded, UploadError<Error>> {
        let source = Source::file(path).map_err(UploadError::Read)?;
        let len = source.len().unwrap_or(0);
        let resuming = self.options.checkpoint.as_ref().is_some_and(|c| c.exists());
        if len >= self.client.config().chunked_min || resuming {
            self.check(&destination, &source)?;
            let mut upload = Upload::resume_or_new(self.protocol(destination), source, self.options.clone())?;
            let done = upload.run().await?;
            let parts = upload.state().map(|s| s.parts_done()).unwrap_or_default();
            return Ok(FileUploaded {
                file: done.output,
                parts: parts.max(done.report.parts_uploaded),
                report: done.report,
            });
        }
        let invalid = |e: crate::error::InvalidInput| UploadError::Input(Error::Invalid(e));
        match &destination {
            Destination::Folder { folder_id, name } => {
                validate_id("folder id", folder_id).map_err(invalid)?;
                validate_file_name(name).map_err(invalid)?;
            }
            Destination::Version { file_id, .. } => validate_id("file id", file_id).map_err(invalid)?,
        }
        let bytes = tokio::fs::read(path).await.map_err(UploadError::Read)?;
        let sha1 = Digests::compute(Hashes::SHA1, &bytes).sha1;
        // The plain upload replaces nothing on a retry (a new file conflicts, a version adds one
        // more): only failures that cannot have stored it are retried.
        let attempt = || async {
            match &destination {
                Destination::Folder { folder_id, name } => {
                    self.client.upload_file(folder_id, name, &bytes, self.commit.attributes.clone()).await
                }
                Destination::Version { file_id, new_name } => {
                    self.client
                        .upload_file_version(file_id, &bytes, new_name.as_deref(), self.commit.if_match.as_deref())
                        .await
                }
            }
        };
        // Retried only when the failure cannot have stored the file (a refused connection, 429,
        // a 503 before the body): a file stored behind a lost answer would make the retry a
        // name conflict or a second version.
        let file =
            upload_core::single::send_whole(&self.options, upload_core::single::Repeat::OnlyIfNotSent, attempt).await?;
        if let (Some(ours), Some(theirs)) = (sha1, file.sha1.as_deref())
            && !theirs.eq_ignore_ascii_case(&upload_core::hash::hex(&ours))
        {
            return Err(UploadError::Integrity(IntegrityError {
                what: "SHA-1 of the file".into(),
                expected: upload_core::hash::hex(&ours),
                actual: theirs.to_owned(),
            }));
        }
        Ok(FileUploaded { file, parts: 1, report: upload_core::UploadReport::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_below_the_minimum_name_the_plain_upload() {
        let err = too_small(1_000_000, CHUNKED_MIN);
        let text = err.to_string();
        assert!(text.contains("below Box's minimum"), "{text}");
        assert!(text.contains("plain upload"), "{text}");
        assert_eq!(sha1_of_hex("da39a3ee5e6b4b0d3255bfef95601890afd80709").map(|s| s[0]), Some(0xda));
        assert_eq!(sha1_of_hex("zz"), None);
    }

    #[test]
    fn the_server_part_size_makes_the_plan() {
        let plan = PartPlan::new(&rules(), Some(20_971_520), upload_core::PartSize::Exact(8 * MIB)).unwrap();
        let parts: Vec<(u32, u64, u64)> = plan.parts().map(|p| (p.number, p.offset, p.len)).collect();
        assert_eq!(parts, [(0, 0, 8 * MIB), (1, 8 * MIB, 8 * MIB), (2, 16 * MIB, 4 * MIB)]);
    }
}
