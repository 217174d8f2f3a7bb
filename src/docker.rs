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
