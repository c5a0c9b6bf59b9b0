//! `lossy`: 20,000 reliable 64 B messages one way at 40 ms RTT, with and without loss:
//! completion time (first send to last receive) and goodput, order verified.
//!
//! - **simulator**: the sender's carrier gets a [`NetworkSimulator`] with 20 ms one-way latency
//!   in both directions and 0 % or 5 % random loss in each.
//! - **network namespaces** (root, `ip` and `nft` only; skipped with a reason otherwise): sender
//!   and receiver threads enter two namespaces joined by a veth pair; the 40 ms RTT still comes
//!   from the simulator (`tc netem` is not available on these machines), the 5 % loss each way
//!   from an nftables `numgen random` rule in each namespace's input hook.
//!
//! The raw-UDP baseline is a floor: the same 20,000 datagrams, raw, through the same 20 ms
//! one-way delay without loss.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use carrier::sim::{Datagram, Link, LinkConfig};
use carrier::{
    Carrier, CarrierDesc, CarrierEvent, NetworkSimulator, Priority, Reliability, SendError,
    SimConfig, ThreadMode,
};

use super::netns::{ADDR_A, ADDR_B, NetnsPair};
use super::raw::{self, Method, OneWay};
use super::report::{Better, Measurement};
use super::sys;
use super::{Ctx, InOrder, Plan, stamp};

/// One-way latency of the simulated path.
const ONE_WAY_MS: f64 = 20.0;
/// Message size.
const SIZE: usize = 64;
/// Longest a run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Loss of the lossy runs, percent each way.
const LOSS_PCT: u32 = 5;

/// Where the two threads run.
#[derive(Clone, Copy, Debug)]
enum Env<'a> {
    Loopback,
    Netns(&'a NetnsPair),
}

impl Env<'_> {
    /// Moves the calling thread to side 0 (sender) or 1 (receiver).
    fn enter(&self, side: usize) -> Result<(), String> {
        match self {
            Env::Loopback => Ok(()),
            Env::Netns(pair) => {
                let f = pair.open(side)?;
                sys::enter_netns(&f).map_err(|e| format!("setns: {e}"))
            }
        }
    }

    fn addr(&self, side: usize) -> Ipv4Addr {
        match self {
            Env::Loopback => Ipv4Addr::LOCALHOST,
            Env::Netns(_) if side == 0 => ADDR_A,
            Env::Netns(_) => ADDR_B,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    RawFloor,
    Carrier { loss_pct: u32 },
}

impl Variant {
    fn name(self, netns: bool) -> String {
        match self {
            Variant::RawFloor => "raw floor (std, no loss)".into(),
            Variant::Carrier { loss_pct } if netns => format!("carrier {loss_pct} % loss (nft)"),
            Variant::Carrier { loss_pct } => format!("carrier {loss_pct} % loss"),
        }
    }
}

const VARIANTS: [Variant; 3] = [
    Variant::RawFloor,
    Variant::Carrier { loss_pct: 0 },
    Variant::Carrier { loss_pct: LOSS_PCT },
];

pub(super) fn steps(plan: &Plan) -> usize {
    let envs = if plan.netns { 2 } else { 1 };
    envs * VARIANTS.len() * plan.reps
}

pub(super) fn run(ctx: &mut Ctx) {
    let count = ctx.plan.lossy_count;
    run_env(ctx, Env::Loopback, format!("sim 40 ms RTT, 64 B × {count}"));
    if !ctx.plan.netns {
        ctx.notes
            .push("lossy: the network-namespace part was skipped (--no-netns)".into());
        return;
    }
    if let Some(why) = NetnsPair::unavailable() {
        let steps = VARIANTS.len() * ctx.plan.reps;
        for _ in 0..steps {
            ctx.step("lossy netns: skipped");
        }
        ctx.notes.push(format!(
            "lossy: the network-namespace part was skipped: {why}"
        ));
        return;
    }
    match NetnsPair::create() {
        Ok(pair) => {
            run_env(
                ctx,
                Env::Netns(&pair),
                format!("netns + nft, 40 ms RTT, 64 B × {count}"),
            );
            // `pair` is dropped here: the namespaces are removed.
        }
        Err(e) => {
            for _ in 0..VARIANTS.len() * ctx.plan.reps {
                ctx.step("lossy netns: skipped");
            }
            ctx.notes.push(format!(
                "lossy: the network-namespace part could not be set up: {e}"
            ));
        }
    }
}

fn run_env(ctx: &mut Ctx, env: Env<'_>, case: String) {
    let netns = matches!(env, Env::Netns(_));
    let count = ctx.plan.lossy_count;
    let mut ms: Vec<Measurement> = VARIANTS
        .iter()
        .map(|v| {
            let m = Measurement::new("lossy", case.clone(), v.name(netns));
            if *v == Variant::RawFloor {
                m.as_baseline()
            } else {
                m
            }
        })
        .collect();
    for rep in 0..ctx.plan.reps {
        let seed = 6_000 + rep as u64;
        for (variant, m) in VARIANTS.iter().zip(ms.iter_mut()) {
            if !ctx.plan.wants(&variant.name(netns)) {
                continue;
            }
            ctx.step(format!(
                "lossy {case}: {} (run {}/{})",
                variant.name(netns),
                rep + 1,
                ctx.plan.reps
            ));
            let result = match (variant, env) {
                (Variant::RawFloor, Env::Loopback) => raw_floor(env, count, seed),
                (Variant::RawFloor, Env::Netns(pair)) => {
                    pair.set_loss(0).and_then(|()| raw_floor(env, count, seed))
                }
                (Variant::Carrier { loss_pct }, Env::Loopback) => {
                    carrier_run(env, f64::from(*loss_pct) / 100.0, count, seed)
                }
                (Variant::Carrier { loss_pct }, Env::Netns(pair)) => pair
                    .set_loss(*loss_pct)
                    .and_then(|()| carrier_run(env, 0.0, count, seed)),
            };
            match result {
                Ok(r) => {
                    let secs = r.elapsed.as_secs_f64().max(1e-9);
                    m.record("completion_ms", "ms", Better::Lower, secs * 1e3);
                    m.record(
                        "goodput_kb_s",
                        "KB/s",
                        Better::Higher,
                        (r.delivered * SIZE) as f64 / secs / 1e3,
                    );
                    m.record(
                        "delivered_pct",
                        "%",
                        Better::Higher,
                        100.0 * r.delivered as f64 / count as f64,
                    );
                    m.record(
                        "order_violations",
                        "msgs",
                        Better::Lower,
                        r.violations as f64,
                    );
                    if *variant != Variant::RawFloor {
                        if r.violations > 0 {
                            m.fail(format!("{} messages out of order or damaged", r.violations));
                        }
                        if r.delivered < count {
                            m.fail(format!("only {} of {count} messages arrived", r.delivered));
                        }
                    }
                }
                Err(e) => m.fail(e),
            }
        }
    }
    if let Env::Netns(pair) = env
        && let Err(e) = pair.set_loss(0)
    {
        ctx.notes
            .push(format!("lossy: could not clear the nft rule: {e}"));
    }
    for m in &mut ms {
        if m.variant.starts_with("carrier") {
            m.note(if netns {
                "dedicated threads; 20 ms each way from the sender's simulator, loss from nft \
                 in both namespaces"
            } else {
                "dedicated threads; the sender's simulator: 20 ms and the loss in each direction"
            });
        }
    }
    ctx.results.extend(ms);
}

/// Sends `count` reliable messages from a carrier on side 0 to one on side 1.
fn carrier_run(env: Env<'_>, loss: f64, count: usize, seed: u64) -> Result<OneWay, String> {
    let link = LinkConfig::new()
        .with_fixed_latency_ms(ONE_WAY_MS)
        .with_loss(loss);
    let deadline = crate::now() + RUN_LIMIT;
    let done = AtomicBool::new(false);
    let abort = AtomicBool::new(false);
    let (port_tx, port_rx) = mpsc::channel::<u16>();
    let (done, abort) = (&done, &abort);
    std::thread::scope(|s| {
        let receiver = s.spawn(move || {
            let r = (|| -> Result<(usize, usize, Option<Instant>), String> {
                env.enter(1)?;
                let c = Carrier::new(desc(env.addr(1), None)).map_err(|e| e.to_string())?;
                port_tx
                    .send(c.port())
                    .map_err(|_| "the sender is gone".to_string())?;
                let r = receive(&c, count, deadline, abort);
                // Before `c` is dropped (and says goodbye to the sender).
                done.store(true, Ordering::SeqCst);
                r
            })();
            done.store(true, Ordering::SeqCst);
            r
        });
        let sender = s.spawn(move || {
            let r = (|| -> Result<(usize, Instant), String> {
                env.enter(0)?;
                let sim = NetworkSimulator::with_exact_seed(SimConfig::symmetric(link, seed))
                    .map_err(|e| e.to_string())?;
                let c = Carrier::new(desc(env.addr(0), Some(Box::new(sim))))
                    .map_err(|e| e.to_string())?;
                let port = port_rx
                    .recv_timeout(Duration::from_secs(10))
                    .map_err(|_| "the receiver did not start".to_string())?;
                send(
                    &c,
                    SocketAddr::new(IpAddr::V4(env.addr(1)), port),
                    count,
                    deadline,
                    done,
                )
            })();
            if r.is_err() {
                abort.store(true, Ordering::SeqCst);
            }
            r
        });
        let sent = sender
            .join()
            .map_err(|_| "the sender thread panicked".to_string())?;
        let received = receiver
            .join()
            .map_err(|_| "the receiver thread panicked".to_string())?;
        let (sent, first) = sent?;
        let (delivered, violations, last) = received?;
        if sent < count || (delivered < count && violations == 0) {
            return Err(format!(
                "stalled: {sent} of {count} queued, {delivered} delivered within {} s",
                RUN_LIMIT.as_secs()
            ));
        }
        Ok(OneWay {
            delivered,
            violations,
            elapsed: last.map_or(Duration::ZERO, |l| l.saturating_duration_since(first)),
        })
    })
}

fn desc(ip: Ipv4Addr, simulator: Option<Box<dyn carrier::Simulator>>) -> CarrierDesc {
    CarrierDesc {
        address: Some(ip.to_string()),
        thread_mode: ThreadMode::Dedicated,
        simulator,
        ..CarrierDesc::default()
    }
}

fn send(
    c: &Carrier,
    to: SocketAddr,
    count: usize,
    deadline: Instant,
    done: &AtomicBool,
) -> Result<(usize, Instant), String> {
    let id = c.connect_addr(to).map_err(|e| e.to_string())?;
    let connect_deadline = crate::now() + Duration::from_secs(10);
    loop {
        let left = connect_deadline.saturating_duration_since(crate::now());
        if left.is_zero() {
            return Err("not connected within 10 s".into());
        }
        match c.wait_event(left) {
            Some(CarrierEvent::ConnectionEstablished { .. }) => break,
            Some(CarrierEvent::FailedToConnect { reason, .. }) => {
                return Err(format!("could not connect: {reason}"));
            }
            _ => {}
        }
    }
    let first = crate::now();
    let mut buf = [0u8; SIZE];
    let mut next = 0;
    while next < count && crate::now() < deadline {
        stamp(&mut buf, next as u64);
        match c.send(id, &buf, Reliability::Reliable, Priority::Normal, 0) {
            Ok(()) => next += 1,
            Err(SendError::QueueFull { .. }) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(format!("send failed after {next} messages: {e}")),
        }
    }
    while !done.load(Ordering::SeqCst) && crate::now() < deadline {
        c.update();
        while let Some(e) = c.poll_event() {
            if let CarrierEvent::Disconnect { reason, .. } = e
                && !done.load(Ordering::SeqCst)
            {
                return Err(format!("disconnected: {reason}"));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok((next, first))
}

fn receive(
    c: &Carrier,
    count: usize,
    deadline: Instant,
    abort: &AtomicBool,
) -> Result<(usize, usize, Option<Instant>), String> {
    let mut order = InOrder::default();
    let mut last = None;
    while (order.next as usize) < count {
        if crate::now() >= deadline || abort.load(Ordering::SeqCst) {
            break;
        }
        c.update();
        while let Some(e) = c.poll_event() {
            if let CarrierEvent::Disconnect { reason, .. } = e {
                return Err(format!("the receiver was disconnected: {reason}"));
            }
        }
        let mut got = false;
        while let Some((_, m)) = c.poll_message() {
            got = true;
            order.record(&m.payload, SIZE);
        }
        if got {
            last = Some(crate::now());
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    Ok((order.delivered, order.violations, last))
}

/// The raw floor: `count` stamped datagrams from side 0 to side 1 through a 20 ms delay line.
fn raw_floor(env: Env<'_>, count: usize, seed: u64) -> Result<OneWay, String> {
    let deadline = crate::now() + RUN_LIMIT;
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    std::thread::scope(|s| {
        let receiver = s.spawn(move || -> Result<(usize, usize, Option<Instant>), String> {
            env.enter(1)?;
            let socket = bind(env.addr(1))?;
            let addr = socket.local_addr().map_err(|e| e.to_string())?;
            addr_tx
                .send(addr)
                .map_err(|_| "the sender is gone".to_string())?;
            raw::receive_stamped(&socket, Method::Std, SIZE, count, deadline)
                .map_err(|e| format!("receive: {e}"))
        });
        let sender = s.spawn(move || -> Result<Instant, String> {
            env.enter(0)?;
            let socket = bind(env.addr(0))?;
            let to = addr_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| "the receiver did not start".to_string())?;
            socket.connect(to).map_err(|e| e.to_string())?;
            let from = socket.local_addr().map_err(|e| e.to_string())?;
            let mut line = Link::new(LinkConfig::new().with_fixed_latency_ms(ONE_WAY_MS), seed)
                .map_err(|e| e.to_string())?;
            let first = crate::now();
            let mut buf = [0u8; SIZE];
            for seq in 0..count {
                stamp(&mut buf, seq as u64);
                line.push(first, Datagram::new(from, to, buf.to_vec()));
            }
            while let Some(due) = line.poll_timeout() {
                let now = crate::now();
                if now >= deadline {
                    return Err("the delay line did not drain".into());
                }
                if due > now {
                    std::thread::sleep(due - now);
                    continue;
                }
                while let Some(d) = line.poll(now) {
                    socket.send(&d.payload).map_err(|e| format!("send: {e}"))?;
                }
            }
            Ok(first)
        });
        let first = sender
            .join()
            .map_err(|_| "the sender thread panicked".to_string())??;
        let (delivered, violations, last) = receiver
            .join()
            .map_err(|_| "the receiver thread panicked".to_string())??;
        Ok(OneWay {
            delivered,
            violations,
            elapsed: last.map_or(Duration::ZERO, |l| l.saturating_duration_since(first)),
        })
    })
}

fn bind(ip: Ipv4Addr) -> Result<UdpSocket, String> {
    let s =
        UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0)).map_err(|e| format!("bind: {e}"))?;
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(4 << 20)
        .map_err(|e| format!("socket option: {e}"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_runs_complete_in_order_on_loopback() {
        let r = carrier_run(Env::Loopback, 0.05, 500, 1).unwrap();
        assert_eq!((r.delivered, r.violations), (500, 0));
        // At least one simulated round trip.
        assert!(r.elapsed >= Duration::from_millis(20), "{:?}", r.elapsed);
        let f = raw_floor(Env::Loopback, 500, 1).unwrap();
        assert_eq!(f.delivered, 500);
        assert!(f.elapsed >= Duration::from_millis(20));
    }
}
