//! User groups on the allow-lists, as Slack really has them: large groups are read whole (up to
//! 100,000 members), a group too large or unreadable is said at WARN and its members are told
//! the group could not be read (never "you may not"), and a group whose first read fails is
//! read again within seconds, not at the 5-minute refresh.

use crate::approvals::{GROUP, PIPELINE, World};
use crate::support;

use std::time::Duration;

use support::fake_codepipeline::PUT_APPROVAL_RESULT;
use support::fake_slack_api::{ApiAnswer, group_member};
use support::{Daemon, SOON};

/// What the daemon logs at debug when it has read a group's members.
const GROUP_READ: &str = "read the members of the user group";

/// A group of `size` members is read, and its last member may approve.
async fn last_member_of_a_group_of(size: usize, action_ts: &str) {
    let w = World::start().await;
    w.api.set_group_size(GROUP, size);
    let (mut daemon, id) = w.running_with_alert().await;
    let read = daemon.wait_for_stderr(GROUP_READ, SOON).await;
    let last = group_member(size);
    w.click(0, &last, "approve", &id, action_ts);
    let decided = w
        .aws
        .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
        .await;
    let out = daemon.terminate().await;
    assert!(read, "the group was never read\n{}", out.describe());
    assert!(
        decided,
        "member {size} of {GROUP} could not approve; the Web API saw {:#?}",
        support::fake_slack_api::summarize(&w.api.requests())
    );
    assert_eq!(w.audit().await[0]["result"], "approved");
}

#[tokio::test(flavor = "multi_thread")]
async fn member_12000_of_a_group_of_12000_may_approve() {
    last_member_of_a_group_of(12_000, "1700000000.002000").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_20000_members_is_read() {
    // Its answer (about 280 KB) is longer than any other Web API answer may be.
    last_member_of_a_group_of(20_000, "1700000000.002100").await;
}

/// The text of the `n`th `chat.postEphemeral` (from 1), waiting for it.
async fn ephemeral_text(w: &World, n: usize) -> String {
    w.api
        .wait_until(SOON, |r| {
            r.iter()
                .filter(|r| r.method == "chat.postEphemeral")
                .count()
                >= n
        })
        .await;
    w.api.calls("chat.postEphemeral")[n - 1].body["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_too_large_to_read_is_a_warning_and_its_members_are_told_it_could_not_be_read() {
    let w = World::start().await;
    w.api.set_group_size(GROUP, 100_001);
    let (mut daemon, id) = w.running_with_alert().await;
    daemon
        .wait_for_stderr("cannot read the user group", SOON)
        .await;
    w.click(0, &group_member(1), "approve", &id, "1700000000.002200");
    let text = ephemeral_text(&w, 1).await;
    let out = daemon.terminate().await;
    assert!(text.contains("could not be read"), "{text}");
    assert!(!text.contains("may not"), "{text}");
    assert!(w.put_calls().is_empty(), "an unknown group never grants");
    let warned = out.stderr_lines_with(&["WARN", GROUP, "more than 100000 members"]);
    assert!(!warned.is_empty(), "{}", out.stderr_plain());
    let audit = w.audit().await;
    assert_eq!(
        audit[0]["result"], "failed: group membership could not be read",
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_first_read_is_retried_within_seconds_and_members_are_told_to_try_again() {
    let w = World::start().await;
    // The first read fails; the second answers, slowly enough that a click lands before it.
    w.api.push(
        "usergroups.users.list",
        ApiAnswer::Http {
            status: 500,
            retry_after: None,
        },
    );
    w.api.push(
        "usergroups.users.list",
        ApiAnswer::Delay(Duration::from_secs(2)),
    );
    let (mut daemon, id) = w.running_with_alert().await;
    assert!(
        daemon
            .wait_for_stderr("cannot read the user group", SOON)
            .await
    );
    w.click(
        0,
        crate::approvals::MEMBER,
        "approve",
        &id,
        "1700000000.002300",
    );
    let text = ephemeral_text(&w, 1).await;
    assert!(text.contains("could not be read"), "{text}");
    assert!(text.contains("try again in a moment"), "{text}");
    // Read again within seconds (not at the 5-minute refresh); then the member's click works.
    let again = wait_for_stderr_again(&mut daemon).await;
    w.click(
        0,
        crate::approvals::MEMBER,
        "approve",
        &id,
        "1700000000.002301",
    );
    let decided = w
        .aws
        .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
        .await;
    let out = daemon.terminate().await;
    assert!(again, "the group was not read again\n{}", out.describe());
    assert!(decided, "{}", out.describe());
    let reads = w.api.calls("usergroups.users.list");
    let gap = reads[1].at.duration_since(reads[0].at);
    assert!(gap < Duration::from_secs(5), "read again after {gap:?}");
    let results: Vec<String> = w
        .audit()
        .await
        .iter()
        .filter_map(|a| a["result"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        results,
        ["failed: group membership could not be read", "approved"],
        "{results:?}"
    );
}

/// Waits (up to `SOON`) for the log line of a group read after a failed one.
async fn wait_for_stderr_again(daemon: &mut Daemon) -> bool {
    daemon
        .wait_for_stderr(&format!("{GROUP_READ} again"), SOON)
        .await
}
