//! The part of Go's `regexp` syntax that docker's `.dockerignore` matcher
//! produces, evaluated the way Go evaluates it.
//!
//! Docker turns each ignore pattern into a Go regular expression by hand
//! (moby/patternmatcher `Pattern.compile`), escaping only some characters,
//! so a pattern can reach Go's regexp parser with classes, groups,
//! alternation and repetition in it. This module parses that syntax as Go's
//! `regexp/syntax` does with its Perl flags: `|`, `(…)`, `(?:…)`, `*`, `+`,
//! `?`, `{n}`, `{n,}`, `{n,m}` (a `{` that is not one is literal), a lazy `?`
//! after any of them, `^` and `$` (text anchors), `.` (not `\n`), classes with
//! `^`, ranges, a leading `]`, `[:name:]` and `\d\s\w` (and their negations),
//! and escapes of punctuation. What Go rejects is an error here too; the few
//! things Go accepts that this does not (`\b`, `\p{…}`, `\Q…\E`, octal and
//! hex escapes, flags) are errors as well, so a pattern is never guessed at.
//!
//! Matching is Go's `MatchString`: unanchored, true when some substring
//! matches. It works on sets of positions, so it never backtracks.

/// One parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Re {
    Empty,
    /// One character from these ranges (negated already folded in).
    Class(Vec<(char, char)>),
    Start,
    End,
    Concat(Vec<Re>),
    Alt(Vec<Re>),
    Repeat(Box<Re>, u32, Option<u32>),
}

const MAX: char = char::MAX;

pub fn parse(src: &str) -> Result<Re, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut p = Parser { s: &chars, i: 0 };
    let re = p.alt()?;
    if p.i < chars.len() {
        return Err("unexpected )".into());
    }
    Ok(re)
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn alt(&mut self) -> Result<Re, String> {
        let mut alts = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.i += 1;
            alts.push(self.concat()?);
        }
        Ok(if alts.len() == 1 {
            alts.remove(0)
        } else {
            Re::Alt(alts)
        })
    }

    fn concat(&mut self) -> Result<Re, String> {
        let mut items: Vec<Re> = Vec::new();
        // Was the last item made by a repetition operator?
        let mut repeated = false;
        while let Some(c) = self.peek() {
            match c {
                '|' | ')' => break,
                '*' | '+' | '?' | '{' => {
                    let Some((min, max, len)) = self.repetition() else {
                        // A `{` that is not a repetition is a literal.
                        self.i += 1;
                        items.push(lit('{'));
                        repeated = false;
                        continue;
                    };
                    if repeated {
                        return Err("invalid nested repetition operator".into());
                    }
                    let Some(last) = items.pop() else {
                        return Err("missing argument to repetition operator".into());
                    };
                    self.i += len;
                    if self.peek() == Some('?') {
                        self.i += 1; // lazy: the same set of matches
                    }
                    items.push(Re::Repeat(Box::new(last), min, max));
                    repeated = true;
                    continue;
                }
                _ => {}
            }
            repeated = false;
            self.i += 1;
            let item = match c {
                '(' => {
                    if self.peek() == Some('?') {
                        if self.s.get(self.i + 1) == Some(&':') {
                            self.i += 2;
                        } else {
                            return Err("regexp flags and named groups are not supported".into());
                        }
                    }
                    let inner = self.alt()?;
                    if self.peek() != Some(')') {
                        return Err("missing closing )".into());
                    }
                    self.i += 1;
                    inner
                }
                '^' => Re::Start,
                '$' => Re::End,
                '.' => Re::Class(vec![('\0', '\t'), ('\u{b}', MAX)]),
                '[' => self.class()?,
                '\\' => self.escape(false)?,
                c => lit(c),
            };
            items.push(item);
        }
        Ok(match items.len() {
            0 => Re::Empty,
            1 => items.remove(0),
            _ => Re::Concat(items),
        })
    }

    /// A repetition operator at the cursor: (min, max, its length).
    fn repetition(&self) -> Option<(u32, Option<u32>, usize)> {
        match self.peek()? {
            '*' => Some((0, None, 1)),
            '+' => Some((1, None, 1)),
            '?' => Some((0, Some(1), 1)),
            '{' => {
                let rest: String = self.s[self.i + 1..].iter().collect();
                let close = rest.find('}')?;
                let body = &rest[..close];
                let num = |t: &str| -> Option<u32> {
                    (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
                        .then(|| t.parse().ok())
                        .flatten()
                        .filter(|&n| n <= 1000)
                };
                let (min, max) = match body.split_once(',') {
                    None => {
                        let n = num(body)?;
                        (n, Some(n))
                    }
                    Some((a, "")) => (num(a)?, None),
                    Some((a, b)) => (num(a)?, Some(num(b)?)),
                };
                if max.is_some_and(|m| m < min) {
                    return None;
                }
                Some((min, max, body.chars().count() + 2))
            }
            _ => None,
        }
    }

    /// After a `\`.
    fn escape(&mut self, in_class: bool) -> Result<Re, String> {
        let Some(c) = self.peek() else {
            return Err("trailing backslash at end of expression".into());
        };
        self.i += 1;
        if let Some(class) = perl_class(c) {
            return Ok(Re::Class(class));
        }
        Ok(match c {
            'A' if !in_class => Re::Start,
            'z' if !in_class => Re::End,
            't' => lit('\t'),
            'n' => lit('\n'),
            'r' => lit('\r'),
            'f' => lit('\u{c}'),
            'v' => lit('\u{b}'),
            'a' => lit('\u{7}'),
            c if c.is_ascii_alphanumeric() || c == '_' => {
                return Err(format!("the escape \\{c} is not supported"))
            }
            c if c.is_ascii() => lit(c),
            c => return Err(format!("invalid escape sequence \\{c}")),
        })
    }

    /// After a `[`.
    fn class(&mut self) -> Result<Re, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.i += 1;
        }
        let mut ranges: Vec<(char, char)> = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err("missing closing ]".into());
            };
            if c == ']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            if c == '[' && self.s.get(self.i + 1) == Some(&':') {
                let rest: String = self.s[self.i + 2..].iter().collect();
                if let Some(end) = rest.find(":]") {
                    let name = &rest[..end];
                    let (neg, name) = match name.strip_prefix('^') {
                        Some(n) => (true, n),
                        None => (false, name),
                    };
                    let Some(r) = posix_class(name) else {
                        return Err(format!("invalid character class range [:{name}:]"));
                    };
                    ranges.extend(if neg { negate(r) } else { r });
                    self.i += 2 + name.chars().count() + usize::from(neg) + 2;
                    continue;
                }
            }
            let lo = self.class_char()?;
            let lo = match lo {
                ClassItem::Set(set) => {
                    ranges.extend(set);
                    continue;
                }
                ClassItem::Char(c) => c,
            };
            let mut hi = lo;
            if self.peek() == Some('-') && self.s.get(self.i + 1).is_some_and(|&n| n != ']') {
                self.i += 1;
                match self.class_char()? {
                    ClassItem::Char(h) => hi = h,
                    ClassItem::Set(_) => return Err("invalid character class range".into()),
                }
                if hi < lo {
                    return Err("invalid character class range".into());
                }
            }
            ranges.push((lo, hi));
        }
        if negated {
            // Go adds `\n` before negating, so a negated class never
            // matches a newline.
            ranges.push(('\n', '\n'));
            ranges = negate(ranges);
        }
        Ok(Re::Class(ranges))
    }

    fn class_char(&mut self) -> Result<ClassItem, String> {
        let Some(c) = self.peek() else {
            return Err("missing closing ]".into());
        };
        self.i += 1;
        if c != '\\' {
            return Ok(ClassItem::Char(c));
        }
        match self.escape(true)? {
            Re::Class(r) if r.len() == 1 && r[0].0 == r[0].1 => Ok(ClassItem::Char(r[0].0)),
            Re::Class(r) => Ok(ClassItem::Set(r)),
            _ => Err("invalid escape in a character class".into()),
        }
    }
}

enum ClassItem {
    Char(char),
    Set(Vec<(char, char)>),
}

fn lit(c: char) -> Re {
    Re::Class(vec![(c, c)])
}

fn perl_class(c: char) -> Option<Vec<(char, char)>> {
    let d = vec![('0', '9')];
    let s = vec![('\t', '\n'), ('\u{c}', '\r'), (' ', ' ')];
    let w = vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
    Some(match c {
        'd' => d,
        'D' => negate(d),
        's' => s,
        'S' => negate(s),
        'w' => w,
        'W' => negate(w),
        _ => return None,
    })
}

fn posix_class(name: &str) -> Option<Vec<(char, char)>> {
    Some(match name {
        "alnum" => vec![('0', '9'), ('A', 'Z'), ('a', 'z')],
        "alpha" => vec![('A', 'Z'), ('a', 'z')],
        "ascii" => vec![('\0', '\u{7f}')],
        "blank" => vec![('\t', '\t'), (' ', ' ')],
        "cntrl" => vec![('\0', '\u{1f}'), ('\u{7f}', '\u{7f}')],
        "digit" => vec![('0', '9')],
        "graph" => vec![('!', '~')],
        "lower" => vec![('a', 'z')],
        "print" => vec![(' ', '~')],
        "punct" => vec![('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
        "space" => vec![('\t', '\r'), (' ', ' ')],
        "upper" => vec![('A', 'Z')],
        "word" => vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
        "xdigit" => vec![('0', '9'), ('A', 'F'), ('a', 'f')],
        _ => return None,
    })
}

/// The complement of a set of ranges, over all of Unicode.
fn negate(mut ranges: Vec<(char, char)>) -> Vec<(char, char)> {
    ranges.sort();
    let mut out = Vec::new();
    let mut next: u32 = 0;
    for (lo, hi) in ranges {
        if (lo as u32) > next {
            out.extend(span(next, lo as u32 - 1));
        }
        next = next.max(hi as u32 + 1);
    }
    if next <= MAX as u32 {
        out.extend(span(next, MAX as u32));
    }
    out
}

/// The characters from `a` to `b`, skipping the surrogates.
fn span(a: u32, b: u32) -> Vec<(char, char)> {
    let mut out = Vec::new();
    let mut push = |x: u32, y: u32| {
        if let (Some(x), Some(y)) = (char::from_u32(x), char::from_u32(y)) {
            if x <= y {
                out.push((x, y));
            }
        }
    };
    if a < 0xD800 && b > 0xDFFF {
        push(a, 0xD7FF);
        push(0xE000, b);
    } else if b < 0xD800 || a > 0xDFFF {
        push(a, b);
    } else if a < 0xD800 {
        push(a, 0xD7FF);
    } else if b > 0xDFFF {
        push(0xE000, b);
    }
    out
}

/// Go's `MatchString`: does some substring of `s` match?
pub fn is_match(re: &Re, s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let all: Vec<bool> = vec![true; chars.len() + 1];
    ends(re, &chars, &all).iter().any(|&b| b)
}

/// Where a match of `re` can end, for matches starting at `from`.
fn ends(re: &Re, s: &[char], from: &[bool]) -> Vec<bool> {
    let n = s.len();
    match re {
        Re::Empty => from.to_vec(),
        Re::Class(ranges) => {
            let mut out = vec![false; n + 1];
            for i in 0..n {
                if from[i] && ranges.iter().any(|&(a, b)| a <= s[i] && s[i] <= b) {
                    out[i + 1] = true;
                }
            }
            out
        }
        Re::Start => (0..=n).map(|i| i == 0 && from[0]).collect(),
        Re::End => (0..=n).map(|i| i == n && from[n]).collect(),
        Re::Concat(items) => items
            .iter()
            .fold(from.to_vec(), |at, item| ends(item, s, &at)),
        Re::Alt(alts) => {
            let mut out = vec![false; n + 1];
            for a in alts {
                for (o, e) in out.iter_mut().zip(ends(a, s, from)) {
                    *o |= e;
                }
            }
            out
        }
        Re::Repeat(inner, min, max) => {
            let mut at = from.to_vec();
            for _ in 0..*min {
                at = ends(inner, s, &at);
            }
            let mut reached = at.clone();
            let extra = max.map(|m| m - min);
            let mut k = 0;
            loop {
                if extra.is_some_and(|e| k >= e) {
                    break;
                }
                let next = ends(inner, s, &at);
                let mut grew = false;
                for (r, nx) in reached.iter_mut().zip(&next) {
                    if *nx && !*r {
                        *r = true;
                        grew = true;
                    }
                }
                if !grew {
                    break;
                }
                at = next;
                k += 1;
            }
            reached
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(re: &str, s: &str) -> bool {
        is_match(&parse(re).unwrap(), s)
    }

    #[test]
    fn classes_as_go_reads_them() {
        // `!` is a member; only `^` negates.
        assert!(m("^[!a][^/]*$", "!x"));
        assert!(m("^[!a][^/]*$", "ab"));
        assert!(!m("^[!a][^/]*$", "bx"));
        assert!(m("^[^a]$", "b") && !m("^[^a]$", "a") && !m("^[^a]$", "\n"));
        // A `[` inside a class is a member; a leading `]` too.
        assert!(m("^[[^/]*]$", "[^]"));
        assert!(m("^[]a]$", "]"));
        assert!(m("^[a-c\\d]$", "2") && m("^[[:upper:]]$", "Q"));
        assert!(parse("[z-a]").is_err() && parse("[a").is_err());
    }

    #[test]
    fn groups_alternation_and_repetition() {
        assert!(m("^a|b$", "axx") && m("^a|b$", "xxb") && !m("^a|b$", "xax"));
        assert!(m("^(.*/)?x$", "x") && m("^(.*/)?x$", "a/b/x") && !m("^(.*/)?x$", "ax"));
        assert!(m("^a+b{2}$", "aabb") && !m("^a+b{2}$", "abbb"));
        assert!(m("^a{$", "a{") && m("^x{1,}$", "xxx"));
        assert!(parse("a**").is_err() && parse("*a").is_err() && parse("(a").is_err());
        assert!(parse("a)").is_err() && parse("\\b").is_err() && parse("\\y").is_err());
    }
}
