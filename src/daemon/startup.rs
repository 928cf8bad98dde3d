//! Assembly: from a validated config to the running parts — secrets read, AWS clients per
//! account and region, the Slack deliverer, the store — with every problem found before
//! anything happens. Start-up, SIGHUP and the dry run build through here, so a reload builds
//! exactly what a start would.

use std::path::Path;
use std::sync::Arc;

use crate::approve;
use crate::aws::{CodePipeline, SetupError};
use crate::clock::Clock;
use crate::config::small_file::{self, SmallFileError};
use crate::config::{Config, ConfigError};
use crate::daemon::cycle::{Parts, Watcher};
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

/// Everything a config builds besides the store: the watcher's parts, and beside them the
/// heartbeat and the approvals service, which the daemon's loop runs (the watcher never uses
/// them).
pub struct Assembly {
    pub parts: Parts,
    /// `[heartbeat]`, with its URLs read; `None` when not configured (and in the dry run).
    pub heartbeat: Option<Heartbeat>,
    /// What approving from Slack needs (`[slack.approvals]`); `None` when not configured
    /// (and in the dry run).
    pub approvals: Option<approve::Setup>,
}

/// Builds what `config` needs besides the store: AWS clients, configured pipelines,
/// deliverer, heartbeat and the approvals service's clients.
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
                approvals = Some((slack.clone(), opener));
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
    // Shared: the approvals service's `PutApprovalResult` calls go through the watcher's
    // request budgets.
    let aws = Arc::new(aws);
    let approvals = approvals.map(|(slack, opener)| approve::Setup {
        config: Arc::new(config.clone()),
        aws: aws.clone(),
        slack,
        opener,
        state_path: config.state_path.clone(),
        clock,
    });
    let deliverer = Deliverer::new(transport, &config, clock);
    Ok(Assembly {
        parts: Parts {
            config,
            aws,
            targets,
            deliverer,
            records_cycles: heartbeat.is_some(),
        },
        heartbeat,
        approvals,
    })
}

/// The watcher for `config`: parts first (so a bad secret or account fails before the
/// database is touched), then the store. The heartbeat and the approvals service are built
/// (so their problems fail here too) and left unused: `once` and the dry run run neither.
pub async fn watcher(config: Config, mode: Mode, clock: Clock) -> Result<Watcher, StartupError> {
    let state_path = config.state_path.clone();
    let Assembly { parts, .. } = assemble(config, mode, clock).await?;
    Ok(match mode {
        Mode::Live => Watcher::new(parts, Store::open(&state_path)?, clock),
        Mode::DryRun => Watcher::new(parts, Store::open_copy(&state_path)?, clock).quiet(),
    })
}

/// What the daemon's loop (`daemon::run`) runs: the watcher, and beside it the heartbeat and
/// the approvals service.
pub struct Daemon {
    pub(crate) watcher: Watcher,
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) approvals: Option<approve::Setup>,
}

/// The daemon for `config` (live): built like [`watcher`], keeping the heartbeat and the
/// approvals service for the loop.
pub async fn daemon(config: Config, clock: Clock) -> Result<Daemon, StartupError> {
    let state_path = config.state_path.clone();
    let Assembly {
        parts,
        heartbeat,
        approvals,
    } = assemble(config, Mode::Live, clock).await?;
    Ok(Daemon {
        watcher: Watcher::new(parts, Store::open(&state_path)?, clock),
        heartbeat,
        approvals,
    })
}

/// A config file is a few kilobytes; anything near this is not one.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// SIGHUP: the config at `path` read again and everything it needs built, for the running
/// daemon.
/// The file must be a regular file, read without waiting on a writer: a FIFO put in its place
/// must not freeze the daemon (signals and all).
pub async fn reload(path: &Path, clock: Clock) -> Result<Assembly, StartupError> {
    let file = small_file::read(path, MAX_CONFIG_BYTES).map_err(StartupError::ConfigFile)?;
    let config = Config::parse(&file.text, path)?;
    assemble(config, Mode::Live, clock).await
}
