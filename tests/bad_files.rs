//! Bad compose files (`fixtures/bad/`) and hostile but valid ones.
//!
//! A bad file gives exit status 1 and one message that names the file (with
//! line and column where the parser has them), the service where there is
//! one, and what to do; no panic, no process started, the file unchanged.
//! A hostile but valid file simply works.

mod common;

use common::{copy_dir, local, text, Fakes};
use std::fs;
use std::path::Path;

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo";

fn bad(case: &str, wants: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad"),
        dir.path(),
    );
    let file = format!("{case}.yml");
    let before = fs::read(dir.path().join(&file)).expect("fixture");
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = fakes
        .command(dir.path())
        .args([
            "--app", "demo", "--gitsha", "abc", "--repo", ECR, "-f", &file,
        ])
        .output()
        .expect("run");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
    assert!(stdout.is_empty(), "{case}: {stdout}");
    assert_eq!(
        stderr.matches("error:").count(),
        1,
        "{case}: one message: {stderr}"
    );
    assert!(
        stderr.starts_with(&format!("error: {file}")),
        "{case}: names the file: {stderr}"
    );
    for w in wants {
        assert!(stderr.contains(w), "{case}: wants {w:?} in: {stderr}");
    }
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert!(
        fakes.calls().is_empty(),
        "{case}: ran {:?}",
        fakes.call_lines()
    );
    assert_eq!(
        fs::read(dir.path().join(&file)).expect("file"),
        before,
        "{case}: file changed"
    );
}

macro_rules! bad_file {
    ($($test:ident: $case:literal => [$($want:literal),*];)*) => {$(
        #[test]
        fn $test() {
            bad($case, &[$($want),*]);
        }
    )*};
}

bad_file! {
    not_yaml: "not-yaml" => ["not-yaml.yml:3:10: invalid YAML", "unclosed bracket"];
    empty: "empty" => ["the file is empty", "should map service names"];
    top_level_list: "top-level-list" => ["top-level-list.yml:1:1:", "must be a mapping"];
    service_is_a_string: "service-is-string" => [":1:6:", "service `web`", "must be a mapping with `build:` or `image:`"];
    build_of_the_wrong_type: "build-wrong-type" => [":3:5:", "service `web`", "`build:` must be a path or a mapping"];
    context_does_not_exist: "missing-context" => [":1:1:", "service `web`", "does-not-exist is not a directory", "relative to the compose file"];
    dockerfile_does_not_exist: "missing-dockerfile" => ["service `web`", "Dockerfile.prod does not exist", "relative to the build context"];
    required_variable_unset: "required-variable-unset" => [":3:15:", "service `web`", "DOCKERFILE", "set DOCKERFILE to the Dockerfile to build"];
    duplicate_keys: "duplicate-keys" => [":4:3:", "duplicate key `command`", "first at line 3", "remove or rename"];
    invalid_utf8: "invalid-utf8" => [":3:15:", "not valid UTF-8", "save it as UTF-8"];
    tabs_for_indentation: "tabs" => [":2:", "tabs", "indent with spaces"];
    unknown_version: "unknown-version" => [":1:10:", "unknown compose `version: 4`", "supported are"];
    service_name_with_a_space: "service-name-space" => [":2:3:", "service `my web`: invalid name", "compose allows"];
    service_name_with_a_slash: "service-name-slash" => [":2:3:", "service `web/api`: invalid name"];
    service_name_with_a_colon: "service-name-colon" => [":2:3:", "service `web:api`: invalid name"];
    neither_build_nor_image: "neither-build-nor-image" => [":3:5:", "service `web` has neither", "docker compose needs one of them in a compose-spec file", "add one of them"];
    neither_in_version_3: "neither-build-nor-image-v3" => [":4:5:", "service `web` has neither", "docker compose needs one of them in a `version: \"3.8\"` file"];
    image_variable_unset: "image-variable-unset" => [":3:10:", "service `web`", "`image: ${WEB_IMAGE}` comes out empty", "`WEB_IMAGE` is not set", "Convox would then build this service on the cluster"];
    v1_x_key_without_a_dockerfile: "v1-x-key-without-dockerfile" => [":2:1:", "`x-common`", "Convox reads every top-level key", "build this one from the app root with Dockerfile, which does not exist", "web: &common"];
    v1_x_key_that_is_a_list: "v1-x-key-list" => [":1:10:", "`x-hosts`", "not a mapping, so Convox cannot load the file"];
    dockerignore_unterminated_class: "dockerignore-unterminated-class" => ["service `web`", "badignore/.dockerignore:3: docker refuses the pattern `[abc`", "not closed with `]`"];
    dockerignore_bare_bang: "dockerignore-bare-bang" => ["service `web`", "bangignore/.dockerignore:2: docker refuses the pattern `!`", "`!` alone"];
    dockerfile_given_twice: "dockerfile-twice" => [":2:15:", "service `web`", "dockerfile specified twice"];
}

/// Run on a file in a directory with a `ctx/` build context, fake docker
/// on PATH, the result on stdout.
fn works(yaml: &[u8]) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("ctx")).expect("ctx");
    fs::write(dir.path().join("ctx/Dockerfile"), "FROM scratch\n").expect("Dockerfile");
    fs::write(dir.path().join("c.yml"), yaml).expect("write");
    let fakes = Fakes::new(&["docker"]);
    let out = fakes
        .command(dir.path())
        .args([
            "--app",
            "a",
            "--gitsha",
            "s",
            "--repo",
            "reg.test/a",
            "-f",
            "c.yml",
            "-o",
            "-",
            "--tag",
            "temp_{app}_{service}_{gitsha}",
        ])
        .output()
        .expect("run");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        fs::read(dir.path().join("c.yml")).expect("file"),
        yaml,
        "input untouched"
    );
    (stdout, fakes.call_lines())
}

#[test]
fn a_dollar_as_the_files_last_byte_in_an_environment_value() {
    let src = "web:\n  build: ./ctx\n  environment:\n    - PRICE=5$";
    let (out, calls) = works(src.as_bytes());
    assert_eq!(
        out,
        "web:\n  image: reg.test/a:temp_a_web_s\n  environment:\n    - PRICE=5$"
    );
    let ran: Vec<&str> = calls.iter().filter_map(|c| c.split(' ').nth(1)).collect();
    // The question, the build, the push, the read-back of what was pushed.
    assert_eq!(ran, ["manifest", "build", "push", "manifest"], "{calls:?}");
}

#[test]
fn a_14_mb_file_with_very_long_lines() {
    // Version 2: top-level `x-` keys are not services there.
    let mut src = String::from("# big\nversion: \"2\"\nx-blob: &blob\n");
    let line = format!("  - \"{}\"\n", "y".repeat(1000));
    while src.len() < 14 * 1024 * 1024 {
        src.push_str(&line);
    }
    src.push_str(&format!("x-long: {}\n", "z".repeat(1024 * 1024)));
    src.push_str("services:\n  web:\n    build: ./ctx   # here\n    command: run\n");
    let (out, _) = works(src.as_bytes());
    assert_eq!(
        out.len(),
        src.len() - "build: ./ctx".len() + "image: reg.test/a:temp_a_web_s".len()
    );
    assert!(
        out.ends_with("  web:\n    image: reg.test/a:temp_a_web_s   # here\n    command: run\n")
    );
    assert!(out[..out.len() - 80] == src[..out.len() - 80]);
}

/// Flow collections nest up to 255 levels (saphyr-parser's limit, a u8);
/// block nesting has no limit of its own.
#[test]
fn deep_nesting() {
    let depth = 250;
    let mut src = format!(
        "version: \"2\"\nx-deep: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    src.push_str("x-block:\n");
    for i in 0..2000 {
        src.push_str(&format!("{}k{i}:\n", " ".repeat(i + 1)));
    }
    src.push_str(&format!("{}leaf: 1\n", " ".repeat(2001)));
    src.push_str("services:\n  web:\n    build: ./ctx\n");
    let (out, _) = works(src.as_bytes());
    assert!(
        out.ends_with("  web:\n    image: reg.test/a:temp_a_web_s\n"),
        "{}",
        &out[out.len() - 100..]
    );
}

#[test]
fn unusual_but_legal_keys_and_unicode() {
    let src = "\
%YAML 1.2
---
# ünïcødé ✓ 日本語 comment
version: '2.1'
x-odd:
  \"quoted key\": 1
  ? complex key
  : value
  !!str tagged: x
  ~: null key
  123: numeric
  \"\": empty
  'a: b': colon
services:
  web:
    build: ./ctx # 構築 ✓
    command: \"echo 'héllo wörld' ✓\"
    labels: {\"convox.ünï\": \"✓\"}
";
    let (out, _) = works(src.as_bytes());
    assert_eq!(
        out,
        src.replace("build: ./ctx #", "image: reg.test/a:temp_a_web_s #")
    );
}

/// A file of the context that cannot be read is an error naming the file and
/// the service, before any process runs. Run as an unprivileged user (root
/// reads everything), through `setpriv`.
#[test]
fn an_unreadable_file_in_the_context_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if !root || !setpriv.is_file() {
        eprintln!("SKIPPED: needs root and /usr/bin/setpriv to run the program as another user");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    fs::create_dir(d.join("app")).expect("app");
    fs::write(d.join("app/Dockerfile"), "FROM scratch\n").expect("Dockerfile");
    fs::write(d.join("app/secret.txt"), "x").expect("file");
    fs::write(d.join(FILE_V1), "web:\n  build: ./app\n").expect("compose");
    for p in [d.to_path_buf(), d.join("app")] {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for f in ["app/Dockerfile", FILE_V1] {
        fs::set_permissions(d.join(f), fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    fs::set_permissions(d.join("app/secret.txt"), fs::Permissions::from_mode(0o000))
        .expect("chmod");
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::BIN)
        .args([
            "--dry-run",
            "--app",
            "a",
            "--gitsha",
            "s",
            "--repo",
            local("LOCAL/a"),
        ])
        .current_dir(d)
        .output()
        .expect("run");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("service `web`: cannot read app/secret.txt: Permission denied"),
        "{stderr}"
    );
}

const FILE_V1: &str = "docker-compose.convox.yml";
