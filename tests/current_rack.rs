//! The rules of a current (v3) rack, read from convox/convox 3.24.9:
//! convox.yml's own interpolation (`pkg/manifest/helpers.go`), the release
//! through `convox builds import-image` (`pkg/cli/builds.go`), and the
//! app's `BuildArch` parameter. The real binary with fake `docker`, `aws`
//! and a fake v3 `convox` first on PATH.

mod common;

use common::{text, Fakes};
use std::fs;
use std::path::Path;

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop";

/// A v3 `convox`: `builds import-image` as FAKE_IMPORT says (`ok`, or
/// `old`: a rack before 3.24.6), `build` on a directory, `apps params`
/// with FAKE_BUILD_ARCH, `rack params` with FAKE_RACK_PARAMS. It records
/// its argv, stdin, the file it was given and the directory's names.
const CONVOX: &str = r#"#!/bin/bash
rec=convox; for a in "$@"; do rec+=$'\x1f'"$a"; done
printf '%s\n' "$rec" >> "$FAKE_DIR/argv.log"
case "$1 $2" in
  "builds import-image")
    if [[ "$FAKE_IMPORT" == old ]]; then
      echo "Creating build... OK, BOLD" ; echo "ERROR: convox builds import-image requires rack version 3.24.6 or later" >&2; exit 1
    fi
    prev=; for a in "$@"; do [[ "$prev" == -m ]] && cat "$a" > "$FAKE_DIR/import.yml"; prev=$a; done
    [[ " $* " == *" --src-creds-pass-stdin "* ]] && cat > "$FAKE_DIR/import.stdin"
    echo "Creating build... OK, BIMP"; echo "Build:   BIMP"; echo "Release: RIMPORTED" ;;
  "apps params")
    echo "NAME         VALUE"; [[ -n "$FAKE_BUILD_ARCH" ]] && echo "BuildArch    $FAKE_BUILD_ARCH"; echo "BuildCpu     500" ;;
  "rack params")
    printf '%s\n' "$FAKE_RACK_PARAMS" ;;
  build*)
    (shopt -s dotglob; cd "$2" && printf '%s\n' *) > "$FAKE_DIR/build.dir"
    cat "$2/convox.yml" > "$FAKE_DIR/build.yml" 2>/dev/null
    echo "Building..." >&2; echo "RBUILT" ;;
esac
"#;

fn fakes() -> Fakes {
    let f = Fakes::new(&["docker", "aws"]);
    let path = f.bin().join("convox");
    fs::write(&path, CONVOX).expect("fake convox");
    common::make_executable(&path);
    f
}

fn app(convox_yml: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("app");
    fs::write(d.path().join("convox.yml"), convox_yml).expect("file");
    fs::write(d.path().join("Dockerfile"), "FROM scratch\n").expect("Dockerfile");
    fs::write(d.path().join("app.env"), "OTHER=1\n").expect("env");
    d
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--app",
        "shop",
        "--gitsha",
        "a",
        "--repo",
        ECR,
        "-f",
        "convox.yml",
    ];
    a.extend_from_slice(extra);
    a
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

const WEB: &str = "services:\n  web:\n    build: .\n    port: 3000\n";

#[test]
fn a_v3_release_is_imported_with_the_password_on_stdin_and_the_file_as_convox_yml() {
    let f = fakes();
    let dir = app(WEB);
    let out = f.run(
        dir.path(),
        &args(&["--convox-build", "--json"]),
        &[("FAKE_IMPORT", "ok")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["release"], "RIMPORTED");
    assert_eq!(report["release_via"], "import-image");
    let call = f
        .call_lines()
        .into_iter()
        .find(|c| c.starts_with("convox builds import-image"))
        .expect("an import");
    let written = read(&dir.path().join("convox.yml"));
    let reference = written
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .expect("the rewritten image");
    assert!(
        call.starts_with(&format!(
            "convox builds import-image {reference} -a shop -m "
        )),
        "{call}"
    );
    assert!(
        call.ends_with("/convox.yml --src-creds-user AWS --src-creds-pass-stdin"),
        "{call}"
    );
    assert!(!call.contains(common::PASSWORD), "{call}");
    assert_eq!(
        read(&f.dir.path().join("import.stdin")).trim(),
        common::PASSWORD
    );
    assert_eq!(read(&f.dir.path().join("import.yml")), written);
    assert!(!f
        .call_lines()
        .iter()
        .any(|c| c.starts_with("convox build ")));
    assert!(!stderr.contains(common::PASSWORD));
}

#[test]
fn a_rack_before_3_24_6_gets_convox_build_of_a_file_named_convox_yml() {
    let f = fakes();
    let dir = app(WEB);
    let out = f.run(
        dir.path(),
        &args(&["--convox-build", "--json"]),
        &[("FAKE_IMPORT", "old")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no `builds import-image`"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["release"], "RBUILT");
    assert_eq!(report["release_via"], "build");
    assert_eq!(read(&f.dir.path().join("build.dir")), "convox.yml\n");
    assert_eq!(
        read(&f.dir.path().join("build.yml")),
        read(&dir.path().join("convox.yml"))
    );
}

#[test]
fn a_kept_image_with_braces_is_released_by_convox_build_which_interpolates() {
    let f = fakes();
    let dir = app("services:\n  web:\n    build: .\n  redis:\n    image: ${REDIS_IMAGE}\n");
    fs::write(dir.path().join("app.env"), "REDIS_IMAGE=convox/redis\n").expect("env");
    let out = f.run(
        dir.path(),
        &args(&["--convox-build", "--env-file", "app.env"]),
        &[("FAKE_IMPORT", "ok")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "RBUILT");
    assert!(!f.call_lines().iter().any(|c| c.contains("import-image")));
}

#[test]
fn the_apps_build_arch_decides_the_platform_over_the_racks_node_types() {
    let f = fakes();
    let dir = app(WEB);
    let out = f.run(
        dir.path(),
        &args(&["--rack", "acme/prod"]),
        &[
            ("FAKE_BUILD_ARCH", "arm64"),
            ("FAKE_RACK_PARAMS", "node_type t3.large"),
            ("DOCKER_BUILDKIT", "1"),
            ("FAKE_VERSIONS", "20.10.24|20.10.24|linux/amd64"),
        ],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let build = f
        .call_lines()
        .into_iter()
        .find(|c| c.starts_with("docker build"))
        .expect("a build");
    assert!(build.contains("--platform linux/arm64 "), "{build}");
    assert!(
        stderr.contains("linux/arm64 (app parameter BuildArch)"),
        "{stderr}"
    );
    assert!(f
        .call_lines()
        .iter()
        .any(|c| c == "convox apps params --app shop --rack acme/prod"));
    // Unset: the rack's node types decide.
    let dir = app(WEB);
    let out = f.run(
        dir.path(),
        &args(&["--rack", "acme/prod"]),
        &[("FAKE_RACK_PARAMS", "node_type t3.large")],
    );
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("linux/amd64 (the rack acme/prod)"),
        "{stderr}"
    );
}

/// Each case of the issue, as written there: `--env-file` without the
/// variable, which CI's environment has.
#[test]
fn convox_yml_is_interpolated_by_convoxs_rules_in_the_apps_environment() {
    let ci = [
        ("IMG", "ci-img"),
        ("API_IMAGE", "ci/api"),
        ("WORKER_IMG", "ci/worker"),
    ];
    let built = |image: &str| -> (bool, String, bool) {
        let f = fakes();
        let dir = app(&format!("services:\n  web:\n    image: {image}\n"));
        let out = f.run(
            dir.path(),
            &args(&["--env-file", "app.env", "--dry-run"]),
            &ci,
        );
        let (stdout, stderr) = text(&out);
        (
            out.status.success(),
            format!("{stdout}{stderr}"),
            stdout.contains("docker build"),
        )
    };
    for image in ["${IMG:-nginx}", "${API_IMAGE}", "${MISSING}"] {
        let (ok, shown, builds) = built(image);
        assert!(ok && builds, "{image}: the rack builds it: {shown}");
        assert!(
            shown.contains(&format!("`image: {image}` comes out empty")),
            "{image}: {shown}"
        );
        assert!(!shown.contains(":-IMAGE"), "{image}: {shown}");
    }
    let (ok, shown, builds) = built("$WORKER_IMG");
    assert!(!ok && !builds, "{shown}");
    assert!(shown.contains("write `${WORKER_IMG}`"), "{shown}");
    assert!(!shown.contains(":-"), "{shown}");
    // Set in the app's environment: kept.
    let f = fakes();
    let dir = app("services:\n  web:\n    image: ${API_IMAGE}\n");
    fs::write(dir.path().join("app.env"), "API_IMAGE=app/api\n").expect("env");
    let out = f.run(
        dir.path(),
        &args(&["--env-file", "app.env", "--dry-run"]),
        &ci,
    );
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && !stdout.contains("docker build"),
        "{stderr}"
    );
    // Neither source: this process's environment stands in, said once.
    let out = f.run(dir.path(), &args(&["--dry-run"]), &ci);
    let (stdout, stderr) = text(&out);
    assert!(!stdout.contains("docker build"), "{stdout}");
    assert!(
        stderr.contains(
            "this process's environment stands in for the app's when reading its ${…}: API_IMAGE"
        ),
        "{stderr}"
    );
}

#[test]
fn gen1_keeps_its_own_rules() {
    let f = fakes();
    let d = tempfile::tempdir().expect("app");
    fs::write(
        d.path().join("docker-compose.convox.yml"),
        "web:\n  image: $WORKER_IMG\n",
    )
    .expect("file");
    let out = f.run(
        d.path(),
        &["--app", "shop", "--gitsha", "a", "--repo", ECR, "--dry-run"],
        &[("WORKER_IMG", "ci/worker")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("docker build"), "{stdout}");
}
