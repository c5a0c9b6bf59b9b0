//! Small per-connection structures: growth of the queues that an idle connection keeps at one
//! entry, and fragment bitsets that stay inline.

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

/// One bit per fragment of a message: the first 64 inline, the rest (messages of more than 64
/// fragments, which are above 16 KiB) on the heap. Messages split to fill a packet have a few
/// fragments, so tracking them allocates nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct FragmentBits {
    first: u64,
    rest: Vec<u64>,
}

impl FragmentBits {
    /// Room for `count` bits, all clear.
    pub(crate) fn new(count: u64) -> Self {
        let words = usize::try_from(count.div_ceil(64)).unwrap_or(usize::MAX);
        FragmentBits {
            first: 0,
            rest: if words > 1 {
                vec![0; words - 1]
            } else {
                Vec::new()
            },
        }
    }

    /// Whether bit `index` is set (false beyond the room).
    pub(crate) fn get(&self, index: u64) -> bool {
        let mask = 1u64 << (index % 64);
        match index / 64 {
            0 => self.first & mask != 0,
            word => usize::try_from(word - 1)
                .ok()
                .and_then(|w| self.rest.get(w))
                .is_some_and(|w| w & mask != 0),
        }
    }

    /// Sets bit `index`; returns whether it was clear (false beyond the room).
    pub(crate) fn set(&mut self, index: u64) -> bool {
        let mask = 1u64 << (index % 64);
        let word = match index / 64 {
            0 => &mut self.first,
            word => match usize::try_from(word - 1)
                .ok()
                .and_then(|w| self.rest.get_mut(w))
            {
                Some(w) => w,
                None => return false,
            },
        };
        let was_clear = *word & mask == 0;
        *word |= mask;
        was_clear
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_bits_inline_and_beyond() {
        let mut b = FragmentBits::new(3);
        assert!(!b.get(2));
        assert!(b.set(2));
        assert!(!b.set(2), "a bit set twice is reported once");
        assert!(b.get(2) && !b.get(1));
        assert!(!b.set(64), "beyond the room nothing is set");
        assert!(!b.get(64));
        let mut b = FragmentBits::new(130);
        assert!(b.set(129) && b.set(64) && b.set(0));
        assert!(b.get(129) && b.get(64) && b.get(0) && !b.get(128));
        assert!(!b.set(192));
    }

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
