//! `carrier listen [ADDR]`: accepts connections and prints events and received messages until
//! Ctrl-C or `--duration`.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use carrier::{Carrier, CarrierDesc, CarrierEvent};
use clap::Args;

use crate::CliError;
use crate::session::{
    POLL_INTERVAL, describe_event, describe_message, describe_statistics, parse_bind, parse_secs,
    stamp,
};
use crate::sim::{SimArgs, SimPreset};

/// Options of `carrier listen`.
#[derive(Clone, Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on: `HOST:PORT`, `[IPV6]:PORT`, or a port alone (any IPv4 address).
    /// `[::]:PORT` listens on IPv6 and IPv4.
    #[arg(
        default_value = "0.0.0.0:4000",
        help = "Address to listen on: HOST:PORT, [IPV6]:PORT, or a port alone (any IPv4 \
                address). [::]:PORT listens on IPv6 and IPv4"
    )]
    pub addr: String,
    /// Stop after this many seconds [default: run until Ctrl-C].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Send every message back to its sender (same channel, reliability and priority).
    #[arg(long)]
    pub echo: bool,
    /// Simulator options (applied to this process's traffic, both directions).
    #[command(flatten)]
    pub sim: SimArgs,
}

/// Runs `carrier listen`.
pub fn run(args: &ListenArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let bind = parse_bind(&args.addr)?;
    let plan = args.sim.plan(SimPreset::None);
    let simulator = plan.as_ref().map(|p| p.both_directions(0)).transpose()?;
    let carrier = Carrier::new(CarrierDesc {
        address: bind.address,
        port: bind.port,
        family_type: bind.family,
        simulator,
        ..CarrierDesc::default()
    })?;
    let start = crate::now();
    let sim = plan.as_ref().map_or_else(
        || "no simulator".to_string(),
        |p| format!("simulator {} (seed {})", p.label, p.seed),
    );
    let until = args
        .duration
        .map_or_else(|| "Ctrl-C".to_string(), |d| format!("{d:?}"));
    writeln!(
        out,
        "listening on {} ({sim}); running until {until}",
        carrier.local_addr()
    )?;
    out.flush()?;
    let deadline = args.duration.map(|d| start + d);
    let mut connected = BTreeSet::new();
    loop {
        carrier.update();
        while let Some(event) = carrier.poll_event() {
            writeln!(out, "{} {}", stamp(start), describe_event(&carrier, &event))?;
            match event {
                CarrierEvent::ConnectionEstablished { id } => {
                    connected.insert(id);
                }
                CarrierEvent::Disconnect { id, .. } => {
                    connected.remove(&id);
                }
                _ => {}
            }
        }
        while let Some((id, message)) = carrier.poll_message() {
            writeln!(out, "{} {}", stamp(start), describe_message(id, &message))?;
            if args.echo
                && let Err(e) = carrier.send(
                    id,
                    &message.payload,
                    message.reliability,
                    message.priority,
                    message.channel,
                )
            {
                writeln!(out, "{} {id} echo not sent: {e}", stamp(start))?;
            }
        }
        out.flush()?;
        if deadline.is_some_and(|d| crate::now() >= d) {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    for id in connected {
        if let Some(stats) = carrier.statistics(id) {
            let peer = carrier
                .remote_addr(id)
                .map_or_else(|| "?".to_string(), |a| a.to_string());
            writeln!(out, "{id} ({peer}) statistics:")?;
            for line in describe_statistics(&stats) {
                writeln!(out, "  {line}")?;
            }
        }
    }
    writeln!(out, "{} stopped", stamp(start))?;
    out.flush()?;
    Ok(())
}
