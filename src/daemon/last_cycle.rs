//! The one-line summary of the last cycle that systemd shows (`STATUS=`).

use std::time::Duration;

use tokio::time::Instant;

use crate::daemon::cycle::CycleReport;

/// What the status line and `/healthz` say about the last cycle.
#[derive(Debug, Default)]
pub(super) struct LastCycle {
    pub finished: Option<Instant>,
    pub took: Duration,
    pub error: Option<String>,
    pub report: CycleReport,
}

impl LastCycle {
    /// "3 approvals waiting, last cycle 1.2 s ago", the line `systemctl status` shows.
    pub fn status(&self) -> String {
        let Some(finished) = self.finished else {
            return "starting: first cycle running".to_owned();
        };
        let ago = seconds(finished.elapsed());
        let waiting = self.report.waiting.len();
        let mut s = format!(
            "{waiting} approval{} waiting, last cycle {ago} ago",
            if waiting == 1 { "" } else { "s" }
        );
        if let Some(e) = &self.error {
            s = format!("{s} FAILED: {e}");
            return s;
        }
        s.push_str(&format!(" (took {})", seconds(self.took)));
        if self.report.read_failures > 0 {
            s.push_str(&format!(
                ", {} of {} pipelines unreadable",
                self.report.read_failures, self.report.pipelines
            ));
        }
        if self.report.undelivered > 0 {
            s.push_str(&format!(
                ", {} messages undelivered",
                self.report.undelivered
            ));
        }
        s
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min", d.as_secs() / 60)
    } else {
        format!("{} h {} min", d.as_secs() / 3600, d.as_secs() % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_like_a_sentence() {
        let mut last = LastCycle::default();
        assert_eq!(last.status(), "starting: first cycle running");
        last.finished = Some(Instant::now());
        last.took = Duration::from_millis(1234);
        let approval = (
            approval_watch_core::model::Target {
                account: "default".into(),
                region: "eu-west-1".into(),
                pipeline: "web-app".into(),
            },
            jiff::Timestamp::UNIX_EPOCH,
        );
        last.report.waiting = vec![approval.clone(); 3];
        let s = last.status();
        assert!(
            s.starts_with("3 approvals waiting, last cycle 0.0 s ago (took 1.2 s)"),
            "{s}"
        );
        last.report.waiting = vec![approval];
        last.report.read_failures = 1;
        last.report.pipelines = 4;
        last.report.undelivered = 2;
        let s = last.status();
        assert!(s.starts_with("1 approval waiting"), "{s}");
        assert!(
            s.ends_with(", 1 of 4 pipelines unreadable, 2 messages undelivered"),
            "{s}"
        );
        last.error = Some("disk full".into());
        assert!(last.status().ends_with("FAILED: disk full"));
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(seconds(Duration::from_millis(1200)), "1.2 s");
        assert_eq!(seconds(Duration::from_secs(125)), "2 min");
        assert_eq!(seconds(Duration::from_secs(3 * 3600 + 65)), "3 h 1 min");
    }
}
