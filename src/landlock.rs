//! Landlock, the second wall: agentbox's shim, inside the sandbox and just before it becomes
//! the command, limits writes to what the plan meant to be writable (the writable roots, the
//! scratch tmpfs mounts, the agent's home, shared memory and the terminal devices). A mistake
//! in the bwrap plan (a bind that should have been read-only, a host directory under a tmpfs)
//! then still cannot become a host write.
//!
//! The planner computes the paths (`bwrap::writable`); `restrict` runs inside the sandbox and
//! changes only the calling process, for good. Landlock adds restrictions, never access: a
//! path it allows but bwrap mounts read-only stays read-only.

use std::path::PathBuf;

use anyhow::{Context, Result};
use landlock::{
    ABI, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
};

/// The running kernel's Landlock ABI version, 0 when it has none (not built in, or not in the
/// boot's `lsm=` list).
pub fn abi() -> u32 {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns the version.
    let r = crate::sys::probe::int_call(libc::SYS_landlock_create_ruleset, [0, 0, 1, 0, 0, 0]);
    r.ok().and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// What `restrict` got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Every right asked for is enforced.
    Full(u32),
    /// Enforced, without the rights this kernel's ABI lacks (truncate, before ABI 3).
    Partial(u32),
    /// This kernel has no usable Landlock: ABI 1 refuses every rename or link across
    /// directories (it cannot be told to allow them), which would break ordinary work.
    Unavailable(u32),
}

/// The oldest ABI worth applying: ABI 2 brought the right to rename and link across
/// directories.
pub const MIN_ABI: u32 = 2;

/// Restricts this process and what it starts: writes only beneath `write`, and to the files
/// on stdin, stdout and stderr that are terminals or (stdout, stderr) files, so a program that
/// reopens `/dev/stdout` still writes where the user pointed it.
pub fn restrict(write: &[PathBuf]) -> Result<Applied> {
    let abi_now = abi();
    if abi_now < MIN_ABI {
        return Ok(Applied::Unavailable(abi_now));
    }
    // Write rights as of ABI 3 (truncate). Not IoctlDev (ABI 5): a terminal reopened by name
    // needs its ioctls. Not ResolveUnix: connecting to a socket writes nothing; the sockets
    // the sandbox shows are the ones it was given on purpose.
    let handled = AccessFs::from_write(ABI::V3);
    let mut paths: Vec<PathBuf> = write.to_vec();
    for fd in 0..=2 {
        let link = PathBuf::from(format!("/proc/self/fd/{fd}"));
        let Ok(meta) = std::fs::metadata(&link) else {
            continue;
        };
        let tty = std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type());
        if tty || (fd > 0 && meta.is_file()) {
            paths.push(link);
        }
    }
    let status = Ruleset::default()
        .handle_access(handled)
        .context("Landlock: the write rights")?
        .create()
        .context("Landlock: creating the ruleset")?
        .add_rules(path_beneath_rules(&paths, handled))
        .context("Landlock: adding the writable paths")?
        .restrict_self()
        .context("Landlock: restricting the sandbox")?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Applied::Full(abi_now),
        RulesetStatus::PartiallyEnforced => Applied::Partial(abi_now),
        RulesetStatus::NotEnforced => Applied::Unavailable(abi_now),
    })
}

/// One line for `doctor` and `agentbox test`.
pub fn describe(abi: u32) -> String {
    match abi {
        0 => "no Landlock in this kernel (Linux 5.19+ with landlock in the lsm= boot list): \
              bwrap's mounts are the only wall"
            .to_owned(),
        1 => "Landlock ABI 1 only (Linux 5.13-5.18): too limited to use (it refuses every \
              rename across directories); bwrap's mounts are the only wall"
            .to_owned(),
        n => format!(
            "Landlock ABI {n}: writes are limited to the writable roots and scratch mounts, \
             a second wall behind bwrap's mounts"
        ),
    }
}
