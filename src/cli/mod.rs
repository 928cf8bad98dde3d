//! The command line: parsing (a contract users' scripts rely on) and each command.

pub(crate) mod args;
pub(crate) mod audit;
pub(crate) mod check_config;
pub(crate) mod docs;
pub(crate) mod dry_run;
pub(crate) mod output;
pub mod status;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

pub use args::{Cli, Command};

use crate::aws::CodePipeline;
use crate::clock::Clock;
use crate::config::{Config, Route};
use crate::daemon::cycle::CycleReport;
use crate::daemon::startup::{self, Mode, StartupError};
use crate::slack::web_api::SlackApi;
use crate::slack::webhook::SlackClient;
use crate::store::Store;

/// Why a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad config or usage: exit 2.
    Config(anyhow::Error),
    /// Anything at run time: exit 1.
    Runtime(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            Self::Runtime(_) => ExitCode::from(1),
        }
    }

    pub fn error(&self) -> &anyhow::Error {
        match self {
            Self::Config(e) | Self::Runtime(e) => e,
        }
    }
}

fn config_error(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Config(e.into())
}

fn runtime_error(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Runtime(e.into())
}

pub async fn execute(cli: Cli) -> Result<ExitCode, Failure> {
    // Loaded only by the commands that use it: the generated docs must work without a config.
    let load = || Config::load(&cli.config).map_err(config_error);
    match cli.command {
        Command::Run => run(load()?, &cli.config).await,
        Command::Once { dry_run: false } => once(load()?).await,
        Command::Once { dry_run: true } => dry_run(load()?).await,
        Command::CheckConfig => check_config(&cli.config, load()?).await,
        Command::Status { json } => status(load()?, json),
        Command::Audit { json, since } => audit(load()?, json, since),
        Command::TestSlack => test_slack(load()?).await,
        Command::TestHeartbeat { fail } => test_heartbeat(load()?, fail).await,
        Command::Completions { shell } => {
            crate::cli::docs::print(&crate::cli::docs::completions(shell)).map_err(runtime_error)
        }
        Command::Man => crate::cli::docs::man_page()
            .and_then(|page| crate::cli::docs::print(&page))
            .map_err(runtime_error),
    }
}

fn startup_failure(e: StartupError) -> Failure {
    if e.is_config() {
        Failure::Config(e.into())
    } else {
        Failure::Runtime(e.into())
    }
}

/// Cancelled on SIGTERM or SIGINT.
fn shutdown_on_signals() -> Result<CancellationToken, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())
        .context("cannot listen for SIGTERM")
        .map_err(runtime_error)?;
    let mut int = signal(SignalKind::interrupt())
        .context("cannot listen for SIGINT")
        .map_err(runtime_error)?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received; finishing the delivery in flight");
        cancel.cancel();
    });
    Ok(token)
}

async fn run(config: Config, config_path: &Path) -> Result<ExitCode, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let shutdown = shutdown_on_signals()?;
    // Before anything slow: an early SIGHUP must not kill the process (its default action).
    let hangups = signal(SignalKind::hangup())
        .context("cannot listen for SIGHUP")
        .map_err(runtime_error)?;
    let reloads = futures_util::stream::unfold(hangups, |mut signal| async move {
        signal.recv().await.map(|()| ((), signal))
    });
    let notifier = std::sync::Arc::new(crate::daemon::systemd::Notifier::from_env());
    let metrics_listen = config.metrics;
    tracing::info!(
        pipelines = config.pipelines.len(),
        poll_interval = %humantime::format_duration(config.poll_interval),
        state = %config.state_path.display(),
        "approval-watch starting"
    );
    let daemon = startup::daemon(config, Clock::System)
        .await
        .map_err(startup_failure)?;
    if let Some(addr) = metrics_listen {
        let local = crate::metrics::start(addr, crate::metrics::global(), shutdown.clone())
            .map_err(runtime_error)?;
        tracing::info!("metrics on http://{local}/metrics and http://{local}/healthz");
    }
    tracing::info!("approval-watch started");
    let options = crate::daemon::Options {
        notifier,
        reloads: Box::pin(reloads),
        config_path: config_path.to_owned(),
        clock: Clock::System,
    };
    crate::daemon::run(daemon, options, shutdown)
        .await
        .map_err(runtime_error)?;
    Ok(ExitCode::SUCCESS)
}

async fn once(config: Config) -> Result<ExitCode, Failure> {
    let shutdown = shutdown_on_signals()?;
    let mut watcher = startup::watcher(config, Mode::Live, Clock::System)
        .await
        .map_err(startup_failure)?;
    let report = watcher.cycle(&shutdown).await.map_err(runtime_error)?;
    watcher.close().map_err(runtime_error)?;
    tracing::info!(
        pipelines = report.pipelines,
        unreadable = report.read_failures,
        new = report.new_approvals,
        resolved = report.resolved,
        delivered = report.delivery.delivered,
        failed = report.delivery.failed,
        undelivered = report.undelivered,
        "cycle done"
    );
    Ok(exit_code(&report))
}

/// `once`'s exit code: 0 when everything was read and everything due delivered; before 1,
/// why not, so a script's log says what to do.
fn exit_code(report: &CycleReport) -> ExitCode {
    if report.is_clean() {
        return ExitCode::SUCCESS;
    }
    for reason in report.unclean_reasons() {
        tracing::warn!("exit 1: {reason}");
    }
    ExitCode::from(1)
}

/// `once --dry-run`: the same cycle as `once`, on an in-memory copy of the state database and
/// capturing instead of posting; prints what would be posted.
async fn dry_run(config: Config) -> Result<ExitCode, Failure> {
    let shutdown = shutdown_on_signals()?;
    let mut watcher = startup::watcher(config, Mode::DryRun, Clock::System)
        .await
        .map_err(startup_failure)?;
    let queued_before = watcher.last_message_id().map_err(runtime_error)?;
    let report = watcher.cycle(&shutdown).await.map_err(runtime_error)?;
    for captured in watcher.take_captured() {
        let line = crate::cli::dry_run::line(&captured, captured.message.id <= queued_before);
        crate::cli::output::print_line(&line).map_err(runtime_error)?;
    }
    Ok(exit_code(&report))
}

async fn check_config(path: &Path, config: Config) -> Result<ExitCode, Failure> {
    crate::config::check_state_directory(&config.state_path).map_err(config_error)?;
    let webhooks = config
        .all_routes()
        .map(Route::resolve_webhook)
        .collect::<Result<Vec<_>, _>>()
        .map_err(config_error)?;
    if let Some(app) = &config.app {
        // Read and checked for form only: check-config calls nothing.
        app.resolve_token().map_err(config_error)?;
    }
    if let Some(approvals) = &config.approvals {
        // The app-level token too: read and checked for form, never printed.
        approvals.resolve_token().map_err(config_error)?;
    }
    let (_, targets) = CodePipeline::connect(&config).await.map_err(config_error)?;
    let heartbeat = match &config.heartbeat {
        Some(h) => Some((h, h.resolve().map_err(config_error)?)),
        None => None,
    };
    let mut summary = crate::cli::check_config::config_summary(path, &config, &targets, &webhooks);
    if let Some((h, urls)) = heartbeat {
        summary.push_str(&crate::cli::check_config::heartbeat(h, &urls));
    }
    // check-config calls nothing: what the daemon last read says which cannot be watched.
    if let Ok(Some(store)) = Store::open_read_only(&config.state_path)
        && let Ok(unwatchable) = crate::cli::status::unwatchable(&store)
    {
        crate::cli::status::unwatchable_lines(&mut summary, &unwatchable);
    }
    crate::cli::output::print(&summary).map_err(runtime_error)?;
    Ok(ExitCode::SUCCESS)
}

fn status(config: Config, json: bool) -> Result<ExitCode, Failure> {
    let store = Store::open_read_only(&config.state_path).map_err(runtime_error)?;
    let now = Timestamp::now();
    let status =
        crate::cli::status::collect(&config, store.as_ref(), now).map_err(runtime_error)?;
    if json {
        let doc = serde_json::to_string(&status)
            .context("cannot write the status as JSON")
            .map_err(runtime_error)?;
        crate::cli::output::print_line(&doc).map_err(runtime_error)?;
    } else {
        crate::cli::output::print(&crate::cli::status::text(&status, now))
            .map_err(runtime_error)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit`: read-only, like `status`; a database not there yet (or not yet migrated by the
/// daemon) has no clicks, which is said, not an error.
fn audit(
    config: Config,
    json: bool,
    since: Option<std::time::Duration>,
) -> Result<ExitCode, Failure> {
    use crate::cli::audit::{self as view, NoDatabase};
    let path = &config.state_path;
    let store = Store::open_read_only(path).map_err(runtime_error)?;
    let since = since.map(|d| {
        jiff::SignedDuration::try_from(d)
            .ok()
            .and_then(|d| Timestamp::now().checked_sub(d).ok())
            .unwrap_or(Timestamp::MIN)
    });
    let rows = match &store {
        Some(store) => store
            .audit(since.unwrap_or(Timestamp::MIN))
            .map_err(runtime_error)?,
        None => Vec::new(),
    };
    if json {
        let doc = serde_json::to_string(&rows)
            .context("cannot write the audit as JSON")
            .map_err(runtime_error)?;
        crate::cli::output::print_line(&doc).map_err(runtime_error)?;
    } else if store.is_none() {
        let why = if path.exists() {
            NoDatabase::Older
        } else {
            NoDatabase::Missing
        };
        crate::cli::output::print(&view::no_database(path, why)).map_err(runtime_error)?;
    } else {
        crate::cli::output::print(&view::text(&rows, since)).map_err(runtime_error)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `test-slack`: one clearly marked message to each destination, without mentions (a test
/// should not page a team), each result on its own line.
async fn test_slack(config: Config) -> Result<ExitCode, Failure> {
    let webhooks = config
        .all_routes()
        .map(Route::resolve_webhook)
        .collect::<Result<Vec<_>, _>>()
        .map_err(config_error)?;
    let slack = SlackClient::new()
        .context("cannot build the HTTP client")
        .map_err(runtime_error)?;
    let app = match &config.app {
        Some(app) => {
            let token = app.resolve_token().map_err(config_error)?;
            let api = SlackApi::new(app.api_url.clone(), token)
                .context("cannot build the HTTP client")
                .map_err(runtime_error)?;
            // Once: a refused token fails every channel the same way.
            let auth = api.auth_test().await.map(drop);
            Some((api, auth, app.token_key.as_str()))
        }
        None => None,
    };
    let host = hostname();
    let mut failed = 0;
    for (route, webhook) in config.all_routes().zip(&webhooks) {
        let payload = approval_watch_core::render::with_overrides(
            &approval_watch_core::render::test_message(&route.name, &host),
            &route.overrides,
        );
        let result = match (webhook, route.channel(), &app) {
            (Some(webhook), _, _) => slack
                .post(webhook, &payload)
                .await
                .map_err(|e| e.to_string()),
            (None, Some(channel), Some((api, auth, token_key))) => {
                let sent = match auth {
                    Ok(()) => {
                        let mut body = payload.clone();
                        body["channel"] = channel.into();
                        api.post_message(&body).await.map(drop)
                    }
                    Err(e) => Err(e.clone()),
                };
                sent.map_err(|e| {
                    match e
                        .slack_error()
                        .and_then(|w| crate::slack::web_api::advice(w, channel, token_key))
                    {
                        Some(advice) => format!("{e} — {advice}"),
                        None => e.to_string(),
                    }
                })
            }
            _ => Err("no webhook and no bot token".to_owned()),
        };
        let line = match result {
            Ok(()) => format!("{} ({}): ok", route.name, route.key),
            Err(e) => {
                failed += 1;
                format!("{} ({}): FAILED: {e}", route.name, route.key)
            }
        };
        crate::cli::output::print_line(&line).map_err(runtime_error)?;
    }
    if let (Some(approvals), Some(app)) = (&config.approvals, &config.app) {
        // Approving from Slack: the app-level token opens a Socket Mode connection (the URL
        // Slack hands out is not used; it expires unused).
        let token = approvals.resolve_token().map_err(config_error)?;
        let opener = crate::slack::web_api::ConnectionOpener::new(app.api_url.clone(), token)
            .context("cannot build the HTTP client")
            .map_err(runtime_error)?
            .with_token_key(&approvals.token_key);
        let line = match opener.open().await {
            Ok(_) => format!("Socket Mode ({}): ok", approvals.token_key),
            Err(e) => {
                failed += 1;
                match e.slack_error().and_then(|w| opener.advice(w)) {
                    Some(advice) => format!(
                        "Socket Mode ({}): FAILED: {e} — {advice}",
                        approvals.token_key
                    ),
                    None => format!("Socket Mode ({}): FAILED: {e}", approvals.token_key),
                }
            }
        };
        crate::cli::output::print_line(&line).map_err(runtime_error)?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `test-heartbeat`: one GET to the heartbeat URL (or, with `--fail`, the failure URL), the
/// answer on one line, never the URL.
async fn test_heartbeat(config: Config, fail: bool) -> Result<ExitCode, Failure> {
    let Some(heartbeat) = &config.heartbeat else {
        return Err(config_error(anyhow::anyhow!(
            "heartbeat: not configured; expected a [heartbeat] table with url_credential, url_file, url_env or url"
        )));
    };
    let urls = heartbeat.resolve().map_err(config_error)?;
    let (url, key) = if fail {
        match (&urls.fail_url, &heartbeat.fail_url) {
            (Some(url), Some((_, key))) => (url, key.as_str()),
            _ => {
                return Err(config_error(anyhow::anyhow!(
                    "heartbeat: no fail_url configured; expected fail_url_credential, fail_url_file, fail_url_env or fail_url"
                )));
            }
        }
    } else {
        (&urls.url, heartbeat.url_key.as_str())
    };
    let client = crate::daemon::heartbeat::client()
        .context("cannot build the HTTP client")
        .map_err(runtime_error)?;
    let (line, code) = match crate::daemon::heartbeat::send(&client, url).await {
        Ok(status) => (format!("heartbeat ({key}): ok (HTTP {status})"), 0),
        Err(e) => (format!("heartbeat ({key}): FAILED: {e}"), 1),
    };
    crate::cli::output::print_line(&line).map_err(runtime_error)?;
    Ok(ExitCode::from(code))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this host".to_owned())
}

/// The whole program: parse arguments, set up logs, run the command, map the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init_with(cli.log_format);
    // One thread: the work is waiting on AWS and Slack. Handing every response from an I/O
    // worker to the cycle on another thread cost about 40% more CPU per cycle (benchmark).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        // The reader of stdout went away (`| head`): nothing more to say, as other tools do.
        Err(failure) if crate::cli::output::is_closed_stdout(failure.error()) => ExitCode::SUCCESS,
        Err(failure) => {
            tracing::error!("{:#}", failure.error());
            failure.exit_code()
        }
    }
}
