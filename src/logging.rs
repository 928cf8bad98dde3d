//! Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// HTTP client internals log request URLs at debug and trace; one of those URLs is the
/// Slack webhook, a secret. They are capped at `info` whatever `RUST_LOG` asks for.
const SECRET_SAFE_CAPS: [&str; 4] = ["reqwest=info", "hyper=info", "hyper_util=info", "h2=info"];

pub fn init() {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for cap in SECRET_SAFE_CAPS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_env_filter(filter)
        .init();
}
