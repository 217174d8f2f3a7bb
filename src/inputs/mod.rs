//! What a build depends on, so that a build whose inputs did not change is
//! never run again, and one whose inputs changed always is.
//!
//! - [`digest`]: the content digest (BLAKE3) over the context docker would
//!   send, the Dockerfile, the resolved args, target, platform, secrets' ids
//!   and the bases' identities; the rules that decide a rebuild.
//! - [`dockerignore`]: `.dockerignore` as docker applies it, under both
//!   builders (moby's matcher, the walker's descent rule, 20.10's legacy
//!   matcher, `<Dockerfile>.dockerignore`).
//! - [`upload`]: what Convox uploads: the app directory with its root
//!   `.dockerignore` applied.
//! - [`staging`]: the staged copy of that upload, laid out as the rack
//!   unpacks it, that docker builds a context from; the run's private
//!   directory.
//! - [`goregex`]: the Go regexp syntax that docker's ignore matcher compiles
//!   patterns into, so that a pattern means here what it means there.
//! - [`build_args`]: the build arguments Convox passes besides the file's
//!   (the app's environment, `--build-arg`), by its rules: declared `ARG`s
//!   only, the precedence, values kept out of every argv.
//! - [`bases`]: which base images a build uses (from its Dockerfile), and
//!   the rules that identify each (pinned, the registry's digest, the
//!   engine's copy, the name), without a process: `running::probe` asks.
pub mod bases;
pub mod build_args;
pub mod digest;
pub mod dockerignore;
pub mod goregex;
pub mod staging;
pub mod upload;
