//! `--convox-build`: after the rewrite, run `convox build` on the rewritten
//! file alone, as the old pipeline's "cane" step did by hand
//! (`mkdir scratch; mv docker-compose.convox.yml scratch/docker-compose.yml;
//! cd scratch; convox build`), and return the release ID.

use crate::programs::command::Cmd;
use crate::running::run::{self, log, RunOptions};
use anyhow::{anyhow, Context, Result};

/// `convox build DIR --app APP --description DESC --id`.
pub fn build_cmd(dir: &str, app: &str, description: &str) -> Cmd {
    Cmd::new("convox").args([
        "build",
        dir,
        "--app",
        app,
        "--description",
        description,
        "--id",
    ])
}

/// Run `convox build` in a fresh temporary directory that holds only the
/// rewritten file, as `docker-compose.yml`; returns the release ID it prints.
pub fn build(rewritten: &str, app: &str, description: &str, opts: RunOptions) -> Result<String> {
    let dir = tempfile::Builder::new()
        .prefix("convox-build-off-cluster.")
        .tempdir()
        .context("cannot create a temporary directory for convox build")?;
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, rewritten).with_context(|| format!("cannot write {}", file.display()))?;
    crate::running::interrupt::track_temp_file(file.clone());
    let cmd = build_cmd(&dir.path().display().to_string(), app, description);
    let result = run::check(
        &cmd,
        opts,
        Some("check the convox rack login (convox login) and the app name"),
    );
    crate::running::interrupt::untrack_temp_file(&file);
    let stdout = result?;
    let release = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(String::from)
        .ok_or_else(|| anyhow!("`{cmd}` printed no release ID"))?;
    if !opts.quiet {
        log(&format!("[convox] release {release}"));
    }
    Ok(release)
}
