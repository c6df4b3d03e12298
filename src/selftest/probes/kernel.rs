//! Probes of the kernel surface the seccomp programs close: debugging, keyrings, namespaces,
//! the new mount API, io_uring and friends.

use std::fs;
use std::os::fd::AsRawFd;

use super::*;

pub(super) fn syscalls() -> Vec<Probe> {
    use libc::*;
    let ns = "namespaces";
    let dbg = "debugging";
    let key = "keyring";
    let kern = "kernel";
    vec![
        p("ptrace", dbg, Blocked, "ptrace is refused", |_| {
            fails(raw::traceme_in_child())
        }),
        p(
            "process-vm-readv",
            dbg,
            Blocked,
            "process_vm_readv is refused",
            |_| fails(raw::process_vm_self(false)),
        ),
        p(
            "process-vm-writev",
            dbg,
            Blocked,
            "process_vm_writev is refused",
            |_| fails(raw::process_vm_self(true)),
        ),
        p(
            "perf-event-open",
            dbg,
            Blocked,
            "perf_event_open is refused",
            |_| fails(raw::perf_event_self()),
        ),
        p(
            "pidfd-getfd",
            dbg,
            Blocked,
            "pidfd_getfd (copying another process's fd) is refused",
            |_| {
                // On this process itself, which the kernel would always allow.
                let pidfd =
                    match raw::int_call(SYS_pidfd_open, [std::process::id() as u64, 0, 0, 0, 0, 0])
                    {
                        Ok(fd) => fd,
                        Err(e) => return allowed(format!("pidfd_open failed: {}", errno_text(e))),
                    };
                let r = raw::close_returned(raw::int_call(
                    SYS_pidfd_getfd,
                    [pidfd as u64, 0, 0, 0, 0, 0],
                ));
                raw::close_returned(Ok(pidfd)).ok();
                fails_with(r, EPERM)
            },
        ),
        p(
            "proc-mem-write",
            dbg,
            Blocked,
            "/proc/PID/mem cannot be opened for writing",
            |_| io_fails(fs::OpenOptions::new().write(true).open("/proc/self/mem")),
        ),
        p(
            "proc-mem-read",
            dbg,
            Allowed,
            "/proc/self/mem still opens for reading (sanitizers read it)",
            |_| io_fails(fs::File::open("/proc/self/mem")),
        ),
        p(
            "keyctl",
            key,
            Blocked,
            "the session keyring is unreachable",
            |_| {
                // KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, without creating it.
                fails(raw::int_call(SYS_keyctl, [0, (-3i64) as u64, 0, 0, 0, 0]))
            },
        ),
        p("add-key", key, Blocked, "no key can be added", |_| {
            let (t, d) = (cstr("user"), cstr("agentbox-probe"));
            // payload NULL, length 0, KEY_SPEC_PROCESS_KEYRING.
            let ints = [0, 0, 0, 0, (-2i64) as u64, 0];
            fails(raw::str_call(SYS_add_key, ints, &[(0, &t), (1, &d)]))
        }),
        p(
            "request-key",
            key,
            Blocked,
            "request_key is refused",
            |_| {
                let (t, d) = (cstr("user"), cstr("agentbox-probe"));
                fails(raw::str_call(SYS_request_key, [0; 6], &[(0, &t), (1, &d)]))
            },
        ),
        p(
            "unshare-user",
            ns,
            Blocked,
            "no nested user namespace (unshare)",
            |_| {
                fails(raw::int_call(
                    SYS_unshare,
                    [CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
                ))
            },
        ),
        p(
            "clone-newuser",
            ns,
            Blocked,
            "no nested user namespace (clone)",
            |_| fails(raw::clone_newuser()),
        ),
        p(
            "unshare-mount",
            ns,
            Blocked,
            "no new mount namespace",
            |_| {
                fails(raw::int_call(
                    SYS_unshare,
                    [CLONE_NEWNS as u64, 0, 0, 0, 0, 0],
                ))
            },
        ),
        p(
            "setns",
            ns,
            Blocked,
            "setns is refused by the filter",
            |_| {
                let Ok(f) = fs::File::open("/proc/self/ns/user") else {
                    return blocked("no /proc/self/ns/user");
                };
                fails_with(
                    raw::int_call(SYS_setns, [f.as_raw_fd() as u64, 0, 0, 0, 0, 0]),
                    EPERM,
                )
            },
        ),
        p("mount", ns, Blocked, "mount is refused", |_| {
            let (src, dst, fs) = (cstr("none"), cstr("/tmp"), cstr("tmpfs"));
            fails(raw::str_call(
                SYS_mount,
                [0; 6],
                &[(0, &src), (1, &dst), (2, &fs)],
            ))
        }),
        p("chroot", ns, Blocked, "chroot is refused", |_| {
            let root = cstr("/");
            fails(raw::str_call(SYS_chroot, [0; 6], &[(0, &root)]))
        }),
        p("pivot-root", ns, Blocked, "pivot_root is refused", |_| {
            let dot = cstr(".");
            fails(raw::str_call(
                SYS_pivot_root,
                [0; 6],
                &[(0, &dot), (1, &dot)],
            ))
        }),
        p(
            "clone3",
            ns,
            Blocked,
            "clone3 answers ENOSYS (its flags are unfilterable)",
            |_| fails_with(raw::clone3_plain(), ENOSYS),
        ),
        p(
            "fsopen",
            ns,
            Blocked,
            "the new mount API is off: fsopen",
            |_| {
                let t = cstr("tmpfs");
                fails_with(
                    raw::close_returned(raw::str_call(SYS_fsopen, [0; 6], &[(0, &t)])),
                    ENOSYS,
                )
            },
        ),
        p(
            "fsmount",
            ns,
            Blocked,
            "the new mount API is off: fsmount",
            |_| {
                fails_with(
                    raw::int_call(SYS_fsmount, [u64::MAX, 0, 0, 0, 0, 0]),
                    ENOSYS,
                )
            },
        ),
        p(
            "fsconfig",
            ns,
            Blocked,
            "the new mount API is off: fsconfig",
            |_| {
                fails_with(
                    raw::int_call(SYS_fsconfig, [u64::MAX, 0, 0, 0, 0, 0]),
                    ENOSYS,
                )
            },
        ),
        p(
            "fspick",
            ns,
            Blocked,
            "the new mount API is off: fspick",
            |_| {
                let root = cstr("/");
                let r = raw::str_call(SYS_fspick, [AT_FDCWD as u64, 0, 0, 0, 0, 0], &[(1, &root)]);
                fails_with(raw::close_returned(r), ENOSYS)
            },
        ),
        p(
            "open-tree",
            ns,
            Blocked,
            "the new mount API is off: open_tree",
            |_| {
                let root = cstr("/");
                let r = raw::str_call(
                    SYS_open_tree,
                    [AT_FDCWD as u64, 0, 0, 0, 0, 0],
                    &[(1, &root)],
                );
                fails_with(raw::close_returned(r), ENOSYS)
            },
        ),
        p(
            "move-mount",
            ns,
            Blocked,
            "the new mount API is off: move_mount",
            |_| {
                let e = cstr("");
                let ints = [u64::MAX, 0, u64::MAX, 0, 0, 0];
                fails_with(
                    raw::str_call(SYS_move_mount, ints, &[(1, &e), (3, &e)]),
                    ENOSYS,
                )
            },
        ),
        p(
            "mount-setattr",
            ns,
            Blocked,
            "the new mount API is off: mount_setattr",
            |_| {
                let e = cstr("");
                let r = raw::str_call(SYS_mount_setattr, [u64::MAX, 0, 0, 0, 0, 0], &[(1, &e)]);
                fails_with(r, ENOSYS)
            },
        ),
        p(
            "io-uring-setup",
            kern,
            Blocked,
            "io_uring is off: setup",
            |_| {
                let mut params = [0u8; 120];
                fails_with(
                    raw::close_returned(raw::buf_call(
                        SYS_io_uring_setup,
                        [1, 0, 0, 0, 0, 0],
                        1,
                        &mut params,
                    )),
                    ENOSYS,
                )
            },
        ),
        p(
            "io-uring-enter",
            kern,
            Blocked,
            "io_uring is off: enter",
            |_| {
                fails_with(
                    raw::int_call(SYS_io_uring_enter, [u64::MAX, 0, 0, 0, 0, 0]),
                    ENOSYS,
                )
            },
        ),
        p(
            "io-uring-register",
            kern,
            Blocked,
            "io_uring is off: register",
            |_| {
                fails_with(
                    raw::int_call(SYS_io_uring_register, [u64::MAX, 0, 0, 0, 0, 0]),
                    ENOSYS,
                )
            },
        ),
        p("bpf", kern, Blocked, "bpf is refused", |_| {
            let mut attr = [0u8; 128];
            fails(raw::close_returned(raw::buf_call(
                SYS_bpf,
                [5, 0, 128, 0, 0, 0],
                1,
                &mut attr,
            )))
        }),
        p(
            "userfaultfd",
            kern,
            Blocked,
            "userfaultfd is refused",
            |_| {
                fails(raw::close_returned(raw::int_call(
                    SYS_userfaultfd,
                    [O_CLOEXEC as u64, 0, 0, 0, 0, 0],
                )))
            },
        ),
        p(
            "syslog",
            kern,
            Blocked,
            "the kernel log is unreadable",
            |_| {
                let mut buf = [0u8; 256];
                // SYSLOG_ACTION_READ_ALL
                fails(raw::buf_call(SYS_syslog, [3, 0, 256, 0, 0, 0], 1, &mut buf))
            },
        ),
        p("kexec-load", kern, Blocked, "kexec_load is refused", |_| {
            fails(raw::int_call(SYS_kexec_load, [0; 6]))
        }),
        p(
            "init-module",
            kern,
            Blocked,
            "no kernel module can be loaded",
            |_| {
                let e = cstr("");
                fails(raw::str_call(SYS_init_module, [0; 6], &[(2, &e)]))
            },
        ),
        p(
            "open-by-handle",
            kern,
            Blocked,
            "open_by_handle_at is refused",
            |_| {
                let mut handle = [0u8; 16];
                fails(raw::buf_call(
                    SYS_open_by_handle_at,
                    [AT_FDCWD as u64, 0, 0, 0, 0, 0],
                    1,
                    &mut handle,
                ))
            },
        ),
        p(
            "personality",
            kern,
            Blocked,
            "personality cannot turn off ASLR",
            |_| {
                // ADDR_NO_RANDOMIZE
                fails(raw::int_call(SYS_personality, [0x0040000, 0, 0, 0, 0, 0]))
            },
        ),
        p(
            "x32-abi",
            kern,
            Blocked,
            "x32 syscall numbers do not slip past the filter",
            |_| {
                if cfg!(target_arch = "x86_64") {
                    fails(raw::int_call(0x4000_0000 | SYS_getpid, [0; 6]))
                } else {
                    blocked("no x32 ABI on this architecture")
                }
            },
        ),
        p(
            "personality-query",
            kern,
            Allowed,
            "personality can still be queried",
            |_| fails(raw::int_call(SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0])),
        ),
    ]
}
