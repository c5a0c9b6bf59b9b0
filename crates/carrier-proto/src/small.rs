//! Growth of the per-connection queues that an idle connection keeps at one entry.

use std::collections::VecDeque;

/// Makes room for one more entry in `q`, growing a full queue of capacity below 5 by one entry
/// (0 -> 1 -> 2 -> 3 -> 4 -> 5) instead of to the 4 and 8 that `VecDeque` grows to. An idle
/// connection's queues (sent-packet ledgers, ACK ranges) hold one entry most of the time; the
/// side that sends the keep-alives while its peer acknowledges them lazily holds up to five
/// (a PING every 100 ms for the 500 ms of the lazy ACK delay; a server whose loop runs every
/// 10 ms is that side for more of its connections). They are shrunk back to 1 once the ACK
/// comes, and the entries of both sent ledgers are 128 B together, so growing to 5 rather
/// than 6 keeps 128 to 256 B off such a connection, for one more reallocation per cycle. From
/// 5 on, queues grow by doubling as before.
#[inline]
pub(crate) fn reserve_one<T>(q: &mut VecDeque<T>) {
    if q.len() == q.capacity() && q.capacity() < 5 {
        q.reserve_exact(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_one_to_five_then_doubles() {
        let mut q = VecDeque::new();
        let mut caps = Vec::new();
        for i in 0..7u64 {
            reserve_one(&mut q);
            q.push_back(i);
            caps.push(q.capacity());
        }
        assert_eq!(caps[..5], [1, 2, 3, 4, 5]);
        assert!(caps[5] >= 10);
    }
}
