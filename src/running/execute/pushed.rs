//! An image built by a builder that pushes it itself (a buildx driver but
//! `docker`): the build is the push, every ref a `-t`; its digest is read
//! from the build's `--metadata-file`.

use super::*;

/// A build on a builder that pushes itself: the build is the push (every
/// ref a `-t`), the digest comes from its metadata file, and nothing lands
/// in the engine, so there is nothing to tag, push or make current here.
pub(super) fn built_and_pushed_by_builder(
    b: &Build,
    metadata: &std::path::Path,
    mut result: BuildResult,
    steps: &Steps<'_>,
    opts: RunOptions,
) -> Result<BuildResult> {
    let who = &b.services[0];
    let started = Instant::now();
    progress::state(who, "building and pushing");
    let (built, written) = stream_with_metadata(&b.build, who, metadata, opts);
    if let Err(e) = built {
        if pushed_by_another_run(b, &mut result, &e, steps, 0..b.refs.len()) {
            result.build_seconds = started.elapsed().as_secs_f64();
            report_built(b, &result);
            return Ok(result);
        }
        return Err(e);
    }
    let digest = written.as_deref().and_then(buildx::metadata_digest);
    if digest.is_none() {
        log(&format!(
            "[{who}] warning: the builder wrote no image digest to {}; the report has none",
            metadata.display()
        ));
    }
    for d in &mut result.digests {
        *d = digest.clone();
    }
    result.build_seconds = started.elapsed().as_secs_f64();
    report_built(b, &result);
    Ok(result)
}

/// Run a build that writes `--metadata-file` `metadata`: its result, and
/// what it wrote there (the file is removed, on an interrupt too).
pub(super) fn stream_with_metadata(
    cmd: &Cmd,
    who: &str,
    metadata: &std::path::Path,
    opts: RunOptions,
) -> (Result<Vec<String>>, Option<String>) {
    interrupt::track_temp_file(metadata.to_path_buf());
    let built = stream(cmd, who, opts);
    let written = std::fs::read_to_string(metadata).ok();
    let _ = std::fs::remove_file(metadata);
    interrupt::untrack_temp_file(metadata);
    (built, written)
}
