//! Slack incoming-webhook payloads (Block Kit plus a top-level `text` fallback) for approval
//! alerts and their resolutions. Pure functions: no I/O and no clock (callers pass `now`).
//!
//! Every string that comes from AWS is user input. It is escaped before it goes into mrkdwn or
//! the top-level `text`, so it can neither mention `<!channel>` nor ping users nor forge links:
//! the only `<…>` sequences in the output are the links and dates built here.
//!
//! This file is the messages; the rules they are made with live beside it: `blocks.rs` (Block
//! Kit blocks within Slack's limits), `text.rs` (escaping, one line, truncation, names),
//! `links.rs` (console URLs, `<url|label>`, which URLs may be linked), `time.rs` (durations and
//! dates), `digest.rs` (the daily digest), `approvals.rs` (approving from Slack).

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::model::{Approval, ApprovalKey, DEFAULT_ACCOUNT, Outcome, Resolution, Revision};
use crate::remind::{Mention, ReminderDue};

mod approvals;
mod blocks;
mod digest;
mod links;
mod text;
mod time;

pub use approvals::{decided_alert, reject_modal, who_may, with_buttons};
pub use digest::{DIGEST_MAX_CHARS, digest, shorter_digest};
pub use links::{execution_url, pipeline_url, review_url};
pub use text::{escape_mrkdwn, reviewer_name};
pub use time::humanize;

use blocks::{MAX_BLOCKS, TEXT_MAX_CHARS, context, header, message, section};
use links::{link, link_opt, safe_url};
use text::{mrkdwn_field, name, non_blank, quote, truncate_mrkdwn};
use time::{slack_date, utc_minutes};

/// `username`, `icon_emoji`, `channel`: honoured by legacy incoming webhooks, ignored by new ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageOverrides {
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub channel: Option<String>,
}

impl MessageOverrides {
    pub fn fields(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("username", self.username.as_deref()),
            ("icon_emoji", self.icon_emoji.as_deref()),
            ("channel", self.channel.as_deref()),
        ]
    }
}

/// Budgets for single values, so that one oversized value cannot push the rest of a section
/// past the section limit.
const COMMIT_LINE_MAX_CHARS: usize = 300;
const FALLBACK_COMMENT_MAX_CHARS: usize = 500;

/// The message telling the channel that an approval is waiting.
pub fn alert(approval: &Approval, now: Timestamp) -> Value {
    let key = &approval.key;
    let pipeline_url = pipeline_url(&key.region, &key.pipeline);
    let expired = approval.expires_at <= now;

    // A clock slightly behind the one AWS stamped `waiting_since` with must not read as "in …".
    let waited = now
        .duration_since(approval.waiting_since)
        .max(SignedDuration::ZERO);
    let expiry = if expired {
        format!(
            "*Expired:* {} ({} ago)",
            slack_date(approval.expires_at),
            humanize(now.duration_since(approval.expires_at)),
        )
    } else {
        format!(
            "*Expires:* {} (in {})",
            slack_date(approval.expires_at),
            humanize(approval.expires_at.duration_since(now)),
        )
    };
    let mut facts = place_lines(key, &pipeline_url).to_vec();
    facts.extend([waiting_line(approval, waited), expiry]);

    let mut blocks = vec![
        header(&format!("Approval waiting: {}", key.pipeline)),
        section(&facts.join("\n")),
    ];
    blocks.extend(note(approval));
    let details: Vec<String> = [
        non_blank(approval.external_entity_link.as_deref()).map(external_link_line),
        execution_line(approval),
        approval.revision.as_ref().and_then(revision_line),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !details.is_empty() {
        blocks.push(section(&details.join("\n")));
    }
    blocks.push(links_section(key, &pipeline_url));

    let fallback = format!(
        "Approval waiting: {}, {} {}",
        subject(key),
        if expired { "expired" } else { "expires" },
        utc_minutes(approval.expires_at),
    );
    message(&fallback, blocks)
}

/// The message telling the channel how a waiting approval ended.
pub fn resolution(approval: &Approval, resolution: &Resolution) -> Value {
    let key = &approval.key;
    let pipeline_url = pipeline_url(&key.region, &key.pipeline);
    let reviewer = reviewer(resolution);
    let headline = headline(approval, resolution.outcome, reviewer.as_deref());
    let comment = non_blank(resolution.comment.as_deref());

    let mut facts = vec![format!(
        "{} *{}*",
        outcome_emoji(resolution.outcome),
        headline
    )];
    facts.extend(place_lines(key, &pipeline_url));
    facts.extend(execution_line(approval));

    let mut blocks = vec![section(&facts.join("\n"))];
    blocks.extend(comment.map(|c| comment_section(reviewer.as_deref(), c)));
    blocks.push(footer(&pipeline_url, resolution.at));

    let fallback = with_comment(format!("{headline}: {}", subject(key)), comment);
    message(&fallback, blocks)
}

/// The alert as it reads once its approval is resolved (app mode edits it in place): the
/// header says the outcome, then who decided, their comment and how long it waited.
pub fn resolved_alert(approval: &Approval, resolution: &Resolution) -> Value {
    let key = &approval.key;
    let pipeline_url = pipeline_url(&key.region, &key.pipeline);
    let reviewer = reviewer(resolution);
    let headline = headline(approval, resolution.outcome, reviewer.as_deref());
    let waited = resolution
        .at
        .duration_since(approval.waiting_since)
        .max(SignedDuration::ZERO);
    let word = match resolution.outcome {
        Outcome::Approved => "Approved",
        Outcome::Rejected => "Rejected",
        Outcome::Expired => "Expired",
        Outcome::Superseded => "Superseded",
        Outcome::PipelineDeleted => "Pipeline deleted",
        Outcome::Removed => "Removed",
    };
    let mut facts = vec![
        format!("{} *{}*", outcome_emoji(resolution.outcome), headline),
        format!("*Waited:* {}", humanize(waited)),
    ];
    facts.extend(place_lines(key, &pipeline_url));
    facts.extend(execution_line(approval));
    let mut blocks = vec![
        header(&format!(
            "{} {word}: {}",
            outcome_emoji(resolution.outcome),
            key.pipeline
        )),
        section(&facts.join("\n")),
    ];
    let comment = non_blank(resolution.comment.as_deref());
    blocks.extend(comment.map(|c| comment_section(reviewer.as_deref(), c)));
    blocks.extend(note(approval));
    blocks.push(footer(&pipeline_url, resolution.at));
    let fallback = with_comment(
        format!("{headline} after {}: {}", humanize(waited), subject(key)),
        comment,
    );
    message(&fallback, blocks)
}

/// A reminder that an approval is still waiting; the last one before expiry says so loudly.
pub fn reminder(approval: &Approval, due: &ReminderDue, now: Timestamp) -> Value {
    let key = &approval.key;
    let pipeline_url = pipeline_url(&key.region, &key.pipeline);
    let waited = now
        .duration_since(approval.waiting_since)
        .max(SignedDuration::ZERO);
    let left = approval
        .expires_at
        .duration_since(now)
        .max(SignedDuration::ZERO);
    let title = if due.expiry_warning {
        format!("Expires in {}: {}", humanize(left), key.pipeline)
    } else {
        format!("Still waiting for approval: {}", key.pipeline)
    };
    let mut lines = Vec::new();
    if due.expiry_warning {
        lines.push(format!(
            ":warning: *This approval expires in {}*, at {}. Unless someone approves it by then, the run fails.",
            humanize(left),
            slack_date(approval.expires_at),
        ));
    }
    lines.extend(place_lines(key, &pipeline_url));
    lines.extend(execution_line(approval));
    lines.push(waiting_line(approval, waited));
    if !due.expiry_warning {
        lines.push(format!(
            "*Expires:* {} (in {})",
            slack_date(approval.expires_at),
            humanize(left),
        ));
    }
    let mut blocks = vec![header(&title), section(&lines.join("\n"))];
    blocks.extend(note(approval));
    blocks.push(links_section(key, &pipeline_url));
    if due.number > 0 {
        blocks.push(context(&format!("Reminder {}", due.number)));
    }
    let fallback = if due.expiry_warning {
        format!(
            "Expires in {}: approval waiting for {}: {}",
            humanize(left),
            humanize(waited),
            subject(key)
        )
    } else {
        format!(
            "Still waiting for approval after {}: {}, expires {}",
            humanize(waited),
            subject(key),
            utc_minutes(approval.expires_at)
        )
    };
    message(&fallback, blocks)
}

/// Adds mentions (validated config values, not AWS text) in front of a message, where they
/// notify: the top-level `text` and a first section.
pub fn with_mentions(mut message: Value, mentions: &[&Mention]) -> Value {
    if mentions.is_empty() {
        return message;
    }
    let line = mentions
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(text) = message.get("text").and_then(Value::as_str) {
        let text = truncate_mrkdwn(&format!("{line} {text}"), TEXT_MAX_CHARS);
        message["text"] = Value::String(text);
    }
    if let Some(blocks) = message.get_mut("blocks").and_then(Value::as_array_mut) {
        // After the header, if any, so the header stays the message's title.
        let at = usize::from(blocks.first().and_then(|b| b.get("type")) == Some(&json!("header")));
        blocks.insert(at, section(&line));
        blocks.truncate(MAX_BLOCKS);
    }
    message
}

/// The body actually posted: a rendered message plus the route's legacy-webhook overrides
/// (`username`, `icon_emoji`, `channel`).
pub fn with_overrides(message: &Value, overrides: &MessageOverrides) -> Value {
    let mut payload = message.clone();
    if let Some(obj) = payload.as_object_mut() {
        for (key, value) in overrides.fields() {
            if let Some(value) = value {
                obj.insert(key.to_owned(), value.into());
            }
        }
    }
    payload
}

/// The test message: says plainly that it is one, where it came from, and which route.
pub fn test_message(destination: &str, host: &str) -> Value {
    let (destination, host) = (escape_mrkdwn(destination), escape_mrkdwn(host));
    let text = format!(
        "[TEST] approval-watch on {host}: test message for route {destination}. No approval is waiting; nothing to do."
    );
    json!({
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": format!(
                        ":test_tube: *[TEST] approval-watch test message*\nSent by `approval-watch test-slack` on *{host}* for route *{destination}*. No approval is waiting; nothing to do."
                    ),
                },
            }
        ],
    })
}

/// "web-app / Stage / Action (region)", escaped, for the one-line summaries; the account
/// is named too when several are configured.
fn subject(key: &ApprovalKey) -> String {
    let place = if key.account == DEFAULT_ACCOUNT {
        name(&key.region)
    } else {
        format!("{}, {}", name(&key.account), name(&key.region))
    };
    format!(
        "{} / {} / {} ({place})",
        name(&key.pipeline),
        name(&key.stage),
        name(&key.action),
    )
}

/// "*Region:* us-east-1", with the account when it is not the default one.
fn region_line(key: &ApprovalKey) -> String {
    if key.account == DEFAULT_ACCOUNT {
        format!("*Region:* {}", name(&key.region))
    } else {
        format!(
            "*Account:* {}\n*Region:* {}",
            name(&key.account),
            name(&key.region)
        )
    }
}

/// "Approved by alice@example.com", "Expired after 7 d without a decision", … as mrkdwn.
fn headline(approval: &Approval, outcome: Outcome, reviewer: Option<&str>) -> String {
    let by = |verb: &str| match reviewer {
        Some(r) => format!("{verb} by {}", name(r)),
        None => verb.to_owned(),
    };
    match outcome {
        Outcome::Approved => by("Approved"),
        Outcome::Rejected => by("Rejected"),
        Outcome::Expired => {
            // The configured timeout, not the time the expiry was noticed.
            let timeout = approval.expires_at.duration_since(approval.waiting_since);
            if timeout > SignedDuration::ZERO {
                format!("Expired after {} without a decision", humanize(timeout))
            } else {
                "Expired without a decision".to_owned()
            }
        }
        Outcome::Superseded => "Superseded by a newer run".to_owned(),
        Outcome::Removed => "Removed from the pipeline".to_owned(),
        Outcome::PipelineDeleted => "Pipeline deleted".to_owned(),
    }
}

fn outcome_emoji(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Approved => "✅",
        Outcome::Rejected => "❌",
        Outcome::Expired => "⌛",
        Outcome::Superseded => "↪️",
        Outcome::Removed => "✂️",
        Outcome::PipelineDeleted => "🗑️",
    }
}

/// The ExternalEntityLink: a link when it is a usable http(s) URL, otherwise escaped text.
fn external_link_line(raw: &str) -> String {
    format!("*Link:* {}", link_opt(Some(raw), raw))
}

/// "*Execution:* <url|896c834b>": which run waits, linked to its page in the console, so that
/// two runs of one pipeline waiting at once (PARALLEL mode) can be told apart.
fn execution_line(approval: &Approval) -> Option<String> {
    let id = non_blank(approval.pipeline_execution_id.as_deref())?.trim();
    let key = &approval.key;
    let url = execution_url(&key.region, &key.pipeline, id);
    let short: String = id.chars().take(8).collect();
    Some(format!("*Execution:* {}", link(&url, &short)))
}

/// "*Revision:* <url|8f2b1e4> Fix rounding…", or `None` when nothing is known.
fn revision_line(revision: &Revision) -> Option<String> {
    let url = non_blank(revision.url.as_deref());
    let short_id = non_blank(revision.revision_id.as_deref())
        .map(|id| id.trim().chars().take(7).collect::<String>());
    let id = match short_id {
        Some(short) => Some(link_opt(url, &short)),
        // Without an id there is nothing to show for an unusable URL.
        None => url.and_then(safe_url).map(|_| link_opt(url, "commit")),
    };
    // A commit message's first line says what it is.
    let first_line = revision
        .commit_message
        .as_deref()
        .and_then(|s| s.lines().map(str::trim).find(|l| !l.is_empty()))
        .map(|line| mrkdwn_field(line, COMMIT_LINE_MAX_CHARS));
    let parts: Vec<String> = id.into_iter().chain(first_line).collect();
    (!parts.is_empty()).then(|| format!("*Revision:* {}", parts.join(" ")))
}

/// Where the approval is: pipeline (linked), stage, action, region (and account). Every
/// message about one approval lists these.
fn place_lines(key: &ApprovalKey, pipeline_url: &str) -> [String; 4] {
    [
        format!("*Pipeline:* {}", link(pipeline_url, &key.pipeline)),
        format!("*Stage:* {}", name(&key.stage)),
        format!("*Action:* {}", name(&key.action)),
        region_line(key),
    ]
}

/// "*Waiting:* 5 min (since <date>)"
fn waiting_line(approval: &Approval, waited: SignedDuration) -> String {
    format!(
        "*Waiting:* {} (since {})",
        humanize(waited),
        slack_date(approval.waiting_since),
    )
}

/// The approval's CustomData as a quoted note, when it has any.
fn note(approval: &Approval) -> Option<Value> {
    non_blank(approval.custom_data.as_deref())
        .map(|data| section(&format!("*Note:*\n{}", quote(data))))
}

/// "*Review*  ·  Open pipeline": what a reader of a waiting approval's message does next.
fn links_section(key: &ApprovalKey, pipeline_url: &str) -> Value {
    section(&format!(
        "*{}*  ·  {}",
        link(&review_url(key), "Review"),
        link(pipeline_url, "Open pipeline"),
    ))
}

/// The reviewer's readable name, if the resolution names one.
fn reviewer(resolution: &Resolution) -> Option<String> {
    resolution
        .by
        .as_deref()
        .map(reviewer_name)
        .filter(|r| !r.trim().is_empty())
}

/// The reviewer's comment, quoted, under who wrote it when known.
fn comment_section(reviewer: Option<&str>, comment: &str) -> Value {
    let title = match reviewer {
        Some(r) => format!("*Comment from {}:*", name(r)),
        None => "*Comment:*".to_owned(),
    };
    section(&format!("{title}\n{}", quote(comment)))
}

/// A resolution's last line: the pipeline's link and when it was resolved.
fn footer(pipeline_url: &str, at: Timestamp) -> Value {
    context(&format!(
        "{}  ·  {}",
        link(pipeline_url, "Open pipeline"),
        slack_date(at),
    ))
}

/// A resolution's one-line fallback, with the comment (shortened) when there is one.
fn with_comment(mut fallback: String, comment: Option<&str>) -> String {
    if let Some(comment) = comment {
        fallback.push_str(&format!(
            " — \"{}\"",
            mrkdwn_field(comment, FALLBACK_COMMENT_MAX_CHARS)
        ));
    }
    fallback
}

#[cfg(test)]
mod tests;
