//! The only unsafe code of the crate: carrier-thread CPU affinity and priority, and batched UDP
//! receive (`recvmmsg`), through libc.

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
#[cfg(target_os = "linux")]
use std::os::fd::RawFd;

#[cfg(target_os = "linux")]
use crate::driver::RecvMeta;

/// Most datagrams one [`RecvMmsg::recv`] call asks for.
#[cfg(target_os = "linux")]
pub(crate) const RECV_MMSG_MAX: usize = 32;

/// Fewest datagrams one [`RecvMmsg::recv`] call asks for.
#[cfg(target_os = "linux")]
const RECV_MMSG_MIN: usize = 4;

/// The headers of batched UDP receives (`recvmmsg`), kept between calls: each message header
/// points once and for all to its own source-address slot and iovec, so a call only refreshes
/// the iovecs (the caller's buffers) and the address lengths of the entries it offers.
///
/// It offers room for twice what the previous call got (between [`RECV_MMSG_MIN`] and
/// [`RECV_MMSG_MAX`]): an idle poll or a ping-pong prepares 4 entries, not 32, and a burst
/// grows the batch on the next call (the caller calls again when a batch came back full).
#[cfg(target_os = "linux")]
pub(crate) struct RecvMmsg {
    /// Entries the next call offers.
    room: usize,
    msgs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    // Never read as a Rust value but through the pointers in `msgs`: the kernel writes there.
    #[allow(dead_code)]
    addrs: Box<[libc::sockaddr_storage]>,
}

// SAFETY: the raw pointers in `msgs` point only into `iovs` and `addrs`, heap allocations
// owned by this value that move with it; the iovec pointers are refreshed from the caller's
// buffers on every call before the kernel sees them. Nothing is shared between threads.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe impl Send for RecvMmsg {}

#[cfg(target_os = "linux")]
impl RecvMmsg {
    /// Headers for up to [`RECV_MMSG_MAX`] datagrams per call.
    #[allow(unsafe_code)]
    pub(crate) fn new() -> Self {
        // SAFETY: these are plain C structs (pointers, lengths, flags, bytes) for which all-zero
        // is a valid value.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let mut addrs = vec![zero_addr; RECV_MMSG_MAX].into_boxed_slice();
        let mut iovs = vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            RECV_MMSG_MAX
        ]
        .into_boxed_slice();
        let mut msgs = vec![zero_msg; RECV_MMSG_MAX].into_boxed_slice();
        for ((msg, iov), addr) in msgs.iter_mut().zip(iovs.iter_mut()).zip(addrs.iter_mut()) {
            msg.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        RecvMmsg {
            room: RECV_MMSG_MIN,
            msgs,
            iovs,
            addrs,
        }
    }

    /// Receives datagrams from `fd` into `bufs` with one non-blocking `recvmmsg` call; returns
    /// how many (0 when nothing is waiting) and whether they filled the room offered (then more
    /// may be waiting: call again). A short batch tells that nothing more is waiting, where
    /// `recv_from` needs a second call failing with `EAGAIN` to learn it. A datagram longer
    /// than its buffer is truncated (as with `recv_from`). Other errors are returned as they
    /// come (`ECONNREFUSED` from an earlier send's ICMP error, `EINTR`...): the caller decides
    /// which to retry.
    #[allow(unsafe_code)]
    pub(crate) fn recv(
        &mut self,
        fd: RawFd,
        bufs: &mut [Vec<u8>],
        metas: &mut [RecvMeta],
    ) -> io::Result<(usize, bool)> {
        let n = bufs.len().min(metas.len()).min(self.room);
        if n == 0 {
            return Ok((0, false));
        }
        for ((msg, iov), buf) in self
            .msgs
            .iter_mut()
            .zip(self.iovs.iter_mut())
            .zip(bufs[..n].iter_mut())
        {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            msg.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: the first `n` message headers each point to their own `sockaddr_storage` of
        // `msg_namelen` bytes and to one iovec describing a live buffer of `iov_len` bytes that
        // is exclusively borrowed for this call (`bufs`); headers, iovecs and addresses are
        // owned by `self`, borrowed mutably. MSG_DONTWAIT makes the call non-blocking; no
        // timeout is passed.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                self.room = RECV_MMSG_MIN;
                Ok((0, false))
            } else {
                Err(e)
            };
        }
        let got = (rc as usize).min(n);
        self.room = (2 * got).clamp(RECV_MMSG_MIN, RECV_MMSG_MAX);
        for i in 0..got {
            let msg = &self.msgs[i];
            // SAFETY: the kernel wrote the first `msg_namelen` bytes at `msg_name` (the source
            // address, in `addrs[i]`), and `sockaddr_from` reads no byte beyond that length.
            let from = unsafe {
                sockaddr_from(
                    msg.msg_hdr.msg_name.cast::<libc::sockaddr_storage>(),
                    msg.msg_hdr.msg_namelen,
                )
            };
            let len = (msg.msg_len as usize).min(bufs[i].len());
            metas[i] = RecvMeta {
                // A UDP datagram always has an IPv4 or IPv6 source; were it missing, the
                // unspecified address matches no connection and the protocol drops it.
                from: from.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                len,
                segment_size: len,
            };
        }
        Ok((got, got == n))
    }
}

/// The socket address the kernel wrote at `addr` (`len` bytes), if it is IPv4 or IPv6.
///
/// # Safety
/// `addr` must point to a `sockaddr_storage` whose first `len` bytes were written by the kernel.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe fn sockaddr_from(
    addr: *const libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    if len < std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: the family tag is within the `len` written bytes (checked above).
    let family = libc::c_int::from(unsafe { (*addr).ss_family });
    match family {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a whole `sockaddr_in` (family and length checked);
            // `sockaddr_storage` is aligned for every address type.
            let a = unsafe { &*addr.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a whole `sockaddr_in6`.
            let a = unsafe { &*addr.cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Pins the calling thread to CPU `cpu`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn pin_to_cpu(cpu: usize) -> Result<(), String> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(format!("CPU {cpu} is beyond CPU_SETSIZE"));
    }
    // SAFETY: `cpu_set_t` is a plain bit array for which all-zero is a valid (empty) value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked to be below CPU_SETSIZE, the size of `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 means the calling thread; `set` is a valid, initialised cpu_set_t and the
    // size passed is its size.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "sched_setaffinity(CPU {cpu}): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Sets the calling thread's nice value.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn set_nice(nice: i32) -> Result<(), String> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: PRIO_PROCESS with a thread id sets that thread's nice value on Linux; no memory
    // is passed.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "setpriority({nice}): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Pins the calling thread to CPU `cpu` (not supported on this platform).
#[cfg(not(target_os = "linux"))]
pub(crate) fn pin_to_cpu(cpu: usize) -> Result<(), String> {
    Err(format!(
        "thread_cpu_id {cpu}: CPU affinity is not supported on this platform"
    ))
}

/// Sets the calling thread's priority (not supported on this platform).
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_nice(nice: i32) -> Result<(), String> {
    Err(format!(
        "thread_priority {nice}: not supported on this platform"
    ))
}
