//! The command line: flags, the old tool's single-dash spellings, and the
//! defaults that come from the environment.

use crate::plan::tag::DEFAULT_TEMPLATE;
use crate::plan::{Options, Output};
use crate::read::regular;
use clap::Parser;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "\
Examples:
  # See what would run, without running anything:
  convox-build-off-cluster --dry-run --app demo --gitsha abc123 \\
      --repo 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo

  # The old tool's Drone step, unchanged:
  convox-build-off-cluster -app=demo -description=${DRONE_COMMIT_BRANCH} \\
      -gitsha=${DRONE_COMMIT_SHA} -repo $REPO

  # Any registry (no aws commands; log in yourself):
  convox-build-off-cluster --app demo --repo 127.0.0.1:5000/demo -o - > built.yml

Exit status: 0 done, 1 failure, 2 bad usage.";

/// Every option can also come from a Drone plugin setting (`settings: {app:
/// x}` arrives as `PLUGIN_APP=x`) or a GitHub Action input (`with: {app: x}`
/// arrives as `INPUT_APP=x`, read as `PLUGIN_APP` is: [`action_inputs`]).
/// The precedence: a flag, then its `PLUGIN_*` variable, then its `INPUT_*`
/// one, then the CI's defaults for the commit and the description
/// (`DRONE_COMMIT_SHA`/`DRONE_COMMIT_BRANCH`, then
/// `GITHUB_SHA`/`GITHUB_REF_NAME`), then the checkout.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "convox-build-off-cluster",
    version,
    about = "Build a Convox app's images off the cluster, push them to ECR, and rewrite the compose file to use them.",
    long_about = "Builds every service of a compose file that has `build:` with the installed docker, \
pushes the images to an ECR repository (set up and logged in to with the installed aws CLI), \
then rewrites the file in place so that each `build:` becomes `image: <pushed ref>`. \
Every other byte of the file stays as it was. A later `convox build` then only copies images.",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// The compose file to read.
    #[arg(
        short = 'f',
        long = "compose-file",
        value_name = "PATH",
        default_value = "docker-compose.convox.yml",
        env = "PLUGIN_COMPOSE_FILE"
    )]
    pub compose_file: PathBuf,

    /// Where to write the rewritten file; `-` for stdout. [default: the compose file itself]
    #[arg(
        short = 'o',
        long = "output-compose-file",
        value_name = "PATH",
        env = "PLUGIN_OUTPUT_COMPOSE_FILE"
    )]
    pub output_compose_file: Option<String>,

    /// The Convox app name (for the tag).
    #[arg(
        long,
        value_name = "NAME",
        env = "PLUGIN_APP",
        required_unless_present = "completions"
    )]
    pub app: Option<String>,

    /// The git commit, for the tag and the image label. [default: $DRONE_COMMIT_SHA, $GITHUB_SHA, else the checkout's HEAD]
    #[arg(long, value_name = "SHA", env = "PLUGIN_GITSHA")]
    pub gitsha: Option<String>,

    /// A description, e.g. the branch, for the image label and {description}. [default: $DRONE_COMMIT_BRANCH, else $GITHUB_REF_NAME]
    #[arg(long, value_name = "TEXT", env = "PLUGIN_DESCRIPTION")]
    pub description: Option<String>,

    /// Where to push: an ECR repository URI, a bare ECR repository name, or any other registry's repository (HOST/PATH).
    #[arg(
        long,
        value_name = "REPO",
        env = "PLUGIN_REPO",
        required_unless_present = "completions"
    )]
    pub repo: Option<String>,

    /// The AWS region for the ECR calls. [default: $AWS_REGION, $AWS_DEFAULT_REGION, then the region in the ECR URI]
    #[arg(long, value_name = "REGION", env = "PLUGIN_REGION")]
    pub region: Option<String>,

    /// Push to this host instead of the ECR URI's (a dual-stack or FIPS endpoint, a local registry); it is written into the file.
    #[arg(
        long = "registry-host",
        value_name = "HOST[:PORT]",
        env = "PLUGIN_REGISTRY_HOST"
    )]
    pub registry_host: Option<String>,

    /// The tag template; placeholders {app}, {service}, {hash} (the build's content digest, 16 hex digits), {gitsha}, {description}. Disallowed characters become `-`. The old tool's tag is temp_{app}_{service}_{gitsha}.
    #[arg(long, value_name = "TEMPLATE", default_value = DEFAULT_TEMPLATE, env = "PLUGIN_TAG")]
    pub tag: String,

    /// Print the commands and the rewritten file; run nothing, write nothing.
    #[arg(long = "dry-run", env = "PLUGIN_DRY_RUN")]
    pub dry_run: bool,

    /// Print a JSON report on stdout (human text stays on stderr).
    #[arg(long, env = "PLUGIN_JSON", conflicts_with = "dry_run")]
    pub json: bool,

    /// Write `image: REF@sha256:…`, so the file names an immutable image.
    #[arg(long = "pin-digest", env = "PLUGIN_PIN_DIGEST")]
    pub pin_digest: bool,

    /// Then run `convox build` on the rewritten file alone (in a fresh directory, as docker-compose.yml) and print the release ID.
    #[arg(long = "convox-build", env = "PLUGIN_CONVOX_BUILD")]
    pub convox_build: bool,

    /// Leave the base images' registry digests out of the content digest (no lookups; a base rebuilt under the same tag then causes no rebuild).
    #[arg(long = "no-base-digest", env = "PLUGIN_NO_BASE_DIGEST")]
    pub no_base_digest: bool,

    /// Do not keep each service's last image in REPO-cache as the next build's cache source (pulled first under the classic builder, inline cache under BuildKit).
    #[arg(long = "no-registry-cache", env = "PLUGIN_NO_REGISTRY_CACHE")]
    pub no_registry_cache: bool,

    /// The days after which REPO-cache's untagged images expire: the lifecycle policy set when this program creates that repository (never on one it did not create); 0 sets none.
    #[arg(
        long = "cache-expiry-days",
        value_name = "N",
        default_value_t = 7,
        env = "PLUGIN_CACHE_EXPIRY_DAYS"
    )]
    pub cache_expiry_days: u32,

    /// Keep BuildKit's provenance attestation, in this mode (min, max, true, …): the tag is then an image index. Without it, builds through buildx pass --provenance=false, so each tag is one image manifest as the classic builder and Convox push. Needs buildx 0.10 or later.
    #[arg(long, value_name = "MODE", env = "PLUGIN_PROVENANCE")]
    pub provenance: Option<String>,

    /// Add BuildKit's SBOM attestation (the tag is then an image index). Needs buildx 0.10 or later.
    #[arg(long, env = "PLUGIN_SBOM")]
    pub sbom: bool,

    /// The app's environment in `convox env`'s format (NAME=VALUE lines): each ARG the Dockerfile declares that it names gets its value, as Convox's build does.
    #[arg(long = "env-file", value_name = "PATH", env = "PLUGIN_ENV_FILE")]
    pub env_file: Option<PathBuf>,

    /// Take the app's environment from `convox env --app APP` (with --rack or CONVOX_RACK), as --env-file would.
    #[arg(
        long = "convox-env",
        env = "PLUGIN_CONVOX_ENV",
        conflicts_with = "env_file"
    )]
    pub convox_env: bool,

    /// A build argument, as Convox's build args: NAME=VALUE, or NAME for this run's environment's value; repeatable (the setting build_args: comma-separated). Passed to each Dockerfile that declares NAME; the value never in an argv.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_arg: Vec<String>,

    /// The Convox rack, for --convox-env, BUILD_RACK and the platforms its nodes run. [default: $CONVOX_RACK]
    #[arg(long, value_name = "NAME", env = "PLUGIN_RACK")]
    pub rack: Option<String>,

    /// The platforms to build for, comma-separated (linux/amd64,linux/arm64): over each service's platform: and the rack's. [default: the service's, else the rack's, else linux/amd64]
    #[arg(long, value_name = "LIST", env = "PLUGIN_PLATFORM")]
    pub platform: Option<String>,

    /// The buildx builder to build with (one that `docker buildx ls` lists); needs buildx.
    #[arg(long, value_name = "NAME", env = "PLUGIN_BUILDER")]
    pub builder: Option<String>,

    /// The docker context to build and push with (as `docker --context`; DOCKER_HOST still wins, as in docker itself).
    #[arg(long, value_name = "NAME", env = "PLUGIN_CONTEXT")]
    pub context: Option<String>,

    /// Stop the whole run after this long (90s, 5m, 1h, 1m30s, or seconds): every command is stopped, the file is left as it was, exit 1. [default: no limit]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, env = "PLUGIN_TIMEOUT")]
    pub timeout: Option<std::time::Duration>,

    /// Build and push even when the registry has every tag already.
    #[arg(long, env = "PLUGIN_FORCE")]
    pub force: bool,

    /// How many builds run at once. [default: the number of CPUs, at least 4, at most 8]
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64), env = "PLUGIN_JOBS")]
    pub jobs: Option<u16>,

    /// Echo every command line before it runs.
    #[arg(short, long, conflicts_with = "quiet", env = "PLUGIN_VERBOSE")]
    pub verbose: bool,

    /// Print only errors and the summary.
    #[arg(short, long, env = "PLUGIN_QUIET")]
    pub quiet: bool,

    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell) and exit.
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<clap_complete::Shell>,

    /// Accepted for the old tool's command line, and ignored.
    #[arg(long = "build-id", hide = true)]
    pub build_id: Option<String>,

    /// The AWS account of a bare ECR repository name, instead of asking STS (the old tool's -defaultAccount). [default: $AWS_ACCOUNT]
    #[arg(long = "defaultAccount", hide = true)]
    pub default_account: Option<String>,
}

/// A GitHub Action's inputs as the `PLUGIN_*` variables they stand for.
/// The runner passes `with: {compose_file: x}` as `INPUT_COMPOSE_FILE=x`
/// (the name upper-cased, a hyphen kept), and every input the action
/// declares, given or not, empty when not. So: each non-empty `INPUT_NAME`,
/// hyphens read as underscores, becomes `PLUGIN_NAME` unless that is set
/// already (a Drone setting wins). Returns the variables to set.
pub fn action_inputs(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let set = |name: &str| vars.iter().any(|(k, v)| k == name && !v.is_empty());
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in &vars {
        let Some(input) = k.strip_prefix("INPUT_") else {
            continue;
        };
        let plugin = format!("PLUGIN_{}", input.replace('-', "_").to_ascii_uppercase());
        if v.is_empty() || set(&plugin) || out.iter().any(|(p, _)| *p == plugin) {
            continue;
        }
        out.push((plugin, v.clone()));
    }
    out.sort();
    out
}

/// The old tool's default for `--repo`: `AWS_ECS_REPO_PREFIX`, when neither
/// `PLUGIN_REPO` nor (read as it) `INPUT_REPO` is set. Returns the value to
/// set as `PLUGIN_REPO` (a `--repo` flag still wins over it).
pub fn old_repo_default(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    if set("PLUGIN_REPO") || set("INPUT_REPO") {
        return None;
    }
    env("AWS_ECS_REPO_PREFIX").filter(|v| !v.trim().is_empty())
}

/// Run as a GitHub Action (`GITHUB_ACTIONS=true`) without a required
/// input, one line that names the input, instead of clap's usage text.
pub fn missing_input(e: &clap::Error, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if e.kind() != clap::error::ErrorKind::MissingRequiredArgument
        || env("GITHUB_ACTIONS").as_deref() != Some("true")
    {
        return None;
    }
    let missing: Vec<&str> = ["app", "repo"]
        .into_iter()
        .filter(|name| {
            let given = |k: String| env(&k).is_some_and(|v| !v.is_empty());
            !given(format!("PLUGIN_{}", name.to_ascii_uppercase()))
                && !given(format!("INPUT_{}", name.to_ascii_uppercase()))
        })
        .collect();
    let names: Vec<String> = missing.iter().map(|n| format!("`{n}`")).collect();
    let (what, verb, pronoun) = if missing.len() == 1 {
        ("input", "is", "it")
    } else {
        ("inputs", "are", "them")
    };
    Some(format!(
        "the required {what} {} {verb} not set: give {pronoun} under `with:` in the workflow step",
        names.join(" and ")
    ))
    .filter(|_| !missing.is_empty())
}

/// Long options that the old tool (Go's flag package) spelt with one dash.
const LONG_NAMES: &[&str] = &[
    "app",
    "build-id",
    "compose-file",
    "defaultAccount",
    "description",
    "dry-run",
    "force",
    "jobs",
    "gitsha",
    "output-compose-file",
    "quiet",
    "region",
    "registry-host",
    "repo",
    "tag",
    "verbose",
    "completions",
    "json",
    "pin-digest",
    "convox-build",
    "help",
    "version",
];

/// Turn `-app=x` and `-app x` into `--app=x` and `--app x`.
pub fn normalize_legacy_args<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest_are_values = false;
    for (i, arg) in args.into_iter().enumerate() {
        let legacy = match arg.to_str() {
            Some(s) if i > 0 && !rest_are_values => {
                if s == "--" {
                    rest_are_values = true;
                }
                s.strip_prefix('-')
                    .filter(|r| !r.starts_with('-'))
                    .filter(|r| LONG_NAMES.contains(&r.split('=').next().unwrap_or("")))
                    .map(|r| OsString::from(format!("--{r}")))
            }
            _ => None,
        };
        out.push(legacy.unwrap_or(arg));
    }
    out
}

/// What a run needs besides the plan options.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub options: Options,
    /// The account a bare ECR name lives in, when the old tool's
    /// `-defaultAccount` or `AWS_ACCOUNT` gives it (STS is then not asked).
    pub account: Option<String>,
    pub compose_file: PathBuf,
    pub dry_run: bool,
    pub warnings: Vec<String>,
}

/// `90s`, `5m`, `1h`, `1m30s`, or plain seconds; more than zero.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let bad =
        || format!("`{text}` is not a duration: write 90s, 5m, 1h, 1m30s or a number of seconds");
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    if t.chars().all(|c| c.is_ascii_digit()) {
        total = t.parse().map_err(|_| bad())?;
    } else {
        let mut num = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => return Err(bad()),
            };
            let n: u64 = num.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            num.clear();
        }
        if !num.is_empty() {
            return Err(bad());
        }
    }
    if total == 0 {
        return Err(format!("`{text}`: the timeout must be more than zero"));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// A duration as the user would write it back.
pub fn show_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

impl Cli {
    /// Shell completions for `shell`.
    pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "convox-build-off-cluster", &mut out);
        out
    }

    /// The man page, in roff.
    pub fn man_page() -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out)?;
        Ok(out)
    }

    pub fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(normalize_legacy_args(args))
    }

    /// Apply the defaults that come from the environment and the checkout.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Resolved {
        let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
        let mut warnings = Vec::new();
        if self.build_id.is_some() {
            warnings
                .push("-build-id is accepted for the old tool's command line and ignored".into());
        }
        let compose_dir = match self.compose_file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let gitsha = self
            .gitsha
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| non_empty("DRONE_COMMIT_SHA"))
            .or_else(|| non_empty("GITHUB_SHA"))
            .or_else(|| git_head(&compose_dir));
        let description = self
            .description
            .clone()
            .or_else(|| non_empty("DRONE_COMMIT_BRANCH"))
            .or_else(|| non_empty("GITHUB_REF_NAME"))
            .unwrap_or_default();
        let region = self
            .region
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| non_empty("AWS_REGION"))
            .or_else(|| non_empty("AWS_DEFAULT_REGION"));
        let output = match self.output_compose_file.as_deref() {
            Some("-") => Output::Stdout,
            Some(p) => Output::File(PathBuf::from(p)),
            None => Output::File(self.compose_file.clone()),
        };
        Resolved {
            options: Options {
                app: self.app.clone().unwrap_or_default(),
                gitsha,
                description,
                repo: self.repo.clone().unwrap_or_default(),
                region,
                registry_host: self.registry_host.clone().filter(|h| !h.is_empty()),
                tag: self.tag.clone(),
                output,
                cache_expiry_days: self.cache_expiry_days,
            },
            account: self
                .default_account
                .clone()
                .or_else(|| non_empty("AWS_ACCOUNT"))
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty()),
            compose_file: self.compose_file.clone(),
            dry_run: self.dry_run,
            warnings,
        }
    }
}

/// The commit of HEAD in the git checkout holding `dir`, read from `.git`
/// without running git (a dry run starts no process).
pub fn git_head(dir: &Path) -> Option<String> {
    let start = std::fs::canonicalize(dir).ok()?;
    let dot_git = start
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|p| p.exists())?;
    let git_dir = if dot_git.is_file() {
        let text = git_file(&dot_git)?;
        let p = PathBuf::from(text.trim().strip_prefix("gitdir:")?.trim());
        if p.is_relative() {
            dot_git.parent()?.join(p)
        } else {
            p
        }
    } else {
        dot_git
    };
    let common = git_file(&git_dir.join("commondir"))
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.clone());
    let head = git_file(&git_dir.join("HEAD"))?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return is_sha(head).then(|| head.to_string());
    };
    for d in [&git_dir, &common] {
        if let Some(sha) = git_file(&d.join(reference)) {
            let sha = sha.trim();
            if is_sha(sha) {
                return Some(sha.to_string());
            }
        }
    }
    let packed = regular::read_text(&common.join("packed-refs"), 256 << 20).ok()?;
    packed.lines().find_map(|l| {
        let (sha, name) = l.split_once(' ')?;
        (name == reference && is_sha(sha)).then(|| sha.to_string())
    })
}

/// A small file of git's (`HEAD`, a ref, `.git` as a file): only a regular
/// file, never blocking, at most 64 KiB.
fn git_file(path: &Path) -> Option<String> {
    regular::read_text(path, 64 << 10).ok()
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::{action_inputs, parse_duration, show_duration};
    use std::time::Duration;

    #[test]
    fn action_inputs_become_plugin_settings_unless_empty_or_set() {
        let vars = [
            ("INPUT_APP", "demo"),
            ("INPUT_COMPOSE-FILE", "convox.yml"),
            ("INPUT_GITSHA", ""),
            ("INPUT_REPO", "from-input"),
            ("PLUGIN_REPO", "from-drone"),
            ("GITHUB_SHA", "abc"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let set = action_inputs(vars);
        assert_eq!(
            set,
            [
                ("PLUGIN_APP".to_string(), "demo".to_string()),
                ("PLUGIN_COMPOSE_FILE".to_string(), "convox.yml".to_string()),
            ]
        );
    }

    #[test]
    fn durations_as_people_write_them() {
        for (text, secs) in [
            ("90s", 90),
            ("5m", 300),
            ("1h", 3600),
            ("1m30s", 90),
            ("45", 45),
            (" 2h5m ", 7500),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "0", "0s", "5x", "m", "1.5m", "-3", "10s5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(show_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(show_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(show_duration(Duration::from_secs(5)), "5s");
    }

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_args(
            std::iter::once("prog")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn the_old_tools_single_dash_spellings_work() {
        let cli = parse(&[
            "-app=demo",
            "-description=feature/x",
            "-gitsha=abc",
            "-repo",
            "r/x",
            "-compose-file",
            "c.yml",
            "-output-compose-file=o.yml",
            "-region=eu-west-1",
            "-build-id=7",
            "-defaultAccount",
            "1",
        ])
        .unwrap();
        assert_eq!(cli.app.as_deref(), Some("demo"));
        assert_eq!(cli.description.as_deref(), Some("feature/x"));
        assert_eq!(cli.gitsha.as_deref(), Some("abc"));
        assert_eq!(cli.repo.as_deref(), Some("r/x"));
        assert_eq!(cli.compose_file, PathBuf::from("c.yml"));
        assert_eq!(cli.output_compose_file.as_deref(), Some("o.yml"));
        assert_eq!(cli.region.as_deref(), Some("eu-west-1"));
        let r = cli.resolve(&|_| None);
        assert_eq!(r.warnings.len(), 1, "-build-id only");
        assert_eq!(r.account.as_deref(), Some("1"));
    }

    #[test]
    fn short_flags_and_values_after_double_dash_are_left_alone() {
        let args =
            normalize_legacy_args(["p", "-f", "x.yml", "-v", "--app", "-repo"].map(OsString::from));
        assert_eq!(
            args,
            ["p", "-f", "x.yml", "-v", "--app", "--repo"].map(OsString::from)
        );
        let args = normalize_legacy_args(["p", "--", "-app"].map(OsString::from));
        assert_eq!(args[2], "-app");
    }

    #[test]
    fn flags_win_over_drone_variables_and_region_falls_back() {
        let env = |k: &str| match k {
            "DRONE_COMMIT_SHA" => Some("fromdrone".into()),
            "DRONE_COMMIT_BRANCH" => Some("main".into()),
            "AWS_DEFAULT_REGION" => Some("eu-west-1".into()),
            _ => None,
        };
        let r = parse(&["--app", "a", "--repo", "r"]).unwrap().resolve(&env);
        assert_eq!(r.options.gitsha.as_deref(), Some("fromdrone"));
        assert_eq!(r.options.description, "main");
        assert_eq!(r.options.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            r.options.output,
            Output::File("docker-compose.convox.yml".into())
        );
        let r = parse(&["--app", "a", "--repo", "r", "--gitsha", "flag", "-o", "-"])
            .unwrap()
            .resolve(&env);
        assert_eq!(r.options.gitsha.as_deref(), Some("flag"));
        assert_eq!(r.options.output, Output::Stdout);
    }

    #[test]
    fn missing_required_flags_are_usage_errors() {
        let e = parse(&["--app", "a"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn reads_head_from_a_git_directory() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join(".git");
        std::fs::create_dir_all(g.join("refs/heads")).unwrap();
        std::fs::write(g.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let sha = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(
            g.join("packed-refs"),
            format!("# pack\n{sha} refs/heads/main\n"),
        )
        .unwrap();
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        assert_eq!(git_head(&d.path().join("sub")).as_deref(), Some(sha));
        let sha2 = "1111111111111111111111111111111111111111";
        std::fs::write(g.join("refs/heads/main"), format!("{sha2}\n")).unwrap();
        assert_eq!(git_head(d.path()).as_deref(), Some(sha2));
    }
}
