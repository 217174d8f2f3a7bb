//! Hostile inputs, round 3: runs, files and messages. An output inside a
//! context, an edit saved while the builds run, a context whose name begins
//! with `-`, a question given up with a helper still running, stops after
//! the rewrite, and a byte-order mark in `--env-file`. The real binary with
//! fake `docker`, `aws` and `convox` first on PATH.

mod common;

use common::{app_with as app, gone, text, wait_until, Fakes};
use std::fs;
use std::path::Path;
use std::process::Stdio;

const REPO: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop";
const FILE: &str = "docker-compose.convox.yml";

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--app", "shop", "--gitsha", "a", "--repo", REPO];
    a.extend_from_slice(extra);
    a
}

/// 9: `-o built.yml` with `build: .`: said, naming the file and the service.
#[test]
fn an_output_inside_a_context_that_docker_sends_is_named_with_its_service() {
    let dir = app(&[
        ("Dockerfile", "FROM scratch\nCOPY . /app\n"),
        (FILE, "web:\n  build: .\n"),
    ]);
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = fakes.run(dir.path(), &args(&["-o", "built.yml", "--dry-run"]), &[]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "the output built.yml is inside the build context of web (.), and docker sends it"
        ),
        "{stderr}"
    );
    // Left out by the context's .dockerignore: nothing to say.
    fs::write(dir.path().join(".dockerignore"), "built.yml\n").expect("ignore");
    let out = fakes.run(dir.path(), &args(&["-o", "built.yml", "--dry-run"]), &[]);
    let (_, stderr) = text(&out);
    assert!(!stderr.contains("inside the build context"), "{stderr}");
    // In place, the compose file is not an output the next run reads.
    let out = fakes.run(dir.path(), &args(&["--dry-run"]), &[]);
    assert!(!text(&out).1.contains("inside the build context"));
}

/// 10: an edit saved while the builds run is kept; the rewrite goes beside.
#[test]
fn an_edit_saved_while_the_builds_run_is_kept_and_the_run_fails() {
    let dir = app(&[
        ("Dockerfile", "FROM scratch\n"),
        (FILE, "web:\n  build: .\n"),
    ]);
    let file = dir.path().join(FILE);
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = fakes.run(
        dir.path(),
        &args(&[]),
        &[
            ("FAKE_EDIT_FILE", &file.to_string_lossy()),
            ("FAKE_EDIT_TEXT", "worker:\n  image: busybox\n"),
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("changed while the builds ran"), "{stderr}");
    assert_eq!(
        fs::read_to_string(&file).expect("file"),
        "web:\n  build: .\nworker:\n  image: busybox\n"
    );
    let beside = dir.path().join(format!("{FILE}.rewritten"));
    assert!(stderr.contains(&format!("{FILE}.rewritten")), "{stderr}");
    let rewritten = fs::read_to_string(beside).expect("beside");
    assert!(rewritten.starts_with("web:\n  image: "), "{rewritten}");
    assert!(!stderr.contains("done:"), "{stderr}");
}

/// 11: a context named `-web` reaches docker as `./-web`.
#[test]
fn a_context_whose_name_begins_with_a_dash_is_never_an_option() {
    let dir = app(&[
        ("-web/Dockerfile", "FROM scratch\n"),
        (FILE, "web:\n  build: ./-web\n"),
    ]);
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = fakes.run(dir.path(), &args(&["--dry-run"]), &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let shown = format!("{stdout}{stderr}");
    assert!(shown.contains("cat ./-web/Dockerfile"), "{shown}");
    assert!(!shown.contains(" -web"), "{shown}");
    let out = fakes.run(dir.path(), &args(&[]), &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let build = fakes
        .calls()
        .into_iter()
        .find(|c| c.get(1).is_some_and(|a| a == "build"))
        .expect("a build");
    assert_eq!(build.last().map(String::as_str), Some("./-web"));
}

/// 12: a question given up at its time limit takes its whole process group
/// along: what it started (a credential helper) does not outlive the run.
#[test]
fn a_question_given_up_stops_what_it_started() {
    let dir = app(&[
        ("Dockerfile", "FROM scratch\n"),
        (FILE, "web:\n  build: .\nredis:\n  image: convox/redis\n"),
    ]);
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = fakes.run(
        dir.path(),
        &args(&[]),
        &[("FAKE_SLEEP", "manifest inspect --verbose convox/redis")],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let helper: i32 = fs::read_to_string(fakes.dir.path().join("grandchild.pid"))
        .expect("the question started its helper")
        .trim()
        .parse()
        .expect("pid");
    wait_until("the helper to be stopped", || gone(helper));
}

/// 13: SIGINT during `--convox-build`'s `convox build`, after the rewrite:
/// said as it is, and the release step's directory removed.
#[test]
fn an_interrupt_after_the_rewrite_says_the_file_was_written_and_leaves_nothing() {
    let dir = app(&[
        ("Dockerfile", "FROM scratch\n"),
        (FILE, "web:\n  build: .\n"),
    ]);
    let tmp = tempfile::tempdir().expect("tmp");
    let fakes = Fakes::new(&["docker", "aws", "convox"]);
    let child = fakes
        .command(dir.path())
        .args(args(&["--convox-build"]))
        .env("FAKE_SLEEP", "convox build")
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let grandchild = fakes.dir.path().join("grandchild.pid");
    wait_until("convox build to start", || grandchild.exists());
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: a signal to the process we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("wait");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("the rewritten file was already written"),
        "{stderr}"
    );
    assert!(!stderr.contains("left as it was"), "{stderr}");
    assert!(fs::read_to_string(dir.path().join(FILE))
        .expect("file")
        .contains("image:"));
    let left: Vec<_> = fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left: {left:?}");
}

/// 13: `$GITHUB_OUTPUT` naming a FIFO nobody reads is refused, not waited
/// on, and the message does not say the file was left alone.
#[test]
fn a_github_output_that_is_a_fifo_is_refused_at_once() {
    let dir = app(&[
        ("Dockerfile", "FROM scratch\n"),
        (FILE, "web:\n  build: .\n"),
    ]);
    let fifo = dir.path().join("out.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = fakes.run(
        dir.path(),
        &args(&["--timeout", "60"]),
        &[("GITHUB_OUTPUT", &fifo.to_string_lossy())],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is a FIFO (named pipe), not a regular file"),
        "{stderr}"
    );
    assert!(!stderr.contains("left as it was"), "{stderr}");
}

/// 14: a byte-order mark in `--env-file` is not part of the first name.
#[test]
fn a_byte_order_mark_in_the_env_file_does_not_rename_the_first_variable() {
    let dir = app(&[
        ("Dockerfile", "FROM scratch\nARG TOKEN\n"),
        (FILE, "web:\n  build: .\n"),
        ("app.env", "\u{feff}TOKEN=secret\r\nOTHER=x\r\n"),
    ]);
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = fakes.run(dir.path(), &args(&["--env-file", "app.env"]), &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let build = fakes
        .call_lines()
        .into_iter()
        .find(|c| c.starts_with("docker build"))
        .expect("a build");
    assert!(build.contains("--build-arg TOKEN "), "{build}");
    assert!(!build.contains("secret"), "{build}");
    assert!(!Path::new(&dir.path().join("x")).exists());
}
