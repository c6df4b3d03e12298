//! The agent profile's part of the plan: its own home instead of an empty one, the runtime it
//! reads from the real home, the executables it needs (exposed read-only where they really
//! are, and found through a shim directory on PATH), and the opt-in integrations. Pure.

use std::path::{Path, PathBuf};

use super::{Builder, Op, Prep};
use crate::host::HostFacts;
use crate::inside::{SHIM_DIR, SSH_AGENT_INSIDE};

/// Whether the sandbox would not show `p` without help: it is in the home (empty inside, or
/// the agent's own).
pub fn hidden(facts: &HostFacts, p: &Path) -> bool {
    p.starts_with(&facts.user.home)
}

/// Whether any executable needs the shim directory.
pub fn needs_shims(facts: &HostFacts) -> bool {
    facts
        .agent
        .exposed
        .iter()
        .any(|e| hidden(facts, &e.path) || hidden(facts, &e.canonical))
}

/// The home step: the agent's persistent home, or an empty tmpfs.
pub fn home(facts: &HostFacts, tmpfs: Op, b: &mut Builder) {
    match &facts.agent.home {
        Some(dir) => {
            b.prep.push(Prep::CreateHome {
                dir: dir.clone(),
                subdirs: facts.agent.state_dirs.clone(),
            });
            b.push(
                Op::BindAt {
                    src: dir.clone(),
                    dest: facts.user.home.clone(),
                },
                "the agent's own home, persistent (its login and settings), apart from yours",
            );
        }
        None => b.push(
            tmpfs,
            "an empty home: no keys, tokens, shell rc files or other projects",
        ),
    }
}

/// What to show of a real file so it runs: its directory (a package, a versions directory),
/// or the file alone where the directory is a general `bin` that may hold anything, or where
/// showing it would show too much: the home itself or a directory directly in it (`~/mytool`
/// beside `~/secret.txt`, `~/.ssh/helper` beside the keys), or anything broad.
fn exposure_root(facts: &HostFacts, canonical: &Path) -> PathBuf {
    let parent = canonical.parent().unwrap_or(canonical);
    let generic_bin = parent.file_name().is_some_and(|n| n == "bin")
        && (parent.parent() == Some(&facts.user.home)
            || parent.parent() == Some(&facts.user.home.join(".local")));
    // A package directory is at least two levels below the home (`~/.nvm/versions/...`,
    // `~/.local/share/claude/versions`); one level up is the home's own first level.
    let shallow = parent
        .strip_prefix(&facts.user.home)
        .is_ok_and(|rest| rest.components().count() < 2);
    let broad = shallow
        || facts.user.home.starts_with(parent)
        || crate::broad::too_broad(parent, &facts.user.home).is_some()
        || crate::broad::too_broad_to_show(parent, &facts.user.home).is_some();
    if generic_bin || broad {
        canonical.to_owned()
    } else {
        parent.to_owned()
    }
}

/// Runtime paths and executables, read-only; symlinks for them in the shim directory.
pub fn runtime(facts: &HostFacts, b: &mut Builder) {
    for p in &facts.agent.runtime {
        b.push(Op::RoBind(p.clone()), "the profile's runtime, read-only");
    }
    if !needs_shims(facts) {
        return;
    }
    let mut shown: Vec<PathBuf> = Vec::new();
    for e in &facts.agent.exposed {
        if hidden(facts, &e.canonical) {
            let root = exposure_root(facts, &e.canonical);
            if !shown.iter().any(|s| root.starts_with(s)) {
                b.push(
                    Op::RoBind(root.clone()),
                    format!("what {} runs, read-only", e.name.to_string_lossy()),
                );
                shown.push(root);
            }
        }
        b.push(
            Op::Symlink {
                target: e.canonical.clone(),
                link: Path::new(SHIM_DIR).join(&e.name),
            },
            "found first on PATH: the host's PATH names it where the sandbox shows nothing",
        );
    }
}

/// `--gpu`: the device nodes with device access, the sysfs the drivers read, read-only.
pub fn gpu(facts: &HostFacts, b: &mut Builder) {
    let Some(g) = &facts.agent.gpu else {
        return;
    };
    for n in &g.nodes {
        b.push(Op::DevBind(n.clone()), "--gpu: a GPU device node");
    }
    for s in &g.sys {
        b.push(
            Op::RoBind(s.clone()),
            "--gpu: sysfs the GPU driver reads to find its device, read-only",
        );
    }
    b.notes.push(format!(
        "--gpu: the GPU ({}) is handed over: its device nodes, so the kernel's GPU driver is \
         reachable from the sandbox, and GPU memory is not cleared between processes",
        g.vendors.join(", ")
    ));
}

/// `--ssh-agent` and `--docker`: sockets handed over on purpose, each with what it gives.
pub fn integrations(facts: &HostFacts, b: &mut Builder) {
    if let Some(proxy) = &facts.agent.ssh_proxy {
        b.push(
            Op::BindAt {
                src: proxy.socket.clone(),
                dest: SSH_AGENT_INSIDE.into(),
            },
            "--ssh-agent: agentbox's filtering agent, not yours: listing and signing with the \
             named keys only",
        );
        let hosts = match proxy.filter.hosts.is_empty() {
            true => "any SSH login those keys allow".to_owned(),
            false => format!("only logins to {}", proxy.filter.hosts.join(", ")),
        };
        b.notes.push(format!(
            "--ssh-agent: the agent can sign with {} of your ssh-agent ({hosts}) while the run \
             lasts; no other key, no adding, removing or locking{}",
            proxy.filter.names.join(", "),
            match proxy.filter.confirm {
                true => "; each signature asked first",
                false => "",
            }
        ));
    } else if let Some(sock) = &facts.agent.ssh_agent {
        b.push(
            Op::BindAt {
                src: sock.clone(),
                dest: SSH_AGENT_INSIDE.into(),
            },
            "--ssh-agent: the agent socket only; the key files stay hidden",
        );
        b.warnings.push(
            "--ssh-agent=raw: the agent can have your ssh-agent sign with every key it holds \
             (git push, and any SSH login those keys allow), add and remove keys and lock it, \
             while the run lasts"
                .to_owned(),
        );
    }
    if let Some(k) = &facts.agent.known_hosts {
        b.push(
            Op::RoBindAt {
                src: k.clone(),
                dest: facts.user.home.join(".ssh/known_hosts"),
            },
            "--ssh-agent: known hosts, read-only, so host keys are checked",
        );
    }
    if let (Some(ours), Some(theirs)) = (&facts.agent.docker_proxy, &facts.agent.docker) {
        b.push(
            Op::BindAt {
                src: ours.clone(),
                dest: crate::inside::DOCKER_INSIDE.into(),
            },
            "--docker: agentbox's Docker filter, not the daemon's socket",
        );
        b.notes.push(format!(
            "--docker: the agent can use the Docker daemon at {} through agentbox's filter: \
             containers, images, networks and volumes, but no privileged container, host \
             namespace, device or bind outside the project; its containers reach the network",
            theirs.display()
        ));
    } else if let Some(sock) = &facts.agent.docker {
        b.push(
            Op::BindAt {
                src: sock.clone(),
                dest: sock.clone(),
            },
            "--docker: the Docker socket (root-equivalent on the host)",
        );
        b.warnings.push(format!(
            "--docker=raw: {} is root on the host: a container the agent starts can mount /, so \
             this sandbox no longer holds",
            sock.display()
        ));
    }
}
