//! What Convox builds: the rules of Convox's own manifest loaders, per format.
//!
//! Read from the loaders themselves, not from compose's rules:
//!
//! - **Gen1** (convox/rack `pkg/manifest1`, `docker-compose.yml` /
//!   `docker-compose.convox.yml`). The whole file is interpolated first
//!   (`$VAR`, `${VAR}`; an unset variable is empty). Without `version:` the
//!   file is *v1*: every top-level key is a service, `x-` keys included (the
//!   file is unmarshalled straight into a map of services). With `version:`,
//!   only `"2"`, `"2.0"`, `"2.1"` and `"2.2"` load ("unknown manifest
//!   version" otherwise), and the services are under `services:`; other
//!   top-level keys are ignored. A service whose `image:` is absent or empty
//!   is built: the context is `build.context` or `.`, the Dockerfile is
//!   `build.dockerfile`, else the service-level `dockerfile:`, else
//!   `Dockerfile`, joined to the context; both set is refused ("dockerfile
//!   specified twice").
//! - **convox.yml** (convox/convox `pkg/manifest`). Interpolated first, by
//!   its own rules (`read::interpolate::convox_yml`: only `${…}`); a
//!   service with neither `build.path` nor `image:` gets `build.path: .`, and
//!   any build path without `manifest:` gets `manifest: Dockerfile`.
//! - **The compose spec** (`services:` without `version:`) and version 3.x
//!   are not Convox formats: gen1 refuses 3.x and would read a file without
//!   `version:` as v1, taking `services` itself as a service. Docker compose
//!   needs `build:` or `image:` on every service there.
//!
//! [`convox_builds`] applies these rules to a parsed file on its own, without
//! the compose reader, so that the plan can prove on its output that a later
//! `convox build` builds nothing.

use crate::read::format::{Env, Format};
use crate::read::interpolate;
use crate::read::yaml::{Doc, NodeId};

/// The versions Convox gen1 loads (besides none at all).
pub const GEN1_VERSIONS: [&str; 4] = ["2", "2.0", "2.1", "2.2"];

/// How a format decides what a service without `image:` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Convox gen1 (v1, or a version 2.x file): built from `.` with the
    /// service-level `dockerfile:` or `Dockerfile`.
    Gen1,
    /// convox.yml: built from `.` with `manifest: Dockerfile`.
    ConvoxYml,
    /// The compose spec or version 3.x: docker compose needs `build:` or
    /// `image:`.
    Compose,
}

pub fn rules(format: &Format) -> Rules {
    match format {
        Format::ConvoxV1 => Rules::Gen1,
        Format::ConvoxYml => Rules::ConvoxYml,
        Format::Compose { version: Some(v) } if v.starts_with('2') => Rules::Gen1,
        Format::Compose { .. } => Rules::Compose,
    }
}

/// A warning when Convox gen1 would not load the file as this program reads
/// it; None for the formats Convox loads.
pub fn version_warning(format: &Format) -> Option<String> {
    let loads = "Convox gen1 loads a file without `version:` (services at the top level) or with version \"2\", \"2.0\", \"2.1\" or \"2.2\"";
    match format {
        Format::Compose { version: Some(v) } if !GEN1_VERSIONS.contains(&v.as_str()) => Some(
            format!("`version: \"{v}\"`: {loads}; `convox build` on gen1 rejects this file (\"unknown manifest version: {v}\")"),
        ),
        Format::Compose { version: None } => Some(format!(
            "the file has `services:` but no `version:`: {loads}, so it would take `services` itself as a service; add `version: \"2\"` for gen1, or name the file convox.yml for current Convox"
        )),
        _ => None,
    }
}

/// The services of a parsed file, as Convox's loader for `format` sees them:
/// (name, value node).
pub fn services(doc: &Doc, format: &Format) -> Vec<(String, NodeId)> {
    let Some(root) = doc.root else {
        return Vec::new();
    };
    let map = match format {
        Format::ConvoxV1 => Some(root),
        _ => doc.get(root, "services").map(|f| f.value),
    };
    let Some(entries) = map.and_then(|m| doc.entries(m)) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| !doc.is_merge_key(e.key))
        .filter_map(|e| Some((doc.scalar(e.key)?.to_string(), e.value)))
        .collect()
}

/// The services Convox would build from this file: those whose `image:`,
/// interpolated, is absent or empty. Empty when `convox build` would only
/// copy images.
pub fn convox_builds(doc: &Doc, format: &Format, env: Env<'_>) -> Vec<String> {
    services(doc, format)
        .into_iter()
        .filter(|(_, value)| {
            let image = doc
                .get(*value, "image")
                .filter(|f| !doc.is_null(f.value))
                .and_then(|f| doc.scalar(f.value));
            match image {
                Some(text) => {
                    interpolate::for_format(format, text, env).map_or(true, |i| i.value.is_empty())
                }
                None => true,
            }
        })
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builds(src: &str, format: Format) -> Vec<String> {
        let doc = Doc::parse(src).unwrap();
        let env = |n: &str| (n == "SET").then(|| "img".to_string());
        convox_builds(&doc, &format, &env)
    }

    #[test]
    fn gen1_v1_takes_every_top_level_key_as_a_service() {
        let src = "x-common: &c\n  labels: {a: b}\nweb:\n  <<: *c\n  image: r/web\nworker:\n  command: x\ncache:\n";
        assert_eq!(
            builds(src, Format::ConvoxV1),
            ["x-common", "worker", "cache"]
        );
    }

    #[test]
    fn an_image_that_interpolates_to_nothing_is_built() {
        let src = "services:\n  a:\n    image: ${SET}\n  b:\n    image: ${UNSET}\n  c:\n    image: ''\n  d:\n    image:\n";
        let v2 = Format::Compose {
            version: Some("2".into()),
        };
        assert_eq!(builds(src, v2), ["b", "c", "d"]);
        assert_eq!(builds(src, Format::ConvoxYml), ["b", "c", "d"]);
    }

    #[test]
    fn an_image_from_a_merge_or_an_alias_counts() {
        let src = "x: &x\n  image: r/x\nservices:\n  a:\n    <<: *x\n  b: *x\n  c: {}\n";
        assert_eq!(builds(src, Format::ConvoxYml), ["c"]);
    }

    #[test]
    fn the_rules_and_the_warnings_per_format() {
        let v = |s: &str| Format::Compose {
            version: Some(s.into()),
        };
        assert_eq!(rules(&Format::ConvoxV1), Rules::Gen1);
        assert_eq!(rules(&v("2.2")), Rules::Gen1);
        assert_eq!(rules(&v("2.4")), Rules::Gen1);
        assert_eq!(rules(&v("3.8")), Rules::Compose);
        assert_eq!(rules(&Format::Compose { version: None }), Rules::Compose);
        assert_eq!(rules(&Format::ConvoxYml), Rules::ConvoxYml);
        for ok in ["2", "2.0", "2.1", "2.2"] {
            assert_eq!(version_warning(&v(ok)), None, "{ok}");
        }
        for bad in ["2.3", "2.4", "3", "3.8"] {
            let w = version_warning(&v(bad)).unwrap();
            assert!(w.contains(bad) && w.contains("\"2.2\""), "{w}");
        }
        assert!(version_warning(&Format::Compose { version: None })
            .unwrap()
            .contains("take `services` itself as a service"));
        assert_eq!(version_warning(&Format::ConvoxV1), None);
        assert_eq!(version_warning(&Format::ConvoxYml), None);
    }
}
