//! upload-core
pub mod hash;
pub mod plan;
pub mod size;
