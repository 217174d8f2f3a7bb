//! The registries a run logs in to, and how: the push host when it is
//! ECR's, and every ECR host among the base images (another account's, or
//! another region's: each region's password from its own
//! `aws ecr get-login-password --region R`, which any ECR host of that
//! region accepts for the credentials' own access). A host that a
//! credential helper serves (`read::docker_config`) gets no `docker login`:
//! the helper supplies its credentials at every push and pull, and the
//! docker config is never written. The logins run all at once, before the
//! first command that needs one (`running::execute`).

use crate::programs::command::Cmd;
use crate::programs::{docker, ecr};
use crate::read::docker_config::{Credentials, DockerConfig};

/// One registry host's login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub host: String,
    pub how: LoginHow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginHow {
    /// `aws ecr get-login-password --region R | docker login … HOST`.
    Password { password: Box<Cmd>, login: Box<Cmd> },
    /// A credential helper serves the host: nothing runs.
    Helper { name: String, from: &'static str },
}

/// The logins for these (host, region) pairs, in order, without duplicates.
pub fn logins(hosts: &[(String, String)], config: &DockerConfig) -> Vec<Login> {
    let mut out: Vec<Login> = Vec::new();
    for (host, region) in hosts {
        if out.iter().any(|l| &l.host == host) {
            continue;
        }
        let how = match config.credentials(host) {
            Credentials::Login => LoginHow::Password {
                password: Box::new(ecr::login_password(region)),
                login: Box::new(docker::login(host)),
            },
            Credentials::Helper { name, from } => LoginHow::Helper { name, from },
        };
        out.push(Login {
            host: host.clone(),
            how,
        });
    }
    out
}

/// The ECR hosts among base images, with their regions.
pub fn base_registries(bases: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = bases
        .iter()
        .filter(|b| !b.contains("@sha256:"))
        .filter_map(|b| crate::inputs::bases::host_of(b))
        .filter_map(|h| ecr::ecr_host(h).map(|(_, region)| (h.to_string(), region)))
        .collect();
    out.sort();
    out.dedup();
    out
}

impl Login {
    /// The login as a user would type it, or what stands in for it.
    pub fn line(&self) -> String {
        match &self.how {
            LoginHow::Password { password, login } => format!("{password} | {login}"),
            LoginHow::Helper { name, from } => format!(
                "# {}: no docker login; the credential helper docker-credential-{name} ({from} in the docker config) supplies its credentials",
                self.host
            ),
        }
    }

    /// Does it run `aws`?
    pub fn needs_aws(&self) -> bool {
        matches!(self.how, LoginHow::Password { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const SHARED: &str = "999999999999.dkr.ecr.eu-west-1.amazonaws.com";

    #[test]
    fn each_ecr_host_logs_in_with_its_regions_password_unless_a_helper_serves_it() {
        let bases = [
            format!("{SHARED}/shared/base:1"),
            format!("{PUSH}/base@sha256:{}", "0".repeat(64)),
            "debian:bookworm".to_string(),
            "127.0.0.1:5000/base:1".to_string(),
        ];
        let mut hosts = vec![(PUSH.to_string(), "us-east-1".to_string())];
        hosts.extend(base_registries(&bases));
        assert_eq!(
            hosts.len(),
            2,
            "a pinned base and non-ECR hosts need no login: {hosts:?}"
        );
        let config =
            DockerConfig::parse(&format!(r#"{{"credHelpers":{{"{PUSH}":"ecr-login"}}}}"#)).unwrap();
        let l = logins(&hosts, &config);
        assert!(matches!(&l[0].how, LoginHow::Helper { name, .. } if name == "ecr-login"));
        assert_eq!(
            l[1].line(),
            format!("aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin {SHARED}")
        );
        assert!(l[0].line().contains("no docker login"));
        let none = logins(
            &hosts,
            &DockerConfig::parse(r#"{"credsStore":"ecr-login"}"#).unwrap(),
        );
        assert!(none.iter().all(|l| !l.needs_aws()));
    }
}
