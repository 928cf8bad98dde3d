//! Counters and gauges for the Prometheus endpoint (`[metrics] listen`), and the tiny HTTP
//! server that serves them: `GET /metrics` (text exposition format 0.0.4) and `GET /healthz`.
//!
//! Modules record with one-line calls on the process-wide registry, e.g.
//! `crate::metrics::slack_failure(SlackFailure::RateLimited)`; label values known in advance
//! are types (`labels`), so a misspelt one does not compile. Recording costs a mutex and a
//! map lookup, and is done whether or not the endpoint is on.
//!
//! - `labels`: the typed label values ([`SocketState`], [`DecisionLabel`], …).
//! - `registry`: the numbers ([`Metrics`]) and `/healthz`'s lock-free answer.
//! - `families`: the table of exported families: names, types, help texts, samples.
//! - `exposition`: the text format, one loop over such a table.
//! - `server`, `slots`: the HTTP endpoint.

use std::sync::LazyLock;

use approval_watch_core::model::MessageKind;
use approval_watch_core::verdict::ClickResult;

mod exposition;
mod families;
mod labels;
mod registry;
mod server;
mod slots;

pub use labels::{DecisionLabel, ReconnectReason, SlackFailure, SocketState};
pub use registry::{CycleOutcome, Metrics, Waiting};
pub use server::start;

/// Where every module records.
pub fn global() -> &'static Metrics {
    static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &GLOBAL
}

/// A message of `kind` was delivered to Slack.
pub fn message_sent(kind: MessageKind) {
    global().message_sent(kind);
}

/// Slack did not take a message: rate limited (429), temporary (5xx, timeout, connection) or
/// permanent (any other 4xx; not retried).
pub fn slack_failure(kind: SlackFailure) {
    global().slack_failure(kind);
}

/// The Web API refused a message for good with `error`, one a person must act on
/// (`invalid_auth`, `not_in_channel`, …): a permanent failure labelled with it.
pub fn slack_error(error: &str) {
    global().slack_error(error);
}

/// Each app-mode route, with the Slack error its delivery is paused for (`None`: not paused),
/// replacing the previous set. A pause also makes `/healthz` unhealthy: nothing goes out on
/// that route until a person fixes it.
pub fn slack_routes_paused(routes: std::collections::BTreeMap<String, Option<String>>) {
    global().slack_routes_paused(routes);
}

/// The Socket Mode connection is now in `state`; [`SocketState::Off`] takes it out of
/// `/metrics` and `/healthz`, for when approvals are turned off.
pub fn socket_state(state: SocketState) {
    global().socket_state(state);
}

/// A new Socket Mode connection replaced the last one.
pub fn socket_reconnect(reason: ReconnectReason) {
    global().socket_reconnect(reason);
}

/// A click from Slack was answered with `result` (counted as its [`DecisionLabel`]).
pub fn slack_decision(result: &ClickResult) {
    global().slack_decision(result.into());
}

/// One AWS API call was made (`GetPipelineState`, …), successful or not.
/// How many pipelines cannot be watched correctly now.
pub fn pipelines_unwatchable(pipelines: usize) {
    global().set_unwatchable(pipelines);
}

pub fn aws_call(operation: &str) {
    global().aws_call(operation);
}

/// An AWS call failed with `code` (`ThrottlingException`, `Timeout`, …).
pub fn aws_error(operation: &str, code: &str) {
    global().aws_error(operation, code);
}
