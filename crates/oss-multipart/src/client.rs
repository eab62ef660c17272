//! The operations layer: one method per OSS call, stateless, typed in and out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};
use upload_core::http::ClockOffset;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::config::{Addressing, Config, SignatureVersion};
use crate::error::{Error, ErrorCode, InvalidInput, ServiceError};
use crate::signing::{SignableRequest, uri_encode, v1, v4};
use crate::types::*;

/// OSS's part number range.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Longest time a call without a large body may take (a stalled connection otherwise hangs).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Checks a bucket name against OSS's rules.
pub fn validate_bucket(bucket: &str) -> Result<(), InvalidInput> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !bucket.starts_with('-')
        && !bucket.ends_with('-');
    if ok { Ok(()) } else { Err(InvalidInput::BucketName(bucket.to_owned())) }
}

/// Checks an object key against OSS's rules, and against what a URL can carry.
pub fn validate_key(key: &str) -> Result<(), InvalidInput> {
    if key.is_empty() {
        return Err(InvalidInput::ObjectKey("it is empty; OSS keys are 1 to 1023 bytes".into()));
    }
    if key.len() > 1023 {
        return Err(InvalidInput::ObjectKey(format!("it is {} bytes; OSS keys are at most 1023 bytes", key.len())));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(InvalidInput::ObjectKey("OSS keys must not start with / or \\".into()));
    }
    if key.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(InvalidInput::ObjectKey("a path segment of . or .. would be rewritten in the URL".into()));
    }
    Ok(())
}

pub(crate) fn check_part_number(n: u32) -> Result<(), InvalidInput> {
    if (1..=MAX_PART_NUMBER).contains(&n) { Ok(()) } else { Err(InvalidInput::PartNumber(n)) }
}

/// A request before signing.
#[derive(Clone)]
struct Call<'a> {
    operation: &'static str,
    method: Method,
    bucket: Option<&'a str>,
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl<'a> Call<'a> {
    fn new(operation: &'static str, method: Method, bucket: &'a str, key: Option<&'a str>) -> Self {
        Self {
            operation,
            method,
            bucket: Some(bucket),
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
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

/// An OSS client: configuration plus a connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    http: reqwest::Client,
    /// The server's clock minus the local one: zero until OSS refuses a request
    /// with RequestTimeTooSkewed, then learned from its answer and added to every signing time.
    clock_offset: ClockOffset,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|v| v.trim().parse().ok())
}

fn decode_url(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Reads an XML answer of OSS.
pub(crate) fn parse_xml<T: serde::de::DeserializeOwned>(operation: &'static str, text: &str) -> Result<T, Error> {
    quick_xml::de::from_str(text).map_err(|e| Error::MalformedResponse { operation, detail: e.to_string() })
}

/// InitiateMultipartUpload's answer with its key decoded (`encoding-type=url`).
pub(crate) fn decode_initiate(mut result: InitiateMultipartUploadResult) -> InitiateMultipartUploadResult {
    if result.encoding_type.as_deref() == Some("url") {
        result.key = decode_url(&result.key);
    }
    result
}

/// CompleteMultipartUpload's answer, when its body is OSS's document (a callback's answer is not).
pub(crate) fn complete_result(text: &str) -> Option<CompleteMultipartUploadResult> {
    let mut result: Option<CompleteMultipartUploadResult> = quick_xml::de::from_str(text).ok();
    if let Some(r) = &mut result
        && r.encoding_type.as_deref() == Some("url")
    {
        r.key = decode_url(&r.key);
    }
    result
}

/// ListParts' answer with its key decoded.
pub(crate) fn decode_list_parts(mut result: ListPartsResult) -> ListPartsResult {
    if result.encoding_type.as_deref() == Some("url") {
        result.key = decode_url(&result.key);
    }
    result
}

/// ListMultipartUploads' answer with its keys, markers and prefixes decoded.
pub(crate) fn decode_list_uploads(mut result: ListMultipartUploadsResult) -> ListMultipartUploadsResult {
    if result.encoding_type.as_deref() == Some("url") {
        for field in [&mut result.key_marker, &mut result.next_key_marker, &mut result.prefix, &mut result.delimiter]
            .into_iter()
            .flatten()
        {
            *field = decode_url(field);
        }
        for u in &mut result.uploads {
            u.key = decode_url(&u.key);
        }
        for p in &mut result.common_prefixes {
            p.prefix = decode_url(&p.prefix);
        }
    }
    result
}

/// Reads an answer's body, at most [`upload_core::http::MAX_DOCUMENT`] bytes.
pub(crate) async fn read_document(response: reqwest::Response, operation: &'static str) -> Result<Bytes, Error> {
    upload_core::http::read_document(response).await.map_err(|e| match e {
        upload_core::http::DocumentError::TooLong => Error::MalformedResponse { operation, detail: e.to_string() },
        upload_core::http::DocumentError::Transport(t) => Error::transport(t),
    })
}

fn http_date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// The server's clock at the time of a RequestTimeTooSkewed answer: its `Date` header, else the
/// error document's `ServerTime`.
fn server_time(date_header: Option<&str>, error: &Error) -> Option<SystemTime> {
    upload_core::http::server_date(date_header).or_else(|| match error {
        Error::Service(e) => e
            .body
            .server_time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
            .and_then(|t| upload_core::http::plausible(t.with_timezone(&chrono::Utc))),
        _ => None,
    })
}

/// OSS refused the request because its signing time is too far from the server's clock.
fn is_clock_skew(error: &Error) -> bool {
    matches!(error, Error::Service(e) if e.status == 403 && e.code == ErrorCode::RequestTimeTooSkewed)
}

pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Client {
    /// A client for a configuration.
    pub fn new(config: Config) -> Result<Self, Error> {
        let bare = config.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&config.host);
        if !upload_core::http::is_host_name(bare) || !matches!(config.scheme.as_str(), "http" | "https") {
            return Err(InvalidInput::Config(format!(
                "endpoint {}://{} must be http(s) and a host name (DNS labels of letters, digits and hyphens) or an IP address",
                config.scheme, config.host
            ))
            .into());
        }
        if config.signature_version == SignatureVersion::V4 && config.region.as_deref().is_none_or(str::is_empty) {
            return Err(InvalidInput::Config(format!(
                "V4 signing needs a region ID such as cn-hangzhou, and none could be taken from the endpoint {}",
                config.host
            ))
            .into());
        }
        // No redirects: one would carry the credentials (and a part's body) elsewhere.
        let http = upload_core::http::client(config.connect_timeout).map_err(Error::transport)?;
        Ok(Self { inner: Arc::new(Inner { config, http, clock_offset: ClockOffset::default() }) })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The HTTP client (no redirects), for the presigned requests.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// How far OSS's clock is from the local one (positive: OSS is ahead), as this client (and
    /// its clones) learned it: zero until OSS refuses a request with RequestTimeTooSkewed. When
    /// that happens the client reads the server's `Date` (else the error's `ServerTime`), keeps
    /// the difference, and signs that request again and every later one, and presigned URLs,
    /// with the local clock plus this offset, as the official SDKs do.
    pub fn clock_offset(&self) -> chrono::Duration {
        self.inner.clock_offset.get()
    }

    /// Sets the offset of [`Client::clock_offset`], for a process that knows OSS's clock
    /// already (a client that only presigns URLs never gets a RequestTimeTooSkewed to learn
    /// it from).
    pub fn set_clock_offset(&self, offset: chrono::Duration) {
        self.inner.clock_offset.set(offset);
    }

    /// The time to sign with: the local clock corrected by the learned offset.
    pub(crate) fn now(&self) -> SystemTime {
        self.inner.clock_offset.now()
    }

    pub(crate) fn url(
        &self,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(String, String)],
    ) -> Result<reqwest::Url, Error> {
        let c = &self.inner.config;
        let mut path = String::from("/");
        if let (Addressing::Path, Some(b)) = (c.addressing, bucket) {
            path.push_str(b);
            path.push('/');
        }
        if let Some(k) = key {
            path.push_str(&uri_encode(k, true));
        }
        let mut url = format!("{}://{}{}", c.scheme, c.authority(bucket), path);
        for (i, (n, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&uri_encode(n, false));
            if !v.is_empty() {
                url.push('=');
                url.push_str(&uri_encode(v, false));
            }
        }
        reqwest::Url::parse(&url).map_err(|e| InvalidInput::Config(format!("cannot build a URL: {e}")).into())
    }

    /// Adds date headers and the signature.
    fn sign(&self, call: &mut Call<'_>, now: SystemTime) -> Result<(), Error> {
        let c = &self.inner.config;
        call.headers.push(("Date".into(), http_date(now)));
        if let Some(token) = &c.credentials.security_token {
            call.headers.push(("x-oss-security-token".into(), token.expose().to_owned()));
        }
        let signable = |call: &Call<'_>| SignableRequest {
            method: call.method.as_str().to_owned(),
            bucket: call.bucket.map(str::to_owned),
            key: call.key.map(str::to_owned),
            query: call.query.clone(),
            headers: call.headers.clone(),
        };
        let authorization = match c.signature_version {
            SignatureVersion::V1 => v1::authorization(&c.credentials, &signable(call))?,
            SignatureVersion::V4 => {
                call.headers.push(("x-oss-date".into(), v4::format_datetime(unix(now))));
                call.headers.push(("x-oss-content-sha256".into(), v4::UNSIGNED_PAYLOAD.into()));
                v4::authorization(&c.credentials, &signable(call), c.region.as_deref().unwrap_or_default(), &[])?
            }
        };
        call.headers.push(("Authorization".into(), authorization));
        Ok(())
    }

    async fn send(&self, call: Call<'_>) -> Result<reqwest::Response, Error> {
        if let Some(b) = call.bucket {
            validate_bucket(b)?;
        }
        if let Some(k) = call.key {
            validate_key(k)?;
        }
        let mut corrected = false;
        loop {
            let mut attempt = call.clone();
            self.sign(&mut attempt, self.now())?;
            let url = self.url(attempt.bucket, attempt.key, &attempt.query)?;
            let mut request = self.inner.http.request(attempt.method.clone(), url);
            for (name, value) in &attempt.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            if attempt.body.len() < (1 << 20) {
                // Calls without a large body get an overall timeout; part uploads get the engine's
                // per-attempt timeout instead, which knows the part size.
                request = request.timeout(CALL_TIMEOUT);
            }
            let head = attempt.method == Method::HEAD;
            let response = request.body(attempt.body).send().await.map_err(Error::transport)?;
            if response.status().is_success() {
                return Ok(response);
            }
            let received = SystemTime::now();
            let date = header_str(response.headers(), "date").map(str::to_owned);
            let error = service_error(response, head, call.operation).await;
            // A skewed local clock: learn the server's from this answer and sign again, once.
            if !corrected
                && is_clock_skew(&error)
                && let Some(server) = server_time(date.as_deref(), &error)
            {
                self.inner.clock_offset.learn(received, server);
                corrected = true;
                continue;
            }
            return Err(error);
        }
    }

    async fn xml<T: serde::de::DeserializeOwned>(
        operation: &'static str,
        response: reqwest::Response,
    ) -> Result<T, Error> {
        let text = String::from_utf8_lossy(&read_document(response, operation).await?).into_owned();
        parse_xml(operation, &text)
    }

    /// InitiateMultipartUpload: starts an upload of `key` and returns its upload id.
    pub async fn initiate_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        options: &ObjectOptions,
    ) -> Result<InitiateMultipartUploadResult, Error> {
        let mut call = Call::new("InitiateMultipartUpload", Method::POST, bucket, Some(key))
            .query("uploads", "")
            .query("encoding-type", "url");
        if options.sequential {
            call = call.query("sequential", "");
        }
        call = object_headers(call, options);
        let response = self.send(call).await?;
        let result: InitiateMultipartUploadResult = Self::xml("InitiateMultipartUpload", response).await?;
        Ok(decode_initiate(result))
    }

    /// UploadPart: sends one part. `content_md5` (base64) lets OSS refuse a corrupted body.
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
        content_md5: Option<&str>,
    ) -> Result<UploadPartOutput, Error> {
        check_part_number(part_number)?;
        let mut call = Call::new("UploadPart", Method::PUT, bucket, Some(key))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id);
        if let Some(md5) = content_md5 {
            call = call.header("Content-MD5", md5);
        }
        call.body = body;
        let response = self.send(call).await?;
        let headers = response.headers();
        let etag = header_str(headers, "etag")
            .map(str::to_owned)
            .ok_or(Error::MalformedResponse { operation: "UploadPart", detail: "no ETag header".into() })?;
        Ok(UploadPartOutput { etag, crc64: header_u64(headers, "x-oss-hash-crc64ecma") })
    }

    /// UploadPartCopy: a part copied from (a range of) another object.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_bucket: &str,
        source_key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<CopyPartResult, Error> {
        check_part_number(part_number)?;
        validate_bucket(source_bucket)?;
        validate_key(source_key)?;
        let mut call = Call::new("UploadPartCopy", Method::PUT, bucket, Some(key))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id)
            .header("x-oss-copy-source", format!("/{source_bucket}/{}", uri_encode(source_key, true)));
        if let Some((first, last)) = range {
            call = call.header("x-oss-copy-source-range", format!("bytes={first}-{last}"));
        }
        let response = self.send(call).await?;
        Self::xml("UploadPartCopy", response).await
    }

    /// CompleteMultipartUpload: makes the object from its parts. Not idempotent on OSS: after a
    /// lost answer, a retry gets NoSuchUpload although the object exists (the uploader checks the
    /// object with HeadObject in that case).
    pub async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &CompleteParts,
    ) -> Result<CompleteOutput, Error> {
        let mut call = Call::new("CompleteMultipartUpload", Method::POST, bucket, Some(key))
            .query("uploadId", upload_id)
            .query("encoding-type", "url");
        match parts {
            CompleteParts::All => call = call.header("x-oss-complete-all", "yes"),
            CompleteParts::List(list) => {
                let doc = CompleteMultipartUpload { parts: list.clone() };
                let xml = quick_xml::se::to_string(&doc).map_err(|e| Error::MalformedResponse {
                    operation: "CompleteMultipartUpload",
                    detail: format!("cannot write the part list: {e}"),
                })?;
                call = call.header("Content-Type", "application/xml");
                call.body = Bytes::from(xml);
            }
        }
        let response = self.send(call).await?;
        let headers = response.headers().clone();
        let text = String::from_utf8_lossy(&read_document(response, "CompleteMultipartUpload").await?).into_owned();
        Ok(CompleteOutput {
            result: complete_result(&text),
            crc64: header_u64(&headers, "x-oss-hash-crc64ecma"),
            version_id: header_str(&headers, "x-oss-version-id").map(str::to_owned),
        })
    }

    /// AbortMultipartUpload: drops the upload and its parts (OSS answers 204).
    pub async fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), Error> {
        let call = Call::new("AbortMultipartUpload", Method::DELETE, bucket, Some(key)).query("uploadId", upload_id);
        self.send(call).await.map(drop)
    }

    /// ListParts: one page of the parts of an upload.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        page: &ListPartsPage,
    ) -> Result<ListPartsResult, Error> {
        let mut call = Call::new("ListParts", Method::GET, bucket, Some(key))
            .query("uploadId", upload_id)
            .query("encoding-type", "url");
        if let Some(n) = page.max_parts {
            call = call.query("max-parts", n.to_string());
        }
        if let Some(m) = page.part_number_marker {
            call = call.query("part-number-marker", m.to_string());
        }
        let response = self.send(call).await?;
        let result: ListPartsResult = Self::xml("ListParts", response).await?;
        Ok(decode_list_parts(result))
    }

    /// ListParts, every page.
    pub async fn list_all_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<PartSummary>, Error> {
        let mut parts = Vec::new();
        let mut page = ListPartsPage::default();
        loop {
            let result = self.list_parts(bucket, key, upload_id, &page).await?;
            let last = result.parts.last().map(|p| p.part_number);
            parts.extend(result.parts);
            if parts.len() > MAX_PART_NUMBER as usize {
                return Err(Error::MalformedResponse {
                    operation: "ListParts",
                    detail: "more parts than an upload can have (10000)".into(),
                });
            }
            if !result.is_truncated {
                return Ok(parts);
            }
            let next = result.next_part_number_marker.or(last);
            let moves_on = next.is_some_and(|n| n > page.part_number_marker.unwrap_or(0) && n <= MAX_PART_NUMBER);
            if !moves_on {
                return Err(Error::MalformedResponse {
                    operation: "ListParts",
                    detail: "a truncated page whose next marker does not move forward".into(),
                });
            }
            page.part_number_marker = next;
        }
    }

    /// ListMultipartUploads: one page of the unfinished uploads of a bucket.
    pub async fn list_multipart_uploads(
        &self,
        bucket: &str,
        page: &ListUploadsPage,
    ) -> Result<ListMultipartUploadsResult, Error> {
        let mut call = Call::new("ListMultipartUploads", Method::GET, bucket, None)
            .query("uploads", "")
            .query("encoding-type", "url");
        for (name, value) in [
            ("prefix", &page.prefix),
            ("delimiter", &page.delimiter),
            ("key-marker", &page.key_marker),
            ("upload-id-marker", &page.upload_id_marker),
        ] {
            if let Some(v) = value {
                call = call.query(name, v.clone());
            }
        }
        if let Some(n) = page.max_uploads {
            call = call.query("max-uploads", n.to_string());
        }
        let response = self.send(call).await?;
        let result: ListMultipartUploadsResult = Self::xml("ListMultipartUploads", response).await?;
        Ok(decode_list_uploads(result))
    }

    /// ListMultipartUploads, every page: the unfinished uploads of a bucket (with `prefix`). A
    /// server whose next markers do not move forward, or that lists more than
    /// [`MAX_LISTED_UPLOADS`](upload_core::paging::MAX_LISTED_UPLOADS), gets
    /// [`Error::MalformedResponse`].
    pub async fn list_all_multipart_uploads(
        &self,
        bucket: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<MultipartUpload>, Error> {
        let mut page = ListUploadsPage { prefix: prefix.map(str::to_owned), ..ListUploadsPage::default() };
        let mut markers = upload_core::paging::UploadMarkers::new();
        let mut uploads = Vec::new();
        loop {
            let result = self.list_multipart_uploads(bucket, &page).await?;
            let listed = result.uploads.len();
            uploads.extend(result.uploads);
            if !result.is_truncated {
                return Ok(uploads);
            }
            markers
                .next_page(listed, result.next_key_marker.as_deref(), result.next_upload_id_marker.as_deref())
                .map_err(|detail| Error::MalformedResponse { operation: "ListMultipartUploads", detail })?;
            (page.key_marker, page.upload_id_marker) = (result.next_key_marker, result.next_upload_id_marker);
        }
    }

    /// PutObject: the whole object in one request, for sources below one part.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_md5: Option<&str>,
        options: &ObjectOptions,
    ) -> Result<UploadPartOutput, Error> {
        let mut call = Call::new("PutObject", Method::PUT, bucket, Some(key));
        if let Some(md5) = content_md5 {
            call = call.header("Content-MD5", md5);
        }
        call = object_headers(call, options);
        call.body = body;
        let response = self.send(call).await?;
        let headers = response.headers();
        Ok(UploadPartOutput {
            etag: header_str(headers, "etag").unwrap_or_default().to_owned(),
            crc64: header_u64(headers, "x-oss-hash-crc64ecma"),
        })
    }

    /// HeadObject: the object's length, ETag and CRC-64.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, Error> {
        let response = self.send(Call::new("HeadObject", Method::HEAD, bucket, Some(key))).await?;
        let h = response.headers();
        Ok(ObjectMeta {
            len: header_u64(h, "content-length").unwrap_or(0),
            etag: header_str(h, "etag").map(str::to_owned),
            crc64: header_u64(h, "x-oss-hash-crc64ecma"),
            content_type: header_str(h, "content-type").map(str::to_owned),
            last_modified: header_str(h, "last-modified").map(str::to_owned),
        })
    }
}

fn object_headers<'a>(mut call: Call<'a>, options: &ObjectOptions) -> Call<'a> {
    if let Some(t) = &options.content_type {
        call = call.header("Content-Type", t.clone());
    }
    if let Some(s) = &options.storage_class {
        call = call.header("x-oss-storage-class", s.clone());
    }
    if options.forbid_overwrite {
        call = call.header("x-oss-forbid-overwrite", "true");
    }
    for (name, value) in &options.metadata {
        call = call.header(&format!("x-oss-meta-{name}"), value.clone());
    }
    call
}

/// Reads OSS's error document (from the body, or from `x-oss-err` for HEAD).
pub(crate) async fn service_error(response: reqwest::Response, head: bool, operation: &'static str) -> Error {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = if head {
        String::new()
    } else {
        match read_document(response, operation).await {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) => return e,
        }
    };
    error_from_answer(status, &headers, head, &text, operation, SystemTime::now())
}

/// The error of an answer whose status, headers and body text were read: OSS's error document
/// (from the body, or from `x-oss-err` for HEAD), else the status alone.
pub(crate) fn error_from_answer(
    status: u16,
    headers: &HeaderMap,
    head: bool,
    body: &str,
    operation: &'static str,
    now: SystemTime,
) -> Error {
    let retry_after = header_str(headers, "retry-after").and_then(|v| upload_core::retry::parse_retry_after(v, now));
    let text = if head {
        header_str(headers, "x-oss-err")
            .and_then(|v| STANDARD.decode(v).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    } else {
        body.to_owned()
    };
    // An error without a readable document (HEAD, a proxy's HTML page) is classified by its
    // status alone.
    let body: ErrorBody = quick_xml::de::from_str(&text).unwrap_or_else(|_| ErrorBody {
        code: fallback_code(status).into(),
        message: Some(if text.trim().is_empty() {
            format!("HTTP {status} with no error document")
        } else {
            format!("HTTP {status} with an error document that is not OSS's ({operation})")
        }),
        request_id: header_str(headers, "x-oss-request-id").map(str::to_owned),
        ec: header_str(headers, "x-oss-ec").map(str::to_owned),
        ..ErrorBody::default()
    });
    let code: ErrorCode = body.code.parse().unwrap_or(ErrorCode::Other(body.code.clone()));
    ServiceError { status, code, body, retry_after }.into()
}

fn fallback_code(status: u16) -> &'static str {
    match status {
        404 => "NoSuchKey",
        403 => "AccessDenied",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        s if s >= 500 => "InternalError",
        // Not OSS's BadRequest (which the SDKs retry): an unknown code, classified by status.
        _ => "UnreadableError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Credentials;

    #[test]
    fn names_are_checked_before_any_request() {
        assert!(validate_bucket("my-bucket-1").is_ok());
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b", &"a".repeat(64)] {
            assert!(validate_bucket(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_key("").unwrap_err().to_string(),
            "object key is invalid: it is empty; OSS keys are 1 to 1023 bytes"
        );
        assert!(validate_key(&"k".repeat(1024)).unwrap_err().to_string().contains("at most 1023 bytes"));
        assert!(validate_key("/abs").is_err());
        assert!(validate_key("a/../b").is_err());
        for ok in ["a b", "a+b", "100%", "x~y", "what?#", "dir//file", "中文"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_part_number(10_001).unwrap_err().to_string(),
            "part number 10001 is outside OSS's range of 1 to 10000"
        );
    }

    #[test]
    fn urls_for_both_addressing_styles_encode_keys() {
        let config = Config::new("oss-cn-hangzhou.aliyuncs.com", Credentials::new("ak", "sk")).unwrap();
        let client = Client::new(config.clone()).unwrap();
        let q = vec![("partNumber".to_owned(), "1".to_owned()), ("uploads".to_owned(), String::new())];
        let url = client.url(Some("bkt"), Some("a b+c/d?"), &q).unwrap();
        assert_eq!(url.as_str(), "https://bkt.oss-cn-hangzhou.aliyuncs.com/a%20b%2Bc/d%3F?partNumber=1&uploads");
        let path = Client::new(config.with_addressing(Addressing::Path)).unwrap();
        assert_eq!(
            path.url(Some("bkt"), Some("dir//x"), &[]).unwrap().as_str(),
            "https://oss-cn-hangzhou.aliyuncs.com/bkt/dir//x"
        );
    }

    #[test]
    fn the_clock_offset_comes_from_a_plausible_server_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_702_781_677);
        let skewed = |server_time: Option<&str>| {
            Error::from(ServiceError {
                status: 403,
                code: ErrorCode::RequestTimeTooSkewed,
                body: crate::types::ErrorBody {
                    code: "RequestTimeTooSkewed".into(),
                    server_time: server_time.map(str::to_owned),
                    ..Default::default()
                },
                retry_after: None,
            })
        };
        assert!(is_clock_skew(&skewed(None)));
        let date = Some("Sun, 17 Dec 2023 02:54:37 GMT");
        assert_eq!(server_time(date, &skewed(None)), Some(t));
        // The epoch (an unset server clock) is no correction; ServerTime is the fallback.
        let epoch = Some("Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(server_time(epoch, &skewed(None)), None);
        assert_eq!(server_time(epoch, &skewed(Some("2023-12-17T02:54:37.000Z"))), Some(t));
        assert_eq!(server_time(Some("garbage"), &skewed(Some("also garbage"))), None);
    }

    #[test]
    fn v4_without_a_region_is_refused_up_front() {
        let config = Config::new("my-domain.example.com", Credentials::new("ak", "sk")).unwrap();
        let err = Client::new(config).unwrap_err();
        assert!(err.to_string().contains("needs a region ID"), "{err}");
    }
}
