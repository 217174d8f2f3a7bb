//! The terminal. When stderr is a terminal (and neither `-v` nor `-q` is
//! given), a live view: one line per service with its state, the time it has
//! taken and the last line its command printed. Otherwise, as in Drone logs,
//! plain lines, each whole and prefixed with `[service]`. Colour only on a
//! terminal, and never when `NO_COLOR` is set. [`init`] makes it the run's
//! view (`running::progress`).

use crate::running::progress::{self, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

enum Mode {
    Plain,
    Live {
        multi: MultiProgress,
        /// Each service's line, with its current state.
        bars: Mutex<HashMap<String, (ProgressBar, String)>>,
    },
}

struct Ui {
    mode: Mode,
    color: bool,
    quiet: bool,
}

static UI: OnceLock<Ui> = OnceLock::new();

fn ui() -> &'static Ui {
    UI.get_or_init(|| Ui {
        mode: Mode::Plain,
        color: false,
        quiet: false,
    })
}

/// Decide, once, how to talk to the terminal.
pub fn init(quiet: bool, verbose: bool) {
    let tty = std::io::stderr().is_terminal();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let mode = if tty && !quiet && !verbose {
        Mode::Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    } else {
        Mode::Plain
    };
    let _ = UI.set(Ui {
        mode,
        color: tty && !no_color,
        quiet,
    });
    progress::show_in(Box::new(Terminal));
}

/// The terminal as the run's view.
struct Terminal;

impl Progress for Terminal {
    fn line(&self, text: &str) {
        line(text);
    }
    fn output(&self, service: &str, text: &str) {
        output(service, text);
    }
    fn state(&self, service: &str, state: &str) {
        self::state(service, state);
    }
    fn done(&self, service: &str, text: &str) {
        done(service, text);
    }
    fn waiting(&self, services: &[&str]) {
        waiting(services);
    }
}

/// Is the output colourful?
pub fn color() -> bool {
    ui().color
}

/// Paint `text` with an ANSI style when colour is on.
pub fn paint(text: &str, style: &console::Style) -> String {
    if color() {
        style.apply_to(text).force_styling(true).to_string()
    } else {
        text.to_string()
    }
}

fn plain(text: &str) {
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    let _ = writeln!(lock, "{text}");
}

/// A line of our own: above the live view, or on its own.
pub fn line(text: &str) {
    match &ui().mode {
        Mode::Plain => plain(text),
        Mode::Live { multi, .. } => {
            let _ = multi.println(text);
        }
    }
}

/// Work on a service's line in the live view (made on first use); false in
/// plain mode.
fn with_bar(prefix: &str, f: impl FnOnce(&ProgressBar, &mut String)) -> bool {
    let Mode::Live { multi, bars } = &ui().mode else {
        return false;
    };
    let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
    let (bar, state) = bars.entry(prefix.to_string()).or_insert_with(|| {
        let style = ProgressStyle::with_template("{prefix:<14} {spinner} {elapsed:>4} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let b = multi.add(ProgressBar::new_spinner().with_style(style));
        b.set_prefix(prefix.to_string());
        b.enable_steady_tick(Duration::from_millis(120));
        (b, String::new())
    });
    f(bar, state);
    true
}

/// Show `text` for `prefix`: on its line of the live view (through `live`),
/// or as a plain `[prefix] text` line. Nothing with `-q`.
fn show(prefix: &str, text: &str, live: impl FnOnce(&ProgressBar, &mut String)) {
    if !ui().quiet && !with_bar(prefix, live) {
        plain(&format!("[{prefix}] {text}"));
    }
}

/// A line that a command printed for `prefix`.
pub fn output(prefix: &str, text: &str) {
    show(prefix, text, |b, state| {
        let state = paint(state, &console::Style::new().bold());
        b.set_message(format!("{state} {}", text.trim()));
    });
}

/// A service's state: `waiting`, `building`, `pushing`, ….
pub fn state(prefix: &str, new_state: &str) {
    show(prefix, new_state, |b, state| {
        *state = new_state.to_string();
        b.set_message(paint(new_state, &console::Style::new().bold()));
    });
}

/// A service is done.
pub fn done(prefix: &str, text: &str) {
    show(prefix, text, |b, _| {
        b.finish_with_message(paint(text, &console::Style::new().green()));
    });
}

/// Stop the live view, leaving each line as it last was.
pub fn finish() {
    if let Mode::Live { bars, .. } = &ui().mode {
        for (b, _) in bars.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}

/// In the live view, a line for each service up front, in order.
pub fn waiting(services: &[&str]) {
    if matches!(ui().mode, Mode::Live { .. }) {
        for s in services {
            state(s, "waiting");
        }
    }
}
