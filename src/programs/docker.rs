//! The docker command lines this program runs.

use crate::inputs::bases::host_of;
use crate::programs::builder::Builder;
use crate::programs::buildx::Buildx;
use crate::programs::command::Cmd;
use crate::read::compose::{ArgValue, BuildSpec, SecretSource};
use crate::read::dockerfile::Dockerfile;

/// `docker build -f DOCKERFILE -t REF [--build-arg ...] [--target T] [--platform P] --label ... CONTEXT`.
///
/// A build arg whose value came from the environment is passed by name only,
/// with its value in docker's environment, so it is in no argv.
///
/// The labels: docker's classic builder turns each `--label` into a build
/// step of its own (a container and a commit each, about a second apiece
/// here). When `dockerfile` (the Dockerfile as read) shows that they can go on
/// one `LABEL` line at its end, which is where `--label` puts them, the
/// Dockerfile is fed on stdin (`-f -`) with that line added, as
/// `{ cat Dockerfile; printf '\n%s\n' 'LABEL ...'; } | docker build -f - ...`.
pub fn build(
    spec: &BuildSpec,
    reference: &str,
    labels: &[(String, String)],
    dockerfile: Option<&Dockerfile>,
    builder: Builder,
    builder_name: Option<&str>,
) -> Cmd {
    if builder.is_buildkit() {
        return buildkit_build(spec, reference, labels, builder_name);
    }
    let one_line = match (&spec.dockerfile, dockerfile) {
        (Some(path), Some(d)) if d.labels_can_go_last(spec.target.as_deref()) => Some(path.clone()),
        _ => None,
    };
    let mut c = Cmd::new("docker").arg("build");
    if one_line.is_some() {
        c = c.args(["-f", "-"]);
    } else if let Some(d) = &spec.dockerfile {
        c = c.args(["-f", d.as_str()]);
    }
    c = common_build_args(c.args(["-t", reference]), spec);
    if let Some(path) = one_line {
        return c
            .arg(spec.context.as_str())
            .stdin_file_then(path, label_line(labels));
    }
    for (k, v) in labels {
        c = c.args(["--label".to_string(), format!("{k}={v}")]);
    }
    c.arg(spec.context.as_str())
}

/// Does the classic builder's client fail to send this context with the
/// Dockerfile on stdin (`-f -`)? It does when the context's `.dockerignore`
/// is a symlink: docker 20.10's and 28's client then stop with `archive/tar:
/// write too long`, though the same build from the file's path succeeds
/// (tried here). Such a build takes its labels as `--label` flags. The one
/// question on the filesystem asked here: a stat, at plan time, of the
/// context as the file names it.
pub fn stdin_dockerfile_breaks(context: &std::path::Path) -> bool {
    std::fs::symlink_metadata(context.join(".dockerignore"))
        .is_ok_and(|m| m.file_type().is_symlink())
}

/// Build args, target and platform, as both builders take them.
fn common_build_args(mut c: Cmd, spec: &BuildSpec) -> Cmd {
    for a in &spec.args {
        c = match &a.value {
            ArgValue::Literal(v) => c.args(["--build-arg".to_string(), format!("{}={v}", a.name)]),
            ArgValue::Secret(v) => c.args(["--build-arg", a.name.as_str()]).env(&a.name, v),
            ArgValue::Inherit => c.args(["--build-arg", a.name.as_str()]),
        };
    }
    if let Some(t) = &spec.target {
        c = c.args(["--target", t.as_str()]);
    }
    if let Some(p) = &spec.platform {
        c = c.args(["--platform", p.as_str()]);
    }
    for from in &spec.cache_from {
        c = c.args(["--cache-from", from.as_str()]);
    }
    c
}

/// Under BuildKit: the Dockerfile by its path, labels as flags, plain
/// progress, secrets by id and source (never by value), SSH, the cache
/// sources, and buildx's `--builder`.
fn buildkit_build(
    spec: &BuildSpec,
    reference: &str,
    labels: &[(String, String)],
    builder_name: Option<&str>,
) -> Cmd {
    let mut c = Cmd::new("docker")
        .env_shown("DOCKER_BUILDKIT", "1")
        .arg("build");
    if let Some(b) = builder_name {
        c = c.args(["--builder", b]);
    }
    c = c.args(["--progress", "plain"]);
    if let Some(d) = &spec.dockerfile {
        c = c.args(["-f", d.as_str()]);
    }
    c = common_build_args(c.args(["-t", reference]), spec);
    secrets_and_labels(c, spec, labels).arg(spec.context.as_str())
}

/// The registry cache of a build on a builder that pushes itself
/// (`programs::buildx`): `--cache-from` and `--cache-to` as given, and, for
/// inline cache, the cache image pushed as one more `-t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderCache {
    pub reference: String,
    pub from: String,
    pub to: String,
    pub inline: bool,
}

/// `docker buildx build --builder NAME --push --metadata-file FILE -t REF…`:
/// a build on a builder that keeps its result to itself unless told to
/// push. Every reference of the build is a `-t`; the rest as under BuildKit.
pub fn buildx_build(
    spec: &BuildSpec,
    refs: &[String],
    labels: &[(String, String)],
    builder: &Buildx,
    cache: Option<&BuilderCache>,
    metadata_file: &std::path::Path,
) -> Cmd {
    let mut c = builder
        .program
        .cmd()
        .args(["build", "--builder", builder.name.as_str()]);
    c = c.args(["--progress", "plain", "--push", "--metadata-file"]);
    c = c.arg(metadata_file.display().to_string());
    if let Some(d) = &spec.dockerfile {
        c = c.args(["-f", d.as_str()]);
    }
    for r in refs {
        c = c.args(["-t", r.as_str()]);
    }
    if let Some(k) = cache.filter(|k| k.inline) {
        c = c.args(["-t", k.reference.as_str()]);
    }
    c = common_build_args(c, spec);
    c = secrets_and_labels(c, spec, labels);
    if let Some(k) = cache {
        c = c.args(["--cache-from", k.from.as_str(), "--cache-to", k.to.as_str()]);
    }
    c.arg(spec.context.as_str())
}

/// The same build as [`buildx_build`], as one target of a bake definition
/// (`docker buildx bake -f -`, in JSON): the context, the Dockerfile and
/// secret files by absolute path (bake reads a Dockerfile relative to its
/// context), every ref a tag, the registry as the output. None for a build
/// that bake cannot take as it is, which then builds alone: a build
/// argument whose value is secret or comes from the environment (bake would
/// have the value in the definition, or skip the argument), SSH, or a
/// remote context.
pub fn bake_target(
    spec: &BuildSpec,
    refs: &[String],
    labels: &[(String, String)],
    cache: Option<&BuilderCache>,
) -> Option<serde_json::Value> {
    use serde_json::{json, Map, Value};
    if crate::read::compose::is_remote_context(&spec.context) || !spec.ssh.is_empty() {
        return None;
    }
    let absolute = |p: &str| {
        std::path::absolute(p)
            .ok()
            .and_then(|p| p.to_str().map(String::from))
    };
    let mut args = Map::new();
    for a in &spec.args {
        match &a.value {
            ArgValue::Literal(v) => args.insert(a.name.clone(), Value::from(v.as_str())),
            ArgValue::Secret(_) | ArgValue::Inherit => return None,
        };
    }
    let mut tags: Vec<&str> = refs.iter().map(String::as_str).collect();
    tags.extend(cache.filter(|k| k.inline).map(|k| k.reference.as_str()));
    let mut secrets = Vec::new();
    for s in &spec.secrets {
        let source = match &s.source {
            SecretSource::File(path) => SecretSource::File(absolute(path)?),
            env => env.clone(),
        };
        secrets.push(secret_spec(&s.id, &source));
    }
    let mut cache_from: Vec<&str> = spec.cache_from.iter().map(String::as_str).collect();
    cache_from.extend(cache.map(|k| k.from.as_str()));
    let mut t = json!({
        "context": absolute(&spec.context)?,
        "tags": tags,
        "labels": labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "args": args,
        "output": ["type=registry"],
    });
    let mut set = |key: &str, v: Value| {
        if let Some(o) = t.as_object_mut() {
            o.insert(key.to_string(), v);
        }
    };
    if let Some(d) = &spec.dockerfile {
        set("dockerfile", Value::from(absolute(d)?));
    }
    if let Some(target) = &spec.target {
        set("target", Value::from(target.as_str()));
    }
    if let Some(p) = &spec.platform {
        set(
            "platforms",
            json!(p.split(',').map(str::trim).collect::<Vec<_>>()),
        );
    }
    if !secrets.is_empty() {
        set("secret", json!(secrets));
    }
    if !cache_from.is_empty() {
        set("cache-from", json!(cache_from));
    }
    if let Some(k) = cache {
        set("cache-to", json!([k.to]));
    }
    Some(t)
}

/// Labels as flags, secrets by id and source (never by value), SSH.
fn secrets_and_labels(mut c: Cmd, spec: &BuildSpec, labels: &[(String, String)]) -> Cmd {
    for (k, v) in labels {
        c = c.args(["--label".to_string(), format!("{k}={v}")]);
    }
    for s in &spec.secrets {
        c = c.args(["--secret".to_string(), secret_spec(&s.id, &s.source)]);
    }
    for s in &spec.ssh {
        c = c.args(["--ssh", s.as_str()]);
    }
    c
}

/// A secret by id and source (never by value), as `--secret` and bake's
/// `secret` take it: `id=ID,env=VAR` or `id=ID,src=PATH`.
fn secret_spec(id: &str, source: &SecretSource) -> String {
    let (key, value) = match source {
        SecretSource::Env(var) => ("env", var),
        SecretSource::File(path) => ("src", path),
    };
    format!(
        "{},{}",
        csv_field(&format!("id={id}")),
        csv_field(&format!("{key}={value}"))
    )
}

/// One field of the CSV buildx reads `--secret` (and bake's `secret`) with
/// (Go's encoding/csv): quoted, its quotes doubled, when it holds a comma,
/// a quote or a line break; as it is otherwise.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// One `LABEL` instruction with every label, quoted for the Dockerfile.
pub fn label_line(labels: &[(String, String)]) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
            .replace(['\n', '\r'], " ")
    };
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("\"{}\"=\"{}\"", esc(k), esc(v)))
        .collect();
    format!("LABEL {}", pairs.join(" "))
}

/// Answers whether a tag exists in a registry; `--insecure` for a
/// plain-HTTP registry on a loopback address.
/// `--verbose` makes it print the manifest's digest too.
pub fn manifest_inspect(reference: &str, insecure: bool) -> Cmd {
    let mut c = Cmd::new("docker").args(["manifest", "inspect", "--verbose"]);
    if insecure {
        c = c.arg("--insecure");
    }
    c.arg(reference)
}

/// A registry's platform object as `os/architecture[/variant]` (arm64's
/// `v8` left out, as docker does).
pub fn platform_name(p: &serde_json::Value) -> Option<String> {
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    Some(match p.get("variant").and_then(|v| v.as_str()) {
        Some(var) if !(arch == "arm64" && var == "v8") => format!("{os}/{arch}/{var}"),
        _ => format!("{os}/{arch}"),
    })
}

/// The platforms of an index as a registry serves it (its `manifests`
/// entries), sorted; None when it is not one, or an entry names none.
pub fn index_platforms(index: &serde_json::Value) -> Option<Vec<String>> {
    let mut out: Vec<String> = index
        .get("manifests")?
        .as_array()?
        .iter()
        .map(|e| platform_name(e.get("platform")?))
        .collect::<Option<_>>()?;
    out.sort();
    Some(out)
}

/// The platforms `docker manifest inspect --verbose` says a reference holds:
/// one descriptor's `platform` for an image, each entry's for an index
/// (`os/architecture[/variant]`; an attestation's is `unknown/unknown`).
/// None when the answer names none.
pub fn manifest_platforms(json: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let one = |d: &serde_json::Value| platform_name(d.pointer("/Descriptor/platform")?);
    let mut out: Vec<String> = match &v {
        serde_json::Value::Array(entries) => entries.iter().map(one).collect::<Option<_>>()?,
        _ => vec![one(&v)?],
    };
    out.sort();
    Some(out)
}

/// Answers whether an image is present in the local engine.
pub fn image_present(reference: &str) -> Cmd {
    Cmd::new("docker").args(["image", "inspect", "--format", "{{.Id}}", reference])
}

/// The registry digests of a local image, as a JSON list of `REPO@sha256:…`.
pub fn repo_digests(reference: &str) -> Cmd {
    Cmd::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        reference,
    ])
}

/// What the engine knows of registries (`docker info`), as JSON.
pub fn registry_config() -> Cmd {
    Cmd::new("docker").args(["info", "--format", "{{json .RegistryConfig}}"])
}

/// Does the engine reach `host` over plain HTTP? When its configuration
/// (`registry_config`) lists it as not secure, or its address is in one of
/// the engine's insecure ranges (127.0.0.0/8 by default).
pub fn insecure_in(config: &str, host: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(config) else {
        return false;
    };
    if v.pointer(&format!(
        "/IndexConfigs/{}/Secure",
        host.replace('~', "~0").replace('/', "~1")
    ))
    .and_then(serde_json::Value::as_bool)
        == Some(false)
    {
        return true;
    }
    let ip = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    v.get("InsecureRegistryCIDRs")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .any(|cidr| {
            let Some((net, bits)) = cidr.split_once('/') else {
                return false;
            };
            let (Ok(net), Ok(bits)) = (net.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>())
            else {
                return false;
            };
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits.min(32))
            };
            u32::from(ip) & mask == u32::from(net) & mask
        })
}

/// A registry host that docker reaches over plain HTTP: a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name == "localhost" || name.starts_with("127.") || name == "::1"
}

/// `docker manifest create [--insecure] LIST PART…`: an index of the parts
/// (each one platform's image, in the same registry), kept by the docker
/// client until pushed.
pub fn manifest_create(list: &str, parts: &[String], insecure: bool) -> Cmd {
    let mut c = Cmd::new("docker").args(["manifest", "create"]);
    if insecure {
        c = c.arg("--insecure");
    }
    c.arg(list).args(parts)
}

/// `docker manifest push --purge [--insecure] LIST`: the index and, where a
/// part is in another repository, the part (by digest, untagged); prints
/// the index's digest last. `--purge` drops the client's copy.
pub fn manifest_push(list: &str, insecure: bool) -> Cmd {
    let mut c = Cmd::new("docker").args(["manifest", "push", "--purge"]);
    if insecure {
        c = c.arg("--insecure");
    }
    c.arg(list)
}

/// `docker manifest rm LIST`: the client's copy of an index left by a run
/// that stopped before its push.
pub fn manifest_rm(list: &str) -> Cmd {
    Cmd::new("docker").args(["manifest", "rm", list])
}

pub fn tag(source: &str, target: &str) -> Cmd {
    Cmd::new("docker").args(["tag", source, target])
}

/// `docker pull -q REF`: an image to build on or from.
pub fn pull_quiet(reference: &str) -> Cmd {
    Cmd::new("docker").args(["pull", "-q", reference])
}

pub fn push(reference: &str) -> Cmd {
    Cmd::new("docker").args(["push", reference])
}

/// `docker login --username AWS --password-stdin HOST`: the password comes on
/// stdin, never in argv.
pub fn login(host: &str) -> Cmd {
    Cmd::new("docker").args(["login", "--username", "AWS", "--password-stdin", host])
}

/// The registry's digest of one base image. `config` is the engine's
/// registry configuration, when known.
pub fn registry_lookup(image: &str, config: Option<&str>) -> Cmd {
    let insecure =
        host_of(image).is_some_and(|h| is_loopback(h) || config.is_some_and(|c| insecure_in(c, h)));
    manifest_inspect(image, insecure)
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

/// `docker pull IMAGE`, for an engine copy that is older than the registry's.
pub fn pull(image: &str) -> Cmd {
    Cmd::new("docker").args(["pull", "--quiet", image])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platforms_a_verbose_manifest_inspect_names() {
        let one = r#"{"Ref":"r","Descriptor":{"digest":"sha256:a","platform":{"architecture":"arm64","os":"linux","variant":"v8"}}}"#;
        assert_eq!(manifest_platforms(one).unwrap(), ["linux/arm64"]);
        let index = r#"[{"Ref":"r","Descriptor":{"platform":{"architecture":"arm64","os":"linux"}}},{"Ref":"r","Descriptor":{"platform":{"architecture":"amd64","os":"linux"}}},{"Ref":"r","Descriptor":{"platform":{"architecture":"unknown","os":"unknown"}}}]"#;
        assert_eq!(
            manifest_platforms(index).unwrap(),
            ["linux/amd64", "linux/arm64", "unknown/unknown"]
        );
        assert_eq!(manifest_platforms(r#"{"Ref":"r","Descriptor":{}}"#), None);
        assert_eq!(manifest_platforms("nope"), None);
    }

    #[test]
    fn a_secret_path_with_a_comma_or_a_quote_is_one_csv_field() {
        assert_eq!(
            secret_spec("npm", &SecretSource::File("/run/a,b".into())),
            "id=npm,\"src=/run/a,b\""
        );
        assert_eq!(
            secret_spec("npm", &SecretSource::File("/run/say \"hi\"".into())),
            "id=npm,\"src=/run/say \"\"hi\"\"\""
        );
        assert_eq!(
            secret_spec("npm", &SecretSource::Env("NPM_TOKEN".into())),
            "id=npm,env=NPM_TOKEN"
        );
    }

    #[test]
    fn a_bake_target_is_the_same_build_and_only_what_bake_takes_as_it_is() {
        let spec = |args: Vec<(&str, ArgValue)>| BuildSpec {
            context: "/app/web".into(),
            dockerfile: Some("/app/web/Dockerfile.prod".into()),
            args: args
                .into_iter()
                .map(|(n, value)| crate::read::compose::BuildArg {
                    name: n.into(),
                    value,
                })
                .collect(),
            target: Some("prod".into()),
            platform: Some("linux/amd64,linux/arm64".into()),
            secrets: vec![crate::read::compose::BuildSecret {
                id: "npm".into(),
                source: SecretSource::Env("NPM_TOKEN".into()),
            }],
            ssh: Vec::new(),
            cache_from: vec!["r/app:old".into()],
            upload_root: None,
        };
        let cache = BuilderCache {
            reference: "r/app-cache:web".into(),
            from: "type=registry,ref=r/app-cache:web".into(),
            to: "type=registry,ref=r/app-cache:web,mode=max".into(),
            inline: false,
        };
        let refs = ["r/app:web".to_string(), "r/app:worker".to_string()];
        let labels = [("l".to_string(), "v".to_string())];
        let t = bake_target(
            &spec(vec![("A", ArgValue::Literal("1".into()))]),
            &refs,
            &labels,
            Some(&cache),
        )
        .expect("bake takes it");
        assert_eq!(
            t,
            serde_json::json!({
                "context": "/app/web",
                "dockerfile": "/app/web/Dockerfile.prod",
                "tags": ["r/app:web", "r/app:worker"],
                "labels": {"l": "v"},
                "args": {"A": "1"},
                "target": "prod",
                "platforms": ["linux/amd64", "linux/arm64"],
                "secret": ["id=npm,env=NPM_TOKEN"],
                "cache-from": ["r/app:old", "type=registry,ref=r/app-cache:web"],
                "cache-to": ["type=registry,ref=r/app-cache:web,mode=max"],
                "output": ["type=registry"],
            })
        );
        // A value that must stay out of any text, one from the environment,
        // SSH, a remote context: each build alone.
        for value in [ArgValue::Secret("s3cret".into()), ArgValue::Inherit] {
            assert_eq!(
                bake_target(&spec(vec![("A", value)]), &refs, &labels, None),
                None
            );
        }
        let mut ssh = spec(Vec::new());
        ssh.ssh = vec!["default".into()];
        assert_eq!(bake_target(&ssh, &refs, &labels, None), None);
        let mut remote = spec(Vec::new());
        remote.context = "https://github.com/o/r.git#main".into();
        assert_eq!(bake_target(&remote, &refs, &labels, None), None);
        // A relative path is made absolute: bake reads a Dockerfile
        // relative to its context.
        let mut relative = spec(Vec::new());
        relative.context = "web".into();
        relative.dockerfile = Some("web/Dockerfile".into());
        let t = bake_target(&relative, &refs, &labels, None).expect("taken");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            t["dockerfile"],
            cwd.join("web/Dockerfile").display().to_string()
        );
        assert_eq!(t["context"], cwd.join("web").display().to_string());
    }

    #[test]
    fn the_engines_plain_http_registries() {
        let config = r#"{"IndexConfigs":{"10.213.7.1:5999":{"Name":"10.213.7.1:5999","Secure":false},"docker.io":{"Secure":true}},"InsecureRegistryCIDRs":["127.0.0.0/8","10.9.0.0/16"]}"#;
        assert!(insecure_in(config, "10.213.7.1:5999"));
        assert!(insecure_in(config, "127.0.0.1:5000"));
        assert!(insecure_in(config, "10.9.3.4:443"));
        assert!(!insecure_in(config, "10.8.0.1:5000"));
        assert!(!insecure_in(config, "docker.io"));
        assert!(!insecure_in("not json", "127.0.0.1:5000"));
    }

    #[test]
    fn the_label_line_quotes_what_a_dockerfile_would_read() {
        let line = label_line(&[
            (
                "org.opencontainers.image.description".into(),
                "say \"hi\" $HOME \\ x\ny".into(),
            ),
            ("k".into(), "v".into()),
        ]);
        assert_eq!(
            line,
            r#"LABEL "org.opencontainers.image.description"="say \"hi\" \$HOME \\ x y" "k"="v""#
        );
    }
}
