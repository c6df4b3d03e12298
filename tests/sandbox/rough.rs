//! Rough edges: a closed pipe on stdout, `--ro=~/x`, a `--dry-run` script of a filtered run.

use std::ffi::OsStr;
use std::fs;

use crate::harness::{bin, each_user, shell_quote};

#[test]
fn printing_commands_stop_quietly_on_a_closed_pipe() {
    each_user(|w| {
        for cmd in [
            "man",
            "completions bash",
            "profiles",
            "profile show claude",
            "shell-init bash",
            "run --dry-run -- true",
            "run --dry-run --tree -- true",
        ] {
            // The reader is gone before agentbox writes (`true` reads nothing), so the write
            // meets a closed pipe whatever the output's size; stderr shows whether agentbox
            // complained.
            let out = w.host_sh(&format!(
                "{{ sleep 0.3; {} {cmd}; }} 2>err | true; cat err",
                shell_quote(bin())
            ));
            let text = out.stdout();
            assert!(
                !text.contains("Broken pipe") && !text.contains("panicked"),
                "{cmd}: {text}"
            );
        }
    });
}

#[test]
fn a_tilde_the_shell_did_not_expand_gets_a_hint() {
    each_user(|w| {
        // Paths in these messages are shown normalised.
        let odd = format!("{}/./a/../gone", w.base.display());
        let out = w.run_args(&["run", "--rw", &odd, "--", "true"].map(OsStr::new));
        assert_eq!(out.code(), 125);
        assert!(
            out.stderr()
                .contains(&format!("--ro/--rw {}/gone: ", w.base.display())),
            "{}",
            out.stderr()
        );
        let out = w.run_args(&["run", "--ro=~/nothing-here", "--", "true"].map(OsStr::new));
        assert_eq!(out.code(), 125);
        assert!(
            out.stderr()
                .contains("hint: the shell did not expand ~ here")
                && out.stderr().contains("`--ro ~/nothing-here` with a space"),
            "{}",
            out.stderr()
        );
    });
}

#[test]
fn a_filtered_dry_run_says_at_its_top_that_it_cannot_run_alone() {
    each_user(|w| {
        let out =
            w.run_args(&["run", "--dry-run", "--net", "filtered", "--", "true"].map(OsStr::new));
        let script = out.ok();
        let mut lines = script.lines();
        assert_eq!(lines.next(), Some("#!/usr/bin/env bash"));
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("# This script cannot run by itself")
        );
        let path = w.base.join("dry.sh");
        fs::write(&path, &script).unwrap();
        let run = w.host_sh(&format!(
            "bash {} 2>&1; echo rc=$?",
            shell_quote(path.to_str().unwrap())
        ));
        assert!(
            run.stdout().contains("needs agentbox run") && run.stdout().contains("rc=2"),
            "{}",
            run.stdout()
        );
        // Positive control: without the filtered network the script is just the sandbox.
        let plain = w
            .run_args(&["run", "--dry-run", "--", "true"].map(OsStr::new))
            .ok();
        assert!(!plain.contains("cannot run by itself"));
    });
}

/// doctor says what `--memory` will do for this user: a warning exactly where the run refuses.
#[test]
fn doctor_tells_whether_memory_limits_work_for_this_user() {
    each_user(|w| {
        let doctor = w.run_args(&["doctor"].map(OsStr::new));
        let line = doctor
            .stdout()
            .lines()
            .find(|l| l.contains("] limits: "))
            .unwrap_or_else(|| panic!("{}", doctor.stdout()))
            .to_owned();
        let run = w.sh(&["--memory", "64M"], "true");
        match run.code() {
            125 => {
                assert!(
                    line.starts_with("[warn] limits: --memory/--pids would be refused"),
                    "{line}"
                );
                assert!(run.stderr().contains("cannot enforce --memory/--pids"));
            }
            0 => assert!(line.starts_with("[ok] limits:"), "{line}"),
            c => panic!("{c}: {}", run.stderr()),
        }
    });
}

/// An OOM kill under --memory is said in one line; a SIGKILL without it is described.
#[test]
fn an_oom_kill_says_so() {
    each_user(|w| {
        let hog = "head -c 300M /dev/zero | tail -n 1 > /dev/null; echo $?";
        let out = w.sh(&["--memory", "64M"], hog);
        if out.code() == 125 {
            eprintln!("note: limits not available to this user here");
        } else {
            assert_eq!(out.ok(), "137\n");
            assert!(
                out.stderr()
                    .contains("agentbox: out of memory: the kernel killed 1 process(es)"),
                "{}",
                out.stderr()
            );
            // Positive control: room enough, no such line.
            let out = w.sh(&["--memory", "1G"], hog);
            assert_eq!(out.ok(), "0\n");
            assert!(!out.stderr().contains("out of memory"), "{}", out.stderr());
        }
        let out = w.sh(&[], "kill -9 $$");
        assert_eq!(out.code(), 137);
        assert!(
            out.stderr()
                .contains("the command was killed (SIGKILL, exit 137)"),
            "{}",
            out.stderr()
        );
        assert!(!w.sh(&[], "exit 3").stderr().contains("killed"));
    });
}

/// The mount points bwrap makes in an agent's persistent home (an empty `.gitconfig` under
/// the user's, the project's skeleton) are removed after the run; what the agent wrote stays.
#[test]
fn mount_points_do_not_pile_up_in_an_agent_home() {
    each_user(|w| {
        w.write("home/.gitconfig", "[user]\n\tname = t\n");
        let agent_home = w.home.join(".local/share/agentbox/home/claude");
        let script = "echo hi > ~/keep && mkdir -p ~/src/mine && git config user.name";
        // Positive control: while another run holds the home (its shared lock), nothing is
        // removed, and bwrap's mount points are there to see.
        fs::create_dir_all(&agent_home).unwrap();
        w.chown_all();
        let held = w.host_sh(&format!(
            "flock -s {} {} run -q --profile claude --net none -- sh -c {}",
            shell_quote(agent_home.to_str().unwrap()),
            shell_quote(bin()),
            shell_quote(script)
        ));
        assert_eq!(held.ok(), "t\n", "{}", held.stderr());
        let gitconfig = agent_home.join(".gitconfig");
        let skeleton = agent_home.join("src/project");
        assert_eq!(fs::metadata(&gitconfig).unwrap().len(), 0);
        assert!(skeleton.is_dir());
        // A run of its own cleans them up, and keeps what the agent made.
        let out = w.sh(&["-q", "--profile", "claude", "--net", "none"], script);
        assert_eq!(out.ok(), "t\n");
        assert!(!gitconfig.exists() && !skeleton.exists());
        assert!(agent_home.join("keep").is_file() && agent_home.join("src/mine").is_dir());
    });
}
