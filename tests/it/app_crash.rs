//! Crashes in app mode: the real daemon killed with SIGKILL at seeded random points while
//! approvals start waiting and get approved, and the fake Web API answers slowly enough for
//! kills to land mid-request. Afterwards, from the Web API's request log:
//!
//! - every thread reply and every edit targets a message that exists (the stored `ts` is
//!   right after every restart): no `thread_not_found`, no `message_not_found`;
//! - every approval waiting at the end has its one top-level message; top-level alerts repeat
//!   only within the design's window (a kill between Slack's answer and the mark), so at most
//!   one repeat per kill;
//! - every approval approved after its alert was recorded had that message edited (a kill
//!   between Slack's answer and the mark counts against the same window).
//!
//! `CRASH_SEED` replays a schedule.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::fake_slack_api::{BOT_TOKEN, FakeSlackApi, summarize};
use support::fixtures::{StateBuilder, token_from_seed};
use support::payload::review_tokens;
use support::rng::Rng;
use support::{FakeCodePipeline, Fixture, TestEnv, WebhookSource};

const PIPELINES: [&str; 3] = ["a-app", "b-app", "c-app"];

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_random_points_threads_and_edits_stay_right_and_alerts_repeat_within_one_per_kill()
 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let mut rng = Rng::new(seed);
    let aws = FakeCodePipeline::with_pipelines(&PIPELINES).await;
    let api = FakeSlackApi::start().await;
    api.set_delay(Duration::from_millis(150));
    let mut env = TestEnv::new(&aws.endpoint(), "http://127.0.0.1:9/unused", &PIPELINES);
    env.spec.webhook = WebhookSource::Nothing;
    env.spec.extra_slack = api.slack_table_lines("C0CRASHTEST");
    env.set_env("SLACK_BOT_TOKEN", BOT_TOKEN);
    env.set_env("RUST_LOG", "info");
    env.write_config();

    // Which token each pipeline has now, and whether it waits.
    let mut current: BTreeMap<&str, (String, bool)> = BTreeMap::new();
    let mut n = 0;
    let kills = 12;
    for _ in 0..kills {
        // Change the world a little: a new run waits, or the waiting one is approved.
        for p in PIPELINES {
            if rng.below(2) == 0 {
                continue;
            }
            match current.get(p) {
                Some((token, true)) => {
                    let approved = StateBuilder::fixture(Fixture::Approved)
                        .named(p)
                        .token(token)
                        .build();
                    aws.set_state_json(p, approved);
                    current.insert(p, (token.clone(), false));
                }
                _ => {
                    n += 1;
                    let token = token_from_seed(&format!("crash-{seed}-{n}"));
                    aws.set_waiting(p, &token);
                    current.insert(p, (token, true));
                }
            }
        }
        let daemon = env.spawn_run();
        tokio::time::sleep(rng.millis(300, 2500)).await;
        daemon.stop("KILL", Duration::from_secs(10)).await;
    }
    // A last daemon that lives long enough to finish what is owed.
    let daemon = env.spawn_run();
    tokio::time::sleep(Duration::from_secs(8)).await;
    daemon.terminate().await.assert_code(0);

    let requests = api.requests();
    let log = || format!("seed {seed}: {:#?}", summarize(&requests));
    for r in &requests {
        let error = r.answer["error"].as_str().unwrap_or_default();
        assert!(
            error != "thread_not_found" && error != "message_not_found",
            "a stale ts after a restart: {}",
            log()
        );
    }
    // Top-level alerts per token, and which ts each got.
    let mut alerts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in requests
        .iter()
        .filter(|r| r.method == "chat.postMessage" && r.ok())
    {
        if r.body.get("thread_ts").is_none()
            && r.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Approval waiting"))
        {
            for token in review_tokens(&r.body) {
                alerts
                    .entry(token)
                    .or_default()
                    .push(r.answer["ts"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    let repeats: usize = alerts.values().map(|ts| ts.len() - 1).sum();
    assert!(
        repeats <= kills,
        "{repeats} repeated alerts for {kills} kills: {}",
        log()
    );
    for (p, (token, waiting)) in &current {
        if *waiting {
            assert!(
                alerts.contains_key(token),
                "{p}'s waiting approval never announced: {}",
                log()
            );
        }
    }
    // Approved after its alert: the alert (one of its copies) was edited to say so.
    let edited: BTreeSet<String> = requests
        .iter()
        .filter(|r| r.method == "chat.update" && r.ok())
        .filter_map(|r| r.body["ts"].as_str().map(str::to_owned))
        .collect();
    let approved_tokens: BTreeSet<&String> = current
        .values()
        .filter(|(_, waiting)| !waiting)
        .map(|(t, _)| t)
        .collect();
    // An alert posted but not yet marked when its daemon was killed is, to the database,
    // undelivered: if its approval resolves before the repeat, both are dropped by design.
    // Like a repeat, that takes a kill between Slack's answer and the mark.
    let unedited = approved_tokens
        .iter()
        .filter(|t| {
            alerts
                .get(**t)
                .is_some_and(|ts| !ts.iter().any(|ts| edited.contains(ts)))
        })
        .count();
    assert!(
        repeats + unedited <= kills,
        "{repeats} repeated and {unedited} unedited alerts for {kills} kills: {}",
        log()
    );
    println!(
        "seed {seed}: {kills} kills, {} tokens, {} alerts, {repeats} repeated, {unedited} unedited, {} edits, {} requests",
        n,
        alerts.len(),
        edited.len(),
        requests.len()
    );
}
