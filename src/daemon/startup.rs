//! Assembly: from a validated config to the running parts — secrets read, AWS clients per
//! account and region, the Slack deliverer, the store — with every problem found before
//! anything happens. Start-up, SIGHUP and the dry run build through here, so a reload builds
//! exactly what a start would.

use std::path::Path;

use crate::aws::{CodePipeline, SetupError};
use crate::clock::Clock;
use crate::config::small_file::{self, SmallFileError};
use crate::config::{Config, ConfigError};
use crate::daemon::cycle::{ApprovalClients, Assembly, Watcher};
use crate::daemon::deliver::{Deliverer, Transport};
use crate::daemon::heartbeat::{Heartbeat, HeartbeatError};
use crate::slack::web_api::{ConnectionOpener, SlackApi};
use crate::slack::webhook::SlackClient;
use crate::store::{Store, StoreError};

/// Why the parts could not be built. Config problems (exit 2) are told apart from the rest.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Aws(#[from] SetupError),
    #[error("cannot build the HTTP client for Slack: {0}")]
    HttpClient(reqwest::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("config file: {0}")]
    ConfigFile(SmallFileError),
    #[error(transparent)]
    Heartbeat(#[from] HeartbeatError),
}

impl StartupError {
    /// A problem the operator fixes in the config (exit 2), as opposed to one at run time.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Config(_)
                | Self::Aws(_)
                | Self::ConfigFile(_)
                | Self::Heartbeat(HeartbeatError::Config(_))
        )
    }
}

/// How the watcher's messages leave and where its state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Post to Slack; the state database at `state_path`, locked for this process.
    Live,
    /// Capture instead of posting; an in-memory copy of the state database (`--dry-run`).
    DryRun,
}

/// Builds what `config` needs besides the store: AWS clients, configured pipelines, deliverer.
pub async fn assemble(config: Config, mode: Mode, clock: Clock) -> Result<Assembly, StartupError> {
    let mut approvals = None;
    let transport = match mode {
        Mode::Live => {
            let client = SlackClient::new().map_err(StartupError::HttpClient)?;
            let api = match &config.app {
                Some(app) => Some(
                    SlackApi::new(app.api_url.clone(), app.resolve_token()?)
                        .map_err(StartupError::HttpClient)?,
                ),
                None => None,
            };
            // `[slack.approvals]` is only valid with a bot token (the config checks).
            if let (Some(settings), Some(app), Some(slack)) = (&config.approvals, &config.app, &api)
            {
                let opener = ConnectionOpener::new(app.api_url.clone(), settings.resolve_token()?)
                    .map_err(StartupError::HttpClient)?
                    .with_token_key(&settings.token_key);
                approvals = Some(ApprovalClients {
                    slack: slack.clone(),
                    opener,
                });
            }
            Transport::slack(client, api, &config)?
        }
        Mode::DryRun => Transport::Capture(Vec::new()),
    };
    // Only the daemon pings; the dry run must not tell a monitor anything.
    let heartbeat = match (&config.heartbeat, mode) {
        (Some(h), Mode::Live) => Some(Heartbeat::new(h)?),
        _ => None,
    };
    let (aws, targets) = CodePipeline::connect(&config).await?;
    let deliverer = Deliverer::new(transport, &config, clock);
    Ok(Assembly {
        config,
        aws,
        targets,
        deliverer,
        heartbeat,
        approvals,
    })
}

/// The watcher for `config`: parts first (so a bad secret or account fails before the
/// database is touched), then the store.
pub async fn watcher(config: Config, mode: Mode, clock: Clock) -> Result<Watcher, StartupError> {
    let state_path = config.state_path.clone();
    let assembly = assemble(config, mode, clock).await?;
    Ok(match mode {
        Mode::Live => Watcher::new(assembly, Store::open(&state_path)?, clock),
        Mode::DryRun => Watcher::new(assembly, Store::open_copy(&state_path)?, clock).quiet(),
    })
}

/// A config file is a few kilobytes; anything near this is not one.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// SIGHUP: the config at `path` read again and its parts built, for the running watcher.
/// The file must be a regular file, read without waiting on a writer: a FIFO put in its place
/// must not freeze the daemon (signals and all).
pub async fn reload(path: &Path, clock: Clock) -> Result<Assembly, StartupError> {
    let file = small_file::read(path, MAX_CONFIG_BYTES).map_err(StartupError::ConfigFile)?;
    let config = Config::parse(&file.text, path)?;
    assemble(config, Mode::Live, clock).await
}
