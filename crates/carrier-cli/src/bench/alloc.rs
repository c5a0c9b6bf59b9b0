//! `alloc`: heap allocations per message on the send and receive paths in steady state,
//! counted by the `carrier` binary's global allocator ([`CountingAlloc`](super::CountingAlloc)).
//!
//! Two manual-mode carriers in this one thread (no other thread allocates meanwhile): the
//! client queues a batch and calls `update` (the **send path**: `send` + packing + the syscall,
//! and the acknowledgements it processes), then the server calls `update` and takes the messages
//! (the **receive path**: the syscall, parsing, reassembly, delivery, acknowledging, and the
//! receive call). After as many messages again for warm-up, the counters run over `alloc_count`
//! messages. Measured twice: with `send` (copies the payload) + `poll_message`, and with
//! `send_bytes` (payloads built beforehand) + `receive_into` (copies into the caller's buffer).
//! Without the counting allocator installed (the library's tests) every figure reads 0.

use std::time::{Duration, Instant};

use bytes::Bytes;
use carrier::{Carrier, ConnectionId, Priority, Reliability, ThreadMode};

use super::report::{Better, Measurement};
use super::sys::{self, AllocCounters};
use super::{Ctx, Plan, connect_pair, loopback_desc, stamp};

/// Messages queued per loop turn.
const BATCH: usize = 32;
/// Longest a measurement may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The calls a measurement uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// `send` + `poll_message`.
    Copying,
    /// `send_bytes` + `receive_into`.
    ZeroCopy,
}

fn sizes() -> [usize; 2] {
    [64, 1_024]
}

pub(super) fn steps(plan: &Plan) -> usize {
    sizes().len() * 2 * plan.reps
}

/// Allocations on both paths over one measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct PathAllocs {
    messages: usize,
    send: AllocCounters,
    receive: AllocCounters,
}

fn add(a: &mut AllocCounters, d: AllocCounters) {
    a.allocs += d.allocs;
    a.frees += d.frees;
    a.bytes_allocated += d.bytes_allocated;
    a.bytes_freed += d.bytes_freed;
}

pub(super) fn run(ctx: &mut Ctx) {
    let count = ctx.plan.alloc_count;
    for size in sizes() {
        let case = format!("{size} B × {count}, manual mode");
        let names = [
            "send: send (copy)",
            "receive: poll_message",
            "send: send_bytes",
            "receive: receive_into",
        ];
        let mut ms: Vec<Measurement> = names
            .iter()
            .map(|n| Measurement::new("alloc", case.clone(), *n))
            .collect();
        for rep in 0..ctx.plan.reps {
            for (i, api) in [Api::Copying, Api::ZeroCopy].into_iter().enumerate() {
                ctx.step(format!(
                    "alloc {case}: {api:?} (run {}/{})",
                    rep + 1,
                    ctx.plan.reps
                ));
                match measure(api, size, count) {
                    Ok(p) => {
                        let n = p.messages.max(1) as f64;
                        for (m, c) in [(2 * i, p.send), (2 * i + 1, p.receive)] {
                            ms[m].record(
                                "allocs_per_msg",
                                "alloc",
                                Better::Lower,
                                c.allocs as f64 / n,
                            );
                            ms[m].record(
                                "bytes_per_msg",
                                "B",
                                Better::Lower,
                                c.bytes_allocated as f64 / n,
                            );
                        }
                    }
                    Err(e) => {
                        ms[2 * i].fail(e.clone());
                        ms[2 * i + 1].fail(e);
                    }
                }
            }
        }
        for m in &mut ms {
            m.note(
                "counting global allocator of the carrier binary; raw UDP allocates nothing per \
                 datagram, so there is no ratio",
            );
        }
        ctx.results.extend(ms);
    }
}

/// Runs `2 × count` messages through two manual-mode carriers and counts the allocations of the
/// second half.
fn measure(api: Api, size: usize, count: usize) -> Result<PathAllocs, String> {
    let client = Carrier::new(loopback_desc(ThreadMode::Manual)).map_err(|e| e.to_string())?;
    let server = Carrier::new(loopback_desc(ThreadMode::Manual)).map_err(|e| e.to_string())?;
    let (id, server_id) = connect_pair(&client, &server, &server.local_addr().to_string())?;
    let payloads: Vec<Bytes> = if api == Api::ZeroCopy {
        (0..2 * count)
            .map(|i| {
                let mut b = vec![0u8; size];
                stamp(&mut b, i as u64);
                let bytes = Bytes::from(b);
                // The first clone of a `Bytes` made from a `Vec` allocates its shared header:
                // do it now, so the measured clones only count references.
                drop(bytes.clone());
                bytes
            })
            .collect()
    } else {
        Vec::new()
    };
    let deadline = crate::now() + RUN_LIMIT;
    let mut run = Run {
        client: &client,
        server: &server,
        id,
        server_id,
        api,
        size,
        buf: vec![0u8; size],
        rx_buf: vec![0u8; size + 64],
        sent: 0,
        received: 0,
    };
    // Warm-up, uncounted.
    run.until(count, &payloads, deadline, None)?;
    let mut allocs = PathAllocs::default();
    sys::set_alloc_counting(true);
    let result = run.until(2 * count, &payloads, deadline, Some(&mut allocs));
    sys::set_alloc_counting(false);
    result?;
    allocs.messages = count;
    drop(run);
    client.shutdown();
    server.shutdown();
    Ok(allocs)
}

struct Run<'a> {
    client: &'a Carrier,
    server: &'a Carrier,
    id: ConnectionId,
    server_id: ConnectionId,
    api: Api,
    size: usize,
    buf: Vec<u8>,
    rx_buf: Vec<u8>,
    sent: usize,
    received: usize,
}

impl Run<'_> {
    /// Sends and receives until `target` messages were received, counting into `allocs`.
    fn until(
        &mut self,
        target: usize,
        payloads: &[Bytes],
        deadline: Instant,
        mut allocs: Option<&mut PathAllocs>,
    ) -> Result<(), String> {
        while self.received < target {
            if crate::now() >= deadline {
                return Err(format!(
                    "stalled: {} of {target} messages received within {} s",
                    self.received,
                    RUN_LIMIT.as_secs()
                ));
            }
            // Send path.
            let before = AllocCounters::now();
            let goal = (self.sent + BATCH).min(target);
            while self.sent < goal {
                let r = match self.api {
                    Api::Copying => {
                        stamp(&mut self.buf, self.sent as u64);
                        self.client.send(
                            self.id,
                            &self.buf,
                            Reliability::Reliable,
                            Priority::Normal,
                            0,
                        )
                    }
                    Api::ZeroCopy => self.client.send_bytes(
                        self.id,
                        payloads[self.sent].clone(),
                        Reliability::Reliable,
                        Priority::Normal,
                        0,
                    ),
                };
                match r {
                    Ok(()) => self.sent += 1,
                    Err(carrier::SendError::QueueFull { .. }) => break,
                    Err(e) => return Err(format!("send failed: {e}")),
                }
            }
            self.client.update();
            let after_send = AllocCounters::now();
            // Receive path.
            self.server.update();
            let got_before = self.received;
            match self.api {
                Api::Copying => {
                    while let Some((_, m)) = self.server.poll_message() {
                        if m.payload.len() != self.size {
                            return Err("a message arrived damaged".into());
                        }
                        self.received += 1;
                    }
                }
                Api::ZeroCopy => loop {
                    match self
                        .server
                        .receive_into(self.server_id, 0, &mut self.rx_buf)
                    {
                        Ok(Some(n)) if n == self.size => self.received += 1,
                        Ok(Some(_)) => return Err("a message arrived damaged".into()),
                        Ok(None) => break,
                        Err(e) => return Err(format!("receive failed: {e}")),
                    }
                },
            }
            let after_receive = AllocCounters::now();
            if let Some(a) = allocs.as_deref_mut() {
                add(&mut a.send, after_send.since(&before));
                add(&mut a.receive, after_receive.since(&after_send));
            }
            if self.received == got_before {
                // Nothing arrived: let the acknowledgement and retransmission timers run.
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_complete_in_both_apis() {
        for api in [Api::Copying, Api::ZeroCopy] {
            let p = measure(api, 64, 500).unwrap();
            assert_eq!(p.messages, 500, "{api:?}");
        }
    }
}
