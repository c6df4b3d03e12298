//! What the host offers the sandbox beyond the kernel: where /etc/resolv.conf really lives
//! (agentbox binds its target when the network is shared), and which agents are installed, with
//! the profile each gets.

use std::fs;
use std::path::Path;

use super::Check;
use crate::hostenv::Env;
use crate::profile;

/// `/etc/resolv.conf` as agentbox meets it: a file, or a symlink and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resolv {
    Missing,
    File,
    /// `canonical` is None when the link dangles.
    Link {
        target: std::path::PathBuf,
        canonical: Option<std::path::PathBuf>,
    },
}

pub(super) fn resolv_at(path: &Path) -> Resolv {
    match fs::symlink_metadata(path) {
        Err(_) => Resolv::Missing,
        Ok(m) if m.file_type().is_symlink() => Resolv::Link {
            target: fs::read_link(path).unwrap_or_default(),
            canonical: fs::canonicalize(path).ok(),
        },
        Ok(_) => Resolv::File,
    }
}

/// What it means for the sandbox. Pure.
pub(super) fn resolv_check(r: &Resolv) -> Check {
    let name = "resolv.conf";
    match r {
        Resolv::Missing => Check::warn(
            name,
            "/etc/resolv.conf does not exist: with a shared network (--allow-net) names do not \
             resolve, and --net filtered cannot put its resolver in its place",
            vec!["create /etc/resolv.conf (your network manager or systemd-resolved does)".into()],
        ),
        Resolv::File => Check::ok(
            name,
            "/etc/resolv.conf is a file: seen as is with a shared network, replaced by the \
             relay's resolver with --net filtered",
        ),
        Resolv::Link {
            target,
            canonical: None,
        } => Check::warn(
            name,
            format!(
                "/etc/resolv.conf is a symlink to {}, which does not exist: names do not resolve \
                 on the host either",
                target.display()
            ),
            vec![
                "start the resolver that provides it (systemd-resolved?), or make \
                  /etc/resolv.conf a file"
                    .into(),
            ],
        ),
        Resolv::Link {
            target,
            canonical: Some(c),
        } => {
            let where_ = if c.starts_with("/etc") {
                "inside /etc, which the sandbox shows read-only".to_owned()
            } else if c.starts_with("/run") {
                "under /run, an empty tmpfs inside: agentbox binds this file there when the \
                 network is shared, and covers it with the relay's resolver under --net filtered"
                    .to_owned()
            } else {
                format!(
                    "outside /etc: agentbox binds {} read-only when the network is shared, and \
                     covers it with the relay's resolver under --net filtered",
                    c.display()
                )
            };
            Check::ok(
                name,
                format!(
                    "/etc/resolv.conf -> {} ({}), {where_}",
                    target.display(),
                    c.display()
                ),
            )
        }
    }
}

/// One check per installed agent (where its command is, which profile it gets), and one
/// listing those not found.
pub(super) fn agents(env: &Env) -> Vec<Check> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in profile::names() {
        let Some(p) = profile::builtin(name) else {
            continue;
        };
        if !p.is_agent() {
            continue;
        }
        let on_path = p
            .commands
            .iter()
            .find_map(|c| env.which(c).map(|path| (c.clone(), path)));
        match on_path {
            None => missing.push(format!("{name} ({})", p.commands.join(", "))),
            Some((cmd, path)) => {
                let real = fs::canonicalize(&path).ok().filter(|r| *r != path);
                let real = real.map_or(String::new(), |r| format!(" -> {}", r.display()));
                found.push(Check::ok(
                    format!("agent {name}"),
                    format!(
                        "`{cmd}` is {}{real}; `agentbox run -- {cmd}` uses the profile {name}",
                        path.display()
                    ),
                ));
            }
        }
    }
    let detail = match (found.is_empty(), missing.is_empty()) {
        (_, true) => "every agent agentbox has a profile for is installed".to_owned(),
        (true, false) => format!("no agent found on PATH; profiles: {}", missing.join(", ")),
        (false, false) => format!("not found on PATH: {}", missing.join(", ")),
    };
    found.push(Check::ok("agents", detail));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn resolv_conf_cases() {
        let t = tempfile::tempdir().unwrap();
        let dir = fs::canonicalize(t.path()).unwrap();
        let file = dir.join("resolv.conf");
        assert_eq!(resolv_at(&file), Resolv::Missing);
        assert_eq!(resolv_check(&Resolv::Missing).status, Status::Warn);
        fs::write(&file, "nameserver 127.0.0.53\n").unwrap();
        assert_eq!(resolv_at(&file), Resolv::File);
        assert_eq!(resolv_check(&Resolv::File).status, Status::Ok);
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let r = resolv_at(&link);
        assert_eq!(
            r,
            Resolv::Link {
                target: file.clone(),
                canonical: Some(file.clone())
            }
        );
        assert!(resolv_check(&r).detail.contains("binds"));
        let dangling = dir.join("dangling");
        std::os::unix::fs::symlink(dir.join("gone"), &dangling).unwrap();
        assert_eq!(resolv_check(&resolv_at(&dangling)).status, Status::Warn);
        let stub = Resolv::Link {
            target: "../run/systemd/resolve/stub-resolv.conf".into(),
            canonical: Some("/run/systemd/resolve/stub-resolv.conf".into()),
        };
        let c = resolv_check(&stub);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("under /run"), "{}", c.detail);
    }

    #[test]
    fn lists_every_agent_profile() {
        let checks = agents(&Env::read());
        let last = checks.last().unwrap();
        assert_eq!(last.name, "agents");
        // Each agent profile is either found (its own line) or named in the last one.
        for name in profile::names() {
            let p = profile::builtin(name).unwrap();
            if p.is_agent() {
                let own = checks.iter().any(|c| c.name == format!("agent {name}"));
                assert!(own || last.detail.contains(name), "{name}");
            }
        }
    }
}
