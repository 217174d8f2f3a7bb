//! Reading the file: what the user's file says, by the rules of the systems
//! that read it, and the Dockerfiles its builds name. Nothing here starts a
//! process or writes a file.
//!
//! - [`yaml`]: a YAML tree with the byte range of every node (for a lossless
//!   rewrite); duplicate keys, aliases, one document.
//! - [`interpolate`]: `${VAR}`, `${VAR:-x}`, `$$`, as compose and Convox
//!   interpolate build fields.
//! - [`format`]: the formats a file comes in (Convox v1, compose 2.x/3.x,
//!   convox.yml), below both readers.
//! - [`manifest`]: what Convox builds, by its own loaders' rules (gen1 v1 and
//!   2.x, convox.yml); used to prove a rewrite leaves nothing to build.
//! - [`compose`]: the compose reader: services, their builds (`BuildSpec`),
//!   paths joined to the file's directory.
//! - [`dockerfile`]: the Dockerfile as docker's parser reads it (directives,
//!   instructions, `FROM` stages, `ARG` substitution, the appended `LABEL`
//!   line); each read once per run (`Dockerfiles`).
//! - [`app_env`]: the app's environment in `convox env`'s format
//!   (`--env-file`, `--convox-env`), what Convox fills `ARG`s from.
//! - [`regular`]: opening a file a user names: only a regular file, never
//!   blocking, bounded.
//! - [`docker_config`]: the docker client's config: which registry hosts a
//!   credential helper serves (no `docker login` for them).
pub mod app_env;
pub mod compose;
pub mod docker_config;
pub mod dockerfile;
pub mod format;
pub mod interpolate;
pub mod manifest;
pub mod regular;
pub mod yaml;
