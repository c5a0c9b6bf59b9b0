//! One direction of an emulated link.
//!
//! A [`Link`] is a sans-IO state machine: datagrams go in with [`Link::push`], come out with
//! [`Link::poll`] once they are due, and [`Link::poll_timeout`] says when the next one will be.
//! Time is whatever `now` the caller passes; the link never reads a clock. A `now` earlier than
//! one seen before is treated as the latest one seen, so time never goes backwards inside a link.
//! Calls that take no `now` ([`set_config`](Link::set_config), [`set_enabled`](Link::set_enabled),
//! [`purge_peer`](Link::purge_peer)) act at that latest instant.
//!
//! Inside, a datagram passes the stages listed in the [`config`](crate::config) module docs. Those
//! that survive wait in up to three places:
//!
//! - the **bottleneck** (only with [`BandwidthMode::Queue`]): a FIFO drained at exactly the
//!   configured rate. Departure times are computed lazily from the rate in force, so a rate change
//!   ([`Link::set_config`]) also applies to datagrams already waiting, as in a real router;
//! - the **delay line**: a binary heap keyed by (release instant, insertion counter), so datagrams
//!   released at the same instant come out in the order they went in (O(log n) per datagram);
//! - the **ready queue**: datagrams released at once when the link is disabled.
//!
//! Every random draw happens in `push` or `set_config` (never in `poll`), and departures do not
//! depend on how often the link is polled, so a run is fully fixed by the seed and the sequence
//! of pushes and configuration changes with their instants.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::{Bandwidth, BandwidthMode, BurstDrop, Latency, LinkConfig};
use crate::datagram::Datagram;
use crate::error::ConfigError;
use crate::rng::SimRng;
use crate::stats::LinkStats;

/// Length of a bandwidth window (one second, as the original).
const WINDOW: Duration = Duration::from_secs(1);

/// How many burst-drop periods a datagram may skip over before the timeline restarts at it.
const MAX_BURST_CATCH_UP: u32 = 1024;

/// A datagram copy in the delay line.
#[derive(Clone, Debug)]
struct Scheduled {
    release: Instant,
    seq: u64,
    datagram: Datagram,
}

impl Scheduled {
    fn key(&self) -> (Instant, u64) {
        (self.release, self.seq)
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// One copy of a datagram with the latency it drew.
#[derive(Clone, Debug)]
struct Replica {
    datagram: Datagram,
    latency: Duration,
}

/// A datagram waiting in the bottleneck (its duplicate, if any, rides along without using rate).
#[derive(Clone, Debug)]
struct Waiting {
    original: Replica,
    duplicate: Option<Replica>,
}

impl Waiting {
    fn bits(&self) -> u128 {
        self.original.datagram.payload.len() as u128 * 8
    }
}

/// The drop-tail queue of a [`BandwidthMode::Queue`] link.
#[derive(Clone, Debug, Default)]
struct Bottleneck {
    queue: VecDeque<Waiting>,
    /// Payload bytes of the originals in `queue`.
    bytes: usize,
    /// When the head started (or resumed, after a rate change) serializing.
    head_since: Option<Instant>,
    /// Bits of the head already serialized before `head_since`.
    head_done_bits: u128,
}

/// The current one-second bandwidth window.
#[derive(Clone, Copy, Debug)]
struct RateWindow {
    start: Instant,
    rate_bps: u64,
    /// Bytes left in this window ([`BandwidthMode::Drop`] only).
    budget_left: u64,
}

/// The current burst-drop period.
#[derive(Clone, Copy, Debug)]
struct BurstWindow {
    start: Instant,
    period: Duration,
    interval: Duration,
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug)]
enum DropReason {
    Mtu,
    Blackhole,
    Loss,
    Burst,
    Bandwidth,
    QueueFull,
}

/// One direction of an emulated link.
///
/// Usable alone: the protocol test harness puts one `Link` per direction between in-process
/// endpoints, and shares one `Link` between several endpoints to build a common bottleneck.
/// A new link is enabled. See the [module docs](self) for how it works and
/// [`config`](crate::config) for what it does to datagrams.
///
/// ```
/// use std::time::{Duration, Instant};
/// use carrier_sim::{Datagram, Link, LinkConfig, QueueLimit};
///
/// // A 100 kbit/s bottleneck: 1,250-byte datagrams leave every 100 ms.
/// let cfg = LinkConfig::default().with_bandwidth_queue_kbps(100, 100, QueueLimit::Bytes(10_000));
/// let mut link = Link::new(cfg, 1)?;
/// let start = Instant::now(); // the caller's clock; the link never reads one
/// let addr = "127.0.0.1:9000".parse()?;
/// for _ in 0..3 {
///     link.push(start, Datagram::new(addr, addr, vec![0; 1250]));
/// }
/// assert_eq!(link.poll_timeout(), Some(start + Duration::from_millis(100)));
/// assert!(link.poll(start + Duration::from_millis(99)).is_none());
/// assert!(link.poll(start + Duration::from_millis(100)).is_some());
/// assert_eq!(link.poll_timeout(), Some(start + Duration::from_millis(200)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Link {
    config: LinkConfig,
    seed: u64,
    rng: SimRng,
    enabled: bool,
    /// Latest instant seen.
    now: Option<Instant>,
    /// Insertion counter for FIFO-stable ties in `scheduled`.
    seq: u64,
    scheduled: BinaryHeap<Reverse<Scheduled>>,
    ready: VecDeque<Datagram>,
    bottleneck: Bottleneck,
    /// Latest release instant given to any copy (the FIFO floor when `reorder` is off).
    last_release: Option<Instant>,
    periodic_countdown: u64,
    ge_bad: bool,
    burst: Option<BurstWindow>,
    rate: Option<RateWindow>,
    stats: LinkStats,
}

impl Link {
    /// A link applying `config`, drawing from a ChaCha8 stream seeded with exactly `seed` (no
    /// environment override). Fails if the config does not [validate](LinkConfig::validate).
    pub fn new(config: LinkConfig, seed: u64) -> Result<Link, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            seed,
            rng: SimRng::new(seed),
            enabled: true,
            now: None,
            seq: 0,
            scheduled: BinaryHeap::new(),
            ready: VecDeque::new(),
            bottleneck: Bottleneck::default(),
            last_release: None,
            periodic_countdown: 0,
            ge_bad: false,
            burst: None,
            rate: None,
            stats: LinkStats::default(),
        })
    }

    /// Offers a datagram to the link at `now`. It may be dropped, delayed, duplicated or
    /// corrupted; what survives comes out of [`poll`](Self::poll). When the link is disabled the
    /// datagram is due at once, untouched (only the hard memory cap still applies).
    pub fn push(&mut self, now: Instant, datagram: Datagram) {
        let now = self.observe(now);
        let len = datagram.payload.len();
        self.stats.packets_in += 1;
        self.stats.bytes_in += len as u64;
        if !self.enabled {
            if self.has_room(len) {
                self.admit(len);
                self.ready.push_back(datagram);
            } else {
                self.count_drop(DropReason::QueueFull, len);
            }
            return;
        }
        self.advance(now);
        if let Err(reason) = self.impair(now, datagram) {
            self.count_drop(reason, len);
        }
    }

    /// The next datagram due at or before `now`, if any. Call it until it returns `None` after
    /// every input and whenever [`poll_timeout`](Self::poll_timeout) passes.
    pub fn poll(&mut self, now: Instant) -> Option<Datagram> {
        let now = self.observe(now);
        self.advance(now);
        let datagram = match self.ready.pop_front() {
            Some(d) => d,
            None => {
                if self.scheduled.peek()?.0.release > now {
                    return None;
                }
                self.scheduled.pop()?.0.datagram
            }
        };
        let len = datagram.payload.len() as u64;
        self.stats.packets_out += 1;
        self.stats.bytes_out += len;
        self.stats.queued_packets -= 1;
        self.stats.queued_bytes -= len;
        Some(datagram)
    }

    /// When the next queued datagram is due: [`poll`](Self::poll) at that instant returns it,
    /// and before it returns nothing. `None` when the link holds nothing. Datagrams released by
    /// disabling the link are due at the latest instant seen.
    ///
    /// Exact, including for datagrams still in a bottleneck. O(1), except for a bottleneck with
    /// `reorder` on, where it scans the datagrams that leave the bottleneck before the earliest
    /// release found so far.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return self.now;
        }
        let mut best = self.scheduled.peek().map(|s| s.0.release);
        let Some(mut depart) = self.head_departure() else {
            return best;
        };
        if !self.config.reorder {
            // FIFO: the head's original is released before anything behind it.
            if let Some(head) = self.bottleneck.queue.front() {
                let release = floor(add(depart, head.original.latency), self.last_release);
                best = Some(best.map_or(release, |b| b.min(release)));
            }
            return best;
        }
        let rate = self.rate_bps();
        for (i, w) in self.bottleneck.queue.iter().enumerate() {
            if i > 0 {
                depart = add(depart, tx_time(w.bits(), rate));
            }
            if best.is_some_and(|b| b <= depart) {
                break;
            }
            let mut latency = w.original.latency;
            if let Some(d) = &w.duplicate {
                latency = latency.min(d.latency);
            }
            let release = add(depart, latency);
            best = Some(best.map_or(release, |b| b.min(release)));
        }
        best
    }

    /// Replaces the configuration. Fails, keeping the old one, if `config` does not validate.
    ///
    /// The change takes effect at the latest instant seen. Datagrams already in the delay line
    /// keep their release instants. A new rate applies at once to datagrams waiting in the
    /// bottleneck (the one being serialized keeps the bits already sent); if the new config has
    /// no queueing bottleneck, waiting datagrams leave it at once (with their latency). A changed
    /// periodic-loss, burst-drop or bandwidth setting restarts that stage's state (so a changed
    /// periodic loss drops the next datagram); an unchanged one keeps its state.
    pub fn set_config(&mut self, config: LinkConfig) -> Result<(), ConfigError> {
        config.validate()?;
        if let Some(now) = self.now {
            self.advance(now);
        }
        let old = std::mem::replace(&mut self.config, config);
        if old.periodic_loss != self.config.periodic_loss {
            self.periodic_countdown = 0;
        }
        if old.gilbert_elliott.is_none() || self.config.gilbert_elliott.is_none() {
            self.ge_bad = false;
        }
        if old.burst_drop != self.config.burst_drop {
            self.burst = None;
        }
        if old.bandwidth != self.config.bandwidth {
            self.bandwidth_changed(old.bandwidth);
        }
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Turns the link on or off. Disabling releases every queued datagram at once (due
    /// immediately, in release order, then the bottleneck in FIFO order) and makes the link a
    /// pass-through with zero delay. Enabling restarts the stage states as a new link's: periodic
    /// loss drops the next datagram, Gilbert–Elliott starts good, burst and bandwidth windows
    /// start at the next datagram.
    pub fn set_enabled(&mut self, on: bool) {
        if on == self.enabled {
            return;
        }
        self.enabled = on;
        if on {
            self.periodic_countdown = 0;
            self.ge_bad = false;
            self.burst = None;
            self.rate = None;
            return;
        }
        let mut scheduled: Vec<Scheduled> = std::mem::take(&mut self.scheduled)
            .into_iter()
            .map(|r| r.0)
            .collect();
        scheduled.sort_unstable();
        self.ready.extend(scheduled.into_iter().map(|s| s.datagram));
        for w in std::mem::take(&mut self.bottleneck).queue {
            self.ready.push_back(w.original.datagram);
            if let Some(d) = w.duplicate {
                self.ready.push_back(d.datagram);
            }
        }
        self.last_release = None;
    }

    /// Whether the link applies its configuration (a new link is enabled).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Drops every queued datagram from or to `peer` (counted in `dropped_purged`) and returns
    /// how many. If the datagram being serialized by a bottleneck is removed, the next one starts
    /// at the latest instant seen.
    pub fn purge_peer(&mut self, peer: SocketAddr) -> usize {
        if let Some(now) = self.now {
            self.advance(now);
        }
        let mut count = 0usize;
        let mut bytes = 0u64;
        let mut gone = |d: &Datagram| {
            let hit = d.involves(peer);
            if hit {
                count += 1;
                bytes += d.payload.len() as u64;
            }
            hit
        };
        self.ready.retain(|d| !gone(d));
        self.scheduled.retain(|s| !gone(&s.0.datagram));
        let head_purged = self
            .bottleneck
            .queue
            .front()
            .is_some_and(|w| w.original.datagram.involves(peer));
        let mut freed = 0usize;
        self.bottleneck.queue.retain(|w| {
            // A duplicate has its original's addresses: they go together.
            let hit = gone(&w.original.datagram);
            if hit {
                if let Some(d) = &w.duplicate {
                    gone(&d.datagram);
                }
                freed += w.original.datagram.payload.len();
            }
            !hit
        });
        self.bottleneck.bytes -= freed;
        if head_purged {
            self.bottleneck.head_since = self.now;
            self.bottleneck.head_done_bits = 0;
        }
        self.stats.dropped_purged += count as u64;
        self.stats.queued_packets -= count as u64;
        self.stats.queued_bytes -= bytes;
        count
    }

    /// The counters.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// The seed the link's random stream started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Records `now`, clamped so that time never goes backwards.
    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |last| last.max(now));
        self.now = Some(now);
        now
    }

    /// The stages after the link is known to be enabled.
    fn impair(&mut self, now: Instant, datagram: Datagram) -> Result<(), DropReason> {
        let len = datagram.payload.len();
        // 1. MTU.
        if self.config.mtu.is_some_and(|mtu| len > mtu) {
            return Err(DropReason::Mtu);
        }
        // 2. Blackhole.
        if self.config.blackhole {
            return Err(DropReason::Blackhole);
        }
        // 3. Periodic loss: a countdown that starts at 0 (drop), then N - 1 passes.
        if let Some(pl) = self.config.periodic_loss {
            if self.periodic_countdown == 0 {
                let n = self
                    .rng
                    .range_u64(u64::from(pl.min_interval), u64::from(pl.max_interval));
                self.periodic_countdown = n.saturating_sub(1);
                return Err(DropReason::Loss);
            }
            self.periodic_countdown -= 1;
        }
        // 4. Random loss, then Gilbert–Elliott (whose chain steps for every datagram here).
        let mut lost = self.rng.chance(self.config.loss_probability);
        if let Some(ge) = self.config.gilbert_elliott {
            let (p_loss, p_flip) = if self.ge_bad {
                (ge.loss_in_bad, ge.r_bad_to_good)
            } else {
                (ge.loss_in_good, ge.p_good_to_bad)
            };
            lost |= self.rng.chance(p_loss);
            if self.rng.chance(p_flip) {
                self.ge_bad = !self.ge_bad;
            }
        }
        if lost {
            return Err(DropReason::Loss);
        }
        // 5. Burst drops.
        if let Some(b) = self.config.burst_drop {
            let w = self.burst_window(now, b);
            if now < add(w.start, w.interval) {
                return Err(DropReason::Burst);
            }
        }
        // 6. Bandwidth (checked now, committed after the hard cap).
        let bandwidth = self.config.bandwidth;
        if let Some(bw) = bandwidth {
            self.roll_rate_window(now, &bw);
            match bw.mode {
                BandwidthMode::Drop => {
                    if self.rate.is_some_and(|w| len as u64 > w.budget_left) {
                        return Err(DropReason::Bandwidth);
                    }
                }
                BandwidthMode::Queue(limit) => {
                    let limit = limit.bytes_at(self.rate_bps());
                    if self.bottleneck.bytes.saturating_add(len) > limit {
                        return Err(DropReason::QueueFull);
                    }
                }
            }
        }
        // 7. Hard memory cap.
        if !self.has_room(len) {
            return Err(DropReason::QueueFull);
        }
        self.admit(len);
        let queued = matches!(bandwidth, Some(b) if matches!(b.mode, BandwidthMode::Queue(_)));
        if !queued && let Some(w) = &mut self.rate {
            w.budget_left = w.budget_left.saturating_sub(len as u64);
        }
        // 8. Duplication, then corruption of each copy.
        let mut duplicate = None;
        if self.rng.chance(self.config.duplicate_probability) {
            self.stats.duplicated += 1;
            if self.has_room(len) {
                self.admit(len);
                duplicate = Some(datagram.clone());
            } else {
                self.count_drop(DropReason::QueueFull, len);
            }
        }
        let mut original = datagram;
        self.maybe_corrupt(&mut original);
        if let Some(d) = &mut duplicate {
            self.maybe_corrupt(d);
        }
        // 9. Latency, for each copy.
        let original = Replica {
            latency: self.draw_latency(),
            datagram: original,
        };
        let duplicate = duplicate.map(|datagram| Replica {
            latency: self.draw_latency(),
            datagram,
        });
        if queued {
            if self.bottleneck.queue.is_empty() {
                self.bottleneck.head_since = Some(now);
                self.bottleneck.head_done_bits = 0;
            }
            self.bottleneck.bytes += len;
            self.bottleneck.queue.push_back(Waiting {
                original,
                duplicate,
            });
        } else {
            self.schedule(now, original);
            if let Some(d) = duplicate {
                self.schedule(now, d);
            }
        }
        Ok(())
    }

    fn has_room(&self, len: usize) -> bool {
        self.stats.queued_packets < self.config.max_queued_packets as u64
            && self.stats.queued_bytes.saturating_add(len as u64)
                <= self.config.max_queued_bytes as u64
    }

    fn admit(&mut self, len: usize) {
        self.stats.queued_packets += 1;
        self.stats.queued_bytes += len as u64;
    }

    fn count_drop(&mut self, reason: DropReason, len: usize) {
        tracing::trace!(?reason, len, "carrier-sim drop");
        let s = &mut self.stats;
        let counter = match reason {
            DropReason::Mtu => &mut s.dropped_mtu,
            DropReason::Blackhole => &mut s.dropped_blackhole,
            DropReason::Loss => &mut s.dropped_loss,
            DropReason::Burst => &mut s.dropped_burst,
            DropReason::Bandwidth => &mut s.dropped_bandwidth,
            DropReason::QueueFull => &mut s.dropped_queue_full,
        };
        *counter += 1;
    }

    fn maybe_corrupt(&mut self, d: &mut Datagram) {
        if d.payload.is_empty() || !self.rng.chance(self.config.corrupt_probability) {
            return;
        }
        let bit = self.rng.below(d.payload.len() as u64 * 8);
        // `bit < 8 * len`, so the index is in bounds.
        if let Some(byte) = d.payload.get_mut((bit / 8) as usize) {
            *byte ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
        }
    }

    fn draw_latency(&mut self) -> Duration {
        let ms = match self.config.latency {
            Latency::None => return Duration::ZERO,
            Latency::Uniform { min_ms, max_ms } => self.rng.range_f64(min_ms, max_ms),
            Latency::Jitter { base_ms, jitter_ms } => {
                // Triangular on (-1, 1): the sum of two uniforms, shifted.
                let x = self.rng.unit() + self.rng.unit() - 1.0;
                base_ms + jitter_ms * x
            }
        };
        ms_to_duration(ms)
    }

    /// Puts a copy that left the bandwidth stage at `depart` into the delay line.
    fn schedule(&mut self, depart: Instant, copy: Replica) {
        let mut release = add(depart, copy.latency);
        if !self.config.reorder {
            release = floor(release, self.last_release);
        }
        self.last_release = Some(floor(release, self.last_release));
        self.scheduled.push(Reverse(Scheduled {
            release,
            seq: self.seq,
            datagram: copy.datagram,
        }));
        self.seq += 1;
    }

    /// The current rate; "infinite" if none was drawn (only possible with an empty bottleneck).
    fn rate_bps(&self) -> u64 {
        self.rate.map_or(u64::MAX, |w| w.rate_bps)
    }

    /// When the bottleneck's head finishes serializing.
    fn head_departure(&self) -> Option<Instant> {
        let head = self.bottleneck.queue.front()?;
        let since = self.bottleneck.head_since?;
        let left = head.bits().saturating_sub(self.bottleneck.head_done_bits);
        Some(add(since, tx_time(left, self.rate_bps())))
    }

    /// Moves every datagram that has left the bottleneck by `now` into the delay line.
    fn advance(&mut self, now: Instant) {
        while let Some(depart) = self.head_departure() {
            if depart > now {
                break;
            }
            let Some(w) = self.bottleneck.queue.pop_front() else {
                break;
            };
            self.bottleneck.bytes -= w.original.datagram.payload.len();
            self.bottleneck.head_since = Some(depart);
            self.bottleneck.head_done_bits = 0;
            self.schedule(depart, w.original);
            if let Some(d) = w.duplicate {
                self.schedule(depart, d);
            }
        }
    }

    /// Changes the rate at `now` (the bottleneck must already be advanced to `now`): the head
    /// keeps the bits it sent at the old rate.
    fn set_rate(&mut self, now: Instant, rate_bps: u64) {
        if let (Some(head), Some(since)) =
            (self.bottleneck.queue.front(), self.bottleneck.head_since)
        {
            let elapsed = now.saturating_duration_since(since).as_nanos();
            let sent = elapsed.saturating_mul(u128::from(self.rate_bps())) / 1_000_000_000;
            self.bottleneck.head_done_bits =
                (self.bottleneck.head_done_bits + sent).min(head.bits());
            self.bottleneck.head_since = Some(now);
        }
        if let Some(w) = &mut self.rate {
            w.rate_bps = rate_bps;
        }
    }

    fn draw_rate(&mut self, bw: &Bandwidth) -> u64 {
        self.rng
            .range_u64(bw.min_kbps, bw.max_kbps)
            .saturating_mul(1000)
    }

    /// Starts or rolls the one-second bandwidth window that contains `now`.
    fn roll_rate_window(&mut self, now: Instant, bw: &Bandwidth) {
        match self.rate {
            None => {
                let rate_bps = self.draw_rate(bw);
                self.rate = Some(RateWindow {
                    start: now,
                    rate_bps,
                    budget_left: rate_bps / 8,
                });
            }
            Some(w) if now >= add(w.start, WINDOW) => {
                let windows = now.saturating_duration_since(w.start).as_secs();
                let start = w
                    .start
                    .checked_add(Duration::from_secs(windows))
                    .unwrap_or(now);
                let rate_bps = self.draw_rate(bw);
                self.set_rate(now, rate_bps);
                self.rate = Some(RateWindow {
                    start,
                    rate_bps,
                    budget_left: rate_bps / 8,
                });
            }
            Some(_) => {}
        }
    }

    /// The burst period containing `now`, starting or rolling the timeline as needed.
    fn burst_window(&mut self, now: Instant, b: BurstDrop) -> BurstWindow {
        let mut w = match self.burst {
            None => self.draw_burst(now, b),
            Some(w) => w,
        };
        let mut steps = 0;
        while now >= add(w.start, w.period) {
            steps += 1;
            w = if steps > MAX_BURST_CATCH_UP {
                self.draw_burst(now, b)
            } else {
                self.draw_burst(add(w.start, w.period), b)
            };
        }
        self.burst = Some(w);
        w
    }

    fn draw_burst(&mut self, start: Instant, b: BurstDrop) -> BurstWindow {
        let period = self.rng.range_u64(b.min_period_ms, b.max_period_ms).max(1);
        let interval = self
            .rng
            .range_u64(b.min_interval_ms, b.max_interval_ms)
            .min(period);
        BurstWindow {
            start,
            period: Duration::from_millis(period),
            interval: Duration::from_millis(interval),
        }
    }

    /// Applies a bandwidth setting change (the config already holds the new one).
    fn bandwidth_changed(&mut self, old: Option<Bandwidth>) {
        let new = self.config.bandwidth;
        if let (Some(bw), Some(now)) = (new, self.now)
            && matches!(bw.mode, BandwidthMode::Queue(_))
            && !self.bottleneck.queue.is_empty()
        {
            let same_rates =
                old.is_some_and(|o| (o.min_kbps, o.max_kbps) == (bw.min_kbps, bw.max_kbps));
            if !same_rates {
                let rate_bps = self.draw_rate(&bw);
                self.set_rate(now, rate_bps);
                self.rate = Some(RateWindow {
                    start: now,
                    rate_bps,
                    budget_left: rate_bps / 8,
                });
            }
            return;
        }
        // No queueing bottleneck any more (or nothing waiting): waiting datagrams leave now.
        // (A waiting datagram implies an observed instant, so `self.now` is set when it matters.)
        let waiting = std::mem::take(&mut self.bottleneck).queue;
        if let Some(depart) = self.now {
            for w in waiting {
                self.schedule(depart, w.original);
                if let Some(d) = w.duplicate {
                    self.schedule(depart, d);
                }
            }
        }
        self.rate = None;
    }
}

/// `t + d`, or `t` if that would overflow (which needs delays of centuries).
fn add(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or(t)
}

/// `t`, raised to `floor` if given.
fn floor(t: Instant, floor: Option<Instant>) -> Instant {
    floor.map_or(t, |f| t.max(f))
}

/// Time to serialize `bits` at `rate_bps`, rounded up to the nanosecond.
fn tx_time(bits: u128, rate_bps: u64) -> Duration {
    let ns = (bits * 1_000_000_000).div_ceil(u128::from(rate_bps.max(1)));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// Milliseconds (validated finite and non-negative) to a `Duration`, to the nearest nanosecond.
fn ms_to_duration(ms: f64) -> Duration {
    if ms > 0.0 {
        // Float-to-int `as` saturates, and NaN was ruled out by `ms > 0.0`.
        Duration::from_nanos((ms * 1e6).round() as u64)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        // The one clock read of a test; everything after it is virtual time.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    fn dgram(tag: u8, len: usize) -> Datagram {
        let a: SocketAddr = "198.18.0.1:1"
            .parse()
            .unwrap_or(SocketAddr::from(([0; 4], 1)));
        let mut payload = vec![0; len];
        if let Some(p) = payload.first_mut() {
            *p = tag;
        }
        Datagram::new(a, a, payload)
    }

    #[test]
    fn serialization_time_rounds_up_to_the_nanosecond() {
        assert_eq!(tx_time(10_000, 100_000), Duration::from_millis(100));
        assert_eq!(tx_time(1, 3), Duration::from_nanos(333_333_334));
        assert_eq!(tx_time(0, 1), Duration::ZERO);
        assert_eq!(tx_time(8, 0), Duration::from_secs(8)); // a zero rate is treated as 1 bit/s
    }

    #[test]
    fn milliseconds_convert_to_the_nearest_nanosecond() {
        assert_eq!(ms_to_duration(50.0), Duration::from_millis(50));
        assert_eq!(ms_to_duration(0.2), Duration::from_micros(200));
        assert_eq!(ms_to_duration(0.0), Duration::ZERO);
        assert_eq!(ms_to_duration(-3.0), Duration::ZERO);
        assert_eq!(ms_to_duration(f64::NAN), Duration::ZERO);
    }

    #[test]
    fn equal_release_instants_keep_insertion_order() {
        let start = t0();
        let mut link = Link::new(LinkConfig::default().with_fixed_latency_ms(5.0), 0)
            .unwrap_or_else(|e| panic!("{e}"));
        for tag in 0..50 {
            link.push(start, dgram(tag, 3));
        }
        let due = start + Duration::from_millis(5);
        let tags: Vec<u8> = std::iter::from_fn(|| link.poll(due))
            .map(|d| d.payload[0])
            .collect();
        assert_eq!(tags, (0..50).collect::<Vec<u8>>());
    }

    #[test]
    fn burst_timeline_restarts_after_a_long_silence() {
        let start = t0();
        let cfg = LinkConfig::default().with_burst_drop_ms(10, 10, 2, 2);
        let mut link = Link::new(cfg, 0).unwrap_or_else(|e| panic!("{e}"));
        link.push(start, dgram(0, 1)); // starts the timeline, inside the outage
        // 1,000 periods later (within the catch-up bound): still aligned to the first packet.
        link.push(start + Duration::from_millis(10_000), dgram(1, 1));
        link.push(start + Duration::from_millis(10_003), dgram(2, 1));
        assert_eq!(link.stats().dropped_burst, 2);
        // A silence of more than 1,024 periods re-anchors the timeline at the next datagram.
        let later = start + Duration::from_millis(10_000 + 20_005);
        link.push(later, dgram(3, 1));
        assert_eq!(link.stats().dropped_burst, 3);
        link.push(later + Duration::from_millis(2), dgram(4, 1));
        assert_eq!(link.stats().dropped_burst, 3);
    }

    #[test]
    fn drop_mode_budget_renews_every_second_window() {
        let start = t0();
        let cfg = LinkConfig::default().with_bandwidth_drop_kbps(8, 8); // 1,000 bytes per second
        let mut link = Link::new(cfg, 0).unwrap_or_else(|e| panic!("{e}"));
        link.push(start, dgram(0, 600));
        link.push(start + Duration::from_millis(500), dgram(1, 600)); // over budget
        link.push(start + Duration::from_millis(999), dgram(2, 400)); // fits exactly
        link.push(start + Duration::from_millis(1000), dgram(3, 1000)); // new window
        link.push(start + Duration::from_millis(3500), dgram(4, 1000)); // windows 2 and 3 skipped
        assert_eq!(link.stats().dropped_bandwidth, 1);
        assert_eq!(link.stats().queued_packets, 4);
    }

    #[test]
    fn random_rate_range_changes_per_window() {
        let start = t0();
        let cfg = LinkConfig::default().with_bandwidth_drop_kbps(80, 800);
        let mut link = Link::new(cfg, 3).unwrap_or_else(|e| panic!("{e}"));
        let mut per_window = Vec::new();
        for s in 0..20u64 {
            let mut passed = 0;
            for i in 0..1000u64 {
                let now = start + Duration::from_millis(s * 1000 + i);
                link.push(now, dgram(0, 100));
                while link.poll(now).is_some() {
                    passed += 100;
                }
            }
            per_window.push(passed);
        }
        // Each window passes rate/8 bytes with the rate in [80, 800) kbit/s, and they differ.
        assert!(
            per_window.iter().all(|&b| (10_000..100_000).contains(&b)),
            "{per_window:?}"
        );
        let (min, max) = (per_window.iter().min(), per_window.iter().max());
        assert!(max > min);
    }
}
