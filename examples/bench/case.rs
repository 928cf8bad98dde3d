//! One case (a scenario at one N) in its own process: starts the fake as a child, builds the
//! real watcher with `startup::watcher`, runs a cold cycle, then measures; then restarts (a
//! second watcher on the same state file) and bumps one pipeline's version. Prints a
//! [`CaseResult`] as one JSON line on stdout.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use approval_watch::config::Config;
use approval_watch::daemon::cycle::{CycleReport, Watcher};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fake::{epoch_ms, pipeline_name};
use crate::procfs;
use crate::spec::{CaseResult, CaseSpec, Cold, FakeSpec, FakeStats, Measure, Restart};

/// Slack allows about one message a second per webhook; a fleet this size posts to many team
/// channels. Pipelines are routed by the last digit of their name.
const ROUTES: usize = 10;

/// The fake's process: ends when its stdin closes; killed on drop in any case.
struct FakeProcess {
    child: Child,
    port: u16,
}

impl FakeProcess {
    fn spawn(spec: &FakeSpec) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-fake")
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the fake")?;
        let stdout = child.stdout.take().context("fake stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port = line
            .trim()
            .parse()
            .with_context(|| format!("the fake said {line:?}, not a port"))?;
        Ok(Self { child, port })
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(spec: CaseSpec) -> anyhow::Result<()> {
    let fake = FakeProcess::spawn(&spec.fake)?;
    // As the daemon runs (`cli::main`): one thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(measure(&spec, fake.port))?;
    drop(runtime);
    drop(fake);
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn config_text(spec: &CaseSpec, base: &str, dir: &Path) -> String {
    let mut text = format!(
        r#"poll_interval = "{}ms"
idle_poll_interval = "{}ms"
state_path = "{}"

[aws]
region = "us-east-1"
endpoint_url = "{base}"
max_requests_per_second = {:?}
max_concurrency = {}

[slack]
webhook_url = "{base}/hook/default"

[reminders]
max = 0
"#,
        spec.poll_ms,
        spec.idle_ms,
        dir.join("state.db").display(),
        spec.max_requests_per_second,
        spec.max_concurrency,
    );
    for d in 0..ROUTES {
        let _ = write!(
            text,
            "\n[[route]]\nname = \"team-{d}\"\npipelines = [\"pipe-*{d}\"]\nwebhook_url = \"{base}/hook/team-{d}\"\n"
        );
    }
    for i in 0..spec.pipelines {
        let _ = write!(text, "\n[[pipeline]]\nname = \"{}\"\n", pipeline_name(i));
    }
    text
}

/// The fake's control endpoints.
struct Control {
    http: reqwest::Client,
    base: String,
}

impl Control {
    async fn reset(&self) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/reset", self.base))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn stats(&self, from: i64, to: i64) -> anyhow::Result<FakeStats> {
        Ok(self
            .http
            .get(format!("{}/stats?from={from}&to={to}", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Bumps one idle pipeline's version and starts a run on it; returns its name. When
    /// every pipeline has an approval waiting (a small fleet), tries again until one is idle.
    async fn bump(&self) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let answer = self.http.post(format!("{}/bump", self.base)).send().await?;
            if answer.status() != reqwest::StatusCode::CONFLICT || Instant::now() > deadline {
                return Ok(answer.error_for_status()?.text().await?);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Cycles and what they did.
#[derive(Default)]
struct Log {
    cycles_ms: Vec<f64>,
    reads: Vec<usize>,
    read_failures: usize,
}

impl Log {
    async fn cycle(&mut self, watcher: &mut Watcher) -> anyhow::Result<CycleReport> {
        let started = Instant::now();
        let report = watcher.cycle(&CancellationToken::new()).await?;
        self.cycles_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        self.reads.push(report.reads);
        self.read_failures += report.read_failures;
        Ok(report)
    }
}

/// A watcher on the case's config and state file, as `run` builds it at start.
async fn start(config: &Config) -> anyhow::Result<Watcher> {
    Ok(approval_watch::daemon::startup::watcher(
        config.clone(),
        approval_watch::daemon::startup::Mode::Live,
        approval_watch::clock::Clock::System,
    )
    .await?)
}

async fn measure(spec: &CaseSpec, port: u16) -> anyhow::Result<CaseResult> {
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir()?;
    let config = Config::parse(&config_text(spec, &base, dir.path()), "bench.toml".as_ref())?;
    let mut watcher = start(&config).await?;
    let control = Control {
        http: reqwest::Client::new(),
        base,
    };
    let poll = Duration::from_millis(spec.poll_ms);

    // Cold: nothing known yet, every definition is fetched.
    control.reset().await?;
    let cold_started = Instant::now();
    Log::default().cycle(&mut watcher).await?;
    let cold_ms = cold_started.elapsed().as_secs_f64() * 1000.0;
    let s = control.stats(0, 0).await?;
    let cold = Cold {
        cycle_ms: cold_ms,
        calls: s.calls.total(),
        throttled: s.throttled,
    };
    control.reset().await?;

    let mut log = Log::default();
    let saved_before = watcher.reads_saved();
    let (elapsed_ms, cpu_ms, counters, reads_saved, latencies, expected) = match spec.measure {
        Measure::Cycles(n) => {
            let cpu = procfs::cpu_ms();
            let started = Instant::now();
            for _ in 0..n {
                log.cycle(&mut watcher).await?;
            }
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            let cpu = procfs::cpu_ms() - cpu;
            let s = control.stats(0, 0).await?;
            let saved = watcher.reads_saved() - saved_before;
            (elapsed, cpu, s, saved, Vec::new(), 0)
        }
        Measure::Window {
            window_ms,
            grace_ms,
        } => {
            // Like `daemon::run`: a cycle every poll_interval; one that overruns is followed at once.
            let from = epoch_ms();
            let cpu = procfs::cpu_ms();
            let started = Instant::now();
            let end = started + Duration::from_millis(window_ms);
            let mut next = (cold_started + poll).max(started);
            while next < end {
                tokio::time::sleep_until(next).await;
                let at = Instant::now();
                log.cycle(&mut watcher).await?;
                next = (at + poll).max(Instant::now());
            }
            tokio::time::sleep_until(end).await;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            let cpu = procfs::cpu_ms() - cpu;
            let counters = control.stats(0, 0).await?;
            let saved = watcher.reads_saved() - saved_before;
            let to = from + elapsed as i64;
            // Keep polling so approvals that started waiting near the end are detected too.
            let grace_end = end + Duration::from_millis(grace_ms);
            let mut extra = Log::default();
            while next < grace_end {
                tokio::time::sleep_until(next).await;
                let at = Instant::now();
                extra.cycle(&mut watcher).await?;
                next = (at + poll).max(Instant::now());
            }
            let detections = control.stats(from, to).await?;
            (
                elapsed,
                cpu,
                counters,
                saved,
                detections.latencies_ms,
                detections.expected,
            )
        }
    };
    let peak_rss_kb = procfs::peak_rss_kb();
    let restart = restart(watcher, &config, &control, poll, spec.idle_ms).await?;
    Ok(CaseResult {
        cold,
        cycles_ms: log.cycles_ms,
        reads: log.reads,
        read_failures: log.read_failures,
        reads_saved,
        elapsed_ms,
        calls: counters.calls,
        throttled: counters.throttled,
        cpu_ms,
        peak_rss_kb,
        latencies_ms: latencies,
        expected_approvals: expected,
        restart,
    })
}

/// A restart with the definitions cache warm: the watcher closed (its lock released) and a
/// second one built on the same state file; the calls of its first cycle. Then one idle
/// pipeline's `pipelineVersion` is bumped with a run starting, and the restarted watcher
/// cycles every poll_interval until it has read that pipeline: the calls of those cycles.
async fn restart(
    watcher: Watcher,
    config: &Config,
    control: &Control,
    poll: Duration,
    idle_ms: u64,
) -> anyhow::Result<Restart> {
    watcher.close()?;
    control.reset().await?;
    let mut watcher = start(config).await?;
    let started = Instant::now();
    Log::default().cycle(&mut watcher).await?;
    let cycle_ms = started.elapsed().as_secs_f64() * 1000.0;
    let calls = control.stats(0, 0).await?.calls;

    control.reset().await?;
    let bumped = control.bump().await?;
    // The bumped pipeline was idle: it is read when idle pipelines come due.
    let deadline = Instant::now() + Duration::from_millis(idle_ms) + 2 * poll;
    let mut next = started + poll;
    let mut cycles = 0;
    let stats = loop {
        tokio::time::sleep_until(next).await;
        let at = Instant::now();
        Log::default().cycle(&mut watcher).await?;
        cycles += 1;
        next = (at + poll).max(Instant::now());
        let s = control.stats(0, 0).await?;
        if s.bumped_reads > 0 {
            break s;
        }
        if next > deadline {
            anyhow::bail!("{bumped} (version bumped) was not read within idle_poll_interval");
        }
    };
    watcher.close()?;
    Ok(Restart {
        calls,
        cycle_ms,
        version_calls: stats.calls,
        version_cycles: cycles,
    })
}
