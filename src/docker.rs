//! The docker command lines this program runs.

use crate::command::Cmd;
use crate::compose::{ArgValue, BuildSpec};

/// `docker build -f DOCKERFILE -t REF [--build-arg ...] [--target T] --label ... CONTEXT`.
///
/// A build arg whose value came from the environment is passed by name only,
/// with its value in docker's environment, so it is in no argv.
pub fn build(spec: &BuildSpec, reference: &str, labels: &[(String, String)]) -> Cmd {
    let mut c = Cmd::new("docker").arg("build");
    if let Some(d) = &spec.dockerfile {
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
    for (k, v) in labels {
        c = c.args(["--label".to_string(), format!("{k}={v}")]);
    }
    c.arg(spec.context.as_str())
}

/// Answers whether a tag exists in a registry; `--insecure` for a
/// plain-HTTP registry on a loopback address.
pub fn manifest_inspect(reference: &str, insecure: bool) -> Cmd {
    let mut c = Cmd::new("docker").args(["manifest", "inspect"]);
    if insecure {
        c = c.arg("--insecure");
    }
    c.arg(reference)
}

/// Answers whether an image is present in the local engine.
pub fn image_present(reference: &str) -> Cmd {
    Cmd::new("docker").args(["image", "inspect", "--format", "{{.Id}}", reference])
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
