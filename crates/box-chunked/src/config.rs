//! Client configuration: the API, upload and token URLs, authentication, `As-User`, retries and
//! timeouts, from code or the environment.

use std::collections::HashMap;
use std::time::Duration;

use upload_core::{RetryPolicy, Secret};

use crate::auth::{Auth, Subject};
use crate::error::InvalidInput;

/// Everything a [`Client`](crate::Client) needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The API base, `https://api.box.com/2.0`.
    pub api_url: String,
    /// The upload base, `https://upload.box.com/api/2.0`; sessions are created here, and every
    /// later call goes to the URLs the session names.
    pub upload_url: String,
    /// The token endpoint, `https://api.box.com/oauth2/token`.
    pub oauth_url: String,
    /// Where access tokens come from.
    pub auth: Auth,
    /// Act as this user (`As-User`), for an admin or service account.
    pub as_user: Option<String>,
    /// Retry policy of the high-level uploader's calls.
    pub retry: RetryPolicy,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Overall timeout of a call without a large body (part uploads get the engine's
    /// per-attempt timeout instead); 120 s by default.
    pub call_timeout: Duration,
    /// The smallest file the uploader sends as a chunked session: Box's 20,000,000 bytes
    /// ([`CHUNKED_MIN`](crate::CHUNKED_MIN)); change it only for a server with another minimum.
    pub chunked_min: u64,
    /// More URL bases (`scheme://host[:port]`) the token may go to, such as an emulator's
    /// regional upload host; Box's own `https://*.box.com` hosts are always trusted.
    pub trusted_urls: Vec<String>,
}

impl Config {
    /// Box's production URLs with this authentication.
    pub fn new(auth: Auth) -> Self {
        Self {
            api_url: "https://api.box.com/2.0".into(),
            upload_url: "https://upload.box.com/api/2.0".into(),
            oauth_url: "https://api.box.com/oauth2/token".into(),
            auth,
            as_user: None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
            chunked_min: crate::CHUNKED_MIN,
            trusted_urls: Vec::new(),
        }
    }

    /// A fixed access token (a developer token, or one the application refreshes itself).
    pub fn with_token(token: impl Into<String>) -> Self {
        Self::new(Auth::Token(Secret::new(token.into())))
    }

    /// Other base URLs (an emulator, a proxy): the API base (`…/2.0`), the upload base
    /// (`…/api/2.0`) and the token endpoint.
    pub fn with_urls(mut self, api_url: &str, upload_url: &str, oauth_url: &str) -> Result<Self, InvalidInput> {
        for (what, u) in [("api_url", api_url), ("upload_url", upload_url), ("oauth_url", oauth_url)] {
            upload_core::http::check_base_url(what, u).map_err(InvalidInput::Config)?;
        }
        self.api_url = api_url.trim_end_matches('/').to_owned();
        self.upload_url = upload_url.trim_end_matches('/').to_owned();
        self.oauth_url = oauth_url.to_owned();
        Ok(self)
    }

    /// Acts as this user (`As-User`).
    pub fn with_as_user(mut self, user_id: impl Into<String>) -> Self {
        self.as_user = Some(user_id.into());
        self
    }

    /// From the environment:
    ///
    /// * `BOX_ACCESS_TOKEN` (or `BOX_DEVELOPER_TOKEN`): a fixed token; otherwise
    /// * `BOX_CLIENT_ID` and `BOX_CLIENT_SECRET` with `BOX_REFRESH_TOKEN` (OAuth 2), or with
    ///   `BOX_ENTERPRISE_ID` or `BOX_USER_ID` (Client Credentials Grant);
    /// * `BOX_AS_USER`; `BOX_API_URL`, `BOX_UPLOAD_URL`, `BOX_OAUTH_URL` to point elsewhere, and
    ///   `BOX_TRUSTED_URLS` (comma-separated `scheme://host[:port]`) for more hosts the token may
    ///   go to (an emulator's session host, a proxy).
    pub fn from_env() -> Result<Self, InvalidInput> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub(crate) fn from_vars(env: &HashMap<String, String>) -> Result<Self, InvalidInput> {
        let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let auth = if let Some(token) = var("BOX_ACCESS_TOKEN").or_else(|| var("BOX_DEVELOPER_TOKEN")) {
            Auth::Token(Secret::new(token))
        } else {
            let (Some(client_id), Some(secret)) = (var("BOX_CLIENT_ID"), var("BOX_CLIENT_SECRET")) else {
                return Err(InvalidInput::Config(
                    "no Box credentials: set BOX_ACCESS_TOKEN, or BOX_CLIENT_ID and BOX_CLIENT_SECRET with BOX_REFRESH_TOKEN, BOX_ENTERPRISE_ID or BOX_USER_ID".into(),
                ));
            };
            let client_secret = Secret::new(secret);
            if let Some(refresh) = var("BOX_REFRESH_TOKEN") {
                Auth::RefreshToken { client_id, client_secret, refresh_token: Secret::new(refresh) }
            } else if let Some(user) = var("BOX_USER_ID") {
                Auth::ClientCredentials { client_id, client_secret, subject: Subject::User(user) }
            } else if let Some(enterprise) = var("BOX_ENTERPRISE_ID") {
                Auth::ClientCredentials { client_id, client_secret, subject: Subject::Enterprise(enterprise) }
            } else {
                return Err(InvalidInput::Config(
                    "BOX_CLIENT_ID and BOX_CLIENT_SECRET need BOX_REFRESH_TOKEN, BOX_ENTERPRISE_ID or BOX_USER_ID"
                        .into(),
                ));
            }
        };
        let mut config = Self::new(auth);
        if var("BOX_API_URL").is_some() || var("BOX_UPLOAD_URL").is_some() || var("BOX_OAUTH_URL").is_some() {
            let api = var("BOX_API_URL").unwrap_or(config.api_url.clone());
            let upload = var("BOX_UPLOAD_URL").unwrap_or(config.upload_url.clone());
            let oauth = var("BOX_OAUTH_URL").unwrap_or(config.oauth_url.clone());
            config = config.with_urls(&api, &upload, &oauth)?;
        }
        config.as_user = var("BOX_AS_USER");
        if let Some(urls) = var("BOX_TRUSTED_URLS") {
            config.trusted_urls = upload_core::http::url_list(&urls);
        }
        Ok(config)
    }

    /// Every configured address is an http(s) URL with a host and no user name or password.
    pub(crate) fn check_urls(&self) -> Result<(), InvalidInput> {
        let configured = [("api_url", &self.api_url), ("upload_url", &self.upload_url), ("oauth_url", &self.oauth_url)];
        for (what, u) in configured.into_iter().chain(self.trusted_urls.iter().map(|u| ("trusted_urls", u))) {
            upload_core::http::check_base_url(what, u).map_err(InvalidInput::Config)?;
        }
        Ok(())
    }

    /// Whether the bearer token may go to `url`: Box's own hosts over https, or the host and
    /// port of a configured URL.
    pub(crate) fn trusts(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let box_host = url.scheme() == "https" && (host == "box.com" || host.ends_with(".box.com"));
        let configured = [&self.api_url, &self.upload_url].into_iter().chain(&self.trusted_urls);
        url.username().is_empty()
            && url.password().is_none()
            && (box_host || upload_core::http::same_origin_as_any(url, configured))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn environment_picks_the_token_source() {
        let c = Config::from_vars(&vars(&[("BOX_ACCESS_TOKEN", "t"), ("BOX_AS_USER", "42")])).unwrap();
        assert!(matches!(c.auth, Auth::Token(_)));
        assert_eq!(c.as_user.as_deref(), Some("42"));
        let c = Config::from_vars(&vars(&[
            ("BOX_CLIENT_ID", "id"),
            ("BOX_CLIENT_SECRET", "s"),
            ("BOX_ENTERPRISE_ID", "7"),
            ("BOX_API_URL", "http://127.0.0.1:9/2.0"),
        ]))
        .unwrap();
        assert!(matches!(c.auth, Auth::ClientCredentials { subject: Subject::Enterprise(ref e), .. } if e == "7"));
        assert_eq!(c.api_url, "http://127.0.0.1:9/2.0");
        let err = Config::from_vars(&vars(&[("BOX_CLIENT_ID", "id"), ("BOX_CLIENT_SECRET", "s")])).unwrap_err();
        assert!(err.to_string().contains("BOX_ENTERPRISE_ID"), "{err}");
        assert!(Config::from_vars(&HashMap::new()).unwrap_err().to_string().contains("BOX_ACCESS_TOKEN"));
    }

    #[test]
    fn the_token_goes_only_to_box_and_configured_hosts() {
        let c = Config::with_token("t")
            .with_urls(
                "http://127.0.0.1:1000/2.0",
                "http://127.0.0.1:2000/api/2.0",
                "http://127.0.0.1:1000/oauth2/token",
            )
            .unwrap();
        let ok = |u: &str| c.trusts(&url::Url::parse(u).unwrap());
        assert!(ok("http://127.0.0.1:2000/api/2.0/files/upload_sessions/X"));
        assert!(ok("https://upload.box.com/api/2.0/files/upload_sessions/X"));
        assert!(ok("https://dl-eu.box.com/x"));
        assert!(!ok("http://127.0.0.1:3000/api/2.0/files/upload_sessions/X"), "another port");
        assert!(!ok("http://upload.box.com/x"), "not https");
        assert!(!ok("https://evil-box.com/x"));
        assert!(!ok("https://box.com.evil.example/x"));
    }
}
