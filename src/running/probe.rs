//! Probing the environment, before the plan: which builder `docker build`
//! runs and the engine's version, the AWS account a bare ECR name needs, what the engine knows of plain-HTTP
//! registries, and what identifies each base image now. Every question has a
//! time limit, and they are asked at once. A dry run asks nothing: it assumes
//! the builder from `DOCKER_BUILDKIT`.

use crate::inputs::bases::{self, Resolved, LOOKUP_LIMIT};
use crate::programs::builder::{self, Builder};
use crate::programs::buildx::{self, Buildx};
use crate::programs::docker;
use crate::running::run::{self, RunOptions};
use anyhow::Result;
use std::time::Duration;

/// What to ask.
#[derive(Debug, Clone, Default)]
pub struct Questions {
    /// A dry run: assume, ask nothing.
    pub dry_run: bool,
    /// Anything is built at all (else the builder does not matter).
    pub builds_something: bool,
    /// `DOCKER_BUILDKIT`, as set.
    pub docker_buildkit: Option<String>,
    /// Ask the engine's registry settings (a registry outside this
    /// machine's loopback is involved).
    pub registry_config: bool,
    /// The base images to identify (none: no lookups).
    pub bases: Vec<String>,
    /// Ask AWS the account (a bare ECR repository name needs it).
    pub account: bool,
    /// The buildx builder named (`--builder`, else `BUILDX_BUILDER`); None
    /// asks for the current one.
    pub buildx_builder: Option<String>,
}

/// What the environment answered.
#[derive(Debug, Clone)]
pub struct Probed {
    /// The AWS account, when asked.
    pub account: Option<String>,
    pub builder: Builder,
    /// The buildx builder that builds, when buildx is there and answered.
    pub buildx: Option<Buildx>,
    /// The engine's version, when it answered.
    pub engine: Option<String>,
    /// `docker info`'s registry configuration, when asked and answered.
    pub registry_config: Option<String>,
    /// What identifies each base image asked about.
    pub identities: Vec<Resolved>,
}

/// Ask AWS the account first, then everything else at once: the builder
/// beside the registry settings, then the base images (which may need those
/// settings).
pub fn probe(q: &Questions, opts: RunOptions) -> Result<Probed> {
    let account = if q.account {
        run::require_program(
            "aws",
            "to find the AWS account of a bare ECR repository name",
        )?;
        Some(run::account_id(opts)?)
    } else {
        None
    };
    let (detected, registry_config, identities) = std::thread::scope(|s| {
        let detect = s.spawn(|| {
            if q.dry_run {
                Ok((builder::assume(q.docker_buildkit.as_deref()), None, None))
            } else if q.builds_something {
                detect_builder(opts, q)
            } else {
                Ok((Builder::Classic, None, None))
            }
        });
        let config = if q.registry_config {
            run::stdout_within(&docker::registry_config(), opts, Duration::from_secs(10))
        } else {
            None
        };
        let identities = resolve(&q.bases, config.as_deref(), opts);
        let detected = detect
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error: asking docker its builder")));
        (detected, config, identities)
    });
    let (builder, engine, buildx) = detected?;
    Ok(Probed {
        account,
        builder,
        buildx,
        engine,
        registry_config,
        identities,
    })
}

/// Which builder `docker build` runs here, the engine's version, and the
/// buildx builder a build would use: ask docker its versions, whether buildx
/// is there, and what that builder is (all at once, a few seconds at most).
fn detect_builder(
    opts: RunOptions,
    q: &Questions,
) -> Result<(Builder, Option<String>, Option<Buildx>)> {
    let limit = Duration::from_secs(10);
    let inspect = buildx::inspect(q.buildx_builder.as_deref());
    let (versions, buildx, inspected) = std::thread::scope(|s| {
        let v = s.spawn(|| run::capture_within(&builder::versions(), opts, limit));
        let b = s.spawn(|| run::capture_within(&builder::buildx_version(), opts, limit));
        let i = s.spawn(|| run::capture_within(&inspect, opts, limit));
        (
            v.join().ok().flatten(),
            b.join().ok().flatten(),
            i.join().ok().flatten(),
        )
    });
    let (client, engine) = versions
        .map(|o| builder::parse_versions(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or((None, None));
    let buildx = buildx.is_some_and(|o| o.status.success());
    let b = builder::decide(q.docker_buildkit.as_deref(), client.as_deref(), buildx)
        .map_err(|e| anyhow::anyhow!(e))?;
    let builder_of_buildx = inspected
        .filter(|o| buildx && o.status.success())
        .and_then(|o| buildx::parse_inspect(&String::from_utf8_lossy(&o.stdout)));
    Ok((b, engine, builder_of_buildx))
}

/// Identify every base image, in parallel, each lookup within
/// [`LOOKUP_LIMIT`], saying what could not be.
fn resolve(images: &[String], config: Option<&str>, opts: RunOptions) -> Vec<Resolved> {
    let resolved: Vec<Resolved> = std::thread::scope(|s| {
        let handles: Vec<_> = images
            .iter()
            .map(|image| s.spawn(move || resolve_one(image, config, opts)))
            .collect();
        handles
            .into_iter()
            .zip(images)
            .map(|(h, image)| h.join().unwrap_or_else(|_| bases::lookup_failed(image)))
            .collect()
    });
    for b in &resolved {
        if let Some(w) = &b.warning {
            eprintln!("warning: {w}");
        }
    }
    resolved
}

fn resolve_one(image: &str, config: Option<&str>, opts: RunOptions) -> Resolved {
    if let Some(pinned) = bases::pinned(image) {
        return pinned;
    }
    let answer = |cmd| run::stdout_within(&cmd, opts, LOOKUP_LIMIT);
    let registry = answer(docker::registry_lookup(image, config));
    // The engine's copy is asked about only when the registry did not say.
    let local_id = || {
        answer(docker::local_lookup(image))
            .and_then(|line| line.split_whitespace().next().map(String::from))
    };
    bases::identify(image, registry.as_deref(), &local_id)
}
