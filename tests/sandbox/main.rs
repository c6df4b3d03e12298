#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, its helpers too"
)]
//! Integration tests: the real agentbox binary runs the real bwrap, as the current user and,
//! when that is root, also as an unprivileged user (`agentbox-test`, made by `.ci/run`; set
//! AGENTBOX_TEST_USER to use another). Every "blocked" check has its positive control beside it.
//!
//! HOME and the XDG dirs point into a temp dir, so a developer's real files never leak in.
//! The harness (users, the temp world, shared helpers) is in `harness.rs`; one file per concern.

mod harness;

mod allow;
mod audit;
mod broker;
mod broker_attack;
mod cli;
mod docker;
mod doctor;
mod env;
mod escape;
mod files;
mod flags;
mod git;
mod gpu;
mod handoff_attack;
mod hostwrites;
mod limits;
mod net;
mod ports;
mod processes;
mod profiles;
mod project;
mod review;
mod rough;
mod scan;
mod secrets;
mod sshagent;
mod terminal;
mod toolchains;
mod tunnels;
mod userconfig;
