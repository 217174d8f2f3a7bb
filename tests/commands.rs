//! Command tests: the real binary, with fake `docker` and `aws` first on PATH.

mod common;

use common::{fixture, local, text, Fakes, PASSWORD};
use std::fs;
use std::path::Path;

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo";
const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const FILE: &str = "docker-compose.convox.yml";

fn run(
    fakes: &Fakes,
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    fakes.run(dir, args, env)
}

/// `run`, which must succeed: its (stdout, stderr).
fn run_ok(
    fakes: &Fakes,
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (String, String) {
    let out = run(fakes, dir, args, env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

/// Run the binary on a fresh copy of the demo fixture, with fakes for
/// `programs`.
fn run_demo(
    programs: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> (Fakes, tempfile::TempDir, std::process::Output) {
    let fakes = Fakes::new(programs);
    let dir = fixture("demo");
    let out = run(&fakes, dir.path(), args, env);
    (fakes, dir, out)
}

/// The demo fixture's file in `dir` is as bundled: the run left it alone.
fn assert_demo_untouched(dir: &Path) {
    assert_eq!(
        fs::read(dir.join(FILE)).unwrap(),
        fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/demo")
                .join(FILE)
        )
        .unwrap()
    );
}

/// The old tool's tag template, so that tags are readable in assertions;
/// the default (content digest) template has tests of its own.
fn standard_args(repo: &str) -> Vec<&str> {
    vec![
        "--app",
        "demo",
        "--gitsha",
        "abc123",
        "--repo",
        repo,
        "--tag",
        "temp_{app}_{service}_{gitsha}",
    ]
}

/// The calls but the kept image's question, which runs beside the
/// registry's questions (its place among them is not fixed).
fn calls_but_kept(fakes: &Fakes) -> Vec<String> {
    fakes
        .call_lines()
        .into_iter()
        .filter(|l| l != "docker manifest inspect --verbose convox/redis")
        .collect()
}

/// The calls that ask the registry whether a tag exists run in parallel:
/// take them out (sorted) and leave the rest in order.
fn split_checks(lines: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (_, lines) = read_backs(lines);
    let (mut checks, rest): (Vec<String>, Vec<String>) = lines
        .into_iter()
        .partition(|l| l.contains("batch-get-image") || l.contains("manifest inspect"));
    checks.sort();
    (checks, rest)
}

/// The read-backs of what was pushed (`docker manifest inspect` after the
/// first push), sorted, and the other calls.
fn read_backs(lines: Vec<String>) -> (Vec<String>, Vec<String>) {
    let first_push = lines
        .iter()
        .position(|l| l.starts_with("docker push") || l.contains(" --push "))
        .unwrap_or(lines.len());
    let mut backs = Vec::new();
    let mut rest = Vec::new();
    for (i, l) in lines.into_iter().enumerate() {
        if i > first_push && l.starts_with("docker manifest inspect") {
            backs.push(l);
        } else {
            rest.push(l);
        }
    }
    backs.sort();
    (backs, rest)
}

#[test]
fn ecr_run_sets_up_logs_in_builds_once_per_shared_build_and_pushes_every_ref() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let mut args = standard_args(ECR);
    args.extend(["--jobs", "1"]);
    let (_, stderr) = run_ok(&fakes, dir.path(), &args, &[]);
    let r = |s: &str| format!("{ECR}:temp_demo_{s}_abc123");
    let (checks, rest) = split_checks(fakes.call_lines());
    // One ECR API call asks about every tag, before the set-up and login,
    // which a run with nothing to build skips.
    // And the kept image is asked which platforms it offers.
    let tag = |s: &str| format!("imageTag=temp_demo_{s}_abc123");
    assert_eq!(
        checks,
        vec![format!(
            "aws ecr batch-get-image --repository-name demo --image-ids {} {} {} --accepted-media-types application/vnd.docker.distribution.manifest.v2+json application/vnd.oci.image.manifest.v1+json application/vnd.docker.distribution.manifest.list.v2+json application/vnd.oci.image.index.v1+json --region us-east-1 --output json",
            tag("web"),
            tag("worker"),
            tag("api")
        ), "docker manifest inspect --verbose convox/redis".to_string()]
    );
    assert!(calls_but_kept(&fakes)[0].starts_with("aws ecr batch-get-image"));
    let web_digest = offcluster::inputs::digest::digest(
        &offcluster::read::compose::BuildSpec {
            context: dir.path().join("web").display().to_string(),
            dockerfile: Some(dir.path().join("web/Dockerfile").display().to_string()),
            args: vec![],
            target: None,
            // Convox's default, which every build now names.
            platform: Some("linux/amd64".into()),
            ..Default::default()
        },
        &|_| None,
    )
    .unwrap();
    // The labels go on one LABEL line added to the Dockerfile on stdin.
    let original = fs::read_to_string(dir.path().join("web/Dockerfile")).unwrap();
    assert_eq!(
        fakes.dockerfile("temp_demo_web_abc123").unwrap(),
        format!("{original}\nLABEL \"org.opencontainers.image.title\"=\"demo\" \"org.opencontainers.image.revision\"=\"abc123\" \"com.convox.off-cluster.digest\"=\"blake3:{web_digest}\"\n")
    );
    assert_eq!(
        rest,
        // ECR answered, so the repository exists: it is not described.
        vec![
            "aws ecr get-login-password --region us-east-1".to_string(),
            format!("docker login --username AWS --password-stdin {HOST}"),
            format!(
                "docker build -f - -t {} --platform linux/amd64 web",
                r("web")
            ),
            format!("docker tag {} {}", r("web"), r("worker")),
            format!("docker push {}", r("web")),
            format!("docker push {}", r("worker")),
            format!(
                "docker build -f - -t {} --build-arg RELEASE=dev --platform linux/amd64 api",
                r("api")
            ),
            format!("docker push {}", r("api")),
        ]
    );
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    insta::assert_snapshot!("demo_rewritten", written);
    insta::assert_snapshot!("demo_summary", stderr.split("done:\n").nth(1).unwrap_or(""));
    assert!(stderr.contains("[web] Step 1/2 : FROM scratch"), "{stderr}");
}

#[test]
fn a_missing_repository_is_created() {
    let (fakes, _dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args(ECR),
        &[("FAKE_NO_REPO", "1")],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    // The ECR question said RepositoryNotFoundException: created at once
    // (no describe-repositories), beside the login (the kept image's
    // question runs beside the builds, in no fixed place).
    let lines: Vec<String> = fakes
        .call_lines()
        .into_iter()
        .filter(|l| !l.ends_with(" convox/redis"))
        .collect();
    assert!(lines[0].starts_with("aws ecr batch-get-image"), "{lines:?}");
    // Created before the first build (the cache repository's set-up and the
    // login run beside it, in no fixed order).
    let at = |wanted: &dyn Fn(&str) -> bool| lines.iter().position(|l| wanted(l));
    let created = at(&|l| {
        l == "aws ecr create-repository --repository-name demo --region us-east-1 --output json"
    })
    .unwrap_or_else(|| panic!("no create-repository of demo: {lines:?}"));
    let first_build = at(&|l| l.starts_with("docker build")).expect("a build");
    assert!(created < first_build, "{lines:?}");
    assert!(at(&|l| l.starts_with("aws ecr get-login-password")).is_some_and(|i| i < first_build));
    assert!(!lines.iter().any(|l| l.contains("describe-repositories")));
}

#[test]
fn a_repository_another_run_created_meanwhile_is_fine() {
    let (fakes, _dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args(ECR),
        &[
            ("FAKE_NO_REPO", "1"),
            ("FAKE_FAIL", "create-repository"),
            (
                "FAKE_FAIL_MSG",
                "An error occurred (RepositoryAlreadyExistsException) when calling the CreateRepository operation",
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(calls_starting(&fakes, "docker push").len(), 3);
}

#[test]
fn a_bare_name_takes_the_account_from_sts_and_the_region_from_the_environment() {
    let (fakes, dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args("demo"),
        &[("AWS_REGION", "eu-west-1")],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let lines = calls_but_kept(&fakes);
    assert_eq!(lines[0], "aws sts get-caller-identity --output json");
    assert!(
        lines[1].starts_with("aws ecr batch-get-image --repository-name demo "),
        "{lines:?}"
    );
    assert!(
        lines[1].ends_with(" --region eu-west-1 --output json"),
        "{lines:?}"
    );
    let host = "210987654321.dkr.ecr.eu-west-1.amazonaws.com";
    assert!(lines.contains(&format!(
        "docker login --username AWS --password-stdin {host}"
    )));
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        written.contains(&format!("image: {host}/demo:temp_demo_api_abc123\n")),
        "{written}"
    );
}

#[test]
fn a_bare_name_without_a_region_is_a_usage_error() {
    let (fakes, _dir, out) = run_demo(&["docker", "aws"], &standard_args("demo"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--region"));
    assert!(fakes.calls().is_empty());
}

#[test]
fn registry_host_replaces_the_push_host_but_not_the_ecr_calls() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let mut args = standard_args(ECR);
    args.extend(["--registry-host", local("LOCAL")]);
    let out = run(&fakes, dir.path(), &args, &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let lines = calls_but_kept(&fakes);
    assert!(lines[0].contains("--region us-east-1"));
    assert_eq!(
        lines[2],
        local("docker login --username AWS --password-stdin LOCAL")
    );
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(written.contains(local("image: LOCAL/demo:temp_demo_web_abc123")));
}

#[test]
fn another_registry_runs_no_aws_command_and_no_login() {
    let (fakes, _dir, out) = run_demo(&["docker"], &standard_args(local("LOCAL/demo")), &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let lines = fakes.call_lines();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("docker ") && !l.starts_with("docker login")),
        "{lines:?}"
    );
    let (checks, rest) = split_checks(lines);
    // One per tag, and one for the kept image's platforms.
    assert_eq!(checks.len(), 4);
    assert_eq!(
        checks
            .iter()
            .filter(|c| c.starts_with(local(
                "docker manifest inspect --verbose --insecure LOCAL/demo:"
            )))
            .count(),
        3,
        "{checks:?}"
    );
    assert!(checks.contains(&"docker manifest inspect --verbose convox/redis".to_string()));
    assert_eq!(rest.len(), 6);
}

#[test]
fn the_password_reaches_docker_only_on_stdin() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let mut args = standard_args(ECR);
    args.push("--verbose");
    let out = run(&fakes, dir.path(), &args, &[]);
    assert!(out.status.success());
    assert_eq!(
        fakes.login_stdin().as_deref().map(str::trim),
        Some(PASSWORD)
    );
    assert!(fakes
        .calls()
        .iter()
        .flatten()
        .all(|a| !a.contains(PASSWORD)));
    let (stdout, stderr) = text(&out);
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
    assert!(
        stderr.contains("+ aws ecr get-login-password --region us-east-1 | docker login"),
        "{stderr}"
    );
}

#[test]
fn a_failed_login_never_shows_the_password() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    // The fake echoes its failure message; make it contain the password, as a
    // careless daemon might.
    let msg = format!("bad password {PASSWORD}");
    let out = run(
        &fakes,
        dir.path(),
        &standard_args(ECR),
        &[("FAKE_FAIL", "docker login"), ("FAKE_FAIL_MSG", &msg)],
    );
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = text(&out);
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "{stderr}"
    );
    assert!(stderr.contains("bad password ***"), "{stderr}");
}

#[test]
fn a_failure_at_each_step_exits_1_names_the_command_and_leaves_the_file_untouched() {
    let steps = [
        // (The ECR question fails too, so the repository is described.)
        (
            "--repository-name",
            "aws ecr describe-repositories --repository-names demo",
        ),
        (
            "get-login-password",
            "aws ecr get-login-password --region us-east-1",
        ),
        (
            "docker login",
            "docker login --username AWS --password-stdin",
        ),
        (
            "temp_demo_web_abc123 --platform linux/amd64 web",
            "{ cat web/Dockerfile; printf",
        ),
        ("docker tag", "docker tag"),
        ("docker push", "docker push"),
        (
            "temp_demo_api_abc123 --build-arg",
            "{ cat api/Dockerfile.api; printf",
        ),
        (
            "push 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo:temp_demo_api",
            "docker push",
        ),
    ];
    for (fail, named) in steps {
        let fakes = Fakes::new(&["docker", "aws"]);
        let dir = fixture("demo");
        let before = fs::read(dir.path().join(FILE)).unwrap();
        let out = run(
            &fakes,
            dir.path(),
            &standard_args(ECR),
            // "denied" makes a push failure permanent, so it is not retried here.
            &[
                ("FAKE_FAIL", fail),
                ("FAKE_FAIL_MSG", "failing on purpose (denied)"),
            ],
        );
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{fail}: {stderr}");
        assert!(stderr.contains(named), "{fail}: {stderr}");
        assert!(
            stderr.contains("failing on purpose"),
            "{fail}: the stderr tail is missing: {stderr}"
        );
        assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), before, "{fail}");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            3,
            "{fail}: a stray file was left"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn dry_run_starts_no_process_and_writes_nothing() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let before = fs::read(dir.path().join(FILE)).unwrap();
    let mut args = standard_args(ECR);
    args.push("--dry-run");
    let out = run(&fakes, dir.path(), &args, &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(fakes.calls().is_empty(), "{:?}", fakes.calls());
    assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), before);
    insta::assert_snapshot!("demo_dry_run", text(&out).0);
}

#[test]
fn dry_run_of_a_bare_name_shows_where_the_account_comes_from() {
    let fakes = Fakes::new(&[]);
    let dir = fixture("demo");
    let mut args = standard_args("demo");
    args.extend(["--dry-run", "--region", "us-west-2"]);
    let (stdout, _) = run_ok(&fakes, dir.path(), &args, &[]);
    assert!(stdout.contains(
        "# ACCOUNT_ID is the Account printed by: aws sts get-caller-identity --output json"
    ));
    assert!(stdout.contains("--password-stdin ACCOUNT_ID.dkr.ecr.us-west-2.amazonaws.com\n"));
}

#[test]
fn missing_docker_is_named_before_anything_runs() {
    let (fakes, _dir, out) = run_demo(&["aws"], &standard_args(ECR), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("`docker` is not on PATH"),
        "{}",
        text(&out).1
    );
    assert!(fakes.calls().is_empty());
}

#[test]
fn missing_aws_is_named_before_anything_runs() {
    let (fakes, _dir, out) = run_demo(&["docker"], &standard_args(ECR), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("`aws` is not on PATH"));
    assert!(fakes.calls().is_empty());
}

#[test]
fn the_old_tools_drone_step_runs_unchanged() {
    let (fakes, dir, out) = run_demo(
        &["docker"],
        &[
            "-app=demo",
            "-description=feature/x",
            "-gitsha=abc123",
            "-repo",
            local("LOCAL/demo"),
            "-build-id=12",
        ],
        &[],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: -build-id is accepted"),
        "{stderr}"
    );
    let dockerfile = fakes.dockerfile(&fakes.built_tag("web").unwrap()).unwrap();
    assert!(
        dockerfile.contains(r#""org.opencontainers.image.description"="feature/x""#),
        "{dockerfile}"
    );
    // The default tag carries the build's content digest; web and worker
    // share one build, so one digest.
    let digest = build_digest(&dockerfile);
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        written.contains(local(&format!(
            "image: LOCAL/demo:temp_demo_web_{}",
            &digest[..16]
        ))),
        "{written}"
    );
    assert!(
        written.contains(local(&format!(
            "image: LOCAL/demo:temp_demo_worker_{}",
            &digest[..16]
        ))),
        "{written}"
    );
}

/// The digest in a Dockerfile's label line.
fn build_digest(dockerfile: &str) -> String {
    let (_, rest) = dockerfile
        .split_once("\"com.convox.off-cluster.digest\"=\"blake3:")
        .expect("a digest label");
    rest.chars().take(64).collect()
}

#[test]
fn drone_variables_supply_the_commit_and_description() {
    let (fakes, _dir, out) = run_demo(
        &["docker"],
        &["--app", "demo", "--repo", local("LOCAL/demo")],
        &[
            ("DRONE_COMMIT_SHA", "d00dfeed"),
            ("DRONE_COMMIT_BRANCH", "main"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let tag = fakes.built_tag("web").unwrap();
    let build = fakes.dockerfile(&tag).unwrap();
    let digest = build_digest(&build);
    assert_eq!(tag, format!("temp_demo_web_{}", &digest[..16]));
    assert!(
        build.contains(r#""org.opencontainers.image.revision"="d00dfeed""#),
        "{build}"
    );
    assert!(
        build.contains(r#""org.opencontainers.image.description"="main""#),
        "{build}"
    );
}

#[test]
fn output_to_stdout_leaves_the_file_untouched() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    let before = fs::read(dir.path().join(FILE)).unwrap();
    let mut args = standard_args(local("LOCAL/demo"));
    args.extend(["-o", "-"]);
    let out = run(&fakes, dir.path(), &args, &[]);
    assert!(out.status.success());
    assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), before);
    assert!(text(&out)
        .0
        .contains(local("image: LOCAL/demo:temp_demo_api_abc123")));
}

#[test]
fn an_unwritable_output_is_reported_before_any_build() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    let mut args = standard_args(local("LOCAL/demo"));
    args.extend(["-o", "no/such/dir/out.yml"]);
    let out = run(&fakes, dir.path(), &args, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("cannot write no/such/dir/out.yml"),
        "{}",
        text(&out).1
    );
    assert!(fakes.calls().is_empty());
}

#[test]
fn build_arg_values_from_the_environment_are_in_no_argv_and_no_output() {
    let fakes = Fakes::new(&["docker"]);
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("app")).unwrap();
    fs::write(dir.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
    fs::write(
        dir.path().join(FILE),
        "web:\n  build:\n    context: ./app\n    args:\n      - NPM_TOKEN\n      - API_KEY=${SECRET_KEY}\n",
    )
    .unwrap();
    let env = [
        ("NPM_TOKEN", "npm-secret-value-1"),
        ("SECRET_KEY", "api-secret-value-2"),
        ("FAKE_RECORD_ENV", "NPM_TOKEN API_KEY"),
    ];
    for extra in [&[][..], &["--dry-run"][..], &["--verbose"][..]] {
        let mut args = standard_args(local("LOCAL/demo"));
        args.extend(extra);
        args.extend(["-o", "-"]);
        let (stdout, stderr) = run_ok(&fakes, dir.path(), &args, &env);
        for secret in ["npm-secret-value-1", "api-secret-value-2"] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{extra:?}"
            );
            assert!(fakes.calls().iter().flatten().all(|a| !a.contains(secret)));
        }
    }
    let build = fakes
        .call_lines()
        .into_iter()
        .find(|l| l.starts_with("docker build"))
        .unwrap();
    assert!(
        build.contains("--build-arg NPM_TOKEN --build-arg API_KEY "),
        "{build}"
    );
    // docker still gets both values, through its environment.
    let env_log = fakes.env_log();
    assert!(
        env_log.contains("docker NPM_TOKEN=npm-secret-value-1"),
        "{env_log}"
    );
    assert!(
        env_log.contains("docker API_KEY=api-secret-value-2"),
        "{env_log}"
    );
}

#[test]
fn usage_mistakes_exit_2() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    for args in [
        vec!["--repo", "r.io/x"],
        vec!["--app", "demo", "--repo", "r.io/x", "--tag", "{nope}"],
        vec!["--app", "demo", "--repo", "r.io/x:tag"],
        vec!["--app", "demo", "--repo", "r.io/x", "--no-such-flag"],
        vec!["--app", "demo", "--repo", "r.io/x", "--tag", "same"],
    ] {
        let out = run(&fakes, dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out).1);
        assert!(fakes.calls().is_empty());
    }
}

#[test]
fn a_file_error_names_the_file_and_exits_1_without_running_anything() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    fs::write(dir.path().join(FILE), "web:\n  build: ./nowhere\n").unwrap();
    let out = run(&fakes, dir.path(), &standard_args(local("LOCAL/demo")), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(stderr.contains("docker-compose.convox.yml:1:1: service `web`: the build context nowhere is not a directory"), "{stderr}");
    assert!(fakes.calls().is_empty());
}

#[test]
fn help_and_version() {
    let fakes = Fakes::new(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = run(&fakes, dir.path(), &["--help"], &[]);
    assert!(out.status.success());
    insta::assert_snapshot!("help", text(&out).0);
    let out = run(&fakes, dir.path(), &["--version"], &[]);
    assert_eq!(
        text(&out).0,
        format!("convox-build-off-cluster {}\n", env!("CARGO_PKG_VERSION"))
    );
}

fn failing(
    fail: &str,
    msg: &str,
    extra_env: &[(&str, &str)],
) -> (Fakes, std::process::Output, Vec<u8>, tempfile::TempDir) {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let before = fs::read(dir.path().join(FILE)).unwrap();
    let mut env = vec![("FAKE_FAIL", fail), ("FAKE_FAIL_MSG", msg)];
    env.extend_from_slice(extra_env);
    // One build at a time, so the order of the calls is known.
    let mut args = standard_args(ECR);
    args.extend(["--jobs", "1"]);
    let out = run(&fakes, dir.path(), &args, &env);
    (fakes, out, before, dir)
}

fn assert_failed_untouched(
    out: &std::process::Output,
    before: &[u8],
    dir: &std::path::Path,
    wants: &[&str],
) {
    let stderr = text(out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for w in wants {
        assert!(stderr.contains(w), "wants {w:?} in: {stderr}");
    }
    assert_eq!(fs::read(dir.join(FILE)).unwrap(), before);
}

#[test]
fn an_unreachable_docker_daemon_is_named_with_a_hint() {
    let msg = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?";
    let (fakes, out, before, dir) = failing("docker build", msg, &[]);
    assert_failed_untouched(
        &out,
        &before,
        dir.path(),
        &[
            "{ cat web/Dockerfile; printf",
            msg,
            "start it, or point DOCKER_HOST",
        ],
    );
    assert_eq!(
        calls_starting(&fakes, "docker build").len(),
        1,
        "builds are never retried"
    );
}

#[test]
fn expired_credentials_are_called_expired() {
    let msg = "An error occurred (ExpiredTokenException) when calling the GetAuthorizationToken operation: The security token included in the request is expired";
    let (_, out, before, dir) = failing("get-login-password", msg, &[]);
    assert_failed_untouched(
        &out,
        &before,
        dir.path(),
        &[
            "aws ecr get-login-password --region us-east-1",
            "ExpiredTokenException",
            "credentials have expired",
        ],
    );
}

#[test]
fn a_denied_create_repository_says_which_permission() {
    let msg = "An error occurred (AccessDeniedException) when calling the CreateRepository operation: not authorized to perform: ecr:CreateRepository";
    let (fakes, out, before, dir) = failing("create-repository", msg, &[("FAKE_NO_REPO", "1")]);
    assert_failed_untouched(
        &out,
        &before,
        dir.path(),
        &[
            "aws ecr create-repository --repository-name demo",
            "AccessDeniedException",
            "need ecr:CreateRepository",
        ],
    );
    assert!(fakes
        .call_lines()
        .iter()
        .all(|l| !l.starts_with("docker build") && !l.starts_with("docker push")));
}

#[test]
fn a_transient_push_failure_is_retried_with_backoff() {
    let msg = "net/http: TLS handshake timeout";
    let (fakes, out, _, dir) = failing("docker push", msg, &[("FAKE_FAIL_TIMES", "2")]);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    let pushes: Vec<String> = fakes
        .call_lines()
        .into_iter()
        .filter(|l| l.starts_with("docker push"))
        .collect();
    assert_eq!(pushes[0], pushes[1]);
    assert_eq!(pushes[1], pushes[2]);
    assert_eq!(
        pushes.len(),
        5,
        "3 attempts for the first ref, then one each: {pushes:?}"
    );
    assert!(
        stderr.contains("push failed (attempt 1 of 4); retrying in 1 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("push failed (attempt 2 of 4); retrying in 2 s"),
        "{stderr}"
    );
    assert!(fs::read_to_string(dir.path().join(FILE))
        .unwrap()
        .contains("image: "));
}

#[test]
fn a_push_that_keeps_failing_gives_up_after_three_retries() {
    let (fakes, out, before, dir) = failing("docker push", "connection reset by peer", &[]);
    assert_failed_untouched(
        &out,
        &before,
        dir.path(),
        &[
            "docker push 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo:temp_demo_web_abc123",
            "connection reset by peer",
            "attempt 3 of 4",
        ],
    );
    assert_eq!(calls_starting(&fakes, "docker push").len(), 4);
}

#[test]
fn a_denied_push_fails_at_once() {
    let msg = "denied: requested access to the resource is denied";
    let (fakes, out, before, dir) = failing("docker push", msg, &[]);
    assert_failed_untouched(&out, &before, dir.path(), &[msg, "no permission to push"]);
    assert_eq!(calls_starting(&fakes, "docker push").len(), 1);
}

#[test]
fn a_registry_without_the_repository_is_named() {
    let msg = "name unknown: repository name not known to registry";
    let (fakes, out, before, dir) = failing("docker push", msg, &[]);
    assert_failed_untouched(
        &out,
        &before,
        dir.path(),
        &[msg, "the repository does not exist in that registry"],
    );
    assert_eq!(calls_starting(&fakes, "docker push").len(), 1);
}

#[test]
fn a_second_run_on_the_same_file_fails_clearly_while_the_first_holds_the_lock() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let before = fs::read(dir.path().join(FILE)).unwrap();
    // Stand in for a first run: hold the lock it would hold (on the file).
    let held = fs::File::open(dir.path().join(FILE)).unwrap();
    held.lock().unwrap();
    let out = run(&fakes, dir.path(), &standard_args(ECR), &[]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is being rewritten by another run"),
        "{stderr}"
    );
    assert!(fakes.calls().is_empty());
    assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), before);
    drop(held);
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let files_before = names(dir.path());
    let out = run(&fakes, dir.path(), &standard_args(ECR), &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        names(dir.path()),
        files_before,
        "no file of this program's is left (or made) in the app's directory"
    );
}

#[test]
fn the_rewrite_keeps_permissions_and_writes_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    fs::rename(dir.path().join(FILE), dir.path().join("real.yml")).unwrap();
    std::os::unix::fs::symlink("real.yml", dir.path().join(FILE)).unwrap();
    fs::set_permissions(
        dir.path().join("real.yml"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let out = run(&fakes, dir.path(), &standard_args(local("LOCAL/demo")), &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(fs::symlink_metadata(dir.path().join(FILE))
        .unwrap()
        .file_type()
        .is_symlink());
    let real = dir.path().join("real.yml");
    assert!(fs::read_to_string(&real)
        .unwrap()
        .contains(local("image: LOCAL/demo:temp_demo_web_abc123")));
    assert_eq!(
        fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

const ALL_TAGS: &str = "temp_demo_web_abc123 temp_demo_worker_abc123 temp_demo_api_abc123";

fn calls_starting(fakes: &Fakes, prefix: &str) -> Vec<String> {
    fakes
        .call_lines()
        .into_iter()
        .filter(|l| l.starts_with(prefix))
        .collect()
}

#[test]
fn a_services_platform_goes_to_its_build_and_the_others_are_linux_amd64() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("app")).unwrap();
    fs::write(dir.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
    fs::write(
        dir.path().join(FILE),
        "services:\n  web:\n    build: ./app\n    platform: linux/arm64\n  worker:\n    build: ./app\n",
    )
    .unwrap();
    let fakes = Fakes::new(&["docker"]);
    // The engine's BuildKit (a 20.10 client has it built in): it can build
    // for another platform.
    let env = [
        ("DOCKER_BUILDKIT", "1"),
        ("FAKE_VERSIONS", "20.10.24|20.10.24|linux/amd64"),
    ];
    let out = run(
        &fakes,
        dir.path(),
        &standard_args(local("LOCAL/demo")),
        &env,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let builds = calls_starting(&fakes, "docker build");
    let platform_of = |service: &str| {
        let b = builds
            .iter()
            .find(|b| b.contains(&format!("temp_demo_{service}_abc123 ")))
            .unwrap_or_else(|| panic!("{service}'s build in {builds:?}"));
        b.split(" --platform ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .map(String::from)
    };
    assert_eq!(builds.len(), 2, "{builds:?}");
    assert_eq!(platform_of("web").as_deref(), Some("linux/arm64"));
    assert_eq!(platform_of("worker").as_deref(), Some("linux/amd64"));
}

#[test]
fn two_platforms_on_the_engines_buildkit_are_built_one_by_one_and_joined_into_one_index() {
    let repo = format!("{}/demo", common::refused_loopback());
    let mut args = standard_args(&repo);
    args.extend(["--platform", "linux/arm64,linux/amd64"]);
    // A 20.10 client (BuildKit built in) on an engine 24: the registry
    // cache is on.
    let env = [
        ("DOCKER_BUILDKIT", "1"),
        ("FAKE_VERSIONS", "20.10.24|24.0.7|linux/amd64"),
    ];
    let (fakes, dir, out) = run_demo(&["docker"], &args, &env);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    let lines = fakes.all_call_lines();
    let of =
        |prefix: &str| -> Vec<&String> { lines.iter().filter(|l| l.starts_with(prefix)).collect() };
    // Each platform alone, under its own tag in the cache repository, with
    // that platform's registry cache.
    let (stages, builds): (Vec<&String>, Vec<&String>) = of("docker build ")
        .into_iter()
        .partition(|b| b.contains(" --target "));
    assert_eq!(builds.len(), 4, "{builds:#?}");
    // api's build stage too, per platform, before its build.
    for platform in ["linux-amd64", "linux-arm64"] {
        let stage = format!("-t {repo}-cache:demo_api-base.{platform} ");
        let at = |l: &String| lines.iter().position(|x| x == l);
        let s = stages
            .iter()
            .find(|b| b.contains(&stage))
            .unwrap_or_else(|| panic!("{stage} in {stages:#?}"));
        let b = builds
            .iter()
            .find(|b| b.contains(&format!("-t {repo}-cache:demo_api.{platform} ")))
            .unwrap();
        assert!(at(s) < at(b), "{lines:#?}");
    }
    assert_eq!(stages.len(), 2, "{stages:#?}");
    for service in ["api", "web"] {
        for platform in ["linux/amd64", "linux/arm64"] {
            let part = format!("{repo}-cache:demo_{service}.{}", platform.replace('/', "-"));
            let build = builds
                .iter()
                .find(|b| b.contains(&format!("-t {part} ")))
                .unwrap_or_else(|| panic!("{part} in {builds:#?}"));
            assert_eq!(build.matches(" --platform ").count(), 1, "{build}");
            assert!(
                build.contains(&format!(" --platform {platform} ")),
                "{build}"
            );
            assert!(build.contains(&format!(" --cache-from {part} ")), "{build}");
            assert!(build.contains("BUILDKIT_INLINE_CACHE=1"), "{build}");
            assert!(lines.contains(&format!("docker push {part}")), "{lines:#?}");
        }
        // One index of both, each part named by the digest its push
        // printed; no image pushed under the build's tag but the index.
        let tag = format!("{repo}:temp_demo_{service}_abc123");
        let digest = |platform: &str| {
            let part = format!("{repo}-cache:demo_{service}.{platform}");
            let d = fakes.digest_of(&part);
            format!("{repo}-cache@{d}")
        };
        assert!(
            lines.contains(&format!(
                "docker manifest create --insecure {tag} {} {}",
                digest("linux-amd64"),
                digest("linux-arm64")
            )),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&format!("docker manifest push --purge --insecure {tag}")),
            "{lines:#?}"
        );
        assert!(!lines.contains(&format!("docker push {tag}")), "{lines:#?}");
    }
    assert!(of("docker tag").is_empty(), "{lines:#?}");
    // The read-back found both platforms, and the file names the indexes.
    let file = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        file.contains(&format!("image: {repo}:temp_demo_web_abc123")),
        "{file}"
    );
    // The dry run shows the same.
    let fresh = fixture("demo");
    let (dry, _) = run_ok(
        &fakes,
        fresh.path(),
        &[&args[..], &["--dry-run"]].concat(),
        &env,
    );
    assert!(
        dry.contains("the engine keeps one platform per image"),
        "{dry}"
    );
    assert!(
        dry.contains(&format!("docker manifest create --insecure {repo}:temp_demo_web_abc123 {repo}-cache:demo_web.linux-amd64 {repo}-cache:demo_web.linux-arm64 && docker manifest push --purge --insecure {repo}:temp_demo_web_abc123")),
        "{dry}"
    );
}

/// With buildx on the client (engine 26's, the `docker` driver), the index
/// is made by `docker buildx imagetools create`, which copies the parts
/// into the app's repository where `docker manifest push` only mounts them
/// (ECR mounts only with blob mounting on); without it, `docker manifest`,
/// whose refusal to mount says what to do.
#[test]
fn the_engines_parts_are_joined_by_imagetools_where_buildx_is_there() {
    let repo = format!("{}/demo", common::refused_loopback());
    let mut args = standard_args(&repo);
    args.extend(["--platform", "linux/arm64,linux/amd64"]);
    let env = [
        ("FAKE_VERSIONS", "26.1.5|26.1.5|linux/amd64"),
        (
            "FAKE_BUILDX_VERSION",
            "github.com/docker/buildx 0.14.1 59582f6",
        ),
        ("FAKE_BUILDX_INSPECT", BUILDX_DOCKER),
    ];
    let (fakes, dir, out) = run_demo(&["docker"], &args, &env);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    let lines = fakes.all_call_lines();
    let tag = format!("{repo}:temp_demo_web_abc123");
    let part = |p: &str| {
        let d = fakes.digest_of(&format!("{repo}-cache:demo_web.{p}"));
        format!("{repo}-cache@{d}")
    };
    assert!(
        lines.contains(&format!(
            "docker buildx imagetools create -t {tag} {} {}",
            part("linux-amd64"),
            part("linux-arm64")
        )),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("docker manifest create")),
        "{lines:#?}"
    );
    let file = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(file.contains(&format!("image: {tag}")), "{file}");
    // No buildx (a 20.10 client's built-in BuildKit), and a registry that
    // will not mount: the failure says what to do, and is not retried.
    let env = [
        ("DOCKER_BUILDKIT", "1"),
        ("FAKE_VERSIONS", "20.10.24|24.0.7|linux/amd64"),
        ("FAKE_FAIL", "manifest push"),
        (
            "FAKE_FAIL_MSG",
            "error mounting 127.0.0.1/demo-cache@sha256:0 to 127.0.0.1/demo",
        ),
    ];
    let (fakes, dir, out) = run_demo(&["docker"], &args, &env);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("aws ecr put-account-setting --name BLOB_MOUNTING --value ENABLED"),
        "{stderr}"
    );
    assert!(!stderr.contains("[web] push failed"), "{stderr}");
    assert!(fakes
        .all_call_lines()
        .iter()
        .any(|l| l.starts_with("docker manifest create ")));
    assert_demo_untouched(dir.path());
}

#[test]
fn a_tag_that_lacks_a_wanted_platform_is_built_again() {
    let repo = format!("{}/demo", common::refused_loopback());
    let env = [
        ("DOCKER_BUILDKIT", "1"),
        ("FAKE_VERSIONS", "20.10.24|24.0.7|linux/amd64"),
        (
            "FAKE_EXISTING",
            "temp_demo_web_abc123 temp_demo_worker_abc123 temp_demo_api_abc123",
        ),
    ];
    // The registry holds each tag as one linux/amd64 image (the fake's
    // `docker manifest inspect --verbose` says so).
    let mut args = standard_args(&repo);
    args.extend(["--platform", "linux/amd64"]);
    let (fakes, _dir, out) = run_demo(&["docker"], &args, &env);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(
        calls_starting(&fakes, "docker build ").is_empty(),
        "{}",
        text(&out).1
    );
    // Wanted for two platforms: built again, saying why.
    let at = args.len() - 1;
    args[at] = "linux/amd64,linux/arm64";
    let (fakes, _dir, out) = run_demo(&["docker"], &args, &env);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("[web] {repo}:temp_demo_web_abc123 is in the registry, but holds linux/amd64, not every platform of linux/amd64,linux/arm64: building it")),
        "{stderr}"
    );
    // Each platform's part (the parts are in the cache repository).
    let builds = fakes
        .all_call_lines()
        .into_iter()
        .filter(|l| l.starts_with("docker build "))
        .count();
    assert_eq!(builds, 6);
}

#[test]
fn a_kept_image_without_a_target_platform_gets_a_warning() {
    let repo = format!("{}/demo", common::refused_loopback());
    // The fake registry holds convox/redis as one linux/amd64 image.
    let env = [
        ("DOCKER_BUILDKIT", "1"),
        ("FAKE_VERSIONS", "20.10.24|24.0.7|linux/amd64"),
        ("FAKE_EXISTING", "convox/redis"),
    ];
    let mut args = standard_args(&repo);
    args.extend(["--platform", "linux/arm64"]);
    let (fakes, _dir, out) = run_demo(&["docker"], &args, &env);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: service `redis` keeps image convox/redis, which offers linux/amd64 and not linux/arm64: Convox runs it on linux/arm64 nodes (--platform)"),
        "{stderr}"
    );
    assert!(fakes
        .call_lines()
        .contains(&"docker manifest inspect --verbose convox/redis".to_string()));
    // For linux/amd64, which it offers: no warning.
    let at = args.len() - 1;
    args[at] = "linux/amd64";
    let (_fakes, _dir, out) = run_demo(&["docker"], &args, &env);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("keeps image"), "{stderr}");
    // An image the registry will not describe: a note, not a failure.
    let env = [env[0], env[1]];
    let (_fakes, _dir, out) = run_demo(&["docker"], &args, &env);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("note: the registry of convox/redis (service `redis`) did not say which platforms it offers (no such manifest: convox/redis); not checked"),
        "{stderr}"
    );
}

#[test]
fn the_classic_builder_refuses_a_foreign_platform_before_any_build() {
    let (fakes, dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args(ECR),
        &[
            ("PLUGIN_PLATFORM", "linux/arm64"),
            ("DOCKER_BUILDKIT", "0"),
            ("FAKE_VERSIONS", "28.2.2|28.2.2|linux/amd64"),
        ],
    );
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the classic builder builds only for the engine's own platform (linux/amd64), and this build is for linux/arm64 (--platform)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("BuildKit") && stderr.contains("docker buildx create --platform"),
        "{stderr}"
    );
    assert!(calls_starting(&fakes, "docker build").is_empty());
    assert!(calls_starting(&fakes, "docker push").is_empty());
    assert_demo_untouched(dir.path());
}

#[test]
fn what_was_pushed_is_read_back_and_a_wrong_platform_fails_the_run_leaving_the_file() {
    // Right: one read-back per build, after the pushes.
    let (fakes, _dir, out) = run_demo(&["docker", "aws"], &standard_args(ECR), &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let (backs, _) = read_backs(fakes.call_lines());
    assert_eq!(
        backs,
        [
            format!("docker manifest inspect --verbose {ECR}:temp_demo_api_abc123"),
            format!("docker manifest inspect --verbose {ECR}:temp_demo_web_abc123"),
        ]
    );
    // Wrong: a builder that put another platform there than asked.
    let (fakes, dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args(ECR),
        &[("FAKE_WRONG_PLATFORM", "linux/arm64")],
    );
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("for linux/arm64, and it was built for linux/amd64 (Convox's default); the file is left as it was"),
        "{stderr}"
    );
    assert!(
        stderr.contains("service `web`") || stderr.contains("service `api`"),
        "{stderr}"
    );
    assert_demo_untouched(dir.path());
    assert!(!fakes.call_lines().is_empty());
}

#[test]
fn linux_amd64_by_default_with_a_note_on_an_arm64_engine() {
    let (fakes, _dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args(ECR),
        &[
            ("DOCKER_BUILDKIT", "1"),
            ("FAKE_VERSIONS", "20.10.24|20.10.24|linux/arm64"),
        ],
    );
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("note: building for linux/amd64 (Convox's default")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("not for this engine's own linux/arm64"),
        "{stderr}"
    );
    let builds = calls_starting(&fakes, "docker build");
    assert!(!builds.is_empty());
    for b in &builds {
        assert!(b.contains(" --platform linux/amd64 "), "{b}");
    }
}

#[test]
fn an_ecr_failure_other_than_not_found_builds_that_tag_with_a_warning() {
    let (fakes, _dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args(ECR),
        &[
            (
                "FAKE_EXISTING",
                "temp_demo_web_abc123 temp_demo_worker_abc123",
            ),
            ("FAKE_ECR_FAILURE", "KmsError"),
        ],
    );
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("[api] warning: cannot tell whether")
            && stderr.contains("(KmsError: fake reason); building it"),
        "{stderr}"
    );
    let builds = calls_starting(&fakes, "docker build");
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert!(builds[0].contains("temp_demo_api_abc123"), "{builds:?}");
}

#[test]
fn an_ecr_question_that_fails_outright_builds_everything_with_one_warning() {
    let (fakes, _dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args(ECR),
        &[
            ("FAKE_EXISTING", ALL_TAGS),
            ("FAKE_FAIL", "batch-get-image"),
            ("FAKE_FAIL_MSG", "AccessDeniedException: not allowed"),
        ],
    );
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("warning: cannot tell which tags exist")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("[web, worker, api] warning"), "{stderr}");
    assert_eq!(calls_starting(&fakes, "docker build").len(), 2);
}

#[test]
fn when_the_registry_has_every_tag_nothing_is_built_or_pushed() {
    // The default tags name the content digest: the tags are those a dry
    // run asks about.
    let args = ["--app", "demo", "--gitsha", "abc123", "--repo", ECR];
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let (dry, _) = run_ok(
        &fakes,
        dir.path(),
        &[&args[..], &["--dry-run"]].concat(),
        &[],
    );
    let tags: Vec<&str> = dry
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("imageTag="))
        .collect();
    assert_eq!(tags.len(), 3, "{dry}");
    let existing = tags.join(" ");
    let out = run(&fakes, dir.path(), &args, &[("FAKE_EXISTING", &existing)]);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(calls_starting(&fakes, "docker build").is_empty());
    assert!(calls_starting(&fakes, "docker push").is_empty());
    assert!(calls_starting(&fakes, "docker tag").is_empty());
    // One question to ECR, one to the kept image's registry (its
    // platforms), and nothing else of AWS or the registry: no repository
    // set-up, no login.
    // (The two run side by side: compared in sorted order.)
    let mut calls = fakes.call_lines();
    calls.sort();
    assert_eq!(
        calls,
        [format!("aws ecr batch-get-image --repository-name demo --image-ids imageTag={} imageTag={} imageTag={} --accepted-media-types application/vnd.docker.distribution.manifest.v2+json application/vnd.oci.image.manifest.v1+json application/vnd.docker.distribution.manifest.list.v2+json application/vnd.oci.image.index.v1+json --region us-east-1 --output json", tags[0], tags[1], tags[2]), "docker manifest inspect --verbose convox/redis".to_string()]
    );
    assert!(fakes.login_stdin().is_none());
    let summary = stderr.split("done:\n").nth(1).unwrap_or("");
    assert_eq!(
        summary
            .lines()
            .filter(|l| l.contains(" up to date "))
            .count(),
        3,
        "{summary}"
    );
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        written.contains(&format!("image: {ECR}:{}\n", tags[1])),
        "{written}"
    );
}

/// Tags that do not name the content (no `{hash}`): ECR's answer for an
/// image does not say its platform, so each tag it has is read back after
/// the login, and one of another platform is built again.
#[test]
fn tags_without_the_content_digest_are_read_back_for_their_platforms() {
    let (fakes, _dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args(ECR),
        &[("FAKE_EXISTING", ALL_TAGS)],
    );
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(calls_starting(&fakes, "docker build").is_empty());
    let mut backs: Vec<String> = calls_starting(&fakes, "docker manifest inspect --verbose 1");
    backs.sort();
    assert_eq!(
        backs,
        ["api", "web", "worker"]
            .map(|s| format!("docker manifest inspect --verbose {ECR}:temp_demo_{s}_abc123"))
    );
    // Logged in once, before them.
    assert_eq!(calls_starting(&fakes, "docker login").len(), 1);
    // Wanted for linux/arm64 (the engine's BuildKit): the registry's
    // linux/amd64 images are built again.
    let mut args = standard_args(ECR);
    args.extend(["--platform", "linux/arm64"]);
    let (fakes, _dir, out) = run_demo(
        &["docker", "aws"],
        &args,
        &[
            ("FAKE_EXISTING", ALL_TAGS),
            ("DOCKER_BUILDKIT", "1"),
            ("FAKE_VERSIONS", "20.10.24|24.0.7|linux/amd64"),
        ],
    );
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("[web] {ECR}:temp_demo_web_abc123 is in the registry, but holds linux/amd64, not every platform of linux/arm64: building it")),
        "{stderr}"
    );
    assert_eq!(calls_starting(&fakes, "docker login").len(), 1);
}

#[test]
fn missing_tags_of_an_image_that_is_here_are_tagged_and_pushed_without_a_build() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let env = [
        ("FAKE_EXISTING", "temp_demo_web_abc123 temp_demo_api_abc123"),
        ("FAKE_LOCAL", "temp_demo_web_abc123"),
    ];
    let out = run(&fakes, dir.path(), &standard_args(ECR), &env);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        calls_starting(&fakes, "docker build").is_empty(),
        "{:?}",
        fakes.call_lines()
    );
    assert_eq!(
        calls_starting(&fakes, "docker tag"),
        [format!(
            "docker tag {ECR}:temp_demo_web_abc123 {ECR}:temp_demo_worker_abc123"
        )]
    );
    assert_eq!(
        calls_starting(&fakes, "docker push"),
        [format!("docker push {ECR}:temp_demo_worker_abc123")]
    );
    assert!(stderr.contains("pushed (image was here)"), "{stderr}");
}

#[test]
fn missing_tags_of_an_image_that_is_not_here_are_built_and_only_they_pushed() {
    let (fakes, _dir, out) = run_demo(
        &["docker", "aws"],
        &standard_args(ECR),
        &[("FAKE_EXISTING", "temp_demo_web_abc123")],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(calls_starting(&fakes, "docker build").len(), 2);
    let mut pushes = calls_starting(&fakes, "docker push");
    pushes.sort();
    assert_eq!(
        pushes,
        [
            format!("docker push {ECR}:temp_demo_api_abc123"),
            format!("docker push {ECR}:temp_demo_worker_abc123")
        ]
    );
}

#[test]
fn force_builds_and_pushes_everything_without_asking() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let mut args = standard_args(ECR);
    args.push("--force");
    let out = run(&fakes, dir.path(), &args, &[("FAKE_EXISTING", ALL_TAGS)]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(calls_starting(&fakes, "aws ecr batch-get-image").is_empty());
    assert_eq!(calls_starting(&fakes, "docker build").len(), 2);
    assert_eq!(calls_starting(&fakes, "docker push").len(), 3);
}

#[test]
fn a_plain_http_loopback_registry_is_asked_with_insecure_and_others_without() {
    let (fakes, _dir, out) = run_demo(&["docker"], &standard_args(local("LOCAL/demo")), &[]);
    assert!(out.status.success());
    assert!(
        read_backs(fakes.call_lines())
            .1
            .iter()
            .filter(|l| l.starts_with(local(
                "docker manifest inspect --verbose --insecure LOCAL/demo:"
            )))
            .count()
            == 3
    );
    let (fakes, _dir, out) = run_demo(
        &["docker"],
        &standard_args("ghcr.io/org/demo"),
        &[("FAKE_EXISTING", ALL_TAGS)],
    );
    assert!(out.status.success());
    assert_eq!(
        calls_starting(
            &fakes,
            "docker manifest inspect --verbose ghcr.io/org/demo:"
        )
        .len(),
        3
    );
}

#[test]
fn distinct_builds_run_at_the_same_time() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let mut args = standard_args(ECR);
    args.extend(["--jobs", "2"]);
    // Each build waits until both have started: only parallel builds pass.
    let env = [("FAKE_BARRIER", "2"), ("FAKE_BARRIER_ON", "docker build")];
    let out = run(&fakes, dir.path(), &args, &env);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(calls_starting(&fakes, "docker build").len(), 2);
}

#[test]
fn the_first_failure_stops_the_other_builds_and_nothing_is_pushed() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let before = fs::read(dir.path().join(FILE)).unwrap();
    let mut args = standard_args(ECR);
    args.extend(["--jobs", "2"]);
    let env = [
        (
            "FAKE_SLEEP",
            "temp_demo_web_abc123 --platform linux/amd64 web",
        ),
        ("FAKE_FAIL", "temp_demo_api_abc123 --build-arg"),
        ("FAKE_FAIL_MSG", "COPY failed: file not found"),
    ];
    let out = run(&fakes, dir.path(), &args, &env);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("{ cat api/Dockerfile.api; printf"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(calls_starting(&fakes, "docker push").is_empty());
    assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), before);
    // The sleeping web build, if it got started, was stopped with its group.
    if let Ok(pid) = fs::read_to_string(fakes.dir.path().join("grandchild.pid")) {
        let pid: i32 = pid.trim().parse().unwrap();
        let gone = || {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            state.is_empty()
                || state
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
        };
        // Poll (a bound against a hang, not a timing goal).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !gone() {
            assert!(
                std::time::Instant::now() < deadline,
                "the sleeping build {pid} was not stopped"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn a_drone_plugin_step_runs_from_plugin_and_drone_variables_alone() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let env = [
        ("PLUGIN_APP", "demo"),
        ("PLUGIN_REPO", ECR),
        ("PLUGIN_TAG", "temp_{app}_{service}_{gitsha}"),
        ("PLUGIN_JOBS", "1"),
        ("PLUGIN_COMPOSE_FILE", FILE),
        ("DRONE_COMMIT_SHA", "feedbeef"),
        ("DRONE_COMMIT_BRANCH", "main"),
    ];
    let out = run(&fakes, dir.path(), &[], &env);
    assert!(out.status.success(), "{}", text(&out).1);
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        written.contains(&format!("image: {ECR}:temp_demo_web_feedbeef")),
        "{written}"
    );
    let df = fakes.dockerfile("temp_demo_web_feedbeef").unwrap();
    assert!(
        df.contains(r#""org.opencontainers.image.description"="main""#),
        "{df}"
    );
}

#[test]
fn flags_win_over_plugin_variables_which_win_over_drone_variables() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    let env = [
        ("PLUGIN_APP", "fromplugin"),
        ("PLUGIN_REPO", local("LOCAL/demo")),
        ("PLUGIN_GITSHA", "pluginsha"),
        ("PLUGIN_TAG", "{app}-{gitsha}-{service}"),
        ("DRONE_COMMIT_SHA", "dronesha"),
    ];
    let out = run(&fakes, dir.path(), &["--app", "fromflag", "-o", "-"], &env);
    let stdout = text(&out).0;
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(
        stdout.contains(local("image: LOCAL/demo:fromflag-pluginsha-web")),
        "{stdout}"
    );
}

fn is_sha256(d: &serde_json::Value) -> bool {
    d.as_str().is_some_and(|s| {
        s.len() == 71 && s.starts_with("sha256:") && s[7..].chars().all(|c| c.is_ascii_hexdigit())
    })
}

#[test]
fn json_report_on_stdout_with_every_service_and_no_secret() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let mut args = standard_args(ECR);
    args.push("--json");
    let out = run(
        &fakes,
        dir.path(),
        &args,
        &[("FAKE_EXISTING", "temp_demo_api_abc123")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
    let report: serde_json::Value =
        serde_json::from_str(&stdout).expect("stdout is one JSON document");
    assert_eq!(report["app"], "demo");
    assert_eq!(report["repo"], ECR);
    assert_eq!(report["registry"], HOST);
    assert_eq!(report["repository"], "demo");
    assert_eq!(report["output"], FILE);
    assert!(report["total_seconds"].as_f64().is_some_and(|s| s >= 0.0));
    let services = report["services"].as_array().expect("services");
    let by_name = |n: &str| services.iter().find(|s| s["name"] == n).expect(n).clone();
    let web = by_name("web");
    assert_eq!(web["action"], "built");
    assert_eq!(web["ref"], format!("{ECR}:temp_demo_web_abc123"));
    assert!(is_sha256(&web["digest"]), "{web}");
    assert!(web["content_digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("blake3:")));
    for k in ["check", "build", "push"] {
        assert!(web["seconds"][k].as_f64().is_some(), "{web}");
    }
    let worker = by_name("worker");
    assert_eq!(worker["action"], "shared");
    assert_eq!(worker["shared_with"], "web");
    assert!(is_sha256(&worker["digest"]));
    let api = by_name("api");
    assert_eq!(api["action"], "up-to-date");
    assert!(is_sha256(&api["digest"]), "the digest ECR gave: {api}");
    let redis = by_name("redis");
    assert_eq!(redis["action"], "kept");
    assert_eq!(redis["ref"], "convox/redis");
    assert!(stderr.contains("done:"), "human text goes to stderr");
}

#[test]
fn json_cannot_share_stdout_with_the_file_or_a_dry_run() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    for extra in [&["--json", "-o", "-"][..], &["--json", "--dry-run"][..]] {
        let mut args = standard_args(ECR);
        args.extend(extra);
        let out = run(&fakes, dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out).1);
    }
    assert!(fakes.calls().is_empty());
}

#[test]
fn pin_digest_writes_the_pushed_and_the_existing_digests() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let mut args = standard_args(ECR);
    args.extend(["--pin-digest", "--json"]);
    let out = run(
        &fakes,
        dir.path(),
        &args,
        &[("FAKE_EXISTING", "temp_demo_api_abc123")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    for s in report["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] != "kept")
    {
        let pinned = format!(
            "image: {}@{}",
            s["ref"].as_str().unwrap(),
            s["digest"].as_str().unwrap()
        );
        assert!(written.contains(&pinned), "{pinned} in\n{written}");
    }
    assert!(written.contains("image: convox/redis "), "kept as it was");
}

/// A fake `convox` that records what it was given and prints a release ID.
fn with_fake_convox(fakes: &Fakes) {
    let path = fakes.bin().join("convox");
    fs::write(
        &path,
        r#"#!/bin/bash
rec=convox; for a in "$@"; do rec+=$'\x1f'"$a"; done
printf '%s\n' "$rec" >> "$FAKE_DIR/argv.log"
(shopt -s dotglob; cd "$2" && printf '%s\n' *) > "$FAKE_DIR/convox.dir"
cat "$2/docker-compose.yml" > "$FAKE_DIR/convox.yml"
if [[ -n "$FAKE_CONVOX_FAIL" ]]; then echo "ERROR: app not found" >&2; exit 1; fi
echo "Building: uploading..." >&2
echo "RABCDEFGHIJ"
"#,
    )
    .unwrap();
    common::make_executable(&path);
}

#[test]
fn convox_build_runs_on_the_rewritten_file_alone_and_prints_the_release() {
    let fakes = Fakes::new(&["docker", "aws"]);
    with_fake_convox(&fakes);
    let dir = fixture("demo");
    let mut args = standard_args(ECR);
    args.extend(["--convox-build", "--description", "main"]);
    let (stdout, _) = run_ok(&fakes, dir.path(), &args, &[]);
    assert_eq!(stdout, "RABCDEFGHIJ\n");
    let call = calls_starting(&fakes, "convox").pop().unwrap();
    let parts: Vec<&str> = call.split(' ').collect();
    assert_eq!(parts[..2], ["convox", "build"]);
    assert_eq!(
        parts[3..],
        ["--app", "demo", "--description", "main", "--id"]
    );
    assert_eq!(
        fs::read_to_string(fakes.dir.path().join("convox.dir")).unwrap(),
        "docker-compose.yml\n"
    );
    assert_eq!(
        fs::read_to_string(fakes.dir.path().join("convox.yml")).unwrap(),
        fs::read_to_string(dir.path().join(FILE)).unwrap(),
        "convox builds the rewritten file"
    );
    assert!(
        !std::path::Path::new(parts[2]).exists(),
        "the temporary directory is removed"
    );

    // With --json, the release is in the report instead.
    let fakes = Fakes::new(&["docker", "aws"]);
    with_fake_convox(&fakes);
    let dir = fixture("demo");
    args.push("--json");
    let out = run(&fakes, dir.path(), &args, &[]);
    let report: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(report["release"], "RABCDEFGHIJ");
}

#[test]
fn a_failing_convox_build_is_named_and_a_missing_convox_is_found_first() {
    let fakes = Fakes::new(&["docker", "aws"]);
    with_fake_convox(&fakes);
    let dir = fixture("demo");
    let mut args = standard_args(ECR);
    args.push("--convox-build");
    let out = run(&fakes, dir.path(), &args, &[("FAKE_CONVOX_FAIL", "1")]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("command failed (exit status 1): convox build "),
        "{stderr}"
    );
    assert!(stderr.contains("ERROR: app not found"), "{stderr}");

    let (fakes, _dir, out) = run_demo(&["docker", "aws"], &args, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("`convox` is not on PATH"),
        "{}",
        text(&out).1
    );
    assert!(fakes.calls().is_empty(), "nothing ran before the check");
}

#[test]
fn the_canonical_convox_yml_is_built_from_the_app_root_and_rewritten() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("convox-canonical");
    let mut args = standard_args(local("LOCAL/demo"));
    args.extend(["-f", "convox.yml"]);
    let (_, stderr) = run_ok(&fakes, dir.path(), &args, &[]);
    assert_eq!(
        calls_starting(&fakes, "docker build"),
        [local(
            "docker build -f - -t LOCAL/demo:temp_demo_web_abc123 --platform linux/amd64 ."
        )]
    );
    // The Dockerfile the build got is the app root's, with the labels.
    let sent = fakes
        .dockerfile("temp_demo_web_abc123")
        .expect("the Dockerfile sent");
    assert!(
        sent.starts_with("FROM scratch\nCOPY index.html /app/\n"),
        "{sent}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("convox.yml")).unwrap(),
        local("services:\n  web:\n    port: 3000\n    image: LOCAL/demo:temp_demo_web_abc123\n")
    );
    assert!(
        stderr.contains("web  built")
            && stderr.contains("(no build: in the file; built from the app root, as Convox does)"),
        "{stderr}"
    );
}

#[test]
fn gen1_services_without_build_share_the_app_roots_build_and_the_dry_run_says_so() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("gen1-buildless");
    let mut args = standard_args(local("LOCAL/demo"));
    args.extend(["--dry-run", "--no-registry-cache"]);
    let (stdout, _) = run_ok(&fakes, dir.path(), &args, &[]);
    assert!(fakes.calls().is_empty());
    let build_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.contains("docker build") || l.starts_with("# web") || l.starts_with("# clock")
        })
        .collect();
    assert_eq!(build_lines.len(), 4, "{stdout}");
    assert_eq!(
        build_lines[0],
        "# web, worker, shell: no `build:` in the file, so built from the app root, as Convox does:"
    );
    assert!(
        build_lines[1].ends_with(local(
            " | docker build -f - -t LOCAL/demo:temp_demo_web_abc123 --platform linux/amd64 ."
        )),
        "{}",
        build_lines[1]
    );
    assert!(
        build_lines[1].starts_with("{ cat Dockerfile;"),
        "{}",
        build_lines[1]
    );
    assert_eq!(
        build_lines[2],
        "# clock: no `build:` in the file, so built from the app root, as Convox does:"
    );
    assert!(
        build_lines[3].starts_with("{ cat Dockerfile.clock;"),
        "{}",
        build_lines[3]
    );
    for tagged in ["worker", "shell"] {
        assert!(
            stdout.contains(local(&format!(
                "docker tag LOCAL/demo:temp_demo_web_abc123 LOCAL/demo:temp_demo_{tagged}_abc123"
            ))),
            "{stdout}"
        );
    }
    assert!(stdout.contains(local("worker: {command: bin/worker, image: \"LOCAL/demo:temp_demo_worker_abc123\"}   # flow style\n")), "{stdout}");
    assert!(
        stdout.contains(local(
            "shell: {image: \"LOCAL/demo:temp_demo_shell_abc123\"}\n"
        )),
        "{stdout}"
    );
}

#[test]
fn a_v1_x_key_is_built_as_convox_would_with_a_warning() {
    let fakes = Fakes::new(&["docker"]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    fs::write(
        dir.path().join(FILE),
        "x-common: &common\n  environment: [A=1]\nweb:\n  <<: *common\n  command: x\n",
    )
    .unwrap();
    let out = run(&fakes, dir.path(), &standard_args(local("LOCAL/demo")), &[]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`x-common`: Convox reads every top-level key of a file without `version:` as a service")
            && stderr.contains("it deploys `x-common` as a service"),
        "{stderr}"
    );
    assert_eq!(calls_starting(&fakes, "docker build").len(), 1);
    assert_eq!(calls_starting(&fakes, "docker push").len(), 2);
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert_eq!(
        written,
        local("x-common: &common\n  environment: [A=1]\n  image: LOCAL/demo:temp_demo_x-common_abc123\nweb:\n  <<: *common\n  image: LOCAL/demo:temp_demo_web_abc123\n  command: x\n")
    );
}

#[test]
fn versions_convox_gen1_does_not_load_get_a_warning() {
    for (version, warns) in [("3.8", true), ("2.4", true), ("2.2", false), ("2", false)] {
        let fakes = Fakes::new(&["docker"]);
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(
            dir.path().join("docker-compose.yml"),
            format!("version: \"{version}\"\nservices:\n  web:\n    build: .\n"),
        )
        .unwrap();
        let mut args = standard_args(local("LOCAL/demo"));
        args.extend(["-f", "docker-compose.yml", "--dry-run"]);
        let (_, stderr) = run_ok(&fakes, dir.path(), &args, &[]);
        let warned = stderr.contains(&format!(
            "`version: \"{version}\"`: Convox gen1 loads a file without `version:` (services at the top level) or with version \"2\", \"2.0\", \"2.1\" or \"2.2\""
        ));
        assert_eq!(warned, warns, "{version}: {stderr}");
    }
}

/// A service on a base image: what the lookups answer decides the tag, a
/// stale engine copy is pulled first, and a base that neither a registry,
/// a pull nor the engine knows stops the run.
#[test]
fn a_base_images_identity_comes_from_the_registry_else_a_pull_else_the_engine_else_the_run_stops() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("app")).unwrap();
    fs::write(
        dir.path().join("app/Dockerfile"),
        "FROM registry.test/base:7\nCOPY . /app\n",
    )
    .unwrap();
    fs::write(dir.path().join(FILE), "web:\n  build: ./app\n").unwrap();
    let tag_with = |env: &[(&str, &str)], extra: &[&str]| {
        let fakes = Fakes::new(&["docker"]);
        let mut args = vec![
            "--app",
            "demo",
            "--gitsha",
            "abc",
            "--repo",
            local("LOCAL/demo"),
            "-o",
            "-",
        ];
        args.extend(extra);
        let (stdout, stderr) = run_ok(&fakes, dir.path(), &args, env);
        let tag = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(local("image: LOCAL/demo:")))
            .expect("the image line")
            .to_string();
        (tag, stderr, fakes.call_lines())
    };
    let lookup = "docker manifest inspect --verbose registry.test/base:7";
    let (registry, stderr, calls) = tag_with(&[("FAKE_EXISTING", "7")], &[]);
    assert!(calls.iter().any(|c| c == lookup), "{calls:?}");
    assert!(!stderr.contains("base image"), "{stderr}");
    assert!(
        !calls.iter().any(|c| c.starts_with("docker pull")),
        "{calls:?}"
    );
    let (engine_copy, stderr, _) = tag_with(&[("FAKE_LOCAL", "7")], &[]);
    assert!(
        stderr.contains("warning: base image registry.test/base:7: the registry did not answer"),
        "{stderr}"
    );
    // The registry does not answer, but a pull works: the pulled copy.
    let (pulled, _, calls) = tag_with(
        &[
            (
                "FAKE_FAIL",
                "manifest inspect --verbose registry.test/base:7",
            ),
            ("FAKE_EXISTING", "7"),
            ("FAKE_LOCAL", "7"),
        ],
        &[],
    );
    assert!(
        calls
            .iter()
            .any(|c| c == "docker pull --quiet registry.test/base:7"),
        "{calls:?}"
    );
    // Nothing knows it: the run stops, naming the base and its registry,
    // and builds nothing; the name alone never stands for it.
    let fakes = Fakes::new(&["docker"]);
    let out = run(
        &fakes,
        dir.path(),
        &["--app", "demo", "--repo", local("LOCAL/demo"), "-o", "-"],
        &[],
    );
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("base image registry.test/base:7: its registry registry.test gave no digest, and it could not be pulled"),
        "{stderr}"
    );
    assert!(stderr.contains("--no-base-digest"), "{stderr}");
    assert!(!fakes
        .call_lines()
        .iter()
        .any(|c| c.starts_with("docker build")));
    let (stale, _, calls) = tag_with(&[("FAKE_EXISTING", "7"), ("FAKE_LOCAL", "7")], &[]);
    assert_eq!(
        stale, registry,
        "the registry's digest names the base either way"
    );
    let pull = calls
        .iter()
        .position(|c| c == "docker pull --quiet registry.test/base:7");
    let build = calls.iter().position(|c| c.starts_with("docker build"));
    assert!(
        pull.is_some() && pull < build,
        "pulled before the build: {calls:?}"
    );
    // The engine's copy is asked about only once a build is known to be
    // needed: after the registry was asked for the service's tag.
    let inspect = calls
        .iter()
        .position(|c| c.starts_with("docker image inspect") && c.ends_with("registry.test/base:7"));
    let tag_check = calls
        .iter()
        .position(|c| c.starts_with("docker manifest inspect") && c.contains(local("LOCAL/demo:")));
    assert!(
        tag_check.is_some() && tag_check < inspect && inspect < pull,
        "{calls:?}"
    );
    // With the service's tag in the registry, nothing is built, so the stale
    // copy is neither asked about nor pulled.
    let existing = format!("7 {registry}");
    let (warm, _, calls) = tag_with(&[("FAKE_EXISTING", &existing), ("FAKE_LOCAL", "7")], &[]);
    assert_eq!(warm, registry);
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("docker pull") || c.starts_with("docker image inspect")),
        "{calls:?}"
    );
    let (off, _, calls) = tag_with(&[("FAKE_EXISTING", "7")], &["--no-base-digest"]);
    assert!(!calls.iter().any(|c| c == lookup), "{calls:?}");
    let all = [&registry, &engine_copy, &pulled, &off];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b, "each identity gives its own tag");
        }
    }
    // A dry run lists the lookup and shows the --no-base-digest tags.
    let fakes = Fakes::new(&["docker"]);
    let out = run(
        &fakes,
        dir.path(),
        &[
            "--dry-run",
            "--app",
            "demo",
            "--gitsha",
            "abc",
            "--repo",
            local("LOCAL/demo"),
        ],
        &[],
    );
    let (stdout, _) = text(&out);
    assert!(fakes.calls().is_empty());
    assert!(stdout.contains(&format!("\n{lookup}\n")), "{stdout}");
    assert!(
        stdout.contains(local(&format!("image: LOCAL/demo:{off}"))),
        "{stdout}"
    );
}

/// DOCKER_HOST (tcp:// or ssh://) and the docker context reach every docker
/// command untouched; `--context` sets DOCKER_CONTEXT for them.
#[test]
fn the_docker_host_and_context_reach_docker_untouched() {
    for (env, extra, want_host, want_context) in [
        (
            vec![("DOCKER_HOST", "ssh://builder@build-1")],
            vec![],
            "ssh://builder@build-1",
            "",
        ),
        (
            vec![("DOCKER_HOST", "tcp://10.0.0.5:2376")],
            vec![],
            "tcp://10.0.0.5:2376",
            "",
        ),
        (
            vec![("DOCKER_CONTEXT", "big-builder")],
            vec![],
            "",
            "big-builder",
        ),
        (vec![], vec!["--context", "remote-ci"], "", "remote-ci"),
        (
            vec![("PLUGIN_CONTEXT", "from-drone")],
            vec![],
            "",
            "from-drone",
        ),
    ] {
        let mut env = env;
        env.push(("FAKE_RECORD_ENV", "DOCKER_HOST DOCKER_CONTEXT"));
        let mut args = standard_args(local("LOCAL/demo"));
        args.extend(extra);
        let (fakes, _dir, out) = run_demo(&["docker"], &args, &env);
        assert!(out.status.success(), "{}", text(&out).1);
        let log = fakes.env_log();
        let lines: Vec<&str> = log.lines().collect();
        assert!(!lines.is_empty());
        for l in &lines {
            assert!(
                l.ends_with(&format!("DOCKER_HOST={want_host}"))
                    || l.ends_with(&format!("DOCKER_CONTEXT={want_context}")),
                "{l}"
            );
        }
        assert!(
            log.contains(&format!("docker DOCKER_HOST={want_host}\n")),
            "{log}"
        );
        assert!(
            log.contains(&format!("docker DOCKER_CONTEXT={want_context}\n")),
            "{log}"
        );
    }
}

fn secret_app(dir: &std::path::Path) {
    fs::create_dir_all(dir.join("app")).unwrap();
    fs::write(dir.join("app/Dockerfile"), "FROM scratch\nCOPY . /app\n").unwrap();
    fs::write(dir.join("npmrc"), "//registry/:_authToken=from-a-file\n").unwrap();
    fs::write(
        dir.join(FILE),
        "version: \"3.8\"\nservices:\n  web:\n    build:\n      context: ./app\n      secrets:\n        - npm_token\n        - source: npmrc\n          target: npm_config\n      ssh: [default]\n      cache_from: [registry.test/web:cache]\nsecrets:\n  npm_token:\n    environment: NPM_TOKEN\n  npmrc:\n    file: ./npmrc\n",
    )
    .unwrap();
}

/// Under BuildKit: the Dockerfile by its path, labels as flags, plain
/// progress, each secret by id and source and never by value, SSH and the
/// cache sources; the value is in no argv, output or JSON report, and a
/// rotated value keeps the tag.
#[test]
fn build_secrets_reach_buildkit_by_id_and_source_never_by_value() {
    let dir = tempfile::tempdir().unwrap();
    secret_app(dir.path());
    let run_with = |value: &str| {
        let fakes = Fakes::new(&["docker"]);
        // The default tag (by content digest), so that a rotated secret
        // would show in it.
        let args = [
            "--app",
            "demo",
            "--gitsha",
            "abc123",
            "--repo",
            local("LOCAL/demo"),
            "-f",
            FILE,
            "-o",
            "out.yml",
            "--json",
        ];
        let out = run(
            &fakes,
            dir.path(),
            &args,
            &[
                ("DOCKER_BUILDKIT", "1"),
                ("NPM_TOKEN", value),
                ("FAKE_RECORD_ENV", "NPM_TOKEN DOCKER_BUILDKIT"),
            ],
        );
        (fakes, out)
    };
    let secret = "s3cr3t-npm-token-value";
    let (fakes, out) = run_with(secret);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let build = calls_starting(&fakes, "docker build");
    assert_eq!(build.len(), 1, "{build:?}");
    let b = &build[0];
    assert!(
        b.starts_with(local(
            "docker build --progress plain -f app/Dockerfile -t LOCAL/demo:temp_demo_web_"
        )),
        "{b}"
    );
    for part in [
        " --cache-from registry.test/web:cache",
        " --label org.opencontainers.image.title=demo",
        " --secret id=npm_token,env=NPM_TOKEN",
        " --secret id=npm_config,src=npmrc",
        " --ssh default",
    ] {
        assert!(b.contains(part), "{part} in {b}");
    }
    assert!(
        fakes.dockerfile("x").is_none() && !b.contains(" -f - "),
        "no Dockerfile on stdin: {b}"
    );
    // The value reaches docker only through the environment it inherits.
    assert!(fakes
        .env_log()
        .contains(&format!("docker NPM_TOKEN={secret}")));
    assert!(fakes.env_log().contains("docker DOCKER_BUILDKIT=1"));
    for text in [
        stdout.as_str(),
        stderr.as_str(),
        &fakes.call_lines().join("\n"),
    ] {
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }
    let tag = fakes.built_tag("web").expect("tag");
    let (rotated, out) = run_with("a-new-token-value");
    assert!(out.status.success());
    assert_eq!(
        rotated.built_tag("web").expect("tag"),
        tag,
        "a rotated secret rebuilds nothing"
    );
}

#[test]
fn build_secrets_are_refused_under_the_classic_builder_and_a_missing_source_is_named() {
    let dir = tempfile::tempdir().unwrap();
    secret_app(dir.path());
    let mut args = standard_args(local("LOCAL/demo"));
    args.extend(["-f", FILE]);
    // The classic builder (DOCKER_BUILDKIT unset, a docker with no version
    // to tell): refused before anything is built, pushed or logged in to
    // (the registry is asked while docker is asked its builder).
    let fakes = Fakes::new(&["docker"]);
    let out = run(&fakes, dir.path(), &args, &[("NPM_TOKEN", "x")]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("service `web`: build secrets and `build.ssh` need BuildKit"),
        "{stderr}"
    );
    let calls = fakes.calls();
    assert!(
        !calls.is_empty() && calls.iter().all(|c| c[1..3] == ["manifest", "inspect"]),
        "{calls:?}"
    );
    let fakes = Fakes::new(&["docker"]);
    // Under BuildKit, an unset variable or a missing file is named.
    let out = run(&fakes, dir.path(), &args, &[("DOCKER_BUILDKIT", "1")]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("service `web`: build secret `npm_token` comes from the environment variable NPM_TOKEN, which is not set"), "{stderr}");
    fs::remove_file(dir.path().join("npmrc")).unwrap();
    let out = run(
        &fakes,
        dir.path(),
        &args,
        &[("DOCKER_BUILDKIT", "1"), ("NPM_TOKEN", "x")],
    );
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("build secret `npmrc` comes from the file npmrc, which does not exist"),
        "{stderr}"
    );
    assert!(fakes.calls().is_empty(), "{:?}", fakes.calls());
}

/// The registry cache under BuildKit: with an engine from 23 on, each build
/// takes the service's last image in REPO-cache as its cache source, writes
/// inline cache, and after its push goes there under the service's fixed
/// tag; with docker 20.10's engine (whose BuildKit crashed here writing
/// inline cache) it is off, with a note.
#[test]
fn the_registry_cache_under_buildkit_and_only_with_a_safe_engine() {
    let run_with = |versions: &str| {
        let (fakes, _dir, out) = run_demo(
            &["docker"],
            &standard_args(local("LOCAL/demo")),
            &[("DOCKER_BUILDKIT", "1"), ("FAKE_VERSIONS", versions)],
        );
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        (fakes, stderr)
    };
    let (fakes, stderr) = run_with("27.3.1|27.3.1");
    assert!(!stderr.contains("registry cache is off"), "{stderr}");
    let lines = fakes.all_call_lines();
    let web_build = lines
        .iter()
        .find(|l| l.contains("docker build") && l.contains("temp_demo_web_"))
        .expect("web build");
    assert!(
        web_build.contains(" --build-arg BUILDKIT_INLINE_CACHE=1 ")
            && web_build.contains(local(" --cache-from LOCAL/demo-cache:demo_web ")),
        "{web_build}"
    );
    let cache = local("LOCAL/demo-cache:demo_web");
    let tag_at = lines
        .iter()
        .position(|l| l.starts_with("docker tag ") && l.ends_with(cache))
        .expect("tagged for the cache");
    let push_at = lines
        .iter()
        .position(|l| l == &format!("docker push {cache}"))
        .expect("pushed to the cache");
    let image_push = lines
        .iter()
        .position(|l| l.starts_with(local("docker push LOCAL/demo:temp_demo_web_")))
        .expect("the image's push");
    assert!(image_push < tag_at && tag_at < push_at, "{lines:?}");
    let (fakes, stderr) = run_with("28.2.2|20.10.24+dfsg1");
    assert!(
        stderr.contains("note: the registry cache is off: this engine (20.10.24+dfsg1)"),
        "{stderr}"
    );
    assert!(fakes.cache_calls().is_empty(), "{:?}", fakes.cache_calls());
}

/// The variables a GitHub Actions runner gives a Docker action for this
/// repository's `action.yml`: every declared input, empty when not given.
fn action_env<'a>(given: &[(&'a str, &'a str)], outputs: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("GITHUB_ACTIONS", "true"),
        ("CI", "true"),
        ("GITHUB_SHA", "ghsha0123456789"),
        ("GITHUB_REF_NAME", "main"),
        ("GITHUB_OUTPUT", outputs),
    ];
    let inputs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml"))
        .expect("action.yml");
    let declared = |line: &str| {
        let name = line.strip_prefix("  ")?.strip_suffix(':')?;
        (!name.starts_with(' ')).then_some(name.to_string())
    };
    let section = inputs
        .split("\ninputs:\n")
        .nth(1)
        .and_then(|s| s.split("\noutputs:\n").next())
        .expect("inputs: then outputs:");
    for name in section.lines().filter_map(declared) {
        let var: &'a str = Box::leak(format!("INPUT_{}", name.to_uppercase()).into_boxed_str());
        let value = given
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            .map_or("", |(_, v)| *v);
        env.push((var, value));
    }
    env
}

/// The outputs an action wrote to the `$GITHUB_OUTPUT` file, parsed as the
/// runner parses them (`name<<DELIMITER` … `DELIMITER`).
fn github_outputs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let (name, delimiter) = line.split_once("<<").expect("name<<DELIMITER");
        let mut value = Vec::new();
        for l in lines.by_ref() {
            if l == delimiter {
                break;
            }
            value.push(l);
        }
        out.push((name.to_string(), value.join("\n")));
    }
    out
}

#[test]
fn action_inputs_are_read_as_settings_and_the_outputs_land_in_github_output() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    let outputs = dir.path().join("github_output");
    fs::write(&outputs, "earlier=kept\n").unwrap();
    let outputs_path = outputs.display().to_string();
    let env = action_env(
        &[
            ("app", "demo"),
            ("repo", local("LOCAL/demo")),
            ("compose_file", FILE),
            ("tag", "temp_{app}_{service}_{gitsha}"),
        ],
        &outputs_path,
    );
    let (_, stderr) = run_ok(&fakes, dir.path(), &[], &env);
    // The commit and the description came from GITHUB_SHA and GITHUB_REF_NAME.
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        written.contains(local("image: LOCAL/demo:temp_demo_web_ghsha0123456789")),
        "{written}\n{stderr}"
    );
    let dockerfile = fakes.dockerfile("temp_demo_web_ghsha0123456789").unwrap();
    assert!(
        dockerfile.contains(r#""org.opencontainers.image.description"="main""#),
        "{dockerfile}"
    );
    let text = fs::read_to_string(&outputs).unwrap();
    let rest = text
        .strip_prefix("earlier=kept\n")
        .expect("appended, not replaced");
    let got = github_outputs(rest);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["images", "built"], "{text}");
    let images: serde_json::Value = serde_json::from_str(&got[0].1).expect("images is JSON");
    assert_eq!(
        images["api"],
        local("LOCAL/demo:temp_demo_api_ghsha0123456789"),
        "{images}"
    );
    assert!(
        images.get("redis").is_none(),
        "a kept image is no output: {images}"
    );
    let built: Vec<String> = serde_json::from_str(&got[1].1).expect("built is JSON");
    assert_eq!(built, ["web", "worker", "api"]);
}

#[test]
fn a_flag_wins_over_plugin_over_input_over_the_cis_commit() {
    let dir = fixture("demo");
    let fakes = Fakes::new(&[]);
    // Each source in turn is the highest one given.
    let sources: [(&str, &str); 5] = [
        ("flag", "sha-from-flag"),
        ("PLUGIN_GITSHA", "sha-from-plugin"),
        ("INPUT_GITSHA", "sha-from-input"),
        ("DRONE_COMMIT_SHA", "sha-from-drone"),
        ("GITHUB_SHA", "sha-from-github"),
    ];
    for (k, (_, expected)) in sources.iter().enumerate() {
        let mut args = vec![
            "--dry-run",
            "--app",
            "demo",
            "--repo",
            local("LOCAL/demo"),
            "--tag",
            "t_{service}_{gitsha}",
        ];
        let mut env: Vec<(&str, &str)> = Vec::new();
        for (name, value) in &sources[k..] {
            if *name == "flag" {
                args.extend(["--gitsha", value]);
            } else {
                env.push((name, value));
            }
        }
        let (stdout, _) = run_ok(&fakes, dir.path(), &args, &env);
        assert!(
            stdout.contains(local(&format!("image: LOCAL/demo:t_web_{expected}"))),
            "{expected} should win over {:?}:\n{stdout}",
            &sources[k + 1..]
        );
    }
}

#[test]
fn a_missing_required_action_input_is_one_clear_error() {
    let dir = fixture("demo");
    let fakes = Fakes::new(&["docker"]);
    let outputs = dir.path().join("github_output");
    let outputs_path = outputs.display().to_string();
    let env = action_env(&[("repo", local("LOCAL/demo"))], &outputs_path);
    let out = run(&fakes, dir.path(), &[], &env);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: the required input `app` is not set: give it under `with:` in the workflow step"
    );
    assert!(fakes.calls().is_empty());
    assert!(!outputs.exists(), "no outputs from a failed run");
}

#[test]
fn the_inline_cache_needs_an_engine_from_23_0_1() {
    for (engine, kept) in [("23.0.0", false), ("23.0.1", true)] {
        let (fakes, _dir, out) = run_demo(
            &["docker"],
            &standard_args(local("LOCAL/demo")),
            &[
                ("DOCKER_BUILDKIT", "1"),
                ("FAKE_VERSIONS", &format!("{engine}|{engine}")),
                // A buildx whose builder is the engine's own: as without one.
                ("FAKE_BUILDX_INSPECT", BUILDX_DOCKER),
            ],
        );
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let inline = fakes
            .all_call_lines()
            .iter()
            .any(|l| l.contains("docker build") && l.contains("BUILDKIT_INLINE_CACHE=1"));
        assert_eq!(inline, kept, "engine {engine}: {stderr}");
        assert_eq!(
            stderr.contains("note: the registry cache is off"),
            !kept,
            "{stderr}"
        );
    }
}

/// `docker buildx inspect` as buildx 0.10 and later print it.
const BUILDX_REMOTE: &str = "Name:          NAME\nDriver:        remote\nLast Activity: 2026-12-01 17:38:59 +0000 UTC\n\nNodes:\nName:      NAME0\nEndpoint:  tcp://10.1.2.3:1234\nStatus:    running\nBuildkit:  v0.12.5\nPlatforms: linux/amd64, linux/386";
const BUILDX_DOCKER: &str = "Name:   default\nDriver: docker\n\nNodes:\nName:      default\nEndpoint:  default\nStatus:    running\nBuildkit:  23.0.1\nPlatforms: linux/amd64, linux/386";

/// A run with a buildx builder that pushes itself: its calls, its stderr
/// and the JSON report.
fn run_on_builder(
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    Fakes,
    tempfile::TempDir,
    Vec<String>,
    String,
    serde_json::Value,
) {
    let mut all = standard_args(ECR);
    // One build at a time: each its own `docker buildx build` (several at
    // once are one bake: `several_builds_on_a_builder_that_pushes_itself_run_as_one_bake`).
    all.extend(["--json", "--pin-digest", "--jobs", "1"]);
    all.extend(args);
    let mut envs = vec![("FAKE_VERSIONS", "20.10.24|20.10.24")];
    envs.extend(env);
    let (fakes, dir, out) = run_demo(&["docker", "aws"], &all, &envs);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report = serde_json::from_str(&stdout).expect("JSON report");
    let lines = fakes.all_call_lines();
    (fakes, dir, lines, stderr, report)
}

/// buildx gives a platform to the first node that lists it: a fleet whose
/// first node emulates arm64 ahead of the node declared for it gets a
/// warning naming both; a fleet of native nodes none.
#[test]
fn a_fleet_that_would_build_a_platform_away_from_its_node_gets_a_warning() {
    let fleet = |first: &str| {
        format!("Name:          NAME\nDriver:        remote\nLast Activity: 2026-12-04 15:35:53 +0000 UTC\n\nNodes:\nName:             NAME0\nEndpoint:         tcp://10.1.2.3:1234\nStatus:           running\nBuildKit version: v0.32.2\nPlatforms:        {first}\n\nName:             NAME1\nEndpoint:         tcp://10.1.2.4:1234\nStatus:           running\nBuildKit version: v0.32.2\nPlatforms:        linux/arm64*\n")
    };
    let mut args = standard_args(ECR);
    // One build at a time (`buildx build`, whose platforms the fake keeps).
    args.extend([
        "--builder",
        "fleet",
        "--platform",
        "linux/amd64,linux/arm64",
        "--jobs",
        "1",
    ]);
    let emulating = fleet("linux/amd64, linux/arm64, linux/386");
    let env = [
        ("FAKE_VERSIONS", "20.10.24|20.10.24"),
        ("FAKE_BUILDX_INSPECT", emulating.as_str()),
    ];
    let (_fakes, _dir, out) = run_demo(&["docker", "aws"], &args, &env);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: builder fleet: buildx gives linux/arm64 to node fleet0, the first node that lists it, which does not declare it"),
        "{stderr}"
    );
    assert!(stderr.contains("make fleet1 the first node"), "{stderr}");
    let native = fleet("linux/amd64, linux/386");
    let env = [
        ("FAKE_VERSIONS", "20.10.24|20.10.24"),
        ("FAKE_BUILDX_INSPECT", native.as_str()),
    ];
    let (_fakes, _dir, out) = run_demo(&["docker", "aws"], &args, &env);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("buildx gives"), "{stderr}");
}

/// Several builds at once on a builder that pushes itself are one `docker
/// buildx bake`: each build a target of the definition on its stdin (the
/// same tags, cache and labels as its `docker buildx build`, paths made
/// absolute), each pushed digest from the bake's metadata file; a single
/// build stays a `docker buildx build`.
#[test]
fn several_builds_on_a_builder_that_pushes_itself_run_as_one_bake() {
    let mut args = standard_args(ECR);
    args.extend(["--json", "--pin-digest", "--builder", "bk"]);
    let env = [
        ("FAKE_VERSIONS", "20.10.24|20.10.24"),
        ("FAKE_BUILDX_INSPECT", BUILDX_REMOTE),
    ];
    let (fakes, dir, out) = run_demo(&["docker", "aws"], &args, &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines = fakes.all_call_lines();
    let bakes: Vec<&String> = lines.iter().filter(|l| l.contains(" bake ")).collect();
    assert_eq!(bakes.len(), 1, "{lines:?}");
    assert!(
        bakes[0].starts_with("docker buildx bake --builder bk --progress plain --metadata-file ")
            && bakes[0].ends_with(" --provenance=false -f - web api"),
        "{}",
        bakes[0]
    );
    assert!(
        !lines.iter().any(|l| l.contains("buildx build")),
        "no build of its own: {lines:?}"
    );
    let definition: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fakes.dir.path().join("bake.stdin")).unwrap())
            .expect("a JSON definition");
    let web = &definition["target"]["web"];
    let root = fs::canonicalize(dir.path()).unwrap();
    assert_eq!(
        web["tags"],
        serde_json::json!([
            format!("{ECR}:temp_demo_web_abc123"),
            format!("{ECR}:temp_demo_worker_abc123")
        ]),
        "{definition}"
    );
    assert_eq!(
        fs::canonicalize(web["context"].as_str().unwrap()).unwrap(),
        root.join("web")
    );
    assert!(
        Path::new(web["dockerfile"].as_str().unwrap()).is_absolute(),
        "{web}"
    );
    assert_eq!(web["output"], serde_json::json!(["type=registry"]));
    assert_eq!(
        web["cache-to"],
        serde_json::json!([format!(
            "type=registry,ref={ECR}-cache:demo_web,mode=max,image-manifest=true,oci-mediatypes=true"
        )])
    );
    assert!(
        web["labels"]["com.convox.off-cluster.digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("blake3:")),
        "{web}"
    );
    assert_eq!(
        definition["target"]["api"]["tags"],
        serde_json::json!([format!("{ECR}:temp_demo_api_abc123")])
    );
    // Each digest from the bake's metadata file, by target; the file is
    // removed.
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let eight = format!("sha256:{:064}", 8);
    for i in 0..3 {
        assert_eq!(report["services"][i]["digest"], eight.as_str(), "{report}");
    }
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        written.contains(&format!("image: {ECR}:temp_demo_api_abc123@{eight}")),
        "{written}"
    );
    let metadata = bakes[0].split(' ').nth(7).expect("the metadata file");
    assert!(!Path::new(metadata).exists(), "{metadata} left behind");
    // One build to run: its own `docker buildx build`.
    let env = [env[0], env[1], ("FAKE_EXISTING", "temp_demo_api_abc123")];
    let (fakes, _dir, out) = run_demo(&["docker", "aws"], &args, &env);
    assert!(out.status.success(), "{}", text(&out).1);
    let lines = fakes.all_call_lines();
    assert!(!lines.iter().any(|l| l.contains(" bake ")), "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("buildx build")).count(),
        1,
        "{lines:?}"
    );
}

#[test]
fn a_builder_that_is_not_the_engines_pushes_every_ref_itself_with_its_registry_cache() {
    // `--builder bk`, a remote driver with BuildKit 0.12.
    let (fakes, dir, lines, stderr, report) = run_on_builder(
        &["--builder", "bk"],
        &[("FAKE_BUILDX_INSPECT", BUILDX_REMOTE)],
    );
    assert!(
        lines.contains(&"docker buildx inspect bk".to_string()),
        "{lines:?}"
    );
    let builds: Vec<&String> = lines.iter().filter(|l| l.contains(" build ")).collect();
    assert_eq!(
        builds.len(),
        2,
        "web (shared with worker) and api: {builds:?}"
    );
    let web = builds
        .iter()
        .find(|l| l.contains("temp_demo_web_abc123"))
        .expect("web's build");
    let cache = format!("{}-cache:demo_web", ECR);
    for part in [
        "docker buildx build --builder bk --progress plain --push --metadata-file ".to_string(),
        format!(" -t {ECR}:temp_demo_web_abc123 -t {ECR}:temp_demo_worker_abc123 "),
        format!(" --cache-from type=registry,ref={cache} "),
        format!(" --cache-to type=registry,ref={cache},mode=max,image-manifest=true,oci-mediatypes=true "),
        // One image manifest, as the classic builder pushes: no attestation.
        " --provenance=false web".to_string(),
    ] {
        assert!(web.contains(&part), "{part}\nnot in: {web}");
    }
    // No tag or push of its own, nothing pulled or asked of the engine.
    for l in &lines {
        assert!(
            !l.starts_with("docker tag ")
                && !l.starts_with("docker push ")
                && !l.starts_with("docker pull ")
                && !l.starts_with("docker image "),
            "{l}"
        );
    }
    // The pushed digest, from the metadata file, in the report and the file.
    let digest = format!("sha256:{:064}", 7);
    let web = &report["services"][0];
    assert_eq!(web["digest"], digest.as_str(), "{report}");
    let written = fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert!(
        written.contains(&format!("image: {ECR}:temp_demo_web_abc123@{digest}")),
        "{written}"
    );
    assert!(!stderr.contains("registry cache is"), "{stderr}");
    drop(fakes);
}

#[test]
fn an_older_buildkit_on_ecr_falls_back_to_inline_cache_and_says_why() {
    let (_, _, lines, stderr, _) = run_on_builder(
        &[],
        &[
            ("BUILDX_BUILDER", "bk"),
            (
                "FAKE_BUILDX_INSPECT",
                &BUILDX_REMOTE.replace("v0.12.5", "v0.11.6"),
            ),
        ],
    );
    assert!(
        lines.contains(&"docker buildx inspect bk".to_string()),
        "{lines:?}"
    );
    let cache = format!("{}-cache:demo_web", ECR);
    let web = lines
        .iter()
        .find(|l| l.contains("buildx build") && l.contains("temp_demo_web_"))
        .expect("web's build");
    assert!(
        web.contains(&format!(" -t {cache} "))
            && web.contains(&format!(
                " --cache-from type=registry,ref={cache} --cache-to type=inline "
            )),
        "{web}"
    );
    assert_eq!(
        stderr.matches("note: the registry cache is inline: builder bk's BuildKit (v0.11.6) is older than 0.12").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn the_current_builder_counts_and_the_docker_driver_builds_as_before() {
    // Made current by `docker buildx use`: inspect names no builder.
    let (_, _, lines, _, _) = run_on_builder(&[], &[("FAKE_BUILDX_INSPECT", BUILDX_REMOTE)]);
    assert!(
        lines.contains(&"docker buildx inspect".to_string()),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("docker buildx build --builder current ")),
        "{lines:?}"
    );
    // The engine's own builder: the image lands in the engine, then is
    // tagged and pushed.
    let (_, _, lines, _, _) = run_on_builder(&[], &[("FAKE_BUILDX_INSPECT", BUILDX_DOCKER)]);
    assert!(
        !lines.iter().any(|l| l.contains("buildx build")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("docker build ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("docker tag {ECR}:temp_demo_web_"))),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("docker push {ECR}:temp_demo_worker_"))),
        "{lines:?}"
    );
}

#[test]
fn a_dry_run_with_builder_says_what_it_assumed() {
    let (fakes, dir, out) = run_demo(
        &["docker", "aws"],
        &[&standard_args(ECR)[..], &["--dry-run", "--builder", "bk"]].concat(),
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(fakes.all_call_lines().is_empty(), "a dry run asks nothing");
    assert!(
        stdout.contains(
            "# --builder bk: a dry run asks buildx nothing, so it assumes a builder of its own"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("docker buildx build --builder bk "),
        "{stdout}"
    );
    assert!(!stdout.contains("docker push "), "{stdout}");
    drop(dir);
}

#[test]
fn the_classic_builder_keeps_each_stage_the_target_needs_in_the_registry_cache() {
    let cache = local("LOCAL/demo-cache:demo_api");
    let api_build = |lines: &[String]| -> String {
        lines
            .iter()
            .find(|l| {
                l.starts_with("docker build ") && l.contains(local(" -t LOCAL/demo:temp_demo_api_"))
            })
            .cloned()
            .expect("api's build")
    };
    // A fresh runner whose registry has the stage's cache image, not the
    // final one: only what pulled is named in --cache-from.
    let (fakes, _dir, out) = run_demo(
        &["docker"],
        &standard_args(local("LOCAL/demo")),
        &[("FAKE_EXISTING", "demo_api-base")],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let lines = fakes.all_call_lines();
    let build = api_build(&lines);
    assert!(
        build.contains(&format!(" --cache-from {cache}-base api")),
        "{build}"
    );
    assert!(
        !build.contains(&format!(" --cache-from {cache} ")),
        "{build}"
    );
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in {lines:#?}"))
    };
    // Pulled before the build; after the image's push, the stage is built
    // with --target from the same cache images (a pulled image's layers
    // have no parents in the engine) and pushed.
    let pull = at(&format!("docker pull -q {cache}-base"));
    let built = lines.iter().position(|l| *l == build).expect("build");
    let pushed = at(local("docker push LOCAL/demo:temp_demo_api_"));
    let stage = at(&format!(
        "docker build -f api/Dockerfile.api -t {cache}-base --build-arg RELEASE=dev --target base --platform linux/amd64 --cache-from {cache}-base api"
    ));
    let stage_push = at(&format!("docker push {cache}-base"));
    assert!(
        pull < built && built < pushed && pushed < stage && stage < stage_push,
        "{lines:#?}"
    );
    // web's Dockerfile has one stage: nothing of the kind.
    assert!(!lines.iter().any(|l| l.contains("demo_web-")), "{lines:#?}");

    // Nothing in the registry yet: no --cache-from, the stage still pushed.
    let (fakes, _dir, out) = run_demo(&["docker"], &standard_args(local("LOCAL/demo")), &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let lines = fakes.all_call_lines();
    assert!(!api_build(&lines).contains("--cache-from"), "{lines:#?}");
    assert!(
        lines.contains(&format!("docker push {cache}-base")),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&format!(
            "docker build -f api/Dockerfile.api -t {cache}-base --build-arg RELEASE=dev --target base --platform linux/amd64 api"
        )),
        "the stage from the engine's own cache: {lines:#?}"
    );
}
