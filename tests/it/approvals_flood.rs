//! A click flood under a low file-descriptor limit: the real binary runs under
//! `prlimit --nofile=256:256`, the fake Socket Mode server floods refused clicks while
//! `chat.postEphemeral` is slow, and an allowed user's click still decides. Clicks beyond the
//! bound on handlers in flight are left unacknowledged (Slack delivers them again), so the
//! daemon's descriptors stay bounded whatever the rate.

use crate::approvals::{LEAD, PIPELINE, STRANGER, World};
use crate::support;

use std::time::{Duration, Instant};

use support::SOON;
use support::fake_codepipeline::PUT_APPROVAL_RESULT;

/// Refused clicks pushed at once.
const FLOOD: usize = 400;

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_click_flood_under_256_descriptors_leaves_room_for_an_allowed_click() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed; the click-flood test needs it");
        return;
    }
    let mut w = World::start().await;
    w.env.wrapper = ["prlimit", "--nofile=256:256", "--"]
        .map(str::to_owned)
        .to_vec();
    // Slack is slow to answer the refusals, so each handler holds its connection a while.
    w.api
        .set_method_delay("chat.postEphemeral", Duration::from_secs(1));
    let (daemon, id) = w.running_with_alert().await;
    for n in 0..FLOOD {
        w.click(0, STRANGER, "approve", &id, &format!("1700000001.{n:06}"));
    }
    // The allowed click, delivered again (as Slack does) until it is acknowledged.
    let deadline = Instant::now() + SOON;
    let mut peak_fds = 0;
    let acked = loop {
        let envelope = w.click(0, LEAD, "approve", &id, "1700000002.000001");
        let acked = support::runner::eventually(Duration::from_millis(500), || {
            peak_fds = peak_fds.max(open_fds(daemon.pid).unwrap_or(0));
            w.socket.acks().iter().any(|a| a.envelope_id == envelope)
        })
        .await;
        if acked || Instant::now() > deadline {
            break acked;
        }
    };
    let decided = w
        .aws
        .wait_for_calls(PUT_APPROVAL_RESULT, PIPELINE, 1, SOON)
        .await;
    let out = daemon.terminate().await;
    eprintln!("peak open descriptors seen: {peak_fds}");
    assert!(acked, "the allowed click was never acknowledged");
    assert!(
        decided,
        "the allowed click decided nothing\n{}",
        out.describe()
    );
    assert!(
        !out.stderr_plain().contains("unable to open database file"),
        "{}",
        out.describe()
    );
    assert_eq!(w.put_calls().len(), 1);
}
