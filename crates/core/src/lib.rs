//! approval-watch's decisions, with no I/O: the domain types ([`model`]), which pipelines a
//! cycle reads ([`poll`]) and which are unreadable or deleted ([`read_failures`]), what changed
//! and what is due ([`reconcile`], [`remind`], [`working_hours`], [`digest`]), what Slack is
//! told ([`render`]), and approving from Slack: its words ([`verdict`]) and what its buttons
//! carry ([`interaction`]). Every function here
//! takes `now` and never reads a clock, a file or a socket; this crate's `Cargo.toml` has no
//! dependency that could (see ARCHITECTURE.md, "Decisions are pure").

pub mod digest;
pub mod interaction;
pub mod model;
pub mod poll;
pub mod read_failures;
pub mod reconcile;
pub mod remind;
pub mod render;
pub mod verdict;
pub mod working_hours;
