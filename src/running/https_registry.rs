//! A kept image's registry over HTTPS (Docker Hub, ghcr.io, quay.io,
//! public.ecr.aws, …), asked for the image's digest with a `HEAD`, as
//! `docker manifest inspect` asks with a `GET`, and without a process.
//! Docker Hub counts each manifest `GET` against the pull limit of the
//! runner's address, and not a `HEAD` (docs.docker.com, "Docker Hub usage
//! and limits"); with the digest, `running::kept_cache` answers for an
//! image seen before.
//!
//! The rules, each docker's own:
//! - The reference, as docker normalises it (distribution/reference,
//!   `ParseNormalizedNamed`): no host is `docker.io`, reached at
//!   `registry-1.docker.io`; a one-part name there is `library/NAME`; no
//!   tag is `latest`; `@sha256:…` names the manifest itself.
//! - Trust: the system's roots, as Go's `crypto/x509` reads them
//!   (`SSL_CERT_FILE`, `SSL_CERT_DIR`, the distribution's bundle). A host
//!   with its own folder in `/etc/docker/certs.d` (its own CA, or a client
//!   certificate: docker/docker `registry.ReadCertsDirectory`) is docker's
//!   to ask.
//! - Proxy: `HTTPS_PROXY` (or `https_proxy`) as `http://HOST:PORT`, through
//!   a `CONNECT` tunnel, unless `NO_PROXY` (or `no_proxy`) names the host
//!   (Go's `httpproxy`: `*`; a name matches itself and its subdomains, a
//!   leading `.` its subdomains only; an entry's `:PORT` must match). A proxy
//!   with a login or of another scheme is docker's to use.
//! - Authentication: none. A `401` with a `Bearer` challenge (the registry
//!   token spec, distribution `docs/spec/auth/token.md`) is answered with an
//!   anonymous token from its `https` realm, for the challenge's scope (else
//!   `repository:REPO:pull`); any other challenge is no answer. A private
//!   ECR registry (`*.dkr.ecr.*`) takes no anonymous question and is not
//!   asked.
//!
//! Anything but a plain answer (a `200`, with a `sha256:`
//! `Docker-Content-Digest` for a `HEAD`) is none, and the caller runs
//! `docker manifest inspect`, which has the user's logins. Every connection
//! and read ends by one deadline.

use super::registry::{exchange, header_of, ok_json, read_platforms, status_of};
use crate::programs::ecr::MANIFEST_TYPES;
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A kept image, located: where its registry is and what to ask it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The registry as the reference names it (`docker.io`, `ghcr.io`,
    /// `quay.io:8443`).
    pub registry: String,
    /// Where it is reached: `HOST:PORT`.
    pub endpoint: String,
    pub repo: String,
    /// A tag, or `sha256:…`.
    pub reference: String,
}

/// Where a reference's registry is and what to ask it; None for what is
/// not asked here (a private ECR registry, a name docker would refuse).
pub fn locate(image: &str) -> Option<Image> {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let (registry, path) = match crate::inputs::bases::host_of(name) {
        Some(host) => (host, &name[host.len() + 1..]),
        None => ("docker.io", name),
    };
    let (repo, tag) = match path.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (path, "latest"),
    };
    let hub = registry == "docker.io" || registry == "index.docker.io";
    let repo = if hub && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo.to_string()
    };
    let reference = digest.unwrap_or(tag).to_string();
    let host = registry.split(':').next().unwrap_or(registry);
    let private_ecr = host.contains(".dkr.ecr.");
    let valid =
        plain_host(registry) && plain_path(&repo) && plain_reference(&reference) && !private_ecr;
    let endpoint = match (hub, registry.contains(':')) {
        (true, _) => "registry-1.docker.io:443".to_string(),
        (false, true) => registry.to_string(),
        (false, false) => format!("{registry}:443"),
    };
    valid.then(|| Image {
        registry: registry.to_string(),
        endpoint,
        repo,
        reference,
    })
}

/// A registry as docker names one: a DNS name (letters, digits, `.-`) and
/// an optional `:PORT`.
fn plain_host(registry: &str) -> bool {
    let (name, port) = match registry.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (registry, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    name_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
}

/// A repository path docker accepts (lower case, digits, `._-/`).
fn plain_path(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a `sha256:` digest.
fn plain_reference(r: &str) -> bool {
    if let Some(hex) = r.strip_prefix("sha256:") {
        return hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    !r.is_empty()
        && r.len() <= 128
        && !r.starts_with(['.', '-'])
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// What the registry said: the manifest's digest, and the token that
/// opened it (for the `GET` that may follow).
#[derive(Debug, Clone)]
pub struct Answer {
    pub digest: String,
    token: Option<String>,
}

/// The digest of a located image: a `HEAD` (anonymous, then with a token
/// when a `Bearer` challenge asks for one).
pub fn digest(img: &Image, deadline: Instant) -> Option<Answer> {
    let path = format!("/v2/{}/manifests/{}", img.repo, img.reference);
    let accept = format!("Accept: {}\r\n", MANIFEST_TYPES.join(", "));
    let (head, _) = send(&img.endpoint, "HEAD", &path, &accept, deadline)?;
    let (head, token) = match status_of(&head)? {
        401 => {
            let token = token_for(&head, &img.repo, deadline)?;
            let auth = format!("{accept}Authorization: Bearer {token}\r\n");
            (
                send(&img.endpoint, "HEAD", &path, &auth, deadline)?.0,
                Some(token),
            )
        }
        _ => (head, None),
    };
    (status_of(&head)? == 200).then_some(())?;
    let digest = header_of(&head, "docker-content-digest")
        .filter(|d| d.starts_with("sha256:") && plain_reference(d))?;
    Some(Answer { digest, token })
}

/// The platforms of the manifest a [`digest`] answer named, read by its
/// digest (so what is read is what the cache files under it): an index's
/// entries, or an image's config (a blob, which Docker Hub serves by a
/// redirect to its CDN: followed once, without the token).
pub fn platforms(img: &Image, answer: &Answer, deadline: Instant) -> Option<Vec<String>> {
    let auth = answer
        .token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    read_platforms(&img.repo, &answer.digest, |path, accept| {
        let accept = format!("Accept: {accept}\r\n");
        let (head, body) = send(
            &img.endpoint,
            "GET",
            path,
            &format!("{accept}{auth}"),
            deadline,
        )?;
        let (head, body) = match status_of(&head)? {
            301 | 302 | 303 | 307 | 308 => {
                let (endpoint, path) = https_url(&header_of(&head, "location")?)?;
                send(&endpoint, "GET", &path, &accept, deadline)?
            }
            _ => (head, body),
        };
        ok_json(&head, &body)
    })
}

/// An anonymous token for a `401`'s `Bearer` challenge.
fn token_for(head: &str, repo: &str, deadline: Instant) -> Option<String> {
    let challenge = header_of(head, "www-authenticate")?;
    let params = challenge
        .strip_prefix("Bearer ")
        .or_else(|| challenge.strip_prefix("bearer "))?;
    let param = |name: &str| challenge_param(params, name);
    let (endpoint, path) = https_url(&param("realm")?)?;
    let scope = param("scope").unwrap_or_else(|| format!("repository:{repo}:pull"));
    let mut query = format!("scope={}", encode(&scope));
    if let Some(service) = param("service") {
        query = format!("service={}&{query}", encode(&service));
    }
    let join = if path.contains('?') { '&' } else { '?' };
    let path = format!("{path}{join}{query}");
    let (head, body) = send(&endpoint, "GET", &path, "", deadline)?;
    let v = ok_json(&head, &body)?;
    let token = v.get("token").or_else(|| v.get("access_token"))?.as_str()?;
    let plain = !token.is_empty()
        && token.len() <= 16 * 1024
        && token.bytes().all(|b| b.is_ascii_graphic());
    plain.then(|| token.to_string())
}

/// One `name="value"` (or `name=value`) of a challenge's parameters.
fn challenge_param(params: &str, name: &str) -> Option<String> {
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let (v, n) = quoted.split_once('"')?;
                (v, n)
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value.to_string());
        }
        rest = next.trim_start_matches([',', ' ']);
    }
    None
}

/// `https://HOST[:PORT]/PATH` as (`HOST:PORT`, `/PATH`); None for any
/// other scheme, or a host or path that is not plain.
fn https_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://")?;
    let (host, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], rest[at..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    let plain_host = !host.is_empty()
        && !host.contains('@')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b));
    let plain_path = path.bytes().all(|b| b.is_ascii_graphic());
    let endpoint = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:443")
    };
    (plain_host && plain_path).then_some((endpoint, path))
}

/// A query value, percent-encoded (all but the unreserved characters).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request to `HOST:PORT` over TLS (through the proxy when one is
/// set for it).
fn send(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &str,
    deadline: Instant,
) -> Option<(String, Vec<u8>)> {
    let (host, _) = endpoint.rsplit_once(':')?;
    let tcp = match proxy_for(endpoint)? {
        Some(proxy) => tunnel(&proxy, endpoint, deadline)?,
        None => connect(endpoint, deadline)?,
    };
    let name = ServerName::try_from(host.to_string()).ok()?;
    let conn = rustls::ClientConnection::new(config()?, name).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let shown = endpoint.strip_suffix(":443").unwrap_or(endpoint);
    exchange(&mut tls, shown, method, path, headers)
}

/// The time left before the deadline, when some is.
fn left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// A connection to `HOST:PORT`, its reads and writes bounded by the
/// deadline.
fn connect(endpoint: &str, deadline: Instant) -> Option<TcpStream> {
    let addr = resolve(endpoint, deadline)?;
    let s = TcpStream::connect_timeout(&addr, left(deadline)?).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(left(deadline)?)).ok()?;
    s.set_write_timeout(Some(left(deadline)?)).ok()?;
    Some(s)
}

/// The first address of `HOST:PORT`, looked up on a thread of its own so
/// that a resolver that does not answer ends by the deadline too (the
/// thread is left to finish alone).
fn resolve(endpoint: &str, deadline: Instant) -> Option<std::net::SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = endpoint.to_string();
    std::thread::spawn(move || {
        let first = name.to_socket_addrs().ok().and_then(|mut a| a.next());
        let _ = tx.send(first);
    });
    rx.recv_timeout(left(deadline)?).ok()?
}

/// A `CONNECT` tunnel to `endpoint` through an HTTP proxy.
fn tunnel(proxy: &str, endpoint: &str, deadline: Instant) -> Option<TcpStream> {
    let mut s = connect(proxy, deadline)?;
    let request = format!(
        "CONNECT {endpoint} HTTP/1.1\r\nHost: {endpoint}\r\nUser-Agent: convox-build-off-cluster\r\n\r\n"
    );
    s.write_all(request.as_bytes()).ok()?;
    // Read the answer's head byte by byte: what follows it is the tunnel's.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
        if head.len() > 16 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&head);
    (status_of(&head)? == 200).then_some(s)
}

/// The proxy for `HOST:PORT`: Some(None) to connect directly,
/// Some(Some(PROXY_HOST:PORT)) through it; None when the proxy set is not
/// one this asks through (a login, another scheme).
fn proxy_for(endpoint: &str) -> Option<Option<String>> {
    let var = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let Some(proxy) = var(["HTTPS_PROXY", "https_proxy"]) else {
        return Some(None);
    };
    if var(["NO_PROXY", "no_proxy"]).is_some_and(|list| bypassed(&list, endpoint)) {
        return Some(None);
    }
    let rest = proxy.strip_prefix("http://").unwrap_or(&proxy);
    let hostport = rest.split('/').next().unwrap_or(rest);
    if rest.contains("://") || hostport.contains('@') || hostport.is_empty() {
        return None;
    }
    Some(Some(if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    }))
}

/// Does a `NO_PROXY` list name `HOST:PORT`? (Go's `httpproxy` rules.)
pub fn bypassed(list: &str, endpoint: &str) -> bool {
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, ""));
    let host = host.to_ascii_lowercase();
    list.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.to_ascii_lowercase();
        let (name, want_port) = match entry.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (n, Some(p)),
            _ => (entry.as_str(), None),
        };
        if name.is_empty() || want_port.is_some_and(|p| p != port) {
            return false;
        }
        match name.strip_prefix('.') {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == name || host.ends_with(&format!(".{name}")),
        }
    })
}

/// The TLS set-up, made once: the system's roots (none found: no TLS
/// question is asked, and docker answers).
fn config() -> Option<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return None;
            }
            // ring: it builds for both musl targets with the C compiler
            // blake3 already needs (aws-lc-rs wants more). rustls 0.23.48
            // deprecates it for lacking post-quantum key exchange, which
            // guards secrets recorded today; what crosses here is an
            // anonymous question about a public manifest.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(config))
        })
        .clone()
}

/// Is a registry docker's own to ask (a folder of its own in
/// `/etc/docker/certs.d`)?
pub fn has_own_certs(registry: &str) -> bool {
    std::path::Path::new("/etc/docker/certs.d")
        .join(registry)
        .exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_located_as_docker_normalises_them() {
        let at = |i: &str| locate(i).map(|l| (l.endpoint, l.repo, l.reference));
        let own = |e: &str, r: &str, t: &str| Some((e.into(), r.into(), t.into()));
        assert_eq!(
            at("redis"),
            own("registry-1.docker.io:443", "library/redis", "latest")
        );
        assert_eq!(
            at("convox/redis:7.2"),
            own("registry-1.docker.io:443", "convox/redis", "7.2")
        );
        assert_eq!(
            at("docker.io/nginx:1"),
            own("registry-1.docker.io:443", "library/nginx", "1")
        );
        assert_eq!(at("ghcr.io/o/app:v1"), own("ghcr.io:443", "o/app", "v1"));
        assert_eq!(
            at("quay.io:8443/o/app"),
            own("quay.io:8443", "o/app", "latest")
        );
        let hex = "a".repeat(64);
        assert_eq!(
            at(&format!("redis@sha256:{hex}")),
            own(
                "registry-1.docker.io:443",
                "library/redis",
                &format!("sha256:{hex}")
            )
        );
        // Not asked here: private ECR, a name docker refuses, an injected line.
        assert_eq!(at("1.dkr.ecr.us-east-1.amazonaws.com/app:1"), None);
        assert_eq!(at("Redis"), None);
        assert_eq!(at("redis:1\r\nX: y"), None);
        assert_eq!(at("ghcr.io\r\nX:1/o/app"), None);
        assert_eq!(at("ghcr.io:0/o/app"), None);
    }

    #[test]
    fn a_bearer_challenges_parameters_are_read_quoted_or_not() {
        let p = r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/redis:pull""#;
        assert_eq!(
            challenge_param(p, "realm").as_deref(),
            Some("https://auth.docker.io/token")
        );
        assert_eq!(
            challenge_param(p, "scope").as_deref(),
            Some("repository:library/redis:pull")
        );
        assert_eq!(
            challenge_param("realm=x,service=y", "service").as_deref(),
            Some("y")
        );
        assert_eq!(challenge_param(p, "error"), None);
        assert_eq!(
            https_url("https://auth.docker.io/token"),
            Some(("auth.docker.io:443".into(), "/token".into()))
        );
        assert_eq!(https_url("http://auth.docker.io/token"), None);
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }

    #[test]
    fn no_proxy_follows_gos_rules() {
        assert!(bypassed("*", "ghcr.io:443"));
        assert!(bypassed("example.com", "example.com:443"));
        assert!(bypassed("example.com", "r.example.com:443"));
        assert!(!bypassed(".example.com", "example.com:443"));
        assert!(bypassed(".example.com", "r.example.com:443"));
        assert!(!bypassed("ample.com", "example.com:443"));
        assert!(bypassed("a.io:443, b.io", "a.io:443"));
        assert!(!bypassed("a.io:8443", "a.io:443"));
    }
}
