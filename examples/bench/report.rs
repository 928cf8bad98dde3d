//! The orchestrator: plans the cases, runs each in its own process (which starts its own fake),
//! and prints the markdown table with every figure next to its target.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::procfs;
use crate::spec::{CaseResult, CaseSpec, FakeSpec, Measure};

/// New approvals per second across the fleet in scenario 3 (when the active pipelines allow).
const APPROVALS_PER_SECOND: f64 = 0.4;
/// Share of pipelines with a run heading for (or waiting at) an approval in scenario 3.
const ACTIVE_SHARE: f64 = 0.05;
/// Scenario 2 at more pipelines than this only with `--slow` (N / 20 s per cycle).
const SCENARIO_2_MAX: usize = 1000;
/// Adaptive polling's default share of the budget for idle reads (`[aws] idle_budget_share`).
const IDLE_BUDGET_SHARE: f64 = approval_watch::config::DEFAULT_IDLE_BUDGET_SHARE;
/// The target for a cold start and a warm restart of N idle pipelines: calls ≤ this × N.
const CALLS_PER_PIPELINE: f64 = 1.02;
/// A cold start: `GetPipelineState` and `GetPipeline` (the definition, once per version) each.
const COLD_CALLS_PER_PIPELINE: f64 = 2.0 * CALLS_PER_PIPELINE;
/// Scenario 4: each pipeline's approvals come this many poll intervals apart, and each waits
/// for half of that; in between the pipeline is idle.
const SMALL_FLEET_PERIOD_POLLS: u64 = 6;

pub struct Options {
    pub pipelines: Vec<usize>,
    pub scenarios: Vec<u8>,
    pub latency_ms: u64,
    pub slow: bool,
    pub sequential: bool,
    /// Scenarios 3 and 4's poll_interval and idle_poll_interval.
    pub poll: Duration,
    pub idle: Duration,
    pub command: String,
}

struct Planned {
    spec: CaseSpec,
    /// Waits on timers and budgets more than it computes: may share the machine.
    light: bool,
}

fn plan(o: &Options) -> (Vec<Planned>, Vec<String>) {
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    let fake = |n: usize, throttle: usize| FakeSpec {
        pipelines: n,
        latency_ms: o.latency_ms,
        throttle_per_sec: throttle,
        active: 0,
        period_ms: 1,
        wait_ms: 1,
        approvals_on_idle: false,
    };
    for &scenario in &o.scenarios {
        if scenario == 4 {
            // One small fleet, whatever --n says: the one that fits the share.
            cases.push(Planned {
                light: true,
                spec: small_fleet(o),
            });
            continue;
        }
        for &n in &o.pipelines {
            let spec = match scenario {
                1 => CaseSpec {
                    scenario,
                    pipelines: n,
                    max_requests_per_second: 1000.0,
                    max_concurrency: 16,
                    // idle_poll_interval = poll_interval: every pipeline is read every cycle.
                    poll_ms: 1000,
                    idle_ms: 1000,
                    measure: Measure::Cycles((3000 / n.max(1)).clamp(1, 5)),
                    fake: fake(n, 0),
                },
                2 if n > SCENARIO_2_MAX && !o.slow => {
                    skipped.push(format!(
                        "scenario 2 at N = {} (a cycle takes {:.0} s; add `--slow`)",
                        thousands(n as u64),
                        n as f64 / 20.0
                    ));
                    continue;
                }
                2 => CaseSpec {
                    scenario,
                    pipelines: n,
                    max_requests_per_second: 20.0,
                    max_concurrency: 8,
                    poll_ms: 1000,
                    idle_ms: 1000,
                    measure: Measure::Cycles((200 / n.max(1)).clamp(1, 3)),
                    fake: fake(n, 25),
                },
                3 => {
                    let poll = o.poll.as_millis() as u64;
                    let idle = o.idle.as_millis() as u64;
                    let active = ((n as f64 * ACTIVE_SHARE).round() as usize).clamp(1, n);
                    let period =
                        ((active as f64 / APPROVALS_PER_SECOND * 1000.0) as u64).max(4 * poll);
                    CaseSpec {
                        scenario,
                        pipelines: n,
                        max_requests_per_second: 1000.0,
                        max_concurrency: 16,
                        poll_ms: poll,
                        idle_ms: idle,
                        // One idle_poll_interval holds exactly one read of every idle pipeline.
                        measure: Measure::Window {
                            window_ms: idle,
                            grace_ms: 2 * poll,
                        },
                        fake: FakeSpec {
                            active,
                            period_ms: period,
                            wait_ms: 3 * poll,
                            ..fake(n, 0)
                        },
                    }
                }
                _ => continue,
            };
            cases.push(Planned {
                light: scenario != 1,
                spec,
            });
        }
    }
    (cases, skipped)
}

/// The largest fleet whose every pipeline can be read every poll_interval within the default
/// budget's idle share (10 requests/s × 0.2 = 2 reads/s: 20 pipelines at 10 s).
fn small_fleet_size(poll: Duration) -> usize {
    let limits = approval_watch::config::Limits::default();
    let reads = limits.requests_per_second * IDLE_BUDGET_SHARE * poll.as_secs_f64();
    ((reads + 1e-9).floor() as usize).max(1)
}

/// Scenario 4: a small fleet on the default budget (the defaults of `max_requests_per_second`
/// and `max_concurrency`; `idle_budget_share` left out of the config), every pipeline idle
/// between approvals that appear without a run being seen first.
fn small_fleet(o: &Options) -> CaseSpec {
    let limits = approval_watch::config::Limits::default();
    let n = small_fleet_size(o.poll);
    let poll = o.poll.as_millis() as u64;
    let idle = o.idle.as_millis() as u64;
    CaseSpec {
        scenario: 4,
        pipelines: n,
        max_requests_per_second: limits.requests_per_second,
        max_concurrency: limits.max_concurrency,
        poll_ms: poll,
        idle_ms: idle,
        measure: Measure::Window {
            window_ms: idle,
            grace_ms: 2 * poll,
        },
        fake: FakeSpec {
            pipelines: n,
            latency_ms: o.latency_ms,
            throttle_per_sec: 0,
            active: n,
            period_ms: SMALL_FLEET_PERIOD_POLLS * poll,
            wait_ms: SMALL_FLEET_PERIOD_POLLS * poll / 2,
            approvals_on_idle: true,
        },
    }
}

fn label(spec: &CaseSpec) -> String {
    format!(
        "scenario {}, N = {}",
        spec.scenario,
        thousands(spec.pipelines as u64)
    )
}

/// Runs one case in a child process (`--run-case`), which starts its own fake.
fn run_case(spec: &CaseSpec) -> anyhow::Result<CaseResult> {
    let started = Instant::now();
    eprintln!("▶ {} …", label(spec));
    let output = Command::new(std::env::current_exe()?)
        .arg("--run-case")
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start a case")?;
    if !output.status.success() {
        bail!("{} failed ({})", label(spec), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let result = serde_json::from_str(line)
        .with_context(|| format!("{}: unreadable result {line:?}", label(spec)))?;
    eprintln!(
        "✓ {} in {:.0} s",
        label(spec),
        started.elapsed().as_secs_f64()
    );
    Ok(result)
}

pub fn main(o: Options) -> anyhow::Result<()> {
    let (cases, skipped) = plan(&o);
    let started = Instant::now();
    let mut results: Vec<Option<anyhow::Result<CaseResult>>> = cases.iter().map(|_| None).collect();
    // Cases that mostly compute run alone; the ones that mostly wait on timers and budgets
    // (scenarios 2, 3 and 4) run side by side, each in its own processes, unless --sequential.
    for (i, case) in cases.iter().enumerate() {
        if o.sequential || !case.light {
            results[i] = Some(run_case(&case.spec));
        }
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .enumerate()
            .filter(|(i, _)| results[*i].is_none())
            .map(|(i, case)| (i, scope.spawn(move || run_case(&case.spec))))
            .collect();
        for (i, handle) in handles {
            results[i] = Some(
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a case panicked"))),
            );
        }
    });
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (case, result) in cases.iter().zip(results) {
        match result {
            Some(Ok(r)) => rows.push((&case.spec, r)),
            Some(Err(e)) => failed.push(format!("{}: {e:#}", label(&case.spec))),
            None => {}
        }
    }
    print!(
        "{}",
        render(&o, &rows, &skipped, &failed, started.elapsed())
    );
    if !failed.is_empty() {
        bail!("{} case(s) failed", failed.len());
    }
    Ok(())
}

// ── the table ───────────────────────────────────────────────────────────────────────────

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn secs(ms: f64) -> String {
    if ms < 10_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} m", s / 60)
    } else if d.subsec_millis() == 0 {
        format!("{s} s")
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn scenario_title(spec: &CaseSpec, o: &Options) -> String {
    match spec.scenario {
        1 => "1 · no cap (16 in flight)".to_owned(),
        2 => "2 · 20 req/s budget, throttle > 25/s".to_owned(),
        4 => format!(
            "4 · approvals on idle pipelines, default budget, poll {}, idle {}",
            human(o.poll),
            human(o.idle)
        ),
        _ => format!(
            "3 · 5% active, poll {}, idle {}",
            human(o.poll),
            human(o.idle)
        ),
    }
}

struct Tally {
    met: usize,
    total: usize,
}

impl Tally {
    fn check(&mut self, ok: bool) -> &'static str {
        self.total += 1;
        if ok {
            self.met += 1;
        }
        mark(ok)
    }
}

fn render(
    o: &Options,
    rows: &[(&CaseSpec, CaseResult)],
    skipped: &[String],
    failed: &[String],
    took: Duration,
) -> String {
    let latency = o.latency_ms as f64;
    let mut t = Tally { met: 0, total: 0 };
    let mut out = String::new();
    let _ = writeln!(out, "### approval-watch benchmark\n");
    let _ = writeln!(
        out,
        "- Machine: {}; {} with `{}`, {:.0} s.",
        procfs::machine(),
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        o.command,
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- The real poller (`startup::watcher`, `Watcher::cycle`: AWS SDK over HTTP, SQLite, Slack \
         client) against a fake CodePipeline + Slack in another process, {} ms per call. \
         CPU time and peak RSS are the poller process's alone{}.\n",
        o.latency_ms,
        if o.sequential {
            ""
        } else {
            "; scenarios 2, 3 and 4 (mostly waiting on timers) ran side by side, each case in its own processes"
        }
    );
    let _ = writeln!(
        out,
        "| scenario | N | cycle time | calls per cycle | throttled | detection p50 / p99 | peak RSS | CPU per cycle |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|");
    for (spec, r) in rows {
        let n = spec.pipelines;
        let cycle = mean(&r.cycles_ms);
        let cycles = r.cycles_ms.len().max(1) as f64;
        let calls = r.calls.total();
        let (cycle_cell, calls_cell, throttled_cell, detection_cell, cpu_cell);
        match spec.scenario {
            1 => {
                let ideal = n as f64 * latency / spec.max_concurrency as f64;
                cycle_cell = if n == 1000 {
                    format!(
                        "{} {} ≤ {} (1.25 × {})",
                        secs(cycle),
                        t.check(cycle <= 1.25 * ideal),
                        secs(1.25 * ideal),
                        secs(ideal)
                    )
                } else {
                    format!("{} (ideal {})", secs(cycle), secs(ideal))
                };
                calls_cell = thousands((calls as f64 / cycles).round() as u64);
                throttled_cell = thousands(r.throttled);
                detection_cell = "–".to_owned();
                cpu_cell = cpu(&mut t, r.cpu_ms / cycles, n == 1000);
            }
            2 => {
                let ideal = n as f64 * 1000.0 / spec.max_requests_per_second;
                cycle_cell = format!(
                    "{} {} ≤ {} (1.1 × N / 20 s)",
                    secs(cycle),
                    t.check(cycle <= 1.1 * ideal),
                    secs(1.1 * ideal)
                );
                calls_cell = thousands((calls as f64 / cycles).round() as u64);
                throttled_cell = format!("{} {} = 0", r.throttled, t.check(r.throttled == 0));
                detection_cell = "–".to_owned();
                cpu_cell = cpu(&mut t, r.cpu_ms / cycles, n == 1000);
            }
            _ => {
                let max = r.cycles_ms.iter().copied().fold(0.0, f64::max);
                cycle_cell = format!("{} (max {})", secs(cycle), secs(max));
                let per_poll = calls as f64 * spec.poll_ms as f64 / r.elapsed_ms.max(1.0);
                if spec.scenario == 3 {
                    // Adaptive polling spends at most the idle share of the budget on idle
                    // reads (every pipeline each poll while that fits), plus the active
                    // pipelines' reads and their approvals' lookups; 10% for the cycles a
                    // window cuts.
                    let active = spec.fake.active as f64;
                    let idle_reads = (n as f64 - active).min(
                        IDLE_BUDGET_SHARE * spec.max_requests_per_second * spec.poll_ms as f64
                            / 1000.0,
                    );
                    let allowed = 1.1 * (idle_reads + 2.0 * active);
                    calls_cell = format!(
                        "{} per poll_interval {} ≤ {}",
                        thousands(per_poll.round() as u64),
                        t.check(per_poll <= allowed),
                        thousands(allowed as u64)
                    );
                } else {
                    // Every pipeline read every poll, and the new approvals' lookups.
                    let reads = r.reads.iter().sum::<usize>() as f64 / cycles;
                    calls_cell = format!(
                        "{} per poll_interval ({:.1} of {} pipelines read per cycle)",
                        thousands(per_poll.round() as u64),
                        reads,
                        n
                    );
                }
                throttled_cell = thousands(r.throttled);
                let detected = r.latencies_ms.len() as u64;
                // One poll_interval for the pipeline's turn and a second for delivery; an
                // approval on an idle pipeline (scenario 4) also waits for the idle pass,
                // which reads the whole fleet at the budget before it records and delivers.
                let idle_pass = if spec.scenario == 4 {
                    1000.0 * n as f64 / spec.max_requests_per_second
                } else {
                    0.0
                };
                let limit = spec.poll_ms as f64 + idle_pass + 1000.0;
                let p50 = percentile(&r.latencies_ms, 0.5) as f64;
                let p99 = percentile(&r.latencies_ms, 0.99) as f64;
                let ok = detected > 0 && detected >= r.expected_approvals && p99 <= limit;
                detection_cell = format!(
                    "{} / {} {} ≤ {} ({} of {} approvals)",
                    secs(p50),
                    secs(p99),
                    t.check(ok),
                    secs(limit),
                    detected,
                    r.expected_approvals
                );
                cpu_cell = format!("{:.0} ms", r.cpu_ms / cycles);
            }
        }
        let rss_mb = r.peak_rss_kb as f64 * 1024.0 / 1e6;
        let rss_cell = if n == 5000 {
            format!("{rss_mb:.1} MB {} < 40 MB", t.check(rss_mb < 40.0))
        } else {
            format!("{rss_mb:.1} MB")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {cycle_cell} | {calls_cell} | {throttled_cell} | {detection_cell} | {rss_cell} | {cpu_cell} |",
            scenario_title(spec, o),
            thousands(n as u64),
        );
    }
    let starts = starts(o, rows, &mut t);
    let _ = writeln!(out, "\nTargets met: **{} of {}**.\n", t.met, t.total);
    out.push_str(&starts);
    let _ = writeln!(out, "\nHow each scenario runs:\n");
    let _ = writeln!(
        out,
        "- **1**: `max_requests_per_second = 1000`, `max_concurrency = 16`, \
         `idle_poll_interval = poll_interval`, so every pipeline is read every cycle. After the cold \
         cycle, full cycles back to back (definitions cached: one `GetPipelineState` per pipeline). \
         Ideal = N × {} ms / 16.",
        o.latency_ms
    );
    let _ = writeln!(
        out,
        "- **2**: `max_requests_per_second = 20`, `max_concurrency = 8`; the fake answers \
         `ThrottlingException` to a 26th call in any sliding second. Full cycles back to back after \
         the cold one; throttled = calls the fake refused during them."
    );
    let _ = writeln!(
        out,
        "- **3**: `poll_interval = {}`, `idle_poll_interval = {}`, no budget cap (as 1). 5% of the \
         pipelines are active: a run heads for the approval, then the approval waits {} with a fresh \
         token, is approved, and the next run starts (about {} new approvals a second across the \
         fleet, fewer at small N). Cycles every poll_interval, as `run` does, over one \
         idle_poll_interval (which holds one read of every idle pipeline); calls per poll_interval = \
         calls in it × poll_interval / its length, at most the active pipelines' reads and lookups \
         plus the idle share of the budget (`idle_budget_share` 0.2 × 1,000 requests/s: idle \
         pipelines are read every poll while that fits, stretched beyond). Cycle time = mean (max: the cycle in which the idle \
         pipelines come due). Detection = Slack receive time − the moment the approval started \
         waiting, for approvals that started in the window (p99 of fewer than 100 is their \
         maximum); Slack messages go to \
         {} routes (team channels, by the last digit of the pipeline name) since Slack takes about \
         one message a second per webhook. CPU per cycle is per poll_interval here.",
        human(o.poll),
        human(o.idle),
        human(3 * o.poll),
        APPROVALS_PER_SECOND,
        10
    );
    let _ = writeln!(
        out,
        "- **4**: a small fleet on the default budget (`max_requests_per_second` 10, \
         `max_concurrency` 8, `idle_budget_share` 0.2: {} pipelines is the most whose every \
         pipeline fits a read every {}), `poll_interval = {}`, `idle_poll_interval = {}`. Every \
         pipeline is idle (its last run approved and deployed) until an approval appears on it \
         without a run having been seen first; the approval waits {}, is approved, and the next \
         one appears {} later. Measured as 3, over one idle_poll_interval. Target: \
         poll_interval (the pipeline's next turn) + N / max_requests_per_second (the idle pass \
         reads the whole fleet at the budget before it records and delivers, so a turn can move \
         by up to that) + 1 s for delivery: the README's promise for fleets within the share \
         (an idle read every idle_poll_interval would give up to {}).",
        small_fleet_size(o.poll),
        human(o.poll),
        human(o.poll),
        human(o.idle),
        human(o.poll * SMALL_FLEET_PERIOD_POLLS as u32 / 2),
        human(o.poll * SMALL_FLEET_PERIOD_POLLS as u32 / 2),
        human(o.idle)
    );
    let _ = writeln!(
        out,
        "- Restarts: after a case's measured cycles its watcher is closed and a second one is \
         built on the same state file (`startup::watcher`, as a restart does: the definitions \
         cached in SQLite are loaded); restart = the calls of its first cycle, at most {CALLS_PER_PIPELINE} × N \
         plus the lookups (`GetPipelineExecution`) of approvals that appeared since the last \
         cycle, which a daemon that kept running would make too. Cold start: the first cycle's \
         calls, with the {CALLS_PER_PIPELINE} × N target where the fleet is idle (1 and 2). Version change: one \
         idle pipeline's `pipelineVersion` goes up and a run starts on it; the restarted watcher \
         cycles every poll_interval until it has read it: `GetPipeline` calls in those cycles."
    );
    let _ = writeln!(
        out,
        "- Peak RSS: VmHWM of the poller process, which runs one case only (before the restart). \
         CPU: utime + stime of that process over the measured cycles (10 ms ticks), divided by \
         the cycles."
    );
    for s in skipped {
        let _ = writeln!(out, "- Skipped: {s}.");
    }
    for f in failed {
        let _ = writeln!(out, "- **Failed**: {f}");
    }
    out
}

/// The first (cold) cycle of each case, then restarts and version changes, with their targets.
fn starts(o: &Options, rows: &[(&CaseSpec, CaseResult)], t: &mut Tally) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "First (cold) cycle of each case — one `GetPipeline` per pipeline (each definition once per version, for its execution mode):\n"
    );
    let _ = writeln!(out, "| scenario | N | first cycle | calls | throttled |");
    let _ = writeln!(out, "|---|--:|--:|--:|--:|");
    for (spec, r) in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            scenario_title(spec, o),
            thousands(spec.pipelines as u64),
            secs(r.cold.cycle_ms),
            thousands(r.cold.calls),
            thousands(r.cold.throttled)
        );
    }
    let _ = writeln!(
        out,
        "\nRestarts — a second watcher on the same state file (definitions cached in SQLite), then one pipeline's version bumped:\n"
    );
    let _ = writeln!(
        out,
        "| scenario | N | cold start | restart (warm) | version change |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|");
    for (spec, r) in rows {
        let n = spec.pipelines as f64;
        let cold = if spec.fake.active == 0 {
            // A cold start also reads each definition once: its execution mode decides how the
            // pipeline is read.
            let limit = COLD_CALLS_PER_PIPELINE * n;
            format!(
                "{} {} ≤ {}",
                thousands(r.cold.calls),
                t.check(r.cold.calls as f64 <= limit),
                thousands(limit.floor() as u64)
            )
        } else {
            thousands(r.cold.calls)
        };
        let warm = r.restart.calls.total();
        let lookups = r.restart.calls.get_pipeline_execution;
        let limit = CALLS_PER_PIPELINE * n + lookups as f64;
        let restart = format!(
            "{} {} ≤ {}{}",
            thousands(warm),
            t.check(warm as f64 <= limit),
            thousands(limit.floor() as u64),
            if lookups > 0 {
                format!(
                    " ({CALLS_PER_PIPELINE} × N + {lookups} {})",
                    if lookups == 1 {
                        "lookup of a new approval"
                    } else {
                        "lookups of new approvals"
                    }
                )
            } else {
                String::new()
            }
        );
        let get_pipeline = r.restart.version_calls.get_pipeline;
        let version = format!(
            "{get_pipeline} `GetPipeline` {} = 1",
            t.check(get_pipeline == 1)
        );
        let _ = writeln!(
            out,
            "| {} | {} | {cold} | {restart} | {version} |",
            scenario_title(spec, o),
            thousands(spec.pipelines as u64),
        );
    }
    out
}

fn cpu(t: &mut Tally, ms: f64, targeted: bool) -> String {
    if targeted {
        format!("{ms:.0} ms {} < 100 ms", t.check(ms < 100.0))
    } else {
        format!("{ms:.0} ms")
    }
}
