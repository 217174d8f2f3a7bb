//! The rewrite corpus: each `fixtures/rewrite/<case>/input.yml` must become
//! exactly its `expected.yml`, and, where docker-compose is installed and the
//! file is a compose file with `services:` (not Convox v1, not convox.yml),
//! docker-compose must read the result.
//!
//! To add a case, write its input.yml, run with UPDATE_EXPECTED=1, and read
//! the diff of the new expected.yml before committing it.

use offcluster::plan::{self, Options, Output, Target};
use offcluster::read::compose::{Compose, Format};
use offcluster::read::yaml::Doc;
use std::fs;
use std::path::Path;
use std::process::Command;

fn options() -> Options {
    Options {
        app: "app".into(),
        gitsha: Some("sha1".into()),
        description: String::new(),
        repo: "registry.example/app".into(),
        region: None,
        registry_host: None,
        tag: offcluster::plan::tag::GITSHA_TEMPLATE.into(),
        output: Output::Stdout,
        cache_expiry_days: 7,
    }
}

fn rewrite(input: &Path) -> String {
    let env = |_: &str| None;
    let compose =
        Compose::load(input, &env).unwrap_or_else(|e| panic!("{}: {e:#}", input.display()));
    let opts = options();
    let target = Target::new(&opts).expect("target");
    plan::plan(&compose, &opts, &target, None, &|_| Ok("0".repeat(64)))
        .unwrap_or_else(|e| panic!("{}: {e:#}", input.display()))
        .rewritten
}

/// The build contexts still named in a file (where a service keeps its
/// `build:` beside `image:`), which docker-compose checks exist.
fn contexts_left(text: &str) -> Vec<String> {
    let doc = Doc::parse(text).expect("output parses");
    let Some(root) = doc.root else {
        return Vec::new();
    };
    let services = doc.get(root, "services").map_or(root, |f| f.value);
    let mut out = Vec::new();
    for e in doc.entries(services).unwrap_or_default() {
        if let Some(b) = doc.get(e.value, "build") {
            let ctx = doc.get(b.value, "context").map_or(b.value, |c| c.value);
            out.extend(doc.scalar(ctx).map(String::from));
        }
    }
    out
}

fn docker_compose_available() -> bool {
    Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_case_rewrites_to_its_expected_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rewrite");
    let update = std::env::var("UPDATE_EXPECTED").is_ok_and(|v| v == "1");
    let compose_check = docker_compose_available();
    let mut cases: Vec<_> = fs::read_dir(&root)
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the corpus is missing");
    for case in cases {
        let got = rewrite(&case.join("input.yml"));
        let expected_path = case.join("expected.yml");
        if update {
            fs::write(&expected_path, &got).expect("write expected");
        }
        let expected = fs::read(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{}: no expected.yml (UPDATE_EXPECTED=1 writes it)",
                case.display()
            )
        });
        assert!(
            got.as_bytes() == expected.as_slice(),
            "{}:\n{got}",
            case.display()
        );
        let is_compose = matches!(
            Compose::load(&case.join("input.yml"), &|_| None).map(|c| c.format),
            Ok(Format::Compose { .. })
        );
        if compose_check && is_compose {
            let dir = tempfile::tempdir().expect("temp dir");
            fs::write(dir.path().join("docker-compose.yml"), &got).expect("write");
            for c in contexts_left(&got) {
                fs::create_dir_all(dir.path().join(c)).expect("context dir");
            }
            let out = Command::new("docker-compose")
                .args(["config", "--quiet"])
                .current_dir(dir.path())
                .env("VERSION", "2")
                .output()
                .expect("docker-compose");
            assert!(
                out.status.success(),
                "{}: docker-compose rejects the output: {}",
                case.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        } else if !compose_check {
            eprintln!(
                "docker-compose not installed: the output of {} is not read back by it",
                case.display()
            );
        }
    }
}

/// Every fixture outside `fixtures/bad` that Convox loads: after the plan's
/// rewrite, Convox's own rules (`manifest::convox_builds`, applied to the
/// output alone) find nothing left to build.
#[test]
fn every_fixture_convox_loads_leaves_convox_nothing_to_build() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).expect("fixtures").flatten() {
            let p = e.path();
            if p.is_dir() && p != root.join("bad") {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yml")
                && p.file_name().is_some_and(|n| n != "expected.yml")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut checked = 0;
    for file in &files {
        let compose = Compose::load(file, &|_| None).expect("fixture loads");
        if offcluster::read::manifest::version_warning(&compose.format).is_some() {
            continue; // Convox does not load it
        }
        let before =
            offcluster::read::manifest::convox_builds(&compose.doc, &compose.format, &|_| None);
        let out = rewrite(file);
        let after = Compose::from_bytes(file, out.into_bytes(), &|_| None).expect("reads back");
        let left = offcluster::read::manifest::convox_builds(&after.doc, &after.format, &|_| None);
        assert!(
            left.is_empty(),
            "{}: Convox would still build {left:?}",
            file.display()
        );
        assert!(!before.is_empty(), "{}: nothing to build", file.display());
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures checked");
}
