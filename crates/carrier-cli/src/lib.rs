//! The `carrier` command-line tool, as a library: the binary's `main` only parses the command
//! line ([`Cli`]) and calls [`run`].
//!
//! - `carrier listen [ADDR]` accepts connections and prints events and received messages
//!   ([`listen`]).
//! - `carrier connect ADDR` sends each line of standard input as a message and prints what comes
//!   back ([`connect`]).
//! - `carrier demo` runs a server and several clients in one process over loopback, through a
//!   simulated network, and reports what was delivered ([`demo`]).
//! - `carrier bench [SCENARIO]...` measures Carrier against raw UDP on loopback and prints a
//!   table (or `--json`) of medians and ratios ([`bench`](mod@bench)).
//!
//! Every command takes the simulator options of [`sim::SimArgs`]. Logs go to standard error
//! through `tracing-subscriber`, filtered by `RUST_LOG` (default `warn`).

pub mod bench;
pub mod connect;
pub mod demo;
mod error;
pub mod format;
pub mod listen;
mod session;
pub mod sim;

use std::io::Write;
use std::time::Instant;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "carrier",
    version,
    about = "Carrier: reliable-UDP messaging for games — listen, connect, or watch a demo",
    long_about = "Carrier: reliable-UDP messaging for games.\n\n\
        `carrier demo` runs a server and several clients in one process over a simulated \
        network and reports what was delivered; `carrier listen` and `carrier connect` talk \
        over real UDP; `carrier bench` measures Carrier against raw UDP.\n\nLogs go to standard error; set RUST_LOG (e.g. RUST_LOG=debug) to see \
        more.",
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accept connections; print events and received messages.
    Listen(listen::ListenArgs),
    /// Connect to a listener; send each line of standard input as a message.
    Connect(connect::ConnectArgs),
    /// Run a server and several clients over a simulated network and report the delivery.
    Demo(demo::DemoArgs),
    /// Measure Carrier against raw UDP on loopback (throughput, ping-pong, connections, loss,
    /// allocations); a table of medians and ratios, or JSON.
    Bench(bench::BenchArgs),
    /// The server process of `carrier bench connections` (internal).
    #[command(hide = true)]
    BenchServer(bench::ServerArgs),
}

/// Runs a parsed command, writing its output to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    match cli.command {
        Command::Listen(args) => listen::run(&args, out),
        Command::Connect(args) => connect::run(&args, out),
        Command::Demo(args) => demo::run(&args, out),
        Command::Bench(args) => bench::run(&args, out),
        Command::BenchServer(args) => bench::run_server(&args, out),
    }
}

/// Sends `tracing` logs to standard error, filtered by `RUST_LOG` (default `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The CLI's clock (a tool runs on real time).
#[allow(clippy::disallowed_methods)] // the CLI is not sans-IO: it reads the real clock
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// A seed for runs that were given none.
#[allow(clippy::disallowed_methods)] // seeds the simulator when --seed is not given
pub(crate) fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Keep it short enough to retype.
    (nanos ^ u64::from(std::process::id()).rotate_left(17)) % 1_000_000
}
