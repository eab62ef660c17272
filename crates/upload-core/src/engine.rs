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

/// How an upload runs.
#[derive(Clone)]
pub struct UploadOptions {
    /// How to choose the part size (ignored by vendors that choose it themselves).
    pub part_size: PartSize,
    /// Parts in flight at once (forced to 1 for vendors that need parts in order).
    pub concurrency: usize,
    /// Retry policy for every call.
    pub retry: RetryPolicy,
    /// Longest time one attempt at sending a part may take; a stalled attempt is retried.
    pub part_timeout: Option<Duration>,
    /// Where to keep the checkpoint file, if anywhere.
    pub checkpoint: Option<PathBuf>,
    /// Least time between two checkpoint writes while parts finish (the state is also written
    /// when the upload stops for any reason).
    pub checkpoint_interval: Duration,
    /// Receives progress events.
    pub observer: Option<Observer>,
    /// Cancels the upload promptly: parts in flight are dropped (on resume the server is asked
    /// which of them it stored), the state is saved and stays resumable.
    pub cancel: CancellationToken,
    /// When a resumed session is gone from the server (expired, aborted, or finished after a
    /// crash and not found), start a new one from the first byte (the default); `false` reports
    /// [`UploadError::SessionGone`] instead and keeps the state, for callers that must decide.
    pub restart_gone_session: bool,
    /// When the vendor changed the object after receiving it whole ([`ServerModified`]:
    /// SharePoint adds its metadata to Office, PDF and HTML files), count the upload as done and
    /// report it in [`Completed::server_modified`] (the default); `false` reports
    /// [`UploadError::ServerModified`] instead. Either way the upload is over: sending the file
    /// again would be changed the same way.
    pub accept_server_modified: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            part_size: PartSize::Auto,
            concurrency: 4,
            retry: RetryPolicy::default(),
            part_timeout: Some(Duration::from_secs(300)),
            checkpoint: None,
            checkpoint_interval: Duration::from_secs(1),
            observer: None,
            cancel: CancellationToken::new(),
            restart_gone_session: true,
            accept_server_modified: true,
        }
    }
}

impl std::fmt::Debug for UploadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadOptions")
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("part_timeout", &self.part_timeout)
            .field("checkpoint", &self.checkpoint)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("observer", &self.observer.as_ref().map(|_| "Fn(&Event)"))
            .field("restart_gone_session", &self.restart_gone_session)
            .field("accept_server_modified", &self.accept_server_modified)
            .finish_non_exhaustive()
    }
}

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
    fn read(e: io::Error) -> Self {
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

/// Counts of what an upload did in this process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Part upload attempts (requests that carried a body).
    pub part_requests: u64,
    /// Part attempts that failed and were retried.
    pub part_retries: u64,
    /// Body bytes sent, retries included.
    pub bytes_sent: u64,
    /// Body bytes sent again because an attempt failed.
    pub bytes_resent: u64,
    /// Parts stored in this process.
    pub parts_uploaded: u32,
    /// Parts found on the server and not sent (resume, ambiguous failures).
    pub parts_skipped: u32,
    /// Largest number of part bytes held in memory at once.
    pub peak_buffered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    part_requests: AtomicU64,
    part_retries: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_resent: AtomicU64,
    buffered: AtomicU64,
    peak_buffered: AtomicU64,
    /// Part buffers no one uses any more, kept for the next parts: no allocation, no page
    /// faults and no zeroing per part, and a resident size that stays at concurrency × part size.
    free: std::sync::Mutex<Vec<bytes::BytesMut>>,
    /// How many free buffers to keep (the concurrency).
    keep: AtomicU64,
}

impl Counters {
    /// A buffer of `len` bytes, recycled when one is free. Its contents are stale: the caller
    /// overwrites all of it.
    fn take_buffer(&self, len: usize) -> bytes::BytesMut {
        let recycled = self.free.lock().ok().and_then(|mut f| f.pop());
        let mut buf = recycled.unwrap_or_default();
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0);
        }
        buf
    }
}

/// A part buffer counted against the memory bound while it lives.
#[derive(Debug)]
struct Buffer {
    bytes: Bytes,
    counters: Arc<Counters>,
}

impl Buffer {
    fn new(bytes: Bytes, counters: &Arc<Counters>) -> Self {
        let len = bytes.len() as u64;
        let now = counters.buffered.fetch_add(len, Ordering::Relaxed) + len;
        counters.peak_buffered.fetch_max(now, Ordering::Relaxed);
        Self { bytes, counters: counters.clone() }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.counters.buffered.fetch_sub(self.bytes.len() as u64, Ordering::Relaxed);
        // Recycle the memory when this was its last user (a retry or the HTTP stack may hold
        // another reference for a moment; then it is simply freed).
        if let Ok(buf) = std::mem::take(&mut self.bytes).try_into_mut()
            && buf.capacity() > 0
            && let Ok(mut free) = self.counters.free.lock()
            && (free.len() as u64) < self.counters.keep.load(Ordering::Relaxed)
        {
            free.push(buf);
        }
    }
}

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

    /// Creates the session, or checks and reconciles a resumed one. A resumed session the vendor
    /// no longer has (completed after a crash, expired, aborted elsewhere) is replaced by a new
    /// one: the server is the truth, and a checkpoint must never become a dead end.
    async fn prepare(&mut self) -> Result<(), Error<P>> {
        if self.state.is_some() && !self.reconciled {
            let Some(reason) = self.resume_session().await? else { return Ok(()) };
            if self.state.as_ref().is_some_and(|s| s.all_parts_done()) && !self.completing_gone {
                // Every part had been stored: the process may have stopped while completing, and
                // the object may be there already. Each vendor's completion recognises an object
                // it made; only if it does not is the upload started over.
                tracing::info!(%reason, "the upload session is gone after every part was stored; completing");
                self.completing_gone = true;
                self.reconciled = true;
                return Ok(());
            }
            self.start_over(reason)?;
        }
        if self.state.is_none() {
            return self.create_session().await;
        }
        Ok(())
    }

    /// Forgets a session the vendor no longer has, so that a new one is created: unless the
    /// caller said not to ([`UploadOptions::restart_gone_session`]), or the source is a stream
    /// that cannot be read from its start again.
    fn start_over(&mut self, reason: String) -> Result<(), Error<P>> {
        if !self.options.restart_gone_session {
            return Err(UploadError::SessionGone { reason });
        }
        if matches!(&self.source, Source::Stream(s) if s.position() > 0) {
            return Err(UploadError::StateCorrupt(format!(
                "the vendor no longer has the upload session ({reason}), and the stream cannot be read again from its start"
            )));
        }
        if self.restarts >= MAX_RESTARTS {
            return Err(UploadError::SessionGone {
                reason: format!("{reason}; {MAX_RESTARTS} new sessions were lost the same way in this run"),
            });
        }
        self.restarts += 1;
        tracing::warn!(%reason, "the upload session is gone; starting a new one");
        self.emit(Event::SessionRestarted { reason });
        self.completing_gone = false;
        self.state = None;
        self.hasher = None;
        self.carry.clear();
        self.reconciled = false;
        Ok(())
    }

    /// Plans the parts and creates a new vendor session.
    async fn create_session(&mut self) -> Result<(), Error<P>> {
        let rules = self.protocol.rules();
        let sequential = self.protocol.whole_hashes().without(Hashes::CRC64);
        let total = self.source.len();
        let fingerprint = self.fingerprint().await?;
        // Plan before creating anything, so bad input fails before a byte is sent.
        let mut plan = PartPlan::new(&rules, total, self.options.part_size)?;
        let protocol = self.protocol.clone();
        let part_size = plan.part_size;
        let created = self.call(Operation::Create, || protocol.create(total, part_size)).await?;
        if rules.server_picks_part_size {
            let size = created.part_size.ok_or_else(|| {
                UploadError::Protocol(format!("{} created a session without a part size", rules.vendor))
            })?;
            match PartPlan::new(&rules, total, PartSize::Exact(size)) {
                Ok(p) => plan = p,
                Err(e) => {
                    // Nothing was sent; do not leave an empty session behind.
                    let _ = protocol.abort(&created.session).await;
                    return Err(e.into());
                }
            }
        }
        let hasher = WholeHasher::new(sequential);
        self.state = Some(UploadState {
            format: checkpoint::FORMAT.into(),
            version: checkpoint::VERSION,
            vendor: rules.vendor.into(),
            target: self.protocol.target(),
            session: created.session,
            plan,
            source: fingerprint,
            parts: Vec::new(),
            whole: Some(hasher.state()),
        });
        self.hasher = Some(hasher);
        self.reconciled = true;
        self.emit(Event::SessionCreated { part_size: plan.part_size, parts: plan.part_count(), total_len: total });
        self.save(true, &mut Instant::now())?;
        // A cancel that came while the create was in flight: the session is saved, and nothing
        // more is sent.
        if self.options.cancel.is_cancelled() {
            return Err(UploadError::Cancelled);
        }
        Ok(())
    }

    /// Refuses a state of another vendor or target, or whose session names another object: the
    /// state may come from a database or a file, and is checked before any call (abort included).
    fn check_own(&self, state: &State<P>) -> Result<(), Error<P>> {
        let vendor = self.protocol.rules().vendor;
        let target = self.protocol.target();
        let expected = || format!("{vendor} {target}");
        if state.vendor != vendor || state.target != target {
            return Err(UploadError::StateMismatch {
                expected: expected(),
                found: format!("{} {}", state.vendor, state.target),
            });
        }
        self.protocol
            .check_session(&state.session, &state.plan)
            .map_err(|found| UploadError::StateMismatch { expected: expected(), found })
    }

    /// Checks a resumed state against this vendor, target and source, and reconciles it with what
    /// the server holds. `Some(reason)` when the vendor no longer has the session.
    async fn resume_session(&mut self) -> Result<Option<String>, Error<P>> {
        let rules = self.protocol.rules();
        let sequential = self.protocol.whole_hashes().without(Hashes::CRC64);
        let Some(state) = &self.state else { return Ok(None) };
        if state.format != checkpoint::FORMAT || state.version != checkpoint::VERSION {
            return Err(UploadError::StateCorrupt(format!("format {:?} version {}", state.format, state.version)));
        }
        self.check_own(state)?;
        let plan = state.plan;
        let plan_ok = crate::plan::check_size(&rules, plan.part_size).is_ok()
            && plan.first_part_number == rules.first_part_number
            && plan.max_parts <= rules.max_parts
            && (self.source.len().is_none() || plan.total_len.is_none() || plan.total_len == self.source.len());
        if !plan_ok {
            return Err(UploadError::StateCorrupt(format!(
                "its plan (parts of {} from number {}) does not fit {}'s rules and this source",
                crate::size::ByteSize(plan.part_size),
                plan.first_part_number,
                rules.vendor
            )));
        }
        let saved = state.source.clone();
        let now = self.fingerprint().await?;
        saved.check(&now)?;
        if self.hasher.is_none() {
            let whole = match &state.whole {
                Some(w) => w.clone(),
                None => WholeHasher::new(Hashes::NONE).state(),
            };
            if whole.hashes != sequential {
                return Err(UploadError::StateCorrupt(
                    "the saved whole-file hashes are not the ones this vendor needs".into(),
                ));
            }
            self.hasher = Some(WholeHasher::from_state(&whole).map_err(|e| UploadError::StateCorrupt(e.to_string()))?);
        }
        let protocol = self.protocol.clone();
        let session = state.session.clone();
        let plan = state.plan;
        let listed = match self.call(Operation::ListParts, || protocol.list_parts(&session, &plan)).await {
            Ok(listed) => listed,
            Err(UploadError::Vendor { source, .. }) if self.protocol.is_session_gone(&source.error) => {
                return Ok(Some(source.error.to_string()));
            }
            Err(e) => return Err(e),
        };
        self.reconcile(listed);
        self.reconciled = true;
        Ok(None)
    }

    /// Replaces the state's parts with what the server holds and the plan allows.
    fn reconcile(&mut self, listed: Vec<ServerPart<P::Receipt>>) {
        let Some(state) = &mut self.state else { return };
        let plan = state.plan;
        let mut kept: Vec<DonePart<P::Receipt>> = Vec::new();
        for sp in listed {
            let Some(spec) = plan.index_of(sp.number).and_then(|i| plan.part(i)) else { continue };
            if sp.len != spec.len {
                continue;
            }
            let mut digests = sp.digests;
            if let Some(local) = state.part(spec.index) {
                if conflicts(&local.digests, &digests) {
                    continue;
                }
                fill(&mut digests, &local.digests);
            }
            kept.push(DonePart {
                index: spec.index,
                number: spec.number,
                offset: spec.offset,
                len: spec.len,
                digests,
                receipt: sp.receipt,
            });
        }
        kept.sort_by_key(|p| p.index);
        kept.dedup_by_key(|p| p.index);
        let missing = state.parts.iter().filter(|p| kept.binary_search_by_key(&p.index, |k| k.index).is_err()).count();
        state.parts = kept;
        let event = Event::Resumed {
            parts_on_server: state.parts_done(),
            bytes_on_server: state.bytes_done(),
            parts_missing: missing as u32,
        };
        self.emit(event);
    }

    async fn drive(&mut self, deadline: Option<Instant>) -> Result<Step<P::Output>, Error<P>> {
        loop {
            if let Some(step) = self.drive_once(deadline).await? {
                return Ok(step);
            }
        }
    }

    /// One pass of [`Self::drive`]; `None` when a session found gone at completion was replaced
    /// by a new one and the pass must begin again.
    async fn drive_once(&mut self, deadline: Option<Instant>) -> Result<Option<Step<P::Output>>, Error<P>> {
        if self.options.cancel.is_cancelled() {
            return Err(UploadError::Cancelled);
        }
        self.deadline = deadline;
        // Whether the step's deadline, not the retry policy's own limit, bounds the waits.
        let deadline_bounds =
            deadline.is_some_and(|d| d.saturating_duration_since(Instant::now()) < self.options.retry.max_elapsed);
        // Asking the server what it holds can be cut at the deadline (nothing is made); creating a
        // session is not, since a session made by a cut request would be lost to the state
        // (Graph then refuses another for the same name until it expires).
        let prepared = match deadline {
            Some(d) if self.state.is_some() && !self.reconciled => {
                match tokio::time::timeout_at(d, self.prepare()).await {
                    Ok(p) => p,
                    Err(_) => {
                        self.deadline = None;
                        let (parts_done, bytes_done) =
                            self.state.as_ref().map(|s| (s.parts_done(), s.bytes_done())).unwrap_or_default();
                        self.emit(Event::StepPaused { parts_done, bytes_done });
                        return Ok(Some(Step::Pending { parts_done, bytes_done }));
                    }
                }
            }
            _ => self.prepare().await,
        };
        self.deadline = None;
        match prepared {
            // Creating or reconciling the session met a wait (Retry-After, backoff) that would
            // end after the step's deadline: pause; the next step asks again.
            Err(UploadError::Vendor { source, .. })
                if deadline_bounds && matches!(source.reason, crate::retry::GiveUp::Time) =>
            {
                let (parts_done, bytes_done) =
                    self.state.as_ref().map(|s| (s.parts_done(), s.bytes_done())).unwrap_or_default();
                self.emit(Event::StepPaused { parts_done, bytes_done });
                return Ok(Some(Step::Pending { parts_done, bytes_done }));
            }
            other => other?,
        }
        let mut last_save = Instant::now();
        let outcome = self.send_parts(deadline, &mut last_save).await;
        // Whatever happened, the state on disk is the newest one.
        let saved = self.save(true, &mut last_save);
        let finished = match outcome {
            // The session ended during the run (expired, aborted elsewhere): as on resume, start
            // over when the caller allows it, in this run.
            Err(UploadError::Vendor { operation: Operation::UploadPart, source, .. })
                if self.protocol.is_session_gone(&source.error) =>
            {
                saved?;
                self.start_over(format!("{} (during the upload)", source.error))?;
                return Ok(None);
            }
            other => other?,
        };
        saved?;
        if !finished {
            let (parts_done, bytes_done) =
                self.state.as_ref().map(|s| (s.parts_done(), s.bytes_done())).unwrap_or_default();
            self.emit(Event::StepPaused { parts_done, bytes_done });
            return Ok(Some(Step::Pending { parts_done, bytes_done }));
        }
        let Some(deadline) = deadline else { return self.complete_or_restart().await.map(|d| d.map(Step::Done)) };
        // Completing may wait on the vendor (Box answers 202 while it processes the parts): a
        // step that reaches its deadline stops there, and the next step completes again (every
        // vendor's completion is safe to repeat: a repeat finds the object it made).
        let (parts_done, bytes_done) =
            self.state.as_ref().map(|s| (s.parts_done(), s.bytes_done())).unwrap_or_default();
        match tokio::time::timeout_at(deadline, self.complete_or_restart()).await {
            Ok(done) => done.map(|d| d.map(Step::Done)),
            Err(_) => {
                self.emit(Event::StepPaused { parts_done, bytes_done });
                Ok(Some(Step::Pending { parts_done, bytes_done }))
            }
        }
    }

    /// Sends every part not yet stored. `Ok(true)` when all are stored and the whole-file digests
    /// are complete, `Ok(false)` when the deadline stopped it first.
    async fn send_parts(&mut self, deadline: Option<Instant>, last_save: &mut Instant) -> Result<bool, Error<P>> {
        let rules: PartRules = self.protocol.rules();
        let part_hashes = self.protocol.part_hashes();
        let crc_needed = self.protocol.whole_hashes().contains(Hashes::CRC64);
        let concurrency = if rules.sequential { 1 } else { self.options.concurrency.max(1) };
        self.counters.keep.store(concurrency as u64, Ordering::Relaxed);
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut tasks: JoinSet<TaskOutput<P::Receipt, P::Error>> = JoinSet::new();
        let mut failure: Option<Error<P>> = None;
        // The deadline stopped the reading stage (`stopped`), or cut parts in flight (`cut`).
        let mut stopped = false;
        let cancel = self.options.cancel.clone();
        let is_stream = matches!(self.source, Source::Stream(_));

        let (session, fingerprint) = match &self.state {
            Some(s) => (Arc::new(s.session.clone()), s.source.clone()),
            None => return Err(UploadError::Protocol("no session".into())),
        };

        let mut index = 0u32;
        loop {
            while let Some(done) = tasks.try_join_next() {
                self.finish_task(done, &mut failure, last_save);
            }
            if failure.is_some() {
                break;
            }
            if cancel.is_cancelled() {
                failure = Some(UploadError::Cancelled);
                break;
            }
            let Some(state) = &self.state else { break };
            let plan = state.plan;
            let Some(mut spec) = plan.part(index) else {
                if plan.total_len.is_none() {
                    // A stream of unknown length reached the vendor's part limit: it must end here.
                    if let Err(e) = self.end_of_stream_at_limit(&rules).await {
                        failure = Some(e);
                    }
                }
                break;
            };
            if let Source::Stream(s) = &self.source
                && plan.total_len.is_none()
                && s.position() < spec.offset
            {
                break; // The stream ended with the previous part.
            }
            let done = state.part(spec.index);
            let hasher_at = self.hasher.as_ref().map(|h| if h.hashes().is_empty() { u64::MAX } else { h.len() });
            if hasher_at.is_some_and(|at| at < spec.offset) {
                // Never happens while parts are walked in order; refuse rather than finish with a
                // whole-file digest that skipped bytes.
                failure = Some(UploadError::StateCorrupt("the whole-file hash state is behind the source".into()));
                break;
            }
            let needs_hash = hasher_at == Some(spec.offset);
            let needs_crc = crc_needed && done.is_some_and(|d| d.digests.crc64.is_none());
            // A stream must be read through a stored part to reach the next one, unless an
            // earlier run in this process has read past it already.
            // When every part is stored (completing a session found gone), nothing later needs
            // the stream.
            let must_advance =
                !state.all_parts_done() && matches!(&self.source, Source::Stream(s) if s.position() <= spec.offset);
            if done.is_some() && !needs_hash && !needs_crc && !must_advance {
                index += 1;
                continue;
            }
            if let Some(deadline) = deadline {
                // Start a part only if it should finish in time; hashing stored parts stops at
                // the deadline too (the hash state carries over).
                let estimate = if done.is_none() { self.part_time.unwrap_or_default() } else { Duration::ZERO };
                if Instant::now() + estimate >= deadline {
                    stopped = true;
                    break;
                }
            }
            // Wait for a free slot, storing finished parts meanwhile. A sequential protocol reads
            // (and hashes) its next part while the one in flight is sent, so the server is never
            // idle for the read: it holds two parts instead of one.
            let read_ahead = rules.sequential;
            let mut permit: Option<OwnedSemaphorePermit> = None;
            if !read_ahead {
                match self.free_slot(&slots, &mut tasks, deadline, &cancel, &mut failure, last_save).await {
                    Slot::Free(p) => permit = Some(p),
                    Slot::Stopped => {
                        stopped = true;
                        break;
                    }
                    Slot::Failed => break,
                }
            }

            // Read in this stage when the bytes must pass through it in order.
            let in_order = needs_hash || needs_crc || is_stream || self.carry.contains_key(&spec.index);
            let body = match &self.source {
                Source::ReadAt(r) if !in_order => TaskBody::Read(r.clone(), fingerprint.clone()),
                _ => match self.read_and_hash(&mut spec, index, needs_hash, needs_crc, &fingerprint).await {
                    Ok(Some(buffer)) => TaskBody::Ready(buffer),
                    Ok(None) => {
                        // Stored already, or the stream ended: nothing to send.
                        drop(permit);
                        if self.state.as_ref().is_some_and(|s| s.plan.total_len.is_some_and(|t| t <= spec.offset)) {
                            break;
                        }
                        index += 1;
                        continue;
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                },
            };
            if let (true, TaskBody::Ready(b)) = (is_stream, &body) {
                // A stream cannot be read twice: keep the bytes until the part is stored.
                self.carry.insert(spec.index, b.bytes.clone());
            }
            let permit = match permit {
                Some(p) => p,
                None => match self.free_slot(&slots, &mut tasks, deadline, &cancel, &mut failure, last_save).await {
                    Slot::Free(p) => p,
                    Slot::Stopped => {
                        stopped = true;
                        break;
                    }
                    Slot::Failed => break,
                },
            };
            // Read ahead, the part waited for the one before it: start it only if it should still
            // finish in time (its bytes stay in `carry` for a stream; the hash state carries over).
            if let Some(deadline) = deadline
                && read_ahead
                && Instant::now() + self.part_time.unwrap_or_default() >= deadline
            {
                drop(permit);
                stopped = true;
                break;
            }
            let total_len = self.state.as_ref().and_then(|s| s.plan.total_len);
            let job = PartJob {
                protocol: self.protocol.clone(),
                session: session.clone(),
                plan: self.state.as_ref().map(|s| s.plan).unwrap_or(plan),
                spec,
                total_len,
                is_last: total_len.is_some_and(|t| spec.end() == t),
                hashes: part_hashes,
                retry: self.options.retry.clone(),
                timeout: self.options.part_timeout,
                observer: self.options.observer.clone(),
                counters: self.counters.clone(),
            };
            tasks.spawn(part_task(job, body, permit));
            index += 1;
        }

        // Drain what is in flight; a failure, a cancellation or the deadline drops it instead
        // (the server is asked about dropped parts next time).
        let mut cut = false;
        while !tasks.is_empty() {
            if failure.is_some() || cut {
                tasks.abort_all();
                while let Some(j) = tasks.join_next().await {
                    self.finish_task(j, &mut failure, last_save);
                }
                break;
            }
            match next_finished(&mut tasks, deadline, &cancel).await {
                Wait::Joined(Some(j)) => self.finish_task(j, &mut failure, last_save),
                Wait::Joined(None) => break,
                Wait::Deadline => cut = true,
                Wait::Cancelled => failure = Some(UploadError::Cancelled),
            }
        }
        if let Some(e) = failure {
            self.reconciled = false;
            return Err(e);
        }
        if stopped || cut {
            // Parts dropped in flight may or may not be stored: ask the server next time.
            self.reconciled = false;
            return Ok(false);
        }
        Ok(self.state.as_ref().is_some_and(|s| s.all_parts_done()))
    }

    /// Waits for a free slot among the parts in flight, storing the ones that finish meanwhile.
    async fn free_slot(
        &mut self,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<TaskOutput<P::Receipt, P::Error>>,
        deadline: Option<Instant>,
        cancel: &CancellationToken,
        failure: &mut Option<Error<P>>,
        last_save: &mut Instant,
    ) -> Slot {
        loop {
            if let Ok(p) = slots.clone().try_acquire_owned() {
                return Slot::Free(p);
            }
            match next_finished(tasks, deadline, cancel).await {
                Wait::Joined(Some(j)) => {
                    self.finish_task(j, failure, last_save);
                    if failure.is_some() {
                        return Slot::Failed;
                    }
                }
                Wait::Joined(None) => {}
                Wait::Deadline => return Slot::Stopped,
                Wait::Cancelled => {
                    *failure = Some(UploadError::Cancelled);
                    return Slot::Failed;
                }
            }
        }
    }

    /// Reads a part in order, updates the whole-file hashes, and checks a part the server already
    /// stores against the bytes. `None` when there is nothing to send.
    async fn read_and_hash(
        &mut self,
        spec: &mut PartSpec,
        index: u32,
        needs_hash: bool,
        needs_crc: bool,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Buffer>, Error<P>> {
        let bytes = self.read_in_order(spec, fingerprint).await?;
        if let (Source::Stream(_), Some(state)) = (&self.source, &mut self.state)
            && state.plan.total_len.is_none()
            && (bytes.len() as u64) < spec.len
        {
            // The stream ended inside this part: the length is known now.
            let total = spec.offset + bytes.len() as u64;
            state.plan = state.plan.with_total_len(total);
            if bytes.is_empty() && index > 0 {
                return Ok(None);
            }
            spec.len = bytes.len() as u64;
        }
        let buffer = Buffer::new(bytes, &self.counters);
        if needs_hash && let Some(hasher) = &self.hasher {
            // The hasher is cloned (a few hundred bytes), so a failure leaves it as it was.
            let mut hasher = hasher.clone();
            let bytes = buffer.bytes.clone();
            let hasher = blocking(move || {
                hasher.update(&bytes);
                hasher
            })
            .await?;
            if let Some(state) = &mut self.state {
                state.whole = Some(hasher.state());
            }
            self.hasher = Some(hasher);
        }
        let Some(done) = self.state.as_ref().and_then(|s| s.part(spec.index)) else {
            return Ok(Some(buffer));
        };
        // Stored already: the bytes were only needed for the whole-file digests. Check them
        // against what the server reports, and fill in a missing CRC.
        let known = done.digests.clone();
        let kinds = digest_kinds(&known) | if needs_crc { Hashes::CRC64 } else { Hashes::NONE };
        let bytes = buffer.bytes.clone();
        let local = blocking(move || Digests::compute(kinds, &bytes)).await?;
        if conflicts(&known, &local) {
            return Err(UploadError::SourceChanged(SourceChanged(format!(
                "part {} differs from the bytes the server stores for it",
                spec.number
            ))));
        }
        if let Some(state) = &mut self.state
            && let Ok(i) = state.parts.binary_search_by_key(&spec.index, |p| p.index)
        {
            fill(&mut state.parts[i].digests, &local);
        }
        self.carry.remove(&spec.index);
        Ok(None)
    }

    /// A stream of unknown length filled the vendor's last part: it must be at its end.
    async fn end_of_stream_at_limit(&mut self, rules: &PartRules) -> Result<(), Error<P>> {
        let (Source::Stream(s), Some(state)) = (&mut self.source, &mut self.state) else { return Ok(()) };
        let position = s.position();
        if s.read_part(1).await.map_err(UploadError::read)?.is_empty() {
            state.plan = state.plan.with_total_len(position);
            return Ok(());
        }
        Err(UploadError::Plan(PlanError::SourceTooLarge {
            vendor: rules.vendor,
            len: position + 1,
            max: state.plan.part_size.saturating_mul(u64::from(state.plan.max_parts)),
        }))
    }

    /// Reads the next part in order (from the carry, the stream, or the file).
    async fn read_in_order(&mut self, spec: &PartSpec, fingerprint: &Fingerprint) -> Result<Bytes, Error<P>> {
        if let Some(bytes) = self.carry.remove(&spec.index) {
            return Ok(bytes);
        }
        match &mut self.source {
            Source::Stream(s) => {
                if s.position() > spec.offset {
                    return Err(UploadError::StateCorrupt(format!(
                        "part {} was read from the stream already and its bytes are gone; restart the stream from byte 0",
                        spec.number
                    )));
                }
                let len =
                    usize::try_from(spec.len).map_err(|_| UploadError::Read(io::ErrorKind::OutOfMemory.into()))?;
                s.read_part(len).await.map_err(UploadError::read)
            }
            Source::ReadAt(r) => {
                let read = read_at(r.clone(), *spec, fingerprint.clone(), self.counters.clone(), Hashes::NONE).await;
                read.map(|(bytes, _)| bytes).map_err(UploadError::read)
            }
        }
    }

    fn finish_task(
        &mut self,
        joined: Result<TaskOutput<P::Receipt, P::Error>, tokio::task::JoinError>,
        failure: &mut Option<Error<P>>,
        last_save: &mut Instant,
    ) {
        let out = match joined {
            Ok(out) => out,
            Err(e) if e.is_cancelled() => return,
            Err(e) => {
                failure.get_or_insert(UploadError::Protocol(format!("a part task failed: {e}")));
                return;
            }
        };
        match out.result {
            Ok(part) => {
                self.carry.remove(&out.index);
                if out.found_on_server {
                    self.parts_skipped += 1;
                    self.emit(Event::PartFoundOnServer { number: part.number });
                } else {
                    self.parts_uploaded += 1;
                }
                self.part_time = Some(match self.part_time {
                    Some(t) => (t * 3 + out.elapsed) / 4,
                    None => out.elapsed,
                });
                let (number, len) = (part.number, part.len);
                if let Some(state) = &mut self.state {
                    state.insert(part);
                    let event = Event::PartDone {
                        number,
                        len,
                        elapsed: out.elapsed,
                        parts_done: state.parts_done(),
                        bytes_done: state.bytes_done(),
                    };
                    self.emit(event);
                }
                if !out.found_on_server {
                    self.warn_if_session_expires_first();
                }
                if let Err(e) = self.save(false, last_save) {
                    failure.get_or_insert(e);
                }
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }

    /// Sends [`Event::SessionMayExpire`] (once) when the pace of this run's parts would finish
    /// the upload after the vendor ends its session.
    fn warn_if_session_expires_first(&mut self) {
        let (Some(state), Some(part_time)) = (&self.state, self.part_time) else { return };
        if self.expiry_warned {
            return;
        }
        let Some(ends) = self.protocol.session_expires(&state.session) else { return };
        let remaining = ends.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        let Some(total) = state.plan.total_len else { return };
        let rules = self.protocol.rules();
        let in_flight = if rules.sequential { 1 } else { self.options.concurrency.max(1) } as f64;
        let parts_left = total.saturating_sub(state.bytes_done()) as f64 / state.plan.part_size.max(1) as f64;
        let estimated = Duration::try_from_secs_f64(parts_left.ceil() * part_time.as_secs_f64() / in_flight)
            .unwrap_or(Duration::MAX);
        if estimated > remaining {
            self.expiry_warned = true;
            tracing::warn!(?remaining, ?estimated, "at this pace the upload would outlast its session");
            self.emit(Event::SessionMayExpire { remaining, estimated });
        }
    }

    /// Completes; when the completion tried for a session found gone after every part was
    /// stored finds nothing either, forgets the state so that the next pass starts over (`None`).
    async fn complete_or_restart(&mut self) -> Result<Option<Completed<P::Output>>, Error<P>> {
        match self.complete().await {
            // Completing a session found gone found no object of this upload either (the vendor
            // says the session is gone, or what is there is not these bytes): start over.
            Err(UploadError::Vendor { source, .. })
                if self.completing_gone
                    && (self.protocol.is_session_gone(&source.error) || !source.error.is_retryable()) =>
            {
                self.start_over(source.error.to_string())?;
                Ok(None)
            }
            // The session ended during the run, before completing it, and the vendor's
            // completion found no object of this upload: start over, as on resume.
            Err(UploadError::Vendor { source, .. }) if self.protocol.is_session_gone(&source.error) => {
                self.start_over(format!("{} (while completing)", source.error))?;
                Ok(None)
            }
            Err(UploadError::Integrity(e)) if self.completing_gone => {
                self.start_over(e.to_string())?;
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    async fn complete(&mut self) -> Result<Completed<P::Output>, Error<P>> {
        let Some(state) = &self.state else {
            return Err(UploadError::Protocol("no session".into()));
        };
        if let Source::ReadAt(r) = &self.source {
            let r = r.clone();
            let now = blocking(move || r.quick_fingerprint()).await?.map_err(UploadError::read)?;
            state.source.check(&now)?;
        }
        let total_len = state.plan.total_len.unwrap_or_else(|| state.bytes_done());
        if let Some(h) = &self.hasher
            && !h.hashes().is_empty()
            && h.len() != total_len
        {
            return Err(UploadError::StateCorrupt(format!(
                "the whole-file digests cover {} of {total_len} bytes",
                h.len()
            )));
        }
        let mut digests = self.hasher.as_ref().map(WholeHasher::finish).unwrap_or_default();
        if self.protocol.whole_hashes().contains(Hashes::CRC64) {
            digests.crc64 = state.combined_crc64();
        }
        self.emit(Event::Completing { parts: state.parts_done() });
        let protocol = self.protocol.clone();
        let session = state.session.clone();
        let parts = state.parts.clone();
        let output =
            self.call(Operation::Complete, || protocol.complete(&session, &parts, &digests, total_len)).await?;
        let server_modified = self.protocol.server_modified(&output, &digests, total_len);
        match &server_modified {
            None => self.protocol.verify(&output, &digests)?,
            Some(modified) => {
                tracing::warn!(%modified, "the vendor changed the object after receiving it");
                self.emit(Event::ServerModified(modified.clone()));
            }
        }
        // The object exists: whatever is reported now, nothing is left to resume.
        if let Some(path) = &self.options.checkpoint {
            checkpoint::remove(path)?;
        }
        if let Some(modified) = server_modified.clone().filter(|_| !self.options.accept_server_modified) {
            return Err(UploadError::ServerModified(modified));
        }
        self.emit(Event::Completed { total_len });
        Ok(Completed { output, digests, report: self.report(), server_modified: server_modified.map(Box::new) })
    }
}

/// What waiting for a slot ended with.
enum Slot {
    /// A slot for the next part.
    Free(OwnedSemaphorePermit),
    /// The deadline came first.
    Stopped,
    /// A part failed, or the upload was cancelled (`failure` says which).
    Failed,
}

/// What ended a wait for a part task.
enum Wait<T> {
    Joined(Option<Result<T, tokio::task::JoinError>>),
    Deadline,
    Cancelled,
}

/// Waits for the next part task to finish, the deadline, or cancellation.
async fn next_finished<T: 'static>(
    tasks: &mut JoinSet<T>,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Wait<T> {
    let deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        joined = tasks.join_next() => Wait::Joined(joined),
        () = deadline => Wait::Deadline,
        () = cancel.cancelled() => Wait::Cancelled,
    }
}

/// Runs CPU work (hashing, positional reads) on the blocking pool.
async fn blocking<T: Send + 'static, E: std::error::Error + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, UploadError<E>> {
    tokio::task::spawn_blocking(f).await.map_err(|e| UploadError::Read(io::Error::other(e)))
}

/// The hash kinds present in a digest set.
fn digest_kinds(d: &Digests) -> Hashes {
    let mut h = Hashes::NONE;
    if d.sha1.is_some() {
        h = h | Hashes::SHA1;
    }
    if d.md5.is_some() {
        h = h | Hashes::MD5;
    }
    if d.crc64.is_some() {
        h = h | Hashes::CRC64;
    }
    if d.quickxor.is_some() {
        h = h | Hashes::QUICKXOR;
    }
    h
}

/// Whether two digest sets disagree on a hash both have.
fn conflicts(a: &Digests, b: &Digests) -> bool {
    fn differ<T: PartialEq>(x: &Option<T>, y: &Option<T>) -> bool {
        matches!((x, y), (Some(x), Some(y)) if x != y)
    }
    differ(&a.sha1, &b.sha1) || differ(&a.md5, &b.md5) || differ(&a.crc64, &b.crc64) || differ(&a.quickxor, &b.quickxor)
}

/// Fills the hashes `into` lacks from `from`.
fn fill(into: &mut Digests, from: &Digests) {
    into.sha1 = into.sha1.or(from.sha1);
    into.md5 = into.md5.or(from.md5);
    into.crc64 = into.crc64.or(from.crc64);
    into.quickxor = into.quickxor.or(from.quickxor);
}

/// Reads a part into a recycled buffer, checks that the file is unchanged, and computes the
/// part's digests (`hashes`) while the bytes are in cache.
async fn read_at(
    source: Arc<dyn ReadAt>,
    spec: PartSpec,
    fingerprint: Fingerprint,
    counters: Arc<Counters>,
    hashes: Hashes,
) -> io::Result<(Bytes, Digests)> {
    tokio::task::spawn_blocking(move || {
        let len = usize::try_from(spec.len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut buf = counters.take_buffer(len);
        source.read_into(spec.offset, &mut buf)?;
        // The file must still be the one the upload started with after this read.
        fingerprint.check(&source.quick_fingerprint()?).map_err(|c| io::Error::new(io::ErrorKind::InvalidData, c))?;
        let digests = if hashes.is_empty() { Digests::default() } else { Digests::compute(hashes, &buf) };
        Ok((buf.freeze(), digests))
    })
    .await
    .map_err(io::Error::other)?
}

struct PartJob<P: Protocol> {
    protocol: Arc<P>,
    session: Arc<P::Session>,
    plan: PartPlan,
    spec: PartSpec,
    total_len: Option<u64>,
    is_last: bool,
    hashes: Hashes,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    observer: Option<Observer>,
    counters: Arc<Counters>,
}

/// Reads (if needed), hashes and sends one part with retries. Holds its slot until done.
async fn part_task<P: Protocol>(
    job: PartJob<P>,
    body: TaskBody,
    permit: OwnedSemaphorePermit,
) -> TaskOutput<P::Receipt, P::Error> {
    let started = Instant::now();
    let index = job.spec.index;
    let (buffer, digests) = match body {
        TaskBody::Ready(b) => (b, None),
        TaskBody::Read(source, fingerprint) => {
            // Read and hash in one blocking call, while the bytes are in cache.
            match read_at(source, job.spec, fingerprint, job.counters.clone(), job.hashes).await {
                Ok((bytes, digests)) => (Buffer::new(bytes, &job.counters), Some(digests)),
                Err(e) => {
                    let result = Err(UploadError::read(e));
                    return TaskOutput { index, result, found_on_server: false, elapsed: started.elapsed() };
                }
            }
        }
    };
    let result = send_part(&job, buffer.bytes.clone(), digests).await;
    // The buffer goes before the slot, so at most `concurrency` buffers ever exist.
    drop(buffer);
    drop(permit);
    let (result, found_on_server) = match result {
        Ok((part, found)) => (Ok(part), found),
        Err(e) => (Err(e), false),
    };
    TaskOutput { index, result, found_on_server, elapsed: started.elapsed() }
}

async fn send_part<P: Protocol>(
    job: &PartJob<P>,
    body: Bytes,
    digests: Option<Digests>,
) -> Result<(DonePart<P::Receipt>, bool), UploadError<P::Error>> {
    let (protocol, session, spec, counters, timeout) =
        (&*job.protocol, &*job.session, job.spec, &job.counters, job.timeout);
    let emit = |e: Event| {
        if let Some(o) = &job.observer {
            o(&e);
        }
    };
    let hashes = job.hashes;
    let digests = if let Some(d) = digests {
        d
    } else if hashes.is_empty() {
        Digests::default()
    } else {
        let bytes = body.clone();
        blocking(move || Digests::compute(hashes, &bytes)).await?
    };
    let done = |receipt, digests| DonePart {
        index: spec.index,
        number: spec.number,
        offset: spec.offset,
        len: spec.len,
        digests,
        receipt,
    };
    let mut backoff = Backoff::new(job.retry.clone());
    loop {
        let attempt = backoff.attempt();
        emit(Event::PartStarted { number: spec.number, len: spec.len, attempt });
        counters.part_requests.fetch_add(1, Ordering::Relaxed);
        counters.bytes_sent.fetch_add(spec.len, Ordering::Relaxed);
        if attempt > 1 {
            counters.bytes_resent.fetch_add(spec.len, Ordering::Relaxed);
        }
        let request = PartUpload {
            spec,
            total_len: job.total_len,
            is_last: job.is_last,
            body: body.clone(),
            digests: digests.clone(),
        };
        let call = protocol.upload_part(session, request);
        let outcome = match timeout {
            Some(t) => tokio::time::timeout(t, call).await.ok(),
            None => Some(call.await),
        };
        let (retryable, retry_after, maybe_stored, message, error) = match outcome {
            Some(Ok(receipt)) => return Ok((done(receipt, digests), false)),
            Some(Err(e)) => (e.is_retryable(), e.retry_after(), e.may_have_taken_effect(), e.to_string(), Some(e)),
            None => (true, None, true, format!("no answer within {:?}", timeout.unwrap_or_default()), None),
        };
        if maybe_stored {
            // The server may hold the part although the call failed: ask before sending again.
            let find = protocol.find_part(session, &job.plan, spec.number);
            let found = match timeout {
                Some(t) => tokio::time::timeout(t, find).await.ok(),
                None => Some(find.await),
            };
            if let Some(Ok(Some(found))) = found
                && found.len == spec.len
                && !conflicts(&found.digests, &digests)
            {
                let mut d = digests.clone();
                fill(&mut d, &found.digests);
                return Ok((done(found.receipt, d), true));
            }
        }
        match backoff.next_delay(retryable, retry_after) {
            Ok(delay) => {
                counters.part_retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(part = spec.number, attempt, ?delay, error = %message, "retrying part");
                emit(Event::PartRetrying { number: spec.number, attempt, delay, error: message });
                tokio::time::sleep(delay).await;
            }
            Err(reason) => {
                return Err(match error {
                    Some(error) => UploadError::Vendor {
                        operation: Operation::UploadPart,
                        part: Some(spec.number),
                        source: Retried { error, attempts: backoff.attempts(), elapsed: backoff.elapsed(), reason },
                    },
                    None => UploadError::PartTimeout {
                        number: spec.number,
                        timeout: timeout.unwrap_or_default(),
                        attempts: backoff.attempts(),
                    },
                });
            }
        }
    }
}
