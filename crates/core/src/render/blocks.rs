//! Block Kit building blocks and Slack's limits on them: every message is made of these, so
//! no block can exceed a limit whatever text goes in.

use serde_json::{Value, json};

use super::text::{plain_text, truncate_mrkdwn};

/// Slack's limits for a header's plain_text, for section/context text and for the top-level
/// `text`, and for the number of blocks in a message.
pub(super) const HEADER_MAX_CHARS: usize = 150;
pub(super) const TEXT_MAX_CHARS: usize = 3000;
pub(super) const MAX_BLOCKS: usize = 50;

/// The payload itself; the top-level `text` is what notifications and screen readers show.
pub(super) fn message(fallback: &str, mut blocks: Vec<Value>) -> Value {
    blocks.truncate(MAX_BLOCKS);
    json!({
        "text": truncate_mrkdwn(fallback, TEXT_MAX_CHARS),
        "blocks": blocks,
        // Unfurling the release notes or the commit would bury the message under previews.
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

pub(super) fn header(text: &str) -> Value {
    json!({
        "type": "header",
        "text": { "type": "plain_text", "text": plain_text(text, HEADER_MAX_CHARS), "emoji": true },
    })
}

pub(super) fn section(mrkdwn: &str) -> Value {
    json!({ "type": "section", "text": mrkdwn_object(mrkdwn) })
}

pub(super) fn context(mrkdwn: &str) -> Value {
    json!({ "type": "context", "elements": [mrkdwn_object(mrkdwn)] })
}

/// `verbatim` stops Slack from turning bare text (`@here`, `#channel`, URLs) into mentions and
/// links on its own; the explicit `<…>` sequences built here still work.
fn mrkdwn_object(mrkdwn: &str) -> Value {
    json!({ "type": "mrkdwn", "text": truncate_mrkdwn(mrkdwn, TEXT_MAX_CHARS), "verbatim": true })
}
