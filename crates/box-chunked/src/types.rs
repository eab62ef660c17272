//! Wire models (generated from `specs/box/models.json`).

pub use crate::generated::models::*;
