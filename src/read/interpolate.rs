//! Variable interpolation, by the rules of the format the file is in.
//!
//! - **Compose and gen1** ([`interpolate`]): `$VAR`, `${VAR}`,
//!   `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
//!   `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for a literal
//!   `$` (gen1's `pkg/manifest1` takes `$VAR` and `${VAR}`, unset empty).
//! - **convox.yml** ([`convox_yml`]), as convox/convox 3.24.9
//!   `pkg/manifest/helpers.go` does it: only `${…}` is replaced (the regexp
//!   `\$\{([^}]*?)\}`), by the variable named by everything between the
//!   braces; an unset one is empty. Nothing else is special: `${IMG:-nginx}`
//!   is the variable `IMG:-nginx`, and `$NAME` and `$$` stay as written. The
//!   values are the app's environment plus the build args
//!   (`pkg/build/buildkit.go`).
//!
//! Only what is built is interpolated; the written file keeps its text.

use crate::read::format::Format;

/// Interpolate `input` by the rules of `format`.
pub fn for_format(
    format: &Format,
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, String> {
    match format {
        Format::ConvoxYml => Ok(convox_yml(input, env)),
        _ => interpolate(input, env),
    }
}

/// The variables `input` names, by the rules of `format`.
pub fn variables_for(format: &Format, input: &str) -> Vec<String> {
    match format {
        Format::ConvoxYml => convox_yml_variables(input),
        _ => variables(input),
    }
}

/// convox.yml's interpolation: each `${…}` replaced, nothing else.
pub fn convox_yml(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Interpolated {
    let mut out = String::with_capacity(input.len());
    let mut from_env = false;
    let rest = braced_parts(input, |literal, name| {
        out.push_str(literal);
        let value = env(name).unwrap_or_default();
        from_env |= !value.is_empty();
        out.push_str(&value);
    });
    out.push_str(rest);
    Interpolated {
        value: out,
        from_env,
    }
}

/// The names between each `${` and `}`, in order.
pub fn convox_yml_variables(input: &str) -> Vec<String> {
    let mut names = Vec::new();
    braced_parts(input, |_, name| names.push(name.to_string()));
    names
}

/// Each `${NAME}` of `input` as Convox's regexp finds it, with the text
/// before it; returns the text after the last one.
fn braced_parts<'a>(input: &'a str, mut each: impl FnMut(&'a str, &'a str)) -> &'a str {
    let mut rest = input;
    while let Some(i) = rest.find("${") {
        let body = &rest[i + 2..];
        let Some(close) = body.find('}') else {
            break;
        };
        each(&rest[..i], &body[..close]);
        rest = &body[close + 1..];
    }
    rest
}

/// The `$NAME` references that convox.yml leaves as written (not `${…}`,
/// not `$$`).
pub fn bare_references(input: &str) -> Vec<String> {
    dollar_names(input, false)
}

/// The result of interpolating one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub value: String,
    /// True when any variable was substituted, so the value may hold
    /// something from the environment (a secret) and must not be printed.
    pub from_env: bool,
}

pub fn interpolate(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, String> {
    let mut out = String::with_capacity(input.len());
    let mut from_env = false;
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let Some(close) = r.find('}') else {
                return Err(format!(
                    "invalid interpolation in `{input}`: no closing `}}`"
                ));
            };
            let expr = &r[..close];
            rest = &r[close + 1..];
            let (value, used_env) = braced(expr, input, env)?;
            out.push_str(&value);
            from_env |= used_env;
        } else {
            let n = name_len(rest);
            if n == 0 {
                out.push('$'); // a lone `$` stands for itself
            } else {
                let value = env(&rest[..n]).unwrap_or_default();
                from_env |= !value.is_empty();
                out.push_str(&value);
                rest = &rest[n..];
            }
        }
    }
    out.push_str(rest);
    Ok(Interpolated {
        value: out,
        from_env,
    })
}

/// The names of the variables that a value refers to, in order (`$$` is
/// not one).
pub fn variables(input: &str) -> Vec<String> {
    dollar_names(input, true)
}

/// The names after each `$` (`$$` is none), with those in braces
/// (`${NAME…}`) when `braced_too`.
fn dollar_names(input: &str, braced_too: bool) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
            continue;
        }
        let body = match rest.strip_prefix('{') {
            Some(b) if braced_too => b,
            Some(_) => continue,
            None => rest,
        };
        let n = name_len(body);
        if n > 0 {
            names.push(body[..n].to_string());
        }
        rest = &body[n..];
    }
    names
}

fn name_len(s: &str) -> usize {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        n = i + c.len_utf8();
    }
    n
}

/// The value of one `${...}`, and whether it came from the environment
/// (rather than from a default written in the file).
fn braced(
    expr: &str,
    whole: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), String> {
    let n = name_len(expr);
    if n == 0 {
        return Err(format!("invalid interpolation `${{{expr}}}` in `{whole}`"));
    }
    let (name, op) = expr.split_at(n);
    let value = env(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let ops: [(&str, bool); 6] = [
        (":-", set_nonempty),
        ("-", value.is_some()),
        (":?", set_nonempty),
        ("?", value.is_some()),
        (":+", set_nonempty),
        ("+", value.is_some()),
    ];
    let from_env = |v: Option<String>| {
        let v = v.unwrap_or_default();
        let used = !v.is_empty();
        (v, used)
    };
    if op.is_empty() {
        return Ok(from_env(value));
    }
    for (prefix, present) in ops {
        if let Some(arg) = op.strip_prefix(prefix) {
            return Ok(match prefix {
                ":-" | "-" if !present => (arg.to_string(), false),
                ":?" | "?" if !present => {
                    let msg = if arg.is_empty() {
                        format!("required variable {name} is missing a value")
                    } else {
                        format!("required variable {name} is missing a value: {arg}")
                    };
                    return Err(msg);
                }
                ":+" | "+" => (
                    if present {
                        arg.to_string()
                    } else {
                        String::new()
                    },
                    false,
                ),
                _ => from_env(value),
            });
        }
    }
    Err(format!("invalid interpolation `${{{expr}}}` in `{whole}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("val".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn i(s: &str) -> Result<String, String> {
        interpolate(s, &env).map(|r| r.value)
    }

    #[test]
    fn convox_yml_replaces_only_braces_and_reads_their_whole_text() {
        let c = |s: &str| convox_yml(s, &env).value;
        assert_eq!(c("a/${SET}/b"), "a/val/b");
        assert_eq!(c("${UNSET:-nginx}"), "");
        assert_eq!(c("${UNSET}"), "");
        assert_eq!(c("$SET and $$ and ${SET"), "$SET and $$ and ${SET");
        assert_eq!(c("${SET}${SET}"), "valval");
        assert_eq!(convox_yml_variables("${A:-x}/${B}/$C"), ["A:-x", "B"]);
        assert_eq!(
            bare_references("$WORKER_IMG/${X}/$$y/$Z"),
            ["WORKER_IMG", "Z"]
        );
    }

    #[test]
    fn substitutes_the_compose_forms() {
        assert_eq!(i("a/${SET}/b").unwrap(), "a/val/b");
        assert_eq!(i("$SET-x").unwrap(), "val-x");
        assert_eq!(i("${UNSET}").unwrap(), "");
        assert_eq!(i("${UNSET:-dflt}").unwrap(), "dflt");
        assert_eq!(i("${EMPTY:-dflt}").unwrap(), "dflt");
        assert_eq!(i("${EMPTY-dflt}").unwrap(), "");
        assert_eq!(i("${UNSET-dflt}").unwrap(), "dflt");
        assert_eq!(i("${SET:-dflt}").unwrap(), "val");
        assert_eq!(i("${SET:+alt}").unwrap(), "alt");
        assert_eq!(i("${UNSET:+alt}").unwrap(), "");
        assert_eq!(i("${EMPTY+alt}").unwrap(), "alt");
    }

    #[test]
    fn dollar_dollar_and_lone_dollars_are_literal() {
        assert_eq!(i("cost $$5").unwrap(), "cost $5");
        assert_eq!(i("end$").unwrap(), "end$");
        assert_eq!(i("$ x").unwrap(), "$ x");
        assert!(!interpolate("$$", &env).unwrap().from_env);
        assert!(interpolate("${SET}", &env).unwrap().from_env);
        assert!(interpolate("$SET", &env).unwrap().from_env);
        assert!(!interpolate("${UNSET:-default}", &env).unwrap().from_env);
    }

    #[test]
    fn variables_are_named_in_order_and_dollar_dollar_is_not_one() {
        assert_eq!(
            variables("${REG:-x}/$APP:$${NOT}-${TAG}$"),
            ["REG", "APP", "TAG"]
        );
        assert!(variables("plain").is_empty());
    }

    #[test]
    fn required_variables_and_bad_syntax_are_errors() {
        let e = i("${UNSET:?set it in Drone}").unwrap_err();
        assert!(e.contains("UNSET") && e.contains("set it in Drone"), "{e}");
        assert!(i("${EMPTY:?}").is_err());
        assert_eq!(i("${EMPTY?}").unwrap(), "");
        assert!(i("${SET").is_err());
        assert!(i("${}").is_err());
        assert!(i("${SET%x}").is_err());
    }
}
