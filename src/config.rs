//! Configuration: TOML parsing (`raw`), then semantic checks into [`Config`].
//! Secrets are resolved separately ([`SlackConfig::resolve_webhook`]) so that commands
//! which never talk to Slack (`status`) do not need to read them.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A config problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

pub const DEFAULT_CONFIG_PATH: &str = "/etc/approval-watch/config.toml";
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// Exactly the TOML file's shape. Unknown keys are rejected by serde with their name.
mod raw {
    use std::path::PathBuf;
    use std::time::Duration;

    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        #[serde(default, with = "humantime_serde")]
        pub poll_interval: Option<Duration>,
        pub state_path: Option<PathBuf>,
        #[serde(default)]
        pub aws: super::AwsConfig,
        pub slack: Option<Slack>,
        #[serde(default)]
        pub reminders: Reminders,
        #[serde(default, rename = "pipeline")]
        pub pipelines: Vec<Pipeline>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Slack {
        pub webhook_url_file: Option<PathBuf>,
        pub webhook_url_env: Option<String>,
        pub webhook_url: Option<String>,
        pub username: Option<String>,
        pub icon_emoji: Option<String>,
        pub channel: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Reminders {
        #[serde(default, with = "humantime_serde")]
        pub after: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        pub every: Option<Duration>,
        pub max: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Pipeline {
        pub name: String,
        pub region: Option<String>,
    }
}

/// `[aws]`: used as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Default region for pipelines that name none; `None` → the SDK's own chain.
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Another CodePipeline endpoint (tests, VPC endpoints). `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub poll_interval: Duration,
    pub state_path: PathBuf,
    pub aws: AwsConfig,
    pub slack: SlackConfig,
    pub reminders: Reminders,
    pub pipelines: Vec<PipelineConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    pub name: String,
    /// `None` → `[aws] region`, else the SDK's default region.
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminders {
    pub after: Duration,
    pub every: Duration,
    /// 0 = no reminders.
    pub max: u32,
}

impl Default for Reminders {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(30 * 60),
            every: Duration::from_secs(60 * 60),
            max: 8,
        }
    }
}

/// Where the webhook URL comes from. Holds a location, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    /// Written in the config file itself (`webhook_url`).
    Inline(SecretUrl),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::Inline(_) => f.write_str("inline webhook_url in the config file"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackConfig {
    pub webhook: SecretSource,
    /// The key the source was given under, for error messages (`slack.webhook_url_env`).
    pub webhook_key: String,
    pub overrides: MessageOverrides,
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

    /// The body actually posted: the rendered message plus these overrides.
    pub fn apply(&self, message: &serde_json::Value) -> serde_json::Value {
        let mut payload = message.clone();
        if let Some(obj) = payload.as_object_mut() {
            for (key, value) in self.fields() {
                if let Some(value) = value {
                    obj.insert(key.to_owned(), value.into());
                }
            }
        }
        payload
    }
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

impl SlackConfig {
    /// Reads the secret from its source and checks it. Errors name the key, never the value.
    pub fn resolve_webhook(&self) -> Result<SecretUrl, ConfigError> {
        let key = self.webhook_key.as_str();
        match &self.webhook {
            SecretSource::Inline(url) => Ok(url.clone()),
            SecretSource::Env(var) => match std::env::var(var) {
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
            SecretSource::File(path) => {
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
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file. Does not read the webhook secret.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: raw::Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let state_directory = std::env::var_os("STATE_DIRECTORY");
        validate(raw, state_directory.as_deref())
    }

    /// The region a pipeline is read in, if the config decides it.
    pub fn region_of<'a>(&'a self, pipeline: &'a PipelineConfig) -> Option<&'a str> {
        pipeline.region.as_deref().or(self.aws.region.as_deref())
    }
}

/// Semantic checks, apart from parsing so they are unit-testable on raw values.
fn validate(
    raw: raw::Config,
    state_directory: Option<&std::ffi::OsStr>,
) -> Result<Config, ConfigError> {
    let poll_interval = raw.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL);
    if poll_interval < Duration::from_secs(1) {
        return Err(invalid(
            "poll_interval",
            format!(
                "{} is too short; expected at least 1s",
                humantime::format_duration(poll_interval)
            ),
        ));
    }

    let state_path = match raw.state_path {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(invalid("state_path", "is empty; expected a file path"));
        }
        Some(p) => p,
        None => default_state_path(state_directory),
    };

    let aws = raw.aws;
    if let Some(region) = &aws.region {
        check_region("aws.region", region)?;
    }
    if let Some(profile) = &aws.profile
        && profile.trim().is_empty()
    {
        return Err(invalid("aws.profile", "is empty; expected a profile name"));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        let url = url::Url::parse(endpoint).map_err(|e| {
            invalid(
                "aws.endpoint_url",
                format!("not a valid URL ({e}); expected e.g. https://codepipeline.eu-west-1.amazonaws.com"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "aws.endpoint_url",
                "expected an http:// or https:// URL",
            ));
        }
    }

    let slack = validate_slack(raw.slack)?;
    let reminders = validate_reminders(raw.reminders)?;

    if raw.pipelines.is_empty() {
        return Err(invalid(
            "pipeline",
            "no pipelines configured; expected at least one [[pipeline]] with a name",
        ));
    }
    let mut seen = HashSet::new();
    let mut pipelines = Vec::with_capacity(raw.pipelines.len());
    for (i, p) in raw.pipelines.into_iter().enumerate() {
        let key = format!("pipeline[{i}].name");
        check_pipeline_name(&key, &p.name)?;
        if let Some(region) = &p.region {
            check_region(&format!("pipeline[{i}].region"), region)?;
        }
        let region = p.region.clone().or_else(|| aws.region.clone());
        if !seen.insert((p.name.clone(), region)) {
            return Err(invalid(
                key,
                format!("pipeline {:?} is listed twice in the same region", p.name),
            ));
        }
        pipelines.push(PipelineConfig {
            name: p.name,
            region: p.region,
        });
    }

    Ok(Config {
        poll_interval,
        state_path,
        aws,
        slack,
        reminders,
        pipelines,
    })
}

fn default_state_path(state_directory: Option<&std::ffi::OsStr>) -> PathBuf {
    // systemd's StateDirectory= may list several directories, separated by colons.
    state_directory
        .and_then(|dirs| dirs.to_str())
        .and_then(|dirs| dirs.split(':').find(|d| !d.is_empty()))
        .map(|dir| Path::new(dir).join("state.db"))
        .unwrap_or_else(|| PathBuf::from("./approval-watch.db"))
}

fn validate_slack(raw: Option<raw::Slack>) -> Result<SlackConfig, ConfigError> {
    let Some(raw) = raw else {
        return Err(invalid(
            "slack",
            "missing; expected a [slack] table with webhook_url_file, webhook_url_env or webhook_url",
        ));
    };
    let mut sources = Vec::new();
    if let Some(path) = raw.webhook_url_file {
        if path.as_os_str().is_empty() {
            return Err(invalid(
                "slack.webhook_url_file",
                "is empty; expected a file path",
            ));
        }
        sources.push(("slack.webhook_url_file", SecretSource::File(path)));
    }
    if let Some(var) = raw.webhook_url_env {
        if var.is_empty() || var.contains(['=', '\0']) {
            return Err(invalid(
                "slack.webhook_url_env",
                "expected the name of an environment variable",
            ));
        }
        sources.push(("slack.webhook_url_env", SecretSource::Env(var)));
    }
    if let Some(url) = raw.webhook_url {
        let url = SecretUrl::parse("slack.webhook_url", &url)?;
        sources.push(("slack.webhook_url", SecretSource::Inline(url)));
    }
    if sources.len() != 1 {
        return Err(invalid(
            "slack",
            format!(
                "expected exactly one of webhook_url_file, webhook_url_env, webhook_url; found {}",
                sources.len()
            ),
        ));
    }
    let (key, webhook) = sources.remove(0);

    let username = non_empty("slack.username", raw.username)?;
    let channel = non_empty("slack.channel", raw.channel)?;
    let icon_emoji = non_empty("slack.icon_emoji", raw.icon_emoji)?;
    if let Some(icon) = &icon_emoji
        && !(icon.len() > 2 && icon.starts_with(':') && icon.ends_with(':'))
    {
        return Err(invalid(
            "slack.icon_emoji",
            "expected an emoji code such as \":rocket:\"",
        ));
    }
    Ok(SlackConfig {
        webhook,
        webhook_key: key.to_owned(),
        overrides: MessageOverrides {
            username,
            icon_emoji,
            channel,
        },
    })
}

fn non_empty(key: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(invalid(key, "is empty; remove it or give a value")),
        other => Ok(other),
    }
}

fn validate_reminders(raw: raw::Reminders) -> Result<Reminders, ConfigError> {
    let defaults = Reminders::default();
    let reminders = Reminders {
        after: raw.after.unwrap_or(defaults.after),
        every: raw.every.unwrap_or(defaults.every),
        max: raw.max.unwrap_or(defaults.max),
    };
    if reminders.max > 0 {
        for (key, value) in [
            ("reminders.after", reminders.after),
            ("reminders.every", reminders.every),
        ] {
            if value < Duration::from_secs(60) {
                return Err(invalid(
                    key,
                    format!(
                        "{} is too short; expected at least 1m (or reminders.max = 0 for no reminders)",
                        humantime::format_duration(value)
                    ),
                ));
            }
        }
    }
    Ok(reminders)
}

/// CodePipeline's own rule for pipeline names.
fn check_pipeline_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-'));
    if name.is_empty() || name.len() > 100 || !valid_chars {
        return Err(invalid(
            key,
            format!(
                "{name:?} is not a pipeline name; expected 1 to 100 characters of A-Z a-z 0-9 . @ _ -"
            ),
        ));
    }
    Ok(())
}

fn check_region(key: &str, region: &str) -> Result<(), ConfigError> {
    let valid = !region.is_empty()
        && region.len() <= 32
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if !valid {
        return Err(invalid(
            key,
            format!("{region:?} is not an AWS region; expected a name such as \"eu-west-1\""),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[slack]
webhook_url = "https://hooks.slack.com/services/T0/B0/XSECRETX"
[[pipeline]]
name = "web-app"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: raw::Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "test.toml".into(),
            message: e.to_string(),
        })?;
        validate(raw, None)
    }

    fn error(text: &str) -> String {
        parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.poll_interval, Duration::from_secs(30));
        assert_eq!(config.state_path, PathBuf::from("./approval-watch.db"));
        assert_eq!(config.reminders, Reminders::default());
        assert_eq!(config.pipelines.len(), 1);
        assert_eq!(config.slack.webhook_key, "slack.webhook_url");
    }

    #[test]
    fn full_example_from_the_issue_parses() {
        let config = parse(
            r##"
poll_interval = "30s"
state_path = "/var/lib/approval-watch/state.db"
[aws]
region = "eu-west-1"
profile = "deploy"
[slack]
webhook_url_file = "/run/credentials/approval-watch.service/slack-webhook"
username = "CodePipeline"
icon_emoji = ":aws:"
channel = "#deployments"
[reminders]
after = "30m"
every = "1h"
max = 8
[[pipeline]]
name = "web-app"
[[pipeline]]
name = "api"
region = "us-east-1"
"##,
        )
        .unwrap();
        assert_eq!(config.region_of(&config.pipelines[0]), Some("eu-west-1"));
        assert_eq!(config.region_of(&config.pipelines[1]), Some("us-east-1"));
        assert_eq!(
            config.slack.webhook,
            SecretSource::File("/run/credentials/approval-watch.service/slack-webhook".into())
        );
    }

    #[test]
    fn state_directory_from_systemd_is_the_default() {
        let raw: raw::Config = toml::from_str(MINIMAL).unwrap();
        let config =
            validate(raw, Some("/var/lib/approval-watch:/var/lib/other".as_ref())).unwrap();
        assert_eq!(
            config.state_path,
            PathBuf::from("/var/lib/approval-watch/state.db")
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = error(&format!("pol_interval = \"1s\"\n{MINIMAL}"));
        assert!(e.contains("pol_interval"), "{e}");
        let e = error(&MINIMAL.replace("[slack]", "[slack]\nchanel = \"#x\""));
        assert!(e.contains("chanel"), "{e}");
        let e = error(&format!("{MINIMAL}regoin = \"x\""));
        assert!(e.contains("regoin"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                format!("poll_interval = \"3 parsecs\"\n{MINIMAL}"),
                "poll_interval",
            ),
            (
                format!("poll_interval = \"500ms\"\n{MINIMAL}"),
                "poll_interval",
            ),
            (format!("poll_interval = 30\n{MINIMAL}"), "poll_interval"),
            (MINIMAL.replace("web-app", "web app"), "pipeline[0].name"),
            (
                MINIMAL.replace("web-app", &"x".repeat(101)),
                "pipeline[0].name",
            ),
            (MINIMAL.replace("web-app", ""), "pipeline[0].name"),
            (
                MINIMAL.replace("https://hooks", "http://hooks"),
                "slack.webhook_url",
            ),
            (
                MINIMAL.replace("https://hooks", "ftp://hooks"),
                "slack.webhook_url",
            ),
            (
                MINIMAL.replace("[[pipeline]]\nname = \"web-app\"", ""),
                "pipeline",
            ),
            (
                format!("{MINIMAL}[[pipeline]]\nname = \"web-app\""),
                "pipeline[1].name",
            ),
            (
                format!("[aws]\nregion = \"EU West\"\n{MINIMAL}"),
                "aws.region",
            ),
            (
                format!("[reminders]\nevery = \"1s\"\n{MINIMAL}"),
                "reminders.every",
            ),
            (format!("[reminders]\nmax = -1\n{MINIMAL}"), "max"),
            (
                MINIMAL.replace("[slack]", "[slack]\nicon_emoji = \"aws\""),
                "slack.icon_emoji",
            ),
            (
                MINIMAL.replace("[slack]", "[slack]\nwebhook_url_env = \"X\""),
                "exactly one of",
            ),
            (format!("state_path = \"\"\n{MINIMAL}"), "state_path"),
        ];
        for (text, key) in cases {
            let e = error(&text);
            assert!(e.contains(key), "error for {text:?} should name {key}: {e}");
            assert!(!e.contains("XSECRETX"), "error leaks the secret: {e}");
        }
    }

    #[test]
    fn overrides_are_added_to_the_payload() {
        let overrides = MessageOverrides {
            username: Some("CodePipeline".into()),
            icon_emoji: None,
            channel: Some("#deployments".into()),
        };
        assert_eq!(
            overrides.apply(&serde_json::json!({"text": "hi"})),
            serde_json::json!({"text": "hi", "username": "CodePipeline", "channel": "#deployments"})
        );
    }

    #[test]
    fn zero_reminders_need_no_intervals() {
        let config = parse(&format!("[reminders]\nmax = 0\nevery = \"1s\"\n{MINIMAL}")).unwrap();
        assert_eq!(config.reminders.max, 0);
    }

    #[test]
    fn http_is_allowed_to_loopback_only() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://localhost:9/x",
            "http://[::1]:9/x",
        ] {
            assert!(SecretUrl::parse("k", url).is_ok(), "{url}");
        }
        for url in [
            "http://10.0.0.1/x",
            "http://example.com/x",
            "http://127.0.0.1.nip.io/x",
        ] {
            assert!(SecretUrl::parse("k", url).is_err(), "{url}");
        }
    }

    #[test]
    fn secret_errors_never_repeat_the_url() {
        let e = SecretUrl::parse("k", "http://example.com/services/XSECRETX").unwrap_err();
        assert!(!e.to_string().contains("XSECRETX"), "{e}");
        let e = SecretUrl::parse("k", "not a url XSECRETX").unwrap_err();
        assert!(!e.to_string().contains("XSECRETX"), "{e}");
        let url = SecretUrl::parse("k", "https://hooks.slack.com/services/XSECRETX").unwrap();
        assert!(!format!("{url:?}").contains("XSECRETX"));
        let config = parse(MINIMAL).unwrap();
        assert!(!format!("{config:?}").contains("XSECRETX"));
    }

    #[test]
    fn secret_sources_resolve_or_name_the_key() {
        let dir = std::env::temp_dir().join(format!("aw-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hook");
        std::fs::write(&file, "https://hooks.slack.com/services/T/B/XSECRETX\n").unwrap();
        let slack = |webhook| SlackConfig {
            webhook,
            webhook_key: "slack.webhook_url_file".into(),
            overrides: MessageOverrides::default(),
        };
        let url = slack(SecretSource::File(file.clone()))
            .resolve_webhook()
            .unwrap();
        assert_eq!(url.expose().path(), "/services/T/B/XSECRETX");

        let e = slack(SecretSource::File(dir.join("missing")))
            .resolve_webhook()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("slack.webhook_url_file: cannot read"),
            "{e}"
        );

        std::fs::write(&file, "http://example.com/XSECRETX").unwrap();
        let e = slack(SecretSource::File(file))
            .resolve_webhook()
            .unwrap_err();
        assert!(e.to_string().contains("slack.webhook_url_file"), "{e}");
        assert!(!e.to_string().contains("XSECRETX"), "{e}");

        let e = slack(SecretSource::Env("APPROVAL_WATCH_TEST_SURELY_UNSET".into()))
            .resolve_webhook()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("APPROVAL_WATCH_TEST_SURELY_UNSET is not set"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
