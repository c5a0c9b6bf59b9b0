//! The only unsafe code of the crate: carrier-thread CPU affinity and priority through libc.

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
