//! Sends from several game threads at once on one `Carrier` (it is `Send + Sync`): every message
//! arrives, each channel in order; `Target::AllConnected` broadcasts; `send` reports each
//! `SendError` variant.

mod common;

use std::sync::Arc;
use std::time::Duration;

use carrier::{
    Carrier, CarrierDesc, CarrierEvent, ChannelId, ConnectionId, ConnectionState, Priority,
    Reliability, SendError, Target, ThreadMode,
};
use common::{connect, desc, pump_until, serial, shutdown_all};

const THREADS: u8 = 4;
const PER_THREAD: u32 = 500;

fn message(channel: u8, i: u32) -> Vec<u8> {
    let mut m = vec![channel];
    m.extend_from_slice(&i.to_be_bytes());
    m.resize(5 + (i as usize % 64), channel);
    m
}

#[test]
fn carrier_is_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Carrier>();
    send_sync::<Arc<Carrier>>();
}

fn four_game_threads(server_mode: ThreadMode) {
    let _serial = serial();
    let server = Carrier::new(desc(server_mode)).unwrap();
    let client = Arc::new(Carrier::new(desc(ThreadMode::Dedicated)).unwrap());
    let (cid, sid) = connect(&server, &client);

    // Four game threads send reliable messages, each on its own channel (channels 0 and 2 at
    // Normal priority, 1 and 3 at High), while this thread receives.
    let senders: Vec<_> = (0..THREADS)
        .map(|ch| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let priority = if ch % 2 == 0 {
                        Priority::Normal
                    } else {
                        Priority::High
                    };
                    loop {
                        match client.send(cid, &message(ch, i), Reliability::Reliable, priority, ch)
                        {
                            Ok(()) => break,
                            Err(SendError::QueueFull { .. }) => {
                                std::thread::sleep(Duration::from_millis(1))
                            }
                            Err(e) => panic!("thread {ch}: {e}"),
                        }
                    }
                    if i % 50 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut next = [0u32; THREADS as usize];
    let ok = pump_until(&[&server, &client], Duration::from_secs(15), || {
        for ch in 0..THREADS {
            while let Some(m) = server.receive(sid, ch) {
                let i = u32::from_be_bytes([m[1], m[2], m[3], m[4]]);
                assert_eq!(m[0], ch, "message on the wrong channel");
                assert_eq!(&m[..], &message(ch, i)[..], "damaged");
                assert_eq!(i, next[ch as usize], "channel {ch} out of order");
                next[ch as usize] += 1;
            }
        }
        next.iter().all(|n| *n == PER_THREAD)
    });
    for s in senders {
        s.join().expect("a sending thread panicked");
    }
    assert!(ok, "received {next:?} of {PER_THREAD} per channel");
    assert_eq!(server.pending_messages(), 0);
    shutdown_all(&[&server, &client]);
}

#[test]
fn four_game_threads_send_at_once_threaded_peer() {
    four_game_threads(ThreadMode::Dedicated);
}

#[test]
fn four_game_threads_send_at_once_manual_peer() {
    four_game_threads(ThreadMode::Manual);
}

#[test]
fn scoped_threads_send_and_receive_concurrently() {
    let _serial = serial();
    // Both directions at once, from scoped threads borrowing the carriers; the server echoes on
    // its own thread.
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let client = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let (cid, sid) = connect(&server, &client);
    let n = 300u32;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..n {
                client
                    .send(
                        cid,
                        &message(1, i),
                        Reliability::Reliable,
                        Priority::Normal,
                        1,
                    )
                    .unwrap();
            }
        });
        s.spawn(|| {
            let mut echoed = 0;
            let ok = pump_until(&[&server], Duration::from_secs(10), || {
                while let Some(m) = server.receive(sid, 1) {
                    server
                        .send(sid, &m, Reliability::Reliable, Priority::Normal, 2)
                        .unwrap();
                    echoed += 1;
                }
                echoed == n
            });
            assert!(ok, "echoed {echoed}");
        });
        let mut back = 0u32;
        let ok = pump_until(&[&client], Duration::from_secs(10), || {
            while let Some(m) = client.receive(cid, 2) {
                assert_eq!(&m[..], &message(1, back)[..]);
                back += 1;
            }
            back == n
        });
        assert!(ok, "got back {back}");
    });
    shutdown_all(&[&server, &client]);
}

#[test]
fn broadcast_to_all_connected() {
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let clients: Vec<Carrier> = (0..3)
        .map(|_| Carrier::new(desc(ThreadMode::Dedicated)).unwrap())
        .collect();
    let ids: Vec<(ConnectionId, ConnectionId)> =
        clients.iter().map(|c| connect(&server, c)).collect();
    // A fourth peer that is still connecting (it talks to a socket that never answers) is not
    // "connected" and is skipped.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let pending = server
        .connect(&silent.local_addr().unwrap().to_string())
        .unwrap();
    assert_eq!(
        server.connection_state(pending),
        ConnectionState::Connecting
    );

    for i in 0..10u32 {
        server
            .send(
                Target::AllConnected,
                &message(3, i),
                Reliability::Reliable,
                Priority::Normal,
                3,
            )
            .unwrap();
    }
    let mut all: Vec<&Carrier> = clients.iter().collect();
    all.push(&server);
    let mut got = [0u32; 3];
    let ok = pump_until(&all, Duration::from_secs(5), || {
        for (k, c) in clients.iter().enumerate() {
            while let Some(m) = c.receive(ids[k].0, 3) {
                assert_eq!(&m[..], &message(3, got[k])[..], "client {k}");
                got[k] += 1;
            }
        }
        got.iter().all(|g| *g == 10)
    });
    assert!(ok, "{got:?}");
    // A disconnected client no longer counts.
    clients[0].disconnect(ids[0].0);
    let ok = pump_until(&all, Duration::from_secs(3), || {
        let mut gone = false;
        while let Some(e) = server.poll_event() {
            gone |= matches!(e, CarrierEvent::Disconnect { id, .. } if id == ids[0].1);
        }
        gone
    });
    assert!(ok);
    server
        .send(
            Target::AllConnected,
            b"bye",
            Reliability::Reliable,
            Priority::Normal,
            0,
        )
        .unwrap();
    let mut bye = [false; 3];
    pump_until(&all, Duration::from_secs(5), || {
        for k in 1..3 {
            bye[k] |= clients[k].receive(ids[k].0, 0).is_some();
        }
        bye[1] && bye[2]
    });
    assert_eq!(bye, [false, true, true]);
    shutdown_all(&all);
}

#[test]
fn send_errors() {
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let client = Carrier::new(CarrierDesc {
        max_message_size: 64 * 1024,
        ..desc(ThreadMode::Dedicated)
    })
    .unwrap();
    let (cid, sid) = connect(&server, &client);
    let r = Reliability::Reliable;
    let p = Priority::Normal;

    // Unknown connection.
    let nobody = ConnectionId::from_raw(987_654);
    assert_eq!(
        client.send(nobody, b"x", r, p, 0),
        Err(SendError::UnknownConnection(nobody))
    );
    // Not connected: a connection still connecting.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let connecting = client
        .connect(&silent.local_addr().unwrap().to_string())
        .unwrap();
    assert_eq!(
        client.send(connecting, b"x", r, p, 0),
        Err(SendError::NotConnected(connecting))
    );
    // Invalid channel (8 channels by default).
    assert_eq!(
        client.send(cid, b"x", r, p, 8),
        Err(SendError::InvalidChannel {
            channel: ChannelId::new(8),
            count: 8
        })
    );
    assert!(matches!(
        client.send(cid, b"x", r, p, 255),
        Err(SendError::InvalidChannel { .. })
    ));
    // Too large: the client allows 64 KiB, the server 1 MiB; the agreed maximum is 64 KiB on
    // both sides.
    let max = 64 * 1024;
    assert_eq!(
        client.send(cid, &vec![0; max + 1], r, p, 0),
        Err(SendError::TooLarge { size: max + 1, max })
    );
    assert_eq!(
        server.send(sid, &vec![0; max + 1], Reliability::Unreliable, p, 0),
        Err(SendError::TooLarge { size: max + 1, max })
    );
    // Exactly the maximum is fine, and arrives.
    client.send(cid, &vec![7; max], r, p, 0).unwrap();
    let mut got = None;
    let ok = pump_until(&[&server, &client], Duration::from_secs(5), || {
        got = got.take().or_else(|| server.receive(sid, 0));
        got.is_some()
    });
    assert!(ok);
    assert_eq!(got.unwrap().len(), max);
    // Broadcast reports the error of the connections that refused.
    assert!(matches!(
        client.send(Target::AllConnected, b"x", r, p, 9),
        Err(SendError::InvalidChannel { .. })
    ));
    // After a disconnect the connection refuses to send.
    client.disconnect(cid);
    assert!(matches!(
        client.send(cid, b"x", r, p, 0),
        Err(SendError::NotConnected(_) | SendError::UnknownConnection(_))
    ));
    shutdown_all(&[&server, &client]);
}
