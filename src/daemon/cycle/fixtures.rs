//! Test data shared by the cycle's unit tests.

use std::path::Path;

use jiff::Timestamp;

use crate::config::Config;
use approval_watch_core::model::{Approval, ApprovalKey, OpenApproval};

pub fn at(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_764_000_000 + minutes * 60).unwrap()
}

/// A webhook config: `slack` is added to `[slack]`, then `extra` (routes, reminders…).
pub fn config(slack: &str, extra: &str) -> Config {
    config_with("", slack, extra)
}

/// [`config`] with top-level keys (`top`) first.
pub fn config_with(top: &str, slack: &str, extra: &str) -> Config {
    let text = format!(
        "{top}\n[slack]\nwebhook_url = \"https://hooks.slack.com/services/T0/B0/X\"\n{slack}\n\
         [[pipeline]]\nname = \"web-app\"\n{extra}"
    );
    Config::parse(&text, Path::new("t.toml")).unwrap()
}

/// An app-mode config (bot token and channel): `slack` is added to `[slack]`, then `extra`.
pub fn app_config(slack: &str, extra: &str) -> Config {
    let text = format!(
        "[slack]\nbot_token = \"xoxb-1234-5678-abcdef\"\nchannel = \"C0123456789\"\n{slack}\n\
         [[pipeline]]\nname = \"web-app\"\n{extra}"
    );
    Config::parse(&text, Path::new("t.toml")).unwrap()
}

pub fn approval(pipeline: &str, since: Timestamp) -> Approval {
    Approval {
        key: ApprovalKey {
            account: "default".into(),
            region: "eu-west-1".into(),
            pipeline: pipeline.into(),
            stage: "Prod".into(),
            action: "Approve".into(),
            token: format!("token-{pipeline}-{}", since.as_second()),
        },
        pipeline_execution_id: None,
        waiting_since: since,
        expires_at: since + jiff::SignedDuration::from_hours(24 * 7),
        custom_data: None,
        external_entity_link: None,
        revision: None,
    }
}

pub fn open(id: i64, approval: Approval) -> OpenApproval {
    OpenApproval {
        id,
        first_seen: approval.waiting_since,
        approval,
        reminders_sent: 0,
        last_reminder_at: None,
        expiry_warned: false,
        alert_delivered: true,
        messages_pending: 0,
        messages_failed: 0,
        slack: None,
    }
}
