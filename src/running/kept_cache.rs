//! The platforms each kept image offers, remembered by its manifest digest
//! in the user's cache directory (`$XDG_CACHE_HOME`, else `~/.cache`:
//! `convox-build-off-cluster/kept-platforms/sha256-HEX`, one platform a
//! line). A digest names its manifest's bytes, so what it offers never
//! changes: where a `HEAD` gives the digest (`running::registry`), an image
//! seen before costs no `GET` and no process. The folder is made 0700; a
//! file is written beside its name and renamed; anything that is not a
//! small regular file of platforms is no answer.

use std::fs;
use std::path::PathBuf;

/// The cache's folder; None without an absolute home for it.
fn dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".cache"))
        })?;
    Some(base.join("convox-build-off-cluster").join("kept-platforms"))
}

/// The file of a digest (`sha256:` and 64 hex digits only).
fn file_of(digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:")?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| dir().map(|d| d.join(format!("sha256-{hex}"))))?
}

/// The platforms remembered for a digest.
pub fn get(digest: &str) -> Option<Vec<String>> {
    let path = file_of(digest)?;
    let bytes = crate::read::regular::read(&path, 4096).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let list: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let valid = !list.is_empty() && list.iter().all(|p| p.contains('/'));
    valid.then_some(list)
}

/// Remember the platforms of a digest; a failure only costs the next run a
/// `GET`.
pub fn put(digest: &str, platforms: &[String]) {
    let (Some(path), Some(dir)) = (file_of(digest), dir()) else {
        return;
    };
    use std::os::unix::fs::DirBuilderExt;
    if fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .is_err()
    {
        return;
    }
    let Ok(mut tmp) = tempfile::Builder::new().prefix(".kept.").tempfile_in(&dir) else {
        return;
    };
    use std::io::Write;
    if tmp
        .write_all(format!("{}\n", platforms.join("\n")).as_bytes())
        .is_ok()
    {
        let _ = tmp.persist(&path);
    }
}
