//! The demo's header and final report.

use std::io::Write;
use std::time::Duration;

use carrier::{Carrier, Statistics};
use carrier_sim::{Direction, LinkStats};

use super::{Demo, DemoArgs, Kind, Totals, Way, route};
use crate::CliError;
use crate::format::{Table, bytes, millis, percent};
use crate::sim::SimPlan;

/// Prints what is about to run.
pub(super) fn header(
    out: &mut dyn Write,
    args: &DemoArgs,
    plan: Option<&SimPlan>,
    server: &Carrier,
) -> Result<(), CliError> {
    writeln!(
        out,
        "carrier demo: 1 server ({}) and {} clients over loopback, sending for {:.1} s",
        server.local_addr(),
        args.clients,
        args.duration.as_secs_f64()
    )?;
    match plan {
        Some(p) => writeln!(
            out,
            "simulated network: {} on every carrier's outgoing datagrams (seed {}; replay with --seed {})",
            p.label, p.seed, p.seed
        )?,
        None => writeln!(out, "simulated network: none (plain loopback)")?,
    }
    writeln!(
        out,
        "streams: game state unreliable/channel 0/high at 30 Hz (70–190 B); chat reliable/channel 1/normal \
         at 4/s, 1 in 4 of 2–6 KB (message MTU {} B, so split into fragments)",
        server.message_mtu()
    )?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Statistics of one client's connection, from both ends.
struct ConnectionRow {
    name: String,
    client: Option<Statistics>,
    server: Option<Statistics>,
}

/// Everything the report shows, taken before the carriers shut down.
pub(super) struct Snapshot {
    streams: Vec<(Way, Kind, Totals)>,
    connections: Vec<ConnectionRow>,
    simulator: Option<(LinkStats, LinkStats)>,
    problems: Vec<String>,
    warnings: u64,
    connect_time: Duration,
    duration: Duration,
    drain_time: Duration,
}

fn add(a: &mut LinkStats, b: &LinkStats) {
    a.packets_in += b.packets_in;
    a.bytes_in += b.bytes_in;
    a.packets_out += b.packets_out;
    a.bytes_out += b.bytes_out;
    a.dropped_loss += b.dropped_loss;
    a.dropped_burst += b.dropped_burst;
    a.dropped_bandwidth += b.dropped_bandwidth;
    a.dropped_mtu += b.dropped_mtu;
    a.dropped_blackhole += b.dropped_blackhole;
    a.dropped_queue_full += b.dropped_queue_full;
    a.dropped_purged += b.dropped_purged;
    a.duplicated += b.duplicated;
    a.corrupted += b.corrupted;
    a.queued_packets += b.queued_packets;
    a.queued_bytes += b.queued_bytes;
}

impl Snapshot {
    pub(super) fn take(
        demo: &Demo,
        connect_time: Duration,
        duration: Duration,
        drain_time: Duration,
    ) -> Self {
        let streams = [
            (Way::Up, Kind::State),
            (Way::Up, Kind::Chat),
            (Way::Down, Kind::State),
            (Way::Down, Kind::Chat),
        ]
        .into_iter()
        .map(|(w, k)| (w, k, demo.totals(w, k)))
        .collect();
        let server = &demo.server.carrier;
        let connections = demo
            .clients
            .iter()
            .map(|c| {
                let client_id = c.links.keys().next().copied();
                let local = c.carrier.local_addr();
                let server_id = demo
                    .server
                    .links
                    .keys()
                    .copied()
                    .find(|id| server.remote_addr(*id) == Some(local));
                ConnectionRow {
                    name: c.name.clone(),
                    client: client_id.and_then(|id| c.carrier.statistics(id)),
                    server: server_id.and_then(|id| server.statistics(id)),
                }
            })
            .collect();
        let outbound = |c: &Carrier| c.with_simulator(|s| s.stats(Direction::Outbound));
        let simulator = outbound(server).map(|down| {
            let mut up = LinkStats::default();
            for c in &demo.clients {
                if let Some(s) = outbound(&c.carrier) {
                    add(&mut up, &s);
                }
            }
            (up, down)
        });
        let warnings = demo.server.warnings + demo.clients.iter().map(|c| c.warnings).sum::<u64>();
        Snapshot {
            streams,
            connections,
            simulator,
            problems: demo.problems.clone(),
            warnings,
            connect_time,
            duration,
            drain_time,
        }
    }

    /// Prints the report; returns the failures (empty when the demo passed).
    pub(super) fn write(&self, out: &mut dyn Write) -> Result<Vec<String>, CliError> {
        let mut failures = self.problems.clone();
        writeln!(
            out,
            "connected in {:.2} s, sent for {:.1} s, then waited {:.2} s for the last messages",
            self.connect_time.as_secs_f64(),
            self.duration.as_secs_f64(),
            self.drain_time.as_secs_f64()
        )?;
        writeln!(out)?;

        writeln!(out, "messages")?;
        let mut table = Table::new([
            "stream",
            "kind",
            "sent",
            "delivered",
            "delivered %",
            "order",
            "intact",
        ])
        .left_aligned(2);
        for (way, kind, t) in &self.streams {
            let (channel, reliability, priority) = route(*kind);
            let reliable = reliability.is_reliable();
            let name = match kind {
                Kind::State => "state",
                Kind::Chat => "chat",
            };
            let ratio = if t.sent == 0 {
                1.0
            } else {
                t.delivered as f64 / t.sent as f64
            };
            let mark = |n: u64, what: &str| {
                if n == 0 {
                    "✓".to_string()
                } else {
                    format!("{n} {what}")
                }
            };
            let stream = format!("{} ch {channel}", way.label());
            table.row([
                stream.clone(),
                format!(
                    "{name} ({}, {priority:?})",
                    if reliable { "reliable" } else { "unreliable" }
                ),
                t.sent.to_string(),
                t.delivered.to_string(),
                percent(ratio),
                mark(t.violations, "out of order"),
                mark(t.damaged, "damaged"),
            ]);
            if reliable && t.delivered < t.sent {
                failures.push(format!(
                    "{stream}: {} of {} reliable messages were not delivered",
                    t.sent - t.delivered,
                    t.sent
                ));
            }
            if t.violations > 0 {
                failures.push(format!(
                    "{stream}: {} messages arrived out of order",
                    t.violations
                ));
            }
            if t.damaged > 0 {
                failures.push(format!("{stream}: {} messages arrived damaged", t.damaged));
            }
            if reliable && t.refused > 0 {
                failures.push(format!(
                    "{stream}: the carrier refused {} reliable sends",
                    t.refused
                ));
            }
        }
        write!(out, "{}", table.render())?;
        let refused: u64 = self
            .streams
            .iter()
            .filter(|(_, k, _)| *k == Kind::State)
            .map(|(_, _, t)| t.refused)
            .sum();
        if refused > 0 {
            writeln!(out, "(the carrier refused {refused} unreliable sends)")?;
        }
        writeln!(out)?;

        writeln!(
            out,
            "connections (lifetime statistics; loss = datagrams declared lost by the sender)"
        )?;
        let mut table = Table::new([
            "client",
            "rtt",
            "rtt min",
            "loss c→s",
            "loss s→c",
            "client sent (messages)",
            "client received (messages)",
        ]);
        for row in &self.connections {
            let Some(c) = &row.client else {
                table.row([row.name.as_str(), "–", "–", "–", "–", "–", "–"]);
                continue;
            };
            let loss = |s: &Statistics| {
                format!(
                    "{} ({})",
                    percent(f64::from(s.lifetime.packet_loss)),
                    s.lifetime.packets_lost
                )
            };
            let (rtt, rtt_min) = if c.rtt.has_samples {
                (millis(c.rtt.smoothed), millis(c.rtt.min))
            } else {
                ("–".into(), "–".into())
            };
            table.row([
                row.name.clone(),
                rtt,
                rtt_min,
                loss(c),
                row.server.as_ref().map_or_else(|| "–".into(), loss),
                format!(
                    "{} ({})",
                    bytes(c.lifetime.bytes_sent),
                    bytes(c.effective_lifetime.bytes_sent)
                ),
                format!(
                    "{} ({})",
                    bytes(c.lifetime.bytes_received),
                    bytes(c.effective_lifetime.bytes_received)
                ),
            ]);
        }
        write!(out, "{}", table.render())?;
        writeln!(out)?;

        if let Some((up, down)) = &self.simulator {
            writeln!(out, "simulator (datagrams)")?;
            let mut table = Table::new([
                "direction",
                "in",
                "delivered",
                "lost",
                "outages",
                "queue/rate",
                "duplicated",
                "in flight",
            ]);
            for (way, s) in [(Way::Up, up), (Way::Down, down)] {
                table.row([
                    way.label().to_string(),
                    s.packets_in.to_string(),
                    s.packets_out.to_string(),
                    s.dropped_loss.to_string(),
                    s.dropped_burst.to_string(),
                    (s.dropped_queue_full + s.dropped_bandwidth + s.dropped_mtu).to_string(),
                    s.duplicated.to_string(),
                    s.queued_packets.to_string(),
                ]);
            }
            write!(out, "{}", table.render())?;
            writeln!(out)?;
        }
        if self.warnings > 0 {
            writeln!(
                out,
                "{} driver or security events (RUST_LOG=info shows them)",
                self.warnings
            )?;
        }
        if failures.is_empty() {
            writeln!(
                out,
                "result: PASS — every reliable message delivered, nothing out of order or damaged"
            )?;
        } else {
            writeln!(out, "result: FAIL")?;
            for f in &failures {
                writeln!(out, "  - {f}")?;
            }
        }
        Ok(failures)
    }
}
