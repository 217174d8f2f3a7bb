//! Command tests for ECR and docker as companies set them up: credential
//! helpers, private base images, immutable tags, the cache's lifecycle,
//! repository names and attestations. The real binary, with fake `docker`
//! and `aws` first on PATH (tests/common).

mod common;

use common::{fixture, local, text, Fakes};
use std::fs;
use std::path::Path;
use std::process::Output;

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo";
const FILE: &str = "docker-compose.convox.yml";

fn run(fakes: &Fakes, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = fakes.command(dir);
    c.args(["--app", "demo", "--gitsha", "abc123"]);
    if !args.contains(&"--tag") {
        c.args(["--tag", "temp_{app}_{service}_{gitsha}"]);
    }
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run binary")
}

#[test]
fn a_repository_name_ecr_refuses_is_one_line_exit_2_and_nothing_runs() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let before = fs::read(dir.path().join(FILE)).unwrap();
    for (repo, says) in [
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/Co-App",
            "`C` (character 1 of `Co-App`)",
        ),
        (
            "team//app",
            "`/` (character 6 of `team//app`) must stand between",
        ),
        ("my+app", "`+` (character 3 of `my+app`) is not allowed"),
    ] {
        let out = run(
            &fakes,
            dir.path(),
            &["--repo", repo, "--region", "us-east-1"],
            &[],
        );
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(2), "{repo}: {stderr}");
        assert!(stderr.contains(says), "{repo}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    assert!(
        fakes.all_call_lines().is_empty(),
        "{:?}",
        fakes.all_call_lines()
    );
    assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), before);
}

/// The argv of every call whose line contains `needle`.
fn calls_with(fakes: &Fakes, needle: &str) -> Vec<Vec<String>> {
    fakes
        .all_call_lines()
        .iter()
        .zip(all_argv(fakes))
        .filter(|(l, _)| l.contains(needle))
        .map(|(_, a)| a)
        .collect()
}

fn all_argv(fakes: &Fakes) -> Vec<Vec<String>> {
    fs::read_to_string(fakes.dir.path().join("argv.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('\x1f').map(String::from).collect())
        .collect()
}

#[test]
fn the_cache_repository_this_run_creates_gets_a_lifecycle_policy_and_no_other_does() {
    // Neither repository exists: both are created; only the cache gets one.
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let out = run(
        &fakes,
        dir.path(),
        &["--repo", ECR],
        &[("FAKE_NO_REPO", "1")],
    );
    common::ok(&out);
    let policies = calls_with(&fakes, "put-lifecycle-policy");
    assert_eq!(policies.len(), 1, "{:?}", fakes.all_call_lines());
    let argv = &policies[0];
    let at = |flag: &str| {
        let i = argv.iter().position(|a| a == flag).expect(flag);
        argv[i + 1].clone()
    };
    assert_eq!(at("--repository-name"), "demo-cache");
    assert_eq!(at("--region"), "us-east-1");
    let policy: serde_json::Value = serde_json::from_str(&at("--lifecycle-policy-text")).unwrap();
    let rule = &policy["rules"][0];
    assert_eq!(rule["selection"]["tagStatus"], "untagged");
    assert_eq!(rule["selection"]["countType"], "sinceImagePushed");
    assert_eq!(rule["selection"]["countUnit"], "days");
    assert_eq!(rule["selection"]["countNumber"], 7);
    assert_eq!(rule["action"]["type"], "expire");
    // It comes right after the cache repository's creation.
    let lines = fakes.all_call_lines();
    let created = lines
        .iter()
        .position(|l| l.contains("create-repository --repository-name demo-cache"))
        .expect("cache created");
    let policy = position(&lines, |l| l.contains("put-lifecycle-policy"));
    assert!(created < policy, "{lines:#?}");

    // --cache-expiry-days sets the days; 0 sets no policy.
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(
        &fakes,
        fixture("demo").path(),
        &["--repo", ECR, "--cache-expiry-days", "30"],
        &[("FAKE_NO_REPO", "1")],
    );
    common::ok(&out);
    let policies = calls_with(&fakes, "put-lifecycle-policy");
    assert!(policies[0].iter().any(|a| a.contains("\"countNumber\":30")));
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(
        &fakes,
        fixture("demo").path(),
        &["--repo", ECR, "--cache-expiry-days", "0"],
        &[("FAKE_NO_REPO", "1")],
    );
    common::ok(&out);
    assert!(calls_with(&fakes, "put-lifecycle-policy").is_empty());

    // A cache repository that is there already, or that another run made in
    // the meantime, keeps its policy.
    for env in [
        vec![],
        vec![
            ("FAKE_NO_REPO", "1"),
            ("FAKE_FAIL", "create-repository --repository-name demo-cache"),
            ("FAKE_FAIL_MSG", "An error occurred (RepositoryAlreadyExistsException) when calling the CreateRepository operation"),
        ],
    ] {
        let fakes = Fakes::new(&["docker", "aws"]);
        let out = run(&fakes, fixture("demo").path(), &["--repo", ECR], &env);
        common::ok(&out);
        assert!(calls_with(&fakes, "put-lifecycle-policy").is_empty(), "{env:?}");
    }
}

#[test]
fn a_refused_lifecycle_policy_is_one_warning_and_the_run_goes_on() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let out = run(
        &fakes,
        dir.path(),
        &["--repo", ECR],
        &[
            ("FAKE_NO_REPO", "1"),
            ("FAKE_FAIL", "put-lifecycle-policy"),
            (
                "FAKE_FAIL_MSG",
                "AccessDeniedException: ecr:PutLifecyclePolicy",
            ),
        ],
    );
    let stderr = common::ok(&out);
    assert_eq!(
        stderr
            .matches("the lifecycle policy of demo-cache was not set")
            .count(),
        1,
        "{stderr}"
    );
    assert!(fs::read_to_string(dir.path().join(FILE))
        .unwrap()
        .contains("image: "));
}

const IMMUTABLE: &str = "tag invalid: The image tag 'temp_demo_web_abc123' already exists in the 'demo' repository and cannot be overwritten because the repository is immutable.";

/// The fake registry's digest of a tag (as tests/common's fake computes it).
fn registry_digest(tag: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tag.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!("sha256:{}", &String::from_utf8_lossy(&out.stdout)[..64])
}

#[test]
fn a_push_refused_by_an_immutable_repository_counts_as_pushed_by_another_run() {
    let immutable = [
        ("FAKE_APPEAR_ON_PUSH", "1"),
        (
            "FAKE_FAIL",
            "docker push 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo:temp_demo_web",
        ),
        ("FAKE_FAIL_MSG", IMMUTABLE),
    ];
    // The first run pushed; the second, at the same time, is refused.
    let first = Fakes::new(&["docker", "aws"]);
    let dir1 = fixture("demo");
    common::ok(&run(&first, dir1.path(), &["--repo", ECR], &[]));
    let second = Fakes::new(&["docker", "aws"]);
    let dir2 = fixture("demo");
    let out = run(&second, dir2.path(), &["--repo", ECR], &immutable);
    let stderr = common::ok(&out);
    assert_eq!(
        fs::read_to_string(dir1.path().join(FILE)).unwrap(),
        fs::read_to_string(dir2.path().join(FILE)).unwrap()
    );
    assert!(
        stderr.contains("was pushed by another run first"),
        "{stderr}"
    );
    let web = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("web "))
        .unwrap();
    assert!(web.contains("pushed by another run"), "{stderr}");
    // Refused at once: no retry of a push that cannot succeed.
    let pushes = second
        .call_lines()
        .iter()
        .filter(|l| l.contains("docker push") && l.contains("temp_demo_web"))
        .count();
    assert_eq!(pushes, 1, "{:?}", second.call_lines());

    // --pin-digest pins the registry's digest of that tag.
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let out = run(
        &fakes,
        dir.path(),
        &["--repo", ECR, "--pin-digest"],
        &immutable,
    );
    common::ok(&out);
    let file = fs::read_to_string(dir.path().join(FILE)).unwrap();
    let want = format!(
        "{ECR}:temp_demo_web_abc123@{}",
        registry_digest("temp_demo_web_abc123")
    );
    assert!(file.contains(&want), "{want} in\n{file}");

    // A refusal for a tag the registry still does not have is a failure.
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let before = fs::read(dir.path().join(FILE)).unwrap();
    let out = run(&fakes, dir.path(), &["--repo", ECR], &immutable[1..]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), before);
}

/// The demo on a builder that pushes itself, where `failing` is refused
/// as an immutable repository refuses a tag another run pushed first: its
/// fakes, its directory, its stderr (the run succeeds).
fn refused_as_immutable(
    failing: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Fakes, tempfile::TempDir, String) {
    let inspect = "Name: NAME\nDriver: remote\n\nNodes:\nName: NAME0\nBuildkit: v0.32.2\n";
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let mut all = vec!["--repo", ECR, "--builder", "bk"];
    all.extend(args);
    let mut envs = vec![
        ("FAKE_BUILDX_INSPECT", inspect),
        ("FAKE_VERSIONS", "28.2.2 28.2.2"),
        ("FAKE_FAIL", failing),
        ("FAKE_FAIL_MSG", IMMUTABLE),
    ];
    envs.extend(env);
    let out = run(&fakes, dir.path(), &all, &envs);
    let stderr = common::ok(&out);
    (fakes, dir, stderr)
}

/// A bake (several builds at once) that stops on a tag another run pushed
/// first to the immutable repository: each build then runs alone, where
/// such a tag counts as pushed.
#[test]
fn a_bake_refused_as_immutable_runs_each_build_alone() {
    let (fakes, dir, stderr) = refused_as_immutable("docker buildx bake", &[], &[]);
    assert!(stderr.contains("each build runs alone"), "{stderr}");
    let lines = fakes.all_call_lines();
    let alone = lines.iter().filter(|l| l.contains("buildx build")).count();
    assert_eq!(alone, 2, "web (with worker) and api, each alone: {lines:?}");
    assert!(fs::read_to_string(dir.path().join(FILE))
        .unwrap()
        .contains("temp_demo_api_abc123"));
}

#[test]
fn a_builder_that_pushes_itself_refused_as_immutable_counts_as_pushed() {
    let (_fakes, dir, stderr) = refused_as_immutable(
        "docker buildx build",
        &["--jobs", "1"],
        &[("FAKE_APPEAR_ON_PUSH", "1")],
    );
    assert!(
        stderr.contains("was pushed by another run first"),
        "{stderr}"
    );
    assert!(fs::read_to_string(dir.path().join(FILE))
        .unwrap()
        .contains("temp_demo_web_abc123"));
}

#[test]
fn a_cache_tag_refused_as_immutable_is_one_warning_and_the_build_goes_on() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let cache = "push 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo-cache:demo_web";
    let msg = IMMUTABLE.replace("temp_demo_web_abc123", "demo_web");
    let out = run(
        &fakes,
        dir.path(),
        &["--repo", ECR],
        &[("FAKE_FAIL", cache), ("FAKE_FAIL_MSG", &msg)],
    );
    let stderr = common::ok(&out);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("warning") && l.contains("demo-cache:demo_web"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert_eq!(
        fakes
            .cache_calls()
            .iter()
            .filter(|l| l.contains(cache))
            .count(),
        1,
        "not retried: {:?}",
        fakes.cache_calls()
    );
}

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// A docker config in its own folder, passed as DOCKER_CONFIG.
fn docker_config(json: &str) -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("config.json"), json).unwrap();
    let path = d.path().display().to_string();
    (d, path)
}

#[test]
fn a_host_a_credential_helper_serves_gets_no_login_and_the_config_is_not_written() {
    for json in [
        r#"{"credsStore": "ecr-login"}"#.to_string(),
        format!(r#"{{"credHelpers": {{"{HOST}": "ecr-login"}}, "credsStore": "desktop"}}"#),
    ] {
        let (cfg, path) = docker_config(&json);
        let fakes = Fakes::new(&["docker", "aws"]);
        let dir = fixture("demo");
        let out = run(
            &fakes,
            dir.path(),
            &["--repo", ECR],
            &[("DOCKER_CONFIG", &path)],
        );
        common::ok(&out);
        let lines = fakes.call_lines();
        assert!(
            !lines.iter().any(|l| l.contains("login")),
            "{json}: {lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("docker push")),
            "{lines:#?}"
        );
        assert_eq!(
            fs::read_to_string(cfg.path().join("config.json")).unwrap(),
            json
        );
        assert_eq!(fs::read_dir(cfg.path()).unwrap().count(), 1);
        // The dry run says so.
        let fresh = fixture("demo");
        let out = run(
            &fakes,
            fresh.path(),
            &["--repo", ECR, "--dry-run"],
            &[("DOCKER_CONFIG", &path)],
        );
        let stdout = text(&out).0;
        assert!(
            stdout.contains(&format!(
                "# {HOST}: no docker login; the credential helper docker-credential-ecr-login"
            )),
            "{stdout}"
        );
        assert!(!stdout.contains("get-login-password"), "{stdout}");
    }
}

#[test]
fn a_store_that_can_store_keeps_the_login() {
    for json in [
        r#"{"credsStore": "desktop"}"#,
        r#"{"credHelpers": {"public.ecr.aws": "ecr-login"}}"#,
    ] {
        let (_cfg, path) = docker_config(json);
        let fakes = Fakes::new(&["docker", "aws"]);
        let dir = fixture("demo");
        let out = run(
            &fakes,
            dir.path(),
            &["--repo", ECR],
            &[("DOCKER_CONFIG", &path)],
        );
        common::ok(&out);
        let lines = fakes.call_lines();
        assert!(
            lines
                .iter()
                .any(|l| l == &format!("docker login --username AWS --password-stdin {HOST}")),
            "{json}: {lines:#?}"
        );
    }
    // No config at all (HOME is the fakes' folder, which has none): a login.
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    common::ok(&run(&fakes, dir.path(), &["--repo", ECR], &[]));
    assert!(fakes
        .call_lines()
        .iter()
        .any(|l| l.starts_with("docker login")));
}

const SHARED: &str = "999999999999.dkr.ecr.eu-west-1.amazonaws.com";

/// An app whose one service builds on a base in another account's ECR, in
/// another region.
fn private_base_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("app")).unwrap();
    fs::write(
        dir.path().join("app/Dockerfile"),
        format!("FROM {SHARED}/shared/base:1\nCOPY . /app\n"),
    )
    .unwrap();
    fs::write(dir.path().join(FILE), "web:\n  build: ./app\n").unwrap();
    dir
}

fn position(lines: &[String], f: impl Fn(&str) -> bool) -> usize {
    lines
        .iter()
        .position(|l| f(l))
        .unwrap_or_else(|| panic!("not found in {lines:#?}"))
}

#[test]
fn a_private_base_in_another_account_is_identified_by_ecrs_api_before_any_login() {
    let dir = private_base_app();
    let tag_of = |salt: &str| {
        let fakes = Fakes::new(&["docker", "aws"]);
        let out = run(
            &fakes,
            dir.path(),
            &["--repo", ECR, "-o", "-", "--tag", "{hash}"],
            &[
                ("FAKE_EXISTING", "1"),
                ("FAKE_DIGEST_SALT", salt),
                ("FAKE_BARRIER", "2"),
                ("FAKE_BARRIER_ON", "get-login-password"),
            ],
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("warning"), "{stderr}");
        (stdout, fakes.call_lines())
    };
    let (file, lines) = tag_of("");
    let lookup = position(&lines, |l| {
        l.starts_with(
            "aws ecr batch-get-image --registry-id 999999999999 --repository-name shared/base --image-ids imageTag=1 ",
        ) && l.ends_with("--region eu-west-1 --output json")
    });
    // No docker question before the push (only the read-back after it).
    let pushed = position(&lines, |l| l.starts_with("docker push"));
    assert!(
        !lines[..pushed]
            .iter()
            .any(|l| l.contains("manifest inspect")),
        "{lines:#?}"
    );
    // Both registries logged in to, each with its own region's password,
    // at the same time (the fake's barrier), before the build.
    let own = position(&lines, |l| {
        l == "aws ecr get-login-password --region us-east-1"
    });
    let other = position(&lines, |l| {
        l == "aws ecr get-login-password --region eu-west-1"
    });
    let build = position(&lines, |l| l.starts_with("docker build"));
    for host in [HOST, SHARED] {
        let login = position(&lines, |l| {
            l == format!("docker login --username AWS --password-stdin {host}")
        });
        assert!(lookup < login && login < build, "{lines:#?}");
    }
    assert!(lookup < own && lookup < other, "{lines:#?}");
    // The base's digest is in the tag: rebuilt under the same tag, it is
    // a new tag.
    let (rebuilt, _) = tag_of("rebuilt");
    let image = |f: &str| f.lines().find(|l| l.contains("image:")).map(String::from);
    assert_ne!(image(&file), image(&rebuilt));
}

#[test]
fn a_private_base_ecr_cannot_answer_for_is_pulled_after_its_login() {
    let dir = private_base_app();
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(
        &fakes,
        dir.path(),
        &["--repo", ECR, "-o", "-"],
        &[
            ("FAKE_EXISTING", "1"),
            ("FAKE_LOCAL", "1"),
            ("FAKE_FAIL", "--registry-id 999999999999"),
            ("FAKE_FAIL_MSG", "An error occurred (AccessDeniedException) when calling the BatchGetImage operation"),
        ],
    );
    common::ok(&out);
    let lines = fakes.call_lines();
    let login = position(&lines, |l| {
        l == format!("docker login --username AWS --password-stdin {SHARED}")
    });
    let pull = position(&lines, |l| {
        l == format!("docker pull --quiet {SHARED}/shared/base:1")
    });
    assert!(login < pull, "{lines:#?}");
    // Logged in once, though the plan's logins come later.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains(&format!("password-stdin {SHARED}")))
            .count(),
        1
    );

    // Neither ECR nor a pull: one error naming the base, its registry and
    // what to set; nothing built.
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(
        &fakes,
        dir.path(),
        &["--repo", ECR, "-o", "-"],
        &[
            ("FAKE_FAIL", "999999999999"),
            ("FAKE_FAIL_MSG", "AccessDeniedException"),
        ],
    );
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "base image {SHARED}/shared/base:1: its registry {SHARED} gave no digest"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("ecr:BatchGetImage"), "{stderr}");
    assert!(!fakes
        .call_lines()
        .iter()
        .any(|l| l.starts_with("docker build")));
}

#[test]
fn a_base_registry_a_helper_serves_gets_no_login_and_the_dry_run_says_how_each_is_reached() {
    let dir = private_base_app();
    let (_cfg, path) = docker_config(&format!(
        r#"{{"credHelpers": {{"{SHARED}": "ecr-login"}}}}"#
    ));
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(
        &fakes,
        dir.path(),
        &["--repo", ECR, "-o", "-"],
        &[("FAKE_EXISTING", "1"), ("DOCKER_CONFIG", &path)],
    );
    common::ok(&out);
    let lines = fakes.call_lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(&format!("password-stdin {SHARED}"))),
        "{lines:#?}"
    );
    assert!(!lines
        .iter()
        .any(|l| l.contains("--region eu-west-1") && l.contains("get-login-password")));
    assert!(lines
        .iter()
        .any(|l| l.contains(&format!("password-stdin {HOST}"))));
    let out = run(
        &fakes,
        dir.path(),
        &["--repo", ECR, "--dry-run"],
        &[("DOCKER_CONFIG", &path)],
    );
    let stdout = text(&out).0;
    assert!(stdout.contains(&format!("# {SHARED}: no docker login; the credential helper docker-credential-ecr-login (credHelpers")), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "docker login --username AWS --password-stdin {HOST}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "aws ecr batch-get-image --registry-id 999999999999 --repository-name shared/base"
        ),
        "{stdout}"
    );
}

/// The flags each buildx version needs for one image manifest, and the
/// attestations kept when asked.
#[test]
fn attestations_are_off_on_every_buildx_builder_and_kept_when_asked() {
    let remote = "Name: NAME\nDriver: remote\n\nNodes:\nName: NAME0\nBuildkit: v0.32.2\n";
    let engine = "Name: NAME\nDriver: docker\n\nNodes:\nName: NAME\nBuildkit: v0.13.2\n";
    let builds = |inspect: &str, version: &str, extra: &[&str]| {
        let fakes = Fakes::new(&["docker"]);
        let dir = fixture("demo");
        let mut args = vec!["--repo", local("LOCAL/demo")];
        args.extend(extra);
        let out = run(
            &fakes,
            dir.path(),
            &args,
            &[
                ("FAKE_BUILDX_INSPECT", inspect),
                ("FAKE_VERSIONS", "28.2.2|28.2.2"),
                ("FAKE_BUILDX_VERSION", version),
            ],
        );
        let (_, stderr) = text(&out);
        let builds: Vec<String> = fakes
            .all_call_lines()
            .into_iter()
            .filter(|l| {
                (l.contains(" build ") || l.contains(" bake "))
                    && !l.contains(local("-t LOCAL/demo-cache"))
            })
            .collect();
        (out.status.code(), stderr, builds)
    };
    let current = "github.com/docker/buildx v0.36.1 a1b2c3d";
    for (inspect, extra) in [(remote, vec!["--builder", "bk"]), (engine, vec![])] {
        let (code, stderr, lines) = builds(inspect, current, &extra);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!lines.is_empty());
        for l in &lines {
            assert!(l.contains(" --provenance=false "), "{l}");
            assert!(!l.contains("--sbom"), "{l}");
        }
        let mut asked = extra.clone();
        asked.extend(["--provenance", "mode=max", "--sbom"]);
        let (code, stderr, lines) = builds(inspect, current, &asked);
        assert_eq!(code, Some(0), "{stderr}");
        for l in &lines {
            assert!(l.contains(" --provenance=mode=max --sbom=true "), "{l}");
        }
    }
    // buildx before 0.10 makes no attestation and knows no such flag.
    let (code, stderr, lines) = builds(
        remote,
        "github.com/docker/buildx v0.9.1 ed00243",
        &["--builder", "bk"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        lines.iter().all(|l| !l.contains("--provenance")),
        "{lines:?}"
    );
    let (code, stderr, _) = builds(
        remote,
        "github.com/docker/buildx v0.9.1 ed00243",
        &["--builder", "bk", "--sbom"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("need buildx 0.10 or later, and this one is 0.9.1"),
        "{stderr}"
    );
}

#[test]
fn attestations_asked_of_the_classic_builder_are_refused_in_one_line() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    for flag in [vec!["--sbom"], vec!["--provenance", "max"]] {
        let mut args = vec!["--repo", local("LOCAL/demo")];
        args.extend(&flag);
        let out = run(
            &fakes,
            dir.path(),
            &args,
            &[("FAKE_VERSIONS", "20.10.24|20.10.24")],
        );
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("the classic builder, which makes none"),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    assert!(!fakes.call_lines().iter().any(|l| l.contains(" build ")));
}

/// The old tool's environment: its Drone step with only
/// `AWS_ECS_REPO_PREFIX`, or only `AWS_ACCOUNT` and a bare name.
#[test]
fn the_old_tools_environment_names_the_repository_and_the_account() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let mut c = fakes.command(dir.path());
    c.args(["-app=demo", "-gitsha=abc123", "-description=main"])
        .env("AWS_ECS_REPO_PREFIX", ECR);
    let out = c.output().expect("run");
    common::ok(&out);
    assert!(fakes
        .call_lines()
        .iter()
        .any(|l| l.starts_with(&format!("docker push {ECR}:"))));
    assert!(fs::read_to_string(dir.path().join(FILE))
        .unwrap()
        .contains(&format!("image: {ECR}:")));

    // A --repo or PLUGIN_REPO wins over it.
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let out = run(
        &fakes,
        dir.path(),
        &["--dry-run"],
        &[
            ("AWS_ECS_REPO_PREFIX", ECR),
            ("PLUGIN_REPO", local("LOCAL/other")),
        ],
    );
    assert!(
        text(&out).0.contains(local("image: LOCAL/other:")),
        "{}",
        text(&out).1
    );

    // AWS_ACCOUNT, or -defaultAccount, names a bare name's account: no STS.
    for (env, args) in [
        (
            vec![("AWS_ACCOUNT", "210987654322"), ("AWS_REGION", "eu-west-1")],
            vec!["--repo", "demo"],
        ),
        (
            vec![("AWS_REGION", "eu-west-1")],
            vec!["--repo", "demo", "-defaultAccount", "210987654322"],
        ),
    ] {
        let fakes = Fakes::new(&["docker", "aws"]);
        let dir = fixture("demo");
        let out = run(&fakes, dir.path(), &args, &env);
        let stderr = common::ok(&out);
        assert!(!stderr.contains("ignored"), "{stderr}");
        let lines = fakes.call_lines();
        assert!(!lines.iter().any(|l| l.contains("sts")), "{lines:#?}");
        let host = "210987654322.dkr.ecr.eu-west-1.amazonaws.com";
        assert!(fs::read_to_string(dir.path().join(FILE))
            .unwrap()
            .contains(&format!("image: {host}/demo:")));
    }
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(
        &fakes,
        fixture("demo").path(),
        &["--repo", "demo"],
        &[("AWS_ACCOUNT", "12345"), ("AWS_REGION", "eu-west-1")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert!(text(&out).1.contains("is not 12 digits"));
}
