//! `carrier bench`: Carrier against raw UDP, in the same run, on loopback.
//!
//! Every scenario measures Carrier and a raw-UDP baseline one after the other in the same
//! process run, each several times, and reports medians and Carrier's ratio to the baseline, so
//! a noisy machine does not hide a regression (issue 6, docs/performance.md). The baseline of
//! every ratio is std's `UdpSocket`, one datagram per syscall; the `sendmmsg`/`recvmmsg` batches
//! are measured and shown as well.
//!
//! | scenario | what | Carrier | raw UDP |
//! |---|---|---|---|
//! | `throughput` | reliable ordered messages one way, 64 B × 200,000 and 1 KiB × 50,000, order and count verified | dedicated thread (the default) and manual mode | `send`/`recv`, `sendmmsg`/`recvmmsg` × 32 |
//! | `pingpong` | a 64 B reliable message echoed 10,000 times (after 1,000 warm-up): RTT p50, p99, max | manual mode (spinning on `update`) and threaded mode with `thread_instant_response` | blocking `recv`, and a spinning non-blocking `recv` |
//! | `connections` | a server process; this process drives N = 100 and 1,000 carrier-proto client endpoints from one thread, each sending a 32 B unreliable message at 20 Hz for 10 s: server CPU, peak RSS, delivery, heap per idle connection | the server as a `Carrier` (dedicated and manual) | a server that receives the same datagrams (`recv`, `recvmmsg`) |
//! | `lossy` | 64 B × 20,000 reliable at 40 ms RTT through the simulator at 0 % and 5 % loss each way, and through a network-namespace pair with nftables dropping 5 % (root only) | dedicated thread | the same datagrams, raw, through the same simulated delay (a floor) |
//! | `alloc` | allocations per message on the send and receive paths in steady state (counting allocator) | manual mode | — |
//!
//! Each load loop is bounded in count and time: a stalled Carrier makes its run fail with a
//! reason, the other runs go on, and `carrier bench` exits non-zero at the end. `--quick` runs
//! one repetition with smaller counts. The servers of `connections` run in their own process (the
//! `carrier` binary re-executed with the hidden `bench-server` command), so `getrusage` measures
//! the server alone.
//!
//! The only unsafe code of the CLI is in `sys` (batched syscalls, `getrusage`, `setns`, the
//! counting allocator).

mod alloc;
mod connections;
mod json;
mod lossy;
mod netns;
mod pingpong;
mod raw;
mod report;
mod stats;
mod sys;
mod throughput;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use carrier::{Carrier, CarrierDesc, CarrierEvent, ConnectionId, ThreadMode};
use clap::{Args, ValueEnum};

use crate::CliError;

pub use connections::ServerArgs;
pub use report::{Measurement, Metric};
pub use sys::{AllocCounters, CountingAlloc};

/// A scenario of `carrier bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// Reliable ordered messages one way: messages/s and MB/s.
    Throughput,
    /// A 64 B reliable message echoed: RTT percentiles.
    Pingpong,
    /// Many client endpoints at 20 Hz: the server's CPU, memory and delivery.
    Connections,
    /// 20,000 reliable messages at 40 ms RTT with and without loss: completion time.
    Lossy,
    /// Allocations per message on the send and receive paths.
    Alloc,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Scenario; 5] = [
        Scenario::Throughput,
        Scenario::Pingpong,
        Scenario::Connections,
        Scenario::Lossy,
        Scenario::Alloc,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Pingpong => "pingpong",
            Scenario::Connections => "connections",
            Scenario::Lossy => "lossy",
            Scenario::Alloc => "alloc",
        }
    }
}

/// Options of `carrier bench`.
#[derive(Clone, Debug, Default, Args)]
pub struct BenchArgs {
    /// Scenarios to run [default: all of them].
    #[arg(value_name = "SCENARIO")]
    pub scenarios: Vec<Scenario>,
    /// One repetition and smaller counts (a CI-sized run of well under a minute).
    #[arg(long)]
    pub quick: bool,
    /// Print the results as JSON on standard output instead of tables.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the tables as Markdown.
    #[arg(long)]
    pub markdown: bool,
    /// Repetitions of every measurement [default: 3, or 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub reps: Option<u32>,
    /// Skip the network-namespace part of `lossy` (it needs root, `ip` and `nft`).
    #[arg(long)]
    pub no_netns: bool,
    /// Client counts of `connections` (testing aid).
    #[arg(long, value_name = "N,...", value_delimiter = ',', hide = true,
          value_parser = clap::value_parser!(u32).range(1..=5_000))]
    pub clients: Vec<u32>,
    /// Runs only the variants whose name contains this text, e.g. `carrier dedicated` (to
    /// profile one of them; ratios then need the baseline to be selected too). In `throughput`
    /// the name is prefixed with the case, e.g. `1 KiB × 50000: carrier manual`.
    #[arg(long, value_name = "TEXT", hide = true)]
    pub only: Option<String>,
    /// Load duration of `connections` in milliseconds (testing aid).
    #[arg(long, value_name = "MS", hide = true,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub load_ms: Option<u64>,
}

/// Counts and durations of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Repetitions of every measurement.
    pub reps: usize,
    /// `--quick`.
    pub quick: bool,
    /// Messages of the 64 B throughput case.
    pub small_count: usize,
    /// Messages of the 1 KiB throughput case.
    pub large_count: usize,
    /// Measured round trips of `pingpong`.
    pub round_trips: usize,
    /// Warm-up round trips of `pingpong`.
    pub warmup: usize,
    /// Client counts of `connections`.
    pub clients: Vec<usize>,
    /// Load duration of `connections`.
    pub load: Duration,
    /// Messages of `lossy`.
    pub lossy_count: usize,
    /// Messages of each `alloc` measurement (after as many for warm-up).
    pub alloc_count: usize,
    /// Whether to try the namespace part of `lossy`.
    pub netns: bool,
    /// Only the variants whose name contains this (`--only`).
    pub only: Option<String>,
}

impl Plan {
    /// The plan for these options.
    pub fn new(args: &BenchArgs) -> Self {
        let mut plan = Self::defaults(args);
        if !args.clients.is_empty() {
            plan.clients = args.clients.iter().map(|n| *n as usize).collect();
        }
        if let Some(ms) = args.load_ms {
            plan.load = Duration::from_millis(ms);
        }
        plan.only.clone_from(&args.only);
        plan
    }

    /// Whether the variant named `variant` runs.
    pub fn wants(&self, variant: &str) -> bool {
        self.only.as_deref().is_none_or(|o| variant.contains(o))
    }

    fn defaults(args: &BenchArgs) -> Self {
        let default_reps = if args.quick { 1 } else { 3 };
        let reps = args.reps.map_or(default_reps, |r| r as usize);
        if args.quick {
            Plan {
                reps,
                quick: true,
                small_count: 50_000,
                large_count: 10_000,
                round_trips: 2_000,
                warmup: 200,
                clients: vec![100, 1_000],
                load: Duration::from_secs(2),
                lossy_count: 5_000,
                alloc_count: 5_000,
                netns: !args.no_netns,
                only: None,
            }
        } else {
            Plan {
                reps,
                quick: false,
                small_count: 200_000,
                large_count: 50_000,
                round_trips: 10_000,
                warmup: 1_000,
                clients: vec![100, 1_000],
                load: Duration::from_secs(10),
                lossy_count: 20_000,
                alloc_count: 20_000,
                netns: !args.no_netns,
                only: None,
            }
        }
    }
}

/// The progress bar on standard error: redrawn in place on a terminal, a line per step
/// otherwise.
struct Progress {
    tty: bool,
    total: usize,
    done: usize,
    started: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            total,
            done: 0,
            started: crate::now(),
        }
    }

    /// Starts the next step.
    fn step(&mut self, label: &str) {
        self.done += 1;
        let width = 24;
        let filled = (self.done.saturating_sub(1) * width)
            .checked_div(self.total)
            .unwrap_or(0);
        let bar: String = std::iter::repeat_n('#', filled)
            .chain(std::iter::repeat_n('-', width - filled.min(width)))
            .collect();
        let elapsed = crate::now().saturating_duration_since(self.started);
        let line = format!(
            "[{bar}] {:>3}/{} {:>5.0} s  {label}",
            self.done,
            self.total,
            elapsed.as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed standard error must not stop the benchmark.
        let _ = if self.tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// What the scenarios share: the plan, the progress bar and the results.
pub(crate) struct Ctx {
    pub plan: Plan,
    progress: Progress,
    pub results: Vec<Measurement>,
    /// Parts that were skipped, and why.
    pub notes: Vec<String>,
}

impl Ctx {
    /// Announces the next step (one run of one variant).
    pub fn step(&mut self, label: impl AsRef<str>) {
        self.progress.step(label.as_ref());
    }
}

fn steps(plan: &Plan, scenario: Scenario) -> usize {
    match scenario {
        Scenario::Throughput => throughput::steps(plan),
        Scenario::Pingpong => pingpong::steps(plan),
        Scenario::Connections => connections::steps(plan),
        Scenario::Lossy => lossy::steps(plan),
        Scenario::Alloc => alloc::steps(plan),
    }
}

/// Runs `carrier bench`.
pub fn run(args: &BenchArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let plan = Plan::new(args);
    let mut scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    scenarios.sort();
    scenarios.dedup();
    let total = scenarios.iter().map(|s| steps(&plan, *s)).sum();
    let mut ctx = Ctx {
        plan,
        progress: Progress::new(total),
        results: Vec::new(),
        notes: Vec::new(),
    };
    let started = crate::now();
    for scenario in &scenarios {
        match scenario {
            Scenario::Throughput => throughput::run(&mut ctx),
            Scenario::Pingpong => pingpong::run(&mut ctx),
            Scenario::Connections => connections::run(&mut ctx),
            Scenario::Lossy => lossy::run(&mut ctx),
            Scenario::Alloc => alloc::run(&mut ctx),
        }
    }
    ctx.progress.finish();
    let report = report::Report::new(
        &ctx.plan,
        &scenarios,
        ctx.results,
        ctx.notes,
        crate::now().saturating_duration_since(started),
    );
    if args.json {
        out.write_all(report.json().render().as_bytes())?;
    } else if args.markdown {
        out.write_all(report.markdown().as_bytes())?;
    } else {
        out.write_all(report.text().as_bytes())?;
    }
    out.flush()?;
    let failures = report.failures();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::BenchFailed(failures.join("; ")))
    }
}

/// Runs the hidden `carrier bench-server` command (the server process of `connections`).
pub fn run_server(args: &ServerArgs, out: &mut dyn Write) -> Result<(), CliError> {
    connections::serve(args, out)
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the scenarios
// ---------------------------------------------------------------------------------------------

/// Longest wait for a connection to be established.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// A descriptor on 127.0.0.1 (any port) in `mode`.
fn loopback_desc(mode: ThreadMode) -> CarrierDesc {
    CarrierDesc {
        address: Some("127.0.0.1".into()),
        thread_mode: mode,
        ..CarrierDesc::default()
    }
}

/// Connects `client` to `server` (pumping both, whatever their mode); returns the client's and
/// the server's connection ids.
fn connect_pair(
    client: &Carrier,
    server: &Carrier,
    server_addr: &str,
) -> Result<(ConnectionId, ConnectionId), String> {
    let id = client
        .connect(server_addr)
        .map_err(|e| format!("connect failed: {e}"))?;
    let deadline = crate::now() + CONNECT_LIMIT;
    let mut server_id = None;
    let mut client_ok = false;
    while crate::now() < deadline {
        client.update();
        server.update();
        while let Some(e) = server.poll_event() {
            match e {
                CarrierEvent::ConnectionEstablished { id } => server_id = Some(id),
                CarrierEvent::FailedToConnect { reason, .. }
                | CarrierEvent::Disconnect { reason, .. } => {
                    return Err(format!("the server side failed: {reason}"));
                }
                _ => {}
            }
        }
        while let Some(e) = client.poll_event() {
            match e {
                CarrierEvent::ConnectionEstablished { .. } => client_ok = true,
                CarrierEvent::FailedToConnect { reason, .. }
                | CarrierEvent::Disconnect { reason, .. } => {
                    return Err(format!("could not connect: {reason}"));
                }
                _ => {}
            }
        }
        if let (true, Some(sid)) = (client_ok, server_id) {
            return Ok((id, sid));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Err(format!(
        "not connected within {} s",
        CONNECT_LIMIT.as_secs()
    ))
}

/// Writes `seq` into the first 8 bytes of `buf` and a byte derived from it at the end (so the
/// receiver checks both the order and that the whole message arrived).
fn stamp(buf: &mut [u8], seq: u64) {
    if buf.len() >= 8 {
        buf[..8].copy_from_slice(&seq.to_le_bytes());
    }
    if let Some(last) = buf.last_mut() {
        *last = (seq as u8) ^ 0xA5;
    }
}

/// The sequence number of a stamped payload of `size` bytes, if intact.
fn unstamp(payload: &[u8], size: usize) -> Option<u64> {
    if payload.len() != size || size < 8 {
        return None;
    }
    let seq = u64::from_le_bytes(payload[..8].try_into().ok()?);
    (payload[size - 1] == (seq as u8) ^ 0xA5).then_some(seq)
}

/// A receiver's in-order accounting of stamped messages: the next sequence expected, how many
/// arrived in order, and how many did not (out of order, skipped ahead, or damaged).
#[derive(Debug, Default)]
struct InOrder {
    next: u64,
    delivered: usize,
    violations: usize,
}

impl InOrder {
    /// Accounts one received payload of a stream of `size`-byte stamped messages.
    fn record(&mut self, payload: &[u8], size: usize) {
        match unstamp(payload, size) {
            Some(seq) if seq == self.next => {
                self.next += 1;
                self.delivered += 1;
            }
            Some(seq) => {
                self.violations += 1;
                self.next = self.next.max(seq + 1);
            }
            None => self.violations += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_counts_gaps_repeats_and_damage() {
        let msg = |seq: u64| {
            let mut b = vec![0u8; 16];
            stamp(&mut b, seq);
            b
        };
        let mut o = InOrder::default();
        for seq in [0, 1, 3, 4, 4] {
            o.record(&msg(seq), 16);
        }
        o.record(&[1, 2, 3], 16);
        // 0 and 1 in order; 3 skips 2 (a violation, then 4 is in order); 4 again and the short
        // payload are violations.
        assert_eq!((o.next, o.delivered, o.violations), (5, 3, 3));
    }

    #[test]
    fn stamps_round_trip_and_catch_damage() {
        let mut buf = vec![0u8; 64];
        stamp(&mut buf, 12_345);
        assert_eq!(unstamp(&buf, 64), Some(12_345));
        assert_eq!(unstamp(&buf[..63], 64), None);
        buf[63] ^= 1;
        assert_eq!(unstamp(&buf, 64), None);
    }

    #[test]
    fn quick_plans_are_smaller() {
        let full = Plan::new(&BenchArgs::default());
        let quick = Plan::new(&BenchArgs {
            quick: true,
            ..BenchArgs::default()
        });
        assert_eq!(full.reps, 3);
        assert_eq!(quick.reps, 1);
        assert!(quick.small_count < full.small_count && quick.load < full.load);
        let reps = Plan::new(&BenchArgs {
            reps: Some(5),
            ..BenchArgs::default()
        });
        assert_eq!(reps.reps, 5);
    }
}
