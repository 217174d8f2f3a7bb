//! Command tests for current engines (Docker 23.0.1 and later, with buildx):
//! the engine's own BuildKit keeps every stage the target needs in the
//! registry cache. The real binary, with a fake `docker` first on PATH.

mod common;

use common::{fixture, local, Fakes};

#[test]
fn the_engines_buildkit_keeps_every_stage_in_the_registry_cache_with_inline_cache() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
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
        ])
        .args(["--tag", "temp_{app}_{service}_{gitsha}"])
        .env("FAKE_VERSIONS", "26.1.5|26.1.5")
        .env(
            "FAKE_BUILDX_VERSION",
            "github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3",
        )
        .env(
            "FAKE_BUILDX_INSPECT",
            "Name: NAME\nDriver: docker\n\nNodes:\nName: default\nBuildkit: v0.13.2\n",
        )
        .output()
        .expect("run");
    let stderr = common::ok(&out);
    let lines = fakes.all_call_lines();
    let cache = local("LOCAL/demo-cache:demo_api").to_string();
    let stage = format!("{cache}-base");
    let api = lines
        .iter()
        .position(|l| {
            l.starts_with("docker build") && l.contains(local("-t LOCAL/demo:temp_demo_api_abc"))
        })
        .unwrap_or_else(|| panic!("api's build in {lines:#?}\n{stderr}"));
    // The image's build names the last image and every stage's, and writes
    // inline cache; nothing is pulled for it (BuildKit reads the registry).
    for part in [
        format!(" --cache-from {cache} "),
        format!(" --cache-from {stage} "),
        " --build-arg BUILDKIT_INLINE_CACHE=1 ".to_string(),
        " --provenance=false ".to_string(),
    ] {
        assert!(lines[api].contains(&part), "{part} not in {}", lines[api]);
    }
    assert!(
        !lines.iter().any(|l| l.starts_with("docker pull")),
        "{lines:#?}"
    );
    // Before the image's build: the stage, built with --target from the
    // same cache and inline cache, then pushed (its steps from the
    // registry; the image's build then takes them from the engine's own
    // records: docs/design.md, "Layers from the registry").
    let built = lines
        .iter()
        .position(|l| l.starts_with("docker build") && l.contains(&format!("-t {stage} ")))
        .unwrap_or_else(|| panic!("the stage's build in {lines:#?}"));
    let stage_build = &lines[built];
    for part in [
        " --target base ",
        &format!(" --cache-from {cache} "),
        &format!(" --cache-from {stage} "),
        " --build-arg BUILDKIT_INLINE_CACHE=1 ",
    ] {
        assert!(stage_build.contains(part), "{part} not in {stage_build}");
    }
    let pushed = lines
        .iter()
        .position(|l| l == &format!("docker push {stage}"))
        .expect("the stage's push");
    assert!(built < pushed && pushed < api, "{lines:#?}");
}
