//! Writing the rewritten file: atomically (a temporary file in the same
//! directory, fsync, rename), keeping its permissions, through a symlink to
//! its target.

use anyhow::{anyhow, Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file that is really written: a symlink's target, else the path.
pub fn real_path(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).unwrap_or_else(|_| {
            // A dangling link: write where it points.
            let target = fs::read_link(path).unwrap_or_else(|_| path.to_path_buf());
            match path.parent() {
                Some(dir) if target.is_relative() => dir.join(target),
                _ => target,
            }
        }),
        _ => path.to_path_buf(),
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Check, before any build, that `path` can be written: its directory
/// accepts a new file and the path is not a directory.
pub fn check_writable(path: &Path) -> Result<()> {
    let path = real_path(path);
    if path.is_dir() {
        return Err(anyhow!(
            "cannot write {}: it is a directory",
            path.display()
        ));
    }
    let dir = dir_of(&path);
    tempfile::Builder::new()
        .prefix(".convox-build-off-cluster-check")
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|e| {
            anyhow!(
                "cannot write {}: its directory {} does not accept a new file ({e})",
                path.display(),
                dir.display()
            )
        })
}

/// Replace `path` with `contents` atomically.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let path = real_path(path);
    let dir = dir_of(&path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    crate::running::interrupt::track_temp_file(tmp.path().to_path_buf());
    let result = write_temp(&mut tmp, &path, contents);
    crate::running::interrupt::untrack_temp_file(tmp.path());
    result?;
    let persisted = crate::running::interrupt::unless_stopped(|| tmp.persist(&path))
        .ok_or_else(|| anyhow!("stopped: {} is left as it was", path.display()))?;
    persisted.map_err(|e| anyhow!("cannot replace {}: {}", path.display(), e.error))?;
    // Make the rename itself durable.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_temp(tmp: &mut tempfile::NamedTempFile, path: &Path, contents: &[u8]) -> Result<()> {
    tmp.write_all(contents)
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    if let Some(perms) = fs::metadata(path)
        .map(|m| m.permissions())
        .ok()
        .or_else(new_file_permissions)
    {
        fs::set_permissions(tmp.path(), perms)
            .with_context(|| format!("cannot set permissions on {}", tmp.path().display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot flush {}", tmp.path().display()))
}

/// A new file gets 0644, not the temporary file's private 0600.
#[cfg(unix)]
fn new_file_permissions() -> Option<fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Some(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn new_file_permissions() -> Option<fs::Permissions> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keeps_permissions_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yml");
        fs::write(&f, "old").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&f, b"new").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "new");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_new_file_gets_ordinary_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out.yml");
        write_atomic(&f, b"x").unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn writes_through_a_symlink_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.yml");
        let link = dir.path().join("link.yml");
        fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink("real.yml", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    }

    #[test]
    fn an_unwritable_place_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(&dir.path().join("missing-dir/x.yml")).is_err());
        assert!(check_writable(dir.path()).is_err());
        assert!(check_writable(&dir.path().join("ok.yml")).is_ok());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
