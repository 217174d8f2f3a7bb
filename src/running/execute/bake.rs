//! Several builds on a builder that pushes itself, run as one `docker buildx
//! bake`: each target's digest from the bake's metadata file; an immutable
//! refusal falls back to each build alone.

use super::*;

/// The builds that run (`needed`, each of them a target), as one bake on
/// the builder that pushes itself; every other build is up to date. Each
/// built one's digest comes from the bake's metadata file, by target. When
/// the bake fails because another run pushed one of its tags first (an
/// immutable repository), None: each build then runs alone, where that
/// tag counts as pushed and the others build again, from the cache.
pub(super) fn run_bake(
    plan: &Plan,
    needed: &[usize],
    run: &crate::plan::BakeRun,
    answers: &Answers,
    opts: RunOptions,
) -> Result<Option<Vec<BuildResult>>> {
    let started = Instant::now();
    for &i in needed {
        progress::state(
            &plan.builds[i].services[0],
            "building and pushing (one bake)",
        );
    }
    let (built, written) = stream_with_metadata(&run.cmd, "bake", &run.metadata_file, opts);
    if let Err(e) = built {
        if !interrupt::cancelled() && ecr::is_immutable_refusal(&format!("{e:#}")) {
            log("the bake stopped on a tag another run pushed first; each build runs alone");
            return Ok(None);
        }
        return Err(e);
    }
    progress::done(
        "bake",
        &format!(
            "{} builds in {:.1} s",
            needed.len(),
            started.elapsed().as_secs_f64()
        ),
    );
    let mut results = Vec::new();
    for (i, b) in plan.builds.iter().enumerate() {
        let mut result = BuildResult::before(b, &answers.per_build[i]);
        let Some(k) = needed.iter().position(|&n| n == i) else {
            results.push(up_to_date(b, result));
            continue;
        };
        let digest = written
            .as_deref()
            .and_then(|w| buildx::bake_digest(w, &run.names[k]));
        if digest.is_none() {
            log(&format!(
                "[{}] warning: the bake wrote no image digest for target {}; the report has none",
                b.services[0], run.names[k]
            ));
        }
        result.digests = vec![digest; b.refs.len()];
        result.build_seconds = started.elapsed().as_secs_f64();
        report_built(b, &result);
        results.push(result);
    }
    Ok(Some(results))
}
