//! One invocation, step by step: read the file, make the plan, then either
//! print it (dry run) or execute it, and report.

use crate::inputs::bases;
use crate::cli::Cli;
use crate::read::compose::{BuildSpec, Compose, Source};
use crate::running::execute;
use crate::plan::UsageError;
use crate::plan::{self, Target};
use crate::view::report;
use crate::running::run::{self, RunOptions};
use anyhow::Result;
use std::io::Write;

pub fn run(cli: &Cli) -> Result<()> {
    crate::view::ui::init(cli.quiet, cli.verbose);
    if let Some(shell) = cli.completions {
        std::io::stdout().write_all(&Cli::completions(shell))?;
        return Ok(());
    }
    if let Some(context) = &cli.context {
        // Every docker command inherits it; nothing else runs yet.
        std::env::set_var("DOCKER_CONTEXT", context);
    }
    let env = |k: &str| std::env::var(k).ok();
    let resolved = cli.resolve(&env);
    let opts = RunOptions {
        verbose: cli.verbose,
        quiet: cli.quiet,
        force: cli.force,
        jobs: cli.jobs.unwrap_or_else(run::default_jobs),
    };
    for w in &resolved.warnings {
        eprintln!("warning: {w}");
    }
    let mut _lock = None;
    if !resolved.dry_run {
        crate::running::interrupt::install()
            .map_err(|e| anyhow::anyhow!("cannot install the signal handler: {e}"))?;
        if let Some(limit) = cli.timeout {
            crate::running::interrupt::deadline(limit, crate::cli::show_duration(limit));
        }
        if let plan::Output::File(path) = &resolved.options.output {
            _lock = Some(crate::running::lock::lock(path)?);
        }
    }
    let stdout_report = cli.json || (cli.convox_build && !resolved.dry_run);
    if stdout_report && resolved.options.output == plan::Output::Stdout {
        return Err(anyhow::Error::new(UsageError(
            "--json or --convox-build and -o - all want stdout; write the file elsewhere with -o PATH".into(),
        )));
    }
    let compose = Compose::load(&resolved.compose_file, &env)?;
    let mut target = Target::new(&resolved.options)?;
    // Usage mistakes (the tag template) show up in a plan made with stand-in
    // digests, before any process starts or any file is hashed.
    let stand_in = |spec: &BuildSpec| {
        Ok(blake3::hash(format!("{spec:?}").as_bytes())
            .to_hex()
            .to_string())
    };
    let mut permissive = target.clone();
    permissive.builder = crate::programs::builder::Builder::BuildKit { buildx: true };
    plan::plan(
        &compose,
        &resolved.options,
        &permissive,
        Some("000000000000"),
        &stand_in,
    )?;
    let builds_something = compose
        .services
        .iter()
        .any(|s| matches!(s.source, Source::Build { .. }));
    let account = if target.needs_account(&resolved.options) && !resolved.dry_run {
        run::require_program(
            "aws",
            "to find the AWS account of a bare ECR repository name",
        )?;
        Some(run::account_id(opts)?)
    } else {
        None
    };
    let bases_of = |spec: &BuildSpec| -> Vec<String> {
        crate::inputs::digest::dockerfile_text(spec)
            .map(|text| bases::images(&text, spec, &env))
            .unwrap_or_default()
    };
    let specs: Vec<&BuildSpec> = compose
        .services
        .iter()
        .filter_map(|s| match &s.source {
            Source::Build { spec, .. } => Some(spec),
            Source::Image(_) => None,
        })
        .collect();
    let mut all_bases: Vec<String> = specs.iter().flat_map(|s| bases_of(s)).collect();
    all_bases.sort();
    all_bases.dedup();
    let look_up_bases = !resolved.dry_run && !cli.no_base_digest && !all_bases.is_empty();
    // What the engine knows of plain-HTTP registries (a remote engine may
    // reach one that is not on a loopback address here); asked only when a
    // registry outside this machine's loopback is involved.
    let other_host = target
        .other_host(&resolved.options)
        .filter(|h| !crate::programs::docker::is_loopback(h))
        .map(String::from);
    let remote_base = all_bases
        .iter()
        .any(|b| bases::host_of(b).is_some_and(|h| !crate::programs::docker::is_loopback(h)));
    let need_config = !resolved.dry_run && (other_host.is_some() || (look_up_bases && remote_base));
    // The questions to docker, at once: which builder, then (what the engine
    // knows of registries, and) the base images.
    let (detected, registry_config, identities) = std::thread::scope(|s| {
        let detect = s.spawn(|| {
            if resolved.dry_run {
                Ok((
                    crate::programs::builder::assume(env("DOCKER_BUILDKIT").as_deref()),
                    None,
                ))
            } else if builds_something {
                detect_builder(opts, env("DOCKER_BUILDKIT").as_deref())
            } else {
                Ok((crate::programs::builder::Builder::Classic, None))
            }
        });
        let config = if need_config {
            registry_config(opts)
        } else {
            None
        };
        let identities = if look_up_bases {
            resolve_bases(&all_bases, config.as_deref(), opts)
        } else {
            Vec::new()
        };
        let detected = detect
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error: asking docker its builder")));
        (detected, config, identities)
    });
    let (builder, engine) = detected?;
    if let (Some(c), Some(host)) = (&registry_config, &other_host) {
        target.insecure = crate::programs::docker::insecure_in(c, host);
    }
    target.builder = builder;
    // The classic builder uses a pulled image as its cache on any engine;
    // BuildKit writes inline cache, which only engines from 23 do safely.
    target.registry_cache = !cli.no_registry_cache
        && (!builder.is_buildkit() || crate::programs::builder::inline_cache_safe(engine.as_deref()));
    if builder.is_buildkit()
        && !cli.no_registry_cache
        && !resolved.dry_run
        && !target.registry_cache
    {
        eprintln!(
            "note: the registry cache is off: this engine ({}) is older than 23, and its BuildKit can crash the whole engine writing inline cache",
            engine.as_deref().unwrap_or("version unknown")
        );
    }
    if let Some(name) = &cli.builder {
        if resolved.dry_run {
            target.builder = crate::programs::builder::Builder::BuildKit { buildx: true };
        } else if target.builder != (crate::programs::builder::Builder::BuildKit { buildx: true }) {
            return Err(anyhow::Error::new(UsageError(format!(
                "--builder {name} is a buildx builder, and the docker here runs {} without buildx",
                target.builder.name()
            ))));
        }
        target.builder_name = Some(name.clone());
    }
    let digest = |spec: &BuildSpec| {
        let ids: Vec<(String, String)> = bases_of(spec)
            .into_iter()
            .filter_map(|image| {
                let r = identities.iter().find(|r| r.image == image)?;
                Some((image, r.identity.clone()))
            })
            .collect();
        crate::inputs::digest::digest_with_bases(spec, &env, &ids)
    };
    let mut plan = plan::plan(
        &compose,
        &resolved.options,
        &target,
        account.as_deref(),
        &digest,
    )?;
    bases::attach(&mut plan, &identities, &bases_of);
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    if resolved.dry_run {
        let mut out = std::io::stdout().lock();
        let mut text = String::from(
            "# dry run: these commands would run; nothing is run and no file is written\n",
        );
        if !all_bases.is_empty() && !cli.no_base_digest {
            text.push_str("# first, each base image is looked up (all at once) and its registry digest goes into the tags, which are shown here without it (as --no-base-digest has them):\n");
            for image in &all_bases {
                if !image.contains("@sha256:") {
                    text.push_str(&format!("{}\n", bases::registry_lookup(image, None)));
                }
            }
            text.push_str("# and before the first build on a base the registry identified, its engine copy is checked, and pulled when older than the registry's:\n");
            for image in all_bases.iter().filter(|i| !i.contains("@sha256:")) {
                text.push_str(&format!(
                    "# {} (then, if stale: {})\n",
                    bases::local_lookup(image),
                    bases::pull(image)
                ));
            }
        }
        for line in plan.script() {
            text.push_str(&line);
            text.push('\n');
        }
        if cli.convox_build {
            text.push_str(&format!(
                "# then, in a fresh directory DIR holding only the rewritten file as docker-compose.yml:\n{}\n",
                crate::programs::convox::build_cmd("DIR", &resolved.options.app, &resolved.options.description)
            ));
        }
        text.push_str(&format!(
            "# {}, rewritten:\n{}",
            resolved.compose_file.display(),
            plan.rewritten
        ));
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    if cli.convox_build {
        run::require_program("convox", "for --convox-build")?;
    }
    let started = std::time::Instant::now();
    let results = execute::execute(&plan, opts);
    crate::view::ui::finish();
    let mut results = results?;
    let text = if cli.pin_digest {
        execute::complete_digests(&plan, &mut results, opts)?;
        plan::rewritten_text(&compose, &pinned_refs(&plan, &results))?
    } else {
        plan.rewritten.clone()
    };
    execute::write_output(&plan.output, &text)?;
    eprintln!("done:\n{}", report::summary(&plan, &results));
    let release = if cli.convox_build {
        Some(crate::programs::convox::build(
            &text,
            &resolved.options.app,
            &resolved.options.description,
            opts,
        )?)
    } else {
        None
    };
    if cli.json {
        let report = report::json(
            &plan,
            &results,
            &resolved.options.app,
            &resolved.options.repo,
            started.elapsed().as_secs_f64(),
            release.as_deref(),
        );
        println!("{report:#}");
    } else if let Some(r) = &release {
        println!("{r}");
    }
    Ok(())
}

/// Which builder `docker build` runs here, and the engine's version: ask
/// docker its versions and whether buildx is there (both at once, a few
/// seconds at most).
fn detect_builder(
    opts: RunOptions,
    docker_buildkit: Option<&str>,
) -> Result<(crate::programs::builder::Builder, Option<String>)> {
    use crate::programs::builder;
    let limit = std::time::Duration::from_secs(10);
    let (versions, buildx) = std::thread::scope(|s| {
        let v = s.spawn(|| run::capture_within(&builder::versions(), opts, limit));
        let b = s.spawn(|| run::capture_within(&builder::buildx_version(), opts, limit));
        (v.join().ok().flatten(), b.join().ok().flatten())
    });
    let (client, engine) = versions
        .map(|o| builder::parse_versions(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or((None, None));
    let buildx = buildx.is_some_and(|o| o.status.success());
    let b = builder::decide(docker_buildkit, client.as_deref(), buildx)
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok((b, engine))
}

/// The engine's registry configuration (`docker info`), when docker is there
/// and answers within a few seconds.
fn registry_config(opts: RunOptions) -> Option<String> {
    run::stdout_within(
        &crate::programs::docker::registry_config(),
        opts,
        std::time::Duration::from_secs(10),
    )
}

/// Look the base images up, saying what could not be.
fn resolve_bases(
    images: &[String],
    config: Option<&str>,
    opts: RunOptions,
) -> Vec<bases::Resolved> {
    let resolved = bases::resolve(images, config, opts);
    for b in &resolved {
        if let Some(w) = &b.warning {
            eprintln!("warning: {w}");
        }
    }
    resolved
}

/// Each built service's reference with `@sha256:…` of what was pushed.
fn pinned_refs(plan: &plan::Plan, results: &[execute::BuildResult]) -> Vec<(String, String)> {
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
