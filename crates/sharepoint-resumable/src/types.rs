//! Wire models (generated from `specs/sharepoint/models.json`).

pub use crate::generated::models::*;
