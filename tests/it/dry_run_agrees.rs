//! `once --dry-run` prints exactly what `once` then sends, whatever state the outbox and the
//! approvals are in: queued and due, queued with a retry not yet due, dropped with its
//! resolution, a reminder due, a reminder held by working hours.

use crate::support;

use serde_json::Value;
use support::{Fixture, SlackResponse, World, state_db};

/// What a message is about: kind and pipeline.
type Sent = Vec<(String, String)>;

/// Runs the dry run, then `once`, on the same state; returns what each would send / sent.
async fn dry_run_then_once(w: &World) -> (Sent, Sent) {
    let dry = w.env.dry_run().await;
    let mut predicted: Sent = dry
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            (
                v["kind"].as_str().unwrap_or_default().to_owned(),
                v["pipeline"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let delivered_before: Vec<i64> = state_db::outbox(&w.env.state_path)
        .into_iter()
        .filter(|r| r.state == "delivered")
        .map(|r| r.id)
        .collect();
    let delivered_to_slack = w.slack.delivered_count();
    w.env.once().await;
    let mut sent: Sent = state_db::outbox(&w.env.state_path)
        .into_iter()
        .filter(|r| r.state == "delivered" && !delivered_before.contains(&r.id))
        .map(|r| (r.kind, r.pipeline))
        .collect();
    assert_eq!(w.slack.delivered_count() - delivered_to_slack, sent.len());
    predicted.sort();
    sent.sort();
    (predicted, sent)
}

fn sql(w: &World, statement: &str) {
    let db = rusqlite::Connection::open(&w.env.state_path).expect("state database");
    db.execute_batch(statement).expect(statement);
}

fn pairs(list: &[(&str, &str)]) -> Sent {
    list.iter()
        .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dry_run_sends_what_once_sends_in_every_outbox_state() {
    let mut w = World::start(&["web-app", "api", "db"]).await;
    w.env.spec.reminders = Some("after = \"30m\"\nevery = \"1h\"\nmax = 3".into());
    w.env.write_config();

    // A new approval: both say "alert".
    w.aws.set_state("web-app", Fixture::Waiting);
    let (dry, once) = dry_run_then_once(&w).await;
    assert_eq!(dry, pairs(&[("alert", "web-app")]));
    assert_eq!(dry, once, "new alert");

    // Slack rate-limits api's alert for a minute: queued, its retry not yet due.
    w.aws.set_state("api", Fixture::Waiting);
    w.slack.push_response(SlackResponse::rate_limited(60));
    let (dry, once) = dry_run_then_once(&w).await;
    assert_eq!(
        dry,
        pairs(&[("alert", "api")]),
        "the dry run expects Slack to take it"
    );
    assert!(once.is_empty(), "Slack said 429: {once:?}");
    let (dry, once) = dry_run_then_once(&w).await;
    assert!(
        dry.is_empty() && once.is_empty(),
        "retry not yet due: {dry:?} {once:?}"
    );

    // The retry comes due: both send the queued alert.
    sql(
        &w,
        "UPDATE outbox SET next_attempt_ms = 0 WHERE state = 'pending'",
    );
    let (dry, once) = dry_run_then_once(&w).await;
    assert_eq!(dry, pairs(&[("alert", "api")]));
    assert_eq!(dry, once, "queued and due");

    // db's alert is queued (429), then db is approved before it went out: dropped with its
    // resolution.
    w.aws.set_state("db", Fixture::Waiting);
    w.slack.push_response(SlackResponse::rate_limited(60));
    w.env.once().await;
    assert_eq!(
        state_db::outbox(&w.env.state_path)
            .iter()
            .filter(|r| r.state == "pending")
            .count(),
        1
    );
    // Its retry is due: a dry run that only listed the outbox would print it.
    sql(
        &w,
        "UPDATE outbox SET next_attempt_ms = 0 WHERE state = 'pending'",
    );
    w.aws.set_state("db", Fixture::Approved);
    let (dry, once) = dry_run_then_once(&w).await;
    assert!(
        dry.is_empty(),
        "an alert dropped with its resolution: {dry:?}"
    );
    assert_eq!(dry, once, "dropped");

    // web-app has waited two hours: a reminder is due.
    sql(
        &w,
        "UPDATE approvals SET first_seen_ms = first_seen_ms - 7200000,
             waiting_since_ms = waiting_since_ms - 7200000 WHERE pipeline = 'web-app'",
    );
    let (dry, once) = dry_run_then_once(&w).await;
    assert_eq!(dry, pairs(&[("reminder", "web-app")]));
    assert_eq!(dry, once, "reminder due");

    // Another two hours later, but outside working hours: held by both.
    sql(
        &w,
        "UPDATE approvals SET last_reminder_ms = last_reminder_ms - 7200000
             WHERE pipeline = 'web-app'",
    );
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .weekday()
        .to_monday_zero_offset();
    let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(today as usize + 1) % 7];
    w.env.spec.reminders = Some(format!(
        "after = \"30m\"\nevery = \"1h\"\nmax = 3\n[reminders.working_hours]\n\
         timezone = \"UTC\"\ndays = [\"{day}\"]\nstart = \"00:00\"\nend = \"24:00\""
    ));
    w.env.write_config();
    let (dry, once) = dry_run_then_once(&w).await;
    assert!(dry.is_empty(), "held by working hours: {dry:?}");
    assert_eq!(dry, once, "held by working hours");
}
