//! A service's `build:` as docker-compose and Convox read it: the short form
//! or `context`/`dockerfile` (convox.yml: `path`/`manifest`), args, target,
//! secrets, ssh, cache_from; variables interpolated; paths joined to the
//! file's directory.

use super::formats::convox_yml_args_warning;
use super::*;

impl Compose {
    /// The app directory, for a local context strictly inside it.
    pub(super) fn upload_root(&self, context: &str) -> Option<String> {
        if is_remote_context(context) {
            return None;
        }
        let root = normalize(&self.dir());
        let base = if root == "." { "" } else { root.as_str() };
        let inside = Path::new(context).strip_prefix(base).is_ok_and(|rel| {
            rel.components().next().is_some()
                && rel.components().all(|c| matches!(c, Component::Normal(_)))
        });
        inside.then(|| if root.is_empty() { ".".into() } else { root })
    }

    /// A build with its paths joined to the file's directory, and the
    /// service's platform.
    pub(super) fn resolve_build(
        &self,
        name: &str,
        value: NodeId,
        raw: RawBuild,
        site: BuildSite,
        env: Env<'_>,
    ) -> Result<Source> {
        let doc = &self.doc;
        let context = if is_remote_context(&raw.context) {
            raw.context
        } else {
            normalize(&self.dir().join(&raw.context))
        };
        let dockerfile = raw.dockerfile.filter(|d| !d.is_empty()).map(|d| {
            if is_remote_context(&context) {
                d
            } else {
                normalize(&Path::new(&context).join(d))
            }
        });
        // The service's platform is the build's too (as docker-compose has it).
        let platform = match doc.get(value, "platform").filter(|f| !doc.is_null(f.value)) {
            Some(f) => {
                Some(self.service_string(name, f.value, "platform", " such as linux/amd64", env)?)
                    .filter(|p| !p.is_empty())
            }
            None => None,
        };
        let upload_root = self.upload_root(&context);
        Ok(Source::Build {
            spec: BuildSpec {
                context,
                dockerfile,
                args: raw.args,
                target: raw.target,
                platform,
                secrets: raw.secrets,
                ssh: raw.ssh,
                cache_from: raw.cache_from,
                upload_root,
            },
            site,
            implicit: raw.implicit,
        })
    }

    /// What a `build:` entry says: a path, or a mapping.
    pub(super) fn read_build(
        &self,
        name: &str,
        build: NodeId,
        env: Env<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<RawBuild> {
        let doc = &self.doc;
        let bad = |what: &str| -> anyhow::Error {
            anyhow!("{}: service `{name}`: {what}", self.at(build))
        };
        let ip = |text: &str| -> Result<String> {
            Ok(self.interp(text, env).map_err(|e| bad(&e))?.value)
        };
        let mut raw = RawBuild {
            context: String::new(),
            dockerfile: None,
            args: Vec::new(),
            target: None,
            secrets: Vec::new(),
            ssh: Vec::new(),
            cache_from: Vec::new(),
            implicit: false,
        };
        if let Some(path) = doc.scalar(build) {
            raw.context = ip(path)?;
        } else if doc.entries(build).is_some() {
            // convox.yml names the context `path` and the Dockerfile `manifest`.
            let (context_key, dockerfile_key) = if self.format == Format::ConvoxYml {
                ("path", "manifest")
            } else {
                ("context", "dockerfile")
            };
            let string_field = |key: &str| -> Result<Option<String>> {
                match doc.get(build, key) {
                    Some(f) => match doc.scalar(f.value) {
                        Some(s) => Ok(Some(ip(s)?)),
                        None => Err(bad(&format!("`build.{key}` must be a string"))),
                    },
                    None => Ok(None),
                }
            };
            raw.context = string_field(context_key)?.unwrap_or_else(|| ".".to_string());
            raw.dockerfile = string_field(dockerfile_key)?.filter(|d| !d.is_empty());
            raw.target = string_field("target")?.filter(|t| !t.is_empty());
            if let Some(f) = doc.get(build, "args") {
                let args = self.read_args(name, f.value, env)?;
                if self.format == Format::ConvoxYml {
                    // Convox's build of a convox.yml (v3's `buildArgs`,
                    // gen2's too) reads them and passes none.
                    warnings.push(convox_yml_args_warning(&self.at(f.value), name, &args));
                } else {
                    for a in args.iter().filter(|a| looks_secret(&a.name)) {
                        warnings.push(self.secret_arg_warning(name, f.value, &a.name));
                    }
                    raw.args = args;
                }
            }
            if let Some(f) = doc.get(build, "secrets") {
                raw.secrets = self.read_secrets(name, f.value, env)?;
            }
            if let Some(f) = doc.get(build, "ssh") {
                raw.ssh = self.string_list(name, f.value, "build.ssh", env)?;
            }
            if let Some(f) = doc.get(build, "cache_from") {
                raw.cache_from = self.string_list(name, f.value, "build.cache_from", env)?;
            }
            self.unknown_build_keys(name, build, [context_key, dockerfile_key], warnings);
        } else {
            return Err(bad(
                "`build:` must be a path or a mapping with `context`, `dockerfile`, `args`, `target`",
            ));
        }
        if raw.context.is_empty() {
            return Err(bad("the build context is empty"));
        }
        Ok(raw)
    }

    /// A build arg whose name looks like a secret: its value ends up in the
    /// image.
    pub(super) fn secret_arg_warning(&self, name: &str, args: NodeId, arg: &str) -> String {
        format!(
            "{}: service `{name}`: build arg `{}` looks like a secret: its value is written into the image, where anyone who can pull it reads it (`docker history`); pass it as a build secret instead (BuildKit): `build: {{secrets: [{id}]}}` with top-level `secrets: {{{id}: {{environment: {}}}}}`, and `RUN --mount=type=secret,id={id} …` in the Dockerfile",
            self.at(args),
            arg,
            arg,
            id = arg.to_lowercase(),
        )
    }

    /// A warning for each `build:` key this tool does not use.
    pub(super) fn unknown_build_keys(
        &self,
        name: &str,
        build: NodeId,
        [context_key, dockerfile_key]: [&str; 2],
        warnings: &mut Vec<String>,
    ) {
        let doc = &self.doc;
        for e in doc.entries(build).unwrap_or_default() {
            let key = doc.scalar(e.key).unwrap_or("");
            let known = [
                context_key,
                dockerfile_key,
                "args",
                "target",
                "secrets",
                "ssh",
                "cache_from",
                "<<",
            ];
            if !known.contains(&key) {
                warnings.push(format!(
                    "{}: service `{name}`: `build.{key}` is not used by this tool and is ignored",
                    self.at(e.key)
                ));
            }
        }
    }

    /// A string at the service's own level (`dockerfile:` of Convox gen1,
    /// `platform:`), interpolated.
    pub(super) fn service_string(
        &self,
        name: &str,
        at: NodeId,
        key: &str,
        example: &str,
        env: Env<'_>,
    ) -> Result<String> {
        let Some(text) = self.doc.scalar(at) else {
            bail!(
                "{}: service `{name}`: `{key}:` must be a string{example}",
                self.at(at)
            );
        };
        Ok(self
            .interp(text, env)
            .map_err(|e| anyhow!("{}: service `{name}`: {e}", self.at(at)))?
            .value)
    }

    /// A list of strings (or a mapping, for `build.ssh`: `ID: PATH`),
    /// interpolated.
    pub(super) fn string_list(
        &self,
        name: &str,
        node: NodeId,
        key: &str,
        env: Env<'_>,
    ) -> Result<Vec<String>> {
        let doc = &self.doc;
        let bad = |at: NodeId, what: &str| anyhow!("{}: service `{name}`: {what}", self.at(at));
        let ip = |at: NodeId, t: &str| -> Result<String> {
            Ok(self.interp(t, env).map_err(|e| bad(at, &e))?.value)
        };
        let mut out = Vec::new();
        if let Some(items) = doc.items(node) {
            for &i in items {
                let Some(t) = doc.scalar(i) else {
                    return Err(bad(i, &format!("`{key}` must list strings")));
                };
                out.push(ip(i, t)?);
            }
        } else if let Some(entries) = doc.entries(node) {
            for e in entries {
                let (Some(k), Some(v)) = (doc.scalar(e.key), doc.scalar(e.value)) else {
                    return Err(bad(e.key, &format!("`{key}` must map names to strings")));
                };
                out.push(format!("{k}={}", ip(e.value, v)?));
            }
        } else if let Some(t) = doc.scalar(node).filter(|_| !doc.is_null(node)) {
            out.push(ip(node, t)?);
        }
        Ok(out)
    }

    /// `build.secrets` (short: `- NAME`; long: `- {source: NAME, target:
    /// ID}`), each resolved through the top-level `secrets:` to an
    /// environment variable or a file that must exist now.
    pub(super) fn read_secrets(
        &self,
        name: &str,
        node: NodeId,
        env: Env<'_>,
    ) -> Result<Vec<BuildSecret>> {
        let doc = &self.doc;
        let bad = |at: NodeId, what: &str| anyhow!("{}: service `{name}`: {what}", self.at(at));
        let Some(items) = doc.items(node) else {
            if doc.is_null(node) {
                return Ok(Vec::new());
            }
            return Err(bad(node, "`build.secrets` must be a list"));
        };
        let top = self
            .doc
            .root
            .and_then(|r| doc.get(r, "secrets"))
            .map(|f| f.value);
        let mut out = Vec::new();
        for &item in items {
            let (source, target) = match doc.scalar(item) {
                Some(s) => (s.to_string(), None),
                None => {
                    let Some(src) = doc.get(item, "source").and_then(|f| doc.scalar(f.value))
                    else {
                        return Err(bad(item, "a build secret needs `source:`"));
                    };
                    let target = doc.get(item, "target").and_then(|f| doc.scalar(f.value));
                    (src.to_string(), target.map(String::from))
                }
            };
            let Some(def) = top.and_then(|t| doc.get(t, &source)) else {
                return Err(bad(
                    item,
                    &format!(
                        "build secret `{source}` is not defined under the top-level `secrets:`"
                    ),
                ));
            };
            let from = if let Some(v) = doc
                .get(def.value, "environment")
                .and_then(|f| doc.scalar(f.value))
            {
                if env(v).is_none_or(|x| x.is_empty()) {
                    return Err(bad(
                        item,
                        &format!("build secret `{source}` comes from the environment variable {v}, which is not set"),
                    ));
                }
                SecretSource::Env(v.to_string())
            } else if let Some(f) = doc.get(def.value, "file").and_then(|f| doc.scalar(f.value)) {
                let path = normalize(&self.dir().join(f));
                if !Path::new(&path).is_file() {
                    return Err(bad(
                        item,
                        &format!("build secret `{source}` comes from the file {path}, which does not exist"),
                    ));
                }
                SecretSource::File(path)
            } else {
                return Err(bad(
                    def.value,
                    &format!("build secret `{source}`: give `environment: VAR` or `file: PATH`"),
                ));
            };
            out.push(BuildSecret {
                id: target.unwrap_or(source),
                source: from,
            });
        }
        Ok(out)
    }

    pub(super) fn read_args(
        &self,
        name: &str,
        node: NodeId,
        env: Env<'_>,
    ) -> Result<Vec<BuildArg>> {
        let doc = &self.doc;
        let bad = |at: NodeId, what: &str| anyhow!("{}: service `{name}`: {what}", self.at(at));
        let value_of = |at: NodeId, text: &str| -> Result<ArgValue> {
            let r = self.interp(text, env).map_err(|e| bad(at, &e))?;
            Ok(if r.from_env {
                ArgValue::Secret(r.value)
            } else {
                ArgValue::Literal(r.value)
            })
        };
        let mut args = Vec::new();
        if let Some(entries) = doc.entries(node) {
            for e in entries {
                let Some(key) = doc.scalar(e.key) else {
                    return Err(bad(e.key, "a build arg name must be a string"));
                };
                let value = if doc.is_null(e.value) {
                    ArgValue::Inherit
                } else {
                    match doc.scalar(e.value) {
                        Some(v) => value_of(e.value, v)?,
                        None => return Err(bad(e.value, "a build arg value must be a string")),
                    }
                };
                args.push(BuildArg {
                    name: key.to_string(),
                    value,
                });
            }
        } else if let Some(items) = doc.items(node) {
            for &item in items {
                let Some(s) = doc.scalar(item) else {
                    return Err(bad(item, "a build arg must be `KEY=VALUE` or `KEY`"));
                };
                let (k, value) = match s.split_once('=') {
                    Some((k, v)) => (k, value_of(item, v)?),
                    None => (s, ArgValue::Inherit),
                };
                args.push(BuildArg {
                    name: k.to_string(),
                    value,
                });
            }
        } else if !doc.is_null(node) {
            return Err(bad(node, "`build.args` must be a mapping or a list"));
        }
        if let Some(a) = args
            .iter()
            .find(|a| a.name.is_empty() || a.name.contains(' '))
        {
            return Err(bad(node, &format!("invalid build arg name `{}`", a.name)));
        }
        Ok(args)
    }
}
