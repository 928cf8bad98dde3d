//! Configuration: TOML parsing ([`raw`]), then semantic checks into [`Config`], one file per
//! TOML table: [`accounts`] (`[aws]`, `[[account]]`), [`routes`] (`[slack]`, `[[route]]`),
//! [`reminders`] (`[reminders]` and working hours), [`pipelines`] (`[[pipeline]]`,
//! `[[discover]]`). Secrets are resolved separately ([`Route::resolve_webhook`]) so that
//! commands which never talk to Slack (`status`) do not need to read them.

mod accounts;
mod app;
mod approvals;
mod digest;
mod glob;
mod heartbeat;
mod idle_rhythm;
mod pipelines;
mod raw;
mod reminders;
mod routes;
mod secret;
pub(crate) mod small_file;
mod state_dir;
#[cfg(test)]
mod tests;
mod tokens;
mod toml_error;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use accounts::{AccountConfig, AwsConfig, Credentials, DEFAULT_IDLE_BUDGET_SHARE, Limits};
pub use app::{AppConfig, BotToken, DEFAULT_API_URL, TokenSource};
pub use approval_watch_core::render::MessageOverrides;
pub use approvals::{AppLevelTokenSource, ApprovalsConfig, Approvers, is_user_id};
pub use glob::Glob;
pub use heartbeat::{HeartbeatConfig, HeartbeatUrls};
pub use idle_rhythm::idle_rhythms;
pub use pipelines::{DiscoverConfig, PipelineConfig};
pub use routes::{DEFAULT_ROUTE, Destination, Route, route_index};
pub use secret::{SecretSource, SecretUrl, shown_url};
pub use state_dir::check_state_directory;
pub use tokens::{AppLevelToken, Token};

/// A config problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is in the message and not a `source()`, so a chained report says it once.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

pub(super) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

pub const DEFAULT_CONFIG_PATH: &str = "/etc/approval-watch/config.toml";
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_POLL_INTERVAL: Duration = Duration::from_secs(120);
const DEFAULT_DISCOVER_INTERVAL: Duration = Duration::from_secs(300);

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
    /// `[slack]`'s bot token and Web API (app mode), when it names one.
    pub app: Option<AppConfig>,
    /// `[slack.approvals]`: approving from Slack, off when absent (needs `app`).
    pub approvals: Option<ApprovalsConfig>,
    /// `[[route]]`s in order; the first whose globs match a pipeline wins.
    pub routes: Vec<Route>,
    pub pipelines: Vec<PipelineConfig>,
    /// `default` first, then each `[[account]]`.
    pub accounts: Vec<AccountConfig>,
    pub discover: Vec<DiscoverConfig>,
    /// `[metrics] listen`: the Prometheus endpoint, off when absent.
    pub metrics: Option<SocketAddr>,
    /// `[heartbeat]`: the dead man's switch, off when absent.
    pub heartbeat: Option<HeartbeatConfig>,
    /// The daily digest's schedule per route name (`[digest]`, `[route.digest]`); a route
    /// without one gets no digest.
    pub digests: std::collections::BTreeMap<String, approval_watch_core::digest::DigestSchedule>,
}

impl Config {
    /// Reads, parses and validates a config file. Does not read the webhook secrets.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
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
            .get(routes::route_index(&self.routes, pipeline))
            .unwrap_or(&self.slack)
    }

    /// Every route in routing order: the `[[route]]`s, then `[slack]`, which takes the rest.
    pub fn all_routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().chain(std::iter::once(&self.slack))
    }

    /// Who may approve `route`'s pipelines from Slack: `None` when `[slack.approvals]` is
    /// absent or the route posts by webhook (no buttons there); `Some(empty)` = no one (deny by
    /// default: no buttons).
    pub fn approvers_of<'a>(&'a self, route: &'a Route) -> Option<&'a Approvers> {
        let approvals = self.approvals.as_ref()?;
        route.channel()?;
        Some(route.approvals.as_ref().unwrap_or(&approvals.default))
    }

    /// The effective lists for a pipeline (its route's, see [`Config::approvers_of`]): `None`
    /// when `[slack.approvals]` is absent or the pipeline's route is not an app-mode channel
    /// route; `Some(empty)` = deny (no buttons).
    pub fn approvers_for(&self, pipeline: &str) -> Option<&Approvers> {
        self.approvers_of(self.route_for(pipeline))
    }

    /// Every user group named anywhere (default lists and routes), for `usergroups.users.list`.
    pub fn approval_groups(&self) -> std::collections::BTreeSet<String> {
        let Some(approvals) = &self.approvals else {
            return std::collections::BTreeSet::new();
        };
        self.all_routes()
            .filter_map(|r| r.approvals.as_ref())
            .chain(std::iter::once(&approvals.default))
            .flat_map(|a| a.groups.iter().cloned())
            .collect()
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
    accounts::validate_aws(&aws)?;

    let global_reminders = raw.reminders;
    let mut raw_slack = raw.slack;
    let slack_approvals = raw_slack.as_mut().and_then(|s| s.approvals.take());
    let (slack, app) = routes::validate_slack(raw_slack, &global_reminders)?;
    let approvals = approvals::validate_default(slack_approvals, app.as_ref())?;
    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut names = HashSet::from([DEFAULT_ROUTE.to_owned()]);
    let global_digest = raw.digest;
    let mut digests = std::collections::BTreeMap::new();
    let zone_of = |route: &Route| {
        route
            .reminders
            .working_hours
            .as_ref()
            .map(|w| (w.timezone_name.clone(), w.timezone.clone()))
    };
    let zone = zone_of(&slack);
    if let Some(s) = digest::schedule(
        "slack",
        global_digest.as_ref(),
        None,
        zone.as_ref().map(|(n, z)| (n.as_str(), z)),
    )? {
        digests.insert(slack.name.clone(), s);
    }
    for (i, mut r) in raw.routes.into_iter().enumerate() {
        let route_digest = r.digest.take();
        let route_approvals = r.approvals.take();
        let mut route = routes::validate_route(i, r, &global_reminders, app.as_ref())?;
        route.approvals = approvals::validate_route(
            i,
            route_approvals,
            route.channel().is_some(),
            approvals.as_ref(),
        )?;
        let zone = zone_of(&route);
        if let Some(s) = digest::schedule(
            &format!("route[{i}]"),
            global_digest.as_ref(),
            route_digest.as_ref(),
            zone.as_ref().map(|(n, z)| (n.as_str(), z)),
        )? {
            digests.insert(route.name.clone(), s);
        }
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

    let accounts = accounts::validate_accounts(&aws, raw.accounts)?;
    let discover = pipelines::validate_discover(raw.discover, &accounts)?;
    let pipelines = pipelines::validate_pipelines(raw.pipelines, &accounts, &aws)?;
    if pipelines.is_empty() && discover.is_empty() {
        return Err(invalid(
            "pipeline",
            "no pipelines configured; expected at least one [[pipeline]] with a name, or a [[discover]]",
        ));
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

    let heartbeat = heartbeat::validate_heartbeat(raw.heartbeat)?;

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
        app,
        approvals,
        routes,
        pipelines,
        accounts,
        discover,
        metrics,
        heartbeat,
        digests,
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

pub(super) fn check_region(key: &str, region: &str) -> Result<(), ConfigError> {
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
