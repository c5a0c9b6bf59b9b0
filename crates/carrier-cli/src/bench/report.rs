//! Results of `carrier bench`: measurements (medians of repetitions), their ratios to the raw-UDP
//! baseline of the same run, the targets, and the table / JSON output.

use std::fmt::Write as _;
use std::time::Duration;

use super::json::Json;
use super::stats::median;
use super::{Plan, Scenario};
use crate::format::Table;

/// Which direction of a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Rates.
    Higher,
    /// Times, CPU, memory.
    Lower,
}

/// One figure of a measurement, over every repetition.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Machine name (`msgs_per_s`).
    pub key: &'static str,
    /// Unit for humans (`msg/s`).
    pub unit: &'static str,
    /// Which direction is better.
    pub better: Better,
    /// One value per repetition.
    pub runs: Vec<f64>,
}

impl Metric {
    /// The median over the repetitions.
    pub fn median(&self) -> Option<f64> {
        median(&self.runs)
    }
}

/// One variant (Carrier in a mode, or a raw-UDP baseline) of one case of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// The scenario (`throughput`).
    pub scenario: &'static str,
    /// The case (`64 B × 200000`).
    pub case: String,
    /// The variant (`raw std`, `carrier dedicated`).
    pub variant: String,
    /// Whether this is the baseline of its case (the denominator of the ratios).
    pub baseline: bool,
    /// The figures.
    pub metrics: Vec<Metric>,
    /// Runs that failed, with the reason.
    pub failures: Vec<String>,
    /// Remarks (how it was measured).
    pub notes: Vec<String>,
}

impl Measurement {
    /// An empty measurement.
    pub fn new(
        scenario: &'static str,
        case: impl Into<String>,
        variant: impl Into<String>,
    ) -> Self {
        Measurement {
            scenario,
            case: case.into(),
            variant: variant.into(),
            baseline: false,
            metrics: Vec::new(),
            failures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Marks it as the baseline of its case.
    #[must_use]
    pub fn as_baseline(mut self) -> Self {
        self.baseline = true;
        self
    }

    /// Adds one repetition's value of a figure.
    pub fn record(&mut self, key: &'static str, unit: &'static str, better: Better, value: f64) {
        match self.metrics.iter_mut().find(|m| m.key == key) {
            Some(m) => m.runs.push(value),
            None => self.metrics.push(Metric {
                key,
                unit,
                better,
                runs: vec![value],
            }),
        }
    }

    /// Records a failed repetition.
    pub fn fail(&mut self, why: impl Into<String>) {
        let why = why.into();
        if !self.failures.contains(&why) {
            self.failures.push(why);
        }
    }

    /// Adds a remark (once).
    pub fn note(&mut self, remark: impl Into<String>) {
        let remark = remark.into();
        if !self.notes.contains(&remark) {
            self.notes.push(remark);
        }
    }

    /// The median of a figure.
    pub fn median(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key)?.median()
    }
}

/// Machine facts for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    /// CPU model (`lscpu`'s "Model name", from /proc/cpuinfo).
    pub cpu: String,
    /// CPUs available to this process (`nproc`).
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// Hypervisor, if /proc/cpuinfo says there is one.
    pub virtualised: bool,
}

impl Machine {
    /// Reads the machine facts (best effort: unknown fields stay empty).
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        let virtualised = cpuinfo
            .lines()
            .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel,
            virtualised,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} CPU{} ({}{}), Linux {}",
            self.cpus,
            if self.cpus == 1 { "" } else { "s" },
            if self.cpu.is_empty() {
                "unknown model"
            } else {
                &self.cpu
            },
            if self.virtualised {
                ", virtual machine"
            } else {
                ""
            },
            self.kernel
        )
    }
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    #[allow(clippy::disallowed_methods)] // the report's date
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3_600,
        (rem % 3_600) / 60
    )
}

/// A target of issue 6 and where the run stands against it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The target, as the issue states it.
    pub target: String,
    /// What was measured (ratio or value).
    pub measured: String,
    /// Met, not met, or not measured in this run (`None`).
    pub met: Option<bool>,
    /// How far from the target (factor to close), when not met.
    pub gap: String,
}

/// Everything `carrier bench` prints.
#[derive(Clone, Debug)]
pub struct Report {
    machine: Machine,
    date: String,
    command: String,
    plan: Plan,
    scenarios: Vec<Scenario>,
    results: Vec<Measurement>,
    notes: Vec<String>,
    elapsed: Duration,
}

/// A figure for humans: thousands separators for large numbers, 3 significant digits for small
/// ones.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 10_000.0 {
        let mut digits = format!("{:.0}", a);
        let mut grouped = String::new();
        while digits.len() > 3 {
            let tail = digits.split_off(digits.len() - 3);
            grouped = format!(",{tail}{grouped}");
        }
        format!("{}{digits}{grouped}", if x < 0.0 { "-" } else { "" })
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{x:.3}")
    }
}

fn ratio_text(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

impl Report {
    pub(super) fn new(
        plan: &Plan,
        scenarios: &[Scenario],
        results: Vec<Measurement>,
        notes: Vec<String>,
        elapsed: Duration,
    ) -> Self {
        let command = std::iter::once("carrier".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" ");
        Report {
            machine: Machine::probe(),
            date: utc_now(),
            command,
            plan: plan.clone(),
            scenarios: scenarios.to_vec(),
            results,
            notes,
            elapsed,
        }
    }

    fn baseline_of(&self, m: &Measurement) -> Option<&Measurement> {
        self.results
            .iter()
            .find(|b| b.baseline && b.scenario == m.scenario && b.case == m.case)
    }

    /// Carrier's (or any variant's) figure as a ratio to the baseline of its case.
    pub fn ratio(&self, m: &Measurement, key: &str) -> Option<f64> {
        let base = self.baseline_of(m)?.median(key)?;
        let v = m.median(key)?;
        (base != 0.0).then(|| v / base)
    }

    fn find(&self, scenario: &str, case_prefix: &str, variant: &str) -> Option<&Measurement> {
        self.results.iter().find(|m| {
            m.scenario == scenario && m.case.starts_with(case_prefix) && m.variant == variant
        })
    }

    /// Every failed run, as "scenario case variant: reason".
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .flat_map(|m| {
                m.failures
                    .iter()
                    .map(move |f| format!("{} {} {}: {f}", m.scenario, m.case, m.variant))
            })
            .collect()
    }

    /// Where the run stands against every target of the issue.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut v = Vec::new();
        let has = |s: Scenario| self.scenarios.contains(&s);
        let ratio_target = |target: &str,
                            m: Option<&Measurement>,
                            key: &str,
                            limit: f64,
                            at_least: bool|
         -> Verdict {
            let r = m.and_then(|m| self.ratio(m, key));
            verdict_for(target, r, limit, at_least, true)
        };
        if has(Scenario::Throughput) {
            v.push(ratio_target(
                "throughput 64 B: ≥ 10× the raw 64 B datagram rate (msg/s ÷ raw dgram/s)",
                self.find("throughput", "64 B", "carrier dedicated"),
                "msgs_per_s",
                10.0,
                true,
            ));
            v.push(ratio_target(
                "throughput 1 KiB: ≥ 0.9× raw UDP goodput, default driver (payload MB/s)",
                self.find("throughput", "1 KiB", "carrier dedicated"),
                "mb_per_s",
                0.9,
                true,
            ));
        }
        if has(Scenario::Pingpong) {
            let manual = self.find("pingpong", "64 B", "carrier manual (spin)");
            v.push(ratio_target(
                "pingpong manual (both spinning): p50 ≤ 1.4× raw p50",
                manual,
                "p50_us",
                1.4,
                false,
            ));
            v.push(ratio_target(
                "pingpong manual (both spinning): p99 ≤ 2× raw p99",
                manual,
                "p99_us",
                2.0,
                false,
            ));
            v.push(ratio_target(
                "pingpong threaded, instant response (raw blocking): p50 ≤ 2.5× raw p50",
                self.find("pingpong", "64 B", "carrier threaded"),
                "p50_us",
                2.5,
                false,
            ));
        }
        if has(Scenario::Connections) {
            let c = self.find("connections", "1000 ", "carrier dedicated");
            v.push(ratio_target(
                "connections 1,000: server CPU ≤ 1.3× raw UDP's",
                c,
                "server_cpu_ms",
                1.3,
                false,
            ));
            let mem = c.and_then(|m| m.median("heap_per_conn_b"));
            v.push(verdict_for(
                "connections 1,000: ≤ 2 KiB of memory per idle connection (heap)",
                mem,
                2_048.0,
                false,
                false,
            ));
            let delivery = c.and_then(|m| m.median("delivered_pct"));
            let mut d = verdict_for(
                "connections 1,000: 100 % delivery on loopback",
                delivery,
                100.0,
                true,
                false,
            );
            if let Some(x) = delivery {
                d.measured = format!("{x:.3} %");
                if x < 100.0 {
                    d.gap = format!("{:.3} % of the messages lost", 100.0 - x);
                }
            }
            v.push(d);
        }
        if has(Scenario::Lossy) {
            let zero = self
                .find("lossy", "sim", "carrier 0 % loss")
                .and_then(|m| m.median("completion_ms"));
            let five = self.find("lossy", "sim", "carrier 5 % loss");
            let r = match (five.and_then(|m| m.median("completion_ms")), zero) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let mut verdict = verdict_for(
                "lossy 5 % at 40 ms RTT: completion ≤ 1.5× the 0 % run (simulator)",
                r,
                1.5,
                false,
                true,
            );
            if five.is_some_and(|m| !m.failures.is_empty()) {
                verdict.met = Some(false);
                verdict.gap = "runs failed (see the table)".into();
            }
            v.push(verdict);
            let zero = self
                .find("lossy", "netns", "carrier 0 % loss (nft)")
                .and_then(|m| m.median("completion_ms"));
            let five = self
                .find("lossy", "netns", "carrier 5 % loss (nft)")
                .and_then(|m| m.median("completion_ms"));
            if let (Some(a), Some(z)) = (five, zero) {
                v.push(verdict_for(
                    "lossy 5 % at 40 ms RTT, netns + nftables: completion ≤ 1.5× the 0 % run",
                    (z > 0.0).then(|| a / z),
                    1.5,
                    false,
                    true,
                ));
            }
            let order_ok = self
                .results
                .iter()
                .filter(|m| m.scenario == "lossy" && !m.baseline)
                .all(|m| m.median("order_violations") == Some(0.0) && m.failures.is_empty());
            v.push(Verdict {
                target: "lossy: all messages delivered, in order".into(),
                measured: if order_ok {
                    "all runs complete and in order".into()
                } else {
                    "see failures".into()
                },
                met: Some(order_ok),
                gap: String::new(),
            });
        }
        if has(Scenario::Alloc) {
            for path in ["send", "receive"] {
                let worst = self
                    .results
                    .iter()
                    .filter(|m| m.scenario == "alloc" && m.variant.starts_with(path))
                    .filter_map(|m| m.median("allocs_per_msg"))
                    .fold(None, |acc: Option<f64>, x| {
                        Some(acc.map_or(x, |a| a.max(x)))
                    });
                // "0 per message" is amortized: a pooled buffer allocated now and then (a
                // chunk shared by thousands of messages) is allowed, up to one allocation per
                // thousand messages.
                let mut verdict = verdict_for(
                    &format!(
                        "steady state: 0 allocations per message on the {path} path \
                         (amortized, ≤ {AMORTIZED_ALLOCS})"
                    ),
                    worst,
                    AMORTIZED_ALLOCS,
                    false,
                    false,
                );
                if let Some(w) = worst {
                    verdict.measured = format!("worst {w:.4} alloc/msg");
                    if w > AMORTIZED_ALLOCS {
                        verdict.gap = format!("{w:.4} alloc/msg to remove");
                    }
                }
                v.push(verdict);
            }
        }
        v
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        self.render(false)
    }

    /// The report in Markdown (for docs/performance.md).
    pub fn markdown(&self) -> String {
        self.render(true)
    }

    fn render(&self, md: bool) -> String {
        let table = |t: &Table| if md { t.markdown() } else { t.render() };
        let (b, eb, item) = if md {
            ("**", "**", "- ")
        } else {
            ("", "", "- ")
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{b}command:{eb} `{}`{}",
            self.command,
            if md { "  " } else { "" }
        );
        let _ = writeln!(
            out,
            "{b}machine:{eb} {}{}",
            self.machine.describe(),
            if md { "  " } else { "" }
        );
        let _ = writeln!(
            out,
            "{b}date:{eb} {}; {} repetition{} per figure (medians shown, every run listed); {:.0} s in all",
            self.date,
            self.plan.reps,
            if self.plan.reps == 1 { "" } else { "s" },
            self.elapsed.as_secs_f64()
        );
        if md {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{b}ratios:{eb} to the raw-UDP baseline of the same case in this run (std UdpSocket, \
             one datagram per syscall; `1 (base)` marks it)"
        );
        out.push('\n');
        out.push_str(&table(&self.table()));
        let notes: Vec<String> = self
            .results
            .iter()
            .flat_map(|m| {
                m.notes
                    .iter()
                    .map(move |n| format!("{} / {}: {n}", m.scenario, m.variant))
            })
            .collect();
        let mut seen = Vec::new();
        if !notes.is_empty() || !self.notes.is_empty() {
            let _ = writeln!(out, "\n{b}notes:{eb}\n");
            for n in notes.iter().chain(&self.notes) {
                if !seen.contains(n) {
                    let _ = writeln!(out, "{item}{n}");
                    seen.push(n.clone());
                }
            }
        }
        let failures = self.failures();
        if !failures.is_empty() {
            let _ = writeln!(out, "\n{b}FAILED runs:{eb}\n");
            for f in &failures {
                let _ = writeln!(out, "{item}{f}");
            }
        }
        let verdicts = self.verdicts();
        if !verdicts.is_empty() {
            let _ = writeln!(out, "\n{b}targets (issue 6):{eb}\n");
            let mut t = Table::new(["target", "measured", "verdict", "gap"]).left_aligned(4);
            for v in &verdicts {
                t.row([
                    v.target.clone(),
                    v.measured.clone(),
                    match v.met {
                        Some(true) => "met".into(),
                        Some(false) => "NOT met".into(),
                        None => "not measured".to_string(),
                    },
                    v.gap.clone(),
                ]);
            }
            out.push_str(&table(&t));
        }
        out
    }

    /// The main table: one row per figure of every measurement.
    pub fn table(&self) -> Table {
        let mut t = Table::new([
            "scenario", "case", "variant", "figure", "unit", "median", "runs", "× raw",
        ])
        .left_aligned(5);
        for m in &self.results {
            if m.metrics.is_empty() && m.failures.is_empty() {
                continue; // not run (`--only`)
            }
            if m.metrics.is_empty() {
                t.row([
                    m.scenario.to_string(),
                    m.case.clone(),
                    m.variant.clone(),
                    "–".into(),
                    String::new(),
                    "failed".into(),
                ]);
                continue;
            }
            for metric in &m.metrics {
                let runs = metric
                    .runs
                    .iter()
                    .map(|x| num(*x))
                    .collect::<Vec<_>>()
                    .join(" / ");
                let ratio = if m.baseline {
                    "1 (base)".to_string()
                } else {
                    self.ratio(m, metric.key).map_or("–".into(), ratio_text)
                };
                t.row([
                    m.scenario.to_string(),
                    m.case.clone(),
                    m.variant.clone(),
                    metric.key.to_string(),
                    metric.unit.to_string(),
                    metric.median().map_or("–".into(), num),
                    runs,
                    ratio,
                ]);
            }
        }
        t
    }

    /// The report as JSON.
    pub fn json(&self) -> Json {
        let results = self
            .results
            .iter()
            .filter(|m| !m.metrics.is_empty() || !m.failures.is_empty())
            .map(|m| {
                let metrics = m
                    .metrics
                    .iter()
                    .map(|x| {
                        Json::obj([
                            ("key", Json::str(x.key)),
                            ("unit", Json::str(x.unit)),
                            (
                                "better",
                                Json::str(match x.better {
                                    Better::Higher => "higher",
                                    Better::Lower => "lower",
                                }),
                            ),
                            ("median", Json::opt(x.median())),
                            (
                                "runs",
                                Json::Arr(x.runs.iter().map(|v| Json::Num(*v)).collect()),
                            ),
                            (
                                "ratio_to_raw",
                                if m.baseline {
                                    Json::Num(1.0)
                                } else {
                                    Json::opt(self.ratio(m, x.key))
                                },
                            ),
                        ])
                    })
                    .collect();
                Json::obj([
                    ("scenario", Json::str(m.scenario)),
                    ("case", Json::str(m.case.clone())),
                    ("variant", Json::str(m.variant.clone())),
                    ("baseline", Json::Bool(m.baseline)),
                    ("metrics", Json::Arr(metrics)),
                    (
                        "failures",
                        Json::Arr(m.failures.iter().map(|f| Json::str(f.clone())).collect()),
                    ),
                    (
                        "notes",
                        Json::Arr(m.notes.iter().map(|f| Json::str(f.clone())).collect()),
                    ),
                ])
            })
            .collect();
        let verdicts = self
            .verdicts()
            .into_iter()
            .map(|v| {
                Json::obj([
                    ("target", Json::str(v.target)),
                    ("measured", Json::str(v.measured)),
                    ("met", v.met.map_or(Json::Null, Json::Bool)),
                    ("gap", Json::str(v.gap)),
                ])
            })
            .collect();
        Json::obj([
            ("command", Json::str(self.command.clone())),
            ("date", Json::str(self.date.clone())),
            (
                "machine",
                Json::obj([
                    ("cpu", Json::str(self.machine.cpu.clone())),
                    ("cpus", Json::Num(self.machine.cpus as f64)),
                    ("kernel", Json::str(self.machine.kernel.clone())),
                    ("virtualised", Json::Bool(self.machine.virtualised)),
                ]),
            ),
            ("repetitions", Json::Num(self.plan.reps as f64)),
            ("quick", Json::Bool(self.plan.quick)),
            ("elapsed_s", Json::Num(self.elapsed.as_secs_f64())),
            ("results", Json::Arr(results)),
            ("targets", Json::Arr(verdicts)),
            (
                "notes",
                Json::Arr(self.notes.iter().map(|n| Json::str(n.clone())).collect()),
            ),
        ])
    }
}

/// A verdict for a measured value against a limit (`at_least`: value ≥ limit is met).
/// Allocations per message that count as "0 per message" in steady state (amortized).
const AMORTIZED_ALLOCS: f64 = 0.001;

fn verdict_for(
    target: &str,
    value: Option<f64>,
    limit: f64,
    at_least: bool,
    ratio: bool,
) -> Verdict {
    let Some(x) = value else {
        return Verdict {
            target: target.into(),
            measured: "–".into(),
            met: None,
            gap: "not measured (failed or skipped)".into(),
        };
    };
    let met = if at_least { x >= limit } else { x <= limit };
    let measured = if ratio { ratio_text(x) } else { num(x) };
    let gap = if met {
        String::new()
    } else if at_least && x > 0.0 {
        format!("needs {:.1}× more", limit / x)
    } else if !at_least && limit > 0.0 {
        format!("needs {:.2}× less", x / limit)
    } else {
        format!("off by {}", num((x - limit).abs()))
    };
    Verdict {
        target: target.into(),
        measured,
        met: Some(met),
        gap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(num(1_234_567.8), "1,234,568");
        assert_eq!(num(12_345.0), "12,345");
        assert_eq!(num(512.4), "512");
        assert_eq!(num(17.24), "17.2");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(0.0123), "0.012");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(f64::NAN), "–");
    }

    #[test]
    fn dates_are_civil() {
        let d = utc_now();
        assert!(
            d.len() == 20 && d.ends_with(" UTC") && d.starts_with("20"),
            "{d}"
        );
    }

    #[test]
    fn ratios_use_the_baseline_of_the_same_case() {
        let mut base = Measurement::new("throughput", "64 B", "raw std").as_baseline();
        base.record("msgs_per_s", "msg/s", Better::Higher, 100.0);
        base.record("msgs_per_s", "msg/s", Better::Higher, 300.0);
        base.record("msgs_per_s", "msg/s", Better::Higher, 200.0);
        let mut c = Measurement::new("throughput", "64 B", "carrier dedicated");
        c.record("msgs_per_s", "msg/s", Better::Higher, 2_000.0);
        let mut other = Measurement::new("throughput", "1 KiB", "raw std").as_baseline();
        other.record("msgs_per_s", "msg/s", Better::Higher, 1.0);
        let plan = Plan::new(&super::super::BenchArgs::default());
        let r = Report::new(
            &plan,
            &[Scenario::Throughput],
            vec![base, other, c.clone()],
            Vec::new(),
            Duration::ZERO,
        );
        assert_eq!(r.ratio(&c, "msgs_per_s"), Some(10.0));
        let v = r.verdicts();
        assert_eq!(v[0].met, Some(true));
        assert_eq!(v[1].met, None);
        assert!(r.text().contains("10.0×"));
        assert!(r.json().render().contains("\"ratio_to_raw\": 10"));
    }

    #[test]
    fn verdicts_say_how_far() {
        let v = verdict_for("x", Some(2.0), 10.0, true, true);
        assert_eq!(v.met, Some(false));
        assert_eq!(v.gap, "needs 5.0× more");
        let v = verdict_for("x", Some(3.0), 1.5, false, true);
        assert_eq!(v.gap, "needs 2.00× less");
        let v = verdict_for("x", Some(1.0), 0.0, false, false);
        assert_eq!(v.gap, "off by 1.00");
    }
}
