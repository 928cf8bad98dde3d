//! Approving and rejecting from Slack (Socket Mode): a click arrives over the socket, is
//! checked against the store and the allow-lists, recorded in the audit **before** AWS is
//! called, and answered with `PutApprovalResult`. See ARCHITECTURE.md ("Approving from
//! Slack") for the flow and the exactly-one-decision rule.
//!
//! Runs beside the daemon's loop on tasks of its own, so a long cycle never delays a click
//! (Slack wants `views.open` within 3 s of it). It shares the `CodePipeline` (and so the
//! request budget) with the watcher and opens its own connection to the state database.
//!
//! Nothing here makes the runtime's one thread wait on SQLite: the Socket Mode connection,
//! which must acknowledge every envelope within 3 s, runs on a thread of its own, and every
//! audit call runs on a blocking thread ([`Ctx::audit`]), where a click may wait out another
//! writer's lock for up to [`CLICK_LOCK_WAIT`] and still decide.

mod click;
mod decide;
mod groups;
mod payload;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aws::CodePipeline;
use crate::clock::Clock;
use crate::config::Config;
use crate::slack::socket_mode::{self, ConnectionState, Interaction, SocketMode};
use crate::slack::web_api::{ConnectionOpener, SlackApi};
use crate::store::{AuditLog, StoreError};

use decide::Membership;
/// The summary CodePipeline records for a verdict from Slack (the watcher recognises it).
pub(crate) use decide::result_summary;

/// Interactions waiting to be handled; beyond this the socket does not ack, and Slack
/// delivers the envelope again later.
const QUEUE: usize = 64;
/// Clicks handled at once. Each may hold an HTTP connection and an SQLite connection: beyond
/// this, clicks wait in the queue, and once it is full the socket leaves them unacknowledged,
/// so a flood costs bounded descriptors and memory instead of starving an allowed click.
const MAX_HANDLERS: usize = 32;
/// How long a click's audit call waits for another connection's write lock before the click
/// fails (the audit row comes before AWS, so a click that cannot write it decides nothing).
const CLICK_LOCK_WAIT: Duration = Duration::from_secs(30);
/// How long recording the connection's state may wait for the lock (as every audit write did
/// before clicks were given longer).
const STATE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Why the approvals service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the Socket Mode thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Why an audit call gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit call ended without an answer: {0}")]
    Lost(#[from] tokio::task::JoinError),
}

/// What the approvals service needs; built by `startup` (live mode, `[slack.approvals]` set).
pub struct Setup {
    pub config: Arc<Config>,
    pub aws: Arc<CodePipeline>,
    pub slack: SlackApi,
    pub opener: ConnectionOpener,
    pub state_path: PathBuf,
    pub clock: Clock,
}

/// Group members as last read from Slack; handed from one service to the next on a reload,
/// so a reload never locks group members out while their groups are read again.
pub type SharedMembership = Arc<RwLock<Membership>>;

/// The running service; dropping it does not stop it, [`Running::stop`] does.
pub struct Running {
    stop: CancellationToken,
    socket: SocketMode,
    task: tokio::task::JoinHandle<Leftover>,
    refresher: tokio::task::JoinHandle<()>,
    membership: SharedMembership,
}

impl Running {
    /// Closes the connection and returns the group membership for the next service, without
    /// waiting for decisions: those (and the clicks already acknowledged) finish in the
    /// returned future, which a reload leaves running, so a decision waiting on AWS or on a
    /// locked database never holds up polls, watchdog pings or SIGTERM.
    pub async fn retire(self) -> (SharedMembership, impl Future<Output = ()> + Send + 'static) {
        self.stop.cancel();
        self.socket.stopped().await;
        let leftover = self.task.await.ok();
        let _ = self.refresher.await;
        let rest = async move {
            if let Some(leftover) = leftover {
                leftover.finish().await;
            }
        };
        (self.membership, rest)
    }

    /// [`Running::retire`], then waits for the decisions in flight to be recorded.
    pub async fn stop(self) -> SharedMembership {
        let (membership, rest) = self.retire().await;
        rest.await;
        membership
    }
}

/// What a stopped service still owes: the clicks acknowledged but not yet handled, and the
/// handlers in flight.
struct Leftover {
    ctx: Arc<Ctx>,
    clicks: mpsc::Receiver<Interaction>,
    handlers: tokio::task::JoinSet<()>,
}

impl Leftover {
    /// Clicks already acknowledged are handled (Slack will not send them again), and a
    /// decision whose audit row is written finishes: its AWS answer is recorded.
    async fn finish(self) {
        let Self {
            ctx,
            mut clicks,
            mut handlers,
        } = self;
        clicks.close();
        while let Some(interaction) = clicks.recv().await {
            while handlers.len() >= MAX_HANDLERS {
                let _ = handlers.join_next().await;
            }
            let ctx = ctx.clone();
            handlers.spawn(async move { click::handle(&ctx, interaction).await });
        }
        while handlers.join_next().await.is_some() {}
    }
}

struct Ctx {
    config: Arc<Config>,
    aws: Arc<CodePipeline>,
    slack: SlackApi,
    /// The audit log is opened afresh for each use: a database put back in place under the
    /// daemon (see `store/in_place.rs`) is then the one written, and clicks are rare.
    state_path: PathBuf,
    membership: SharedMembership,
    clock: Clock,
}

/// Starts the Socket Mode connection, the group refresher and the click handler. Rows a
/// previous process left `pending` (killed between the audit row and AWS's answer) are
/// marked interrupted first: never retried without a new click. `membership` is the last
/// service's (on a reload), or `None` at start.
pub fn spawn(
    setup: Setup,
    membership: Option<SharedMembership>,
    shutdown: &CancellationToken,
) -> Result<Running, StartError> {
    let audit = AuditLog::open(&setup.state_path)?;
    let interrupted = audit.interrupted()?;
    if interrupted > 0 {
        tracing::warn!(
            clicks = interrupted,
            "decisions from Slack were interrupted by a restart before AWS answered; the pipeline shows whether they took effect, and a new click decides again"
        );
    }
    audit.purge(setup.clock.now())?;
    let stop = shutdown.child_token();
    let (tx, rx) = mpsc::channel(QUEUE);
    let socket = socket_mode::spawn(setup.opener, tx, payload::ack_answer, stop.clone())?;
    let membership = membership.unwrap_or_default();
    let ctx = Arc::new(Ctx {
        config: setup.config,
        aws: setup.aws,
        slack: setup.slack,
        state_path: setup.state_path,
        membership: membership.clone(),
        clock: setup.clock,
    });
    // Reading groups takes up to 10 s per group: on a task of its own, so clicks never wait.
    let refresher = tokio::spawn(groups::refresh(ctx.clone(), stop.clone()));
    let task = tokio::spawn(serve(ctx, rx, socket.state.clone(), stop.clone()));
    Ok(Running {
        stop,
        socket,
        task,
        refresher,
        membership,
    })
}

async fn serve(
    ctx: Arc<Ctx>,
    mut clicks: mpsc::Receiver<Interaction>,
    mut state: tokio::sync::watch::Receiver<ConnectionState>,
    stop: CancellationToken,
) -> Leftover {
    let mut handlers = tokio::task::JoinSet::new();
    let first = state.borrow_and_update().clone();
    record_state(&ctx, &first).await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = state.borrow_and_update().clone();
                record_state(&ctx, &now).await;
            }
            Some(interaction) = clicks.recv(), if handlers.len() < MAX_HANDLERS => {
                let ctx = ctx.clone();
                handlers.spawn(async move { click::handle(&ctx, interaction).await });
            }
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
        }
    }
    // The connection is closed: said now, before the next service (on a reload) says its
    // own state, which this one's end must not overwrite.
    record_state(&ctx, &ConnectionState::Stopped).await;
    Leftover {
        ctx,
        clicks,
        handlers,
    }
}

impl Ctx {
    /// Runs `work` on the audit log, opened afresh, on a blocking thread: SQLite may wait there
    /// for another writer's lock (up to [`CLICK_LOCK_WAIT`]) while this runtime goes on.
    async fn audit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&AuditLog) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, AuditError> {
        self.audit_waiting(CLICK_LOCK_WAIT, work).await
    }

    /// [`Ctx::audit`], waiting at most `wait` for the lock.
    async fn audit_waiting<T: Send + 'static>(
        &self,
        wait: Duration,
        work: impl FnOnce(&AuditLog) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let path = self.state_path.clone();
        let answer =
            tokio::task::spawn_blocking(move || work(&AuditLog::open_waiting(&path, wait)?))
                .await?;
        Ok(answer?)
    }
}

async fn record_state(ctx: &Ctx, state: &ConnectionState) {
    let name = state.as_str();
    let detail = match state {
        ConnectionState::Retrying { error, .. } => Some(error.clone()),
        _ => None,
    };
    let at = ctx.clock.now();
    // Only `status` reads this: it never holds up a stop or a reload as a click may.
    let written = ctx
        .audit_waiting(STATE_LOCK_WAIT, move |a| {
            a.set_connection(name, detail.as_deref(), at)
        })
        .await;
    if let Err(e) = written {
        tracing::warn!("cannot record the Socket Mode connection's state: {e}");
    }
}
