//! External commands as values.
//!
//! A [`Cmd`] is a program, its arguments and any extra environment. Its
//! `Display` is the shell-quoted command line, so what a dry run prints, what
//! `-v` echoes and what an error names is the same text, and it can be pasted
//! into a shell. Environment values are never displayed: they are how secrets
//! reach a child without appearing in its argv.

use std::ffi::OsString;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Environment settings that are not secret and are part of the command
    /// line as a user would type it (`DOCKER_BUILDKIT=1 docker build …`).
    shown: Vec<(String, String)>,
    stdin: Option<Stdin>,
    /// The directory it runs in, when not this program's own.
    dir: Option<String>,
}

/// What a command reads on stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stdin {
    /// A file, then a line break and more text (a Dockerfile with a LABEL
    /// line added). Shown as `{ cat FILE; printf '\n%s\n' TEXT; } | ...`.
    FileThen { path: String, then: String },
    /// A text (a definition this program wrote, never a secret). Shown as
    /// `printf '%s\n' TEXT | ...`.
    Text(String),
    /// A secret (a registry password), fed with a line break and shown as
    /// the command it came from: `FROM | ...`, never its value.
    Secret { text: String, from: String },
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            shown: Vec::new(),
            stdin: None,
            dir: None,
        }
    }

    /// Run it in this directory (shown as `cd DIR && …`).
    pub fn current_dir(mut self, dir: impl Into<String>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// More arguments before the last one (a build's context stays last).
    pub fn before_last<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let last = self.args.pop();
        self.args.extend(args.into_iter().map(Into::into));
        self.args.extend(last);
        self
    }

    /// The same command with each argument equal to `from` made `to` (a
    /// part named by its tag in the plan, by its digest when run).
    pub fn replace_arg(mut self, from: &str, to: &str) -> Self {
        for a in self.args.iter_mut().filter(|a| a.as_str() == from) {
            *a = to.to_string();
        }
        self
    }

    /// An environment variable for the child only. Its value is never shown.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// A setting that is not secret, shown before the program (`K=V prog`).
    pub fn env_shown(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (k, v) = (key.into(), value.into());
        self.shown.push((k.clone(), v.clone()));
        self.envs.push((k, v));
        self
    }

    /// Feed this file and then `then` on stdin.
    pub fn stdin_file_then(mut self, path: impl Into<String>, then: impl Into<String>) -> Self {
        self.stdin = Some(Stdin::FileThen {
            path: path.into(),
            then: then.into(),
        });
        self
    }

    /// Feed this text, and a line break, on stdin.
    pub fn stdin_text(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(Stdin::Text(text.into()));
        self
    }

    /// Feed a secret, and a line break, on stdin; shown as `from | ...`.
    pub fn stdin_secret(mut self, text: impl Into<String>, from: impl Into<String>) -> Self {
        self.stdin = Some(Stdin::Secret {
            text: text.into(),
            from: from.into(),
        });
        self
    }

    /// The bytes for stdin, read now; None for a command that reads none.
    pub fn stdin_bytes(&self) -> std::io::Result<Option<Vec<u8>>> {
        match &self.stdin {
            None => Ok(None),
            Some(Stdin::FileThen { path, then }) => {
                let mut bytes = std::fs::read(path)?;
                bytes.push(b'\n');
                bytes.extend_from_slice(then.as_bytes());
                bytes.push(b'\n');
                Ok(Some(bytes))
            }
            Some(Stdin::Text(text) | Stdin::Secret { text, .. }) => {
                Ok(Some(format!("{text}\n").into_bytes()))
            }
        }
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn get_args(&self) -> &[String] {
        &self.args
    }

    /// The values of its secret environment (not `env_shown`), for
    /// masking them in what the child prints.
    pub fn secret_values(&self) -> Vec<&str> {
        self.envs
            .iter()
            .filter(|e| !self.shown.contains(e))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn get_envs(&self) -> &[(String, String)] {
        &self.envs
    }

    /// The duct expression that runs this command. It sets no redirection:
    /// in duct the innermost one wins, so the caller chooses stdin and output.
    pub fn to_duct(&self) -> duct::Expression {
        let args: Vec<OsString> = self.args.iter().map(OsString::from).collect();
        let mut expr = duct::cmd(&self.program, args);
        for (k, v) in &self.envs {
            expr = expr.env(k, v);
        }
        match &self.dir {
            Some(d) => expr.dir(d),
            None => expr,
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.dir {
            write!(f, "cd {} && ", quote(d))?;
        }
        match &self.stdin {
            Some(Stdin::FileThen { path, then }) => write!(
                f,
                "{{ cat {}; printf '\\n%s\\n' {}; }} | ",
                quote(path),
                quote(then)
            )?,
            Some(Stdin::Text(text)) => write!(f, "printf '%s\\n' {} | ", quote(text))?,
            Some(Stdin::Secret { from, .. }) => write!(f, "{from} | ")?,
            None => {}
        }
        for (k, v) in &self.shown {
            write!(f, "{k}={} ", quote(v))?;
        }
        f.write_str(&quote(&self.program))?;
        for a in &self.args {
            f.write_str(" ")?;
            f.write_str(&quote(a))?;
        }
        Ok(())
    }
}

/// Quote one word for a POSIX shell: unchanged when it is made only of safe
/// characters, otherwise in single quotes with embedded quotes escaped.
pub fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,^".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let c = Cmd::new("docker")
            .args(["build", "-t", "127.0.0.1:5000/a:b"])
            .arg("it's here")
            .arg("")
            .arg("a b");
        assert_eq!(
            c.to_string(),
            r"docker build -t 127.0.0.1:5000/a:b 'it'\''s here' '' 'a b'"
        );
    }

    #[test]
    fn env_values_are_not_displayed() {
        let c = Cmd::new("docker")
            .args(["build", "--build-arg", "TOKEN"])
            .env("TOKEN", "s3cret");
        assert!(!c.to_string().contains("s3cret"));
        assert_eq!(c.get_envs(), &[("TOKEN".into(), "s3cret".into())]);
    }

    #[test]
    fn stdin_from_a_file_is_shown_as_a_pipeline_and_read_with_its_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let df = dir.path().join("Dockerfile");
        std::fs::write(&df, "FROM scratch").unwrap();
        let path = df.display().to_string();
        let c = Cmd::new("docker")
            .args(["build", "-f", "-", "."])
            .stdin_file_then(&path, "LABEL \"a\"=\"b\"");
        assert_eq!(
            c.to_string(),
            format!(
                "{{ cat {}; printf '\\n%s\\n' 'LABEL \"a\"=\"b\"'; }} | docker build -f - .",
                quote(&path)
            )
        );
        let bytes = c.stdin_bytes().unwrap().unwrap();
        assert_eq!(bytes, b"FROM scratch\nLABEL \"a\"=\"b\"\n");
        // And a shell given the displayed pipeline feeds the same bytes.
        let shown = c.to_string().replace("| docker build -f - .", "| cat");
        if let Ok(out) = std::process::Command::new("sh")
            .arg("-c")
            .arg(&shown)
            .output()
        {
            assert_eq!(out.stdout, bytes);
        }
    }

    #[test]
    fn stdin_text_is_shown_as_printf_and_a_shell_feeds_the_same_bytes() {
        let json = r#"{"target":{"a":{"context":"/it's"}}}"#;
        let c = Cmd::new("docker-buildx")
            .args(["bake", "-f", "-"])
            .stdin_text(json);
        assert!(c
            .clone()
            .current_dir("/a b")
            .to_string()
            .starts_with("cd '/a b' && printf "));
        let bytes = c.stdin_bytes().unwrap().unwrap();
        assert_eq!(bytes, format!("{json}\n").into_bytes());
        let shown = c.to_string();
        assert!(shown.ends_with("| docker-buildx bake -f -"), "{shown}");
        let piped = shown.replace("| docker-buildx bake -f -", "| cat");
        if let Ok(out) = std::process::Command::new("sh")
            .arg("-c")
            .arg(&piped)
            .output()
        {
            assert_eq!(out.stdout, bytes);
        }
    }

    #[test]
    fn quoted_words_round_trip_through_a_shell() {
        let words = [
            "plain",
            "with space",
            "quote'inside",
            "$HOME",
            "*",
            "a\nb",
            "{x}",
        ];
        let line = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {line}"))
            .output();
        let Ok(out) = out else {
            return; // no sh: nothing to compare against
        };
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        assert_eq!(got, words);
    }
}
