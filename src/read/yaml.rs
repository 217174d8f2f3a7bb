//! A YAML document as a tree whose every node knows its byte range in the
//! source text.
//!
//! The same tree serves reading (what the compose file says) and editing (which
//! bytes to replace), so the two can never disagree. Built on saphyr-parser's
//! event stream; its markers count characters, which are turned into byte
//! offsets here.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;
use std::fmt;

pub type NodeId = usize;

/// A position for messages: line and column, both counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Clone, Debug)]
pub enum Kind {
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<NodeId>),
    Map(Vec<Entry>),
    /// An alias, with the node its anchor names.
    Alias(NodeId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: NodeId,
    pub value: NodeId,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    /// Byte range in the source: for a key or scalar its text (quotes
    /// included), for a flow collection the brackets, for a block collection
    /// from its first to the end of its last child.
    pub start: usize,
    pub end: usize,
    pub pos: Pos,
    pub flow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "line {}, column {}: {}", p.line, p.col, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for YamlError {}

#[derive(Debug, Clone)]
pub struct Doc {
    pub nodes: Vec<Node>,
    /// None for a stream with no document (empty, or only comments).
    pub root: Option<NodeId>,
}

/// What a mapping lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// The value node, aliases not followed.
    pub value: NodeId,
    /// The entry when it is written in the mapping itself; None when it comes
    /// in through a merge key (`<<`).
    pub own: Option<Entry>,
}

/// How deep merge keys may nest before we call it a cycle.
const MAX_MERGE_DEPTH: usize = 64;

/// Character index to byte offset, for sources that are not all ASCII.
struct CharMap {
    ascii: bool,
    /// Byte offset of every 256th character.
    checkpoints: Vec<usize>,
}

impl CharMap {
    const STEP: usize = 256;

    fn new(src: &str) -> Self {
        if src.is_ascii() {
            return CharMap {
                ascii: true,
                checkpoints: Vec::new(),
            };
        }
        let checkpoints = src
            .char_indices()
            .step_by(Self::STEP)
            .map(|(b, _)| b)
            .collect();
        CharMap {
            ascii: false,
            checkpoints,
        }
    }

    fn byte(&self, src: &str, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(src.len());
        }
        let slot = char_index / Self::STEP;
        let Some(&base) = self.checkpoints.get(slot) else {
            return src.len();
        };
        let rest = char_index % Self::STEP;
        src[base..]
            .char_indices()
            .nth(rest)
            .map_or(src.len(), |(b, _)| base + b)
    }
}

enum Frame {
    Seq {
        id: NodeId,
        items: Vec<NodeId>,
    },
    Map {
        id: NodeId,
        entries: Vec<Entry>,
        key: Option<NodeId>,
        seen: HashMap<String, Pos>,
    },
}

struct Builder<'s> {
    src: &'s str,
    chars: CharMap,
    nodes: Vec<Node>,
    anchors: HashMap<usize, NodeId>,
    stack: Vec<(Frame, usize)>,
    root: Option<NodeId>,
    documents: usize,
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

impl<'s> Builder<'s> {
    fn byte(&self, char_index: usize) -> usize {
        self.chars.byte(self.src, char_index)
    }

    fn push_node(&mut self, kind: Kind, start: usize, end: usize, pos: Pos, flow: bool) -> NodeId {
        self.nodes.push(Node {
            kind,
            start,
            end,
            pos,
            flow,
        });
        self.nodes.len() - 1
    }

    /// When a mapping is waiting for a value: the byte after the `:` that
    /// follows its key.
    fn after_pending_colon(&self) -> Option<usize> {
        let Some((Frame::Map { key: Some(k), .. }, _)) = self.stack.last() else {
            return None;
        };
        let from = self.nodes[*k].end;
        let rest = &self.src[from..];
        let skipped = rest.len() - rest.trim_start().len();
        rest[skipped..]
            .starts_with(':')
            .then_some(from + skipped + 1)
    }

    /// The header of an empty block scalar whose span is at `fallback`:
    /// after its key's `:`, or just before the span.
    fn block_header(&self, fallback: usize) -> (usize, usize) {
        let is_header = |c: char| "|>+-0123456789".contains(c);
        let from = match self.after_pending_colon() {
            Some(after) => {
                // Skip whitespace (line breaks too) and any anchor or tag.
                let mut at = after;
                loop {
                    let rest = &self.src[at..];
                    let ws = rest.len() - rest.trim_start().len();
                    at += ws;
                    let rest = &self.src[at..];
                    if rest.starts_with(['&', '!']) {
                        at += rest.find(char::is_whitespace).unwrap_or(rest.len());
                    } else {
                        break;
                    }
                }
                at
            }
            None => {
                let before = self.src[..fallback].trim_end();
                let header_len = before.len() - before.trim_end_matches(is_header).len();
                before.len() - header_len
            }
        };
        let header = self.src[from..].len() - self.src[from..].trim_start_matches(is_header).len();
        if header == 0 {
            return (fallback, fallback);
        }
        (from, from + header)
    }

    fn register_anchor(&mut self, anchor: usize, id: NodeId) {
        if anchor != 0 {
            self.anchors.insert(anchor, id);
        }
    }

    /// Hang a finished node on its parent.
    fn attach(&mut self, id: NodeId) -> Result<(), YamlError> {
        let Some((frame, _)) = self.stack.last_mut() else {
            if self.root.is_some() {
                return Err(YamlError {
                    pos: Some(self.nodes[id].pos),
                    message: "more than one YAML document; a compose file holds one".into(),
                });
            }
            self.root = Some(id);
            return Ok(());
        };
        match frame {
            Frame::Seq { items, .. } => items.push(id),
            Frame::Map {
                entries, key, seen, ..
            } => match key.take() {
                None => {
                    if let Kind::Scalar { value, .. } = &self.nodes[id].kind {
                        let here = self.nodes[id].pos;
                        if let Some(first) = seen.insert(value.clone(), here) {
                            return Err(YamlError {
                                pos: Some(here),
                                message: format!(
                                    "duplicate key `{value}` (first at line {}, column {})",
                                    first.line, first.col
                                ),
                            });
                        }
                    }
                    *key = Some(id);
                }
                Some(k) => entries.push(Entry { key: k, value: id }),
            },
        }
        Ok(())
    }

    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<(), YamlError> {
        let pos = pos_of(&span);
        match ev {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YamlError {
                        pos: Some(pos),
                        message: "more than one YAML document; a compose file holds one".into(),
                    });
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let (start, end) = self.scalar_range(&value, style, &span);
                let kind = Kind::Scalar {
                    value: value.into_owned(),
                    plain: style == ScalarStyle::Plain,
                };
                let id = self.push_node(kind, start, end, pos, false);
                self.register_anchor(anchor, id);
                self.attach(id)?;
            }
            Event::Alias(anchor) => {
                let Some(&target) = self.anchors.get(&anchor) else {
                    return Err(YamlError {
                        pos: Some(pos),
                        message: "alias to an anchor that is not defined before it".into(),
                    });
                };
                let (start, end) = (self.byte(span.start.index()), self.byte(span.end.index()));
                let id = self.push_node(Kind::Alias(target), start, end, pos, false);
                self.attach(id)?;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                self.start_collection(is_map, anchor, &span, pos);
            }
            Event::SequenceEnd | Event::MappingEnd => self.end_collection(&span)?,
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    /// The byte range of a scalar's node, from its event's span.
    fn scalar_range(&self, value: &str, style: ScalarStyle, span: &Span) -> (usize, usize) {
        let mut start = self.byte(span.start.index());
        let mut end = self.byte(span.end.index());
        // A quoted scalar's span can run on over a trailing comment;
        // end it at its closing quote.
        match style {
            // A block scalar's span runs on over its final line break
            // and the next line's indentation: end at its last text.
            ScalarStyle::Literal | ScalarStyle::Folded if value.is_empty() => {
                // No content. Its span is either its properties and
                // header (`&a >-`) and what follows them, or empty
                // somewhere on a later line; the node is its header.
                let text = self.src[start..end].trim_end();
                if text.ends_with(|c: char| "|>+-0123456789".contains(c)) {
                    end = start + text.len();
                } else {
                    let (s, e) = self.block_header(start);
                    start = s;
                    end = e;
                }
            }
            ScalarStyle::Literal | ScalarStyle::Folded => {
                end = start + self.src[start..end].trim_end().len();
            }
            ScalarStyle::DoubleQuoted => end = quoted_end(self.src, start, '"').unwrap_or(end),
            ScalarStyle::SingleQuoted => end = quoted_end(self.src, start, '\'').unwrap_or(end),
            _ => {}
        }
        let has_properties = self.src[start..end].starts_with(['&', '!']);
        if value.is_empty() && style == ScalarStyle::Plain && has_properties {
            // `key: &anchor` with no value: the node is its anchor
            // (or tag) text.
            end = start + self.src[start..end].trim_end().len();
        } else if value.is_empty() && style == ScalarStyle::Plain {
            // An empty plain scalar has no text, whatever its span
            // says (in flow style it can cover the next `, `). As a
            // value it sits at its key's end, before the `:`; move it
            // after the `:` so the entry's range covers that.
            end = start;
            if let Some(after) = self.after_pending_colon() {
                start = after;
                end = after;
            }
        }
        (start, end)
    }

    /// A mapping or sequence begins: its node, and a frame for its items.
    fn start_collection(&mut self, is_map: bool, anchor: usize, span: &Span, pos: Pos) {
        let start = self.byte(span.start.index());
        let kind = if is_map {
            Kind::Map(Vec::new())
        } else {
            Kind::Seq(Vec::new())
        };
        let id = self.push_node(kind, start, start, pos, false);
        let frame = if is_map {
            Frame::Map {
                id,
                entries: Vec::new(),
                key: None,
                seen: HashMap::new(),
            }
        } else {
            Frame::Seq {
                id,
                items: Vec::new(),
            }
        };
        self.stack.push((frame, anchor));
    }

    /// A mapping or sequence ends: its items and its byte range.
    fn end_collection(&mut self, span: &Span) -> Result<(), YamlError> {
        let Some((frame, anchor)) = self.stack.pop() else {
            return Ok(());
        };
        // A flow collection's end event covers its closing bracket; a
        // block collection's is empty and sits where the next token is.
        let flow = span.end.index() > span.start.index();
        let (id, kind, last) = match frame {
            Frame::Seq { id, items } => {
                let last = items.last().copied();
                (id, Kind::Seq(items), last)
            }
            Frame::Map { id, entries, .. } => {
                let last = entries.last().map(|e| e.value);
                (id, Kind::Map(entries), last)
            }
        };
        let end = if flow {
            closing_bracket(self.src, self.byte(span.start.index()))
        } else {
            last.map_or(self.nodes[id].start, |l| self.nodes[l].end)
        };
        let node = &mut self.nodes[id];
        node.kind = kind;
        node.end = end;
        node.flow = flow;
        self.register_anchor(anchor, id);
        self.attach(id)
    }
}

/// The byte after the `]` or `}` that closes a flow collection whose end
/// event is at `at`: the event can sit on a trailing comma before it.
fn closing_bracket(src: &str, at: usize) -> usize {
    let mut comment = false;
    for (i, c) in src[at..].char_indices() {
        match c {
            '\n' | '\r' => comment = false,
            _ if comment => {}
            '#' => comment = true,
            ']' | '}' => return at + i + 1,
            ',' | ' ' | '\t' => {}
            _ => break,
        }
    }
    (at + 1).min(src.len())
}

/// The byte after the closing quote of a quoted scalar that starts at `start`.
fn quoted_end(src: &str, start: usize, quote: char) -> Option<usize> {
    let body = src.get(start..)?.strip_prefix(quote)?;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if quote == '"' && c == '\\' {
            chars.next();
        } else if c == quote {
            if quote == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') {
                chars.next();
                continue;
            }
            return Some(start + 1 + i + 1);
        }
    }
    None
}

impl Doc {
    /// Parse one YAML document, keeping byte ranges.
    pub fn parse(src: &str) -> Result<Doc, YamlError> {
        let mut b = Builder {
            src,
            chars: CharMap::new(src),
            nodes: Vec::new(),
            anchors: HashMap::new(),
            stack: Vec::new(),
            root: None,
            documents: 0,
        };
        let mut parser = Parser::new_from_str(src);
        while let Some(next) = parser.next_event() {
            match next {
                Ok((ev, span)) => b.event(ev, span)?,
                Err(e) => {
                    let m = e.marker();
                    return Err(YamlError {
                        pos: Some(Pos {
                            line: m.line(),
                            col: m.col() + 1,
                        }),
                        message: e.info().to_string(),
                    });
                }
            }
        }
        Ok(Doc {
            nodes: b.nodes,
            root: b.root,
        })
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Follow aliases to the node they name.
    pub fn resolve(&self, mut id: NodeId) -> NodeId {
        // Aliases only point backwards at finished nodes, so this ends.
        while let Kind::Alias(target) = self.nodes[id].kind {
            id = target;
        }
        id
    }

    pub fn is_alias(&self, id: NodeId) -> bool {
        matches!(self.nodes[id].kind, Kind::Alias(_))
    }

    /// The scalar text of a node (aliases followed).
    pub fn scalar(&self, id: NodeId) -> Option<&str> {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A scalar that YAML reads as null (`~`, `null`, or nothing at all).
    pub fn is_null(&self, id: NodeId) -> bool {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Scalar { value, plain } => {
                *plain && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
            _ => false,
        }
    }

    /// The entries written in a mapping (aliases followed), or None when the
    /// node is not a mapping.
    pub fn entries(&self, id: NodeId) -> Option<&[Entry]> {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Map(e) => Some(e),
            _ => None,
        }
    }

    pub fn items(&self, id: NodeId) -> Option<&[NodeId]> {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_merge_key(&self, key: NodeId) -> bool {
        matches!(&self.nodes[key].kind, Kind::Scalar { value, plain: true } if value == "<<")
    }

    /// Look a key up in a mapping the way YAML merge keys define it: the
    /// mapping's own entries first, then each merged mapping in order.
    pub fn get(&self, map: NodeId, key: &str) -> Option<Found> {
        self.get_depth(map, key, 0)
    }

    fn get_depth(&self, map: NodeId, key: &str, depth: usize) -> Option<Found> {
        if depth > MAX_MERGE_DEPTH {
            return None;
        }
        let entries = self.entries(map)?;
        if let Some(e) = entries
            .iter()
            .find(|e| !self.is_merge_key(e.key) && self.scalar(e.key) == Some(key))
        {
            return Some(Found {
                value: e.value,
                own: Some(*e),
            });
        }
        for e in entries.iter().filter(|e| self.is_merge_key(e.key)) {
            let sources: Vec<NodeId> = match self.items(e.value) {
                Some(items) => items.to_vec(),
                None => vec![e.value],
            };
            for s in sources {
                if let Some(f) = self.get_depth(s, key, depth + 1) {
                    return Some(Found {
                        value: f.value,
                        own: None,
                    });
                }
            }
        }
        None
    }

    /// The merge-key entry of a mapping, if it has one.
    pub fn merge_entry(&self, map: NodeId) -> Option<Entry> {
        self.entries(map)?
            .iter()
            .find(|e| self.is_merge_key(e.key))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(src: &'a str, doc: &Doc, id: NodeId) -> &'a str {
        &src[doc.node(id).start..doc.node(id).end]
    }

    #[test]
    fn byte_ranges_cover_scalars_flow_and_block_collections() {
        let src = "a: &x\n  b: \"q\\\"\" # c\n  s: 'it''s' #\n  c: [1, 2]\nd: {e: f}  # t\ng: *x\n";
        let doc = Doc::parse(src).unwrap();
        let root = doc.root.unwrap();
        let a = doc.get(root, "a").unwrap().value;
        assert_eq!(
            text(src, &doc, a),
            "&x\n  b: \"q\\\"\" # c\n  s: 'it''s' #\n  c: [1, 2]"
        );
        let b = doc.get(a, "b").unwrap().value;
        assert_eq!(text(src, &doc, b), "\"q\\\"\"");
        let s = doc.get(a, "s").unwrap().value;
        assert_eq!(text(src, &doc, s), "'it''s'");
        let d = doc.get(root, "d").unwrap().value;
        assert_eq!(text(src, &doc, d), "{e: f}");
        assert!(doc.node(d).flow);
        let g = doc.get(root, "g").unwrap().value;
        assert_eq!(text(src, &doc, g), "*x");
        assert_eq!(doc.resolve(g), a);
    }

    #[test]
    fn a_flow_collection_with_a_trailing_comma_ends_at_its_bracket() {
        let src = "a: {b: 1, c: [2, 3,],  }\n";
        let doc = Doc::parse(src).unwrap();
        let a = doc.get(doc.root.unwrap(), "a").unwrap().value;
        assert_eq!(text(src, &doc, a), "{b: 1, c: [2, 3,],  }");
        let c = doc.get(a, "c").unwrap().value;
        assert_eq!(text(src, &doc, c), "[2, 3,]");
    }

    #[test]
    fn a_block_scalar_ends_at_its_last_text() {
        let src = "a:\n  b: |\n    one\n    two\n\n  c: >-\n    x\n  d: 1\n";
        let doc = Doc::parse(src).unwrap();
        let a = doc.get(doc.root.unwrap(), "a").unwrap().value;
        assert_eq!(
            text(src, &doc, doc.get(a, "b").unwrap().value),
            "one\n    two"
        );
        assert_eq!(text(src, &doc, doc.get(a, "c").unwrap().value), "x");
    }

    #[test]
    fn an_empty_block_scalar_is_its_header() {
        let src = "a:\n  b: >-\n  c: 1\nd:\n  - |\n  - x\n";
        let doc = Doc::parse(src).unwrap();
        let a = doc.get(doc.root.unwrap(), "a").unwrap().value;
        assert_eq!(text(src, &doc, doc.get(a, "b").unwrap().value), ">-");
        assert_eq!(text(src, &doc, a), "b: >-\n  c: 1");
        let d = doc.get(doc.root.unwrap(), "d").unwrap().value;
        assert_eq!(text(src, &doc, doc.items(d).unwrap()[0]), "|");
        let src = "a:\n  b:\n    &x >-\n  c: 1\n";
        let doc = Doc::parse(src).unwrap();
        let a = doc.get(doc.root.unwrap(), "a").unwrap().value;
        assert_eq!(text(src, &doc, a), "b:\n    &x >-\n  c: 1");
        let src = "a:\n  - &n >-\n  - x\nb: 1\n";
        let doc = Doc::parse(src).unwrap();
        let a = doc.get(doc.root.unwrap(), "a").unwrap().value;
        assert_eq!(text(src, &doc, doc.items(a).unwrap()[0]), "&n >-");
    }

    #[test]
    fn an_empty_value_with_an_anchor_covers_the_anchor() {
        let src = "w:\n  image: &a   # c\n  command: x\n";
        let doc = Doc::parse(src).unwrap();
        let w = doc.get(doc.root.unwrap(), "w").unwrap().value;
        let image = doc.get(w, "image").unwrap().value;
        assert_eq!(text(src, &doc, image), "&a");
        assert!(doc.is_null(image));
    }

    #[test]
    fn an_empty_flow_value_covers_no_text() {
        let src = "a: {image, \"q\", k: v}\n";
        let doc = Doc::parse(src).unwrap();
        let a = doc.get(doc.root.unwrap(), "a").unwrap().value;
        let image = doc.get(a, "image").unwrap().value;
        assert_eq!(doc.node(image).start, doc.node(image).end);
        assert_eq!(doc.node(image).start, src.find("image").unwrap() + 5);
    }

    #[test]
    fn an_empty_value_ends_after_its_colon() {
        let src = "b:\n  args:\n# c\nx: {k: , j: 1}\n";
        let doc = Doc::parse(src).unwrap();
        let root = doc.root.unwrap();
        let b = doc.get(root, "b").unwrap().value;
        assert_eq!(&src[doc.node(b).start..doc.node(b).end], "args:");
        let x = doc.get(root, "x").unwrap().value;
        let k = doc.get(x, "k").unwrap().value;
        assert_eq!(doc.node(k).start, src.find("k:").unwrap() + 2);
        assert!(doc.is_null(k));
    }

    #[test]
    fn offsets_are_bytes_even_after_multibyte_characters() {
        let src = "# héllo wörld ✓\nk: \"é\"\nv: x\n";
        let doc = Doc::parse(src).unwrap();
        let root = doc.root.unwrap();
        let v = doc.get(root, "v").unwrap().value;
        assert_eq!(text(src, &doc, v), "x");
        let k = doc.get(root, "k").unwrap().value;
        assert_eq!(text(src, &doc, k), "\"é\"");
    }

    #[test]
    fn char_map_agrees_with_char_indices_past_many_checkpoints() {
        let src: String = (0..2000)
            .map(|i| if i % 3 == 0 { 'é' } else { 'a' })
            .collect();
        let map = CharMap::new(&src);
        for (ci, (b, _)) in src.char_indices().enumerate() {
            assert_eq!(map.byte(&src, ci), b);
        }
        assert_eq!(map.byte(&src, src.chars().count()), src.len());
    }

    #[test]
    fn merge_keys_are_looked_up_after_own_entries() {
        let src =
            "b: &b {build: ., image: i}\nc: &c {command: x}\ns:\n  <<: [*c, *b]\n  image: own\n";
        let doc = Doc::parse(src).unwrap();
        let s = doc.get(doc.root.unwrap(), "s").unwrap().value;
        let image = doc.get(s, "image").unwrap();
        assert!(image.own.is_some());
        assert_eq!(doc.scalar(image.value), Some("own"));
        let build = doc.get(s, "build").unwrap();
        assert_eq!(build.own, None);
        assert_eq!(doc.scalar(build.value), Some("."));
        assert!(doc.get(s, "nothing").is_none());
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_positions() {
        let err = Doc::parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 3, col: 1 }));
        assert!(err.message.contains("first at line 1"), "{err}");
    }

    #[test]
    fn scanner_errors_carry_line_and_column() {
        let err = Doc::parse("a:\n\t- 1\n").unwrap_err();
        assert_eq!(err.pos.map(|p| p.line), Some(2));
    }

    #[test]
    fn a_second_document_is_an_error_and_an_empty_stream_has_no_root() {
        assert!(Doc::parse("a: 1\n---\nb: 2\n").is_err());
        assert!(Doc::parse("# only a comment\n").unwrap().root.is_none());
    }
}
