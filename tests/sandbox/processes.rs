//! Processes: the host's are invisible, inherited file descriptors stay outside, and killing
//! agentbox kills the sandbox with it.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Out, bin, each_user, processes_with};

#[test]
fn host_processes_are_invisible() {
    each_user(|w| {
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = sleeper.id();
        let out = w
            .sh(
                &[],
                &format!(
                    "test -e /proc/{pid} && echo host-pid-visible; \
                     kill -0 {pid} 2>/dev/null && echo host-pid-signalled; \
                     test -e /proc/self/status && echo own-proc-ok; echo $$"
                ),
            )
            .ok();
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(out.contains("own-proc-ok"), "{out}");
        assert!(!out.contains("host-pid"), "{out}");
        // The command is a low pid in its own namespace.
        let own: u32 = out.lines().last().unwrap().trim().parse().unwrap();
        assert!(own < 10, "{out}");
    });
}

#[test]
fn inherited_fds_do_not_reach_the_sandbox() {
    each_user(|w| {
        let inner = "ls /proc/$$/fd";
        // Control: without agentbox the inner shell sees fd 7.
        let direct = w
            .program(OsStr::new("bash"))
            .arg("-c")
            .arg(format!("exec 7</etc/hostname; sh -c '{inner}'"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&direct.stdout).contains('7'));
        let line = format!(
            "exec 7</etc/hostname; exec {} run -- sh -c '{inner}'",
            bin()
        );
        let out = Out(w
            .program(OsStr::new("bash"))
            .arg("-c")
            .arg(line)
            .output()
            .unwrap());
        let fds: Vec<String> = out.ok().split_whitespace().map(String::from).collect();
        assert_eq!(fds, ["0", "1", "2"]);
    });
}

#[test]
fn sigkill_of_agentbox_leaves_no_sandboxed_process() {
    each_user(|w| {
        let marker = format!(
            "{}.{}",
            4000 + std::process::id() % 1000,
            w.user.map_or(0, |u| u.uid)
        );
        let script = format!("sleep {marker} & sleep {marker}; wait");
        let mut child = w
            .cmd(&["run", "--", "sh", "-c", &script].map(OsStr::new))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_with(&marker).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            processes_with(&marker).len(),
            2,
            "the sandboxed sleeps never started"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_with(&marker).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            processes_with(&marker),
            Vec::<u32>::new(),
            "sandboxed processes outlived agentbox"
        );
    });
}
