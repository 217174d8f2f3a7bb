//! Reading a compose file: which format it is, its services, and for each
//! service with `build:` what to build. Nothing here runs a process.
//!
//! - [`formats`]: which format a file is, and what each format adds: v1's
//!   `x-` keys as services, convox.yml's shape and its `build.args`, the
//!   build Convox implies for a service without `build:`;
//! - [`build`]: a service's `build:` (context, Dockerfile, args, target,
//!   secrets, ssh, cache_from), its paths joined to the file's directory.

mod build;
mod formats;

pub use crate::read::format::{Env, Format};
use crate::read::interpolate::{self, Interpolated};
use crate::read::manifest::{self, Rules};
use crate::read::regular;
use crate::read::yaml::{Doc, Entry, NodeId, Pos};
use anyhow::{anyhow, bail, Result};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Compose {
    pub path: PathBuf,
    /// The file's bytes as UTF-8 text, byte-order mark and all.
    pub text: String,
    pub doc: Doc,
    pub format: Format,
    pub services: Vec<Service>,
    pub warnings: Vec<String>,
    /// The value of every variable the file names, as it was read, so that
    /// the rewritten file can be read back in the same environment.
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// The service's value node in the file, aliases not followed.
    pub value: NodeId,
    pub pos: Pos,
    pub source: Source,
}

// A file has a handful of services: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// It names an image: left exactly as it is.
    Image(String),
    Build {
        spec: BuildSpec,
        site: BuildSite,
        /// It has no `build:`: Convox builds it from the app root.
        implicit: bool,
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
    /// The service has no `build:` (nor `image:`): Convox builds it from the
    /// app's root, and the rewrite adds `image:` to it.
    Implicit,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// `build.secrets`: BuildKit secrets, by id and where the value comes
    /// from (never the value itself).
    pub secrets: Vec<BuildSecret>,
    /// `build.ssh`: `default` or `ID=PATH`, as `docker build --ssh` takes it.
    pub ssh: Vec<String>,
    /// `build.cache_from`, as written.
    pub cache_from: Vec<String>,
    /// The app directory Convox uploads (the file's directory) when the
    /// context is strictly inside it: its `.dockerignore` applies first
    /// (`inputs::upload`). None for a remote context, the app directory
    /// itself, or one outside it.
    pub upload_root: Option<String>,
}

/// A build secret: the id the Dockerfile mounts, and its source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildSecret {
    pub id: String,
    pub source: SecretSource,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretSource {
    /// The value is in this environment variable (`--secret id=…,env=VAR`).
    Env(String),
    /// The value is in this file (`--secret id=…,src=PATH`).
    File(String),
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

/// A build as written (or implied), before its paths are resolved.
struct RawBuild {
    context: String,
    dockerfile: Option<String>,
    args: Vec<BuildArg>,
    target: Option<String>,
    secrets: Vec<BuildSecret>,
    ssh: Vec<String>,
    cache_from: Vec<String>,
    /// The service has no `build:`; Convox builds it from the app root.
    implicit: bool,
}

impl Compose {
    /// Read and parse a compose file.
    pub fn load(path: &Path, env: Env<'_>) -> Result<Compose> {
        let bytes = regular::read(path, regular::TEXT_LIMIT)
            .map_err(|e| anyhow!("cannot read the compose file: {e}"))?;
        Self::from_bytes(path, bytes, env)
    }

    pub fn from_bytes(path: &Path, bytes: Vec<u8>, env: Env<'_>) -> Result<Compose> {
        let text = regular::utf8_text(path, bytes).map_err(|e| anyhow!("{e}"))?;
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
            vars: Vec::new(),
        };
        c.read_services(env)?;
        c.vars = c.variables_in(env);
        Ok(c)
    }

    /// Interpolate a value by the rules of the file's format
    /// (`read::interpolate`).
    pub(super) fn interp(&self, text: &str, env: Env<'_>) -> Result<Interpolated, String> {
        interpolate::for_format(&self.format, text, env)
    }

    /// Every variable the file's scalars name (by its format's rules), in
    /// order, once each.
    pub fn variable_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for n in &self.doc.nodes {
            let crate::read::yaml::Kind::Scalar { value, .. } = &n.kind else {
                continue;
            };
            for name in interpolate::variables_for(&self.format, value) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// The set variables that the file's scalars name, with their values.
    fn variables_in(&self, env: Env<'_>) -> Vec<(String, String)> {
        self.variable_names()
            .into_iter()
            .filter_map(|name| Some((name.clone(), env(&name)?)))
            .collect()
    }

    /// The environment the file was read in, as far as the file names it.
    /// What each service with a build builds, in file order.
    pub fn build_specs(&self) -> impl Iterator<Item = &BuildSpec> {
        self.services.iter().filter_map(|s| match &s.source {
            Source::Build { spec, .. } => Some(spec),
            Source::Image(_) => None,
        })
    }

    pub fn env(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(v, _)| v == name)
            .map(|(_, val)| val.clone())
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
        let (map, format) = self.services_node(root)?;
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
            let x_key = self.format == Format::ConvoxV1 && name.starts_with("x-");
            if x_key {
                self.check_v1_extension_key(&name, e.value)?;
            }
            // Convox takes a v1 `x-` key as it is, whatever compose allows.
            if !x_key && !valid_service_name(&name) {
                bail!(
                    "{}: service `{name}`: invalid name; compose allows letters, digits, `_`, `.` and `-`, starting with a letter or digit",
                    self.at(e.key)
                );
            }
            let source = self.read_service(&name, e.value, env)?;
            if x_key {
                self.v1_extension_key_is_a_service(&name, e.key, &source)?;
            }
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
        if let Some(w) = manifest::version_warning(&self.format) {
            self.warnings.push(format!("{file}: {w}"));
        }
        Ok(())
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
        let rules = manifest::rules(&self.format);
        if doc.entries(value).is_none() && !doc.is_null(value) {
            bail!(
                "{}: service `{name}`: must be a mapping with `build:` or `image:`",
                self.at(value)
            );
        }
        if let Some(image) = self.read_image(name, value, env, warnings)? {
            return Ok(Source::Image(image));
        }
        let site = |own: Option<Entry>, dockerfile: Option<Entry>| {
            if doc.is_alias(value) {
                BuildSite::AliasedService
            } else {
                match own {
                    Some(build) => BuildSite::Own { build, dockerfile },
                    None => BuildSite::Merged,
                }
            }
        };
        let service_dockerfile = doc
            .get(value, "dockerfile")
            .filter(|f| !doc.is_null(f.value));
        let (mut raw, site) = match doc.get(value, "build").filter(|f| !doc.is_null(f.value)) {
            Some(build) => {
                let raw = self.read_build(name, build.value, env, warnings)?;
                (raw, site(build.own, service_dockerfile.and_then(|d| d.own)))
            }
            None => {
                let raw = self.implicit_build(name, value, rules)?;
                let site = match site(None, None) {
                    BuildSite::Merged => BuildSite::Implicit,
                    other => other,
                };
                (raw, site)
            }
        };
        if let (Some(d), Rules::Gen1 | Rules::Compose) = (service_dockerfile, rules) {
            if raw.dockerfile.is_some() && rules == Rules::Gen1 && !raw.implicit {
                bail!(
                    "{}: service `{name}`: `dockerfile:` and `build.dockerfile` are both set; Convox refuses that (\"dockerfile specified twice\"); keep one",
                    self.at(d.value)
                );
            }
            if raw.dockerfile.is_none() || raw.implicit {
                raw.dockerfile = Some(self.service_string(name, d.value, "dockerfile", "", env)?);
            }
        }
        self.resolve_build(name, value, raw, site, env)
    }

    /// The service's image, interpolated the way Convox interpolates the
    /// file, when there is one; None when Convox would build the service
    /// (no `image:`, or an empty one).
    fn read_image(
        &self,
        name: &str,
        value: NodeId,
        env: Env<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<String>> {
        let doc = &self.doc;
        let Some(img) = doc.get(value, "image").filter(|f| !doc.is_null(f.value)) else {
            return Ok(None);
        };
        let Some(image) = doc.scalar(img.value) else {
            bail!(
                "{}: service `{name}`: `image:` must be a string",
                self.at(img.value)
            );
        };
        let interpolated = self
            .interp(image, env)
            .map_err(|e| anyhow!("{}: service `{name}`: {e}", self.at(img.value)))?;
        if self.format == Format::ConvoxYml {
            return self.convox_yml_image(name, img.value, image, &interpolated, warnings);
        }
        if !interpolated.value.is_empty() {
            return Ok(Some(image.to_string()));
        }
        let vars = interpolate::variables(image);
        if let Some(first) = vars.first() {
            let names = vars.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>();
            bail!(
                "{}: service `{name}`: `image: {image}` comes out empty because {} {} not set, and Convox would then build this service on the cluster; set it, or give a default (`${{{first}:-IMAGE}}`)",
                self.at(img.value),
                names.join(", "),
                if vars.len() == 1 { "is" } else { "are" },
            );
        }
        // `image: ""`: Convox builds the service, and so does this program.
        Ok(None)
    }
}

impl Compose {
    /// A convox.yml `image:`, by Convox's rules: `$NAME` is refused (the
    /// rack would get it as written); an empty one is built, as the rack
    /// builds it, with a warning naming the variables.
    fn convox_yml_image(
        &self,
        name: &str,
        at: NodeId,
        image: &str,
        interpolated: &Interpolated,
        warnings: &mut Vec<String>,
    ) -> Result<Option<String>> {
        let bare = interpolate::bare_references(image);
        if let Some(first) = bare.first() {
            bail!(
                "{}: service `{name}`: `image: {image}`: convox.yml replaces only `${{NAME}}` (convox/convox pkg/manifest/helpers.go), so the rack would get the reference `{image}` as written; write `${{{first}}}`",
                self.at(at)
            );
        }
        if !interpolated.value.is_empty() {
            return Ok(Some(image.to_string()));
        }
        let vars = interpolate::convox_yml_variables(image);
        if !vars.is_empty() {
            let names = vars.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>();
            warnings.push(format!(
                "{}: service `{name}`: `image: {image}` comes out empty ({} {} not set in the app's environment), so Convox builds this service from its build path, and so does this program",
                self.at(at),
                names.join(", "),
                if vars.len() == 1 { "is" } else { "are" },
            ));
        }
        Ok(None)
    }
}

/// What to do about a YAML error.
fn yaml_hint(message: &str) -> &'static str {
    if message.contains("tab") && !message.contains("unprintable") {
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

/// Does a build arg's name say it holds a secret?
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|w| upper.contains(w))
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
    let path = out
        .iter()
        .collect::<PathBuf>()
        .to_string_lossy()
        .into_owned();
    // A relative path that begins with `-` (`build: ./-web`) keeps its
    // `./`, so that no program it is passed to reads it as an option.
    if path.starts_with('-') {
        format!("./{path}")
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_begins_with_a_dash_keeps_its_dot_slash() {
        assert_eq!(normalize(Path::new("./-web")), "./-web");
        assert_eq!(
            normalize(Path::new("-web/../-api/Dockerfile")),
            "./-api/Dockerfile"
        );
        assert_eq!(normalize(Path::new("./web/-x")), "web/-x");
    }

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
    fn convox_yml_build_args_are_not_passed_and_one_warning_names_them() {
        let src = "environment:\n  - A=1\nservices:\n  web:\n    build:\n      path: .\n      args:\n        - NODE_ENV=production\n        - NPM_TOKEN\n    port: 3000\n";
        let c = load(src).unwrap();
        assert_eq!(c.format, Format::ConvoxYml);
        assert!(spec(&c, "web").args.is_empty());
        let w: Vec<&String> = c
            .warnings
            .iter()
            .filter(|w| w.contains("build.args"))
            .collect();
        assert_eq!(w.len(), 1, "{:?}", c.warnings);
        assert!(
            w[0].contains("(NODE_ENV, NPM_TOKEN) are not passed"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("--build-arg NAME=VALUE"), "{}", w[0]);
        assert!(!c.warnings.iter().any(|w| w.contains("looks like a secret")));
        // A gen1 file keeps its args, as Convox's gen1 build passes them.
        let c = load("web:\n  build:\n    context: .\n    args: [NODE_ENV=production]\n").unwrap();
        assert_eq!(spec(&c, "web").args.len(), 1);
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
        // By a service key only convox.yml has (the getting-started file).
        assert_eq!(
            load("services:\n  web:\n    port: 3000\n").unwrap().format,
            Format::ConvoxYml
        );
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
    fn image_wins_over_build() {
        let c = load("web:\n  build: .\n  image: nginx\n").unwrap();
        assert_eq!(c.services[0].source, Source::Image("nginx".into()));
    }

    fn implicit(c: &Compose, name: &str) -> (BuildSpec, BuildSite) {
        match &c.services.iter().find(|s| s.name == name).unwrap().source {
            Source::Build {
                spec,
                site,
                implicit: true,
            } => (spec.clone(), *site),
            other => panic!("{name} is {other:?}"),
        }
    }

    #[test]
    fn gen1_builds_a_service_without_build_from_the_app_root() {
        for src in [
            "web:\n  command: bin/web\nworker:\n  ports: [\"80:80\"]\n  dockerfile: Dockerfile.w\nflow: {labels: {a: b}}\nempty: {}\nnull:\n",
            "version: \"2\"\nservices:\n  web:\n    command: bin/web\n  worker:\n    ports: [\"80:80\"]\n    dockerfile: Dockerfile.w\n  flow: {labels: {a: b}}\n  empty: {}\n  null:\n",
        ] {
            let c = load(src).unwrap();
            let (web, site) = implicit(&c, "web");
            assert_eq!(web.context, "app");
            assert_eq!(web.dockerfile.as_deref(), Some("app/Dockerfile"));
            assert_eq!(site, BuildSite::Implicit);
            let (worker, _) = implicit(&c, "worker");
            assert_eq!(worker.dockerfile.as_deref(), Some("app/Dockerfile.w"));
            for n in ["flow", "empty", "null"] {
                assert_eq!(implicit(&c, n).0, web, "{n}");
            }
        }
    }

    #[test]
    fn convox_yml_builds_a_service_without_build_from_the_app_root() {
        let c = Compose::from_bytes(
            Path::new("app/convox.yml"),
            b"services:\n  web:\n    port: 3000\n".to_vec(),
            &env,
        )
        .unwrap();
        let (web, _) = implicit(&c, "web");
        assert_eq!(web.context, "app");
        assert_eq!(web.dockerfile.as_deref(), Some("app/Dockerfile"));
    }

    #[test]
    fn the_compose_spec_and_version_3_still_need_build_or_image() {
        for (src, kind) in [
            ("services:\n  web:\n    command: x\n", "compose-spec file"),
            (
                "version: \"3.8\"\nservices:\n  web:\n    command: x\n",
                "`version: \"3.8\"` file",
            ),
            ("services:\n  web:\n", "compose-spec file"),
        ] {
            let e = load(src).unwrap_err().to_string();
            assert!(e.contains("service `web` has neither"), "{e}");
            assert!(
                e.contains(&format!("docker compose needs one of them in a {kind}")),
                "{e}"
            );
        }
    }

    #[test]
    fn an_image_is_interpolated_before_deciding() {
        let c = load("web:\n  image: r/${TAGDIR}\n").unwrap();
        assert_eq!(c.services[0].source, Source::Image("r/${TAGDIR}".into()));
        let e = load("web:\n  image: ${REGISTRY}${NOPE}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("app/docker-compose.yml:2:10: service `web`"),
            "{e}"
        );
        assert!(e.contains("`REGISTRY`, `NOPE` are not set"), "{e}");
        assert!(e.contains("Convox would then build this service"), "{e}");
        // Written empty: Convox builds it, and so does this program.
        let c = load("web:\n  image: \"\"\n").unwrap();
        assert_eq!(implicit(&c, "web").1, BuildSite::Implicit);
    }

    #[test]
    fn secret_looking_build_args_are_warned_about_and_show_the_safe_form() {
        for n in [
            "NPM_TOKEN",
            "db_password",
            "Api_Key",
            "AWS_SECRET_ACCESS_KEY",
            "GH_AUTH",
            "PASSWD",
            "credentials",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["RELEASE", "NODE_ENV", "GIT_TAG", "VERSION"] {
            assert!(!looks_secret(n), "{n}");
        }
        let c = load("web:\n  build:\n    context: .\n    args: [NPM_TOKEN, RELEASE=1]\n").unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let w = &c.warnings[0];
        assert!(
            w.contains("build arg `NPM_TOKEN` looks like a secret"),
            "{w}"
        );
        assert!(w.contains("docker history"), "{w}");
        assert!(
            w.contains("secrets: {npm_token: {environment: NPM_TOKEN}}"),
            "{w}"
        );
    }

    #[test]
    fn gen1_refuses_a_dockerfile_given_twice() {
        let e = load("web:\n  dockerfile: A\n  build:\n    context: .\n    dockerfile: B\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dockerfile specified twice"), "{e}");
    }

    #[test]
    fn a_v1_x_key_is_a_service_with_a_warning_or_an_error_without_a_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("docker-compose.yml");
        let src = b"x-common: &c\n  labels: {a: b}\nweb:\n  <<: *c\n  build: .\n".to_vec();
        let e = Compose::from_bytes(&file, src.clone(), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":1:1: `x-common`: Convox reads every top-level key"),
            "{e}"
        );
        assert!(e.contains("Dockerfile, which does not exist"), "{e}");
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let c = Compose::from_bytes(&file, src, &env).unwrap();
        assert_eq!(implicit(&c, "x-common").1, BuildSite::Implicit);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("it deploys `x-common` as a service")
                    && w.contains("web: &common")),
            "{:?}",
            c.warnings
        );
        let e = load("x-list: [1]\nweb:\n  build: .\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`x-list`") && e.contains("cannot load the file"),
            "{e}"
        );
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
        assert_eq!(c.services.len(), 4, "x- keys are services in v1");
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
