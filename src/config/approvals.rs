//! `[slack.approvals]` and `[route.approvals]`: approving from Slack (Socket Mode, see
//! ARCHITECTURE.md). The app-level token that opens the connection (a secret like the bot
//! token), and who may click: Slack user IDs and user-group IDs, per route or by default.
//! Deny by default: a pipeline whose effective lists are both empty gets no buttons.

use super::app::AppConfig;
use super::raw;
use super::secret::RawSecret;
use super::tokens::{AppLevelToken, TokenSource};
use super::{ConfigError, invalid};

/// Who may approve and reject: Slack user IDs (`U…`, `W…`) and user-group IDs (`S…`),
/// each listed once, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvers {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl Approvers {
    /// No one may approve: the alert gets no buttons.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// `[slack.approvals]`: the app-level token and the default lists.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalsConfig {
    pub token: AppLevelTokenSource,
    /// The key the token was given under (`slack.approvals.app_token_credential`), for messages.
    pub token_key: String,
    /// The lists for every app-mode route without a `[route.approvals]` of its own.
    pub default: Approvers,
}

impl ApprovalsConfig {
    /// Reads the app-level token from its source and checks its form. Errors name the key,
    /// never the value.
    pub fn resolve_token(&self) -> Result<AppLevelToken, ConfigError> {
        self.token.resolve(&self.token_key)
    }
}

/// Where the app-level token comes from.
pub type AppLevelTokenSource = TokenSource<AppLevelToken>;

const TABLE: &str = "slack.approvals";

/// `[slack.approvals]`, which needs app mode: the buttons live on the app's message.
pub(super) fn validate_default(
    raw: Option<raw::SlackApprovals>,
    app: Option<&AppConfig>,
) -> Result<Option<ApprovalsConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if app.is_none() {
        return Err(invalid(
            TABLE,
            "needs Slack app mode: buttons live on the app's messages; expected a bot token in [slack] (bot_token_credential, bot_token_file, bot_token_env or bot_token) with a channel",
        ));
    }
    let located = RawSecret {
        file: raw.app_token_file,
        env: raw.app_token_env,
        credential: raw.app_token_credential,
        inline: None,
    };
    let given = [
        located.file.is_some(),
        located.env.is_some(),
        located.credential.is_some(),
        raw.app_token.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(invalid(
            TABLE,
            format!(
                "expected exactly one of app_token_credential, app_token_file, app_token_env, app_token; found {given}"
            ),
        ));
    }
    let (token, token_key) = TokenSource::from_raw(TABLE, raw.app_token, located)?;
    let default = approvers(TABLE, raw.allow_users, raw.allow_groups)?;
    Ok(Some(ApprovalsConfig {
        token,
        token_key,
        default,
    }))
}

/// `[route.approvals]` of `route[i]`: only beside `[slack.approvals]`, and only on a route the
/// bot token posts to (a webhook's message has no buttons the daemon could take back).
pub(super) fn validate_route(
    i: usize,
    raw: Option<raw::RouteApprovals>,
    posts_to_channel: bool,
    approvals: Option<&ApprovalsConfig>,
) -> Result<Option<Approvers>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let table = format!("route[{i}].approvals");
    if approvals.is_none() {
        return Err(invalid(
            table,
            "needs [slack.approvals] (the app-level token that receives the clicks); add it or remove this table",
        ));
    }
    if !posts_to_channel {
        return Err(invalid(
            table,
            "applies to a route the bot token posts to (a channel, no webhook source); a webhook's message cannot carry buttons",
        ));
    }
    approvers(&table, raw.allow_users, raw.allow_groups).map(Some)
}

/// The two lists, each ID checked for form (Slack is not asked) and listed once.
fn approvers(
    table: &str,
    users: Option<Vec<String>>,
    groups: Option<Vec<String>>,
) -> Result<Approvers, ConfigError> {
    let users = ids(
        table,
        "allow_users",
        users.unwrap_or_default(),
        is_user_id,
        "is not a Slack user ID; expected one such as \"U0123ABCD\" (profile → ⋮ → Copy member ID)",
    )?;
    let groups = ids(
        table,
        "allow_groups",
        groups.unwrap_or_default(),
        is_group_id,
        "is not a Slack user-group ID; expected one such as \"S0PLATFORM\" (the group's page → ⋮ → Copy group ID)",
    )?;
    Ok(Approvers { users, groups })
}

fn ids(
    table: &str,
    key: &str,
    values: Vec<String>,
    ok: fn(&str) -> bool,
    problem: &str,
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (j, value) in values.into_iter().enumerate() {
        if !ok(&value) {
            return Err(invalid(
                format!("{table}.{key}[{j}]"),
                format!("{value:?} {problem}"),
            ));
        }
        // A duplicate changes nothing: listed once.
        if !out.contains(&value) {
            out.push(value);
        }
    }
    Ok(out)
}

/// Uppercase letters and digits after `first`, 8 to 20 characters in all (`U0123ABC` is 8).
fn slack_id(s: &str, first: &[char]) -> bool {
    (8..=20).contains(&s.len())
        && s.starts_with(first)
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// `U…` (a member) or `W…` (an Enterprise Grid member): the one rule for Slack user IDs, in
/// the config, in group members Slack lists, and in a click's payload.
pub fn is_user_id(s: &str) -> bool {
    slack_id(s, &['U', 'W'])
}

fn is_group_id(s: &str) -> bool {
    slack_id(s, &['S'])
}

#[cfg(test)]
mod tests {
    use super::{is_group_id, is_user_id};

    #[test]
    fn user_ids_are_u_or_w_then_uppercase_and_digits_8_to_20_in_all() {
        for id in [
            "U0123ABC",
            "U0123ABCD",
            "W02UD2WE3HA",
            "U0123456789012345678",
        ] {
            assert!(is_user_id(id), "{id}");
        }
        for id in [
            "U0THIRD",
            "U01234567890123456789",
            "u0123abcd",
            "S0123ABCD",
            "U0123-ABC",
            "",
        ] {
            assert!(!is_user_id(id), "{id}");
        }
        assert!(is_group_id("S0123ABCD") && !is_group_id("U0123ABCD"));
    }
}
