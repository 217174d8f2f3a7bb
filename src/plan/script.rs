//! What a plan prints: every command in the order it runs, one shell line
//! each ([`Plan::script`]), and the whole dry run around it
//! ([`Plan::dry_run`]).

use crate::inputs::bases;
use crate::inputs::build_args::BuildArgs;
use crate::plan::{Build, Plan, ACCOUNT_PLACEHOLDER};
use crate::programs::command::Cmd;
use crate::programs::{docker, ecr};

/// What a dry run shows besides the plan's own commands.
#[derive(Debug, Clone, Default)]
pub struct DryRun<'a> {
    /// The base images looked up before the plan (none with
    /// `--no-base-digest`).
    pub bases: &'a [String],
    /// `--convox-build`: the app and the description it builds with.
    pub convox_build: Option<crate::plan::release::ReleaseStep>,
    /// `--builder NAME`, which a dry run does not ask buildx about.
    pub assumed_builder: Option<&'a str>,
    /// The build arguments besides the file's: each build's names and where
    /// each value comes from (never the value).
    pub build_args: Option<&'a BuildArgs>,
    /// `--convox-env`'s command, which a dry run does not run.
    pub convox_env: Option<Cmd>,
}

impl Plan {
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
                if let Some(c) = &e.cache {
                    match &c.lifecycle {
                        Some(l) => lines.push(format!(
                            "{} >/dev/null || {{ {} && {l}; }}",
                            c.describe, c.create
                        )),
                        None => lines.push(format!("{} >/dev/null || {}", c.describe, c.create)),
                    }
                }
            }
            if self.logins.len() > 1 {
                lines.push("# the logins, all at once:".into());
            }
            lines.extend(self.logins.iter().map(|l| l.line()));
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
        if !self.tag_names_content && !self.builds.is_empty() {
            lines.push("# the tags do not name the content (no {hash}): a tag the registry has, whose answer does not name its platforms, is read back first (docker manifest inspect --verbose REF, after the login) and counts only holding every platform".into());
        }
        if !self.kept.is_empty() {
            lines.push("# each kept image is asked which platforms it offers, beside the questions above: a HEAD for its digest (the platforms remembered by digest), else this command (a warning names each wanted one it lacks):".into());
            lines.extend(
                self.kept
                    .iter()
                    .map(|k| format!("{}   # {}", k.ask, k.wanted.joined())),
            );
        }
        if !self.login_first() && (self.ecr.is_some() || !self.logins.is_empty()) {
            lines.push("# only when something is to be built or pushed:".into());
            setup(&mut lines);
        }
        for b in &self.builds {
            self.build_lines(b, &mut lines);
        }
        let all: Vec<usize> = (0..self.builds.len()).collect();
        self.verify_lines(&mut lines);
        if let Some(bake) = self.bake_of(&all) {
            lines.push(
                "# when two or more of the builds above are to run (no more than --jobs), they run as one bake instead (its targets: those that run):"
                    .into(),
            );
            lines.push(bake.cmd.to_string());
        }
        lines
    }

    /// The read-backs after the pushes: each build that ran, with the
    /// platforms it must hold.
    fn verify_lines(&self, lines: &mut Vec<String>) {
        let checks: Vec<String> = self
            .builds
            .iter()
            .filter_map(|b| {
                let want = self.platforms_of(&b.services[0])?;
                Some(format!("{}   # {}", b.verify, want.joined()))
            })
            .collect();
        if !checks.is_empty() {
            lines.push("# before the rewrite, each build that ran is read back from the registry: it must hold exactly these platforms:".into());
            lines.extend(checks);
        }
    }

    /// The comment lines before a build: built from the app root; staged as
    /// Convox uploads it.
    fn build_notes(&self, b: &Build, lines: &mut Vec<String>) {
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
        if let Some(st) = &b.stage {
            lines.push(format!(
                "# {} as Convox uploads it ({} applied), staged in {} (files hard-linked) and built from there:",
                st.context.display(),
                st.root.join(".dockerignore").display(),
                st.dir.display()
            ));
        }
    }

    /// One build's lines: its stage caches' pulls, the build (with the
    /// cache's pull), its tags and pushes, and the cache's pushes.
    fn build_lines(&self, b: &Build, lines: &mut Vec<String>) {
        self.build_notes(b, lines);
        if let Some(split) = &b.split {
            split_lines(b, split, lines);
            return;
        }
        // The classic builder's stage caches, pulled first.
        let stages = b
            .cache
            .iter()
            .flat_map(|c| &c.stages)
            .filter_map(|s| Some((s, s.pull.as_ref()?)));
        let stage_refs: Vec<&str> = stages.clone().map(|(s, _)| s.reference.as_str()).collect();
        if !stage_refs.is_empty() {
            lines.push(
                "# each cache image, named in --cache-from below only when its pull succeeded:"
                    .into(),
            );
            lines.extend(stages.clone().map(|(_, pull)| format!("{pull} >/dev/null")));
        }
        let with_stages = |c: &Cmd| {
            c.clone()
                .before_last(stage_refs.iter().flat_map(|r| ["--cache-from", r]))
        };
        match b
            .cache
            .as_ref()
            .and_then(|c| c.pull.as_ref().zip(c.build_cached.as_ref()))
        {
            Some((pull, cached)) => lines.push(format!(
                "if {pull} >/dev/null; then {}; else {}; fi",
                with_stages(cached),
                with_stages(&b.build)
            )),
            None => {
                if let Some(c) = b.cache.as_ref().filter(|c| c.stages_first) {
                    stage_lines(&c.stages, &[], lines);
                }
                lines.push(b.build.to_string())
            }
        }
        if b.metadata_file.is_some() {
            // The builder pushed every ref itself.
            return;
        }
        lines.extend(b.tags.iter().map(ToString::to_string));
        lines.extend(b.pushes.iter().map(|(_, p)| p.to_string()));
        if let Some(c) = &b.cache {
            lines.push(format!("{} && {}", c.tag, c.push));
            // The stages' steps come from the same cache images (the
            // classic builder's pulled ones; BuildKit's are in the build).
            let pulled: Vec<&str> = c
                .pull
                .as_ref()
                .map(|_| c.reference.as_str())
                .into_iter()
                .chain(stage_refs.iter().copied())
                .collect();
            if !c.stages_first {
                stage_lines(&c.stages, &pulled, lines);
            }
        }
    }

    /// The dry run's text: what would run, in order, then the rewritten file.
    pub fn dry_run(&self, extra: &DryRun<'_>) -> String {
        let mut text = String::from(
            "# dry run: these commands would run; nothing is run and no file is written\n",
        );
        if let Some(p) = crate::plan::platforms::described(&self.platforms) {
            text.push_str(&format!("# platforms: {p}\n"));
        }
        if !extra.bases.is_empty() {
            text.push_str("# first, each base image is looked up (all at once) and its registry digest goes into the tags, which are shown here without it (as --no-base-digest has them):\n");
            for ((account, region, repository), wanted) in bases::ecr_groups(extra.bases) {
                let tags: Vec<&str> = wanted.iter().map(|(_, t)| t.as_str()).collect();
                let cmd = ecr::batch_get_base_images(&account, &repository, &tags, &region);
                text.push_str(&format!("{cmd}\n"));
            }
            let others = extra.bases.iter().filter(|i| bases::ecr_base(i).is_none());
            for image in others.filter(|i| !i.contains("@sha256:")) {
                text.push_str(&format!("{}\n", docker::registry_lookup(image, None)));
            }
            text.push_str("# a base no registry gives a digest for is pulled after the logins, and the pulled copy's digest goes in (else the run stops):\n");
            text.push_str("# and before the first build on a base the registry identified, its engine copy is checked, and pulled when older than the registry's:\n");
            for image in extra.bases.iter().filter(|i| !i.contains("@sha256:")) {
                text.push_str(&format!(
                    "# {} (then, if stale: {})\n",
                    docker::local_lookup(image),
                    docker::pull(image)
                ));
            }
        }
        if let Some(name) = extra.assumed_builder {
            text.push_str(&format!("# --builder {name}: a dry run asks buildx nothing, so it assumes a builder of its own (not the engine's `docker` driver) with BuildKit 0.12 or later: it pushes each image itself (every ref a -t) and keeps BuildKit's registry cache\n"));
        }
        if let Some(cmd) = &extra.convox_env {
            text.push_str(&format!("# the app's environment, for the ARGs each Dockerfile declares, comes first from: {cmd} (not run in a dry run, so its values are not in the tags shown)\n"));
        }
        if let Some(args) = extra.build_args.filter(|a| !a.is_empty()) {
            for b in &self.builds {
                let origins = args.origins(&b.spec);
                if origins.is_empty() {
                    continue;
                }
                let names: Vec<String> = origins
                    .iter()
                    .map(|(name, from)| format!("{name} ({from})"))
                    .collect();
                text.push_str(&format!(
                    "# the build args of {}, by name (each value goes to docker in its environment, never in an argv): {}\n",
                    b.services.join(", "),
                    names.join(", ")
                ));
            }
        }
        for line in self.script() {
            text.push_str(&line);
            text.push('\n');
        }
        if let Some(step) = &extra.convox_build {
            text.push_str(&step.lines());
        }
        text.push_str(&format!(
            "# {}, rewritten:\n{}",
            self.compose_file.display(),
            self.rewritten
        ));
        text
    }
}

/// A split build's lines: each part's stages, build and push (the parts at
/// once), then each reference's index of the parts.
fn split_lines(b: &Build, split: &crate::plan::Split, lines: &mut Vec<String>) {
    let platforms: Vec<&str> = split.parts.iter().map(|p| p.platform.as_str()).collect();
    lines.push(format!(
        "# {}: the engine keeps one platform per image, so each of {} is built alone (all at once) and pushed to the cache repository, then joined into one index:",
        b.services[0],
        platforms.join(", ")
    ));
    for part in &split.parts {
        stage_lines(&part.stages, &[], lines);
        lines.push(format!("{} && {}", part.build, part.push));
    }
    lines.push("# each part named by the digest its push printed (REPOSITORY-cache@sha256:…), not by its tag:".into());
    for (create, (_, push)) in split.creates.iter().zip(&b.pushes) {
        match create {
            Some((create, remove)) => {
                lines.push(format!("{remove} 2>/dev/null; {create} && {push}"))
            }
            None => lines.push(push.to_string()),
        }
    }
}

/// The stages' cache builds and pushes, each naming the cache images that
/// were pulled (the classic builder's; BuildKit's are in the build).
fn stage_lines(stages: &[crate::plan::StageCache], pulled: &[&str], lines: &mut Vec<String>) {
    for st in stages {
        let build = st
            .build
            .clone()
            .before_last(pulled.iter().flat_map(|r| ["--cache-from", *r]));
        lines.push(format!("{build} && {}", st.push));
    }
}
