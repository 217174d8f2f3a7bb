//! The plan: from the file, the options and what was probed to which
//! services to build, which builds are shared, the image references, the
//! exact commands, and the rewritten file. Making a plan starts no process;
//! most tests test the plan.
//!
//! [`plan_with`] does its jobs in order, one module each:
//! - [`target`]: the registry target: the host (ECR's from the account and
//!   region), the repository, the ECR set-up and login;
//! - [`tag`]: the tag template (`{app}`, `{service}`, `{gitsha}`, `{hash}`, …);
//! - [`platforms`]: the platforms each build targets (the flag, the
//!   service's, the rack's, `linux/amd64`), decided before any build;
//! - [`login`]: the registries logged in to (the push host, ECR hosts of
//!   base images), or the credential helper that serves each;
//! - [`group`]: the labels, each service's digest and reference, and the
//!   grouping of equal builds into one;
//! - [`cache`]: the registry cache of each build (pull, `--cache-from`, push);
//! - [`checks`]: how the run asks the registry what it has;
//! - [`rewrite`]: the lossless edit of the user's file, read back and
//!   checked ([`rewritten_text`]);
//! - [`own_output`]: an output file inside a context that docker sends
//!   (each run would then build again), said;
//! - [`refresh`]: the base images to make current on the engine before a
//!   build (attached after the plan, from what was probed);
//! - [`release`]: `--convox-build`'s release step (`convox build`, or a
//!   current rack's `convox builds import-image`);
//! - [`script`]: what a plan prints: [`Plan::script`] and [`Plan::dry_run`].

pub mod cache;
pub mod checks;
pub mod group;
pub mod login;
pub mod own_output;
pub mod platforms;
pub mod refresh;
pub mod release;
pub mod rewrite;
pub mod script;
pub mod tag;
pub mod target;

pub use target::Target;

use crate::programs::command::Cmd;
use crate::read::compose::{BuildSpec, Compose, Source};
use crate::read::dockerfile::Dockerfiles;
use crate::read::manifest;
use anyhow::{anyhow, bail, Result};
use std::fmt;
use std::path::PathBuf;

/// A usage mistake: the command line is wrong (exit status 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
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
    /// The days after which the cache repository's untagged images expire,
    /// set as its lifecycle policy when this program creates it; 0: none.
    pub cache_expiry_days: u32,
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
    /// The registry-cache repository (`NAME-cache`, tags mutable), when
    /// builds use one: set up like the first, but its failure only warns.
    pub cache: Option<CacheRepository>,
}

/// The registry cache's repository, which this program creates.
#[derive(Debug, Clone)]
pub struct CacheRepository {
    pub name: String,
    pub describe: Cmd,
    pub create: Cmd,
    /// Set right after this program created it (never on a repository it
    /// found): untagged images expire (`--cache-expiry-days`).
    pub lifecycle: Option<Cmd>,
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
    /// Under the classic builder, each stage the target needs, kept in the
    /// cache too (`REPOSITORY-cache:APP_SERVICE-STAGE`): pulled before the
    /// build and named in `--cache-from` when the pull succeeded, then
    /// built with `--target` after it (from the engine's cache: the build
    /// just ran its steps) and pushed.
    pub stages: Vec<StageCache>,
    /// The stages' cache images are built before the build (the engine's
    /// BuildKit: their steps from the registry, the build's then from the
    /// engine's own records of them), else after it (the classic builder:
    /// from the build's layers).
    pub stages_first: bool,
}

/// One build stage in the registry cache (classic builder).
#[derive(Debug, Clone)]
pub struct StageCache {
    pub stage: String,
    pub reference: String,
    /// Under the classic builder: pulled before the build (BuildKit reads
    /// it from the registry itself).
    pub pull: Option<Cmd>,
    /// `docker build --target STAGE -t REFERENCE …`.
    pub build: Cmd,
    pub push: Cmd,
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
    /// The registry is reached over plain HTTP (loopback, or so configured):
    /// the run asks it itself first, as the command would (`running::registry`).
    pub plain_http: bool,
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
    /// The builder pushes the image itself (a buildx builder whose driver
    /// is not `docker`, `programs::buildx`): every ref is a `-t` of the
    /// build, no tag or push runs, and the pushed digest is read from this
    /// `--metadata-file`.
    pub metadata_file: Option<PathBuf>,
    /// On such a builder, the same build as a target of a bake definition,
    /// when bake can take it (`docker::bake_target`).
    pub bake_target: Option<serde_json::Value>,
    /// The context as Convox uploads it, staged before the build and named
    /// by its commands (`inputs::upload`).
    pub stage: Option<Stage>,
    /// After the push, before the rewrite: what the registry holds under
    /// the build's first reference, read back (`docker manifest inspect
    /// --verbose`) to check its platforms.
    pub verify: Cmd,
    /// On the engine's BuildKit, a build for several platforms: built once
    /// per platform and joined into one index (`Split`); its `pushes` are
    /// then the index's pushes.
    pub split: Option<Split>,
}

/// The engine keeps one platform per image, so its BuildKit builds several
/// platforms one image each: each part is built with `--platform`, pushed
/// to the cache repository under a tag of its own (`APP_SERVICE.PLATFORM`,
/// which is also that platform's registry cache), and the parts are joined
/// into one index under each reference of the build, naming each part by
/// the digest its push printed: `docker buildx imagetools create` where
/// buildx is there (it copies the parts into the build's repository,
/// mounted or uploaded), else `docker manifest create` and `push` (which
/// only mounts: on ECR, with its blob mounting setting on). The parts are
/// copied by digest: no tag in the build's repository but its own.
#[derive(Debug, Clone)]
pub struct Split {
    pub parts: Vec<Part>,
    /// Per reference (as `Build::refs`), with `docker manifest`: the
    /// index's `docker manifest create`, naming each part by its tag (the
    /// run names each by the digest its push printed instead,
    /// `REPOSITORY-cache@sha256:…`), and the `docker manifest rm` of a list
    /// a stopped run left before it. None where `docker buildx imagetools
    /// create` makes and pushes the index in one (the build's push).
    pub creates: Vec<Option<(Cmd, Cmd)>>,
}

/// One platform's image of a split build.
#[derive(Debug, Clone)]
pub struct Part {
    pub platform: String,
    /// Its tag in the cache repository (`REPOSITORY-cache:APP_SERVICE.PLATFORM`).
    pub reference: String,
    /// `docker build --platform PLATFORM -t REFERENCE …` (with that
    /// platform's registry cache, when kept).
    pub build: Cmd,
    pub push: Cmd,
    /// That platform's stages, each a cache image of its own, built first.
    pub stages: Vec<StageCache>,
}

/// A context staged as Convox uploads it: the app directory's
/// `.dockerignore` applied (`inputs::staging`), in the run's private
/// directory outside the app, removed when the run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The app directory (whose `.dockerignore` applies).
    pub root: PathBuf,
    /// The context, as the file names it.
    pub context: PathBuf,
    /// Its real path below the app directory, `/`-separated.
    pub prefix: String,
    /// Where it is staged.
    pub dir: PathBuf,
}

impl Stage {
    /// The stage of build number `index`, when its context is strictly
    /// inside the app directory and the app has a root `.dockerignore`.
    pub fn of(spec: &BuildSpec) -> Option<Stage> {
        let root = PathBuf::from(spec.upload_root.as_ref()?);
        let context = PathBuf::from(&spec.context);
        if !crate::inputs::upload::applies(&root, &context).unwrap_or(true) {
            return None;
        }
        let prefix = crate::inputs::upload::context_below(&root, &context)?;
        Some(Stage {
            dir: crate::inputs::staging::staged_context(&prefix),
            root,
            context,
            prefix,
        })
    }
}

/// Builds on a builder that pushes itself, run together as one `docker
/// buildx bake` (`programs::buildx`).
#[derive(Debug, Clone)]
pub struct Bake {
    pub builder: crate::programs::buildx::Buildx,
    /// The flags of every build (the attestations).
    pub flags: Vec<String>,
    /// The bake's `--metadata-file`: each target's pushed digest.
    pub metadata_file: PathBuf,
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
    /// The registries to log in to before the first build or registry
    /// question that needs it (`login`).
    pub logins: Vec<login::Login>,
    /// How to ask whether each reference exists already.
    pub checks: Vec<Check>,
    pub builds: Vec<Build>,
    /// The base images the registry identified, each made current on the
    /// engine before the first build on it (`crate::inputs::bases`).
    pub bases: Vec<refresh::Refresh>,
    pub services: Vec<ServicePlan>,
    pub output: Output,
    pub rewritten: String,
    pub warnings: Vec<String>,
    /// How builds run together, on a builder that pushes itself.
    pub bake: Option<Bake>,
    /// Each built service's target platforms and where they came from
    /// (`platforms`), attached after the plan is made.
    pub platforms: Vec<(String, platforms::Decided)>,
    /// Builds keep attestations (`--provenance`, `--sbom`): an index entry
    /// `unknown/unknown` is then expected.
    pub attested: bool,
    /// Each kept image, asked which platforms it offers (attached after the
    /// plan is made).
    pub kept: Vec<KeptCheck>,
    /// The tag template has `{hash}`: each tag names the content digest,
    /// which covers the platforms. Without it, a tag the registry has is
    /// read back for its platforms when the answer did not name them.
    pub tag_names_content: bool,
}

/// A kept image (`image:`), which Convox runs on the rack's nodes as it
/// is: asked which platforms it offers (`docker manifest inspect
/// --verbose`), with a warning naming each wanted one it lacks.
#[derive(Debug, Clone)]
pub struct KeptCheck {
    pub service: String,
    pub image: String,
    pub wanted: platforms::Decided,
    pub ask: Cmd,
    /// Its registry is plain HTTP (loopback, or so configured): asked
    /// directly, a `HEAD` first (`running::kept_cache`).
    pub plain: bool,
}

impl KeptCheck {
    /// One per kept image (service, image, wanted platforms); `insecure`:
    /// the registry is so configured (loopback is plain HTTP anyway).
    pub fn all(kept: &[(String, String, platforms::Decided)], insecure: bool) -> Vec<KeptCheck> {
        kept.iter()
            .map(|(service, image, wanted)| {
                let host = crate::inputs::bases::host_of(image).unwrap_or("docker.io");
                let plain = insecure || crate::programs::docker::is_loopback(host);
                KeptCheck {
                    service: service.clone(),
                    image: image.clone(),
                    wanted: wanted.clone(),
                    ask: crate::programs::docker::manifest_inspect(image, plain),
                    plain,
                }
            })
            .collect()
    }
}

impl Plan {
    /// The platforms of a service, when it is built.
    pub fn platforms_of(&self, service: &str) -> Option<&platforms::Decided> {
        self.platforms
            .iter()
            .find(|(n, _)| n == service)
            .map(|(_, d)| d)
    }
}

/// Make the plan. `account` is the caller's account id when
/// [`Target::needs_account`]; None puts a placeholder there (dry run).
/// `digest` gives each distinct build's content digest. Each build's
/// Dockerfile is read here; [`plan_with`] takes them as already read.
pub fn plan(
    compose: &Compose,
    opts: &Options,
    target: &Target,
    account: Option<&str>,
    digest: &(dyn Fn(&BuildSpec) -> Result<String> + Sync),
) -> Result<Plan> {
    let dockerfiles = Dockerfiles::read(compose.build_specs());
    plan_with(compose, opts, target, account, digest, &dockerfiles)
}

/// Make the plan, with the Dockerfiles as the run read them. Its jobs, in
/// order: the registry target ([`target`]), the labels and tags, grouping the
/// builds ([`group`]), the registry checks ([`checks`]), each with its
/// cache pushes ([`cache`]), and the rewritten file.
pub fn plan_with(
    compose: &Compose,
    opts: &Options,
    target: &Target,
    account: Option<&str>,
    digest: &(dyn Fn(&BuildSpec) -> Result<String> + Sync),
    dockerfiles: &Dockerfiles,
) -> Result<Plan> {
    let mut warnings = compose.warnings.clone();
    warnings.extend(target.warnings.iter().cloned());
    let placeholders = tag::placeholders(&opts.tag).map_err(usage)?;
    let needs_gitsha = placeholders.contains(&"gitsha");
    let tag_names_content = placeholders.contains(&"hash");
    if needs_gitsha && opts.gitsha.is_none() {
        return Err(usage(
            "no git commit for the tag: give --gitsha, set DRONE_COMMIT_SHA, or run inside a git checkout",
        ));
    }
    let registry = target::registry(opts, target, account);
    let grouped = group::Grouping {
        compose,
        opts,
        target,
        registry: &registry,
        labels: group::labels(opts),
        digest,
        dockerfiles,
    }
    .group()?;
    // Nothing to build: nothing to set up or log in to.
    let (ecr, logins) = if grouped.builds.is_empty() {
        (None, Vec::new())
    } else {
        (registry.ecr, registry.logins)
    };
    let checks = checks::checks(
        &grouped.builds,
        registry.ecr_check.as_ref(),
        &registry.host,
        target,
    );
    let rewritten = rewritten_text(compose, &grouped.refs)?;
    warnings.extend(own_output::warnings(
        &opts.output,
        &compose.path,
        &grouped.builds,
    ));
    Ok(Plan {
        compose_file: compose.path.clone(),
        registry_host: registry.host,
        repository: registry.repository,
        account_placeholder: registry.account_placeholder,
        ecr,
        logins,
        checks,
        builds: grouped.builds,
        bases: Vec::new(),
        services: grouped.services,
        output: opts.output.clone(),
        rewritten,
        warnings,
        bake: grouped.bake,
        platforms: Vec::new(),
        attested: target
            .attestations
            .iter()
            .any(|f| f != "--provenance=false"),
        kept: Vec::new(),
        tag_names_content,
    })
}

/// One bake of some of a plan's builds.
#[derive(Debug, Clone)]
pub struct BakeRun {
    pub cmd: Cmd,
    /// Each build's target name, in the order asked.
    pub names: Vec<String>,
    /// Where it writes each target's pushed digest.
    pub metadata_file: PathBuf,
}

impl Plan {
    /// The one bake that runs these builds (indices into `builds`): None
    /// unless there is a bake and two or more of them, each of which it can
    /// take.
    pub fn bake_of(&self, builds: &[usize]) -> Option<BakeRun> {
        let bake = self.bake.as_ref()?;
        if builds.len() < 2 {
            return None;
        }
        let mut names: Vec<String> = Vec::new();
        let mut targets: Vec<(String, serde_json::Value)> = Vec::new();
        for &i in builds {
            let b = self.builds.get(i)?;
            let name = crate::programs::buildx::target_name(&b.services[0], &names);
            names.push(name.clone());
            targets.push((name, b.bake_target.clone()?));
        }
        let cmd = crate::programs::buildx::bake(
            &bake.builder,
            &bake.flags,
            &bake.metadata_file,
            &targets,
        );
        Some(BakeRun {
            cmd,
            names,
            metadata_file: bake.metadata_file.clone(),
        })
    }
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
    /// Does it ask the registry about the same references, in the same
    /// builds, as `other` (so that `other`'s answers are its own)?
    pub fn same_references(&self, other: &Plan) -> bool {
        self.builds.len() == other.builds.len()
            && self
                .builds
                .iter()
                .zip(&other.builds)
                .all(|(a, b)| a.refs == b.refs)
            && self.checks.len() == other.checks.len()
            && self
                .checks
                .iter()
                .zip(&other.checks)
                .all(|(a, b)| a.asks == b.asks)
    }

    /// Do the checks ask the registry itself, which wants the ECR login first
    /// (`--registry-host` in front of ECR)? Else they ask ECR's API, and the
    /// set-up and login wait until a build is known to be needed.
    pub fn login_first(&self) -> bool {
        self.ecr.is_some() && self.checks.iter().any(|c| !c.batch)
    }

    /// Is `aws` needed (an ECR set-up, or a login's password)?
    pub fn needs_aws(&self) -> bool {
        self.ecr.is_some() || self.logins.iter().any(login::Login::needs_aws)
    }

    /// Is any `docker` or `aws` command needed at all?
    pub fn needs_docker(&self) -> bool {
        !self.builds.is_empty()
    }
}
