//! Every place a test drives the library in-process (rather than the binary) goes through here,
//! so a change in how the application is assembled is one file to follow.

use approval_watch::aws::{CodePipeline, Target};
use approval_watch::cli::status::Status;
use approval_watch::clock::Clock;
use approval_watch::config::Config;
use approval_watch::daemon::cycle::{CycleReport, Watcher};
use approval_watch::daemon::startup::Mode;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

/// The AWS client and the pipelines it reads, as the daemon builds them from `config`.
pub async fn connect(config: &Config) -> (CodePipeline, Vec<Target>) {
    CodePipeline::connect(config).await.expect("connect")
}

/// The watcher as the daemon assembles it from `config` (AWS client, deliverer, store).
pub async fn open_watcher(config: &Config) -> Watcher {
    approval_watch::daemon::startup::watcher(config.clone(), Mode::Live, Clock::System)
        .await
        .map_err(|e| format!("{e:#}"))
        .expect("watcher")
}

/// One cycle now.
pub async fn cycle(watcher: &mut Watcher) -> CycleReport {
    watcher
        .cycle(&CancellationToken::new())
        .await
        .expect("cycle")
}

/// One cycle as if the clock said `at`.
pub async fn cycle_at(watcher: &mut Watcher, at: Timestamp) -> CycleReport {
    watcher
        .cycle_at(at, &CancellationToken::new())
        .await
        .expect("cycle")
}

/// What `status` would show at `now`, from the watcher's database.
pub fn status(config: &Config, watcher: &Watcher, now: Timestamp) -> Status {
    approval_watch::cli::status::collect(config, Some(watcher.store()), now).expect("status")
}

/// `status` as text.
pub fn status_text(status: &Status, now: Timestamp) -> String {
    approval_watch::cli::status::text(status, now)
}

/// The pipelines the watcher's database says are waiting, in its order.
pub fn waiting_pipelines(watcher: &Watcher) -> Vec<String> {
    watcher
        .store()
        .open_approvals()
        .expect("waiting approvals")
        .into_iter()
        .map(|open| open.approval.key.pipeline)
        .collect()
}

/// Closes the watcher's database cleanly.
pub fn close(watcher: Watcher) {
    watcher.close().expect("close");
}
