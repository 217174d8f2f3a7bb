//! Stage 2: what a build depends on.
pub mod bases;
pub mod digest;
pub mod dockerignore;
pub mod goregex;
