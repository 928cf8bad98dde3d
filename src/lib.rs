//! approval-watch: tells a Slack channel when an AWS CodePipeline manual approval is waiting.
//!
//! Data flows one way (see DESIGN.md): [`aws`] reads pipelines → [`reconcile`] decides (pure,
//! given `now`) → [`store`] records approvals and the outbox in one transaction →
//! [`deliver`] sends the outbox to Slack through [`slack`]. [`watcher`] runs one cycle of that,
//! [`daemon`] runs cycles on a timer, [`cli`] is the command line.

pub mod aws;
pub mod budget;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod docs;
pub mod dry_run;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod poll;
pub mod reconcile;
pub mod remind;
pub mod render;
pub mod schedule;
pub mod slack;
pub mod status;
pub mod store;
pub mod summary;
pub mod watcher;
