//! The questions a run asks before it builds: only those whose answers it
//! uses (docker's, by a fake `docker` that records them), and the registry's
//! in as few requests as the registry API allows (a plain-HTTP registry
//! stood in for by a server in this test that records every request).

mod common;

use common::{fixture, text, Fakes};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const REMOTE: &str = "Name:          NAME\nDriver:        remote\nLast Activity: 2026-12-01 17:38:59 +0000 UTC\n\nNodes:\nName:      NAME0\nEndpoint:  tcp://10.1.2.3:1234\nStatus:    running\nBuildkit:  v0.12.5\nPlatforms: linux/amd64";
const ENGINES: &str = "Name:   default\nDriver: docker\n\nNodes:\nName:      default\nEndpoint:  default\nStatus:    running\nBuildkit:  v0.12.5\nPlatforms: linux/amd64";

/// Why, the arguments added, the environment, the questions expected.
type Case<'a> = (
    &'a str,
    &'a [&'a str],
    Vec<(&'a str, &'a str)>,
    &'a [&'a str],
);

#[test]
fn only_the_questions_a_run_uses_are_asked_of_docker() {
    let dir = fixture("demo");
    let base = [
        "--app",
        "demo",
        "--gitsha",
        "abc123",
        "--repo",
        "127.0.0.1:9/demo",
        "-o",
        "-",
    ];
    let cases: [Case; 5] = [
        (
            "a named builder that pushes itself, buildx 0.10 or later by its inspect: nothing else",
            &["--builder", "far"],
            vec![("FAKE_BUILDX_INSPECT", REMOTE)],
            &["docker buildx inspect far"],
        ),
        (
            "the engine's builder: the engine's version, and buildx's (its inspect has no Last Activity)",
            &[],
            vec![
                ("FAKE_BUILDX_INSPECT", ENGINES),
                ("FAKE_VERSIONS", "28.2.2|28.2.2"),
                ("FAKE_BUILDX_VERSION", "github.com/docker/buildx v0.36.1 abc"),
            ],
            &["docker buildx inspect", "docker buildx version", "docker version"],
        ),
        (
            "DOCKER_BUILDKIT=0 sets the builder aside: the engine builds, so its version is asked",
            &[],
            vec![
                ("FAKE_BUILDX_INSPECT", REMOTE),
                ("BUILDX_BUILDER", "far"),
                ("DOCKER_BUILDKIT", "0"),
            ],
            &["docker buildx inspect far", "docker version"],
        ),
        (
            "no builder named: the engine's version beside the inspect, though the current builder pushes itself",
            &[],
            vec![("FAKE_BUILDX_INSPECT", REMOTE), ("FAKE_VERSIONS", "28.2.2|28.2.2")],
            &["docker buildx inspect", "docker version"],
        ),
        (
            "no buildx at all: its version tells",
            &[],
            vec![("FAKE_VERSIONS", "28.2.2|28.2.2")],
            &["docker buildx inspect", "docker buildx version", "docker version"],
        ),
    ];
    for (why, extra, env, asked) in cases {
        let fakes = Fakes::new(&["docker"]);
        let mut args = base.to_vec();
        args.extend(extra);
        let out = fakes.run(dir.path(), &args, &env);
        assert!(out.status.success(), "{why}: {}", text(&out).1);
        let mut probes: Vec<String> = fakes
            .probes()
            .into_iter()
            .map(|p| p.split(" --format").next().unwrap_or_default().to_string())
            .collect();
        probes.sort();
        assert_eq!(probes, asked, "{why}");
    }
}

/// A plain-HTTP registry that records each request (`METHOD PATH`) and
/// answers: a tag list in pages of `page` tags (`Link` to the next), or
/// `status` for every list; HEAD of a listed tag 200 with a digest, else
/// 404. Stops when dropped.
struct Registry {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Registry {
    fn start(tags: Vec<String>, page: usize, status: u16) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                answer(conn, &tags, page, status, &s);
            }
        });
        Registry { port, seen, stop }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(conn: TcpStream, tags: &[String], page: usize, status: u16, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_or(true, |n| n == 0) || line == "\r\n" {
            break;
        }
    }
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if let Ok(mut s) = seen.lock() {
        s.push(format!("{method} {path}"));
    }
    let response = if let Some(rest) = path.strip_prefix("/v2/demo/tags/list") {
        if status != 200 {
            format!("HTTP/1.1 {status} No\r\nContent-Length: 0\r\n\r\n")
        } else {
            let from = rest
                .strip_prefix("?last=")
                .and_then(|last| tags.iter().position(|t| t == last))
                .map_or(0, |i| i + 1);
            let these = &tags[from.min(tags.len())..(from + page).min(tags.len())];
            let body = serde_json::json!({"name": "demo", "tags": these}).to_string();
            let link = match these.last() {
                Some(last) if from + page < tags.len() => {
                    format!("Link: </v2/demo/tags/list?last={last}>; rel=\"next\"\r\n")
                }
                _ => String::new(),
            };
            // Chunked, as a Go registry sends a body it did not measure.
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{link}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
        }
    } else if let Some(tag) = path.rsplit_once("/manifests/").map(|(_, t)| t) {
        if status == 401 {
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_string()
        } else if tags.iter().any(|t| t == tag) {
            format!("HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:{:0>64}\r\nContent-Length: 2\r\n\r\n", tag.len())
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
        }
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
    };
    let mut conn = reader.into_inner();
    let _ = conn.write_all(response.as_bytes());
}

/// The references a dry run would ask about.
fn references(dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let fakes = Fakes::new(&["docker"]);
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let out = fakes.run(dir, &dry, &[]);
    text(&out)
        .0
        .lines()
        // The questions, not the kept images' or the read-backs after the
        // pushes (each with its platforms in a comment).
        .take_while(|l| !l.starts_with("# before the rewrite"))
        .filter(|l| l.starts_with("docker manifest inspect") && !l.contains("   # "))
        .filter_map(|l| l.split_whitespace().last().map(String::from))
        .collect()
}

#[test]
fn a_plain_http_repository_is_asked_once_for_all_its_tags() {
    let dir = fixture("demo");
    let probe = Registry::start(Vec::new(), 1, 200);
    let repo = format!("127.0.0.1:{}/demo", probe.port);
    let args = [
        "--app", "demo", "--gitsha", "abc123", "--repo", &repo, "-o", "-",
    ];
    let refs = references(dir.path(), &args);
    assert!(refs.len() >= 2, "{refs:?}");
    drop(probe);
    let tags: Vec<String> = refs
        .iter()
        .map(|r| r.rsplit_once(':').map_or(r.clone(), |(_, t)| t.to_string()))
        .collect();
    // Other tags around ours, in pages of 2: every page is followed.
    let mut listed = vec!["older-1".to_string(), "older-2".to_string()];
    listed.extend(tags.iter().cloned());
    listed.push("newer".into());

    // A run against this registry, with these arguments added (and -o
    // replaced when given): the fake docker's calls and the output.
    let against = |reg: &Registry, extra: &[&str]| {
        let repo = format!("127.0.0.1:{}/demo", reg.port);
        let mut a: Vec<&str> = args.to_vec();
        a[5] = &repo;
        if let Some(i) = extra.iter().position(|x| *x == "-o") {
            a.truncate(6);
            a.extend(&extra[i..]);
            a.extend(&extra[..i]);
        } else {
            a.extend(extra);
        }
        let fakes = Fakes::new(&["docker"]);
        let out = fakes.run(dir.path(), &a, &[]);
        assert!(out.status.success(), "{a:?}: {}", text(&out).1);
        (fakes, out)
    };
    let started = |fakes: &Fakes, prefix: &str| {
        let lines = fakes.call_lines();
        lines.iter().filter(|c| c.starts_with(prefix)).count()
    };
    let pages = listed.len().div_ceil(2);

    // Everything there: the pages of the list, no HEAD, no process per tag.
    let reg = Registry::start(listed.clone(), 2, 200);
    let (fakes, out) = against(&reg, &[]);
    let stderr = text(&out).1;
    let summary = stderr.rsplit("done:").next().unwrap_or_default();
    assert_eq!(
        summary.matches("up to date").count(),
        refs.len(),
        "{stderr}"
    );
    let seen = reg.seen();
    assert_eq!(seen.len(), pages, "{seen:?}");
    assert!(
        seen.iter().all(|s| s.starts_with("GET /v2/demo/tags/list")),
        "{seen:?}"
    );
    // No process per tag: the one call is the kept image's question (its
    // platforms).
    assert_eq!(
        fakes.call_lines(),
        ["docker manifest inspect --verbose convox/redis"],
        "{:?}",
        fakes.calls()
    );

    // --json wants each image's digest, which a list does not give: a HEAD
    // per tag, and the digests in the report.
    let written = dir.path().join("out.yml");
    let written = written.to_string_lossy();
    let (_, out) = against(&reg, &["--json", "-o", &written]);
    let seen = reg.seen()[pages..].to_vec();
    assert_eq!(seen.len(), refs.len(), "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.starts_with("HEAD /v2/demo/manifests/")),
        "{seen:?}"
    );
    let report: serde_json::Value = serde_json::from_str(&text(&out).0).expect("json");
    let digests = report.to_string().matches("\"digest\":\"sha256:").count();
    assert!(digests >= refs.len(), "{report:#}");
    drop(reg);

    // One tag missing from the list: that build runs, the others do not.
    let mut fewer = listed.clone();
    fewer.retain(|t| t != &tags[0]);
    let reg = Registry::start(fewer, 100, 200);
    let (fakes, _) = against(&reg, &[]);
    assert_eq!(
        started(&fakes, "docker build"),
        1,
        "{:?}",
        fakes.call_lines()
    );
    drop(reg);

    // A 404 for the list: no repository, so no tag: everything is built.
    // A list that needs a login: not plain, so each tag is asked again
    // (here by `docker manifest inspect`, as the HEAD needs the login too).
    for (status, asked) in [(404, false), (401, true)] {
        let reg = Registry::start(listed.clone(), 100, status);
        let (fakes, _) = against(&reg, &[]);
        // Asked before the pushes (after them, each build is read back).
        let lines = fakes.call_lines();
        let first_push = lines
            .iter()
            .position(|l| l.starts_with("docker push"))
            .unwrap_or(lines.len());
        let inspected = lines[..first_push]
            .iter()
            .filter(|l| l.starts_with("docker manifest inspect") && !l.ends_with(" convox/redis"))
            .count();
        assert_eq!(inspected > 0, asked, "{status}: {lines:?}");
        let heads = reg.seen().iter().filter(|s| s.starts_with("HEAD")).count();
        assert_eq!(heads > 0, asked, "{status}: {:?}", reg.seen());
    }
}
