//! Command tests for the build arguments Convox passes: the app's
//! environment (`--env-file`, `--convox-env`) and `--build-arg`, for the
//! ARGs each Dockerfile declares; values only in docker's environment.

mod common;

use common::{local, text, Fakes};
use std::fs;
use std::path::Path;
use std::process::Output;

const FILE: &str = "docker-compose.convox.yml";
const SECRET: &str = "s3cret-token-value";

/// An app whose Dockerfile declares NODE_ENV and TOKEN globally and
/// RAILS_ENV in its stage; the file passes NODE_ENV=development.
fn app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("web")).unwrap();
    fs::write(
        dir.path().join("web/Dockerfile"),
        "ARG NODE_ENV\nARG TOKEN\nFROM scratch\nARG RAILS_ENV\nCOPY . /app\n",
    )
    .unwrap();
    fs::write(
        dir.path().join(FILE),
        "web:\n  build:\n    context: ./web\n    args:\n      - NODE_ENV=development\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("app.env"),
        format!("# convox env\nNODE_ENV=production\nTOKEN={SECRET}\nUNDECLARED=nope\n"),
    )
    .unwrap();
    dir
}

fn run(fakes: &Fakes, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = fakes.command(dir);
    c.args([
        "--app",
        "demo",
        "--gitsha",
        "abc123",
        "--repo",
        local("LOCAL/demo"),
        "-o",
        "-",
    ]);
    c.args(args)
        .env("FAKE_RECORD_ENV", "NODE_ENV TOKEN RAILS_ENV UNDECLARED");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run")
}

fn build_line(fakes: &Fakes) -> String {
    fakes
        .all_call_lines()
        .into_iter()
        .find(|l| l.starts_with("docker build ") || l.starts_with("docker buildx build "))
        .expect("a build")
}

fn tag(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(local("image: LOCAL/demo:")))
        .expect("the image line")
        .to_string()
}

#[test]
fn the_apps_environment_fills_the_declared_args_over_the_files_and_never_an_argv() {
    let dir = app();
    let fakes = Fakes::new(&["docker"]);
    let out = run(&fakes, dir.path(), &["--env-file", "app.env"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let build = build_line(&fakes);
    let argv: Vec<&str> = build.split_whitespace().collect();
    let passed: Vec<&str> = argv
        .windows(2)
        .filter(|w| w[0] == "--build-arg")
        .map(|w| w[1])
        .collect();
    assert!(passed.contains(&"NODE_ENV"), "{build}");
    assert!(passed.contains(&"TOKEN"), "{build}");
    assert!(
        !build.contains("UNDECLARED"),
        "an undeclared name is not passed: {build}"
    );
    assert!(
        !build.contains("RAILS_ENV"),
        "not in the app's environment: {build}"
    );
    // The values: in docker's environment, nowhere else.
    let env = fakes.env_log();
    assert!(env.contains("docker NODE_ENV=production"), "{env}");
    assert!(env.contains(&format!("docker TOKEN={SECRET}")), "{env}");
    for line in fakes.all_call_lines() {
        assert!(
            !line.contains(SECRET) && !line.contains("production"),
            "{line}"
        );
    }
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));

    // The same value: the same tag; a changed one: a new tag.
    let again = run(
        &Fakes::new(&["docker"]),
        dir.path(),
        &["--env-file", "app.env"],
        &[],
    );
    assert_eq!(tag(&text(&again).0), tag(&stdout));
    fs::write(
        dir.path().join("app.env"),
        format!("NODE_ENV=staging\nTOKEN={SECRET}\n"),
    )
    .unwrap();
    let changed = run(
        &Fakes::new(&["docker"]),
        dir.path(),
        &["--env-file", "app.env"],
        &[],
    );
    assert_ne!(tag(&text(&changed).0), tag(&stdout));
    // Without the app's environment, the file's own value.
    let fakes = Fakes::new(&["docker"]);
    let plain = run(&fakes, dir.path(), &[], &[]);
    assert!(build_line(&fakes).contains("--build-arg NODE_ENV=development"));
    assert_ne!(tag(&text(&plain).0), tag(&stdout));
}

#[test]
fn build_arg_flags_win_and_a_bare_name_takes_this_runs_environment() {
    let dir = app();
    let fakes = Fakes::new(&["docker"]);
    let out = run(
        &fakes,
        dir.path(),
        &[
            "--env-file",
            "app.env",
            "--build-arg",
            "TOKEN=from-flag",
            "--build-arg",
            "RAILS_ENV",
        ],
        &[
            ("RAILS_ENV", "test-rails"),
            ("PLUGIN_BUILD_ARGS", "NODE_ENV=from-setting,UNDECLARED=x"),
        ],
    );
    common::ok(&out);
    let env = fakes.env_log();
    assert!(env.contains("docker TOKEN=from-flag"), "{env}");
    assert!(env.contains("docker NODE_ENV=from-setting"), "{env}");
    assert!(env.contains("docker RAILS_ENV=test-rails"), "{env}");
    let build = build_line(&fakes);
    assert!(build.contains("--build-arg RAILS_ENV "), "{build}");
    assert!(
        !build.contains("from-flag") && !build.contains("UNDECLARED"),
        "{build}"
    );
}

#[test]
fn convox_env_is_the_apps_environment_and_its_failure_is_one_error() {
    let dir = app();
    let fakes = Fakes::new(&["docker", "convox", "aws"]);
    let out = run(
        &fakes,
        dir.path(),
        &["--convox-env"],
        &[
            ("CONVOX_RACK", "acme/production"),
            // The rack is asked its nodes' platforms too.
            ("FAKE_RACK_PARAMS", "node_type  t3.large"),
            (
                "FAKE_CONVOX_ENV",
                &format!("NODE_ENV=production\nTOKEN={SECRET}"),
            ),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines = fakes.all_call_lines();
    assert_eq!(
        lines[0], "convox env --app demo --rack acme/production",
        "{lines:#?}"
    );
    assert!(fakes.env_log().contains(&format!("docker TOKEN={SECRET}")));
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));

    let before = fs::read(dir.path().join(FILE)).unwrap();
    let fakes = Fakes::new(&["docker", "convox"]);
    let out = run(
        &fakes,
        dir.path(),
        &["--convox-env", "--rack", "other"],
        &[
            ("FAKE_FAIL", "convox env"),
            ("FAKE_FAIL_MSG", "ERROR: app not found"),
        ],
    );
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("convox env --app demo --rack other"),
        "{stderr}"
    );
    assert!(stderr.contains("ERROR: app not found"), "{stderr}");
    assert!(!fakes
        .all_call_lines()
        .iter()
        .any(|l| l.starts_with("docker")));
    assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), before);
}

#[test]
fn a_bad_env_file_or_flag_is_one_error_exit_2_and_nothing_runs() {
    let dir = app();
    fs::write(
        dir.path().join("bad.env"),
        "NODE_ENV=production\nthis is not an assignment\n",
    )
    .unwrap();
    let before = fs::read(dir.path().join(FILE)).unwrap();
    for (args, says) in [
        (vec!["--env-file", "bad.env"], "bad.env:2: not NAME=VALUE"),
        (
            vec!["--env-file", "missing.env"],
            "--env-file: cannot read missing.env: No such file",
        ),
        (
            vec!["--build-arg", "BUILD_ID"],
            "--build-arg BUILD_ID: Convox's build sets it",
        ),
        (vec!["--build-arg", "BUILD_RACK"], "--rack or CONVOX_RACK"),
    ] {
        let fakes = Fakes::new(&["docker"]);
        let mut args = args.clone();
        args.push("--dry-run");
        let out = run(&fakes, dir.path(), &args[..args.len() - 1], &[]);
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(fakes.all_call_lines().is_empty());
        assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), before);
    }
}

#[test]
fn the_dry_run_names_each_arg_and_where_its_value_comes_from_never_the_value() {
    let dir = app();
    let fakes = Fakes::new(&[]);
    let out = run(
        &fakes,
        dir.path(),
        &[
            "--env-file",
            "app.env",
            "--build-arg",
            "RAILS_ENV=r",
            "--dry-run",
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("# the build args of web, by name (each value goes to docker in its environment, never in an argv): NODE_ENV (the app's environment (--env-file app.env)), RAILS_ENV (--build-arg), TOKEN (the app's environment (--env-file app.env))"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(SECRET) && !stdout.contains("production"),
        "{stdout}"
    );
    let out = run(
        &fakes,
        dir.path(),
        &["--convox-env", "--dry-run"],
        &[("CONVOX_RACK", "r1")],
    );
    let stdout = text(&out).0;
    assert!(
        stdout.contains("convox env --app demo --rack r1 (not run in a dry run"),
        "{stdout}"
    );
}

#[test]
fn a_builder_that_pushes_itself_gets_the_names_and_the_values_in_its_environment() {
    let dir = app();
    let fakes = Fakes::new(&["docker"]);
    let out = run(
        &fakes,
        dir.path(),
        &["--env-file", "app.env", "--builder", "bk"],
        &[
            (
                "FAKE_BUILDX_INSPECT",
                "Name: NAME\nDriver: remote\n\nNodes:\nName: NAME0\nBuildkit: v0.32.2\n",
            ),
            ("FAKE_VERSIONS", "28.2.2|28.2.2"),
        ],
    );
    common::ok(&out);
    let build = build_line(&fakes);
    assert!(build.starts_with("docker buildx build"), "{build}");
    assert!(build.contains("--build-arg TOKEN "), "{build}");
    assert!(!build.contains(SECRET));
    assert!(fakes.env_log().contains(&format!("docker TOKEN={SECRET}")));
}

/// A current rack's `convox.yml` gets them too: its service's build (the
/// app root, `manifest: Dockerfile`) takes the declared ARG from the app's
/// environment.
#[test]
fn a_convox_yml_app_gets_the_args_convox_would_pass() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nARG NODE_ENV\nCOPY . /app\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("convox.yml"),
        "services:\n  web:\n    build: .\n    port: 3000\n",
    )
    .unwrap();
    fs::write(dir.path().join("app.env"), "NODE_ENV=production\n").unwrap();
    let fakes = Fakes::new(&["docker"]);
    let out = run(
        &fakes,
        dir.path(),
        &["-f", "convox.yml", "--env-file", "app.env"],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        build_line(&fakes).contains("--build-arg NODE_ENV "),
        "{}",
        build_line(&fakes)
    );
    assert!(fakes.env_log().contains("docker NODE_ENV=production"));
    assert!(stdout.contains(local("image: LOCAL/demo:")), "{stdout}");
}
