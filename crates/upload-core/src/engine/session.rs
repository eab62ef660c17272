//! The session of an upload: planning and creating it, resuming it (the state must be this
//! upload's own, and the server is the truth), and starting over when it is gone.

use super::*;

impl<P: Protocol> Upload<P> {
    /// Creates the session, or checks and reconciles a resumed one. A resumed session the vendor
    /// no longer has (completed after a crash, expired, aborted elsewhere) is replaced by a new
    /// one: the server is the truth, and a checkpoint must never become a dead end.
    pub(super) async fn prepare(&mut self) -> Result<(), Error<P>> {
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
    pub(super) fn start_over(&mut self, reason: String) -> Result<(), Error<P>> {
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
    pub(super) async fn create_session(&mut self) -> Result<(), Error<P>> {
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
    pub(super) fn check_own(&self, state: &State<P>) -> Result<(), Error<P>> {
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
    pub(super) async fn resume_session(&mut self) -> Result<Option<String>, Error<P>> {
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
    pub(super) fn reconcile(&mut self, listed: Vec<ServerPart<P::Receipt>>) {
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
}
