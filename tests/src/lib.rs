//! Support for the end-to-end tests in `tests/tests/`: an in-memory vendor with fault injection
//! ([`fake`]), a hostile client for the emulators ([`flood`]), a scripted hostile server for the
//! clients ([`scripted`]), and helpers shared by the scenarios.
//!
//! The scenarios drive the public API of the crates exactly as a user does, so they live in their
//! own package rather than inside any one crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fake;
pub mod flood;
pub mod scripted;
