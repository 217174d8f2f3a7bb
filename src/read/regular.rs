//! Opening a file a user names (the compose file, a Dockerfile, a
//! `.dockerignore`, `.git/HEAD`, the docker config, an `--env-file`): the
//! rules, whatever the file.
//!
//! - Only a regular file, or a symlink to one, is read. Anything else is
//!   refused with one message saying what it is: a directory, a FIFO, a
//!   character or block device, a socket.
//! - Opening never blocks: the file is opened with `O_NONBLOCK` (a FIFO with
//!   no writer would block an open for reading forever), and what was opened
//!   is checked again (`fstat`), so a file swapped between the look and the
//!   open is refused too.
//! - What is read is bounded: a file over the limit is refused, never cut
//!   (a part of a file is never read as the whole).

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The limit for a compose file or a Dockerfile: 16 MiB, far over any real one.
pub const TEXT_LIMIT: u64 = 16 << 20;

/// Why a file was not read.
#[derive(Debug)]
pub enum FileError {
    /// Not there, or not readable: the system's own error.
    Io(PathBuf, std::io::Error),
    /// There, but not a regular file: what it is.
    NotRegular(PathBuf, &'static str),
    /// Over the limit (in bytes).
    TooLarge(PathBuf, u64),
}

impl FileError {
    /// The file is not there (as opposed to there but unreadable).
    pub fn is_missing(&self) -> bool {
        matches!(self, FileError::Io(_, e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            FileError::NotRegular(p, what) => {
                write!(f, "{} is {what}, not a regular file", p.display())
            }
            FileError::TooLarge(p, limit) => write!(
                f,
                "{} is over {} MiB; this is not a file to read whole",
                p.display(),
                limit >> 20
            ),
        }
    }
}

impl std::error::Error for FileError {}

/// What a file that is not a regular file is, in words.
pub fn kind_of(ft: &fs::FileType) -> &'static str {
    if ft.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

/// Is `path` (through symlinks) a regular file? `Ok(false)` when it does not
/// exist; an error saying what it is when it is something else.
pub fn exists_regular(path: &Path) -> Result<bool, FileError> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(true),
        Ok(m) => Err(FileError::NotRegular(
            path.to_path_buf(),
            kind_of(&m.file_type()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FileError::Io(path.to_path_buf(), e)),
    }
}

/// Read the regular file at `path` whole, when it is at most `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let io = |e| FileError::Io(path.to_path_buf(), e);
    // Look first, so that opening a device has no effect at all.
    let meta = fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(
            path.to_path_buf(),
            kind_of(&meta.file_type()),
        ));
    }
    let file = open_nonblocking(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(
            path.to_path_buf(),
            kind_of(&meta.file_type()),
        ));
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge(path.to_path_buf(), limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte over the limit tells a file that grew since the look.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge(path.to_path_buf(), limit));
    }
    Ok(bytes)
}

/// Read it as UTF-8 text (a file that is not is an error naming it and
/// why: [`utf8_text`]).
pub fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    let bytes = read(path, limit).map_err(|e| e.to_string())?;
    utf8_text(path, bytes)
}

/// The bytes of a text file as UTF-8, or why not, at `file:line:col`
/// where there is a place: UTF-16 (with or without a byte-order mark), a
/// NUL byte, a byte that is not UTF-8.
pub fn utf8_text(path: &Path, bytes: Vec<u8>) -> Result<String, String> {
    let save = "save it as UTF-8";
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(format!(
            "{}: the file is UTF-16 (it starts with a UTF-16 byte-order mark); {save}",
            path.display()
        ));
    }
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        // ASCII text in UTF-16 has a NUL in every other byte.
        let pairs = bytes.len() / 2;
        let odd = bytes
            .iter()
            .skip(nul % 2)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count();
        if pairs >= 2 && odd * 10 >= pairs * 9 {
            return Err(format!(
                "{}: the file is UTF-16 (a NUL in every other byte, no byte-order mark); {save}",
                path.display()
            ));
        }
        return Err(format!(
            "{}: a NUL byte; a text file holds none (is this a binary file?)",
            place(path, &bytes[..nul])
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        format!("{}: the file is not valid UTF-8; {save}", place(path, good))
    })
}

/// `file:line:col` of the byte after `before`.
fn place(path: &Path, before: &[u8]) -> String {
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    format!("{}:{line}:{col}", path.display())
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<fs::File> {
    fs::File::open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn fifo(dir: &Path) -> PathBuf {
        let p = dir.join("fifo");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        p
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let p = fifo(d.path());
        let e = read(&p, TEXT_LIMIT).unwrap_err();
        assert!(e.to_string().contains("is a FIFO (named pipe)"), "{e}");
        // Through a symlink as well.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(
            read(&link, TEXT_LIMIT),
            Err(FileError::NotRegular(..))
        ));
    }

    #[test]
    fn devices_and_directories_say_what_they_are() {
        let e = read(Path::new("/dev/zero"), TEXT_LIMIT).unwrap_err();
        assert!(e.to_string().contains("is a character device"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let e = read(d.path(), TEXT_LIMIT).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = read(&d.path().join("none"), TEXT_LIMIT).unwrap_err();
        assert!(e.is_missing());
    }

    #[test]
    fn encodings_are_named_with_the_place() {
        let p = Path::new("f.yml");
        let e = utf8_text(p, b"a: 1\nb: \0\n".to_vec()).unwrap_err();
        assert_eq!(
            e,
            "f.yml:2:4: a NUL byte; a text file holds none (is this a binary file?)"
        );
        let utf16: Vec<u8> = "version: 2\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let e = utf8_text(p, utf16.clone()).unwrap_err();
        assert!(e.contains("UTF-16 (a NUL in every other byte"), "{e}");
        let mut bom = vec![0xFF, 0xFE];
        bom.extend(utf16);
        assert!(utf8_text(p, bom).unwrap_err().contains("byte-order mark"));
        let e = utf8_text(p, b"a\n\xff".to_vec()).unwrap_err();
        assert_eq!(
            e,
            "f.yml:2:1: the file is not valid UTF-8; save it as UTF-8"
        );
        assert_eq!(utf8_text(p, "é\n".into()).unwrap(), "é\n");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_not_cut() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big");
        fs::write(&p, vec![b'a'; 1025]).unwrap();
        let e = read(&p, 1024).unwrap_err();
        assert!(matches!(e, FileError::TooLarge(..)), "{e}");
        assert_eq!(read(&p, 1025).unwrap().len(), 1025);
    }
}
