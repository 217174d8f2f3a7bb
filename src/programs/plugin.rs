//! How the docker CLI runs a CLI plugin (`docker buildx …` runs the file
//! `docker-buildx`), so that this program can run that same file itself.
//! Going through `docker` costs about 50 ms a call here (the CLI starts,
//! runs the plugin once for its metadata, then again for the command),
//! and a run that builds calls buildx at least twice.
//!
//! The rules, as docker's CLI has them on Linux (`cli-plugins/manager`,
//! the same from 19.03 to 28):
//! - the candidates are `docker-NAME` in these directories, in this order:
//!   each of the config file's `cliPluginsExtraDirs`; the config
//!   directory's `cli-plugins` (`$DOCKER_CONFIG`, else `~/.docker`);
//!   `/usr/local/lib/docker/cli-plugins`,
//!   `/usr/local/libexec/docker/cli-plugins`, `/usr/lib/docker/cli-plugins`,
//!   `/usr/libexec/docker/cli-plugins`;
//! - the first candidate that exists (symlinks followed) is the plugin:
//!   docker does not go on to a later one when that one is broken, it says
//!   so;
//! - buildx run by its own path is buildx "standalone": `docker-buildx
//!   build …` is `docker buildx build …`, and reads the same environment
//!   (`DOCKER_HOST`, `DOCKER_CONTEXT`, `DOCKER_CONFIG`, the TLS settings).
//!
//! The file is run directly only where it is certainly what `docker` runs:
//! - on Linux (other systems have other directories: Docker Desktop's);
//! - when the `docker` on PATH is a program (an ELF file), not a script:
//!   a wrapper (a test's fake, podman's `docker` shim) decides for itself
//!   what `docker buildx` means;
//! - when the config file could be read (else its extra directories are
//!   not known);
//! - when the first candidate is an executable file.
//!
//! Else `docker buildx …`, as a user types it.

use std::path::{Path, PathBuf};

/// docker's own directories, after the extra and the config's ones.
pub const SYSTEM_DIRS: [&str; 4] = [
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

/// The directories docker searches for a plugin, in its order.
pub fn search_dirs(extra: &[String], config_dir: &Path) -> Vec<PathBuf> {
    extra
        .iter()
        .map(PathBuf::from)
        .chain(std::iter::once(config_dir.join("cli-plugins")))
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .collect()
}

/// The file `docker NAME` would run, when it can be run directly: the
/// first candidate that exists, if it is an executable file and `docker`
/// (the file on PATH) is a program. Reads file metadata only.
pub fn locate(name: &str, dirs: &[PathBuf], docker: Option<&Path>) -> Option<PathBuf> {
    if !cfg!(target_os = "linux") || !docker.is_some_and(is_program) {
        return None;
    }
    let first = dirs
        .iter()
        .map(|d| d.join(format!("docker-{name}")))
        .find(|p| p.exists())?;
    is_executable_file(&first).then_some(first)
}

/// An ELF file (not a script, whatever its name).
fn is_program(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|_| magic == *b"\x7fELF")
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, text: &[u8], mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn dockers_order_extra_dirs_then_the_config_dir_then_the_system_dirs() {
        let dirs = search_dirs(&["/opt/a".into(), "/opt/b".into()], Path::new("/cfg"));
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        assert_eq!(
            dirs,
            [
                "/opt/a",
                "/opt/b",
                "/cfg/cli-plugins",
                "/usr/local/lib/docker/cli-plugins",
                "/usr/local/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins",
                "/usr/libexec/docker/cli-plugins",
            ]
        );
    }

    #[test]
    fn the_first_candidate_when_docker_is_a_program() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
        let dirs = [a.clone(), b.clone(), c.clone()];
        let elf = t.path().join("bin/docker");
        write(&elf, b"\x7fELF\x02\x01\x01", 0o755);
        let script = t.path().join("fake/docker");
        write(&script, b"#!/bin/sh\nexec /usr/bin/docker \"$@\"\n", 0o755);
        assert_eq!(locate("buildx", &dirs, Some(&elf)), None, "none there");
        write(&c.join("docker-buildx"), b"\x7fELF", 0o755);
        write(&b.join("docker-buildx"), b"\x7fELF", 0o755);
        assert_eq!(
            locate("buildx", &dirs, Some(&elf)),
            Some(b.join("docker-buildx")),
            "the first that exists"
        );
        assert_eq!(locate("buildx", &dirs, Some(&script)), None, "a wrapper");
        assert_eq!(locate("buildx", &dirs, None), None, "no docker");
        // The first candidate is the plugin, even when broken: docker says
        // so, and so it is docker that runs.
        std::fs::create_dir_all(a.join("docker-buildx")).unwrap();
        assert_eq!(locate("buildx", &dirs, Some(&elf)), None, "a directory");
        std::fs::remove_dir(a.join("docker-buildx")).unwrap();
        write(&a.join("docker-buildx"), b"\x7fELF", 0o644);
        assert_eq!(locate("buildx", &dirs, Some(&elf)), None, "not executable");
        std::fs::remove_file(a.join("docker-buildx")).unwrap();
        std::os::unix::fs::symlink(c.join("docker-buildx"), a.join("docker-buildx")).unwrap();
        assert_eq!(
            locate("buildx", &dirs, Some(&elf)),
            Some(a.join("docker-buildx")),
            "a symlink, as docker follows it"
        );
        std::fs::remove_file(a.join("docker-buildx")).unwrap();
        std::os::unix::fs::symlink(t.path().join("gone"), a.join("docker-buildx")).unwrap();
        assert_eq!(
            locate("buildx", &dirs, Some(&elf)),
            Some(b.join("docker-buildx")),
            "a dangling symlink does not exist for docker either"
        );
    }
}
