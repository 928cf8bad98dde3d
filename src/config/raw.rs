//! Exactly the TOML file's shape. Unknown keys are rejected by serde, naming the key.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub discover_interval: Option<Duration>,
    pub state_path: Option<PathBuf>,
    #[serde(default)]
    pub aws: super::AwsConfig,
    pub slack: Option<Slack>,
    #[serde(default)]
    pub reminders: Reminders,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<Pipeline>,
    #[serde(default, rename = "account")]
    pub accounts: Vec<Account>,
    #[serde(default, rename = "discover")]
    pub discover: Vec<Discover>,
    pub metrics: Option<Metrics>,
    pub heartbeat: Option<Heartbeat>,
    pub digest: Option<Digest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub name: String,
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    pub max_requests_per_second: Option<f64>,
    pub max_concurrency: Option<usize>,
    pub idle_budget_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    pub account: Option<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    pub webhook_url_file: Option<PathBuf>,
    pub webhook_url_env: Option<String>,
    pub webhook_url_credential: Option<String>,
    pub webhook_url: Option<String>,
    pub bot_token_file: Option<PathBuf>,
    pub bot_token_env: Option<String>,
    pub bot_token_credential: Option<String>,
    pub bot_token: Option<String>,
    pub api_url: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub channel: Option<String>,
    pub mention: Option<String>,
    pub notify_resolved: Option<bool>,
    pub approvals: Option<SlackApprovals>,
}

/// `[slack.approvals]`: the app-level token (four sources, like the bot token) and the default
/// lists of who may approve from Slack.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackApprovals {
    pub app_token_file: Option<PathBuf>,
    pub app_token_env: Option<String>,
    pub app_token_credential: Option<String>,
    pub app_token: Option<String>,
    pub allow_users: Option<Vec<String>>,
    pub allow_groups: Option<Vec<String>>,
}

/// `[route.approvals]`: replaces the default lists for the route's pipelines (a missing key is
/// an empty list).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteApprovals {
    pub allow_users: Option<Vec<String>>,
    pub allow_groups: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: Option<String>,
    pub pipelines: Vec<String>,
    pub webhook_url_file: Option<PathBuf>,
    pub webhook_url_env: Option<String>,
    pub webhook_url_credential: Option<String>,
    pub webhook_url: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub channel: Option<String>,
    pub mention: Option<String>,
    pub notify_resolved: Option<bool>,
    pub reminders: Option<Reminders>,
    pub digest: Option<RouteDigest>,
    pub approvals: Option<RouteApprovals>,
}

/// `[digest]`, and a route's `[route.digest]` overriding it key by key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    pub at: Option<String>,
    pub timezone: Option<String>,
    pub days: Option<Vec<String>>,
}

/// A route's `digest`: `false` turns it off, a table overrides `[digest]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RouteDigest {
    Enabled(bool),
    Table(Digest),
}

/// `[reminders]`, and a route's `[route.reminders]` overriding it key by key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reminders {
    #[serde(default, with = "humantime_serde")]
    pub after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    pub max: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub expire_warning: Option<Duration>,
    pub escalate_after: Option<u32>,
    pub escalate_mention: Option<String>,
    pub working_hours: Option<WorkingHours>,
}

impl Reminders {
    /// `self` with any key `over` sets replaced.
    pub fn overridden_by(&self, over: &Reminders) -> Reminders {
        Reminders {
            after: over.after.or(self.after),
            every: over.every.or(self.every),
            max: over.max.or(self.max),
            expire_warning: over.expire_warning.or(self.expire_warning),
            escalate_after: over.escalate_after.or(self.escalate_after),
            escalate_mention: over
                .escalate_mention
                .clone()
                .or_else(|| self.escalate_mention.clone()),
            working_hours: over
                .working_hours
                .clone()
                .or_else(|| self.working_hours.clone()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    pub timezone: String,
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub name: String,
    pub region: Option<String>,
    pub account: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: String,
}

/// `[heartbeat]`: a URL like a webhook (four sources), an optional failure URL, a rhythm.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub url_file: Option<PathBuf>,
    pub url_env: Option<String>,
    pub url_credential: Option<String>,
    pub url: Option<String>,
    pub fail_url_file: Option<PathBuf>,
    pub fail_url_env: Option<String>,
    pub fail_url_credential: Option<String>,
    pub fail_url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
}
