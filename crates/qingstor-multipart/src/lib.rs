//! # qingstor-multipart
//!
//! QingStor multipart uploads: QS signing (header and presigned) as pure functions, checked
//! against the official SDKs' vectors. The operations, the resumable uploader and the emulator
//! follow the module skeleton of `oss-multipart`.
#![warn(missing_docs)]

pub mod signing;

pub use signing::Credentials;
