//! The human-readable summary `check-config` prints. Never includes a webhook secret.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::aws::Target;
use crate::config::{
    Config, Credentials, Destination, HeartbeatConfig, HeartbeatUrls, Route, SecretSource,
    SecretUrl,
};
use approval_watch_core::remind::ReminderPolicy;

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn reminders(p: &ReminderPolicy) -> String {
    let mut parts = Vec::new();
    if p.max == 0 {
        parts.push("no regular reminders".to_owned());
    } else {
        parts.push(format!(
            "after {}, every {}, at most {}",
            human(p.after),
            human(p.every),
            p.max
        ));
    }
    if let Some(w) = p.expire_warning {
        parts.push(format!("expiry warning {} before", human(w)));
    }
    if let (Some(after), Some(mention)) = (p.escalate_after, &p.escalate_mention) {
        parts.push(format!("escalate to {} after {after}", mention.as_str()));
    }
    if let Some(w) = &p.working_hours {
        let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .zip(w.days)
            .filter(|(_, on)| *on)
            .map(|(d, _)| *d)
            .collect::<Vec<_>>()
            .join(",");
        parts.push(format!(
            "working hours {days} {:02}:{:02}-{:02}:{:02} {}",
            w.start_minute / 60,
            w.start_minute % 60,
            w.end_minute / 60,
            w.end_minute % 60,
            w.timezone_name
        ));
    }
    parts.join("; ")
}

/// Who may approve a route's pipelines from Slack (only said when approvals are on).
fn approvers(out: &mut String, config: &Config, route: &Route) {
    if config.approvals.is_none() {
        return;
    }
    let who = match config.approvers_of(route) {
        None => "no one (posts by webhook: no buttons)".to_owned(),
        Some(a) if a.is_empty() => "no one (no buttons)".to_owned(),
        Some(a) => {
            let list = |ids: &[String]| {
                if ids.is_empty() {
                    "none".to_owned()
                } else {
                    ids.join(", ")
                }
            };
            let from = if route.approvals.is_some() {
                "[route.approvals]"
            } else {
                "[slack.approvals]"
            };
            format!(
                "users {}; groups {} (from {from})",
                list(&a.users),
                list(&a.groups)
            )
        }
    };
    let _ = writeln!(out, "    may approve from Slack: {who}");
}

fn route(out: &mut String, route: &Route, webhook: Option<&SecretUrl>) {
    let matches = if route.pipelines.is_empty() {
        "every pipeline no route matches".to_owned()
    } else {
        route
            .pipelines
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "  {} ({}): {matches}", route.name, route.key);
    match (&route.destination, webhook) {
        (Destination::Webhook { source, key }, Some(webhook)) => {
            let source = match source {
                SecretSource::Inline(_) => {
                    "inline webhook_url (prefer webhook_url_file or a systemd credential)"
                        .to_owned()
                }
                other => other.to_string(),
            };
            // The host is not secret; the path of a webhook URL is.
            let host = webhook.expose().host_str().unwrap_or("?");
            let _ = writeln!(out, "    webhook: from {source} ({key}), host {host}");
        }
        (Destination::Channel(channel), _) => {
            let _ = writeln!(out, "    channel: {channel} (bot token)");
        }
        (Destination::Webhook { .. }, None) => {}
    }
    for (key, value) in route.overrides.fields() {
        if let Some(value) = value {
            let _ = writeln!(out, "    {key}: {value}");
        }
    }
    if let Some(m) = &route.mention {
        let _ = writeln!(out, "    mention: {}", m.as_str());
    }
    if !route.notify_resolved {
        let _ = writeln!(out, "    resolutions: not told");
    }
    let _ = writeln!(out, "    reminders: {}", reminders(&route.reminders));
}

/// The summary: settings, each route with its resolved secret's host, each pipeline's
/// region and route.
pub fn config_summary(
    path: &Path,
    config: &Config,
    targets: &[Target],
    webhooks: &[Option<SecretUrl>],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "config {}: ok", path.display());
    let _ = writeln!(
        out,
        "poll interval: {} (idle pipelines: {})",
        human(config.poll_interval),
        human(config.idle_poll_interval)
    );
    let _ = writeln!(out, "state database: {}", config.state_path.display());
    for r in crate::config::idle_rhythms(config, targets) {
        let _ = writeln!(
            out,
            "idle pipelines in {}/{} ({}): read every {} s (idle_budget_share of the budget)",
            r.account, r.region, r.pipelines, r.idle_read_every_s
        );
    }
    let _ = writeln!(out, "accounts:");
    for a in &config.accounts {
        let credentials = match &a.credentials {
            Credentials::DefaultChain => "SDK default chain".to_owned(),
            Credentials::Profile(p) => format!("profile {p}"),
            Credentials::AssumeRole {
                role_arn,
                external_id,
                profile,
            } => format!(
                "assume {role_arn}{}{}",
                external_id
                    .as_ref()
                    .map(|_| " with external id")
                    .unwrap_or_default(),
                profile
                    .as_ref()
                    .map(|p| format!(" from profile {p}"))
                    .unwrap_or_default()
            ),
        };
        let regions = if a.regions.is_empty() {
            String::new()
        } else {
            format!(", regions {}", a.regions.join(","))
        };
        let _ = writeln!(
            out,
            "  {}: {credentials}{regions}; budget {} requests/s, {} in flight",
            a.name, a.limits.requests_per_second, a.limits.max_concurrency
        );
    }
    if !config.discover.is_empty() {
        let _ = writeln!(out, "discovery every {}:", human(config.discover_interval));
        for d in &config.discover {
            let globs = |g: &[crate::config::Glob]| {
                g.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(",")
            };
            let _ = writeln!(
                out,
                "  account {} region {}: include {}{}",
                d.account,
                d.region.as_deref().unwrap_or("(the account's regions)"),
                globs(&d.include),
                if d.exclude.is_empty() {
                    String::new()
                } else {
                    format!(", exclude {}", globs(&d.exclude))
                }
            );
        }
    }
    if let Some(listen) = &config.metrics {
        let _ = writeln!(out, "metrics: http://{listen}/metrics");
    }
    if let Some(app) = &config.app {
        // Read and checked for form; Slack is not asked (test-slack does that).
        let _ = writeln!(
            out,
            "slack app: bot token from {} ({}), Web API {}",
            app.token,
            app.token_key,
            crate::config::shown_url(&app.api_url)
        );
    }
    if let Some(approvals) = &config.approvals {
        // Read and checked for form; Slack is not asked.
        let _ = writeln!(
            out,
            "approving from Slack: Socket Mode, app-level token from {} ({})",
            approvals.token, approvals.token_key
        );
    }
    let _ = writeln!(out, "routes:");
    for (r, webhook) in config.all_routes().zip(webhooks) {
        route(&mut out, r, webhook.as_ref());
        approvers(&mut out, config, r);
    }
    if !config.digests.is_empty() {
        let _ = writeln!(out, "daily digests:");
        for (route, schedule) in &config.digests {
            let _ = writeln!(out, "  {route}: {}", schedule.describe());
        }
    }
    let _ = writeln!(out, "pipelines ({}):", targets.len());
    for (target, p) in targets.iter().zip(&config.pipelines) {
        let account_regions = config.account(&p.account).map_or(0, |a| a.regions.len());
        let origin = if p.region.is_some() {
            "pipeline.region"
        } else if p.account != approval_watch_core::model::DEFAULT_ACCOUNT && account_regions == 1 {
            "account.regions"
        } else if config.aws.region.is_some() {
            "aws.region"
        } else {
            "AWS default chain"
        };
        let account = if p.account == approval_watch_core::model::DEFAULT_ACCOUNT {
            String::new()
        } else {
            format!("  account {}", p.account)
        };
        let _ = writeln!(
            out,
            "  {}  {}  (region from {origin}){account}  → route {}",
            target.pipeline,
            target.region,
            config.route_for(&target.pipeline).name
        );
    }
    out
}

/// The `[heartbeat]` lines: sources, hosts and rhythm; never a URL's path.
pub fn heartbeat(config: &HeartbeatConfig, urls: &HeartbeatUrls) -> String {
    let mut out = String::new();
    let host = |url: &SecretUrl| url.expose().host_str().unwrap_or("?").to_owned();
    let source = |s: &SecretSource| match s {
        SecretSource::Inline(_) => "the config file".to_owned(),
        other => other.to_string(),
    };
    let _ = writeln!(
        out,
        "heartbeat: every {} after a healthy cycle, from {} ({}), host {}",
        human(config.every),
        source(&config.url),
        config.url_key,
        host(&urls.url)
    );
    if let (Some((fail, key)), Some(url)) = (&config.fail_url, &urls.fail_url) {
        let _ = writeln!(
            out,
            "  when unhealthy: from {} ({key}), host {}",
            source(fail),
            host(url)
        );
    }
    out
}
