//! A bearer token shared by the clones of a client: fetched when first needed, replaced a little
//! before it expires, and replaced once more when the server refuses it (401). Concurrent callers
//! wait for one fetch instead of each asking the token endpoint.
//!
//! The vendor crates say how a token is fetched (Box's token endpoint, Microsoft's identity
//! platform); this module only decides when.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::Secret;

/// A token as the token endpoint granted it.
#[derive(Clone, Debug)]
pub struct Granted {
    /// The bearer token.
    pub token: Secret,
    /// Its lifetime (`expires_in`), when the endpoint said.
    pub expires_in: Option<Duration>,
}

#[derive(Clone)]
struct Current {
    token: Secret,
    /// Replace it after this.
    renew_at: Option<Instant>,
}

/// The current token of a client.
#[derive(Default)]
pub struct TokenCache {
    current: tokio::sync::Mutex<Option<Current>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

/// Renew this long before the token expires (half the lifetime for short-lived tokens).
const MARGIN: Duration = Duration::from_secs(60);

/// Lifetimes are capped at a year (a huge `expires_in` must not overflow the clock).
const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);

fn current(granted: Granted) -> Current {
    let renew_at = granted.expires_in.and_then(|lifetime| {
        let lifetime = lifetime.min(LONGEST);
        Instant::now().checked_add(lifetime - MARGIN.min(lifetime / 2))
    });
    Current { token: granted.token, renew_at }
}

impl TokenCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token to send: the current one, or a fetched one when there is none or it is due.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<Secret, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Granted, E>>,
    {
        let mut slot = self.current.lock().await;
        if let Some(c) = slot.as_ref()
            && c.renew_at.is_none_or(|t| Instant::now() < t)
        {
            return Ok(c.token.clone());
        }
        let fresh = current(fetch().await?);
        let token = fresh.token.clone();
        *slot = Some(fresh);
        Ok(token)
    }

    /// After the server refused `stale`: a fetched token, unless another caller already
    /// replaced it.
    pub async fn renew<F, Fut, E>(&self, stale: &Secret, fetch: F) -> Result<Secret, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Granted, E>>,
    {
        let mut slot = self.current.lock().await;
        if let Some(c) = slot.as_ref()
            && c.token != *stale
        {
            return Ok(c.token.clone());
        }
        let fresh = current(fetch().await?);
        let token = fresh.token.clone();
        *slot = Some(fresh);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(token: &str, secs: Option<u64>) -> Granted {
        Granted { token: Secret::new(token), expires_in: secs.map(Duration::from_secs) }
    }

    #[tokio::test]
    async fn fetches_once_then_renews_only_what_is_stale() {
        let cache = TokenCache::new();
        let fetches = std::sync::atomic::AtomicU32::new(0);
        let fetch = |t: &'static str| {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, ()>(granted(t, Some(3600))) }
        };
        assert_eq!(cache.get(|| fetch("a")).await.unwrap().expose(), "a");
        assert_eq!(cache.get(|| fetch("b")).await.unwrap().expose(), "a", "cached");
        // A 401 for an old token does not replace the newer one.
        assert_eq!(cache.renew(&Secret::new("old"), || fetch("c")).await.unwrap().expose(), "a");
        assert_eq!(cache.renew(&Secret::new("a"), || fetch("d")).await.unwrap().expose(), "d");
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn short_and_huge_lifetimes_neither_spin_nor_overflow() {
        let cache = TokenCache::new();
        cache.get(|| async { Ok::<_, ()>(granted("huge", Some(u64::MAX))) }).await.unwrap();
        assert_eq!(cache.get(|| async { Ok::<_, ()>(granted("x", None)) }).await.unwrap().expose(), "huge");
        // 50 s tokens renew after 25 s, not at once.
        let cache = TokenCache::new();
        cache.get(|| async { Ok::<_, ()>(granted("short", Some(50))) }).await.unwrap();
        assert_eq!(cache.get(|| async { Ok::<_, ()>(granted("x", None)) }).await.unwrap().expose(), "short");
    }
}
