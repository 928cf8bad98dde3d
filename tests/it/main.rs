//! The integration tests, in one binary so the crate and the harness are linked once and the
//! tests share one run (most of them wait on real time, so they overlap well). One module per
//! area; the fakes and the runner for the real binary are in `support`.

mod support;

mod accounts;
mod app_crash;
mod app_mode;
mod app_pacing;
mod approvals;
mod approvals_flood;
mod approvals_groups;
mod architecture;
mod audit;
mod bad_config;
mod cli;
mod cli_packaging;
mod crash;
mod daemon_loop;
mod definitions;
mod delivery;
mod demo_story;
mod detection;
mod digest;
mod dry_run_agrees;
mod fakes_selftest;
mod faults_aws;
mod faults_slack;
mod fixtures;
mod fleet;
mod heartbeat;
mod hostile_aws;
mod hostile_aws_answers;
mod hostile_logs;
mod hostile_metrics;
mod hostile_retry_after;
mod hostile_secret_files;
mod hostile_slack;
mod hostile_state_db;
mod hostile_stdout;
mod hostile_text;
mod iam_policy;
mod metrics;
mod parallel;
mod polling;
mod readme_schemas;
mod routing;
mod shutdown;
mod slack_outage;
mod socket_mode;
mod state_file;
mod systemd;
