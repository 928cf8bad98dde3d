//! What `audit` prints: every click on Approve / Reject in Slack, oldest first, as a table for
//! people or a JSON array for scripts (keys documented in the README). User names and reasons
//! come from Slack users: the table escapes their control characters (JSON escapes its own).
//! See ARCHITECTURE.md.

use std::fmt::Write as _;
use std::path::Path;

use jiff::Timestamp;

use crate::cli::status::printable;
use crate::store::AuditEntry;

/// Why there is nothing to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoDatabase {
    /// The daemon has not created the file yet.
    Missing,
    /// An older schema, without the audit table: the daemon migrates it when it starts.
    Older,
}

/// The line said instead of a table when there is no database to read.
pub fn no_database(path: &Path, why: NoDatabase) -> String {
    match why {
        NoDatabase::Missing => format!(
            "no state database at {} yet: no clicks recorded\n",
            path.display()
        ),
        NoDatabase::Older => format!(
            "state database {} was written by an older approval-watch (no audit yet); the daemon updates it when it starts: no clicks recorded\n",
            path.display()
        ),
    }
}

/// RFC 3339 in UTC, to the second.
fn second(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The table a person reads; `since` is the `--since` bound, if one was given.
pub fn text(rows: &[AuditEntry], since: Option<Timestamp>) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        let _ = match since {
            Some(t) => writeln!(out, "no clicks recorded since {}", second(t)),
            None => writeln!(out, "no clicks recorded"),
        };
        return out;
    }
    let dash = || "-".to_owned();
    let opt = |v: &Option<String>| {
        v.as_deref()
            .map_or_else(dash, |v| printable(v).into_owned())
    };
    let header = [
        "TIME",
        "USER",
        "PIPELINE",
        "STAGE/ACTION",
        "ACCOUNT/REGION",
        "DECISION",
        "RESULT",
        "REQUEST ID",
        "REASON",
    ];
    let mut table: Vec<[String; 9]> = vec![header.map(str::to_owned)];
    for r in rows {
        let stage_action = match (&r.stage, &r.action) {
            (None, None) => dash(),
            (s, a) => format!("{}/{}", opt(s), opt(a)),
        };
        let account_region = match (&r.account, &r.region) {
            (None, None) => dash(),
            (a, g) => format!("{}/{}", opt(a), opt(g)),
        };
        table.push([
            second(r.time),
            format!("{} ({})", printable(&r.user_id), printable(&r.user_name)),
            opt(&r.pipeline),
            stage_action,
            account_region,
            r.decision.as_str().to_owned(),
            printable(&r.result.as_str()).into_owned(),
            opt(&r.request_id),
            r.reason
                .as_deref()
                .map_or_else(String::new, |v| printable(v).into_owned()),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &table {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use approval_watch_core::verdict::{ClickResult, Verdict};

    fn entry(user_name: &str, reason: Option<&str>) -> AuditEntry {
        AuditEntry {
            time: Timestamp::from_millisecond(1_764_148_400_123).unwrap(),
            user_id: "U0ALICE001".into(),
            user_name: user_name.into(),
            account: Some("prod".into()),
            region: Some("eu-west-1".into()),
            pipeline: Some("payments-api".into()),
            stage: Some("Release".into()),
            action: Some("Approve".into()),
            decision: if reason.is_some() {
                Verdict::Reject
            } else {
                Verdict::Approve
            },
            result: ClickResult::Approved,
            request_id: Some("req-1".into()),
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn the_table_is_aligned_to_the_second_and_escapes_outside_text() {
        let rows = [
            entry("alice\n2026-01-01T00:00:00Z  U0FORGED01", None),
            entry("bob", Some("no \u{1b}[31mway\u{202e}")),
        ];
        let text = text(&rows, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("TIME "), "{text}");
        assert!(
            lines[1].starts_with("2025-11-26T09:13:20Z  U0ALICE001 (alice\\n2026"),
            "{text}"
        );
        assert!(lines[2].ends_with("no \\u{1b}[31mway\\u{202e}"), "{text}");
        assert!(lines[1].contains("Release/Approve") && lines[1].contains("prod/eu-west-1"));
        assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'));
        // Columns line up: PIPELINE starts at the same place on every line.
        let at: Vec<Option<usize>> = lines
            .iter()
            .map(|l| l.find("PIPELINE").or_else(|| l.find("payments-api")))
            .collect();
        assert!(at.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn nothing_recorded_says_so() {
        assert_eq!(text(&[], None), "no clicks recorded\n");
        let since = Timestamp::from_second(1_764_148_400).unwrap();
        assert_eq!(
            text(&[], Some(since)),
            "no clicks recorded since 2025-11-26T09:13:20Z\n"
        );
    }
}
