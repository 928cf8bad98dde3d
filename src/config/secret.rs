//! Secrets kept outside the config file (the webhook URL, the bot token): where they come
//! from, and a wrapper for the webhook URL that cannot leak it.

use std::fmt;
use std::path::PathBuf;

use super::{ConfigError, invalid};

/// Where the webhook URL comes from. Holds a location, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=`).
    Credential(String),
    /// Written in the config file itself (`webhook_url`).
    Inline(SecretUrl),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::Credential(name) => write!(f, "systemd credential {name}"),
            Self::Inline(_) => f.write_str("inline webhook_url in the config file"),
        }
    }
}

/// The four keys a secret can be given under, in a `[slack]` or `[[route]]` table.
#[derive(Debug, Default)]
pub(super) struct RawSecret {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    pub credential: Option<String>,
    pub inline: Option<String>,
}

/// Exactly one source, checked for form (not read: see [`SecretSource::resolve`]).
/// Returns the source and the full key it was given under.
pub(super) fn source(table: &str, raw: RawSecret) -> Result<(SecretSource, String), ConfigError> {
    source_named(table, "webhook_url", raw)
}

/// [`source`] for a secret URL given under `<prefix>_file`, `<prefix>_env`,
/// `<prefix>_credential` or `<prefix>` (`webhook_url`, or the heartbeat's `url`).
pub(super) fn source_named(
    table: &str,
    prefix: &str,
    raw: RawSecret,
) -> Result<(SecretSource, String), ConfigError> {
    let inline = raw.inline.clone();
    let mut sources = located(prefix, table, raw)?;
    if let Some(url) = inline {
        let k = format!("{table}.{prefix}");
        let url = SecretUrl::parse(&k, &url)?;
        sources.push((k, SecretSource::Inline(url)));
    }
    the_one(
        table,
        &format!("{prefix}_file, {prefix}_env, {prefix}_credential, {prefix}"),
        sources,
    )
}

/// Exactly one of `<prefix>_file`, `<prefix>_env`, `<prefix>_credential` (the caller handles
/// an inline value), checked for form.
pub(super) fn located_source(
    table: &str,
    prefix: &str,
    raw: RawSecret,
) -> Result<(SecretSource, String), ConfigError> {
    let sources = located(prefix, table, raw)?;
    the_one(
        table,
        &format!("{prefix}_credential, {prefix}_file, {prefix}_env, {prefix}"),
        sources,
    )
}

/// The one source given, or an error listing the `keys` one of which was expected.
fn the_one(
    table: &str,
    keys: &str,
    mut sources: Vec<(String, SecretSource)>,
) -> Result<(SecretSource, String), ConfigError> {
    if sources.len() != 1 {
        return Err(invalid(
            table,
            format!("expected exactly one of {keys}; found {}", sources.len()),
        ));
    }
    let (key, source) = sources.remove(0);
    Ok((source, key))
}

/// The file, environment and credential sources given, each with its full key.
fn located(
    prefix: &str,
    table: &str,
    raw: RawSecret,
) -> Result<Vec<(String, SecretSource)>, ConfigError> {
    let key = |k: &str| format!("{table}.{prefix}_{k}");
    let mut sources = Vec::new();
    if let Some(path) = raw.file {
        if path.as_os_str().is_empty() {
            return Err(invalid(key("file"), "is empty; expected a file path"));
        }
        sources.push((key("file"), SecretSource::File(path)));
    }
    if let Some(var) = raw.env {
        if var.is_empty() || var.contains(['=', '\0']) {
            return Err(invalid(
                key("env"),
                "expected the name of an environment variable",
            ));
        }
        sources.push((key("env"), SecretSource::Env(var)));
    }
    if let Some(name) = raw.credential {
        if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
            return Err(invalid(
                key("credential"),
                "expected a credential name as in LoadCredential=NAME:…, such as \"slack-webhook\"",
            ));
        }
        sources.push((key("credential"), SecretSource::Credential(name)));
    }
    Ok(sources)
}

impl SecretSource {
    /// Reads the secret and checks it. Errors name `key`, never the value.
    pub fn resolve(&self, key: &str) -> Result<SecretUrl, ConfigError> {
        match self {
            Self::Inline(url) => Ok(url.clone()),
            located => {
                let (at, text) = located.read_text(key, "the Slack webhook URL")?;
                SecretUrl::parse(&at, &text)
            }
        }
    }

    /// Reads a secret kept outside the config file: the key qualified with where it was
    /// read (`slack.bot_token_env ($VAR)`), and the text. `what` names the secret in errors.
    pub(super) fn read_text(&self, key: &str, what: &str) -> Result<(String, String), ConfigError> {
        match self {
            Self::Inline(_) => Err(invalid(key, "is written in the config file, not read")),
            Self::Env(var) => match std::env::var(var) {
                Ok(value) => Ok((format!("{key} (${var})"), value)),
                Err(std::env::VarError::NotPresent) => Err(invalid(
                    key,
                    format!("environment variable {var} is not set; expected it to hold {what}"),
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(invalid(
                    key,
                    format!("environment variable {var} is not valid UTF-8"),
                )),
            },
            Self::File(path) => read_file(key, path, what),
            Self::Credential(name) => {
                let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                    return Err(invalid(
                        key,
                        format!(
                            "CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential={name}:/path/to/file"
                        ),
                    ));
                };
                read_file(key, &PathBuf::from(dir).join(name), what)
            }
        }
    }
}

/// A secret file holds one URL or token; anything bigger is not the file the key meant.
const MAX_SECRET_FILE: u64 = 64 * 1024;

fn read_file(
    key: &str,
    path: &std::path::Path,
    what: &str,
) -> Result<(String, String), ConfigError> {
    let file = crate::config::small_file::read(path, MAX_SECRET_FILE).map_err(|e| {
        invalid(
            key,
            format!("{e}; expected a regular file of at most 64 KiB holding {what}"),
        )
    })?;
    if file.open_to_others() {
        tracing::warn!(
            key,
            path = %path.display(),
            mode = format!("{:04o}", file.mode),
            "the secret file is open to group or others; restrict it (chmod 600) or use a systemd credential"
        );
    }
    Ok((format!("{key} ({})", path.display()), file.text))
}

/// A webhook URL. Its `Debug` is redacted and it has no `Display`, so it cannot leak
/// into a log line or an error by accident; [`SecretUrl::expose`] is the one way out.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(url::Url);

impl SecretUrl {
    /// Checks the URL: https, or plain http only to a loopback host (for tests).
    /// The error never repeats the URL.
    pub fn parse(key: &str, raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(invalid(key, "the webhook URL is empty"));
        }
        let url = url::Url::parse(raw).map_err(|e| {
            invalid(
                key,
                format!("not a valid URL ({e}); expected https://hooks.slack.com/services/..."),
            )
        })?;
        match url.scheme() {
            "https" if url.host().is_some() => Ok(Self(url)),
            "http" if is_loopback(&url) => Ok(Self(url)),
            "http" => Err(invalid(
                key,
                "plain http is allowed only to a loopback host; expected an https:// URL",
            )),
            other => Err(invalid(
                key,
                format!("unsupported URL scheme {other:?}; expected an https:// URL"),
            )),
        }
    }

    pub fn expose(&self) -> &url::Url {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretUrl(<redacted>)")
    }
}

/// A URL as it may be shown (`check-config`, logs): any user name and password in it are
/// replaced, since a URL such as `https://user:password@proxy/api` carries a secret.
pub fn shown_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        // Both setters fail only for URLs that cannot have user info, which had none.
        let _ = shown.set_password(None);
        let _ = shown.set_username("redacted");
    }
    shown.to_string()
}

pub(super) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod shown_url_tests {
    use super::shown_url;

    #[test]
    fn a_shown_url_never_carries_its_user_info() {
        let url = url::Url::parse("https://ops:hunter2@proxy.example/api/").unwrap();
        let shown = shown_url(&url);
        assert_eq!(shown, "https://redacted@proxy.example/api/");
        let plain = url::Url::parse("https://slack.com/api/").unwrap();
        assert_eq!(shown_url(&plain), "https://slack.com/api/");
        let only_user = url::Url::parse("https://token-in-user@slack.example/").unwrap();
        assert!(!shown_url(&only_user).contains("token-in-user"));
    }
}
