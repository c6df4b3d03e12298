//! The project's side of the host: the project and the `--ro`/`--rw` paths (canonical,
//! refused when too broad, before anything walks them), and each writable root's scan: its
//! secrets, its runs-later files and the scripts they launch, its git repositories. Reads,
//! never writes.
//!
//! Everything found here is in a writable root, so attacker-controlled: it may only narrow
//! what the sandbox shows (masks, read-only pins), never widen it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::git::kind_at;
use super::{User, canonical, git, refs};
use crate::error::Fail;
use crate::policy::{Access, BroadProject, Policy, Secrets};
use crate::secrets::{self, Found, Kind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The project directory (canonical).
    pub dir: PathBuf,
    /// `--ro` and `--rw` paths, canonical, in the order given.
    pub extra: Vec<(PathBuf, Access)>,
    /// The project first, then each `--rw` path.
    pub roots: Vec<Root>,
}

impl Project {
    /// The project and paths `policy` names, checked, and what the scan of each writable root
    /// finds. `system_secrets` are the masked system files: a hard link to one in a root is
    /// masked too.
    pub fn probe(policy: &Policy, user: &User, system_secrets: &[PathBuf]) -> Result<Project> {
        Project::probe_beside(policy, user, |_| Ok(system_secrets.to_vec()))
    }

    /// `probe`, running `meanwhile` once git's calls have started, right before the scan:
    /// it gets the writable roots (canonical, the project first) and returns the masked system
    /// files, which the scan is the first to need. What it does (the `/etc` walk as root,
    /// about 2 ms; bwrap's and the agent's probes) then runs while git does.
    pub fn probe_beside(
        policy: &Policy,
        user: &User,
        meanwhile: impl FnOnce(&[PathBuf]) -> Result<Vec<PathBuf>>,
    ) -> Result<Project> {
        let project_raw = policy.project.clone().unwrap_or_else(|| user.cwd.clone());
        let project = canonical(&project_raw, "project directory")?;
        if !project.is_dir() {
            bail!(Fail::hint(
                format!("project {} is not a directory", project.display()),
                "--project DIR names the directory the agent may write",
            ));
        }
        writable_by_user(
            &project,
            "project directory",
            "run in a directory of your own (--project DIR); to only read this one, add \
             --ro DIR",
        )?;
        let extra = policy
            .extra
            .iter()
            .map(|e| Ok((canonical(&e.path, "path given to --ro/--rw")?, e.access)))
            .collect::<Result<Vec<_>>>()?;
        for (p, _) in extra.iter().filter(|e| e.1 == Access::ReadWrite) {
            writable_by_user(p, "--rw path", "pass it with --ro to show it read-only")?;
        }
        // Before the scan below: a project such as $HOME is refused without walking it first.
        crate::broad::refuse_broad(
            policy.broad_project == BroadProject::Allowed,
            &project,
            &extra,
            &user.home,
        )?;
        let matcher = secrets::Matcher::new(
            policy.secrets == Secrets::Hidden,
            &policy.hide,
            &policy.unhide,
        )?;
        let writable: Vec<&Path> = std::iter::once(project.as_path())
            .chain(
                extra
                    .iter()
                    .filter(|e| e.1 == Access::ReadWrite)
                    .map(|e| e.0.as_path()),
            )
            .collect();
        let writable_roots: Vec<PathBuf> = writable.iter().map(|p| p.to_path_buf()).collect();
        config_outside(user, &writable_roots)?;
        let git_host = git::GitHost::find(
            &user.env,
            &user.home,
            &writable_roots,
            &super::agentbox_areas(user),
        );
        // git reads the top repositories' configuration while the scan runs.
        let early: Vec<git::Reads> = writable
            .iter()
            .map(|r| git::start_early(r, &git_host))
            .collect();
        // A hard link in a writable root to a masked system file (root can make one to
        // /etc/shadow) is that file by another name: the scan masks it too.
        let linked: Vec<(u64, u64)> = meanwhile(&writable_roots)?
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .filter(|m| std::os::unix::fs::MetadataExt::nlink(m) > 1)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            })
            .collect();
        let reports = secrets::scan_roots(&writable, &matcher, &linked)?;
        let mut roots: Vec<Root> = writable
            .iter()
            .zip(reports)
            .zip(early)
            .map(|((r, report), early)| probe_root(r, report, &git_host, early))
            .collect();
        for r in &mut roots {
            let items: Vec<Found> = r
                .runs_later
                .iter()
                .chain(&r.runs_later_targets)
                .filter(|f| f.kind != Kind::Symlink)
                .cloned()
                .collect();
            r.referenced = refs::referenced(&r.path, &items, &writable_roots)?;
        }
        Ok(Project {
            dir: project,
            extra,
            roots,
        })
    }

    /// The writable roots: the project, then each `--rw` path.
    pub fn writable(&self) -> Vec<PathBuf> {
        self.roots.iter().map(|r| r.path.clone()).collect()
    }

    /// The common git directories of linked worktrees in the writable roots: bound
    /// read-write for git, so written by the sandbox too.
    pub fn linked_commons(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .roots
            .iter()
            .flat_map(|r| &r.git)
            .filter_map(|g| g.linked_common.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A made-up project for tests: `dir`, its root with nothing found in it.
    #[cfg(test)]
    pub fn fixture(dir: &str) -> Project {
        Project {
            dir: dir.into(),
            extra: Vec::new(),
            roots: vec![Root::fixture(dir)],
        }
    }
}

/// agentbox's own config (the user's file, the trust records) in a writable root would let
/// the agent widen its next run, and this one through the live pick-up of allowed hosts: a
/// dotfiles checkout that `~/.config/agentbox` links into is the usual way there. Refused.
fn config_outside(user: &User, writable: &[PathBuf]) -> Result<()> {
    let dir = user.env.config_home(&user.home).join("agentbox");
    let places = [dir.clone(), dir.join("config.toml"), dir.join("trusted")];
    for real in places.iter().filter_map(|p| super::resolved(p)) {
        if let Some(root) = writable.iter().find(|r| real.starts_with(r)) {
            return Err(Fail::hint(
                format!(
                    "agentbox's config {} is in {}, which the agent may write: it could \
                     allow itself more, now and in later runs",
                    real.display(),
                    root.display()
                ),
                "keep agentbox's config out of the project and --rw paths (a real \
                 directory at $XDG_CONFIG_HOME/agentbox, not a link into a checkout), or run \
                 in another directory",
            )
            .into());
        }
    }
    Ok(())
}

/// A writable root the user cannot write is refused before the run, not found out by the
/// agent as `Permission denied` halfway through its work.
fn writable_by_user(path: &Path, what: &str, hint: &str) -> Result<()> {
    use rustix::fs::{Access as Mode, access};
    access(path, Mode::WRITE_OK).map_err(|e| {
        Fail::hint(
            format!("{what} {} is not writable by you: {e}", path.display()),
            hint,
        )
        .into()
    })
}

/// A writable root (the project or a `--rw` path) and what its scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub path: PathBuf,
    /// Secrets to mask. Symlinked secrets are already resolved to their (canonical) targets.
    pub secrets: Vec<Found>,
    /// Runs-later entries, as found (a symlink stays a symlink: it cannot be made read-only).
    pub runs_later: Vec<Found>,
    /// The canonical targets of symlinked runs-later entries.
    pub runs_later_targets: Vec<Found>,
    /// Runs-later entries left writable and reported at exit when changed (`Guard::Audit`).
    pub watched: Vec<Found>,
    /// Scripts that the protected entries launch (`refs`): made read-only too.
    pub referenced: Vec<Found>,
    pub git: Vec<git::GitRepo>,
}

impl Root {
    /// A made-up root for tests, with nothing found in it.
    #[cfg(test)]
    pub fn fixture(path: &str) -> Root {
        Root {
            path: path.into(),
            secrets: Vec::new(),
            runs_later: Vec::new(),
            runs_later_targets: Vec::new(),
            watched: Vec::new(),
            referenced: Vec::new(),
            git: Vec::new(),
        }
    }
}

/// Follows a symlinked entry to its canonical target; `None` when it dangles.
fn resolve(found: &Found) -> Option<Found> {
    let target = fs::canonicalize(&found.path).ok()?;
    let kind = kind_at(&target)?;
    Some(Found {
        why: format!("{} (target of symlink {})", found.why, found.path.display()),
        path: target,
        kind,
    })
}

fn probe_root(
    root: &Path,
    report: secrets::Report,
    git_host: &git::GitHost,
    early: git::Reads,
) -> Root {
    let secrets = report
        .secrets
        .into_iter()
        .filter_map(|f| match f.kind {
            Kind::Symlink => resolve(&f),
            _ => Some(f),
        })
        .collect();
    let runs_later_targets = report
        .runs_later
        .iter()
        .filter(|f| f.kind == Kind::Symlink)
        .filter_map(resolve)
        .collect();
    Root {
        path: root.to_owned(),
        secrets,
        runs_later: report.runs_later,
        runs_later_targets,
        watched: report.watched,
        referenced: Vec::new(),
        git: git::probe_all(&report.git, git_host, early),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_yet_to_be_made_resolves_through_its_existing_ancestor() {
        let t = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(t.path()).unwrap();
        fs::create_dir(real.join("checkout")).unwrap();
        std::os::unix::fs::symlink(real.join("checkout"), real.join("link")).unwrap();
        assert_eq!(
            super::super::resolved(&real.join("link/agentbox/config.toml")),
            Some(real.join("checkout/agentbox/config.toml"))
        );
        assert_eq!(
            super::super::resolved(&real.join("link")),
            Some(real.join("checkout"))
        );
    }

    /// `run`'s policy with no flags and no configuration, for `project`.
    fn policy_for(project: &Path) -> Policy {
        use clap::{Args, FromArgMatches};
        let m = crate::cli::SandboxArgs::augment_args(clap::Command::new("t"))
            .try_get_matches_from(["t"])
            .unwrap();
        let args = crate::cli::SandboxArgs::from_arg_matches(&m).unwrap();
        let mut policy = Policy::new(args, vec!["true".into()], false, Default::default()).unwrap();
        policy.project = Some(project.to_owned());
        policy
    }

    #[test]
    fn the_system_secrets_asked_for_late_still_mask_their_hard_links() {
        let t = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(t.path()).unwrap();
        let (sys, project, home) = (real.join("sys"), real.join("p"), real.join("home"));
        for d in [&sys, &project, &home] {
            fs::create_dir(d).unwrap();
        }
        fs::write(sys.join("shadow"), "root:$6$hash\n").unwrap();
        fs::hard_link(sys.join("shadow"), project.join("notes.txt")).unwrap();
        let user = User {
            home: home.clone(),
            env: crate::hostenv::Env::new(vec![("HOME".into(), home.into())], &project),
            ..User::fixture(project.to_str().unwrap())
        };
        let policy = policy_for(&project);
        let masked = |p: &Project| -> Vec<PathBuf> {
            p.roots[0].secrets.iter().map(|f| f.path.clone()).collect()
        };
        // Asked for once, and the link to the system file is masked.
        let mut asked = 0;
        let found = Project::probe_beside(&policy, &user, |roots| {
            asked += 1;
            assert_eq!(roots, std::slice::from_ref(&project));
            Ok(vec![sys.join("shadow")])
        })
        .unwrap();
        assert_eq!(asked, 1);
        assert!(
            masked(&found).contains(&project.join("notes.txt")),
            "{found:?}"
        );
        // The control: not a system secret, not masked.
        let found = Project::probe(&policy, &user, &[]).unwrap();
        assert!(
            !masked(&found).contains(&project.join("notes.txt")),
            "{found:?}"
        );
        // A system probe that failed fails the project's: no scan without its masks.
        let failed = Project::probe_beside(&policy, &user, |_| anyhow::bail!("no /etc"));
        assert!(failed.unwrap_err().to_string().contains("no /etc"));
    }

    #[test]
    fn a_hard_link_to_a_file_in_a_masked_system_directory_is_masked() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(t.path()).unwrap();
        let (etc, project, home) = (real.join("etc"), real.join("p"), real.join("home"));
        let private = etc.join("ssl/private");
        for d in [&private, &project, &home] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(private.join("server.key"), "db password: hunter2\n").unwrap();
        fs::write(private.join("alone.key"), "another\n").unwrap();
        fs::hard_link(private.join("server.key"), project.join("notes.txt")).unwrap();
        fs::write(project.join("readme.txt"), "hello\n").unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
        // As root sees /etc: the private directory is masked whole, its files not listed.
        let masks = crate::secrets::etc_secrets(&etc);
        assert_eq!(masks.dirs, std::slice::from_ref(&private));
        assert!(masks.files.is_empty(), "{:?}", masks.files);
        let system = super::super::System {
            secrets: masks.files,
            secret_dirs: masks.dirs,
            ..super::super::System::fixture()
        };
        // Only the file with another name is a source; the one alone is not.
        let sources = system.linked_sources();
        assert!(sources.contains(&private.join("server.key")), "{sources:?}");
        assert!(!sources.contains(&private.join("alone.key")), "{sources:?}");
        let user = User {
            home: home.clone(),
            env: crate::hostenv::Env::new(vec![("HOME".into(), home.into())], &project),
            ..User::fixture(project.to_str().unwrap())
        };
        let policy = policy_for(&project);
        let masked = |p: &Project| -> Vec<PathBuf> {
            p.roots[0].secrets.iter().map(|f| f.path.clone()).collect()
        };
        // What HostFacts::probe passes: the link is masked, the plain file is not (the control).
        let found = Project::probe(&policy, &user, &sources).unwrap();
        assert!(
            masked(&found).contains(&project.join("notes.txt")),
            "{found:?}"
        );
        assert!(
            !masked(&found).contains(&project.join("readme.txt")),
            "{found:?}"
        );
        // The masked files alone (what the scan was given before) leave the link readable.
        let found = Project::probe(&policy, &user, &system.secrets).unwrap();
        assert!(
            !masked(&found).contains(&project.join("notes.txt")),
            "{found:?}"
        );
    }
}
