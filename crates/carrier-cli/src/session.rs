//! What `listen` and `connect` share: address parsing, event and message lines, statistics.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use carrier::{Carrier, CarrierEvent, ConnectionId, FamilyType, Message, Reliability, Statistics};

use crate::CliError;
use crate::format::{bytes, millis, percent, preview};

/// How often the command loops poll the carrier.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Where to bind: the address (None = any), the port and the family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bind {
    pub address: Option<String>,
    pub port: u16,
    pub family: FamilyType,
}

fn address_error(address: &str, reason: impl Into<String>) -> CliError {
    CliError::Address {
        address: address.to_string(),
        reason: reason.into(),
    }
}

/// Resolves `host:port` (or a bare IP with port, or `[v6]:port`), preferring IPv4.
pub(crate) fn resolve(address: &str) -> Result<SocketAddr, CliError> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok(a);
    }
    let candidates: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| address_error(address, format!("{e} (expected HOST:PORT)")))?
        .collect();
    candidates
        .iter()
        .find(|a| a.is_ipv4())
        .or(candidates.first())
        .copied()
        .ok_or_else(|| address_error(address, "the name has no address"))
}

/// Parses the `listen` address: `HOST:PORT`, `[IPV6]:PORT` or a bare port (any IPv4 address).
/// The unspecified IPv6 address `[::]` listens on IPv6 and IPv4 (dual stack).
pub(crate) fn parse_bind(address: &str) -> Result<Bind, CliError> {
    let addr = match address.trim().parse::<u16>() {
        Ok(port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        Err(_) => resolve(address.trim())?,
    };
    let family = match addr.ip() {
        IpAddr::V4(_) => FamilyType::Ipv4,
        IpAddr::V6(ip) if ip.is_unspecified() => FamilyType::DualStack,
        IpAddr::V6(_) => FamilyType::Ipv6,
    };
    let address = (!addr.ip().is_unspecified()).then(|| addr.ip().to_string());
    Ok(Bind {
        address,
        port: addr.port(),
        family,
    })
}

/// The family a client needs to reach `peer`.
pub(crate) fn family_for(peer: SocketAddr) -> FamilyType {
    if peer.is_ipv4() {
        FamilyType::Ipv4
    } else {
        FamilyType::Ipv6
    }
}

/// Seconds since `start`, as a line prefix: `[  1.234s]`.
pub(crate) fn stamp(start: Instant) -> String {
    format!(
        "[{:8.3}s]",
        crate::now().saturating_duration_since(start).as_secs_f64()
    )
}

/// One line describing an event.
pub(crate) fn describe_event(carrier: &Carrier, event: &CarrierEvent) -> String {
    match event {
        CarrierEvent::IncomingConnection { id, addr } => format!("{id} incoming from {addr}"),
        CarrierEvent::ConnectionEstablished { id } => {
            let peer = carrier
                .remote_addr(*id)
                .map_or_else(|| "?".to_string(), |a| a.to_string());
            let mtu = carrier
                .connection_message_mtu(*id)
                .unwrap_or_else(|| carrier.message_mtu());
            format!("{id} established with {peer} (message MTU {mtu} bytes)")
        }
        CarrierEvent::FailedToConnect { id, reason } => format!("{id} failed to connect: {reason}"),
        CarrierEvent::Disconnect { id, reason } => format!("{id} disconnected: {reason}"),
        CarrierEvent::DriverError {
            id: Some(id),
            error,
        } => format!("{id} driver error: {error}"),
        CarrierEvent::DriverError { id: None, error } => format!("driver error: {error}"),
        CarrierEvent::SecurityError {
            id: Some(id),
            error,
        } => format!("{id} security: {error}"),
        CarrierEvent::SecurityError { id: None, error } => format!("security: {error}"),
        CarrierEvent::RateChange {
            id,
            bytes_per_second,
        } => format!("{id} send rate now {}/s", bytes(*bytes_per_second)),
        CarrierEvent::ThreadSetupFailed { message } => {
            format!("carrier thread setup failed: {message}")
        }
        other => format!("{other:?}"),
    }
}

/// One line describing a received message.
pub(crate) fn describe_message(id: ConnectionId, message: &Message) -> String {
    let reliability = match message.reliability {
        Reliability::Reliable => "reliable",
        Reliability::Unreliable => "unreliable",
    };
    format!(
        "{id} {} {reliability} {:?} {} bytes: {}",
        message.channel,
        message.priority,
        message.payload.len(),
        preview(&message.payload)
    )
}

/// A connection's statistics in two lines.
pub(crate) fn describe_statistics(stats: &Statistics) -> [String; 2] {
    let life = &stats.lifetime;
    let eff = &stats.effective_lifetime;
    let rtt = if stats.rtt.has_samples {
        format!(
            "rtt {} smoothed, {} min",
            millis(stats.rtt.smoothed),
            millis(stats.rtt.min)
        )
    } else {
        "rtt not measured yet".to_string()
    };
    [
        format!(
            "{rtt}; {} datagrams lost of {} sent ({})",
            life.packets_lost,
            life.packets_sent,
            percent(f64::from(life.packet_loss))
        ),
        format!(
            "sent {} ({} of messages), received {} ({} of messages)",
            bytes(life.bytes_sent),
            bytes(eff.bytes_sent),
            bytes(life.bytes_received),
            bytes(eff.bytes_received)
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!(
            parse_bind("0.0.0.0:4000").unwrap(),
            Bind {
                address: None,
                port: 4000,
                family: FamilyType::Ipv4
            }
        );
        assert_eq!(
            parse_bind("[::1]:5000").unwrap(),
            Bind {
                address: Some("::1".into()),
                port: 5000,
                family: FamilyType::Ipv6
            }
        );
        assert_eq!(
            parse_bind("[::]:5000").unwrap().family,
            FamilyType::DualStack
        );
        assert_eq!(parse_bind("4001").unwrap().port, 4001);
        assert!(matches!(
            parse_bind("nonsense"),
            Err(CliError::Address { .. })
        ));
    }

    #[test]
    fn resolve_prefers_ipv4() {
        assert_eq!(
            resolve("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
        assert!(resolve("localhost:9").unwrap().port() == 9);
        assert!(resolve("127.0.0.1").is_err());
    }
}

/// Parses a positive number of seconds (`--duration`).
pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{v} s is outside 0 < SECS <= 86400"))
    }
}

#[cfg(test)]
mod secs_tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_secs("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("inf").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
