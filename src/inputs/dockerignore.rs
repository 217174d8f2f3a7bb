//! `.dockerignore` exactly as docker applies it, under both builders, so that
//! the content digest covers every file a build can receive.
//!
//! The rules, read from docker's own code and checked against the engine
//! (`tests/dockerignore_oracle.rs` builds random trees with both builders):
//!
//! 1. **Reading** (moby `ignorefile.ReadAll`): a byte-order mark is dropped
//!    from the first line; a line starting with `#` is a comment (only at
//!    column 1); each line is trimmed; empty lines are skipped; a leading
//!    `!` (then trimmed again) marks an exception; the rest goes through Go's
//!    `filepath.Clean` (`./a` is `a`, `a/../b` is `b`, `a/` is `a`) and loses
//!    one leading `/`.
//! 2. **Checking** (`patternmatcher.New`): a bare `!` is refused, and so is
//!    any pattern that Go's `filepath.Match` calls malformed: an unterminated
//!    `[`, an empty class, a range or class item starting with `-` or `]`, a
//!    trailing `\`. So is a pattern whose translation (below) Go's regexp
//!    refuses, or uses a regexp feature this program does not evaluate: docker
//!    would fail the build on it, or match by rules too odd to follow.
//! 3. **Matching one path** (`Pattern.compile`): the pattern is translated to
//!    a Go regexp character by character: `*` is `[^/]*`, `?` is `[^/]`,
//!    `**` (and `**/`) is `(.*/)?`, or `.*` at the end; `\x` stays an escape;
//!    everything else is copied, so `[...]` is a *regexp* class: `!` in it is
//!    a member and only `^` negates. The current matcher escapes `.+()$`
//!    (the engine shows `|` and `{}` unescaped: `a|b*` is an alternation
//!    and `c{1}` a repetition there too; newer moby sources escape them, the
//!    CLI here does not) and takes shortcuts: a pattern with no special character is
//!    compared exactly; one whose only special is a final `**` is a prefix
//!    test; one that starts with `**` and has no other special is a suffix
//!    test (so `**.log` matches `a/b.log`). The legacy matcher (docker 20.10's
//!    `pkg/fileutils`) escapes only `.` and `$` and always uses the regexp, so
//!    `a+b` or `(x|y)` are regexp syntax there.
//! 4. **A path and its parents**: a pattern also matches a path when it
//!    matches one of the path's parent directories; the last pattern that
//!    matches decides, and an exception can only re-include what an earlier
//!    pattern excluded. The current matcher checks every parent; the legacy
//!    one only the parent with as many components as the pattern has.
//! 5. **The walk**: an excluded directory is not entered unless some
//!    exception pattern, with `/` appended, starts with the directory's path
//!    and `/`. So `*` then `!**/keep.log` sends no `y/keep.log`, while `*`
//!    then `!y/keep.log` does.
//! 6. **The builders**: the classic builder's context is made by the docker
//!    CLI with the current matcher; the CLI always sends `.dockerignore`
//!    itself, and the daemon then removes it when its own (legacy) matcher
//!    excludes it. BuildKit's context is walked by the client with the
//!    legacy matcher. The program counts a file when **either** builder
//!    sends it, so a change is never missed; a file only one builder sends
//!    costs, at worst, a needless rebuild under the other.

use crate::inputs::goregex::{self, Re};
use std::fmt;

/// A line docker refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreError {
    pub line: usize,
    pub pattern: String,
    pub message: String,
}

impl fmt::Display for IgnoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: `{}`: {}",
            self.line, self.pattern, self.message
        )
    }
}

impl std::error::Error for IgnoreError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// moby/patternmatcher, as the docker CLI uses it for the classic builder.
    Current,
    /// docker 20.10's pkg/fileutils, as BuildKit's client uses it here.
    Legacy,
}

#[derive(Debug, Clone)]
enum How {
    Exact,
    Prefix(String),
    Suffix(String),
    Regex(Re),
}

#[derive(Debug, Clone)]
struct Pattern {
    cleaned: String,
    dirs: usize,
    exclusion: bool,
    how: How,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.how {
            How::Exact => path == self.cleaned,
            How::Prefix(p) => path.starts_with(p.as_str()),
            How::Suffix(s) => {
                path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|t| path == t)
            }
            How::Regex(re) => goregex::is_match(re, path),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Matcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

/// How one builder reads one ignore file.
#[derive(Debug, Clone)]
struct Model {
    matcher: Matcher,
    flavor: Flavor,
    /// The classic builder's daemon removes `.dockerignore` from the context
    /// (its own legacy matcher excludes it).
    drops_dockerignore: bool,
}

/// The ignore rules of a build context, under every way docker may read
/// them: a file is sent when any of them sends it.
#[derive(Debug, Clone)]
pub struct Ignore {
    models: Vec<Model>,
}

impl Default for Ignore {
    fn default() -> Self {
        Ignore::for_context(None, None).unwrap_or(Ignore { models: Vec::new() })
    }
}

/// Where the walk stands in a directory, for each model: None when that
/// builder does not enter it; else, for the current matcher, the
/// per-pattern results of the directory (moby's `MatchInfo`).
#[derive(Debug, Clone)]
pub struct DirState(Vec<Option<Vec<bool>>>);

/// What happens to one entry of the context.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Some builder sends it.
    pub sent: bool,
    /// For a directory that some builder enters: its state.
    pub enter: Option<DirState>,
}

/// Which of the two ignore files a refused line is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Context,
    Dockerfile,
}

impl Ignore {
    /// One ignore file's text, as both builders read it (tests).
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        Ignore::for_context(Some(text), None).map_err(|(_, e)| e)
    }

    /// The app directory's `.dockerignore` as Convox's upload applies it:
    /// docker 20.10's `archive.TarWithOptions`, the legacy matcher and its
    /// walk (`crate::inputs::upload`).
    pub fn upload(text: &str) -> Result<Ignore, IgnoreError> {
        let lines = read_all(text);
        Ok(Ignore {
            models: vec![Model {
                matcher: Matcher::new(&lines, Flavor::Legacy)?,
                flavor: Flavor::Legacy,
                drops_dockerignore: false,
            }],
        })
    }

    /// The context's `.dockerignore` (which the classic builder always reads,
    /// and BuildKit when the Dockerfile comes on stdin) and a
    /// `<Dockerfile>.dockerignore` (which BuildKit reads instead when given
    /// the Dockerfile's path).
    pub fn for_context(
        dockerignore: Option<&str>,
        dockerfile_ignore: Option<&str>,
    ) -> Result<Ignore, (Which, IgnoreError)> {
        let lines = read_all(dockerignore.unwrap_or(""));
        let at = |w: Which| move |e: IgnoreError| (w, e);
        let legacy = Matcher::new(&lines, Flavor::Legacy).map_err(at(Which::Context))?;
        let mut models = vec![
            Model {
                matcher: Matcher::new(&lines, Flavor::Current).map_err(at(Which::Context))?,
                flavor: Flavor::Current,
                drops_dockerignore: legacy.matches_legacy(".dockerignore"),
            },
            Model {
                matcher: legacy,
                flavor: Flavor::Legacy,
                drops_dockerignore: false,
            },
        ];
        if let Some(text) = dockerfile_ignore {
            let lines = read_all(text);
            // Checked by the current rules too: a newer docker reads it so.
            Matcher::new(&lines, Flavor::Current).map_err(at(Which::Dockerfile))?;
            models.push(Model {
                matcher: Matcher::new(&lines, Flavor::Legacy).map_err(at(Which::Dockerfile))?,
                flavor: Flavor::Legacy,
                drops_dockerignore: false,
            });
        }
        Ok(Ignore { models })
    }

    /// These rules, and a builder that reads no ignore file at all besides:
    /// BuildKit when the context's `.dockerignore` is a symlink (its
    /// transfer of the file does not follow the link; the classic builder's
    /// client does). Every entry is then sent by some builder.
    pub fn or_none(mut self) -> Ignore {
        if let Ok(matcher) = Matcher::new(&read_all(""), Flavor::Legacy) {
            self.models.push(Model {
                matcher,
                flavor: Flavor::Legacy,
                drops_dockerignore: false,
            });
        }
        self
    }

    /// The state at the context's root.
    pub fn root(&self) -> DirState {
        DirState(self.models.iter().map(|_| Some(Vec::new())).collect())
    }

    /// Is `rel` (relative to the context, `/`-separated) sent, and is it, as
    /// a directory, entered?
    pub fn entry(&self, parent: &DirState, rel: &str, is_dir: bool) -> Verdict {
        let mut sent = false;
        let mut states = Vec::with_capacity(self.models.len());
        for (m, state) in self.models.iter().zip(&parent.0) {
            let Some(info) = state else {
                states.push(None);
                continue;
            };
            let (skip, mine) = match m.flavor {
                Flavor::Current => m.matcher.matches_using_parent(rel, info),
                Flavor::Legacy => (m.matcher.matches_legacy(rel), Vec::new()),
            };
            sent |= if rel == ".dockerignore" && m.flavor == Flavor::Current {
                !m.drops_dockerignore
            } else {
                !skip
            };
            let enter = is_dir && (!skip || m.matcher.exception_below(rel));
            states.push(enter.then_some(mine));
        }
        let enter = states
            .iter()
            .any(Option::is_some)
            .then_some(DirState(states));
        Verdict { sent, enter }
    }

    /// Is the file at `rel` sent by some builder? (The walk over its parents
    /// included.)
    pub fn sends(&self, rel: &str) -> bool {
        let mut state = self.root();
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 0..parts.len() {
            let path = parts[..=i].join("/");
            let last = i + 1 == parts.len();
            let v = self.entry(&state, &path, !last);
            if last {
                return v.sent;
            }
            match v.enter {
                Some(s) => state = s,
                None => return false,
            }
        }
        false
    }
}

/// moby's `ignorefile.ReadAll`: (line number, pattern).
fn read_all(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if i == 0 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
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
        let invert = p.starts_with('!');
        if invert {
            p = p[1..].trim();
        }
        let mut pattern = String::new();
        if !p.is_empty() {
            pattern = clean(p);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
        }
        if invert {
            pattern.insert(0, '!');
        }
        out.push((i + 1, pattern));
    }
    out
}

/// Go's `filepath.Clean`, for `/`-separated paths.
pub fn clean(p: &str) -> String {
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

impl Matcher {
    /// `patternmatcher.New` (or 20.10's `NewPatternMatcher`), and the
    /// translation of each pattern, done at once so that a bad pattern is
    /// refused before any build.
    fn new(lines: &[(usize, String)], flavor: Flavor) -> Result<Matcher, IgnoreError> {
        let mut m = Matcher::default();
        for (line, raw) in lines {
            let err = |message: String| IgnoreError {
                line: *line,
                pattern: raw.clone(),
                message,
            };
            let p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            let exclusion = p.starts_with('!');
            if exclusion {
                if p.len() == 1 {
                    return Err(err(
                        "a `!` alone is refused by docker (\"illegal exclusion pattern\"); write the path to re-include after it".into(),
                    ));
                }
                p.remove(0);
                m.exclusions = true;
            }
            check_glob(&p).map_err(|e| err(format!("docker refuses this pattern: {e}")))?;
            let how = compile(&p, flavor).map_err(|e| {
                err(format!(
                    "docker reads this pattern as the regular expression `{}`, which {}",
                    translate(&p, flavor).0,
                    e
                ))
            })?;
            m.patterns.push(Pattern {
                dirs: p.split('/').count(),
                cleaned: p,
                exclusion,
                how,
            });
        }
        Ok(m)
    }

    /// `MatchesUsingParentResults`: with the parent's per-pattern results
    /// (empty at the root: then every parent directory is checked).
    fn matches_using_parent(&self, file: &str, parent: &[bool]) -> (bool, Vec<bool>) {
        let mut matched = false;
        let mut mine = vec![false; self.patterns.len()];
        for (i, p) in self.patterns.iter().enumerate() {
            let mut hit = parent.get(i).copied().unwrap_or(false);
            if !hit {
                if p.exclusion != matched {
                    continue;
                }
                hit = p.matches(file);
                if !hit && parent.is_empty() {
                    hit = parents(file).any(|d| p.matches(d));
                }
            }
            mine[i] = hit;
            if hit {
                matched = !p.exclusion;
            }
        }
        (matched, mine)
    }

    /// 20.10's `Matches`: every pattern in turn; a parent is checked only at
    /// the depth of the pattern's own components.
    fn matches_legacy(&self, file: &str) -> bool {
        let parent_dirs: Vec<&str> = match file.rsplit_once('/') {
            Some((dir, _)) => dir.split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            let mut hit = p.matches(file);
            if !hit && !parent_dirs.is_empty() && p.dirs <= parent_dirs.len() {
                hit = p.matches(&parent_dirs[..p.dirs].join("/"));
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Does an exception reach below this excluded directory?
    fn exception_below(&self, dir: &str) -> bool {
        self.exclusions && {
            let dir_slash = format!("{dir}/");
            self.patterns
                .iter()
                .filter(|p| p.exclusion)
                .any(|p| format!("{}/", p.cleaned).starts_with(&dir_slash))
        }
    }
}

/// `a`, `a/b` for `a/b/c`.
fn parents(file: &str) -> impl Iterator<Item = &str> {
    file.match_indices('/').map(move |(i, _)| &file[..i])
}

/// The syntax check docker makes: Go's `filepath.Match(pattern, ".")`,
/// whose error is the check. Go checks only the chunks (text between
/// unbracketed `*`s) that it gets to before the match fails, so
/// `d/**/[^-]*` passes (the chunk `d/` fails against `.` first) while
/// `**/[^-]*` does not. (Checked against the engine: docker accepts the one
/// and refuses the other.)
fn check_glob(p: &str) -> Result<(), String> {
    let name: Vec<char> = vec!['.'];
    let mut pattern: Vec<char> = p.chars().collect();
    let mut name: &[char] = &name;
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(&pattern);
        if star && chunk.is_empty() {
            return Ok(());
        }
        let (t, ok) = match_chunk(&chunk, name)?;
        if ok && (t.is_empty() || !rest.is_empty()) {
            name = t;
            pattern = rest;
            continue;
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != '/' {
                let (t, ok) = match_chunk(&chunk, &name[i + 1..])?;
                if ok {
                    if rest.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    pattern = rest;
                    continue 'chunks;
                }
                i += 1;
            }
        }
        return Ok(());
    }
    Ok(())
}

/// Go's `scanChunk`: leading stars, then up to the next unbracketed `*`.
fn scan_chunk(p: &[char]) -> (bool, Vec<char>, Vec<char>) {
    let mut i = 0;
    let mut star = false;
    while i < p.len() && p[i] == '*' {
        i += 1;
        star = true;
    }
    let p = &p[i..];
    let mut in_range = false;
    let mut j = 0;
    while j < p.len() {
        match p[j] {
            '\\' if j + 1 < p.len() => j += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        j += 1;
    }
    (star, p[..j].to_vec(), p[j..].to_vec())
}

/// Go's `matchChunk`: does `chunk` match the start of `s`, and what is left?
/// Once the match has failed it goes on reading the chunk, to check it.
fn match_chunk<'a>(chunk: &[char], mut s: &'a [char]) -> Result<(&'a [char], bool), String> {
    let mut failed = false;
    let mut c = chunk;
    while !c.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c[0] {
            '[' => {
                let mut r = '\0';
                if !failed {
                    r = s[0];
                    s = &s[1..];
                }
                c = &c[1..];
                let mut negated = false;
                if c.first() == Some(&'^') {
                    negated = true;
                    c = &c[1..];
                }
                let mut matched = false;
                let mut n = 0;
                loop {
                    if c.first() == Some(&']') && n > 0 {
                        c = &c[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(c)?;
                    c = rest;
                    let mut hi = lo;
                    if c[0] == '-' {
                        let (h, rest) = get_esc(&c[1..])?;
                        hi = h;
                        c = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    n += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if s[0] == '/' {
                        failed = true;
                    }
                    s = &s[1..];
                }
                c = &c[1..];
            }
            ch => {
                let ch = if ch == '\\' {
                    c = &c[1..];
                    match c.first() {
                        Some(&e) => e,
                        None => return Err("it ends in a `\\` that escapes nothing".into()),
                    }
                } else {
                    ch
                };
                if !failed {
                    if ch != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                c = &c[1..];
            }
        }
    }
    if failed {
        return Ok((s, false));
    }
    Ok((s, true))
}

/// Go's `getEsc`: one (maybe escaped) character of a class, which must not
/// end the pattern.
fn get_esc(c: &[char]) -> Result<(char, &[char]), String> {
    let unclosed = || "a `[` class is not closed with `]`".to_string();
    let mut c = c;
    match c.first() {
        None => return Err(unclosed()),
        Some('-') | Some(']') => {
            return Err("a `[` class is empty, or has `-` or `]` where a character belongs".into())
        }
        Some('\\') => {
            c = &c[1..];
            if c.is_empty() {
                return Err(unclosed());
            }
        }
        _ => {}
    }
    let r = c[0];
    let rest = &c[1..];
    if rest.is_empty() {
        return Err(unclosed());
    }
    Ok((r, rest))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// `Pattern.compile`'s translation: the regexp text and the match type.
fn translate(p: &str, flavor: Flavor) -> (String, Detected) {
    if flavor == Flavor::Legacy {
        return (legacy_regex(p), Detected::Regex);
    }
    let chars: Vec<char> = p.chars().collect();
    let mut re = String::from("^");
    let mut kind = Detected::Exact;
    let mut i = 0;
    while i < chars.len() {
        let at_start = i == 0;
        let c = chars[i];
        i += 1;
        if c == '*' {
            if chars.get(i) == Some(&'*') {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == Detected::Exact {
                        kind = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Detected::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Detected::Regex;
                }
                if at_start {
                    kind = Detected::Suffix;
                }
            } else {
                re.push_str("[^/]*");
                kind = Detected::Regex;
            }
        } else if c == '?' {
            re.push_str("[^/]");
            kind = Detected::Regex;
        } else if ".+()$".contains(c) {
            re.push('\\');
            re.push(c);
        } else if c == '\\' {
            match chars.get(i) {
                Some(&n) => {
                    re.push('\\');
                    re.push(n);
                    i += 1;
                    kind = Detected::Regex;
                }
                None => re.push('\\'),
            }
        } else if c == '[' || c == ']' {
            re.push(c);
            kind = Detected::Regex;
        } else {
            re.push(c);
        }
    }
    re.push('$');
    (re, kind)
}

/// 20.10's translation: always a regexp.
fn legacy_regex(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                re.push_str(if i >= chars.len() { ".*" } else { "(.*/)?" });
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '.' | '$' => {
                re.push('\\');
                re.push(c);
            }
            '\\' => match chars.get(i) {
                Some(&n) => {
                    re.push('\\');
                    re.push(n);
                    i += 1;
                }
                None => re.push('\\'),
            },
            c => re.push(c),
        }
    }
    re.push('$');
    re
}

fn compile(p: &str, flavor: Flavor) -> Result<How, String> {
    let (re, kind) = translate(p, flavor);
    Ok(match kind {
        Detected::Exact => How::Exact,
        Detected::Prefix => How::Prefix(p[..p.len() - 2].to_string()),
        Detected::Suffix => How::Suffix(p[2..].to_string()),
        Detected::Regex => How::Regex(goregex::parse(&re)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(rules: &str) -> Ignore {
        Ignore::parse(rules).unwrap()
    }

    impl Ignore {
        fn excludes(&self, path: &str) -> bool {
            !self.sends(path)
        }
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
        // In docker's (regexp) classes `!` is a member, not a negation.
        assert!(i.excludes("ab") && i.excludes("!b"));
        assert!(!i.excludes("xb"));
    }

    fn sends(rules: &str, path: &str) -> bool {
        Ignore::parse(rules).unwrap().sends(path)
    }

    #[test]
    fn reading_trims_cleans_and_skips_comments() {
        let lines = read_all("\u{feff}# c\n  a/  \n\n !  ./b/../c\n #x\n/d\r\n/\n");
        assert_eq!(
            lines,
            vec![
                (2, "a".to_string()),
                (4, "!c".to_string()),
                (5, "#x".to_string()),
                (6, "d".to_string()),
                (7, "/".to_string()),
            ]
        );
    }

    #[test]
    fn a_bang_in_a_class_is_a_member() {
        // `[!a]*`: files starting with `!` or `a` are excluded; others sent.
        assert!(!sends("[!a]*\n", "ab"));
        assert!(!sends("[!a]*\n", "!x"));
        assert!(sends("[!a]*\n", "b.txt"));
        assert!(!sends("[^a]*\n", "b.txt") && sends("[^a]*\n", "ab"));
    }

    #[test]
    fn double_star_first_is_a_suffix_test_now_and_a_regexp_in_20_10() {
        // The classic builder drops y/c.log; BuildKit's 20.10 client sends
        // it, so it counts.
        let ig = Ignore::parse("**.log\n").unwrap();
        assert!(ig.models[0].matcher.matches_using_parent("y/c.log", &[]).0);
        let legacy = &ig.models[1].matcher;
        assert!(legacy.matches_legacy(".log") && !legacy.matches_legacy("y/c.log"));
        assert!(ig.sends("y/c.log"));
    }

    #[test]
    fn an_excluded_directory_is_entered_only_for_an_exception_below_it() {
        assert!(!sends("*\n!**/keep.log\n", "y/keep.log"));
        assert!(sends("*\n!y/keep.log\n", "y/keep.log"));
        assert!(!sends("*\n!y/keep.log\n", "y/other"));
        assert!(sends("y\n!y/keep.log\n", "y/keep.log"));
    }

    #[test]
    fn the_classic_daemon_drops_an_excluded_dockerignore() {
        assert!(!sends("*\n", ".dockerignore"));
        assert!(sends("*.log\n", ".dockerignore"));
        assert!(!sends(".dockerignore\n", ".dockerignore"));
    }

    #[test]
    fn go_checks_only_the_chunks_it_reaches() {
        // As the engine does: the first chunk `d/` fails against "." and
        // the rest goes unchecked; a chunk that holds the class is checked.
        for ok in ["d/**/[^-]*", "x/**/[*"] {
            assert!(check_glob(ok).is_ok(), "{ok}");
        }
        for bad in ["**/[^-]*", "d/[^-]*", "[*", "**/[*", "[abc", "x\\"] {
            assert!(check_glob(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refused_patterns_name_their_line() {
        for (text, line, what) in [
            ("ok\n[abc\n", 2, "not closed"),
            ("a\n\n!\n", 3, "alone"),
            ("x\\\n", 1, "escapes nothing"),
            ("[]a]\n", 1, "empty"),
            ("a(b\n", 1, "regular expression `^a(b$`"),
            ("\\y\n", 1, "regular expression"),
        ] {
            let e = Ignore::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(what), "{text:?}: {e}");
        }
    }
}
