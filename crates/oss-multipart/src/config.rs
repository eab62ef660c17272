//! Client configuration: endpoint and addressing, region, credentials, signature version.

use std::time::Duration;

use upload_core::RetryPolicy;

use crate::error::InvalidInput;
use crate::signing::Credentials;

/// Which signature the client sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureVersion {
    /// `OSS <ak>:<sig>`, HMAC-SHA1. Unavailable for buckets and accounts created since 2025.
    V1,
    /// `OSS4-HMAC-SHA256`: the default, as in the official v2 SDKs.
    #[default]
    V4,
}

/// How the bucket appears in URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `https://<bucket>.<endpoint>/<key>`: OSS's default.
    VirtualHost,
    /// `https://<endpoint>/<bucket>/<key>`: for IP and localhost endpoints (and emulators).
    Path,
    /// `https://<custom domain>/<key>`: a domain bound to one bucket (CNAME).
    CustomDomain,
}

/// Everything a [`Client`](crate::Client) needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// `http` or `https`.
    pub scheme: String,
    /// Endpoint host, such as `oss-cn-hangzhou.aliyuncs.com`, or a custom domain.
    pub host: String,
    /// Port, when not the scheme's default.
    pub port: Option<u16>,
    /// Addressing style.
    pub addressing: Addressing,
    /// Region ID for V4 (`cn-hangzhou`, not `oss-cn-hangzhou`).
    pub region: Option<String>,
    /// Credentials.
    pub credentials: Credentials,
    /// Signature version.
    pub signature_version: SignatureVersion,
    /// Retry policy of the high-level uploader's calls.
    pub retry: RetryPolicy,
    /// Connection timeout.
    pub connect_timeout: Duration,
}

fn is_ip_or_localhost(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[')
}

/// The region ID in an OSS endpoint host: `oss-cn-hangzhou.aliyuncs.com` and
/// `oss-cn-hangzhou-internal.aliyuncs.com` give `cn-hangzhou`.
pub fn region_of_endpoint(host: &str) -> Option<String> {
    let first = host.strip_suffix(".aliyuncs.com")?.split('.').next()?;
    let region = first.strip_prefix("oss-")?;
    let region = region.strip_suffix("-internal").unwrap_or(region);
    (!region.is_empty() && region != "accelerate" && region != "accelerate-overseas").then(|| region.to_owned())
}

impl Config {
    /// A configuration for an endpoint (`oss-cn-hangzhou.aliyuncs.com`, `https://…`, or
    /// `http://127.0.0.1:9000`). The addressing is path style for IP and localhost endpoints and
    /// virtual host otherwise; the region is taken from an OSS endpoint name when it has one.
    pub fn new(endpoint: &str, credentials: Credentials) -> Result<Self, InvalidInput> {
        let with_scheme = if endpoint.contains("://") { endpoint.to_owned() } else { format!("https://{endpoint}") };
        let url = upload_core::http::check_base_url("endpoint", &with_scheme).map_err(InvalidInput::Config)?;
        if !matches!(url.scheme(), "http" | "https") || url.path() != "/" || url.query().is_some() {
            return Err(InvalidInput::Config(format!(
                "endpoint {endpoint:?} must be http(s)://host[:port] with no path or query"
            )));
        }
        let host = url.host_str().ok_or_else(|| InvalidInput::Config(format!("endpoint {endpoint:?} has no host")))?;
        let addressing = if is_ip_or_localhost(host) { Addressing::Path } else { Addressing::VirtualHost };
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host: host.to_owned(),
            port: url.port(),
            addressing,
            region: region_of_endpoint(host),
            credentials,
            signature_version: SignatureVersion::V4,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
        })
    }

    /// A configuration from the environment: `OSS_ACCESS_KEY_ID`, `OSS_ACCESS_KEY_SECRET` and the
    /// optional `OSS_SESSION_TOKEN` (the variables the official SDKs read), with `OSS_ENDPOINT`
    /// and the optional `OSS_REGION`.
    pub fn from_env() -> Result<Self, InvalidInput> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let need = |name: &str| var(name).ok_or_else(|| InvalidInput::Config(format!("{name} is not set")));
        let mut credentials = Credentials::new(need("OSS_ACCESS_KEY_ID")?, need("OSS_ACCESS_KEY_SECRET")?);
        if let Some(token) = var("OSS_SESSION_TOKEN") {
            credentials = credentials.with_security_token(token);
        }
        let mut config = Self::new(&need("OSS_ENDPOINT")?, credentials)?;
        if let Some(region) = var("OSS_REGION") {
            config.region = Some(region);
        }
        Ok(config)
    }

    /// Sets the region ID used by V4.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the signature version.
    pub fn with_signature_version(mut self, version: SignatureVersion) -> Self {
        self.signature_version = version;
        self
    }

    /// Sets the addressing style.
    pub fn with_addressing(mut self, addressing: Addressing) -> Self {
        self.addressing = addressing;
        self
    }

    /// `host[:port]` of a request for `bucket`.
    pub(crate) fn authority(&self, bucket: Option<&str>) -> String {
        let host = match (self.addressing, bucket) {
            (Addressing::VirtualHost, Some(b)) => format!("{b}.{}", self.host),
            _ => self.host.clone(),
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_regions_and_addressing() {
        let c = Config::new("oss-cn-hangzhou.aliyuncs.com", Credentials::new("a", "b")).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.addressing, c.region.as_deref()),
            ("https", Addressing::VirtualHost, Some("cn-hangzhou"))
        );
        assert_eq!(c.authority(Some("bkt")), "bkt.oss-cn-hangzhou.aliyuncs.com");
        let c = Config::new("http://127.0.0.1:9000", Credentials::new("a", "b")).unwrap();
        assert_eq!((c.addressing, c.port, c.region.clone()), (Addressing::Path, Some(9000), None));
        assert_eq!(c.authority(Some("bkt")), "127.0.0.1:9000");
        assert_eq!(region_of_endpoint("oss-ap-southeast-1-internal.aliyuncs.com").as_deref(), Some("ap-southeast-1"));
        assert_eq!(region_of_endpoint("oss-accelerate.aliyuncs.com"), None);
        assert!(Config::new("https://oss-cn-hangzhou.aliyuncs.com/path", Credentials::new("a", "b")).is_err());
    }
}
