//! The only module with `unsafe`: file-descriptor plumbing right before `exec` of bwrap.
//! It must not do anything else; every block says why it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use anyhow::{Context, Result, bail};

use crate::error::Fail;

/// `CLOSE_RANGE_CLOEXEC` from <linux/close_range.h> (kernel 5.11).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Leaves exactly fds 0-2 and `first..first+count` open across exec, the latter each reading
/// /dev/null (bwrap copies each into an empty read-only file). Every other fd this process
/// inherited (a `3</` from the caller, a leaked socket) is marked close-on-exec, so it never
/// reaches bwrap or the sandbox.
pub fn prepare_exec_fds(first: RawFd, count: usize) -> Result<()> {
    cloexec_from(3)?;
    let end = first as u64 + count as u64;
    raise_nofile(end + 8)?;
    let null = File::open("/dev/null").context("opening /dev/null")?;
    // Move our /dev/null out of the way of the target range before filling it.
    // SAFETY: F_DUPFD_CLOEXEC only reads its integer arguments; `null` is open for the call.
    let src = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, end as libc::c_int) };
    if src < 0 {
        return Err(io::Error::last_os_error()).context("duplicating /dev/null");
    }
    // Close the original now: it may sit inside the target range, and closing it later would
    // close the copy placed there.
    drop(null);
    for i in 0..count {
        let target = first + i as RawFd;
        // SAFETY: dup2 onto a number in our reserved range; whatever was there was marked
        // close-on-exec above and is not used again by this process, which execs next. The new
        // fd is not close-on-exec, so bwrap inherits it.
        if unsafe { libc::dup2(src, target) } < 0 {
            return Err(io::Error::last_os_error()).context("placing a data fd for bwrap");
        }
    }
    Ok(())
}

fn cloexec_from(first: RawFd) -> Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on fds; it closes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .context("listing /proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC on an fd number; harmless if it was the (now closed)
        // directory fd of the listing above, which fails with EBADF and is ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Makes room for `needed` fds, within the hard limit.
fn raise_nofile(needed: u64) -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error()).context("reading the open-file limit");
    }
    if lim.rlim_cur >= needed {
        return Ok(());
    }
    if lim.rlim_max < needed {
        bail!(Fail::hint(
            format!(
                "{needed} file descriptors are needed to mask every secret, but the limit is {}",
                lim.rlim_max
            ),
            "--unhide GLOB for fixture keys that are not secrets, or raise `ulimit -Hn`",
        ));
    }
    lim.rlim_cur = needed;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error()).context("raising the open-file limit");
    }
    Ok(())
}
