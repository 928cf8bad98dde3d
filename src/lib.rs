//! approval-watch: tells a Slack channel when an AWS CodePipeline manual approval is waiting.
//!
//! The decisions live in the `approval_watch_core` crate (pure, no I/O); this crate does the
//! talking, grouped by what it talks to (see ARCHITECTURE.md): [`aws`] reads pipelines,
//! [`store`] records approvals and the outbox in SQLite, [`slack`] sends and receives,
//! [`daemon`] runs cycles on a timer and delivers, [`approve`] decides clicks from Slack,
//! [`config`] reads the TOML, [`cli`] is the command line.

pub mod approve;
pub mod aws;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod slack;
pub mod store;
