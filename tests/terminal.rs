//! The terminal: plain lines without colour when stderr is not a terminal;
//! on a terminal (a pty from `script`), a live view with colour, and no
//! colour when NO_COLOR is set.

mod common;

use common::{fixture, local, text, Fakes, BIN};
use std::process::Command;

/// The arguments, the fake registry an address nothing answers on.
fn args() -> &'static str {
    local("--app demo --gitsha abc --repo LOCAL/demo --tag temp_{app}_{service}_{gitsha}")
}

fn has_color(s: &str) -> bool {
    s.contains("\x1b[32m") || s.contains("\x1b[1m") || s.contains("\x1b[36m")
}

#[test]
fn piped_output_is_plain_lines_without_escapes() {
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    let out = fakes
        .command(dir.path())
        .args(args().split(' '))
        .output()
        .expect("run");
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert!(stderr.contains("[web] building\n"), "{stderr}");
    assert!(
        stderr.contains("[web] Step 1/2 : FROM scratch\n"),
        "{stderr}"
    );
}

/// Run under `script`, which gives the program a pseudo-terminal.
fn on_a_terminal(no_color: bool) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: `script` (util-linux) is not installed, so no pseudo-terminal");
        return None;
    }
    let fakes = Fakes::new(&["docker"]);
    let dir = fixture("demo");
    let mut c = fakes.command_for("script", dir.path());
    let cmdline = format!("{BIN} {}", args().replace('{', "'{").replace('}', "}'"));
    c.env("TERM", "xterm")
        .env("COLUMNS", "120")
        .env("LINES", "40");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    // script itself must be found: give it the system PATH after the fakes.
    c.env(
        "PATH",
        format!(
            "{}:{}",
            fakes.path(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    let out = c.args(["-q", "-e", "-c", &cmdline, "/dev/null"]).output();
    let out = out.ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_terminal_gets_a_live_view_with_colour_unless_no_color() {
    let Some(colourful) = on_a_terminal(false) else {
        return;
    };
    assert!(colourful.contains("done:"), "{colourful:?}");
    assert!(has_color(&colourful), "{colourful:?}");
    assert!(
        !colourful.contains("[web] Step 1/2"),
        "a live view, not raw lines: {colourful:?}"
    );
    let Some(plain) = on_a_terminal(true) else {
        return;
    };
    assert!(plain.contains("done:"), "{plain:?}");
    assert!(!has_color(&plain), "{plain:?}");
}
