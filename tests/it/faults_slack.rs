//! Slack faults, through the real binary: a long outage of every kind (5xx, connection
//! refused, a request hanging past the client timeout, 429 without `Retry-After`) after which
//! every approval still waiting is announced exactly once, in order, paced; 429s short and
//! long; permanent refusals shown by `status` and the log; Slack error bodies that echo the
//! webhook URL never reaching a log line or `status`.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fake_slack::{SlackRequest, summarize};
use support::fixtures::token_from_seed;
use support::flaky_port::FlakyPort;
use support::payload::{is_alert, mentions_ci, review_tokens};
use support::runner::eventually;
use support::{
    Fixture, GET_PIPELINE_STATE, SOON, SlackResponse, WEBHOOK_PATH, WEBHOOK_SECRET, WebhookSource,
    World, state_db,
};

/// Points the config's webhook at `port` (same secret path), in front of the fake Slack.
fn webhook_through(w: &mut World, port: &FlakyPort) {
    w.env.spec.webhook = WebhookSource::Env {
        var: "SLACK_WEBHOOK_URL".into(),
        url: Some(format!("http://127.0.0.1:{}{WEBHOOK_PATH}", port.port())),
    };
    w.env.write_config();
}

/// Starts `pipeline` waiting on a new token and waits until the daemon has recorded it, so
/// the outbox order is the order of these calls.
async fn start_waiting(w: &World, pipeline: &str, seed: &str) -> String {
    let token = token_from_seed(seed);
    w.aws.set_waiting(pipeline, &token);
    let recorded = eventually(SOON, || {
        state_db::approvals(&w.env.state_path)
            .iter()
            .any(|a| a.token == token)
    })
    .await;
    assert!(recorded, "{pipeline} ({token}) was not recorded");
    token
}

/// Checks Slack's pace: with a burst of 3 and one a second, any k requests in a row span at
/// least k - 3 seconds (less a little for clock granularity).
fn assert_paced(requests: &[SlackRequest]) {
    for i in 0..requests.len() {
        for j in i + 3..requests.len() {
            let span = requests[j].at - requests[i].at;
            let floor = Duration::from_secs((j - i - 2) as u64);
            assert!(
                span + Duration::from_millis(150) >= floor,
                "requests {i}..={j} within {span:?}: faster than one a second after a burst of 3\n{:#?}",
                summarize(requests)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_outage_of_every_kind_then_each_waiting_approval_is_announced_once_in_order() {
    let names = ["svc-a", "svc-b", "svc-c", "svc-d", "svc-e", "svc-f"];
    let mut w = World::start(&names).await;
    let mut port = FlakyPort::start(SocketAddr::from(([127, 0, 0, 1], w.slack.port()))).await;
    webhook_through(&mut w, &port);
    // What Slack says to the attempts that reach it while it is "down".
    w.slack
        .push_response(SlackResponse::status(500, "internal_error"));
    // (The hang's status is never seen: the client gives up first.)
    w.slack.push_response(
        SlackResponse::status(504, "gateway_timeout").with_delay(Duration::from_secs(60)),
    );
    w.slack
        .push_response(SlackResponse::status(429, "rate_limited"));

    let mut daemon = w.env.spawn_run();
    let a = start_waiting(&w, "svc-a", "outage-a").await;
    let b_old = start_waiting(&w, "svc-b", "outage-b1").await;
    let c = start_waiting(&w, "svc-c", "outage-c").await;

    // 1. A 500 for the first alert; then Slack's port refuses connections.
    w.slack.wait_for_requests(1, SOON).await;
    port.down().await;
    let d = start_waiting(&w, "svc-d", "outage-d").await;
    // c is approved while nobody has heard of it: its alert goes, and so does "approved".
    w.aws.set_state("svc-c", Fixture::Approved);
    assert!(
        eventually(SOON, || state_db::approvals(&w.env.state_path)
            .iter()
            .any(|r| r.token == c && r.outcome.is_some()))
        .await
    );
    assert!(
        daemon
            .wait_for_stderr("connection failed", Duration::from_secs(15))
            .await,
        "no refused connection logged:\n{}",
        daemon.stderr()
    );
    port.up().await;
    // 2. Then a request that hangs past the client's 10 s timeout, then a 429 without
    // Retry-After (queued above); meanwhile b is superseded by a new run and e, f arrive,
    // f being rejected before Slack is back.
    let e = start_waiting(&w, "svc-e", "outage-e").await;
    let b_new = start_waiting(&w, "svc-b", "outage-b2").await;
    let f = start_waiting(&w, "svc-f", "outage-f").await;
    w.aws.set_state("svc-f", Fixture::Rejected);
    let polls_before = w.aws.calls(GET_PIPELINE_STATE, "svc-a");

    // Slack is back after the 429: the four still waiting are announced, in the order they
    // were found, each once.
    let expected = [&a, &d, &e, &b_new];
    w.slack
        .wait_until(Duration::from_secs(75), |r| {
            r.iter().filter(|r| r.delivered()).count() >= expected.len()
        })
        .await
        .unwrap_or_else(|r| {
            panic!(
                "not all announced after the outage: {:#?}\n{}",
                summarize(&r),
                daemon.stderr()
            )
        });
    let polls_during = w.aws.calls(GET_PIPELINE_STATE, "svc-a") - polls_before;
    // A few more cycles: nothing else goes out.
    let seen = w.aws.calls(GET_PIPELINE_STATE, "svc-a");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "svc-a", seen + 3, SOON)
            .await
    );
    let requests = w.slack.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [500, 504, 429, 200, 200, 200, 200],
        "one attempt per retry, none while the port refused: {:#?}",
        summarize(&requests)
    );
    let announced: Vec<Vec<String>> = requests
        .iter()
        .filter(|r| r.delivered())
        .map(|r| review_tokens(r.json()))
        .collect();
    let want: Vec<Vec<String>> = expected.iter().map(|t| vec![(*t).clone()]).collect();
    assert_eq!(announced, want, "announced out of order or not once each");
    for r in requests.iter().filter(|r| r.delivered()) {
        assert!(
            is_alert(r.json()),
            "not an alert: {:#?}",
            summarize(std::slice::from_ref(r))
        );
    }
    for gone in [&b_old, &c, &f] {
        assert!(
            !requests.iter().any(|r| r.body.contains(gone.as_str())),
            "{gone} resolved before Slack was back, yet was announced"
        );
    }
    assert!(
        !requests.iter().any(|r| r
            .payload
            .as_ref()
            .is_some_and(|p| mentions_ci(p, "approved")
                || mentions_ci(p, "rejected")
                || mentions_ci(p, "supersed"))),
        "a resolution of something never announced went out: {:#?}",
        summarize(&requests)
    );
    // Paced once it is back (the 429 emptied the bucket; 5 s later it holds 3 again).
    let after_outage: Vec<SlackRequest> = requests[2..].to_vec();
    assert_paced(&after_outage);
    assert!(
        polls_during >= 20,
        "only {polls_during} cycles during the outage"
    );
    let hang = &requests[1];
    let after_hang = requests[2].at - hang.at;
    assert!(
        after_hang >= Duration::from_secs(10),
        "retried {after_hang:?} after a hang"
    );
    let wait_429 = requests[3].at - requests[2].at;
    assert!(
        wait_429 >= Duration::from_millis(4900),
        "a 429 without Retry-After waited only {wait_429:?}"
    );

    let out = daemon.terminate().await;
    out.assert_code(0);
    let log = out.stderr_plain();
    for needle in ["HTTP 500", "connection failed", "timed out", "HTTP 429"] {
        assert!(log.contains(needle), "the log does not mention {needle:?}");
    }
    assert!(!log.contains("panicked"), "{}", out.describe());
    let status = w.env.run(&["status", "--json"]).await;
    status.assert_code(0);
    let json: Value = serde_json::from_str(&status.stdout).expect("status --json");
    let waiting = json["waiting"].as_array().expect("waiting");
    assert_eq!(waiting.len(), 4, "{json:#}");
    for entry in waiting {
        assert_eq!(entry["alerts_sent"], 1, "{entry:#}");
        assert_eq!(entry["messages_pending"], 0, "{entry:#}");
    }
    w.env.run(&["status"]).await.assert_code(0);
    assert_eq!(
        state_db::integrity_check(&w.env.state_path),
        "ok",
        "after a long outage"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_short_long_and_repeated_are_waited_out_and_delivered_once() {
    let mut w = World::start(&["web-app", "api"]).await;
    w.env.spec.poll_interval = "2s".into();
    w.env.write_config();
    // web-app: 429 without Retry-After (waited inline, 5 s), then Retry-After: 12 (too long to
    // wait inline: scheduled, and the daemon keeps polling meanwhile).
    w.slack
        .push_response(SlackResponse::status(429, "rate_limited"));
    w.slack.push_response(SlackResponse::rate_limited(12));
    w.aws.set_state("web-app", Fixture::Waiting);
    let daemon = w.env.spawn_run();
    w.slack.wait_for_requests(2, SOON).await;
    let polls = w.aws.calls(GET_PIPELINE_STATE, "web-app");
    w.slack.wait_for_delivered(1, Duration::from_secs(20)).await;
    let r = w.slack.requests();
    assert_eq!(r.len(), 3, "{:#?}", summarize(&r));
    let first_wait = r[1].at - r[0].at;
    assert!(
        first_wait >= Duration::from_millis(4900) && first_wait < Duration::from_secs(8),
        "429 without Retry-After: retried after {first_wait:?}"
    );
    let second_wait = r[2].at - r[1].at;
    assert!(
        second_wait >= Duration::from_millis(11_900),
        "Retry-After: 12 honoured only {second_wait:?}"
    );
    assert!(
        w.aws.calls(GET_PIPELINE_STATE, "web-app") >= polls + 3,
        "polling stopped while a long Retry-After was pending"
    );

    // api: four 429s with Retry-After: 1 in a row. Three are waited out in the pass, the
    // fourth is scheduled; one message reaches Slack in the end.
    w.slack.push_responses(4, SlackResponse::rate_limited(1));
    w.aws.set_state("api", Fixture::Waiting);
    w.slack.wait_for_delivered(2, Duration::from_secs(20)).await;
    let seen = w.aws.calls(GET_PIPELINE_STATE, "api");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "api", seen + 2, SOON)
            .await
    );
    let r = w.slack.requests();
    let statuses: Vec<u16> = r.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [429, 429, 200, 429, 429, 429, 429, 200],
        "{:#?}",
        summarize(&r)
    );
    for pair in r[3..].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "Retry-After: 1 waited {gap:?}"
        );
    }
    let delivered = w.slack.delivered();
    let tokens: Vec<Vec<String>> = delivered.iter().map(review_tokens).collect();
    assert_eq!(
        tokens,
        [vec![w.aws.token("web-app")], vec![w.aws.token("api")]]
    );
    let out = daemon.terminate().await;
    out.assert_code(0);
    assert!(
        !out.stderr_lines_with(&["rate limit", "web-app"]).is_empty(),
        "{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_refusals_are_tried_once_and_shown_by_status_and_the_log() {
    let w = World::start(&["alpha", "beta", "gamma"]).await;
    w.slack
        .push_response(SlackResponse::status(403, "action_prohibited"));
    w.slack
        .push_response(SlackResponse::status(404, "channel_not_found"));
    let mut daemon = w.env.spawn_run();
    let alpha = start_waiting(&w, "alpha", "perm-alpha").await;
    let beta = start_waiting(&w, "beta", "perm-beta").await;
    let gamma = start_waiting(&w, "gamma", "perm-gamma").await;
    // A refusal holds nothing back: gamma, queued behind both, is delivered.
    w.slack.wait_for_delivered(1, SOON).await;
    // Well past the first retry delay (5 s): never tried again.
    let seen = w.aws.calls(GET_PIPELINE_STATE, "alpha");
    assert!(
        w.aws
            .wait_for_calls(
                GET_PIPELINE_STATE,
                "alpha",
                seen + 7,
                Duration::from_secs(15)
            )
            .await
    );
    let r = w.slack.requests();
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        [403, 404, 200],
        "{:#?}",
        summarize(&r)
    );
    assert_eq!(review_tokens(r[0].json()), std::slice::from_ref(&alpha));
    assert_eq!(review_tokens(r[1].json()), std::slice::from_ref(&beta));
    assert_eq!(review_tokens(r[2].json()), [gamma]);

    // Status tells people and scripts, while the daemon runs.
    let human = w.env.run(&["status"]).await;
    human.assert_code(0);
    let text = human.stdout_plain();
    for needle in [
        "refused",
        "403",
        "action_prohibited",
        "404",
        "channel_not_found",
    ] {
        assert!(text.contains(needle), "status lacks {needle:?}:\n{text}");
    }
    let json = w.env.run(&["status", "--json"]).await;
    json.assert_code(0);
    let doc: Value = serde_json::from_str(&json.stdout).expect("status --json");
    let failed = doc["failed_messages"].as_array().expect("failed_messages");
    assert_eq!(failed.len(), 2, "{doc:#}");
    for f in failed {
        assert_eq!(f["attempts"], 1, "{f:#}");
        assert_eq!(f["kind"], "alert", "{f:#}");
    }
    let errors: Vec<&str> = failed.iter().filter_map(|f| f["error"].as_str()).collect();
    assert!(
        errors.iter().any(|e| e.contains("action_prohibited")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("channel_not_found")),
        "{errors:?}"
    );
    let refused_waiting = doc["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["messages_failed"] == 1 && e["alerts_sent"] == 0)
        .count();
    assert_eq!(refused_waiting, 2, "{doc:#}");

    // alpha is approved: nobody heard of it, so nothing is said.
    w.aws.set_state("alpha", Fixture::Approved);
    assert!(daemon.wait_for_stderr("approval resolved", SOON).await);
    let seen = w.aws.calls(GET_PIPELINE_STATE, "alpha");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "alpha", seen + 2, SOON)
            .await
    );
    assert_eq!(w.slack.request_count(), 3);

    let out = daemon.terminate().await;
    out.assert_code(0);
    for (status, body) in [("403", "action_prohibited"), ("404", "channel_not_found")] {
        let lines = out.stderr_lines_with(&[status, body]);
        assert!(
            lines.iter().any(|l| l.contains("not be retried")),
            "no log line says Slack refused with {status} {body}:\n{}",
            out.describe()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_error_bodies_that_echo_the_webhook_url_never_reach_a_log_or_status() {
    // A proxy or load balancer in front of Slack may answer with a page that repeats the
    // request: the webhook's secret path must not travel from there into logs or `status`.
    let w = World::start(&["web-app", "api"]).await;
    let echo = format!("Cannot POST {WEBHOOK_PATH} (https://hooks.slack.com{WEBHOOK_PATH})");
    assert!(echo.contains(WEBHOOK_SECRET));
    w.slack.push_response(SlackResponse::status(502, &echo));
    w.slack.push_response(SlackResponse::status(404, &echo));
    w.aws.set_state("web-app", Fixture::Waiting);
    let first = w.env.once().await; // 502: temporary, logged and kept for a retry.
    first.assert_code(1);
    assert!(
        first.stderr_plain().contains("Cannot POST"),
        "the rest of the body is still logged:\n{}",
        first.describe()
    );
    // Let the retry come due, then the 404 refuses it for good.
    let started = Instant::now();
    while w.slack.request_count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "no retry");
        tokio::time::sleep(Duration::from_millis(500)).await;
        w.env.once().await;
    }
    for args in [&["status"][..], &["status", "--json"]] {
        let out = w.env.run(args).await;
        out.assert_code(0);
        assert!(
            out.stdout.contains("Cannot POST"),
            "status does not show Slack's answer:\n{}",
            out.describe()
        );
    }
    // (Every output above went through the runner's secret check.)
    let rows = state_db::outbox(&w.env.state_path);
    for row in &rows {
        assert!(
            !row.last_error
                .as_deref()
                .unwrap_or("")
                .contains(WEBHOOK_SECRET),
            "the secret was stored in the outbox: {:?}",
            row.last_error
                .as_deref()
                .map(|e| e.replace(WEBHOOK_SECRET, "<secret>"))
        );
    }
}
