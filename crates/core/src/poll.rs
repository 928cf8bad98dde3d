//! Which pipelines to read this cycle, and which pipelines discovery found. Pure: the
//! watcher feeds in what it read and listed, with `now`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::model::Target;

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    last_read: Option<Timestamp>,
    /// A run was heading for an approval, or one was waiting, at the last read.
    active: bool,
}

/// Adaptive polling: a pipeline with an approval waiting or a run heading for one is read
/// every cycle; an idle one every `idle_interval`, since a run takes minutes to reach its
/// approval. A pipeline never read, or whose read failed, is read at once.
///
/// Idle reads are spread over the cycles rather than all coming due together (they would,
/// after a start that read everything at once): a cycle reads at most the idle pipelines'
/// fair share for the time since the last cycle, the longest-unread first. A cycle that
/// reads thousands of idle pipelines would hold back the reads that detect approvals.
#[derive(Debug)]
pub struct Schedule {
    /// The slowest rhythm (`idle_poll_interval`), for budgets without one set.
    idle_interval: Duration,
    /// The effective idle rhythm per (account, region) ([`idle_rhythm`]).
    rhythms: HashMap<(String, String), Duration>,
    seen: HashMap<Target, Seen>,
    /// When `due` was last asked: the share of idle reads is for the time since.
    last_cycle: Option<Timestamp>,
    /// Reads skipped because a pipeline was idle, since start.
    pub reads_saved: u64,
}

/// What a cycle reads, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// May have an approval waiting (one was waiting, a run was heading for one, or never
    /// read). A cycle handles these first, so idle reads never delay an alert.
    pub urgent: Vec<Target>,
    /// Idle and due their turn, longest-unread first.
    pub idle: Vec<Target>,
}

impl Due {
    /// How many reads the cycle makes.
    pub fn reads(&self) -> usize {
        self.urgent.len() + self.idle.len()
    }

    /// Both lists in reading order.
    #[cfg(test)]
    fn all(self) -> Vec<Target> {
        let mut all = self.urgent;
        all.extend(self.idle);
        all
    }
}

/// One budget's idle pipelines due a read (with their last read), and how many are idle.
type IdleCandidates<'a> = (Vec<(Timestamp, &'a Target)>, usize);

/// A read this early before its interval is over still counts as due, so a pipeline on a
/// 2-minute rhythm with 30-second cycles is read at the 4th cycle, not the 5th.
const SLACK: Duration = Duration::from_secs(1);

impl Schedule {
    pub fn new(idle_interval: Duration) -> Self {
        Self {
            idle_interval,
            rhythms: HashMap::new(),
            seen: HashMap::new(),
            last_cycle: None,
            reads_saved: 0,
        }
    }

    /// The targets due a read at `now`, in the order to read them: pipelines with an
    /// approval waiting (`waiting`) or a run heading for one, then those never read, then
    /// the idle ones due, longest-unread first.
    pub fn due(&mut self, targets: &[Target], waiting: &HashSet<Target>, now: Timestamp) -> Due {
        let mut due = Vec::with_capacity(targets.len());
        let mut first = Vec::new();
        // Per (account, region): its idle pipelines due, and how many are idle.
        let mut idle_by_budget: HashMap<(&str, &str), IdleCandidates> = HashMap::new();
        for t in targets {
            let seen = self.seen.get(t).copied().unwrap_or_default();
            match seen.last_read {
                None => first.push(t),
                Some(_) if seen.active || waiting.contains(t) => due.push(t.clone()),
                Some(last) => {
                    let interval = self.rhythm_of(&t.account, &t.region);
                    let idle = SignedDuration::try_from(interval.saturating_sub(SLACK))
                        .unwrap_or(SignedDuration::MAX);
                    let entry = idle_by_budget
                        .entry((t.account.as_str(), t.region.as_str()))
                        .or_default();
                    entry.1 += 1;
                    if now.duration_since(last) >= idle {
                        entry.0.push((last, t));
                    }
                }
            }
        }
        let since = self
            .last_cycle
            .map_or(SignedDuration::MAX, |at| now.duration_since(at));
        self.last_cycle = Some(now);
        let mut idle_due = Vec::new();
        for ((account, region), (mut candidates, idle_count)) in idle_by_budget {
            let share = idle_share(idle_count, since, self.rhythm_of(account, region));
            candidates.sort_by_key(|(last, _)| *last);
            idle_due.extend(candidates.into_iter().take(share));
        }
        idle_due.sort_by_key(|(last, _)| *last);
        due.extend(first.into_iter().cloned());
        let idle: Vec<Target> = idle_due.into_iter().map(|(_, t)| t.clone()).collect();
        self.reads_saved += (targets.len() - due.len() - idle.len()) as u64;
        Due { urgent: due, idle }
    }

    /// Sets the idle rhythm of one (account, region); returns whether it changed.
    pub fn set_rhythm(&mut self, account: &str, region: &str, every: Duration) -> bool {
        let key = (account.to_owned(), region.to_owned());
        self.rhythms.insert(key, every) != Some(every)
    }

    /// How often an idle pipeline of this (account, region) is read.
    pub fn rhythm_of(&self, account: &str, region: &str) -> Duration {
        self.rhythms
            .get(&(account.to_owned(), region.to_owned()))
            .copied()
            .unwrap_or(self.idle_interval)
    }

    /// Records a successful read. A failed read records nothing: the pipeline keeps the
    /// rhythm of its last good read (a failing idle pipeline is not hammered every cycle).
    pub fn read(&mut self, target: &Target, active: bool, now: Timestamp) {
        self.seen.insert(
            target.clone(),
            Seen {
                last_read: Some(now),
                active,
            },
        );
    }

    /// Drops pipelines no longer watched.
    pub fn retain(&mut self, targets: &[Target]) {
        let keep: HashSet<&Target> = targets.iter().collect();
        self.seen.retain(|t, _| keep.contains(t));
    }

    pub fn last_read_at(&self, target: &Target) -> Option<Timestamp> {
        self.seen.get(target).and_then(|s| s.last_read)
    }

    /// How many of `targets` were active at their last read.
    pub fn active_count(&self, targets: &[Target]) -> usize {
        targets
            .iter()
            .filter(|t| self.seen.get(*t).is_some_and(|s| s.active))
            .count()
    }
}

/// How often the idle pipelines of one (account, region) are read: every `poll` while reading
/// all `pipelines` that often fits in `share` of `requests_per_second`; else stretched just
/// enough to fit (whole seconds, rounded up), but never slower than `slowest`
/// (`idle_poll_interval`).
pub fn idle_rhythm(
    pipelines: usize,
    requests_per_second: f64,
    share: f64,
    poll: Duration,
    slowest: Duration,
) -> Duration {
    let per_second = requests_per_second * share;
    if !(per_second.is_finite() && per_second > 0.0) {
        return slowest.max(poll);
    }
    let fits = (pipelines as f64 / per_second).ceil();
    let fits = if fits < slowest.as_secs_f64() {
        Duration::from_secs(fits as u64)
    } else {
        slowest
    };
    fits.clamp(poll, slowest.max(poll))
}

/// One (account, region)'s idle rhythm, as the start log, `check-config`, `status` and the
/// metrics show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IdleRhythm {
    pub account: String,
    pub region: String,
    pub pipelines: usize,
    /// Seconds between two reads of an idle pipeline.
    pub idle_read_every_s: u64,
}

/// A cycle may always make this many idle reads: a handful of reads in parallel costs a
/// cycle nothing, so small fleets keep their exact rhythm and only large ones are spread.
const MIN_IDLE_SHARE: usize = 8;

/// How many idle reads a cycle may make: the idle pipelines' reads per idle interval, for
/// the time since the last cycle (rounded up, so none waits forever), or
/// [`MIN_IDLE_SHARE`]. The first cycle after a long pause may read them all.
fn idle_share(idle_count: usize, since: SignedDuration, idle_interval: Duration) -> usize {
    let interval = idle_interval.as_secs_f64();
    if interval <= 0.0 {
        return idle_count;
    }
    let fraction = (since.as_secs_f64() / interval).clamp(0.0, 1.0);
    let share = (idle_count as f64 * fraction).ceil() as usize;
    share.max(MIN_IDLE_SHARE).min(idle_count)
}

/// Pipelines found by `[[discover]]`, per scope (entry, account, region). A pipeline missing
/// from two successful listings in a row is gone (one listing could be eventually consistent).
#[derive(Debug, Default)]
pub struct Discovered {
    /// Per scope: pipeline → consecutive listings it was missing from.
    scopes: BTreeMap<(usize, String, String), BTreeMap<String, u32>>,
}

/// What one listing changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListingChange {
    pub added: Vec<String>,
    /// Missing twice: handle as deleted.
    pub gone: Vec<String>,
}

impl Discovered {
    /// Applies one successful listing of a scope (already filtered by the entry's globs).
    pub fn listed(&mut self, scope: (usize, String, String), names: &[String]) -> ListingChange {
        let known = self.scopes.entry(scope).or_default();
        let listed: BTreeSet<&String> = names.iter().collect();
        let mut change = ListingChange::default();
        for name in names {
            if known.insert(name.clone(), 0).is_none() {
                change.added.push(name.clone());
            }
        }
        known.retain(|name, missing| {
            if listed.contains(name) {
                return true;
            }
            *missing += 1;
            if *missing >= 2 {
                change.gone.push(name.clone());
                return false;
            }
            true
        });
        change
    }

    /// Every discovered pipeline as a target.
    pub fn targets(&self) -> Vec<Target> {
        self.scopes
            .iter()
            .flat_map(|((_, account, region), names)| {
                names.keys().map(move |name| Target {
                    account: account.clone(),
                    region: region.clone(),
                    pipeline: name.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Target {
        Target {
            account: "default".into(),
            region: "us-east-1".into(),
            pipeline: name.into(),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_764_000_000 + secs).unwrap()
    }

    #[test]
    fn the_idle_rhythm_is_poll_interval_while_the_fleet_fits_the_share_else_just_enough() {
        let poll = Duration::from_secs(30);
        let slowest = Duration::from_secs(120);
        let rhythm = |n, rate, share| idle_rhythm(n, rate, share, poll, slowest).as_secs();
        // 10/s × 0.2 = 2 reads/s: 60 pipelines every 30 s fit exactly; 61 do not.
        assert_eq!(rhythm(20, 10.0, 0.2), 30);
        assert_eq!(rhythm(60, 10.0, 0.2), 30);
        assert_eq!(rhythm(61, 10.0, 0.2), 31);
        assert_eq!(rhythm(150, 10.0, 0.2), 75);
        // Never slower than idle_poll_interval, however large the fleet.
        assert_eq!(rhythm(10_000, 10.0, 0.2), 120);
        assert_eq!(rhythm(0, 10.0, 0.2), 30);
    }

    #[test]
    fn each_budget_keeps_its_own_idle_rhythm() {
        let mut s = Schedule::new(Duration::from_secs(120));
        let other = Target {
            account: "prod".into(),
            region: "eu-west-1".into(),
            pipeline: "b".into(),
        };
        let a = t("a");
        assert!(s.set_rhythm(&a.account, &a.region, Duration::from_secs(30)));
        assert!(!s.set_rhythm(&a.account, &a.region, Duration::from_secs(30)));
        let targets = [a.clone(), other.clone()];
        let none = HashSet::new();
        let mut read = Vec::new();
        for cycle in 0..5 {
            let now = at(cycle * 30);
            let due = s.due(&targets, &none, now);
            for target in due.urgent.iter().chain(&due.idle) {
                s.read(target, false, now);
                read.push((cycle, target.pipeline.clone()));
            }
        }
        let of = |p: &str| read.iter().filter(|(_, q)| q == p).count();
        assert_eq!(of("a"), 5, "{read:?}");
        assert_eq!(of("b"), 2, "{read:?}");
    }

    #[test]
    fn idle_pipelines_are_read_every_idle_interval_active_ones_every_cycle() {
        let mut s = Schedule::new(Duration::from_secs(120));
        let targets = vec![t("idle"), t("busy"), t("waiting")];
        let waiting = HashSet::from([t("waiting")]);
        assert_eq!(
            s.due(&targets, &waiting, at(0)).reads(),
            3,
            "never read → all due"
        );
        s.read(&t("idle"), false, at(0));
        s.read(&t("busy"), true, at(0));
        s.read(&t("waiting"), false, at(0));
        let mut reads = HashMap::<String, u32>::new();
        for cycle in 1..=8 {
            let now = at(cycle * 30);
            for target in s.due(&targets, &waiting, now).all() {
                *reads.entry(target.pipeline.clone()).or_default() += 1;
                s.read(&target, target.pipeline == "busy", now);
            }
        }
        // 8 cycles of 30 s = 4 minutes: idle read at 120 s and 240 s.
        assert_eq!(reads["busy"], 8);
        assert_eq!(reads["waiting"], 8);
        assert_eq!(reads["idle"], 2);
        assert_eq!(s.reads_saved, 6);
        assert_eq!(s.active_count(&targets), 1);
    }

    #[test]
    fn idle_reads_that_come_due_together_are_spread_over_the_interval() {
        let mut s = Schedule::new(Duration::from_secs(120));
        let targets: Vec<Target> = (0..1000).map(|i| t(&format!("p{i:04}"))).collect();
        let none = HashSet::new();
        // The first cycle reads everything at once.
        for target in s.due(&targets, &none, at(0)).all() {
            s.read(&target, false, at(0));
        }
        let mut last_read: HashMap<Target, i64> = targets.iter().map(|t| (t.clone(), 0)).collect();
        let mut per_cycle = Vec::new();
        for cycle in 1..=40 {
            let now = cycle * 30;
            let due = s.due(&targets, &none, at(now)).all();
            per_cycle.push(due.len());
            for target in due {
                let gap = now - last_read[&target];
                // Late by at most the three cycles the first round needs to spread.
                assert!(
                    (120..=210).contains(&gap),
                    "{} read after {gap} s",
                    target.pipeline
                );
                last_read.insert(target.clone(), now);
                s.read(&target, false, at(now));
            }
        }
        // A quarter per 30-second cycle of a 2-minute rhythm, never all at once.
        assert!(per_cycle.iter().all(|n| *n <= 250), "{per_cycle:?}");
        assert!(per_cycle[4..].iter().all(|n| *n == 250), "{per_cycle:?}");
        // Every pipeline kept being read.
        assert!(last_read.values().all(|at| *at >= 40 * 30 - 210));
    }

    #[test]
    fn waiting_and_active_pipelines_are_read_first_then_new_then_the_longest_unread() {
        let mut s = Schedule::new(Duration::from_secs(60));
        let targets = vec![
            t("idle-new"),
            t("idle-old"),
            t("fresh"),
            t("busy"),
            t("waiting"),
        ];
        s.read(&t("idle-new"), false, at(10));
        s.read(&t("idle-old"), false, at(0));
        s.read(&t("busy"), true, at(10));
        s.read(&t("waiting"), false, at(10));
        let waiting = HashSet::from([t("waiting")]);
        s.due(&targets, &waiting, at(60));
        let due = s.due(&targets, &waiting, at(120));
        let names = |ts: &[Target]| ts.iter().map(|t| t.pipeline.clone()).collect::<Vec<_>>();
        assert_eq!(names(&due.urgent), ["busy", "waiting", "fresh"]);
        assert_eq!(names(&due.idle), ["idle-old", "idle-new"]);
    }

    #[test]
    fn failed_reads_keep_the_last_rhythm_and_forgotten_pipelines_start_over() {
        let mut s = Schedule::new(Duration::from_secs(120));
        let targets = vec![t("active"), t("idle")];
        s.read(&t("active"), true, at(0));
        s.read(&t("idle"), false, at(0));
        // Reads fail from here on (nothing recorded): the active one is still tried each cycle.
        for cycle in 1..=3 {
            let due = s.due(&targets, &HashSet::new(), at(cycle * 30)).all();
            assert_eq!(due, vec![t("active")], "cycle {cycle}");
        }
        assert_eq!(s.due(&targets, &HashSet::new(), at(120)).reads(), 2);
        s.retain(&[t("active")]);
        s.read(&t("active"), false, at(120));
        assert_eq!(
            s.due(&targets, &HashSet::new(), at(150)).all(),
            vec![t("idle")]
        );
    }

    #[test]
    fn discovery_adds_at_once_and_drops_after_two_missing_listings() {
        let mut d = Discovered::default();
        let scope = (0, "default".to_owned(), "us-east-1".to_owned());
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = d.listed(scope.clone(), &names(&["api", "web-app"]));
        assert_eq!(c.added, names(&["api", "web-app"]));
        assert_eq!(d.targets().len(), 2);
        let c = d.listed(scope.clone(), &names(&["web-app"]));
        assert_eq!(
            c,
            ListingChange::default(),
            "one missing listing changes nothing"
        );
        assert_eq!(d.targets().len(), 2);
        let c = d.listed(scope.clone(), &names(&["web-app", "new"]));
        assert_eq!(c.added, names(&["new"]));
        assert_eq!(c.gone, names(&["api"]));
        assert_eq!(
            d.targets()
                .iter()
                .map(|t| t.pipeline.as_str())
                .collect::<Vec<_>>(),
            ["new", "web-app"]
        );
        // Back again: a new pipeline of the same name.
        let c = d.listed(scope, &names(&["web-app", "new", "api"]));
        assert_eq!(c.added, names(&["api"]));
    }
}
