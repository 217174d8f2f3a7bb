//! One run at a time per output file: a lock file next to it
//! (`.NAME.lock`, held with flock), so two runs on the same file cannot
//! tear it. The second run fails at once with a message naming the lock.

use anyhow::{anyhow, bail, Result};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    _file: File,
}

/// The lock file for `target` (a symlink's target, as it is what is written).
pub fn lock_path(target: &Path) -> PathBuf {
    let real = crate::running::output::real_path(target);
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    real.with_file_name(format!(".{name}.lock"))
}

/// Take the lock for `target`, or fail saying who holds it.
pub fn lock(target: &Path) -> Result<FileLock> {
    // The lock file goes where the output goes: the same check first.
    crate::running::output::check_writable(target)?;
    let path = lock_path(target);
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| anyhow!("cannot create the lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "{} is being rewritten by another run of convox-build-off-cluster (it holds {}); wait for that run to finish, then run again",
                target.display(),
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                bail!("cannot lock {}: {e}", path.display())
            }
        }
        // The holder removes the lock file when it is done; a lock taken on
        // a file that is no longer at the path does not count.
        if same_file(&file, &path) {
            crate::running::interrupt::track_temp_file(path.clone());
            return Ok(FileLock { path, _file: file });
        }
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Remove while still holding the lock; the file handle closes after.
        let _ = fs::remove_file(&self.path);
        crate::running::interrupt::untrack_temp_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_and_the_file_goes_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("c.yml");
        let first = lock(&target).unwrap();
        assert!(dir.path().join(".c.yml.lock").exists());
        let err = lock(&target).unwrap_err().to_string();
        assert!(err.contains("another run"), "{err}");
        drop(first);
        assert!(!dir.path().join(".c.yml.lock").exists());
        let again = lock(&target).unwrap();
        drop(again);
    }
}
