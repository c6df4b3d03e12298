//! agentbox as a library: the pipeline `Cli -> Policy -> HostFacts -> plan -> argv -> exec`,
//! one concept per module. The binary (`main.rs`) only parses, dispatches and reports.
#![deny(unsafe_code)]

pub mod allow;
pub mod audit;
pub mod broad;
pub mod bwrap;
pub mod caches;
pub mod cli;
pub mod commands;
pub mod config;
pub mod docker;
pub mod doctor;
pub mod error;
pub mod fds;
pub mod homeclean;
pub mod host;
pub mod hostenv;
pub mod hostfs;
pub mod inside;
pub mod landlock;
pub mod launch;
pub mod limits;
pub mod login;
pub mod net;
pub mod pickup;
pub mod policy;
pub mod ports;
pub mod profile;
pub mod projectfile;
pub mod rough;
pub mod rules;
pub mod rundir;
pub mod runlock;
pub mod seccomp;
pub mod secrets;
pub mod selftest;
pub mod shim;
pub mod sshagent;
mod stale;
mod sys;
pub mod text;
pub mod toolchain;
