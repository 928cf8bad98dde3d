//! `[slack]` and `[[route]]`: where a pipeline's messages go, with what mention, and how
//! they nag. The routing rule lives here once ([`route_index`]): the first `[[route]]` whose
//! globs match the pipeline, else `[slack]`. It is applied when a message is sent, so after a
//! config change queued messages go where the config now says.

use super::reminders::reminder_policy;
use super::{ConfigError, Glob, SecretSource, SecretUrl, invalid, raw, secret};
use crate::remind::{Mention, ReminderPolicy};

/// The name of the `[slack]` route.
pub const DEFAULT_ROUTE: &str = "default";

/// Where a pipeline's messages go and how they nag: `[slack]` or one `[[route]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `default` for `[slack]`, else the route's `name`; keys rate limits and logs.
    pub name: String,
    /// Where it is configured (`slack`, `route[0]`), for messages.
    pub key: String,
    /// Globs over pipeline names; empty for `[slack]`, which takes the rest.
    pub pipelines: Vec<Glob>,
    pub webhook: SecretSource,
    /// The key the secret was given under, for error messages (`slack.webhook_url_env`).
    pub webhook_key: String,
    pub overrides: MessageOverrides,
    /// Added to every message of this route.
    pub mention: Option<Mention>,
    /// Tell approved / rejected / expired; off drops them.
    pub notify_resolved: bool,
    pub reminders: ReminderPolicy,
}

impl Route {
    /// Reads the secret from its source and checks it. Errors name the key, never the value.
    pub fn resolve_webhook(&self) -> Result<SecretUrl, ConfigError> {
        self.webhook.resolve(&self.webhook_key)
    }

    fn matches(&self, pipeline: &str) -> bool {
        self.pipelines.iter().any(|g| g.matches(pipeline))
    }
}

/// The index in `routes` of the first route taking `pipeline`; `routes.len()` when none does
/// (the pipeline goes to `[slack]`). The one routing rule: config and deliverer both use it.
pub fn route_index(routes: &[Route], pipeline: &str) -> usize {
    routes
        .iter()
        .position(|r| r.matches(pipeline))
        .unwrap_or(routes.len())
}

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

/// What `[slack]` and `[[route]]` share, as written.
struct RouteSettings {
    secret: secret::RawSecret,
    username: Option<String>,
    icon_emoji: Option<String>,
    channel: Option<String>,
    mention: Option<String>,
    notify_resolved: Option<bool>,
}

pub(super) fn validate_slack(
    raw: Option<raw::Slack>,
    reminders: &raw::Reminders,
) -> Result<Route, ConfigError> {
    let Some(raw) = raw else {
        return Err(invalid(
            "slack",
            "missing; expected a [slack] table with webhook_url_file, webhook_url_env, webhook_url_credential or webhook_url",
        ));
    };
    let settings = RouteSettings {
        secret: secret::RawSecret {
            file: raw.webhook_url_file,
            env: raw.webhook_url_env,
            credential: raw.webhook_url_credential,
            inline: raw.webhook_url,
        },
        username: raw.username,
        icon_emoji: raw.icon_emoji,
        channel: raw.channel,
        mention: raw.mention,
        notify_resolved: raw.notify_resolved,
    };
    let policy = reminder_policy("reminders", reminders)?;
    build_route(
        "slack",
        DEFAULT_ROUTE.to_owned(),
        Vec::new(),
        settings,
        policy,
    )
}

pub(super) fn validate_route(
    i: usize,
    raw: raw::Route,
    global: &raw::Reminders,
) -> Result<Route, ConfigError> {
    let table = format!("route[{i}]");
    let name = match raw.name {
        Some(n) if n.trim().is_empty() || n.len() > 100 => {
            return Err(invalid(
                format!("{table}.name"),
                "expected 1 to 100 characters",
            ));
        }
        Some(n) => n,
        None => table.clone(),
    };
    if raw.pipelines.is_empty() {
        return Err(invalid(
            format!("{table}.pipelines"),
            "is empty; expected globs over pipeline names, such as [\"payments-*\"]",
        ));
    }
    let globs = raw
        .pipelines
        .iter()
        .enumerate()
        .map(|(j, p)| Glob::parse(&format!("{table}.pipelines[{j}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = match &raw.reminders {
        Some(over) => reminder_policy(&format!("{table}.reminders"), &global.overridden_by(over))?,
        None => reminder_policy("reminders", global)?,
    };
    let settings = RouteSettings {
        secret: secret::RawSecret {
            file: raw.webhook_url_file,
            env: raw.webhook_url_env,
            credential: raw.webhook_url_credential,
            inline: raw.webhook_url,
        },
        username: raw.username,
        icon_emoji: raw.icon_emoji,
        channel: raw.channel,
        mention: raw.mention,
        notify_resolved: raw.notify_resolved,
    };
    build_route(&table, name, globs, settings, policy)
}

fn build_route(
    table: &str,
    name: String,
    pipelines: Vec<Glob>,
    d: RouteSettings,
    reminders: ReminderPolicy,
) -> Result<Route, ConfigError> {
    let (webhook, webhook_key) = secret::source(table, d.secret)?;
    let key = |k: &str| format!("{table}.{k}");
    let username = non_empty(&key("username"), d.username)?;
    let channel = non_empty(&key("channel"), d.channel)?;
    let icon_emoji = non_empty(&key("icon_emoji"), d.icon_emoji)?;
    if let Some(icon) = &icon_emoji
        && !(icon.len() > 2 && icon.starts_with(':') && icon.ends_with(':'))
    {
        return Err(invalid(
            key("icon_emoji"),
            "expected an emoji code such as \":rocket:\"",
        ));
    }
    let mention = d
        .mention
        .map(|m| Mention::parse(&m).map_err(|p| invalid(key("mention"), p)))
        .transpose()?;
    Ok(Route {
        name,
        key: table.to_owned(),
        pipelines,
        webhook,
        webhook_key,
        overrides: MessageOverrides {
            username,
            icon_emoji,
            channel,
        },
        mention,
        notify_resolved: d.notify_resolved.unwrap_or(true),
        reminders,
    })
}

fn non_empty(key: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(invalid(key, "is empty; remove it or give a value")),
        other => Ok(other),
    }
}
