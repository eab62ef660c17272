//! # oss-multipart
//!
//! Aliyun OSS multipart uploads that survive flaky networks, crashes and 30-second request
//! limits: every operation of the multipart family with OSS's own names, V1 and V4 signing,
//! presigned part uploads, a resumable parallel uploader with checkpoints and step mode, and
//! (feature `emulator`) an in-process OSS server for tests.
//!
//! ## Getting started
//!
//! ```no_run
//! use oss_multipart::{Client, Config, UploadOptions, Uploader};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET (and OSS_SESSION_TOKEN), OSS_ENDPOINT such as
//! // oss-cn-hangzhou.aliyuncs.com; the region for V4 signing comes from the endpoint.
//! let client = Client::new(Config::from_env()?)?;
//! let uploader = Uploader::new(client).with_options(UploadOptions {
//!     // Run the same program again after a crash: it resumes and sends only what is missing.
//!     checkpoint: Some("backup.tar.upload.json".into()),
//!     ..UploadOptions::default()
//! });
//! let done = uploader.upload_file("my-bucket", "backups/backup.tar", "backup.tar").await?;
//! println!("stored {} bytes in {} parts, CRC-64 {:?} checked", done.len, done.parts, done.crc64);
//! # Ok(()) }
//! ```
//!
//! Step mode, for a web backend that must answer within 20–30 s: each request runs one step and
//! stores the state (plain serde data) for the next.
//!
//! ```no_run
//! use std::time::Duration;
//! use oss_multipart::{Client, Config, OssUploadState, Source, Step, Uploader};
//!
//! # async fn handler(saved: Option<String>) -> Result<Option<String>, Box<dyn std::error::Error>> {
//! let uploader = Uploader::new(Client::new(Config::from_env()?)?);
//! let source = Source::file("/data/video.mp4")?;
//! let mut upload = match saved {
//!     Some(json) => uploader.resume("my-bucket", "video.mp4", source, serde_json::from_str::<OssUploadState>(&json)?),
//!     None => uploader.upload("my-bucket", "video.mp4", source)?,
//! };
//! Ok(match upload.step(Duration::from_secs(20)).await? {
//!     Step::Done(_) => None,
//!     Step::Pending { .. } => Some(serde_json::to_string(&upload.into_state())?),
//! })
//! # }
//! ```
//!
//! ## Crate organization
//!
//! The four vendor crates of this project share one skeleton:
//!
//! * [`config`]: [`Config`]: endpoint and addressing, region, credentials, signature version.
//! * [`signing`]: V1 and V4 signing as pure functions, checked against the official vectors.
//! * [`types`]: the wire models (generated from `specs/oss`) and the options of each operation.
//! * [`error`]: [`Error`], OSS's [`ServiceError`] with its typed [`ErrorCode`], and
//!   [`InvalidInput`] for input refused before any request.
//! * [`client`]: [`Client`], one method per OSS call: InitiateMultipartUpload, UploadPart,
//!   UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload, ListParts,
//!   ListMultipartUploads, PutObject, HeadObject, and presigning.
//! * [`uploader`]: [`Uploader`], OSS's protocol on the shared engine (`upload-core`).
//! * `emulator` (feature `emulator`): the in-process OSS server.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client;
pub mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod generated;
mod presign;
pub mod signing;
pub mod types;
pub mod uploader;

pub use client::Client;
pub use config::{Addressing, Config, SignatureVersion};
pub use error::{Error, ErrorCode, InvalidInput, ServiceError};
pub use signing::Credentials;
pub use upload_core::{self, PartSize, Source, Step, UploadOptions};
pub use uploader::{OssUpload, OssUploadState, Uploader};
