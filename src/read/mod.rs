//! Stage 1: reading the file.
pub mod compose;
pub mod interpolate;
pub mod manifest;
pub mod yaml;
