//! Wire models (generated from `specs/oss/models.json`) and the options of each operation.

use std::time::Duration;

pub use crate::generated::models::*;

/// Options of InitiateMultipartUpload (and PutObject) that shape the object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectOptions {
    /// `Content-Type` of the object.
    pub content_type: Option<String>,
    /// `x-oss-meta-*` user metadata (names without the prefix).
    pub metadata: Vec<(String, String)>,
    /// `x-oss-storage-class` (`Standard`, `IA`, `Archive`…).
    pub storage_class: Option<String>,
    /// `x-oss-forbid-overwrite: true`: fail with FileAlreadyExists rather than replace an object.
    pub forbid_overwrite: bool,
    /// `?sequential`: OSS then refuses parts out of order (PartNotSequential).
    pub sequential: bool,
}

/// What UploadPart returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadPartOutput {
    /// The part's ETag, with its quotes, to list in CompleteMultipartUpload.
    pub etag: String,
    /// `x-oss-hash-crc64ecma` of the part.
    pub crc64: Option<u64>,
}

/// What CompleteMultipartUpload returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompleteOutput {
    /// The result document (absent with a callback, whose answer replaces it).
    pub result: Option<CompleteMultipartUploadResult>,
    /// `x-oss-hash-crc64ecma` of the whole object.
    pub crc64: Option<u64>,
    /// `x-oss-version-id`, for versioned buckets.
    pub version_id: Option<String>,
}

/// How to complete an upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompleteParts {
    /// These parts, in ascending part number order.
    List(Vec<CompletePart>),
    /// `x-oss-complete-all: yes`: every part OSS holds, in order (the body is empty).
    All,
}

/// What HeadObject returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Content-Length.
    pub len: u64,
    /// ETag, with quotes.
    pub etag: Option<String>,
    /// `x-oss-hash-crc64ecma`.
    pub crc64: Option<u64>,
    /// Content-Type.
    pub content_type: Option<String>,
    /// Last-Modified, as sent.
    pub last_modified: Option<String>,
}

/// Paging of ListParts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPartsPage {
    /// `max-parts` (1–1000; OSS's default is 1000).
    pub max_parts: Option<u32>,
    /// `part-number-marker`: parts after this number.
    pub part_number_marker: Option<u32>,
}

/// Filters and paging of ListMultipartUploads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListUploadsPage {
    /// Only keys with this prefix.
    pub prefix: Option<String>,
    /// Group keys up to this delimiter into common prefixes.
    pub delimiter: Option<String>,
    /// Keys after this one.
    pub key_marker: Option<String>,
    /// With `key_marker`: uploads of that key after this id.
    pub upload_id_marker: Option<String>,
    /// `max-uploads` (1–1000).
    pub max_uploads: Option<u32>,
}

/// A presigned request: the URL and the headers the request must carry exactly as signed.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    /// HTTP method.
    pub method: String,
    /// The URL, signature included: it is a credential until it expires.
    pub url: upload_core::Secret,
    /// Headers that were signed and must be sent as they are.
    pub headers: Vec<(String, String)>,
    /// How long the URL stays valid.
    pub expires_in: Duration,
}

impl std::fmt::Debug for PresignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}
