//! The default driver: one non-blocking UDP socket (IPv4, IPv6 or dual-stack), one datagram per
//! send syscall (on Linux one `recvmmsg` receives what is waiting), woken by an eventfd-backed
//! `mio` waker (works whatever the bind address).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use super::{DirectSend, Driver, DriverError, DriverErrorCode, Outgoing, RecvMeta, Wake};
use crate::desc::FamilyType;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Bytes of datagrams kept while the socket's send buffer is full; beyond, they are dropped
/// (reliable data is resent by the protocol).
const MAX_PENDING_BYTES: usize = 4 << 20;

/// How to open a [`UdpDriver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpDriverConfig {
    /// Address family.
    pub family: FamilyType,
    /// Local address to bind (`None`: any address of the family).
    pub address: Option<IpAddr>,
    /// Local port (0: chosen by the system).
    pub port: u16,
    /// `SO_RCVBUF`, bytes.
    pub receive_buffer_size: usize,
    /// `SO_SNDBUF`, bytes.
    pub send_buffer_size: usize,
    /// Largest datagram payload.
    pub max_payload: usize,
}

struct MioWake(Waker);

impl Wake for MioWake {
    fn wake(&self) {
        if let Err(e) = self.0.wake() {
            tracing::warn!(error = %e, "could not wake the carrier thread");
        }
    }
}

/// Sends on the driver's socket (a duplicate of its descriptor) from the game thread.
struct UdpDirect {
    socket: std::net::UdpSocket,
    max_payload: usize,
    /// Set while the driver holds datagrams behind a full socket buffer, or after a direct send
    /// found it full; cleared by the driver's own send once its queue is empty.
    congested: AtomicBool,
    /// Datagrams the direct path dropped because the socket's send buffer was full.
    dropped: AtomicU64,
}

impl DirectSend for UdpDirect {
    fn ready(&self) -> bool {
        !self.congested.load(Ordering::Acquire)
    }

    fn send(
        &self,
        _now: Instant,
        batch: &[Outgoing<'_>],
        failed: &mut dyn FnMut(SocketAddr, DriverError),
    ) {
        for out in batch {
            for datagram in out.datagrams() {
                if datagram.len() > self.max_payload {
                    failed(out.to, too_large(datagram.len(), self.max_payload));
                    continue;
                }
                match classify(self.socket.send_to(datagram, out.to), out.to) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        self.congested.store(true, Ordering::Release);
                    }
                    Err(e) => failed(out.to, DriverError::new(DriverErrorCode::Send, e)),
                }
            }
        }
    }
}

fn too_large(len: usize, max: usize) -> DriverError {
    DriverError::new(
        DriverErrorCode::BufferTooLarge,
        format!("{len} bytes > {max}"),
    )
}

/// What a `send_to` result means for the datagram: sent (or as good as), `Ok(false)` when the
/// socket buffer is full, or an error for this destination.
fn classify(result: io::Result<usize>, to: SocketAddr) -> Result<bool, io::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        // A previous datagram's ICMP error surfacing here (Linux reports it on the next
        // call): not this datagram's fault.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(true),
        // A local firewall rule dropped it (EPERM): to the protocol that is packet loss,
        // not a reason to drop the connection.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            tracing::trace!(%to, "datagram refused by a local firewall rule");
            Ok(true)
        }
        // The kernel's queue is momentarily full: like a full socket buffer.
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The default UDP driver.
pub struct UdpDriver {
    socket: UdpSocket,
    poll: Poll,
    events: Events,
    waker: Arc<MioWake>,
    local: SocketAddr,
    max_payload: usize,
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    pending_bytes: usize,
    writable_interest: bool,
    /// Datagrams dropped because the socket's send buffer stayed full.
    dropped: u64,
    /// The direct-send handle (`Driver::direct_sender`).
    direct: Arc<UdpDirect>,
    /// Headers of batched receives.
    #[cfg(target_os = "linux")]
    mmsg: crate::sys::RecvMmsg,
}

impl std::fmt::Debug for UdpDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpDriver")
            .field("local", &self.local)
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

fn err(code: DriverErrorCode) -> impl Fn(io::Error) -> DriverError {
    move |e| DriverError::new(code, e)
}

impl UdpDriver {
    /// Opens and binds the socket.
    pub fn open(config: &UdpDriverConfig) -> Result<Self, DriverError> {
        let (domain, any) = match config.family {
            FamilyType::Ipv4 => (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            FamilyType::Ipv6 | FamilyType::DualStack => {
                (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
            }
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
            .map_err(err(DriverErrorCode::SocketCreate))?;
        if domain == Domain::IPV6 {
            socket
                .set_only_v6(config.family == FamilyType::Ipv6)
                .map_err(err(DriverErrorCode::SocketOption))?;
        }
        socket
            .set_recv_buffer_size(config.receive_buffer_size)
            .map_err(err(DriverErrorCode::SocketOption))?;
        socket
            .set_send_buffer_size(config.send_buffer_size)
            .map_err(err(DriverErrorCode::SocketOption))?;
        socket
            .set_nonblocking(true)
            .map_err(err(DriverErrorCode::SocketMakeNonBlock))?;
        let ip = config.address.unwrap_or(any);
        let bind = SocketAddr::new(ip, config.port);
        socket
            .bind(&bind.into())
            .map_err(err(DriverErrorCode::SocketBind))?;
        let std_socket: std::net::UdpSocket = socket.into();
        let direct = Arc::new(UdpDirect {
            socket: std_socket
                .try_clone()
                .map_err(err(DriverErrorCode::Platform))?,
            max_payload: config.max_payload,
            congested: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let mut socket = UdpSocket::from_std(std_socket);
        let local = socket
            .local_addr()
            .map_err(err(DriverErrorCode::SocketBind))?;
        let poll = Poll::new().map_err(err(DriverErrorCode::Platform))?;
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)
            .map_err(err(DriverErrorCode::Platform))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(err(DriverErrorCode::Platform))?;
        tracing::debug!(%local, "UDP driver bound");
        Ok(UdpDriver {
            socket,
            poll,
            events: Events::with_capacity(16),
            waker: Arc::new(MioWake(waker)),
            local,
            max_payload: config.max_payload,
            pending: VecDeque::new(),
            pending_bytes: 0,
            writable_interest: false,
            dropped: 0,
            direct,
            #[cfg(target_os = "linux")]
            mmsg: crate::sys::RecvMmsg::new(),
        })
    }

    /// Datagrams dropped because the socket's send buffer stayed full.
    pub fn dropped_datagrams(&self) -> u64 {
        self.dropped + self.direct.dropped.load(Ordering::Relaxed)
    }

    fn set_writable_interest(&mut self, on: bool) {
        if self.writable_interest == on {
            return;
        }
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if self
            .poll
            .registry()
            .reregister(&mut self.socket, SOCKET, interest)
            .is_ok()
        {
            self.writable_interest = on;
        }
    }

    /// Sends one datagram now; `Ok(false)` when the socket buffer is full.
    fn send_one(&self, to: SocketAddr, datagram: &[u8]) -> Result<bool, io::Error> {
        classify(self.socket.send_to(datagram, to), to)
    }

    fn flush_pending(&mut self, failed: &mut dyn FnMut(SocketAddr, DriverError)) {
        while let Some((to, datagram)) = self.pending.front() {
            match self.send_one(*to, datagram) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => failed(*to, DriverError::new(DriverErrorCode::Send, e)),
            }
            if let Some((_, d)) = self.pending.pop_front() {
                self.pending_bytes -= d.len();
            }
        }
        let waiting = !self.pending.is_empty();
        self.set_writable_interest(waiting);
    }

    /// Receives what is waiting in one system call on Linux (`recvmmsg`: the count it returns
    /// tells that nothing more is waiting, where `recv_from` needs another call failing with
    /// `EAGAIN`); returns how many datagrams, and whether it filled all the room it asked for
    /// (then more may be waiting). `Ok((0, false))` when nothing is waiting.
    #[cfg(target_os = "linux")]
    fn recv_some(
        &mut self,
        bufs: &mut [Vec<u8>],
        metas: &mut [RecvMeta],
    ) -> io::Result<(usize, bool)> {
        use std::os::fd::AsRawFd;
        self.mmsg.recv(self.socket.as_raw_fd(), bufs, metas)
    }

    /// Receives one datagram (`Ok((0, false))` when nothing is waiting).
    #[cfg(not(target_os = "linux"))]
    fn recv_some(
        &mut self,
        bufs: &mut [Vec<u8>],
        metas: &mut [RecvMeta],
    ) -> io::Result<(usize, bool)> {
        let (Some(buf), Some(meta)) = (bufs.first_mut(), metas.first_mut()) else {
            return Ok((0, false));
        };
        match self.socket.recv_from(buf) {
            Ok((len, from)) => {
                *meta = RecvMeta {
                    from,
                    len,
                    segment_size: len,
                };
                Ok((1, true))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((0, false)),
            Err(e) => Err(e),
        }
    }

    fn queue(&mut self, to: SocketAddr, datagram: &[u8]) {
        if self.pending_bytes + datagram.len() > MAX_PENDING_BYTES {
            self.dropped += 1;
            return;
        }
        self.pending_bytes += datagram.len();
        self.pending.push_back((to, datagram.to_vec()));
    }
}

impl Driver for UdpDriver {
    fn uses_peer_hooks(&self) -> bool {
        false
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn send(
        &mut self,
        _now: Instant,
        batch: &[Outgoing<'_>],
        failed: &mut dyn FnMut(SocketAddr, DriverError),
    ) {
        self.flush_pending(failed);
        for out in batch {
            for datagram in out.datagrams() {
                if datagram.len() > self.max_payload {
                    failed(out.to, too_large(datagram.len(), self.max_payload));
                    continue;
                }
                if !self.pending.is_empty() {
                    self.queue(out.to, datagram);
                    continue;
                }
                match self.send_one(out.to, datagram) {
                    Ok(true) => {}
                    Ok(false) => self.queue(out.to, datagram),
                    Err(e) => failed(out.to, DriverError::new(DriverErrorCode::Send, e)),
                }
            }
        }
        let waiting = !self.pending.is_empty();
        self.set_writable_interest(waiting);
        // Direct sends wait while datagrams are queued here (order on the wire), and resume
        // once this send found the socket writable again.
        self.direct.congested.store(waiting, Ordering::Release);
    }

    fn recv(
        &mut self,
        _now: Instant,
        bufs: &mut [Vec<u8>],
        metas: &mut [RecvMeta],
    ) -> Result<usize, DriverError> {
        let want = bufs.len().min(metas.len());
        let mut n = 0;
        while n < want {
            match self.recv_some(&mut bufs[n..want], &mut metas[n..want]) {
                // A short read: nothing more is waiting.
                Ok((got, false)) => return Ok(n + got),
                Ok((got, true)) => n += got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP port unreachable from an earlier send, reported on a later call: ignore.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DriverError::new(DriverErrorCode::Receive, e)),
            }
        }
        Ok(n)
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), DriverError> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(DriverError::new(DriverErrorCode::Wait, e)),
        }
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }

    fn direct_sender(&self) -> Option<Arc<dyn DirectSend>> {
        Some(self.direct.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(family: FamilyType, ip: IpAddr) -> Option<UdpDriver> {
        UdpDriver::open(&UdpDriverConfig {
            family,
            address: Some(ip),
            port: 0,
            receive_buffer_size: 1 << 20,
            send_buffer_size: 1 << 20,
            max_payload: 1_200,
        })
        .ok()
    }

    /// One receive call returns every waiting datagram with its source and length (a short
    /// batch), and the next one finds nothing; a datagram longer than its buffer is truncated.
    fn receives_a_batch(family: FamilyType, ip: IpAddr) {
        let Some(mut driver) = open(family, ip) else {
            return; // the address family is not available here
        };
        let peer = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        let to = driver.local_addr();
        for len in [10usize, 64, 700] {
            peer.send_to(&vec![len as u8; len], to).unwrap();
        }
        let mut bufs = vec![vec![0u8; 2048]; 31];
        bufs[2] = vec![0u8; 100];
        let mut metas = vec![RecvMeta::default(); 31];
        let now = crate::carrier::now();
        let deadline = now + Duration::from_secs(2);
        let mut n = 0;
        // Loopback delivery is synchronous on Linux; elsewhere give it a moment.
        while n == 0 && crate::carrier::now() < deadline {
            n = driver.recv(now, &mut bufs, &mut metas).unwrap();
        }
        while n < 3 && crate::carrier::now() < deadline {
            n += driver.recv(now, &mut bufs[n..], &mut metas[n..]).unwrap();
        }
        assert_eq!(n, 3);
        for (i, len) in [10usize, 64, 100].into_iter().enumerate() {
            assert_eq!(metas[i].from, peer.local_addr().unwrap(), "{i}");
            assert_eq!(metas[i].len, len, "{i}");
            assert_eq!(metas[i].segment_size, len, "{i}");
            assert!(bufs[i][..len].iter().all(|b| *b == bufs[i][0]), "{i}");
        }
        assert_eq!(driver.recv(now, &mut bufs, &mut metas).unwrap(), 0);
    }

    /// A burst larger than the first batch's room: one `recv` fills every buffer it is given
    /// (the batches grow and it calls again while they come back full), the next gets the rest.
    #[test]
    fn receives_a_burst_in_growing_batches() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut driver = open(FamilyType::Ipv4, ip).expect("IPv4 loopback");
        let peer = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        for i in 0..40u8 {
            peer.send_to(&[i; 20], driver.local_addr()).unwrap();
        }
        let mut bufs = vec![vec![0u8; 2048]; 32];
        let mut metas = vec![RecvMeta::default(); 32];
        let now = crate::carrier::now();
        let deadline = now + Duration::from_secs(2);
        let mut got = Vec::new();
        let mut first = None;
        while got.len() < 40 && crate::carrier::now() < deadline {
            let n = driver.recv(now, &mut bufs, &mut metas).unwrap();
            if n > 0 && first.is_none() {
                first = Some(n);
            }
            got.extend(bufs.iter().zip(&metas).take(n).map(|(b, m)| (b[0], m.len)));
        }
        if cfg!(target_os = "linux") {
            assert_eq!(first, Some(32), "the first call fills every buffer");
        }
        assert_eq!(got, (0..40u8).map(|i| (i, 20)).collect::<Vec<_>>());
        assert_eq!(driver.recv(now, &mut bufs, &mut metas).unwrap(), 0);
    }

    #[test]
    fn receives_a_batch_ipv4() {
        receives_a_batch(FamilyType::Ipv4, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn receives_a_batch_ipv6() {
        receives_a_batch(FamilyType::Ipv6, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
}
