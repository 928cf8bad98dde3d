//! approval-watch: tells a Slack channel when an AWS CodePipeline manual approval is waiting.
//!
//! Data flows one way (see DESIGN.md): [`aws`] reads pipelines → [`reconcile`] decides (pure,
//! given `now`) → [`store`] records approvals and the outbox in one transaction →
//! [`deliver`] sends the outbox to Slack through [`slack`]. [`watcher`] runs one cycle of that,
//! [`daemon`] runs cycles on a timer, [`cli`] is the command line.

pub mod aws;
mod budget;
pub mod cli;
pub mod clock;
pub mod config;
mod daemon;
mod deliver;
mod dry_run;
pub mod logging;
mod metrics;
pub mod model;
mod poll;
mod reconcile;
mod remind;
mod render;
mod slack;
pub mod startup;
pub mod status;
mod store;
mod summary;
mod systemd;
pub mod watcher;
mod working_hours;
