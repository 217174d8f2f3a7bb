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
use anyhow::{anyhow, bail, Result};
use std::fs;
use std::path::Path;

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

/// The context relative to `root`, when it is strictly inside it: by its
/// real path (a context that is a symlink, `web -> services/web`, is where
/// its link leads, as the rack's docker reaches it in the unpacked upload),
/// `/`-separated. A context whose real path leaves the app directory is not
/// below it.
pub fn context_below(root: &Path, context: &Path) -> Option<String> {
    if let (Ok(real_root), Ok(real)) = (fs::canonicalize(root), fs::canonicalize(context)) {
        return below(&real_root, &real);
    }
    let root = if root == Path::new(".") {
        Path::new("")
    } else {
        root
    };
    below(root, context)
}

fn below(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
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

/// The upload walk's state at the directory `rel` (below the app
/// directory, `/`-separated); the first directory on the way that the walk
/// does not enter, when one is.
pub fn state_at(ignore: &Ignore, rel: &str) -> Result<DirState, String> {
    let mut state = ignore.root();
    let mut path = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        path = if path.is_empty() {
            part.to_string()
        } else {
            format!("{path}/{part}")
        };
        match ignore.entry(&state, &path, true).enter {
            Some(s) => state = s,
            None => return Err(path),
        }
    }
    Ok(state)
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
        let state = match state_at(&ignore, &prefix) {
            Ok(state) => state,
            Err(path) => bail!(
                "the build context {} is left out of Convox's upload by {} (`{path}`), so the rack would not have it",
                context.display(),
                file.display()
            ),
        };
        Ok(Some(Upload {
            ignore,
            prefix,
            state,
        }))
    }

    /// The root `.dockerignore`'s rules, from the app directory.
    pub fn ignore(&self) -> &Ignore {
        &self.ignore
    }

    /// The context's real path below the app directory.
    pub fn prefix(&self) -> &str {
        &self.prefix
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An app directory holding these files (path, text).
    pub(crate) fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let p = d.path().join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        d
    }

    #[test]
    fn the_upload_holds_what_the_root_dockerignore_leaves() {
        let app = tree(&[
            (".dockerignore", "**/.env\nweb/secret.txt\n"),
            ("web/.env", "TOKEN=x"),
            ("web/secret.txt", "s"),
            ("web/app.txt", "a"),
            ("web/sub/.env", "e"),
        ]);
        let u = Upload::for_context(app.path(), &app.path().join("web"))
            .unwrap()
            .unwrap();
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
