//! What `/metrics` exports: the table of metric families (name, type, help, samples), in the
//! order they are written. Names, labels and help texts are what dashboards and alerts read:
//! the golden test below keeps them as they are.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::exposition::{Family, Sample, Type, always};
use super::labels::{Label, SlackFailure, SocketState, Tally};
use super::registry::{CYCLE_BUCKETS, Inner};

/// Before every family's name.
pub(super) const PREFIX: &str = "approval_watch_";

/// What a scrape reads: the locked numbers, the socket state, and the time of the scrape.
pub(super) struct View<'a> {
    pub(super) inner: &'a Inner,
    pub(super) socket: SocketState,
    pub(super) now: Timestamp,
}

/// The Socket Mode families appear only once a connection task ran: a 0 would page people
/// who never turned approvals from Slack on.
fn socket_task_ran(view: &View<'_>) -> bool {
    view.socket != SocketState::Off
}

/// One sample per value of a typed label.
fn tally<K: Label>(tally: &Tally<K>, label: &'static str, out: &mut Vec<Sample>) {
    out.extend(
        tally
            .iter()
            .map(|(k, n)| Sample::int(n).label(label, k.value())),
    );
}

/// One sample per entry of a map keyed by two label values.
fn by_pair(
    map: &BTreeMap<(String, String), u64>,
    [first, second]: [&'static str; 2],
    out: &mut Vec<Sample>,
) {
    out.extend(
        map.iter()
            .map(|((a, b), n)| Sample::int(*n).label(first, a).label(second, b)),
    );
}

/// Seconds to the millisecond; 0 when there is nothing to measure yet.
fn seconds_or_zero(seconds: Option<f64>) -> Sample {
    Sample::fixed(seconds.unwrap_or(0.0), 3)
}

/// Every family, in exposition order.
pub(super) fn table<'a>() -> [Family<View<'a>>; 20] {
    [
        Family {
            name: "build_info",
            kind: Type::Gauge,
            help: "Always 1; the version is in the label.",
            shown: always,
            samples: |_, out| out.push(Sample::int(1).label("version", env!("CARGO_PKG_VERSION"))),
        },
        Family {
            name: "approvals_waiting",
            kind: Type::Gauge,
            help: "Manual approvals waiting now, by pipeline (as of the last cycle).",
            shown: always,
            samples: |v, out| by_pair(&v.inner.waiting.by_pipeline, ["pipeline", "region"], out),
        },
        Family {
            name: "oldest_approval_wait_seconds",
            kind: Type::Gauge,
            help: "How long the longest-waiting approval has waited; 0 when none waits.",
            shown: always,
            samples: |v, out| {
                let waited = v
                    .inner
                    .waiting
                    .oldest_since
                    .map(|since| v.now.duration_since(since).as_secs_f64().max(0.0));
                out.push(seconds_or_zero(waited));
            },
        },
        Family {
            name: "messages_undelivered",
            kind: Type::Gauge,
            help: "Outbox messages not yet delivered to Slack (as of the last cycle).",
            shown: always,
            samples: |v, out| out.push(Sample::int(v.inner.waiting.undelivered)),
        },
        Family {
            name: "messages_sent_total",
            kind: Type::Counter,
            help: "Messages delivered to Slack, by kind.",
            shown: always,
            samples: |v, out| tally(&v.inner.sent, "kind", out),
        },
        Family {
            name: "slack_delivery_failures_total",
            kind: Type::Counter,
            help: "Slack deliveries that failed, by kind: rate_limited (429), temporary (5xx, timeout, connection; retried), permanent (other 4xx; not retried); in app mode permanent ones a person must fix also carry Slack's error.",
            shown: always,
            samples: |v, out| {
                tally(&v.inner.slack_failures, "kind", out);
                for (error, n) in &v.inner.slack_errors {
                    out.push(
                        Sample::int(*n)
                            .label("kind", SlackFailure::Permanent.value())
                            .label("error", error),
                    );
                }
            },
        },
        Family {
            name: "aws_calls_total",
            kind: Type::Counter,
            help: "CodePipeline API calls, by operation.",
            shown: always,
            samples: |v, out| {
                for (operation, n) in &v.inner.aws_calls {
                    out.push(Sample::int(*n).label("operation", operation));
                }
            },
        },
        Family {
            name: "aws_errors_total",
            kind: Type::Counter,
            help: "CodePipeline API calls that failed, by operation and AWS error code.",
            shown: always,
            samples: |v, out| by_pair(&v.inner.aws_errors, ["operation", "code"], out),
        },
        Family {
            name: "pipelines_unreadable",
            kind: Type::Gauge,
            help: "Pipelines the last completed cycle could not read.",
            shown: always,
            samples: |v, out| out.push(Sample::int(v.inner.pipelines_unreadable)),
        },
        Family {
            name: "pipelines_unwatchable",
            kind: Type::Gauge,
            help: "Pipelines that cannot be watched correctly: an execution mode this version does not know, or a definition that cannot be read.",
            shown: always,
            samples: |v, out| out.push(Sample::int(v.inner.pipelines_unwatchable)),
        },
        Family {
            name: "reads_saved_total",
            kind: Type::Counter,
            help: "GetPipelineState reads skipped because the pipeline was idle and not yet due (idle_poll_interval).",
            shown: always,
            samples: |v, out| out.push(Sample::int(v.inner.reads_saved)),
        },
        Family {
            name: "cycles_total",
            kind: Type::Counter,
            help: "Poll cycles, by result: ok (ran to the end) or failed (the state database refused).",
            shown: always,
            samples: |v, out| tally(&v.inner.cycles, "result", out),
        },
        Family {
            name: "cycle_duration_seconds",
            kind: Type::Histogram,
            help: "How long a poll cycle took: reads, decisions, recording and delivery.",
            shown: always,
            samples: |v, out| {
                let h = &v.inner.cycle_duration;
                let mut cumulative = 0;
                for (le, n) in CYCLE_BUCKETS.iter().zip(h.buckets) {
                    cumulative += n;
                    out.push(
                        Sample::int(cumulative)
                            .suffix("_bucket")
                            .label("le", le.to_string()),
                    );
                }
                out.push(Sample::int(h.count).suffix("_bucket").label("le", "+Inf"));
                out.push(Sample::fixed(h.sum, 6).suffix("_sum"));
                out.push(Sample::int(h.count).suffix("_count"));
            },
        },
        Family {
            name: "last_successful_cycle_timestamp_seconds",
            kind: Type::Gauge,
            help: "Unix time of the last successful cycle (completed, and not every read failed); 0 before the first.",
            shown: always,
            samples: |v, out| {
                let last = v
                    .inner
                    .last_success
                    .map(|t| t.as_millisecond() as f64 / 1000.0);
                out.push(seconds_or_zero(last));
            },
        },
        Family {
            name: "config_reloads_total",
            kind: Type::Counter,
            help: "Config reloads (SIGHUP), by result: ok, or failed (the old config was kept).",
            shown: always,
            samples: |v, out| tally(&v.inner.reloads, "result", out),
        },
        Family {
            name: "idle_read_interval_seconds",
            kind: Type::Gauge,
            help: "Seconds between two reads of an idle pipeline, per account and region (adaptive polling).",
            shown: always,
            samples: |v, out| by_pair(&v.inner.idle_rhythms, ["account", "region"], out),
        },
        Family {
            name: "slack_route_paused",
            kind: Type::Gauge,
            help: "App mode, per route: 1 while delivery is paused until a person fixes the bot token or the channel (the messages stay queued), else 0.",
            shown: |v| !v.inner.routes_paused.is_empty(),
            samples: |v, out| {
                for (route, paused) in &v.inner.routes_paused {
                    out.push(Sample::int(u64::from(*paused)).label("route", route));
                }
            },
        },
        Family {
            name: "slack_socket_connected",
            kind: Type::Gauge,
            help: "1 while the Socket Mode connection (approvals from Slack) is open, else 0.",
            shown: socket_task_ran,
            samples: |v, out| {
                out.push(Sample::int(u64::from(v.socket == SocketState::Connected)));
            },
        },
        Family {
            name: "slack_socket_reconnects_total",
            kind: Type::Counter,
            help: "New Socket Mode connections after the first, by reason: refresh (Slack asked) or dropped (the last one was lost).",
            shown: socket_task_ran,
            samples: |v, out| tally(&v.inner.socket_reconnects, "reason", out),
        },
        Family {
            name: "slack_decisions_total",
            kind: Type::Counter,
            help: "Clicks from Slack by result: approved, rejected (PutApprovalResult taken), denied (not on the allow-lists), already_resolved, failed, ignored (a replay).",
            shown: socket_task_ran,
            samples: |v, out| tally(&v.inner.slack_decisions, "result", out),
        },
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::labels::{DecisionLabel, ReconnectReason};
    use crate::metrics::{CycleOutcome, Metrics, Waiting};
    use approval_watch_core::model::MessageKind;

    /// The value of the unlabelled sample `name` in `text`.
    fn value_of(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Some of everything, with no clock in the output (no wait, no successful cycle).
    fn busy() -> Metrics {
        let m = Metrics::new();
        m.register_aws_operations(&["GetPipelineState"]);
        for _ in 0..3 {
            m.aws_call("ListPipelines");
        }
        for _ in 0..2 {
            m.aws_error("GetPipelineState", "Throttling\"x\n");
            m.slack_decision(DecisionLabel::Denied);
        }
        for _ in 0..4 {
            m.message_sent(MessageKind::Reminder);
        }
        m.slack_failure(SlackFailure::Temporary);
        for _ in 0..5 {
            m.slack_error("not_in_channel");
        }
        m.socket_reconnect(ReconnectReason::Dropped);
        m.set_idle_rhythms(BTreeMap::from([(
            ("a\\b".to_owned(), "us-east-1".to_owned()),
            30,
        )]));
        m.cycle(CycleOutcome {
            duration: Duration::from_millis(300),
            completed: true,
            reads: 2,
            unreadable: 2,
            reads_saved: 3,
        });
        m.cycle(CycleOutcome {
            duration: Duration::from_secs(500),
            completed: false,
            reads: 2,
            unreadable: 0,
            reads_saved: 5,
        });
        m.set_unwatchable(1);
        m.reload(true);
        m.reload(false);
        m.reload(false);
        m.set_waiting(Waiting {
            by_pipeline: BTreeMap::from([
                (("we\"ird\\name".to_owned(), "eu-west-1".to_owned()), 2),
                (("b".to_owned(), "eu-west-1".to_owned()), 0),
            ]),
            oldest_since: None,
            undelivered: 7,
        });
        m.socket_state(SocketState::Retrying);
        m.slack_routes_paused(BTreeMap::from([
            ("default".to_owned(), Some("invalid_auth".to_owned())),
            ("payments".to_owned(), None),
        ]));
        m
    }

    /// Byte for byte what the daemon exported before the exposition became a table:
    /// dashboards and alerts read these names, labels and help texts.
    #[test]
    fn the_exposition_is_unchanged() {
        let golden =
            include_str!("testdata/exposition.txt").replace("{version}", env!("CARGO_PKG_VERSION"));
        assert_eq!(busy().render(), golden);
    }

    #[test]
    fn every_family_has_its_help_and_type_once() {
        let text = busy().render();
        let families = table();
        for family in &families {
            let name = family.name;
            let help = format!("# HELP {PREFIX}{name} ");
            let kind = format!("# TYPE {PREFIX}{name} ");
            assert_eq!(text.matches(&help).count(), 1, "{help}");
            assert_eq!(text.matches(&kind).count(), 1, "{kind}");
            let samples = text
                .lines()
                .filter(|l| l.starts_with(&format!("{PREFIX}{name}")))
                .count();
            assert!(samples > 0, "{name} has samples");
        }
        let comments = text.lines().filter(|l| l.starts_with('#')).count();
        assert_eq!(comments, 2 * families.len(), "no family written twice");
    }

    #[test]
    fn every_line_is_a_comment_or_a_sample() {
        let m = busy();
        m.set_waiting(Waiting {
            by_pipeline: BTreeMap::new(),
            oldest_since: Some(Timestamp::now() - jiff::SignedDuration::from_secs(90)),
            undelivered: 1,
        });
        let text = m.render();
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP approval_watch_")
                        || line.starts_with("# TYPE approval_watch_"),
                    "{line}"
                );
                continue;
            }
            let (_, value) = line.rsplit_once(' ').expect(line);
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        let oldest = value_of(&text, "approval_watch_oldest_approval_wait_seconds");
        assert!((89.0..200.0).contains(&oldest), "{oldest}");
    }

    #[test]
    fn a_successful_cycle_sets_the_timestamp() {
        let m = Metrics::new();
        m.cycle(CycleOutcome::instant(true, 1, 0));
        let text = m.render();
        let last = value_of(
            &text,
            "approval_watch_last_successful_cycle_timestamp_seconds",
        );
        let now = Timestamp::now().as_millisecond() as f64 / 1000.0;
        assert!((now - 60.0..=now).contains(&last), "{last} vs {now}");
    }

    #[test]
    fn the_socket_connection_is_shown_once_a_task_ran() {
        let m = Metrics::new();
        assert!(!m.render().contains("slack_socket"));
        assert!(!m.render().contains("slack_decisions"));
        m.socket_state(SocketState::Connected);
        let text = m.render();
        assert!(
            text.contains("approval_watch_slack_socket_connected 1\n"),
            "{text}"
        );
        assert!(
            text.contains("approval_watch_slack_socket_reconnects_total{reason=\"refresh\"} 0\n")
        );
        assert!(text.contains("approval_watch_slack_decisions_total{result=\"ignored\"} 0\n"));
        m.socket_state(SocketState::Disabled);
        assert!(
            m.render()
                .contains("approval_watch_slack_socket_connected 0\n")
        );
        m.socket_state(SocketState::Off);
        assert!(!m.render().contains("slack_socket"));
    }
}
