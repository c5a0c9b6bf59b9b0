//! **The only unsafe code of the CLI**: the raw-UDP baselines' batched syscalls
//! (`sendmmsg`/`recvmmsg`), process resource usage (`getrusage`), entering a network namespace
//! (`setns`) and the counting global allocator that measures allocations per message. Every
//! unsafe block says why it is sound in a `// SAFETY:` comment; everything here is Linux-only
//! (libc), like the benchmark that uses it.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------------

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static BYTES_ALLOCATED: AtomicU64 = AtomicU64::new(0);
static BYTES_FREED: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations while `set_alloc_counting` is on. The `carrier`
/// binary installs it as its global allocator; while counting is off it costs one relaxed load
/// per call.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAlloc;

#[inline]
fn count_alloc(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES_ALLOCATED.fetch_add(size as u64, Ordering::Relaxed);
    }
}

#[inline]
fn count_free(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        FREES.fetch_add(1, Ordering::Relaxed);
        BYTES_FREED.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so it upholds
// `GlobalAlloc`'s contract exactly as `System` does; the counters are atomics that never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: forwarded unchanged; the caller guarantees a non-zero-sized layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_free(layout.size());
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence from `System`)
        // with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A reallocation counts as one allocation of the new size and one free of the old.
        count_alloc(new_size);
        count_free(layout.size());
        // SAFETY: the caller guarantees `ptr`/`layout` describe a live block of this allocator
        // and that `new_size` is valid for `layout.align()`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Turns allocation counting on or off (process-wide).
pub fn set_alloc_counting(on: bool) {
    COUNTING.store(on, Ordering::SeqCst);
}

/// Allocation counters since the process started (only while counting was on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocCounters {
    /// Allocations (including reallocations).
    pub allocs: u64,
    /// Frees (including the old block of reallocations).
    pub frees: u64,
    /// Bytes allocated.
    pub bytes_allocated: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
}

impl AllocCounters {
    /// The counters now.
    pub fn now() -> Self {
        AllocCounters {
            allocs: ALLOCS.load(Ordering::SeqCst),
            frees: FREES.load(Ordering::SeqCst),
            bytes_allocated: BYTES_ALLOCATED.load(Ordering::SeqCst),
            bytes_freed: BYTES_FREED.load(Ordering::SeqCst),
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &AllocCounters) -> AllocCounters {
        AllocCounters {
            allocs: self.allocs.saturating_sub(earlier.allocs),
            frees: self.frees.saturating_sub(earlier.frees),
            bytes_allocated: self.bytes_allocated.saturating_sub(earlier.bytes_allocated),
            bytes_freed: self.bytes_freed.saturating_sub(earlier.bytes_freed),
        }
    }

    /// Net growth of the heap, bytes (negative when more was freed than allocated).
    pub fn net_bytes(&self) -> i64 {
        self.bytes_allocated as i64 - self.bytes_freed as i64
    }
}

// ---------------------------------------------------------------------------------------------
// Resource usage
// ---------------------------------------------------------------------------------------------

/// CPU time and peak resident memory of this process (`getrusage(RUSAGE_SELF)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// User CPU time.
    pub user: Duration,
    /// System CPU time.
    pub system: Duration,
    /// Peak resident set size, bytes.
    pub max_rss: u64,
}

impl Usage {
    /// User plus system time.
    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

/// `getrusage(RUSAGE_SELF)`: every thread of this process, living or ended.
pub fn usage_self() -> io::Result<Usage> {
    let mut r = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `r` points to writable memory of the size of `rusage`; getrusage only writes it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, r.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getrusage returned 0, so it filled the struct (and it was zeroed before anyway,
    // which is a valid `rusage`: plain integers).
    let r = unsafe { r.assume_init() };
    Ok(Usage {
        user: timeval(r.ru_utime),
        system: timeval(r.ru_stime),
        max_rss: (r.ru_maxrss.max(0) as u64) * 1024,
    })
}

// ---------------------------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------------------------

/// Moves the calling thread into the network namespace `ns` (an open `/run/netns/NAME`).
/// Sockets it creates afterwards belong to that namespace; other threads are not affected.
pub fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: setns takes a file descriptor that `ns` keeps open for the call, and a constant
    // namespace type; it changes only the calling thread's namespace and touches no memory of
    // ours.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// ---------------------------------------------------------------------------------------------
// sendmmsg / recvmmsg
// ---------------------------------------------------------------------------------------------

/// Most datagrams per `sendmmsg`/`recvmmsg` call.
pub const MMSG_MAX: usize = 64;

/// Sends `datagrams` on a **connected** socket with one `sendmmsg` call (blocking socket: waits
/// for buffer space); returns how many were sent. At most [`MMSG_MAX`] at a time.
pub fn send_mmsg(socket: &UdpSocket, datagrams: &[&[u8]]) -> io::Result<usize> {
    let n = datagrams.len().min(MMSG_MAX);
    let mut iovs: [libc::iovec; MMSG_MAX] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MMSG_MAX];
    // SAFETY: an all-zero `mmsghdr` is valid (null pointers, zero lengths).
    let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iovs[i] = libc::iovec {
            // The kernel only reads from send buffers; the `*mut` is what the C struct wants.
            iov_base: datagrams[i].as_ptr() as *mut libc::c_void,
            iov_len: datagrams[i].len(),
        };
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    loop {
        // SAFETY: `msgs[..n]` each point to one iovec of `iovs`, which point into `datagrams`;
        // all of them outlive the call, and the kernel only reads the buffers. The socket is
        // connected, so `msg_name` is null. `n <= MMSG_MAX` entries are initialised.
        let rc =
            unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives up to `bufs.len()` (at most [`MMSG_MAX`]) datagrams with one `recvmmsg` call,
/// blocking until the first arrives (or the socket's read timeout passes: `WouldBlock`), then
/// taking whatever else is queued (`MSG_WAITFORONE`). Writes each length to `lens`; returns the
/// count.
pub fn recv_mmsg(
    socket: &UdpSocket,
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
) -> io::Result<usize> {
    let n = bufs.len().min(lens.len()).min(MMSG_MAX);
    let mut iovs: [libc::iovec; MMSG_MAX] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MMSG_MAX];
    // SAFETY: an all-zero `mmsghdr` is valid (null pointers, zero lengths).
    let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { std::mem::zeroed() };
    for (i, buf) in bufs.iter_mut().take(n).enumerate() {
        iovs[i] = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    loop {
        // SAFETY: `msgs[..n]` each point to one iovec of `iovs`, which describe the writable
        // bytes of `bufs[i]` (exclusively borrowed for the call); the name is null (not wanted),
        // and the timeout pointer is null (the socket's SO_RCVTIMEO bounds the wait).
        let rc = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc >= 0 {
            let got = rc as usize;
            for (len, m) in lens.iter_mut().zip(&msgs).take(got) {
                *len = m.msg_len as usize;
            }
            return Ok(got);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmsg_round_trip_on_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let a = [1u8; 10];
        let b = [2u8; 20];
        assert_eq!(send_mmsg(&tx, &[&a, &b]).unwrap(), 2);
        let mut bufs = vec![vec![0u8; 64]; 4];
        let mut lens = [0usize; 4];
        let mut got = Vec::new();
        while got.len() < 2 {
            let n = recv_mmsg(&rx, &mut bufs, &mut lens).unwrap();
            for i in 0..n {
                got.push(bufs[i][..lens[i]].to_vec());
            }
        }
        assert_eq!(got, vec![a.to_vec(), b.to_vec()]);
    }

    #[test]
    fn usage_is_readable() {
        let u = usage_self().unwrap();
        assert!(u.max_rss > 0);
    }

    #[test]
    fn counters_subtract() {
        let a = AllocCounters {
            allocs: 1,
            frees: 1,
            bytes_allocated: 10,
            bytes_freed: 4,
        };
        let b = AllocCounters {
            allocs: 5,
            frees: 2,
            bytes_allocated: 50,
            bytes_freed: 100,
        };
        let d = b.since(&a);
        assert_eq!(d.allocs, 4);
        assert_eq!(d.net_bytes(), 40 - 96);
    }
}
