//! Errors: what Box answered ([`ServiceError`], with its `type`, `status`, `code`, `message`,
//! `context_info` and `request_id`), what went wrong on the way ([`Error`]), and input refused
//! before any request ([`InvalidInput`]).

use std::fmt;
use std::time::Duration;

pub use crate::generated::error_codes::ErrorCode;
use crate::types::{ClientError, UploadPart};

/// An error document from Box.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// The error code, typed.
    pub code: ErrorCode,
    /// The error document.
    pub body: ClientError,
    /// The wait the server asked for, if it sent `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl ServiceError {
    /// The stored part a 416 `range_overlaps_existing_part` names (`context_info.conflicting_part`).
    pub fn conflicting_part(&self) -> Option<UploadPart> {
        let part = self.body.context_info.as_ref()?.get("conflicting_part")?;
        serde_json::from_value(part.clone()).ok()
    }

    /// The ids of the existing items a 409 `item_name_in_use` names (`context_info.conflicts`,
    /// which Box sends as an array or as a single object).
    pub fn conflicting_item_ids(&self) -> Vec<String> {
        let Some(conflicts) = self.body.context_info.as_ref().and_then(|c| c.get("conflicts")) else {
            return Vec::new();
        };
        let one = |v: &serde_json::Value| v.get("id").and_then(|id| id.as_str()).map(str::to_owned);
        match conflicts {
            serde_json::Value::Array(items) => items.iter().filter_map(one).collect(),
            other => one(other).into_iter().collect(),
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Box answered {} {}", self.status, self.code)?;
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
    /// File names are 1–255 characters, without `/`, `\`, non-printable characters, leading
    /// or trailing spaces, and are not `.` or `..`.
    #[error("file name {name:?} is invalid: {reason}")]
    FileName {
        /// The name.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// Folder and file ids are decimal numbers.
    #[error("{what} {id:?} is not a Box id (a decimal number)")]
    Id {
        /// `folder id` or `file id`.
        what: &'static str,
        /// The id.
        id: String,
    },
    /// A part that does not fit the session's part grid: Box would answer 416.
    #[error("part at offset {offset} of {len} bytes does not fit the session: {rule}")]
    ContentRange {
        /// Its first byte.
        offset: u64,
        /// Its length.
        len: u64,
        /// The rule it breaks.
        rule: String,
    },
    /// A URL Box returned (or the caller gave) points at a host this client was not configured
    /// for: the bearer token is not sent there.
    #[error("refusing to send the Box token to {0}: not a Box host nor a configured endpoint")]
    UntrustedEndpoint(String),
    /// A configuration value is missing or wrong.
    #[error("{0}")]
    Config(String),
}

/// Any failure of a Box call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Box answered with an error document.
    #[error(transparent)]
    Service(Box<ServiceError>),
    /// The request did not get an answer (connection, timeout, body).
    #[error("the request to Box failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The input breaks one of Box's rules; nothing was sent.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The token endpoint refused a token (its `error` and description) or was unavailable
    /// (`status` 429 or 5xx: retried).
    #[error("Box did not grant an access token: {detail}")]
    Auth {
        /// The token endpoint's HTTP status.
        status: u16,
        /// Its `error` and `error_description`.
        detail: String,
    },
    /// Box was still processing the parts when the commit wait ran out: the session stays, and
    /// committing again later (a resume) finishes the upload.
    #[error("Box was still processing the parts after {waited:?} of commits answered 202; commit again later (resume)")]
    Processing {
        /// How long commits were repeated.
        waited: Duration,
    },
    /// Box's answer could not be understood.
    #[error("Box's answer to {operation} could not be read: {detail}")]
    MalformedResponse {
        /// The operation.
        operation: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// What Box stored does not match what was sent.
    #[error(transparent)]
    Integrity(#[from] upload_core::IntegrityError),
}

impl Error {
    /// The Box error code, when Box answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Service(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The error document, when Box answered with one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            Error::Service(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn transport(e: reqwest::Error) -> Self {
        // Session URLs carry ids only, but keep errors free of URLs all the same.
        Error::Transport(e.without_url())
    }
}

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Self {
        Error::Service(Box::new(e))
    }
}

impl upload_core::Classify for Error {
    fn is_retryable(&self) -> bool {
        match self {
            Error::Service(e) => e.code.is_retryable() || upload_core::retry::status_is_retryable(e.status),
            // A body cut off while it was read is a decode error in reqwest: retry it too.
            Error::Transport(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode(),
            Error::MalformedResponse { .. } => true,
            // The token endpoint overloaded or down: a token may come at the next attempt.
            Error::Auth { status, .. } => upload_core::retry::status_is_retryable(*status),
            Error::Invalid(_) | Error::Integrity(_) | Error::Processing { .. } => false,
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
            // Box may store a part and still answer 5xx.
            Error::Service(e) => e.status >= 500,
            Error::Transport(e) => !e.is_connect(),
            Error::MalformedResponse { .. } | Error::Integrity(_) | Error::Processing { .. } => true,
            Error::Invalid(_) | Error::Auth { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(context: serde_json::Value) -> ServiceError {
        ServiceError {
            status: 409,
            code: ErrorCode::ItemNameInUse,
            body: ClientError { context_info: Some(context), ..ClientError::default() },
            retry_after: None,
        }
    }

    #[test]
    fn conflicts_read_as_array_or_object() {
        let array = service(serde_json::json!({"conflicts": [{"type": "file", "id": "12"}, {"id": "13"}]}));
        assert_eq!(array.conflicting_item_ids(), ["12", "13"]);
        let object = service(serde_json::json!({"conflicts": {"type": "file", "id": "14"}}));
        assert_eq!(object.conflicting_item_ids(), ["14"]);
        let part = service(serde_json::json!({"conflicting_part": {"part_id": "AB12CD34", "offset": 8, "size": 8}}));
        assert_eq!(part.conflicting_part().map(|p| (p.offset, p.size)), Some((8, 8)));
    }
}
