//! # qingstor-multipart
//!
//! QingStor multipart uploads, in the module skeleton of `oss-multipart`: configuration from
//! code, the environment or `~/.qingstor/config.yaml`; QS signing (header and presigned) as pure
//! functions checked against the official SDKs' vectors; the wire models and error codes
//! generated from `specs/qingstor`; and the operations layer ([`Client`]: Initiate Multipart
//! Upload, Upload Multipart (numbered from 0), Upload part by copy, List Multipart, Complete
//! Multipart Upload, Abort Multipart Upload, List Multipart Uploads, Put Object, Head Object, and
//! presigning). The resumable uploader and the emulator follow.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
mod generated;
pub mod signing;
pub mod types;

pub use client::Client;
pub use config::Config;
pub use error::{Error, ErrorCode, InvalidInput, ServiceError};
pub use signing::Credentials;
