//! Duplication and corruption rates; a corrupted datagram differs in exactly one bit.

mod common;

use carrier_sim::{Link, LinkConfig};
use common::{base, numbered, seq_of};

#[test]
fn duplication_happens_at_the_configured_rate() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_duplicate(0.10), 21).unwrap();
    let n = 50_000u32;
    let mut copies = vec![0u8; n as usize];
    for i in 0..n {
        let sent = numbered(i, 32);
        link.push(t0, sent.clone());
        while let Some(d) = link.poll(t0) {
            assert_eq!(d, sent, "a copy is identical to its original");
            copies[seq_of(&d) as usize] += 1;
        }
    }
    let dups = copies.iter().filter(|&&c| c == 2).count();
    assert!(copies.iter().all(|&c| c == 1 || c == 2));
    assert_eq!(dups as u64, link.stats().duplicated);
    let rate = dups as f64 / f64::from(n);
    assert!((rate - 0.10).abs() < 0.01, "duplication rate {rate}");
    assert_eq!(link.stats().packets_out, u64::from(n) + dups as u64);
}

#[test]
fn corruption_flips_exactly_one_bit_at_the_configured_rate() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_corrupt(0.05), 22).unwrap();
    let n = 50_000u32;
    let mut corrupted = 0u64;
    let mut bits_hit = [0u32; 8];
    for i in 0..n {
        let sent = numbered(i, 64);
        link.push(t0, sent.clone());
        // No latency and no reordering: the output is this datagram.
        let got = link.poll(t0).expect("nothing is dropped");
        assert_eq!(got.payload.len(), sent.payload.len());
        let flipped: u32 = got
            .payload
            .iter()
            .zip(&sent.payload)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert!(flipped <= 1, "{flipped} bits flipped");
        if flipped == 1 {
            corrupted += 1;
            let (byte, diff) = got
                .payload
                .iter()
                .zip(&sent.payload)
                .map(|(a, b)| a ^ b)
                .enumerate()
                .find(|(_, x)| *x != 0)
                .unwrap();
            assert!(byte < 64);
            bits_hit[diff.trailing_zeros() as usize] += 1;
        }
        assert_eq!((got.from, got.to), (sent.from, sent.to));
    }
    assert_eq!(corrupted, link.stats().corrupted);
    let rate = corrupted as f64 / f64::from(n);
    assert!((rate - 0.05).abs() < 0.005, "corruption rate {rate}");
    // Any bit position can be hit.
    assert!(bits_hit.iter().all(|&c| c > 0), "{bits_hit:?}");
}

#[test]
fn empty_datagrams_pass_uncorrupted() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_corrupt(1.0), 23).unwrap();
    let from = numbered(0, 4);
    for _ in 0..100 {
        link.push(
            t0,
            carrier_sim::Datagram::new(from.from, from.to, Vec::new()),
        );
        assert_eq!(link.poll(t0).map(|d| d.payload.len()), Some(0));
    }
    assert_eq!(link.stats().corrupted, 0);
}

#[test]
fn duplicates_and_originals_are_corrupted_independently() {
    let t0 = base();
    let cfg = LinkConfig::default().with_duplicate(1.0).with_corrupt(0.5);
    let mut link = Link::new(cfg, 24).unwrap();
    let mut differ = 0;
    for i in 0..1000 {
        link.push(t0, numbered(i, 64));
        let a = link.poll(t0).unwrap();
        let b = link.poll(t0).unwrap();
        if a != b {
            differ += 1;
        }
    }
    // Two independent 50 % draws differ ≥ 50 % of the time.
    assert!(differ > 400, "{differ}");
    assert_eq!(link.stats().duplicated, 1000);
}
