//! Grouping the builds: each service with `build:` gets its content digest
//! and its tag; services whose builds are the same (context, Dockerfile,
//! args, target, platform, secrets) share one image, built once and tagged
//! for each of them. Two different builds may not get the same tag.

use crate::plan::target::Registry;
use crate::plan::{
    cache, checks, tag, usage, Action, Bake, Build, Options, Part, ServicePlan, Split, Stage,
    Target, DIGEST_LABEL,
};
use crate::programs::buildx::Buildx;
use crate::programs::command::Cmd;
use crate::programs::docker;
use crate::read::compose::{is_remote_context, normalize, BuildSpec, Compose, Service, Source};
use crate::read::dockerfile::{Dockerfile, Dockerfiles};
use anyhow::{anyhow, Result};
use std::path::Path;

/// The image labels of every build: the app, the commit, the description
/// (each build adds its digest).
pub fn labels(opts: &Options) -> Vec<(String, String)> {
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
    labels
}

/// What grouping needs.
pub struct Grouping<'a> {
    pub compose: &'a Compose,
    pub opts: &'a Options,
    pub target: &'a Target,
    pub registry: &'a Registry,
    pub labels: Vec<(String, String)>,
    pub digest: &'a (dyn Fn(&BuildSpec) -> Result<String> + Sync),
    pub dockerfiles: &'a Dockerfiles,
}

/// The builds, what each service does, and each built service's reference.
pub struct Grouped {
    pub builds: Vec<Build>,
    pub services: Vec<ServicePlan>,
    pub refs: Vec<(String, String)>,
    /// On a builder that pushes itself: how builds run together.
    pub bake: Option<Bake>,
}

impl Grouping<'_> {
    pub fn group(&self) -> Result<Grouped> {
        let digests = self.digests()?;
        let mut out = Grouped {
            builds: Vec::new(),
            services: Vec::new(),
            refs: Vec::new(),
            bake: None,
        };
        for svc in &self.compose.services {
            let spec = match &svc.source {
                Source::Image(image) => {
                    out.services.push(ServicePlan {
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
            let hash = digests
                .iter()
                .find(|(s, _)| *s == spec)
                .map(|(_, d)| d.clone())
                .ok_or_else(|| anyhow!("internal error: no digest for service `{}`", svc.name))?;
            self.add(&mut out, svc, spec, &hash)?;
        }
        if let Some(bx) = self.target.buildx.as_ref().filter(|b| b.pushes_itself()) {
            for b in &mut out.builds {
                self.pushed_by_builder(b, bx);
            }
            out.bake = Some(Bake {
                builder: bx.clone(),
                flags: self.target.attestations.clone(),
                metadata_file: crate::inputs::staging::run_dir().join("bake.metadata.json"),
            });
        }
        Ok(out)
    }

    /// The content digest of each distinct build, all at once (each
    /// context read once, the contexts side by side); the first failure in
    /// the file's order.
    fn digests(&self) -> Result<Vec<(BuildSpec, String)>> {
        use rayon::prelude::*;
        let mut distinct: Vec<(BuildSpec, &Service)> = Vec::new();
        for svc in &self.compose.services {
            if let Source::Build { spec, .. } = &svc.source {
                let spec = with_default_dockerfile(spec);
                if !distinct.iter().any(|(s, _)| *s == spec) {
                    distinct.push((spec, svc));
                }
            }
        }
        distinct
            .into_par_iter()
            .map(|(spec, svc)| {
                let d = (self.digest)(&spec).map_err(|e| self.at(svc, e))?;
                Ok((spec, d))
            })
            .collect::<Vec<Result<(BuildSpec, String)>>>()
            .into_iter()
            .collect()
    }

    /// `file:line:col: service `NAME`: …`
    fn at(&self, svc: &Service, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "{}:{}: service `{}`: {e:#}",
            self.compose.path.display(),
            svc.pos,
            svc.name
        )
    }

    /// One service with `build:`: a build of its own, or a share of an
    /// equal one.
    fn add(&self, out: &mut Grouped, svc: &Service, spec: BuildSpec, hash: &str) -> Result<()> {
        let from_app_root = matches!(svc.source, Source::Build { implicit: true, .. });
        let reference = self.reference(&svc.name, hash)?;
        out.refs.push((svc.name.clone(), reference.clone()));
        if let Some(b) = out.builds.iter_mut().find(|b| b.spec == spec) {
            let with = b.services[0].clone();
            b.services.push(svc.name.clone());
            if !b.refs.contains(&reference) {
                match &mut b.split {
                    Some(split) => {
                        let parts: Vec<String> =
                            split.parts.iter().map(|p| p.reference.clone()).collect();
                        let (create, push) = self.join(&reference, &parts);
                        split.creates.push(create);
                        b.pushes.push((svc.name.clone(), push));
                    }
                    None => {
                        b.tags.push(docker::tag(&b.refs[0], &reference));
                        b.pushes.push((svc.name.clone(), docker::push(&reference)));
                    }
                }
                b.refs.push(reference.clone());
            }
            out.services.push(ServicePlan {
                name: svc.name.clone(),
                action: Action::Shared { with, reference },
                from_app_root,
            });
            return Ok(());
        }
        if let Some(other) = out.builds.iter().find(|b| b.refs.contains(&reference)) {
            return Err(usage(format!(
                "services `{}` and `{}` build different images but --tag `{}` gives both the tag {reference}; put {{service}} in the template",
                other.services[0], svc.name, self.opts.tag
            )));
        }
        if !self.target.builder.is_buildkit() && (!spec.secrets.is_empty() || !spec.ssh.is_empty())
        {
            return Err(self.at(svc, "build secrets and `build.ssh` need BuildKit, and the docker here runs the classic builder; set DOCKER_BUILDKIT=1 with a docker that has BuildKit (a client before 23, or one with the buildx plugin)"));
        }
        out.builds.push(self.build(svc, spec, hash, &reference));
        out.services.push(ServicePlan {
            name: svc.name.clone(),
            action: Action::Built { reference },
            from_app_root,
        });
        Ok(())
    }

    /// `HOST/REPOSITORY:TAG` of one service, from the tag template.
    fn reference(&self, service: &str, hash: &str) -> Result<String> {
        let opts = self.opts;
        let tag = tag::render(&opts.tag, &|p| match p {
            "app" => opts.app.clone(),
            "service" => service.to_string(),
            "gitsha" => opts.gitsha.clone().unwrap_or_default(),
            "description" => opts.description.clone(),
            "hash" => hash.chars().take(16).collect(),
            _ => String::new(),
        })
        .map_err(usage)?;
        Ok(format!(
            "{}/{}:{tag}",
            self.registry.host, self.registry.repository
        ))
    }

    /// The build of the first service with this spec: its command (with
    /// the registry cache, when kept), its push; on the engine's BuildKit
    /// for several platforms, its parts and their joining (`split`).
    fn build(&self, svc: &Service, spec: BuildSpec, hash: &str, reference: &str) -> Build {
        let mut labels = self.labels.clone();
        labels.push((DIGEST_LABEL.to_string(), format!("blake3:{hash}")));
        // The Dockerfile as read names the stages to cache; the classic
        // client cannot send a context whose `.dockerignore` is a link with
        // the Dockerfile on stdin, so its commands then get none (their
        // labels go as flags).
        let dockerfile = self.dockerfiles.of(&spec);
        let on_stdin =
            dockerfile.filter(|_| !docker::stdin_dockerfile_breaks(Path::new(&spec.context)));
        let stage = Stage::of(&spec);
        let cmd_spec = command_spec(&spec, stage.as_ref());
        let target = self.target;
        let build_cmd = |s: &BuildSpec| self.build_cmd(s, reference, &labels, on_stdin);
        let (build_spec, cache) = if target.registry_cache {
            let at = self.site(&svc.name, reference, dockerfile, None);
            let stage_cmd = |s: &BuildSpec, r: &str| self.stage_cmd(s, r, on_stdin);
            let (build_spec, push) = cache::cache(&at, &cmd_spec, &build_cmd, &stage_cmd);
            (build_spec, Some(push))
        } else {
            (cmd_spec.clone(), None)
        };
        let mut b = Build {
            digest: hash.to_string(),
            at: format!("{}:{}", self.compose.path.display(), svc.pos),
            services: vec![svc.name.clone()],
            build: build_cmd(&build_spec),
            spec,
            refs: vec![reference.to_string()],
            tags: Vec::new(),
            pushes: vec![(svc.name.clone(), docker::push(reference))],
            cache,
            bases: Vec::new(),
            metadata_file: None,
            bake_target: None,
            stage,
            verify: checks::verify(reference, &self.registry.host, target),
            split: None,
        };
        if self.splits(&cmd_spec) {
            self.split(&mut b, &cmd_spec, &labels, dockerfile);
        }
        b
    }

    /// A build's command under the builder here.
    fn build_cmd(
        &self,
        spec: &BuildSpec,
        reference: &str,
        labels: &[(String, String)],
        dockerfile: Option<&Dockerfile>,
    ) -> Cmd {
        let target = self.target;
        docker::build(
            spec,
            reference,
            labels,
            dockerfile,
            target.builder,
            target.builder_name.as_deref(),
        )
        .before_last(&target.attestations)
    }

    /// A stage's cache build: the build's own builder under BuildKit, no
    /// labels.
    fn stage_cmd(&self, spec: &BuildSpec, reference: &str, dockerfile: Option<&Dockerfile>) -> Cmd {
        if self.target.builder.is_buildkit() {
            self.build_cmd(spec, reference, &[], dockerfile)
        } else {
            cache::classic_stage(spec, reference, dockerfile)
        }
    }

    /// Where one build's (or one platform's part's) cache goes.
    fn site<'s>(
        &'s self,
        service: &'s str,
        reference: &'s str,
        dockerfile: Option<&'s Dockerfile>,
        platform: Option<&'s str>,
    ) -> cache::Site<'s> {
        cache::Site {
            registry: self.registry,
            app: &self.opts.app,
            service,
            reference,
            buildkit: self.target.builder.is_buildkit(),
            dockerfile,
            platform,
        }
    }

    /// Is this a build for several platforms on the engine's BuildKit,
    /// which keeps one platform per image (`plan::Split`)?
    fn splits(&self, spec: &BuildSpec) -> bool {
        let t = self.target;
        t.builder.is_buildkit()
            && !t.buildx.as_ref().is_some_and(Buildx::pushes_itself)
            && spec.platform.as_deref().is_some_and(|p| p.contains(','))
    }

    /// Make `b` a split build: a part per platform, each pushed to the
    /// cache repository, joined into one index under the build's reference.
    fn split(
        &self,
        b: &mut Build,
        spec: &BuildSpec,
        labels: &[(String, String)],
        dockerfile: Option<&Dockerfile>,
    ) {
        let service = b.services[0].clone();
        let platforms = spec.platform.clone().unwrap_or_default();
        let parts: Vec<Part> = platforms
            .split(',')
            .map(|p| self.part(&service, spec, p, labels, dockerfile))
            .collect();
        let names: Vec<String> = parts.iter().map(|p| p.reference.clone()).collect();
        let (create, push) = self.join(&b.refs[0], &names);
        b.split = Some(Split {
            parts,
            creates: vec![create],
        });
        b.pushes = vec![(service, push)];
        b.tags.clear();
        b.cache = None;
    }

    /// How the parts (named by their tags) become one index under
    /// `reference`: `docker buildx imagetools create` where the client has
    /// buildx and the registry needs no `--insecure` (it copies each part's
    /// content, where `docker manifest push` only mounts it, which ECR does
    /// only with blob mounting on); else `docker manifest create` (and the
    /// removal of a list left before it), then `docker manifest push`.
    fn join(&self, reference: &str, parts: &[String]) -> (Option<(Cmd, Cmd)>, Cmd) {
        let insecure = checks::plain_http(&self.registry.host, self.target);
        let needs_flag = insecure && !docker::is_loopback(&self.registry.host);
        match self.target.imagetools.as_ref().filter(|_| !needs_flag) {
            Some(program) => (
                None,
                crate::programs::buildx::imagetools_create(program, reference, parts),
            ),
            None => (
                Some((
                    docker::manifest_create(reference, parts, insecure),
                    docker::manifest_rm(reference),
                )),
                docker::manifest_push(reference, insecure),
            ),
        }
    }

    /// One platform's part of a split build: built with `--platform` under
    /// its own tag in the cache repository (with that platform's registry
    /// cache and stages, when kept), and pushed there.
    fn part(
        &self,
        service: &str,
        spec: &BuildSpec,
        platform: &str,
        labels: &[(String, String)],
        dockerfile: Option<&Dockerfile>,
    ) -> Part {
        let reference = cache::part_reference(self.registry, &self.opts.app, service, platform);
        let mut one = spec.clone();
        one.platform = Some(platform.to_string());
        let build_cmd = |s: &BuildSpec| self.build_cmd(s, &reference, labels, dockerfile);
        let (build, stages) = if self.target.registry_cache {
            let at = self.site(service, &reference, dockerfile, Some(platform));
            let stage_cmd = |s: &BuildSpec, r: &str| self.stage_cmd(s, r, dockerfile);
            let (build_spec, cache) = cache::cache(&at, &one, &build_cmd, &stage_cmd);
            (build_cmd(&build_spec), cache.stages)
        } else {
            (build_cmd(&one), Vec::new())
        };
        Part {
            platform: platform.to_string(),
            push: docker::push(&reference),
            build,
            stages,
            reference,
        }
    }

    /// On a builder that pushes itself: one build that pushes every ref of
    /// the build (the shared services' too), its cache BuildKit's own, and
    /// no tag or push of its own.
    fn pushed_by_builder(&self, b: &mut Build, bx: &Buildx) {
        let mut labels = self.labels.clone();
        labels.push((DIGEST_LABEL.to_string(), format!("blake3:{}", b.digest)));
        let cache = self
            .target
            .registry_cache
            .then(|| cache::builder_cache(self.registry, &self.opts.app, &b.services[0], bx));
        let metadata = crate::inputs::staging::run_dir().join(format!(
            "{}.metadata.json",
            &b.digest[..b.digest.len().min(16)]
        ));
        let spec = command_spec(&b.spec, b.stage.as_ref());
        b.build = docker::buildx_build(&spec, &b.refs, &labels, bx, cache.as_ref(), &metadata)
            .before_last(&self.target.attestations);
        b.bake_target = docker::bake_target(&spec, &b.refs, &labels, cache.as_ref());
        b.tags.clear();
        b.cache = None;
        b.metadata_file = Some(metadata);
    }
}

/// The spec the build's commands name: the staged copy's context (and the
/// Dockerfile in it, when it is inside the context) where the context is
/// staged, else the spec itself.
fn command_spec(spec: &BuildSpec, stage: Option<&Stage>) -> BuildSpec {
    let Some(stage) = stage else {
        return spec.clone();
    };
    let mut out = spec.clone();
    out.context = stage.dir.to_string_lossy().into_owned();
    if let Some(d) = &spec.dockerfile {
        if let Ok(rel) = Path::new(d).strip_prefix(&stage.context) {
            out.dockerfile = Some(stage.dir.join(rel).to_string_lossy().into_owned());
        }
    }
    out
}

/// The spec with its Dockerfile named: the context's `Dockerfile` unless
/// it says otherwise (a remote context names none).
fn with_default_dockerfile(spec: &BuildSpec) -> BuildSpec {
    let mut spec = spec.clone();
    if spec.dockerfile.is_none() && !is_remote_context(&spec.context) {
        spec.dockerfile = Some(normalize(&Path::new(&spec.context).join("Dockerfile")));
    }
    spec
}
