//! `cargo run --example demo -- --app`: the same real cycle in Slack app mode against a fake
//! Web API, on a paused clock so that reminders come within a second. Prints the channel as it
//! reads: one message per approval, its thread, and the message edited once it is resolved.

use std::time::Duration;

use approval_watch::clock::Clock;
use approval_watch::config::Config;
use approval_watch_core::verdict::ClickResult;
use jiff::Timestamp;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::fake_slack_api::{BOT_TOKEN, FakeSlackApi};
use crate::support::fixtures::{FIXTURE_TOKEN, StateBuilder};
use crate::support::{FakeCodePipeline, Fixture};

const CHANNEL: &str = "C0DEPLOYS01";

/// The demo's config: app mode against the fakes, polling every `poll`, with `extra` TOML
/// (tables that belong after `[slack]`'s keys).
fn config(
    poll: &str,
    state: &std::path::Path,
    aws: &FakeCodePipeline,
    api: &FakeSlackApi,
    extra: &str,
) -> anyhow::Result<Config> {
    let text = format!(
        r#"
poll_interval = "{poll}"
state_path = "{}"
[aws]
region = "us-east-1"
endpoint_url = "{}"
[slack]
bot_token = "{BOT_TOKEN}"
channel = "{CHANNEL}"
api_url = "{}"
{extra}
[[pipeline]]
name = "web-app"
"#,
        state.display(),
        aws.endpoint(),
        api.url()
    );
    Ok(Config::parse(&text, "demo.toml".as_ref())?)
}

pub async fn demo() -> anyhow::Result<()> {
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let api = FakeSlackApi::start().await;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.db");
    let config = config(
        "30s",
        &state,
        &aws,
        &api,
        r#"[reminders]
after = "30m"
every = "1h"
escalate_after = 1
escalate_mention = "<!subteam^S0PLATFORM>"
"#,
    )?;
    let start = Timestamp::now();
    let clock = Clock::tokio_at(start);
    let mut watcher = approval_watch::daemon::startup::watcher(
        config,
        approval_watch::daemon::startup::Mode::Live,
        clock,
    )
    .await?;
    let shutdown = CancellationToken::new();
    println!("approval-watch demo, Slack app mode (a fake Web API on 127.0.0.1; time runs fast)\n");

    aws.set_waiting_since("web-app", FIXTURE_TOKEN, start.as_second() as f64);
    let steps: [(&str, Duration, &dyn Fn(), usize); 4] = [
        (
            "web-app reaches its manual approval",
            Duration::ZERO,
            &|| {},
            1,
        ),
        (
            "35 minutes later, nobody has looked",
            Duration::from_secs(35 * 60),
            &|| {},
            1,
        ),
        (
            "another hour: the reminder escalates",
            Duration::from_secs(3600),
            &|| {},
            1,
        ),
        (
            "alice approves",
            Duration::from_secs(10 * 60),
            &|| {
                let approved = StateBuilder::fixture(Fixture::Approved)
                    .named("web-app")
                    .token(FIXTURE_TOKEN)
                    .last_status_change(clock.now().as_second() as f64)
                    .build();
                aws.set_state_json("web-app", approved);
            },
            2,
        ),
    ];
    let mut seen = 0;
    for (i, (what, wait, change, expected)) in steps.iter().enumerate() {
        tokio::time::sleep(*wait).await;
        change();
        println!(
            "── step {}: {what} (+{} min)",
            i + 1,
            clock.now().duration_since(start).as_mins()
        );
        watcher.cycle(&shutdown).await?;
        let requests = api.requests();
        for r in &requests[seen..] {
            let place = match (r.method.as_str(), r.body["thread_ts"].as_str()) {
                ("chat.update", _) => format!("edits message {}", r.body["ts"]),
                (_, Some(ts)) if r.body["reply_broadcast"] == true => {
                    format!("replies in thread {ts}, also sent to the channel")
                }
                (_, Some(ts)) => format!("replies in thread {ts}"),
                _ => "a new message in the channel".to_owned(),
            };
            println!("   {} → {place}", r.method);
        }
        if requests.len() - seen != *expected {
            anyhow::bail!(
                "step {}: expected {expected} Web API call(s), got {}",
                i + 1,
                requests.len() - seen
            );
        }
        seen = requests.len();
    }

    println!("\n── the channel now reads:");
    let top = api.top_level();
    if top.len() != 1 {
        anyhow::bail!("expected one top-level message, found {}", top.len());
    }
    for message in &top {
        crate::print_message(&json!({ "blocks": message.blocks }));
        let thread = api.thread(&message.ts);
        println!("   thread ({} replies):", thread.len());
        for reply in &thread {
            let shown = if reply.reply_broadcast {
                " (also sent to the channel)"
            } else {
                ""
            };
            println!("   ↳ {}{shown}", crate::mrkdwn_to_terminal(&reply.text));
        }
        if thread.len() != 3 {
            anyhow::bail!("expected 3 replies in the thread, found {}", thread.len());
        }
        let header = message.blocks[0]["text"]["text"]
            .as_str()
            .unwrap_or_default();
        if !header.contains("Approved") {
            anyhow::bail!("the message was not edited to show the outcome: {header}");
        }
    }
    watcher.close()?;
    Ok(())
}

/// Approving from Slack: the daemon's real loop (on real time: the WebSocket is real) with
/// `[slack.approvals]`, a fake Socket Mode server, and one click on Approve by a listed user.
/// Prints the call CodePipeline got, the channel, and the audit.
pub async fn click() -> anyhow::Result<()> {
    use approval_watch::daemon::{self, Options};
    use approval_watch::store::Store;

    use crate::support::fake_codepipeline::PUT_APPROVAL_RESULT;
    use crate::support::fake_slack_api::APP_TOKEN;
    use crate::support::fake_socket_mode::FakeSocketMode;

    const LEAD: &str = "U0PAYLEAD1";
    let wait = Duration::from_secs(20);
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let api = FakeSlackApi::start().await;
    let socket = FakeSocketMode::start().await;
    api.set_socket_url(socket.link_url());
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.db");
    let approvals = format!(
        r#"[slack.approvals]
app_token = "{APP_TOKEN}"
allow_users = ["{LEAD}"]
"#
    );
    let config = config("1s", &state, &aws, &api, &approvals)?;
    let daemon = approval_watch::daemon::startup::daemon(config, Clock::System).await?;
    println!(
        "\n\napproval-watch demo, approving from Slack (a fake Socket Mode server on 127.0.0.1)\n"
    );
    aws.set_state("web-app", Fixture::Waiting);
    let shutdown = CancellationToken::new();
    let options = Options {
        notifier: Default::default(),
        reloads: Box::pin(futures_util::stream::pending()),
        config_path: dir.path().join("demo.toml"),
        clock: Clock::System,
    };
    // The loop holds the database on this task; the steps run beside it.
    let steps = async {
        socket.wait_for_connection(0, wait).await;
        println!(
            "── the daemon opened its Socket Mode connection (outbound; no port is listening)"
        );
        api.wait_until(wait, |r| {
            r.iter().any(|r| r.method == "chat.postMessage" && r.ok())
        })
        .await;
        let alert = api.calls("chat.postMessage")[0].body.clone();
        let approval_id = alert["blocks"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["type"] == "actions"))
            .and_then(|b| b["elements"][0]["value"].as_str())
            .ok_or_else(|| anyhow::anyhow!("the alert has no Approve button"))?
            .to_owned();
        println!("── the alert, with its buttons:");
        crate::print_message(&json!({ "blocks": alert["blocks"] }));
        // A person clicks after the alert's place is recorded (the daemon writes it right
        // after Slack's answer); so does the demo.
        let recorded = || {
            Store::open_read_only(&state)
                .ok()
                .flatten()
                .and_then(|s| s.open_approvals().ok())
                .is_some_and(|open| open.iter().any(|a| a.slack.is_some()))
        };
        let deadline = tokio::time::Instant::now() + wait;
        while !recorded() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        println!("── {LEAD} clicks Approve (and confirms)");
        let envelope = socket.push_interactive(
            0,
            json!({
                "type": "block_actions",
                "user": { "id": LEAD, "username": "ana", "name": "ana" },
                "channel": { "id": CHANNEL },
                "trigger_id": "demo.trigger",
                "actions": [ { "action_id": "approval_watch.approve", "value": approval_id,
                               "action_ts": "1700000000.000001" } ],
            }),
        );
        let ack = socket.wait_for_ack(&envelope, wait).await;
        let pushed = socket.pushed_at(&envelope).unwrap_or(ack.at);
        println!(
            "   acknowledged in {} ms",
            ack.at.duration_since(pushed).as_millis()
        );
        if !aws
            .wait_for_calls(PUT_APPROVAL_RESULT, "web-app", 1, wait)
            .await
        {
            anyhow::bail!("CodePipeline never got PutApprovalResult");
        }
        let put = aws
            .requests()
            .into_iter()
            .find(|r| r.operation == PUT_APPROVAL_RESULT)
            .map(|r| r.body)
            .unwrap_or_default();
        println!(
            "   PutApprovalResult {} / {} / {}: {} — \"{}\"",
            put["pipelineName"].as_str().unwrap_or("?"),
            put["stageName"].as_str().unwrap_or("?"),
            put["actionName"].as_str().unwrap_or("?"),
            put["result"]["status"].as_str().unwrap_or("?"),
            put["result"]["summary"].as_str().unwrap_or("?"),
        );
        // The poll sees the approval resolved and edits the alert (the second edit).
        api.wait_until(wait, |r| {
            r.iter().filter(|r| r.method == "chat.update").count() >= 2
        })
        .await;
        println!("── the channel now reads:");
        for message in api.top_level() {
            crate::print_message(&json!({ "blocks": message.blocks }));
            let header = message.blocks[0]["text"]["text"]
                .as_str()
                .unwrap_or_default();
            if !header.contains("Approved") {
                anyhow::bail!("the message was not edited to show the outcome: {header}");
            }
        }
        anyhow::Ok(())
    };
    let (ran, stepped) = tokio::join!(daemon::run(daemon, options, shutdown.clone()), async {
        let stepped = steps.await;
        shutdown.cancel();
        stepped
    });
    stepped?;
    ran?;

    println!("── approval-watch audit:");
    let store =
        Store::open_read_only(&state)?.ok_or_else(|| anyhow::anyhow!("no state database"))?;
    let entries = store.audit(Timestamp::UNIX_EPOCH)?;
    for e in &entries {
        println!(
            "   {}  {} ({})  {} / {} / {}  {}  → {}  request {}",
            e.time.strftime("%Y-%m-%d %H:%M:%S"),
            e.user_id,
            e.user_name,
            e.pipeline.as_deref().unwrap_or("?"),
            e.stage.as_deref().unwrap_or("?"),
            e.action.as_deref().unwrap_or("?"),
            e.decision.as_str(),
            e.result,
            e.request_id.as_deref().unwrap_or("-"),
        );
    }
    if !entries.iter().any(|e| e.result == ClickResult::Approved) {
        anyhow::bail!("the audit has no approved click: {entries:?}");
    }
    Ok(())
}
