//! convox-build-off-cluster: build a Convox app's images off the cluster,
//! push them to ECR, and rewrite the compose file to use them.
//!
//! Modules, each with one job:
//! - [`cli`]: the command line and its environment defaults;
//! - [`yaml`]: a YAML tree with byte ranges;
//! - [`compose`]: what a compose file says (formats, services, builds);
//! - [`manifest`]: what Convox builds, by its own loaders' rules;
//! - [`interpolate`]: `${VAR}` in build fields;
//! - [`digest`]: the content digest of a build;
//! - [`builder`]: which builder `docker build` runs (classic, BuildKit);
//! - [`bases`]: the base images a build uses, and their identity now;
//! - [`dockerignore`]: `.dockerignore` as docker applies it, both builders;
//! - [`goregex`]: the Go regexp syntax that docker's ignore matcher makes;
//! - [`tag`]: image tags from the template;
//! - [`ecr`]: ECR repositories and the aws commands;
//! - [`docker`]: the docker commands;
//! - [`command`]: commands as values;
//! - [`plan`]: from file and options to the plan;
//! - [`rewrite`]: the lossless edit of the file;
//! - [`run`]: running one command: streaming, capture, retries, errors;
//! - [`execute`]: executing a plan: checks, parallel builds, the write;
//! - [`report`]: the summary and the JSON report;
//! - [`output`]: the atomic write;
//! - [`interrupt`]: SIGINT and SIGTERM, child process groups;
//! - [`lock`]: one run at a time per output file;
//! - [`convox`]: `--convox-build`, the release step;
//! - [`ui`]: the terminal: a live view, or plain lines; colour;
//! - [`app`]: one invocation, step by step.

pub mod app;
pub mod bases;
pub mod builder;
pub mod cli;
pub mod command;
pub mod compose;
pub mod convox;
pub mod digest;
pub mod docker;
pub mod dockerignore;
pub mod ecr;
pub mod execute;
pub mod goregex;
pub mod interpolate;
pub mod interrupt;
pub mod lock;
pub mod manifest;
pub mod output;
pub mod plan;
pub mod report;
pub mod rewrite;
pub mod run;
pub mod tag;
pub mod ui;
pub mod yaml;
