//! A remote engine and a real network's faults.
//!
//! Each test starts a second `dockerd` in a network namespace of its own
//! (`ip netns add`, a veth pair on a private /30, the engine on TCP at the
//! namespace's address, vfs storage, its own containerd), entered with
//! `nsenter --net=` (`ip netns exec` would hide the cgroup mounts dockerd
//! needs). The host engine's `docker0` is never touched: the second engine
//! has no bridge. Between that engine and a registry on 127.0.0.1 sits a
//! forwarder on the host end of the veth, which the test can make go silent
//! (holding what it has, as a partition does) and heal.
//!
//! The program runs here with `DOCKER_HOST=tcp://…`, so every build and push
//! happens on the remote engine. On the way out a test stops the engine, then
//! every process left in the namespace (the killed engine's containerd and
//! shims) by process id, deletes the namespace, and removes what it wrote.
//! Needs root; skipped with a message when a piece is missing, unless
//! E2E_REQUIRED=1.

mod common;

use common::{copy_dir, ok, on_path, BIN};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use std::{fs, thread};

/// One remote engine at a time (they share the address plan).
static TURN: Mutex<()> = Mutex::new(());

const PASS: u8 = 0;
const SILENT: u8 = 1;
/// Pass until a blob upload starts (a push), then go silent.
const SILENT_AT_UPLOAD: u8 = 2;

/// Skip (or, under E2E_REQUIRED=1, fail) when something is missing.
fn missing(what: &str) -> Option<Remote> {
    common::skip_or_fail("remote-engine test", what);
    None
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Poll until `f` holds; a generous bound so a hang fails instead of blocking.
fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP forwarder from `listen` to 127.0.0.1:`upstream` that can go silent.
struct Forwarder {
    port: u16,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    addr: String,
}

impl Forwarder {
    fn start(ip: &str, upstream: u16) -> Forwarder {
        let listener = TcpListener::bind((ip, 0)).expect("forwarder bind");
        let port = listener.local_addr().expect("addr").port();
        let mode = Arc::new(AtomicU8::new(PASS));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, st) = (mode.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for (from, to, upload_watch) in [
                    (client.try_clone(), server.try_clone(), true),
                    (server.try_clone(), client.try_clone(), false),
                ] {
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        continue;
                    };
                    let (m, st) = (m.clone(), st.clone());
                    thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if upload_watch
                                && m.load(Ordering::SeqCst) == SILENT_AT_UPLOAD
                                && buf[..n].windows(15).any(|w| w == b"/blobs/uploads/")
                            {
                                m.store(SILENT, Ordering::SeqCst);
                            }
                            // A partition: nothing passes, what was sent waits.
                            while m.load(Ordering::SeqCst) == SILENT && !st.load(Ordering::SeqCst) {
                                thread::sleep(Duration::from_millis(20));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Forwarder {
            port,
            mode,
            stop,
            addr: ip.to_string(),
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.mode.store(PASS, Ordering::SeqCst);
        let _ = TcpStream::connect((self.addr.as_str(), self.port));
    }
}

struct Remote {
    ns: String,
    host_ip: String,
    engine: String,
    dir: tempfile::TempDir,
    dockerd: Option<Child>,
    registry: Child,
    registry_port: u16,
    fwd: Option<Forwarder>,
    _turn: MutexGuard<'static, ()>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Remote {
    fn start() -> Option<Remote> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return missing("needs root for network namespaces");
        }
        for p in ["ip", "nsenter", "dockerd", "docker-registry", "docker"] {
            if !on_path(p) {
                return missing(&format!("`{p}` is not on PATH"));
            }
        }
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let id = std::process::id() % 250;
        let ns = format!("ocb{}", std::process::id());
        let (host_ip, engine_ip) = (format!("10.213.{id}.1"), format!("10.213.{id}.2"));
        let (vh, vn) = (format!("ocbh{id}"), format!("ocbn{id}"));
        let netns = format!("--net=/run/netns/{ns}");
        let steps: Vec<Vec<String>> = vec![
            vec!["ip".into(), "netns".into(), "add".into(), ns.clone()],
            vec![
                "ip", "link", "add", &vh, "type", "veth", "peer", "name", &vn,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            vec!["ip", "link", "set", &vn, "netns", &ns]
                .into_iter()
                .map(String::from)
                .collect(),
            vec![
                "ip".into(),
                "addr".into(),
                "add".into(),
                format!("{host_ip}/30"),
                "dev".into(),
                vh.clone(),
            ],
            vec!["ip", "link", "set", &vh, "up"]
                .into_iter()
                .map(String::from)
                .collect(),
            vec![
                "nsenter".into(),
                netns.clone(),
                "ip".into(),
                "addr".into(),
                "add".into(),
                format!("{engine_ip}/30"),
                "dev".into(),
                vn.clone(),
            ],
            vec!["nsenter", &netns, "ip", "link", "set", &vn, "up"]
                .into_iter()
                .map(String::from)
                .collect(),
            vec!["nsenter", &netns, "ip", "link", "set", "lo", "up"]
                .into_iter()
                .map(String::from)
                .collect(),
        ];
        for step in &steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            if !sh(&args) {
                let _ = sh(&["ip", "netns", "del", &ns]);
                let _ = sh(&["ip", "link", "del", &vh]);
                return missing(&format!(
                    "cannot set up the namespace: `{}` failed",
                    args.join(" ")
                ));
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        // The registry, and the forwarder the engine reaches it through.
        let registry_port = free_port();
        fs::write(
            d.join("registry.yml"),
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{registry_port}}}\n",
                d.join("registry-data").display()
            ),
        )
        .expect("registry config");
        let registry = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("registry.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry");
        let fwd = Forwarder::start(&host_ip, registry_port);
        fs::write(d.join("daemon.json"), "{}").expect("daemon.json");
        let engine_port = 2375;
        let log = fs::File::create(d.join("dockerd.log")).expect("log");
        let dockerd = Command::new("nsenter")
            .arg(&netns)
            .arg("dockerd")
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("-H")
            .arg(format!("tcp://{engine_ip}:{engine_port}"))
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .args([
                "--storage-driver",
                "vfs",
                "--bridge",
                "none",
                "--iptables=false",
            ])
            .args(["--ip-masq=false", "--ip-forward=false"])
            .arg("--insecure-registry")
            .arg(format!("{host_ip}:{}", fwd.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd");
        let remote = Remote {
            ns,
            host_ip,
            engine: format!("tcp://{engine_ip}:{engine_port}"),
            dir,
            dockerd: Some(dockerd),
            registry,
            registry_port,
            fwd: Some(fwd),
            _turn: turn,
        };
        let ready = {
            let end = Instant::now() + Duration::from_secs(60);
            loop {
                let ok = Command::new("docker")
                    .args([
                        "-H",
                        &remote.engine,
                        "version",
                        "--format",
                        "{{.Server.Version}}",
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok || Instant::now() > end {
                    break ok;
                }
                thread::sleep(Duration::from_millis(100));
            }
        };
        if !ready {
            let log = fs::read_to_string(remote.dir.path().join("dockerd.log")).unwrap_or_default();
            drop(remote);
            return missing(&format!("the second dockerd did not come up: {log}"));
        }
        Some(remote)
    }

    fn registry(&self) -> String {
        format!(
            "{}:{}",
            self.host_ip,
            self.fwd.as_ref().map_or(0, |f| f.port)
        )
    }

    fn fwd(&self) -> &Forwarder {
        self.fwd.as_ref().expect("forwarder")
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(cwd)
            .args(args)
            .env("DOCKER_HOST", &self.engine)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DRONE_COMMIT_SHA")
            .env_remove("DRONE_COMMIT_BRANCH")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command(cwd, args).output().expect("run")
    }

    /// The tags the registry holds, asked on its own port (not through the
    /// forwarder).
    fn tags(&self, repo: &str) -> Vec<String> {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.registry_port)) else {
            return Vec::new();
        };
        let _ = write!(s, "GET /v2/{repo}/tags/list HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        let json = body.split("\r\n\r\n").nth(1).unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        tags.sort();
        tags
    }

    fn kill_engine(&mut self) {
        if let Some(mut d) = self.dockerd.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    fn netns_pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(d) = &self.dockerd {
            if let Ok(pid) = i32::try_from(d.id()) {
                // SAFETY: a signal to the engine this test started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Some(d) = self.dockerd.as_mut() {
                    if d.try_wait().ok().flatten().is_some() {
                        break;
                    }
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill_engine();
        // What the engine left in its namespace (containerd, shims).
        for _ in 0..3 {
            let pids = self.netns_pids();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: a process in the namespace this test made.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            thread::sleep(Duration::from_millis(200));
        }
        self.fwd = None;
        let _ = self.registry.kill();
        let _ = self.registry.wait();
        let _ = sh(&["ip", "netns", "del", &self.ns]);
        // Mounts the engine made under its directories.
        let root = self.dir.path().display().to_string();
        if let Ok(mounts) = fs::read_to_string("/proc/self/mounts") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = sh(&["umount", "-l", p]);
            }
        }
    }
}

fn demo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("app");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo"),
        dir.path(),
    );
    dir
}

const FILE: &str = "docker-compose.convox.yml";

#[test]
fn a_build_and_push_on_a_remote_engine_builds_nothing_here() {
    let Some(remote) = Remote::start() else {
        return;
    };
    let app = demo();
    let repo = format!("{}/demo", remote.registry());
    let stderr = ok(&remote.run(
        app.path(),
        &["--app", "demo", "--gitsha", "r1", "--repo", &repo],
    ));
    assert!(
        !stderr.contains("cannot tell"),
        "the plain-HTTP registry is asked as such: {stderr}"
    );
    assert_eq!(remote.tags("demo").len(), 3, "web, worker, api");
    let written = fs::read_to_string(app.path().join(FILE)).expect("file");
    assert_eq!(
        written.matches(&format!("image: {repo}:")).count(),
        3,
        "{written}"
    );
    // The images of this run (labelled with its revision) are on the remote
    // engine, and none is on this one.
    let labelled = |host: Option<&str>| {
        let mut c = Command::new("docker");
        if let Some(h) = host {
            c.args(["-H", h]);
        }
        let out = c
            .args([
                "images",
                "-q",
                "--filter",
                "label=org.opencontainers.image.revision=r1",
            ])
            .output()
            .expect("docker images");
        let ids: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        ids.len()
    };
    assert_eq!(labelled(None), 0, "nothing was built on this engine");
    assert_eq!(
        labelled(Some(&remote.engine)),
        2,
        "two builds on the remote engine"
    );
    // A second run asks the registry and does nothing.
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/demo")
            .join(FILE),
        app.path().join(FILE),
    )
    .expect("reset");
    let out = remote.run(
        app.path(),
        &["--app", "demo", "--gitsha", "r2", "--repo", &repo, "--json"],
    );
    ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for s in report["services"].as_array().expect("services") {
        if s["name"] != "redis" {
            assert_eq!(s["action"], "up-to-date", "{s}");
        }
    }
}

#[test]
fn a_partition_during_a_push_times_out_and_a_rerun_after_it_heals_pushes_only_what_is_missing() {
    let Some(remote) = Remote::start() else {
        return;
    };
    let app = demo();
    let repo = format!("{}/demo", remote.registry());
    let original = fs::read(app.path().join(FILE)).expect("file");
    ok(&remote.run(
        app.path(),
        &["--app", "demo", "--gitsha", "p1", "--repo", &repo],
    ));
    assert_eq!(remote.tags("demo").len(), 3);
    // A change to api only; its push runs into a partition.
    fs::write(app.path().join(FILE), &original).expect("reset");
    fs::write(app.path().join("api/api.txt"), "changed\n").expect("change");
    remote.fwd().set(SILENT_AT_UPLOAD);
    let started = Instant::now();
    let out = remote.run(
        app.path(),
        &[
            "--app",
            "demo",
            "--gitsha",
            "p2",
            "--repo",
            &repo,
            "--timeout",
            "10s",
        ],
    );
    let took = started.elapsed();
    eprintln!("partition with --timeout 10s: exit after {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("timed out after 10s while pushing api"),
        "names the push: {stderr}"
    );
    assert!(
        took < Duration::from_secs(25),
        "within the limit and a few seconds: {took:?}"
    );
    assert_eq!(
        fs::read(app.path().join(FILE)).expect("file"),
        original,
        "untouched"
    );
    // The partition heals; the rerun builds and pushes api alone.
    remote.fwd().set(PASS);
    let out = remote.run(
        app.path(),
        &["--app", "demo", "--gitsha", "p3", "--repo", &repo, "--json"],
    );
    ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let action = |n: &str| {
        report["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == n))
            .map(|s| s["action"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(action("web"), "up-to-date");
    assert_eq!(action("worker"), "up-to-date");
    assert_eq!(action("api"), "built");
    assert_eq!(remote.tags("demo").len(), 4);
}

/// Processes whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn the_engine_killed_during_a_build_fails_the_run_at_once_and_leaves_nothing() {
    let Some(mut remote) = Remote::start() else {
        return;
    };
    let app = demo();
    // A context big enough that the build is still going when the engine dies.
    let mut big = fs::File::create(app.path().join("api/big.bin")).expect("big");
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..300 {
        big.write_all(&chunk).expect("write");
    }
    drop(big);
    let original = fs::read(app.path().join(FILE)).expect("file");
    let repo = format!("{}/demo", remote.registry());
    let mut child = remote
        .command(
            app.path(),
            &[
                "--app", "demo", "--gitsha", "k1", "--repo", &repo, "--jobs", "1",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        let building = line.contains("[api] building");
        seen.push(line);
        if building {
            break;
        }
    }
    remote.kill_engine();
    let killed = Instant::now();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    let took = killed.elapsed();
    eprintln!("engine killed during a build: exit {took:?} after the kill");
    let stderr = format!("{}\n{}", seen.join("\n"), rest.join("\n"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        took < Duration::from_secs(20),
        "fails at once, not after a hang: {took:?}"
    );
    assert!(stderr.contains("docker build"), "names the build: {stderr}");
    assert_eq!(
        fs::read(app.path().join(FILE)).expect("file"),
        original,
        "untouched"
    );
    let app_path = app.path().display().to_string();
    wait_until(
        "no process of the run left",
        Duration::from_secs(10),
        || processes_naming(&app_path).is_empty(),
    );
}
