//! Configuration: TOML parsing ([`raw`]), then semantic checks into [`Config`].
//! Secrets are resolved separately ([`Route::resolve_webhook`]) so that commands which never
//! talk to Slack (`status`) do not need to read them.

mod raw;
mod secret;
mod state_dir;
mod toml_error;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::budget::Limits;
use crate::model::DEFAULT_ACCOUNT;
use crate::remind::{Mention, ReminderPolicy};
use crate::schedule::{self, WorkingHours};

pub use secret::{SecretSource, SecretUrl};
pub use state_dir::check_state_directory;

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
const DEFAULT_IDLE_POLL_INTERVAL: Duration = Duration::from_secs(120);
const DEFAULT_DISCOVER_INTERVAL: Duration = Duration::from_secs(300);
/// The outbox destination name of the `[slack]` table.
pub const DEFAULT_ROUTE: &str = "default";

/// `[aws]`: used as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Default region for pipelines that name none; `None` → the SDK's own chain.
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Another CodePipeline endpoint (tests, VPC endpoints). `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
    /// The request budget per (account, region), shared by all operations (default 10).
    pub max_requests_per_second: Option<f64>,
    /// Calls in flight per (account, region) (default 8).
    pub max_concurrency: Option<usize>,
}

/// How an account's credentials are had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The SDK's default chain (env, `[aws] profile`, instance role).
    DefaultChain,
    /// A named profile from the shared config files.
    Profile(String),
    /// A role assumed with STS, from the default chain or from `profile`.
    AssumeRole {
        role_arn: String,
        external_id: Option<String>,
        profile: Option<String>,
    },
}

/// An AWS account: `default` (the SDK's chain) and each `[[account]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountConfig {
    pub name: String,
    pub credentials: Credentials,
    /// Its regions, for pipelines and discovery that name none.
    pub regions: Vec<String>,
    pub limits: Limits,
}

/// `[[discover]]`: list an account's pipelines and keep those the globs select.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverConfig {
    pub account: String,
    /// Empty: the account's regions (else `[aws] region`, else the SDK's default).
    pub region: Option<String>,
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
}

impl DiscoverConfig {
    pub fn selects(&self, pipeline: &str) -> bool {
        self.include.iter().any(|g| g.matches(pipeline))
            && !self.exclude.iter().any(|g| g.matches(pipeline))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub poll_interval: Duration,
    /// Pipelines with nothing in progress are read this often (at least `poll_interval`).
    pub idle_poll_interval: Duration,
    /// `[[discover]]` lists pipelines this often.
    pub discover_interval: Duration,
    pub state_path: PathBuf,
    pub aws: AwsConfig,
    /// `[slack]`: where pipelines no route matches go.
    pub slack: Route,
    /// `[[route]]`s in order; the first whose globs match a pipeline wins.
    pub routes: Vec<Route>,
    pub pipelines: Vec<PipelineConfig>,
    /// `default` first, then each `[[account]]`.
    pub accounts: Vec<AccountConfig>,
    pub discover: Vec<DiscoverConfig>,
    /// `[metrics] listen`: the Prometheus endpoint, off when absent.
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    pub name: String,
    /// `None` → the account's only region, else `[aws] region`, else the SDK's default.
    pub region: Option<String>,
    pub account: String,
}

/// A destination and how it nags: `[slack]` or one `[[route]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Outbox destination name: `default` for `[slack]`, else the route's `name`.
    pub name: String,
    /// Where it is configured (`slack`, `route[0]`), for messages.
    pub key: String,
    /// Globs over pipeline names; empty for `[slack]`, which takes the rest.
    pub pipelines: Vec<Glob>,
    pub webhook: SecretSource,
    /// The key the secret was given under, for error messages (`slack.webhook_url_env`).
    pub webhook_key: String,
    pub overrides: MessageOverrides,
    /// Added to every message of this route.
    pub mention: Option<Mention>,
    /// Tell approved / rejected / expired; off drops them.
    pub notify_resolved: bool,
    pub reminders: ReminderPolicy,
}

impl Route {
    /// Reads the secret from its source and checks it. Errors name the key, never the value.
    pub fn resolve_webhook(&self) -> Result<SecretUrl, ConfigError> {
        self.webhook.resolve(&self.webhook_key)
    }

    fn matches(&self, pipeline: &str) -> bool {
        self.pipelines.iter().any(|g| g.matches(pipeline))
    }
}

/// A glob over pipeline names: `*` any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    fn parse(key: &str, pattern: &str) -> Result<Self, ConfigError> {
        let ok = !pattern.is_empty()
            && pattern.len() <= 200
            && pattern.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-' | '*' | '?')
            });
        if !ok {
            return Err(invalid(
                key,
                format!(
                    "{pattern:?} is not a pipeline glob; expected pipeline-name characters (A-Z a-z 0-9 . @ _ -) with * and ?"
                ),
            ));
        }
        Ok(Self(pattern.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

/// Iterative wildcard matching with backtracking to the last `*` (linear in practice).
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
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

impl Config {
    /// Reads, parses and validates a config file. Does not read the webhook secrets.
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
            message: toml_error::describe(&e, text),
        })?;
        let state_directory = std::env::var_os("STATE_DIRECTORY");
        validate(raw, state_directory.as_deref())
    }

    /// The region a pipeline is read in, if the config decides it.
    pub fn region_of<'a>(&'a self, pipeline: &'a PipelineConfig) -> Option<&'a str> {
        let account_region = self
            .account(&pipeline.account)
            .filter(|a| a.regions.len() == 1)
            .map(|a| a.regions[0].as_str());
        pipeline
            .region
            .as_deref()
            .or(account_region)
            .or(self.aws.region.as_deref())
    }

    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// The route a pipeline's messages take: the first `[[route]]` matching it, else `[slack]`.
    pub fn route_for(&self, pipeline: &str) -> &Route {
        self.routes
            .iter()
            .find(|r| r.matches(pipeline))
            .unwrap_or(&self.slack)
    }

    /// Every destination: the routes in order, then `[slack]`.
    pub fn all_routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().chain(std::iter::once(&self.slack))
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
    validate_aws(&aws)?;

    let global_reminders = raw.reminders;
    let slack = validate_slack(raw.slack, &global_reminders)?;
    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut names = HashSet::from([DEFAULT_ROUTE.to_owned()]);
    for (i, r) in raw.routes.into_iter().enumerate() {
        let route = validate_route(i, r, &global_reminders)?;
        if !names.insert(route.name.clone()) {
            return Err(invalid(
                format!("route[{i}].name"),
                format!(
                    "{:?} is used twice; expected a unique name per route",
                    route.name
                ),
            ));
        }
        routes.push(route);
    }

    let accounts = validate_accounts(&aws, raw.accounts)?;
    let account_key = |key: String, name: Option<String>| -> Result<String, ConfigError> {
        let name = name.unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned());
        if accounts.iter().any(|a| a.name == name) {
            Ok(name)
        } else {
            Err(invalid(
                key,
                format!(
                    "{name:?} is not a configured account; expected the name of an [[account]]"
                ),
            ))
        }
    };
    let mut discover = Vec::with_capacity(raw.discover.len());
    for (i, d) in raw.discover.into_iter().enumerate() {
        let table = format!("discover[{i}]");
        if let Some(region) = &d.region {
            check_region(&format!("{table}.region"), region)?;
        }
        let globs = |k: &str, patterns: &[String]| {
            patterns
                .iter()
                .enumerate()
                .map(|(j, p)| Glob::parse(&format!("{table}.{k}[{j}]"), p))
                .collect::<Result<Vec<_>, _>>()
        };
        let include = if d.include.is_empty() {
            vec![Glob("*".to_owned())]
        } else {
            globs("include", &d.include)?
        };
        discover.push(DiscoverConfig {
            account: account_key(format!("{table}.account"), d.account)?,
            region: d.region,
            include,
            exclude: globs("exclude", &d.exclude)?,
        });
    }
    if raw.pipelines.is_empty() && discover.is_empty() {
        return Err(invalid(
            "pipeline",
            "no pipelines configured; expected at least one [[pipeline]] with a name, or a [[discover]]",
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
        let account = account_key(format!("pipeline[{i}].account"), p.account)?;
        let region = p.region.clone().or_else(|| aws.region.clone());
        if !seen.insert((p.name.clone(), region, account.clone())) {
            return Err(invalid(
                key,
                format!(
                    "pipeline {:?} is listed twice in the same account and region",
                    p.name
                ),
            ));
        }
        pipelines.push(PipelineConfig {
            name: p.name,
            region: p.region,
            account,
        });
    }

    let metrics = match raw.metrics {
        None => None,
        Some(m) => Some(m.listen.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "metrics.listen",
                format!(
                    "{:?} is not an address; expected IP:PORT such as \"127.0.0.1:9714\"",
                    m.listen
                ),
            )
        })?),
    };

    let idle_poll_interval = raw.idle_poll_interval.unwrap_or(DEFAULT_IDLE_POLL_INTERVAL);
    if idle_poll_interval < poll_interval {
        return Err(invalid(
            "idle_poll_interval",
            format!(
                "{} is shorter than poll_interval; expected at least {}",
                humantime::format_duration(idle_poll_interval),
                humantime::format_duration(poll_interval)
            ),
        ));
    }
    let discover_interval = raw.discover_interval.unwrap_or(DEFAULT_DISCOVER_INTERVAL);
    if discover_interval < Duration::from_secs(10) {
        return Err(invalid(
            "discover_interval",
            "is too short; expected at least 10s",
        ));
    }

    Ok(Config {
        poll_interval,
        idle_poll_interval,
        discover_interval,
        state_path,
        aws,
        slack,
        routes,
        pipelines,
        accounts,
        discover,
        metrics,
    })
}

fn limits(
    table: &str,
    rps: Option<f64>,
    concurrency: Option<usize>,
    fallback: Limits,
) -> Result<Limits, ConfigError> {
    let rps = rps.unwrap_or(fallback.requests_per_second);
    if !(rps.is_finite() && (0.1..=1000.0).contains(&rps)) {
        return Err(invalid(
            format!("{table}.max_requests_per_second"),
            format!("{rps} is out of range; expected 0.1 to 1000"),
        ));
    }
    let concurrency = concurrency.unwrap_or(fallback.max_concurrency);
    if !(1..=256).contains(&concurrency) {
        return Err(invalid(
            format!("{table}.max_concurrency"),
            format!("{concurrency} is out of range; expected 1 to 256"),
        ));
    }
    Ok(Limits {
        requests_per_second: rps,
        max_concurrency: concurrency,
    })
}

/// `default` (the SDK chain, `[aws] profile`) first, then each `[[account]]`.
fn validate_accounts(
    aws: &AwsConfig,
    raw: Vec<raw::Account>,
) -> Result<Vec<AccountConfig>, ConfigError> {
    let aws_limits = limits(
        "aws",
        aws.max_requests_per_second,
        aws.max_concurrency,
        Limits::default(),
    )?;
    let mut accounts = vec![AccountConfig {
        name: DEFAULT_ACCOUNT.to_owned(),
        credentials: match &aws.profile {
            Some(p) => Credentials::Profile(p.clone()),
            None => Credentials::DefaultChain,
        },
        regions: aws.region.iter().cloned().collect(),
        limits: aws_limits,
    }];
    for (i, a) in raw.into_iter().enumerate() {
        let table = format!("account[{i}]");
        let key = |k: &str| format!("{table}.{k}");
        let name_ok = !a.name.is_empty()
            && a.name.len() <= 64
            && a.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(invalid(
                key("name"),
                format!(
                    "{:?} is not an account name; expected 1 to 64 of A-Z a-z 0-9 - _ .",
                    a.name
                ),
            ));
        }
        if accounts.iter().any(|x| x.name == a.name) {
            let why = if a.name == DEFAULT_ACCOUNT {
                "is reserved for the SDK's default credentials"
            } else {
                "is used twice"
            };
            return Err(invalid(
                key("name"),
                format!("{:?} {why}; expected a unique name", a.name),
            ));
        }
        if let Some(p) = &a.profile
            && p.trim().is_empty()
        {
            return Err(invalid(key("profile"), "is empty; expected a profile name"));
        }
        let credentials = match (a.role_arn, a.profile) {
            (Some(role_arn), profile) => {
                let valid = role_arn.starts_with("arn:aws")
                    && role_arn.contains(":iam::")
                    && role_arn.contains(":role/");
                if !valid {
                    return Err(invalid(
                        key("role_arn"),
                        format!(
                            "{role_arn:?} is not a role ARN; expected arn:aws:iam::123456789012:role/NAME"
                        ),
                    ));
                }
                if let Some(id) = &a.external_id
                    && !(2..=1224).contains(&id.len())
                {
                    return Err(invalid(key("external_id"), "expected 2 to 1224 characters"));
                }
                Credentials::AssumeRole {
                    role_arn,
                    external_id: a.external_id,
                    profile,
                }
            }
            (None, Some(profile)) => {
                if a.external_id.is_some() {
                    return Err(invalid(key("external_id"), "only applies with role_arn"));
                }
                Credentials::Profile(profile)
            }
            (None, None) => {
                return Err(invalid(
                    table,
                    "expected profile or role_arn (or both: the role assumed from the profile)",
                ));
            }
        };
        for (j, r) in a.regions.iter().enumerate() {
            check_region(&format!("{table}.regions[{j}]"), r)?;
        }
        accounts.push(AccountConfig {
            name: a.name,
            credentials,
            regions: a.regions,
            limits: limits(
                &table,
                a.max_requests_per_second,
                a.max_concurrency,
                aws_limits,
            )?,
        });
    }
    Ok(accounts)
}

fn validate_aws(aws: &AwsConfig) -> Result<(), ConfigError> {
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
                format!(
                    "not a valid URL ({e}); expected e.g. https://codepipeline.eu-west-1.amazonaws.com"
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "aws.endpoint_url",
                "expected an http:// or https:// URL",
            ));
        }
    }
    Ok(())
}

fn default_state_path(state_directory: Option<&std::ffi::OsStr>) -> PathBuf {
    // systemd's StateDirectory= may list several directories, separated by colons.
    state_directory
        .and_then(|dirs| dirs.to_str())
        .and_then(|dirs| dirs.split(':').find(|d| !d.is_empty()))
        .map(|dir| Path::new(dir).join("state.db"))
        .unwrap_or_else(|| PathBuf::from("./approval-watch.db"))
}

/// What `[slack]` and `[[route]]` share.
struct Destination {
    secret: secret::RawSecret,
    username: Option<String>,
    icon_emoji: Option<String>,
    channel: Option<String>,
    mention: Option<String>,
    notify_resolved: Option<bool>,
}

fn validate_slack(
    raw: Option<raw::Slack>,
    reminders: &raw::Reminders,
) -> Result<Route, ConfigError> {
    let Some(raw) = raw else {
        return Err(invalid(
            "slack",
            "missing; expected a [slack] table with webhook_url_file, webhook_url_env, webhook_url_credential or webhook_url",
        ));
    };
    let destination = Destination {
        secret: secret::RawSecret {
            file: raw.webhook_url_file,
            env: raw.webhook_url_env,
            credential: raw.webhook_url_credential,
            inline: raw.webhook_url,
        },
        username: raw.username,
        icon_emoji: raw.icon_emoji,
        channel: raw.channel,
        mention: raw.mention,
        notify_resolved: raw.notify_resolved,
    };
    let policy = reminder_policy("reminders", reminders)?;
    build_route(
        "slack",
        DEFAULT_ROUTE.to_owned(),
        Vec::new(),
        destination,
        policy,
    )
}

fn validate_route(
    i: usize,
    raw: raw::Route,
    global: &raw::Reminders,
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
    let destination = Destination {
        secret: secret::RawSecret {
            file: raw.webhook_url_file,
            env: raw.webhook_url_env,
            credential: raw.webhook_url_credential,
            inline: raw.webhook_url,
        },
        username: raw.username,
        icon_emoji: raw.icon_emoji,
        channel: raw.channel,
        mention: raw.mention,
        notify_resolved: raw.notify_resolved,
    };
    build_route(&table, name, globs, destination, policy)
}

fn build_route(
    table: &str,
    name: String,
    pipelines: Vec<Glob>,
    d: Destination,
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
        webhook,
        webhook_key,
        overrides: MessageOverrides {
            username,
            icon_emoji,
            channel,
        },
        mention,
        notify_resolved: d.notify_resolved.unwrap_or(true),
        reminders,
    })
}

fn non_empty(key: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(invalid(key, "is empty; remove it or give a value")),
        other => Ok(other),
    }
}

/// `[reminders]` (or a route's, already merged) → a policy. `table` prefixes the keys named.
fn reminder_policy(table: &str, raw: &raw::Reminders) -> Result<ReminderPolicy, ConfigError> {
    let key = |k: &str| format!("{table}.{k}");
    let defaults = ReminderPolicy::default();
    let policy = ReminderPolicy {
        after: raw.after.unwrap_or(defaults.after),
        every: raw.every.unwrap_or(defaults.every),
        max: raw.max.unwrap_or(defaults.max),
        expire_warning: raw.expire_warning,
        escalate_after: raw.escalate_after,
        escalate_mention: raw
            .escalate_mention
            .as_deref()
            .map(|m| Mention::parse(m).map_err(|p| invalid(key("escalate_mention"), p)))
            .transpose()?,
        working_hours: raw
            .working_hours
            .as_ref()
            .map(|w| working_hours(&key("working_hours"), w))
            .transpose()?,
    };
    if policy.max > 0 {
        for (k, value) in [("after", policy.after), ("every", policy.every)] {
            if value < Duration::from_secs(60) {
                return Err(invalid(
                    key(k),
                    format!(
                        "{} is too short; expected at least 1m (or max = 0 for no reminders)",
                        humantime::format_duration(value)
                    ),
                ));
            }
        }
    }
    if let Some(w) = policy.expire_warning
        && w < Duration::from_secs(60)
    {
        return Err(invalid(key("expire_warning"), "expected at least 1m"));
    }
    if policy.escalate_after.is_some() && policy.escalate_mention.is_none() {
        return Err(invalid(
            key("escalate_mention"),
            "missing; escalate_after needs a mention such as \"<!subteam^S0123ABC>\"",
        ));
    }
    if policy.escalate_mention.is_some() && policy.escalate_after.is_none() {
        return Err(invalid(
            key("escalate_after"),
            "missing; escalate_mention needs the number of reminders after which to add it",
        ));
    }
    Ok(policy)
}

fn working_hours(table: &str, raw: &raw::WorkingHours) -> Result<WorkingHours, ConfigError> {
    let key = |k: &str| format!("{table}.{k}");
    let timezone = jiff::tz::TimeZone::get(raw.timezone.trim()).map_err(|_| {
        invalid(
            key("timezone"),
            format!(
                "{:?} is not an IANA time zone; expected a name such as \"Europe/London\"",
                raw.timezone
            ),
        )
    })?;
    if raw.days.is_empty() {
        return Err(invalid(
            key("days"),
            "is empty; expected days such as [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
        ));
    }
    let mut days = [false; 7];
    for d in &raw.days {
        let i = schedule::parse_day(d).ok_or_else(|| {
            invalid(
                key("days"),
                format!("{d:?} is not a day; expected mon, tue, wed, thu, fri, sat or sun"),
            )
        })?;
        days[i] = true;
    }
    let clock = |k: &str, v: &str| {
        schedule::parse_clock(v).ok_or_else(|| {
            invalid(
                key(k),
                format!("{v:?} is not a time of day; expected HH:MM such as \"09:00\""),
            )
        })
    };
    let start_minute = clock("start", &raw.start)?;
    let end_minute = clock("end", &raw.end)?;
    if start_minute >= end_minute {
        return Err(invalid(
            key("end"),
            format!(
                "{} is not after start {}; expected a window within one day",
                raw.end, raw.start
            ),
        ));
    }
    Ok(WorkingHours {
        timezone_name: raw.timezone.trim().to_owned(),
        timezone,
        days,
        start_minute,
        end_minute,
    })
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
            message: toml_error::describe(&e, text),
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
        assert_eq!(config.slack.reminders, ReminderPolicy::default());
        assert_eq!(config.pipelines.len(), 1);
        assert_eq!(config.slack.webhook_key, "slack.webhook_url");
        assert!(config.slack.notify_resolved);
        assert!(config.routes.is_empty());
        assert_eq!(config.route_for("web-app").name, DEFAULT_ROUTE);
        assert_eq!(config.metrics, None);
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
        assert_eq!(config.slack.reminders.max, 0);
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
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(&file, "https://hooks.slack.com/services/T/B/XSECRETX\n").unwrap();
        let key = "slack.webhook_url_file";
        let url = SecretSource::File(file.clone()).resolve(key).unwrap();
        assert_eq!(url.expose().path(), "/services/T/B/XSECRETX");

        let e = SecretSource::File(dir.path().join("missing"))
            .resolve(key)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("slack.webhook_url_file: cannot read"),
            "{e}"
        );

        std::fs::write(&file, "http://example.com/XSECRETX").unwrap();
        let e = SecretSource::File(file).resolve(key).unwrap_err();
        assert!(e.to_string().contains("slack.webhook_url_file"), "{e}");
        assert!(!e.to_string().contains("XSECRETX"), "{e}");

        let e = SecretSource::Env("APPROVAL_WATCH_TEST_SURELY_UNSET".into())
            .resolve("slack.webhook_url_env")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("APPROVAL_WATCH_TEST_SURELY_UNSET is not set"),
            "{e}"
        );
    }

    const TEAM: &str = r##"
[slack]
webhook_url_env = "SLACK_WEBHOOK_URL"

[reminders]
after = "30m"
every = "1h"
max = 8
expire_warning = "2h"
escalate_after = 3
escalate_mention = "<!subteam^S0PLATFORM>"

[reminders.working_hours]
timezone = "Europe/London"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "18:00"

[[route]]
name = "payments"
pipelines = ["payments-*", "ledger"]
webhook_url_env = "SLACK_PAYMENTS_WEBHOOK"
mention = "<!subteam^S0PAYMENTS>"
notify_resolved = false
[route.reminders]
every = "30m"

[[pipeline]]
name = "payments-api"
[[pipeline]]
name = "ledger"
[[pipeline]]
name = "web-app"

[metrics]
listen = "127.0.0.1:9714"
"##;

    #[test]
    fn routes_reminders_and_working_hours_as_a_team_writes_them() {
        let config = parse(TEAM).unwrap();
        assert_eq!(config.metrics, Some("127.0.0.1:9714".parse().unwrap()));
        let payments = config.route_for("payments-api");
        assert_eq!(payments.name, "payments");
        assert_eq!(config.route_for("ledger").name, "payments");
        assert_eq!(config.route_for("ledger-2").name, DEFAULT_ROUTE);
        assert_eq!(config.route_for("web-app").name, DEFAULT_ROUTE);
        assert!(!payments.notify_resolved);
        assert_eq!(
            payments.mention.as_ref().unwrap().as_str(),
            "<!subteam^S0PAYMENTS>"
        );
        assert_eq!(payments.webhook_key, "route[0].webhook_url_env");
        // Overridden key by key: `every` from the route, the rest from [reminders].
        assert_eq!(payments.reminders.every, Duration::from_secs(30 * 60));
        assert_eq!(payments.reminders.after, Duration::from_secs(30 * 60));
        assert_eq!(payments.reminders.escalate_after, Some(3));
        assert_eq!(
            payments.reminders.expire_warning,
            Some(Duration::from_secs(2 * 3600))
        );
        let wh = payments.reminders.working_hours.as_ref().unwrap();
        assert_eq!(wh.timezone_name, "Europe/London");
        assert_eq!(wh.days, [true, true, true, true, true, false, false]);
        assert_eq!((wh.start_minute, wh.end_minute), (540, 1080));
        assert_eq!(config.slack.reminders.every, Duration::from_secs(3600));
        assert_eq!(config.all_routes().count(), 2);
    }

    #[test]
    fn globs_match_pipeline_names() {
        let g = |p: &str| Glob::parse("k", p).unwrap();
        assert!(g("payments-*").matches("payments-api"));
        assert!(g("payments-*").matches("payments-"));
        assert!(!g("payments-*").matches("payment-api"));
        assert!(g("*-prod").matches("web-prod"));
        assert!(g("a*b*c").matches("axxbyyc"));
        assert!(!g("a*b*c").matches("axxbyy"));
        assert!(g("web-?pp").matches("web-app"));
        assert!(g("*").matches("anything"));
        assert!(g("ledger").matches("ledger") && !g("ledger").matches("ledger2"));
    }

    #[test]
    fn issue_three_keys_name_themselves_when_wrong() {
        let with = |find: &str, replace: &str| TEAM.replacen(find, replace, 1);
        let cases = [
            (
                with("Europe/London", "Europe/Londn"),
                "reminders.working_hours.timezone",
            ),
            (with("\"fri\"]", "\"fry\"]"), "reminders.working_hours.days"),
            (
                with("\"09:00\"", "\"9am\""),
                "reminders.working_hours.start",
            ),
            (
                with("\"18:00\"", "\"08:00\""),
                "reminders.working_hours.end",
            ),
            (
                with("<!subteam^S0PLATFORM>", "@platform"),
                "reminders.escalate_mention",
            ),
            (
                with("<!subteam^S0PAYMENTS>", "@payments"),
                "route[0].mention",
            ),
            (
                with("[\"payments-*\", \"ledger\"]", "[\"payments-[a]\"]"),
                "route[0].pipelines[0]",
            ),
            (
                with("[\"payments-*\", \"ledger\"]", "[]"),
                "route[0].pipelines",
            ),
            (
                with("every = \"30m\"", "every = \"10s\""),
                "route[0].reminders.every",
            ),
            (with("every = \"30m\"", "evry = \"30m\""), "evry"),
            (
                with("webhook_url_env = \"SLACK_PAYMENTS_WEBHOOK\"", ""),
                "route[0]",
            ),
            (
                with("name = \"payments\"", "name = \"default\""),
                "route[0].name",
            ),
            (with("escalate_after = 3\n", ""), "reminders.escalate_after"),
            (with("127.0.0.1:9714", "localhost"), "metrics.listen"),
            (
                with(
                    "webhook_url_env = \"SLACK_WEBHOOK_URL\"",
                    "webhook_url_credential = \"../x\"",
                ),
                "slack.webhook_url_credential",
            ),
        ];
        for (text, key) in cases {
            let e = error(&text);
            assert!(e.contains(key), "error should name {key}: {e}");
        }
    }

    #[test]
    fn a_credential_is_read_from_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("slack-webhook"),
            "https://hooks.slack.com/services/XSECRETX",
        )
        .unwrap();
        // Resolution reads the variable at call time; test the path it builds via a file source.
        let e = SecretSource::Credential("slack-webhook".into())
            .resolve("slack.webhook_url_credential")
            .map(|_| ())
            .err();
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
            let e = e.expect("no CREDENTIALS_DIRECTORY").to_string();
            assert!(e.contains("CREDENTIALS_DIRECTORY is not set"), "{e}");
            assert!(e.contains("LoadCredential=slack-webhook"), "{e}");
        }
        let url = SecretSource::File(dir.path().join("slack-webhook"))
            .resolve("slack.webhook_url_credential")
            .unwrap();
        assert_eq!(url.expose().host_str(), Some("hooks.slack.com"));
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let config = parse(include_str!("../../config.example.toml")).unwrap();
        assert_eq!(
            config.slack.webhook,
            SecretSource::Credential("slack-webhook".into())
        );
        assert_eq!(config.pipelines.len(), 2);
        assert_eq!(
            config.state_path,
            PathBuf::from("/var/lib/approval-watch/state.db")
        );
    }

    const FLEET: &str = r##"
poll_interval = "30s"
idle_poll_interval = "2m"
discover_interval = "5m"
[aws]
region = "eu-west-1"
max_requests_per_second = 10
max_concurrency = 8
[slack]
webhook_url_env = "SLACK_WEBHOOK_URL"
[[account]]
name = "prod"
role_arn = "arn:aws:iam::222222222222:role/approval-watch-reader"
external_id = "approval-watch"
regions = ["eu-west-1", "us-east-1"]
max_requests_per_second = 20
[[account]]
name = "ops"
profile = "ops"
regions = ["us-east-1"]
[[discover]]
account = "prod"
include = ["*"]
exclude = ["sandbox-*"]
[[discover]]
region = "eu-central-1"
[[pipeline]]
name = "billing"
account = "ops"
"##;

    #[test]
    fn accounts_discovery_and_budgets() {
        let config = parse(FLEET).unwrap();
        assert_eq!(config.idle_poll_interval, Duration::from_secs(120));
        assert_eq!(config.discover_interval, Duration::from_secs(300));
        let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["default", "prod", "ops"]);
        let prod = config.account("prod").unwrap();
        assert_eq!(
            prod.credentials,
            Credentials::AssumeRole {
                role_arn: "arn:aws:iam::222222222222:role/approval-watch-reader".into(),
                external_id: Some("approval-watch".into()),
                profile: None,
            }
        );
        assert_eq!(
            prod.limits,
            Limits {
                requests_per_second: 20.0,
                max_concurrency: 8
            }
        );
        assert_eq!(
            config.account("ops").unwrap().credentials,
            Credentials::Profile("ops".into())
        );
        assert_eq!(
            config.account("default").unwrap().credentials,
            Credentials::DefaultChain
        );
        // A pipeline in an account with one region reads there, not in [aws] region.
        assert_eq!(config.region_of(&config.pipelines[0]), Some("us-east-1"));
        let d = &config.discover[0];
        assert!(d.selects("web-app") && !d.selects("sandbox-1"));
        assert_eq!(config.discover[1].account, "default");
        assert!(config.discover[1].selects("anything"));
    }

    #[test]
    fn discovery_alone_is_enough() {
        let text = FLEET.replace("[[pipeline]]\nname = \"billing\"\naccount = \"ops\"\n", "");
        assert!(parse(&text).unwrap().pipelines.is_empty());
    }

    #[test]
    fn fleet_keys_name_themselves_when_wrong() {
        let with = |find: &str, replace: &str| FLEET.replacen(find, replace, 1);
        let cases = [
            (
                with("account = \"ops\"", "account = \"opps\""),
                "pipeline[0].account",
            ),
            (
                with(
                    "account = \"prod\"\ninclude",
                    "account = \"staging\"\ninclude",
                ),
                "discover[0].account",
            ),
            (
                with("\"sandbox-*\"", "\"sandbox-[0-9]\""),
                "discover[0].exclude[0]",
            ),
            (
                with(
                    "role_arn = \"arn:aws:iam::222222222222:role/approval-watch-reader\"",
                    "role_arn = \"approval-watch-reader\"",
                ),
                "account[0].role_arn",
            ),
            (
                with("name = \"ops\"\nprofile = \"ops\"", "name = \"ops\""),
                "account[1]",
            ),
            (with("name = \"ops\"", "name = \"prod\""), "account[1].name"),
            (
                with("name = \"ops\"", "name = \"default\""),
                "account[1].name",
            ),
            (
                with(
                    "max_requests_per_second = 10",
                    "max_requests_per_second = 0",
                ),
                "aws.max_requests_per_second",
            ),
            (
                with("max_concurrency = 8", "max_concurrency = 0"),
                "aws.max_concurrency",
            ),
            (
                with(
                    "max_requests_per_second = 20",
                    "max_requests_per_second = -1",
                ),
                "account[0].max_requests_per_second",
            ),
            (
                with(
                    "idle_poll_interval = \"2m\"",
                    "idle_poll_interval = \"10s\"",
                ),
                "idle_poll_interval",
            ),
            (
                with("discover_interval = \"5m\"", "discover_interval = \"1s\""),
                "discover_interval",
            ),
            (
                with("regions = [\"us-east-1\"]", "regions = [\"US East\"]"),
                "account[1].regions[0]",
            ),
            (
                with("external_id = \"approval-watch\"", "external_idd = \"x\""),
                "external_idd",
            ),
        ];
        for (text, key) in cases {
            let e = error(&text);
            assert!(e.contains(key), "error should name {key}: {e}");
        }
    }
}
