//! Secret files that are not what the key promised: a FIFO, `/dev/zero`, a directory, a huge
//! file. Each is a config error naming the key at once, never a hang or gigabytes read; a
//! secret open to group or others is warned about; and a reload facing a FIFO fails without
//! keeping SIGTERM from stopping the daemon. Also: a `state_path` whose directory is missing.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::runner::{Output, eventually, strip_ansi};
use support::{Fixture, GET_PIPELINE_STATE, SOON, TestEnv, WebhookSource, World};

/// "At once": far below anything a blocked read would take.
const AT_ONCE: Duration = Duration::from_secs(10);
const KEY: &str = "slack.webhook_url_file";

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn use_secret_file(env: &mut TestEnv, path: PathBuf, url: Option<String>) {
    env.spec.webhook = WebhookSource::File { path, url };
    env.write_config();
}

async fn check_config_at_once(env: &TestEnv) -> Output {
    tokio::time::timeout(AT_ONCE, env.run(&["check-config"]))
        .await
        .unwrap_or_else(|_| panic!("check-config did not finish within {AT_ONCE:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_that_is_not_a_small_regular_file_is_a_config_error_at_once() {
    let mut w = World::start(&["web-app"]).await;
    let fifo = w.env.path("webhook.fifo");
    mkfifo(&fifo);
    let big = w.env.path("webhook.big");
    let mut text = format!("{}\n", w.slack.url()).into_bytes();
    text.resize(64 * 1024 + 1, b' ');
    std::fs::write(&big, text).unwrap();
    let dir = w.env.path("webhook.d");
    std::fs::create_dir(&dir).unwrap();
    for (path, says) in [
        (fifo, "FIFO"),
        (PathBuf::from("/dev/zero"), "character device"),
        (dir, "directory"),
        (big, "larger than 65536 bytes"),
    ] {
        use_secret_file(&mut w.env, path.clone(), None);
        let out = check_config_at_once(&w.env).await;
        out.assert_code(2)
            .assert_mentions(KEY)
            .assert_mentions(says);
        out.assert_mentions(&path.display().to_string());
        assert!(!out.stderr.contains("panicked"), "{}", out.describe());
        // The daemon refuses it the same way, before doing anything.
        let out = tokio::time::timeout(AT_ONCE, w.env.once())
            .await
            .expect("once did not finish at once");
        out.assert_code(2).assert_mentions(KEY);
    }
    assert_eq!(w.slack.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_file_open_to_group_or_others_is_warned_about_without_its_content() {
    let mut w = World::start(&["web-app"]).await;
    let secret = w.env.path("webhook");
    use_secret_file(&mut w.env, secret.clone(), Some(w.slack.url()));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = check_config_at_once(&w.env).await;
    out.assert_code(0);
    assert!(
        out.stderr_lines_with(&["open to group or others"])
            .is_empty(),
        "{}",
        out.describe()
    );

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = check_config_at_once(&w.env).await;
    out.assert_code(0);
    let warnings = out.stderr_lines_with(&["WARN", "open to group or others"]);
    assert_eq!(warnings.len(), 1, "{}", out.describe());
    assert!(
        warnings[0].contains(KEY) && warnings[0].contains(&secret.display().to_string()),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("0640"), "{}", warnings[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_swapped_in_before_a_reload_fails_it_and_sigterm_still_stops_the_daemon() {
    let mut w = World::start(&["web-app"]).await;
    let secret = w.env.path("webhook");
    use_secret_file(&mut w.env, secret.clone(), Some(w.slack.url()));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    w.aws.set_state("web-app", Fixture::NeverReached);
    let mut daemon = w.env.spawn_run();
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", 1, SOON)
            .await
    );

    std::fs::remove_file(&secret).unwrap();
    mkfifo(&secret);
    daemon.signal("HUP").await;
    assert!(
        daemon
            .wait_for_stderr("config reload failed", AT_ONCE)
            .await,
        "the reload did not fail at once\n{}",
        daemon.stderr()
    );
    // The daemon goes on polling with the config it had.
    let seen = w.aws.calls(GET_PIPELINE_STATE, "web-app");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", seen + 1, SOON)
            .await
    );

    // The config file itself becomes a FIFO: the reload fails the same way.
    let config_text = w.env.config_text();
    std::fs::remove_file(&w.env.config_path).unwrap();
    mkfifo(&w.env.config_path);
    daemon.signal("HUP").await;
    let failed_twice = eventually(AT_ONCE, || {
        strip_ansi(&daemon.stderr())
            .matches("config reload failed")
            .count()
            == 2
    })
    .await;
    assert!(failed_twice, "{}", daemon.stderr());
    let out = daemon.stop("TERM", AT_ONCE).await;
    out.assert_code(0);
    let failures = out.stderr_lines_with(&["config reload failed"]);
    assert_eq!(failures.len(), 2, "{}", out.describe());
    assert!(
        failures[0].contains(KEY) && failures[0].contains("FIFO"),
        "{}",
        failures[0]
    );
    assert!(failures[1].contains("FIFO"), "{}", failures[1]);
    std::fs::remove_file(&w.env.config_path).unwrap();
    std::fs::write(&w.env.config_path, config_text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_refuses_a_state_path_whose_directory_is_missing() {
    let mut w = World::start(&["web-app"]).await;
    let missing = w.env.path("no-such-dir");
    w.env.spec.state_path = missing.join("state.db");
    w.env.write_config();
    let out = check_config_at_once(&w.env).await;
    out.assert_code(2)
        .assert_mentions("state_path")
        .assert_mentions(&missing.display().to_string())
        .assert_mentions("does not exist");
    assert!(!missing.exists(), "check-config created the directory");

    std::fs::create_dir(&missing).unwrap();
    check_config_at_once(&w.env).await.assert_code(0);
}
