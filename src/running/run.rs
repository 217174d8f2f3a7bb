//! Executing a plan: the one place that starts processes. Each command's
//! output is streamed to stderr with a `[service]` prefix; a failure carries
//! the command line and the tail of its stderr.

use crate::programs::command::Cmd;
use crate::programs::ecr;
use crate::running::interrupt;
use anyhow::{anyhow, bail, Result};
use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader};

/// How many lines of a failed command's output an error shows.
const TAIL_LINES: usize = 20;

/// A command that failed: its command line, how it ended, and the tail of
/// what it printed.
#[derive(Debug)]
pub struct CmdError {
    pub cmdline: String,
    pub status: String,
    pub tail: Vec<String>,
    pub hint: Option<String>,
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command failed ({}): {}", self.status, self.cmdline)?;
        if !self.tail.is_empty() {
            write!(f, "\n  its last output:")?;
            for l in &self.tail {
                write!(f, "\n  | {l}")?;
            }
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CmdError {}

/// Options for running.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Echo every command line before it runs.
    pub verbose: bool,
    /// Only errors and the summary.
    pub quiet: bool,
    /// Build and push even what the registry has.
    pub force: bool,
    /// How many builds run at once.
    pub jobs: u16,
    /// The registry's digest of each image is wanted (`--json`,
    /// `--pin-digest`): each tag is asked on its own, as a listing gives
    /// none.
    pub registry_digests: bool,
}

/// How many builds run at once unless `--jobs` says: the number of CPUs, at
/// least 4 and at most 8.
pub fn default_jobs() -> u16 {
    jobs_for_cpus(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A build runs in the docker daemon, and this process only waits on it; the
/// daemon itself spends much of a build waiting (sending the context, layer
/// commits, the registry), so even a 2-CPU machine finishes sooner with 4
/// builds at once (see the README's benchmark: 2 at once took 1.5x as long on
/// 2 CPUs). More than 8 at once only contend for the disk.
pub fn jobs_for_cpus(cpus: usize) -> u16 {
    u16::try_from(cpus.clamp(4, 8)).unwrap_or(4)
}

pub(crate) fn log(line: &str) {
    crate::running::progress::line(line);
}

fn spawn_error(cmd: &Cmd, e: &std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow!(
            "cannot run `{}`: it is not on PATH (command: {cmd}); install it or fix PATH",
            cmd.program()
        )
    } else {
        anyhow!("cannot run `{cmd}`: {e}")
    }
}

pub(crate) fn tail_of(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(TAIL_LINES);
    lines[skip..].iter().map(|l| l.to_string()).collect()
}

fn status_text(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    }
}

/// The command in its own process group, with its stdin, capturing stdout
/// and stderr, its exit status left to the caller (shown under `-v`).
fn captured(cmd: &Cmd, opts: RunOptions) -> Result<duct::Expression> {
    if opts.verbose {
        log(&format!("+ {cmd}"));
    }
    Ok(with_stdin(cmd, interrupt::own_group(cmd.to_duct()))?
        .stdout_capture()
        .stderr_capture()
        .unchecked())
}

/// Run and capture stdout and stderr (for aws JSON).
pub fn capture(cmd: &Cmd, opts: RunOptions) -> Result<std::process::Output> {
    wait_for(cmd, &captured(cmd, opts)?)
}

/// Run and capture, but give up after `limit`: None when it did not finish
/// in time (its process group is killed) or could not start.
pub fn capture_within(
    cmd: &Cmd,
    opts: RunOptions,
    limit: std::time::Duration,
) -> Option<std::process::Output> {
    let expr = captured(cmd, opts).ok()?;
    let handle = interrupt::spawn(&cmd.to_string(), || expr.start(), |h| h.pids()).ok()?;
    let out = match handle.wait_timeout(limit) {
        Ok(Some(out)) => Some(out.clone()),
        _ => {
            // The whole group: its own children (a credential helper) too.
            interrupt::kill_group_of(&handle.pids());
            let _ = handle.kill();
            None
        }
    };
    interrupt::forget(&handle.pids());
    out
}

/// `capture_within`, when the command succeeded: its stdout.
pub fn stdout_within(cmd: &Cmd, opts: RunOptions, limit: std::time::Duration) -> Option<String> {
    capture_within(cmd, opts, limit)
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The command's own stdin (e.g. a Dockerfile), else none at all.
fn with_stdin(cmd: &Cmd, expr: duct::Expression) -> Result<duct::Expression> {
    match cmd.stdin_bytes() {
        Ok(Some(bytes)) => Ok(expr.stdin_bytes(bytes)),
        Ok(None) => Ok(expr.stdin_null()),
        Err(e) => Err(anyhow!("cannot read the input of `{cmd}`: {e}")),
    }
}

/// Start under the interrupt handler's eye and wait for the output.
fn wait_for(cmd: &Cmd, expr: &duct::Expression) -> Result<std::process::Output> {
    let handle = interrupt::spawn(&cmd.to_string(), || expr.start(), |h| h.pids())
        .map_err(|e| spawn_error(cmd, &e))?;
    let out = handle.wait().cloned();
    interrupt::forget(&handle.pids());
    out.map_err(|e| anyhow!("waiting for `{cmd}`: {e}"))
}

pub(crate) fn failed(cmd: &Cmd, out: &std::process::Output, hint: Option<String>) -> anyhow::Error {
    let tail = tail_of(&String::from_utf8_lossy(&out.stderr));
    let hint = hint.or_else(|| hint_for(&tail));
    anyhow::Error::new(CmdError {
        cmdline: cmd.to_string(),
        status: status_text(out.status),
        tail,
        hint,
    })
}

/// What to do about a failure that docker or a registry explains.
fn hint_for(tail: &[String]) -> Option<String> {
    let text = tail.join("\n");
    let has = |needle: &str| text.contains(needle);
    if has("Cannot connect to the Docker daemon") || has("error during connect") {
        Some("the docker daemon is not reachable: start it, or point DOCKER_HOST at it".into())
    } else if has("name unknown") || has("NAME_UNKNOWN") || has("repository name not known") {
        Some("the repository does not exist in that registry; create it first (for an ECR repository this program does)".into())
    } else if has("denied") || has("unauthorized") || has("no basic auth credentials") {
        Some("not logged in to the registry, or no permission to push to this repository".into())
    } else {
        None
    }
}

/// A push failure that another attempt will not fix.
fn is_permanent(tail: &[String]) -> bool {
    let text = tail.join("\n");
    [
        "denied",
        "unauthorized",
        "no basic auth credentials",
        "name unknown",
        "NAME_UNKNOWN",
        "repository name not known",
        "does not exist locally",
        "An image does not exist",
        "invalid reference format",
        "Cannot connect to the Docker daemon",
        "cannot be overwritten because the repository is immutable",
        // `docker manifest push` into a registry that does not mount.
        "error mounting",
    ]
    .iter()
    .any(|n| text.contains(n))
}

/// The digest in `docker push`'s last lines (`TAG: digest: sha256:… size:
/// N`), or the one `docker manifest push` prints alone last (after a line
/// per part it copied, each naming the part's digest).
pub fn pushed_digest(tail: &[String]) -> Option<String> {
    let is_digest = |d: &str| d.starts_with("sha256:") && d.len() == 71;
    tail.iter().rev().find_map(|l| {
        let l = l.trim();
        if is_digest(l) {
            return Some(l.to_string());
        }
        let (_, rest) = l.split_once("digest: ")?;
        let d = rest.split_whitespace().next()?;
        is_digest(d).then(|| d.to_string())
    })
}

/// Waits before each retry of a push.
pub const PUSH_BACKOFF: [std::time::Duration; 3] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
];

/// Push, retrying a transient failure up to three times (after 1 s, 2 s and
/// 4 s). A permanent failure (denied, unknown repository) is not retried.
/// Returns the image digest that docker reports, when it does.
pub fn push(cmd: &Cmd, prefix: &str, opts: RunOptions) -> Result<Option<String>> {
    let mut attempt = 0;
    loop {
        if interrupt::cancelled() {
            bail!("`{cmd}` not started: another step failed");
        }
        let err = match stream(cmd, prefix, opts) {
            Ok(tail) => return Ok(pushed_digest(&tail)),
            Err(e) => e,
        };
        let retry = match err.downcast_ref::<CmdError>() {
            Some(c) => !is_permanent(&c.tail),
            None => false,
        };
        let Some(wait) = PUSH_BACKOFF.get(attempt).filter(|_| retry) else {
            return Err(err);
        };
        attempt += 1;
        log(&format!(
            "[{prefix}] push failed (attempt {attempt} of {}); retrying in {} s",
            PUSH_BACKOFF.len() + 1,
            wait.as_secs()
        ));
        std::thread::sleep(*wait);
    }
}

/// Run and require success, returning stdout.
pub fn check(cmd: &Cmd, opts: RunOptions, hint: Option<&str>) -> Result<String> {
    succeeded(cmd, &capture(cmd, opts)?, hint)
}

/// A finished command's stdout, when it succeeded; else the failure.
fn succeeded(cmd: &Cmd, out: &std::process::Output, hint: Option<&str>) -> Result<String> {
    if !out.status.success() {
        return Err(failed(cmd, out, hint.map(String::from)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`check`], given up after `limit` (its process group killed): a
/// question about the rack or its nodes, which a hung CLI must not turn
/// into a hung run.
pub fn check_within(
    cmd: &Cmd,
    opts: RunOptions,
    hint: Option<&str>,
    limit: std::time::Duration,
) -> Result<String> {
    let Some(out) = capture_within(cmd, opts, limit) else {
        bail!(
            "`{cmd}` did not answer within {} s (or could not start){}",
            limit.as_secs(),
            hint.map(|h| format!("; {h}")).unwrap_or_default()
        );
    };
    succeeded(cmd, &out, hint)
}

/// Run with stdout and stderr streamed to our stderr, each line prefixed;
/// returns the last lines.
pub fn stream(cmd: &Cmd, prefix: &str, opts: RunOptions) -> Result<Vec<String>> {
    if opts.verbose {
        log(&format!("[{prefix}] + {cmd}"));
    }
    let expr = with_stdin(cmd, interrupt::own_group(cmd.to_duct()))?
        .stderr_to_stdout()
        .unchecked();
    let reader = interrupt::spawn(&cmd.to_string(), || expr.reader(), |r| r.pids())
        .map_err(|e| spawn_error(cmd, &e))?;
    let mut lines = BufReader::new(&reader);
    // What the child prints may hold a secret value of its environment
    // (BuildKit shows a `RUN` step with its ARGs substituted): masked.
    let secrets: Vec<&str> = cmd
        .secret_values()
        .into_iter()
        .filter(|v| v.chars().count() >= MASK_MIN)
        .collect();
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(anyhow!("reading the output of `{cmd}`: {e}")),
        }
        let text = String::from_utf8_lossy(&buf);
        for line in text.split(['\r', '\n']).filter(|l| !l.trim().is_empty()) {
            let line = mask(line, &secrets);
            crate::running::progress::output(prefix, &line);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let out = reader
        .try_wait()
        .map_err(|e| anyhow!("waiting for `{cmd}`: {e}"))?;
    interrupt::forget(&reader.pids());
    match out {
        Some(o) if o.status.success() => Ok(tail.into_iter().collect()),
        Some(o) => {
            let tail: Vec<String> = tail.into_iter().collect();
            Err(anyhow::Error::new(CmdError {
                cmdline: cmd.to_string(),
                status: status_text(o.status),
                hint: hint_for(&tail),
                tail,
            }))
        }
        None => Err(anyhow!("`{cmd}` closed its output but did not exit")),
    }
}

/// The shortest secret value masked in a child's output (a shorter one
/// would mask common words).
pub const MASK_MIN: usize = 4;

/// `line` with each of `secrets` replaced by `***`.
pub fn mask(line: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .fold(line.to_string(), |l, s| l.replace(s, "***"))
}

/// Log in to ECR: the password that `aws ecr get-login-password` prints goes
/// straight to `docker login --password-stdin`; it is never an argument,
/// never printed, and scrubbed from any error.
/// Log in, all at once, to each registry that a password serves (a
/// credential helper serves the others, which get nothing): each host
/// logged in to, with what its login gave.
pub fn log_in_all(
    logins: &[&crate::plan::login::Login],
    opts: RunOptions,
) -> Vec<(String, Result<()>)> {
    use crate::plan::login::LoginHow;
    std::thread::scope(|s| {
        let handles: Vec<_> = logins
            .iter()
            .filter_map(|l| match &l.how {
                LoginHow::Password { password, login } => Some((
                    l.host.clone(),
                    s.spawn(move || self::login(password, login, opts)),
                )),
                LoginHow::Helper { .. } => None,
            })
            .collect();
        handles
            .into_iter()
            .map(|(host, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("internal error: a login panicked")));
                (host, r)
            })
            .collect()
    })
}

pub fn login(password_cmd: &Cmd, login_cmd: &Cmd, opts: RunOptions) -> Result<()> {
    let out = capture(password_cmd, opts)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("ExpiredToken") || stderr.contains("expired") {
            Some(
                "the AWS credentials have expired; renew them (e.g. aws sso login) and retry"
                    .into(),
            )
        } else if stderr.contains("Unable to locate credentials") {
            Some("no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".into())
        } else {
            None
        };
        return Err(failed(password_cmd, &out, hint));
    }
    let password = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if password.is_empty() {
        bail!("`{password_cmd}` printed no password");
    }
    if opts.verbose {
        log(&format!("+ {password_cmd} | {login_cmd}"));
    }
    let expr = interrupt::own_group(login_cmd.to_duct())
        .stdin_bytes(password.as_bytes())
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    let result = wait_for(login_cmd, &expr)?;
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr).replace(&password, "***");
        return Err(anyhow::Error::new(CmdError {
            cmdline: login_cmd.to_string(),
            status: status_text(result.status),
            tail: tail_of(&stderr),
            hint: None,
        }));
    }
    Ok(())
}

/// `aws sts get-caller-identity`: the account id for a bare ECR name.
pub fn account_id(opts: RunOptions) -> Result<String> {
    let cmd = ecr::caller_identity();
    let json = check(
        &cmd,
        opts,
        Some("check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID)"),
    )?;
    ecr::parse_account(&json)
}

/// Is `program` on PATH? Named with a hint when not.
pub fn require_program(program: &str, why: &str) -> Result<()> {
    which::which(program).map(drop).map_err(|_| {
        anyhow!("`{program}` is not on PATH; it is needed {why}. Install it or fix PATH")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_masked_in_what_a_child_prints() {
        assert_eq!(
            mask(
                "#5 [2/2] RUN echo \"production-xyz\" > /node_env",
                &["production-xyz"]
            ),
            "#5 [2/2] RUN echo \"***\" > /node_env"
        );
        let cmd = crate::programs::command::Cmd::new("docker")
            .env("TOKEN", "t0ken")
            .env_shown("DOCKER_BUILDKIT", "1");
        assert_eq!(cmd.secret_values(), ["t0ken"]);
    }

    #[test]
    fn default_jobs_are_the_cpus_between_4_and_8() {
        assert_eq!(jobs_for_cpus(1), 4);
        assert_eq!(jobs_for_cpus(2), 4);
        assert_eq!(jobs_for_cpus(6), 6);
        assert_eq!(jobs_for_cpus(64), 8);
    }
}
