//! The project and the rest of the file system: the project is writable and nothing else on the
//! host is, odd project names work, `--dry-run` changes nothing and a run leaves no stubs, and a
//! symlink planted in the project leads nowhere outside it.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::harness::{Out, World, each_user, users};

#[test]
fn project_is_writable_and_the_rest_is_not() {
    each_user(|w| {
        let out = w
            .sh(
                &[],
                "echo made > made.txt && echo project-ok; \
                 touch /usr/agentbox-x 2>/dev/null && echo usr-writable; \
                 touch /etc/agentbox-x 2>/dev/null && echo etc-writable; \
                 echo x > ~/inside-home && echo home-tmpfs-ok",
            )
            .ok();
        assert!(out.contains("project-ok"), "{out}");
        assert!(
            !out.contains("usr-writable") && !out.contains("etc-writable"),
            "{out}"
        );
        assert!(out.contains("home-tmpfs-ok"), "{out}");
        assert_eq!(
            fs::read_to_string(w.project.join("made.txt")).unwrap(),
            "made\n"
        );
        assert!(
            !w.home.join("inside-home").exists(),
            "the home tmpfs leaked to the host"
        );
        assert!(!Path::new("/usr/agentbox-x").exists());
    });
}

#[test]
fn odd_project_paths_work() {
    for user in users() {
        let name = OsString::from_vec(b"my proj 'q\" \xff $x".to_vec());
        let w = World::with_project_name(user, &name);
        let out = w.sh(&[], "echo hi > out.txt && pwd");
        assert_eq!(out.code(), 0, "{}", out.stderr());
        let mut want = w.project.as_os_str().as_bytes().to_vec();
        want.push(b'\n');
        assert_eq!(out.0.stdout, want);
        assert_eq!(
            fs::read_to_string(w.project.join("out.txt")).unwrap(),
            "hi\n"
        );
        // The --dry-run script, saved and run with bash, starts the same sandbox.
        let script = w.run_args(&["run", "--dry-run", "--", "cat", "out.txt"].map(OsStr::new));
        let file = w.base.join("sandbox.sh");
        fs::write(&file, script.ok()).unwrap();
        let out = Out(w.program(OsStr::new("bash")).arg(&file).output().unwrap());
        assert_eq!(out.ok(), "hi\n");
    }
}

#[test]
fn dry_run_changes_nothing_and_a_run_leaves_no_stubs() {
    each_user(|w| {
        w.write("home/src/project/.git/config", "[core]\n");
        w.write("home/src/project/.env", "S=1");
        let before = w.listing();
        let out = w.run_args(&["run", "--dry-run", "--", "true"].map(OsStr::new));
        let script = out.ok();
        assert!(
            script.contains("--ro-bind-data") && script.contains("/.env"),
            "{script}"
        );
        assert!(script.contains("mkdir -p --"), "{script}");
        assert_eq!(before, w.listing(), "--dry-run changed the host");
        w.sh(&[], "true").ok();
        let mut after = w.listing();
        after.retain(|p| !p.ends_with(".git/hooks"));
        // agentbox's package caches are kept between runs on purpose (see toolchains.rs).
        let caches = w.home.join(".local/share/agentbox/cache");
        after.retain(|p| !p.starts_with(&caches) && (before.contains(p) || !caches.starts_with(p)));
        assert_eq!(before, after, "a run left files behind");
    });
}

/// A symlink planted in the project (by an earlier run, say) is never followed to a host path
/// outside the sandbox on the next run; a link within the project is the control. A symlinked
/// `.git/hooks` (git on the host would follow it, and the agent could replace it) refuses.
#[test]
fn planted_symlinks_lead_nowhere() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        w.write("home/src/project/real.txt", "project file");
        let ssh = w.home.join(".ssh");
        symlink(ssh.join("id_rsa"), w.project.join(".env")).unwrap();
        symlink(&ssh, w.project.join("notes")).unwrap();
        symlink("real.txt", w.project.join("link.txt")).unwrap();
        let out = w.sh(&[], "cat .env notes/id_rsa 2>&1; cat link.txt");
        let stdout = out.ok();
        assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
        assert!(stdout.ends_with("project file"), "{stdout}");

        w.write("home/src/project/.git/config", "[core]\n");
        symlink(&ssh, w.project.join(".git/hooks")).unwrap();
        let out = w.sh(&[], "cat .git/hooks/id_rsa");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stderr().contains(".git/hooks is a symlink"),
            "{}",
            out.stderr()
        );
        // Nothing was created on the host where the links point.
        assert_eq!(fs::read_dir(&ssh).unwrap().count(), 1);
    });
}

/// Two sandboxes on one tree could race each other's protections (one swaps a directory for a
/// symlink between the other's scan and its mounts), so a second run on the same project, on a
/// directory inside it or on one that holds it refuses while the first runs. Controls: a
/// sibling project starts meanwhile, and the same project starts once the first has ended.
#[test]
fn a_second_sandbox_on_the_same_tree_is_refused_while_the_first_runs() {
    each_user(|w| {
        let sibling = w
            .write("home/src/sibling/.keep", "")
            .parent()
            .unwrap()
            .to_owned();
        w.write("home/src/project/sub/.keep", "");
        let mut first = first_sandbox(w);
        let sub = w.project.join("sub");
        let parent = w.project.parent().unwrap().to_owned();
        for project in [&w.project, &sub, &parent] {
            let args = ["run", "--project"].map(OsStr::new);
            let mut args = args.to_vec();
            args.extend([project.as_os_str(), OsStr::new("--"), OsStr::new("true")]);
            let out = w.run_args(&args);
            assert_eq!(out.code(), 125, "{project:?}: {}", out.stderr());
            assert!(
                out.stderr().contains("another agentbox sandbox"),
                "{}",
                out.stderr()
            );
            assert!(out.stderr().contains("hint:"), "{}", out.stderr());
        }
        let args = ["run", "--project"].map(OsStr::new);
        let mut args = args.to_vec();
        args.extend([sibling.as_os_str(), OsStr::new("--"), OsStr::new("true")]);
        w.run_args(&args).ok();
        first.kill().unwrap();
        first.wait().unwrap();
        w.sh(&[], "true").ok();
    });
}

/// A linked worktree shares its git directory with the main checkout, and its sandbox gets that
/// directory read-write: a sandbox in the main checkout and one in the worktree conflict too.
/// Control: once the first has ended, the worktree's run starts.
#[test]
fn a_worktree_and_its_main_checkout_are_one_tree_for_the_lock() {
    each_user(|w| {
        let git = |args: &[&str]| {
            let out = w
                .program(OsStr::new("git"))
                .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        w.write("home/src/project/a.txt", "a\n");
        git(&["init", "-q"]);
        git(&["add", "a.txt"]);
        git(&["commit", "-qm", "a"]);
        git(&["worktree", "add", "-q", "../wt"]);
        let wt = w.project.parent().unwrap().join("wt");
        let mut first = first_sandbox(w);
        let mut args = ["run", "--project"].map(OsStr::new).to_vec();
        args.extend([wt.as_os_str(), OsStr::new("--"), OsStr::new("true")]);
        let out = w.run_args(&args);
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stderr().contains("another agentbox sandbox"),
            "{}",
            out.stderr()
        );
        first.kill().unwrap();
        first.wait().unwrap();
        w.run_args(&args).ok();
    });
}

/// A sandbox in the project that stays up (for 30 s at most), once it has started.
fn first_sandbox(w: &World) -> std::process::Child {
    let first = w
        .cmd(&["run", "--", "sh", "-c", "echo up > up.txt; sleep 30"].map(OsStr::new))
        .spawn()
        .unwrap();
    let up = crate::harness::wait_for(
        &w.project.join("up.txt"),
        std::time::Duration::from_secs(20),
    );
    assert!(up.is_some(), "the first sandbox did not start");
    first
}
