//! What the plan protects: files the host runs later made read-only (every directory above
//! them, up to the writable root, pinned), secrets masked, and the size check against bwrap's
//! argument limit. Pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::*;
use crate::error::Fail;
use crate::secrets::{Found, Kind};

/// bwrap refuses more than 9000 arguments (`MAX_ARGS`); each mask, pin or read-only bind takes
/// three. Say so, with the fix, instead of letting bwrap fail with its own exit status.
pub(super) fn check_size(b: &Builder) -> Result<()> {
    const BWRAP_MAX_ARGS: usize = 9000;
    const MARGIN: usize = 500; // the command's own arguments and agentbox's later additions
    let count: usize = b.steps.iter().map(|s| op_args(&s.op, 0).0.len()).sum();
    if count + MARGIN > BWRAP_MAX_ARGS {
        let masks = b
            .steps
            .iter()
            .filter(|s| matches!(s.op, Op::EmptyFile(_) | Op::UnreadableFile(_)))
            .count();
        let protected = b
            .steps
            .iter()
            .filter(|s| s.why.starts_with("pinned") || s.why.starts_with("read-only: "))
            .count();
        let hint = if masks >= protected {
            "--unhide the test fixtures that are not secrets, e.g. --unhide 'testdata/*.pem'"
        } else {
            "run the agent in a smaller part of the project (--project DIR): each nested git \
             repository and file the host runs later costs a few mounts"
        };
        return Err(Fail::hint(
            format!(
                "the sandbox needs {count} bwrap arguments ({masks} masked files, {protected} \
                 read-only or pinned paths), more than bwrap accepts"
            ),
            hint,
        )
        .into());
    }
    Ok(())
}

/// Is `path` inside a writable root (where the agent could change it)?
pub(super) fn in_writable(facts: &HostFacts, steps: &[Step], path: &Path) -> bool {
    writable_root(facts, steps, path).is_some()
}

/// The deepest writable root or read-write bind that holds `path`.
fn writable_root<'a>(facts: &'a HostFacts, steps: &'a [Step], path: &Path) -> Option<&'a Path> {
    facts
        .project
        .roots
        .iter()
        .map(|r| r.path.as_path())
        .chain(steps.iter().filter_map(|s| match &s.op {
            Op::Bind(p) => Some(p.as_path()),
            _ => None,
        }))
        .filter(|r| path.starts_with(r))
        .max_by_key(|r| depth(r))
}

/// Files the host runs later made read-only, and every directory above each of them pinned.
///
/// A read-only bind is a mount point, which `rename()` refuses (EBUSY); but renaming a directory
/// above it is allowed, and would let the agent move the protected copy away and put a doctored
/// one where it was. So every directory from the writable root down to a protected item is
/// bound onto itself (pinned) as well, whatever the item's source (the scan, git's model, ...).
/// Pins and read-only binds are emitted in path order, so a directory is always mounted before
/// anything inside it.
pub(super) fn protect(facts: &HostFacts, b: &mut Builder) -> Result<()> {
    let mut ro: Vec<(PathBuf, String)> = Vec::new();
    let mut create: Vec<PathBuf> = Vec::new();
    let mut symlinks: Vec<&Path> = Vec::new();
    for root in &facts.project.roots {
        // With the scripts the protected files launch (`host::refs`): never symlinks, they are
        // resolved already.
        for f in root
            .runs_later
            .iter()
            .chain(&root.runs_later_targets)
            .chain(&root.referenced)
        {
            match f.kind {
                Kind::Symlink => symlinks.push(&f.path),
                _ => ro.push((f.path.clone(), f.why.clone())),
            }
        }
        for repo in &root.git {
            if let Some(a) = repo.anomalies.first() {
                // A repository nested in the project may be the agent's own making (an earlier
                // run's `git init`): then the fix is to remove it, not to repair it.
                let nested = repo.dot_git.parent() != Some(facts.project.dir.as_path());
                let hint = match nested {
                    true => format!(
                        "{}; or, if you did not make this repository, remove it: rm -rf -- {}",
                        a.hint,
                        crate::text::shell_quote(repo.dot_git.as_os_str())
                    ),
                    false => a.hint.clone(),
                };
                return Err(Fail::hint(format!("refusing to start: {}", a.what), hint).into());
            }
            for w in &repo.warnings {
                if !b.warnings.contains(w) {
                    b.warnings.push(w.clone());
                }
            }
            for (path, kind, why) in &repo.entries {
                match kind {
                    Some(Kind::Symlink) => symlinks.push(path),
                    Some(_) => ro.push((path.clone(), (*why).to_owned())),
                    None if path.ends_with("hooks") => {
                        create.push(path.clone());
                        ro.push((path.clone(), format!("{why} (created empty, as git does)")));
                    }
                    None => {}
                }
            }
            for (path, kind, why) in &repo.config_paths {
                if !in_writable(facts, &b.steps, path) {
                    continue;
                }
                if facts.project.roots.iter().any(|r| r.path == *path) {
                    return Err(Fail::hint(
                        format!(
                            "refusing to start: {why} names {} itself: git on the host would \
                             run what the agent puts there, and agentbox cannot make it \
                             read-only",
                            path.display()
                        ),
                        "point it at a directory inside the project",
                    )
                    .into());
                }
                if kind.is_none() {
                    return Err(Fail::hint(
                        format!(
                            "refusing to start: {why} names {}, which does not exist: the \
                             agent could create it, and git on the host would obey it",
                            path.display()
                        ),
                        format!(
                            "create it first: {} {}",
                            missing_fix(why),
                            crate::text::shell_quote(path.as_os_str())
                        ),
                    )
                    .into());
                }
                ro.push((path.clone(), format!("named by {why}")));
            }
        }
    }
    // Every source of read-only items adds to `ro` above this line: the pins below follow
    // whatever is there.
    ro.retain(|(p, _)| in_writable(facts, &b.steps, p));
    // Only what agentbox protects is created, and only inside a writable root.
    create.retain(|p| in_writable(facts, &b.steps, p));
    b.prep.extend(create.into_iter().map(Prep::CreateDir));
    // path -> None: a pin; Some(why): read-only. Read-only wins over a pin of the same path.
    let mut mounts: BTreeMap<PathBuf, Option<String>> = BTreeMap::new();
    for (p, _) in &ro {
        if let Some(root) = writable_root(facts, &b.steps, p) {
            for dir in p.ancestors().skip(1).take_while(|a| *a != root) {
                mounts.entry(dir.to_owned()).or_insert(None);
            }
        }
    }
    for (p, why) in ro {
        let slot = mounts.entry(p).or_insert(None);
        if slot.is_none() {
            *slot = Some(why);
        }
    }
    for (p, why) in mounts {
        match why {
            Some(why) => b.push(Op::RoBind(p), format!("read-only: {why}")),
            None => b.push(
                Op::Bind(p),
                "pinned (a mount point): cannot be renamed away and replaced",
            ),
        }
    }
    for link in symlinks {
        b.warnings.push(format!(
            "{} is a symlink: it is not followed, but it cannot be made read-only either; \
             replace it with a regular file or directory",
            link.display()
        ));
    }
    Ok(())
}

/// How to create a missing path git's configuration names, by the key that names it: a
/// directory for a hooks or template directory (a file there would make git run no hook at
/// all, silently), an empty file for a program or an included config.
fn missing_fix(why: &str) -> &'static str {
    let dir_keys = ["core.hookspath", "init.templatedir"];
    match dir_keys.iter().any(|k| why.starts_with(k)) {
        true => "mkdir -p",
        false => "touch",
    }
}

pub(super) fn mask(facts: &HostFacts, f: Features, b: &mut Builder) {
    let mut masked: Vec<&Found> = Vec::new();
    for root in &facts.project.roots {
        for s in &root.secrets {
            // A symlinked secret was resolved to its target: mask that only where the sandbox
            // would show it; elsewhere it dangles inside.
            if visible(&b.steps, &s.path) {
                masked.push(s);
            }
        }
    }
    masked.sort_by(|a, b| a.path.cmp(&b.path));
    masked.dedup_by(|a, b| a.path == b.path || a.path.starts_with(&b.path));
    // A secret known by its directory's name (`.kube/config`): the directory is pinned, or
    // renaming it in one run would unmask the file for the next.
    let mut by_dir: Vec<&Path> = masked
        .iter()
        .filter(|s| crate::secrets::named_by_its_dir(&s.path))
        .filter_map(|s| s.path.parent())
        .filter(|d| in_writable(facts, &b.steps, d))
        .collect();
    by_dir.sort();
    by_dir.dedup();
    for d in by_dir {
        b.push(
            Op::Bind(d.to_owned()),
            "pinned (a mount point): the secret in it is known by this directory's name",
        );
    }
    for s in &masked {
        let why = format!("masked: {}", s.why);
        match s.kind {
            Kind::Dir => {
                b.push(
                    Op::Tmpfs {
                        dest: s.path.clone(),
                        size: f.tmpfs_size.then_some(MASK_SIZE),
                    },
                    why,
                );
                b.push(Op::RemountRo(s.path.clone()), "masked directory: read-only");
            }
            _ => b.push(Op::EmptyFile(s.path.clone()), why),
        }
    }
    if !masked.is_empty() {
        let names: Vec<String> = masked
            .iter()
            .take(5)
            .map(|s| {
                crate::text::printable(
                    s.path
                        .strip_prefix(&facts.project.dir)
                        .unwrap_or(&s.path)
                        .as_os_str(),
                )
            })
            .collect();
        let more = masked.len().saturating_sub(names.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        b.notes.push(format!(
            "masking {} secret path(s): {}{more} (--unhide GLOB shows one, --dry-run lists all)",
            masked.len(),
            names.join(", ")
        ));
    }
    for p in &facts.system.secrets {
        b.push(
            Op::UnreadableFile(p.clone()),
            "masked unreadable, as on the host: password hashes, host keys, private files",
        );
    }
    for d in &facts.system.secret_dirs {
        b.push(
            Op::Tmpfs {
                dest: d.clone(),
                size: f.tmpfs_size.then_some(MASK_SIZE),
            },
            "masked: a system directory others may not read (private keys)",
        );
        b.push(Op::RemountRo(d.clone()), "masked directory: read-only");
    }
}
