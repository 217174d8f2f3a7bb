//! Executing a plan: set up and log in to ECR, ask the registry which tags
//! it has, build and push the rest in parallel, and write the file only when
//! everything has succeeded.

use crate::plan::refresh::Refresh;
use crate::plan::{Build, CacheRepository, Check, Output, Plan};
use crate::programs::buildx;
use crate::programs::command::Cmd;
use crate::programs::docker;
use crate::programs::ecr;
use crate::running::interrupt;
use crate::running::output;
use crate::running::progress;
use crate::running::run::{self, capture, check, log, push, stream, tail_of, RunOptions};
use anyhow::{anyhow, bail, Result};
use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

/// What happened to one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Built, and its missing tags pushed.
    Built,
    /// Every tag was in the registry: neither built nor pushed.
    UpToDate,
    /// Some tags were there; the image was present locally, so the missing
    /// tags were tagged and pushed without a build.
    Completed,
}

/// What the registry said of one reference.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub exists: bool,
    /// The image digest, when the answer carries it.
    pub digest: Option<String>,
    pub seconds: f64,
}

/// The result of one build.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub outcome: Outcome,
    /// Per reference (as `Build::refs`): was it already in the registry?
    pub existed: Vec<bool>,
    /// Per reference: its image digest (`sha256:…`), when known.
    pub digests: Vec<Option<String>>,
    pub check_seconds: f64,
    pub build_seconds: f64,
    /// Per reference: how long its push took (0 when not pushed).
    pub push_seconds: Vec<f64>,
    /// Per reference: its push was refused because another run had pushed
    /// the same tag to an immutable repository first (the tag is the
    /// content digest, so that image is this one); its digest is the
    /// registry's.
    pub by_other_run: Vec<bool>,
}

/// What one check said: an answer per `check.asks`, and what an ECR
/// question showed of the repository (it exists when ECR answered, and does
/// not when ECR said `RepositoryNotFoundException`).
struct Asked {
    answers: Vec<Answer>,
    repository: Option<bool>,
}

/// The service whose reference this is (a shared build's later refs belong
/// to later services; the first always to the built one).
fn who<'a>(plan: &'a Plan, &(b, r): &(usize, usize)) -> &'a str {
    service_of(&plan.builds[b], r)
}

/// The service whose reference `r` of this build is.
fn service_of(build: &Build, r: usize) -> &str {
    build
        .pushes
        .get(r)
        .map_or(build.services[0].as_str(), |(s, _)| s.as_str())
}

/// Does the registry have these references? A clear "no" and an unclear
/// answer both mean build (the latter with a warning that names the
/// service).
fn ask(check: &Check, plan: &Plan, opts: RunOptions) -> Result<Asked> {
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
        return Ok(Asked {
            answers: check
                .asks
                .iter()
                .map(|_| answer(true, digest.clone()))
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
fn ask_over_http(check: &Check, plan: &Plan, started: Instant) -> Option<Asked> {
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
        }],
        repository: None,
    })
}

/// One plain-HTTP repository's listing: its host, its name, its tags (None
/// when not answered plainly), and how long the listing took.
type Listing = (String, String, Option<Vec<String>>, f64);

/// The tags of each plain-HTTP repository the checks ask about, one
/// listing each, all at once (`running::registry`).
fn list_repositories(plan: &Plan) -> Vec<Listing> {
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
fn from_listing(check: &Check, plan: &Plan, listed: &[Listing]) -> Option<Asked> {
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
            })
        })
        .collect::<Option<Vec<Answer>>>()?;
    Some(Asked {
        answers,
        repository: None,
    })
}

/// Each tag's answer in ECR's `batch-get-image` JSON.
fn batch_answers(
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
            match ecr::batch_answer(stdout, crate::plan::tag_of(reference)) {
                ecr::TagAnswer::Found(digest) => answer(true, digest),
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
fn warn_unclear(check: &Check, plan: &Plan, stderr: &str) {
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
fn local_digest(reference: &str, opts: RunOptions) -> Option<String> {
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
const CHECKS_AT_ONCE: usize = 32;

/// Run `f` over `0..n` on up to `workers` threads. The first error cancels
/// the rest: no new item starts, and running children are stopped.
fn parallel<T: Send>(
    n: usize,
    workers: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<T>>> =
        (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    let first_error: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                if interrupt::cancelled() {
                    return;
                }
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    return;
                }
                match f(i) {
                    Ok(v) => {
                        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
                    }
                    Err(e) => {
                        let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        if first.is_none() && !interrupt::cancelled() {
                            *first = Some(e);
                            interrupt::cancel_all();
                        }
                        return;
                    }
                }
            });
        }
    });
    interrupt::finish_cancel();
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect::<Option<Vec<T>>>()
        .ok_or_else(|| anyhow!("internal error: a step did not finish"))
}

/// The build to run: under the classic builder with a registry cache, the
/// one that names the service's last image as its cache source when that
/// image could be pulled (the first build of a service has none; naming a
/// missing image would turn off the engine's own cache).
/// The build's command, with each cache image that pulled named in
/// `--cache-from` (naming one the engine does not have would turn the
/// engine's own cache off); and those images, for the stages' builds.
fn build_command(b: &Build, opts: RunOptions) -> (Cmd, Vec<String>) {
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
fn push_stage_caches(b: &Build, pulled: &[String], opts: RunOptions) {
    let who = &b.services[0];
    for st in b.cache.iter().flat_map(|c| &c.stages) {
        let build = st
            .build
            .clone()
            .before_last(pulled.iter().flat_map(|r| ["--cache-from", r.as_str()]));
        // Streamed like the build: its log shows which steps ran.
        let pushed = stream(&build, who, opts).and_then(|_| push(&st.push, who, opts).map(|_| ()));
        if let Err(e) = pushed {
            log(&format!(
                "[{who}] warning: the registry cache of stage {} ({}) was not updated ({e:#}); the next build of {who} runs that stage without it",
                st.stage, st.reference
            ));
        }
    }
}

impl BuildResult {
    /// A build's result before it runs: what the registry answered.
    fn before(b: &Build, answers: &[Answer]) -> BuildResult {
        BuildResult {
            outcome: Outcome::Built,
            existed: answers.iter().map(|a| a.exists).collect(),
            digests: answers.iter().map(|a| a.digest.clone()).collect(),
            check_seconds: answers.iter().map(|a| a.seconds).fold(0.0, f64::max),
            build_seconds: 0.0,
            push_seconds: vec![0.0; b.refs.len()],
            by_other_run: vec![false; b.refs.len()],
        }
    }
}

/// A build the registry has every tag of: neither built nor pushed.
fn up_to_date(b: &Build, mut result: BuildResult) -> BuildResult {
    for s in &b.services {
        progress::done(s, "up to date: the registry has it");
    }
    result.outcome = Outcome::UpToDate;
    result
}

/// One build: skip it when the registry has every tag; push only the
/// missing tags, without a build when the image is here already.
fn run_build(
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

/// A build on a builder that pushes itself: the build is the push (every
/// ref a `-t`), the digest comes from its metadata file, and nothing lands
/// in the engine, so there is nothing to tag, push or make current here.
fn built_and_pushed_by_builder(
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
fn stream_with_metadata(
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

/// Push each reference the registry does not have. A push refused because
/// another run pushed the tag first to an immutable repository counts as
/// pushed.
fn push_missing(
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

/// What a build asks of the run besides its own commands.
struct Steps<'a> {
    /// Make a base image current on the engine (index into `Plan::bases`).
    make_current: &'a (dyn Fn(usize) -> Result<()> + Sync),
    /// Ask the registry again about one of the build's references.
    recheck: &'a (dyn Fn(usize) -> Option<Answer> + Sync),
}

/// Was `failure` ECR refusing the tags `refs` because they exist in an
/// immutable repository, and does the registry now have each of them? Then
/// another run of the same content pushed them first: each counts as
/// pushed, with the registry's digest.
fn pushed_by_another_run(
    b: &Build,
    result: &mut BuildResult,
    failure: &anyhow::Error,
    steps: &Steps<'_>,
    refs: std::ops::Range<usize>,
) -> bool {
    if !ecr::is_immutable_refusal(&format!("{failure:#}")) {
        return false;
    }
    let mut answers = Vec::new();
    for i in refs {
        match (steps.recheck)(i) {
            Some(a) if a.exists => answers.push((i, a.digest)),
            _ => return false,
        }
    }
    for (i, digest) in answers {
        result.by_other_run[i] = true;
        result.digests[i] = digest;
        log(&format!(
            "[{}] {} was pushed by another run first (the repository is immutable, and the tag is the content digest): counted as pushed",
            service_of(b, i),
            b.refs[i]
        ));
    }
    true
}

/// Some tags exist: when the engine has the image under one of its
/// references, tag and push the missing ones from it, without a build.
/// False when the engine has none of them.
fn tag_from_local(
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

/// Each service of a finished build is done; each push names its service
/// (two services given the same tag share one push).
fn report_built(b: &Build, result: &BuildResult) {
    let who = &b.services[0];
    progress::done(
        who,
        &format!(
            "built in {:.1} s, pushed in {:.1} s",
            result.build_seconds, result.push_seconds[0]
        ),
    );
    for s in b.services.iter().skip(1) {
        let pushed = b
            .pushes
            .iter()
            .position(|(p, _)| p == s)
            .map_or(0.0, |i| result.push_seconds[i]);
        progress::done(
            s,
            &format!("shares the build of {who}, pushed in {pushed:.1} s"),
        );
    }
}

/// What the registry said of every reference of a plan, before any build:
/// per build, an answer per reference; and what an ECR question showed of
/// the repository.
pub struct Answers {
    per_build: Vec<Vec<Answer>>,
    repository: Option<bool>,
}

impl Answers {
    /// Is there anything to build or push (a reference the registry lacks)?
    pub fn work(&self) -> bool {
        self.per_build.iter().any(|a| a.iter().any(|a| !a.exists))
    }
}

/// Run the plan up to, not including, the write: [`ask_registry`], then
/// [`build`].
pub fn execute(plan: &Plan, opts: RunOptions) -> Result<Vec<BuildResult>> {
    let answers = ask_registry(plan, opts)?;
    build(plan, &answers, opts)
}

/// Ask the registry what it has, every check at once (with `--force`,
/// nothing is asked: everything is built). The plan's build commands are
/// not read: the references and the checks are the same whichever builder
/// builds, so this may run on a plan made before the builder answered.
pub fn ask_registry(plan: &Plan, opts: RunOptions) -> Result<Answers> {
    // Everything that can fail before a build, checked before it: each
    // context and Dockerfile was read for the digest, and the output was
    // found writable when its lock was taken (`lock::lock`).
    if plan.needs_docker() {
        run::require_program("docker", "to build and push the images")?;
    }
    if plan.needs_aws() {
        run::require_program("aws", "to set up and log in to ECR")?;
    }
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
    Ok(answers)
}

/// Build and push, in parallel, what the registry lacks (`answers`, asked
/// of a plan with the same references), setting up and logging in to ECR
/// first when anything is built.
pub fn build(plan: &Plan, answers: &Answers, opts: RunOptions) -> Result<Vec<BuildResult>> {
    if !plan.login_first() && answers.work() {
        set_up_and_log_in(plan, answers.repository, opts)?;
    }
    // Each base the registry identified is made current once, before the
    // first build on it; builds that share it wait for that one.
    let current: Vec<OnceLock<Result<(), String>>> =
        plan.bases.iter().map(|_| OnceLock::new()).collect();
    let current_base = |k: usize| -> Result<()> {
        current[k]
            .get_or_init(|| make_current(&plan.bases[k], opts).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow!(e))
    };
    let needed: Vec<usize> = (0..plan.builds.len())
        .filter(|&i| answers.per_build[i].iter().any(|a| !a.exists))
        .collect();
    let _staged = crate::running::stage::stage_all(plan, &needed)?;
    if needed.len() <= usize::from(opts.jobs) {
        if let Some(run) = plan.bake_of(&needed) {
            if let Some(results) = run_bake(plan, &needed, &run, answers, opts)? {
                return Ok(results);
            }
        }
    }
    parallel(plan.builds.len(), usize::from(opts.jobs), |i| {
        let recheck = |r: usize| recheck(plan, (i, r), opts);
        let steps = Steps {
            make_current: &current_base,
            recheck: &recheck,
        };
        run_build(&plan.builds[i], &answers.per_build[i], &steps, opts)
    })
}

/// The builds that run (`needed`, each of them a target), as one bake on
/// the builder that pushes itself; every other build is up to date. Each
/// built one's digest comes from the bake's metadata file, by target. When
/// the bake fails because another run pushed one of its tags first (an
/// immutable repository), None: each build then runs alone, where that
/// tag counts as pushed and the others build again, from the cache.
fn run_bake(
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

/// Ask the registry again about one reference (build, index), with the
/// check that asked about it first.
fn recheck(plan: &Plan, at: (usize, usize), opts: RunOptions) -> Option<Answer> {
    let check = plan.checks.iter().find(|c| c.asks.contains(&at))?;
    let k = check.asks.iter().position(|a| *a == at)?;
    ask(check, plan, opts).ok()?.answers.into_iter().nth(k)
}

/// Make the engine's copy of a base the registry's before a build on it:
/// ask the engine (`refresh.inspect`) and, when its copy is older, pull.
/// A failed pull fails the build: the tag names the registry's base.
fn make_current(refresh: &Refresh, opts: RunOptions) -> Result<()> {
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

/// Make sure the ECR repository exists (create it if not) and log docker in
/// to its registry: once per run, before the first build. `exists` is what
/// the ECR question already showed of the repository; only when it showed
/// nothing is ECR asked with `describe-repositories`.
fn set_up_ecr(plan: &Plan, exists: Option<bool>, opts: RunOptions) -> Result<()> {
    let Some(e) = &plan.ecr else {
        return Ok(());
    };
    let exists = match exists {
        Some(known) => known,
        None => {
            let described = capture(&e.describe, opts)?;
            let stderr = String::from_utf8_lossy(&described.stderr);
            if !described.status.success() && !ecr::is_repository_not_found(&stderr) {
                return Err(run::failed(&e.describe, &described, None));
            }
            described.status.success()
        }
    };
    if !exists {
        if !opts.quiet {
            log(&format!(
                "creating ECR repository {} in {}",
                e.name, e.region
            ));
        }
        let created = capture(&e.create, opts)?;
        let stderr = String::from_utf8_lossy(&created.stderr);
        if created.status.success() {
            ecr::parse_repository_uri(&String::from_utf8_lossy(&created.stdout))?;
        } else if !ecr::is_already_there(&stderr) {
            return Err(run::failed(&e.create, &created, ecr::create_hint(&stderr)));
        }
    }
    if let Some(c) = &e.cache {
        set_up_cache_repository(c, opts);
    }
    Ok(())
}

/// Set up the ECR repository and log in to every registry the plan names,
/// all at once: the set-up beside the logins, each login beside the others.
fn set_up_and_log_in(plan: &Plan, exists: Option<bool>, opts: RunOptions) -> Result<()> {
    std::thread::scope(|s| {
        let setup = s.spawn(|| set_up_ecr(plan, exists, opts));
        let logins: Vec<&crate::plan::login::Login> = plan.logins.iter().collect();
        let logged = run::log_in_all(&logins, opts);
        let setup = setup
            .join()
            .unwrap_or_else(|_| Err(anyhow!("internal error: the ECR set-up panicked")));
        logged.into_iter().map(|(_, r)| r).fold(setup, Result::and)
    })
}

/// The registry cache's repository: created when missing, and then (only
/// then: never on a repository this run did not create) given its
/// lifecycle policy. A failure costs only speed or storage: a warning.
fn set_up_cache_repository(c: &CacheRepository, opts: RunOptions) {
    if capture(&c.describe, opts).is_ok_and(|o| o.status.success()) {
        return;
    }
    let created = match capture(&c.create, opts) {
        Ok(o) if o.status.success() => true,
        Ok(o) if ecr::is_already_there(&String::from_utf8_lossy(&o.stderr)) => false,
        _ => {
            log(&format!(
                "warning: cannot create the ECR repository {} for the registry cache (`{}`); builds go on without it",
                c.name, c.create
            ));
            return;
        }
    };
    if let (true, Some(policy)) = (created, &c.lifecycle) {
        if let Err(e) = check(policy, opts, None) {
            log(&format!(
                "warning: the lifecycle policy of {} was not set, so its untagged images stay until removed ({e:#})",
                c.name
            ));
        }
    }
}

/// Fill in the digests `--pin-digest` needs that no answer or push gave,
/// from the local image; fail when one stays unknown.
pub fn complete_digests(plan: &Plan, results: &mut [BuildResult], opts: RunOptions) -> Result<()> {
    for (b, r) in plan.builds.iter().zip(results.iter_mut()) {
        for (i, reference) in b.refs.iter().enumerate() {
            if r.digests[i].is_none() {
                r.digests[i] = local_digest(reference, opts);
            }
            if r.digests[i].is_none() {
                bail!("--pin-digest: the registry gave no digest for {reference}, and docker has none locally");
            }
        }
    }
    Ok(())
}

/// Write the rewritten file (or stdout): the last step, after every push.
pub fn write_output(output: &Output, text: &str) -> Result<()> {
    match output {
        Output::File(path) => output::write(path, text.as_bytes()),
        Output::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| anyhow!("cannot write the rewritten file to stdout: {e}"))
        }
    }
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
