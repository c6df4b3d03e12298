//! No flag or profile exposes more than it says: an executable in the home is shown alone,
//! never with its directory; a broad `--ro` is refused like a broad `--rw`; an unknown option
//! before the command is an error, never the command.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::harness::{Out, PATH, World, each_user};

fn executable(w: &World, rel: &str, body: &str) {
    let p = w.write(rel, body);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `~/mytool`, run by `#!/usr/bin/env mysh` where `mysh` is `~/mysh`: both are shown, each
/// file alone, and `~/secret.txt` beside them stays hidden.
#[test]
fn a_tool_directly_in_the_home_does_not_show_the_home() {
    each_user(|w| {
        executable(w, "home/mysh", "#!/bin/sh\nexec /bin/sh \"$@\"\n");
        let secret = w.home.join("secret.txt");
        let body = format!(
            "#!/usr/bin/env mysh\necho tool-ran\ncat {} 2>/dev/null || echo secret-hidden\n",
            secret.display()
        );
        executable(w, "home/mytool", &body);
        w.write("home/secret.txt", "TOP-SECRET\n");
        let path = format!("{}:{PATH}", w.home.display());
        let run = |args: &[&str]| {
            let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
            Out(w.cmd(&args).env("PATH", &path).output().unwrap())
        };
        // Control: on the host the tool reads the secret.
        let host = w
            .program(&w.home.join("mytool").into_os_string())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&host.stdout),
            "tool-ran\nTOP-SECRET\n"
        );
        // Inside: the tool runs (through its interpreter in the home), the secret is hidden.
        let out = run(&["run", "--profile", "generic", "--", "mytool"]);
        assert_eq!(out.ok(), "tool-ran\nsecret-hidden\n", "{}", out.stderr());
        let list = format!("ls -a {}", w.home.display());
        let out = run(&["run", "--profile", "generic", "--", "sh", "-c", &list]);
        assert!(!out.ok().contains("secret.txt"), "{}", out.stdout());
        // Without a profile, the hint names the file, not the home (`--ro ~` is refused), and
        // following it works.
        executable(
            w,
            "home/plain",
            "#!/bin/sh
echo plain-ran
",
        );
        let out = run(&["run", "--no-profile", "--", "plain"]);
        assert_eq!(out.code(), 127, "{}", out.stderr());
        let file = w.home.join("plain");
        let hint = format!("hint: agentbox run --ro {} -- plain", file.display());
        assert!(out.stderr().contains(&hint), "{}", out.stderr());
        let file = file.to_str().unwrap();
        let out = run(&["run", "--no-profile", "--ro", file, "--", "plain"]);
        assert_eq!(
            out.ok(),
            "plain-ran
"
        );
    });
}

#[test]
fn a_broad_ro_is_refused_unless_asked_for() {
    each_user(|w| {
        w.write("home/secret.txt", "TOP-SECRET\n");
        w.write("home/data/notes.txt", "notes\n");
        let home = w.home.to_str().unwrap();
        let read = format!("cat {home}/secret.txt");
        for ro in [home, "/", "/proc", "/sys", "/dev", "/run", "/tmp"] {
            let out = w.sh(&["--ro", ro], &read);
            assert_eq!(out.code(), 125, "--ro {ro}: {}", out.stderr());
            assert!(
                out.stderr().contains("hint:"),
                "--ro {ro}: {}",
                out.stderr()
            );
            assert!(!out.stdout().contains("TOP-SECRET"));
        }
        // The home's parent too (it holds the home).
        let parent = w.home.parent().unwrap().to_str().unwrap().to_owned();
        assert_eq!(w.sh(&["--ro", &parent], &read).code(), 125);
        // Control: a narrower path is shown...
        let data = format!("{home}/data");
        let out = w.sh(&["--ro", &data], &format!("cat {data}/notes.txt"));
        assert_eq!(out.ok(), "notes\n");
        // ... and the override does what it says, with a warning.
        let out = w.sh(&["--allow-broad-project", "--ro", home], &read);
        assert_eq!(out.ok(), "TOP-SECRET\n");
        assert!(
            out.stderr().contains("--allow-broad-project"),
            "{}",
            out.stderr()
        );
    });
}

#[test]
fn an_unknown_option_is_an_error_never_the_command() {
    each_user(|w| {
        let marker = w.project.join("ran");
        let touch = format!("touch {}", marker.display());
        let out = w.sh(&["--allow-domains", "example.com"], &touch);
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stderr().contains("did you mean `--allow-domain`?"),
            "{}",
            out.stderr()
        );
        // Without `--` as well, and an unknown word with no near match.
        for args in [
            &["run", "--allow-domains", "x", "true"][..],
            &["run", "--frobnicate", "--", "true"],
            &["run", "-Z", "true"],
        ] {
            let out = w.run_args(&args.iter().map(OsStr::new).collect::<Vec<_>>());
            assert_eq!(out.code(), 125, "{args:?}: {}", out.stderr());
            assert!(out.stderr().contains("unknown option"), "{}", out.stderr());
        }
        assert!(!marker.exists());
        // Control: the same command runs with the right spelling.
        w.sh(&["--allow-domain", "example.com"], &touch).ok();
        assert!(marker.exists());
        // After `--`, a word that starts with `-` is the command, and options after the
        // command are its own.
        executable(w, "home/bin/--weird", "#!/bin/sh\necho weird-ran \"$@\"\n");
        let path = format!("{}:{PATH}", w.home.join("bin").display());
        let args = ["run", "--", "--weird", "--allow-domains", "-v"].map(OsStr::new);
        let out = Out(w.cmd(&args).env("PATH", &path).output().unwrap());
        assert_eq!(out.ok(), "weird-ran --allow-domains -v\n");
        let out = w.run_args(&["run", "echo", "--allow-domains", "-v"].map(OsStr::new));
        assert_eq!(out.ok(), "--allow-domains -v\n");
    });
}

/// The kernel's Landlock ABI, from the host: a test of the second wall on a kernel without it
/// says so and fails, rather than passing with nothing to prove.
fn landlock_abi(w: &World) -> u32 {
    let out = w.run_args(&["doctor", "--json"].map(OsStr::new));
    let doc: serde_json::Value = serde_json::from_slice(&out.0.stdout).unwrap();
    let check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "landlock")
        .unwrap_or_else(|| panic!("no landlock check in doctor: {doc}"));
    let detail = check["detail"].as_str().unwrap();
    let abi = detail
        .strip_prefix("Landlock ABI ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        abi >= 2,
        "THIS KERNEL HAS NO USABLE LANDLOCK ({detail}): the second wall cannot be tested here"
    );
    abi
}

/// `/run` is a read-write tmpfs in bwrap's plan, left out of Landlock's rules: a write there is
/// refused by Landlock alone. The control is the same sandbox without Landlock
/// (`--allow-nested` turns it off: it forbids the mounts a nested sandbox makes), where the
/// same write succeeds; and the places meant to be writable still are.
#[test]
fn landlock_refuses_a_write_the_mounts_allow() {
    each_user(|w| {
        landlock_abi(w);
        let script = "grep -q ' /run rw,' /proc/self/mountinfo && echo run-mount-rw; \
                      echo x > /run/f && echo run-written; \
                      echo x > /proc/self/mem 2>/dev/null || echo proc-mem-refused";
        for net in [&[][..], &["--net", "filtered"]] {
            let out = w.sh(net, script);
            assert_eq!(out.ok(), "run-mount-rw\nproc-mem-refused\n", "{net:?}");
            assert!(
                out.stderr().contains("Permission denied"),
                "{}",
                out.stderr()
            );
            // The proxy's socket directory is a host directory bound read-write (the relay
            // needs its socket): Landlock keeps the agent from planting anything in it.
            if net.is_empty() {
                let out = w.sh(&["--net", "filtered"], "echo x > /run/agentbox/net/planted");
                assert_ne!(out.code(), 0);
                assert!(
                    out.stderr().contains("Permission denied"),
                    "{}",
                    out.stderr()
                );
            }
            // Control: without Landlock, the very same mounts take the write.
            let mut off = net.to_vec();
            off.push("--allow-nested");
            let out = w.sh(&off, script);
            assert!(out.ok().contains("run-mount-rw\nrun-written\n"), "{net:?}");
        }
        // What the plan makes writable stays writable under Landlock.
        let home = w.home.display();
        let script = format!(
            "echo x > {home}/f && echo x > /tmp/f && echo x > /var/tmp/f && echo x > f && \
             echo x > /dev/null && echo x > /dev/shm/f && echo writable"
        );
        assert_eq!(w.sh(&[], &script).ok(), "writable\n");
        let out = w.sh(&["--net", "filtered"], &script);
        assert_eq!(out.ok(), "writable\n");
        // Output the user redirected to a file can be reopened by name (`> /dev/stdout`).
        let file = w.write("home/out.txt", "");
        let out = w
            .cmd(&["run", "--", "sh", "-c", "echo reopened > /dev/stdout"].map(OsStr::new))
            .stdout(fs::OpenOptions::new().write(true).open(&file).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(fs::read_to_string(&file).unwrap(), "reopened\n");
    });
}

/// /proc is read-only (EROFS, before Landlock is asked), so /proc/PID/mem cannot be opened
/// for writing; the filtered network's relay makes it so itself after writing its uid maps.
/// `--allow-debug` opens it on purpose.
#[test]
fn proc_mem_opens_for_writing_only_with_allow_debug() {
    each_user(|w| {
        let script = "(exec 3<>/proc/self/mem) && echo opened; \
                      (exec 4</proc/self/mem) && echo readable";
        for net in ["none", "filtered"] {
            let out = w.sh(&["--net", net], script);
            assert_eq!(out.ok(), "readable\n", "--net {net}");
            assert!(
                out.stderr().contains("Read-only file system"),
                "--net {net}: {}",
                out.stderr()
            );
            let out = w.sh(&["--net", net, "--allow-debug"], script);
            assert_eq!(
                out.ok(),
                "opened\nreadable\n",
                "--net {net}: {}",
                out.stderr()
            );
        }
    });
}

/// bwrap's /dev tmpfs has no size option: it is read-only, with a bounded /dev/shm; the
/// devices, ptys and shared memory still work.
#[test]
fn dev_cannot_be_filled_and_still_works() {
    each_user(|w| {
        let out = w.sh(&[], "echo x > /dev/fill-me");
        assert_ne!(out.code(), 0);
        assert!(
            out.stderr().contains("Read-only file system"),
            "{}",
            out.stderr()
        );
        // The bound: 1 GiB where bwrap takes --size (this one does: not setuid, 0.7+).
        let size = w.sh(&[], "stat -f -c '%b %S' /dev/shm").ok();
        let mut it = size.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        let (blocks, bsize) = (it.next().unwrap(), it.next().unwrap());
        assert_eq!(blocks * bsize, 1 << 30, "{size}");
        // Controls: the devices, shared memory and a new pty.
        let script = "echo x > /dev/null && head -c 4 /dev/urandom | wc -c && \
                      echo x > /dev/shm/f && cat /dev/shm/f && \
                      script -qec 'tty' /dev/null";
        let out = w.sh(&[], script).ok();
        assert!(out.starts_with("4\nx\n/dev/pts/"), "{out}");
    });
}

/// A command that lives in the hidden home is made visible read-only (the file alone, for a
/// general `bin` directory); with `--no-profile` agentbox says so before starting and names
/// the flags that fix it, and following the hint works.
#[test]
fn a_command_in_the_hidden_home_is_shown_or_named_with_its_fix() {
    each_user(|w| {
        let tool = w.write("home/.local/bin/mytool", "#!/bin/sh\necho tool-ran\n");
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        w.write("home/.local/bin/other-script", "TOKEN=secret\n");
        let path = format!("{}:{PATH}", w.home.join(".local/bin").display());
        let run = |args: &[&OsStr]| Out(w.cmd(args).env("PATH", &path).output().unwrap());
        let out = run(&["run", "--", "mytool"].map(OsStr::new));
        assert_eq!(out.ok(), "tool-ran\n");
        let other = w.home.join(".local/bin/other-script");
        let script = format!("cat {} 2>/dev/null || echo hidden", other.display());
        let out = run(&["run", "--", "sh", "-c", &script].map(OsStr::new));
        assert_eq!(out.ok(), "hidden\n", "only the command itself is shown");

        let out = run(&["run", "--no-profile", "--", "mytool"].map(OsStr::new));
        assert_eq!(out.code(), 127, "{}", out.stderr());
        assert!(out.stderr().contains("cannot see"), "{}", out.stderr());
        assert!(
            out.stderr().contains("hint: agentbox run --ro"),
            "{}",
            out.stderr()
        );
        let ro = w.home.join(".local/bin");
        let out = run(&[
            OsStr::new("run"),
            OsStr::new("--no-profile"),
            OsStr::new("--ro"),
            ro.as_os_str(),
            OsStr::new("mytool"),
        ]);
        assert_eq!(out.ok(), "tool-ran\n");
    });
}
