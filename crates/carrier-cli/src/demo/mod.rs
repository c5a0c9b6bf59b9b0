//! `carrier demo`: a server and several clients in one process, over loopback, every datagram
//! passing through a simulated network.
//!
//! Each client and the server exchange, in both directions:
//!
//! - **game state**: unreliable, channel 0, high priority, 30 per second, 70–190 bytes of
//!   positions with a sequence number;
//! - **chat and events**: reliable, channel 1, normal priority, 4 per second, one in four larger
//!   than the message MTU (split into fragments).
//!
//! Every carrier gets a [`NetworkSimulator`](carrier::NetworkSimulator) whose *outbound* link has
//! the preset's conditions (its inbound link passes through), so each datagram crosses the
//! simulated network exactly once in each direction. (The server's outbound link is shared by
//! every client, like a server's uplink: a bandwidth cap such as `mobile`'s applies to all of the
//! server's traffic together.) A live progress line runs on standard error
//! (a line per second when it is not a terminal). After `--duration` the senders stop, the demo
//! waits (at most 10 s) for every reliable message to arrive, and prints a report: per stream
//! (direction × channel) sent, delivered, order and integrity; per connection RTT, loss and bytes
//! from the carrier's statistics; and the simulator's counters. It fails (non-zero exit) if a
//! reliable message was lost, anything arrived out of order or damaged, or a connection failed.

mod payload;
mod report;
mod stream;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use carrier::{
    Carrier, CarrierDesc, CarrierEvent, ConnectionId, DisconnectReason, Priority, Reliability,
};
use clap::Args;

use crate::CliError;
use crate::session::parse_secs;
use crate::sim::{SimArgs, SimPlan, SimPreset};

pub use payload::{Decoded, Kind, decode, encode};
pub use stream::{OrderCheck, Schedule};

/// Period of the game-state stream (30 Hz).
const STATE_PERIOD: Duration = Duration::from_micros(33_333);
/// Period of the chat stream (4 per second).
const CHAT_PERIOD: Duration = Duration::from_millis(250);
/// Longest wait for every client to connect.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// Longest wait, after the senders stop, for every reliable message to arrive.
const DELIVERY_LIMIT: Duration = Duration::from_secs(10);
/// Shortest wait after the senders stop (lets the last unreliable datagrams land).
const DRAIN_MIN: Duration = Duration::from_millis(300);
/// The main loop's sleep.
const LOOP_SLEEP: Duration = Duration::from_millis(1);

/// Options of `carrier demo`.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Number of clients.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub clients: u16,
    /// How long the clients and the server send, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub duration: Duration,
    /// Simulator options (default preset: wifi).
    #[command(flatten)]
    pub sim: SimArgs,
}

/// The channel, reliability and priority of a kind of message.
fn route(kind: Kind) -> (u8, Reliability, Priority) {
    match kind {
        Kind::State => (0, Reliability::Unreliable, Priority::High),
        Kind::Chat => (1, Reliability::Reliable, Priority::Normal),
    }
}

/// One connection seen from one side: what it sends and what it checks.
#[derive(Debug)]
struct Link {
    established: bool,
    ended: Option<DisconnectReason>,
    state_tx: Schedule,
    chat_tx: Schedule,
    state_rx: OrderCheck,
    chat_rx: OrderCheck,
}

impl Link {
    fn new(now: Instant) -> Self {
        Link {
            established: false,
            ended: None,
            state_tx: Schedule::new(STATE_PERIOD, now),
            chat_tx: Schedule::new(CHAT_PERIOD, now),
            state_rx: OrderCheck::new(false),
            chat_rx: OrderCheck::new(true),
        }
    }

    /// Starts both schedules at `first`.
    fn start(&mut self, first: Instant) {
        self.state_tx = Schedule::new(STATE_PERIOD, first);
        self.chat_tx = Schedule::new(CHAT_PERIOD, first);
    }

    fn tx(&self, kind: Kind) -> &Schedule {
        match kind {
            Kind::State => &self.state_tx,
            Kind::Chat => &self.chat_tx,
        }
    }

    fn rx(&self, kind: Kind) -> &OrderCheck {
        match kind {
            Kind::State => &self.state_rx,
            Kind::Chat => &self.chat_rx,
        }
    }

    fn rx_mut(&mut self, kind: Kind) -> &mut OrderCheck {
        match kind {
            Kind::State => &mut self.state_rx,
            Kind::Chat => &mut self.chat_rx,
        }
    }
}

/// One carrier of the demo (the server or a client) and its connections.
struct Node {
    name: String,
    carrier: Carrier,
    links: BTreeMap<ConnectionId, Link>,
    /// Security and driver events (counted, logged).
    warnings: u64,
}

impl Node {
    fn new(name: String, carrier: Carrier) -> Self {
        Node {
            name,
            carrier,
            links: BTreeMap::new(),
            warnings: 0,
        }
    }

    /// Events, then messages; while `sending`, the messages that are due.
    fn pump(&mut self, now: Instant, sending: bool, stagger: Duration, problems: &mut Vec<String>) {
        let carrier = &self.carrier;
        carrier.update();
        while let Some(event) = carrier.poll_event() {
            match event {
                CarrierEvent::ConnectionEstablished { id } => {
                    let link = self.links.entry(id).or_insert_with(|| Link::new(now));
                    link.established = true;
                    link.start(now + stagger);
                }
                CarrierEvent::FailedToConnect { id, reason } => {
                    problems.push(format!("{}: {id} failed to connect: {reason}", self.name));
                    self.links.entry(id).or_insert_with(|| Link::new(now)).ended = Some(reason);
                }
                CarrierEvent::Disconnect { id, reason } => {
                    problems.push(format!("{}: {id} disconnected: {reason}", self.name));
                    self.links.entry(id).or_insert_with(|| Link::new(now)).ended = Some(reason);
                }
                CarrierEvent::DriverError { .. } | CarrierEvent::SecurityError { .. } => {
                    self.warnings += 1;
                    tracing::info!(node = %self.name, ?event, "carrier warning");
                }
                _ => {}
            }
        }
        while let Some((id, message)) = carrier.poll_message() {
            let link = self.links.entry(id).or_insert_with(|| Link::new(now));
            let expected = match message.channel.get() {
                0 => Kind::State,
                _ => Kind::Chat,
            };
            let check = link.rx_mut(expected);
            match decode(&message.payload) {
                Some(d) if d.kind == expected => {
                    let (_, reliability, priority) = route(expected);
                    let right_route =
                        message.reliability == reliability && message.priority == priority;
                    check.on_message(d.seq, d.intact && right_route);
                }
                _ => check.on_garbage(),
            }
        }
        if !sending {
            return;
        }
        for (id, link) in &mut self.links {
            if !link.established || link.ended.is_some() {
                continue;
            }
            for kind in [Kind::State, Kind::Chat] {
                let schedule = match kind {
                    Kind::State => &mut link.state_tx,
                    Kind::Chat => &mut link.chat_tx,
                };
                let Some(seq) = schedule.due(now) else {
                    continue;
                };
                let (channel, reliability, priority) = route(kind);
                match carrier.send(*id, &encode(kind, seq), reliability, priority, channel) {
                    Ok(()) => schedule.sent(now),
                    Err(e) => {
                        tracing::warn!(node = %self.name, %id, error = %e, "send refused");
                        schedule.failed(now);
                    }
                }
            }
        }
    }
}

/// Which way a stream goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Clients to server.
    Up,
    /// Server to clients.
    Down,
}

impl Way {
    /// "client→server" or "server→client".
    pub fn label(self) -> &'static str {
        match self {
            Way::Up => "client→server",
            Way::Down => "server→client",
        }
    }
}

/// Totals of one stream (direction × kind) over every connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Messages queued by the senders.
    pub sent: u64,
    /// Sends the carrier refused.
    pub refused: u64,
    /// Messages received.
    pub delivered: u64,
    /// Messages out of order.
    pub violations: u64,
    /// Messages damaged (or with the wrong channel, reliability or priority).
    pub damaged: u64,
}

/// The whole demo.
struct Demo {
    server: Node,
    clients: Vec<Node>,
    problems: Vec<String>,
}

impl Demo {
    fn pump(&mut self, now: Instant, sending: bool) {
        self.server
            .pump(now, sending, Duration::ZERO, &mut self.problems);
        for (i, c) in self.clients.iter_mut().enumerate() {
            // Spread the clients' sends over the state period.
            let stagger = STATE_PERIOD * (i as u32 % 8) / 8;
            c.pump(now, sending, stagger, &mut self.problems);
        }
    }

    fn totals(&self, way: Way, kind: Kind) -> Totals {
        let clients = self.clients.iter().flat_map(|c| c.links.values());
        let server = self.server.links.values();
        let (senders, receivers): (Vec<&Link>, Vec<&Link>) = match way {
            Way::Up => (clients.collect(), server.collect()),
            Way::Down => (server.collect(), clients.collect()),
        };
        let mut t = Totals::default();
        for l in senders {
            t.sent += l.tx(kind).next_seq;
            t.refused += l.tx(kind).errors;
        }
        for l in receivers {
            let r = l.rx(kind);
            t.delivered += r.delivered;
            t.violations += r.violations;
            t.damaged += r.damaged;
        }
        t
    }

    fn connected(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| c.links.values().any(|l| l.established && l.ended.is_none()))
            .count()
    }

    fn all_connected(&self) -> bool {
        let server_side = self
            .server
            .links
            .values()
            .filter(|l| l.established && l.ended.is_none())
            .count();
        self.connected() == self.clients.len() && server_side == self.clients.len()
    }

    fn reliable_complete(&self) -> bool {
        [Way::Up, Way::Down].into_iter().all(|w| {
            let t = self.totals(w, Kind::Chat);
            t.delivered >= t.sent
        })
    }
}

/// The live progress line: rewritten in place on a terminal, a line per second otherwise.
struct Progress {
    tty: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, now: Instant, line: impl FnOnce() -> String) {
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < every)
        {
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed standard error must not stop the demo.
        let _ = if self.tty {
            write!(err, "\r{}\x1b[K", line())
        } else {
            writeln!(err, "{}", line())
        };
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.tty && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

fn progress_line(demo: &Demo, phase: &str, elapsed: Duration) -> String {
    let t = |w, k| demo.totals(w, k);
    let (us, uc, ds, dc) = (
        t(Way::Up, Kind::State),
        t(Way::Up, Kind::Chat),
        t(Way::Down, Kind::State),
        t(Way::Down, Kind::Chat),
    );
    let rtt = demo
        .clients
        .iter()
        .filter_map(|c| {
            let id = *c.links.keys().next()?;
            c.carrier.statistics(id)
        })
        .filter(|s| s.rtt.has_samples)
        .map(|s| s.rtt.smoothed)
        .max();
    format!(
        "{phase:>10} {:5.1} s  clients {}/{}  up: state {}/{} chat {}/{}  down: state {}/{} chat {}/{}  max rtt {}",
        elapsed.as_secs_f64(),
        demo.connected(),
        demo.clients.len(),
        us.delivered,
        us.sent,
        uc.delivered,
        uc.sent,
        ds.delivered,
        ds.sent,
        dc.delivered,
        dc.sent,
        rtt.map_or_else(|| "–".to_string(), crate::format::millis),
    )
}

fn make_carrier(plan: Option<&SimPlan>, index: u64) -> Result<Carrier, CliError> {
    let simulator = plan.map(|p| p.outbound_only(index)).transpose()?;
    Ok(Carrier::new(CarrierDesc {
        address: Some("127.0.0.1".into()),
        simulator,
        ..CarrierDesc::default()
    })?)
}

/// Runs `carrier demo`.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let plan = args.sim.plan(SimPreset::Preset(carrier::Preset::Wifi));
    let server = make_carrier(plan.as_ref(), 0)?;
    let server_addr = server.local_addr().to_string();
    let mut demo = Demo {
        server: Node::new("server".into(), server),
        clients: Vec::new(),
        problems: Vec::new(),
    };
    let start = crate::now();
    for i in 1..=u64::from(args.clients) {
        let carrier = make_carrier(plan.as_ref(), i)?;
        let id = carrier.connect(&server_addr)?;
        let mut node = Node::new(format!("client {i}"), carrier);
        node.links.insert(id, Link::new(start));
        demo.clients.push(node);
    }
    report::header(out, args, plan.as_ref(), &demo.server.carrier)?;

    let mut progress = Progress::new();
    // 1. Connect every client.
    while !demo.all_connected() && crate::now() < start + CONNECT_LIMIT {
        let now = crate::now();
        demo.pump(now, false);
        progress.show(now, || progress_line(&demo, "connecting", now - start));
        std::thread::sleep(LOOP_SLEEP);
    }
    if !demo.all_connected() {
        demo.problems.push(format!(
            "only {} of {} clients connected within {} s",
            demo.connected(),
            demo.clients.len(),
            CONNECT_LIMIT.as_secs()
        ));
    }
    let connect_time = crate::now() - start;
    // 2. Send for the duration.
    let run_start = crate::now();
    let run_end = run_start + args.duration;
    loop {
        let now = crate::now();
        if now >= run_end {
            break;
        }
        demo.pump(now, true);
        progress.show(now, || progress_line(&demo, "running", now - run_start));
        std::thread::sleep(LOOP_SLEEP);
    }
    // 3. Wait for every reliable message.
    let drain_start = crate::now();
    loop {
        let now = crate::now();
        demo.pump(now, false);
        let waited = now - drain_start;
        if (waited >= DRAIN_MIN && demo.reliable_complete()) || waited >= DELIVERY_LIMIT {
            break;
        }
        progress.show(now, || progress_line(&demo, "draining", now - run_start));
        std::thread::sleep(LOOP_SLEEP);
    }
    let drain_time = crate::now() - drain_start;
    progress.finish();

    let snapshot = report::Snapshot::take(&demo, connect_time, args.duration, drain_time);
    // Close every connection: the clients at once, then the server.
    std::thread::scope(|s| {
        for c in &demo.clients {
            s.spawn(|| c.carrier.shutdown());
        }
    });
    demo.server.carrier.shutdown();
    let failures = snapshot.write(out)?;
    out.flush()?;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::DemoFailed(failures.join("; ")))
    }
}
