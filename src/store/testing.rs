//! What the store's unit tests share: a database path in a temporary directory, one approval,
//! its key, a message, a fixed `now`, and a store with alerts queued.

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use approval_watch_core::model::{Approval, ApprovalKey, MessageKind, Revision};

use super::{AppParts, Changes, NewMessage, Store};

/// A path named `name` in a new temporary directory, which lives as long as the `TempDir`.
pub(super) fn temp_db(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// A store with one queued alert per token, then `corrupt` (SQL, may be empty) applied to
/// the file.
pub(super) fn store_with_alerts(dir: &Path, tokens: &[&str], corrupt: &str) -> Store {
    let path = dir.join("s.db");
    let mut store = Store::open(&path).unwrap();
    let new = tokens
        .iter()
        .map(|t| (approval(t), message(MessageKind::Alert)))
        .collect();
    store
        .record(
            &Changes {
                new,
                ..Changes::default()
            },
            now(),
        )
        .unwrap();
    store.conn.execute_batch(corrupt).unwrap();
    store
}

pub(super) fn key(token: &str) -> ApprovalKey {
    ApprovalKey {
        account: "default".into(),
        region: "us-east-1".into(),
        pipeline: "web-app".into(),
        stage: "Approve".into(),
        action: "Approve".into(),
        token: token.into(),
    }
}

pub(super) fn approval(token: &str) -> Approval {
    Approval {
        key: key(token),
        pipeline_execution_id: Some("exec".into()),
        waiting_since: Timestamp::from_second(1_764_148_392).unwrap(),
        expires_at: Timestamp::from_second(1_764_753_192).unwrap(),
        custom_data: Some("needed".into()),
        external_entity_link: None,
        revision: Some(Revision {
            revision_id: Some("8f2b".into()),
            commit_message: Some("Fix".into()),
            url: None,
        }),
    }
}

pub(super) fn message(kind: MessageKind) -> NewMessage {
    NewMessage {
        app: AppParts::default(),
        kind,
        payload: serde_json::json!({"text": kind.as_str()}),
    }
}

pub(super) fn now() -> Timestamp {
    Timestamp::from_second(1_764_148_400).unwrap()
}
