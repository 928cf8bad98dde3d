//! The Slack Web API (app mode): `chat.postMessage`, `chat.update`, `auth.test` with the bot
//! token, each answer classified. The token travels only in the `Authorization` header and
//! never appears in an error.

use std::time::Duration;

use serde_json::Value;

use crate::config::BotToken;

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

pub use crate::model::SlackMessage as Posted;

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
}

impl SlackApi {
    /// `base` ends with `/` (the config makes sure), so methods join onto it.
    pub fn new(base: url::Url, token: BotToken) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // A redirect could carry the Authorization header elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("approval-watch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, base, token })
    }

    /// `chat.postMessage`: the channel and `ts` of the posted message.
    pub async fn post_message(&self, body: &Value) -> Result<Posted, ApiError> {
        let answer = self.call("chat.postMessage", body).await?;
        posted(&answer).ok_or_else(|| {
            ApiError::Temporary("chat.postMessage answered ok without channel and ts".into())
        })
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
    /// IDs that do not look like Slack user IDs are left out; at most
    /// [`MAX_GROUP_MEMBERS`] are kept.
    pub async fn usergroup_members(&self, group: &str) -> Result<Vec<String>, ApiError> {
        let body = serde_json::json!({ "usergroup": group });
        let answer = self.call("usergroups.users.list", &body).await?;
        let users = answer
            .get("users")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ApiError::Temporary("usergroups.users.list answered ok without users".into())
            })?;
        Ok(users
            .iter()
            .filter_map(Value::as_str)
            .filter(|u| is_user_id(u))
            .take(MAX_GROUP_MEMBERS)
            .map(str::to_owned)
            .collect())
    }

    /// One Web API call; `Ok` is the answer of an `"ok": true`.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        let url = self
            .base
            .join(method)
            .map_err(|e| ApiError::Temporary(format!("{method}: bad URL: {e}")))?;
        let mut response = self
            .http
            .post(url)
            .bearer_auth(self.token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| ApiError::Temporary(format!("{method}: {}", describe(e))))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.as_u16() == 429 {
            return Err(ApiError::RateLimited { retry_after });
        }
        let bytes = read_bounded(&mut response)
            .await
            .map_err(|e| ApiError::Temporary(format!("{method}: {e}")))?;
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
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::Temporary(format!("{method}: the answer is not JSON (HTTP 200)"))
        })?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(answer);
        }
        let error = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        let error = clip(&redact(error, self.token.expose()), MAX_ERROR_CHARS);
        Err(match error.as_str() {
            "ratelimited" | "rate_limited" => ApiError::RateLimited { retry_after },
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                ApiError::Temporary(format!("{method}: {error}"))
            }
            _ => ApiError::Permanent { error },
        })
    }
}

/// More members than this in one group is not a team that approves deployments.
pub const MAX_GROUP_MEMBERS: usize = 10_000;

/// A Slack user ID: `U` or `W`, then uppercase letters and digits.
pub fn is_user_id(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && s.starts_with(['U', 'W'])
        && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn posted(answer: &Value) -> Option<Posted> {
    let channel = answer.get("channel")?.as_str()?;
    let ts = answer.get("ts")?.as_str()?;
    Some(Posted {
        channel: channel.to_owned(),
        ts: ts.to_owned(),
    })
}

/// The body, up to [`MAX_RESPONSE_BYTES`]; a longer one is an error, not a truncated answer.
async fn read_bounded(response: &mut reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "the answer is larger than {} KiB",
                        MAX_RESPONSE_BYTES / 1024
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(describe(e)),
        }
    }
}

/// A transport error in words (the URL holds no secret, but is left out for brevity).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

fn redact(text: &str, token: &str) -> String {
    text.replace(token, "<token>")
}

/// At most `max` characters, with control characters shown as `?` (answers are outside text).
fn clip(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
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
    fn metric_labels_are_bounded() {
        assert_eq!(metric_error("invalid_auth"), Some("invalid_auth"));
        assert_eq!(metric_error("is_archived"), Some("is_archived"));
        assert_eq!(metric_error("whatever_slack_invents"), None);
    }

    #[test]
    fn clip_bounds_and_neutralises_control_characters() {
        assert_eq!(clip("a\nb", 10), "a?b");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
