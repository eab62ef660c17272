//! Authentication: a bearer token from code or the environment, or the OAuth 2 client
//! credentials flow of the Microsoft identity platform (tenant, client id, client secret), with
//! the token replaced before it expires and once more on 401. The token goes to Graph only:
//! upload URLs carry their own credential and never get an `Authorization` header.
//!
//! In the module skeleton of the vendor crates this is the place of `signing`.

use std::sync::Arc;
use std::time::Duration;

use upload_core::Secret;
use upload_core::token::{Granted, TokenCache};

use crate::error::Error;
use crate::types::{OAuthError, TokenResponse};

/// Where access tokens come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// A fixed access token: not refreshed.
    Token(Secret),
    /// The client credentials flow: an app registration's id and secret in a tenant.
    ClientCredentials {
        /// The tenant id or domain.
        tenant: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
        /// The scope, `https://graph.microsoft.com/.default`.
        scope: String,
    },
}

impl Auth {
    /// The client credentials flow with Graph's `.default` scope.
    pub fn client_credentials(tenant: impl Into<String>, client_id: impl Into<String>, secret: Secret) -> Self {
        Auth::ClientCredentials {
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: secret,
            scope: "https://graph.microsoft.com/.default".into(),
        }
    }

    /// Whether a new token can be obtained (not for a fixed token).
    pub fn can_refresh(&self) -> bool {
        !matches!(self, Auth::Token(_))
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Auth::Token(<redacted>)"),
            Auth::ClientCredentials { tenant, client_id, scope, .. } => f
                .debug_struct("Auth::ClientCredentials")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("scope", scope)
                .finish_non_exhaustive(),
        }
    }
}

/// The token of a client, shared by its clones.
pub(crate) struct Tokens {
    auth: Auth,
    login_url: String,
    cache: TokenCache,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("auth", &self.auth).finish_non_exhaustive()
    }
}

impl Tokens {
    pub(crate) fn new(auth: Auth, login_url: String) -> Arc<Self> {
        Arc::new(Self { auth, login_url, cache: TokenCache::new() })
    }

    pub(crate) fn can_refresh(&self) -> bool {
        self.auth.can_refresh()
    }

    pub(crate) async fn get(&self, http: &reqwest::Client) -> Result<Secret, Error> {
        self.cache.get(|| self.fetch(http)).await
    }

    pub(crate) async fn renew(&self, http: &reqwest::Client, stale: &Secret) -> Result<Secret, Error> {
        self.cache.renew(stale, || self.fetch(http)).await
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Granted, Error> {
        let (tenant, form) = match &self.auth {
            Auth::Token(token) => return Ok(Granted { token: token.clone(), expires_in: None }),
            Auth::ClientCredentials { tenant, client_id, client_secret, scope } => (
                tenant,
                [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.expose()),
                    ("scope", scope.as_str()),
                ],
            ),
        };
        let body = form
            .iter()
            .map(|(k, v)| {
                format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC))
            })
            .collect::<Vec<_>>()
            .join("&");
        let tenant = percent_encoding::utf8_percent_encode(tenant, percent_encoding::NON_ALPHANUMERIC);
        let response = http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.login_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(Error::transport)?;
        let status = response.status().as_u16();
        let bytes = crate::client::read_document(response, "token").await?;
        token_answer(status, &bytes)
    }
}

/// Reads the token endpoint's answer: the access token granted, or the OAuth error (only its
/// code and description: never the request, which holds the secret).
pub(crate) fn token_answer(status: u16, bytes: &[u8]) -> Result<Granted, Error> {
    if !(200..300).contains(&status) {
        let detail = match serde_json::from_slice::<OAuthError>(bytes) {
            Ok(e) => match e.error_description {
                Some(d) => format!("HTTP {status} {}: {d}", e.error),
                None => format!("HTTP {status} {}", e.error),
            },
            Err(_) => format!("HTTP {status} from the token endpoint"),
        };
        return Err(Error::Auth { status, detail });
    }
    let granted: TokenResponse = serde_json::from_slice(bytes)
        .map_err(|e| Error::MalformedResponse { operation: "token request", detail: e.to_string() })?;
    Ok(Granted { token: Secret::new(granted.access_token), expires_in: granted.expires_in.map(Duration::from_secs) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        for auth in [Auth::Token(Secret::new("tok-123")), Auth::client_credentials("t", "c", Secret::new("sec-456"))] {
            let text = format!("{auth:?}");
            assert!(!text.contains("tok-123") && !text.contains("sec-456"), "{text}");
        }
    }
}
