//! Authentication: a bearer token from code or the environment, or a token provider that
//! refreshes it: Box's Client Credentials Grant (an enterprise or a user as the subject) and
//! OAuth 2 refresh tokens. The client asks for a new token shortly before the current one
//! expires, and once more when Box answers 401.
//!
//! In the module skeleton of the vendor crates this is the place of `signing`: Box requests are
//! not signed, they carry `Authorization: Bearer <token>`.

use std::sync::Arc;
use std::time::Duration;

use upload_core::Secret;
use upload_core::token::Granted;

use crate::error::Error;
use crate::types::{OAuthError, TokenResponse};

/// Whose account a Client Credentials Grant acts in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The enterprise's service account (`box_subject_type=enterprise`).
    Enterprise(String),
    /// A managed user (`box_subject_type=user`).
    User(String),
}

/// Where access tokens come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// A fixed access token (a developer token, or one the application manages): not refreshed.
    Token(Secret),
    /// Box's Client Credentials Grant: the token endpoint issues tokens for the app's client id
    /// and secret, acting as `subject`.
    ClientCredentials {
        /// The app's client id.
        client_id: String,
        /// The app's client secret.
        client_secret: Secret,
        /// The enterprise or user the tokens act as.
        subject: Subject,
    },
    /// OAuth 2 with a refresh token; Box rotates refresh tokens, and the client keeps the newest
    /// ([`Client::refresh_token`](crate::Client::refresh_token) returns it to store).
    RefreshToken {
        /// The app's client id.
        client_id: String,
        /// The app's client secret.
        client_secret: Secret,
        /// The refresh token.
        refresh_token: Secret,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Auth::Token(<redacted>)"),
            Auth::ClientCredentials { client_id, subject, .. } => f
                .debug_struct("Auth::ClientCredentials")
                .field("client_id", client_id)
                .field("subject", subject)
                .finish_non_exhaustive(),
            Auth::RefreshToken { client_id, .. } => {
                f.debug_struct("Auth::RefreshToken").field("client_id", client_id).finish_non_exhaustive()
            }
        }
    }
}

impl Auth {
    /// Whether a new token can be obtained (not for a fixed token).
    pub fn can_refresh(&self) -> bool {
        !matches!(self, Auth::Token(_))
    }
}

/// The token of a client, shared by its clones.
pub(crate) struct Tokens {
    auth: Auth,
    oauth_url: String,
    cache: upload_core::token::TokenCache,
    /// The newest refresh token (Box hands out a new one with every refresh).
    refresh: std::sync::Mutex<Option<Secret>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("auth", &self.auth).finish_non_exhaustive()
    }
}

impl Tokens {
    pub(crate) fn new(auth: Auth, oauth_url: String) -> Arc<Self> {
        let refresh = match &auth {
            Auth::RefreshToken { refresh_token, .. } => Some(refresh_token.clone()),
            _ => None,
        };
        Arc::new(Self {
            auth,
            oauth_url,
            cache: upload_core::token::TokenCache::new(),
            refresh: std::sync::Mutex::new(refresh),
        })
    }

    pub(crate) fn can_refresh(&self) -> bool {
        self.auth.can_refresh()
    }

    pub(crate) fn refresh_token(&self) -> Option<Secret> {
        self.refresh.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The token to send: the current one, or a new one when there is none or it is due.
    pub(crate) async fn get(&self, http: &reqwest::Client) -> Result<Secret, Error> {
        self.cache.get(|| self.fetch(http)).await
    }

    /// After a 401 with `stale`: a new token, unless another task already replaced it.
    pub(crate) async fn renew(&self, http: &reqwest::Client, stale: &Secret) -> Result<Secret, Error> {
        self.cache.renew(stale, || self.fetch(http)).await
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Granted, Error> {
        let form: Vec<(&str, String)> = match &self.auth {
            Auth::Token(token) => return Ok(Granted { token: token.clone(), expires_in: None }),
            Auth::ClientCredentials { client_id, client_secret, subject } => {
                let (kind, id) = match subject {
                    Subject::Enterprise(id) => ("enterprise", id),
                    Subject::User(id) => ("user", id),
                };
                vec![
                    ("grant_type", "client_credentials".into()),
                    ("client_id", client_id.clone()),
                    ("client_secret", client_secret.expose().to_owned()),
                    ("box_subject_type", kind.into()),
                    ("box_subject_id", id.clone()),
                ]
            }
            Auth::RefreshToken { client_id, client_secret, .. } => {
                let refresh = self.refresh_token().map(|r| r.expose().to_owned()).unwrap_or_default();
                vec![
                    ("grant_type", "refresh_token".into()),
                    ("client_id", client_id.clone()),
                    ("client_secret", client_secret.expose().to_owned()),
                    ("refresh_token", refresh),
                ]
            }
        };
        let body = form
            .iter()
            .map(|(k, v)| {
                format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC))
            })
            .collect::<Vec<_>>()
            .join("&");
        let response = http
            .post(&self.oauth_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(Error::transport)?;
        let status = response.status().as_u16();
        let bytes = crate::client::read_document(response, "token").await?;
        let (granted, refresh) = token_answer(status, &bytes)?;
        if let Some(r) = refresh {
            *self.refresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
        Ok(granted)
    }
}

/// Reads the token endpoint's answer: the access token granted and the new refresh token, or
/// the OAuth error (only its code and description: never the request, which holds secrets).
pub(crate) fn token_answer(status: u16, bytes: &[u8]) -> Result<(Granted, Option<Secret>), Error> {
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
    Ok((
        Granted { token: Secret::new(granted.access_token), expires_in: granted.expires_in.map(Duration::from_secs) },
        granted.refresh_token.map(Secret::new),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let auths = [
            Auth::Token(Secret::new("tok-123")),
            Auth::ClientCredentials {
                client_id: "cid".into(),
                client_secret: Secret::new("csecret-456"),
                subject: Subject::Enterprise("99".into()),
            },
            Auth::RefreshToken {
                client_id: "cid".into(),
                client_secret: Secret::new("csecret-456"),
                refresh_token: Secret::new("rtok-789"),
            },
        ];
        for auth in auths {
            let text = format!("{auth:?}");
            for secret in ["tok-123", "csecret-456", "rtok-789"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }
}
