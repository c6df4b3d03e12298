//! What the command line gives back: the command's exit code, exit 125 with a hint for what
//! agentbox refuses (leaving nothing behind), and the tree, verbose and quiet outputs.

use std::ffi::OsStr;

use crate::harness::{Out, each_user};

#[test]
fn exit_codes_propagate() {
    each_user(|w| {
        assert_eq!(w.sh(&[], "exit 0").code(), 0);
        assert_eq!(w.sh(&[], "exit 7").code(), 7);
        assert_eq!(w.sh(&[], "kill -TERM $$").code(), 128 + 15);
        assert_eq!(w.sh(&[], "kill -KILL $$").code(), 128 + 9);
        let out = w.run_args(&["run", "--", "no-such-command-xyz"].map(OsStr::new));
        assert_eq!(out.code(), 127, "{}", out.stderr());
        assert!(out.stderr().contains("command not found"));
        w.write("home/src/project/notexec.sh", "#!/bin/sh\n");
        let out = w.run_args(&["run", "--", "./notexec.sh"].map(OsStr::new));
        assert_eq!(out.code(), 126, "{}", out.stderr());
    });
}

#[test]
fn broad_projects_exit_125_with_a_hint() {
    each_user(|w| {
        let out = Out(w
            .cmd(&["run", "--", "true"].map(OsStr::new))
            .current_dir(&w.home)
            .output()
            .unwrap());
        assert_eq!(out.code(), 125);
        assert!(out.stderr().contains("home directory"), "{}", out.stderr());
        assert!(out.stderr().contains("hint:"), "{}", out.stderr());
        let out = w.run_args(&["run", "--project", "/", "--", "true"].map(OsStr::new));
        assert_eq!(out.code(), 125);
        // Control: the same from the project works.
        assert_eq!(w.run_args(&["run", "--", "true"].map(OsStr::new)).code(), 0);
    });
}

#[test]
fn bad_input_exits_125_and_leaves_nothing_behind() {
    each_user(|w| {
        let before = w.listing();
        for args in [
            &["run"][..],
            &["run", "--net", "sideways", "--", "true"],
            &["run", "--env", "1BAD", "--", "true"],
            &["run", "--hide", "a[", "--", "true"],
            &["run", "--ro", "/does/not/exist", "--", "true"],
            &["run", "--bwrap", "/does/not/exist", "--", "true"],
            &["frobnicate"],
        ] {
            let out = w.run_args(&args.iter().map(OsStr::new).collect::<Vec<_>>());
            assert_eq!(out.code(), 125, "{args:?}: {}", out.stderr());
            assert!(!out.stderr().is_empty());
        }
        assert_eq!(before, w.listing());
    });
}

/// `--dry-run --tree` shows what the agent sees, plain when piped; `-v` shows each decision
/// before starting; `-q` hides notes.
#[test]
fn the_tree_verbose_and_quiet() {
    each_user(|w| {
        w.write("home/src/project/.env", "S=1");
        let out = w
            .run_args(&["run", "--dry-run", "--tree", "--", "true"].map(OsStr::new))
            .ok();
        let line = |needle: &str| {
            out.lines()
                .find(|l| l.trim_start().starts_with(needle))
                .unwrap_or_else(|| panic!("{needle} not in {out}"))
                .to_owned()
        };
        assert!(line(".env").contains("[masked]"));
        assert!(line("usr").contains("[ro]"));
        assert!(out.contains("[rw]") && out.contains("[tmpfs]"), "{out}");
        assert!(!out.contains('\x1b'), "no colours when piped");
        let out = w.run_args(&["-v", "run", "--", "true"].map(OsStr::new));
        assert_eq!(out.code(), 0);
        assert!(out.stderr().contains("--unshare-net"), "{}", out.stderr());
        assert!(
            out.stderr().contains("# masked: dotenv"),
            "{}",
            out.stderr()
        );
        let out = w.run_args(&["run", "-q", "--", "true"].map(OsStr::new));
        assert!(!out.stderr().contains("note:"), "{}", out.stderr());
        let out = w.run_args(&["run", "--", "true"].map(OsStr::new));
        assert!(
            out.stderr().contains("note: masking 1 secret"),
            "{}",
            out.stderr()
        );
    });
}
