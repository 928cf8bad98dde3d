//! The Slack app-level token (`xapp-…`, scope `connections:write`) that opens Socket Mode
//! connections for approving from Slack. A secret like the bot token.

use std::fmt;

use super::{ConfigError, invalid};

/// App-level tokens are about 100 characters; anything far longer is no token.
const MAX_TOKEN_CHARS: usize = 255;

/// An app-level token. Its `Debug` is redacted and it has no `Display`;
/// [`AppLevelToken::expose`] is the one way out, for the `Authorization` header of
/// `apps.connections.open`.
#[derive(Clone, PartialEq, Eq)]
pub struct AppLevelToken(String);

impl AppLevelToken {
    /// Checks the form only (Slack is not asked). The error never repeats the value.
    pub fn parse(key: &str, raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(invalid(key, "the app-level token is empty"));
        }
        if !raw.starts_with("xapp-") {
            return Err(invalid(
                key,
                "is not an app-level token; expected one starting with xapp- (Basic Information → App-Level Tokens, scope connections:write)",
            ));
        }
        if raw.chars().count() > MAX_TOKEN_CHARS
            || !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid(
                key,
                "is not an app-level token; expected xapp- followed by letters, digits and dashes",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppLevelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppLevelToken(<redacted>)")
    }
}

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
    }
}
