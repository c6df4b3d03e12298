//! `--gpu`: refused with a hint where the host has no GPU device node; where it has an NVIDIA
//! one, `nvidia-smi` works inside with it and not without it (the control). The plan itself
//! (device nodes on a made-up tree, nothing else added) is tested in the planner's unit tests.

use std::path::Path;

use crate::harness::each_user;

#[test]
fn gpu_is_handed_over_only_where_there_is_one() {
    let nvidia = Path::new("/dev/nvidia0").exists() && Path::new("/usr/bin/nvidia-smi").exists();
    let any = nvidia || Path::new("/dev/dri").exists() || Path::new("/dev/kfd").exists();
    each_user(|w| {
        let out = w.sh(&["--gpu"], "ls /dev");
        if !any {
            assert_eq!(out.code(), 125, "{}", out.stderr());
            assert!(out.stderr().contains("no GPU device"), "{}", out.stderr());
            return;
        }
        let listed = out.ok();
        assert!(out.stderr().contains("--gpu:"), "{}", out.stderr());
        let without = w.sh(&[], "ls /dev").ok();
        assert!(
            !without.contains("nvidia") && !without.contains("dri") && !without.contains("kfd")
        );
        assert!(listed.contains("nvidia") || listed.contains("dri") || listed.contains("kfd"));
        if nvidia {
            assert_eq!(
                w.sh(&["--gpu"], "nvidia-smi -L >/dev/null; echo $?").ok(),
                "0\n"
            );
            assert_ne!(
                w.sh(&[], "nvidia-smi -L >/dev/null 2>&1; echo $?").ok(),
                "0\n"
            );
        }
    });
}
