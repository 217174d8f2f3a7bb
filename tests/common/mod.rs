//! Test harness: run the real binary with fake `docker` and `aws` programs
//! first on PATH. The fakes record their argv (and the stdin of
//! `docker login`), answer with canned output, and fail on demand.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_convox-build-off-cluster");
pub const PASSWORD: &str = "hunter2-ecr-password-XYZ";

const FAKE: &str = r#"#!/bin/bash
# A digest that each reference (or tag) always gets, different for each.
# FAKE_DIGEST_SALT stands for an image rebuilt under the same tag.
fake_digest() { printf 'sha256:%s' "$(printf '%s' "${1##*:}$FAKE_DIGEST_SALT" | sha256sum | cut -c1-64)"; }
name=${0##*/}
# One write per call, so that calls running at once do not mix their lines.
rec=$name; for a in "$@"; do rec+=$'\x1f'"$a"; done
printf '%s\n' "$rec" >> "$FAKE_DIR/argv.log"
line="$name $*"
if [[ " $* " == *" --password-stdin "* ]]; then /bin/cat > "$FAKE_DIR/login.stdin"; fi
if [[ "$1" == build && " $* " == *" -f - "* ]]; then
  prev=; tag=; for a in "$@"; do [[ "$prev" == -t ]] && tag=${a##*:}; prev=$a; done
  /bin/cat > "$FAKE_DIR/dockerfile.$tag"
fi
# An edit saved to a file while a build runs.
if [[ -n "$FAKE_EDIT_FILE" && "$name $1" == "docker build" ]]; then printf '%s' "$FAKE_EDIT_TEXT" >> "$FAKE_EDIT_FILE"; fi
# A staged context, as docker would read it (links followed): each file
# with its content, and the mode of the run's directory above it.
if [[ "$name $1" == "docker build" && "${!#}" == */convox-build-off-cluster.* ]]; then
  prev=; tag=; for a in "$@"; do [[ "$prev" == -t ]] && tag=${a##*:}; prev=$a; done
  ctx=${!#}; run=$ctx; while [[ "${run##*/}" != convox-build-off-cluster.* ]]; do run=${run%/*}; done
  { stat -c 'run %a %U' "$run"; (cd "$ctx" && find -L . -type f -print0 2>/dev/null | sort -z | xargs -0 -r grep -H -c '' ); } > "$FAKE_DIR/context.$tag"
  (cd "$ctx" && find -L . -type f -print0 2>/dev/null | sort -z | xargs -0 -r head -c 200) > "$FAKE_DIR/context-text.$tag"
fi
# The platforms each built tag is for (its build's --platform), as the
# registry would hold them; `docker tag` gives the new tag the same.
if [[ "$name" == docker && ( "$1" == build || "$1 $2" == "buildx build" ) ]]; then
  prev=; plat=; tags=()
  for a in "$@"; do
    [[ "$prev" == --platform ]] && plat=$a
    [[ "$prev" == -t ]] && tags+=("${a##*:}")
    prev=$a
  done
  for t in "${tags[@]}"; do printf '%s' "${FAKE_WRONG_PLATFORM:-$plat}" > "$FAKE_DIR/platform.$t"; done
fi
if [[ "$name $1" == "docker tag" && -e "$FAKE_DIR/platform.${2##*:}" ]]; then
  printf '%s' "$(< "$FAKE_DIR/platform.${2##*:}")" > "$FAKE_DIR/platform.${3##*:}"
fi
for v in $FAKE_RECORD_ENV; do printf '%s %s=%s\n' "$name" "$v" "${!v}" >> "$FAKE_DIR/env.log"; done
if [[ -n "$FAKE_SLEEP" && "$line" == *"$FAKE_SLEEP"* ]]; then
  sleep 60 &
  echo $! > "$FAKE_DIR/grandchild.pid"
  echo $$ > "$FAKE_DIR/child.pid"
  wait
fi
# A barrier: each matching call waits until FAKE_BARRIER of them have
# started, so it only passes when they run at the same time.
if [[ -n "$FAKE_BARRIER" && "$line" == *"$FAKE_BARRIER_ON"* ]]; then
  : > "$FAKE_DIR/started.$$"
  for _ in $(seq 1 400); do
    n=0; for f in "$FAKE_DIR"/started.*; do n=$((n + 1)); done
    (( n >= FAKE_BARRIER )) && break
    sleep 0.05
  done
  (( n >= FAKE_BARRIER )) || { echo "fake $name: barrier not reached: the calls did not overlap" >&2; exit 1; }
fi
# Each tag a push tried; with FAKE_APPEAR_ON_PUSH the registry has it from
# then on (another run pushed it first).
if [[ "$name $1" == "docker push" ]]; then : > "$FAKE_DIR/attempted.${2##*:}"; fi
if [[ "$name $1 $2" == "docker buildx build" ]]; then
  prev=; for a in "$@"; do [[ "$prev" == -t ]] && : > "$FAKE_DIR/attempted.${a##*:}" && : > "$FAKE_DIR/pushed.${a##*:}"; prev=$a; done
fi
# A bake's definition, kept; each of its tags tried.
if [[ "$name $1 $2" == "docker buildx bake" ]]; then
  /bin/cat > "$FAKE_DIR/bake.stdin"
  for t in $(grep -o '"tags":\[[^]]*\]' "$FAKE_DIR/bake.stdin" | grep -o ':[^:"]*"' | tr -d ':"'); do
    : > "$FAKE_DIR/attempted.$t"; : > "$FAKE_DIR/pushed.$t"
  done
fi
exists() {
  [[ " $FAKE_EXISTING " == *" $1 "* ]] || { [[ -n "$FAKE_APPEAR_ON_PUSH" && -e "$FAKE_DIR/attempted.$1" ]]; }
}
fail=
if [[ -n "$FAKE_FAIL" && "$line" == *"$FAKE_FAIL"* ]]; then
  fail=1
  if [[ -n "$FAKE_FAIL_TIMES" ]]; then
    n=$(( $(/bin/cat "$FAKE_DIR/failcount" 2>/dev/null || echo 0) + 1 ))
    echo "$n" > "$FAKE_DIR/failcount"
    (( n <= FAKE_FAIL_TIMES )) || fail=
  fi
fi
if [[ -n "$fail" ]]; then
  echo "progress line before the failure"
  echo "fake $name: ${FAKE_FAIL_MSG:-failing on purpose}" >&2
  exit "${FAKE_FAIL_CODE:-1}"
fi
no_repo() {
  echo "An error occurred (RepositoryNotFoundException) when calling the $1 operation: The repository with name '$2' does not exist in the registry" >&2
  exit 254
}
case "$name $1 $2" in
  "docker buildx imagetools")
    # `imagetools create -t LIST PART…`: the index made and pushed in one.
    shift 3; [[ "$1" == -t ]] || { echo "fake: -t first" >&2; exit 1; }
    list=$2; shift 2; plats=
    for part in "$@"; do
      t=$(/bin/cat "$FAKE_DIR/digest.${part##*@}" 2>/dev/null) || { echo "no such manifest: $part" >&2; exit 1; }
      plats+="${plats:+,}$(< "$FAKE_DIR/platform.$t")"
    done
    printf '%s' "$plats" > "$FAKE_DIR/platform.${list##*:}"; : > "$FAKE_DIR/pushed.${list##*:}" ;;
  "convox rack params")
    # FAKE_RACK_PARAMS: the text `convox rack params` prints.
    [[ -n "$FAKE_RACK_PARAMS" ]] || { echo "ERROR: rack not found" >&2; exit 1; }
    printf '%s\n' "$FAKE_RACK_PARAMS" ;;
  "aws ec2 describe-instance-types")
    # As EC2 answers: a Graviton type (a `g` after the generation's digit,
    # m6g, t4g, c7gn) is arm64, any other x86_64.
    out=; take=
    for a in "$@"; do
      case "$a" in --instance-types) take=1; continue ;; --*) take= ;; esac
      [[ -n "$take" ]] || continue
      arch=x86_64; [[ "$a" =~ ^[a-z]+[0-9]+g ]] && arch=arm64
      out+="${out:+,}"'{"InstanceType":"'"$a"'","ProcessorInfo":{"SupportedArchitectures":["'"$arch"'"]}}'
    done
    echo '{"InstanceTypes":['"$out"']}' ;;
  "aws sts get-caller-identity")
    echo '{"UserId":"AIDEXAMPLE","Account":"210987654321","Arn":"arn:aws:iam::210987654321:user/ci"}' ;;
  "aws ecr describe-repositories")
    [[ -n "$FAKE_NO_REPO" ]] && no_repo DescribeRepositories "$4"
    echo '{"repositories":[{"repositoryName":"demo","repositoryUri":"123456789012.dkr.ecr.us-east-1.amazonaws.com/demo"}]}' ;;
  "aws ecr create-repository")
    echo '{"repository":{"repositoryName":"demo","repositoryUri":"123456789012.dkr.ecr.us-east-1.amazonaws.com/demo"}}' ;;
  "aws ecr batch-get-image")
    [[ -n "$FAKE_NO_REPO" ]] && no_repo BatchGetImage "$4"
    images=; failures=
    for a in "$@"; do
      [[ "$a" == imageTag=* ]] || continue
      t=${a#imageTag=}
      if exists "$t"; then
        images+="${images:+,}"'{"imageId":{"imageDigest":"'"$(fake_digest "$t")"'","imageTag":"'"$t"'"},"imageManifest":"{}"}'
      else
        failures+="${failures:+,}"'{"imageId":{"imageTag":"'"$t"'"},"failureCode":"'"${FAKE_ECR_FAILURE:-ImageNotFound}"'","failureReason":"fake reason"}'
      fi
    done
    echo '{"images":['"$images"'],"failures":['"$failures"']}' ;;
  "docker manifest inspect")
    ref=${!#}
    # A tag this fake pushed is in its registry from then on (the
    # read-back after a push sees it), unless FAKE_REGISTRY_FORGETS.
    if exists "${ref##*:}" || [[ -z "$FAKE_REGISTRY_FORGETS" && -e "$FAKE_DIR/pushed.${ref##*:}" ]]; then
      # With --verbose, docker says each image's platform: one descriptor,
      # or a list of them for an index.
      plats=linux/amd64; [[ -e "$FAKE_DIR/platform.${ref##*:}" ]] && plats=$(< "$FAKE_DIR/platform.${ref##*:}")
      desc() { local os=${1%%/*} arch=${1#*/}; echo '{"Ref": "'"$ref"'", "Descriptor": {"digest": "'"$2"'", "platform": {"os": "'"$os"'", "architecture": "'"$arch"'"}}}'; }
      if [[ "$plats" == *,* ]]; then
        out=; IFS=, read -ra ps <<< "$plats"; for p in "${ps[@]}"; do out+="${out:+,}$(desc "$p" "$(fake_digest "$ref$p")")"; done; echo "[$out]"
      else desc "$plats" "$(fake_digest "$ref")"; fi
    else echo "no such manifest: $ref" >&2; exit 1; fi ;;
  "docker image inspect")
    ref=${!#}
    if [[ " $FAKE_LOCAL " == *" ${ref##*:} "* ]]; then echo "sha256:0123"; else echo "Error: No such image: $ref" >&2; exit 1; fi ;;
  "docker pull"*)
    ref=${!#}
    if [[ " $FAKE_EXISTING " == *" ${ref##*:} "* ]]; then echo "pulled $ref"; else echo "Error response from daemon: manifest for $ref not found: manifest unknown" >&2; exit 1; fi ;;
  "docker version"*)
    [[ -n "$FAKE_VERSIONS" ]] && echo "$FAKE_VERSIONS" ;;
  "docker buildx version")
    [[ -n "$FAKE_BUILDX_VERSION" ]] && echo "$FAKE_BUILDX_VERSION" ;;
  "docker buildx inspect")
    # As buildx 0.10 and later answer: FAKE_BUILDX_INSPECT is the text, with
    # NAME replaced by the builder asked about (or `current`).
    [[ -z "$FAKE_BUILDX_INSPECT" ]] && { echo "ERROR: no builder found" >&2; exit 1; }
    printf '%s\n' "${FAKE_BUILDX_INSPECT//NAME/${3:-current}}" ;;
  "docker buildx build")
    prev=; for a in "$@"; do
      [[ "$prev" == --metadata-file ]] && printf '{"containerimage.digest":"sha256:%064d"}' 7 > "$a"
      prev=$a
    done
    echo "step 1: load build definition from Dockerfile"; echo "step 9: pushing layers done" ;;
  "docker buildx bake")
    # The targets follow `-f -`; each gets digest 8 in the metadata file.
    prev=; meta=; targets=; after=
    for a in "$@"; do
      [[ "$prev" == --metadata-file ]] && meta=$a
      [[ -n "$after" ]] && targets+="${targets:+,}\"$a\":{\"containerimage.digest\":\"sha256:$(printf '%064d' 8)\"}"
      [[ "$prev" == -f && "$a" == - ]] && after=1
      prev=$a
    done
    printf '{%s}' "$targets" > "$meta"
    echo "step 1: [web internal] load build definition"; echo "step 9: pushing layers done" ;;
  "convox env"*)
    printf '%s\n' "$FAKE_CONVOX_ENV" ;;
  "aws ecr get-login-password")
    printf '%s\n' "$FAKE_PASSWORD" ;;
  "docker build"*)
    echo "Step 1/2 : FROM scratch"; echo "Successfully built 0123456789ab" ;;
  "docker manifest create")
    # An index of the parts, each named by the digest its push printed:
    # its platforms are theirs, in the order named.
    shift 2; [[ "$1" == --insecure ]] && shift
    list=$1; shift; plats=
    for part in "$@"; do
      t=$(/bin/cat "$FAKE_DIR/digest.${part##*@}" 2>/dev/null) || { echo "no such manifest: $part" >&2; exit 1; }
      plats+="${plats:+,}$(< "$FAKE_DIR/platform.$t")"
    done
    [[ -e "$FAKE_DIR/created.${list##*:}" ]] && { echo "refusing to amend an existing manifest list with no --amend flag" >&2; exit 1; }
    printf '%s' "$plats" > "$FAKE_DIR/platform.${list##*:}"; : > "$FAKE_DIR/created.${list##*:}" ;;
  "docker manifest rm")
    [[ -e "$FAKE_DIR/created.${3##*:}" ]] || { echo "No such manifest: $3" >&2; exit 1; }
    rm -f "$FAKE_DIR/created.${3##*:}" ;;
  "docker manifest push")
    ref=${!#}
    [[ -e "$FAKE_DIR/created.${ref##*:}" ]] || { echo "No such manifest: $ref" >&2; exit 1; }
    rm -f "$FAKE_DIR/created.${ref##*:}"; : > "$FAKE_DIR/pushed.${ref##*:}"
    echo "Pushed ref ${ref%:*}@$(fake_digest "part$ref") with digest: $(fake_digest "part$ref")"
    fake_digest "$ref"; echo ;;
  "docker push"*)
    : > "$FAKE_DIR/pushed.${2##*:}"
    printf '%s' "${2##*:}" > "$FAKE_DIR/digest.$(fake_digest "$2")"
    echo "The push refers to repository [${2%:*}]"; echo "${2##*:}: digest: $(fake_digest "$2") size: 528" ;;
  "docker login"*)
    # As docker does with AWS's helper as the store: it cannot store.
    cfg=${DOCKER_CONFIG:-$HOME/.docker}/config.json
    if [[ -f "$cfg" ]] && grep -q '"credsStore": *"ecr-login"' "$cfg"; then
      echo "Error saving credentials: error storing credentials - err: exit status 1, out: \`not implemented\`" >&2; exit 1
    fi
    # docker writes the config at a login; the fake's mark keeps it JSON.
    if [[ -f "$cfg" ]]; then printf ' ' >> "$cfg"
    else mkdir -p "${cfg%/*}"; echo '{"auths":{"'"${!#}"'":{"auth":"QVdTOnB3"}}}' > "$cfg"; fi
    echo "Login Succeeded" ;;
esac
exit 0
"#;

pub struct Fakes {
    pub dir: tempfile::TempDir,
}

impl Fakes {
    /// Fakes for the named programs (`docker`, `aws`, `convox`).
    pub fn new(programs: &[&str]) -> Fakes {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).expect("bin dir");
        for p in programs {
            let path = bin.join(p);
            fs::write(&path, FAKE).expect("write fake");
            make_executable(&path);
        }
        // The directories of bash and cat hold a real docker on this machine,
        // so the system tools come through a directory of their own: a
        // program without a fake is then really missing.
        let sys = dir.path().join("sys");
        fs::create_dir(&sys).expect("sys dir");
        for tool in [
            "bash",
            "cat",
            "sh",
            "env",
            "sleep",
            "seq",
            "sha256sum",
            "cut",
            "grep",
            "tr",
            "stat",
            "find",
            "sort",
            "xargs",
            "head",
        ] {
            if let Some(p) = which_in_path(tool) {
                std::os::unix::fs::symlink(p, sys.join(tool)).expect("symlink");
            }
        }
        Fakes { dir }
    }

    pub fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// Every recorded invocation, as its argv, but the questions about
    /// docker itself (`docker version`, `docker buildx version`, `docker
    /// info`), which `probes` lists, and the registry cache's (anything
    /// naming a `…-cache` repository), which `cache_calls` lists.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.all_calls()
            .into_iter()
            .filter(|c| !is_probe(c) && !is_cache(c))
            .collect()
    }

    /// The registry cache's calls, as lines.
    pub fn cache_calls(&self) -> Vec<String> {
        self.all_calls()
            .into_iter()
            .filter(|c| is_cache(c))
            .map(|c| c.join(" "))
            .collect()
    }

    /// The questions the program asked docker about itself.
    pub fn probes(&self) -> Vec<String> {
        self.all_calls()
            .into_iter()
            .filter(|c| is_probe(c))
            .map(|c| c.join(" "))
            .collect()
    }

    /// Every recorded invocation, probes and cache calls included, as lines.
    /// The digest the fake `docker push` printed for `reference`.
    pub fn digest_of(&self, reference: &str) -> String {
        let tag = reference.rsplit_once(':').map_or(reference, |(_, t)| t);
        fs::read_dir(self.dir.path())
            .expect("fake dir")
            .filter_map(|e| e.ok())
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let d = name.strip_prefix("digest.")?.to_string();
                (fs::read_to_string(e.path()).ok()? == tag).then_some(d)
            })
            .unwrap_or_else(|| panic!("no push of {reference}"))
    }

    pub fn all_call_lines(&self) -> Vec<String> {
        self.all_calls().iter().map(|c| c.join(" ")).collect()
    }

    fn all_calls(&self) -> Vec<Vec<String>> {
        fs::read_to_string(self.dir.path().join("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\x1f').map(String::from).collect())
            .collect()
    }

    /// The invocations as space-joined lines, for readable assertions.
    pub fn call_lines(&self) -> Vec<String> {
        self.calls().iter().map(|c| c.join(" ")).collect()
    }

    pub fn login_stdin(&self) -> Option<String> {
        fs::read_to_string(self.dir.path().join("login.stdin")).ok()
    }

    /// The Dockerfile that `docker build -f -` read on stdin, for a tag.
    pub fn dockerfile(&self, tag: &str) -> Option<String> {
        fs::read_to_string(self.dir.path().join(format!("dockerfile.{tag}"))).ok()
    }

    /// The tag that `docker build` was given (`-t`) for a service's build.
    /// A staged context as the fake docker read it, links followed: `run
    /// MODE OWNER` (the run's directory), then `./PATH:LINES` per file;
    /// and the files' text.
    pub fn staged_context(&self, tag: &str) -> Option<(String, String)> {
        Some((
            fs::read_to_string(self.dir.path().join(format!("context.{tag}"))).ok()?,
            fs::read_to_string(self.dir.path().join(format!("context-text.{tag}"))).ok()?,
        ))
    }

    pub fn built_tag(&self, service: &str) -> Option<String> {
        self.calls().into_iter().find_map(|c| {
            let i = c.iter().position(|a| a == "-t")?;
            let tag = c.get(i + 1)?.rsplit(':').next()?.to_string();
            (c.get(1).is_some_and(|a| a == "build") && tag.contains(&format!("_{service}_")))
                .then_some(tag)
        })
    }

    pub fn env_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("env.log")).unwrap_or_default()
    }

    /// PATH: the fakes, then the basic system tools.
    pub fn path(&self) -> String {
        format!(
            "{}:{}",
            self.bin().display(),
            self.dir.path().join("sys").display()
        )
    }

    /// A command for the binary with only the fakes (and the basic system
    /// directories, which hold no docker or aws of their own here) on PATH.
    pub fn command(&self, cwd: &Path) -> Command {
        self.command_for(BIN, cwd)
    }

    /// Run the program in `cwd` with these arguments and variables; its
    /// output.
    pub fn run(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(cwd);
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run binary")
    }

    /// The same environment for another program (e.g. `script`).
    pub fn command_for(&self, program: &str, cwd: &Path) -> Command {
        let mut c = Command::new(program);
        c.current_dir(cwd)
            .env_clear()
            .env("PATH", self.path())
            .env("HOME", self.dir.path())
            .env("FAKE_DIR", self.dir.path())
            .env("FAKE_PASSWORD", PASSWORD)
            // A kept image on an HTTPS registry (Docker Hub) is asked
            // through a proxy that refuses at once: the fake docker
            // answers, as on a machine with no way out.
            .env("HTTPS_PROXY", format!("http://{}", refused_loopback()))
            .stdin(Stdio::null());
        c
    }
}

fn which_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// An app directory holding these files (path, text).
pub fn app_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("app");
    for (p, t) in files {
        let p = d.path().join(p);
        fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        fs::write(p, t).expect("write");
    }
    d
}

/// Is the process gone (or only a zombie waiting for its new parent)?
pub fn gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    !alive || zombie
}

/// Poll for a condition; a generous bound so a hang fails instead of
/// blocking the suite (not a timing goal).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A call of the registry cache's: one that names a `…-cache` repository,
/// but a build that only reads it (`--cache-from`); a build whose own tag
/// (`-t`) is in the cache (a stage's cache image) is one.
fn is_cache(c: &[String]) -> bool {
    if c.get(1).is_some_and(|sub| sub == "build") {
        return c
            .windows(2)
            .any(|w| w[0] == "-t" && w[1].contains("-cache:"));
    }
    c.iter()
        .any(|a| a.ends_with("-cache") || a.contains("-cache:"))
}

fn is_probe(c: &[String]) -> bool {
    let at = |i: usize| c.get(i).map(String::as_str);
    at(0) == Some("docker")
        && matches!(
            (at(1), at(2)),
            (Some("version"), _)
                | (Some("info"), _)
                | (Some("buildx"), Some("version"))
                | (Some("buildx"), Some("inspect"))
        )
}

/// Copy a fixture directory into a fresh temporary directory.
pub fn fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
        dir.path(),
    );
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// The run succeeded; its stderr (shown, with the exit code, when it did not).
pub fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\n{stderr}",
        out.status.code()
    );
    stderr
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A test that needs a missing piece: under E2E_REQUIRED=1 it fails, else it
/// says so and passes.
pub fn skip_or_fail(kind: &str, what: &str) {
    if std::env::var("E2E_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("E2E_REQUIRED=1 but {what}");
    }
    eprintln!("SKIPPED {kind}: {what} (scripts/test installs what it can)");
}

/// Is `program` a file in one of PATH's directories?
pub fn on_path(program: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| Path::new(d).join(program).is_file())
}

/// Serves `127.0.0.1:PORT` inside a network namespace (`netns`, a path such
/// as `/run/netns/NAME`) by forwarding each connection to the same port on
/// this machine's loopback: how an engine in a namespace of its own (the
/// current-engine pass, scripts/current-engine) reaches a server the test
/// started here. One thread enters the namespace (setns changes only the
/// calling thread's) and listens there; a thread left in this namespace
/// connects out. Stops when dropped.
pub struct LoopbackForwarder {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LoopbackForwarder {
    pub fn start(netns: &str, port: u16) -> std::io::Result<LoopbackForwarder> {
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsRawFd;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{mpsc, Arc};
        let ns = fs::File::open(netns)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
        let (conn_tx, conn_rx) = mpsc::channel::<TcpStream>();
        // Here, in this namespace: connect out, then copy both ways.
        std::thread::spawn(move || {
            for client in conn_rx {
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        let st = stop.clone();
        std::thread::spawn(move || {
            // SAFETY: setns on an open namespace file; it changes only
            // this thread's network namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let _ = ready_tx.send(Err(std::io::Error::last_os_error()));
                return;
            }
            let listener = match TcpListener::bind(("127.0.0.1", port))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
            {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => {
                        if c.set_nonblocking(false).is_ok() && conn_tx.send(c).is_err() {
                            return;
                        }
                    }
                    // Polled, so that a drop stops it: nothing in this
                    // namespace can connect to wake it.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            }
        });
        ready_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the forwarder did not start")))?;
        Ok(LoopbackForwarder { stop })
    }
}

impl Drop for LoopbackForwarder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The current-engine pass (`E2E_ENGINE=current`, scripts/test): docker
/// and every build talk to Debian trixie's engine in its own namespace.
pub fn current_engine() -> Option<CurrentEngine> {
    if std::env::var("E2E_ENGINE").ok().as_deref() != Some("current") {
        return None;
    }
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(CurrentEngine {
        netns: get("CURRENT_ENGINE_NETNS")?,
        buildx: get("CURRENT_BUILDX").map(PathBuf::from)?,
        socket: get("DOCKER_HOST")?.strip_prefix("unix://")?.to_string(),
    })
}

/// Where the current engine is.
pub struct CurrentEngine {
    /// Its network namespace.
    pub netns: String,
    /// Its buildx plugin (docker-buildx), for a test's DOCKER_CONFIG.
    pub buildx: PathBuf,
    /// Its socket on this machine.
    pub socket: String,
}

/// A loopback address (`127.0.0.1:PORT`) on which nothing on this machine
/// answers: this test process holds the port bound but not listening, so no
/// other program can take it and a connection is refused at once. The fake
/// registry of the command tests: a real one on 127.0.0.1:5000 (the usual
/// local registry) must not answer for it.
pub fn refused_loopback() -> &'static str {
    static ADDR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADDR.get_or_init(|| {
        // SAFETY: plain socket calls on a descriptor this function owns; the
        // descriptor is kept open for the life of the process on purpose.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "socket");
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let sa = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
            assert_eq!(libc::bind(fd, sa, len), 0, "bind");
            let mut got = len;
            assert_eq!(libc::getsockname(fd, sa, &mut got), 0, "getsockname");
            format!("127.0.0.1:{}", u16::from_be(addr.sin_port))
        }
    })
}

/// `text` with `LOCAL` standing for [`refused_loopback`].
pub fn local(text: &str) -> &'static str {
    Box::leak(text.replace("LOCAL", refused_loopback()).into_boxed_str())
}

/// QEMU's aarch64 entry in binfmt_misc (Debian's qemu-user-static, flag F),
/// so that arm64 programs run here: registered when it is not, and, on drop,
/// only what this made is undone (the entry removed, binfmt_misc unmounted).
pub struct Aarch64Emulation {
    registered: bool,
    mounted: bool,
}

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

impl Aarch64Emulation {
    /// None, saying why, when it cannot be had here.
    pub fn start() -> Option<Aarch64Emulation> {
        let conf = Path::new("/usr/lib/binfmt.d/qemu-aarch64.conf");
        if !conf.is_file() {
            skip_or_fail(
                "end-to-end test",
                "qemu-user-static is not installed (no /usr/lib/binfmt.d/qemu-aarch64.conf)",
            );
            return None;
        }
        let mut made = Aarch64Emulation {
            registered: false,
            mounted: false,
        };
        if !Path::new(BINFMT).join("register").exists() {
            let ok = Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                skip_or_fail("end-to-end test", "binfmt_misc cannot be mounted here");
                return None;
            }
            made.mounted = true;
        }
        if !Path::new(BINFMT).join("qemu-aarch64").exists() {
            let entry = fs::read(conf).expect("the binfmt entry");
            if fs::write(Path::new(BINFMT).join("register"), entry).is_err() {
                skip_or_fail(
                    "end-to-end test",
                    "QEMU's aarch64 entry cannot be registered here",
                );
                return None;
            }
            made.registered = true;
        }
        Some(made)
    }
}

impl Drop for Aarch64Emulation {
    fn drop(&mut self) {
        if self.registered {
            let _ = fs::write(Path::new(BINFMT).join("qemu-aarch64"), "-1");
        }
        if self.mounted {
            let _ = Command::new("umount").arg(BINFMT).status();
        }
    }
}

/// An arm64 busybox (`OFFCLUSTER_BUSYBOX_ARM64`, fetched by
/// scripts/install-tools), or None saying why.
pub fn arm64_busybox() -> Option<PathBuf> {
    match std::env::var("OFFCLUSTER_BUSYBOX_ARM64")
        .ok()
        .map(PathBuf::from)
    {
        Some(p) if p.is_file() => Some(p),
        _ => {
            skip_or_fail(
                "end-to-end test",
                "no arm64 busybox: OFFCLUSTER_BUSYBOX_ARM64 (scripts/install-tools fetches one)",
            );
            None
        }
    }
}

/// A test CA and a certificate it signed for `names` (rcgen): the CA in a
/// PEM file (for `SSL_CERT_FILE`), the certificate and its key as PEM and
/// DER.
pub struct TestCert {
    pub ca_file: tempfile::NamedTempFile,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

pub fn test_cert(names: &[&str]) -> TestCert {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .expect("names")
        .signed_by(&key, &issuer)
        .expect("cert");
    let ca_file = tempfile::NamedTempFile::new().expect("CA file");
    fs::write(ca_file.path(), ca_cert.pem()).expect("CA file");
    TestCert {
        ca_file,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

/// What a test server was asked, a line each.
pub type Asked = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// An HTTP proxy on a loopback port that answers every `CONNECT` with a
/// tunnel to `to`, whatever host it names (so a test reaches a server of
/// its own under a real registry's name), noting `CONNECT HOST:PORT` in
/// `log`; its `http://` address.
pub fn connect_proxy(to: std::net::SocketAddr, log: Asked) -> String {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy");
    let addr = proxy.local_addr().expect("proxy address");
    std::thread::spawn(move || {
        for s in proxy.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || tunnel(s, to, &log));
        }
    });
    format!("http://{addr}")
}

/// One tunnel: read `CONNECT`, say 200, then carry bytes both ways.
fn tunnel(client: std::net::TcpStream, to: std::net::SocketAddr, log: &Asked) {
    use std::io::{BufRead, Write};
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = std::io::BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    if let Some((request, _version)) = line.trim().rsplit_once(' ') {
        log.lock().expect("log").push(request.to_string());
    }
    while reader.read_line(&mut String::new()).unwrap_or(0) > 2 {}
    let Ok(upstream) = std::net::TcpStream::connect(to) else {
        return;
    };
    let (mut client_w, mut up_w) = (client, upstream);
    let _ = (client_w.set_nodelay(true), up_w.set_nodelay(true));
    let (Ok(mut up_r), Ok(_)) = (
        up_w.try_clone(),
        client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n"),
    ) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_r, &mut client_w);
    let _ = client_w.shutdown(std::net::Shutdown::Write);
}
