//! Pooled payload buffers: the endpoint copies message payloads into shared chunks and hands out
//! [`Bytes`] slices of them, so a steady flow of messages allocates nothing per message
//! (docs/performance.md, "Allocations per message").
//!
//! A [`PayloadArena`] fills one chunk (a [`BytesMut`]) with payloads, each cut off as a frozen
//! `Bytes` that shares the chunk. When the chunk is full it is reused in place if every payload
//! cut from it is gone; otherwise one of up to [`SPARE_CHUNKS`] earlier chunks is reused the same
//! way, and only if none is free is a new chunk allocated (twice the size of the last one, from
//! [`MIN_CHUNK`] up to [`MAX_CHUNK`], so an endpoint that sends little keeps little). The cost is
//! two allocations (the buffer and the shared header `bytes` gives it) per new chunk, amortized
//! over every payload it ever holds.
//!
//! **Memory.** A payload keeps its whole chunk alive. The arena holds at most
//! `1 + SPARE_CHUNKS` chunks itself; chunks it let go live on until their last payload is
//! dropped. The protocol therefore never keeps arena payloads for long: out-of-order received
//! messages are copied into their own buffers when they are queued, reassembled messages are
//! copied into the arena when delivered at once (their reassembly buffers are pooled, up to
//! [`SPARE_REASSEMBLY`] of up to [`MAX_POOLED`] bytes) and keep their own buffers when queued, and the send side detaches (copies out) payloads that are lost or that
//! wait long in a send queue (`send.rs`; a deep queue into an arena of its own). Payloads
//! above [`MAX_POOLED`] always get their own buffer. A received payload the application keeps
//! pins its chunk (at most [`MAX_CHUNK`]);
//! applications that keep payloads for long should copy them.

use bytes::{Bytes, BytesMut};

/// Size of the first chunk.
pub(crate) const MIN_CHUNK: usize = 8 * 1024;
/// Largest chunk.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;
/// Largest payload copied into a chunk; larger ones get a buffer of their own.
pub(crate) const MAX_POOLED: usize = 4 * 1024;
/// Earlier chunks kept for reuse besides the current one.
pub(crate) const SPARE_CHUNKS: usize = 3;

/// Copies payloads into shared, reused chunks (module docs).
#[derive(Debug, Default)]
pub(crate) struct PayloadArena {
    /// The chunk being filled: empty, its capacity is what is left of the chunk.
    current: BytesMut,
    /// Whether `current` is a chunk (rather than the initial empty buffer).
    started: bool,
    /// Earlier chunks, oldest first.
    spare: Vec<BytesMut>,
    /// Size of the next chunk to allocate.
    next_size: usize,
    /// Chunks allocated so far.
    chunks_allocated: u64,
    /// Reassembly buffers given back once their message was copied out, for the next
    /// reassembly ([`take_buffer`](Self::take_buffer)); at most [`SPARE_REASSEMBLY`], each of
    /// at most [`MAX_POOLED`] bytes.
    reassembly: Vec<Vec<u8>>,
}

/// Reassembly buffers an arena keeps for reuse.
pub(crate) const SPARE_REASSEMBLY: usize = 4;

impl PayloadArena {
    /// A copy of `data` as `Bytes`: a slice of a shared chunk, or a buffer of its own above
    /// [`MAX_POOLED`].
    #[inline]
    pub(crate) fn copy(&mut self, data: &[u8]) -> Bytes {
        if data.is_empty() {
            return Bytes::new();
        }
        if data.len() > MAX_POOLED {
            return Bytes::copy_from_slice(data);
        }
        if self.current.capacity() < data.len() {
            self.next_chunk(data.len());
        }
        self.current.extend_from_slice(data);
        self.current.split().freeze()
    }

    /// A zeroed buffer of `len` bytes for a reassembly: a pooled one when one is large
    /// enough, else a new one.
    pub(crate) fn take_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = match self.reassembly.iter().position(|b| b.capacity() >= len) {
            Some(i) => self.reassembly.swap_remove(i),
            None => Vec::new(),
        };
        buf.clear();
        buf.resize(len, 0);
        buf
    }

    /// The message a reassembly buffer holds, as `Bytes`: up to [`MAX_POOLED`] bytes copied
    /// into the arena and the buffer kept for the next reassembly; larger ones keep their
    /// buffer.
    pub(crate) fn finish_buffer(&mut self, buf: Vec<u8>) -> Bytes {
        if buf.len() > MAX_POOLED || buf.capacity() > MAX_POOLED {
            return Bytes::from(buf);
        }
        let message = self.copy(&buf);
        if self.reassembly.len() < SPARE_REASSEMBLY {
            if self.reassembly.capacity() == 0 {
                self.reassembly.reserve_exact(SPARE_REASSEMBLY);
            }
            self.reassembly.push(buf);
        }
        message
    }

    /// Chunks allocated so far (each is two allocations: buffer and shared header).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn chunks_allocated(&self) -> u64 {
        self.chunks_allocated
    }

    /// Makes `current` a chunk with room for `needed` bytes: the current chunk or a spare one
    /// whose payloads are all gone, else a new one.
    fn next_chunk(&mut self, needed: usize) {
        if self.started && self.current.try_reclaim(needed) && self.current.capacity() >= needed {
            return;
        }
        if let Some(i) = self
            .spare
            .iter_mut()
            .position(|c| c.try_reclaim(needed) && c.capacity() >= needed)
        {
            let free = self.spare.remove(i);
            let full = std::mem::replace(&mut self.current, free);
            self.spare.push(full);
            return;
        }
        let size = if self.started {
            self.next_size.clamp(MIN_CHUNK, MAX_CHUNK)
        } else {
            MIN_CHUNK
        };
        self.next_size = size.saturating_mul(2);
        let full = std::mem::replace(&mut self.current, BytesMut::with_capacity(size));
        self.chunks_allocated += 1;
        if self.started {
            if self.spare.len() >= SPARE_CHUNKS {
                // The oldest chunk lives on until its last payload is dropped.
                self.spare.remove(0);
            }
            if self.spare.capacity() == 0 {
                self.spare.reserve_exact(SPARE_CHUNKS);
            }
            self.spare.push(full);
        }
        self.started = true;
    }
}

/// Copies of the payloads delivered from one received packet: the first copy copies the
/// packet's bytes into the arena once, and every payload is then a slice of that copy (a
/// reference count, not a copy per message). The chunk is shared as with
/// [`PayloadArena::copy`]; packets above [`MAX_POOLED`] copy each payload on its own.
pub(crate) struct PacketCopy<'a> {
    arena: &'a mut PayloadArena,
    packet: &'a [u8],
    /// The packet's copy, once a payload was copied.
    shared: Option<Bytes>,
}

impl<'a> PacketCopy<'a> {
    /// Copies from `packet` (lazily) into `arena`.
    pub(crate) fn new(arena: &'a mut PayloadArena, packet: &'a [u8]) -> Self {
        PacketCopy {
            arena,
            packet,
            shared: None,
        }
    }

    /// A copy of `payload`: a slice of the packet's copy if `payload` lies in the packet, else
    /// [`PayloadArena::copy`].
    pub(crate) fn copy(&mut self, payload: &[u8]) -> Bytes {
        let start = payload
            .as_ptr()
            .addr()
            .wrapping_sub(self.packet.as_ptr().addr());
        let inside = start <= self.packet.len() && payload.len() <= self.packet.len() - start;
        if !inside || payload.is_empty() || self.packet.len() > MAX_POOLED {
            return self.arena.copy(payload);
        }
        let (arena, packet) = (&mut *self.arena, self.packet);
        self.shared
            .get_or_insert_with(|| arena.copy(packet))
            .slice(start..start + payload.len())
    }

    /// [`PayloadArena::take_buffer`] of the arena.
    pub(crate) fn take_buffer(&mut self, len: usize) -> Vec<u8> {
        self.arena.take_buffer(len)
    }

    /// [`PayloadArena::finish_buffer`] of the arena.
    pub(crate) fn finish_buffer(&mut self, buf: Vec<u8>) -> Bytes {
        self.arena.finish_buffer(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_is_copied_once_and_payloads_outside_it_on_their_own() {
        let mut a = PayloadArena::default();
        let packet: Vec<u8> = (0..200u8).collect();
        let other = [9u8; 5];
        let mut c = PacketCopy::new(&mut a, &packet);
        let x = c.copy(&packet[10..20]);
        let y = c.copy(&packet[150..200]);
        let z = c.copy(&other);
        assert_eq!(
            (&x[..], &y[..], &z[..]),
            (&packet[10..20], &packet[150..200], &other[..])
        );
        assert!(c.copy(&packet[3..3]).is_empty());
        // x and y are slices of one copy of the packet, z follows it in the chunk.
        assert_eq!(y.as_ptr().addr() - x.as_ptr().addr(), 140);
        assert_eq!(z.as_ptr().addr() - x.as_ptr().addr(), 190);
        let big = vec![1u8; MAX_POOLED + 1];
        let mut c = PacketCopy::new(&mut a, &big);
        assert_eq!(c.copy(&big[..10]).len(), 10);
        assert_eq!(
            a.chunks_allocated(),
            1,
            "a large packet's payloads are copied on their own"
        );
    }

    #[test]
    fn reassembly_buffers_are_reused_and_large_ones_kept_by_their_message() {
        let mut a = PayloadArena::default();
        let mut buf = a.take_buffer(1_500);
        assert_eq!(buf, vec![0; 1_500]);
        buf[0] = 7;
        let ptr = buf.as_ptr();
        let m = a.finish_buffer(buf);
        assert_eq!((m.len(), m[0]), (1_500, 7));
        // The next reassembly of up to that size gets the same buffer, zeroed.
        let again = a.take_buffer(1_000);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(again, vec![0; 1_000]);
        // A message above MAX_POOLED keeps its buffer: no copy, nothing pooled.
        let big = a.take_buffer(MAX_POOLED + 1);
        let big_ptr = big.as_ptr();
        let m = a.finish_buffer(big);
        assert_eq!(m.as_ptr(), big_ptr);
        assert!(a.reassembly.is_empty());
    }

    #[test]
    fn payloads_share_chunks_that_are_reused_once_released() {
        let mut a = PayloadArena::default();
        let mut kept = Vec::new();
        for i in 0..1_000u32 {
            let p = a.copy(&i.to_le_bytes().repeat(16));
            assert_eq!(&p[..4], &i.to_le_bytes());
            kept.push(p);
            if kept.len() > 100 {
                kept.remove(0);
            }
        }
        // 64 000 bytes in flight 6 400 at a time: the first chunks are reused.
        assert!(a.chunks_allocated() <= 3, "{}", a.chunks_allocated());
        drop(kept);
        let before = a.chunks_allocated();
        for i in 0..10_000u32 {
            drop(a.copy(&i.to_le_bytes().repeat(16)));
        }
        assert_eq!(a.chunks_allocated(), before, "released chunks are reused");
    }

    #[test]
    fn held_payloads_keep_their_bytes_and_large_ones_stand_alone() {
        let mut a = PayloadArena::default();
        let held: Vec<Bytes> = (0..5_000u32)
            .map(|i| a.copy(&i.to_le_bytes().repeat(50)))
            .collect();
        for (i, p) in held.iter().enumerate() {
            assert_eq!(&p[..], &(i as u32).to_le_bytes().repeat(50)[..]);
        }
        let chunks = a.chunks_allocated();
        let big = a.copy(&vec![7u8; MAX_POOLED + 1]);
        assert_eq!(big.len(), MAX_POOLED + 1);
        assert!(big.is_unique(), "large payloads have their own buffer");
        assert_eq!(a.chunks_allocated(), chunks);
        assert!(a.spare.len() <= SPARE_CHUNKS);
        assert!(a.copy(&[]).is_empty());
    }
}
