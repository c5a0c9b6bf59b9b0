//! Seeds: the `CARRIER_SIM_SEED` override and the per-direction streams.
//!
//! A whole [`NetworkSimulator`](crate::NetworkSimulator) run is reproducible from one `u64`.
//! Each direction gets its own stream, [`link_seed`]`(seed, direction)`, so the inbound and
//! outbound links are independent of each other yet both fixed by the seed. To replay a run
//! without changing code, set `CARRIER_SIM_SEED` (decimal, or hexadecimal with `0x`) and build the
//! simulator with [`NetworkSimulator::new`](crate::NetworkSimulator::new); it logs the seed it
//! uses at `debug` level (target `carrier_sim`) and reports it from
//! [`Simulator::seed`](crate::Simulator::seed).

use crate::datagram::Direction;

/// Name of the environment variable that overrides the seed of
/// [`NetworkSimulator::new`](crate::NetworkSimulator::new).
pub const SEED_ENV_VAR: &str = "CARRIER_SIM_SEED";

/// Parses a seed: decimal (`12345`) or hexadecimal with a `0x`/`0X` prefix (`0xdeadBEEF`),
/// surrounding whitespace and `_` separators allowed. `None` if it is empty, malformed or does not
/// fit in a `u64`.
pub fn parse_seed(s: &str) -> Option<u64> {
    let s: String = s.trim().chars().filter(|&c| c != '_').collect();
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s.as_str(), 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The seed given by `CARRIER_SIM_SEED`, if it is set and parses (see [`parse_seed`]). A value
/// that does not parse is ignored with a `warn` log.
pub fn seed_from_env() -> Option<u64> {
    let value = std::env::var(SEED_ENV_VAR).ok()?;
    let seed = parse_seed(&value);
    if seed.is_none() {
        tracing::warn!(value = %value, "ignoring {SEED_ENV_VAR}: not a decimal or 0x-hex u64");
    }
    seed
}

/// The seed of one direction's [`Link`](crate::Link) inside a
/// [`NetworkSimulator`](crate::NetworkSimulator) seeded with `seed` (a SplitMix64 finalizer over
/// the seed and a per-direction constant). Build a `Link::new(config, link_seed(seed, d))` to
/// replay one direction alone.
pub fn link_seed(seed: u64, direction: Direction) -> u64 {
    let tag: u64 = match direction {
        Direction::Inbound => 0x696e_626f_756e_6421, // "inbound!"
        Direction::Outbound => 0x6f75_7462_6f75_6e64, // "outbound"
    };
    let mut z = seed ^ tag;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal() {
        assert_eq!(parse_seed("0"), Some(0));
        assert_eq!(parse_seed("12345"), Some(12345));
        assert_eq!(parse_seed("  42\n"), Some(42));
        assert_eq!(parse_seed("1_000"), Some(1000));
        assert_eq!(parse_seed("18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn parses_hex() {
        assert_eq!(parse_seed("0x10"), Some(16));
        assert_eq!(parse_seed("0XdeadBEEF"), Some(0xdead_beef));
        assert_eq!(parse_seed("0xffffffffffffffff"), Some(u64::MAX));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "   ",
            "0x",
            "-1",
            "+1",
            "12a",
            "0xg",
            "1.5",
            "18446744073709551616",
            "0x1ffffffffffffffff",
            "seed",
        ] {
            assert_eq!(parse_seed(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn directions_get_distinct_stable_streams() {
        assert_ne!(
            link_seed(7, Direction::Inbound),
            link_seed(7, Direction::Outbound)
        );
        assert_ne!(
            link_seed(7, Direction::Inbound),
            link_seed(8, Direction::Inbound)
        );
        assert_eq!(
            link_seed(7, Direction::Inbound),
            link_seed(7, Direction::Inbound)
        );
    }
}
