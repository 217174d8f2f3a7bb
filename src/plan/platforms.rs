//! The platforms each build targets, decided before any build: the image we
//! push must run on the CPUs the rack runs, whatever machine builds it.
//!
//! The rules, in order (the first that gives one decides):
//! 1. `--platform LIST` (`PLUGIN_PLATFORM`, `INPUT_PLATFORM`), comma-separated;
//! 2. the service's own `platform:`;
//! 3. the rack's (`--rack` or `CONVOX_RACK`, asked of `convox rack params`
//!    and the instance types' architectures): every architecture the app's
//!    services can be scheduled on;
//! 4. `linux/amd64`: the default of every Convox generation's node types, not
//!    the engine's own platform (an Apple Silicon laptop builds for amd64).
//!
//! A platform is `os/arch[/variant]`, lowercase; `amd64`, `arm64` and
//! `x86_64` alone name `linux/amd64` and `linux/arm64`. A list is kept in
//! one canonical order (sorted, without duplicates), so the content digest
//! covers the same set however it was written.

use std::fmt;

/// The default of every Convox generation.
pub const DEFAULT: &str = "linux/amd64";

/// Where a build's platforms came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--platform` (or its setting).
    Flag,
    /// The service's `platform:`.
    Service,
    /// The rack's instance types (its name).
    Rack(String),
    /// The app's `BuildArch` parameter (convox/convox 3.24.1+,
    /// `docs/configuration/app-parameters/aws/BuildArch.md`): the
    /// architecture of the build nodes the app's builds run on.
    BuildArch,
    /// No one said: Convox's default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("--platform"),
            Source::Service => f.write_str("the service's platform:"),
            Source::Rack(r) => write!(f, "the rack {r}"),
            Source::BuildArch => f.write_str("app parameter BuildArch"),
            Source::Default => f.write_str("Convox's default"),
        }
    }
}

impl Source {
    /// The report's word for it.
    pub fn key(&self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Service => "service",
            Source::Rack(_) => "rack",
            Source::BuildArch => "build_arch",
            Source::Default => "default",
        }
    }
}

/// Read a comma-separated list into the canonical order; an error names the
/// entry that is not a platform.
pub fn parse_list(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.push(parse_one(raw)?);
    }
    if out.is_empty() {
        return Err(format!("`{list}` names no platform"));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn parse_one(raw: &str) -> Result<String, String> {
    let p = raw.to_ascii_lowercase();
    let p = match p.as_str() {
        "amd64" | "x86_64" => "linux/amd64".to_string(),
        "arm64" | "aarch64" => "linux/arm64".to_string(),
        _ => p,
    };
    let parts: Vec<&str> = p.split('/').collect();
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(|s| word(s)) {
        return Err(format!(
            "`{raw}` is not a platform; give os/arch[/variant], e.g. linux/amd64 or linux/arm64"
        ));
    }
    Ok(normalize(
        parts[0],
        parts[1],
        parts.get(2).copied().unwrap_or(""),
    ))
}

/// docker's normalisation of a platform (containerd's `platforms.Normalize`,
/// `normalizeArch`): `i386` is `386`; `x86_64` is `amd64`, whose `v1` is
/// the default; `aarch64` is `arm64`, whose `v8` is the default; `armhf` is
/// `arm/v7`, `armel` `arm/v6`; `arm` alone is `arm/v7`, and a bare digit
/// variant gets its `v`.
fn normalize(os: &str, arch: &str, variant: &str) -> String {
    let (arch, variant) = match (arch, variant) {
        ("i386", _) => ("386", String::new()),
        ("x86_64" | "amd64", "v1") | ("x86_64", "") => ("amd64", String::new()),
        ("x86_64", v) => ("amd64", v.to_string()),
        ("aarch64" | "arm64", "8" | "v8") | ("aarch64", "") => ("arm64", String::new()),
        ("aarch64", v) => ("arm64", v.to_string()),
        ("armhf", _) => ("arm", "v7".to_string()),
        ("armel", _) => ("arm", "v6".to_string()),
        ("arm", "" | "7") => ("arm", "v7".to_string()),
        ("arm", v @ ("5" | "6" | "8")) => ("arm", format!("v{v}")),
        (a, v) => (a, v.to_string()),
    };
    if variant.is_empty() {
        format!("{os}/{arch}")
    } else {
        format!("{os}/{arch}/{variant}")
    }
}

/// An EC2 architecture (`ProcessorInfo.SupportedArchitectures`, or
/// `karpenter_arch`'s words) as a platform; None for one no image runs on
/// Convox (`i386`, `x86_64_mac`).
pub fn from_ec2_arch(arch: &str) -> Option<&'static str> {
    match arch.trim() {
        "x86_64" | "amd64" => Some("linux/amd64"),
        "arm64" | "aarch64" => Some("linux/arm64"),
        _ => None,
    }
}

/// The platforms of one build, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub list: Vec<String>,
    pub source: Source,
}

impl Decided {
    /// The list as docker's `--platform` takes it.
    pub fn joined(&self) -> String {
        self.list.join(",")
    }
}

/// Decide one build's platforms by the rules above. `service` is the
/// service's `platform:` as written; an invalid one is an error.
pub fn decide(
    flag: Option<&[String]>,
    service: Option<&str>,
    rack: Option<(&Source, &[String])>,
) -> Result<Decided, String> {
    if let Some(list) = flag {
        return Ok(Decided {
            list: list.to_vec(),
            source: Source::Flag,
        });
    }
    if let Some(s) = service {
        return Ok(Decided {
            list: parse_list(s)?,
            source: Source::Service,
        });
    }
    if let Some((source, list)) = rack.filter(|(_, l)| !l.is_empty()) {
        return Ok(Decided {
            list: list.to_vec(),
            source: source.clone(),
        });
    }
    Ok(Decided {
        list: vec![DEFAULT.to_string()],
        source: Source::Default,
    })
}

/// The platform an app's `BuildArch` parameter names, from `convox apps
/// params` (a `NAME VALUE` table: `BuildArch    arm64`); None when unset.
pub fn build_arch(params: &str) -> Option<&'static str> {
    params.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(char::is_whitespace)?;
        (key == "BuildArch").then(|| from_ec2_arch(value.trim()))?
    })
}

/// The one warning when a build makes several platforms: the rack's copy of
/// an `image:` (the `FROM`-only build of `convox build`, or skopeo without
/// `--all` in `convox builds import-image`) keeps one, its build node's.
pub fn rack_copy_warning(decided: &[(String, Decided)]) -> Option<String> {
    let (service, d) = decided.iter().find(|(_, d)| d.list.len() > 1)?;
    Some(format!(
        "{service} is built for {} ({}), but the rack's copy of an `image:` keeps one platform, that of the node it is copied on (a `FROM`-only build, or skopeo without --all): set the app parameter BuildArch (`convox apps params set BuildArch=arm64 -a APP`) to choose which",
        d.joined(),
        d.source
    ))
}

/// What a rack's parameters say of the nodes its services run on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RackNodes {
    /// The runtime instance types (not the build node's).
    pub types: Vec<String>,
    /// Karpenter's architectures, when Karpenter is on (`karpenter_arch`).
    pub karpenter: Vec<String>,
}

/// Read `convox rack params` as either generation prints it: one `KEY
/// VALUE` a line (the key padded to a column).
/// - v3 (convox/convox): `node_type` (comma-separated), the `type` of each
///   of `additional_node_groups_config`'s groups (JSON, printed decoded),
///   and, with `karpenter_enabled` true, `karpenter_arch` (`amd64,arm64`);
/// - gen1/gen2 (convox/rack): `InstanceType`.
///
/// The build node's type (`build_node_type`, `BuildInstance`) is left out:
/// the image runs where the services run.
pub fn rack_nodes(params: &str) -> RackNodes {
    let mut nodes = RackNodes::default();
    let mut karpenter_on = false;
    let mut karpenter_arch = Vec::new();
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect()
    };
    for line in params.lines() {
        let line = line.trim();
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (line, ""),
        };
        match key {
            "node_type" | "InstanceType" => nodes.types.extend(list(value)),
            "additional_node_groups_config" => {
                if let Ok(serde_json::Value::Array(groups)) = serde_json::from_str(value) {
                    for g in groups {
                        if let Some(t) = g.get("type").and_then(|t| t.as_str()) {
                            nodes.types.extend(list(t));
                        }
                    }
                }
            }
            "karpenter_enabled" => karpenter_on = value.eq_ignore_ascii_case("true"),
            "karpenter_arch" => karpenter_arch = list(value),
            _ => {}
        }
    }
    if karpenter_on {
        nodes.karpenter = karpenter_arch;
    }
    nodes.types.sort();
    nodes.types.dedup();
    nodes
}

/// The architectures of each instance type in `aws ec2
/// describe-instance-types` JSON.
pub fn instance_architectures(json: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("not the JSON of describe-instance-types: {e}"))?;
    let types = v
        .get("InstanceTypes")
        .and_then(|t| t.as_array())
        .ok_or("no InstanceTypes in the answer")?;
    Ok(types
        .iter()
        .filter_map(|t| {
            let name = t.get("InstanceType")?.as_str()?.to_string();
            let arches = t
                .get("ProcessorInfo")?
                .get("SupportedArchitectures")?
                .as_array()?
                .iter()
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            Some((name, arches))
        })
        .collect())
}

/// The platforms a rack's services can be scheduled on: each runtime
/// type's architectures, and Karpenter's.
pub fn rack_platforms(karpenter: &[String], types: &[(String, Vec<String>)]) -> Vec<String> {
    let mut out: Vec<String> = karpenter
        .iter()
        .chain(types.iter().flat_map(|(_, a)| a))
        .filter_map(|a| from_ec2_arch(a))
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What the registry's answer about a tag says it holds, for the skip: a
/// tag counts as up to date only when it holds every wanted platform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Held {
    /// The answer does not say (a tag listing, a HEAD): the tag is the
    /// content digest, which names the platforms.
    #[default]
    Unknown,
    /// One image, its platform not named (ECR's answer for an image: its
    /// platform is in its config, which is not fetched).
    OneImage,
    /// An index's entries, or an image's platform as `docker manifest
    /// inspect --verbose` names it.
    Platforms(Vec<String>),
}

impl Held {
    /// Does it hold every wanted platform (as far as the answer says)?
    pub fn covers(&self, wanted: &[String]) -> bool {
        match self {
            Held::Unknown => true,
            Held::OneImage => wanted.len() == 1,
            Held::Platforms(list) => wanted.iter().all(|w| list.contains(w)),
        }
    }

    /// From a manifest as the registry serves it (ECR's `imageManifest`):
    /// an index's entries, or one image.
    pub fn of_manifest(json: &str) -> Held {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            return Held::Unknown;
        };
        if v.get("manifests").is_some() {
            return crate::programs::docker::index_platforms(&v)
                .map_or(Held::Unknown, Held::Platforms);
        }
        if v.get("config").is_some() {
            return Held::OneImage;
        }
        Held::Unknown
    }

    /// In words: `linux/amd64, linux/arm64`, or `one image`.
    pub fn described(&self) -> String {
        match self {
            Held::Unknown => "platforms not said".into(),
            Held::OneImage => "one image".into(),
            Held::Platforms(l) => l.join(", "),
        }
    }
}

/// The builds' platforms in words, each set with where it came from (and
/// the services it is theirs when there are several sets); None when
/// nothing is built.
pub fn described(decided: &[(String, Decided)]) -> Option<String> {
    let mut groups: Vec<(String, String, Vec<&str>)> = Vec::new();
    for (service, p) in decided {
        let (list, source) = (p.joined(), p.source.to_string());
        match groups
            .iter_mut()
            .find(|(l, s, _)| *l == list && *s == source)
        {
            Some(g) => g.2.push(service),
            None => groups.push((list, source, vec![service])),
        }
    }
    let one = groups.len() == 1;
    let parts: Vec<String> = groups
        .iter()
        .map(|(list, source, services)| match one {
            true => format!("{list} ({source})"),
            false => format!("{list} for {} ({source})", services.join(", ")),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_tag_is_up_to_date_only_holding_every_wanted_platform() {
        let want = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let both = want(&["linux/amd64", "linux/arm64"]);
        let index = r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:a","platform":{"os":"linux","architecture":"amd64"}},{"digest":"sha256:b","platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let held = Held::of_manifest(index);
        assert_eq!(held, Held::Platforms(both.clone()));
        assert!(held.covers(&both));
        assert!(held.covers(&want(&["linux/arm64"])));
        assert!(!held.covers(&want(&["linux/arm64", "linux/riscv64"])));
        let image = r#"{"schemaVersion":2,"config":{"digest":"sha256:c"},"layers":[]}"#;
        assert_eq!(Held::of_manifest(image), Held::OneImage);
        assert!(Held::OneImage.covers(&want(&["linux/arm64"])));
        assert!(!Held::OneImage.covers(&both));
        assert_eq!(Held::of_manifest("{}"), Held::Unknown);
        assert_eq!(Held::of_manifest("not json"), Held::Unknown);
        assert!(Held::Unknown.covers(&both));
    }

    use super::*;

    #[test]
    fn lists_are_canonical_and_bad_entries_named() {
        assert_eq!(
            parse_list("linux/arm64, linux/amd64,linux/arm64").unwrap(),
            ["linux/amd64", "linux/arm64"]
        );
        assert_eq!(parse_list("arm64").unwrap(), ["linux/arm64"]);
        assert_eq!(parse_list("linux/arm64/v8").unwrap(), ["linux/arm64"]);
        assert_eq!(parse_list("linux/arm/v7").unwrap(), ["linux/arm/v7"]);
        for bad in ["", ",", "linux", "linux/amd 64", "a/b/c/d", "linux/"] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
        assert!(parse_list("linux/am$d64")
            .unwrap_err()
            .contains("`linux/am$d64`"));
    }

    #[test]
    fn the_flag_then_the_service_then_the_rack_then_amd64() {
        let flag = vec!["linux/arm64".to_string()];
        let rack = vec!["linux/amd64".to_string(), "linux/arm64".to_string()];
        let d = decide(
            Some(&flag),
            Some("linux/amd64"),
            Some((&Source::Rack("prod".into()), &rack)),
        )
        .unwrap();
        assert_eq!((d.list.clone(), d.source), (flag.clone(), Source::Flag));
        let d = decide(
            None,
            Some("linux/arm64"),
            Some((&Source::Rack("prod".into()), &rack)),
        )
        .unwrap();
        assert_eq!(d.source, Source::Service);
        let d = decide(None, None, Some((&Source::Rack("prod".into()), &rack))).unwrap();
        assert_eq!(d.joined(), "linux/amd64,linux/arm64");
        assert_eq!(d.source, Source::Rack("prod".into()));
        assert_eq!(
            build_arch("NAME         VALUE\nBuildArch    arm64\nBuildCpu     500\n"),
            Some("linux/arm64")
        );
        assert_eq!(build_arch("NAME VALUE\nBuildCpu 500\n"), None);
        // As docker normalises them.
        assert_eq!(
            parse_list("linux/arm,linux/amd64/v1,linux/i386,linux/arm64/v8,linux/armhf").unwrap(),
            ["linux/386", "linux/amd64", "linux/arm/v7", "linux/arm64"]
        );
        let d = decide(None, None, None).unwrap();
        assert_eq!(
            (d.joined(), d.source),
            ("linux/amd64".into(), Source::Default)
        );
        assert!(decide(None, Some("nonsense"), None).is_err());
    }

    #[test]
    fn described_by_set_and_source() {
        let d = |list: &[&str], source| Decided {
            list: list.iter().map(|s| s.to_string()).collect(),
            source,
        };
        let all = vec![
            ("web".to_string(), d(&["linux/amd64"], Source::Default)),
            ("api".to_string(), d(&["linux/amd64"], Source::Default)),
        ];
        assert_eq!(described(&all).unwrap(), "linux/amd64 (Convox's default)");
        let mixed = vec![
            all[0].clone(),
            ("arm".to_string(), d(&["linux/arm64"], Source::Service)),
        ];
        assert_eq!(
            described(&mixed).unwrap(),
            "linux/amd64 for web (Convox's default); linux/arm64 for arm (the service's platform:)"
        );
        assert_eq!(described(&[]), None);
    }

    #[test]
    fn rack_params_of_both_generations() {
        // convox/convox v3, as `convox rack params` prints it (padded).
        let v3 = "additional_node_groups_config  [{\"type\":\"m6g.large\",\"min_size\":1},{\"type\":\"t3.large,t3a.large\"}]\nbuild_node_type                c5.xlarge\nkarpenter_arch                 amd64,arm64\nkarpenter_enabled              false\nnode_type                      t4g.medium\n";
        let n = rack_nodes(v3);
        assert_eq!(
            n.types,
            ["m6g.large", "t3.large", "t3a.large", "t4g.medium"]
        );
        assert!(
            n.karpenter.is_empty(),
            "Karpenter off: its arch does not count"
        );
        let n = rack_nodes(&v3.replace(
            "karpenter_enabled              false",
            "karpenter_enabled              true",
        ));
        assert_eq!(n.karpenter, ["amd64", "arm64"]);
        // convox/rack gen1/gen2.
        let gen2 = "Autoscale           Yes\nBuildInstance       c5.large\nInstanceType        m6g.large\n";
        assert_eq!(rack_nodes(gen2).types, ["m6g.large"]);
    }

    #[test]
    fn instance_types_to_platforms() {
        let json = r#"{"InstanceTypes":[{"InstanceType":"m6g.large","ProcessorInfo":{"SupportedArchitectures":["arm64"]}},{"InstanceType":"t3.large","ProcessorInfo":{"SupportedArchitectures":["x86_64"]}}]}"#;
        let types = instance_architectures(json).unwrap();
        assert_eq!(rack_platforms(&[], &types[..1]), ["linux/arm64"]);
        assert_eq!(rack_platforms(&[], &types), ["linux/amd64", "linux/arm64"]);
        assert_eq!(
            rack_platforms(&["amd64".into(), "arm64".into()], &[]),
            ["linux/amd64", "linux/arm64"]
        );
        assert!(instance_architectures("{}").is_err());
    }

    #[test]
    fn ec2_architectures() {
        assert_eq!(from_ec2_arch("x86_64"), Some("linux/amd64"));
        assert_eq!(from_ec2_arch("arm64"), Some("linux/arm64"));
        assert_eq!(from_ec2_arch("i386"), None);
    }
}
