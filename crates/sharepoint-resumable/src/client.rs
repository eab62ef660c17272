//! The operations layer: one method per Graph call of the upload-session family, stateless,
//! typed in and out, with Graph's names. The bearer token goes to Graph only: fragments, status,
//! cancel and commit go to the upload URL, which is its own credential, without it. The upload
//! URL goes to Graph in one place only: the body of [`Client::commit_by_source_url`], the
//! explicit commit, which Graph needs it for; it never goes into logs, errors or `Debug`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use upload_core::Secret;

use crate::auth::Tokens;
use crate::config::Config;
use crate::error::{Error, ErrorCode, InvalidInput, ServiceError};
use crate::types::*;

/// The largest fragment Graph accepts is below 60 MiB; this is the largest multiple of 320 KiB
/// below it.
pub const MAX_FRAGMENT: u64 = 191 * FRAGMENT_MULTIPLE;

/// Every fragment but the last is a multiple of 320 KiB.
pub const FRAGMENT_MULTIPLE: u64 = 320 * 1024;

/// A drive, as Graph addresses it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Drive {
    /// `/drives/{drive-id}`
    Id(String),
    /// `/me/drive`
    Me,
    /// `/sites/{site-id}/drive`
    Site(String),
    /// `/groups/{group-id}/drive`
    Group(String),
    /// `/users/{user-id}/drive`
    User(String),
}

impl Drive {
    fn base(&self) -> String {
        let seg = |s: &str| encode_segment(s);
        match self {
            Drive::Id(id) => format!("drives/{}", seg(id)),
            Drive::Me => "me/drive".into(),
            Drive::Site(id) => format!("sites/{}/drive", seg(id)),
            Drive::Group(id) => format!("groups/{}/drive", seg(id)),
            Drive::User(id) => format!("users/{}/drive", seg(id)),
        }
    }
}

/// An item in a drive: by path under the root, by name under a parent item, or by id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Item {
    /// `root:/{path}:` (`dir/name.bin`)
    Path(String),
    /// `items/{parent-id}:/{name}:`
    Child {
        /// The parent folder's id.
        parent_id: String,
        /// The file name.
        name: String,
    },
    /// `items/{item-id}`: an existing file, to replace.
    Id(String),
}

impl Item {
    /// The file name, when the address has one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Item::Path(p) => p.rsplit('/').next(),
            Item::Child { name, .. } => Some(name),
            Item::Id(_) => None,
        }
    }
}

/// Percent-encodes one path segment (RFC 3986 unreserved bytes stay).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks a path against what OneDrive and SharePoint accept in names.
pub fn validate_path(path: &str) -> Result<(), InvalidInput> {
    let bad = |reason| Err(InvalidInput::Path { path: path.to_owned(), reason });
    if path.is_empty() {
        return bad("it is empty");
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return bad("it has an empty segment (a leading, trailing or doubled /)");
        }
        if segment.chars().any(|c| matches!(c, '"' | '*' | ':' | '<' | '>' | '?' | '\\' | '|') || c.is_control()) {
            return bad("names cannot contain \" * : < > ? \\ | or control characters");
        }
        if segment.starts_with(' ') || segment.ends_with(' ') || segment.ends_with('.') {
            return bad("names cannot start or end with a space, nor end with a dot");
        }
        if segment.chars().count() > 255 {
            return bad("names are at most 255 characters");
        }
    }
    Ok(())
}

fn item_path(drive: &Drive, item: &Item) -> Result<String, InvalidInput> {
    let encoded = |p: &str| p.split('/').map(encode_segment).collect::<Vec<_>>().join("/");
    Ok(match item {
        Item::Path(p) => {
            validate_path(p)?;
            format!("{}/root:/{}:", drive.base(), encoded(p))
        }
        Item::Child { parent_id, name } => {
            validate_path(name)?;
            if name.contains('/') {
                return Err(InvalidInput::Path { path: name.clone(), reason: "a child name has no /" });
            }
            format!("{}/items/{}:/{}:", drive.base(), encode_segment(parent_id), encoded(name))
        }
        Item::Id(id) => format!("{}/items/{}", drive.base(), encode_segment(id)),
    })
}

/// What a fragment PUT answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Accepted (202): what is still expected.
    Accepted(UploadSession),
    /// The last byte: the file (201 created, 200 replaced).
    Done(Box<DriveItem>),
}

struct Inner {
    config: Config,
    http: reqwest::Client,
    tokens: Arc<Tokens>,
}

/// A Graph client: configuration, a connection pool and the current token. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Retry-After`: seconds (possibly fractional, as Graph sends them) or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = header_str(headers, "retry-after")?;
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
        .or_else(|| upload_core::retry::parse_retry_after(v, SystemTime::now()))
}

async fn service_error(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    let wait = retry_after(response.headers());
    let request_id = header_str(response.headers(), "request-id").map(str::to_owned);
    let bytes = read_document(response, "error document").await.unwrap_or_default();
    match ServiceError::from_document(status, &bytes, request_id.clone(), wait) {
        Some(e) => e.into(),
        None => ServiceError {
            status,
            code: fallback_code(status),
            inner: Vec::new(),
            message: format!("HTTP {status} without Graph's error document ({} bytes)", bytes.len()),
            request_id,
            retry_after: wait,
        }
        .into(),
    }
}

fn fallback_code(status: u16) -> ErrorCode {
    match status {
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::AccessDenied,
        404 => ErrorCode::ItemNotFound,
        409 => ErrorCode::NameAlreadyExists,
        412 => ErrorCode::ResourceModified,
        416 => ErrorCode::InvalidRange,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::ServiceNotAvailable,
        507 => ErrorCode::QuotaLimitReached,
        s if s >= 500 => ErrorCode::GeneralException,
        _ => ErrorCode::InvalidRequest,
    }
}

/// Reads an answer's body, at most [`upload_core::http::MAX_DOCUMENT`] bytes.
pub(crate) async fn read_document(response: reqwest::Response, operation: &'static str) -> Result<Bytes, Error> {
    upload_core::http::read_document(response).await.map_err(|e| match e {
        upload_core::http::DocumentError::TooLong => Error::MalformedResponse { operation, detail: e.to_string() },
        upload_core::http::DocumentError::Transport(t) => Error::transport(t),
    })
}

impl Client {
    /// A client for a configuration.
    pub fn new(config: Config) -> Result<Self, Error> {
        config.check_urls()?;
        // No redirects: one would carry the credentials (and a part's body) elsewhere.
        let http = upload_core::http::client(config.connect_timeout).map_err(Error::transport)?;
        let tokens = Tokens::new(config.auth.clone(), config.login_url.clone());
        Ok(Self { inner: Arc::new(Inner { config, http, tokens }) })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A call to Graph with the bearer token (refreshed once on 401).
    async fn graph(
        &self,
        method: Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Option<Bytes>,
        expected: &[u16],
        operation: &'static str,
    ) -> Result<reqwest::Response, Error> {
        let url = format!("{}/{path}", self.config().graph_url);
        let tokens = &self.inner.tokens;
        let mut token = tokens.get(&self.inner.http).await?;
        let mut refreshed = false;
        loop {
            let mut bearer =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    Error::Auth { status: 0, detail: "the access token is not a valid header value".into() }
                })?;
            bearer.set_sensitive(true);
            let mut request = self
                .inner
                .http
                .request(method.clone(), &url)
                .header("authorization", bearer)
                .timeout(self.config().call_timeout);
            for (name, value) in headers {
                request = request.header(*name, value.as_str());
            }
            if let Some(b) = &body {
                request = request.header("content-type", "application/json").body(b.clone());
            }
            let response = request.send().await.map_err(Error::transport)?;
            let status = response.status().as_u16();
            if status == 401 && tokens.can_refresh() && !refreshed {
                refreshed = true;
                token = tokens.renew(&self.inner.http, &token).await?;
                continue;
            }
            if expected.contains(&status) {
                return Ok(response);
            }
            if response.status().is_success() {
                return Err(Error::MalformedResponse { operation, detail: format!("unexpected status {status}") });
            }
            return Err(service_error(response).await);
        }
    }

    /// The upload URL, parsed, when [`Config::trusts_upload_url`] allows it; the error names
    /// the rule and the host, never the URL (it is a credential).
    pub fn trusted_upload_url(&self, url: &Secret) -> Result<reqwest::Url, InvalidInput> {
        let parsed = reqwest::Url::parse(url.expose())
            .map_err(|_| InvalidInput::Config("the upload URL is not a URL".into()))?;
        if !self.config().trusts_upload_url(&parsed) {
            return Err(InvalidInput::UntrustedUploadUrl {
                scheme: parsed.scheme().to_owned(),
                host: parsed.host_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(parsed)
    }

    /// A call to an upload URL: no Authorization header (the URL is the credential).
    async fn upload_url(
        &self,
        method: Method,
        url: &Secret,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<reqwest::Response, Error> {
        let parsed = self.trusted_upload_url(url)?;
        let mut request = self.inner.http.request(method.clone(), parsed);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        if body.len() < (1 << 20) {
            request = request.timeout(self.config().call_timeout);
        }
        if matches!(method, Method::PUT | Method::POST) {
            request = request.header(reqwest::header::CONTENT_LENGTH, body.len());
        }
        request.body(body).send().await.map_err(Error::transport)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        operation: &'static str,
        response: reqwest::Response,
    ) -> Result<T, Error> {
        let bytes = read_document(response, operation).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::MalformedResponse { operation, detail: e.to_string() })
    }

    /// createUploadSession for an item (new by path or by parent and name, or an existing one
    /// by id to replace), with `If-Match` when given.
    pub async fn create_upload_session(
        &self,
        drive: &Drive,
        item: &Item,
        input: &CreateUploadSessionInput,
        if_match: Option<&str>,
    ) -> Result<UploadSession, Error> {
        let path = format!("{}/createUploadSession", item_path(drive, item)?);
        let body = Bytes::from(
            serde_json::to_vec(input)
                .map_err(|e| Error::MalformedResponse { operation: "createUploadSession", detail: e.to_string() })?,
        );
        let headers: Vec<(&'static str, String)> = if_match.map(|e| ("if-match", e.to_owned())).into_iter().collect();
        let response =
            self.graph(Method::POST, &path, &headers, Some(body), &[200, 201], "createUploadSession").await?;
        let session: UploadSession = Self::json("createUploadSession", response).await?;
        if session.upload_url.is_none() {
            return Err(Error::MalformedResponse { operation: "createUploadSession", detail: "no uploadUrl".into() });
        }
        Ok(session)
    }

    /// Uploads the fragment at `offset` of a file of `total` bytes to the session's upload URL.
    pub async fn put_fragment(
        &self,
        upload_url: &Secret,
        offset: u64,
        total: u64,
        body: Bytes,
    ) -> Result<Fragment, Error> {
        let len = body.len() as u64;
        let end = offset.checked_add(len).filter(|e| *e <= total && len > 0).ok_or_else(|| InvalidInput::Fragment {
            offset,
            len,
            rule: format!("a fragment is 1 byte or more and ends within the file's {total} bytes"),
        })?;
        if len > MAX_FRAGMENT {
            return Err(InvalidInput::Fragment { offset, len, rule: "fragments are below 60 MiB".into() }.into());
        }
        // Fragments end on the 320 KiB grid (all but the last): a whole fragment is then a
        // multiple of 320 KiB, and the rest of one Graph kept only in part still fits.
        if end != total && !end.is_multiple_of(FRAGMENT_MULTIPLE) {
            return Err(InvalidInput::Fragment {
                offset,
                len,
                rule: "every fragment but the last is a multiple of 320 KiB, ending on the 320 KiB grid".into(),
            }
            .into());
        }
        let headers = [
            ("content-range", format!("bytes {offset}-{}/{total}", end - 1)),
            ("content-type", "application/octet-stream".to_owned()),
        ];
        let response = self.upload_url(Method::PUT, upload_url, &headers, body).await?;
        match response.status().as_u16() {
            202 => Ok(Fragment::Accepted(Self::json("upload fragment", response).await?)),
            200 | 201 => {
                let bytes = read_document(response, "upload fragment").await?;
                // The item; some services repeat the session instead (then it is not done).
                match serde_json::from_slice::<DriveItem>(&bytes) {
                    Ok(item) => Ok(Fragment::Done(Box::new(item))),
                    Err(_) => serde_json::from_slice::<UploadSession>(&bytes)
                        .map(Fragment::Accepted)
                        .map_err(|e| Error::MalformedResponse { operation: "upload fragment", detail: e.to_string() }),
                }
            }
            s if (200..300).contains(&s) => {
                Err(Error::MalformedResponse { operation: "upload fragment", detail: format!("unexpected status {s}") })
            }
            _ => Err(service_error(response).await),
        }
    }

    /// The session's status: what is still expected.
    pub async fn session_status(&self, upload_url: &Secret) -> Result<UploadSession, Error> {
        let response = self.upload_url(Method::GET, upload_url, &[], Bytes::new()).await?;
        if !response.status().is_success() {
            return Err(service_error(response).await);
        }
        Self::json("get upload session", response).await
    }

    /// Cancels the session: the server discards what it received.
    pub async fn cancel(&self, upload_url: &Secret) -> Result<(), Error> {
        let response = self.upload_url(Method::DELETE, upload_url, &[], Bytes::new()).await?;
        if response.status().is_success() { Ok(()) } else { Err(service_error(response).await) }
    }

    /// Commits a session created with `deferCommit` once every byte is in.
    pub async fn commit(&self, upload_url: &Secret) -> Result<DriveItem, Error> {
        let response = self.upload_url(Method::POST, upload_url, &[], Bytes::new()).await?;
        if !response.status().is_success() {
            return Err(service_error(response).await);
        }
        Self::json("commit upload session", response).await
    }

    /// The explicit commit (Graph's "PUT with `@microsoft.graph.sourceUrl`"): makes the bytes of
    /// a session the file at `item`'s address, which need not be the address the session was
    /// created for: `PUT {item}` on Graph with the bearer token and the JSON body
    /// `{"@microsoft.graph.sourceUrl": upload_url, "name": …, "@microsoft.graph.conflictBehavior": …}`
    /// (`name` from the address, when it has one; `conflict_behavior` fail, replace or rename,
    /// left to the session when `None`), with `If-Match` when given (412 `resourceModified` when
    /// the item changed). It commits a session created with `deferCommit` once every byte is in
    /// (OneDrive Personal has no `POST` commit), or one whose last fragment found the name taken
    /// (409 `nameAlreadyExists`: commit it under another name or with `replace`) or the drive
    /// full (507), which Graph keeps until it expires. 201 for a new item, 200 for a replaced one.
    ///
    /// The upload URL is a credential. This is the one call that sends it to Graph (in the body,
    /// over the Graph connection); it is never put into an error, a log or a `Debug` output.
    pub async fn commit_by_source_url(
        &self,
        drive: &Drive,
        item: &Item,
        upload_url: &Secret,
        conflict_behavior: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<DriveItem, Error> {
        const OPERATION: &str = "commit upload session by sourceUrl";
        if let Some(b) = conflict_behavior
            && !matches!(b, "fail" | "replace" | "rename")
        {
            return Err(InvalidInput::Config(format!("conflict behavior {b:?}: fail, replace or rename")).into());
        }
        let path = item_path(drive, item)?;
        let mut doc = serde_json::Map::new();
        if let Some(name) = item.name() {
            doc.insert("name".into(), name.into());
        }
        if let Some(b) = conflict_behavior {
            doc.insert("@microsoft.graph.conflictBehavior".into(), b.into());
        }
        doc.insert("@microsoft.graph.sourceUrl".into(), upload_url.expose().into());
        // Only a generic message on failure: serde's own could quote the body.
        let body = serde_json::to_vec(&doc).map_err(|_| Error::MalformedResponse {
            operation: OPERATION,
            detail: "the request body could not be written".into(),
        })?;
        let headers: Vec<(&'static str, String)> = if_match.map(|e| ("if-match", e.to_owned())).into_iter().collect();
        let response =
            self.graph(Method::PUT, &path, &headers, Some(Bytes::from(body)), &[200, 201], OPERATION).await?;
        Self::json(OPERATION, response).await
    }

    /// Gets an item's metadata (size, hashes, eTag).
    pub async fn get_item(&self, drive: &Drive, item: &Item) -> Result<DriveItem, Error> {
        let path = item_path(drive, item)?;
        let response = self.graph(Method::GET, &path, &[], None, &[200], "get item").await?;
        Self::json("get item", response).await
    }
}

/// The first byte a session still expects: the smallest start of `nextExpectedRanges`, the
/// total when none is left. `None` when a range cannot be read.
pub fn next_expected(session: &UploadSession, total: u64) -> Option<u64> {
    let mut first: Option<u64> = None;
    for range in &session.next_expected_ranges {
        let start = range.split('-').next()?.trim().parse::<u64>().ok()?;
        first = Some(first.map_or(start, |f| f.min(start)));
    }
    Some(first.unwrap_or(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_encode_each_segment() {
        let p = |d: Drive, i: Item| item_path(&d, &i).unwrap();
        assert_eq!(p(Drive::Me, Item::Path("dir/a b#%.bin".into())), "me/drive/root:/dir/a%20b%23%25.bin:");
        assert_eq!(
            p(Drive::Id("b!x".into()), Item::Child { parent_id: "01P".into(), name: "中.bin".into() }),
            "drives/b%21x/items/01P:/%E4%B8%AD.bin:"
        );
        assert_eq!(p(Drive::Site("s".into()), Item::Id("9".into())), "sites/s/drive/items/9");
        assert_eq!(p(Drive::Group("g".into()), Item::Path("x".into())), "groups/g/drive/root:/x:");
        for bad in ["", "a//b", "/a", "a:b", "trail.", " lead", "q?"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expected_ranges_in_every_form() {
        let s = |r: &[&str]| UploadSession {
            next_expected_ranges: r.iter().map(|x| (*x).to_owned()).collect(),
            ..UploadSession::default()
        };
        assert_eq!(next_expected(&s(&["26-"]), 128), Some(26));
        assert_eq!(next_expected(&s(&["10485760-15334441"]), 15334442), Some(10485760));
        assert_eq!(next_expected(&s(&["77829-99375", "12345-55232"]), 99376), Some(12345));
        assert_eq!(next_expected(&s(&["300"]), 400), Some(300));
        assert_eq!(next_expected(&s(&[]), 400), Some(400));
        assert_eq!(next_expected(&s(&["x-"]), 400), None);
        assert_eq!(MAX_FRAGMENT, 62_586_880);
    }
}
