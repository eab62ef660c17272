//! Retry: which failures to retry, how long to wait, and when to give up.
//!
//! * Failures are classified by the vendor crates through [`Classify`]: connection errors,
//!   resets, timeouts, 408, 429 and 5xx are retried ([`status_is_retryable`]); other 4xx are
//!   not, because sending the same request again cannot make it valid.
//! * The wait is exponential with "equal jitter" (half fixed, half random), capped per wait,
//!   unless the server said how long with `Retry-After` ([`parse_retry_after`], both its
//!   delay-seconds and HTTP-date forms), which is then honoured as given.
//! * Attempts are capped in number and in total time; a `Retry-After` that would cross the time
//!   cap ends the retries at once rather than sleeping for nothing.
//! * Time is tokio's, so tests run with paused time, and the jitter source can be seeded: a test
//!   sees the same delays every run.

use std::future::Future;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use tokio::time::Instant;

/// How a failed call may be retried. Implemented by each vendor crate's error type.
pub trait Classify {
    /// Whether the same request may succeed if sent again.
    fn is_retryable(&self) -> bool;

    /// The wait the server asked for (`Retry-After`), if any.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// Whether the request may have taken effect although it failed: a 5xx or a timeout after
    /// the body was sent. The engine then asks the server before sending a part again.
    fn may_have_taken_effect(&self) -> bool {
        false
    }
}

/// Whether an HTTP status is worth retrying: 408, 429 and every 5xx.
pub fn status_is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP-date (IMF-fixdate, the obsolete
/// RFC 850 form, or asctime) relative to `now`. A date in the past means no wait. `None` when the
/// value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    const FORMATS: [&str; 3] = ["%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"];
    let at = FORMATS.iter().find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())?.and_utc();
    let now: DateTime<Utc> = now.into();
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Limits and pacing of retries.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 1 disables retries.
    pub max_attempts: u32,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
    /// The first wait (before jitter).
    pub initial_backoff: Duration,
    /// The largest computed wait (a server's `Retry-After` may be longer).
    pub max_backoff: Duration,
    /// Growth of the wait per attempt.
    pub multiplier: f64,
    /// Seed for the jitter; `None` seeds from the clock. Tests set it.
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            max_elapsed: Duration::from_secs(10 * 60),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            seed: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that tries once.
    pub fn never() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// Starts counting attempts and time for one call.
    pub fn start(&self) -> Backoff {
        Backoff::new(self.clone())
    }
}

/// A small deterministic generator for jitter (SplitMix64).
#[derive(Clone, Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn clock_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ COUNTER.fetch_add(0x9E37_79B9, Ordering::Relaxed)
}

/// Why retrying stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The failure is not retryable.
    NotRetryable,
    /// The attempt limit was reached.
    Attempts,
    /// The next wait would end after the time limit.
    Time,
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GiveUp::NotRetryable => "not retryable",
            GiveUp::Attempts => "attempt limit reached",
            GiveUp::Time => "retry time limit reached",
        })
    }
}

/// The attempt counter and clock of one retried call.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    attempts: u32,
    started: Instant,
    rng: SplitMix,
}

impl Backoff {
    /// Starts now, with no attempt made.
    pub fn new(policy: RetryPolicy) -> Self {
        let seed = policy.seed.unwrap_or_else(clock_seed);
        Self { policy, attempts: 0, started: Instant::now(), rng: SplitMix(seed) }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time since the first attempt.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records an attempt; call before each one.
    pub fn attempt(&mut self) -> u32 {
        self.attempts += 1;
        self.attempts
    }

    /// The wait before the next attempt after a failure, or why there is none.
    pub fn next_delay(&mut self, retryable: bool, retry_after: Option<Duration>) -> Result<Duration, GiveUp> {
        if !retryable {
            return Err(GiveUp::NotRetryable);
        }
        if self.attempts >= self.policy.max_attempts {
            return Err(GiveUp::Attempts);
        }
        let delay = match retry_after {
            Some(d) => d,
            None => {
                // Odd settings (a multiplier below 1, huge caps) must not panic: clamp instead.
                let exp = self.policy.multiplier.max(1.0).powi(self.attempts.saturating_sub(1).min(64) as i32);
                let cap = self.policy.max_backoff.as_secs_f64();
                let base = (self.policy.initial_backoff.as_secs_f64() * exp).min(cap);
                let secs = base / 2.0 + base / 2.0 * self.rng.unit();
                Duration::try_from_secs_f64(secs).unwrap_or(self.policy.max_backoff)
            }
        };
        match self.elapsed().checked_add(delay) {
            Some(end) if end <= self.policy.max_elapsed => Ok(delay),
            _ => Err(GiveUp::Time),
        }
    }
}

/// A failure after retries: the last error and how much was tried.
#[derive(Debug, thiserror::Error)]
#[error("{error} ({attempts} attempt{s} over {elapsed:.1?}; {reason})", s = if *attempts == 1 { "" } else { "s" })]
pub struct Retried<E: std::error::Error> {
    /// The last error.
    #[source]
    pub error: E,
    /// Attempts made.
    pub attempts: u32,
    /// Time from the first attempt to giving up.
    pub elapsed: Duration,
    /// Why retrying stopped.
    pub reason: GiveUp,
}

/// Calls `op` until it succeeds, fails in a way that is not retryable, or the policy is spent.
/// `on_retry(attempt, &error, delay)` is called before each wait.
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    mut op: F,
    mut on_retry: impl FnMut(u32, &E, Duration),
) -> Result<T, Retried<E>>
where
    E: std::error::Error + Classify,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = policy.start();
    loop {
        let attempt = backoff.attempt();
        match op().await {
            Ok(v) => return Ok(v),
            Err(error) => match backoff.next_delay(error.is_retryable(), error.retry_after()) {
                Ok(delay) => {
                    on_retry(attempt, &error, delay);
                    tokio::time::sleep(delay).await;
                }
                Err(reason) => {
                    return Err(Retried { error, attempts: backoff.attempts(), elapsed: backoff.elapsed(), reason });
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, thiserror::Error)]
    #[error("HTTP {status}")]
    struct Http {
        status: u16,
        retry_after: Option<Duration>,
    }

    impl Classify for Http {
        fn is_retryable(&self) -> bool {
            status_is_retryable(self.status)
        }
        fn retry_after(&self) -> Option<Duration> {
            self.retry_after
        }
    }

    #[test]
    fn classification() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(status_is_retryable(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 409, 412, 416] {
            assert!(!status_is_retryable(s), "{s}");
        }
    }

    #[test]
    fn retry_after_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:42 1994", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn seeded_jitter_is_deterministic_and_bounded() {
        let policy = RetryPolicy { seed: Some(7), ..RetryPolicy::default() };
        let delays = |p: &RetryPolicy| {
            let mut b = p.start();
            (0..8)
                .map(|_| {
                    b.attempt();
                    b.next_delay(true, None).unwrap()
                })
                .collect::<Vec<_>>()
        };
        let a = delays(&policy);
        assert_eq!(a, delays(&policy));
        for (i, d) in a.iter().enumerate() {
            let base = (0.25 * 2f64.powi(i as i32)).min(30.0);
            assert!(d.as_secs_f64() >= base / 2.0 && d.as_secs_f64() <= base, "attempt {i}: {d:?} vs base {base}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_and_gives_up_on_4xx() {
        let started = Instant::now();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        let result = retry(
            &RetryPolicy { seed: Some(1), ..RetryPolicy::default() },
            move || {
                let c = c.clone();
                async move {
                    let mut calls = c.lock().unwrap();
                    calls.push(Instant::now());
                    match calls.len() {
                        1 => Err(Http { status: 429, retry_after: Some(Duration::from_secs(17)) }),
                        2 => Err(Http { status: 503, retry_after: Some(Duration::from_secs(3)) }),
                        _ => Ok("done"),
                    }
                }
            },
            |_, _, _| {},
        )
        .await
        .unwrap();
        assert_eq!(result, "done");
        {
            let calls = calls.lock().unwrap();
            assert_eq!(calls[1] - calls[0], Duration::from_secs(17));
            assert_eq!(calls[2] - calls[1], Duration::from_secs(3));
            assert_eq!(started.elapsed(), Duration::from_secs(20));
        }

        let err = retry(
            &RetryPolicy::default(),
            || async { Err::<(), _>(Http { status: 403, retry_after: None }) },
            |_, _, _| panic!("403 must not be retried"),
        )
        .await
        .unwrap_err();
        assert_eq!((err.attempts, err.reason), (1, GiveUp::NotRetryable));
        assert_eq!(err.to_string(), "HTTP 403 (1 attempt over 0.0ns; not retryable)");
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let mut b = RetryPolicy { multiplier: -3.0, max_backoff: Duration::MAX, ..RetryPolicy::default() }.start();
        for _ in 0..100 {
            b.attempt();
            let _ = b.next_delay(true, None);
        }
        let mut b = RetryPolicy::default().start();
        b.attempt();
        assert_eq!(b.next_delay(true, Some(Duration::MAX)), Err(GiveUp::Time));
    }

    #[tokio::test(start_paused = true)]
    async fn caps_attempts_and_time() {
        let policy = RetryPolicy { max_attempts: 4, seed: Some(3), ..RetryPolicy::default() };
        let mut n = 0;
        let err = retry(
            &policy,
            || {
                n += 1;
                async { Err::<(), _>(Http { status: 500, retry_after: None }) }
            },
            |_, _, _| {},
        )
        .await
        .unwrap_err();
        assert_eq!((n, err.attempts, err.reason), (4, 4, GiveUp::Attempts));

        // A Retry-After beyond the time budget ends the retries without sleeping through it.
        let policy = RetryPolicy { max_elapsed: Duration::from_secs(60), ..RetryPolicy::default() };
        let started = Instant::now();
        let err = retry(
            &policy,
            || async { Err::<(), _>(Http { status: 503, retry_after: Some(Duration::from_secs(3600)) }) },
            |_, _, _| {},
        )
        .await
        .unwrap_err();
        assert_eq!((err.attempts, err.reason), (1, GiveUp::Time));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
