//! Bad input (docs/protocol.md §15): a server with an established connection is fed 1,000,000
//! hostile datagrams straight into `Endpoint::handle` — random bytes, captured datagrams with
//! their bytes mutated, and mutants whose CRC-32 is recomputed so they pass the checksum and reach
//! the packet and frame parsers — from random addresses and from the addresses of real peers.
//! Nothing panics, no state is created for unproven addresses, every rejected datagram is counted
//! with its reason, and the established connection keeps delivering. A proptest feeds arbitrary
//! datagrams to a fresh endpoint and to one with a connection.
//!
//! # Which mutants come from a real peer's address
//!
//! A datagram from a peer's address that carries the right connection id and a valid checksum is,
//! for the protocol, that peer's packet: the checksum detects damage, it is not a MAC. A mutant of
//! that kind that happens to be valid is legitimately *applied*, and several such mutants would
//! legitimately break the connection, not only a `DISCONNECT` frame (type `0x03`):
//!
//! - a packet number ahead of the peer's is recorded and then acknowledged to the peer, which
//!   drops every packet carrying that ACK (`Malformed`, "ack of unsent packet", §7.1), so the
//!   connection dies by timeout;
//! - a mutated sequence number queues a forged message in place of a future real one (the real one
//!   is then a duplicate);
//! - a mutated ACK can acknowledge a packet the peer never received, whose reliable frames are
//!   then never resent.
//!
//! So the test uses two peers of the server:
//!
//! - **the client**, whose connection must survive. From its address it receives random bytes,
//!   unsealed mutants (checksum wrong) and re-sealed mutants that cannot be applied: a mutant whose
//!   frames are invalid by the wire format (checked by a reference walker of §7–§8 in this file)
//!   gets a fresh packet number, so it reaches the frame parser and must be dropped as `Malformed`;
//!   a mutant whose frames are well formed gets a packet number the server already received, so it
//!   must be dropped as `Duplicate`. Every one of them must be dropped, and the test checks the
//!   reason of each.
//! - **the victim**, a second connected peer that goes silent after the capture. Re-sealed mutants
//!   from its address carry its connection id and increasing fresh packet numbers, so valid ones
//!   are applied: they exercise the semantic layer (sequence expansion, reassembly, ACK ranges,
//!   the receive window, reliable data the server has in flight to the victim). For the first
//!   nine tenths of the run, mutants whose frames decode to a `DISCONNECT` are not sent, so the
//!   victim's connection stays open and keeps being exercised; in the last tenth they are, so the
//!   draining and removal paths get hostile input too. Whatever they do to the victim, the server
//!   must not panic, its memory must stay bounded, and the client's connection must not notice.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use carrier_proto::testing::{Network, NodeId};
use carrier_proto::{
    ChannelId, ConnectionId, DropCounters, DropReason, Endpoint, EndpointConfig, Event, Priority,
    Reliability,
};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEED: u64 = 0xCA77_F022;
const DATAGRAMS: usize = 1_000_000;

const MAGIC: [u8; 2] = [0xCA, 0x77];
const VERSION: u8 = 1;
const TYPE_DATA: u8 = 5;
/// Datagram header + destination id + packet number (docs/protocol.md §5).
const DATA_HEADER: usize = 12;
const CRC_LEN: usize = 4;
const CHANNELS: u8 = 8;
const MAX_ACK_RANGES: u64 = 32;

// ---------------------------------------------------------------------------------------------
// Wire helpers
// ---------------------------------------------------------------------------------------------

fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let sum = crc32fast::hash(&body);
    body.extend_from_slice(&sum.to_be_bytes());
    body
}

fn unseal(datagram: &[u8]) -> Vec<u8> {
    datagram[..datagram.len() - CRC_LEN].to_vec()
}

fn is_data(datagram: &[u8]) -> bool {
    datagram.len() > DATA_HEADER + CRC_LEN
        && datagram[..2] == MAGIC
        && datagram[2] == VERSION
        && datagram[3] == TYPE_DATA
}

fn dest_id(datagram: &[u8]) -> [u8; 4] {
    datagram[4..8].try_into().unwrap()
}

fn packet_number(datagram: &[u8]) -> u32 {
    u32::from_be_bytes(datagram[8..12].try_into().unwrap())
}

/// The drop reason of the checks every datagram passes first (§3): length, magic, version,
/// checksum. `None` when the datagram passes them.
fn header_verdict(d: &[u8]) -> Option<DropReason> {
    if d.len() < 4 + CRC_LEN {
        return Some(DropReason::TooShort);
    }
    if d[..2] != MAGIC {
        return Some(DropReason::BadMagic);
    }
    if d[2] != VERSION {
        return Some(DropReason::UnsupportedVersion);
    }
    let (body, sum) = d.split_at(d.len() - CRC_LEN);
    if crc32fast::hash(body).to_be_bytes() != sum {
        return Some(DropReason::BadChecksum);
    }
    None
}

/// A cursor over frame bytes for the reference walker.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        let end = self.pos.checked_add(usize::try_from(n).ok()?)?;
        (end <= self.bytes.len()).then(|| self.pos = end)
    }

    /// QUIC varint (docs/protocol.md §2).
    fn varint(&mut self) -> Option<u64> {
        let first = self.u8()?;
        let len = 1usize << (first >> 6);
        let mut v = u64::from(first & 0x3f);
        for _ in 1..len {
            v = (v << 8) | u64::from(self.u8()?);
        }
        Some(v)
    }
}

/// What the reference walker makes of the frames of a `Data` packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frames {
    /// Not decodable by the wire format (docs/protocol.md §5, §7, §8): the packet is `Malformed`
    /// whatever the connection's state.
    Invalid,
    /// Decodable; the connection's state may still refuse it (an ACK of an unsent packet, ...).
    WellFormed { disconnect: bool },
}

/// Walks the frames of a `Data` packet following docs/protocol.md §7–§8, independently of the
/// library, checking only what does not depend on the connection's state (besides the agreed
/// channel count and the ACK range limit, which the test knows).
fn walk_frames(frames: &[u8]) -> Frames {
    fn walk(frames: &[u8]) -> Option<bool> {
        if frames.is_empty() {
            return None;
        }
        let mut c = Cursor {
            bytes: frames,
            pos: 0,
        };
        let mut seen_ack = false;
        let mut disconnect = false;
        let mut prev: Option<(u8, u8)> = None;
        while !c.done() {
            let t = c.u8()?;
            if t & 0x80 == 0 {
                match t {
                    // PING, IMMEDIATE_ACK
                    0x01 | 0x04 => {}
                    0x02 => {
                        if seen_ack {
                            return None;
                        }
                        seen_ack = true;
                        c.skip(4)?;
                        c.varint()?;
                        let extra = c.varint()?;
                        c.varint()?;
                        if extra >= MAX_ACK_RANGES {
                            return None;
                        }
                        for _ in 0..extra {
                            c.varint()?;
                            c.varint()?;
                        }
                    }
                    0x03 => {
                        c.u8()?;
                        disconnect = true;
                    }
                    _ => return None,
                }
                continue;
            }
            if t & 0x01 != 0 {
                return None;
            }
            let priority = (t >> 4) & 0x03;
            if priority == 3 {
                return None;
            }
            let channel = if t & 0x08 != 0 {
                c.u8()?
            } else {
                prev.map_or(0, |(ch, _)| ch)
            };
            if channel >= CHANNELS {
                return None;
            }
            let explicit = t & 0x04 != 0;
            if explicit {
                c.skip(8)?;
            } else if prev != Some((channel, priority)) {
                return None;
            }
            if t & 0x02 != 0 {
                let index = c.varint()?;
                let count = c.varint()?;
                if count < 2 || index >= count || !explicit {
                    return None;
                }
            }
            let len = c.varint()?;
            c.skip(len)?;
            prev = Some((channel, priority));
        }
        Some(disconnect)
    }
    match walk(frames) {
        Some(disconnect) => Frames::WellFormed { disconnect },
        None => Frames::Invalid,
    }
}

// ---------------------------------------------------------------------------------------------
// Driving offline nodes by hand, to see (and capture) what they send
// ---------------------------------------------------------------------------------------------

/// One datagram seen on the hand-driven wire.
#[derive(Clone, Debug)]
struct Captured {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
    delivered: bool,
}

/// Processes everything due now for `nodes` (which the harness must not drive: they are
/// offline), exchanging their datagrams over a wire that loses `loss` of them, recording every
/// datagram in `log`. Events and messages go to the nodes' lists as the harness would put them.
fn pump(
    net: &mut Network,
    nodes: &[NodeId],
    rng: &mut ChaCha8Rng,
    loss: f64,
    log: &mut Vec<Captured>,
) {
    let now = net.now();
    let mut buf = vec![0u8; 65_536];
    for _ in 0..10_000 {
        let mut busy = false;
        let mut wire = Vec::new();
        for &i in nodes {
            let node = net.node_mut(i);
            if node.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                node.endpoint.handle_timeout(now);
            }
            while let Some(t) = node.endpoint.poll_transmit(now, &mut buf) {
                wire.push((node.addr, t.destination, buf[..t.size].to_vec()));
            }
            while let Some(e) = node.endpoint.poll_event() {
                node.events.push(e);
                busy = true;
            }
            while let Some(m) = node.endpoint.poll_message() {
                node.messages.push(m);
                busy = true;
            }
        }
        for (from, to, bytes) in wire {
            busy = true;
            let Some(dst) = nodes.iter().copied().find(|&i| net.node(i).addr == to) else {
                continue;
            };
            let delivered = !rng.random_bool(loss);
            if delivered {
                net.node_mut(dst).endpoint.handle(now, from, &bytes);
            }
            log.push(Captured {
                from,
                to,
                bytes,
                delivered,
            });
        }
        if !busy {
            return;
        }
    }
    panic!("the hand-driven wire never went quiet");
}

/// Queues a burst of messages on one random stream (so packets carry runs with implicit
/// sequence numbers), sometimes with a fragmented message.
fn send_burst(net: &mut Network, rng: &mut ChaCha8Rng, node: NodeId, id: ConnectionId) {
    let channel = ChannelId::new(rng.random_range(0..CHANNELS));
    let priority = Priority::ALL[rng.random_range(0..3usize)];
    for _ in 0..rng.random_range(1..6) {
        let reliability = if rng.random_bool(0.7) {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        };
        let len = if rng.random_bool(0.12) {
            rng.random_range(1_400..6_000)
        } else {
            rng.random_range(0..120)
        };
        let mut payload = vec![0u8; len];
        rng.fill(&mut payload[..]);
        net.node_mut(node)
            .endpoint
            .send(id, channel, priority, reliability, payload)
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Mutation
// ---------------------------------------------------------------------------------------------

const INTERESTING_BYTES: [u8; 10] = [0x00, 0x01, 0x03, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xff];
const INTERESTING_U32: [u32; 7] = [
    0,
    1,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x40,
];
const MAX_MUTANT_LEN: usize = 4_000;

/// Applies `count` random mutations to `d`. With `frames_bias`, most of them land after the
/// `Data` header, in the frames.
fn mutate(
    rng: &mut ChaCha8Rng,
    d: &mut Vec<u8>,
    count: usize,
    frames_bias: f64,
    donors: &[Vec<u8>],
) {
    for _ in 0..count {
        let lo = if d.len() > DATA_HEADER && rng.random_bool(frames_bias) {
            DATA_HEADER
        } else {
            0
        };
        let len = d.len();
        let pos = |rng: &mut ChaCha8Rng| rng.random_range(lo..len.max(lo + 1));
        match rng.random_range(0..11) {
            // Bit flip.
            0 if len > lo => {
                let p = pos(rng);
                d[p] ^= 1 << rng.random_range(0..8);
            }
            // Byte replacement: interesting or random.
            1 if len > lo => {
                let p = pos(rng);
                d[p] = if rng.random_bool(0.5) {
                    INTERESTING_BYTES[rng.random_range(0..INTERESTING_BYTES.len())]
                } else {
                    rng.random()
                };
            }
            // Truncation.
            2 => {
                let at = rng.random_range(lo.min(len)..=len);
                d.truncate(at);
            }
            // Extension with random bytes.
            3 => {
                for _ in 0..rng.random_range(1..48) {
                    d.push(rng.random());
                }
            }
            // Duplication of a range somewhere else.
            4 if len > lo => {
                let a = pos(rng);
                let b = rng.random_range(a..=len.min(a + 64));
                let chunk = d[a..b].to_vec();
                let at = rng.random_range(lo..=len);
                d.splice(at..at, chunk);
            }
            // Removal of a range.
            5 if len > lo => {
                let a = pos(rng);
                let b = rng.random_range(a..=len.min(a + 16));
                d.drain(a..b);
            }
            // Two 4-byte fields swapped (ids, packet numbers, sequence numbers...).
            6 if len >= lo + 8 => {
                let a = rng.random_range(lo..=len - 4);
                let b = rng.random_range(lo..=len - 4);
                if a + 4 <= b || b + 4 <= a {
                    for k in 0..4 {
                        d.swap(a + k, b + k);
                    }
                }
            }
            // Splice: the frames of another packet appended (new frame sequences, implicit
            // contexts across packets).
            7 => {
                let donor = &donors[rng.random_range(0..donors.len())];
                if donor.len() > DATA_HEADER + CRC_LEN {
                    let frames = &donor[DATA_HEADER..donor.len() - CRC_LEN];
                    let a = rng.random_range(0..frames.len());
                    d.extend_from_slice(&frames[a..]);
                }
            }
            // Varint length class changed (the two high bits of a byte).
            8 if len > lo => {
                let p = pos(rng);
                d[p] ^= [0x40, 0x80, 0xc0][rng.random_range(0..3usize)];
            }
            // A 4-byte field set to an edge value.
            9 if len >= lo + 4 => {
                let p = rng.random_range(lo..=len - 4);
                let v = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
                d[p..p + 4].copy_from_slice(&v.to_be_bytes());
            }
            // Small arithmetic change of a byte (lengths, counts, indices).
            10 if len > lo => {
                let p = pos(rng);
                d[p] = d[p].wrapping_add(
                    rng.random_range(1..8u8)
                        .wrapping_mul(if rng.random_bool(0.5) { 1 } else { 255 }),
                );
            }
            _ => {}
        }
        d.truncate(MAX_MUTANT_LEN);
    }
}

fn random_addr(rng: &mut ChaCha8Rng) -> SocketAddr {
    let ip = if rng.random_bool(0.2) {
        IpAddr::V6(Ipv6Addr::from(rng.random::<u128>()))
    } else {
        // 10.0.0.0/8: never one of the harness's 198.18.0.0/15 nodes.
        IpAddr::V4(Ipv4Addr::from(
            0x0A00_0000 | (rng.random::<u32>() & 0x00ff_ffff),
        ))
    };
    SocketAddr::new(ip, rng.random_range(1..=u16::MAX))
}

/// Handshake packets written by hand (docs/protocol.md §4), as mutation seeds.
fn handshake_seeds(rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
    let limits = [8, 0, 0x10, 0, 0, 0x05, 0x5C, 0, 0x40, 0, 0];
    let mut seeds = Vec::new();
    for cookie in [[0u8; 20], rng.random()] {
        let mut d = vec![0xCA, 0x77, 1, 1];
        d.extend_from_slice(&rng.random::<u32>().to_be_bytes());
        d.extend_from_slice(&cookie);
        d.extend_from_slice(&limits);
        d.extend_from_slice(&[0, 4, 0, 0, 0, 1]);
        seeds.push(seal(d));
    }
    let mut challenge = vec![0xCA, 0x77, 1, 2];
    challenge.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    challenge.extend_from_slice(&rng.random::<[u8; 20]>());
    seeds.push(seal(challenge));
    let mut accept = vec![0xCA, 0x77, 1, 3];
    accept.extend_from_slice(&rng.random::<u64>().to_be_bytes());
    accept.extend_from_slice(&limits);
    accept.extend_from_slice(&[0, 4, 0, 0, 0, 1]);
    seeds.push(seal(accept));
    let mut reject = vec![0xCA, 0x77, 1, 4];
    reject.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    reject.extend_from_slice(&[8, 0, 2, 0xAB, 0xCD]);
    seeds.push(seal(reject));
    seeds
}

// ---------------------------------------------------------------------------------------------
// Accounting
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Dropped with exactly this reason.
    Reason(DropReason),
    /// Dropped, any reason.
    Dropped,
    /// May be applied (the victim's valid-looking mutants).
    Anything,
}

#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    applied: u64,
    reasons: BTreeMap<DropReason, u64>,
}

/// The reason counted by one `handle` call, `None` if nothing was counted.
fn counted(before: &DropCounters, after: &DropCounters) -> Option<DropReason> {
    assert!(
        after.total() <= before.total() + 1,
        "one datagram counted as {} drops",
        after.total() - before.total()
    );
    DropReason::ALL
        .iter()
        .copied()
        .find(|&r| after.get(r) > before.get(r))
}

fn no_end_of_connection(events: &[Event], id: ConnectionId) -> bool {
    !events.iter().any(|e| {
        matches!(e, Event::Disconnect { id: i, .. } | Event::FailedToConnect { id: i, .. } if *i == id)
    })
}

// ---------------------------------------------------------------------------------------------
// The million-datagram test
// ---------------------------------------------------------------------------------------------

#[test]
fn a_million_hostile_datagrams_leave_the_connection_intact() {
    // `CARRIER_SIM_SEED` replays or explores another run without changing code.
    let seed = carrier_sim::seed_from_env().unwrap_or(SEED);
    eprintln!("fuzz seed {seed:#x}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 101);
    let client = net.add_node(EndpointConfig::default(), 102);
    let victim = net.add_node(EndpointConfig::default(), 103);
    let (server_addr, client_addr, victim_addr) = (
        net.node(server).addr,
        net.node(client).addr,
        net.node(victim).addr,
    );

    // 1. Both peers connect over the harness (perfect wire).
    let cid = net.connect(client, server).unwrap();
    let vid = net.connect(victim, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| {
        n.is_connected(client, cid)
            && n.is_connected(victim, vid)
            && n.connection_to(server, client)
                .is_some_and(|s| n.is_connected(server, s))
            && n.connection_to(server, victim)
                .is_some_and(|s| n.is_connected(server, s))
    }));
    let sid = net.connection_to(server, client).unwrap();
    let svid = net.connection_to(server, victim).unwrap();

    // 2. Capture: the harness stops driving the three nodes; this test drives them over a wire
    //    of its own that loses 10 % of the datagrams (so ACKs carry several ranges and reliable
    //    frames are resent), with traffic both ways on every kind of stream, and records every
    //    datagram. The harness clock still moves time.
    let nodes = [server, client, victim];
    for &n in &nodes {
        net.node_mut(n).online = false;
    }
    let mut log = Vec::new();
    let senders = [(client, cid), (victim, vid), (server, sid), (server, svid)];
    for tick in 0..4_000 {
        if tick < 2_400 && tick % 8 == 0 {
            for &(node, id) in &senders {
                if rng.random_bool(0.6) {
                    send_burst(&mut net, &mut rng, node, id);
                }
            }
        }
        pump(&mut net, &nodes, &mut rng, 0.1, &mut log);
        net.run_for(Duration::from_micros(500));
    }
    for (node, id) in [(client, cid), (victim, vid), (server, sid), (server, svid)] {
        let conn = net.node(node).endpoint.connection(id).unwrap();
        assert!(conn.is_connected(), "capture broke {id} of node {node}");
        assert_eq!(conn.queued_messages(), 0, "capture traffic was all sent");
    }
    let from_client: Vec<&Captured> = log
        .iter()
        .filter(|c| c.from == client_addr && c.to == server_addr && is_data(&c.bytes))
        .collect();
    let from_victim: Vec<&Captured> = log
        .iter()
        .filter(|c| c.from == victim_addr && c.to == server_addr && is_data(&c.bytes))
        .collect();
    assert!(
        from_client.len() > 200 && from_victim.len() > 200,
        "capture too small: {} and {} of {}",
        from_client.len(),
        from_victim.len(),
        log.len()
    );
    let client_id = dest_id(&from_client[0].bytes);
    let victim_id = dest_id(&from_victim[0].bytes);
    assert!(from_client.iter().all(|c| dest_id(&c.bytes) == client_id));
    assert_ne!(client_id, victim_id);
    // The client's packets the server received: replaying one of their numbers is a duplicate.
    let client_seeds: Vec<Vec<u8>> = from_client
        .iter()
        .filter(|c| c.delivered)
        .map(|c| c.bytes.clone())
        .collect();
    let received_pns: Vec<u32> = client_seeds.iter().map(|d| packet_number(d)).collect();
    let fresh_base = from_client
        .iter()
        .map(|c| packet_number(&c.bytes))
        .max()
        .unwrap()
        + 100_000;
    let mut victim_pn = from_victim
        .iter()
        .map(|c| packet_number(&c.bytes))
        .max()
        .unwrap()
        + 1;
    let data_seeds: Vec<Vec<u8>> = log
        .iter()
        .filter(|c| is_data(&c.bytes))
        .map(|c| c.bytes.clone())
        .collect();
    let mut all_seeds = data_seeds.clone();
    all_seeds.extend(handshake_seeds(&mut rng));

    // 3. Fuzz. The client and the server are driven by the harness again (keep-alives flow);
    //    the victim stays silent, its connection on the server kept alive only by the mutants.
    net.node_mut(server).online = true;
    net.node_mut(client).online = true;
    for &n in &nodes {
        net.node_mut(n).messages.clear();
    }
    // Reliable data in flight to the silent victim, so forged ACKs acknowledge real frames
    // (and the server keeps resending the rest).
    for _ in 0..40 {
        send_burst(&mut net, &mut rng, server, svid);
    }
    let client_drops_before = net.node(client).endpoint.drops().clone();
    let server_drops_before = net.node(server).endpoint.drops().total();
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut excluded_disconnects = 0u64;
    let mut dropped_total = 0u64;
    let fuzz_start = net.now();
    for i in 0..DATAGRAMS {
        let roll = rng.random_range(0..100);
        let (kind, from, bytes, expect) = match roll {
            // Pure random bytes of random lengths, mostly from random addresses.
            0..20 => {
                let len = rng.random_range(0..2_000);
                let mut d = vec![0u8; len];
                rng.fill(&mut d[..]);
                // Some with the magic (and the version), so the later checks are reached too.
                if len >= 2 && rng.random_bool(0.3) {
                    d[..2].copy_from_slice(&MAGIC);
                    if len >= 3 && rng.random_bool(0.5) {
                        d[2] = VERSION;
                    }
                }
                let from = if rng.random_bool(0.9) {
                    random_addr(&mut rng)
                } else {
                    client_addr
                };
                let expect = header_verdict(&d).map_or(Expect::Dropped, Expect::Reason);
                ("random bytes", from, d, expect)
            }
            // A valid header and checksum around random contents: the packet parsers.
            20..28 => {
                let t = if rng.random_bool(0.8) {
                    rng.random_range(1..=5)
                } else {
                    rng.random()
                };
                let mut d = vec![MAGIC[0], MAGIC[1], VERSION, t];
                for _ in 0..rng.random_range(0..300) {
                    d.push(rng.random());
                }
                let expect = if (1..=5).contains(&t) {
                    Expect::Dropped
                } else {
                    Expect::Reason(DropReason::UnknownPacketType)
                };
                ("sealed random body", random_addr(&mut rng), seal(d), expect)
            }
            // Captured datagrams mutated without fixing the checksum (0 mutations: a replay).
            28..45 => {
                let (from, mut d) = if rng.random_bool(0.5) {
                    (
                        client_addr,
                        client_seeds[rng.random_range(0..client_seeds.len())].clone(),
                    )
                } else {
                    (
                        random_addr(&mut rng),
                        all_seeds[rng.random_range(0..all_seeds.len())].clone(),
                    )
                };
                let count = rng.random_range(0..=4);
                mutate(&mut rng, &mut d, count, 0.3, &data_seeds);
                let expect = header_verdict(&d).map_or(Expect::Dropped, Expect::Reason);
                ("unsealed mutant", from, d, expect)
            }
            // Re-sealed mutants from random addresses: no connection, no cookie.
            45..60 => {
                let mut d = unseal(&all_seeds[rng.random_range(0..all_seeds.len())]);
                let count = rng.random_range(1..=4);
                mutate(&mut rng, &mut d, count, 0.5, &data_seeds);
                (
                    "re-sealed, random address",
                    random_addr(&mut rng),
                    seal(d),
                    Expect::Dropped,
                )
            }
            // Handshake packets from the client's address: a connected acceptor has no use
            // for them.
            60..62 => {
                let seeds = &all_seeds[data_seeds.len()..];
                let mut d = unseal(&seeds[rng.random_range(0..seeds.len())]);
                let count = rng.random_range(0..=2);
                mutate(&mut rng, &mut d, count, 0.0, &data_seeds);
                (
                    "client: handshake packet",
                    client_addr,
                    seal(d),
                    Expect::Dropped,
                )
            }
            // Re-sealed mutants of the client's packets from the client's address: they must
            // all be dropped, each for the reason the module documentation gives.
            62..80 => {
                let mut d = unseal(&client_seeds[rng.random_range(0..client_seeds.len())]);
                let count = rng.random_range(1..=4);
                mutate(&mut rng, &mut d, count, 0.85, &data_seeds);
                let intact = d.len() >= DATA_HEADER
                    && d[..4] == [MAGIC[0], MAGIC[1], VERSION, TYPE_DATA]
                    && d[4..8] == client_id;
                if intact {
                    match walk_frames(&d[DATA_HEADER..]) {
                        Frames::Invalid => {
                            let pn = fresh_base + rng.random_range(0..1_000_000);
                            d[8..12].copy_from_slice(&pn.to_be_bytes());
                            (
                                "client: invalid frames, fresh pn",
                                client_addr,
                                seal(d),
                                Expect::Reason(DropReason::Malformed),
                            )
                        }
                        Frames::WellFormed { .. } => {
                            let pn = received_pns[rng.random_range(0..received_pns.len())];
                            d[8..12].copy_from_slice(&pn.to_be_bytes());
                            (
                                "client: well-formed, received pn",
                                client_addr,
                                seal(d),
                                Expect::Reason(DropReason::Duplicate),
                            )
                        }
                    }
                } else {
                    (
                        "client: header mutated",
                        client_addr,
                        seal(d),
                        Expect::Dropped,
                    )
                }
            }
            // Re-sealed mutants of any packet from the victim's address, with its connection
            // id and fresh packet numbers: they reach the frame parser and, when valid, the
            // connection.
            _ => loop {
                let mut d = unseal(&data_seeds[rng.random_range(0..data_seeds.len())]);
                let count = rng.random_range(1..=4);
                mutate(&mut rng, &mut d, count, 0.85, &data_seeds);
                if d.len() >= DATA_HEADER && rng.random_bool(0.9) {
                    d[..4].copy_from_slice(&[MAGIC[0], MAGIC[1], VERSION, TYPE_DATA]);
                    d[4..8].copy_from_slice(&victim_id);
                    // Mostly the next number; sometimes a jump ahead (which the counter
                    // follows, or the server's floor would soon be above it) or an old one.
                    let pn = match rng.random_range(0..100) {
                        0..95 => victim_pn.wrapping_add(1),
                        95..99 => victim_pn.wrapping_add(rng.random_range(2..5_000)),
                        _ => victim_pn.wrapping_sub(rng.random_range(0..5_000)),
                    };
                    if pn.wrapping_sub(victim_pn) < 1 << 31 {
                        victim_pn = pn;
                    }
                    d[8..12].copy_from_slice(&pn.to_be_bytes());
                }
                let disconnect = d.len() >= DATA_HEADER
                    && d[..4] == [MAGIC[0], MAGIC[1], VERSION, TYPE_DATA]
                    && walk_frames(&d[DATA_HEADER..]) == Frames::WellFormed { disconnect: true };
                // In the last tenth, a DISCONNECT may close the victim's connection: the
                // closing and removal paths get their share of hostile input too.
                if disconnect && i < DATAGRAMS * 9 / 10 {
                    excluded_disconnects += 1;
                    continue;
                }
                break ("victim", victim_addr, seal(d), Expect::Anything);
            },
        };

        let now = net.now();
        let before = net.node(server).endpoint.drops().clone();
        net.node_mut(server).endpoint.handle(now, from, &bytes);
        let reason = counted(&before, net.node(server).endpoint.drops());
        match (expect, reason) {
            (Expect::Reason(want), got) => assert_eq!(
                got,
                Some(want),
                "datagram {i} ({kind}) from {from}: {bytes:02x?}"
            ),
            (Expect::Dropped, got) => assert!(
                got.is_some(),
                "datagram {i} ({kind}) from {from} was applied: {bytes:02x?}"
            ),
            (Expect::Anything, _) => {}
        }
        if kind == "victim"
            && reason.is_none()
            && is_data(&bytes)
            && dest_id(&bytes) == victim_id
            && packet_number(&bytes).wrapping_sub(victim_pn) < 1 << 31
        {
            // Applied with a number ahead of the counter (a mutated one): follow it, or the
            // server would take most later numbers for old ones.
            victim_pn = packet_number(&bytes);
        }
        let tally = tallies.entry(kind).or_default();
        tally.sent += 1;
        match reason {
            Some(r) => {
                *tally.reasons.entry(r).or_default() += 1;
                dropped_total += 1;
            }
            None => tally.applied += 1,
        }

        // A few microseconds of virtual time; the harness drains the server's outputs.
        net.run_for(Duration::from_micros(rng.random_range(1..=5)));

        if i % 10_000 == 9_999 {
            let sizes = net.node(server).endpoint.table_sizes();
            assert!(sizes.connections <= 2, "datagram {i}: {sizes:?}");
            assert!(sizes.addresses <= 2, "datagram {i}: {sizes:?}");
            assert!(sizes.stateless_replies <= 256, "datagram {i}: {sizes:?}");
            assert!(
                sizes.events <= 16 && sizes.messages <= 4_096,
                "datagram {i}: {sizes:?}"
            );
            // Nothing forged was applied to the client's connection: it delivers nothing (the
            // client sends nothing during the fuzz).
            let server_node = net.node_mut(server);
            assert!(
                server_node.messages.iter().all(|(id, _)| *id != sid),
                "datagram {i}: a forged message was delivered on the client's connection"
            );
            server_node.messages.clear();
            assert!(net.is_connected(server, sid), "datagram {i}");
            assert!(net.is_connected(client, cid), "datagram {i}");
            if let Some(conn) = net.node(server).endpoint.connection(svid) {
                let cfg = EndpointConfig::default();
                let bound = cfg.receive_window
                    + cfg.unreliable_reassembly_budget
                    + 2 * cfg.max_message_size;
                assert!(
                    conn.buffered_receive_bytes() <= bound,
                    "datagram {i}: the victim's connection buffers {} bytes",
                    conn.buffered_receive_bytes()
                );
            }
        }
    }
    let fuzz_time = net.now() - fuzz_start;

    for (kind, t) in &tallies {
        eprintln!(
            "{kind:36} sent {:7}  applied {:7}  dropped {:?}",
            t.sent, t.applied, t.reasons
        );
    }
    eprintln!(
        "victim mutants not sent (well-formed DISCONNECT): {excluded_disconnects}; victim's \
         connection at the end: {:?}; virtual time {fuzz_time:?}",
        net.node(server)
            .endpoint
            .connection(svid)
            .map(|c| c.state())
    );

    // 4. Drop accounting: every rejected datagram was counted once, with its reason, and every
    //    reason the input can produce was seen.
    let server_drops = net.node(server).endpoint.drops().clone();
    assert_eq!(
        server_drops.total() - server_drops_before,
        dropped_total,
        "drops counted outside the hostile datagrams: {server_drops:?}"
    );
    for reason in [
        DropReason::TooShort,
        DropReason::BadMagic,
        DropReason::UnsupportedVersion,
        DropReason::BadChecksum,
        DropReason::UnknownPacketType,
        DropReason::Malformed,
        DropReason::UnknownConnection,
        DropReason::InvalidCookie,
        DropReason::Duplicate,
        DropReason::Unexpected,
    ] {
        assert!(
            server_drops.get(reason) > 0,
            "no {reason:?} drop: {server_drops:?}"
        );
    }
    let random = &tallies["random bytes"];
    assert!(
        random.reasons[&DropReason::BadMagic] > random.sent / 2,
        "random bytes are mostly BadMagic: {random:?}"
    );
    let invalid = &tallies["client: invalid frames, fresh pn"];
    assert!(
        invalid.sent > 50_000,
        "the frame parser was reached: {invalid:?}"
    );
    let victim_tally = &tallies["victim"];
    assert!(
        victim_tally.applied > victim_tally.sent / 20,
        "valid mutants reached the victim's connection: {victim_tally:?}"
    );
    assert!(
        victim_tally
            .reasons
            .get(&DropReason::Malformed)
            .copied()
            .unwrap_or(0)
            > victim_tally.sent / 20
    );

    // 5. The client's connection never noticed, except as security events.
    // (A forged connect request from the client's address earns the client a challenge, which
    // it drops as `Unexpected`; any other drop would mean the server's packets were disturbed,
    // e.g. by an ACK of a packet number the client never sent.)
    let client_drops = net.node(client).endpoint.drops();
    for reason in DropReason::ALL {
        if reason != DropReason::Unexpected {
            assert_eq!(
                client_drops.get(reason),
                client_drops_before.get(reason),
                "the client dropped packets from the server ({reason:?}): {client_drops:?}"
            );
        }
    }
    assert!(no_end_of_connection(&net.node(client).events, cid));
    assert!(no_end_of_connection(&net.node(server).events, sid));
    let security = net
        .node(server)
        .events
        .iter()
        .filter(|e| matches!(e, Event::SecurityError { id, .. } if *id == sid))
        .count();
    assert!(
        security >= 1,
        "drops from the client's address are reported"
    );
    assert!(
        security as u64 <= fuzz_time.as_secs() + 2,
        "security events are rate limited: {security}"
    );
    assert!(net.node(client).messages.is_empty());

    // 6. It still delivers: 100 reliable messages each way, in order.
    for k in 0..100u32 {
        let payload = |side: u32| {
            let mut p = vec![side as u8; 16 + (k as usize * 97) % 3_000];
            p[..4].copy_from_slice(&k.to_be_bytes());
            p
        };
        net.node_mut(client)
            .endpoint
            .send(
                cid,
                ChannelId::new((k % 8) as u8),
                Priority::Normal,
                Reliability::Reliable,
                payload(1),
            )
            .unwrap();
        net.node_mut(server)
            .endpoint
            .send(
                sid,
                ChannelId::new(0),
                Priority::High,
                Reliability::Reliable,
                payload(2),
            )
            .unwrap();
    }
    net.node_mut(server).messages.clear();
    assert!(
        net.run_until(Duration::from_secs(5), |n| {
            n.node(server)
                .messages
                .iter()
                .filter(|(id, _)| *id == sid)
                .count()
                == 100
                && n.node(client).messages.len() == 100
        }),
        "after the fuzz: {} messages reached the server, {} the client",
        net.node(server).messages.len(),
        net.node(client).messages.len()
    );
    let at_server: Vec<u32> = net
        .node(server)
        .messages
        .iter()
        .filter(|(id, _)| *id == sid)
        .map(|(_, m)| u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
        .collect();
    let mut sorted = at_server.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>(), "each message once");
    for channel in 0..8u32 {
        let order: Vec<u32> = at_server
            .iter()
            .copied()
            .filter(|k| k % 8 == channel)
            .collect();
        assert!(order.is_sorted(), "in order per channel: {order:?}");
    }
    for (k, (id, m)) in net.node(client).messages.iter().enumerate() {
        assert_eq!(*id, cid);
        assert_eq!(&m.payload[..4], &(k as u32).to_be_bytes(), "in order");
        assert_eq!(m.payload.len(), 16 + (k * 97) % 3_000);
        assert!(m.payload[4..].iter().all(|&b| b == 2));
    }
    let sizes = net.node(server).endpoint.table_sizes();
    assert!(sizes.connections <= 2 && sizes.addresses <= 2, "{sizes:?}");
}

// ---------------------------------------------------------------------------------------------
// Proptest: arbitrary datagrams
// ---------------------------------------------------------------------------------------------

/// A datagram as the proptest draws it; `Data` packets get the real connection id when fed to
/// the connected endpoint.
#[derive(Clone, Debug)]
enum Input {
    Raw(Vec<u8>),
    Sealed(u8, Vec<u8>),
    Data {
        near: bool,
        pn: u32,
        frames: Vec<u8>,
    },
}

fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    let varint = 0u8..64;
    prop_oneof![
        Just(vec![0x01]),
        (any::<u8>()).prop_map(|r| vec![0x03, r]),
        (
            any::<u32>(),
            varint.clone(),
            0u8..4,
            varint.clone(),
            proptest::collection::vec(0u8..64, 0..8)
        )
            .prop_map(|(largest, delay, extra, first, gaps)| {
                let mut f = vec![0x02];
                f.extend_from_slice(&largest.to_be_bytes());
                f.extend_from_slice(&[delay, extra, first]);
                f.extend_from_slice(&gaps);
                f
            }),
        (
            0x80u8..=0xff,
            0u8..10,
            any::<(u32, u32)>(),
            (0u8..5, 0u8..5),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(flags, channel, (s, r), (index, count), payload)| {
                let mut f = vec![flags];
                if flags & 0x08 != 0 {
                    f.push(channel);
                }
                if flags & 0x04 != 0 {
                    f.extend_from_slice(&s.to_be_bytes());
                    f.extend_from_slice(&r.to_be_bytes());
                }
                if flags & 0x02 != 0 {
                    f.extend_from_slice(&[index, count]);
                }
                f.push(payload.len() as u8);
                f.extend_from_slice(&payload);
                f
            }),
        proptest::collection::vec(any::<u8>(), 1..16),
    ]
}

fn input_strategy() -> impl Strategy<Value = Input> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2_000).prop_map(Input::Raw),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..120))
            .prop_map(|(t, b)| Input::Sealed(t % 8, b)),
        (
            any::<bool>(),
            any::<u32>(),
            proptest::collection::vec(frame_strategy(), 0..6)
        )
            .prop_map(|(near, pn, frames)| Input::Data {
                near,
                pn,
                frames: frames.concat()
            }),
    ]
}

impl Input {
    fn bytes(&self, id: [u8; 4], base_pn: u32) -> Vec<u8> {
        match self {
            Input::Raw(b) => b.clone(),
            Input::Sealed(t, b) => {
                let mut d = vec![MAGIC[0], MAGIC[1], VERSION, *t];
                d.extend_from_slice(b);
                seal(d)
            }
            Input::Data { near, pn, frames } => {
                let pn = if *near {
                    base_pn.wrapping_add(pn % 64)
                } else {
                    *pn
                };
                let mut d = vec![MAGIC[0], MAGIC[1], VERSION, TYPE_DATA];
                d.extend_from_slice(&id);
                d.extend_from_slice(&pn.to_be_bytes());
                d.extend_from_slice(frames);
                seal(d)
            }
        }
    }
}

/// A server with one connected client; returns the server-side connection id on the wire and
/// the next packet number the client would use.
fn connected_server(seed: u64) -> (Network, NodeId, NodeId, [u8; 4], u32) {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), seed);
    let client = net.add_node(EndpointConfig::default(), seed + 1);
    let cid = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(1), |n| {
        n.is_connected(client, cid)
            && n.connection_to(server, client)
                .is_some_and(|s| n.is_connected(server, s))
    }));
    // One message by hand, to read the id the client's packets carry.
    net.node_mut(server).online = false;
    net.node_mut(client).online = false;
    net.node_mut(client)
        .endpoint
        .send(
            cid,
            ChannelId::new(0),
            Priority::Normal,
            Reliability::Reliable,
            &b"hi"[..],
        )
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut log = Vec::new();
    pump(&mut net, &[server, client], &mut rng, 0.0, &mut log);
    let to_server = log
        .iter()
        .find(|c| c.to == net.node(server).addr && is_data(&c.bytes))
        .expect("a data packet");
    let id = dest_id(&to_server.bytes);
    let pn = packet_number(&to_server.bytes).wrapping_add(1);
    net.node_mut(server).online = true;
    net.node_mut(client).online = true;
    (net, server, client, id, pn)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_datagrams_never_panic(
        inputs in proptest::collection::vec(input_strategy(), 1..24),
        seed in 0u64..1_000,
    ) {
        // A fresh endpoint: nothing can be applied, everything is counted, no state is kept.
        let (mut net, server, client, id, base_pn) = connected_server(seed * 2 + 1);
        let now = net.now();
        let mut fresh = Endpoint::new(EndpointConfig::default(), now, seed).unwrap();
        let stranger: SocketAddr = "192.0.2.7:4242".parse().unwrap();
        let mut buf = vec![0u8; 65_536];
        for (k, input) in inputs.iter().enumerate() {
            let bytes = input.bytes(id, base_pn);
            let before = fresh.drops().total();
            fresh.handle(now, stranger, &bytes);
            prop_assert_eq!(fresh.drops().total(), before + 1, "input {} not counted: {:?}", k, input);
            while let Some(t) = fresh.poll_transmit(now, &mut buf) {
                prop_assert!(t.size <= bytes.len(), "amplification");
            }
            let sizes = fresh.table_sizes();
            prop_assert_eq!((sizes.connections, sizes.addresses, sizes.events, sizes.messages), (0, 0, 0, 0));
        }

        // An endpoint with a connection, from the peer's address (with the connection's id)
        // and from a stranger: no panic, at most one drop per datagram, no new connection.
        let client_addr = net.node(client).addr;
        for input in &inputs {
            let bytes = input.bytes(id, base_pn);
            for from in [client_addr, stranger] {
                let now = net.now();
                let endpoint = &mut net.node_mut(server).endpoint;
                let before = endpoint.drops().clone();
                endpoint.handle(now, from, &bytes);
                counted(&before, endpoint.drops());
                let sizes = endpoint.table_sizes();
                prop_assert!(sizes.connections <= 1 && sizes.addresses <= 1, "{:?}", sizes);
                net.run_for(Duration::from_micros(50));
            }
        }
        net.run_for(Duration::from_millis(20));
        let sizes = net.node(server).endpoint.table_sizes();
        prop_assert!(sizes.connections <= 1, "{:?}", sizes);
    }
}
