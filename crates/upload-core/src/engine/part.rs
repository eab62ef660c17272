//! One part's task: its attempts, each within the part timeout, with a look at the server
//! before the same bytes are sent again.

use super::*;

pub(super) struct PartJob<P: Protocol> {
    pub(super) protocol: Arc<P>,
    pub(super) session: Arc<P::Session>,
    pub(super) plan: PartPlan,
    pub(super) spec: PartSpec,
    pub(super) total_len: Option<u64>,
    pub(super) is_last: bool,
    pub(super) hashes: Hashes,
    pub(super) retry: RetryPolicy,
    pub(super) timeout: Option<Duration>,
    pub(super) observer: Option<Observer>,
    pub(super) counters: Arc<Counters>,
}

/// Reads (if needed), hashes and sends one part with retries. Holds its slot until done.
pub(super) async fn part_task<P: Protocol>(
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

pub(super) async fn send_part<P: Protocol>(
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
