//! The command line: parsing (a contract users' scripts rely on) and each command.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::aws::{CodePipeline, Target};
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::deliver::{Deliverer, Destination};
use crate::logging::LogFormat;
use crate::slack::SlackClient;
use crate::store::Store;
use crate::watcher::{self, Watcher};

#[derive(Debug, Parser)]
#[command(
    name = "approval-watch",
    version,
    about = "Tells Slack when an AWS CodePipeline approval is waiting"
)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "APPROVAL_WATCH_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Log format: auto = journal when stderr is the systemd journal, else text.
    #[arg(
        long,
        global = true,
        env = "APPROVAL_WATCH_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Auto
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll every poll_interval until SIGTERM or SIGINT; SIGHUP reloads the config.
    Run,
    /// One full cycle, then exit: 0 all read and delivered, 1 something failed, 2 config error.
    Once {
        /// Print the Slack messages as JSON lines instead of sending them; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Parse, validate and resolve secrets; print a summary (never the secret).
    CheckConfig,
    /// List the approvals waiting, from the state database.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Send a test message to every configured Slack destination and report each result:
    /// 0 all delivered, 1 any failed, 2 config error.
    TestSlack,
    /// Print the completion script for SHELL (needs no config).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page in roff (needs no config; packaging installs it).
    #[command(hide = true)]
    Man,
}

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
        Command::TestSlack => test_slack(load()?).await,
        Command::Completions { shell } => {
            crate::docs::print(&crate::docs::completions(shell)).map_err(runtime_error)
        }
        Command::Man => crate::docs::man_page()
            .and_then(|page| crate::docs::print(&page))
            .map_err(runtime_error),
    }
}

/// Everything a writing command needs (secret, AWS clients, database), checked before
/// anything happens. Config problems come back as [`Failure::Config`].
pub async fn open_watcher(config: &Config) -> Result<Watcher, Failure> {
    let built = build(config.clone()).await?;
    let store = Store::open(&config.state_path).map_err(runtime_error)?;
    Ok(Watcher::new(
        built.config,
        built.aws,
        built.targets,
        store,
        built.deliverer,
    ))
}

/// What a config builds: its AWS clients, the pipelines they read and the Slack deliverer.
/// Shared by start-up and SIGHUP, so a reload builds exactly what a start would.
async fn build(config: Config) -> Result<Built, Failure> {
    let destinations = Destination::all(&config).map_err(config_error)?;
    let (aws, targets) = connect(&config).await?;
    let slack = SlackClient::new()
        .context("cannot build the HTTP client")
        .map_err(runtime_error)?;
    Ok(Built {
        config,
        aws,
        targets,
        deliverer: Deliverer::new(slack, destinations),
    })
}

async fn connect(config: &Config) -> Result<(CodePipeline, Vec<Target>), Failure> {
    CodePipeline::connect(config).await.map_err(config_error)
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

/// A config and everything built from it: what start-up runs on and what a reload swaps in,
/// complete before anything changes.
pub struct Built {
    pub config: Config,
    pub aws: CodePipeline,
    pub targets: Vec<Target>,
    pub deliverer: Deliverer,
}

/// Reads the config at `path` and builds what depends on it (secrets, AWS clients, Slack
/// destinations), for SIGHUP. Errors name the key, never a secret.
pub async fn reload_parts(path: &Path) -> anyhow::Result<Built> {
    let config = Config::load(path)?;
    build(config).await.map_err(|f| match f {
        Failure::Config(e) | Failure::Runtime(e) => e,
    })
}

async fn run(config: Config, config_path: &Path) -> Result<ExitCode, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let shutdown = shutdown_on_signals()?;
    // Before anything slow: an early SIGHUP must not kill the process (its default action).
    let hangups = signal(SignalKind::hangup())
        .context("cannot listen for SIGHUP")
        .map_err(runtime_error)?;
    let notifier = std::sync::Arc::new(crate::notify::Notifier::from_env());
    let watcher = open_watcher(&config).await?;
    if let Some(addr) = config.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics.listen: cannot listen on {addr}"))
            .map_err(runtime_error)?;
        let local = listener
            .local_addr()
            .context("metrics.listen: no local address")
            .map_err(runtime_error)?;
        tracing::info!("metrics on http://{local}/metrics and http://{local}/healthz");
        tokio::spawn(crate::metrics::serve(
            listener,
            crate::metrics::global(),
            shutdown.clone(),
        ));
    }
    tracing::info!(
        pipelines = config.pipelines.len(),
        poll_interval = %humantime::format_duration(config.poll_interval),
        state = %config.state_path.display(),
        "approval-watch started"
    );
    let options = crate::daemon::Options {
        poll_interval: config.poll_interval,
        notifier,
        reload: Some(crate::daemon::Reload {
            signal: hangups,
            config_path: config_path.to_owned(),
        }),
    };
    crate::daemon::run(watcher, options, shutdown)
        .await
        .map_err(runtime_error)?;
    Ok(ExitCode::SUCCESS)
}

async fn once(config: Config) -> Result<ExitCode, Failure> {
    let shutdown = shutdown_on_signals()?;
    let mut watcher = open_watcher(&config).await?;
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
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn dry_run(config: Config) -> Result<ExitCode, Failure> {
    let (aws, mut targets) = connect(&config).await?;
    let mut listing_failed = false;
    for (scope, listing) in watcher::list_scopes(&config, &aws).await {
        match listing {
            Ok(names) => targets.extend(names.into_iter().map(|pipeline| Target {
                account: scope.account.clone(),
                region: scope.region.clone(),
                pipeline,
            })),
            Err(e) => {
                listing_failed = true;
                tracing::warn!(account = %scope.account, region = %scope.region, code = %e.code, "cannot list pipelines: {}", e.message);
            }
        }
    }
    targets.sort();
    targets.dedup();
    let store = Store::open_read_only(&config.state_path).map_err(runtime_error)?;
    let now = Timestamp::now();
    let observed = watcher::observe(&config, &aws, &targets, &[], store.as_ref(), now)
        .await
        .map_err(runtime_error)?;
    let lines = crate::dry_run::lines(&config, store.as_ref(), &observed.plan, now)
        .map_err(runtime_error)?;
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").map_err(runtime_error)?;
    }
    for e in &observed.failures {
        tracing::warn!(pipeline = %e.pipeline, code = %e.code, "cannot read pipeline: {}", e.message);
    }
    Ok(if observed.failures.is_empty() && !listing_failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn check_config(path: &Path, config: Config) -> Result<ExitCode, Failure> {
    let webhooks = config
        .all_routes()
        .map(|r| r.resolve_webhook())
        .collect::<Result<Vec<_>, _>>()
        .map_err(config_error)?;
    let (_, targets) = connect(&config).await?;
    print!(
        "{}",
        crate::summary::config_summary(path, &config, &targets, &webhooks)
    );
    Ok(ExitCode::SUCCESS)
}

fn status(config: Config, json: bool) -> Result<ExitCode, Failure> {
    let store = Store::open_read_only(&config.state_path).map_err(runtime_error)?;
    let now = Timestamp::now();
    let status = crate::status::collect(&config, store.as_ref(), now).map_err(runtime_error)?;
    if json {
        let doc = serde_json::to_string(&status)
            .context("cannot write the status as JSON")
            .map_err(runtime_error)?;
        println!("{doc}");
    } else {
        print!("{}", crate::status::text(&status, now));
    }
    Ok(ExitCode::SUCCESS)
}

/// `test-slack`: one clearly marked message to each destination, without mentions (a test
/// should not page a team), each result on its own line.
async fn test_slack(config: Config) -> Result<ExitCode, Failure> {
    let destinations = Destination::all(&config).map_err(config_error)?;
    let slack = SlackClient::new()
        .context("cannot build the HTTP client")
        .map_err(runtime_error)?;
    let host = hostname();
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for (destination, route) in destinations.iter().zip(config.all_routes()) {
        let payload = destination
            .overrides
            .apply(&crate::render::test_message(&destination.name, &host));
        let result = slack.post(&destination.webhook, &payload).await;
        let line = match &result {
            Ok(()) => format!("{} ({}): ok", destination.name, route.key),
            Err(e) => {
                failed += 1;
                format!("{} ({}): FAILED: {e}", destination.name, route.key)
            }
        };
        writeln!(out, "{line}").map_err(runtime_error)?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
        Err(failure) => {
            tracing::error!("{:#}", failure.error());
            failure.exit_code()
        }
    }
}
