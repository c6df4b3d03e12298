//! The process side of the plan: refusals of broad projects, namespaces, the seccomp
//! programs, and the environment. Pure.

use std::ffi::{OsStr, OsString};

use anyhow::Result;

use super::*;
use crate::broad::refuse_broad;
use crate::policy::{BroadProject, EnvPass, NetMode, Policy};
use crate::rules::{ENV_ALLOWED_PREFIXES, ENV_ALLOWLIST};
use crate::seccomp;

pub(super) fn check_broad(policy: &Policy, facts: &HostFacts, b: &mut Builder) -> Result<()> {
    let warnings = refuse_broad(
        policy.broad_project == BroadProject::Allowed,
        &facts.project.dir,
        &facts.project.extra,
        &facts.user.home,
    )?;
    b.warnings.extend(warnings);
    Ok(())
}

pub(super) fn namespaces(policy: &Policy, facts: &HostFacts, f: Features, b: &mut Builder) {
    b.push(
        Op::UnshareUser,
        "own user namespace: no privileges over the host",
    );
    b.push(
        Op::UnsharePid,
        "own pid namespace: host processes are invisible",
    );
    b.push(
        Op::UnshareIpc,
        "own IPC namespace: no host shared memory or semaphores",
    );
    b.push(Op::UnshareUts, "own hostname");
    b.push(
        Op::Hostname("agentbox"),
        "a hostname that says where you are",
    );
    b.push(
        Op::UnshareCgroupTry,
        "own cgroup view where the kernel supports it",
    );
    match policy.net {
        NetMode::None => b.push(
            Op::UnshareNet,
            "own empty network namespace: no network, no host abstract sockets",
        ),
        NetMode::Host => b.notes.push(
            "the host network is shared (--allow-net): the agent can reach any host".to_owned(),
        ),
        NetMode::Filtered => b.push(
            Op::UnshareNet,
            "own network namespace: the only way out is agentbox's proxy, by allowlist",
        ),
    }
    b.push(
        Op::DieWithParent,
        "the sandbox dies when agentbox's parent does",
    );
    // --new-session stops TIOCSTI typing into the parent terminal, but it also detaches the
    // terminal, so a full-screen program never hears of a window resize. On a terminal the
    // seccomp filter refuses TIOCSTI instead.
    if !facts.user.stdin_tty {
        b.push(
            Op::NewSession,
            "no terminal: a new session, so nothing can type into a parent terminal",
        );
    }
    b.push(Op::CapDropAll, "no capabilities, even when started as root");
    if policy.net == NetMode::Filtered {
        super::network::privileges(b);
        return;
    }
    if f.disable_userns && !policy.allow.nested {
        b.push(
            Op::DisableUserns,
            "no nested user namespaces, enforced by the kernel as well as by seccomp",
        );
    }
}

pub(super) fn filters(policy: &Policy, b: &mut Builder) -> Result<()> {
    if policy.allow.debug {
        b.notes.push(
            "--allow-debug: ptrace, process_vm_readv/writev and perf_event_open are allowed; \
             the agent can read and change the memory of any process in the sandbox but the \
             filtered network's relay (not dumpable)"
                .to_owned(),
        );
    }
    if policy.allow.nested {
        b.notes.push(
            "--allow-nested: user namespaces and mounts are allowed inside; more of the \
             kernel is reachable, and a kernel bug there is a way out"
                .to_owned(),
        );
    }
    if policy.net == NetMode::Filtered {
        // agentbox's relay loads the programs itself, after its network setup.
        return Ok(());
    }
    for p in seccomp::programs(policy.allow)? {
        b.push(Op::Seccomp(p.bytes), format!("seccomp: {}", p.why));
    }
    Ok(())
}

pub(super) fn environment(
    policy: &Policy,
    facts: &HostFacts,
    net: Option<&crate::net::session::NetSession>,
    b: &mut Builder,
) {
    b.push(
        Op::ClearEnv,
        "start from an empty environment: tokens stay outside",
    );
    let mut vars: Vec<(Op, &str)> = Vec::new();
    let mut set = |name: OsString, value: OsString, from_host: bool, why: &'static str| {
        let op = Op::SetEnv {
            name,
            value,
            from_host,
        };
        let same = |o: &Op| matches!((o, &op), (Op::SetEnv { name: a, .. }, Op::SetEnv { name: b, .. }) if a == b);
        match vars.iter_mut().find(|v| same(&v.0)) {
            Some(v) => *v = (op, why),
            None => vars.push((op, why)),
        }
    };
    for name in ENV_ALLOWLIST {
        if let Some(v) = facts.user.var(OsStr::new(name)) {
            set(
                name.into(),
                v.to_owned(),
                true,
                "allowlisted: terminal, locale or identity",
            );
        }
    }
    let mut locale: Vec<_> = facts
        .user
        .env
        .vars()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            ENV_ALLOWED_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .collect();
    locale.sort();
    for (k, v) in locale {
        set(k.to_owned(), v.to_owned(), true, "allowlisted: locale");
    }
    set(
        "HOME".into(),
        facts.user.home.clone().into_os_string(),
        false,
        "the (empty) home, at its real path",
    );
    if facts.user.var(OsStr::new("PATH")).is_none() {
        set(
            "PATH".into(),
            "/usr/local/bin:/usr/bin:/bin".into(),
            false,
            "the host has no PATH: a standard one",
        );
    }
    if agent::needs_shims(facts) {
        set(
            "PATH".into(),
            path_inside(facts),
            false,
            "the shim directory first: the agent's executables, where the sandbox shows them",
        );
    }
    for (name, value, why) in super::toolchain::env(facts) {
        set(name, value, false, why);
    }
    if let Some(path) = super::toolchain::path(facts, path_inside(facts)) {
        set(
            "PATH".into(),
            path,
            false,
            "the toolchains' directories the host's PATH lacks, at its end",
        );
    }
    if facts.agent.ssh_agent.is_some() {
        set(
            "SSH_AUTH_SOCK".into(),
            crate::inside::SSH_AGENT_INSIDE.into(),
            false,
            "--ssh-agent",
        );
    }
    if let Some(sock) = &facts.agent.docker {
        let mut v = OsString::from("unix://");
        match facts.agent.docker_proxy {
            Some(_) => v.push(crate::inside::DOCKER_INSIDE),
            None => v.push(sock),
        }
        set("DOCKER_HOST".into(), v, false, "--docker");
    }
    if policy.net == NetMode::Filtered {
        for (name, value, why) in super::network::proxy_env(&policy.filter.rules) {
            set(name.into(), value.into(), false, why);
        }
    }
    if policy.net == NetMode::None {
        for (name, value, why) in super::network::OFFLINE_ENV {
            set(name.into(), value.into(), false, why);
        }
    }
    for pass in &policy.env {
        match pass {
            EnvPass::Inherit(name) => match facts.user.var(name) {
                Some(v) => set(name.clone(), v.to_owned(), true, "--env"),
                None => b.warnings.push(format!(
                    "--env {}: not set on the host, so not set inside",
                    name.to_string_lossy()
                )),
            },
            EnvPass::Set(name, value) => set(name.clone(), value.clone(), false, "--env"),
            EnvPass::IfSet(name) => {
                if let Some(v) = facts.user.var(name) {
                    set(
                        name.clone(),
                        v.to_owned(),
                        true,
                        "the profile's key or endpoint",
                    );
                }
            }
        }
    }
    // After the profile's and the user's: a brokered key is a phantom inside, whatever else
    // asked for it.
    if let Some(net) = net {
        for (name, value, why) in super::network::broker_env(net) {
            if policy.env.iter().any(
                |e| matches!(e, EnvPass::Inherit(n) | EnvPass::Set(n, _) if n == name.as_str()),
            ) {
                b.warnings.push(format!(
                    "--env {name}: the credential broker holds it, the sandbox gets a phantom \
                     (--no-broker passes the real one)"
                ));
            }
            set(name.into(), value.into(), false, why);
        }
    }
    for (op, why) in vars {
        b.push(op, why);
    }
}

/// PATH before the toolchains' additions: the shim directory (when needed), then the host's
/// PATH or, without shims, a standard one.
fn path_inside(facts: &HostFacts) -> OsString {
    let host = facts.user.var(OsStr::new("PATH"));
    let mut path = OsString::new();
    if agent::needs_shims(facts) {
        path.push(crate::inside::SHIM_DIR);
        if host.is_some() {
            path.push(":");
        }
    }
    match host {
        Some(h) => path.push(h),
        None if path.is_empty() => path.push("/usr/local/bin:/usr/bin:/bin"),
        None => {}
    }
    path
}
