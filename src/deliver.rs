//! Outbox → Slack: sends due messages in order, one destination at a time, and records
//! each answer (delivered / retry later / failed for good).

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{MessageOverrides, SecretUrl};
use crate::slack::{SendError, SlackClient};
use crate::store::{OutboxMessage, Store, StoreError};

/// Where messages go: a webhook and the overrides old-style webhooks honour.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub webhook: SecretUrl,
    pub overrides: MessageOverrides,
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: u32,
    /// Refused for good by Slack in this pass.
    pub failed: u32,
    /// Temporary failures in this pass (the message waits for its retry).
    pub deferred: u32,
}

/// Backoff after a temporary failure: first retry within 5 s, doubling, at most 5 minutes,
/// so a short blip costs seconds and a long outage costs Slack little.
pub fn backoff(attempts_before: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(5);
    const CAP: Duration = Duration::from_secs(300);
    FIRST
        .checked_mul(
            1u32.checked_shl(attempts_before.min(16))
                .unwrap_or(u32::MAX),
        )
        .map_or(CAP, |d| d.min(CAP))
}

/// A 429 without `Retry-After` waits this long.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);
/// A 429 asking for at most this long is waited out in the pass; longer ones are scheduled.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(10);
/// Stop waiting out 429s inline after this many in one pass.
const MAX_INLINE_WAITS: u32 = 3;

/// About one message per second per webhook, with a short burst allowed (as Slack does).
#[derive(Debug)]
struct RateLimiter {
    tokens: f64,
    last: Instant,
}

const BURST: f64 = 3.0;
const PER_SECOND: f64 = 1.0;

impl RateLimiter {
    fn new() -> Self {
        Self {
            tokens: BURST,
            last: Instant::now(),
        }
    }

    /// Waits for a send slot; false when shut down while waiting.
    async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * PER_SECOND).min(BURST);
        self.last = now;
        if self.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / PER_SECOND);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return false,
            }
            self.tokens = 1.0;
            self.last = Instant::now();
        }
        self.tokens -= 1.0;
        true
    }

    /// After a 429, the bucket is empty: Slack just told us so.
    fn drain(&mut self) {
        self.tokens = 0.0;
        self.last = Instant::now();
    }
}

pub struct Deliverer {
    slack: SlackClient,
    destinations: Vec<Destination>,
    limiters: HashMap<String, RateLimiter>,
}

impl Deliverer {
    pub fn new(slack: SlackClient, destinations: Vec<Destination>) -> Self {
        Self {
            slack,
            destinations,
            limiters: HashMap::new(),
        }
    }

    /// Sends every due message, each destination in outbox order. Stops a destination at
    /// its first temporary failure, so order holds and a down Slack costs one timeout.
    /// Shutdown is honoured between messages; a request in flight is finished.
    pub async fn deliver_due(
        &mut self,
        store: &Store,
        shutdown: &CancellationToken,
    ) -> Result<DeliveryReport, StoreError> {
        let mut report = DeliveryReport::default();
        for destination in &self.destinations {
            let limiter = self
                .limiters
                .entry(destination.name.clone())
                .or_insert_with(RateLimiter::new);
            let mut inline_waits = 0;
            while !shutdown.is_cancelled() {
                let Some(message) = store.first_pending(&destination.name)? else {
                    break;
                };
                if message.next_attempt_at > Timestamp::now() {
                    break;
                }
                if !limiter.acquire(shutdown).await {
                    break;
                }
                let result = self
                    .slack
                    .post(
                        &destination.webhook,
                        &destination.overrides.apply(&message.payload),
                    )
                    .await;
                let now = Timestamp::now();
                match result {
                    Ok(()) => {
                        store.mark_delivered(message.id, now)?;
                        report.delivered += 1;
                        log_message(&message, "delivered to Slack");
                    }
                    Err(SendError::Permanent { status, body }) => {
                        let error = format!("HTTP {status}: {body}");
                        store.mark_failed(message.id, &error)?;
                        report.failed += 1;
                        tracing::error!(
                            pipeline = %message.key.pipeline,
                            stage = %message.key.stage,
                            action = %message.key.action,
                            kind = message.kind.as_str(),
                            status,
                            body = %body,
                            "Slack refused the message; it will not be retried"
                        );
                    }
                    Err(SendError::RateLimited { retry_after }) => {
                        limiter.drain();
                        let wait = retry_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT);
                        tracing::warn!(
                            pipeline = %message.key.pipeline,
                            retry_after_s = wait.as_secs(),
                            "Slack rate limit (HTTP 429); waiting before the next message"
                        );
                        if wait <= MAX_INLINE_WAIT && inline_waits < MAX_INLINE_WAITS {
                            inline_waits += 1;
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => continue,
                                _ = shutdown.cancelled() => {}
                            }
                        }
                        store.mark_retry(message.id, later(now, wait), "HTTP 429")?;
                        report.deferred += 1;
                        break;
                    }
                    Err(SendError::Temporary(error)) => {
                        let wait = backoff(message.attempts);
                        store.mark_retry(message.id, later(now, wait), &error)?;
                        report.deferred += 1;
                        tracing::warn!(
                            pipeline = %message.key.pipeline,
                            stage = %message.key.stage,
                            action = %message.key.action,
                            kind = message.kind.as_str(),
                            attempt = message.attempts + 1,
                            retry_in_s = wait.as_secs(),
                            "Slack delivery failed: {error}"
                        );
                        break;
                    }
                }
            }
        }
        Ok(report)
    }
}

fn later(now: Timestamp, wait: Duration) -> Timestamp {
    SignedDuration::try_from(wait)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(now)
}

fn log_message(message: &OutboxMessage, what: &str) {
    tracing::info!(
        pipeline = %message.key.pipeline,
        stage = %message.key.stage,
        action = %message.key.action,
        kind = message.kind.as_str(),
        "{what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_within_5s_doubles_and_caps_at_5min() {
        let waits: Vec<u64> = (0..10).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_a_burst_then_one_per_second() {
        let shutdown = CancellationToken::new();
        let mut limiter = RateLimiter::new();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.acquire(&shutdown).await);
        }
        assert!(start.elapsed() < Duration::from_millis(10));
        assert!(limiter.acquire(&shutdown).await);
        assert!(limiter.acquire(&shutdown).await);
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1990) && elapsed < Duration::from_millis(2100),
            "{elapsed:?}"
        );
        shutdown.cancel();
        assert!(!limiter.acquire(&shutdown).await);
    }
}
