//! Probing the environment, before the plan: the AWS account a bare ECR
//! name needs, what the engine knows of plain-HTTP registries, and what
//! identifies each base image now; and, on a thread of its own from the
//! start, which builder `docker build` runs ([`Asking`]: its answer is
//! waited for after the hashing and the registry's questions). Every
//! question has a time limit. A dry run asks nothing: it assumes the
//! builder from `DOCKER_BUILDKIT`.

use crate::inputs::bases::{self, Resolved, LOOKUP_LIMIT};
use crate::plan::login::Login;
use crate::programs::builder::{self, Builder};
use crate::programs::buildx::{self, Buildx};
use crate::programs::docker;
use crate::programs::ecr;
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
    /// How buildx is run (`docker buildx`, or the plugin file itself).
    pub buildx_program: buildx::Program,
    /// The logins of the base images' registries, for a base that must be
    /// pulled to be identified.
    pub logins: Vec<Login>,
}

/// What the environment answered (the builder aside: [`Asking`]).
#[derive(Debug, Clone)]
pub struct Probed {
    /// The AWS account, when asked.
    pub account: Option<String>,
    /// `docker info`'s registry configuration, when asked and answered.
    pub registry_config: Option<String>,
    /// What identifies each base image asked about.
    pub identities: Vec<Resolved>,
    /// The registry hosts logged in to already (for a base's pull).
    pub logged_in: Vec<String>,
}

/// Ask AWS the account first, then the registry settings, then the base
/// images (which may need those settings). The builder's questions are not
/// among them: [`ask_builder`] starts those on their own thread.
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
    let registry_config = if q.registry_config {
        run::stdout_within(&docker::registry_config(), opts, Duration::from_secs(10))
    } else {
        None
    };
    let (identities, logged_in) = resolve(&q.bases, registry_config.as_deref(), &q.logins, opts)?;
    Ok(Probed {
        account,
        registry_config,
        identities,
        logged_in,
    })
}

/// What docker said of its builders.
#[derive(Debug, Clone)]
pub struct Detected {
    pub builder: Builder,
    /// The engine's version, when asked and answered.
    pub engine: Option<String>,
    /// The engine's own platform (`linux/amd64`), when asked and answered.
    pub engine_platform: Option<String>,
    /// The buildx builder that builds, when buildx is there and answered.
    pub buildx: Option<Buildx>,
    /// buildx's own version (or the least it can be), when known.
    pub buildx_version: Option<(u32, u32, u32)>,
    /// The docker client's version, when asked and answered.
    pub client: Option<String>,
}

impl Detected {
    fn assumed(builder: Builder) -> Detected {
        Detected {
            builder,
            engine: None,
            engine_platform: None,
            buildx: None,
            buildx_version: None,
            client: None,
        }
    }
}

/// The builder's questions, asked on a thread of their own from the moment
/// the probe starts, beside the base images, the hashing and the
/// registry's questions.
pub enum Asking {
    /// Nothing to ask: a dry run's assumption, or no build at all.
    Assumed(Detected),
    Asked(std::thread::JoinHandle<Result<Detected>>),
}

impl Asking {
    /// Wait for the answer.
    pub fn answer(self) -> Result<Detected> {
        match self {
            Asking::Assumed(assumed) => Ok(assumed),
            Asking::Asked(handle) => handle.join().unwrap_or_else(|_| {
                Err(anyhow::anyhow!("internal error: asking docker its builder"))
            }),
        }
    }
}

/// Start the builder's questions (a dry run assumes its answer, and a file
/// with nothing to build needs none).
pub fn ask_builder(q: &Questions, opts: RunOptions) -> Asking {
    if q.dry_run {
        return Asking::Assumed(Detected::assumed(builder::assume(
            q.docker_buildkit.as_deref(),
        )));
    }
    if !q.builds_something {
        return Asking::Assumed(Detected::assumed(Builder::Classic));
    }
    let docker_buildkit = q.docker_buildkit.clone();
    let named = q.buildx_builder.clone();
    let program = q.buildx_program.clone();
    Asking::Asked(std::thread::spawn(move || {
        detect_builder(opts, docker_buildkit.as_deref(), named.as_deref(), &program)
    }))
}

/// Which builder `docker build` runs here, the engine's version, and the
/// buildx builder a build would use. Only what the run uses is asked, and
/// what it most likely uses at once:
/// - `docker buildx inspect`, first;
/// - `docker version` (the client's and the engine's) beside it when no
///   builder is named (the engine's builder is then the likely one), else
///   after it, and only when that builder does not push itself (the engine
///   then neither builds nor decides anything);
/// - `docker buildx version` after it, unless it showed buildx there and at
///   least 0.10 (its `Last Activity:` line, which 0.10 added; 0.10 is the
///   version `--provenance` needs).
///
/// buildx is asked as `program` says: through `docker`, or as the plugin
/// file docker would run.
fn detect_builder(
    opts: RunOptions,
    docker_buildkit: Option<&str>,
    named: Option<&str>,
    program: &buildx::Program,
) -> Result<Detected> {
    let limit = Duration::from_secs(10);
    let versions = || run::capture_within(&builder::versions(), opts, limit);
    let (inspected, early) = std::thread::scope(|s| {
        let early = named.is_none().then(|| s.spawn(versions));
        let inspected = run::capture_within(&buildx::inspect(program, named), opts, limit)
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        (inspected, early.map(|h| h.join().ok().flatten()))
    });
    let buildx = inspected
        .as_deref()
        .and_then(buildx::parse_inspect)
        .map(|b| Buildx {
            program: program.clone(),
            ..b
        });
    let floor = inspected.as_deref().and_then(buildx::version_floor);
    let pushing = buildx.as_ref().is_some_and(Buildx::pushes_itself)
        && !builder::classic_asked(docker_buildkit);
    let (versions, version) = std::thread::scope(|s| {
        let v = (early.is_none() && !pushing).then(|| s.spawn(versions));
        let b = floor
            .is_none()
            .then(|| s.spawn(|| run::capture_within(&buildx::version_cmd(program), opts, limit)));
        (
            early
                .flatten()
                .or_else(|| v.and_then(|h| h.join().ok().flatten())),
            b.and_then(|h| h.join().ok().flatten()),
        )
    });
    let builder::Versions {
        client,
        engine,
        platform: engine_platform,
    } = versions
        .map(|o| builder::parse_versions(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default();
    let version = version.filter(|o| o.status.success());
    let has_buildx = inspected.is_some() || version.is_some();
    let buildx_version = version
        .and_then(|o| buildx::parse_version(&String::from_utf8_lossy(&o.stdout)))
        .or(floor);
    let b = builder::decide(docker_buildkit, client.as_deref(), has_buildx)
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Detected {
        builder: b,
        engine,
        engine_platform,
        buildx,
        buildx_version,
        client,
    })
}

/// Identify every base image, in parallel, each lookup within
/// [`LOOKUP_LIMIT`] (`inputs::bases` has the rules): ECR's API for bases in
/// ECR, the registry for the others; then, for those still unknown, the
/// logins their hosts need (all at once), a pull each, and the engine's
/// copy. Returns the identities and the hosts it logged in to.
fn resolve(
    images: &[String],
    config: Option<&str>,
    logins: &[Login],
    opts: RunOptions,
) -> Result<(Vec<Resolved>, Vec<String>)> {
    let (pinned, looked_up): (Vec<&String>, Vec<&String>) =
        images.iter().partition(|i| bases::pinned(i).is_some());
    let mut found: Vec<Resolved> = pinned.iter().filter_map(|i| bases::pinned(i)).collect();
    let looked_up: Vec<String> = looked_up.into_iter().cloned().collect();
    let (by_ecr, others): (Vec<String>, Vec<String>) = looked_up
        .iter()
        .cloned()
        .partition(|i| bases::ecr_base(i).is_some());
    let (from_ecr, from_registry) = std::thread::scope(|s| {
        let ecr = s.spawn(|| ask_ecr(&by_ecr, opts));
        let registry: Vec<Option<Resolved>> = parallel_map(&others, |image| {
            let out =
                run::stdout_within(&docker::registry_lookup(image, config), opts, LOOKUP_LIMIT);
            bases::identify(image, out.as_deref())
        });
        (ecr.join().unwrap_or_default(), registry)
    });
    found.extend(from_ecr);
    found.extend(from_registry.into_iter().flatten());
    let unknown: Vec<String> = looked_up
        .into_iter()
        .filter(|i| !found.iter().any(|r| &r.image == i))
        .collect();
    let logged_in = if unknown.is_empty() {
        Vec::new()
    } else {
        log_in_for(&unknown, logins, opts)
    };
    let pulled: Vec<Result<Resolved, String>> =
        parallel_map(&unknown, |image| pull_and_identify(image, opts));
    let mut errors = Vec::new();
    for r in pulled {
        match r {
            Ok(r) => found.push(r),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    for b in &found {
        if let Some(w) = &b.warning {
            eprintln!("warning: {w}");
        }
    }
    found.sort_by(|a, b| a.image.cmp(&b.image));
    Ok((found, logged_in))
}

/// `f` over every item, each on a thread of its own.
fn parallel_map<T: Send>(items: &[String], f: impl Fn(&str) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|i| s.spawn(|| f(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join())
            .collect::<Result<Vec<T>, _>>()
    })
    .unwrap_or_default()
}

/// The ECR bases' digests from ECR's API: one `batch-get-image` per
/// repository and region, all at once. Only the bases ECR answered for.
fn ask_ecr(images: &[String], opts: RunOptions) -> Vec<Resolved> {
    let groups = bases::ecr_groups(images);
    if groups.is_empty() || run::require_program("aws", "").is_err() {
        return Vec::new();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter()
            .map(|((account, region, repository), wanted)| {
                s.spawn(move || {
                    let tags: Vec<&str> = wanted.iter().map(|(_, t)| t.as_str()).collect();
                    let cmd = ecr::batch_get_base_images(account, repository, &tags, region);
                    let json = run::stdout_within(&cmd, opts, LOOKUP_LIMIT).unwrap_or_default();
                    wanted
                        .iter()
                        .filter_map(|(image, tag)| match ecr::batch_answer(&json, tag) {
                            ecr::TagAnswer::Found(Some(d)) => {
                                Some(bases::identified_by_ecr(image, &d))
                            }
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Log in, all at once, to the hosts of these bases that a login serves
/// (a credential helper serves the rest). Returns the hosts logged in to.
fn log_in_for(images: &[String], logins: &[Login], opts: RunOptions) -> Vec<String> {
    let wanted: Vec<&Login> = logins
        .iter()
        .filter(|l| {
            images
                .iter()
                .any(|i| bases::host_of(i) == Some(l.host.as_str()))
        })
        .collect();
    let mut done = Vec::new();
    for (host, r) in run::log_in_all(&wanted, opts) {
        match r {
            Ok(()) => done.push(host),
            // The pull that follows fails too, and says why.
            Err(e) => eprintln!("warning: logging in to {host} for a base image failed: {e:#}"),
        }
    }
    done
}

/// How long a base's pull may take when no registry gave its digest.
const PULL_LIMIT: Duration = Duration::from_secs(300);

/// Pull a base no registry identified, and take the pulled copy's digest;
/// when the pull fails, the engine's copy's ID; else the error.
fn pull_and_identify(image: &str, opts: RunOptions) -> Result<Resolved, String> {
    let pulled = run::capture_within(&docker::pull(image), opts, PULL_LIMIT);
    let ok = pulled.as_ref().is_some_and(|o| o.status.success());
    let local = run::stdout_within(&docker::local_lookup(image), opts, LOOKUP_LIMIT);
    if ok {
        if let Some(r) = local
            .as_deref()
            .and_then(|l| bases::identified_by_pull(image, l))
        {
            return Ok(r);
        }
    }
    if let Some(id) = local
        .as_deref()
        .and_then(|l| l.split_whitespace().next())
        .filter(|id| id.starts_with("sha256:"))
    {
        return Ok(bases::identified_locally(image, id));
    }
    let why = pulled
        .map(|o| {
            run::tail_of(&String::from_utf8_lossy(&o.stderr))
                .last()
                .cloned()
                .unwrap_or_else(|| "no output".into())
        })
        .unwrap_or_else(|| format!("no answer within {} s", PULL_LIMIT.as_secs()));
    Err(bases::unidentified(image, &why))
}
