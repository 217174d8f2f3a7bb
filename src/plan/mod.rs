//! From the compose file and the options to a plan: which services to build,
//! which builds are shared, the image references, the exact commands, and the
//! rewritten file. Making a plan starts no process.

pub mod rewrite;
pub mod tag;

use crate::programs::builder::Builder;
use crate::programs::command::Cmd;
use crate::read::compose::{is_remote_context, BuildSpec, Compose, Source};
use crate::programs::ecr::{self, Repo};
use crate::programs::docker;
use crate::read::manifest;
use anyhow::{anyhow, bail, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// A usage mistake: the command line is wrong (exit status 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Where the rewritten file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    File(PathBuf),
    Stdout,
}

/// The options, resolved: every default already applied.
#[derive(Debug, Clone)]
pub struct Options {
    pub app: String,
    pub gitsha: Option<String>,
    pub description: String,
    pub repo: String,
    pub region: Option<String>,
    pub registry_host: Option<String>,
    pub tag: String,
    pub output: Output,
}

/// The placeholder for the account id of a bare ECR name in a dry run.
pub const ACCOUNT_PLACEHOLDER: &str = "ACCOUNT_ID";

/// Repository set-up and login for ECR.
#[derive(Debug, Clone)]
pub struct EcrSetup {
    pub name: String,
    pub region: String,
    pub describe: Cmd,
    pub create: Cmd,
    pub password: Cmd,
    pub login: Cmd,
    /// The registry-cache repository (`NAME-cache`, tags mutable), when
    /// builds use one: set up like the first, but its failure only warns.
    pub cache: Option<(String, Cmd, Cmd)>,
}

/// After a build is pushed (either builder): its image also goes, under a
/// fixed tag per service, to the cache repository, so that the next build of that
/// service (on any runner) can take its unchanged layers from there.
#[derive(Debug, Clone)]
pub struct CachePush {
    pub reference: String,
    pub tag: Cmd,
    pub push: Cmd,
    /// The classic builder takes a cache image only from the engine, and
    /// with `--cache-from` only from the images named there: the last image
    /// is pulled first, and `build_cached` runs when the pull succeeded
    /// (else the plain build, with the engine's own cache).
    pub pull: Option<Cmd>,
    pub build_cached: Option<Cmd>,
}

/// How to ask whether references already exist in the registry: one
/// `docker manifest inspect` per reference, or one `aws ecr batch-get-image`
/// for up to 100 of them.
#[derive(Debug, Clone)]
pub struct Check {
    pub cmd: Cmd,
    /// The references it answers for, as (build, index into its `refs`).
    pub asks: Vec<(usize, usize)>,
    /// It is an ECR API call, answered in `batch-get-image` JSON.
    pub batch: bool,
}

/// The label that carries a build's content digest.
pub const DIGEST_LABEL: &str = "com.convox.off-cluster.digest";

#[derive(Debug, Clone)]
pub struct Build {
    /// The content digest (BLAKE3, 64 hex digits).
    pub digest: String,
    /// Where the first service is in the file (`file:line:col`), for messages.
    pub at: String,
    /// The services that use this image; the first is built, the others share.
    pub services: Vec<String>,
    pub spec: BuildSpec,
    /// Every reference of this image, the built one first.
    pub refs: Vec<String>,
    pub build: Cmd,
    pub tags: Vec<Cmd>,
    /// Each push with the service whose reference it pushes.
    pub pushes: Vec<(String, Cmd)>,
    /// The push to the registry cache (and, under the classic builder, the
    /// pull of the last image before the build).
    pub cache: Option<CachePush>,
    /// Its base images to refresh before it builds (indices into
    /// `Plan::bases`).
    pub bases: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Built { reference: String },
    Shared { with: String, reference: String },
    Kept { image: String },
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub name: String,
    pub action: Action,
    /// It has no `build:`; it is built from the app root, as Convox does.
    pub from_app_root: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub compose_file: PathBuf,
    pub registry_host: String,
    pub repository: String,
    /// The account id came from a placeholder (dry run of a bare ECR name).
    pub account_placeholder: bool,
    pub ecr: Option<EcrSetup>,
    /// How to ask whether each reference exists already.
    pub checks: Vec<Check>,
    pub builds: Vec<Build>,
    /// The base images the registry identified, each made current on the
    /// engine before the first build on it (`crate::inputs::bases`).
    pub bases: Vec<crate::inputs::bases::Refresh>,
    pub services: Vec<ServicePlan>,
    pub output: Output,
    pub rewritten: String,
    pub warnings: Vec<String>,
}

/// Where the push goes and which ECR set-up it needs, before any account id
/// is known.
#[derive(Debug, Clone)]
pub struct Target {
    pub repo: Repo,
    pub region: Option<String>,
    pub warnings: Vec<String>,
    /// The engine reaches the registry over plain HTTP (loopback, or so
    /// configured: `docker::insecure_in`).
    pub insecure: bool,
    /// Which builder `docker build` runs (`crate::programs::builder`).
    pub builder: Builder,
    /// buildx's `--builder NAME`.
    pub builder_name: Option<String>,
    /// Keep each service's last image in `REPOSITORY-cache` as the next
    /// build's cache source (pulled first under the classic builder; inline
    /// cache under BuildKit, on engines from 23 on); `--no-registry-cache`
    /// turns it off.
    pub registry_cache: bool,
}

impl Target {
    pub fn new(opts: &Options) -> Result<Target> {
        let repo = ecr::parse_repo(&opts.repo).map_err(|e| usage(e.to_string()))?;
        let mut warnings = Vec::new();
        let region = match &repo {
            Repo::Ecr { region: uri, .. } => {
                let region = opts.region.clone().or_else(|| uri.clone());
                if let (Some(r), Some(u)) = (&region, uri) {
                    if r != u {
                        warnings.push(format!(
                            "the region {r} differs from the region {u} in --repo; the ECR calls use {r}"
                        ));
                    }
                }
                Some(region.ok_or_else(|| {
                    usage(format!(
                        "--repo `{}` is a bare ECR repository name: give --region (or set AWS_REGION)",
                        opts.repo
                    ))
                })?)
            }
            Repo::Other { .. } => None,
        };
        Ok(Target {
            repo,
            region,
            warnings,
            insecure: false,
            builder: Builder::Classic,
            builder_name: None,
            registry_cache: true,
        })
    }

    /// The host pushed to, when it is not ECR's: the engine may know it as a
    /// plain-HTTP registry.
    pub fn other_host<'a>(&'a self, opts: &'a Options) -> Option<&'a str> {
        match (&self.repo, &opts.registry_host) {
            (_, Some(h)) => Some(h.as_str()),
            (Repo::Other { host, .. }, None) => Some(host.as_str()),
            (Repo::Ecr { .. }, None) => None,
        }
    }

    /// True when the registry host needs the account id from
    /// `aws sts get-caller-identity`.
    pub fn needs_account(&self, opts: &Options) -> bool {
        matches!(&self.repo, Repo::Ecr { host: None, .. }) && opts.registry_host.is_none()
    }
}

/// Make the plan. `account` is the caller's account id when
/// [`Target::needs_account`]; None puts a placeholder there (dry run).
/// `digest` gives each distinct build's content digest.
pub fn plan(
    compose: &Compose,
    opts: &Options,
    target: &Target,
    account: Option<&str>,
    digest: &dyn Fn(&BuildSpec) -> Result<String>,
) -> Result<Plan> {
    let mut warnings = compose.warnings.clone();
    warnings.extend(target.warnings.iter().cloned());
    let needs_gitsha = tag::placeholders(&opts.tag)
        .map_err(usage)?
        .contains(&"gitsha");
    if needs_gitsha && opts.gitsha.is_none() {
        return Err(usage(
            "no git commit for the tag: give --gitsha, set DRONE_COMMIT_SHA, or run inside a git checkout",
        ));
    }
    let mut account_placeholder = false;
    let (host, repository, ecr) = match &target.repo {
        Repo::Other { host, path } => (host.clone(), path.clone(), None),
        Repo::Ecr { name, host, .. } => {
            let region = target.region.clone().unwrap_or_default();
            let host = match (&opts.registry_host, host) {
                (Some(h), _) => h.clone(),
                (None, Some(h)) => h.clone(),
                (None, None) => {
                    let account = account.unwrap_or_else(|| {
                        account_placeholder = true;
                        ACCOUNT_PLACEHOLDER
                    });
                    ecr::registry_host(account, &region)
                }
            };
            let cache_name = format!("{name}-cache");
            let setup = EcrSetup {
                name: name.clone(),
                region: region.clone(),
                describe: ecr::describe_repository(name, &region),
                create: ecr::create_repository(name, &region),
                password: ecr::login_password(&region),
                login: docker::login(&host),
                cache: target.registry_cache.then(|| {
                    (
                        cache_name.clone(),
                        ecr::describe_repository(&cache_name, &region),
                        ecr::create_repository(&cache_name, &region),
                    )
                }),
            };
            (host, name.clone(), Some(setup))
        }
    };
    let host = match (&target.repo, &opts.registry_host) {
        (Repo::Other { .. }, Some(h)) => h.clone(),
        _ => host,
    };

    let tag_for = |service: &str, hash: &str| -> Result<String> {
        tag::render(&opts.tag, &|p| match p {
            "app" => opts.app.clone(),
            "service" => service.to_string(),
            "gitsha" => opts.gitsha.clone().unwrap_or_default(),
            "description" => opts.description.clone(),
            "hash" => hash.chars().take(16).collect(),
            _ => String::new(),
        })
        .map_err(usage)
    };
    // Whether a tag exists is asked of the registry that is pushed to: ECR's
    // API when that is ECR itself, else the registry.
    let ecr_check = match (&target.repo, &opts.registry_host) {
        (Repo::Ecr { name, .. }, None) => {
            Some((name.clone(), target.region.clone().unwrap_or_default()))
        }
        _ => None,
    };
    let mut digests: Vec<(BuildSpec, String)> = Vec::new();

    let mut labels = vec![(
        "org.opencontainers.image.title".to_string(),
        opts.app.clone(),
    )];
    if let Some(sha) = &opts.gitsha {
        labels.push(("org.opencontainers.image.revision".into(), sha.clone()));
    }
    if !opts.description.is_empty() {
        labels.push((
            "org.opencontainers.image.description".into(),
            opts.description.clone(),
        ));
    }

    let mut builds: Vec<Build> = Vec::new();
    let mut services = Vec::new();
    let mut refs = Vec::new();
    for svc in &compose.services {
        let spec = match &svc.source {
            Source::Image(image) => {
                services.push(ServicePlan {
                    name: svc.name.clone(),
                    action: Action::Kept {
                        image: image.clone(),
                    },
                    from_app_root: false,
                });
                continue;
            }
            Source::Build { spec, .. } => with_default_dockerfile(spec),
        };
        let from_app_root = matches!(svc.source, Source::Build { implicit: true, .. });
        let hash = match digests.iter().find(|(s, _)| *s == spec) {
            Some((_, d)) => d.clone(),
            None => {
                let d = digest(&spec).map_err(|e| {
                    anyhow!(
                        "{}:{}: service `{}`: {e:#}",
                        compose.path.display(),
                        svc.pos,
                        svc.name
                    )
                })?;
                digests.push((spec.clone(), d.clone()));
                d
            }
        };
        let tag = tag_for(&svc.name, &hash)?;
        let reference = format!("{host}/{repository}:{tag}");
        refs.push((svc.name.clone(), reference.clone()));
        match builds.iter_mut().find(|b| b.spec == spec) {
            Some(b) => {
                let with = b.services[0].clone();
                b.services.push(svc.name.clone());
                if !b.refs.contains(&reference) {
                    b.tags.push(docker::tag(&b.refs[0], &reference));
                    b.pushes.push((svc.name.clone(), docker::push(&reference)));
                    b.refs.push(reference.clone());
                }
                services.push(ServicePlan {
                    name: svc.name.clone(),
                    action: Action::Shared { with, reference },
                    from_app_root,
                });
            }
            None => {
                if let Some(other) = builds.iter().find(|b| b.refs.contains(&reference)) {
                    return Err(usage(format!(
                        "services `{}` and `{}` build different images but --tag `{}` gives both the tag {reference}; put {{service}} in the template",
                        other.services[0], svc.name, opts.tag
                    )));
                }
                if !target.builder.is_buildkit()
                    && (!spec.secrets.is_empty() || !spec.ssh.is_empty())
                {
                    return Err(anyhow!(
                        "{}:{}: service `{}`: build secrets and `build.ssh` need BuildKit, and the docker here runs the classic builder; set DOCKER_BUILDKIT=1 with a docker that has BuildKit (a client before 23, or one with the buildx plugin)",
                        compose.path.display(),
                        svc.pos,
                        svc.name
                    ));
                }
                let mut labels = labels.clone();
                labels.push((DIGEST_LABEL.to_string(), format!("blake3:{hash}")));
                let buildkit = target.builder.is_buildkit();
                let dockerfile_text = spec
                    .dockerfile
                    .as_deref()
                    .and_then(|d| std::fs::read_to_string(d).ok());
                let build_cmd = |s: &BuildSpec| {
                    docker::build(
                        s,
                        &reference,
                        &labels,
                        dockerfile_text.as_deref(),
                        target.builder,
                        target.builder_name.as_deref(),
                    )
                };
                let mut build_spec = spec.clone();
                let cache = target.registry_cache.then(|| {
                    let reference_c = format!(
                        "{host}/{repository}-cache:{}",
                        tag::sanitize(&format!("{}_{}", opts.app, svc.name))
                    );
                    let mut cached = spec.clone();
                    cached.cache_from.push(reference_c.clone());
                    CachePush {
                        tag: docker::tag(&reference, &reference_c),
                        push: docker::push(&reference_c),
                        pull: (!buildkit).then(|| docker::pull_quiet(&reference_c)),
                        build_cached: (!buildkit).then(|| build_cmd(&cached)),
                        reference: reference_c,
                    }
                });
                if let Some(c) = cache.as_ref().filter(|_| buildkit) {
                    // The last image of this service is the cache source;
                    // the new one carries its cache inline for the next.
                    build_spec.cache_from.push(c.reference.clone());
                    build_spec.args.push(crate::read::compose::BuildArg {
                        name: "BUILDKIT_INLINE_CACHE".into(),
                        value: crate::read::compose::ArgValue::Literal("1".into()),
                    });
                }
                builds.push(Build {
                    digest: hash.clone(),
                    at: format!("{}:{}", compose.path.display(), svc.pos),
                    services: vec![svc.name.clone()],
                    build: build_cmd(&build_spec),
                    spec,
                    refs: vec![reference.clone()],
                    tags: Vec::new(),
                    pushes: vec![(svc.name.clone(), docker::push(&reference))],
                    cache,
                    bases: Vec::new(),
                });
                services.push(ServicePlan {
                    name: svc.name.clone(),
                    action: Action::Built { reference },
                    from_app_root,
                });
            }
        }
    }

    // Nothing to build: nothing to set up or log in to.
    let ecr = if builds.is_empty() { None } else { ecr };
    let asks: Vec<(usize, usize)> = builds
        .iter()
        .enumerate()
        .flat_map(|(b, build)| (0..build.refs.len()).map(move |r| (b, r)))
        .collect();
    let tag_at = |&(b, r): &(usize, usize)| tag_of(&builds[b].refs[r]).to_string();
    let checks: Vec<Check> = match &ecr_check {
        Some((name, region)) => asks
            .chunks(ecr::BATCH_LIMIT)
            .map(|chunk| {
                let tags: Vec<String> = chunk.iter().map(tag_at).collect();
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                Check {
                    cmd: ecr::batch_get_images(name, &tags, region),
                    asks: chunk.to_vec(),
                    batch: true,
                }
            })
            .collect(),
        None => asks
            .iter()
            .map(|&(b, r)| Check {
                cmd: docker::manifest_inspect(
                    &builds[b].refs[r],
                    docker::is_loopback(&host) || target.insecure,
                ),
                asks: vec![(b, r)],
                batch: false,
            })
            .collect(),
    };
    let rewritten = rewritten_text(compose, &refs)?;

    Ok(Plan {
        compose_file: compose.path.clone(),
        registry_host: host,
        repository,
        account_placeholder,
        ecr,
        checks,
        builds,
        bases: Vec::new(),
        services,
        output: opts.output.clone(),
        rewritten,
        warnings,
    })
}

/// The file with each named service's `build:` replaced by `image: REF`,
/// read back and checked.
pub fn rewritten_text(compose: &Compose, refs: &[(String, String)]) -> Result<String> {
    let edits = rewrite::edits(compose, refs)?;
    let rewritten = rewrite::apply(&compose.text, &edits)?;
    verify(compose, &rewritten, refs)?;
    Ok(rewritten)
}

/// The tag of a `HOST[:PORT]/REPOSITORY:TAG` reference.
pub fn tag_of(reference: &str) -> &str {
    reference.rsplit_once(':').map_or(reference, |(_, t)| t)
}

fn with_default_dockerfile(spec: &BuildSpec) -> BuildSpec {
    let mut spec = spec.clone();
    if spec.dockerfile.is_none() && !is_remote_context(&spec.context) {
        spec.dockerfile = Some(crate::read::compose::normalize(
            &Path::new(&spec.context).join("Dockerfile"),
        ));
    }
    spec
}

/// Read the rewritten text back, in the environment the file was read in:
/// each built service must now name its reference, every other service must
/// read as before, and, by Convox's own rules, no service is left for
/// `convox build` to build.
fn verify(compose: &Compose, rewritten: &str, refs: &[(String, String)]) -> Result<()> {
    let env = |k: &str| compose.env(k);
    let after = Compose::from_bytes(&compose.path, rewritten.as_bytes().to_vec(), &env)
        .map_err(|e| anyhow!("internal error: the rewritten file does not read back: {e:#}"))?;
    for before in &compose.services {
        let Some(now) = after.services.iter().find(|s| s.name == before.name) else {
            bail!(
                "internal error: service `{}` lost in the rewrite",
                before.name
            );
        };
        let ok = match refs.iter().find(|(n, _)| n == &before.name) {
            Some((_, r)) => now.source == Source::Image(r.clone()),
            None => now.source == before.source,
        };
        if !ok {
            bail!(
                "internal error: the rewrite changed service `{}` wrongly",
                before.name
            );
        }
    }
    let left = manifest::convox_builds(&after.doc, &after.format, &env);
    if !left.is_empty() {
        bail!(
            "internal error: after the rewrite Convox would still build {}",
            left.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

impl Plan {
    /// The login as the pipeline a user would type.
    pub fn login_line(&self) -> Option<String> {
        self.ecr
            .as_ref()
            .map(|e| format!("{} | {}", e.password, e.login))
    }

    /// Every command in the order it runs, one shell line each.
    pub fn script(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.ecr.is_some() && self.account_placeholder {
            lines.push(format!(
                "# {ACCOUNT_PLACEHOLDER} is the Account printed by: {}",
                ecr::caller_identity()
            ));
        }
        let setup = |lines: &mut Vec<String>| {
            if let Some(e) = &self.ecr {
                lines.push(format!("{} >/dev/null || {}", e.describe, e.create));
                if let Some((_, describe, create)) = &e.cache {
                    lines.push(format!("{describe} >/dev/null || {create}"));
                }
                lines.extend(self.login_line());
            }
        };
        if self.login_first() {
            setup(&mut lines);
        }
        if !self.builds.is_empty() {
            lines.push(
                "# a build whose tags all exist already is skipped (--force builds anyway):".into(),
            );
        }
        lines.extend(self.checks.iter().map(|c| c.cmd.to_string()));
        if !self.login_first() && self.ecr.is_some() {
            lines.push("# only when something is to be built or pushed:".into());
            setup(&mut lines);
        }
        for b in &self.builds {
            let from_root: Vec<&str> = b
                .services
                .iter()
                .filter(|n| {
                    self.services
                        .iter()
                        .any(|s| &s.name == *n && s.from_app_root)
                })
                .map(String::as_str)
                .collect();
            if !from_root.is_empty() {
                lines.push(format!(
                    "# {}: no `build:` in the file, so built from the app root, as Convox does:",
                    from_root.join(", ")
                ));
            }
            match b
                .cache
                .as_ref()
                .and_then(|c| c.pull.as_ref().zip(c.build_cached.as_ref()))
            {
                Some((pull, cached)) => lines.push(format!(
                    "if {pull} >/dev/null; then {cached}; else {}; fi",
                    b.build
                )),
                None => lines.push(b.build.to_string()),
            }
            lines.extend(b.tags.iter().map(ToString::to_string));
            lines.extend(b.pushes.iter().map(|(_, p)| p.to_string()));
            if let Some(c) = &b.cache {
                lines.push(format!("{} && {}", c.tag, c.push));
            }
        }
        lines
    }

    /// Do the checks ask the registry itself, which wants the ECR login first
    /// (`--registry-host` in front of ECR)? Else they ask ECR's API, and the
    /// set-up and login wait until a build is known to be needed.
    pub fn login_first(&self) -> bool {
        self.ecr.is_some() && self.checks.iter().any(|c| !c.batch)
    }

    /// Is any `docker` or `aws` command needed at all?
    pub fn needs_docker(&self) -> bool {
        !self.builds.is_empty()
    }
}
