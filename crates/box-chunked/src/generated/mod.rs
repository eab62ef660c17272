//! Code generated from `specs/box` by `cargo xtask codegen`.

pub(crate) mod error_codes;
pub(crate) mod models;
