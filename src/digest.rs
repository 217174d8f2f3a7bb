//! The content digest of a build: one BLAKE3 hash over exactly what the build
//! depends on, so that an unchanged build keeps its tag and is never rebuilt.
//!
//! It covers every file of the context that docker would send (after
//! `.dockerignore`), with its relative path, type, executable bit and content
//! (a symlink by its target text); the Dockerfile's content, wherever it is;
//! the resolved build args; the target; the platform; and the version of this
//! format. Image labels (the commit, the branch) are left out on purpose: they
//! change on every commit and would defeat the digest.

use crate::compose::{is_remote_context, ArgValue, BuildSpec};
use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bump when what goes into the digest changes, so old tags stop matching.
pub const FORMAT: &str = "convox-off-cluster-build digest v1";

/// One `.dockerignore` pattern, compiled.
#[derive(Debug, Clone)]
struct Pattern {
    tokens: Vec<Token>,
    exclusion: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    Any,
    /// `**/` in the middle: any number of whole directories, none included.
    Dirs,
    /// `**` at the end: anything at all.
    Rest,
    /// `[...]`: a class of characters, maybe negated with `^` or `!`.
    Class(Vec<(char, char)>, bool),
}

/// The rules of a `.dockerignore` file, as docker applies them: patterns are
/// anchored at the context root, `*` and `?` stop at `/`, `**` spans
/// directories, `!` re-includes, the last matching pattern wins, and a
/// pattern that matches a directory matches everything below it.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let cleaned = clean(p);
            let cleaned = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => cleaned,
            };
            patterns.push(Pattern {
                tokens: compile(&cleaned),
                exclusion,
            });
        }
        Ignore { patterns }
    }

    /// Is this path (relative to the context, `/`-separated) left out?
    pub fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = match path.rsplit_once('/') {
            Some((dir, _)) => dir.split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change an unmatched path, nor an exclusion a
            // matched one.
            if p.exclusion != matched {
                continue;
            }
            let mut hit = matches(&p.tokens, path);
            for i in 0..parents.len() {
                if hit {
                    break;
                }
                hit = matches(&p.tokens, &parents[..=i].join("/"));
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Could an exception re-include something below an excluded directory?
    fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

/// Go's `filepath.Clean`, for `/`-separated paths.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            _ => out.push(part),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

fn compile(p: &str) -> Vec<Token> {
    let chars: Vec<char> = p.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Any),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                tokens.push(Token::Char(chars[i]));
            }
            '[' => {
                if let Some((class, negated, next)) = class(&chars, i + 1) {
                    tokens.push(Token::Class(class, negated));
                    i = next;
                    continue;
                }
                tokens.push(Token::Char('['));
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    tokens
}

/// Read a `[...]` class starting after the `[`; returns it and the index
/// after the `]`.
type Class = (Vec<(char, char)>, bool, usize);

fn class(chars: &[char], mut i: usize) -> Option<Class> {
    let negated = matches!(chars.get(i), Some('^') | Some('!'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < chars.len() {
        let mut c = chars[i];
        if c == ']' && !first {
            return Some((ranges, negated, i + 1));
        }
        if c == '\\' && i + 1 < chars.len() {
            i += 1;
            c = chars[i];
        }
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']') {
            ranges.push((c, chars[i + 2]));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
        first = false;
    }
    None
}

fn matches(tokens: &[Token], path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    match_at(tokens, &chars)
}

fn match_at(tokens: &[Token], s: &[char]) -> bool {
    let Some((t, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    match t {
        Token::Char(c) => s.first() == Some(c) && match_at(rest, &s[1..]),
        Token::Any => s.first().is_some_and(|&c| c != '/') && match_at(rest, &s[1..]),
        Token::Class(ranges, negated) => {
            s.first().is_some_and(|&c| {
                c != '/' && ranges.iter().any(|&(a, b)| a <= c && c <= b) != *negated
            }) && match_at(rest, &s[1..])
        }
        Token::Star => {
            let run = s.iter().take_while(|&&c| c != '/').count();
            (0..=run).any(|n| match_at(rest, &s[n..]))
        }
        Token::Rest => true,
        Token::Dirs => {
            // Zero directories, or any prefix that ends at a `/`.
            match_at(rest, s)
                || s.iter()
                    .enumerate()
                    .filter(|(_, &c)| c == '/')
                    .any(|(i, _)| match_at(rest, &s[i + 1..]))
        }
    }
}

#[derive(Debug)]
enum Kind {
    File { exec: bool },
    Dir,
    Symlink(Vec<u8>),
}

#[derive(Debug)]
struct Item {
    rel: String,
    path: PathBuf,
    kind: Kind,
}

/// The `.dockerignore` that applies: `<Dockerfile>.dockerignore` beside the
/// Dockerfile wins over the context's own.
pub fn ignore_file(context: &Path, dockerfile: Option<&Path>) -> Option<PathBuf> {
    let beside = dockerfile.map(|d| {
        let mut name = d.as_os_str().to_owned();
        name.push(".dockerignore");
        PathBuf::from(name)
    });
    beside
        .filter(|p| p.is_file())
        .or_else(|| Some(context.join(".dockerignore")).filter(|p| p.is_file()))
}

/// Everything of the context that docker would receive, in path order.
fn walk(context: &Path, ignore: &Ignore) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut stack = vec![(context.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let path = e.path();
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let excluded = ignore.excludes(&rel);
            let ft = meta.file_type();
            if ft.is_dir() {
                if !excluded || ignore.has_exceptions() {
                    stack.push((path.clone(), rel.clone()));
                }
                if !excluded {
                    items.push(Item {
                        rel,
                        path,
                        kind: Kind::Dir,
                    });
                }
            } else if excluded {
                continue;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)
                    .with_context(|| format!("cannot read the link {}", path.display()))?;
                items.push(Item {
                    rel,
                    path,
                    kind: Kind::Symlink(target.as_os_str().as_encoded_bytes().to_vec()),
                });
            } else if ft.is_file() {
                items.push(Item {
                    rel,
                    path,
                    kind: Kind::File {
                        exec: is_executable(&meta),
                    },
                });
            }
        }
    }
    items.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(items)
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &fs::Metadata) -> bool {
    false
}

/// BLAKE3 of a file, read in chunks (never whole into memory).
fn hash_file(path: &Path) -> Result<blake3::Hash> {
    let file = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    h.update_reader(std::io::BufReader::with_capacity(256 * 1024, file).take(u64::MAX))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(h.finalize())
}

/// Length-prefixed, so that no two different inputs give the same stream.
fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The digest of one build, as 64 hex digits.
pub fn digest(spec: &BuildSpec, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut h = blake3::Hasher::new();
    field(&mut h, FORMAT.as_bytes());
    if is_remote_context(&spec.context) {
        // A remote context is named, not read: its URL stands for it.
        field(&mut h, b"remote");
        field(&mut h, spec.context.as_bytes());
        field(&mut h, spec.dockerfile.as_deref().unwrap_or("").as_bytes());
    } else {
        let context = Path::new(&spec.context);
        let dockerfile = spec.dockerfile.as_deref().map(Path::new);
        if !context.is_dir() {
            bail!(
                "the build context {} is not a directory; build paths are relative to the compose file's directory",
                context.display()
            );
        }
        if let Some(d) = dockerfile.filter(|d| !d.is_file()) {
            bail!(
                "the Dockerfile {} does not exist; `dockerfile:` is relative to the build context",
                d.display()
            );
        }
        let ignore = match ignore_file(context, dockerfile) {
            Some(p) => Ignore::parse(
                &fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?,
            ),
            None => Ignore::default(),
        };
        let items = walk(context, &ignore)?;
        let contents: Vec<Option<blake3::Hash>> = items
            .par_iter()
            .map(|it| match it.kind {
                Kind::File { .. } => hash_file(&it.path).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        field(&mut h, b"context");
        for (it, content) in items.iter().zip(contents) {
            field(&mut h, it.rel.as_bytes());
            match &it.kind {
                Kind::Dir => field(&mut h, b"d"),
                Kind::File { exec } => {
                    field(&mut h, if *exec { b"x" } else { b"f" });
                    if let Some(c) = content {
                        h.update(c.as_bytes());
                    }
                }
                Kind::Symlink(target) => {
                    field(&mut h, b"l");
                    field(&mut h, target);
                }
            }
        }
        let dockerfile = dockerfile
            .map(Path::to_path_buf)
            .unwrap_or_else(|| context.join("Dockerfile"));
        field(&mut h, b"dockerfile");
        let df = hash_file(&dockerfile)
            .map_err(|e| anyhow!("the Dockerfile {}: {e:#}", dockerfile.display()))?;
        h.update(df.as_bytes());
    }
    field(&mut h, b"args");
    let mut args: Vec<(&str, Option<String>)> = spec
        .args
        .iter()
        .map(|a| {
            let v = match &a.value {
                ArgValue::Literal(v) | ArgValue::Secret(v) => Some(v.clone()),
                ArgValue::Inherit => env(&a.name),
            };
            (a.name.as_str(), v)
        })
        .collect();
    args.sort();
    for (name, value) in args {
        field(&mut h, name.as_bytes());
        match value {
            Some(v) => field(&mut h, v.as_bytes()),
            None => field(&mut h, b"\0unset"),
        }
    }
    field(&mut h, b"target");
    field(&mut h, spec.target.as_deref().unwrap_or("").as_bytes());
    // The service's platform, else what docker would take by default.
    field(&mut h, b"platform");
    field(
        &mut h,
        spec.platform
            .clone()
            .or_else(|| env("DOCKER_DEFAULT_PLATFORM"))
            .unwrap_or_default()
            .as_bytes(),
    );
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::BuildArg;

    fn ig(rules: &str) -> Ignore {
        Ignore::parse(rules)
    }

    // Cases from docker's documented .dockerignore rules.
    #[test]
    fn patterns_are_anchored_at_the_context_root() {
        let i = ig("*/temp*\n");
        assert!(i.excludes("somedir/temporary.txt"));
        assert!(i.excludes("somedir/temp"));
        assert!(!i.excludes("temp"));
        assert!(!i.excludes("a/b/temp"), "`*` stops at `/`");
        let i = ig("*/*/temp*\n");
        assert!(i.excludes("somedir/subdir/temporary.txt"));
        assert!(!i.excludes("somedir/temporary.txt"));
        let i = ig("/build\n");
        assert!(i.excludes("build/out.o"), "a leading / is the root");
        assert!(!i.excludes("src/build"), "not anywhere else");
    }

    #[test]
    fn question_mark_is_one_character_but_slash() {
        let i = ig("temp?\n");
        assert!(i.excludes("tempa"));
        assert!(!i.excludes("temp"));
        assert!(!i.excludes("tempab"));
        assert!(!ig("a?b\n").excludes("a/b"));
    }

    #[test]
    fn double_star_spans_any_number_of_directories() {
        let i = ig("**/*.go\n");
        assert!(i.excludes("main.go"), "zero directories");
        assert!(i.excludes("a/b/c/x.go"));
        assert!(!i.excludes("a/b/c/x.rs"));
        let i = ig("a/**/z\n");
        assert!(i.excludes("a/z"));
        assert!(i.excludes("a/b/c/z"));
        assert!(!i.excludes("b/z"));
        let i = ig("logs/**\n");
        assert!(i.excludes("logs/x/y.log"));
    }

    #[test]
    fn exceptions_re_include_and_the_last_match_wins() {
        let i = ig("*.md\n!README.md\n");
        assert!(i.excludes("CHANGES.md"));
        assert!(!i.excludes("README.md"));
        let i = ig("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(!i.excludes("README.md"));
        assert!(i.excludes("README-secret.md"));
        let i = ig("!README.md\n*.md\n");
        assert!(i.excludes("README.md"), "the later exclusion wins");
    }

    #[test]
    fn a_matched_directory_takes_everything_below_it() {
        let i = ig("node_modules\n");
        assert!(i.excludes("node_modules"));
        assert!(i.excludes("node_modules/a/b.js"));
        assert!(!i.excludes("src/node_modules/x"), "anchored at the root");
        let i = ig("docs\n!docs/keep.txt\n");
        assert!(i.excludes("docs/other.txt"));
        assert!(!i.excludes("docs/keep.txt"));
    }

    #[test]
    fn comments_blank_lines_whitespace_and_cleaning() {
        let i = ig("# a comment\n\n   spaced.txt   \n./dir/../x.txt\n#notignored\n\\#hash\n");
        assert!(i.excludes("spaced.txt"));
        assert!(i.excludes("x.txt"));
        assert!(
            !i.excludes("#notignored"),
            "a line starting with # is a comment"
        );
        assert!(i.excludes("#hash"), "an escaped # is a name");
        let i = ig("dir/\n");
        assert!(i.excludes("dir/f"), "a trailing slash is cleaned away");
    }

    #[test]
    fn character_classes() {
        let i = ig("file[0-9].txt\n[!a]b\n");
        assert!(i.excludes("file7.txt"));
        assert!(!i.excludes("fileX.txt"));
        assert!(i.excludes("xb"));
        assert!(!i.excludes("ab"));
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/deep")).unwrap();
        fs::write(d.path().join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        fs::write(d.path().join("src/a.txt"), "a").unwrap();
        fs::write(d.path().join("src/deep/b.txt"), "b").unwrap();
        fs::write(d.path().join("notes.log"), "log").unwrap();
        d
    }

    fn spec(d: &Path) -> BuildSpec {
        BuildSpec {
            context: d.display().to_string(),
            dockerfile: Some(d.join("Dockerfile").display().to_string()),
            args: vec![BuildArg {
                name: "X".into(),
                value: ArgValue::Literal("1".into()),
            }],
            target: None,
            platform: None,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_digest_changes_when_and_only_when_an_input_changes() {
        let d = tree();
        let s = spec(d.path());
        let base = digest(&s, &no_env).unwrap();
        assert_eq!(base.len(), 64);
        assert_eq!(digest(&s, &no_env).unwrap(), base, "stable");

        // Content, a new file, a rename, the executable bit, a symlink.
        type Change = Box<dyn Fn(&Path)>;
        let changes: Vec<Change> = vec![
            Box::new(|p| fs::write(p.join("src/a.txt"), "A").unwrap()),
            Box::new(|p| fs::write(p.join("src/new.txt"), "").unwrap()),
            Box::new(|p| fs::rename(p.join("src/a.txt"), p.join("src/c.txt")).unwrap()),
            Box::new(|p| fs::create_dir(p.join("empty")).unwrap()),
            Box::new(|p| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(p.join("src/a.txt"), fs::Permissions::from_mode(0o755)).unwrap()
            }),
            Box::new(|p| std::os::unix::fs::symlink("a.txt", p.join("src/link")).unwrap()),
            Box::new(|p| fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap()),
        ];
        for (n, change) in changes.iter().enumerate() {
            let d = tree();
            change(d.path());
            assert_ne!(
                digest(&spec(d.path()), &no_env).unwrap(),
                base,
                "change {n}"
            );
        }

        // Args, target, an inherited arg's value, the platform.
        let mut s2 = s.clone();
        s2.args[0].value = ArgValue::Literal("2".into());
        assert_ne!(digest(&s2, &no_env).unwrap(), base);
        let mut s3 = s.clone();
        s3.target = Some("prod".into());
        assert_ne!(digest(&s3, &no_env).unwrap(), base);
        let mut s4 = s.clone();
        s4.args[0].value = ArgValue::Inherit;
        let with = |v: &'static str| move |k: &str| (k == "X").then(|| v.to_string());
        assert_ne!(
            digest(&s4, &with("a")).unwrap(),
            digest(&s4, &with("b")).unwrap()
        );
        let plat = |k: &str| (k == "DOCKER_DEFAULT_PLATFORM").then(|| "linux/arm64".to_string());
        assert_ne!(digest(&s, &plat).unwrap(), base);
        // The service's platform counts, and wins over docker's default.
        let mut s5 = s.clone();
        s5.platform = Some("linux/arm64".into());
        assert_eq!(digest(&s5, &no_env).unwrap(), digest(&s, &plat).unwrap());
        let amd = |k: &str| (k == "DOCKER_DEFAULT_PLATFORM").then(|| "linux/amd64".to_string());
        assert_eq!(digest(&s5, &amd).unwrap(), digest(&s5, &no_env).unwrap());
    }

    #[test]
    fn what_docker_would_not_receive_does_not_count() {
        let d = tree();
        fs::write(d.path().join(".dockerignore"), "*.log\n").unwrap();
        let base = digest(&spec(d.path()), &no_env).unwrap();
        fs::write(d.path().join("notes.log"), "changed").unwrap();
        fs::write(d.path().join("more.log"), "new").unwrap();
        assert_eq!(digest(&spec(d.path()), &no_env).unwrap(), base);
        // The mtime is not content.
        fs::write(d.path().join("src/a.txt"), "a").unwrap();
        assert_eq!(digest(&spec(d.path()), &no_env).unwrap(), base);
        // A Dockerfile-specific ignore file wins over the context's.
        fs::write(d.path().join("Dockerfile.dockerignore"), "src/deep\n").unwrap();
        let beside = digest(&spec(d.path()), &no_env).unwrap();
        assert_ne!(beside, base, "*.log counts again, src/deep not");
        fs::write(d.path().join("src/deep/b.txt"), "changed").unwrap();
        assert_eq!(digest(&spec(d.path()), &no_env).unwrap(), beside);
    }

    #[test]
    fn a_dockerfile_outside_the_context_counts() {
        let d = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("Dockerfile.x"), "FROM scratch\n").unwrap();
        let mut s = spec(d.path());
        s.dockerfile = Some(outside.path().join("Dockerfile.x").display().to_string());
        let base = digest(&s, &no_env).unwrap();
        fs::write(
            outside.path().join("Dockerfile.x"),
            "FROM scratch\nLABEL a=b\n",
        )
        .unwrap();
        assert_ne!(digest(&s, &no_env).unwrap(), base);
    }
}
