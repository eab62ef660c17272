//! Code generated from `specs/qingstor` by `cargo xtask codegen`.

pub(crate) mod error_codes;
pub(crate) mod models;
