//! What the vendor clients share about HTTP (feature `http`):
//!
//! * the HTTP client, configured the same way for every vendor ([`client`]);
//! * reading answers: a document is read only up to [`MAX_DOCUMENT`] bytes, so a broken or
//!   hostile server cannot make a client buffer without bound (part bodies never come back
//!   through here; the vendor crates map [`DocumentError`] to their own errors);
//! * the clock: a [`ClockOffset`] learned from the server's time when it refuses a request for
//!   its signing time, added to every later signing time;
//! * configured addresses: [`check_base_url`] and [`is_host_name`], so that an endpoint cannot
//!   carry a user name and password (which HTTP clients turn into a `Basic` header) or smuggle a
//!   path into a host name.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};

/// The most bytes of an answer document read into memory (8 MiB). The vendors' documents are a
/// few kilobytes; a page of parts is at most a few hundred.
pub const MAX_DOCUMENT: usize = 8 << 20;

/// The HTTP client every vendor client uses: its connection timeout, idle connections kept
/// 50 s, and no redirects, since a redirect would carry a token, a signature or a part's body
/// to wherever it points.
pub fn client(connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// It is longer than [`MAX_DOCUMENT`] (announced, or found while reading).
    #[error("an answer of more than {MAX_DOCUMENT} bytes")]
    TooLong,
    /// The connection failed while reading it.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads an answer's body, refusing one longer than [`MAX_DOCUMENT`] as soon as it gets there.
pub async fn read_document(mut response: reqwest::Response) -> Result<Bytes, DocumentError> {
    if response.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return Err(DocumentError::TooLong);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(DocumentError::TooLong);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The server's clock minus the local one: zero until a server refuses a request for its
/// signing time, then learned from the server's time and added to every signing time. Shared
/// by a client's clones.
#[derive(Debug, Default)]
pub struct ClockOffset {
    millis: AtomicI64,
}

impl ClockOffset {
    /// The offset now.
    pub fn get(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.millis.load(Ordering::Relaxed))
    }

    /// Sets the offset (a process that knows the server's clock).
    pub fn set(&self, offset: chrono::Duration) {
        self.millis.store(offset.num_milliseconds(), Ordering::Relaxed);
    }

    /// The local clock corrected by the offset: the time to sign with.
    pub fn now(&self) -> SystemTime {
        shift(SystemTime::now(), self.millis.load(Ordering::Relaxed))
    }

    /// Learns the offset from the server's time in an answer received at `received` (local).
    pub fn learn(&self, received: SystemTime, server: SystemTime) {
        self.millis.store(millis_between(received, server), Ordering::Relaxed);
    }
}

/// `t` moved by `ms` milliseconds (either way).
fn shift(t: SystemTime, ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 { t.checked_add(d) } else { t.checked_sub(d) }.unwrap_or(t)
}

/// Milliseconds from `from` to `to` (negative when `to` is earlier).
fn millis_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

/// A server time that can be trusted to correct the local clock: not the epoch or another
/// obviously unset clock (a server once answered `Date: … 1970`).
pub fn plausible(t: chrono::DateTime<chrono::Utc>) -> Option<SystemTime> {
    (t.timestamp() >= 946_684_800).then(|| t.into())
}

/// The server's clock from an HTTP `Date` header, when it is readable and plausible.
pub fn server_date(header: Option<&str>) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc2822(header?.trim()).ok()?;
    plausible(t.with_timezone(&chrono::Utc))
}

/// Checks an address from configuration (an endpoint, an API base, a site): `http` or `https`,
/// a host, and no user name or password, which would go to the server as a `Basic` header
/// beside the vendor's own credentials. `what` names the setting in the error, which never
/// repeats a user name or password.
pub fn check_base_url(what: &str, text: &str) -> Result<reqwest::Url, String> {
    let shown = |t: &str| if t.contains('@') { "(not shown: it holds an @)".to_owned() } else { format!("{t:?}") };
    let url = reqwest::Url::parse(text).map_err(|e| format!("{what} {} is not a URL: {e}", shown(text)))?;
    if !url.username().is_empty() || url.password().is_some() {
        let mut bare = url.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        bare.set_query(None);
        bare.set_fragment(None);
        return Err(format!(
            "{what} {:?} carries a user name or password before its host: credentials go in the configuration, never in the address",
            bare.as_str()
        ));
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{what} {} must be an http(s) URL with a host", shown(text)));
    }
    Ok(url)
}

/// Whether `url` has the scheme, host and port of one of `configured` (addresses from
/// configuration, such as an API base or a list of trusted URLs), and no user name or password:
/// the rule by which a URL a server hands out may receive a credential or a file's bytes.
pub fn same_origin_as_any<'c>(url: &reqwest::Url, configured: impl IntoIterator<Item = &'c String>) -> bool {
    let unauthenticated = url.username().is_empty() && url.password().is_none();
    unauthenticated
        && configured.into_iter().any(|c| {
            reqwest::Url::parse(c).is_ok_and(|c| {
                c.scheme() == url.scheme()
                    && c.host_str() == url.host_str()
                    && c.port_or_known_default() == url.port_or_known_default()
            })
        })
}

/// A comma-separated list of URLs from an environment variable (`BOX_TRUSTED_URLS`,
/// `GRAPH_TRUSTED_URLS`), blanks dropped.
pub fn url_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
}

/// Whether `host` is a host name (labels of 1 to 63 letters, digits, inner hyphens and
/// underscores, as container and service names have them; 253 in all; one final dot allowed),
/// `localhost`, or an IP address: nothing that could end the host early (`/`, `@`, `:`, `?`,
/// `#`) and move the request elsewhere.
pub fn is_host_name(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label)
}

/// Whether `label` is one DNS label: 1 to 63 ASCII letters, digits and hyphens, neither first
/// nor last a hyphen.
pub fn is_dns_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_addresses_carry_no_credentials_and_hosts_are_names() {
        assert!(check_base_url("endpoint", "https://oss-cn-hangzhou.aliyuncs.com").is_ok());
        assert!(check_base_url("endpoint", "http://127.0.0.1:9000/v1.0").is_ok());
        for bad in ["https://user:hunter2@example.com", "https://user@example.com/x", "https://:hunter2@example.com"] {
            let err = check_base_url("endpoint", bad).unwrap_err();
            assert!(err.contains("user name or password"), "{err}");
            assert!(!err.contains("hunter2") && !err.contains("user@"), "{err}");
        }
        assert!(check_base_url("endpoint", "ftp://example.com").unwrap_err().contains("http(s)"));
        let err = check_base_url("endpoint", "https://u:p@example.com/x?sig=SECRET#f").unwrap_err();
        assert!(!err.contains("SECRET") && !err.contains(":p@"), "{err}");
        let err = check_base_url("endpoint", "https://us er:hunter2@exa mple.com").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");

        for good in
            ["qingstor.com", "pek3a", "a-b.c1", "localhost", "127.0.0.1", "::1", "oss_emulator", "qingstor.com."]
        {
            assert!(is_host_name(good), "{good}");
        }
        for bad in
            ["", "evil.example/", "a..b", "-a.b", "a-.b", "u@h", "h:80", "h?x", "h#x", "h b", &"a".repeat(64), "."]
        {
            assert!(!is_host_name(bad), "{bad:?}");
        }
        assert!(!is_dns_label("pek3_a") && is_dns_label("pek3a"));
    }

    #[test]
    fn the_offset_is_learned_from_a_plausible_server_date() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_702_781_677);
        assert_eq!(millis_between(t, shift(t, -1_800_000)), -1_800_000);
        assert_eq!(millis_between(t, shift(t, 1_800_500)), 1_800_500);
        assert_eq!(server_date(Some("Sun, 17 Dec 2023 02:54:37 GMT")), Some(t));
        assert_eq!(server_date(Some("Thu, 01 Jan 1970 00:00:00 GMT")), None);
        assert_eq!(server_date(Some("garbage")), None);
        assert_eq!(server_date(None), None);
        let offset = ClockOffset::default();
        offset.learn(t, shift(t, -1_800_000));
        assert_eq!(offset.get(), chrono::Duration::minutes(-30));
        let skew = SystemTime::now().duration_since(offset.now()).unwrap_or_default();
        assert!((Duration::from_secs(1799)..Duration::from_secs(1801)).contains(&skew), "{skew:?}");
    }
}
