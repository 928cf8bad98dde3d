//! Which pipelines cannot be read, since when, and which of them are deleted. Pure: the
//! watcher reports each read (or its error code) with `now`, and asks which pipelines to
//! resolve as deleted.
//!
//! A pipeline is deleted when CodePipeline has answered "not found" for [`DELETED_AFTER`]
//! without a successful read in between, or when discovery saw it vanish from the listing.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use crate::model::Target;

/// A pipeline answering "not found" this long is deleted: a single answer could be an
/// eventually-consistent blip or a typo being fixed, and a false resolution is worse than a
/// late one.
pub const DELETED_AFTER: SignedDuration = SignedDuration::from_mins(15);

/// CodePipeline's error code for a pipeline that does not exist.
pub const NOT_FOUND: &str = "PipelineNotFoundException";

/// A lasting read failure: its error code and since when it has been answered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failing {
    code: String,
    since: Timestamp,
    /// The failure is the pipeline's definition (an unknown execution mode, `GetPipeline`
    /// failing): it cannot be watched correctly, which is said apart from a failed read.
    unwatchable: bool,
}

/// What a failed read was, compared with the pipeline's previous read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The first failure, or a different error than the last one: worth a warning.
    New,
    /// The same error as the last read: already told.
    Lasting,
}

/// The read-failure and deletion bookkeeping, kept across cycles.
#[derive(Debug, Default)]
pub struct ReadFailures {
    failing: HashMap<Target, Failing>,
    /// Gone from a discovery listing; resolved as deleted until the resolution is recorded.
    vanished: Vec<Target>,
}

impl ReadFailures {
    /// A read of `target` failed at `now` with `code`. A different code than the last one
    /// restarts the clock: only an unbroken run of "not found" counts towards deletion.
    pub fn failed(&mut self, target: &Target, code: &str, now: Timestamp) -> Failure {
        match self.failing.get(target) {
            Some(f) if f.code == code => Failure::Lasting,
            _ => {
                let failing = Failing {
                    code: code.to_owned(),
                    since: now,
                    unwatchable: false,
                };
                self.failing.insert(target.clone(), failing);
                Failure::New
            }
        }
    }

    /// The failure just reported for `target` is its definition's: it cannot be watched.
    pub fn unwatchable(&mut self, target: &Target) {
        if let Some(f) = self.failing.get_mut(target) {
            f.unwatchable = true;
        }
    }

    /// The pipelines that cannot be watched now, sorted.
    pub fn unwatchable_targets(&self) -> Vec<Target> {
        let mut out: Vec<Target> = self
            .failing
            .iter()
            .filter(|(_, f)| f.unwatchable)
            .map(|(t, _)| t.clone())
            .collect();
        out.sort();
        out
    }

    /// `target` was read. Returns whether it was failing until now.
    pub fn read(&mut self, target: &Target) -> bool {
        self.failing.remove(target).is_some()
    }

    /// Discovery no longer lists `target`: resolve it as deleted.
    pub fn vanished(&mut self, target: Target) {
        if !self.vanished.contains(&target) {
            self.vanished.push(target);
        }
    }

    /// The pipelines to resolve as deleted at `now`: not found for [`DELETED_AFTER`], or
    /// vanished from a listing and not yet recorded as resolved.
    pub fn deleted(&self, now: Timestamp) -> Vec<Target> {
        let mut deleted: Vec<Target> = self
            .failing
            .iter()
            .filter(|(_, f)| f.code == NOT_FOUND && now.duration_since(f.since) >= DELETED_AFTER)
            .map(|(target, _)| target.clone())
            .collect();
        deleted.sort();
        for t in &self.vanished {
            if !deleted.contains(t) {
                deleted.push(t.clone());
            }
        }
        deleted
    }

    /// The deletions `recorded` were recorded: vanished pipelines among them are done with.
    /// (Pipelines still not found stay deleted: resolving them again changes nothing.)
    pub fn recorded(&mut self, recorded: &[Target]) {
        self.vanished.retain(|t| !recorded.contains(t));
    }

    /// After a reload: only the pipelines still watched keep their record.
    pub fn retain(&mut self, targets: &[Target]) {
        self.failing.retain(|target, _| targets.contains(target));
    }

    /// How many pipelines are failing.
    pub fn len(&self) -> usize {
        self.failing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failing.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_764_000_000 + minutes * 60).unwrap()
    }

    fn target(name: &str) -> Target {
        Target {
            account: "default".into(),
            region: "eu-west-1".into(),
            pipeline: name.into(),
        }
    }

    #[test]
    fn a_pipeline_not_found_for_15_minutes_is_deleted_and_not_at_14() {
        let mut f = ReadFailures::default();
        let web = target("web");
        assert_eq!(f.failed(&web, NOT_FOUND, at(0)), Failure::New);
        assert_eq!(f.failed(&web, NOT_FOUND, at(7)), Failure::Lasting);
        assert!(f.deleted(at(14)).is_empty());
        assert_eq!(f.deleted(at(15)), std::slice::from_ref(&web));
        // Still not found: still deleted (resolving again changes nothing).
        assert_eq!(f.failed(&web, NOT_FOUND, at(16)), Failure::Lasting);
        assert_eq!(f.deleted(at(16)), [web]);
    }

    #[test]
    fn a_flapping_pipeline_restarts_its_clock() {
        let mut f = ReadFailures::default();
        let web = target("web");
        f.failed(&web, NOT_FOUND, at(0));
        assert!(f.read(&web), "was failing");
        assert!(!f.read(&web), "read twice: not failing any more");
        assert_eq!(f.failed(&web, NOT_FOUND, at(10)), Failure::New);
        assert!(
            f.deleted(at(20)).is_empty(),
            "10 minutes since it was found"
        );
        assert_eq!(f.deleted(at(25)), [web]);
    }

    #[test]
    fn other_errors_never_count_as_not_found() {
        let mut f = ReadFailures::default();
        let web = target("web");
        assert_eq!(f.failed(&web, "AccessDeniedException", at(0)), Failure::New);
        assert!(f.deleted(at(60)).is_empty());
        // A change of error is told again, and restarts the clock.
        assert_eq!(f.failed(&web, NOT_FOUND, at(60)), Failure::New);
        assert!(f.deleted(at(74)).is_empty());
        assert_eq!(f.failed(&web, "ThrottlingException", at(70)), Failure::New);
        assert!(f.deleted(at(90)).is_empty());
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn a_pipeline_not_read_keeps_its_record() {
        let mut f = ReadFailures::default();
        let (web, api) = (target("web"), target("api"));
        f.failed(&web, NOT_FOUND, at(0));
        // Other pipelines read or failing do not touch it.
        f.read(&api);
        f.failed(&api, "AccessDeniedException", at(5));
        assert_eq!(f.deleted(at(15)), [web]);
    }

    #[test]
    fn vanished_pipelines_are_deleted_until_recorded() {
        let mut f = ReadFailures::default();
        let (web, api) = (target("web"), target("api"));
        f.vanished(web.clone());
        f.vanished(web.clone());
        f.vanished(api.clone());
        f.failed(&api, NOT_FOUND, at(0));
        let deleted = f.deleted(at(15));
        assert_eq!(deleted, [api.clone(), web.clone()], "each once");
        f.recorded(&deleted);
        assert_eq!(f.deleted(at(15)), [api], "not found stays deleted");
        // A vanish after the deletions were taken stays until it too is recorded.
        f.vanished(web.clone());
        f.recorded(&[]);
        assert_eq!(f.deleted(at(0)), [web]);
    }

    #[test]
    fn a_reload_forgets_pipelines_no_longer_watched() {
        let mut f = ReadFailures::default();
        let (web, api) = (target("web"), target("api"));
        f.failed(&web, NOT_FOUND, at(0));
        f.failed(&api, NOT_FOUND, at(0));
        f.retain(std::slice::from_ref(&api));
        assert_eq!(f.deleted(at(15)), [api]);
        assert!(!f.is_empty());
    }

    #[test]
    fn a_definition_failure_is_unwatchable_until_the_pipeline_is_read() {
        let mut f = ReadFailures::default();
        let (web, api) = (target("web"), target("api"));
        f.failed(&web, "UnknownExecutionMode", at(0));
        f.unwatchable(&web);
        f.failed(&api, "ThrottlingException", at(0));
        assert_eq!(f.unwatchable_targets(), std::slice::from_ref(&web));
        // Failing the same way: still unwatchable; read: no longer.
        assert_eq!(
            f.failed(&web, "UnknownExecutionMode", at(1)),
            Failure::Lasting
        );
        assert_eq!(f.unwatchable_targets(), std::slice::from_ref(&web));
        f.read(&web);
        assert!(f.unwatchable_targets().is_empty());
    }
}
