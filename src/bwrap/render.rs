//! The plan in bwrap's words: the argv with its data fds, and the commented script that
//! `--dry-run` prints. Pure.

use std::ffi::OsString;
use std::path::Path;

use super::*;
use crate::fds::FdData;

/// bwrap's argv for the plan (without the program name), and what each data fd it reads must
/// hold: the steps that need one read fds 3, 4, ... in order.
pub fn to_argv(plan: &Plan) -> (Vec<OsString>, Vec<FdData<'_>>) {
    let mut argv: Vec<OsString> = Vec::new();
    let mut fds = Vec::new();
    for step in &plan.steps {
        let (opts, fd) = op_args(&step.op, FIRST_DATA_FD + fds.len() as i32);
        fds.extend(fd);
        argv.extend(opts);
    }
    argv.push("--".into());
    argv.extend(plan.command.iter().cloned());
    (argv, fds)
}

/// The first fd number `EmptyFile` steps read.
pub const FIRST_DATA_FD: i32 = 3;

/// One step as the words `--dry-run` prints (data fds shown as `FD`), for `-v`.
pub fn step_words(op: &Op) -> Vec<String> {
    let (args, data) = op_args(op, 0);
    args.iter()
        .map(|a| shell_quote(a))
        .map(|w| {
            if data.is_some() && w == "0" {
                "FD".to_owned()
            } else {
                w
            }
        })
        .collect()
}

/// The options for one op, and what the data fd `fd` must hold when it reads one.
pub(super) fn op_args(op: &Op, fd: i32) -> (Vec<OsString>, Option<FdData<'_>>) {
    let p = |s: &Path| s.as_os_str().to_owned();
    let o = |s: &str| OsString::from(s);
    let v = match op {
        Op::UnshareUser => vec![o("--unshare-user")],
        Op::UnsharePid => vec![o("--unshare-pid")],
        Op::UnshareIpc => vec![o("--unshare-ipc")],
        Op::UnshareUts => vec![o("--unshare-uts")],
        Op::UnshareCgroupTry => vec![o("--unshare-cgroup-try")],
        Op::UnshareNet => vec![o("--unshare-net")],
        Op::Hostname(h) => vec![o("--hostname"), o(h)],
        Op::DieWithParent => vec![o("--die-with-parent")],
        Op::NewSession => vec![o("--new-session")],
        Op::CapDropAll => vec![o("--cap-drop"), o("ALL")],
        Op::DisableUserns => vec![o("--disable-userns")],
        Op::Uid0 => vec![o("--uid"), o("0"), o("--gid"), o("0")],
        Op::CapAdd(cap) => vec![o("--cap-add"), o(cap)],
        Op::BindAt { src, dest } => vec![o("--bind"), p(src), p(dest)],
        Op::DataFile { dest, bytes } => {
            let args = vec![o("--ro-bind-data"), o(&fd.to_string()), p(dest)];
            return (args, Some(FdData::Bytes(bytes)));
        }
        Op::Seccomp(bytes) => {
            let args = vec![o("--add-seccomp-fd"), o(&fd.to_string())];
            return (args, Some(FdData::Bytes(bytes)));
        }
        Op::ClearEnv => vec![o("--clearenv")],
        Op::SetEnv { name, value, .. } => vec![o("--setenv"), name.clone(), value.clone()],
        Op::RoBind(d) => vec![o("--ro-bind"), p(d), p(d)],
        Op::Bind(d) => vec![o("--bind"), p(d), p(d)],
        Op::RoBindAt { src, dest } => vec![o("--ro-bind"), p(src), p(dest)],
        Op::Symlink { target, link } => vec![o("--symlink"), p(target), p(link)],
        Op::Proc(d) => vec![o("--proc"), p(d)],
        Op::Dev(d) => vec![o("--dev"), p(d)],
        Op::DevBind(d) => vec![o("--dev-bind"), p(d), p(d)],
        Op::Tmpfs { dest, size } => {
            let mut v = Vec::new();
            if let Some(s) = size {
                v.extend([o("--size"), o(&s.to_string())]);
            }
            v.extend([o("--tmpfs"), p(dest)]);
            v
        }
        Op::RemountRo(d) => vec![o("--remount-ro"), p(d)],
        Op::EmptyFile(d) => {
            let args = vec![o("--ro-bind-data"), o(&fd.to_string()), p(d)];
            return (args, Some(FdData::Empty));
        }
        // `--perms` applies to the next option only (bwrap 0.5, older than MIN_BWRAP).
        Op::UnreadableFile(d) => {
            let args = vec![
                o("--perms"),
                o("0000"),
                o("--ro-bind-data"),
                o(&fd.to_string()),
                p(d),
            ];
            return (args, Some(FdData::Empty));
        }
        Op::Chdir(d) => vec![o("--chdir"), p(d)],
    };
    (v, None)
}

pub use crate::text::shell_quote;

pub(super) fn is_shell_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The plan as a bash script a user can read, save and run without agentbox.
pub fn script(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str("#!/usr/bin/env bash\n");
    // `env -i`: bwrap's own pid 1 inside keeps the environment bwrap started with, readable in
    // /proc/1/environ; --clearenv cleans only the command's.
    out.push_str("# The sandbox `agentbox run` would start, as a bwrap command.\n");
    out.push_str("# Each option carries its reason. Run this file with bash to start it.\n");
    out.push_str("set -euo pipefail\n");
    for w in &plan.warnings {
        out.push_str(&format!("# warning: {}\n", w.replace('\n', " ")));
    }
    for prep in &plan.prep {
        match prep {
            Prep::CreateDir(d) => out.push_str(&format!(
                "mkdir -p -- {}  # as git does: else the agent could create it with hooks\n",
                shell_quote(d.as_os_str())
            )),
            Prep::CreateHome { dir, subdirs } => {
                let all: Vec<String> = std::iter::once(dir)
                    .chain(subdirs)
                    .map(|d| shell_quote(d.as_os_str()))
                    .collect();
                out.push_str(&format!(
                    "mkdir -p -m 700 -- {}  # the agent's own home\n",
                    all.join(" ")
                ));
            }
            Prep::CreateCache(d) => out.push_str(&format!(
                "mkdir -p -m 700 -- {}  # agentbox's package cache\n",
                shell_quote(d.as_os_str())
            )),
        }
    }
    out.push_str("args=(\n");
    let mut fd = FIRST_DATA_FD;
    let mut redirects = Vec::new();
    for step in &plan.steps {
        let (opts, data) = op_args(&step.op, fd);
        match data {
            Some(FdData::Empty) => redirects.push(format!("{fd}</dev/null")),
            Some(FdData::Bytes(bytes)) => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                redirects.push(format!("{fd}< <(base64 -d <<<'{b64}')"));
            }
            None => {}
        }
        fd += i32::from(data.is_some());
        let mut words: Vec<String> = opts.iter().map(|w| shell_quote(w)).collect();
        if let Op::SetEnv {
            name,
            from_host: true,
            ..
        } = &step.op
            && let Some(n) = name.to_str().filter(|n| is_shell_name(n))
        {
            words[2] = format!("\"${{{n}-}}\"");
        }
        let why = step.why.replace('\n', " ");
        out.push_str(&format!("  {}  # {}\n", words.join(" "), why));
    }
    out.push_str(")\n");
    for n in &plan.notes {
        out.push_str(&format!("# note: {}\n", n.replace('\n', " ")));
    }
    if plan.interactive {
        out.push_str(
            "trap '' INT QUIT  # Ctrl-C is for the agent: bwrap ignores it, the shim restores it\n",
        );
    }
    let cmd: Vec<String> = plan.command.iter().map(|w| shell_quote(w)).collect();
    let mut line = format!(
        "exec env -i {} \"${{args[@]}}\" -- {}",
        shell_quote(plan.bwrap.as_os_str()),
        cmd.join(" ")
    );
    for r in redirects {
        line.push_str(" \\\n  ");
        line.push_str(&r);
    }
    out.push_str(&line);
    out.push('\n');
    out
}
