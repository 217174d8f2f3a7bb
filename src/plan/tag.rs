//! Image tags from the `--tag` template, made to satisfy the registry's rules:
//! at most 128 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
//!
//! - Each placeholder's value and each piece of literal text has what a tag
//!   may not hold replaced with `-`; a leading `.` or `-` becomes `_`.
//! - A tag that would pass 128 characters is shortened, never cut blindly:
//!   `{hash}` and `{gitsha}` stay whole (the tag must follow the content);
//!   the other parts are shortened, the longest first, and 8 hex digits of
//!   a digest of the whole unshortened tag go after the last shortened part,
//!   so two tags that differed before still differ (two long service names
//!   sharing a prefix keep distinct tags).
//! - The cache's tags (`APP_SERVICE`, `APP_SERVICE-STAGE`) follow the same
//!   rule ([`fit`]).

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
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        parts.push(Part::cut(&rest[..open]));
        let after = &rest[open + 1..];
        let close = after.find('}').unwrap_or(after.len());
        let name = &after[..close];
        let value = vars(name);
        parts.push(if matches!(name, "hash" | "gitsha") {
            Part::whole(&value)
        } else {
            Part::cut(&value)
        });
        rest = after.get(close + 1..).unwrap_or("");
    }
    parts.push(Part::cut(rest));
    let tag = fit(parts);
    if tag.is_empty() {
        return Err(format!("--tag `{template}` gives an empty tag"));
    }
    Ok(tag)
}

/// One piece of a tag: its text (made valid), and whether it must stay whole.
#[derive(Debug, Clone)]
pub struct Part {
    text: String,
    whole: bool,
}

impl Part {
    /// A part that may be shortened.
    pub fn cut(raw: &str) -> Part {
        Part {
            text: valid_chars(raw),
            whole: false,
        }
    }

    /// A part that stays whole (a digest, a commit).
    pub fn whole(raw: &str) -> Part {
        Part {
            text: valid_chars(raw),
            whole: true,
        }
    }
}

/// Join the parts into one valid tag of at most 128 characters, shortening
/// by the module's rule.
pub fn fit(mut parts: Vec<Part>) -> String {
    let full: String = parts.iter().map(|p| p.text.as_str()).collect();
    if full.len() > MAX_LEN {
        let mark = format!("-{}", &blake3::hash(full.as_bytes()).to_hex()[..8]);
        let mut whole: usize = parts.iter().filter(|p| p.whole).map(|p| p.text.len()).sum();
        if whole + mark.len() > MAX_LEN {
            // Only a template of several digests gets here: all may be cut.
            parts.iter_mut().for_each(|p| p.whole = false);
            whole = 0;
        }
        let budget = MAX_LEN - mark.len() - whole;
        let cap = longest_that_fits(&parts, budget);
        let mut last_cut = 0;
        for (i, p) in parts.iter_mut().enumerate() {
            if !p.whole && p.text.len() > cap {
                p.text.truncate(cap);
                last_cut = i;
            }
        }
        parts[last_cut].text.push_str(&mark);
    }
    let mut out: String = parts.iter().map(|p| p.text.as_str()).collect();
    if out.starts_with(['.', '-']) {
        out.replace_range(0..1, "_");
    }
    out
}

/// The largest length that each part that may be cut can keep so that
/// together they take at most `budget` characters.
fn longest_that_fits(parts: &[Part], budget: usize) -> usize {
    let total = |cap: usize| -> usize {
        parts
            .iter()
            .filter(|p| !p.whole)
            .map(|p| p.text.len().min(cap))
            .sum()
    };
    let (mut lo, mut hi) = (0, MAX_LEN);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if total(mid) <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Replace what a tag may not hold with `-`.
fn valid_chars(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// One piece of text made a valid tag (shortened by the rule when long).
pub fn sanitize(raw: &str) -> String {
    fit(vec![Part::cut(raw)])
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
    fn a_long_tag_keeps_its_hash_whole_and_stays_distinct() {
        let long = |service: &'static str| {
            move |name: &str| match name {
                "app" => "a".repeat(100),
                "service" => service.to_string(),
                "hash" => "0123456789abcdef".into(),
                _ => String::new(),
            }
        };
        let one = render(
            DEFAULT_TEMPLATE,
            &long("web-worker-number-one-with-a-long-name"),
        )
        .unwrap();
        let two = render(
            DEFAULT_TEMPLATE,
            &long("web-worker-number-one-with-a-long-name-2"),
        )
        .unwrap();
        for t in [&one, &two] {
            assert_eq!(t.len(), 128, "{t}");
            assert!(t.ends_with("_0123456789abcdef"), "the hash is whole: {t}");
            assert!(t.starts_with("temp_aaaa"), "{t}");
        }
        assert_ne!(one, two);
        // A changed hash changes the tag even when everything else is long.
        let other = render(DEFAULT_TEMPLATE, &|n: &str| match n {
            "hash" => "fedcba9876543210".into(),
            n => long("web-worker-number-one-with-a-long-name")(n),
        })
        .unwrap();
        assert!(other.ends_with("_fedcba9876543210"), "{other}");
        // A long --tag's literal text is shortened too, the hash kept.
        let t = render(&format!("{}{{hash}}", "x".repeat(200)), &vars).unwrap();
        assert_eq!(t.len(), 128);
        assert!(t.ends_with("0123456789abcdef"), "{t}");
        // A tag within the limit is left as it is.
        assert_eq!(
            render("{app}_{hash}", &vars).unwrap(),
            "demo_0123456789abcdef"
        );
    }

    #[test]
    fn long_stage_names_sharing_a_prefix_get_distinct_cache_tags() {
        let stage = |s: &str| fit(vec![Part::cut("app_web"), Part::cut("-"), Part::cut(s)]);
        let prefix = "s".repeat(130);
        let a = stage(&format!("{prefix}a"));
        let b = stage(&format!("{prefix}b"));
        assert!(a.len() <= 128 && b.len() <= 128);
        assert_ne!(a, b);
        assert!(a.starts_with("app_web-sss"), "{a}");
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
