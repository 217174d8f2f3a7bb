//! Docker's reference grammar (distribution/reference, `reference.go`), for
//! what the user gives as a registry host or a repository path: what `docker
//! build -t` and `docker push` would accept, checked before any build.
//!
//! - A host is `domain[:port]`: domain components of letters, digits and
//!   inner `-`, joined by `.`, or a bracketed IPv6 address; the port is
//!   1 to 65535 (the grammar says digits; no socket has a port above that).
//!   No scheme (`http://`), no path, no space.
//! - A repository path is components joined by `/`, each lowercase letters
//!   and digits with one separator at a time between them: `.`, `_`, `__`,
//!   or any run of `-`.
//! - The whole name (host and path) is at most 255 characters.

/// Check a registry host; the error says what is wrong (the caller names
/// the option).
pub fn check_host(host: &str) -> Result<(), String> {
    if let Some((scheme, _)) = host.split_once("://") {
        return Err(format!(
            "`{host}` has a scheme (`{scheme}://`); give the host alone, e.g. `{}`",
            host[scheme.len() + 3..].split('/').next().unwrap_or("")
        ));
    }
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if let Some(c) = host.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{host}` holds {c:?}; a host holds no space"));
    }
    if host.contains('/') {
        return Err(format!("`{host}` holds a `/`; give the host alone"));
    }
    let (domain, port) = split_port(host);
    if let Some(port) = port {
        check_port(host, port)?;
    }
    if let Some(v6) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{host}`: `{v6}` is not an IPv6 address"));
        }
        return Ok(());
    }
    for part in domain.split('.') {
        let ok = !part.is_empty()
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !part.starts_with('-')
            && !part.ends_with('-');
        if !ok {
            return Err(format!(
                "`{host}`: `{part}` is not a domain name's part (letters, digits, and `-` inside)"
            ));
        }
    }
    Ok(())
}

/// The domain and the port after its last `:` (outside an IPv6 bracket).
fn split_port(host: &str) -> (&str, Option<&str>) {
    let after_bracket = host.rfind(']').map_or(0, |i| i + 1);
    match host[after_bracket..].rfind(':') {
        Some(i) => {
            let at = after_bracket + i;
            (&host[..at], Some(&host[at + 1..]))
        }
        None => (host, None),
    }
}

fn check_port(host: &str, port: &str) -> Result<(), String> {
    match port.parse::<u32>() {
        Ok(p) if port.chars().all(|c| c.is_ascii_digit()) && (1..=65535).contains(&p) => Ok(()),
        _ => Err(format!(
            "`{host}`: the port `{port}` is not a number from 1 to 65535"
        )),
    }
}

/// Check a repository path (what follows the host).
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the repository name is empty".into());
    }
    for part in path.split('/') {
        if !is_path_component(part) {
            return Err(format!(
                "`{path}`: `{part}` is not a repository name's part (lowercase letters and digits, with `.`, `_`, `__` or `-` between them)"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes: Vec<char> = part.chars().collect();
    let mut i = 0;
    let mut need_alnum = true;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            while i < bytes.len() && alnum(bytes[i]) {
                i += 1;
            }
            need_alnum = false;
            continue;
        }
        if need_alnum {
            return false;
        }
        let sep_len = match bytes[i] {
            '.' => 1,
            '_' if bytes.get(i + 1) == Some(&'_') => 2,
            '_' => 1,
            '-' => bytes[i..].iter().take_while(|&&c| c == '-').count(),
            _ => return false,
        };
        i += sep_len;
        need_alnum = true;
    }
    !need_alnum
}

/// Check a whole name, host and path: each part, and at most 255 characters.
pub fn check_name(host: &str, path: &str) -> Result<(), String> {
    check_host(host)?;
    check_path(path)?;
    let len = host.len() + 1 + path.len();
    if len > 255 {
        return Err(format!(
            "`{host}/{path}` is {len} characters; docker allows 255"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_docker_reads_them() {
        for ok in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "registry-1.example.com:443",
            "[::1]:5000",
        ] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            (
                "http://h",
                "has a scheme (`http://`); give the host alone, e.g. `h`",
            ),
            ("https://h:5000/x", "e.g. `h:5000`"),
            ("a b", "holds ' '"),
            (
                "h:99999",
                "the port `99999` is not a number from 1 to 65535",
            ),
            ("h:0", "from 1 to 65535"),
            ("h:", "the port ``"),
            ("-h", "`-h` is not a domain name's part"),
            ("a..b", "`` is not"),
            ("h/x", "holds a `/`"),
            ("", "empty"),
            ("[zz]:1", "not an IPv6 address"),
        ] {
            let e = check_host(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn paths_as_docker_reads_them() {
        for ok in ["a", "my-app", "team/my_app", "a__b", "a---b", "a.b/c"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a_", "a___b", "_a", "a b", "a//b", "a:b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        assert!(check_name("h", &"a".repeat(254))
            .unwrap_err()
            .contains("255"));
    }
}
