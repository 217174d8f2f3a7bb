//! SIGINT and SIGTERM: stop every child process (its whole process group),
//! remove our temporary files, leave the compose file untouched, and exit
//! 130 or 143.
//!
//! Children start in process groups of their own, so that a terminal's
//! Ctrl-C reaches only us and we decide; they are spawned and registered
//! under one lock, so a signal never misses one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

struct State {
    groups: Vec<u32>,
    temp_files: Vec<PathBuf>,
    /// What each service is doing now (`building`, `pushing`), for the
    /// timeout's message.
    activities: Vec<(String, String)>,
    /// The command lines running now, with their process groups.
    running: Vec<(Vec<u32>, String)>,
}

static STATE: Mutex<State> = Mutex::new(State {
    groups: Vec::new(),
    temp_files: Vec::new(),
    activities: Vec::new(),
    running: Vec::new(),
});
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Set once the output has replaced the compose file: a stop after that
/// says so.
static REWRITTEN: AtomicBool = AtomicBool::new(false);
/// Held by each change the staging makes to the run's directory, and by the
/// stop before it removes that directory: nothing is made after.
static GATE: Mutex<()> = Mutex::new(());
/// Set by the first failure of parallel work: start nothing new.
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Has a failure elsewhere cancelled the remaining work?
pub fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// After a failure: start nothing new and stop what runs (SIGTERM to each
/// child's process group).
pub fn cancel_all() {
    let st = state();
    CANCELLED.store(true, Ordering::SeqCst);
    kill_groups(&st.groups, libc::SIGTERM);
}

/// Give up on a child: SIGKILL to its whole process group, so what it
/// started (a credential helper) goes with it.
pub fn kill_group_of(pids: &[u32]) {
    kill_groups(pids, libc::SIGKILL);
}

/// When the parallel work has ended after a cancel: kill what ignored the
/// SIGTERM.
pub fn finish_cancel() {
    if cancelled() {
        let st = state();
        kill_groups(&st.groups, libc::SIGKILL);
    }
}

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handle SIGINT and SIGTERM for the rest of the process.
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            stop_everything(sig);
        }
    });
    Ok(())
}

fn kill_groups(groups: &[u32], sig: libc::c_int) {
    for &g in groups {
        if let Ok(pgid) = libc::pid_t::try_from(g) {
            // SAFETY: kill(2) with a negative pid signals a process group; it
            // touches no memory of ours.
            unsafe {
                libc::kill(-pgid, sig);
            }
        }
    }
}

fn stop_everything(sig: libc::c_int) -> ! {
    // Hold the lock to the end: no new child can start now.
    let st = state();
    INTERRUPTED.store(true, Ordering::SeqCst);
    let name = if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    eprintln!(
        "\ninterrupted ({name}): stopping {} running command(s); {}",
        st.groups.len(),
        file_left()
    );
    stop_and_exit(&st, 128 + sig)
}

/// With the lock held: stop every child's process group (SIGTERM, then
/// SIGKILL after half a second), remove our temporary files, exit.
fn stop_and_exit(st: &State, code: i32) -> ! {
    kill_groups(&st.groups, libc::SIGTERM);
    if !st.groups.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
        kill_groups(&st.groups, libc::SIGKILL);
    }
    // Wait for a change the staging is making; it makes none after.
    let _gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
    for f in &st.temp_files {
        let _ = crate::inputs::staging::remove_tree(f);
    }
    std::process::exit(code);
}

/// The output has replaced the compose file.
pub fn rewritten() {
    REWRITTEN.store(true, Ordering::SeqCst);
}

/// What a stop leaves of the compose file.
fn file_left() -> &'static str {
    if REWRITTEN.load(Ordering::SeqCst) {
        "the rewritten file was already written (each built service's `build:` is now `image:` there)"
    } else {
        "the compose file is left as it was"
    }
}

/// One change to the run's directory, unless the run has been stopped.
pub fn gated(f: &mut dyn FnMut() -> std::io::Result<()>) -> std::io::Result<()> {
    let _gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "the run was stopped",
        ));
    }
    f()
}

/// Start a child under the lock and remember its process group and command
/// line (for the timeout's message); a child started after an interrupt is
/// stopped at once.
pub fn spawn<T>(
    cmdline: &str,
    start: impl FnOnce() -> std::io::Result<T>,
    pids: impl Fn(&T) -> Vec<u32>,
) -> std::io::Result<T> {
    let mut st = state();
    if CANCELLED.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("not started: another step failed"));
    }
    let handle = start()?;
    let ids = pids(&handle);
    if INTERRUPTED.load(Ordering::SeqCst) {
        kill_groups(&ids, libc::SIGKILL);
    }
    st.running.push((ids.clone(), cmdline.to_string()));
    st.groups.extend(ids);
    Ok(handle)
}

/// Forget children that have ended.
pub fn forget(pids: &[u32]) {
    let mut st = state();
    st.groups.retain(|g| !pids.contains(g));
    st.running
        .retain(|(p, _)| !p.iter().any(|g| pids.contains(g)));
}

/// A service's activity (`building`, `pushing`); None when it is done.
pub fn activity(service: &str, what: Option<&str>) {
    let mut st = state();
    st.activities.retain(|(s, _)| s != service);
    if let Some(w) = what.filter(|w| *w != "waiting") {
        st.activities.push((service.to_string(), w.to_string()));
    }
}

/// Run `commit` (the rename that writes the compose file) unless the run
/// has been stopped; under the lock, so a stop cannot come half-way.
pub fn unless_stopped<T>(commit: impl FnOnce() -> T) -> Option<T> {
    let _st = state();
    if INTERRUPTED.load(Ordering::SeqCst) {
        return None;
    }
    Some(commit())
}

/// Stop the whole run when `limit` has passed: every child's process group
/// is stopped, temporary files go, the compose file is left as it was, and
/// the program exits 1 naming what was still running.
pub fn deadline(limit: Duration, shown: String) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let st = state();
        INTERRUPTED.store(true, Ordering::SeqCst);
        let what = if !st.activities.is_empty() {
            st.activities
                .iter()
                .map(|(s, w)| format!("{w} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        } else if !st.running.is_empty() {
            st.running
                .iter()
                .map(|(_, c)| format!("running `{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        } else if REWRITTEN.load(Ordering::SeqCst) {
            "finishing after the rewrite".to_string()
        } else {
            "reading and planning".to_string()
        };
        eprintln!(
            "\nerror: timed out after {shown} while {what}; stopped {} running command(s); {}",
            st.groups.len(),
            file_left()
        );
        stop_and_exit(&st, 1)
    });
}

/// A temporary file (or directory, removed whole) to remove if we are
/// interrupted.
pub fn track_temp_file(path: PathBuf) {
    state().temp_files.push(path);
}

pub fn untrack_temp_file(path: &std::path::Path) {
    state().temp_files.retain(|p| p != path);
}

/// The duct expression, set to start in a process group of its own.
pub fn own_group(expr: duct::Expression) -> duct::Expression {
    expr.before_spawn(|cmd| {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Ok(())
    })
}
