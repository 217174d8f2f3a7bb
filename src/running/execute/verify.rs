//! Verified, not assumed: after the pushes and before the rewrite, each
//! build that ran is read back from the registry (its first reference,
//! `docker manifest inspect --verbose`), and must hold exactly the
//! platforms it was built for: an index's entries, or an image's config.
//! An `unknown/unknown` entry (an attestation) is allowed only when
//! attestations were asked for. A mismatch fails the run, naming the
//! service and the wanted and found platforms; the file is left as it was.
//! A build the registry had already is not read again: its tag is the
//! content digest, which covers the platforms.

use super::ask::CHECKS_AT_ONCE;
use super::*;

/// Check every build that ran this time, all at once (as the registry's
/// questions before the builds are asked).
pub fn verify_platforms(plan: &Plan, results: &[BuildResult], opts: RunOptions) -> Result<()> {
    parallel(plan.builds.len(), CHECKS_AT_ONCE, |i| {
        if results[i].outcome == Outcome::UpToDate {
            return Ok(());
        }
        verify_build(plan, &plan.builds[i], opts)
    })
    .map(drop)
}

/// Read one build back: exactly its platforms (a list kept in canonical
/// order, `plan::platforms`), and `unknown/unknown` only when attested.
fn verify_build(plan: &Plan, b: &Build, opts: RunOptions) -> Result<()> {
    let Some(wanted) = plan.platforms_of(&b.services[0]) else {
        return Ok(());
    };
    let (cmd, who) = (&b.verify, &b.services[0]);
    let answer = check(cmd, opts, None)?;
    let found = docker::manifest_platforms(&answer).ok_or_else(|| {
        anyhow!(
            "[{who}] cannot tell the platforms of {} from `{cmd}`: its answer names none; the file is left as it was",
            b.refs[0]
        )
    })?;
    let images: Vec<&String> = found
        .iter()
        .filter(|p| !(plan.attested && p.as_str() == "unknown/unknown"))
        .collect();
    if images.into_iter().ne(wanted.list.iter()) {
        bail!(
            "service `{who}`: the registry holds {} for {}, and it was built for {} ({}); the file is left as it was",
            b.refs[0],
            found.join(", "),
            wanted.joined(),
            wanted.source
        );
    }
    Ok(())
}
