//! The webhook URL: where it comes from, and a wrapper that cannot leak it.

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
    let key = |suffix: &str| format!("{table}.{prefix}{suffix}");
    let mut sources = Vec::new();
    if let Some(path) = raw.file {
        if path.as_os_str().is_empty() {
            return Err(invalid(key("_file"), "is empty; expected a file path"));
        }
        sources.push((key("_file"), SecretSource::File(path)));
    }
    if let Some(var) = raw.env {
        if var.is_empty() || var.contains(['=', '\0']) {
            return Err(invalid(
                key("_env"),
                "expected the name of an environment variable",
            ));
        }
        sources.push((key("_env"), SecretSource::Env(var)));
    }
    if let Some(name) = raw.credential {
        if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
            return Err(invalid(
                key("_credential"),
                "expected a credential name as in LoadCredential=NAME:…, such as \"slack-webhook\"",
            ));
        }
        sources.push((key("_credential"), SecretSource::Credential(name)));
    }
    if let Some(url) = raw.inline {
        let k = key("");
        let url = SecretUrl::parse(&k, &url)?;
        sources.push((k, SecretSource::Inline(url)));
    }
    if sources.len() != 1 {
        return Err(invalid(
            table,
            format!(
                "expected exactly one of {prefix}_file, {prefix}_env, {prefix}_credential, {prefix}; found {}",
                sources.len()
            ),
        ));
    }
    let (key, source) = sources.remove(0);
    Ok((source, key))
}

impl SecretSource {
    /// Reads the secret and checks it. Errors name `key`, never the value.
    pub fn resolve(&self, key: &str) -> Result<SecretUrl, ConfigError> {
        match self {
            Self::Inline(url) => Ok(url.clone()),
            Self::Env(var) => match std::env::var(var) {
                Ok(value) => SecretUrl::parse(&format!("{key} (${var})"), &value),
                Err(std::env::VarError::NotPresent) => Err(invalid(
                    key,
                    format!(
                        "environment variable {var} is not set; expected it to hold the Slack webhook URL"
                    ),
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(invalid(
                    key,
                    format!("environment variable {var} is not valid UTF-8"),
                )),
            },
            Self::File(path) => read_file(key, path),
            Self::Credential(name) => {
                let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                    return Err(invalid(
                        key,
                        format!(
                            "CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential={name}:/path/to/file"
                        ),
                    ));
                };
                read_file(key, &PathBuf::from(dir).join(name))
            }
        }
    }
}

fn read_file(key: &str, path: &std::path::Path) -> Result<SecretUrl, ConfigError> {
    let value = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            key,
            format!(
                "cannot read {}: {e}; expected a file holding the Slack webhook URL",
                path.display()
            ),
        )
    })?;
    SecretUrl::parse(&format!("{key} ({})", path.display()), &value)
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

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
