//! Every `ConfigError` of `CarrierDesc::validate`: each invalid field is refused by `validate`
//! and by `Carrier::new` with `CarrierError::Config` naming the field; a port already in use is
//! `CarrierError::Driver` with code `SocketBind`; a CPU that does not exist is reported as an
//! event, not an error.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carrier::driver::{Driver, DriverError, DriverErrorCode, Outgoing, RecvMeta, Wake};
use carrier::{Carrier, CarrierDesc, CarrierError, CarrierEvent, FamilyType, ThreadMode};
use common::desc;

/// A driver that carries nothing (for the fields that only apply to the default driver).
struct Null;
struct NullWake;

impl Wake for NullWake {
    fn wake(&self) {}
}

impl Driver for Null {
    fn local_addr(&self) -> SocketAddr {
        "198.18.0.1:1".parse().unwrap()
    }
    fn max_payload(&self) -> usize {
        1_200
    }
    fn send(&mut self, _: Instant, _: &[Outgoing<'_>], _: &mut dyn FnMut(SocketAddr, DriverError)) {
    }
    fn recv(
        &mut self,
        _: Instant,
        _: &mut [Vec<u8>],
        _: &mut [RecvMeta],
    ) -> Result<usize, DriverError> {
        Ok(0)
    }
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), DriverError> {
        std::thread::sleep(
            timeout
                .unwrap_or(Duration::from_millis(5))
                .min(Duration::from_millis(5)),
        );
        Ok(())
    }
    fn waker(&self) -> Arc<dyn Wake> {
        Arc::new(NullWake)
    }
}

/// Asserts `validate` and `Carrier::new` both refuse `make()` because of `field`.
#[track_caller]
fn refused(field: &str, make: impl Fn() -> CarrierDesc) {
    let d = make();
    let shown = format!("{d:?}");
    let e = d
        .validate()
        .expect_err(&format!("validate accepted {shown}"));
    assert_eq!(e.field(), field, "validate: {e}");
    assert!(
        e.to_string().contains(field),
        "the message names the field: {e}"
    );
    match Carrier::new(make()) {
        Err(CarrierError::Config(e)) => assert_eq!(e.field(), field, "Carrier::new: {e}"),
        Err(other) => panic!("Carrier::new for `{field}`: {other}"),
        Ok(_) => panic!("Carrier::new accepted an invalid `{field}`"),
    }
}

fn base() -> CarrierDesc {
    desc(ThreadMode::Manual)
}

#[test]
fn defaults_are_valid() {
    CarrierDesc::default().validate().unwrap();
    base().validate().unwrap();
    // The edges of each range are valid.
    for d in [
        CarrierDesc {
            thread_update_time_ms: 100,
            ..base()
        },
        CarrierDesc {
            thread_update_time_ms: 0,
            ..base()
        },
        CarrierDesc {
            connection_evaluation_threshold: 0.0,
            ..base()
        },
        CarrierDesc {
            connection_evaluation_threshold: 1.0,
            ..base()
        },
        CarrierDesc {
            disconnect_detection_packet_loss_threshold: 1.0,
            ..base()
        },
        CarrierDesc {
            thread_priority: -20,
            ..base()
        },
        CarrierDesc {
            thread_priority: 19,
            ..base()
        },
        CarrierDesc {
            thread_cpu_id: -1,
            ..base()
        },
        CarrierDesc {
            shutdown_timeout_ms: 60_000,
            ..base()
        },
        CarrierDesc {
            channel_count: 255,
            ..base()
        },
        CarrierDesc {
            connection_retry_interval_base_ms: 50,
            connection_retry_interval_max_ms: 50,
            ..base()
        },
        CarrierDesc {
            address: Some("localhost".into()),
            ..base()
        },
        CarrierDesc {
            address: Some(String::new()),
            ..base()
        },
    ] {
        let shown = format!("{d:?}");
        d.validate().unwrap_or_else(|e| panic!("{shown}: {e}"));
    }
}

#[test]
fn thread_update_time_above_100_ms() {
    refused("thread_update_time_ms", || CarrierDesc {
        thread_update_time_ms: 101,
        ..base()
    });
}

#[test]
fn connection_timeout_zero() {
    refused("connection_timeout_ms", || CarrierDesc {
        connection_timeout_ms: 0,
        ..base()
    });
}

#[test]
fn connection_evaluation_threshold_out_of_range() {
    for v in [-0.1, 1.01, f32::NAN, f32::INFINITY] {
        refused("connection_evaluation_threshold", || CarrierDesc {
            connection_evaluation_threshold: v,
            ..base()
        });
    }
}

#[test]
fn packet_loss_threshold_out_of_range() {
    for v in [-0.5, 1.5, f32::NAN] {
        refused("disconnect_detection_packet_loss_threshold", || {
            CarrierDesc {
                disconnect_detection_packet_loss_threshold: v,
                ..base()
            }
        });
    }
}

#[test]
fn rtt_threshold_not_positive() {
    for v in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        refused("disconnect_detection_rtt_threshold", || CarrierDesc {
            disconnect_detection_rtt_threshold: v,
            ..base()
        });
    }
}

#[test]
fn driver_buffer_sizes_with_a_custom_driver() {
    refused("driver_receive_buffer_size", || CarrierDesc {
        driver: Some(Box::new(Null)),
        driver_receive_buffer_size: 1 << 20,
        ..base()
    });
    refused("driver_send_buffer_size", || CarrierDesc {
        driver: Some(Box::new(Null)),
        driver_send_buffer_size: 1 << 20,
        ..base()
    });
    // Without the sizes, the custom driver is fine.
    let c = Carrier::new(CarrierDesc {
        driver: Some(Box::new(Null)),
        ..base()
    })
    .unwrap();
    assert_eq!(c.local_addr(), "198.18.0.1:1".parse().unwrap());
    assert_eq!(c.message_mtu(), carrier_proto::message_mtu(1_200));
}

#[test]
fn thread_cpu_id_below_minus_one() {
    refused("thread_cpu_id", || CarrierDesc {
        thread_cpu_id: -2,
        ..base()
    });
}

#[test]
fn thread_priority_out_of_range() {
    for v in [-21, 20, i32::MIN, i32::MAX] {
        refused("thread_priority", || CarrierDesc {
            thread_priority: v,
            ..base()
        });
    }
}

#[test]
fn retry_interval_base_zero_or_max_below_base() {
    refused("connection_retry_interval_base_ms", || CarrierDesc {
        connection_retry_interval_base_ms: 0,
        ..base()
    });
    refused("connection_retry_interval_max_ms", || CarrierDesc {
        connection_retry_interval_base_ms: 100,
        connection_retry_interval_max_ms: 99,
        ..base()
    });
}

#[test]
fn channel_count_zero() {
    refused("channel_count", || CarrierDesc {
        channel_count: 0,
        ..base()
    });
}

#[test]
fn max_message_size_zero() {
    refused("max_message_size", || CarrierDesc {
        max_message_size: 0,
        ..base()
    });
}

#[test]
fn max_message_size_above_the_protocol_limit() {
    refused("max_message_size", || CarrierDesc {
        max_message_size: u32::MAX,
        ..base()
    });
}

#[test]
fn shutdown_timeout_above_a_minute() {
    refused("shutdown_timeout_ms", || CarrierDesc {
        shutdown_timeout_ms: 60_001,
        ..base()
    });
}

#[test]
fn unknown_bind_address() {
    refused("address", || CarrierDesc {
        address: Some("no-such-host.invalid".into()),
        ..base()
    });
    refused("address", || CarrierDesc {
        address: Some("300.1.2.3".into()),
        ..base()
    });
}

#[test]
fn bind_address_of_the_wrong_family() {
    refused("address", || CarrierDesc {
        address: Some("::1".into()),
        family_type: FamilyType::Ipv4,
        ..base()
    });
    refused("address", || CarrierDesc {
        address: Some("127.0.0.1".into()),
        family_type: FamilyType::Ipv6,
        ..base()
    });
    refused("address", || CarrierDesc {
        address: Some("127.0.0.1".into()),
        family_type: FamilyType::DualStack,
        ..base()
    });
}

#[test]
fn port_in_use_is_a_socket_bind_driver_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for mode in [ThreadMode::Manual, ThreadMode::Dedicated] {
        match Carrier::new(CarrierDesc { port, ..desc(mode) }) {
            Err(CarrierError::Driver(e)) => {
                assert_eq!(e.code, DriverErrorCode::SocketBind, "{e}");
                assert_eq!(e.code.code(), 5);
            }
            Err(other) => panic!("expected a SocketBind driver error, got {other}"),
            Ok(c) => panic!("bound {} although the port is taken", c.local_addr()),
        }
    }
    // The same port on another address family is free.
    let v6 = Carrier::new(CarrierDesc {
        port,
        ..common::desc6(ThreadMode::Manual)
    });
    if let Ok(c) = v6 {
        assert_eq!(c.port(), port);
    }
}

#[test]
fn a_cpu_that_does_not_exist_is_an_event_not_an_error() {
    let c = Carrier::new(CarrierDesc {
        thread_cpu_id: 1_000_000,
        ..desc(ThreadMode::Dedicated)
    })
    .unwrap();
    let e = c.wait_event(Duration::from_secs(5));
    assert!(
        matches!(e, Some(CarrierEvent::ThreadSetupFailed { ref message }) if message.contains("1000000")),
        "{e:?}"
    );
}

#[test]
fn receive_coalescing_above_10_ms() {
    refused("thread_receive_coalescing_us", || CarrierDesc {
        thread_receive_coalescing_us: carrier::MAX_RECEIVE_COALESCING_US + 1,
        ..base()
    });
}
