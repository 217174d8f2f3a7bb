//! Hostile inputs, as a user or a CI set-up could give them: FIFOs and
//! devices as inputs and outputs, long names, another user's file, values
//! that must never be echoed, references docker would refuse, odd YAML. The
//! real binary with fake `docker` and `aws` first on PATH; each run is
//! bounded by `timeout`, so a hang fails the test instead of stalling it.

mod common;

use common::{fixture, local, text, Fakes, BIN};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Output;

const FILE: &str = "docker-compose.convox.yml";
const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo";

/// Run the binary in `dir` under `timeout 60` (exit 124 when it hangs).
fn run(fakes: &Fakes, dir: &Path, args: &[&str]) -> Output {
    let out = fakes
        .command_for("/usr/bin/timeout", dir)
        .arg("60")
        .arg(BIN)
        .args(args)
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(124), "it hung: {args:?}");
    out
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--app", "demo", "--gitsha", "abc123", "--repo", ECR];
    v.extend_from_slice(extra);
    v
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// One error, exit 1, nothing run.
fn refused(fakes: &Fakes, out: &Output, wants: &[&str]) {
    let stderr = text(out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    for w in wants {
        assert!(stderr.contains(w), "wants {w:?} in {stderr}");
    }
    assert!(fakes.calls().is_empty(), "ran {:?}", fakes.call_lines());
}

#[test]
fn output_onto_dev_null_writes_into_it_and_leaves_it_a_device() {
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let out = run(&fakes, dir.path(), &args(&["-o", "/dev/null"]));
    assert!(out.status.success(), "{}", text(&out).1);
    let m = fs::symlink_metadata("/dev/null").expect("/dev/null");
    assert!(m.file_type().is_char_device(), "/dev/null was replaced");
}

#[test]
fn output_onto_a_fifo_is_written_into_and_a_socket_refused_before_any_build() {
    let dir = fixture("demo");
    let fifo = dir.path().join("out.fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read_to_string(&fifo).expect("read the FIFO"))
    };
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(&fakes, dir.path(), &args(&["-o", "out.fifo"]));
    assert!(out.status.success(), "{}", text(&out).1);
    let written = reader.join().expect("reader");
    assert!(written.contains("image: 123456789012.dkr.ecr"), "{written}");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    let sock = dir.path().join("out.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("socket");
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(&fakes, dir.path(), &args(&["-o", "out.sock"]));
    refused(&fakes, &out, &["out.sock: it is a socket"]);
}

#[test]
fn fifos_and_devices_as_inputs_are_refused_saying_what_they_are_even_in_a_dry_run() {
    let dir = fixture("demo");
    mkfifo(&dir.path().join("fifo.yml"));
    for (file, says) in [
        (
            "fifo.yml",
            "fifo.yml is a FIFO (named pipe), not a regular file",
        ),
        (
            "/dev/zero",
            "/dev/zero is a character device, not a regular file",
        ),
    ] {
        let fakes = Fakes::new(&["docker", "aws"]);
        let out = run(&fakes, dir.path(), &args(&["--dry-run", "-f", file]));
        refused(&fakes, &out, &[says]);
    }
    // A Dockerfile that is a FIFO, /dev/zero, a directory, or too large.
    let yml = dir.path().join(FILE);
    let original = fs::read_to_string(&yml).unwrap();
    mkfifo(&dir.path().join("web/Dockerfile.fifo"));
    fs::create_dir(dir.path().join("web/Dockerfile.dir")).unwrap();
    fs::write(dir.path().join("web/Dockerfile.big"), vec![b'#'; 17 << 20]).unwrap();
    for (dockerfile, says) in [
        (
            "Dockerfile.fifo",
            "is a FIFO (named pipe), not a regular file",
        ),
        ("/dev/zero", "/dev/zero is a character device"),
        (
            "Dockerfile.dir",
            "Dockerfile.dir is a directory, not a regular file",
        ),
        ("Dockerfile.big", "Dockerfile.big is over 16 MiB"),
    ] {
        let text = original.replace(
            "  build: ./web              # the app\n",
            &format!("  build:\n    context: ./web\n    dockerfile: {dockerfile}\n"),
        );
        fs::write(&yml, text).unwrap();
        let fakes = Fakes::new(&["docker", "aws"]);
        let out = run(&fakes, dir.path(), &args(&["--dry-run"]));
        refused(&fakes, &out, &["service `web`", says]);
        assert!(
            !text_of(&out).contains("does not exist"),
            "{}",
            text_of(&out)
        );
    }
}

fn text_of(out: &Output) -> String {
    text(out).1
}

#[test]
fn a_fifo_as_git_head_does_not_hang_a_dry_run() {
    let dir = fixture("demo");
    fs::create_dir(dir.path().join(".git")).unwrap();
    mkfifo(&dir.path().join(".git/HEAD"));
    let fakes = Fakes::new(&["docker", "aws"]);
    // No --gitsha: the commit is looked for in .git.
    let out = run(
        &fakes,
        dir.path(),
        &["--app", "demo", "--repo", ECR, "--dry-run"],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(fakes.calls().is_empty());
}

#[test]
fn a_long_app_name_keeps_the_hash_in_every_tag_and_services_apart() {
    let app = "a".repeat(110);
    let dir = fixture("demo");
    let dry = |dir: &Path| {
        let fakes = Fakes::new(&["docker", "aws"]);
        let out = run(
            &fakes,
            dir,
            &["--app", &app, "--gitsha", "abc", "--repo", ECR, "--dry-run"],
        );
        common::ok(&out);
        let stdout = text(&out).0;
        let tags: Vec<String> = stdout
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(&format!("{ECR}:")))
            .map(String::from)
            .collect();
        (stdout, tags)
    };
    let (stdout, tags) = dry(dir.path());
    let tag_of = |tags: &[String], service: &str| -> String {
        tags.iter()
            .find(|t| t.contains(&format!("_{service}_")) || t.contains(&format!("-{service}_")))
            .cloned()
            .unwrap_or_else(|| panic!("no tag of {service} in {tags:?}"))
    };
    assert!(!tags.is_empty(), "{stdout}");
    for t in &tags {
        assert!(t.len() <= 128, "{t}");
    }
    let web = tag_of(&tags, "web");
    let api = tag_of(&tags, "api");
    assert_ne!(web, api);
    // The hash is whole: a change of web's content changes web's tag.
    fs::write(dir.path().join("web/hello.txt"), "changed\n").unwrap();
    let (_, after) = dry(dir.path());
    let web_after = tag_of(&after, "web");
    assert_ne!(web, web_after, "the tag follows the content");
    assert_eq!(web.len(), web_after.len());
    assert_eq!(api, tag_of(&after, "api"));
}

#[test]
fn the_rewrite_as_root_keeps_the_files_owner_and_group() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: only root may give a file another owner");
        return;
    }
    let fakes = Fakes::new(&["docker", "aws"]);
    let dir = fixture("demo");
    let yml = dir.path().join(FILE);
    std::os::unix::fs::chown(&yml, Some(4321), Some(4322)).unwrap();
    let out = run(&fakes, dir.path(), &args(&[]));
    assert!(out.status.success(), "{}", text(&out).1);
    let m = fs::metadata(&yml).unwrap();
    assert!(fs::read_to_string(&yml)
        .unwrap()
        .contains("image: 123456789012"));
    assert_eq!((m.uid(), m.gid()), (4321, 4322));
}

#[test]
fn a_bad_build_arg_is_named_and_its_value_never_shown() {
    let dir = fixture("demo");
    for (given, env) in [
        (vec!["--build-arg", "NPM TOKEN=s3cr3t-v4lue"], None),
        (vec!["--build-arg", "=s3cr3t-v4lue"], None),
        (vec![], Some("A=1,B C=s3cr3t-v4lue")),
    ] {
        let fakes = Fakes::new(&["docker", "aws"]);
        let mut c = fakes.command(dir.path());
        c.args(args(&["--dry-run"])).args(&given);
        if let Some(v) = env {
            c.env("PLUGIN_BUILD_ARGS", v);
        }
        let out = c.output().expect("run");
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--build-arg #1") || stderr.contains("build_args setting's entry #2"),
            "{stderr}"
        );
        assert!(!format!("{stdout}{stderr}").contains("s3cr3t"), "{stderr}");
    }
}

#[test]
fn references_docker_would_refuse_are_usage_errors_naming_the_option() {
    let dir = fixture("demo");
    for (extra, says) in [
        (
            vec!["--repo", "http://h:5000/demo"],
            "--repo `http://h:5000/demo` has a scheme",
        ),
        (
            vec!["--repo", "https://h/demo"],
            "--repo `https://h/demo` has a scheme",
        ),
        (
            vec!["--repo", "h:99999/demo"],
            "--repo: `h:99999`: the port",
        ),
        (
            vec!["--repo", ECR, "--registry-host", "a b"],
            "--registry-host: `a b` holds",
        ),
        (
            vec!["--repo", ECR, "--registry-host", "http://h"],
            "--registry-host: `http://h` has a scheme",
        ),
        (
            vec!["--repo", ECR, "--registry-host", "h:99999"],
            "--registry-host: `h:99999`: the port",
        ),
        (vec!["--repo", ECR, "--app", ""], "--app is empty"),
    ] {
        let fakes = Fakes::new(&["docker", "aws"]);
        let mut a = extra.clone();
        if !a.contains(&"--app") {
            a.extend(["--app", "demo"]);
        }
        a.extend(["--gitsha", "abc", "--dry-run"]);
        let out = run(&fakes, dir.path(), &a);
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(2), "{a:?}: {stderr}");
        assert!(stderr.contains(says), "{a:?}: {stderr}");
        assert!(fakes.calls().is_empty());
    }
}

#[test]
fn an_explicit_yaml_key_is_rewritten_like_any_other() {
    let dir = fixture("demo");
    let yml = dir.path().join(FILE);
    let src = fs::read_to_string(&yml).unwrap().replace(
        "  build: ./web              # the app\n",
        "  ? build\n  : ./web\n",
    );
    fs::write(&yml, &src).unwrap();
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(
        &fakes,
        dir.path(),
        &args(&["--tag", "t_{service}", "--dry-run", "-o", "-"]),
    );
    common::ok(&out);
    let stdout = text(&out).0;
    assert!(
        stdout.contains(&format!("web:\n  image: {ECR}:t_web\n  command: bin/web\n")),
        "{stdout}"
    );
}

#[test]
fn nul_bytes_utf16_and_env_file_nuls_name_their_cause() {
    let dir = fixture("demo");
    let utf16: Vec<u8> = "web:\n  build: ./web\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut bom = vec![0xFF, 0xFE];
    bom.extend(&utf16);
    fs::write(dir.path().join("nul.yml"), "web:\n  build: ./web\0\n").unwrap();
    fs::write(dir.path().join("u16.yml"), &utf16).unwrap();
    fs::write(dir.path().join("bom.yml"), &bom).unwrap();
    for (file, says) in [
        ("nul.yml", "nul.yml:2:15: a NUL byte"),
        (
            "u16.yml",
            "u16.yml: the file is UTF-16 (a NUL in every other byte",
        ),
        (
            "bom.yml",
            "bom.yml: the file is UTF-16 (it starts with a UTF-16 byte-order mark)",
        ),
    ] {
        let fakes = Fakes::new(&["docker", "aws"]);
        let out = run(&fakes, dir.path(), &args(&["--dry-run", "-f", file]));
        refused(&fakes, &out, &[says]);
        assert!(!text_of(&out).contains("tab"), "{}", text_of(&out));
    }
    fs::write(dir.path().join("app.env"), "TOKEN=s3cr\0et\n").unwrap();
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = run(
        &fakes,
        dir.path(),
        &args(&["--dry-run", "--env-file", "app.env"]),
    );
    let stderr = text_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("app.env:1:11: a NUL byte"), "{stderr}");
    assert!(!stderr.contains("s3cr"), "{stderr}");
}

#[test]
fn the_fake_registry_is_an_address_nothing_answers_on() {
    // The command tests' plain-HTTP registry: held by this process, bound
    // but not listening, so a registry on 127.0.0.1:5000 cannot answer.
    let addr = local("LOCAL");
    assert_ne!(addr, "127.0.0.1:5000");
    assert!(std::net::TcpStream::connect(addr).is_err());
    assert!(
        std::net::TcpListener::bind(addr).is_err(),
        "no one else can take it"
    );
}
