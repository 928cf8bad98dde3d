//! SIGHUP: re-read the config and swap it into the running watcher, or keep the old one.

use std::path::Path;

use crate::approve;
use crate::clock::Clock;
use crate::daemon::cycle::Watcher;
use crate::daemon::heartbeat::Heartbeat;
use crate::daemon::startup::{self, Assembly};
use crate::metrics;

/// What a reload applied to the watcher leaves for the loop to start.
pub(super) struct Applied {
    pub heartbeat: Option<Heartbeat>,
    pub approvals: Option<approve::Setup>,
}

/// A new config, its AWS clients and its Slack routes, swapped in whole; the database stays
/// open. Any problem keeps the current config (`None`).
pub(super) async fn reload(watcher: &mut Watcher, path: &Path, clock: Clock) -> Option<Applied> {
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
    let Assembly {
        mut parts,
        heartbeat,
        mut approvals,
    } = match startup::reload(path, clock).await {
        Ok(assembly) => assembly,
        Err(e) => {
            tracing::error!(
                config = %path.display(),
                "config reload failed; keeping the current config: {e:#}"
            );
            metrics::global().reload(false);
            return None;
        }
    };
    let (old, config) = (watcher.config(), &parts.config);
    if config.state_path != old.state_path {
        tracing::warn!(
            "state_path changed; the daemon keeps {} open until it restarts",
            old.state_path.display()
        );
    }
    if config.metrics != old.metrics {
        tracing::warn!("metrics.listen changed; it takes effect when the daemon restarts");
    }
    let names = |c: &crate::config::Config| -> Vec<String> {
        c.pipelines.iter().map(|p| p.name.clone()).collect()
    };
    let (before, after) = (names(old), names(config));
    let added: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
    let removed: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    tracing::info!(
        pipelines = after.len(),
        added = ?added,
        removed = ?removed,
        poll_interval = %humantime::format_duration(config.poll_interval),
        "config reloaded; approvals of removed pipelines stay as they are"
    );
    // One writer per Slack message across configs: a click of the old service may still be
    // editing an alert that the new deliverer resolves.
    if let Some(old) = watcher.slack_api().cloned() {
        parts.deliverer.share_edits_of(&old);
        if let Some(setup) = approvals.as_mut() {
            setup.slack.share_edits_of(&old);
        }
    }
    watcher.reconfigure(parts);
    metrics::global().reload(true);
    Some(Applied {
        heartbeat,
        approvals,
    })
}
