//! Which builder `docker build` runs here, by docker's own rules.
//!
//! - `DOCKER_BUILDKIT=0` (or `false`): the classic builder.
//! - `DOCKER_BUILDKIT=1` (or `true`): BuildKit. A docker client from 23 on
//!   needs the buildx plugin for it and refuses the build without one; an
//!   older client has BuildKit built in.
//! - Unset: BuildKit when the client is 23 or later and buildx is there
//!   (docker's default since 23); else the classic builder.
//!
//! Under BuildKit the program passes labels with `--label` and the
//! Dockerfile by its path (no Dockerfile on stdin), streams
//! `--progress=plain`, passes build secrets and SSH, and, with buildx,
//! `--builder NAME`. The classic builder cannot take secrets: a service that
//! has them is refused there.

use crate::programs::command::Cmd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    Classic,
    BuildKit { buildx: bool },
}

impl Builder {
    pub fn is_buildkit(self) -> bool {
        matches!(self, Builder::BuildKit { .. })
    }

    pub fn name(self) -> &'static str {
        match self {
            Builder::Classic => "the classic builder",
            Builder::BuildKit { buildx: true } => "BuildKit (buildx)",
            Builder::BuildKit { buildx: false } => "BuildKit",
        }
    }
}

/// `docker version` for the client's and the engine's versions and the
/// engine's platform (`CLIENT|ENGINE|OS/ARCH`; the engine's parts are
/// missing when it does not answer).
pub fn versions() -> Cmd {
    Cmd::new("docker").args([
        "version",
        "--format",
        "{{.Client.Version}}|{{.Server.Version}}|{{.Server.Os}}/{{.Server.Arch}}",
    ])
}

/// What `versions` printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    pub client: Option<String>,
    pub engine: Option<String>,
    /// The engine's own platform (`linux/amd64`).
    pub platform: Option<String>,
}

/// The client's and engine's versions and the engine's platform from
/// `versions`' output.
pub fn parse_versions(out: &str) -> Versions {
    let line = out.lines().next().unwrap_or("").trim();
    let mut parts = line.split('|');
    let some = |v: Option<&str>| {
        v.map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty() && v.chars().next().is_some_and(|c| c.is_ascii_digit()))
    };
    let client = some(parts.next());
    let engine = some(parts.next());
    let platform = parts
        .next()
        .map(|p| p.trim().to_string())
        .filter(|p| p.len() > 2 && !p.starts_with('/') && !p.ends_with('/'));
    Versions {
        client,
        engine,
        platform,
    }
}

/// Can this engine's BuildKit write inline cache safely? Docker 20.10's
/// (BuildKit 0.8) crashed the whole engine here doing so (a stack overflow in
/// `remotecache/v1.marshalItem`, on a two-stage Dockerfile), and 23.0.0 still
/// crashes writing it (moby/moby#44918, fixed in 23.0.1); so the registry
/// cache under the engine's BuildKit needs an engine from 23.0.1 on.
pub fn inline_cache_safe(engine: Option<&str>) -> bool {
    engine.and_then(release).is_some_and(|v| v >= (23, 0, 1))
}

/// (major, minor, patch) of a docker version string (`23.0.1`,
/// `20.10.24+dfsg1`, `24.0.7-1`).
fn release(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The major version of a docker version string (`28.2.2`, `20.10.24+dfsg1`).
fn major(version: &str) -> Option<u32> {
    version.trim().split('.').next()?.parse().ok()
}

/// Decide, from `DOCKER_BUILDKIT`, the client's version and whether buildx
/// is there. Err explains a setting docker itself would refuse.
pub fn decide(
    docker_buildkit: Option<&str>,
    client: Option<&str>,
    buildx: bool,
) -> Result<Builder, String> {
    let modern = client.and_then(major).is_some_and(|m| m >= 23);
    if classic_asked(docker_buildkit) {
        return Ok(Builder::Classic);
    }
    match docker_buildkit.map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "1" || v == "true" => {
            if modern && !buildx {
                Err(format!(
                    "DOCKER_BUILDKIT={v}, but this docker ({}) has no buildx plugin, which BuildKit needs since docker 23: install docker-buildx, or unset DOCKER_BUILDKIT for the classic builder",
                    client.unwrap_or("?").trim()
                ))
            } else {
                Ok(Builder::BuildKit { buildx })
            }
        }
        _ if modern && buildx => Ok(Builder::BuildKit { buildx }),
        _ => Ok(Builder::Classic),
    }
}

/// Does `docker build` run as `docker buildx build` (and so take buildx's
/// flags, `--provenance` among them)? From docker 23 on, with the plugin
/// there and BuildKit on; an older client's `docker build` runs its own
/// BuildKit client even with the plugin installed.
pub fn build_is_buildx(builder: Builder, client: Option<&str>) -> bool {
    builder == (Builder::BuildKit { buildx: true })
        && client.and_then(major).is_some_and(|m| m >= 23)
}

/// Does `DOCKER_BUILDKIT` ask for the classic builder (`0` or `false`)?
pub fn classic_asked(docker_buildkit: Option<&str>) -> bool {
    docker_buildkit.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false"))
}

/// For a dry run, which asks docker nothing: from `DOCKER_BUILDKIT` alone.
pub fn assume(docker_buildkit: Option<&str>) -> Builder {
    match docker_buildkit.map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "1" || v == "true" => Builder::BuildKit { buildx: false },
        _ => Builder::Classic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_docker_23_and_later_builds_through_buildx() {
        let bx = Builder::BuildKit { buildx: true };
        assert!(build_is_buildx(bx, Some("26.1.5+dfsg1")));
        assert!(
            !build_is_buildx(bx, Some("20.10.24+dfsg1")),
            "20.10 runs its own BuildKit client"
        );
        assert!(!build_is_buildx(
            Builder::BuildKit { buildx: false },
            Some("28.2.2")
        ));
        assert!(!build_is_buildx(Builder::Classic, Some("28.2.2")));
        assert!(!build_is_buildx(bx, None));
    }

    #[test]
    fn dockers_own_rules() {
        let bk = |buildx| Ok(Builder::BuildKit { buildx });
        assert_eq!(decide(None, Some("28.2.2"), false), Ok(Builder::Classic));
        assert_eq!(decide(None, Some("28.2.2"), true), bk(true));
        assert_eq!(
            decide(None, Some("20.10.24+dfsg1"), false),
            Ok(Builder::Classic)
        );
        assert_eq!(decide(Some("1"), Some("20.10.24+dfsg1"), false), bk(false));
        assert_eq!(decide(Some("true"), Some("24.0.7"), true), bk(true));
        assert_eq!(
            decide(Some("0"), Some("28.2.2"), true),
            Ok(Builder::Classic)
        );
        let e = decide(Some("1"), Some("28.2.2"), false).unwrap_err();
        assert!(
            e.contains("no buildx plugin") && e.contains("28.2.2"),
            "{e}"
        );
        assert_eq!(assume(Some("1")), Builder::BuildKit { buildx: false });
        assert_eq!(assume(None), Builder::Classic);
        assert_eq!(
            parse_versions("28.2.2|20.10.24+dfsg1|linux/amd64\n"),
            Versions {
                client: Some("28.2.2".into()),
                engine: Some("20.10.24+dfsg1".into()),
                platform: Some("linux/amd64".into())
            }
        );
        let v = parse_versions("28.2.2||/\n");
        assert_eq!(
            (v.client.as_deref(), v.engine, v.platform),
            (Some("28.2.2"), None, None)
        );
        assert_eq!(parse_versions(""), Versions::default());
        assert!(!inline_cache_safe(Some("20.10.24+dfsg1")));
        assert!(inline_cache_safe(Some("27.3.1")));
        assert!(!inline_cache_safe(None));
        // 23.0.0 crashes writing inline cache (moby/moby#44918); 23.0.1 not.
        assert!(!inline_cache_safe(Some("23.0.0")));
        assert!(inline_cache_safe(Some("23.0.1")));
        assert!(inline_cache_safe(Some("24.0.7-1")));
        assert!(!inline_cache_safe(Some("22.06.0-beta")));
    }
}
