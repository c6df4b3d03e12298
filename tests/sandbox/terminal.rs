//! On a real terminal (tmux): a resize reaches the sandbox, TIOCSTI does not, and Ctrl-C belongs
//! to the agent.

use std::fs;
use std::time::Duration;

use crate::harness::{bin, each_user, shell_quote, wait_for};

/// On a terminal (tmux), a full-screen program inside hears of a window resize (no
/// --new-session), while TIOCSTI is refused by the filter; the same TIOCSTI outside the
/// sandbox, in the same terminal, is the control.
#[test]
fn on_a_terminal_resize_reaches_the_sandbox_and_tiocsti_does_not() {
    each_user(|w| {
        let _server = w.tmux_server();
        let tmux = |args: &[&str]| {
            let st = w.tmux(args).status().unwrap();
            assert!(st.success(), "tmux {args:?}");
        };
        let tiocsti = r#"perl -e 'my $c = "x"; if (ioctl(STDIN, 0x5412, $c)) { print "INJECTED\n" } else { print "refused: $!\n" }'"#;
        let inner = format!(
            "trap 'stty size > cols.txt' WINCH; {tiocsti} > inside.txt; echo ready > ready.txt; \
             i=0; while [ $i -lt 200 ] && [ ! -s cols.txt ]; do sleep 0.05; i=$((i+1)); done"
        );
        let bin = bin();
        let pane = format!(
            "{tiocsti} > outside.txt; {bin} run -- sh -c {}; sleep 30",
            shell_quote(&inner)
        );
        tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
            &pane,
        ]);
        let ready = wait_for(&w.project.join("ready.txt"), Duration::from_secs(20));
        if ready.is_none() {
            let screen = w.tmux(&["capture-pane", "-p", "-t", "t"]).output().unwrap();
            panic!(
                "never started:\n{}",
                String::from_utf8_lossy(&screen.stdout)
            );
        }
        tmux(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
        let cols = wait_for(&w.project.join("cols.txt"), Duration::from_secs(10));
        let _ = w.tmux(&["kill-server"]).status();
        assert_eq!(cols.as_deref(), Some("40 120\n"), "no SIGWINCH inside");
        let inside = fs::read_to_string(w.project.join("inside.txt")).unwrap();
        assert_eq!(inside, "refused: Operation not permitted\n");
        // The control: outside the sandbox the same call works, unless this kernel refuses
        // TIOCSTI for everyone (dev.tty.legacy_tiocsti = 0).
        let outside = fs::read_to_string(w.project.join("outside.txt")).unwrap();
        let legacy = fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
            .map_or(true, |s| s.trim() == "1");
        if legacy {
            assert_eq!(outside, "INJECTED\n");
        } else {
            eprintln!("note: legacy_tiocsti is 0 here; outside: {outside}");
        }
    });
}

/// On a terminal, Ctrl-C reaches the agent (its handler runs and it carries on) instead of
/// killing bwrap and with it the whole sandbox; an agent without a handler still dies of it.
#[test]
fn ctrl_c_belongs_to_the_agent() {
    each_user(|w| {
        let _server = w.tmux_server();
        let tmux = |args: &[&str]| w.tmux(args).status().unwrap();
        let agent = "trap 'echo got-int >> int.txt; stop=1' INT; echo ready > ready.txt; i=0; \
                     while [ $i -lt 300 ] && [ -z \"$stop\" ]; do sleep 0.05; i=$((i+1)); done; \
                     echo finished >> int.txt";
        // One terminal per case, each an interactive shell (with job control, as a user has)
        // that is given the command line: an agent with a Ctrl-C handler, and one without, in
        // a project of its own (two sandboxes never share a tree).
        let second = w
            .write("home/src/second/.keep", "")
            .parent()
            .unwrap()
            .to_owned();
        let bin = bin();
        let cases = [
            (
                "a",
                format!(
                    "{bin} run -- sh -c {}; echo $? > exit1.txt",
                    shell_quote(agent)
                ),
            ),
            (
                "b",
                format!(
                    "{bin} run --project ../second -- sh -c 'echo ready > ready2.txt; sleep 60'; \
                     echo $? > exit2.txt"
                ),
            ),
        ];
        for (name, line) in &cases {
            let st = tmux(&[
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "100",
                "-y",
                "30",
                "bash --norc --noprofile -i",
            ]);
            assert!(st.success());
            tmux(&["send-keys", "-t", name, line, "Enter"]);
        }
        assert!(wait_for(&w.project.join("ready.txt"), Duration::from_secs(20)).is_some());
        assert!(wait_for(&second.join("ready2.txt"), Duration::from_secs(20)).is_some());
        tmux(&["send-keys", "-t", "a", "C-c"]);
        tmux(&["send-keys", "-t", "b", "C-c"]);
        let exit1 = wait_for(&w.project.join("exit1.txt"), Duration::from_secs(30));
        let exit2 = wait_for(&w.project.join("exit2.txt"), Duration::from_secs(30));
        tmux(&["kill-server"]);
        assert_eq!(
            fs::read_to_string(w.project.join("int.txt")).unwrap(),
            "got-int\nfinished\n"
        );
        assert_eq!(exit1.as_deref(), Some("0\n"));
        assert_eq!(exit2.as_deref(), Some("130\n"));
    });
}
