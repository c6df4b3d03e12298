//! Host-side writes an earlier run tries to redirect (issue 9, section 1), text from the
//! project reaching the terminal, and process hygiene (section 6). Each attack is planted by
//! one run inside the sandbox and exploited by the next, with a control that shows the
//! planted thing really points where the attack wants.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Out, World, bin, each_user};

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// A filtered run with `--net-log LOG` that asks the proxy for a host it denies.
fn logged_run(w: &World, log: &Path) -> Out {
    w.sh(
        &[
            "--allow-domain",
            "allowed.test",
            "--net-log",
            log.to_str().unwrap(),
        ],
        "curl -s -m 5 -o /dev/null -x http://127.0.0.1:3128 http://denied.test/; true",
    )
}

#[test]
fn a_net_log_turned_into_a_symlink_or_fifo_is_refused() {
    each_user(|w| {
        let bashrc = w.write("home/.bashrc", "# rc\n");
        let log = w.project.join("net.log");
        // Run 1, inside: the log becomes a symlink to the user's shell rc file.
        let plant = format!("ln -s {} net.log", bashrc.display());
        w.sh(&["--net", "none"], &plant).ok();
        // Control: it is there on the host and leads to the rc file, so a plain append
        // (what agentbox did) would have written into it.
        assert!(is_symlink(&log));
        assert_eq!(fs::canonicalize(&log).unwrap(), bashrc);
        // Run 2: refused before anything runs, the rc file unchanged.
        let out = logged_run(w, &log);
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("symlink"), "{}", out.stderr());
        assert!(out.stderr().contains("hint: "), "{}", out.stderr());
        assert_eq!(fs::read_to_string(&bashrc).unwrap(), "# rc\n");

        // A FIFO in its place: refused at once, not a run that hangs until someone reads.
        w.sh(&["--net", "none"], "rm net.log && mkfifo net.log")
            .ok();
        assert!(fs::symlink_metadata(&log).unwrap().file_type().is_fifo());
        let start = Instant::now();
        let out = logged_run(w, &log);
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stderr().contains("not a regular file"),
            "{}",
            out.stderr()
        );
        assert!(start.elapsed() < Duration::from_secs(20));

        // Control: a regular log file is appended to.
        w.sh(&["--net", "none"], "rm net.log && echo previous > net.log")
            .ok();
        logged_run(w, &log).ok();
        let text = fs::read_to_string(&log).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("previous"));
        let entry: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(entry["host"], "denied.test");
    });
}

/// `--profile claude` gives the command the agent's persistent home, with its state
/// directories (`.cache/claude` among them) made by agentbox on the host before each run.
const AGENT: [&str; 4] = ["--profile", "claude", "--net", "none"];

#[test]
fn symlinks_left_in_an_agent_home_do_not_redirect_its_directories() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "KEY");
        let ssh = w.home.join(".ssh");
        let agent_home = w.home.join(".local/share/agentbox/home/claude");
        w.sh(&AGENT, "test -d ~/.cache/claude").ok();
        // Run 1, inside the agent's home: .cache becomes a symlink to the real ~/.ssh.
        let plant = format!("rm -rf ~/.cache && ln -s {} ~/.cache", ssh.display());
        w.sh(&AGENT, &plant).ok();
        // Control: on the host it leads to the real ~/.ssh, so `mkdir -p .cache/claude` there
        // would make ~/.ssh/claude.
        assert!(is_symlink(&agent_home.join(".cache")));
        assert_eq!(fs::canonicalize(agent_home.join(".cache")).unwrap(), ssh);
        // Run 2: refused with the fix, nothing made in the real ~/.ssh.
        let out = w.sh(&AGENT, "true");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("symlink"), "{}", out.stderr());
        assert!(
            out.stderr().contains("hint: remove it (rm "),
            "{}",
            out.stderr()
        );
        assert!(!ssh.join("claude").exists());
        assert_eq!(fs::read_dir(&ssh).unwrap().count(), 1);

        // A dangling one: a clear refusal too, and once removed as the hint says, runs work.
        fs::remove_file(agent_home.join(".cache")).unwrap();
        std::os::unix::fs::symlink(w.base.join("nowhere"), agent_home.join(".cache")).unwrap();
        let out = w.sh(&AGENT, "true");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("hint: remove it"), "{}", out.stderr());
        assert!(!w.base.join("nowhere").exists());
        fs::remove_file(agent_home.join(".cache")).unwrap();
        w.sh(&AGENT, "test -d ~/.cache/claude").ok();
    });
}

/// Where this run's socket directory is on the host.
fn socket_dirs(w: &World) -> Vec<std::path::PathBuf> {
    fs::read_dir(w.home.join(".run/agentbox"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().as_bytes().starts_with(b"net-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_socket_directory_cannot_be_written_from_inside() {
    each_user(|w| {
        // Inside: try to leave things beside the socket and to change it, then wait (bounded)
        // for the host side to look.
        let script = "cd /run/agentbox/net || exit 9; \
                      mkdir d 2>/dev/null && chmod 000 d; touch f 2>/dev/null; \
                      chmod 000 proxy.sock 2>/dev/null && echo chmod-worked; \
                      echo ready > \"$OLDPWD/ready\"; i=0; \
                      while [ ! -e \"$OLDPWD/go\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
                      curl -s -m 5 -o /dev/null -w '%{http_code}' -x http://127.0.0.1:3128 http://denied.test/";
        let mut child = w
            .cmd(
                &[
                    "run",
                    "--allow-domain",
                    "allowed.test",
                    "--",
                    "sh",
                    "-c",
                    script,
                ]
                .map(OsStr::new),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !w.project.join("ready").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let dirs = socket_dirs(w);
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        let names: Vec<String> = fs::read_dir(&dirs[0])
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let sock = fs::metadata(dirs[0].join("proxy.sock")).unwrap();
        fs::write(w.project.join("go"), "").unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{out}\n{err}");
        // Only the socket, with its mode; and the proxy still answered through it.
        assert_eq!(names, ["proxy.sock"]);
        assert_ne!(sock.permissions().mode() & 0o777, 0);
        assert!(!out.contains("chmod-worked"), "{out}");
        assert_eq!(out.trim(), "403", "{err}");
        assert_eq!(socket_dirs(w), Vec::<std::path::PathBuf>::new());
    });
}

#[test]
fn a_leftover_socket_directory_goes_whatever_its_modes() {
    each_user(|w| {
        let base = w.home.join(".run/agentbox");
        // A directory of a dead agentbox (no PID is this large), with a dir its owner cannot
        // read or write in it, and a symlink out that must not be followed.
        let make = |dir: &Path| {
            fs::create_dir_all(dir.join("d/e")).unwrap();
            fs::write(dir.join("d/e/f"), "x").unwrap();
            std::os::unix::fs::symlink(&w.project, dir.join("d/out")).unwrap();
            w.chown_all();
            fs::set_permissions(dir.join("d/e"), fs::Permissions::from_mode(0o000)).unwrap();
            fs::set_permissions(dir.join("d"), fs::Permissions::from_mode(0o000)).unwrap();
        };
        fs::write(w.project.join("keep"), "k").unwrap();
        w.chown_all();
        if w.user.is_some() {
            // Control: as the unprivileged user, a plain `rm -rf` cannot remove it.
            let other = w.base.join("control");
            fs::create_dir(&other).unwrap();
            fs::set_permissions(&other, fs::Permissions::from_mode(0o777)).unwrap();
            make(&other.join("net-99999998"));
            let rm = w
                .program(OsStr::new("rm"))
                .arg("-rf")
                .arg(other.join("net-99999998"))
                .output()
                .unwrap();
            assert!(!rm.status.success());
        }
        fs::create_dir_all(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        make(&base.join("net-99999999"));
        w.sh(&["--net", "filtered"], "true").ok();
        assert_eq!(socket_dirs(w), Vec::<std::path::PathBuf>::new());
        assert_eq!(fs::read_to_string(w.project.join("keep")).unwrap(), "k");
    });
}

#[test]
fn an_escape_sequence_in_a_file_name_does_not_reach_the_terminal() {
    each_user(|w| {
        let name = OsStr::from_bytes(b".env.\x1b]0;pwned\x07");
        fs::write(w.project.join(name), "SECRET=1\n").unwrap();
        fs::write(w.project.join("main.rs"), "fn main() {}\n").unwrap();
        w.chown_all();
        let out = w.sh(&[], "cat ./.env.*; echo; cat main.rs");
        let stdout = out.ok();
        // Control: the file is masked, the ordinary one is not.
        assert!(!stdout.contains("SECRET"), "{stdout}");
        assert!(stdout.contains("fn main"), "{stdout}");
        // The note names it recognisably, with no raw control byte on the terminal.
        let err = out.0.stderr.clone();
        let text = String::from_utf8_lossy(&err);
        assert!(text.contains(".env.\\e]0;pwned\\u{7}"), "{text}");
        assert!(!err.contains(&0x1b) && !err.contains(&0x07), "{text:?}");
        // Nor in the tree of what the agent sees.
        let tree = w.run_args(&["run", "--tree", "--", "true"].map(OsStr::new));
        let shown = tree.ok();
        assert!(shown.contains(".env.\\e]0;pwned\\u{7}"), "{shown}");
        assert!(!tree.0.stdout.contains(&0x1b), "{shown:?}");
    });
}

/// A name from the project that carries a line break cannot add a line of its own to what
/// agentbox prints (a fake `hint:` with a command to copy), and a path agentbox suggests a
/// command for is shell-quoted, so copying the hint runs no code from the name. Planted as an
/// earlier run would leave them; the run refuses either way (the control that the names reach
/// the messages at all).
#[test]
fn a_name_with_a_line_break_or_shell_code_cannot_forge_a_hint() {
    each_user(|w| {
        // A nested repository whose hooks are a symlink: refused, naming the directory.
        let nested = w
            .project
            .join(OsStr::from_bytes(b"m\nhint: all fine, run: sh -c evil"));
        fs::create_dir_all(nested.join(".git")).unwrap();
        fs::write(nested.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        fs::write(nested.join(".git/config"), "[core]\n").unwrap();
        std::os::unix::fs::symlink("/tmp", nested.join(".git/hooks")).unwrap();
        w.chown_all();
        let out = w.sh(&[], "echo started");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        let err = out.stderr();
        assert!(err.contains("all fine"), "the name is named: {err}");
        let hints: Vec<&str> = err.lines().filter(|l| l.starts_with("hint:")).collect();
        assert_eq!(hints.len(), 1, "{err}");
        // Where the hint names the planted directory, it is quoted as one shell word.
        assert!(
            !hints[0].contains("sh -c evil") || hints[0].contains("rm -rf -- $'"),
            "{err}"
        );
        assert!(
            err.lines().all(|l| !l.starts_with("hint: all fine")),
            "{err}"
        );
        fs::remove_dir_all(&nested).unwrap();

        // A hooks path with shell code in its name that does not exist: the hint's command
        // quotes it.
        w.write(
            "home/src/project/.git/config",
            "[core]\n\thooksPath = h$(touch pwned)\n",
        );
        w.write("home/src/project/.git/HEAD", "ref: refs/heads/main\n");
        let out = w.sh(&[], "echo started");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        let err = out.stderr();
        let hint = err
            .lines()
            .find(|l| l.starts_with("hint:"))
            .unwrap_or_default();
        assert!(hint.contains("h$(touch pwned)'"), "quoted: {err}");
        assert!(!w.project.join("pwned").exists());
    });
}

/// The state and parent of `pid`, from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s[s.rfind(')')? + 2..].split(' ').collect();
    Some((rest[0].chars().next()?, rest[1].parse().ok()?))
}

/// What `reaper_harness` runs, its words separated by 0x1f.
const HARNESS_CMD: &str = "AGENTBOX_TEST_REAPER_CMD";

/// Not a test of its own: `every_run_returns_with_every_process_reaped` runs this test
/// binary again with only this, as a separate process that is a child subreaper. It runs the
/// command, waits for it, and prints every process that was handed to it (`left PID STATE`):
/// whatever the command started and did not reap. A process of its own keeps the orphans of
/// concurrent tests out of the count.
#[test]
#[ignore = "run by every_run_returns_with_every_process_reaped"]
fn reaper_harness() {
    let Ok(cmd) = std::env::var(HARNESS_CMD) else {
        return;
    };
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let words: Vec<&str> = cmd.split('\x1f').collect();
    let status = std::process::Command::new(words[0])
        .args(&words[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    // Anything handed over late would be handed over by now.
    std::thread::sleep(Duration::from_millis(300));
    let me = std::process::id();
    let left: Vec<(u32, char)> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (state, ppid) = stat(pid)?;
            (ppid == me).then_some((pid, state))
        })
        .collect();
    // libtest has printed the test's name without a newline.
    println!("\nstatus {}", status.code().unwrap_or(-1));
    for (pid, state) in left {
        println!("left {pid} {state}");
        if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
        }
    }
}

/// What the harness reports for `words`, run as the scenario's user: (status, leftovers).
fn leftovers_of(w: &World, words: &[&str]) -> (i32, Vec<String>) {
    let out = w
        .program(std::env::current_exe().unwrap().as_os_str())
        .args([
            "--ignored",
            "--exact",
            "hostwrites::reaper_harness",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HARNESS_CMD, words.join("\x1f"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split("status ").nth(1))
        .unwrap_or_else(|| panic!("the harness did not run: {text}"))
        .parse()
        .unwrap();
    let left = text
        .lines()
        .filter(|l| l.starts_with("left "))
        .map(str::to_owned)
        .collect();
    (status, left)
}

#[test]
fn every_run_returns_with_every_process_reaped() {
    each_user(|w| {
        // Control: the harness finds a process left behind.
        let (_, left) = leftovers_of(w, &["sh", "-c", "sleep 30 >/dev/null 2>&1 & exit 0"]);
        assert_eq!(left.len(), 1, "{left:?}");
        // The filtered network (agentbox runs a proxy), no network, and the host's network.
        let modes: [&[&str]; 3] = [
            &["--allow-domain", "example.com"],
            &["--net", "none"],
            &["--allow-net"],
        ];
        for mode in modes {
            for (script, code) in [("true", 0), ("sleep 30 & exit 3", 3)] {
                let mut words = vec![bin(), "run"];
                words.extend_from_slice(mode);
                words.extend_from_slice(&["--", "sh", "-c", script]);
                let (status, left) = leftovers_of(w, &words);
                assert_eq!(status, code, "{mode:?}");
                assert_eq!(
                    left,
                    Vec::<String>::new(),
                    "left by agentbox {mode:?} after {script:?}"
                );
            }
        }
    });
}

/// A stand-in for the host tool `tool` (`/usr/bin/TOOL`), planted by run 1 in the agent's
/// home (`~/bin`), and the same file copied where no sandbox writes, for the controls. Either
/// one touches `marker` when the host runs it.
struct Spy {
    planted: std::path::PathBuf,
    elsewhere: std::path::PathBuf,
    marker: std::path::PathBuf,
}

fn plant_spy(w: &World, tool: &str) -> Spy {
    // Where the scenario's user may write.
    let marker = w.home.join(format!("planted-{tool}-ran"));
    let script = crate::harness::spy_script(&marker, &format!("/usr/bin/{tool}"));
    let plant = format!(
        "mkdir -p ~/bin && printf '%s' '{script}' > ~/bin/{tool} && chmod 755 ~/bin/{tool}"
    );
    w.sh(&AGENT, &plant).ok();
    let planted = w
        .home
        .join(".local/share/agentbox/home/claude/bin")
        .join(tool);
    assert!(planted.is_file(), "the plant did not land on the host");
    let elsewhere = w.base.join("tools").join(tool);
    fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    fs::copy(&planted, &elsewhere).unwrap();
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o755)).unwrap();
    Spy {
        planted,
        elsewhere,
        marker,
    }
}

/// `agentbox run -- true` with `dir` first on PATH.
fn run_with_path_first(w: &World, dir: &Path) -> Out {
    let path = format!("PATH={}:/usr/bin:/bin", dir.display());
    let args = [
        OsStr::new(&path),
        OsStr::new(bin()),
        OsStr::new("run"),
        OsStr::new("--"),
        OsStr::new("true"),
    ];
    Out(w
        .program(OsStr::new("/usr/bin/env"))
        .args(args)
        .output()
        .unwrap())
}

/// A bwrap planted by one run in the agent's home (which the sandbox writes) is never the one
/// the next run executes on the host, found on PATH or named with `--bwrap`; the same file
/// anywhere the sandbox does not write is used (the control).
#[test]
fn a_bwrap_planted_in_an_agent_home_is_not_run_by_the_next_run() {
    each_user(|w| {
        let spy = plant_spy(w, "bwrap");
        // Control: the same file where no sandbox writes is found on PATH and run.
        run_with_path_first(w, spy.elsewhere.parent().unwrap()).ok();
        assert!(
            spy.marker.exists(),
            "control: the bwrap on PATH was not used"
        );
        fs::remove_file(&spy.marker).unwrap();

        // Run 2, the planted one first on PATH: passed over for the system's.
        run_with_path_first(w, spy.planted.parent().unwrap()).ok();
        assert!(!spy.marker.exists(), "the planted bwrap ran on the host");
        // Named with --bwrap: refused, with the reason and the fix.
        let out = w.run_args(&[
            OsStr::new("run"),
            OsStr::new("--bwrap"),
            spy.planted.as_os_str(),
            OsStr::new("--"),
            OsStr::new("true"),
        ]);
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stderr().contains("the sandbox writes"),
            "{}",
            out.stderr()
        );
        assert!(out.stderr().contains("hint: "), "{}", out.stderr());
        assert!(!spy.marker.exists(), "the planted bwrap ran on the host");
    });
}

/// The same for the git agentbox runs on the host to read git's configuration: one planted in
/// the agent's home by an earlier run is passed over on PATH; the same file where no sandbox
/// writes is run (the control).
#[test]
fn a_git_planted_in_an_agent_home_is_not_run_by_the_next_run() {
    each_user(|w| {
        w.host_sh("git init -q").ok();
        let spy = plant_spy(w, "git");
        run_with_path_first(w, spy.elsewhere.parent().unwrap()).ok();
        assert!(spy.marker.exists(), "control: the git on PATH was not used");
        fs::remove_file(&spy.marker).unwrap();
        run_with_path_first(w, spy.planted.parent().unwrap()).ok();
        assert!(!spy.marker.exists(), "the planted git ran on the host");
    });
}
