//! The `run` loop driven in-process on tokio's paused clock: hours of daemon time (cycles,
//! reminders, a reload request) in moments, with the real SDK, SQLite and HTTP to the fakes.

use crate::support;

use std::time::Duration;

use approval_watch::clock::Clock;
use approval_watch::config::Config;
use approval_watch::daemon::startup;
use approval_watch::daemon::{self, Options};
use jiff::Timestamp;
use support::payload::all_text;
use support::{FakeCodePipeline, FakeSlack};
use tokio_util::sync::CancellationToken;

fn config_text(
    aws: &FakeCodePipeline,
    slack: &FakeSlack,
    state: &str,
    pipelines: &[&str],
) -> String {
    let mut text = format!(
        "poll_interval = \"30s\"\nstate_path = \"{state}\"\n[aws]\nregion = \"us-east-1\"\n\
         endpoint_url = \"{}\"\n[slack]\nwebhook_url = \"{}\"\n\
         [reminders]\nafter = \"30m\"\nevery = \"1h\"\nmax = 2\n",
        aws.endpoint(),
        slack.url()
    );
    for p in pipelines {
        text.push_str(&format!("[[pipeline]]\nname = \"{p}\"\n"));
    }
    text
}

#[tokio::test(start_paused = true)]
async fn the_loop_reminds_on_schedule_and_reloads_on_request_in_paused_time() {
    support::static_credentials();
    let aws = FakeCodePipeline::with_pipelines(&["web-app", "api"]).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.db");
    let config_path = dir.path().join("config.toml");
    let start = Timestamp::now();
    aws.set_waiting_since("web-app", "tok-1", start.as_second() as f64);
    aws.set_waiting_since("api", "tok-2", start.as_second() as f64);
    std::fs::write(
        &config_path,
        config_text(&aws, &slack, &state.display().to_string(), &["web-app"]),
    )
    .expect("config");
    let config = Config::load(&config_path).expect("valid config");
    let clock = Clock::tokio_at(start);
    let daemon = startup::daemon(config, clock).await.expect("daemon");
    let (reload, requests) = tokio::sync::mpsc::channel::<()>(1);
    let reloads = futures_util::stream::unfold(requests, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let shutdown = CancellationToken::new();
    let options = Options {
        notifier: Default::default(),
        reloads: Box::pin(reloads),
        config_path: config_path.clone(),
        clock,
    };
    // The loop holds the database on its own task; the test drives time beside it.
    let steps = async {
        // Two and a half hours: the alert, a reminder at 30 min, another at 1 h 30, then max.
        tokio::time::sleep(Duration::from_secs(150 * 60)).await;
        let delivered = slack.delivered();
        let texts: Vec<String> = delivered.iter().map(all_text).collect();
        assert_eq!(texts.len(), 3, "{texts:#?}");
        assert!(texts[0].contains("web-app") && !texts[0].contains("Still waiting"));
        assert!(
            texts[1..]
                .iter()
                .all(|t| t.contains("Still waiting for approval: web-app"))
        );

        // A reload request adds api, which is read at once rather than a poll interval later.
        std::fs::write(
            &config_path,
            config_text(
                &aws,
                &slack,
                &state.display().to_string(),
                &["web-app", "api"],
            ),
        )
        .expect("config");
        reload.send(()).await.expect("the loop listens");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let texts: Vec<String> = slack.delivered().iter().map(all_text).collect();
        assert_eq!(texts.len(), 4, "{texts:#?}");
        assert!(texts[3].contains("api"), "{}", texts[3]);
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(daemon::run(daemon, options, shutdown.clone()), steps);
    result.expect("the loop ends and closes the database");
}
