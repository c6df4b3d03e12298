//! Git as the host sees it: each test plants, inside the sandbox, code that the user's next
//! `git commit` / `git status` / `git add` on the host would run, then runs that git command
//! on the host as the user and checks the planted code did not run. The positive control is
//! the same planting done in an unsandboxed shell: the same git command then runs it.
//! Also: git's hooks and config are read-only inside, and what a run plants in git's files
//! (a `.git` file, `commondir`, `core.hooksPath`) widens nothing on the next run.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::{Out, World, bin, each_user};

/// The file the planted code creates when it runs.
fn mark(w: &World) -> PathBuf {
    w.home.join("pwned")
}

/// A shell line that writes an executable script at `path` (relative to the project) which
/// creates the mark.
fn plant(w: &World, path: &str) -> String {
    format!(
        "printf '#!/bin/sh\\ntouch {m}\\ncat\\n' > {path} 2>/dev/null; chmod +x {path} 2>/dev/null",
        m = mark(w).display()
    )
}

/// git on the host, as the user, in the project.
fn git(w: &World, args: &[&str]) -> Out {
    Out(w.program(OsStr::new("git")).args(args).output().unwrap())
}

/// A repository with one commit, owned by the user.
fn init(w: &World) {
    w.write(
        "home/.gitconfig",
        "[user]\n\tname = Tester\n\temail = t@example.com\n[init]\n\tdefaultBranch = main\n",
    );
    git(w, &["init", "-q"]).ok();
    w.write("home/src/project/README", "hello\n");
    git(w, &["add", "README"]).ok();
    git(w, &["commit", "-q", "-m", "init"]).ok();
}

/// Plants with `plant` inside the sandbox, runs each host git command, and says whether the
/// planted code ran; then (the control) plants the same way unsandboxed and says again.
#[track_caller]
fn attack(w: &World, plant: &str, host: &[&[&str]]) {
    let run = |how: &str| {
        let _ = fs::remove_file(mark(w));
        match how {
            "sandbox" => {
                w.sh(&[], &format!("{plant}; true")).ok();
            }
            _ => {
                w.host_sh(plant).ok();
            }
        }
        for args in host {
            // The git command may fail (a planted hook exits non-zero): what counts is the mark.
            git(w, args);
        }
        mark(w).exists()
    };
    assert!(!run("sandbox"), "planted inside, the host ran it: {plant}");
    assert!(
        run("host"),
        "control: planted outside, the host did not run it: {plant}"
    );
}

fn write_exec(w: &World, rel: &str, content: &str) {
    let p = w.write(&format!("home/src/project/{rel}"), content);
    let st = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn a_hook_symlinked_to_a_project_script() {
    each_user(|w| {
        init(w);
        write_exec(w, "scripts/hook.sh", "#!/bin/sh\ntrue\n");
        symlink(
            "../../scripts/hook.sh",
            w.project.join(".git/hooks/pre-commit"),
        )
        .unwrap();
        attack(
            w,
            &plant(w, "scripts/hook.sh"),
            &[&["commit", "-q", "--allow-empty", "-m", "x"]],
        );
    });
}

/// A hook that is a regular file running a project script: the script is protected too.
#[test]
fn a_script_a_hook_runs() {
    each_user(|w| {
        init(w);
        write_exec(w, "scripts/lint.sh", "#!/bin/sh\ntrue\n");
        write_exec(
            w,
            ".git/hooks/pre-commit",
            "#!/bin/sh\nsh ./scripts/lint.sh\n",
        );
        attack(
            w,
            &plant(w, "scripts/lint.sh"),
            &[&["commit", "-q", "--allow-empty", "-m", "x"]],
        );
    });
}

/// `includeIf "onbranch:evil"`: not read while another branch is out, but the agent can switch
/// branches; what that file makes git run is protected all the same.
#[test]
fn an_include_for_another_branch() {
    each_user(|w| {
        init(w);
        write_exec(w, "hooks2/pre-commit", "#!/bin/sh\ntrue\n");
        w.write(
            "home/src/project/evil.cfg",
            "[core]\n\thooksPath = hooks2\n",
        );
        git(
            w,
            &["config", "includeIf.onbranch:evil.path", "../evil.cfg"],
        )
        .ok();
        let switch = format!("{}; git checkout -q -B evil", plant(w, "hooks2/pre-commit"));
        attack(w, &switch, &[&["commit", "-q", "--allow-empty", "-m", "x"]]);
    });
}

/// husky v9: `core.hooksPath = .husky/_`, whose stubs source `_/h`, which runs `.husky/<hook>`
/// when it exists. Both changing a script and adding a missing one are planting.
#[test]
fn husky_scripts_and_missing_hooks() {
    each_user(|w| {
        init(w);
        git(w, &["config", "core.hooksPath", ".husky/_"]).ok();
        write_exec(
            w,
            ".husky/_/h",
            "#!/usr/bin/env sh\nn=$(basename \"$0\")\ns=$(dirname \"$(dirname \"$0\")\")/$n\n\
             [ ! -f \"$s\" ] && exit 0\nsh -e \"$s\" \"$@\"\n",
        );
        for hook in ["pre-commit", "commit-msg"] {
            write_exec(
                w,
                &format!(".husky/_/{hook}"),
                "#!/usr/bin/env sh\n. \"$(dirname \"$0\")/h\"\n",
            );
        }
        write_exec(w, ".husky/pre-commit", "true\n");
        let commit: &[&str] = &["commit", "-q", "--allow-empty", "-m", "x"];
        attack(w, &plant(w, ".husky/pre-commit"), &[commit]);
        // Restore, then a hook that did not exist.
        write_exec(w, ".husky/pre-commit", "true\n");
        attack(w, &plant(w, ".husky/commit-msg"), &[commit]);
    });
}

/// core.hooksPath in a file that `include.path` / `includeIf` pulls in.
#[test]
fn hooks_path_from_an_included_file() {
    each_user(|w| {
        init(w);
        write_exec(w, "githooks/pre-commit", "#!/bin/sh\ntrue\n");
        w.write(
            "home/src/project/team.gitconfig",
            "[core]\n\thooksPath = githooks\n",
        );
        let cond = format!("gitdir:{}/", w.project.display());
        git(
            w,
            &[
                "config",
                &format!("includeIf.{cond}.path"),
                "../team.gitconfig",
            ],
        )
        .ok();
        let commit: &[&str] = &["commit", "-q", "--allow-empty", "-m", "x"];
        attack(w, &plant(w, "githooks/pre-commit"), &[commit]);
        // The included file itself: pointed at a new hooks directory.
        write_exec(w, "githooks/pre-commit", "#!/bin/sh\ntrue\n");
        let retarget = format!(
            "mkdir -p evil; {}; printf '[core]\\n\\thooksPath = evil\\n' > team.gitconfig",
            plant(w, "evil/pre-commit")
        );
        attack(w, &retarget, &[commit]);
        // An unconditional include.path the same way.
        git(w, &["config", "--unset", &format!("includeIf.{cond}.path")]).ok();
        git(w, &["config", "include.path", "../team.gitconfig"]).ok();
        write_exec(w, "githooks/pre-commit", "#!/bin/sh\ntrue\n");
        w.write(
            "home/src/project/team.gitconfig",
            "[core]\n\thooksPath = githooks\n",
        );
        attack(w, &plant(w, "githooks/pre-commit"), &[commit]);
    });
}

/// A relative core.hooksPath in the user's global config is relative to the top of whatever
/// worktree git runs in: this project's hooks directory is protected; where it is missing,
/// agentbox refuses (the agent could create it).
#[test]
fn a_relative_hooks_path_in_the_global_config() {
    each_user(|w| {
        init(w);
        let global = fs::read_to_string(w.home.join(".gitconfig")).unwrap();
        w.write(
            "home/.gitconfig",
            &format!("{global}[core]\n\thooksPath = .githooks\n"),
        );
        let out = w.sh(&[], "true");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains(".githooks"), "{}", out.stderr());
        write_exec(w, ".githooks/pre-commit", "#!/bin/sh\ntrue\n");
        attack(
            w,
            &plant(w, ".githooks/pre-commit"),
            &[&["commit", "-q", "--allow-empty", "-m", "x"]],
        );
    });
}

/// A command key whose script is an argument (`sh scripts/clean.sh`), and keys the old list
/// did not have (`gpg.x509.program`, `diff.external` with an argument).
#[test]
fn command_keys_and_their_script_arguments() {
    each_user(|w| {
        init(w);
        write_exec(w, "scripts/clean.sh", "#!/bin/sh\ncat\n");
        w.write("home/src/project/.gitattributes", "*.txt filter=x\n");
        git(w, &["config", "filter.x.clean", "sh scripts/clean.sh"]).ok();
        w.write("home/src/project/a.txt", "a\n");
        // `git add` runs the clean filter on a.txt; each attack writes a new a.txt first.
        let plant_clean = format!("{}; echo 1 >> a.txt", plant(w, "scripts/clean.sh"));
        attack(w, &plant_clean, &[&["add", "a.txt"]]);
        // Disarmed again, so that later commits (which may run the filter) stay clean.
        write_exec(w, "scripts/clean.sh", "#!/bin/sh\ncat\n");

        write_exec(w, "scripts/sign.sh", "#!/bin/sh\nexit 1\n");
        for (k, v) in [
            ("gpg.format", "x509"),
            ("gpg.x509.program", "scripts/sign.sh"),
            ("user.signingKey", "x"),
        ] {
            git(w, &["config", k, v]).ok();
        }
        attack(
            w,
            &plant(w, "scripts/sign.sh"),
            &[&["commit", "-q", "-S", "--allow-empty", "-m", "x"]],
        );
        git(w, &["config", "--unset", "gpg.x509.program"]).ok();

        write_exec(w, "scripts/t.sh", "#!/bin/sh\ntrue\n");
        git(w, &["config", "alias.t", "!sh scripts/t.sh --fast"]).ok();
        attack(w, &plant(w, "scripts/t.sh"), &[&["t"]]);
    });
}

/// `extensions.worktreeConfig = true` with no `config.worktree`: agentbox refuses with the
/// fix; once the user has created it, the agent cannot fill it with a core.fsmonitor command.
#[test]
fn worktree_config_cannot_be_planted() {
    each_user(|w| {
        init(w);
        git(w, &["config", "extensions.worktreeConfig", "true"]).ok();
        let out = w.sh(&[], "true");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stderr().contains("touch") && out.stderr().contains("config.worktree"),
            "{}",
            out.stderr()
        );
        fs::write(w.project.join(".git/config.worktree"), "").unwrap();
        w.chown_all();
        let script = format!(
            "{}; printf '[core]\\n\\tfsmonitor = {}\\n' > .git/config.worktree",
            plant(w, "fsmon.sh"),
            w.project.join("fsmon.sh").display()
        );
        attack(w, &script, &[&["status", "--porcelain"]]);
    });
}

/// `.git` a symlink to a directory in the project: the real git dir is protected.
#[test]
fn a_git_symlink_is_followed_to_the_real_git_dir() {
    each_user(|w| {
        init(w);
        fs::rename(w.project.join(".git"), w.project.join("gitdir")).unwrap();
        symlink("gitdir", w.project.join(".git")).unwrap();
        w.chown_all();
        let out = w.sh(&[], "true");
        out.ok();
        assert!(out.stderr().contains("is a symlink"), "{}", out.stderr());
        attack(
            w,
            &plant(w, ".git/hooks/pre-commit"),
            &[&["commit", "-q", "--allow-empty", "-m", "x"]],
        );
    });
}

/// A protected nested repository (or `.vscode/`) swapped in place: its parent directory renamed
/// away and a copy with a planted hook put where it was.
#[test]
fn a_nested_repository_cannot_be_swapped_in_place() {
    each_user(|w| {
        init(w);
        let inner = w.project.join("lib/inner");
        fs::create_dir_all(&inner).unwrap();
        w.chown_all();
        Out(w
            .program(OsStr::new("git"))
            .args(["init", "-q"])
            .current_dir(&inner)
            .output()
            .unwrap())
        .ok();
        w.write("home/src/project/a/b/.vscode/tasks.json", "{}\n");
        let swap = format!(
            "mv lib lib-old 2>/dev/null && cp -a lib-old lib && {} ; \
             mv lib/inner lib/inner-old 2>/dev/null && cp -a lib/inner-old lib/inner && {}",
            plant(w, "lib/inner/.git/hooks/pre-commit"),
            plant(w, "lib/inner/.git/hooks/pre-commit"),
        );
        let commit: &[&str] = &[
            "-C",
            "lib/inner",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ];
        attack(w, &swap, &[commit]);
        // The same for a protected .vscode two levels down: the sandbox cannot move it.
        let out = w
            .sh(
                &[],
                "mv a a2 2>/dev/null && echo moved-a; mv a/b a/b2 2>/dev/null && echo moved-b; \
                 mv a/b/.vscode a/b/v 2>/dev/null && echo moved-v; echo x > a/other && echo ok",
            )
            .ok();
        assert_eq!(out, "ok\n");
        assert!(w.project.join("a/b/.vscode/tasks.json").exists());
    });
}

/// Reading the configuration runs nothing: no hook, no fsmonitor, no filter, while the host's
/// own `git status` (the control) does run the fsmonitor.
#[test]
fn the_launch_runs_no_hook_or_fsmonitor() {
    each_user(|w| {
        init(w);
        write_exec(
            w,
            "fsmon.sh",
            &format!("#!/bin/sh\ntouch {}\n", mark(w).display()),
        );
        write_exec(
            w,
            ".git/hooks/post-checkout",
            &format!("#!/bin/sh\ntouch {}\n", mark(w).display()),
        );
        git(
            w,
            &[
                "config",
                "core.fsmonitor",
                &w.project.join("fsmon.sh").to_string_lossy(),
            ],
        )
        .ok();
        let _ = fs::remove_file(mark(w));
        w.sh(&[], "true").ok();
        assert!(!mark(w).exists(), "the launch ran the fsmonitor or a hook");
        git(w, &["status", "--porcelain"]);
        assert!(
            mark(w).exists(),
            "control: git status did not run the fsmonitor"
        );
    });
}

/// An include naming a FIFO would hang git: agentbox refuses after its timeout instead.
#[test]
fn an_include_of_a_fifo_refuses_instead_of_hanging() {
    each_user(|w| {
        init(w);
        let st = std::process::Command::new("mkfifo")
            .arg(w.project.join("fifo"))
            .status()
            .unwrap();
        assert!(st.success());
        w.chown_all();
        git(w, &["config", "include.path", "../fifo"]).ok();
        let t = Instant::now();
        let out = w.sh(&[], "true");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("FIFO"), "{}", out.stderr());
        assert!(t.elapsed() < Duration::from_secs(20));
    });
}

/// What git needs to write stays writable: add, commit, branch, checkout, stash inside.
#[test]
fn git_works_inside_with_every_protection_on() {
    each_user(|w| {
        init(w);
        write_exec(w, "githooks/pre-commit", "#!/bin/sh\ntrue\n");
        git(w, &["config", "core.hooksPath", "githooks"]).ok();
        let script = "set -e; echo 1 > f.txt; git add f.txt; git commit -q -m one; \
                      git branch b; git checkout -q b; echo 2 > f.txt; git stash -q; \
                      git stash pop -q; git commit -q -am two; git checkout -q main; \
                      git log --oneline | wc -l";
        let out = w.sh(&[], script).ok();
        assert_eq!(out.trim(), "2");
        assert_eq!(
            git(w, &["log", "--oneline", "b"]).ok().lines().count(),
            3,
            "the commits made inside are on the host"
        );
    });
}

/// Without git on the host, git's own files stay read-only and a warning says the configuration
/// was not checked (the host cannot run git later without installing it first).
#[test]
fn without_git_the_files_stay_protected_and_agentbox_says_so() {
    each_user(|w| {
        init(w);
        let bwrap = fs::canonicalize("/usr/bin/bwrap").unwrap();
        let script = format!(
            "{} && echo planted; true",
            plant(w, ".git/hooks/pre-commit")
        );
        // /usr/bin/env sets the PATH agentbox sees (the test user's setpriv needs the usual one).
        let args = [
            OsStr::new("PATH=/nonexistent"),
            OsStr::new(bin()),
            OsStr::new("run"),
            OsStr::new("--bwrap"),
            bwrap.as_os_str(),
            OsStr::new("--"),
            OsStr::new("/bin/sh"),
            OsStr::new("-c"),
            OsStr::new(&script),
        ];
        let out = Out(w
            .program(OsStr::new("/usr/bin/env"))
            .args(args)
            .output()
            .unwrap());
        let stdout = out.ok();
        assert!(!stdout.contains("planted"), "{stdout}");
        assert!(
            out.stderr().contains("git is not installed"),
            "{}",
            out.stderr()
        );
        assert!(!w.project.join(".git/hooks/pre-commit").exists());
    });
}

#[test]
fn git_hooks_and_config_are_read_only() {
    each_user(|w| {
        w.write("home/src/project/.git/config", "[core]\n");
        w.write("home/src/project/.git/HEAD", "ref: refs/heads/main\n");
        w.write("home/src/project/.envrc", "export A=1\n");
        let script = "echo x > .git/hooks/pre-commit 2>/dev/null && echo hook-written; \
             echo '[core] hooksPath=/tmp' >> .git/config 2>/dev/null && echo config-written; \
             echo x >> .envrc 2>/dev/null && echo envrc-written; \
             mv .git .git-old 2>/dev/null && echo git-moved; \
             echo ref > .git/ORIG_HEAD && echo git-writable";
        let out = w.sh(&[], script).ok();
        assert!(out.contains("git-writable"), "{out}");
        for bad in [
            "hook-written",
            "config-written",
            "envrc-written",
            "git-moved",
        ] {
            assert!(!out.contains(bad), "{bad}: {out}");
        }
        // .git/hooks did not exist: it was created empty, as git does, and stays empty.
        let hooks = w.project.join(".git/hooks");
        assert!(hooks.is_dir() && fs::read_dir(&hooks).unwrap().next().is_none());
        assert_eq!(
            fs::read_to_string(w.project.join(".envrc")).unwrap(),
            "export A=1\n"
        );
    });
}

/// What an earlier run could plant in git's files to have the host run code, or to get a
/// broader sandbox next time, does not work.
#[test]
fn git_files_cannot_be_turned_against_the_host() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        // 1. A `.git` file naming the home as git's directory does not make it writable.
        w.sh(&[], "printf 'gitdir: ../..\\n' > .git").ok();
        let out = w
            .sh(
                &[],
                "cat ~/.ssh/id_rsa 2>&1; echo x >> ~/.bashrc 2>&1; true",
            )
            .ok();
        assert!(!out.contains("PRIVATE KEY"), "{out}");
        assert!(!w.home.join(".bashrc").exists());
        // ... and the .git file itself is read-only from then on.
        let out = w
            .sh(
                &[],
                "echo 'gitdir: /' > .git 2>/dev/null && echo rewrote; true",
            )
            .ok();
        assert_eq!(out, "");
        fs::remove_file(w.project.join(".git")).unwrap();

        // 2. A `commondir` in a repository's own .git redirects config and hooks: the next run
        //    refuses (git never writes one there).
        w.write("home/src/project/.git/config", "[core]\n");
        w.write("home/src/project/.git/HEAD", "ref: refs/heads/main\n");
        w.sh(&[], "echo ../evil > .git/commondir").ok();
        let out = w.sh(&[], "true");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("commondir"), "{}", out.stderr());
        fs::remove_file(w.project.join(".git/commondir")).unwrap();

        // 3. core.hooksPath into the work tree (husky): the hooks there are read-only too.
        w.write(
            "home/src/project/.git/config",
            "[core]\n\thooksPath = .husky\n",
        );
        w.write("home/src/project/.husky/pre-commit", "#!/bin/sh\n");
        let out = w
            .sh(
                &[],
                "echo evil >> .husky/pre-commit 2>/dev/null && echo wrote; echo ok > other.txt",
            )
            .ok();
        assert!(!out.contains("wrote"), "{out}");
        assert_eq!(
            fs::read_to_string(w.project.join(".husky/pre-commit")).unwrap(),
            "#!/bin/sh\n"
        );
        // The control: the same run could write beside the hooks.
        assert_eq!(
            fs::read_to_string(w.project.join("other.txt")).unwrap(),
            "ok\n"
        );
        // Where the hooks directory it names does not exist, the run refuses.
        fs::remove_dir_all(w.project.join(".husky")).unwrap();
        let out = w.sh(&[], "true");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("does not exist"), "{}", out.stderr());
    });
}

/// A symlink planted among git's own worktree records (`.git/worktrees/x -> somewhere`) would
/// carry the pin of the directory it replaces (a read-write bind, by name) to wherever it
/// points: the launch refuses instead, naming it. Control: the same record as a real directory
/// starts.
#[test]
fn a_symlink_among_git_worktree_records_refuses_instead_of_being_mounted() {
    each_user(|w| {
        let init = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(&w.project)
            .status()
            .unwrap();
        assert!(init.success());
        w.write(
            "home/src/project/.git/worktrees/real/gitdir",
            "/nowhere/.git\n",
        );
        w.write("home/target/worktrees-like/gitdir", "/nowhere/.git\n");
        w.sh(&[], "true").ok();
        std::os::unix::fs::symlink(
            w.home.join("target/worktrees-like"),
            w.project.join(".git/worktrees/evil"),
        )
        .unwrap();
        w.chown_all();
        let out = w.sh(&[], "echo started");
        assert_eq!(out.code(), 125, "{}{}", out.stdout(), out.stderr());
        assert!(out.stderr().contains("worktrees/evil"), "{}", out.stderr());
        assert!(!out.stdout().contains("started"));
    });
}
