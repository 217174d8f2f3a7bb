//! The external programs as values: every command this tool runs is a
//! [`command::Cmd`], whose `Display` is the shell-quoted command line the
//! dry run prints and errors quote. Nothing here starts a process
//! (`running` does), and no secret goes into an argv.
//!
//! - [`command`]: `Cmd`: program, args, environment (secret values hidden),
//!   stdin (a file, then a line), shell quoting.
//! - [`builder`]: which builder `docker build` runs (classic, BuildKit with
//!   or without buildx), decided from docker's answers and `DOCKER_BUILDKIT`;
//!   whether the engine writes inline cache safely.
//! - [`buildx`]: buildx's builders: which one builds, whether it pushes the
//!   image itself (any driver but `docker`), its registry cache's form;
//!   buildx run through `docker` or as the plugin file docker would run.
//! - [`plugin`]: where docker finds a CLI plugin, and when this program can
//!   run that file itself (no dispatch through `docker`).
//! - [`docker`]: the docker command lines: build (per builder), tag, push,
//!   login, manifest inspect, the base-image lookups, `docker info`.
//! - [`ecr`]: ECR repository names and hosts, and the aws commands: set-up,
//!   login password, `batch-get-image`, and reading their answers.
//! - [`convox`]: `convox build`, the release step.
//! - [`reference`]: docker's reference grammar, for the hosts and
//!   repository names the user gives.
pub mod builder;
pub mod buildx;
pub mod command;
pub mod convox;
pub mod docker;
pub mod ecr;
pub mod plugin;
pub mod reference;
