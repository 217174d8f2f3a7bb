use offcluster::{app, cli, cli::Cli, plan::UsageError};
use std::process::ExitCode;

fn main() -> ExitCode {
    // A GitHub Action's inputs, read as the Drone settings they stand for
    // (before any thread starts).
    for (k, v) in cli::action_inputs(std::env::vars()) {
        std::env::set_var(k, v);
    }
    // The old tool's default repository, after every setting of `repo`.
    if let Some(v) = cli::old_repo_default(&|k| std::env::var(k).ok()) {
        std::env::set_var("PLUGIN_REPO", v);
    }
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(msg) = cli::missing_input(&e, &|k| std::env::var(k).ok()) {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match app::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
