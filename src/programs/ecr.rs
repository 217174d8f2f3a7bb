//! Amazon ECR: what `--repo` names, and the aws commands that set up the
//! repository and log in.

use crate::programs::command::Cmd;
use crate::programs::reference;
use anyhow::{anyhow, bail, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repo {
    /// An ECR repository. `host` and `account` are known from a URI and
    /// unknown for a bare name.
    Ecr {
        name: String,
        host: Option<String>,
        account: Option<String>,
        region: Option<String>,
    },
    /// Any other registry's repository, e.g. `127.0.0.1:5000/demo`; no aws
    /// command runs for it.
    Other { host: String, path: String },
}

/// Read `--repo`.
pub fn parse_repo(repo: &str) -> Result<Repo> {
    let repo = repo.trim();
    if repo.is_empty() {
        bail!("--repo is empty");
    }
    if repo.contains("://") {
        let host = repo.split_once("://").map_or(repo, |(_, r)| r);
        bail!("--repo `{repo}` has a scheme; give the registry and repository without it, e.g. `{host}`");
    }
    if repo.contains(['@', ' '])
        || repo.ends_with('/')
        || repo.rsplit('/').next().is_some_and(|l| l.contains(':'))
    {
        bail!("--repo `{repo}`: give a repository without a tag or digest, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/myapp");
    }
    let (first, rest) = match repo.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (repo, None),
    };
    let is_host = first.contains(['.', ':']) || first == "localhost";
    match (is_host, rest) {
        (true, Some(path)) => {
            if let Some((account, region)) = ecr_host(first) {
                check_name(path)?;
                Ok(Repo::Ecr {
                    name: path.to_string(),
                    host: Some(first.to_string()),
                    account: Some(account),
                    region: Some(region),
                })
            } else {
                reference::check_name(first, path).map_err(|e| anyhow!("--repo: {e}"))?;
                Ok(Repo::Other {
                    host: first.to_string(),
                    path: path.to_string(),
                })
            }
        }
        (true, None) => bail!("--repo `{repo}` names a registry but no repository; add /NAME"),
        (false, _) => {
            check_name(repo)?;
            Ok(Repo::Ecr {
                name: repo.to_string(),
                host: None,
                account: None,
                region: None,
            })
        }
    }
}

/// Can a v3 rack pull from the ECR repository `name`? Its API role, which
/// its build pulls each `image:` with, reaches only `RACK/*` and `RACK-*`
/// (convox/convox `terraform/api/aws/iam.tf`), unless the rack has
/// `ecr_full_access` or `ecr_additional_policy_arn`. A warning when not.
pub fn outside_racks_repositories(rack: &str, name: &str) -> Option<String> {
    // `convox rack` may name it `org/rack`; the role uses the rack's name.
    let short = rack.rsplit('/').next().unwrap_or(rack);
    let inside = name
        .strip_prefix(short)
        .is_some_and(|rest| rest.len() > 1 && (rest.starts_with('/') || rest.starts_with('-')));
    (!inside).then(|| {
        format!(
            "--repo: the rack `{rack}` may not be able to pull from the ECR repository `{name}`: a v3 rack's API role (which its build pulls each `image:` with) reaches only `{short}/*` and `{short}-*`; use a repository such as `{short}/{name}`, or set `ecr_full_access=true` or `ecr_additional_policy_arn` on the rack (`convox rack params set`)"
        )
    })
}

/// ECR's rule for a repository name (the API's pattern
/// `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`, 2 to
/// 256 characters): lowercase letters and digits, with one `.`, `_`, `-`
/// or `/` at a time between them. The error says which character breaks it.
pub fn check_name(name: &str) -> Result<()> {
    let count = name.chars().count();
    if !(2..=256).contains(&count) {
        bail!("--repo: the ECR repository name `{name}` is {count} characters long; ECR allows 2 to 256");
    }
    let is_sep = |c: char| matches!(c, '.' | '_' | '-' | '/');
    let mut prev: Option<char> = None;
    for (i, c) in name.chars().enumerate() {
        let at = i + 1;
        if c.is_ascii_uppercase() {
            bail!(
                "--repo: ECR repository names are lowercase, and `{c}` (character {at} of `{name}`) is not; write `{}`",
                name.to_ascii_lowercase()
            );
        }
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || is_sep(c)) {
            bail!(
                "--repo: `{c}` (character {at} of `{name}`) is not allowed in an ECR repository name: only lowercase letters, digits, and `.`, `_`, `-`, `/` between them"
            );
        }
        let last = at == count;
        if is_sep(c) && (prev.is_none_or(is_sep) || last) {
            bail!(
                "--repo: `{c}` (character {at} of `{name}`) must stand between letters or digits in an ECR repository name"
            );
        }
        prev = Some(c);
    }
    Ok(())
}

/// `ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]` gives (account, region).
pub fn ecr_host(host: &str) -> Option<(String, String)> {
    let host = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (account, rest) = host.split_once('.')?;
    let region = rest
        .strip_prefix("dkr.ecr.")
        .or_else(|| rest.strip_prefix("dkr.ecr-fips."))?;
    let ok_account = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
    let ok_region = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (ok_account && ok_region).then(|| (account.to_string(), region.to_string()))
}

/// The registry host of an account's ECR in a region.
pub fn registry_host(account: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{suffix}")
}

pub fn caller_identity() -> Cmd {
    Cmd::new("aws").args(["sts", "get-caller-identity", "--output", "json"])
}

pub fn describe_repository(name: &str, region: &str) -> Cmd {
    Cmd::new("aws").args([
        "ecr",
        "describe-repositories",
        "--repository-names",
        name,
        "--region",
        region,
        "--output",
        "json",
    ])
}

pub fn create_repository(name: &str, region: &str) -> Cmd {
    Cmd::new("aws").args([
        "ecr",
        "create-repository",
        "--repository-name",
        name,
        "--region",
        region,
        "--output",
        "json",
    ])
}

/// The lifecycle policy of a cache repository: its untagged images (each
/// build moves the cache tags and leaves the old image untagged) expire
/// `days` after their push.
pub fn lifecycle_policy(days: u32) -> String {
    serde_json::json!({
        "rules": [{
            "rulePriority": 1,
            "description": format!("expire untagged cache images {days} days after their push (convox-build-off-cluster)"),
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": days,
            },
            "action": {"type": "expire"},
        }]
    })
    .to_string()
}

/// `aws ecr put-lifecycle-policy` with [`lifecycle_policy`].
pub fn put_lifecycle_policy(name: &str, region: &str, days: u32) -> Cmd {
    Cmd::new("aws").args([
        "ecr",
        "put-lifecycle-policy",
        "--repository-name",
        name,
        "--lifecycle-policy-text",
        &lifecycle_policy(days),
        "--region",
        region,
        "--output",
        "json",
    ])
}

/// Every manifest type (an image of either format, or an index of either):
/// what a registry is asked to answer with, by ECR's API and by this
/// program's own questions (`running::registry`).
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
];

/// `aws ecr batch-get-image` of these tags (at most 100, the API's limit)
/// in one repository, of another account when `account` names it.
fn batch_get(account: Option<&str>, name: &str, tags: &[&str], region: &str) -> Cmd {
    let mut c = Cmd::new("aws").args(["ecr", "batch-get-image"]);
    if let Some(a) = account {
        c = c.args(["--registry-id", a]);
    }
    c = c.args(["--repository-name", name, "--image-ids"]);
    c = c.args(tags.iter().map(|t| format!("imageTag={t}")));
    // Every manifest type: the image manifests docker pushes, so that ECR
    // answers with the stored manifest's digest, not a converted one's; and
    // lists and indexes, what a tag of several platforms is stored as.
    c.arg("--accepted-media-types")
        .args(MANIFEST_TYPES)
        .args(["--region", region, "--output", "json"])
}

/// Asks, in one call, which of these tags exist in an ECR repository. It
/// needs no `docker login`, so it can run before the repository is set up:
/// when every tag exists, nothing else is asked of AWS.
pub fn batch_get_images(name: &str, tags: &[&str], region: &str) -> Cmd {
    batch_get(None, name, tags, region)
}

/// Asks ECR's API for base images' digests: one repository of any account
/// (`--registry-id`) in one region, every tag at once. Lists and indexes
/// are accepted too, so the answer carries the stored digest, the one
/// `docker pull` records. No docker login is needed.
pub fn batch_get_base_images(account: &str, name: &str, tags: &[&str], region: &str) -> Cmd {
    batch_get(Some(account), name, tags, region)
}

/// The most tags one `batch-get-image` call may ask about.
pub const BATCH_LIMIT: usize = 100;

/// What `batch-get-image` JSON says of one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagAnswer {
    /// The tag exists, with its manifest digest when ECR gave one.
    Found(Option<String>),
    /// ECR says the tag does not exist.
    NotFound,
    /// Neither: a failure other than "not found", or no word on the tag.
    Unknown(String),
}

/// Read one tag's answer from `aws ecr batch-get-image --output json`.
pub fn batch_answer(json: &str, tag: &str) -> TagAnswer {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return TagAnswer::Unknown("the answer is not JSON".into());
    };
    let list = |key: &str| {
        v.get(key)
            .and_then(|l| l.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let is_tag = |item: &serde_json::Value| {
        item.pointer("/imageId/imageTag").and_then(|t| t.as_str()) == Some(tag)
    };
    if let Some(image) = list("images").iter().find(|i| is_tag(i)) {
        let digest = image
            .pointer("/imageId/imageDigest")
            .and_then(|d| d.as_str())
            .filter(|d| d.starts_with("sha256:"))
            .map(String::from);
        return TagAnswer::Found(digest);
    }
    match list("failures").iter().find(|f| is_tag(f)) {
        Some(f) => {
            let code = f.get("failureCode").and_then(|c| c.as_str()).unwrap_or("");
            if code == "ImageNotFound" {
                TagAnswer::NotFound
            } else {
                let reason = f
                    .get("failureReason")
                    .and_then(|r| r.as_str())
                    .unwrap_or("");
                TagAnswer::Unknown(format!("{code}: {reason}"))
            }
        }
        None => TagAnswer::Unknown("ECR said nothing of this tag".into()),
    }
}

/// The manifest ECR's `batch-get-image` answer holds for one tag (its
/// `imageManifest`, a JSON text).
pub fn batch_manifest(json: &str, tag: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get("images")?
        .as_array()?
        .iter()
        .find(|i| i.pointer("/imageId/imageTag").and_then(|t| t.as_str()) == Some(tag))?
        .get("imageManifest")?
        .as_str()
        .map(String::from)
}

/// Prints the password on stdout, which this program pipes to `docker login`.
pub fn login_password(region: &str) -> Cmd {
    Cmd::new("aws").args(["ecr", "get-login-password", "--region", region])
}

/// Did ECR refuse a push because the tag exists already in an immutable
/// repository (`imageTagMutability=IMMUTABLE`)? `tag invalid: The image tag
/// 'T' already exists in the 'R' repository and cannot be overwritten
/// because the repository is immutable.`
pub fn is_immutable_refusal(text: &str) -> bool {
    text.contains("cannot be overwritten because the repository is immutable")
}

/// Does this stderr say the repository does not exist?
pub fn is_repository_not_found(stderr: &str) -> bool {
    stderr.contains("RepositoryNotFoundException")
}

/// Did `create-repository` fail only because the repository is there
/// (another run may have created it in the meantime)?
pub fn is_already_there(stderr: &str) -> bool {
    stderr.contains("RepositoryAlreadyExistsException")
}

/// What to do about a failed `create-repository`, when its stderr says:
/// a refused permission, or a name ECR refuses (which `check_name` should
/// have caught first).
pub fn create_hint(stderr: &str) -> Option<String> {
    if stderr.contains("AccessDenied") || stderr.contains("not authorized") {
        Some("the credentials need ecr:CreateRepository, or create the repository first".into())
    } else if stderr.contains("InvalidParameterException") {
        Some("ECR refuses this repository name; see the message above".into())
    } else {
        None
    }
}

/// The account in `aws sts get-caller-identity --output json`.
pub fn parse_account(json: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| anyhow!("cannot read the JSON of aws sts get-caller-identity: {e}"))?;
    v.get("Account")
        .and_then(|a| a.as_str())
        .map(String::from)
        .ok_or_else(|| anyhow!("aws sts get-caller-identity printed no Account"))
}

/// The repository URI in describe-repositories' or create-repository's JSON.
pub fn parse_repository_uri(json: &str) -> Result<String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| anyhow!("cannot read the JSON of aws ecr: {e}"))?;
    let repo = v
        .get("repositories")
        .and_then(|r| r.get(0))
        .or_else(|| v.get("repository"));
    repo.and_then(|r| r.get("repositoryUri"))
        .and_then(|u| u.as_str())
        .map(String::from)
        .ok_or_else(|| anyhow!("aws ecr printed no repositoryUri"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_batch_answer_tells_each_tag_apart() {
        let json = r#"{"images":[{"imageId":{"imageDigest":"sha256:aa","imageTag":"web"},"imageManifest":"{}"}],
            "failures":[{"imageId":{"imageTag":"api"},"failureCode":"ImageNotFound","failureReason":"Requested image not found"},
                        {"imageId":{"imageTag":"jobs"},"failureCode":"KmsError","failureReason":"key disabled"}]}"#;
        assert_eq!(
            batch_answer(json, "web"),
            TagAnswer::Found(Some("sha256:aa".into()))
        );
        assert_eq!(batch_answer(json, "api"), TagAnswer::NotFound);
        assert_eq!(
            batch_answer(json, "jobs"),
            TagAnswer::Unknown("KmsError: key disabled".into())
        );
        assert!(matches!(batch_answer(json, "other"), TagAnswer::Unknown(_)));
        assert!(matches!(batch_answer("oops", "web"), TagAnswer::Unknown(_)));
    }

    #[test]
    fn a_batch_names_every_tag_and_accepts_the_manifests_docker_pushes() {
        // Indexes too: a tag of several platforms is one index.
        let line = batch_get_images("demo", &["a", "b"], "us-east-1").to_string();
        assert_eq!(
            line,
            "aws ecr batch-get-image --repository-name demo --image-ids imageTag=a imageTag=b \
--accepted-media-types application/vnd.docker.distribution.manifest.v2+json \
application/vnd.oci.image.manifest.v1+json application/vnd.docker.distribution.manifest.list.v2+json \
application/vnd.oci.image.index.v1+json --region us-east-1 --output json"
        );
    }

    #[test]
    fn reads_the_three_kinds_of_repo() {
        assert_eq!(
            parse_repo("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app").unwrap(),
            Repo::Ecr {
                name: "team/app".into(),
                host: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com".into()),
                account: Some("123456789012".into()),
                region: Some("us-east-1".into()),
            }
        );
        assert_eq!(
            parse_repo("myapp").unwrap(),
            Repo::Ecr {
                name: "myapp".into(),
                host: None,
                account: None,
                region: None
            }
        );
        assert!(matches!(
            parse_repo("team/myapp").unwrap(),
            Repo::Ecr { .. }
        ));
        assert_eq!(
            parse_repo("127.0.0.1:5000/demo").unwrap(),
            Repo::Other {
                host: "127.0.0.1:5000".into(),
                path: "demo".into()
            }
        );
        assert!(matches!(
            parse_repo("ghcr.io/org/app").unwrap(),
            Repo::Other { .. }
        ));
        assert!(matches!(
            parse_repo("localhost/app").unwrap(),
            Repo::Other { .. }
        ));
    }

    #[test]
    fn rejects_tags_digests_and_bare_hosts() {
        for bad in ["", "ghcr.io", "a/b:tag", "a@sha256:00", "x/"] {
            assert!(parse_repo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ecr_names_follow_ecrs_rule_and_say_which_character_is_wrong() {
        for good in ["ab", "team/app", "a.b_c-d/e1", "0x", &"a".repeat(256)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let err = |n: &str| check_name(n).unwrap_err().to_string();
        assert!(err("Co-App").contains("`C` (character 1 of `Co-App`)"));
        assert!(err("Co-App").contains("write `co-app`"));
        assert!(err("a+b").contains("`+` (character 2"));
        for bad in ["-ab", "ab-", "a//b", "a._b", "/ab"] {
            assert!(err(bad).contains("must stand between"), "{bad}");
        }
        assert!(err("a").contains("1 characters long"));
        assert!(err(&"a".repeat(257)).contains("257 characters"));
        // Both forms of --repo are checked; another registry's path by
        // docker's grammar (lowercase too: `docker build -t` refuses
        // `ghcr.io/Org/App`).
        assert!(parse_repo("123456789012.dkr.ecr.us-east-1.amazonaws.com/Co-App").is_err());
        assert!(parse_repo("Co-App").is_err());
        assert!(parse_repo("ghcr.io/org/app__x").is_ok());
        let e = parse_repo("ghcr.io/Org/App").unwrap_err().to_string();
        assert!(e.contains("`Org` is not a repository name's part"), "{e}");
    }

    #[test]
    fn a_repository_outside_the_racks_names_is_warned_about() {
        for inside in ["prod/myapp", "prod-myapp", "prod/team/app"] {
            assert_eq!(outside_racks_repositories("prod", inside), None, "{inside}");
            assert_eq!(
                outside_racks_repositories("acme/prod", inside),
                None,
                "{inside}"
            );
        }
        for outside in [
            "myapp",
            "production/myapp",
            "prod",
            "prod/",
            "prodx-app",
            "other/prod-app",
        ] {
            let w = outside_racks_repositories("prod", outside).unwrap_or_default();
            assert!(
                w.contains("reaches only `prod/*` and `prod-*`"),
                "{outside}: {w}"
            );
            assert!(w.contains("ecr_full_access"), "{w}");
        }
    }

    #[test]
    fn ecr_hosts_fips_and_china() {
        assert_eq!(
            ecr_host("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"),
            Some(("123456789012".into(), "us-gov-west-1".into()))
        );
        assert!(ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").is_some());
        assert_eq!(ecr_host("12345.dkr.ecr.us-east-1.amazonaws.com"), None);
        assert_eq!(
            registry_host("1", "cn-north-1"),
            "1.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn parses_aws_json() {
        assert_eq!(
            parse_account(r#"{"UserId":"x","Account":"123456789012","Arn":"a"}"#).unwrap(),
            "123456789012"
        );
        assert!(parse_account("not json").is_err());
        let d = r#"{"repositories":[{"repositoryUri":"1.dkr.ecr.r.amazonaws.com/a"}]}"#;
        assert_eq!(
            parse_repository_uri(d).unwrap(),
            "1.dkr.ecr.r.amazonaws.com/a"
        );
        let c = r#"{"repository":{"repositoryUri":"u"}}"#;
        assert_eq!(parse_repository_uri(c).unwrap(), "u");
        assert!(is_repository_not_found(
            "An error occurred (RepositoryNotFoundException) when calling ..."
        ));
    }
}
