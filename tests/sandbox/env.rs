//! The environment: the sandbox gets a scrubbed one (only what `--env` passes), and the
//! `--dry-run` script hands bwrap none of the user's.

use std::ffi::OsStr;
use std::fs;

use crate::harness::{Out, each_user};

#[test]
fn environment_is_scrubbed() {
    each_user(|w| {
        let out = w.sh(&[], "env").ok();
        assert!(
            !out.contains("leaked-aws-secret") && !out.contains("MY_TOKEN"),
            "{out}"
        );
        assert!(out.contains(&format!("HOME={}", w.home.display())), "{out}");
        let out = w.sh(&["--env", "MY_TOKEN", "--env", "X=1"], "env").ok();
        assert!(
            out.contains("MY_TOKEN=token-value-123") && out.contains("X=1"),
            "{out}"
        );
        assert!(!out.contains("leaked-aws-secret"));
    });
}

/// bwrap's pid 1 keeps the environment bwrap started with: the `--dry-run` script starts it
/// with none, so a token exported in the user's shell is not in /proc/1/environ. (Landlock
/// also stops the command reading pid 1's environ, which lies outside its domain: the run
/// goes without it, through --allow-nested, to see what bwrap itself was given.)
#[test]
fn the_dry_run_script_leaks_no_environment() {
    each_user(|w| {
        let args = [
            "run",
            "--dry-run",
            "--allow-nested",
            "--",
            "cat",
            "/proc/1/environ",
        ];
        let script = w.run_args(&args.map(OsStr::new)).ok();
        let file = w.base.join("s.sh");
        fs::write(&file, script).unwrap();
        let out = Out(w
            .program(OsStr::new("bash"))
            .arg(&file)
            .env("GITHUB_TOKEN", "ghp_LEAK")
            .output()
            .unwrap());
        assert!(!out.ok().contains("ghp_LEAK"));
    });
}
