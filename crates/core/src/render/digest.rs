//! The daily digest: every approval still waiting for one destination, one line each, within
//! a size budget; and, when Slack refuses it all the same, a shorter version of it.

use jiff::Timestamp;
use serde_json::Value;

use super::blocks::{TEXT_MAX_CHARS, context, header, message, section};
use super::links::{link, review_url};
use super::subject;
use super::text::name;
use super::time::{humanize, slack_date};
use crate::model::OpenApproval;

/// The most characters of text a digest carries, all blocks together. Slack refuses a message
/// over 40,000 characters, and has refused block messages far smaller with
/// `msg_blocks_too_long`; a third of the limit leaves room for escapes and Slack's own counting.
pub const DIGEST_MAX_CHARS: usize = 12_000;

/// What the shortened digest says, and how a digest that was shortened once is recognised.
const SHORTENED: &str = "shortened: Slack refused the longer list";

/// The daily digest for one destination: every approval in `waiting` (oldest first, at most
/// [`crate::digest::MAX_ENTRIES`] and [`DIGEST_MAX_CHARS`] of text, then "and N more"), one
/// line each: subject, waited, expires, reminders sent, Review link. Entries are packed into
/// sections of at most Slack's text limit, so the message stays within its block limits.
pub fn digest(route: &str, waiting: &[&OpenApproval], now: Timestamp) -> Value {
    let title = match waiting.len() {
        1 => "1 approval waiting".to_owned(),
        n => format!("{n} approvals waiting"),
    };
    let footer = footer(route);
    let mut budget = DIGEST_MAX_CHARS.saturating_sub(title.len() + footer.len() + MORE_MAX_CHARS);
    let mut lines = Vec::new();
    for o in waiting.iter().take(crate::digest::MAX_ENTRIES) {
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
        // The newline between lines counts too.
        let cost = line.chars().count() + 1;
        if cost > budget {
            break;
        }
        budget -= cost;
        lines.push(line);
    }
    let more = waiting.len() - lines.len();
    layout(
        header(&format!("Daily digest: {title}")),
        &format!("Daily digest: {title}"),
        &lines,
        more,
        None,
        context(&footer),
    )
}

/// The longest "and N more" line.
const MORE_MAX_CHARS: usize = 120;

fn footer(route: &str) -> String {
    format!("Oldest first · destination {}", name(route))
}

/// The blocks: header, the lines packed into sections, "and N more" (with `note`), footer.
fn layout(
    header: Value,
    fallback: &str,
    lines: &[String],
    more: usize,
    note: Option<&str>,
    footer: Value,
) -> Value {
    let mut blocks = vec![header];
    let mut chunk = String::new();
    for line in lines {
        // A line is bounded (names and links are capped), so it always fits a section.
        if !chunk.is_empty() && chunk.len() + 1 + line.len() > TEXT_MAX_CHARS {
            blocks.push(section(&chunk));
            chunk.clear();
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(line);
    }
    if !chunk.is_empty() {
        blocks.push(section(&chunk));
    }
    if more > 0 || note.is_some() {
        let note = note.map_or_else(String::new, |n| format!("; {n}"));
        blocks.push(context(&format!(
            "and {more} more (`approval-watch status` lists them all){note}"
        )));
    }
    blocks.push(footer);
    message(fallback, blocks)
}

/// A shorter version of a digest Slack refused (`msg_too_long`, `msg_blocks_too_long`): the
/// first half of its lines, the rest counted in "and N more", marked as shortened. `None` when
/// `payload` is no digest of ours, was shortened already, or has nothing left to cut: the
/// digest is retried smaller once, not cut down to nothing.
pub fn shorter_digest(payload: &Value) -> Option<Value> {
    let blocks = payload.get("blocks")?.as_array()?;
    let fallback = payload.get("text")?.as_str()?;
    let (first, rest) = blocks.split_first()?;
    let (footer, body) = rest.split_last()?;
    if first.get("type")?.as_str()? != "header" || footer.get("type")?.as_str()? != "context" {
        return None;
    }
    let mut lines: Vec<String> = Vec::new();
    let mut more = 0;
    for block in body {
        match block.get("type")?.as_str()? {
            "section" => lines.extend(
                block
                    .pointer("/text/text")?
                    .as_str()?
                    .split('\n')
                    .map(str::to_owned),
            ),
            "context" => {
                let text = block.pointer("/elements/0/text")?.as_str()?;
                if text.contains(SHORTENED) {
                    return None;
                }
                more = text
                    .strip_prefix("and ")?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()?;
            }
            _ => return None,
        }
    }
    if lines.len() < 2 {
        return None;
    }
    let kept = lines.len() / 2;
    let cut = lines.split_off(kept).len();
    Some(layout(
        first.clone(),
        fallback,
        &lines,
        more + cut,
        Some(SHORTENED),
        footer.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::render::blocks::MAX_BLOCKS;
    use crate::render::tests::{all_mrkdwn, fixture_approval, mrkdwn_texts, ts};

    fn waiting(n: i64, pipeline: &str, stage: &str) -> Vec<OpenApproval> {
        (0..n)
            .map(|i| {
                let mut approval = fixture_approval();
                approval.key.pipeline = format!("p{i:02}-{pipeline}");
                approval.key.stage = stage.to_owned();
                approval.waiting_since += SignedDuration::from_mins(i);
                OpenApproval {
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
            .collect()
    }

    /// Every character of text in the payload, header included.
    fn total_chars(payload: &Value) -> usize {
        let header = payload["blocks"][0]["text"]["text"].as_str().unwrap();
        header.chars().count()
            + mrkdwn_texts(payload)
                .iter()
                .skip(1)
                .map(|t| t.chars().count())
                .sum::<usize>()
    }

    /// "and N more" as a number, 0 when absent.
    fn more(all: &str) -> usize {
        all.split("and ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .map_or(0, |n| n.parse().unwrap())
    }

    #[test]
    fn a_digest_lists_the_oldest_first_within_slacks_limits() {
        let long = "x".repeat(300);
        let open = waiting(60, &long, &format!("*Stage* <!here> {long}"));
        let waiting: Vec<&OpenApproval> = open.iter().collect();
        let payload = digest("payments", &waiting, ts(1_764_160_000));
        let blocks = payload["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        let texts = mrkdwn_texts(&payload);
        assert!(texts.iter().all(|t| t.chars().count() <= TEXT_MAX_CHARS));
        assert!(total_chars(&payload) <= DIGEST_MAX_CHARS);
        let all = all_mrkdwn(&payload);
        assert!(all.contains("60 approvals waiting"));
        let shown = all.matches("|Review>").count();
        assert!(shown >= 5, "{shown} shown");
        assert_eq!(shown + more(&all), 60, "{all}");
        assert!(all.find("p00-").unwrap() < all.find("p04-").unwrap());
        assert!(!all.contains("<!here>"), "AWS text is escaped");
        assert!(all.contains("2 reminders sent"));
    }

    #[test]
    fn fifty_entries_with_the_longest_legal_names_stay_within_the_budget() {
        // AWS names are at most 100 characters; `&` escapes to five.
        let open = waiting(50, &"a".repeat(96), &"&".repeat(100));
        let waiting: Vec<&OpenApproval> = open.iter().collect();
        let payload = digest("payments", &waiting, ts(1_764_160_000));
        assert!(total_chars(&payload) <= DIGEST_MAX_CHARS);
        assert!(serde_json::to_string(&payload).unwrap().chars().count() < 40_000);
        let all = all_mrkdwn(&payload);
        assert_eq!(all.matches("|Review>").count() + more(&all), 50, "{all}");
        assert!(more(&all) > 0, "cut to the budget");
    }

    #[test]
    fn a_short_digest_lists_every_entry_without_and_more() {
        let open = waiting(3, "api", "Prod");
        let waiting: Vec<&OpenApproval> = open.iter().collect();
        let all = all_mrkdwn(&digest("payments", &waiting, ts(1_764_160_000)));
        assert_eq!(all.matches("|Review>").count(), 3);
        assert!(!all.contains("and "), "{all}");
        assert!(all.contains("destination payments"));
    }

    #[test]
    fn a_refused_digest_is_shortened_once_and_counts_what_it_cut() {
        let open = waiting(60, &"a".repeat(96), "Prod");
        let waiting: Vec<&OpenApproval> = open.iter().collect();
        let full = digest("payments", &waiting, ts(1_764_160_000));
        let full_all = all_mrkdwn(&full);
        let shown = full_all.matches("|Review>").count();
        let shorter = shorter_digest(&full).expect("a shorter digest");
        let all = all_mrkdwn(&shorter);
        assert_eq!(all.matches("|Review>").count(), shown / 2);
        assert_eq!(more(&all), 60 - shown / 2, "{all}");
        assert!(all.contains("shortened"), "{all}");
        assert!(all.contains("60 approvals waiting") && all.contains("destination payments"));
        assert!(total_chars(&shorter) < total_chars(&full));
        assert_eq!(shorter_digest(&shorter), None, "once, not down to nothing");
        let one = waiting_one();
        assert_eq!(shorter_digest(&one), None, "one line: nothing to cut");
        assert_eq!(shorter_digest(&serde_json::json!({"text": "x"})), None);
    }

    fn waiting_one() -> Value {
        let open = waiting(1, "api", "Prod");
        digest("payments", &[&open[0]], ts(1_764_160_000))
    }
}
