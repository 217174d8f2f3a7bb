//! Image tags from the `--tag` template, made to satisfy the registry's rules:
//! at most 128 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.

/// The default tag: the old tool's `temp_` prefix, so existing ECR lifecycle
/// rules keep matching, and the build's content digest, so that a commit that
/// does not touch a service keeps its tag (and is not rebuilt).
pub const DEFAULT_TEMPLATE: &str = "temp_{app}_{service}_{hash}";

/// The old tool's tag: a new tag (and a rebuild) for every commit.
pub const GITSHA_TEMPLATE: &str = "temp_{app}_{service}_{gitsha}";

pub const PLACEHOLDERS: [&str; 5] = ["app", "service", "gitsha", "description", "hash"];

const MAX_LEN: usize = 128;

/// The placeholders a template uses; an unknown one or an unclosed brace is
/// an error (a usage mistake).
pub fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("--tag `{template}`: `{{` without a closing `}}`"));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "--tag `{template}`: unknown placeholder `{{{name}}}`; known are {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        found.push(name);
        rest = &after[close + 1..];
    }
    Ok(found)
}

/// Fill in a template and make the result a valid tag.
pub fn render(template: &str, vars: &dyn Fn(&str) -> String) -> Result<String, String> {
    placeholders(template)?;
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').unwrap_or(after.len());
        out.push_str(&vars(&after[..close]));
        rest = after.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    let tag = sanitize(&out);
    if tag.is_empty() {
        return Err(format!("--tag `{template}` gives an empty tag"));
    }
    Ok(tag)
}

/// Replace what a tag may not hold with `-`, a leading `.` or `-` with `_`,
/// and cut to 128 characters.
pub fn sanitize(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_LEN)
        .collect();
    if out.starts_with(['.', '-']) {
        out.replace_range(0..1, "_");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> String {
        match name {
            "app" => "demo".into(),
            "service" => "web".into(),
            "gitsha" => "abc123".into(),
            "description" => "feature/Ünïcode branch".into(),
            "hash" => "0123456789abcdef".into(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_default_carries_the_hash_and_the_old_tools_tag_the_commit() {
        let t = render(DEFAULT_TEMPLATE, &vars).unwrap();
        assert_eq!(t, "temp_demo_web_0123456789abcdef");
        assert_eq!(
            render(GITSHA_TEMPLATE, &vars).unwrap(),
            "temp_demo_web_abc123"
        );
    }

    #[test]
    fn disallowed_characters_are_replaced_not_passed_on() {
        let t = render("{description}", &vars).unwrap();
        assert_eq!(t, "feature--n-code-branch");
        assert_eq!(sanitize(".hidden"), "_hidden");
        assert_eq!(sanitize("-x"), "_x");
        let long = sanitize(&"a".repeat(300));
        assert_eq!(long.len(), 128);
    }

    #[test]
    fn every_rendered_tag_follows_the_rules() {
        for raw in ["", "a b", "../x", "-", "ok_1.2-3", "a/b:c@d", "é"] {
            let t = sanitize(raw);
            assert!(t.len() <= 128);
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
                "{t}"
            );
            assert!(!t.starts_with(['.', '-']), "{t}");
        }
    }

    #[test]
    fn unknown_placeholders_and_empty_results_are_errors() {
        assert!(placeholders("x_{nope}")
            .unwrap_err()
            .contains("unknown placeholder `{nope}`"));
        assert!(placeholders("x_{app").is_err());
        assert_eq!(
            placeholders("{app}-{gitsha}").unwrap(),
            vec!["app", "gitsha"]
        );
        assert!(render("", &vars).is_err());
    }
}
