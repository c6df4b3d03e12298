//! Raw system calls the escape probes make on purpose, each wrapped so that the probe code
//! stays safe. Every wrapper passes only integers, null pointers, NUL-terminated strings it
//! owns, or buffers sized for the call; the kernel reads or writes nothing else.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use rustix::io::{FdFlags, fcntl_setfd};
use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with};
use rustix::process::{Pid, WaitOptions, test_kill_process, waitpid};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::tcgetwinsize;

/// A syscall's result: its return value, or the errno it failed with.
pub type Sys = Result<i64, i32>;

fn ret(r: libc::c_long) -> Sys {
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

/// A syscall whose arguments are all plain integers (no pointers the kernel follows, or null).
pub fn int_call(nr: libc::c_long, a: [u64; 6]) -> Sys {
    // SAFETY: every argument is an integer or a null pointer; with those the kernel reads and
    // writes no memory of ours.
    ret(unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) })
}

/// A syscall whose arguments are integers and up to three NUL-terminated strings (in the
/// argument slots named by `at`).
pub fn str_call(nr: libc::c_long, ints: [u64; 6], strs: &[(usize, &CStr)]) -> Sys {
    let mut a = ints;
    for (slot, s) in strs {
        a[*slot] = s.as_ptr() as u64;
    }
    // SAFETY: the pointers are to NUL-terminated strings that outlive the call; the kernel only
    // reads them. The other arguments are integers or null.
    ret(unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) })
}

/// A syscall whose argument `slot` points at `buf` (the kernel reads or writes at most
/// `buf.len()` bytes, as `len_slot` says, or a fixed-size struct that fits in it).
pub fn buf_call(nr: libc::c_long, ints: [u64; 6], slot: usize, buf: &mut [u8]) -> Sys {
    let mut a = ints;
    a[slot] = buf.as_mut_ptr() as u64;
    // SAFETY: `buf` is valid for writes of its whole length for the duration of the call, and
    // every caller sizes it for the struct or length the syscall takes.
    ret(unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) })
}

/// `ptrace(PTRACE_TRACEME)` in a forked child, which then exits at once: whether a process may
/// be traced at all, without tracing anything real.
pub fn traceme_in_child() -> Sys {
    // SAFETY: after fork the child calls only async-signal-safe functions (a raw syscall and
    // _exit) and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above.
        let r = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) };
        let code = if r == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(1)
        };
        // SAFETY: see above.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        return ret(-1);
    }
    let code = wait_exit(pid);
    if code == 0 { Ok(0) } else { Err(code) }
}

/// `clone(CLONE_NEWUSER | SIGCHLD)`: the child, if there is one, exits at once.
pub fn clone_newuser() -> Sys {
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
    // SAFETY: a fork-like clone (no CLONE_VM, null stack) with the child exiting immediately
    // through a raw _exit, touching nothing.
    let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    if r == 0 {
        // SAFETY: see above.
        unsafe { libc::_exit(0) };
    }
    let r = ret(r)?;
    wait_exit(r as libc::pid_t);
    Ok(r)
}

/// `clone3` with an all-zero argument struct of the right size (a plain fork); the child
/// exits at once.
pub fn clone3_plain() -> Sys {
    // struct clone_args is 88 bytes in its current form; zeroed means "like fork, no signal".
    let mut args = [0u64; 11];
    // SAFETY: `args` is a valid clone_args the kernel only reads; the child exits at once.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args.as_mut_ptr(),
            std::mem::size_of_val(&args),
        )
    };
    if r == 0 {
        // SAFETY: see above.
        unsafe { libc::_exit(0) };
    }
    let r = ret(r)?;
    wait_exit(r as libc::pid_t);
    Ok(r)
}

fn wait_exit(pid: libc::pid_t) -> i32 {
    // __WALL: a clone child that sends no SIGCHLD is waited for too.
    let all = WaitOptions::from_bits_retain(libc::__WALL as u32);
    match Pid::from_raw(pid).map(|p| waitpid(Some(p), all)) {
        Some(Ok(Some((_, status)))) => status.exit_status().unwrap_or(-1),
        _ => -1,
    }
}

/// Opens a pseudo-terminal pair: (master, slave).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd), i32> {
    let code = |e: rustix::io::Errno| e.raw_os_error();
    let master =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).map_err(code)?;
    grantpt(&master).map_err(code)?;
    unlockpt(&master).map_err(code)?;
    let name = ptsname(&master, Vec::new()).map_err(code)?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(std::ffi::OsStr::from_bytes(name.as_bytes()))
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    Ok((master, slave.into()))
}

/// `ioctl(fd, request, &byte)`, with the request passed as a full 64-bit word (so high bits
/// can be set on purpose).
pub fn ioctl_byte(fd: RawFd, request: u64, byte: &mut u8) -> Sys {
    // SAFETY: the kernel reads or writes at most one byte at the pointer (TIOCSTI reads one;
    // TIOCLINUX reads the subcode byte).
    ret(unsafe { libc::syscall(libc::SYS_ioctl, fd, request, byte as *mut u8) })
}

/// What the child of [`ioctl_byte_on_own_tty`] exits with when it could not take the terminal.
const NO_CTTY: i32 = 255;

/// `ioctl(tty, request, &byte)` from a forked child that has first made `tty` its controlling
/// terminal (setsid, TIOCSCTTY). The kernel refuses TIOCSTI on any terminal but the caller's
/// own (EPERM without CAP_SYS_ADMIN), so only this way does the filter's refusal mean anything.
/// The outer Err: the child could not take the terminal.
pub fn ioctl_byte_on_own_tty(tty: RawFd, request: u64, byte: u8) -> Result<Sys, ()> {
    // SAFETY: after fork the child calls only async-signal-safe functions (raw syscalls and
    // _exit) and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut byte = byte;
        // SAFETY: see above; the ioctl reads one byte at a pointer to our local.
        let code = unsafe {
            if libc::setsid() < 0 || libc::ioctl(tty, libc::TIOCSCTTY, 0) < 0 {
                NO_CTTY
            } else if libc::syscall(libc::SYS_ioctl, tty, request, &mut byte as *mut u8) == 0 {
                0
            } else {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(1)
            }
        };
        // SAFETY: see above.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        return Ok(ret(-1));
    }
    match wait_exit(pid) {
        0 => Ok(Ok(0)),
        NO_CTTY => Err(()),
        code => Ok(Err(code)),
    }
}

/// `ioctl(fd, TIOCGWINSZ)`: the window size, as a normal ioctl that must keep working.
pub fn window_size(fd: BorrowedFd) -> Sys {
    let ws = tcgetwinsize(fd).map_err(|e| e.raw_os_error())?;
    Ok(ws.ws_col.into())
}

/// `socket(family, type, 0)`; the socket, if made, is closed at once.
pub fn socket(family: i32, kind: i32) -> Sys {
    let fd = socket_with(
        AddressFamily::from_raw(family as u16),
        SocketType::from_raw(kind as u32),
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| e.raw_os_error())?;
    Ok(fd.as_raw_fd() as i64)
}

/// Reads 8 bytes of our own memory through `process_vm_readv` (or writes them back with
/// `process_vm_writev`): allowed only where cross-process memory access is.
pub fn process_vm_self(write: bool) -> Sys {
    let mut src = [7u8; 8];
    let mut dst = [0u8; 8];
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    let remote = libc::iovec {
        iov_base: src.as_mut_ptr().cast(),
        iov_len: src.len(),
    };
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: both iovecs describe live 8-byte buffers of this process; the kernel copies
    // between them and touches nothing else.
    let r = unsafe {
        if write {
            libc::process_vm_writev(pid, &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(pid, &local, 1, &remote, 1, 0)
        }
    };
    ret(r as libc::c_long)
}

/// `perf_event_open` for a software clock on this process, user space only (what an
/// unprivileged user may do where `perf_event_paranoid` allows it).
pub fn perf_event_self() -> Sys {
    // struct perf_event_attr, first 64 bytes are enough (PERF_ATTR_SIZE_VER0).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // type = PERF_TYPE_SOFTWARE
    attr[4..8].copy_from_slice(&64u32.to_ne_bytes()); // size = PERF_ATTR_SIZE_VER0
    attr[8..16].copy_from_slice(&0u64.to_ne_bytes()); // config = PERF_COUNT_SW_CPU_CLOCK
    // flags at offset 40: disabled(bit 0) | exclude_kernel(bit 5) | exclude_hv(bit 6)
    attr[40..48].copy_from_slice(&((1u64) | (1 << 5) | (1 << 6)).to_ne_bytes());
    // SAFETY: `attr` is larger than the size field says; the kernel reads that much. The
    // returned fd, if any, is closed below.
    let r = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_mut_ptr(),
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    let r = ret(r)?;
    // SAFETY: a fresh fd we own.
    drop(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
    Ok(r)
}

/// From <linux/perf_event.h>.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// Closes an fd a probe syscall returned (io_uring, fsopen, userfaultfd...).
pub fn close_returned(r: Sys) -> Sys {
    if let Ok(fd) = r {
        // SAFETY: the syscall just created this fd and nothing else holds it.
        drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    r
}

/// Clears close-on-exec on an fd, so a child inherits it (the inherited-fd canary).
pub fn inheritable(fd: &OwnedFd) -> Sys {
    fcntl_setfd(fd, FdFlags::empty()).map_err(|e| e.raw_os_error())?;
    Ok(0)
}

/// `kill(pid, 0)`: does a process exist and may we signal it? A pid that names no single
/// process (0 or negative: a process group) is EINVAL here; probes pass a real one.
pub fn kill0(pid: i32) -> Sys {
    let pid = Pid::from_raw(pid).ok_or(libc::EINVAL)?;
    test_kill_process(pid).map_err(|e| e.raw_os_error())?;
    Ok(0)
}

/// Starts a new session (for the sleeper that tries to outlive the sandbox).
pub fn setsid() -> Sys {
    let sid = rustix::process::setsid().map_err(|e| e.raw_os_error())?;
    Ok(sid.as_raw_nonzero().get().into())
}
