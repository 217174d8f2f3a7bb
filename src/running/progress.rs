//! Where running tells what happens: a line of its own, a line a command
//! printed, a service's state. The view (`view::ui`, a later stage) installs
//! itself here at start-up; until it does, each goes to stderr as a plain
//! line (`[service] text`). Each state change is also recorded for the
//! interrupt handler (`running::interrupt::activity`), so that a stopped run
//! can say what was in progress.

use crate::running::interrupt;
use std::sync::OnceLock;

/// What shows the run to the user.
pub trait Progress: Send + Sync {
    /// A line of this program's own.
    fn line(&self, text: &str);
    /// A line that a command printed for `service`.
    fn output(&self, service: &str, text: &str);
    /// A service's state: `waiting`, `building`, `pushing`, ….
    fn state(&self, service: &str, state: &str);
    /// A service is done.
    fn done(&self, service: &str, text: &str);
    /// The services about to run, in order, before any starts.
    fn waiting(&self, services: &[&str]);
}

static VIEW: OnceLock<Box<dyn Progress>> = OnceLock::new();

/// Show the run in `view` from now on (the first call wins).
pub fn show_in(view: Box<dyn Progress>) {
    let _ = VIEW.set(view);
}

fn view() -> Option<&'static dyn Progress> {
    VIEW.get().map(|v| v.as_ref())
}

pub fn line(text: &str) {
    match view() {
        Some(v) => v.line(text),
        None => eprintln!("{text}"),
    }
}

pub fn output(service: &str, text: &str) {
    match view() {
        Some(v) => v.output(service, text),
        None => eprintln!("[{service}] {text}"),
    }
}

pub fn state(service: &str, state: &str) {
    interrupt::activity(service, Some(state));
    match view() {
        Some(v) => v.state(service, state),
        None => eprintln!("[{service}] {state}"),
    }
}

pub fn done(service: &str, text: &str) {
    interrupt::activity(service, None);
    match view() {
        Some(v) => v.done(service, text),
        None => eprintln!("[{service}] {text}"),
    }
}

pub fn waiting(services: &[&str]) {
    if let Some(v) = view() {
        v.waiting(services);
    }
}
