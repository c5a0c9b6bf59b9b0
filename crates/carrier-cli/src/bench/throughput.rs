//! `throughput`: reliable ordered messages one way (64 B × 200,000 and 1 KiB × 50,000), from the
//! first send to the last receive, order and count verified at the receiver; against the same
//! number of raw datagrams of the same size.
//!
//! Carrier runs as the sender and the receiver in two threads of this process, each with its own
//! carrier: in the default dedicated-thread mode (the game threads only queue and poll; the
//! carrier threads do the I/O), and in manual mode (each game thread drives its carrier's I/O
//! with `update`/`wait_event`, so the thread count equals the baseline's).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use carrier::{Carrier, CarrierDesc, ConnectionId, Priority, Reliability, SendError, ThreadMode};

use super::raw::{self, Method, OneWay};
use super::report::{Better, Measurement};
use super::{Ctx, InOrder, Plan, connect_pair, loopback_desc, stamp};

/// Longest a run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);

const VARIANTS: [Variant; 5] = [
    Variant::Raw(Method::Std),
    Variant::Raw(Method::StdSendTo),
    Variant::Raw(Method::Mmsg),
    Variant::Carrier(ThreadMode::Dedicated),
    Variant::Carrier(ThreadMode::Manual),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Raw(Method),
    Carrier(ThreadMode),
}

impl Variant {
    fn name(self) -> String {
        match self {
            Variant::Raw(Method::Std) => "raw std".into(),
            Variant::Raw(Method::StdSendTo) => "raw std send_to".into(),
            Variant::Raw(Method::Mmsg) => format!("raw mmsg ×{}", raw::MMSG_BATCH),
            Variant::Carrier(ThreadMode::Dedicated) => "carrier dedicated".into(),
            Variant::Carrier(_) => "carrier manual".into(),
        }
    }
}

fn cases(plan: &Plan) -> [(usize, usize, &'static str); 2] {
    [
        (64, plan.small_count, "64 B"),
        (1_024, plan.large_count, "1 KiB"),
    ]
}

pub(super) fn steps(plan: &Plan) -> usize {
    cases(plan).len() * VARIANTS.len() * plan.reps
}

pub(super) fn run(ctx: &mut Ctx) {
    for (size, count, label) in cases(&ctx.plan) {
        let case = format!("{label} × {count}");
        let mut ms: Vec<Measurement> = VARIANTS
            .iter()
            .map(|v| {
                let m = Measurement::new("throughput", case.clone(), v.name());
                if *v == Variant::Raw(Method::Std) {
                    m.as_baseline()
                } else {
                    m
                }
            })
            .collect();
        // Interleave the variants across repetitions so a slow phase of the machine hits all.
        for rep in 0..ctx.plan.reps {
            for (variant, m) in VARIANTS.iter().zip(ms.iter_mut()) {
                if !ctx.plan.wants(&format!("{case}: {}", variant.name())) {
                    continue;
                }
                ctx.step(format!(
                    "throughput {case}: {} (run {}/{})",
                    variant.name(),
                    rep + 1,
                    ctx.plan.reps
                ));
                let result = match variant {
                    Variant::Raw(method) => raw::one_way(*method, size, count, RUN_LIMIT),
                    Variant::Carrier(mode) => carrier_one_way(*mode, size, count, RUN_LIMIT),
                };
                record(m, size, count, result);
            }
        }
        for m in &mut ms {
            if m.variant.starts_with("raw") {
                m.note("msgs_per_s counts datagrams; the receiver stops 0.5 s after the last one");
            }
            if m.variant == "raw std send_to" {
                m.note(
                    "the sending socket is not connected: the kernel routes every datagram, as \
                     for Carrier's socket (one for every peer); raw std's is connected (route \
                     cached). For a payload sent in one datagram, this is Carrier's ceiling",
                );
            }
            if m.variant.starts_with("carrier") {
                m.note(
                    "reliable, channel 0, normal priority, `send` (copying) and `poll_message`; \
                     the sender retries after `QueueFull`; 4 MiB socket buffers, as the baseline",
                );
            }
            if m.variant == "carrier dedicated" {
                m.note(
                    "the receiving game thread polls, sleeping 50 µs when empty (as a game \
                     loop would; blocking in wait_message measured about the same: faster for \
                     64 B, slower for 1 KiB, within the noise)",
                );
            }
        }
        ctx.results.extend(ms);
    }
}

fn record(m: &mut Measurement, size: usize, count: usize, result: Result<OneWay, String>) {
    match result {
        Ok(r) => {
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            m.record(
                "msgs_per_s",
                "msg/s",
                Better::Higher,
                r.delivered as f64 / secs,
            );
            m.record(
                "mb_per_s",
                "MB/s",
                Better::Higher,
                (r.delivered * size) as f64 / secs / 1e6,
            );
            m.record(
                "delivered_pct",
                "%",
                Better::Higher,
                100.0 * r.delivered as f64 / count as f64,
            );
            if r.violations > 0 {
                m.fail(format!("{} messages out of order or damaged", r.violations));
            }
            let reliable = m.variant.starts_with("carrier");
            if reliable && r.delivered < count {
                m.fail(format!(
                    "only {} of {count} reliable messages arrived",
                    r.delivered
                ));
            }
        }
        Err(e) => m.fail(e),
    }
}

/// Sends `count` reliable stamped messages of `size` bytes from one carrier to another.
fn carrier_one_way(
    mode: ThreadMode,
    size: usize,
    count: usize,
    limit: Duration,
) -> Result<OneWay, String> {
    // The same socket buffers as the raw baseline: with the default 256 KiB a receiver that is
    // descheduled for a moment overflows its socket (the raw baseline, with 4 MiB, would not),
    // and the comparison would measure the buffer sizes rather than the protocol.
    let desc = || CarrierDesc {
        driver_receive_buffer_size: super::raw::SOCKET_BUFFER as u32,
        driver_send_buffer_size: super::raw::SOCKET_BUFFER as u32,
        ..loopback_desc(mode)
    };
    let sender = Carrier::new(desc()).map_err(|e| e.to_string())?;
    let receiver = Carrier::new(desc()).map_err(|e| e.to_string())?;
    let (tx_id, _) = connect_pair(&sender, &receiver, &receiver.local_addr().to_string())?;
    let deadline = crate::now() + limit;
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            let r = receive(&receiver, mode, size, count, deadline);
            done.store(true, Ordering::SeqCst);
            r
        });
        let first = crate::now();
        let sent = send(&sender, tx_id, mode, size, count, deadline, &done);
        let (delivered, violations, last) = rx
            .join()
            .map_err(|_| "the receiver thread panicked".to_string())?;
        let sent = sent?;
        if sent < count {
            return Err(format!(
                "stalled: {sent} of {count} messages queued, {delivered} delivered within {} s",
                limit.as_secs()
            ));
        }
        if delivered < count && violations == 0 {
            return Err(format!(
                "stalled: {delivered} of {count} messages delivered within {} s",
                limit.as_secs()
            ));
        }
        Ok(OneWay {
            delivered,
            violations,
            elapsed: last.map_or(Duration::ZERO, |l| l.saturating_duration_since(first)),
        })
    });
    sender.shutdown();
    receiver.shutdown();
    result
}

/// Queues every message (retrying after `QueueFull`), then keeps the carrier running until the
/// receiver is done. Returns how many were queued.
fn send(
    carrier: &Carrier,
    id: ConnectionId,
    mode: ThreadMode,
    size: usize,
    count: usize,
    deadline: Instant,
    done: &AtomicBool,
) -> Result<usize, String> {
    let mut buf = vec![0u8; size];
    let mut next = 0usize;
    while next < count && crate::now() < deadline {
        let mut full = false;
        for _ in 0..256 {
            if next == count {
                break;
            }
            stamp(&mut buf, next as u64);
            match carrier.send(id, &buf, Reliability::Reliable, Priority::Normal, 0) {
                Ok(()) => next += 1,
                Err(SendError::QueueFull { .. }) => {
                    full = true;
                    break;
                }
                Err(e) => return Err(format!("send failed after {next} messages: {e}")),
            }
        }
        match (mode, full) {
            (ThreadMode::Manual, false) => carrier.update(),
            (ThreadMode::Manual, true) => {
                let _ = carrier.wait_event(Duration::from_millis(1));
            }
            (_, true) => std::thread::sleep(Duration::from_micros(200)),
            (_, false) => {}
        }
    }
    // Keep the I/O going (manual mode) and the watchdog fed until the receiver has everything.
    while !done.load(Ordering::SeqCst) && crate::now() < deadline {
        match mode {
            ThreadMode::Manual => {
                let _ = carrier.wait_event(Duration::from_millis(1));
            }
            _ => {
                carrier.update();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    Ok(next)
}

/// Messages the receiver takes from the mailbox per lock (`Carrier::poll_messages`).
const INBOX: usize = 256;

/// Receives until `count` messages arrived or `deadline`, draining the mailbox in batches of
/// [`INBOX`] like a frame loop; returns (delivered in order, violations, time of the last
/// receive).
fn receive(
    carrier: &Carrier,
    mode: ThreadMode,
    size: usize,
    count: usize,
    deadline: Instant,
) -> (usize, usize, Option<Instant>) {
    let mut order = InOrder::default();
    let mut last = None;
    let mut polls = 0u32;
    let mut inbox = Vec::with_capacity(INBOX);
    while (order.next as usize) < count {
        if mode == ThreadMode::Manual {
            carrier.update();
        }
        let mut got = false;
        while carrier.poll_messages(&mut inbox, INBOX) > 0 {
            got = true;
            for (_, message) in inbox.drain(..) {
                order.record(&message.payload, size);
            }
        }
        if got {
            last = Some(crate::now());
            continue;
        }
        polls += 1;
        if polls.is_multiple_of(64) && crate::now() >= deadline {
            break;
        }
        match mode {
            ThreadMode::Manual => {
                let _ = carrier.wait_event(Duration::from_micros(500));
            }
            _ => std::thread::sleep(Duration::from_micros(50)),
        }
    }
    (order.delivered, order.violations, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_delivers_every_message_in_order_in_both_modes() {
        for mode in [ThreadMode::Dedicated, ThreadMode::Manual] {
            let r = carrier_one_way(mode, 64, 2_000, Duration::from_secs(30)).unwrap();
            assert_eq!((r.delivered, r.violations), (2_000, 0), "{mode:?}");
            assert!(r.elapsed > Duration::ZERO);
        }
    }
}
