//! Which directory is the project: the git checkout's top level when started in a
//! subdirectory, never more than the directory holding the nearest `.git` (a planted `.git`
//! file whose git dir names another work tree moves nothing), and a project the user cannot
//! write is refused before the run.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::harness::{Out, World, each_user};

fn run_in(w: &World, dir: &std::path::Path, args: &[&str]) -> Out {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    Out(w.cmd(&args).current_dir(dir).output().unwrap())
}

#[test]
fn a_subdirectory_launch_makes_the_checkout_top_level_the_project() {
    each_user(|w| {
        w.host_sh("git init -q && mkdir -p sub/deep").ok();
        let deep = w.project.join("sub/deep");
        let out = run_in(
            w,
            &deep,
            &["run", "--", "sh", "-c", "pwd && echo hi > ../../at-top"],
        );
        assert_eq!(out.ok().trim(), deep.to_str().unwrap());
        assert!(
            out.stderr().contains(&format!(
                "project: {} (the top level of the git checkout",
                w.project.display()
            )),
            "{}",
            out.stderr()
        );
        assert_eq!(
            fs::read_to_string(w.project.join("at-top")).unwrap(),
            "hi\n"
        );
        // `--project .` keeps the subdirectory: the top level is out of reach.
        let out = run_in(
            w,
            &deep,
            &[
                "run",
                "--project",
                ".",
                "--",
                "sh",
                "-c",
                "echo no > ../../dot",
            ],
        );
        assert!(!out.stderr().contains("top level"), "{}", out.stderr());
        assert!(!w.project.join("dot").exists());
    });
}

#[test]
fn a_planted_git_file_cannot_widen_the_project() {
    each_user(|w| {
        // An earlier run planted sub/.git naming a git dir whose core.worktree is the whole
        // home: git itself would call the home the top level.
        let gd = w.home.join("evil.git");
        w.host_sh(&format!(
            "git init -q && mkdir -p sub/deep && git init -q --bare {gd} && \
             git --git-dir={gd} config core.bare false && \
             git --git-dir={gd} config core.worktree {home} && \
             printf 'gitdir: {gd}\\n' > sub/.git",
            gd = gd.display(),
            home = w.home.display()
        ))
        .ok();
        let deep = w.project.join("sub/deep");
        // Positive control: git's own answer is the home.
        let git = Out(w
            .program(OsStr::new("git"))
            .args(["rev-parse", "--show-toplevel"])
            .current_dir(&deep)
            .output()
            .unwrap());
        assert_eq!(git.ok().trim(), w.home.to_str().unwrap());
        // agentbox's project is sub, the directory holding the .git file: no further.
        let out = run_in(
            w,
            &deep,
            &[
                "run",
                "--",
                "sh",
                "-c",
                &format!(
                    "echo ok > ../in-sub; echo x > {}/widened; echo x > ../../at-top",
                    w.home.display()
                ),
            ],
        );
        assert!(
            out.stderr()
                .contains(&format!("project: {} (", w.project.join("sub").display())),
            "{}",
            out.stderr()
        );
        assert_eq!(
            fs::read_to_string(w.project.join("sub/in-sub")).unwrap(),
            "ok\n"
        );
        assert!(!w.home.join("widened").exists());
        assert!(!w.project.join("at-top").exists());
    });
}

#[test]
fn a_project_the_user_cannot_write_is_refused_up_front() {
    each_user(|w| {
        // Owned by root, 0755: only root may write it.
        let dir = w.base.join("roots");
        fs::create_dir_all(&dir).unwrap();
        let out = w.run_args(
            &[
                "run",
                "--project",
                dir.to_str().unwrap(),
                "--",
                "touch",
                "f",
            ]
            .map(OsStr::new),
        );
        match w.user {
            // Positive control: root may write it, and does.
            None => {
                out.ok();
                assert!(dir.join("f").exists());
            }
            Some(_) => {
                assert_eq!(out.code(), 125, "{}", out.stderr());
                assert!(
                    out.stderr().contains("is not writable by you")
                        && out
                            .stderr()
                            .contains("hint: run in a directory of your own"),
                    "{}",
                    out.stderr()
                );
                assert!(!dir.join("f").exists());
            }
        }
    });
}

/// A linked worktree and a submodule are checkouts of their own: started below one, the
/// project is its top level, not the main checkout's or the superproject's.
#[test]
fn worktrees_and_submodules_are_their_own_top_level() {
    each_user(|w| {
        w.host_sh(
            "git init -q -b main && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m init && \
             git init -q -b main lib && git -C lib -c user.name=t -c user.email=t@t commit -q --allow-empty -m l && \
             git -c protocol.file.allow=always submodule -q add ./lib sub && \
             git worktree add -q wt && mkdir -p wt/deep sub/deep",
        )
        .ok();
        // A linked worktree: git works inside (its common git dir is bound for it).
        let out = run_in(
            w,
            &w.project.join("wt/deep"),
            &[
                "run",
                "--",
                "sh",
                "-c",
                "echo ok > ../mark && git rev-parse --show-toplevel",
            ],
        );
        let wt = w.project.join("wt");
        assert_eq!(out.ok().trim(), wt.to_str().unwrap(), "{}", out.stderr());
        assert!(
            out.stderr()
                .contains(&format!("project: {} (", wt.display()))
        );
        assert!(wt.join("mark").is_file());
        // A submodule: its own top level, and a note that its git directory is outside.
        let out = run_in(
            w,
            &w.project.join("sub/deep"),
            &["run", "--", "sh", "-c", "echo ok > ../mark"],
        );
        out.ok();
        let sub = w.project.join("sub");
        let err = out.stderr();
        assert!(
            err.contains(&format!("project: {} (", sub.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "is a submodule: its git directory is in {}, outside the project",
                w.project.display()
            )) && err.contains(&format!("--project {} includes it", w.project.display())),
            "{err}"
        );
        assert!(sub.join("mark").is_file());
    });
}

/// Started in a linked worktree, the sandbox writes the main checkout's git directory: a bwrap
/// there (planted by an earlier run) is refused with the reason; the same file elsewhere is
/// used (the control).
#[test]
fn a_bwrap_in_a_linked_worktrees_common_git_dir_is_refused() {
    each_user(|w| {
        w.host_sh(
            "git init -q -b main && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m init && \
             git worktree add -q wt",
        )
        .ok();
        let marker = w.home.join("planted-bwrap-ran");
        let script = crate::harness::spy_script(&marker, "/usr/bin/bwrap");
        let planted = w.project.join(".git/bwrap");
        let elsewhere = w.base.join("tools/bwrap");
        for p in [&planted, &elsewhere] {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, &script).unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let wt = w.project.join("wt");
        let run = |bwrap: &std::path::Path| {
            let args = ["run", "--bwrap", bwrap.to_str().unwrap(), "--", "true"];
            run_in(w, &wt, &args)
        };
        // Control: the same bwrap outside anything the sandbox writes is used.
        run(&elsewhere).ok();
        assert!(marker.exists(), "control: the bwrap given was not used");
        fs::remove_file(&marker).unwrap();
        let out = run(&planted);
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stderr().contains("a git directory the sandbox writes"),
            "{}",
            out.stderr()
        );
        assert!(!marker.exists(), "the planted bwrap ran on the host");
    });
}
