//! `connections`: a server process and this process, whose one thread drives N client endpoints
//! (carrier-proto, one UDP socket each); every client sends a 32 B unreliable message 20 times a
//! second for the load duration. Measured in the server process: its CPU time during the load
//! (`getrusage`), its peak RSS (`VmHWM`), the share of messages delivered, and the heap (counting
//! allocator) and RSS that N idle connections add.
//!
//! The server is this binary re-executed as `carrier bench-server`, talking over its standard
//! input and output, one line each way per phase:
//!
//! ```text
//! server: port P            (bound, ready)
//! client: idle              (every client connected; the server samples its heap each tick)
//! client: measure           (every client connected and idle for a second)
//! server: measured          (memory taken: the median heap sample, RSS; CPU clock started)
//! client: stop              (load sent, and a drain pause)
//! server: report k=v ...    (then exits)
//! ```
//!
//! Server variants: `carrier-dedicated` (the default carrier thread; the game thread drains the
//! mailbox every 10 ms), `carrier-manual` (the game thread calls `update` every 10 ms), and the
//! raw baselines `raw-std` (blocking `recv`, one datagram per syscall) and `raw-mmsg`
//! (`recvmmsg` batches) which receive the same number of datagrams from the same number of
//! sockets and do nothing else.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use carrier::{Carrier, CarrierDesc, CarrierEvent, ThreadMode};
use carrier_proto::{
    ChannelId, ConnectionId, Endpoint, EndpointConfig, Event, Priority, Reliability,
};
use clap::Args;
use mio::{Events, Interest, Poll, Token};

use super::report::{Better, Measurement};
use super::sys::{self, AllocCounters};
use super::{Ctx, Plan};
use crate::CliError;

/// Message size.
const MESSAGE_SIZE: usize = 32;
/// Send period of every client (20 Hz).
const PERIOD: Duration = Duration::from_millis(50);
/// Idle time between "all connected" and the memory snapshot.
const IDLE: Duration = Duration::from_secs(1);
/// Pause after the load before the server stops counting.
const DRAIN: Duration = Duration::from_millis(500);
/// Longest wait for every client to connect.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for any line from the server.
const REPLY_LIMIT: Duration = Duration::from_secs(20);
/// The server's game-loop period.
const SERVER_TICK: Duration = Duration::from_millis(10);
/// Capacity of the idle heap samples: more than the ticks of the idle second.
const HEAP_SAMPLES: usize = 512;

/// A server of the `connections` scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMode {
    /// A `Carrier` with its carrier thread (the default).
    CarrierDedicated,
    /// A `Carrier` in manual mode.
    CarrierManual,
    /// Raw UDP, one `recv` per datagram.
    RawStd,
    /// Raw UDP, `recvmmsg` batches.
    RawMmsg,
}

impl ServerMode {
    const ALL: [ServerMode; 4] = [
        ServerMode::RawStd,
        ServerMode::RawMmsg,
        ServerMode::CarrierDedicated,
        ServerMode::CarrierManual,
    ];

    fn arg(self) -> &'static str {
        match self {
            ServerMode::CarrierDedicated => "carrier-dedicated",
            ServerMode::CarrierManual => "carrier-manual",
            ServerMode::RawStd => "raw-std",
            ServerMode::RawMmsg => "raw-mmsg",
        }
    }

    fn variant(self) -> &'static str {
        match self {
            ServerMode::CarrierDedicated => "carrier dedicated",
            ServerMode::CarrierManual => "carrier manual",
            ServerMode::RawStd => "raw std",
            ServerMode::RawMmsg => "raw mmsg",
        }
    }

    fn is_carrier(self) -> bool {
        matches!(
            self,
            ServerMode::CarrierDedicated | ServerMode::CarrierManual
        )
    }
}

impl FromStr for ServerMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServerMode::ALL
            .into_iter()
            .find(|m| m.arg() == s)
            .ok_or_else(|| format!("unknown server mode `{s}`"))
    }
}

/// Options of the hidden `carrier bench-server` command.
#[derive(Clone, Debug, Args)]
pub struct ServerArgs {
    /// carrier-dedicated, carrier-manual, raw-std or raw-mmsg.
    #[arg(long)]
    pub mode: ServerMode,
    /// Clients that will connect.
    #[arg(long)]
    pub clients: usize,
}

pub(super) fn steps(plan: &Plan) -> usize {
    plan.clients.len() * ServerMode::ALL.len() * plan.reps
}

pub(super) fn run(ctx: &mut Ctx) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            ctx.notes.push(format!(
                "connections skipped: cannot find the carrier binary: {e}"
            ));
            return;
        }
    };
    for n in ctx.plan.clients.clone() {
        let case = format!("{n} clients × 20 Hz × {} s", ctx.plan.load.as_secs_f64());
        let mut ms: Vec<Measurement> = ServerMode::ALL
            .iter()
            .map(|mode| {
                let m = Measurement::new("connections", case.clone(), mode.variant());
                if *mode == ServerMode::RawStd {
                    m.as_baseline()
                } else {
                    m
                }
            })
            .collect();
        for rep in 0..ctx.plan.reps {
            for (mode, m) in ServerMode::ALL.iter().zip(ms.iter_mut()) {
                if !ctx.plan.wants(mode.variant()) {
                    continue;
                }
                ctx.step(format!(
                    "connections {n} clients: {} server (run {}/{})",
                    mode.variant(),
                    rep + 1,
                    ctx.plan.reps
                ));
                match run_once(&exe, *mode, n, ctx.plan.load) {
                    Ok(r) => record(m, *mode, n, &r),
                    Err(e) => m.fail(e),
                }
            }
        }
        for m in &mut ms {
            m.note(
                "server CPU = getrusage(RUSAGE_SELF) of the server process over the load plus \
                 the drain pause; the clients run in this process, one thread",
            );
            match m.variant.as_str() {
                "carrier dedicated" => m.note(
                    "default CarrierDesc (carrier thread, instant response); the game thread \
                     drains poll_message every 10 ms",
                ),
                "carrier manual" => m.note("manual mode: update() and poll_message every 10 ms"),
                _ => {}
            }
        }
        ctx.results.extend(ms);
    }
}

fn record(m: &mut Measurement, mode: ServerMode, n: usize, r: &Outcome) {
    let report = &r.report;
    let get = |k: &str| report.get(k).copied().unwrap_or(f64::NAN);
    let received = get("received");
    let cpu_us = get("cpu_us");
    m.record("server_cpu_ms", "ms", Better::Lower, cpu_us / 1_000.0);
    m.record(
        "cpu_us_per_msg",
        "µs",
        Better::Lower,
        cpu_us / received.max(1.0),
    );
    m.record(
        "delivered_pct",
        "%",
        Better::Higher,
        100.0 * received / (r.sent.max(1) as f64),
    );
    m.record(
        "peak_rss_mib",
        "MiB",
        Better::Lower,
        get("max_rss") / 1_048_576.0,
    );
    if mode.is_carrier() {
        m.record(
            "heap_per_conn_b",
            "B",
            Better::Lower,
            get("heap_net") / n as f64,
        );
        m.record(
            "rss_per_conn_b",
            "B",
            Better::Lower,
            (get("rss_idle") - get("rss_before")) / n as f64,
        );
        m.record(
            "connect_ms",
            "ms",
            Better::Lower,
            r.connect_time.as_secs_f64() * 1e3,
        );
    }
    let drops = get("socket_drops");
    m.record("socket_drops", "dgrams", Better::Lower, drops);
    if received < r.sent as f64 && r.sent > 0 {
        let server: Vec<String> = report
            .iter()
            .filter(|(k, _)| k.contains("drop") || *k == "gaps" || *k == "seq_span")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        m.note(format!(
            "a run delivered {} of {} messages ({} datagrams dropped at the server socket's \
             full receive buffer; server: {}; clients: {})",
            received as u64,
            r.sent,
            drops as u64,
            server.join(" "),
            r.client_diagnostics
        ));
    }
}

/// What one run produced.
struct Outcome {
    sent: u64,
    /// The clients' side of a shortfall: unreliable messages their endpoints expired before
    /// sending, datagrams they declared lost, their sockets' kernel drops.
    client_diagnostics: String,
    connect_time: Duration,
    report: HashMap<String, f64>,
}

/// The server child process; killed if still running when dropped.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl ServerProcess {
    fn spawn(exe: &std::path::Path, mode: ServerMode, n: usize) -> Result<Self, String> {
        let mut child = Command::new(exe)
            .args(["bench-server", "--mode", mode.arg(), "--clients"])
            .arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the server process: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| "the server process has no standard output".to_string())?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ServerProcess {
            child,
            stdin,
            lines,
        })
    }

    fn tell(&mut self, line: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| "the server's input is closed".to_string())?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot talk to the server: {e}"))
    }

    /// The next line starting with `prefix` (other lines are ignored).
    fn expect(&self, prefix: &str) -> Result<String, String> {
        let deadline = crate::now() + REPLY_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(crate::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => {
                    return Ok(line[prefix.len()..].trim().to_string());
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the server did not say `{prefix}` within {} s",
                        REPLY_LIMIT.as_secs()
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("the server exited before saying `{prefix}`"));
                }
            }
        }
    }

    /// Waits (bounded) for the process to exit.
    fn finish(mut self) {
        self.stdin = None;
        let deadline = crate::now() + Duration::from_secs(5);
        while crate::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run_once(
    exe: &std::path::Path,
    mode: ServerMode,
    n: usize,
    load: Duration,
) -> Result<Outcome, String> {
    let mut server = ServerProcess::spawn(exe, mode, n)?;
    let port: u16 = server
        .expect("port")?
        .parse()
        .map_err(|_| "the server sent a bad port".to_string())?;
    let server_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut clients = Clients::new(n, server_addr, mode.is_carrier())?;
    let started = crate::now();
    clients.connect_all(started + CONNECT_LIMIT)?;
    let connect_time = crate::now().saturating_duration_since(started);
    if mode.is_carrier() {
        server.tell("idle")?;
        clients.drive_until(crate::now() + IDLE, false)?;
    }
    server.tell("measure")?;
    // Keep the connections alive while the server takes its snapshot.
    let ack = loop {
        clients.drive_until(crate::now() + Duration::from_millis(5), false)?;
        match server.lines.try_recv() {
            Ok(line) if line.starts_with("measured") => break Ok(()),
            Ok(_) => {}
            Err(mpsc::TryRecvError::Empty) => {
                if crate::now().saturating_duration_since(started) > CONNECT_LIMIT + REPLY_LIMIT {
                    break Err("the server did not take its snapshot".to_string());
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                break Err("the server exited during the snapshot".to_string());
            }
        }
    };
    ack?;
    let load_start = crate::now();
    clients.schedule(load_start);
    clients.drive_until(load_start + load, true)?;
    clients.drive_until(crate::now() + DRAIN, false)?;
    server.tell("stop")?;
    let client_diagnostics = clients.diagnostics();
    let report = parse_report(&server.expect("report")?);
    server.finish();
    if let Some(e) = clients.failure.take() {
        return Err(e);
    }
    Ok(Outcome {
        sent: clients.sent,
        client_diagnostics,
        connect_time,
        report,
    })
}

fn parse_report(line: &str) -> HashMap<String, f64> {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// One client: a socket, and an endpoint for the Carrier servers.
struct Client {
    socket: mio::net::UdpSocket,
    endpoint: Option<Endpoint>,
    connection: Option<ConnectionId>,
    established: bool,
    deadline: Option<Instant>,
    next_send: Instant,
    seq: u32,
}

/// N clients driven from this thread.
struct Clients {
    clients: Vec<Client>,
    poll: Poll,
    events: Events,
    server: SocketAddr,
    buf: Vec<u8>,
    sending: bool,
    sent: u64,
    failure: Option<String>,
    touched: Vec<usize>,
}

impl Clients {
    fn new(n: usize, server: SocketAddr, carrier: bool) -> Result<Self, String> {
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let now = crate::now();
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let std_socket =
                UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("client socket {i}: {e}"))?;
            std_socket
                .set_nonblocking(true)
                .map_err(|e| format!("client socket {i}: {e}"))?;
            let mut socket = mio::net::UdpSocket::from_std(std_socket);
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)
                .map_err(|e| format!("client socket {i}: {e}"))?;
            let endpoint = if carrier {
                Some(
                    Endpoint::new(EndpointConfig::default(), now, 0xC1_0000 + i as u64)
                        .map_err(|e| format!("endpoint: {e}"))?,
                )
            } else {
                None
            };
            clients.push(Client {
                socket,
                endpoint,
                connection: None,
                established: !carrier,
                deadline: None,
                next_send: now,
                seq: 0,
            });
        }
        Ok(Clients {
            clients,
            poll,
            events: Events::with_capacity(1_024),
            server,
            buf: vec![0u8; 65_536],
            sending: false,
            sent: 0,
            failure: None,
            touched: Vec::new(),
        })
    }

    fn connect_all(&mut self, deadline: Instant) -> Result<(), String> {
        let now = crate::now();
        for i in 0..self.clients.len() {
            let server = self.server;
            let c = &mut self.clients[i];
            if let Some(ep) = c.endpoint.as_mut() {
                c.connection = Some(
                    ep.connect(now, server)
                        .map_err(|e| format!("connect: {e}"))?,
                );
                self.touched.push(i);
            }
        }
        self.flush(now);
        while self.clients.iter().any(|c| !c.established) {
            if crate::now() >= deadline {
                let up = self.clients.iter().filter(|c| c.established).count();
                return Err(format!(
                    "only {up} of {} clients connected within {} s",
                    self.clients.len(),
                    CONNECT_LIMIT.as_secs()
                ));
            }
            self.turn(deadline.min(crate::now() + Duration::from_millis(5)));
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Counters that explain a delivery shortfall on the clients' side.
    fn diagnostics(&self) -> String {
        let now = crate::now();
        let (mut expired, mut lost, mut packets) = (0, 0, 0);
        for c in &self.clients {
            if let (Some(ep), Some(id)) = (c.endpoint.as_ref(), c.connection)
                && let Some(conn) = ep.connection(id)
            {
                expired += conn.expired_unreliable();
                let s = conn.statistics(now);
                lost += s.lifetime.packets_lost;
                packets += s.lifetime.packets_sent;
            }
        }
        let table = loopback_socket_drops();
        let socket_drops: u64 = self
            .clients
            .iter()
            .filter_map(|c| table.get(&c.socket.local_addr().ok()?.port()))
            .sum();
        format!(
            "client_expired_unreliable={expired} client_packets_sent={packets} \
             client_packets_lost={lost} client_socket_drops={socket_drops}"
        )
    }

    /// Spreads the clients' first sends over one period from `start`.
    fn schedule(&mut self, start: Instant) {
        let n = self.clients.len().max(1) as u32;
        for (i, c) in self.clients.iter_mut().enumerate() {
            c.next_send = start + PERIOD * i as u32 / n;
        }
    }

    fn drive_until(&mut self, end: Instant, sending: bool) -> Result<(), String> {
        self.sending = sending;
        while crate::now() < end {
            self.turn(end);
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
        }
        self.sending = false;
        Ok(())
    }

    /// One loop turn: wait (until `until` or the next deadline), receive, fire timers, send.
    fn turn(&mut self, until: Instant) {
        let now = crate::now();
        let mut wake = until;
        for c in &self.clients {
            if let Some(d) = c.deadline {
                wake = wake.min(d);
            }
            if self.sending {
                wake = wake.min(c.next_send);
            }
        }
        let timeout = wake.saturating_duration_since(now);
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout))
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            self.failure = Some(format!("poll: {e}"));
            return;
        }
        let now = crate::now();
        // Receive.
        let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for i in ready {
            let Some(c) = self.clients.get_mut(i) else {
                continue;
            };
            loop {
                match c.socket.recv_from(&mut self.buf) {
                    Ok((len, from)) => {
                        if let Some(ep) = c.endpoint.as_mut() {
                            ep.handle(now, from, &self.buf[..len]);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
            self.touched.push(i);
        }
        // Timers and sends.
        for (i, c) in self.clients.iter_mut().enumerate() {
            let mut touched = false;
            if c.deadline.is_some_and(|d| d <= now) {
                if let Some(ep) = c.endpoint.as_mut() {
                    ep.handle_timeout(now);
                }
                touched = true;
            }
            if self.sending && c.next_send <= now {
                c.next_send += PERIOD;
                // A client that fell behind skips ahead instead of bursting.
                if c.next_send < now {
                    c.next_send = now + PERIOD;
                }
                let mut msg = [0u8; MESSAGE_SIZE];
                msg[..4].copy_from_slice(&(i as u32).to_le_bytes());
                msg[4..8].copy_from_slice(&c.seq.to_le_bytes());
                c.seq = c.seq.wrapping_add(1);
                let ok = match (c.endpoint.as_mut(), c.connection) {
                    (Some(ep), Some(id)) => ep
                        .send(
                            id,
                            ChannelId::new(0),
                            Priority::Normal,
                            Reliability::Unreliable,
                            bytes::Bytes::copy_from_slice(&msg),
                        )
                        .is_ok(),
                    _ => c.socket.send_to(&msg, self.server).is_ok(),
                };
                if ok {
                    self.sent += 1;
                }
                touched = true;
            }
            if touched {
                self.touched.push(i);
            }
        }
        self.flush(now);
    }

    /// Sends what the touched endpoints have to send and reads their events.
    fn flush(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &i in &touched {
            let c = &mut self.clients[i];
            let Some(ep) = c.endpoint.as_mut() else {
                continue;
            };
            while let Some(t) = ep.poll_transmit(now, &mut self.buf) {
                // A full socket buffer drops the datagram (as UDP would); the protocol copes.
                let _ = c.socket.send_to(&self.buf[..t.size], t.destination);
            }
            while let Some(event) = ep.poll_event() {
                match event {
                    Event::ConnectionEstablished { .. } => c.established = true,
                    Event::FailedToConnect { reason, .. } | Event::Disconnect { reason, .. } => {
                        self.failure.get_or_insert_with(|| {
                            format!("client {i} lost its connection: {reason}")
                        });
                    }
                    _ => {}
                }
            }
            while ep.poll_message().is_some() {}
            c.deadline = ep.poll_timeout();
        }
        touched.clear();
        self.touched = touched;
    }
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// Peak resident set size of this process image, bytes (`VmHWM` of /proc/self/status).
/// (`getrusage`'s `ru_maxrss` is no use here: across `execve` it keeps the high-water mark of
/// the parent that spawned the process.)
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1_024)
}

/// Resident set size now, bytes (from /proc/self/statm).
fn rss_now() -> u64 {
    let page = 4_096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// Datagrams the kernel dropped at the UDP socket bound to `port` on 127.0.0.1 (full receive
/// buffer), from the `drops` column of /proc/net/udp; `None` if not found.
fn socket_drops(port: u16) -> Option<u64> {
    loopback_socket_drops().remove(&port)
}

/// [`socket_drops`] of every UDP socket bound to 127.0.0.1, by port (one read of the table).
fn loopback_socket_drops() -> HashMap<u16, u64> {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return HashMap::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields.get(1)?.strip_prefix("0100007F:")?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some((port, fields.last()?.parse().ok()?))
        })
        .collect()
}

/// Commands from the client process, read on a thread of their own.
fn commands() -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().to_string()).is_err() {
                break;
            }
        }
    });
    rx
}

/// The server's counters, written as the `report` line.
#[derive(Debug, Default)]
struct Tally {
    received: u64,
    total: u64,
    connections: u64,
    bad: u64,
    /// Per client (by the index in the message): messages counted and the highest sequence
    /// number seen plus one, to tell gaps (lost on the way) from a missing tail (still in
    /// flight when the count stopped).
    per_client: Vec<(u64, u64)>,
    /// Protocol drops (`Carrier::drop_counters`) when the count started, and at the end.
    protocol_drops: String,
}

/// The server's state between commands.
struct Server {
    port: u16,
    drops_start: u64,
    tally: Tally,
    measuring: bool,
    heap_before: AllocCounters,
    rss_before: u64,
    /// Net heap growth sampled every tick of the idle second (allocated before counting
    /// starts; never grown past its capacity).
    heap_samples: Vec<i64>,
    sampling: bool,
    heap_idle: i64,
    rss_idle: u64,
    cpu_start: Option<sys::Usage>,
}

impl Server {
    /// Starts counting the heap (call once the server is bound, before any client connects).
    fn new(port: u16, clients: usize) -> Self {
        let heap_samples = Vec::with_capacity(HEAP_SAMPLES);
        sys::set_alloc_counting(true);
        Server {
            port,
            drops_start: 0,
            tally: Tally {
                per_client: vec![(0, 0); clients],
                ..Tally::default()
            },
            measuring: false,
            heap_before: AllocCounters::now(),
            rss_before: rss_now(),
            heap_samples,
            sampling: false,
            heap_idle: 0,
            rss_idle: 0,
            cpu_start: None,
        }
    }

    fn count(&mut self, payload: &[u8]) {
        self.tally.total += 1;
        if payload.len() == MESSAGE_SIZE {
            if self.measuring {
                self.tally.received += 1;
                let word = |r: std::ops::Range<usize>| {
                    payload
                        .get(r)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map_or(0, u32::from_le_bytes)
                };
                let (client, seq) = (word(0..4) as usize, u64::from(word(4..8)));
                if let Some(slot) = self.tally.per_client.get_mut(client) {
                    slot.0 += 1;
                    slot.1 = slot.1.max(seq + 1);
                }
            }
        } else {
            self.tally.bad += 1;
        }
    }

    /// One heap sample of the idle second (call every tick).
    fn sample_heap(&mut self) {
        if self.sampling && self.heap_samples.len() < self.heap_samples.capacity() {
            let net = AllocCounters::now().since(&self.heap_before).net_bytes();
            self.heap_samples.push(net);
        }
    }

    /// Handles the waiting commands; returns whether to stop. `diagnostics` gives extra
    /// `key=value` pairs for the report (the protocol's drop counters).
    fn commands(
        &mut self,
        cmds: &Receiver<String>,
        out: &mut dyn Write,
        diagnostics: &dyn Fn() -> String,
    ) -> Result<bool, CliError> {
        let mut stop = false;
        while let Ok(cmd) = cmds.try_recv() {
            match cmd.as_str() {
                "idle" => self.sampling = true,
                "measure" => {
                    // The median of the idle second: one sample varies by a few hundred bytes
                    // per connection with where the connections are in their keep-alive cycle.
                    self.heap_idle = AllocCounters::now().since(&self.heap_before).net_bytes();
                    self.sampling = false;
                    if !self.heap_samples.is_empty() {
                        self.heap_samples.sort_unstable();
                        self.heap_idle = self.heap_samples[self.heap_samples.len() / 2];
                    }
                    sys::set_alloc_counting(false);
                    self.rss_idle = rss_now();
                    self.cpu_start = Some(sys::usage_self()?);
                    self.tally.received = 0;
                    self.tally.protocol_drops = diagnostics();
                    self.drops_start = socket_drops(self.port).unwrap_or(0);
                    self.measuring = true;
                    writeln!(out, "measured")?;
                    out.flush()?;
                }
                "stop" => {
                    let usage = sys::usage_self()?;
                    let cpu = self
                        .cpu_start
                        .map_or(Duration::ZERO, |s| usage.cpu().saturating_sub(s.cpu()));
                    let t = &self.tally;
                    let drops =
                        socket_drops(self.port).map_or(0, |d| d.saturating_sub(self.drops_start));
                    let span: u64 = t.per_client.iter().map(|c| c.1).sum();
                    let gaps: u64 = t.per_client.iter().map(|c| c.1.saturating_sub(c.0)).sum();
                    writeln!(
                        out,
                        "report received={} total={} connections={} bad={} cpu_us={} \
                         max_rss={} heap_net={} rss_before={} rss_idle={} socket_drops={drops} \
                         seq_span={span} gaps={gaps} {} {}",
                        t.received,
                        t.total,
                        t.connections,
                        t.bad,
                        cpu.as_micros(),
                        peak_rss(),
                        self.heap_idle,
                        self.rss_before,
                        self.rss_idle,
                        t.protocol_drops.replace("drop_", "idle_drop_"),
                        diagnostics(),
                    )?;
                    out.flush()?;
                    stop = true;
                }
                _ => {}
            }
        }
        Ok(stop)
    }
}

/// Runs `carrier bench-server`.
pub(super) fn serve(args: &ServerArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let cmds = commands();
    match args.mode {
        ServerMode::CarrierDedicated | ServerMode::CarrierManual => {
            let mode = if args.mode == ServerMode::CarrierManual {
                ThreadMode::Manual
            } else {
                ThreadMode::Dedicated
            };
            let carrier = Carrier::new(CarrierDesc {
                address: Some("127.0.0.1".into()),
                thread_mode: mode,
                ..CarrierDesc::default()
            })?;
            let mut server = Server::new(carrier.port(), args.clients);
            let diagnostics = || {
                let d = carrier.drop_counters();
                carrier_proto::DropReason::ALL
                    .iter()
                    .filter(|r| d.get(**r) > 0)
                    .map(|r| format!("drop_{r:?}={}", d.get(*r)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            writeln!(out, "port {}", carrier.port())?;
            out.flush()?;
            loop {
                carrier.update();
                while let Some(e) = carrier.poll_event() {
                    if let CarrierEvent::ConnectionEstablished { .. } = e {
                        server.tally.connections += 1;
                    }
                }
                while let Some((_, m)) = carrier.poll_message() {
                    server.count(&m.payload);
                }
                server.sample_heap();
                if server.commands(&cmds, out, &diagnostics)? {
                    break;
                }
                std::thread::sleep(SERVER_TICK);
            }
            drop(carrier);
        }
        ServerMode::RawStd | ServerMode::RawMmsg => {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            // The same receive buffer as Carrier's default driver.
            socket2::SockRef::from(&socket).set_recv_buffer_size(256 * 1024)?;
            socket.set_read_timeout(Some(Duration::from_millis(20)))?;
            let port = socket.local_addr()?.port();
            let mut server = Server::new(port, args.clients);
            writeln!(out, "port {port}")?;
            out.flush()?;
            let mut bufs = vec![vec![0u8; 2_048]; sys::MMSG_MAX];
            let mut lens = [0usize; sys::MMSG_MAX];
            loop {
                let got = match args.mode {
                    ServerMode::RawStd => match socket.recv(&mut bufs[0]) {
                        Ok(n) => {
                            lens[0] = n;
                            1
                        }
                        Err(_) => 0,
                    },
                    _ => sys::recv_mmsg(&socket, &mut bufs, &mut lens).unwrap_or(0),
                };
                for (buf, len) in bufs.iter().zip(lens).take(got) {
                    server.count(buf.get(..len).unwrap_or_default());
                }
                if server.commands(&cmds, out, &String::new)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_reports_split() {
        for m in ServerMode::ALL {
            assert_eq!(m.arg().parse::<ServerMode>(), Ok(m));
        }
        assert!("x".parse::<ServerMode>().is_err());
        let r = parse_report("received=10 cpu_us=5 junk max_rss=1.5");
        assert_eq!(r.get("received"), Some(&10.0));
        assert_eq!(r.get("max_rss"), Some(&1.5));
        assert_eq!(r.len(), 3);
    }
}
