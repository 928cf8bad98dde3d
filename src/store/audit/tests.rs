//! The audit log: claims, the replay, the race between two connections, purging, and what the
//! store reads back.

use super::*;
use crate::store::{AppParts, Changes, NewMessage};
use approval_watch_core::interaction::{ApprovalRef, SlackUser};
use approval_watch_core::model::{ApprovalKey, MessageKind, Resolution};

fn now() -> Timestamp {
    Timestamp::from_second(1_764_148_400).unwrap()
}

fn later(secs: i64) -> Timestamp {
    now().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

fn approval(token: &str) -> Approval {
    Approval {
        key: ApprovalKey {
            account: "prod".into(),
            region: "eu-west-1".into(),
            pipeline: "payments-api".into(),
            stage: "Release".into(),
            action: "Approve".into(),
            token: token.into(),
        },
        pipeline_execution_id: None,
        waiting_since: now(),
        expires_at: later(86_400),
        custom_data: None,
        external_entity_link: None,
        revision: None,
    }
}

/// A migrated store with one waiting approval per token; the path and the store.
fn store_with(dir: &Path, tokens: &[&str]) -> (PathBuf, Store) {
    let path = dir.join("state.db");
    let mut store = Store::open(&path).unwrap();
    let new = tokens
        .iter()
        .map(|t| {
            let message = NewMessage {
                kind: MessageKind::Alert,
                payload: serde_json::json!({"text": "x"}),
                app: AppParts::default(),
            };
            (approval(t), message)
        })
        .collect();
    let changes = Changes {
        new,
        ..Changes::default()
    };
    store.record(&changes, now()).unwrap();
    (path, store)
}

/// A store with one waiting approval (id 1), an audit connection to it, and the approval as
/// the audit reads it; the directory lives as long as the `TempDir`.
fn one_approval() -> (tempfile::TempDir, Store, AuditLog, ClickTarget) {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_with(dir.path(), &["t1"]);
    let log = AuditLog::open(&path).unwrap();
    let target = log.approval(1).unwrap().expect("approval 1");
    (dir, store, log, target)
}

/// A result as the audit writes it.
fn r(text: &str) -> ClickResult {
    ClickResult::parse(text).unwrap()
}

fn click(user: &str, click_id: &str, verdict: Verdict) -> Click {
    Click {
        approval: ApprovalRef::new(1, &approval("t1").key),
        verdict,
        user: SlackUser {
            id: user.into(),
            name: format!("name of {user}"),
        },
        channel: None,
        click_id: click_id.into(),
        reason: (verdict == Verdict::Reject).then(|| "not today".to_owned()),
    }
}

#[test]
fn a_claim_goes_once_and_a_second_click_is_taken() {
    let (_dir, store, log, target) = one_approval();
    assert_eq!(target.approval, approval("t1"));
    assert!(!target.resolved);
    assert_eq!(target.slack, None);
    assert!(log.approval(99).unwrap().is_none());

    let first = click("U0ALICE001", "1.1", Verdict::Approve);
    let Claim::Go(id) = log.claim(&first, &target, now()).unwrap() else {
        panic!("the first claim goes");
    };
    // While it is in flight, and after it is done, another click calls nothing.
    let second = click("U0BOB00001", "1.2", Verdict::Reject);
    assert_eq!(log.claim(&second, &target, later(1)).unwrap(), Claim::Taken);
    assert_eq!(
        store.decided_in_slack(1).unwrap(),
        Some(("name of U0ALICE001".into(), "U0ALICE001".into()))
    );
    log.finish(id, &r("approved"), Some("req-1")).unwrap();
    let third = click("U0BOB00001", "1.3", Verdict::Approve);
    assert_eq!(log.claim(&third, &target, later(2)).unwrap(), Claim::Taken);

    let rows = store.audit(Timestamp::MIN).unwrap();
    let results: Vec<(&str, String, Option<&str>)> = rows
        .iter()
        .map(|r| {
            (
                r.user_id.as_str(),
                r.result.to_string(),
                r.request_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("U0ALICE001", "approved".to_owned(), Some("req-1")),
            ("U0BOB00001", "already_resolved".to_owned(), None),
            ("U0BOB00001", "already_resolved".to_owned(), None),
        ]
    );
    assert_eq!(rows[1].decision, Verdict::Reject);
    assert_eq!(rows[1].reason.as_deref(), Some("not today"));
    assert_eq!(rows[0].pipeline.as_deref(), Some("payments-api"));
    assert_eq!(rows[0].account.as_deref(), Some("prod"));
    assert_eq!(rows[0].time, now());
}

#[test]
fn a_replayed_click_writes_nothing() {
    let (_dir, store, log, target) = one_approval();
    let c = click("U0ALICE001", "1.1", Verdict::Approve);
    let Claim::Go(id) = log.claim(&c, &target, now()).unwrap() else {
        panic!("goes");
    };
    assert_eq!(log.claim(&c, &target, later(1)).unwrap(), Claim::Replay);
    log.finish(id, &r("approved"), Some("req-1")).unwrap();
    assert_eq!(log.claim(&c, &target, later(2)).unwrap(), Claim::Replay);
    // record is idempotent per click too.
    let denied = click("U0MALLORY1", "2.1", Verdict::Approve);
    log.record(&denied, Some(&target), &r("denied"), later(3))
        .unwrap();
    log.record(&denied, Some(&target), &r("denied"), later(4))
        .unwrap();
    assert_eq!(store.audit(Timestamp::MIN).unwrap().len(), 2);
}

#[test]
fn a_failed_answer_frees_the_approval_for_a_new_click() {
    let (_dir, store, log, target) = one_approval();
    let Claim::Go(id) = log
        .claim(&click("U0ALICE001", "1", Verdict::Approve), &target, now())
        .unwrap()
    else {
        panic!("goes");
    };
    log.finish(id, &r("failed: AccessDeniedException"), Some("req-9"))
        .unwrap();
    assert_eq!(store.decided_in_slack(1).unwrap(), None);
    let again = log
        .claim(
            &click("U0ALICE001", "2", Verdict::Approve),
            &target,
            later(1),
        )
        .unwrap();
    assert!(matches!(again, Claim::Go(_)), "{again:?}");
    // finish only changes a pending row.
    log.finish(id, &r("approved"), None).unwrap();
    assert_eq!(
        store.audit(Timestamp::MIN).unwrap()[0].result,
        r("failed: AccessDeniedException")
    );
}

#[test]
fn two_connections_never_both_claim_one_approval() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_with(dir.path(), &["t1"]);
    for round in 0..5 {
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = ["U0ALICE001", "U0BOB00001"]
            .into_iter()
            .map(|user| {
                let path = path.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    let log = AuditLog::open(&path).unwrap();
                    let target = log.approval(1).unwrap().unwrap();
                    let c = click(user, &format!("{round}"), Verdict::Approve);
                    start.wait();
                    log.claim(&c, &target, now()).unwrap()
                })
            })
            .collect();
        let claims: Vec<Claim> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let goes = claims.iter().filter(|c| matches!(c, Claim::Go(_))).count();
        assert_eq!(goes, 1, "round {round}: {claims:?}");
        assert!(claims.contains(&Claim::Taken), "round {round}: {claims:?}");
        // Free it for the next round.
        let log = AuditLog::open(&path).unwrap();
        for c in claims {
            if let Claim::Go(id) = c {
                log.finish(id, &r("failed: test"), None).unwrap();
            }
        }
    }
    assert_eq!(store.audit(Timestamp::MIN).unwrap().len(), 10);
}

#[test]
fn the_index_holds_even_against_a_direct_insert() {
    let (_dir, store, log, target) = one_approval();
    log.claim(&click("U0ALICE001", "1", Verdict::Approve), &target, now())
        .unwrap();
    let second = log.conn.execute(
        "INSERT INTO audit (at_ms, user_id, user_name, approval_id, decision, result, click_id)
         VALUES (0, 'U0BOB00001', 'bob', 1, 'approve', 'approved', 'x')",
        [],
    );
    assert!(second.is_err(), "a second decision row was accepted");
    // record cannot write a deciding result either.
    log.record(
        &click("U0BOB00001", "2", Verdict::Approve),
        Some(&target),
        &ClickResult::Approved,
        now(),
    )
    .unwrap();
    let rows = store.audit(Timestamp::MIN).unwrap();
    assert_eq!(
        rows[1].result,
        r("failed: approved recorded without a claim")
    );
}

#[test]
fn interrupted_claims_fail_at_start_and_unknown_approvals_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_with(dir.path(), &["t1", "t2"]);
    let log = AuditLog::open(&path).unwrap();
    let t1 = log.approval(1).unwrap().unwrap();
    log.claim(&click("U0ALICE001", "1", Verdict::Approve), &t1, now())
        .unwrap();
    drop(log);
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.interrupted().unwrap(), 1);
    assert_eq!(log.interrupted().unwrap(), 0);
    let mut unknown = click("U0ALICE001", "2", Verdict::Approve);
    unknown.approval.approval_id = 42;
    log.record(&unknown, None, &r("failed: unknown approval"), later(1))
        .unwrap();
    let rows = store.audit(Timestamp::MIN).unwrap();
    assert_eq!(
        rows[0].result,
        r("failed: interrupted by a restart before AWS answered")
    );
    assert_eq!(rows[1].result, r("failed: unknown approval"));
    assert_eq!(rows[1].pipeline, None);
    // A resolved approval reads as resolved.
    let resolution = Resolution {
        outcome: approval_watch_core::model::Outcome::Approved,
        by: None,
        comment: None,
        at: now(),
    };
    let mut store = store;
    let changes = Changes {
        resolved: vec![(2, resolution, None)],
        ..Changes::default()
    };
    store.record(&changes, now()).unwrap();
    assert!(log.approval(2).unwrap().unwrap().resolved);
}

#[test]
fn since_filters_and_old_rows_are_purged() {
    let (_dir, store, log, target) = one_approval();
    let day = 86_400;
    for (i, age_days) in [500, 300, 1].into_iter().enumerate() {
        let at = later(-age_days * day);
        log.record(
            &click("U0ALICE001", &i.to_string(), Verdict::Approve),
            Some(&target),
            &ClickResult::Denied,
            at,
        )
        .unwrap();
    }
    assert_eq!(store.audit(Timestamp::MIN).unwrap().len(), 3);
    assert_eq!(store.audit(later(-7 * day)).unwrap().len(), 1);
    assert_eq!(log.purge(now()).unwrap(), 1);
    let kept: Vec<Timestamp> = store
        .audit(Timestamp::MIN)
        .unwrap()
        .iter()
        .map(|r| r.time)
        .collect();
    assert_eq!(kept, [later(-300 * day), later(-day)]);
}

#[test]
fn the_connection_state_keeps_its_since_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_with(dir.path(), &[]);
    assert_eq!(store.socket_mode().unwrap(), None);
    let log = AuditLog::open(&path).unwrap();
    log.set_connection("retrying", Some("attempt 1: refused"), now())
        .unwrap();
    log.set_connection("retrying", Some("attempt 2: refused"), later(5))
        .unwrap();
    assert_eq!(
        store.socket_mode().unwrap(),
        Some(ConnectionRow {
            state: "retrying".into(),
            since: now(),
            detail: Some("attempt 2: refused".into()),
        })
    );
    log.set_connection("connected", None, later(9)).unwrap();
    let row = store.socket_mode().unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.since, row.detail),
        ("connected", later(9), None)
    );
    // A read-only store (status, audit) sees it too.
    let ro = Store::open_read_only(&path).unwrap().unwrap();
    assert_eq!(ro.socket_mode().unwrap().unwrap().state, "connected");
    assert!(ro.audit(Timestamp::MIN).unwrap().is_empty());
}

#[test]
fn an_unmigrated_or_missing_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 8;").unwrap();
    }
    let e = AuditLog::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("schema version 8")
            && e.contains(&format!("needs version {}", crate::store::SCHEMA_VERSION)),
        "{e}"
    );
    let missing = dir.path().join("none.db");
    assert!(AuditLog::open(&missing).is_err());
    assert!(!missing.exists(), "AuditLog::open created a database");
}

#[test]
fn a_row_whose_result_this_version_does_not_know_is_listed_as_stored() {
    let (_dir, store, log, target) = one_approval();
    log.record(
        &click("U0ALICE001", "1", Verdict::Approve),
        Some(&target),
        &ClickResult::Denied,
        now(),
    )
    .unwrap();
    // Another version's word for it, or a hand edit: `audit` shows it, never drops the row.
    log.conn
        .execute("UPDATE audit SET result = 'vetoed_by_policy'", [])
        .unwrap();
    let rows = store.audit(Timestamp::MIN).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].result.as_str(), "vetoed_by_policy");
}
