//! Asking the registry which tags it has, before any build: one question per
//! check, all at once (the plain-HTTP registry asked without a process, a
//! repository's tag listing where no digest is wanted), and asked again for
//! one reference when a push says the tag exists.

use super::*;
use crate::plan::platforms::Held;

/// What one check said: an answer per `check.asks`, and what an ECR
/// question showed of the repository (it exists when ECR answered, and does
/// not when ECR said `RepositoryNotFoundException`).
pub(super) struct Asked {
    answers: Vec<Answer>,
    repository: Option<bool>,
}

/// The service whose reference this is (a shared build's later refs belong
/// to later services; the first always to the built one).
pub(super) fn who<'a>(plan: &'a Plan, &(b, r): &(usize, usize)) -> &'a str {
    service_of(&plan.builds[b], r)
}

/// The service whose reference `r` of this build is.
pub(super) fn service_of(build: &Build, r: usize) -> &str {
    build
        .pushes
        .get(r)
        .map_or(build.services[0].as_str(), |(s, _)| s.as_str())
}

/// Does the registry have these references? A clear "no" and an unclear
/// answer both mean build (the latter with a warning that names the
/// service).
pub(super) fn ask(check: &Check, plan: &Plan, opts: RunOptions) -> Result<Asked> {
    let started = Instant::now();
    if let Some(asked) = ask_over_http(check, plan, started) {
        return Ok(asked);
    }
    let out = capture(&check.cmd, opts)?;
    let seconds = started.elapsed().as_secs_f64();
    let answer = |exists: bool, digest: Option<String>| Answer {
        exists,
        digest,
        seconds,
        held: Held::Unknown,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && check.batch {
        return Ok(Asked {
            answers: batch_answers(check, plan, &stdout, &answer),
            repository: Some(true),
        });
    }
    if out.status.success() {
        let digest = answer_digest(&stdout);
        let held = docker::manifest_platforms(&stdout).map_or(Held::Unknown, Held::Platforms);
        return Ok(Asked {
            answers: check
                .asks
                .iter()
                .map(|_| Answer {
                    held: held.clone(),
                    ..answer(true, digest.clone())
                })
                .collect(),
            repository: None,
        });
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = [
        "no such manifest",
        "manifest unknown",
        "RepositoryNotFoundException",
        "not found",
    ];
    if !missing.iter().any(|m| stderr.contains(m)) {
        warn_unclear(check, plan, &stderr);
    }
    Ok(Asked {
        answers: check.asks.iter().map(|_| answer(false, None)).collect(),
        repository: (check.batch && ecr::is_repository_not_found(&stderr)).then_some(false),
    })
}

/// A plain-HTTP registry asked without a process (`running::registry`);
/// None when it did not answer plainly (the command runs then).
pub(super) fn ask_over_http(check: &Check, plan: &Plan, started: Instant) -> Option<Asked> {
    if !check.plain_http || check.batch {
        return None;
    }
    let &(b, r) = check.asks.first()?;
    let said = crate::running::registry::ask(&plan.builds[b].refs[r])?;
    let seconds = started.elapsed().as_secs_f64();
    Some(Asked {
        answers: vec![Answer {
            exists: said.exists,
            digest: said.digest,
            seconds,
            held: Held::Unknown,
        }],
        repository: None,
    })
}

/// One plain-HTTP repository's listing: its host, its name, its tags (None
/// when not answered plainly), and how long the listing took.
pub(super) type Listing = (String, String, Option<Vec<String>>, f64);

/// The tags of each plain-HTTP repository the checks ask about, one
/// listing each, all at once (`running::registry`).
pub(super) fn list_repositories(plan: &Plan) -> Vec<Listing> {
    let mut repos: Vec<(String, String)> = Vec::new();
    for c in plan.checks.iter().filter(|c| c.plain_http && !c.batch) {
        for &(b, r) in &c.asks {
            if let Some((host, repo, _)) = crate::running::registry::split(&plan.builds[b].refs[r])
            {
                let key = (host.to_string(), repo.to_string());
                if !repos.contains(&key) {
                    repos.push(key);
                }
            }
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = repos
            .iter()
            .map(|(h, r)| {
                s.spawn(move || {
                    let started = Instant::now();
                    let tags = crate::running::registry::list_tags(h, r);
                    (tags, started.elapsed().as_secs_f64())
                })
            })
            .collect();
        repos
            .iter()
            .zip(handles)
            .map(|((h, r), t)| {
                let (tags, seconds) = t.join().unwrap_or((None, 0.0));
                (h.clone(), r.clone(), tags, seconds)
            })
            .collect()
    })
}

/// A plain-HTTP check answered from its repository's listing; None when
/// that listing has no answer.
pub(super) fn from_listing(check: &Check, plan: &Plan, listed: &[Listing]) -> Option<Asked> {
    if !check.plain_http || check.batch {
        return None;
    }
    let answers = check
        .asks
        .iter()
        .map(|&(b, r)| {
            let (host, repo, tag) = crate::running::registry::split(&plan.builds[b].refs[r])?;
            let (_, _, tags, seconds) =
                listed.iter().find(|(h, p, _, _)| h == host && p == repo)?;
            Some(Answer {
                exists: tags.as_ref()?.iter().any(|t| t == tag),
                digest: None,
                seconds: *seconds,
                held: Held::Unknown,
            })
        })
        .collect::<Option<Vec<Answer>>>()?;
    Some(Asked {
        answers,
        repository: None,
    })
}

/// Each tag's answer in ECR's `batch-get-image` JSON.
pub(super) fn batch_answers(
    check: &Check,
    plan: &Plan,
    stdout: &str,
    answer: &dyn Fn(bool, Option<String>) -> Answer,
) -> Vec<Answer> {
    check
        .asks
        .iter()
        .map(|ask| {
            let reference = &plan.builds[ask.0].refs[ask.1];
            let tag = crate::plan::tag_of(reference);
            match ecr::batch_answer(stdout, tag) {
                ecr::TagAnswer::Found(digest) => Answer {
                    held: ecr::batch_manifest(stdout, tag)
                        .map_or(Held::Unknown, |m| Held::of_manifest(&m)),
                    ..answer(true, digest)
                },
                ecr::TagAnswer::NotFound => answer(false, None),
                ecr::TagAnswer::Unknown(why) => {
                    log(&format!(
                        "[{}] warning: cannot tell whether {reference} exists ({why}); building it. Command: {}",
                        who(plan, ask),
                        check.cmd
                    ));
                    answer(false, None)
                }
            }
        })
        .collect()
}

/// A failed check that did not say "not found": say so, naming the
/// services it leaves unknown.
pub(super) fn warn_unclear(check: &Check, plan: &Plan, stderr: &str) {
    let why = tail_of(stderr);
    let why = why.last().map_or("no output", String::as_str);
    let line = if check.batch {
        let names: Vec<&str> = check.asks.iter().map(|a| who(plan, a)).collect();
        format!(
            "[{}] warning: cannot tell which tags exist ({why}); building them. Command: {}",
            names.join(", "),
            check.cmd
        )
    } else {
        format!(
            "[{}] warning: cannot tell whether the tag exists ({why}); building it. Command: {}",
            check.asks.first().map_or("?", |a| who(plan, a)),
            check.cmd
        )
    };
    log(&line);
}

/// The digest in `docker manifest inspect --verbose` JSON (`Descriptor.digest`).
pub fn answer_digest(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let found = v.pointer("/Descriptor/digest")?;
    found
        .as_str()
        .filter(|d| d.starts_with("sha256:"))
        .map(String::from)
}

/// The digest of a local image under `reference`, from its RepoDigests.
pub(super) fn local_digest(reference: &str, opts: RunOptions) -> Option<String> {
    let out = capture(&docker::repo_digests(reference), opts).ok()?;
    let list: Vec<String> = serde_json::from_slice(&out.stdout).ok()?;
    let repo = reference.rsplit_once(':').map_or(reference, |(r, _)| r);
    list.iter()
        .find_map(|d| d.strip_prefix(&format!("{repo}@")).map(String::from))
}

/// How many registry questions run at once. Each is a process that waits
/// on the network, not on this machine, so the pool is sized for latency,
/// not for cores (one `docker manifest inspect` takes ~0.1 s, nearly all of
/// it waiting).
pub(super) const CHECKS_AT_ONCE: usize = 32;

/// What the registry said of every reference of a plan, before any build:
/// per build, an answer per reference; and what an ECR question showed of
/// the repository.
pub struct Answers {
    pub(super) per_build: Vec<Vec<Answer>>,
    pub(super) repository: Option<bool>,
    /// ECR's set-up and login ran already (to read tags back).
    pub(super) logged_in: bool,
}

impl Answers {
    /// Is there anything to build or push (a reference the registry lacks)?
    pub fn work(&self) -> bool {
        self.per_build.iter().any(|a| a.iter().any(|a| !a.exists))
    }
}

/// Ask the registry what it has, every check at once (with `--force`,
/// nothing is asked: everything is built). The plan's build commands are
/// not read: the references and the checks are the same whichever builder
/// builds, so this may run on a plan made before the builder answered.
/// The programs the plan needs, named before anything runs.
pub fn require_programs(plan: &Plan) -> Result<()> {
    if plan.needs_docker() {
        run::require_program("docker", "to build and push the images")?;
    }
    if plan.needs_aws() {
        run::require_program("aws", "to set up and log in to ECR")?;
    }
    Ok(())
}

pub fn ask_registry(plan: &Plan, opts: RunOptions) -> Result<Answers> {
    // Everything that can fail before a build, checked before it: each
    // context and Dockerfile was read for the digest, and the output was
    // found writable when its lock was taken (`lock::lock`).
    require_programs(plan)?;
    if plan.login_first() {
        set_up_and_log_in(plan, None, opts)?;
    }
    let names: Vec<&str> = plan
        .services
        .iter()
        .filter(|s| !matches!(s.action, crate::plan::Action::Kept { .. }))
        .map(|s| s.name.as_str())
        .collect();
    progress::waiting(&names);
    let mut answers = Answers {
        per_build: plan
            .builds
            .iter()
            .map(|b| vec![Answer::default(); b.refs.len()])
            .collect(),
        repository: None,
        logged_in: false,
    };
    if opts.force {
        return Ok(answers);
    }
    let listed = if opts.registry_digests {
        Vec::new()
    } else {
        list_repositories(plan)
    };
    let asked = parallel(plan.checks.len(), CHECKS_AT_ONCE, |k| {
        let check = &plan.checks[k];
        match from_listing(check, plan, &listed) {
            Some(asked) => Ok(asked),
            None => ask(check, plan, opts),
        }
    })?;
    for (check, asked) in plan.checks.iter().zip(asked) {
        answers.repository = answers.repository.or(asked.repository);
        for (&(b, r), a) in check.asks.iter().zip(asked.answers) {
            answers.per_build[b][r] = a;
        }
    }
    confirm_platforms(plan, &mut answers, opts)?;
    lacking_platforms(plan, &mut answers);
    Ok(answers)
}

/// A tag that does not name the content (a `--tag` without `{hash}`),
/// which the registry has but whose answer did not name its platforms
/// (ECR's answer for one image, a tag listing): read back with `docker
/// manifest inspect --verbose` (after ECR's set-up and login, which the
/// run then does not repeat), all at once, so that a tag another run pushed
/// for other platforms (another rack, the same commit) is not taken for
/// this build's. One the registry will not describe is built.
fn confirm_platforms(plan: &Plan, answers: &mut Answers, opts: RunOptions) -> Result<()> {
    if plan.tag_names_content {
        return Ok(());
    }
    let unsure: Vec<(usize, usize)> = answers
        .per_build
        .iter()
        .enumerate()
        .flat_map(|(b, a)| {
            a.iter()
                .enumerate()
                .filter(|(_, a)| a.exists && !matches!(a.held, Held::Platforms(_)))
                .map(move |(r, _)| (b, r))
        })
        .collect();
    if unsure.is_empty() {
        return Ok(());
    }
    if plan.ecr.is_some() && !plan.login_first() {
        set_up_and_log_in(plan, answers.repository, opts)?;
        answers.logged_in = true;
    }
    let said = parallel(unsure.len(), CHECKS_AT_ONCE, |k| {
        let cmd = read_back(plan, unsure[k]);
        // A question that fails leaves the tag unknown: it is built.
        Ok(read_platforms(plan, unsure[k], &cmd, opts))
    })?;
    for (&(b, r), platforms) in unsure.iter().zip(said) {
        let a = &mut answers.per_build[b][r];
        let why = match platforms {
            Ok(Some(list)) => {
                a.held = Held::Platforms(list);
                continue;
            }
            Ok(None) => format!("`{}` names none", read_back(plan, (b, r))),
            Err(e) => format!("{e:#}"),
        };
        log(&format!(
            "[{}] warning: cannot tell which platforms {} holds ({why}); building it",
            service_of(&plan.builds[b], r),
            plan.builds[b].refs[r],
        ));
        a.exists = false;
        a.digest = None;
    }
    Ok(())
}

/// The platforms the registry holds under reference `r` of build `b`:
/// asked by this program itself where that registry is plain HTTP (as the
/// tag questions are: `running::registry`), else by `cmd` (a `docker
/// manifest inspect --verbose`), whose failure is an error; None when the
/// answer names no platform. The read-back after the pushes and the check
/// of a tag that does not name its content both ask this way.
pub(super) fn read_platforms(
    plan: &Plan,
    (b, r): (usize, usize),
    cmd: &crate::programs::command::Cmd,
    opts: RunOptions,
) -> Result<Option<Vec<String>>> {
    let plain = plan
        .checks
        .iter()
        .any(|c| c.plain_http && c.asks.contains(&(b, r)));
    let reference = &plan.builds[b].refs[r];
    if let Some(found) = plain
        .then(|| crate::running::registry::platforms(reference))
        .flatten()
    {
        return Ok(Some(found));
    }
    let answer = check(cmd, opts, None)?;
    Ok(docker::manifest_platforms(&answer))
}

/// The question that names a reference's platforms, where the registry is
/// not asked directly: its check's own `docker manifest inspect
/// --verbose`, or, where ECR's API asked, one of the same (ECR answers it
/// once logged in).
fn read_back(plan: &Plan, (b, r): (usize, usize)) -> crate::programs::command::Cmd {
    let reference = &plan.builds[b].refs[r];
    match plan.checks.iter().find(|c| c.asks.contains(&(b, r))) {
        Some(c) if !c.batch => c.cmd.clone(),
        _ => docker::manifest_inspect(reference, false),
    }
}

/// A tag counts as up to date only when it holds every platform its build
/// wants (as far as the answer says: `Held::covers`); one that lacks some
/// is built again, with a line saying what it holds.
fn lacking_platforms(plan: &Plan, answers: &mut Answers) {
    for (b, build) in plan.builds.iter().enumerate() {
        let Some(wanted) = plan.platforms_of(&build.services[0]) else {
            continue;
        };
        for (r, a) in answers.per_build[b].iter_mut().enumerate() {
            if a.exists && !a.held.covers(&wanted.list) {
                log(&format!(
                    "[{}] {} is in the registry, but holds {}, not every platform of {}: building it",
                    service_of(build, r),
                    build.refs[r],
                    a.held.described(),
                    wanted.joined()
                ));
                a.exists = false;
                a.digest = None;
            }
        }
    }
}

/// Ask the registry again about one reference (build, index), with the
/// check that asked about it first.
pub(super) fn recheck(plan: &Plan, at: (usize, usize), opts: RunOptions) -> Option<Answer> {
    let check = plan.checks.iter().find(|c| c.asks.contains(&at))?;
    let k = check.asks.iter().position(|a| *a == at)?;
    ask(check, plan, opts).ok()?.answers.into_iter().nth(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_from_a_verbose_manifest() {
        let docker = r#"{"Ref":"r","Descriptor":{"mediaType":"m","digest":"sha256:def","size":1}}"#;
        assert_eq!(answer_digest(docker).as_deref(), Some("sha256:def"));
        assert_eq!(answer_digest("[]"), None);
        assert_eq!(answer_digest("not json"), None);
    }
}
