//! Running under systemd, with the real binary: the notification protocol (READY, WATCHDOG,
//! STATUS, RELOADING, STOPPING) on a `NOTIFY_SOCKET` the test owns, SIGHUP reloads (valid and
//! invalid), log formats for the journal and for shippers, and `test-slack`.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    Fixture, GET_PIPELINE_STATE, SOON, TestEnv, WebhookSource, World, fake_slack::FakeSlack,
    fake_slack::SlackResponse, runner::binary_path,
};
use tokio::net::UnixDatagram;

/// The listening end of `NOTIFY_SOCKET`: every datagram the daemon sends, in order.
struct NotifySocket {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl NotifySocket {
    /// Binds `notify.sock` in the env's temp dir and points the env's `NOTIFY_SOCKET` at it.
    fn bind(env: &mut TestEnv) -> Self {
        let path = env.path("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        env.set_env("NOTIFY_SOCKET", &path.display().to_string());
        Self {
            socket,
            seen: Vec::new(),
        }
    }

    /// Receives until a datagram satisfies `pred`; returns it. Panics after `timeout`.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + SOON;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no {what} notification within {SOON:?}; got {:#?}",
                        self.seen
                    )
                })
                .expect("recv on notify socket");
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(message.clone());
            if pred(&message) {
                return message;
            }
        }
    }

    async fn wait_for_line(&mut self, line: &str) -> String {
        self.wait_for(line, |m| m.lines().any(|l| l == line)).await
    }
}

fn fields(message: &str) -> Vec<&str> {
    message.lines().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn notifies_ready_pings_the_watchdog_from_the_loop_and_says_stopping() {
    let mut world = World::start(&["web-app"]).await;
    world.aws.set_state("web-app", Fixture::Waiting);
    // One poll an hour: any ping in the next seconds comes from the loop, not from a poll.
    world.env.spec.poll_interval = "1h".into();
    world.env.write_config();
    let mut notify = NotifySocket::bind(&mut world.env);
    world.env.set_env("WATCHDOG_USEC", "2000000");

    let daemon = world.env.spawn_run();
    let ready = notify.wait_for_line("READY=1").await;
    assert!(
        fields(&ready).iter().any(|f| f.starts_with("STATUS=")),
        "{ready:?}"
    );
    assert!(
        !notify.seen.iter().any(|m| m.contains("WATCHDOG=1")),
        "a watchdog ping before READY=1: {:#?}",
        notify.seen
    );

    world.slack.wait_for_delivered(1, SOON).await;
    let status = notify
        .wait_for("a status after the first cycle", |m| {
            m.contains("STATUS=1 approval waiting, last cycle")
        })
        .await;
    assert!(!status.contains("READY=1"), "{status:?}");

    let started = Instant::now();
    for _ in 0..3 {
        let ping = notify.wait_for_line("WATCHDOG=1").await;
        assert!(
            fields(&ping)
                .iter()
                .any(|f| f.starts_with("STATUS=1 approval waiting")),
            "{ping:?}"
        );
    }
    // Three pings at WATCHDOG_USEC/2 = 1 s take about 2-3 s, well under an hour's poll.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        world.aws.calls(GET_PIPELINE_STATE, "web-app"),
        1,
        "pings must not need a poll"
    );

    daemon.signal("TERM").await;
    notify.wait_for_line("STOPPING=1").await;
    let out = daemon.wait(support::runner::SHUTDOWN_TIMEOUT).await;
    out.assert_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_notify_socket_runs_the_same() {
    let mut world = World::start(&["web-app"]).await;
    world.aws.set_state("web-app", Fixture::Waiting);
    world.env.set_env("WATCHDOG_USEC", "2000000");
    world.env.spec.poll_interval = "1h".into();
    world.env.write_config();
    let daemon = world.env.spawn_run();
    world.slack.wait_for_delivered(1, SOON).await;
    daemon.terminate().await.assert_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reads_the_new_config_and_leaves_removed_pipelines_alone() {
    let mut world = World::start(&["alpha", "beta"]).await;
    world.aws.set_state("alpha", Fixture::Waiting);
    world.aws.set_state("beta", Fixture::Waiting);
    world.env.spec.pipelines = vec!["alpha".into()];
    world.env.spec.poll_interval = "1h".into();
    world.env.write_config();
    let mut notify = NotifySocket::bind(&mut world.env);

    let mut daemon = world.env.spawn_run();
    notify.wait_for_line("READY=1").await;
    world.slack.wait_for_delivered(1, SOON).await;
    notify
        .wait_for("the first cycle's status", |m| m.contains("last cycle"))
        .await;
    assert_eq!(world.aws.calls(GET_PIPELINE_STATE, "beta"), 0);

    // alpha is approved meanwhile, but it is no longer watched: nobody is told.
    world.aws.set_state("alpha", Fixture::Approved);
    world.env.spec.pipelines = vec!["beta".into()];
    world.env.write_config();
    daemon.signal("HUP").await;
    notify.wait_for_line("RELOADING=1").await;
    notify.wait_for_line("READY=1").await;
    // A reload polls at once (not an hour later); the cycle's status follows.
    notify
        .wait_for("the status after the reload's cycle", |m| {
            m.starts_with("STATUS=2 approvals waiting, last cycle")
        })
        .await;
    assert_eq!(world.aws.calls(GET_PIPELINE_STATE, "beta"), 1);
    assert_eq!(
        world.aws.calls(GET_PIPELINE_STATE, "alpha"),
        1,
        "a removed pipeline was read"
    );
    let delivered = world.slack.wait_for_delivered(2, SOON).await;
    assert_eq!(delivered.len(), 2, "{delivered:#?}");
    let texts: Vec<&str> = delivered
        .iter()
        .map(|p| p["text"].as_str().unwrap_or_default())
        .collect();
    assert!(texts[1].contains("beta"), "{texts:?}");
    assert!(
        !texts.iter().any(|t| t.contains("approved")),
        "a removed pipeline's approval was resolved: {texts:?}"
    );
    assert!(
        daemon
            .wait_for_stderr("config reloaded", Duration::from_secs(1))
            .await
    );
    let out = daemon.terminate().await;
    out.assert_code(0);
    let reloaded = out.stderr_lines_with(&["config reloaded"]);
    assert!(
        reloaded
            .iter()
            .any(|l| l.contains("alpha") && l.contains("beta")),
        "{reloaded:?}"
    );

    let status = world.env.run(&["status", "--json"]).await;
    status.assert_code(0);
    let doc: Value = serde_json::from_str(&status.stdout).expect("status --json");
    let mut waiting: Vec<&str> = doc["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pipeline"].as_str().unwrap())
        .collect();
    waiting.sort();
    assert_eq!(waiting, ["alpha", "beta"], "alpha's approval stays open");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_config_on_sighup_is_logged_and_the_old_one_kept() {
    let mut world = World::start(&["alpha", "beta"]).await;
    world.env.spec.pipelines = vec!["alpha".into()];
    world.env.write_config();
    let good = world.env.config_text();
    let mut notify = NotifySocket::bind(&mut world.env);
    let mut daemon = world.env.spawn_run();
    notify.wait_for_line("READY=1").await;

    // 1. A bad value: the error names the key.
    let bad = good
        .replace("poll_interval = \"1s\"", "poll_interval = \"100ms\"")
        .replace("name = \"alpha\"", "name = \"beta\"");
    assert_ne!(bad, good);
    world.env.write_raw_config(&bad);
    daemon.signal("HUP").await;
    notify.wait_for_line("RELOADING=1").await;
    notify.wait_for_line("READY=1").await;
    assert!(
        daemon
            .wait_for_stderr("config reload failed", Duration::from_secs(1))
            .await,
        "{}",
        daemon.stderr()
    );
    let failed = support::runner::strip_ansi(&daemon.stderr());
    let line = failed
        .lines()
        .find(|l| l.contains("config reload failed"))
        .unwrap();
    assert!(line.contains("poll_interval"), "{line}");
    assert!(line.contains("ERROR"), "{line}");

    // 2. A secret that cannot be resolved: also refused, naming the key.
    let missing = good
        .replace("SLACK_WEBHOOK_URL", "NO_SUCH_WEBHOOK_VAR")
        .replace("name = \"alpha\"", "name = \"beta\"");
    world.env.write_raw_config(&missing);
    daemon.signal("HUP").await;
    notify.wait_for_line("RELOADING=1").await;
    notify.wait_for_line("READY=1").await;
    assert!(
        daemon
            .wait_for_stderr("slack.webhook_url_env", Duration::from_secs(1))
            .await,
        "{}",
        daemon.stderr()
    );

    // The old config goes on: alpha polled every second, beta never.
    let before = world.aws.calls(GET_PIPELINE_STATE, "alpha");
    assert!(
        world
            .aws
            .wait_for_calls(GET_PIPELINE_STATE, "alpha", before + 2, SOON)
            .await
    );
    assert_eq!(world.aws.calls(GET_PIPELINE_STATE, "beta"), 0);

    // 3. Fixed: applied.
    world
        .env
        .write_raw_config(&good.replace("name = \"alpha\"", "name = \"beta\""));
    daemon.signal("HUP").await;
    notify.wait_for_line("RELOADING=1").await;
    notify.wait_for_line("READY=1").await;
    assert!(
        world
            .aws
            .wait_for_calls(GET_PIPELINE_STATE, "beta", 1, SOON)
            .await
    );
    daemon.terminate().await.assert_code(0);
}

// ---------------------------------------------------------------- log formats

#[tokio::test(flavor = "multi_thread")]
async fn journal_format_has_priorities_and_fields_but_no_time_or_colour() {
    let world = World::start(&["web-app"]).await;
    world.aws.set_state("web-app", Fixture::Waiting);
    let out = world.env.run(&["--log-format", "journal", "once"]).await;
    out.assert_code(0);
    check_journal_lines(&out.stderr);
}

/// `JOURNAL_STREAM` naming the very pipe stderr is: the journal format without asking.
#[tokio::test(flavor = "multi_thread")]
async fn journal_stream_on_stderr_selects_the_journal_format() {
    let world = World::start(&["web-app"]).await;
    world.aws.set_state("web-app", Fixture::Waiting);
    let stderr = run_with_journal_stream(&world.env, &["once"], true);
    check_journal_lines(&stderr);

    // JOURNAL_STREAM inherited, but stderr is something else: plain text.
    world.aws.set_state("web-app", Fixture::Approved);
    let stderr = run_with_journal_stream(&world.env, &["once"], false);
    assert!(!stderr.starts_with('<'), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains(" INFO ")),
        "expected the text format: {stderr}"
    );
}

fn check_journal_lines(stderr: &str) {
    assert!(!stderr.contains('\u{1b}'), "colour codes: {stderr}");
    let mut waiting = None;
    for line in stderr.lines() {
        let rest = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or_else(|| panic!("no syslog priority prefix: {line:?}"));
        assert!(
            !rest.starts_with(|c: char| c.is_ascii_digit()),
            "a timestamp: {line:?}"
        );
        assert!(!rest.contains(" INFO "), "a level word: {line:?}");
        if rest.starts_with("approval waiting") {
            waiting = Some(line.to_owned());
        }
    }
    let waiting = waiting.unwrap_or_else(|| panic!("no 'approval waiting' line: {stderr}"));
    assert!(waiting.starts_with("<6>"), "{waiting}");
    for field in ["pipeline=web-app", "stage=", "action="] {
        assert!(waiting.contains(field), "{waiting} lacks {field}");
    }
}

/// Runs the binary with stderr on a pipe, `JOURNAL_STREAM` set to that pipe's
/// `device:inode` (`matching`) or to another file's; returns stderr.
fn run_with_journal_stream(env: &TestEnv, args: &[&str], matching: bool) -> String {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    let identity = |meta: std::fs::Metadata| format!("{}:{}", meta.dev(), meta.ino());
    let stream = if matching {
        let fd: std::os::fd::OwnedFd = writer.try_clone().expect("dup").into();
        identity(std::fs::File::from(fd).metadata().expect("fstat pipe"))
    } else {
        identity(std::fs::metadata(&env.config_path).expect("stat config"))
    };
    let mut command = std::process::Command::new(binary_path());
    command
        .arg("--config")
        .arg(&env.config_path)
        .args(args)
        .env_clear()
        .envs(&env.env)
        .env("JOURNAL_STREAM", &stream)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(writer);
    let mut child = command.spawn().expect("spawn");
    drop(command);
    let pump = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = reader.read_to_string(&mut text);
        text
    });
    let status = child.wait().expect("wait");
    let stderr = pump.join().expect("reader thread");
    support::runner::assert_no_secret("stderr", &stderr);
    assert_eq!(status.code(), Some(0), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn json_format_is_one_object_per_line_with_fields_on_top() {
    let world = World::start(&["web-app"]).await;
    world.aws.set_state("web-app", Fixture::Waiting);
    let out = world.env.run(&["--log-format", "json", "once"]).await;
    out.assert_code(0);
    let mut waiting = None;
    for line in out.stderr.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        if v["message"] == "approval waiting" {
            waiting = Some(v);
        }
    }
    let waiting = waiting.expect("an 'approval waiting' event");
    assert_eq!(waiting["pipeline"], "web-app");
    assert_eq!(waiting["level"], "INFO");
    assert!(waiting["stage"].is_string() && waiting["action"].is_string());

    let env_var = {
        let mut env = TestEnv::new(&world.aws.endpoint(), &world.slack.url(), &["web-app"]);
        env.set_env("APPROVAL_WATCH_LOG_FORMAT", "json");
        env.run(&["check-config"]).await
    };
    env_var.assert_code(0);
    assert!(
        env_var
            .stderr
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{}",
        env_var.stderr
    );
}

// ---------------------------------------------------------------- test-slack

#[tokio::test(flavor = "multi_thread")]
async fn test_slack_posts_a_marked_message_to_every_destination() {
    let mut world = World::start(&["web-app", "payments-api"]).await;
    let payments = FakeSlack::start().await;
    world.env.set_env("SLACK_PAYMENTS_WEBHOOK", &payments.url());
    let config = format!(
        "{}\n[[route]]\nname = \"payments\"\npipelines = [\"payments-*\"]\n\
         webhook_url_env = \"SLACK_PAYMENTS_WEBHOOK\"\nmention = \"<!subteam^S0PAYMENTS>\"\n",
        world.env.config_text()
    );
    world.env.write_raw_config(&config);

    let out = world.env.run(&["test-slack"]).await;
    out.assert_code(0);
    let stdout = out.stdout_plain();
    assert!(stdout.contains("default (slack): ok"), "{stdout}");
    assert!(stdout.contains("payments (route[0]): ok"), "{stdout}");
    for (slack, route) in [(&world.slack, "default"), (&payments, "payments")] {
        let delivered = slack.delivered();
        assert_eq!(delivered.len(), 1, "{delivered:?}");
        let text = delivered[0]["text"].as_str().unwrap();
        assert!(text.contains("[TEST]"), "{text}");
        assert!(text.contains(route), "{text}");
        // A test pages nobody.
        assert!(!delivered[0].to_string().contains("subteam"), "{text}");
    }
    assert_eq!(world.aws.total_calls(GET_PIPELINE_STATE), 0);
    assert!(world.env.state_bytes().is_none(), "test-slack wrote state");

    // One destination refuses: reported, the other still tried, exit 1.
    payments.set_default(SlackResponse::status(404, "no_service"));
    let out = world.env.run(&["test-slack"]).await;
    out.assert_code(1);
    let stdout = out.stdout_plain();
    assert!(stdout.contains("default (slack): ok"), "{stdout}");
    assert!(
        stdout.contains("payments (route[0]): FAILED: HTTP 404: no_service"),
        "{stdout}"
    );
    assert_eq!(world.slack.delivered().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_slack_without_a_secret_is_a_config_error() {
    let mut world = World::start(&["web-app"]).await;
    world.env.spec.webhook = WebhookSource::Env {
        var: "SLACK_WEBHOOK_URL".into(),
        url: None,
    };
    world.env.write_config();
    let out = world.env.run(&["test-slack"]).await;
    out.assert_code(2);
    out.assert_mentions("slack.webhook_url_env");
    assert_eq!(world.slack.request_count(), 0);
}

// ---------------------------------------------------------------- as the unit runs it

/// `LoadCredential=` and `StateDirectory=`: the webhook from `$CREDENTIALS_DIRECTORY`, the
/// database in `$STATE_DIRECTORY`, nothing in the environment or the config but names.
#[tokio::test(flavor = "multi_thread")]
async fn reads_the_webhook_credential_and_keeps_state_in_the_state_directory() {
    let mut world = World::start(&["web-app"]).await;
    world.aws.set_state("web-app", Fixture::Waiting);
    let credentials = world.env.path("credentials");
    let state = world.env.path("state");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::create_dir(&state).unwrap();
    std::fs::write(
        credentials.join("slack-webhook"),
        format!("{}\n", world.slack.url()),
    )
    .unwrap();
    world.env.remove_env("SLACK_WEBHOOK_URL");
    world
        .env
        .set_env("CREDENTIALS_DIRECTORY", &credentials.display().to_string());
    world
        .env
        .set_env("STATE_DIRECTORY", &state.display().to_string());
    world.env.write_raw_config(
        "poll_interval = \"1s\"\n\n[aws]\nregion = \"us-east-1\"\n\n[slack]\n\
         webhook_url_credential = \"slack-webhook\"\n\n[[pipeline]]\nname = \"web-app\"\n",
    );

    world.env.run(&["check-config"]).await.assert_code(0);
    world.env.run(&["test-slack"]).await.assert_code(0);
    world.env.once().await.assert_code(0);
    assert_eq!(world.slack.delivered_count(), 2);
    assert!(state.join("state.db").exists());
    assert!(
        world.env.state_bytes().is_none(),
        "state outside STATE_DIRECTORY"
    );
}
