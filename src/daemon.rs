//! The `run` loop: a cycle every `poll_interval`, outbox retries in between, until shutdown.

use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::StoreError;
use crate::watcher::Watcher;

/// Never spin: after delivering, wait at least this long before looking at the outbox again.
const MIN_WAKE: Duration = Duration::from_millis(250);

/// Runs until `shutdown` is cancelled, then closes the database. A failing cycle (a full disk,
/// a locked file) is logged and retried at the next tick: nothing is recorded half-way.
pub async fn run(
    mut watcher: Watcher,
    poll_interval: Duration,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let mut next_poll = Instant::now();
    while !shutdown.is_cancelled() {
        if Instant::now() >= next_poll {
            let started = Instant::now();
            match watcher.cycle(&shutdown).await {
                Ok(report) => tracing::debug!(
                    ?report,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "cycle done"
                ),
                Err(e) => tracing::error!("cycle failed; retrying at the next tick: {e}"),
            }
            // Ticks keep their rhythm; a cycle longer than the interval is followed at once.
            next_poll = (started + poll_interval).max(Instant::now());
        } else if let Err(e) = watcher.deliver(&shutdown).await {
            tracing::error!("delivery failed: {e}");
        }
        let wake = match watcher.next_due() {
            Ok(Some(due)) => next_poll.min(instant_of(due).max(Instant::now() + MIN_WAKE)),
            Ok(None) => next_poll,
            Err(e) => {
                tracing::error!("cannot read the outbox: {e}");
                next_poll
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    tracing::info!("shutting down");
    watcher.close()
}

/// A wall-clock time as a point on tokio's clock.
fn instant_of(at: Timestamp) -> Instant {
    let now = Timestamp::now();
    let ahead = at.duration_since(now);
    Instant::now() + Duration::try_from(ahead).unwrap_or(Duration::ZERO)
}
