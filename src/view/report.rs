//! What a run tells its user: the summary table on stderr, the JSON report
//! (`--json`) on stdout for scripts, and a GitHub Action's outputs.

use crate::plan::{Action, Output, Plan};
use crate::running::execute::{BuildResult, Outcome};
use serde_json::{json, Value};

/// How one service ended.
struct Row<'a> {
    name: &'a str,
    /// `built`, `shared`, `up-to-date`, `pushed`, `pushed-by-another-run`
    /// or `kept`.
    action: &'static str,
    shared_with: Option<&'a str>,
    reference: &'a str,
    digest: Option<&'a str>,
    content_digest: Option<&'a str>,
    seconds: (f64, f64, f64),
    /// No `build:`: built from the app root, as Convox does.
    from_app_root: bool,
}

fn rows<'a>(plan: &'a Plan, results: &'a [BuildResult]) -> Vec<Row<'a>> {
    plan.services
        .iter()
        .map(|s| {
            let (reference, shared_with) = match &s.action {
                Action::Built { reference } => (reference.as_str(), None),
                Action::Shared { with, reference } => (reference.as_str(), Some(with.as_str())),
                Action::Kept { image } => {
                    return Row {
                        name: &s.name,
                        action: "kept",
                        shared_with: None,
                        reference: image,
                        digest: None,
                        content_digest: None,
                        seconds: (0.0, 0.0, 0.0),
                        from_app_root: false,
                    }
                }
            };
            let found = plan.builds.iter().zip(results).find_map(|(b, r)| {
                let i = b.refs.iter().position(|x| x == reference)?;
                Some((b, r, i))
            });
            let Some((b, r, i)) = found else {
                return Row {
                    name: &s.name,
                    action: if shared_with.is_some() {
                        "shared"
                    } else {
                        "built"
                    },
                    shared_with,
                    reference,
                    digest: None,
                    content_digest: None,
                    seconds: (0.0, 0.0, 0.0),
                    from_app_root: s.from_app_root,
                };
            };
            let first = b.services[0] == s.name;
            let action = match (r.existed.get(i).copied().unwrap_or(false), r.outcome) {
                (true, _) => "up-to-date",
                _ if r.by_other_run.get(i).copied().unwrap_or(false) => "pushed-by-another-run",
                (false, Outcome::Completed) => "pushed",
                (false, _) if shared_with.is_some() => "shared",
                (false, _) => "built",
            };
            Row {
                name: &s.name,
                action,
                shared_with: shared_with.filter(|_| action == "shared"),
                reference,
                digest: r.digests.get(i).and_then(|d| d.as_deref()),
                content_digest: Some(&b.digest),
                seconds: (
                    r.check_seconds,
                    if first { r.build_seconds } else { 0.0 },
                    r.push_seconds.get(i).copied().unwrap_or(0.0),
                ),
                from_app_root: s.from_app_root,
            }
        })
        .collect()
}

/// The summary: one line per service.
pub fn summary(plan: &Plan, results: &[BuildResult]) -> String {
    let rows = rows(plan, results);
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for r in &rows {
        let (what, style) = match (r.action, r.shared_with) {
            ("shared", Some(w)) => (format!("shared with {w}"), console::Style::new().green()),
            ("kept", _) => ("kept (has image)".to_string(), console::Style::new().dim()),
            ("up-to-date", _) => ("up to date".to_string(), console::Style::new().cyan()),
            ("pushed", _) => (
                "pushed (image was here)".to_string(),
                console::Style::new().green(),
            ),
            ("pushed-by-another-run", _) => (
                "pushed by another run".to_string(),
                console::Style::new().cyan(),
            ),
            (a, _) => (a.to_string(), console::Style::new().green().bold()),
        };
        let what = crate::view::ui::paint(&format!("{what:<24}"), &style);
        let note = if r.from_app_root {
            "  (no build: in the file; built from the app root, as Convox does)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {:width$}  {what} {}{note}\n",
            r.name, r.reference
        ));
    }
    if let Some(p) = crate::plan::platforms::described(&plan.platforms) {
        out.push_str(&format!("  platforms: {p}\n"));
    }
    out
}

/// The JSON report. Its schema is in the README; no secret is in it.
pub fn json(
    plan: &Plan,
    results: &[BuildResult],
    app: &str,
    repo: &str,
    seconds: f64,
    release: Option<&crate::running::release::Made>,
) -> Value {
    let services: Vec<Value> = rows(plan, results)
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "action": r.action,
                "shared_with": r.shared_with,
                "ref": r.reference,
                "digest": r.digest,
                "content_digest": r.content_digest.map(|d| format!("blake3:{d}")),
                "from_app_root": r.from_app_root,
                "platforms": plan.platforms_of(r.name).map(|p| p.list.clone()),
                "platform_source": plan.platforms_of(r.name).map(|p| p.source.key()),
                "seconds": {"check": round(r.seconds.0), "build": round(r.seconds.1), "push": round(r.seconds.2)},
            })
        })
        .collect();
    json!({
        "app": app,
        "repo": repo,
        "registry": plan.registry_host,
        "repository": plan.repository,
        "output": match &plan.output {
            Output::File(p) => Value::String(p.display().to_string()),
            Output::Stdout => Value::String("-".into()),
        },
        "release": release.map(|r| r.id.as_str()),
        "release_via": release.map(|r| r.via),
        "total_seconds": round(seconds),
        "services": services,
    })
}

/// A GitHub Action's outputs, in the form the runner reads from the file
/// `$GITHUB_OUTPUT` names (`name<<DELIMITER`, the value, `DELIMITER`):
/// - `images`: a JSON object of each service this run gave an image to
///   (built, shared, up to date or pushed) and its reference;
/// - `built`: a JSON list of the services whose build ran this run;
/// - `release`: the release ID of `--convox-build`, when there is one.
///
/// `delimiter` must not occur in any value; the caller makes it unique.
pub fn github_outputs(
    plan: &Plan,
    results: &[BuildResult],
    release: Option<&str>,
    delimiter: &str,
) -> String {
    let rows = rows(plan, results);
    let images: serde_json::Map<String, Value> = rows
        .iter()
        .filter(|r| r.action != "kept")
        .map(|r| (r.name.to_string(), Value::String(r.reference.to_string())))
        .collect();
    let built: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(r.action, "built" | "shared"))
        .map(|r| r.name)
        .collect();
    let mut outputs = vec![
        ("images", Value::Object(images).to_string()),
        ("built", json!(built).to_string()),
    ];
    if let Some(r) = release {
        outputs.push(("release", r.to_string()));
    }
    outputs
        .iter()
        .map(|(name, value)| format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"))
        .collect()
}

fn round(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}
