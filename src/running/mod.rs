//! Stage 5: running it.
pub mod execute;
pub mod interrupt;
pub mod lock;
pub mod output;
pub mod run;
