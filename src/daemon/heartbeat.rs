//! The heartbeat, a dead man's switch: an HTTP GET to a URL after a healthy cycle, at most
//! once per `every`, so an external monitor (healthchecks-style) fires when the pings stop —
//! the bastion, the daemon or its credentials died. With a `fail_url`, the first unhealthy
//! cycle after a healthy one pings it at once, then at most once per `every` while unhealthy.
//!
//! [`assess`] and [`Pacer`] decide (pure, taking `now`); [`Heartbeat`] sends, on its own task
//! with a 5 s timeout, so a slow monitor never delays a cycle. The URLs are secrets: they are
//! never logged, and a failed ping is logged without them.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::config::{ConfigError, HeartbeatConfig, SecretUrl};
use crate::daemon::cycle::report::CycleReport;
use crate::store::StoreError;

/// A message undelivered this long makes a cycle unhealthy: Slack, or the way to it, is down.
pub const UNDELIVERED_LIMIT: SignedDuration = SignedDuration::from_mins(15);
/// A ping that takes longer is abandoned (and logged).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a cycle was not healthy (logged at debug; the monitor sees only the missing ping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unhealthy {
    /// The cycle failed: the store did not take its writes.
    StoreFailed,
    /// No pipeline could be read in the last cycle that tried.
    NothingRead,
    /// A message has waited for delivery longer than [`UNDELIVERED_LIMIT`].
    Undelivered,
}

impl Unhealthy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StoreFailed => "the state database did not take the cycle's writes",
            Self::NothingRead => "no pipeline could be read",
            Self::Undelivered => "a message has been undelivered for over 15 minutes",
        }
    }
}

/// What a cycle showed about the watcher's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleHealth {
    /// The cycle completed, its writes included.
    pub store_ok: bool,
    /// Whether at least one pipeline was read, in the last cycle that read any (a cycle
    /// where every pipeline was idle and not due reads none, which says nothing).
    pub read_any: bool,
    /// When the oldest message still undelivered was queued.
    pub oldest_undelivered: Option<Timestamp>,
}

/// Healthy, or the first reason it is not.
pub fn assess(health: &CycleHealth, now: Timestamp) -> Result<(), Unhealthy> {
    if !health.store_ok {
        return Err(Unhealthy::StoreFailed);
    }
    if !health.read_any {
        return Err(Unhealthy::NothingRead);
    }
    if health
        .oldest_undelivered
        .is_some_and(|since| now.duration_since(since) > UNDELIVERED_LIMIT)
    {
        return Err(Unhealthy::Undelivered);
    }
    Ok(())
}

/// Which URL to ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Success,
    Fail,
}

impl Ping {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Fail => "failure",
        }
    }
}

/// When to ping: success at most once per `every` while healthy; failure at once on the
/// first unhealthy cycle after a healthy one (or the first cycle), then at most once per
/// `every` while unhealthy.
#[derive(Debug, Clone)]
pub struct Pacer {
    every: SignedDuration,
    has_fail_url: bool,
    last_success: Option<Timestamp>,
    last_fail: Option<Timestamp>,
    /// Whether the previous cycle was healthy; `None` before the first.
    was_healthy: Option<bool>,
}

impl Pacer {
    pub fn new(every: Duration, has_fail_url: bool) -> Self {
        Self {
            every: SignedDuration::try_from(every).unwrap_or(SignedDuration::from_mins(1)),
            has_fail_url,
            last_success: None,
            last_fail: None,
            was_healthy: None,
        }
    }

    /// After a cycle at `now`: which ping is due, if any.
    pub fn after_cycle(&mut self, healthy: bool, now: Timestamp) -> Option<Ping> {
        let was_healthy = self.was_healthy.replace(healthy);
        let paced =
            |last: Option<Timestamp>| last.is_none_or(|at| now.duration_since(at) >= self.every);
        if healthy {
            paced(self.last_success).then(|| {
                self.last_success = Some(now);
                Ping::Success
            })
        } else if self.has_fail_url && (was_healthy != Some(false) || paced(self.last_fail)) {
            self.last_fail = Some(now);
            Some(Ping::Fail)
        } else {
            None
        }
    }

    /// Keeps the rhythm across a reload with the same URLs.
    fn take_over(&mut self, old: &Pacer) {
        self.last_success = old.last_success;
        self.last_fail = old.last_fail;
        self.was_healthy = old.was_healthy;
    }
}

/// Why the heartbeat could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the HTTP client for the heartbeat: {0}")]
    HttpClient(reqwest::Error),
}

/// The configured heartbeat: resolved URLs, an HTTP client and the pacing.
pub struct Heartbeat {
    url: SecretUrl,
    fail_url: Option<SecretUrl>,
    client: reqwest::Client,
    pacer: Pacer,
    /// Whether the last cycle that read any pipeline read one successfully.
    read_any: bool,
}

impl Heartbeat {
    /// Reads the URLs from their sources (errors name the key, never the value).
    pub fn new(config: &HeartbeatConfig) -> Result<Self, HeartbeatError> {
        let urls = config.resolve()?;
        let client = client().map_err(HeartbeatError::HttpClient)?;
        Ok(Self {
            pacer: Pacer::new(config.every, urls.fail_url.is_some()),
            url: urls.url,
            fail_url: urls.fail_url,
            client,
            read_any: false,
        })
    }

    /// After a reload: keep the old pacing when the URLs and rhythm are the same.
    pub fn take_over(&mut self, old: &Heartbeat) {
        if self.url == old.url && self.fail_url == old.fail_url {
            self.pacer.take_over(&old.pacer);
        }
        self.read_any = old.read_any;
    }

    /// Judges the cycle that just ended and sends the ping due, on its own task.
    pub fn after_cycle(&mut self, outcome: &Result<CycleReport, StoreError>, now: Timestamp) {
        let health = match outcome {
            Ok(report) => {
                if report.reads > 0 {
                    self.read_any = report.reads > report.read_failures;
                }
                CycleHealth {
                    store_ok: true,
                    read_any: self.read_any,
                    oldest_undelivered: report.oldest_undelivered,
                }
            }
            Err(_) => CycleHealth {
                store_ok: false,
                read_any: self.read_any,
                oldest_undelivered: None,
            },
        };
        let verdict = assess(&health, now);
        if let Err(why) = verdict {
            tracing::debug!(reason = why.as_str(), "cycle unhealthy; no heartbeat ping");
        }
        let Some(ping) = self.pacer.after_cycle(verdict.is_ok(), now) else {
            return;
        };
        let url = match ping {
            Ping::Success => self.url.clone(),
            Ping::Fail => match &self.fail_url {
                Some(url) => url.clone(),
                None => return,
            },
        };
        let client = self.client.clone();
        // Never awaited by the loop: a monitor that hangs costs a task, not a cycle.
        tokio::spawn(async move {
            match send(&client, &url).await {
                Ok(status) => tracing::debug!(ping = ping.as_str(), status, "heartbeat ping sent"),
                Err(e) => tracing::warn!(ping = ping.as_str(), "heartbeat ping failed: {e}"),
            }
        });
    }
}

/// The HTTP client for pings: 5 s for the whole request.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(PING_TIMEOUT)
        .connect_timeout(PING_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
}

/// Why a ping failed. Never holds the URL.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("timed out after {} s", PING_TIMEOUT.as_secs())]
    Timeout,
    #[error("{0}")]
    Request(String),
    #[error("the monitor answered HTTP {0}")]
    Status(u16),
}

/// One GET; the answer's status, or why it failed, without the URL.
pub async fn send(client: &reqwest::Client, url: &SecretUrl) -> Result<u16, PingError> {
    let response = client
        .get(url.expose().clone())
        .send()
        .await
        .map_err(ping_error)?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(PingError::Status(status.as_u16()))
    }
}

/// The timeout in the ping's own words; anything else as [`crate::http::describe`] says it,
/// without the kind (the log line already says the ping failed).
fn ping_error(e: reqwest::Error) -> PingError {
    use crate::http::FailureKind;
    let failure = crate::http::describe(e);
    match failure.kind {
        FailureKind::TimedOut => PingError::Timeout,
        FailureKind::Connect | FailureKind::Other => PingError::Request(failure.detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_764_000_000 + seconds).unwrap()
    }

    fn healthy() -> CycleHealth {
        CycleHealth {
            store_ok: true,
            read_any: true,
            oldest_undelivered: None,
        }
    }

    #[test]
    fn health_needs_the_store_a_read_and_no_message_stuck_for_15_minutes() {
        assert_eq!(assess(&healthy(), at(0)), Ok(()));
        let store = CycleHealth {
            store_ok: false,
            ..healthy()
        };
        assert_eq!(assess(&store, at(0)), Err(Unhealthy::StoreFailed));
        let read = CycleHealth {
            read_any: false,
            ..healthy()
        };
        assert_eq!(assess(&read, at(0)), Err(Unhealthy::NothingRead));
        let fresh = CycleHealth {
            oldest_undelivered: Some(at(0)),
            ..healthy()
        };
        assert_eq!(assess(&fresh, at(15 * 60)), Ok(()));
        assert_eq!(assess(&fresh, at(15 * 60 + 1)), Err(Unhealthy::Undelivered));
    }

    #[test]
    fn success_pings_at_most_once_per_every() {
        let mut p = Pacer::new(Duration::from_secs(60), false);
        let pings: Vec<i64> = (0..10)
            .map(|i| i * 30)
            .filter(|&t| p.after_cycle(true, at(t)).is_some())
            .collect();
        assert_eq!(pings, [0, 60, 120, 180, 240]);
    }

    #[test]
    fn fail_pings_at_once_after_a_healthy_cycle_then_once_per_every() {
        let mut p = Pacer::new(Duration::from_secs(60), true);
        assert_eq!(p.after_cycle(true, at(0)), Some(Ping::Success));
        assert_eq!(p.after_cycle(false, at(30)), Some(Ping::Fail));
        assert_eq!(p.after_cycle(false, at(60)), None);
        assert_eq!(p.after_cycle(false, at(90)), Some(Ping::Fail));
        // Healthy again, then unhealthy: the failure is told at once, not a minute later.
        assert_eq!(p.after_cycle(true, at(100)), Some(Ping::Success));
        assert_eq!(p.after_cycle(false, at(105)), Some(Ping::Fail));
        // Success keeps its own pace.
        assert_eq!(p.after_cycle(true, at(110)), None);
        assert_eq!(p.after_cycle(true, at(160)), Some(Ping::Success));
    }

    #[test]
    fn without_a_fail_url_an_unhealthy_cycle_pings_nothing() {
        let mut p = Pacer::new(Duration::from_secs(60), false);
        assert_eq!(p.after_cycle(false, at(0)), None);
        assert_eq!(p.after_cycle(false, at(600)), None);
        assert_eq!(p.after_cycle(true, at(601)), Some(Ping::Success));
    }
}
