//! Authentication of Graph requests and the identity platform's token endpoint.

use super::*;
#[allow(unused_imports)]
use super::{ids::*, items::*, records::*, server::*, sessions::*};

// ---------------------------------------------------------------------------------------------
// Tokens.

/// Who a bearer token acts as.
pub(super) fn authenticate(shared: &Shared, authorization: Option<&str>) -> Result<String, GraphError> {
    let token = authorization
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| GraphError::unauthenticated("Access token is empty."))?;
    if shared.config.tokens.iter().any(|t| t == token) {
        return Ok(FIXED_TOKEN_USER.into());
    }
    let store = shared.store();
    match store.issued.get(token) {
        Some((owner, expires)) if Instant::now() < *expires => Ok(owner.clone()),
        Some(_) => {
            let mut e =
                GraphError::unauthenticated("Lifetime validation failed, the token is expired.").inner("expiredToken");
            e.expired = true;
            Err(e)
        }
        None => Err(GraphError::unauthenticated("Invalid authentication token.")),
    }
}

/// The identity platform's token endpoint: the client credentials grant.
pub(super) fn token(ctx: &Ctx<'_>, tenant: &str, user: &mut Option<String>) -> Result<Reply, GraphError> {
    let config = &ctx.shared.config;
    if tenant != config.tenant {
        return Err(GraphError::new(
            400,
            "invalid_request",
            format!("AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
        ));
    }
    let form = parse_query(std::str::from_utf8(&ctx.body).unwrap_or_default());
    let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let grant = field("grant_type");
    if grant != "client_credentials" {
        return Err(GraphError::new(
            400,
            "unsupported_grant_type",
            format!("AADSTS70003: The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let client_id = field("client_id");
    match config.clients.iter().find(|(id, _)| *id == client_id) {
        None => {
            return Err(GraphError::new(
                401,
                "invalid_client",
                format!(
                    "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'."
                ),
            ));
        }
        Some((_, secret)) if *secret != field("client_secret") => {
            return Err(GraphError::new(
                401,
                "invalid_client",
                format!(
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            ));
        }
        Some(_) => {}
    }
    let scope = field("scope");
    if scope.is_empty() {
        return Err(GraphError::new(
            400,
            "invalid_request",
            "AADSTS90014: The required field 'scope' is missing from the credential.",
        ));
    }
    if !scope.ends_with("/.default") {
        return Err(GraphError::new(
            400,
            "invalid_scope",
            format!(
                "AADSTS1002012: The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    let access = format!("eyJ0eXAiOiJKV1Qi.emulator.{}", random_hex(3));
    let lifetime = config.token_lifetime;
    ctx.shared.store().issued.insert(access.clone(), (client_id.clone(), after(lifetime)));
    *user = Some(client_id);
    ok_json(
        200,
        &TokenResponse {
            access_token: access,
            expires_in: Some(lifetime.as_secs()),
            token_type: Some("Bearer".into()),
        },
    )
}
