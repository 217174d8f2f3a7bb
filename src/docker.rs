//! The docker command lines this program runs.

use crate::command::Cmd;
use crate::compose::{ArgValue, BuildSpec};

/// `docker build -f DOCKERFILE -t REF [--build-arg ...] [--target T] [--platform P] --label ... CONTEXT`.
///
/// A build arg whose value came from the environment is passed by name only,
/// with its value in docker's environment, so it is in no argv.
///
/// The labels: docker's classic builder turns each `--label` into a build
/// step of its own (a container and a commit each, about a second apiece
/// here). When `dockerfile` (the Dockerfile's text) shows that they can go on
/// one `LABEL` line at its end, which is where `--label` puts them, the
/// Dockerfile is fed on stdin (`-f -`) with that line added, as
/// `{ cat Dockerfile; printf '\n%s\n' 'LABEL ...'; } | docker build -f - ...`.
pub fn build(
    spec: &BuildSpec,
    reference: &str,
    labels: &[(String, String)],
    dockerfile: Option<&str>,
) -> Cmd {
    let one_line = match (&spec.dockerfile, dockerfile) {
        (Some(path), Some(text)) if labels_can_go_last(text, spec.target.as_deref()) => {
            Some(path.clone())
        }
        _ => None,
    };
    let mut c = Cmd::new("docker").arg("build");
    if one_line.is_some() {
        c = c.args(["-f", "-"]);
    } else if let Some(d) = &spec.dockerfile {
        c = c.args(["-f", d.as_str()]);
    }
    c = c.args(["-t", reference]);
    for a in &spec.args {
        c = match &a.value {
            ArgValue::Literal(v) => c.args(["--build-arg".to_string(), format!("{}={v}", a.name)]),
            ArgValue::Secret(v) => c.args(["--build-arg", a.name.as_str()]).env(&a.name, v),
            ArgValue::Inherit => c.args(["--build-arg", a.name.as_str()]),
        };
    }
    if let Some(t) = &spec.target {
        c = c.args(["--target", t.as_str()]);
    }
    if let Some(p) = &spec.platform {
        c = c.args(["--platform", p.as_str()]);
    }
    if let Some(path) = one_line {
        return c
            .arg(spec.context.as_str())
            .stdin_file_then(path, label_line(labels));
    }
    for (k, v) in labels {
        c = c.args(["--label".to_string(), format!("{k}={v}")]);
    }
    c.arg(spec.context.as_str())
}

/// One `LABEL` instruction with every label, quoted for the Dockerfile.
pub fn label_line(labels: &[(String, String)]) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
            .replace(['\n', '\r'], " ")
    };
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("\"{}\"=\"{}\"", esc(k), esc(v)))
        .collect();
    format!("LABEL {}", pairs.join(" "))
}

/// Would a `LABEL` line at the end of this Dockerfile land where `--label`
/// puts labels (the last stage built)? Yes, unless a `--target` names an
/// earlier stage, or a parser directive changes the escape character.
pub fn labels_can_go_last(text: &str, target: Option<&str>) -> bool {
    let escape_directive = text
        .lines()
        .take_while(|l| l.trim_start().starts_with('#'))
        .any(|l| {
            let d = l
                .trim_start()
                .trim_start_matches('#')
                .trim()
                .to_ascii_lowercase();
            d.starts_with("escape")
        });
    if escape_directive {
        return false;
    }
    match target {
        None => true,
        Some(t) => last_stage_name(text).is_some_and(|n| n.eq_ignore_ascii_case(t)),
    }
}

/// The name (`AS name`) of a Dockerfile's last stage.
fn last_stage_name(text: &str) -> Option<String> {
    let mut last = None;
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim_end();
        if trimmed.trim_start().starts_with('#') {
            continue;
        }
        if let Some(cont) = trimmed.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(trimmed);
        let mut words = logical.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
            last = match rest.as_slice() {
                [_, kw, name, ..] if kw.eq_ignore_ascii_case("AS") => Some(name.to_string()),
                _ => None,
            };
        }
        logical.clear();
    }
    last
}

/// Answers whether a tag exists in a registry; `--insecure` for a
/// plain-HTTP registry on a loopback address.
/// `--verbose` makes it print the manifest's digest too.
pub fn manifest_inspect(reference: &str, insecure: bool) -> Cmd {
    let mut c = Cmd::new("docker").args(["manifest", "inspect", "--verbose"]);
    if insecure {
        c = c.arg("--insecure");
    }
    c.arg(reference)
}

/// Answers whether an image is present in the local engine.
pub fn image_present(reference: &str) -> Cmd {
    Cmd::new("docker").args(["image", "inspect", "--format", "{{.Id}}", reference])
}

/// The registry digests of a local image, as a JSON list of `REPO@sha256:…`.
pub fn repo_digests(reference: &str) -> Cmd {
    Cmd::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        reference,
    ])
}

/// A registry host that docker reaches over plain HTTP: a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name == "localhost" || name.starts_with("127.") || name == "::1"
}

pub fn tag(source: &str, target: &str) -> Cmd {
    Cmd::new("docker").args(["tag", source, target])
}

pub fn push(reference: &str) -> Cmd {
    Cmd::new("docker").args(["push", reference])
}

/// `docker login --username AWS --password-stdin HOST`: the password comes on
/// stdin, never in argv.
pub fn login(host: &str) -> Cmd {
    Cmd::new("docker").args(["login", "--username", "AWS", "--password-stdin", host])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_go_last_unless_a_target_or_escape_directive_says_otherwise() {
        let df = "FROM scratch AS build\nCOPY a /a\n\nfrom   --platform=linux/amd64 scratch   as Prod\nCOPY b /b\n";
        assert!(labels_can_go_last(df, None));
        assert!(labels_can_go_last(df, Some("prod")));
        assert!(!labels_can_go_last(df, Some("build")));
        assert!(!labels_can_go_last("# escape=`\nFROM scratch\n", None));
        assert!(!labels_can_go_last("FROM scratch\n", Some("x")));
        let cont = "FROM scratch \\\n  AS one\nFROM scratch \\\n  AS two\n";
        assert!(labels_can_go_last(cont, Some("two")));
    }

    #[test]
    fn the_label_line_quotes_what_a_dockerfile_would_read() {
        let line = label_line(&[
            (
                "org.opencontainers.image.description".into(),
                "say \"hi\" $HOME \\ x\ny".into(),
            ),
            ("k".into(), "v".into()),
        ]);
        assert_eq!(
            line,
            r#"LABEL "org.opencontainers.image.description"="say \"hi\" \$HOME \\ x y" "k"="v""#
        );
    }
}
