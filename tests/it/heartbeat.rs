//! The heartbeat (dead man's switch): pings while cycles are healthy, at most once per
//! `every`; none — and the fail URL at once — when every read fails or the store takes no
//! writes; a hanging monitor never delays a cycle; the URLs never reach a log or any output.
//! The timing is driven in-process on tokio's paused clock, with the real SDK, SQLite and HTTP
//! to the fakes; the secrecy is also checked on the real binary at `RUST_LOG=debug`.

use crate::support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use approval_watch::clock::Clock;
use approval_watch::config::Config;
use approval_watch::daemon::startup;
use approval_watch::daemon::{self, Options};
use jiff::Timestamp;
use support::runner::strip_ansi;
use support::{
    FakeCodePipeline, FakeHeartbeat, FakeSlack, HEARTBEAT_SECRET, SOON, WEBHOOK_SECRET, World,
};
use tokio_util::sync::CancellationToken;

const PIPELINES: [&str; 2] = ["web-app", "api"];

fn config_text(
    aws: &FakeCodePipeline,
    slack: &FakeSlack,
    monitor: &FakeHeartbeat,
    state: &Path,
    with_fail_url: bool,
) -> String {
    let mut text = format!(
        "poll_interval = \"30s\"\nidle_poll_interval = \"30s\"\nstate_path = \"{}\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[slack]\nwebhook_url = \"{}\"\n\
         [heartbeat]\nurl = \"{}\"\nevery = \"1m\"\n",
        state.display(),
        aws.endpoint(),
        slack.url(),
        monitor.url()
    );
    if with_fail_url {
        text.push_str(&format!("fail_url = \"{}\"\n", monitor.fail_url()));
    }
    for p in PIPELINES {
        text.push_str(&format!("[[pipeline]]\nname = \"{p}\"\n"));
    }
    text
}

/// Log lines of this thread's tasks (the test runtime has one thread), at debug.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn assert_no_secret(&self) {
        let text = self.text();
        assert!(!text.is_empty(), "nothing was logged");
        assert!(
            !text.contains(HEARTBEAT_SECRET),
            "the heartbeat URL is in the logs"
        );
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The daemon loop on paused time; `steps` drives the fakes and time beside it, then stops it.
async fn run_loop(
    config_text: &str,
    dir: &Path,
    steps: impl std::future::Future<Output = ()>,
    shutdown: CancellationToken,
) {
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config_text).expect("config");
    let config = Config::load(&config_path).expect("valid config");
    let clock = Clock::tokio_at(Timestamp::now());
    let daemon = startup::daemon(config, clock).await.expect("daemon");
    let options = Options {
        notifier: Default::default(),
        reloads: Box::pin(futures_util::stream::pending()),
        config_path,
        clock,
    };
    let (result, ()) = tokio::join!(daemon::run(daemon, options, shutdown), steps);
    result.expect("the loop ends and closes the database");
}

#[tokio::test(start_paused = true)]
async fn healthy_cycles_ping_at_most_once_per_every_and_never_log_the_url() {
    support::static_credentials();
    let logs = Logs::default();
    let _guard = logs.capture();
    let aws = FakeCodePipeline::with_pipelines(&PIPELINES).await;
    let slack = FakeSlack::start().await;
    let monitor = FakeHeartbeat::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config_text(&aws, &slack, &monitor, &dir.path().join("state.db"), true);
    let shutdown = CancellationToken::new();
    let steps = async {
        // Cycles every 30 s for 9 min 45 s: pings at 0, 1, …, 9 min — ten, not twenty.
        tokio::time::sleep(Duration::from_secs(9 * 60 + 45)).await;
        assert_eq!(monitor.pings(), 10);
        assert_eq!(monitor.fails(), 0);
        assert_eq!(monitor.other(), 0);
        shutdown.cancel();
    };
    run_loop(&text, dir.path(), steps, shutdown.clone()).await;
    logs.assert_no_secret();
}

#[tokio::test(start_paused = true)]
async fn every_read_failing_pings_the_fail_url_at_once_then_once_per_every() {
    support::static_credentials();
    let logs = Logs::default();
    let _guard = logs.capture();
    let aws = FakeCodePipeline::with_pipelines(&PIPELINES).await;
    let slack = FakeSlack::start().await;
    let monitor = FakeHeartbeat::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config_text(&aws, &slack, &monitor, &dir.path().join("state.db"), true);
    let shutdown = CancellationToken::new();
    let steps = async {
        // Healthy at 0 and 30 s: one ping.
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (1, 0));

        // Every read fails from the cycle at 60 s: the failure is told at once...
        for p in PIPELINES {
            aws.set_error(p, 400, "AccessDeniedException", "not allowed");
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (1, 1));
        // ...then once a minute (cycles at 90, 120, 150, 180, 210 s: fails at 120, 180), and
        // the success URL hears nothing.
        tokio::time::sleep(Duration::from_secs(150)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (1, 3));

        // Readable again: the next cycle (240 s) pings the success URL.
        for p in PIPELINES {
            aws.clear_error(p);
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (2, 3));
        shutdown.cancel();
    };
    run_loop(&text, dir.path(), steps, shutdown.clone()).await;
    logs.assert_no_secret();
}

#[tokio::test(start_paused = true)]
async fn without_a_fail_url_failing_reads_stop_the_pings_until_reads_succeed() {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(&PIPELINES).await;
    let slack = FakeSlack::start().await;
    let monitor = FakeHeartbeat::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config_text(&aws, &slack, &monitor, &dir.path().join("state.db"), false);
    let shutdown = CancellationToken::new();
    let steps = async {
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert_eq!(monitor.pings(), 1);
        for p in PIPELINES {
            aws.set_error(p, 400, "AccessDeniedException", "not allowed");
        }
        tokio::time::sleep(Duration::from_secs(5 * 60)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (1, 0));
        // One pipeline readable is enough.
        aws.clear_error("api");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(monitor.pings(), 2);
        shutdown.cancel();
    };
    run_loop(&text, dir.path(), steps, shutdown.clone()).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_undelivered_for_15_minutes_makes_cycles_unhealthy() {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(&PIPELINES).await;
    let slack = FakeSlack::start().await;
    let monitor = FakeHeartbeat::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config_text(&aws, &slack, &monitor, &dir.path().join("state.db"), true);
    // Slack is down: the alert stays in the outbox.
    slack.set_default(support::SlackResponse::status(500, "internal_error"));
    aws.set_waiting("web-app", "tok-1");
    let shutdown = CancellationToken::new();
    let steps = async {
        // Up to 15 minutes undelivered is still healthy: a ping each minute.
        tokio::time::sleep(Duration::from_secs(14 * 60 + 45)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (15, 0));
        // Past 15 minutes (the cycle at 15:00 or 15:30, as retries shift the cycles by a
        // little): the failure URL at once, and no more success pings...
        tokio::time::sleep(Duration::from_secs(60)).await;
        let (pings, fails) = (monitor.pings(), monitor.fails());
        assert!(pings <= 16 && fails == 1, "{pings} pings, {fails} fails");
        // ...while it lasts: the failure URL once a minute, the success URL never.
        tokio::time::sleep(Duration::from_secs(180)).await;
        assert_eq!(monitor.pings(), pings);
        let more = monitor.fails() - fails;
        assert!((2..=3).contains(&more), "{more} failure pings in 3 minutes");
        shutdown.cancel();
    };
    run_loop(&text, dir.path(), steps, shutdown.clone()).await;
}

#[tokio::test(start_paused = true)]
async fn a_hanging_monitor_never_delays_a_cycle() {
    support::static_credentials();
    let logs = Logs::default();
    let _guard = logs.capture();
    let aws = FakeCodePipeline::with_pipelines(&PIPELINES).await;
    let slack = FakeSlack::start().await;
    let monitor = FakeHeartbeat::start().await;
    monitor.set_delay(Some(Duration::from_secs(3600)));
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config_text(&aws, &slack, &monitor, &dir.path().join("state.db"), false);
    let shutdown = CancellationToken::new();
    let steps = async {
        // Cycles at 0, 30, …, 270 s: each pipeline read ten times although every ping hangs.
        tokio::time::sleep(Duration::from_secs(4 * 60 + 45)).await;
        assert_eq!(aws.calls(support::GET_PIPELINE_STATE, "web-app"), 10);
        assert_eq!(monitor.pings(), 5);
        shutdown.cancel();
    };
    run_loop(&text, dir.path(), steps, shutdown.clone()).await;
    let text = logs.text();
    assert!(
        text.contains("heartbeat ping failed: timed out after 5 s"),
        "{text}"
    );
    logs.assert_no_secret();
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Fills the file system holding `path` to the last page.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler");
    for size in [64 * 1024, 4096, 1] {
        let block = vec![0u8; size];
        while f.write_all(&block).is_ok() {}
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_takes_no_writes_stops_the_pings_and_pings_the_fail_url() {
    support::static_credentials();
    let dir = tempfile::tempdir().expect("temp dir");
    let mount = dir.path().join("mnt");
    let fs = match Tmpfs::mount(&mount) {
        Ok(fs) => fs,
        Err(why) => {
            println!("skipped: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    let aws = FakeCodePipeline::with_pipelines(&PIPELINES).await;
    let slack = FakeSlack::start().await;
    let monitor = FakeHeartbeat::start().await;
    let text = config_text(&aws, &slack, &monitor, &mount.join("state.db"), true);
    let shutdown = CancellationToken::new();
    let steps = async {
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (1, 0));
        // The file system is full: nothing changes in AWS, but the cycle's write fails.
        fill(&fs.0.join("filler"));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (1, 1));
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (1, 3));
        // Room again: pings resume at the next cycle.
        std::fs::remove_file(fs.0.join("filler")).expect("remove filler");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!((monitor.pings(), monitor.fails()), (2, 3));
        shutdown.cancel();
    };
    run_loop(&text, dir.path(), steps, shutdown.clone()).await;
    drop(fs);
}

/// The real binary at `RUST_LOG=debug`: a failing monitor is logged without its URL, and
/// `check-config` and `test-heartbeat` never print it either.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_never_shows_the_heartbeat_urls() {
    let mut w = World::start(&["web-app"]).await;
    let monitor = FakeHeartbeat::start().await;
    monitor.set_status(503);
    w.env.set_env("HEARTBEAT_URL", &monitor.url());
    w.env.set_env("HEARTBEAT_FAIL_URL", &monitor.fail_url());
    w.env.spec.extra_top = "[heartbeat]\nurl_env = \"HEARTBEAT_URL\"\n\
        fail_url_env = \"HEARTBEAT_FAIL_URL\"\nevery = \"10s\"\n"
        .to_owned();
    w.env.write_config();

    let mut daemon = w.env.spawn_run();
    assert!(
        daemon
            .wait_for_stderr("heartbeat ping failed: the monitor answered HTTP 503", SOON)
            .await,
        "{}",
        daemon.stderr()
    );
    let out = daemon.terminate().await;
    assert!(monitor.pings() >= 1);
    let check = w.env.run(&["check-config"]).await;
    check.assert_code(0);
    assert!(
        check.stdout.contains("heartbeat: every 10s")
            && check.stdout.contains("environment variable HEARTBEAT_URL"),
        "{}",
        check.describe()
    );
    let failed = w.env.run(&["test-heartbeat"]).await;
    failed.assert_code(1);
    assert!(
        failed
            .stdout
            .contains("heartbeat (heartbeat.url_env): FAILED: the monitor answered HTTP 503"),
        "{}",
        failed.describe()
    );
    monitor.set_status(200);
    let before = monitor.fails();
    let ok = w.env.run(&["test-heartbeat", "--fail"]).await;
    ok.assert_code(0);
    assert!(
        ok.stdout
            .contains("heartbeat (heartbeat.fail_url_env): ok (HTTP 200)"),
        "{}",
        ok.describe()
    );
    assert_eq!(monitor.fails(), before + 1);
    // A URL that is not one is named by its key, never quoted.
    w.env
        .set_env("HEARTBEAT_URL", &format!("ftp://x/{HEARTBEAT_SECRET}"));
    let bad = w.env.run(&["check-config"]).await;
    bad.assert_code(2);
    assert!(
        bad.stderr.contains("heartbeat.url_env"),
        "{}",
        bad.describe()
    );
    for (what, text) in [
        ("daemon", out.all_output()),
        ("check-config", check.all_output()),
        ("test-heartbeat", failed.all_output()),
        ("test-heartbeat --fail", ok.all_output()),
        ("bad check-config", bad.all_output()),
    ] {
        let text = strip_ansi(&text);
        assert!(
            !text.contains(HEARTBEAT_SECRET),
            "the heartbeat URL is in the {what} output"
        );
        assert!(!text.contains(WEBHOOK_SECRET), "the webhook is in {what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_heartbeat_without_a_heartbeat_table_is_a_config_error() {
    let w = World::start(&["web-app"]).await;
    let out = w.env.run(&["test-heartbeat"]).await;
    out.assert_code(2);
    assert!(
        out.stderr.contains("heartbeat: not configured"),
        "{}",
        out.describe()
    );
}
