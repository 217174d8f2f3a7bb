//! The app's environment, in `convox env`'s format: what Convox fills a
//! Dockerfile's `ARG`s from.
//!
//! `convox env` prints each variable as `NAME=VALUE`, sorted, one a line,
//! the value as it is (Convox's `structs.Environment.String`: no quoting,
//! no escaping), and Convox reads such text back by splitting each line at
//! its first `=`, the name trimmed, the value kept whole
//! (`Environment.Load`). So here:
//! - a line is `NAME=VALUE`: the name is what stands before the first `=`
//!   (trimmed, not empty), the value everything after it, spaces, quotes
//!   and further `=` included (a trailing `\r` of a CRLF file is dropped,
//!   as Go's line scanner drops it);
//! - blank lines and lines starting with `#` are skipped;
//! - any other line is an error naming the file and the line. A value with
//!   a newline cannot be told apart in this format (`convox env` prints its
//!   second line as a line of its own), so such a line is an error too,
//!   saying so, rather than half a value.
//! - A name given twice: the last one counts, as in Convox.

use crate::read::regular;
use std::path::Path;

/// The variables, in the order given (a later one replaces an earlier one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppEnv {
    pub vars: Vec<(String, String)>,
}

impl AppEnv {
    /// Read `text`; `source` names it in errors (a path, or `convox env`).
    pub fn parse(text: &str, source: &str) -> Result<AppEnv, String> {
        let mut vars: Vec<(String, String)> = Vec::new();
        // A UTF-8 byte-order mark (an editor's) is not part of the first name.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let at = i + 1;
            let Some((name, value)) = line.split_once('=') else {
                let after = vars.last().map_or(String::new(), |(n, _)| {
                    format!(" (if it is the second line of {n}'s value: a value with a newline cannot be read from this format; pass it with --build-arg {n} from the environment)")
                });
                return Err(format!("{source}:{at}: not NAME=VALUE{after}"));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("{source}:{at}: no name before `=`"));
            }
            if name.contains('\0') || value.contains('\0') {
                return Err(format!(
                    "{source}:{at}: `{}` holds a NUL byte, which no program can be given",
                    name.replace('\0', "\\0")
                ));
            }
            vars.retain(|(n, _)| n != name);
            vars.push((name.to_string(), value.to_string()));
        }
        Ok(AppEnv { vars })
    }

    /// Read the file at `path`.
    pub fn load(path: &Path) -> Result<AppEnv, String> {
        let text = regular::read_text(path, regular::TEXT_LIMIT)
            .map_err(|e| format!("--env-file: {e}"))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `convox env`'s output as Convox writes it: `NAME=VALUE` sorted, the
    /// value raw (structs.Environment.String).
    fn as_convox_prints(vars: &[(&str, &str)]) -> String {
        let mut lines: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.sort();
        lines.join("\n")
    }

    #[test]
    fn values_are_everything_after_the_first_equals_as_convox_prints_them() {
        let vars = [
            ("DATABASE_URL", "postgres://u:p@h/db?sslmode=require"),
            ("GREETING", "hello  world "),
            ("QUOTED", "\"kept\" 'as is'"),
            ("EMPTY", ""),
            ("EQUALS", "a=b=c"),
        ];
        let env = AppEnv::parse(&as_convox_prints(&vars), "convox env").unwrap();
        for (k, v) in vars {
            assert_eq!(env.get(k), Some(v), "{k}");
        }
        assert_eq!(env.vars.len(), 5);
    }

    #[test]
    fn a_nul_in_a_value_is_refused_when_read_and_the_value_not_shown() {
        let e = AppEnv::parse("A=1\nTOKEN=se\0cret\n", "convox env").unwrap_err();
        assert_eq!(
            e,
            "convox env:2: `TOKEN` holds a NUL byte, which no program can be given"
        );
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app.env");
        std::fs::write(&p, "TOKEN=se\0cret\n").unwrap();
        let e = AppEnv::load(&p).unwrap_err();
        assert!(e.contains("app.env:1:9: a NUL byte"), "{e}");
        assert!(!e.contains("se") || !e.contains("cret"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_name() {
        let e = AppEnv::parse("\u{feff}TOKEN=x\r\nB=y\r\n", "app.env").unwrap();
        assert_eq!(e.get("TOKEN"), Some("x"));
        assert_eq!(e.vars.len(), 2);
    }

    #[test]
    fn comments_blank_lines_crlf_and_repeats() {
        let env = AppEnv::parse("# the app\n\nA=1\r\n  # indented\nB = two\nA=3\n", "f").unwrap();
        assert_eq!(env.get("A"), Some("3"), "the last one counts");
        assert_eq!(env.get("B"), Some(" two"), "the value is not trimmed");
        assert_eq!(env.vars.len(), 2);
    }

    #[test]
    fn a_line_that_is_not_name_equals_value_is_one_error_with_its_line() {
        let e = AppEnv::parse("A=1\nnonsense\n", "app.env").unwrap_err();
        assert!(e.starts_with("app.env:2: not NAME=VALUE"), "{e}");
        assert!(e.contains("A's value"), "{e}");
        let e = AppEnv::parse("=x\n", "app.env").unwrap_err();
        assert_eq!(e, "app.env:1: no name before `=`");
        // A value with a newline, as `convox env` prints it: its second
        // line is a line of its own.
        let printed = as_convox_prints(&[("KEY", "-----BEGIN\nabc")]);
        assert!(AppEnv::parse(&printed, "convox env").is_err());
    }
}
