//! `CarrierDesc::simulator`: every datagram a carrier sends or receives passes through it. With
//! 50 ms of latency each way on one side, both sides measure an RTT of at least 100 ms; with
//! 20 % loss each way, reliable messages still all arrive, in order.

mod common;

use std::time::Duration;

use carrier::{
    Carrier, CarrierDesc, NetworkSimulator, Priority, Reliability, SimConfig, ThreadMode,
};
use carrier_sim::{Direction, LinkConfig};
use common::{connect, desc, pump_until, serial, shutdown_all};

fn simulated(link: LinkConfig, seed: u64, mode: ThreadMode) -> CarrierDesc {
    CarrierDesc {
        simulator: Some(Box::new(
            NetworkSimulator::new(SimConfig::symmetric(link, seed)).unwrap(),
        )),
        ..desc(mode)
    }
}

fn latency(mode: ThreadMode) {
    let _serial = serial();
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let client = Carrier::new(simulated(
        LinkConfig::new().with_fixed_latency_ms(50.0),
        1,
        mode,
    ))
    .unwrap();
    let (cid, sid) = connect(&server, &client);
    // Traffic both ways for a second gives both sides RTT samples.
    let both = [&server, &client];
    let mut echoed = 0;
    for i in 0..10u8 {
        client
            .send(cid, &[i], Reliability::Reliable, Priority::Normal, 0)
            .unwrap();
    }
    let ok = pump_until(&both, Duration::from_secs(5), || {
        while let Some(m) = server.receive(sid, 0) {
            server
                .send(sid, &m, Reliability::Reliable, Priority::Normal, 0)
                .unwrap();
        }
        while client.receive(cid, 0).is_some() {
            echoed += 1;
        }
        echoed == 10
    });
    assert!(ok, "echoed {echoed}");
    pump_until(&both, Duration::from_millis(500), || false);
    for (who, c, id) in [("client", &client, cid), ("server", &server, sid)] {
        let rtt = c.statistics(id).unwrap().rtt;
        assert!(rtt.has_samples, "{who}: {rtt:?}");
        // 50 ms out + 50 ms back through the client's simulator.
        assert!(rtt.min >= Duration::from_millis(100), "{who}: {rtt:?}");
        assert!(rtt.smoothed >= Duration::from_millis(100), "{who}: {rtt:?}");
        assert!(rtt.smoothed < Duration::from_secs(1), "{who}: {rtt:?}");
    }
    // The simulator saw the traffic both ways.
    let (inbound, outbound) = client
        .with_simulator(|s| (s.stats(Direction::Inbound), s.stats(Direction::Outbound)))
        .unwrap();
    assert!(
        inbound.packets_out >= 5 && outbound.packets_out >= 5,
        "{inbound:?} {outbound:?}"
    );
    shutdown_all(&both);
}

#[test]
fn latency_50ms_each_way_gives_rtt_of_100ms_threaded() {
    latency(ThreadMode::Dedicated);
}

#[test]
fn latency_50ms_each_way_gives_rtt_of_100ms_manual() {
    latency(ThreadMode::Manual);
}

fn lossy(mode: ThreadMode) {
    let _serial = serial();
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let client = Carrier::new(simulated(
        LinkConfig::new().with_fixed_latency_ms(5.0).with_loss(0.2),
        42,
        mode,
    ))
    .unwrap();
    let (cid, sid) = connect(&server, &client);
    // 300 messages of 200 bytes each way: about 50 datagrams each way.
    let n = 300u32;
    let message = |i: u32| {
        let mut m = common::pattern(i, 200);
        m[..4].copy_from_slice(&i.to_be_bytes());
        m
    };
    for i in 0..n {
        client
            .send(cid, &message(i), Reliability::Reliable, Priority::Normal, 1)
            .unwrap();
        server
            .send(sid, &message(i), Reliability::Reliable, Priority::Normal, 2)
            .unwrap();
    }
    let both = [&server, &client];
    let (mut up, mut down) = (0u32, 0u32);
    let ok = pump_until(&both, Duration::from_secs(15), || {
        while let Some(m) = server.receive(sid, 1) {
            assert_eq!(&m[..], &message(up)[..], "client → server out of order");
            up += 1;
        }
        while let Some(m) = client.receive(cid, 2) {
            assert_eq!(&m[..], &message(down)[..], "server → client out of order");
            down += 1;
        }
        up == n && down == n
    });
    assert!(ok, "delivered {up} up and {down} down of {n}");
    let (inbound, outbound) = client
        .with_simulator(|s| (s.stats(Direction::Inbound), s.stats(Direction::Outbound)))
        .unwrap();
    assert!(
        inbound.dropped_loss + outbound.dropped_loss >= 5,
        "the simulator lost nothing: {inbound:?} {outbound:?}"
    );
    let stats = client.statistics(cid).unwrap();
    assert!(
        stats.lifetime.bytes_resent > 0,
        "nothing was resent: {stats:?}"
    );
    shutdown_all(&both);
}

#[test]
fn reliable_messages_survive_20_percent_loss_in_order_threaded() {
    lossy(ThreadMode::Dedicated);
}

#[test]
fn reliable_messages_survive_20_percent_loss_in_order_manual() {
    lossy(ThreadMode::Manual);
}

#[test]
fn a_disabled_simulator_passes_everything_through() {
    // SimConfig::enabled = false: the original's simulator before Enable(); no latency.
    let mut config = SimConfig::symmetric(LinkConfig::new().with_fixed_latency_ms(200.0), 3);
    config.enabled = false;
    let client = Carrier::new(CarrierDesc {
        simulator: Some(Box::new(NetworkSimulator::new(config).unwrap())),
        ..desc(ThreadMode::Dedicated)
    })
    .unwrap();
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let (cid, _) = connect(&server, &client);
    pump_until(&[&server, &client], Duration::from_millis(400), || false);
    let rtt = client.statistics(cid).unwrap().rtt;
    assert!(
        rtt.has_samples && rtt.smoothed < Duration::from_millis(100),
        "{rtt:?}"
    );
    // Enabled at run time, the latency applies. An idle connection's PINGs are acknowledged
    // lazily (up to 500 ms, docs/protocol.md §12), so a sample takes up to ~1.4 s here.
    assert_eq!(client.with_simulator(|s| s.set_enabled(true)), Some(()));
    pump_until(&[&server, &client], Duration::from_millis(3_000), || false);
    let rtt = client.statistics(cid).unwrap().rtt;
    assert!(rtt.latest >= Duration::from_millis(400), "{rtt:?}");
    shutdown_all(&[&server, &client]);
}
