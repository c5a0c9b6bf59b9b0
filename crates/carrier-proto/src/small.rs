//! Growth of the per-connection queues that an idle connection keeps at one entry.

use std::collections::VecDeque;

/// Makes room for one more entry in `q`, growing a queue of capacity 1 to 2 instead of the 4
/// that `VecDeque` grows to. An idle connection's queues (sent-packet ledgers, ACK ranges) hold
/// one entry most of the time and two now and then (a keep-alive and an ACK in flight); they
/// are shrunk back to 1 when idle, and entries are 16 to 80 B, so stopping at 2 keeps up to
/// 240 B per queue off an idle connection. Busier queues grow by doubling as before.
#[inline]
pub(crate) fn reserve_one<T>(q: &mut VecDeque<T>) {
    if q.capacity() == 1 && q.len() == 1 {
        q.reserve_exact(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_one_to_two_then_doubles() {
        let mut q = VecDeque::with_capacity(1);
        let mut caps = Vec::new();
        for i in 0..5u64 {
            reserve_one(&mut q);
            q.push_back(i);
            caps.push(q.capacity());
        }
        assert_eq!(caps[..3], [1, 2, 4]);
        assert!(caps[4] >= 5);
    }
}
