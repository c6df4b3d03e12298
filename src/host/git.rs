//! Facts about the git directories in a writable root: which files git will run or obey on the
//! host after the agent is gone (hooks, config, `.git` files, `commondir`, and whatever the
//! config points at: `core.hooksPath`, includes, commands such as `core.fsmonitor`), and whether
//! a `.git` file really is a linked worktree. Part of host probing: reads, never writes.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::rules::GIT_RUNS_LATER;
use crate::secrets::{Found, Kind};

/// A git directory found in a writable root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRepo {
    /// The `.git` entry itself.
    pub dot_git: PathBuf,
    pub dot_git_kind: Kind,
    /// The common git dir of a linked worktree whose `.git` file checks out (its gitdir is
    /// `<common>/worktrees/<name>` and names this `.git` file back): git needs it writable.
    pub linked_common: Option<PathBuf>,
    /// Files git runs or obeys, with their kind (`None`: missing) and why.
    pub entries: Vec<(PathBuf, Option<Kind>, &'static str)>,
    /// Paths git's config points at (hooks directory, included config, commands): they must
    /// not be writable, and must exist where they would be.
    pub config_paths: Vec<(PathBuf, String)>,
    /// Signs of tampering that agentbox cannot protect against: it refuses to start.
    pub anomalies: Vec<String>,
}

pub fn kind_at(path: &Path) -> Option<Kind> {
    let ft = fs::symlink_metadata(path).ok()?.file_type();
    Some(if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    })
}

/// Reads a pointer file (`gitdir: PATH` in a `.git` file, or the path in `commondir`):
/// the path, relative to `base`, canonical.
fn read_pointer(file: &Path, prefix: &[u8], base: &Path) -> Option<PathBuf> {
    let content = fs::read(file).ok()?;
    let rest = content.strip_prefix(prefix)?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let target = Path::new(std::ffi::OsStr::from_bytes(line.trim_ascii()));
    fs::canonicalize(base.join(target)).ok()
}

use std::os::unix::ffi::OsStrExt;

/// Removes `.` and `..` lexically (for paths that may not exist yet).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The canonical path if it exists, else the lexically normalised one.
fn resolved(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| normalize(p))
}

pub fn probe(dot_git: &Found, home: &Path) -> GitRepo {
    let mut repo = GitRepo {
        dot_git: dot_git.path.clone(),
        dot_git_kind: dot_git.kind,
        linked_common: None,
        entries: Vec::new(),
        config_paths: Vec::new(),
        anomalies: Vec::new(),
    };
    let top = dot_git.path.parent().unwrap_or(Path::new("/")).to_owned();
    let gitdir = match dot_git.kind {
        Kind::Dir => dot_git.path.clone(),
        Kind::File => {
            // The file says where git's directory is: rewritten, it points git (on the host)
            // at a directory of the agent's making.
            repo.entries.push((
                dot_git.path.clone(),
                Some(Kind::File),
                "says where git's directory is",
            ));
            match read_pointer(&dot_git.path, b"gitdir:", &top) {
                Some(g) => g,
                None => return repo,
            }
        }
        _ => return repo,
    };
    let common = read_pointer(&gitdir.join("commondir"), b"", &gitdir);
    if dot_git.kind == Kind::Dir && kind_at(&gitdir.join("commondir")).is_some() {
        repo.anomalies.push(format!(
            "{} exists: git never writes it in a repository's own .git, and it redirects \
             git's config and hooks elsewhere (planted by an earlier run?)",
            gitdir.join("commondir").display()
        ));
    }
    let common = common.unwrap_or_else(|| gitdir.clone());
    if gitdir != common {
        let named_back = read_pointer(&gitdir.join("gitdir"), b"", &gitdir)
            .is_some_and(|p| fs::canonicalize(&dot_git.path).is_ok_and(|me| me == p));
        if gitdir.parent() == Some(&common.join("worktrees")) && named_back {
            repo.linked_common = Some(common.clone());
        }
    }
    // The worktrees' own pointer and config files, for this checkout and its siblings.
    let mut worktree_dirs = vec![gitdir.clone()];
    if let Ok(rd) = fs::read_dir(common.join("worktrees")) {
        worktree_dirs.extend(rd.flatten().map(|e| e.path()));
    }
    for w in worktree_dirs.iter().filter(|w| **w != common) {
        for (name, why) in [
            ("commondir", "says where a worktree's config and hooks are"),
            ("gitdir", "says where a worktree is"),
            ("config.worktree", "per-worktree config: commands git runs"),
        ] {
            let p = w.join(name);
            if let Some(k) = kind_at(&p) {
                repo.entries.push((p, Some(k), why));
            }
        }
    }
    // The common dir and every submodule's git dir (modules/, nested as deep as they are).
    let mut dirs = vec![common.clone()];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        seen += 1;
        if seen > 1000 {
            break;
        }
        for r in GIT_RUNS_LATER {
            let p = dir.join(r.path);
            let kind = kind_at(&p);
            if kind == Some(Kind::Symlink) && r.path == "hooks" {
                repo.anomalies.push(format!(
                    "{} is a symlink: git follows it and the agent could replace it; make it \
                     a directory (or point core.hooksPath at the hooks)",
                    p.display()
                ));
            }
            repo.entries.push((p, kind, r.why));
        }
        let dir_top = config_worktree(&dir).unwrap_or_else(|| top.clone());
        for cfg in ["config", "config.worktree"] {
            repo.config_paths
                .extend(config_refs(&dir.join(cfg), &dir_top, home));
        }
        if let Ok(rd) = fs::read_dir(dir.join("modules")) {
            for e in rd.flatten() {
                let p = e.path();
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if p.join("HEAD").is_file() {
                    dirs.push(p);
                } else if let Ok(sub) = fs::read_dir(&p) {
                    // Submodule names may contain '/': modules/a/b.
                    dirs.extend(
                        sub.flatten()
                            .map(|e| e.path())
                            .filter(|p| p.join("HEAD").is_file()),
                    );
                }
            }
        }
    }
    if gitdir != common {
        repo.config_paths
            .extend(config_refs(&gitdir.join("config.worktree"), &top, home));
    }
    repo
}

/// A submodule git dir's `core.worktree`, resolved against it.
fn config_worktree(gitdir: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(gitdir.join("config")).ok()?;
    let value = parse_config(&text)
        .into_iter()
        .find(|(k, _)| k == "core.worktree")?
        .1;
    Some(resolved(&gitdir.join(value)))
}

/// Keys whose value is a command git runs (its first word, when it is a path, must not be
/// writable by the agent).
fn is_command_key(key: &str) -> bool {
    let exact = [
        "core.fsmonitor",
        "core.sshcommand",
        "core.editor",
        "core.pager",
        "core.askpass",
        "credential.helper",
        "gpg.program",
        "gpg.ssh.program",
        "sequence.editor",
        "diff.external",
    ];
    let suffix = [
        ".textconv",
        ".command",
        ".clean",
        ".smudge",
        ".process",
        ".driver",
    ];
    exact.contains(&key)
        || (key.starts_with("alias."))
        || (key.starts_with("credential.") && key.ends_with(".helper"))
        || ((key.starts_with("diff.")
            || key.starts_with("filter.")
            || key.starts_with("merge.")
            || key.starts_with("difftool.")
            || key.starts_with("mergetool."))
            && suffix.iter().any(|s| key.ends_with(s)))
}

/// The paths a config file makes git read or run: the hooks directory, included files and
/// command programs, each resolved as git would.
pub fn config_refs(file: &Path, top: &Path, home: &Path) -> Vec<(PathBuf, String)> {
    let Ok(text) = fs::read_to_string(file) else {
        return Vec::new();
    };
    let base = file.parent().unwrap_or(Path::new("/"));
    let expand = |v: &str, rel_to: &Path| -> PathBuf {
        match v.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => rel_to.join(v),
        }
    };
    let mut out = Vec::new();
    for (key, value) in parse_config(&text) {
        let why = format!("{key} in {}", file.display());
        if key == "core.hookspath" {
            out.push((resolved(&expand(&value, top)), why));
        } else if key == "include.path" || (key.starts_with("includeif.") && key.ends_with(".path"))
        {
            out.push((resolved(&expand(&value, base)), why));
        } else if is_command_key(&key) {
            let cmd = value.trim_start_matches('!').trim();
            let first = cmd.split_whitespace().next().unwrap_or("");
            if first.contains('/') {
                out.push((resolved(&expand(first, top)), why));
            }
        }
    }
    out
}

/// A small git-config reader: `(section[.subsection].key, value)`, names lowercased (the
/// subsection keeps its case), quotes and escapes undone, comments dropped.
pub fn parse_config(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(end) = rest.find(']') else { continue };
            let inner = rest[..end].trim();
            section = match inner.split_once(char::is_whitespace) {
                Some((name, sub)) => {
                    let sub = sub.trim().trim_matches('"');
                    format!("{}.{sub}", name.to_ascii_lowercase())
                }
                None => inner.to_ascii_lowercase(),
            };
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), unquote(v.trim())),
            None => (line, "true".to_owned()),
        };
        out.push((format!("{section}.{}", key.to_ascii_lowercase()), value));
    }
    out
}

/// Undoes git-config quoting and drops a trailing comment outside quotes.
fn unquote(v: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            },
            '#' | ';' if !quoted => break,
            c => out.push(c),
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reader() {
        let text = "[core]\n\thooksPath = .husky # hooks\n\tfsmonitor = \"./tools/fs mon.sh\"\n\
                    [includeIf \"gitdir:~/work/\"]\n\tpath = ../team.gitconfig\n\
                    [alias]\n\tst = !./scripts/st.sh --x\n\tco = checkout\n[user]\nname = A ; c\n";
        let got = parse_config(text);
        assert_eq!(
            got,
            [
                ("core.hookspath".to_owned(), ".husky".to_owned()),
                ("core.fsmonitor".to_owned(), "./tools/fs mon.sh".to_owned()),
                (
                    "includeif.gitdir:~/work/.path".to_owned(),
                    "../team.gitconfig".to_owned()
                ),
                ("alias.st".to_owned(), "!./scripts/st.sh --x".to_owned()),
                ("alias.co".to_owned(), "checkout".to_owned()),
                ("user.name".to_owned(), "A".to_owned()),
            ]
        );
    }

    #[test]
    fn config_refs_resolve_as_git_does() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("p");
        fs::create_dir_all(top.join(".git")).unwrap();
        let cfg = top.join(".git/config");
        fs::write(
            &cfg,
            "[core]\nhooksPath = .husky\n[include]\npath = ../shared.cfg\n\
             [alias]\nst = !./scripts/st.sh\nco = checkout\n[diff \"x\"]\ntextconv = /usr/bin/cat\n",
        )
        .unwrap();
        let refs: Vec<PathBuf> = config_refs(&cfg, &top, Path::new("/home/u"))
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(
            refs,
            [
                top.join(".husky"),
                top.join("shared.cfg"),
                top.join("scripts/st.sh"),
                PathBuf::from("/usr/bin/cat"),
            ]
        );
    }

    fn found(p: PathBuf, kind: Kind) -> Found {
        Found {
            path: p,
            kind,
            why: String::new(),
        }
    }

    #[test]
    fn linked_worktrees_are_checked_both_ways() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        let main = base.join("main/.git");
        let wt = base.join("wt");
        fs::create_dir_all(main.join("hooks")).unwrap();
        fs::write(main.join("config"), "").unwrap();
        fs::create_dir_all(main.join("worktrees/wt")).unwrap();
        fs::write(main.join("worktrees/wt/commondir"), "../..\n").unwrap();
        fs::write(
            main.join("worktrees/wt/gitdir"),
            format!("{}\n", wt.join(".git").display()),
        )
        .unwrap();
        fs::create_dir_all(&wt).unwrap();
        let gitdir = main.join("worktrees/wt");
        fs::write(wt.join(".git"), format!("gitdir: {}\n", gitdir.display())).unwrap();
        let repo = probe(&found(wt.join(".git"), Kind::File), &base);
        assert_eq!(repo.linked_common, Some(main.clone()));
        assert!(repo.anomalies.is_empty(), "{:?}", repo.anomalies);
        let paths: Vec<&PathBuf> = repo.entries.iter().map(|e| &e.0).collect();
        for p in [
            wt.join(".git"),
            gitdir.join("commondir"),
            gitdir.join("gitdir"),
            main.join("hooks"),
        ] {
            assert!(paths.contains(&&p), "{p:?} not protected");
        }

        // A .git file pointing at any other directory is not a worktree: nothing is bound.
        fs::write(wt.join(".git"), "gitdir: ..\n").unwrap();
        let repo = probe(&found(wt.join(".git"), Kind::File), &base);
        assert_eq!(repo.linked_common, None);
        // ... and a worktree gitdir that does not name this .git file back is not either.
        let other = base.join("other");
        fs::create_dir_all(&other).unwrap();
        fs::write(
            other.join(".git"),
            format!("gitdir: {}\n", gitdir.display()),
        )
        .unwrap();
        let repo = probe(&found(other.join(".git"), Kind::File), &base);
        assert_eq!(repo.linked_common, None);
    }

    #[test]
    fn a_planted_commondir_is_an_anomaly() {
        let t = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(t.path()).unwrap();
        fs::create_dir_all(base.join("p/.git/hooks")).unwrap();
        fs::create_dir_all(base.join("p/evil")).unwrap();
        let repo = probe(&found(base.join("p/.git"), Kind::Dir), &base);
        assert!(repo.anomalies.is_empty());
        fs::write(base.join("p/.git/commondir"), "../evil\n").unwrap();
        let repo = probe(&found(base.join("p/.git"), Kind::Dir), &base);
        assert!(
            repo.anomalies[0].contains("commondir"),
            "{:?}",
            repo.anomalies
        );
    }
}
