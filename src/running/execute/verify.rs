//! Verified, not assumed: after the pushes and before the rewrite, each
//! build that ran is read back from the registry (its first reference,
//! `docker manifest inspect --verbose`), and must hold exactly the
//! platforms it was built for: an index's entries, or an image's config.
//! An `unknown/unknown` entry (an attestation) is allowed only when
//! attestations were asked for. A mismatch fails the run, naming the
//! service and the wanted and found platforms; the file is left as it was.
//! A build the registry had already is not read again: its tag is the
//! content digest, which covers the platforms.

use super::*;

/// Check every build that ran this time.
pub fn verify_platforms(plan: &Plan, results: &[BuildResult], opts: RunOptions) -> Result<()> {
    for (b, r) in plan.builds.iter().zip(results) {
        if r.outcome == Outcome::UpToDate {
            continue;
        }
        let Some(wanted) = plan.platforms_of(&b.services[0]) else {
            continue;
        };
        let cmd = &b.verify;
        let who = &b.services[0];
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
        let mut want: Vec<&String> = wanted.list.iter().collect();
        want.sort();
        if images != want {
            bail!(
                "service `{who}`: the registry holds {} for {}, and it was built for {} ({}); the file is left as it was",
                b.refs[0],
                found.join(", "),
                wanted.joined(),
                wanted.source
            );
        }
    }
    Ok(())
}
