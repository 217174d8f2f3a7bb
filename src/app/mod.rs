//! One invocation, as the stages in order. Each stage is one call that takes
//! the values before it and returns a named value:
//!
//! 1. [`Invocation`]: the options resolved, their warnings printed, the
//!    signal handlers, the deadline and the output file's lock in place;
//! 2. [`Loaded`]: the compose file read by Convox's rules, each build's
//!    Dockerfile read once, and the usage checked by a plan made with
//!    stand-in digests (no process started, no file hashed);
//! 3. [`Probed`]: the AWS account when a bare ECR name needs it, the
//!    registry settings, and each base image's identity; and the builder's
//!    questions started on a thread of their own (`running::probe`);
//! 4. [`Plan`]: the plan as far as the registry is concerned, its
//!    references asked of the registry while the builder is asked
//!    (`execute::ask_registry`), then the plan with the builder's answer
//!    (`plan_and_ask`); a dry run prints the latter ([`Plan::dry_run`])
//!    and stops;
//! 5. [`Results`]: the plan built and pushed, the file written, `convox
//!    build` run;
//! 6. the report: the summary on stderr, the JSON report or release on
//!    stdout.

use crate::cli::{Cli, Resolved};
use crate::inputs::build_args::{self, BuildArgs};
use crate::inputs::{bases, digest};
use crate::plan::script::DryRun;
use crate::plan::{self, platforms, refresh, Plan, Target, UsageError};
use crate::programs::builder::{self, Builder};
use crate::programs::buildx::{self, Buildx};
use crate::programs::{docker, plugin};
use crate::read::app_env::AppEnv;
use crate::read::compose::{BuildSpec, Compose};
use crate::read::docker_config::DockerConfig;
use crate::read::dockerfile::Dockerfiles;
use crate::running::execute::{self, BuildResult};
use crate::running::lock::FileLock;
use crate::running::probe::{self, Probed, Questions};
use crate::running::run::{self, RunOptions};
use crate::view::report;
use anyhow::Result;
use std::io::Write;

mod targets;
use self::targets::{check_platforms, decide_platforms, rack_platforms};

pub fn run(cli: &Cli) -> Result<()> {
    crate::view::ui::init(cli.quiet, cli.verbose);
    if let Some(shell) = cli.completions {
        std::io::stdout().write_all(&Cli::completions(shell))?;
        return Ok(());
    }
    let invocation = Invocation::resolve(cli)?;
    let build_args = gather_build_args(&invocation)?;
    let loaded = Loaded::read(&invocation, &build_args)?;
    let (probed, asking) = probe_environment(&invocation, &loaded)?;
    let digests = Digests::new(&loaded, &probed);
    if invocation.resolved.dry_run {
        let plan = make_plan(
            &invocation,
            &loaded,
            &probed,
            Some(&asking.answer()?),
            &digests,
        )?;
        return print_dry_run(&invocation, &loaded, &plan, &build_args);
    }
    if invocation.cli.convox_build {
        run::require_program("convox", "for --convox-build")?;
    }
    let (plan, answers, kept) = plan_and_ask(&invocation, &loaded, &probed, asking, &digests)?;
    let results = execute_plan(&invocation, &loaded, &plan, &answers, kept)?;
    report_results(&invocation, &plan, &results)
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Stage 1: the invocation, resolved.
pub struct Invocation<'a> {
    pub cli: &'a Cli,
    pub resolved: Resolved,
    pub opts: RunOptions,
    /// Held for the whole run (none in a dry run or with `-o -`).
    _lock: Option<FileLock>,
}

impl<'a> Invocation<'a> {
    fn resolve(cli: &'a Cli) -> Result<Invocation<'a>> {
        if let Some(context) = &cli.context {
            // Every docker command inherits it; nothing else runs yet.
            std::env::set_var("DOCKER_CONTEXT", context);
        }
        let resolved = cli.resolve(&env);
        let opts = RunOptions {
            verbose: cli.verbose,
            quiet: cli.quiet,
            force: cli.force,
            jobs: cli.jobs.unwrap_or_else(run::default_jobs),
            registry_digests: cli.json || cli.pin_digest,
        };
        for w in &resolved.warnings {
            eprintln!("warning: {w}");
        }
        let mut lock = None;
        if !resolved.dry_run {
            crate::running::interrupt::install()
                .map_err(|e| anyhow::anyhow!("cannot install the signal handler: {e}"))?;
            if let Some(limit) = cli.timeout {
                crate::running::interrupt::deadline(limit, crate::cli::show_duration(limit));
            }
            if let plan::Output::File(path) = &resolved.options.output {
                lock = crate::running::lock::lock(path)?;
            }
        }
        let stdout_report = cli.json || (cli.convox_build && !resolved.dry_run);
        if stdout_report && resolved.options.output == plan::Output::Stdout {
            return Err(anyhow::Error::new(UsageError(
                "--json or --convox-build and -o - all want stdout; write the file elsewhere with -o PATH".into(),
            )));
        }
        Ok(Invocation {
            cli,
            resolved,
            opts,
            _lock: lock,
        })
    }
}

/// The rack: `--rack`, else `CONVOX_RACK`.
fn rack(cli: &Cli) -> Option<String> {
    cli.rack
        .clone()
        .or_else(|| env("CONVOX_RACK"))
        .filter(|r| !r.trim().is_empty())
}

/// Stage 1b: the build arguments besides the file's (`inputs::build_args`):
/// the `--build-arg`s (and the `build_args` setting, comma-separated, which
/// they follow), and the app's environment from `--env-file` or, but in a
/// dry run, `convox env`. A bad flag, a missing file or a bad line is a
/// usage error: nothing is built, the file is untouched.
fn gather_build_args(inv: &Invocation<'_>) -> Result<BuildArgs> {
    let cli = inv.cli;
    let options = &inv.resolved.options;
    let rack = rack(cli);
    let mut flags: Vec<(String, String)> = env("PLUGIN_BUILD_ARGS")
        .map(|list| {
            list.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .enumerate()
                .map(|(i, s)| (format!("the build_args setting's entry #{}", i + 1), s))
                .collect()
        })
        .unwrap_or_default();
    flags.extend(
        cli.build_arg
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("--build-arg #{}", i + 1), s.clone())),
    );
    let managed = build_args::Managed {
        app: &options.app,
        gitsha: options.gitsha.as_deref(),
        rack: rack.as_deref(),
    };
    let flags = build_args::parse_flags(&flags, &managed).map_err(plan::usage)?;
    let app_env = match (&cli.env_file, cli.convox_env && !inv.resolved.dry_run) {
        (Some(path), _) => Some((
            AppEnv::load(path).map_err(plan::usage)?,
            format!("--env-file {}", path.display()),
        )),
        (None, true) => Some((
            crate::running::release::app_env(&options.app, rack.as_deref(), inv.opts)?,
            "convox env".to_string(),
        )),
        (None, false) => None,
    };
    Ok(BuildArgs { app_env, flags })
}

/// A convox.yml is interpolated as the rack does it: in the app's
/// environment plus the build args (its text, as read, parsed again in
/// those), else in this process's environment, said in one line naming the
/// variables read.
fn convox_yml_in_app_env(
    compose: Compose,
    path: &std::path::Path,
    build_args: &BuildArgs,
) -> Result<Compose> {
    if compose.format != crate::read::format::Format::ConvoxYml {
        return Ok(compose);
    }
    let names = compose.variable_names();
    if names.is_empty() {
        return Ok(compose);
    }
    match build_args.convox_yml_env() {
        Some(app) => Compose::from_bytes(path, compose.text.into_bytes(), &|n: &str| {
            app.get(n).cloned()
        }),
        None => {
            let mut compose = compose;
            compose.warnings.push(format!(
                "{}: no app environment given (--env-file, --convox-env) nor build args, so this process's environment stands in for the app's when reading its ${{…}}: {}",
                path.display(),
                names.join(", ")
            ));
            Ok(compose)
        }
    }
}

/// Stage 2: the file, its Dockerfiles, and the target before any probe.
pub struct Loaded {
    pub compose: Compose,
    pub dockerfiles: Dockerfiles,
    pub target: Target,
    /// Every base image of every build, sorted, without duplicates.
    pub bases: Vec<String>,
    /// Each built service's platforms (`plan::platforms`), already set on
    /// its build's spec.
    pub platforms: Vec<(String, platforms::Decided)>,
    /// Each kept image's service, image and the platforms it must offer.
    pub kept_platforms: Vec<(String, String, platforms::Decided)>,
}

impl Loaded {
    fn read(inv: &Invocation<'_>, build_args: &BuildArgs) -> Result<Loaded> {
        let compose = Compose::load(&inv.resolved.compose_file, &env)?;
        let mut compose = convox_yml_in_app_env(compose, &inv.resolved.compose_file, build_args)?;
        let target = Target::new(&inv.resolved.options)?;
        if let (Some(rack), crate::programs::ecr::Repo::Ecr { name, .. }) =
            (rack(inv.cli), &target.repo)
        {
            if compose.format == crate::read::format::Format::ConvoxYml {
                compose
                    .warnings
                    .extend(crate::programs::ecr::outside_racks_repositories(
                        &rack, name,
                    ));
            }
        }
        let needed = target.needs_account(&inv.resolved.options);
        if let Some(a) = inv.resolved.account.as_ref().filter(|_| needed) {
            if a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()) {
                return Err(anyhow::Error::new(UsageError(format!(
                    "the AWS account `{a}` (-defaultAccount or AWS_ACCOUNT) is not 12 digits"
                ))));
            }
        }
        let from_rack = rack_platforms(inv, &compose, &target)?;
        let decided = decide_platforms(inv.cli, &mut compose, from_rack.as_ref())?;
        compose
            .warnings
            .extend(platforms::rack_copy_warning(&decided.built));
        let dockerfiles = Dockerfiles::read(compose.build_specs());
        build_args.apply_to(&mut compose, &dockerfiles);
        let loaded = Loaded {
            bases: Vec::new(),
            compose,
            dockerfiles,
            target,
            platforms: decided.built,
            kept_platforms: decided.kept,
        };
        // Usage mistakes (the tag template) show up in a plan made with
        // stand-in digests, before any process starts or any file is hashed.
        let stand_in = |spec: &BuildSpec| {
            Ok(blake3::hash(format!("{spec:?}").as_bytes())
                .to_hex()
                .to_string())
        };
        let mut permissive = loaded.target.clone();
        permissive.builder = Builder::BuildKit { buildx: true };
        plan::plan_with(
            &loaded.compose,
            &inv.resolved.options,
            &permissive,
            Some("000000000000"),
            &stand_in,
            &loaded.dockerfiles,
        )?;
        let mut bases: Vec<String> = loaded
            .compose
            .build_specs()
            .flat_map(|s| loaded.bases_of(s))
            .collect();
        bases.sort();
        bases.dedup();
        let mut target = loaded.target.clone();
        // As docker does: a config it cannot read or parse is a warning,
        // and no helper.
        target.credentials = DockerConfig::load(&env).unwrap_or_else(|e| {
            eprintln!("warning: {e}; read as having no credential helper, as docker reads it");
            DockerConfig::default()
        });
        target.base_registries = plan::login::base_registries(&bases);
        Ok(Loaded {
            bases,
            target,
            ..loaded
        })
    }

    /// The base images of one build, from its Dockerfile as read.
    fn bases_of(&self, spec: &BuildSpec) -> Vec<String> {
        self.dockerfiles
            .of(spec)
            .map(|d| bases::images(d, spec, &env))
            .unwrap_or_default()
    }

    fn builds_something(&self) -> bool {
        self.compose.build_specs().next().is_some()
    }
}

/// Stage 3: the environment. The builder's questions start on their own
/// thread ([`probe::Asking`]); then the AWS account (when a bare ECR name
/// needs it), the registry settings and the base images.
fn probe_environment(inv: &Invocation<'_>, loaded: &Loaded) -> Result<(Probed, probe::Asking)> {
    let dry_run = inv.resolved.dry_run;
    let options = &inv.resolved.options;
    let look_up_bases = !dry_run && !inv.cli.no_base_digest && !loaded.bases.is_empty();
    // What the engine knows of plain-HTTP registries (a remote engine may
    // reach one that is not on a loopback address here); asked only when a
    // registry outside this machine's loopback is involved.
    let other_host = other_host(loaded, options);
    let remote_base = loaded
        .bases
        .iter()
        .any(|b| bases::host_of(b).is_some_and(|h| !docker::is_loopback(h)));
    let questions = Questions {
        dry_run,
        builds_something: loaded.builds_something(),
        docker_buildkit: env("DOCKER_BUILDKIT"),
        registry_config: !dry_run && (other_host.is_some() || (look_up_bases && remote_base)),
        bases: if look_up_bases {
            loaded.bases.clone()
        } else {
            Vec::new()
        },
        account: loaded.target.needs_account(options) && !dry_run && inv.resolved.account.is_none(),
        buildx_builder: inv
            .cli
            .builder
            .clone()
            .or_else(|| env("BUILDX_BUILDER"))
            .filter(|b| !b.is_empty()),
        logins: plan::login::logins(&loaded.target.base_registries, &loaded.target.credentials),
        buildx_program: if dry_run {
            buildx::Program::default()
        } else {
            buildx_program(&loaded.target.credentials)
        },
    };
    let asking = probe::ask_builder(&questions, inv.opts);
    Ok((probe::probe(&questions, inv.opts)?, asking))
}

/// How buildx is run: the plugin file docker would run for `docker buildx`,
/// run directly where that is certainly the file (`programs::plugin`: a
/// call without docker's dispatch, ~50 ms less); else through `docker`.
fn buildx_program(config: &DockerConfig) -> buildx::Program {
    let dir = DockerConfig::path_from(&env);
    let (Some(extra), Some(dir)) = (&config.plugin_dirs, dir.as_deref().and_then(|p| p.parent()))
    else {
        return buildx::Program::default();
    };
    let docker = which::which("docker").ok();
    plugin::locate(
        "buildx",
        &plugin::search_dirs(extra, dir),
        docker.as_deref(),
    )
    .map(|p| buildx::Program::plugin(&p))
    .unwrap_or_default()
}

/// Each distinct build's content digest, computed once however many plans
/// ask for it (`inputs::digest`, with the bases' identities as probed).
struct Digests<'a> {
    loaded: &'a Loaded,
    probed: &'a Probed,
    done: std::sync::Mutex<Vec<(BuildSpec, String)>>,
}

impl<'a> Digests<'a> {
    fn new(loaded: &'a Loaded, probed: &'a Probed) -> Digests<'a> {
        Digests {
            loaded,
            probed,
            done: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn of(&self, spec: &BuildSpec) -> Result<String> {
        let known = |done: &Vec<(BuildSpec, String)>| {
            done.iter().find(|(s, _)| s == spec).map(|(_, d)| d.clone())
        };
        if let Some(d) = self.done.lock().ok().and_then(|done| known(&done)) {
            return Ok(d);
        }
        let ids: Vec<(String, String)> = self
            .loaded
            .bases_of(spec)
            .into_iter()
            .filter_map(|image| {
                let r = self.probed.identities.iter().find(|r| r.image == image)?;
                Some((image, r.identity.clone()))
            })
            .collect();
        let d = digest::digest_of(spec, &env, self.loaded.dockerfiles.of(spec), &ids)?;
        if let Ok(mut done) = self.done.lock() {
            done.push((spec.clone(), d.clone()));
        }
        Ok(d)
    }
}

/// The registry host pushed to, when it is neither ECR's nor on loopback.
fn other_host(loaded: &Loaded, options: &plan::Options) -> Option<String> {
    loaded
        .target
        .other_host(options)
        .filter(|h| !docker::is_loopback(h))
        .map(String::from)
}

/// Stage 4: the target from what was probed, then the plan.
///
/// With the builder's answer (`detected`), the plan the run executes. Without
/// it, the plan as far as the registry is concerned: the references, the
/// checks, the rewritten file, all the same whichever builder builds; its
/// build commands are a stand-in builder's, and are never run
/// (`execute::ask_registry` reads none of them). Its warnings are printed;
/// the second plan's are the same, and are not printed again.
fn make_plan(
    inv: &Invocation<'_>,
    loaded: &Loaded,
    probed: &Probed,
    detected: Option<&probe::Detected>,
    digests: &Digests<'_>,
) -> Result<Plan> {
    let options = &inv.resolved.options;
    let mut target = loaded.target.clone();
    if let (Some(c), Some(host)) = (&probed.registry_config, &other_host(loaded, options)) {
        target.insecure = docker::insecure_in(c, host);
    }
    match detected {
        Some(d) => choose_builder(inv, d, &mut target)?,
        None => target.builder = Builder::BuildKit { buildx: true },
    }
    let account = probed
        .account
        .as_deref()
        .or(inv.resolved.account.as_deref());
    let mut plan = plan::plan_with(
        &loaded.compose,
        options,
        &target,
        account,
        &|spec: &BuildSpec| digests.of(spec),
        &loaded.dockerfiles,
    )?;
    refresh::attach(&mut plan, &probed.identities, &|s| loaded.bases_of(s));
    plan.platforms = loaded.platforms.clone();
    plan.kept = plan::KeptCheck::all(&loaded.kept_platforms, target.insecure);
    if let Some(d) = detected.filter(|_| !inv.resolved.dry_run) {
        check_platforms(&plan, &target, d)?;
    }
    // A base's pull logged in to its host already.
    plan.logins.retain(|l| !probed.logged_in.contains(&l.host));
    if detected.is_none() || inv.resolved.dry_run {
        for w in &plan.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(plan)
}

/// Stages 4 and 5a: the plan, and what the registry has of it. The registry
/// is asked while the builder's questions run, on the plan as far as the
/// registry is concerned; then the plan is made again with the builder's
/// answer (the digests are not computed again). The answer is waited for
/// even when everything exists, so that a setting the builder refuses
/// fails every run, not only the runs that build. When the checks need
/// ECR's set-up and login first (ECR behind `--registry-host`), that set-up
/// is the full plan's, so the builder is waited for first.
fn plan_and_ask(
    inv: &Invocation<'_>,
    loaded: &Loaded,
    probed: &Probed,
    asking: probe::Asking,
    digests: &Digests<'_>,
) -> Result<(Plan, execute::Answers, KeptQuestion)> {
    let first = make_plan(inv, loaded, probed, None, digests)?;
    // Each kept image is asked which platforms it offers beside the
    // registry's questions (its check is the same in every plan), once the
    // programs the plan needs are known to be there.
    execute::require_programs(&first)?;
    let kept =
        (!first.kept.is_empty()).then(|| execute::start_kept_check(first.kept.clone(), inv.opts));
    if first.login_first() {
        let plan = make_plan(inv, loaded, probed, Some(&asking.answer()?), digests)?;
        let answers = execute::ask_registry(&plan, inv.opts)?;
        return Ok((plan, answers, kept));
    }
    let answers = execute::ask_registry(&first, inv.opts)?;
    let plan = make_plan(inv, loaded, probed, Some(&asking.answer()?), digests)?;
    if plan.same_references(&first) {
        return Ok((plan, answers, kept));
    }
    let answers = execute::ask_registry(&plan, inv.opts)?;
    Ok((plan, answers, kept))
}

/// The kept images' question, under way.
type KeptQuestion = Option<std::thread::JoinHandle<Vec<String>>>;

/// The builder, from what was probed, and the registry cache it can keep.
///
/// A buildx builder that pushes itself (any driver but `docker`: named by
/// `--builder`, `BUILDX_BUILDER`, or made current by `docker buildx use`)
/// builds, unless `DOCKER_BUILDKIT=0` asks for the classic builder; a dry run
/// assumes one for `--builder`. Else the builder docker's own rules give.
fn choose_builder(
    inv: &Invocation<'_>,
    probed: &probe::Detected,
    target: &mut Target,
) -> Result<()> {
    let cli = inv.cli;
    let dry_run = inv.resolved.dry_run;
    let classic_asked = builder::classic_asked(env("DOCKER_BUILDKIT").as_deref());
    let pushing = if dry_run {
        cli.builder.as_deref().map(Buildx::assumed)
    } else {
        probed
            .buildx
            .clone()
            .filter(|b| b.pushes_itself() && !classic_asked)
    };
    target.builder = probed.builder;
    target.imagetools = probed.buildx.as_ref().map(|b| b.program.clone());
    let attestations = || {
        let version = if dry_run { None } else { probed.buildx_version };
        buildx::attestation_flags(version, cli.provenance.as_deref(), cli.sbom)
            .map_err(|e| anyhow::Error::new(UsageError(e)))
    };
    if let Some(bx) = pushing {
        target.attestations = attestations()?;
        target.builder = Builder::BuildKit { buildx: true };
        target.registry_cache = !cli.no_registry_cache;
        if target.registry_cache
            && !bx.ecr_cache_form()
            && plan::cache::is_ecr(&registry_host(inv, target))
        {
            eprintln!(
                "note: the registry cache is inline: builder {}'s BuildKit ({}) is older than 0.12, and ECR accepts BuildKit's registry cache only in the form 0.12 writes",
                bx.name,
                bx.buildkit.as_deref().unwrap_or("version unknown")
            );
        }
        target.buildx = Some(bx);
        return Ok(());
    }
    // The classic builder uses a pulled image as its cache on any engine;
    // BuildKit writes inline cache, which only engines from 23.0.1 do safely.
    target.registry_cache = !cli.no_registry_cache
        && (!probed.builder.is_buildkit() || builder::inline_cache_safe(probed.engine.as_deref()));
    if probed.builder.is_buildkit() && !cli.no_registry_cache && !dry_run && !target.registry_cache
    {
        eprintln!(
            "note: the registry cache is off: this engine ({}) is older than 23.0.1, and its BuildKit can crash the whole engine writing inline cache",
            probed.engine.as_deref().unwrap_or("version unknown")
        );
    }
    if let Some(name) = &cli.builder {
        if dry_run {
            target.builder = Builder::BuildKit { buildx: true };
        } else if target.builder != (Builder::BuildKit { buildx: true }) {
            return Err(anyhow::Error::new(UsageError(format!(
                "--builder {name} is a buildx builder, and the docker here runs {} without buildx",
                target.builder.name()
            ))));
        }
        target.builder_name = Some(name.clone());
    }
    if builder::build_is_buildx(target.builder, probed.client.as_deref()) {
        target.attestations = attestations()?;
    } else if cli.provenance.is_some() || cli.sbom {
        return Err(anyhow::Error::new(UsageError(format!(
            "--provenance and --sbom keep BuildKit's attestations, and this run builds with {}, which makes none: build through buildx (docker 23 or later with the buildx plugin, or --builder)",
            target.builder.name()
        ))));
    }
    Ok(())
}

/// The host the images are pushed to.
fn registry_host(inv: &Invocation<'_>, target: &Target) -> String {
    plan::target::registry(&inv.resolved.options, target, Some("000000000000")).host
}

/// A dry run: the plan printed, nothing run, no file written.
fn print_dry_run(
    inv: &Invocation<'_>,
    loaded: &Loaded,
    plan: &Plan,
    build_args: &BuildArgs,
) -> Result<()> {
    let options = &inv.resolved.options;
    let text = plan.dry_run(&DryRun {
        bases: if inv.cli.no_base_digest {
            &[]
        } else {
            &loaded.bases
        },
        convox_build: inv.cli.convox_build.then(|| {
            plan::release::ReleaseStep::new(
                &loaded.compose,
                plan,
                &options.app,
                rack(inv.cli).as_deref(),
                &options.description,
            )
        }),
        assumed_builder: inv.cli.builder.as_deref(),
        build_args: Some(build_args),
        convox_env: inv
            .cli
            .convox_env
            .then(|| crate::programs::convox::env_cmd(&options.app, rack(inv.cli).as_deref())),
    });
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Stage 5: what the run did.
pub struct Results {
    pub builds: Vec<BuildResult>,
    /// The file as written.
    pub text: String,
    /// The release `--convox-build` made, and how.
    pub release: Option<crate::running::release::Made>,
    pub started: std::time::Instant,
}

/// Execute the plan; only when everything succeeded, write the file (pinned
/// by digest with `--pin-digest`) and run `convox build`.
fn execute_plan(
    inv: &Invocation<'_>,
    loaded: &Loaded,
    plan: &Plan,
    answers: &execute::Answers,
    kept: KeptQuestion,
) -> Result<Results> {
    let cli = inv.cli;
    let options = &inv.resolved.options;
    let started = std::time::Instant::now();
    let results = execute::build(plan, answers, inv.opts);
    if let Some(k) = kept {
        for line in k.join().unwrap_or_default() {
            crate::running::run::log(&line);
        }
    }
    crate::view::ui::finish();
    let mut builds = results?;
    execute::verify_platforms(plan, &builds, inv.opts)?;
    let text = if cli.pin_digest {
        execute::complete_digests(plan, &mut builds, inv.opts)?;
        plan::rewritten_text(&loaded.compose, &pinned_refs(plan, &builds))?
    } else {
        plan.rewritten.clone()
    };
    let read = crate::running::output::AsRead {
        path: &loaded.compose.path,
        bytes: loaded.compose.text.as_bytes(),
    };
    execute::write_output(&plan.output, &text, read)?;
    eprintln!("done:\n{}", report::summary(plan, &builds));
    let release = if cli.convox_build {
        let step = plan::release::ReleaseStep::new(
            &loaded.compose,
            plan,
            &options.app,
            rack(cli).as_deref(),
            &options.description,
        );
        Some(crate::running::release::release(&text, &step, inv.opts)?)
    } else {
        None
    };
    Ok(Results {
        builds,
        text,
        release,
        started,
    })
}

/// Stage 6: the JSON report, or the release ID, on stdout; a GitHub
/// Action's outputs appended to the file `$GITHUB_OUTPUT` names.
fn report_results(inv: &Invocation<'_>, plan: &Plan, results: &Results) -> Result<()> {
    let options = &inv.resolved.options;
    if let Some(path) = env("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
        write_github_outputs(std::path::Path::new(&path), plan, results)?;
    }
    if inv.cli.json {
        let report = report::json(
            plan,
            &results.builds,
            &options.app,
            &options.repo,
            results.started.elapsed().as_secs_f64(),
            results.release.as_ref(),
        );
        println!("{report:#}");
    } else if let Some(r) = &results.release {
        println!("{}", r.id);
    }
    Ok(())
}

/// Append the outputs (`report::github_outputs`), with a delimiter that
/// occurs in none of them.
fn write_github_outputs(path: &std::path::Path, plan: &Plan, results: &Results) -> Result<()> {
    use anyhow::Context;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut delimiter = format!("ghadelimiter_{}_{nanos}", std::process::id());
    let release = results.release.as_ref().map(|r| r.id.as_str());
    while report::github_outputs(plan, &results.builds, release, "").contains(delimiter.as_str()) {
        delimiter.push('_');
    }
    let text = report::github_outputs(plan, &results.builds, release, &delimiter);
    // GitHub's runner names a regular file; anything else (a FIFO nobody
    // reads, a device) is refused rather than waited on, and the open itself
    // never blocks.
    if let Some(m) = std::fs::metadata(path).ok().filter(|m| !m.is_file()) {
        anyhow::bail!(
            "$GITHUB_OUTPUT ({}) is {}, not a regular file; the outputs were not written",
            path.display(),
            crate::read::regular::kind_of(&m.file_type())
        );
    }
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
    }
    .with_context(|| format!("cannot open $GITHUB_OUTPUT ({})", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write $GITHUB_OUTPUT ({})", path.display()))
}

/// Each built service's reference with `@sha256:…` of what was pushed.
fn pinned_refs(plan: &Plan, results: &[BuildResult]) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    for (b, r) in plan.builds.iter().zip(results) {
        for s in &b.services {
            let Some(reference) =
                plan.services
                    .iter()
                    .find(|p| &p.name == s)
                    .and_then(|p| match &p.action {
                        plan::Action::Built { reference }
                        | plan::Action::Shared { reference, .. } => Some(reference),
                        plan::Action::Kept { .. } => None,
                    })
            else {
                continue;
            };
            let digest = b
                .refs
                .iter()
                .position(|x| x == reference)
                .and_then(|i| r.digests.get(i).cloned().flatten());
            let pinned = match digest {
                Some(d) => format!("{reference}@{d}"),
                None => reference.clone(),
            };
            refs.push((s.clone(), pinned));
        }
    }
    refs
}
