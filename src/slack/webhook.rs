//! The only module that speaks HTTP to Slack: posts one payload to an incoming webhook and
//! classifies the answer. Errors never carry the webhook URL.

use std::time::Duration;

use crate::config::SecretUrl;
use crate::http::{describe, read_bounded, retry_after};
use crate::slack::clip::clip;

/// Slack's answer, as far as delivery cares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// 429: wait `Retry-After` (when given) before the next message to this webhook.
    #[error("rate limited by Slack (HTTP 429{})", .retry_after.map(|d| format!(", Retry-After {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, timeouts, connection errors: try again later.
    #[error("{0}")]
    Temporary(String),
    /// Any other answer (`invalid_payload`, `no_service`, …): retrying cannot help.
    #[error("HTTP {status}: {body}")]
    Permanent { status: u16, body: String },
}

/// A request gives up after this long, so a hanging Slack never stalls a cycle.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack's error bodies are short words; anything longer is cut for the log.
const MAX_BODY_IN_ERROR: usize = 300;

#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
}

impl SlackClient {
    pub fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // Webhooks never redirect; following one could carry the payload anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("approval-watch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }

    pub async fn post(
        &self,
        webhook: &SecretUrl,
        payload: &serde_json::Value,
    ) -> Result<(), SendError> {
        let mut response = self
            .http
            .post(webhook.expose().clone())
            .json(payload)
            .send()
            .await
            .map_err(|e| {
                SendError::Temporary(redact(&describe(e).to_string(), webhook.expose()))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = retry_after(&response);
        // Only the start matters; a failure part way leaves what came before.
        let body = read_bounded(&mut response, MAX_ERROR_BODY_BYTES).await;
        let body = String::from_utf8_lossy(&body.bytes);
        // A proxy's error page may repeat the request line: the secret must not ride along
        // into logs and `status`.
        let body = clip(redact(&body, webhook.expose()).trim(), MAX_BODY_IN_ERROR);
        Err(match status.as_u16() {
            429 => SendError::RateLimited { retry_after },
            code @ 500..=599 => SendError::Temporary(format!("HTTP {code}: {body}")),
            // 408 is the server giving up waiting, not a verdict on the message.
            408 => SendError::Temporary(format!("HTTP 408: {body}")),
            code => SendError::Permanent { status: code, body },
        })
    }
}

/// Error pages are short; a hostile or broken endpoint's may not be. At most this much is read
/// (the rest is dropped with the connection), and only the first line's start is kept.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Stands in for the webhook URL, or a part of it, in text from outside.
const REDACTED: &str = "<webhook>";

/// `text` without the webhook URL, its path, or any longer path segment (the secret part),
/// however they appear in it.
fn redact(text: &str, webhook: &url::Url) -> String {
    let mut needles: Vec<&str> = vec![webhook.as_str(), webhook.path()];
    needles.extend(webhook.path().split('/'));
    needles.extend(webhook.query());
    needles.retain(|n| n.len() > 8);
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = text.to_owned();
    for needle in needles {
        if out.contains(needle) {
            out = out.replace(needle, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_the_url_its_path_and_its_secret_segments() {
        let url =
            url::Url::parse("https://hooks.slack.com/services/T0ABC/B0DEF12345/s3cr3tT0k3nXYZ")
                .unwrap();
        let text = "Cannot POST /services/T0ABC/B0DEF12345/s3cr3tT0k3nXYZ \
                    (https://hooks.slack.com/services/T0ABC/B0DEF12345/s3cr3tT0k3nXYZ); \
                    token s3cr3tT0k3nXYZ invalid";
        let out = redact(text, &url);
        assert!(!out.contains("s3cr3tT0k3nXYZ"), "{out}");
        assert!(!out.contains("B0DEF12345"), "{out}");
        assert!(
            out.starts_with("Cannot POST <webhook> (<webhook>); token <webhook> invalid"),
            "{out}"
        );
        assert_eq!(redact("no_service", &url), "no_service");
    }
}
