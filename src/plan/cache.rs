//! The registry cache: each service's last image is kept in the cache
//! repository (`REPOSITORY-cache`) under a fixed tag (`APP_SERVICE`), so that
//! the next build of that service, on any runner, takes its unchanged layers
//! from there.
//!
//! - The classic builder takes a cache image only from the engine, and with
//!   `--cache-from` only from the images named there: the last image is
//!   pulled first, and the build names it in `--cache-from` when the pull
//!   succeeded (else the plain build, with the engine's own cache).
//! - BuildKit names the last image in `--cache-from`, and writes the new
//!   one's cache inline (`BUILDKIT_INLINE_CACHE=1`) for the next.
//!
//! After the push, the image is tagged and pushed to the cache repository.
//! Under the classic builder, a multi-stage Dockerfile's earlier stages would
//! be lost that way (the classic builder keeps no stage in the image), so
//! each stage the target needs is kept too: `CACHE-STAGE`, pulled and named
//! in `--cache-from` before the build, built with `--target` and pushed
//! after it, so that a slow step in any stage comes from the registry.
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

/// Each stage the target needs, as a cache image of its own (classic
/// builder): `CACHE-STAGE`, built with `--target STAGE` and no labels.
fn stages(at: &Site<'_>, spec: &BuildSpec, cache: &str) -> Vec<StageCache> {
    let Some(dockerfile) = at.dockerfile else {
        return Vec::new();
    };
    dockerfile
        .stages_needed(spec.target.as_deref())
        .iter()
        .map(|stage| {
            let id = stage.id();
            let reference = format!("{cache}-{}", tag::sanitize(&id));
            let mut of_stage = spec.clone();
            of_stage.target = Some(id.clone());
            StageCache {
                build: docker::build(
                    &of_stage,
                    &reference,
                    &[],
                    Some(dockerfile),
                    Builder::Classic,
                    None,
                ),
                pull: docker::pull_quiet(&reference),
                push: docker::push(&reference),
                stage: id,
                reference,
            }
        })
        .collect()
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
pub fn cache(
    at: &Site<'_>,
    spec: &BuildSpec,
    build_cmd: &dyn Fn(&BuildSpec) -> Cmd,
) -> (BuildSpec, CachePush) {
    let reference_c = reference(at.registry, at.app, at.service);
    let mut cached = spec.clone();
    cached.cache_from.push(reference_c.clone());
    let push = CachePush {
        tag: docker::tag(at.reference, &reference_c),
        push: docker::push(&reference_c),
        pull: (!at.buildkit).then(|| docker::pull_quiet(&reference_c)),
        build_cached: (!at.buildkit).then(|| build_cmd(&cached)),
        stages: if at.buildkit {
            Vec::new()
        } else {
            stages(at, spec, &reference_c)
        },
        reference: reference_c.clone(),
    };
    let mut build_spec = spec.clone();
    if at.buildkit {
        build_spec.cache_from.push(reference_c);
        build_spec.args.push(BuildArg {
            name: "BUILDKIT_INLINE_CACHE".into(),
            value: ArgValue::Literal("1".into()),
        });
    }
    (build_spec, push)
}
