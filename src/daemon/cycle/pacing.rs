//! How the fleet is paced: each (account, region)'s idle rhythm (logged when it changes,
//! exported as a metric), and the warning when a budget cannot read its pipelines within
//! `poll_interval`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::config::Config;
use approval_watch_core::model::Target;
use approval_watch_core::poll::Schedule;

/// Sets each (account, region)'s idle rhythm from its fleet and budget, logging it when it
/// changes and `narrate` (so the start log shows it) and exporting it as a metric.
pub fn update_rhythms(config: &Config, schedule: &mut Schedule, targets: &[Target], narrate: bool) {
    let rhythms = crate::config::idle_rhythms(config, targets);
    let mut gauge = BTreeMap::new();
    for r in &rhythms {
        let every = Duration::from_secs(r.idle_read_every_s);
        if schedule.set_rhythm(&r.account, &r.region, every) && narrate {
            tracing::info!(
                account = %r.account,
                region = %r.region,
                pipelines = r.pipelines,
                idle_read_every_s = r.idle_read_every_s,
                "idle pipelines are read every {}",
                humantime::format_duration(every)
            );
        }
        gauge.insert((r.account.clone(), r.region.clone()), r.idle_read_every_s);
    }
    crate::metrics::global().set_idle_rhythms(gauge);
}

/// A budget that cannot fit a cycle into `poll_interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct Overrun {
    pub account: String,
    pub region: String,
    pub pipelines: usize,
    /// Seconds a cycle's reads take at the budget's rate.
    pub needed: f64,
    pub rate: f64,
}

/// Budgets that cannot fit a cycle into `poll_interval`, warned about once until they fit.
#[derive(Debug, Default)]
pub struct BudgetFit {
    over: HashSet<(String, String)>,
}

impl BudgetFit {
    /// Warns (once, until it fits again) when a budget cannot read its pipelines within
    /// `poll_interval`, saying how long a cycle takes and what interval would fit.
    /// `rate_of` is a budget's requests per second (`None`: no such budget).
    pub fn check(
        &mut self,
        poll_interval: Duration,
        schedule: &Schedule,
        targets: &[Target],
        rate_of: impl Fn(&str, &str) -> Option<f64>,
    ) {
        let poll = poll_interval.as_secs_f64();
        for o in self.overruns(poll_interval, schedule, targets, rate_of) {
            let (needed, rate) = (o.needed, o.rate);
            tracing::warn!(
                account = %o.account,
                region = %o.region,
                pipelines = o.pipelines,
                cycle_s = format!("{needed:.0}"),
                "a cycle takes about {needed:.0} s at {rate} requests/s, longer than poll_interval ({poll:.0} s); set poll_interval to at least {:.0}s or raise max_requests_per_second",
                needed.ceil()
            );
        }
    }

    /// The budgets newly over (the ones to warn about); forgets those that fit again.
    fn overruns(
        &mut self,
        poll_interval: Duration,
        schedule: &Schedule,
        targets: &[Target],
        rate_of: impl Fn(&str, &str) -> Option<f64>,
    ) -> Vec<Overrun> {
        let poll = poll_interval.as_secs_f64();
        let mut per_budget: HashMap<(String, String), Vec<Target>> = HashMap::new();
        for t in targets {
            per_budget
                .entry((t.account.clone(), t.region.clone()))
                .or_default()
                .push(t.clone());
        }
        let mut overruns = Vec::new();
        for (key, ts) in per_budget {
            let Some(rate) = rate_of(&key.0, &key.1) else {
                continue;
            };
            let idle = schedule.rhythm_of(&key.0, &key.1).as_secs_f64();
            let active = schedule.active_count(&ts) as f64;
            let idle_count = ts.len() as f64 - active;
            // Reads per poll interval: every active pipeline, and idle ones in turn.
            let reads = active + idle_count * (poll / idle);
            let needed = reads / rate;
            if needed > poll {
                if self.over.insert(key.clone()) {
                    overruns.push(Overrun {
                        account: key.0,
                        region: key.1,
                        pipelines: ts.len(),
                        needed,
                        rate,
                    });
                }
            } else {
                self.over.remove(&key);
            }
        }
        overruns.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        overruns
    }

    /// After a reload: warn afresh.
    pub fn clear(&mut self) {
        self.over.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cycle::fixtures::at;

    fn fleet(region: &str, n: usize) -> Vec<Target> {
        (0..n)
            .map(|i| Target {
                account: "default".into(),
                region: region.into(),
                pipeline: format!("p{i}"),
            })
            .collect()
    }

    const POLL: Duration = Duration::from_secs(30);

    /// 100 pipelines read every cycle: at 1 request/s a cycle takes 100 s.
    fn all_active(targets: &[Target]) -> Schedule {
        let mut schedule = Schedule::new(Duration::from_secs(600));
        for t in targets {
            schedule.read(t, true, at(0));
        }
        schedule
    }

    #[test]
    fn a_budget_too_slow_for_poll_interval_is_warned_about_once_until_it_fits() {
        let targets = fleet("eu-west-1", 100);
        let schedule = all_active(&targets);
        let mut fit = BudgetFit::default();
        let slow = |_: &str, _: &str| Some(1.0);
        let over = fit.overruns(POLL, &schedule, &targets, slow);
        assert_eq!(
            over,
            [Overrun {
                account: "default".into(),
                region: "eu-west-1".into(),
                pipelines: 100,
                needed: 100.0,
                rate: 1.0,
            }]
        );
        assert!(
            fit.overruns(POLL, &schedule, &targets, slow).is_empty(),
            "once"
        );
        // Fits at 10 requests/s (10 s): forgotten, so a new overrun is told again.
        let fast = |_: &str, _: &str| Some(10.0);
        assert!(fit.overruns(POLL, &schedule, &targets, fast).is_empty());
        assert_eq!(fit.overruns(POLL, &schedule, &targets, slow).len(), 1);
        fit.clear();
        assert_eq!(
            fit.overruns(POLL, &schedule, &targets, slow).len(),
            1,
            "after a reload"
        );
    }

    #[test]
    fn idle_pipelines_count_for_their_share_and_unknown_budgets_not_at_all() {
        let targets = fleet("eu-west-1", 100);
        // Never read: idle at the 600 s rhythm, so a 30 s interval reads 1/20 of them (5 s).
        let schedule = Schedule::new(Duration::from_secs(600));
        let mut fit = BudgetFit::default();
        assert!(
            fit.overruns(POLL, &schedule, &targets, |_, _| Some(1.0))
                .is_empty()
        );
        let tiny = fit.overruns(POLL, &schedule, &targets, |_, _| Some(0.1));
        assert_eq!(tiny.len(), 1);
        assert!((tiny[0].needed - 50.0).abs() < 1e-9, "{tiny:?}");
        let mut fit = BudgetFit::default();
        assert!(
            fit.overruns(POLL, &all_active(&targets), &targets, |_, _| None)
                .is_empty()
        );
    }

    #[test]
    fn each_budget_is_judged_on_its_own_pipelines() {
        let mut targets = fleet("eu-west-1", 100);
        targets.extend(fleet("us-east-1", 10));
        let schedule = all_active(&targets);
        let mut fit = BudgetFit::default();
        let over = fit.overruns(POLL, &schedule, &targets, |_, _| Some(2.0));
        let regions: Vec<&str> = over.iter().map(|o| o.region.as_str()).collect();
        assert_eq!(regions, ["eu-west-1"]);
    }

    #[test]
    fn rhythms_are_set_per_budget_from_the_config() {
        let config = crate::daemon::cycle::fixtures::config("", "");
        let targets = fleet("eu-west-1", 3);
        let mut schedule = Schedule::new(config.idle_poll_interval);
        update_rhythms(&config, &mut schedule, &targets, false);
        let expected = crate::config::idle_rhythms(&config, &targets);
        assert_eq!(
            schedule.rhythm_of("default", "eu-west-1"),
            Duration::from_secs(expected[0].idle_read_every_s)
        );
        // Unchanged: not set again.
        assert!(!schedule.set_rhythm(
            "default",
            "eu-west-1",
            Duration::from_secs(expected[0].idle_read_every_s)
        ));
    }
}
