//! Definitions on demand, cached on disk: `GetPipeline` only for a pipeline with a run in
//! progress or an approval waiting whose definition for that `pipelineVersion` is not cached.
//! The real binary (`once`, each a fresh process: a restart) against the fake CodePipeline,
//! counting the calls it receives.

use crate::support;

use support::{Fixture, GET_PIPELINE, GET_PIPELINE_STATE, World};

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("p{i:03}")).collect()
}

async fn world(n: usize) -> World {
    let pipelines = names(n);
    let refs: Vec<&str> = pipelines.iter().map(String::as_str).collect();
    World::start(&refs).await
}

fn total_calls(w: &World) -> usize {
    w.aws.requests().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_start_of_idle_pipelines_costs_one_call_each() {
    let n = 50;
    let w = world(n).await;
    w.env.once().await.assert_code(0);
    assert_eq!(w.aws.total_calls(GET_PIPELINE_STATE), n);
    assert_eq!(
        w.aws.total_calls(GET_PIPELINE),
        0,
        "idle: no definition needed"
    );
    assert!(
        total_calls(&w) as f64 <= 1.02 * n as f64,
        "{}",
        total_calls(&w)
    );
    // A warm restart: the same.
    w.env.once().await.assert_code(0);
    assert_eq!(total_calls(&w), 2 * n);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_pipelines_definition_is_read_once_and_survives_restarts() {
    let n = 20;
    let w = world(n).await;
    w.aws.set_state("p001", Fixture::Waiting);
    w.env.once().await.assert_code(0);
    assert_eq!(w.aws.calls(GET_PIPELINE, "p001"), 1);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), 1);
    assert_eq!(w.slack.delivered_count(), 1);
    // Restarted: the definition comes from the state database.
    let before = total_calls(&w);
    w.env.once().await.assert_code(0);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), 1);
    assert_eq!(total_calls(&w) - before, n, "one GetPipelineState each");
    // The dry run is served by the cache too.
    w.env.dry_run().await.assert_code(0);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), 1);
    // Approved: the resolution is read with the cached definition.
    w.aws.set_state("p001", Fixture::Approved);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 2);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_change_costs_one_get_pipeline() {
    let w = world(5).await;
    w.aws.set_state("p002", Fixture::Waiting);
    w.env.once().await.assert_code(0);
    assert_eq!(w.aws.calls(GET_PIPELINE, "p002"), 1);
    w.aws.set_version("p002", 2);
    w.env.once().await.assert_code(0);
    assert_eq!(w.aws.calls(GET_PIPELINE, "p002"), 2);
    w.env.once().await.assert_code(0);
    w.env.once().await.assert_code(0);
    assert_eq!(w.aws.calls(GET_PIPELINE, "p002"), 2);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), 2);
}
