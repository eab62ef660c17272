//! The SharePoint REST operations of the chunked upload family, for sites reached without
//! Graph: `Files/add` and `Files/AddUsingPath` to create a file, then `StartUpload`,
//! `ContinueUpload`, `FinishUpload`, `CancelUpload` and `GetUploadStatus` on it, with their
//! `uploadId` and `fileOffset`. One method per call, stateless, typed in and out.
//!
//! * Answers are read in every OData flavour SharePoint sends (`d` wrappers of verbose, `value`
//!   of minimal and no metadata, Int64 results as JSON strings or numbers), whatever
//!   [`OData`](crate::config::OData) flavour was asked for.
//! * Authentication is a bearer token for the SharePoint host (no form digest needed), or
//!   browser cookies with a form digest from `/_api/contextinfo` on every POST, renewed before
//!   it expires and once more when SharePoint answers 403 to it.
//! * Paths go in `…ByServerRelativePath(DecodedUrl=…)` forms, which take `#` and `%` in names;
//!   string arguments are quoted (`'` doubled) and percent-encoded.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderValue;
use upload_core::Secret;
use upload_core::token::{Granted, TokenCache};

use crate::auth::Tokens;
use crate::client::{header_str, read_document, retry_after};
use crate::config::{RestAuth, RestConfig};
use crate::error::{Error, InvalidInput, RestServiceError, rest_codes};
use crate::types::{ContextWebInformation, SpFile, UploadStatus};

/// SharePoint refuses request bodies over this (250 MB), so chunks are at most this long.
pub const MAX_REQUEST: u64 = 262_144_000;

/// A file addressed for the chunk calls.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FileRef {
    /// `GetFileByServerRelativePath(DecodedUrl='/sites/x/Shared Documents/a.bin')`.
    Path(String),
    /// `GetFileById('{UniqueId}')`.
    Id(String),
}

/// Checks a file or folder name against what SharePoint accepts.
pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
    let bad = |reason| Err(InvalidInput::Path { path: name.to_owned(), reason });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.chars().any(|c| matches!(c, '"' | '*' | ':' | '<' | '>' | '?' | '/' | '\\' | '|') || c.is_control()) {
        return bad("SharePoint names cannot contain \" * : < > ? / \\ | or control characters");
    }
    if name.starts_with(' ') || name.ends_with(' ') || name.ends_with('.') {
        return bad("SharePoint names cannot start or end with a space, nor end with a dot");
    }
    if name.chars().count() > 255 {
        return bad("SharePoint names are at most 255 characters");
    }
    Ok(())
}

/// Checks a server-relative path (`/sites/x/Shared Documents/dir/a.bin`): absolute, every
/// segment a valid name, at most 400 characters as SharePoint counts them.
pub fn validate_server_relative(path: &str) -> Result<(), InvalidInput> {
    if !path.starts_with('/') {
        return Err(InvalidInput::Path { path: path.to_owned(), reason: "a server-relative path starts with /" });
    }
    if path.chars().count() > 400 {
        return Err(InvalidInput::Path {
            path: path.to_owned(),
            reason: "SharePoint paths are at most 400 characters",
        });
    }
    path[1..].split('/').try_for_each(validate_name)
}

/// A string argument of a REST function: quoted, `'` doubled, percent-encoded for the URL path.
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    out.push('\'');
    for &b in s.replace('\'', "''").as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b'\'') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('\'');
    out
}

fn guid_literal(id: &str) -> Result<String, InvalidInput> {
    let ok = id.len() == 36
        && id.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() });
    if ok {
        Ok(format!("guid'{id}'"))
    } else {
        Err(InvalidInput::Config(format!("upload id {id:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")))
    }
}

impl FileRef {
    fn api_path(&self) -> Result<String, InvalidInput> {
        Ok(match self {
            FileRef::Path(p) => {
                validate_server_relative(p)?;
                format!("web/GetFileByServerRelativePath(DecodedUrl={})", literal(p))
            }
            FileRef::Id(id) => format!("web/GetFileById({})", guid_literal(id)?),
        })
    }
}

/// A new random GUID for `uploadId` (version 4 layout).
pub fn new_upload_id() -> String {
    use std::hash::BuildHasher;
    let word = |salt: u64| {
        std::collections::hash_map::RandomState::new().hash_one((salt, SystemTime::now(), std::process::id()))
    };
    let (a, b) = (word(1), word(2));
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// The value of an answer, in whichever OData flavour it came: verbose `{"d":{…}}` (and
/// `{"d":{"Method":x}}` for scalars), minimal or no metadata `{"value":x}` for scalars and the
/// bare object for entities.
fn unwrap_odata(doc: serde_json::Value, method: &str) -> serde_json::Value {
    let doc = match doc {
        serde_json::Value::Object(mut map) if map.contains_key("d") => map.remove("d").unwrap_or_default(),
        other => other,
    };
    match doc {
        serde_json::Value::Object(mut map) => {
            if let Some(key) = map.keys().find(|k| k.eq_ignore_ascii_case(method)).cloned()
                && map.len() <= 2
            {
                return map.remove(&key).unwrap_or_default();
            }
            if map.contains_key("value") && !map.contains_key("Name") {
                return map.remove("value").unwrap_or_default();
            }
            serde_json::Value::Object(map)
        }
        other => other,
    }
}

fn int64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn document(operation: &'static str, bytes: &[u8]) -> Result<serde_json::Value, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::MalformedResponse { operation, detail: e.to_string() })
}

/// An entity answer of `method` (`SP.File`, the context information, an upload's status), in
/// whichever OData flavour it came.
pub(crate) fn parse_entity<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    method: &str,
    bytes: &[u8],
) -> Result<T, Error> {
    let value = unwrap_odata(document(operation, bytes)?, method);
    serde_json::from_value(value).map_err(|e| Error::MalformedResponse { operation, detail: e.to_string() })
}

/// The bytes-received answer (an Int64) of StartUpload or ContinueUpload, in any OData flavour.
pub(crate) fn parse_offset(operation: &'static str, method: &str, bytes: &[u8]) -> Result<u64, Error> {
    let value = unwrap_odata(document(operation, bytes)?, method);
    int64(&value).ok_or_else(|| Error::MalformedResponse {
        operation,
        detail: format!("expected the bytes received (an Int64), got {value}"),
    })
}

impl SpFile {
    /// The size in bytes (`Length`, an Int64 sent as a string).
    pub fn len(&self) -> Option<u64> {
        self.length.as_deref().and_then(|l| l.trim().parse().ok())
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

impl UploadStatus {
    /// The bytes the session holds (the leading number of `ExpectedContentRange`).
    pub fn held(&self) -> Option<u64> {
        let range = self.expected_content_range.as_deref()?.trim();
        let digits: String = range.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }
}

struct Inner {
    config: RestConfig,
    http: reqwest::Client,
    tokens: Option<Arc<Tokens>>,
    digest: TokenCache,
}

/// A SharePoint REST client for one site: configuration, a connection pool, the current token
/// or form digest. Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

async fn rest_error(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    let headers = response.headers();
    let wait = retry_after(headers);
    let request_id =
        header_str(headers, "sprequestguid").or_else(|| header_str(headers, "request-id")).map(str::to_owned);
    let bytes = read_document(response, "error document").await.unwrap_or_default();
    RestServiceError::from_document(status, &bytes, request_id.clone(), wait)
        .unwrap_or_else(|| RestServiceError {
            status,
            code: String::new(),
            hresult: None,
            message: format!("HTTP {status} without SharePoint's error document ({} bytes)", bytes.len()),
            request_id,
            retry_after: wait,
        })
        .into()
}

fn sensitive(value: &str, what: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| Error::Auth { status: 0, detail: format!("the {what} is not a valid header value") })?;
    v.set_sensitive(true);
    Ok(v)
}

impl RestClient {
    /// A client for a site.
    pub fn new(config: RestConfig) -> Result<Self, Error> {
        config.check_urls()?;
        // No redirects: one would carry the credentials (and a part's body) elsewhere.
        let http = upload_core::http::client(config.connect_timeout).map_err(Error::transport)?;
        let tokens = match &config.auth {
            RestAuth::Bearer(auth) => Some(Tokens::new(auth.clone(), config.login_url.clone())),
            RestAuth::Cookie(_) => None,
        };
        Ok(Self { inner: Arc::new(Inner { config, http, tokens, digest: TokenCache::new() }) })
    }

    /// The configuration.
    pub fn config(&self) -> &RestConfig {
        &self.inner.config
    }

    fn url(&self, api_path: &str) -> String {
        format!("{}/_api/{api_path}", self.config().site_url)
    }

    /// `POST /_api/contextinfo`: the form digest (and the site's URLs).
    pub async fn context_info(&self) -> Result<ContextWebInformation, Error> {
        // No digest and no renewal loop: this call is how digests are made.
        let http = &self.inner.http;
        let mut request = http
            .post(self.url("contextinfo"))
            .header("accept", self.config().odata.accept())
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .timeout(self.config().call_timeout);
        if let Some(tokens) = &self.inner.tokens {
            let token = tokens.get(http).await?;
            request =
                request.header("authorization", sensitive(&format!("Bearer {}", token.expose()), "access token")?);
        } else if let RestAuth::Cookie(cookie) = &self.config().auth {
            request = request.header("cookie", sensitive(cookie.expose(), "cookie")?);
        }
        let response = request.send().await.map_err(Error::transport)?;
        if !response.status().is_success() {
            return Err(rest_error(response).await);
        }
        Self::entity("contextinfo", "GetContextWebInformation", response).await
    }

    async fn fetch_digest(&self) -> Result<Granted, Error> {
        let info = self.context_info().await?;
        let token = info.form_digest_value.filter(|d| !d.is_empty()).ok_or_else(|| Error::MalformedResponse {
            operation: "contextinfo",
            detail: "no FormDigestValue".into(),
        })?;
        Ok(Granted {
            token: Secret::new(token),
            expires_in: Some(Duration::from_secs(info.form_digest_timeout_seconds.unwrap_or(1800))),
        })
    }

    /// One call with the site's credentials: the bearer token (renewed once on 401), or the
    /// cookies with a form digest on POSTs (renewed once on 403).
    async fn send(
        &self,
        method: Method,
        api_path: &str,
        body: Bytes,
        digest: bool,
    ) -> Result<reqwest::Response, Error> {
        let url = self.url(api_path);
        let http = &self.inner.http;
        let mut retried = false;
        loop {
            let mut request = http.request(method.clone(), &url).header("accept", self.config().odata.accept());
            let mut used_token = None;
            let mut used_digest = None;
            if let Some(tokens) = &self.inner.tokens {
                let token = tokens.get(http).await?;
                let bearer = sensitive(&format!("Bearer {}", token.expose()), "access token")?;
                request = request.header("authorization", bearer);
                used_token = Some(token);
            } else if let RestAuth::Cookie(cookie) = &self.config().auth {
                request = request.header("cookie", sensitive(cookie.expose(), "cookie")?);
                if digest && method == Method::POST {
                    let value = self.inner.digest.get(|| self.fetch_digest()).await?;
                    request = request.header("x-requestdigest", sensitive(value.expose(), "form digest")?);
                    used_digest = Some(value);
                }
            }
            if body.len() < (1 << 20) {
                request = request.timeout(self.config().call_timeout);
            }
            if matches!(method, Method::POST | Method::PUT) {
                request = request
                    .header(reqwest::header::CONTENT_LENGTH, body.len())
                    .header("content-type", "application/octet-stream")
                    .body(body.clone());
            }
            let response = request.send().await.map_err(Error::transport)?;
            let status = response.status().as_u16();
            if !retried {
                if let (401, Some(token), Some(tokens)) = (status, &used_token, &self.inner.tokens)
                    && tokens.can_refresh()
                {
                    retried = true;
                    tokens.renew(http, token).await?;
                    continue;
                }
                if let (403, Some(stale)) = (status, &used_digest) {
                    retried = true;
                    self.inner.digest.renew(stale, || self.fetch_digest()).await?;
                    continue;
                }
            }
            if response.status().is_success() {
                return Ok(response);
            }
            return Err(rest_error(response).await);
        }
    }

    async fn entity<T: serde::de::DeserializeOwned>(
        operation: &'static str,
        method: &str,
        response: reqwest::Response,
    ) -> Result<T, Error> {
        let bytes = read_document(response, operation).await?;
        parse_entity(operation, method, &bytes)
    }

    async fn offset(operation: &'static str, method: &str, response: reqwest::Response) -> Result<u64, Error> {
        let bytes = read_document(response, operation).await?;
        parse_offset(operation, method, &bytes)
    }

    /// `Files/AddUsingPath(DecodedUrl=…,Overwrite=…)` on a folder (server-relative): creates the
    /// file with `body` (possibly empty), or replaces it when `overwrite`.
    pub async fn add_using_path(
        &self,
        folder: &str,
        name: &str,
        overwrite: bool,
        body: Bytes,
    ) -> Result<SpFile, Error> {
        validate_server_relative(folder)?;
        validate_name(name)?;
        Self::check_len(body.len() as u64, 0)?;
        let path = format!(
            "web/GetFolderByServerRelativePath(DecodedUrl={})/Files/AddUsingPath(DecodedUrl={},Overwrite={overwrite})",
            literal(folder),
            literal(name)
        );
        let response = self.send(Method::POST, &path, body, true).await?;
        Self::entity("Files/AddUsingPath", "AddUsingPath", response).await
    }

    /// The classic `Files/add(url=…,overwrite=…)` on a folder (server-relative). Names with `#` or
    /// `%` need [`add_using_path`](Self::add_using_path).
    pub async fn files_add(&self, folder: &str, name: &str, overwrite: bool, body: Bytes) -> Result<SpFile, Error> {
        validate_server_relative(folder)?;
        validate_name(name)?;
        if name.contains(['#', '%']) {
            return Err(InvalidInput::Path {
                path: name.to_owned(),
                reason: "Files/add cannot take # or % in names; use AddUsingPath",
            }
            .into());
        }
        Self::check_len(body.len() as u64, 0)?;
        let path = format!(
            "web/GetFolderByServerRelativeUrl({})/Files/add(url={},overwrite={overwrite})",
            literal(folder),
            literal(name)
        );
        let response = self.send(Method::POST, &path, body, true).await?;
        Self::entity("Files/add", "add", response).await
    }

    /// The file's properties (`Length`, `UniqueId`, times, version).
    pub async fn get_file(&self, file: &FileRef) -> Result<SpFile, Error> {
        let response = self.send(Method::GET, &file.api_path()?, Bytes::new(), false).await?;
        Self::entity("get file", "GetFileByServerRelativePath", response).await
    }

    /// The file's content (`$value`).
    pub async fn download(&self, file: &FileRef) -> Result<Bytes, Error> {
        let response = self.send(Method::GET, &format!("{}/$value", file.api_path()?), Bytes::new(), false).await?;
        response.bytes().await.map_err(Error::transport)
    }

    fn check_len(len: u64, offset: u64) -> Result<(), InvalidInput> {
        if len > MAX_REQUEST {
            return Err(InvalidInput::Fragment {
                offset,
                len,
                rule: format!("SharePoint refuses request bodies over {MAX_REQUEST} bytes"),
            });
        }
        Ok(())
    }

    /// `StartUpload(uploadId=guid'…')` with the first chunk: the bytes the session holds.
    pub async fn start_upload(&self, file: &FileRef, upload_id: &str, chunk: Bytes) -> Result<u64, Error> {
        Self::check_len(chunk.len() as u64, 0)?;
        let path = format!("{}/StartUpload(uploadId={})", file.api_path()?, guid_literal(upload_id)?);
        let response = self.send(Method::POST, &path, chunk, true).await?;
        Self::offset("StartUpload", "StartUpload", response).await
    }

    /// `ContinueUpload(uploadId=guid'…',fileOffset=n)`: `file_offset` is the bytes the session
    /// holds; the answer is the bytes it holds after this chunk.
    pub async fn continue_upload(
        &self,
        file: &FileRef,
        upload_id: &str,
        file_offset: u64,
        chunk: Bytes,
    ) -> Result<u64, Error> {
        Self::check_len(chunk.len() as u64, file_offset)?;
        let path = format!(
            "{}/ContinueUpload(uploadId={},fileOffset={file_offset})",
            file.api_path()?,
            guid_literal(upload_id)?
        );
        let response = self.send(Method::POST, &path, chunk, true).await?;
        Self::offset("ContinueUpload", "ContinueUpload", response).await
    }

    /// `FinishUpload(uploadId=guid'…',fileOffset=n)` with the last chunk (possibly empty): the
    /// file, its content now the session's bytes.
    pub async fn finish_upload(
        &self,
        file: &FileRef,
        upload_id: &str,
        file_offset: u64,
        chunk: Bytes,
    ) -> Result<SpFile, Error> {
        Self::check_len(chunk.len() as u64, file_offset)?;
        let path = format!(
            "{}/FinishUpload(uploadId={},fileOffset={file_offset})",
            file.api_path()?,
            guid_literal(upload_id)?
        );
        let response = self.send(Method::POST, &path, chunk, true).await?;
        Self::entity("FinishUpload", "FinishUpload", response).await
    }

    /// `CancelUpload(uploadId=guid'…')`: the session's bytes are dropped (and a file created
    /// empty for it is deleted).
    pub async fn cancel_upload(&self, file: &FileRef, upload_id: &str) -> Result<(), Error> {
        let path = format!("{}/CancelUpload(uploadId={})", file.api_path()?, guid_literal(upload_id)?);
        self.send(Method::POST, &path, Bytes::new(), true).await.map(drop)
    }

    /// `GetUploadStatus(uploadId=guid'…')`: the bytes the session holds and its expiry.
    pub async fn get_upload_status(&self, file: &FileRef, upload_id: &str) -> Result<UploadStatus, Error> {
        let path = format!("{}/GetUploadStatus(uploadId={})", file.api_path()?, guid_literal(upload_id)?);
        let response = self.send(Method::GET, &path, Bytes::new(), false).await?;
        Self::entity("GetUploadStatus", "GetUploadStatus", response).await
    }
}

/// Whether an error says the upload session (or its file) is gone: unknown, expired, cancelled,
/// finished, or the file deleted.
pub fn is_session_gone(error: &Error) -> bool {
    error.sharepoint().is_some_and(|e| {
        e.status == 404
            || e.is(rest_codes::UPLOAD_SESSION_NOT_FOUND)
            || e.is(rest_codes::FILE_DOES_NOT_EXIST)
            || e.is(rest_codes::FILE_NOT_FOUND)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_and_encoded() {
        assert_eq!(
            literal("/sites/x/Shared Documents/it's #1 %.bin"),
            "'/sites/x/Shared%20Documents/it''s%20%231%20%25.bin'"
        );
        assert_eq!(literal("中"), "'%E4%B8%AD'");
        let id = new_upload_id();
        assert!(guid_literal(&id).is_ok(), "{id}");
        assert_ne!(id, new_upload_id());
        assert!(guid_literal("7e0c'); drop").is_err());
        assert_eq!(
            FileRef::Id("0123abcd-0000-4000-8000-00000000abcd".into()).api_path().unwrap(),
            "web/GetFileById(guid'0123abcd-0000-4000-8000-00000000abcd')"
        );
    }

    #[test]
    fn names_and_paths_sharepoint_refuses() {
        for bad in ["", "a:b", "a|b", "q?", "trail.", " lead", "tab\t", &"x".repeat(256)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a b.bin", "#1 %.bin", "中文.txt", "it's"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
        assert!(validate_server_relative("relative/a.bin").is_err());
        assert!(validate_server_relative(&format!("/sites/x/{}", "a/".repeat(200))).is_err());
        assert!(validate_server_relative("/sites/x/Shared Documents/a.bin").is_ok());
    }

    #[test]
    fn answers_in_every_flavour() {
        let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        for doc in [
            r#"{"d":{"StartUpload":"10485760"}}"#,
            r#"{"odata.metadata":"https://t/_api/$metadata#Edm.Int64","value":"10485760"}"#,
            r#"{"value":"10485760"}"#,
            r#"{"value":10485760}"#,
        ] {
            assert_eq!(int64(&unwrap_odata(v(doc), "StartUpload")), Some(10_485_760), "{doc}");
        }
        let file = r#"{"Name":"a.bin","Length":"31457280","UniqueId":"u","ServerRelativeUrl":"/sites/x/a.bin"}"#;
        let verbose = format!(r#"{{"d":{{"__metadata":{{"type":"SP.File"}},{}}}"#, &file[1..]);
        let minimal = format!(r#"{{"odata.metadata":"m","odata.type":"SP.File",{}"#, &file[1..]);
        for doc in [file.to_owned(), verbose, minimal] {
            let f: SpFile = serde_json::from_value(unwrap_odata(v(&doc), "FinishUpload")).unwrap();
            assert_eq!((f.len(), f.name.as_deref()), (Some(31_457_280), Some("a.bin")), "{doc}");
        }
        let status: UploadStatus = serde_json::from_value(unwrap_odata(
            v(r#"{"d":{"__metadata":{},"ExpectedContentRange":"20971520-","UploadId":"g"}}"#),
            "GetUploadStatus",
        ))
        .unwrap();
        assert_eq!(status.held(), Some(20_971_520));
        assert_eq!(int64(&unwrap_odata(v(r#"{"value":"x"}"#), "ContinueUpload")), None);
    }
}
