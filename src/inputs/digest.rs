//! The content digest of a build: one BLAKE3 hash over exactly what the build
//! depends on, so that an unchanged build keeps its tag and is never rebuilt.
//!
//! It covers every entry of the context that docker would send (after
//! `.dockerignore`, see [`crate::inputs::dockerignore`]), with its relative path,
//! type, permission bits and content (a symlink by its target text, never
//! what it points at, as docker sends it; a fifo or socket by its type);
//! the Dockerfile's content, wherever it is;
//! the resolved build args; the target; the platform; and the version of this
//! format. Image labels (the commit, the branch) are left out on purpose: they
//! change on every commit and would defeat the digest.

use crate::inputs::dockerignore::{Ignore, Which};
use crate::inputs::upload::Upload;
use crate::read::compose::{is_remote_context, ArgValue, BuildSpec, SecretSource};
use crate::read::dockerfile::Dockerfile;
use crate::read::regular;
use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bump when what goes into the digest changes, so old tags stop matching.
pub const FORMAT: &str = "convox-off-cluster-build digest v2";

/// What an entry of the context is, with its permission bits (docker sends
/// them; owners and times it does not keep).
#[derive(Debug)]
enum Kind {
    File {
        mode: u32,
    },
    Dir {
        mode: u32,
    },
    Symlink(Vec<u8>),
    /// A fifo (the classic builder sends it), a socket (BuildKit sends an
    /// empty file), a device: by its type and mode.
    Special {
        what: &'static str,
        mode: u32,
    },
}

#[derive(Debug)]
struct Item {
    rel: String,
    path: PathBuf,
    kind: Kind,
}

/// The ignore rules of a context: its `.dockerignore`, and a
/// `<Dockerfile>.dockerignore` beside the Dockerfile when there is one
/// (BuildKit reads that instead when it is given the Dockerfile's path; the
/// classic builder, and BuildKit with the Dockerfile on stdin, read the
/// context's). A file counts when any of them lets it through. A line docker
/// refuses is an error naming the file, the line and the pattern.
pub fn context_ignore(context: &Path, dockerfile: Option<&Path>) -> Result<Ignore> {
    ignore_in_upload(context, dockerfile, None)
}

/// The same, in what Convox uploads: an ignore file the upload leaves out
/// does not apply (`inputs::upload`).
fn ignore_in_upload(
    context: &Path,
    dockerfile: Option<&Path>,
    upload: Option<&Upload>,
) -> Result<Ignore> {
    let uploaded = |p: &Path| match (upload, p.strip_prefix(context)) {
        (Some(u), Ok(rel)) => u.holds(&rel.to_string_lossy()),
        _ => true,
    };
    let read = |p: &Path| -> Result<Option<String>> {
        if !regular::exists_regular(p)? || !uploaded(p) {
            return Ok(None);
        }
        let bytes = regular::read(p, regular::TEXT_LIMIT)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let context_file = context.join(".dockerignore");
    let beside = dockerfile.map(|d| {
        let mut name = d.as_os_str().to_owned();
        name.push(".dockerignore");
        PathBuf::from(name)
    });
    let own = read(&context_file)?;
    let theirs = match &beside {
        Some(b) => read(b)?,
        None => None,
    };
    let linked = fs::symlink_metadata(&context_file).is_ok_and(|m| m.file_type().is_symlink());
    let ignore = Ignore::for_context(own.as_deref(), theirs.as_deref()).map_err(|(which, e)| {
        let file = match (which, &beside) {
            (Which::Dockerfile, Some(b)) => b.clone(),
            _ => context_file.clone(),
        };
        anyhow!(
            "{}:{}: docker refuses the pattern `{}`: {}",
            file.display(),
            e.line,
            e.pattern,
            e.message
        )
    })?;
    Ok(if linked { ignore.or_none() } else { ignore })
}

/// Everything of the context that docker would receive, in path order.
fn walk(context: &Path, ignore: &Ignore, upload: Option<&Upload>) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let up_root = upload.map(Upload::root);
    let mut stack = vec![(context.to_path_buf(), String::new(), ignore.root(), up_root)];
    while let Some((dir, prefix, state, up_state)) = stack.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let path = e.path();
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let ft = meta.file_type();
            let mut verdict = ignore.entry(&state, &rel, ft.is_dir());
            // What the upload leaves out, docker never gets.
            let mut up_inner = None;
            if let (Some(u), Some(us)) = (upload, &up_state) {
                let (held, enter) = u.entry(us, &rel, ft.is_dir());
                verdict.sent &= held;
                if enter.is_none() {
                    verdict.enter = None;
                }
                up_inner = enter;
            }
            let mode = permissions(&meta);
            if ft.is_dir() {
                if let Some(inner) = verdict.enter {
                    stack.push((path.clone(), rel.clone(), inner, up_inner));
                }
                if verdict.sent {
                    items.push(Item {
                        rel,
                        path,
                        kind: Kind::Dir { mode },
                    });
                }
                continue;
            }
            if !verdict.sent {
                continue;
            }
            let kind = if ft.is_symlink() {
                let target = fs::read_link(&path)
                    .with_context(|| format!("cannot read the link {}", path.display()))?;
                Kind::Symlink(target.as_os_str().as_encoded_bytes().to_vec())
            } else if ft.is_file() {
                Kind::File { mode }
            } else {
                Kind::Special {
                    what: special(&ft),
                    mode,
                }
            };
            items.push(Item { rel, path, kind });
        }
    }
    items.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(items)
}

/// The files of the context that some builder sends, relative and
/// `/`-separated, in order (for tests and the differential check).
pub fn sent_files(context: &Path, dockerfile: Option<&Path>) -> Result<Vec<String>> {
    let ignore = context_ignore(context, dockerfile)?;
    Ok(walk(context, &ignore, None)?
        .into_iter()
        .filter(|i| !matches!(i.kind, Kind::Dir { .. }))
        .map(|i| i.rel)
        .collect())
}

#[cfg(unix)]
fn permissions(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn permissions(_: &fs::Metadata) -> u32 {
    0o644
}

#[cfg(unix)]
fn special(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "other"
    }
}

#[cfg(not(unix))]
fn special(_: &fs::FileType) -> &'static str {
    "other"
}

/// BLAKE3 of a file, read in chunks (never whole into memory).
fn hash_file(path: &Path) -> Result<blake3::Hash> {
    let file = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    h.update_reader(std::io::BufReader::with_capacity(256 * 1024, file).take(u64::MAX))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(h.finalize())
}

/// Length-prefixed, so that no two different inputs give the same stream.
fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The digest of one build, as 64 hex digits.
pub fn digest(spec: &BuildSpec, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    digest_with_bases(spec, env, &[])
}

/// The digest with the identity of each base image the build uses
/// (`(image, identity)`, see [`crate::inputs::bases`]); none adds nothing, so a
/// `FROM scratch` build's digest is the same either way.
pub fn digest_with_bases(
    spec: &BuildSpec,
    env: &dyn Fn(&str) -> Option<String>,
    bases: &[(String, String)],
) -> Result<String> {
    digest_of(spec, env, None, bases)
}

/// The digest, with the build's Dockerfile as the run read it (its bytes are
/// hashed; None: read from disk here).
pub fn digest_of(
    spec: &BuildSpec,
    env: &dyn Fn(&str) -> Option<String>,
    dockerfile: Option<&Dockerfile>,
    bases: &[(String, String)],
) -> Result<String> {
    let mut h = blake3::Hasher::new();
    field(&mut h, FORMAT.as_bytes());
    if is_remote_context(&spec.context) {
        // A remote context is named, not read: its URL stands for it.
        field(&mut h, b"remote");
        field(&mut h, spec.context.as_bytes());
        field(&mut h, spec.dockerfile.as_deref().unwrap_or("").as_bytes());
    } else {
        hash_local(&mut h, spec, dockerfile)?;
    }
    hash_args(&mut h, spec, env);
    field(&mut h, b"target");
    field(&mut h, spec.target.as_deref().unwrap_or("").as_bytes());
    // The service's platform, else what docker would take by default.
    field(&mut h, b"platform");
    field(
        &mut h,
        spec.platform
            .clone()
            .or_else(|| env("DOCKER_DEFAULT_PLATFORM"))
            .unwrap_or_default()
            .as_bytes(),
    );
    hash_secrets(&mut h, spec);
    if !bases.is_empty() {
        let mut sorted: Vec<&(String, String)> = bases.iter().collect();
        sorted.sort();
        field(&mut h, b"bases");
        for (image, identity) in sorted {
            field(&mut h, image.as_bytes());
            field(&mut h, identity.as_bytes());
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// A Dockerfile inside the context that is a link leading out of it: no
/// docker builds that context (the classic builder's client fails with
/// `archive/tar: write too long`, BuildKit cannot read outside the context
/// it was given: tried with docker 20.10 and 28), and so neither does the
/// rack. Refused before any build.
fn linked_out(context: &Path, dockerfile: &Path) -> Result<()> {
    let Ok(rel) = dockerfile.strip_prefix(context) else {
        return Ok(());
    };
    let is_link = std::fs::symlink_metadata(dockerfile).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link || rel.as_os_str().is_empty() {
        return Ok(());
    }
    let (Ok(real), Ok(ctx)) = (
        std::fs::canonicalize(dockerfile),
        std::fs::canonicalize(context),
    ) else {
        return Ok(());
    };
    if real.starts_with(&ctx) {
        return Ok(());
    }
    let target = std::fs::read_link(dockerfile).unwrap_or_default();
    bail!(
        "the Dockerfile {} is a link to {}, outside the build context {}: docker cannot build from it (the classic builder fails with `archive/tar: write too long`, BuildKit cannot read outside the context), and neither can the rack; name the file itself in `dockerfile:` or make the link a copy",
        dockerfile.display(),
        target.display(),
        context.display()
    )
}

/// A local build: every entry of the context docker would send, then the
/// Dockerfile's content.
fn hash_local(h: &mut blake3::Hasher, spec: &BuildSpec, read: Option<&Dockerfile>) -> Result<()> {
    let context = Path::new(&spec.context);
    let dockerfile = spec.dockerfile.as_deref().map(Path::new);
    if !context.is_dir() {
        bail!(
            "the build context {} is not a directory; build paths are relative to the compose file's directory",
            context.display()
        );
    }
    if let Some(d) = dockerfile {
        match regular::exists_regular(d) {
            Ok(true) => {}
            Ok(false) => bail!(
                "the Dockerfile {} does not exist; `dockerfile:` is relative to the build context",
                d.display()
            ),
            Err(e) => bail!("the Dockerfile: {e}"),
        }
        linked_out(context, d)?;
    }
    let upload = match &spec.upload_root {
        Some(root) => Upload::for_context(Path::new(root), context)?,
        None => None,
    };
    if let (Some(u), Some(d)) = (&upload, dockerfile) {
        if let Ok(rel) = d.strip_prefix(context) {
            if !u.holds(&rel.to_string_lossy()) {
                bail!(
                    "the Dockerfile {} is left out of Convox's upload by the app's .dockerignore, so the rack could not build it",
                    d.display()
                );
            }
        }
    }
    let ignore = ignore_in_upload(context, dockerfile, upload.as_ref())?;
    let items = walk(context, &ignore, upload.as_ref())?;
    let contents: Vec<Option<blake3::Hash>> = items
        .par_iter()
        .map(|it| match it.kind {
            Kind::File { .. } => hash_file(&it.path).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    field(h, b"context");
    for (it, content) in items.iter().zip(contents) {
        hash_item(h, it, content);
    }
    let dockerfile = dockerfile
        .map(Path::to_path_buf)
        .unwrap_or_else(|| context.join("Dockerfile"));
    field(h, b"dockerfile");
    let df = match read.filter(|d| d.path == dockerfile) {
        Some(d) => blake3::hash(&d.bytes),
        None => blake3::hash(
            &regular::read(&dockerfile, regular::TEXT_LIMIT)
                .map_err(|e| anyhow!("the Dockerfile: {e}"))?,
        ),
    };
    h.update(df.as_bytes());
    Ok(())
}

/// One entry of the context: its path, type, mode and content.
fn hash_item(h: &mut blake3::Hasher, it: &Item, content: Option<blake3::Hash>) {
    field(h, it.rel.as_bytes());
    match &it.kind {
        Kind::Dir { mode } => {
            field(h, b"d");
            h.update(&mode.to_le_bytes());
        }
        Kind::File { mode } => {
            field(h, b"f");
            h.update(&mode.to_le_bytes());
            if let Some(c) = content {
                h.update(c.as_bytes());
            }
        }
        Kind::Special { what, mode } => {
            field(h, what.as_bytes());
            h.update(&mode.to_le_bytes());
        }
        Kind::Symlink(target) => {
            field(h, b"l");
            field(h, target);
        }
    }
}

/// The build args, resolved (an inherited one from the environment), sorted.
fn hash_args(h: &mut blake3::Hasher, spec: &BuildSpec, env: &dyn Fn(&str) -> Option<String>) {
    field(h, b"args");
    let mut args: Vec<(&str, Option<String>)> = spec
        .args
        .iter()
        .map(|a| {
            let v = match &a.value {
                ArgValue::Literal(v) | ArgValue::Secret(v) => Some(v.clone()),
                ArgValue::Inherit => env(&a.name),
            };
            (a.name.as_str(), v)
        })
        .collect();
    args.sort();
    for (name, value) in args {
        field(h, name.as_bytes());
        match value {
            Some(v) => field(h, v.as_bytes()),
            None => field(h, b"\0unset"),
        }
    }
}

/// Which secrets and SSH agents the build mounts (never their values: a
/// rotated secret rebuilds nothing).
fn hash_secrets(h: &mut blake3::Hasher, spec: &BuildSpec) {
    if spec.secrets.is_empty() && spec.ssh.is_empty() {
        return;
    }
    field(h, b"secrets");
    for s in &spec.secrets {
        field(h, s.id.as_bytes());
        match &s.source {
            SecretSource::Env(v) => field(h, format!("env {v}").as_bytes()),
            SecretSource::File(p) => field(h, format!("file {p}").as_bytes()),
        }
    }
    for s in &spec.ssh {
        field(h, s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::compose::BuildArg;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/deep")).unwrap();
        fs::write(d.path().join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        fs::write(d.path().join("src/a.txt"), "a").unwrap();
        fs::write(d.path().join("src/deep/b.txt"), "b").unwrap();
        fs::write(d.path().join("notes.log"), "log").unwrap();
        d
    }

    fn spec(d: &Path) -> BuildSpec {
        BuildSpec {
            context: d.display().to_string(),
            dockerfile: Some(d.join("Dockerfile").display().to_string()),
            args: vec![BuildArg {
                name: "X".into(),
                value: ArgValue::Literal("1".into()),
            }],
            target: None,
            platform: None,
            ..Default::default()
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_digest_changes_when_and_only_when_an_input_changes() {
        let d = tree();
        let s = spec(d.path());
        let base = digest(&s, &no_env).unwrap();
        assert_eq!(base.len(), 64);
        assert_eq!(digest(&s, &no_env).unwrap(), base, "stable");

        // Content, a new file, a rename, the executable bit, a symlink.
        type Change = Box<dyn Fn(&Path)>;
        let changes: Vec<Change> = vec![
            Box::new(|p| fs::write(p.join("src/a.txt"), "A").unwrap()),
            Box::new(|p| fs::write(p.join("src/new.txt"), "").unwrap()),
            Box::new(|p| fs::rename(p.join("src/a.txt"), p.join("src/c.txt")).unwrap()),
            Box::new(|p| fs::create_dir(p.join("empty")).unwrap()),
            Box::new(|p| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(p.join("src/a.txt"), fs::Permissions::from_mode(0o755)).unwrap()
            }),
            Box::new(|p| std::os::unix::fs::symlink("a.txt", p.join("src/link")).unwrap()),
            Box::new(|p| fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap()),
        ];
        for (n, change) in changes.iter().enumerate() {
            let d = tree();
            change(d.path());
            assert_ne!(
                digest(&spec(d.path()), &no_env).unwrap(),
                base,
                "change {n}"
            );
        }

        // Args, target, an inherited arg's value, the platform.
        let mut s2 = s.clone();
        s2.args[0].value = ArgValue::Literal("2".into());
        assert_ne!(digest(&s2, &no_env).unwrap(), base);
        let mut s3 = s.clone();
        s3.target = Some("prod".into());
        assert_ne!(digest(&s3, &no_env).unwrap(), base);
        let mut s4 = s.clone();
        s4.args[0].value = ArgValue::Inherit;
        let with = |v: &'static str| move |k: &str| (k == "X").then(|| v.to_string());
        assert_ne!(
            digest(&s4, &with("a")).unwrap(),
            digest(&s4, &with("b")).unwrap()
        );
        let plat = |k: &str| (k == "DOCKER_DEFAULT_PLATFORM").then(|| "linux/arm64".to_string());
        assert_ne!(digest(&s, &plat).unwrap(), base);
        // The service's platform counts, and wins over docker's default.
        let mut s5 = s.clone();
        s5.platform = Some("linux/arm64".into());
        assert_eq!(digest(&s5, &no_env).unwrap(), digest(&s, &plat).unwrap());
        let amd = |k: &str| (k == "DOCKER_DEFAULT_PLATFORM").then(|| "linux/amd64".to_string());
        assert_eq!(digest(&s5, &amd).unwrap(), digest(&s5, &no_env).unwrap());
    }

    #[test]
    fn what_docker_would_not_receive_does_not_count() {
        let d = tree();
        fs::write(d.path().join(".dockerignore"), "*.log\n").unwrap();
        let base = digest(&spec(d.path()), &no_env).unwrap();
        fs::write(d.path().join("notes.log"), "changed").unwrap();
        fs::write(d.path().join("more.log"), "new").unwrap();
        assert_eq!(digest(&spec(d.path()), &no_env).unwrap(), base);
        // The mtime is not content.
        fs::write(d.path().join("src/a.txt"), "a").unwrap();
        assert_eq!(digest(&spec(d.path()), &no_env).unwrap(), base);
        // A Dockerfile-specific ignore file: BuildKit reads it when given
        // the Dockerfile's path, the classic builder never, so what either
        // lets through counts: `*.log` (BuildKit sends it now) and src/deep
        // (the classic builder still does).
        fs::write(d.path().join("Dockerfile.dockerignore"), "src/deep\n").unwrap();
        let beside = digest(&spec(d.path()), &no_env).unwrap();
        assert_ne!(beside, base, "*.log counts again");
        fs::write(d.path().join("src/deep/b.txt"), "changed").unwrap();
        assert_ne!(digest(&spec(d.path()), &no_env).unwrap(), beside);
    }

    #[test]
    fn a_dockerfile_outside_the_context_counts() {
        let d = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("Dockerfile.x"), "FROM scratch\n").unwrap();
        let mut s = spec(d.path());
        s.dockerfile = Some(outside.path().join("Dockerfile.x").display().to_string());
        let base = digest(&s, &no_env).unwrap();
        fs::write(
            outside.path().join("Dockerfile.x"),
            "FROM scratch\nLABEL a=b\n",
        )
        .unwrap();
        assert_ne!(digest(&s, &no_env).unwrap(), base);
    }
}
