//! `[[discover]]`: every `discover_interval`, each scope (entry, account, region) listed and
//! filtered by its globs. A failed listing changes nothing; a pipeline gone from two
//! listings in a row vanished (see [`Discovered`]).

use futures_util::StreamExt;
use jiff::{SignedDuration, Timestamp};

use crate::aws::{AwsError, CodePipeline, DiscoveryScope};
use crate::config::Config;
use crate::daemon::cycle::reads::MAX_PENDING_READS;
use approval_watch_core::model::Target;
use approval_watch_core::poll::Discovered;

/// The interval when the config's cannot be a `SignedDuration` (never, once validated).
const FALLBACK_INTERVAL: SignedDuration = SignedDuration::from_mins(5);

/// What one round of listings changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// Scopes that could not be listed.
    pub failures: usize,
    /// Pipelines gone from their listing: handle as deleted.
    pub vanished: Vec<Target>,
}

/// The pipelines discovery found, and when it lists next.
#[derive(Debug, Default)]
pub struct Discovery {
    discovered: Discovered,
    next: Option<Timestamp>,
}

impl Discovery {
    /// Every discovered pipeline.
    pub fn targets(&self) -> Vec<Target> {
        self.discovered.targets()
    }

    /// Lists every scope when due (`None` when not). Vanished pipelines are forgotten by
    /// `aws` (their definitions) and returned.
    pub async fn run(
        &mut self,
        config: &Config,
        aws: &CodePipeline,
        now: Timestamp,
    ) -> Option<Listed> {
        if aws.discovery_scopes().is_empty() || !self.due(config, now) {
            return None;
        }
        let listed = self.apply(list_scopes(config, aws).await);
        for t in &listed.vanished {
            aws.forget(t);
        }
        Some(listed)
    }

    /// Whether a listing is due at `now`; if so, the next is set `discover_interval` on.
    fn due(&mut self, config: &Config, now: Timestamp) -> bool {
        if self.next.is_some_and(|next| now < next) {
            return false;
        }
        let interval =
            SignedDuration::try_from(config.discover_interval).unwrap_or(FALLBACK_INTERVAL);
        self.next = now.checked_add(interval).ok();
        true
    }

    /// Takes in one round of listings, logging what changed.
    fn apply(&mut self, listings: Vec<(DiscoveryScope, Result<Vec<String>, AwsError>)>) -> Listed {
        let mut listed = Listed::default();
        for (scope, listing) in listings {
            let selected = match listing {
                Ok(names) => names,
                Err(e) => {
                    listed.failures += 1;
                    tracing::warn!(
                        account = %scope.account,
                        region = %scope.region,
                        code = %e.code,
                        "cannot list pipelines; keeping the ones found before: {}",
                        e.message
                    );
                    continue;
                }
            };
            let change = self.discovered.listed(
                (scope.entry, scope.account.clone(), scope.region.clone()),
                &selected,
            );
            if !change.added.is_empty() {
                tracing::info!(
                    account = %scope.account,
                    region = %scope.region,
                    added = change.added.len(),
                    watching = selected.len(),
                    "discovered pipelines"
                );
            }
            for name in change.gone {
                tracing::info!(pipeline = %name, account = %scope.account, region = %scope.region, "pipeline gone from the listing; handling it as deleted");
                listed.vanished.push(Target {
                    account: scope.account.clone(),
                    region: scope.region.clone(),
                    pipeline: name,
                });
            }
        }
        listed
    }
}

/// One listing of every `[[discover]]` scope, filtered by its globs: each scope's names,
/// or why it could not be listed.
async fn list_scopes(
    config: &Config,
    aws: &CodePipeline,
) -> Vec<(DiscoveryScope, Result<Vec<String>, AwsError>)> {
    futures_util::stream::iter(aws.discovery_scopes().to_vec())
        .map(|scope| async move {
            let listing = aws.list_pipelines(&scope.account, &scope.region).await;
            let selected = listing.map(|names| match config.discover.get(scope.entry) {
                Some(entry) => names.into_iter().filter(|n| entry.selects(n)).collect(),
                None => Vec::new(),
            });
            (scope, selected)
        })
        .buffer_unordered(MAX_PENDING_READS)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cycle::fixtures::{at, config_with};

    fn scope(region: &str) -> DiscoveryScope {
        DiscoveryScope {
            entry: 0,
            account: "default".into(),
            region: region.into(),
        }
    }

    type Listing = (DiscoveryScope, Result<Vec<String>, AwsError>);

    fn names(region: &str, names: &[&str]) -> Listing {
        (
            scope(region),
            Ok(names.iter().map(|n| n.to_string()).collect()),
        )
    }

    fn denied(region: &str) -> Listing {
        let e = AwsError {
            operation: "ListPipelines",
            account: "default".into(),
            region: region.into(),
            pipeline: String::new(),
            code: "AccessDeniedException".into(),
            message: "no".into(),
            status: Some(400),
            request_id: None,
        };
        (scope(region), Err(e))
    }

    fn pipelines(d: &Discovery) -> Vec<String> {
        d.targets().into_iter().map(|t| t.pipeline).collect()
    }

    #[test]
    fn listings_add_pipelines_and_two_misses_make_one_vanish() {
        let mut d = Discovery::default();
        let first = d.apply(vec![names("eu-west-1", &["a", "b"])]);
        assert_eq!(first, Listed::default());
        assert_eq!(pipelines(&d), ["a", "b"]);
        let once = d.apply(vec![names("eu-west-1", &["a"])]);
        assert!(
            once.vanished.is_empty(),
            "one listing could be eventually consistent"
        );
        let twice = d.apply(vec![names("eu-west-1", &["a"])]);
        assert_eq!(
            twice.vanished,
            [Target {
                account: "default".into(),
                region: "eu-west-1".into(),
                pipeline: "b".into(),
            }]
        );
        assert_eq!(pipelines(&d), ["a"]);
    }

    #[test]
    fn a_failed_listing_is_counted_and_changes_nothing() {
        let mut d = Discovery::default();
        d.apply(vec![names("us-east-1", &["a"])]);
        let listed = d.apply(vec![denied("us-east-1"), names("eu-west-1", &["b"])]);
        assert_eq!(listed.failures, 1);
        assert!(listed.vanished.is_empty());
        let mut found = pipelines(&d);
        found.sort();
        assert_eq!(found, ["a", "b"]);
    }

    #[test]
    fn listing_is_due_once_per_discover_interval() {
        let config = config_with("discover_interval = \"10m\"", "", "");
        let mut d = Discovery::default();
        assert!(d.due(&config, at(0)), "at once");
        assert!(!d.due(&config, at(9)));
        assert!(d.due(&config, at(10)));
        assert!(!d.due(&config, at(19)));
    }
}
