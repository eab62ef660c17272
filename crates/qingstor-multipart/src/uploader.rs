//! The resumable uploader: QingStor's multipart protocol on the shared engine.
//!
//! * Parts from 4 MiB (all but the last) to 5 GiB, at most 10,000, numbered from 0; 8 MiB by
//!   default, grown to fit the part limit.
//! * Parts in parallel (4 by default), each with `Content-MD5`.
//! * The whole object's MD5, sent as the `ETag` of Complete Multipart Upload, is computed in the
//!   engine's sequential reading stage, in source order. rclone warns that its QingStor uploads
//!   with concurrency above 1 store wrong checksums: it hashes the parts in the order they finish
//!   uploading. Here the order of uploads does not matter, so the ETag is right at any
//!   concurrency, and it survives resumes (the hash state is in the checkpoint).
//! * Complete Multipart Upload answers with no body, so the uploader asks Head Object for the
//!   object's length and ETag and compares them with the source. After a lost answer, a retry
//!   gets `upload_not_exists`; the same Head Object then shows whether the first attempt worked.

use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use upload_core::hash::hex;
use upload_core::size::{GIB, MIB, TIB};
use upload_core::{
    Created, Digests, DonePart, Hashes, IntegrityError, PartPlan, PartRules, PartUpload, Protocol, ServerPart, Source,
    Upload, UploadError, UploadOptions, UploadState,
};

use crate::client::{Client, ObjectMeta};
use crate::error::{Error, ErrorCode};
use crate::types::ObjectPart;

/// QingStor's part rules.
pub fn rules() -> PartRules {
    PartRules {
        vendor: "QingStor",
        min_part_size: 4 * MIB,
        max_part_size: 5 * GIB,
        part_size_multiple: 1,
        max_parts: 10_000,
        first_part_number: 0,
        default_part_size: 8 * MIB,
        min_source_len: 0,
        max_source_len: 50 * TIB,
        server_picks_part_size: false,
        needs_total_len: false,
        sequential: false,
    }
}

/// The session of a QingStor multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QingStorSession {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The upload id.
    pub upload_id: String,
}

/// What QingStor returned for a part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QingStorPart {
    /// The part's ETag (its MD5), when QingStor sent one.
    pub etag: Option<String>,
}

/// The upload state of a QingStor upload (checkpoint and step-mode state).
pub type QingStorUploadState = UploadState<QingStorSession, QingStorPart>;

/// A QingStor upload on the engine.
pub type QingStorUpload = Upload<QingStorProtocol>;

/// QingStor's multipart protocol for the engine.
#[derive(Clone, Debug)]
pub struct QingStorProtocol {
    client: Client,
    bucket: String,
    key: String,
    content_type: Option<String>,
}

impl QingStorProtocol {
    /// The protocol for one object.
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        key: impl Into<String>,
        content_type: Option<String>,
    ) -> Self {
        Self { client, bucket: bucket.into(), key: key.into(), content_type }
    }
}

fn md5_of_etag(etag: &str) -> Option<[u8; 16]> {
    upload_core::hash::from_hex(etag.trim_matches('"'))
}

impl Protocol for QingStorProtocol {
    type Session = QingStorSession;
    type Receipt = QingStorPart;
    type Output = ObjectMeta;
    type Error = Error;

    fn rules(&self) -> PartRules {
        rules()
    }

    fn target(&self) -> String {
        format!("qingstor://{}/{}", self.bucket, self.key)
    }

    fn check_session(&self, session: &QingStorSession, _plan: &PartPlan) -> Result<(), String> {
        if session.bucket == self.bucket && session.key == self.key {
            return Ok(());
        }
        Err(format!("a session of qingstor://{}/{}", session.bucket.escape_debug(), session.key.escape_debug()))
    }

    fn part_hashes(&self) -> Hashes {
        Hashes::MD5
    }

    fn whole_hashes(&self) -> Hashes {
        Hashes::MD5
    }

    async fn create(&self, _total_len: Option<u64>, _part_size: u64) -> Result<Created<QingStorSession>, Error> {
        let out = self.client.initiate_multipart_upload(&self.bucket, &self.key, self.content_type.as_deref()).await?;
        Ok(Created {
            session: QingStorSession { bucket: self.bucket.clone(), key: self.key.clone(), upload_id: out.upload_id },
            part_size: None,
        })
    }

    async fn upload_part(&self, session: &QingStorSession, part: PartUpload) -> Result<QingStorPart, Error> {
        let md5 = part.digests.md5_base64();
        let out = self
            .client
            .upload_multipart(
                &session.bucket,
                &session.key,
                &session.upload_id,
                part.spec.number,
                part.body,
                md5.as_deref(),
            )
            .await?;
        Ok(QingStorPart { etag: out.etag.or_else(|| part.digests.md5_hex()) })
    }

    async fn list_parts(
        &self,
        session: &QingStorSession,
        _plan: &PartPlan,
    ) -> Result<Vec<ServerPart<QingStorPart>>, Error> {
        let parts = self.client.list_all_parts(&session.bucket, &session.key, &session.upload_id).await?;
        Ok(parts
            .into_iter()
            .filter_map(|p| {
                Some(ServerPart {
                    number: p.part_number,
                    len: p.size?,
                    digests: Digests { md5: p.etag.as_deref().and_then(md5_of_etag), ..Digests::default() },
                    receipt: QingStorPart { etag: p.etag },
                })
            })
            .collect())
    }

    async fn complete(
        &self,
        session: &QingStorSession,
        parts: &[DonePart<QingStorPart>],
        whole: &Digests,
        total_len: u64,
    ) -> Result<ObjectMeta, Error> {
        let list: Vec<ObjectPart> = parts
            .iter()
            .map(|p| ObjectPart {
                part_number: p.number,
                etag: p.receipt.etag.as_ref().map(|e| e.trim_matches('"').to_owned()),
                ..ObjectPart::default()
            })
            .collect();
        let etag = whole.md5_hex();
        let result = self
            .client
            .complete_multipart_upload(&session.bucket, &session.key, &session.upload_id, &list, etag.as_deref())
            .await;
        match result {
            Ok(()) => {
                // Complete answers with no body: Head Object shows what was stored. The ETag is
                // the one sent, so the length is the check that can fail.
                let head = self.client.head_object(&session.bucket, &session.key).await?;
                if head.len != total_len {
                    return Err(Error::Integrity(IntegrityError {
                        what: "object length".into(),
                        expected: total_len.to_string(),
                        actual: head.len.to_string(),
                    }));
                }
                Ok(head)
            }
            Err(e) if e.code() == Some(&ErrorCode::UploadNotExists) => {
                // An earlier attempt may have completed the upload and lost its answer.
                match self.client.head_object(&session.bucket, &session.key).await {
                    Ok(head)
                        if head.len == total_len
                            && head.etag.as_deref().map(|e| e.trim_matches('"')) == etag.as_deref() =>
                    {
                        Ok(head)
                    }
                    // Only an object proven absent or different starts the upload over; a
                    // check that failed (5xx, timeout) is that failure, retried and resumable.
                    Ok(_) => Err(e),
                    Err(head) if head.code() == Some(&ErrorCode::ObjectNotExists) => Err(e),
                    Err(head) => Err(head),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn verify(&self, output: &ObjectMeta, whole: &Digests) -> Result<(), IntegrityError> {
        match (whole.md5_hex(), output.etag.as_deref().map(|e| e.trim_matches('"').to_ascii_lowercase())) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                Err(IntegrityError { what: "ETag (MD5 of the object)".into(), expected: ours, actual: theirs })
            }
            _ => Ok(()),
        }
    }

    fn is_session_gone(&self, error: &Error) -> bool {
        error.code() == Some(&ErrorCode::UploadNotExists)
    }

    async fn abort(&self, session: &QingStorSession) -> Result<(), Error> {
        self.client.abort_multipart_upload(&session.bucket, &session.key, &session.upload_id).await
    }
}

/// What [`Uploader::upload_file`] did.
#[derive(Debug)]
pub struct FileUploaded {
    /// Bytes stored.
    pub len: u64,
    /// The object's MD5 (lower-case hex), stored as its ETag and checked with Head Object.
    pub md5: Option<String>,
    /// Parts used (1 for a single Put Object).
    pub parts: u32,
    /// What the engine did (empty for a single Put Object).
    pub report: upload_core::UploadReport,
}

/// The high-level uploader: files and streams to QingStor objects, resumable.
#[derive(Clone, Debug)]
pub struct Uploader {
    client: Client,
    options: UploadOptions,
    content_type: Option<String>,
}

impl Uploader {
    /// An uploader with the engine's defaults: 8 MiB parts grown to fit, 4 in flight.
    pub fn new(client: Client) -> Self {
        let options = UploadOptions { retry: client.config().retry.clone(), ..UploadOptions::default() };
        Self { client, options, content_type: None }
    }

    /// Sets the engine options (part size, concurrency, checkpoint file, progress, cancel).
    pub fn with_options(mut self, options: UploadOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the object's Content-Type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// A multipart upload on the engine: resumed from the checkpoint file of the options when it
    /// exists, new otherwise. Drive it with `run()` or `step(budget)`.
    pub fn upload(&self, bucket: &str, key: &str, source: Source) -> Result<QingStorUpload, UploadError<Error>> {
        crate::client::validate_bucket(bucket).map_err(|e| UploadError::Input(e.into()))?;
        crate::client::validate_key(key).map_err(|e| UploadError::Input(e.into()))?;
        let protocol = QingStorProtocol::new(self.client.clone(), bucket, key, self.content_type.clone());
        Upload::resume_or_new(protocol, source, self.options.clone())
    }

    /// Continues an upload from a stored state (step mode).
    pub fn resume(&self, bucket: &str, key: &str, source: Source, state: QingStorUploadState) -> QingStorUpload {
        let protocol = QingStorProtocol::new(self.client.clone(), bucket, key, self.content_type.clone());
        Upload::resume(protocol, source, state, self.options.clone())
    }

    /// Uploads a file: one Put Object when it fits in one part, a resumable multipart upload
    /// otherwise.
    pub async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: impl AsRef<Path>,
    ) -> Result<FileUploaded, UploadError<Error>> {
        let source = Source::file(path.as_ref()).map_err(UploadError::Read)?;
        let len = source.len().unwrap_or(0);
        let plan = PartPlan::new(&rules(), Some(len), self.options.part_size)?;
        if plan.part_count() == Some(1) && self.options.checkpoint.as_ref().is_none_or(|c| !c.exists()) {
            crate::client::validate_bucket(bucket).map_err(|e| UploadError::Input(e.into()))?;
            crate::client::validate_key(key).map_err(|e| UploadError::Input(e.into()))?;
            let bytes = tokio::fs::read(path.as_ref()).await.map_err(UploadError::Read)?;
            return self.put_small(bucket, key, Bytes::from(bytes)).await;
        }
        let mut upload = self.upload(bucket, key, source)?;
        let done = upload.run().await?;
        let parts = upload.state().map(|s| s.parts_done()).unwrap_or_default();
        Ok(FileUploaded {
            len,
            md5: done.digests.md5_hex(),
            parts: parts.max(done.report.parts_uploaded),
            report: done.report,
        })
    }

    async fn put_small(&self, bucket: &str, key: &str, body: Bytes) -> Result<FileUploaded, UploadError<Error>> {
        let digests = Digests::compute(Hashes::MD5, &body);
        let md5 = digests.md5_base64();
        // Put Object replaces the whole object, so a retry after a lost answer is harmless.
        let out = upload_core::single::send_whole(&self.options, upload_core::single::Repeat::Idempotent, || {
            self.client.put_object(bucket, key, body.clone(), md5.as_deref(), self.content_type.as_deref())
        })
        .await?;
        let ours = digests.md5_hex();
        if let (Some(ours), Some(theirs)) = (&ours, out.etag.as_deref().and_then(md5_of_etag).map(|m| hex(&m)))
            && *ours != theirs
        {
            return Err(UploadError::Integrity(IntegrityError {
                what: "ETag (MD5 of the object)".into(),
                expected: ours.clone(),
                actual: theirs,
            }));
        }
        Ok(FileUploaded { len: body.len() as u64, md5: ours, parts: 1, report: upload_core::UploadReport::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qingstor_rules_in_error_messages() {
        let err = PartPlan::new(&rules(), Some(GIB), upload_core::PartSize::Exact(MIB)).unwrap_err();
        assert_eq!(err.to_string(), "part size 1 MiB is below QingStor's minimum of 4 MiB");
        let plan = PartPlan::new(&rules(), Some(10 * MIB), upload_core::PartSize::Exact(4 * MIB)).unwrap();
        let numbers: Vec<u32> = plan.parts().map(|p| p.number).collect();
        assert_eq!(numbers, [0, 1, 2], "QingStor numbers parts from 0");
    }

    #[test]
    fn etags_are_read_as_md5s() {
        assert_eq!(md5_of_etag("\"64ec234786ffc5c20306ec441b65a521\"").map(|m| m[0]), Some(0x64));
        assert_eq!(md5_of_etag("64ec234786ffc5c20306ec441b65a521").map(|m| m[15]), Some(0x21));
        assert_eq!(md5_of_etag("not-an-md5"), None);
    }
}
