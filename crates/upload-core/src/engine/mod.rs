//! The engine: one resumable, concurrent, bounded-memory upload driver for every vendor.
//!
//! [`Upload`] owns an upload from its first byte to the finished object:
//!
//! 1. **Plan and create**, or **resume**: a new upload plans its parts (failing before a byte is
//!    sent when the rules cannot be met) and creates the vendor session; a resumed one checks that
//!    the state belongs to this vendor, target and source, then lists what the server holds. The
//!    server is the truth: parts it holds that match the plan (length, and digests where both
//!    sides have them) are kept, and parts the state lists that the server lacks are sent again.
//! 2. **Read in order, send in parallel.** One reading stage walks the plan in order. When the
//!    vendor needs a whole-file digest (Box SHA-1, Graph QuickXorHash) it reads and hashes every
//!    byte exactly once, resuming the hash state it saved; otherwise parts are read inside their
//!    own tasks with positional reads. At most `concurrency` part buffers exist at any time: a
//!    part is read only once a slot is free, so memory is bounded by concurrency × part size
//!    whatever the file size. Vendors that need parts in order get one slot.
//! 3. **Retry each part** with backoff and `Retry-After`, a timeout per attempt (a stalled
//!    connection is retried like a dropped one), and, after a failure that may have reached the
//!    server (5xx, timeout), a look at the server before sending the same bytes again.
//! 4. **Complete and verify**: the source is checked once more for changes, the whole-file
//!    digests are finished (CRC-64 combined from the parts), the vendor completes, and the
//!    vendor crate compares what the server reports with what was sent.
//!
//! The state ([`UploadState`]) is updated as parts finish and written to the checkpoint file when
//! one is configured. [`Upload::step`] runs the same driver within a time budget and returns with
//! the state ready for the next step, in this process or another.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, CheckpointError};
use crate::hash::{Digests, Hashes, WholeHasher};
use crate::plan::{PartPlan, PartRules, PartSize, PartSpec, PlanError};
use crate::progress::{Event, Observer};
use crate::protocol::{IntegrityError, PartUpload, Protocol, ServerModified, ServerPart};
use crate::retry::{Backoff, Classify, Retried, RetryPolicy};
use crate::source::{Fingerprint, ReadAt, Source, SourceChanged};
use crate::state::{DonePart, UploadState};

mod driver;
mod error;
mod options;
mod part;
mod report;
mod session;

use driver::*;
pub use error::{Operation, UploadError};
pub use options::UploadOptions;
use part::*;
pub use report::UploadReport;
use report::{Buffer, Counters};

/// A finished upload.
#[derive(Debug)]
pub struct Completed<O> {
    /// What the vendor returned.
    pub output: O,
    /// The whole-source digests that were sent and checked.
    pub digests: Digests,
    /// What this process did.
    pub report: UploadReport,
    /// The vendor changed the object after receiving it whole (SharePoint's metadata in Office,
    /// PDF and HTML files): what it stores is not byte for byte what was sent.
    pub server_modified: Option<Box<ServerModified>>,
}

/// The result of one [`Upload::step`].
#[derive(Debug)]
pub enum Step<O> {
    /// The object exists.
    Done(Completed<O>),
    /// The budget ran out; [`Upload::state`] holds everything the next step needs.
    Pending {
        /// Parts stored so far.
        parts_done: u32,
        /// Bytes stored so far.
        bytes_done: u64,
    },
}

type State<P> = UploadState<<P as Protocol>::Session, <P as Protocol>::Receipt>;
type Error<P> = UploadError<<P as Protocol>::Error>;

/// One upload: new or resumed, run to the end or step by step.
pub struct Upload<P: Protocol> {
    protocol: Arc<P>,
    source: Source,
    options: UploadOptions,
    state: Option<State<P>>,
    hasher: Option<WholeHasher>,
    /// Whether the state reflects the server (fresh session, or listed since the last stop).
    reconciled: bool,
    /// The resumed session was gone although every part had been stored: the process may have
    /// stopped while completing. Completion is tried once before starting over.
    completing_gone: bool,
    /// Parts read from a stream and not yet stored: a stream cannot be read twice.
    carry: BTreeMap<u32, Bytes>,
    counters: Arc<Counters>,
    parts_uploaded: u32,
    parts_skipped: u32,
    /// Recent time to store one part, to plan a step's budget.
    part_time: Option<Duration>,
    /// The deadline of the running step: vendor calls do not wait past it.
    deadline: Option<Instant>,
    /// Sessions found gone and started over in this process: a server that loses every session
    /// must not make the upload start over forever.
    restarts: u32,
    /// Whether [`Event::SessionMayExpire`] was sent in this process.
    expiry_warned: bool,
}

/// The most sessions one process starts over after finding them gone.
const MAX_RESTARTS: u32 = 3;

impl<P: Protocol> std::fmt::Debug for Upload<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("target", &self.protocol.target())
            .field("source", &self.source)
            .field("options", &self.options)
            .field("parts_done", &self.state.as_ref().map(|s| s.parts_done()))
            .finish_non_exhaustive()
    }
}

enum TaskBody {
    Ready(Buffer),
    Read(Arc<dyn ReadAt>, Fingerprint),
}

struct TaskOutput<R, E: std::error::Error + 'static> {
    index: u32,
    result: Result<DonePart<R>, UploadError<E>>,
    found_on_server: bool,
    elapsed: Duration,
}

impl<P: Protocol> Upload<P> {
    /// A new upload of `source` through `protocol`.
    pub fn new(protocol: P, source: Source, options: UploadOptions) -> Self {
        Self {
            protocol: Arc::new(protocol),
            source,
            options,
            state: None,
            hasher: None,
            reconciled: false,
            completing_gone: false,
            carry: BTreeMap::new(),
            counters: Arc::default(),
            parts_uploaded: 0,
            parts_skipped: 0,
            part_time: None,
            deadline: None,
            restarts: 0,
            expiry_warned: false,
        }
    }

    /// Continues an upload from its state (a step's result, or a loaded checkpoint). Nothing is
    /// checked until the upload runs: then the state must be for this vendor, target and source.
    pub fn resume(protocol: P, source: Source, state: State<P>, options: UploadOptions) -> Self {
        let mut upload = Self::new(protocol, source, options);
        upload.state = Some(state);
        upload
    }

    /// Resumes from the checkpoint file in `options.checkpoint` when it exists, or starts anew.
    pub fn resume_or_new(protocol: P, source: Source, options: UploadOptions) -> Result<Self, Error<P>> {
        match &options.checkpoint {
            Some(path) if path.exists() => {
                let state = checkpoint::load(path)?;
                Ok(Self::resume(protocol, source, state, options))
            }
            _ => Ok(Self::new(protocol, source, options)),
        }
    }

    /// The current state: `None` before the session exists.
    pub fn state(&self) -> Option<&State<P>> {
        self.state.as_ref()
    }

    /// Takes the state out, for storage between steps.
    pub fn into_state(self) -> Option<State<P>> {
        self.state
    }

    /// The protocol.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// What this process has done so far.
    pub fn report(&self) -> UploadReport {
        let c = &self.counters;
        UploadReport {
            part_requests: c.part_requests.load(Ordering::Relaxed),
            part_retries: c.part_retries.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_resent: c.bytes_resent.load(Ordering::Relaxed),
            parts_uploaded: self.parts_uploaded,
            parts_skipped: self.parts_skipped,
            peak_buffered: c.peak_buffered.load(Ordering::Relaxed),
        }
    }

    fn emit(&self, event: Event) {
        if let Some(observer) = &self.options.observer {
            observer(&event);
        }
    }

    /// Runs the upload to the end.
    pub async fn run(&mut self) -> Result<Completed<P::Output>, Error<P>> {
        match self.drive(None).await? {
            Step::Done(done) => Ok(done),
            Step::Pending { .. } => Err(UploadError::Protocol("the upload stopped with parts left".into())),
        }
    }

    /// Runs the upload for at most about `budget`: parts are started while they are expected to
    /// finish in time, parts still in flight at the end of the budget are dropped (the server is
    /// asked about them next time), and the state is left ready for the next step.
    pub async fn step(&mut self, budget: Duration) -> Result<Step<P::Output>, Error<P>> {
        self.drive(Some(Instant::now() + budget)).await
    }

    /// Aborts the upload: stops, calls the vendor's abort, and removes the checkpoint file.
    pub async fn abort(&mut self) -> Result<(), Error<P>> {
        if let Some(state) = &self.state {
            self.check_own(state)?;
            let protocol = self.protocol.clone();
            let session = state.session.clone();
            self.call(Operation::Abort, || protocol.abort(&session)).await?;
        }
        if let Some(path) = &self.options.checkpoint {
            checkpoint::remove(path)?;
        }
        self.state = None;
        Ok(())
    }

    /// One vendor call (not a part) with retries.
    ///
    /// Cancelling reaches every wait: a `Retry-After` sleep, backoff, a slow answer, Box's commit
    /// polling. Dropping a request is safe for calls that each vendor lets repeat on resume, but
    /// not for two: a create in flight is let finish (a session it made would be lost to the
    /// state, left open on the server, and SharePoint REST would keep the file locked), and its
    /// caller saves the session and then reports the cancel; an abort is what a caller does
    /// after cancelling, so the token does not cut it at all.
    async fn call<T, F, Fut>(&self, operation: Operation, mut f: F) -> Result<T, Error<P>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, P::Error>>,
    {
        let name = match operation {
            Operation::Create => "create",
            Operation::UploadPart => "upload_part",
            Operation::ListParts => "list_parts",
            Operation::Complete => "complete",
            Operation::Abort => "abort",
            Operation::SingleRequest => "single_request",
        };
        // In a step, a retry never waits past the step's deadline: it gives up for this step
        // (`GiveUp::Time`), and `drive` pauses instead of failing.
        let mut policy = self.options.retry.clone();
        if let Some(d) = self.deadline {
            policy.max_elapsed = policy.max_elapsed.min(d.saturating_duration_since(Instant::now()));
        }
        let cancel = match operation {
            Operation::Abort => CancellationToken::new(),
            _ => self.options.cancel.clone(),
        };
        let cut_in_flight = !matches!(operation, Operation::Create | Operation::Abort);
        let mut backoff = policy.start();
        loop {
            let attempt = backoff.attempt();
            let answer = if cut_in_flight {
                tokio::select! {
                    answer = f() => answer,
                    () = cancel.cancelled() => return Err(UploadError::Cancelled),
                }
            } else {
                f().await
            };
            let error = match answer {
                Ok(v) => return Ok(v),
                Err(error) => error,
            };
            let delay = match backoff.next_delay(error.is_retryable(), error.retry_after()) {
                Ok(delay) if !cancel.is_cancelled() => delay,
                Ok(_) => return Err(UploadError::Cancelled),
                Err(reason) => {
                    let source = Retried { error, attempts: backoff.attempts(), elapsed: backoff.elapsed(), reason };
                    return Err(UploadError::Vendor { operation, part: None, source });
                }
            };
            tracing::debug!(operation = name, attempt, ?delay, %error, "retrying");
            self.emit(Event::Retrying { operation: name, attempt, delay, error: error.to_string() });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return Err(UploadError::Cancelled),
            }
        }
    }

    fn save(&self, force: bool, last_save: &mut Instant) -> Result<(), Error<P>> {
        let (Some(path), Some(state)) = (&self.options.checkpoint, &self.state) else {
            return Ok(());
        };
        if !force && last_save.elapsed() < self.options.checkpoint_interval {
            return Ok(());
        }
        checkpoint::save(path, state)?;
        *last_save = Instant::now();
        self.emit(Event::CheckpointSaved { parts_done: state.parts_done() });
        Ok(())
    }

    /// The source's fingerprint now (a stream has only its declared length).
    async fn fingerprint(&self) -> Result<Fingerprint, Error<P>> {
        match &self.source {
            Source::ReadAt(r) => {
                let r = r.clone();
                blocking(move || r.fingerprint()).await?.map_err(UploadError::read)
            }
            Source::Stream(s) => Ok(Fingerprint { len: s.len(), ..Fingerprint::default() }),
        }
    }
}
