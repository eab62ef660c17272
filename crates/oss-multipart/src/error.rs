//! Errors: what OSS answered ([`ServiceError`], with OSS's Code, Message, RequestId, HostId and
//! EC), what went wrong on the way ([`Error`]), and input refused before any request.

use std::fmt;
use std::time::Duration;

use upload_core::Classify;

pub use crate::generated::error_codes::ErrorCode;
use crate::types::ErrorBody;

/// An error document from OSS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// The error code, typed.
    pub code: ErrorCode,
    /// The whole error document (Message, RequestId, HostId, EC, and on SignatureDoesNotMatch the
    /// server's StringToSign).
    pub body: ErrorBody,
    /// The wait the server asked for, if it sent `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OSS answered {} {}: {}", self.status, self.body.code, self.body.message)?;
        if !self.body.request_id.is_empty() {
            write!(f, " (RequestId {}", self.body.request_id)?;
            if let Some(ec) = &self.body.ec {
                write!(f, ", EC {ec}")?;
            }
            f.write_str(")")?;
        }
        if let Some(sts) = &self.body.string_to_sign {
            // The server's string, to compare with the client's: it holds no secret.
            write!(f, "; the server signed {sts:?}")?;
        }
        Ok(())
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
            Error::Service(e) => e.code.is_retryable() || upload_core::retry::status_is_retryable(e.status),
            Error::Transport(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
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
