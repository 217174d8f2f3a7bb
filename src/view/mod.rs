//! What the user sees.
//!
//! - [`ui`]: the terminal: a live view (one line per service) on a TTY, else
//!   plain `[service] …` lines as CI logs want them; colour only on a TTY
//!   and never with `NO_COLOR`.
//! - [`report`]: the summary at the end (what was built, shared, skipped,
//!   pushed, and how long each took) and the JSON report (`--json`).
pub mod report;
pub mod ui;
