//! The Dockerfile, as docker's parser reads it: the rules this program
//! relies on, in one place. Each build's Dockerfile is read once per run
//! ([`Dockerfiles::read`]) and what was read is handed on: its bytes to the
//! digest, its base images to `inputs::bases`, its last stage to the label
//! decision of `programs::docker`.
//!
//! - **Parser directives**: `# escape=X`, `# syntax=…` and `# check=…`
//!   comments before anything else. `escape` changes the line-continuation
//!   character (default `\`); the first other line ends the directives.
//! - **Instructions**: a keyword (compared without case) and the rest of the
//!   line. A line ending in the escape character continues on the next; a
//!   comment line inside a continued instruction is dropped, as are blank
//!   and comment lines between instructions.
//! - **Heredocs** (BuildKit's parser, dockerfile 1.4): a `RUN`, `COPY` or
//!   `ADD` (or `ONBUILD` of one), not in JSON form, whose line holds a word
//!   `[N]<<[-]WORD` opens a heredoc; the lines after it, up to one that is
//!   WORD (leading tabs stripped first with `<<-`), are its body, not
//!   instructions. Several on one line are read one after another. The
//!   bodies are part of the file's bytes, so the digest covers them.
//! - **`FROM` operands**: flags (`--platform=…`) left out, then the image,
//!   then an optional `AS name` (the stage name, compared without case).
//! - **`ARG` substitution**: the global `ARG`s, declared before the first
//!   `FROM`, take the build's `--build-arg` value over their default, and are
//!   substituted in `FROM` lines as `$A`, `${A}`, `${A:-x}`, `${A-x}`,
//!   `${A:+x}` and `${A+x}`.
//! - **One appended `LABEL` line**: a `LABEL` line added at the end of the
//!   file lands where `--label` puts labels (the last stage built), unless a
//!   `--target` names an earlier stage, or an escape directive changes how
//!   the added line would be read.

use crate::read::compose::{is_remote_context, normalize, BuildSpec};
use crate::read::regular;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One Dockerfile as read from disk, its instructions parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub path: PathBuf,
    /// Its exact bytes (what the digest covers).
    pub bytes: Vec<u8>,
    /// Its text, when the bytes are UTF-8; the parsing rules apply only then.
    pub text: Option<String>,
    instructions: Vec<(String, String)>,
}

impl Dockerfile {
    fn new(path: PathBuf, bytes: Vec<u8>) -> Dockerfile {
        let text = String::from_utf8(bytes.clone()).ok();
        let instructions = text.as_deref().map(instructions).unwrap_or_default();
        Dockerfile {
            path,
            bytes,
            text,
            instructions,
        }
    }

    /// A Dockerfile from its text (no file behind it).
    pub fn parse(text: &str) -> Dockerfile {
        Dockerfile::new(PathBuf::new(), text.as_bytes().to_vec())
    }

    /// Read one from disk.
    pub fn read(path: &Path) -> Result<Dockerfile, regular::FileError> {
        Ok(Dockerfile::new(
            path.to_path_buf(),
            regular::read(path, regular::TEXT_LIMIT)?,
        ))
    }

    /// Its instructions (none when it is not UTF-8).
    pub fn instructions(&self) -> &[(String, String)] {
        &self.instructions
    }

    /// Would one `LABEL` line appended to it land where `--label` puts
    /// labels (the last stage built)? Yes, unless a `--target` names an
    /// earlier stage, a parser directive changes the escape character, or
    /// the text ends open: in a continuation (a last line ending in `\`,
    /// which docker would join the `LABEL` to, blank and comment lines
    /// skipped) or inside a heredoc.
    pub fn labels_can_go_last(&self, target: Option<&str>) -> bool {
        let Some(text) = self.text.as_deref() else {
            return false;
        };
        if has_escape_directive(text) || read_instructions(text).1 {
            return false;
        }
        match target {
            None => true,
            Some(t) => self
                .last_stage_name()
                .is_some_and(|n| n.eq_ignore_ascii_case(t)),
        }
    }

    /// The names its `ARG`s declare that a build of `target` (else the last
    /// stage) reads: the global ones (before the first `FROM`) and those of
    /// the target's stage and every stage it needs.
    pub fn declared_args(&self, target: Option<&str>) -> std::collections::BTreeSet<String> {
        let target_index = target_stage(&self.stages(), target);
        let mut wanted: Vec<usize> = self.stages_needed(target).iter().map(|s| s.index).collect();
        wanted.extend(target_index);
        let mut names = std::collections::BTreeSet::new();
        let mut stage: Option<usize> = None;
        for (keyword, rest) in &self.instructions {
            match keyword.as_str() {
                "FROM" => stage = Some(stage.map_or(0, |s| s + 1)),
                "ARG" if stage.is_none_or(|s| wanted.contains(&s)) => {
                    names.extend(arg_declarations(rest).into_iter().map(|(n, _)| n));
                }
                _ => {}
            }
        }
        names
    }

    /// The name (`AS name`) of its last stage.
    pub fn last_stage_name(&self) -> Option<String> {
        self.instructions
            .iter()
            .rev()
            .find(|(keyword, _)| keyword == "FROM")
            .and_then(|(_, rest)| from_operands(rest)?.1)
    }
}

/// One build stage: its `FROM` and what it depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lower-cased (stage names compare without case).
    pub name: Option<String>,
    /// The stages it builds on or copies from (by index).
    pub needs: Vec<usize>,
}

impl Stage {
    /// How `--target` and a tag name it: its name, else its index.
    pub fn id(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

impl Dockerfile {
    /// Its stages: each `FROM`, with the earlier stages it builds on (`FROM
    /// stage`) or takes files from (`COPY --from=`, `RUN
    /// --mount=…,from=`), by name or number.
    pub fn stages(&self) -> Vec<Stage> {
        let mut stages: Vec<Stage> = Vec::new();
        let find = |stages: &[Stage], x: &str| -> Option<usize> {
            let x = x.to_lowercase();
            stages
                .iter()
                .find(|s| s.name.as_deref() == Some(x.as_str()))
                .map(|s| s.index)
                .or_else(|| x.parse::<usize>().ok().filter(|&i| i < stages.len()))
        };
        for (keyword, rest) in self.instructions() {
            if keyword == "FROM" {
                let Some((image, name)) = from_operands(rest) else {
                    continue;
                };
                let needs = find(&stages, &image).into_iter().collect();
                stages.push(Stage {
                    index: stages.len(),
                    name: name.map(|n| n.to_lowercase()),
                    needs,
                });
                continue;
            }
            let Some(current) = stages.len().checked_sub(1) else {
                continue;
            };
            if keyword != "COPY" && keyword != "RUN" {
                continue;
            }
            for w in words(rest).iter().take_while(|w| w.starts_with("--")) {
                let from = w.strip_prefix("--from=").map(String::from).or_else(|| {
                    w.strip_prefix("--mount=").and_then(|m| {
                        m.split(',')
                            .find_map(|kv| kv.strip_prefix("from="))
                            .map(String::from)
                    })
                });
                if let Some(i) = from.and_then(|f| find(&stages[..current], &f)) {
                    stages[current].needs.push(i);
                }
            }
        }
        stages
    }

    /// The stages that the target (`--target`, else the last stage) needs,
    /// directly or not, in the order they appear; the target itself not.
    pub fn stages_needed(&self, target: Option<&str>) -> Vec<Stage> {
        let stages = self.stages();
        let Some(target) = target_stage(&stages, target) else {
            return Vec::new();
        };
        let mut needed = vec![false; stages.len()];
        let mut todo = stages[target].needs.clone();
        while let Some(i) = todo.pop() {
            if !needed[i] {
                needed[i] = true;
                todo.extend(stages[i].needs.iter().copied());
            }
        }
        stages.into_iter().filter(|s| needed[s.index]).collect()
    }
}

/// The index of the stage `--target` names (without case), else the last.
fn target_stage(stages: &[Stage], target: Option<&str>) -> Option<usize> {
    match target {
        Some(t) => stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_lowercase().as_str())),
        None => stages.len().checked_sub(1),
    }
}

/// The Dockerfile path of a local build: its own, else the context's
/// `Dockerfile` (as the plan names it). None for a remote context.
pub fn path_of(spec: &BuildSpec) -> Option<PathBuf> {
    if is_remote_context(&spec.context) {
        return None;
    }
    Some(
        spec.dockerfile
            .as_deref()
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(normalize(&Path::new(&spec.context).join("Dockerfile")))
            }),
    )
}

/// Every build's Dockerfile, each read once. One that cannot be read is
/// absent: the digest then reports it, by its own rules.
#[derive(Debug, Clone, Default)]
pub struct Dockerfiles(BTreeMap<PathBuf, Dockerfile>);

impl Dockerfiles {
    /// Read the Dockerfile of each of these builds (each path once).
    pub fn read<'a>(specs: impl IntoIterator<Item = &'a BuildSpec>) -> Dockerfiles {
        let mut map = BTreeMap::new();
        for path in specs.into_iter().filter_map(path_of) {
            if map.contains_key(&path) {
                continue;
            }
            if let Ok(d) = Dockerfile::read(&path) {
                map.insert(path, d);
            }
        }
        Dockerfiles(map)
    }

    /// The Dockerfile of one build, when it was read.
    pub fn of(&self, spec: &BuildSpec) -> Option<&Dockerfile> {
        self.0.get(&path_of(spec)?)
    }
}

/// A `FROM`'s image and stage name (`AS name`), flags left out.
pub fn from_operands(rest: &str) -> Option<(String, Option<String>)> {
    let mut parts = words(rest).into_iter().filter(|w| !w.starts_with("--"));
    let image = parts.next()?;
    let name = match (parts.next(), parts.next()) {
        (Some(as_kw), Some(n)) if as_kw.eq_ignore_ascii_case("as") => Some(n),
        _ => None,
    };
    Some((image, name))
}

/// The escape character the parser directives set (`\` unless `# escape=`),
/// and the lines after the directives.
fn directives(text: &str) -> (char, std::iter::Peekable<std::str::Lines<'_>>) {
    let mut escape = '\\';
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.peek() {
        let t = l.trim();
        let Some(d) = t.strip_prefix('#') else { break };
        let d = d.trim();
        match d.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("escape") => {
                escape = v.trim().chars().next().unwrap_or('\\');
            }
            Some((k, _))
                if k.trim().eq_ignore_ascii_case("syntax")
                    || k.trim().eq_ignore_ascii_case("check") => {}
            _ => break,
        }
        lines.next();
    }
    (escape, lines)
}

/// The Dockerfile's instructions: (KEYWORD, the rest), with continuation
/// lines joined and comments dropped.
pub fn instructions(text: &str) -> Vec<(String, String)> {
    read_instructions(text).0
}

/// The instructions, and whether the text ends open (in a continuation or
/// an unterminated heredoc).
fn read_instructions(text: &str) -> (Vec<(String, String)>, bool) {
    let (escape, mut lines) = directives(text);
    let mut open = false;
    let mut out = Vec::new();
    let mut current = String::new();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue; // a blank or comment line inside a continued instruction
        }
        let (body, more) = match t.strip_suffix(escape) {
            Some(b) => (b, true),
            None => (t, false),
        };
        current.push_str(body);
        current.push(' ');
        if !more {
            push_instruction(&mut out, &current);
            // A heredoc's body is not instructions: its lines are skipped
            // up to its terminator, as BuildKit reads them.
            for doc in out.last().map(heredocs).unwrap_or_default() {
                open = true;
                for body_line in lines.by_ref() {
                    let l = if doc.chomp {
                        body_line.trim_start_matches('\t')
                    } else {
                        body_line
                    };
                    if l == doc.name {
                        open = false;
                        break;
                    }
                }
            }
            current.clear();
        }
    }
    if !current.is_empty() {
        open = true;
        push_instruction(&mut out, &current);
    }
    (out, open)
}

/// One heredoc an instruction opens: its terminator, and whether leading
/// tabs are stripped before comparing (`<<-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub chomp: bool,
}

/// The heredocs an instruction opens, in order, as BuildKit's parser finds
/// them (dockerfile 1.4, `parser.go`): only in `RUN`, `COPY` and `ADD` (and
/// `ONBUILD` of one of them) not in JSON form; each word of the line (split
/// as the shell does, quotes kept) that is `[N]<<[-]WORD` with WORD one word
/// once unquoted.
pub fn heredocs(instruction: &(String, String)) -> Vec<Heredoc> {
    let (kw, rest) = instruction;
    let mut rest = rest.as_str();
    let mut kw = kw.as_str();
    if kw == "ONBUILD" {
        let (k, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        kw = k;
        rest = r.trim_start();
    }
    let may_hold = ["RUN", "COPY", "ADD"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(kw));
    if !may_hold || !rest.contains("<<") || is_json_array(rest) {
        return Vec::new();
    }
    shell_words(rest)
        .iter()
        .filter_map(|w| {
            let digits = w.len() - w.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let after = w[digits..].strip_prefix("<<")?;
            let (chomp, word) = match after.strip_prefix('-') {
                Some(a) => (true, a),
                None => (false, after),
            };
            let word = word.trim_start();
            if word.is_empty() || word.contains('<') {
                return None;
            }
            let unquoted = shell_words(word);
            match unquoted.as_slice() {
                [one] => Some(Heredoc {
                    name: one.replace(['"', '\''], ""),
                    chomp,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Is this the JSON (exec) form, `["a", "b"]`?
fn is_json_array(rest: &str) -> bool {
    let t = rest.trim();
    t.starts_with('[') && t.ends_with(']') && serde_json::from_str::<Vec<String>>(t).is_ok()
}

/// The words of a line as a shell splits them, quotes kept in the words
/// (BuildKit's `RawQuotes`): whitespace outside quotes separates; `\`
/// escapes the next character outside single quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                word.push(c);
                in_word = true;
            }
            (Some(q), c) if c == q => {
                quote = None;
                word.push(c);
            }
            (q, '\\') if q != Some('\'') => {
                word.push(c);
                if let Some(n) = chars.next() {
                    word.push(n);
                }
                in_word = true;
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn push_instruction(out: &mut Vec<(String, String)>, text: &str) {
    let text = text.trim();
    let (kw, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    out.push((kw.to_ascii_uppercase(), rest.trim().to_string()));
}

/// Whitespace-separated words, with quotes removed.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(unquote).collect()
}

pub fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// One `ARG` line's declarations: each name with its default, if any.
pub fn arg_declarations(rest: &str) -> Vec<(String, Option<String>)> {
    words(rest)
        .into_iter()
        .map(|decl| match decl.split_once('=') {
            Some((n, d)) => (n.to_string(), Some(unquote(d))),
            None => (decl.clone(), None),
        })
        .collect()
}

/// The value of one `${NAME<op>word}` expression.
fn expand(op: &str, value: Option<String>) -> String {
    let set = value.as_deref().is_some_and(|v| !v.is_empty());
    if let Some(d) = op.strip_prefix(":-") {
        if set {
            value.unwrap_or_default()
        } else {
            d.to_string()
        }
    } else if let Some(d) = op.strip_prefix('-') {
        value.unwrap_or_else(|| d.to_string())
    } else if let Some(a) = op.strip_prefix(":+") {
        if set {
            a.to_string()
        } else {
            String::new()
        }
    } else if let Some(a) = op.strip_prefix('+') {
        if value.is_some() {
            a.to_string()
        } else {
            String::new()
        }
    } else {
        value.unwrap_or_default()
    }
}

/// `$A`, `${A}`, `${A:-x}`, `${A-x}`, `${A:+x}`, `${A+x}` from the globals.
pub fn substitute(text: &str, vars: &BTreeMap<String, Option<String>>) -> String {
    let get = |n: &str| vars.get(n).cloned().flatten();
    let name_len = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('{') {
            let Some(close) = r.find('}') else {
                out.push_str("${");
                rest = r;
                continue;
            };
            let expr = &r[..close];
            rest = &r[close + 1..];
            let (name, op) = expr.split_at(name_len(expr));
            out.push_str(&expand(op, get(name)));
        } else {
            let n = name_len(rest);
            if n == 0 {
                out.push('$');
                continue;
            }
            out.push_str(&get(&rest[..n]).unwrap_or_default());
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    out
}

/// Does a parser directive at the top set the escape character?
fn has_escape_directive(text: &str) -> bool {
    text.lines()
        .take_while(|l| l.trim_start().starts_with('#'))
        .any(|l| {
            let d = l
                .trim_start()
                .trim_start_matches('#')
                .trim()
                .to_ascii_lowercase();
            d.starts_with("escape")
        })
}

/// [`Dockerfile::labels_can_go_last`] for a Dockerfile's text.
pub fn labels_can_go_last(text: &str, target: Option<&str>) -> bool {
    Dockerfile::parse(text).labels_can_go_last(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stages_a_target_needs() {
        let df = Dockerfile::parse(
            "FROM node:20 AS Deps\nRUN npm ci\nFROM deps AS test\nRUN npm test\nFROM golang AS tools\nFROM scratch AS assets\nCOPY --from=tools /x /x\nFROM alpine\nCOPY --from=deps /n /n\nRUN --mount=type=bind,from=assets,target=/a true\nCOPY --from=nginx:1 /etc/nginx /n\n",
        );
        let ids = |t: Option<&str>| -> Vec<String> {
            df.stages_needed(t).iter().map(Stage::id).collect()
        };
        // The last stage needs deps and assets, and assets needs tools; not test.
        assert_eq!(ids(None), ["deps", "tools", "assets"]);
        assert_eq!(ids(Some("test")), ["deps"]);
        assert_eq!(ids(Some("deps")), Vec::<String>::new());
        let numbered = Dockerfile::parse("FROM a\nRUN x\nFROM b\nCOPY --from=0 /x /x\n");
        assert_eq!(
            numbered
                .stages_needed(None)
                .iter()
                .map(Stage::id)
                .collect::<Vec<_>>(),
            ["0"]
        );
        assert!(Dockerfile::parse("FROM scratch\n")
            .stages_needed(None)
            .is_empty());
    }

    #[test]
    fn nothing_inside_a_heredoc_is_an_instruction() {
        let df = Dockerfile::parse(
            "# syntax=docker/dockerfile:1\nFROM base AS build\nRUN <<EOF\nset -e\nfrom flask import Flask\nFROM python AS fake\nEOF\nRUN <<-\"EOT\" cat > /x <<ZZ\n\tFROM tabbed\n\tEOT\nCOPY evil\nZZ\nRUN [\"sh\", \"-c\", \"echo <<NOPE\"]\nFROM scratch\nCOPY <<EOF /app/main.py\nfrom flask import Flask\nEOF\nCOPY --from=build /out /out\n",
        );
        let kws: Vec<&str> = df.instructions().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kws, ["FROM", "RUN", "RUN", "RUN", "FROM", "COPY", "COPY"]);
        let froms: Vec<&str> = df
            .instructions()
            .iter()
            .filter(|(k, _)| k == "FROM")
            .map(|(_, r)| r.as_str())
            .collect();
        assert_eq!(froms, ["base AS build", "scratch"]);
        assert_eq!(
            df.stages_needed(None)
                .iter()
                .map(Stage::id)
                .collect::<Vec<_>>(),
            ["build"]
        );
    }

    #[test]
    fn heredoc_words_as_buildkit_finds_them() {
        let h = |kw: &str, rest: &str| heredocs(&(kw.to_string(), rest.to_string()));
        let names = |v: Vec<Heredoc>| v.into_iter().map(|d| (d.name, d.chomp)).collect::<Vec<_>>();
        assert_eq!(names(h("RUN", "<<EOF")), [("EOF".to_string(), false)]);
        assert_eq!(
            names(h("RUN", "3<<-'END' cat")),
            [("END".to_string(), true)]
        );
        assert_eq!(
            names(h("COPY", "<<a <<\"b\" /dest/")),
            [("a".to_string(), false), ("b".to_string(), false)]
        );
        assert!(
            h("RUN", "echo \"<<EOF\"").is_empty(),
            "quoted: a plain word"
        );
        assert!(h("RUN", "[\"echo\", \"<<EOF\"]").is_empty(), "JSON form");
        assert!(h("ENV", "A=<<EOF").is_empty(), "only RUN, COPY, ADD");
        assert_eq!(names(h("ONBUILD", "RUN <<X")), [("X".to_string(), false)]);
        assert!(h("RUN", "cat <<").is_empty());
    }

    #[test]
    fn labels_go_last_unless_a_target_or_escape_directive_says_otherwise() {
        let df = "FROM scratch AS build\nCOPY a /a\n\nfrom   --platform=linux/amd64 scratch   as Prod\nCOPY b /b\n";
        assert!(labels_can_go_last(df, None));
        assert!(labels_can_go_last(df, Some("prod")));
        assert!(!labels_can_go_last(df, Some("build")));
        assert!(!labels_can_go_last("# escape=`\nFROM scratch\n", None));
        // Docker would join the line to an open continuation, past blank
        // and comment lines, or read it as a heredoc's body.
        assert!(!labels_can_go_last(
            "FROM scratch\nRUN apt-get install -y \\\n\n# c\n",
            None
        ));
        assert!(!labels_can_go_last("FROM scratch\nRUN <<EOF\necho\n", None));
        assert!(labels_can_go_last(
            "FROM scratch\nRUN <<EOF\necho\nEOF\n",
            None
        ));
        assert!(!labels_can_go_last("FROM scratch\n", Some("x")));
        let cont = "FROM scratch \\\n  AS one\nFROM scratch \\\n  AS two\n";
        assert!(labels_can_go_last(cont, Some("two")));
    }
}

#[cfg(test)]
mod declared_args_tests {
    use super::*;

    #[test]
    fn the_args_a_build_reads_global_and_of_the_stages_it_needs() {
        let d = Dockerfile::parse(
            "ARG BASE=debian\nFROM $BASE AS deps\nARG NODE_ENV TOKEN=x\nFROM scratch AS unused\nARG ONLY_UNUSED\nFROM deps AS final\nARG RAILS_ENV\n",
        );
        let names = |t: Option<&str>| d.declared_args(t).into_iter().collect::<Vec<_>>();
        assert_eq!(names(None), ["BASE", "NODE_ENV", "RAILS_ENV", "TOKEN"]);
        assert_eq!(names(Some("deps")), ["BASE", "NODE_ENV", "TOKEN"]);
        assert_eq!(names(Some("unused")), ["BASE", "ONLY_UNUSED"]);
    }
}
