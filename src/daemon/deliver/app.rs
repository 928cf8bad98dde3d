//! App mode: a route's messages posted with the bot token. The alert is one top-level
//! message whose channel and `ts` are stored; reminders reply in its thread; the resolution
//! edits the alert and replies in the thread. Paced per channel, `chat.update` included.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{
    Captured, DEFAULT_RATE_LIMIT_WAIT, Deliverer, MAX_INLINE_WAIT, MAX_INLINE_WAITS, RateLimiter,
    Sent, Transport, Wait, backoff, later, log_message,
};
use crate::slack::edits::EditGuard;
use crate::slack::web_api::{self, ApiError, UPDATE_FALLBACK_ERRORS};
use crate::store::{OutboxMessage, Store, StoreError};
use approval_watch_core::model::{MessageKind, SlackMessage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    PostMessage,
    Update,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Self::PostMessage => "chat.postMessage",
            Self::Update => "chat.update",
        }
    }
}

/// Why a call did not go through.
enum Stop {
    Interrupted,
    /// Not yet: the channel's pace, or a click editing the same alert.
    Busy(Wait),
    Error(ApiError),
}

/// A `chat.postMessage` body: the rendered message in `channel`, as a reply in `thread`
/// when given (also shown in the channel when `broadcast`).
fn post_body(
    payload: &Value,
    channel: &str,
    thread: Option<&SlackMessage>,
    broadcast: bool,
) -> Value {
    let mut body = json!({
        "channel": thread.map_or(channel, |t| t.channel.as_str()),
        "unfurl_links": false,
        "unfurl_media": false,
    });
    for key in ["text", "blocks"] {
        if let Some(v) = payload.get(key) {
            body[key] = v.clone();
        }
    }
    if let Some(t) = thread {
        body["thread_ts"] = json!(t.ts);
        if broadcast {
            body["reply_broadcast"] = json!(true);
        }
    }
    body
}

/// A `chat.update` body: the alert at `target` replaced by `update`.
fn update_body(update: &Value, target: &SlackMessage) -> Value {
    let mut body = json!({ "channel": target.channel, "ts": target.ts });
    for key in ["text", "blocks"] {
        if let Some(v) = update.get(key) {
            body[key] = v.clone();
        }
    }
    body
}

impl Deliverer {
    /// One message to an app-mode route.
    pub(super) async fn send_app(
        &mut self,
        route: &str,
        channel: &str,
        message: &OutboxMessage,
        store: &Store,
        shutdown: &CancellationToken,
    ) -> Result<Sent, StoreError> {
        // An alert posted earlier in this pass is not in `message.thread` yet.
        let thread = message
            .thread
            .clone()
            .or_else(|| self.threads.get(&message.approval_id).cloned());
        let result = match message.kind {
            MessageKind::Alert => {
                let payload = if self.buttons.contains(route) {
                    approval_watch_core::render::with_buttons(
                        message.payload.clone(),
                        message.approval_id,
                        &message.key,
                    )
                } else {
                    message.payload.clone()
                };
                let body = post_body(&payload, channel, None, false);
                match self
                    .call(route, message, Method::PostMessage, body, None, shutdown)
                    .await
                {
                    Ok(posted) => return self.alert_posted(route, message, posted, store),
                    Err(stop) => Err(stop),
                }
            }
            MessageKind::Digest => {
                // The day's list is a top-level message of its own, in no approval's thread.
                let body = post_body(&message.payload, channel, None, false);
                self.call(route, message, Method::PostMessage, body, None, shutdown)
                    .await
                    .map(drop)
            }
            MessageKind::Reminder => {
                // Without a stored alert (posted by webhook, or refused) it stands alone.
                let body = post_body(
                    &message.payload,
                    channel,
                    thread.as_ref(),
                    message.app.broadcast,
                );
                let ts = thread.as_ref().map(|t| t.ts.clone());
                self.call(route, message, Method::PostMessage, body, ts, shutdown)
                    .await
                    .map(drop)
            }
            MessageKind::Resolution => {
                match self
                    .resolve(route, channel, message, thread.as_ref(), shutdown)
                    .await
                {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        self.edited.remove(&message.id);
                        store.mark_dropped(message.id, "no posted alert to update")?;
                        return Ok(Sent::Dropped);
                    }
                    Err(stop) => Err(stop),
                }
            }
        };
        match result {
            Ok(()) => {
                self.edited.remove(&message.id);
                self.delivered(message, route, store)?;
                Ok(Sent::Delivered)
            }
            Err(Stop::Interrupted) => Ok(Sent::Interrupted),
            Err(Stop::Busy(wait)) => Ok(Sent::Busy(wait)),
            Err(Stop::Error(e)) => {
                let sent = self.app_failed(route, channel, message, e, store)?;
                if matches!(sent, Sent::Failed) {
                    self.edited.remove(&message.id);
                }
                Ok(sent)
            }
        }
    }

    /// The resolution: the alert edited to show the outcome, then the reply in its thread
    /// (unless the route does not tell resolutions). When the alert cannot be edited, the
    /// resolution is posted instead. `Ok(false)`: nothing to send.
    async fn resolve(
        &mut self,
        route: &str,
        channel: &str,
        message: &OutboxMessage,
        thread: Option<&SlackMessage>,
        shutdown: &CancellationToken,
    ) -> Result<bool, Stop> {
        // Where the resolution is posted: a reply in this thread, or (`None`) a message of its
        // own.
        let edited = self.edited.get(&message.id).cloned();
        let posted_in = match (thread, message.app.update.as_ref(), edited) {
            // Edited already (earlier in the pass, before the channel's pace held the reply).
            (_, _, Some(posted_in)) => posted_in,
            (Some(target), Some(update), None) => {
                // A click's interim edit of this alert in flight must land first, never after.
                let Ok(_edit) = self.edit_lock(target) else {
                    tracing::info!(
                        pipeline = %message.key.pipeline,
                        route,
                        "a decision from Slack is editing the alert; the resolution waits for that edit to land"
                    );
                    return Err(Stop::Busy(Wait::Edit));
                };
                let body = update_body(update, target);
                let ts = Some(target.ts.clone());
                let posted_in = match self
                    .call(route, message, Method::Update, body, ts, shutdown)
                    .await
                {
                    Ok(_) if message.app.reply => thread,
                    Ok(_) => return Ok(true),
                    Err(Stop::Error(ApiError::Permanent { error }))
                        if UPDATE_FALLBACK_ERRORS.contains(&error.as_str()) =>
                    {
                        tracing::warn!(
                            pipeline = %message.key.pipeline,
                            route,
                            "chat.update answered {error}; the resolution is posted as a new message"
                        );
                        // Gone: a message of its own; only too old to edit: a reply still fits.
                        if error == "message_not_found" {
                            None
                        } else {
                            thread
                        }
                    }
                    Err(stop) => return Err(stop),
                };
                // The reply may have to wait for the channel's pace: not edited again then.
                self.edited.insert(message.id, posted_in.cloned());
                posted_in.cloned()
            }
            // Nothing to edit (the alert went out by webhook, or was queued by an older
            // version): a reply in its thread when there is one, else a message of its own.
            _ if message.app.reply => thread.cloned(),
            _ => return Ok(false),
        };
        let posted_in = posted_in.as_ref();
        let body = post_body(&message.payload, channel, posted_in, false);
        let ts = posted_in.map(|t| t.ts.clone());
        self.call(route, message, Method::PostMessage, body, ts, shutdown)
            .await?;
        Ok(true)
    }

    /// One Web API call, paced per channel (`Busy` when the channel's next slot is later),
    /// waiting out short rate limits. In the dry run,
    /// captured instead. `target_ts`: the message replied to or updated, for the dry run.
    async fn call(
        &mut self,
        route: &str,
        message: &OutboxMessage,
        method: Method,
        body: Value,
        target_ts: Option<String>,
        shutdown: &CancellationToken,
    ) -> Result<Option<SlackMessage>, Stop> {
        let Self {
            transport,
            limiters,
            ..
        } = self;
        let api = match transport {
            Transport::Capture(captured) => {
                captured.push(Captured {
                    route: route.to_owned(),
                    message: message.clone(),
                    payload: body,
                    method: Some(method.as_str()),
                    ts: target_ts,
                });
                return Ok(None);
            }
            Transport::Slack { api: Some(api), .. } => &*api,
            Transport::Slack { api: None, .. } => {
                return Err(Stop::Error(ApiError::Permanent {
                    error: "no bot token configured".into(),
                }));
            }
        };
        let channel = body
            .get("channel")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Slack's guidance: one message a second per channel, no burst promised.
        let limiter = limiters
            .entry(format!("channel {channel}"))
            .or_insert_with(|| RateLimiter::with_burst(1.0));
        if let Err(at) = limiter.try_acquire() {
            return Err(Stop::Busy(Wait::Until(at)));
        }
        let mut inline_waits = 0;
        loop {
            if inline_waits > 0 && !limiter.acquire(shutdown).await {
                return Err(Stop::Interrupted);
            }
            let result = match method {
                Method::PostMessage => api.post_message(&body).await,
                Method::Update => api.update(&body).await.map(|()| None),
            };
            match result {
                Err(ApiError::RateLimited { retry_after }) => {
                    limiter.drain();
                    let wait = retry_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT);
                    if wait <= MAX_INLINE_WAIT && inline_waits < MAX_INLINE_WAITS {
                        crate::metrics::slack_failure(crate::metrics::SlackFailure::RateLimited);
                        tracing::warn!(
                            route,
                            method = method.as_str(),
                            retry_after_s = wait.as_secs(),
                            "Slack rate limit; waiting before the next call"
                        );
                        inline_waits += 1;
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => continue,
                            _ = shutdown.cancelled() => {}
                        }
                    }
                    return Err(Stop::Error(ApiError::RateLimited {
                        retry_after: Some(wait),
                    }));
                }
                Err(e) => return Err(Stop::Error(e)),
                Ok(posted) => return Ok(posted),
            }
        }
    }

    /// The right to edit `target` now (`Ok(None)` in the dry run, which edits nothing), or
    /// `Err` while a click's edit of it is in flight.
    fn edit_lock(&self, target: &SlackMessage) -> Result<Option<EditGuard>, ()> {
        match &self.transport {
            Transport::Slack { api: Some(api), .. } => {
                api.edits().try_lock(target).map(Some).ok_or(())
            }
            _ => Ok(None),
        }
    }

    /// The alert is out: delivered, and where it went, in one transaction.
    fn alert_posted(
        &mut self,
        route: &str,
        message: &OutboxMessage,
        posted: Option<SlackMessage>,
        store: &Store,
    ) -> Result<Sent, StoreError> {
        let Some(posted) = posted else {
            // The dry run posted nothing. From Slack: it took the alert (`ok`) without saying
            // where (no `ts`, or an answer too large to read). Posting again would repeat it.
            if matches!(self.transport, Transport::Slack { .. }) {
                tracing::warn!(
                    pipeline = %message.key.pipeline,
                    stage = %message.key.stage,
                    action = %message.key.action,
                    route,
                    "Slack took the alert but its answer did not say where it is (no ts, or too large to read); marked delivered without a thread: its reminders and resolution are posted as messages of their own"
                );
            }
            self.delivered(message, route, store)?;
            return Ok(Sent::Delivered);
        };
        crate::metrics::message_sent(message.kind);
        let now = self.clock.now();
        self.threads.insert(message.approval_id, posted.clone());
        if let Err(e) = store.mark_posted(message.id, now, &posted) {
            self.unmarked.insert(message.id, now);
            self.unmarked_posted.insert(message.id, posted);
            return Err(e);
        }
        log_message(message, route, "posted to Slack");
        Ok(Sent::Delivered)
    }

    fn delivered(
        &mut self,
        message: &OutboxMessage,
        route: &str,
        store: &Store,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        if matches!(self.transport, Transport::Slack { .. }) {
            crate::metrics::message_sent(message.kind);
        }
        if let Err(e) = store.mark_delivered(message.id, now) {
            self.unmarked.insert(message.id, now);
            return Err(e);
        }
        log_message(message, route, "posted to Slack");
        Ok(())
    }

    /// A call failed: retry later; wait for a person to fix the token or the channel (the
    /// route pauses); or, refused for the message itself, fail it.
    fn app_failed(
        &mut self,
        route: &str,
        channel: &str,
        message: &OutboxMessage,
        error: ApiError,
        store: &Store,
    ) -> Result<Sent, StoreError> {
        let now = self.clock.now();
        match &error {
            ApiError::Permanent { error } => match web_api::metric_error(error) {
                Some(word) => crate::metrics::slack_error(word),
                None => crate::metrics::slack_failure(crate::metrics::SlackFailure::Permanent),
            },
            ApiError::RateLimited { .. } => {
                crate::metrics::slack_failure(crate::metrics::SlackFailure::RateLimited)
            }
            ApiError::Temporary(_) => {
                crate::metrics::slack_failure(crate::metrics::SlackFailure::Temporary)
            }
        }
        match error {
            ApiError::RateLimited { retry_after } => {
                // Capped like the webhooks' waits: a huge Retry-After must not hold the queue.
                let (wait, _) = super::rate_limit_wait(retry_after);
                tracing::warn!(
                    pipeline = %message.key.pipeline,
                    route,
                    retry_after_s = wait.as_secs(),
                    "Slack rate limit; the message waits"
                );
                store.mark_retry(message.id, later(now, wait), "rate limited")?;
                Ok(Sent::Deferred)
            }
            ApiError::Temporary(why) => {
                let wait = backoff(message.attempts);
                store.mark_retry(message.id, later(now, wait), &why)?;
                tracing::warn!(
                    pipeline = %message.key.pipeline,
                    kind = message.kind.as_str(),
                    route,
                    attempt = message.attempts + 1,
                    retry_in_s = wait.as_secs(),
                    "Slack delivery failed: {why}"
                );
                Ok(Sent::Deferred)
            }
            ApiError::Permanent { error } => {
                // Replies and edits go to the alert's channel, which may no longer be the
                // route's (the route was moved off an archived channel, say).
                let called = match message.kind {
                    MessageKind::Reminder | MessageKind::Resolution => message
                        .thread
                        .as_ref()
                        .map_or(channel, |t| t.channel.as_str()),
                    MessageKind::Alert | MessageKind::Digest => channel,
                };
                let advice = web_api::advice(&error, called, &self.token_key);
                if let (Some(refusal), Some(fix)) = (web_api::refusal(&error), &advice) {
                    // Pausing for a channel the route no longer posts to would hold its new
                    // alerts for good: that one message is refused instead.
                    if refusal == web_api::Refusal::Token || called == channel {
                        self.pause(route, refusal, &error, fix);
                        return Ok(Sent::Paused);
                    }
                }
                if super::shorter::shorter_digest(message, &error, route, store)?.is_some() {
                    return Ok(Sent::Again);
                }
                let text = match advice {
                    Some(advice) => format!("Slack: {error} — {advice}"),
                    None => format!("Slack: {error}"),
                };
                store.mark_failed(message.id, &text)?;
                // Once per route and error at ERROR: the fix is the same for every message.
                if self.told.insert((route.to_owned(), error.clone())) {
                    tracing::error!(
                        pipeline = %message.key.pipeline,
                        kind = message.kind.as_str(),
                        route,
                        "Slack refused the message; it will not be retried. {text}"
                    );
                } else {
                    tracing::warn!(
                        pipeline = %message.key.pipeline,
                        kind = message.kind.as_str(),
                        route,
                        "Slack refused the message: {error}"
                    );
                }
                Ok(Sent::Failed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> SlackMessage {
        SlackMessage {
            channel: "C0PAYMENTS1".into(),
            ts: "1700000000.000100".into(),
        }
    }

    #[test]
    fn a_reply_names_its_thread_and_broadcasts_only_when_asked() {
        let payload = json!({"text": "t", "blocks": [], "unfurl_links": false});
        let top = post_body(&payload, "C1", None, true);
        assert_eq!(top["channel"], "C1");
        assert!(top.get("thread_ts").is_none());
        assert!(top.get("reply_broadcast").is_none(), "{top}");
        let reply = post_body(&payload, "C1", Some(&thread()), false);
        assert_eq!(reply["channel"], "C0PAYMENTS1");
        assert_eq!(reply["thread_ts"], "1700000000.000100");
        assert!(reply.get("reply_broadcast").is_none());
        let loud = post_body(&payload, "C1", Some(&thread()), true);
        assert_eq!(loud["reply_broadcast"], true);
        assert_eq!(loud["unfurl_links"], false);
    }

    #[test]
    fn an_update_targets_the_alert() {
        let body = update_body(&json!({"text": "done", "blocks": [1]}), &thread());
        assert_eq!(
            body,
            json!({"channel": "C0PAYMENTS1", "ts": "1700000000.000100", "text": "done", "blocks": [1]})
        );
    }
}
