//! Print the content digest of a build context, as the main program computes
//! it: `cargo run --release --example digest -- DIR [DOCKERFILE]`.
//! Used by scripts/bench to measure digest throughput.

use offcluster::read::compose::BuildSpec;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: digest DIR [DOCKERFILE]");
        return ExitCode::from(2);
    };
    let dockerfile = args.next().unwrap_or_else(|| format!("{dir}/Dockerfile"));
    let spec = BuildSpec {
        context: dir,
        dockerfile: Some(dockerfile),
        args: Vec::new(),
        target: None,
        platform: None,
        ..Default::default()
    };
    match offcluster::inputs::digest::digest(&spec, &|k| std::env::var(k).ok()) {
        Ok(d) => {
            println!("{d}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
