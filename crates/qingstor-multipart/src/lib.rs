//! # qingstor-multipart
//!
//! QingStor multipart uploads that survive flaky networks, crashes and 30-second request
//! limits: every operation of the multipart family with QingStor's own names, QS signing (header
//! and presigned) checked against the official SDKs' vectors, presigned part uploads, a
//! resumable parallel uploader with checkpoints and step mode whose whole-object MD5 is right at
//! any concurrency, and (feature `emulator`) an in-process QingStor server for tests.
//!
//! ## Getting started
//!
//! ```no_run
//! use qingstor_multipart::{Client, Config, UploadOptions, Uploader};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // QINGSTOR_ACCESS_KEY_ID, QINGSTOR_SECRET_ACCESS_KEY and QINGSTOR_ZONE (pek3a, sh1a…), or
//! // ~/.qingstor/config.yaml as the official SDKs read it.
//! let client = Client::new(Config::load()?)?;
//! let uploader = Uploader::new(client).with_options(UploadOptions {
//!     // Run the same program again after a crash: it resumes and sends only what is missing.
//!     checkpoint: Some("backup.tar.upload.json".into()),
//!     ..UploadOptions::default()
//! });
//! let done = uploader.upload_file("my-bucket", "backups/backup.tar", "backup.tar").await?;
//! println!("stored {} bytes in {} parts, MD5 {:?} checked", done.len, done.parts, done.md5);
//! # Ok(()) }
//! ```
//!
//! Step mode, for a web backend that must answer within 20–30 s: each request runs one step and
//! stores the state (plain serde data) for the next.
//!
//! ```no_run
//! use std::time::Duration;
//! use qingstor_multipart::{Client, Config, QingStorUploadState, Source, Step, Uploader};
//!
//! # async fn handler(saved: Option<String>) -> Result<Option<String>, Box<dyn std::error::Error>> {
//! let uploader = Uploader::new(Client::new(Config::load()?)?);
//! let source = Source::file("/data/video.mp4")?;
//! let mut upload = match saved {
//!     Some(json) => uploader.resume("my-bucket", "video.mp4", source, serde_json::from_str::<QingStorUploadState>(&json)?),
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
//! * [`config`]: [`Config`]: zone, host, port, protocol, addressing and credentials, from code,
//!   the environment or `~/.qingstor/config.yaml`.
//! * [`signing`]: QS signing (header and presigned) as pure functions, checked against the
//!   official vectors.
//! * [`types`]: the wire models (generated from `specs/qingstor`).
//! * [`error`]: [`Error`], QingStor's [`ServiceError`] with its typed [`ErrorCode`], and
//!   [`InvalidInput`] for input refused before any request.
//! * [`client`]: [`Client`], one method per QingStor call: Initiate Multipart Upload, Upload
//!   Multipart (numbered from 0), Upload part by copy, List Multipart, Complete Multipart Upload,
//!   Abort Multipart Upload, List Multipart Uploads, Put Object, Head Object, and presigning.
//! * [`uploader`]: [`Uploader`], QingStor's protocol on the shared engine (`upload-core`).
//! * `emulator` (feature `emulator`): the in-process QingStor server.
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
pub mod signing;
pub mod types;
pub mod uploader;

pub use client::Client;
pub use config::Config;
pub use error::{Error, ErrorCode, InvalidInput, ServiceError};
pub use signing::Credentials;
pub use upload_core::{self, PartSize, Source, Step, UploadOptions};
pub use uploader::{FileUploaded, QingStorUpload, QingStorUploadState, Uploader};
