//! # qingstor-multipart
//!
//! QingStor multipart uploads, in the module skeleton of `oss-multipart`: configuration from
//! code, the environment or `~/.qingstor/config.yaml`; QS signing (header and presigned) as pure
//! functions checked against the official SDKs' vectors; the wire models and error codes
//! generated from `specs/qingstor`; and the operations layer ([`Client`]: Initiate Multipart
//! Upload, Upload Multipart (numbered from 0), Upload part by copy, List Multipart, Complete
//! Multipart Upload, Abort Multipart Upload, List Multipart Uploads, Put Object, Head Object, and
//! presigning); and the resumable uploader on the shared engine ([`Uploader`]), whose
//! whole-object MD5 is right at any concurrency. The emulator and the conformance run follow.
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
pub use config::Config;
pub use error::{Error, ErrorCode, InvalidInput, ServiceError};
pub use signing::Credentials;
pub use upload_core::{self, PartSize, Source, Step, UploadOptions};
pub use uploader::{QingStorUpload, QingStorUploadState, Uploader};
