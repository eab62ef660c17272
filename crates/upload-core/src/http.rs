//! Reading vendors' answers (feature `http`): an answer document is read only up to
//! [`MAX_DOCUMENT`] bytes, so a broken or hostile server cannot make a client buffer without
//! bound. Part bodies never come back through here; the vendor crates map [`DocumentError`] to
//! their own errors.

use bytes::{Bytes, BytesMut};

/// The most bytes of an answer document read into memory (8 MiB). The vendors' documents are a
/// few kilobytes; a page of parts is at most a few hundred.
pub const MAX_DOCUMENT: usize = 8 << 20;

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// It is longer than [`MAX_DOCUMENT`] (announced, or found while reading).
    #[error("an answer of more than {MAX_DOCUMENT} bytes")]
    TooLong,
    /// The connection failed while reading it.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads an answer's body, refusing one longer than [`MAX_DOCUMENT`] as soon as it gets there.
pub async fn read_document(mut response: reqwest::Response) -> Result<Bytes, DocumentError> {
    if response.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return Err(DocumentError::TooLong);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(DocumentError::TooLong);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
