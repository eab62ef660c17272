//! Client configuration: zone, host, port, protocol, addressing and credentials, from code, the
//! environment, or QingStor's own config file, as the official SDKs read them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use upload_core::RetryPolicy;

use crate::error::InvalidInput;
use crate::signing::Credentials;

/// Everything a [`Client`](crate::Client) needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// `https` or `http`.
    pub protocol: String,
    /// Service host, `qingstor.com` by default.
    pub host: String,
    /// Port, when not the protocol's default.
    pub port: Option<u16>,
    /// Zone (`pek3a`, `pek3b`, `sh1a`, `gd2`, `ap3`…); needed for bucket and object requests.
    pub zone: Option<String>,
    /// `https://<bucket>.<zone>.<host>/<key>` instead of `https://<zone>.<host>/<bucket>/<key>`.
    pub enable_virtual_host_style: bool,
    /// Credentials.
    pub credentials: Credentials,
    /// Retry policy of the high-level uploader's calls.
    pub retry: RetryPolicy,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Overall timeout of a call without a large body (everything but part uploads, which get
    /// the engine's per-attempt timeout); 120 s by default.
    pub call_timeout: Duration,
}

/// Reads the flat `key: value` YAML of `~/.qingstor/config.yaml` (comments and quotes allowed).
fn parse_config_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(" #").next().unwrap_or_default().trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once(':')?;
            let value = value.trim().trim_matches('"').trim_matches('\'');
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

impl Config {
    /// Defaults (`https://qingstor.com`, path style) with these credentials.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            protocol: "https".into(),
            host: "qingstor.com".into(),
            port: None,
            zone: None,
            enable_virtual_host_style: false,
            credentials,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
        }
    }

    /// Sets the zone.
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// A configuration for an endpoint URL such as `http://127.0.0.1:9000` (an emulator):
    /// protocol, host and port from the URL, path style.
    pub fn with_endpoint(mut self, endpoint: &str) -> Result<Self, InvalidInput> {
        upload_core::http::check_base_url("endpoint", endpoint).map_err(InvalidInput::Config)?;
        let (protocol, rest) = endpoint
            .split_once("://")
            .ok_or_else(|| InvalidInput::Config(format!("endpoint {endpoint:?} has no protocol")))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {
                (h, Some(p.parse().map_err(|_| InvalidInput::Config(format!("port of {endpoint:?}")))?))
            }
            _ => (rest, None),
        };
        if !matches!(protocol, "http" | "https") || !upload_core::http::is_host_name(host) {
            return Err(InvalidInput::Config(format!("endpoint {endpoint:?} must be http(s)://host[:port]")));
        }
        self.protocol = protocol.into();
        self.host = host.into();
        self.port = port;
        Ok(self)
    }

    /// Applies the keys of a config file (`access_key_id`, `secret_access_key`, `host`, `port`,
    /// `protocol`, `zone`, `enable_virtual_host_style`) over this configuration.
    fn apply(&mut self, values: &HashMap<String, String>) -> Result<(), InvalidInput> {
        if let Some(v) = values.get("access_key_id").filter(|v| !v.is_empty()) {
            self.credentials.access_key_id = v.clone();
        }
        if let Some(v) = values.get("secret_access_key").filter(|v| !v.is_empty()) {
            self.credentials.secret_access_key = upload_core::Secret::new(v.clone());
        }
        if let Some(v) = values.get("host").filter(|v| !v.is_empty()) {
            self.host = v.clone();
        }
        if let Some(v) = values.get("port").filter(|v| !v.is_empty()) {
            self.port = Some(v.parse().map_err(|_| InvalidInput::Config(format!("port {v:?} is not a number")))?);
        }
        if let Some(v) = values.get("protocol").filter(|v| !v.is_empty()) {
            self.protocol = v.clone();
        }
        if let Some(v) = values.get("zone").filter(|v| !v.is_empty()) {
            self.zone = Some(v.clone());
        }
        if let Some(v) = values.get("enable_virtual_host_style") {
            self.enable_virtual_host_style = matches!(v.as_str(), "true" | "True" | "1" | "yes");
        }
        Ok(())
    }

    /// Reads a QingStor config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, InvalidInput> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| InvalidInput::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config = Self::new(Credentials::new("", ""));
        config.apply(&parse_config_file(&text))?;
        config.check()?;
        Ok(config)
    }

    /// The configuration the official SDKs would use: defaults, then the config file
    /// (`QINGSTOR_CONFIG_PATH`, else `~/.qingstor/config.yaml`, when it exists), then the
    /// environment (`QINGSTOR_ACCESS_KEY_ID`, `QINGSTOR_SECRET_ACCESS_KEY`, `QINGSTOR_HOST`,
    /// `QINGSTOR_PORT`, `QINGSTOR_PROTOCOL`, `QINGSTOR_ZONE`, `QINGSTOR_ENABLE_VIRTUAL_HOST_STYLE`).
    pub fn load() -> Result<Self, InvalidInput> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(&env)
    }

    fn load_from(env: &HashMap<String, String>) -> Result<Self, InvalidInput> {
        let mut config = Self::new(Credentials::new("", ""));
        let file = env
            .get("QINGSTOR_CONFIG_PATH")
            .map(PathBuf::from)
            .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".qingstor/config.yaml")));
        if let Some(file) = file.filter(|f| f.exists()) {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| InvalidInput::Config(format!("cannot read {}: {e}", file.display())))?;
            config.apply(&parse_config_file(&text))?;
        }
        let from_env: HashMap<String, String> = env
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("QINGSTOR_").map(|k| (k.to_ascii_lowercase(), v.clone())))
            .collect();
        config.apply(&from_env)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), InvalidInput> {
        if self.credentials.access_key_id.is_empty() || self.credentials.secret_access_key.expose().is_empty() {
            return Err(InvalidInput::Config(
                "no credentials: set QINGSTOR_ACCESS_KEY_ID and QINGSTOR_SECRET_ACCESS_KEY, or access_key_id and secret_access_key in ~/.qingstor/config.yaml".into(),
            ));
        }
        if !matches!(self.protocol.as_str(), "http" | "https") {
            return Err(InvalidInput::Config(format!("protocol {:?} is neither http nor https", self.protocol)));
        }
        Ok(())
    }

    /// `host[:port]` of a request for `bucket`. The host must be a host name or IP address and
    /// the zone one DNS label: a zone of `evil.example/` would otherwise send the request, signed,
    /// to `evil.example`.
    pub(crate) fn authority(&self, bucket: Option<&str>) -> Result<String, InvalidInput> {
        if !upload_core::http::is_host_name(&self.host) {
            return Err(InvalidInput::Config(format!(
                "host {:?} is not a host name (DNS labels of letters, digits and hyphens) or an IP address",
                self.host
            )));
        }
        if let Some(zone) = self.zone.as_deref().filter(|z| !upload_core::http::is_dns_label(z)) {
            return Err(InvalidInput::Config(format!(
                "zone {zone:?} is not a zone name (one DNS label: letters, digits and hyphens, such as pek3a)"
            )));
        }
        let is_ip = self.host.parse::<std::net::IpAddr>().is_ok() || self.host == "localhost";
        let mut host = match (&self.zone, is_ip) {
            (Some(zone), false) => format!("{zone}.{}", self.host),
            (None, false) if bucket.is_some() => {
                return Err(InvalidInput::Config("bucket requests need a zone (pek3a, sh1a, …)".into()));
            }
            _ => self.host.clone(),
        };
        if let (true, Some(b)) = (self.enable_virtual_host_style && !is_ip, bucket) {
            host = format!("{b}.{host}");
        }
        Ok(match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        })
    }

    /// Whether bucket names go into the host.
    pub(crate) fn virtual_host(&self) -> bool {
        self.enable_virtual_host_style && self.host.parse::<std::net::IpAddr>().is_err() && self.host != "localhost"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_then_environment() {
        let dir = std::env::temp_dir().join(format!("qingstor-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(
            &file,
            "# QingStor\naccess_key_id: 'FILE_AK'\nsecret_access_key: \"FILE_SK\"\nhost: 'qingstor.com'\nport: 443\nprotocol: 'https'\nzone: 'pek3b' # Beijing\nenable_virtual_host_style: true\n",
        )
        .unwrap();
        let from_file = Config::from_file(&file).unwrap();
        assert_eq!(from_file.credentials.access_key_id, "FILE_AK");
        assert_eq!(from_file.credentials.secret_access_key.expose(), "FILE_SK");
        assert_eq!((from_file.zone.as_deref(), from_file.port), (Some("pek3b"), Some(443)));
        assert_eq!(from_file.authority(Some("bkt")).unwrap(), "bkt.pek3b.qingstor.com:443");

        let env: HashMap<String, String> = [
            ("QINGSTOR_CONFIG_PATH", file.to_str().unwrap()),
            ("QINGSTOR_ACCESS_KEY_ID", "ENV_AK"),
            ("QINGSTOR_ZONE", "sh1a"),
            ("QINGSTOR_ENABLE_VIRTUAL_HOST_STYLE", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let loaded = Config::load_from(&env).unwrap();
        assert_eq!(loaded.credentials.access_key_id, "ENV_AK");
        assert_eq!(loaded.credentials.secret_access_key.expose(), "FILE_SK");
        assert_eq!(loaded.authority(Some("bkt")).unwrap(), "sh1a.qingstor.com:443");
        let err = Config::load_from(&HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("QINGSTOR_ACCESS_KEY_ID"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn endpoints_and_zones() {
        let c =
            Config::new(Credentials::new("a", "b")).with_endpoint("http://127.0.0.1:9000").unwrap().with_zone("pek3a");
        assert_eq!(c.authority(Some("bkt")).unwrap(), "127.0.0.1:9000");
        assert!(!c.virtual_host());
        let c = Config::new(Credentials::new("a", "b"));
        assert!(c.authority(Some("bkt")).unwrap_err().to_string().contains("need a zone"));
        assert_eq!(c.authority(None).unwrap(), "qingstor.com");
        // A zone or host that would move the request elsewhere is refused, and so is userinfo.
        for zone in ["evil.example/", "pek3a.evil.example", "a@b", "pek3a#", ""] {
            let err = Config::new(Credentials::new("a", "b")).with_zone(zone).authority(Some("bkt")).unwrap_err();
            assert!(err.to_string().contains("not a zone name"), "{zone:?}: {err}");
        }
        let bad_host = Config { host: "evil.example/x?".into(), ..Config::new(Credentials::new("a", "b")) };
        assert!(bad_host.authority(None).unwrap_err().to_string().contains("not a host name"));
        for endpoint in ["https://user:pw@qingstor.com", "http://attacker@127.0.0.1:9000", "http://a/b@c"] {
            let err = Config::new(Credentials::new("a", "b")).with_endpoint(endpoint).unwrap_err().to_string();
            assert!(
                err.contains("user name or password") || err.contains("http(s)://host[:port]"),
                "{endpoint}: {err}"
            );
            assert!(!err.contains("pw@"), "{err}");
        }
    }
}
