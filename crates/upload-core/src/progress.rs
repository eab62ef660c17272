//! Progress as events, for a progress bar, a log, a web app's status endpoint or a test.
//!
//! The engine calls an [`Observer`] synchronously from its driver task; keep it quick (update
//! counters, send on a channel). Events carry no secrets: error texts are the vendor errors'
//! `Display`, which the vendor crates keep free of keys, tokens and signed URLs.

use std::sync::Arc;
use std::time::Duration;

/// One thing that happened during an upload.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A new vendor session was created and the parts planned.
    SessionCreated {
        /// Size of every part but the last.
        part_size: u64,
        /// Number of parts, when the length is known.
        parts: Option<u32>,
        /// Source length, when known.
        total_len: Option<u64>,
    },
    /// An existing session was reconciled with what the server holds.
    Resumed {
        /// Parts the server holds that match the plan.
        parts_on_server: u32,
        /// Their bytes.
        bytes_on_server: u64,
        /// Parts the state listed that the server does not hold (they will be sent again).
        parts_missing: u32,
    },
    /// The upload's session no longer exists on the server (expired, aborted elsewhere, or
    /// completed after a crash and not found), found when resuming or during the run; a new
    /// session is being created.
    SessionRestarted {
        /// What the vendor said.
        reason: String,
    },
    /// At the pace this run has kept so far, the upload would finish after the vendor ends its
    /// session (Box sessions live 7 days, a Graph upload URL about 24 hours). Sent once per run,
    /// as soon as the first part of the run gives the pace. The upload goes on: if the session
    /// does end, it is started over when [`UploadOptions::restart_gone_session`] allows.
    ///
    /// [`UploadOptions::restart_gone_session`]: crate::UploadOptions::restart_gone_session
    SessionMayExpire {
        /// Time left until the session ends.
        remaining: Duration,
        /// Time the rest of the upload is expected to take.
        estimated: Duration,
    },
    /// An attempt to send a part began.
    PartStarted {
        /// Wire part number.
        number: u32,
        /// Bytes in the part.
        len: u64,
        /// Attempt, from 1.
        attempt: u32,
    },
    /// A part failed and will be sent again after `delay`.
    PartRetrying {
        /// Wire part number.
        number: u32,
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// What went wrong.
        error: String,
    },
    /// A part's failure was ambiguous and the server turned out to hold it: it is not sent again.
    PartFoundOnServer {
        /// Wire part number.
        number: u32,
    },
    /// A part is stored by the vendor.
    PartDone {
        /// Wire part number.
        number: u32,
        /// Bytes in the part.
        len: u64,
        /// Time from the first attempt to success.
        elapsed: Duration,
        /// Parts done in all.
        parts_done: u32,
        /// Bytes done in all.
        bytes_done: u64,
    },
    /// A call other than a part upload (create, list, complete, abort) failed and will be retried.
    Retrying {
        /// The operation.
        operation: &'static str,
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// What went wrong.
        error: String,
    },
    /// The state was written to the checkpoint file.
    CheckpointSaved {
        /// Parts done at that point.
        parts_done: u32,
    },
    /// All parts are stored; the upload is being completed.
    Completing {
        /// Number of parts.
        parts: u32,
    },
    /// The vendor changed the object after receiving it whole (SharePoint's metadata in Office,
    /// PDF and HTML files): what it stores is not byte for byte what was sent.
    ServerModified(crate::ServerModified),
    /// The object exists.
    Completed {
        /// Its length.
        total_len: u64,
    },
    /// A step's time budget ran out with parts left; the state is ready for the next step.
    StepPaused {
        /// Parts done.
        parts_done: u32,
        /// Bytes done.
        bytes_done: u64,
    },
}

/// Receives events.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;
