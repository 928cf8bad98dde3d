//! `once --dry-run`'s output: one JSON line per message the cycle would post. The cycle itself
//! is the real one (see `startup::Mode::DryRun`), so what is printed is what `once` would send.

use serde::Serialize;

use crate::daemon::deliver::Captured;

/// One line of output (the keys are documented in the README).
#[derive(Serialize)]
struct Line<'a> {
    kind: &'a str,
    /// "queued" for what the outbox already held, "new" for what this cycle added.
    source: &'a str,
    /// The route it takes.
    destination: &'a str,
    pipeline: &'a str,
    stage: &'a str,
    action: &'a str,
    region: &'a str,
    account: &'a str,
    /// The body that would be posted, route overrides included.
    payload: &'a serde_json::Value,
    /// App mode: `chat.postMessage` or `chat.update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    /// App mode: the `ts` of the message replied to or updated, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<&'a str>,
}

/// The JSON line for a captured message; `queued` when the outbox held it before the cycle.
pub fn line(captured: &Captured, queued: bool) -> String {
    let key = &captured.message.key;
    let line = Line {
        kind: captured.message.kind.as_str(),
        source: if queued { "queued" } else { "new" },
        destination: &captured.route,
        pipeline: &key.pipeline,
        stage: &key.stage,
        action: &key.action,
        region: &key.region,
        account: &key.account,
        payload: &captured.payload,
        method: captured.method,
        ts: captured.ts.as_deref(),
    };
    // Plain strings and a JSON value always serialize.
    serde_json::to_string(&line).unwrap_or_default()
}
