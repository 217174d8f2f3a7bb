//! The documentation matches the program: every flag of `--help` is in the
//! README, completions and the man page come from the same definition.

mod common;

use common::{text, Fakes};

fn help() -> String {
    let fakes = Fakes::new(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = fakes
        .command(dir.path())
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    text(&out).0
}

fn flags(help: &str) -> Vec<String> {
    let mut flags: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| {
            w.starts_with("--")
                && w.len() > 2
                && w[2..].starts_with(|c: char| c.is_ascii_lowercase())
        })
        .map(String::from)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_flag_in_help_is_in_the_readme() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let flags = flags(&help());
    assert!(flags.len() >= 15, "{flags:?}");
    let missing: Vec<&String> = flags
        .iter()
        .filter(|f| !readme.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "flags in --help but not in the README: {missing:?}"
    );
}

#[test]
fn every_option_has_a_plugin_variable_and_the_readme_names_them() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let help = help();
    for var in help
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .filter(|w| w.starts_with("PLUGIN_"))
    {
        assert!(readme.contains(var), "{var} is not in the README");
    }
    assert!(help.matches("[env: PLUGIN_").count() >= 14, "{help}");
}

#[test]
fn completions_and_the_man_page_cover_every_flag() {
    let fakes = Fakes::new(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = fakes
        .command(dir.path())
        .args(["--completions", "bash"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out).1);
    let completions = text(&out).0;
    let man = String::from_utf8(offcluster::cli::Cli::man_page().expect("man")).expect("utf8");
    for flag in flags(&help()) {
        assert!(completions.contains(&flag), "{flag} not completed");
        // roff escapes the dashes.
        assert!(
            man.contains(&flag.replace('-', "\\-")),
            "{flag} not in the man page"
        );
    }
}
