//! One run at a time per output file: the file itself is locked (flock,
//! through a read-only handle that writes nothing), so two runs on the same
//! file cannot lose each other's change. The second run fails at once with
//! a message saying so.
//!
//! The lock is on the file, not on a file beside it: nothing of this
//! program's is ever created in the app's directory, where a build context
//! (`build: .`) would send it to docker. An output that does not exist yet,
//! or is a FIFO or a device, has nothing to lose and is not locked.

use crate::running::output::{self, Place};
use anyhow::{anyhow, bail, Result};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::Path;

#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Take the lock for `target` (a symlink's target, as it is what is
/// written), or fail saying another run holds it.
pub fn lock(target: &Path) -> Result<Option<FileLock>> {
    if output::check_writable(target)? == Place::Stream {
        return Ok(None);
    }
    let real = output::real_path(target);
    loop {
        let file = match OpenOptions::new().read(true).open(&real) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow!("cannot open {} to lock it: {e}", real.display())),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "{} is being rewritten by another run of convox-build-off-cluster; wait for that run to finish, then run again",
                target.display()
            ),
            Err(TryLockError::Error(e)) => {
                bail!("cannot lock {}: {e}", real.display())
            }
        }
        // A run that finished replaced the file: a lock on the file that
        // is no longer at the path does not count.
        if same_file(&file, &real) {
            return Ok(Some(FileLock { _file: file }));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_and_no_file_is_made_beside_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("c.yml");
        fs::write(&target, "x").unwrap();
        let first = lock(&target).unwrap();
        assert!(first.is_some());
        let err = lock(&target).unwrap_err().to_string();
        assert!(err.contains("another run"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(first);
        let again = lock(&target).unwrap();
        assert!(again.is_some());
    }

    #[test]
    fn a_lock_on_a_replaced_file_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("c.yml");
        fs::write(&target, "x").unwrap();
        let first = lock(&target).unwrap();
        // The first run writes its result (a new file at the path).
        crate::running::output::write(&target, b"y", None).unwrap();
        let second = lock(&target).unwrap();
        assert!(second.is_some(), "the new file is free");
        drop(first);
    }
}
