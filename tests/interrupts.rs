//! SIGINT and SIGTERM while builds run: every child process group stops,
//! the compose file is untouched, no temporary file is left, and the exit
//! status is 130 or 143.

mod common;

use common::{fixture, gone, local, wait_until, Fakes};
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn interrupt_during_build(signal: libc::c_int, expected_code: i32) {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let file = dir.path().join("docker-compose.convox.yml");
    let before = fs::read(&file).expect("fixture");
    let mut child = fakes
        .command(dir.path())
        .args([
            "--app",
            "demo",
            "--gitsha",
            "abc",
            "--repo",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo",
        ])
        .env("FAKE_SLEEP", "docker build")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let grandchild_file = fakes.dir.path().join("grandchild.pid");
    wait_until("the fake docker build to start", || {
        read_pid(&grandchild_file).is_some()
    });
    let fake = read_pid(&fakes.dir.path().join("child.pid")).expect("child pid");
    let sleeper = read_pid(&grandchild_file).expect("grandchild pid");
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: sends a signal to the process we started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let mut status = None;
    wait_until("the program to exit", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(expected_code),
        "{stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    wait_until("the fake docker and its child to be stopped", || {
        gone(fake) && gone(sleeper)
    });
    assert_eq!(fs::read(&file).expect("file"), before);
    let names: Vec<String> = fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temporary files: {names:?}");
}

#[test]
fn sigterm_stops_every_child_and_exits_143() {
    interrupt_during_build(libc::SIGTERM, 143);
}

#[test]
fn sigint_stops_every_child_and_exits_130() {
    interrupt_during_build(libc::SIGINT, 130);
}

/// `--timeout`: a push that hangs (the fake docker push sleeps) stops the
/// run when the limit passes: exit 1, a message naming what was running,
/// every child stopped, the file untouched.
#[test]
fn a_timeout_stops_a_hanging_push_and_names_it() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    let file = dir.path().join("docker-compose.convox.yml");
    let before = fs::read(&file).expect("fixture");
    let started = Instant::now();
    let out = fakes
        .command(dir.path())
        .args([
            "--app",
            "demo",
            "--gitsha",
            "abc",
            "--repo",
            local("LOCAL/demo"),
            "--jobs",
            "1",
            "--timeout",
            "3s",
        ])
        .env("FAKE_SLEEP", "docker push")
        .stdout(Stdio::null())
        .output()
        .expect("run");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: timed out after 3s while pushing web")
            && stderr.contains("the compose file is left as it was"),
        "{stderr}"
    );
    assert!(
        took >= Duration::from_secs(3),
        "not before the limit: {took:?}"
    );
    let fake = read_pid(&fakes.dir.path().join("child.pid")).expect("child pid");
    let sleeper = read_pid(&fakes.dir.path().join("grandchild.pid")).expect("grandchild pid");
    wait_until("the fake docker push and its child to be stopped", || {
        gone(fake) && gone(sleeper)
    });
    assert_eq!(fs::read(&file).expect("file"), before);
}
