//! Running it: the only place that starts processes, handles signals or
//! writes the user's file.
//!
//! - [`run`]: running one command: streaming with a `[service]` prefix,
//!   capture, time limits, retries of pushes, errors with the command line
//!   and the tail of its output; the AWS account.
//! - [`probe`]: the questions asked before the plan (builder, engine,
//!   registry settings, base images), at once and each with a time limit.
//! - [`execute`]: a plan executed: ECR set-up and login, the registry
//!   checks, the builds in parallel (`--jobs`), the pushes, the cache; then
//!   the atomic write.
//! - [`kept_cache`]: the platforms of kept images, by manifest digest, in
//!   the user's cache directory.
//! - [`registry`]: a plain-HTTP registry asked whether a tag exists without
//!   a process (the question `docker manifest inspect` asks).
//! - [`https_registry`]: a kept image's HTTPS registry (Docker Hub, …)
//!   asked for its digest with a `HEAD`, anonymously, without a process.
//! - [`release`]: `--convox-env`'s `convox env`; `--convox-build`: `convox
//!   build` on the rewritten file.
//! - [`interrupt`]: SIGINT and SIGTERM, child process groups, `--timeout`,
//!   temporary files removed on the way out.
//! - [`lock`]: one run at a time per output file.
//! - [`stage`]: the contexts of the builds that run, staged as Convox
//!   uploads them, and removed after.
//! - [`output`]: the atomic write (temporary file, permissions kept, through
//!   a symlink, rename), only when everything succeeded.
//! - [`progress`]: where running tells what happens; the view installs
//!   itself there.
pub mod execute;
pub mod https_registry;
pub mod interrupt;
pub mod kept_cache;
pub mod lock;
pub mod output;
pub mod probe;
pub mod progress;
pub mod registry;
pub mod release;
pub mod run;
pub mod stage;
