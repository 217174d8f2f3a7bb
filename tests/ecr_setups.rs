//! Command tests for ECR and docker as companies set them up: credential
//! helpers, private base images, immutable tags, the cache's lifecycle,
//! repository names and attestations. The real binary, with fake `docker`
//! and `aws` first on PATH (tests/common).

mod common;

use common::{fixture, text, Fakes};
use std::fs;
use std::path::Path;
use std::process::Output;

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo";
const FILE: &str = "docker-compose.convox.yml";

fn run(fakes: &Fakes, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = fakes.command(dir);
    c.args(["--app", "demo", "--gitsha", "abc123"]);
    c.args(["--tag", "temp_{app}_{service}_{gitsha}"]);
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
        ("team//app", "`/` (character 6 of `team//app`) must stand between"),
        ("my+app", "`+` (character 3 of `my+app`) is not allowed"),
    ] {
        let out = run(&fakes, dir.path(), &["--repo", repo, "--region", "us-east-1"], &[]);
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(2), "{repo}: {stderr}");
        assert!(stderr.contains(says), "{repo}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    assert!(fakes.all_call_lines().is_empty(), "{:?}", fakes.all_call_lines());
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
    let out = run(&fakes, dir.path(), &["--repo", ECR], &[("FAKE_NO_REPO", "1")]);
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
    assert!(lines[created + 1].contains("put-lifecycle-policy"), "{lines:#?}");

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
            ("FAKE_FAIL_MSG", "AccessDeniedException: ecr:PutLifecyclePolicy"),
        ],
    );
    let stderr = common::ok(&out);
    assert_eq!(
        stderr.matches("the lifecycle policy of demo-cache was not set").count(),
        1,
        "{stderr}"
    );
    assert!(fs::read_to_string(dir.path().join(FILE)).unwrap().contains("image: "));
}
