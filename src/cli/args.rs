//! The command line as clap parses it: commands, flags and their help. A contract users'
//! scripts rely on; `docs` builds the man page and completions from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;
use crate::logging::LogFormat;

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
    /// List every click on Approve / Reject in Slack, oldest first, from the state database
    /// (read-only: works while the daemon runs).
    Audit {
        /// Machine-readable output: one JSON array.
        #[arg(long)]
        json: bool,
        /// Only clicks this recent, such as 30m, 12h or 7d (default: every row kept).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// Send a test message to every configured Slack destination and report each result:
    /// 0 all delivered, 1 any failed, 2 config error.
    TestSlack,
    /// Ping the [heartbeat] URL once (with --fail, the fail_url) and report the answer:
    /// 0 the monitor took it, 1 it failed, 2 config error or no [heartbeat].
    TestHeartbeat {
        /// Ping fail_url instead: the monitor will report the watcher as failing.
        #[arg(long)]
        fail: bool,
    },
    /// Print the completion script for SHELL (needs no config).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page in roff (needs no config; packaging installs it).
    #[command(hide = true)]
    Man,
}

/// `--since`: a duration as the config writes them (`30m`, `12h`, `7d`).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected a duration such as 30m, 12h or 7d"))
}
