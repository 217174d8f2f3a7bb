//! `convox env`, whose output is the app's environment (`--convox-env`);
//! `convox rack params` and `aws ec2 describe-instance-types`, for the
//! platforms a rack's nodes run;
//! `convox builds import-image`, a current rack's release from images alone;
//! and `convox build` as a value: the release step that `--convox-build` runs
//! after the rewrite (`running::release` runs it), on the rewritten file
//! alone, as the old pipeline's "cane" step did by hand
//! (`mkdir scratch; mv docker-compose.convox.yml scratch/docker-compose.yml;
//! cd scratch; convox build`).

use crate::programs::command::Cmd;

/// `convox build DIR --app APP [--rack RACK] --description DESC --id`.
pub fn build_cmd(dir: &str, app: &str, rack: Option<&str>, description: &str) -> Cmd {
    let c = Cmd::new("convox").args(["build", dir, "--app", app]);
    let c = match rack {
        Some(r) => c.args(["--rack", r]),
        None => c,
    };
    c.args(["--description", description, "--id"])
}

/// `convox builds import-image SOURCE -a APP [-r RACK] -m MANIFEST
/// [--src-creds-user USER --src-creds-pass-stdin]` (convox/convox 3.24.6+,
/// `pkg/cli/builds.go`): the rack copies each service's `image:` (SOURCE
/// for a service without one) with skopeo in its API pod, then makes a
/// release; no build pod. The password, when the source needs one, comes
/// on stdin, never in argv.
pub fn import_image_cmd(
    source: &str,
    app: &str,
    rack: Option<&str>,
    manifest: &str,
    creds_user: Option<&str>,
) -> Cmd {
    let c = Cmd::new("convox").args(["builds", "import-image", source, "-a", app]);
    let c = match rack {
        Some(r) => c.args(["-r", r]),
        None => c,
    };
    let c = c.args(["-m", manifest]);
    match creds_user {
        Some(u) => c.args(["--src-creds-user", u, "--src-creds-pass-stdin"]),
        None => c,
    }
}

/// Did `convox builds import-image` fail because the rack or the CLI does
/// not have it? The rack before 3.24.6: "convox builds import-image requires
/// rack version 3.24.6 or later" (`pkg/cli/version_gate.go`); a CLI
/// without the command reads it as `convox builds` and refuses the rest
/// ("unknown flag", "0 args required": the stdcli vendored there).
pub fn import_unavailable(stderr: &str) -> bool {
    [
        "requires rack version",
        "unknown flag",
        "args required",
        "arg required",
        "unknown command",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

/// The release `convox builds import-image` prints: `Release: R…` (tags
/// like `<release>` removed, as stdcli shows them on a terminal).
pub fn import_release(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Release:")?;
        let id = rest
            .replace("<release>", "")
            .replace("</release>", "")
            .trim()
            .to_string();
        (!id.is_empty()).then_some(id)
    })
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

/// `convox apps params --app APP --rack RACK`: the app's parameters, a
/// `NAME VALUE` table (`BuildArch    arm64`), read by
/// `plan::platforms::build_arch`.
pub fn apps_params_cmd(app: &str, rack: &str) -> Cmd {
    Cmd::new("convox").args(["apps", "params", "--app", app, "--rack", rack])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_imports_release_and_why_it_may_be_unavailable() {
        let out = "Creating build... OK, BABC\nBuild:   BABC\nRelease: <release>RXYZ</release>\n";
        assert_eq!(import_release(out).as_deref(), Some("RXYZ"));
        assert_eq!(import_release("Release: RQ\n").as_deref(), Some("RQ"));
        assert!(import_release("Build: B\n").is_none());
        assert!(import_unavailable(
            "ERROR: convox builds import-image requires rack version 3.24.6 or later"
        ));
        assert!(!import_unavailable("ERROR: import failed: denied"));
        let c = import_image_cmd(
            "r/a:t",
            "app",
            Some("acme/prod"),
            "/d/convox.yml",
            Some("AWS"),
        );
        assert_eq!(
            c.to_string(),
            "convox builds import-image r/a:t -a app -r acme/prod -m /d/convox.yml --src-creds-user AWS --src-creds-pass-stdin"
        );
    }
}
