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
