//! An image built in the engine, then tagged and pushed: the classic
//! builder and BuildKit in the engine. The cache images pulled first (the
//! classic builder), the bases made current, the build, the missing tags
//! pushed (or tagged from a local image without a build), the registry
//! cache and each stage's cache image.

use super::*;

/// The build to run: under the classic builder with a registry cache, the
/// one that names the service's last image as its cache source when that
/// image could be pulled (the first build of a service has none; naming a
/// missing image would turn off the engine's own cache).
/// The build's command, with each cache image that pulled named in
/// `--cache-from` (naming one the engine does not have would turn the
/// engine's own cache off); and those images, for the stages' builds.
pub(super) fn build_command(b: &Build, opts: RunOptions) -> (Cmd, Vec<String>) {
    let Some(c) = &b.cache else {
        return (b.build.clone(), Vec::new());
    };
    let pulled = |pull: &Cmd| capture(pull, opts).is_ok_and(|o| o.status.success());
    let mut from: Vec<String> = Vec::new();
    let base = match (&c.pull, &c.build_cached) {
        (Some(pull), Some(cached)) if pulled(pull) => {
            from.push(c.reference.clone());
            cached.clone()
        }
        _ => b.build.clone(),
    };
    let stages: Vec<String> = c
        .stages
        .iter()
        .filter(|s| s.pull.as_ref().is_some_and(pulled))
        .map(|s| s.reference.clone())
        .collect();
    let cmd = base.before_last(stages.iter().flat_map(|r| ["--cache-from", r.as_str()]));
    from.extend(stages);
    (cmd, from)
}

/// Each stage the target needs, built with `--target` and pushed (after
/// the build under the classic builder, before it under the engine's
/// BuildKit); a failure costs the next build only speed.
/// The stage's steps come from the same cache images as the build's
/// (`pulled`): a pulled image's layers have no parents in the engine, so
/// without them the stage would be built again.
pub(super) fn push_stage_caches(b: &Build, pulled: &[String], opts: RunOptions) {
    let stages = b.cache.iter().flat_map(|c| &c.stages);
    push_stage_caches_of(stages, &b.services[0], pulled, opts);
}

/// One build: skip it when the registry has every tag; push only the
/// missing tags, without a build when the image is here already.
pub(super) fn run_build(
    b: &Build,
    answers: &[Answer],
    steps: &Steps<'_>,
    opts: RunOptions,
) -> Result<BuildResult> {
    let who = &b.services[0];
    let mut result = BuildResult::before(b, answers);
    let existed = result.existed.clone();
    if existed.iter().all(|&e| e) {
        return Ok(up_to_date(b, result));
    }
    if let Some(metadata) = &b.metadata_file {
        return built_and_pushed_by_builder(b, metadata, result, steps, opts);
    }
    if let Some(split) = &b.split {
        return super::split::run_split(b, split, result, steps, opts);
    }
    if existed.iter().any(|&e| e) && tag_from_local(b, &mut result, steps, opts)? {
        result.outcome = Outcome::Completed;
        return Ok(result);
    }
    let started = Instant::now();
    progress::state(who, "building");
    for &k in &b.bases {
        (steps.make_current)(k)?;
    }
    let (build, pulled) = build_command(b, opts);
    // The engine's BuildKit builds the stages' cache images first (the
    // plan says so: `CachePush::stages_first`).
    let stages_first = b.cache.as_ref().is_some_and(|c| c.stages_first);
    if stages_first {
        push_stage_caches(b, &pulled, opts);
    }
    stream(&build, who, opts)?;
    for t in &b.tags {
        check(t, opts, None)?;
    }
    result.build_seconds = started.elapsed().as_secs_f64();
    push_missing(b, &mut result, steps, opts)?;
    if let Some(c) = &b.cache {
        // The next build's cache source; a failure here costs only speed.
        progress::state(who, "pushing the cache");
        let pushed = check(&c.tag, opts, None).and_then(|_| push(&c.push, who, opts).map(|_| ()));
        if let Err(e) = pushed {
            log(&format!(
                "[{who}] warning: the registry cache {} was not updated ({e:#}); the next build of {who} starts without it",
                c.reference
            ));
        }
        if !stages_first {
            push_stage_caches(b, &pulled, opts);
        }
    }
    report_built(b, &result);
    Ok(result)
}

/// Push each reference the registry does not have. A push refused because
/// another run pushed the tag first to an immutable repository counts as
/// pushed.
pub(super) fn push_missing(
    b: &Build,
    result: &mut BuildResult,
    steps: &Steps<'_>,
    opts: RunOptions,
) -> Result<()> {
    for (i, (service, p)) in b.pushes.iter().enumerate() {
        if result.existed[i] {
            continue;
        }
        progress::state(service, "pushing");
        let started = Instant::now();
        match push(p, service, opts) {
            Ok(digest) => result.digests[i] = digest,
            Err(e) if pushed_by_another_run(b, result, &e, steps, i..i + 1) => {}
            Err(e) => return Err(e),
        }
        result.push_seconds[i] = started.elapsed().as_secs_f64();
    }
    Ok(())
}

/// Some tags exist: when the engine has the image under one of its
/// references, tag and push the missing ones from it, without a build.
/// False when the engine has none of them.
pub(super) fn tag_from_local(
    b: &Build,
    result: &mut BuildResult,
    steps: &Steps<'_>,
    opts: RunOptions,
) -> Result<bool> {
    let mut local = None;
    for r in &b.refs {
        if capture(&docker::image_present(r), opts)?.status.success() {
            local = Some(r.clone());
            break;
        }
    }
    let Some(source) = local else {
        return Ok(false);
    };
    for (i, r) in b.refs.iter().enumerate() {
        if !result.existed[i] && *r != source {
            check(&docker::tag(&source, r), opts, None)?;
        }
    }
    push_missing(b, result, steps, opts)?;
    Ok(true)
}

/// Make the engine's copy of a base the registry's before a build on it:
/// ask the engine (`refresh.inspect`) and, when its copy is older, pull.
/// A failed pull fails the build: the tag names the registry's base.
pub(super) fn make_current(refresh: &Refresh, opts: RunOptions) -> Result<()> {
    let local = run::capture(&refresh.inspect, opts)?;
    let line = String::from_utf8_lossy(&local.stdout);
    if !refresh.stale(local.status.success().then_some(line.as_ref())) {
        return Ok(());
    }
    run::check(&refresh.pull, opts, None).map(|_| ()).map_err(|e| {
        e.context(format!(
            "base image {}: the engine's copy is older than the registry's ({}), which the tags were made with, and pulling it failed",
            refresh.image, refresh.digests
        ))
    })
}
