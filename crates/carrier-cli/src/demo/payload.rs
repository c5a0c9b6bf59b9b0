//! The demo's messages. Each payload is a pure function of its kind and sequence number, so the
//! receiver checks the order (the sequence number) and the integrity (the bytes) of everything it
//! gets without any side channel.
//!
//! - **State** (`S`): `S`, the sequence number (u64 LE), an entity count `n` (5..=15), then `n`
//!   positions of three `f32` (LE): 70 to 190 bytes, like a game's position snapshot.
//! - **Chat** (`C`): `C`, the sequence number, a text length (u32 LE), then the text. Every fourth
//!   chat message carries a 2,000–6,000-byte text, larger than the message MTU, so it is split
//!   into fragments and reassembled.

use std::fmt::Write as _;

/// What a demo message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Game state: unreliable, channel 0, high priority, 30 per second.
    State,
    /// Chat and game events: reliable, channel 1, normal priority, a few per second.
    Chat,
}

const HEADER: usize = 9;

/// The payload of state message `seq`.
pub fn state(seq: u64) -> Vec<u8> {
    let n = 5 + (seq % 11) as usize;
    let mut p = Vec::with_capacity(HEADER + 1 + n * 12);
    p.push(b'S');
    p.extend_from_slice(&seq.to_le_bytes());
    p.push(n as u8);
    let t = (seq % 100_000) as f32 * 0.033;
    for e in 0..n {
        let phase = t + e as f32;
        for v in [phase.cos() * 10.0, phase.sin() * 10.0, e as f32] {
            p.extend_from_slice(&v.to_le_bytes());
        }
    }
    p
}

/// Whether chat message `seq` is one of the large ones (split into fragments).
pub fn is_large_chat(seq: u64) -> bool {
    seq % 4 == 3
}

/// The payload of chat message `seq`.
pub fn chat(seq: u64) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "gg",
        "nice shot",
        "regroup at B",
        "need ammo",
        "flag taken",
        "lag?",
        "wp",
        "rush mid",
    ];
    let mut text = format!("#{seq} {}", WORDS[(seq % 8) as usize]);
    if is_large_chat(seq) {
        let target = 2_000 + (seq.wrapping_mul(397) % 4_000) as usize;
        let mut i = 0u64;
        while text.len() < target {
            let _ = write!(text, " {}", WORDS[((seq + i) % 8) as usize]);
            i += 1;
        }
    }
    let mut p = Vec::with_capacity(HEADER + 4 + text.len());
    p.push(b'C');
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&(text.len() as u32).to_le_bytes());
    p.extend_from_slice(text.as_bytes());
    p
}

/// The payload of message `seq` of `kind`.
pub fn encode(kind: Kind, seq: u64) -> Vec<u8> {
    match kind {
        Kind::State => state(seq),
        Kind::Chat => chat(seq),
    }
}

/// What a receiver makes of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The kind, from the first byte.
    pub kind: Kind,
    /// The sequence number.
    pub seq: u64,
    /// Whether every byte is what the sender of `seq` produced.
    pub intact: bool,
}

/// Reads a payload; `None` if it is not a demo message at all.
pub fn decode(payload: &[u8]) -> Option<Decoded> {
    let kind = match payload.first()? {
        b'S' => Kind::State,
        b'C' => Kind::Chat,
        _ => return None,
    };
    let seq = u64::from_le_bytes(payload.get(1..HEADER)?.try_into().ok()?);
    let intact = encode(kind, seq) == payload;
    Some(Decoded { kind, seq, intact })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_60_to_200_bytes_and_round_trips() {
        for seq in 0..100 {
            let p = state(seq);
            assert!((60..=200).contains(&p.len()), "{}", p.len());
            assert_eq!(
                decode(&p),
                Some(Decoded {
                    kind: Kind::State,
                    seq,
                    intact: true
                })
            );
        }
    }

    #[test]
    fn one_chat_in_four_is_larger_than_the_mtu() {
        for seq in 0..40 {
            let p = chat(seq);
            if is_large_chat(seq) {
                assert!(p.len() > 1_400 && p.len() < 6_100, "{}", p.len());
            } else {
                assert!(p.len() < 100);
            }
            assert!(decode(&p).unwrap().intact);
        }
    }

    #[test]
    fn damage_is_detected() {
        let mut p = chat(3);
        let last = p.len() - 1;
        p[last] ^= 1;
        assert_eq!(decode(&p).map(|d| d.intact), Some(false));
        assert_eq!(decode(&p[..5]), None);
        assert_eq!(decode(b"xyz"), None);
        assert_eq!(decode(b""), None);
    }
}
