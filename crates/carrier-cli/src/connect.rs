//! `carrier connect ADDR`: connects to a listener, sends each line of standard input as a
//! message, prints what comes back and the events, and on end of input drains for a moment,
//! prints the connection's statistics and disconnects.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc;
use std::time::Duration;

use carrier::{Carrier, CarrierDesc, CarrierEvent, Priority, Reliability, SendError};
use clap::{Args, ValueEnum};

use crate::CliError;
use crate::session::{
    POLL_INTERVAL, describe_event, describe_message, describe_statistics, family_for, parse_secs,
    resolve, stamp,
};
use crate::sim::{SimArgs, SimPreset};

/// Longest wait for the last reliable messages to be acknowledged after `--drain`.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// A `--priority` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PriorityArg {
    /// Sent first.
    High,
    /// The default.
    #[default]
    Normal,
    /// Background traffic.
    Low,
}

impl From<PriorityArg> for Priority {
    fn from(p: PriorityArg) -> Priority {
        match p {
            PriorityArg::High => Priority::High,
            PriorityArg::Normal => Priority::Normal,
            PriorityArg::Low => Priority::Low,
        }
    }
}

/// Options of `carrier connect`.
#[derive(Clone, Debug, Args)]
pub struct ConnectArgs {
    /// The listener: `HOST:PORT` or `[IPV6]:PORT`.
    #[arg(help = "The listener: HOST:PORT or [IPV6]:PORT")]
    pub addr: String,
    /// Send the lines unreliably (default: reliably).
    #[arg(long)]
    pub unreliable: bool,
    /// Channel to send on (the connection has 8 by default).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub channel: u8,
    /// Priority of the lines.
    #[arg(long, value_enum, default_value_t = PriorityArg::Normal)]
    pub priority: PriorityArg,
    /// After the end of input, keep printing what arrives for this many seconds (and until every
    /// line sent is acknowledged, at most 10 s more).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub drain: Duration,
    /// Simulator options (applied to this process's traffic, both directions).
    #[command(flatten)]
    pub sim: SimArgs,
}

/// Reads standard input line by line on its own thread (lines as raw bytes, without the line
/// ending). The channel closes at end of input.
fn spawn_stdin_reader() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if tx.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// Runs `carrier connect`.
pub fn run(args: &ConnectArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let peer = resolve(&args.addr)?;
    let plan = args.sim.plan(SimPreset::None);
    let simulator = plan.as_ref().map(|p| p.both_directions(0)).transpose()?;
    let carrier = Carrier::new(CarrierDesc {
        family_type: family_for(peer),
        simulator,
        ..CarrierDesc::default()
    })?;
    let start = crate::now();
    let id = carrier.connect(&peer.to_string())?;
    let sim = plan.as_ref().map_or_else(
        || "no simulator".to_string(),
        |p| format!("simulator {} (seed {})", p.label, p.seed),
    );
    writeln!(
        out,
        "connecting from {} to {peer} ({sim})",
        carrier.local_addr()
    )?;
    if std::io::stdin().is_terminal() {
        writeln!(out, "type lines to send them; Ctrl-D to finish")?;
    }
    out.flush()?;
    let reliability = if args.unreliable {
        Reliability::Unreliable
    } else {
        Reliability::Reliable
    };
    let priority = Priority::from(args.priority);
    let lines = spawn_stdin_reader();
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut established = false;
    let mut end_of_input = None;
    loop {
        carrier.update();
        while let Some(event) = carrier.poll_event() {
            writeln!(out, "{} {}", stamp(start), describe_event(&carrier, &event))?;
            match event {
                CarrierEvent::ConnectionEstablished { id: e } if e == id => established = true,
                CarrierEvent::FailedToConnect { id: e, reason } if e == id => {
                    return Err(CliError::FailedToConnect {
                        addr: peer.to_string(),
                        reason,
                    });
                }
                CarrierEvent::Disconnect { id: e, reason } if e == id => {
                    return Err(CliError::Disconnected { addr: peer, reason });
                }
                _ => {}
            }
        }
        while let Some((from, message)) = carrier.poll_message() {
            writeln!(out, "{} {}", stamp(start), describe_message(from, &message))?;
        }
        loop {
            match lines.try_recv() {
                Ok(Ok(line)) => pending.push_back(line),
                Ok(Err(e)) => return Err(CliError::Io(e)),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    end_of_input.get_or_insert_with(crate::now);
                    break;
                }
            }
        }
        while established && let Some(line) = pending.front() {
            match carrier.send(id, line, reliability, priority, args.channel) {
                Ok(()) => {}
                // Wait for the queue to drain.
                Err(SendError::QueueFull { .. }) => break,
                Err(e @ SendError::TooLarge { .. }) => {
                    writeln!(out, "{} line not sent: {e}", stamp(start))?;
                }
                Err(e) => return Err(CliError::Send(e)),
            }
            pending.pop_front();
        }
        out.flush()?;
        if let Some(eof) = end_of_input
            && established
            && pending.is_empty()
        {
            let waited = crate::now().saturating_duration_since(eof);
            let idle = carrier
                .statistics(id)
                .is_none_or(|s| s.flow.bytes_in_flight == 0);
            if (waited >= args.drain && idle) || waited >= args.drain + DRAIN_GRACE {
                break;
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    if let Some(stats) = carrier.statistics(id) {
        writeln!(out, "{id} ({peer}) statistics:")?;
        for line in describe_statistics(&stats) {
            writeln!(out, "  {line}")?;
        }
    }
    carrier.disconnect(id);
    carrier.shutdown();
    writeln!(out, "{} disconnected", stamp(start))?;
    out.flush()?;
    Ok(())
}
