//! Outbox → Slack: sends due messages in order, one route at a time, and records
//! each answer (delivered / retry later / failed for good). Webhook routes here; routes
//! posting with the bot token (app mode) in [`app`].

mod app;
mod pause;
mod shorter;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, Jitter};
use crate::clock::Clock;
use crate::config::{Config, ConfigError, Route, SecretUrl, route_index};
use crate::slack::web_api::SlackApi;
use crate::slack::webhook::{SendError, SlackClient};
use crate::store::{OutboxMessage, Store, StoreError};
use approval_watch_core::model::{MessageKind, SlackMessage};
use approval_watch_core::render;

/// A message's line at `level`: the fields that name it (pipeline, stage, action, kind,
/// route), then the rest.
macro_rules! message_event {
    ($level:expr, $message:expr, $route:expr, $($rest:tt)+) => {
        tracing::event!(
            $level,
            pipeline = %$message.key.pipeline,
            stage = %$message.key.stage,
            action = %$message.key.action,
            kind = $message.kind.as_str(),
            route = %$route,
            $($rest)+
        )
    };
}

/// How messages leave: to Slack, or (for `once --dry-run`) into a list, as Slack taking each.
pub enum Transport {
    /// Each route's webhook (`None` for a route the bot token posts for), in the
    /// deliverer's route order, and the Web API when `[slack]` names a bot token.
    Slack {
        client: SlackClient,
        webhooks: Vec<Option<SecretUrl>>,
        api: Option<SlackApi>,
    },
    Capture(Vec<Captured>),
}

impl Transport {
    /// The HTTP client and every route's webhook, read from their sources. Errors name the
    /// key, never the secret.
    pub fn slack(
        client: SlackClient,
        api: Option<SlackApi>,
        config: &Config,
    ) -> Result<Self, ConfigError> {
        let webhooks = config
            .all_routes()
            .map(Route::resolve_webhook)
            .collect::<Result<_, _>>()?;
        Ok(Self::Slack {
            client,
            webhooks,
            api,
        })
    }
}

/// A message the dry run would have posted.
#[derive(Debug, Clone)]
pub struct Captured {
    pub route: String,
    pub message: OutboxMessage,
    /// The body that would be posted, route overrides included.
    pub payload: serde_json::Value,
    /// App mode: the Web API method (`chat.postMessage`, `chat.update`).
    pub method: Option<&'static str>,
    /// App mode: the `ts` of the message replied to or updated, when known.
    pub ts: Option<String>,
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

impl std::ops::AddAssign for DeliveryReport {
    fn add_assign(&mut self, pass: Self) {
        self.delivered += pass.delivered;
        self.failed += pass.failed;
        self.deferred += pass.deferred;
    }
}

/// The longest any message waits for its next try, whatever Slack asks (`Retry-After`) or
/// the backoff says: a 429 with `Retry-After: 999999999` must not silence a webhook for years.
pub const RETRY_CAP: Duration = Duration::from_secs(300);

/// Backoff after a temporary failure: first retry within 5 s, doubling, at most
/// [`RETRY_CAP`], so a short blip costs seconds and a long outage costs Slack little.
pub fn backoff(attempts_before: u32) -> Duration {
    const RETRY: Backoff = Backoff::new(Duration::from_secs(5), RETRY_CAP, Jitter::None);
    RETRY.wait(attempts_before)
}

/// The wait a 429 asks for, capped at [`RETRY_CAP`]; `true` when the ask was over the cap.
fn rate_limit_wait(retry_after: Option<Duration>) -> (Duration, bool) {
    let asked = retry_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT);
    (asked.min(RETRY_CAP), asked > RETRY_CAP)
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
    burst: f64,
    last: Instant,
}

const BURST: f64 = 3.0;
const PER_SECOND: f64 = 1.0;

impl RateLimiter {
    fn new() -> Self {
        Self::with_burst(BURST)
    }

    fn with_burst(burst: f64) -> Self {
        Self {
            tokens: burst,
            burst,
            last: Instant::now(),
        }
    }

    /// Tops the bucket up for the time since the last look.
    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * PER_SECOND)
            .min(self.burst);
        self.last = now;
    }

    /// Takes a send slot now, or says when the next one is free (without waiting, so the
    /// other destinations go on meanwhile).
    fn try_acquire(&mut self) -> Result<(), Instant> {
        self.refill();
        // A hair's tolerance: waking at the computed instant must find the slot free.
        if self.tokens >= 1.0 - 1e-6 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Ok(());
        }
        Err(self.last + Duration::from_secs_f64((1.0 - self.tokens) / PER_SECOND))
    }

    /// Waits for a send slot; false when shut down while waiting.
    async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire() {
                Ok(()) => return true,
                Err(at) => tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shutdown.cancelled() => return false,
                },
            }
        }
    }

    /// After a 429, the bucket is empty: Slack just told us so.
    fn drain(&mut self) {
        self.tokens = 0.0;
        self.last = Instant::now();
    }
}

pub struct Deliverer {
    transport: Transport,
    /// The config's routes in routing order, `[slack]` last.
    routes: Vec<Route>,
    limiters: HashMap<String, RateLimiter>,
    /// Messages Slack took whose "delivered" mark could not be written (a full disk, say),
    /// with when Slack took them. They are marked again before anything else is sent and
    /// never posted again by this process: a store that cannot write must not turn into a
    /// message repeated on every pass.
    unmarked: HashMap<i64, Timestamp>,
    /// Of those, the alerts posted with the bot token: where they went.
    unmarked_posted: HashMap<i64, SlackMessage>,
    /// Alerts posted this pass (approval id → message), for replies queued behind them.
    threads: HashMap<i64, SlackMessage>,
    /// Resolutions whose alert is edited but whose reply waits for the channel's pace
    /// (message id → the thread the reply goes in, `None`: a message of its own).
    edited: HashMap<i64, Option<SlackMessage>>,
    /// Permanent Web API errors already logged at ERROR, per (route, error).
    told: std::collections::HashSet<(String, String)>,
    /// The key the bot token is configured under, for advice in errors.
    token_key: String,
    clock: Clock,
    /// Destinations whose Slack asked for a wait over [`RETRY_CAP`], warned about once.
    suspicious_waits: HashSet<String>,
    /// Routes whose alerts carry Approve/Reject buttons (app mode, `[slack.approvals]`, and
    /// someone allowed), by route name. Decided at send time, like routing.
    buttons: HashSet<String>,
    /// Routes waiting for a person to fix the token or the channel.
    pauses: pause::Pauses,
    /// How long one delivery may wait for the pace (`None`: until everything due is out, as
    /// `once` wants; the daemon sets [`MAX_PACE_WAIT`] so its polls go on).
    max_pace_wait: Option<Duration>,
}

/// The routes whose alerts get buttons: app-mode routes whose effective allow-lists name
/// someone (deny by default: empty lists, no buttons).
fn buttons(config: &Config) -> HashSet<String> {
    config
        .all_routes()
        .filter(|r| config.approvers_of(r).is_some_and(|a| !a.is_empty()))
        .map(|r| r.name.clone())
        .collect()
}

impl Deliverer {
    pub fn new(transport: Transport, config: &Config, clock: Clock) -> Self {
        Self {
            transport,
            routes: config.all_routes().cloned().collect(),
            limiters: HashMap::new(),
            unmarked: HashMap::new(),
            unmarked_posted: HashMap::new(),
            threads: HashMap::new(),
            edited: HashMap::new(),
            told: Default::default(),
            token_key: config
                .app
                .as_ref()
                .map_or_else(String::new, |a| a.token_key.clone()),
            clock,
            suspicious_waits: HashSet::new(),
            buttons: buttons(config),
            pauses: Default::default(),
            max_pace_wait: None,
        }
    }

    /// What the dry run captured, in sending order.
    pub fn take_captured(&mut self) -> Vec<Captured> {
        match &mut self.transport {
            Transport::Capture(captured) => std::mem::take(captured),
            Transport::Slack { .. } => Vec::new(),
        }
    }

    /// Takes over what `old` still owes the store (deliveries Slack took that could not be
    /// marked) and its rate limits, so that swapping the deliverer on a reload neither posts a
    /// message again nor resets a webhook's pace.
    pub fn take_over(&mut self, old: Deliverer) {
        self.unmarked.extend(old.unmarked);
        // `told` starts afresh: a reload is how a fix arrives, so a refusal after it is news.
        self.unmarked_posted.extend(old.unmarked_posted);
        self.suspicious_waits.extend(old.suspicious_waits);
        for (name, limiter) in old.limiters {
            self.limiters.entry(name).or_insert(limiter);
        }
        self.take_over_pauses(old.pauses);
        self.max_pace_wait = old.max_pace_wait;
    }

    /// Writes the marks that failed earlier; an error means the store still cannot write,
    /// and nothing more should be sent until it can.
    fn mark_unmarked(&mut self, store: &Store) -> Result<(), StoreError> {
        let mut pending: Vec<(i64, Timestamp)> =
            self.unmarked.iter().map(|(k, v)| (*k, *v)).collect();
        pending.sort();
        for (id, at) in pending {
            match self.unmarked_posted.get(&id) {
                Some(posted) => store.mark_posted(id, at, posted)?,
                None => store.mark_delivered(id, at)?,
            }
            self.unmarked.remove(&id);
            self.unmarked_posted.remove(&id);
            tracing::info!(
                message = id,
                "delivery to Slack recorded (recording it had failed)"
            );
        }
        Ok(())
    }

    /// The index of the route a pipeline's messages take now (config's one rule, applied at
    /// send time, so messages queued before a config change go where the config now says).
    fn route(&self, pipeline: &str) -> usize {
        match self.routes.split_last() {
            Some((_, routes)) => route_index(routes, pipeline),
            None => 0,
        }
    }

    /// Sends every due message, each route in outbox order. A route stops at its first
    /// temporary failure, so its order holds and a down Slack costs one timeout, and skips
    /// while paused (see [`pause`]); the other routes go on. A route whose pace (its webhook's, or its channel's in app mode) allows no
    /// message yet is passed over for now, its later messages too, and the pass goes on with
    /// the others, coming back when the earliest pace allows: one busy channel never holds up
    /// an alert in another. Shutdown is honoured between messages; a request in flight is
    /// finished.
    /// `now` decides what is due (the cycle's clock, so tests can drive time).
    pub async fn deliver_due(
        &mut self,
        store: &Store,
        now: Timestamp,
        shutdown: &CancellationToken,
    ) -> Result<DeliveryReport, StoreError> {
        self.deliver(store, now, shutdown, Pace::WaitForIt).await
    }

    /// As [`Deliverer::deliver_due`], but what its destination's pace holds back is left for
    /// the next delivery instead of waited for: a cycle's passes send what can go now, and
    /// the cycle's last delivery waits for the rest, so one pass's resolutions never delay
    /// the next pass's alerts.
    pub async fn deliver_ready(
        &mut self,
        store: &Store,
        now: Timestamp,
        shutdown: &CancellationToken,
    ) -> Result<DeliveryReport, StoreError> {
        self.deliver(store, now, shutdown, Pace::LeaveForLater)
            .await
    }

    async fn deliver(
        &mut self,
        store: &Store,
        now: Timestamp,
        shutdown: &CancellationToken,
        pace: Pace,
    ) -> Result<DeliveryReport, StoreError> {
        self.mark_unmarked(store)?;
        self.threads.clear();
        // A retry scheduled further ahead than the cap (by an older version, or before the
        // clock was set back) would hold its route's queue for that long.
        let capped = store.cap_next_attempts(later(now, RETRY_CAP))?;
        if capped > 0 {
            tracing::warn!(
                messages = capped,
                cap_s = RETRY_CAP.as_secs(),
                "messages were scheduled further ahead than the retry cap; they are tried within it"
            );
        }
        self.probe_token(shutdown).await;
        let report = self.rounds(store, now, shutdown, pace).await;
        // Recorded however the pass ended, for `status` and the cycle.
        self.record_pauses(store)?;
        report
    }

    /// Sends in rounds until nothing due can go (see [`Deliverer::deliver_due`]).
    async fn rounds(
        &mut self,
        store: &Store,
        now: Timestamp,
        shutdown: &CancellationToken,
        pace: Pace,
    ) -> Result<DeliveryReport, StoreError> {
        let mut report = DeliveryReport::default();
        // A backlog in one channel (after a pause lifts, say) goes at its pace over several
        // deliveries, never holding up the loop's polls for longer than this.
        let give_up = Instant::now() + self.max_pace_wait.unwrap_or(RETRY_CAP);
        // Routes done for this pass (a message not due yet, a temporary failure, a pause).
        let mut blocked = vec![false; self.routes.len()];
        let mut edits_released = self.edit_releases();
        loop {
            if let Some(released) = edits_released.as_mut() {
                released.borrow_and_update();
            }
            // Routes waiting for their pace (or for a click's edit of an alert) this round.
            let mut busy = vec![false; self.routes.len()];
            let mut wake: Option<Instant> = None;
            let mut edit_wait = false;
            for message in store.pending(MAX_PER_PASS)? {
                if shutdown.is_cancelled() {
                    return Ok(report);
                }
                let index = self.route(&message.key.pipeline);
                if blocked.get(index).copied().unwrap_or(true) || busy[index] {
                    continue;
                }
                let gate = self.gate(index, now);
                if message.next_attempt_at > now || gate == pause::Gate::Closed {
                    blocked[index] = true;
                    continue;
                }
                let sent = self.send(index, &message, store, shutdown).await?;
                // Only a message Slack took proves the fix; a dropped or failed one says nothing
                // about the token or the channel, and the next message probes.
                if gate == pause::Gate::Probe && matches!(sent, Sent::Delivered) {
                    self.resume_route(index);
                }
                match sent {
                    Sent::Delivered => report.delivered += 1,
                    Sent::Dropped => {}
                    Sent::Failed => report.failed += 1,
                    Sent::Deferred => {
                        report.deferred += 1;
                        blocked[index] = true;
                    }
                    Sent::Busy(Wait::Until(at)) => {
                        busy[index] = true;
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                    Sent::Busy(Wait::Edit) => {
                        busy[index] = true;
                        edit_wait = true;
                    }
                    Sent::Paused => blocked[index] = true,
                    Sent::Again => {
                        // Next round, within the route's pace.
                        busy[index] = true;
                        let at = Instant::now();
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                    Sent::Interrupted => return Ok(report),
                }
            }
            if (wake.is_none() && !edit_wait)
                || pace == Pace::LeaveForLater
                || Instant::now() >= give_up
            {
                return Ok(report);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.unwrap_or(give_up).min(give_up)) => {}
                _ = released(edits_released.as_mut()), if edit_wait => {}
                _ = shutdown.cancelled() => return Ok(report),
            }
        }
    }

    /// Waits at most `max` for the pace in one delivery (see [`MAX_PACE_WAIT`]).
    pub fn limit_pace_wait(&mut self, max: Duration) {
        self.max_pace_wait = Some(max);
    }

    /// The Web API client (app mode).
    pub fn slack_api(&self) -> Option<&SlackApi> {
        match &self.transport {
            Transport::Slack { api, .. } => api.as_ref(),
            Transport::Capture(_) => None,
        }
    }

    /// Edits under the same locks as `old` (see [`SlackApi::share_edits_of`]).
    pub fn share_edits_of(&mut self, old: &SlackApi) {
        if let Transport::Slack { api: Some(api), .. } = &mut self.transport {
            api.share_edits_of(old);
        }
    }

    /// Tells when a click's edit of an alert ends (app mode).
    fn edit_releases(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match &self.transport {
            Transport::Slack { api: Some(api), .. } => Some(api.edits().releases()),
            _ => None,
        }
    }

    /// One message to its route, waiting out short rate limits; `Busy` when its pace allows
    /// nothing yet.
    async fn send(
        &mut self,
        index: usize,
        message: &OutboxMessage,
        store: &Store,
        shutdown: &CancellationToken,
    ) -> Result<Sent, StoreError> {
        let Some(route) = self.routes.get(index) else {
            return Ok(Sent::Interrupted);
        };
        if let Some(channel) = route.channel() {
            let (route, channel) = (route.name.clone(), channel.to_owned());
            return self
                .send_app(&route, &channel, message, store, shutdown)
                .await;
        }
        if message.kind == MessageKind::Resolution && !message.app.reply {
            // Queued to edit an app-mode alert; this route posts by webhook now, and a
            // webhook cannot edit.
            store.mark_dropped(message.id, "nothing to post: the route no longer edits")?;
            return Ok(Sent::Dropped);
        }
        let mut payload = render::with_overrides(&message.payload, &route.overrides);
        // A digest Slack refused for its size goes again shorter, once.
        let mut shortened = false;
        let (client, webhook) = match &mut self.transport {
            Transport::Capture(captured) => {
                captured.push(Captured {
                    route: route.name.clone(),
                    message: message.clone(),
                    payload,
                    method: None,
                    ts: None,
                });
                store.mark_delivered(message.id, self.clock.now())?;
                return Ok(Sent::Delivered);
            }
            Transport::Slack {
                client, webhooks, ..
            } => match webhooks.get(index) {
                Some(Some(webhook)) => (&*client, webhook),
                _ => return Ok(Sent::Interrupted),
            },
        };
        let limiter = self
            .limiters
            .entry(route.name.clone())
            .or_insert_with(RateLimiter::new);
        if let Err(at) = limiter.try_acquire() {
            return Ok(Sent::Busy(Wait::Until(at)));
        }
        let mut inline_waits = 0;
        loop {
            if inline_waits > 0 && !limiter.acquire(shutdown).await {
                return Ok(Sent::Interrupted);
            }
            let result = client.post(webhook, &payload).await;
            let now = self.clock.now();
            match result {
                Ok(()) => {
                    crate::metrics::message_sent(message.kind);
                    if let Err(e) = store.mark_delivered(message.id, now) {
                        self.unmarked.insert(message.id, now);
                        return Err(e);
                    }
                    log_message(message, &route.name, "delivered to Slack");
                    return Ok(Sent::Delivered);
                }
                Err(SendError::Permanent { status, body }) => {
                    crate::metrics::slack_failure(crate::metrics::SlackFailure::Permanent);
                    let error = format!("HTTP {status}: {body}");
                    if !shortened
                        && let Some(shorter) =
                            shorter::shorter_digest(message, &error, &route.name, store)?
                    {
                        payload = render::with_overrides(&shorter, &route.overrides);
                        shortened = true;
                        // Paced like any other message to this webhook.
                        if !limiter.acquire(shutdown).await {
                            return Ok(Sent::Interrupted);
                        }
                        continue;
                    }
                    store.mark_failed(message.id, &error)?;
                    message_event!(
                        tracing::Level::ERROR,
                        message,
                        route.name,
                        status,
                        body = %body,
                        "Slack refused the message; it will not be retried"
                    );
                    return Ok(Sent::Failed);
                }
                Err(SendError::RateLimited { retry_after }) => {
                    crate::metrics::slack_failure(crate::metrics::SlackFailure::RateLimited);
                    limiter.drain();
                    let (wait, over_cap) = rate_limit_wait(retry_after);
                    if over_cap && self.suspicious_waits.insert(route.name.clone()) {
                        tracing::warn!(
                            route = %route.name,
                            retry_after_s = retry_after.map_or(0, |d| d.as_secs()),
                            cap_s = RETRY_CAP.as_secs(),
                            "suspicious Retry-After from Slack, longer than the retry cap; retrying after the cap instead (said once per route)"
                        );
                    }
                    tracing::warn!(
                        pipeline = %message.key.pipeline,
                        route = %route.name,
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
                    return Ok(Sent::Deferred);
                }
                Err(SendError::Temporary(error)) => {
                    crate::metrics::slack_failure(crate::metrics::SlackFailure::Temporary);
                    let wait = backoff(message.attempts);
                    store.mark_retry(message.id, later(now, wait), &error)?;
                    message_event!(
                        tracing::Level::WARN,
                        message,
                        route.name,
                        attempt = message.attempts + 1,
                        retry_in_s = wait.as_secs(),
                        "Slack delivery failed: {error}"
                    );
                    return Ok(Sent::Deferred);
                }
            }
        }
    }
}

/// How one message went.
enum Sent {
    Delivered,
    /// Nothing to send after all.
    Dropped,
    Failed,
    Deferred,
    /// Refused for a reason a person must fix: left queued as it was, its route paused.
    Paused,
    /// Changed (a digest made shorter) and due again at once.
    Again,
    /// Not now: its destination's pace allows nothing yet (or an edit waits for a click's).
    Busy(Wait),
    Interrupted,
}

/// Whether a delivery waits for what its destinations' pace holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    WaitForIt,
    LeaveForLater,
}

/// What a message passed over for now waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Its destination's next send slot.
    Until(Instant),
    /// A click's edit of the same alert to finish.
    Edit,
}

/// Until a click's edit of an alert ends; never, without one to wait for.
async fn released(releases: Option<&mut tokio::sync::watch::Receiver<u64>>) {
    match releases {
        Some(r) => {
            if r.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// In the daemon, the longest one delivery waits for destinations' pace; what is left goes
/// at the next one (moments later, between the loop's polls).
pub const MAX_PACE_WAIT: Duration = Duration::from_secs(5);

/// Messages looked at per pass; the rest wait for the next pass, moments later.
pub const MAX_PER_PASS: u32 = 500;

fn later(now: Timestamp, wait: Duration) -> Timestamp {
    SignedDuration::try_from(wait)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(now)
}

fn log_message(message: &OutboxMessage, route: &str, what: &str) {
    tracing::info!(
        pipeline = %message.key.pipeline,
        route,
        stage = %message.key.stage,
        action = %message.key.action,
        kind = message.kind.as_str(),
        "{what}"
    );
}

#[cfg(test)]
mod tests;
