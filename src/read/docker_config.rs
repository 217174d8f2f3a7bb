//! The docker client's config file, for what it says of credentials (which
//! registry hosts a credential helper serves, so that this program runs no
//! `docker login` for them) and of where its CLI plugins are.
//!
//! The rules, as the docker CLI reads them:
//! - the file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`;
//!   no file means no helpers;
//! - `credHelpers` maps a registry host to a helper
//!   (`docker-credential-NAME`) that supplies that host's credentials at
//!   every push and pull: the host needs no login;
//! - `credsStore` names the helper that stores what `docker login` saves.
//!   AWS's `ecr-login` cannot store (its `store` answers `not implemented`,
//!   so any `docker login` fails, whatever the host); it supplies ECR
//!   credentials itself, so with it no host gets a login. A store that can
//!   store (`desktop`, `osxkeychain`, `pass`, `secretservice`, …) keeps the
//!   login as it is.
//!
//! - `cliPluginsExtraDirs` lists directories the CLI searches for its
//!   plugins before its own (`programs::plugin`).
//!
//! Nothing here writes the file: a run on a helper never changes it.

use crate::read::regular;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The helper that cannot store, and serves every ECR host.
pub const ECR_LOGIN: &str = "ecr-login";

/// What the config says of credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    pub path: Option<PathBuf>,
    pub creds_store: Option<String>,
    pub cred_helpers: BTreeMap<String, String>,
    /// `cliPluginsExtraDirs`; None when the file could not be read (its
    /// directories are then not known).
    pub plugin_dirs: Option<Vec<String>>,
}

/// How a host's credentials are had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `docker login` (its password from `aws ecr get-login-password`).
    Login,
    /// A helper serves the host: `credHelpers` names it, or the store is
    /// `ecr-login`.
    Helper { name: String, from: &'static str },
}

impl DockerConfig {
    /// The config file's path by the CLI's rule.
    pub fn path_from(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        match env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            Some(dir) => Some(PathBuf::from(dir).join("config.json")),
            None => env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".docker").join("config.json")),
        }
    }

    /// Read the config; no file is no helper. A file that cannot be read or
    /// is not JSON is an error here, which the caller reports as docker
    /// does: a warning, and no helper.
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<DockerConfig, String> {
        let Some(path) = Self::path_from(env) else {
            return Ok(Self::no_file());
        };
        let bytes = match regular::read(&path, regular::TEXT_LIMIT) {
            Ok(b) => b,
            Err(e) if e.is_missing() => return Ok(Self::no_file()),
            Err(e) => return Err(format!("the docker config: {e}")),
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("the docker config {} is not UTF-8", path.display()))?;
        let mut config = Self::parse(&text)
            .map_err(|e| format!("the docker config {} is not JSON: {e}", path.display()))?;
        config.path = Some(path);
        Ok(config)
    }

    /// What no file (or an empty one) says: no helper, no extra plugin
    /// directory.
    fn no_file() -> DockerConfig {
        DockerConfig {
            plugin_dirs: Some(Vec::new()),
            ..DockerConfig::default()
        }
    }

    pub fn parse(text: &str) -> Result<DockerConfig, String> {
        if text.trim().is_empty() {
            return Ok(Self::no_file());
        }
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let creds_store = v
            .get("credsStore")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(String::from);
        let cred_helpers = v
            .get("credHelpers")
            .and_then(|h| h.as_object())
            .into_iter()
            .flatten()
            .filter_map(|(host, helper)| {
                let helper = helper.as_str().filter(|h| !h.is_empty())?;
                Some((host.clone(), helper.to_string()))
            })
            .collect();
        let plugin_dirs = v
            .get("cliPluginsExtraDirs")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(String::from))
            .collect();
        Ok(DockerConfig {
            path: None,
            creds_store,
            cred_helpers,
            plugin_dirs: Some(plugin_dirs),
        })
    }

    /// How `host`'s credentials are had.
    pub fn credentials(&self, host: &str) -> Credentials {
        if let Some(name) = self.cred_helpers.get(host) {
            return Credentials::Helper {
                name: name.clone(),
                from: "credHelpers",
            };
        }
        if self.creds_store.as_deref() == Some(ECR_LOGIN) {
            return Credentials::Helper {
                name: ECR_LOGIN.into(),
                from: "credsStore",
            };
        }
        Credentials::Login
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    #[test]
    fn the_file_is_docker_config_else_home() {
        let env = |k: &str| match k {
            "DOCKER_CONFIG" => Some("/cfg".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            DockerConfig::path_from(&env),
            Some(PathBuf::from("/cfg/config.json"))
        );
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        assert_eq!(
            DockerConfig::path_from(&env),
            Some(PathBuf::from("/home/u/.docker/config.json"))
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let env = move |k: &str| (k == "DOCKER_CONFIG").then(|| d.clone());
        let none = DockerConfig::load(&env).unwrap();
        assert_eq!(none.cred_helpers.len(), 0);
        assert_eq!(none.plugin_dirs, Some(Vec::new()), "no file: no extra dirs");
        std::fs::write(dir.path().join("config.json"), "{oops").unwrap();
        assert!(DockerConfig::load(&env).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn a_helper_for_the_host_or_the_ecr_login_store_means_no_login() {
        let c = DockerConfig::parse(&format!(
            r#"{{"credHelpers":{{"{HOST}":"ecr-login","public.ecr.aws":"ecr-login"}}}}"#
        ))
        .unwrap();
        assert_eq!(
            c.credentials(HOST),
            Credentials::Helper {
                name: "ecr-login".into(),
                from: "credHelpers"
            }
        );
        assert_eq!(
            c.credentials("999999999999.dkr.ecr.eu-west-1.amazonaws.com"),
            Credentials::Login
        );
        let store = DockerConfig::parse(r#"{"credsStore":"ecr-login","auths":{}}"#).unwrap();
        assert!(matches!(
            store.credentials("127.0.0.1:5000"),
            Credentials::Helper {
                from: "credsStore",
                ..
            }
        ));
        for can_store in ["desktop", "osxkeychain", "pass", "secretservice"] {
            let c = DockerConfig::parse(&format!(r#"{{"credsStore":"{can_store}"}}"#)).unwrap();
            assert_eq!(c.credentials(HOST), Credentials::Login, "{can_store}");
        }
        // Another helper named for the host serves it too.
        let c = DockerConfig::parse(&format!(
            r#"{{"credsStore":"desktop","credHelpers":{{"{HOST}":"gcloud"}}}}"#
        ))
        .unwrap();
        assert!(matches!(c.credentials(HOST), Credentials::Helper { .. }));
        assert_eq!(DockerConfig::parse("").unwrap().creds_store, None);
    }

    #[test]
    fn the_plugin_dirs_it_adds() {
        let c = DockerConfig::parse(r#"{"cliPluginsExtraDirs":["/opt/p","/x"]}"#).unwrap();
        assert_eq!(c.plugin_dirs, Some(vec!["/opt/p".to_string(), "/x".into()]));
        assert_eq!(DockerConfig::default().plugin_dirs, None, "not read");
    }
}
