//! A webhook endpoint that answers an error with an endless page: the daemon reads a bounded
//! start of it (enough for the log), drops the rest with the connection, and retries as for
//! any 5xx. Before the bound it read until the 10 s client timeout and lost the page.

use crate::support;

use support::{Fixture, SOON, SlackResponse, World};

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_error_page_is_cut_short_logged_and_the_message_retried() {
    let w = World::start(&["web-app"]).await;
    w.slack
        .push_response(SlackResponse::status(502, "upstream exploded; ").endless());
    w.aws.set_state("web-app", Fixture::Waiting);
    let mut daemon = w.env.spawn_run();
    assert!(
        daemon.wait_for_stderr("upstream exploded", SOON).await,
        "the error page's start was not logged:\n{}",
        daemon.stderr()
    );
    // The retry goes through: two requests, the second delivered.
    w.slack.wait_for_delivered(1, SOON).await;
    let out = daemon.terminate().await;
    let line = out
        .stderr_lines_with(&["upstream exploded"])
        .into_iter()
        .next()
        .unwrap_or_default();
    assert!(
        line.len() < 2_000,
        "the page is clipped in the log: {} bytes",
        line.len()
    );
}
