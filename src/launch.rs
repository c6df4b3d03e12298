//! Starts the planned sandbox: the host preparations git would do, the fds bwrap reads, then
//! `exec` of bwrap, so no agentbox process stays around and the exit status is the command's.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result, anyhow};

use crate::bwrap::{FIRST_DATA_FD, Plan, Prep, to_argv};
use crate::sys;

/// Replaces this process with bwrap. Returns only on failure.
pub fn exec(plan: &Plan) -> Result<std::convert::Infallible> {
    for prep in &plan.prep {
        match prep {
            Prep::CreateDir(dir) => fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(e),
                })
                .with_context(|| format!("creating {}", dir.display()))?,
        }
    }
    let (argv, data) = to_argv(plan);
    sys::prepare_exec_fds(FIRST_DATA_FD, &data)?;
    // bwrap needs no environment of its own; the sandbox's is set with --clearenv/--setenv.
    let err = Command::new(&plan.bwrap).args(&argv).env_clear().exec();
    Err(anyhow!(err).context(format!("starting {}", plan.bwrap.display())))
}
