//! What Convox uploads: the app directory as every Convox CLI tars it, so
//! that a service's build context holds here exactly what it holds on the
//! rack.
//!
//! The rules, from Convox's own code:
//! 1. `convox build` (convox/convox `pkg/common/tar.go` `Tarball`; convox/rack
//!    `pkg/helpers/tar.go` for gen1/gen2) tars the app directory (here: the
//!    compose file's directory) with the patterns of its root `.dockerignore`
//!    excluded, through docker 20.10's `archive.TarWithOptions`: the legacy
//!    matcher (`pkg/fileutils`) and its walk (an excluded directory is
//!    entered only for an exception below it), paths relative to the app
//!    directory ([`crate::inputs::dockerignore`] has both).
//! 2. The rack unpacks it and builds each service from its context there:
//!    the context's own `.dockerignore` (or `<Dockerfile>.dockerignore`)
//!    applies on top, as docker applies it. An ignore file the upload left
//!    out does not apply at all.
//! 3. A context outside the app directory, or a remote one, is not part of
//!    the upload; this program builds it as it is. A context that is the app
//!    directory itself gets the same file twice: docker applying it once is
//!    the same.
//!
//! Docker gets exactly those files by building from a *staged* copy of the
//! context: a directory outside the app (under the system's temporary
//! directory) holding only what the upload would hold, each file hard-linked
//! to the original where the filesystem allows (else copied, its mode and
//! times kept), symlinks recreated with their target text. It is only made
//! when the root `.dockerignore` exists, and only for a context strictly
//! inside the app directory; the build's command names it instead of the
//! context, under every builder, so nothing depends on a builder's own
//! ignore-file rules.

use crate::inputs::dockerignore::{DirState, Ignore};
use crate::read::regular;
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The upload's filter as seen from one context: the root's rules, and the
/// context's path below the root.
#[derive(Debug, Clone)]
pub struct Upload {
    ignore: Ignore,
    /// The context relative to the app directory, `/`-separated.
    prefix: String,
    /// The walk's state at the context's directory.
    state: DirState,
}

/// The context relative to `root`, when it is strictly inside it.
pub fn context_below(root: &Path, context: &Path) -> Option<String> {
    let root = if root == Path::new(".") {
        Path::new("")
    } else {
        root
    };
    let rel = context.strip_prefix(root).ok()?;
    if !rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    let rel = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    (!rel.is_empty()).then_some(rel)
}

/// Is there a root `.dockerignore` that applies to this context?
pub fn applies(root: &Path, context: &Path) -> Result<bool> {
    Ok(context_below(root, context).is_some()
        && regular::exists_regular(&root.join(".dockerignore"))?)
}

impl Upload {
    /// The upload's filter for `context` inside `root`; None when there is
    /// no root `.dockerignore` or the context is not strictly inside the
    /// root. An error when the upload leaves the context out altogether.
    pub fn for_context(root: &Path, context: &Path) -> Result<Option<Upload>> {
        let Some(prefix) = context_below(root, context) else {
            return Ok(None);
        };
        let file = root.join(".dockerignore");
        if !regular::exists_regular(&file)? {
            return Ok(None);
        }
        let bytes = regular::read(&file, regular::TEXT_LIMIT)?;
        let ignore = Ignore::upload(&String::from_utf8_lossy(&bytes))
            .map_err(|e| anyhow!("{}:{e}; Convox's upload refuses it", file.display()))?;
        let mut state = ignore.root();
        let mut path = String::new();
        for part in prefix.split('/') {
            path = if path.is_empty() {
                part.to_string()
            } else {
                format!("{path}/{part}")
            };
            match ignore.entry(&state, &path, true).enter {
                Some(s) => state = s,
                None => bail!(
                    "the build context {} is left out of Convox's upload by {} (`{path}`), so the rack would not have it",
                    context.display(),
                    file.display()
                ),
            }
        }
        Ok(Some(Upload {
            ignore,
            prefix,
            state,
        }))
    }

    /// The walk's state at the context's root.
    pub fn root(&self) -> DirState {
        self.state.clone()
    }

    /// (the upload holds it, the walk enters it) for `rel` below the context.
    pub fn entry(&self, parent: &DirState, rel: &str, is_dir: bool) -> (bool, Option<DirState>) {
        let v = self
            .ignore
            .entry(parent, &format!("{}/{rel}", self.prefix), is_dir);
        (v.sent, v.enter)
    }

    /// Does the upload hold `rel` (below the context)? The walk from the
    /// app directory's root down (`Ignore::sends`).
    pub fn holds(&self, rel: &str) -> bool {
        self.ignore.sends(&format!("{}/{rel}", self.prefix))
    }
}

/// Where a context is staged: one directory per run, one per build in it.
pub fn staging_dir(build: usize, context: &Path) -> PathBuf {
    let name = context
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "context".into());
    std::env::temp_dir()
        .join(format!("convox-build-off-cluster.{}", std::process::id()))
        .join(format!("{build}-{name}"))
}

/// Make `to` hold what the upload holds of `context`: directories made,
/// files hard-linked (or copied), symlinks recreated. `to` must not exist.
pub fn stage(root: &Path, context: &Path, to: &Path) -> Result<()> {
    let upload = Upload::for_context(root, context)?
        .ok_or_else(|| anyhow!("internal error: nothing to stage for {}", context.display()))?;
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    copy_mode(context, to)?;
    let mut stack = vec![(
        context.to_path_buf(),
        to.to_path_buf(),
        String::new(),
        upload.root(),
    )];
    while let Some((from_dir, to_dir, prefix, state)) = stack.pop() {
        let entries = fs::read_dir(&from_dir)
            .with_context(|| format!("cannot read {}", from_dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot read {}", from_dir.display()))?;
            let name = e.file_name();
            let rel = match prefix.is_empty() {
                true => name.to_string_lossy().into_owned(),
                false => format!("{prefix}/{}", name.to_string_lossy()),
            };
            let (from, dest) = (e.path(), to_dir.join(&name));
            let ft = fs::symlink_metadata(&from)
                .with_context(|| format!("cannot read {}", from.display()))?
                .file_type();
            let (sent, enter) = upload.entry(&state, &rel, ft.is_dir());
            if ft.is_dir() {
                if let Some(inner) = enter {
                    fs::create_dir(&dest)
                        .with_context(|| format!("cannot create {}", dest.display()))?;
                    copy_mode(&from, &dest)?;
                    stack.push((from, dest, rel, inner));
                }
                continue;
            }
            if sent {
                place(&from, &dest, &ft)?;
            }
        }
    }
    Ok(())
}

/// One entry of the staged copy.
fn place(from: &Path, dest: &Path, ft: &fs::FileType) -> Result<()> {
    if ft.is_symlink() {
        let target = fs::read_link(from)
            .with_context(|| format!("cannot read the link {}", from.display()))?;
        return symlink(&target, dest);
    }
    if !ft.is_file() {
        // A FIFO, socket or device: docker sends its header only; the rack's
        // unpacking makes nothing of it. Left out.
        return Ok(());
    }
    if fs::hard_link(from, dest).is_ok() {
        return Ok(());
    }
    fs::copy(from, dest)
        .with_context(|| format!("cannot copy {} to {}", from.display(), dest.display()))?;
    let meta = fs::metadata(from).with_context(|| format!("cannot read {}", from.display()))?;
    let times = fs::FileTimes::new()
        .set_accessed(meta.accessed().unwrap_or(std::time::SystemTime::now()))
        .set_modified(meta.modified().unwrap_or(std::time::SystemTime::now()));
    fs::File::options()
        .write(true)
        .open(dest)
        .and_then(|f| f.set_times(times))
        .with_context(|| format!("cannot set the times of {}", dest.display()))
}

#[cfg(unix)]
fn symlink(target: &Path, dest: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, dest)
        .with_context(|| format!("cannot make the link {}", dest.display()))
}

#[cfg(not(unix))]
fn symlink(_: &Path, dest: &Path) -> Result<()> {
    bail!("cannot make the link {}", dest.display())
}

fn copy_mode(from: &Path, to: &Path) -> Result<()> {
    let perms = fs::metadata(from)
        .with_context(|| format!("cannot read {}", from.display()))?
        .permissions();
    fs::set_permissions(to, perms)
        .with_context(|| format!("cannot set the mode of {}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let p = d.path().join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        d
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        while let Some((d, prefix)) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let rel = format!("{prefix}{}", e.file_name().to_string_lossy());
                if e.file_type().unwrap().is_dir() {
                    stack.push((e.path(), format!("{rel}/")));
                } else {
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn the_root_dockerignore_applies_to_a_context_below_it() {
        let app = tree(&[
            (
                ".dockerignore",
                "**/.env\nweb/secret.txt\nweb/logs\n!web/logs/keep.log\n",
            ),
            ("web/.env", "TOKEN=x"),
            ("web/secret.txt", "s"),
            ("web/app.txt", "a"),
            ("web/.dockerignore", "*.tmp\n"),
            ("web/x.tmp", "t"),
            ("web/logs/a.log", "l"),
            ("web/logs/keep.log", "k"),
            ("web/sub/.env", "e"),
        ]);
        let web = app.path().join("web");
        let to = tempfile::tempdir().unwrap();
        let staged = to.path().join("web");
        stage(app.path(), &web, &staged).unwrap();
        // The context's own .dockerignore is for docker to apply: x.tmp is
        // in the upload.
        assert_eq!(
            listing(&staged),
            [".dockerignore", "app.txt", "logs/keep.log", "x.tmp"]
        );
        let u = Upload::for_context(app.path(), &web).unwrap().unwrap();
        assert!(!u.holds("secret.txt") && !u.holds("sub/.env") && u.holds("app.txt"));
    }

    #[test]
    fn no_root_file_or_the_root_itself_is_no_upload_filter_and_an_excluded_context_an_error() {
        let app = tree(&[("web/app.txt", "a")]);
        assert!(Upload::for_context(app.path(), &app.path().join("web"))
            .unwrap()
            .is_none());
        fs::write(app.path().join(".dockerignore"), "web\n").unwrap();
        assert!(Upload::for_context(app.path(), app.path())
            .unwrap()
            .is_none());
        let e = Upload::for_context(app.path(), &app.path().join("web")).unwrap_err();
        assert!(e.to_string().contains("left out of Convox's upload"), "{e}");
    }
}
