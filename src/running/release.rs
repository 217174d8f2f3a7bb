//! The convox CLI's steps: `--convox-env` reads the app's environment
//! from `convox env` before anything else; `--rack` without `--platform`
//! asks the rack's nodes' platforms (`convox rack params`, then the
//! instance types' architectures); `--convox-build`, after the
//! rewrite, makes the release from the rewritten file alone
//! (`plan::release`: `convox builds import-image` on a current rack, else
//! `convox build`), and returns the release ID and how it was made.

use crate::plan::platforms;
use crate::plan::release::ReleaseStep;
use crate::programs::convox;
use crate::read::app_env::AppEnv;
use crate::running::run::{self, log, RunOptions};
use anyhow::{anyhow, Context, Result};

/// How long a question about the rack (its parameters, its app's, its
/// instance types) may take.
const QUESTION_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The app's environment from `convox env`; its failure is one error with
/// the command line and its stderr's tail. The output is never shown.
pub fn app_env(app: &str, rack: Option<&str>, opts: RunOptions) -> Result<AppEnv> {
    run::require_program("convox", "for --convox-env")?;
    let cmd = convox::env_cmd(app, rack);
    let quiet = RunOptions {
        verbose: false,
        ..opts
    };
    let stdout = run::check_within(
        &cmd,
        quiet,
        Some("check the convox rack login (convox login), the app name and the rack"),
        QUESTION_LIMIT,
    )?;
    AppEnv::parse(&stdout, &format!("`{cmd}`")).map_err(|e| anyhow!(e))
}

/// The platform the app's `BuildArch` parameter names (`convox apps
/// params`), when it is set.
pub fn app_build_arch(app: &str, rack: &str, opts: RunOptions) -> Result<Option<String>> {
    let quiet = RunOptions {
        verbose: false,
        ..opts
    };
    let params = run::check_within(
        &convox::apps_params_cmd(app, rack),
        quiet,
        None,
        QUESTION_LIMIT,
    )?;
    Ok(platforms::build_arch(&params).map(String::from))
}

/// The platforms the rack's services can be scheduled on
/// (`plan::platforms`): `convox rack params`, then `aws ec2
/// describe-instance-types` for its runtime instance types. A failure is
/// one error with the command line and its stderr's tail.
pub fn rack_platforms(rack: &str, region: Option<&str>, opts: RunOptions) -> Result<Vec<String>> {
    let quiet = RunOptions {
        verbose: false,
        ..opts
    };
    let params = run::check_within(
        &convox::rack_params_cmd(rack),
        quiet,
        Some("check the convox login (convox login) and the rack's name, or give --platform"),
        QUESTION_LIMIT,
    )?;
    let nodes = platforms::rack_nodes(&params);
    let types = if nodes.types.is_empty() {
        Vec::new()
    } else {
        run::require_program(
            "aws",
            "to find the architectures of the rack's instance types",
        )?;
        let json = run::check_within(
            &convox::instance_types_cmd(&nodes.types, region),
            quiet,
            Some("the aws CLI answers for the rack's account and region; or give --platform"),
            QUESTION_LIMIT,
        )?;
        platforms::instance_architectures(&json).map_err(|e| anyhow!(e))?
    };
    let found = platforms::rack_platforms(&nodes.karpenter, &types);
    if found.is_empty() {
        return Err(anyhow!(
            "the rack {rack}'s parameters name no instance type or architecture this program knows ({}); give --platform",
            nodes.types.join(", ")
        ));
    }
    Ok(found)
}

/// A release, and how it was made: `import-image` or `build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub id: String,
    pub via: &'static str,
}

/// Make the release (`plan::release`) in a fresh temporary directory that
/// holds only the rewritten file, under its generation's name: `convox
/// builds import-image` where the step has it (falling back to `convox
/// build` on a rack or CLI without it), else `convox build`.
pub fn release(rewritten: &str, step: &ReleaseStep, opts: RunOptions) -> Result<Made> {
    let dir = tempfile::Builder::new()
        .prefix("convox-build-off-cluster.")
        .tempdir_in(crate::inputs::staging::temp_base())
        .context("cannot create a temporary directory for the release")?;
    // The directory, whole: an interrupt removes it with the file.
    crate::running::interrupt::track_temp_file(dir.path().to_path_buf());
    let result = release_in(dir.path(), rewritten, step, opts);
    crate::running::interrupt::untrack_temp_file(dir.path());
    let made = result?;
    if !opts.quiet {
        log(&format!("[convox] release {} ({})", made.id, made.via));
    }
    Ok(made)
}

fn release_in(
    dir: &std::path::Path,
    rewritten: &str,
    step: &ReleaseStep,
    opts: RunOptions,
) -> Result<Made> {
    let file = dir.join(step.file_name);
    std::fs::write(&file, rewritten).with_context(|| format!("cannot write {}", file.display()))?;
    let dir_text = dir.display().to_string();
    let hint = Some("check the convox rack login (convox login) and the app name");
    if let (Some(import), Some(cmd)) = (&step.import, step.import_cmd(&dir_text)) {
        let cmd = match &import.password {
            Some(p) => {
                let quiet = RunOptions {
                    verbose: false,
                    ..opts
                };
                let password = run::check_within(
                    p,
                    quiet,
                    Some("the aws CLI logs in to ECR"),
                    QUESTION_LIMIT,
                )?;
                cmd.stdin_secret(password.trim(), p.to_string())
            }
            None => cmd,
        };
        let out = run::capture(&cmd, opts)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            let id = convox::import_release(&stdout)
                .ok_or_else(|| anyhow!("`{cmd}` printed no `Release:` line"))?;
            return Ok(Made {
                id,
                via: "import-image",
            });
        }
        if !convox::import_unavailable(&format!("{stdout}\n{stderr}")) {
            return Err(run::failed(&cmd, &out, hint.map(String::from)));
        }
        if !opts.quiet {
            log("[convox] this rack or CLI has no `builds import-image` (3.24.6 or later): convox build instead");
        }
    }
    let cmd = step.build_cmd(&dir_text);
    let stdout = run::check(&cmd, opts, hint)?;
    let id = convox::release_id(&stdout).ok_or_else(|| anyhow!("`{cmd}` printed no release ID"))?;
    Ok(Made { id, via: "build" })
}
