//! The `carrier` binary end to end: help, argument errors, the demo's report, and `listen` +
//! `connect` in two processes over loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn carrier() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_carrier"));
    c.env_remove("RUST_LOG").env_remove("CARRIER_SIM_SEED");
    c
}

fn run(args: &[&str]) -> Output {
    carrier().args(args).output().expect("run carrier")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for a child at most `limit`, killing it after that (the test then fails).
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while child.try_wait().expect("try_wait").is_none() {
        if waited >= limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "carrier did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(step);
        waited += step;
    }
    child.wait_with_output().expect("output")
}

#[test]
fn help_lists_the_commands() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in ["listen", "connect", "demo"] {
        assert!(help.contains(command), "{help}");
    }
    let out = run(&["demo", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for flag in [
        "--clients",
        "--duration",
        "--sim",
        "--latency",
        "--loss",
        "--seed",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}

#[test]
fn bad_preset_is_refused_with_a_clear_message() {
    let out = run(&["demo", "--sim", "dialup", "--duration", "1"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("unknown preset `dialup`"), "{err}");
    assert!(err.contains("lan, wifi, mobile, terrible or none"), "{err}");
}

#[test]
fn bad_values_are_refused_without_a_panic() {
    for args in [
        &["listen", "127.0.0.1:0", "--loss", "150"][..],
        &["listen", "127.0.0.1:0", "--latency", "-5"],
        &["demo", "--clients", "0"],
        &["demo", "--duration", "0"],
        &["connect", "not an address"],
        &["listen", "nowhere.invalid:4000", "--duration", "1"],
        &["connect", "127.0.0.1:4000", "--channel", "300"],
    ] {
        let out = run(args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: no message");
    }
    let out = run(&["connect", "not an address"]);
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: `not an address` is not a usable address"),
        "{err}"
    );
}

/// The rows of the report's `messages` table: (stream, kind, sent, delivered, order, intact).
fn message_rows(report: &str) -> Vec<(String, u64, u64, String, String)> {
    report
        .lines()
        .skip_while(|l| *l != "messages")
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, rest) = l.split_at(l.find(')').expect("kind column") + 1);
            let cells: Vec<&str> = rest.split_whitespace().collect();
            // sent, delivered, "99.3", "%", order..., intact
            let sent = cells[0].parse().expect("sent");
            let delivered = cells[1].parse().expect("delivered");
            let intact = cells.last().expect("intact").to_string();
            let order = cells[4..cells.len() - 1].join(" ");
            (name.to_string(), sent, delivered, order, intact)
        })
        .collect()
}

#[test]
fn demo_delivers_every_reliable_message_in_order() {
    let child = carrier()
        .args(["demo", "--duration", "2", "--clients", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let out = wait_bounded(child, Duration::from_secs(60));
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed\n{report}\n{}",
        text(&out.stderr)
    );
    let rows = message_rows(&report);
    assert_eq!(rows.len(), 4, "{report}");
    let mut reliable = 0;
    for (name, sent, delivered, order, intact) in &rows {
        assert!(*sent > 0, "{name}: nothing sent\n{report}");
        assert_eq!(order, "✓", "{name}\n{report}");
        assert_eq!(intact, "✓", "{name}\n{report}");
        if name.contains("(reliable") {
            reliable += 1;
            assert_eq!(sent, delivered, "{name}\n{report}");
        } else {
            assert!(*delivered > 0, "{name}\n{report}");
        }
    }
    assert_eq!(reliable, 2, "{report}");
    assert!(report.contains("result: PASS"), "{report}");
    assert!(report.contains("simulator"), "{report}");
}

/// Starts `carrier listen ADDR --echo --duration 20` and returns it with its bound address
/// (read from its first line).
fn listen(addr: &str) -> (Child, String, mpsc::Receiver<String>) {
    let mut child = carrier()
        .args(["listen", addr, "--echo", "--duration", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn listen");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("listen prints its address");
    let bound = first
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    (child, bound, rx)
}

fn exchange(listen_addr: &str, extra: &[&str], expect_on_listener: &str) {
    let (mut listener, bound, lines) = listen(listen_addr);
    let mut connect = carrier()
        .arg("connect")
        .arg(&bound)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn connect");
    {
        let mut stdin = connect.stdin.take().expect("stdin");
        stdin.write_all(b"hello carrier\n").expect("write");
    } // end of input
    let out = wait_bounded(connect, Duration::from_secs(30));
    let client = text(&out.stdout);
    let _ = listener.kill();
    let mut server = String::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
        server.push_str(&line);
        server.push('\n');
    }
    let mut err = String::new();
    if let Some(mut e) = listener.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = listener.wait();
    assert!(
        out.status.success(),
        "connect failed\n{client}\n{}",
        text(&out.stderr)
    );
    assert!(
        server.contains(expect_on_listener) && server.contains("\"hello carrier\""),
        "listener output:\n{server}\n{err}"
    );
    // The echo came back to the client, and it printed its statistics.
    assert!(client.contains("\"hello carrier\""), "{client}");
    assert!(client.contains("statistics"), "{client}");
}

#[test]
fn listen_and_connect_exchange_a_line_over_ipv4() {
    exchange("127.0.0.1:0", &[], "channel 0 reliable Normal");
}

#[test]
fn listen_and_connect_exchange_a_line_over_ipv6() {
    exchange(
        "[::1]:0",
        &["--unreliable", "--channel", "2", "--priority", "high"],
        "channel 2 unreliable High",
    );
}

#[test]
fn bench_help_lists_the_scenarios_and_refuses_unknown_ones() {
    let out = run(&["bench", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "throughput",
        "pingpong",
        "connections",
        "lossy",
        "alloc",
        "--quick",
        "--json",
        "--reps",
    ] {
        assert!(help.contains(word), "{word} missing from\n{help}");
    }
    let out = run(&["bench", "teleport"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("teleport"),
        "{}",
        text(&out.stderr)
    );
}

/// A small `connections` run (its servers are separate `carrier bench-server` processes) and the
/// `alloc` measurement, as JSON: every variant is there with a ratio to the raw baseline, and the
/// counting allocator of the binary saw the allocations of `send` (which copies the payload).
#[test]
fn bench_runs_server_processes_and_reports_json() {
    let child = carrier()
        .args([
            "bench",
            "connections",
            "alloc",
            "--quick",
            "--json",
            "--clients",
            "20",
            "--load-ms",
            "400",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn carrier bench");
    let out = wait_bounded(child, Duration::from_secs(120));
    let json = text(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed\n{json}\n{}",
        text(&out.stderr)
    );
    for needle in [
        "\"scenario\": \"connections\"",
        "\"case\": \"20 clients × 20 Hz × 0.4 s\"",
        "\"variant\": \"raw std\"",
        "\"variant\": \"raw mmsg\"",
        "\"variant\": \"carrier dedicated\"",
        "\"variant\": \"carrier manual\"",
        "\"key\": \"server_cpu_ms\"",
        "\"key\": \"heap_per_conn_b\"",
        "\"ratio_to_raw\"",
        "\"variant\": \"send: send (copy)\"",
        "\"targets\"",
    ] {
        assert!(json.contains(needle), "{needle} missing from\n{json}");
    }
    // The first median after `after` in the JSON.
    let median = |after: &str| {
        json.split(after)
            .nth(1)
            .and_then(|rest| rest.split("\"median\": ").nth(1))
            .and_then(|rest| rest.split([',', '\n']).next())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    // The counting allocator is installed: idle connections own heap memory.
    let heap = median("\"key\": \"heap_per_conn_b\"").expect("heap_per_conn_b");
    assert!(heap > 0.0, "heap per idle connection reads {heap}");
    // `send` copies the payload into pooled buffers: no allocation per message (issue 6).
    let copy = median("\"variant\": \"send: send (copy)\"").expect("allocs_per_msg of send (copy)");
    assert!(copy < 0.05, "send (copy) allocates {copy} per message");
    // The progress bar went to standard error.
    assert!(text(&out.stderr).contains("connections 20 clients"));
}
