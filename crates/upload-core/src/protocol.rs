//! What a vendor crate implements for the engine: the [`Protocol`] trait.

use std::fmt;
use std::future::Future;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::hash::{Digests, Hashes};
use crate::plan::{PartPlan, PartRules, PartSpec};
use crate::retry::Classify;
use crate::state::DonePart;

/// A new session, as the vendor created it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created<S> {
    /// The vendor's session: upload id, session URLs.
    pub session: S,
    /// The part size the server chose, for vendors that choose it (Box).
    pub part_size: Option<u64>,
}

/// One part to send.
#[derive(Clone, Debug)]
pub struct PartUpload {
    /// Where the part is in the plan and on the wire.
    pub spec: PartSpec,
    /// The source's total length, when known (for `Content-Range: bytes a-b/total`).
    pub total_len: Option<u64>,
    /// Whether this is the last part of the source.
    pub is_last: bool,
    /// The bytes. Cloning is cheap: a retry sends the same buffer again.
    pub body: Bytes,
    /// The digests the protocol asked for in [`Protocol::part_hashes`].
    pub digests: Digests,
}

/// A part as the server lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPart<R> {
    /// Wire part number.
    pub number: u32,
    /// Bytes stored.
    pub len: u64,
    /// Digests the server reports for it (Box SHA-1, OSS CRC-64 and ETag MD5, …).
    pub digests: Digests,
    /// What completing the upload needs of this part.
    pub receipt: R,
}

/// The vendor's report of the finished object disagrees with what was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} of the uploaded object does not match: sent {expected}, the server reports {actual}")]
pub struct IntegrityError {
    /// Which check ("CRC-64", "SHA-1", "QuickXorHash").
    pub what: String,
    /// The value computed from the source.
    pub expected: String,
    /// The value the vendor reports.
    pub actual: String,
}

/// What the vendor stored differs from what was sent, by the vendor's own doing after it received
/// every byte intact: SharePoint document libraries add their metadata to Office, PDF and HTML
/// files, so the stored size and QuickXorHash are not the ones sent. The upload is finished
/// (uploading again would be changed the same way); [`UploadOptions::accept_server_modified`]
/// says whether it counts as success.
///
/// [`UploadOptions::accept_server_modified`]: crate::UploadOptions::accept_server_modified
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: sent {sent}, the server stores {stored}")]
#[non_exhaustive]
pub struct ServerModified {
    /// Why the vendor changed it.
    pub reason: String,
    /// What was sent.
    pub sent: ObjectSummary,
    /// What the vendor reports it stores.
    pub stored: ObjectSummary,
}

impl ServerModified {
    /// A modification, with its reason.
    pub fn new(reason: impl Into<String>, sent: ObjectSummary, stored: ObjectSummary) -> Self {
        Self { reason: reason.into(), sent, stored }
    }
}

/// The length and digest of an object, as sent or as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectSummary {
    /// Length in bytes, when known.
    pub len: Option<u64>,
    /// The vendor's whole-object digest, in the vendor's notation ("QuickXorHash abc…="), when
    /// known.
    pub digest: Option<String>,
}

impl ObjectSummary {
    /// A summary of a length and a digest.
    pub fn new(len: Option<u64>, digest: Option<String>) -> Self {
        Self { len, digest }
    }
}

impl fmt::Display for ObjectSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.len {
            Some(len) => write!(f, "{len} bytes")?,
            None => f.write_str("an unknown length")?,
        }
        if let Some(d) = &self.digest {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// A vendor's multipart protocol, as the engine drives it.
///
/// Each method is one stateless vendor call (the vendor crate's operations layer does the
/// HTTP); the engine owns planning, reading, hashing, concurrency, retries and checkpoints.
pub trait Protocol: Send + Sync + 'static {
    /// The vendor's session (upload id, session endpoints). Stored in checkpoints.
    type Session: Clone + Serialize + DeserializeOwned + Send + Sync + fmt::Debug + 'static;
    /// What the vendor returns per part and needs back on completion (ETag, part record).
    type Receipt: Clone + Serialize + DeserializeOwned + Send + Sync + fmt::Debug + 'static;
    /// The finished object.
    type Output: Send + 'static;
    /// The vendor's error, classified for retry.
    type Error: std::error::Error + Classify + Send + Sync + 'static;

    /// The vendor's part rules.
    fn rules(&self) -> PartRules;

    /// The destination, as users write it (`oss://bucket/key`): a checkpoint for another target
    /// is refused.
    fn target(&self) -> String;

    /// Checks that a session read back from a saved state (a checkpoint file, a database row)
    /// is this protocol's own: the same bucket and key, item, file or destination as
    /// [`Protocol::target`], and a size that fits `plan`. A crafted state must not send the
    /// source, signed with the user's credentials, to another object or host. `Err` says what
    /// the session is for; the engine refuses the state with [`UploadError::StateMismatch`]
    /// before any call.
    ///
    /// [`UploadError::StateMismatch`]: crate::UploadError::StateMismatch
    fn check_session(&self, session: &Self::Session, plan: &PartPlan) -> Result<(), String>;

    /// Digests to compute for each part before it is sent (in parallel, per part).
    fn part_hashes(&self) -> Hashes {
        Hashes::NONE
    }

    /// Digests of the whole source, given to [`Protocol::complete`] and [`Protocol::verify`].
    /// SHA-1, MD5 and QuickXorHash are computed in order while reading; CRC-64 is combined from
    /// the parts' CRC-64s, so asking for it here needs it in [`Protocol::part_hashes`] too.
    fn whole_hashes(&self) -> Hashes {
        Hashes::NONE
    }

    /// Creates the session.
    fn create(
        &self,
        total_len: Option<u64>,
        part_size: u64,
    ) -> impl Future<Output = Result<Created<Self::Session>, Self::Error>> + Send;

    /// Sends one part.
    fn upload_part(
        &self,
        session: &Self::Session,
        part: PartUpload,
    ) -> impl Future<Output = Result<Self::Receipt, Self::Error>> + Send;

    /// Lists what the server holds of the session (every page). Vendors that report received
    /// byte ranges instead of parts translate them with the plan.
    fn list_parts(
        &self,
        session: &Self::Session,
        plan: &PartPlan,
    ) -> impl Future<Output = Result<Vec<ServerPart<Self::Receipt>>, Self::Error>> + Send;

    /// Asks whether the server holds one part, after a failure that may have taken effect.
    fn find_part(
        &self,
        session: &Self::Session,
        plan: &PartPlan,
        number: u32,
    ) -> impl Future<Output = Result<Option<ServerPart<Self::Receipt>>, Self::Error>> + Send {
        async move { Ok(self.list_parts(session, plan).await?.into_iter().find(|p| p.number == number)) }
    }

    /// Completes the upload from its parts, in order.
    fn complete(
        &self,
        session: &Self::Session,
        parts: &[DonePart<Self::Receipt>],
        whole: &Digests,
        total_len: u64,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// Whether the finished object was changed by the vendor after it received every byte (see
    /// [`ServerModified`]): then it is reported as such instead of being checked by
    /// [`Protocol::verify`]. Only a vendor known to change what it stores, and only for what it
    /// changes, returns `Some`.
    fn server_modified(&self, output: &Self::Output, whole: &Digests, total_len: u64) -> Option<ServerModified> {
        let _ = (output, whole, total_len);
        None
    }

    /// Checks the finished object against the digests of the source.
    fn verify(&self, output: &Self::Output, whole: &Digests) -> Result<(), IntegrityError> {
        let _ = (output, whole);
        Ok(())
    }

    /// Whether an error means the vendor no longer has the session (completed, aborted or
    /// expired): a resumed upload then starts a new session instead of failing forever.
    fn is_session_gone(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// When the vendor ends the session whatever happens (Box's `session_expires_at`, a Graph
    /// upload URL's 24 hours), if it does: the engine warns with
    /// [`Event::SessionMayExpire`](crate::Event::SessionMayExpire) when the upload's pace would
    /// not finish before.
    fn session_expires(&self, session: &Self::Session) -> Option<std::time::SystemTime> {
        let _ = session;
        None
    }

    /// Abandons the session and what it stores.
    fn abort(&self, session: &Self::Session) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
