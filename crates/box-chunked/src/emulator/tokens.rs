//! Bearer tokens: the user a request acts as, and the token endpoint (Client Credentials Grant,
//! rotating refresh tokens) whose tokens expire and are pruned, so that the tokens kept are
//! bounded however many are asked for.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use upload_core::emulator::{Reply, empty, parse_query};

use super::{BoxFault, Shared, ok_json};
use crate::types::{OAuthError, TokenResponse};

/// Most live tokens of the token endpoint kept at once (the fixed ones come on top).
const MAX_ISSUED_TOKENS: usize = 10_000;

/// The user a bearer token acts as (`As-User` when given).
pub(super) fn authenticate(
    shared: &Shared,
    authorization: Option<&str>,
    as_user: Option<String>,
) -> Result<String, BoxFault> {
    let unauthorized = || BoxFault::new(401, "invalid_token", "The access token provided is invalid.");
    let token = authorization.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim).ok_or_else(unauthorized)?;
    let mut store = shared.store();
    let (owner, expires) = store.tokens.get(token).cloned().ok_or_else(unauthorized)?;
    if expires.is_some_and(|e| Instant::now() >= e) {
        store.tokens.remove(token);
        return Err(unauthorized());
    }
    match as_user.filter(|u| !u.is_empty()) {
        None => Ok(owner),
        // Only admins and service accounts may act as another user.
        Some(user) if owner.starts_with("service-account-") || shared.config.admins.contains(&owner) => Ok(user),
        Some(_) => Err(BoxFault::new(
            403,
            "access_denied_insufficient_permissions",
            "As-User needs an admin or a service account",
        )),
    }
}

/// The token endpoint: Client Credentials Grant and refresh tokens.
pub(super) fn token(shared: &Shared, body: &Bytes) -> Result<Reply, BoxFault> {
    let form = parse_query(std::str::from_utf8(body).unwrap_or_default());
    let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let oauth_error = |error: &str, description: &str| {
        let doc = OAuthError { error: error.into(), error_description: Some(description.into()) };
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        Response::builder()
            .status(400)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| empty(400))
    };
    let client_ok =
        shared.config.clients.iter().any(|(id, secret)| *id == field("client_id") && *secret == field("client_secret"));
    if !client_ok {
        return Ok(oauth_error("invalid_client", "The client credentials are invalid"));
    }
    let mut store = shared.store();
    let (user, refresh) = match field("grant_type").as_str() {
        "client_credentials" => {
            let subject = field("box_subject_id");
            match field("box_subject_type").as_str() {
                "enterprise" if !subject.is_empty() => (format!("service-account-{subject}"), None),
                "user" if !subject.is_empty() => (subject, None),
                _ => return Ok(oauth_error("invalid_request", "box_subject_type and box_subject_id are required")),
            }
        }
        "refresh_token" => {
            let Some(user) = store.refresh.remove(&field("refresh_token")) else {
                return Ok(oauth_error("invalid_grant", "Invalid refresh token"));
            };
            store.counter += 1;
            // Box rotates refresh tokens: the old one is spent.
            let next = format!("refresh-{}-{}", store.counter, upload_core::emulator::unique());
            store.refresh.insert(next.clone(), user.clone());
            (user, Some(next))
        }
        other => return Ok(oauth_error("unsupported_grant_type", &format!("grant_type {other:?} is not supported"))),
    };
    store.counter += 1;
    let access = format!("issued-{}-{:x}", store.counter, upload_core::emulator::unique() * 0x9E37_79B9);
    let lifetime = shared.config.token_lifetime;
    let now = Instant::now();
    // Expired tokens go; of the live ones, the one expiring first makes room when there are
    // as many as are kept.
    store.tokens.retain(|_, (_, expires)| expires.is_none_or(|e| now < e));
    let issued = || store.tokens.iter().filter_map(|(t, (_, e))| e.map(|e| (e, t.clone())));
    if issued().count() >= MAX_ISSUED_TOKENS
        && let Some((_, first)) = issued().min()
    {
        store.tokens.remove(&first);
    }
    store.tokens.insert(access.clone(), (user, Some(now + lifetime)));
    ok_json(
        200,
        &TokenResponse {
            access_token: access,
            expires_in: Some(lifetime.as_secs()),
            token_type: Some("bearer".into()),
            refresh_token: refresh,
        },
    )
}
