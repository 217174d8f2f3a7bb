//! The base images a build uses, and what identifies each one now, so that a
//! base rebuilt under the same tag changes the content digest.
//!
//! Which images (read from the Dockerfile, no process started):
//! - every `FROM` up to and including the `--target` stage (the classic
//!   builder builds those), after substituting the global `ARG`s declared
//!   before the first `FROM` (`$A`, `${A}`, `${A:-x}`, `${A-x}`, `${A:+x}`,
//!   `${A+x}`), with the build's own `--build-arg` values over their
//!   defaults;
//! - every `COPY --from=X` and `RUN --mount=…,from=X` whose `X` is not a
//!   stage name or number;
//! - not a stage name (compared without case), not `scratch`.
//!
//! What identifies each (looked up once per run, in parallel, each with a
//! time limit):
//! - pinned with `@sha256:`: the reference itself, no lookup;
//! - else the digest the registry serves now (`docker manifest inspect
//!   --verbose`; every platform's digest for a multi-platform image);
//! - else (unreachable, no credentials, a local-only image) the local
//!   image's ID, with a warning;
//! - else the name alone, with a warning.
//!
//! These rules are here, without a process: `programs::docker` holds the
//! lookup commands, `running::probe` runs them (in parallel, each within
//! [`LOOKUP_LIMIT`]), and `plan::refresh` with `running::execute` make the
//! engine's copy current before a build.
//!
//! The engine's copy is asked about only when it matters:
//! - when the registry does not answer, for the fallback identity above;
//! - when the registry answered, only before the first build on that base
//!   (a run that builds nothing never touches it). If the registry's digest
//!   is not among the engine's copy's `RepoDigests`, the copy is stale and is
//!   pulled first, so the image is built on the base its digest names; if
//!   that pull fails, the build fails with it, because building on the old
//!   copy would make the tag lie. (An engine without a copy pulls the
//!   registry's current one itself.)

use crate::read::compose::{ArgValue, BuildSpec};
use crate::read::dockerfile::{self, Dockerfile};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one lookup may take.
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(15);

/// What the images of a build are read against: the global `ARG`s, the
/// stages so far, the `--target`.
struct Reading<'a> {
    spec: &'a BuildSpec,
    globals: BTreeMap<String, Option<String>>,
    stages: Vec<String>,
    seen_from: bool,
    past_target: bool,
    out: Vec<String>,
}

/// The base images of a build, as written after substitution, sorted and
/// without duplicates.
pub fn images(
    dockerfile: &Dockerfile,
    spec: &BuildSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut r = Reading {
        spec,
        globals: BTreeMap::new(),
        stages: Vec::new(),
        seen_from: false,
        past_target: false,
        out: Vec::new(),
    };
    for (keyword, rest) in dockerfile.instructions() {
        match keyword.as_str() {
            "ARG" if !r.seen_from => r.global_args(rest, env),
            "FROM" => {
                if r.past_target {
                    break;
                }
                r.from(rest);
            }
            "COPY" | "RUN" => r.copy_or_run(rest),
            _ => {}
        }
    }
    let mut out = r.out;
    out.sort();
    out.dedup();
    out
}

impl Reading<'_> {
    /// A global `ARG`: the build's own value over the default.
    fn global_args(&mut self, rest: &str, env: &dyn Fn(&str) -> Option<String>) {
        for (name, default) in dockerfile::arg_declarations(rest) {
            let given = self
                .spec
                .args
                .iter()
                .find(|a| a.name == name)
                .map(|a| match &a.value {
                    ArgValue::Literal(v) | ArgValue::Secret(v) => Some(v.clone()),
                    ArgValue::Inherit => env(&name),
                });
            let value = given.unwrap_or(default);
            self.globals.insert(name, value);
        }
    }

    /// A `FROM`: its image unless a stage or `scratch`; its stage name.
    fn from(&mut self, rest: &str) {
        self.seen_from = true;
        let Some((image, name)) = dockerfile::from_operands(rest) else {
            return;
        };
        let image = dockerfile::substitute(&image, &self.globals);
        let name = name.map(|n| n.to_lowercase());
        if !is_stage(&image, &self.stages)
            && !image.eq_ignore_ascii_case("scratch")
            && !image.is_empty()
        {
            self.out.push(image);
        }
        if let Some(n) = name {
            if self
                .spec
                .target
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(&n))
            {
                self.past_target = true;
            }
            self.stages.push(n);
        } else {
            self.stages.push(String::new());
        }
    }

    /// `COPY --from=X` and `RUN --mount=…,from=X`, X not a stage.
    fn copy_or_run(&mut self, rest: &str) {
        for w in dockerfile::words(rest)
            .iter()
            .take_while(|w| w.starts_with("--"))
        {
            let from = if let Some(f) = w.strip_prefix("--from=") {
                Some(f.to_string())
            } else {
                w.strip_prefix("--mount=").and_then(|m| {
                    m.split(',')
                        .find_map(|kv| kv.strip_prefix("from="))
                        .map(String::from)
                })
            };
            if let Some(f) = from {
                let numbered = f.chars().all(|c| c.is_ascii_digit());
                if !numbered && !is_stage(&f, &self.stages) && !f.is_empty() {
                    self.out.push(f);
                }
            }
        }
    }
}

fn is_stage(name: &str, stages: &[String]) -> bool {
    stages
        .iter()
        .any(|s| !s.is_empty() && s.eq_ignore_ascii_case(name))
}

/// What identifies one base image in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub image: String,
    /// `registry sha256:…`, `local sha256:…`, `pinned` or `name`.
    pub identity: String,
    /// The registry's digests (comma-separated), when the registry answered.
    pub registry: Option<String>,
    pub warning: Option<String>,
}

/// Is the engine's copy (from `docker image inspect`'s output; None: the
/// engine has no copy) older than the registry's `digests`
/// (comma-separated)?
pub fn stale(digests: &str, inspect_stdout: Option<&str>) -> bool {
    inspect_stdout.is_some_and(|line| !digests.split(',').any(|d| line.contains(d)))
}

/// The registry host of an image reference, when it names one.
pub fn host_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// The digests in `docker manifest inspect --verbose` output: one object,
/// or a list (one per platform).
pub fn registry_digests(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let items: Vec<&serde_json::Value> = match &v {
        serde_json::Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut digests: Vec<String> = items
        .iter()
        .filter_map(|i| i.pointer("/Descriptor/digest")?.as_str())
        .filter(|d| d.starts_with("sha256:"))
        .map(String::from)
        .collect();
    digests.sort();
    (!digests.is_empty()).then(|| digests.join(","))
}

/// A pinned image (`@sha256:`) is its own identity: no lookup.
pub fn pinned(image: &str) -> Option<Resolved> {
    image.contains("@sha256:").then(|| Resolved {
        image: image.to_string(),
        identity: "pinned".into(),
        registry: None,
        warning: None,
    })
}

/// The identity from what the registry said (`docker manifest inspect
/// --verbose`'s output) and, when it said nothing, from the engine's copy's
/// ID (`local_id`, asked only then).
pub fn identify(
    image: &str,
    registry_stdout: Option<&str>,
    local_id: &dyn Fn() -> Option<String>,
) -> Resolved {
    let resolved = |identity: String, registry: Option<String>, warning: Option<String>| Resolved {
        image: image.to_string(),
        identity,
        registry,
        warning,
    };
    if let Some(digests) = registry_stdout.and_then(registry_digests) {
        return resolved(format!("registry {digests}"), Some(digests), None);
    }
    match local_id() {
        Some(id) => resolved(
            format!("local {id}"),
            None,
            Some(format!(
                "base image {image}: the registry did not answer within {} s or has no such image; the digest uses the engine's copy ({})",
                LOOKUP_LIMIT.as_secs(),
                &id[..id.len().min(19)]
            )),
        ),
        None => resolved(
            "name".into(),
            None,
            Some(format!(
                "base image {image}: neither the registry nor the engine knows it; the digest covers its name only, so a new image under that name will not cause a rebuild"
            )),
        ),
    }
}

/// When a lookup itself broke (its thread panicked).
pub fn lookup_failed(image: &str) -> Resolved {
    Resolved {
        image: image.to_string(),
        identity: "name".into(),
        registry: None,
        warning: Some(format!(
            "base image {image}: the lookup failed; the digest covers its name only"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::compose::BuildArg;

    fn spec(args: &[(&str, &str)], target: Option<&str>) -> BuildSpec {
        BuildSpec {
            context: ".".into(),
            dockerfile: None,
            args: args
                .iter()
                .map(|(n, v)| BuildArg {
                    name: n.to_string(),
                    value: ArgValue::Literal(v.to_string()),
                })
                .collect(),
            target: target.map(String::from),
            platform: None,
            ..Default::default()
        }
    }

    fn imgs(df: &str, s: &BuildSpec) -> Vec<String> {
        images(&Dockerfile::parse(df), s, &|n| {
            (n == "FROM_ENV").then(|| "envreg".to_string())
        })
    }

    #[test]
    fn from_lines_with_args_stages_scratch_and_pins() {
        let df = "# syntax=docker/dockerfile:1\nARG REG=docker.io\nARG TAG\nARG FROM_ENV\nFROM --platform=$BUILDPLATFORM ${REG}/node:${TAG:-20} AS build\nRUN make\nfrom build as test\nFROM scratch\nFROM alpine@sha256:abc\nCOPY --from=build /a /b\nCOPY --from=nginx:1 /etc/nginx /n\nCOPY --from=0 /x /y\nRUN --mount=type=cache,from=cacheimg:2,target=/c true\n";
        assert_eq!(
            imgs(df, &spec(&[], None)),
            [
                "alpine@sha256:abc",
                "cacheimg:2",
                "docker.io/node:20",
                "nginx:1"
            ]
        );
        // A build arg wins over the default.
        assert!(
            imgs(df, &spec(&[("REG", "127.0.0.1:5000"), ("TAG", "18")], None))
                .contains(&"127.0.0.1:5000/node:18".to_string())
        );
        // Stages after the target are not built.
        assert_eq!(imgs(df, &spec(&[], Some("build"))), ["docker.io/node:20"]);
    }

    #[test]
    fn continuation_lines_comments_and_the_escape_directive() {
        let df = "# escape=`\nFROM `\n  base:1 `\n  AS b\n# comment\nFROM b\n";
        assert_eq!(imgs(df, &spec(&[], None)), ["base:1"]);
        let df = "FROM a:1 \\\n# inside\n  AS x\nFROM x\nFROM X\n";
        assert_eq!(imgs(df, &spec(&[], None)), ["a:1"]);
        // An ARG without a value and without a build arg is empty.
        assert_eq!(
            imgs("ARG FROM_ENV\nFROM $FROM_ENV/i\n", &spec(&[], None)),
            ["/i"]
        );
    }

    #[test]
    fn registry_digests_of_one_image_or_a_list() {
        assert_eq!(
            registry_digests(r#"{"Ref":"r","Descriptor":{"digest":"sha256:aa"}}"#).as_deref(),
            Some("sha256:aa")
        );
        assert_eq!(
            registry_digests(
                r#"[{"Descriptor":{"digest":"sha256:bb"}},{"Descriptor":{"digest":"sha256:aa"}}]"#
            )
            .as_deref(),
            Some("sha256:aa,sha256:bb")
        );
        assert_eq!(registry_digests("not json"), None);
        assert_eq!(host_of("127.0.0.1:5000/base:1"), Some("127.0.0.1:5000"));
        assert_eq!(host_of("library/node:20"), None);
    }
}
