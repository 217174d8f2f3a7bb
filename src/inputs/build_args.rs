//! The build arguments Convox passes besides the file's own `build.args`,
//! by Convox's rules, so that an image built here is the one Convox would
//! have built.
//!
//! - **The app's environment** (gen1's manifest1 `Build`; `--env-file`, or
//!   `convox env` with `--convox-env`): for each `ARG` the Dockerfile
//!   declares, a variable of that name is passed with its value.
//! - **`--build-arg NAME[=VALUE]`**, as `convox build --build-args`: a bare
//!   `NAME` takes its value from this run's environment. Convox manages
//!   some names itself: `BUILD_APP` and `BUILD_GIT_SHA` take `--app` and
//!   `--gitsha`, `BUILD_RACK` the rack; the ones only a rack's build knows
//!   (`BUILD_ID`, `BUILD_AUTH`, `BUILD_MANIFEST`, `BUILD_DEVELOPMENT`,
//!   `BUILD_GENERATION`) are refused.
//! - **Only the `ARG`s the Dockerfile declares** are passed from these two
//!   (globals, and those of every stage the target needs:
//!   `Dockerfile::declared_args`); the file's own `build.args` are passed
//!   as docker-compose passes them.
//! - **Precedence**: the file's `build.args`, then the app's environment,
//!   then `--build-arg`.
//! - **Values are secrets until proven otherwise**: each goes to docker by
//!   name (`--build-arg NAME`) with the value in docker's environment
//!   (`ArgValue::Secret`), never in an argv or in this program's output; it
//!   is in the content digest, mixed with the rest, so a change rebuilds.

use crate::read::app_env::AppEnv;
use crate::read::compose::{ArgValue, BuildArg, BuildSpec, Compose, Source};
use crate::read::dockerfile::Dockerfiles;
use std::collections::BTreeSet;

/// Names Convox's build sets that no build off the cluster can know.
const UNKNOWABLE: [(&str, &str); 5] = [
    ("BUILD_ID", "the id of the rack's build"),
    ("BUILD_AUTH", "the rack's registry credentials"),
    ("BUILD_MANIFEST", "the manifest path of the rack's build"),
    (
        "BUILD_DEVELOPMENT",
        "whether the rack builds for `convox start`",
    ),
    ("BUILD_GENERATION", "the rack's generation"),
];

/// One `--build-arg`'s value, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagValue {
    /// `NAME=VALUE`.
    Given(String),
    /// `NAME`: docker takes it from this run's environment.
    FromEnvironment,
    /// A name Convox manages, with what it stands for here.
    Managed(String, &'static str),
}

/// Every build argument source besides the file.
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    /// The app's environment, and where it was read from.
    pub app_env: Option<(AppEnv, String)>,
    /// `--build-arg`s, in order (a later one for a name replaces it).
    pub flags: Vec<(String, FlagValue)>,
}

/// What a run knows for Convox's managed names.
pub struct Managed<'a> {
    pub app: &'a str,
    pub gitsha: Option<&'a str>,
    pub rack: Option<&'a str>,
}

/// Read the `--build-arg`s (and the setting's comma-separated list), each
/// with where it was given (`--build-arg #2`), which names it in an error:
/// a value is never shown.
pub fn parse_flags(
    flags: &[(String, String)],
    managed: &Managed<'_>,
) -> Result<Vec<(String, FlagValue)>, String> {
    let mut out: Vec<(String, FlagValue)> = Vec::new();
    for (given, flag) in flags {
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v)),
            None => (flag.trim(), None),
        };
        if name.is_empty() {
            return Err(format!(
                "{given}: no name before `=`; give NAME or NAME=VALUE"
            ));
        }
        if name.contains(char::is_whitespace) {
            // Without `=`, what looks like a name may hold the value.
            let shown = match value {
                Some(_) => format!(" (`{name}`)"),
                None => String::new(),
            };
            return Err(format!(
                "{given}{shown}: a name holds no space; give NAME or NAME=VALUE"
            ));
        }
        if let Some((_, what)) = UNKNOWABLE.iter().find(|(n, _)| *n == name) {
            return Err(format!(
                "--build-arg {name}: Convox's build sets it ({what}), which a build off the cluster cannot know"
            ));
        }
        let managed_value = match name {
            "BUILD_APP" => Some((Some(managed.app), "--app")),
            "BUILD_GIT_SHA" => Some((managed.gitsha, "--gitsha")),
            "BUILD_RACK" => Some((managed.rack, "--rack or CONVOX_RACK")),
            _ => None,
        };
        let resolved = match (managed_value, value) {
            (Some((_, from)), Some(_)) => {
                return Err(format!(
                    "--build-arg {name}: Convox sets it itself, from {from}; give --build-arg {name} without a value"
                ))
            }
            (Some((Some(v), from)), None) => FlagValue::Managed(v.to_string(), from),
            (Some((None, from)), None) => {
                return Err(format!("--build-arg {name}: it takes its value from {from}, which is not given"))
            }
            (None, Some(v)) => FlagValue::Given(v.to_string()),
            (None, None) => FlagValue::FromEnvironment,
        };
        out.retain(|(n, _)| n != name);
        out.push((name.to_string(), resolved));
    }
    Ok(out)
}

impl BuildArgs {
    /// Is there anything besides the file's own args?
    pub fn is_empty(&self) -> bool {
        self.app_env.is_none() && self.flags.is_empty()
    }

    /// One build's spec with the args Convox would pass, for the names
    /// `declared`.
    pub fn apply(&self, spec: &BuildSpec, declared: &BTreeSet<String>) -> BuildSpec {
        let mut spec = spec.clone();
        for name in declared {
            let flag = self.flags.iter().find(|(n, _)| n == name).map(|(_, v)| v);
            let env = self
                .app_env
                .as_ref()
                .and_then(|(e, _)| e.get(name))
                .map(String::from);
            let value = match (flag, env) {
                (Some(FlagValue::Given(v)), _) => ArgValue::Secret(v.clone()),
                (Some(FlagValue::FromEnvironment), _) => ArgValue::Inherit,
                (Some(FlagValue::Managed(v, _)), _) => ArgValue::Literal(v.clone()),
                (None, Some(v)) => ArgValue::Secret(v),
                (None, None) => continue,
            };
            spec.args.retain(|a| &a.name != name);
            spec.args.push(BuildArg {
                name: name.clone(),
                value,
            });
        }
        spec
    }

    /// Where each arg of a build comes from, by name (no value).
    pub fn origins(&self, spec: &BuildSpec) -> Vec<(String, String)> {
        spec.args
            .iter()
            .filter(|a| a.name != "BUILDKIT_INLINE_CACHE")
            .map(|a| {
                let flag = self
                    .flags
                    .iter()
                    .find(|(n, _)| n == &a.name)
                    .map(|(_, v)| v);
                let from = match flag {
                    Some(FlagValue::Given(_)) => "--build-arg".to_string(),
                    Some(FlagValue::FromEnvironment) => {
                        "--build-arg, from this run's environment".into()
                    }
                    Some(FlagValue::Managed(_, from)) => {
                        format!("--build-arg, Convox's, from {from}")
                    }
                    None => match &self.app_env {
                        Some((e, source)) if e.get(&a.name).is_some() => {
                            format!("the app's environment ({source})")
                        }
                        _ => "the file's build.args".into(),
                    },
                };
                (a.name.clone(), from)
            })
            .collect()
    }

    /// The environment convox.yml is interpolated in, as the rack builds it
    /// (convox/convox `pkg/build/buildkit.go`): the app's environment, the
    /// build args over it. None when neither was given.
    pub fn convox_yml_env(&self) -> Option<std::collections::BTreeMap<String, String>> {
        if self.app_env.is_none() && self.flags.is_empty() {
            return None;
        }
        let mut env = std::collections::BTreeMap::new();
        if let Some((app, _)) = &self.app_env {
            env.extend(app.vars.iter().cloned());
        }
        for (name, value) in &self.flags {
            let value = match value {
                FlagValue::Given(v) | FlagValue::Managed(v, _) => Some(v.clone()),
                FlagValue::FromEnvironment => std::env::var(name).ok(),
            };
            if let Some(v) = value {
                env.insert(name.clone(), v);
            }
        }
        Some(env)
    }

    /// Every build of the file with these args, for the names its
    /// Dockerfile declares.
    pub fn apply_to(&self, compose: &mut Compose, dockerfiles: &Dockerfiles) {
        if self.is_empty() {
            return;
        }
        for s in &mut compose.services {
            if let Source::Build { spec, .. } = &mut s.source {
                let declared = dockerfiles
                    .of(spec)
                    .map(|d| d.declared_args(spec.target.as_deref()))
                    .unwrap_or_default();
                *spec = self.apply(spec, &declared);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed() -> Managed<'static> {
        Managed {
            app: "shop",
            gitsha: Some("abc123"),
            rack: None,
        }
    }

    fn flags(f: &[&str]) -> Result<Vec<(String, FlagValue)>, String> {
        parse_flags(
            &f.iter()
                .enumerate()
                .map(|(i, s)| (format!("--build-arg #{}", i + 1), s.to_string()))
                .collect::<Vec<_>>(),
            &managed(),
        )
    }

    #[test]
    fn flags_as_convox_reads_them_and_its_managed_names() {
        let f = flags(&["A=1=2", "B", "BUILD_APP", "BUILD_GIT_SHA", "A=3"]).unwrap();
        assert_eq!(
            f,
            [
                ("B".to_string(), FlagValue::FromEnvironment),
                (
                    "BUILD_APP".to_string(),
                    FlagValue::Managed("shop".into(), "--app")
                ),
                (
                    "BUILD_GIT_SHA".to_string(),
                    FlagValue::Managed("abc123".into(), "--gitsha")
                ),
                ("A".to_string(), FlagValue::Given("3".into())),
            ]
        );
        for (bad, says) in [
            ("BUILD_ID", "Convox's build sets it"),
            ("BUILD_AUTH", "cannot know"),
            ("BUILD_MANIFEST", "cannot know"),
            ("BUILD_RACK", "--rack or CONVOX_RACK, which is not given"),
            ("BUILD_APP=x", "without a value"),
            ("=x", "give NAME"),
        ] {
            let e = flags(&[bad]).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_bad_flag_is_named_by_its_place_and_its_value_never_shown() {
        for (bad, says) in [
            (
                "NPM TOKEN=s3cr3t-value",
                "--build-arg #2 (`NPM TOKEN`): a name holds no space",
            ),
            ("=s3cr3t-value", "--build-arg #2: no name before `=`"),
            (
                "TOKEN s3cr3t-value",
                "--build-arg #2: a name holds no space",
            ),
        ] {
            let e = flags(&["A=1", bad]).unwrap_err();
            assert!(e.starts_with(says), "{bad}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn the_app_env_over_the_file_and_the_flags_over_both_for_declared_names_only() {
        let (env, _) = (
            AppEnv::parse("NODE_ENV=production\nTOKEN=t0k\nUNDECLARED=x\n", "f").unwrap(),
            (),
        );
        let args = BuildArgs {
            app_env: Some((env, "--env-file app.env".into())),
            flags: flags(&["TOKEN=flag", "CI_ONLY"]).unwrap(),
        };
        let spec = BuildSpec {
            context: "web".into(),
            args: vec![
                BuildArg {
                    name: "NODE_ENV".into(),
                    value: ArgValue::Literal("development".into()),
                },
                BuildArg {
                    name: "RELEASE".into(),
                    value: ArgValue::Literal("1".into()),
                },
            ],
            ..Default::default()
        };
        let declared: BTreeSet<String> = ["NODE_ENV", "TOKEN", "CI_ONLY", "RELEASE", "NOT_GIVEN"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = args.apply(&spec, &declared);
        let value = |n: &str| {
            out.args
                .iter()
                .find(|a| a.name == n)
                .map(|a| a.value.clone())
        };
        assert_eq!(
            value("NODE_ENV"),
            Some(ArgValue::Secret("production".into()))
        );
        assert_eq!(value("TOKEN"), Some(ArgValue::Secret("flag".into())));
        assert_eq!(value("CI_ONLY"), Some(ArgValue::Inherit));
        assert_eq!(value("RELEASE"), Some(ArgValue::Literal("1".into())));
        assert_eq!(value("UNDECLARED"), None);
        assert_eq!(value("NOT_GIVEN"), None);
        let origins = args.origins(&out);
        let from = |n: &str| {
            origins
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            from("NODE_ENV"),
            Some("the app's environment (--env-file app.env)")
        );
        assert_eq!(from("TOKEN"), Some("--build-arg"));
        assert_eq!(from("RELEASE"), Some("the file's build.args"));
        assert!(!format!("{origins:?}").contains("production"));
    }
}
