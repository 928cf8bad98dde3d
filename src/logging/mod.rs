//! Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`), in one of three
//! formats: `text` for a terminal, `journal` for systemd's journal, `json` for log shippers.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub(crate) mod escape;
use escape::EscapedFields;

/// HTTP client internals log request URLs at debug and trace; one of those URLs is the
/// Slack webhook, a secret, and the WebSocket library logs its request (the Socket Mode URL
/// with its ticket) at trace. They are capped at `info` whatever `RUST_LOG` asks for.
const SECRET_SAFE_CAPS: [&str; 6] = [
    "reqwest=info",
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "tungstenite=info",
    "tokio_tungstenite=info",
];

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `journal` when stderr is connected to the journal (`JOURNAL_STREAM` names it), else `text`.
    #[default]
    Auto,
    /// Timestamp, level, message and `key=value` fields; coloured on a terminal.
    Text,
    /// One line per event: a syslog priority prefix (`<6>`) that journald turns into the
    /// entry's priority, then the message and `pipeline=… stage=… action=…` fields; no
    /// timestamp (the journal has its own), no colour.
    Journal,
    /// One JSON object per line: `timestamp`, `level`, `message` and the fields at the top level.
    Json,
}

impl LogFormat {
    /// `Auto` decided for this process.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if stderr_is_journal() => Self::Journal,
            Self::Auto => Self::Text,
            other => other,
        }
    }
}

/// With the format chosen by the environment (`auto`).
pub fn init() {
    init_with(LogFormat::Auto);
}

pub fn init_with(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for cap in SECRET_SAFE_CAPS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(filter);
    // A second init (tests, the demo) keeps the first subscriber.
    let _ = match format.resolve() {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Journal => builder
            .with_ansi(false)
            .fmt_fields(EscapedFields::default())
            .event_format(JournalFormat::default())
            .try_init(),
        LogFormat::Text | LogFormat::Auto => builder
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(EscapedFields::default())
            .try_init(),
    };
}

/// Whether stderr is the stream `JOURNAL_STREAM` names (`<device>:<inode>`). Checking the
/// inode, not only the variable, keeps a command started from a service with its output
/// redirected (a pipe, a file) in the plain text format, as `sd_journal_stream_fd(3)` advises.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream
        .to_str()
        .and_then(|s| s.split_once(':'))
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
    else {
        return false;
    };
    stderr_identity().is_some_and(|id| id == (dev, ino))
}

/// Device and inode of stderr.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// `<priority>message key=value …`: the default formatter without time, level or colour,
/// behind the syslog priority prefix journald understands (`SyslogLevelPrefix=`, on by default).
struct JournalFormat {
    inner: Format<tracing_subscriber::fmt::format::Full, ()>,
}

impl Default for JournalFormat {
    fn default() -> Self {
        Self {
            inner: tracing_subscriber::fmt::format()
                .without_time()
                .with_level(false)
                .with_target(false)
                .with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        // journald splits a stream on newlines; a multi-line message (an SQL statement, an
        // error chain) stays one entry with its priority.
        let line = line.trim_end_matches('\n').replace('\n', "\\n");
        writeln!(
            writer,
            "<{}>{line}",
            syslog_priority(event.metadata().level())
        )
    }
}

/// syslog(3) priorities: err 3, warning 4, info 6, debug 7.
fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::TRACE), 7);
    }

    #[test]
    fn explicit_formats_are_kept() {
        assert_eq!(LogFormat::Json.resolve(), LogFormat::Json);
        assert_eq!(LogFormat::Journal.resolve(), LogFormat::Journal);
        assert_eq!(LogFormat::Text.resolve(), LogFormat::Text);
    }
}
