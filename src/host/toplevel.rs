//! Which directory is the project when no `--project` is given: the top level of the git
//! checkout the command was started in (a repository, a linked worktree or a submodule), like
//! `git rev-parse --show-toplevel`, else the current directory. Reads, never writes, runs
//! nothing.
//!
//! Found without asking git, on purpose: the directories walked are attacker-controlled (a
//! `.git` file or directory in a subdirectory may have been planted by an earlier run), and
//! git's own answer follows what they say: a `.git` file's `gitdir:` leads to a config whose
//! `core.worktree` (or `GIT_WORK_TREE`) names any directory at all, `/` or the user's home
//! included. Here the top level is only ever the nearest directory, at or above the current
//! one, that holds a `.git` entry of any kind, whatever that entry says. So what a planted
//! entry can do is make the project *smaller* (the directory it sits in), never move it
//! elsewhere. The walk stops below the user's home and its ancestors (a dotfiles repository in
//! `$HOME` does not turn every run into a run in `$HOME`) and, like git, at a filesystem
//! boundary.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The checkout's top level above `cwd` (canonical), when it is not `cwd` itself.
pub fn above(cwd: &Path, home: &Path) -> Option<PathBuf> {
    let cwd = fs::canonicalize(cwd).ok()?;
    let home = fs::canonicalize(home).unwrap_or_else(|_| home.to_owned());
    let dev = fs::metadata(&cwd).ok()?.dev();
    for dir in cwd.ancestors() {
        // $HOME, its ancestors and `/` are never a project found by walking up.
        if home.starts_with(dir) {
            return None;
        }
        let Ok(meta) = fs::symlink_metadata(dir) else {
            return None;
        };
        if meta.dev() != dev {
            return None;
        }
        if fs::symlink_metadata(dir.join(".git")).is_ok() {
            return (dir != cwd).then(|| dir.to_owned());
        }
    }
    None
}

/// Without `--project`: the top level when the current directory is below it, and the notes
/// that say so (and, in a submodule, where its git directory is). `--project .` (or any
/// `--project`) is kept as given.
pub fn settle(project: &mut Option<PathBuf>, env: &crate::hostenv::Env) -> Option<String> {
    if project.is_some() {
        return None;
    }
    let cwd = env.cwd().ok()?;
    let top = above(cwd, env.home().ok()?);
    let dir = top.clone().or_else(|| fs::canonicalize(cwd).ok())?;
    let mut notes = Vec::new();
    if let Some(top) = top {
        notes.push(format!(
            "project: {} (the top level of the git checkout you are in; --project . for this \
             directory only)",
            top.display()
        ));
        *project = Some(top);
    }
    if let Some(sup) = superproject(&dir) {
        notes.push(format!(
            "{} is a submodule: its git directory is in {}, outside the project, so git \
             inside cannot use it (--project {} includes it)",
            dir.display(),
            sup.display(),
            sup.display()
        ));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// For a submodule checkout (a `.git` file naming `SUPER/.git/modules/...`): SUPER. Read only
/// to word a note: nothing here decides what the sandbox gets.
fn superproject(dir: &Path) -> Option<PathBuf> {
    // A regular file only, read without blocking: a concurrent run could swap in a FIFO.
    let head = crate::hostfs::read_regular(&dir.join(".git"), false, 4096)
        .ok()
        .flatten()?;
    let text = std::str::from_utf8(&head).ok()?;
    let target = text.strip_prefix("gitdir:")?.lines().next()?.trim();
    let gitdir = crate::rough::shown(&dir.join(target));
    let s = gitdir.to_str()?;
    let (sup, _) = s.split_once("/.git/modules/")?;
    (!gitdir.starts_with(dir)).then(|| PathBuf::from(sup))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(root.join("repo/.git")).unwrap();
        fs::create_dir_all(root.join("repo/src/deep")).unwrap();
        (t, root)
    }

    #[test]
    fn subdirectory_finds_the_top_level() {
        let (_t, root) = tree();
        let home = root.join("home");
        assert_eq!(
            above(&root.join("repo/src/deep"), &home),
            Some(root.join("repo"))
        );
        // Already at the top, or outside any repository: the current directory stays.
        assert_eq!(above(&root.join("repo"), &home), None);
        assert_eq!(above(&root, &home), None);
    }

    #[test]
    fn a_git_file_is_a_top_level_whatever_it_points_at() {
        let (_t, root) = tree();
        // A submodule or linked worktree (or a planted file): its own directory, never where
        // its gitdir (or that gitdir's core.worktree) leads.
        fs::write(root.join("repo/src/.git"), "gitdir: /\n").unwrap();
        assert_eq!(
            above(&root.join("repo/src/deep"), &root.join("home")),
            Some(root.join("repo/src"))
        );
        // A dangling symlink counts as well: it can only make the project smaller.
        fs::remove_file(root.join("repo/src/.git")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", root.join("repo/src/.git")).unwrap();
        assert_eq!(
            above(&root.join("repo/src/deep"), &root.join("home")),
            Some(root.join("repo/src"))
        );
    }

    #[test]
    fn a_submodule_names_its_superproject() {
        let (_t, root) = tree();
        fs::create_dir_all(root.join("repo/sub")).unwrap();
        fs::write(root.join("repo/sub/.git"), "gitdir: ../.git/modules/sub\n").unwrap();
        assert_eq!(
            superproject(&root.join("repo/sub")),
            Some(root.join("repo"))
        );
        // A linked worktree's, or none.
        fs::write(root.join("repo/sub/.git"), "gitdir: /r/.git/worktrees/w\n").unwrap();
        assert_eq!(superproject(&root.join("repo/sub")), None);
        assert_eq!(superproject(&root.join("repo")), None);
    }

    #[test]
    fn the_walk_stops_below_home() {
        let (_t, root) = tree();
        // A dotfiles repository in $HOME: a run in a plain directory below stays there.
        assert_eq!(above(&root.join("repo/src/deep"), &root.join("repo")), None);
    }
}
