//! convox-build-off-cluster: build a Convox app's images off the cluster,
//! push them to ECR, and rewrite the compose file to use them.
//!
//! The run, in order (`app::run` calls one stage after another, each taking
//! the values before it and returning a named one):
//!
//! 1. [`cli`] resolves the invocation: flags, `PLUGIN_*` variables, the
//!    commit and branch from the CI's variables or the checkout.
//! 2. [`read`] reads the file by Convox's own rules, and each build's
//!    Dockerfile once: `Compose`, `Dockerfiles`.
//! 3. [`inputs`] knows what a build depends on: the content digest over what
//!    docker would send (`.dockerignore` as docker applies it), and the base
//!    images with what identifies each.
//! 4. [`running::probe`] asks the environment (its registry settings, the
//!    base images' identities): `Probed`; the builder and the engine are
//!    asked on a thread of their own meanwhile.
//! 5. [`plan`] turns all that into a `Plan`, written in [`programs`]: the
//!    registry target, the tags, the shared builds, the checks, the cache,
//!    the rewritten file. A dry run prints it (`Plan::dry_run`). The
//!    registry is asked on a first plan (its references are the same
//!    whichever builder builds) while the builder answers; then the plan is
//!    made with the answer.
//! 6. [`running`] executes it: checks, parallel builds and pushes, the
//!    atomic write, `convox build`.
//! 7. [`view`] shows it: the live view or plain lines, the summary, the JSON
//!    report.
//!
//! The folders are the stages, and a module imports only from its own
//! folder or an earlier one, in this order: `read`, `inputs`, `programs`,
//! `plan`, `running`, `view` (then `cli` and `app`, which tie them together).
//! `programs` comes before `plan` though the plan is made first: the
//! commands are values that a plan is written in, and nothing in `programs`
//! starts a process. `running::progress` is how running reaches the view
//! without importing it: the view installs itself there.

pub mod app;
pub mod cli;
pub mod inputs;
pub mod plan;
pub mod programs;
pub mod read;
pub mod running;
pub mod view;
