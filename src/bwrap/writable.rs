//! The paths the plan makes writable, for Landlock (the second wall, `crate::landlock`): the
//! shim limits the command's writes to them. Pure: read from the plan's steps.

use std::path::{Path, PathBuf};

use super::{Op, Step};

/// Device nodes a program writes by name (`> /dev/null`, a new pty).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/pts",
];

/// `/run` is a scratch tmpfs, but agentbox binds host paths under it (the proxy's socket
/// directory): Landlock cannot allow a tree and deny a branch, so the whole of it stays
/// unwritable. Nothing the agent needs is written there.
const NOT_WRITABLE: &[&str] = &["/run"];

/// The paths the command may write beneath, from the plan: every read-write bind (the project,
/// `--rw` paths, pins, a worktree's common git dir), the agent's own home, every scratch tmpfs
/// except `/run` and the read-only masks, the device nodes, and `/proc` where debugging is
/// allowed (writing `/proc/PID/mem` is what a debugger does).
pub fn write_paths(steps: &[Step], home: &Path, proc_writable: bool) -> Vec<PathBuf> {
    let read_only: Vec<&Path> = steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::RemountRo(p) => Some(p.as_path()),
            _ => None,
        })
        .collect();
    let mut out: Vec<PathBuf> = Vec::new();
    for step in steps {
        let path = match &step.op {
            Op::Bind(p) => p,
            Op::BindAt { dest, .. }
                if dest == home || dest.starts_with(crate::inside::CACHE_INSIDE) =>
            {
                dest
            }
            Op::Tmpfs { dest, .. }
                if !read_only.contains(&dest.as_path())
                    && !NOT_WRITABLE.iter().any(|n| dest == Path::new(n)) =>
            {
                dest
            }
            _ => continue,
        };
        out.push(path.clone());
    }
    out.extend(DEVICES.iter().map(PathBuf::from));
    if proc_writable {
        out.push("/proc".into());
    }
    out.sort();
    out.dedup();
    // A path beneath another one adds nothing.
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(op: Op) -> Step {
        Step {
            op,
            why: String::new(),
        }
    }

    #[test]
    fn writable_paths_come_from_the_plan() {
        let steps = [
            step(Op::RoBind("/usr".into())),
            step(Op::Tmpfs {
                dest: "/tmp".into(),
                size: None,
            }),
            step(Op::Tmpfs {
                dest: "/run".into(),
                size: None,
            }),
            step(Op::BindAt {
                src: "/run/user/1/agentbox/net-1".into(),
                dest: "/run/agentbox/net".into(),
            }),
            step(Op::BindAt {
                src: "/home/u/.local/share/agentbox/home/claude".into(),
                dest: "/home/u".into(),
            }),
            step(Op::Bind("/home/u/p".into())),
            step(Op::Bind("/home/u/p/.git".into())),
            step(Op::Tmpfs {
                dest: "/home/u/p/secrets".into(),
                size: None,
            }),
            step(Op::RemountRo("/home/u/p/secrets".into())),
            step(Op::Tmpfs {
                dest: "/srv/masked".into(),
                size: None,
            }),
            step(Op::RemountRo("/srv/masked".into())),
            step(Op::Tmpfs {
                dest: "/dev/shm".into(),
                size: None,
            }),
        ];
        let got = write_paths(&steps, Path::new("/home/u"), false);
        let want: Vec<PathBuf> = [
            "/dev/full",
            "/dev/null",
            "/dev/pts",
            "/dev/random",
            "/dev/shm",
            "/dev/tty",
            "/dev/urandom",
            "/dev/zero",
            "/home/u",
            "/tmp",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(got, want);
        let got = write_paths(&steps, Path::new("/home/u"), true);
        assert!(got.contains(&PathBuf::from("/proc")));
        // Without the agent home, the project and its pin are the roots.
        let got = write_paths(&steps, Path::new("/home/v"), false);
        assert!(got.contains(&PathBuf::from("/home/u/p")));
        // (Path::starts_with compares whole components: the pin and the mask are gone.)
        assert!(
            !got.iter()
                .any(|p| p.starts_with("/home/u/p/.git") || p.starts_with("/home/u/p/secrets")),
            "{got:?}"
        );
        assert!(!got.iter().any(|p| p.starts_with("/run")));
    }
}
