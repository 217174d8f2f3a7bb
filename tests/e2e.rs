//! End-to-end tests on the real docker engine, a real registry (Debian's
//! `docker-registry`) and the real aws CLI against moto's server.
//!
//! Each test starts its own registry and moto on free 127.0.0.1 ports, points
//! DOCKER_CONFIG and the AWS config at temporary directories, and on the way
//! out stops what it started and removes the images it pushed. When a piece is
//! missing the test says so and passes, unless E2E_REQUIRED=1.

mod common;

use common::{copy_dir, fixture, BIN};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use std::{fs, thread};

/// The tests take turns on the engine, so that the images each one leaves
/// (tagged, and the intermediate images of multi-stage builds) are known.
static ENGINE: Mutex<()> = Mutex::new(());

fn image_ids() -> Vec<String> {
    Command::new("docker")
        .args(["images", "--all", "--quiet", "--no-trunc"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

const FILE: &str = "docker-compose.convox.yml";
const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo";
const GITSHA_TAG: &str = "temp_{app}_{service}_{gitsha}";

/// Skip (or, under E2E_REQUIRED=1, fail) when something is missing.
fn missing(what: &str) -> Option<Stack> {
    if std::env::var("E2E_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("E2E_REQUIRED=1 but {what}");
    }
    eprintln!("SKIPPED end-to-end test: {what} (scripts/test installs what it can)");
    None
}

fn on_path(program: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| Path::new(d).join(program).is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Poll until the server answers, or its process has died, or 30 s pass.
fn wait_ready(child: &mut Child, port: u16, path: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(port, path).is_some() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "server exited ({status}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "server on port {port} not ready after 30 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A registry and moto of our own, with private docker and aws configuration.
struct Stack {
    images_before: Vec<String>,
    dir: tempfile::TempDir,
    registry: Child,
    registry_port: u16,
    moto: Child,
    moto_port: u16,
    _turn: MutexGuard<'static, ()>,
}

impl Stack {
    fn start() -> Option<Stack> {
        for p in ["docker", "docker-registry", "moto_server", "aws"] {
            if !on_path(p) {
                return missing(&format!("`{p}` is not on PATH"));
            }
        }
        let engine = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        if !engine.as_ref().is_ok_and(|o| o.status.success()) {
            return missing("the docker engine does not answer `docker info`");
        }
        let turn = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
        let images_before = image_ids();
        let dir = tempfile::tempdir().expect("temp dir");
        let registry_port = free_port();
        let config = dir.path().join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{registry_port}\n",
                dir.path().join("registry-data").display()
            ),
        )
        .expect("registry config");
        let reg_log = dir.path().join("registry.log");
        let mut registry = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&reg_log).expect("log"))
            .stderr(fs::File::create(dir.path().join("registry.err")).expect("log"))
            .spawn()
            .expect("start docker-registry");
        let moto_port = free_port();
        let moto_log = dir.path().join("moto.log");
        let mut moto = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&moto_log).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        wait_ready(&mut registry, registry_port, "/v2/", &reg_log);
        wait_ready(&mut moto, moto_port, "/", &moto_log);
        fs::create_dir(dir.path().join("docker-config")).expect("docker config dir");
        Some(Stack {
            images_before,
            dir,
            registry,
            registry_port,
            moto,
            moto_port,
            _turn: turn,
        })
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.registry_port)
    }

    /// The environment every process of the test gets: private docker and
    /// aws configuration, dummy credentials, moto as the AWS endpoint.
    fn env(&self, c: &mut Command) {
        let d = self.dir.path();
        c.env("DOCKER_CONFIG", d.join("docker-config"))
            .env("AWS_CONFIG_FILE", d.join("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", d.join("aws-credentials"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.moto_port),
            )
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("DRONE_COMMIT_SHA")
            .env_remove("DRONE_COMMIT_BRANCH")
            .stdin(Stdio::null());
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut c = Command::new(BIN);
        c.current_dir(cwd).args(args);
        self.env(&mut c);
        c.output().expect("run binary")
    }

    fn tags(&self, repo: &str) -> Vec<String> {
        let Some((200, body)) = http_get(self.registry_port, &format!("/v2/{repo}/tags/list"))
        else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).expect("tags JSON");
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// `aws ecr ARGS --region us-east-1 --output json` against moto: its JSON.
    fn aws_ecr(&self, args: &[&str]) -> serde_json::Value {
        let mut c = Command::new("aws");
        c.arg("ecr")
            .args(args)
            .args(["--region", "us-east-1", "--output", "json"]);
        self.env(&mut c);
        let out = c.output().expect("aws");
        assert!(
            out.status.success(),
            "aws ecr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("aws JSON")
    }

    fn moto_repositories(&self) -> Vec<String> {
        let v = self.aws_ecr(&["describe-repositories"]);
        v["repositories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["repositoryName"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.registry.kill();
        let _ = self.registry.wait();
        let _ = self.moto.kill();
        let _ = self.moto.wait();
        // The images this test's runs tagged for its own registry, and then
        // what else appeared during its turn (intermediate stages).
        let filter = format!("reference={}/*", self.host());
        if let Ok(out) = Command::new("docker")
            .args([
                "images",
                "--filter",
                &filter,
                "--format",
                "{{.Repository}}:{{.Tag}}",
            ])
            .output()
        {
            let refs: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from)
                .collect();
            if !refs.is_empty() {
                let _ = Command::new("docker")
                    .arg("rmi")
                    .arg("-f")
                    .args(&refs)
                    .output();
            }
        }
        let new: Vec<String> = image_ids()
            .into_iter()
            .filter(|i| !self.images_before.contains(i))
            .collect();
        if !new.is_empty() {
            let _ = Command::new("docker")
                .arg("rmi")
                .arg("-f")
                .args(&new)
                .output();
        }
    }
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\n{stderr}",
        out.status.code()
    );
    stderr
}

/// The first 16 hex digits of the content digest of a demo service's build.
fn demo_hash(dir: &Path, service: &str) -> String {
    use offcluster::compose::{ArgValue, BuildArg, BuildSpec};
    let (dockerfile, args) = match service {
        "api" => (
            "api/Dockerfile.api",
            vec![
                BuildArg {
                    name: "RELEASE".into(),
                    value: ArgValue::Literal("dev".into()),
                },
                BuildArg {
                    name: "NPM_TOKEN".into(),
                    value: ArgValue::Inherit,
                },
            ],
        ),
        _ => ("web/Dockerfile", vec![]),
    };
    let spec = BuildSpec {
        context: dir.join(service).display().to_string(),
        dockerfile: Some(dir.join(dockerfile).display().to_string()),
        args,
        target: None,
        platform: None,
    };
    let digest = offcluster::digest::digest(&spec, &|k| std::env::var(k).ok()).expect("digest");
    digest[..16].to_string()
}

/// What the demo fixture must read after a run that pushed to `host`.
fn expected_demo(host: &str, sha: &str) -> String {
    expected_demo_tags(
        host,
        &format!("temp_demo_web_{sha}"),
        &format!("temp_demo_worker_{sha}"),
        &format!("temp_demo_api_{sha}"),
    )
}

fn expected_demo_tags(host: &str, web: &str, worker: &str, api: &str) -> String {
    let original = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/demo")
            .join(FILE),
    )
    .expect("fixture");
    original
        .replace(
            "  build: ./web              # the app",
            &format!("  image: {host}/demo:{web}              # the app"),
        )
        .replace("  build: ./web\n", &format!("  image: {host}/demo:{worker}\n"))
        .replace(
            "  build:\n    context: ./api\n    dockerfile: Dockerfile.api\n    args:\n      - RELEASE=${GIT_TAG:-dev}\n      - NPM_TOKEN\n",
            &format!("  image: {host}/demo:{api}\n"),
        )
}

#[test]
fn ecr_pipeline_creates_the_repository_logs_in_builds_pushes_and_rewrites() {
    let Some(stack) = Stack::start() else { return };
    let app = fixture("demo");
    let host = stack.host();
    let args = [
        "--app",
        "demo",
        "--gitsha",
        "e2e1",
        "--repo",
        ECR,
        "--registry-host",
        &host,
        "--tag",
        GITSHA_TAG,
    ];
    let out = stack.run(app.path(), &args);
    let stderr = ok(&out);
    assert!(
        stderr.contains("creating ECR repository demo in us-east-1"),
        "{stderr}"
    );
    assert_eq!(
        stack.tags("demo"),
        [
            "temp_demo_api_e2e1",
            "temp_demo_web_e2e1",
            "temp_demo_worker_e2e1"
        ]
    );
    assert_eq!(stack.moto_repositories(), ["demo"]);
    let written = fs::read_to_string(app.path().join(FILE)).expect("rewritten file");
    assert_eq!(written, expected_demo(&host, "e2e1"));
    // The login went into the private docker config, for the pushed host.
    let config = fs::read_to_string(stack.dir.path().join("docker-config/config.json"))
        .expect("docker config");
    assert!(config.contains(&host), "{config}");

    // A second run on the rewritten file has nothing to build.
    let again = stack.run(app.path(), &args);
    let stderr = ok(&again);
    assert!(stderr.contains("kept (has image)"), "{stderr}");
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("file"),
        written
    );
}

#[test]
fn the_old_drone_step_against_a_plain_registry() {
    let Some(stack) = Stack::start() else { return };
    let app = fixture("demo");
    let repo = format!("{}/demo", stack.host());
    let out = stack.run(app.path(), &["-app=demo", "-gitsha=abc", "-repo", &repo]);
    let stderr = ok(&out);
    assert!(
        !stderr.contains("ECR"),
        "no aws step for a plain registry: {stderr}"
    );
    let (web, api) = (demo_hash(app.path(), "web"), demo_hash(app.path(), "api"));
    let (web, worker, api) = (
        format!("temp_demo_web_{web}"),
        format!("temp_demo_worker_{web}"),
        format!("temp_demo_api_{api}"),
    );
    let mut want = vec![web.clone(), worker.clone(), api.clone()];
    want.sort();
    assert_eq!(stack.tags("demo"), want);
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("file"),
        expected_demo_tags(&stack.host(), &web, &worker, &api)
    );
    assert!(stack.moto_repositories().is_empty(), "no ECR call was made");
}

#[test]
fn a_second_run_on_an_unchanged_tree_pushes_nothing_and_one_change_builds_once() {
    let Some(stack) = Stack::start() else { return };
    let app = fixture("demo");
    let original = fs::read(app.path().join(FILE)).expect("file");
    let repo = format!("{}/demo", stack.host());
    let args = ["--app", "demo", "--gitsha", "one", "--repo", &repo, "-v"];
    let first = ok(&stack.run(app.path(), &args));
    assert_eq!(
        first.lines().filter(|l| l.contains("docker build")).count(),
        2,
        "{first}"
    );
    let rewritten = fs::read_to_string(app.path().join(FILE)).expect("file");
    let tags = stack.tags("demo");

    // Same tree, another commit: nothing is built or pushed.
    fs::write(app.path().join(FILE), &original).expect("restore");
    let args = ["--app", "demo", "--gitsha", "two", "--repo", &repo, "-v"];
    let second = ok(&stack.run(app.path(), &args));
    assert!(
        !second.contains("docker build") && !second.contains("docker push"),
        "{second}"
    );
    let summary = second.split("done:\n").nth(1).unwrap_or("");
    assert_eq!(summary.matches(" up to date ").count(), 3, "{summary}");
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("file"),
        rewritten
    );
    assert_eq!(stack.tags("demo"), tags);

    // One file of one service changed: exactly one build.
    fs::write(app.path().join(FILE), &original).expect("restore");
    fs::write(app.path().join("web/hello.txt"), "changed\n").expect("change");
    let third = ok(&stack.run(app.path(), &args));
    assert_eq!(
        third.lines().filter(|l| l.contains("docker build")).count(),
        1,
        "{third}"
    );
    assert!(third.contains("[web] + { cat web/Dockerfile;"), "{third}");
    assert_eq!(stack.tags("demo").len(), 5, "new web and worker tags");
}

#[test]
fn a_compose_v3_file_with_flow_style_and_targets_reads_back_in_docker_compose() {
    let Some(stack) = Stack::start() else { return };
    let app = fixture("compose-v3");
    let repo = format!("{}/shop", stack.host());
    let out = stack.run(
        app.path(),
        &[
            "--app",
            "shop",
            "--gitsha",
            "f00",
            "--repo",
            &repo,
            "-f",
            "docker-compose.yml",
            "--tag",
            GITSHA_TAG,
        ],
    );
    ok(&out);
    assert_eq!(
        stack.tags("shop"),
        [
            "temp_shop_admin_f00",
            "temp_shop_api_f00",
            "temp_shop_front_f00"
        ]
    );
    let written = fs::read_to_string(app.path().join("docker-compose.yml")).expect("file");
    insta::assert_snapshot!(
        "compose_v3_rewritten",
        written.replace(&stack.host(), "REGISTRY")
    );
    // The image really is the `prod` stage: it carries that stage's file.
    let inspect = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            &format!("{repo}:temp_shop_api_f00"),
        ])
        .output()
        .expect("docker inspect");
    let labels = String::from_utf8_lossy(&inspect.stdout);
    assert!(labels.contains("\"stage\":\"prod\""), "{labels}");
    assert!(
        labels.contains("\"org.opencontainers.image.revision\":\"f00\""),
        "{labels}"
    );
    // An independent reader accepts the output.
    if on_path("docker-compose") {
        let cfg = Command::new("docker-compose")
            .args(["-f", "docker-compose.yml", "config", "--quiet"])
            .current_dir(app.path())
            .output()
            .expect("docker-compose");
        assert!(
            cfg.status.success(),
            "{}",
            String::from_utf8_lossy(&cfg.stderr)
        );
    }
}

#[test]
fn a_failing_build_leaves_the_file_untouched_and_pushes_nothing() {
    let Some(stack) = Stack::start() else { return };
    let app = fixture("demo");
    fs::write(
        app.path().join("api/Dockerfile.api"),
        "FROM scratch\nCOPY no-such-file /x\n",
    )
    .expect("write");
    let before = fs::read(app.path().join(FILE)).expect("file");
    let repo = format!("{}/demo", stack.host());
    let out = stack.run(
        app.path(),
        &[
            "--app", "demo", "--gitsha", "bad", "--repo", &repo, "--tag", GITSHA_TAG,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("command failed (exit status 1): { cat api/Dockerfile.api;"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no-such-file"),
        "the tail of docker's output: {stderr}"
    );
    assert_eq!(fs::read(app.path().join(FILE)).expect("file"), before);
    assert!(!stack
        .tags("demo")
        .contains(&"temp_demo_api_bad".to_string()));
}

#[test]
fn paths_resolve_against_the_compose_files_directory_not_the_working_directory() {
    let Some(stack) = Stack::start() else { return };
    let root = tempfile::tempdir().expect("temp dir");
    let app_dir: PathBuf = root.path().join("deploy/app");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo"),
        &app_dir,
    );
    let repo = format!("{}/demo", stack.host());
    let out = stack.run(
        root.path(),
        &[
            "--app",
            "demo",
            "--gitsha",
            "cwd",
            "--repo",
            &repo,
            "-f",
            "deploy/app/docker-compose.convox.yml",
        ],
    );
    ok(&out);
    assert_eq!(stack.tags("demo").len(), 3);
}

/// The digest the registry serves for a tag (`Docker-Content-Digest`).
fn registry_digest(port: u16, repo: &str, tag: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "HEAD /v2/{repo}/manifests/{tag} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("Docker-Content-Digest")
            .then(|| v.trim().to_string())
    })
}

#[test]
fn convox_yml_builds_pushes_and_rewrites_and_json_and_pin_digest_match_the_registry() {
    let Some(stack) = Stack::start() else { return };
    let app = fixture("convox-yml");
    let repo = format!("{}/gen2", stack.host());
    let out = stack.run(
        app.path(),
        &[
            "--app",
            "gen2",
            "--repo",
            &repo,
            "-f",
            "convox.yml",
            "--json",
            "--pin-digest",
        ],
    );
    ok(&out);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the JSON report on stdout");
    let tags = stack.tags("gen2");
    assert_eq!(tags.len(), 2, "{tags:?}");
    let written = fs::read_to_string(app.path().join("convox.yml")).expect("file");
    let original = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/convox-yml/convox.yml"),
    )
    .expect("fixture");
    for (name, old) in [
        ("web", "build: .            # the app's own Dockerfile"),
        (
            "worker",
            "build:\n      path: ./worker\n      manifest: Dockerfile.worker",
        ),
    ] {
        let svc = report["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
            .expect(name);
        assert_eq!(svc["action"], "built", "{svc}");
        let reference = svc["ref"].as_str().expect("ref");
        let tag = reference.rsplit(':').next().expect("tag");
        assert!(tags.contains(&tag.to_string()), "{tag} in {tags:?}");
        // The digest in the report and in the file is the one the registry serves.
        let served = registry_digest(stack.registry_port, "gen2", tag).expect("served digest");
        assert_eq!(svc["digest"], served.as_str());
        let new = if name == "web" {
            format!("image: {reference}@{served}            # the app's own Dockerfile")
        } else {
            format!("image: {reference}@{served}")
        };
        assert!(original.contains(old));
        assert!(written.contains(&new), "{new} in\n{written}");
    }
    assert!(written.contains("    image: redis:7\n"));
    assert!(written.starts_with("# A current Convox rack's app (generation 2).\nenvironment:"));
}

#[test]
fn a_drone_plugin_step_from_plugin_and_drone_variables_alone() {
    let Some(stack) = Stack::start() else { return };
    let app = fixture("demo");
    let mut c = Command::new(BIN);
    c.current_dir(app.path());
    stack.env(&mut c);
    let out = c
        .env("PLUGIN_APP", "demo")
        .env("PLUGIN_REPO", format!("{}/plugin", stack.host()))
        .env("PLUGIN_TAG", "temp_{app}_{service}_{gitsha}")
        .env("PLUGIN_JSON", "true")
        .env("DRONE_COMMIT_SHA", "d0d0")
        .env("DRONE_COMMIT_BRANCH", "main")
        .output()
        .expect("run binary");
    ok(&out);
    assert_eq!(
        stack.tags("plugin"),
        [
            "temp_demo_api_d0d0",
            "temp_demo_web_d0d0",
            "temp_demo_worker_d0d0"
        ]
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["app"], "demo");
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    assert!(
        written.contains(&format!(
            "image: {}/plugin:temp_demo_web_d0d0",
            stack.host()
        )),
        "{written}"
    );
}

/// Put an image under `tag` into moto's ECR repository (a manifest alone:
/// moto keeps no layers), and give its digest. Each tag gets a manifest of
/// its own: moto answers a batch for two tags of one image with the last
/// tag twice (real ECR names the tag asked for; this program builds when a
/// tag goes unnamed, so the quirk would only cost a build).
fn moto_put_image(stack: &Stack, tag: &str) -> String {
    let hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
    let config = format!("{hex:0<64.64}");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:{config}"}},"layers":[]}}"#
    );
    let v = stack.aws_ecr(&[
        "put-image",
        "--repository-name",
        "demo",
        "--image-tag",
        tag,
        "--image-manifest",
        &manifest,
    ]);
    v["image"]["imageId"]["imageDigest"]
        .as_str()
        .expect("digest")
        .to_string()
}

#[test]
fn ecrs_own_api_answers_for_every_tag_in_one_call_before_any_login() {
    let Some(stack) = Stack::start() else { return };
    // The real aws CLI against moto; a fake docker that records what it is
    // asked, since moto's ECR takes no pushes.
    let fakes = common::Fakes::new(&["docker"]);
    let path = format!(
        "{}:{}",
        fakes.bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |app: &Path| {
        let mut c = Command::new(BIN);
        c.current_dir(app).args([
            "--app", "demo", "--gitsha", "e2e5", "--repo", ECR, "--tag", GITSHA_TAG, "--json",
        ]);
        stack.env(&mut c);
        c.env("PATH", &path).env("FAKE_DIR", fakes.dir.path());
        c.output().expect("run binary")
    };
    stack.aws_ecr(&["create-repository", "--repository-name", "demo"]);
    let web = moto_put_image(&stack, "temp_demo_web_e2e5");
    moto_put_image(&stack, "temp_demo_worker_e2e5");

    // web and worker are in ECR: only api is built and pushed, after the
    // login that moto's password went to on stdin.
    let app = fixture("demo");
    let out = run(app.path());
    ok(&out);
    let calls = fakes.call_lines();
    let builds: Vec<&String> = calls
        .iter()
        .filter(|l| l.starts_with("docker build"))
        .collect();
    assert_eq!(builds.len(), 1, "{calls:?}");
    assert!(builds[0].contains(":temp_demo_api_e2e5"), "{calls:?}");
    assert_eq!(
        calls
            .iter()
            .filter(|l| l.starts_with("docker push"))
            .collect::<Vec<_>>(),
        [&format!("docker push {ECR}:temp_demo_api_e2e5")]
    );
    assert!(fakes.login_stdin().is_some_and(|p| !p.trim().is_empty()));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let service = |name: &str| {
        report["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(service("web")["action"], "up-to-date", "{report}");
    assert_eq!(service("web")["digest"], web.as_str(), "{report}");
    assert_eq!(service("api")["action"], "built", "{report}");

    // Every tag in ECR: one call to ECR answers, and docker is never run.
    moto_put_image(&stack, "temp_demo_api_e2e5");
    let before = fakes.calls().len();
    let app = fixture("demo");
    ok(&run(app.path()));
    assert_eq!(fakes.calls().len(), before, "{:?}", fakes.call_lines());
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("file"),
        expected_demo("123456789012.dkr.ecr.us-east-1.amazonaws.com", "e2e5")
    );
}
