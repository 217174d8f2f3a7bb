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
//! - else the digest the registry serves now: for a base in ECR (any
//!   account, any region), ECR's API (`aws ecr batch-get-image
//!   --registry-id ACCOUNT`, one call per repository and region), which
//!   needs no docker login, so a private base is known on a fresh runner;
//!   for any other, `docker manifest inspect --verbose` (every platform's
//!   digest for a multi-platform image);
//! - else, after the logins (`plan::login`), the base is pulled, and the
//!   pulled copy's registry digest (else its ID) identifies it;
//! - else (the pull failed too: a local-only image) the engine's copy's
//!   ID, with a warning;
//! - else the run stops, with one error naming the base, its registry and
//!   what to set. Its name alone never stands for it (only
//!   `--no-base-digest`, the user's choice, leaves the bases out).
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
/// --verbose`'s output), when it said.
pub fn identify(image: &str, registry_stdout: Option<&str>) -> Option<Resolved> {
    let digests = registry_stdout.and_then(registry_digests)?;
    Some(Resolved {
        image: image.to_string(),
        identity: format!("registry {digests}"),
        registry: Some(digests),
        warning: None,
    })
}

/// The identity from the engine's copy's ID, when neither the registry nor
/// a pull gave one (a local-only image), with a warning.
pub fn identified_locally(image: &str, id: &str) -> Resolved {
    Resolved {
        image: image.to_string(),
        identity: format!("local {id}"),
        registry: None,
        warning: Some(format!(
            "base image {image}: the registry did not answer within {} s or has no such image, and it could not be pulled; the digest uses the engine's copy ({})",
            LOOKUP_LIMIT.as_secs(),
            &id[..id.len().min(19)]
        )),
    }
}

/// A base image in ECR: `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EcrBase {
    pub account: String,
    pub region: String,
    pub repository: String,
    pub tag: String,
}

/// The ECR base an image names (not a pinned one: that needs no lookup).
pub fn ecr_base(image: &str) -> Option<EcrBase> {
    if image.contains('@') {
        return None;
    }
    let host = host_of(image)?;
    let (account, region) = crate::programs::ecr::ecr_host(host)?;
    let path = &image[host.len() + 1..];
    let (repository, tag) = match path.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (path, "latest"),
    };
    Some(EcrBase {
        account,
        region,
        repository: repository.to_string(),
        tag: tag.to_string(),
    })
}

/// One `batch-get-image` of base images: (account, region, repository),
/// and each image with its tag.
pub type EcrGroup = ((String, String, String), Vec<(String, String)>);

/// The ECR bases grouped for one `batch-get-image` each.
pub fn ecr_groups(images: &[String]) -> Vec<EcrGroup> {
    let mut groups: BTreeMap<(String, String, String), Vec<(String, String)>> = BTreeMap::new();
    for image in images {
        if let Some(b) = ecr_base(image) {
            groups
                .entry((b.account, b.region, b.repository))
                .or_default()
                .push((image.clone(), b.tag));
        }
    }
    groups.into_iter().collect()
}

/// The identity from ECR's answer for a base (its stored manifest's
/// digest), as from a registry's.
pub fn identified_by_ecr(image: &str, digest: &str) -> Resolved {
    Resolved {
        image: image.to_string(),
        identity: format!("registry {digest}"),
        registry: Some(digest.to_string()),
        warning: None,
    }
}

/// The identity of a base that was pulled: the registry digest it was
/// pulled by (`docker image inspect`'s `{{.Id}} {{json .RepoDigests}}`
/// line), else its ID.
pub fn identified_by_pull(image: &str, inspect_line: &str) -> Option<Resolved> {
    let (id, digests) = inspect_line
        .trim()
        .split_once(' ')
        .unwrap_or((inspect_line.trim(), "[]"));
    let repo = image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or(image, |(r, _)| r);
    let list: Vec<String> = serde_json::from_str(digests).unwrap_or_default();
    let digest = list
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{repo}@")).map(String::from));
    let identity = match &digest {
        Some(d) => format!("pulled {d}"),
        None if id.starts_with("sha256:") => format!("pulled {id}"),
        None => return None,
    };
    Some(Resolved {
        image: image.to_string(),
        identity,
        registry: digest,
        warning: None,
    })
}

/// Why a run stops when nothing identifies a base.
pub fn unidentified(image: &str, why: &str) -> String {
    let registry = host_of(image).unwrap_or("Docker Hub (docker.io)");
    let what = if ecr_base(image).is_some() {
        "AWS credentials allowed ecr:BatchGetImage on it (or a credential helper for that host)"
    } else {
        "credentials for it (docker login, or a credential helper)"
    };
    format!(
        "base image {image}: its registry {registry} gave no digest, and it could not be pulled ({why}); give the run {what}, pin it as {image}@sha256:…, or pass --no-base-digest to leave the base images out of the content digest"
    )
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
