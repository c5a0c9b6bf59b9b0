//! Stateless connect cookies (docs/protocol.md §4.2).
//!
//! A cookie binds a connect request to the initiator's address and connection id and to the time
//! it was issued, under a secret key drawn from the endpoint's seeded random source. Checking it
//! needs no per-request state, so spoofed requests cost the acceptor nothing but one HMAC.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::packet::COOKIE_LEN;

type HmacSha256 = Hmac<Sha256>;

const TAG_LEN: usize = COOKIE_LEN - 4;

/// Issues and checks cookies.
#[derive(Clone)]
pub(crate) struct CookieKey {
    mac: HmacSha256,
    epoch: Instant,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// A key; `epoch` is the instant issue times are counted from.
    pub(crate) fn new(secret: [u8; 32], epoch: Instant) -> Self {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an empty key
        // rather than panic if a future version of the crate disagrees.
        let mac = HmacSha256::new_from_slice(&secret)
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        CookieKey { mac, epoch }
    }

    fn ms_since_epoch(&self, now: Instant) -> u32 {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        u32::try_from(ms).unwrap_or(u32::MAX)
    }

    fn tag(&self, addr: SocketAddr, initiator_id: u32, issued: u32) -> HmacSha256 {
        let mut mac = self.mac.clone();
        match addr {
            SocketAddr::V4(a) => {
                mac.update(&[4]);
                mac.update(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                mac.update(&[6]);
                mac.update(&a.ip().octets());
            }
        }
        mac.update(&addr.port().to_be_bytes());
        mac.update(&initiator_id.to_be_bytes());
        mac.update(&issued.to_be_bytes());
        mac
    }

    /// A cookie for `addr` and `initiator_id`, issued at `now`.
    pub(crate) fn issue(
        &self,
        now: Instant,
        addr: SocketAddr,
        initiator_id: u32,
    ) -> [u8; COOKIE_LEN] {
        let issued = self.ms_since_epoch(now);
        let tag = self.tag(addr, initiator_id, issued).finalize().into_bytes();
        let mut cookie = [0u8; COOKIE_LEN];
        cookie[..4].copy_from_slice(&issued.to_be_bytes());
        cookie[4..].copy_from_slice(&tag[..TAG_LEN]);
        cookie
    }

    /// Whether `cookie` was issued by this key for `addr` and `initiator_id`, not in the future
    /// and at most `lifetime` ago.
    pub(crate) fn verify(
        &self,
        now: Instant,
        addr: SocketAddr,
        initiator_id: u32,
        cookie: &[u8; COOKIE_LEN],
        lifetime: Duration,
    ) -> bool {
        let issued = u32::from_be_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]);
        let now_ms = self.ms_since_epoch(now);
        if issued > now_ms {
            return false;
        }
        let age = Duration::from_millis(u64::from(now_ms - issued));
        if age > lifetime {
            return false;
        }
        self.tag(addr, initiator_id, issued)
            .verify_truncated_left(&cookie[4..])
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // the one real-clock read of these tests: a base instant
    fn base() -> Instant {
        Instant::now()
    }

    #[test]
    fn cookie_is_bound_to_address_id_and_expires() {
        let t0 = base();
        let key = CookieKey::new([7; 32], t0);
        let a: SocketAddr = "198.18.0.1:4000".parse().unwrap();
        let b: SocketAddr = "198.18.0.1:4001".parse().unwrap();
        let now = t0 + Duration::from_secs(3);
        let c = key.issue(now, a, 42);
        let life = Duration::from_secs(10);
        assert!(key.verify(now + Duration::from_secs(1), a, 42, &c, life));
        assert!(!key.verify(now, b, 42, &c, life), "other port");
        assert!(!key.verify(now, a, 43, &c, life), "other id");
        assert!(
            !key.verify(now + Duration::from_secs(11), a, 42, &c, life),
            "expired"
        );
        assert!(!key.verify(t0, a, 42, &c, life), "issued in the future");
        let other_key = CookieKey::new([8; 32], t0);
        assert!(!other_key.verify(now, a, 42, &c, life), "other secret");
        let mut forged = c;
        forged[19] ^= 1;
        assert!(!key.verify(now, a, 42, &forged, life), "flipped bit");
        assert!(
            !key.verify(now, a, 42, &[0; COOKIE_LEN], life),
            "empty cookie"
        );
    }
}
