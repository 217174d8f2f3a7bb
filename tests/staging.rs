//! The staged copy of a context (an app with a root `.dockerignore`), as a
//! careless or hostile user meets it: symlinks in and as a context, the
//! run's private directory, `TMPDIR`, read-only entries, an interrupt while
//! staging. The real binary with fake `docker` and `aws` first on PATH; the
//! fake docker records the staged context as it reads it, links followed.

mod common;

use common::{app_with as app, text, Fakes};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const REPO: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop";
const FILE: &str = "docker-compose.convox.yml";

const ARGS: [&str; 8] = [
    "--app",
    "shop",
    "--gitsha",
    "a",
    "--repo",
    REPO,
    "--tag",
    "t_{service}",
];

fn run_in(dir: &Path, env: &[(&str, &str)]) -> (Fakes, String) {
    let fakes = Fakes::new(&["docker", "aws"]);
    let out = fakes.run(dir, &ARGS, env);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    (fakes, stderr)
}

fn context_of(fakes: &Fakes, service: &str) -> String {
    fakes
        .call_lines()
        .into_iter()
        .find(|c| c.starts_with("docker build") && c.contains(&format!(":t_{service} ")))
        .unwrap_or_else(|| panic!("no build of {service}"))
        .rsplit(' ')
        .next()
        .expect("context")
        .to_string()
}

/// Links: web's `.dockerignore` leads out of the context (docker reads it
/// through the link), `Dockerfile` to a file inside it, and `api` is itself
/// a link to `services/api`, whose secret the root `.dockerignore` names by
/// that real path.
#[test]
fn links_in_and_as_a_context_lead_where_they_lead_in_the_upload() {
    let dir = app(&[
        (".dockerignore", "*.log\nservices/api/secret.txt\n"),
        ("common/dockerignore", ".env\n"),
        ("web/docker/web.Dockerfile", "FROM scratch\nCOPY . /web\n"),
        ("web/.env", "TOKEN=x\n"),
        ("web/app.txt", "a\n"),
        ("services/api/Dockerfile", "FROM scratch\nCOPY . /api\n"),
        ("services/api/secret.txt", "s\n"),
        ("services/api/app.txt", "b\n"),
        (FILE, "web:\n  build: ./web\napi:\n  build: ./api\n"),
    ]);
    symlink(
        "../common/dockerignore",
        dir.path().join("web/.dockerignore"),
    )
    .expect("link");
    symlink("docker/web.Dockerfile", dir.path().join("web/Dockerfile")).expect("link");
    symlink("services/api", dir.path().join("api")).expect("link");
    let (fakes, _) = run_in(dir.path(), &[]);
    // 1: the staged .dockerignore reads as the app's, so docker leaves
    // .env out as the digest does.
    let (web, web_text) = fakes.staged_context("t_web").expect("web staged");
    assert!(web.contains("./.dockerignore:1"), "{web}");
    assert!(web_text.contains(".env\n"), "{web_text}");
    // The Dockerfile behind the link reached docker (named by its path: the
    // classic client cannot send a context whose .dockerignore is a link
    // with the Dockerfile on stdin).
    assert!(web_text.contains("COPY . /web"), "{web_text}");
    let build = fakes
        .call_lines()
        .into_iter()
        .find(|c| c.starts_with("docker build") && c.contains(":t_web "))
        .expect("web's build");
    assert!(build.contains("/upload/web/Dockerfile "), "{build}");
    // 3: api staged at its real path, the root's rule applied there.
    assert!(context_of(&fakes, "api").ends_with("/upload/services/api"));
    let (api, _) = fakes.staged_context("t_api").expect("api staged");
    assert!(api.contains("./app.txt:1"), "{api}");
    assert!(!api.contains("secret.txt"), "{api}");
}

/// 2: docker cannot build a context whose Dockerfile is a link out of it
/// (tried on 20.10 and 28, both builders), so neither can the rack: refused
/// before any build, the dry run too; a link inside the context is fine.
#[test]
fn a_dockerfile_linked_out_of_its_context_is_refused_before_any_build() {
    let dir = app(&[
        (".dockerignore", "*.log\n"),
        ("docker/web.Dockerfile", "FROM scratch\n"),
        ("web/app.txt", "a\n"),
        ("web/d/prod.Dockerfile", "FROM scratch\nCOPY . /app\n"),
        ("api/app.txt", "a\n"),
        (FILE, "web:\n  build: ./web\napi:\n  build: ./api\n"),
    ]);
    symlink(
        "../docker/web.Dockerfile",
        dir.path().join("web/Dockerfile"),
    )
    .expect("link");
    symlink(
        "../web/d/prod.Dockerfile",
        dir.path().join("api/Dockerfile"),
    )
    .expect("link");
    let before = fs::read(dir.path().join(FILE)).expect("file");
    for dry in [true, false] {
        let fakes = Fakes::new(&["docker", "aws"]);
        let mut args = ARGS.to_vec();
        if dry {
            args.push("--dry-run");
        }
        let out = fakes.run(dir.path(), &args, &[]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(
            stderr.contains(
                "web/Dockerfile is a link to ../docker/web.Dockerfile, outside the build context"
            ),
            "{stderr}"
        );
        assert!(!fakes
            .call_lines()
            .iter()
            .any(|c| c.starts_with("docker build")));
        assert_eq!(fs::read(dir.path().join(FILE)).expect("file"), before);
    }
    // Inside its context, a link is what docker reads.
    fs::remove_file(dir.path().join("web/Dockerfile")).expect("rm");
    symlink("d/prod.Dockerfile", dir.path().join("web/Dockerfile")).expect("link");
    fs::remove_file(dir.path().join("api/Dockerfile")).expect("rm");
    fs::write(dir.path().join("api/Dockerfile"), "FROM scratch\n").expect("file");
    let (fakes, _) = run_in(dir.path(), &[]);
    assert_eq!(
        fakes
            .dockerfile("t_web")
            .as_deref()
            .map(|d| d.starts_with("FROM scratch\nCOPY . /app\n")),
        Some(true)
    );
}

/// 4, 5, 8: the run's directory is fresh, 0700, under an absolute TMPDIR
/// that exists (else /tmp), never in the app, and gone after the run.
#[test]
fn the_staging_directory_is_private_fresh_and_never_in_the_app() {
    let files = [
        (".dockerignore", "**/.env\n"),
        ("Dockerfile", "FROM scratch\n"),
        ("web/Dockerfile", "FROM scratch\nCOPY . /app\n"),
        ("web/app.txt", "a\n"),
        (FILE, "web:\n  build: ./web\n"),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    let given = tmp.path().to_string_lossy().into_owned();
    for (tmpdir, under) in [
        (given.as_str(), given.as_str()),
        ("", "/tmp/"),
        ("relative/tmp", "/tmp/"),
        ("/nonexistent/offcluster-tmp", "/tmp/"),
    ] {
        let dir = app(&files);
        let (fakes, _) = run_in(dir.path(), &[("TMPDIR", tmpdir)]);
        let context = context_of(&fakes, "web");
        assert!(context.starts_with(under), "TMPDIR={tmpdir:?}: {context}");
        assert!(
            !context.starts_with(&*dir.path().to_string_lossy()),
            "{context}"
        );
        let (listing, _) = fakes.staged_context("t_web").expect("staged");
        assert!(listing.starts_with("run 700 "), "{listing}");
        assert!(!Path::new(&context).exists(), "left: {context}");
        assert!(!dir.path().join("relative").exists());
        assert!(!Path::new("/nonexistent").exists());
    }
    assert_eq!(fs::read_dir(tmp.path()).expect("tmp").count(), 0);
}

/// 7: as an ordinary user, a 0555 directory with a 0444 file stages, also
/// where the staged tree is on another filesystem (a copy, not a link).
#[test]
fn read_only_entries_stage_for_an_ordinary_user() {
    // SAFETY: getuid has no preconditions.
    let setpriv = Path::new("/usr/bin/setpriv");
    if unsafe { libc::getuid() } != 0 || !setpriv.exists() {
        eprintln!("SKIPPED: needs root and setpriv to run as another user");
        return;
    }
    let shared = tempfile::tempdir().expect("shared");
    fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o777)).expect("mode");
    let dir = shared.path().join("app");
    for (p, t) in [
        (".dockerignore", "**/.env\n"),
        ("web/Dockerfile", "FROM scratch\nCOPY . /app\n"),
        ("web/mod/a.go", "package a\n"),
        (FILE, "web:\n  build: ./web\n"),
    ] {
        let p = dir.join(p);
        fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        fs::write(p, t).expect("write");
    }
    let fakes = Fakes::new(&["docker", "aws"]);
    let chmod = |p: &Path, m: &str| {
        assert!(std::process::Command::new("chmod")
            .args(["-R", m])
            .arg(p)
            .status()
            .expect("chmod")
            .success());
    };
    chmod(&dir, "a+rwX");
    chmod(fakes.dir.path(), "a+rwX");
    fs::set_permissions(dir.join("web/mod/a.go"), fs::Permissions::from_mode(0o444)).expect("mode");
    fs::set_permissions(dir.join("web/mod"), fs::Permissions::from_mode(0o555)).expect("mode");
    // /dev/shm is a tmpfs: the files are copied there, not linked.
    let tmps = ["/dev/shm", "/tmp"];
    for t in tmps.iter().filter(|t| Path::new(t).is_dir()) {
        let tmp = tempfile::tempdir_in(t).expect("tmp");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).expect("mode");
        fs::write(dir.join(FILE), "web:\n  build: ./web\n").expect("reset");
        let out = fakes
            .command_for(&setpriv.to_string_lossy(), &dir)
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                common::BIN,
            ])
            .args(ARGS)
            .env("TMPDIR", tmp.path())
            .env("HOME", tmp.path())
            .output()
            .expect("run");
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "TMPDIR={t}: {stderr}");
        let (listing, _) = fakes.staged_context("t_web").expect("staged");
        assert!(listing.contains("./mod/a.go:1"), "{listing}");
        assert_eq!(
            fs::read_dir(tmp.path()).expect("tmp").count(),
            0,
            "left in {t}"
        );
    }
    fs::set_permissions(dir.join("web/mod"), fs::Permissions::from_mode(0o755)).expect("mode");
}

/// 6: SIGINT while a big context is being staged leaves nothing behind.
#[test]
fn an_interrupt_while_staging_leaves_nothing_in_tmpdir() {
    let dir = app(&[
        (".dockerignore", "**/.env\n"),
        ("web/Dockerfile", "FROM scratch\nCOPY . /app\n"),
        (FILE, "web:\n  build: ./web\n"),
    ]);
    for d in 0..60 {
        let sub = dir.path().join(format!("web/d{d}"));
        fs::create_dir_all(&sub).expect("dir");
        for f in 0..60 {
            fs::write(sub.join(format!("f{f}")), "x").expect("file");
        }
    }
    let fakes = Fakes::new(&["docker", "aws"]);
    for round in 0..5 {
        fs::write(dir.path().join(FILE), "web:\n  build: ./web\n").expect("reset");
        let tmp = tempfile::tempdir().expect("tmp");
        let mut child = fakes
            .command(dir.path())
            .args(ARGS)
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        let deadline = Instant::now() + Duration::from_secs(20);
        // Wait for the staging to have begun: the tree's first entries.
        let began = |p: &Path| {
            fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.path().join("upload").exists())
        };
        let mut exited = false;
        while !began(tmp.path()) {
            if child.try_wait().expect("wait").is_some() {
                exited = true;
                break;
            }
            assert!(Instant::now() < deadline, "staging never began");
            std::thread::sleep(Duration::from_millis(1));
        }
        let pid = i32::try_from(child.id()).expect("pid");
        if !exited {
            // SAFETY: a signal to the process we started.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let out = child.wait_with_output().expect("wait");
        let (_, stderr) = text(&out);
        assert!(
            exited || out.status.code() == Some(130),
            "round {round}: {stderr}"
        );
        let left: Vec<_> = fs::read_dir(tmp.path())
            .expect("tmp")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "round {round}: left {left:?}: {stderr}");
    }
}

/// A context whose `.dockerignore` is a link: the classic client cannot
/// send it with the Dockerfile on stdin, so its commands name the file
/// (labels as flags); its build stage still gets its cache image, as any
/// other multi-stage build's does (the Dockerfile is still read for its
/// stages).
#[test]
fn a_linked_dockerignore_keeps_the_stage_cache_and_drops_only_the_stdin_dockerfile() {
    let dir = app(&[
        ("common/dockerignore", ".env\n"),
        (
            "web/Dockerfile",
            "FROM scratch AS build\nCOPY . /src\nFROM scratch\nCOPY --from=build /src /app\n",
        ),
        (
            FILE,
            "version: \"2\"\nservices:\n  web:\n    build: web\n  api:\n    build: api\n",
        ),
        (
            "api/Dockerfile",
            "FROM scratch AS build\nCOPY . /src\nFROM scratch\nCOPY --from=build /src /app\n",
        ),
    ]);
    symlink(
        "../common/dockerignore",
        dir.path().join("web/.dockerignore"),
    )
    .expect("link");
    let fakes = Fakes::new(&["docker", "aws"]);
    let mut args = ARGS.to_vec();
    args.push("--dry-run");
    let out = fakes.run(dir.path(), &args, &[]);
    let (plan, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // Both contexts' build stages are built and cached alike...
    for service in ["web", "api"] {
        assert!(
            plan.lines().any(|l| l.contains("--target build")
                && l.contains(&format!("shop-cache:shop_{service}-build"))),
            "{service}'s build stage: {plan}"
        );
    }
    // ...and only web's commands leave stdin alone.
    let final_build = |service: &str| {
        plan.lines()
            .find(|l| l.contains(&format!("shop:t_{service} ")) && l.contains("docker build"))
            .unwrap_or_else(|| panic!("{service}'s build: {plan}"))
            .to_string()
    };
    let web = final_build("web");
    assert!(!web.contains("-f -"), "{web}");
    assert!(web.contains("--label"), "{web}");
    assert!(final_build("api").contains("-f -"));
}
