//! One invocation, step by step: read the file, make the plan, then either
//! print it (dry run) or execute it, and report.

use crate::cli::Cli;
use crate::compose::Compose;
use crate::execute;
use crate::plan::UsageError;
use crate::plan::{self, Target};
use crate::report;
use crate::run::{self, RunOptions};
use anyhow::Result;
use std::io::Write;

pub fn run(cli: &Cli) -> Result<()> {
    crate::ui::init(cli.quiet, cli.verbose);
    if let Some(shell) = cli.completions {
        std::io::stdout().write_all(&Cli::completions(shell))?;
        return Ok(());
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
        crate::interrupt::install()
            .map_err(|e| anyhow::anyhow!("cannot install the signal handler: {e}"))?;
        if let plan::Output::File(path) = &resolved.options.output {
            _lock = Some(crate::lock::lock(path)?);
        }
    }
    let stdout_report = cli.json || (cli.convox_build && !resolved.dry_run);
    if stdout_report && resolved.options.output == plan::Output::Stdout {
        return Err(anyhow::Error::new(UsageError(
            "--json or --convox-build and -o - all want stdout; write the file elsewhere with -o PATH".into(),
        )));
    }
    let compose = Compose::load(&resolved.compose_file, &env)?;
    let target = Target::new(&resolved.options)?;
    let account = if target.needs_account(&resolved.options) && !resolved.dry_run {
        run::require_program(
            "aws",
            "to find the AWS account of a bare ECR repository name",
        )?;
        Some(run::account_id(opts)?)
    } else {
        None
    };
    let digest = |spec: &crate::compose::BuildSpec| crate::digest::digest(spec, &env);
    let plan = plan::plan(
        &compose,
        &resolved.options,
        &target,
        account.as_deref(),
        &digest,
    )?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    if resolved.dry_run {
        let mut out = std::io::stdout().lock();
        let mut text = String::from(
            "# dry run: these commands would run; nothing is run and no file is written\n",
        );
        for line in plan.script() {
            text.push_str(&line);
            text.push('\n');
        }
        if cli.convox_build {
            text.push_str(&format!(
                "# then, in a fresh directory DIR holding only the rewritten file as docker-compose.yml:\n{}\n",
                crate::convox::build_cmd("DIR", &resolved.options.app, &resolved.options.description)
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
    crate::ui::finish();
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
        Some(crate::convox::build(
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
