//! Why an upload stopped: [`UploadError`], and the vendor calls it names ([`Operation`]).

use super::*;

/// A vendor call, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Creating the session.
    Create,
    /// Sending a part.
    UploadPart,
    /// Listing what the server holds.
    ListParts,
    /// Completing the upload.
    Complete,
    /// Aborting the upload.
    Abort,
    /// Sending a small file whole, in one request (no session).
    SingleRequest,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Create => "creating the upload session",
            Operation::UploadPart => "uploading a part",
            Operation::ListParts => "listing the uploaded parts",
            Operation::Complete => "completing the upload",
            Operation::Abort => "aborting the upload",
            Operation::SingleRequest => "uploading the whole file in one request",
        })
    }
}

fn of_part(part: &Option<u32>) -> String {
    part.map(|n| format!(" {n}")).unwrap_or_default()
}

/// Why an upload stopped. After any of these but a plan error, the state is resumable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError<E: std::error::Error + 'static> {
    /// The parts cannot be planned within the vendor's rules. Nothing was sent.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A vendor call failed after its retries.
    #[error("{operation}{} failed: {source}", of_part(.part))]
    Vendor {
        /// The call.
        operation: Operation,
        /// The part number, for part uploads.
        part: Option<u32>,
        /// The last error and the attempts made.
        #[source]
        source: Retried<E>,
    },
    /// Every attempt at a part stalled past the part timeout.
    #[error("part {number} did not finish within {timeout:?} in any of {attempts} attempts")]
    PartTimeout {
        /// Wire part number.
        number: u32,
        /// The timeout per attempt.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// Reading the source failed.
    #[error("reading the source failed: {0}")]
    Read(#[source] io::Error),
    /// The source is not the one the upload started with, or changed while being read.
    #[error(transparent)]
    SourceChanged(#[from] SourceChanged),
    /// The checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The state belongs to another vendor or target, or its session to another object.
    #[error("the saved upload state is for {found}, not {expected}: a saved session must be its own target's")]
    StateMismatch {
        /// What this upload is.
        expected: String,
        /// What the state is for.
        found: String,
    },
    /// The state cannot be used (corrupt hash state, other format).
    #[error("the saved upload state cannot be used: {0}")]
    StateCorrupt(String),
    /// The finished object does not match what was sent.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    /// The vendor changed the object after receiving it whole, and
    /// [`UploadOptions::accept_server_modified`] is off. The upload is over (its checkpoint is
    /// removed): sending it again would be changed the same way.
    #[error("the upload finished, but {0}")]
    ServerModified(ServerModified),
    /// The input (bucket, key, options) breaks one of the vendor's rules; nothing was sent.
    #[error(transparent)]
    Input(E),
    /// The server answered something its protocol does not allow.
    #[error("the server's answer breaks the protocol: {0}")]
    Protocol(String),
    /// The upload was cancelled through its token. The state is resumable.
    #[error("the upload was cancelled; its state can be resumed")]
    Cancelled,
    /// The vendor no longer has the resumed session (expired, aborted, or gone for another
    /// reason), and [`UploadOptions::restart_gone_session`] is off: nothing was sent.
    #[error("the upload session is gone from the server ({reason}); starting again sends every byte anew")]
    SessionGone {
        /// What the server said.
        reason: String,
    },
}

impl<E: std::error::Error + 'static> UploadError<E> {
    pub(super) fn read(e: io::Error) -> Self {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<SourceChanged>()) {
            Some(changed) => Self::SourceChanged(changed.clone()),
            None => Self::Read(e),
        }
    }

    /// The vendor error behind this one, if any.
    pub fn vendor_error(&self) -> Option<&E> {
        match self {
            Self::Vendor { source, .. } => Some(&source.error),
            Self::Input(e) => Some(e),
            _ => None,
        }
    }
}
