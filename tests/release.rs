//! Runs where users already are: what `scripts/release` made (the static
//! binaries, SHA256SUMS), `install.sh` in a root holding only busybox (an
//! x86_64 one, and an arm64 one under QEMU), and the composite action run
//! as GitHub's runner runs it: its `run:` steps with `GITHUB_*` and
//! `RUNNER_*` set, no cargo on PATH, the release served from a loopback
//! HTTP server.
//!
//! The release comes from OFFCLUSTER_RELEASE_DIR (scripts/test makes it
//! with scripts/release); without it these tests skip, saying why.

mod common;

use common::{arm64_busybox, skip_or_fail, Aarch64Emulation};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const X86: &str = "convox-build-off-cluster-x86_64-unknown-linux-musl.tar.gz";
const ARM: &str = "convox-build-off-cluster-aarch64-unknown-linux-musl.tar.gz";
const DRY_RUN: [&str; 9] = [
    "--dry-run",
    "-f",
    "fixtures/demo/docker-compose.convox.yml",
    "--app",
    "demo",
    "--gitsha",
    "abc123",
    "--repo",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo",
];

fn release_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("OFFCLUSTER_RELEASE_DIR").map(PathBuf::from);
    match dir.filter(|d| d.join("SHA256SUMS").is_file() && d.join(X86).is_file()) {
        Some(d) => Some(d),
        None => {
            skip_or_fail(
                "release",
                "no release: OFFCLUSTER_RELEASE_DIR (scripts/test makes it with scripts/release)",
            );
            None
        }
    }
}

fn root_user() -> bool {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    if !root {
        skip_or_fail("release", "chroot needs root");
    }
    root
}

/// A loopback HTTP server of a folder's files, counting the requests.
struct Served {
    port: u16,
    requests: Arc<AtomicUsize>,
}

fn serve(dir: &Path) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let (count, dir) = (requests.clone(), dir.to_path_buf());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // The headers, up to the blank line.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            count.fetch_add(1, Ordering::SeqCst);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let file = dir.join(path.trim_start_matches('/'));
            let mut out = &stream;
            let _ = match fs::read(&file).ok().filter(|_| !path.contains("..")) {
                Some(body) => out
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| out.write_all(&body)),
                None => out.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    Served { port, requests }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn each_archive_holds_one_static_binary_at_its_top_and_the_sums_match() {
    let Some(dist) = release_dir() else { return };
    let sums = fs::read_to_string(dist.join("SHA256SUMS")).expect("sums");
    for asset in [X86, ARM] {
        let line = sums
            .lines()
            .find(|l| l.ends_with(&format!("  {asset}")))
            .unwrap_or_else(|| panic!("{asset} in SHA256SUMS:\n{sums}"));
        let check = Command::new("sh")
            .arg("-c")
            .arg(format!("echo '{line}' | sha256sum -c -"))
            .current_dir(&dist)
            .output()
            .expect("sha256sum");
        assert!(check.status.success(), "{}", text(&check).1);
        let listing = Command::new("tar")
            .arg("-tzf")
            .arg(dist.join(asset))
            .output()
            .expect("tar");
        assert_eq!(text(&listing).0, "convox-build-off-cluster\n", "{asset}");
        let tmp = tempfile::tempdir().expect("tmp");
        let x = Command::new("tar")
            .arg("-xzf")
            .arg(dist.join(asset))
            .arg("-C")
            .arg(tmp.path())
            .status()
            .expect("tar");
        assert!(x.success());
        let file = Command::new("file")
            .arg(tmp.path().join("convox-build-off-cluster"))
            .output();
        if let Ok(file) = file {
            let said = text(&file).0;
            assert!(
                said.contains("statically linked") || said.contains("static-pie"),
                "{said}"
            );
        }
    }
}

/// A root holding only busybox (its applets), the fixture, and install.sh.
fn busybox_root(busybox: &Path) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("root");
    for d in ["bin", "tmp", "fixtures"] {
        fs::create_dir_all(root.path().join(d)).expect("dir");
    }
    fs::copy(busybox, root.path().join("bin/busybox")).expect("busybox");
    fs::copy(project().join("install.sh"), root.path().join("install.sh")).expect("install.sh");
    common::copy_dir(
        &project().join("fixtures/demo"),
        &root.path().join("fixtures/demo"),
    );
    let install = Command::new(host("chroot"))
        .arg(root.path())
        .args(["/bin/busybox", "--install", "-s", "/bin"])
        .output()
        .expect("chroot");
    assert!(install.status.success(), "{}", text(&install).1);
    root
}

/// A program of this machine, by its absolute path (the commands here run
/// with another PATH).
fn host(program: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Run `args` in `root` with only busybox's PATH and the release's URL;
/// `setarch` (`i686`) runs it as that CPU.
fn in_root(root: &Path, setarch: Option<&str>, url: &str, args: &[&str]) -> Output {
    let mut c = match setarch {
        Some(arch) => {
            let mut c = Command::new(host("setarch"));
            c.arg(arch).arg(host("chroot"));
            c
        }
        None => Command::new(host("chroot")),
    };
    c.arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/bin")
        .env("HOME", "/tmp")
        .env("CONVOX_OFF_CLUSTER_DOWNLOAD_URL", url)
        .output()
        .expect("chroot")
}

/// The README's dry run in a root holding only the binary and the fixture.
fn dry_run_alone(binary: &Path) -> Output {
    let root = tempfile::tempdir().expect("empty root");
    fs::copy(binary, root.path().join("convox-build-off-cluster")).expect("binary");
    common::copy_dir(
        &project().join("fixtures/demo"),
        &root.path().join("fixtures/demo"),
    );
    Command::new(host("chroot"))
        .arg(root.path())
        .arg("/convox-build-off-cluster")
        .args(DRY_RUN)
        .env_clear()
        .output()
        .expect("chroot")
}

const INSTALL: [&str; 6] = [
    "/bin/sh",
    "/install.sh",
    "--version",
    "v0.0.0",
    "--to",
    "/opt/bin",
];

#[test]
fn install_sh_in_a_busybox_root_installs_the_x86_64_binary_which_runs_the_dry_run_there() {
    let Some(dist) = release_dir() else { return };
    if !root_user() {
        return;
    }
    let served = serve(&dist);
    let url = format!("http://127.0.0.1:{}/", served.port);
    let root = busybox_root(Path::new("/bin/busybox"));
    assert!(!root.path().join("bin/curl").exists());
    let out = in_root(root.path(), None, &url, &INSTALL);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("x86_64-unknown-linux-musl"), "{stdout}");
    let ran = dry_run_alone(&root.path().join("opt/bin/convox-build-off-cluster"));
    let (dry, err) = text(&ran);
    assert!(ran.status.success(), "{err}");
    assert!(dry.starts_with("# dry run"), "{dry}");
    // As the development binary prints it.
    let here = Command::new(common::BIN)
        .args(DRY_RUN)
        .current_dir(project())
        .output()
        .expect("dry run");
    assert_eq!(dry, text(&here).0);
}

#[test]
fn install_sh_refuses_a_tampered_archive_and_an_unknown_cpu_and_installs_nothing() {
    let Some(dist) = release_dir() else { return };
    if !root_user() {
        return;
    }
    let tampered = tempfile::tempdir().expect("tampered");
    for f in [X86, "SHA256SUMS"] {
        fs::copy(dist.join(f), tampered.path().join(f)).expect("copy");
    }
    let mut bytes = fs::read(tampered.path().join(X86)).expect("archive");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(tampered.path().join(X86), bytes).expect("tamper");
    let served = serve(tampered.path());
    let url = format!("http://127.0.0.1:{}/", served.port);
    let root = busybox_root(Path::new("/bin/busybox"));
    let out = in_root(root.path(), None, &url, &INSTALL);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("checksum failed"), "{stderr}");
    assert!(!root
        .path()
        .join("opt/bin/convox-build-off-cluster")
        .exists());
    // An unknown CPU, named.
    if common::on_path("setarch") {
        let out = in_root(root.path(), Some("i686"), &url, &INSTALL);
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(stderr.contains("no release for this CPU: i686"), "{stderr}");
        assert!(!root.path().join("opt/bin").exists());
    }
    // A missing asset, named.
    fs::remove_file(tampered.path().join(X86)).expect("rm");
    let out = in_root(root.path(), None, &url, &INSTALL);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("cannot download"), "{}", text(&out).1);
}

#[test]
fn install_sh_under_an_arm64_busybox_installs_the_aarch64_binary_whose_dry_run_is_the_same() {
    let Some(dist) = release_dir() else { return };
    if !root_user() {
        return;
    }
    let Some(arm64) = arm64_busybox() else { return };
    let Some(_qemu) = Aarch64Emulation::start() else {
        return;
    };
    let served = serve(&dist);
    let url = format!("http://127.0.0.1:{}/", served.port);
    let root = busybox_root(&arm64);
    let out = in_root(root.path(), None, &url, &INSTALL);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("aarch64-unknown-linux-musl"), "{stdout}");
    let bin = root.path().join("opt/bin/convox-build-off-cluster");
    let said = Command::new("file")
        .arg(&bin)
        .output()
        .map(|o| text(&o).0)
        .unwrap_or_default();
    assert!(said.is_empty() || said.contains("aarch64"), "{said}");
    let ran = dry_run_alone(&bin);
    let (arm_dry, err) = text(&ran);
    assert!(ran.status.success(), "{err}");
    assert!(arm_dry.starts_with("# dry run"), "{arm_dry}");
    let x86 = busybox_root(Path::new("/bin/busybox"));
    assert!(in_root(x86.path(), None, &url, &INSTALL).status.success());
    let ran = dry_run_alone(&x86.path().join("opt/bin/convox-build-off-cluster"));
    assert_eq!(arm_dry, text(&ran).0);
}

/// The action's steps (`runs.steps`): each step's `env:` and `run:`.
fn action_steps() -> Vec<(String, BTreeMap<String, String>, String)> {
    let text = fs::read_to_string(project().join("action.yml")).expect("action.yml");
    let doc = offcluster::read::yaml::Doc::parse(&text).expect("yaml");
    let root = doc.root.expect("root");
    let runs = doc.get(root, "runs").expect("runs").value;
    assert_eq!(
        doc.get(runs, "using").and_then(|u| doc.scalar(u.value)),
        Some("composite")
    );
    let steps = doc.get(runs, "steps").expect("steps").value;
    let mut out = Vec::new();
    for &step in doc.items(steps).expect("a list") {
        assert!(doc.get(step, "uses").is_none(), "run: steps only");
        let id = doc
            .get(step, "id")
            .and_then(|i| doc.scalar(i.value))
            .unwrap_or("")
            .to_string();
        let run = doc
            .get(step, "run")
            .and_then(|r| doc.scalar(r.value))
            .expect("run")
            .to_string();
        assert!(!run.contains("${{"), "no expression inside run: {run}");
        let mut env = BTreeMap::new();
        if let Some(e) = doc.get(step, "env") {
            for entry in doc.entries(e.value).expect("env map") {
                let k = doc.scalar(entry.key).expect("key").to_string();
                let v = doc.scalar(entry.value).unwrap_or("").to_string();
                env.insert(k, v);
            }
        }
        out.push((id, env, run));
    }
    out
}

/// Run the action's steps as the runner does: each `${{ … }}` of an `env:`
/// value evaluated (github.*, inputs.*, steps.*.outputs.*), the step's own
/// GITHUB_OUTPUT file, bash, the workspace as the working directory.
fn run_action(
    workspace: &Path,
    runner: &Path,
    url: &str,
    inputs: &[(&str, &str)],
) -> (Output, BTreeMap<String, String>) {
    let mut outputs: BTreeMap<String, String> = BTreeMap::new();
    let github: BTreeMap<&str, String> = [
        ("github.action_ref", "v0.0.0".to_string()),
        ("github.action_path", project().display().to_string()),
        (
            "github.action_repository",
            "acme/convox-build-off-cluster".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let mut last = None;
    for (id, env, run) in action_steps() {
        let out_file = runner.join(format!("output.{id}"));
        fs::write(&out_file, "").expect("output file");
        let mut c = Command::new("bash");
        c.arg("-e")
            .arg("-c")
            .arg(&run)
            .current_dir(workspace)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", runner)
            .env("GITHUB_OUTPUT", &out_file)
            .env("GITHUB_WORKSPACE", workspace)
            .env("GITHUB_SHA", "abc123")
            .env("GITHUB_REF_NAME", "main")
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .env("RUNNER_TEMP", runner.join("temp"))
            .env("RUNNER_TOOL_CACHE", runner.join("toolcache"))
            .env("CONVOX_OFF_CLUSTER_DOWNLOAD_URL", url);
        for (k, v) in &env {
            let value = match v
                .trim()
                .strip_prefix("${{")
                .and_then(|r| r.strip_suffix("}}"))
            {
                Some(expr) => {
                    let expr = expr.trim();
                    if let Some(name) = expr.strip_prefix("inputs.") {
                        inputs
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map_or("", |(_, v)| *v)
                            .to_string()
                    } else if let Some(rest) = expr.strip_prefix("steps.") {
                        outputs.get(rest).cloned().unwrap_or_default()
                    } else {
                        github
                            .get(expr)
                            .cloned()
                            .unwrap_or_else(|| panic!("unknown expression {expr}"))
                    }
                }
                None => v.clone(),
            };
            c.env(k, value);
        }
        let out = c.output().expect("step");
        assert!(out.status.success(), "step {id}: {}", text(&out).1);
        for line in fs::read_to_string(&out_file).expect("outputs").lines() {
            if let Some((k, v)) = line.split_once('=') {
                outputs.insert(format!("{id}.outputs.{k}"), v.to_string());
            }
        }
        last = Some(out);
    }
    (last.expect("a step"), outputs)
}

#[test]
fn the_composite_action_installs_the_release_once_and_dry_runs_the_demo() {
    let Some(dist) = release_dir() else { return };
    let served = serve(&dist);
    let url = format!("http://127.0.0.1:{}/", served.port);
    assert!(!Path::new("/usr/bin/cargo").exists() && !Path::new("/bin/cargo").exists());
    let workspace = tempfile::tempdir().expect("workspace");
    common::copy_dir(&project().join("fixtures/demo"), workspace.path());
    let runner = tempfile::tempdir().expect("runner");
    fs::create_dir_all(runner.path().join("temp")).expect("temp");
    let inputs = [
        ("app", "demo"),
        ("repo", "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo"),
        ("dry_run", "true"),
    ];
    let (out, outputs) = run_action(workspace.path(), runner.path(), &url, &inputs);
    let (stdout, stderr) = text(&out);
    assert!(stdout.starts_with("# dry run"), "{stdout}{stderr}");
    let bin = outputs.get("install.outputs.bin").expect("bin");
    assert!(
        bin.starts_with(
            &runner
                .path()
                .join("toolcache/convox-build-off-cluster/0.0.0/x86_64")
                .display()
                .to_string()
        ),
        "{bin}"
    );
    let downloads = served.requests.load(Ordering::SeqCst);
    assert_eq!(downloads, 2, "SHA256SUMS and the archive");
    // A second run on the same runner downloads nothing.
    let (out, _) = run_action(workspace.path(), runner.path(), &url, &inputs);
    assert!(text(&out).0.starts_with("# dry run"));
    assert_eq!(served.requests.load(Ordering::SeqCst), downloads);
}
