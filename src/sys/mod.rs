//! The only module with `unsafe`: file-descriptor plumbing right before `exec` of bwrap, and
//! (in `probe`) the raw system calls the escape probes make on purpose. Nothing else belongs
//! here; every block says why it is sound.
#![allow(unsafe_code, reason = "the one module the crate-wide deny leaves open")]

pub mod probe;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result, bail};

use rustix::mount::{MountFlags, mount_remount};
use rustix::process::{Pid, Resource, Rlimit, Signal, getrlimit, setrlimit};
use rustix::thread::{
    CapabilitySet, CapabilitySets, clear_ambient_capability_set,
    remove_capability_from_bounding_set, set_capabilities,
};

use crate::error::Fail;
use crate::fds::FdData;

/// `CLOSE_RANGE_CLOEXEC` from <linux/close_range.h> (kernel 5.11).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// A pipe's capacity is at least this, so writing it all before exec cannot block.
const PIPE_MIN_CAPACITY: usize = 4096 * 16;

/// An fd that reads as `data` says.
fn source(data: &FdData) -> Result<OwnedFd> {
    match data {
        FdData::Empty => Ok(File::open("/dev/null").context("opening /dev/null")?.into()),
        FdData::Bytes(bytes) => {
            if bytes.len() > PIPE_MIN_CAPACITY {
                bail!(
                    "a seccomp program of {} bytes does not fit in a pipe",
                    bytes.len()
                );
            }
            let (reader, mut writer) = io::pipe().context("creating a pipe")?;
            writer.write_all(bytes).context("filling a pipe")?;
            drop(writer);
            Ok(reader.into())
        }
    }
}

/// Marks every fd above stderr close-on-exec.
pub fn cloexec_inherited() -> Result<()> {
    cloexec_from(3)
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

/// Raises the soft open-file limit to the hard one (best effort).
pub fn raise_nofile_to_hard() {
    let lim = getrlimit(Resource::Nofile);
    if limit(lim.current) < limit(lim.maximum) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
}

/// Gives the kernel back the whole free pages of the C heap. `agentbox run` calls it once,
/// before it waits for the sandbox: what planning freed (config, scan, git, the plan's text)
/// would otherwise stay resident for the whole run, because glibc only shrinks the heap from
/// its top. Measured: 60-90 KiB of a 6 MiB RSS, every run.
pub fn release_free_heap() {
    // SAFETY: malloc_trim takes no pointer; it locks each of glibc's arenas and releases free
    // pages that no allocation uses (MADV_DONTNEED), which any thread's malloc may run beside.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A limit as a number; rustix says `None` for unlimited (`RLIM_INFINITY`).
fn limit(v: Option<u64>) -> u64 {
    v.unwrap_or(u64::MAX)
}

/// Makes room for `needed` fds, within the hard limit.
fn raise_nofile(needed: u64) -> Result<()> {
    let lim = getrlimit(Resource::Nofile);
    if limit(lim.current) >= needed {
        return Ok(());
    }
    if limit(lim.maximum) < needed {
        bail!(Fail::hint(
            format!(
                "{needed} file descriptors are needed to mask every secret, but the limit is {}",
                limit(lim.maximum)
            ),
            "--unhide GLOB for fixture keys that are not secrets, or raise `ulimit -Hn`",
        ));
    }
    let raised = Rlimit {
        current: Some(needed),
        maximum: lim.maximum,
    };
    setrlimit(Resource::Nofile, raised).context("raising the open-file limit")
}

/// Spawns `cmd` with `data` on fds `first..` in the child only, for a parent that keeps other
/// fds (and threads) of its own. Every other fd of the parent is close-on-exec already (std
/// and tokio open them so); the sources are opened here, close-on-exec too.
pub fn spawn_with_data_fds(
    cmd: &mut std::process::Command,
    first: RawFd,
    data: &[FdData],
) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let sources: Vec<OwnedFd> = data.iter().map(source).collect::<Result<_>>()?;
    let raw: Vec<RawFd> = sources.iter().map(|s| s.as_raw_fd()).collect();
    let end = first + raw.len() as RawFd;
    raise_nofile(end as u64 + 8)?;
    let mut moved: Vec<RawFd> = vec![-1; raw.len()];
    // SAFETY: between fork and exec the closure calls only fcntl and dup2, which are
    // async-signal-safe, on fds of the child; it writes into `moved`, allocated beforehand, and
    // allocates nothing itself.
    unsafe {
        cmd.pre_exec(move || {
            // Move every source above the target range first: a source may sit inside it.
            for (i, &fd) in raw.iter().enumerate() {
                let m = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, end);
                if m < 0 {
                    return Err(io::Error::last_os_error());
                }
                moved[i] = m;
            }
            for (i, &m) in moved.iter().enumerate() {
                // dup2 clears close-on-exec on the new fd: bwrap inherits it.
                if libc::dup2(m, first + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    let child = cmd.spawn().context("spawning")?;
    drop(sources);
    Ok(child)
}

fn set_disposition(handler: libc::sighandler_t) -> Result<()> {
    set_dispositions(&[libc::SIGINT, libc::SIGQUIT], handler)
}

fn set_dispositions(sigs: &[libc::c_int], handler: libc::sighandler_t) -> Result<()> {
    for &sig in sigs {
        // SAFETY: SIG_IGN and SIG_DFL are not functions; setting them runs no code of ours.
        if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error()).context("setting a signal disposition");
        }
    }
    Ok(())
}

/// Ignores SIGINT and SIGQUIT (inherited across exec by bwrap).
pub fn ignore_interrupts() -> Result<()> {
    set_disposition(libc::SIG_IGN)
}

/// Restores the default SIGINT and SIGQUIT (inherited across exec by the agent).
pub fn default_interrupts() -> Result<()> {
    set_disposition(libc::SIG_DFL)
}

/// Restores the default SIGINT, SIGQUIT, SIGTERM and SIGHUP: once the sandbox is gone nothing is
/// left to forward them to, and the exit audit must end at Ctrl-C or a `kill` like any
/// program. This replaces the handlers signal-hook installed (it never removes its own), so
/// no signal-hook registration for these may follow.
pub fn default_terminations() -> Result<()> {
    let sigs = [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];
    set_dispositions(&sigs, libc::SIG_DFL)
}

/// Sends `sig` to `pid`, ignoring failure (the child may be gone already).
/// A pid that is not a single process (0, negative) or a signal rustix does not name sends
/// nothing: every caller passes a child's pid and a signal it caught.
pub fn send_signal(pid: i32, sig: i32) {
    if let (Some(pid), Some(sig)) = (Pid::from_raw(pid), Signal::from_named_raw(sig)) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Enters a new user namespace (the relay's, nested in bwrap's, to give the agent back the
/// user's own uid after the setup that needed uid 0).
pub fn unshare_user() -> Result<()> {
    // SAFETY: unshare takes a flag; the process is single-threaded here, as it requires.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return Err(io::Error::last_os_error()).context("unshare(CLONE_NEWUSER)");
    }
    Ok(())
}

/// Makes `/proc` read-only for this process and its children: a mount namespace of their own
/// (owned by the user namespace just made, where this process has the capability), with the
/// proc mount remounted read-only. Its lock flags (nosuid, nodev, noexec) are kept, as the
/// kernel requires of a mount inherited from a more privileged namespace.
pub fn proc_read_only() -> Result<()> {
    // SAFETY: unshare takes a flag; the process is single-threaded here (CLONE_NEWNS implies
    // an unshared fs_struct).
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error()).context("unshare(CLONE_NEWNS)");
    }
    let flags = MountFlags::BIND
        | MountFlags::RDONLY
        | MountFlags::NOSUID
        | MountFlags::NODEV
        | MountFlags::NOEXEC;
    // A bind remount changes the per-mount flags only; its data string is ignored.
    mount_remount("/proc", flags, "").context("remounting /proc read-only")
}

/// Marks this process not dumpable: a process of the same user may then not ptrace it, open
/// its `/proc/PID/mem` or take its descriptors, unless it holds CAP_SYS_PTRACE in the user
/// namespace this process was started in. Children that exec are dumpable again.
pub fn not_dumpable() -> Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("prctl(PR_SET_DUMPABLE)")
}

/// Drops every capability for good: effective, permitted, inheritable, ambient and bounding.
pub fn drop_all_caps() -> Result<()> {
    // Fails on kernels before 4.3, which have no ambient set to clear.
    let _ = clear_ambient_capability_set();
    for cap in 0..64 {
        // Fails with EINVAL past the kernel's last capability; that is the end of the list.
        if remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)).is_err() {
            break;
        }
    }
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    set_capabilities(None, none).context("capset")?;
    Ok(())
}

/// Spawns `cmd` with SIGINT and SIGQUIT back at their defaults in the child (its parent, the
/// relay, ignores them so that Ctrl-C from the terminal is the agent's alone).
pub fn spawn_with_default_interrupts(
    cmd: &mut std::process::Command,
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure only calls signal(2), which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        })
    };
    cmd.spawn()
}
