//! `cargo run --example demo -- --app`: the same real cycle in Slack app mode against a fake
//! Web API, on a paused clock so that reminders come within a second. Prints the channel as it
//! reads: one message per approval, its thread, and the message edited once it is resolved.

use std::time::Duration;

use approval_watch::clock::Clock;
use approval_watch::config::Config;
use jiff::Timestamp;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::fake_slack_api::{BOT_TOKEN, FakeSlackApi};
use crate::support::fixtures::{FIXTURE_TOKEN, StateBuilder};
use crate::support::{FakeCodePipeline, Fixture};

const CHANNEL: &str = "C0DEPLOYS01";

pub async fn demo() -> anyhow::Result<()> {
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let api = FakeSlackApi::start().await;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.db");
    let config_text = format!(
        r#"
poll_interval = "30s"
state_path = "{}"
[aws]
region = "us-east-1"
endpoint_url = "{}"
[slack]
bot_token = "{BOT_TOKEN}"
channel = "{CHANNEL}"
api_url = "{}"
[reminders]
after = "30m"
every = "1h"
escalate_after = 1
escalate_mention = "<!subteam^S0PLATFORM>"
[[pipeline]]
name = "web-app"
"#,
        state.display(),
        aws.endpoint(),
        api.url()
    );
    let config = Config::parse(&config_text, "demo.toml".as_ref())?;
    let start = Timestamp::now();
    let clock = Clock::tokio_at(start);
    let mut watcher =
        approval_watch::startup::watcher(config, approval_watch::startup::Mode::Live, clock)
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
