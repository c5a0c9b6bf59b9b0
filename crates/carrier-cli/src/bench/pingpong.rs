//! `pingpong`: a 64 B reliable message echoed `round_trips` times after a warm-up, between two
//! threads, each with its own carrier: RTT p50, p99 and max.
//!
//! - **manual mode**: each thread drives its carrier with `update()` + `poll_message()` in a
//!   loop (spinning); the spinning raw baseline is measured next to it for a like-for-like
//!   comparison.
//! - **threaded mode** (`ThreadMode::Dedicated`, `thread_instant_response`): carrier threads do
//!   the I/O and the game threads block in `wait_message` (like the raw baseline's blocking
//!   `recv`): two thread hand-offs per side.
//!
//! Two cases, each with its like-for-like baseline: **spinning** (Carrier manual mode against a
//! raw non-blocking `recv` spin) and **blocking** (Carrier threaded mode, whose carrier threads
//! sleep in `epoll_wait`, against a raw blocking `recv`). On a VM the cost of waking a sleeping
//! thread depends on whether the other vCPU is idle, so the blocking figures vary from run to
//! run far more than the spinning ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use carrier::{Carrier, ConnectionId, Priority, Reliability, ThreadMode};

use super::raw::{self, Wait};
use super::report::{Better, Measurement};
use super::stats::{Latency, micros};
use super::{Ctx, Plan, connect_pair, loopback_desc, stamp, unstamp};

/// Longest a run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Longest one round trip may take before the run fails.
const RT_LIMIT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    RawBlocking,
    RawSpin,
    /// Spinning, with unconnected sockets (`send_to`), as Carrier's.
    RawSpinSendTo,
    /// Spinning, unconnected, receiving with `recvmmsg` (batches of 32): Carrier's I/O calls.
    RawSpinMmsgSendTo,
    CarrierManual,
    CarrierThreaded,
}

const VARIANTS: [Variant; 6] = [
    Variant::RawSpin,
    Variant::RawSpinSendTo,
    Variant::RawSpinMmsgSendTo,
    Variant::CarrierManual,
    Variant::RawBlocking,
    Variant::CarrierThreaded,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::RawBlocking => "raw std blocking",
            Variant::RawSpin => "raw std spin",
            Variant::RawSpinSendTo => "raw std spin send_to",
            Variant::RawSpinMmsgSendTo => "raw mmsg spin send_to",
            Variant::CarrierManual => "carrier manual (spin)",
            Variant::CarrierThreaded => "carrier threaded",
        }
    }
}

pub(super) fn steps(plan: &Plan) -> usize {
    VARIANTS.len() * plan.reps
}

impl Variant {
    fn case(self, round_trips: usize) -> String {
        match self {
            Variant::RawSpin
            | Variant::RawSpinSendTo
            | Variant::RawSpinMmsgSendTo
            | Variant::CarrierManual => {
                format!("64 B × {round_trips}, spinning")
            }
            Variant::RawBlocking | Variant::CarrierThreaded => {
                format!("64 B × {round_trips}, blocking")
            }
        }
    }
}

pub(super) fn run(ctx: &mut Ctx) {
    let round_trips = ctx.plan.round_trips;
    let mut ms: Vec<Measurement> = VARIANTS
        .iter()
        .map(|v| {
            let m = Measurement::new("pingpong", v.case(round_trips), v.name());
            if matches!(v, Variant::RawBlocking | Variant::RawSpin) {
                m.as_baseline()
            } else {
                m
            }
        })
        .collect();
    let (warmup, count) = (ctx.plan.warmup, ctx.plan.round_trips);
    for rep in 0..ctx.plan.reps {
        for (variant, m) in VARIANTS.iter().zip(ms.iter_mut()) {
            if !ctx.plan.wants(variant.name()) {
                continue;
            }
            ctx.step(format!(
                "pingpong {}: {} (run {}/{})",
                variant.case(round_trips),
                variant.name(),
                rep + 1,
                ctx.plan.reps
            ));
            let result = match variant {
                Variant::RawBlocking => {
                    raw::ping_pong(Wait::Blocking, true, warmup, count, RUN_LIMIT)
                }
                Variant::RawSpin => raw::ping_pong(Wait::Spin, true, warmup, count, RUN_LIMIT),
                Variant::RawSpinSendTo => {
                    raw::ping_pong(Wait::Spin, false, warmup, count, RUN_LIMIT)
                }
                Variant::RawSpinMmsgSendTo => {
                    raw::ping_pong(Wait::SpinMmsg, false, warmup, count, RUN_LIMIT)
                }
                Variant::CarrierManual => carrier_ping_pong(ThreadMode::Manual, warmup, count),
                Variant::CarrierThreaded => carrier_ping_pong(ThreadMode::Dedicated, warmup, count),
            };
            match result {
                Ok(l) => {
                    m.record("p50_us", "µs", Better::Lower, micros(l.p50));
                    m.record("p99_us", "µs", Better::Lower, micros(l.p99));
                    m.record("max_us", "µs", Better::Lower, micros(l.max));
                }
                Err(e) => m.fail(e),
            }
        }
    }
    for m in &mut ms {
        match m.variant.as_str() {
            "carrier manual (spin)" => m.note(
                "both threads spin on update()/poll_message, like the raw baseline's \
                 non-blocking recv loop",
            ),
            "raw std spin send_to" => m.note(
                "unconnected sockets: send_to and recv_from, the kernel routes every datagram, \
                 as for Carrier's socket (one for every peer); raw std spin's are connected",
            ),
            "raw mmsg spin send_to" => m.note(
                "Carrier's system calls without Carrier: unconnected send_to, and recvmmsg \
                 asking for up to 32 datagrams (it looks for a second one after the first)",
            ),
            "carrier threaded" => m.note(
                "dedicated carrier threads with thread_instant_response; the game threads block \
                 in wait_message",
            ),
            _ => {}
        }
    }
    ctx.results.extend(ms);
}

/// How long a threaded-mode game thread blocks in `wait_message` before it looks at the clock
/// (and, for the echo thread, at the stop flag).
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// The next message: manual mode drives the I/O once and polls (the caller spins); threaded
/// mode blocks in `wait_message` for up to [`WAIT_SLICE`].
fn next_message(carrier: &Carrier, mode: ThreadMode) -> Option<(ConnectionId, carrier::Message)> {
    if mode == ThreadMode::Manual {
        carrier.update();
        carrier.poll_message()
    } else {
        carrier.wait_message(WAIT_SLICE)
    }
}

fn idle(mode: ThreadMode) {
    if mode == ThreadMode::Manual {
        std::hint::spin_loop();
    }
}

fn carrier_ping_pong(mode: ThreadMode, warmup: usize, count: usize) -> Result<Latency, String> {
    let client = Carrier::new(loopback_desc(mode)).map_err(|e| e.to_string())?;
    let server = Carrier::new(loopback_desc(mode)).map_err(|e| e.to_string())?;
    let (id, _) = connect_pair(&client, &server, &server.local_addr().to_string())?;
    let stop = AtomicBool::new(false);
    let deadline = crate::now() + RUN_LIMIT;
    let result = std::thread::scope(|s| {
        let echo = s.spawn(|| -> Result<(), String> {
            while !stop.load(Ordering::Relaxed) {
                match next_message(&server, mode) {
                    Some((from, message)) => {
                        server
                            .send(
                                from,
                                &message.payload,
                                Reliability::Reliable,
                                Priority::Normal,
                                0,
                            )
                            .map_err(|e| format!("echo failed: {e}"))?;
                        if mode == ThreadMode::Manual {
                            server.update();
                        }
                    }
                    None => idle(mode),
                }
            }
            Ok(())
        });
        let result = measure(&client, id, mode, warmup, count, deadline);
        stop.store(true, Ordering::SeqCst);
        let echoed = echo
            .join()
            .map_err(|_| "the echo thread panicked".to_string())?;
        echoed?;
        result
    });
    client.shutdown();
    server.shutdown();
    result
}

fn measure(
    client: &Carrier,
    id: ConnectionId,
    mode: ThreadMode,
    warmup: usize,
    count: usize,
    deadline: Instant,
) -> Result<Latency, String> {
    let mut samples = Vec::with_capacity(count);
    let mut buf = [0u8; 64];
    for i in 0..warmup + count {
        stamp(&mut buf, i as u64);
        let t0 = crate::now();
        if t0 >= deadline {
            return Err(format!("timed out after {i} round trips"));
        }
        client
            .send(id, &buf, Reliability::Reliable, Priority::Normal, 0)
            .map_err(|e| format!("send failed: {e}"))?;
        if mode == ThreadMode::Manual {
            client.update();
        }
        let mut spins = 0u32;
        loop {
            if let Some((_, m)) = next_message(client, mode) {
                if unstamp(&m.payload, 64) == Some(i as u64) {
                    break;
                }
                return Err(format!("round trip {i}: wrong echo"));
            }
            spins += 1;
            if (mode != ThreadMode::Manual || spins.is_multiple_of(256))
                && crate::now().saturating_duration_since(t0) > RT_LIMIT
            {
                return Err(format!(
                    "stalled: round trip {i} not answered within {} s",
                    RT_LIMIT.as_secs()
                ));
            }
            idle(mode);
        }
        if i >= warmup {
            samples.push(crate::now().saturating_duration_since(t0));
        }
    }
    Ok(Latency::of(&mut samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_echoes_in_both_modes() {
        for mode in [ThreadMode::Manual, ThreadMode::Dedicated] {
            let l = carrier_ping_pong(mode, 10, 100).unwrap();
            assert_eq!(l.count, 100, "{mode:?}");
            assert!(l.p50 > Duration::ZERO);
        }
    }
}
