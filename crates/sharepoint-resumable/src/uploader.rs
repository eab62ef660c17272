//! The resumable uploader: Graph upload sessions on the shared engine.
//!
//! * Fragments are multiples of 320 KiB (10 MiB by default, below 60 MiB), strictly one after
//!   another as Graph demands; the whole file's QuickXorHash is computed as they are read and
//!   compared with the hash of the finished item.
//! * A fragment whose answer was lost, or that Graph stored in part, is reconciled with the
//!   session's `nextExpectedRanges`: a 416 after a retried fragment that had in fact arrived is
//!   not an error, and only the missing tail of a fragment is sent again.
//! * A session that expired or was cancelled (404) is replaced by a new one from the start; the
//!   upload URL, a credential in itself, is kept in the checkpoint (written owner-only) so that
//!   another process can resume, and never goes to logs or `Debug`.
//! * Step mode: a web handler loads the state, sends fragments for its time budget, stores the
//!   state, and answers.

use serde::{Deserialize, Serialize};
use upload_core::size::MIB;
use upload_core::{
    Created, Digests, DonePart, Hashes, IntegrityError, ObjectSummary, PartPlan, PartRules, PartUpload, Protocol,
    Secret, ServerModified, ServerPart, Source, Upload, UploadError, UploadOptions, UploadState,
};

use crate::client::{Client, Drive, FRAGMENT_MULTIPLE, Fragment, Item, MAX_FRAGMENT, next_expected, validate_path};
use crate::error::{Error, ErrorCode, InvalidInput};
pub use crate::rest_uploader::{RestProtocol, RestSession, RestUpload, RestUploadState, RestUploader, rest_rules};
use crate::types::{CreateUploadSessionInput, DriveItem, DriveItemUploadableProperties};

/// Graph's fragment rules.
pub fn rules() -> PartRules {
    PartRules {
        vendor: "Graph",
        min_part_size: FRAGMENT_MULTIPLE,
        max_part_size: MAX_FRAGMENT,
        part_size_multiple: FRAGMENT_MULTIPLE,
        max_parts: 1_000_000,
        first_part_number: 0,
        default_part_size: 10 * MIB,
        // A zero-byte file cannot use a session.
        min_source_len: 1,
        max_source_len: 250_000_000_000,
        server_picks_part_size: false,
        needs_total_len: true,
        sequential: true,
    }
}

/// Both APIs report the bytes they hold, not parts: every part that ends at or before `held`
/// is stored.
pub(crate) fn held_below<R>(plan: &PartPlan, held: u64) -> Vec<ServerPart<Option<R>>> {
    plan.parts()
        .take_while(|p| p.end() <= held)
        .map(|p| ServerPart { number: p.number, len: p.len, digests: Digests::default(), receipt: None })
        .collect()
}

/// A Graph upload session, as the checkpoint keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSession {
    /// The pre-authenticated upload URL (redacted from `Debug`).
    pub upload_url: Secret,
    /// The drive.
    pub drive: Drive,
    /// The item.
    pub item: Item,
    /// The file size the session was created for.
    pub file_size: u64,
    /// Whether the last fragment waits for an explicit commit.
    pub defer_commit: bool,
    /// When the session was created (RFC 3339): an item changed before it is not this upload's.
    #[serde(default)]
    pub created_at: String,
    /// The conflict behaviour asked for (`rename` stores the file under another name).
    #[serde(default)]
    pub conflict_behavior: Option<String>,
}

impl GraphSession {
    /// Whether `item` is what this session stored: the size (or, for a file a SharePoint library
    /// rewrites, a little more, see [`crate::library::rewrite_fits`]), and changed since the session began. With `rename` the
    /// file may be under another name: a lookup by path proves nothing.
    fn stored_as(&self, item: &DriveItem) -> bool {
        let newer = match (item.last_modified_date_time.as_deref(), self.created_at.as_str()) {
            (Some(modified), created) if !created.is_empty() => {
                let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
                match (parse(modified), parse(created)) {
                    // A second of slack for clocks that round.
                    (Some(m), Some(c)) => m + chrono::Duration::seconds(1) >= c,
                    _ => false,
                }
            }
            _ => false,
        };
        let size_fits = item.size == Some(self.file_size)
            || (library_rewrites(item) && crate::library::rewrite_fits(self.file_size, item.size));
        self.conflict_behavior.as_deref() != Some("rename") && size_fits && newer
    }
}

/// Whether `item` is a file a SharePoint library rewrites after upload: by its name, on any
/// drive but a personal OneDrive (which never does).
fn library_rewrites(item: &DriveItem) -> bool {
    let personal = item.parent_reference.as_ref().and_then(|p| p.drive_type.as_deref()) == Some("personal");
    !personal && item.name.as_deref().is_some_and(crate::library::may_rewrite)
}

/// The QuickXorHash a Graph item reports.
fn quickxor_of(item: &DriveItem) -> Option<String> {
    item.file.as_ref().and_then(|f| f.hashes.as_ref()).and_then(|h| h.quick_xor_hash.clone())
}

/// The upload state of a Graph upload (checkpoint and step-mode state).
pub type GraphUploadState = UploadState<GraphSession, Option<DriveItem>>;

/// A Graph upload on the engine.
pub type GraphUpload = Upload<GraphProtocol>;

/// Graph's upload-session protocol for the engine.
#[derive(Clone, Debug)]
pub struct GraphProtocol {
    client: Client,
    drive: Drive,
    item: Item,
    conflict_behavior: Option<String>,
    defer_commit: bool,
}

impl GraphProtocol {
    /// The protocol for one item.
    pub fn new(client: Client, drive: Drive, item: Item) -> Self {
        Self { client, drive, item, conflict_behavior: None, defer_commit: false }
    }
}

impl Protocol for GraphProtocol {
    type Session = GraphSession;
    type Receipt = Option<DriveItem>;
    type Output = DriveItem;
    type Error = Error;

    fn rules(&self) -> PartRules {
        rules()
    }

    fn target(&self) -> String {
        let drive = match &self.drive {
            Drive::Id(id) => format!("drive/{id}"),
            Drive::Me => "me".into(),
            Drive::Site(id) => format!("site/{id}"),
            Drive::Group(id) => format!("group/{id}"),
            Drive::User(id) => format!("user/{id}"),
        };
        match &self.item {
            Item::Path(p) => format!("graph://{drive}/{p}"),
            Item::Child { parent_id, name } => format!("graph://{drive}/items/{parent_id}/{name}"),
            Item::Id(id) => format!("graph://{drive}/items/{id}"),
        }
    }

    fn check_session(&self, session: &GraphSession, plan: &PartPlan) -> Result<(), String> {
        if session.drive != self.drive || session.item != self.item {
            let other = GraphProtocol::new(self.client.clone(), session.drive.clone(), session.item.clone());
            return Err(format!("a session of {}", other.target().escape_debug()));
        }
        if plan.total_len != Some(session.file_size) {
            return Err(format!(
                "a session of {} bytes, planned as {} bytes",
                session.file_size,
                plan.total_len.unwrap_or_default()
            ));
        }
        // The client checks the upload URL before every request too; a crafted state is
        // refused here before any call.
        match self.client.trusted_upload_url(&session.upload_url) {
            Ok(_) => {}
            Err(InvalidInput::UntrustedUploadUrl { scheme, host }) => {
                return Err(format!(
                    "a session whose upload URL points to {scheme}://{host}, where Graph hands out no upload URLs (add it to trusted_urls if it is yours)"
                ));
            }
            Err(_) => return Err("a session whose upload URL is not a URL".into()),
        }
        Ok(())
    }

    fn whole_hashes(&self) -> Hashes {
        Hashes::QUICKXOR
    }

    async fn create(&self, total_len: Option<u64>, _part_size: u64) -> Result<Created<GraphSession>, Error> {
        let file_size = total_len.unwrap_or(0);
        let input = CreateUploadSessionInput {
            item: Some(DriveItemUploadableProperties {
                odata_type: None,
                conflict_behavior: self.conflict_behavior.clone(),
                name: self.item.name().map(str::to_owned),
                file_size: Some(file_size),
                ..DriveItemUploadableProperties::default()
            }),
            defer_commit: self.defer_commit.then_some(true),
        };
        let session = self.client.create_upload_session(&self.drive, &self.item, &input, None).await?;
        let upload_url = Secret::new(session.upload_url.unwrap_or_default());
        // An upload URL this client will not send to fails here, named, and is never saved.
        self.client.trusted_upload_url(&upload_url)?;
        Ok(Created {
            session: GraphSession {
                upload_url,
                drive: self.drive.clone(),
                item: self.item.clone(),
                file_size,
                defer_commit: self.defer_commit,
                created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                conflict_behavior: self.conflict_behavior.clone(),
            },
            part_size: None,
        })
    }

    async fn upload_part(&self, session: &GraphSession, part: PartUpload) -> Result<Option<DriveItem>, Error> {
        let (offset, total) = (part.spec.offset, session.file_size);
        let end = offset + part.spec.len;
        match self.client.put_fragment(&session.upload_url, offset, total, part.body.clone()).await {
            Ok(Fragment::Done(item)) => Ok(Some(*item)),
            Ok(Fragment::Accepted(_)) => Ok(None),
            Err(Error::Service(e)) if e.code == ErrorCode::InvalidRange => {
                // A retried fragment that had in fact arrived (in whole or in part): ask where the
                // session stands, and send only what it still lacks.
                let status = match self.client.session_status(&session.upload_url).await {
                    Ok(s) => s,
                    // The last fragment had arrived and finished the upload: complete finds it.
                    Err(gone) if gone.code() == Some(&ErrorCode::ItemNotFound) && end == total => return Ok(None),
                    Err(other) => return Err(other),
                };
                match next_expected(&status, total) {
                    Some(m) if m >= end => Ok(None),
                    Some(m) if m > offset => {
                        let rest = part.body.slice(usize::try_from(m - offset).unwrap_or(0)..);
                        match self.client.put_fragment(&session.upload_url, m, total, rest).await? {
                            Fragment::Done(item) => Ok(Some(*item)),
                            Fragment::Accepted(_) => Ok(None),
                        }
                    }
                    _ => Err(Error::Service(e)),
                }
            }
            // The last fragment of an attempt whose answer was lost had finished the upload: the
            // session is gone, and complete checks the item.
            Err(e) if e.code() == Some(&ErrorCode::ItemNotFound) && end == total => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_parts(
        &self,
        session: &GraphSession,
        plan: &PartPlan,
    ) -> Result<Vec<ServerPart<Option<DriveItem>>>, Error> {
        let status = match self.client.session_status(&session.upload_url).await {
            Ok(s) => s,
            // The session is gone: finished (every part stored, complete checks the item), or
            // expired or cancelled (the engine starts a new one).
            Err(e) if e.code() == Some(&ErrorCode::ItemNotFound) => {
                return match self.client.get_item(&session.drive, &session.item).await {
                    Ok(item) if session.stored_as(&item) => Ok(held_below(plan, u64::MAX)),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let received = next_expected(&status, session.file_size).ok_or_else(|| Error::MalformedResponse {
            operation: "get upload session",
            detail: format!("nextExpectedRanges {:?} cannot be read", status.next_expected_ranges),
        })?;
        // Graph reports what it lacks, not parts: every fragment that ends before the first
        // missing byte is stored.
        Ok(held_below(plan, received))
    }

    async fn complete(
        &self,
        session: &GraphSession,
        parts: &[DonePart<Option<DriveItem>>],
        _whole: &Digests,
        total_len: u64,
    ) -> Result<DriveItem, Error> {
        let item = match parts.iter().rev().find_map(|p| p.receipt.clone()) {
            Some(item) => item,
            None if session.defer_commit => match self.client.commit(&session.upload_url).await {
                Ok(item) => item,
                // A commit whose answer was lost: the session is gone and the item is there.
                Err(e) if e.code() == Some(&ErrorCode::ItemNotFound) => self.stored_item(session).await?,
                Err(e) => return Err(e),
            },
            // The last fragment's answer was lost: the item tells.
            None => self.stored_item(session).await?,
        };
        // A file a library rewrites is reported by `server_modified` instead.
        // The item the session's own answer named (or one `stored_item` found to fit): a file a
        // library rewrites may have any size, and is reported by `server_modified` instead.
        if item.size.is_some_and(|s| s != total_len) && !library_rewrites(&item) {
            return Err(IntegrityError {
                what: "file size".into(),
                expected: total_len.to_string(),
                actual: item.size.unwrap_or_default().to_string(),
            }
            .into());
        }
        Ok(item)
    }

    fn server_modified(&self, output: &DriveItem, whole: &Digests, total_len: u64) -> Option<ServerModified> {
        // Another size; the same size with another hash is corruption, which `verify` reports.
        if !library_rewrites(output) || output.size.is_none_or(|s| s == total_len) {
            return None;
        }
        let (ours, theirs) = (whole.quickxor_base64(), quickxor_of(output));
        let summary = |len, hash: Option<String>| ObjectSummary::new(len, hash.map(|h| format!("QuickXorHash {h}")));
        Some(ServerModified::new(crate::library::REASON, summary(Some(total_len), ours), summary(output.size, theirs)))
    }

    fn verify(&self, output: &DriveItem, whole: &Digests) -> Result<(), IntegrityError> {
        match (whole.quickxor_base64(), quickxor_of(output)) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                Err(IntegrityError { what: "QuickXorHash of the file".into(), expected: ours, actual: theirs })
            }
            _ => Ok(()),
        }
    }

    fn is_session_gone(&self, error: &Error) -> bool {
        // Expired or cancelled (404), or the upload URL's own token past its 24 hours (401
        // expiredToken: Graph's own 401s come from the Graph host, never from these calls).
        error.code() == Some(&ErrorCode::ItemNotFound)
            || error.service().is_some_and(|e| e.status == 401 && e.has_code("expiredToken"))
    }

    fn session_expires(&self, session: &GraphSession) -> Option<std::time::SystemTime> {
        // Each fragment moves `expirationDateTime` forward, but the token inside the upload URL
        // ends 24 hours after the session was created, whatever the pace.
        let created = chrono::DateTime::parse_from_rfc3339(&session.created_at).ok()?;
        Some((created.with_timezone(&chrono::Utc) + chrono::Duration::hours(24)).into())
    }

    async fn abort(&self, session: &GraphSession) -> Result<(), Error> {
        self.client.cancel(&session.upload_url).await
    }
}

impl GraphProtocol {
    /// The item this session stored, found by its address when an answer was lost.
    async fn stored_item(&self, session: &GraphSession) -> Result<DriveItem, Error> {
        let item = self.client.get_item(&session.drive, &session.item).await?;
        if session.stored_as(&item) {
            return Ok(item);
        }
        let why = if session.conflict_behavior.as_deref() == Some("rename") {
            "rename may have stored it under another name; check the folder"
        } else {
            "the item at the path is older or of another size"
        };
        Err(IntegrityError {
            what: "the item (the answer that named it was lost)".into(),
            expected: format!("{} bytes changed after {}", session.file_size, session.created_at),
            actual: format!(
                "{} bytes changed at {}: {why}",
                item.size.unwrap_or_default(),
                item.last_modified_date_time.unwrap_or_default()
            ),
        }
        .into())
    }
}

/// The high-level uploader: files and streams to OneDrive and SharePoint drives, resumable.
#[derive(Clone, Debug)]
pub struct Uploader {
    client: Client,
    options: UploadOptions,
    conflict_behavior: Option<String>,
    defer_commit: bool,
}

impl Uploader {
    /// An uploader with the engine's defaults (10 MiB fragments, one at a time).
    pub fn new(client: Client) -> Self {
        let options = UploadOptions { retry: client.config().retry.clone(), ..UploadOptions::default() };
        Self { client, options, conflict_behavior: None, defer_commit: false }
    }

    /// Sets the engine options (fragment size, checkpoint file, progress, cancel).
    pub fn with_options(mut self, options: UploadOptions) -> Self {
        self.options = options;
        self
    }

    /// What happens when the name is taken: `fail`, `replace` or `rename`.
    pub fn with_conflict_behavior(mut self, behavior: impl Into<String>) -> Self {
        self.conflict_behavior = Some(behavior.into());
        self
    }

    /// Waits for an explicit commit after the last byte (`deferCommit`).
    pub fn with_defer_commit(mut self, defer: bool) -> Self {
        self.defer_commit = defer;
        self
    }

    fn protocol(&self, drive: Drive, item: Item) -> GraphProtocol {
        GraphProtocol {
            client: self.client.clone(),
            drive,
            item,
            conflict_behavior: self.conflict_behavior.clone(),
            defer_commit: self.defer_commit,
        }
    }

    /// An upload to an item: resumed from the checkpoint file of the options when it exists, new
    /// otherwise. Drive it with `run()` or `step(budget)`.
    pub fn upload(&self, drive: Drive, item: Item, source: Source) -> Result<GraphUpload, UploadError<Error>> {
        let invalid = |e: crate::error::InvalidInput| UploadError::Input(Error::Invalid(e));
        if let Some(behavior) = &self.conflict_behavior
            && !matches!(behavior.as_str(), "fail" | "replace" | "rename")
        {
            return Err(invalid(crate::error::InvalidInput::Config(format!(
                "conflict behavior {behavior:?}: fail, replace or rename"
            ))));
        }
        match &item {
            Item::Path(p) => validate_path(p).map_err(invalid)?,
            Item::Child { name, .. } => validate_path(name).map_err(invalid)?,
            Item::Id(_) => {}
        }
        Upload::resume_or_new(self.protocol(drive, item), source, self.options.clone())
    }

    /// Continues an upload from a stored state (step mode).
    pub fn resume(&self, source: Source, state: GraphUploadState) -> GraphUpload {
        let protocol = self.protocol(state.session.drive.clone(), state.session.item.clone());
        Upload::resume(protocol, source, state, self.options.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_multiples_of_320_kib_below_60_mib() {
        let err = PartPlan::new(&rules(), Some(100 * MIB), upload_core::PartSize::Exact(5 * MIB + 1)).unwrap_err();
        assert_eq!(err.to_string(), "part size 5242881 bytes is not a multiple of 320 KiB, as Graph requires");
        let err = PartPlan::new(&rules(), Some(100 * MIB), upload_core::PartSize::Exact(60 * MIB)).unwrap_err();
        assert!(err.to_string().contains("above Graph's maximum"), "{err}");
        let plan = PartPlan::new(&rules(), Some(25 * MIB), upload_core::PartSize::Auto).unwrap();
        assert_eq!(plan.part_size, 10 * MIB);
        assert_eq!(plan.part_count(), Some(3));
        assert!(PartPlan::new(&rules(), Some(0), upload_core::PartSize::Auto).is_err(), "no empty sessions");
    }
}
