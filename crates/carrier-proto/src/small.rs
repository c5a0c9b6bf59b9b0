//! Growth of the per-connection queues that an idle connection keeps at one entry.

use std::collections::VecDeque;

/// Makes room for one more entry in `q`, growing a full queue of capacity below 3 by one entry
/// (0 -> 1 -> 2 -> 3) instead of to the 4 that `VecDeque` grows to. An idle connection's queues
/// (sent-packet ledgers, ACK ranges) hold one entry most of the time and two or three now and
/// then (a keep-alive and ACKs in flight, more when the server's loop runs every 10 ms); they
/// are shrunk back to 1 when idle, and entries are 16 to 80 B, so stopping at 2 or 3 keeps up
/// to 240 B per queue off an idle connection. From 3 on, queues grow by doubling as before.
#[inline]
pub(crate) fn reserve_one<T>(q: &mut VecDeque<T>) {
    if q.len() == q.capacity() && q.capacity() < 3 {
        q.reserve_exact(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_one_to_three_then_doubles() {
        let mut q = VecDeque::new();
        let mut caps = Vec::new();
        for i in 0..5u64 {
            reserve_one(&mut q);
            q.push_back(i);
            caps.push(q.capacity());
        }
        assert_eq!(caps[..3], [1, 2, 3]);
        assert!(caps[3] >= 6);
    }
}
