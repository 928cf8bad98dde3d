//! Approving and rejecting from Slack over Socket Mode, against the real binary: the fake
//! Socket Mode server delivers clicks, the fake Web API answers `views.open`,
//! `chat.postEphemeral`, `usergroups.users.list` and `chat.update`, and the fake CodePipeline
//! takes `PutApprovalResult` (and then reads as approved or rejected, like the real one).

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_codepipeline::{GET_PIPELINE_STATE, InjectedError, PUT_APPROVAL_RESULT};
use support::fake_slack_api::{APP_TOKEN, ApiAnswer, BOT_TOKEN, FakeSlackApi, Gate, TICKET_MARK};
use support::fake_socket_mode::FakeSocketMode;
use support::{Daemon, FakeCodePipeline, Fixture, SOON, TestEnv, WebhookSource};

pub(crate) const CHANNEL: &str = "C0PAYMENTS1";
pub(crate) const LEAD: &str = "U0PAYLEAD1";
pub(crate) const MEMBER: &str = "U0MEMBER01";
pub(crate) const STRANGER: &str = "U0STRANGER";
pub(crate) const GROUP: &str = "S0PLATFORM";
pub(crate) const PIPELINE: &str = "web-app";

pub(crate) struct World {
    pub(crate) aws: FakeCodePipeline,
    pub(crate) api: FakeSlackApi,
    pub(crate) socket: FakeSocketMode,
    pub(crate) env: TestEnv,
}

impl World {
    /// App mode with `[slack.approvals]`: LEAD listed, GROUP (holding MEMBER) listed.
    pub(crate) async fn start() -> Self {
        let aws = FakeCodePipeline::with_pipelines(&[PIPELINE]).await;
        let api = FakeSlackApi::start().await;
        let socket = FakeSocketMode::start().await;
        api.set_socket_url(socket.link_url());
        api.set_group_members(GROUP, &[MEMBER]);
        let mut env = TestEnv::new(&aws.endpoint(), "http://127.0.0.1:9/unused", &[PIPELINE]);
        env.spec.webhook = WebhookSource::Nothing;
        env.spec.extra_slack = api.slack_table_lines(CHANNEL);
        env.set_env("SLACK_BOT_TOKEN", BOT_TOKEN);
        env.set_env("SLACK_APP_TOKEN", APP_TOKEN);
        env.write_config();
        let world = World {
            aws,
            api,
            socket,
            env,
        };
        world.append_config(&format!(
            "\n[slack.approvals]\napp_token_env = \"SLACK_APP_TOKEN\"\nallow_users = [\"{LEAD}\"]\nallow_groups = [\"{GROUP}\"]\n"
        ));
        world
    }

    pub(crate) fn append_config(&self, toml: &str) {
        let mut text = self.env.config_text();
        text.push_str(toml);
        std::fs::write(&self.env.config_path, text).expect("config");
    }

    /// LEAD approves over connection `conn` and AWS gets the call; then the daemon stops,
    /// having written no secret.
    pub(crate) async fn approve_works_on(&self, conn: usize, daemon: Daemon, id: &str, ts: &str) {
        self.click(conn, LEAD, "approve", id, ts);
        assert!(
            self.aws
                .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
                .await
        );
        let out = daemon.terminate().await;
        assert_no_secrets(&out.all_output());
    }

    /// The daemon, its Socket Mode connection open and the waiting approval's alert posted;
    /// returns the daemon and the alert's approval id (the buttons' value).
    pub(crate) async fn running_with_alert(&self) -> (Daemon, String) {
        self.aws.set_state(PIPELINE, Fixture::Waiting);
        let daemon = self.env.spawn_run();
        self.socket.wait_for_connection(0, SOON).await;
        self.api
            .wait_until(SOON, |r| {
                r.iter().any(|r| r.method == "chat.postMessage" && r.ok())
            })
            .await;
        let alert = &self.api.calls("chat.postMessage")[0];
        let id = approval_id(&alert.body).expect("the alert carries buttons");
        // Clicks come after the alert's place is recorded, as they do in Slack (a person
        // needs longer than the daemon's write).
        let recorded = support::runner::eventually(SOON, || {
            support::state_db::slack_ts_recorded(&self.env.state_path)
        })
        .await;
        assert!(recorded, "the alert's channel and ts were never recorded");
        (daemon, id)
    }

    pub(crate) fn click(
        &self,
        conn: usize,
        user: &str,
        action: &str,
        id: &str,
        action_ts: &str,
    ) -> String {
        self.socket
            .push_interactive(conn, block_actions(user, action, id, action_ts))
    }

    /// Waits up to `wait` for the acknowledgement of `envelope`, and asserts it came within
    /// Slack's deadline (3 s from the push: a protocol bound, not a speed test).
    pub(crate) async fn assert_acked_within_3s(&self, envelope: &str, wait: Duration) {
        let ack = self.socket.wait_for_ack(envelope, wait).await;
        let pushed = self.socket.pushed_at(envelope).expect("pushed");
        let took = ack.at.duration_since(pushed);
        assert!(
            took < Duration::from_secs(3),
            "ack of {envelope} took {took:?}"
        );
    }

    /// Waits until the click's interim edit ("waiting for CodePipeline to confirm") reached
    /// the fake Web API.
    async fn wait_for_interim_edit(&self) {
        self.api
            .wait_until(SOON, |r| {
                r.iter().any(|r| {
                    r.method == "chat.update"
                        && r.body
                            .to_string()
                            .contains("waiting for CodePipeline to confirm")
                })
            })
            .await;
    }

    /// Waits until the fake Web API was called with `method`.
    pub(crate) async fn wait_for_call(&self, method: &str) {
        self.api
            .wait_until(SOON, |r| r.iter().any(|r| r.method == method))
            .await;
    }

    pub(crate) fn put_calls(&self) -> Vec<Value> {
        self.aws
            .requests()
            .into_iter()
            .filter(|r| r.operation == PUT_APPROVAL_RESULT)
            .map(|r| r.body)
            .collect()
    }

    pub(crate) async fn audit(&self) -> Vec<Value> {
        let out = self.env.run(&["audit", "--json"]).await;
        out.assert_code(0);
        serde_json::from_str(&out.stdout).expect("audit JSON")
    }
}

/// The approval id in an alert's Approve button.
pub(crate) fn approval_id(body: &Value) -> Option<String> {
    body["blocks"]
        .as_array()?
        .iter()
        .find(|b| b["type"] == "actions")?["elements"][0]["value"]
        .as_str()
        .map(str::to_owned)
}

pub(crate) fn block_actions(user: &str, action: &str, id: &str, action_ts: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": { "id": user, "username": format!("name-of-{user}"), "name": format!("name-of-{user}") },
        "channel": { "id": CHANNEL },
        "container": { "type": "message", "message_ts": "1.1", "channel_id": CHANNEL },
        "trigger_id": format!("trigger-{action_ts}"),
        "response_url": "https://hooks.slack.invalid/actions/T0/1/xyz",
        "actions": [ {
            "type": "button",
            "action_id": format!("approval_watch.{action}"),
            "block_id": "approval_watch.decide",
            "value": id,
            "action_ts": action_ts,
        } ],
    })
}

pub(crate) fn view_submission(user: &str, id: &str, view_id: &str, reason: &str) -> Value {
    json!({
        "type": "view_submission",
        "user": { "id": user, "username": format!("name-of-{user}"), "name": format!("name-of-{user}") },
        "view": {
            "id": view_id,
            "type": "modal",
            "callback_id": "approval_watch.reject",
            "private_metadata": id,
            "state": { "values": { "reason": { "reason": { "type": "plain_text_input", "value": reason } } } },
        },
    })
}

/// Neither token nor a Socket Mode ticket in anything the daemon wrote.
pub(crate) fn assert_no_secrets(text: &str) {
    for secret in [APP_TOKEN, BOT_TOKEN, TICKET_MARK, "XSECRETX"] {
        assert!(
            !text.contains(secret),
            "a secret ({secret}) appears in the output"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_approve_calls_aws_once_with_the_token_and_names_the_slack_user() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    let alert = &w.api.calls("chat.postMessage")[0];
    let buttons = alert.body["blocks"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["type"] == "actions"))
        .expect("buttons")
        .clone();
    assert_eq!(buttons["elements"][0]["style"], "primary");
    assert!(
        buttons["elements"][0]["confirm"]["text"]["text"]
            .as_str()
            .unwrap()
            .contains(PIPELINE)
    );
    assert_eq!(buttons["elements"][1]["style"], "danger");

    let envelope = w.click(0, LEAD, "approve", &id, "1700000000.000100");
    w.socket.wait_for_ack(&envelope, SOON).await;
    assert!(
        w.aws
            .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
            .await
    );
    let put = &w.put_calls()[0];
    assert_eq!(put["pipelineName"], PIPELINE);
    assert_eq!(put["token"], w.aws.token(PIPELINE).as_str());
    assert_eq!(put["result"]["status"], "Approved");
    assert_eq!(
        put["result"]["summary"],
        format!("Approved in Slack by name-of-{LEAD} ({LEAD})")
    );

    // The alert loses its buttons at once, then the poll shows the outcome naming the person.
    w.wait_for_interim_edit().await;
    let first_update = &w.api.calls("chat.update")[0];
    assert!(approval_id(&first_update.body).is_none(), "buttons gone");
    w.api
        .wait_until(SOON, |r| {
            r.iter().filter(|r| r.method == "chat.update").count() >= 2
        })
        .await;
    let resolved = w.api.calls("chat.update")[1].body.to_string();
    assert!(
        resolved.contains(&format!("name-of-{LEAD} ({LEAD}) in Slack")),
        "{resolved}"
    );
    assert!(
        !resolved.contains("i-0bastion"),
        "the daemon's role is not the reviewer: {resolved}"
    );

    let out = daemon.terminate().await;
    assert_no_secrets(&out.all_output());
    let audit = w.audit().await;
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["result"], "approved");
    assert_eq!(audit[0]["user_id"], LEAD);
    assert_eq!(audit[0]["decision"], "approve");
    assert_eq!(audit[0]["pipeline"], PIPELINE);
    assert!(
        audit[0]["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{audit:#?}"
    );
    assert_eq!(w.put_calls().len(), 1);
}

/// Issue 20, defect 4: the click's interim edit ("waiting for CodePipeline to confirm") is slow
/// in flight while the poll sees the outcome. Edits of one message land in order: the alert ends
/// showing the resolution, never "waiting" for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_interim_edit_never_lands_after_the_resolution() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    let alert_ts = w.api.calls("chat.postMessage")[0].answer["ts"]
        .as_str()
        .expect("ts")
        .to_owned();
    // The poll keeps reading "waiting" until the interim edit is in flight, so the click
    // (not the poll) is first to edit.
    let waiting = w.aws.state_json(PIPELINE).to_string();
    w.aws
        .set_raw_response(GET_PIPELINE_STATE, PIPELINE, 200, &waiting);
    let gate = Gate::default();
    w.api.push("chat.update", ApiAnswer::Hold(gate.clone()));

    w.click(0, LEAD, "approve", &id, "1700000000.000150");
    w.wait_for_interim_edit().await;
    // Now the poll sees the approval decided and the resolution edits the alert: it either
    // goes through (and the interim edit would land after it) or waits for the interim one.
    w.aws.clear_error(PIPELINE);
    const WAITS: &str = "the resolution waits for that edit to land";
    let raced = support::runner::eventually(SOON, || {
        w.api.calls("chat.update").len() >= 2 || daemon.stderr().contains(WAITS)
    })
    .await;
    assert!(raced, "{}", daemon.stderr());
    gate.open();
    w.api
        .wait_until(SOON, |r| {
            r.iter()
                .filter(|r| r.method == "chat.update" && r.ok())
                .count()
                >= 2
        })
        .await;
    // Whatever was answered last, the alert as the channel shows it is the resolution.
    let shown = w
        .api
        .top_level()
        .into_iter()
        .find(|m| m.ts == alert_ts)
        .expect("the alert");
    let shown = format!("{} {}", shown.text, shown.blocks);
    assert!(
        !shown.contains("waiting for CodePipeline to confirm"),
        "the interim edit landed last: {shown}"
    );
    assert!(
        shown.contains(&format!("name-of-{LEAD} ({LEAD}) in Slack")),
        "{shown}"
    );
    let out = daemon.terminate().await;
    assert_no_secrets(&out.all_output());
}

#[tokio::test(flavor = "multi_thread")]
async fn reject_opens_a_modal_and_its_reason_goes_to_codepipeline() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    w.click(0, LEAD, "reject", &id, "1700000000.000200");
    w.wait_for_call("views.open").await;
    let open = &w.api.calls("views.open")[0];
    assert_eq!(open.body["trigger_id"], "trigger-1700000000.000200");
    assert_eq!(open.body["view"]["callback_id"], "approval_watch.reject");
    assert_eq!(open.body["view"]["private_metadata"], id.as_str());
    assert!(
        w.put_calls().is_empty(),
        "opening the dialog decides nothing"
    );

    let envelope = w.socket.push_interactive(
        0,
        view_submission(LEAD, &id, "V0MODAL001", "breaks checkout"),
    );
    w.socket.wait_for_ack(&envelope, SOON).await;
    assert!(
        w.aws
            .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
            .await
    );
    let put = &w.put_calls()[0];
    assert_eq!(put["result"]["status"], "Rejected");
    assert_eq!(
        put["result"]["summary"],
        format!("Rejected in Slack by name-of-{LEAD} ({LEAD}): breaks checkout")
    );
    // The poll's edit names the person as the reviewer and keeps the reason as the comment.
    w.api
        .wait_until(SOON, |r| {
            r.iter().filter(|r| r.method == "chat.update").count() >= 2
        })
        .await;
    let resolved = w.api.calls("chat.update")[1].body.to_string();
    assert!(
        resolved.contains(&format!("Rejected by name-of-{LEAD} ({LEAD}) in Slack")),
        "{resolved}"
    );
    assert!(resolved.contains("breaks checkout"), "{resolved}");
    assert!(
        !resolved.contains("Rejected in Slack by"),
        "said once: {resolved}"
    );
    let out = daemon.terminate().await;
    assert_no_secrets(&out.all_output());
    let audit = w.audit().await;
    assert_eq!(audit[0]["result"], "rejected");
    assert_eq!(audit[0]["reason"], "breaks checkout");
}

/// Slack's required field takes a reason of spaces only; the modal then answers with its own
/// error under the field (in the acknowledgement), so the person sees why it stays open, and
/// nothing is decided.
#[tokio::test(flavor = "multi_thread")]
async fn a_blank_reason_keeps_the_modal_open_with_its_error() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    let envelope = w
        .socket
        .push_interactive(0, view_submission(LEAD, &id, "V0MODAL002", "  \n "));
    let ack = w.socket.wait_for_ack(&envelope, SOON).await;
    let answer = ack.payload.expect("the acknowledgement answers");
    assert_eq!(answer["response_action"], "errors", "{answer}");
    assert!(
        answer["errors"]["reason"]
            .as_str()
            .is_some_and(|e| e.contains("Say why you reject")),
        "{answer}"
    );
    // A reason after all: the same modal rejects, with a plain acknowledgement.
    let envelope = w.socket.push_interactive(
        0,
        view_submission(LEAD, &id, "V0MODAL002", "breaks checkout"),
    );
    assert_eq!(w.socket.wait_for_ack(&envelope, SOON).await.payload, None);
    assert!(
        w.aws
            .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
            .await
    );
    assert_eq!(
        w.put_calls().len(),
        1,
        "the blank submission decided nothing"
    );
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_not_allowed_gets_an_ephemeral_and_a_denied_row_and_aws_is_not_called() {
    let mut w = World::start().await;
    w.env.spec.extra_top = "[metrics]\nlisten = \"127.0.0.1:0\"\n".into();
    w.env.write_config();
    w.append_config(&format!(
        "\n[slack.approvals]\napp_token_env = \"SLACK_APP_TOKEN\"\nallow_users = [\"{LEAD}\"]\nallow_groups = [\"{GROUP}\"]\n"
    ));
    let (mut daemon, id) = w.running_with_alert().await;
    let base = crate::metrics::metrics_base(&mut daemon).await;
    w.click(0, STRANGER, "approve", &id, "1700000000.000300");
    w.wait_for_call("chat.postEphemeral").await;
    let eph = &w.api.calls("chat.postEphemeral")[0];
    assert_eq!(eph.body["user"], STRANGER);
    assert_eq!(eph.body["channel"], CHANNEL);
    let text = eph.body["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("<@{LEAD}>")) && text.contains(GROUP),
        "{text}"
    );
    // A Reject click by a stranger opens no dialog either.
    w.click(0, STRANGER, "reject", &id, "1700000000.000301");
    w.api
        .wait_until(SOON, |r| {
            r.iter()
                .filter(|r| r.method == "chat.postEphemeral")
                .count()
                >= 2
        })
        .await;
    assert!(w.api.calls("views.open").is_empty());
    // The metrics count both refusals and show the connection; /healthz names it.
    let (_, text) = crate::metrics::get(&format!("{base}/metrics")).await;
    let samples = crate::metrics::parse(&text);
    let denied = crate::metrics::value(
        &samples,
        "approval_watch_slack_decisions_total",
        &[("result", "denied")],
    );
    assert_eq!(denied, Some(2.0), "{text}");
    assert_eq!(
        crate::metrics::value(&samples, "approval_watch_slack_socket_connected", &[]),
        Some(1.0),
        "{text}"
    );
    let (status, health) = crate::metrics::get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "{health}");
    assert!(
        health.trim_end().ends_with("Slack Socket Mode: connected"),
        "{health}"
    );
    daemon.terminate().await;
    assert!(w.put_calls().is_empty(), "no AWS call for a stranger");
    let audit = w.audit().await;
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert!(
        audit
            .iter()
            .all(|a| a["result"] == "denied" && a["user_id"] == STRANGER)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_of_an_allowed_group_may_approve() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    w.wait_for_call("usergroups.users.list").await;
    let list = &w.api.calls("usergroups.users.list")[0];
    assert_eq!(list.body["usergroup"], GROUP);
    w.click(0, MEMBER, "approve", &id, "1700000000.000400");
    assert!(
        w.aws
            .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
            .await
    );
    daemon.terminate().await;
    assert_eq!(w.audit().await[0]["result"], "approved");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_that_cannot_be_read_lets_nobody_in_and_the_log_says_why() {
    let w = World::start().await;
    // Refused at the first read and at the retries that follow within seconds.
    for _ in 0..3 {
        w.api
            .push("usergroups.users.list", ApiAnswer::error("missing_scope"));
    }
    let (mut daemon, id) = w.running_with_alert().await;
    daemon
        .wait_for_stderr("cannot read the user group", SOON)
        .await;
    w.click(0, MEMBER, "approve", &id, "1700000000.000450");
    w.wait_for_call("chat.postEphemeral").await;
    let out = daemon.terminate().await;
    assert!(w.put_calls().is_empty(), "never \"allow all\"");
    // Told the group could not be read, not that they may not.
    let text = w.api.calls("chat.postEphemeral")[0].body["text"].to_string();
    assert!(text.contains("could not be read"), "{text}");
    assert_eq!(
        w.audit().await[0]["result"],
        "failed: group membership could not be read"
    );
    let warned = out.stderr_lines_with(&[GROUP, "usergroups:read"]);
    assert!(
        warned
            .iter()
            .any(|l| l.contains("cannot approve until it can be read")),
        "{}",
        out.stderr_plain()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn double_clicks_and_two_people_at_once_call_aws_once() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    // MEMBER's group is read before anyone clicks.
    w.wait_for_call("usergroups.users.list").await;
    // AWS is slow, so every click arrives while the first is in flight.
    w.aws
        .delay_next(PUT_APPROVAL_RESULT, PIPELINE, 1, Duration::from_secs(2));
    let envelopes = [
        w.click(0, LEAD, "approve", &id, "1700000000.000500"),
        w.click(0, LEAD, "approve", &id, "1700000000.000501"),
        w.click(0, MEMBER, "approve", &id, "1700000000.000502"),
        // A replay of the first envelope (Slack retrying) is not a new click.
        w.click(0, LEAD, "approve", &id, "1700000000.000500"),
    ];
    for envelope in &envelopes {
        w.socket.wait_for_ack(envelope, SOON).await;
    }
    // The alert is edited: by the decision, or by the poll that saw it first.
    w.wait_for_call("chat.update").await;
    daemon.terminate().await;
    assert_eq!(w.put_calls().len(), 1, "one decision");
    let audit = w.audit().await;
    let results: Vec<&str> = audit.iter().filter_map(|a| a["result"].as_str()).collect();
    assert_eq!(
        results.iter().filter(|r| **r == "approved").count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| **r == "already_resolved").count(),
        2,
        "the second click and the other person: {results:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn someone_faster_in_the_console_is_no_error() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    // Approved in the console; the daemon has not polled since.
    w.aws.set_state(PIPELINE, Fixture::Approved);
    w.click(0, LEAD, "approve", &id, "1700000000.000600");
    w.wait_for_call("chat.postEphemeral").await;
    let out = daemon.terminate().await;
    let audit = w.audit().await;
    // Either the poll saw it first (no AWS call) or AWS said so; never an error.
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert!(
        audit.iter().all(|a| a["result"] == "already_resolved"),
        "{audit:#?}"
    );
    assert!(
        out.stderr_lines_with(&["ERROR"]).is_empty(),
        "{}",
        out.stderr_lines_with(&["ERROR"]).join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn clicks_are_acked_within_three_seconds_while_aws_is_slow() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    w.aws
        .delay_next(PUT_APPROVAL_RESULT, PIPELINE, 1, Duration::from_secs(8));
    let first = w.click(0, LEAD, "approve", &id, "1700000000.000700");
    assert!(
        w.aws
            .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
            .await
    );
    // AWS is now answering slowly; the next envelope is still acknowledged at once.
    let second = w.click(0, STRANGER, "approve", &id, "1700000000.000701");
    for envelope in [&first, &second] {
        w.assert_acked_within_3s(envelope, SOON).await;
    }
    daemon.terminate().await;
}

/// Another writer holds the state database for 10 s (a backup, `sqlite3` at a prompt). SQLite
/// makes the daemon's writes wait for it, yet every envelope is acknowledged within Slack's 3 s,
/// and the approval decided meanwhile goes through, once, when the lock goes.
#[tokio::test(flavor = "multi_thread")]
async fn clicks_are_acked_within_three_seconds_while_another_writer_locks_the_database() {
    const HELD: Duration = Duration::from_secs(10);
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    let locker = rusqlite::Connection::open(&w.env.state_path).expect("open state");
    locker
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("exclusive lock");
    let locked = std::time::Instant::now();

    // A refused click first: its audit row waits for the lock (the daemon is then inside
    // SQLite), and the approve right after it must still be acknowledged promptly.
    let refused = w.click(0, STRANGER, "approve", &id, "1700000000.000900");
    w.socket.wait_for_ack(&refused, SOON).await;
    let approve = w.click(0, LEAD, "approve", &id, "1700000000.000901");
    for envelope in [&refused, &approve] {
        w.assert_acked_within_3s(envelope, HELD).await;
    }
    // The audit row comes before AWS: nothing is decided while it cannot be written.
    tokio::time::sleep_until((locked + HELD).into()).await;
    assert!(w.put_calls().is_empty(), "AWS called without an audit row");
    locker.execute_batch("ROLLBACK").expect("unlock");
    drop(locker);

    assert!(
        w.aws
            .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
            .await,
        "the click was not decided once the lock went"
    );
    let out = daemon.terminate().await;
    assert_eq!(w.put_calls().len(), 1, "{}", out.describe());
    let audit = w.audit().await;
    let results: Vec<(&str, &str)> = audit
        .iter()
        .map(|r| {
            (
                r["user_id"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(results.contains(&(STRANGER, "denied")), "{audit:#?}");
    assert_eq!(
        results.iter().filter(|(_, r)| *r == "approved").count(),
        1,
        "{audit:#?}"
    );
    assert!(results.contains(&(LEAD, "approved")), "{audit:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_refresh_or_a_dropped_connection_the_next_click_works() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    w.socket.disconnect(0, "refresh_requested");
    w.socket.wait_for_connection(1, SOON).await;
    // The refresh is done once the old connection is closed; then the new one drops.
    w.socket.wait_for_close(0, SOON).await;
    w.socket.drop_connection(1);
    w.socket.wait_for_connection(2, SOON).await;
    w.approve_works_on(2, daemon, &id, "1700000000.000800")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn link_disabled_stops_reconnecting_and_status_says_so() {
    let w = World::start().await;
    let (mut daemon, _id) = w.running_with_alert().await;
    w.socket.disconnect(0, "link_disabled");
    w.socket.wait_for_close(0, SOON).await;
    assert!(
        daemon.wait_for_stderr("(link_disabled)", SOON).await,
        "{}",
        daemon.stderr()
    );
    // The state is recorded as it changes; a cycle later it is surely in the database.
    let polls = w.aws.calls("GetPipelineState", PIPELINE);
    assert!(
        w.aws
            .wait_for_calls("GetPipelineState", PIPELINE, polls + 1, SOON)
            .await
    );
    let out = w.env.run(&["status", "--json"]).await;
    let doc: Value = serde_json::from_str(&out.stdout).expect("status JSON");
    assert_eq!(doc["approvals"]["state"], "disabled", "{doc}");
    let opens = w.api.calls("apps.connections.open").len();
    // Cycles go on (a poll or two), and no new connection is asked for.
    let polls = w.aws.calls("GetPipelineState", PIPELINE);
    assert!(
        w.aws
            .wait_for_calls("GetPipelineState", PIPELINE, polls + 2, SOON)
            .await
    );
    assert_eq!(w.api.calls("apps.connections.open").len(), opens);
    assert_eq!(w.socket.connections().len(), 1);
    let out = daemon.terminate().await;
    assert!(
        out.stderr_plain().contains("link_disabled") || out.stderr_plain().contains("turned off")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_between_the_audit_row_and_aws_no_second_call_without_a_new_click() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    // AWS hangs without taking the decision; the click's audit row is written and the call is
    // in flight when the kill lands.
    w.aws
        .delay_next(PUT_APPROVAL_RESULT, PIPELINE, 1, Duration::from_secs(60));
    w.aws.fail_next(
        PUT_APPROVAL_RESULT,
        PIPELINE,
        1,
        InjectedError::new(500, "InternalServerException", "never answered"),
    );
    w.click(0, LEAD, "approve", &id, "1700000000.000900");
    assert!(
        w.aws
            .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
            .await
    );
    daemon.signal("KILL").await;
    let _ = daemon.wait(SOON).await;

    let daemon = w.env.spawn_run();
    w.socket.wait_for_connection(1, SOON).await;
    // A few cycles of the new daemon, and Slack replaying the old envelope: no second call.
    let polls = w.aws.calls("GetPipelineState", PIPELINE);
    let replay = w.click(1, LEAD, "approve", &id, "1700000000.000900");
    w.socket.wait_for_ack(&replay, SOON).await;
    assert!(
        w.aws
            .wait_for_calls("GetPipelineState", PIPELINE, polls + 2, SOON)
            .await
    );
    assert_eq!(w.put_calls().len(), 1, "no call without a new click");
    // A new click decides.
    w.click(1, LEAD, "approve", &id, "1700000000.000901");
    let called = w
        .aws
        .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 2, SOON)
        .await;
    let out = daemon.terminate().await;
    assert!(called, "{}", out.stderr_lines_with(&["Slack"]).join("\n"));
    let audit = w.audit().await;
    let results: Vec<&str> = audit.iter().filter_map(|a| a["result"].as_str()).collect();
    assert!(
        results.iter().any(|r| r.starts_with("failed: interrupted")),
        "{results:?}"
    );
    assert!(results.contains(&"approved"), "{results:?}");
    assert_eq!(w.put_calls().len(), 2, "the replay never called AWS");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_button_whose_id_now_names_another_approval_is_refused() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    // The same id with another request's fingerprint: a button from an older database.
    let number = id.split('.').next().expect("id");
    let stale = format!("{number}.0123456789abcdef");
    assert_ne!(stale, id);
    let envelope = w.click(0, LEAD, "approve", &stale, "1700000000.001000");
    w.socket.wait_for_ack(&envelope, SOON).await;
    w.wait_for_call("chat.postEphemeral").await;
    daemon.terminate().await;
    assert!(
        w.put_calls().is_empty(),
        "never applied to the approval the id names now"
    );
    assert_eq!(w.audit().await[0]["result"], "failed: stale button");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_reload_the_new_connection_decides_and_group_members_stay_allowed() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    w.wait_for_call("usergroups.users.list").await;
    // From now on the group cannot be read: only the membership carried over lets MEMBER in.
    for _ in 0..3 {
        w.api
            .push("usergroups.users.list", ApiAnswer::error("ratelimited"));
    }
    daemon.signal("HUP").await;
    w.socket.wait_for_close(0, SOON).await;
    w.socket.wait_for_connection(1, SOON).await;
    w.click(1, MEMBER, "approve", &id, "1700000000.001100");
    assert!(
        w.aws
            .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
            .await
    );
    daemon.terminate().await;
    assert_eq!(w.put_calls().len(), 1);
    assert_eq!(w.audit().await[0]["result"], "approved");
}

/// A reload never waits for a decision in flight: with the click's edit of the alert held by
/// Slack, SIGHUP still opens the new connection and the loop polls on; the held decision
/// finishes afterwards, and SIGTERM waits for it to be recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_does_not_wait_for_a_decision_in_flight() {
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    let gate = Gate::default();
    w.api.push("chat.update", ApiAnswer::Hold(gate.clone()));
    w.click(0, LEAD, "approve", &id, "1700000000.001300");
    w.wait_for_interim_edit().await;
    daemon.signal("HUP").await;
    // Before the held edit is answered: the new connection is up and the config reloaded.
    w.socket.wait_for_connection(1, SOON).await;
    assert_eq!(gate.waiting(), 1, "the click's edit is still in flight");
    let reloaded =
        support::runner::eventually(SOON, || daemon.stderr().contains("config reloaded")).await;
    assert!(reloaded, "{}", daemon.stderr());
    let polls = w.aws.calls(GET_PIPELINE_STATE, PIPELINE);
    assert!(
        support::runner::eventually(SOON, || {
            w.aws.calls(GET_PIPELINE_STATE, PIPELINE) > polls
        })
        .await,
        "the loop polls on while the decision waits"
    );
    gate.open();
    let out = daemon.terminate().await;
    assert_no_secrets(&out.all_output());
    assert_eq!(w.put_calls().len(), 1);
    assert_eq!(w.audit().await[0]["result"], "approved");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_slack_checks_the_app_token_and_says_what_to_fix() {
    let w = World::start().await;
    let out = w.env.run(&["test-slack"]).await;
    out.assert_code(0);
    assert_no_secrets(&out.all_output());
    assert!(
        out.stdout
            .contains("Socket Mode (slack.approvals.app_token_env): ok"),
        "{}",
        out.stdout
    );
    assert_eq!(w.api.calls("apps.connections.open").len(), 1);
    assert_eq!(
        w.api.calls("apps.connections.open")[0].bearer(),
        Some(APP_TOKEN)
    );

    w.api
        .push("apps.connections.open", ApiAnswer::error("invalid_auth"));
    let out = w.env.run(&["test-slack"]).await;
    out.assert_code(1);
    assert_no_secrets(&out.all_output());
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Socket Mode"))
        .unwrap_or_default();
    assert!(
        line.contains("FAILED: invalid_auth") && line.contains("connections:write"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_whose_lists_are_empty_gets_no_buttons() {
    let aws = FakeCodePipeline::with_pipelines(&[PIPELINE, "payments-api"]).await;
    let api = FakeSlackApi::start().await;
    let socket = FakeSocketMode::start().await;
    api.set_socket_url(socket.link_url());
    let mut env = TestEnv::new(
        &aws.endpoint(),
        "http://127.0.0.1:9/unused",
        &[PIPELINE, "payments-api"],
    );
    env.spec.webhook = WebhookSource::Nothing;
    env.spec.extra_slack = api.slack_table_lines(CHANNEL);
    env.set_env("SLACK_BOT_TOKEN", BOT_TOKEN);
    env.set_env("SLACK_APP_TOKEN", APP_TOKEN);
    env.write_config();
    let mut text = env.config_text();
    text.push_str(&format!(
        "\n[slack.approvals]\napp_token_env = \"SLACK_APP_TOKEN\"\nallow_users = [\"{LEAD}\"]\n\
         \n[[route]]\nname = \"payments\"\npipelines = [\"payments-*\"]\nchannel = \"C0PAYMENTS2\"\n\
         [route.approvals]\nallow_users = []\nallow_groups = []\n"
    ));
    std::fs::write(&env.config_path, text).expect("config");
    aws.set_state(PIPELINE, Fixture::Waiting);
    aws.set_state("payments-api", Fixture::Waiting);
    env.once().await.assert_code(0);
    let posts = api.calls("chat.postMessage");
    assert_eq!(posts.len(), 2);
    for post in &posts {
        let buttons = approval_id(&post.body);
        match post.body["channel"].as_str() {
            Some("C0PAYMENTS2") => assert!(buttons.is_none(), "deny by default: no buttons"),
            _ => assert!(buttons.is_some(), "LEAD may decide web-app"),
        }
    }
}

/// The daemon's resident memory, current and peak, in KiB (`/proc/PID/status`).
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A peer that floods pings and reads no pongs: the daemon's writes are bounded, so its
/// memory stays small, and it drops that connection as dead and opens another.
#[tokio::test(flavor = "multi_thread")]
async fn a_ping_flood_costs_no_memory_and_the_connection_is_replaced() {
    const LIMIT_KIB: u64 = 64 * 1024;
    let w = World::start().await;
    let (daemon, id) = w.running_with_alert().await;
    w.socket.flood_pings(0);
    // Sampled while the flood lasts (at most 10 s); a daemon past the limit ends the wait.
    let started = std::time::Instant::now();
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(10) && w.socket.connections().len() < 2 {
        let (rss, hwm) = memory_kib(daemon.pid).expect("the daemon's /proc status");
        peak = peak.max(rss).max(hwm);
        if peak > LIMIT_KIB {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, hwm) = memory_kib(daemon.pid).expect("the daemon's /proc status");
    peak = peak.max(hwm);
    assert!(
        peak < LIMIT_KIB,
        "the daemon grew to {peak} KiB under a ping flood"
    );
    w.socket.wait_for_close(0, SOON).await;
    w.socket.wait_for_connection(1, SOON).await;
    w.approve_works_on(1, daemon, &id, "1700000000.001000")
        .await;
}

/// PARALLEL mode: two runs waiting at the same action are two alerts with their own buttons;
/// approving one calls AWS with that run's `externalExecutionId`, and only that run is decided.
#[tokio::test(flavor = "multi_thread")]
async fn approving_one_of_two_parallel_runs_decides_that_one_only() {
    use support::parallel_runs::Run;
    let w = World::start().await;
    w.aws.set_mode(PIPELINE, "PARALLEL");
    let now = support::fixtures::now_epoch();
    let (first, second) = ("ext-token-run-one", "ext-token-run-two");
    w.aws
        .add_run(PIPELINE, Run::waiting("run-one-1111", first, now - 600.0));
    w.aws
        .add_run(PIPELINE, Run::waiting("run-two-2222", second, now - 60.0));
    let daemon = w.env.spawn_run();
    w.socket.wait_for_connection(0, SOON).await;
    let both = support::runner::eventually(SOON, || {
        support::state_db::slack_ts_count(&w.env.state_path) >= 2
    })
    .await;
    assert!(both, "two alerts were not both posted and recorded");
    let alerts = w.api.calls("chat.postMessage");
    let of_second = alerts
        .iter()
        .find(|a| a.body.to_string().contains("run-two-"))
        .expect("the second run's alert names its execution");
    let id = approval_id(&of_second.body).expect("the alert carries buttons");
    w.click(0, LEAD, "approve", &id, "1700000000.000100");
    assert!(
        w.aws
            .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
            .await
    );
    let decided = support::runner::eventually(SOON, || {
        w.aws
            .run_approval_status(PIPELINE, "run-two-2222")
            .as_deref()
            == Some("Succeeded")
    })
    .await;
    assert!(decided, "{:?}", w.put_calls());
    let puts = w.put_calls();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0]["token"], second);
    assert_eq!(
        w.aws
            .run_approval_status(PIPELINE, "run-one-1111")
            .as_deref(),
        Some("InProgress")
    );
    let out = daemon.terminate().await;
    assert_no_secrets(&out.all_output());
}
