//! A daily digest Slack refused for its size goes again once, shorter: the day's digest is
//! not lost to a limit Slack does not document (it has refused block messages far below its
//! 40,000 characters). The digest is rendered within a budget already; this is the fallback.

use crate::store::{OutboxMessage, Store, StoreError};
use approval_watch_core::model::MessageKind;
use approval_watch_core::render;

/// Slack's answers to a message too long for it: the text, the blocks as a whole, one block
/// past its limit (webhooks answer `invalid_blocks` for that too), or HTTP 413.
const TOO_LONG: &[&str] = &[
    "msg_too_long",
    "msg_blocks_too_long",
    "invalid_blocks",
    "HTTP 413",
];

fn is_too_long(refusal: &str) -> bool {
    TOO_LONG.iter().any(|word| refusal.contains(word))
}

/// When `message` is a digest refused (`refusal`, Slack's answer) for its size and it can be
/// cut: its shorter payload, stored in its place and returned, to be sent again at once.
/// `None`: it fails as any refused message does.
pub(super) fn shorter_digest(
    message: &OutboxMessage,
    refusal: &str,
    route: &str,
    store: &Store,
) -> Result<Option<serde_json::Value>, StoreError> {
    if message.kind != MessageKind::Digest || !is_too_long(refusal) {
        return Ok(None);
    }
    let Some(payload) = render::shorter_digest(&message.payload) else {
        return Ok(None);
    };
    store.retry_shorter(
        message.id,
        &payload,
        &format!("Slack: {refusal}; sent again shorter"),
    )?;
    tracing::warn!(
        route,
        refusal,
        "Slack refused the daily digest as too long; sending it again with half its lines"
    );
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::is_too_long;

    #[test]
    fn only_refusals_about_size_shorten_a_digest() {
        for refusal in [
            "msg_too_long",
            "Slack: msg_blocks_too_long",
            "HTTP 400: invalid_blocks",
            "HTTP 413: ",
        ] {
            assert!(is_too_long(refusal), "{refusal}");
        }
        for refusal in ["invalid_auth", "HTTP 404: no_service", "channel_not_found"] {
            assert!(!is_too_long(refusal), "{refusal}");
        }
    }
}
