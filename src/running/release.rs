//! The convox CLI's steps: `--convox-env` reads the app's environment
//! from `convox env` before anything else; `--rack` without `--platform`
//! asks the rack's nodes' platforms (`convox rack params`, then the
//! instance types' architectures); `--convox-build`, after the
//! rewrite, runs `convox build` (the command is `programs::convox::build_cmd`)
//! on the rewritten file alone, and returns the release ID.

use crate::plan::platforms;
use crate::programs::convox;
use crate::read::app_env::AppEnv;
use crate::running::run::{self, log, RunOptions};
use anyhow::{anyhow, Context, Result};

/// The app's environment from `convox env`; its failure is one error with
/// the command line and its stderr's tail. The output is never shown.
pub fn app_env(app: &str, rack: Option<&str>, opts: RunOptions) -> Result<AppEnv> {
    run::require_program("convox", "for --convox-env")?;
    let cmd = convox::env_cmd(app, rack);
    let quiet = RunOptions {
        verbose: false,
        ..opts
    };
    let stdout = run::check(
        &cmd,
        quiet,
        Some("check the convox rack login (convox login), the app name and the rack"),
    )?;
    AppEnv::parse(&stdout, &format!("`{cmd}`")).map_err(|e| anyhow!(e))
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
    let params = run::check(
        &convox::rack_params_cmd(rack),
        quiet,
        Some("check the convox login (convox login) and the rack's name, or give --platform"),
    )?;
    let nodes = platforms::rack_nodes(&params);
    let types = if nodes.types.is_empty() {
        Vec::new()
    } else {
        run::require_program(
            "aws",
            "to find the architectures of the rack's instance types",
        )?;
        let json = run::check(
            &convox::instance_types_cmd(&nodes.types, region),
            quiet,
            Some("the aws CLI answers for the rack's account and region; or give --platform"),
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

/// Run `convox build` in a fresh temporary directory that holds only the
/// rewritten file, as `docker-compose.yml`; returns the release ID it prints.
pub fn build(rewritten: &str, app: &str, description: &str, opts: RunOptions) -> Result<String> {
    let dir = tempfile::Builder::new()
        .prefix("convox-build-off-cluster.")
        .tempdir_in(crate::inputs::staging::temp_base())
        .context("cannot create a temporary directory for convox build")?;
    // The directory, whole: an interrupt removes it with the file.
    crate::running::interrupt::track_temp_file(dir.path().to_path_buf());
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, rewritten).with_context(|| format!("cannot write {}", file.display()))?;
    let cmd = convox::build_cmd(&dir.path().display().to_string(), app, description);
    let result = run::check(
        &cmd,
        opts,
        Some("check the convox rack login (convox login) and the app name"),
    );
    crate::running::interrupt::untrack_temp_file(dir.path());
    let stdout = result?;
    let release =
        convox::release_id(&stdout).ok_or_else(|| anyhow!("`{cmd}` printed no release ID"))?;
    if !opts.quiet {
        log(&format!("[convox] release {release}"));
    }
    Ok(release)
}
