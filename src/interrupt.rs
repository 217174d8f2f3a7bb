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
}

static STATE: Mutex<State> = Mutex::new(State {
    groups: Vec::new(),
    temp_files: Vec::new(),
});
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
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
        "\ninterrupted ({name}): stopping {} running command(s); the compose file is left as it was",
        st.groups.len()
    );
    kill_groups(&st.groups, libc::SIGTERM);
    if !st.groups.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
        kill_groups(&st.groups, libc::SIGKILL);
    }
    for f in &st.temp_files {
        let _ = std::fs::remove_file(f);
    }
    std::process::exit(128 + sig);
}

/// Start a child under the lock and remember its process group; a child
/// started after an interrupt is stopped at once.
pub fn spawn<T>(
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
    st.groups.extend(ids);
    Ok(handle)
}

/// Forget children that have ended.
pub fn forget(pids: &[u32]) {
    state().groups.retain(|g| !pids.contains(g));
}

/// A temporary file to remove if we are interrupted.
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
