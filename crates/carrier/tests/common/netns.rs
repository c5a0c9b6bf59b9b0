//! Real kernel network impairment for tests (DESIGN.md §6 item 5): two network namespaces joined
//! by a veth pair, a `tc tbf` bandwidth limit on both veth ends and nftables random drop in both
//! directions. [`NetnsPair`] builds it and removes it on drop (also while a failing test unwinds).
//!
//! * **Names.** Namespaces are called `carrier-<pid>-<token>-<n>a|b`: the pid and a per-process
//!   token make them unique, and a namespace left behind by a process that was killed (no unwind,
//!   no drop) is deleted by the next [`NetnsPair::new`] once its pid is gone. The veth ends are
//!   created directly inside their namespaces (`cva`, `cvb`), so they never clash with the host's
//!   interfaces or with another pair's. Addresses are a /30 of 198.18.0.0/15 (the benchmarking
//!   range), `.1` in namespace a and `.2` in namespace b.
//! * **Bandwidth.** `tc qdisc add dev cva|cvb root tbf rate R burst B latency L` on both ends:
//!   each direction is limited to R on its own (`tc netem` is not available on these machines).
//! * **Loss.** In each namespace an `inet` table `carrier_loss` drops `N` % of the UDP packets
//!   *arriving* (prerouting hook, `meta l4proto udp numgen random mod 100 < N counter drop`), so
//!   both directions lose N %. The drop is on arrival, after the bottleneck, as on a real lossy
//!   link: a netfilter drop on the *sending* path (output or postrouting hook) makes the sender's
//!   `sendto` fail with `EPERM`, which a lossy wire never does.
//! * **Entering a namespace.** [`NetnsPair::run_in`] runs a closure on a fresh thread that first
//!   calls `setns(/run/netns/NAME, CLONE_NEWNET)`; a socket created there belongs to that
//!   namespace for its whole life, whichever thread uses it later. The thread ends with the
//!   closure, so no thread of the test harness stays in another namespace.
//! * **Can't run.** [`NetnsPair::or_skip`] returns `None` and prints why (not root, no `ip`, `tc`
//!   or `nft`, or the setup failed, e.g. no veth/tbf/nftables support in the kernel) on the
//!   process's stderr, bypassing the test harness's output capture so the reason shows in a normal
//!   `cargo test`. With `CARRIER_REQUIRE_NETNS` set (to anything but `0`; `.ci/run` sets `1`
//!   after installing nftables and iproute2) it panics instead: then a skip is a failure.
#![allow(unsafe_code)] // setns(2) and geteuid(2) through libc; each block says why it is sound
#![allow(dead_code)] // not every helper is used by every test

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that turns a skip into a failure.
pub const REQUIRE_ENV: &str = "CARRIER_REQUIRE_NETNS";

/// Prefix of every namespace this module creates (and may sweep when its process is gone).
const PREFIX: &str = "carrier-";
/// The veth end of each namespace.
const DEVS: [&str; 2] = ["cva", "cvb"];
/// The nftables table holding the loss rule, in each namespace.
const TABLE: &str = "carrier_loss";
/// Where `ip netns` keeps its namespace handles (iproute2 uses /var/run/netns, usually /run).
const NETNS_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// The impairment of the link between the two namespaces, the same in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// tbf rate, bits per second (each direction).
    pub rate_bits_per_s: u64,
    /// tbf bucket size, bytes: how much may leave at once above the rate.
    pub burst_bytes: u32,
    /// tbf latency, ms: the longest a packet may wait in the tbf queue (sets the queue length).
    pub latency_ms: u32,
    /// Percentage (0..=99) of UDP packets dropped on arrival, in each direction.
    pub loss_percent: u8,
}

impl Shape {
    /// The tbf rate in bytes per second (of whole Ethernet frames, as tbf counts).
    pub fn rate_bytes_per_s(&self) -> f64 {
        self.rate_bits_per_s as f64 / 8.0
    }
}

/// Counters of one namespace's impairment, read after a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes the tbf of this namespace's veth end sent.
    pub tbf_sent_bytes: u64,
    /// Packets the tbf sent.
    pub tbf_sent_packets: u64,
    /// Packets the tbf dropped (its queue was full).
    pub tbf_dropped: u64,
    /// Packets it had to hold back (over the rate).
    pub tbf_overlimits: u64,
    /// UDP packets the nftables rule dropped on arrival in this namespace.
    pub nft_dropped: u64,
}

/// Two namespaces, `a` (index 0) and `b` (index 1), joined by an impaired veth pair; everything
/// is deleted on drop.
#[derive(Debug)]
pub struct NetnsPair {
    /// The namespaces created so far (empty until created), so a half-built pair cleans up.
    names: [String; 2],
    addrs: [Ipv4Addr; 2],
    shape: Shape,
    /// Whether the veth pair exists (deleted explicitly before the namespaces).
    link: bool,
}

/// Why real namespaces can't be used here, if they can't (cheap checks before any setup).
pub fn unavailable() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("network namespaces need Linux".into());
    }
    // SAFETY: geteuid(2) takes no arguments, touches no memory of ours and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!(
            "needs root to create network namespaces (effective uid is {euid})"
        ));
    }
    for (tool, arg, package) in [
        ("ip", "-V", "iproute2"),
        ("tc", "-V", "iproute2"),
        ("nft", "--version", "nftables"),
    ] {
        match Command::new(tool).arg(arg).stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Some(format!(
                    "`{tool} {arg}` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => return Some(format!("no `{tool}` ({e}); install {package}")),
        }
    }
    None
}

/// Whether `CARRIER_REQUIRE_NETNS` asks for a failure instead of a skip.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| !matches!(v.trim(), "" | "0"))
}

/// Runs a command; its stderr (or how it failed to start) on failure.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let line = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{line}` could not start: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("`{line}`: writing its input: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{line}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The handle file of namespace `name`.
fn netns_path(name: &str) -> PathBuf {
    NETNS_DIRS
        .iter()
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(NETNS_DIRS[0]).join(name))
}

/// A token that differs between processes that happen to get the same pid.
fn process_token() -> u32 {
    static TOKEN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TOKEN.get_or_init(|| {
        #[allow(clippy::disallowed_methods)] // only to tell two processes with one pid apart
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        t & 0xff_ffff
    })
}

/// Deletes namespaces of this module whose creating process no longer exists (left behind by a
/// test process that was killed before it could drop its pair).
fn sweep_stale() {
    let Ok(listing) = run("ip", &["netns", "list"], None) else {
        return;
    };
    for name in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            match run("ip", &["netns", "delete", name], None) {
                Ok(_) => eprintln!("netns: deleted {name}, left behind by the gone process {pid}"),
                Err(e) => eprintln!("netns: could not delete the stale {name}: {e}"),
            }
        }
    }
}

impl NetnsPair {
    /// Creates the two namespaces, the veth pair with its addresses, the tbf on both ends and
    /// the loss rule in both namespaces. Whatever was created is removed again if a step fails.
    pub fn new(shape: Shape) -> Result<NetnsPair, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // `numgen random mod 100` yields 0..=99 and nft refuses `< 100`. A test's mistake, not a
        // reason to skip.
        assert!(
            shape.loss_percent <= 99,
            "a loss of {} %: at most 99 %",
            shape.loss_percent
        );
        if let Some(why) = unavailable() {
            return Err(why);
        }
        sweep_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{:06x}-{n}", std::process::id(), process_token());
        // 198.18.0.0/15 holds 32,768 /30 subnets; which one does not matter (each pair has its
        // own namespaces), it only makes the addresses tell pairs apart in logs.
        let subnet = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (n % 32_768) * 4;
        let mut pair = NetnsPair {
            names: [String::new(), String::new()],
            addrs: [Ipv4Addr::from(subnet + 1), Ipv4Addr::from(subnet + 2)],
            shape,
            link: false,
        };
        for (i, side) in ["a", "b"].into_iter().enumerate() {
            let name = format!("{base}{side}");
            run("ip", &["netns", "add", &name], None)?;
            pair.names[i] = name;
        }
        pair.configure()?;
        Ok(pair)
    }

    fn configure(&mut self) -> Result<(), String> {
        let [a, b] = [self.names[0].clone(), self.names[1].clone()];
        run(
            "ip",
            &[
                "-n", &a, "link", "add", DEVS[0], "type", "veth", "peer", "name", DEVS[1], "netns",
                &b,
            ],
            None,
        )?;
        self.link = true;
        let rate = format!("{}bit", self.shape.rate_bits_per_s);
        let burst = self.shape.burst_bytes.to_string();
        let latency = format!("{}ms", self.shape.latency_ms);
        let loss = self.shape.loss_percent.to_string();
        for ((ns, dev), addr) in self.names.iter().zip(DEVS).zip(self.addrs) {
            let cidr = format!("{addr}/30");
            run("ip", &["-n", ns, "addr", "add", &cidr, "dev", dev], None)?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"], None)?;
            run("ip", &["-n", ns, "link", "set", dev, "up"], None)?;
            run(
                "ip",
                &[
                    "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                    &rate, "burst", &burst, "latency", &latency,
                ],
                None,
            )?;
            let rules = format!(
                "table inet {TABLE} {{\n\
                 \tchain arriving {{\n\
                 \t\ttype filter hook prerouting priority filter; policy accept;\n\
                 \t\tmeta l4proto udp numgen random mod 100 < {loss} counter drop\n\
                 \t}}\n\
                 }}\n"
            );
            run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(&rules))?;
        }
        Ok(())
    }

    /// [`NetnsPair::new`] for `test`; when the pair cannot be built, prints why and returns
    /// `None` (the test skips), or panics under `CARRIER_REQUIRE_NETNS`.
    pub fn or_skip(test: &str, shape: Shape) -> Option<NetnsPair> {
        match NetnsPair::new(shape) {
            Ok(pair) => Some(pair),
            Err(why) if required() => {
                panic!("{test}: {REQUIRE_ENV} is set, so this cannot be skipped: {why}")
            }
            Err(why) => {
                // Straight to the process's stderr: the harness captures eprintln! of passing
                // tests, and a skip must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: {why} (set {REQUIRE_ENV}=1 to make this a failure)"
                );
                None
            }
        }
    }

    /// The address of namespace `side` (0 = a, 1 = b) on the veth link.
    pub fn addr(&self, side: usize) -> Ipv4Addr {
        self.addrs[side]
    }

    /// The namespace names.
    pub fn names(&self) -> [&str; 2] {
        [&self.names[0], &self.names[1]]
    }

    /// The impairment.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Runs `f` on a thread inside namespace `side` (0 = a, 1 = b) and returns its result; a
    /// panic in `f` is propagated. Sockets `f` creates belong to that namespace.
    pub fn run_in<R: Send>(&self, side: usize, f: impl FnOnce() -> R + Send) -> R {
        let path = netns_path(&self.names[side]);
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name(format!("netns-{}", self.names[side]))
                .spawn_scoped(s, || {
                    let handle = File::open(&path)
                        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
                    // SAFETY: `handle` is an open file descriptor of a network namespace for the
                    // whole call; setns(2) only reads it and switches the network namespace of
                    // this thread, a fresh one that runs `f` and ends, so no other code of the
                    // process runs in the other namespace.
                    let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        panic!(
                            "setns({}, CLONE_NEWNET): {}",
                            path.display(),
                            std::io::Error::last_os_error()
                        );
                    }
                    drop(handle);
                    f()
                })
                .expect("spawning a thread");
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The impairment counters of namespace `side`; `Err` names what could not be read.
    pub fn counters(&self, side: usize) -> Result<Counters, String> {
        let (ns, dev) = (self.names[side].as_str(), DEVS[side]);
        let tc = run(
            "ip",
            &["netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", dev],
            None,
        )?;
        let nft = run(
            "ip",
            &["netns", "exec", ns, "nft", "list", "table", "inet", TABLE],
            None,
        )?;
        // tc: "Sent 123 bytes 4 pkt (dropped 0, overlimits 5 requeues 0)"
        let after = |text: &str, key: &str| -> Option<u64> {
            let at = text.find(key)? + key.len();
            let digits: String = text[at..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        let parse_err = |what: &str, text: &str| format!("no `{what}` in:\n{text}");
        Ok(Counters {
            tbf_sent_bytes: after(&tc, "Sent").ok_or_else(|| parse_err("Sent", &tc))?,
            tbf_sent_packets: after(&tc, "bytes").ok_or_else(|| parse_err("bytes", &tc))?,
            tbf_dropped: after(&tc, "dropped").ok_or_else(|| parse_err("dropped", &tc))?,
            tbf_overlimits: after(&tc, "overlimits").ok_or_else(|| parse_err("overlimits", &tc))?,
            nft_dropped: after(&nft, "counter packets")
                .ok_or_else(|| parse_err("counter packets", &nft))?,
        })
    }
}

impl Drop for NetnsPair {
    /// Deletes the loss tables, the veth pair (both ends and their tbf) and the namespaces.
    /// Failures are printed, not raised: this also runs while a failing test unwinds.
    fn drop(&mut self) {
        let live: Vec<(usize, String)> = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .map(|(i, n)| (i, n.clone()))
            .collect();
        for (_, ns) in &live {
            // Absent when the setup stopped before it: nothing to report then.
            let _ = run(
                "ip",
                &["netns", "exec", ns, "nft", "delete", "table", "inet", TABLE],
                None,
            );
        }
        if self.link
            && let Err(e) = run(
                "ip",
                &["-n", &self.names[0], "link", "delete", DEVS[0]],
                None,
            )
        {
            eprintln!("netns: deleting the veth pair: {e}");
        }
        for (_, ns) in &live {
            if let Err(e) = run("ip", &["netns", "delete", ns], None) {
                eprintln!("netns: deleting namespace {ns}: {e}");
            }
        }
    }
}
