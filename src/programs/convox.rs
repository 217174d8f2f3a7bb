//! `convox env`, whose output is the app's environment (`--convox-env`);
//! `convox rack params` and `aws ec2 describe-instance-types`, for the
//! platforms a rack's nodes run;
//! and `convox build` as a value: the release step that `--convox-build` runs
//! after the rewrite (`running::release` runs it), on the rewritten file
//! alone, as the old pipeline's "cane" step did by hand
//! (`mkdir scratch; mv docker-compose.convox.yml scratch/docker-compose.yml;
//! cd scratch; convox build`).

use crate::programs::command::Cmd;

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

/// `convox env --app APP [--rack RACK]`: the app's environment, in the
/// format `read::app_env` reads. Its output holds values: captured, never
/// shown.
pub fn env_cmd(app: &str, rack: Option<&str>) -> Cmd {
    let c = Cmd::new("convox").args(["env", "--app", app]);
    match rack {
        Some(r) => c.args(["--rack", r]),
        None => c,
    }
}

/// `convox rack params --rack RACK`: the rack's parameters, one `KEY VALUE`
/// a line (both generations' CLIs print them so), read by
/// `plan::platforms::rack_nodes`.
pub fn rack_params_cmd(rack: &str) -> Cmd {
    Cmd::new("convox").args(["rack", "params", "--rack", rack])
}

/// `aws ec2 describe-instance-types`: each type's architectures
/// (`ProcessorInfo.SupportedArchitectures`), as Convox's own templates
/// find them.
pub fn instance_types_cmd(types: &[String], region: Option<&str>) -> Cmd {
    let mut c = Cmd::new("aws")
        .args(["ec2", "describe-instance-types", "--instance-types"])
        .args(types.iter().map(String::as_str));
    if let Some(r) = region {
        c = c.args(["--region", r]);
    }
    c.args(["--output", "json"])
}

/// The release ID `convox build --id` prints: its last non-empty line.
pub fn release_id(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(String::from)
}
