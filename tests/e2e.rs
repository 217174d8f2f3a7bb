//! End-to-end tests on the real docker engine, a real registry (Debian's
//! `docker-registry`) and the real aws CLI against moto's server.
//!
//! Each test starts its own registry and moto on free 127.0.0.1 ports, points
//! DOCKER_CONFIG and the AWS config at temporary directories, and on the way
//! out stops what it started and removes the images it pushed. When a piece is
//! missing the test says so and passes, unless E2E_REQUIRED=1.

mod common;

use common::{arm64_busybox, copy_dir, fixture, ok, on_path, Aarch64Emulation, BIN};
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
            let mut ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(String::from)
                .collect();
            // docker lists images of one creation time in no fixed order.
            ids.sort();
            ids
        })
        .unwrap_or_default()
}

const FILE: &str = "docker-compose.convox.yml";
const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo";
const GITSHA_TAG: &str = "temp_{app}_{service}_{gitsha}";

/// `E2E_BUILDER=buildkit`: the program runs BuildKit builds (through a
/// client that has it, first on its PATH, with DOCKER_BUILDKIT=1); else the
/// docker first on PATH, which runs the classic builder here.
fn buildkit_client_mode() -> bool {
    std::env::var("E2E_BUILDER").is_ok_and(|v| v == "buildkit")
}

/// The builds run on BuildKit: the BuildKit client's pass, or the current
/// engine's (`E2E_ENGINE=current`: docker 26 with buildx, whose default
/// builder is the engine's own BuildKit).
fn buildkit_mode() -> bool {
    buildkit_client_mode() || common::current_engine().is_some()
}

/// Does the program keep a registry cache (REPO-cache) in this mode? Always
/// under the classic builder; under BuildKit only on an engine from 23 on
/// (the program's rule: 20.10's BuildKit crashed the engine writing inline
/// cache). The engine's version is asked of the engine itself.
fn registry_cache_expected() -> bool {
    if !buildkit_mode() {
        return true;
    }
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .expect("docker version");
    let version = String::from_utf8_lossy(&out.stdout);
    let major = version
        .trim()
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    major.is_some_and(|m| m >= 23)
}

fn buildkit_client() -> PathBuf {
    PathBuf::from(std::env::var("BUILDKIT_DOCKER").unwrap_or_else(|_| "/usr/bin/docker".into()))
}

/// Skip (or, under E2E_REQUIRED=1, fail) when something is missing.
fn missing(what: &str) -> Option<Stack> {
    common::skip_or_fail("end-to-end test", what);
    None
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

/// The tag the rewritten file gives `repository` (the last one named).
fn tag_in(written: &str, repository: &str) -> String {
    written
        .rsplit(&format!("{repository}:"))
        .next()
        .and_then(|t| t.split_whitespace().next())
        .expect("the tag")
        .to_string()
}

/// The manifest the registry serves for `repo:tag` when every kind is
/// accepted, as its JSON: an image manifest, or an index (`manifests`).
fn served_manifest(port: u16, repo: &str, tag: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    write!(
        s,
        "GET /v2/{repo}/manifests/{tag} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    serde_json::from_str(&body).ok()
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
    /// On the current engine: its way to the registry and moto here.
    _forwarders: Vec<common::LoopbackForwarder>,
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
        let mut forwarders = Vec::new();
        if std::env::var("E2E_ENGINE").is_ok_and(|v| v == "current") {
            let Some(engine) = common::current_engine() else {
                return missing("E2E_ENGINE=current, but CURRENT_ENGINE_NETNS, CURRENT_BUILDX or a unix DOCKER_HOST is not set (scripts/test starts the current engine)");
            };
            for port in [registry_port, moto_port] {
                forwarders.push(
                    common::LoopbackForwarder::start(&engine.netns, port)
                        .expect("a forwarder into the engine's namespace"),
                );
            }
            let plugins = dir.path().join("docker-config/cli-plugins");
            fs::create_dir_all(&plugins).expect("plugins");
            std::os::unix::fs::symlink(&engine.buildx, plugins.join("docker-buildx"))
                .expect("buildx plugin");
        }
        if buildkit_client_mode() {
            // The program's docker is a client that runs BuildKit.
            let client = buildkit_client();
            if !client.is_file() {
                return missing(&format!(
                    "E2E_BUILDER=buildkit, but there is no BuildKit client at {} (set BUILDKIT_DOCKER)",
                    client.display()
                ));
            }
            fs::create_dir(dir.path().join("buildkit-bin")).expect("bin");
            std::os::unix::fs::symlink(&client, dir.path().join("buildkit-bin/docker"))
                .expect("symlink");
        }
        Some(Stack {
            images_before,
            dir,
            registry,
            registry_port,
            moto,
            moto_port,
            _forwarders: forwarders,
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
            .env("XDG_CACHE_HOME", d.join("cache"))
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
        if buildkit_client_mode() {
            let path = std::env::var("PATH").unwrap_or_default();
            c.env(
                "PATH",
                format!("{}:{path}", d.join("buildkit-bin").display()),
            )
            .env("DOCKER_BUILDKIT", "1");
        } else {
            c.env_remove("DOCKER_BUILDKIT");
        }
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
        remove_images_since(&self.images_before);
    }
}

/// Remove every image that is not in `before`, one at a time and in a few
/// passes (docker refuses a parent while its children are there); the IDs of
/// what is left.
fn remove_images_since(before: &[String]) -> Vec<String> {
    let new = || -> Vec<String> {
        image_ids()
            .into_iter()
            .filter(|i| !before.contains(i))
            .collect()
    };
    for _ in 0..5 {
        let left = new();
        if left.is_empty() {
            break;
        }
        for id in left {
            let _ = Command::new("docker").args(["rmi", "-f", &id]).output();
        }
    }
    new()
}

/// The first 16 hex digits of the content digest of a demo service's build.
fn demo_hash(dir: &Path, service: &str) -> String {
    use offcluster::read::compose::{ArgValue, BuildArg, BuildSpec};
    let (dockerfile, args) = match service {
        "api" => (
            "api/Dockerfile.api",
            vec![BuildArg {
                name: "RELEASE".into(),
                value: ArgValue::Literal("dev".into()),
            }],
        ),
        _ => ("web/Dockerfile", vec![]),
    };
    let spec = BuildSpec {
        context: dir.join(service).display().to_string(),
        dockerfile: Some(dir.join(dockerfile).display().to_string()),
        args,
        target: None,
        // Convox's default platform, which every build names.
        platform: Some("linux/amd64".into()),
        ..Default::default()
    };
    let digest =
        offcluster::inputs::digest::digest(&spec, &|k| std::env::var(k).ok()).expect("digest");
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
            "  build:\n    context: ./api\n    dockerfile: Dockerfile.api\n    args:\n      - RELEASE=${GIT_TAG:-dev}\n",
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
    // And the registry cache's repository beside it, with each build's last
    // image under its service's fixed tag; or, where the run keeps no
    // registry cache, no such repository at all.
    if registry_cache_expected() {
        assert_eq!(stack.moto_repositories(), ["demo", "demo-cache"]);
        // api's `base` stage is kept too (its Dockerfile has two stages),
        // under either builder.
        assert_eq!(
            stack.tags("demo-cache"),
            ["demo_api", "demo_api-base", "demo_web"]
        );
        // The cache repository it created expires its untagged images, as
        // moto tells it back; the main repository has no policy of ours.
        let policy = stack.aws_ecr(&["get-lifecycle-policy", "--repository-name", "demo-cache"]);
        let text = policy["lifecyclePolicyText"].as_str().expect("policy text");
        let rule =
            &serde_json::from_str::<serde_json::Value>(text).expect("policy JSON")["rules"][0];
        assert_eq!(rule["selection"]["tagStatus"], "untagged", "{text}");
        assert_eq!(rule["selection"]["countNumber"], 7, "{text}");
        assert_eq!(rule["action"]["type"], "expire", "{text}");
        let mut c = Command::new("aws");
        c.args([
            "ecr",
            "get-lifecycle-policy",
            "--repository-name",
            "demo",
            "--region",
            "us-east-1",
        ]);
        stack.env(&mut c);
        let main = c.output().expect("aws");
        assert!(
            String::from_utf8_lossy(&main.stderr).contains("LifecyclePolicyNotFoundException"),
            "{main:?}"
        );
    } else {
        assert!(
            stderr.contains("note: the registry cache is off"),
            "{stderr}"
        );
        assert_eq!(stack.moto_repositories(), ["demo"]);
    }
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
    assert_eq!(image_builds(&first), 2, "{first}");
    let rewritten = fs::read_to_string(app.path().join(FILE)).expect("file");
    let tags = stack.tags("demo");

    // Same tree, another commit: nothing is built or pushed.
    fs::write(app.path().join(FILE), &original).expect("restore");
    let args = ["--app", "demo", "--gitsha", "two", "--repo", &repo, "-v"];
    let second = ok(&stack.run(app.path(), &args));
    assert!(
        !second.contains("docker build ") && !second.contains("docker push"),
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
    assert_eq!(image_builds(&third), 1, "{third}");
    assert!(
        third.contains("[web] + { cat web/Dockerfile;")
            || third.contains(
                "[web] + DOCKER_BUILDKIT=1 docker build --progress plain -f web/Dockerfile "
            ),
        "{third}"
    );
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
        stderr.contains("command failed (exit status 1): ")
            && stderr.contains("api/Dockerfile.api"),
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
        "HEAD /v2/{repo}/manifests/{tag} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
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
    // asked, since moto's ECR takes no pushes. The default tags (the
    // content digest, which names the platforms, so ECR's answer suffices).
    let fakes = common::Fakes::new(&["docker"]);
    let path = format!(
        "{}:{}",
        fakes.bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |app: &Path, extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.current_dir(app)
            .args(["--app", "demo", "--gitsha", "e2e5", "--repo", ECR])
            .args(extra);
        stack.env(&mut c);
        c.env("PATH", &path).env("FAKE_DIR", fakes.dir.path());
        c.output().expect("run binary")
    };
    let app = fixture("demo");
    let dry = String::from_utf8_lossy(&run(app.path(), &["--dry-run"]).stdout).into_owned();
    // web, worker, api, as the question names them.
    let tags: Vec<&str> = dry
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("imageTag="))
        .collect();
    assert_eq!(tags.len(), 3, "{dry}");
    let rewritten = dry
        .split_once(", rewritten:\n")
        .expect("the rewritten file")
        .1;
    stack.aws_ecr(&["create-repository", "--repository-name", "demo"]);
    let web = moto_put_image(&stack, tags[0]);
    moto_put_image(&stack, tags[1]);

    // web and worker are in ECR: only api is built and pushed, after the
    // login that moto's password went to on stdin.
    let out = run(app.path(), &["--json"]);
    ok(&out);
    let calls = fakes.call_lines();
    let builds: Vec<&String> = calls
        .iter()
        .filter(|l| l.starts_with("docker build"))
        .collect();
    assert_eq!(builds.len(), 1, "{calls:?}");
    assert!(builds[0].contains(&format!(":{} ", tags[2])), "{calls:?}");
    assert_eq!(
        calls
            .iter()
            .filter(|l| l.starts_with("docker push"))
            .collect::<Vec<_>>(),
        [&format!("docker push {ECR}:{}", tags[2])]
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

    // Every tag in ECR: one call to ECR answers, and docker is run only to
    // ask the kept image's registry for its platforms.
    moto_put_image(&stack, tags[2]);
    let before = fakes.calls().len();
    let app = fixture("demo");
    ok(&run(app.path(), &[]));
    let after = fakes.call_lines();
    assert_eq!(
        after[before..],
        ["docker manifest inspect --verbose convox/redis".to_string()],
        "{after:?}"
    );
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("file"),
        rewritten
    );
}

/// The files a pushed image holds, listed from `docker export` of a
/// container made from it (never started).
fn image_files(image: &str) -> Vec<String> {
    let id = Command::new("docker")
        .args(["create", image, "/none"])
        .output()
        .expect("docker create");
    assert!(
        id.status.success(),
        "{}",
        String::from_utf8_lossy(&id.stderr)
    );
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | tar -t"))
        .output()
        .expect("docker export");
    let _ = Command::new("docker").args(["rm", &id]).output();
    let mut files: Vec<String> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter(|l| {
            !l.ends_with('/')
                && !["etc/", "dev/", "proc/", "sys/", ".docker"]
                    .iter()
                    .any(|p| l.starts_with(p))
        })
        .map(String::from)
        .collect();
    files.sort();
    files
}

#[test]
fn services_without_build_are_built_from_the_app_root_pushed_and_rewritten() {
    let Some(stack) = Stack::start() else { return };
    // The canonical convox.yml: `web` has only a port.
    let app = fixture("convox-canonical");
    let repo = format!("{}/canonical", stack.host());
    ok(&stack.run(
        app.path(),
        &[
            "--app",
            "canonical",
            "--repo",
            &repo,
            "-f",
            "convox.yml",
            "--gitsha",
            "c1",
        ],
    ));
    let written = fs::read_to_string(app.path().join("convox.yml")).expect("file");
    let tags = stack.tags("canonical");
    assert_eq!(tags.len(), 1, "{tags:?}");
    let reference = format!("{repo}:{}", tags[0]);
    assert_eq!(
        written,
        format!("services:\n  web:\n    port: 3000\n    image: {reference}\n")
    );
    assert_eq!(image_files(&reference), ["app/index.html"]);

    // A gen1 file: flow, null and command-only services, one with its own
    // service-level `dockerfile:`.
    let app = fixture("gen1-buildless");
    let repo = format!("{}/gen1", stack.host());
    let stderr = ok(&stack.run(
        app.path(),
        &["--app", "gen1", "--repo", &repo, "--gitsha", "g1"],
    ));
    assert!(
        stderr.contains("built from the app root, as Convox does"),
        "{stderr}"
    );
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    let compose = offcluster::read::compose::Compose::from_bytes(
        Path::new(FILE),
        written.clone().into_bytes(),
        &|_| None,
    )
    .expect("reads back");
    assert!(
        offcluster::read::manifest::convox_builds(&compose.doc, &compose.format, &|_| None)
            .is_empty(),
        "Convox would still build something from:\n{written}"
    );
    let mut tags = stack.tags("gen1");
    tags.sort();
    assert_eq!(tags.len(), 4, "{tags:?}");
    let image_of = |service: &str| {
        let tag = tags
            .iter()
            .find(|t| t.contains(&format!("_{service}_")))
            .unwrap_or_else(|| panic!("no tag for {service} in {tags:?}"));
        format!("{repo}:{tag}")
    };
    for service in ["web", "worker", "shell"] {
        assert!(
            written.contains(&image_of(service)),
            "{service} in\n{written}"
        );
        assert_eq!(
            image_files(&image_of(service)),
            ["app/app.txt"],
            "{service}"
        );
    }
    assert_eq!(image_files(&image_of("clock")), ["clock/app.txt"]);
    assert!(written.contains("    convox.cron.tick: \"*/5 * * * * bin/tick\"\n"));
    assert!(written.contains("redis:\n  image: convox/redis\n"));
}

/// An app whose root `.dockerignore` leaves files of `web/` out, as every
/// Convox CLI's upload does; `web/` has its own `.dockerignore` too, and
/// `root` is built from the app directory itself (`build: .`).
fn upload_app() -> tempfile::TempDir {
    let app = tempfile::tempdir().expect("app");
    let files = [
        (
            ".dockerignore",
            "**/.env\nweb/secret.txt\nweb/logs\n!web/logs/keep.log\n",
        ),
        (".env", "ROOT_TOKEN=x\n"),
        ("Dockerfile", "FROM scratch\nCOPY . /app\n"),
        ("web/.env", "TOKEN=secret\n"),
        ("web/secret.txt", "secret\n"),
        ("web/app.txt", "app\n"),
        ("web/.dockerignore", "*.tmp\n"),
        ("web/scratch.tmp", "tmp\n"),
        ("web/logs/a.log", "a\n"),
        ("web/logs/keep.log", "keep\n"),
        ("web/Dockerfile", "FROM scratch\nCOPY . /app\n"),
        (
            FILE,
            "version: \"2\"\nservices:\n  web:\n    build: ./web\n  root:\n    build: .\n",
        ),
    ];
    for (path, text) in files {
        let p = app.path().join(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        fs::write(p, text).expect("write");
    }
    app
}

#[test]
fn the_context_holds_what_convox_uploads_and_a_root_excluded_change_rebuilds_nothing() {
    let Some(stack) = Stack::start() else { return };
    let app = upload_app();
    let original = fs::read(app.path().join(FILE)).expect("file");
    let repo = format!("{}/upload", stack.host());
    let args = ["--app", "upload", "--gitsha", "one", "--repo", &repo, "-v"];
    let first = ok(&stack.run(app.path(), &args));
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    let image_of = |service: &str| {
        written
            .split_whitespace()
            .find(|w| w.starts_with(&format!("{repo}:temp_upload_{service}_")))
            .unwrap_or_else(|| panic!("no image of {service} in {written}"))
            .to_string()
    };
    // web: the root's rules first (no .env, no secret, logs/ but its
    // keep.log), then web's own (no *.tmp).
    assert_eq!(
        image_files(&image_of("web")),
        [
            "app/.dockerignore",
            "app/Dockerfile",
            "app/app.txt",
            "app/logs/keep.log"
        ],
        "{first}"
    );
    // root: the app directory, and nothing of this program's (no lock file).
    let root_files = image_files(&image_of("root"));
    assert!(
        root_files.contains(&format!("app/{FILE}")),
        "{root_files:?}"
    );
    assert!(
        root_files
            .iter()
            .all(|f| !f.ends_with(".env") && !f.ends_with(".lock")),
        "{root_files:?}"
    );
    assert!(root_files.contains(&"app/web/app.txt".to_string()));
    // The staged copy is gone after the run.
    let staged = std::env::temp_dir();
    let left: Vec<_> = fs::read_dir(&staged)
        .expect("tmp")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("convox-build-off-cluster.")
        })
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    assert!(
        left.iter().all(|p| !p.join("0-web").exists()),
        "staged copies left: {left:?}"
    );

    // A change to a root-excluded file of web's: nothing is built.
    fs::write(app.path().join(FILE), &original).expect("restore");
    fs::write(app.path().join("web/secret.txt"), "another secret\n").expect("change");
    fs::write(app.path().join("web/logs/a.log"), "more\n").expect("change");
    let second = ok(&stack.run(app.path(), &args));
    assert_eq!(image_builds(&second), 0, "{second}");
    assert!(
        summary_states(&second)
            .iter()
            .any(|(n, s)| n == "web" && s == "up to date"),
        "{second}"
    );
    // A change to a file the upload holds: web is built again.
    fs::write(app.path().join(FILE), &original).expect("restore");
    fs::write(app.path().join("web/app.txt"), "changed\n").expect("change");
    let third = ok(&stack.run(app.path(), &args));
    assert!(
        summary_states(&third)
            .iter()
            .any(|(n, s)| n == "web" && s == "built"),
        "{third}"
    );
}

/// A base image made offline: Debian's busybox-static in a root file
/// system, `docker import`ed as `image` and pushed; `marker` names a file
/// that tells this version apart.
fn push_base(stack: &Stack, image: &str, marker: &str) {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.is_file(), "busybox-static is not installed");
    let root = tempfile::tempdir().expect("rootfs");
    fs::create_dir_all(root.path().join("bin")).expect("bin");
    fs::copy(busybox, root.path().join("bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", root.path().join("bin/sh")).expect("sh");
    fs::write(root.path().join(marker), marker).expect("marker");
    let mut import = Command::new("sh");
    import.arg("-c").arg(format!(
        "tar -C {} -c . | docker import - {image} >/dev/null && docker push -q {image} >/dev/null",
        root.path().display()
    ));
    stack.env(&mut import);
    let out = import.output().expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_base_rebuilt_under_the_same_tag_rebuilds_exactly_the_services_on_it() {
    let Some(stack) = Stack::start() else { return };
    if !Path::new("/bin/busybox").is_file() {
        missing("busybox-static is not installed (/bin/busybox)");
        return;
    }
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "v1");
    push_base(&stack, &format!("{host}/other:1"), "other");
    let app = tempfile::tempdir().expect("app");
    for (svc, from) in [
        ("a", "ARG REG\nFROM ${REG}/base:1"),
        (
            "b",
            "ARG REG=nowhere\nARG IMG=base\nFROM $REG/${IMG}:1 AS b\nFROM b",
        ),
        ("c", "ARG REG\nFROM ${REG}/other:1"),
    ] {
        fs::create_dir(app.path().join(svc)).expect("dir");
        fs::write(app.path().join(svc).join("app.txt"), svc).expect("file");
        fs::write(
            app.path().join(svc).join("Dockerfile"),
            format!("{from}\nCOPY app.txt /app.txt\n"),
        )
        .expect("Dockerfile");
    }
    fs::write(
        app.path().join(FILE),
        format!(
            "version: \"2\"\nservices:\n  a:\n    build: {{context: ./a, args: {{REG: \"{host}\"}}}}\n  b:\n    build: {{context: ./b, args: [REG={host}]}}\n  c:\n    build: {{context: ./c, args: {{REG: \"{host}\"}}}}\n"
        ),
    )
    .expect("compose");
    let original = fs::read(app.path().join(FILE)).expect("compose");
    let repo = format!("{host}/app");
    let run = |label: &str| -> serde_json::Value {
        fs::write(app.path().join(FILE), &original).expect("reset");
        let out = stack.run(
            app.path(),
            &["--app", "app", "--repo", &repo, "--json", "--gitsha", label],
        );
        ok(&out);
        serde_json::from_slice(&out.stdout).expect("JSON report")
    };
    let action = |r: &serde_json::Value, s: &str| -> (String, String) {
        let svc = r["services"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == s))
            .expect(s);
        (
            svc["action"].as_str().unwrap_or("").to_string(),
            svc["ref"].as_str().unwrap_or("").to_string(),
        )
    };
    let first = run("one");
    for s in ["a", "b", "c"] {
        assert_eq!(action(&first, s).0, "built", "{s}: {first}");
    }
    // Unchanged: nothing is rebuilt.
    let again = run("two");
    for s in ["a", "b", "c"] {
        assert_eq!(action(&again, s).0, "up-to-date", "{s}: {again}");
    }
    // A new image under base:1; the engine keeps an older, different copy
    // under that name, which a build would use unless it is pulled.
    push_base(&stack, &format!("{host}/base:1"), "v2");
    let mut retag = Command::new("sh");
    retag.arg("-c").arg(format!(
        "docker rmi {host}/base:1 >/dev/null; tar -C / -c bin/busybox 2>/dev/null | docker import - {host}/base:1 >/dev/null"
    ));
    stack.env(&mut retag);
    assert!(retag.output().expect("retag").status.success());
    let third = run("three");
    for s in ["a", "b"] {
        let (act, reference) = action(&third, s);
        assert_eq!(act, "built", "{s}: {third}");
        assert_ne!(reference, action(&first, s).1, "{s} has a new tag");
        let files = image_files(&reference);
        assert!(
            files.contains(&"v2".to_string()),
            "{s} is on the new base: {files:?}"
        );
        assert!(!files.contains(&"v1".to_string()), "{s}: {files:?}");
    }
    assert_eq!(
        action(&third, "c").1,
        action(&first, "c").1,
        "c is on another base"
    );
    assert_eq!(action(&third, "c").0, "up-to-date");
}

/// Build secrets under BuildKit, end to end: the secret reaches the build (a
/// `RUN --mount=type=secret` step writes its length), it is nowhere in the
/// pushed image (`docker history --no-trunc`, `docker inspect`), and a
/// rotated value rebuilds nothing.
#[test]
fn a_build_secret_reaches_the_build_and_never_the_image() {
    let Some(stack) = Stack::start() else { return };
    let client = buildkit_client();
    if !client.is_file() || !Path::new("/bin/busybox").is_file() {
        missing("a BuildKit client (BUILDKIT_DOCKER) and busybox-static are needed");
        return;
    }
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "base");
    let app = tempfile::tempdir().expect("app");
    fs::create_dir(app.path().join("web")).expect("dir");
    fs::write(app.path().join("web/app.txt"), "app").expect("file");
    fs::write(
        app.path().join("web/Dockerfile"),
        format!(
            "FROM {host}/base:1\nRUN --mount=type=secret,id=npm_token sh -c 'wc -c < /run/secrets/npm_token > /secret-length'\nCOPY app.txt /app.txt\n"
        ),
    )
    .expect("Dockerfile");
    let compose = "services:\n  web:\n    build:\n      context: ./web\n      secrets: [npm_token]\nsecrets:\n  npm_token:\n    environment: NPM_TOKEN\n";
    fs::write(app.path().join("docker-compose.yml"), compose).expect("compose");
    let bin = app.path().join("bin");
    fs::create_dir(&bin).expect("bin");
    std::os::unix::fs::symlink(&client, bin.join("docker")).expect("symlink");
    let repo = format!("{host}/secret");
    let run = |value: &str| -> serde_json::Value {
        fs::write(app.path().join("docker-compose.yml"), compose).expect("reset");
        let mut c = Command::new(BIN);
        c.current_dir(app.path());
        stack.env(&mut c);
        let path = std::env::var("PATH").unwrap_or_default();
        let out = c
            .env("PATH", format!("{}:{path}", bin.display()))
            .env("DOCKER_BUILDKIT", "1")
            .env("NPM_TOKEN", value)
            .args([
                "--app",
                "sec",
                "--repo",
                &repo,
                "-f",
                "docker-compose.yml",
                "--json",
                "--gitsha",
                "s1",
            ])
            .output()
            .expect("run");
        let stderr = ok(&out);
        assert!(
            !stderr.contains(value),
            "the secret is in the output: {stderr}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains(value), "the secret is in the report");
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let secret = "npm_0123456789abcdef-secret";
    let first = run(secret);
    let web = &first["services"][0];
    assert_eq!(web["action"], "built", "{first}");
    let reference = web["ref"].as_str().expect("ref").to_string();
    // It reached the build.
    let length = Command::new("docker")
        .args(["run", "--rm", &reference, "sh", "-c", "cat /secret-length"])
        .output()
        .expect("docker run");
    assert_eq!(
        String::from_utf8_lossy(&length.stdout).trim(),
        secret.len().to_string(),
        "{}",
        String::from_utf8_lossy(&length.stderr)
    );
    // It is nowhere in the image.
    for args in [
        vec!["history", "--no-trunc", reference.as_str()],
        vec!["inspect", reference.as_str()],
    ] {
        let out = Command::new("docker").args(&args).output().expect("docker");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && !text.is_empty());
        assert!(!text.contains(secret), "docker {args:?} shows the secret");
    }
    // A rotated value rebuilds nothing.
    let second = run("a-rotated-token-value");
    assert_eq!(second["services"][0]["action"], "up-to-date", "{second}");
    assert_eq!(second["services"][0]["ref"], first["services"][0]["ref"]);
}

/// A fresh runner (none of the app's images on the engine, nor its base)
/// rebuilding one changed service takes the unchanged layers, the slow RUN
/// step's included, from the service's last image in REPO-cache. (Under
/// BuildKit on an engine before 23 the registry cache is off, which the run
/// says.)
#[test]
fn a_fresh_runner_reuses_the_unchanged_layers_from_the_registry() {
    let Some(stack) = Stack::start() else { return };
    if !Path::new("/bin/busybox").is_file() {
        missing("busybox-static is not installed (/bin/busybox)");
        return;
    }
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "base");
    let app = tempfile::tempdir().expect("app");
    fs::create_dir(app.path().join("web")).expect("dir");
    fs::write(app.path().join("web/deps.txt"), "deps").expect("file");
    fs::write(app.path().join("web/app.txt"), "v1").expect("file");
    fs::write(
        app.path().join("web/Dockerfile"),
        format!("FROM {host}/base:1\nCOPY deps.txt /deps.txt\nRUN echo installed > /installed\nCOPY app.txt /app.txt\n"),
    )
    .expect("Dockerfile");
    let compose = "services:\n  web:\n    build: ./web\n";
    fs::write(app.path().join("docker-compose.yml"), compose).expect("compose");
    let repo = format!("{host}/fresh");
    let run = |sha: &str| {
        fs::write(app.path().join("docker-compose.yml"), compose).expect("reset");
        ok(&stack.run(
            app.path(),
            &[
                "--app",
                "fresh",
                "--repo",
                &repo,
                "-f",
                "docker-compose.yml",
                "-v",
                "--gitsha",
                sha,
            ],
        ))
    };
    let first = run("f1");
    if !registry_cache_expected() {
        assert!(first.contains("note: the registry cache is off"), "{first}");
        return;
    }
    assert_eq!(stack.tags("fresh-cache"), ["fresh_web"]);
    // A fresh runner: nothing of this app on the engine.
    let mut wipe = Command::new("sh");
    wipe.arg("-c").arg(format!(
        "docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | grep '^{host}/' | xargs -r docker rmi -f >/dev/null"
    ));
    assert!(wipe.output().expect("wipe").status.success());
    prune_build_cache();
    fs::write(app.path().join("web/app.txt"), "v2").expect("change");
    let second = run("f2");
    if buildkit_mode() {
        assert!(
            step_cached(&second, "RUN echo installed"),
            "the RUN step came from the registry's image:\n{second}"
        );
        assert!(!step_cached(&second, "COPY app.txt"), "{second}");
        return;
    }
    let run_step = second
        .split("Step 3/")
        .nth(1)
        .and_then(|rest| rest.split("Step 4/").next())
        .unwrap_or("");
    assert!(
        run_step.contains("Using cache"),
        "the RUN step came from the registry's image:\n{second}"
    );
    let copy_step = second.split("Step 4/").nth(1).unwrap_or("");
    assert!(
        !copy_step
            .split("Step 5/")
            .next()
            .unwrap_or("")
            .contains("Using cache"),
        "{second}"
    );
}

/// The plugin / action image under test: `scripts/image`'s, which
/// `scripts/test` builds once per run (named by its inputs' digest) and
/// passes in `OFFCLUSTER_IMAGE`.
fn image_under_test() -> Option<String> {
    match std::env::var("OFFCLUSTER_IMAGE") {
        Ok(i) if !i.is_empty() => Some(i),
        _ => {
            common::skip_or_fail(
                "image test",
                "OFFCLUSTER_IMAGE is not set (scripts/test sets it to `bash scripts/image`'s image)",
            );
            None
        }
    }
}

/// How the image is run: the workspace, where it is mounted (also the
/// working directory), other mounts, the CI's variables, and an entrypoint
/// and arguments in place of the image's own.
struct Run<'a> {
    workspace: &'a Path,
    at: &'a str,
    mounts: Vec<(String, String)>,
    env: Vec<(String, String)>,
    entrypoint: Option<(&'a str, Vec<String>)>,
}

impl Stack {
    /// Run the image as a CI runner runs a step: the host's docker socket
    /// mounted, the workspace as the working directory, no TTY, no stdin.
    /// The registry and moto listen on the host's loopback, so the
    /// container shares the host's network; they stand in for ECR's public
    /// endpoints, which a runner reaches the same way.
    fn container(&self, image: &str, run: &Run<'_>) -> Output {
        let mut c = Command::new("docker");
        // The engine's socket, as the runners mount it.
        let socket = common::current_engine()
            .map_or_else(|| "/var/run/docker.sock".to_string(), |e| e.socket);
        c.args(["run", "--rm", "--network", "host"])
            .arg("-v")
            .arg(format!("{socket}:/var/run/docker.sock"))
            .arg("-v")
            .arg(format!("{}:{}", run.workspace.display(), run.at))
            .args(["-w", run.at]);
        for (from, to) in &run.mounts {
            c.arg("-v").arg(format!("{from}:{to}"));
        }
        let aws = [
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.moto_port),
            ),
        ];
        for (k, v) in aws
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .chain(run.env.iter().cloned())
        {
            c.arg("-e").arg(format!("{k}={v}"));
        }
        if buildkit_client_mode() {
            // The image's docker runs BuildKit so, as the pass's client does.
            c.args(["-e", "DOCKER_BUILDKIT=1"]);
        }
        if let Some((entrypoint, _)) = &run.entrypoint {
            c.args(["--entrypoint", entrypoint]);
        }
        c.arg(image);
        if let Some((_, args)) = &run.entrypoint {
            c.args(args);
        }
        // The test's own docker client talks to the engine; its config is
        // the test's (the container has its own).
        c.env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null());
        c.output().expect("docker run")
    }
}

fn strings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The summary's state of each service: `(name, state)`.
fn summary_states(stderr: &str) -> Vec<(String, String)> {
    let Some((_, summary)) = stderr.split_once("done:\n") else {
        return Vec::new();
    };
    summary
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            let state: Vec<&str> = w.take_while(|x| !x.contains('/')).collect();
            Some((name, state.join(" ")))
        })
        .collect()
}

#[test]
fn the_image_as_a_drone_plugin_step_builds_pushes_rewrites_and_then_builds_nothing() {
    let Some(image) = image_under_test() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let app = fixture("demo");
    let host = stack.host();
    // `settings:` as Drone passes them: strings as they are, a number as
    // text, a boolean as `false`.
    let env = strings(&[
        ("CI", "true"),
        ("DRONE", "true"),
        ("DRONE_REPO", "org/demo"),
        ("DRONE_COMMIT_SHA", "drone1"),
        ("DRONE_COMMIT_BRANCH", "main"),
        ("PLUGIN_APP", "demo"),
        ("PLUGIN_REPO", ECR),
        ("PLUGIN_REGISTRY_HOST", &host),
        ("PLUGIN_TAG", GITSHA_TAG),
        ("PLUGIN_JOBS", "4"),
        ("PLUGIN_FORCE", "false"),
        ("PLUGIN_TIMEOUT", "5m"),
    ]);
    let run = Run {
        workspace: app.path(),
        at: "/drone/src",
        mounts: Vec::new(),
        env,
        entrypoint: None,
    };
    let out = stack.container(&image, &run);
    let stderr = ok(&out);
    assert_eq!(
        stack.tags("demo"),
        [
            "temp_demo_api_drone1",
            "temp_demo_web_drone1",
            "temp_demo_worker_drone1"
        ],
        "{stderr}"
    );
    assert!(stack.moto_repositories().contains(&"demo".to_string()));
    let written = fs::read_to_string(app.path().join(FILE)).expect("rewritten file");
    assert_eq!(written, expected_demo(&host, "drone1"));
    assert!(
        summary_states(&stderr).contains(&("web".into(), "built".into())),
        "{stderr}"
    );

    // The same tree again (the file as committed): the registry has every
    // tag, so nothing is built or pushed.
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/demo")
            .join(FILE),
        app.path().join(FILE),
    )
    .expect("restore the file");
    let again = stack.container(&image, &run);
    let stderr = ok(&again);
    let states = summary_states(&stderr);
    for s in ["web", "worker", "api"] {
        assert!(
            states.contains(&(s.to_string(), "up to date".to_string())),
            "{s}: {states:?}\n{stderr}"
        );
    }
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("file"),
        written
    );
}

#[test]
fn the_image_runs_the_old_drone_commands_step() {
    let Some(image) = image_under_test() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let app = fixture("demo");
    let host = stack.host();
    // The seed's `commands:` line, in the image's shell, as Drone runs it.
    let line = "convox-build-off-cluster -app=demo -description=${DRONE_COMMIT_BRANCH} -gitsha=${DRONE_COMMIT_SHA} -repo $REPO -registry-host $HOST -tag $TAG";
    let run = Run {
        workspace: app.path(),
        at: "/drone/src",
        mounts: Vec::new(),
        env: strings(&[
            ("CI", "true"),
            ("DRONE_COMMIT_SHA", "cmd1"),
            ("DRONE_COMMIT_BRANCH", "main"),
            ("REPO", ECR),
            ("HOST", &host),
            ("TAG", GITSHA_TAG),
        ]),
        entrypoint: Some(("/bin/sh", vec!["-ec".into(), line.into()])),
    };
    let out = stack.container(&image, &run);
    let stderr = ok(&out);
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("rewritten file"),
        expected_demo(&host, "cmd1"),
        "{stderr}"
    );
    assert_eq!(stack.tags("demo").len(), 3, "{stderr}");
}

/// Each input `action.yml` declares, as the runner passes it: `INPUT_NAME`,
/// empty unless given.
fn action_inputs(given: &[(&str, &str)]) -> Vec<(String, String)> {
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml"))
        .expect("action.yml");
    let inputs = text
        .split("\ninputs:\n")
        .nth(1)
        .and_then(|s| s.split("\noutputs:\n").next())
        .expect("inputs: then outputs:");
    inputs
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
        .filter(|n| !n.starts_with(' '))
        .map(|name| {
            let value = given
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(_, v)| *v);
            (format!("INPUT_{}", name.to_uppercase()), value.to_string())
        })
        .collect()
}

#[test]
fn the_image_as_a_github_action_writes_its_outputs_and_names_a_missing_input() {
    let Some(image) = image_under_test() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let app = fixture("demo");
    let host = stack.host();
    let commands = tempfile::tempdir().expect("file commands dir");
    let output = commands.path().join("set_output");
    fs::write(&output, "").expect("output file");
    let github = |inputs: &[(&str, &str)]| {
        let mut env = strings(&[
            ("CI", "true"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SHA", "gh1"),
            ("GITHUB_REF_NAME", "main"),
            ("GITHUB_REPOSITORY", "org/demo"),
            ("GITHUB_WORKSPACE", "/github/workspace"),
            ("GITHUB_OUTPUT", "/github/file_commands/set_output"),
        ]);
        env.extend(action_inputs(inputs));
        Run {
            workspace: app.path(),
            at: "/github/workspace",
            mounts: vec![(
                commands.path().display().to_string(),
                "/github/file_commands".into(),
            )],
            env,
            entrypoint: None,
        }
    };
    let run = github(&[
        ("app", "demo"),
        ("repo", ECR),
        ("registry_host", &host),
        ("tag", GITSHA_TAG),
    ]);
    let out = stack.container(&image, &run);
    let stderr = ok(&out);
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("rewritten file"),
        expected_demo(&host, "gh1"),
        "{stderr}"
    );
    // The outputs, as the runner reads them: `name<<DELIMITER` … `DELIMITER`.
    let text = fs::read_to_string(&output).expect("outputs");
    let mut outputs = std::collections::BTreeMap::new();
    let mut lines = text.lines();
    while let Some(head) = lines.next() {
        let (name, delimiter) = head.split_once("<<").expect("name<<DELIMITER");
        let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
        outputs.insert(name.to_string(), value.join("\n"));
    }
    let images: serde_json::Value = serde_json::from_str(&outputs["images"]).expect("images");
    assert_eq!(
        images["web"],
        format!("{host}/demo:temp_demo_web_gh1"),
        "{text}"
    );
    assert_eq!(
        images["api"],
        format!("{host}/demo:temp_demo_api_gh1"),
        "{text}"
    );
    let built: Vec<String> = serde_json::from_str(&outputs["built"]).expect("built");
    assert_eq!(built, ["web", "worker", "api"]);

    // Without the required `app` input: one line that names it, exit 2.
    fs::write(&output, "").expect("output file");
    let out = stack.container(&image, &github(&[("repo", ECR)]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: the required input `app` is not set: give it under `with:` in the workflow step"
    );
    assert_eq!(fs::read_to_string(&output).expect("outputs"), "");
}

/// The builds of images in a run's `-v` output; a build stage's cache image
/// (`-t REPO-cache:APP_SERVICE-STAGE`, built from the engine's cache after
/// the image, under the classic builder) is not one.
fn image_builds(out: &str) -> usize {
    out.lines()
        .filter(|l| l.contains("docker build ") && !is_stage_cache_build(l))
        .count()
}

fn is_stage_cache_build(line: &str) -> bool {
    line.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "-t" && w[1].contains("-cache:"))
}

/// A multi-stage app: a slow `RUN` in a build stage (`deps`), then a
/// runtime stage that copies from it and adds the app's own file.
fn multi_stage_app(host: &str) -> tempfile::TempDir {
    let app = tempfile::tempdir().expect("app");
    fs::create_dir(app.path().join("web")).expect("dir");
    fs::write(app.path().join("web/deps.txt"), "deps").expect("file");
    fs::write(app.path().join("web/app.txt"), "v1").expect("file");
    fs::write(
        app.path().join("web/Dockerfile"),
        format!(
            "FROM {host}/base:1 AS deps\nCOPY deps.txt /deps.txt\nRUN sleep 2 && echo installed > /installed\n\nFROM {host}/base:1\nCOPY --from=deps /installed /installed\nCOPY app.txt /app.txt\n"
        ),
    )
    .expect("Dockerfile");
    fs::write(
        app.path().join("docker-compose.yml"),
        "services:\n  web:\n    build: ./web\n",
    )
    .expect("compose");
    app
}

/// A fresh runner: every image that appeared on the engine since the test
/// began is removed (the app's, its stages', the base's copy).
fn wipe_new_images(stack: &Stack) {
    assert_eq!(
        remove_images_since(&stack.images_before),
        Vec::<String>::new(),
        "images left on the engine"
    );
    prune_build_cache();
}

/// Under the engine's BuildKit a fresh runner has no build cache either
/// (removing images leaves BuildKit's own). Only in the BuildKit passes,
/// whose engine's cache holds nothing but the tests' builds.
fn prune_build_cache() {
    if buildkit_mode() {
        let out = Command::new("docker")
            .args(["builder", "prune", "--all", "--force"])
            .output()
            .expect("docker builder prune");
        assert!(out.status.success(), "{out:?}");
    }
}

#[test]
fn a_fresh_runner_takes_a_build_stages_slow_step_from_the_registry() {
    let Some(stack) = Stack::start() else { return };
    if !Path::new("/bin/busybox").is_file() {
        missing("busybox-static is not installed (/bin/busybox)");
        return;
    }
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "base");
    let app = multi_stage_app(&host);
    let repo = format!("{host}/multi");
    let run = |sha: &str| {
        fs::write(
            app.path().join("docker-compose.yml"),
            "services:\n  web:\n    build: ./web\n",
        )
        .expect("reset");
        ok(&stack.run(
            app.path(),
            &[
                "--app",
                "multi",
                "--repo",
                &repo,
                "-f",
                "docker-compose.yml",
                "--gitsha",
                sha,
            ],
        ))
    };
    let first = run("m1");
    if !registry_cache_expected() {
        assert!(first.contains("note: the registry cache is off"), "{first}");
        return;
    }
    // The final image and the `deps` stage, each under its own cache tag.
    assert_eq!(stack.tags("multi-cache"), ["multi_web", "multi_web-deps"]);
    wipe_new_images(&stack);
    fs::write(app.path().join("web/app.txt"), "v2").expect("change");
    let second = run("m2");
    if buildkit_mode() {
        // The engine's BuildKit (the current engine's pass): the slow
        // step's number, then `#N CACHED`; the changed file's step not.
        assert!(
            step_cached(&second, "RUN sleep 2"),
            "the deps stage's RUN came from the registry:\n{second}"
        );
        assert!(
            !step_cached(&second, "COPY app.txt"),
            "the changed file was copied anew:\n{second}"
        );
        return;
    }
    // The classic builder's output: the slow step, then what it did.
    let after_run = second
        .split("RUN sleep 2")
        .nth(1)
        .and_then(|rest| rest.split("Step ").next())
        .unwrap_or("");
    assert!(
        after_run.contains("Using cache"),
        "the deps stage's RUN came from the registry:\n{second}"
    );
    let app_step = second.split("COPY app.txt").nth(1).unwrap_or("");
    assert!(
        !app_step
            .split("Step ")
            .next()
            .unwrap_or("")
            .contains("Using cache"),
        "the changed file was copied anew:\n{second}"
    );
}

/// The issue's shape: the slow step in the build stage, then a file of the
/// build stage (`app.txt`) copied after it; the runtime stage copies the
/// build's result and a file of its own (`run.txt`).
fn build_stage_app(host: &str) -> tempfile::TempDir {
    let app = tempfile::tempdir().expect("app");
    fs::create_dir(app.path().join("web")).expect("dir");
    for (f, t) in [("deps.txt", "deps"), ("app.txt", "v1"), ("run.txt", "r1")] {
        fs::write(app.path().join("web").join(f), t).expect("file");
    }
    fs::write(
        app.path().join("web/Dockerfile"),
        format!(
            "FROM {host}/base:1 AS build\nCOPY deps.txt /deps.txt\nRUN echo \"ran: slow step\" && sleep 3 && cat /deps.txt > /deps\nCOPY app.txt /app.txt\nRUN cat /app.txt /deps > /out\n\nFROM {host}/base:1\nCOPY --from=build /out /out\nCOPY run.txt /run.txt\n"
        ),
    )
    .expect("Dockerfile");
    app
}

/// Each build command of a verbose run's output (`+ … docker build …` or
/// `buildx build`), with the lines it printed after it.
fn builds_in(out: &str) -> Vec<String> {
    let mut builds: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for l in out.lines() {
        let is_cmd = l.contains("] + ");
        if is_cmd {
            if let Some(b) = current.take() {
                builds.push(b);
            }
            if l.contains("docker build")
                || l.contains(" build --builder")
                || l.contains("buildx build")
            {
                current = Some(String::new());
            }
        }
        if let Some(b) = current.as_mut() {
            b.push_str(l);
            b.push('\n');
        }
    }
    builds.extend(current);
    builds
}

/// The slow step did not run in this build's log: the line it prints when
/// it runs (`ran: slow step`, not its command line) is not there. Taken
/// from a cache, a step prints nothing, under every builder.
fn slow_step_skipped(build: &str) -> bool {
    !build
        .lines()
        .any(|l| l.contains("ran: slow step") && !l.contains("echo \"ran: slow step\""))
}

#[test]
fn a_fresh_runner_never_reruns_a_build_stages_slow_step_whichever_stage_changed() {
    let Some(stack) = Stack::start() else { return };
    if !Path::new("/bin/busybox").is_file() {
        missing("busybox-static is not installed (/bin/busybox)");
        return;
    }
    if !registry_cache_expected() {
        return; // the engine cannot write inline cache: said by the test above
    }
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "base");
    let app = build_stage_app(&host);
    let repo = format!("{host}/shapes");
    let run = |sha: &str| {
        fs::write(
            app.path().join("docker-compose.yml"),
            "services:\n  web:\n    build: ./web\n",
        )
        .expect("reset");
        ok(&stack.run(
            app.path(),
            &[
                "--app",
                "shapes",
                "--repo",
                &repo,
                "-f",
                "docker-compose.yml",
                "--gitsha",
                sha,
                "-v",
            ],
        ))
    };
    let cold = run("s1");
    assert!(
        !slow_step_skipped(&cold),
        "the cold run's log shows the step run:\n{cold}"
    );
    for (n, (file, text)) in [("app.txt", "v2"), ("run.txt", "r2")]
        .into_iter()
        .enumerate()
    {
        // A fresh runner, one change: in the build stage, then in the
        // runtime stage.
        wipe_new_images(&stack);
        fs::write(app.path().join("web").join(file), text).expect("change");
        let out = run(&format!("s{}", n + 2));
        let builds = builds_in(&out);
        eprintln!("=== {file}\n{out}");
        assert!(!builds.is_empty(), "no build in:\n{out}");
        for b in &builds {
            assert!(
                slow_step_skipped(b),
                "{file} changed: the slow step ran in this build:\n{b}\n\nthe whole run:\n{out}"
            );
        }
    }
}

/// The same shapes on a remote BuildKit builder (`--builder`, BuildKit's own
/// registry cache, `mode=max`): a fresh runner is a new buildkitd with an
/// empty state; the slow step runs in none of the run's builds.
#[test]
fn a_remote_builder_never_reruns_a_build_stages_slow_step_whichever_stage_changed() {
    if buildkit_mode() {
        return; // once is enough: the builder is the same in both passes
    }
    let Some((buildkitd, buildx)) = current_buildkit() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "base");
    install_buildx(&stack, &buildx);
    let app = build_stage_app(&host);
    let repo = format!("{host}/rshapes");
    let run = |sha: &str| {
        // A fresh runner: a new daemon, a new builder, no cache of its own.
        let daemon = Buildkitd::start(&buildkitd, &host);
        let name = format!("bkfresh{sha}");
        create_remote_builder(&stack, &name, &daemon);
        fs::write(
            app.path().join("docker-compose.yml"),
            "services:\n  web:\n    build: ./web\n",
        )
        .expect("reset");
        let out = ok(&stack.run(
            app.path(),
            &[
                "--app",
                "rshapes",
                "--repo",
                &repo,
                "-f",
                "docker-compose.yml",
                "--gitsha",
                sha,
                "-v",
                "--builder",
                &name,
            ],
        ));
        drop(daemon);
        out
    };
    let cold = run("r1");
    assert!(
        !slow_step_skipped(&cold),
        "the cold run's log shows the step run:\n{cold}"
    );
    for (n, (file, text)) in [("app.txt", "v2"), ("run.txt", "r2")]
        .into_iter()
        .enumerate()
    {
        fs::write(app.path().join("web").join(file), text).expect("change");
        let out = run(&format!("r{}", n + 2));
        let builds = builds_in(&out);
        eprintln!("=== {file}\n{out}");
        assert_eq!(builds.len(), 1, "one build that pushes itself:\n{out}");
        assert!(
            slow_step_skipped(&builds[0]),
            "{file} changed: the slow step ran:\n{out}"
        );
    }
}

/// In BuildKit's plain progress (each line prefixed `[service]`): did the
/// step whose line names `what` come from a cache (`#N CACHED`)?
fn step_cached(out: &str, what: &str) -> bool {
    let Some(step) = out
        .lines()
        .find(|l| l.contains(what) && l.contains(" #"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with('#')))
    else {
        return false;
    };
    out.lines()
        .any(|l| l.trim().ends_with(&format!("{step} CACHED")))
}

/// A current BuildKit, built by hand (it cannot be installed here):
/// `OFFCLUSTER_BUILDKITD` names buildkitd, `OFFCLUSTER_BUILDX` the buildx
/// plugin. Unset: the test says so and passes, also under E2E_REQUIRED=1.
fn current_buildkit() -> Option<(PathBuf, PathBuf)> {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match (get("OFFCLUSTER_BUILDKITD"), get("OFFCLUSTER_BUILDX")) {
        (Some(d), Some(x)) if d.is_file() && x.is_file() => Some((d, x)),
        _ => {
            eprintln!("SKIPPED current BuildKit test: set OFFCLUSTER_BUILDKITD and OFFCLUSTER_BUILDX to a buildkitd and a docker-buildx built by hand");
            None
        }
    }
}

/// buildkitd on a free loopback port, reaching the test's registry over
/// plain HTTP; stopped and its state removed on drop.
struct Buildkitd {
    child: Child,
    root: tempfile::TempDir,
    port: u16,
}

impl Buildkitd {
    fn start(bin: &Path, registry: &str) -> Buildkitd {
        Buildkitd::start_with(bin, registry, "")
    }

    /// A node that keeps the platforms it found at its start (BuildKit
    /// looks for emulators again every 20 s unless told otherwise): started
    /// before QEMU's entry, it stands for a native amd64 node without an
    /// emulator, though the kernel here has one for the arm64 node.
    fn start_native(bin: &Path, registry: &str) -> Buildkitd {
        Buildkitd::start_with(
            bin,
            registry,
            "[system]\n  platformsCacheMaxAge = \"-1s\"\n",
        )
    }

    fn start_with(bin: &Path, registry: &str, top: &str) -> Buildkitd {
        let root = tempfile::tempdir().expect("buildkitd root");
        let config = root.path().join("buildkitd.toml");
        fs::write(
            &config,
            format!("{top}[registry.\"{registry}\"]\n  http = true\n  insecure = true\n"),
        )
        .expect("config");
        let port = free_port();
        let child = Command::new(bin)
            .args(["--addr", &format!("tcp://127.0.0.1:{port}"), "--root"])
            .arg(root.path().join("state"))
            .arg("--config")
            .arg(&config)
            .args(["--oci-worker-snapshotter", "native"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(root.path().join("log")).expect("log"))
            .spawn()
            .expect("start buildkitd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "buildkitd did not listen");
            thread::sleep(Duration::from_millis(50));
        }
        Buildkitd { child, root, port }
    }
}

impl Drop for Buildkitd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(self.root.path());
    }
}

/// The hand-built buildx as the test's docker CLI plugin; the plugins
/// folder.
fn install_buildx(stack: &Stack, buildx: &Path) -> PathBuf {
    let plugins = stack.dir.path().join("docker-config/cli-plugins");
    fs::create_dir_all(&plugins).expect("plugins");
    std::os::unix::fs::symlink(buildx, plugins.join("docker-buildx")).expect("plugin");
    plugins
}

/// `docker ARGS` in the test's environment, which must succeed; its stdout.
fn docker_ok(stack: &Stack, args: &[&str]) -> String {
    let mut c = Command::new("docker");
    c.args(args);
    stack.env(&mut c);
    let out = c.output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A buildx builder NAME with the `remote` driver on `daemon`.
fn create_remote_builder(stack: &Stack, name: &str, daemon: &Buildkitd) {
    remote_node(stack, name, daemon, &[]);
}

/// `docker buildx create FLAGS --name NAME --driver remote` of `daemon`.
fn remote_node(stack: &Stack, name: &str, daemon: &Buildkitd, flags: &[&str]) {
    let endpoint = format!("tcp://127.0.0.1:{}", daemon.port);
    let mut args = vec!["buildx", "create"];
    args.extend_from_slice(flags);
    args.extend(["--name", name, "--driver", "remote", &endpoint]);
    docker_ok(stack, &args);
}

#[test]
fn a_remote_buildkit_builder_builds_and_pushes_itself_and_caches_every_stage() {
    if buildkit_mode() {
        return; // once is enough: the builder is the same in both passes
    }
    let Some((buildkitd, buildx)) = current_buildkit() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "base");
    let daemon = Buildkitd::start(&buildkitd, &host);
    let plugins = install_buildx(&stack, &buildx);
    let docker = |args: &[&str]| {
        docker_ok(&stack, args);
    };
    create_remote_builder(&stack, "bkremote", &daemon);
    let app = multi_stage_app(&host);
    let repo = format!("{host}/bk");
    let run = |sha: &str, args: &[&str], env: &[(&str, &str)]| {
        fs::write(
            app.path().join("docker-compose.yml"),
            "services:\n  web:\n    build: ./web\n",
        )
        .expect("reset");
        let mut c = Command::new(BIN);
        c.current_dir(app.path())
            .args([
                "--app",
                "bk",
                "--repo",
                &repo,
                "-f",
                "docker-compose.yml",
                "-v",
                "--gitsha",
                sha,
            ])
            .args(args);
        stack.env(&mut c);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run");
        (
            ok(&out),
            fs::read_to_string(app.path().join("docker-compose.yml")).expect("file"),
        )
    };
    let images_before = image_ids();
    // --builder NAME: the builder pushes every ref itself.
    let (first, written) = run("b1", &["--builder", "bkremote"], &[]);
    // buildx run as the file docker runs for `docker buildx`, asked and
    // building without docker's dispatch.
    let direct = |sub: &str| format!("+ {} {sub}", plugins.join("docker-buildx").display());
    assert!(first.contains(&direct("inspect bkremote")), "{first}");
    assert!(
        first.contains(&direct("build --builder bkremote")),
        "{first}"
    );
    assert!(
        written.contains(&format!("image: {host}/bk:temp_bk_web_")),
        "{written}"
    );
    assert_eq!(stack.tags("bk").len(), 1, "{first}");
    // One image manifest, as the classic builder and Convox push: no
    // provenance attestation beside it.
    let tag = tag_in(&written, &format!("{host}/bk"));
    let manifest = served_manifest(stack.registry_port, "bk", &tag).expect("the manifest");
    assert!(manifest.get("manifests").is_none(), "an index: {manifest}");
    assert!(manifest.get("layers").is_some(), "{manifest}");
    assert_eq!(
        stack.tags("bk-cache"),
        ["bk_web"],
        "BuildKit's own cache, of every stage"
    );
    assert_eq!(
        image_ids(),
        images_before,
        "nothing left in the local engine"
    );
    // A fresh runner: the builder's cache pruned, one file changed;
    // BUILDX_BUILDER names the builder.
    docker(&[
        "buildx",
        "prune",
        "--builder",
        "bkremote",
        "--all",
        "--force",
    ]);
    fs::write(app.path().join("web/app.txt"), "v2").expect("change");
    let (second, _) = run("b2", &[], &[("BUILDX_BUILDER", "bkremote")]);
    assert!(
        second.contains(&direct("build --builder bkremote")),
        "{second}"
    );
    // BuildKit's plain progress, each line prefixed with `[web]`: the
    // step's number, then `#N CACHED`.
    let step = second
        .lines()
        .find(|l| l.contains("RUN sleep 2"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with('#')))
        .expect("the RUN step's number");
    assert!(
        second
            .lines()
            .any(|l| l.trim().ends_with(&format!("{step} CACHED"))),
        "the deps stage's RUN came from the registry cache:\n{second}"
    );
    // Made current by `docker buildx use`.
    docker(&["buildx", "use", "bkremote"]);
    fs::write(app.path().join("web/app.txt"), "v3").expect("change");
    let (third, _) = run("b3", &[], &[]);
    assert!(
        third.contains(&direct("build --builder bkremote")),
        "{third}"
    );
    assert_eq!(stack.tags("bk").len(), 3);
    assert_eq!(
        image_ids(),
        images_before,
        "nothing left in the local engine"
    );
    // Asked for, the attestation is kept: the tag is then an index.
    fs::write(app.path().join("web/app.txt"), "v4").expect("change");
    let (_, written) = run("b4", &["--provenance", "mode=min"], &[]);
    let tag = tag_in(&written, &format!("{host}/bk"));
    let index = served_manifest(stack.registry_port, "bk", &tag).expect("the manifest");
    assert!(index.get("manifests").is_some(), "not an index: {index}");
    // Two builds to run: one bake, each image under its own tag, each
    // pinned digest the registry's.
    fs::create_dir_all(app.path().join("api")).expect("api");
    fs::write(
        app.path().join("api/Dockerfile"),
        format!("FROM {host}/base:1\nCOPY api.txt /api.txt\n"),
    )
    .expect("Dockerfile");
    fs::write(app.path().join("api/api.txt"), "api").expect("file");
    fs::write(app.path().join("web/app.txt"), "v5").expect("change");
    let compose = app.path().join("two.yml");
    fs::write(
        &compose,
        "services:\n  web:\n    build: ./web\n  api:\n    build: ./api\n",
    )
    .expect("compose");
    let mut c = Command::new(BIN);
    c.current_dir(app.path()).args([
        "--app",
        "bk",
        "--repo",
        &repo,
        "-f",
        "two.yml",
        "-v",
        "--gitsha",
        "b5",
        "--builder",
        "bkremote",
        "--pin-digest",
    ]);
    stack.env(&mut c);
    let baked = ok(&c.output().expect("run"));
    let bake = format!(
        "BUILDX_BAKE_ENTITLEMENTS_FS=0 {} bake --builder bkremote",
        plugins.join("docker-buildx").display()
    );
    assert!(baked.contains(&bake), "{baked}");
    assert!(!baked.contains(&direct("build --builder")), "{baked}");
    let written = fs::read_to_string(&compose).expect("file");
    for service in ["web", "api"] {
        let line = written
            .lines()
            .find(|l| l.contains(&format!("{host}/bk:temp_bk_{service}_")))
            .unwrap_or_else(|| panic!("{service} rewritten: {written}"));
        let (reference, digest) = line
            .trim()
            .trim_start_matches("image: ")
            .split_once('@')
            .expect("a pinned digest");
        let tag = reference.rsplit_once(':').expect("a tag").1;
        assert_eq!(
            registry_digest(stack.registry_port, "bk", tag).as_deref(),
            Some(digest),
            "{service}: {written}"
        );
    }
    assert_eq!(
        image_ids(),
        images_before,
        "nothing left in the local engine"
    );
}

/// The `os/architecture` of an image's config, as the registry serves it.
fn served_platform(port: u16, repo: &str, tag: &str) -> Option<String> {
    let manifest = served_manifest(port, repo, tag)?;
    let config = manifest.get("config")?.get("digest")?.as_str()?.to_string();
    let (200, body) = http_get(port, &format!("/v2/{repo}/blobs/{config}"))? else {
        return None;
    };
    let c: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(format!(
        "{}/{}",
        c.get("os")?.as_str()?,
        c.get("architecture")?.as_str()?
    ))
}

/// `--platform linux/arm64` on the engine's BuildKit (the BuildKit passes):
/// the registry gets linux/arm64, and the image runs as aarch64 under QEMU.
/// Under the classic builder: refused before any build, the file untouched.
#[test]
fn one_foreign_platform_is_built_for_it_and_runs_there_or_is_refused_by_the_classic_builder() {
    let Some(stack) = Stack::start() else { return };
    let Some(busybox) = arm64_busybox() else {
        return;
    };
    let Some(_qemu) = Aarch64Emulation::start() else {
        return;
    };
    let host = stack.host();
    let app = tempfile::tempdir().expect("app");
    // The base: an arm64 busybox, built by the program itself for arm64.
    fs::create_dir_all(app.path().join("base/rootfs/bin")).expect("base");
    fs::copy(&busybox, app.path().join("base/rootfs/bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", app.path().join("base/rootfs/bin/sh")).expect("sh");
    fs::write(
        app.path().join("base/Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\n",
    )
    .expect("Dockerfile");
    fs::create_dir_all(app.path().join("web")).expect("web");
    fs::write(
        app.path().join("web/Dockerfile"),
        format!("FROM {host}/basearm:1\nRUN uname -m > /arch\n"),
    )
    .expect("Dockerfile");
    let compose = "version: \"2\"\nservices:\n  web:\n    build: ./web\n";
    fs::write(app.path().join(FILE), compose).expect("compose");
    fs::write(
        app.path().join("base.yml"),
        "version: \"2\"\nservices:\n  base:\n    build: ./base\n",
    )
    .expect("base.yml");
    if !buildkit_mode() {
        let out = stack.run(
            app.path(),
            &[
                "--app",
                "arm",
                "--gitsha",
                "a1",
                "--repo",
                &format!("{host}/arm"),
                "--platform",
                "linux/arm64",
                "-v",
                "--no-base-digest",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("the classic builder builds only for the engine's own platform"),
            "{stderr}"
        );
        assert!(
            !stderr
                .lines()
                .any(|l| l.contains("+ ") && l.contains("docker build ")),
            "no build ran: {stderr}"
        );
        assert_eq!(
            fs::read_to_string(app.path().join(FILE)).expect("file"),
            compose
        );
        return;
    }
    // A kept image of linux/amd64 alone (imported here): a warning.
    push_base(&stack, &format!("{host}/keptamd:1"), "kept");
    fs::write(
        app.path().join(FILE),
        format!("{compose}  cache:\n    image: {host}/keptamd:1\n"),
    )
    .expect("compose");
    ok(&stack.run(
        app.path(),
        &[
            "--app",
            "arm",
            "--gitsha",
            "b1",
            "--repo",
            &format!("{host}/basearm"),
            "-f",
            "base.yml",
            "--tag",
            "1",
            "--platform",
            "linux/arm64",
        ],
    ));
    let out = ok(&stack.run(
        app.path(),
        &[
            "--app",
            "arm",
            "--gitsha",
            "a1",
            "--repo",
            &format!("{host}/arm"),
            "--platform",
            "linux/arm64",
            "-v",
        ],
    ));
    assert!(out.contains(" --platform linux/arm64 "), "{out}");
    // The image's config read back by the program itself.
    let read_back = format!("+ docker manifest inspect --verbose --insecure {host}/arm:");
    assert!(!out.contains(&read_back), "{out}");
    assert!(
        out.contains(&format!("warning: service `cache` keeps image {host}/keptamd:1, which offers linux/amd64 and not linux/arm64")),
        "{out}"
    );
    assert!(out.contains("platforms: linux/arm64 (--platform)"), "{out}");
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    let tag = tag_in(&written, &format!("{host}/arm"));
    assert_eq!(
        served_platform(stack.registry_port, "arm", &tag).as_deref(),
        Some("linux/arm64")
    );
    let mut c = Command::new("docker");
    c.args([
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        &format!("{host}/arm:{tag}"),
        "/bin/busybox",
        "cat",
        "/arch",
    ]);
    stack.env(&mut c);
    let ran = c.output().expect("docker run");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "aarch64\n",
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// A build context of two architectures: busybox of each in
/// `rootfs-amd64`, `rootfs-arm64`, and a Dockerfile taking the rootfs of
/// the platform built (`FROM scratch`, `ARG TARGETARCH`), then `steps`.
fn two_arch_context(dir: &Path, arm64_busybox: &Path, steps: &str) {
    for (arch, busybox) in [
        ("amd64", Path::new("/bin/busybox")),
        ("arm64", arm64_busybox),
    ] {
        let bin = dir.join(format!("rootfs-{arch}/bin"));
        fs::create_dir_all(&bin).expect("rootfs");
        fs::copy(busybox, bin.join("busybox")).expect("busybox");
        std::os::unix::fs::symlink("busybox", bin.join("sh")).expect("sh");
    }
    fs::write(
        dir.join("Dockerfile"),
        format!("FROM scratch\nARG TARGETARCH\nCOPY rootfs-${{TARGETARCH}}/ /\n{steps}"),
    )
    .expect("Dockerfile");
}

/// An app of two builds for two platforms: `base/` (busybox of each
/// architecture, `base.yml`) and `web/` (`FROM base`, `RUN uname -m >
/// /arch`); the compose file of web, not yet written.
fn two_platform_app(dir: &Path, arm64: &Path, base: &str) -> &'static str {
    two_arch_context(&dir.join("base"), arm64, "");
    fs::write(
        dir.join("base.yml"),
        "version: \"2\"\nservices:\n  base:\n    build: ./base\n",
    )
    .expect("base.yml");
    fs::create_dir_all(dir.join("web")).expect("web");
    fs::write(
        dir.join("web/Dockerfile"),
        format!("FROM {base}\nRUN uname -m > /arch\n"),
    )
    .expect("Dockerfile");
    "version: \"2\"\nservices:\n  web:\n    build: ./web\n"
}

/// Two platforms on a remote BuildKit builder (`--builder`), arm64 under
/// QEMU: one index of exactly linux/amd64 and linux/arm64 (no attestation
/// entry), read back before the rewrite; a second run builds nothing.
#[test]
fn two_platforms_on_a_remote_builder_make_one_index_of_exactly_those_two() {
    if buildkit_mode() {
        return; // once is enough: the builder is the same in both passes
    }
    let Some((buildkitd, buildx)) = current_buildkit() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let Some(arm64) = arm64_busybox() else { return };
    let Some(_qemu) = Aarch64Emulation::start() else {
        return;
    };
    let host = stack.host();
    // buildkitd lists linux/arm64 when QEMU's entry is there as it starts.
    let daemon = Buildkitd::start(&buildkitd, &host);
    install_buildx(&stack, &buildx);
    create_remote_builder(&stack, "bktwo", &daemon);
    let app = tempfile::tempdir().expect("app");
    // The base: busybox of each architecture, one index, built by the
    // program itself (FROM scratch, the rootfs by TARGETARCH).
    let compose = two_platform_app(app.path(), &arm64, &format!("{host}/twobase:1"));
    let two = [
        "--platform",
        "linux/arm64,linux/amd64",
        "--builder",
        "bktwo",
    ];
    let run = |args: &[&str]| {
        let mut a = vec!["--app", "two", "-v"];
        a.extend_from_slice(args);
        a.extend_from_slice(&two);
        ok(&stack.run(app.path(), &a))
    };
    run(&[
        "--gitsha",
        "b",
        "--repo",
        &format!("{host}/twobase"),
        "-f",
        "base.yml",
        "--tag",
        "1",
    ]);
    fs::write(app.path().join(FILE), compose).expect("compose");
    let first = run(&["--gitsha", "t1", "--repo", &format!("{host}/two")]);
    assert!(
        first.contains(" --platform linux/amd64,linux/arm64 "),
        "{first}"
    );
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    let tag = tag_in(&written, &format!("{host}/two"));
    let index = served_manifest(stack.registry_port, "two", &tag).expect("the manifest");
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
    // A second run: the registry has it, nothing is built.
    fs::write(app.path().join(FILE), compose).expect("reset");
    let second = run(&["--gitsha", "t2", "--repo", &format!("{host}/two")]);
    assert!(!second.contains(" build --builder bktwo"), "{second}");
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("file"),
        written
    );
}

/// The platforms of an index the registry serves, sorted.
fn index_platforms(index: &serde_json::Value) -> Vec<String> {
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {index}"))
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or("?"),
                m["platform"]["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect();
    platforms.sort();
    platforms
}

/// Two platforms on the engine's BuildKit (20.10's with DOCKER_BUILDKIT=1,
/// and engine 26's through buildx's `docker` driver), arm64 under QEMU: the
/// engine keeps one platform per image, so each is built alone, pushed to
/// the cache repository, and joined: the registry serves one index of
/// exactly linux/amd64 and linux/arm64 under the tag, each entry runs as its
/// CPU, the app's repository holds no tag but the index's, and a second run
/// builds nothing.
#[test]
fn two_platforms_on_the_engines_buildkit_make_one_index_of_exactly_those_two() {
    if !buildkit_mode() {
        return; // the classic builder refuses them (the foreign-platform test)
    }
    let Some(stack) = Stack::start() else { return };
    let Some(arm64) = arm64_busybox() else { return };
    let Some(_qemu) = Aarch64Emulation::start() else {
        return;
    };
    let host = stack.host();
    let app = tempfile::tempdir().expect("app");
    // The base: busybox of each architecture, built by the program itself
    // on the engine's BuildKit (FROM scratch, the rootfs by TARGETARCH).
    let compose = two_platform_app(app.path(), &arm64, &format!("{host}/ebase:1"));
    let run = |args: &[&str]| {
        let mut a = vec![
            "--app",
            "etwo",
            "-v",
            "--platform",
            "linux/arm64,linux/amd64",
        ];
        a.extend_from_slice(args);
        ok(&stack.run(app.path(), &a))
    };
    let base = run(&[
        "--gitsha",
        "b",
        "--repo",
        &format!("{host}/ebase"),
        "-f",
        "base.yml",
        "--tag",
        "1",
    ]);
    // Engine 26's client has buildx, whose `imagetools create` joins them;
    // 20.10's has not: `docker manifest`.
    let join = match common::current_engine() {
        Some(_) => "imagetools create -t",
        None => "+ docker manifest create",
    };
    assert!(base.contains(join), "{base}");
    fs::write(app.path().join(FILE), compose).expect("compose");
    let first = run(&["--gitsha", "t1", "--repo", &format!("{host}/etwo")]);
    for p in ["linux/amd64", "linux/arm64"] {
        assert!(first.contains(&format!(" --platform {p} ")), "{first}");
    }
    // The index read back by the program itself (a plain-HTTP registry):
    // no process for it.
    let read_back = format!("+ docker manifest inspect --verbose --insecure {host}/etwo:");
    assert!(!first.contains(&read_back), "{first}");
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    let tag = tag_in(&written, &format!("{host}/etwo"));
    let index = served_manifest(stack.registry_port, "etwo", &tag).expect("the manifest");
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
    // No stray tag beside the build's: the parts are in the cache repository.
    assert_eq!(stack.tags("etwo"), std::slice::from_ref(&tag));
    assert_eq!(
        stack.tags("etwo-cache"),
        ["etwo_web.linux-amd64", "etwo_web.linux-arm64"]
    );
    // Each entry is its CPU's (the RUN step ran there, arm64 under QEMU).
    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        assert_arch(&stack, &format!("{host}/etwo:{tag}"), platform, arch);
    }
    // A second run: the registry has it, nothing is built.
    fs::write(app.path().join(FILE), compose).expect("reset");
    let second = run(&["--gitsha", "t2", "--repo", &format!("{host}/etwo")]);
    assert!(!second.contains(" build "), "{second}");
    assert!(!second.contains("manifest create"), "{second}");
    assert_eq!(
        fs::read_to_string(app.path().join(FILE)).expect("file"),
        written
    );
}

/// The image's `/arch` (what its `RUN uname -m` wrote), run as `platform`,
/// is `arch`: its RUN step ran on that CPU.
fn assert_arch(stack: &Stack, image: &str, platform: &str, arch: &str) {
    let mut c = Command::new("docker");
    c.args(["run", "--rm", "--platform", platform])
        .arg(image)
        .args(["/bin/busybox", "cat", "/arch"]);
    stack.env(&mut c);
    let ran = c.output().expect("docker run");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        format!("{arch}\n"),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// The contents of every file named `name` below `dir` (a BuildKit state
/// folder: what its builds' steps wrote).
fn files_named(dir: &Path, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && e.file_name() == name {
                out.push(
                    fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `docker buildx create --append --platform linux/arm64` of `node` to the
/// remote builder `name`: the node declared for arm64.
fn append_arm64_node(stack: &Stack, name: &str, node: &Buildkitd) {
    remote_node(
        stack,
        name,
        node,
        &["--append", "--platform", "linux/arm64"],
    );
}

/// A buildx builder of two BuildKit daemons, the second declared linux/arm64
/// (`docker buildx create --append --platform`), as a fleet of native nodes
/// is set up. The first starts before QEMU's entry is registered, so it
/// offers linux/amd64 alone: each half of a two-platform build runs on its
/// own node, all in one build of the program's, as buildx schedules it.
/// Which node ran what is read from each daemon's state (the file the RUN
/// step writes). The first node keeps the platforms it found at its start
/// (`Buildkitd::start_native`): BuildKit looks for emulators again every
/// 20 s, and buildx gives a platform to the first node that lists it. A
/// second builder whose first node has the emulator shows that rule: the
/// program warns, and that node builds both halves.
#[test]
fn a_builder_with_a_node_per_platform_builds_each_half_on_its_node() {
    if buildkit_mode() {
        return; // once is enough: the builder is the same in both passes
    }
    let Some((buildkitd, buildx)) = current_buildkit() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let Some(arm64) = arm64_busybox() else { return };
    let host = stack.host();
    let amd64_node = Buildkitd::start_native(&buildkitd, &host);
    let Some(_qemu) = Aarch64Emulation::start() else {
        return;
    };
    let arm64_node = Buildkitd::start(&buildkitd, &host);
    install_buildx(&stack, &buildx);
    create_remote_builder(&stack, "fleet", &amd64_node);
    append_arm64_node(&stack, "fleet", &arm64_node);
    let app = tempfile::tempdir().expect("app");
    two_arch_context(&app.path().join("web"), &arm64, "RUN uname -m > /arch\n");
    fs::write(
        app.path().join(FILE),
        "version: \"2\"\nservices:\n  web:\n    build: ./web\n",
    )
    .expect("compose");
    let out = ok(&stack.run(
        app.path(),
        &[
            "--app",
            "fleet",
            "--gitsha",
            "f1",
            "--repo",
            &format!("{host}/fleet"),
            "--platform",
            "linux/amd64,linux/arm64",
            "--builder",
            "fleet",
            "-v",
        ],
    ));
    // One build of the program's for both halves: buildx spread it, and
    // the program saw no platform going to a node not declared for it.
    assert_eq!(out.matches(" build --builder fleet ").count(), 1, "{out}");
    assert!(!out.contains("buildx gives"), "{out}");
    assert_eq!(files_named(amd64_node.root.path(), "arch"), ["x86_64"]);
    assert_eq!(files_named(arm64_node.root.path(), "arch"), ["aarch64"]);
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    let tag = tag_in(&written, &format!("{host}/fleet"));
    let index = served_manifest(stack.registry_port, "fleet", &tag).expect("the manifest");
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(2),
        "{index}"
    );
    // A first node with the emulator (started after QEMU's entry), ahead of
    // the node declared linux/arm64: buildx gives it arm64 too, and the
    // program says so before the build.
    let emulating = Buildkitd::start(&buildkitd, &host);
    create_remote_builder(&stack, "fleetq", &emulating);
    append_arm64_node(&stack, "fleetq", &arm64_node);
    fs::write(
        app.path().join(FILE),
        "version: \"2\"\nservices:\n  web:\n    build: ./web\n",
    )
    .expect("compose");
    let out = ok(&stack.run(
        app.path(),
        &[
            "--app",
            "fleetq",
            "--gitsha",
            "q1",
            "--repo",
            &format!("{host}/fleetq"),
            "--platform",
            "linux/amd64,linux/arm64",
            "--builder",
            "fleetq",
        ],
    ));
    assert!(
        out.contains("warning: builder fleetq: buildx gives linux/arm64 to node fleetq0"),
        "{out}"
    );
    assert_eq!(
        files_named(emulating.root.path(), "arch"),
        ["aarch64", "x86_64"]
    );
}

/// The stack's environment for `c`, with the folder of a fake `convox`
/// first on its PATH, in us-east-1.
fn convox_first_on_path(stack: &Stack, c: &mut Command, bin: &Path) {
    stack.env(c);
    let path = c
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
        .unwrap_or_else(|| std::env::var("PATH").unwrap_or_default());
    c.env("PATH", format!("{}:{path}", bin.display()))
        .env("AWS_REGION", "us-east-1");
}

/// The rack's platform, end to end: a `convox` that prints a gen2 rack's
/// parameters (Graviton `m6g.large` nodes), and the aws CLI asking moto for
/// the instance type's architectures: linux/arm64 without a flag. Under
/// BuildKit it is built and the registry holds linux/arm64; the classic
/// builder refuses it before any build, naming the rack.
#[test]
fn a_graviton_racks_platform_comes_from_convox_and_ec2() {
    let Some(stack) = Stack::start() else { return };
    let host = stack.host();
    let app = tempfile::tempdir().expect("app");
    fs::create_dir_all(app.path().join("web")).expect("web");
    fs::write(app.path().join("web/a.txt"), "a").expect("file");
    fs::write(
        app.path().join("web/Dockerfile"),
        "FROM scratch\nCOPY a.txt /a.txt\n",
    )
    .expect("Dockerfile");
    let compose = "version: \"2\"\nservices:\n  web:\n    build: ./web\n";
    // A `convox` that prints `params` for `convox rack params`.
    let run = |params: &str, repo: &str| {
        fs::write(app.path().join(FILE), compose).expect("compose");
        let bin = app.path().join("fake-convox");
        fs::create_dir_all(&bin).expect("bin");
        fs::write(
            bin.join("convox"),
            format!("#!/bin/sh\n[ \"$1 $2\" = \"rack params\" ] || exit 1\nprintf '{params}'\n"),
        )
        .expect("convox");
        common::make_executable(&bin.join("convox"));
        let mut c = Command::new(BIN);
        c.current_dir(app.path()).args([
            "--app",
            "rackapp",
            "--gitsha",
            "r1",
            "--repo",
            &format!("{host}/{repo}"),
            "--rack",
            "prod",
        ]);
        convox_first_on_path(&stack, &mut c, &bin);
        c.output().expect("run")
    };
    let gen2 =
        "Autoscale           Yes\\nBuildInstance       c5.large\\nInstanceType        m6g.large\\n";
    let out = run(gen2, "rackapp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !buildkit_mode() {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("this build is for linux/arm64 (the rack prod)"),
            "{stderr}"
        );
        assert_eq!(
            fs::read_to_string(app.path().join(FILE)).expect("file"),
            compose
        );
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("platforms: linux/arm64 (the rack prod)"),
        "{stderr}"
    );
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    let tag = tag_in(&written, &format!("{host}/rackapp"));
    assert_eq!(
        served_platform(stack.registry_port, "rackapp", &tag).as_deref(),
        Some("linux/arm64")
    );
    // A v3 rack whose Karpenter runs both architectures: one index of both,
    // on the engine's BuildKit.
    let v3 = "karpenter_arch                 amd64,arm64\\nkarpenter_enabled              true\\nnode_type                      t3.large\\n";
    let out = run(v3, "karp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("platforms: linux/amd64,linux/arm64 (the rack prod)"),
        "{stderr}"
    );
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    let tag = tag_in(&written, &format!("{host}/karp"));
    let index = served_manifest(stack.registry_port, "karp", &tag).expect("the manifest");
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
}

/// Dockerfile heredocs, on a current BuildKit through `--builder`: `RUN
/// <<EOF` in a build stage, `COPY <<EOF` in the final one; the image holds
/// both results, and nothing inside a heredoc was taken for a stage.
#[test]
fn a_dockerfile_with_heredocs_builds_on_a_current_buildkit() {
    if buildkit_mode() {
        return; // once is enough: the builder is the same in both passes
    }
    let Some((buildkitd, buildx)) = current_buildkit() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "base");
    let daemon = Buildkitd::start(&buildkitd, &host);
    install_buildx(&stack, &buildx);
    let docker = |args: &[&str]| docker_ok(&stack, args);
    create_remote_builder(&stack, "bkheredoc", &daemon);
    let app = tempfile::tempdir().expect("app");
    fs::create_dir_all(app.path().join("web")).expect("web");
    fs::write(
        app.path().join("web/Dockerfile"),
        format!(
            "FROM {host}/base:1 AS build\nRUN <<EOF\nmkdir -p /out\necho from-run > /out/run.txt\nEOF\nFROM {host}/base:1\nCOPY --from=build /out/run.txt /app/run.txt\nCOPY <<EOF /app/main.py\nfrom flask import Flask\nFROM python AS fake\nEOF\n"
        ),
    )
    .expect("Dockerfile");
    fs::write(
        app.path().join("docker-compose.yml"),
        "services:\n  web:\n    build: ./web\n",
    )
    .expect("compose");
    let repo = format!("{host}/heredoc");
    let mut c = Command::new(BIN);
    c.current_dir(app.path()).args([
        "--app",
        "heredoc",
        "--repo",
        &repo,
        "-f",
        "docker-compose.yml",
        "--gitsha",
        "h1",
        "--builder",
        "bkheredoc",
    ]);
    stack.env(&mut c);
    let out = ok(&c.output().expect("run"));
    assert!(!out.contains("flask") && !out.contains("python"), "{out}");
    let written = fs::read_to_string(app.path().join("docker-compose.yml")).expect("file");
    let reference = format!("{repo}:{}", tag_in(&written, &repo));
    docker(&["pull", "-q", &reference]);
    let shown = docker(&[
        "run",
        "--rm",
        &reference,
        "/bin/busybox",
        "cat",
        "/app/run.txt",
        "/app/main.py",
    ]);
    docker(&["rmi", &reference]);
    assert_eq!(
        shown,
        "from-run\nfrom flask import Flask\nFROM python AS fake\n"
    );
}

/// AWS's own credential helper, as AWS sets up its runners: configured as
/// the store, or for the host, it serves the registry; the run logs in to
/// nothing, pushes, rewrites, and leaves the docker config byte for byte.
#[test]
fn aws_credential_helper_in_the_docker_config_serves_the_push_and_the_config_is_never_written() {
    let Some(stack) = Stack::start() else { return };
    if !on_path("docker-credential-ecr-login") {
        common::skip_or_fail(
            "e2e",
            "docker-credential-ecr-login is not on PATH (Debian's amazon-ecr-credential-helper)",
        );
        return;
    }
    let host = stack.host();
    let config_file = stack.dir.path().join("docker-config/config.json");
    let configs = [
        r#"{"credsStore": "ecr-login"}"#.to_string(),
        format!(r#"{{"credHelpers": {{"{host}": "ecr-login"}}}}"#),
    ];
    for (k, config) in configs.iter().enumerate() {
        for (form, repo) in [
            ("registry", format!("{host}/helper{k}")),
            (
                "ecr",
                format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/helper{k}"),
            ),
        ] {
            fs::write(&config_file, config).expect("docker config");
            let app = fixture("demo");
            let mut args = vec![
                "--app", "demo", "--gitsha", "e2eh", "--repo", &repo, "--tag", GITSHA_TAG,
            ];
            if form == "ecr" {
                args.extend(["--registry-host", &host]);
            }
            let out = stack.run(app.path(), &args);
            let stderr = ok(&out);
            assert!(!stderr.contains("login"), "{form}: {stderr}");
            assert_eq!(
                stack.tags(&format!("helper{k}")),
                [
                    "temp_demo_api_e2eh",
                    "temp_demo_web_e2eh",
                    "temp_demo_worker_e2eh"
                ],
                "{form} {config}: {stderr}"
            );
            let written = fs::read_to_string(app.path().join(FILE)).expect("file");
            assert!(
                written.contains(&format!("image: {host}/helper{k}:temp_demo_web_e2eh")),
                "{written}"
            );
            assert_eq!(
                fs::read_to_string(&config_file).expect("config"),
                *config,
                "{form}: the docker config was written"
            );
            // (docker itself may leave its own state beside it: BuildKit's
            // `.buildNodeID`, buildx's folder; the credentials file is what
            // a login writes.)
        }
    }
    // Without the feature, docker's own answer to a login under this store:
    // the reason the login must not run.
    fs::write(&config_file, &configs[0]).expect("docker config");
    let mut login = Command::new("docker");
    login.args(["login", "--username", "AWS", "--password-stdin", &host]);
    stack.env(&mut login);
    let mut child = login
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("docker login");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"pw\n")
            .expect("password");
    }
    let out = child.wait_with_output().expect("docker login");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not implemented"),
        "{out:?}"
    );
}

/// A buildx builder made for one test, removed (container, volume) on drop.
struct BuilderGuard<'a> {
    stack: &'a Stack,
    name: &'static str,
    image: &'static str,
}

impl Drop for BuilderGuard<'_> {
    fn drop(&mut self) {
        for args in [
            vec!["buildx", "rm", "--force", self.name],
            vec!["rmi", "-f", self.image],
        ] {
            let mut c = Command::new("docker");
            c.args(&args);
            self.stack.env(&mut c);
            let _ = c.output();
        }
    }
}

/// buildx's `docker-container` driver (the default of
/// docker/setup-buildx-action) on the current engine, whose privileged
/// containers work: its BuildKit image made here, offline, from the
/// hand-built buildkitd and buildctl (`OFFCLUSTER_BUILDKITD`, its
/// `buildctl` beside it) and this machine's runc. `--builder` builds and
/// pushes; a fresh runner (the builder's cache pruned) with one change takes
/// the slow step from the registry cache; no image is left in the engine.
#[test]
fn the_docker_container_driver_builds_pushes_and_takes_a_fresh_runners_slow_step_from_the_registry()
{
    if common::current_engine().is_none() {
        eprintln!("SKIPPED the docker-container driver: it runs in the current-engine pass (E2E_ENGINE=current), whose engine runs privileged containers");
        return;
    }
    let Some((buildkitd, _)) = current_buildkit() else {
        return;
    };
    let buildctl = buildkitd.with_file_name("buildctl");
    if !buildctl.is_file() {
        eprintln!(
            "SKIPPED the docker-container driver: no buildctl beside {}",
            buildkitd.display()
        );
        return;
    }
    let Some(stack) = Stack::start() else { return };
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "base");
    // The BuildKit image: buildkitd, buildctl (the driver dials through
    // it), runc and the libraries it links.
    let root = tempfile::tempdir().expect("rootfs");
    for dir in ["usr/bin", "tmp", "var/lib/buildkit", "etc/buildkit"] {
        fs::create_dir_all(root.path().join(dir)).expect("dir");
    }
    fs::copy(&buildkitd, root.path().join("usr/bin/buildkitd")).expect("buildkitd");
    fs::copy(&buildctl, root.path().join("usr/bin/buildctl")).expect("buildctl");
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("runc");
    fs::copy(runc, root.path().join("usr/bin/runc")).expect("runc");
    let ldd = Command::new("ldd").arg(runc).output().expect("ldd");
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let to = root.path().join(lib.trim_start_matches('/'));
        fs::create_dir_all(to.parent().expect("lib dir")).expect("lib dir");
        fs::copy(lib, &to).expect("lib");
    }
    let image = "offcluster-buildkit:e2e";
    let docker = |args: &[&str]| {
        let mut c = Command::new("docker");
        c.args(args);
        stack.env(&mut c);
        let out = c.output().expect("docker");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut import = Command::new("sh");
    import.arg("-c").arg(format!(
        "tar -C {} -c . | docker import --change 'ENTRYPOINT [\"buildkitd\"]' - {image} >/dev/null",
        root.path().display()
    ));
    stack.env(&mut import);
    assert!(import.output().expect("import").status.success());
    let config = stack.dir.path().join("buildkitd.toml");
    fs::write(
        &config,
        format!("[registry.\"{host}\"]\n  http = true\n  insecure = true\n"),
    )
    .expect("config");
    let _builder = BuilderGuard {
        stack: &stack,
        name: "bkcontainer",
        image,
    };
    docker(&[
        "buildx",
        "create",
        "--name",
        "bkcontainer",
        "--driver",
        "docker-container",
        "--driver-opt",
        &format!("image={image},network=host"),
        "--buildkitd-config",
        &config.display().to_string(),
        "--bootstrap",
    ]);
    let images_before = image_ids();
    let app = multi_stage_app(&host);
    let repo = format!("{host}/dc");
    let run = |sha: &str| {
        fs::write(
            app.path().join("docker-compose.yml"),
            "services:\n  web:\n    build: ./web\n",
        )
        .expect("reset");
        let out = stack.run(
            app.path(),
            &[
                "--app",
                "dc",
                "--repo",
                &repo,
                "-f",
                "docker-compose.yml",
                "-v",
                "--gitsha",
                sha,
                "--builder",
                "bkcontainer",
            ],
        );
        (
            ok(&out),
            fs::read_to_string(app.path().join("docker-compose.yml")).expect("file"),
        )
    };
    let (first, written) = run("c1");
    let plugin = stack
        .dir
        .path()
        .join("docker-config/cli-plugins/docker-buildx");
    assert!(
        first.contains(&format!(
            "+ {} build --builder bkcontainer",
            plugin.display()
        )),
        "{first}"
    );
    assert!(
        written.contains(&format!("image: {host}/dc:temp_dc_web_")),
        "{written}"
    );
    assert_eq!(
        stack.tags("dc-cache"),
        ["dc_web"],
        "BuildKit's own cache, every stage"
    );
    let manifest = served_manifest(
        stack.registry_port,
        "dc",
        &tag_in(&written, &format!("{host}/dc")),
    )
    .expect("manifest");
    assert!(
        manifest.get("manifests").is_none(),
        "one image manifest: {manifest}"
    );
    // A fresh runner: the builder's cache pruned, one file changed.
    docker(&[
        "buildx",
        "prune",
        "--builder",
        "bkcontainer",
        "--all",
        "--force",
    ]);
    fs::write(app.path().join("web/app.txt"), "v2").expect("change");
    let (second, _) = run("c2");
    assert!(
        step_cached(&second, "RUN sleep 2"),
        "the deps stage's RUN came from the registry cache:\n{second}"
    );
    assert!(!step_cached(&second, "COPY app.txt"), "{second}");
    assert_eq!(stack.tags("dc").len(), 2);
    assert_eq!(image_ids(), images_before, "nothing left in the engine");
}

/// The image's clients are current: its docker speaks API 1.44 or later
/// (Docker 29 refuses anything older), has buildx, and its aws is v2 (which
/// honours AWS_ENDPOINT_URL). Against this pass's engine.
#[test]
fn the_image_has_a_docker_client_docker_29_accepts_with_buildx_and_the_aws_cli_v2() {
    let Some(image) = image_under_test() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let app = tempfile::tempdir().expect("workspace");
    // DefaultAPIVersion: the client's own, not the one negotiated down to
    // an older engine.
    let line = "docker version --format 'api={{.Client.DefaultAPIVersion}} engine={{.Server.Version}}'; docker buildx version; aws --version";
    let run = Run {
        workspace: app.path(),
        at: "/drone/src",
        mounts: Vec::new(),
        env: Vec::new(),
        entrypoint: Some(("/bin/sh", vec!["-ec".into(), line.into()])),
    };
    let out = stack.container(&image, &run);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ok(&out);
    let api = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("api="))
        .expect("the client's API version");
    let (major, minor) = api.split_once('.').expect("MAJOR.MINOR");
    let api: (u32, u32) = (major.parse().expect("major"), minor.parse().expect("minor"));
    assert!(api >= (1, 44), "client API {api:?}: {stdout}");
    assert!(
        !stdout.contains("engine= "),
        "it reached the engine: {stdout}"
    );
    assert!(stdout.contains("github.com/docker/buildx"), "{stdout}");
    assert!(stdout.contains("aws-cli/2."), "{stdout}");
}

/// The image with `builder` set to a remote BuildKit (a current one, built
/// by hand: `OFFCLUSTER_BUILDKITD`), as a Drone `commands:` step makes one:
/// it builds, pushes (one image manifest) and rewrites.
#[test]
fn the_image_builds_on_a_remote_buildkit_builder_pushes_and_rewrites() {
    if buildkit_mode() {
        return; // the host's loopback, where the builder listens: the classic pass
    }
    let Some(image) = image_under_test() else {
        return;
    };
    let Some((buildkitd, _)) = current_buildkit() else {
        return;
    };
    let Some(stack) = Stack::start() else { return };
    let host = stack.host();
    let daemon = Buildkitd::start(&buildkitd, &host);
    let app = fixture("demo");
    let line = format!(
        "docker buildx create --name bkimage --driver remote tcp://127.0.0.1:{} >/dev/null && convox-build-off-cluster",
        daemon.port
    );
    let run = Run {
        workspace: app.path(),
        at: "/drone/src",
        mounts: Vec::new(),
        env: strings(&[
            ("CI", "true"),
            ("PLUGIN_APP", "demo"),
            ("PLUGIN_GITSHA", "img1"),
            ("PLUGIN_REPO", &format!("{host}/demo")),
            ("PLUGIN_TAG", GITSHA_TAG),
            ("PLUGIN_BUILDER", "bkimage"),
        ]),
        entrypoint: Some(("/bin/sh", vec!["-ec".into(), line])),
    };
    let out = stack.container(&image, &run);
    let stderr = ok(&out);
    assert!(stderr.contains("built"), "{stderr}");
    assert_eq!(
        stack.tags("demo"),
        [
            "temp_demo_api_img1",
            "temp_demo_web_img1",
            "temp_demo_worker_img1"
        ],
        "{stderr}"
    );
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    assert!(
        written.contains(&format!("image: {host}/demo:temp_demo_web_img1")),
        "{written}"
    );
    let manifest =
        served_manifest(stack.registry_port, "demo", "temp_demo_web_img1").expect("manifest");
    assert!(
        manifest.get("manifests").is_none(),
        "one image manifest: {manifest}"
    );
}

/// The build arguments Convox passes, on the real engine: the build's RUN
/// sees the app's environment's value over the file's; the same value is up
/// to date, a changed one rebuilds; an undeclared name is not passed; and no
/// value is in any argv (every docker command traced by a wrapper first on
/// PATH) or in the program's output.
#[test]
fn the_apps_environment_reaches_the_declared_args_and_no_argv() {
    let Some(stack) = Stack::start() else { return };
    let host = stack.host();
    push_base(&stack, &format!("{host}/base:1"), "base");
    let app = tempfile::tempdir().expect("app");
    fs::create_dir(app.path().join("web")).expect("dir");
    fs::write(
        app.path().join("web/Dockerfile"),
        format!("FROM {host}/base:1\nARG NODE_ENV\nRUN echo \"$NODE_ENV\" > /node_env\n"),
    )
    .expect("Dockerfile");
    let compose = "version: \"2\"\nservices:\n  web:\n    build:\n      context: ./web\n      args:\n        - NODE_ENV=development\n";
    // The docker every command of the run finds first: it logs its argv.
    let real = {
        let mut c = Command::new("sh");
        c.args(["-c", "command -v docker"]);
        stack.env(&mut c);
        String::from_utf8_lossy(&c.output().expect("which docker").stdout)
            .trim()
            .to_string()
    };
    let trace = app.path().join("argv.log");
    let bin = app.path().join("trace-bin");
    fs::create_dir(&bin).expect("bin");
    fs::write(
        bin.join("docker"),
        format!(
            "#!/bin/sh\nprintf '%s ' \"$@\" >> {}\necho >> {}\nexec {real} \"$@\"\n",
            trace.display(),
            trace.display()
        ),
    )
    .expect("wrapper");
    common::make_executable(&bin.join("docker"));
    let repo = format!("{host}/args");
    let run = |value: &str| -> (String, String, String) {
        fs::write(app.path().join("docker-compose.yml"), compose).expect("reset");
        fs::write(
            app.path().join("app.env"),
            format!("NODE_ENV={value}\nTOKEN=tok-{value}\n"),
        )
        .expect("env");
        let mut c = Command::new(BIN);
        c.current_dir(app.path());
        stack.env(&mut c);
        let path = std::env::var("PATH").unwrap_or_default();
        let path = match buildkit_client_mode() {
            true => format!(
                "{}:{}:{path}",
                bin.display(),
                stack.dir.path().join("buildkit-bin").display()
            ),
            false => format!("{}:{path}", bin.display()),
        };
        let out = c
            .env("PATH", path)
            .args([
                "--app",
                "args",
                "--repo",
                &repo,
                "-f",
                "docker-compose.yml",
                "--env-file",
                "app.env",
                "-v",
            ])
            .output()
            .expect("run");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), ok(&out));
        let written = fs::read_to_string(app.path().join("docker-compose.yml")).expect("file");
        (
            stdout + &stderr,
            written,
            tag_in(
                &fs::read_to_string(app.path().join("docker-compose.yml")).expect("f"),
                &repo,
            ),
        )
    };
    let (output, _, first) = run("production-xyz");
    let mut cat = Command::new("docker");
    cat.args([
        "run",
        "--rm",
        "--entrypoint",
        "/bin/busybox",
        &format!("{repo}:{first}"),
        "cat",
        "/node_env",
    ]);
    stack.env(&mut cat);
    let seen = cat.output().expect("docker run");
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout).trim(),
        "production-xyz",
        "{seen:?}"
    );
    let (again, _, same) = run("production-xyz");
    assert_eq!(same, first);
    assert!(again.contains("up to date"), "{again}");
    let (_, _, changed) = run("staging-xyz");
    assert_ne!(changed, first, "a new value rebuilds");
    let argv = fs::read_to_string(&trace).expect("the trace");
    assert!(argv.contains("--build-arg NODE_ENV "), "{argv}");
    for value in [
        "production-xyz",
        "staging-xyz",
        "tok-production-xyz",
        "TOKEN",
    ] {
        assert!(!argv.contains(value), "{value} in an argv:\n{argv}");
    }
    assert!(
        !output.contains("production-xyz") && !output.contains("tok-"),
        "{output}"
    );
}

/// Links in and as a context, on the real engine (issue 35, 1-3), and a
/// Dockerfile whose last instruction ends in a continuation (15): web's
/// `.dockerignore` is a link out of its context (docker reads through it),
/// its `Dockerfile` a link inside it, `api`
/// is itself a link to `services/api`, whose secret the root
/// `.dockerignore` names by that real path.
#[test]
fn links_reach_the_engine_as_the_rack_reads_them_and_labels_survive_a_final_continuation() {
    let Some(stack) = Stack::start() else { return };
    let app = tempfile::tempdir().expect("app");
    for (path, text) in [
        (".dockerignore", "services/api/secret.txt\n"),
        ("common/dockerignore", ".env\n"),
        ("web/docker/web.Dockerfile", "FROM scratch\nCOPY . /app\n"),
        ("web/.env", "TOKEN=secret\n"),
        ("web/app.txt", "app\n"),
        (
            "services/api/Dockerfile",
            "FROM scratch\nCOPY app.txt \\\n  /app/ \\\n\n",
        ),
        ("services/api/secret.txt", "secret\n"),
        ("services/api/app.txt", "api\n"),
        (FILE, "web:\n  build: ./web\napi:\n  build: ./api\n"),
    ] {
        let p = app.path().join(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        fs::write(p, text).expect("write");
    }
    let link =
        |to: &str, at: &str| std::os::unix::fs::symlink(to, app.path().join(at)).expect("link");
    link("../common/dockerignore", "web/.dockerignore");
    link("docker/web.Dockerfile", "web/Dockerfile");
    link("services/api", "api");
    let repo = format!("{}/links", stack.host());
    let out = ok(&stack.run(
        app.path(),
        &[
            "--app",
            "links",
            "--gitsha",
            "l1",
            "--repo",
            &repo,
            "--tag",
            "{service}",
        ],
    ));
    // The classic builder's client reads web's .dockerignore through its
    // link; BuildKit's transfer does not follow it and sends `.env`: the
    // image is what the same docker builds from the app itself, and the
    // digest covers `.env` either way.
    let mut web = vec![
        "app/.dockerignore",
        "app/Dockerfile",
        "app/app.txt",
        "app/docker/web.Dockerfile",
    ];
    if buildkit_mode() {
        web.insert(1, "app/.env");
    }
    assert_eq!(image_files(&format!("{repo}:web")), web, "{out}");
    assert_eq!(
        image_files(&format!("{repo}:api")),
        ["app/app.txt"],
        "{out}"
    );
    let labels = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            &format!("{repo}:api"),
        ])
        .output()
        .expect("docker inspect");
    let labels = String::from_utf8_lossy(&labels.stdout);
    assert!(
        labels.contains("\"com.convox.off-cluster.digest\":\"blake3:"),
        "{labels}"
    );
    // Tagged by the content digest: a change to web/.env builds web again
    // (BuildKit sends it), and only web.
    let by_digest = |sha: &str| {
        fs::write(
            app.path().join(FILE),
            "web:\n  build: ./web\napi:\n  build: ./api\n",
        )
        .expect("reset");
        let args = [
            "--app",
            "links",
            "--gitsha",
            sha,
            "--repo",
            &repo,
            "--tag",
            "{service}-{hash}",
        ];
        summary_states(&ok(&stack.run(app.path(), &args)))
    };
    by_digest("l2");
    fs::write(app.path().join("web/.env"), "TOKEN=other\n").expect("change");
    let again = by_digest("l3");
    let state = |svc: &str| again.iter().find(|(n, _)| n == svc).map(|(_, s)| s.clone());
    assert_eq!(state("web").as_deref(), Some("built"), "{again:?}");
    assert_eq!(state("api").as_deref(), Some("up to date"), "{again:?}");
}

/// A v3 rack of amd64 nodes (`node_type t3.large`) whose app builds on
/// arm64 (`convox apps params`: `BuildArch arm64`), on the engine's BuildKit
/// with arm64 under QEMU: the registry holds linux/arm64, and its RUN step
/// ran on that CPU.
#[test]
fn the_apps_build_arch_puts_its_platform_in_the_registry() {
    if !buildkit_mode() {
        return; // the classic builder refuses a foreign platform (tested above)
    }
    let Some(stack) = Stack::start() else { return };
    let Some(arm64) = arm64_busybox() else { return };
    let Some(_qemu) = Aarch64Emulation::start() else {
        return;
    };
    let host = stack.host();
    let app = tempfile::tempdir().expect("app");
    two_arch_context(app.path(), &arm64, "RUN uname -m > /arch\n");
    fs::write(
        app.path().join("convox.yml"),
        "services:\n  web:\n    build: .\n",
    )
    .expect("file");
    let bin = tempfile::tempdir().expect("bin");
    fs::write(
        bin.path().join("convox"),
        "#!/bin/sh\ncase \"$1 $2\" in\n  'apps params') printf 'NAME         VALUE\\nBuildArch    arm64\\n' ;;\n  'rack params') printf 'node_type                      t3.large\\n' ;;\n  *) exit 1 ;;\nesac\n",
    )
    .expect("convox");
    common::make_executable(&bin.path().join("convox"));
    let mut c = Command::new(BIN);
    c.current_dir(app.path()).args([
        "--app",
        "barch",
        "--gitsha",
        "b1",
        "--repo",
        &format!("{host}/barch"),
        "--rack",
        "prod",
        "-f",
        "convox.yml",
    ]);
    convox_first_on_path(&stack, &mut c, bin.path());
    let out = ok(&c.output().expect("run"));
    assert!(
        out.contains("linux/arm64 (app parameter BuildArch)"),
        "{out}"
    );
    let written = fs::read_to_string(app.path().join("convox.yml")).expect("file");
    let tag = tag_in(&written, &format!("{host}/barch"));
    assert_eq!(
        served_platform(stack.registry_port, "barch", &tag).as_deref(),
        Some("linux/arm64")
    );
    assert_arch(
        &stack,
        &format!("{host}/barch:{tag}"),
        "linux/arm64",
        "aarch64",
    );
}

/// A kept image in a plain-HTTP registry is asked with a `HEAD` for its
/// digest; the platforms it offers are read once and remembered under that
/// digest in the user's cache directory, so the next run reads them there
/// (shown here by a remembered answer, changed by hand, that the warning
/// then names) with no process for it.
#[test]
fn a_kept_images_platforms_are_remembered_by_its_digest() {
    let Some(stack) = Stack::start() else { return };
    let host = stack.host();
    push_base(&stack, &format!("{host}/kept:1"), "kept");
    let app = tempfile::tempdir().expect("app");
    fs::write(
        app.path().join("Dockerfile"),
        "FROM scratch\nCOPY Dockerfile /d\n",
    )
    .expect("Dockerfile");
    let compose = format!(
        "version: \"2\"\nservices:\n  web:\n    build: .\n  redis:\n    image: {host}/kept:1\n"
    );
    let repo = format!("{host}/keptapp");
    let run = |sha: &str| {
        fs::write(app.path().join(FILE), &compose).expect("compose");
        ok(&stack.run(
            app.path(),
            &["--app", "keptapp", "--gitsha", sha, "--repo", &repo, "-v"],
        ))
    };
    let first = run("k1");
    assert!(
        !first.contains(&format!(
            "manifest inspect --verbose --insecure {host}/kept:1"
        )),
        "{first}"
    );
    assert!(!first.contains("warning: service `redis`"), "{first}");
    let cache = stack
        .dir
        .path()
        .join("cache/convox-build-off-cluster/kept-platforms");
    let files: Vec<PathBuf> = fs::read_dir(&cache)
        .expect("the cache")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        fs::read_to_string(&files[0]).expect("file"),
        "linux/amd64\n"
    );
    fs::write(&files[0], "linux/s390x\n").expect("change the remembered answer");
    let second = run("k2");
    assert!(
        second.contains(&format!(
            "keeps image {host}/kept:1, which offers linux/s390x and not linux/amd64"
        )),
        "{second}"
    );
}

/// A registry process killed and waited for when dropped.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The requests a registry's log (level info) shows as answered:
/// `METHOD URI`, in order.
fn registry_requests(log: &Path) -> Vec<String> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, key: &str| {
        let rest = line.split(&format!("{key}=")).nth(1)?;
        let value = match rest.strip_prefix('"') {
            Some(q) => q.split('"').next()?,
            None => rest.split_whitespace().next()?,
        };
        Some(value.to_string())
    };
    text.lines()
        .filter(|l| l.contains("response completed"))
        .filter_map(|l| {
            Some(format!(
                "{} {}",
                field(l, "http.request.method")?,
                field(l, "http.request.uri")?
            ))
        })
        .collect()
}

/// A kept image on an HTTPS registry, asked as Docker Hub is asked: the
/// real registry (distribution), over TLS, under a name of its own
/// (`registry.e2e.test`: reached through a CONNECT proxy, trusted through
/// `SSL_CERT_FILE`) and on the storage the image was pushed to. Its HEAD
/// gives the digest the push made; the platforms are read once by that
/// digest, and the next run costs it a HEAD and no GET (its request log).
#[test]
fn a_kept_image_on_an_https_registry_costs_a_head_once_its_digest_is_known() {
    let Some(stack) = Stack::start() else { return };
    let host = stack.host();
    push_base(&stack, &format!("{host}/kept:1"), "kept");
    let d = stack.dir.path();
    let cert = common::test_cert(&["registry.e2e.test"]);
    fs::write(d.join("tls.crt"), &cert.cert_pem).expect("cert");
    fs::write(d.join("tls.key"), &cert.key_pem).expect("key");
    let port = free_port();
    let config = d.join("tls-registry.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n",
            d.join("registry-data").display(),
            d.join("tls.crt").display(),
            d.join("tls.key").display()
        ),
    )
    .expect("registry config");
    let log = d.join("tls-registry.log");
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).expect("log"))
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start docker-registry");
    // A TLS server answers a plain request too (400): it is listening.
    wait_ready(&mut child, port, "/v2/", &log);
    let _serving = Serving(child);
    let asked = common::Asked::default();
    let proxy = common::connect_proxy(([127, 0, 0, 1], port).into(), asked.clone());

    let app = tempfile::tempdir().expect("app");
    fs::write(
        app.path().join("Dockerfile"),
        "FROM scratch\nCOPY Dockerfile /d\n",
    )
    .expect("Dockerfile");
    let compose = "version: \"2\"\nservices:\n  web:\n    build: .\n  redis:\n    image: registry.e2e.test/kept:1\n";
    let repo = format!("{host}/keptapp");
    let run = |sha: &str| {
        fs::write(app.path().join(FILE), compose).expect("compose");
        let mut c = Command::new(BIN);
        c.current_dir(app.path())
            .args(["--app", "keptapp", "--gitsha", sha, "--repo", &repo, "-v"]);
        stack.env(&mut c);
        c.env("HTTPS_PROXY", &proxy)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("SSL_CERT_FILE", cert.ca_file.path());
        ok(&c.output().expect("run binary"))
    };
    let pushed = registry_digest(stack.registry_port, "kept", "1").expect("the pushed digest");

    let first = run("h1");
    assert!(
        !first.contains("manifest inspect --verbose registry.e2e.test"),
        "{first}"
    );
    assert!(
        !first.contains("service `redis`"),
        "no warning, no note: {first}"
    );
    // The image's config blob too: it is one image, not an index.
    let config_blob = registry_requests(&log).get(2).cloned().unwrap_or_default();
    assert!(
        config_blob.starts_with("GET /v2/kept/blobs/sha256:"),
        "{config_blob}"
    );
    assert_eq!(
        registry_requests(&log),
        [
            "HEAD /v2/kept/manifests/1".to_string(),
            format!("GET /v2/kept/manifests/{pushed}"),
            config_blob,
        ]
    );
    let remembered = d.join(format!(
        "cache/convox-build-off-cluster/kept-platforms/{}",
        pushed.replace(':', "-")
    ));
    assert_eq!(
        fs::read_to_string(&remembered).expect("remembered by the pushed digest"),
        "linux/amd64\n"
    );
    assert!(asked
        .lock()
        .expect("log")
        .iter()
        .all(|c| c == "CONNECT registry.e2e.test:443"));

    let before = registry_requests(&log).len();
    let second = run("h2");
    assert!(!second.contains("service `redis`"), "{second}");
    assert_eq!(
        registry_requests(&log)[before..],
        ["HEAD /v2/kept/manifests/1".to_string()]
    );
}
