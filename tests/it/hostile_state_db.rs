//! The state database deleted under a running daemon (`rm state.db state.db-wal state.db-shm`):
//! the next cycle notices, says so at ERROR, and puts the database back at its path from the
//! connection still open, so a restart announces nothing a second time.

use crate::support;

use std::path::PathBuf;

use support::payload::review_tokens;
use support::runner::eventually;
use support::{Fixture, GET_PIPELINE_STATE, SOON, World, state_db};

fn companion(w: &World, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", w.env.state_path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_state_database_is_put_back_and_a_restart_announces_nothing_again() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    let mut daemon = w.env.spawn_run();
    w.slack.wait_for_delivered(1, SOON).await;
    let token = w.aws.token("web-app");
    // The delivered mark is written after Slack's answer: wait for it before deleting.
    assert!(
        eventually(SOON, || state_db::outbox(&w.env.state_path)
            .iter()
            .any(|r| r.state == "delivered"))
        .await
    );

    // `rm state.db*`: the lock file goes too.
    for suffix in ["", "-wal", "-shm", ".lock"] {
        std::fs::remove_file(companion(&w, suffix))
            .unwrap_or_else(|e| panic!("remove state.db{suffix}: {e}"));
    }
    assert!(
        daemon
            .wait_for_stderr(
                "the state database was deleted or replaced while open",
                SOON
            )
            .await,
        "no error about the deleted database\n{}",
        daemon.stderr()
    );
    assert!(
        eventually(SOON, || w.env.state_path.exists()).await,
        "the database was not put back"
    );
    // Cycles go on against the file at the path.
    let seen = w.aws.calls(GET_PIPELINE_STATE, "web-app");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", seen + 2, SOON)
            .await
    );
    // The lock was taken again: a second daemon is still refused.
    let second = w.env.spawn_run().wait(SOON).await;
    assert_ne!(second.code, Some(0), "{}", second.describe());
    assert!(
        second
            .stderr_plain()
            .contains("in use by another approval-watch"),
        "{}",
        second.describe()
    );
    let restored: Vec<(String, String)> = state_db::outbox(&w.env.state_path)
        .into_iter()
        .map(|r| (r.token, r.state))
        .collect();
    assert_eq!(restored, [(token.clone(), "delivered".to_owned())]);

    let out = daemon.terminate().await;
    out.assert_code(0);
    assert_eq!(
        out.stderr_lines_with(&["ERROR", "lock file was deleted or replaced"])
            .len(),
        1,
        "{}",
        out.describe()
    );
    let errors = out.stderr_lines_with(&["ERROR", "the state database was deleted or replaced"]);
    assert_eq!(errors.len(), 1, "{}", out.describe());
    assert!(
        errors[0].contains("state.db deleted") && errors[0].contains("state.db-wal deleted"),
        "{}",
        errors[0]
    );
    assert_eq!(state_db::integrity_check(&w.env.state_path), "ok");

    // A restart finds everything recorded: the waiting approval is not announced again.
    let mut again = w.env.spawn_run();
    let seen = w.aws.calls(GET_PIPELINE_STATE, "web-app");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", seen + 3, SOON)
            .await
    );
    assert!(again.try_exit_code().is_none(), "{}", again.stderr());
    let out = again.terminate().await;
    out.assert_code(0);
    let announced: Vec<String> = w.slack.delivered().iter().flat_map(review_tokens).collect();
    assert_eq!(announced, [token], "announced again after the restart");
    assert!(
        out.stderr_lines_with(&["approval waiting"]).is_empty(),
        "{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_database_that_cannot_be_put_back_stops_the_daemon_with_the_reason() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    let state_dir = w.env.path("state");
    std::fs::create_dir(&state_dir).unwrap();
    let mut env_spec = w.env.spec.clone();
    env_spec.state_path = state_dir.join("state.db");
    let mut env = w.env;
    env.spec = env_spec;
    env.write_config();
    let daemon = env.spawn_run();
    w.slack.wait_for_delivered(1, SOON).await;
    // The whole directory goes: there is nowhere to put the database back.
    std::fs::remove_dir_all(&state_dir).unwrap();
    let out = daemon.wait(SOON).await;
    out.assert_code(1);
    let text = out.stderr_plain();
    assert!(
        text.contains("deleted or replaced while open and could not be put back"),
        "{}",
        out.describe()
    );
    assert!(!text.contains("panicked"), "{}", out.describe());
}
