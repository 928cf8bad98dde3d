//! Slack app mode in `[slack]`: the bot token (a secret, like the webhook URL), the channel
//! it posts to, and the Web API's base URL.

use super::secret::RawSecret;
pub use super::tokens::{BotToken, Token, TokenSource};
use super::{ConfigError, invalid};

/// Slack's Web API.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// `[slack]`'s bot token and where its Web API lives.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    pub token: TokenSource<BotToken>,
    /// The key the token was given under (`slack.bot_token_credential`), for messages.
    pub token_key: String,
    pub api_url: url::Url,
}

impl AppConfig {
    /// Reads the token from its source and checks its form. Errors name the key, never the value.
    pub fn resolve_token(&self) -> Result<BotToken, ConfigError> {
        self.token.resolve(&self.token_key)
    }
}

/// `[slack]`'s bot-token keys as written.
#[derive(Debug, Default)]
pub(super) struct RawApp {
    pub token: RawSecret,
    pub api_url: Option<String>,
}

impl RawApp {
    pub fn is_given(&self) -> bool {
        let t = &self.token;
        t.file.is_some() || t.env.is_some() || t.credential.is_some() || t.inline.is_some()
    }
}

/// The app settings when `[slack]` names a bot token; `None` when it does not (and then no
/// `api_url` either).
pub(super) fn validate(raw: RawApp) -> Result<Option<AppConfig>, ConfigError> {
    if !raw.is_given() {
        if raw.api_url.is_some() {
            return Err(invalid(
                "slack.api_url",
                "is set without a bot token; expected bot_token_credential, bot_token_file, bot_token_env or bot_token",
            ));
        }
        return Ok(None);
    }
    let inline = raw.token.inline.clone();
    let located = RawSecret {
        inline: None,
        ..raw.token
    };
    let others = [
        located.file.is_some(),
        located.env.is_some(),
        located.credential.is_some(),
    ];
    let (token, token_key) = match inline {
        Some(_) if others.contains(&true) => {
            return Err(invalid(
                "slack",
                "expected exactly one of bot_token_credential, bot_token_file, bot_token_env, bot_token; found more",
            ));
        }
        inline => TokenSource::from_raw("slack", inline, located)?,
    };
    let api_url = api_url(raw.api_url.as_deref().unwrap_or(DEFAULT_API_URL))?;
    Ok(Some(AppConfig {
        token,
        token_key,
        api_url,
    }))
}

/// https, or plain http only to a loopback host (tests); the token must never cross a network
/// in the clear.
fn api_url(raw: &str) -> Result<url::Url, ConfigError> {
    const KEY: &str = "slack.api_url";
    let mut url = url::Url::parse(raw.trim()).map_err(|e| {
        invalid(
            KEY,
            format!("not a valid URL ({e}); expected https://slack.com/api"),
        )
    })?;
    let ok = match url.scheme() {
        "https" => url.host().is_some(),
        "http" => super::secret::is_loopback(&url),
        _ => false,
    };
    if !ok {
        return Err(invalid(
            KEY,
            "expected an https:// URL (plain http only to a loopback host)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            KEY,
            "expected a base URL without ?query or #fragment",
        ));
    }
    // Methods are joined onto the base: `…/api` + `chat.postMessage`.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// A Slack channel ID (`C…`, `G…`, `D…`): the Web API wants the ID, not `#name`.
pub(super) fn check_channel(key: &str, channel: &str) -> Result<(), ConfigError> {
    let ok = (9..=20).contains(&channel.len())
        && channel.starts_with(['C', 'G', 'D'])
        && channel
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !ok {
        return Err(invalid(
            key,
            format!(
                "{channel:?} is not a channel ID; expected one such as \"C0123456789\" (channel details → About, at the bottom)"
            ),
        ));
    }
    Ok(())
}
