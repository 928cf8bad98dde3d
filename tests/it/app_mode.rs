//! Slack app mode: one top-level message per approval, reminders in its thread, the alert
//! edited to show the outcome; each Web API error class; `test-slack`, `check-config`,
//! `once --dry-run` and `status --json` in app mode. Against the real binary (or the real
//! loop on paused time) with the real SDK, SQLite and HTTP to the fakes.

use crate::readme_schemas::printed_keys;
use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use approval_watch::clock::Clock;
use approval_watch::config::Config;
use approval_watch::daemon::startup;
use approval_watch::daemon::{self, Options};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use support::fake_slack_api::{ApiAnswer, BOT_TOKEN, FakeSlackApi, summarize};
use support::fixtures::FIXTURE_TOKEN;
use support::{FakeCodePipeline, Fixture, Output, TestEnv, WebhookSource};
use tokio_util::sync::CancellationToken;

pub(crate) const CHANNEL: &str = "C0DEFAULT01";

/// Panics if the bot token appears in `text`.
fn assert_no_token(what: &str, text: &str) {
    assert!(
        !text.contains(BOT_TOKEN) && !text.contains("XSECRETXbotXtoken"),
        "the bot token appears in {what}"
    );
}

pub(crate) fn checked(out: Output) -> Output {
    assert_no_token(&format!("output of {:?}", out.args), &out.all_output());
    out
}

/// The fakes and a config in app mode (`[slack]` with a bot token from the environment),
/// polling every second, debug logging on.
pub(crate) struct AppWorld {
    pub(crate) aws: FakeCodePipeline,
    pub(crate) api: FakeSlackApi,
    pub(crate) env: TestEnv,
}

impl AppWorld {
    pub(crate) async fn start(pipelines: &[&str]) -> Self {
        let aws = FakeCodePipeline::with_pipelines(pipelines).await;
        let api = FakeSlackApi::start().await;
        let mut env = TestEnv::new(&aws.endpoint(), "http://127.0.0.1:9/unused", pipelines);
        env.spec.webhook = WebhookSource::Nothing;
        env.spec.extra_slack = api.slack_table_lines(CHANNEL);
        env.set_env("SLACK_BOT_TOKEN", BOT_TOKEN);
        env.write_config();
        AppWorld { aws, api, env }
    }

    /// Appends raw TOML (a `[[route]]`) to the written config.
    pub(crate) fn append_config(&self, toml: &str) {
        let mut text = self.env.config_text();
        text.push_str(toml);
        std::fs::write(&self.env.config_path, text).expect("config");
    }

    pub(crate) async fn once(&self) -> Output {
        checked(self.env.once().await)
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Output {
        checked(self.env.run(args).await)
    }
}

pub(crate) fn header_text(blocks: &Value) -> String {
    blocks
        .as_array()
        .and_then(|b| b.first())
        .and_then(|b| b["text"]["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_is_one_message_and_its_resolution_edits_it_and_replies_in_its_thread() {
    let w = AppWorld::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.once().await.assert_code(0);

    let posts = w.api.calls("chat.postMessage");
    assert_eq!(posts.len(), 1, "{:#?}", summarize(&w.api.requests()));
    let alert = &posts[0];
    assert_eq!(
        alert.headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );
    assert!(
        alert.headers["content-type"].starts_with("application/json"),
        "{:?}",
        alert.headers
    );
    assert_eq!(alert.body["channel"], CHANNEL);
    assert_eq!(alert.body["unfurl_links"], false);
    assert!(alert.body["blocks"].is_array() && alert.body["text"].is_string());
    assert!(alert.body.get("thread_ts").is_none());
    let ts = alert.answer["ts"].as_str().expect("ts").to_owned();

    // status --json shows where the alert is, once posted.
    let status = w.run(&["status", "--json"]).await;
    status.assert_code(0);
    let doc: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(doc["waiting"][0]["slack"]["channel"], CHANNEL, "{doc}");
    assert_eq!(doc["waiting"][0]["slack"]["ts"], ts.as_str(), "{doc}");

    w.aws.set_state("web-app", Fixture::Approved);
    w.once().await.assert_code(0);
    let updates = w.api.calls("chat.update");
    assert_eq!(updates.len(), 1, "{:#?}", summarize(&w.api.requests()));
    assert_eq!(updates[0].body["channel"], CHANNEL);
    assert_eq!(updates[0].body["ts"], ts.as_str());
    let top = w.api.top_level();
    assert_eq!(top.len(), 1, "one top-level message: {top:#?}");
    assert_eq!(top[0].edits, 1);
    let header = header_text(&top[0].blocks);
    assert!(header.contains("Approved: web-app"), "{header}");
    assert!(
        top[0].text.contains("Approved by alice@example.com after"),
        "{}",
        top[0].text
    );
    let shown = top[0].blocks.to_string();
    assert!(
        shown.contains("Staging smoke tests green"),
        "comment shown: {shown}"
    );
    assert!(shown.contains("*Waited:*"), "{shown}");
    let thread = w.api.thread(&ts);
    assert_eq!(thread.len(), 1, "{thread:#?}");
    assert!(thread[0].text.contains("Approved by alice@example.com"));
    assert!(!thread[0].reply_broadcast);

    // Nothing more on later cycles: nothing posts twice.
    w.once().await.assert_code(0);
    assert_eq!(
        w.api.requests().len(),
        3,
        "{:#?}",
        summarize(&w.api.requests())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_outcome_is_shown_in_the_edited_alert() {
    for outcome in ["Rejected", "Expired", "Superseded"] {
        let w = AppWorld::start(&["web-app"]).await;
        match outcome {
            "Expired" => w.aws.set_state_raw("web-app", Fixture::Waiting),
            _ => w.aws.set_state("web-app", Fixture::Waiting),
        }
        w.once().await.assert_code(0);
        match outcome {
            "Rejected" => w.aws.set_state("web-app", Fixture::Rejected),
            "Expired" => w.aws.set_state_raw("web-app", Fixture::Expired),
            _ => w
                .aws
                .set_waiting("web-app", "b0b0b0b0-1111-4222-8333-444455556666"),
        }
        w.once().await.assert_code(0);
        w.once().await.assert_code(0);
        let alert = w.api.top_level()[0].clone();
        assert_eq!(alert.edits, 1, "{:#?}", summarize(&w.api.requests()));
        let header = header_text(&alert.blocks);
        assert!(header.contains(&format!("{outcome}: web-app")), "{header}");
        assert!(alert.blocks.to_string().contains("*Waited:*"));
        assert_eq!(w.api.thread(&alert.ts).len(), 1, "{outcome}");
        // A superseded approval's successor is an approval of its own: its own message.
        let expected = if outcome == "Superseded" { 2 } else { 1 };
        assert_eq!(w.api.top_level().len(), expected, "{outcome}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_resolved_false_edits_the_alert_without_a_reply() {
    let mut w = AppWorld::start(&["web-app"]).await;
    w.env.spec.extra_slack.push_str("notify_resolved = false\n");
    w.env.write_config();
    w.aws.set_state("web-app", Fixture::Waiting);
    w.once().await.assert_code(0);
    w.aws.set_state("web-app", Fixture::Approved);
    w.once().await.assert_code(0);
    let top = w.api.top_level();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].edits, 1, "{:#?}", summarize(&w.api.requests()));
    assert!(header_text(&top[0].blocks).contains("Approved"));
    assert!(
        w.api.thread(&top[0].ts).is_empty(),
        "no reply in the thread"
    );
    assert_eq!(w.api.calls("chat.postMessage").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_alert_gets_its_resolution_as_a_new_message() {
    let w = AppWorld::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.once().await.assert_code(0);
    let ts = w.api.top_level()[0].ts.clone();
    w.api.delete(&ts);
    w.aws.set_state("web-app", Fixture::Approved);
    w.once().await.assert_code(0);
    let update = w.api.calls("chat.update");
    assert_eq!(update.len(), 1);
    assert_eq!(update[0].answer["error"], "message_not_found");
    let top = w.api.top_level();
    assert_eq!(top.len(), 1, "{top:#?}");
    assert_ne!(top[0].ts, ts);
    assert!(
        top[0].text.contains("Approved by alice@example.com"),
        "{}",
        top[0].text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_too_old_to_edit_gets_its_resolution_in_the_thread() {
    for error in ["edit_window_closed", "cant_update_message"] {
        let mut w = AppWorld::start(&["web-app"]).await;
        w.env.spec.extra_slack.push_str("notify_resolved = false\n");
        w.env.write_config();
        w.aws.set_state("web-app", Fixture::Waiting);
        w.once().await.assert_code(0);
        let ts = w.api.top_level()[0].ts.clone();
        w.api.push("chat.update", ApiAnswer::error(error));
        w.aws.set_state("web-app", Fixture::Approved);
        w.once().await.assert_code(0);
        // Even with notify_resolved = false: the edit was the message, so it is posted.
        let thread = w.api.thread(&ts);
        assert_eq!(
            thread.len(),
            1,
            "{error}: {:#?}",
            summarize(&w.api.requests())
        );
        assert!(thread[0].text.contains("Approved by"));
        assert_eq!(w.api.top_level().len(), 1);
        assert_eq!(w.api.top_level()[0].edits, 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_tokens_and_channels_pause_the_route_once_and_say_what_to_fix() {
    let cases = [
        ("invalid_auth", "slack.bot_token_env"),
        ("token_revoked", "slack.bot_token_env"),
        ("account_inactive", "slack.bot_token_env"),
        ("not_authed", "slack.bot_token_env"),
        ("missing_scope", "chat:write"),
        ("channel_not_found", "invite the app to C0DEFAULT01"),
        ("not_in_channel", "invite the app to C0DEFAULT01"),
        ("is_archived", "C0DEFAULT01 is archived"),
    ];
    for (error, advice) in cases {
        let w = AppWorld::start(&["web-app"]).await;
        w.aws.set_state("web-app", Fixture::Waiting);
        w.api.refuse_channel(CHANNEL, Some(error));
        let out = w.once().await;
        let lines = out.stderr_lines_with(&["ERROR", error, advice]);
        assert_eq!(lines.len(), 1, "{error}: {}", out.describe());
        let status = w.run(&["status", "--json"]).await;
        let doc: Value = serde_json::from_str(&status.stdout).unwrap();
        let paused = &doc["slack_paused"][0];
        assert_eq!(paused["error"], error, "{doc}");
        assert!(paused["fix"].as_str().unwrap().contains(advice), "{doc}");
        // Not failed: the alert waits for the fix, and goes out once it is in.
        assert_eq!(doc["failed_messages"].as_array().map(Vec::len), Some(0));
        assert_eq!(doc["waiting"][0]["messages_pending"], 1, "{doc}");
        w.api.refuse_channel(CHANNEL, None);
        w.once().await.assert_code(0);
        w.once().await.assert_code(0);
        assert_eq!(w.api.top_level().len(), 1, "{error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_errors_and_rate_limits_are_retried_and_post_once() {
    for answer in [
        ApiAnswer::Http {
            status: 500,
            retry_after: None,
        },
        ApiAnswer::error("internal_error"),
        ApiAnswer::Http {
            status: 429,
            retry_after: Some(1),
        },
        ApiAnswer::error("ratelimited"),
    ] {
        let w = AppWorld::start(&["web-app"]).await;
        w.aws.set_state("web-app", Fixture::Waiting);
        w.api.push("chat.postMessage", answer.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while w.api.top_level().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{answer:?}: never posted"
            );
            w.once().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        w.once().await.assert_code(0);
        assert_eq!(w.api.top_level().len(), 1, "{answer:?}");
        assert_eq!(w.api.calls("chat.postMessage").len(), 2, "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_to_one_channel_are_paced_one_per_second() {
    let w = AppWorld::start(&["a-app", "b-app", "c-app"]).await;
    for p in ["a-app", "b-app", "c-app"] {
        w.aws.set_waiting(p, &format!("tok-{p}"));
    }
    w.once().await.assert_code(0);
    let posts = w.api.calls("chat.postMessage");
    assert_eq!(posts.len(), 3);
    for pair in posts.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(900), "posted {gap:?} apart");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_slack_checks_the_token_once_and_posts_to_each_channel() {
    let w = AppWorld::start(&["payments-api"]).await;
    w.append_config(
        "\n[[route]]\nname = \"payments\"\npipelines = [\"payments-*\"]\nchannel = \"C0PAYMENTS1\"\n",
    );
    // check-config reads and checks the token but calls nothing.
    let check = w.run(&["check-config"]).await;
    check.assert_code(0);
    assert!(
        check.stdout.contains("channel: C0PAYMENTS1 (bot token)"),
        "{}",
        check.describe()
    );
    assert!(w.api.requests().is_empty(), "check-config called Slack");

    // Routes first, `[slack]` last.
    w.api
        .push("chat.postMessage", ApiAnswer::error("not_in_channel"));
    let out = w.run(&["test-slack"]).await;
    out.assert_code(1);
    assert_eq!(
        out.stdout_plain().lines().collect::<Vec<_>>(),
        [
            "payments (route[0]): FAILED: not_in_channel — invite the app to C0PAYMENTS1 (/invite @<app> in the channel)",
            "default (slack): ok",
        ],
        "{}",
        out.describe()
    );
    assert_eq!(w.api.calls("auth.test").len(), 1);
    let posts = w.api.calls("chat.postMessage");
    assert_eq!(posts[0].body["channel"], "C0PAYMENTS1");
    assert_eq!(posts[1].body["channel"], CHANNEL);
    assert!(
        posts[1].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[TEST]")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_never_shows_a_password_in_the_api_url() {
    let w = AppWorld::start(&["web-app"]).await;
    let text: String = w
        .env
        .config_text()
        .lines()
        .map(|line| match line.strip_prefix("api_url = \"http://") {
            Some(rest) => format!("api_url = \"http://ops:hunter2@{rest}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    assert!(text.contains("hunter2"), "{text}");
    std::fs::write(&w.env.config_path, text).expect("config");
    let check = w.run(&["check-config"]).await;
    check.assert_code(0);
    assert!(
        !check.stdout.contains("hunter2") && !check.stderr.contains("hunter2"),
        "{}",
        check.describe()
    );
    assert!(
        check.stdout.contains("Web API http://redacted@127.0.0.1"),
        "{}",
        check.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_slack_with_a_refused_token_fails_every_channel_without_posting() {
    let w = AppWorld::start(&["web-app"]).await;
    w.api.push("auth.test", ApiAnswer::error("invalid_auth"));
    let out = w.run(&["test-slack"]).await;
    out.assert_code(1);
    assert!(
        out.stdout
            .starts_with("default (slack): FAILED: invalid_auth — the bot token was refused"),
        "{}",
        out.describe()
    );
    assert!(w.api.calls("chat.postMessage").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dry_run_shows_methods_and_target_ts_and_calls_nothing() {
    let w = AppWorld::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    let dry = w.run(&["once", "--dry-run"]).await;
    dry.assert_code(0);
    let line: Value = serde_json::from_str(dry.stdout.lines().next().expect("a line")).unwrap();
    assert_eq!(line["method"], "chat.postMessage");
    assert!(line.get("ts").is_none(), "{line}");
    assert_eq!(line["payload"]["channel"], CHANNEL);
    assert!(w.api.requests().is_empty(), "the dry run called Slack");

    w.once().await.assert_code(0);
    let ts = w.api.top_level()[0].ts.clone();
    w.aws.set_state("web-app", Fixture::Approved);
    let before = w.api.requests().len();
    let dry = w.run(&["once", "--dry-run"]).await;
    dry.assert_code(0);
    let lines: Vec<Value> = dry
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", dry.stdout);
    assert_eq!(lines[0]["method"], "chat.update");
    assert_eq!(lines[0]["ts"], ts.as_str());
    assert_eq!(lines[0]["payload"]["ts"], ts.as_str());
    assert_eq!(lines[1]["method"], "chat.postMessage");
    assert_eq!(lines[1]["payload"]["thread_ts"], ts.as_str());
    assert_eq!(w.api.requests().len(), before);
}

/// An app-mode config for the loop on paused time: the bot token in a file in `dir`, the
/// state there too, `poll_interval`, then `rest` (reminders, pipelines…).
pub(crate) fn app_loop_config(
    aws: &FakeCodePipeline,
    api: &FakeSlackApi,
    dir: &std::path::Path,
    poll_interval: &str,
    rest: &str,
) -> String {
    let token = dir.join("bot-token");
    std::fs::write(&token, BOT_TOKEN).expect("token file");
    format!(
        "poll_interval = \"{poll_interval}\"\nstate_path = \"{}\"\n[aws]\nregion = \"us-east-1\"\n\
         endpoint_url = \"{}\"\n[slack]\nbot_token_file = \"{}\"\nchannel = \"{CHANNEL}\"\n\
         api_url = \"{}\"\n{rest}",
        dir.join("state.db").display(),
        aws.endpoint(),
        token.display(),
        api.url(),
    )
}

fn loop_config(aws: &FakeCodePipeline, api: &FakeSlackApi, dir: &std::path::Path) -> String {
    app_loop_config(
        aws,
        api,
        dir,
        "30s",
        "[reminders]\nafter = \"30m\"\nevery = \"1h\"\nmax = 2\nexpire_warning = \"1h\"\n\
         escalate_after = 1\nescalate_mention = \"<!subteam^S0PLATFORM>\"\n\
         [[pipeline]]\nname = \"web-app\"\n",
    )
}

/// Runs the real loop on paused time until `until` of daemon time has passed.
pub(crate) async fn run_loop_for(config_path: &std::path::Path, clock: Clock, until: Duration) {
    let config = Config::load(config_path).expect("valid config");
    let daemon = startup::daemon(config, clock).await.expect("daemon");
    let shutdown = CancellationToken::new();
    let options = Options {
        notifier: Default::default(),
        reloads: Box::pin(futures_util::stream::pending()),
        config_path: config_path.to_owned(),
        clock,
    };
    let stop = async {
        tokio::time::sleep(until).await;
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(daemon::run(daemon, options, shutdown.clone()), stop);
    result.expect("the loop ends and closes the database");
}

#[tokio::test(start_paused = true)]
async fn reminders_reply_in_the_thread_across_a_restart_and_loud_ones_show_in_the_channel() {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let api = FakeSlackApi::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, loop_config(&aws, &api, dir.path())).expect("config");
    let start = Timestamp::now();
    // Expires 3 h from now (the action's timeout is 7 days).
    let since = start - SignedDuration::from_mins(7 * 24 * 60 - 180);
    aws.set_waiting_since("web-app", FIXTURE_TOKEN, since.as_second() as f64);
    let clock = Clock::tokio_at(start);

    // The alert, then a stop: the next process finds the thread in the database.
    run_loop_for(&config_path, clock, Duration::from_secs(5 * 60)).await;
    let top = api.top_level();
    assert_eq!(top.len(), 1, "{:#?}", summarize(&api.requests()));
    let ts = top[0].ts.clone();

    // Reminders at 30 min and 1 h 30 (escalated), the expiry warning at 2 h.
    run_loop_for(&config_path, clock, Duration::from_secs(2 * 3600 + 10 * 60)).await;
    let thread = api.thread(&ts);
    let shape: Vec<(bool, bool, bool)> = thread
        .iter()
        .map(|m| {
            (
                m.reply_broadcast,
                m.text.contains("S0PLATFORM"),
                m.text.starts_with("Expires in") || m.text.contains("Expires in"),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (false, false, false),
            (true, true, false),
            (true, true, true)
        ],
        "{:#?}",
        summarize(&api.requests())
    );
    assert_eq!(api.top_level().len(), 1, "one top-level message");
    for r in api.requests() {
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {BOT_TOKEN}").as_str())
        );
    }
}

/// The `"key"`s quoted between `start` and `end` in the README.
fn readme_keys(start: &str, end: &str) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let at = readme
        .find(start)
        .unwrap_or_else(|| panic!("README has no {start:?}"))
        + start.len();
    let len = readme[at..]
        .find(end)
        .unwrap_or_else(|| panic!("README has no {end:?}"));
    readme[at..at + len]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn app_mode_prints_exactly_the_documented_json_keys() {
    let w = AppWorld::start(&["web-app", "other", "api", "db"]).await;
    w.aws.set_waiting("web-app", "tok-web");
    w.aws.set_waiting("other", "tok-other");
    let mut dry_keys = BTreeSet::new();
    let mut dry_run = async || {
        let dry = w.run(&["once", "--dry-run"]).await;
        for line in dry.stdout.lines() {
            printed_keys(&serde_json::from_str(line).unwrap(), &mut dry_keys);
        }
    };
    // A new alert (a method, no ts yet), then an update and a reply (a ts).
    dry_run().await;
    w.once().await.assert_code(0);
    w.aws.set_state_json(
        "other",
        support::fixtures::StateBuilder::fixture(Fixture::Approved)
            .named("other")
            .token("tok-other")
            .build(),
    );
    dry_run().await;
    let mut documented = readme_keys("as JSON lines on stdout (", "`: `source`");
    documented.extend(readme_keys(
        "in [app mode](#slack-app-mode) also",
        "when known",
    ));
    assert_eq!(
        dry_keys, documented,
        "README's once --dry-run schema in app mode"
    );

    // Something refused for good, a paused route with its queue, and approvals whose alerts
    // are posted.
    w.append_config(
        "[[route]]\nname = \"broken\"\npipelines = [\"api\"]\nchannel = \"C0BROKEN01\"\n\
         [[route]]\nname = \"payments\"\npipelines = [\"db\"]\nchannel = \"C0PAYMENTS1\"\n",
    );
    w.api.refuse_channel("C0BROKEN01", Some("invalid_blocks"));
    w.api.refuse_channel("C0PAYMENTS1", Some("not_in_channel"));
    w.aws.set_waiting("api", "tok-api");
    w.aws.set_waiting("db", "tok-db");
    w.once().await.assert_code(1);
    let status = w.run(&["status", "--json"]).await;
    let mut keys = BTreeSet::new();
    printed_keys(&serde_json::from_str(&status.stdout).unwrap(), &mut keys);
    let mut documented = readme_keys("`status --json` prints one object:", "with RFC 3339");
    documented.extend(readme_keys(
        "In app mode each waiting approval also has",
        "while delivery to a route waits",
    ));
    assert_eq!(
        keys, documented,
        "README's status --json schema in app mode"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_logged_once_and_counted_by_error() {
    let mut w = AppWorld::start(&["a-app", "b-app"]).await;
    w.env.spec.extra_top = "[metrics]\nlisten = \"127.0.0.1:0\"\n".into();
    w.env.write_config();
    w.api.refuse_token(Some("token_revoked"));
    w.aws.set_waiting("a-app", "tok-a");
    w.aws.set_waiting("b-app", "tok-b");
    let mut daemon = w.env.spawn_run();
    assert!(
        daemon
            .wait_for_stderr("metrics on http://", support::SOON)
            .await,
        "{}",
        daemon.stderr()
    );
    let stderr = support::runner::strip_ansi(&daemon.stderr());
    let at = stderr.find("metrics on http://").unwrap() + "metrics on ".len();
    let url = stderr[at..].split_whitespace().next().unwrap().to_owned();
    w.api
        .wait_until(support::SOON, |r| {
            r.iter()
                .filter(|r| r.answer["error"] == "token_revoked")
                .count()
                == 1
        })
        .await;
    // The first refusal pauses delivery: the second alert is not tried against the same token.
    let wanted = "approval_watch_slack_delivery_failures_total{kind=\"permanent\",error=\"token_revoked\"} 1";
    let deadline = std::time::Instant::now() + support::SOON;
    loop {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if text.contains(wanted) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{wanted} not in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = checked(daemon.terminate().await);
    let errors = out.stderr_lines_with(&["ERROR", "token_revoked"]);
    assert_eq!(errors.len(), 1, "{}", out.describe());
    assert!(errors[0].contains("reinstall the app") && errors[0].contains("slack.bot_token_env"));
    assert_eq!(w.api.top_level().len(), 0);
}

#[test]
fn the_demo_shows_one_message_its_thread_and_the_edit() {
    // `cargo test` builds the examples next to the test binaries: target/<profile>/examples/.
    let exe = std::env::current_exe().expect("test binary path");
    let demo = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("examples")
        .join("demo");
    assert!(
        demo.is_file(),
        "{} is missing: run the whole `cargo test`",
        demo.display()
    );
    let out = std::process::Command::new(&demo)
        .arg("--app")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // First the thread on a fast clock, then a click on Approve over Socket Mode.
    let (thread, click) = stdout
        .split_once("approving from Slack")
        .unwrap_or((&stdout, ""));
    assert_eq!(thread.matches("┌─ Slack message").count(), 1, "{stdout}");
    assert!(thread.contains("✅ Approved: web-app"), "{stdout}");
    assert!(thread.contains("thread (3 replies)"), "{stdout}");
    assert!(thread.contains("also sent to the channel"), "{stdout}");
    assert!(thread.contains("chat.update → edits message"), "{stdout}");
    assert!(click.contains("[ Approve ] [ Reject ]"), "{stdout}");
    assert!(
        click.contains(
            "PutApprovalResult web-app / Approve_Deployment_to_Production / Approve: Approved"
        ),
        "{stdout}"
    );
    assert!(
        click.contains("Approved by ana (U0PAYLEAD1) in Slack"),
        "{stdout}"
    );
    assert!(click.contains("→ approved"), "{stdout}");
}

#[tokio::test(start_paused = true)]
async fn a_reminder_waits_for_its_alert_and_then_replies_in_its_thread() {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let api = FakeSlackApi::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, loop_config(&aws, &api, dir.path())).expect("config");
    let start = Timestamp::now();
    aws.set_waiting_since("web-app", FIXTURE_TOKEN, start.as_second() as f64);
    // Slack fails for about 35 minutes (the retry schedule: 5 s, 10 s, … 5 min): the first
    // reminder falls due at 30 minutes while the alert still waits for its retry.
    for _ in 0..12 {
        api.push(
            "chat.postMessage",
            ApiAnswer::Http {
                status: 503,
                retry_after: None,
            },
        );
    }
    run_loop_for(
        &config_path,
        Clock::tokio_at(start),
        Duration::from_secs(50 * 60),
    )
    .await;
    let posted: Vec<_> = api
        .calls("chat.postMessage")
        .into_iter()
        .filter(|r| r.ok())
        .collect();
    assert!(posted.len() >= 2, "{:#?}", summarize(&api.requests()));
    assert!(
        posted[0].body.get("thread_ts").is_none(),
        "the alert goes first"
    );
    let ts = posted[0].answer["ts"].as_str().unwrap();
    assert_eq!(
        posted[1].body["thread_ts"],
        ts,
        "{:#?}",
        summarize(&api.requests())
    );
    assert_eq!(api.top_level().len(), 1);
    // The token is nowhere in the state database either.
    let db = std::fs::read(dir.path().join("state.db")).expect("state db");
    assert!(
        !String::from_utf8_lossy(&db).contains("XSECRETXbotXtoken"),
        "token in the database"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_answers_are_bounded_and_never_taken_as_posted() {
    let w = AppWorld::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    // A megabyte of answer that does not begin with `"ok": true`, then a non-JSON one:
    // temporary, retried.
    w.api.push(
        "chat.postMessage",
        ApiAnswer::raw_200(format!(
            "{{\"pad\": \"{}\", \"ok\": true}}",
            "x".repeat(1 << 20)
        )),
    );
    let out = w.once().await;
    out.assert_code(1);
    assert!(
        out.stderr_plain().contains("larger than 256 KiB"),
        "{}",
        out.describe()
    );
    // Slack's answer never said it was done: nothing is recorded as posted, it is retried.
    tokio::time::sleep(Duration::from_secs(6)).await;
    w.api.push(
        "chat.postMessage",
        ApiAnswer::raw_200("<html>proxy error</html>"),
    );
    let out = w.once().await;
    assert!(
        out.stderr_plain().contains("not JSON"),
        "{}",
        out.describe()
    );
    // A megabyte that begins `{"ok": true` (Slack echoing a big message): it was posted, and
    // is not posted again.
    tokio::time::sleep(Duration::from_secs(11)).await;
    w.api.push(
        "chat.postMessage",
        ApiAnswer::raw_200(format!(
            "{{\"ok\": true, \"pad\": \"{}\"}}",
            "x".repeat(1 << 20)
        )),
    );
    w.once().await.assert_code(0);
    w.once().await.assert_code(0);
    assert_eq!(w.api.calls("chat.postMessage").len(), 3);

    // A long error word full of control characters and mentions: permanent, clipped.
    let w = AppWorld::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    let hostile = format!("<!channel>\u{1b}[31m\n{}", "y".repeat(5000));
    w.api.push(
        "chat.postMessage",
        ApiAnswer::raw_200(serde_json::json!({"ok": false, "error": hostile}).to_string()),
    );
    let out = w.once().await;
    out.assert_code(1);
    assert!(!out.stderr.contains("\u{1b}[31m"), "{}", out.describe());
    let status = w.run(&["status", "--json"]).await;
    let doc: Value = serde_json::from_str(&status.stdout).unwrap();
    let error = doc["failed_messages"][0]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.chars().count() < 200, "{error}");
    assert!(
        !error.contains('\n') && !error.contains('\u{1b}'),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_token_is_a_config_error_naming_the_key_not_the_value() {
    let mut w = AppWorld::start(&["web-app"]).await;
    w.env
        .set_env("SLACK_BOT_TOKEN", "xoxp-user-token-XSECRETXbotXtoken");
    for command in [&["check-config"][..], &["once"], &["test-slack"]] {
        let out = w.run(command).await;
        out.assert_code(2);
        assert!(
            out.stderr_plain()
                .contains("slack.bot_token_env ($SLACK_BOT_TOKEN): is not a bot token"),
            "{}",
            out.describe()
        );
    }
    assert!(w.api.requests().is_empty());
    w.env.remove_env("SLACK_BOT_TOKEN");
    let out = w.run(&["check-config"]).await;
    out.assert_code(2);
    assert!(
        out.stderr_plain()
            .contains("slack.bot_token_env: environment variable SLACK_BOT_TOKEN is not set"),
        "{}",
        out.describe()
    );
}

#[tokio::test(start_paused = true)]
async fn in_app_mode_the_digest_is_a_top_level_message() {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let api = FakeSlackApi::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Tuesday 1 December 2026: waiting since 08:00; the loop runs 09:00 to 10:00.
    let start: jiff::Timestamp = "2026-12-01T09:00:00Z".parse().expect("time");
    aws.set_waiting_since("web-app", "tok-1", (start.as_second() - 3600) as f64);
    let config_path = dir.path().join("config.toml");
    let text = loop_config(&aws, &api, dir.path())
        .replace("max = 2", "max = 0")
        .replace(
            "[[pipeline]]",
            "[digest]\nat = \"09:30\"\ntimezone = \"UTC\"\n[[pipeline]]",
        );
    std::fs::write(&config_path, text).expect("config");
    run_loop_for(
        &config_path,
        Clock::tokio_at(start),
        Duration::from_secs(3600),
    )
    .await;

    let messages = api.messages();
    let alert = messages
        .iter()
        .find(|m| m.text.contains("Approval waiting"))
        .expect("the alert");
    let digest = messages
        .iter()
        .find(|m| m.text.contains("Daily digest") || m.blocks.to_string().contains("Daily digest"))
        .unwrap_or_else(|| panic!("no digest in {messages:#?}"));
    assert_eq!(digest.thread_ts, None, "the digest is in no thread");
    assert_ne!(digest.ts, alert.ts);
    assert_eq!(digest.channel, CHANNEL);
}

/// A digest Slack refuses as too long (`msg_too_long`) goes again at once, shorter, in app
/// mode too: half its lines, the rest counted, marked as shortened.
#[tokio::test(start_paused = true)]
async fn in_app_mode_a_digest_refused_as_too_long_goes_again_shorter() {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(&["web-app", "api"]).await;
    let api = FakeSlackApi::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let start: jiff::Timestamp = "2026-12-01T09:29:00Z".parse().expect("time");
    aws.set_waiting_since("web-app", "tok-1", (start.as_second() - 3600) as f64);
    aws.set_waiting_since("api", "tok-2", (start.as_second() - 1800) as f64);
    api.refuse_once_containing("Daily digest", "msg_too_long");
    let config_path = dir.path().join("config.toml");
    let text = loop_config(&aws, &api, dir.path())
        .replace("max = 2", "max = 0")
        .replace(
            "[[pipeline]]",
            "[digest]\nat = \"09:30\"\ntimezone = \"UTC\"\n[[pipeline]]\nname = \"api\"\n[[pipeline]]",
        );
    std::fs::write(&config_path, text).expect("config");
    run_loop_for(
        &config_path,
        Clock::tokio_at(start),
        Duration::from_secs(300),
    )
    .await;

    let refused: Vec<_> = api
        .calls("chat.postMessage")
        .into_iter()
        .filter(|r| !r.ok())
        .collect();
    assert_eq!(refused.len(), 1, "{:#?}", summarize(&api.requests()));
    assert!(refused[0].body.to_string().contains("2 approvals waiting"));
    let digests: Vec<_> = api
        .messages()
        .into_iter()
        .filter(|m| m.blocks.to_string().contains("Daily digest"))
        .collect();
    assert_eq!(digests.len(), 1, "{digests:#?}");
    let shown = digests[0].blocks.to_string();
    assert!(shown.contains("shortened"), "{shown}");
    assert_eq!(shown.matches("|Review>").count(), 1, "{shown}");
    assert!(shown.contains("and 1 more"), "{shown}");
    assert_eq!(digests[0].thread_ts, None);
}
