//! Verified, not assumed: after the pushes and before the rewrite, each
//! build that ran is read back from the registry (its first reference,
//! `docker manifest inspect --verbose`, or the same requests made by this
//! program on a plain-HTTP registry), and must hold exactly the
//! platforms it was built for: an index's entries, or an image's config.
//! An `unknown/unknown` entry (an attestation) is allowed only when
//! attestations were asked for. A mismatch fails the run, naming the
//! service and the wanted and found platforms; the file is left as it was.
//! A build the registry had already is not read again: its tag is the
//! content digest, which covers the platforms.
//!
//! Each kept image (`image:`) is asked too, while the builds run: Convox
//! runs it on the rack's nodes as it is, so a wanted platform it lacks is a
//! warning naming the service (a question that fails is a note: private
//! registries may need a login this run does not have).

use super::ask::{read_platforms, CHECKS_AT_ONCE};
use super::*;

/// Check every build that ran this time, all at once (as the registry's
/// questions before the builds are asked).
pub fn verify_platforms(plan: &Plan, results: &[BuildResult], opts: RunOptions) -> Result<()> {
    parallel(plan.builds.len(), CHECKS_AT_ONCE, |i| {
        if results[i].outcome == Outcome::UpToDate {
            return Ok(());
        }
        verify_build(plan, i, opts)
    })
    .map(drop)
}

/// Read one build back: exactly its platforms (a list kept in canonical
/// order, `plan::platforms`), and `unknown/unknown` only when attested.
fn verify_build(plan: &Plan, i: usize, opts: RunOptions) -> Result<()> {
    let b = &plan.builds[i];
    let Some(wanted) = plan.platforms_of(&b.services[0]) else {
        return Ok(());
    };
    let (cmd, who) = (&b.verify, &b.services[0]);
    let found = read_platforms(plan, (i, 0), cmd, opts)?.ok_or_else(|| {
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

/// How long a kept image's registry gets to answer: the run waits for it
/// after the builds (a registry that drops packets would hold it longer).
const KEPT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Ask each kept image which platforms it offers, all at once: a warning
/// for each wanted one it lacks, a note for one that did not say; the lines
/// are returned, to be shown once the run gets there (a usage error found
/// meanwhile stays the only line).
pub fn check_kept_images(kept: &[crate::plan::KeptCheck], opts: RunOptions) -> Vec<String> {
    let said: Vec<std::sync::Mutex<Option<String>>> =
        kept.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let _ = parallel(kept.len(), CHECKS_AT_ONCE, |i| {
        let line = check_kept(&kept[i], opts);
        if let Ok(mut slot) = said[i].lock() {
            *slot = line;
        }
        Ok(())
    });
    said.into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect()
}

/// [`check_kept_images`] on a thread of its own, started with the
/// registry's questions (it needs nothing they answer); joined, and its
/// lines shown, after the builds.
pub fn start_kept_check(
    kept: Vec<crate::plan::KeptCheck>,
    opts: RunOptions,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || check_kept_images(&kept, opts))
}

/// The platforms a plain-HTTP registry's kept image offers, asked directly:
/// a `HEAD` for its digest, then the cache, else a `GET` (remembered).
fn plain_platforms(image: &str) -> Option<Vec<String>> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let reference = if last.contains(':') || last.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    };
    let digest = crate::running::registry::ask(&reference)?.digest?;
    remembered(&digest, || crate::running::registry::platforms(&reference))
}

/// The platforms an HTTPS registry's kept image offers
/// (`running::https_registry`): a `HEAD` for its digest, then the cache,
/// else a `GET` by that digest (remembered).
fn https_platforms(image: &str) -> Option<Vec<String>> {
    use crate::running::https_registry as https;
    let img = https::locate(image).filter(|i| !https::has_own_certs(&i.registry))?;
    let deadline = std::time::Instant::now() + HTTPS_LIMIT;
    let answer = https::digest(&img, deadline)?;
    remembered(&answer.digest, || https::platforms(&img, &answer, deadline))
}

/// How long the `HEAD` (and `GET`) of an HTTPS registry may take in all
/// before `docker manifest inspect` is asked instead.
const HTTPS_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The platforms remembered for a digest, else read (and remembered).
fn remembered(digest: &str, read: impl FnOnce() -> Option<Vec<String>>) -> Option<Vec<String>> {
    if let Some(known) = crate::running::kept_cache::get(digest) {
        return Some(known);
    }
    let found = read()?;
    crate::running::kept_cache::put(digest, &found);
    Some(found)
}

/// One kept image: a warning when it lacks a wanted platform, a note when
/// its registry did not say.
fn check_kept(k: &crate::plan::KeptCheck, opts: RunOptions) -> Option<String> {
    // A reference pinned `@sha256:` names its manifest: nothing to ask
    // when its platforms are remembered.
    let pinned = k.image.split_once('@').map(|(_, digest)| digest);
    if let Some(known) = pinned.and_then(crate::running::kept_cache::get) {
        return lacking(k, &known);
    }
    let asked = if k.plain {
        plain_platforms(&k.image)
    } else {
        https_platforms(&k.image)
    };
    if let Some(offered) = asked {
        return lacking(k, &offered);
    }
    let answer = match crate::running::run::capture_within(&k.ask, opts, KEPT_LIMIT) {
        Some(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Some(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = tail_of(&stderr);
            return Some(format!(
                "note: the registry of {} (service `{}`) did not say which platforms it offers ({}); not checked",
                k.image,
                k.service,
                why.last().map_or("no output", String::as_str)
            ));
        }
        None => {
            return Some(format!(
                "note: {} (service `{}`) did not say which platforms it offers within {} s; not checked",
                k.image,
                k.service,
                KEPT_LIMIT.as_secs()
            ));
        }
    };
    lacking(k, &docker::manifest_platforms(&answer)?)
}

/// The warning for each wanted platform a kept image lacks (an answer that
/// names none says nothing).
fn lacking(k: &crate::plan::KeptCheck, offered: &[String]) -> Option<String> {
    if offered.is_empty() {
        return None;
    }
    let lacking: Vec<&str> = k
        .wanted
        .list
        .iter()
        .filter(|w| !offered.contains(w))
        .map(String::as_str)
        .collect();
    (!lacking.is_empty()).then(|| {
        format!(
            "warning: service `{}` keeps image {}, which offers {} and not {}: Convox runs it on {} nodes ({}), where it cannot start (exec format error)",
            k.service,
            k.image,
            offered.join(", "),
            lacking.join(", "),
            k.wanted.joined(),
            k.wanted.source
        )
    })
}
