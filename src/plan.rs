//! From the compose file and the options to a plan: which services to build,
//! which builds are shared, the image references, the exact commands, and the
//! rewritten file. Making a plan starts no process.

use crate::command::Cmd;
use crate::compose::{is_remote_context, BuildSpec, Compose, Source};
use crate::ecr::{self, Repo};
use crate::{docker, rewrite, tag};
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
        })
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
            let setup = EcrSetup {
                name: name.clone(),
                region: region.clone(),
                describe: ecr::describe_repository(name, &region),
                create: ecr::create_repository(name, &region),
                password: ecr::login_password(&region),
                login: docker::login(&host),
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
                });
                continue;
            }
            Source::Build { spec, .. } => with_default_dockerfile(spec),
        };
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
                });
            }
            None => {
                if let Some(other) = builds.iter().find(|b| b.refs.contains(&reference)) {
                    return Err(usage(format!(
                        "services `{}` and `{}` build different images but --tag `{}` gives both the tag {reference}; put {{service}} in the template",
                        other.services[0], svc.name, opts.tag
                    )));
                }
                let mut labels = labels.clone();
                labels.push((DIGEST_LABEL.to_string(), format!("blake3:{hash}")));
                builds.push(Build {
                    digest: hash.clone(),
                    at: format!("{}:{}", compose.path.display(), svc.pos),
                    services: vec![svc.name.clone()],
                    build: docker::build(
                        &spec,
                        &reference,
                        &labels,
                        spec.dockerfile
                            .as_deref()
                            .and_then(|d| std::fs::read_to_string(d).ok())
                            .as_deref(),
                    ),
                    spec,
                    refs: vec![reference.clone()],
                    tags: Vec::new(),
                    pushes: vec![(svc.name.clone(), docker::push(&reference))],
                });
                services.push(ServicePlan {
                    name: svc.name.clone(),
                    action: Action::Built { reference },
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
                cmd: docker::manifest_inspect(&builds[b].refs[r], docker::is_loopback(&host)),
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
        spec.dockerfile = Some(crate::compose::normalize(
            &Path::new(&spec.context).join("Dockerfile"),
        ));
    }
    spec
}

/// Read the rewritten text back: each built service must now name its
/// reference, and every other service must read as before.
fn verify(compose: &Compose, rewritten: &str, refs: &[(String, String)]) -> Result<()> {
    let after = Compose::from_bytes(&compose.path, rewritten.as_bytes().to_vec(), &|_| None)
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
            lines.push(b.build.to_string());
            lines.extend(b.tags.iter().map(ToString::to_string));
            lines.extend(b.pushes.iter().map(|(_, p)| p.to_string()));
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
