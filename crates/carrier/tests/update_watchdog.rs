//! The update watchdog (the original's `EC_UPDATE_TIMEOUT`): in dedicated mode, a game thread
//! that stops calling `update()` for longer than the connection timeout gets one
//! `SecurityError { error: UpdateTimeout }`, raised once per silence.
//!
//! In this implementation `update()`, `poll_event()` and `wait_event()` all count as "the game
//! is alive" (each marks it on entry). So the test reads events only after a silence, with
//! `poll_event`; the events raised during the silence are already queued by then.

mod common;

use std::time::Duration;

use carrier::{Carrier, CarrierDesc, CarrierEvent, SecurityError, ThreadMode};
use common::{desc, now};

fn update_timeouts(c: &Carrier) -> usize {
    let mut n = 0;
    while let Some(e) = c.poll_event() {
        match e {
            CarrierEvent::SecurityError {
                id: None,
                error: SecurityError::UpdateTimeout,
            } => n += 1,
            CarrierEvent::SecurityError { .. } => panic!("unexpected {e:?}"),
            _ => {}
        }
    }
    n
}

fn watched(timeout_ms: u32) -> Carrier {
    Carrier::new(CarrierDesc {
        connection_timeout_ms: timeout_ms,
        ..desc(ThreadMode::Dedicated)
    })
    .unwrap()
}

#[test]
fn silence_longer_than_the_timeout_raises_update_timeout_once() {
    let c = watched(500);
    c.update();
    // Three timeouts of silence: one event, not three.
    std::thread::sleep(Duration::from_millis(1_600));
    assert_eq!(update_timeouts(&c), 1, "one UpdateTimeout per silence");

    // A game that calls update() every 50 ms gets none.
    let started = now();
    let mut during = 0;
    while now() - started < Duration::from_millis(1_200) {
        c.update();
        during += update_timeouts(&c);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(during, 0, "UpdateTimeout while updating every 50 ms");

    // A new silence raises it again, once.
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(
        update_timeouts(&c),
        1,
        "the watchdog re-arms after updates resume"
    );
}

#[test]
fn silence_shorter_than_the_timeout_raises_nothing() {
    let c = watched(1_000);
    for _ in 0..4 {
        c.update();
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(update_timeouts(&c), 0);
}

#[test]
fn no_watchdog_without_disconnect_detection_or_in_manual_mode() {
    let off = Carrier::new(CarrierDesc {
        connection_timeout_ms: 300,
        enable_disconnect_detection: false,
        ..desc(ThreadMode::Dedicated)
    })
    .unwrap();
    // Manual mode: update() does the I/O itself, so there is nothing to watch.
    let manual = Carrier::new(CarrierDesc {
        connection_timeout_ms: 300,
        ..desc(ThreadMode::Manual)
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(1_000));
    manual.update();
    assert_eq!(update_timeouts(&off), 0);
    assert_eq!(update_timeouts(&manual), 0);
}

#[test]
fn blocking_in_wait_event_is_not_a_stalled_game() {
    let c = watched(500);
    // A tool without a frame loop waits for events; nothing happens for 1.5 s.
    let e = c.wait_event(Duration::from_millis(1_500));
    assert_eq!(
        e, None,
        "a thread blocked in wait_event is not a stalled game thread"
    );
}
