//! Writing the rewritten file.
//!
//! - A regular file (or a new one) is replaced atomically: a temporary file
//!   in the same directory, fsync, rename. It keeps the old file's mode, and
//!   its owner and group where this process may set them (root may: a
//!   container action running as root over the runner's checkout leaves the
//!   file the runner's user's).
//! - A symlink is written through, to its target.
//! - A FIFO or a character device (`-o /dev/stdout`, `/dev/null`, a pipe)
//!   is never replaced: it is opened and written. A FIFO that nobody reads
//!   is an error, not a wait.
//! - Anything else (a directory, a socket, a block device) is refused
//!   before any build ([`check_writable`]).

use crate::read::regular::kind_of;
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

/// How the output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A regular file, or none yet: replaced atomically.
    File,
    /// A FIFO or a character device: opened and written, never replaced.
    Stream,
}

/// How `path` (through a symlink) is written, or why it cannot be.
pub fn place(path: &Path) -> Result<Place> {
    let path = real_path(path);
    match fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(Place::File),
        Ok(m) if is_stream(&m.file_type()) => Ok(Place::Stream),
        Ok(m) => Err(anyhow!(
            "cannot write {}: it is {}; the output is a regular file, a FIFO or a character device",
            path.display(),
            kind_of(&m.file_type())
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Place::File),
        Err(e) => Err(anyhow!("cannot write {}: {e}", path.display())),
    }
}

#[cfg(unix)]
fn is_stream(ft: &fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    ft.is_fifo() || ft.is_char_device()
}

#[cfg(not(unix))]
fn is_stream(_: &fs::FileType) -> bool {
    false
}

/// Check, before any build, that `path` can be written: a FIFO or a
/// character device, or a place whose directory accepts a new file. How it
/// will be written.
pub fn check_writable(path: &Path) -> Result<Place> {
    if place(path)? == Place::Stream {
        return Ok(Place::Stream);
    }
    let path = real_path(path);
    let dir = dir_of(&path);
    tempfile::Builder::new()
        .prefix(".convox-build-off-cluster-check")
        .tempfile_in(&dir)
        .map(|_| Place::File)
        .map_err(|e| {
            anyhow!(
                "cannot write {}: its directory {} does not accept a new file ({e})",
                path.display(),
                dir.display()
            )
        })
}

/// The compose file as it was read: it must still be so when the output
/// replaces it, else an edit saved while the builds ran would be lost.
#[derive(Debug, Clone, Copy)]
pub struct AsRead<'a> {
    pub path: &'a Path,
    pub bytes: &'a [u8],
}

impl AsRead<'_> {
    /// Is the file still what was read?
    fn unchanged(&self) -> bool {
        let Ok(meta) = fs::metadata(self.path) else {
            return false;
        };
        if !meta.is_file() || meta.len() != self.bytes.len() as u64 {
            return false;
        }
        fs::read(self.path).is_ok_and(|now| now == self.bytes)
    }
}

/// Write `contents` to `path`: replaced atomically, or, for a FIFO or a
/// character device, written into. When `read` is given and the compose
/// file is no longer what was read, nothing is replaced: the rewritten text
/// goes beside it (`FILE.rewritten`) and the run stops with an error.
pub fn write(path: &Path, contents: &[u8], read: Option<AsRead<'_>>) -> Result<()> {
    match place(path)? {
        Place::Stream => {
            if let Some(r) = read.filter(|r| !r.unchanged()) {
                return Err(changed(r.path, None));
            }
            write_stream(path, contents)
        }
        Place::File => write_atomic(path, contents, read),
    }
}

fn changed(compose: &Path, beside: Option<&Path>) -> anyhow::Error {
    let kept = match beside {
        Some(b) => format!("; the rewritten text is in {}", b.display()),
        None => String::new(),
    };
    anyhow!(
        "{} changed while the builds ran (it is no longer what was read), so it is left as it is, with your edit{kept}; run again to rewrite the file as it is now (what was pushed is kept in the registry)",
        compose.display()
    )
}

/// Open a FIFO or device and write into it. Opening without blocking tells
/// a FIFO nobody reads (ENXIO); the writes themselves then block as usual.
#[cfg(unix)]
fn write_stream(path: &Path, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) => anyhow!(
                "cannot write {}: it is a FIFO that nobody reads",
                path.display()
            ),
            _ => anyhow!("cannot write {}: {e}", path.display()),
        })?;
    // Back to blocking writes: a reader that is slow is waited for.
    let fd = file.as_raw_fd();
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags >= 0 {
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    }
    (&file)
        .write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(not(unix))]
fn write_stream(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// Replace `path` with `contents` atomically, unless the compose file
/// changed since it was read.
fn write_atomic(path: &Path, contents: &[u8], read: Option<AsRead<'_>>) -> Result<()> {
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
    let beside = PathBuf::from(format!("{}.rewritten", path.display()));
    let persisted = crate::running::interrupt::unless_stopped(|| match read {
        Some(r) if !r.unchanged() => Err(match tmp.persist(&beside) {
            Ok(_) => changed(r.path, Some(&beside)),
            Err(_) => changed(r.path, None),
        }),
        _ => Ok(tmp.persist(&path)),
    })
    .ok_or_else(|| anyhow!("stopped: {} is left as it was", path.display()))??;
    persisted.map_err(|e| anyhow!("cannot replace {}: {}", path.display(), e.error))?;
    crate::running::interrupt::rewritten();
    // Make the rename itself durable.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_temp(tmp: &mut tempfile::NamedTempFile, path: &Path, contents: &[u8]) -> Result<()> {
    tmp.write_all(contents)
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    let old = fs::metadata(path).ok();
    if let Some(perms) = old
        .as_ref()
        .map(|m| m.permissions())
        .or_else(new_file_permissions)
    {
        fs::set_permissions(tmp.path(), perms)
            .with_context(|| format!("cannot set permissions on {}", tmp.path().display()))?;
    }
    if let Some(old) = &old {
        keep_owner(tmp, old)?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot flush {}", tmp.path().display()))
}

/// The replacement gets the old file's owner and group. Root may always
/// set them; anyone else only to what it already is or a group of its own,
/// so a refusal there is left as it is (the rename then gives the file this
/// user's, as any editor's save would).
#[cfg(unix)]
fn keep_owner(tmp: &tempfile::NamedTempFile, old: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(now) = tmp.as_file().metadata() else {
        return Ok(());
    };
    if (now.uid(), now.gid()) == (old.uid(), old.gid()) {
        return Ok(());
    }
    match std::os::unix::fs::fchown(tmp.as_file(), Some(old.uid()), Some(old.gid())) {
        Ok(()) => Ok(()),
        Err(_) if unsafe { libc::geteuid() } != 0 => Ok(()),
        Err(e) => Err(anyhow!(
            "cannot give {} the owner {}:{} of the file it replaces: {e}",
            tmp.path().display(),
            old.uid(),
            old.gid()
        )),
    }
}

#[cfg(not(unix))]
fn keep_owner(_: &tempfile::NamedTempFile, _: &fs::Metadata) -> Result<()> {
    Ok(())
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
        write_atomic(&f, b"new", None).unwrap();
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
        write_atomic(&f, b"x", None).unwrap();
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
        write_atomic(&link, b"new", None).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    }

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn a_fifo_is_written_into_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out.fifo");
        mkfifo(&f);
        let e = write(&f, b"new", None).unwrap_err().to_string();
        assert!(e.contains("a FIFO that nobody reads"), "{e}");
        let reader = {
            let f = f.clone();
            // Opening for reading blocks until the writer opens: the
            // reader waits for the write, no sleep needed.
            std::thread::spawn(move || fs::read(&f).unwrap())
        };
        // The write can start before the reader has opened: retry until it
        // is there (each failed attempt returns at once).
        while write(&f, b"new", None).is_err() {
            std::thread::yield_now();
        }
        assert_eq!(reader.join().unwrap(), b"new");
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(&f).unwrap().file_type().is_fifo());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_character_device_is_written_into_through_a_symlink() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("null.yml");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        check_writable(&link).unwrap();
        write(&link, b"new", None).unwrap();
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_socket_is_refused_before_any_build() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = check_writable(&sock).unwrap_err().to_string();
        assert!(e.contains("it is a socket"), "{e}");
    }

    #[test]
    fn the_owner_and_group_are_kept_when_root() {
        use std::os::unix::fs::MetadataExt;
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: only root may give a file another owner");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yml");
        fs::write(&f, "old").unwrap();
        std::os::unix::fs::chown(&f, Some(4321), Some(4322)).unwrap();
        write(&f, b"new", None).unwrap();
        let m = fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 4322));
        assert_eq!(fs::read_to_string(&f).unwrap(), "new");
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
