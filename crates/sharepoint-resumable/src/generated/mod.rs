//! Code generated from `specs/sharepoint` by `cargo xtask codegen`.

pub(crate) mod error_codes;
pub(crate) mod models;
