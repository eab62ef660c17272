//! # oss-multipart
//!
//! Aliyun OSS multipart uploads: every operation of the family, V1 and V4 signing, presigned part
//! uploads, a resumable parallel uploader with checkpoints and step mode, and (feature `emulator`)
//! an in-process OSS server for tests.
#![warn(missing_docs)]

pub mod client;
pub mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
mod generated;
pub mod signing;
pub mod types;
pub mod uploader;

pub use client::Client;
pub use config::{Addressing, Config, SignatureVersion};
pub use error::{Error, ErrorCode, InvalidInput, ServiceError};
pub use signing::Credentials;
pub use upload_core::{self, PartSize, Source, Step, UploadOptions};
pub use uploader::{OssUpload, OssUploadState, Uploader};
