//! The Slack tokens a config names: the bot token (`xoxb-…`, app mode) and the app-level token
//! (`xapp-…`, scope `connections:write`, Socket Mode for approving from Slack). Secrets: their
//! `Debug` is redacted, they have no `Display`, and `expose` is the one way out, for an
//! `Authorization` header. Only their form is checked (Slack is not asked); an error names the
//! key and never repeats the value.

use std::fmt;

use super::secret::{RawSecret, SecretSource, located_source};
use super::{ConfigError, invalid};

/// Bot tokens are about 60 characters and app-level tokens about 100; anything far longer is
/// no token.
const MAX_TOKEN_CHARS: usize = 255;

/// What tells one kind of token from another, and where a person finds the right one.
struct Kind {
    /// "a bot token", "an app-level token".
    a_name: &'static str,
    name: &'static str,
    prefix: &'static str,
    found_at: &'static str,
}

const BOT: Kind = Kind {
    a_name: "a bot token",
    name: "bot token",
    prefix: "xoxb-",
    found_at: "OAuth & Permissions → Bot User OAuth Token",
};

const APP: Kind = Kind {
    a_name: "an app-level token",
    name: "app-level token",
    prefix: "xapp-",
    found_at: "Basic Information → App-Level Tokens, scope connections:write",
};

/// The token's text, trimmed, if it has `kind`'s form.
fn check_form(key: &str, raw: &str, kind: &Kind) -> Result<String, ConfigError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(invalid(key, format!("the {} is empty", kind.name)));
    }
    if !raw.starts_with(kind.prefix) {
        return Err(invalid(
            key,
            format!(
                "is not {}; expected one starting with {} ({})",
                kind.a_name, kind.prefix, kind.found_at
            ),
        ));
    }
    if raw.chars().count() > MAX_TOKEN_CHARS
        || !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(invalid(
            key,
            format!(
                "is not {}; expected {} followed by letters, digits and dashes",
                kind.a_name, kind.prefix
            ),
        ));
    }
    Ok(raw.to_owned())
}

/// A token kind a config can name, in the four ways every secret can be given.
pub trait Token: Sized + Clone {
    /// How an unreadable source names it ("the Slack bot token").
    const WHAT: &'static str;
    /// The inline key (`bot_token`); the others add `_file`, `_env`, `_credential`.
    const KEY: &'static str;
    fn parse(key: &str, raw: &str) -> Result<Self, ConfigError>;
}

/// Where a token comes from: a file, an environment variable or a systemd credential (read
/// when needed), or the config file itself.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource<T> {
    Located(SecretSource),
    Inline(T),
}

impl<T: Token> TokenSource<T> {
    /// The source `table` names: `inline` (checked now) or one of `located`, and the key it
    /// was given under. The caller has checked that exactly one is given.
    pub(super) fn from_raw(
        table: &str,
        inline: Option<String>,
        located: RawSecret,
    ) -> Result<(Self, String), ConfigError> {
        match inline {
            Some(text) => {
                let key = format!("{table}.{}", T::KEY);
                Ok((Self::Inline(T::parse(&key, &text)?), key))
            }
            None => {
                let (source, key) = located_source(table, T::KEY, located)?;
                Ok((Self::Located(source), key))
            }
        }
    }

    /// Reads the token from its source and checks its form. Errors name `key`, never the value.
    pub fn resolve(&self, key: &str) -> Result<T, ConfigError> {
        match self {
            Self::Inline(token) => Ok(token.clone()),
            Self::Located(source) => {
                let (at, text) = source.read_text(key, T::WHAT)?;
                T::parse(&at, &text)
            }
        }
    }
}

impl<T: Token> fmt::Display for TokenSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Located(source) => source.fmt(f),
            Self::Inline(_) => write!(f, "inline {} in the config file", T::KEY),
        }
    }
}

/// A token type: its text kept inside, `Debug` redacted, `expose` the one way out.
macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $key:literal, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl Token for $name {
            const WHAT: &'static str = $what;
            const KEY: &'static str = $key;
            fn parse(key: &str, raw: &str) -> Result<Self, ConfigError> {
                check_form(key, raw, &$kind).map(Self)
            }
        }

        impl $name {
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

token_type!(
    /// A bot token (`xoxb-…`).
    BotToken,
    "the Slack bot token",
    "bot_token",
    BOT
);

token_type!(
    /// An app-level token (`xapp-…`), for `apps.connections.open`.
    AppLevelToken,
    "the Slack app-level token",
    "app_token",
    APP
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_app_tokens_pass_and_errors_never_repeat_the_value() {
        assert!(AppLevelToken::parse("k", "xapp-1-A0-123-abc").is_ok());
        for bad in ["", "xoxb-123-abc", "xapp-has space", "xapp-\u{7}"] {
            let e = AppLevelToken::parse("slack.approvals.app_token", bad).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("slack.approvals.app_token"), "{text}");
            if !bad.is_empty() {
                assert!(!text.contains(bad), "{text}");
            }
        }
        let t = AppLevelToken::parse("k", "xapp-1-secret").unwrap();
        assert_eq!(format!("{t:?}"), "AppLevelToken(<redacted>)");
        let t = BotToken::parse("k", "xoxb-1-secret").unwrap();
        assert_eq!(format!("{t:?}"), "BotToken(<redacted>)");
        assert_eq!(t.expose(), "xoxb-1-secret");
    }
}
