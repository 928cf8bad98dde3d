//! The daily digest: every approval still waiting for one destination, one line each.

use jiff::Timestamp;
use serde_json::Value;

use super::blocks::{TEXT_MAX_CHARS, context, header, message, section};
use super::links::{link, review_url};
use super::subject;
use super::text::name;
use super::time::{humanize, slack_date};
use crate::model::OpenApproval;

/// The daily digest for one destination: every approval in `waiting` (oldest first, at most
/// [`crate::digest::MAX_ENTRIES`], then "and N more"), one line each: subject, waited,
/// expires, reminders sent, Review link. Entries are packed into sections of at most
/// Slack's text limit, so the message stays within its block limits.
pub fn digest(route: &str, waiting: &[&OpenApproval], now: Timestamp) -> Value {
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

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::render::blocks::MAX_BLOCKS;
    use crate::render::tests::{all_mrkdwn, fixture_approval, mrkdwn_texts, ts};

    #[test]
    fn a_digest_lists_at_most_50_oldest_first_within_slacks_limits() {
        let long = "x".repeat(300);
        let open: Vec<OpenApproval> = (0..60)
            .map(|i| {
                let mut approval = fixture_approval();
                approval.key.pipeline = format!("p{i:02}-{long}");
                approval.key.stage = format!("*Stage* <!here> {long}");
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
            .collect();
        let waiting: Vec<&OpenApproval> = open.iter().collect();
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
}
