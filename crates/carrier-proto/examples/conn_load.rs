//! Instruction-count probe of the server side of the `connections` benchmark, in memory:
//! 1,000 client endpoints connect to one server endpoint, then each sends a 32 B unreliable
//! message in turn, four datagrams per server turn (200 µs of virtual time apart).
//!
//! Count the server's instructions per datagram (turns × 4 datagrams) with callgrind:
//!
//! ```text
//! cargo build --release -p carrier-proto --example conn_load
//! valgrind --tool=callgrind --toggle-collect='conn_load::server_turn' \
//!     target/release/examples/conn_load 20000
//! ```
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_proto::{ChannelId, Endpoint, EndpointConfig, Priority, Reliability};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

#[inline(never)]
fn server_turn(
    server: &mut Endpoint,
    now: Instant,
    batch: &[(SocketAddr, Vec<u8>)],
    out: &mut [u8],
) -> usize {
    for (from, d) in batch {
        server.handle(now, *from, d);
    }
    if server.poll_timeout().is_some_and(|t| t <= now) {
        server.handle_timeout(now);
    }
    let mut sent = 0;
    while server.poll_transmit(now, out).is_some() {
        sent += 1;
    }
    while server.poll_message().is_some() {}
    sent
}

#[allow(clippy::disallowed_methods)]
fn main() {
    let n = 1000;
    let t0 = Instant::now();
    let server_addr = SocketAddr::from(([127, 0, 0, 1], 4000));
    let mut server = Endpoint::new(EndpointConfig::default(), t0, 1).unwrap();
    let mut clients: Vec<(Endpoint, _)> = (0..n)
        .map(|i| {
            let mut c = Endpoint::new(EndpointConfig::default(), t0, 100 + i as u64).unwrap();
            let id = c.connect(t0, server_addr).unwrap();
            (c, id)
        })
        .collect();
    let mut buf = vec![0u8; 2048];
    let mut now = t0;
    // Handshake.
    for _ in 0..200 {
        now += Duration::from_millis(1);
        for (i, (c, _)) in clients.iter_mut().enumerate() {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
            while let Some(t) = c.poll_transmit(now, &mut buf) {
                server.handle(now, addr(i), &buf[..t.size]);
            }
        }
        while let Some(t) = server.poll_transmit(now, &mut buf) {
            let i = (t.destination.port() - 10_000) as usize;
            clients[i].0.handle(now, server_addr, &buf[..t.size]);
        }
        while server.poll_event().is_some() {}
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
    }
    let up = clients
        .iter()
        .filter(|(c, id)| c.connection(*id).is_some_and(|x| x.is_connected()))
        .count();
    eprintln!("connected {up}");
    // Load: 4 datagrams per server turn, 50 µs apart, 20 s of virtual time at 20,000/s.
    let mut total = 0;
    let mut batch = Vec::new();
    let mut k = 0usize;
    let turns: usize = std::env::args()
        .nth(1)
        .map_or(50_000, |s| s.parse().unwrap());
    for _ in 0..turns {
        batch.clear();
        for _ in 0..4 {
            let i = k % n;
            k += 1;
            let (c, id) = &mut clients[i];
            c.send(
                *id,
                ChannelId::new(0),
                Priority::Normal,
                Reliability::Unreliable,
                vec![0u8; 32],
            )
            .unwrap();
            while let Some(t) = c.poll_transmit(now, &mut buf) {
                batch.push((addr(i), buf[..t.size].to_vec()));
            }
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
        total += server_turn(&mut server, now, &batch, &mut buf);
        now += Duration::from_micros(200);
    }
    println!("server sent {total}");
}
