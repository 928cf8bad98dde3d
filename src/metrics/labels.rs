//! The label values the daemon records under, as types: a call site names a variant, so a
//! misspelt label does not compile. Free-form values from outside (AWS operation names and
//! error codes, Slack's error words, pipeline names) stay strings and are escaped when written.

use approval_watch_core::model::MessageKind;
use approval_watch_core::verdict::ClickResult;

/// A label whose values are known in advance; each value's counter is exported at 0 before
/// the first event, so a `rate()` over it works from the start.
pub trait Label: Copy + PartialEq + 'static {
    /// Every value, in the order the exposition lists them.
    const ALL: &'static [Self];
    /// The value as written in the exposition.
    fn value(self) -> &'static str;
}

/// Counters for every value of a typed label, all at 0 from the start.
#[derive(Debug, Clone)]
pub(super) struct Tally<K: Label> {
    counts: Vec<u64>,
    _label: std::marker::PhantomData<K>,
}

impl<K: Label> Default for Tally<K> {
    fn default() -> Self {
        Self {
            counts: vec![0; K::ALL.len()],
            _label: std::marker::PhantomData,
        }
    }
}

impl<K: Label> Tally<K> {
    pub(super) fn add(&mut self, key: K) {
        // Every K is in K::ALL (the tests below hold each Label to that), so this always finds it.
        let i = K::ALL.iter().position(|k| *k == key);
        if let Some(n) = i.and_then(|i| self.counts.get_mut(i)) {
            *n = n.saturating_add(1);
        }
    }

    /// Every value with its count, in [`Label::ALL`] order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (K, u64)> + '_ {
        K::ALL.iter().copied().zip(self.counts.iter().copied())
    }
}

/// Message kinds delivered to Slack (`kind` of `messages_sent_total`); listed alphabetically,
/// as the exposition always has.
impl Label for MessageKind {
    const ALL: &'static [Self] = &[Self::Alert, Self::Digest, Self::Reminder, Self::Resolution];
    fn value(self) -> &'static str {
        self.as_str()
    }
}

/// Why Slack did not take a message (`kind` of `slack_delivery_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackFailure {
    /// Any 4xx but 429: not retried.
    Permanent,
    /// 429.
    RateLimited,
    /// 5xx, timeout, connection: retried.
    Temporary,
}

impl Label for SlackFailure {
    const ALL: &'static [Self] = &[Self::Permanent, Self::RateLimited, Self::Temporary];
    fn value(self) -> &'static str {
        match self {
            Self::Permanent => "permanent",
            Self::RateLimited => "rate_limited",
            Self::Temporary => "temporary",
        }
    }
}

/// How a poll cycle or a config reload ended (`result` of `cycles_total`,
/// `config_reloads_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}

impl Label for Outcome {
    const ALL: &'static [Self] = &[Self::Ok, Self::Failed];
    fn value(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

/// The Socket Mode connection's state, mirrored from `slack::socket_mode::ConnectionState`
/// (the metrics sit below Slack, so they name the states themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    Connecting,
    Connected,
    Retrying,
    Disabled,
    Stopped,
    /// No connection task: approvals from Slack are off, and the connection is left out of
    /// `/metrics` and `/healthz`.
    Off,
}

impl SocketState {
    /// The states a connection task reports, in the order of their atomic codes.
    const TASK: [Self; 5] = [
        Self::Connecting,
        Self::Connected,
        Self::Retrying,
        Self::Disabled,
        Self::Stopped,
    ];

    /// For the atomic `/healthz` reads: position in [`Self::TASK`] + 1, and 0 for `Off`.
    pub(super) fn code(self) -> u8 {
        Self::TASK
            .iter()
            .position(|s| *s == self)
            .and_then(|i| u8::try_from(i + 1).ok())
            .unwrap_or(0)
    }

    pub(super) fn from_code(code: u8) -> Self {
        usize::from(code)
            .checked_sub(1)
            .and_then(|i| Self::TASK.get(i).copied())
            .unwrap_or(Self::Off)
    }

    /// The word `/healthz` shows; `None` for `Off`, which is not shown.
    pub(super) fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Retrying => "retrying",
            Self::Disabled => "disabled",
            Self::Stopped => "stopped",
            Self::Off => return None,
        })
    }
}

/// Why a new Socket Mode connection replaced the last one (`reason` of
/// `slack_socket_reconnects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    /// Slack asked for a new connection.
    Refresh,
    /// The last one was lost.
    Dropped,
}

impl Label for ReconnectReason {
    const ALL: &'static [Self] = &[Self::Refresh, Self::Dropped];
    fn value(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::Dropped => "dropped",
        }
    }
}

/// The `result` label of `slack_decisions_total`: a [`ClickResult`] with every failure (`failed:
/// …`, whatever its reason) counted as one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionLabel {
    Approved,
    Rejected,
    /// Not on the allow-lists.
    Denied,
    AlreadyResolved,
    Failed,
    /// A replayed click.
    Ignored,
}

impl From<&ClickResult> for DecisionLabel {
    /// A click is counted once answered; a claim still pending would count as failed.
    fn from(result: &ClickResult) -> Self {
        match result {
            ClickResult::Approved => Self::Approved,
            ClickResult::Rejected => Self::Rejected,
            ClickResult::Denied => Self::Denied,
            ClickResult::AlreadyResolved => Self::AlreadyResolved,
            ClickResult::Ignored => Self::Ignored,
            ClickResult::Pending | ClickResult::Failed(_) | ClickResult::Unrecognised(_) => {
                Self::Failed
            }
        }
    }
}

impl Label for DecisionLabel {
    const ALL: &'static [Self] = &[
        Self::Approved,
        Self::Rejected,
        Self::Denied,
        Self::AlreadyResolved,
        Self::Failed,
        Self::Ignored,
    ];
    fn value(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Denied => "denied",
            Self::AlreadyResolved => "already_resolved",
            Self::Failed => "failed",
            Self::Ignored => "ignored",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ALL` lists every value once: a variant missing from it would never be counted.
    fn complete<K: Label + std::fmt::Debug>(every: &[K]) {
        for k in every {
            assert_eq!(
                K::ALL.iter().filter(|a| *a == k).count(),
                1,
                "{k:?} in ALL once"
            );
        }
        assert_eq!(K::ALL.len(), every.len());
    }

    #[test]
    fn every_label_lists_all_its_values() {
        use MessageKind as M;
        complete(&[M::Alert, M::Reminder, M::Resolution, M::Digest]);
        use SlackFailure as F;
        complete(&[F::Permanent, F::RateLimited, F::Temporary]);
        complete(&[Outcome::Ok, Outcome::Failed]);
        complete(&[ReconnectReason::Refresh, ReconnectReason::Dropped]);
        use DecisionLabel as D;
        complete(&[
            D::Approved,
            D::Rejected,
            D::Denied,
            D::AlreadyResolved,
            D::Failed,
            D::Ignored,
        ]);
    }

    #[test]
    fn a_tally_counts_per_value_from_zero() {
        let mut t = Tally::<SlackFailure>::default();
        t.add(SlackFailure::Temporary);
        t.add(SlackFailure::Temporary);
        let counts: Vec<(&str, u64)> = t.iter().map(|(k, n)| (k.value(), n)).collect();
        assert_eq!(
            counts,
            [("permanent", 0), ("rate_limited", 0), ("temporary", 2)]
        );
    }

    #[test]
    fn socket_states_round_trip_through_their_codes() {
        for s in SocketState::TASK {
            assert_ne!(s.code(), 0);
            assert_eq!(SocketState::from_code(s.code()), s);
        }
        assert_eq!(SocketState::Off.code(), 0);
        assert_eq!(SocketState::from_code(0), SocketState::Off);
        assert_eq!(SocketState::from_code(200), SocketState::Off);
        assert_eq!(SocketState::Off.name(), None);
        assert_eq!(SocketState::Disabled.name(), Some("disabled"));
    }

    #[test]
    fn a_click_result_counts_under_its_own_word_and_every_failure_as_failed() {
        use ClickResult as R;
        for r in [
            R::Approved,
            R::Rejected,
            R::Denied,
            R::AlreadyResolved,
            R::Ignored,
        ] {
            assert_eq!(DecisionLabel::from(&r).value(), r.as_str());
        }
        let failed = R::failed("AccessDenied: no");
        assert_eq!(DecisionLabel::from(&failed), DecisionLabel::Failed);
        assert_eq!(DecisionLabel::from(&R::Pending), DecisionLabel::Failed);
    }
}
