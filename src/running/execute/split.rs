//! A build for several platforms on the engine's BuildKit (`plan::Split`):
//! each platform's part built and pushed to the cache repository, all at
//! once (the engine runs builds side by side, and an emulated platform's
//! slow steps overlap the native one's), then joined into one index under
//! each reference the registry lacks (`docker buildx imagetools create`, or
//! `docker manifest create` and `push`), the parts named by the digests
//! their pushes printed (a later run's push to the same part tag cannot
//! change what this index holds).

use super::*;
use crate::plan::{Part, Split};
use crate::programs::command::Cmd;

/// Build the parts, then push each missing reference as their index.
pub(super) fn run_split(
    b: &Build,
    split: &Split,
    mut result: BuildResult,
    steps: &Steps<'_>,
    opts: RunOptions,
) -> Result<BuildResult> {
    let who = &b.services[0];
    let started = Instant::now();
    progress::state(who, "building");
    for &k in &b.bases {
        (steps.make_current)(k)?;
    }
    let parts = &split.parts;
    let digests = parallel(parts.len(), parts.len(), |i| {
        build_part(who, &parts[i], opts)
    })?;
    result.build_seconds = started.elapsed().as_secs_f64();
    for (i, (service, push_cmd)) in b.pushes.iter().enumerate() {
        if result.existed[i] {
            continue;
        }
        progress::state(service, "pushing");
        let started = Instant::now();
        let named = |c: &Cmd| {
            parts.iter().zip(&digests).fold(c.clone(), |c, (part, d)| {
                c.replace_arg(&part.reference, &by_digest(&part.reference, d))
            })
        };
        if let Some((create, remove)) = &split.creates[i] {
            // A list a stopped run left would make `create` refuse.
            let _ = capture(remove, opts);
            check(&named(create), opts, None)?;
        }
        match push(&named(push_cmd), service, opts).map_err(|e| mounting_hint(e, &b.refs[i])) {
            Ok(digest) => result.digests[i] = digest,
            Err(e) if pushed_by_another_run(b, &mut result, &e, steps, i..i + 1) => {}
            Err(e) => return Err(e),
        }
        result.push_seconds[i] = started.elapsed().as_secs_f64();
    }
    report_built(b, &result);
    Ok(result)
}

/// One platform's part: its stages' cache images first, then its build,
/// pushed to the cache repository; the digest that push printed.
fn build_part(who: &str, part: &Part, opts: RunOptions) -> Result<String> {
    let prefix = format!("{who} {}", part.platform);
    push_stage_caches_of(&part.stages, &prefix, &[], opts);
    stream(&part.build, &prefix, opts)?;
    push(&part.push, &prefix, opts)?.ok_or_else(|| {
        anyhow!(
            "[{prefix}] `{}` printed no digest, and the index names each part by its digest",
            part.push
        )
    })
}

/// `docker manifest push` only mounts each part into the index's
/// repository: a registry that will not mount (ECR without its blob
/// mounting setting) fails it; say what to do.
fn mounting_hint(e: anyhow::Error, reference: &str) -> anyhow::Error {
    if !format!("{e:#}").contains("error mounting") {
        return e;
    }
    e.context(format!(
        "the registry would not mount the parts into {reference}'s repository; on ECR turn blob mounting on (aws ecr put-account-setting --name BLOB_MOUNTING --value ENABLED), or give this machine's docker the buildx plugin, whose `imagetools create` copies them"
    ))
}

/// `HOST/REPOSITORY:TAG` as `HOST/REPOSITORY@DIGEST`.
fn by_digest(reference: &str, digest: &str) -> String {
    let name = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => reference,
    };
    format!("{name}@{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_named_by_its_digest_in_its_own_repository() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            by_digest("127.0.0.1:5000/app-cache:app_web.linux-arm64", &d),
            format!("127.0.0.1:5000/app-cache@{d}")
        );
        assert_eq!(
            by_digest("127.0.0.1:5000/app-cache", &d),
            format!("127.0.0.1:5000/app-cache@{d}")
        );
    }
}
