//! A small file sent whole in one request (OSS and QingStor PutObject, Box's plain upload), held
//! to the rules the engine holds a part to: each attempt within [`UploadOptions::part_timeout`]
//! (a stalled server is given up on, not waited for), retried by [`UploadOptions::retry`], and
//! stopped at once by [`UploadOptions::cancel`], waits included.

use std::future::Future;
use std::time::Duration;

use crate::engine::{Operation, UploadError, UploadOptions};
use crate::retry::{Backoff, Classify, Retried};

/// Whether a request that may have taken effect (its body sent, its answer lost) is sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Repeat {
    /// Sending it again gives the same result (a PutObject replaces the object with the same
    /// bytes): every retryable failure is retried, timeouts included.
    Idempotent,
    /// Sending it again could do it twice (a new file that then exists, a second version): only
    /// failures that cannot have taken effect are retried, and a timeout is not.
    OnlyIfNotSent,
}

/// Sends one request with `op` (called once per attempt) until it succeeds, fails in a way that
/// is not retried, the retry policy is spent, or the upload is cancelled.
///
/// A failure ends as [`UploadError::Vendor`] with [`Operation::SingleRequest`]; attempts that all
/// stalled end as [`UploadError::PartTimeout`] for part 1; a cancel as [`UploadError::Cancelled`].
pub async fn send_whole<T, E, F, Fut>(options: &UploadOptions, repeat: Repeat, mut op: F) -> Result<T, UploadError<E>>
where
    E: std::error::Error + Classify + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(options.retry.clone());
    loop {
        if options.cancel.is_cancelled() {
            return Err(UploadError::Cancelled);
        }
        backoff.attempt();
        let attempt = op();
        let outcome = tokio::select! {
            biased;
            _ = options.cancel.cancelled() => return Err(UploadError::Cancelled),
            outcome = within(options.part_timeout, attempt) => outcome,
        };
        let delay = match outcome {
            Some(Ok(value)) => return Ok(value),
            Some(Err(error)) => {
                let again = error.is_retryable() && (repeat == Repeat::Idempotent || !error.may_have_taken_effect());
                match backoff.next_delay(again, error.retry_after()) {
                    Ok(delay) => delay,
                    Err(reason) => {
                        let (attempts, elapsed) = (backoff.attempts(), backoff.elapsed());
                        let source = Retried { error, attempts, elapsed, reason };
                        return Err(UploadError::Vendor { operation: Operation::SingleRequest, part: None, source });
                    }
                }
            }
            None => match backoff.next_delay(repeat == Repeat::Idempotent, None) {
                Ok(delay) => delay,
                Err(_) => {
                    return Err(UploadError::PartTimeout {
                        number: 1,
                        timeout: options.part_timeout.unwrap_or_default(),
                        attempts: backoff.attempts(),
                    });
                }
            },
        };
        tokio::select! {
            biased;
            _ = options.cancel.cancelled() => return Err(UploadError::Cancelled),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// `f`'s output, or `None` when it takes longer than `limit`.
async fn within<T>(limit: Option<Duration>, f: impl Future<Output = T>) -> Option<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, f).await.ok(),
        None => Some(f.await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryPolicy;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, thiserror::Error)]
    #[error("HTTP {0}")]
    struct Status(u16);

    impl Classify for Status {
        fn is_retryable(&self) -> bool {
            self.0 >= 500
        }
        fn may_have_taken_effect(&self) -> bool {
            self.0 >= 500
        }
    }

    fn options(part_timeout: Duration) -> UploadOptions {
        UploadOptions {
            part_timeout: Some(part_timeout),
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(10),
                seed: Some(1),
                ..RetryPolicy::default()
            },
            ..UploadOptions::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_is_given_up_on_after_the_attempts() {
        let calls = AtomicU32::new(0);
        let r: Result<(), UploadError<Status>> =
            send_whole(&options(Duration::from_secs(5)), Repeat::Idempotent, || {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending()
            })
            .await;
        assert!(matches!(r, Err(UploadError::PartTimeout { number: 1, attempts: 3, .. })), "{r:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // A request that must not be repeated is tried once.
        let calls = AtomicU32::new(0);
        let r: Result<(), UploadError<Status>> =
            send_whole(&options(Duration::from_secs(5)), Repeat::OnlyIfNotSent, || {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending()
            })
            .await;
        assert!(matches!(r, Err(UploadError::PartTimeout { attempts: 1, .. })), "{r:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_repeat_rule_and_cancel_ends_the_wait() {
        let calls = AtomicU32::new(0);
        let r: Result<u8, UploadError<Status>> =
            send_whole(&options(Duration::from_secs(5)), Repeat::Idempotent, || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move { if n < 2 { Err(Status(503)) } else { Ok(7) } }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        let r: Result<u8, UploadError<Status>> =
            send_whole(&options(Duration::from_secs(5)), Repeat::OnlyIfNotSent, || async { Err(Status(503)) }).await;
        match r {
            Err(UploadError::Vendor { operation: Operation::SingleRequest, source, .. }) => {
                assert_eq!(source.attempts, 1)
            }
            other => panic!("{other:?}"),
        }
        let o = options(Duration::from_secs(3600));
        let cancel = o.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cancel.cancel();
        });
        let r: Result<(), UploadError<Status>> = send_whole(&o, Repeat::Idempotent, std::future::pending).await;
        assert!(matches!(r, Err(UploadError::Cancelled)), "{r:?}");
    }
}
