//! Reading a compose file: which format it is, its services, and for each
//! service with `build:` what to build. Nothing here runs a process.

use crate::interpolate::interpolate;
use crate::yaml::{Doc, Entry, NodeId, Pos};
use anyhow::{anyhow, bail, Result};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Convox generation 1: services at the top level, no `version:`.
    ConvoxV1,
    /// `services:` with `version: "2"`, `"2.x"`, `"3.x"`, or none (the
    /// compose spec).
    Compose { version: Option<String> },
    /// `convox.yml` of current Convox racks: `services:` whose `build:` is a
    /// path or `{path: DIR, manifest: Dockerfile.x}`.
    ConvoxYml,
}

#[derive(Debug, Clone)]
pub struct Compose {
    pub path: PathBuf,
    /// The file's bytes as UTF-8 text, byte-order mark and all.
    pub text: String,
    pub doc: Doc,
    pub format: Format,
    pub services: Vec<Service>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// The service's value node in the file, aliases not followed.
    pub value: NodeId,
    pub pos: Pos,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// It names an image: left exactly as it is.
    Image(String),
    Build {
        spec: BuildSpec,
        site: BuildSite,
    },
}

/// Where the `build:` that applies to a service is written, which decides how
/// the rewrite gives the service its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildSite {
    /// In the service's own mapping (with a Convox v1 service-level
    /// `dockerfile:` entry, when there is one).
    Own {
        build: Entry,
        dockerfile: Option<Entry>,
    },
    /// Inherited through a merge key; the anchor is shared and stays.
    Merged,
    /// The whole service is an alias of another mapping.
    AliasedService,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildSpec {
    /// The context directory (joined to the compose file's directory), or a
    /// URL that docker fetches itself.
    pub context: String,
    /// The Dockerfile path as docker's `-f` takes it; None for the context's
    /// own `Dockerfile`.
    pub dockerfile: Option<String>,
    pub args: Vec<BuildArg>,
    pub target: Option<String>,
    /// The service's `platform:` (e.g. `linux/amd64`), passed to
    /// `docker build --platform`.
    pub platform: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildArg {
    pub name: String,
    pub value: ArgValue,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ArgValue {
    /// Written in the file: passed as `--build-arg NAME=VALUE`.
    Literal(String),
    /// Interpolated from the environment: passed as `--build-arg NAME` with
    /// the value in docker's environment, so it is in no argv and no output.
    Secret(String),
    /// `NAME` alone: docker takes it from the environment it inherits.
    Inherit,
}

pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Compose {
    /// Read and parse a compose file.
    pub fn load(path: &Path, env: Env<'_>) -> Result<Compose> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow!("cannot read compose file {}: {e}", path.display()))?;
        Self::from_bytes(path, bytes, env)
    }

    pub fn from_bytes(path: &Path, bytes: Vec<u8>, env: Env<'_>) -> Result<Compose> {
        let text = String::from_utf8(bytes).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = good.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            anyhow!(
                "{}:{line}:{col}: the file is not valid UTF-8; save it as UTF-8",
                path.display()
            )
        })?;
        let doc = Doc::parse(&text).map_err(|e| {
            let at = match e.pos {
                Some(p) => format!("{}:{p}", path.display()),
                None => path.display().to_string(),
            };
            anyhow!(
                "{at}: invalid YAML: {}; {}",
                e.message,
                yaml_hint(&e.message)
            )
        })?;
        let mut c = Compose {
            path: path.to_path_buf(),
            text,
            doc,
            format: Format::ConvoxV1,
            services: Vec::new(),
            warnings: Vec::new(),
        };
        c.read_services(env)?;
        Ok(c)
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn at(&self, node: NodeId) -> String {
        format!("{}:{}", self.path.display(), self.doc.node(node).pos)
    }

    fn read_services(&mut self, env: Env<'_>) -> Result<()> {
        let file = self.path.display().to_string();
        let Some(root) = self.doc.root.filter(|&r| !self.doc.is_null(r)) else {
            bail!("{file}: the file is empty; it should map service names to services");
        };
        if self.doc.entries(root).is_none() {
            bail!(
                "{}: the top level must be a mapping (of service names, or with `services:`)",
                self.at(root)
            );
        }
        let version = self.doc.get(root, "version");
        let services = self.doc.get(root, "services");
        if let Some(v) = version {
            let text = self.doc.scalar(v.value).unwrap_or("");
            if !is_known_version(text) {
                bail!(
                    "{}: unknown compose `version: {text}`; supported are \"2\", \"2.x\", \"3\", \"3.x\", or no version with `services:`",
                    self.at(v.value)
                );
            }
        }
        let (map, format) = match (services, version) {
            (Some(s), None) if self.is_convox_yml(root, s.value) => (s.value, Format::ConvoxYml),
            (Some(s), v) => {
                let version = v.and_then(|v| self.doc.scalar(v.value)).map(String::from);
                (s.value, Format::Compose { version })
            }
            (None, Some(v)) => bail!(
                "{}: the file has `version:` but no `services:`",
                self.at(v.value)
            ),
            (None, None) => (root, Format::ConvoxV1),
        };
        self.format = format;
        if self.doc.is_null(map) {
            bail!("{}: `services:` is empty", self.at(map));
        }
        let Some(entries) = self.doc.entries(map).map(<[Entry]>::to_vec) else {
            bail!(
                "{}: `services:` must be a mapping of service names to services",
                self.at(map)
            );
        };
        for e in entries {
            if self.doc.is_merge_key(e.key) {
                continue;
            }
            let Some(name) = self.doc.scalar(e.key).map(String::from) else {
                bail!("{}: a service name must be a string", self.at(e.key));
            };
            if self.format == Format::ConvoxV1 && name.starts_with("x-") {
                continue;
            }
            if !valid_service_name(&name) {
                bail!(
                    "{}: service `{name}`: invalid name; compose allows letters, digits, `_`, `.` and `-`, starting with a letter or digit",
                    self.at(e.key)
                );
            }
            let source = self.read_service(&name, e.value, env)?;
            self.services.push(Service {
                name,
                value: e.value,
                pos: self.doc.node(e.key).pos,
                source,
            });
        }
        if self.services.is_empty() {
            bail!("{file}: no services found");
        }
        Ok(())
    }

    /// Is this a `convox.yml`? By its name, by top-level keys that only it
    /// has, or by a `build:` with `path:` or `manifest:`.
    fn is_convox_yml(&self, root: NodeId, services: NodeId) -> bool {
        let doc = &self.doc;
        let named = self
            .path
            .file_name()
            .is_some_and(|n| n == "convox.yml" || n == "convox.yaml");
        let top = [
            "resources",
            "environment",
            "params",
            "timers",
            "balancers",
            "appearance",
        ]
        .iter()
        .any(|k| doc.get(root, k).is_some());
        let build_keys = doc.entries(services).unwrap_or_default().iter().any(|e| {
            doc.get(e.value, "build").is_some_and(|b| {
                doc.get(b.value, "path").is_some() || doc.get(b.value, "manifest").is_some()
            })
        });
        named || top || build_keys
    }

    fn read_service(&mut self, name: &str, value: NodeId, env: Env<'_>) -> Result<Source> {
        let mut warnings = Vec::new();
        let source = self.read_service_source(name, value, env, &mut warnings);
        self.warnings.extend(warnings);
        source
    }

    fn read_service_source(
        &self,
        name: &str,
        value: NodeId,
        env: Env<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<Source> {
        let doc = &self.doc;
        if doc.entries(value).is_none() {
            bail!(
                "{}: service `{name}`: must be a mapping with `build:` or `image:`",
                self.at(value)
            );
        }
        if let Some(img) = doc.get(value, "image").filter(|f| !doc.is_null(f.value)) {
            let Some(image) = doc.scalar(img.value) else {
                bail!(
                    "{}: service `{name}`: `image:` must be a string",
                    self.at(img.value)
                );
            };
            return Ok(Source::Image(image.to_string()));
        }
        let Some(build) = doc.get(value, "build").filter(|f| !doc.is_null(f.value)) else {
            bail!(
                "{}: service `{name}` has neither `build:` nor `image:`; add one of them",
                self.at(value)
            );
        };
        let v1_dockerfile = doc.get(value, "dockerfile");
        let site = if doc.is_alias(value) {
            BuildSite::AliasedService
        } else if let Some(entry) = build.own {
            BuildSite::Own {
                build: entry,
                dockerfile: v1_dockerfile.and_then(|d| d.own),
            }
        } else {
            BuildSite::Merged
        };
        let bad = |what: &str| -> anyhow::Error {
            anyhow!("{}: service `{name}`: {what}", self.at(build.value))
        };
        let ip = |text: &str| -> Result<crate::interpolate::Interpolated> {
            interpolate(text, env).map_err(|e| bad(&e))
        };
        let (context, mut dockerfile, args, target);
        if let Some(path) = doc.scalar(build.value) {
            context = ip(path)?.value;
            dockerfile = None;
            args = Vec::new();
            target = None;
        } else if doc.entries(build.value).is_some() {
            // convox.yml names the context `path` and the Dockerfile `manifest`.
            let convox_yml = self.format == Format::ConvoxYml;
            let (context_key, dockerfile_key) = if convox_yml {
                ("path", "manifest")
            } else {
                ("context", "dockerfile")
            };
            let string_field = |key: &str| -> Result<Option<String>> {
                match doc.get(build.value, key) {
                    Some(f) => match doc.scalar(f.value) {
                        Some(s) => Ok(Some(ip(s)?.value)),
                        None => Err(bad(&format!("`build.{key}` must be a string"))),
                    },
                    None => Ok(None),
                }
            };
            context = string_field(context_key)?.unwrap_or_else(|| ".".to_string());
            dockerfile = string_field(dockerfile_key)?;
            target = string_field("target")?.filter(|t| !t.is_empty());
            args = match doc.get(build.value, "args") {
                Some(f) => self.read_args(name, f.value, env)?,
                None => Vec::new(),
            };
            for e in doc.entries(build.value).unwrap_or_default() {
                let key = doc.scalar(e.key).unwrap_or("");
                let known = [context_key, dockerfile_key, "args", "target", "<<"];
                if !known.contains(&key) {
                    warnings.push(format!(
                        "{}: service `{name}`: `build.{key}` is not used by this tool and is ignored",
                        self.at(e.key)
                    ));
                }
            }
        } else {
            return Err(bad(
                "`build:` must be a path or a mapping with `context`, `dockerfile`, `args`, `target`",
            ));
        }
        // A string at the service's own level (`dockerfile:` of Convox v1,
        // `platform:`), interpolated.
        let service_string = |at: NodeId, key: &str, example: &str| -> Result<String> {
            let Some(text) = doc.scalar(at) else {
                bail!(
                    "{}: service `{name}`: `{key}:` must be a string{example}",
                    self.at(at)
                );
            };
            Ok(interpolate(text, env)
                .map_err(|e| anyhow!("{}: service `{name}`: {e}", self.at(at)))?
                .value)
        };
        if dockerfile.is_none() {
            if let Some(d) = v1_dockerfile {
                dockerfile = Some(service_string(d.value, "dockerfile", "")?);
            }
        }
        if context.is_empty() {
            return Err(bad("the build context is empty"));
        }
        let context = if is_remote_context(&context) {
            context
        } else {
            normalize(&self.dir().join(&context))
        };
        let dockerfile = dockerfile.filter(|d| !d.is_empty()).map(|d| {
            if is_remote_context(&context) {
                d
            } else {
                normalize(&Path::new(&context).join(d))
            }
        });
        // The service's platform is the build's too (as docker-compose has it).
        let platform = match doc.get(value, "platform").filter(|f| !doc.is_null(f.value)) {
            Some(f) => Some(service_string(f.value, "platform", " such as linux/amd64")?)
                .filter(|p| !p.is_empty()),
            None => None,
        };
        Ok(Source::Build {
            spec: BuildSpec {
                context,
                dockerfile,
                args,
                target,
                platform,
            },
            site,
        })
    }

    fn read_args(&self, name: &str, node: NodeId, env: Env<'_>) -> Result<Vec<BuildArg>> {
        let doc = &self.doc;
        let bad = |at: NodeId, what: &str| anyhow!("{}: service `{name}`: {what}", self.at(at));
        let value_of = |at: NodeId, text: &str| -> Result<ArgValue> {
            let r = interpolate(text, env).map_err(|e| bad(at, &e))?;
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

/// What to do about a YAML error.
fn yaml_hint(message: &str) -> &'static str {
    if message.contains("tab") {
        "indent with spaces: YAML does not allow tabs there"
    } else if message.contains("duplicate key") {
        "remove or rename one of the two"
    } else if message.contains("recursion limit") {
        "`[ ]` and `{ }` nest at most 255 levels deep in this parser; flatten the structure"
    } else if message.contains("more than one YAML document") {
        "keep one document (remove the `---` separators)"
    } else {
        "fix the YAML there (an unclosed bracket or quote further up can show up here)"
    }
}

fn is_known_version(v: &str) -> bool {
    let mut parts = v.splitn(2, '.');
    let major = parts.next().unwrap_or("");
    let minor_ok = parts
        .next()
        .is_none_or(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()));
    matches!(major, "2" | "3") && minor_ok
}

/// Compose's rule for service names.
pub fn valid_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A context that docker fetches itself: a git or HTTP URL.
pub fn is_remote_context(context: &str) -> bool {
    ["http://", "https://", "git://", "git@", "github.com/"]
        .iter()
        .any(|p| context.starts_with(p))
}

/// Drop `.` components and fold `dir/..` without touching the file system.
pub fn normalize(path: &Path) -> String {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        return ".".into();
    }
    out.iter()
        .collect::<PathBuf>()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TAGDIR" => Some("web".into()),
            "TOKEN" => Some("s3cret".into()),
            _ => None,
        }
    }

    fn load(src: &str) -> Result<Compose> {
        Compose::from_bytes(
            Path::new("app/docker-compose.yml"),
            src.as_bytes().to_vec(),
            &env,
        )
    }

    fn spec(c: &Compose, name: &str) -> BuildSpec {
        match &c.services.iter().find(|s| s.name == name).unwrap().source {
            Source::Build { spec, .. } => spec.clone(),
            other => panic!("{name} is {other:?}"),
        }
    }

    #[test]
    fn a_services_platform_is_its_builds() {
        let src = "services:\n  web:\n    build: .\n    platform: linux/amd64\n  arm:\n    build: .\n    platform: linux/${TAGDIR}\n  any:\n    build: .\n";
        let c = load(src).unwrap();
        assert_eq!(spec(&c, "web").platform.as_deref(), Some("linux/amd64"));
        assert_eq!(spec(&c, "arm").platform.as_deref(), Some("linux/web"));
        assert_eq!(spec(&c, "any").platform, None);
        // Same context, other platform: another build.
        assert_ne!(spec(&c, "web"), spec(&c, "any"));
        let e = load("services:\n  web:\n    build: .\n    platform: [a]\n").unwrap_err();
        assert!(
            e.to_string()
                .contains(":4:15: service `web`: `platform:` must be a string"),
            "{e}"
        );
    }

    #[test]
    fn detects_the_formats() {
        assert_eq!(load("web:\n  build: .\n").unwrap().format, Format::ConvoxV1);
        for v in ["2", "2.4", "3", "3.8", "\"3.9\""] {
            let c = load(&format!("version: {v}\nservices:\n  web:\n    build: .\n")).unwrap();
            assert!(
                matches!(c.format, Format::Compose { version: Some(_) }),
                "{v}"
            );
        }
        let c = load("services:\n  web:\n    build: .\n").unwrap();
        assert_eq!(c.format, Format::Compose { version: None });
        let e = load("version: \"1\"\nservices:\n  web:\n    build: .\n").unwrap_err();
        assert!(
            e.to_string().contains("unknown compose `version: 1`"),
            "{e}"
        );
        assert!(load("version: \"3\"\nweb:\n  build: .\n").is_err());
        assert!(load("- a\n- b\n")
            .unwrap_err()
            .to_string()
            .contains("top level must be a mapping"));
        assert!(load("").unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn convox_yml_is_recognised_and_read_with_path_and_manifest() {
        let src = "environment:\n  - A=1\nservices:\n  web:\n    build: .\n  worker:\n    build:\n      path: ./w\n      manifest: Dockerfile.worker\n  redis:\n    image: redis\n";
        let c = load(src).unwrap();
        assert_eq!(c.format, Format::ConvoxYml);
        assert_eq!(spec(&c, "web").context, "app");
        let w = spec(&c, "worker");
        assert_eq!(w.context, "app/w");
        assert_eq!(w.dockerfile.as_deref(), Some("app/w/Dockerfile.worker"));
        // By its name alone, too.
        let c = Compose::from_bytes(
            Path::new("convox.yml"),
            b"services:\n  web:\n    build: .\n".to_vec(),
            &env,
        )
        .unwrap();
        assert_eq!(c.format, Format::ConvoxYml);
        // A compose file with `services:` and no version stays one.
        assert_eq!(
            load("services:\n  web:\n    build: .\n").unwrap().format,
            Format::Compose { version: None }
        );
    }

    #[test]
    fn paths_are_relative_to_the_compose_files_directory() {
        let c = load("web:\n  build: ./${TAGDIR}\n  dockerfile: Dockerfile.prod\n").unwrap();
        let s = spec(&c, "web");
        assert_eq!(s.context, "app/web");
        assert_eq!(s.dockerfile.as_deref(), Some("app/web/Dockerfile.prod"));
        let c = load(
            "services:\n  w:\n    build:\n      context: ../x/..\n      dockerfile: d/Dockerfile\n",
        )
        .unwrap();
        let s = spec(&c, "w");
        assert_eq!(s.context, ".");
        assert_eq!(s.dockerfile.as_deref(), Some("d/Dockerfile"));
    }

    #[test]
    fn args_as_map_or_list_with_values_from_the_environment() {
        let c = load(
            "services:\n  a:\n    build:\n      context: .\n      args:\n        - X=1\n        - NPM_TOKEN\n        - T=${TOKEN}\n      target: prod\n  b:\n    build:\n      context: .\n      args: {X: \"1\", Y: , Z: $$TOKEN}\n",
        )
        .unwrap();
        let a = spec(&c, "a");
        assert_eq!(
            a.args,
            vec![
                BuildArg {
                    name: "X".into(),
                    value: ArgValue::Literal("1".into())
                },
                BuildArg {
                    name: "NPM_TOKEN".into(),
                    value: ArgValue::Inherit
                },
                BuildArg {
                    name: "T".into(),
                    value: ArgValue::Secret("s3cret".into())
                },
            ]
        );
        assert_eq!(a.target.as_deref(), Some("prod"));
        let b = spec(&c, "b");
        assert_eq!(b.args[1].value, ArgValue::Inherit);
        assert_eq!(b.args[2].value, ArgValue::Literal("$TOKEN".into()));
    }

    #[test]
    fn image_wins_over_build_and_neither_is_an_error_naming_the_service() {
        let c = load("web:\n  build: .\n  image: nginx\n").unwrap();
        assert_eq!(c.services[0].source, Source::Image("nginx".into()));
        let e = load("web:\n  build: .\nworker:\n  command: x\n").unwrap_err();
        assert!(
            e.to_string().contains("service `worker` has neither"),
            "{e}"
        );
        assert!(e.to_string().contains("app/docker-compose.yml:4:3"), "{e}");
    }

    #[test]
    fn build_sites_own_merged_and_aliased() {
        let c = load(
            "x-base: &base\n  build: ./b\nweb:\n  <<: *base\n  command: x\nworker: *base\nown:\n  build: ./o\n  dockerfile: D\n",
        )
        .unwrap();
        let site = |n: &str| match &c.services.iter().find(|s| s.name == n).unwrap().source {
            Source::Build { site, .. } => *site,
            _ => panic!(),
        };
        assert_eq!(site("web"), BuildSite::Merged);
        assert_eq!(site("worker"), BuildSite::AliasedService);
        assert!(matches!(
            site("own"),
            BuildSite::Own {
                dockerfile: Some(_),
                ..
            }
        ));
        assert_eq!(c.services.len(), 3, "x- keys are not services in v1");
    }

    #[test]
    fn wrong_shapes_are_errors_that_name_the_service() {
        for (src, want) in [
            ("web: just-a-string\n", "service `web`: must be a mapping"),
            (
                "web:\n  build: [a, b]\n",
                "service `web`: `build:` must be a path",
            ),
            (
                "web:\n  build:\n    args: 3\n",
                "`build.args` must be a mapping or a list",
            ),
            (
                "\"my web\":\n  build: .\n",
                "service `my web`: invalid name",
            ),
            ("a/b:\n  build: .\n", "invalid name"),
            (
                "web:\n  build: ${NOPE:?set NOPE}\n",
                "required variable NOPE",
            ),
        ] {
            let e = load(src).unwrap_err().to_string();
            assert!(e.contains(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let e = Compose::from_bytes(Path::new("f.yml"), b"a: 1\nb: \xff\n".to_vec(), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f.yml:2:4: the file is not valid UTF-8"),
            "{e}"
        );
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("./a/./b/../c")), "a/c");
        assert_eq!(normalize(Path::new("../x")), "../x");
        assert_eq!(normalize(Path::new("/a/../../b")), "/b");
    }
}
