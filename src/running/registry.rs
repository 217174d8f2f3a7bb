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
//!
//! When no digest is wanted (neither `--json` nor `--pin-digest`), one
//! request answers for every tag of a repository: `GET
//! /v2/REPOSITORY/tags/list` (the registry API's tag listing, its `Link`
//! pages followed). A tag listed exists; one not listed does not; a 404
//! says the repository does not exist (no tag does). Any other answer is
//! none, and each tag is asked as above.

use crate::programs::docker::{index_platforms, platform_name};
use crate::programs::ecr::MANIFEST_TYPES;
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

/// One request over a short connection: the response's head and, for a
/// GET, its whole body (at most `MAX_BODY`).
fn request(host: &str, method: &str, path: &str, accept: &str) -> Option<(String, Vec<u8>)> {
    let addr = host.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&addr, LIMIT).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(LIMIT)).ok()?;
    s.set_write_timeout(Some(LIMIT)).ok()?;
    exchange(&mut s, host, method, path, &format!("Accept: {accept}\r\n"))
}

/// One request on a connection made for it (`Connection: close`), with
/// `headers` (each ending in CRLF): the response's head and its body, read
/// as far as its `Content-Length`, its last chunk or the connection's end
/// (none for a HEAD); None when it is cut short or over `MAX_BODY`.
pub(crate) fn exchange<S: Read + Write>(
    s: &mut S,
    host: &str,
    method: &str,
    path: &str,
    headers: &str,
) -> Option<(String, Vec<u8>)> {
    // One write: a request in pieces waits on the peer's delayed ACK
    // (Nagle), about 40 ms a hop.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}User-Agent: convox-build-off-cluster\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).ok()?;
    s.flush().ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    // Where the head ends and how the body is framed, found once.
    let mut head_end: Option<(usize, Framing)> = None;
    loop {
        if head_end.is_none() {
            head_end = got.windows(4).position(|w| w == b"\r\n\r\n").map(|at| {
                let head = String::from_utf8_lossy(&got[..at + 2]);
                (at, Framing::of(method, &head))
            });
        }
        if let Some((at, framing)) = &head_end {
            if framing.complete(&got[at + 4..]) {
                break;
            }
        }
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            // A TLS peer that closes without saying so: the body is whole
            // only if its length says so (checked below).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(_) => return None,
        };
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() > MAX_BODY {
            return None;
        }
    }
    let (at, framing) = head_end?;
    let body = &got[at + 4..];
    (framing == Framing::ToEnd || framing.complete(body)).then(|| {
        let head = String::from_utf8_lossy(&got[..at + 2]).into_owned();
        (head, body.to_vec())
    })
}

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A `HEAD`'s: no body.
    Empty,
    /// `Content-Length` (None: a length that is not a number).
    Length(Option<usize>),
    /// `Transfer-Encoding: chunked`: at its last chunk.
    Chunked,
    /// Neither: at the connection's end.
    ToEnd,
}

impl Framing {
    fn of(method: &str, head: &str) -> Framing {
        if method == "HEAD" {
            Framing::Empty
        } else if is_chunked(head) {
            Framing::Chunked
        } else if let Some(n) = header_of(head, "content-length") {
            Framing::Length(n.parse().ok())
        } else {
            Framing::ToEnd
        }
    }

    /// Is `body` all of it?
    fn complete(self, body: &[u8]) -> bool {
        match self {
            Framing::Empty => true,
            Framing::Length(n) => n.is_some_and(|n| body.len() >= n),
            // The last chunk first (cheap), then the whole walk once.
            Framing::Chunked => body.ends_with(b"0\r\n\r\n") && dechunk(body).is_some(),
            Framing::ToEnd => false,
        }
    }
}

/// Is a response's body sent in chunks?
fn is_chunked(head: &str) -> bool {
    header_of(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

/// The JSON body of a plain `200`; None for any other answer.
pub(crate) fn ok_json(head: &str, body: &[u8]) -> Option<serde_json::Value> {
    (status_of(head)? == 200).then_some(())?;
    json_body(head, body)
}

/// The most a response may hold (a tag list of ~200,000 tags).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Ask; None when the answer is not plain.
pub fn ask(reference: &str) -> Option<Said> {
    let (host, repo, tag) = split(reference)?;
    let accept = MANIFEST_TYPES.join(", ");
    let (head, _) = request(
        host,
        "HEAD",
        &format!("/v2/{repo}/manifests/{tag}"),
        &accept,
    )?;
    read_head(&head)
}

/// The platforms the registry holds under a reference, read as `docker
/// manifest inspect --verbose` reads them (sorted): an index's entries, or
/// an image's config (`os`, `architecture`, `variant`), one more request.
/// None when an answer is not a plain 200 (the caller runs the command).
pub fn platforms(reference: &str) -> Option<Vec<String>> {
    let (host, repo, tag) = split(reference)?;
    read_platforms(repo, tag, |path, accept| {
        let (head, body) = request(host, "GET", path, accept)?;
        ok_json(&head, &body)
    })
}

/// The platforms of `repo:tag` (or `repo@digest`), with `get` answering a
/// GET of a path (and its Accept) with the JSON of a plain 200.
pub(crate) fn read_platforms(
    repo: &str,
    tag: &str,
    get: impl Fn(&str, &str) -> Option<serde_json::Value>,
) -> Option<Vec<String>> {
    let v = get(
        &format!("/v2/{repo}/manifests/{tag}"),
        &MANIFEST_TYPES.join(", "),
    )?;
    if v.get("manifests").is_some() {
        return index_platforms(&v);
    }
    let config = v.pointer("/config/digest")?.as_str()?;
    let c = get(&format!("/v2/{repo}/blobs/{config}"), "*/*")?;
    Some(vec![platform_name(&c)?])
}

/// A response's body as JSON (chunked or not).
fn json_body(head: &str, body: &[u8]) -> Option<serde_json::Value> {
    let body = if is_chunked(head) {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    serde_json::from_slice(&body).ok()
}

/// Every tag of `HOST:PORT/REPOSITORY` (as [`split`] gives them), all its
/// pages; None when an answer is not plain.
pub fn list_tags(host: &str, repo: &str) -> Option<Vec<String>> {
    let mut tags = Vec::new();
    let mut path = format!("/v2/{repo}/tags/list");
    for _ in 0..1000 {
        let (head, body) = request(host, "GET", &path, "application/json")?;
        match read_list(&head, &body)? {
            Listed::Missing => return Some(Vec::new()),
            Listed::Page { tags: page, next } => {
                tags.extend(page);
                match next {
                    Some(next) => path = next,
                    None => return Some(tags),
                }
            }
        }
    }
    None
}

/// One page of a tag list.
#[derive(Debug, PartialEq, Eq)]
pub enum Listed {
    /// 404: no such repository.
    Missing,
    /// 200: its tags, and the path of the next page (`Link: <…>; rel="next"`).
    Page {
        tags: Vec<String>,
        next: Option<String>,
    },
}

/// The page in a tag list's response (the body de-chunked when sent in
/// chunks); None when it is not a plain answer.
pub fn read_list(head: &str, body: &[u8]) -> Option<Listed> {
    let status = status_of(head)?;
    let header = |name: &str| header_of(head, name);
    match status {
        404 => return Some(Listed::Missing),
        200 => {}
        _ => return None,
    }
    let v = json_body(head, body)?;
    let tags = match v.get("tags")? {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|t| t.as_str().map(String::from))
            .collect::<Option<Vec<String>>>()?,
        _ => return None,
    };
    let next = match header("link") {
        None => None,
        Some(link) => Some(next_page(&link)?),
    };
    Some(Listed::Page { tags, next })
}

/// The path in `<PATH>; rel="next"`; None for any other link (an absolute
/// address is not followed).
fn next_page(link: &str) -> Option<String> {
    let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
    let rel_next = params
        .split(';')
        .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
    (rel_next && target.starts_with("/v2/")).then(|| target.to_string())
}

/// A chunked body, joined.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let at = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&body[..at]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[at + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// The answer in a response's status line and headers.
pub fn read_head(head: &str) -> Option<Said> {
    let status = status_of(head)?;
    let digest = header_of(head, "docker-content-digest").filter(|d| d.starts_with("sha256:"));
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

/// The status code in a response head's first line.
pub(crate) fn status_of(head: &str) -> Option<u16> {
    head.split("\r\n")
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The first header `name` (any case) of a response head, trimmed.
pub(crate) fn header_of(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that answers with `answer` and then fails every read
    /// (so a read past the end of a framed body shows as None).
    struct Peer {
        answer: std::io::Cursor<Vec<u8>>,
    }

    impl Read for Peer {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.answer.read(buf)? {
                0 => Err(std::io::ErrorKind::TimedOut.into()),
                n => Ok(n),
            }
        }
    }

    impl Write for Peer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn answered(method: &str, answer: &str) -> Option<(String, Vec<u8>)> {
        let mut peer = Peer {
            answer: std::io::Cursor::new(answer.as_bytes().to_vec()),
        };
        exchange(&mut peer, "r", method, "/", "")
    }

    #[test]
    fn a_body_is_read_as_far_as_its_framing_says_and_no_further() {
        let body = |a: Option<(String, Vec<u8>)>| a.map(|(_, b)| String::from_utf8(b).unwrap());
        let sized = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(body(answered("GET", sized)).as_deref(), Some("{}"));
        assert_eq!(
            body(answered(
                "HEAD",
                "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
            ))
            .as_deref(),
            Some("")
        );
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(
            body(answered("GET", chunked)).as_deref(),
            Some("2\r\n{}\r\n0\r\n\r\n")
        );
        // Cut short, or a length that is no number: no answer.
        assert_eq!(
            answered("GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}"),
            None
        );
        assert_eq!(
            answered("GET", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}"),
            None
        );
    }

    #[test]
    fn a_tag_list_is_read_whole_chunked_or_not_and_its_next_page_followed() {
        let page = |head: &str, body: &str| read_list(head, body.as_bytes());
        assert_eq!(
            page(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json",
                r#"{"name":"w8","tags":["a","b"]}"#
            ),
            Some(Listed::Page {
                tags: vec!["a".into(), "b".into()],
                next: None
            })
        );
        assert_eq!(
            page(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nLink: </v2/w8/tags/list?last=b&n=2>; rel=\"next\"",
                "f\r\n{\"name\":\"w8\",\"t\r\n10\r\nags\":[\"a\",\"b\"]}\n\r\n0\r\n\r\n"
            ),
            Some(Listed::Page {
                tags: vec!["a".into(), "b".into()],
                next: Some("/v2/w8/tags/list?last=b&n=2".into())
            })
        );
        assert_eq!(
            page("HTTP/1.1 200 OK", r#"{"name":"w8","tags":null}"#),
            Some(Listed::Page {
                tags: vec![],
                next: None
            })
        );
        assert_eq!(page("HTTP/1.1 404 Not Found", ""), Some(Listed::Missing));
        for (head, body) in [
            ("HTTP/1.1 401 Unauthorized", ""),
            ("HTTP/1.1 200 OK", "not json"),
            ("HTTP/1.1 200 OK", r#"{"tags":[1]}"#),
            (
                "HTTP/1.1 200 OK\r\nLink: <https://elsewhere/v2/x>; rel=\"next\"",
                r#"{"tags":[]}"#,
            ),
        ] {
            assert_eq!(page(head, body), None, "{head} {body}");
        }
    }

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
