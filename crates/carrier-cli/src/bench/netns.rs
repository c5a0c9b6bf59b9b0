//! A pair of network namespaces joined by a veth pair (198.18.0.1 ↔ 198.18.0.2, RFC 2544
//! benchmarking addresses), with an nftables rule that drops a share of the UDP datagrams each
//! namespace receives. Needs root, `ip` and `nft`; removed on drop, whatever happened.
//!
//! The rule sits in the *input* hook: a drop in the output hook makes the sender's `sendto`
//! fail with `EPERM`, which is not what loss on a network looks like.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Address of side A.
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Address of side B.
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const TABLE: &str = "carrier_bench";

/// Two namespaces, removed on drop.
#[derive(Debug)]
pub struct NetnsPair {
    names: [String; 2],
    created: Vec<String>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{}` failed to start: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn found(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

impl NetnsPair {
    /// Why the pair cannot be built here, if it cannot.
    pub fn unavailable() -> Option<String> {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
            });
        if uid.as_deref() != Some("0") {
            return Some("not root".into());
        }
        for tool in ["ip", "nft"] {
            if !found(tool) {
                return Some(format!("`{tool}` is not installed"));
            }
        }
        None
    }

    /// Creates the namespaces, the veth pair, the addresses and an (empty) nftables chain in
    /// each namespace.
    pub fn create() -> Result<Self, String> {
        let tag = format!("cbench-{}-{:x}", std::process::id(), crate::random_seed());
        let mut pair = NetnsPair {
            names: [format!("{tag}-a"), format!("{tag}-b")],
            created: Vec::new(),
        };
        let [a, b] = pair.names.clone();
        for ns in [&a, &b] {
            run(&["ip", "netns", "add", ns])?;
            pair.created.push(ns.clone());
        }
        run(&[
            "ip", "-n", &a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", &b,
        ])?;
        for (ns, dev, addr) in [(&a, "v0", ADDR_A), (&b, "v1", ADDR_B)] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/30"),
                "dev",
                dev,
            ])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            run(&[
                "ip", "netns", "exec", ns, "nft", "add", "table", "inet", TABLE,
            ])?;
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "nft",
                "add",
                "chain",
                "inet",
                TABLE,
                "in",
                "{ type filter hook input priority 0 ; policy accept ; }",
            ])?;
        }
        Ok(pair)
    }

    /// Drops `percent` % of the UDP datagrams each namespace receives (0 removes the rule).
    pub fn set_loss(&self, percent: u32) -> Result<(), String> {
        for ns in &self.names {
            run(&[
                "ip", "netns", "exec", ns, "nft", "flush", "chain", "inet", TABLE, "in",
            ])?;
            if percent > 0 {
                run(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "nft",
                    "add",
                    "rule",
                    "inet",
                    TABLE,
                    "in",
                    "meta",
                    "l4proto",
                    "udp",
                    "numgen",
                    "random",
                    "mod",
                    "100",
                    "<",
                    &percent.to_string(),
                    "drop",
                ])?;
            }
        }
        Ok(())
    }

    /// The namespace file of side A (0) or B (1), to enter with `setns`.
    pub fn open(&self, side: usize) -> Result<File, String> {
        let path = format!("/run/netns/{}", self.names[side.min(1)]);
        File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        for ns in self.created.drain(..) {
            if let Err(e) = run(&["ip", "netns", "del", &ns]) {
                eprintln!("warning: could not remove network namespace {ns}: {e}");
            }
        }
    }
}
