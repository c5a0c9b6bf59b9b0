//! In-process test harness: N endpoints joined by `carrier-sim` links, driven by a virtual
//! clock (feature `testing`).
//!
//! A [`Network`] owns the endpoints ([`Node`]s) and the links. Every ordered pair of nodes can be
//! routed through a [`carrier_sim::Link`]; several pairs can share one link, which makes a common
//! bottleneck. Pairs without a route are joined by a perfect, zero-delay wire. Time only moves
//! when nothing is due: [`Network::step`] jumps to the next deadline of any endpoint or link, so
//! seconds of simulated traffic take milliseconds, and the same seeds always give the same run
//! ([`Network::transcript_hash`]).
//!
//! ```
//! use std::time::Duration;
//! use carrier_proto::testing::Network;
//! use carrier_proto::{ChannelId, EndpointConfig, Priority, Reliability};
//! use carrier_sim::LinkConfig;
//!
//! let mut net = Network::new();
//! let server = net.add_node(EndpointConfig::default(), 1);
//! let client = net.add_node(EndpointConfig::default(), 2);
//! net.route_both(client, server, LinkConfig::new().with_fixed_latency_ms(20.0), 7).unwrap();
//! let id = net.connect(client, server).unwrap();
//! assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
//! net.node_mut(client)
//!     .endpoint
//!     .send(id, ChannelId::new(0), Priority::Normal, Reliability::Reliable, &b"ping"[..])
//!     .unwrap();
//! assert!(net.run_until(Duration::from_secs(2), |n| !n.node(server).messages.is_empty()));
//! assert_eq!(&net.node(server).messages[0].1.payload[..], b"ping");
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use carrier_sim::{ConfigError as SimConfigError, Datagram, Link, LinkConfig};

use crate::{ConnectError, ConnectionId, Endpoint, EndpointConfig, Event, Handshake, Message};

/// Index of a node in a [`Network`].
pub type NodeId = usize;
/// Index of a link in a [`Network`].
pub type LinkId = usize;

/// One endpoint of the network, with what it reported.
#[derive(Debug)]
pub struct Node {
    /// Its address (198.18.0.N:9000, from the benchmarking range).
    pub addr: SocketAddr,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Every event it reported, in order.
    pub events: Vec<Event>,
    /// Every message it delivered, in order.
    pub messages: Vec<(ConnectionId, Message)>,
    /// When false, the node is neither driven nor reachable (a vanished peer).
    pub online: bool,
}

/// A simulated network of endpoints and links with a virtual clock.
#[derive(Debug)]
pub struct Network {
    epoch: Instant,
    now: Instant,
    nodes: Vec<Node>,
    links: Vec<Link>,
    routes: BTreeMap<(NodeId, NodeId), LinkId>,
    perfect: VecDeque<Datagram>,
    buf: Vec<u8>,
    hash: u64,
    datagrams: u64,
}

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(FNV_PRIME);
    }
}

impl Network {
    /// An empty network whose clock starts now (the one real clock read of a test).
    #[allow(clippy::disallowed_methods)] // the epoch of the virtual clock; only durations are added to it
    pub fn new() -> Self {
        Self::with_epoch(Instant::now())
    }

    /// An empty network whose clock starts at `epoch`.
    pub fn with_epoch(epoch: Instant) -> Self {
        Network {
            epoch,
            now: epoch,
            nodes: Vec::new(),
            links: Vec::new(),
            routes: BTreeMap::new(),
            perfect: VecDeque::new(),
            buf: vec![0; 65_536],
            hash: FNV_OFFSET,
            datagrams: 0,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time elapsed since the network was created.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// Adds an endpoint with the default handshake; `seed` feeds its random choices.
    ///
    /// # Panics
    /// If `config` is invalid (a test bug).
    pub fn add_node(&mut self, config: EndpointConfig, seed: u64) -> NodeId {
        let endpoint = Endpoint::new(config, self.now, seed).expect("valid test configuration");
        self.push_node(endpoint)
    }

    /// Adds an endpoint with a custom handshake.
    ///
    /// # Panics
    /// If `config` is invalid (a test bug).
    pub fn add_node_with_handshake(
        &mut self,
        config: EndpointConfig,
        handshake: Box<dyn Handshake>,
        seed: u64,
    ) -> NodeId {
        let endpoint = Endpoint::with_handshake(config, handshake, self.now, seed)
            .expect("valid test configuration");
        self.push_node(endpoint)
    }

    fn push_node(&mut self, endpoint: Endpoint) -> NodeId {
        let n = self.nodes.len();
        let ip = Ipv4Addr::new(198, 18, (n / 250) as u8, (n % 250 + 1) as u8);
        self.nodes.push(Node {
            addr: SocketAddr::new(IpAddr::V4(ip), 9000),
            endpoint,
            events: Vec::new(),
            messages: Vec::new(),
            online: true,
        });
        n
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// A node, mutably (to send, disconnect, take its messages...).
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Adds a link; route pairs of nodes through it with [`Network::route`].
    pub fn add_link(&mut self, config: LinkConfig, seed: u64) -> Result<LinkId, SimConfigError> {
        self.links.push(Link::new(config, seed)?);
        Ok(self.links.len() - 1)
    }

    /// A link (for its statistics).
    pub fn link(&self, id: LinkId) -> &Link {
        &self.links[id]
    }

    /// A link, mutably (to change its configuration at runtime).
    pub fn link_mut(&mut self, id: LinkId) -> &mut Link {
        &mut self.links[id]
    }

    /// Sends datagrams from `from` to `to` through `link`.
    pub fn route(&mut self, from: NodeId, to: NodeId, link: LinkId) {
        self.routes.insert((from, to), link);
    }

    /// Creates one link per direction between `a` and `b` with the same configuration (seeds
    /// `seed` and `seed + 1`). Returns (a→b, b→a).
    pub fn route_both(
        &mut self,
        a: NodeId,
        b: NodeId,
        config: LinkConfig,
        seed: u64,
    ) -> Result<(LinkId, LinkId), SimConfigError> {
        let ab = self.add_link(config.clone(), seed)?;
        let ba = self.add_link(config, seed.wrapping_add(1))?;
        self.route(a, b, ab);
        self.route(b, a, ba);
        Ok((ab, ba))
    }

    /// `from` starts connecting to `to`.
    pub fn connect(&mut self, from: NodeId, to: NodeId) -> Result<ConnectionId, ConnectError> {
        let addr = self.nodes[to].addr;
        let now = self.now;
        self.nodes[from].endpoint.connect(now, addr)
    }

    /// Whether connection `id` of `node` is connected.
    pub fn is_connected(&self, node: NodeId, id: ConnectionId) -> bool {
        self.nodes[node]
            .endpoint
            .connection(id)
            .is_some_and(|c| c.is_connected())
    }

    /// The connection of `node` whose peer is `peer`, if any.
    pub fn connection_to(&self, node: NodeId, peer: NodeId) -> Option<ConnectionId> {
        self.nodes[node]
            .endpoint
            .connection_by_addr(self.nodes[peer].addr)
    }

    fn node_by_addr(&self, addr: SocketAddr) -> Option<NodeId> {
        // Addresses are assigned densely from the node index.
        let SocketAddr::V4(a) = addr else { return None };
        let [_, _, hi, lo] = a.ip().octets();
        let n = usize::from(hi) * 250 + usize::from(lo).checked_sub(1)?;
        (n < self.nodes.len() && self.nodes[n].addr == addr).then_some(n)
    }

    /// Hash of every datagram (time, addresses, bytes) and event so far: equal for equal runs.
    pub fn transcript_hash(&self) -> u64 {
        self.hash
    }

    /// Datagrams handed to links or the perfect wire so far.
    pub fn datagrams_sent(&self) -> u64 {
        self.datagrams
    }

    /// Processes everything due at the current instant, then advances the clock to the next
    /// deadline (at most `max_advance` ahead). Returns false when nothing is pending at all.
    pub fn step(&mut self, max_advance: Duration) -> bool {
        // Everything due now, until quiet (bounded so a livelock cannot hang a test).
        for _ in 0..10_000 {
            if !self.process_instant() {
                break;
            }
        }
        match self.next_deadline() {
            Some(t) if t > self.now => {
                self.now = t.min(self.now + max_advance);
                true
            }
            // Something is due now but produced nothing: let a microsecond pass.
            Some(_) => {
                self.now += Duration::from_micros(1);
                true
            }
            None => {
                self.now += max_advance;
                false
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let endpoints = self
            .nodes
            .iter()
            .filter(|n| n.online)
            .filter_map(|n| n.endpoint.poll_timeout());
        let links = self.links.iter().filter_map(Link::poll_timeout);
        let perfect = (!self.perfect.is_empty()).then_some(self.now);
        endpoints.chain(links).chain(perfect).min()
    }

    /// One pass at the current instant; true if anything happened.
    fn process_instant(&mut self) -> bool {
        let now = self.now;
        let mut busy = false;
        // Deliver due datagrams.
        let mut arrived: Vec<Datagram> = self.perfect.drain(..).collect();
        for link in &mut self.links {
            while let Some(d) = link.poll(now) {
                arrived.push(d);
            }
        }
        for d in arrived {
            busy = true;
            let Some(to) = self.node_by_addr(d.to) else {
                continue;
            };
            if !self.nodes[to].online {
                continue;
            }
            self.nodes[to].endpoint.handle(now, d.from, &d.payload);
        }
        // Timers, then outputs.
        for i in 0..self.nodes.len() {
            if !self.nodes[i].online {
                continue;
            }
            if self.nodes[i]
                .endpoint
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.nodes[i].endpoint.handle_timeout(now);
            }
            let from = self.nodes[i].addr;
            while let Some(t) = self.nodes[i].endpoint.poll_transmit(now, &mut self.buf) {
                busy = true;
                let payload = self.buf[..t.size].to_vec();
                let elapsed = (now - self.epoch).as_micros() as u64;
                fnv(&mut self.hash, &elapsed.to_le_bytes());
                fnv(&mut self.hash, from.to_string().as_bytes());
                fnv(&mut self.hash, t.destination.to_string().as_bytes());
                fnv(&mut self.hash, &payload);
                self.datagrams += 1;
                let datagram = Datagram {
                    from,
                    to: t.destination,
                    payload,
                };
                let route = self
                    .node_by_addr(t.destination)
                    .and_then(|to| self.routes.get(&(i, to)).copied());
                match route {
                    Some(link) => self.links[link].push(now, datagram),
                    None => self.perfect.push_back(datagram),
                }
            }
            let node = &mut self.nodes[i];
            while let Some(e) = node.endpoint.poll_event() {
                fnv(&mut self.hash, format!("{i}:{e:?}").as_bytes());
                node.events.push(e);
                busy = true;
            }
            while let Some(m) = node.endpoint.poll_message() {
                fnv(&mut self.hash, &m.1.payload);
                node.messages.push(m);
                busy = true;
            }
        }
        busy
    }

    /// Runs until `done` returns true or `limit` of virtual time passes; returns whether `done`
    /// became true.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Network) -> bool,
    ) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.now >= end {
                return false;
            }
            let left = end - self.now;
            self.step(left.min(Duration::from_millis(10)));
        }
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(duration, |_| false);
    }
}
