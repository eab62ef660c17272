//! oss-multipart
#![warn(missing_docs)]
pub mod signing;
