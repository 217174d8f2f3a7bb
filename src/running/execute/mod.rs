//! Executing a plan: set up and log in to ECR, ask the registry which tags
//! it has, build and push the rest in parallel, and write the file only when
//! everything has succeeded.

//!
//! - [`ask`]: the registry's answers, before any build;
//! - [`engine`]: an image built in the engine, then tagged and pushed;
//! - [`pushed`]: an image a buildx builder builds and pushes itself;
//! - [`split`]: several platforms on the engine's BuildKit, one image each,
//!   joined into one index;
//! - [`bake`]: several such builds as one `docker buildx bake`;
//! - [`verify`]: what was pushed, read back: exactly the wanted platforms.

mod ask;
mod bake;
mod engine;
mod pushed;
mod split;
mod verify;

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

pub use ask::{answer_digest, ask_registry, require_programs, Answers};
use ask::{local_digest, recheck, service_of};
use bake::run_bake;
use engine::{make_current, run_build};
use pushed::{built_and_pushed_by_builder, stream_with_metadata};
pub use verify::{check_kept_images, start_kept_check, verify_platforms};

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
    /// What the answer says the tag holds (`plan::platforms::Held`).
    pub held: crate::plan::platforms::Held,
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

/// What a build asks of the run besides its own commands.
struct Steps<'a> {
    /// Make a base image current on the engine (index into `Plan::bases`).
    make_current: &'a (dyn Fn(usize) -> Result<()> + Sync),
    /// Ask the registry again about one of the build's references.
    recheck: &'a (dyn Fn(usize) -> Option<Answer> + Sync),
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

/// Run the plan up to, not including, the write: [`ask_registry`], then
/// [`build`].
pub fn execute(plan: &Plan, opts: RunOptions) -> Result<Vec<BuildResult>> {
    let answers = ask_registry(plan, opts)?;
    build(plan, &answers, opts)
}

/// Build and push, in parallel, what the registry lacks (`answers`, asked
/// of a plan with the same references), setting up and logging in to ECR
/// first when anything is built.
pub fn build(plan: &Plan, answers: &Answers, opts: RunOptions) -> Result<Vec<BuildResult>> {
    if !plan.login_first() && answers.work() && !answers.logged_in {
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
pub fn write_output(output: &Output, text: &str, read: output::AsRead<'_>) -> Result<()> {
    match output {
        Output::File(path) => output::write(path, text.as_bytes(), Some(read)),
        Output::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| anyhow!("cannot write the rewritten file to stdout: {e}"))
        }
    }
}

/// Those stages' builds and pushes, each log line prefixed with `who`.
fn push_stage_caches_of<'s>(
    stages: impl IntoIterator<Item = &'s crate::plan::StageCache>,
    who: &str,
    pulled: &[String],
    opts: RunOptions,
) {
    for st in stages {
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
