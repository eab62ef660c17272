//! The operations layer: one method per Box call of the chunked upload family (and the plain
//! upload for small files), stateless, typed in and out, with Box's names. Every call after
//! session creation goes to the absolute URLs the session returned (`session_endpoints`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use upload_core::Secret;

use crate::auth::Tokens;
use crate::config::Config;
use crate::error::{Error, ErrorCode, InvalidInput, ServiceError};
use crate::types::*;

/// Box's minimum file size for a chunked upload session (20 MB); smaller files take the plain
/// upload ([`Client::upload_file`]).
pub const CHUNKED_MIN: u64 = 20_000_000;

/// Checks a file name against Box's rules.
pub fn validate_file_name(name: &str) -> Result<(), InvalidInput> {
    let bad = |reason| Err(InvalidInput::FileName { name: name.to_owned(), reason });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.chars().count() > 255 {
        return bad("Box names are at most 255 characters");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("Box names cannot contain / or \\");
    }
    if name.chars().any(char::is_control) {
        return bad("Box names cannot contain non-printable characters");
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return bad("Box names cannot start or end with a space");
    }
    if name == "." || name == ".." {
        return bad("Box names cannot be . or ..");
    }
    Ok(())
}

/// Checks that a folder or file id is a Box id.
pub fn validate_id(what: &'static str, id: &str) -> Result<(), InvalidInput> {
    if !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(InvalidInput::Id { what, id: id.to_owned() })
    }
}

/// Checks a part against the session's grid before it is sent: it starts on a multiple of the
/// part size, has exactly the part size unless it ends the file, and ends within the file.
pub fn check_range(session: &UploadSession, offset: u64, len: u64, file_size: u64) -> Result<(), InvalidInput> {
    let part_size = session.part_size;
    let bad = |rule: String| Err(InvalidInput::ContentRange { offset, len, rule });
    if part_size == 0 {
        return bad("the session has no part size".into());
    }
    if file_size.div_ceil(part_size) != u64::from(session.total_parts) {
        return bad(format!(
            "a file of {file_size} bytes in parts of {part_size} makes {} parts, the session has {}",
            file_size.div_ceil(part_size),
            session.total_parts
        ));
    }
    if !offset.is_multiple_of(part_size) {
        return bad(format!("parts start at multiples of the part size {part_size}"));
    }
    match offset.checked_add(len) {
        Some(end) if end > file_size => bad(format!("it ends past the file's {file_size} bytes")),
        Some(end) if end != file_size && len != part_size => {
            bad(format!("every part but the last has exactly the part size {part_size}"))
        }
        None => bad("it overflows".into()),
        _ if len == 0 && file_size > 0 => bad("a part is never empty".into()),
        _ => Ok(()),
    }
}

/// `sha=<base64>`: the `Digest` header of a part or of the whole file.
pub fn digest_header(sha1: &[u8; 20]) -> String {
    format!("sha={}", STANDARD.encode(sha1))
}

/// What Commit answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Commit {
    /// The file (201).
    Done(Box<File>),
    /// Box has the parts but is still processing them (202): commit again after the wait.
    Processing {
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
}

/// A request before it is sent.
struct Call {
    operation: &'static str,
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Call {
    fn new(operation: &'static str, method: Method, url: String) -> Self {
        Self { operation, method, url, headers: Vec::new(), body: Bytes::new() }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn json<T: serde::Serialize>(mut self, body: &T) -> Result<Self, Error> {
        self.body = Bytes::from(
            serde_json::to_vec(body)
                .map_err(|e| Error::MalformedResponse { operation: self.operation, detail: e.to_string() })?,
        );
        Ok(self.header("content-type", "application/json"))
    }
}

struct Inner {
    config: Config,
    http: reqwest::Client,
    tokens: Arc<Tokens>,
}

/// A Box client: configuration, a connection pool and the current token. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn endpoint<'s>(session: &'s UploadSession, pick: fn(&'s SessionEndpoints) -> &'s Option<String>) -> Option<&'s str> {
    session.session_endpoints.as_ref().and_then(|e| pick(e).as_deref())
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
        let tokens = Tokens::new(config.auth.clone(), config.oauth_url.clone());
        Ok(Self { inner: Arc::new(Inner { config, http, tokens }) })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The newest refresh token, for [`Auth::RefreshToken`](crate::Auth::RefreshToken): Box
    /// replaces it at every refresh, so store this one for the next run.
    pub fn refresh_token(&self) -> Option<Secret> {
        self.inner.tokens.refresh_token()
    }

    fn session_url(&self, session: &UploadSession, suffix: &str) -> String {
        format!("{}/files/upload_sessions/{}{suffix}", self.config().upload_url, session.id)
    }

    async fn send(&self, call: Call, expected: &[u16]) -> Result<reqwest::Response, Error> {
        let url = reqwest::Url::parse(&call.url)
            .map_err(|e| InvalidInput::Config(format!("{} URL is not valid: {e}", call.operation)))?;
        if !self.config().trusts(&url) {
            let shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
            return Err(InvalidInput::UntrustedEndpoint(shown).into());
        }
        let tokens = &self.inner.tokens;
        let mut token = tokens.get(&self.inner.http).await?;
        let mut refreshed = false;
        loop {
            let mut bearer =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    Error::Auth { status: 0, detail: "the access token is not a valid header value".into() }
                })?;
            bearer.set_sensitive(true);
            let mut request = self.inner.http.request(call.method.clone(), url.clone()).header("authorization", bearer);
            if let Some(user) = &self.config().as_user {
                request = request.header("as-user", user.as_str());
            }
            for (name, value) in &call.headers {
                request = request.header(*name, value.as_str());
            }
            if call.body.len() < (1 << 20) {
                request = request.timeout(self.config().call_timeout);
            } else if call.operation.starts_with("Upload file") {
                // The plain upload has no engine timeout: the call timeout plus 2 s per MiB.
                let per_mib = Duration::from_secs(2) * u32::try_from(call.body.len() >> 20).unwrap_or(u32::MAX);
                request = request.timeout(self.config().call_timeout.saturating_add(per_mib));
            }
            if matches!(call.method, Method::PUT | Method::POST) {
                request = request.header(reqwest::header::CONTENT_LENGTH, call.body.len());
            }
            let response = request.body(call.body.clone()).send().await.map_err(Error::transport)?;
            let status = response.status().as_u16();
            if status == 401 && tokens.can_refresh() && !refreshed {
                // Once: a token that expired early, or was revoked.
                refreshed = true;
                token = tokens.renew(&self.inner.http, &token).await?;
                continue;
            }
            if expected.contains(&status) {
                return Ok(response);
            }
            if response.status().is_success() {
                return Err(Error::MalformedResponse {
                    operation: call.operation,
                    detail: format!("unexpected status {status}"),
                });
            }
            return Err(service_error(response).await);
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        operation: &'static str,
        response: reqwest::Response,
    ) -> Result<T, Error> {
        let bytes = read_document(response, operation).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::MalformedResponse { operation, detail: e.to_string() })
    }

    /// Create upload session: for a new file of `file_size` bytes named `file_name` in a folder.
    pub async fn create_upload_session(
        &self,
        folder_id: &str,
        file_name: &str,
        file_size: u64,
    ) -> Result<UploadSession, Error> {
        validate_id("folder id", folder_id)?;
        validate_file_name(file_name)?;
        let body = CreateUploadSessionInput {
            folder_id: Some(folder_id.to_owned()),
            file_size,
            file_name: Some(file_name.to_owned()),
        };
        let url = format!("{}/files/upload_sessions", self.config().upload_url);
        let call = Call::new("Create upload session", Method::POST, url).json(&body)?;
        let response = self.send(call, &[201]).await?;
        Self::json("Create upload session", response).await
    }

    /// Create upload session for an existing file: its next version, optionally renamed.
    pub async fn create_file_upload_session(
        &self,
        file_id: &str,
        file_size: u64,
        file_name: Option<&str>,
    ) -> Result<UploadSession, Error> {
        validate_id("file id", file_id)?;
        if let Some(n) = file_name {
            validate_file_name(n)?;
        }
        let body = CreateUploadSessionInput { folder_id: None, file_size, file_name: file_name.map(str::to_owned) };
        let url = format!("{}/files/{file_id}/upload_sessions", self.config().upload_url);
        let call = Call::new("Create upload session for existing file", Method::POST, url).json(&body)?;
        let response = self.send(call, &[201]).await?;
        Self::json("Create upload session for existing file", response).await
    }

    /// Get upload session: its state, with `num_parts_processed`.
    pub async fn get_upload_session(&self, session: &UploadSession) -> Result<UploadSession, Error> {
        let url = endpoint(session, |e| &e.status).map_or_else(|| self.session_url(session, ""), str::to_owned);
        let response = self.send(Call::new("Get upload session", Method::GET, url), &[200]).await?;
        Self::json("Get upload session", response).await
    }

    /// Upload part: the bytes at `offset` of a file of `file_size` bytes, with their SHA-1.
    /// Box's answer is checked: the part it stored has this offset, size and SHA-1.
    pub async fn upload_part(
        &self,
        session: &UploadSession,
        offset: u64,
        file_size: u64,
        body: Bytes,
        sha1: &[u8; 20],
    ) -> Result<UploadPart, Error> {
        let len = body.len() as u64;
        check_range(session, offset, len, file_size)?;
        let last = (offset + len).checked_sub(1).unwrap_or(offset);
        let url = endpoint(session, |e| &e.upload_part).map_or_else(|| self.session_url(session, ""), str::to_owned);
        let mut call = Call::new("Upload part", Method::PUT, url)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("bytes {offset}-{last}/{file_size}"))
            .header("digest", digest_header(sha1));
        call.body = body;
        let response = self.send(call, &[200, 201]).await?;
        let part: UploadedPart = Self::json("Upload part", response).await?;
        let part = part.part;
        let ours = upload_core::hash::hex(sha1);
        let sha_ok = part.sha1.as_deref().is_none_or(|s| s.eq_ignore_ascii_case(&ours));
        if part.offset != offset || part.size != len || !sha_ok {
            return Err(upload_core::IntegrityError {
                what: "part".into(),
                expected: format!("offset {offset}, size {len}, sha1 {ours}"),
                actual: format!("offset {}, size {}, sha1 {}", part.offset, part.size, part.sha1.unwrap_or_default()),
            }
            .into());
        }
        Ok(part)
    }

    /// List parts: one page, `offset` counting parts (not bytes), at most 1000 per page.
    pub async fn list_parts(&self, session: &UploadSession, offset: u64, limit: u32) -> Result<UploadParts, Error> {
        let base =
            endpoint(session, |e| &e.list_parts).map_or_else(|| self.session_url(session, "/parts"), str::to_owned);
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}offset={offset}&limit={}", limit.clamp(1, 1000));
        let response = self.send(Call::new("List parts", Method::GET, url), &[200]).await?;
        Self::json("List parts", response).await
    }

    /// List parts, every page, sorted by offset. A server that lists more parts than the
    /// session has (`total_parts`) gets [`Error::MalformedResponse`] rather than being asked for
    /// ever.
    pub async fn list_all_parts(&self, session: &UploadSession) -> Result<Vec<UploadPart>, Error> {
        const PAGE: u32 = 1000;
        let mut parts: Vec<UploadPart> = Vec::new();
        loop {
            let page = self.list_parts(session, parts.len() as u64, PAGE).await?;
            let n = page.entries.len();
            parts.extend(page.entries);
            // Parts stored while the listing runs shift its pages, so an entry may come twice:
            // one page of slack.
            if parts.len() > session.total_parts as usize + PAGE as usize {
                return Err(Error::MalformedResponse {
                    operation: "List parts",
                    detail: format!("more parts than the session's {}", session.total_parts),
                });
            }
            // `offset` counts entries; a short page, or the total reached, ends the list.
            let reached = page.total_count.is_some_and(|t| parts.len() as u64 >= t);
            if n < PAGE as usize || reached {
                break;
            }
        }
        parts.sort_by_key(|p| p.offset);
        parts.dedup_by_key(|p| p.offset);
        Ok(parts)
    }

    /// Commit upload session: every part by offset, the whole file's SHA-1, optional attributes
    /// (`content_modified_at`, `description`…) and `If-Match` (the file's etag, for a version).
    pub async fn commit(
        &self,
        session: &UploadSession,
        parts: &[UploadPart],
        sha1: &[u8; 20],
        attributes: Option<serde_json::Value>,
        if_match: Option<&str>,
    ) -> Result<Commit, Error> {
        let mut parts = parts.to_vec();
        parts.sort_by_key(|p| p.offset);
        let url = endpoint(session, |e| &e.commit).map_or_else(|| self.session_url(session, "/commit"), str::to_owned);
        let mut call = Call::new("Commit upload session", Method::POST, url)
            .json(&CommitInput { parts, attributes })?
            .header("digest", digest_header(sha1));
        if let Some(etag) = if_match {
            call = call.header("if-match", etag);
        }
        let response = self.send(call, &[201, 202]).await?;
        if response.status().as_u16() == 202 {
            let retry_after = header_str(response.headers(), "retry-after")
                .and_then(|v| upload_core::retry::parse_retry_after(v, SystemTime::now()));
            return Ok(Commit::Processing { retry_after });
        }
        let files: Files = Self::json("Commit upload session", response).await?;
        committed(files)
    }

    /// Abort upload session: Box discards the parts.
    pub async fn abort(&self, session: &UploadSession) -> Result<(), Error> {
        let url = endpoint(session, |e| &e.abort).map_or_else(|| self.session_url(session, ""), str::to_owned);
        self.send(Call::new("Abort upload session", Method::DELETE, url), &[204]).await.map(drop)
    }

    /// Get file information: id, name, size, SHA-1, etag, version.
    pub async fn get_file(&self, file_id: &str) -> Result<File, Error> {
        validate_id("file id", file_id)?;
        let url = format!(
            "{}/files/{file_id}?fields=id,type,etag,sequence_id,name,size,sha1,description,content_modified_at,parent,file_version",
            self.config().api_url
        );
        let response = self.send(Call::new("Get file information", Method::GET, url), &[200]).await?;
        Self::json("Get file information", response).await
    }

    fn form(attributes: &serde_json::Value, body: &[u8]) -> (String, Bytes) {
        let boundary = format!("box-chunked-{:016x}", upload_core::hash::crc64::crc64(body) ^ body.len() as u64);
        let mut out = Vec::with_capacity(body.len() + 512);
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n{attributes}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"file\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(body);
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), Bytes::from(out))
    }

    async fn plain_upload(
        &self,
        operation: &'static str,
        url: String,
        attributes: serde_json::Value,
        body: &[u8],
        if_match: Option<&str>,
    ) -> Result<File, Error> {
        let sha1 = upload_core::Digests::compute(upload_core::Hashes::SHA1, body).sha1.unwrap_or_default();
        let (content_type, form) = Self::form(&attributes, body);
        // Box checks `content-md5` (which holds the SHA-1, in hex) against what it received.
        let mut call = Call::new(operation, Method::POST, url)
            .header("content-type", content_type)
            .header("content-md5", upload_core::hash::hex(&sha1));
        if let Some(etag) = if_match {
            call = call.header("if-match", etag);
        }
        call.body = form;
        let response = self.send(call, &[201]).await?;
        let files: Files = Self::json(operation, response).await?;
        files
            .entries
            .into_iter()
            .next()
            .ok_or_else(|| Error::MalformedResponse { operation, detail: "no file in the answer".into() })
    }

    /// Upload file: the plain upload of a whole small file (below [`CHUNKED_MIN`], up to 50 MB)
    /// into a folder, with its SHA-1 checked by Box. `attributes` may add
    /// `content_modified_at`, `description`…
    pub async fn upload_file(
        &self,
        folder_id: &str,
        file_name: &str,
        body: &[u8],
        attributes: Option<serde_json::Value>,
    ) -> Result<File, Error> {
        validate_id("folder id", folder_id)?;
        validate_file_name(file_name)?;
        let mut attrs = attributes.unwrap_or_else(|| serde_json::json!({}));
        if let Some(map) = attrs.as_object_mut() {
            map.insert("name".into(), file_name.into());
            map.insert("parent".into(), serde_json::json!({ "id": folder_id }));
        }
        let url = format!("{}/files/content", self.config().upload_url);
        self.plain_upload("Upload file", url, attrs, body, None).await
    }

    /// Upload file version: a new version of an existing file through the plain upload.
    pub async fn upload_file_version(
        &self,
        file_id: &str,
        body: &[u8],
        new_name: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<File, Error> {
        validate_id("file id", file_id)?;
        let mut attrs = serde_json::json!({});
        if let (Some(n), Some(map)) = (new_name, attrs.as_object_mut()) {
            validate_file_name(n)?;
            map.insert("name".into(), n.into());
        }
        let url = format!("{}/files/{file_id}/content", self.config().upload_url);
        self.plain_upload("Upload file version", url, attrs, body, if_match).await
    }
}

/// The file of a commit's answer (Box answers a list of one).
pub(crate) fn committed(files: Files) -> Result<Commit, Error> {
    files.entries.into_iter().next().map(|f| Commit::Done(Box::new(f))).ok_or_else(|| Error::MalformedResponse {
        operation: "Commit upload session",
        detail: "no file in the answer".into(),
    })
}

/// Reads Box's JSON error document; an answer without one is classified by its status.
async fn service_error(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = read_document(response, "error document").await.unwrap_or_default();
    error_from_answer(status, &headers, &bytes, SystemTime::now())
}

/// The error of an answer whose status, headers and body were read: Box's JSON error document,
/// else the status alone.
pub(crate) fn error_from_answer(status: u16, headers: &HeaderMap, bytes: &[u8], now: SystemTime) -> Error {
    let retry_after = header_str(headers, "retry-after").and_then(|v| upload_core::retry::parse_retry_after(v, now));
    let request_id = header_str(headers, "box-request-id").map(str::to_owned);
    let body = match serde_json::from_slice::<ClientError>(bytes) {
        Ok(mut body) if body.code.is_some() => {
            body.request_id = body.request_id.or(request_id);
            body
        }
        _ => ClientError {
            kind: Some("error".into()),
            status: Some(u32::from(status)),
            code: Some(fallback_code(status).into()),
            message: Some(if bytes.iter().all(u8::is_ascii_whitespace) {
                format!("HTTP {status} with no error document")
            } else {
                format!("HTTP {status} with an error that is not Box's JSON ({} bytes)", bytes.len())
            }),
            request_id,
            ..ClientError::default()
        },
    };
    let code_text = body.code.clone().unwrap_or_default();
    let code: ErrorCode = code_text.parse().unwrap_or(ErrorCode::Other(code_text));
    ServiceError { status, code, body, retry_after }.into()
}

fn fallback_code(status: u16) -> &'static str {
    match status {
        401 => "invalid_token",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        410 => "session_expired",
        411 => "length_required",
        412 => "precondition_failed",
        416 => "requested_range_not_satisfiable",
        429 => "rate_limit_exceeded",
        503 => "unavailable",
        s if s >= 500 => "internal_server_error",
        _ => "bad_request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_digests() {
        assert!(validate_file_name("Project.mov").is_ok());
        for bad in ["", " lead", "trail ", "a/b", "a\\b", ".", "..", "tab\there"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_file_name(&"x".repeat(256)).unwrap_err().to_string().contains("255"));
        assert!(validate_id("folder id", "0").is_ok());
        assert_eq!(
            validate_id("folder id", "abc").unwrap_err().to_string(),
            "folder id \"abc\" is not a Box id (a decimal number)"
        );
        // Reference vectors: boxsdk's part `ab` and the whole `abcdefg`.
        let sha = |b: &[u8]| upload_core::Digests::compute(upload_core::Hashes::SHA1, b).sha1.unwrap();
        assert_eq!(digest_header(&sha(b"ab")), "sha=2iNhTgJGmg18e9G9q1ycR0sZBNw=");
        assert_eq!(digest_header(&sha(b"abcdefg")), "sha=L7XhNBn8iSRoZeejJPR27GJOh0A=");
        assert_eq!(digest_header(&sha(b"")), "sha=2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
    }
}
