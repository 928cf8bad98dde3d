//! Slack refusing the bot token or a channel (a reason a person must fix): the messages wait
//! queued instead of failing, the route pauses with one ERROR, `status`, `/healthz` and a metric
//! show it, and once the fix is in (a probe finds it, or a reload) everything queued goes out in
//! order, once; an approval resolved meanwhile is one message. A refusal about the message
//! itself still fails just that message. And an `ok` answer that does not say where the message
//! is: delivered, never posted again. Against the real binary (or the real loop on paused time)
//! and the fake Web API.

use std::time::Duration;

use approval_watch::clock::Clock;
use jiff::Timestamp;
use serde_json::Value;

use crate::app_mode::{AppWorld, CHANNEL, app_loop_config, checked, run_loop_for};
use crate::support;
use support::fake_slack_api::{ApiAnswer, FakeSlackApi, summarize};
use support::fixtures::StateBuilder;
use support::{Daemon, FakeCodePipeline, Fixture, SOON};

async fn status(w: &AppWorld) -> Value {
    let out = w.run(&["status", "--json"]).await;
    out.assert_code(0);
    serde_json::from_str(&out.stdout).expect("status JSON")
}

/// How many cycles the daemon finished so far (debug logging is on).
fn cycles(daemon: &Daemon) -> usize {
    daemon.stderr().matches("cycle done").count()
}

/// Waits until the daemon finished `n` more cycles: what did not happen by then is not
/// happening on its own.
async fn more_cycles(daemon: &mut Daemon, n: usize) {
    let target = cycles(daemon) + n;
    let deadline = std::time::Instant::now() + SOON;
    while cycles(daemon) < target {
        assert!(
            std::time::Instant::now() < deadline,
            "no {n} cycles: {}",
            daemon.stderr()
        );
        daemon.wait_for_stderr("cycle done", SOON).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `what` until it holds (the daemon writes after its pass).
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + SOON;
    while !cond().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_pauses_delivery_and_after_the_fix_and_a_reload_the_alert_goes_once() {
    let mut w = AppWorld::start(&["web-app"]).await;
    w.env.spec.extra_top = "[metrics]\nlisten = \"127.0.0.1:0\"\n".into();
    w.env.write_config();
    w.api.refuse_token(Some("invalid_auth"));
    w.aws.set_waiting("web-app", "tok-web");
    let mut daemon = w.env.spawn_run();
    let base = crate::metrics::metrics_base(&mut daemon).await;
    w.api
        .wait_until(SOON, |r| {
            r.iter().any(|r| r.answer["error"] == "invalid_auth")
        })
        .await;

    // status: the route is paused, naming the key to fix; the alert waits (not failed).
    until("status shows the pause", || async {
        status(&w).await["slack_paused"][0]["route"] == "default"
    })
    .await;
    let doc = status(&w).await;
    let paused = &doc["slack_paused"][0];
    assert_eq!(paused["error"], "invalid_auth", "{doc}");
    assert!(
        paused["fix"]
            .as_str()
            .unwrap()
            .contains("slack.bot_token_env"),
        "{doc}"
    );
    assert_eq!(doc["failed_messages"].as_array().map(Vec::len), Some(0));
    assert_eq!(doc["waiting"][0]["messages_pending"], 1, "{doc}");
    let text = checked(w.env.run(&["status"]).await);
    assert!(
        text.stdout
            .contains("Slack delivery PAUSED for route default"),
        "{}",
        text.stdout
    );
    // /healthz and the metric.
    let (code, health) = crate::metrics::get(&format!("{base}/healthz")).await;
    assert_eq!(code, 503, "{health}");
    assert!(health.contains("default (invalid_auth)"), "{health}");
    let paused_metric = async || {
        let (_, text) = crate::metrics::get(&format!("{base}/metrics")).await;
        crate::metrics::value(
            &crate::metrics::parse(&text),
            "approval_watch_slack_route_paused",
            &[("route", "default")],
        )
    };
    assert_eq!(paused_metric().await, Some(1.0));

    // Cycles go on; the alert is not tried again and again (the probe is slow).
    more_cycles(&mut daemon, 3).await;
    assert_eq!(
        w.api.calls("chat.postMessage").len(),
        1,
        "{:#?}",
        summarize(&w.api.requests())
    );

    // Someone reinstalls the app; the reload tries at once.
    w.api.refuse_token(None);
    daemon.signal("HUP").await;
    w.api.wait_for_messages(1, SOON).await;
    until("healthy again", || async {
        crate::metrics::get(&format!("{base}/healthz")).await.0 == 200
    })
    .await;
    assert_eq!(paused_metric().await, Some(0.0));
    until("status shows no pause", || async {
        status(&w).await.get("slack_paused").is_none()
    })
    .await;
    more_cycles(&mut daemon, 2).await;
    let out = checked(daemon.terminate().await);
    assert_eq!(w.api.top_level().len(), 1, "announced once");
    assert!(w.api.top_level()[0].text.contains("web-app"));
    let errors = out.stderr_lines_with(&["ERROR", "invalid_auth"]);
    assert_eq!(errors.len(), 1, "one ERROR per pause: {}", out.describe());
    assert!(errors[0].contains("slack.bot_token_env"), "{}", errors[0]);
    assert_eq!(
        out.stderr_lines_with(&["INFO", "delivery resumes"]).len(),
        1,
        "{}",
        out.describe()
    );
}

fn outage_config(aws: &FakeCodePipeline, api: &FakeSlackApi, dir: &std::path::Path) -> String {
    app_loop_config(
        aws,
        api,
        dir,
        "10s",
        "[[pipeline]]\nname = \"web-app\"\n[[pipeline]]\nname = \"api\"\n",
    )
}

#[tokio::test(start_paused = true)]
async fn through_a_token_outage_nothing_is_lost_and_a_resolution_behind_it_is_one_message() {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(&["web-app", "api"]).await;
    let api = FakeSlackApi::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, outage_config(&aws, &api, dir.path())).expect("config");
    api.refuse_token(Some("token_revoked"));
    aws.set_waiting("web-app", "tok-web");
    aws.set_waiting("api", "tok-api");
    let clock = Clock::tokio_at(Timestamp::now());
    let outage = async {
        // Both approvals start waiting while the token is refused; one is approved meanwhile.
        tokio::time::sleep(Duration::from_secs(60)).await;
        aws.set_state_json(
            "api",
            StateBuilder::fixture(Fixture::Approved)
                .named("api")
                .token("tok-api")
                .build(),
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        // The alerts wait, untried, while the token is refused: one refusal, then probes.
        let refused = api
            .requests()
            .iter()
            .filter(|r| r.method == "chat.postMessage")
            .count();
        assert_eq!(refused, 1, "{:#?}", summarize(&api.requests()));
        api.refuse_token(None);
    };
    tokio::join!(
        run_loop_for(&config_path, clock, Duration::from_secs(30 * 60)),
        outage
    );

    let top = api.top_level();
    assert_eq!(top.len(), 2, "{:#?}", summarize(&api.requests()));
    assert!(top[0].text.contains("web-app"), "{}", top[0].text);
    let told = crate::app_mode::header_text(&top[1].blocks);
    assert!(
        told.contains("Approved: api"),
        "one message tells it: {told}"
    );
    assert!(api.calls("chat.update").is_empty(), "nothing to edit");
    assert!(
        api.messages().iter().all(|m| m.thread_ts.is_none()),
        "no reply: the resolution is one message"
    );
    // Probing is slow and capped: a handful of auth.test calls in 30 minutes, not a spin.
    let probes = api.calls("auth.test").len();
    assert!((1..=12).contains(&probes), "{probes} auth.test calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_channel_pauses_its_route_while_a_refused_message_fails_alone() {
    let w = AppWorld::start(&["web-app", "api", "db"]).await;
    w.append_config(
        "[[route]]\nname = \"broken\"\npipelines = [\"api\"]\nchannel = \"C0BROKEN01\"\n\
         [[route]]\nname = \"payments\"\npipelines = [\"db\"]\nchannel = \"C0PAYMENTS1\"\n",
    );
    w.api.refuse_channel("C0BROKEN01", Some("invalid_blocks"));
    w.api.refuse_channel("C0PAYMENTS1", Some("not_in_channel"));
    for p in ["web-app", "api", "db"] {
        w.aws.set_waiting(p, &format!("tok-{p}"));
    }
    let out = w.once().await;
    // The default route goes on; the message Slack refused for itself fails; the one refused
    // for its channel waits, its route paused.
    assert_eq!(w.api.top_level().len(), 1, "{}", out.describe());
    let doc = status(&w).await;
    let failed = doc["failed_messages"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{doc}");
    assert_eq!(failed[0]["pipeline"], "api");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("invalid_blocks")
    );
    let paused = doc["slack_paused"].as_array().expect("a pause");
    assert_eq!(paused.len(), 1, "{doc}");
    assert_eq!(paused[0]["route"], "payments");
    assert_eq!(paused[0]["error"], "not_in_channel");
    assert!(
        paused[0]["fix"]
            .as_str()
            .unwrap()
            .contains("invite the app to C0PAYMENTS1")
    );
    let errors = out.stderr_lines_with(&["ERROR", "not_in_channel"]);
    assert_eq!(errors.len(), 1, "{}", out.describe());
    assert!(errors[0].contains("route[1].channel"), "{}", errors[0]);

    // The app is invited: the next run posts what waited, once; the refused message stays so.
    w.api.refuse_channel("C0PAYMENTS1", None);
    w.once().await;
    w.once().await;
    let posted: Vec<String> = w
        .api
        .top_level()
        .iter()
        .map(|m| m.channel.clone())
        .collect();
    assert_eq!(
        posted,
        [CHANNEL, "C0PAYMENTS1"],
        "{:#?}",
        summarize(&w.api.requests())
    );
    let doc = status(&w).await;
    assert!(doc.get("slack_paused").is_none(), "{doc}");
    let to_broken = w
        .api
        .calls("chat.postMessage")
        .iter()
        .filter(|r| r.body["channel"] == "C0BROKEN01")
        .count();
    assert_eq!(to_broken, 1, "a refused message is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ok_answer_without_a_ts_is_delivered_without_a_thread_never_posted_again() {
    let w = AppWorld::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.api
        .push("chat.postMessage", ApiAnswer::raw_200("{\"ok\": true}"));
    let out = w.once().await;
    let warned = out.stderr_lines_with(&["WARN", "did not say where"]);
    assert_eq!(warned.len(), 1, "{}", out.describe());
    let doc = status(&w).await;
    assert_eq!(doc["waiting"][0]["alerts_sent"], 1, "{doc}");
    assert_eq!(doc["waiting"][0]["messages_pending"], 0, "{doc}");
    assert!(doc["waiting"][0].get("slack").is_none(), "no thread: {doc}");
    w.once().await;
    assert_eq!(w.api.calls("chat.postMessage").len(), 1, "not posted again");

    // Resolved: nothing to edit, so the resolution is a message of its own.
    w.aws.set_state("web-app", Fixture::Approved);
    w.once().await.assert_code(0);
    assert!(w.api.calls("chat.update").is_empty());
    assert_eq!(w.api.calls("chat.postMessage").len(), 2);
}

/// A route moved off an archived channel: a reply meant for an alert in the old channel is
/// refused (`is_archived`) and fails alone; the route is not paused, so new alerts go to the
/// new channel.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_from_a_channel_the_route_left_fails_that_message_and_pauses_nothing() {
    const NEW_CHANNEL: &str = "C0NEWCHAN01";
    let w = AppWorld::start(&["web-app", "api"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.once().await.assert_code(0);
    assert_eq!(w.api.top_level().len(), 1);
    assert_eq!(w.api.top_level()[0].channel, CHANNEL);

    let text = w
        .env
        .config_text()
        .replace(&format!("\"{CHANNEL}\""), &format!("\"{NEW_CHANNEL}\""));
    assert!(text.contains(NEW_CHANNEL), "{text}");
    std::fs::write(&w.env.config_path, text).expect("config");
    w.api.refuse_channel(CHANNEL, Some("is_archived"));
    w.aws.set_state("web-app", Fixture::Approved);
    w.aws.set_state("api", Fixture::Waiting);
    let out = w.once().await;
    out.assert_code(1);
    assert!(
        out.stderr_lines_with(&["exit 1: Slack refused 1 message for good"])
            .len()
            == 1,
        "{}",
        out.describe()
    );
    assert!(
        out.stderr_lines_with(&["paused"]).is_empty(),
        "{}",
        out.describe()
    );
    let new_alerts: Vec<_> = w
        .api
        .top_level()
        .into_iter()
        .filter(|m| m.channel == NEW_CHANNEL)
        .collect();
    assert_eq!(new_alerts.len(), 1, "{:#?}", summarize(&w.api.requests()));
    let status = status(&w).await;
    assert!(status.get("slack_paused").is_none(), "{status}");
}
