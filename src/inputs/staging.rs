//! The staged copy of the upload: what Convox uploads of the app directory
//! (`inputs::upload`), laid out as the rack unpacks it, so that docker
//! builds a context from exactly those files.
//!
//! The rules, and why:
//! 1. **One tree per run, at the app's own paths.** The rack unpacks one
//!    tarball of the whole app directory and builds each context in it. The
//!    staged tree holds each staged context at its path below the app
//!    directory (`<run>/upload/web`), so a relative symlink (`web/Dockerfile
//!    -> ../docker/web.Dockerfile`) leads where it leads on the rack.
//! 2. **Links are kept as links, and followed as the kernel follows them.**
//!    Convox's tar (docker 20.10's `archive.TarWithOptions`, convox/convox
//!    `pkg/common/tar.go`) stores a symlink as a link; docker reads a
//!    context's `Dockerfile` and `.dockerignore` through theirs. So each
//!    link is recreated with its text, and what it leads to inside the app
//!    directory (component by component, links on the way included, `..`
//!    after a link taken from where the link led) is staged too, when the
//!    upload holds it. A link that leaves the app directory, or that the
//!    upload leaves out, leads nowhere here, as on the rack.
//! 3. **A context that is a link** is staged where it leads (its real path,
//!    `upload::context_below`), and the root `.dockerignore` applies to that
//!    path.
//! 4. **Files** are hard links to the originals where the filesystem allows
//!    (else copies with their mode and times); FIFOs, sockets and devices are
//!    left out (the rack's unpacking makes nothing of them). Directories are
//!    made 0700 and given their own mode only once filled, so a 0555
//!    directory stages as one.
//! 5. **Private.** The run's directory is made fresh, 0700, with a name
//!    nobody can predict, under an absolute `TMPDIR` that exists (else
//!    `/tmp`); nothing there is followed or reused. See `run_dir`.

use crate::inputs::dockerignore::{DirState, Ignore};
use crate::inputs::upload::{self, Upload};
use anyhow::{anyhow, Context, Result};
use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// How many links a path may pass through, as Linux allows (`ELOOP`).
const MAX_LINKS: usize = 40;

/// The directory under which the run's private directory is made: `TMPDIR`
/// when it names an absolute path to an existing directory, else `/tmp`. An
/// empty or relative `TMPDIR` would put the copy in (or under) the app, and
/// one that does not exist is not created.
pub fn temp_base() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// This run's private directory (not yet made: `running::stage` makes it,
/// fresh and 0700, when a build needs it): the staged tree and the bake's
/// metadata files. Its name ends in 64 random bits, so nobody can plant it.
pub fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        temp_base().join(format!(
            "convox-build-off-cluster.{}.{:016x}",
            std::process::id(),
            random()
        ))
    })
}

/// 64 bits from the operating system's random source (std seeds its hash
/// keys from it), never from the time or the process id alone.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// Where the staged tree is, in the run's directory.
pub fn tree_dir() -> PathBuf {
    run_dir().join("upload")
}

/// Where a context whose real path below the app is `prefix` is staged.
pub fn staged_context(prefix: &str) -> PathBuf {
    join_rel(tree_dir(), prefix)
}

/// `base` joined with a `/`-separated relative path.
fn join_rel(base: PathBuf, rel: &str) -> PathBuf {
    rel.split('/').fold(base, |p, part| p.join(part))
}

/// Each filesystem change the staging makes goes through `Gate`: the
/// interrupt handler closes it before removing the tree, so nothing is made
/// after that.
pub type Gate<'a> =
    &'a (dyn Fn(&mut dyn FnMut() -> std::io::Result<()>) -> std::io::Result<()> + Sync);

/// The staged tree of one run, filled context by context.
pub struct Tree<'a> {
    root: PathBuf,
    to: PathBuf,
    ignore: Ignore,
    gate: Gate<'a>,
    /// App-relative paths staged whole.
    done: HashSet<String>,
    /// Directories made, and the mode each gets once filled.
    made: Vec<(PathBuf, fs::Permissions)>,
    made_set: HashSet<PathBuf>,
}

impl<'a> Tree<'a> {
    /// A tree for the app at `root` (which has a root `.dockerignore`),
    /// staged into `to` (which must not exist yet; its parent does).
    pub fn new(root: &Path, to: &Path, context: &Path, gate: Gate<'a>) -> Result<Tree<'a>> {
        let upload = Upload::for_context(root, context)?
            .ok_or_else(|| anyhow!("internal error: nothing to stage for {}", context.display()))?;
        let mut tree = Tree {
            root: fs::canonicalize(root)
                .with_context(|| format!("cannot read {}", root.display()))?,
            to: to.to_path_buf(),
            ignore: upload.ignore().clone(),
            gate,
            done: HashSet::new(),
            made: Vec::new(),
            made_set: HashSet::new(),
        };
        let mode = fs::metadata(&tree.root)
            .with_context(|| format!("cannot read {}", root.display()))?
            .permissions();
        tree.mkdir(to.to_path_buf(), mode)?;
        Ok(tree)
    }

    /// Stage the context whose real path below the app is `prefix`, and
    /// whatever its links lead to inside the upload.
    pub fn stage(&mut self, prefix: &str) -> Result<()> {
        let mut links = Vec::new();
        self.stage_path(prefix, &mut links)?;
        let mut seen = HashSet::new();
        while let Some(link) = links.pop() {
            if seen.insert(link.clone()) {
                self.follow(&link, &mut links)?;
            }
        }
        Ok(())
    }

    /// Give each directory its own mode, the deepest first.
    pub fn finish(mut self) -> Result<()> {
        self.made
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (dir, mode) in &self.made {
            (self.gate)(&mut || fs::set_permissions(dir, mode.clone()))
                .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
        }
        Ok(())
    }

    fn covered(&self, rel: &str) -> bool {
        let mut at = rel;
        loop {
            if self.done.contains(at) {
                return true;
            }
            match at.rfind('/') {
                Some(i) => at = &at[..i],
                None => return false,
            }
        }
    }

    fn dest(&self, rel: &str) -> PathBuf {
        join_rel(self.to.clone(), rel)
    }

    fn mkdir(&mut self, dest: PathBuf, mode: fs::Permissions) -> Result<()> {
        if self.made_set.contains(&dest) {
            return Ok(());
        }
        (self.gate)(&mut || {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new().mode(0o700).create(&dest)
        })
        .with_context(|| format!("cannot create {}", dest.display()))?;
        self.made_set.insert(dest.clone());
        self.made.push((dest, mode));
        Ok(())
    }

    /// Make the staged directories above `rel`, each with its original's
    /// mode once filled.
    fn parents(&mut self, rel: &str) -> Result<()> {
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 1..parts.len() {
            let sub = parts[..i].join("/");
            let mode = fs::metadata(self.root.join(&sub))
                .with_context(|| format!("cannot read {}", self.root.join(&sub).display()))?
                .permissions();
            self.mkdir(self.dest(&sub), mode)?;
        }
        Ok(())
    }

    /// Stage the app-relative `rel` whatever it is, when the upload holds it.
    fn stage_path(&mut self, rel: &str, links: &mut Vec<String>) -> Result<()> {
        if self.covered(rel) {
            return Ok(());
        }
        let from = self.root.join(rel);
        let Ok(meta) = fs::symlink_metadata(&from) else {
            return Ok(());
        };
        if meta.is_dir() {
            let Ok(state) = upload::state_at(&self.ignore, rel) else {
                return Ok(());
            };
            self.parents(rel)?;
            self.mkdir(self.dest(rel), meta.permissions())?;
            self.walk(rel, state, links)?;
        } else if self.ignore.sends(rel) {
            self.parents(rel)?;
            self.place(&from, &self.dest(rel), &meta.file_type())?;
            if meta.file_type().is_symlink() {
                links.push(rel.to_string());
            }
        }
        self.done.insert(rel.to_string());
        Ok(())
    }

    /// The directory `rel` (made), filled with what the upload holds of it.
    fn walk(&mut self, rel: &str, state: DirState, links: &mut Vec<String>) -> Result<()> {
        let mut stack = vec![(rel.to_string(), state)];
        while let Some((dir, state)) = stack.pop() {
            let from_dir = self.root.join(&dir);
            let entries = fs::read_dir(&from_dir)
                .with_context(|| format!("cannot read {}", from_dir.display()))?;
            for e in entries {
                let e = e.with_context(|| format!("cannot read {}", from_dir.display()))?;
                let child = format!("{dir}/{}", e.file_name().to_string_lossy());
                let from = e.path();
                let meta = fs::symlink_metadata(&from)
                    .with_context(|| format!("cannot read {}", from.display()))?;
                let ft = meta.file_type();
                let v = self.ignore.entry(&state, &child, ft.is_dir());
                if ft.is_dir() {
                    if let Some(inner) = v.enter {
                        self.mkdir(self.dest(&child), meta.permissions())?;
                        stack.push((child, inner));
                    }
                } else if v.sent {
                    self.place(&from, &self.dest(&child), &ft)?;
                    if ft.is_symlink() {
                        links.push(child);
                    }
                }
            }
        }
        Ok(())
    }

    /// Follow the link at `rel` as the kernel would, inside the app
    /// directory: each link on the way is staged as a link, and where it
    /// leads is staged whole.
    fn follow(&mut self, rel: &str, links: &mut Vec<String>) -> Result<()> {
        let target = fs::read_link(self.root.join(rel))
            .with_context(|| format!("cannot read the link {}", self.root.join(rel).display()))?;
        let mut at: Vec<String> = rel.split('/').map(String::from).collect();
        at.pop();
        let mut budget = MAX_LINKS;
        if let Some(end) = self.resolve(at, &target, &mut budget, links)? {
            if !end.is_empty() {
                self.stage_path(&end.join("/"), links)?;
            }
        }
        Ok(())
    }

    /// Where `target`, read in the app-relative directory `at`, leads: None
    /// when it leaves the app directory, dangles, or loops.
    fn resolve(
        &mut self,
        mut at: Vec<String>,
        target: &Path,
        budget: &mut usize,
        links: &mut Vec<String>,
    ) -> Result<Option<Vec<String>>> {
        for c in target.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => {
                    if at.pop().is_none() {
                        return Ok(None);
                    }
                }
                Component::Normal(name) => {
                    at.push(name.to_string_lossy().into_owned());
                    let rel = at.join("/");
                    let Ok(meta) = fs::symlink_metadata(self.root.join(&rel)) else {
                        return Ok(None);
                    };
                    if meta.file_type().is_symlink() {
                        if *budget == 0 || !self.ignore.sends(&rel) {
                            return Ok(None);
                        }
                        *budget -= 1;
                        self.stage_path(&rel, links)?;
                        let next = fs::read_link(self.root.join(&rel))
                            .with_context(|| format!("cannot read the link {rel}"))?;
                        at.pop();
                        match self.resolve(at, &next, budget, links)? {
                            Some(end) => at = end,
                            None => return Ok(None),
                        }
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Ok(None),
            }
        }
        Ok(Some(at))
    }

    /// One entry (not a directory) of the staged tree; one already there
    /// (staged through another path) is left.
    fn place(&self, from: &Path, dest: &Path, ft: &fs::FileType) -> Result<()> {
        if fs::symlink_metadata(dest).is_ok() {
            return Ok(());
        }
        if ft.is_symlink() {
            let target = fs::read_link(from)
                .with_context(|| format!("cannot read the link {}", from.display()))?;
            return (self.gate)(&mut || std::os::unix::fs::symlink(&target, dest))
                .with_context(|| format!("cannot make the link {}", dest.display()));
        }
        if !ft.is_file() {
            return Ok(());
        }
        if (self.gate)(&mut || fs::hard_link(from, dest)).is_ok() {
            return Ok(());
        }
        (self.gate)(&mut || copy_with_times(from, dest))
            .with_context(|| format!("cannot copy {} to {}", from.display(), dest.display()))
    }
}

/// A copy with the original's mode (fs::copy keeps it) and times, set
/// through a read-only handle, so a 0444 file's copy takes them too.
fn copy_with_times(from: &Path, dest: &Path) -> std::io::Result<()> {
    fs::copy(from, dest)?;
    let meta = fs::metadata(from)?;
    let now = std::time::SystemTime::now();
    let times = fs::FileTimes::new()
        .set_accessed(meta.accessed().unwrap_or(now))
        .set_modified(meta.modified().unwrap_or(now));
    fs::File::open(dest)?.set_times(times)
}

/// Remove a tree this run made, whatever modes its directories were given:
/// each directory is made writable (never through a link) before it is
/// emptied.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    // Every entry is tried; the first failure is returned.
    let mut first = Ok(());
    for e in fs::read_dir(path)? {
        if let Err(err) = e.and_then(|e| remove_tree(&e.path())) {
            first = first.and(Err(err));
        }
    }
    first?;
    match fs::remove_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::upload::tests::tree;
    use std::os::unix::fs::PermissionsExt;

    fn open(f: &mut dyn FnMut() -> std::io::Result<()>) -> std::io::Result<()> {
        f()
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

    fn staged(app: &Path, context: &str) -> (tempfile::TempDir, PathBuf) {
        let to = tempfile::tempdir().unwrap();
        let dest = to.path().join("upload");
        let mut t = Tree::new(app, &dest, &app.join(context), &open).unwrap();
        let prefix = upload::context_below(app, &app.join(context)).unwrap();
        t.stage(&prefix).unwrap();
        t.finish().unwrap();
        (to, dest)
    }

    #[test]
    fn the_root_dockerignore_applies_and_the_contexts_own_is_left_for_docker() {
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
            ("other/file", "o"),
        ]);
        let (_to, dest) = staged(app.path(), "web");
        assert_eq!(
            listing(&dest),
            [
                "web/.dockerignore",
                "web/app.txt",
                "web/logs/keep.log",
                "web/x.tmp"
            ]
        );
    }

    #[test]
    fn a_relative_link_leads_where_it_leads_in_the_app_and_only_into_the_upload() {
        let app = tree(&[
            (".dockerignore", "secret\n"),
            ("common/dockerignore", ".env\n"),
            ("docker/web.Dockerfile", "FROM scratch\n"),
            ("secret/key", "k"),
            ("web/.env", "TOKEN=x"),
        ]);
        let web = app.path().join("web");
        std::os::unix::fs::symlink("../common/dockerignore", web.join(".dockerignore")).unwrap();
        std::os::unix::fs::symlink("../docker/web.Dockerfile", web.join("Dockerfile")).unwrap();
        std::os::unix::fs::symlink("../secret/key", web.join("key")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", web.join("abs")).unwrap();
        let (_to, dest) = staged(app.path(), "web");
        assert_eq!(
            fs::read_to_string(dest.join("web/.dockerignore")).unwrap(),
            ".env\n"
        );
        assert_eq!(
            fs::read_to_string(dest.join("web/Dockerfile")).unwrap(),
            "FROM scratch\n"
        );
        // The upload leaves secret/ out: the link dangles, as on the rack.
        assert!(fs::symlink_metadata(dest.join("web/key")).is_ok());
        assert!(fs::metadata(dest.join("web/key")).is_err());
        assert!(!dest.join("secret").exists());
        assert_eq!(
            fs::read_link(dest.join("web/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
    }

    #[test]
    fn a_context_that_is_a_link_is_filtered_by_its_real_path() {
        let app = tree(&[
            (".dockerignore", "services/web/secret.txt\n"),
            ("services/web/secret.txt", "s"),
            ("services/web/app.txt", "a"),
        ]);
        std::os::unix::fs::symlink("services/web", app.path().join("web")).unwrap();
        assert_eq!(
            upload::context_below(app.path(), &app.path().join("web")).as_deref(),
            Some("services/web")
        );
        let (_to, dest) = staged(app.path(), "web");
        assert_eq!(listing(&dest), ["services/web/app.txt"]);
    }

    #[test]
    fn a_read_only_directory_and_file_stage_and_the_tree_is_removed() {
        let app = tree(&[(".dockerignore", "x\n"), ("web/mod/a.go", "package a")]);
        let m = app.path().join("web/mod");
        fs::set_permissions(m.join("a.go"), fs::Permissions::from_mode(0o444)).unwrap();
        fs::set_permissions(&m, fs::Permissions::from_mode(0o555)).unwrap();
        let (_to, dest) = staged(app.path(), "web");
        let mode = fs::metadata(dest.join("web/mod"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o555);
        // A copy (not a link) takes the times through a read-only handle.
        let copy = dest.join("copy");
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
        copy_with_times(&m.join("a.go"), &copy).unwrap();
        assert_eq!(
            fs::metadata(&copy).unwrap().modified().unwrap(),
            fs::metadata(m.join("a.go")).unwrap().modified().unwrap()
        );
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&dest).unwrap();
        assert!(!dest.exists());
        fs::set_permissions(&m, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_temporary_base_is_an_absolute_existing_directory() {
        // Read only: the process environment is shared by the tests.
        let base = temp_base();
        assert!(base.is_absolute() && base.is_dir(), "{}", base.display());
        assert!(run_dir().starts_with(&base));
        assert_ne!(random(), random());
    }
}
