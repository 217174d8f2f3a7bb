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
pub mod cli;
pub mod inputs;
pub mod plan;
pub mod programs;
pub mod read;
pub mod running;
pub mod view;
