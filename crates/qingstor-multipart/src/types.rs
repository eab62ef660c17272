//! Wire models (generated from `specs/qingstor/models.json`).

pub use crate::generated::models::*;
