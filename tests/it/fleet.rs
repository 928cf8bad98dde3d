//! Watching a fleet: discovery with ListPipelines, the request budget, adaptive polling.
//! Real SDK over HTTP to the fake, real SQLite, time driven through `cycle_at`.

use crate::support;

use std::time::Duration;

use approval_watch::config::Config;
use approval_watch::daemon::cycle::Watcher;
use jiff::{SignedDuration, Timestamp};
use support::{
    FakeCodePipeline, FakeSlack, Fixture, GET_PIPELINE_STATE, InjectedError, LIST_PIPELINES,
};

struct Setup {
    aws: FakeCodePipeline,
    slack: FakeSlack,
    watcher: Watcher,
    _dir: tempfile::TempDir,
}

/// A watcher over the fake with `extra` config (pipelines, discover, limits).
async fn setup(pipelines: &[&str], top: &str, aws_extra: &str, extra: &str) -> Setup {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(pipelines).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse(
        &format!(
            "{top}\nstate_path = \"{}\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n{aws_extra}\n\
             [slack]\nwebhook_url = \"{}\"\n[reminders]\nmax = 0\n{extra}",
            dir.path().join("state.db").display(),
            aws.endpoint(),
            slack.url()
        ),
        "fleet.toml".as_ref(),
    )
    .expect("config");
    let watcher = support::app::open_watcher(&config).await;
    Setup {
        aws,
        slack,
        watcher,
        _dir: dir,
    }
}

fn t0() -> Timestamp {
    Timestamp::now()
}

fn plus(t: Timestamp, secs: i64) -> Timestamp {
    t + SignedDuration::from_secs(secs)
}

async fn cycle(w: &mut Watcher, at: Timestamp) -> approval_watch::daemon::cycle::CycleReport {
    support::app::cycle_at(w, at).await
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_lists_every_page_filters_and_handles_a_vanished_pipeline_as_deleted() {
    let mut s = setup(
        &["a-web", "a-api", "sandbox-1"],
        "poll_interval = \"1s\"\nidle_poll_interval = \"1s\"\ndiscover_interval = \"10s\"",
        "",
        "[[discover]]\ninclude = [\"*\"]\nexclude = [\"sandbox-*\"]\n",
    )
    .await;
    s.aws.set_list_page_size(2);
    let start = t0();

    let report = cycle(&mut s.watcher, start).await;
    assert_eq!(report.pipelines, 2, "sandbox-1 is excluded");
    assert_eq!(s.aws.total_calls(LIST_PIPELINES), 2, "two pages of two");
    assert_eq!(s.aws.calls(GET_PIPELINE_STATE, "a-web"), 1);
    assert_eq!(s.aws.calls(GET_PIPELINE_STATE, "sandbox-1"), 0);

    // Not listed again before discover_interval; a waiting approval is alerted.
    s.aws.set_state("a-web", Fixture::Waiting);
    let report = cycle(&mut s.watcher, plus(start, 1)).await;
    assert_eq!(report.new_approvals, 1);
    assert_eq!(s.aws.total_calls(LIST_PIPELINES), 2);

    // The pipeline is deleted. One listing without it changes nothing…
    s.aws.remove_pipeline("a-web");
    s.aws.add_pipeline("a-new");
    let report = cycle(&mut s.watcher, plus(start, 11)).await;
    assert_eq!(report.resolved, 0);
    assert_eq!(report.pipelines, 3, "a-new found at once");
    assert_eq!(s.aws.calls(GET_PIPELINE_STATE, "a-new"), 1);
    // …the second one resolves its waiting approval as deleted.
    let report = cycle(&mut s.watcher, plus(start, 22)).await;
    assert_eq!(report.resolved, 1);
    assert_eq!(report.pipelines, 2);
    let delivered = s.slack.delivered();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    let text = delivered[1]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("Pipeline deleted: a-web"), "{text}");
    assert!(support::app::waiting_pipelines(&s.watcher).is_empty());
    support::app::close(s.watcher);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_listing_keeps_the_pipelines_found_before() {
    let mut s = setup(
        &["a-web"],
        "poll_interval = \"1s\"\nidle_poll_interval = \"1s\"\ndiscover_interval = \"10s\"",
        "",
        "[[discover]]\n",
    )
    .await;
    let start = t0();
    assert_eq!(cycle(&mut s.watcher, start).await.pipelines, 1);
    // Failed listings would be "missing" ones if failures counted: they must not.
    s.aws.set_list_error(Some(InjectedError::access_denied()));
    for i in 1..=3 {
        let report = cycle(&mut s.watcher, plus(start, 10 * i + 1)).await;
        assert_eq!(report.pipelines, 1, "cycle {i}");
        assert_eq!(report.resolved, 0);
    }
    support::app::close(s.watcher);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_budget_paces_calls_and_throttling_is_retried_and_slows_it() {
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let pipelines: String = refs
        .iter()
        .map(|p| format!("[[pipeline]]\nname = \"{p}\"\n"))
        .collect();
    let mut s = setup(
        &refs,
        "poll_interval = \"30s\"\nidle_poll_interval = \"30s\"",
        "max_requests_per_second = 10\nmax_concurrency = 4",
        &pipelines,
    )
    .await;
    // A run in progress on each (past its approval): the definitions are needed too.
    for p in &refs {
        s.aws.set_state(p, Fixture::Approved);
    }
    let started = std::time::Instant::now();
    let report = cycle(&mut s.watcher, t0()).await;
    assert_eq!(report.read_failures, 0);
    // 8 GetPipelineState + 8 GetPipeline at 10 per second, a burst of 4 first: the 11th call
    // cannot start within a second of the first.
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    let times: Vec<_> = s.aws.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 16);
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .filter(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(in_window <= 11, "{in_window} calls within one second");
    }

    // Two throttles on one pipeline: retried within the cycle, and the budget slows down.
    let throttle = InjectedError::throttling();
    s.aws
        .fail_next(GET_PIPELINE_STATE, "p3", 2, throttle.clone());
    let report = cycle(&mut s.watcher, plus(t0(), 30)).await;
    assert_eq!(report.read_failures, 0, "retried past two throttles");
    let budget = s
        .watcher
        .aws()
        .budget_for("default", "us-east-1")
        .expect("budget");
    assert_eq!(budget.stats().throttled, 2);
    assert!(
        budget.current_rate() < 10.0,
        "rate {}",
        budget.current_rate()
    );

    // Throttled past the retries: that pipeline fails this cycle, nothing is resolved.
    s.aws.set_state("p5", Fixture::Waiting);
    cycle(&mut s.watcher, plus(t0(), 60)).await;
    s.aws.fail_next(GET_PIPELINE_STATE, "p5", 3, throttle);
    let report = cycle(&mut s.watcher, plus(t0(), 90)).await;
    assert_eq!(report.read_failures, 1);
    assert_eq!(report.resolved, 0);
    assert_eq!(support::app::waiting_pipelines(&s.watcher).len(), 1);
    support::app::close(s.watcher);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_pipelines_are_read_less_often_than_active_ones() {
    let mut s = setup(
        &["busy", "quiet-1", "quiet-2"],
        "poll_interval = \"30s\"\nidle_poll_interval = \"2m\"",
        // Past its idle share (3 reads per 30 s > 0.01 requests/s): idle reads at the slowest.
        "idle_budget_share = 0.001",
        "[[pipeline]]\nname = \"busy\"\n[[pipeline]]\nname = \"quiet-1\"\n[[pipeline]]\nname = \"quiet-2\"\n",
    )
    .await;
    s.aws.set_state("busy", Fixture::Waiting);
    let start = t0();
    let mut reads = 0;
    for i in 0..=4 {
        reads += cycle(&mut s.watcher, plus(start, 30 * i)).await.reads;
    }
    // busy every cycle (5), the quiet ones at 0 s and 120 s.
    assert_eq!(s.aws.calls(GET_PIPELINE_STATE, "busy"), 5);
    assert_eq!(s.aws.calls(GET_PIPELINE_STATE, "quiet-1"), 2);
    assert_eq!(s.aws.calls(GET_PIPELINE_STATE, "quiet-2"), 2);
    assert_eq!(reads, 9);
    assert_eq!(s.watcher.reads_saved(), 6);

    // A run starting on a quiet pipeline is noticed at its next read, then read every cycle.
    s.aws.set_state("quiet-1", Fixture::Waiting);
    for i in 5..=10 {
        cycle(&mut s.watcher, plus(start, 30 * i)).await;
    }
    assert_eq!(
        s.aws.calls(GET_PIPELINE_STATE, "quiet-1"),
        2 + 3,
        "read at 240 s, then every cycle"
    );
    assert_eq!(s.slack.delivered().len(), 2);
    support::app::close(s.watcher);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_reads_discovered_pipelines_too() {
    let w = support::World::start(&["a-web", "sandbox-1"]).await;
    w.aws.set_state("a-web", Fixture::Waiting);
    w.aws.set_state("sandbox-1", Fixture::Waiting);
    let config = w
        .env
        .config_text()
        .replace("[[pipeline]]\nname = \"a-web\"\n", "")
        .replace("[[pipeline]]\nname = \"sandbox-1\"\n", "");
    w.env.write_raw_config(&format!(
        "{config}\n[[discover]]\nexclude = [\"sandbox-*\"]\n"
    ));
    let out = w.env.dry_run().await;
    out.assert_code(0);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert_eq!(lines[0]["pipeline"], "a-web");
    assert_eq!(lines[0]["kind"], "alert");
    assert_eq!(w.slack.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_idle_reads_do_not_hold_back_a_waiting_pipelines_message() {
    let mut s = setup(
        &["busy", "quiet-1", "quiet-2", "quiet-3"],
        "poll_interval = \"30s\"\nidle_poll_interval = \"2m\"",
        "idle_budget_share = 0.001",
        "[[pipeline]]\nname = \"busy\"\n[[pipeline]]\nname = \"quiet-1\"\n\
         [[pipeline]]\nname = \"quiet-2\"\n[[pipeline]]\nname = \"quiet-3\"\n",
    )
    .await;
    s.aws.set_state("busy", Fixture::Waiting);
    let start = t0();
    cycle(&mut s.watcher, start).await;
    assert_eq!(s.slack.delivered_count(), 1);

    // At 2 minutes the quiet pipelines are due again, and slow to answer; busy's approval
    // has been approved meanwhile.
    s.aws.set_state("busy", Fixture::Approved);
    let slow = Duration::from_secs(4);
    for p in ["quiet-1", "quiet-2", "quiet-3"] {
        s.aws.delay_next(GET_PIPELINE_STATE, p, 1, slow);
    }
    let report = {
        let running = cycle(&mut s.watcher, plus(start, 120));
        tokio::pin!(running);
        let cycle_ended_first = tokio::select! {
            _ = &mut running => true,
            _ = s.slack.wait_for_delivered(2, Duration::from_secs(3)) => false,
        };
        assert!(
            !cycle_ended_first,
            "the resolution should go out before the idle reads are answered"
        );
        running.await
    };
    assert_eq!(report.reads, 4);
    assert_eq!(report.resolved, 1);
    for p in ["quiet-1", "quiet-2", "quiet-3"] {
        assert_eq!(s.aws.calls(GET_PIPELINE_STATE, p), 2, "{p}");
    }
    support::app::close(s.watcher);
}
