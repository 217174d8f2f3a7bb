//! An output that the next run reads as input: `-o built.yml` inside a
//! build's context, sent by docker (its `.dockerignore` and the upload's do
//! not leave it out). Each run's output then changes that build's content
//! digest, so every run builds and pushes it again, on an unchanged tree.
//! The plan says so, naming the file and the service; the digest keeps the
//! file (docker sends it, so the image holds it).

use crate::inputs::digest::context_ignore;
use crate::inputs::upload::Upload;
use crate::plan::{Build, Output};
use crate::read::compose::is_remote_context;
use std::path::{Path, PathBuf};

/// The real path of a file that may not exist yet: its directory's, joined.
fn real(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Some(p);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

/// One warning per build whose context sends the output file (not the
/// compose file itself, rewritten in place).
pub fn warnings(output: &Output, compose: &Path, builds: &[Build]) -> Vec<String> {
    let Output::File(out) = output else {
        return Vec::new();
    };
    let Some(out_real) = real(out) else {
        return Vec::new();
    };
    if real(compose).as_ref() == Some(&out_real) {
        return Vec::new();
    }
    let mut found = Vec::new();
    for b in builds
        .iter()
        .filter(|b| !is_remote_context(&b.spec.context))
    {
        let context = Path::new(&b.spec.context);
        let Ok(ctx) = std::fs::canonicalize(context) else {
            continue;
        };
        let Ok(rel) = out_real.strip_prefix(&ctx) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        let sent = context_ignore(context, b.spec.dockerfile.as_deref().map(Path::new))
            .map_or(true, |i| i.sends(&rel));
        let uploaded = match b.spec.upload_root.as_deref() {
            Some(root) => Upload::for_context(Path::new(root), context)
                .ok()
                .flatten()
                .is_none_or(|u| u.holds(&rel)),
            None => true,
        };
        if sent && uploaded {
            found.push(format!(
                "the output {} is inside the build context of {} ({}), and docker sends it: each run's output changes {}'s content digest, so it is built and pushed again on every run; write the output outside the context, or add `{rel}` to {}",
                out.display(),
                b.services.join(", "),
                b.spec.context,
                b.services[0],
                context.join(".dockerignore").display()
            ));
        }
    }
    found
}
