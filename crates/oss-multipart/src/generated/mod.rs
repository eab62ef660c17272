//! Code generated from `specs/oss` by `cargo xtask codegen`.

pub(crate) mod error_codes;
pub(crate) mod models;
