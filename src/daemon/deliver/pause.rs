//! Delivery paused until a person fixes something. A refused bot token pauses every route that
//! posts with it; a channel the app cannot post in (or a missing scope) pauses that route. The
//! paused messages stay queued as they are (not failed, no attempt counted) and the other routes
//! go on. One ERROR says what to fix; a probe tries again on a slow capped backoff (`auth.test`
//! for the token, the route's head message otherwise), a reload tries at once, and one INFO says
//! when delivery resumes. The store and the metrics hear of each change, for `status`,
//! `/healthz` and the cycle.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::{Deliverer, Transport, later};
use crate::backoff::{Backoff, Jitter, Streak};
use crate::slack::web_api::{ApiError, Refusal};
use crate::store::{PausedRoute, Store, StoreError};

/// Between tries while paused: 30 s doubling to 10 min, jittered so that daemons sharing a
/// workspace do not line up. Slack's answer will not change until a person acts.
const PROBE: Backoff = Backoff::new(
    Duration::from_secs(30),
    Duration::from_secs(600),
    Jitter::UpperHalf,
);

/// Why delivery waits, and when it tries again.
#[derive(Debug, Clone)]
struct Pause {
    error: String,
    fix: String,
    since: Timestamp,
    streak: Streak,
    next_try_at: Timestamp,
}

impl Pause {
    fn new(error: &str, fix: &str, now: Timestamp) -> Self {
        let mut pause = Self {
            error: error.to_owned(),
            fix: fix.to_owned(),
            since: now,
            streak: Streak::new(PROBE),
            next_try_at: now,
        };
        pause.refused_again(error, fix, now);
        pause
    }

    /// A try was refused (again): the next one a step later.
    fn refused_again(&mut self, error: &str, fix: &str, now: Timestamp) -> Duration {
        error.clone_into(&mut self.error);
        fix.clone_into(&mut self.fix);
        let wait = self.streak.fail();
        self.next_try_at = later(now, wait);
        wait
    }

    /// A try got no answer about the fix (the network, a 5xx): the next one after the first
    /// step, the streak as it was.
    fn unanswered(&mut self, now: Timestamp) -> Duration {
        let wait = PROBE.wait(0);
        self.next_try_at = later(now, wait);
        wait
    }

    fn row(&self, route: &str) -> PausedRoute {
        PausedRoute {
            route: route.to_owned(),
            error: self.error.clone(),
            fix: self.fix.clone(),
            since: self.since,
            next_try_at: self.next_try_at,
        }
    }
}

/// What is paused now.
#[derive(Debug, Default)]
pub(super) struct Pauses {
    /// The bot token was refused: every app-mode route waits.
    token: Option<Pause>,
    /// Routes waiting for their channel (or the app's scopes) to be fixed, by name.
    routes: HashMap<String, Pause>,
    /// What the store holds, so it is written only on a change; `None` until this process
    /// wrote it (rows left by an earlier process are replaced at the first pass).
    stored: Option<Vec<PausedRoute>>,
}

impl Pauses {
    /// After a reload: everything is tried at the next pass (a reload is how a fix arrives),
    /// for the routes that still post with the bot token.
    fn retry_now(&mut self, now: Timestamp, app_route: impl Fn(&str) -> bool) {
        self.routes.retain(|name, _| app_route(name));
        for pause in self.token.iter_mut().chain(self.routes.values_mut()) {
            pause.next_try_at = now;
        }
    }
}

/// Whether a route's next message may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    Open,
    /// Paused, but its probe is due: the head message goes, and its answer decides.
    Probe,
    Closed,
}

impl Deliverer {
    /// The routes posting with the bot token, by name.
    fn app_routes(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .filter(|r| r.channel().is_some())
            .map(|r| r.name.as_str())
    }

    /// The pause on the route at `index`, if it posts with the bot token and waits.
    fn pause_of(&self, index: usize) -> Option<(&Pause, bool)> {
        let route = self.routes.get(index).filter(|r| r.channel().is_some())?;
        match &self.pauses.token {
            Some(pause) => Some((pause, true)),
            None => self.pauses.routes.get(&route.name).map(|p| (p, false)),
        }
    }

    /// Whether the route at `index` may send now.
    pub(super) fn gate(&self, index: usize, now: Timestamp) -> Gate {
        match self.pause_of(index) {
            None => Gate::Open,
            // The token's probe is `auth.test`, not a message.
            Some((_, true)) => Gate::Closed,
            Some((pause, false)) if pause.next_try_at <= now => Gate::Probe,
            Some(_) => Gate::Closed,
        }
    }

    /// The names of the routes paused now.
    pub fn paused_routes(&self) -> Vec<String> {
        self.pause_rows().into_iter().map(|r| r.route).collect()
    }

    fn pause_rows(&self) -> Vec<PausedRoute> {
        let mut rows: Vec<PausedRoute> = match &self.pauses.token {
            Some(pause) => self.app_routes().map(|name| pause.row(name)).collect(),
            None => self
                .pauses
                .routes
                .iter()
                .map(|(name, pause)| pause.row(name))
                .collect(),
        };
        rows.sort_by(|a, b| a.route.cmp(&b.route));
        rows
    }

    /// Slack refused a message of `route` for a reason a person must fix: the message stays
    /// queued as it is, and the route (every app-mode route, for the token) waits. The first
    /// refusal is the one ERROR; a probe refused again is a WARN with the next try.
    pub(super) fn pause(&mut self, route: &str, refusal: Refusal, error: &str, fix: &str) {
        let now = self.clock.now();
        let (scope, config_key) = match refusal {
            Refusal::Token => (
                "every route posting with the bot token",
                self.token_key.clone(),
            ),
            Refusal::Route => (
                "this route",
                self.routes
                    .iter()
                    .find(|r| r.name == route)
                    .map_or_else(String::new, |r| format!("{}.channel", r.key)),
            ),
        };
        let pause = match refusal {
            Refusal::Token => self.pauses.token.as_mut(),
            Refusal::Route => self.pauses.routes.get_mut(route),
        };
        match pause {
            Some(pause) => {
                let wait = pause.refused_again(error, fix, now);
                tracing::warn!(
                    route,
                    error,
                    retry_in_s = wait.as_secs(),
                    "Slack still refuses: {fix}; the messages stay queued"
                );
            }
            None => {
                let pause = Pause::new(error, fix, now);
                let wait = pause.next_try_at.duration_since(now).unsigned_abs();
                match refusal {
                    Refusal::Token => self.pauses.token = Some(pause),
                    Refusal::Route => {
                        self.pauses.routes.insert(route.to_owned(), pause);
                    }
                }
                tracing::error!(
                    route,
                    error,
                    config_key,
                    retry_in_s = wait.as_secs(),
                    "Slack refused: {error} — {fix}. Delivery for {scope} is paused and its messages stay queued; they go out in order once it is fixed (tried again on a slow backoff, at once after a reload)"
                );
            }
        }
    }

    /// A probe's message got an answer that was no refusal a person must fix: the route's
    /// pause ends.
    pub(super) fn resume_route(&mut self, index: usize) {
        let Some(route) = self.routes.get(index) else {
            return;
        };
        if let Some(pause) = self.pauses.routes.remove(&route.name) {
            self.resumed(&route.name, &pause);
        }
    }

    fn resumed(&self, route: &str, pause: &Pause) {
        let paused_s = self
            .clock
            .now()
            .duration_since(pause.since)
            .as_secs()
            .max(0);
        tracing::info!(
            route,
            error = %pause.error,
            paused_s,
            "Slack takes messages again; delivery resumes with the messages queued meanwhile, in order"
        );
    }

    /// The token's probe, when due: `auth.test`. Shutdown abandons it.
    pub(super) async fn probe_token(&mut self, shutdown: &CancellationToken) {
        let now = self.clock.now();
        if self
            .pauses
            .token
            .as_ref()
            .is_none_or(|p| p.next_try_at > now)
        {
            return;
        }
        let Transport::Slack { api: Some(api), .. } = &self.transport else {
            return;
        };
        let api = api.clone();
        let answer = tokio::select! {
            answer = api.auth_test() => answer,
            _ = shutdown.cancelled() => return,
        };
        match answer {
            Ok(_) => {
                if let Some(pause) = self.pauses.token.take() {
                    self.resumed("*", &pause);
                }
            }
            // No answer about the token (the network, Slack's 5xx, a rate limit): ask again
            // on the same rhythm, and say so as what it is.
            Err(e @ (ApiError::Temporary(_) | ApiError::RateLimited { .. })) => {
                if let Some(pause) = self.pauses.token.as_mut() {
                    let wait = pause.unanswered(now);
                    tracing::warn!(
                        answer = %e,
                        retry_in_s = wait.as_secs(),
                        "auth.test: could not ask Slack about the bot token; the messages stay queued"
                    );
                }
            }
            Err(e) => {
                let word = e.to_string();
                let fix = self
                    .pauses
                    .token
                    .as_ref()
                    .map(|p| p.fix.clone())
                    .unwrap_or_default();
                if let Some(pause) = self.pauses.token.as_mut() {
                    let error = e.slack_error().unwrap_or(&pause.error).to_owned();
                    let wait = pause.refused_again(&error, &fix, now);
                    tracing::warn!(
                        answer = %word,
                        retry_in_s = wait.as_secs(),
                        "auth.test: Slack still refuses the bot token: {fix}; the messages stay queued"
                    );
                }
            }
        }
    }

    /// After a reload: take over what the old deliverer knew was paused, to be tried at once.
    pub(super) fn take_over_pauses(&mut self, mut old: Pauses) {
        let app: Vec<String> = self.app_routes().map(str::to_owned).collect();
        old.retry_now(self.clock.now(), |name| app.iter().any(|a| a == name));
        if app.is_empty() {
            old.token = None;
        }
        self.pauses = old;
    }

    /// When the next message may go, over all routes: a paused route's messages wait for its
    /// next try, and while the token is refused, for `auth.test`'s.
    pub fn next_due(&self, store: &Store) -> Result<Option<Timestamp>, StoreError> {
        if self.pauses.token.is_none() && self.pauses.routes.is_empty() {
            return store.next_due();
        }
        let mut next = self.pauses.token.as_ref().map(|p| p.next_try_at);
        for row in store.pending_rows()? {
            let at = match self.pause_of(self.route(&row.pipeline)) {
                Some((_, true)) => continue,
                Some((pause, false)) => row.next_attempt_at.max(pause.next_try_at),
                None => row.next_attempt_at,
            };
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        Ok(next)
    }

    /// Tells the store and the metrics what is paused, when that changed.
    pub(super) fn record_pauses(&mut self, store: &Store) -> Result<(), StoreError> {
        let rows = self.pause_rows();
        if self.pauses.stored.as_ref() == Some(&rows) {
            return Ok(());
        }
        let paused: BTreeMap<String, Option<String>> = self
            .app_routes()
            .map(|name| {
                let error = rows
                    .iter()
                    .find(|r| r.route == name)
                    .map(|r| r.error.clone());
                (name.to_owned(), error)
            })
            .collect();
        crate::metrics::slack_routes_paused(paused);
        store.set_paused_routes(&rows)?;
        self.pauses.stored = Some(rows);
        Ok(())
    }
}
