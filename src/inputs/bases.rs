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
//! The engine's copy is asked about only when it matters:
//! - when the registry does not answer, for the fallback identity above;
//! - when the registry answered, only before the first build on that base
//!   (a run that builds nothing never touches it). If the registry's digest
//!   is not among the engine's copy's `RepoDigests`, the copy is stale and is
//!   pulled first, so the image is built on the base its digest names; if
//!   that pull fails, the build fails with it, because building on the old
//!   copy would make the tag lie. (An engine without a copy pulls the
//!   registry's current one itself.)

use crate::programs::command::Cmd;
use crate::read::compose::{ArgValue, BuildSpec};
use crate::programs::docker;
use crate::running::run::{self, RunOptions};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one lookup may take.
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(15);

/// The base images of a build, as written after substitution, sorted and
/// without duplicates.
pub fn images(
    dockerfile: &str,
    spec: &BuildSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let instructions = instructions(dockerfile);
    let mut globals: BTreeMap<String, Option<String>> = BTreeMap::new();
    let given = |name: &str| -> Option<Option<String>> {
        spec.args
            .iter()
            .find(|a| a.name == name)
            .map(|a| match &a.value {
                ArgValue::Literal(v) | ArgValue::Secret(v) => Some(v.clone()),
                ArgValue::Inherit => env(name),
            })
    };
    let mut stages: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut seen_from = false;
    let mut past_target = false;
    for (keyword, rest) in instructions {
        match keyword.as_str() {
            "ARG" if !seen_from => {
                for decl in words(&rest) {
                    let (name, default) = match decl.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(unquote(d))),
                        None => (decl.clone(), None),
                    };
                    let value = given(&name).unwrap_or(default);
                    globals.insert(name, value);
                }
            }
            "FROM" => {
                if past_target {
                    break;
                }
                seen_from = true;
                let Some((image, name)) = from_operands(&rest) else {
                    continue;
                };
                let image = substitute(&image, &globals);
                let name = name.map(|n| n.to_lowercase());
                if !is_stage(&image, &stages)
                    && !image.eq_ignore_ascii_case("scratch")
                    && !image.is_empty()
                {
                    out.push(image);
                }
                if let Some(n) = name {
                    if spec
                        .target
                        .as_deref()
                        .is_some_and(|t| t.eq_ignore_ascii_case(&n))
                    {
                        past_target = true;
                    }
                    stages.push(n);
                } else {
                    stages.push(String::new());
                }
            }
            "COPY" | "RUN" => {
                for w in words(&rest).iter().take_while(|w| w.starts_with("--")) {
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
                        if !numbered && !is_stage(&f, &stages) && !f.is_empty() {
                            out.push(f);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

fn is_stage(name: &str, stages: &[String]) -> bool {
    stages
        .iter()
        .any(|s| !s.is_empty() && s.eq_ignore_ascii_case(name))
}

/// A `FROM`'s image and stage name (`AS name`), flags left out.
pub(crate) fn from_operands(rest: &str) -> Option<(String, Option<String>)> {
    let mut parts = words(rest).into_iter().filter(|w| !w.starts_with("--"));
    let image = parts.next()?;
    let name = match (parts.next(), parts.next()) {
        (Some(as_kw), Some(n)) if as_kw.eq_ignore_ascii_case("as") => Some(n),
        _ => None,
    };
    Some((image, name))
}

/// The Dockerfile's instructions: (KEYWORD, the rest), with continuation
/// lines joined and comments dropped.
pub(crate) fn instructions(text: &str) -> Vec<(String, String)> {
    let mut escape = '\\';
    let mut lines = text.lines().peekable();
    // Parser directives: `# escape=`` ` before anything else.
    while let Some(l) = lines.peek() {
        let t = l.trim();
        let Some(d) = t.strip_prefix('#') else { break };
        let d = d.trim();
        match d.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("escape") => {
                escape = v.trim().chars().next().unwrap_or('\\');
            }
            Some((k, _))
                if k.trim().eq_ignore_ascii_case("syntax")
                    || k.trim().eq_ignore_ascii_case("check") => {}
            _ => break,
        }
        lines.next();
    }
    let mut out = Vec::new();
    let mut current = String::new();
    for line in lines {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && t.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        let (body, more) = match t.strip_suffix(escape) {
            Some(b) => (b, true),
            None => (t, false),
        };
        current.push_str(body);
        current.push(' ');
        if !more {
            push_instruction(&mut out, &current);
            current.clear();
        }
    }
    if !current.is_empty() {
        push_instruction(&mut out, &current);
    }
    out
}

fn push_instruction(out: &mut Vec<(String, String)>, text: &str) {
    let text = text.trim();
    let (kw, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    out.push((kw.to_ascii_uppercase(), rest.trim().to_string()));
}

/// Whitespace-separated words, with quotes removed.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(unquote).collect()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// `$A`, `${A}`, `${A:-x}`, `${A-x}`, `${A:+x}`, `${A+x}` from the globals.
fn substitute(text: &str, vars: &BTreeMap<String, Option<String>>) -> String {
    let get = |n: &str| vars.get(n).cloned().flatten();
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('{') {
            let Some(close) = r.find('}') else {
                out.push_str("${");
                rest = r;
                continue;
            };
            let expr = &r[..close];
            rest = &r[close + 1..];
            let n = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(n);
            let value = get(name);
            let set = value.as_deref().is_some_and(|v| !v.is_empty());
            let v = if let Some(d) = op.strip_prefix(":-") {
                if set {
                    value.unwrap_or_default()
                } else {
                    d.to_string()
                }
            } else if let Some(d) = op.strip_prefix('-') {
                value.unwrap_or_else(|| d.to_string())
            } else if let Some(a) = op.strip_prefix(":+") {
                if set {
                    a.to_string()
                } else {
                    String::new()
                }
            } else if let Some(a) = op.strip_prefix('+') {
                if value.is_some() {
                    a.to_string()
                } else {
                    String::new()
                }
            } else {
                value.unwrap_or_default()
            };
            out.push_str(&v);
        } else {
            let n = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if n == 0 {
                out.push('$');
                continue;
            }
            out.push_str(&get(&rest[..n]).unwrap_or_default());
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    out
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

/// Before the first build on a base the registry identified: make sure the
/// engine's copy is the registry's (`inspect`), else pull it (`pull`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub image: String,
    /// The registry's digests, comma-separated, as the tags were made with.
    pub digests: String,
    pub inspect: Cmd,
    pub pull: Cmd,
}

impl Refresh {
    pub fn of(r: &Resolved) -> Option<Refresh> {
        let digests = r.registry.clone()?;
        Some(Refresh {
            inspect: local_lookup(&r.image),
            pull: pull(&r.image),
            image: r.image.clone(),
            digests,
        })
    }

    /// From `inspect`'s output (None: the engine has no copy): is the
    /// engine's copy older than the registry's?
    pub fn stale(&self, inspect_stdout: Option<&str>) -> bool {
        inspect_stdout.is_some_and(|line| !self.digests.split(',').any(|d| line.contains(d)))
    }
}

/// The registry host of an image reference, when it names one.
pub fn host_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// The registry's digest of one image. `config` is the engine's registry
/// configuration, when known.
pub fn registry_lookup(image: &str, config: Option<&str>) -> Cmd {
    let insecure = host_of(image).is_some_and(|h| {
        docker::is_loopback(h) || config.is_some_and(|c| docker::insecure_in(c, h))
    });
    docker::manifest_inspect(image, insecure)
}

/// The engine's copy of one image: its ID and the digests it was pulled by.
pub fn local_lookup(image: &str) -> Cmd {
    Cmd::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{json .RepoDigests}}",
        image,
    ])
}

/// The digests in `docker manifest inspect --verbose` output: one object,
/// or a list (one per platform).
fn registry_digests(json: &str) -> Option<String> {
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

/// Look up every image, in parallel, each within [`LOOKUP_LIMIT`].
pub fn resolve(images: &[String], config: Option<&str>, opts: RunOptions) -> Vec<Resolved> {
    std::thread::scope(|s| {
        let handles: Vec<_> = images
            .iter()
            .map(|image| s.spawn(move || resolve_one(image, config, opts)))
            .collect();
        handles
            .into_iter()
            .zip(images)
            .map(|(h, image)| {
                h.join().unwrap_or_else(|_| Resolved {
                    image: image.clone(),
                    identity: "name".into(),
                    registry: None,
                    warning: Some(format!(
                        "base image {image}: the lookup failed; the digest covers its name only"
                    )),
                })
            })
            .collect()
    })
}

fn resolve_one(image: &str, config: Option<&str>, opts: RunOptions) -> Resolved {
    let resolved = |identity: String, registry: Option<String>, warning: Option<String>| Resolved {
        image: image.to_string(),
        identity,
        registry,
        warning,
    };
    if image.contains("@sha256:") {
        return resolved("pinned".into(), None, None);
    }
    let answer = |cmd: &Cmd| run::stdout_within(cmd, opts, LOOKUP_LIMIT);
    if let Some(digests) =
        answer(&registry_lookup(image, config)).and_then(|o| registry_digests(&o))
    {
        return resolved(format!("registry {digests}"), Some(digests), None);
    }
    // The registry did not say: the engine's copy, if it has one.
    let local_id = answer(&local_lookup(image))
        .and_then(|line| line.split_whitespace().next().map(String::from));
    match local_id {
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

/// Make the engine's copy of a base the registry's before a build on it:
/// ask the engine (`refresh.inspect`) and, when its copy is older, pull.
/// A failed pull fails the build: the tag names the registry's base.
pub fn make_current(refresh: &Refresh, opts: RunOptions) -> anyhow::Result<()> {
    let local = run::capture(&refresh.inspect, opts)?;
    let line = String::from_utf8_lossy(&local.stdout);
    if !refresh.stale(local.status.success().then_some(line.as_ref())) {
        return Ok(());
    }
    run::check(&refresh.pull, opts, None).map(|_| ()).map_err(|e| {
        e.context(format!(
            "base image {}: the engine's copy is older than the registry's ({}), which the tags were made with, and pulling it failed",
            refresh.image, refresh.digests
        ))
    })
}

/// Give the plan the bases the registry identified, and each build the ones
/// it is built on.
pub fn attach(
    plan: &mut crate::plan::Plan,
    resolved: &[Resolved],
    bases_of: &dyn Fn(&BuildSpec) -> Vec<String>,
) {
    plan.bases = resolved.iter().filter_map(Refresh::of).collect();
    for b in &mut plan.builds {
        let images = bases_of(&b.spec);
        b.bases = plan
            .bases
            .iter()
            .enumerate()
            .filter(|(_, r)| images.contains(&r.image))
            .map(|(k, _)| k)
            .collect();
    }
}

/// `docker pull IMAGE`, for an engine copy that is older than the registry's.
pub fn pull(image: &str) -> Cmd {
    Cmd::new("docker").args(["pull", "--quiet", image])
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
        images(df, s, &|n| (n == "FROM_ENV").then(|| "envreg".to_string()))
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
    fn an_engine_copy_is_stale_unless_it_was_pulled_by_a_registry_digest() {
        let r = Refresh::of(&Resolved {
            image: "reg/base:1".into(),
            identity: "registry sha256:aa,sha256:bb".into(),
            registry: Some("sha256:aa,sha256:bb".into()),
            warning: None,
        })
        .expect("a registry identity");
        assert!(!r.stale(None), "no copy: the build pulls the current one");
        assert!(!r.stale(Some(r#"sha256:1 ["reg/base@sha256:bb"]"#)));
        assert!(r.stale(Some(r#"sha256:1 ["reg/base@sha256:cc"]"#)));
        assert!(r.stale(Some("sha256:1 []")));
        assert_eq!(r.pull.to_string(), "docker pull --quiet reg/base:1");
        let local = Resolved {
            image: "reg/base:1".into(),
            identity: "local sha256:1".into(),
            registry: None,
            warning: None,
        };
        assert_eq!(Refresh::of(&local), None, "only what the registry named");
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
