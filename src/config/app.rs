//! Slack app mode in `[slack]`: the bot token (a secret, like the webhook URL), the channel
//! it posts to, and the Web API's base URL.

use std::fmt;

use super::secret::{RawSecret, SecretSource};
use super::{ConfigError, invalid};

/// Slack's Web API.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";
/// Bot tokens are about 60 characters; anything far longer is no token.
const MAX_TOKEN_CHARS: usize = 255;

/// `[slack]`'s bot token and where its Web API lives.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    pub token: TokenSource,
    /// The key the token was given under (`slack.bot_token_credential`), for messages.
    pub token_key: String,
    pub api_url: url::Url,
}

impl AppConfig {
    /// Reads the token from its source and checks its form. Errors name the key, never the value.
    pub fn resolve_token(&self) -> Result<BotToken, ConfigError> {
        match &self.token {
            TokenSource::Inline(token) => Ok(token.clone()),
            TokenSource::Located(source) => {
                let (at, text) = source.read_text(&self.token_key, "the Slack bot token")?;
                BotToken::parse(&at, &text)
            }
        }
    }
}

/// Where the bot token comes from: a file, an environment variable or a systemd credential
/// (read when needed), or the config file itself.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    Located(SecretSource),
    Inline(BotToken),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Located(source) => source.fmt(f),
            Self::Inline(_) => f.write_str("inline bot_token in the config file"),
        }
    }
}

/// A bot token (`xoxb-…`). Its `Debug` is redacted and it has no `Display`; [`BotToken::expose`]
/// is the one way out, for the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken(String);

impl BotToken {
    /// Checks the form only (Slack is not asked). The error never repeats the value.
    pub fn parse(key: &str, raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(invalid(key, "the bot token is empty"));
        }
        if !raw.starts_with("xoxb-") {
            return Err(invalid(
                key,
                "is not a bot token; expected one starting with xoxb- (OAuth & Permissions → Bot User OAuth Token)",
            ));
        }
        if raw.chars().count() > MAX_TOKEN_CHARS
            || !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid(
                key,
                "is not a bot token; expected xoxb- followed by letters, digits and dashes",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(<redacted>)")
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
        Some(text) => {
            let key = "slack.bot_token".to_owned();
            (TokenSource::Inline(BotToken::parse(&key, &text)?), key)
        }
        None => {
            let (source, key) = super::secret::located_source("slack", "bot_token", located)?;
            (TokenSource::Located(source), key)
        }
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
