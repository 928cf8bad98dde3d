//! The command-line contract: `check-config`, `status [--json]`, `once --dry-run`, usage errors,
//! where the config comes from, and the state database's version guard.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::fixtures::{self, APPROVAL_ACTION, APPROVAL_STAGE, review_link};
use support::payload::{assert_waiting_alert, find_payload};
use support::runner::file_fingerprint;
use support::{Fixture, SOON, TestEnv, WEBHOOK_PATH, WEBHOOK_SECRET, WebhookSource, World};

// ---------------------------------------------------------------- check-config

#[tokio::test(flavor = "multi_thread")]
async fn check_config_summarises_without_the_secret() {
    let w = World::start(&["web-app", "api"]).await;
    let out = w.env.run(&["check-config"]).await;
    out.assert_code(0);
    let summary = out.stdout_plain();
    for needle in [
        "web-app",
        "api",
        "us-east-1",
        &w.env.state_path.display().to_string(),
        "SLACK_WEBHOOK_URL",
    ] {
        assert!(
            summary.contains(needle),
            "summary on stdout lacks {needle:?}\n{}",
            out.describe()
        );
    }
    assert_eq!(w.slack.request_count(), 0, "check-config posted to Slack");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_accepts_a_full_example() {
    let w = World::start(&["web-app"]).await;
    w.env.write_raw_config(&format!(
        r##"
poll_interval = "30s"
state_path = "{{state_path}}"

[aws]
region = "eu-west-1"

[slack]
webhook_url = "https://hooks.slack.com{WEBHOOK_PATH}"
username = "CodePipeline"
icon_emoji = ":aws:"
channel = "#deployments"

[reminders]
after = "30m"
every = "1h"
max = 8

[[pipeline]]
name = "web-app"

[[pipeline]]
name = "api.v2@team_x-1"
region = "us-east-1"
"##
    ));
    let out = w.env.run(&["check-config"]).await;
    out.assert_code(0);
    out.assert_mentions("eu-west-1");
    out.assert_mentions("api.v2@team_x-1");
}

/// One bad config: what to change, and what the error must name.
struct Bad {
    what: &'static str,
    toml: String,
    /// Environment changes: (key, Some(value)) sets, (key, None) removes.
    env: Vec<(&'static str, Option<String>)>,
    names: Vec<&'static str>,
}

fn good_config(slack_source: &str, extra_top: &str, extra_slack: &str, pipelines: &str) -> String {
    format!(
        "poll_interval = \"1s\"\nstate_path = \"{{state_path}}\"\n{extra_top}\n\n[aws]\nregion = \"us-east-1\"\n\n[slack]\n{slack_source}\n{extra_slack}\n{pipelines}\n"
    )
}

const ENV_SOURCE: &str = "webhook_url_env = \"SLACK_WEBHOOK_URL\"";
const ONE_PIPELINE: &str = "[[pipeline]]\nname = \"web-app\"\n";

fn bad_configs() -> Vec<Bad> {
    let plain = |what, toml: String, names: Vec<&'static str>| Bad {
        what,
        toml,
        env: vec![],
        names,
    };
    vec![
        plain(
            "unknown top-level key",
            good_config(ENV_SOURCE, "poll_intervall = \"1s\"", "", ONE_PIPELINE),
            vec!["poll_intervall"],
        ),
        plain(
            "unknown key in [aws]",
            good_config(ENV_SOURCE, "", "", ONE_PIPELINE)
                .replace("[aws]\n", "[aws]\nregoin = \"us-east-1\"\n"),
            vec!["regoin"],
        ),
        plain(
            "unknown key in [slack]",
            good_config(ENV_SOURCE, "", "colour = \"red\"", ONE_PIPELINE),
            vec!["colour"],
        ),
        plain(
            "unknown key in [[pipeline]]",
            good_config(
                ENV_SOURCE,
                "",
                "",
                "[[pipeline]]\nname = \"web-app\"\nstagee = \"x\"\n",
            ),
            vec!["stagee"],
        ),
        plain(
            "duration that does not parse",
            good_config(ENV_SOURCE, "", "", ONE_PIPELINE)
                .replace("poll_interval = \"1s\"", "poll_interval = \"soon\""),
            vec!["poll_interval"],
        ),
        plain(
            "poll interval under 1s",
            good_config(ENV_SOURCE, "", "", ONE_PIPELINE)
                .replace("poll_interval = \"1s\"", "poll_interval = \"500ms\""),
            vec!["poll_interval"],
        ),
        plain(
            "empty pipeline list",
            good_config(ENV_SOURCE, "pipeline = []", "", ""),
            vec!["pipeline"],
        ),
        plain(
            "no pipeline at all",
            good_config(ENV_SOURCE, "", "", ""),
            vec!["pipeline"],
        ),
        plain(
            "pipeline name with a space and !",
            good_config(ENV_SOURCE, "", "", "[[pipeline]]\nname = \"web app!\"\n"),
            vec!["pipeline", "name"],
        ),
        plain(
            "pipeline name of 101 characters",
            good_config(
                ENV_SOURCE,
                "",
                "",
                &format!("[[pipeline]]\nname = \"{}\"\n", "a".repeat(101)),
            ),
            vec!["pipeline", "name"],
        ),
        plain(
            "empty pipeline name",
            good_config(ENV_SOURCE, "", "", "[[pipeline]]\nname = \"\"\n"),
            vec!["pipeline", "name"],
        ),
        Bad {
            what: "webhook env var not set",
            toml: good_config(ENV_SOURCE, "", "", ONE_PIPELINE),
            env: vec![("SLACK_WEBHOOK_URL", None)],
            names: vec!["webhook_url_env"],
        },
        plain(
            "webhook file that cannot be read",
            good_config(
                "webhook_url_file = \"{dir}/no-such-webhook-file\"",
                "",
                "",
                ONE_PIPELINE,
            ),
            vec!["webhook_url_file"],
        ),
        plain(
            "plain http webhook to a non-loopback host",
            good_config(
                &format!("webhook_url = \"http://hooks.slack.com{WEBHOOK_PATH}\""),
                "",
                "",
                ONE_PIPELINE,
            ),
            vec!["webhook_url"],
        ),
        Bad {
            what: "plain http webhook to a non-loopback host, from the env",
            toml: good_config(ENV_SOURCE, "", "", ONE_PIPELINE),
            env: vec![(
                "SLACK_WEBHOOK_URL",
                Some(format!("http://hooks.slack.com{WEBHOOK_PATH}")),
            )],
            names: vec!["webhook_url_env"],
        },
        plain(
            "webhook that is not a URL",
            good_config(
                &format!("webhook_url = \"hooks.slack.com{WEBHOOK_PATH}\""),
                "",
                "",
                ONE_PIPELINE,
            ),
            vec!["webhook_url"],
        ),
        plain(
            "two webhook sources",
            good_config(
                &format!("{ENV_SOURCE}\nwebhook_url = \"https://hooks.slack.com{WEBHOOK_PATH}\""),
                "",
                "",
                ONE_PIPELINE,
            ),
            vec!["webhook_url"],
        ),
        plain(
            "no webhook source",
            good_config("", "", "", ONE_PIPELINE),
            vec!["webhook_url"],
        ),
        plain(
            "reminder interval that does not parse",
            good_config(ENV_SOURCE, "", "", ONE_PIPELINE)
                + "\n[reminders]\nafter = \"30m\"\nevery = \"often\"\nmax = 8\n",
            vec!["every"],
        ),
        plain(
            "unknown key in [reminders]",
            good_config(ENV_SOURCE, "", "", ONE_PIPELINE)
                + "\n[reminders]\nafter = \"30m\"\nevery = \"1h\"\nmaximum = 8\n",
            vec!["maximum"],
        ),
        plain(
            "not TOML",
            "poll_interval = \"1s\nstate_path = [".to_owned(),
            vec![],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_rejects_bad_configs_with_exit_2_naming_the_key() {
    let w = World::start(&["web-app"]).await;
    let mut failures = Vec::new();
    for bad in bad_configs() {
        let mut env = TestEnv::new(&w.aws.endpoint(), &w.slack.url(), &["web-app"]);
        for (k, v) in &bad.env {
            match v {
                Some(v) => env.set_env(k, v),
                None => env.remove_env(k),
            }
        }
        env.write_raw_config(&bad.toml);
        let out = env.run(&["check-config"]).await;
        if out.code != Some(2) {
            failures.push(format!(
                "{}: exit {:?} (want 2)\n{}",
                bad.what,
                out.code,
                out.describe()
            ));
            continue;
        }
        let text = out.all_output();
        for name in &bad.names {
            if !text.contains(name) {
                failures.push(format!(
                    "{}: error does not name {name:?}\n{}",
                    bad.what,
                    out.describe()
                ));
            }
        }
    }
    assert_eq!(w.slack.request_count(), 0);
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn once_and_status_with_a_bad_config_exit_2() {
    let mut w = World::start(&["web-app"]).await;
    w.env.spec.poll_interval = "soon".into();
    w.env.write_config();
    for args in [&["once"][..], &["once", "--dry-run"], &["status"]] {
        let out = w.env.run(args).await;
        out.assert_code(2);
        out.assert_mentions("poll_interval");
    }
    assert!(w.aws.requests().is_empty());
    assert_eq!(w.slack.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_with_an_invalid_config_exits_before_doing_anything() {
    let mut w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.env.spec.pipelines = vec!["web app!".into()];
    w.env.write_config();

    let out = w.env.spawn_run().wait(SOON).await;
    assert_ne!(out.code, Some(0), "{}", out.describe());
    assert!(out.code.is_some(), "{}", out.describe());
    assert!(w.aws.requests().is_empty(), "it read AWS");
    assert_eq!(w.slack.request_count(), 0);
    assert!(w.env.state_files().is_empty(), "it created the state file");
}

// ---------------------------------------------------------------- usage and config location

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2() {
    let w = World::start(&["web-app"]).await;
    for args in [
        &[][..],
        &["frobnicate"],
        &["once", "--bogus"],
        &["status", "--yaml"],
        &["audit", "--since", "a week"],
        &["check-config", "extra"],
    ] {
        let out = w.env.run(args).await;
        out.assert_code(2);
    }
    let help = w.env.run_without_config_flag(&["--help"]).await;
    help.assert_code(0);
    for cmd in ["run", "once", "check-config", "status", "audit"] {
        help.assert_mentions(cmd);
    }
    assert!(w.aws.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn config_path_falls_back_to_approval_watch_config() {
    let mut w = World::start(&["web-app"]).await;
    let path = w.env.config_path.display().to_string();
    w.env.set_env("APPROVAL_WATCH_CONFIG", &path);
    let out = w.env.run_without_config_flag(&["check-config"]).await;
    out.assert_code(0);
    out.assert_mentions("web-app");

    // --config wins over the env var.
    w.env
        .set_env("APPROVAL_WATCH_CONFIG", "/nonexistent/approval-watch.toml");
    let out = w.env.run(&["check-config"]).await;
    out.assert_code(0);

    // Neither: the default path, which does not exist here.
    w.env.remove_env("APPROVAL_WATCH_CONFIG");
    let out = w.env.run_without_config_flag(&["check-config"]).await;
    out.assert_code(2);
    out.assert_mentions("/etc/approval-watch/config.toml");

    // A --config that does not exist names it.
    let missing = w.env.path("missing.toml").display().to_string();
    let out = w
        .env
        .run_without_config_flag(&["--config", &missing, "check-config"])
        .await;
    out.assert_code(2);
    out.assert_mentions(&missing);
}

// ---------------------------------------------------------------- status

/// Parses `status --json` stdout: one JSON document, or JSON lines (collected into an array).
fn parse_json_output(stdout: &str) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(stdout) {
        return v;
    }
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{stdout}"))
        })
        .collect();
    Value::Array(lines)
}

/// The smallest object in `status --json` that describes the approval of `pipeline`.
/// The `waiting` entry of `status --json` for `pipeline`, at the documented place.
fn status_entry<'a>(json: &'a Value, pipeline: &str) -> Option<&'a serde_json::Map<String, Value>> {
    json["waiting"]
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .find(|o| {
            o["pipeline"] == pipeline
                && o["stage"] == APPROVAL_STAGE
                && o["action"] == APPROVAL_ACTION
        })
}

fn utc_date(epoch: f64) -> String {
    jiff::Timestamp::from_second(epoch as i64)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_lists_waiting_approvals_for_people_and_scripts() {
    let w = World::start(&["web-app", "api"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws.set_state("api", Fixture::Waiting);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 2);

    let human = w.env.run(&["status"]).await;
    human.assert_code(0);
    let text = human.stdout_plain();
    let since_date = utc_date(w.aws.waiting_since("web-app"));
    for needle in [
        "web-app",
        "api",
        APPROVAL_STAGE,
        APPROVAL_ACTION,
        since_date.as_str(),
    ] {
        assert!(
            text.contains(needle),
            "status lacks {needle:?}\n{}",
            human.describe()
        );
    }

    let out = w.env.run(&["status", "--json"]).await;
    out.assert_code(0);
    let json = parse_json_output(&out.stdout);
    let since = w.aws.waiting_since("web-app");
    let entry = status_entry(&json, "web-app")
        .unwrap_or_else(|| panic!("no entry for web-app in {json:#}"));
    let waiting_since: jiff::Timestamp = entry["waiting_since"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no RFC 3339 waiting_since in {entry:#?}"));
    assert!(
        (waiting_since.as_millisecond() as f64 / 1000.0 - since).abs() < 2.0,
        "waiting_since {waiting_since} is not {since} in {entry:#?}"
    );
    assert_eq!(entry["alerts_sent"], 1, "{entry:#?}");
    assert_eq!(entry["reminders_sent"], 0, "{entry:#?}");
    assert!(
        status_entry(&json, "api").is_some(),
        "no entry for api in {json:#}"
    );

    // Once approved, it is no longer listed as waiting.
    w.aws.set_state("web-app", Fixture::Approved);
    w.env.once().await.assert_code(0);
    let out = w.env.run(&["status", "--json"]).await;
    out.assert_code(0);
    let json = parse_json_output(&out.stdout);
    assert!(status_entry(&json, "web-app").is_none(), "{json:#}");
    assert!(status_entry(&json, "api").is_some(), "{json:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_with_nothing_waiting_is_empty_and_succeeds() {
    let w = World::start(&["web-app"]).await;
    w.env.once().await.assert_code(0);
    let out = w.env.run(&["status", "--json"]).await;
    out.assert_code(0);
    let json = parse_json_output(&out.stdout);
    assert!(status_entry(&json, "web-app").is_none(), "{json:#}");
    w.env.run(&["status"]).await.assert_code(0);
}

// ---------------------------------------------------------------- dry run

/// The state database as far as its content goes: the main file (mtime, size, bytes) and the WAL's
/// bytes. SQLite's `-shm` index and a lock file beside the database are not content.
struct StateSnapshot {
    main: Option<(std::time::SystemTime, u64, Vec<u8>)>,
    wal: Vec<u8>,
}

impl StateSnapshot {
    fn take(env: &TestEnv) -> Self {
        let mut wal_path = env.state_path.clone().into_os_string();
        wal_path.push("-wal");
        StateSnapshot {
            main: file_fingerprint(&env.state_path),
            wal: std::fs::read(wal_path).unwrap_or_default(),
        }
    }

    /// Same main file, and no new WAL content (an empty WAL left by a reader is no change).
    #[track_caller]
    fn assert_same_content_as(&self, before: &StateSnapshot, who: &str) {
        let brief = |s: &StateSnapshot| s.main.as_ref().map(|m| (m.0, m.1));
        assert!(
            self.main == before.main,
            "{who} changed the database file: {:?} → {:?}",
            brief(before),
            brief(self)
        );
        assert!(
            self.wal.is_empty() || self.wal == before.wal,
            "{who} wrote {} bytes to the WAL",
            self.wal.len()
        );
    }
}

/// The Slack payloads printed by `once --dry-run`; every stdout line must be JSON.
fn dry_run_payloads(out: &support::Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("dry-run line is not JSON ({e}): {l}\n{}", out.describe())
            });
            find_payload(&v)
                .unwrap_or_else(|| panic!("dry-run line holds no Slack payload: {l}"))
                .clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_payloads_without_sending_or_writing_state() {
    let w = World::start(&["web-app", "api"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);

    // On a fresh machine: prints the alert, sends nothing, creates no state file.
    let out = w.env.dry_run().await;
    out.assert_code(0);
    let payloads = dry_run_payloads(&out);
    assert_eq!(payloads.len(), 1, "{}", out.describe());
    assert_waiting_alert(&payloads[0], "web-app", fixtures::FIXTURE_TOKEN);
    assert_eq!(w.slack.request_count(), 0);
    assert!(
        w.env.state_files().is_empty(),
        "dry-run created {:?}",
        w.env.state_files()
    );

    // Real cycle, then api starts waiting: the dry run shows only what is due (api's alert).
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.request_count(), 1);
    let before = StateSnapshot::take(&w.env);
    assert!(before.main.is_some());
    w.aws.set_state("api", Fixture::Waiting);
    let api_token = w.aws.token("api");

    let out = w.env.dry_run().await;
    out.assert_code(0);
    let payloads = dry_run_payloads(&out);
    assert_eq!(payloads.len(), 1, "{}", out.describe());
    assert_waiting_alert(&payloads[0], "api", &api_token);
    assert_eq!(w.slack.request_count(), 1);
    StateSnapshot::take(&w.env).assert_same_content_as(&before, "dry-run");

    // It did not mark anything: the real cycle still sends api's alert.
    w.env.once().await.assert_code(0);
    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 2);
    assert!(support::payload::mentions(
        &delivered[1],
        &review_link("api", &api_token)
    ));
}

// ---------------------------------------------------------------- state database

#[tokio::test(flavor = "multi_thread")]
async fn state_database_is_wal_and_versioned() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.env.once().await.assert_code(0);
    let db = rusqlite::Connection::open(&w.env.state_path).unwrap();
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version >= 1, "user_version {version}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_from_a_newer_version_is_refused_and_left_untouched() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    {
        let db = rusqlite::Connection::open(&w.env.state_path).unwrap();
        db.execute_batch(
            "CREATE TABLE from_the_future (x INTEGER); INSERT INTO from_the_future VALUES (42); PRAGMA user_version = 999;",
        )
        .unwrap();
    }
    let before = StateSnapshot::take(&w.env);
    // Let a change of mtime be visible.
    tokio::time::sleep(Duration::from_millis(20)).await;

    for args in [&["once"][..], &["status"], &["status", "--json"]] {
        let out = w.env.run(args).await;
        assert!(
            out.code.is_some_and(|c| c != 0),
            "{args:?} accepted a database of version 999\n{}",
            out.describe()
        );
        out.assert_mentions("version");
    }
    let out = w.env.spawn_run().wait(SOON).await;
    assert!(
        out.code.is_some_and(|c| c != 0),
        "run accepted a database of version 999\n{}",
        out.describe()
    );

    assert_eq!(w.slack.request_count(), 0);
    StateSnapshot::take(&w.env).assert_same_content_as(&before, "a refused database");
}

// ---------------------------------------------------------------- secrets

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_never_shows_even_when_slack_rejects_it() {
    // Errors about the webhook (bad status, connection refused) must not print its URL.
    let mut w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack
        .set_default(support::SlackResponse::status(404, "no_service"));
    w.env.once().await.assert_code(1);

    // A webhook on a closed port: a connection error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}{WEBHOOK_PATH}");
    assert!(url.contains(WEBHOOK_SECRET));
    w.env.spec.webhook = WebhookSource::Env {
        var: "SLACK_WEBHOOK_URL".into(),
        url: Some(url),
    };
    w.aws
        .set_waiting("web-app", "5ec2e700-0000-4000-8000-000000000001");
    w.env.write_config();
    let out = w.env.once().await;
    out.assert_code(1);
    w.env.run(&["status"]).await.assert_code(0);
    w.env.run(&["status", "--json"]).await.assert_code(0);
    w.env.run(&["check-config"]).await.assert_code(0);
    // (The runner checked every output above for the secret.)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_config_file_is_one_clear_error() {
    let w = World::start(&["web-app"]).await;
    let missing = w.env.path("nowhere.toml");
    let out = w
        .env
        .run_without_config_flag(&["--config", &missing.display().to_string(), "check-config"])
        .await;
    out.assert_code(2);
    let stderr = out.stderr_plain();
    assert!(stderr.contains("nowhere.toml"), "{}", out.describe());
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "the cause is said once: {}",
        out.describe()
    );
}
