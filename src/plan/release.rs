//! The release step of `--convox-build`, as the rack's generation takes it.
//!
//! - **Gen1** (`docker-compose.yml`): `convox build` on a fresh directory
//!   holding only the rewritten file, as `docker-compose.yml`.
//! - **convox.yml** (v3): the file goes as `convox.yml`, the name v3's CLI
//!   reads (convox/convox `pkg/cli/builds.go`: the manifest defaults to
//!   `convox.yml`). Where it can, the release is made by `convox builds
//!   import-image` (3.24.6+): the rack copies each `image:` with skopeo in
//!   its API pod, with no build pod, where `convox build` of the same file
//!   schedules a BuildKit pod for a `FROM`-only build of each service. Its
//!   source is one pushed reference (every service of the rewritten file
//!   has its own `image:`), with ECR's password on stdin when the registry
//!   is ECR. It reads the file with an empty environment
//!   (`provider/k8s/build.go`: `manifest.Load(…, map[string]string{})`), so
//!   a kept `image:` that holds `${…}` goes through `convox build`, which
//!   interpolates. A rack or CLI without the command falls back to `convox
//!   build` at run time.

use crate::plan::{Action, Plan};
use crate::programs::command::Cmd;
use crate::programs::{convox, ecr};
use crate::read::compose::{Compose, Source};
use crate::read::format::Format;

/// How the release is made.
#[derive(Debug, Clone)]
pub struct ReleaseStep {
    /// The name the rewritten file takes in the release's directory.
    pub file_name: &'static str,
    pub app: String,
    pub rack: Option<String>,
    pub description: String,
    /// `convox builds import-image`, tried first, when it can serve.
    pub import: Option<Import>,
    /// Why a convox.yml's release is not imported, when it is not.
    pub no_import: Option<String>,
}

/// `convox builds import-image`'s source and its password's command.
#[derive(Debug, Clone)]
pub struct Import {
    pub source: String,
    /// `aws ecr get-login-password`, when the source is in ECR.
    pub password: Option<Cmd>,
}

impl ReleaseStep {
    /// The release step for this file and plan.
    pub fn new(
        compose: &Compose,
        plan: &Plan,
        app: &str,
        rack: Option<&str>,
        description: &str,
    ) -> ReleaseStep {
        let v3 = compose.format == Format::ConvoxYml;
        let mut step = ReleaseStep {
            file_name: if v3 {
                "convox.yml"
            } else {
                "docker-compose.yml"
            },
            app: app.to_string(),
            rack: rack.map(String::from),
            description: description.to_string(),
            import: None,
            no_import: None,
        };
        if !v3 {
            return step;
        }
        let interpolated: Vec<&str> = compose
            .services
            .iter()
            .filter(|s| matches!(&s.source, Source::Image(i) if i.contains("${")))
            .map(|s| s.name.as_str())
            .collect();
        let source = plan.services.iter().find_map(|s| match &s.action {
            Action::Built { reference } | Action::Shared { reference, .. } => {
                Some(reference.clone())
            }
            Action::Kept { .. } => None,
        });
        match (interpolated.is_empty(), source) {
            (true, Some(source)) => {
                step.import = Some(Import {
                    source,
                    password: plan.ecr.as_ref().map(|e| ecr::login_password(&e.region)),
                })
            }
            (false, _) => {
                step.no_import = Some(format!(
                    "`image:` of {} holds ${{…}}, which `convox builds import-image` reads with no environment",
                    interpolated.join(", ")
                ))
            }
            (true, None) => step.no_import = Some("nothing was built to import".into()),
        }
        step
    }

    /// `convox build DIR …`.
    pub fn build_cmd(&self, dir: &str) -> Cmd {
        convox::build_cmd(dir, &self.app, self.rack.as_deref(), &self.description)
    }

    /// `convox builds import-image SOURCE … -m DIR/convox.yml`.
    pub fn import_cmd(&self, dir: &str) -> Option<Cmd> {
        let i = self.import.as_ref()?;
        let manifest = format!("{}/{}", dir.trim_end_matches('/'), self.file_name);
        Some(convox::import_image_cmd(
            &i.source,
            &self.app,
            self.rack.as_deref(),
            &manifest,
            i.password.as_ref().map(|_| "AWS"),
        ))
    }

    /// The dry run's lines.
    pub fn lines(&self) -> String {
        let mut text = format!(
            "# then, in a fresh directory DIR holding only the rewritten file as {}:\n",
            self.file_name
        );
        if let (Some(i), Some(cmd)) = (&self.import, self.import_cmd("DIR")) {
            let cmd = match &i.password {
                Some(p) => format!("{p} | {cmd}"),
                None => cmd.to_string(),
            };
            text.push_str(&format!(
                "{cmd}\n# (a rack or CLI without `builds import-image`, before 3.24.6: instead)\n"
            ));
        } else if let Some(why) = &self.no_import {
            text.push_str(&format!("# convox build, not import-image: {why}\n"));
        }
        text.push_str(&format!("{}\n", self.build_cmd("DIR")));
        text
    }
}
