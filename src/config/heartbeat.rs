//! `[heartbeat]`: a dead man's switch. The URLs are secrets exactly like a webhook (four
//! sources, never logged); `every` paces the pings.

use std::time::Duration;

use super::secret::{self, RawSecret};
use super::{ConfigError, SecretSource, SecretUrl, invalid, raw};

const DEFAULT_EVERY: Duration = Duration::from_secs(60);
/// Pings run beside the loop with a 5 s timeout; pacing them closer would let them pile up.
const MIN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    /// Pinged after a healthy cycle, at most once per `every`.
    pub url: SecretSource,
    /// The key `url` was given under (`heartbeat.url_credential`), for messages.
    pub url_key: String,
    /// Pinged when a cycle is unhealthy: at once after a healthy one, then once per `every`.
    pub fail_url: Option<(SecretSource, String)>,
    pub every: Duration,
}

/// Both URLs, read from their sources.
#[derive(Debug, Clone)]
pub struct HeartbeatUrls {
    pub url: SecretUrl,
    pub fail_url: Option<SecretUrl>,
}

impl HeartbeatConfig {
    /// Reads the secrets. Errors name the key, never the value.
    pub fn resolve(&self) -> Result<HeartbeatUrls, ConfigError> {
        let url = self.url.resolve(&self.url_key)?;
        let fail_url = match &self.fail_url {
            Some((source, key)) => Some(source.resolve(key)?),
            None => None,
        };
        Ok(HeartbeatUrls { url, fail_url })
    }
}

pub(super) fn validate_heartbeat(
    raw: Option<raw::Heartbeat>,
) -> Result<Option<HeartbeatConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let (url, url_key) = secret::source_named(
        "heartbeat",
        "url",
        RawSecret {
            file: raw.url_file,
            env: raw.url_env,
            credential: raw.url_credential,
            inline: raw.url,
        },
    )?;
    let fail = RawSecret {
        file: raw.fail_url_file,
        env: raw.fail_url_env,
        credential: raw.fail_url_credential,
        inline: raw.fail_url,
    };
    let fail_url = if fail.file.is_none()
        && fail.env.is_none()
        && fail.credential.is_none()
        && fail.inline.is_none()
    {
        None
    } else {
        Some(secret::source_named("heartbeat", "fail_url", fail)?)
    };
    let every = raw.every.unwrap_or(DEFAULT_EVERY);
    if every < MIN_EVERY {
        return Err(invalid(
            "heartbeat.every",
            format!(
                "{} is too short; expected at least {}",
                humantime::format_duration(every),
                humantime::format_duration(MIN_EVERY)
            ),
        ));
    }
    Ok(Some(HeartbeatConfig {
        url,
        url_key,
        fail_url,
        every,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    const BASE: &str = "[slack]\nwebhook_url = \"https://hooks.slack.com/services/T0/B0/X\"\n\
                        [[pipeline]]\nname = \"web-app\"\n";

    fn parse(heartbeat: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{BASE}[heartbeat]\n{heartbeat}"),
            Path::new("t.toml"),
        )
    }

    #[test]
    fn a_heartbeat_takes_one_url_source_and_an_optional_fail_url() {
        let config = parse("url_credential = \"heartbeat-url\"\nfail_url_env = \"HB_FAIL\"\n")
            .expect("valid");
        let h = config.heartbeat.expect("configured");
        assert_eq!(h.url, SecretSource::Credential("heartbeat-url".into()));
        assert_eq!(h.url_key, "heartbeat.url_credential");
        assert_eq!(
            h.fail_url,
            Some((
                SecretSource::Env("HB_FAIL".into()),
                "heartbeat.fail_url_env".into()
            ))
        );
        assert_eq!(h.every, DEFAULT_EVERY);
        let plain = parse("url_file = \"/run/hb\"\nevery = \"5m\"\n").expect("valid");
        let h = plain.heartbeat.expect("configured");
        assert_eq!((h.fail_url, h.every), (None, Duration::from_secs(300)));
    }

    #[test]
    fn heartbeat_errors_name_the_key_never_the_url() {
        let secret = "https://hc-ping.com/XSECRETX";
        let e = parse(&format!("url = \"{secret}\"\nurl_env = \"HB\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("heartbeat: expected exactly one of url_file"),
            "{e}"
        );
        assert!(!e.contains("XSECRETX"), "{e}");
        let e = parse("every = \"1m\"\n").unwrap_err().to_string();
        assert!(e.contains("found 0"), "{e}");
        let e = parse("url = \"ftp://hc-ping.com/XSECRETX\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("heartbeat.url:") && !e.contains("XSECRETX"),
            "{e}"
        );
        let e = parse(&format!(
            "url = \"{secret}\"\nfail_url = \"http://example.com/XSECRETX\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("heartbeat.fail_url:") && !e.contains("XSECRETX"),
            "{e}"
        );
        let e = parse(&format!("url = \"{secret}\"\nevery = \"5s\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("heartbeat.every: 5s is too short"), "{e}");
        let e = parse(&format!("url = \"{secret}\"\nurls = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("urls"), "{e}");
    }
}
