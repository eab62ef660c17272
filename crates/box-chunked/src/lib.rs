//! # box-chunked
//!
//! Box chunked upload sessions that survive flaky networks, crashes and 30-second request
//! limits: every operation of the chunked upload family with Box's own names, bearer tokens that
//! refresh (Client Credentials Grant, OAuth 2 refresh tokens, `As-User`), a resumable parallel
//! uploader with checkpoints and step mode, and (feature `emulator`) an in-process Box server for
//! tests.
//!
//! ## Getting started
//!
//! ```no_run
//! use box_chunked::{Client, Config, UploadOptions, Uploader};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // BOX_ACCESS_TOKEN, or BOX_CLIENT_ID and BOX_CLIENT_SECRET with BOX_ENTERPRISE_ID (Client
//! // Credentials Grant), BOX_USER_ID or BOX_REFRESH_TOKEN; BOX_AS_USER to act as a user.
//! let client = Client::new(Config::from_env()?)?;
//! let uploader = Uploader::new(client).with_options(UploadOptions {
//!     // Run the same program again after a crash: it resumes and sends only what is missing.
//!     checkpoint: Some("backup.tar.upload.json".into()),
//!     ..UploadOptions::default()
//! });
//! // Folder "0" is the root. Files below 20 MB take Box's plain upload, larger ones a chunked
//! // session with parts in parallel.
//! let done = uploader.upload_file("0", "backup.tar", "backup.tar").await?;
//! println!("file {} stored, SHA-1 {:?} checked, {} parts", done.file.id, done.file.sha1, done.parts);
//! # Ok(()) }
//! ```
//!
//! Step mode, for a web backend that must answer within 20–30 s: each request runs one step and
//! stores the state (plain serde data) for the next. A commit that Box answers with 202 (still
//! processing the parts) is repeated by the next step.
//!
//! ```no_run
//! use std::time::Duration;
//! use box_chunked::{BoxUploadState, Client, Config, Source, Step, Uploader};
//!
//! # async fn handler(saved: Option<String>) -> Result<Option<String>, Box<dyn std::error::Error>> {
//! let uploader = Uploader::new(Client::new(Config::from_env()?)?);
//! let source = Source::file("/data/video.mp4")?;
//! let mut upload = match saved {
//!     Some(json) => uploader.resume(source, serde_json::from_str::<BoxUploadState>(&json)?),
//!     None => uploader.upload("0", "video.mp4", source)?,
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
//! * [`config`]: [`Config`]: the API, upload and token URLs, authentication, `As-User`.
//! * [`auth`]: where the bearer token comes from and how it is refreshed (in the place of the
//!   other crates' `signing`: Box requests are not signed).
//! * [`types`]: the wire models (generated from `specs/box`).
//! * [`error`]: [`Error`], Box's [`ServiceError`] with its typed [`ErrorCode`] and
//!   `context_info`, and [`InvalidInput`] for input refused before any request.
//! * [`client`]: [`Client`], one method per Box call: Create upload session (for a new file or
//!   a new version), Get upload session, Upload part, List parts, Commit upload session, Abort
//!   upload session, the plain Upload file and Upload file version, and Get file information.
//! * [`uploader`]: [`Uploader`], Box's protocol on the shared engine (`upload-core`).
//! * `emulator` (feature `emulator`): the in-process Box server.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod client;
pub mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod generated;
pub mod types;
pub mod uploader;

pub use auth::{Auth, Subject};
pub use client::{CHUNKED_MIN, Client, Commit};
pub use config::Config;
pub use error::{Error, ErrorCode, InvalidInput, ServiceError};
pub use upload_core::{self, PartSize, Source, Step, UploadOptions};
pub use uploader::{BoxUpload, BoxUploadState, Destination, FileUploaded, Uploader};
