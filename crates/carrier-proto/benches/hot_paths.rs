//! Criterion micro-benchmarks of the protocol's hot paths: ACK encode/decode, and whole
//! in-memory transfers (datagram encode and decode, acknowledgement processing, stream delivery,
//! fragment reassembly, packet filling) between two endpoints with no network in between.

#![allow(clippy::disallowed_methods)] // benchmarks take a base instant from the real clock

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_proto::ack::{AckRanges, decode_ack, encode_ack};
use carrier_proto::wire::{Reader, Writer};
use carrier_proto::{ChannelId, Endpoint, EndpointConfig, Event, Priority, Reliability};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn ack_codec(c: &mut Criterion) {
    let mut ranges = AckRanges::new(32);
    for pn in 0..2_000u64 {
        if pn % 97 != 0 {
            ranges.insert(pn);
        }
    }
    let mut buf = [0u8; 512];
    let mut out = Vec::new();
    c.bench_function("ack_encode_decode_20_ranges", |b| {
        b.iter(|| {
            let mut w = Writer::new(&mut buf);
            encode_ack(black_box(&ranges), 250, 32, &mut w).unwrap();
            let n = w.len();
            let mut r = Reader::new(&buf[..n]);
            black_box(decode_ack(&mut r, 2_000, 32, &mut out).unwrap());
        })
    });
}

/// Two endpoints joined by an in-memory, lossless wire.
struct Pair {
    now: Instant,
    a: Endpoint,
    b: Endpoint,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    buf: Vec<u8>,
    wire: Vec<(bool, Vec<u8>)>,
}

impl Pair {
    fn new() -> (Pair, carrier_proto::ConnectionId) {
        let now = Instant::now();
        let mut pair = Pair {
            now,
            a: Endpoint::new(EndpointConfig::default(), now, 1).unwrap(),
            b: Endpoint::new(EndpointConfig::default(), now, 2).unwrap(),
            a_addr: "127.0.0.1:1".parse().unwrap(),
            b_addr: "127.0.0.1:2".parse().unwrap(),
            buf: vec![0; 65_536],
            wire: Vec::new(),
        };
        let id = pair.a.connect(now, pair.b_addr).unwrap();
        loop {
            pair.step();
            if let Some(Event::ConnectionEstablished { .. }) = pair.a.poll_event() {
                break;
            }
        }
        while pair.b.poll_event().is_some() {}
        (pair, id)
    }

    fn step(&mut self) {
        self.now += Duration::from_micros(50);
        for (to_b, d) in self.wire.drain(..) {
            if to_b {
                self.b.handle(self.now, self.a_addr, &d);
            } else {
                self.a.handle(self.now, self.b_addr, &d);
            }
        }
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        while let Some(t) = self.a.poll_transmit(self.now, &mut self.buf) {
            self.wire.push((true, self.buf[..t.size].to_vec()));
        }
        while let Some(t) = self.b.poll_transmit(self.now, &mut self.buf) {
            self.wire.push((false, self.buf[..t.size].to_vec()));
        }
    }
}

fn transfer(c: &mut Criterion, name: &str, size: usize, count: usize) {
    let (mut pair, id) = Pair::new();
    let payload = bytes::Bytes::from(vec![7u8; size]);
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("reliable", |b| {
        b.iter(|| {
            for _ in 0..count {
                pair.a
                    .send(
                        id,
                        ChannelId::new(0),
                        Priority::Normal,
                        Reliability::Reliable,
                        payload.clone(),
                    )
                    .unwrap();
            }
            let mut got = 0;
            while got < count {
                pair.step();
                while pair.b.poll_message().is_some() {
                    got += 1;
                }
            }
        })
    });
    group.finish();
}

fn small_messages(c: &mut Criterion) {
    transfer(c, "transfer_64B_x1000", 64, 1_000);
}

/// 1 KiB messages: most are split to fill the room left in a packet (docs/protocol.md §16).
fn filled_messages(c: &mut Criterion) {
    transfer(c, "transfer_1KiB_x1000_filled", 1_024, 1_000);
}

fn large_messages(c: &mut Criterion) {
    transfer(c, "transfer_64KiB_x16_fragmented", 65_536, 16);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = ack_codec, small_messages, filled_messages, large_messages
}
criterion_main!(benches);
