//! buildx's builders, and how a built image leaves each: the rules behind
//! `--builder`, `BUILDX_BUILDER` and `docker buildx use`.
//!
//! - **Which builder.** `--builder NAME`, else `BUILDX_BUILDER`, else the
//!   builder `docker buildx use` made current; `docker buildx inspect
//!   [NAME]` tells its driver and its nodes' BuildKit version. A build then
//!   names that builder explicitly (`docker buildx build --builder NAME`):
//!   buildx 0.10's `docker build` ignores a builder made current and builds
//!   on the engine's own.
//! - **The `docker` driver** is the engine's own BuildKit: the image lands in
//!   the engine, and is tagged and pushed from there.
//! - **Every other driver** (`docker-container`, `remote`, `kubernetes`, a
//!   cloud builder) keeps its result to itself unless told `--push` or
//!   `--load`: the build pushes, with every reference of the build as a
//!   `-t`, no `docker tag` or `docker push` runs, and the pushed digest comes
//!   from `--metadata-file` (`containerimage.digest`). Its base images are
//!   pulled by that builder, never by the engine.
//! - **Its registry cache** is BuildKit's own: `--cache-to
//!   type=registry,ref=CACHE,mode=max` (every stage's layers, not only the
//!   last's) and `--cache-from type=registry,ref=CACHE`. ECR accepts that
//!   cache manifest only in the form BuildKit 0.12 added
//!   (`image-manifest=true,oci-mediatypes=true`); with an older BuildKit on
//!   ECR the cache is written inline into an image pushed as CACHE.
//! - **Several builds at once** run as one `docker buildx bake`: its
//!   definition (JSON, on stdin) has a target per build, each the same
//!   build as its `docker buildx build`; one client process, one connection
//!   and session with the builder for all of them, where one process per
//!   build each starts, connects and syncs on its own. The pushed digests
//!   come from its `--metadata-file`, by target. Bake (0.19 on) asks leave
//!   to read any file outside its working directory (`--allow
//!   fs.read=…`, a flag older ones refuse), so it runs in the directory
//!   that holds every context, Dockerfile and secret file. This program
//!   wrote the definition from the user's own file, so the check is off
//!   besides (`BUILDX_BAKE_ENTITLEMENTS_FS=0`), for a path whose symlinks
//!   lead elsewhere.

use crate::programs::command::Cmd;

/// How buildx is run: `docker buildx …`, or the plugin file docker would
/// run for it, run directly (`programs::plugin`: the same program, without
/// the CLI's dispatch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program(Option<String>);

impl Program {
    /// The plugin file, found where docker would find it.
    pub fn plugin(path: &std::path::Path) -> Program {
        Program(path.to_str().map(String::from))
    }

    /// `docker buildx`, or the plugin's path: what the subcommand follows.
    pub fn cmd(&self) -> Cmd {
        match &self.0 {
            Some(path) => Cmd::new(path.as_str()),
            None => Cmd::new("docker").arg("buildx"),
        }
    }
}

/// A buildx builder, as `docker buildx inspect` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buildx {
    pub name: String,
    pub driver: String,
    /// The first node's BuildKit version (`v0.11.6`), when it says.
    pub buildkit: Option<String>,
    /// Not asked but assumed (a dry run with `--builder`).
    pub assumed: bool,
    /// How buildx is run.
    pub program: Program,
    /// Its nodes, in buildx's order, as `inspect` lists them.
    pub nodes: Vec<Node>,
}

/// One node of a builder: its name and the platforms it lists, each with
/// whether it was declared (`docker buildx create --platform`, shown with a
/// `*`) rather than found (natively, or through an emulator).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub platforms: Vec<(String, bool)>,
}

/// `docker buildx version`: succeeds when the buildx plugin is there.
pub fn version_cmd(program: &Program) -> Cmd {
    program.cmd().arg("version")
}

/// `docker buildx imagetools create -t LIST PART…`: an index of the parts
/// pushed under `LIST`; each part's content is copied into LIST's
/// repository (mounted where the registry allows it, else uploaded: ECR
/// mounts only with its blob mounting setting on).
pub fn imagetools_create(program: &Program, list: &str, parts: &[String]) -> Cmd {
    program
        .cmd()
        .args(["imagetools", "create", "-t", list])
        .args(parts)
}

/// `docker buildx inspect [NAME]`.
pub fn inspect(program: &Program, name: Option<&str>) -> Cmd {
    let c = program.cmd().arg("inspect");
    match name {
        Some(n) => c.arg(n),
        None => c,
    }
}

/// The builder in `docker buildx inspect`'s output (buildx 0.10 and later:
/// `Name:` and `Driver:` first, then each node's `Buildkit:`).
pub fn parse_inspect(out: &str) -> Option<Buildx> {
    let field = |key: &str| inspect_field(out, key);
    let name = field("Name").filter(|n| !n.is_empty())?;
    let driver = field("Driver").filter(|d| !d.is_empty())?;
    let buildkit = field("Buildkit")
        .or_else(|| field("BuildKit version"))
        .filter(|v| !v.is_empty());
    Some(Buildx {
        name,
        driver,
        buildkit,
        assumed: false,
        program: Program::default(),
        nodes: parse_nodes(out),
    })
}

/// The nodes after `Nodes:`: each from its `Name:` line, with its
/// `Platforms:` (a `*` marks a declared one).
fn parse_nodes(out: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let after = out.split_once("\nNodes:").map_or("", |(_, rest)| rest);
    for line in after.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "Name" => nodes.push(Node {
                name: value.trim().to_string(),
                platforms: Vec::new(),
            }),
            "Platforms" => {
                if let Some(node) = nodes.last_mut() {
                    node.platforms = value
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|p| match p.strip_suffix('*') {
                            Some(p) => (p.to_string(), true),
                            None => (p.to_string(), false),
                        })
                        .collect();
                }
            }
            _ => {}
        }
    }
    nodes
}

/// The least buildx version `docker buildx inspect`'s output shows:
/// 0.10.0 when it has the `Last Activity:` line, which buildx 0.10 added
/// (printed once the builder has been used); else nothing.
pub fn version_floor(out: &str) -> Option<(u32, u32, u32)> {
    inspect_field(out, "Last Activity").map(|_| (0, 10, 0))
}

/// The value of the first `KEY: value` line of an inspect's output.
fn inspect_field(out: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

impl Buildx {
    /// A platform buildx would build away from the node declared for it:
    /// buildx gives each platform to the first node that lists it
    /// (`build/resolver`: ties keep the first), so a node that lists it
    /// without declaring it (an emulator there) ahead of one that declares
    /// it takes it. (the node that would build it, the one declared for it)
    pub fn misplaced(&self, platform: &str) -> Option<(&str, &str)> {
        let listed = |n: &Node, declared_only: bool| {
            n.platforms
                .iter()
                .any(|(p, d)| p == platform && (*d || !declared_only))
        };
        let first = self.nodes.iter().find(|n| listed(n, false))?;
        let declared = self.nodes.iter().find(|n| listed(n, true))?;
        (!std::ptr::eq(first, declared)).then_some((&first.name, &declared.name))
    }

    /// What a dry run assumes of `--builder NAME`: a builder of its own (not
    /// the engine's), with a current BuildKit.
    pub fn assumed(name: &str) -> Buildx {
        Buildx {
            name: name.to_string(),
            driver: "remote".into(),
            buildkit: None,
            assumed: true,
            program: Program::default(),
            nodes: Vec::new(),
        }
    }

    /// Does the build push the image itself (any driver but `docker`)?
    pub fn pushes_itself(&self) -> bool {
        self.driver != "docker"
    }

    /// Does its BuildKit write a registry cache ECR accepts (0.12 or later)?
    /// Assumed when not said.
    pub fn ecr_cache_form(&self) -> bool {
        match self.buildkit.as_deref().and_then(version) {
            Some(v) => v >= (0, 12, 0),
            None => self.assumed,
        }
    }
}

/// `v0.11.6`, `0.12.5`, `v0.13.0-rc1` as numbers; None for `0.0.0+unknown`
/// or anything else that says nothing.
fn version(text: &str) -> Option<(u32, u32, u32)> {
    let t = text.trim().trim_start_matches('v');
    let mut parts = t.split(|c: char| !c.is_ascii_digit()).take(3);
    let mut next = || parts.next()?.parse::<u32>().ok();
    let v = (next()?, next()?, next().unwrap_or(0));
    (v != (0, 0, 0)).then_some(v)
}

/// buildx's version in `docker buildx version` (`github.com/docker/buildx
/// v0.13.1 …`, Debian's `github.com/docker/buildx 0.13.1+ds1-3 …`).
pub fn parse_version(out: &str) -> Option<(u32, u32, u32)> {
    out.split_whitespace().nth(1).and_then(version)
}

/// The attestation flags of a build through buildx, by its version.
///
/// buildx 0.10 and later add a provenance attestation by default (`min`),
/// which makes the pushed tag an OCI image index with an `unknown/unknown`
/// attestation manifest beside the image, where the classic builder, the
/// engine's own store and Convox's builds push one image manifest. So the
/// default is `--provenance=false` (the flag came with 0.10; the
/// `BUILDX_NO_DEFAULT_ATTESTATIONS` variable only with 0.11). Before 0.10
/// there are no attestations, and no flags to ask for them. SBOMs are never
/// added by default. `provenance` (a mode: `min`, `max`, `true`, …) and
/// `sbom` keep BuildKit's attestations for those who want them.
pub fn attestation_flags(
    version: Option<(u32, u32, u32)>,
    provenance: Option<&str>,
    sbom: bool,
) -> Result<Vec<String>, String> {
    if let Some(v) = version.filter(|v| *v < (0, 10, 0)) {
        if provenance.is_some() || sbom {
            return Err(format!(
                "--provenance and --sbom need buildx 0.10 or later, and this one is {}.{}.{}",
                v.0, v.1, v.2
            ));
        }
        return Ok(Vec::new());
    }
    let mut flags = vec![format!("--provenance={}", provenance.unwrap_or("false"))];
    if sbom {
        flags.push("--sbom=true".into());
    }
    Ok(flags)
}

/// `docker buildx bake --builder NAME --progress plain --metadata-file F
/// FLAGS -f - TARGET…`, with the definition of `targets` (name, target) on
/// stdin.
pub fn bake(
    bx: &Buildx,
    flags: &[String],
    metadata_file: &std::path::Path,
    targets: &[(String, serde_json::Value)],
) -> Cmd {
    let definition = serde_json::json!({
        "target": targets.iter().cloned().collect::<serde_json::Map<_, _>>(),
    });
    let read: Vec<std::path::PathBuf> = targets
        .iter()
        .flat_map(|(_, t)| read_paths(t))
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect();
    let mut c = bx.program.cmd();
    if let Some(dir) = common_dir(&read).and_then(|d| d.to_str().map(String::from)) {
        c = c.current_dir(dir);
    }
    c.env_shown("BUILDX_BAKE_ENTITLEMENTS_FS", "0")
        .args(["bake", "--builder", bx.name.as_str(), "--progress", "plain"])
        .arg("--metadata-file")
        .arg(metadata_file.display().to_string())
        .args(flags)
        .args(["-f", "-"])
        .args(targets.iter().map(|(name, _)| name.as_str()))
        .stdin_text(definition.to_string())
}

/// The files and directories a bake target reads: its context, its
/// Dockerfile, its secret files.
fn read_paths(target: &serde_json::Value) -> Vec<std::path::PathBuf> {
    let text = |v: &serde_json::Value| v.as_str().map(std::path::PathBuf::from);
    let secrets = target["secret"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            s.as_str()?
                .split(',')
                .find_map(|kv| kv.strip_prefix("src="))
                .map(std::path::PathBuf::from)
        });
    text(&target["context"])
        .into_iter()
        .chain(text(&target["dockerfile"]))
        .chain(secrets)
        .collect()
}

/// The deepest directory that holds every one of these absolute paths
/// (a file's own directory for a file alone).
fn common_dir(paths: &[std::path::PathBuf]) -> Option<std::path::PathBuf> {
    let dir_of = |p: &std::path::PathBuf| {
        if p.is_dir() {
            p.clone()
        } else {
            p.parent()
                .map_or_else(|| p.clone(), std::path::Path::to_path_buf)
        }
    };
    let mut common = dir_of(paths.first()?);
    for p in &paths[1..] {
        while !p.starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    Some(common)
}

/// A bake target's name for a service: bake takes letters, digits, `-`
/// and `_`; `taken` are the names given already.
pub fn target_name(service: &str, taken: &[String]) -> String {
    let base: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}_{n}");
    }
    name
}

/// A target's pushed digest in a bake's `--metadata-file`.
pub fn bake_digest(json: &str, target: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    digest_in(v.get(target)?)
}

/// The pushed image's digest in a `--metadata-file`.
pub fn metadata_digest(json: &str) -> Option<String> {
    digest_in(&serde_json::from_str(json).ok()?)
}

/// `containerimage.digest` of one build's metadata.
fn digest_in(v: &serde_json::Value) -> Option<String> {
    v.get("containerimage.digest")?
        .as_str()
        .filter(|d| d.starts_with("sha256:"))
        .map(String::from)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_platform_goes_to_the_first_node_that_lists_it() {
        // As buildx 0.36 prints a builder of two nodes, the second declared
        // linux/arm64, the first with an emulator for it.
        let out = "Name:          fleet\nDriver:        remote\nLast Activity: 2026-12-04 15:35:53 +0000 UTC\n\nNodes:\nName:             fleet0\nEndpoint:         tcp://127.0.0.1:41231\nStatus:           running\nBuildKit version: v0.32.2\nPlatforms:        linux/amd64, linux/amd64/v2, linux/arm64, linux/386\nLabels:\n org.mobyproject.buildkit.worker.executor: oci\n\nName:             fleet1\nEndpoint:         tcp://127.0.0.1:41232\nStatus:           running\nBuildKit version: v0.32.2\nPlatforms:        linux/arm64*, linux/amd64, linux/386\n";
        let bx = parse_inspect(out).expect("a builder");
        assert_eq!(bx.nodes.len(), 2);
        assert_eq!(bx.nodes[1].platforms[0], ("linux/arm64".to_string(), true));
        assert_eq!(bx.misplaced("linux/arm64"), Some(("fleet0", "fleet1")));
        assert_eq!(bx.misplaced("linux/amd64"), None);
        // Without the emulator on the first node: each on its own.
        let native = out.replace(
            "linux/amd64/v2, linux/arm64, linux/386",
            "linux/amd64/v2, linux/386",
        );
        assert_eq!(
            parse_inspect(&native)
                .expect("a builder")
                .misplaced("linux/arm64"),
            None
        );
    }

    use super::*;

    const REMOTE: &str = "Name:          bkremote\nDriver:        remote\nLast Activity: 2026-12-01 17:38:59 +0000 UTC\n\nNodes:\nName:      bkremote0\nEndpoint:  tcp://127.0.0.1:1234\nStatus:    running\nBuildkit:  v0.11.6\nPlatforms: linux/amd64, linux/386\n";
    const DOCKER: &str = "Name:   default\nDriver: docker\n\nNodes:\nName:      default\nEndpoint:  default\nStatus:    running\nBuildkit:  20.10.24+dfsg1\nPlatforms: linux/amd64, linux/386\n";

    #[test]
    fn inspect_output_of_buildx_0_10() {
        let r = parse_inspect(REMOTE).expect("a builder");
        assert_eq!((r.name.as_str(), r.driver.as_str()), ("bkremote", "remote"));
        assert_eq!(r.buildkit.as_deref(), Some("v0.11.6"));
        assert!(r.pushes_itself());
        assert!(!r.ecr_cache_form(), "0.11 writes no ECR-accepted cache");
        let d = parse_inspect(DOCKER).expect("a builder");
        assert!(!d.pushes_itself());
        assert_eq!(parse_inspect("error: no builder \"x\" found"), None);
        let new = parse_inspect(&REMOTE.replace("v0.11.6", "v0.12.5")).expect("builder");
        assert!(new.ecr_cache_form());
        let unknown = parse_inspect(&REMOTE.replace("v0.11.6", "0.0.0+unknown")).expect("b");
        assert!(!unknown.ecr_cache_form(), "unknown is not 0.12");
        assert!(Buildx::assumed("x").ecr_cache_form());
    }

    #[test]
    fn buildx_through_docker_or_its_plugin_file() {
        let via = Program::default();
        assert_eq!(
            inspect(&via, Some("b")).to_string(),
            "docker buildx inspect b"
        );
        let direct = Program::plugin(std::path::Path::new("/cfg/cli-plugins/docker-buildx"));
        assert_eq!(
            inspect(&direct, None).to_string(),
            "/cfg/cli-plugins/docker-buildx inspect"
        );
        assert_eq!(
            version_cmd(&direct).to_string(),
            "/cfg/cli-plugins/docker-buildx version"
        );
    }

    #[test]
    fn attestations_off_by_default_from_buildx_0_10_and_kept_when_asked() {
        assert_eq!(
            parse_version("github.com/docker/buildx v0.36.1 a1b2c3d\n"),
            Some((0, 36, 1))
        );
        assert_eq!(
            parse_version("github.com/docker/buildx 0.13.1+ds1-3 0.13.1+ds1-3\n"),
            Some((0, 13, 1))
        );
        let flags = |v, p, s| attestation_flags(v, p, s);
        assert_eq!(
            flags(Some((0, 13, 1)), None, false).unwrap(),
            ["--provenance=false"]
        );
        assert_eq!(flags(None, None, false).unwrap(), ["--provenance=false"]);
        assert_eq!(
            flags(Some((0, 36, 1)), Some("mode=max"), true).unwrap(),
            ["--provenance=mode=max", "--sbom=true"]
        );
        assert!(flags(Some((0, 9, 1)), None, false).unwrap().is_empty());
        assert!(flags(Some((0, 9, 1)), Some("min"), false)
            .unwrap_err()
            .contains("0.9.1"));
    }

    #[test]
    fn several_builds_as_one_bake_with_each_digest_by_target() {
        let bx = Buildx {
            program: Program::plugin(std::path::Path::new("/p/docker-buildx")),
            ..parse_inspect(REMOTE).unwrap()
        };
        let t = serde_json::json!({"context": "/app/web", "tags": ["r:1"]});
        let cmd = bake(
            &bx,
            &["--provenance=false".to_string()],
            std::path::Path::new("/tmp/m.json"),
            &[("web".into(), t.clone()), ("api".into(), t)],
        );
        assert_eq!(
            cmd.get_args().join(" "),
            "bake --builder bkremote --progress plain --metadata-file /tmp/m.json --provenance=false -f - web api"
        );
        assert!(cmd
            .to_string()
            .contains("BUILDX_BAKE_ENTITLEMENTS_FS=0 /p/docker-buildx bake"));
        let stdin = String::from_utf8(cmd.stdin_bytes().unwrap().unwrap()).unwrap();
        let def: serde_json::Value = serde_json::from_str(&stdin).unwrap();
        assert_eq!(def["target"]["api"]["context"], "/app/web");
        let meta = r#"{"web":{"containerimage.digest":"sha256:aa"},"api":{"containerimage.digest":"sha256:bb"}}"#;
        assert_eq!(bake_digest(meta, "api").as_deref(), Some("sha256:bb"));
        assert_eq!(bake_digest(meta, "jobs"), None);
        assert_eq!(target_name("my.web", &[]), "my_web");
        // It runs where every path it reads is below it.
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        for sub in ["app/web", "app/api", "shared"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let paths = [root.join("app/web"), root.join("app/api")];
        assert_eq!(common_dir(&paths), Some(root.join("app")));
        let paths = [root.join("app/web"), root.join("shared")];
        assert_eq!(common_dir(&paths), Some(root.clone()));
        let t = serde_json::json!({"context": root.join("app/web"), "secret": ["id=a,env=X", format!("id=b,src={}", root.join("shared/s").display())]});
        assert_eq!(
            read_paths(&t),
            [root.join("app/web"), root.join("shared/s")]
        );
        assert_eq!(target_name("my_web", &["my_web".into()]), "my_web_2");
    }

    #[test]
    fn the_pushed_digest_from_the_metadata_file() {
        let json = r#"{"buildx.build.ref":"b/b0/x","containerimage.descriptor":{},"containerimage.digest":"sha256:abc","image.name":"r:1,r:2"}"#;
        assert_eq!(metadata_digest(json).as_deref(), Some("sha256:abc"));
        assert_eq!(metadata_digest("{}"), None);
        assert_eq!(metadata_digest("not json"), None);
    }
}
