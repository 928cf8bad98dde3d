//! The Slack Web API (app mode): `chat.postMessage`, `chat.update`, `auth.test` with the bot
//! token, each answer classified. The token travels only in the `Authorization` header and
//! never appears in an error.

use std::time::Duration;

use serde_json::Value;

use crate::config::{AppLevelToken, BotToken, is_user_id};
use crate::http::{BodyEnd, describe, read_bounded, retry_after};
use crate::slack::clip::clip;
use crate::slack::edits::EditLocks;

/// A Web API answer, as far as delivery cares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// HTTP 429 (or `ratelimited`): wait `Retry-After`, then retry.
    #[error("rate limited by Slack{}", .retry_after.map(|d| format!(" (Retry-After {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, timeouts, connection errors, an unreadable answer: the retry schedule applies.
    #[error("{0}")]
    Temporary(String),
    /// Slack's `error` word (or `HTTP 4xx`): retrying cannot help.
    #[error("{error}")]
    Permanent { error: String },
}

impl ApiError {
    /// Slack's error word, when it answered with one.
    pub fn slack_error(&self) -> Option<&str> {
        match self {
            Self::Permanent { error } => Some(error),
            _ => None,
        }
    }
}

/// Errors that mean a person must fix the app's installation or the channel.
const AUTH_ERRORS: [&str; 4] = [
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "account_inactive",
];
const CHANNEL_ERRORS: [&str; 3] = ["channel_not_found", "not_in_channel", "is_archived"];
/// `chat.update` cannot edit the message: post the resolution as a new one.
pub const UPDATE_FALLBACK_ERRORS: [&str; 3] = [
    "message_not_found",
    "cant_update_message",
    "edit_window_closed",
];

/// Who must act on a refusal that is no fault of the message: delivery pauses until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The bot token was refused: every route posting with it waits.
    Token,
    /// The channel, or the app's scopes: the route waits.
    Route,
}

/// Whether `error` is a refusal a person must fix (the message waits for the fix) rather than
/// one about the message itself (`invalid_blocks`, `msg_too_long`: that message fails).
pub fn refusal(error: &str) -> Option<Refusal> {
    if AUTH_ERRORS.contains(&error) {
        Some(Refusal::Token)
    } else if CHANNEL_ERRORS.contains(&error) || error == "missing_scope" {
        Some(Refusal::Route)
    } else {
        None
    }
}

/// What to do about a permanent error, for the log and `test-slack`; `None` for the rest.
pub fn advice(error: &str, channel: &str, token_key: &str) -> Option<String> {
    if AUTH_ERRORS.contains(&error) {
        return Some(format!(
            "the bot token was refused: reinstall the app and put its Bot User OAuth Token (xoxb-…) in {token_key}"
        ));
    }
    match error {
        "missing_scope" => Some(
            "the app lacks the chat:write scope: add it under OAuth & Permissions and reinstall the app".to_owned(),
        ),
        "channel_not_found" | "not_in_channel" => Some(format!(
            "invite the app to {channel} (/invite @<app> in the channel)"
        )),
        "is_archived" => Some(format!(
            "{channel} is archived: unarchive it or route to another channel, then invite the app"
        )),
        _ => None,
    }
}

/// The `error` label for a permanent error: Slack's word when it is one a person must act on,
/// so the label set stays bounded; `None` for the rest.
pub fn metric_error(error: &str) -> Option<&str> {
    (AUTH_ERRORS.contains(&error) || CHANNEL_ERRORS.contains(&error) || error == "missing_scope")
        .then_some(error)
}

pub use approval_watch_core::model::SlackMessage as Posted;

/// Who the token belongs to (`auth.test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub team: String,
    pub user: String,
}

/// A request gives up after this long, so a hanging Slack never stalls a cycle.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Web API answers are a few KiB; a longer one is cut off and treated as unreadable.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Error words are short; anything longer is cut for the log.
const MAX_ERROR_CHARS: usize = 100;

#[derive(Clone)]
pub struct SlackApi {
    http: reqwest::Client,
    base: url::Url,
    token: BotToken,
    /// Who is editing which message, shared by every clone (the deliverer and the clicks).
    edits: EditLocks,
}

impl SlackApi {
    /// `base` ends with `/` (the config makes sure), so methods join onto it.
    pub fn new(base: url::Url, token: BotToken) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: http_client()?,
            base,
            token,
            edits: EditLocks::default(),
        })
    }

    /// The per-message edit locks every writer of an alert holds while its edit is in flight.
    pub fn edits(&self) -> &EditLocks {
        &self.edits
    }

    /// Holds the same edit locks as `other`: a reload's new client and the old service's
    /// clicks still in flight must not edit one message at once.
    pub fn share_edits_of(&mut self, other: &SlackApi) {
        self.edits = other.edits.clone();
    }

    /// `chat.postMessage`: the channel and `ts` of the posted message; `None` when Slack took
    /// it but its answer does not say where (no `ts`, or too large to read).
    pub async fn post_message(&self, body: &Value) -> Result<Option<Posted>, ApiError> {
        let answer = self.call("chat.postMessage", body).await?;
        Ok(posted(&answer))
    }

    /// `chat.update` of a message this token posted.
    pub async fn update(&self, body: &Value) -> Result<(), ApiError> {
        self.call("chat.update", body).await.map(drop)
    }

    /// `auth.test`: whether the token works, and for which workspace and bot user.
    pub async fn auth_test(&self) -> Result<Identity, ApiError> {
        let answer = self.call("auth.test", &serde_json::json!({})).await?;
        let field = |k: &str| {
            answer
                .get(k)
                .and_then(Value::as_str)
                .map(|s| clip(s, MAX_ERROR_CHARS))
                .unwrap_or_else(|| "?".to_owned())
        };
        Ok(Identity {
            team: field("team"),
            user: field("user"),
        })
    }

    /// `views.open`: shows `view` (a modal) to the user whose click brought `trigger_id`.
    /// Slack accepts the trigger for 3 s after the click (`expired_trigger_id` after).
    pub async fn views_open(&self, trigger_id: &str, view: &Value) -> Result<(), ApiError> {
        let body = serde_json::json!({ "trigger_id": trigger_id, "view": view });
        self.call("views.open", &body).await.map(drop)
    }

    /// `chat.postEphemeral`: `text` shown to `user` alone, in `channel`.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), ApiError> {
        let body = serde_json::json!({ "channel": channel, "user": user, "text": text });
        self.call("chat.postEphemeral", &body).await.map(drop)
    }

    /// `usergroups.users.list`: the user IDs in a user group (needs `usergroups:read`).
    /// IDs that do not look like Slack user IDs are left out. A group of more than
    /// [`MAX_GROUP_MEMBERS`] is [`GroupMembers::TooMany`]: none kept, since a list cut short
    /// would tell the members past the cut that they may not decide. A read method: its
    /// argument goes as a form field.
    pub async fn usergroup_members(&self, group: &str) -> Result<GroupMembers, ApiError> {
        const METHOD: &str = "usergroups.users.list";
        let fields = [("usergroup", group)];
        let answer = Self::send_within(
            &self.http,
            &self.base,
            self.token.expose(),
            METHOD,
            Body::Form(&fields),
            MAX_GROUP_ANSWER_BYTES,
        )
        .await?;
        let answer = match answer {
            Answer::Json(answer) => answer,
            Answer::TooLong { .. } => return Ok(GroupMembers::TooMany),
        };
        let users = answer
            .get("users")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::Temporary(format!("{METHOD} answered ok without users")))?;
        let members: Vec<String> = users
            .iter()
            .filter_map(Value::as_str)
            .filter(|u| is_user_id(u))
            .take(MAX_GROUP_MEMBERS + 1)
            .map(str::to_owned)
            .collect();
        Ok(if members.len() > MAX_GROUP_MEMBERS {
            GroupMembers::TooMany
        } else {
            GroupMembers::All(members)
        })
    }

    /// One Web API call with the bot token; `Ok` is the answer of an `"ok": true`.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        Self::send(
            &self.http,
            &self.base,
            self.token.expose(),
            method,
            Body::Json(body),
        )
        .await
    }

    /// One call with `token` (the bot token, or the app-level token for [`ConnectionOpener`])
    /// in the `Authorization` header, its arguments as JSON (write methods) or as a form (read
    /// methods, which Slack does not read from a JSON body). An answer longer than
    /// [`MAX_RESPONSE_BYTES`] is an error.
    async fn send(
        http: &reqwest::Client,
        base: &url::Url,
        token: &str,
        method: &str,
        body: Body<'_>,
    ) -> Result<Value, ApiError> {
        match Self::send_within(http, base, token, method, body, MAX_RESPONSE_BYTES).await? {
            Answer::Json(answer) => Ok(answer),
            // Slack echoes a posted message, so a big one can answer long: an answer that
            // begins `{"ok":true` says it was done, whatever the rest holds.
            Answer::TooLong { says_ok: true } => Ok(serde_json::json!({ "ok": true })),
            Answer::TooLong { says_ok: false } => Err(ApiError::Temporary(format!(
                "{method}: the answer is larger than {} KiB",
                MAX_RESPONSE_BYTES / 1024
            ))),
        }
    }

    /// [`SlackApi::send`], keeping at most `max_bytes` of the answer.
    async fn send_within(
        http: &reqwest::Client,
        base: &url::Url,
        token: &str,
        method: &str,
        body: Body<'_>,
        max_bytes: usize,
    ) -> Result<Answer, ApiError> {
        let url = base
            .join(method)
            .map_err(|e| ApiError::Temporary(format!("{method}: bad URL: {e}")))?;
        let request = http.post(url).bearer_auth(token);
        let request = match body {
            Body::Json(body) => request.json(body),
            Body::Form(fields) => request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(fields)
                        .finish(),
                ),
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| ApiError::Temporary(format!("{method}: {}", describe(e))))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        if status.as_u16() == 429 {
            return Err(ApiError::RateLimited { retry_after });
        }
        // A longer answer is never parsed: a truncated answer is no answer.
        let body = read_bounded(&mut response, max_bytes).await;
        let bytes = match body.end {
            BodyEnd::Complete => Ok(body.bytes),
            // What it begins with is all a cut answer can tell.
            BodyEnd::TooLong => Err(begins_ok(&body.bytes)),
            BodyEnd::Failed(e) => {
                return Err(ApiError::Temporary(format!("{method}: {}", describe(e))));
            }
        };
        match status.as_u16() {
            200 => {}
            code @ (408 | 500..=599) => {
                return Err(ApiError::Temporary(format!("{method}: HTTP {code}")));
            }
            code => {
                return Err(ApiError::Permanent {
                    error: format!("HTTP {code}"),
                });
            }
        }
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(says_ok) => return Ok(Answer::TooLong { says_ok }),
        };
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::Temporary(format!("{method}: the answer is not JSON (HTTP 200)"))
        })?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(Answer::Json(answer));
        }
        let error = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        let error = clip(&redact(error, token), MAX_ERROR_CHARS);
        Err(match error.as_str() {
            "ratelimited" | "rate_limited" => ApiError::RateLimited { retry_after },
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                ApiError::Temporary(format!("{method}: {error}"))
            }
            _ => ApiError::Permanent { error },
        })
    }
}

/// A call's arguments.
enum Body<'a> {
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

/// An answer of `"ok": true` that fit its bound, or one that did not.
enum Answer {
    Json(Value),
    /// Longer than the bound; `says_ok` when it begins `{"ok": true`.
    TooLong {
        says_ok: bool,
    },
}

/// The members of a user group, as `usergroups.users.list` told them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMembers {
    All(Vec<String>),
    /// More than [`MAX_GROUP_MEMBERS`] (or an answer longer than theirs would be).
    TooMany,
}

/// The largest groups read: well above the largest real ones (whole companies), so only a
/// hostile answer reaches it.
pub const MAX_GROUP_MEMBERS: usize = 100_000;
/// `usergroups.users.list`'s answer for [`MAX_GROUP_MEMBERS`] of the longest user IDs (20
/// characters, quoted, and a comma) and room for the rest: about 2.4 MB, read for this call
/// alone (every other answer stays within [`MAX_RESPONSE_BYTES`]).
const MAX_GROUP_ANSWER_BYTES: usize = MAX_GROUP_MEMBERS * 23 + 64 * 1024;
/// Idle connections kept per host: the click handlers in flight are bounded (see
/// `approve`), and this bounds what they leave behind, so descriptors stay bounded.
const MAX_IDLE_CONNECTIONS: usize = 8;

/// The one HTTP client setup for the Web API, whichever token it carries.
fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        // A redirect could carry the Authorization header elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
        .user_agent(concat!("approval-watch/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn posted(answer: &Value) -> Option<Posted> {
    let channel = answer.get("channel")?.as_str()?;
    let ts = answer.get("ts")?.as_str()?;
    Some(Posted {
        channel: channel.to_owned(),
        ts: ts.to_owned(),
    })
}

/// Whether `bytes` begin as `{"ok": true` (whitespace allowed), as Slack's answers do.
fn begins_ok(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    for expected in [&b"{"[..], b"\"ok\"", b":", b"true"] {
        rest = rest.trim_ascii_start();
        match rest.strip_prefix(expected) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.trim_ascii_start()
        .first()
        .is_some_and(|b| matches!(b, b',' | b'}'))
}

fn redact(text: &str, token: &str) -> String {
    text.replace(token, "<token>")
}

// ---------------------------------------------------------------------------------------------
// Socket Mode: `apps.connections.open` with the app-level token (see ARCHITECTURE.md,
// `socket_mode`).

/// Where the app-level token is configured, for advice when no key is given.
const APP_TOKEN_KEYS: &str = "slack.approvals.app_token_*";

/// Opens Socket Mode connections: `apps.connections.open` with the app-level token (`xapp-…`) in
/// the `Authorization` header only. The URL it returns carries a one-time ticket, so it is a
/// secret too: only its scheme and host ever reach a log or an error.
#[derive(Clone)]
pub struct ConnectionOpener {
    http: reqwest::Client,
    base: url::Url,
    token: AppLevelToken,
    token_key: String,
}

impl std::fmt::Debug for ConnectionOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionOpener")
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl ConnectionOpener {
    /// `base` is `[slack] api_url` (ends with `/`, as for [`SlackApi::new`]).
    pub fn new(base: url::Url, token: AppLevelToken) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: http_client()?,
            base,
            token,
            token_key: APP_TOKEN_KEYS.to_owned(),
        })
    }

    /// The config key the token came from, named by [`ConnectionOpener::advice`].
    pub fn with_token_key(mut self, key: impl Into<String>) -> Self {
        self.token_key = key.into();
        self
    }

    /// `apps.connections.open` → the WebSocket URL: `wss://` to any host, `ws://` only to a
    /// loopback host (the tests' fake). Anything else is refused, so the app token's ticket
    /// never travels in the clear.
    pub async fn open(&self) -> Result<url::Url, ApiError> {
        const METHOD: &str = "apps.connections.open";
        let answer = SlackApi::send(
            &self.http,
            &self.base,
            self.token.expose(),
            METHOD,
            Body::Json(&serde_json::json!({})),
        )
        .await?;
        let raw = answer
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::Temporary(format!("{METHOD} answered ok without a url")))?;
        socket_url(raw).map_err(|why| ApiError::Temporary(format!("{METHOD}: {why}")))
    }

    /// What a person must fix for a permanent error of [`ConnectionOpener::open`].
    pub fn advice(&self, error: &str) -> Option<String> {
        socket_advice(error, &self.token_key)
    }
}

/// What to do about a permanent error from `apps.connections.open`; `None` for the rest.
pub fn socket_advice(error: &str, token_key: &str) -> Option<String> {
    if AUTH_ERRORS.contains(&error) || error == "not_allowed_token_type" {
        return Some(format!(
            "the app-level token was refused: create one under Basic Information → App-Level Tokens with the connections:write scope and put it (xapp-…) in {token_key}"
        ));
    }
    match error {
        "missing_scope" => Some(format!(
            "the app-level token lacks the connections:write scope: create one with it and put it in {token_key}"
        )),
        _ => None,
    }
}

/// The URL `apps.connections.open` answered, if it is one to connect to. The error names the
/// scheme and host only: the query holds the ticket.
fn socket_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("the answered url is not a URL ({e})"))?;
    let host = match url.host() {
        Some(host) => host,
        None => return Err("the answered url has no host".to_owned()),
    };
    let loopback = match &host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    match url.scheme() {
        "wss" => Ok(url),
        "ws" if loopback => Ok(url),
        "ws" => Err(format!(
            "refused the unencrypted ws:// URL to {} (only wss://, or ws:// to a loopback host)",
            clip(&host.to_string(), MAX_ERROR_CHARS)
        )),
        other => Err(format!(
            "refused a {}:// URL (expected wss://)",
            clip(other, 20)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_says_what_to_fix() {
        let a = advice("not_in_channel", "C0PAYMENTS1", "slack.bot_token_env").unwrap();
        assert!(a.contains("invite the app to C0PAYMENTS1"), "{a}");
        let a = advice("token_revoked", "C1", "slack.bot_token_env").unwrap();
        assert!(a.contains("slack.bot_token_env"), "{a}");
        assert!(
            advice("missing_scope", "C1", "k")
                .unwrap()
                .contains("chat:write")
        );
        assert_eq!(advice("msg_too_long", "C1", "k"), None);
    }

    #[test]
    fn refusals_a_person_must_fix_are_told_from_refusals_of_the_message() {
        assert_eq!(refusal("token_revoked"), Some(Refusal::Token));
        assert_eq!(refusal("not_in_channel"), Some(Refusal::Route));
        assert_eq!(refusal("missing_scope"), Some(Refusal::Route));
        assert_eq!(refusal("invalid_blocks"), None);
        assert_eq!(refusal("msg_too_long"), None);
    }

    #[test]
    fn a_cut_answer_counts_as_ok_only_when_it_begins_so() {
        assert!(begins_ok(br#"{"ok":true,"channel":"C1","ts":"#));
        assert!(begins_ok(b" {\n \"ok\" : true }"));
        assert!(!begins_ok(br#"{"ok":false,"error":"#));
        assert!(!begins_ok(br#"{"ok":truest"#));
        assert!(!begins_ok(br#"{"pad":"x","ok":true"#));
        assert!(!begins_ok(b"<html>"));
    }

    #[test]
    fn metric_labels_are_bounded() {
        assert_eq!(metric_error("invalid_auth"), Some("invalid_auth"));
        assert_eq!(metric_error("is_archived"), Some("is_archived"));
        assert_eq!(metric_error("whatever_slack_invents"), None);
    }

    #[test]
    fn socket_urls_are_wss_or_loopback_ws_and_errors_hide_the_ticket() {
        for ok in [
            "wss://wss-primary.slack.com/link/?ticket=T1&app_id=A1",
            "wss://example.org/x",
            "ws://127.0.0.1:4000/link/?ticket=T1",
            "ws://[::1]:4000/link/",
            "ws://localhost:4000/",
        ] {
            assert!(socket_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ws://wss-primary.slack.com/link/?ticket=SECRETTICKET",
            "http://127.0.0.1/?ticket=SECRETTICKET",
            "https://slack.com/?ticket=SECRETTICKET",
            "not a url SECRETTICKET",
            "wss:///?ticket=SECRETTICKET",
        ] {
            let e = socket_url(bad).unwrap_err();
            assert!(!e.contains("SECRETTICKET"), "{e}");
        }
        assert!(
            socket_url("ws://10.0.0.1/")
                .unwrap_err()
                .contains("10.0.0.1")
        );
    }

    #[test]
    fn socket_advice_names_the_token_and_its_scope() {
        for error in ["invalid_auth", "not_allowed_token_type", "token_revoked"] {
            let a = socket_advice(error, "slack.approvals.app_token_env").unwrap();
            assert!(a.contains("xapp-"), "{a}");
            assert!(a.contains("connections:write"), "{a}");
            assert!(a.contains("slack.approvals.app_token_env"), "{a}");
        }
        assert!(
            socket_advice("missing_scope", "k")
                .unwrap()
                .contains("connections:write")
        );
        assert_eq!(socket_advice("internal_error", "k"), None);
    }
}
