//! Slack incoming-webhook payloads (Block Kit plus a top-level `text` fallback) for approval
//! alerts and their resolutions. Pure functions: no I/O and no clock (callers pass `now`).
//!
//! Every string that comes from AWS is user input. It is escaped before it goes into mrkdwn or
//! the top-level `text`, so it can neither mention `<!channel>` nor ping users nor forge links:
//! the only `<…>` sequences in the output are the links and dates built here.

use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::model::{Approval, ApprovalKey, DEFAULT_ACCOUNT, Outcome, Resolution, Revision};
use crate::remind::{Mention, ReminderDue};

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

mod approvals;
pub use approvals::{decided_alert, reject_modal, who_may, with_buttons};

/// Slack's limits for a header's plain_text, for section/context text and for the top-level
/// `text`, and for the number of blocks in a message.
const HEADER_MAX_CHARS: usize = 150;
const TEXT_MAX_CHARS: usize = 3000;
const MAX_BLOCKS: usize = 50;

/// Budgets for single values, so that one oversized value cannot push the rest of a section
/// (the links in particular) past the section limit. AWS names are at most 100 characters.
const NAME_MAX_CHARS: usize = 200;
const LINK_LABEL_MAX_CHARS: usize = 200;
const COMMIT_LINE_MAX_CHARS: usize = 300;
const FALLBACK_COMMENT_MAX_CHARS: usize = 500;
/// A longer URL is shown as text instead of linked: a URL cannot be shortened, and a huge one
/// would crowd everything else out of its section.
const URL_MAX_CHARS: usize = 1200;

const ELLIPSIS: char = '…';
/// Stands in for `|` in link labels, where `|` would end the label early.
const PIPE_LOOKALIKE: char = '¦';
const CONSOLE_PIPELINES: &str = "https://console.aws.amazon.com/codesuite/codepipeline/pipelines";

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
    let facts = [
        format!("*Pipeline:* {}", link(&pipeline_url, &key.pipeline)),
        format!("*Stage:* {}", name(&key.stage)),
        format!("*Action:* {}", name(&key.action)),
        region_line(key),
        format!(
            "*Waiting:* {} (since {})",
            humanize(waited),
            slack_date(approval.waiting_since),
        ),
        expiry,
    ]
    .join("\n");

    let mut blocks = vec![
        header(&format!("Approval waiting: {}", key.pipeline)),
        section(&facts),
    ];
    if let Some(data) = non_blank(approval.custom_data.as_deref()) {
        blocks.push(section(&format!("*Note:*\n{}", quote(data))));
    }
    let details: Vec<String> = [
        non_blank(approval.external_entity_link.as_deref()).map(external_link_line),
        approval.revision.as_ref().and_then(revision_line),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !details.is_empty() {
        blocks.push(section(&details.join("\n")));
    }
    blocks.push(section(&format!(
        "*{}*  ·  {}",
        link(&review_url(key), "Review"),
        link(&pipeline_url, "Open pipeline"),
    )));

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
    let reviewer = resolution
        .by
        .as_deref()
        .map(reviewer_name)
        .filter(|r| !r.trim().is_empty());
    let headline = headline(approval, resolution.outcome, reviewer.as_deref());
    let comment = non_blank(resolution.comment.as_deref());

    let facts = [
        format!("{} *{}*", outcome_emoji(resolution.outcome), headline),
        format!("*Pipeline:* {}", link(&pipeline_url, &key.pipeline)),
        format!("*Stage:* {}", name(&key.stage)),
        format!("*Action:* {}", name(&key.action)),
        region_line(key),
    ]
    .join("\n");

    let mut blocks = vec![section(&facts)];
    if let Some(comment) = comment {
        let title = match &reviewer {
            Some(r) => format!("*Comment from {}:*", name(r)),
            None => "*Comment:*".to_owned(),
        };
        blocks.push(section(&format!("{title}\n{}", quote(comment))));
    }
    blocks.push(context(&format!(
        "{}  ·  {}",
        link(&pipeline_url, "Open pipeline"),
        slack_date(resolution.at),
    )));

    let mut fallback = format!("{headline}: {}", subject(key));
    if let Some(comment) = comment {
        fallback.push_str(&format!(
            " — \"{}\"",
            mrkdwn_field(comment, FALLBACK_COMMENT_MAX_CHARS)
        ));
    }
    message(&fallback, blocks)
}

/// The alert as it reads once its approval is resolved (app mode edits it in place): the
/// header says the outcome, then who decided, their comment and how long it waited.
pub fn resolved_alert(approval: &Approval, resolution: &Resolution) -> Value {
    let key = &approval.key;
    let pipeline_url = pipeline_url(&key.region, &key.pipeline);
    let reviewer = resolution
        .by
        .as_deref()
        .map(reviewer_name)
        .filter(|r| !r.trim().is_empty());
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
    let facts = [
        format!("{} *{}*", outcome_emoji(resolution.outcome), headline),
        format!("*Waited:* {}", humanize(waited)),
        format!("*Pipeline:* {}", link(&pipeline_url, &key.pipeline)),
        format!("*Stage:* {}", name(&key.stage)),
        format!("*Action:* {}", name(&key.action)),
        region_line(key),
    ]
    .join("\n");
    let mut blocks = vec![
        header(&format!(
            "{} {word}: {}",
            outcome_emoji(resolution.outcome),
            key.pipeline
        )),
        section(&facts),
    ];
    let comment = non_blank(resolution.comment.as_deref());
    if let Some(comment) = comment {
        let title = match &reviewer {
            Some(r) => format!("*Comment from {}:*", name(r)),
            None => "*Comment:*".to_owned(),
        };
        blocks.push(section(&format!("{title}\n{}", quote(comment))));
    }
    if let Some(data) = non_blank(approval.custom_data.as_deref()) {
        blocks.push(section(&format!("*Note:*\n{}", quote(data))));
    }
    blocks.push(context(&format!(
        "{}  ·  {}",
        link(&pipeline_url, "Open pipeline"),
        slack_date(resolution.at),
    )));
    let mut fallback = format!("{headline} after {}: {}", humanize(waited), subject(key));
    if let Some(comment) = comment {
        fallback.push_str(&format!(
            " — \"{}\"",
            mrkdwn_field(comment, FALLBACK_COMMENT_MAX_CHARS)
        ));
    }
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
    lines.extend([
        format!("*Pipeline:* {}", link(&pipeline_url, &key.pipeline)),
        format!("*Stage:* {}", name(&key.stage)),
        format!("*Action:* {}", name(&key.action)),
        region_line(key),
        format!(
            "*Waiting:* {} (since {})",
            humanize(waited),
            slack_date(approval.waiting_since),
        ),
    ]);
    if !due.expiry_warning {
        lines.push(format!(
            "*Expires:* {} (in {})",
            slack_date(approval.expires_at),
            humanize(left),
        ));
    }
    let mut blocks = vec![header(&title), section(&lines.join("\n"))];
    if let Some(data) = non_blank(approval.custom_data.as_deref()) {
        blocks.push(section(&format!("*Note:*\n{}", quote(data))));
    }
    blocks.push(section(&format!(
        "*{}*  ·  {}",
        link(&review_url(key), "Review"),
        link(&pipeline_url, "Open pipeline"),
    )));
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

/// The pipeline's page in the CodePipeline console.
pub fn pipeline_url(region: &str, pipeline: &str) -> String {
    format!(
        "{CONSOLE_PIPELINES}/{}/view?region={}",
        percent_encode(pipeline),
        percent_encode(region),
    )
}

/// The console's review dialog for one approval request; the token selects the request.
pub fn review_url(key: &ApprovalKey) -> String {
    format!(
        "{}#/{}/{}/approve/{}",
        pipeline_url(&key.region, &key.pipeline),
        percent_encode(&key.stage),
        percent_encode(&key.action),
        percent_encode(&key.token),
    )
}

/// The daily digest for one destination: every approval in `waiting` (oldest first, at most
/// [`crate::digest::MAX_ENTRIES`], then "and N more"), one line each: subject, waited,
/// expires, reminders sent, Review link. Entries are packed into sections of at most
/// Slack's text limit, so the message stays within its block limits.
pub fn digest(route: &str, waiting: &[&crate::model::OpenApproval], now: Timestamp) -> Value {
    let shown = waiting.len().min(crate::digest::MAX_ENTRIES);
    let title = match waiting.len() {
        1 => "1 approval waiting".to_owned(),
        n => format!("{n} approvals waiting"),
    };
    let mut blocks = vec![header(&format!("Daily digest: {title}"))];
    let mut chunk = String::new();
    for o in &waiting[..shown] {
        let a = &o.approval;
        let line = format!(
            "• {} — waited {}, expires {}, {} reminder{} sent · {}",
            subject(&a.key),
            humanize(now.duration_since(a.waiting_since)),
            slack_date(a.expires_at),
            o.reminders_sent,
            if o.reminders_sent == 1 { "" } else { "s" },
            link(&review_url(&a.key), "Review"),
        );
        // A line is bounded (names and links are capped), so it always fits a section.
        if !chunk.is_empty() && chunk.len() + 1 + line.len() > TEXT_MAX_CHARS {
            blocks.push(section(&chunk));
            chunk.clear();
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(&line);
    }
    if !chunk.is_empty() {
        blocks.push(section(&chunk));
    }
    if waiting.len() > shown {
        blocks.push(context(&format!(
            "and {} more (`approval-watch status` lists them all)",
            waiting.len() - shown
        )));
    }
    blocks.push(context(&format!(
        "Oldest first · destination {}",
        name(route)
    )));
    message(&format!("Daily digest: {title}"), blocks)
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

/// Escapes the three characters Slack treats as control characters in mrkdwn.
pub fn escape_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A readable name for the principal CodePipeline reports as the reviewer: the session name of
/// an assumed role (usually the person's login) or an IAM user's name; any other input as is.
pub fn reviewer_name(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", _partition, service, _region, _account, resource] = parts[..] else {
        return arn.to_owned();
    };
    let name = match service {
        // assumed-role/ROLE/SESSION: neither part can contain '/'.
        "sts" => resource
            .strip_prefix("assumed-role/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(_role, session)| session),
        // user/[PATH/]NAME
        "iam" => resource
            .strip_prefix("user/")
            .and_then(|path| path.rsplit('/').next()),
        _ => None,
    };
    name.filter(|n| !n.is_empty()).unwrap_or(arn).to_owned()
}

/// A short duration such as "45 s", "5 min", "2 h 5 min" or "3 d 4 h": the largest unit and at
/// most one more, rounded down. The sign is ignored; callers say "in" or "ago".
pub fn humanize(d: SignedDuration) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;

    let secs = d.unsigned_abs().as_secs();
    let (days, hours, mins) = (secs / DAY, secs % DAY / HOUR, secs % HOUR / MINUTE);
    match secs {
        s if s < MINUTE => format!("{s} s"),
        s if s < HOUR => format!("{mins} min"),
        s if s < DAY && mins == 0 => format!("{hours} h"),
        s if s < DAY => format!("{hours} h {mins} min"),
        _ if hours == 0 => format!("{days} d"),
        _ => format!("{days} d {hours} h"),
    }
}

/// The payload itself; the top-level `text` is what notifications and screen readers show.
fn message(fallback: &str, mut blocks: Vec<Value>) -> Value {
    blocks.truncate(MAX_BLOCKS);
    json!({
        "text": truncate_mrkdwn(fallback, TEXT_MAX_CHARS),
        "blocks": blocks,
        // Unfurling the release notes or the commit would bury the message under previews.
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

fn header(text: &str) -> Value {
    json!({
        "type": "header",
        "text": { "type": "plain_text", "text": plain_text(text, HEADER_MAX_CHARS), "emoji": true },
    })
}

fn section(mrkdwn: &str) -> Value {
    json!({ "type": "section", "text": mrkdwn_object(mrkdwn) })
}

fn context(mrkdwn: &str) -> Value {
    json!({ "type": "context", "elements": [mrkdwn_object(mrkdwn)] })
}

/// `verbatim` stops Slack from turning bare text (`@here`, `#channel`, URLs) into mentions and
/// links on its own; the explicit `<…>` sequences built here still work.
fn mrkdwn_object(mrkdwn: &str) -> Value {
    json!({ "type": "mrkdwn", "text": truncate_mrkdwn(mrkdwn, TEXT_MAX_CHARS), "verbatim": true })
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

/// Slack renders the date in the reader's time zone; the fallback is UTC.
fn slack_date(ts: Timestamp) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        ts.as_second(),
        utc_minutes(ts),
    )
}

/// "2025-12-03 09:13 UTC"
fn utc_minutes(ts: Timestamp) -> String {
    let dt = TimeZone::UTC.to_datetime(ts);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
    )
}

/// `<url|label>` when `url` is usable, otherwise just the label.
fn link(url: &str, label: &str) -> String {
    link_opt(Some(url), label)
}

fn link_opt(url: Option<&str>, label: &str) -> String {
    let label = link_label(label);
    match url.and_then(safe_url) {
        Some(url) => format!("<{url}|{label}>"),
        None => label,
    }
}

/// An escaped one-line label without `|`, which would end the label inside `<url|label>`.
fn link_label(label: &str) -> String {
    let label = mrkdwn_field(label, LINK_LABEL_MAX_CHARS).replace('|', &PIPE_LOOKALIKE.to_string());
    if label.trim().is_empty() {
        "link".to_owned()
    } else {
        label
    }
}

/// The form of an http(s) URL that can go inside `<…|label>`, or `None` if it is not one.
///
/// The URL crate percent-encodes spaces, `<`, `>`, controls and non-ASCII characters; `|` it
/// leaves alone, so that is encoded here (and anything else the crate let through, defensively).
/// `&` is written as `&amp;` like everywhere else in mrkdwn; Slack decodes it in link targets.
fn safe_url(raw: &str) -> Option<String> {
    let parsed = url::Url::parse(raw).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return None;
    }
    // Percent-encoding never writes `&`, so escaping it afterwards touches only the URL's own.
    let out = utf8_percent_encode(parsed.as_str(), NOT_IN_A_LINK)
        .to_string()
        .replace('&', "&amp;");
    (out.chars().count() <= URL_MAX_CHARS).then_some(out)
}

/// What [`safe_url`] encodes: all but ASCII's graphic characters (non-ASCII always is), and
/// `|`, `<` and `>`, which would end Slack's `<url|label>`.
const NOT_IN_A_LINK: &AsciiSet = &CONTROLS.add(b' ').add(b'|').add(b'<').add(b'>');

/// What [`percent_encode`] encodes: all but RFC 3986's unreserved characters.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters, for one path segment,
/// query value or fragment part.
fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// One AWS value as escaped single-line mrkdwn of at most `max` chars.
fn mrkdwn_field(s: &str, max: usize) -> String {
    truncate_mrkdwn(&escape_mrkdwn(&one_line(s)), max)
}

fn name(s: &str) -> String {
    mrkdwn_field(s, NAME_MAX_CHARS)
}

/// Multi-line AWS text as an escaped mrkdwn block quote. The section it goes into truncates it.
fn quote(s: &str) -> String {
    s.lines()
        .map(|line| format!(">{}", escape_mrkdwn(&one_line(line))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Control characters (newlines included) would break a line-oriented layout or a link.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Text for a plain_text object: not parsed by Slack, but `<` and `>` are still replaced by
/// lookalikes so that no string in the payload reads like a mention, and controls by spaces.
fn plain_text(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| match c {
            '<' => '‹',
            '>' => '›',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    match cut_point(&cleaned, max) {
        Some(end) => format!("{}{ELLIPSIS}", &cleaned[..end]),
        None => cleaned,
    }
}

fn non_blank(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

/// Shortens mrkdwn to at most `max` chars, ending in "…" when something was cut. The cut never
/// falls inside an entity (`&amp;`) or one of our `<…>` sequences: that would leave a dangling
/// `&am` or an unclosed link for Slack to misread. All `&` and `<` in our mrkdwn start one of
/// those, because AWS text is escaped.
fn truncate_mrkdwn(s: &str, max: usize) -> String {
    let Some(mut end) = cut_point(s, max) else {
        return s.to_owned();
    };
    loop {
        let kept = &s[..end];
        let open_entity = kept.rfind('&').filter(|&i| !kept[i..].contains(';'));
        let open_angle = kept.rfind('<').filter(|&i| !kept[i..].contains('>'));
        match open_entity.into_iter().chain(open_angle).min() {
            Some(i) => end = i,
            None => break,
        }
    }
    format!("{}{ELLIPSIS}", &s[..end])
}

/// The byte index to cut `s` at so that the kept part plus "…" is at most `max` chars, or
/// `None` if `s` fits as it is.
fn cut_point(s: &str, max: usize) -> Option<usize> {
    s.char_indices().nth(max)?;
    Some(
        s.char_indices()
            .nth(max.saturating_sub(1))
            .map_or(0, |(i, _)| i),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn overrides_are_added_to_the_payload() {
        let overrides = MessageOverrides {
            username: Some("CodePipeline".into()),
            icon_emoji: None,
            channel: Some("#deployments".into()),
        };
        assert_eq!(
            with_overrides(&serde_json::json!({"text": "hi"}), &overrides),
            serde_json::json!({"text": "hi", "username": "CodePipeline", "channel": "#deployments"})
        );
    }

    const TOKEN: &str = "0c35520a-b7e6-403d-ba3f-e02120b524c3";
    const COMMIT: &str = "8f2b1e4c9d0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
    const COMMIT_URL: &str =
        "https://github.com/example/web-app/commit/8f2b1e4c9d0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
    /// From sns-approval-message.json.
    const CONSOLE_LINK: &str = "https://console.aws.amazon.com/codesuite/codepipeline/pipelines/web-app/view?region=us-east-1";
    const REVIEW_LINK: &str = "https://console.aws.amazon.com/codesuite/codepipeline/pipelines/web-app/view?region=us-east-1#/Approve_Deployment_to_Production/Approve/approve/0c35520a-b7e6-403d-ba3f-e02120b524c3";

    /// The waiting approval of the codepipeline fixtures.
    fn fixture_approval() -> Approval {
        let waiting_since = Timestamp::from_millisecond(1_764_148_392_068).unwrap();
        Approval {
            key: ApprovalKey {
                account: "default".into(),
                region: "us-east-1".into(),
                pipeline: "web-app".into(),
                stage: "Approve_Deployment_to_Production".into(),
                action: "Approve".into(),
                token: TOKEN.into(),
            },
            pipeline_execution_id: Some("896c834b-07aa-468c-9d3a-7fef9934e976".into()),
            waiting_since,
            expires_at: waiting_since + SignedDuration::from_mins(10080),
            custom_data: Some("Approval needed for production deployment".into()),
            external_entity_link: Some("https://staging.example.com/release-notes".into()),
            revision: Some(Revision {
                revision_id: Some(COMMIT.into()),
                commit_message: Some("Fix rounding in checkout totals".into()),
                url: Some(COMMIT_URL.into()),
            }),
        }
    }

    fn ts(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_digest_lists_at_most_50_oldest_first_within_slacks_limits() {
        let long = "x".repeat(300);
        let open: Vec<crate::model::OpenApproval> = (0..60)
            .map(|i| {
                let mut approval = fixture_approval();
                approval.key.pipeline = format!("p{i:02}-{long}");
                approval.key.stage = format!("*Stage* <!here> {long}");
                approval.waiting_since += SignedDuration::from_mins(i);
                crate::model::OpenApproval {
                    id: i,
                    approval,
                    first_seen: ts(1_764_148_392),
                    reminders_sent: 2,
                    last_reminder_at: None,
                    expiry_warned: false,
                    alert_delivered: true,
                    messages_pending: 0,
                    messages_failed: 0,
                    slack: None,
                }
            })
            .collect();
        let waiting: Vec<&crate::model::OpenApproval> = open.iter().collect();
        let payload = digest("payments", &waiting, ts(1_764_160_000));
        let blocks = payload["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        let texts = mrkdwn_texts(&payload);
        assert!(texts.iter().all(|t| t.chars().count() <= TEXT_MAX_CHARS));
        let all = all_mrkdwn(&payload);
        assert!(all.contains("60 approvals waiting"));
        assert!(all.contains("and 10 more"), "{all}");
        assert_eq!(all.matches("|Review>").count(), 50);
        assert!(all.find("p00-").unwrap() < all.find("p49-").unwrap());
        assert!(!all.contains("p50-"), "capped at 50");
        assert!(!all.contains("<!here>"), "AWS text is escaped");
        assert!(all.contains("2 reminders sent"));
    }

    /// All mrkdwn texts of a payload (top-level `text` first), joined by newlines.
    fn all_mrkdwn(payload: &Value) -> String {
        mrkdwn_texts(payload).join("\n")
    }

    fn mrkdwn_texts(payload: &Value) -> Vec<String> {
        let mut out = vec![payload["text"].as_str().unwrap().to_owned()];
        for block in payload["blocks"].as_array().unwrap() {
            match block["type"].as_str().unwrap() {
                "section" => out.push(block["text"]["text"].as_str().unwrap().to_owned()),
                "context" => {
                    for element in block["elements"].as_array().unwrap() {
                        out.push(element["text"].as_str().unwrap().to_owned());
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn all_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|i| all_strings(i, out)),
            Value::Object(map) => map.values().for_each(|i| all_strings(i, out)),
            _ => {}
        }
    }

    /// Every `&` starts an entity, and every `<` starts one of our own sequences: a date, or an
    /// http(s) link whose URL has no `|`, `<`, `>`, whitespace or controls and whose label has
    /// no `|` or `<`.
    fn assert_safe_mrkdwn(s: &str) {
        for (i, _) in s.match_indices('&') {
            let rest = &s[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "dangling entity at {i} in {s:?}"
            );
        }
        let mut rest = s;
        while let Some(start) = rest.find('<') {
            let after = &rest[start + 1..];
            let end = after
                .find('>')
                .unwrap_or_else(|| panic!("unclosed < in {s:?}"));
            let inner = &after[..end];
            let (target, label) = inner
                .split_once('|')
                .unwrap_or_else(|| panic!("<{inner}> is not ours"));
            assert!(
                !label.is_empty() && !label.contains(['|', '<']),
                "label {label:?}"
            );
            if let Some(date) = target.strip_prefix("!date^") {
                let (epoch, format) = date.split_once('^').unwrap();
                assert!(epoch.parse::<i64>().is_ok(), "date {inner:?}");
                assert_eq!(format, "{date_short_pretty} {time}");
            } else {
                assert!(
                    target.starts_with("https://") || target.starts_with("http://"),
                    "link target {target:?}"
                );
                assert!(
                    !target
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || "<>|".contains(c)),
                    "link target {target:?}"
                );
            }
            rest = &after[end + 1..];
        }
    }

    /// Everything the safety rules and Slack's limits demand of a payload.
    fn assert_payload_ok(payload: &Value) {
        let serialized = serde_json::to_string(payload).unwrap();
        let reparsed: Value = serde_json::from_str(&serialized).unwrap();
        assert_eq!(&reparsed, payload);

        let blocks = payload["blocks"].as_array().unwrap();
        assert!(!blocks.is_empty() && blocks.len() <= MAX_BLOCKS);
        for block in blocks {
            if block["type"] == "header" {
                assert_eq!(block["text"]["type"], "plain_text");
                let text = block["text"]["text"].as_str().unwrap();
                assert!(text.chars().count() <= HEADER_MAX_CHARS);
                assert!(!text.contains(['<', '>']), "header {text:?}");
            }
        }
        for text in mrkdwn_texts(payload) {
            assert!(text.chars().count() <= TEXT_MAX_CHARS);
            assert_safe_mrkdwn(&text);
        }

        let mut strings = Vec::new();
        all_strings(payload, &mut strings);
        for s in strings {
            assert!(!s.contains("<@") && !s.contains("<#"), "mention in {s:?}");
            for (i, _) in s.match_indices("<!") {
                assert!(s[i..].starts_with("<!date^"), "special mention in {s:?}");
            }
        }
    }

    #[test]
    fn escape_mrkdwn_escapes_the_three_control_characters() {
        assert_eq!(
            escape_mrkdwn("a & b <!channel> <@U123> <http://x|y> *ok*"),
            "a &amp; b &lt;!channel&gt; &lt;@U123&gt; &lt;http://x|y&gt; *ok*"
        );
        assert_eq!(escape_mrkdwn("&amp;"), "&amp;amp;");
    }

    #[test]
    fn alert_from_the_fixture_carries_everything() {
        let approval = fixture_approval();
        let now = approval.waiting_since + SignedDuration::from_mins(5);
        let payload = alert(&approval, now);
        assert_payload_ok(&payload);

        assert_eq!(
            payload["text"],
            "Approval waiting: web-app / Approve_Deployment_to_Production / Approve (us-east-1), \
             expires 2025-12-03 09:13 UTC"
        );
        assert_eq!(payload["blocks"][0]["type"], "header");
        assert_eq!(
            payload["blocks"][0]["text"]["text"],
            "Approval waiting: web-app"
        );
        let text = all_mrkdwn(&payload);
        for expected in [
            &format!("*Pipeline:* <{CONSOLE_LINK}|web-app>"),
            "*Stage:* Approve_Deployment_to_Production",
            "*Action:* Approve",
            "*Region:* us-east-1",
            "*Waiting:* 5 min (since <!date^1764148392^{date_short_pretty} {time}|2025-11-26 09:13 UTC>)",
            "*Expires:* <!date^1764753192^{date_short_pretty} {time}|2025-12-03 09:13 UTC> (in 6 d 23 h)",
            ">Approval needed for production deployment",
            "<https://staging.example.com/release-notes|https://staging.example.com/release-notes>",
            &format!("*Revision:* <{COMMIT_URL}|8f2b1e4> Fix rounding in checkout totals"),
            &format!("<{REVIEW_LINK}|Review>"),
            &format!("<{CONSOLE_LINK}|Open pipeline>"),
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
    }

    #[test]
    fn alert_says_when_an_approval_has_expired() {
        let approval = fixture_approval();
        let now = approval.expires_at + SignedDuration::from_hours(3);
        let payload = alert(&approval, now);
        assert_payload_ok(&payload);
        assert!(
            payload["text"]
                .as_str()
                .unwrap()
                .ends_with(", expired 2025-12-03 09:13 UTC")
        );
        assert!(all_mrkdwn(&payload).contains("*Expired:* <!date^1764753192^"));
        assert!(all_mrkdwn(&payload).contains("(3 h ago)"));
    }

    #[test]
    fn alert_without_optional_details_has_no_empty_sections() {
        let approval = Approval {
            custom_data: None,
            external_entity_link: Some("   ".into()),
            revision: Some(Revision::default()),
            ..fixture_approval()
        };
        let payload = alert(&approval, approval.waiting_since);
        assert_payload_ok(&payload);
        // header, facts, links
        assert_eq!(payload["blocks"].as_array().unwrap().len(), 3);
        assert!(!all_mrkdwn(&payload).contains("*Revision:*"));
    }

    #[test]
    fn unusable_links_are_shown_as_escaped_text() {
        let approval = Approval {
            external_entity_link: Some("javascript:alert(1)//<!channel>|x".into()),
            revision: Some(Revision {
                revision_id: Some("<@U1>|abcdef".into()),
                commit_message: None,
                url: Some("ftp://example.com/x".into()),
            }),
            ..fixture_approval()
        };
        let payload = alert(&approval, approval.waiting_since);
        assert_payload_ok(&payload);
        let text = all_mrkdwn(&payload);
        assert!(text.contains("*Link:* javascript:alert(1)//&lt;!channel&gt;¦x"));
        assert!(text.contains("*Revision:* &lt;@U1&gt;¦a"));
    }

    #[test]
    fn rejected_fixture_comment_reaches_slack_escaped() {
        let approval = fixture_approval();
        let payload = resolution(
            &approval,
            &Resolution {
                outcome: Outcome::Rejected,
                by: Some("arn:aws:iam::123456789012:user/bob".into()),
                comment: Some("Migration 0042 is not reversible <!channel>".into()),
                at: ts(1_764_150_000),
            },
        );
        assert_payload_ok(&payload);
        assert_eq!(
            payload["text"],
            "Rejected by bob: web-app / Approve_Deployment_to_Production / Approve (us-east-1) \
             — \"Migration 0042 is not reversible &lt;!channel&gt;\""
        );
        let text = all_mrkdwn(&payload);
        assert!(text.contains("❌ *Rejected by bob*"));
        assert!(
            text.contains(
                "*Comment from bob:*\n>Migration 0042 is not reversible &lt;!channel&gt;"
            )
        );
        assert!(text.contains(&format!("<{CONSOLE_LINK}|Open pipeline>")));
        assert!(
            !serde_json::to_string(&payload)
                .unwrap()
                .contains("<!channel>")
        );
    }

    #[test]
    fn approved_fixture_names_the_reviewer() {
        let approval = fixture_approval();
        let payload = resolution(
            &approval,
            &Resolution {
                outcome: Outcome::Approved,
                by: Some(
                    "arn:aws:sts::123456789012:assumed-role/Deployer/alice@example.com".into(),
                ),
                comment: Some("Staging smoke tests green, go ahead".into()),
                at: ts(1_764_151_992),
            },
        );
        assert_payload_ok(&payload);
        assert_eq!(
            payload["text"],
            "Approved by alice@example.com: web-app / Approve_Deployment_to_Production / Approve \
             (us-east-1) — \"Staging smoke tests green, go ahead\""
        );
        let text = all_mrkdwn(&payload);
        assert!(text.contains("✅ *Approved by alice@example.com*"));
        assert!(text.contains(">Staging smoke tests green, go ahead"));
        assert!(text.contains("*Region:* us-east-1"));
    }

    #[test]
    fn expired_and_superseded_resolutions() {
        let approval = fixture_approval();
        let expired = resolution(
            &approval,
            &Resolution {
                outcome: Outcome::Expired,
                by: None,
                comment: None,
                at: ts(1_764_753_204),
            },
        );
        assert_payload_ok(&expired);
        assert!(
            payload_text(&expired).starts_with("Expired after 7 d without a decision: web-app / ")
        );
        assert!(all_mrkdwn(&expired).contains("⌛ *Expired after 7 d without a decision*"));

        let superseded = resolution(
            &approval,
            &Resolution {
                outcome: Outcome::Superseded,
                by: None,
                comment: None,
                at: ts(1_764_753_204),
            },
        );
        assert_payload_ok(&superseded);
        assert!(payload_text(&superseded).starts_with("Superseded by a newer run: web-app / "));
        assert!(all_mrkdwn(&superseded).contains("↪️ *Superseded by a newer run*"));

        let removed = resolution(
            &approval,
            &Resolution {
                outcome: Outcome::Removed,
                by: None,
                comment: None,
                at: ts(1_764_753_204),
            },
        );
        assert_payload_ok(&removed);
        assert!(payload_text(&removed).starts_with("Removed from the pipeline: web-app / "));
        assert!(all_mrkdwn(&removed).contains("✂️ *Removed from the pipeline*"));
    }

    fn payload_text(payload: &Value) -> &str {
        payload["text"].as_str().unwrap()
    }

    #[test]
    fn urls_match_the_console_links_aws_sends() {
        let key = fixture_approval().key;
        assert_eq!(pipeline_url("us-east-1", "web-app"), CONSOLE_LINK);
        assert_eq!(review_url(&key), REVIEW_LINK);
        assert!(review_url(&key).contains(TOKEN));
        assert!(pipeline_url("eu-west-3", "p").ends_with("?region=eu-west-3"));
    }

    #[test]
    fn url_parts_are_percent_encoded() {
        let key = ApprovalKey {
            account: "default".into(),
            region: "r?x=1&y".into(),
            pipeline: "my@pipe".into(),
            stage: "a b/c|d".into(),
            action: "é".into(),
            token: "t#1>".into(),
        };
        assert_eq!(
            review_url(&key),
            "https://console.aws.amazon.com/codesuite/codepipeline/pipelines/my%40pipe/view\
             ?region=r%3Fx%3D1%26y#/a%20b%2Fc%7Cd/%C3%A9/approve/t%231%3E"
        );
    }

    #[test]
    fn url_parts_encode_link_breakers_spaces_and_non_ascii() {
        assert_eq!(percent_encode("a|b<c>d e"), "a%7Cb%3Cc%3Ed%20e");
        assert_eq!(percent_encode("Az09-._~"), "Az09-._~");
        assert_eq!(percent_encode("é日🎉"), "%C3%A9%E6%97%A5%F0%9F%8E%89");
        assert_eq!(percent_encode("\n\t\u{7f}%"), "%0A%09%7F%25");
        assert_eq!(
            pipeline_url("eu-west-1", "pipe |<x> é"),
            "https://console.aws.amazon.com/codesuite/codepipeline/pipelines/\
             pipe%20%7C%3Cx%3E%20%C3%A9/view?region=eu-west-1"
        );
    }

    #[test]
    fn link_targets_are_hardened() {
        assert_eq!(
            safe_url("https://x.test/a|b<c> d?q=1&r=|#f|g").as_deref(),
            Some("https://x.test/a%7Cb%3Cc%3E%20d?q=1&amp;r=%7C#f%7Cg")
        );
        assert_eq!(
            safe_url("https://x.test/日本 é?q=<a>|b c#frag ment\u{7f}").as_deref(),
            Some("https://x.test/%E6%97%A5%E6%9C%AC%20%C3%A9?q=%3Ca%3E%7Cb%20c#frag%20ment%7F")
        );
        assert_eq!(safe_url("javascript:alert(1)"), None);
        assert_eq!(safe_url("mailto:a@example.com"), None);
        assert_eq!(safe_url("/relative"), None);
        assert_eq!(
            safe_url(&format!("https://x.test/{}", "a".repeat(5000))),
            None
        );
        assert_eq!(
            link("https://x.test/", "a|b <c>"),
            "<https://x.test/|a¦b &lt;c&gt;>"
        );
        assert_eq!(link("nope", "label"), "label");
    }

    #[test]
    fn reviewer_names() {
        assert_eq!(
            reviewer_name("arn:aws:sts::1:assumed-role/Deployer/alice@example.com"),
            "alice@example.com"
        );
        assert_eq!(reviewer_name("arn:aws:iam::1:user/bob"), "bob");
        assert_eq!(reviewer_name("arn:aws:iam::1:user/team/carol"), "carol");
        for other in [
            "arn:aws:iam::1:root",
            "arn:aws:iam::1:user/",
            "arn:aws:sts::1:assumed-role/OnlyRole",
            "arn:aws:sts::1:federated-user/dave",
            "bob",
            "",
        ] {
            assert_eq!(reviewer_name(other), other);
        }
    }

    #[test]
    fn humanize_cases() {
        let cases = [
            (0, "0 s"),
            (45, "45 s"),
            (59, "59 s"),
            (60, "1 min"),
            (5 * 60, "5 min"),
            (5 * 60 + 59, "5 min"),
            (2 * 3600, "2 h"),
            (2 * 3600 + 5 * 60 + 30, "2 h 5 min"),
            (86400, "1 d"),
            (3 * 86400 + 4 * 3600 + 59 * 60, "3 d 4 h"),
            (7 * 86400 + 12, "7 d"),
            (-90, "1 min"),
        ];
        for (secs, expected) in cases {
            assert_eq!(
                humanize(SignedDuration::from_secs(secs)),
                expected,
                "{secs}"
            );
        }
        assert!(!humanize(SignedDuration::MIN).is_empty());
    }

    #[test]
    fn truncation_counts_chars_and_respects_multibyte() {
        let fits = "日".repeat(TEXT_MAX_CHARS);
        assert_eq!(truncate_mrkdwn(&fits, TEXT_MAX_CHARS), fits);

        let cut = truncate_mrkdwn(&"日".repeat(5000), TEXT_MAX_CHARS);
        assert_eq!(cut.chars().count(), TEXT_MAX_CHARS);
        assert!(cut.ends_with("日…"));

        let header = plain_text(&"🎉".repeat(500), HEADER_MAX_CHARS);
        assert_eq!(header.chars().count(), HEADER_MAX_CHARS);
        assert!(header.ends_with('…'));
    }

    #[test]
    fn truncation_never_splits_an_entity_or_a_link() {
        // 2999 kept chars would end in "&amp": the partial entity must go.
        let cut = truncate_mrkdwn(&"&amp;".repeat(1000), TEXT_MAX_CHARS);
        assert_eq!(cut, format!("{}…", "&amp;".repeat(599)));

        for offset in 0..6 {
            let s = format!("{}{}", "x".repeat(2990 + offset), "&lt;".repeat(10));
            let cut = truncate_mrkdwn(&s, TEXT_MAX_CHARS);
            assert!(cut.chars().count() <= TEXT_MAX_CHARS);
            assert_safe_mrkdwn(cut.trim_end_matches('…'));
        }

        let s = format!(
            "{}<https://example.com/?a=1&amp;b=2|label> tail",
            "x".repeat(2980)
        );
        assert_eq!(
            truncate_mrkdwn(&s, TEXT_MAX_CHARS),
            format!("{}…", "x".repeat(2980))
        );

        let s = format!("{}{}", "y".repeat(2970), slack_date(ts(1_764_753_192)));
        assert_eq!(
            truncate_mrkdwn(&s, TEXT_MAX_CHARS),
            format!("{}…", "y".repeat(2970))
        );
    }

    #[test]
    fn oversized_aws_values_stay_within_limits() {
        let long = "&<é|".repeat(3000);
        let approval = Approval {
            key: ApprovalKey {
                account: "default".into(),
                region: long.clone(),
                pipeline: long.clone(),
                stage: long.clone(),
                action: long.clone(),
                token: long.clone(),
            },
            custom_data: Some(long.clone()),
            external_entity_link: Some(format!("https://example.com/{long}")),
            revision: Some(Revision {
                revision_id: Some(long.clone()),
                commit_message: Some(long.clone()),
                url: Some(format!("https://example.com/{long}")),
            }),
            ..fixture_approval()
        };
        assert_payload_ok(&alert(&approval, approval.waiting_since));
        assert_payload_ok(&resolution(
            &approval,
            &Resolution {
                outcome: Outcome::Rejected,
                by: Some(long.clone()),
                comment: Some(long),
                at: approval.waiting_since,
            },
        ));
    }

    const NASTY: &[&str] = &[
        "<",
        ">",
        "&",
        "|",
        "!",
        "@",
        "^",
        "*",
        "_",
        "~",
        "`",
        ";",
        "#",
        "?",
        "%",
        "/",
        ":",
        " ",
        "\n",
        "\r",
        "\t",
        "\u{0}",
        "\u{7f}",
        "\u{202e}",
        "a",
        "Z",
        "7",
        "é",
        "日本",
        "🎉",
        "amp",
        "&amp;",
        "&lt",
        "<!channel>",
        "<!here>",
        "<@U123>",
        "<#C1>",
        "<!subteam^S1>",
        "<http://evil|x>",
        "https://",
        "http://evil.test/",
    ];

    /// Pieces of [`NASTY`], mostly a few, sometimes thousands (up to about 10 000 chars).
    fn nasty_string() -> impl Strategy<Value = String> {
        let pieces = |n: std::ops::Range<usize>| {
            prop::collection::vec(prop::sample::select(NASTY), n).prop_map(|p| p.concat())
        };
        prop_oneof![pieces(0..3), pieces(0..40), pieces(0..400), pieces(0..5000)]
    }

    /// Sometimes a URL that parses (with nasty path, query and fragment), sometimes not.
    fn nasty_url() -> impl Strategy<Value = String> {
        let prefix = prop::sample::select(
            &[
                "https://example.com/",
                "http://x.test/?q=",
                "javascript:",
                "",
            ][..],
        );
        (prefix, nasty_string()).prop_map(|(prefix, rest)| format!("{prefix}{rest}"))
    }

    /// Present four times in five.
    fn nasty_option<S: Strategy<Value = String>>(s: S) -> impl Strategy<Value = Option<String>> {
        prop::option::weighted(0.8, s)
    }

    fn nasty_timestamp() -> impl Strategy<Value = Timestamp> {
        prop_oneof![
            1 => Just(Timestamp::MIN),
            1 => Just(Timestamp::MAX),
            18 => (1_700_000_000i64..1_900_000_000).prop_map(ts),
        ]
    }

    prop_compose! {
        fn nasty_key()(
            region in nasty_string(),
            pipeline in nasty_string(),
            stage in nasty_string(),
            action in nasty_string(),
            token in nasty_string(),
        ) -> ApprovalKey {
            ApprovalKey { account: "default".into(), region, pipeline, stage, action, token }
        }
    }

    prop_compose! {
        fn nasty_revision()(
            revision_id in nasty_option(nasty_string()),
            commit_message in nasty_option(nasty_string()),
            url in nasty_option(nasty_url()),
        ) -> Revision {
            Revision { revision_id, commit_message, url }
        }
    }

    prop_compose! {
        fn nasty_approval()(
            key in nasty_key(),
            pipeline_execution_id in nasty_option(nasty_string()),
            waiting_since in nasty_timestamp(),
            expires_at in nasty_timestamp(),
            custom_data in nasty_option(nasty_string()),
            external_entity_link in nasty_option(nasty_url()),
            revision in prop::option::weighted(0.75, nasty_revision()),
        ) -> Approval {
            Approval {
                key,
                pipeline_execution_id,
                waiting_since,
                expires_at,
                custom_data,
                external_entity_link,
                revision,
            }
        }
    }

    fn nasty_reviewer() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            nasty_string().prop_map(|s| Some(format!("arn:aws:sts::1:assumed-role/R/{s}"))),
            nasty_string().prop_map(Some),
        ]
    }

    prop_compose! {
        fn any_reminder_due()(
            number in 0u32..20,
            counts in any::<bool>(),
            expiry_warning in any::<bool>(),
            escalate in any::<bool>(),
        ) -> ReminderDue {
            ReminderDue { number, counts, expiry_warning, escalate }
        }
    }

    fn any_outcome() -> impl Strategy<Value = Outcome> {
        prop::sample::select(
            &[
                Outcome::Approved,
                Outcome::Rejected,
                Outcome::Expired,
                Outcome::Superseded,
                Outcome::PipelineDeleted,
                Outcome::Removed,
            ][..],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]

        #[test]
        fn nasty_input_never_escapes_or_exceeds_limits(
            approval in nasty_approval(),
            alerted in nasty_timestamp(),
            due in any_reminder_due(),
            reminded in nasty_timestamp(),
            outcome in any_outcome(),
            by in nasty_reviewer(),
            comment in nasty_option(nasty_string()),
            at in nasty_timestamp(),
        ) {
            assert_payload_ok(&alert(&approval, alerted));
            assert_payload_ok(&reminder(&approval, &due, reminded));
            let resolved = Resolution { outcome, by, comment, at };
            assert_payload_ok(&resolution(&approval, &resolved));
        }

        /// The encoder is RFC 3986's, byte for byte: unreserved ASCII kept, every other byte
        /// of the UTF-8 as `%XX` in upper case.
        #[test]
        fn url_parts_are_encoded_byte_by_byte(s in any::<String>()) {
            let want: String = s
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            prop_assert_eq!(percent_encode(&s), want);
        }
    }

    #[test]
    fn reminders_say_how_long_and_repeat_the_review_link() {
        let approval = fixture_approval();
        let now = approval.waiting_since + SignedDuration::from_mins(90);
        let due = ReminderDue {
            number: 2,
            counts: true,
            expiry_warning: false,
            escalate: false,
        };
        let payload = reminder(&approval, &due, now);
        assert_payload_ok(&payload);
        let text = all_mrkdwn(&payload);
        assert!(text.contains("1 h 30 min"), "{text}");
        assert!(text.contains(&review_url(&approval.key)), "{text}");
        assert!(text.contains("Reminder 2"), "{text}");
        assert!(!text.contains(":warning:"), "{text}");
        assert!(payload_text(&payload).starts_with("Still waiting for approval after 1 h 30 min"));

        let last = ReminderDue {
            expiry_warning: true,
            ..due
        };
        let now = approval.expires_at - SignedDuration::from_mins(119);
        let payload = reminder(&approval, &last, now);
        assert_payload_ok(&payload);
        let text = all_mrkdwn(&payload);
        assert!(
            text.contains(":warning: *This approval expires in 1 h 59 min*"),
            "{text}"
        );
        assert!(payload_text(&payload).starts_with("Expires in 1 h 59 min"));
        assert_eq!(
            payload["blocks"][0]["text"]["text"],
            "Expires in 1 h 59 min: web-app"
        );
    }

    #[test]
    fn mentions_go_first_where_they_notify() {
        let approval = fixture_approval();
        let team = Mention::parse("<!subteam^S0PAYMENTS>").unwrap();
        let lead = Mention::parse("<@U0LEAD>").unwrap();
        let payload = with_mentions(alert(&approval, approval.waiting_since), &[&team, &lead]);
        assert!(
            payload_text(&payload).starts_with("<!subteam^S0PAYMENTS> <@U0LEAD> Approval waiting")
        );
        assert_eq!(payload["blocks"][0]["type"], "header");
        assert_eq!(
            payload["blocks"][1]["text"]["text"],
            "<!subteam^S0PAYMENTS> <@U0LEAD>"
        );
        // Without a header, the mention is the first block.
        let resolved = Resolution {
            outcome: Outcome::Approved,
            by: None,
            comment: None,
            at: approval.waiting_since,
        };
        let payload = with_mentions(resolution(&approval, &resolved), &[&team]);
        assert_eq!(
            payload["blocks"][0]["text"]["text"],
            "<!subteam^S0PAYMENTS>"
        );
        // No mentions, no change.
        let plain = alert(&approval, approval.waiting_since);
        assert_eq!(with_mentions(plain.clone(), &[]), plain);
    }
}
