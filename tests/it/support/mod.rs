//! Test harness: a fake CodePipeline (awsJson1.1), a fake Slack webhook, and a runner for the real
//! `approval-watch` binary. Shared by the integration tests (`tests/it/main.rs`) and by
//! `examples/demo.rs` (`#[path = "../tests/it/support/mod.rs"] mod support;`); it prints nothing.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod fake_codepipeline;
pub mod fake_heartbeat;
pub mod fake_slack;
pub mod fake_slack_api;
pub mod fake_socket_mode;
pub mod fake_sts;
pub mod fixtures;
pub mod flaky_port;
pub mod isolated;
pub mod parallel_runs;
pub mod payload;
pub mod rng;
pub mod runner;
pub mod sources;
pub mod state_db;

use std::time::Duration;

pub use fake_codepipeline::{
    FakeCodePipeline, GET_PIPELINE, GET_PIPELINE_EXECUTION, GET_PIPELINE_STATE, InjectedError,
    LIST_ACTION_EXECUTIONS, LIST_PIPELINE_EXECUTIONS, LIST_PIPELINES,
};
pub use fake_heartbeat::{FakeHeartbeat, HEARTBEAT_SECRET};
pub use fake_slack::{FakeSlack, SlackResponse, WEBHOOK_PATH, WEBHOOK_SECRET};
pub use fixtures::Fixture;
pub use runner::{Daemon, Output, TestEnv, WebhookSource};

/// For tests that build the watcher in-process: static AWS credentials in the environment,
/// set once before any SDK use.
pub fn static_credentials() {
    static CREDENTIALS: std::sync::Once = std::sync::Once::new();
    CREDENTIALS.call_once(|| {
        // SAFETY: every in-process test calls this before any SDK use, and `Once` blocks
        // them until it is done; nothing else in the process reads the environment meanwhile.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}

/// A generous bound for things that should happen within a cycle or two (a failure bound,
/// never a wait: generous because the suite runs many tests at once on two cores).
pub const SOON: Duration = Duration::from_secs(20);

/// The two fakes and a test env wired to them.
pub struct World {
    pub aws: FakeCodePipeline,
    pub slack: FakeSlack,
    pub env: TestEnv,
}

impl World {
    /// Fakes that know `pipelines` (approval not reached yet), and a config watching them,
    /// polling every second.
    pub async fn start(pipelines: &[&str]) -> Self {
        let aws = FakeCodePipeline::with_pipelines(pipelines).await;
        let slack = FakeSlack::start().await;
        let env = TestEnv::new(&aws.endpoint(), &slack.url(), pipelines);
        World { aws, slack, env }
    }
}
