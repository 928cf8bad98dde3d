//! Routes send each pipeline's messages to its team's webhook; reminders held outside
//! working hours go out once when they open. Real SDK, real SQLite, real HTTP to fakes.

use crate::support;

use approval_watch::config::Config;
use jiff::Timestamp;
use serde_json::Value;
use support::payload::all_text;
use support::{FakeCodePipeline, FakeSlack, Fixture, SOON, World};

const PAYMENTS_MENTION: &str = "<!subteam^S0PAYMENTS>";

fn text_of(v: &Value) -> String {
    v["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_send_to_their_own_webhook_with_their_mention() {
    let mut world = World::start(&["web-app", "payments-api", "ledger"]).await;
    let payments_slack = FakeSlack::start().await;
    world
        .env
        .set_env("SLACK_PAYMENTS_WEBHOOK", &payments_slack.url());
    let config = format!(
        "{}\n[[route]]\nname = \"payments\"\npipelines = [\"payments-*\", \"ledger\"]\n\
         webhook_url_env = \"SLACK_PAYMENTS_WEBHOOK\"\nmention = \"{PAYMENTS_MENTION}\"\n\
         notify_resolved = false\n",
        world.env.config_text()
    );
    world.env.write_raw_config(&config);

    let check = world.env.run(&["check-config"]).await;
    check.assert_code(0);
    let summary = check.stdout_plain();
    let route_of = |pipeline: &str| {
        summary
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{pipeline} ")))
            .and_then(|l| l.rsplit("→ route ").next())
            .map(str::to_owned)
    };
    assert_eq!(
        route_of("payments-api").as_deref(),
        Some("payments"),
        "{summary}"
    );
    assert_eq!(route_of("ledger").as_deref(), Some("payments"), "{summary}");
    assert_eq!(route_of("web-app").as_deref(), Some("default"), "{summary}");

    for p in ["web-app", "payments-api", "ledger"] {
        world.aws.set_state(p, Fixture::Waiting);
    }
    world.env.once().await.assert_code(0);

    let default = world.slack.delivered();
    assert_eq!(default.len(), 1, "{default:?}");
    assert!(text_of(&default[0]).contains("web-app"));
    assert!(!all_text(&default[0]).contains(PAYMENTS_MENTION));

    let payments = payments_slack.delivered();
    assert_eq!(payments.len(), 2, "{payments:?}");
    let mut pipelines: Vec<String> = payments.iter().map(text_of).collect();
    pipelines.sort();
    assert!(
        pipelines[0].contains("ledger") && pipelines[1].contains("payments-api"),
        "{pipelines:?}"
    );
    for p in &payments {
        assert!(text_of(p).starts_with(PAYMENTS_MENTION), "{}", text_of(p));
    }

    // Resolutions: told on the default route, dropped on the route that turned them off.
    world.aws.set_state("web-app", Fixture::Approved);
    world.aws.set_state("payments-api", Fixture::Approved);
    world.env.once().await.assert_code(0);
    let default = world.slack.delivered();
    assert_eq!(default.len(), 2);
    assert!(text_of(&default[1]).contains("Approved by alice@example.com"));
    assert_eq!(
        payments_slack.delivered().len(),
        2,
        "notify_resolved = false still told"
    );
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

async fn cycle(watcher: &mut approval_watch::daemon::cycle::Watcher, now: &str) -> usize {
    let report = support::app::cycle_at(watcher, at(now)).await;
    assert_eq!(report.read_failures, 0);
    assert_eq!(report.undelivered, 0);
    report.reminders
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reminder_held_outside_working_hours_goes_out_once_when_they_open() {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Friday 28 November 2025, 17:00 London (GMT = UTC).
    let waiting_since = at("2025-11-28T17:00:00Z").as_second() as f64;
    aws.set_waiting_since("web-app", "tok-friday", waiting_since);
    let config = Config::parse(
        &format!(
            r#"
poll_interval = "30s"
state_path = "{}"
[aws]
region = "us-east-1"
endpoint_url = "{}"
[slack]
webhook_url = "{}"
[reminders]
after = "30m"
every = "1h"
max = 8
[reminders.working_hours]
timezone = "Europe/London"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "18:00"
[[pipeline]]
name = "web-app"
"#,
            dir.path().join("state.db").display(),
            aws.endpoint(),
            slack.url()
        ),
        "routing-test.toml".as_ref(),
    )
    .expect("config");
    let mut watcher = support::app::open_watcher(&config).await;

    assert_eq!(cycle(&mut watcher, "2025-11-28T17:00:00Z").await, 0);
    assert_eq!(slack.delivered_count(), 1, "the alert");
    assert_eq!(
        cycle(&mut watcher, "2025-11-28T17:30:00Z").await,
        1,
        "first reminder, in hours"
    );
    // 18:30 the next is due, but the office is closed; all weekend too.
    for now in [
        "2025-11-28T18:30:00Z",
        "2025-11-28T23:00:00Z",
        "2025-11-29T12:00:00Z",
        "2025-11-30T20:00:00Z",
        "2025-12-01T08:59:00Z",
    ] {
        assert_eq!(cycle(&mut watcher, now).await, 0, "held at {now}");
    }
    assert_eq!(slack.delivered_count(), 2);
    // Monday 09:00: one reminder, not the dozens missed over the weekend.
    assert_eq!(cycle(&mut watcher, "2025-12-01T09:00:00Z").await, 1);
    assert_eq!(cycle(&mut watcher, "2025-12-01T09:01:00Z").await, 0);
    assert_eq!(cycle(&mut watcher, "2025-12-01T09:30:00Z").await, 0);
    assert!(
        support::runner::eventually(SOON, || slack.delivered_count() == 3).await,
        "{:?}",
        slack.delivered()
    );
    let reminders: Vec<String> = slack.delivered()[1..].iter().map(text_of).collect();
    assert!(
        reminders
            .iter()
            .all(|t| t.starts_with("Still waiting for approval")),
        "{reminders:?}"
    );
    assert!(
        reminders[1].contains("2 d 16 h"),
        "waited since Friday: {}",
        reminders[1]
    );
    let status = support::app::status(&config, &watcher, at("2025-12-01T09:30:00Z"));
    assert_eq!(status.waiting[0].reminders_sent, 2);
    assert_eq!(
        status.waiting[0].next_reminder,
        Some(at("2025-12-01T10:00:00Z"))
    );
    // Asked on Friday evening, the next one is Monday's opening.
    let friday = support::app::status(&config, &watcher, at("2025-12-05T18:30:00Z"));
    assert_eq!(
        friday.waiting[0].next_reminder, None,
        "expires Friday 17:00, nothing after"
    );
    let text = support::app::status_text(&status, at("2025-12-01T09:30:00Z"));
    assert!(
        text.contains("next reminder 2025-12-01 10:00 UTC"),
        "{text}"
    );
    support::app::close(watcher);
}
