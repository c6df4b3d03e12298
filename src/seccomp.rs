//! The seccomp denylist, compiled to raw BPF in Rust (seccompiler), for bwrap's
//! `--add-seccomp-fd`. Default allow; the dangerous calls fail with the errno a library expects,
//! so programs fall back instead of crashing. Pure: it builds bytes and touches nothing.
//!
//! A filter has one answer, so the list is split by answer into several programs; the kernel
//! runs them all and the strictest answer wins. Each syscall is in at most one program.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What the user opted out of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allow {
    /// ptrace, process_vm_*, perf_event_open, pidfd_getfd and a writable /proc (PID/mem):
    /// debuggers and profilers.
    pub debug: bool,
    /// user namespaces and mounts: agents that run their own sandbox (Codex).
    pub nested: bool,
}

/// One compiled program and what it does, for `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub why: &'static str,
    pub bytes: Vec<u8>,
}

impl Program {
    /// The program as instructions, for loading it in-process (the filtered-network relay).
    pub fn bpf(&self) -> BpfProgram {
        self.bytes
            .chunks_exact(8)
            .map(|c| seccompiler::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect()
    }
}

/// Loads every program into this process (all threads), for good: the relay does this itself,
/// after the namespace setup the programs forbid, right before it starts the agent.
pub fn apply(allow: Allow) -> Result<()> {
    for p in programs(allow)? {
        seccompiler::apply_filter_all_threads(&p.bpf()).context("loading a seccomp program")?;
    }
    Ok(())
}

/// Syscall groups, each with the errno it gets and why.
struct Group {
    errno: i32,
    why: &'static str,
    calls: Vec<(i64, Vec<SeccompRule>)>,
}

const PER_LINUX: u64 = 0x0000;
const PER_LINUX32: u64 = 0x0008;
const PER_QUERY: u64 = 0xffff_ffff;
#[allow(
    clippy::unnecessary_cast,
    reason = "the ioctl numbers are c_ulong on glibc and c_int on musl: cast once, here"
)]
pub const TIOCSTI: u64 = libc::TIOCSTI as u64;
#[allow(clippy::unnecessary_cast, reason = "as TIOCSTI")]
pub const TIOCLINUX: u64 = libc::TIOCLINUX as u64;

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).context("seccomp condition")
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule> {
    SeccompRule::new(conds).context("seccomp rule")
}

fn always(nr: i64) -> (i64, Vec<SeccompRule>) {
    (nr, Vec::new())
}

/// The EPERM group: the Flatpak-grade list from THREATS.md.
fn eperm(allow: Allow) -> Result<Group> {
    use libc::*;
    let mut calls = vec![
        // Kernel log and accounting: leak kernel addresses, change host state.
        always(SYS_syslog),
        always(SYS_acct),
        always(SYS_quotactl),
        // Kernel keyrings are not namespaced: they hold the user's login secrets.
        always(SYS_add_key),
        always(SYS_keyctl),
        always(SYS_request_key),
        // NUMA policy calls: host-wide effects and a history of kernel bugs.
        always(SYS_move_pages),
        always(SYS_mbind),
        always(SYS_get_mempolicy),
        always(SYS_set_mempolicy),
        always(SYS_migrate_pages),
        // eBPF and userfaultfd: large kernel attack surface, used in most recent exploits.
        always(SYS_bpf),
        always(SYS_userfaultfd),
        // Rebooting into another kernel, loading modules.
        always(SYS_kexec_load),
        always(SYS_kexec_file_load),
        always(SYS_init_module),
        always(SYS_finit_module),
        always(SYS_delete_module),
        // Opens any file by handle, bypassing the mount namespace (the "shocker" escape).
        always(SYS_open_by_handle_at),
        // Terminal injection: TIOCSTI types into the parent terminal (CVE-2017-5226), TIOCLINUX
        // does the same on a VT (CVE-2023-28100). Compared on the low 32 bits, as the kernel
        // reads the command, so high bits set above them do not slip past (CVE-2019-10063).
        (
            SYS_ioctl,
            vec![
                rule(vec![cond(1, SeccompCmpOp::Eq, TIOCSTI)?])?,
                rule(vec![cond(1, SeccompCmpOp::Eq, TIOCLINUX)?])?,
            ],
        ),
        // Personalities other than Linux can turn off ASLR or map page zero.
        (
            SYS_personality,
            vec![rule(vec![
                cond(0, SeccompCmpOp::Ne, PER_LINUX)?,
                cond(0, SeccompCmpOp::Ne, PER_LINUX32)?,
                cond(0, SeccompCmpOp::Ne, PER_QUERY)?,
            ])?],
        ),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        // Old interfaces with a history of bugs (LDT, a.out loader).
        always(SYS_modify_ldt),
        always(SYS_uselib),
    ]);
    if !allow.debug {
        calls.extend([
            // Reading or steering other processes of the same user: their memory, and
            // (pidfd_getfd) a copy of any fd they hold, as ptrace would give it.
            always(SYS_ptrace),
            always(SYS_process_vm_readv),
            always(SYS_process_vm_writev),
            always(SYS_perf_event_open),
            always(SYS_pidfd_getfd),
        ]);
    }
    if !allow.nested {
        calls.extend([
            // New namespaces and mounts: the kernel surface that most container escapes use.
            always(SYS_unshare),
            always(SYS_setns),
            always(SYS_mount),
            always(SYS_umount2),
            always(SYS_pivot_root),
            always(SYS_chroot),
            (
                SYS_clone,
                vec![rule(vec![cond(
                    0,
                    SeccompCmpOp::MaskedEq(CLONE_NEWUSER as u64),
                    CLONE_NEWUSER as u64,
                )?])?],
            ),
        ]);
    }
    Ok(Group {
        errno: EPERM,
        why: "EPERM: keyrings, kernel log, modules, bpf, NUMA, terminal injection, \
              personality, debugging and namespaces (unless opted in)",
        calls,
    })
}

/// The ENOSYS group: libraries take "not implemented" as a cue to fall back.
fn enosys(allow: Allow) -> Group {
    use libc::*;
    // clone3 passes its flags in memory a filter cannot read, so CLONE_NEWUSER could hide
    // there; glibc falls back to clone, which the EPERM group checks.
    let mut calls = vec![always(SYS_clone3)];
    // io_uring runs file and network operations that seccomp never sees.
    calls.extend(
        [
            SYS_io_uring_setup,
            SYS_io_uring_enter,
            SYS_io_uring_register,
        ]
        .map(always),
    );
    if !allow.nested {
        // The new mount API (CVE-2021-41133: it dodged Flatpak's mount filter).
        calls.extend(
            [
                SYS_open_tree,
                SYS_move_mount,
                SYS_fsopen,
                SYS_fsconfig,
                SYS_fsmount,
                SYS_fspick,
                SYS_mount_setattr,
            ]
            .map(always),
        );
    }
    Group {
        errno: ENOSYS,
        why: "ENOSYS: clone3, io_uring and the new mount API, so libraries fall back",
        calls,
    }
}

/// The EAFNOSUPPORT group: socket families other than UNIX, INET, INET6 and NETLINK
/// (AF_VSOCK reaches the hypervisor, AF_PACKET and AF_ALG are frequent kernel bug sources).
fn families() -> Result<Group> {
    use libc::*;
    let allowed = [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK];
    let conds = allowed
        .iter()
        .map(|&f| cond(0, SeccompCmpOp::Ne, f as u64))
        .collect::<Result<Vec<_>>>()?;
    Ok(Group {
        errno: EAFNOSUPPORT,
        why: "EAFNOSUPPORT: socket families other than UNIX, INET, INET6, NETLINK",
        calls: vec![(SYS_socket, vec![rule(conds)?])],
    })
}

fn arch() -> Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH).context("seccomp: unsupported architecture")
}

fn to_bytes(program: &BpfProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * 8);
    for ins in program {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

fn compile(group: Group) -> Result<Program> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> = group.calls.into_iter().collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(group.errno as u32),
        arch()?,
    )
    .context("building a seccomp filter")?;
    let program: BpfProgram = filter.try_into().context("compiling a seccomp filter")?;
    Ok(Program {
        why: group.why,
        bytes: to_bytes(&program),
    })
}

/// On x86_64 the x32 ABI reaches the same kernel through syscall numbers with bit 30 set, which
/// a filter keyed on x86_64 numbers would never match: refuse them all. (Each program above
/// already kills any process that calls in with another architecture, such as i386.)
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> Program {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let prog: [(u16, u8, u8, u32); 6] = [
        (LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        (JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (RET_K, 0, 0, RET_ALLOW), // other arches: the programs above decide
        (LD_W_ABS, 0, 0, 0),      // seccomp_data.nr
        (JGE_K, 0, 1, X32_SYSCALL_BIT),
        (RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
    ];
    let mut bytes = Vec::new();
    for (code, jt, jf, k) in prog.iter().chain(&[(RET_K, 0, 0, RET_ALLOW)]) {
        bytes.extend_from_slice(&code.to_ne_bytes());
        bytes.push(*jt);
        bytes.push(*jf);
        bytes.extend_from_slice(&k.to_ne_bytes());
    }
    Program {
        why: "EPERM: x32 syscall numbers, which would bypass the other programs",
        bytes,
    }
}

/// Every program, in the order bwrap should load them.
pub fn programs(allow: Allow) -> Result<Vec<Program>> {
    let mut v = vec![
        compile(eperm(allow)?)?,
        compile(enosys(allow))?,
        compile(families()?)?,
    ];
    #[cfg(target_arch = "x86_64")]
    v.push(x32_guard());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a BPF program the way the kernel would, for one syscall, enough to check our
    /// programs: loads, jumps on constants and masks, returns.
    fn eval(bytes: &[u8], nr: i64, args: [u64; 6]) -> u32 {
        let ins: Vec<(u16, u8, u8, u32)> = bytes
            .chunks(8)
            .map(|c| {
                (
                    u16::from_ne_bytes([c[0], c[1]]),
                    c[2],
                    c[3],
                    u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        let arch: u32 = match std::env::consts::ARCH {
            "x86_64" => 62 | 0xc000_0000,
            _ => 183 | 0xc000_0000,
        };
        // struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }
        let mut data = Vec::new();
        data.extend_from_slice(&(nr as u32).to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let word = |off: u32| {
            let o = off as usize;
            u32::from_ne_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]])
        };
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let (code, jt, jf, k) = ins[pc];
            pc += 1;
            match code {
                0x20 => a = word(k),      // ld [k]
                0x54 => a &= k,           // and #k
                0x05 => pc += k as usize, // ja
                0x06 => return k,         // ret #k
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let hit = match code {
                        0x15 => a == k,
                        0x25 => a > k,
                        0x35 => a >= k,
                        _ => a & k != 0,
                    };
                    pc += if hit { jt } else { jf } as usize;
                }
                other => panic!("opcode {other:#x} not modelled"),
            }
        }
    }

    fn verdict(nr: i64, args: [u64; 6], allow: Allow) -> Option<i32> {
        let mut worst: Option<i32> = None;
        for p in programs(allow).unwrap() {
            let r = eval(&p.bytes, nr, args);
            match r & 0xffff_0000 {
                0x7fff_0000 => {}
                0x0005_0000 => worst = worst.or(Some((r & 0xffff) as i32)),
                other => panic!("unexpected action {other:#x}"),
            }
        }
        worst
    }

    const NONE: [u64; 6] = [0; 6];

    #[test]
    fn denies_what_threats_lists_and_allows_the_rest() {
        let d = Allow::default();
        use libc::*;
        assert_eq!(verdict(SYS_keyctl, NONE, d), Some(EPERM));
        assert_eq!(verdict(SYS_ptrace, NONE, d), Some(EPERM));
        assert_eq!(verdict(SYS_unshare, NONE, d), Some(EPERM));
        assert_eq!(verdict(SYS_clone3, NONE, d), Some(ENOSYS));
        assert_eq!(verdict(SYS_io_uring_setup, NONE, d), Some(ENOSYS));
        assert_eq!(verdict(SYS_fsopen, NONE, d), Some(ENOSYS));
        // Controls: ordinary calls pass.
        assert_eq!(verdict(SYS_read, NONE, d), None);
        assert_eq!(verdict(SYS_getpid, NONE, d), None);
        assert_eq!(verdict(SYS_clone, [SIGCHLD as u64, 0, 0, 0, 0, 0], d), None);
    }

    #[test]
    fn argument_rules() {
        let d = Allow::default();
        use libc::*;
        let clone_user = (CLONE_NEWUSER | SIGCHLD) as u64;
        assert_eq!(
            verdict(SYS_clone, [clone_user, 0, 0, 0, 0, 0], d),
            Some(EPERM)
        );
        let tiocsti = super::TIOCSTI;
        assert_eq!(verdict(SYS_ioctl, [0, tiocsti, 0, 0, 0, 0], d), Some(EPERM));
        let high = tiocsti | (1 << 32);
        assert_eq!(verdict(SYS_ioctl, [0, high, 0, 0, 0, 0], d), Some(EPERM));
        assert_eq!(
            verdict(SYS_ioctl, [0, super::TIOCLINUX, 0, 0, 0, 0], d),
            Some(EPERM)
        );
        assert_eq!(verdict(SYS_ioctl, [0, TIOCGWINSZ, 0, 0, 0, 0], d), None);
        for fam in [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK] {
            assert_eq!(verdict(SYS_socket, [fam as u64, 1, 0, 0, 0, 0], d), None);
        }
        for fam in [AF_VSOCK, AF_ALG, AF_PACKET, AF_BLUETOOTH] {
            let v = verdict(SYS_socket, [fam as u64, 1, 0, 0, 0, 0], d);
            assert_eq!(v, Some(EAFNOSUPPORT), "family {fam}");
        }
        assert_eq!(
            verdict(SYS_personality, [PER_QUERY, 0, 0, 0, 0, 0], d),
            None
        );
        assert_eq!(
            verdict(SYS_personality, [0x0040000, 0, 0, 0, 0, 0], d),
            Some(EPERM)
        );
    }

    #[test]
    fn opt_ins_remove_exactly_their_group() {
        use libc::*;
        let debug = Allow {
            debug: true,
            nested: false,
        };
        assert_eq!(verdict(SYS_ptrace, NONE, debug), None);
        assert_eq!(verdict(SYS_perf_event_open, NONE, debug), None);
        assert_eq!(verdict(SYS_pidfd_getfd, NONE, debug), None);
        assert_eq!(verdict(SYS_unshare, NONE, debug), Some(EPERM));
        let nested = Allow {
            debug: false,
            nested: true,
        };
        assert_eq!(verdict(SYS_unshare, NONE, nested), None);
        assert_eq!(verdict(SYS_mount, NONE, nested), None);
        assert_eq!(verdict(SYS_fsopen, NONE, nested), None);
        assert_eq!(verdict(SYS_ptrace, NONE, nested), Some(EPERM));
        assert_eq!(verdict(SYS_pidfd_getfd, NONE, nested), Some(EPERM));
        assert_eq!(verdict(SYS_keyctl, NONE, nested), Some(EPERM));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_numbers_are_refused() {
        let d = Allow::default();
        assert_eq!(
            verdict(0x4000_0000 | libc::SYS_getpid, NONE, d),
            Some(libc::EPERM)
        );
    }
}
