//! Probes of the process: environment, host processes, signals, inherited fds.

use std::fs;

use super::*;

pub(super) fn environment() -> Vec<Probe> {
    const C: &str = "environment";
    vec![
        p(
            "env-canary",
            C,
            Blocked,
            "a secret exported on the host is not inherited",
            |c| match std::env::var_os(&c.canary_env) {
                Some(_) => allowed(format!("{} is set", c.canary_env)),
                None => blocked("not set"),
            },
        ),
        p(
            "env-secrets",
            C,
            Blocked,
            "no token-like variable except those passed",
            |c| {
                let leaks: Vec<String> = std::env::vars_os()
                    .filter_map(|(k, _)| k.into_string().ok())
                    .filter(|k| {
                        let u = k.to_ascii_uppercase();
                        [
                            "TOKEN",
                            "SECRET",
                            "PASSWORD",
                            "API_KEY",
                            "CREDENTIAL",
                            "ACCESS_KEY",
                        ]
                        .iter()
                        .any(|w| u.contains(w))
                    })
                    .filter(|k| !c.passed_env.contains(k))
                    .collect();
                if leaks.is_empty() {
                    blocked("none")
                } else {
                    allowed(leaks.join(", "))
                }
            },
        ),
        p(
            "env-pid1",
            C,
            Blocked,
            "pid 1's environment holds no host secret",
            |c| match fs::read("/proc/1/environ") {
                Ok(b) if String::from_utf8_lossy(&b).contains(&c.canary_env) => {
                    allowed("the canary is in /proc/1/environ")
                }
                Ok(_) => blocked("clean"),
                Err(e) => blocked(e.to_string()),
            },
        ),
        p("env-path", C, Allowed, "PATH and HOME are set", |_| match (
            std::env::var_os("PATH"),
            std::env::var_os("HOME"),
        ) {
            (Some(_), Some(_)) => allowed("set"),
            _ => blocked("missing"),
        }),
    ]
}

/// Each process's argv, as separate words.
pub(super) fn proc_cmdlines() -> Vec<(i32, Vec<String>)> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = fs::read(e.path().join("cmdline")).ok()?;
        let words = cmd
            .split(|&b| b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned());
        Some((pid, words.collect()))
    })
    .collect()
}

pub(super) fn processes() -> Vec<Probe> {
    const C: &str = "processes";
    vec![
        p(
            "proc-host",
            C,
            Blocked,
            "host processes are not in /proc",
            |c| {
                // The marker is a whole argv word of the host process (inside it only appears
                // within the probe context).
                match proc_cmdlines()
                    .iter()
                    .find(|(_, argv)| argv.contains(&c.host_marker))
                {
                    Some((pid, _)) => allowed(format!("host process visible as pid {pid}")),
                    None => blocked(format!(
                        "{} processes, none of the host's",
                        proc_cmdlines().len()
                    )),
                }
            },
        ),
        p(
            "proc-kill-host",
            C,
            Blocked,
            "a host process cannot be signalled",
            |c| {
                let mine = proc_cmdlines()
                    .iter()
                    .any(|(pid, argv)| *pid == c.host_pid && argv.contains(&c.host_marker));
                match raw::kill0(c.host_pid) {
                    Ok(_) if mine => allowed(format!("kill({}, 0) reached it", c.host_pid)),
                    Ok(_) => blocked("that pid is a sandbox process"),
                    Err(e) => blocked(errno_text(e)),
                }
            },
        ),
        p(
            "proc-pid1",
            C,
            Blocked,
            "pid 1 is the sandbox's own init, not the host's",
            |_| match fs::read("/proc/1/cmdline") {
                Ok(b) if String::from_utf8_lossy(&b).contains("bwrap") => blocked("pid 1 is bwrap"),
                Ok(b) => allowed(format!("pid 1 is {}", String::from_utf8_lossy(&b))),
                Err(e) => blocked(e.to_string()),
            },
        ),
        p(
            "uts-hostname",
            C,
            Blocked,
            "the host's name is hidden (own UTS namespace)",
            |_| match fs::read_to_string("/proc/sys/kernel/hostname") {
                Ok(h) if h.trim() == "agentbox" => blocked("hostname is agentbox"),
                Ok(h) => allowed(format!("hostname is {}", h.trim())),
                Err(e) => blocked(e.to_string()),
            },
        ),
        p(
            "proc-self",
            C,
            Allowed,
            "a process can inspect itself",
            |_| io_fails(fs::read("/proc/self/status")),
        ),
        p("spawn", C, Allowed, "starting a child process works", |c| {
            let r = std::process::Command::new(&c.self_exe)
                .arg("--version")
                .output();
            match r {
                Ok(o) if o.status.success() => allowed("spawned"),
                Ok(o) => blocked(format!("exit {:?}", o.status.code())),
                Err(e) => blocked(e.to_string()),
            }
        }),
        p(
            "leftover-spawn",
            C,
            Allowed,
            "a detached process can start (it must die at exit)",
            |c| {
                let r = std::process::Command::new(&c.self_exe)
                    .args(["__sleeper", &c.leftover])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
                io_fails(r)
            },
        ),
        p(
            "fd-inherited",
            C,
            Blocked,
            "no inherited file descriptor but 0-2",
            |c| {
                let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
                    .map(|rd| {
                        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                // The listing itself holds one fd: only a readable link to something else counts.
                let extra: Vec<String> = fds
                    .iter()
                    .filter(|&&fd| fd > 2)
                    .filter_map(|fd| {
                        let t = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
                        (!t.starts_with("/proc")).then(|| format!("{fd} -> {}", t.display()))
                    })
                    .collect();
                let canary = fds.contains(&c.canary_fd)
                    && extra
                        .iter()
                        .any(|e| e.starts_with(&format!("{} ", c.canary_fd)));
                if extra.is_empty() && !canary {
                    blocked("only 0, 1, 2")
                } else {
                    allowed(extra.join(", "))
                }
            },
        ),
    ]
}
