//! Stage 6: what the user sees.
pub mod report;
pub mod ui;
