//! One interaction from Slack, start to end: what it asks ([`super::payload`]), whether the
//! approval exists, still waits and this user may decide it, the claim in the audit log, the
//! call to AWS, and what the clicker and the channel are told. See ARCHITECTURE.md
//! ("Approving from Slack").

use super::Ctx;
use super::decide::{Authority, authority, result_summary};
use super::payload::{Request, parse};
use crate::metrics;
use crate::slack::socket_mode::Interaction;
use crate::slack::web_api::ApiError;
use crate::store::{Claim, ClickTarget};
use approval_watch_core::interaction::Click;
use approval_watch_core::render;
use approval_watch_core::verdict::ClickResult;

/// AWS error codes that mean the approval was answered already (or expired): someone was
/// faster, which is not an error.
const ALREADY_DECIDED: [&str; 2] = [
    "ApprovalAlreadyCompletedException",
    "InvalidApprovalTokenException",
];

pub(super) async fn handle(ctx: &Ctx, interaction: Interaction) {
    match parse(&interaction.payload) {
        Request::Ignored(why) => {
            tracing::debug!(envelope = %interaction.envelope_id, "interaction ignored: {why}");
        }
        Request::Approve(click) | Request::Reject(click) => decide(ctx, &click).await,
        Request::OpenReject { click, trigger_id } => open_reject(ctx, &click, &trigger_id).await,
    }
}

/// Why a click may not go on, told to the clicker alone.
enum Refusal {
    Unknown,
    /// The button's fingerprint is not the approval's its id names now.
    Stale,
    /// Groups that might hold the user are still being read for the first time.
    NotYet,
    /// Groups that might hold the user could not be read (named as mentions; `too_large`:
    /// one is larger than approval-watch reads, so trying again soon will not help).
    Unreadable {
        groups: String,
        too_large: bool,
    },
    Denied(String),
    Resolved,
}

/// What [`check`] found: the approval to decide, or why not (with the approval, if known).
enum Checked {
    Go(ClickTarget),
    Refused(Refusal, Option<ClickTarget>),
}

/// The approval a click names, if it exists, is waiting and the user may decide it.
async fn check(ctx: &Ctx, click: &Click) -> Checked {
    let id = click.approval.approval_id;
    let target = match ctx.audit(move |a| a.approval(id)).await {
        Ok(target) => target,
        Err(e) => {
            tracing::error!(user = %click.user.id, "cannot look up the clicked approval: {e}");
            None
        }
    };
    let Some(target) = target else {
        return Checked::Refused(Refusal::Unknown, None);
    };
    if !click.approval.names(&target.approval.key) {
        return Checked::Refused(Refusal::Stale, None);
    }
    let refusal = match ctx.config.approvers_for(&target.approval.key.pipeline) {
        Some(approvers) => {
            let membership = ctx.membership.read().map(|m| m.clone()).unwrap_or_default();
            match authority(&click.user.id, approvers, &membership) {
                Authority::Allowed => None,
                Authority::NotYet => Some(Refusal::NotYet),
                Authority::Unknown { groups, too_large } => Some(Refusal::Unreadable {
                    groups: render::who_may(&[], &groups),
                    too_large,
                }),
                Authority::Denied => Some(Refusal::Denied(render::who_may(
                    &approvers.users,
                    &approvers.groups,
                ))),
            }
        }
        None => Some(Refusal::Denied(render::who_may(&[], &[]))),
    };
    if let Some(refusal) = refusal {
        return Checked::Refused(refusal, Some(target));
    }
    if target.resolved {
        return Checked::Refused(Refusal::Resolved, Some(target));
    }
    Checked::Go(target)
}

/// Records a refused click and tells the clicker why.
async fn refuse(ctx: &Ctx, click: &Click, refusal: Refusal, target: Option<ClickTarget>) {
    let (result, text) = match &refusal {
        Refusal::Unknown => (
            ClickResult::failed(ClickResult::UNKNOWN_APPROVAL),
            "This approval is not known to approval-watch (any more).".to_owned(),
        ),
        Refusal::Stale => (
            ClickResult::failed(ClickResult::STALE_BUTTON),
            "This button belongs to an older message that no longer matches an approval; use the latest alert.".to_owned(),
        ),
        Refusal::NotYet => (
            ClickResult::failed(ClickResult::GROUPS_UNREAD),
            "approval-watch is still reading the user groups that may approve this pipeline; try again in a moment.".to_owned(),
        ),
        Refusal::Unreadable { groups, too_large } => (
            ClickResult::failed(ClickResult::GROUPS_UNREADABLE),
            if *too_large {
                format!("The user group {groups} that may approve this pipeline could not be read from Slack (it has more members than approval-watch reads), so it cannot tell whether you may; ask whoever runs approval-watch.")
            } else {
                format!("The user group {groups} that may approve this pipeline could not be read from Slack just now, so approval-watch cannot tell whether you may; it is reading it again, try again in a moment.")
            },
        ),
        Refusal::Denied(who) => (
            ClickResult::Denied,
            format!("You may not approve or reject this pipeline. Who may: {who}."),
        ),
        Refusal::Resolved => (
            ClickResult::AlreadyResolved,
            "This approval is no longer waiting; the channel shows how it ended.".to_owned(),
        ),
    };
    let pipeline = target.as_ref().map(|t| t.approval.key.pipeline.clone());
    tracing::info!(
        user = %click.user.id,
        pipeline = pipeline.as_deref().unwrap_or("?"),
        result = &*result.as_str(),
        "click from Slack refused"
    );
    // A refused click is recorded without its reason, as it always was.
    let row = Click {
        reason: None,
        ..click.clone()
    };
    let at = ctx.clock.now();
    let (recorded, recorded_target) = (result.clone(), target.clone());
    let written = ctx
        .audit(move |a| a.record(&row, recorded_target.as_ref(), &recorded, at))
        .await;
    if let Err(e) = written {
        tracing::error!(user = %click.user.id, result = &*result.as_str(), "cannot write the audit row: {e}");
    }
    metrics::slack_decision(&result);
    ephemeral(ctx, click, target.as_ref(), &text).await;
}

async fn open_reject(ctx: &Ctx, click: &Click, trigger_id: &str) {
    let target = match check(ctx, click).await {
        Checked::Go(t) => t,
        Checked::Refused(refusal, target) => return refuse(ctx, click, refusal, target).await,
    };
    let view = render::reject_modal(click.approval.approval_id, &target.approval.key);
    if let Err(e) = ctx.slack.views_open(trigger_id, &view).await {
        tracing::warn!(
            user = %click.user.id,
            pipeline = %target.approval.key.pipeline,
            "cannot open the reject dialog: {e}"
        );
        let text = format!("Could not open the reject dialog ({e}); please click Reject again.");
        ephemeral(ctx, click, Some(&target), &text).await;
    }
}

async fn decide(ctx: &Ctx, click: &Click) {
    let target = match check(ctx, click).await {
        Checked::Go(t) => t,
        Checked::Refused(refusal, target) => return refuse(ctx, click, refusal, target).await,
    };
    let key = target.approval.key.clone();
    // The durable record comes first: a second click, a replay or a restart finds it.
    let at = ctx.clock.now();
    let (row, claimed) = (click.clone(), target.clone());
    let claim = ctx.audit(move |a| a.claim(&row, &claimed, at)).await;
    let audit_id = match claim {
        Ok(Claim::Go(id)) => id,
        Ok(Claim::Replay) => {
            metrics::slack_decision(&ClickResult::Ignored);
            tracing::debug!(user = %click.user.id, "a replayed click; already handled");
            return;
        }
        Ok(Claim::Taken) => {
            metrics::slack_decision(&ClickResult::AlreadyResolved);
            let text = "Someone already decided this approval (or is deciding it right now); the channel will show the outcome.";
            ephemeral(ctx, click, Some(&target), text).await;
            return;
        }
        Err(e) => {
            // Without the audit row there is no decision: AWS is not called.
            tracing::error!(user = %click.user.id, pipeline = %key.pipeline, "cannot write the audit row; not deciding: {e}");
            let text = "approval-watch could not record your click, so nothing was decided. Try again, or use the console.";
            ephemeral(ctx, click, Some(&target), text).await;
            return;
        }
    };
    let verdict = click.verdict;
    let summary = result_summary(
        verdict,
        &click.user.name,
        &click.user.id,
        click.reason.as_deref(),
    );
    let answer = ctx.aws.put_approval_result(&key, verdict, &summary).await;
    let (result, request_id) = match &answer {
        Ok(request_id) => (ClickResult::decided(verdict), request_id.clone()),
        Err(e) if ALREADY_DECIDED.contains(&e.code.as_str()) => {
            (ClickResult::AlreadyResolved, e.request_id.clone())
        }
        Err(e) if no_answer(e) => (
            ClickResult::failed(format!(
                "no answer from AWS, it may have taken effect: {}",
                e.code
            )),
            e.request_id.clone(),
        ),
        Err(e) => (
            ClickResult::failed(format!("{}: {}", e.code, e.message)),
            e.request_id.clone(),
        ),
    };
    let (finished, answered) = (result.clone(), request_id.clone());
    let finished = ctx
        .audit(move |a| a.finish(audit_id, &finished, answered.as_deref()))
        .await;
    if let Err(e) = finished {
        tracing::error!(audit_id, "cannot record AWS's answer in the audit: {e}");
    }
    metrics::slack_decision(&result);
    match answer {
        Ok(_) => {
            tracing::info!(
                user = %click.user.id,
                pipeline = %key.pipeline,
                stage = %key.stage,
                action = %key.action,
                result = &*result.as_str(),
                request_id = request_id.as_deref().unwrap_or(""),
                "decided in Slack"
            );
            // Read again: an alert posted a moment before the click may have had its place
            // recorded only now.
            let id = click.approval.approval_id;
            let now = ctx.audit(move |a| a.approval(id)).await.ok().flatten();
            let slack = match &now {
                Some(t) if t.resolved => None,
                Some(t) => t.slack.clone().or(target.slack.clone()),
                None => target.slack.clone(),
            };
            if let Some(message) = &slack {
                // One writer per message: the deliverer's resolution edit waits while this one
                // is in flight, and under the lock a poll that has recorded the outcome by now
                // has the last word (this edit must not undo it).
                let _edit = ctx.slack.edits().lock(message).await;
                match ctx.audit(move |a| a.approval(id)).await {
                    Ok(Some(t)) if t.resolved => return,
                    Ok(_) => {}
                    // Unknown whether the outcome is recorded: no edit rather than one that
                    // may undo the resolution's (the poll's edit shows the outcome anyway).
                    Err(e) => {
                        tracing::warn!(pipeline = %key.pipeline, "the alert is not edited after the decision: cannot read whether it is resolved: {e}");
                        return;
                    }
                }
                let mut body = render::decided_alert(
                    &target.approval,
                    verdict,
                    &click.user.name,
                    &click.user.id,
                    ctx.clock.now(),
                );
                body["channel"] = serde_json::json!(message.channel);
                body["ts"] = serde_json::json!(message.ts);
                if let Err(e) = ctx.slack.update(&body).await {
                    tracing::warn!(pipeline = %key.pipeline, "cannot update the alert after the decision: {e}");
                }
            }
        }
        Err(e) if ALREADY_DECIDED.contains(&e.code.as_str()) => {
            tracing::info!(user = %click.user.id, pipeline = %key.pipeline, code = %e.code, "decided before this click");
            let text = "This approval was already answered (or it expired) before your click; the channel will show the outcome.";
            ephemeral(ctx, click, Some(&target), text).await;
        }
        Err(e) if no_answer(&e) => {
            tracing::error!(user = %click.user.id, "the decision from Slack got no answer: {e}");
            let text = "CodePipeline did not answer in time, so the decision may or may not have taken effect. The channel will show the outcome at the next poll; if the approval is still waiting then, click again.";
            ephemeral(ctx, click, Some(&target), text).await;
        }
        Err(e) => {
            tracing::error!(user = %click.user.id, "the decision from Slack failed: {e}");
            let text = format!(
                "CodePipeline did not take the decision: {}: {}. Nothing changed; you can try again.",
                e.code, e.message
            );
            ephemeral(ctx, click, Some(&target), &text).await;
        }
    }
}

/// A request that may have reached AWS without its answer reaching us.
fn no_answer(e: &crate::aws::AwsError) -> bool {
    e.status.is_none()
        && matches!(
            e.code.as_str(),
            "Timeout" | "DispatchFailure" | "ResponseError"
        )
}

/// Tells the clicker alone, in the alert's channel as stored (the payload's channel only
/// when none is: nothing else in a payload is trusted).
async fn ephemeral(ctx: &Ctx, click: &Click, target: Option<&ClickTarget>, text: &str) {
    let channel = target
        .and_then(|t| t.slack.as_ref().map(|s| s.channel.clone()))
        .or_else(|| click.channel.clone());
    let Some(channel) = channel else {
        tracing::debug!(user = %click.user.id, "no channel to answer the click in");
        return;
    };
    if let Err(e) = ctx
        .slack
        .post_ephemeral(&channel, &click.user.id, text)
        .await
    {
        log_api_error("chat.postEphemeral", &e);
    }
}

fn log_api_error(method: &str, e: &ApiError) {
    tracing::warn!(method, "Slack refused: {e}");
}
