//! What Convox uploads and builds, as the rack reads it: convox.yml's
//! `build.args` (not passed), the rack's ECR repositories, Dockerfile
//! heredocs, the staged context, nothing of this program's in a context, and
//! the platforms the rack's nodes run.
//! The real binary with fake `docker` and `aws` first on PATH.

mod common;

use common::{app_with as app, text, Fakes};
use std::fs;
use std::path::Path;

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Fakes, String, String) {
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = fakes.run(dir, args, env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    (fakes, stdout, stderr)
}

const CONVOX_YML: &str = "services:\n  web:\n    build:\n      path: .\n      args:\n        - NODE_ENV=production\n    port: 3000\n";
const DOCKERFILE: &str = "FROM scratch\nARG NODE_ENV\nCOPY . /app\n";

#[test]
fn convox_ymls_build_args_are_not_passed_and_a_warning_says_how_convox_passes_them() {
    let dir = app(&[("convox.yml", CONVOX_YML), ("Dockerfile", DOCKERFILE)]);
    let repo = format!("{ECR_HOST}/prod/shop");
    let (fakes, _, stderr) = run(
        dir.path(),
        &[
            "--app",
            "shop",
            "--gitsha",
            "a",
            "--repo",
            &repo,
            "-f",
            "convox.yml",
        ],
        &[],
    );
    assert!(
        stderr.contains("`build.args` (NODE_ENV) are not passed"),
        "{stderr}"
    );
    let build = fakes
        .call_lines()
        .into_iter()
        .find(|c| c.starts_with("docker build"))
        .expect("a build");
    assert!(!build.contains("NODE_ENV"), "{build}");
    // From the app's environment, as Convox passes it: by name only.
    fs::write(dir.path().join("app.env"), "NODE_ENV=staging\n").expect("env");
    fs::write(dir.path().join("convox.yml"), CONVOX_YML).expect("reset");
    let (fakes, _, _) = run(
        dir.path(),
        &[
            "--app",
            "shop",
            "--gitsha",
            "b",
            "--repo",
            &repo,
            "-f",
            "convox.yml",
            "--env-file",
            "app.env",
        ],
        &[],
    );
    let build = fakes
        .call_lines()
        .into_iter()
        .find(|c| c.starts_with("docker build"))
        .expect("a build");
    assert!(build.contains("--build-arg NODE_ENV "), "{build}");
    assert!(!build.contains("staging"), "{build}");
}

#[test]
fn the_rack_repository_warning_shows_only_outside_the_racks_names() {
    let dir = app(&[("convox.yml", CONVOX_YML), ("Dockerfile", DOCKERFILE)]);
    let warned = |repo: &str, rack_env: bool| {
        let repo = format!("{ECR_HOST}/{repo}");
        let mut args = vec![
            "--app",
            "shop",
            "--gitsha",
            "a",
            "--repo",
            &repo,
            "-f",
            "convox.yml",
            "--dry-run",
        ];
        if !rack_env {
            args.extend(["--rack", "acme/prod"]);
        }
        let env: &[(&str, &str)] = if rack_env {
            &[("CONVOX_RACK", "prod")]
        } else {
            &[]
        };
        let (_, _, stderr) = run(dir.path(), &args, env);
        stderr.contains("reaches only `prod/*` and `prod-*`")
    };
    assert!(warned("shop", false));
    assert!(warned("production/shop", true));
    assert!(!warned("prod/shop", false));
    assert!(!warned("prod-shop", true));
    // A gen1 file: no such role, no warning.
    let gen1 = app(&[
        ("docker-compose.convox.yml", "web:\n  build: .\n"),
        ("Dockerfile", DOCKERFILE),
    ]);
    let repo = format!("{ECR_HOST}/shop");
    let (_, _, stderr) = run(
        gen1.path(),
        &[
            "--app",
            "shop",
            "--gitsha",
            "a",
            "--repo",
            &repo,
            "--rack",
            "prod",
            "--dry-run",
        ],
        &[],
    );
    assert!(!stderr.contains("reaches only"), "{stderr}");
}

#[test]
fn nothing_inside_a_heredoc_is_looked_up_as_a_base_image() {
    let dockerfile = "# syntax=docker/dockerfile:1\nFROM registry.test/base:1 AS build\nRUN <<EOF\nfrom flask import Flask\nFROM python:3 AS fake\nEOF\nFROM scratch\nCOPY <<EOF /app/main.py\nfrom flask import Flask\nEOF\nCOPY --from=build /out /out\n";
    let dir = app(&[
        ("docker-compose.convox.yml", "web:\n  build: .\n"),
        ("Dockerfile", dockerfile),
    ]);
    let repo = format!("{ECR_HOST}/shop");
    let (_, planned, _) = run(
        dir.path(),
        &[
            "--app",
            "shop",
            "--gitsha",
            "a",
            "--repo",
            &repo,
            "--dry-run",
        ],
        &[],
    );
    let (fakes, stdout, _) = run(
        dir.path(),
        &["--app", "shop", "--gitsha", "a", "--repo", &repo, "-o", "-"],
        // The fake registry has the base's tag `1`.
        &[("FAKE_EXISTING", "1")],
    );
    let calls = fakes.all_call_lines().join("\n");
    assert!(planned.contains("registry.test/base:1"), "{planned}");
    assert!(
        !planned.contains("flask") || planned.contains("cat Dockerfile"),
        "{planned}"
    );
    assert!(
        calls.contains("registry.test/base:1"),
        "the real base is looked up: {calls}"
    );
    for not_an_image in ["flask", "python"] {
        assert!(
            !calls.contains(not_an_image),
            "{not_an_image} looked up: {calls}"
        );
        assert!(!stdout.contains(not_an_image), "{stdout}");
    }
}

#[test]
fn a_build_dot_context_holds_nothing_of_this_programs_and_the_dry_runs_tag_is_the_real_runs() {
    let dir = app(&[
        ("docker-compose.convox.yml", "web:\n  build: .\n"),
        ("Dockerfile", "FROM scratch\nCOPY . /app\n"),
    ]);
    let repo = format!("{ECR_HOST}/shop");
    let args = ["--app", "shop", "--gitsha", "a", "--repo", &repo];
    let tag_in = |s: &str| {
        s.split_whitespace()
            .find(|w| w.starts_with(&format!("{repo}:temp_shop_web_")))
            .map(String::from)
            .unwrap_or_else(|| panic!("no tag in {s}"))
    };
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let (_, planned, _) = run(dir.path(), &dry, &[]);
    let (_, _, _) = run(dir.path(), &args, &[]);
    let written = fs::read_to_string(dir.path().join("docker-compose.convox.yml")).expect("file");
    assert_eq!(tag_in(&planned), tag_in(&written));
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["Dockerfile", "docker-compose.convox.yml"]);
}

#[test]
fn a_context_below_a_root_dockerignore_is_built_from_its_staged_copy() {
    let dir = app(&[
        (".dockerignore", "**/.env\n"),
        (
            "docker-compose.convox.yml",
            "web:\n  build: ./web\nroot:\n  build: .\n  dockerfile: web/Dockerfile\n",
        ),
        ("web/Dockerfile", "FROM scratch\nCOPY . /app\n"),
        ("web/.env", "TOKEN=x\n"),
        ("web/app.txt", "a\n"),
    ]);
    let repo = format!("{ECR_HOST}/shop");
    let (fakes, _, _) = run(
        dir.path(),
        &[
            "--app",
            "shop",
            "--gitsha",
            "a",
            "--repo",
            &repo,
            "--tag",
            "t_{service}",
        ],
        &[],
    );
    let builds: Vec<String> = fakes
        .call_lines()
        .into_iter()
        .filter(|c| c.starts_with("docker build"))
        .collect();
    let web = builds
        .iter()
        .find(|c| c.contains(":t_web "))
        .expect("web's build");
    let root = builds
        .iter()
        .find(|c| c.contains(":t_root "))
        .expect("root's build");
    let staged = web.rsplit(' ').next().expect("context");
    assert!(staged.contains("convox-build-off-cluster."), "{web}");
    assert!(staged.ends_with("/upload/web"), "{web}");
    assert!(
        !Path::new(staged).exists(),
        "the staged copy is removed after the run"
    );
    assert!(
        root.ends_with(" ."),
        "the app directory is built as it is: {root}"
    );
}

/// The rack's nodes decide the platforms when nothing else does: `convox
/// rack params` (either generation's), then EC2's architectures of its
/// instance types.
#[test]
fn the_racks_instance_types_decide_the_platforms_of_either_generation() {
    let dir = app(&[
        (
            "convox.yml",
            "services:\n  web:\n    build: .\n    port: 3000\n",
        ),
        ("Dockerfile", DOCKERFILE),
    ]);
    let repo = format!("{ECR_HOST}/prod/shop");
    let run_with = |params: &str, extra: &[&str]| {
        fs::write(
            dir.path().join("convox.yml"),
            "services:\n  web:\n    build: .\n    port: 3000\n",
        )
        .expect("reset");
        let fakes = Fakes::new(&["docker", "aws", "convox"]);
        let mut args = vec![
            "--app",
            "shop",
            "--gitsha",
            "a",
            "--repo",
            &repo,
            "-f",
            "convox.yml",
            "--rack",
            "prod",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = fakes.run(
            dir.path(),
            &args,
            &[
                ("FAKE_RACK_PARAMS", params),
                ("DOCKER_BUILDKIT", "1"),
                ("FAKE_VERSIONS", "20.10.24|20.10.24|linux/amd64"),
            ],
        );
        (fakes, out)
    };
    // gen2: a Graviton rack gets linux/arm64 without a flag.
    let (fakes, out) = run_with(
        "BuildInstance       c5.large\nInstanceType        m6g.large\n",
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let calls = fakes.call_lines();
    assert!(
        calls.iter().any(|c| c == "convox rack params --rack prod"),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("aws ec2 describe-instance-types --instance-types m6g.large ")),
        "only the runtime type is asked: {calls:?}"
    );
    let build = calls
        .iter()
        .find(|c| c.starts_with("docker build"))
        .expect("a build");
    assert!(build.contains(" --platform linux/arm64 "), "{build}");
    assert!(
        stderr.contains("platforms: linux/arm64 (the rack prod)"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the JSON report");
    let web = &report["services"][0];
    assert_eq!(web["platforms"], serde_json::json!(["linux/arm64"]));
    assert_eq!(web["platform_source"], "rack");
    // v3 with Karpenter on for both architectures: both, built on the
    // engine's BuildKit one platform at a time and joined into one index.
    let v3 = "karpenter_arch                 amd64,arm64\nkarpenter_enabled              true\nnode_type                      t3.large\n";
    let (fakes, out) = run_with(v3, &[]);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("platforms: linux/amd64,linux/arm64 (the rack prod)"),
        "{stderr}"
    );
    let calls = fakes.all_call_lines();
    for p in ["linux/amd64", "linux/arm64"] {
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("docker build") && c.contains(&format!(" --platform {p} "))),
            "{calls:?}"
        );
    }
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("docker manifest create ")),
        "{calls:?}"
    );
    // --platform wins over the rack, which is then not asked.
    let (fakes, out) = run_with(v3, &["--platform", "linux/amd64"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(!fakes.call_lines().iter().any(|c| c.starts_with("convox")));
}
