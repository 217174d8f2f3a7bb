//! Command tests for a warm run that stays flat as the app grows: the
//! registry is asked about every tag at once, in a pool sized for latency,
//! and a run that finds every tag starts no build.

mod common;

use common::{local, Fakes};
use std::fs;

/// 24 services, each its own build: their 24 tag checks run at the same
/// time (the fake's barrier lets a check pass only once 24 have started),
/// and with every tag in the registry nothing is built or pushed.
#[test]
fn every_tag_check_of_a_large_app_runs_at_once_and_a_warm_run_builds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut compose = String::from("version: \"2\"\nservices:\n");
    for i in 0..24 {
        let ctx = dir.path().join(format!("s{i}"));
        fs::create_dir(&ctx).unwrap();
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM scratch\nCOPY f /f{i}\n"),
        )
        .unwrap();
        fs::write(ctx.join("f"), format!("{i}")).unwrap();
        compose.push_str(&format!("  s{i}:\n    build: ./s{i}\n"));
    }
    fs::write(dir.path().join("docker-compose.yml"), &compose).unwrap();
    let tags: Vec<String> = (0..24).map(|i| format!("temp_big_s{i}_abc")).collect();
    let fakes = Fakes::new(&["docker"]);
    let out = fakes
        .command(dir.path())
        .args([
            "--app",
            "big",
            "--gitsha",
            "abc",
            "--repo",
            local("LOCAL/big"),
            "-f",
            "docker-compose.yml",
        ])
        .args(["--tag", "temp_{app}_{service}_{gitsha}", "-o", "-"])
        .env("FAKE_BARRIER", "24")
        .env("FAKE_BARRIER_ON", "manifest inspect")
        .env("FAKE_EXISTING", tags.join(" "))
        .output()
        .expect("run");
    let stderr = common::ok(&out);
    let lines = fakes.call_lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("manifest inspect"))
            .count(),
        24,
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("docker build") || l.starts_with("docker push")),
        "{lines:#?}"
    );
    assert_eq!(
        stderr.matches("up to date: the registry has it").count(),
        24,
        "{stderr}"
    );
}
