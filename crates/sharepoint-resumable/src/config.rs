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
    /// More places upload URLs may point to (`scheme://host[:port]`: a proxy, a test server),
    /// besides Microsoft's upload hosts and the Graph host ([`Config::trusts_upload_url`]).
    pub trusted_urls: Vec<String>,
}

/// The hosts, with their subdomains, Graph hands upload URLs out on: SharePoint and OneDrive
/// for Business worldwide and in the national clouds (US Government, US DoD, China, Germany),
/// and OneDrive personal (`api.onedrive.com`, `*.up.1drv.com`, and
/// `my.microsoftpersonalcontent.com` since 2024).
pub const UPLOAD_HOSTS: [&str; 8] = [
    "sharepoint.com",
    "sharepoint.us",
    "sharepoint-mil.us",
    "sharepoint.cn",
    "sharepoint.de",
    "api.onedrive.com",
    "1drv.com",
    "microsoftpersonalcontent.com",
];

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
            trusted_urls: Vec::new(),
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
            upload_core::http::check_base_url(what, u).map_err(InvalidInput::Config)?;
        }
        self.graph_url = graph_url.trim_end_matches('/').to_owned();
        self.login_url = login_url.trim_end_matches('/').to_owned();
        Ok(self)
    }

    /// Whether an upload URL (from a session Graph created, or from a saved state) may receive
    /// a file's bytes: https on one of [`UPLOAD_HOSTS`] or a subdomain, or the scheme, host and
    /// port of [`Config::graph_url`] (a national cloud's Graph) or of one of
    /// [`Config::trusted_urls`] (an emulator's upload host). Anything else (plain http, an
    /// internal address, another host or port) is refused before a byte is sent.
    pub fn trusts_upload_url(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let microsoft = url.scheme() == "https"
            && url.port().is_none()
            && UPLOAD_HOSTS.iter().any(|h| host == *h || host.strip_suffix(h).is_some_and(|sub| sub.ends_with('.')));
        let configured = std::iter::once(&self.graph_url).chain(&self.trusted_urls);
        url.username().is_empty()
            && url.password().is_none()
            && (microsoft || upload_core::http::same_origin_as_any(url, configured))
    }

    /// Every configured address is an http(s) URL with a host and no user name or password.
    pub(crate) fn check_urls(&self) -> Result<(), InvalidInput> {
        let configured = [("graph_url", &self.graph_url), ("login_url", &self.login_url)];
        for (what, u) in configured.into_iter().chain(self.trusted_urls.iter().map(|u| ("trusted_urls", u))) {
            upload_core::http::check_base_url(what, u).map_err(InvalidInput::Config)?;
        }
        Ok(())
    }

    /// From the environment: `GRAPH_ACCESS_TOKEN` (a fixed token), or `AZURE_TENANT_ID`,
    /// `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` (client credentials, as Microsoft's SDKs read
    /// them); `GRAPH_URL` and `AZURE_AUTHORITY_HOST` to point elsewhere, and
    /// `GRAPH_TRUSTED_URLS` (comma-separated `scheme://host[:port]`) for more places upload URLs
    /// may point to.
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
        if let Some(urls) = var("GRAPH_TRUSTED_URLS") {
            config.trusted_urls = upload_core::http::url_list(&urls);
        }
        Ok(config)
    }
}

/// The JSON flavour asked of SharePoint REST (`Accept: application/json;odata=…`). Answers in
/// any flavour are read; this only chooses what to ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OData {
    /// `odata=verbose`: every answer wrapped in `d`, with `__metadata`.
    Verbose,
    /// `odata=minimalmetadata`: SharePoint Online's default for a bare `application/json`.
    MinimalMetadata,
    /// `odata=nometadata`: the bare objects (the smallest answers).
    #[default]
    NoMetadata,
}

impl OData {
    /// The `Accept` header value.
    pub fn accept(self) -> &'static str {
        match self {
            OData::Verbose => "application/json;odata=verbose",
            OData::MinimalMetadata => "application/json;odata=minimalmetadata",
            OData::NoMetadata => "application/json;odata=nometadata",
        }
    }
}

/// How SharePoint REST calls authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestAuth {
    /// A bearer token for the SharePoint resource (`https://{tenant}.sharepoint.com`), fixed or
    /// from the client credentials flow with the scope `https://{tenant}.sharepoint.com/.default`.
    /// No form digest is needed.
    Bearer(Auth),
    /// A browser session's cookies (`FedAuth=…; rtFa=…`, redacted from `Debug`): every POST then
    /// carries a form digest from `/_api/contextinfo`, renewed before it expires and once more when
    /// SharePoint refuses it.
    Cookie(Secret),
}

/// Everything a [`RestClient`](crate::RestClient) needs.
#[derive(Clone, Debug)]
pub struct RestConfig {
    /// The site (web) URL, `https://contoso.sharepoint.com/sites/team`; API calls go to
    /// `{site_url}/_api/…`.
    pub site_url: String,
    /// The identity platform, for [`Auth::ClientCredentials`].
    pub login_url: String,
    /// How calls authenticate.
    pub auth: RestAuth,
    /// The JSON flavour asked for.
    pub odata: OData,
    /// Retry policy of the high-level uploader's calls.
    pub retry: RetryPolicy,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Overall timeout of a call without a large body (chunks get the engine's per-attempt
    /// timeout instead); 120 s by default.
    pub call_timeout: Duration,
}

impl RestConfig {
    /// Every configured address is an http(s) URL with a host and no user name or password.
    pub(crate) fn check_urls(&self) -> Result<(), InvalidInput> {
        for (what, u) in [("site URL", &self.site_url), ("login_url", &self.login_url)] {
            upload_core::http::check_base_url(what, u).map_err(InvalidInput::Config)?;
        }
        Ok(())
    }

    /// A site with this authentication, asking for `odata=nometadata`.
    pub fn new(site_url: &str, auth: RestAuth) -> Result<Self, InvalidInput> {
        let parsed = upload_core::http::check_base_url("site URL", site_url).map_err(InvalidInput::Config)?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(InvalidInput::Config(format!("site URL {site_url:?} has a query or fragment")));
        }
        Ok(Self {
            site_url: site_url.trim_end_matches('/').to_owned(),
            login_url: "https://login.microsoftonline.com".into(),
            auth,
            odata: OData::default(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
        })
    }

    /// The site's path from the host (`/sites/team`; empty for the root site).
    pub fn site_path(&self) -> String {
        url::Url::parse(&self.site_url)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .map(|p| percent_decode(&p))
            .unwrap_or_default()
    }

    /// The `.default` scope of the site's host (`https://contoso.sharepoint.com/.default`).
    pub fn default_scope(&self) -> String {
        url::Url::parse(&self.site_url)
            .map(|u| format!("{}/.default", u.origin().ascii_serialization()))
            .unwrap_or_default()
    }

    /// From the environment: `SHAREPOINT_SITE_URL`, and `SHAREPOINT_ACCESS_TOKEN` (a fixed
    /// token), `SHAREPOINT_COOKIE` (browser cookies, with form digests), or `AZURE_TENANT_ID`,
    /// `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` (client credentials for the site's host);
    /// `AZURE_AUTHORITY_HOST` to point elsewhere.
    pub fn from_env() -> Result<Self, InvalidInput> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// As [`from_env`](Self::from_env), for this site instead of `SHAREPOINT_SITE_URL` (the
    /// client credentials' scope is then this site's host).
    pub fn from_env_for_site(site_url: &str) -> Result<Self, InvalidInput> {
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        vars.insert("SHAREPOINT_SITE_URL".into(), site_url.to_owned());
        Self::from_vars(&vars)
    }

    pub(crate) fn from_vars(env: &HashMap<String, String>) -> Result<Self, InvalidInput> {
        let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let site = var("SHAREPOINT_SITE_URL").ok_or_else(|| {
            InvalidInput::Config(
                "no SharePoint site: set SHAREPOINT_SITE_URL (https://contoso.sharepoint.com/sites/x)".into(),
            )
        })?;
        let mut config = Self::new(&site, RestAuth::Cookie(Secret::new(String::new())))?;
        config.auth = match (
            var("SHAREPOINT_ACCESS_TOKEN"),
            var("SHAREPOINT_COOKIE"),
            var("AZURE_TENANT_ID"),
            var("AZURE_CLIENT_ID"),
            var("AZURE_CLIENT_SECRET"),
        ) {
            (Some(token), ..) => RestAuth::Bearer(Auth::Token(Secret::new(token))),
            (None, Some(cookie), ..) => RestAuth::Cookie(Secret::new(cookie)),
            (None, None, Some(tenant), Some(client_id), Some(secret)) => RestAuth::Bearer(Auth::ClientCredentials {
                tenant,
                client_id,
                client_secret: Secret::new(secret),
                scope: config.default_scope(),
            }),
            _ => {
                return Err(InvalidInput::Config(
                    "no SharePoint credentials: set SHAREPOINT_ACCESS_TOKEN, SHAREPOINT_COOKIE, or AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET".into(),
                ));
            }
        };
        if let Some(login) = var("AZURE_AUTHORITY_HOST") {
            url::Url::parse(&login)
                .map_err(|e| InvalidInput::Config(format!("AZURE_AUTHORITY_HOST {login:?}: {e}")))?;
            config.login_url = login.trim_end_matches('/').to_owned();
        }
        Ok(config)
    }
}

/// Decodes `%XX` escapes (invalid ones stay as they are).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

    #[test]
    fn rest_environment_picks_site_and_credentials() {
        let vars = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let site = ("SHAREPOINT_SITE_URL", "https://contoso.sharepoint.com/sites/Team%20A/");
        let c = RestConfig::from_vars(&vars(&[site, ("SHAREPOINT_COOKIE", "FedAuth=x")])).unwrap();
        assert!(matches!(c.auth, RestAuth::Cookie(_)));
        assert_eq!(c.site_url, "https://contoso.sharepoint.com/sites/Team%20A");
        assert_eq!(c.site_path(), "/sites/Team A");
        assert!(!format!("{c:?}").contains("FedAuth"), "cookies stay out of Debug");
        let c = RestConfig::from_vars(&vars(&[
            site,
            ("AZURE_TENANT_ID", "contoso"),
            ("AZURE_CLIENT_ID", "id"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]))
        .unwrap();
        assert!(
            matches!(c.auth, RestAuth::Bearer(Auth::ClientCredentials { ref scope, .. }) if scope == "https://contoso.sharepoint.com/.default")
        );
        let err = RestConfig::from_vars(&vars(&[site])).unwrap_err();
        assert!(err.to_string().contains("SHAREPOINT_ACCESS_TOKEN"), "{err}");
        let err = RestConfig::from_vars(&vars(&[("SHAREPOINT_ACCESS_TOKEN", "t")])).unwrap_err();
        assert!(err.to_string().contains("SHAREPOINT_SITE_URL"), "{err}");
        assert!(RestConfig::new("ftp://x/sites/a", RestAuth::Cookie(Secret::new(String::from("c")))).is_err());
    }
}
