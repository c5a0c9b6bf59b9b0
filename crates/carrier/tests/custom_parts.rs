//! A `TrafficControl` supplied through `CarrierDesc::traffic_control` replaces the default, and
//! a dual-stack carrier serves IPv4 and IPv6 peers on one socket.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use carrier::{Carrier, CarrierDesc, FamilyType, Priority, Reliability, ThreadMode};
use carrier_proto::TrafficControl;
use carrier_proto::traffic::{
    AckOutcome, DefaultTrafficControl, RttEstimate, SendAllowance, SentDatagram, Statistics,
    TrafficConfig,
};
use common::{connect, desc, pump_until};

/// Wraps the default traffic control and counts what passes through it.
#[derive(Debug)]
struct Counting {
    inner: DefaultTrafficControl,
    sent: Arc<AtomicU64>,
}

impl TrafficControl for Counting {
    fn on_datagram_sent(&mut self, now: Instant, sent: SentDatagram) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.inner.on_datagram_sent(now, sent);
    }
    fn on_ack_received(
        &mut self,
        now: Instant,
        ranges: &[std::ops::RangeInclusive<u64>],
        ack_delay: Duration,
        outcome: &mut AckOutcome,
    ) {
        self.inner.on_ack_received(now, ranges, ack_delay, outcome);
    }
    fn on_timeout(&mut self, now: Instant, outcome: &mut AckOutcome) {
        self.inner.on_timeout(now, outcome);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn on_datagram_received(&mut self, now: Instant, size: usize, payload_bytes: usize) {
        self.inner.on_datagram_received(now, size, payload_bytes);
    }
    fn send_allowance(&self, now: Instant) -> SendAllowance {
        self.inner.send_allowance(now)
    }
    fn rtt(&self) -> RttEstimate {
        self.inner.rtt()
    }
    fn rto(&self) -> Duration {
        self.inner.rto()
    }
    fn bytes_in_flight(&self) -> usize {
        self.inner.bytes_in_flight()
    }
    fn has_ack_eliciting_in_flight(&self) -> bool {
        self.inner.has_ack_eliciting_in_flight()
    }
    fn statistics(&self, now: Instant) -> Statistics {
        self.inner.statistics(now)
    }
}

#[derive(Debug, Default)]
struct Factory {
    connections: AtomicU64,
    sent: Arc<AtomicU64>,
}

impl carrier_proto::TrafficControlFactory for Factory {
    fn new_connection(&self, now: Instant, max_datagram_size: usize) -> Box<dyn TrafficControl> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        Box::new(Counting {
            inner: DefaultTrafficControl::new(now, max_datagram_size, TrafficConfig::default()),
            sent: Arc::clone(&self.sent),
        })
    }
}

#[test]
fn a_custom_traffic_control_replaces_the_default() {
    let factory = Arc::new(Factory::default());
    let server = Carrier::new(CarrierDesc {
        traffic_control: Some(factory.clone()),
        ..desc(ThreadMode::Dedicated)
    })
    .unwrap();
    let client = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let (cid, sid) = connect(&server, &client);
    for i in 0..20u8 {
        client
            .send(cid, &[i; 100], Reliability::Reliable, Priority::Normal, 0)
            .unwrap();
    }
    assert!(pump_until(
        &[&server, &client],
        Duration::from_secs(5),
        || { server.pending_messages() == 20 }
    ));
    assert_eq!(
        factory.connections.load(Ordering::Relaxed),
        1,
        "one per connection"
    );
    let sent = factory.sent.load(Ordering::Relaxed);
    assert!(sent > 0, "every datagram of the server passes through it");
    assert!(server.statistics(sid).unwrap().lifetime.packets_sent >= sent);
}

#[test]
fn a_dual_stack_carrier_serves_ipv4_and_ipv6_peers() {
    let server = Carrier::new(CarrierDesc {
        address: None,
        family_type: FamilyType::DualStack,
        ..CarrierDesc::default()
    })
    .unwrap();
    let port = server.port();
    let v4 = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let v6 = Carrier::new(common::desc6(ThreadMode::Dedicated)).unwrap();
    let id4 = v4.connect(&format!("127.0.0.1:{port}")).unwrap();
    let id6 = v6.connect(&format!("[::1]:{port}")).unwrap();
    let ok = pump_until(&[&server, &v4, &v6], Duration::from_secs(5), || {
        v4.connection_state(id4) == carrier::ConnectionState::Connected
            && v6.connection_state(id6) == carrier::ConnectionState::Connected
    });
    assert!(ok, "both families connect to one dual-stack socket");
    v4.send(id4, b"four", Reliability::Reliable, Priority::Normal, 0)
        .unwrap();
    v6.send(id6, b"six", Reliability::Reliable, Priority::Normal, 0)
        .unwrap();
    let mut got = Vec::new();
    assert!(pump_until(
        &[&server, &v4, &v6],
        Duration::from_secs(5),
        || {
            while let Some((_, m)) = server.poll_message() {
                got.push(m.payload.to_vec());
            }
            got.len() == 2
        }
    ));
    got.sort();
    assert_eq!(got, vec![b"four".to_vec(), b"six".to_vec()]);
}
