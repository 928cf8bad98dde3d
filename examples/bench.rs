//! Benchmark: the real poller against a fake CodePipeline with N pipelines, a per-call latency
//! and a throttle; prints a markdown table (cycle time, calls per cycle, throttled calls,
//! detection latency, peak RSS, CPU time per cycle) with each figure next to its target, then
//! the calls of a cold start, a warm restart and a version change.
//!
//!     cargo run --release --example bench                 # N = 100, 1,000, 5,000 (~5 min)
//!     cargo run --release --example bench -- --quick      # N = 20, short intervals (~30 s)
//!     cargo run --release --example bench -- --n 100,1000 --scenario 1,3
//!     cargo run --release --example bench -- --scenario 4  # the small fleet only (~3 min)
//!
//! Processes: this one plans and prints; each case (a scenario at one N) runs in its own
//! process (`--run-case`), so its peak RSS and CPU time are that case's alone, and that process
//! starts the fake CodePipeline + Slack as its own child (`--serve-fake`), so they are the
//! poller's alone.

#[path = "bench/case.rs"]
mod case;
#[path = "bench/fake.rs"]
mod fake;
#[path = "bench/procfs.rs"]
mod procfs;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/spec.rs"]
mod spec;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Runs the real poller against a fake CodePipeline and prints a markdown table"
)]
struct Args {
    /// A smoke test: N = 20 (unless --n), scenarios 3 and 4 with poll 1s / idle 12s; about 30 s.
    #[arg(long)]
    quick: bool,
    /// Pipeline counts, comma-separated [default: 100,1000,5000; with --quick: 20]. Scenario 4
    /// ignores them: its fleet is the largest that fits the default budget's idle share.
    #[arg(long, value_delimiter = ',')]
    n: Vec<usize>,
    /// Scenarios to run, comma-separated [default: 1,2,3,4].
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<u8>,
    /// Latency of every call to the fake CodePipeline, ms.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Also run scenario 2 above 1,000 pipelines (N / 20 s per cycle: 250 s at 5,000).
    #[arg(long)]
    slow: bool,
    /// Run every case alone (by default scenarios 2, 3 and 4, which mostly wait, run side by side).
    #[arg(long)]
    sequential: bool,
    /// Scenarios 3 and 4's poll_interval [default: 10s; with --quick: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    poll: Option<Duration>,
    /// Scenarios 3 and 4's idle_poll_interval [default: 2m; with --quick: 12s].
    #[arg(long, value_parser = humantime::parse_duration)]
    idle: Option<Duration>,
    /// Internal: serve the fake described by this JSON, print its port.
    #[arg(long, hide = true)]
    serve_fake: Option<String>,
    /// Internal: run the case described by this JSON, print its result.
    #[arg(long, hide = true)]
    run_case: Option<String>,
}

fn main() -> ExitCode {
    // Static credentials for the fake, for this process and its children; set before any
    // thread exists. SAFETY: single-threaded here; nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDBENCH");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench-secret");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        for var in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"] {
            std::env::remove_var(var);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            std::env::set_var("RUST_LOG", "error");
        }
    }
    let args = Args::parse();
    let result = if let Some(json) = &args.serve_fake {
        serde_json::from_str(json)
            .map_err(anyhow::Error::from)
            .and_then(fake::serve)
    } else if let Some(json) = &args.run_case {
        approval_watch::logging::init();
        serde_json::from_str(json)
            .map_err(anyhow::Error::from)
            .and_then(case::run)
    } else {
        report::main(options(&args))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn options(args: &Args) -> report::Options {
    let pipelines = match (&args.n[..], args.quick) {
        ([], false) => vec![100, 1000, 5000],
        ([], true) => vec![20],
        (n, _) => n.iter().copied().filter(|n| *n > 0).collect(),
    };
    let scenarios = if args.scenario.is_empty() {
        vec![1, 2, 3, 4]
    } else {
        args.scenario.clone()
    };
    let (poll, idle) = if args.quick {
        (Duration::from_secs(1), Duration::from_secs(12))
    } else {
        (Duration::from_secs(10), Duration::from_secs(120))
    };
    let poll = args.poll.unwrap_or(poll).max(Duration::from_secs(1));
    let idle = args.idle.unwrap_or(idle).max(poll);
    let command = std::iter::once("cargo run --release --example bench".to_owned())
        .chain(
            std::env::args()
                .skip(1)
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .first()
                .map(|_| "--".to_owned()),
        )
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    report::Options {
        pipelines,
        scenarios,
        latency_ms: args.latency_ms,
        slow: args.slow,
        sequential: args.sequential,
        poll,
        idle,
        command,
    }
}
