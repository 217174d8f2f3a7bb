//! The formats a compose file comes in, and what each adds: which one a
//! file is (`version:`, `services:`, convox.yml's shape), v1's top-level
//! `x-` keys (services to Convox), convox.yml's `build.args` (read, not
//! passed), and the build Convox implies for a service without `build:`.

use super::*;

impl Compose {
    /// Where the services are, and the format that says so: `version:` and
    /// `services:` (a convox.yml by its shape), or neither (Convox v1).
    pub(super) fn services_node(&self, root: NodeId) -> Result<(NodeId, Format)> {
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
        Ok(match (services, version) {
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
        })
    }

    /// Convox gen1 reads every top-level key of a v1 file as a service, so an
    /// `x-` key there must be something it can load as one.
    pub(super) fn check_v1_extension_key(&self, name: &str, value: NodeId) -> Result<()> {
        if self.doc.entries(value).is_none() && !self.doc.is_null(value) {
            bail!(
                "{}: `{name}`: Convox reads every top-level key of a file without `version:` as a service, `x-` keys included, and this one is not a mapping, so Convox cannot load the file; {}",
                self.at(value),
                X_KEY_HINT
            );
        }
        Ok(())
    }

    /// Warn that Convox deploys a v1 `x-` key as a service; refuse when its
    /// implicit build has no Dockerfile (the deploy would fail on the
    /// cluster).
    pub(super) fn v1_extension_key_is_a_service(
        &mut self,
        name: &str,
        key: NodeId,
        source: &Source,
    ) -> Result<()> {
        if let Source::Build {
            spec,
            implicit: true,
            ..
        } = source
        {
            let dockerfile = spec.dockerfile.as_deref().unwrap_or("Dockerfile");
            if !Path::new(dockerfile).is_file() {
                bail!(
                    "{}: `{name}`: Convox reads every top-level key of a file without `version:` as a service, `x-` keys included, and would build this one from the app root with {dockerfile}, which does not exist, so the deploy would fail; {}",
                    self.at(key),
                    X_KEY_HINT
                );
            }
        }
        self.warnings.push(format!(
            "{}: `{name}`: Convox reads every top-level key of a file without `version:` as a service, `x-` keys included, so it deploys `{name}` as a service; {}",
            self.at(key),
            X_KEY_HINT
        ));
        Ok(())
    }

    /// Is this a `convox.yml`? By its name, by top-level keys that only it
    /// has, by a `build:` with `path:` or `manifest:`, or by a service key
    /// that only it has (`port:`, `scale:`, `health:`, …).
    pub(super) fn is_convox_yml(&self, root: NodeId, services: NodeId) -> bool {
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
        // Service keys that only convox.yml has (compose says `ports:`,
        // `healthcheck:`, `deploy:`).
        let service_keys = [
            "port",
            "scale",
            "health",
            "domain",
            "agent",
            "singleton",
            "termination",
            "sticky",
            "drain",
            "internal",
            "whitelist",
        ];
        let build_keys = doc.entries(services).unwrap_or_default().iter().any(|e| {
            doc.get(e.value, "build").is_some_and(|b| {
                doc.get(b.value, "path").is_some() || doc.get(b.value, "manifest").is_some()
            }) || service_keys.iter().any(|k| doc.get(e.value, k).is_some())
        });
        named || top || build_keys
    }

    /// The build Convox gives a service without `build:` or `image:`: the
    /// app's root with `Dockerfile` (gen1's service-level `dockerfile:` is
    /// applied by the caller). The compose spec and version 3 have none.
    pub(super) fn implicit_build(
        &self,
        name: &str,
        value: NodeId,
        rules: Rules,
    ) -> Result<RawBuild> {
        if rules == Rules::Compose {
            let kind = match &self.format {
                Format::Compose { version: Some(v) } => format!("a `version: \"{v}\"` file"),
                _ => "a compose-spec file (`services:` without `version:`)".to_string(),
            };
            bail!(
                "{}: service `{name}` has neither `build:` nor `image:`; docker compose needs one of them in {kind}, so add one of them",
                self.at(value)
            );
        }
        Ok(RawBuild {
            context: ".".to_string(),
            dockerfile: Some("Dockerfile".to_string()),
            args: Vec::new(),
            target: None,
            secrets: Vec::new(),
            ssh: Vec::new(),
            cache_from: Vec::new(),
            implicit: true,
        })
    }
}

/// convox.yml's `build.args`, which Convox does not pass: what to do.
pub(super) fn convox_yml_args_warning(at: &str, service: &str, args: &[BuildArg]) -> String {
    let names: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
    format!(
        "{at}: service `{service}`: `build.args` ({}) are not passed: Convox's build of a convox.yml passes only the Dockerfile's declared ARGs, with values from the app's environment (`convox env`) and `convox build --build-args`; so neither does this program. Give them as Convox would: --build-arg NAME=VALUE, or the app's environment (--env-file, --convox-env)",
        names.join(", ")
    )
}

/// How to keep a shared anchor out of a v1 file's services.
const X_KEY_HINT: &str = "put the anchor on the first service that uses it (`web: &common`, or `environment: &env` inside it), or use `version: \"2\"` with `services:`, where top-level `x-` keys are not services";

fn is_known_version(v: &str) -> bool {
    let mut parts = v.splitn(2, '.');
    let major = parts.next().unwrap_or("");
    let minor_ok = parts
        .next()
        .is_none_or(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()));
    matches!(major, "2" | "3") && minor_ok
}
