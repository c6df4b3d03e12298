//! `--pids` and `--memory`: they hold, or agentbox refuses rather than run without them.

use std::fs;
use std::process::Command;

use crate::harness::each_user;

/// `--pids` stops a fork bomb and `--memory` a memory hog, each beside the same run without
/// the limit. Where this user cannot make cgroups and systemd is absent, agentbox refuses with
/// exit 125 and a hint, and never runs without the limit.
#[test]
fn limits_hold_or_agentbox_refuses() {
    each_user(|w| {
        let bomb = "i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); echo $i > count.txt; \
                    done 2>/dev/null; true";
        let out = w.sh(&["--pids", "30"], bomb);
        if out.code() == 125 {
            assert!(
                out.stderr().contains("cannot enforce --memory/--pids"),
                "{}",
                out.stderr()
            );
            assert!(out.stderr().contains("hint:"));
            assert!(
                !w.project.join("count.txt").exists(),
                "it ran without the limit"
            );
            eprintln!(
                "note: limits not available to this user here: {}",
                out.stderr()
            );
            return;
        }
        let count: u32 = fs::read_to_string(w.project.join("count.txt"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(count < 30, "{count} processes started under --pids 30");
        // Control: without the limit all 100 start.
        w.sh(&[], bomb).ok();
        let count = fs::read_to_string(w.project.join("count.txt")).unwrap();
        assert_eq!(count.trim(), "100");

        let hog = "head -c 300M /dev/zero | tail -n 1 > /dev/null; echo $?";
        assert_eq!(w.sh(&["--memory", "64M"], hog).ok(), "137\n");
        assert_eq!(w.sh(&["--memory", "1G"], hog).ok(), "0\n");
        // The cgroups are gone afterwards.
        let leftovers = Command::new("find")
            .args(["/sys/fs/cgroup", "-maxdepth", "4", "-name", "agentbox-*"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&leftovers.stdout), "");
    });
}
