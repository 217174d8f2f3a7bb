//! A kept image on an HTTPS registry (Docker Hub) is asked for its digest
//! with a `HEAD`, and an unchanged digest costs no `GET`: the real binary,
//! a fake `docker`, and a fake Docker Hub over TLS (its names,
//! `registry-1.docker.io` and `auth.docker.io`, under a test CA given by
//! `SSL_CERT_FILE`) reached through a `CONNECT` proxy (`HTTPS_PROXY`), as
//! a runner behind a proxy reaches the real one. The fake answers as Docker
//! Hub does (distribution's token spec): a `401` with a `Bearer`
//! challenge, an anonymous token from its realm, then the answer.

mod common;

use common::{fixture, text, Fakes};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;

/// The one image `convox/redis:latest` holds: linux/amd64 only.
const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":500,"platform":{"architecture":"amd64","os":"linux"}}]}"#;

/// The other form: one image (linux/amd64), its platform in its config,
/// a blob that Docker Hub serves by a redirect to its CDN.
const CONFIG: &str =
    r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

/// The image manifest naming [`CONFIG`] (by its digest, put in for
/// `CONFIG_DIGEST`).
const IMAGE: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"CONFIG_DIGEST","size":80},"layers":[]}"#;

/// Where the fake CDN serves the config blob.
const CDN_PATH: &str = "/registry-v2/docker/registry/v2/blobs/sha256/config/data?verify=1";

/// What the fake hub serves under `convox/redis:latest`.
#[derive(Clone)]
struct Served {
    manifest: String,
    digest: String,
    media_type: &'static str,
    config_digest: String,
}

impl Served {
    fn index() -> Served {
        Served {
            manifest: INDEX.to_string(),
            digest: format!("sha256:{}", sha256_hex(INDEX.as_bytes())),
            media_type: "application/vnd.oci.image.index.v1+json",
            config_digest: String::new(),
        }
    }

    fn image() -> Served {
        let config_digest = format!("sha256:{}", sha256_hex(CONFIG.as_bytes()));
        let manifest = IMAGE.replace("CONFIG_DIGEST", &config_digest);
        Served {
            digest: format!("sha256:{}", sha256_hex(manifest.as_bytes())),
            manifest,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            config_digest,
        }
    }
}

/// What the fake hub and its proxy were asked, a line each:
/// `CONNECT host:port`, or `METHOD PATH [bearer]`.
type Log = common::Asked;

/// A fake Docker Hub on a loopback port, and a proxy that tunnels any
/// `CONNECT` to it; the CA file that trusts it.
struct Hub {
    proxy: String,
    ca: tempfile::NamedTempFile,
    log: Log,
}

impl Hub {
    fn start(served: Served) -> Hub {
        let cert = common::test_cert(&[
            "registry-1.docker.io",
            "auth.docker.io",
            "production.cloudflare.docker.com",
        ]);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            #[allow(deprecated)]
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone())),
        )
        .unwrap();
        let log: Log = Arc::default();
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let hub_addr = hub.local_addr().unwrap();
        let (config, hub_log) = (Arc::new(config), log.clone());
        std::thread::spawn(move || {
            for s in hub.incoming().flatten() {
                let (config, log, served) = (config.clone(), hub_log.clone(), served.clone());
                std::thread::spawn(move || serve(s, config, &log, &served));
            }
        });
        Hub {
            proxy: common::connect_proxy(hub_addr, log.clone()),
            ca: cert.ca_file,
            log,
        }
    }

    /// What was asked since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// The fake hub: one request per connection, answered as Docker Hub does.
fn serve(s: TcpStream, config: Arc<rustls::ServerConfig>, log: &Log, served: &Served) {
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, s);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tls.read_exact(&mut byte).is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let mut first = head.split_whitespace();
    let (method, path) = (first.next().unwrap(), first.next().unwrap());
    let host = head
        .lines()
        .find_map(|l| l.strip_prefix("Host: "))
        .unwrap_or("");
    let bearer = head
        .lines()
        .find_map(|l| l.strip_prefix("Authorization: Bearer "));
    log.lock().unwrap().push(format!(
        "{method} {host}{path}{}",
        bearer.map(|t| format!(" [{t}]")).unwrap_or_default()
    ));
    let token_path = "/token?service=registry.docker.io&scope=repository%3Aconvox%2Fredis%3Apull";
    let (digest, manifest) = (&served.digest, &served.manifest);
    let by_tag = path == "/v2/convox/redis/manifests/latest";
    let by_digest = path == format!("/v2/convox/redis/manifests/{digest}");
    let config_blob = path == format!("/v2/convox/redis/blobs/{}", served.config_digest);
    let (status, headers, body): (&str, String, &str) = match (host, bearer) {
        ("auth.docker.io", None) if path == token_path => (
            "200 OK",
            "Content-Type: application/json\r\n".into(),
            r#"{"token":"anon-1","expires_in":300}"#,
        ),
        ("registry-1.docker.io", Some("anon-1")) if by_tag || by_digest => {
            let h = format!(
                "Content-Type: {}\r\nDocker-Content-Digest: {digest}\r\n",
                served.media_type
            );
            ("200 OK", h, manifest.as_str())
        }
        ("registry-1.docker.io", Some("anon-1")) if config_blob => (
            "307 Temporary Redirect",
            format!("Location: https://production.cloudflare.docker.com{CDN_PATH}\r\n"),
            "",
        ),
        ("production.cloudflare.docker.com", None) if path == CDN_PATH => {
            ("200 OK", "Content-Type: application/octet-stream\r\n".into(), CONFIG)
        }
        ("registry-1.docker.io", None) => (
            "401 Unauthorized",
            "WWW-Authenticate: Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:convox/redis:pull\"\r\n".into(),
            "{}",
        ),
        _ => ("404 Not Found", String::new(), "{}"),
    };
    let len = body.len();
    let body = if method == "HEAD" { "" } else { body };
    let _ = write!(
        tls,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {len}\r\nConnection: close\r\n\r\n{body}"
    );
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// The demo, in a fresh copy (its file as `edit` leaves it) with a fresh
/// fake docker, run for linux/arm64 against the fake hub (its proxy and
/// CA), the kept-image cache in `cache`, then `more` variables (a later one
/// wins).
fn run_demo(
    hub: &Hub,
    cache: &Path,
    more: &[(&str, &str)],
    edit: impl FnOnce(&Path),
) -> (Fakes, std::process::Output) {
    let (fakes, dir) = (Fakes::new(&["docker"]), fixture("demo"));
    edit(&dir.path().join("docker-compose.convox.yml"));
    let repo = format!("{}/demo", common::refused_loopback());
    let args = [
        "--app",
        "demo",
        "--gitsha",
        "abc123",
        "--repo",
        &repo,
        "--platform",
        "linux/arm64",
    ];
    let mut env = vec![
        ("XDG_CACHE_HOME", cache.to_str().unwrap()),
        ("DOCKER_BUILDKIT", "1"),
        ("FAKE_VERSIONS", "20.10.24|24.0.7|linux/amd64"),
        ("HTTPS_PROXY", hub.proxy.as_str()),
        ("SSL_CERT_FILE", hub.ca.path().to_str().unwrap()),
    ];
    env.extend_from_slice(more);
    let out = fakes.run(dir.path(), &args, &env);
    (fakes, out)
}

/// Did the run ask docker for the kept image (`convox/redis`, pinned or
/// not)?
fn asked_docker(fakes: &Fakes) -> bool {
    fakes
        .call_lines()
        .iter()
        .any(|l| l.starts_with("docker manifest inspect --verbose convox/redis"))
}

#[test]
fn a_kept_image_on_docker_hub_is_asked_with_a_head_and_an_unchanged_digest_costs_no_get() {
    let served = Served::index();
    let digest = served.digest.clone();
    let hub = Hub::start(served);
    let cache = tempfile::tempdir().unwrap();
    let as_is = |_: &Path| {};
    let warning = "warning: service `redis` keeps image convox/redis, which offers linux/amd64 and not linux/arm64";
    let hub_lines = [
        "CONNECT registry-1.docker.io:443".to_string(),
        "HEAD registry-1.docker.io/v2/convox/redis/manifests/latest".into(),
        "CONNECT auth.docker.io:443".into(),
        "GET auth.docker.io/token?service=registry.docker.io&scope=repository%3Aconvox%2Fredis%3Apull".into(),
        "CONNECT registry-1.docker.io:443".into(),
        "HEAD registry-1.docker.io/v2/convox/redis/manifests/latest [anon-1]".into(),
    ];

    // First run: HEAD, token, HEAD, then the manifest by its digest.
    let (fakes, out) = run_demo(&hub, cache.path(), &[], as_is);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(warning), "{stderr}");
    let mut first = hub_lines.to_vec();
    first.extend([
        "CONNECT registry-1.docker.io:443".into(),
        format!("GET registry-1.docker.io/v2/convox/redis/manifests/{digest} [anon-1]"),
    ]);
    assert_eq!(hub.take(), first);
    assert!(!asked_docker(&fakes), "answered without docker");

    // Second run, the digest unchanged: the HEADs only, no GET, no docker.
    let (fakes, out) = run_demo(&hub, cache.path(), &[], as_is);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(warning), "{stderr}");
    assert_eq!(hub.take(), hub_lines.to_vec());
    assert!(!asked_docker(&fakes));

    // Pinned to a digest whose platforms are remembered: nothing asked.
    let pin = |file: &Path| {
        let written = std::fs::read_to_string(file).unwrap();
        let pinned = written.replace(
            "image: convox/redis",
            &format!("image: convox/redis@{digest}"),
        );
        assert_ne!(pinned, written);
        std::fs::write(file, pinned).unwrap();
    };
    let (fakes, out) = run_demo(&hub, cache.path(), &[], pin);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "keeps image convox/redis@{digest}, which offers linux/amd64 and not linux/arm64"
        )),
        "{stderr}"
    );
    assert!(hub.take().is_empty());
    assert!(!asked_docker(&fakes));

    // A registry that will not answer anonymously (no proxy to reach it
    // here): docker is asked, with the user's logins.
    let refused = format!("http://{}", common::refused_loopback());
    let more = [
        ("HTTPS_PROXY", refused.as_str()),
        ("FAKE_EXISTING", "convox/redis"),
    ];
    let (fakes, out) = run_demo(&hub, cache.path(), &more, as_is);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(asked_docker(&fakes));
    assert!(hub.take().is_empty());
}

/// SHA-256 of bytes, in hex (the `sha256sum` on PATH does it).
fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A single-platform image on Docker Hub: its platform is in its config,
/// a blob that Docker Hub serves by a redirect to its CDN; the redirect is
/// followed, without the token (another host), and docker is not asked.
#[test]
fn a_single_images_config_is_read_through_docker_hubs_redirect_without_the_token() {
    let served = Served::image();
    let (digest, config_digest) = (served.digest.clone(), served.config_digest.clone());
    let hub = Hub::start(served);
    let cache = tempfile::tempdir().unwrap();
    let (fakes, out) = run_demo(&hub, cache.path(), &[], |_| {});
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("keeps image convox/redis, which offers linux/amd64 and not linux/arm64"),
        "{stderr}"
    );
    let asked = hub.take();
    let last_six = &asked[asked.len().saturating_sub(6)..];
    assert_eq!(
        last_six,
        [
            "CONNECT registry-1.docker.io:443".to_string(),
            format!("GET registry-1.docker.io/v2/convox/redis/manifests/{digest} [anon-1]"),
            "CONNECT registry-1.docker.io:443".into(),
            format!("GET registry-1.docker.io/v2/convox/redis/blobs/{config_digest} [anon-1]"),
            "CONNECT production.cloudflare.docker.com:443".into(),
            format!("GET production.cloudflare.docker.com{CDN_PATH}"),
        ]
    );
    assert!(!asked_docker(&fakes));
}
