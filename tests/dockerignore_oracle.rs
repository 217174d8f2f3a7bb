//! The `.dockerignore` differential test: the real engine is the oracle.
//!
//! Each case generates a tree (names with dots, spaces, `!`, `*`, `?`, `[`,
//! `#`, `\\`, regexp characters `+()|{}`, non-ASCII letters, dotfiles,
//! nested directories) and a
//! `.dockerignore` (classes with `^`, `!` and ranges, `\` escapes, `**` in
//! every position, `!` exceptions, a leading `/` or `./`, a trailing `/`,
//! `..`, comments, blank lines, surrounding spaces, and malformed lines).
//! It builds `FROM scratch` + `COPY . /c/` with the Dockerfile on stdin, as
//! this program does, under the classic builder (the docker CLI first on
//! PATH) and under BuildKit (`BUILDKIT_DOCKER`, default Debian's 20.10 client
//! at /usr/bin/docker, with DOCKER_BUILDKIT=1), lists what reached the image,
//! and asserts:
//!
//! - the files the digest covers are exactly those that either builder sent;
//! - for every file, changing it changes the digest if and only if some
//!   builder sends it;
//! - a file the program refuses is one docker refuses too.
//!
//! `ORACLE_CASES` (default 12) cases run, each with a printed seed;
//! `ORACLE_SEED=S` runs the one case S. `scripts/fuzz dockerignore` runs
//! many. Skipped with a message when a piece is missing, unless
//! E2E_REQUIRED=1.

use offcluster::inputs::digest;
use offcluster::read::compose::BuildSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// splitmix64: small, seedable, good enough to pick shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const NAMES: &[&str] = &[
    "a+b",
    "(p)",
    "x|y",
    "{c}",
    "back\\slash",
    "a",
    "ab",
    "b.txt",
    "a.log",
    "keep.log",
    ".env",
    ".hidden",
    "x y",
    "!bang",
    "star*",
    "q?",
    "[br]",
    "#hash",
    "café",
    "日本",
    "über.md",
    "a.b.c",
    "node_modules",
    "src",
    "y",
    "z",
    "README.md",
    "-dash",
    "a]b",
    "tmp",
    "Dockerfile",
];

/// A random tree: the relative paths of its files (directories implied).
fn tree(rng: &mut Rng) -> Vec<String> {
    let mut files = BTreeSet::new();
    let n = 4 + rng.below(14);
    for _ in 0..n {
        let depth = 1 + rng.below(3);
        let parts: Vec<&str> = (0..depth).map(|_| *rng.pick(NAMES)).collect();
        files.insert(parts.join("/"));
    }
    // A file may not also be a directory: drop files that are prefixes.
    let all: Vec<String> = files.iter().cloned().collect();
    all.iter()
        .filter(|f| !all.iter().any(|g| g.starts_with(&format!("{f}/"))))
        .filter(|f| f.as_str() != ".dockerignore")
        .cloned()
        .collect()
}

/// One pattern built from a path of the tree.
fn pattern(rng: &mut Rng, files: &[String]) -> String {
    let path = rng.pick(files).clone();
    let parts: Vec<&str> = path.split('/').collect();
    let take = 1 + rng.below(parts.len());
    let mut segs: Vec<String> = parts[..take].iter().map(|s| s.to_string()).collect();
    let last = segs.len() - 1;
    let seg = segs[last].clone();
    let first_char = seg.chars().next().unwrap_or('a');
    segs[last] = match rng.below(14) {
        0 => "*".into(),
        1 => format!(
            "{}*",
            &seg[..seg.char_indices().nth(1).map_or(seg.len(), |(i, _)| i)]
        ),
        2 => format!("[!{first_char}]*"),
        3 => format!("[^{first_char}]*"),
        4 => "[a-m]*".into(),
        5 => format!("*{}", seg.chars().last().unwrap_or('x')),
        6 => "?".repeat(seg.chars().count()),
        7 => escape(&seg),
        8 => format!(
            "**{}",
            seg.chars().last().map(String::from).unwrap_or_default()
        ),
        9 => format!("[{first_char}]{}", seg.chars().skip(1).collect::<String>()),
        _ => seg,
    };
    let mut p = segs.join("/");
    p = match rng.below(12) {
        0 => format!("**/{p}"),
        1 => format!("{p}/**"),
        2 => format!("/{p}"),
        3 => format!("./{p}"),
        4 => format!("{p}/"),
        5 => format!("zz/../{p}"),
        6 if segs.len() > 1 => format!("{}/**/{}", segs[0], segs[last]),
        7 => format!("**{p}"),
        _ => p,
    };
    p
}

/// Escape the glob characters of a name.
fn escape(name: &str) -> String {
    name.chars()
        .map(|c| {
            if "*?[]\\".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn ignore_file(rng: &mut Rng, files: &[String]) -> String {
    let mut lines = Vec::new();
    for _ in 0..1 + rng.below(5) {
        let mut line = pattern(rng, files);
        if rng.chance(30) {
            line = format!("!{line}");
        }
        if rng.chance(15) {
            line = format!("  {line}  ");
        }
        lines.push(line);
        if rng.chance(10) {
            lines.push("# a comment".into());
        }
        if rng.chance(10) {
            lines.push(String::new());
        }
    }
    if rng.chance(8) {
        let bad = ["[abc", "!", "x\\", "[]", "a[b-]"];
        let at = rng.below(lines.len() + 1);
        lines.insert(at, rng.pick(&bad).to_string());
    }
    if rng.chance(10) {
        lines.insert(0, "*".into());
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn write_tree(root: &Path, files: &[String], ignore: &str) {
    for (i, f) in files.iter().enumerate() {
        let p = root.join(f);
        fs::create_dir_all(p.parent().expect("parent")).expect("dirs");
        fs::write(&p, format!("file {i}\n")).expect("file");
    }
    fs::write(root.join(".dockerignore"), ignore).expect("ignore");
}

struct Builders {
    classic: PathBuf,
    buildkit: PathBuf,
}

fn builders() -> Option<Builders> {
    let fail = |what: &str| -> Option<Builders> {
        if std::env::var("E2E_REQUIRED").is_ok_and(|v| v == "1") {
            panic!("E2E_REQUIRED=1 but {what}");
        }
        eprintln!("SKIPPED the .dockerignore oracle: {what}");
        None
    };
    let ok = |prog: &Path| {
        Command::new(prog)
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let classic = PathBuf::from("docker");
    if !ok(&classic) {
        return fail("the docker engine does not answer");
    }
    let buildkit = PathBuf::from(
        std::env::var("BUILDKIT_DOCKER").unwrap_or_else(|_| "/usr/bin/docker".to_string()),
    );
    if !ok(&buildkit) {
        return fail(&format!(
            "no docker client for BuildKit at {} (set BUILDKIT_DOCKER)",
            buildkit.display()
        ));
    }
    Some(Builders { classic, buildkit })
}

/// What one builder put in the image, or Err(its message) when it refused.
fn sent(docker: &Path, buildkit: bool, ctx: &Path, tag: &str) -> Result<BTreeSet<String>, String> {
    Ok(sent_entries(docker, buildkit, ctx, None, tag)?
        .into_keys()
        .collect())
}

/// Each file the image got under /c/, with a symlink's target; with the
/// Dockerfile on stdin, or `-f DOCKERFILE` (which must `COPY . /c/`).
fn sent_entries(
    docker: &Path,
    buildkit: bool,
    ctx: &Path,
    dockerfile: Option<&Path>,
    tag: &str,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut build = Command::new(docker);
    build.args(["build", "-q", "-t", tag]);
    match dockerfile {
        Some(d) => build.arg("-f").arg(d),
        None => build.args(["-f", "-"]),
    };
    build
        .arg(ctx)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if buildkit {
        build.env("DOCKER_BUILDKIT", "1");
    } else {
        build.env_remove("DOCKER_BUILDKIT");
    }
    let mut child = build.spawn().expect("docker build");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        if dockerfile.is_none() {
            stdin
                .write_all(b"FROM scratch\nCOPY . /c/\n")
                .expect("Dockerfile");
        }
    }
    let out = child.wait_with_output().expect("docker build");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let id = Command::new("docker")
        .args(["create", tag, "/none"])
        .output()
        .expect("docker create");
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    let tar = Command::new("docker")
        .args(["export", &id])
        .output()
        .expect("docker export");
    let _ = Command::new("docker").args(["rm", &id]).output();
    let _ = Command::new("docker").args(["rmi", tag]).output();
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(&tar.stdout[..]);
    for entry in archive.entries().expect("tar") {
        let entry = entry.expect("tar entry");
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .ok()
            .flatten()
            .filter(|_| entry.header().entry_type().is_symlink())
            .map(|l| l.to_string_lossy().into_owned());
        if let Some(rel) = path.strip_prefix("c/") {
            files.insert(rel.to_string(), link);
        }
    }
    Ok(files)
}

/// The build, with its Dockerfile outside the context (it goes on stdin).
fn spec(ctx: &Path) -> BuildSpec {
    let outside = ctx.parent().expect("parent").join("Dockerfile");
    BuildSpec {
        context: ctx.display().to_string(),
        dockerfile: Some(outside.display().to_string()),
        args: Vec::new(),
        target: None,
        platform: None,
        ..Default::default()
    }
}

/// One case; Err describes a disagreement.
fn case(b: &Builders, seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed);
    let files = tree(&mut rng);
    let ignore = ignore_file(&mut rng, &files);
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = dir.path().join("ctx");
    fs::create_dir(&ctx).expect("ctx");
    write_tree(&ctx, &files, &ignore);
    // The Dockerfile comes on stdin; one in the context is only a file.
    fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("Dockerfile");
    let describe = || format!("seed {seed}\n.dockerignore:\n{ignore}files: {files:?}");
    let tag = format!("offcluster-oracle-{seed}");
    let classic = sent(&b.classic, false, &ctx, &tag);
    let buildkit = sent(&b.buildkit, true, &ctx, &tag);
    let ours = digest::sent_files(&ctx, None);
    let (classic, buildkit, ours) = match (classic, buildkit, ours) {
        (Ok(c), Ok(k), Ok(o)) => (c, k, o),
        (c, k, Err(e)) => {
            if c.is_ok() && k.is_ok() {
                return Err(format!(
                    "{}\nthe program refuses what both builders accept: {e:#}",
                    describe()
                ));
            }
            return Ok(());
        }
        (c, k, Ok(_)) => {
            return Err(format!(
                "{}\na builder refused what the program accepts: classic {:?}, BuildKit {:?}",
                describe(),
                c.err(),
                k.err()
            ))
        }
    };
    let union: BTreeSet<String> = classic.union(&buildkit).cloned().collect();
    let ours: BTreeSet<String> = ours.into_iter().collect();
    if ours != union {
        return Err(format!(
            "{}\nsent by a builder, missed by the digest (STALE): {:?}\ncounted, sent by neither: {:?}\nclassic: {classic:?}\nBuildKit: {buildkit:?}",
            describe(),
            union.difference(&ours).collect::<Vec<_>>(),
            ours.difference(&union).collect::<Vec<_>>(),
        ));
    }
    // The digest itself: changing a file changes it iff a builder sends it.
    let base = digest::digest(&spec(&ctx), &|_| None).map_err(|e| format!("{e:#}"))?;
    let mut all: Vec<String> = files.clone();
    all.push(".dockerignore".into());
    for f in all.iter().filter(|f| f.as_str() != ".dockerignore") {
        let p = ctx.join(f);
        let before = fs::read(&p).expect("read");
        fs::write(&p, b"changed\n").expect("write");
        let now = digest::digest(&spec(&ctx), &|_| None).map_err(|e| format!("{e:#}"))?;
        fs::write(&p, &before).expect("restore");
        if (now != base) != union.contains(f) {
            return Err(format!(
                "{}\nchanging {f}: digest changed {}, sent {}",
                describe(),
                now != base,
                union.contains(f)
            ));
        }
    }
    Ok(())
}

#[test]
fn the_digest_covers_exactly_what_either_builder_sends() {
    let Some(b) = builders() else { return };
    let seeds: Vec<u64> = match std::env::var("ORACLE_SEED") {
        Ok(s) => vec![s.parse().expect("ORACLE_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("ORACLE_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(12);
            let start: u64 = std::env::var("ORACLE_START")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            (start..start + n).collect()
        }
    };
    let mut failures = Vec::new();
    for &seed in &seeds {
        eprintln!("dockerignore oracle: seed {seed} (rerun: ORACLE_SEED={seed} cargo test --test dockerignore_oracle)");
        if let Err(e) = case(&b, seed) {
            eprintln!("DISAGREEMENT\n{e}\n");
            failures.push(seed);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree with the engine: seeds {failures:?}",
        failures.len(),
        seeds.len()
    );
}

fn names(m: &BTreeMap<String, Option<String>>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

/// `<Dockerfile>.dockerignore`: BuildKit reads it instead of `.dockerignore`
/// when given the Dockerfile's path; with the Dockerfile on stdin, and under
/// the classic builder, `.dockerignore` applies. The digest counts what any
/// of these sends.
#[test]
fn a_dockerfile_specific_ignore_file_under_each_builder() {
    let Some(b) = builders() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = dir.path();
    fs::create_dir(ctx.join("src")).expect("src");
    fs::write(ctx.join("src/b.txt"), "b").expect("file");
    fs::write(ctx.join("a.log"), "log").expect("file");
    fs::write(ctx.join(".dockerignore"), "*.log\n").expect("file");
    fs::write(ctx.join("Dockerfile.dockerignore"), "src\n").expect("file");
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /c/\n").expect("file");
    let df = ctx.join("Dockerfile");
    let tag = "offcluster-oracle-dfignore";
    let common = [".dockerignore", "Dockerfile", "Dockerfile.dockerignore"];
    let with = |extra: &str| {
        let mut v: Vec<&str> = common.to_vec();
        v.push(extra);
        v.sort();
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    for (docker, buildkit, f, want) in [
        (&b.classic, false, None, with("src/b.txt")),
        (&b.classic, false, Some(df.as_path()), with("src/b.txt")),
        (&b.buildkit, true, None, with("src/b.txt")),
        (&b.buildkit, true, Some(df.as_path()), with("a.log")),
    ] {
        let got = sent_entries(docker, buildkit, ctx, f, tag).expect("build");
        assert_eq!(names(&got), want, "buildkit {buildkit}, -f {f:?}");
    }
    let ours = digest::sent_files(ctx, Some(&df)).expect("ours");
    let mut all = with("src/b.txt");
    all.push("a.log".into());
    all.sort();
    assert_eq!(ours, all, "the union of what each sends");
}

/// Symlinks are sent as links (their target text, never what they point
/// at, inside the context or out of it); a fifo only by the classic builder,
/// a socket only by BuildKit (as an empty file). The digest counts each by
/// what docker sends.
#[test]
fn symlinks_fifos_and_sockets_as_docker_sends_them() {
    let Some(b) = builders() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = dir.path().join("ctx");
    fs::create_dir(&ctx).expect("ctx");
    fs::write(dir.path().join("outside.txt"), "out").expect("file");
    fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("file");
    fs::write(ctx.join("a.txt"), "a").expect("file");
    std::os::unix::fs::symlink("a.txt", ctx.join("inner")).expect("link");
    std::os::unix::fs::symlink("../outside.txt", ctx.join("out")).expect("link");
    let fifo = std::ffi::CString::new(ctx.join("fifo").display().to_string()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
    let _socket = std::os::unix::net::UnixListener::bind(ctx.join("sock")).expect("socket");
    let tag = "offcluster-oracle-special";
    let classic = sent_entries(&b.classic, false, &ctx, None, tag).expect("classic");
    let buildkit = sent_entries(&b.buildkit, true, &ctx, None, tag).expect("BuildKit");
    assert_eq!(names(&classic), ["a.txt", "fifo", "inner", "out"]);
    assert_eq!(names(&buildkit), ["a.txt", "inner", "out", "sock"]);
    for m in [&classic, &buildkit] {
        assert_eq!(m["inner"].as_deref(), Some("a.txt"));
        assert_eq!(m["out"].as_deref(), Some("../outside.txt"));
    }
    let ours = digest::sent_files(&ctx, None).expect("ours");
    assert_eq!(ours, ["a.txt", "fifo", "inner", "out", "sock"]);
    let d = || digest::digest(&spec(&ctx), &|_| None).expect("digest");
    let base = d();
    fs::write(dir.path().join("outside.txt"), "changed").expect("file");
    assert_eq!(d(), base, "what a link points at is not sent");
    fs::remove_file(ctx.join("out")).expect("rm");
    std::os::unix::fs::symlink("a.txt", ctx.join("out")).expect("link");
    assert_ne!(d(), base, "a link's target is");
    let base = d();
    fs::remove_file(ctx.join("fifo")).expect("rm");
    assert_ne!(d(), base, "a fifo is sent");
    let base = d();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(ctx.join("a.txt"), fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_ne!(d(), base, "permission bits are sent");
}
