//! The errors the SharePoint host answers, in the shapes SharePoint gives them.

#[allow(unused_imports)]
use super::super::{ids::*, items::*, records::*, server::*, sessions::*, tokens::*};
use super::*;
#[allow(unused_imports)]
use super::{calls::*, files::*, replies::*, state::*};

// ---------------------------------------------------------------------------------------------
// Errors.

/// An error answer: status, `"<hresult>, <.NET type>"` and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SpError {
    pub(super) status: u16,
    pub(super) code: String,
    pub(super) message: String,
    pub(super) retry_after: Option<u64>,
}

pub(super) const SP_EXCEPTION: &str = "Microsoft.SharePoint.SPException";
pub(super) const LOCK_EXCEPTION: &str = "-2147018894, Microsoft.SharePoint.SPFileLockException";
pub(super) const BAD_QUERY: &str = "-1, Microsoft.SharePoint.Client.InvalidClientQueryException";

impl SpError {
    pub(super) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), retry_after: None }
    }

    pub(super) fn bad_query(message: impl Into<String>) -> Self {
        Self::new(400, BAD_QUERY, message)
    }

    pub(super) fn not_found(path: &str) -> Self {
        Self::new(
            404,
            "-1, Microsoft.SharePoint.Client.ResourceNotFoundException",
            format!("Cannot find resource for the request {path}."),
        )
    }

    pub(super) fn file_not_found(server_relative: &str) -> Self {
        Self::new(404, &format!("-2130575338, {SP_EXCEPTION}"), format!("The file {server_relative} does not exist."))
    }

    pub(super) fn folder_not_found() -> Self {
        Self::new(404, "-2147024894, System.IO.FileNotFoundException", "File Not Found.")
    }

    pub(super) fn session_not_found() -> Self {
        Self::new(404, &format!("-2130246326, {SP_EXCEPTION}"), "The upload session was not found or has expired.")
    }

    pub(super) fn access_denied() -> Self {
        Self::new(
            401,
            "-2147024891, System.UnauthorizedAccessException",
            "Access denied. You do not have permission to perform this action or access this resource.",
        )
    }

    pub(super) fn security_validation() -> Self {
        Self::new(
            403,
            &format!("-2130575251, {SP_EXCEPTION}"),
            "The security validation for this page is invalid and might be corrupted. Please use your web browser's Back button to try your operation again.",
        )
    }

    pub(super) fn too_big(max: u64) -> Self {
        Self::bad_query(format!(
            "The request message is too big. The server does not allow messages larger than {max} bytes."
        ))
    }

    pub(super) fn locked(server_relative: &str, who: &str) -> Self {
        Self::new(423, LOCK_EXCEPTION, format!("The file \"{server_relative}\" is locked for shared use by {who}."))
    }

    pub(super) fn busy() -> Self {
        Self::new(409, LOCK_EXCEPTION, "The file is locked: another chunk of this upload session is being received.")
    }

    pub(super) fn bad_offset() -> Self {
        Self::new(
            400,
            "-2147024809, System.ArgumentOutOfRangeException",
            "Specified argument was out of the range of valid values.\r\nParameter name: fileOffset",
        )
    }

    pub(super) fn bad_name() -> Self {
        Self::new(
            400,
            &format!("-2130575245, {SP_EXCEPTION}"),
            "The file or folder name contains characters that are not permitted. Please use a different name.",
        )
    }

    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, &format!("-2146232832, {SP_EXCEPTION}"), message)
    }

    pub(super) fn storage(e: &std::io::Error) -> Self {
        if is_unstorable(e) { Self::bad_name() } else { Self::internal(e.to_string()) }
    }
}
