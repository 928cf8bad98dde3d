//! `[slack]` and `[[route]]`: where a pipeline's messages go, with what mention, and how
//! they nag. The routing rule lives here once ([`route_index`]): the first `[[route]]` whose
//! globs match the pipeline, else `[slack]`. It is applied when a message is sent, so after a
//! config change queued messages go where the config now says.

use super::app::{self, AppConfig, RawApp};
use super::reminders::reminder_policy;
use super::{ConfigError, Glob, SecretSource, SecretUrl, invalid, raw, secret};
use approval_watch_core::remind::{Mention, ReminderPolicy};
use approval_watch_core::render::MessageOverrides;

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
    pub destination: Destination,
    pub overrides: MessageOverrides,
    /// Added to every message of this route.
    pub mention: Option<Mention>,
    /// Tell approved / rejected / expired; off drops them.
    pub notify_resolved: bool,
    pub reminders: ReminderPolicy,
    /// `[route.approvals]`: who may approve this route's pipelines from Slack, replacing
    /// `[slack.approvals]`' lists; `None` keeps those.
    pub approvals: Option<super::Approvers>,
}

/// Where a route's messages are posted.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// An incoming webhook.
    Webhook {
        source: SecretSource,
        /// The key the secret was given under, for error messages (`slack.webhook_url_env`).
        key: String,
    },
    /// A channel ID that `[slack]`'s bot token posts to (app mode).
    Channel(String),
}

impl Route {
    /// Reads the webhook secret from its source and checks it (`None` for an app-mode
    /// route). Errors name the key, never the value.
    pub fn resolve_webhook(&self) -> Result<Option<SecretUrl>, ConfigError> {
        match &self.destination {
            Destination::Webhook { source, key } => source.resolve(key).map(Some),
            Destination::Channel(_) => Ok(None),
        }
    }

    /// The channel the bot token posts to, for an app-mode route.
    pub fn channel(&self) -> Option<&str> {
        match &self.destination {
            Destination::Channel(c) => Some(c),
            Destination::Webhook { .. } => None,
        }
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

/// `[slack]` and `[[route]]` spell these keys alike in two serde structs (`deny_unknown_fields`
/// rules out a flattened common part): one place reads them into [`RouteSettings`].
macro_rules! route_settings {
    ($raw:expr) => {
        RouteSettings {
            secret: secret::RawSecret {
                file: $raw.webhook_url_file,
                env: $raw.webhook_url_env,
                credential: $raw.webhook_url_credential,
                inline: $raw.webhook_url,
            },
            username: $raw.username,
            icon_emoji: $raw.icon_emoji,
            channel: $raw.channel,
            mention: $raw.mention,
            notify_resolved: $raw.notify_resolved,
        }
    };
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

/// `[slack]`: the default route, and the bot token when it names one (app mode).
pub(super) fn validate_slack(
    raw: Option<raw::Slack>,
    reminders: &raw::Reminders,
) -> Result<(Route, Option<AppConfig>), ConfigError> {
    let Some(raw) = raw else {
        return Err(invalid(
            "slack",
            "missing; expected a [slack] table with webhook_url_file, webhook_url_env, webhook_url_credential or webhook_url (or bot_token_credential, bot_token_file, bot_token_env or bot_token with channel)",
        ));
    };
    let raw_app = RawApp {
        token: secret::RawSecret {
            file: raw.bot_token_file,
            env: raw.bot_token_env,
            credential: raw.bot_token_credential,
            inline: raw.bot_token,
        },
        api_url: raw.api_url,
    };
    let webhook_given = raw.webhook_url_file.is_some()
        || raw.webhook_url_env.is_some()
        || raw.webhook_url_credential.is_some()
        || raw.webhook_url.is_some();
    if webhook_given && raw_app.is_given() {
        return Err(invalid(
            "slack",
            "has both a webhook URL and a bot token; expected exactly one (a [[route]] may name its own webhook)",
        ));
    }
    let app = app::validate(raw_app)?;
    let policy = reminder_policy("reminders", reminders)?;
    if app.is_some() {
        let Some(channel) = raw.channel else {
            return Err(invalid(
                "slack.channel",
                "is missing; with a bot token, expected the ID of the channel to post in, such as \"C0123456789\"",
            ));
        };
        app::check_channel("slack.channel", &channel)?;
        app_only_settings("slack", &raw.username, &raw.icon_emoji)?;
        let route = app_route(
            "slack",
            DEFAULT_ROUTE.to_owned(),
            Vec::new(),
            channel,
            raw.mention,
            raw.notify_resolved,
            policy,
        )?;
        return Ok((route, app));
    }
    let settings = route_settings!(raw);
    let route = build_route(
        "slack",
        DEFAULT_ROUTE.to_owned(),
        Vec::new(),
        settings,
        policy,
    )?;
    Ok((route, None))
}

pub(super) fn validate_route(
    i: usize,
    raw: raw::Route,
    global: &raw::Reminders,
    app: Option<&AppConfig>,
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
    let webhook_given = raw.webhook_url_file.is_some()
        || raw.webhook_url_env.is_some()
        || raw.webhook_url_credential.is_some()
        || raw.webhook_url.is_some();
    if !webhook_given && let Some(channel) = raw.channel {
        // No webhook: the channel is where `[slack]`'s bot token posts.
        let key = format!("{table}.channel");
        if app.is_none() {
            return Err(invalid(
                key,
                "without a webhook source needs a bot token in [slack] (bot_token_credential, bot_token_file, bot_token_env or bot_token); or give this route a webhook_url_file",
            ));
        }
        app::check_channel(&key, &channel)?;
        app_only_settings(&table, &raw.username, &raw.icon_emoji)?;
        return app_route(
            &table,
            name,
            globs,
            channel,
            raw.mention,
            raw.notify_resolved,
            policy,
        );
    }
    let settings = route_settings!(raw);
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
        destination: Destination::Webhook {
            source: webhook,
            key: webhook_key,
        },
        overrides: MessageOverrides {
            username,
            icon_emoji,
            channel,
        },
        mention,
        notify_resolved: d.notify_resolved.unwrap_or(true),
        reminders,
        approvals: None,
    })
}

/// A route the bot token posts to `channel`.
fn app_route(
    table: &str,
    name: String,
    pipelines: Vec<Glob>,
    channel: String,
    mention: Option<String>,
    notify_resolved: Option<bool>,
    reminders: ReminderPolicy,
) -> Result<Route, ConfigError> {
    let mention = mention
        .map(|m| Mention::parse(&m).map_err(|p| invalid(format!("{table}.mention"), p)))
        .transpose()?;
    Ok(Route {
        name,
        key: table.to_owned(),
        pipelines,
        destination: Destination::Channel(channel),
        overrides: MessageOverrides::default(),
        mention,
        notify_resolved: notify_resolved.unwrap_or(true),
        reminders,
        approvals: None,
    })
}

/// `username` and `icon_emoji` are legacy-webhook overrides; a bot posts as itself (changing
/// that would need the chat:write.customize scope).
fn app_only_settings(
    table: &str,
    username: &Option<String>,
    icon_emoji: &Option<String>,
) -> Result<(), ConfigError> {
    for (k, v) in [("username", username), ("icon_emoji", icon_emoji)] {
        if v.is_some() {
            return Err(invalid(
                format!("{table}.{k}"),
                "applies to webhooks only; a bot token posts as the app (set its name and icon in the app's settings)",
            ));
        }
    }
    Ok(())
}

fn non_empty(key: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(invalid(key, "is empty; remove it or give a value")),
        other => Ok(other),
    }
}
