//! Asking a plain-HTTP registry (loopback, or one the engine is configured
//! to reach without TLS) whether a tag exists, without a process: the
//! request `docker manifest inspect --insecure` makes, `HEAD
//! /v2/REPOSITORY/manifests/TAG` with every manifest type accepted, over one
//! short connection. The answer counts only when it is plain: 200 (the tag
//! exists; its digest from `Docker-Content-Digest`) or 404 (it does not).
//! Anything else (a login asked for, a redirect, no answer within the time
//! limit, a reference without a port) is no answer, and the caller runs the
//! command instead. A warm run of a large app then costs one request per
//! tag, not one process per tag.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long one question may take.
const LIMIT: Duration = Duration::from_secs(5);

/// What the registry said of a tag: exists (with its digest when given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub exists: bool,
    pub digest: Option<String>,
}

/// (host:port, repository, tag) of `HOST:PORT/REPOSITORY:TAG`.
pub fn split(reference: &str) -> Option<(&str, &str, &str)> {
    let (host, rest) = reference.split_once('/')?;
    let (_, port) = host.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let (repo, tag) = rest.rsplit_once(':')?;
    (!repo.is_empty() && !tag.is_empty() && !tag.contains('/')).then_some((host, repo, tag))
}

/// Ask; None when the answer is not plain.
pub fn ask(reference: &str) -> Option<Said> {
    let (host, repo, tag) = split(reference)?;
    let addr = host.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&addr, LIMIT).ok()?;
    s.set_read_timeout(Some(LIMIT)).ok()?;
    s.set_write_timeout(Some(LIMIT)).ok()?;
    let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json";
    write!(
        s,
        "HEAD /v2/{repo}/manifests/{tag} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\nUser-Agent: convox-build-off-cluster\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    read_head(&String::from_utf8_lossy(&head))
}

/// The answer in a response's status line and headers.
pub fn read_head(head: &str) -> Option<Said> {
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let digest = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("docker-content-digest")
            .then(|| v.trim().to_string())
            .filter(|d| d.starts_with("sha256:"))
    });
    match status {
        200 => Some(Said {
            exists: true,
            digest,
        }),
        404 => Some(Said {
            exists: false,
            digest: None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_answer_counts() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.distribution.manifest.v2+json\r\nDocker-Content-Digest: sha256:abc\r\n\r\n";
        assert_eq!(
            read_head(ok),
            Some(Said {
                exists: true,
                digest: Some("sha256:abc".into())
            })
        );
        assert_eq!(
            read_head("HTTP/1.1 404 Not Found\r\n\r\n"),
            Some(Said {
                exists: false,
                digest: None
            })
        );
        for other in [
            "HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Bearer\r\n\r\n",
            "HTTP/1.1 307 Temporary Redirect\r\n\r\n",
            "garbage",
        ] {
            assert_eq!(read_head(other), None, "{other}");
        }
        assert_eq!(
            split("127.0.0.1:5000/team/app:t1"),
            Some(("127.0.0.1:5000", "team/app", "t1"))
        );
        assert_eq!(
            split("registry.local/app:t1"),
            None,
            "no port: the command decides"
        );
    }
}
