//! Client configuration: the Graph base URL, the identity platform, authentication, retries and
//! timeouts, from code or the environment (the `AZURE_*` convention of Microsoft's SDKs).

use std::collections::HashMap;
use std::time::Duration;

use upload_core::{RetryPolicy, Secret};

use crate::auth::Auth;
use crate::error::InvalidInput;

/// Everything a [`Client`](crate::Client) needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Graph base, `https://graph.microsoft.com/v1.0`.
    pub graph_url: String,
    /// The identity platform, `https://login.microsoftonline.com` (tokens come from
    /// `<login_url>/<tenant>/oauth2/v2.0/token`).
    pub login_url: String,
    /// Where access tokens come from.
    pub auth: Auth,
    /// Retry policy of the high-level uploader's calls.
    pub retry: RetryPolicy,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Overall timeout of a call without a large body (fragments get the engine's per-attempt
    /// timeout instead); 120 s by default.
    pub call_timeout: Duration,
}

impl Config {
    /// Microsoft's production URLs with this authentication.
    pub fn new(auth: Auth) -> Self {
        Self {
            graph_url: "https://graph.microsoft.com/v1.0".into(),
            login_url: "https://login.microsoftonline.com".into(),
            auth,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
        }
    }

    /// A fixed access token (from another library or `az account get-access-token`).
    pub fn with_token(token: impl Into<String>) -> Self {
        Self::new(Auth::Token(Secret::new(token.into())))
    }

    /// Other base URLs (an emulator, a national cloud): the Graph base (`…/v1.0`) and the
    /// identity platform's host.
    pub fn with_urls(mut self, graph_url: &str, login_url: &str) -> Result<Self, InvalidInput> {
        for (what, u) in [("graph_url", graph_url), ("login_url", login_url)] {
            let parsed = url::Url::parse(u).map_err(|e| InvalidInput::Config(format!("{what} {u:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(InvalidInput::Config(format!("{what} {u:?} must be an http(s) URL")));
            }
        }
        self.graph_url = graph_url.trim_end_matches('/').to_owned();
        self.login_url = login_url.trim_end_matches('/').to_owned();
        Ok(self)
    }

    /// From the environment: `GRAPH_ACCESS_TOKEN` (a fixed token), or `AZURE_TENANT_ID`,
    /// `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` (client credentials, as Microsoft's SDKs read
    /// them); `GRAPH_URL` and `AZURE_AUTHORITY_HOST` to point elsewhere.
    pub fn from_env() -> Result<Self, InvalidInput> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub(crate) fn from_vars(env: &HashMap<String, String>) -> Result<Self, InvalidInput> {
        let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let auth = match (
            var("GRAPH_ACCESS_TOKEN"),
            var("AZURE_TENANT_ID"),
            var("AZURE_CLIENT_ID"),
            var("AZURE_CLIENT_SECRET"),
        ) {
            (Some(token), ..) => Auth::Token(Secret::new(token)),
            (None, Some(tenant), Some(client_id), Some(secret)) => {
                Auth::client_credentials(tenant, client_id, Secret::new(secret))
            }
            _ => {
                return Err(InvalidInput::Config(
                    "no Graph credentials: set GRAPH_ACCESS_TOKEN, or AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET".into(),
                ));
            }
        };
        let mut config = Self::new(auth);
        if var("GRAPH_URL").is_some() || var("AZURE_AUTHORITY_HOST").is_some() {
            let graph = var("GRAPH_URL").unwrap_or(config.graph_url.clone());
            let login = var("AZURE_AUTHORITY_HOST").unwrap_or(config.login_url.clone());
            config = config.with_urls(&graph, &login)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_picks_the_token_source() {
        let vars = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let c = Config::from_vars(&vars(&[("GRAPH_ACCESS_TOKEN", "t")])).unwrap();
        assert!(matches!(c.auth, Auth::Token(_)));
        let c = Config::from_vars(&vars(&[
            ("AZURE_TENANT_ID", "contoso"),
            ("AZURE_CLIENT_ID", "id"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("GRAPH_URL", "http://127.0.0.1:9/v1.0"),
        ]))
        .unwrap();
        assert!(matches!(c.auth, Auth::ClientCredentials { ref tenant, .. } if tenant == "contoso"));
        assert_eq!(c.graph_url, "http://127.0.0.1:9/v1.0");
        let err = Config::from_vars(&vars(&[("AZURE_CLIENT_ID", "id")])).unwrap_err();
        assert!(err.to_string().contains("AZURE_TENANT_ID"), "{err}");
    }
}
