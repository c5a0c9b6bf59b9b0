//! Receive coalescing of the carrier thread (`CarrierDesc::thread_receive_coalescing_us`): a
//! server receiving a stream of datagrams it need not answer at once handles them a batch per
//! wake-up, delivers every one of them, and neither a game thread blocked in `wait_message`
//! nor a stream of reliable data (whose sender waits for acknowledgements) is held back by it.
//!
//! The server's driver is the default UDP driver wrapped to count the receive calls that
//! returned datagrams (one per carrier-thread turn that found any).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use carrier::driver::{
    DirectSend, Driver, DriverError, Outgoing, RecvMeta, UdpDriver, UdpDriverConfig, Wake,
};
use carrier::{Carrier, CarrierDesc, FamilyType, Priority, Reliability, ThreadMode};
use common::{connect, desc, now, serial, shutdown_all};

/// Counts the receive calls that returned datagrams, and the datagrams.
#[derive(Default)]
struct Counts {
    batches: AtomicUsize,
    datagrams: AtomicUsize,
}

struct CountingDriver {
    inner: UdpDriver,
    counts: Arc<Counts>,
}

impl Driver for CountingDriver {
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }
    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }
    fn send(
        &mut self,
        now: Instant,
        batch: &[Outgoing<'_>],
        failed: &mut dyn FnMut(SocketAddr, DriverError),
    ) {
        self.inner.send(now, batch, failed);
    }
    fn recv(
        &mut self,
        now: Instant,
        bufs: &mut [Vec<u8>],
        metas: &mut [RecvMeta],
    ) -> Result<usize, DriverError> {
        let n = self.inner.recv(now, bufs, metas)?;
        if n > 0 {
            self.counts.batches.fetch_add(1, Ordering::Relaxed);
            self.counts.datagrams.fetch_add(n, Ordering::Relaxed);
        }
        Ok(n)
    }
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), DriverError> {
        self.inner.wait(timeout)
    }
    fn waker(&self) -> Arc<dyn Wake> {
        self.inner.waker()
    }
    fn direct_sender(&self) -> Option<Arc<dyn DirectSend>> {
        self.inner.direct_sender()
    }
}

/// A dedicated-mode server with receive coalescing `us` and a counting driver.
fn server(us: u32) -> (Carrier, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let inner = UdpDriver::open(&UdpDriverConfig {
        family: FamilyType::Ipv4,
        address: Some("127.0.0.1".parse().unwrap()),
        port: 0,
        receive_buffer_size: 1 << 20,
        send_buffer_size: 1 << 20,
        max_payload: CarrierDesc::default().max_datagram_size(),
    })
    .expect("open driver");
    let driver = CountingDriver {
        inner,
        counts: Arc::clone(&counts),
    };
    let carrier = Carrier::new(CarrierDesc {
        driver: Some(Box::new(driver)),
        thread_receive_coalescing_us: us,
        ..desc(ThreadMode::Dedicated)
    })
    .expect("server");
    (carrier, counts)
}

/// Sends `n` 32 B messages of `reliability` from a manual-mode client, one every `gap`, then
/// one reliable end marker; the server's game thread reads with `poll_message` (it never
/// blocks, so coalescing may apply). Returns how many the server got and whether the marker
/// came last.
fn stream(server: &Carrier, n: usize, gap: Duration, reliability: Reliability) -> (usize, bool) {
    let client = Carrier::new(desc(ThreadMode::Manual)).expect("client");
    let (to_server, _) = connect(server, &client);
    let mut got = 0;
    let mut marker_last = false;
    for i in 0..n {
        let payload = [i as u8; 32];
        client
            .send(to_server, &payload, reliability, Priority::Normal, 0)
            .expect("send");
        client.update();
        let until = now() + gap;
        while now() < until {
            std::hint::spin_loop();
        }
        while server.poll_message().is_some() {
            got += 1;
        }
    }
    client
        .send(
            to_server,
            b"end",
            Reliability::Reliable,
            Priority::Normal,
            0,
        )
        .expect("send marker");
    let end = now() + Duration::from_secs(10);
    while now() < end && !marker_last {
        client.update();
        while let Some((_, m)) = server.poll_message() {
            if &m.payload[..] == b"end" {
                marker_last = true;
            } else {
                got += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    shutdown_all(&[&client]);
    (got, marker_last)
}

#[test]
fn a_stream_is_received_a_batch_per_wake_up_and_delivered_whole() {
    let _serial = serial();
    let (server, counts) = server(carrier::MAX_RECEIVE_COALESCING_US);
    let before = (
        counts.batches.load(Ordering::Relaxed),
        counts.datagrams.load(Ordering::Relaxed),
    );
    // 1,000 datagrams over about 100 ms: coalescing engages once the carrier thread has seen
    // them arrive densely for a period (20 ms with 10 ms windows, about 200 datagrams), then a
    // handful of wake-ups find the rest.
    let (got, marker_last) = stream(
        &server,
        1_000,
        Duration::from_micros(100),
        Reliability::Unreliable,
    );
    let batches = counts.batches.load(Ordering::Relaxed) - before.0;
    let datagrams = counts.datagrams.load(Ordering::Relaxed) - before.1;
    eprintln!("coalescing 10 ms: {datagrams} datagrams in {batches} receive batches");
    assert_eq!(got, 1_000, "every unreliable message arrives on loopback");
    assert!(marker_last, "the reliable marker arrives after them");
    assert!(datagrams >= 1_000, "{datagrams}");
    // Without coalescing nearly every datagram is a batch of its own (about 900 of 1,000); the
    // handshake and the marker's exchange add a few more.
    assert!(
        batches <= 400,
        "{batches} receive batches for {datagrams} datagrams"
    );
    shutdown_all(&[&server]);
}

/// Reliable data asks for a prompt acknowledgement, which its sender's congestion window waits
/// for: a stream of it is not coalesced (a bulk sender would otherwise stall for each window).
/// Counted against the same stream to a server without coalescing (how bursty the client's
/// packets arrive depends on its pacing, the same for both): coalesced, the unreliable stream
/// above takes about a fifth of the receive batches it takes without.
#[test]
fn reliable_data_is_not_coalesced() {
    let _serial = serial();
    let mut batches = Vec::new();
    for us in [carrier::MAX_RECEIVE_COALESCING_US, 0] {
        let (server, counts) = server(us);
        let (got, marker_last) = stream(
            &server,
            1_000,
            Duration::from_micros(100),
            Reliability::Reliable,
        );
        let n = counts.batches.load(Ordering::Relaxed);
        let datagrams = counts.datagrams.load(Ordering::Relaxed);
        eprintln!("reliable, coalescing {us} µs: {datagrams} datagrams in {n} receive batches");
        assert_eq!((got, marker_last), (1_000, true));
        batches.push(n);
        shutdown_all(&[&server]);
    }
    assert!(
        batches[0] * 10 >= batches[1] * 6,
        "{} receive batches with coalescing, {} without: reliable data was coalesced",
        batches[0],
        batches[1]
    );
}

#[test]
fn without_coalescing_the_stream_is_delivered_whole_too() {
    let _serial = serial();
    let (server, counts) = server(0);
    let (got, marker_last) = stream(
        &server,
        1_000,
        Duration::from_micros(100),
        Reliability::Unreliable,
    );
    let batches = counts.batches.load(Ordering::Relaxed);
    let datagrams = counts.datagrams.load(Ordering::Relaxed);
    eprintln!("coalescing off: {datagrams} datagrams in {batches} receive batches");
    assert_eq!((got, marker_last), (1_000, true));
    shutdown_all(&[&server]);
}

/// A game thread blocked in `wait_message` while a stream (unreliable: nothing to answer at
/// once) flows gets each message as it arrives: the carrier thread does not coalesce while a
/// game thread waits (and one that was coalescing when the wait began is woken). Counted, not
/// timed: with datagrams 1 ms apart, an unheld carrier thread receives about one per batch
/// (about 1.8 on a machine loaded with two busy loops: the reader, descheduled between two
/// waits, does not count as waiting), while 10 ms windows would gather about eight per batch
/// once the arrivals have been seen dense for 20 ms (about 50 batches for 300 datagrams).
#[test]
fn a_blocked_waiter_is_not_held_back() {
    let _serial = serial();
    let (server, counts) = server(carrier::MAX_RECEIVE_COALESCING_US);
    let client = Carrier::new(desc(ThreadMode::Manual)).expect("client");
    let (to_server, _) = connect(&server, &client);
    const N: usize = 300;
    let before = (
        counts.batches.load(Ordering::Relaxed),
        counts.datagrams.load(Ordering::Relaxed),
    );
    let (got, waited) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut got = 0;
            let start = now();
            while got < N && now() < start + Duration::from_secs(20) {
                if server.wait_message(Duration::from_millis(100)).is_some() {
                    got += 1;
                }
            }
            (got, now() - start)
        });
        for i in 0..N {
            client
                .send(
                    to_server,
                    &[i as u8; 32],
                    Reliability::Unreliable,
                    Priority::Normal,
                    0,
                )
                .expect("send");
            client.update();
            std::thread::sleep(Duration::from_millis(1));
        }
        let end = now() + Duration::from_secs(20);
        while !reader.is_finished() && now() < end {
            client.update();
            std::thread::sleep(Duration::from_millis(1));
        }
        reader.join().expect("reader")
    });
    let batches = counts.batches.load(Ordering::Relaxed) - before.0;
    let datagrams = counts.datagrams.load(Ordering::Relaxed) - before.1;
    eprintln!(
        "blocked waiter: {got} messages in {waited:?}, {datagrams} datagrams in {batches} receive batches"
    );
    assert_eq!(got, N, "every message arrives");
    assert!(
        batches >= N / 4,
        "{batches} receive batches for {datagrams} datagrams: the waiter was held back"
    );
    shutdown_all(&[&client, &server]);
}
