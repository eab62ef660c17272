//! The driver: reading in order, sending in parallel within the memory bound, saving the state
//! as parts finish, and completing.

use super::*;

impl<P: Protocol> Upload<P> {
    pub(super) async fn drive(&mut self, deadline: Option<Instant>) -> Result<Step<P::Output>, Error<P>> {
        loop {
            if let Some(step) = self.drive_once(deadline).await? {
                return Ok(step);
            }
        }
    }

    /// One pass of [`Self::drive`]; `None` when a session found gone at completion was replaced
    /// by a new one and the pass must begin again.
    pub(super) async fn drive_once(&mut self, deadline: Option<Instant>) -> Result<Option<Step<P::Output>>, Error<P>> {
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
    pub(super) async fn send_parts(
        &mut self,
        deadline: Option<Instant>,
        last_save: &mut Instant,
    ) -> Result<bool, Error<P>> {
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
    pub(super) async fn free_slot(
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
    pub(super) async fn read_and_hash(
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
    pub(super) async fn end_of_stream_at_limit(&mut self, rules: &PartRules) -> Result<(), Error<P>> {
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
    pub(super) async fn read_in_order(
        &mut self,
        spec: &PartSpec,
        fingerprint: &Fingerprint,
    ) -> Result<Bytes, Error<P>> {
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

    pub(super) fn finish_task(
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
    pub(super) fn warn_if_session_expires_first(&mut self) {
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
    pub(super) async fn complete_or_restart(&mut self) -> Result<Option<Completed<P::Output>>, Error<P>> {
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

    pub(super) async fn complete(&mut self) -> Result<Completed<P::Output>, Error<P>> {
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
pub(super) enum Slot {
    /// A slot for the next part.
    Free(OwnedSemaphorePermit),
    /// The deadline came first.
    Stopped,
    /// A part failed, or the upload was cancelled (`failure` says which).
    Failed,
}

/// What ended a wait for a part task.
pub(super) enum Wait<T> {
    Joined(Option<Result<T, tokio::task::JoinError>>),
    Deadline,
    Cancelled,
}

/// Waits for the next part task to finish, the deadline, or cancellation.
pub(super) async fn next_finished<T: 'static>(
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
pub(super) async fn blocking<T: Send + 'static, E: std::error::Error + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, UploadError<E>> {
    tokio::task::spawn_blocking(f).await.map_err(|e| UploadError::Read(io::Error::other(e)))
}

/// The hash kinds present in a digest set.
pub(super) fn digest_kinds(d: &Digests) -> Hashes {
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
pub(super) fn conflicts(a: &Digests, b: &Digests) -> bool {
    fn differ<T: PartialEq>(x: &Option<T>, y: &Option<T>) -> bool {
        matches!((x, y), (Some(x), Some(y)) if x != y)
    }
    differ(&a.sha1, &b.sha1) || differ(&a.md5, &b.md5) || differ(&a.crc64, &b.crc64) || differ(&a.quickxor, &b.quickxor)
}

/// Fills the hashes `into` lacks from `from`.
pub(super) fn fill(into: &mut Digests, from: &Digests) {
    into.sha1 = into.sha1.or(from.sha1);
    into.md5 = into.md5.or(from.md5);
    into.crc64 = into.crc64.or(from.crc64);
    into.quickxor = into.quickxor.or(from.quickxor);
}

/// Reads a part into a recycled buffer, checks that the file is unchanged, and computes the
/// part's digests (`hashes`) while the bytes are in cache.
pub(super) async fn read_at(
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
