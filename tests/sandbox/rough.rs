//! Rough edges: a closed pipe on stdout, `--ro=~/x`, a `--dry-run` script of a filtered run.

use std::ffi::OsStr;

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
        std::fs::write(&path, &script).unwrap();
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
