//! approval-watch: tells a Slack channel when an AWS CodePipeline manual approval is waiting.
//!
//! Data flows one way (see ARCHITECTURE.md): `aws` reads pipelines → `reconcile` decides (pure,
//! given `now`) → `store` records approvals and the outbox in one transaction → `deliver`
//! sends the outbox to Slack through `slack`. [`watcher`] runs one cycle of that, [`daemon`]
//! runs cycles on a timer, [`startup`] assembles the parts, [`cli`] is the command line.
//!
//! Modules are private unless the integration tests, the demo or the benchmark drive them.

mod approve;
pub mod aws;
mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
mod deliver;
mod digest;
mod docs;
mod dry_run;
mod heartbeat;
pub mod logging;
mod metrics;
pub mod model;
mod output;
mod poll;
mod reconcile;
mod remind;
mod render;
mod slack;
mod slack_api;
mod small_file;
pub mod socket_mode;
pub mod startup;
pub mod status;
pub mod store;
mod summary;
pub mod systemd;
mod warn_once;
pub mod watcher;
mod working_hours;
