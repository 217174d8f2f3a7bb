//! Generate the man page from the command-line definition (clap_mangen):
//! `cargo run --example man > convox-build-off-cluster.1`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match offcluster::cli::Cli::man_page() {
        Ok(page) => match std::io::stdout().write_all(&page) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
