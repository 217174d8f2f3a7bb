//! Stage 3: the external programs as values.
pub mod builder;
pub mod command;
pub mod convox;
pub mod docker;
pub mod ecr;
