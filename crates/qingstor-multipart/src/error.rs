//! Errors: what QingStor answered ([`ServiceError`], with its `code`, `message`, `request_id` and
//! `url`), what went wrong on the way ([`Error`]), and input refused before any request.

use std::fmt;
use std::time::Duration;

pub use crate::generated::error_codes::ErrorCode;
use crate::types::ErrorBody;

/// An error document from QingStor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// The error code, typed.
    pub code: ErrorCode,
    /// The error document.
    pub body: ErrorBody,
    /// The wait the server asked for, if it sent `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QingStor answered {} {}", self.status, self.body.code)?;
        if let Some(m) = &self.body.message {
            write!(f, ": {m}")?;
        }
        if let Some(id) = &self.body.request_id {
            write!(f, " (request_id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServiceError {}

/// Input refused before any request, naming the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// Bucket names are 6–63 characters of `a-z`, `0-9` and `-`, starting and ending with a letter
    /// or digit, and not an IP address.
    #[error(
        "bucket name {0:?} is invalid: QingStor bucket names are 6 to 63 characters of a-z, 0-9 and -, starting and ending with a letter or digit"
    )]
    BucketName(String),
    /// Object keys are 1–1023 bytes of UTF-8 and do not start with `/`.
    #[error("object key is invalid: {0}")]
    ObjectKey(String),
    /// Part numbers are 0 to 10000.
    #[error("part number {0} is outside QingStor's range of 0 to 10000")]
    PartNumber(u32),
    /// A configuration value is missing or wrong.
    #[error("{0}")]
    Config(String),
}

/// Any failure of a QingStor call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// QingStor answered with an error document.
    #[error(transparent)]
    Service(Box<ServiceError>),
    /// The request did not get an answer (connection, timeout, body).
    #[error("the request to QingStor failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The input breaks one of QingStor's rules; nothing was sent.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// QingStor's answer could not be understood.
    #[error("QingStor's answer to {operation} could not be read: {detail}")]
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
    /// The QingStor error code, when QingStor answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Service(e) => Some(&e.code),
            _ => None,
        }
    }

    pub(crate) fn transport(e: reqwest::Error) -> Self {
        // A presigned URL is a credential: never keep it in an error.
        Error::Transport(e.without_url())
    }
}

impl upload_core::Classify for Error {
    fn is_retryable(&self) -> bool {
        match self {
            Error::Service(e) => e.code.is_retryable() || upload_core::retry::status_is_retryable(e.status),
            // A body cut off while it was read is a decode error in reqwest: retry it too.
            Error::Transport(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode(),
            Error::MalformedResponse { .. } => true,
            // An object that differs from the source after Complete is not mended by asking again.
            Error::Invalid(_) | Error::Integrity(_) => false,
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
            Error::Invalid(_) => false,
        }
    }
}

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Self {
        Error::Service(Box::new(e))
    }
}
