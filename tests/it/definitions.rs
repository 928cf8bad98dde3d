//! Definitions cached on disk: `GetPipeline` once per `pipelineVersion` of a pipeline (its
//! execution mode decides how it is read: an idle PARALLEL pipeline's state looks like any
//! idle one's), then never again until the version changes.
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
async fn a_cold_start_reads_each_definition_once_and_a_warm_one_costs_one_call_each() {
    let n = 50;
    let w = world(n).await;
    w.env.once().await.assert_code(0);
    assert_eq!(w.aws.total_calls(GET_PIPELINE_STATE), n);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), n, "each mode learnt once");
    assert!(
        total_calls(&w) as f64 <= 1.02 * (2 * n) as f64,
        "{}",
        total_calls(&w)
    );
    // A warm restart: one GetPipelineState each.
    let before = total_calls(&w);
    w.env.once().await.assert_code(0);
    assert_eq!(total_calls(&w) - before, n);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_pipelines_definition_is_read_once_and_survives_restarts() {
    let n = 20;
    let w = world(n).await;
    w.aws.set_state("p001", Fixture::Waiting);
    w.env.once().await.assert_code(0);
    assert_eq!(w.aws.calls(GET_PIPELINE, "p001"), 1);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), n);
    assert_eq!(w.slack.delivered_count(), 1);
    // Restarted: the definitions come from the state database.
    let before = total_calls(&w);
    w.env.once().await.assert_code(0);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), n);
    assert_eq!(total_calls(&w) - before, n, "one GetPipelineState each");
    // The dry run is served by the cache too.
    w.env.dry_run().await.assert_code(0);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), n);
    // Approved: the resolution is read with the cached definition.
    w.aws.set_state("p001", Fixture::Approved);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 2);
    assert_eq!(w.aws.total_calls(GET_PIPELINE), n);
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
    assert_eq!(w.aws.total_calls(GET_PIPELINE), 5 + 1);
}
