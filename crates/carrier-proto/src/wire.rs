//! Byte cursors and variable-length integers: the lowest layer of the wire format.
//!
//! Everything Carrier puts on the wire is read through a [`Reader`] and written through a
//! [`Writer`]. Both are bounds-checked cursors over a borrowed byte slice: a read past the end
//! returns [`WireError::Truncated`], a write past the end returns [`WireError::BufferTooSmall`]
//! and leaves the buffer untouched (space is checked before any byte is written). Neither ever
//! panics or allocates, whatever the input, so they are safe to point at attacker-controlled
//! datagrams.
//!
//! Fixed-width integers are big-endian (network order). Variable-length integers ("varints")
//! use the encoding of RFC 9000 §16, described byte by byte in docs/protocol.md §2 Encoding:
//! the two most significant bits of the first byte give the total length, and the remaining
//! bits hold the value, big-endian.
//!
//! | prefix | length  | usable bits | range                   |
//! |--------|---------|-------------|-------------------------|
//! | `00`   | 1 byte  | 6           | 0 ..= 63                |
//! | `01`   | 2 bytes | 14          | 0 ..= 16 383            |
//! | `10`   | 4 bytes | 30          | 0 ..= 1 073 741 823     |
//! | `11`   | 8 bytes | 62          | 0 ..= [`VARINT_MAX`]    |
//!
//! The writer always emits the shortest encoding; the reader accepts any (non-minimal
//! encodings are valid, as in QUIC).

/// Largest value a varint can carry: 2^62 − 1.
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// Error from reading or writing wire data.
///
/// ```
/// use carrier_proto::wire::{Reader, WireError};
/// let mut r = Reader::new(&[0x01]);
/// assert_eq!(r.u16(), Err(WireError::Truncated));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended before the field did.
    #[error("datagram truncated")]
    Truncated,
    /// A field is present but its value is not allowed (the text names the field or rule).
    #[error("malformed field: {0}")]
    Malformed(&'static str),
    /// The output buffer has no room for the value being written.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Number of bytes the shortest varint encoding of `v` takes: 1, 2, 4 or 8.
///
/// Values above [`VARINT_MAX`] cannot be encoded; for them this returns 8 (the caller's
/// [`Writer::put_varint`] will then fail with [`WireError::Malformed`]).
///
/// ```
/// use carrier_proto::wire::varint_len;
/// assert_eq!(varint_len(63), 1);
/// assert_eq!(varint_len(64), 2);
/// ```
pub const fn varint_len(v: u64) -> usize {
    if v < (1 << 6) {
        1
    } else if v < (1 << 14) {
        2
    } else if v < (1 << 30) {
        4
    } else {
        8
    }
}

/// A bounds-checked reading cursor over a received datagram.
///
/// Every read either returns the value and advances, or returns [`WireError::Truncated`] and
/// leaves the cursor where it was.
///
/// ```
/// use carrier_proto::wire::Reader;
/// let mut r = Reader::new(&[0x12, 0x34, 0x40, 0x25, 0xff]);
/// assert_eq!(r.u16(), Ok(0x1234));
/// assert_eq!(r.varint(), Ok(37)); // non-minimal 2-byte encoding of 37
/// assert_eq!(r.position(), 4);
/// assert_eq!(r.rest(), &[0xff]);
/// assert!(r.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    /// Bytes not read yet.
    rest: &'a [u8],
    /// Bytes read so far.
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Creates a reader positioned at the first byte of `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf, pos: 0 }
    }

    /// Number of bytes not read yet.
    pub const fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Whether every byte has been read.
    pub const fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Number of bytes read so far (offset of the next byte from the start of the buffer).
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// Reads exactly `n` bytes and returns them without copying.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(WireError::Truncated)?;
        self.rest = tail;
        // `n <= original length`, and the sum of all consumed lengths never exceeds the length
        // of the original slice, so this cannot overflow; saturate anyway rather than trust it.
        self.pos = self.pos.saturating_add(n);
        Ok(head)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), WireError> {
        self.bytes(n).map(|_| ())
    }

    /// Reads all remaining bytes (possibly none); the reader is empty afterwards.
    pub fn rest(&mut self) -> &'a [u8] {
        let all = self.rest;
        self.rest = &[];
        self.pos = self.pos.saturating_add(all.len());
        all
    }

    /// Returns the next byte without consuming it.
    pub fn peek_u8(&self) -> Result<u8, WireError> {
        self.rest.first().copied().ok_or(WireError::Truncated)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated)?;
        self.rest = tail;
        self.pos = self.pos.saturating_add(N);
        Ok(*head)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        self.array::<1>().map(|[b]| b)
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_be_bytes)
    }

    /// Reads a varint (docs/protocol.md §2 Encoding). Non-minimal encodings are accepted.
    ///
    /// On [`WireError::Truncated`] nothing is consumed, not even the length prefix.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let first = self.peek_u8()?;
        let v = match first >> 6 {
            0 => u64::from(self.u8()?),
            1 => u64::from(self.u16()? & 0x3fff),
            2 => u64::from(self.u32()? & 0x3fff_ffff),
            _ => self.u64()? & VARINT_MAX,
        };
        Ok(v)
    }
}

/// A bounds-checked writing cursor over a caller-provided output buffer.
///
/// Every write either fits entirely or fails with nothing written, so a caller that gets
/// [`WireError::BufferTooSmall`] can stop and send what [`Writer::written`] holds.
///
/// ```
/// use carrier_proto::wire::{WireError, Writer};
/// let mut buf = [0u8; 4];
/// let mut w = Writer::new(&mut buf);
/// w.put_u8(0xaa)?;
/// w.put_varint(15293)?; // 2 bytes: 0x7b 0xbd
/// assert_eq!(w.put_u16(1), Err(WireError::BufferTooSmall)); // only 1 byte left
/// assert_eq!(w.written(), &[0xaa, 0x7b, 0xbd]);
/// assert_eq!(w.remaining(), 1);
/// # Ok::<(), WireError>(())
/// ```
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    /// Bytes written so far; invariant: `len <= buf.len()`.
    len: usize,
}

impl<'a> Writer<'a> {
    /// Creates a writer that fills `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Number of bytes written so far.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written yet.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of bytes that can still be written.
    pub const fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.len)
    }

    /// Total size of the underlying buffer (written plus remaining).
    pub const fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Writes `bytes` entirely, or nothing if they do not fit.
    pub fn put_bytes(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(WireError::BufferTooSmall)?;
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(WireError::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Claims the next `n` bytes and returns them to be filled, or nothing if they do not fit.
    pub(crate) fn reserve(&mut self, n: usize) -> Result<&mut [u8], WireError> {
        let end = self.len.checked_add(n).ok_or(WireError::BufferTooSmall)?;
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(WireError::BufferTooSmall)?;
        self.len = end;
        Ok(dst)
    }

    /// Writes one byte.
    pub fn put_u8(&mut self, v: u8) -> Result<(), WireError> {
        self.put_bytes(&[v])
    }

    /// Writes a big-endian `u16`.
    pub fn put_u16(&mut self, v: u16) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian `u32`.
    pub fn put_u32(&mut self, v: u32) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian `u64`.
    pub fn put_u64(&mut self, v: u64) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes `v` as a varint in its shortest encoding (docs/protocol.md §2 Encoding).
    ///
    /// Fails with [`WireError::Malformed`] if `v > VARINT_MAX` (checked before the space), and
    /// with [`WireError::BufferTooSmall`] if the encoding does not fit; either way nothing is
    /// written.
    pub fn put_varint(&mut self, v: u64) -> Result<(), WireError> {
        if v > VARINT_MAX {
            return Err(WireError::Malformed("varint above 2^62-1"));
        }
        match varint_len(v) {
            // The range checks of `varint_len` make each narrowing below lossless.
            1 => self.put_u8(v as u8),
            2 => self.put_u16(v as u16 | 0x4000),
            4 => self.put_u32(v as u32 | 0x8000_0000),
            _ => self.put_u64(v | 0xc000_0000_0000_0000),
        }
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Ends writing and returns the written part of the buffer (borrowed for the buffer's
    /// whole lifetime).
    pub fn into_written(self) -> &'a mut [u8] {
        let len = self.len;
        self.buf.get_mut(..len).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(v: u64) -> Vec<u8> {
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.put_varint(v).unwrap();
        w.written().to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<(u64, usize), WireError> {
        let mut r = Reader::new(bytes);
        let v = r.varint()?;
        Ok((v, r.position()))
    }

    /// RFC 9000 §A.1 sample varints, decoded.
    #[test]
    fn varint_decodes_rfc9000_examples() {
        let cases: &[(&[u8], u64)] = &[
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
            (&[0x40, 0x25], 37), // non-minimal: accepted
        ];
        for &(bytes, value) in cases {
            assert_eq!(decode(bytes), Ok((value, bytes.len())), "{bytes:02x?}");
        }
    }

    /// The same examples, encoded: the writer picks the minimal length (37 is one byte).
    #[test]
    fn varint_encodes_rfc9000_examples() {
        assert_eq!(
            encode(151_288_809_941_952_652),
            [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]
        );
        assert_eq!(encode(494_878_333), [0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(encode(15_293), [0x7b, 0xbd]);
        assert_eq!(encode(37), [0x25]);
    }

    #[test]
    fn varint_length_boundaries() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (63, &[0x3f]),
            (64, &[0x40, 0x40]),
            (16_383, &[0x7f, 0xff]),
            (16_384, &[0x80, 0x00, 0x40, 0x00]),
            ((1 << 30) - 1, &[0xbf, 0xff, 0xff, 0xff]),
            (1 << 30, &[0xc0, 0, 0, 0, 0x40, 0, 0, 0]),
            (VARINT_MAX, &[0xff; 8]),
        ];
        for &(v, bytes) in cases {
            assert_eq!(encode(v), bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len(), "{v}");
            assert_eq!(decode(bytes), Ok((v, bytes.len())), "{v}");
        }
    }

    #[test]
    fn varint_above_max_is_rejected_and_writes_nothing() {
        let mut buf = [0u8; 16];
        let mut w = Writer::new(&mut buf);
        assert!(matches!(
            w.put_varint(VARINT_MAX + 1),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            w.put_varint(u64::MAX),
            Err(WireError::Malformed(_))
        ));
        assert!(w.is_empty());
    }

    #[test]
    fn varint_truncated_consumes_nothing() {
        for bytes in [&[0x40][..], &[0x80, 1, 2], &[0xc0, 1, 2, 3, 4, 5, 6]] {
            let mut r = Reader::new(bytes);
            assert_eq!(r.varint(), Err(WireError::Truncated));
            assert_eq!(r.position(), 0);
            assert_eq!(r.remaining(), bytes.len());
        }
        assert_eq!(Reader::new(&[]).varint(), Err(WireError::Truncated));
    }

    #[test]
    fn fixed_width_reads_are_big_endian() {
        let bytes = [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
        ];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.peek_u8(), Ok(1));
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u32(), Ok(0x0405_0607));
        assert_eq!(r.u64(), Ok(0x0809_0a0b_0c0d_0e0f));
        assert_eq!(r.position(), 15);
        assert_eq!(r.u32(), Err(WireError::Truncated));
        assert_eq!(r.position(), 15, "failed read consumes nothing");
        assert_eq!(r.bytes(2), Ok(&[16u8, 17][..]));
        assert_eq!(r.bytes(2), Err(WireError::Truncated));
        assert_eq!(r.rest(), &[18]);
        assert_eq!(r.rest(), &[] as &[u8]);
        assert_eq!(r.position(), 18);
        assert_eq!(r.peek_u8(), Err(WireError::Truncated));
        assert_eq!(r.bytes(usize::MAX), Err(WireError::Truncated));
        assert_eq!(r.bytes(0), Ok(&[] as &[u8]));
    }

    #[test]
    fn fixed_width_writes_are_big_endian_and_all_or_nothing() {
        let mut buf = [0u8; 16];
        let mut w = Writer::new(&mut buf);
        w.put_u8(1).unwrap();
        w.put_u16(0x0203).unwrap();
        w.put_u32(0x0405_0607).unwrap();
        assert_eq!(w.len(), 7);
        w.put_bytes(&[8, 9, 10, 11, 12, 13, 14, 15]).unwrap();
        assert_eq!(w.put_u64(0), Err(WireError::BufferTooSmall));
        assert_eq!(w.put_u32(0), Err(WireError::BufferTooSmall));
        assert_eq!(w.put_u16(0), Err(WireError::BufferTooSmall));
        assert_eq!(w.len(), 15);
        assert_eq!(w.put_bytes(&[16, 17]), Err(WireError::BufferTooSmall));
        assert_eq!(w.put_varint(16_384), Err(WireError::BufferTooSmall));
        w.put_u8(16).unwrap();
        assert_eq!(w.remaining(), 0);
        assert_eq!(w.put_u8(0), Err(WireError::BufferTooSmall));
        assert_eq!(w.put_bytes(&[]), Ok(()));
        assert_eq!(w.capacity(), 16);
        let out = w.into_written();
        assert_eq!(
            out,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        U8,
        U16,
        U32,
        U64,
        Varint,
        Bytes(usize),
        Peek,
        Rest,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::U8),
            Just(Op::U16),
            Just(Op::U32),
            Just(Op::U64),
            Just(Op::Varint),
            (0usize..40).prop_map(Op::Bytes),
            Just(Op::Peek),
            Just(Op::Rest),
        ]
    }

    proptest! {
        #[test]
        fn varint_round_trips(v in 0..=VARINT_MAX) {
            let bytes = encode(v);
            prop_assert_eq!(bytes.len(), varint_len(v));
            prop_assert_eq!(decode(&bytes), Ok((v, bytes.len())));
        }

        /// Any length prefix may carry any value that fits it.
        #[test]
        fn varint_non_minimal_decodes(v in 0..=VARINT_MAX, extra in 0u32..4) {
            let min = varint_len(v).trailing_zeros();
            let exp = min.max(extra);
            let len = 1usize << exp;
            let mut bytes = v.to_be_bytes()[8 - len..].to_vec();
            bytes[0] |= (exp as u8) << 6;
            prop_assert_eq!(decode(&bytes), Ok((v, len)));
        }

        /// A reader on arbitrary bytes never panics and agrees with a simple slice model.
        #[test]
        fn reader_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            ops in proptest::collection::vec(op(), 0..32),
        ) {
            let mut r = Reader::new(&bytes);
            let mut pos = 0usize;
            for op in ops {
                let left = &bytes[pos..];
                let want = |n: usize| left.get(..n);
                match op {
                    Op::U8 => match r.u8() {
                        Ok(v) => { prop_assert_eq!(Some(&[v][..]), want(1)); pos += 1; }
                        Err(e) => { prop_assert_eq!(e, WireError::Truncated); prop_assert!(left.is_empty()); }
                    },
                    Op::U16 => match r.u16() {
                        Ok(v) => { prop_assert_eq!(Some(&v.to_be_bytes()[..]), want(2)); pos += 2; }
                        Err(_) => prop_assert!(left.len() < 2),
                    },
                    Op::U32 => match r.u32() {
                        Ok(v) => { prop_assert_eq!(Some(&v.to_be_bytes()[..]), want(4)); pos += 4; }
                        Err(_) => prop_assert!(left.len() < 4),
                    },
                    Op::U64 => match r.u64() {
                        Ok(v) => { prop_assert_eq!(Some(&v.to_be_bytes()[..]), want(8)); pos += 8; }
                        Err(_) => prop_assert!(left.len() < 8),
                    },
                    Op::Varint => {
                        let len = left.first().map(|b| 1usize << (b >> 6));
                        match r.varint() {
                            Ok(v) => {
                                let len = len.unwrap();
                                prop_assert!(v <= VARINT_MAX);
                                prop_assert!(left.len() >= len);
                                pos += len;
                            }
                            Err(_) => prop_assert!(len.is_none_or(|l| left.len() < l)),
                        }
                    }
                    Op::Bytes(n) => match r.bytes(n) {
                        Ok(b) => { prop_assert_eq!(Some(b), want(n)); pos += n; }
                        Err(_) => prop_assert!(left.len() < n),
                    },
                    Op::Peek => prop_assert_eq!(r.peek_u8().ok(), left.first().copied()),
                    Op::Rest => { prop_assert_eq!(r.rest(), left); pos = bytes.len(); }
                }
                prop_assert_eq!(r.position(), pos);
                prop_assert_eq!(r.remaining(), bytes.len() - pos);
                prop_assert_eq!(r.is_empty(), pos == bytes.len());
            }
        }

        /// Writing into any buffer size never panics; what fits is written, the rest refused.
        #[test]
        fn writer_fills_exactly(values in proptest::collection::vec(0..=VARINT_MAX, 0..16), cap in 0usize..64) {
            let mut buf = vec![0u8; cap];
            let mut w = Writer::new(&mut buf);
            let mut expect = Vec::new();
            for v in values {
                let enc = encode(v);
                match w.put_varint(v) {
                    Ok(()) => expect.extend_from_slice(&enc),
                    Err(e) => {
                        prop_assert_eq!(e, WireError::BufferTooSmall);
                        prop_assert!(w.remaining() < enc.len());
                    }
                }
                prop_assert_eq!(w.written(), &expect[..]);
                prop_assert_eq!(w.len() + w.remaining(), cap);
            }
        }
    }
}
