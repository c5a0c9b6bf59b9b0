//! Datagram header and packets: the handshake packets and the `Data` packet header
//! (docs/protocol.md §3, §4, §5).
//!
//! Each packet has a parsed representation borrowing the datagram (`parse`) and an `encode`
//! that writes it into a caller's buffer. Parsing never allocates and never panics; every
//! failure maps to a [`DropReason`].

use crate::DropReason;
use crate::wire::{Reader, WireError, Writer};

/// Magic bytes opening every datagram (docs/protocol.md §3).
pub(crate) const MAGIC: [u8; 2] = [0xCA, 0x77];
/// Wire protocol version (docs/protocol.md §3).
pub(crate) const PROTOCOL_VERSION: u8 = 1;
/// Bytes of the datagram header.
pub(crate) const HEADER_LEN: usize = 4;
/// Bytes of a `Data` packet header, datagram header included (docs/protocol.md §5).
pub(crate) const DATA_HEADER_LEN: usize = HEADER_LEN + 8;
/// Bytes of the checksum that ends every datagram (docs/protocol.md §3).
pub(crate) const CHECKSUM_LEN: usize = 4;
/// Bytes of a connect cookie (docs/protocol.md §4.2).
pub(crate) const COOKIE_LEN: usize = 20;
/// Largest handshake payload on the wire.
pub(crate) const MAX_PAYLOAD: usize = crate::handshake::MAX_HANDSHAKE_PAYLOAD;

const TYPE_CONNECT_REQUEST: u8 = 1;
const TYPE_CHALLENGE: u8 = 2;
const TYPE_ACCEPT: u8 = 3;
const TYPE_REJECT: u8 = 4;
const TYPE_DATA: u8 = 5;

/// Limits one side advertises, or the agreed ones (docs/protocol.md §4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub channel_count: u8,
    pub max_message_size: u32,
    pub max_datagram_size: u16,
    pub receive_window: u32,
}

impl Limits {
    #[cfg(test)]
    const LEN: usize = 11;

    fn read(r: &mut Reader<'_>) -> Result<Limits, WireError> {
        Ok(Limits {
            channel_count: r.u8()?,
            max_message_size: r.u32()?,
            max_datagram_size: r.u16()?,
            receive_window: r.u32()?,
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u8(self.channel_count)?;
        w.put_u32(self.max_message_size)?;
        w.put_u16(self.max_datagram_size)?;
        w.put_u32(self.receive_window)
    }
}

/// `ConnectRequest` (docs/protocol.md §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectRequest<'a> {
    pub initiator_id: u32,
    pub cookie: [u8; COOKIE_LEN],
    pub limits: Limits,
    pub payload: &'a [u8],
}

/// `Challenge` (docs/protocol.md §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub initiator_id: u32,
    pub cookie: [u8; COOKIE_LEN],
}

/// `Accept` (docs/protocol.md §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Accept<'a> {
    pub initiator_id: u32,
    pub acceptor_id: u32,
    pub limits: Limits,
    pub reply: &'a [u8],
}

/// `Reject` (docs/protocol.md §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reject<'a> {
    pub initiator_id: u32,
    pub reason: u8,
    pub payload: &'a [u8],
}

/// `Data` packet header (docs/protocol.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DataHeader {
    pub destination_id: u32,
    pub packet_number: u32,
}

/// A parsed datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    ConnectRequest(ConnectRequest<'a>),
    Challenge(Challenge),
    Accept(Accept<'a>),
    Reject(Reject<'a>),
    /// Header and the frames that follow it (not yet parsed).
    Data(DataHeader, &'a [u8]),
}

fn malformed(_: WireError) -> DropReason {
    DropReason::Malformed
}

fn read_payload<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DropReason> {
    let len = usize::from(r.u16().map_err(malformed)?);
    if len > MAX_PAYLOAD {
        return Err(DropReason::Malformed);
    }
    r.bytes(len).map_err(malformed)
}

fn read_cookie(r: &mut Reader<'_>) -> Result<[u8; COOKIE_LEN], DropReason> {
    let mut cookie = [0u8; COOKIE_LEN];
    cookie.copy_from_slice(r.bytes(COOKIE_LEN).map_err(malformed)?);
    Ok(cookie)
}

/// CRC-32 (IEEE) of `bytes`, the datagram checksum (docs/protocol.md §3).
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Appends the checksum of `buf[..len]` at `buf[len..len + 4]`; returns the new length.
pub(crate) fn seal(buf: &mut [u8], len: usize) -> Result<usize, WireError> {
    let sum = checksum(buf.get(..len).ok_or(WireError::BufferTooSmall)?);
    let slot = buf
        .get_mut(len..len + CHECKSUM_LEN)
        .ok_or(WireError::BufferTooSmall)?;
    slot.copy_from_slice(&sum.to_be_bytes());
    Ok(len + CHECKSUM_LEN)
}

/// Parses a datagram (docs/protocol.md §3). Handshake packets must be consumed exactly. The
/// checksum is verified and removed: payload ranges index the datagram without it.
pub(crate) fn parse(datagram: &[u8]) -> Result<Packet<'_>, DropReason> {
    if datagram.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(DropReason::TooShort);
    }
    if datagram[..2] != MAGIC {
        return Err(DropReason::BadMagic);
    }
    if datagram[2] != PROTOCOL_VERSION {
        return Err(DropReason::UnsupportedVersion);
    }
    let (body, sum) = datagram.split_at(datagram.len() - CHECKSUM_LEN);
    if checksum(body).to_be_bytes() != sum {
        return Err(DropReason::BadChecksum);
    }
    let mut r = Reader::new(body);
    r.skip(3).map_err(malformed)?;
    let packet = match r.u8().map_err(malformed)? {
        TYPE_CONNECT_REQUEST => Packet::ConnectRequest(ConnectRequest {
            initiator_id: r.u32().map_err(malformed)?,
            cookie: read_cookie(&mut r)?,
            limits: Limits::read(&mut r).map_err(malformed)?,
            payload: read_payload(&mut r)?,
        }),
        TYPE_CHALLENGE => Packet::Challenge(Challenge {
            initiator_id: r.u32().map_err(malformed)?,
            cookie: read_cookie(&mut r)?,
        }),
        TYPE_ACCEPT => Packet::Accept(Accept {
            initiator_id: r.u32().map_err(malformed)?,
            acceptor_id: r.u32().map_err(malformed)?,
            limits: Limits::read(&mut r).map_err(malformed)?,
            reply: read_payload(&mut r)?,
        }),
        TYPE_REJECT => Packet::Reject(Reject {
            initiator_id: r.u32().map_err(malformed)?,
            reason: r.u8().map_err(malformed)?,
            payload: read_payload(&mut r)?,
        }),
        TYPE_DATA => {
            let header = DataHeader {
                destination_id: r.u32().map_err(malformed)?,
                packet_number: r.u32().map_err(malformed)?,
            };
            let frames = r.rest();
            if frames.is_empty() {
                return Err(DropReason::Malformed);
            }
            return Ok(Packet::Data(header, frames));
        }
        _ => return Err(DropReason::UnknownPacketType),
    };
    if !r.is_empty() {
        return Err(DropReason::Malformed);
    }
    Ok(packet)
}

fn write_header(w: &mut Writer<'_>, packet_type: u8) -> Result<(), WireError> {
    w.put_bytes(&MAGIC)?;
    w.put_u8(PROTOCOL_VERSION)?;
    w.put_u8(packet_type)
}

fn write_payload(w: &mut Writer<'_>, payload: &[u8]) -> Result<(), WireError> {
    let len = u16::try_from(payload.len())
        .ok()
        .filter(|l| usize::from(*l) <= MAX_PAYLOAD)
        .ok_or(WireError::Malformed("handshake payload above 1024 bytes"))?;
    w.put_u16(len)?;
    w.put_bytes(payload)
}

impl ConnectRequest<'_> {
    /// Encoded size, datagram header included.
    #[cfg(test)]
    pub(crate) fn encoded_len(&self) -> usize {
        HEADER_LEN + 4 + COOKIE_LEN + Limits::LEN + 2 + self.payload.len() + CHECKSUM_LEN
    }

    pub(crate) fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(buf);
        write_header(&mut w, TYPE_CONNECT_REQUEST)?;
        w.put_u32(self.initiator_id)?;
        w.put_bytes(&self.cookie)?;
        self.limits.write(&mut w)?;
        write_payload(&mut w, self.payload)?;
        let len = w.len();
        seal(buf, len)
    }
}

impl Challenge {
    /// Encoded size, datagram header and checksum included (32 bytes).
    #[cfg(test)]
    pub(crate) const ENCODED_LEN: usize = HEADER_LEN + 4 + COOKIE_LEN + CHECKSUM_LEN;

    pub(crate) fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(buf);
        write_header(&mut w, TYPE_CHALLENGE)?;
        w.put_u32(self.initiator_id)?;
        w.put_bytes(&self.cookie)?;
        let len = w.len();
        seal(buf, len)
    }
}

impl Accept<'_> {
    pub(crate) fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(buf);
        write_header(&mut w, TYPE_ACCEPT)?;
        w.put_u32(self.initiator_id)?;
        w.put_u32(self.acceptor_id)?;
        self.limits.write(&mut w)?;
        write_payload(&mut w, self.reply)?;
        let len = w.len();
        seal(buf, len)
    }
}

impl Reject<'_> {
    pub(crate) fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(buf);
        write_header(&mut w, TYPE_REJECT)?;
        w.put_u32(self.initiator_id)?;
        w.put_u8(self.reason)?;
        write_payload(&mut w, self.payload)?;
        let len = w.len();
        seal(buf, len)
    }
}

impl DataHeader {
    /// Writes the header (docs/protocol.md §5) into a writer positioned at the datagram start.
    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        write_header(w, TYPE_DATA)?;
        w.put_u32(self.destination_id)?;
        w.put_u32(self.packet_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            channel_count: 8,
            max_message_size: 1 << 20,
            max_datagram_size: 1372,
            receive_window: 4 << 20,
        }
    }

    #[test]
    fn connect_request_golden_bytes_and_round_trip() {
        let req = ConnectRequest {
            initiator_id: 0x0102_0304,
            cookie: [0; COOKIE_LEN],
            limits: limits(),
            payload: &[0, 0, 0, 1],
        };
        let mut buf = [0u8; 128];
        let n = req.encode(&mut buf).unwrap();
        assert_eq!(n, req.encoded_len());
        assert_eq!(n, 49);
        let mut expected = vec![0xCA, 0x77, 1, 1, 1, 2, 3, 4];
        expected.extend_from_slice(&[0; 20]);
        expected.extend_from_slice(&[8, 0, 0x10, 0, 0, 0x05, 0x5C, 0, 0x40, 0, 0]);
        expected.extend_from_slice(&[0, 4, 0, 0, 0, 1]);
        let sum = crc32fast::hash(&expected);
        expected.extend_from_slice(&sum.to_be_bytes());
        assert_eq!(&buf[..n], &expected[..]);
        assert_eq!(parse(&buf[..n]), Ok(Packet::ConnectRequest(req)));
    }

    #[test]
    fn challenge_is_never_larger_than_any_request() {
        let smallest_request = ConnectRequest {
            initiator_id: 1,
            cookie: [0; COOKIE_LEN],
            limits: limits(),
            payload: &[],
        };
        assert!(Challenge::ENCODED_LEN <= smallest_request.encoded_len());
        let ch = Challenge {
            initiator_id: 9,
            cookie: [7; COOKIE_LEN],
        };
        let mut buf = [0u8; 64];
        let n = ch.encode(&mut buf).unwrap();
        assert_eq!(n, Challenge::ENCODED_LEN);
        assert_eq!(parse(&buf[..n]), Ok(Packet::Challenge(ch)));
    }

    #[test]
    fn accept_reject_data_round_trip() {
        let mut buf = [0u8; 128];
        let acc = Accept {
            initiator_id: 1,
            acceptor_id: 2,
            limits: limits(),
            reply: b"hi",
        };
        let n = acc.encode(&mut buf).unwrap();
        assert_eq!(parse(&buf[..n]), Ok(Packet::Accept(acc)));
        let rej = Reject {
            initiator_id: 1,
            reason: 8,
            payload: &[],
        };
        let n = rej.encode(&mut buf).unwrap();
        assert_eq!(parse(&buf[..n]), Ok(Packet::Reject(rej)));
        let mut w = Writer::new(&mut buf);
        DataHeader {
            destination_id: 5,
            packet_number: 6,
        }
        .write(&mut w)
        .unwrap();
        w.put_u8(0x01).unwrap();
        let n = w.len();
        assert_eq!(n, DATA_HEADER_LEN + 1);
        let n = seal(&mut buf, n).unwrap();
        assert_eq!(
            parse(&buf[..n]),
            Ok(Packet::Data(
                DataHeader {
                    destination_id: 5,
                    packet_number: 6
                },
                &[0x01][..]
            ))
        );
    }

    #[test]
    fn bad_headers_are_typed() {
        fn sealed(bytes: &[u8]) -> Vec<u8> {
            let mut v = bytes.to_vec();
            v.extend_from_slice(&crc32fast::hash(bytes).to_be_bytes());
            v
        }
        assert_eq!(parse(&[0xCA, 0x77, 1, 1]), Err(DropReason::TooShort));
        assert_eq!(parse(&sealed(&[0, 0, 1, 1])), Err(DropReason::BadMagic));
        assert_eq!(
            parse(&sealed(&[0xCA, 0x77, 2, 1])),
            Err(DropReason::UnsupportedVersion)
        );
        assert_eq!(
            parse(&sealed(&[0xCA, 0x77, 1, 99])),
            Err(DropReason::UnknownPacketType)
        );
        assert_eq!(
            parse(&sealed(&[0xCA, 0x77, 1, 1, 0])),
            Err(DropReason::Malformed)
        );
        // Data packet without frames.
        assert_eq!(
            parse(&sealed(&[0xCA, 0x77, 1, 5, 0, 0, 0, 1, 0, 0, 0, 0])),
            Err(DropReason::Malformed)
        );
        // One flipped bit anywhere: checksum mismatch.
        let good = sealed(&[0xCA, 0x77, 1, 5, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
        assert!(matches!(parse(&good), Ok(Packet::Data(..))));
        for bit in 24..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(parse(&bad), Err(DropReason::BadChecksum), "bit {bit}");
        }
    }

    #[test]
    fn oversized_payload_length_is_malformed_without_allocation() {
        let mut buf = vec![0xCA, 0x77, 1, 4, 0, 0, 0, 1, 3];
        buf.extend_from_slice(&[0xFF, 0xFF]);
        let sum = crc32fast::hash(&buf);
        buf.extend_from_slice(&sum.to_be_bytes());
        assert_eq!(parse(&buf), Err(DropReason::Malformed));
    }
}
