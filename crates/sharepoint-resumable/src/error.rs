//! Errors: what Graph or the upload host answered ([`ServiceError`], with the code, the chain of
//! inner codes, the message and the request id, read from both envelopes: `innerError` from the
//! Graph host and `innererror` from the upload host), what went wrong on the way ([`Error`]),
//! and input refused before any request ([`InvalidInput`]).

use std::fmt;
use std::time::Duration;

pub use crate::generated::error_codes::ErrorCode;

/// An error document from Graph or from the upload host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// The top-level code, typed.
    pub code: ErrorCode,
    /// The inner codes, outermost first (`fragmentOverlap`, `expiredToken`…).
    pub inner: Vec<String>,
    /// The message.
    pub message: String,
    /// The request id (`request-id` in the document or the header).
    pub request_id: Option<String>,
    /// The wait the server asked for, if it sent `Retry-After` (seconds, possibly fractional).
    pub retry_after: Option<Duration>,
}

impl ServiceError {
    /// Whether this code appears at the top or anywhere in the inner chain.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_str() == code || self.inner.iter().any(|c| c == code)
    }

    /// Reads an error document; `None` when the body is not one.
    pub fn from_document(
        status: u16,
        body: &[u8],
        request_id: Option<String>,
        retry_after: Option<Duration>,
    ) -> Option<Self> {
        let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
        let error = doc.get("error")?;
        let code = error.get("code")?.as_str()?.to_owned();
        let message = error.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_owned();
        // Both spellings, nested as deep as the server nests them.
        let mut inner = Vec::new();
        let mut request_id = request_id;
        let mut next = error.get("innerError").or_else(|| error.get("innererror"));
        while let Some(level) = next {
            if let Some(c) = level.get("code").and_then(|c| c.as_str()) {
                inner.push(c.to_owned());
            }
            if request_id.is_none() {
                request_id = level.get("request-id").and_then(|r| r.as_str()).map(str::to_owned);
            }
            next = level.get("innerError").or_else(|| level.get("innererror"));
        }
        let typed = code.parse().unwrap_or(ErrorCode::Other(code));
        Some(Self { status, code: typed, inner, message, request_id, retry_after })
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Graph answered {} {}", self.status, self.code)?;
        for c in &self.inner {
            write!(f, "/{c}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request-id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServiceError {}

/// An error document from SharePoint REST (`odata.error` in the minimal and no-metadata
/// flavours, `error` in verbose): `"<hresult>, <.NET exception type>"` and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestServiceError {
    /// HTTP status.
    pub status: u16,
    /// The code as sent, `-2130575338, Microsoft.SharePoint.SPException`.
    pub code: String,
    /// The HRESULT part of the code, when it has one (see [`rest_codes`]).
    pub hresult: Option<i64>,
    /// The message's text.
    pub message: String,
    /// The request's correlation id (`SPRequestGuid`).
    pub request_id: Option<String>,
    /// The wait the server asked for, if it sent `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// HRESULTs SharePoint REST answers in upload calls.
pub mod rest_codes {
    /// 404: "The file … does not exist."
    pub const FILE_DOES_NOT_EXIST: i64 = -2_130_575_338;
    /// 404: a folder (or file) that is not there (`System.IO.FileNotFoundException`).
    pub const FILE_NOT_FOUND: i64 = -2_147_024_894;
    /// 400: "A file with the name … already exists."
    pub const ALREADY_EXISTS: i64 = -2_130_575_257;
    /// 400: a name or path SharePoint refuses.
    pub const INVALID_NAME: i64 = -2_130_575_245;
    /// 403: the form digest is missing, stale or wrong.
    pub const SECURITY_VALIDATION: i64 = -2_130_575_251;
    /// 401 or 403: access denied (`System.UnauthorizedAccessException`).
    pub const ACCESS_DENIED: i64 = -2_147_024_891;
    /// 423 or 409: the file is locked by another upload (`SPFileLockException`).
    pub const FILE_LOCKED: i64 = -2_147_018_894;
    /// 400: an argument out of range, such as a `fileOffset` that is not the bytes held.
    pub const ARGUMENT_OUT_OF_RANGE: i64 = -2_147_024_809;
    /// 404: the upload session is unknown or expired.
    pub const UPLOAD_SESSION_NOT_FOUND: i64 = -2_130_246_326;
    /// 400: the request body is over the 250 MB limit (and other malformed queries).
    pub const INVALID_CLIENT_QUERY: i64 = -1;
}

impl RestServiceError {
    /// Reads an error document; `None` when the body is not one.
    pub fn from_document(
        status: u16,
        body: &[u8],
        request_id: Option<String>,
        retry_after: Option<Duration>,
    ) -> Option<Self> {
        let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
        let error = doc.get("odata.error").or_else(|| doc.get("error"))?;
        let code = error.get("code")?.as_str()?.to_owned();
        let message = match error.get("message") {
            Some(serde_json::Value::String(m)) => m.clone(),
            Some(m) => m.get("value").and_then(|v| v.as_str()).unwrap_or_default().to_owned(),
            None => String::new(),
        };
        let hresult = code.split(',').next().and_then(|h| h.trim().parse::<i64>().ok());
        Some(Self { status, code, hresult, message, request_id, retry_after })
    }

    /// Whether the HRESULT is this one.
    pub fn is(&self, hresult: i64) -> bool {
        self.hresult == Some(hresult)
    }
}

impl fmt::Display for RestServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharePoint answered {} {}", self.status, self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (SPRequestGuid {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RestServiceError {}

/// Input refused before any request, naming the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// Item names and paths that OneDrive and SharePoint refuse.
    #[error("path {path:?} is invalid: {reason}")]
    Path {
        /// The path.
        path: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A fragment that breaks the upload session's rules.
    #[error("fragment at offset {offset} of {len} bytes is invalid: {rule}")]
    Fragment {
        /// Its first byte.
        offset: u64,
        /// Its length.
        len: u64,
        /// The rule it breaks.
        rule: String,
    },
    /// A configuration value is missing or wrong.
    #[error("{0}")]
    Config(String),
    /// An upload URL (from a saved state, or an answer) that Graph does not hand out: plain
    /// http, or a host other than Microsoft's upload hosts, the Graph host and the configured
    /// trusted URLs ([`Config::trusts_upload_url`](crate::Config::trusts_upload_url)).
    #[error(
        "the upload URL points to {scheme}://{host}, which is not a host Graph hands upload URLs out on (https on *.sharepoint.com, a national cloud's SharePoint, OneDrive, or the Graph host); add it to trusted_urls if it is yours"
    )]
    UntrustedUploadUrl {
        /// Its scheme.
        scheme: String,
        /// Its host.
        host: String,
    },
    /// The name is taken and the conflict behaviour is `fail`.
    #[error("{path:?} already exists and the conflict behavior is fail")]
    Exists {
        /// The file's path.
        path: String,
    },
}

/// Any failure of a Graph call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Graph or the upload host answered with an error document.
    #[error(transparent)]
    Service(Box<ServiceError>),
    /// SharePoint REST answered with an error document.
    #[error(transparent)]
    SharePoint(Box<RestServiceError>),
    /// The request did not get an answer (connection, timeout, body).
    #[error("the request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The input breaks a rule; nothing was sent.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The identity platform refused a token (its `error` and description) or was unavailable
    /// (`status` 429 or 5xx: retried).
    #[error("the identity platform did not grant an access token: {detail}")]
    Auth {
        /// The token endpoint's HTTP status.
        status: u16,
        /// Its `error` and `error_description`.
        detail: String,
    },
    /// An answer could not be understood.
    #[error("the answer to {operation} could not be read: {detail}")]
    MalformedResponse {
        /// The operation.
        operation: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// What was stored does not match what was sent.
    #[error(transparent)]
    Integrity(#[from] upload_core::IntegrityError),
}

impl Error {
    /// The top-level code, when the server answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Service(e) => Some(&e.code),
            _ => None,
        }
    }

    /// Whether Graph refused a new upload session because one is already open for the name: one
    /// made by an earlier run whose answer (and so its upload URL) was lost. It holds the name
    /// until it expires, about 15 minutes after its last fragment; nothing else can reach it.
    pub fn is_session_held(&self) -> bool {
        self.service().is_some_and(|e| {
            e.status == 409
                && e.code == ErrorCode::NameAlreadyExists
                && e.message.to_ascii_lowercase().contains("upload session")
        })
    }

    /// The HTTP status of an error answer (Graph or SharePoint REST).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Service(e) => Some(e.status),
            Error::SharePoint(e) => Some(e.status),
            _ => None,
        }
    }

    /// SharePoint REST's error document, when it answered with one.
    pub fn sharepoint(&self) -> Option<&RestServiceError> {
        match self {
            Error::SharePoint(e) => Some(e),
            _ => None,
        }
    }

    /// The error document, when the server answered with one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            Error::Service(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn transport(e: reqwest::Error) -> Self {
        // Upload URLs are credentials: never keep one in an error.
        Error::Transport(e.without_url())
    }
}

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Self {
        Error::Service(Box::new(e))
    }
}

impl From<RestServiceError> for Error {
    fn from(e: RestServiceError) -> Self {
        Error::SharePoint(Box::new(e))
    }
}

impl upload_core::Classify for Error {
    fn is_retryable(&self) -> bool {
        match self {
            // 507 quotaLimitReached: the drive is full; asking again does not make room.
            Error::Service(e) if e.status == 507 || e.code == ErrorCode::QuotaLimitReached => false,
            Error::Service(e) => e.code.is_retryable() || upload_core::retry::status_is_retryable(e.status),
            // 409: a chunk of this session still in flight (an earlier attempt), gone shortly.
            Error::SharePoint(e) => {
                upload_core::retry::status_is_retryable(e.status) || (e.status == 409 && e.is(rest_codes::FILE_LOCKED))
            }
            Error::Transport(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode(),
            Error::MalformedResponse { .. } => true,
            Error::Auth { status, .. } => upload_core::retry::status_is_retryable(*status),
            Error::Invalid(_) | Error::Integrity(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Service(e) => e.retry_after,
            Error::SharePoint(e) => e.retry_after,
            _ => None,
        }
    }

    fn may_have_taken_effect(&self) -> bool {
        match self {
            // 507 is a refusal: nothing was made or committed.
            Error::Service(e) => e.status >= 500 && e.status != 507,
            Error::SharePoint(e) => e.status >= 500,
            Error::Transport(e) => !e.is_connect(),
            Error::MalformedResponse { .. } | Error::Integrity(_) => true,
            Error::Invalid(_) | Error::Auth { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_envelopes_and_nested_inner_codes() {
        let graph = br#"{"error":{"code":"invalidRange","message":"Uploaded fragment overlaps with existing data.","innerError":{"date":"2020-08-18T12:51:51","request-id":"94fb","client-request-id":"x"}}}"#;
        let e = ServiceError::from_document(416, graph, None, None).unwrap();
        assert_eq!(e.code, ErrorCode::InvalidRange);
        assert_eq!(e.request_id.as_deref(), Some("94fb"));
        let upload = br#"{"error":{"code":"invalidRange","message":"m","innererror":{"code":"fragmentOverlap","innererror":{"code":"deeper"}}}}"#;
        let e = ServiceError::from_document(416, upload, Some("hdr".into()), None).unwrap();
        assert_eq!(e.inner, ["fragmentOverlap", "deeper"]);
        assert!(e.has_code("fragmentOverlap"));
        assert_eq!(e.to_string(), "Graph answered 416 invalidRange/fragmentOverlap/deeper: m (request-id hdr)");
        assert!(ServiceError::from_document(500, b"<html>", None, None).is_none());
    }

    #[test]
    fn a_name_held_by_an_open_session_is_told_apart_from_an_existing_file() {
        let held =
            br#"{"error":{"code":"nameAlreadyExists","message":"An upload session already exists for this file"}}"#;
        let file = br#"{"error":{"code":"nameAlreadyExists","message":"The specified item name already exists."}}"#;
        let error = |body: &[u8]| Error::from(ServiceError::from_document(409, body, None, None).unwrap());
        assert!(error(held).is_session_held());
        assert!(!error(file).is_session_held());
    }

    #[test]
    fn sharepoint_envelopes_in_every_flavour() {
        let minimal = br#"{"odata.error":{"code":"-2130575338, Microsoft.SharePoint.SPException","message":{"lang":"en-US","value":"The file /sites/x/a.bin does not exist."}}}"#;
        let e = RestServiceError::from_document(404, minimal, Some("g".into()), None).unwrap();
        assert!(e.is(rest_codes::FILE_DOES_NOT_EXIST));
        assert_eq!(
            e.to_string(),
            "SharePoint answered 404 -2130575338, Microsoft.SharePoint.SPException: The file /sites/x/a.bin does not exist. (SPRequestGuid g)"
        );
        let verbose = br#"{"error":{"code":"-1, Microsoft.SharePoint.Client.InvalidClientQueryException","message":{"lang":"en-US","value":"The request message is too big."}}}"#;
        let e = RestServiceError::from_document(400, verbose, None, None).unwrap();
        assert_eq!(e.hresult, Some(rest_codes::INVALID_CLIENT_QUERY));
        assert_eq!(e.message, "The request message is too big.");
        let odd = br#"{"error":{"code":"Unknown","message":"plain"}}"#;
        let e = RestServiceError::from_document(500, odd, None, None).unwrap();
        assert_eq!((e.hresult, e.message.as_str()), (None, "plain"));
        assert!(RestServiceError::from_document(500, b"{\"value\":1}", None, None).is_none());
    }
}
