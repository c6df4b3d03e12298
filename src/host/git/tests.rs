use super::*;
use std::process::{Command, Stdio};
use std::time::Instant;

fn found(p: PathBuf, kind: Kind) -> Found {
    Found {
        path: p,
        kind,
        why: String::new(),
    }
}

/// A host with git, the temp dir as the home and `writable` as the writable root.
fn host(home: &Path, writable: &Path) -> GitHost {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let env = crate::hostenv::Env::new(vec![("PATH".into(), path)], home);
    let mut h = GitHost::find(&env, home, &[writable.to_owned()], &[]);
    h.xdg_config_home = Some(home.join(".config").into());
    h
}

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

/// A fresh repository `p` in a temp dir `base` (canonical); the guard removes it.
fn repo() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(t.path()).unwrap();
    let p = base.join("p");
    fs::create_dir_all(&p).unwrap();
    git(&p, &["init", "-q"]);
    (t, base, p)
}

/// Makes `p`'s configuration include a FIFO, which keeps git reading it waiting.
fn fifo_include(p: &Path) {
    let st = Command::new("mkfifo").arg(p.join("f")).status().unwrap();
    assert!(st.success());
    let mut cfg = fs::read_to_string(p.join(".git/config")).unwrap();
    cfg.push_str("[include]\n\tpath = ../f\n");
    fs::write(p.join(".git/config"), cfg).unwrap();
}

fn probe(f: &Found, h: &GitHost) -> GitRepo {
    probe_all(std::slice::from_ref(f), h, Reads::default()).remove(0)
}

fn paths(repo: &GitRepo) -> Vec<PathBuf> {
    repo.config_paths.iter().map(|c| c.0.clone()).collect()
}

#[test]
fn the_list_output_is_parsed() {
    let out = b"file:/etc/gitconfig\0core.pager\nless -R\0file:/p/.git/config\0alias.bare\0\
                command line:\0include.path\n/p/.git/config\0";
    let e = parse_list(out);
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].origin.as_deref(), Some(Path::new("/etc/gitconfig")));
    assert_eq!(e[0].key, "core.pager");
    assert_eq!(e[0].value.as_deref(), Some(OsStr::new("less -R")));
    assert_eq!(e[1].value, None);
    assert_eq!(e[2].origin, None);
}

#[test]
fn command_words_include_arguments_and_option_values() {
    let w: Vec<(String, bool)> =
        words(b"!sh scripts/clean.sh --cfg=./x.toml; git -c core.hooksPath=evil log")
            .into_iter()
            .map(|(w, f)| (String::from_utf8_lossy(w).into_owned(), f))
            .collect();
    for want in [
        ("sh", false),
        ("scripts/clean.sh", false),
        ("./x.toml", false),
        ("evil", true),
    ] {
        assert!(
            w.contains(&(want.0.to_owned(), want.1)),
            "{want:?} in {w:?}"
        );
    }
    assert!(path_like(b"scripts/clean.sh"));
    assert!(!path_like(b"%h/%s"));
    assert!(!path_like(b"--x/y"));
    assert!(!path_like(b"clean.sh"));
}

/// git's configuration as git reads it: includes, includeIf, the global config (with a relative
/// hooks path), command keys with script arguments, hook symlinks and husky's layout.
#[test]
fn configuration_is_read_as_git_reads_it() {
    let (_t, base, p) = repo();
    fs::create_dir_all(p.join("scripts")).unwrap();
    fs::create_dir_all(p.join(".husky/_")).unwrap();
    for f in [
        "scripts/clean.sh",
        "scripts/hook.sh",
        "scripts/lint.sh",
        "inc.cfg",
    ] {
        fs::write(p.join(f), "").unwrap();
    }
    fs::write(p.join(".husky/_/h"), "").unwrap();
    fs::write(p.join(".husky/_/pre-commit"), ". \"$(dirname \"$0\")/h\"\n").unwrap();
    fs::write(p.join(".husky/pre-commit"), "sh scripts/lint.sh\n").unwrap();
    fs::write(
        p.join("inc.cfg"),
        "[core]\n\thooksPath = .husky/_\n[filter \"x\"]\n\tclean = sh scripts/clean.sh\n",
    )
    .unwrap();
    let mut cfg = fs::read_to_string(p.join(".git/config")).unwrap();
    cfg.push_str("[include]\n\tpath = ../inc.cfg\n");
    fs::write(p.join(".git/config"), cfg).unwrap();
    std::os::unix::fs::symlink("../../scripts/hook.sh", p.join(".git/hooks/pre-push")).unwrap();
    fs::write(base.join(".gitconfig"), "[core]\n\tpager = ./pager.sh\n").unwrap();
    let h = host(&base, &p);
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert!(repo.anomalies.is_empty(), "{:?}", repo.anomalies);
    let got = paths(&repo);
    for want in [
        p.join("inc.cfg"),
        p.join(".git/config"),
        p.join(".husky/_"),
        p.join(".husky"),
        p.join("scripts/lint.sh"),
        p.join("scripts/clean.sh"),
        // The global config's relative pager, at the top of this worktree: missing, so the
        // plan refuses.
        p.join("pager.sh"),
    ] {
        assert!(got.contains(&want), "{want:?} not in {got:?}");
    }
    let pager = repo.config_paths.iter().find(|c| c.0 == p.join("pager.sh"));
    assert_eq!(pager.unwrap().1, None);

    // Without hooksPath, the hooks directory's symlinks lead to their targets.
    let cfg = fs::read_to_string(p.join(".git/config")).unwrap();
    fs::write(
        p.join(".git/config"),
        cfg.replace("../inc.cfg", "../none.cfg"),
    )
    .unwrap();
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert!(paths(&repo).contains(&p.join("scripts/hook.sh")));
    assert!(paths(&repo).contains(&p.join("none.cfg")));
}

#[test]
fn worktree_config_without_its_file_refuses_with_the_touch_hint() {
    let (_t, base, p) = repo();
    git(&p, &["config", "extensions.worktreeConfig", "true"]);
    let h = host(&base, &p);
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert_eq!(repo.anomalies.len(), 1, "{:?}", repo.anomalies);
    assert!(repo.anomalies[0].hint.contains("touch"));
    fs::write(p.join(".git/config.worktree"), "").unwrap();
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert!(repo.anomalies.is_empty(), "{:?}", repo.anomalies);
}

#[test]
fn a_fifo_include_times_out_and_refuses() {
    let (_t, base, p) = repo();
    fifo_include(&p);
    let mut h = host(&base, &p);
    h.timeout = Duration::from_millis(300);
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert!(
        repo.anomalies.iter().any(|a| a.what.contains("took over")),
        "{:?}",
        repo.anomalies
    );
    // The hung git was killed and reaped, not left behind (bwrap would inherit it).
    let needle = p.join(".git/config");
    let left: Vec<_> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                c.windows(needle.as_os_str().len())
                    .any(|w| w == needle.as_os_str().as_bytes())
            })
        })
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "git still running: {left:?}");
}

#[test]
fn a_git_symlink_leads_to_the_real_git_dir() {
    let (_t, base, p) = repo();
    fs::rename(p.join(".git"), p.join("real-git")).unwrap();
    std::os::unix::fs::symlink("real-git", p.join(".git")).unwrap();
    let h = host(&base, &p);
    let repo = probe(&found(p.join(".git"), Kind::Symlink), &h);
    assert_eq!(repo.git_dir, Some(p.join("real-git")));
    let entries: Vec<&PathBuf> = repo.entries.iter().map(|e| &e.0).collect();
    assert!(entries.contains(&&p.join("real-git/hooks")));
    assert!(entries.contains(&&p.join("real-git/config")));
    assert!(!repo.warnings.is_empty());
}

#[test]
fn planted_control_files_are_found() {
    let (_t, base, p) = repo();
    let h = host(&base, &p);
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert!(planted_control_files(&repo).is_empty());
    fs::write(p.join(".git/config.worktree"), "[core]\nfsmonitor = ./x\n").unwrap();
    fs::write(p.join(".git/commondir"), "../x\n").unwrap();
    let mut got = planted_control_files(&repo);
    got.sort();
    assert_eq!(
        got,
        [p.join(".git/commondir"), p.join(".git/config.worktree")]
    );
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
    let h = host(&base, &wt);
    let repo = probe(&found(wt.join(".git"), Kind::File), &h);
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
    let repo = probe(&found(wt.join(".git"), Kind::File), &h);
    assert_eq!(repo.linked_common, None);
    // ... and a worktree gitdir that does not name this .git file back is not either.
    let other = base.join("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(
        other.join(".git"),
        format!("gitdir: {}\n", gitdir.display()),
    )
    .unwrap();
    let repo = probe(&found(other.join(".git"), Kind::File), &h);
    assert_eq!(repo.linked_common, None);
}

#[test]
fn a_planted_commondir_is_an_anomaly() {
    let t = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(t.path()).unwrap();
    fs::create_dir_all(base.join("p/.git/hooks")).unwrap();
    fs::create_dir_all(base.join("p/evil")).unwrap();
    let h = host(&base, &base.join("p"));
    let repo = probe(&found(base.join("p/.git"), Kind::Dir), &h);
    assert!(repo.anomalies.is_empty(), "{:?}", repo.anomalies);
    fs::write(base.join("p/.git/commondir"), "../evil\n").unwrap();
    let repo = probe(&found(base.join("p/.git"), Kind::Dir), &h);
    assert!(
        repo.anomalies[0].what.contains("commondir"),
        "{:?}",
        repo.anomalies
    );
}

#[test]
fn without_git_the_files_are_protected_and_a_warning_says_what_was_not_checked() {
    let (_t, base, p) = repo();
    let mut h = host(&base, &p);
    h.git = None;
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert!(repo.anomalies.is_empty());
    assert!(
        repo.warnings[0].contains("not installed"),
        "{:?}",
        repo.warnings
    );
    let entries: Vec<&PathBuf> = repo.entries.iter().map(|e| &e.0).collect();
    assert!(entries.contains(&&p.join(".git/hooks")));
    assert!(entries.contains(&&p.join(".git/config")));
}

/// An `includeIf "onbranch:..."` for another branch: git does not read it now, but would once
/// the agent switches branches, so its content counts too.
#[test]
fn includes_for_another_branch_are_read_too() {
    let t = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(t.path()).unwrap();
    let p = base.join("p");
    fs::create_dir_all(p.join("hooks2")).unwrap();
    git(&p, &["init", "-q"]);
    fs::write(p.join("evil.cfg"), "[core]\n\thooksPath = hooks2\n").unwrap();
    let mut cfg = fs::read_to_string(p.join(".git/config")).unwrap();
    cfg.push_str("[includeIf \"onbranch:evil\"]\n\tpath = ../evil.cfg\n");
    fs::write(p.join(".git/config"), cfg).unwrap();
    let h = host(&base, &p);
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert!(repo.anomalies.is_empty(), "{:?}", repo.anomalies);
    let got = paths(&repo);
    assert!(got.contains(&p.join("evil.cfg")), "{got:?}");
    assert!(got.contains(&p.join("hooks2")), "{got:?}");
}

/// The user's `GIT_CONFIG_GLOBAL` (and friends) decide which global file the user's next git
/// reads: the model reads with them. Control: without the variable, the file is not read.
#[test]
fn the_users_git_config_variables_are_read_with() {
    let t = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(t.path()).unwrap();
    let p = base.join("p");
    fs::create_dir_all(p.join("hooks3")).unwrap();
    git(&p, &["init", "-q"]);
    fs::write(
        base.join("other.gitconfig"),
        "[core]\n\thooksPath = hooks3\n",
    )
    .unwrap();
    let mut h = host(&base, &p);
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert!(!paths(&repo).contains(&p.join("hooks3")));
    h.config_env = vec![(
        "GIT_CONFIG_GLOBAL".into(),
        base.join("other.gitconfig").into_os_string(),
    )];
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    let got = paths(&repo);
    assert!(got.contains(&p.join("hooks3")), "{got:?}");
}

/// Nested repositories read in one call give each its own configuration, as one call each
/// would; an includeIf anywhere makes it one call each again.
#[test]
fn nested_repositories_read_together_keep_their_own_configuration() {
    let t = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(t.path()).unwrap();
    let p = base.join("p");
    let mut found_all = Vec::new();
    for (i, hooks) in ["h0", "h1", "h2"].iter().enumerate() {
        let r = p.join(format!("r{i}"));
        fs::create_dir_all(r.join(hooks)).unwrap();
        git(&r, &["init", "-q"]);
        git(&r, &["config", "core.hooksPath", hooks]);
        fs::write(r.join("clean.sh"), "").unwrap();
        git(
            &r,
            &["config", &format!("filter.f{i}.clean"), "sh clean.sh"],
        );
        found_all.push(found(r.join(".git"), Kind::Dir));
    }
    let h = host(&base, &p);
    let check = |repos: &[GitRepo]| {
        for (i, repo) in repos.iter().enumerate() {
            let r = p.join(format!("r{i}"));
            let got = paths(repo);
            assert!(got.contains(&r.join(format!("h{i}"))), "{i}: {got:?}");
            assert!(got.contains(&r.join("clean.sh")), "{i}: {got:?}");
            for j in (0..3).filter(|j| *j != i) {
                assert!(
                    !got.contains(&r.join(format!("h{j}"))),
                    "{i} has {j}'s: {got:?}"
                );
            }
        }
    };
    let mut reads = Reads::default();
    let structures: Vec<_> = found_all.iter().map(|f| structure(f).1).collect();
    let jobs: Vec<&Job> = structures.iter().flatten().collect();
    reads.batch(&jobs, &h);
    assert!(
        jobs.iter().all(|j| matches!(
            reads.calls.get(&j.config_dir),
            Some(Some(read::Call::Done(_)))
        )),
        "the batch did not run"
    );
    check(&probe_all(&found_all, &h, Reads::default()));
    // An includeIf: one call each, and the same result.
    let r0 = p.join("r0");
    git(&r0, &["config", "includeIf.onbranch:x.path", "../x.cfg"]);
    let mut reads = Reads::default();
    reads.batch(&jobs, &h);
    assert!(reads.calls.is_empty());
    check(&probe_all(&found_all, &h, Reads::default()));
}

/// FIFOs planted where git keeps small files (`commondir`, a hook) do not hang the probe.
#[test]
fn fifos_in_the_git_dir_do_not_hang_the_probe() {
    let (_t, base, p) = repo();
    for f in [".git/commondir", ".git/hooks/pre-commit"] {
        let st = Command::new("mkfifo").arg(p.join(f)).status().unwrap();
        assert!(st.success());
    }
    let mut h = host(&base, &p);
    h.timeout = Duration::from_millis(500);
    let t0 = Instant::now();
    let repo = probe(&found(p.join(".git"), Kind::Dir), &h);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(repo.anomalies.iter().any(|a| a.what.contains("commondir")));
}

/// The processes whose command line holds `needle`.
fn running_with(needle: &Path) -> Vec<std::ffi::OsString> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                c.windows(needle.as_os_str().len())
                    .any(|w| w == needle.as_os_str().as_bytes())
            })
        })
        .map(|e| e.file_name())
        .collect()
}

#[test]
fn a_call_started_early_and_never_asked_for_is_killed_and_reaped_when_dropped() {
    let (_t, base, p) = repo();
    // A FIFO include keeps git waiting until it is killed.
    fifo_include(&p);
    let h = host(&base, &p);
    let needle = p.join(".git/config");
    let reads = start_early(&p, &h);
    // The control: git is started and runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while running_with(&needle).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!running_with(&needle).is_empty(), "git never started");
    drop(reads);
    let left = running_with(&needle);
    assert!(left.is_empty(), "git still running: {left:?}");
}
