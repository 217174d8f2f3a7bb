//! Where the images go: the repository, its registry host (an ECR host from
//! the account and region when `--repo` is a bare name), the ECR set-up and
//! login, and whether the registry checks can ask ECR's own API. Decided
//! before any digest is known.

use crate::plan::login::{self, Login};
use crate::plan::{usage, CacheRepository, EcrSetup, Options, ACCOUNT_PLACEHOLDER};
use crate::programs::builder::Builder;
use crate::programs::buildx::Buildx;
use crate::programs::ecr::{self, Repo};
use crate::programs::reference;
use crate::read::docker_config::DockerConfig;
use anyhow::Result;

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
    /// The buildx builder that builds and pushes the images itself (any
    /// driver but `docker`); None: the image lands in the engine.
    pub buildx: Option<Buildx>,
    /// How this machine's buildx runs, when the client has it (any
    /// builder): it joins the engine's per-platform images into one index
    /// (`imagetools create`).
    pub imagetools: Option<crate::programs::buildx::Program>,
    /// Keep each service's last image in `REPOSITORY-cache` as the next
    /// build's cache source (pulled first under the classic builder; inline
    /// cache under BuildKit, on engines from 23 on); `--no-registry-cache`
    /// turns it off.
    pub registry_cache: bool,
    /// What the docker config says of credential helpers.
    pub credentials: DockerConfig,
    /// The ECR hosts among the base images, with their regions: logged in
    /// to before a build, as the push host is.
    pub base_registries: Vec<(String, String)>,
    /// The attestation flags of a build through buildx
    /// (`programs::buildx::attestation_flags`); none for the others.
    pub attestations: Vec<String>,
}

impl Target {
    pub fn new(opts: &Options) -> Result<Target> {
        let repo = ecr::parse_repo(&opts.repo).map_err(|e| usage(e.to_string()))?;
        if let Some(host) = &opts.registry_host {
            reference::check_host(host).map_err(|e| usage(format!("--registry-host: {e}")))?;
        }
        if opts.app.trim().is_empty() {
            return Err(usage(
                "--app is empty; give the Convox app's name (as `convox apps` lists it)",
            ));
        }
        if let Some(c) = opts
            .app
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
        {
            return Err(usage(format!(
                "--app `{}` holds {c:?}; a Convox app's name holds no space",
                opts.app
            )));
        }
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
            buildx: None,
            imagetools: None,
            registry_cache: true,
            credentials: DockerConfig::default(),
            base_registries: Vec::new(),
            attestations: Vec::new(),
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

/// The registry a plan pushes to.
#[derive(Debug, Clone)]
pub struct Registry {
    pub host: String,
    pub repository: String,
    /// The account id is a placeholder (dry run of a bare ECR name).
    pub account_placeholder: bool,
    pub ecr: Option<EcrSetup>,
    /// The push host's login (when it is ECR's) and the base images'.
    pub logins: Vec<Login>,
    /// Whether a tag exists is asked of ECR's API (repository name, region)
    /// when the push goes to ECR itself, else of the registry.
    pub ecr_check: Option<(String, String)>,
}

/// Resolve the registry host and the ECR set-up. `account` is the caller's
/// account id, when [`Target::needs_account`].
pub fn registry(opts: &Options, target: &Target, account: Option<&str>) -> Registry {
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
            let expiry = target.registry_cache.then_some(opts.cache_expiry_days);
            let setup = ecr_setup(name, &region, expiry);
            (host, name.clone(), Some(setup))
        }
    };
    let host = match (&target.repo, &opts.registry_host) {
        (Repo::Other { .. }, Some(h)) => h.clone(),
        _ => host,
    };
    let ecr_check = match (&target.repo, &opts.registry_host) {
        (Repo::Ecr { name, .. }, None) => {
            Some((name.clone(), target.region.clone().unwrap_or_default()))
        }
        _ => None,
    };
    let mut hosts: Vec<(String, String)> = Vec::new();
    if let Some(e) = &ecr {
        hosts.push((host.clone(), e.region.clone()));
    }
    hosts.extend(target.base_registries.iter().cloned());
    Registry {
        logins: login::logins(&hosts, &target.credentials),
        host,
        repository,
        account_placeholder,
        ecr,
        ecr_check,
    }
}

/// The repository's set-up and login, and its cache sibling's set-up
/// (`cache_expiry`: the cache's days, when builds keep one).
fn ecr_setup(name: &str, region: &str, cache_expiry: Option<u32>) -> EcrSetup {
    let cache_name = format!("{name}-cache");
    EcrSetup {
        name: name.to_string(),
        region: region.to_string(),
        describe: ecr::describe_repository(name, region),
        create: ecr::create_repository(name, region),
        cache: cache_expiry.map(|days| CacheRepository {
            describe: ecr::describe_repository(&cache_name, region),
            create: ecr::create_repository(&cache_name, region),
            lifecycle: (days > 0).then(|| ecr::put_lifecycle_policy(&cache_name, region, days)),
            name: cache_name,
        }),
    }
}
