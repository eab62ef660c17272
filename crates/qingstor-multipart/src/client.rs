//! The operations layer: one method per QingStor call, stateless, typed in and out, with
//! QingStor's names.

use std::sync::Arc;
use std::time::{Duration, SystemTime};
use upload_core::http::ClockOffset;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::config::Config;
use crate::error::{Error, ErrorCode, InvalidInput, ServiceError};
use crate::signing::{self, SignableRequest, encode_key};
use crate::types::*;

/// QingStor's largest part number (parts are numbered from 0).
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Checks a bucket name against QingStor's rules.
pub fn validate_bucket(bucket: &str) -> Result<(), InvalidInput> {
    let ok = (6..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !bucket.starts_with('-')
        && !bucket.ends_with('-')
        && bucket.parse::<std::net::IpAddr>().is_err();
    if ok { Ok(()) } else { Err(InvalidInput::BucketName(bucket.to_owned())) }
}

/// Checks an object key against QingStor's rules, and against what a URL can carry.
pub fn validate_key(key: &str) -> Result<(), InvalidInput> {
    if key.is_empty() {
        return Err(InvalidInput::ObjectKey("it is empty; QingStor keys are 1 to 1023 bytes".into()));
    }
    if key.len() > 1023 {
        return Err(InvalidInput::ObjectKey(format!(
            "it is {} bytes; QingStor keys are at most 1023 bytes",
            key.len()
        )));
    }
    if key.starts_with('/') {
        return Err(InvalidInput::ObjectKey("QingStor keys must not start with /".into()));
    }
    if key.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(InvalidInput::ObjectKey("a path segment of . or .. would be rewritten in the URL".into()));
    }
    Ok(())
}

fn check_part_number(n: u32) -> Result<(), InvalidInput> {
    if n <= MAX_PART_NUMBER { Ok(()) } else { Err(InvalidInput::PartNumber(n)) }
}

/// What Upload Multipart and Put Object returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartOutput {
    /// The ETag header, when QingStor sent one.
    pub etag: Option<String>,
}

/// What Head Object returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Content-Length.
    pub len: u64,
    /// ETag, as sent.
    pub etag: Option<String>,
    /// Content-Type.
    pub content_type: Option<String>,
}

/// A presigned request: the URL and the headers it must carry as signed.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    /// HTTP method.
    pub method: String,
    /// The URL, signature included: a credential until it expires.
    pub url: upload_core::Secret,
    /// Headers that were signed and must be sent as they are.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for PresignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedRequest").field("method", &self.method).field("url", &self.url).finish_non_exhaustive()
    }
}

/// A request before signing.
#[derive(Clone)]
struct Call<'a> {
    operation: &'static str,
    method: Method,
    bucket: &'a str,
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl<'a> Call<'a> {
    fn new(operation: &'static str, method: Method, bucket: &'a str, key: Option<&'a str>) -> Self {
        Self { operation, method, bucket, key, query: Vec::new(), headers: Vec::new(), body: Bytes::new() }
    }

    fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// A QingStor client: configuration plus a connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    http: reqwest::Client,
    /// The server's clock minus the local one: zero until QingStor refuses a
    /// request with `request_expired`, then learned from its `Date` and added to every signing
    /// time.
    clock_offset: ClockOffset,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// QingStor refused a header-signed request for its date: `403 request_expired` (QingStor has
/// no separate skew code; on a request signed in its header it means the 15-minute rule).
fn is_clock_skew(error: &Error) -> bool {
    matches!(error, Error::Service(e) if e.status == 403 && e.code == ErrorCode::RequestExpired)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn query_string(query: &[(String, String)]) -> String {
    query
        .iter()
        .map(|(n, v)| {
            let value = signing::encode_key(v).replace('/', "%2F");
            if v.is_empty() { n.clone() } else { format!("{n}={value}") }
        })
        .collect::<Vec<_>>()
        .join("&")
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
        // No redirects: one would carry the credentials (and a part's body) elsewhere.
        let http = upload_core::http::client(config.connect_timeout).map_err(Error::transport)?;
        Ok(Self { inner: Arc::new(Inner { config, http, clock_offset: ClockOffset::default() }) })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// How far QingStor's clock is from the local one (positive: QingStor is ahead), as this
    /// client (and its clones) learned it: zero until QingStor refuses a request with
    /// `request_expired`. When that happens the client reads the answer's `Date`, keeps the
    /// difference, and signs that request again and every later one, and presigned URLs, with
    /// the local clock plus this offset, as the official SDKs do.
    pub fn clock_offset(&self) -> chrono::Duration {
        self.inner.clock_offset.get()
    }

    /// Sets the offset of [`Client::clock_offset`], for a process that knows QingStor's clock
    /// already (a client that only presigns URLs never gets a refusal to learn it from).
    pub fn set_clock_offset(&self, offset: chrono::Duration) {
        self.inner.clock_offset.set(offset);
    }

    /// The time to sign with: the local clock corrected by the learned offset.
    fn now(&self) -> SystemTime {
        self.inner.clock_offset.now()
    }

    /// The request path as sent and the canonical path as signed.
    fn paths(&self, bucket: &str, key: Option<&str>) -> (String, String) {
        let encoded = key.map(encode_key);
        if self.config().virtual_host() {
            let path = format!("/{}", encoded.unwrap_or_default());
            let canonical = format!("/{bucket}{path}");
            (path, canonical)
        } else {
            let path = match encoded {
                Some(k) => format!("/{bucket}/{k}"),
                None => format!("/{bucket}"),
            };
            (path.clone(), path)
        }
    }

    fn url(&self, bucket: &str, path: &str, query: &[(String, String)]) -> Result<reqwest::Url, Error> {
        let c = self.config();
        let mut url = format!("{}://{}{path}", c.protocol, c.authority(Some(bucket))?);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query_string(query));
        }
        reqwest::Url::parse(&url).map_err(|e| InvalidInput::Config(format!("cannot build a URL: {e}")).into())
    }

    async fn send(&self, call: Call<'_>, expected: &[u16]) -> Result<reqwest::Response, Error> {
        validate_bucket(call.bucket)?;
        if let Some(k) = call.key {
            validate_key(k)?;
        }
        let mut corrected = false;
        loop {
            let response = self.send_once(call.clone()).await?;
            let status = response.status().as_u16();
            if expected.contains(&status) {
                return Ok(response);
            }
            if response.status().is_success() {
                return Err(Error::MalformedResponse {
                    operation: call.operation,
                    detail: format!("unexpected status {status}"),
                });
            }
            let received = SystemTime::now();
            let date = header_str(response.headers(), "date").map(str::to_owned);
            let error = service_error(response, call.method == Method::HEAD).await;
            // A skewed local clock: learn the server's from this answer and sign again, once.
            if !corrected
                && is_clock_skew(&error)
                && let Some(server) = upload_core::http::server_date(date.as_deref())
            {
                self.inner.clock_offset.learn(received, server);
                corrected = true;
                continue;
            }
            return Err(error);
        }
    }

    /// Signs `call` with the corrected clock and sends it.
    async fn send_once(&self, mut call: Call<'_>) -> Result<reqwest::Response, Error> {
        let date = chrono::DateTime::<chrono::Utc>::from(self.now()).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        call.headers.push(("Date".into(), date));
        let (path, canonical) = self.paths(call.bucket, call.key);
        let signable = SignableRequest {
            method: call.method.as_str().to_owned(),
            path: canonical,
            query: call.query.clone(),
            headers: call.headers.clone(),
        };
        let authorization = signing::authorization(&self.config().credentials, &signable);
        let url = self.url(call.bucket, &path, &call.query)?;
        let mut request = self.inner.http.request(call.method.clone(), url).header("Authorization", authorization);
        for (name, value) in &call.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if call.body.len() < (1 << 20) {
            // Part uploads get the engine's per-attempt timeout instead, which knows the part size.
            request = request.timeout(self.config().call_timeout);
        }
        if matches!(call.method, Method::PUT | Method::POST) {
            // QingStor requires Content-Length, and an empty body would go without one.
            request = request.header(reqwest::header::CONTENT_LENGTH, call.body.len());
        }
        request.body(call.body).send().await.map_err(Error::transport)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        operation: &'static str,
        response: reqwest::Response,
    ) -> Result<T, Error> {
        let bytes = read_document(response, operation).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::MalformedResponse { operation, detail: e.to_string() })
    }

    /// Initiate Multipart Upload.
    pub async fn initiate_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<InitiateMultipartUploadOutput, Error> {
        let mut call = Call::new("Initiate Multipart Upload", Method::POST, bucket, Some(key)).query("uploads", "");
        if let Some(t) = content_type {
            call = call.header("Content-Type", t);
        }
        let response = self.send(call, &[200]).await?;
        Self::json("Initiate Multipart Upload", response).await
    }

    /// Upload Multipart: one part, numbered from 0. `content_md5` (base64) lets QingStor refuse
    /// a corrupted body.
    pub async fn upload_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
        content_md5: Option<&str>,
    ) -> Result<PartOutput, Error> {
        check_part_number(part_number)?;
        let mut call = Call::new("Upload Multipart", Method::PUT, bucket, Some(key))
            .query("part_number", part_number.to_string())
            .query("upload_id", upload_id);
        if let Some(md5) = content_md5 {
            call = call.header("Content-MD5", md5);
        }
        call.body = body;
        let response = self.send(call, &[201]).await?;
        Ok(PartOutput { etag: header_str(response.headers(), "etag").map(str::to_owned) })
    }

    /// Upload part by copy: a part copied from (a range of) another object of the same zone.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_multipart_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_bucket: &str,
        source_key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<PartOutput, Error> {
        check_part_number(part_number)?;
        validate_bucket(source_bucket)?;
        validate_key(source_key)?;
        let mut call = Call::new("Upload Multipart (copy)", Method::PUT, bucket, Some(key))
            .query("part_number", part_number.to_string())
            .query("upload_id", upload_id)
            .header("x-qs-copy-source", format!("/{source_bucket}/{}", encode_key(source_key)));
        if let Some((first, last)) = range {
            call = call.header("x-qs-copy-range", format!("bytes={first}-{last}"));
        }
        let response = self.send(call, &[201]).await?;
        Ok(PartOutput { etag: header_str(response.headers(), "etag").map(str::to_owned) })
    }

    /// List Multipart: one page of the parts of an upload, after `part_number_marker`.
    pub async fn list_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        limit: Option<u32>,
        part_number_marker: Option<u32>,
    ) -> Result<ListMultipartOutput, Error> {
        let mut call = Call::new("List Multipart", Method::GET, bucket, Some(key)).query("upload_id", upload_id);
        if let Some(l) = limit {
            call = call.query("limit", l.to_string());
        }
        if let Some(m) = part_number_marker {
            call = call.query("part_number_marker", m.to_string());
        }
        let response = self.send(call, &[200]).await?;
        Self::json("List Multipart", response).await
    }

    /// List Multipart, every page. QingStor's paging gives no next marker: pages continue after
    /// the last part number seen until a page comes back short. A server whose full pages do
    /// not move forward (a last part number not above the marker), or that lists more parts
    /// than an upload can have, gets [`Error::MalformedResponse`] rather than being asked
    /// for ever.
    pub async fn list_all_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<ObjectPart>, Error> {
        const PAGE: u32 = 1000;
        let malformed = |detail: &str| Error::MalformedResponse { operation: "List Multipart", detail: detail.into() };
        let mut parts: Vec<ObjectPart> = Vec::new();
        let mut marker: Option<u32> = None;
        loop {
            let page = self.list_multipart(bucket, key, upload_id, Some(PAGE), marker).await?;
            let n = page.object_parts.len();
            let last = page.object_parts.last().map(|p| p.part_number);
            parts.extend(page.object_parts);
            if parts.len() > MAX_PART_NUMBER as usize + 1 {
                return Err(malformed("more parts than part numbers 0 to 10000 allow"));
            }
            match last {
                Some(l) if n as u32 >= PAGE => {
                    if marker.is_some_and(|m| l <= m) {
                        return Err(malformed("a full page whose last part number does not move past the marker"));
                    }
                    marker = Some(l);
                }
                _ => return Ok(parts),
            }
        }
    }

    /// Complete Multipart Upload from the parts in ascending order; `etag` is the whole
    /// object's ETag to store (QingStor does not compute one).
    pub async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[ObjectPart],
        etag: Option<&str>,
    ) -> Result<(), Error> {
        let body = serde_json::to_vec(&CompleteMultipartUploadInput { object_parts: parts.to_vec() })
            .map_err(|e| Error::MalformedResponse { operation: "Complete Multipart Upload", detail: e.to_string() })?;
        let mut call = Call::new("Complete Multipart Upload", Method::POST, bucket, Some(key))
            .query("upload_id", upload_id)
            .header("Content-Type", "application/json");
        if let Some(e) = etag {
            call = call.header("ETag", format!("\"{}\"", e.trim_matches('"')));
        }
        call.body = Bytes::from(body);
        self.send(call, &[201]).await.map(drop)
    }

    /// Abort Multipart Upload (QingStor answers 204 even for an unknown or finished upload).
    pub async fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), Error> {
        let call = Call::new("Abort Multipart Upload", Method::DELETE, bucket, Some(key)).query("upload_id", upload_id);
        self.send(call, &[204]).await.map(drop)
    }

    /// List Multipart Uploads in a bucket.
    pub async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        key_marker: Option<&str>,
        upload_id_marker: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ListMultipartUploadsOutput, Error> {
        let mut call = Call::new("List Multipart Uploads", Method::GET, bucket, None).query("uploads", "");
        for (name, value) in [("prefix", prefix), ("key_marker", key_marker), ("upload_id_marker", upload_id_marker)] {
            if let Some(v) = value {
                call = call.query(name, v);
            }
        }
        if let Some(l) = limit {
            call = call.query("limit", l.to_string());
        }
        let response = self.send(call, &[200]).await?;
        Self::json("List Multipart Uploads", response).await
    }

    /// List Multipart Uploads, every page: the unfinished uploads of a bucket (with `prefix`).
    /// A server whose next markers do not move forward, or that lists more than
    /// [`MAX_LISTED_UPLOADS`](upload_core::paging::MAX_LISTED_UPLOADS), gets
    /// [`Error::MalformedResponse`].
    pub async fn list_all_multipart_uploads(
        &self,
        bucket: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<UploadSummary>, Error> {
        let mut markers = upload_core::paging::UploadMarkers::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        let mut uploads = Vec::new();
        loop {
            let page = self
                .list_multipart_uploads(bucket, prefix, key_marker.as_deref(), id_marker.as_deref(), Some(1000))
                .await?;
            let listed = page.uploads.len();
            uploads.extend(page.uploads);
            if page.has_more != Some(true) {
                return Ok(uploads);
            }
            markers
                .next_page(listed, page.next_key_marker.as_deref(), page.next_upload_id_marker.as_deref())
                .map_err(|detail| Error::MalformedResponse { operation: "List Multipart Uploads", detail })?;
            (key_marker, id_marker) = (page.next_key_marker, page.next_upload_id_marker);
        }
    }

    /// Put Object: the whole object in one request (up to 5 GB).
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_md5: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<PartOutput, Error> {
        let mut call = Call::new("Put Object", Method::PUT, bucket, Some(key));
        if let Some(md5) = content_md5 {
            call = call.header("Content-MD5", md5);
        }
        if let Some(t) = content_type {
            call = call.header("Content-Type", t);
        }
        call.body = body;
        let response = self.send(call, &[201]).await?;
        Ok(PartOutput { etag: header_str(response.headers(), "etag").map(str::to_owned) })
    }

    /// Head Object.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, Error> {
        let response = self.send(Call::new("Head Object", Method::HEAD, bucket, Some(key)), &[200]).await?;
        let h = response.headers();
        Ok(ObjectMeta {
            len: header_str(h, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0),
            etag: header_str(h, "etag").map(str::to_owned),
            content_type: header_str(h, "content-type").map(str::to_owned),
        })
    }

    /// A presigned request valid until `expires_in` from now, for a browser or another process
    /// that does not hold the secret. `headers` are signed and must be sent as given. "Now" is
    /// the local clock plus [`Client::clock_offset`]: a client whose clock is skewed presigns
    /// valid URLs once it has learned the offset from one refused call.
    pub fn presign(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        expires_in: Duration,
    ) -> Result<PresignedRequest, Error> {
        validate_bucket(bucket)?;
        validate_key(key)?;
        let (path, canonical) = self.paths(bucket, Some(key));
        let mut req = SignableRequest::new(method, &canonical);
        req.query = query.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        req.headers = headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let now = self.now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut all = req.query.clone();
        all.extend(signing::presign(&self.config().credentials, &req, now + expires_in.as_secs() as i64));
        let url = self.url(bucket, &path, &all)?;
        Ok(PresignedRequest {
            method: req.method,
            url: upload_core::Secret::new(url.to_string()),
            headers: req.headers,
        })
    }

    /// A presigned Upload Multipart for a browser or another process.
    pub fn presign_upload_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_md5: Option<&str>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, Error> {
        check_part_number(part_number)?;
        let number = part_number.to_string();
        let query = [("part_number", number.as_str()), ("upload_id", upload_id)];
        let headers: Vec<(&str, &str)> = content_md5.map(|m| ("Content-MD5", m)).into_iter().collect();
        self.presign("PUT", bucket, key, &query, &headers, expires_in)
    }
}

/// Reads QingStor's JSON error document (HEAD answers have none: the status alone is the error).
async fn service_error(response: reqwest::Response, head: bool) -> Error {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = if head { Bytes::new() } else { read_document(response, "error document").await.unwrap_or_default() };
    error_from_answer(status, &headers, &bytes, SystemTime::now())
}

/// The error of an answer whose status, headers and body were read: QingStor's JSON error
/// document, else the status alone.
pub(crate) fn error_from_answer(status: u16, headers: &HeaderMap, bytes: &[u8], now: SystemTime) -> Error {
    let retry_after = header_str(headers, "retry-after").and_then(|v| upload_core::retry::parse_retry_after(v, now));
    let request_id = header_str(headers, "x-qs-request-id").map(str::to_owned);
    // A proxy or gateway may answer with HTML or nothing at all: the status then decides
    // (classified as QingStor's code for it), and the message says what came.
    let body = match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => body,
        Err(_) => ErrorBody {
            code: fallback_code(status).into(),
            message: Some(if bytes.iter().all(u8::is_ascii_whitespace) {
                format!("HTTP {status} with no error document")
            } else {
                format!("HTTP {status} with an error that is not QingStor's JSON ({} bytes)", bytes.len())
            }),
            request_id,
            url: None,
        },
    };
    let code: ErrorCode = body.code.parse().unwrap_or(ErrorCode::Other(body.code.clone()));
    ServiceError { status, code, body, retry_after }.into()
}

fn fallback_code(status: u16) -> &'static str {
    match status {
        401 => "signature_not_matched",
        403 => "permission_denied",
        404 => "object_not_exists",
        429 => "too_many_requests",
        503 => "service_unavailable",
        s if s >= 500 => "internal_error",
        _ => "invalid_request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Credentials;

    #[test]
    fn names_are_checked_before_any_request() {
        assert!(validate_bucket("my-bucket").is_ok());
        for bad in ["short", "-abcdef", "abcdef-", "ABCDEFG", "192.168.1.1", &"a".repeat(64)] {
            assert!(validate_bucket(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_key("").unwrap_err().to_string(),
            "object key is invalid: it is empty; QingStor keys are 1 to 1023 bytes"
        );
        assert!(validate_key("/abs").is_err());
        assert_eq!(
            check_part_number(10_001).unwrap_err().to_string(),
            "part number 10001 is outside QingStor's range of 0 to 10000"
        );
        assert!(check_part_number(0).is_ok());
    }

    #[test]
    fn paths_for_both_styles_and_query_encoding() {
        let config = Config::new(Credentials::new("ak", "sk")).with_zone("pek3a");
        let client = Client::new(config.clone()).unwrap();
        assert_eq!(
            client.paths("mybucket", Some("a b+c")),
            ("/mybucket/a%20b%2Bc".into(), "/mybucket/a%20b%2Bc".into())
        );
        assert_eq!(client.paths("mybucket", None), ("/mybucket".into(), "/mybucket".into()));
        let vhost = Client::new(Config { enable_virtual_host_style: true, ..config }).unwrap();
        assert_eq!(vhost.paths("mybucket", Some("k")), ("/k".into(), "/mybucket/k".into()));
        assert_eq!(vhost.paths("mybucket", None), ("/".into(), "/mybucket/".into()));
        let q = [("upload_id".to_owned(), "u/1+".to_owned()), ("uploads".to_owned(), String::new())];
        assert_eq!(query_string(&q), "upload_id=u%2F1%2B&uploads");
        let url = vhost.url("mybucket", "/k", &q).unwrap();
        assert_eq!(url.as_str(), "https://mybucket.pek3a.qingstor.com/k?upload_id=u%2F1%2B&uploads");
    }

    #[test]
    fn the_clock_offset_comes_from_a_plausible_date_and_skew_is_final() {
        use upload_core::Classify as _;
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_702_781_677);
        let body = br#"{"code":"request_expired","message":"m","request_id":"r"}"#;
        let e = error_from_answer(403, &HeaderMap::new(), body, t);
        assert!(is_clock_skew(&e));
        // Corrected inside the client (one re-signed request); what comes out is final.
        assert!(!e.is_retryable());
    }

    #[test]
    fn presigned_url_hides_its_signature_from_debug() {
        let client = Client::new(Config::new(Credentials::new("ak", "sk")).with_zone("pek3a")).unwrap();
        let p = client.presign_upload_multipart("mybucket", "big file", "U", 3, None, Duration::from_secs(60)).unwrap();
        let url = p.url.expose();
        assert!(
            url.starts_with(
                "https://pek3a.qingstor.com/mybucket/big%20file?part_number=3&upload_id=U&access_key_id=ak&expires="
            ),
            "{url}"
        );
        assert!(url.contains("&signature="));
        assert!(!format!("{p:?}").contains("signature"));
    }
}
