//! The resumable uploader: OSS's multipart protocol on the shared engine.
//!
//! * Part size from the file size within OSS's rules: 100 KiB minimum (but the last part),
//!   5 GiB maximum, 10,000 parts; 8 MiB by default, grown to fit the part limit.
//! * Four parts in flight by default, each with `Content-MD5` (OSS refuses a corrupted body) and
//!   its CRC-64 compared with the `x-oss-hash-crc64ecma` OSS returns.
//! * The whole object's CRC-64 is combined from the parts' and compared with OSS's after
//!   completion.
//! * CompleteMultipartUpload is not idempotent on OSS: when a retry gets NoSuchUpload because the
//!   first attempt did complete, the uploader checks the object with HeadObject (length and
//!   CRC-64) instead of failing.
//! * Resume from a checkpoint is reconciled with ListParts (every page); step mode and abort come
//!   from the engine.

use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use upload_core::size::{GIB, KIB, MIB, TIB};
use upload_core::{
    Created, Digests, DonePart, Hashes, IntegrityError, PartPlan, PartRules, PartUpload, Protocol, ServerPart, Source,
    Upload, UploadError, UploadOptions, UploadState,
};

use crate::client::Client;
use crate::error::{Error, ErrorCode};
use crate::types::{CompleteOutput, CompletePart, CompleteParts, ListPartsPage, ObjectOptions};

/// OSS's part rules.
pub fn rules() -> PartRules {
    PartRules {
        vendor: "OSS",
        min_part_size: 100 * KIB,
        max_part_size: 5 * GIB,
        part_size_multiple: 1,
        max_parts: 10_000,
        first_part_number: 1,
        default_part_size: 8 * MIB,
        min_source_len: 0,
        max_source_len: 48 * TIB,
        server_picks_part_size: false,
        needs_total_len: false,
        sequential: false,
    }
}

/// The session of an OSS multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OssSession {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The upload id InitiateMultipartUpload returned.
    pub upload_id: String,
}

/// What OSS returned for a part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OssPart {
    /// The ETag, with its quotes.
    pub etag: String,
}

/// The upload state of an OSS upload (checkpoint and step-mode state).
pub type OssUploadState = UploadState<OssSession, OssPart>;

/// An OSS upload on the engine.
pub type OssUpload = Upload<OssProtocol>;

/// OSS's multipart protocol for the engine.
#[derive(Clone, Debug)]
pub struct OssProtocol {
    client: Client,
    bucket: String,
    key: String,
    options: ObjectOptions,
}

impl OssProtocol {
    /// The protocol for one object.
    pub fn new(client: Client, bucket: impl Into<String>, key: impl Into<String>, options: ObjectOptions) -> Self {
        Self { client, bucket: bucket.into(), key: key.into(), options }
    }
}

impl OssProtocol {
    /// The part OSS holds under `part`'s number, if it holds these bytes (length, MD5, and the
    /// CRC-64 when both sides have one).
    async fn stored_part(&self, session: &OssSession, part: &PartUpload) -> Result<Option<OssPart>, Error> {
        let number = part.spec.number;
        let page = ListPartsPage { part_number_marker: number.checked_sub(1).filter(|&m| m > 0), max_parts: Some(1) };
        let listed = self.client.list_parts(&session.bucket, &session.key, &session.upload_id, &page).await?;
        let Some(held) = listed.parts.into_iter().find(|p| p.part_number == number) else { return Ok(None) };
        let same_md5 = part.digests.md5.is_some() && md5_of_etag(&held.etag) == part.digests.md5;
        let same_crc = match (part.digests.crc64, held.hash_crc64ecma) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => true,
        };
        Ok((held.size == part.spec.len && same_md5 && same_crc).then_some(OssPart { etag: held.etag }))
    }
}

/// The part's MD5 as OSS's ETag shows it, when the ETag is a plain MD5.
fn md5_of_etag(etag: &str) -> Option<[u8; 16]> {
    upload_core::hash::from_hex(etag.trim_matches('"'))
}

impl Protocol for OssProtocol {
    type Session = OssSession;
    type Receipt = OssPart;
    type Output = CompleteOutput;
    type Error = Error;

    fn rules(&self) -> PartRules {
        PartRules { sequential: self.options.sequential, ..rules() }
    }

    fn target(&self) -> String {
        format!("oss://{}/{}", self.bucket, self.key)
    }

    fn check_session(&self, session: &OssSession, _plan: &PartPlan) -> Result<(), String> {
        if session.bucket == self.bucket && session.key == self.key {
            return Ok(());
        }
        Err(format!("a session of oss://{}/{}", session.bucket.escape_debug(), session.key.escape_debug()))
    }

    fn part_hashes(&self) -> Hashes {
        Hashes::MD5 | Hashes::CRC64
    }

    fn whole_hashes(&self) -> Hashes {
        Hashes::CRC64
    }

    async fn create(&self, _total_len: Option<u64>, _part_size: u64) -> Result<Created<OssSession>, Error> {
        let r = self.client.initiate_multipart_upload(&self.bucket, &self.key, &self.options).await?;
        Ok(Created {
            session: OssSession { bucket: self.bucket.clone(), key: self.key.clone(), upload_id: r.upload_id },
            part_size: None,
        })
    }

    async fn upload_part(&self, session: &OssSession, part: PartUpload) -> Result<OssPart, Error> {
        let md5 = part.digests.md5_base64();
        let sent = self
            .client
            .upload_part(
                &session.bucket,
                &session.key,
                &session.upload_id,
                part.spec.number,
                part.body.clone(),
                md5.as_deref(),
            )
            .await;
        let out = match sent {
            // A sequential upload refuses to overwrite a part: an earlier attempt whose answer
            // was lost had stored it. It is this part when OSS holds the same length and MD5.
            Err(Error::Service(e)) if e.code == ErrorCode::PartAlreadyExist => {
                return self.stored_part(session, &part).await?.ok_or(Error::Service(e));
            }
            other => other?,
        };
        if let (Some(ours), Some(theirs)) = (part.digests.crc64, out.crc64)
            && ours != theirs
        {
            return Err(Error::Integrity(IntegrityError {
                what: format!("CRC-64 of part {}", part.spec.number),
                expected: ours.to_string(),
                actual: theirs.to_string(),
            }));
        }
        Ok(OssPart { etag: out.etag })
    }

    async fn list_parts(&self, session: &OssSession, _plan: &PartPlan) -> Result<Vec<ServerPart<OssPart>>, Error> {
        let parts = self.client.list_all_parts(&session.bucket, &session.key, &session.upload_id).await?;
        Ok(parts
            .into_iter()
            .map(|p| ServerPart {
                number: p.part_number,
                len: p.size,
                digests: Digests { crc64: p.hash_crc64ecma, md5: md5_of_etag(&p.etag), ..Digests::default() },
                receipt: OssPart { etag: p.etag },
            })
            .collect())
    }

    async fn complete(
        &self,
        session: &OssSession,
        parts: &[DonePart<OssPart>],
        whole: &Digests,
        total_len: u64,
    ) -> Result<CompleteOutput, Error> {
        let list = parts.iter().map(|p| CompletePart { part_number: p.number, etag: p.receipt.etag.clone() }).collect();
        let result = self
            .client
            .complete_multipart_upload(&session.bucket, &session.key, &session.upload_id, &CompleteParts::List(list))
            .await;
        match result {
            Err(e) if e.code() == Some(&ErrorCode::NoSuchUpload) => {
                // An earlier attempt may have completed the upload and lost its answer: the
                // object then exists with exactly these bytes.
                // Only an object proven absent or different starts the upload over; a check
                // that failed (5xx, timeout) is that failure, retried and resumable.
                match self.client.head_object(&session.bucket, &session.key).await {
                    Ok(head) if head.len == total_len && whole.crc64.is_some() && head.crc64 == whole.crc64 => {
                        tracing::info!(target = %self.target(), "the upload was completed by an attempt whose answer was lost");
                        Ok(CompleteOutput { result: None, crc64: head.crc64, version_id: None })
                    }
                    Ok(_) => Err(e),
                    Err(head) if head.code() == Some(&ErrorCode::NoSuchKey) => Err(e),
                    Err(head) => Err(head),
                }
            }
            other => other,
        }
    }

    fn verify(&self, output: &CompleteOutput, whole: &Digests) -> Result<(), IntegrityError> {
        match (whole.crc64, output.crc64) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                Err(IntegrityError { what: "CRC-64".into(), expected: ours.to_string(), actual: theirs.to_string() })
            }
            _ => Ok(()),
        }
    }

    fn is_session_gone(&self, error: &Error) -> bool {
        error.code() == Some(&ErrorCode::NoSuchUpload)
    }

    async fn abort(&self, session: &OssSession) -> Result<(), Error> {
        self.client.abort_multipart_upload(&session.bucket, &session.key, &session.upload_id).await
    }
}

/// What [`Uploader::upload_file`] did.
#[derive(Debug)]
pub struct FileUploaded {
    /// Bytes stored.
    pub len: u64,
    /// The object's CRC-64, checked against the source's.
    pub crc64: Option<u64>,
    /// Parts used (1 for a single PutObject).
    pub parts: u32,
    /// What the engine did (empty for a single PutObject).
    pub report: upload_core::UploadReport,
}

/// The high-level uploader: files and streams to OSS objects, resumable.
#[derive(Clone, Debug)]
pub struct Uploader {
    client: Client,
    options: UploadOptions,
    object: ObjectOptions,
}

impl Uploader {
    /// An uploader with the engine's defaults: 8 MiB parts grown to fit, 4 in flight.
    pub fn new(client: Client) -> Self {
        let options = UploadOptions { retry: client.config().retry.clone(), ..UploadOptions::default() };
        Self { client, options, object: ObjectOptions::default() }
    }

    /// Sets the engine options (part size, concurrency, checkpoint file, progress, cancel).
    pub fn with_options(mut self, options: UploadOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the object options (content type, metadata, storage class…).
    pub fn with_object_options(mut self, object: ObjectOptions) -> Self {
        self.object = object;
        self
    }

    fn protocol(&self, bucket: &str, key: &str) -> OssProtocol {
        OssProtocol::new(self.client.clone(), bucket, key, self.object.clone())
    }

    /// A multipart upload on the engine: resumed from the checkpoint file of the options when it
    /// exists, new otherwise. Drive it with `run()` or `step(budget)`.
    pub fn upload(&self, bucket: &str, key: &str, source: Source) -> Result<OssUpload, UploadError<Error>> {
        crate::client::validate_bucket(bucket).map_err(|e| UploadError::Input(e.into()))?;
        crate::client::validate_key(key).map_err(|e| UploadError::Input(e.into()))?;
        Upload::resume_or_new(self.protocol(bucket, key), source, self.options.clone())
    }

    /// Continues an upload from a stored state (step mode).
    pub fn resume(&self, bucket: &str, key: &str, source: Source, state: OssUploadState) -> OssUpload {
        Upload::resume(self.protocol(bucket, key), source, state, self.options.clone())
    }

    /// Uploads a file: one PutObject when it fits in one part, a resumable multipart upload
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
            let bytes = tokio::fs::read(path.as_ref()).await.map_err(UploadError::Read)?;
            return self.put_small(bucket, key, Bytes::from(bytes)).await;
        }
        let mut upload = self.upload(bucket, key, source)?;
        let done = upload.run().await?;
        let parts = upload.state().map(|s| s.parts_done()).unwrap_or_default();
        Ok(FileUploaded {
            len,
            crc64: done.digests.crc64,
            parts: parts.max(done.report.parts_uploaded),
            report: done.report,
        })
    }

    async fn put_small(&self, bucket: &str, key: &str, body: Bytes) -> Result<FileUploaded, UploadError<Error>> {
        let digests = Digests::compute(Hashes::MD5 | Hashes::CRC64, &body);
        let md5 = digests.md5_base64();
        // PutObject replaces the whole object, so a retry after a lost answer is harmless.
        let out = upload_core::single::send_whole(&self.options, upload_core::single::Repeat::Idempotent, || {
            self.client.put_object(bucket, key, body.clone(), md5.as_deref(), &self.object)
        })
        .await?;
        if let (Some(ours), Some(theirs)) = (digests.crc64, out.crc64)
            && ours != theirs
        {
            return Err(UploadError::Integrity(IntegrityError {
                what: "CRC-64".into(),
                expected: ours.to_string(),
                actual: theirs.to_string(),
            }));
        }
        Ok(FileUploaded {
            len: body.len() as u64,
            crc64: out.crc64,
            parts: 1,
            report: upload_core::UploadReport::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upload_core::hash::hex;

    #[test]
    fn etags_that_are_md5s_are_read_as_such() {
        assert_eq!(
            hex(&md5_of_etag("\"DF1F9DE8F39BDE03716AC8D425589A5A\"").unwrap()),
            "df1f9de8f39bde03716ac8d425589a5a"
        );
        assert_eq!(md5_of_etag("\"1C787C506EABFB9B45EAAA8DB039F4B2-2\""), None);
    }

    #[test]
    fn oss_rules_in_error_messages() {
        let err = PartPlan::new(&rules(), Some(GIB), upload_core::PartSize::Exact(64 * KIB)).unwrap_err();
        assert_eq!(err.to_string(), "part size 64 KiB is below OSS's minimum of 100 KiB");
        let err = PartPlan::new(&rules(), Some(100 * GIB), upload_core::PartSize::Exact(5 * MIB)).unwrap_err();
        assert!(err.to_string().contains("more than OSS's limit of 10000"), "{err}");
    }
}
