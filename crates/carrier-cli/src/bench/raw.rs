//! The raw-UDP baselines of `throughput` and `pingpong`: std `UdpSocket` (one datagram per
//! syscall) and `sendmmsg`/`recvmmsg` batches, sender and receiver in two threads over loopback.

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::SockRef;

use super::stats::Latency;
use super::sys;
use super::{stamp, unstamp};

/// Socket buffers of the baselines (the machines' `rmem_max`/`wmem_max`).
pub(super) const SOCKET_BUFFER: usize = 4 << 20;
/// A receiver that has heard nothing for this long after the first datagram stops (the rest
/// was lost).
const IDLE_LIMIT: Duration = Duration::from_millis(500);
/// Batch of the `mmsg` baseline.
pub const MMSG_BATCH: usize = 32;

/// How the baseline moves datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `send`/`recv` on a connected socket, one datagram per syscall.
    Std,
    /// `send_to`/`recv` with an unconnected sending socket, one datagram per syscall: the
    /// kernel routes every datagram (a connected socket caches the route), as for a server
    /// socket that talks to many peers — Carrier's case.
    StdSendTo,
    /// `sendmmsg`/`recvmmsg`, [`MMSG_BATCH`] datagrams per syscall.
    Mmsg,
}

/// What a one-way run delivered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneWay {
    /// Datagrams (or messages) received in order and intact.
    pub delivered: usize,
    /// Out of order or damaged.
    pub violations: usize,
    /// From the first send to the last receive.
    pub elapsed: Duration,
}

pub(super) fn bind_loopback() -> io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    let r = SockRef::from(&s);
    r.set_recv_buffer_size(SOCKET_BUFFER)?;
    r.set_send_buffer_size(SOCKET_BUFFER)?;
    Ok(s)
}

/// Receives stamped datagrams of `size` bytes until `count` arrived, nothing came for
/// [`IDLE_LIMIT`] after the first, or `deadline`. Returns (delivered, violations, last receive).
pub(super) fn receive_stamped(
    socket: &UdpSocket,
    method: Method,
    size: usize,
    count: usize,
    deadline: Instant,
) -> io::Result<(usize, usize, Option<Instant>)> {
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut bufs = vec![vec![0u8; size.max(64) + 64]; MMSG_BATCH];
    let mut lens = [0usize; MMSG_BATCH];
    let mut next = 0u64;
    let mut delivered = 0;
    let mut violations = 0;
    let mut last = None;
    while delivered + violations < count {
        let t = crate::now();
        if t >= deadline
            || last.is_some_and(|l: Instant| t.saturating_duration_since(l) > IDLE_LIMIT)
        {
            break;
        }
        let got = match method {
            Method::Std | Method::StdSendTo => match socket.recv(&mut bufs[0]) {
                Ok(n) => {
                    lens[0] = n;
                    1
                }
                Err(e) if is_timeout(&e) => 0,
                Err(e) => return Err(e),
            },
            Method::Mmsg => match sys::recv_mmsg(socket, &mut bufs, &mut lens) {
                Ok(n) => n,
                Err(e) if is_timeout(&e) => 0,
                Err(e) => return Err(e),
            },
        };
        if got == 0 {
            continue;
        }
        last = Some(crate::now());
        for (buf, len) in bufs.iter().zip(&lens).take(got) {
            match unstamp(&buf[..*len], size) {
                // Gaps are losses (counted by the caller); going backwards is a violation.
                Some(seq) if seq >= next => {
                    next = seq + 1;
                    delivered += 1;
                }
                _ => violations += 1,
            }
        }
    }
    Ok((delivered, violations, last))
}

fn io_err(what: &'static str) -> impl Fn(io::Error) -> String {
    move |e| format!("{what}: {e}")
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Sends `count` stamped datagrams of `size` bytes one way and measures the receive side.
pub fn one_way(
    method: Method,
    size: usize,
    count: usize,
    limit: Duration,
) -> Result<OneWay, String> {
    let rx = bind_loopback().map_err(io_err("bind"))?;
    let tx = bind_loopback().map_err(io_err("bind"))?;
    let to = rx.local_addr().map_err(io_err("local_addr"))?;
    if method != Method::StdSendTo {
        tx.connect(to).map_err(io_err("connect"))?;
    }
    let deadline = crate::now() + limit;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let receiver = s.spawn(|| receive_stamped(&rx, method, size, count, deadline));
        let first = crate::now();
        let sent = send_stamped(&tx, to, method, size, count, deadline, &stop);
        let received = receiver
            .join()
            .map_err(|_| "the receiver thread panicked".to_string())?;
        stop.store(true, Ordering::SeqCst);
        let sent = sent.map_err(io_err("send"))?;
        let (delivered, violations, last) = received.map_err(io_err("receive"))?;
        if sent < count {
            return Err(format!(
                "only {sent} of {count} datagrams sent in {limit:?}"
            ));
        }
        let elapsed = last.map_or(Duration::ZERO, |l| l.saturating_duration_since(first));
        Ok(OneWay {
            delivered,
            violations,
            elapsed,
        })
    })
}

fn send_stamped(
    socket: &UdpSocket,
    to: std::net::SocketAddr,
    method: Method,
    size: usize,
    count: usize,
    deadline: Instant,
    stop: &AtomicBool,
) -> io::Result<usize> {
    let mut bufs = vec![vec![0u8; size]; MMSG_BATCH];
    let mut seq = 0usize;
    while seq < count {
        if seq.is_multiple_of(1_024) && (crate::now() >= deadline || stop.load(Ordering::Relaxed)) {
            break;
        }
        match method {
            Method::Std => {
                stamp(&mut bufs[0], seq as u64);
                socket.send(&bufs[0])?;
                seq += 1;
            }
            Method::StdSendTo => {
                stamp(&mut bufs[0], seq as u64);
                socket.send_to(&bufs[0], to)?;
                seq += 1;
            }
            Method::Mmsg => {
                let n = MMSG_BATCH.min(count - seq);
                for (i, b) in bufs.iter_mut().take(n).enumerate() {
                    stamp(b, (seq + i) as u64);
                }
                let slices: Vec<&[u8]> = bufs.iter().take(n).map(Vec::as_slice).collect();
                let mut done = 0;
                while done < n {
                    done += sys::send_mmsg(socket, &slices[done..])?;
                }
                seq += n;
            }
        }
    }
    Ok(seq)
}

/// How the ping-pong threads wait for the next datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Blocking `recv`.
    Blocking,
    /// Non-blocking `recv` in a loop (busy spin).
    Spin,
    /// Non-blocking `recvmmsg` of up to [`SPIN_MMSG_BATCH`] datagrams in a loop (busy spin): the
    /// receive call of Carrier's UDP driver.
    SpinMmsg,
}

/// One non-blocking or blocking receive of `wait`'s kind into `buf` (for `SpinMmsg`, into
/// `bufs[0]`, then copied): the length, or the error (`WouldBlock` when nothing waits).
fn receive_one(
    socket: &UdpSocket,
    wait: Wait,
    connected: bool,
    buf: &mut [u8],
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
) -> io::Result<usize> {
    match wait {
        Wait::SpinMmsg => {
            let n = sys::recv_mmsg(socket, bufs, lens)?;
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // A ping-pong has one datagram in flight: the first is the one.
            let len = lens[0].min(buf.len());
            buf[..len].copy_from_slice(&bufs[0][..len]);
            Ok(len)
        }
        _ if connected => socket.recv(buf),
        _ => socket.recv_from(buf).map(|(n, _)| n),
    }
}

/// `warmup + count` round trips of a 64 B datagram between two threads; the latencies of the
/// last `count`. `connected`: the sockets are connected to each other (`send`/`recv`), else
/// they use `send_to`/`recv_from`.
pub fn ping_pong(
    wait: Wait,
    connected: bool,
    warmup: usize,
    count: usize,
    limit: Duration,
) -> Result<Latency, String> {
    let server = bind_loopback().map_err(io_err("bind"))?;
    let client = bind_loopback().map_err(io_err("bind"))?;
    let server_addr = server.local_addr().map_err(io_err("local_addr"))?;
    let client_addr = client.local_addr().map_err(io_err("local_addr"))?;
    if connected {
        client.connect(server_addr).map_err(io_err("connect"))?;
        server.connect(client_addr).map_err(io_err("connect"))?;
    }
    for s in [&server, &client] {
        match wait {
            Wait::Blocking => s.set_read_timeout(Some(Duration::from_millis(100))),
            Wait::Spin | Wait::SpinMmsg => s.set_nonblocking(true),
        }
        .map_err(io_err("socket option"))?;
    }
    let deadline = crate::now() + limit;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let echo = s.spawn(|| -> io::Result<()> {
            let mut buf = [0u8; 256];
            let (mut bufs, mut lens) = mmsg_buffers();
            while !stop.load(Ordering::Relaxed) {
                let got = receive_one(&server, wait, connected, &mut buf, &mut bufs, &mut lens);
                match got {
                    Ok(n) if connected => {
                        server.send(&buf[..n])?;
                    }
                    Ok(n) => {
                        server.send_to(&buf[..n], client_addr)?;
                    }
                    Err(e) if is_timeout(&e) => {
                        if wait != Wait::Blocking {
                            std::hint::spin_loop();
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        let result = (|| -> Result<Latency, String> {
            let mut samples = Vec::with_capacity(count);
            let mut buf = [0u8; 64];
            let mut back = [0u8; 256];
            let (mut bufs, mut lens) = mmsg_buffers();
            for i in 0..warmup + count {
                stamp(&mut buf, i as u64);
                let t0 = crate::now();
                if t0 >= deadline {
                    return Err(format!("timed out after {i} round trips"));
                }
                if connected {
                    client.send(&buf)
                } else {
                    client.send_to(&buf, server_addr)
                }
                .map_err(io_err("send"))?;
                let limit_rt = t0 + Duration::from_secs(1);
                loop {
                    let got =
                        receive_one(&client, wait, connected, &mut back, &mut bufs, &mut lens);
                    match got {
                        Ok(n) if unstamp(&back[..n], 64) == Some(i as u64) => break,
                        Ok(_) => {}
                        Err(e) if is_timeout(&e) => {}
                        Err(e) => return Err(format!("receive: {e}")),
                    }
                    if crate::now() > limit_rt {
                        return Err(format!("round trip {i} lost (no answer within 1 s)"));
                    }
                }
                if i >= warmup {
                    samples.push(crate::now().saturating_duration_since(t0));
                }
            }
            Ok(Latency::of(&mut samples))
        })();
        stop.store(true, Ordering::SeqCst);
        let echoed = echo
            .join()
            .map_err(|_| "the echo thread panicked".to_string())?;
        echoed.map_err(io_err("echo"))?;
        result
    })
}

/// Datagrams a `Wait::SpinMmsg` receive asks for: the batch of Carrier's runtime.
const SPIN_MMSG_BATCH: usize = 32;

/// Receive buffers for `Wait::SpinMmsg`: [`SPIN_MMSG_BATCH`] of 2 KiB, as Carrier's runtime.
fn mmsg_buffers() -> (Vec<Vec<u8>>, Vec<usize>) {
    (
        vec![vec![0u8; 2_048]; SPIN_MMSG_BATCH],
        vec![0; SPIN_MMSG_BATCH],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_deliver_everything_in_order() {
        for method in [Method::Std, Method::StdSendTo, Method::Mmsg] {
            let r = one_way(method, 64, 2_000, Duration::from_secs(10)).unwrap();
            assert_eq!(r.violations, 0, "{method:?}");
            // Loopback with 4 MiB buffers does not drop 2,000 small datagrams.
            assert_eq!(r.delivered, 2_000, "{method:?}");
        }
    }

    #[test]
    fn spinning_ping_pongs_with_each_receive_call_measure_round_trips() {
        for (wait, connected) in [
            (Wait::Spin, true),
            (Wait::Spin, false),
            (Wait::SpinMmsg, false),
        ] {
            let l = ping_pong(wait, connected, 10, 200, Duration::from_secs(10)).unwrap();
            assert!(
                l.p50 > Duration::ZERO && l.p50 <= l.p99 && l.p99 <= l.max,
                "{wait:?} {connected}: {l:?}"
            );
        }
    }

    #[test]
    fn ping_pong_measures_round_trips() {
        let l = ping_pong(Wait::Blocking, true, 10, 100, Duration::from_secs(10)).unwrap();
        assert_eq!(l.count, 100);
        assert!(l.p50 <= l.p99 && l.p99 <= l.max);
    }
}
