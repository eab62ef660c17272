//! # box-chunked
//!
//! Box chunked upload sessions that survive flaky networks, crashes and 30-second request
//! limits: every operation of the chunked upload family with Box's own names, bearer tokens that
//! refresh (Client Credentials Grant, OAuth 2 refresh tokens, `As-User`), a resumable parallel
//! uploader with checkpoints and step mode, and (feature `emulator`) an in-process Box server for
//! tests.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod client;
pub mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
mod generated;
pub mod types;
pub mod uploader;

pub use auth::{Auth, Subject};
pub use client::{CHUNKED_MIN, Client, Commit};
pub use config::Config;
pub use error::{Error, ErrorCode, InvalidInput, ServiceError};
pub use upload_core::{self, PartSize, Source, Step, UploadOptions};
pub use uploader::{BoxUpload, BoxUploadState, Destination, FileUploaded, Uploader};
