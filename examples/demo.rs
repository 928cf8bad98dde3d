//! A local demo without AWS or Slack: a fake CodePipeline and a fake Slack webhook on
//! 127.0.0.1, the real approval-watch cycle (AWS SDK over HTTP, SQLite, reqwest) in between,
//! and every Slack message printed in the terminal as a reader would see it.
//!
//!     cargo run --example demo
//!     cargo run --example demo -- --app    # Slack app mode: one message, its thread, the edit,
//!                                          # and an approval clicked in Slack

#[path = "demo/app.rs"]
mod app;
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::process::ExitCode;

use approval_watch::config::Config;
use serde_json::Value;
use support::parallel_runs::Run;
use support::{FakeCodePipeline, FakeSlack, Fixture, SlackResponse};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // Static credentials for the fake endpoint, set before any thread exists.
    // SAFETY: single-threaded at this point; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDDEMO");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "demo-secret");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        if std::env::var_os("RUST_LOG").is_none() {
            std::env::set_var("RUST_LOG", "warn");
        }
    }
    approval_watch::logging::init();
    if std::env::args().any(|a| a == "--app") {
        // A paused clock: the reminders of an hour and more come at once.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build();
        // Then a click on Approve, on real time (the WebSocket is real).
        let clicked = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(app::click()))
        };
        return match runtime
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(app::demo()))
            .and_then(|()| clicked())
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> anyhow::Result<()> {
    let aws = FakeCodePipeline::with_pipelines(&["web-app", "payments-api", "checkout"]).await;
    // checkout runs in PARALLEL mode: its state shows no run; each run is read on its own.
    aws.set_mode("checkout", "PARALLEL");
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.db");
    let config_text = format!(
        r#"
# The demo polls step by step, a second or so apart: read every pipeline each time.
poll_interval = "1s"
idle_poll_interval = "1s"
state_path = "{}"
[aws]
region = "us-east-1"
endpoint_url = "{}"
[slack]
webhook_url = "{}"
[[pipeline]]
name = "web-app"
[[pipeline]]
name = "payments-api"
[[pipeline]]
name = "checkout"
"#,
        state.display(),
        aws.endpoint(),
        slack.url()
    );
    let config = Config::parse(&config_text, "demo.toml".as_ref())?;
    let mut watcher = approval_watch::daemon::startup::watcher(
        config.clone(),
        approval_watch::daemon::startup::Mode::Live,
        approval_watch::clock::Clock::System,
    )
    .await?;
    let shutdown = CancellationToken::new();
    let mut shown = 0;

    println!(
        "approval-watch demo: fake CodePipeline at {}, fake Slack on 127.0.0.1",
        aws.endpoint()
    );
    println!("state database: {}\n", state.display());

    // Each step: what happens, and how many Slack messages it must produce.
    let steps: [(&str, &dyn Fn(), usize); 7] = [
        (
            "web-app reaches its manual approval",
            &|| aws.set_state("web-app", Fixture::Waiting),
            1,
        ),
        (
            "another poll, nothing changed (no duplicate alert)",
            &|| {},
            0,
        ),
        (
            "Slack answers 500 once while payments-api starts waiting (retried on the next pass)",
            &|| {
                slack.push_response(SlackResponse::status(500, "internal_error"));
                aws.set_state("payments-api", Fixture::Waiting);
            },
            1,
        ),
        (
            "alice approves web-app",
            &|| aws.set_state("web-app", Fixture::Approved),
            1,
        ),
        (
            "bob rejects payments-api (his comment tries to ping the channel)",
            &|| aws.set_state("payments-api", Fixture::Rejected),
            1,
        ),
        (
            "a new run of web-app waits again: a new token, a new alert",
            &|| aws.set_waiting("web-app", "5d0a9c7e-demo-token-2"),
            1,
        ),
        (
            "two runs of checkout (PARALLEL mode) wait at once: two alerts, each naming its run",
            &|| {
                let now = support::fixtures::now_epoch();
                aws.add_run(
                    "checkout",
                    Run::waiting("3f1d2c4b-run-one", "a1b2c3d4-ext-one", now - 420.0),
                );
                aws.add_run(
                    "checkout",
                    Run::waiting("9e8d7c6b-run-two", "e5f6a7b8-ext-two", now - 60.0),
                );
            },
            2,
        ),
    ];
    for (i, (what, change, expected)) in steps.iter().enumerate() {
        change();
        println!("── step {}: {what}", i + 1);
        let report = watcher.cycle(&shutdown).await?;
        if report.undelivered > 0 {
            // What `run` does between polls: retry the outbox once its backoff is over.
            println!(
                "   (Slack failed; {} message(s) wait for a retry in 5 s)",
                report.undelivered
            );
            tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
            watcher.deliver(&shutdown).await?;
        }
        let delivered = slack.delivered();
        if delivered.len() == shown {
            println!("   (no Slack message)\n");
        }
        for message in &delivered[shown..] {
            print_message(message);
        }
        // The demo is also a check: a story that does not happen is a failure, not a quiet run.
        if delivered.len() - shown != *expected {
            anyhow::bail!(
                "step {}: expected {expected} Slack message(s), got {}",
                i + 1,
                delivered.len() - shown
            );
        }
        shown = delivered.len();
    }
    let waiting = watcher.store().open_approvals()?;
    println!(
        "── `approval-watch status` would now list {} waiting approval(s):",
        waiting.len()
    );
    for w in &waiting {
        let key = &w.approval.key;
        println!(
            "   {} / {} / {} ({}) since {}",
            key.pipeline, key.stage, key.action, key.region, w.approval.waiting_since
        );
    }
    if waiting.len() != 3 {
        anyhow::bail!(
            "expected 3 approvals waiting at the end, found {}",
            waiting.len()
        );
    }
    watcher.close()?;
    Ok(())
}

/// Shows a Block Kit message roughly as Slack would: links as "label (url)", dates as text.
fn print_message(message: &Value) {
    println!("   ┌─ Slack message ───────────────────────────────────────────");
    let blocks = message["blocks"].as_array().cloned().unwrap_or_default();
    for block in blocks {
        let texts: Vec<String> = match block["type"].as_str() {
            Some("header") | Some("section") => block["text"]["text"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect(),
            Some("context") => block["elements"]
                .as_array()
                .map(|els| {
                    els.iter()
                        .filter_map(|e| e["text"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            Some("actions") => vec![
                block["elements"]
                    .as_array()
                    .map(|els| {
                        els.iter()
                            .filter_map(|e| e["text"]["text"].as_str())
                            .map(|t| format!("[ {t} ]"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default(),
            ],
            _ => Vec::new(),
        };
        for text in texts {
            for line in mrkdwn_to_terminal(&text).lines() {
                println!("   │ {line}");
            }
        }
    }
    println!("   └───────────────────────────────────────────────────────────\n");
}

fn mrkdwn_to_terminal(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &rest[start + 1..start + len];
        let shown = match inner.split_once('|') {
            Some((target, label)) if target.starts_with("!date") => label.to_owned(),
            Some((target, label)) => format!("{label} ({target})"),
            None => inner.to_owned(),
        };
        out.push_str(&shown);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
