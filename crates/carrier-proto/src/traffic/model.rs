//! The default congestion controller: a model of the path (bottleneck bandwidth and minimum RTT)
//! in the manner of BBR, with pacing; it tolerates random loss, and backs off on heavy loss and on
//! a standing queue. docs/traffic-control.md explains the algorithm and every constant; this is a
//! summary.
//!
//! - **Model.** `btl_bw` is the largest delivery rate measured over the last [`BW_WINDOW_ROUNDS`]
//!   round trips (application-limited samples only count when they raise it); `min_rtt` is the
//!   smallest RTT seen over the last [`MIN_RTT_WINDOW`]. `BDP = btl_bw × min_rtt`.
//! - **Output.** Pacing rate `= pacing_gain × btl_bw`; window `= cwnd_gain × BDP` plus
//!   [`CWND_EXTRA_DATAGRAMS`] datagrams plus the recent ACK aggregation (at most
//!   [`EXTRA_ACKED_MAX_TIME`] of data), between [`MIN_WINDOW_DATAGRAMS`] datagrams and the
//!   configured maximum.
//! - **Startup** doubles the rate every round trip (pacing gain [`STARTUP_PACING_GAIN`], window
//!   gain [`STARTUP_CWND_GAIN`]) until `btl_bw` grows by less than [`FULL_BW_GROWTH`] for
//!   [`FULL_BW_ROUNDS`] rounds, or the loss is heavy; **Drain** then paces at
//!   [`DRAIN_PACING_GAIN`] until the flight is down to one BDP.
//! - **ProbeBw** cycles the pacing gain through [`PROBE_BW_GAINS`], one phase per `min_rtt`: one
//!   phase probes for more bandwidth (its gain divided by `1 − random loss`, see
//!   [`MAX_LOSS_COMPENSATION`]), the next drains the queue the probe made, six cruise.
//! - **ProbeRtt**: when `min_rtt` was not confirmed for [`MIN_RTT_WINDOW`], the window drops to
//!   [`PROBE_RTT_CWND_GAIN`] × BDP for [`PROBE_RTT_DURATION`] and one round, so the queue empties
//!   and the true minimum shows.
//! - **Congestion signals**, checked at the end of every round in ProbeBw: *heavy loss* (more than
//!   [`HEAVY_LOSS_RATIO`] of the bytes settled over at least [`HEAVY_LOSS_SAMPLE_DATAGRAMS`]
//!   datagrams) or a *standing queue* (the smallest RTT of the round more than `max(min_rtt ×
//!   QUEUE_DELAY_FRACTION, QUEUE_DELAY_MIN, jitter)` above `min_rtt`) cut `btl_bw` to
//!   [`BACKOFF_BETA`] × what the round delivered, and the draining phase empties the queue. A
//!   back-off that did not clear the signal (another flow's queue) is not repeated for
//!   [`BACKOFF_INTERVAL_ROUNDS`]. Lighter loss is random loss: it is not congestion.
//! - **Retransmission timeout**: the window falls to the minimum and grows back by the bytes
//!   acknowledged (doubling per round trip) up to the model's window.

use std::time::Duration;

use super::congestion::{AckSummary, Controller};
use super::delivery::{per_second, rate};

/// Pacing gain of Startup: 4 ln 2 ≈ 2.77 (BBRv3's value), enough to double the sending rate every
/// round trip.
pub(super) const STARTUP_PACING_GAIN: f64 = 2.77;
/// Window gain of Startup: two BDPs, room for the doubling.
pub(super) const STARTUP_CWND_GAIN: f64 = 2.0;
/// Pacing gain of Drain: about the inverse of the Startup gain, so the queue Startup built drains
/// in about one round trip.
pub(super) const DRAIN_PACING_GAIN: f64 = 0.35;
/// Window gain outside Startup and ProbeRtt: two BDPs absorb delayed and bunched ACKs without
/// starving the pacer.
pub(super) const CWND_GAIN: f64 = 2.0;
/// ProbeBw pacing gains, one phase of `min_rtt` each: probe (+25 %), drain what the probe queued
/// (−25 %), then cruise for six phases.
pub(super) const PROBE_BW_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Index of the draining phase in [`PROBE_BW_GAINS`].
const PROBE_BW_DRAIN_PHASE: usize = 1;
/// Length, in round trips, of the window of the bottleneck-bandwidth max filter.
pub(super) const BW_WINDOW_ROUNDS: u64 = 10;
/// Length of the window of the minimum-RTT filter: ProbeRtt runs when no sample confirmed
/// `min_rtt` for this long (BBRv2's interval: a flow that joined behind another's queue learns
/// the true minimum within seconds).
pub(super) const MIN_RTT_WINDOW: Duration = Duration::from_secs(5);
/// [`MIN_RTT_WINDOW`] in nanoseconds.
const MIN_RTT_WINDOW_NANOS: u64 = MIN_RTT_WINDOW.as_nanos() as u64;
/// How long ProbeRtt holds the small window (at least one round trip too).
pub(super) const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// The window during ProbeRtt, as a fraction of the BDP.
pub(super) const PROBE_RTT_CWND_GAIN: f64 = 0.5;
/// Startup ends when `btl_bw` grew by less than this factor ...
pub(super) const FULL_BW_GROWTH: f64 = 1.25;
/// ... for this many rounds in a row.
pub(super) const FULL_BW_ROUNDS: u32 = 3;
/// Losing more than this fraction of the bytes settled (delivered + lost) is congestion. Up to
/// it, loss is taken as random and ignored.
pub(super) const HEAVY_LOSS_RATIO: f64 = 0.3;
/// The loss ratio is judged over whole rounds that settled at least this many full-size
/// datagrams' worth of bytes (several short rounds together, if need be): fewer prove nothing
/// (with 20 % random loss, 128 datagrams exceed 30 % about once in 300 draws).
pub(super) const HEAVY_LOSS_SAMPLE_DATAGRAMS: usize = 128;
/// Weight of one round in the moving average of the random loss rate (measured in cruising
/// rounds only, where the flow sends no faster than its estimate).
pub(super) const RANDOM_LOSS_WEIGHT: f64 = 1.0 / 8.0;
/// The probing gain is divided by `1 − random loss`, the loss counted up to this much, so a probe
/// still delivers 25 % more than the estimate through random loss.
pub(super) const MAX_LOSS_COMPENSATION: f64 = 0.3;
/// A standing queue: the smallest RTT of a whole round exceeded `min_rtt` by more than
/// `max(min_rtt × QUEUE_DELAY_FRACTION, QUEUE_DELAY_MIN, jitter)`, where `jitter` is the moving
/// average of the spread (largest − smallest) of the RTT samples within a round. A queue moves
/// all the samples of a round together; jitter spreads them, and on a jittery path a round may
/// see no low sample without any queue.
pub(super) const QUEUE_DELAY_FRACTION: f64 = 0.25;
/// See [`QUEUE_DELAY_FRACTION`].
pub(super) const QUEUE_DELAY_MIN: Duration = Duration::from_millis(5);
/// Weight of one round in the moving average of the in-round RTT spread (the jitter).
pub(super) const JITTER_WEIGHT: f64 = 1.0 / 4.0;
/// Window, in rounds, of the max filter of the ACK aggregation (bytes acknowledged beyond what
/// `btl_bw` explains), which the window adds so bunched or jittered ACKs do not starve the
/// sender.
pub(super) const EXTRA_ACKED_WINDOW_ROUNDS: u64 = 10;
/// The aggregation allowance is at most `btl_bw ×` this.
pub(super) const EXTRA_ACKED_MAX_TIME: Duration = Duration::from_millis(100);
/// A back-off cuts `btl_bw` to this fraction of the rate the congested round delivered: a
/// multiplicative decrease, so flows sharing a bottleneck converge to equal shares (their probes
/// add about the same absolute rate to each).
pub(super) const BACKOFF_BETA: f64 = 0.85;
/// A back-off is judged this many rounds after it (its draining phase has then shown in the
/// RTT); no other back-off comes before.
pub(super) const BACKOFF_CHECK_ROUNDS: u64 = 3;
/// After a back-off the draining phase lasts until the flight is down to one BDP, at most this
/// many `min_rtt`s.
pub(super) const BACKOFF_DRAIN_PHASES: u32 = 3;
/// If the congestion signal persisted through a back-off, the queue is not this flow's doing
/// (another flow holds it): the next back-off waits until this many rounds (one ProbeBw cycle)
/// after the last one, so a flow does not cut itself down to nothing.
pub(super) const BACKOFF_INTERVAL_ROUNDS: u64 = PROBE_BW_GAINS.len() as u64;
/// Smallest window, in datagrams of the largest size.
pub(super) const MIN_WINDOW_DATAGRAMS: usize = 4;
/// Datagrams added to `cwnd_gain × BDP`, so pacing bursts and delayed ACKs never stall a small
/// window.
pub(super) const CWND_EXTRA_DATAGRAMS: usize = 4;
/// The initial window is `min(INITIAL_WINDOW_DATAGRAMS × size, max(INITIAL_WINDOW_BYTES, 2 ×
/// size))` (RFC 9002 §7.2).
pub(super) const INITIAL_WINDOW_DATAGRAMS: usize = 10;
/// See [`INITIAL_WINDOW_DATAGRAMS`].
pub(super) const INITIAL_WINDOW_BYTES: usize = 14_720;

/// The initial window for a largest datagram of `size` bytes (RFC 9002 §7.2).
pub(super) fn initial_window(size: usize) -> usize {
    INITIAL_WINDOW_DATAGRAMS
        .saturating_mul(size)
        .min(INITIAL_WINDOW_BYTES.max(size.saturating_mul(2)))
}

/// `value × gain`, saturating, for non-negative finite gains.
fn scale_u64(value: u64, gain: f64) -> u64 {
    // Rates and windows are far below 2^53: f64 is exact enough, and the cast saturates.
    (value as f64 * gain) as u64
}

/// `value × gain` for sizes.
fn scale_usize(value: usize, gain: f64) -> usize {
    (value as f64 * gain) as usize
}

/// Windowed maximum over round trips: the largest value recorded during the last `W` rounds, as
/// of the latest update. Values only expire when a newer one is recorded, so an
/// application-limited sender, which records nothing, keeps its estimate.
///
/// Slot `round % W` holds the largest value of `round`; the round of a slot is implied by
/// `latest` (slots of rounds that left the window are zeroed when `latest` advances), so the
/// filter stores one word per slot. The maximum over the slots is kept too: the controller reads
/// it several times per ACK and updates it once.
#[derive(Clone, Copy, Debug)]
struct MaxFilter<const W: usize> {
    /// Per slot: the largest value of its round (0 once the round left the window).
    slots: [u64; W],
    /// Round of the latest update.
    latest: u64,
    /// The largest value of `slots`.
    max: u64,
}

impl<const W: usize> Default for MaxFilter<W> {
    fn default() -> Self {
        Self {
            slots: [0; W],
            latest: 0,
            max: 0,
        }
    }
}

impl<const W: usize> MaxFilter<W> {
    /// The window, in rounds.
    const WINDOW: u64 = W as u64;

    fn slot(round: u64) -> usize {
        // W is small: the remainder fits any usize.
        (round % Self::WINDOW) as usize
    }

    fn update(&mut self, round: u64, value: u64) {
        if round > self.latest {
            // Rounds latest+1..=round reuse the slots of rounds that now leave the window.
            if round - self.latest >= Self::WINDOW {
                self.slots = [0; W];
            } else {
                for r in self.latest + 1..=round {
                    self.slots[Self::slot(r)] = 0;
                }
            }
            self.latest = round;
            let slot = &mut self.slots[Self::slot(round)];
            *slot = (*slot).max(value);
            // Values left the window: the maximum is found again.
            self.max = self.slots.iter().copied().max().unwrap_or(0);
            return;
        } else if round.saturating_add(Self::WINDOW) <= self.latest {
            // Already outside the window.
            return;
        }
        let slot = &mut self.slots[Self::slot(round)];
        *slot = (*slot).max(value);
        self.max = self.max.max(value);
    }

    fn get(&self) -> u64 {
        debug_assert_eq!(
            self.max,
            self.slots.iter().copied().max().unwrap_or(0),
            "stale maximum"
        );
        self.max
    }

    /// Forgets everything and records `value` in `round`.
    fn reset(&mut self, round: u64, value: u64) {
        *self = Self::default();
        self.update(round, value);
    }
}

/// An optional duration in 8 bytes instead of 16: whole nanoseconds, `u64::MAX` for none. Exact
/// below about 584 years (longer durations saturate just below the sentinel; no RTT comes near),
/// so the controller computes exactly what it would with `Option<Duration>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OptNanos(u64);

impl OptNanos {
    const NONE: Self = Self(u64::MAX);

    /// `d` in nanoseconds, saturating below the `NONE` sentinel.
    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).map_or(u64::MAX - 1, |n| n.min(u64::MAX - 1))
    }

    fn some(d: Duration) -> Self {
        Self(Self::nanos(d))
    }

    fn get(self) -> Option<Duration> {
        (self != Self::NONE).then(|| Duration::from_nanos(self.0))
    }
}

/// An instant of the controller in 8 bytes instead of 16: whole nanoseconds since its creation
/// (the traffic control's, `crate::time`). Instants are exact to the nanosecond, so with a clock
/// that does not go back before the creation, [`Model::since`] gives exactly what
/// `now.saturating_duration_since(instant)` gave (an instant before the creation would count as
/// the creation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp(u64);

impl Stamp {
    /// The creation instant.
    const CREATED: Self = Self(0);
}

/// The state machine of the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// The model-based controller (module docs).
#[derive(Clone, Debug)]
pub(super) struct Model {
    max_datagram_size: usize,
    /// At least [`min_window`](Self::min_window).
    max_window: usize,
    /// RTT assumed before the first sample (sizes the first pacing rate).
    /// RTT assumed before the first sample, nanoseconds ([`OptNanos`]).
    initial_rtt: u64,
    mode: Mode,
    btl_bw: MaxFilter<{ BW_WINDOW_ROUNDS as usize }>,
    /// ACK aggregation: bytes acknowledged beyond `btl_bw × time` in the current epoch, and its
    /// max over rounds.
    extra_acked: MaxFilter<{ EXTRA_ACKED_WINDOW_ROUNDS as usize }>,
    ack_epoch_start: Stamp,
    ack_epoch_acked: u64,
    min_rtt: OptNanos,
    min_rtt_stamp: Stamp,
    // Round trips: a round ends when a datagram sent after the previous round ended is delivered.
    round: u64,
    /// Bytes delivered so far (the sampler's count).
    delivered: u64,
    next_round_delivered: u64,
    round_start_time: Stamp,
    round_delivered: u64,
    round_lost: u64,
    /// Bytes lost and settled since the last heavy-loss verdict.
    loss_window_lost: u64,
    loss_window_settled: u64,
    /// Delivery rate of the last round that was not application-limited; `u64::MAX` for none
    /// (its only use is as an upper bound, where none means no bound).
    last_round_rate: u64,
    /// No back-off before this round (0: none, which holds back no round).
    backoff_hold: u64,
    /// Longest draining phase, in `min_rtt`s (longer after a back-off).
    drain_phases: u32,
    /// (round of the last back-off, round at which to judge it); the second is 0 for none (a
    /// check is always due after a round: 8 bytes less than an `Option`).
    backoff_check: (u64, u64),
    round_min_rtt: OptNanos,
    /// Largest of the per-ACK RTT samples of the round (each ACK's smallest).
    round_max_rtt: OptNanos,
    /// Moving average of the in-round RTT spread.
    /// Nanoseconds.
    jitter: u64,
    round_app_limited: bool,
    /// Moving average of the loss ratio of cruising rounds: the path's random loss.
    random_loss: f64,
    // Startup.
    filled_pipe: bool,
    full_bw: u64,
    full_bw_rounds: u32,
    // Gains.
    pacing_gain: f64,
    cwnd_gain: f64,
    // ProbeBw.
    /// Index into `PROBE_BW_GAINS` (fewer than 256 phases).
    cycle_index: u8,
    cycle_start: Stamp,
    loss_in_phase: bool,
    // ProbeRtt.
    /// When ProbeRtt may end, since `created` ([`OptNanos`]).
    probe_rtt_done: OptNanos,
    probe_rtt_round_done: bool,
    /// Smallest RTT sample during the current ProbeRtt.
    probe_rtt_min: OptNanos,
    prior_cwnd: usize,
    // Output.
    cwnd: usize,
    pacing_rate: u64,
    bytes_in_flight: usize,
}

impl Model {
    /// The smallest window: [`MIN_WINDOW_DATAGRAMS`] datagrams.
    fn min_window(&self) -> usize {
        MIN_WINDOW_DATAGRAMS.saturating_mul(self.max_datagram_size)
    }

    /// The window before the first estimate (RFC 9002), within the smallest and largest.
    fn initial_window(&self) -> usize {
        initial_window(self.max_datagram_size).clamp(self.min_window(), self.max_window)
    }

    /// A controller for datagrams of at most `max_datagram_size` bytes, a window of at most
    /// `max_window` bytes, created at time 0.
    pub(super) fn new(max_datagram_size: usize, max_window: usize, initial_rtt: Duration) -> Self {
        let size = max_datagram_size.max(1);
        let min_window = MIN_WINDOW_DATAGRAMS.saturating_mul(size);
        let max_window = max_window.max(min_window);
        let initial_window = initial_window(size).clamp(min_window, max_window);
        let mut model = Self {
            max_datagram_size: size,
            max_window,
            initial_rtt: OptNanos::nanos(initial_rtt),
            mode: Mode::Startup,
            btl_bw: MaxFilter::default(),
            extra_acked: MaxFilter::default(),
            ack_epoch_start: Stamp::CREATED,
            ack_epoch_acked: 0,
            min_rtt: OptNanos::NONE,
            min_rtt_stamp: Stamp::CREATED,
            round: 0,
            delivered: 0,
            next_round_delivered: 0,
            round_start_time: Stamp::CREATED,
            round_delivered: 0,
            round_lost: 0,
            loss_window_lost: 0,
            loss_window_settled: 0,
            last_round_rate: u64::MAX,
            backoff_hold: 0,
            drain_phases: 1,
            backoff_check: (0, 0),
            round_min_rtt: OptNanos::NONE,
            round_max_rtt: OptNanos::NONE,
            jitter: 0,
            round_app_limited: false,
            random_loss: 0.0,
            filled_pipe: false,
            full_bw: 0,
            full_bw_rounds: 0,
            pacing_gain: STARTUP_PACING_GAIN,
            cwnd_gain: STARTUP_CWND_GAIN,
            cycle_index: 0,
            cycle_start: Stamp::CREATED,
            loss_in_phase: false,
            probe_rtt_done: OptNanos::NONE,
            probe_rtt_round_done: false,
            probe_rtt_min: OptNanos::NONE,
            prior_cwnd: initial_window,
            cwnd: initial_window,
            pacing_rate: 0,
            bytes_in_flight: 0,
        };
        model.set_pacing_rate();
        model
    }

    /// The instant of age `age` (nanoseconds since the creation) as a [`Stamp`] (saturating
    /// below the [`OptNanos`] sentinel, as stamps always did).
    fn stamp(age: u64) -> Stamp {
        Stamp(age.min(u64::MAX - 1))
    }

    /// `now.saturating_duration_since(s)` in nanoseconds, for `age` the age at `now`.
    fn since(age: u64, s: Stamp) -> u64 {
        age.saturating_sub(s.0)
    }

    /// `min_rtt`, or the initial RTT before the first sample, in nanoseconds.
    fn min_rtt_or_initial(&self) -> u64 {
        if self.min_rtt == OptNanos::NONE {
            self.initial_rtt
        } else {
            self.min_rtt.0
        }
    }

    fn bdp(&self, gain: f64) -> Option<usize> {
        let bw = self.btl_bw.get();
        let min_rtt = self.min_rtt.get()?;
        if bw == 0 {
            return None;
        }
        let bytes = u128::from(bw).saturating_mul(min_rtt.as_nanos()) / 1_000_000_000;
        Some(scale_usize(
            usize::try_from(bytes).unwrap_or(usize::MAX),
            gain,
        ))
    }

    /// The window for `gain`: `gain × BDP + CWND_EXTRA_DATAGRAMS`, or the initial window without
    /// a model yet.
    fn target_window(&self, gain: f64) -> usize {
        match self.bdp(gain) {
            Some(bdp) => bdp
                .saturating_add(CWND_EXTRA_DATAGRAMS * self.max_datagram_size)
                .saturating_add(self.aggregation_allowance()),
            None => self.initial_window(),
        }
    }

    /// The ACK-aggregation allowance: the largest recent excess, at most `btl_bw ×
    /// EXTRA_ACKED_MAX_TIME`.
    fn aggregation_allowance(&self) -> usize {
        let cap = u128::from(self.btl_bw.get()).saturating_mul(EXTRA_ACKED_MAX_TIME.as_nanos())
            / 1_000_000_000;
        let extra = u128::from(self.extra_acked.get()).min(cap);
        usize::try_from(extra).unwrap_or(usize::MAX)
    }

    /// Measures ACK aggregation: within an epoch, the bytes acknowledged beyond what `btl_bw`
    /// explains. The epoch restarts when the ACKs fall behind the model.
    fn update_ack_aggregation(&mut self, age: u64, acked: usize) {
        let bw = self.btl_bw.get();
        if bw == 0 || acked == 0 {
            return;
        }
        let elapsed = Self::since(age, self.ack_epoch_start);
        let mut expected =
            u64::try_from(u128::from(bw).saturating_mul(u128::from(elapsed)) / 1_000_000_000)
                .unwrap_or(u64::MAX);
        if self.ack_epoch_acked <= expected {
            // The ACKs are not ahead of the model: a new epoch starts.
            self.ack_epoch_start = Self::stamp(age);
            self.ack_epoch_acked = 0;
            expected = 0;
        }
        self.ack_epoch_acked = self
            .ack_epoch_acked
            .saturating_add(u64::try_from(acked).unwrap_or(u64::MAX));
        let extra = self
            .ack_epoch_acked
            .saturating_sub(expected)
            .min(u64::try_from(self.cwnd).unwrap_or(u64::MAX));
        self.extra_acked.update(self.round, extra);
    }

    /// The window of ProbeRtt: half the BDP, computed with the rate the last round delivered if
    /// that is lower than `btl_bw` (the estimate may be stale just after the path slowed down, and
    /// half of a stale BDP would not empty the queue).
    fn probe_rtt_window(&self) -> usize {
        let bw = self.btl_bw.get().min(self.last_round_rate);
        let bdp = self.min_rtt.get().map(|m| {
            let bytes = u128::from(bw).saturating_mul(m.as_nanos()) / 1_000_000_000;
            scale_usize(
                usize::try_from(bytes).unwrap_or(usize::MAX),
                PROBE_RTT_CWND_GAIN,
            )
        });
        bdp.filter(|&b| b > 0)
            .unwrap_or(self.initial_window())
            .max(self.min_window())
    }

    fn queue_delay_threshold(&self, min_rtt: Duration) -> Duration {
        min_rtt
            .mul_f64(QUEUE_DELAY_FRACTION)
            .max(QUEUE_DELAY_MIN)
            .max(Duration::from_nanos(self.jitter))
    }

    fn set_pacing_rate(&mut self) {
        let bw = self.btl_bw.get();
        if bw == 0 {
            // No sample yet: the initial window per RTT, at the Startup gain.
            let rtt = self
                .min_rtt
                .get()
                .unwrap_or(Duration::from_nanos(self.initial_rtt));
            let window = u64::try_from(self.cwnd).unwrap_or(u64::MAX);
            if let Some(r) = rate(window, rtt) {
                self.pacing_rate = scale_u64(r, STARTUP_PACING_GAIN);
            }
            return;
        }
        let target = scale_u64(bw, self.pacing_gain);
        // Startup never slows down: the model is still being built.
        if self.filled_pipe || target > self.pacing_rate {
            self.pacing_rate = target;
        }
    }

    fn set_cwnd(&mut self, acked: usize) {
        let target = self.target_window(self.cwnd_gain);
        if self.filled_pipe {
            self.cwnd = self.cwnd.saturating_add(acked).min(target);
        } else if self.cwnd < target || self.delivered < self.initial_window() as u64 {
            self.cwnd = self.cwnd.saturating_add(acked);
        }
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(self.probe_rtt_window());
        }
        self.cwnd = self.cwnd.clamp(self.min_window(), self.max_window);
    }

    fn enter_probe_bw(&mut self, age: u64) {
        self.mode = Mode::ProbeBw;
        self.cwnd_gain = CWND_GAIN;
        // Start in a phase that depends on the connection's age, so flows sharing a bottleneck
        // do not probe in lockstep (deterministic: no random source needed). Never the draining
        // phase: the flight is already at one BDP.
        let r = (age / 1_000 % 7) as usize;
        self.enter_phase(age, if r == 0 { 0 } else { r + 1 });
    }

    /// Enters ProbeBw phase `index`. The probing gain is compensated for the random loss, so
    /// that a probe can find more bandwidth whatever the path loses at random.
    fn enter_phase(&mut self, age: u64, index: usize) {
        self.cycle_index = u8::try_from(index).unwrap_or(u8::MAX);
        let gain = PROBE_BW_GAINS[index];
        self.pacing_gain = if gain > 1.0 {
            gain / (1.0 - self.random_loss.min(MAX_LOSS_COMPENSATION))
        } else {
            gain
        };
        self.cycle_start = Self::stamp(age);
        self.loss_in_phase = false;
    }

    /// Ends the round that is running: checks its congestion signals, then starts the next one.
    fn end_round(&mut self, age: u64) {
        let duration = Self::since(age, self.round_start_time);
        let round_rate = per_second(self.round_delivered, u128::from(duration));
        let settled = self.round_delivered.saturating_add(self.round_lost);
        self.loss_window_lost = self.loss_window_lost.saturating_add(self.round_lost);
        self.loss_window_settled = self.loss_window_settled.saturating_add(settled);
        let sample = HEAVY_LOSS_SAMPLE_DATAGRAMS.saturating_mul(self.max_datagram_size);
        let mut heavy_loss = false;
        if self.loss_window_settled >= u64::try_from(sample).unwrap_or(u64::MAX) {
            heavy_loss =
                self.loss_window_lost as f64 > HEAVY_LOSS_RATIO * self.loss_window_settled as f64;
            self.loss_window_lost = 0;
            self.loss_window_settled = 0;
        }
        if !self.round_app_limited
            && let Some(rate) = round_rate
        {
            self.last_round_rate = rate;
        }
        let standing_queue = match (self.round_min_rtt.get(), self.min_rtt.get()) {
            (Some(round_min), Some(min)) => {
                round_min > min.saturating_add(self.queue_delay_threshold(min))
            }
            _ => false,
        };
        if let (Some(lo), Some(hi)) = (self.round_min_rtt.get(), self.round_max_rtt.get()) {
            let spread = (hi - lo).as_secs_f64();
            let jitter = Duration::from_nanos(self.jitter).as_secs_f64();
            self.jitter = OptNanos::nanos(Duration::from_secs_f64(
                jitter + JITTER_WEIGHT * (spread - jitter),
            ));
        }
        // Cruising rounds (two phases after the probe started, so the probe's own losses are
        // settled) measure the random loss.
        if self.mode == Mode::ProbeBw
            && usize::from(self.cycle_index) > PROBE_BW_DRAIN_PHASE + 1
            && settled > 0
        {
            let ratio = self.round_lost as f64 / settled as f64;
            self.random_loss += RANDOM_LOSS_WEIGHT * (ratio - self.random_loss);
        }
        match self.mode {
            Mode::Startup if heavy_loss => {
                // Startup overshot a shallow buffer: the pipe is full.
                self.filled_pipe = true;
            }
            Mode::ProbeBw => {
                let congested = heavy_loss || (standing_queue && !self.round_app_limited);
                let (at, check) = self.backoff_check;
                if check != 0 && self.round >= check {
                    self.backoff_check = (0, 0);
                    if congested {
                        // The last back-off did not clear it: not (only) our queue.
                        self.backoff_hold = at.saturating_add(BACKOFF_INTERVAL_ROUNDS);
                    }
                }
                let held = self.round < self.backoff_hold;
                if congested && !held {
                    self.back_off(age, round_rate);
                }
            }
            _ => {}
        }
        self.round = self.round.saturating_add(1);
        self.round_start_time = Self::stamp(age);
        self.round_delivered = 0;
        self.round_lost = 0;
        self.round_min_rtt = OptNanos::NONE;
        self.round_max_rtt = OptNanos::NONE;
        self.round_app_limited = false;
    }

    /// Congestion: the estimate falls to `BACKOFF_BETA ×` what the last round delivered, and the
    /// draining phase empties the queue.
    fn back_off(&mut self, age: u64, round_rate: Option<u64>) {
        self.backoff_hold = self.round.saturating_add(BACKOFF_CHECK_ROUNDS);
        self.backoff_check = (self.round, self.round.saturating_add(BACKOFF_CHECK_ROUNDS));
        let bw = self.btl_bw.get();
        let Some(round_rate) = round_rate.filter(|&r| r > 0) else {
            return;
        };
        let new = scale_u64(round_rate, BACKOFF_BETA).min(bw).max(1);
        self.drain_phases = BACKOFF_DRAIN_PHASES;
        tracing::trace!(bw, new, "congestion: bandwidth estimate cut");
        self.btl_bw.reset(self.round.saturating_add(1), new);
        self.enter_phase(age, PROBE_BW_DRAIN_PHASE);
    }

    fn check_full_pipe(&mut self, app_limited: bool) {
        if self.filled_pipe || app_limited {
            return;
        }
        let bw = self.btl_bw.get();
        if bw as f64 >= self.full_bw as f64 * FULL_BW_GROWTH {
            self.full_bw = bw;
            self.full_bw_rounds = 0;
            return;
        }
        self.full_bw_rounds += 1;
        if self.full_bw_rounds >= FULL_BW_ROUNDS {
            self.filled_pipe = true;
        }
    }

    fn check_drain(&mut self, age: u64) {
        if self.mode == Mode::Startup && self.filled_pipe {
            self.mode = Mode::Drain;
            self.pacing_gain = DRAIN_PACING_GAIN;
            self.cwnd_gain = STARTUP_CWND_GAIN;
        }
        if self.mode == Mode::Drain && self.bytes_in_flight <= self.bdp(1.0).unwrap_or(0) {
            self.enter_probe_bw(age);
        }
    }

    fn update_cycle(&mut self, age: u64, prior_in_flight: usize, app_limited: bool) {
        if self.mode != Mode::ProbeBw {
            return;
        }
        let min_rtt = self.min_rtt_or_initial();
        let full_length = Self::since(age, self.cycle_start) > min_rtt;
        let gain = self.pacing_gain;
        let advance = if gain > 1.0 {
            // Probe until the flight reached the probing window (or loss or the application
            // said there is no more to find).
            full_length
                && (self.loss_in_phase
                    || app_limited
                    || prior_in_flight >= self.target_window(gain))
        } else if gain < 1.0 {
            // Drain until the flight is down to one BDP: at most one phase after a probe, at most
            // BACKOFF_DRAIN_PHASES after a back-off.
            let limit = min_rtt.saturating_mul(u64::from(self.drain_phases));
            Self::since(age, self.cycle_start) > limit
                || self.bytes_in_flight <= self.bdp(1.0).unwrap_or(0)
        } else {
            full_length
        };
        if advance {
            self.drain_phases = 1;
            self.enter_phase(
                age,
                (usize::from(self.cycle_index) + 1) % PROBE_BW_GAINS.len(),
            );
        }
    }

    /// Updates `min_rtt` with `sample`; enters and leaves ProbeRtt.
    ///
    /// A sample at or below `min_rtt` replaces it and restarts its [`MIN_RTT_WINDOW`]. When the
    /// window passes without one, ProbeRtt drains the flight to half a BDP; the smallest sample
    /// seen then becomes `min_rtt` (higher than before if the path got longer). Until then the old
    /// value stays: a sample taken through a full queue never replaces it.
    fn update_min_rtt(&mut self, age: u64, sample: Option<Duration>, round_start: bool) {
        if let Some(sample) = sample
            && self.min_rtt.get().is_none_or(|m| sample <= m)
        {
            self.min_rtt = OptNanos::some(sample);
            self.min_rtt_stamp = Self::stamp(age);
        }
        let expired = Self::since(age, self.min_rtt_stamp) > MIN_RTT_WINDOW_NANOS;
        if expired && self.mode != Mode::ProbeRtt && self.min_rtt.get().is_some() {
            self.mode = Mode::ProbeRtt;
            self.pacing_gain = 1.0;
            self.cwnd_gain = CWND_GAIN;
            self.prior_cwnd = self.cwnd;
            self.probe_rtt_done = OptNanos::NONE;
            self.probe_rtt_min = OptNanos::NONE;
        }
        if self.mode != Mode::ProbeRtt {
            return;
        }
        if let Some(sample) = sample {
            self.probe_rtt_min =
                OptNanos::some(self.probe_rtt_min.get().map_or(sample, |m| m.min(sample)));
        }
        match self.probe_rtt_done.get() {
            None if self.bytes_in_flight <= self.probe_rtt_window() => {
                self.probe_rtt_done =
                    OptNanos::some(Duration::from_nanos(age).saturating_add(PROBE_RTT_DURATION));
                self.probe_rtt_round_done = false;
                // Only samples of datagrams sent from now on show the drained path.
                self.probe_rtt_min = OptNanos::NONE;
                // A new round starts now: ProbeRtt lasts at least until it ends.
                self.next_round_delivered = self.delivered;
            }
            None => {}
            Some(done) => {
                if round_start {
                    self.probe_rtt_round_done = true;
                }
                if self.probe_rtt_round_done && Duration::from_nanos(age) >= done {
                    if let Some(min) = self.probe_rtt_min.get() {
                        self.min_rtt = OptNanos::some(min);
                    }
                    self.min_rtt_stamp = Self::stamp(age);
                    self.cwnd = self.cwnd.max(self.prior_cwnd);
                    if self.filled_pipe {
                        self.enter_probe_bw(age);
                    } else {
                        self.mode = Mode::Startup;
                        self.pacing_gain = STARTUP_PACING_GAIN;
                        self.cwnd_gain = STARTUP_CWND_GAIN;
                    }
                }
            }
        }
    }
}

impl Controller for Model {
    fn on_sent(&mut self, _now: u64, _size: usize, bytes_in_flight: usize) {
        self.bytes_in_flight = bytes_in_flight;
    }

    fn on_lost(&mut self, _now: u64, size: usize) {
        self.round_lost = self
            .round_lost
            .saturating_add(u64::try_from(size).unwrap_or(u64::MAX));
        self.loss_in_phase = true;
    }

    fn on_spurious_loss(&mut self, _now: u64, size: usize) {
        // Take it back from this round, or from the rounds before if it was counted there.
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        let here = size.min(self.round_lost);
        self.round_lost -= here;
        self.loss_window_lost = self.loss_window_lost.saturating_sub(size - here);
        self.loss_window_settled = self.loss_window_settled.saturating_sub(size - here);
    }

    fn on_ack(&mut self, now: u64, ack: &AckSummary) {
        // The time since creation, once: every step below works with it.
        let age = now;
        let prior_in_flight = ack.bytes_in_flight.saturating_add(ack.acked_bytes);
        self.bytes_in_flight = ack.bytes_in_flight;
        self.delivered = ack.delivered;
        self.round_delivered = self
            .round_delivered
            .saturating_add(u64::try_from(ack.acked_bytes).unwrap_or(u64::MAX));
        if let Some(rtt) = ack.rtt_sample {
            self.round_min_rtt =
                OptNanos::some(self.round_min_rtt.get().map_or(rtt, |m| m.min(rtt)));
            self.round_max_rtt =
                OptNanos::some(self.round_max_rtt.get().map_or(rtt, |m| m.max(rtt)));
        }
        let mut round_start = false;
        let mut app_limited = false;
        if let Some(sample) = ack.sample {
            app_limited = sample.app_limited;
            self.round_app_limited |= sample.app_limited;
            if sample.prior_delivered >= self.next_round_delivered {
                // The round that started when this datagram was sent has ended.
                self.end_round(age);
                self.next_round_delivered = ack.delivered;
                round_start = true;
            }
            if let Some(r) = sample.rate
                && (!sample.app_limited || r >= self.btl_bw.get())
            {
                self.btl_bw.update(self.round, r);
            }
            if round_start {
                self.check_full_pipe(sample.app_limited);
            }
        }
        self.update_ack_aggregation(age, ack.acked_bytes);
        self.check_drain(age);
        self.update_cycle(age, prior_in_flight, app_limited);
        self.update_min_rtt(age, ack.rtt_sample, round_start);
        self.set_pacing_rate();
        self.set_cwnd(ack.acked_bytes);
    }

    fn on_retransmission_timeout(&mut self, _now: u64) {
        self.prior_cwnd = self.prior_cwnd.max(self.cwnd);
        self.cwnd = self.min_window();
    }

    fn window(&self) -> usize {
        self.cwnd
    }

    fn pacing_rate(&self) -> Option<u64> {
        (self.pacing_rate > 0).then_some(self.pacing_rate)
    }

    fn send_rate(&self) -> u64 {
        self.btl_bw.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_filter_keeps_the_window_maximum_and_expires_only_on_update() {
        let mut f = MaxFilter::<10>::default();
        f.update(0, 100);
        f.update(1, 50);
        assert_eq!(f.get(), 100);
        f.update(9, 60);
        assert_eq!(f.get(), 100);
        // Round 10: round 0 leaves the window.
        f.update(10, 40);
        assert_eq!(f.get(), 60);
        // No update: nothing expires, however long.
        assert_eq!(f.get(), 60);
        f.reset(11, 10);
        assert_eq!(f.get(), 10);
        // A jump of more than a window forgets everything before it.
        f.update(12, 30);
        f.update(40, 20);
        assert_eq!(f.get(), 20);
        // A round that already left the window changes nothing.
        f.update(30, 99);
        assert_eq!(f.get(), 20);
        f.update(31, 25);
        assert_eq!(f.get(), 25);
    }

    #[test]
    fn initial_window_follows_rfc9002() {
        assert_eq!(initial_window(1_200), 12_000);
        assert_eq!(initial_window(1_472), 14_720);
        assert_eq!(initial_window(9_000), 18_000);
    }
}
