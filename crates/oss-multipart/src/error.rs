//! Errors: what OSS answered ([`ServiceError`], with OSS's Code, Message, RequestId, HostId and
//! EC), what went wrong on the way ([`Error`]), and input refused before any request.

use std::fmt;
use std::time::Duration;

use upload_core::Classify;

pub use crate::generated::error_codes::ErrorCode;
use crate::types::ErrorBody;

/// An error document from OSS.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// The error code, typed.
    pub code: ErrorCode,
    /// The whole error document (Message, RequestId, HostId, EC, and on SignatureDoesNotMatch the
    /// server's StringToSign). It may quote an STS token: print it with care; `Display` and
    /// `Debug` of this type redact it.
    pub body: ErrorBody,
    /// The wait the server asked for, if it sent `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// The server's string to sign with any STS token in it replaced: OSS signs the token (as the
/// `x-oss-security-token` header, or the `security-token` parameter of a presigned URL) and
/// echoes the string on SignatureDoesNotMatch.
pub fn redact_string_to_sign(s: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in s.split('\n') {
        if line.to_ascii_lowercase().starts_with("x-oss-security-token:") {
            out.push("x-oss-security-token:<redacted>".to_owned());
            continue;
        }
        let mut line = line.to_owned();
        for marker in ["security-token=", "x-oss-security-token="] {
            let mut from = 0;
            while let Some(i) = line[from..].find(marker).map(|i| i + from) {
                let start = i + marker.len();
                let end = line[start..].find('&').map_or(line.len(), |e| e + start);
                line.replace_range(start..end, "<redacted>");
                from = start + "<redacted>".len();
            }
        }
        out.push(line);
    }
    out.join("\n")
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OSS answered {} {}", self.status, self.body.code)?;
        if let Some(message) = &self.body.message {
            write!(f, ": {message}")?;
        }
        if let Some(id) = self.body.request_id.as_deref().filter(|id| !id.is_empty()) {
            write!(f, " (RequestId {id}")?;
            if let Some(ec) = &self.body.ec {
                write!(f, ", EC {ec}")?;
            }
            f.write_str(")")?;
        }
        if let Some(sts) = &self.body.string_to_sign {
            // The server's string, to compare with the client's (tokens redacted).
            write!(f, "; the server signed {:?}", redact_string_to_sign(sts))?;
        }
        Ok(())
    }
}

impl fmt::Debug for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.body.message)
            .field("request_id", &self.body.request_id)
            .field("host_id", &self.body.host_id)
            .field("ec", &self.body.ec)
            .field("string_to_sign", &self.body.string_to_sign.as_deref().map(redact_string_to_sign))
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl std::error::Error for ServiceError {}

/// Input refused before any request, naming the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// Bucket names are 3–63 characters of `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
    #[error(
        "bucket name {0:?} is invalid: OSS bucket names are 3 to 63 characters of a-z, 0-9 and -, starting and ending with a letter or digit"
    )]
    BucketName(String),
    /// Object keys are 1–1023 bytes of UTF-8 and do not start with `/` or `\`.
    #[error("object key is invalid: {0}")]
    ObjectKey(String),
    /// Part numbers are 1 to 10000.
    #[error("part number {0} is outside OSS's range of 1 to 10000")]
    PartNumber(u32),
    /// A configuration value is missing or wrong.
    #[error("{0}")]
    Config(String),
}

/// Any failure of an OSS call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// OSS answered with an error document.
    #[error(transparent)]
    Service(Box<ServiceError>),
    /// The request did not get an answer (connection, timeout, body).
    #[error("the request to OSS failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The input breaks one of OSS's rules; nothing was sent.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The request could not be signed.
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
    /// OSS's answer could not be understood.
    #[error("OSS's answer to {operation} could not be read: {detail}")]
    MalformedResponse {
        /// The operation.
        operation: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The stored object does not match what was sent.
    #[error(transparent)]
    Integrity(#[from] upload_core::IntegrityError),
}

impl Error {
    /// The OSS error code, when OSS answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Service(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The HTTP status, when OSS answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Service(e) => Some(e.status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    pub(crate) fn transport(e: reqwest::Error) -> Self {
        // A presigned URL is a credential: never keep it in an error.
        Error::Transport(e.without_url())
    }
}

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Self {
        Error::Service(Box::new(e))
    }
}

impl Classify for Error {
    fn is_retryable(&self) -> bool {
        match self {
            // The client corrects its clock from the answer and signs again by itself; a skew
            // error that still comes out (no usable server time, or refused again) would only
            // be refused the same way on every retry.
            Error::Service(e) if e.code == ErrorCode::RequestTimeTooSkewed => false,
            Error::Service(e) => e.code.is_retryable() || upload_core::retry::status_is_retryable(e.status),
            // A body cut off while it was read is a decode error in reqwest: retry it too.
            Error::Transport(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode(),
            Error::MalformedResponse { .. } => true,
            // A part whose CRC-64 differs from what OSS stored is sent again (and overwrites it).
            Error::Integrity(_) => true,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Service(e) => e.retry_after,
            _ => None,
        }
    }

    fn may_have_taken_effect(&self) -> bool {
        match self {
            Error::Service(e) => e.status >= 500,
            Error::Transport(e) => !e.is_connect(),
            Error::MalformedResponse { .. } | Error::Integrity(_) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_tokens_in_the_servers_string_to_sign_are_redacted() {
        let sts = "PUT\n\n\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-date:x\nx-oss-security-token:TOKEN-123\n/b/k?partNumber=1&security-token=TOKEN-123&uploadId=U";
        let redacted = redact_string_to_sign(sts);
        assert!(!redacted.contains("TOKEN-123"), "{redacted}");
        assert!(
            redacted.contains("x-oss-security-token:<redacted>")
                && redacted.contains("security-token=<redacted>&uploadId=U")
        );
        let e = ServiceError {
            status: 403,
            code: ErrorCode::SignatureDoesNotMatch,
            body: ErrorBody {
                code: "SignatureDoesNotMatch".into(),
                string_to_sign: Some(sts.into()),
                canonical_request: Some("x-oss-security-token:TOKEN-123".into()),
                signature_provided: Some("SIG".into()),
                ..ErrorBody::default()
            },
            retry_after: None,
        };
        for shown in [e.to_string(), format!("{e:?}"), format!("{:?}", Error::from(e.clone()))] {
            assert!(!shown.contains("TOKEN-123") && !shown.contains("SIG\""), "{shown}");
        }
    }

    #[test]
    fn errors_are_classified_by_code_and_status() {
        use upload_core::Classify;
        let service = |status, code: &str| {
            Error::from(ServiceError {
                status,
                code: code.parse().unwrap_or(ErrorCode::Other(code.into())),
                body: ErrorBody { code: code.into(), ..ErrorBody::default() },
                retry_after: None,
            })
        };
        assert!(service(503, "ServiceUnavailable").is_retryable());
        // Corrected inside the client (one re-signed request); what comes out is final.
        assert!(!service(403, "RequestTimeTooSkewed").is_retryable());
        assert!(!service(404, "NoSuchUpload").is_retryable());
        assert!(!service(400, "UnreadableError").is_retryable());
        assert!(service(502, "UnreadableError").is_retryable());
    }
}
