//! How often an idle pipeline is read, per (account, region), from the configured budgets.

use approval_watch_core::model::Target;
use approval_watch_core::poll::{IdleRhythm, idle_rhythm};

use super::{Config, DEFAULT_IDLE_BUDGET_SHARE, Limits};

/// The idle rhythm of each (account, region) among `targets`, from `config`'s budgets.
pub fn idle_rhythms(config: &Config, targets: &[Target]) -> Vec<IdleRhythm> {
    let mut counts: std::collections::BTreeMap<(&str, &str), usize> =
        std::collections::BTreeMap::new();
    for t in targets {
        *counts.entry((&t.account, &t.region)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((account, region), pipelines)| {
            let (rate, share) = config.account(account).map_or(
                (
                    Limits::default().requests_per_second,
                    DEFAULT_IDLE_BUDGET_SHARE,
                ),
                |a| (a.limits.requests_per_second, a.idle_budget_share),
            );
            let every = idle_rhythm(
                pipelines,
                rate,
                share,
                config.poll_interval,
                config.idle_poll_interval,
            );
            IdleRhythm {
                account: account.to_owned(),
                region: region.to_owned(),
                pipelines,
                idle_read_every_s: every.as_secs(),
            }
        })
        .collect()
}
