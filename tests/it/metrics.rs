//! The Prometheus endpoint of the real binary: `/metrics` parses as the text exposition
//! format and says what happened; `/healthz` turns 503 when cycles stop succeeding.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{Daemon, Fixture, GET_PIPELINE_STATE, InjectedError, SOON, World};

/// One sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format strictly: every line is `# HELP`, `# TYPE` or a sample, every
/// sample belongs to a family declared by `# TYPE` before it, label values are quoted.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    assert!(
        text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("{line:?}"));
            assert!(valid_name(name), "{line:?}");
            match keyword {
                "HELP" => assert!(parts.next().is_some_and(|h| !h.is_empty()), "{line:?}"),
                "TYPE" => {
                    let kind = parts.next().unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line:?}"
                    );
                    assert!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "family declared twice: {line:?}"
                    );
                }
                _ => panic!("unknown comment: {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "empty line in the exposition");
        let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line:?}")),
        };
        let (name, labels) = match head.split_once('{') {
            None => (head, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
                (name, parse_labels(body, line))
            }
        };
        assert!(valid_name(name), "{line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample without a # TYPE: {line:?}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line:?}"));
        assert!(valid_name(name), "{line:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line:?}"),
            }
        };
        labels.insert(name.to_owned(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

pub(crate) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// The metrics address the daemon logged.
pub(crate) async fn metrics_base(daemon: &mut Daemon) -> String {
    assert!(
        daemon.wait_for_stderr("metrics on http://", SOON).await,
        "no metrics address logged: {}",
        daemon.stderr()
    );
    let stderr = support::runner::strip_ansi(&daemon.stderr());
    let at = stderr.find("metrics on http://").unwrap() + "metrics on ".len();
    let url = stderr[at..].split_whitespace().next().unwrap();
    url.strip_suffix("/metrics").unwrap().to_owned()
}

pub(crate) async fn get(url: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Scrapes until `cond` holds (or panics after `SOON`): metrics move after a cycle ends,
/// and this is the only signal of that from outside.
async fn scrape_until(base: &str, what: &str, cond: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let (status, text) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200, "{text}");
        let samples = parse(&text);
        if cond(&samples) {
            return samples;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("metrics never showed {what}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_healthz() {
    let mut world = World::start(&["web-app", "api"]).await;
    world.aws.set_state("web-app", Fixture::Waiting);
    world
        .aws
        .set_operation_error(GET_PIPELINE_STATE, "api", InjectedError::access_denied());
    world.env.spec.extra_top = "[metrics]\nlisten = \"127.0.0.1:0\"\n".into();
    world.env.write_config();
    let mut daemon = world.env.spawn_run();
    let base = metrics_base(&mut daemon).await;

    world.slack.wait_for_delivered(1, SOON).await;
    let samples = scrape_until(&base, "web-app waiting after a cycle", |s| {
        value(
            s,
            "approval_watch_approvals_waiting",
            &[("pipeline", "web-app")],
        ) == Some(1.0)
    })
    .await;

    let names: std::collections::BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "approval_watch_build_info",
        "approval_watch_approvals_waiting",
        "approval_watch_oldest_approval_wait_seconds",
        "approval_watch_messages_undelivered",
        "approval_watch_messages_sent_total",
        "approval_watch_slack_delivery_failures_total",
        "approval_watch_aws_calls_total",
        "approval_watch_aws_errors_total",
        "approval_watch_pipelines_unreadable",
        "approval_watch_cycles_total",
        "approval_watch_cycle_duration_seconds_bucket",
        "approval_watch_cycle_duration_seconds_sum",
        "approval_watch_cycle_duration_seconds_count",
        "approval_watch_last_successful_cycle_timestamp_seconds",
        "approval_watch_config_reloads_total",
    ] {
        assert!(names.contains(expected), "{expected} missing: {names:?}");
    }

    assert_eq!(
        value(
            &samples,
            "approval_watch_approvals_waiting",
            &[("pipeline", "api")]
        ),
        Some(0.0)
    );
    let oldest = value(&samples, "approval_watch_oldest_approval_wait_seconds", &[]).unwrap();
    assert!(oldest > 0.0, "{oldest}");
    assert!(
        value(
            &samples,
            "approval_watch_aws_calls_total",
            &[("operation", "GetPipelineState")]
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        value(
            &samples,
            "approval_watch_aws_calls_total",
            &[("operation", "GetPipeline")]
        ),
        Some(1.0),
        "GetPipeline only once: web-app's definition is cached"
    );
    assert!(
        value(
            &samples,
            "approval_watch_aws_errors_total",
            &[
                ("operation", "GetPipelineState"),
                ("code", "AccessDeniedException")
            ]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        value(&samples, "approval_watch_pipelines_unreadable", &[]),
        Some(1.0)
    );
    for kind in ["alert", "reminder", "resolution"] {
        assert!(
            value(
                &samples,
                "approval_watch_messages_sent_total",
                &[("kind", kind)]
            )
            .is_some(),
            "messages_sent_total{{kind={kind}}} missing"
        );
    }
    // The alert was delivered, so its counter moved.
    assert!(
        value(
            &samples,
            "approval_watch_messages_sent_total",
            &[("kind", "alert")]
        ) >= Some(1.0)
    );
    let count = value(&samples, "approval_watch_cycle_duration_seconds_count", &[]).unwrap();
    assert!(count >= 1.0);
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == "approval_watch_cycle_duration_seconds_bucket")
        .map(|s| {
            let le = &s.labels["le"];
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, s.value)
        })
        .collect();
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{buckets:?}"
    );
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, count)));
    let last_ok = value(
        &samples,
        "approval_watch_last_successful_cycle_timestamp_seconds",
        &[],
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&last_ok),
        "{last_ok} vs {now}"
    );

    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ok"), "{body}");
    let (status, _) = get(&format!("{base}/nope")).await;
    assert_eq!(status, 404);

    // Every pipeline unreadable: no cycle succeeds, and after 3 intervals (3 s) /healthz says so.
    world.aws.set_operation_error(
        GET_PIPELINE_STATE,
        "web-app",
        InjectedError::access_denied(),
    );
    let deadline = tokio::time::Instant::now() + SOON;
    let body = loop {
        let (status, body) = get(&format!("{base}/healthz")).await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz stayed healthy: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.starts_with("unhealthy"), "{body}");

    daemon.terminate().await.assert_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_off_by_default() {
    let world = World::start(&["web-app"]).await;
    let mut daemon = world.env.spawn_run();
    assert!(
        world
            .aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", 1, SOON)
            .await
    );
    assert!(
        !daemon
            .wait_for_stderr("metrics on", Duration::from_millis(1))
            .await
    );
    daemon.terminate().await.assert_code(0);
}

/// A pipeline whose execution mode this version does not know is counted as unwatchable
/// (apart from an unreadable one) until an edit makes it watchable again.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_execution_mode_is_counted_as_unwatchable_until_fixed() {
    let mut world = World::start(&["web-app", "api"]).await;
    world.aws.set_mode("web-app", "STAGGERED");
    world.env.spec.extra_top = "[metrics]\nlisten = \"127.0.0.1:0\"\n".into();
    world.env.write_config();
    let mut daemon = world.env.spawn_run();
    let base = metrics_base(&mut daemon).await;
    scrape_until(&base, "one pipeline unwatchable", |s| {
        value(s, "approval_watch_pipelines_unwatchable", &[]) == Some(1.0)
    })
    .await;
    world.aws.set_mode("web-app", "PARALLEL");
    world.aws.set_version("web-app", 8);
    scrape_until(&base, "no pipeline unwatchable", |s| {
        value(s, "approval_watch_pipelines_unwatchable", &[]) == Some(0.0)
    })
    .await;
    daemon.terminate().await;
}
