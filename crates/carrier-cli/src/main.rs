//! The `carrier` binary: parses the command line and hands it to [`carrier_cli::run`].

use std::process::ExitCode;

use clap::Parser;

/// Counts allocations while `carrier bench` asks it to (one relaxed load per call otherwise).
#[global_allocator]
static ALLOCATOR: carrier_cli::bench::CountingAlloc = carrier_cli::bench::CountingAlloc;

fn main() -> ExitCode {
    let cli = carrier_cli::Cli::parse();
    carrier_cli::init_logging();
    let mut stdout = std::io::stdout().lock();
    match carrier_cli::run(cli, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            drop(stdout);
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
