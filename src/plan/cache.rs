//! The registry cache: each service's last image is kept in the cache
//! repository (`REPOSITORY-cache`) under a fixed tag (`APP_SERVICE`), so that
//! the next build of that service, on any runner, takes its unchanged layers
//! from there.
//!
//! - The classic builder takes a cache image only from the engine, and with
//!   `--cache-from` only from the images named there: the last image is
//!   pulled first, and the build names it in `--cache-from` when the pull
//!   succeeded (else the plain build, with the engine's own cache).
//! - BuildKit in the engine names the last image in `--cache-from`, and
//!   writes the new one's cache inline (`BUILDKIT_INLINE_CACHE=1`) for the
//!   next; it reads a cache image's inline cache from the registry itself,
//!   without a pull.
//!
//! After the push, the image is tagged and pushed to the cache repository.
//! A multi-stage Dockerfile's earlier stages would be lost that way (the
//! classic builder keeps no stage in the image; inline cache holds only the
//! last stage's layers, `mode=min`), so each stage the target needs is kept
//! too: `CACHE-STAGE`, built with `--target` after the build (from the
//! engine's cache: the build just ran its steps) and pushed, and named in
//! the next build's `--cache-from`, so that a slow step in any stage comes
//! from the registry. The classic builder pulls each first and names those
//! that pulled (naming a missing one turns its cache off); BuildKit names
//! them all, with inline cache in each.
//!
//! A buildx builder that pushes itself (`programs::buildx`) writes
//! BuildKit's own registry cache instead, of every stage (`mode=max`), in
//! the form ECR accepts when its BuildKit is 0.12 or later; inline cache in
//! an image pushed as the cache reference when it is older and the registry
//! is ECR ([`builder_cache`]).

use crate::plan::target::Registry;
use crate::plan::{tag, CachePush, StageCache};
use crate::programs::builder::Builder;
use crate::programs::buildx::Buildx;
use crate::programs::command::Cmd;
use crate::programs::docker::{self, BuilderCache};
use crate::read::compose::{ArgValue, BuildArg, BuildSpec};
use crate::read::dockerfile::Dockerfile;

/// Where one build's cache goes.
pub struct Site<'a> {
    pub registry: &'a Registry,
    pub app: &'a str,
    pub service: &'a str,
    /// The build's own reference.
    pub reference: &'a str,
    pub buildkit: bool,
    /// The build's Dockerfile as read (for its stages).
    pub dockerfile: Option<&'a Dockerfile>,
    /// One platform's part of a split build (`plan::Split`): its cache
    /// images are that platform's own.
    pub platform: Option<&'a str>,
}

/// The cache reference of one service: `HOST/REPOSITORY-cache:APP_SERVICE`.
pub fn reference(registry: &Registry, app: &str, service: &str) -> String {
    format!(
        "{}/{}-cache:{}",
        registry.host,
        registry.repository,
        tag::sanitize(&format!("{app}_{service}"))
    )
}

/// The cache reference of one stage: `HOST/REPOSITORY-cache:APP_SERVICE-STAGE`,
/// at most 128 characters and distinct for distinct stages (`tag::fit`).
fn stage_reference(at: &Site<'_>, stage: &str) -> String {
    let mut parts = vec![
        tag::Part::cut(&format!("{}_{}", at.app, at.service)),
        tag::Part::cut("-"),
        tag::Part::cut(stage),
    ];
    parts.extend(at.platform.map(platform_part));
    let tag = tag::fit(parts);
    format!(
        "{}/{}-cache:{tag}",
        at.registry.host, at.registry.repository
    )
}

/// The tag of one platform's part of a split build, in the cache
/// repository: `HOST/REPOSITORY-cache:APP_SERVICE.PLATFORM` (`linux/arm64`
/// as `linux-arm64`, kept whole), at most 128 characters (`tag::fit`). It
/// is that platform's registry cache too.
pub fn part_reference(registry: &Registry, app: &str, service: &str, platform: &str) -> String {
    let tag = tag::fit(vec![
        tag::Part::cut(&format!("{app}_{service}")),
        platform_part(platform),
    ]);
    format!("{}/{}-cache:{tag}", registry.host, registry.repository)
}

/// `.linux-arm64`: a platform as the end of a cache tag, kept whole.
fn platform_part(platform: &str) -> tag::Part {
    tag::Part::whole(&format!(".{}", platform.replace('/', "-")))
}

/// Each stage the target needs, as a cache image of its own:
/// `CACHE-STAGE`, built with `--target STAGE` and no labels (`stage_cmd`);
/// pulled first under the classic builder.
fn stages(
    at: &Site<'_>,
    spec: &BuildSpec,
    stage_cmd: &dyn Fn(&BuildSpec, &str) -> Cmd,
) -> Vec<StageCache> {
    let Some(dockerfile) = at.dockerfile else {
        return Vec::new();
    };
    dockerfile
        .stages_needed(spec.target.as_deref())
        .iter()
        .map(|stage| {
            let id = stage.id();
            let reference = stage_reference(at, &id);
            let mut of_stage = spec.clone();
            of_stage.target = Some(id.clone());
            StageCache {
                build: stage_cmd(&of_stage, &reference),
                pull: (!at.buildkit).then(|| docker::pull_quiet(&reference)),
                push: docker::push(&reference),
                stage: id,
                reference,
            }
        })
        .collect()
}

/// A stage's cache build under the classic builder.
pub fn classic_stage(spec: &BuildSpec, reference: &str, dockerfile: Option<&Dockerfile>) -> Cmd {
    docker::build(spec, reference, &[], dockerfile, Builder::Classic, None)
}

/// Is the registry ECR itself (it refuses BuildKit's older cache manifest)?
pub fn is_ecr(host: &str) -> bool {
    host.contains(".dkr.ecr.") && host.contains(".amazonaws.com")
}

/// The registry cache of a build on a builder that pushes itself.
pub fn builder_cache(registry: &Registry, app: &str, service: &str, bx: &Buildx) -> BuilderCache {
    let reference = reference(registry, app, service);
    let from = format!("type=registry,ref={reference}");
    let ecr = is_ecr(&registry.host);
    let (to, inline) = if ecr && !bx.ecr_cache_form() {
        ("type=inline".to_string(), true)
    } else if ecr {
        (
            format!(
                "type=registry,ref={reference},mode=max,image-manifest=true,oci-mediatypes=true"
            ),
            false,
        )
    } else {
        (format!("type=registry,ref={reference},mode=max"), false)
    };
    BuilderCache {
        reference,
        from,
        to,
        inline,
    }
}

/// The spec the build runs with, and the cache's pull and push.
/// `stage_cmd` builds one stage's cache image (`classic_stage` under the
/// classic builder; the build's own builder under BuildKit).
pub fn cache(
    at: &Site<'_>,
    spec: &BuildSpec,
    build_cmd: &dyn Fn(&BuildSpec) -> Cmd,
    stage_cmd: &dyn Fn(&BuildSpec, &str) -> Cmd,
) -> (BuildSpec, CachePush) {
    let reference_c = match at.platform {
        Some(p) => part_reference(at.registry, at.app, at.service, p),
        None => reference(at.registry, at.app, at.service),
    };
    let mut cached = spec.clone();
    cached.cache_from.push(reference_c.clone());
    if !at.buildkit {
        let stages = stages(at, spec, stage_cmd);
        let push = CachePush {
            tag: docker::tag(at.reference, &reference_c),
            push: docker::push(&reference_c),
            pull: Some(docker::pull_quiet(&reference_c)),
            build_cached: Some(build_cmd(&cached)),
            stages,
            stages_first: false,
            reference: reference_c,
        };
        return (spec.clone(), push);
    }
    // BuildKit: every cache image named, each with inline cache, the
    // stages' builds as the image's.
    let stage_refs = stages(at, spec, &|_, _| Cmd::new("docker"));
    let mut build_spec = spec.clone();
    build_spec.cache_from.push(reference_c.clone());
    build_spec
        .cache_from
        .extend(stage_refs.iter().map(|s| s.reference.clone()));
    build_spec.args.push(BuildArg {
        name: "BUILDKIT_INLINE_CACHE".into(),
        value: ArgValue::Literal("1".into()),
    });
    let push = CachePush {
        tag: docker::tag(at.reference, &reference_c),
        push: docker::push(&reference_c),
        pull: None,
        build_cached: None,
        stages: stages(at, &build_spec, stage_cmd),
        stages_first: true,
        reference: reference_c,
    };
    (build_spec, push)
}
