//! The command, as the sandbox will resolve it: which candidate on PATH it can see, judged by
//! replaying the mount steps. Pure.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;

use super::*;
use crate::error::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, Fail};
use crate::host::Candidate;
use crate::policy::Policy;

/// How a host path appears inside, by replaying the mount steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Visible,
    Masked,
    Absent,
}

/// What the sandbox shows at `path`, judged from the steps (the last mount covering it wins).
pub fn seen(steps: &[Step], path: &Path) -> Seen {
    seen_depth(steps, path, 0)
}

pub(super) fn seen_depth(steps: &[Step], path: &Path, depth: u8) -> Seen {
    for step in steps.iter().rev() {
        match &step.op {
            Op::RoBind(d)
            | Op::Bind(d)
            | Op::DevBind(d)
            | Op::RoBindAt { dest: d, .. }
            | Op::BindAt { dest: d, .. }
            | Op::DataFile { dest: d, .. }
                if path.starts_with(d) =>
            {
                return Seen::Visible;
            }
            Op::Tmpfs { dest, .. } | Op::Proc(dest) | Op::Dev(dest) if path.starts_with(dest) => {
                return if path == dest {
                    Seen::Visible
                } else {
                    Seen::Absent
                };
            }
            Op::EmptyFile(d) | Op::UnreadableFile(d) if path.starts_with(d) => {
                return Seen::Masked;
            }
            Op::Symlink { target, link } if path.starts_with(link) && depth < 8 => {
                let base = link.parent().unwrap_or(Path::new("/"));
                let rest = path.strip_prefix(link).unwrap_or(Path::new(""));
                let resolved = base.join(target).join(rest);
                return seen_depth(steps, &crate::host::git::normalize(&resolved), depth + 1);
            }
            _ => {}
        }
    }
    Seen::Absent
}

pub(super) fn visible(steps: &[Step], path: &Path) -> bool {
    seen(steps, path) == Seen::Visible
}

/// Resolves the command as the sandbox's execvp will (first visible executable on PATH), and
/// says so before launching when the host would have run something else.
pub(super) fn check_command(
    policy: &Policy,
    facts: &HostFacts,
    steps: &[Step],
) -> Result<(Vec<OsString>, Option<String>)> {
    let name = policy.command[0].to_string_lossy().into_owned();
    // Exposed through the shim directory (the profile's executables).
    if agent::needs_shims(facts)
        && facts
            .agent
            .exposed
            .first()
            .is_some_and(|e| e.name == policy.command[0])
    {
        return Ok((policy.command.clone(), None));
    }
    let usable = |c: &Candidate| visible(steps, &c.path) && visible(steps, &c.canonical);
    let first_exec = facts.agent.command.iter().find(|c| c.executable);
    let inside = facts
        .agent
        .command
        .iter()
        .find(|c| c.executable && usable(c));
    // The directory, or the file itself where `--ro DIR` would be refused as too broad
    // (a tool directly in the home).
    let show = |file: &Path| {
        let dir = file.parent().unwrap_or(file);
        match too_broad_to_show(dir, &facts.user.home) {
            Some(_) => file.to_owned(),
            None => dir.to_owned(),
        }
    };
    let hint_for = |c: &Candidate| {
        let mut dirs = vec![show(&c.path)];
        let target_dir = show(&c.canonical);
        if !dirs.contains(&target_dir) {
            dirs.push(target_dir);
        }
        dirs.iter()
            .map(|d| format!("--ro {}", shell_quote(d.as_os_str())))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match (first_exec, inside) {
        (_, Some(run)) => {
            let warn = first_exec.filter(|f| f.path != run.path).map(|f| {
                format!(
                    "on the host `{name}` is {}, which the sandbox cannot see; inside it runs {} \
                     (add {} to run the host's)",
                    f.path.display(),
                    run.path.display(),
                    hint_for(f)
                )
            });
            Ok((policy.command.clone(), warn))
        }
        (Some(host), None) => Err(Fail::with_code(
            EXIT_NOT_FOUND,
            format!(
                "`{name}` is {}, which the sandbox cannot see (the home is empty inside)",
                if host.path == host.canonical {
                    host.path.display().to_string()
                } else {
                    format!("{} -> {}", host.path.display(), host.canonical.display())
                }
            ),
            Some(format!("agentbox run {} -- {name} ...", hint_for(host))),
        )
        .into()),
        (None, None) if !facts.agent.command.is_empty() => Err(Fail::with_code(
            EXIT_NOT_EXECUTABLE,
            format!("`{name}` is not executable"),
            Some(format!(
                "chmod +x {}",
                shell_quote(facts.agent.command[0].path.as_os_str())
            )),
        )
        .into()),
        (None, None) => Err(Fail::with_code(
            EXIT_NOT_FOUND,
            format!("`{name}`: command not found"),
            Some("check the name, or that its directory is on PATH".to_owned()),
        )
        .into()),
    }
}
