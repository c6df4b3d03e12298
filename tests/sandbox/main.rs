#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, its helpers too"
)]
//! Integration tests: the real agentbox binary runs the real bwrap, as the current user and,
//! when that is root, also as an unprivileged user (`agentbox-test`, made by `.ci/run`; set
//! AGENTBOX_TEST_USER to use another). Every "blocked" check has its positive control beside it.
//!
//! HOME and the XDG dirs point into a temp dir, so a developer's real files never leak in.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod audit;
mod flags;
mod git;
mod hostwrites;
mod net;
mod profiles;
mod scan;

const BIN: &str = env!("CARGO_BIN_EXE_agentbox");
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Who runs agentbox in a scenario.
#[derive(Clone, Copy, Debug)]
struct User {
    uid: u32,
    gid: u32,
}

fn current_uid() -> u32 {
    fs::metadata("/proc/self").unwrap().uid_of()
}

trait UidOf {
    fn uid_of(&self) -> u32;
}
impl UidOf for fs::Metadata {
    fn uid_of(&self) -> u32 {
        std::os::unix::fs::MetadataExt::uid(self)
    }
}

fn lookup_user(name: &str) -> Option<User> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then(|| User {
            uid: f[2].parse().unwrap(),
            gid: f[3].parse().unwrap(),
        })
    })
}

/// The users every scenario runs as: the current one, plus the unprivileged test user when the
/// current one is root. A root run without that user fails: it would silently skip half the
/// proof.
fn users() -> Vec<Option<User>> {
    let mut v = vec![None];
    if current_uid() == 0 {
        let name = std::env::var("AGENTBOX_TEST_USER").unwrap_or_else(|_| "agentbox-test".into());
        let user = lookup_user(&name).unwrap_or_else(|| {
            panic!(
                "running as root, but the unprivileged test user {name:?} does not exist: \
                 create it (useradd -m {name}) or set AGENTBOX_TEST_USER"
            )
        });
        v.push(Some(user));
    } else {
        eprintln!("note: not root, so the root half of the scenarios is not run here");
    }
    v
}

/// A temp world: a home and a project, owned by the scenario's user.
struct World {
    _dir: tempfile::TempDir,
    base: PathBuf,
    home: PathBuf,
    project: PathBuf,
    user: Option<User>,
}

impl World {
    fn new(user: Option<User>) -> World {
        Self::with_project_name(user, OsStr::new("project"))
    }

    fn with_project_name(user: Option<User>, name: &OsStr) -> World {
        let dir = tempfile::Builder::new()
            .prefix("agentbox-it-")
            .tempdir()
            .unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        let home = base.join("home");
        let project = home.join("src").join(name);
        fs::create_dir_all(&project).unwrap();
        fs::create_dir_all(home.join(".config")).unwrap();
        fs::create_dir_all(home.join(".run")).unwrap();
        let w = World {
            _dir: dir,
            base,
            home,
            project,
            user,
        };
        w.chown_all();
        w
    }

    fn chown_all(&self) {
        if let Some(u) = self.user {
            let st = Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", u.uid, u.gid))
                .arg(&self.home)
                .status()
                .unwrap();
            assert!(st.success());
        }
    }

    /// Writes a file (relative to the base dir), owned by the scenario's user.
    fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.base.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        self.chown_all();
        p
    }

    /// `program` as the scenario's user, with the scrubbed test environment, in the project.
    fn program(&self, program: &OsStr) -> Command {
        let mut c = match self.user {
            None => Command::new(program),
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", u.uid))
                    .arg(format!("--regid={}", u.gid))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                c
            }
        };
        c.current_dir(&self.project)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", &self.home)
            .env("USER", "tester")
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_STATE_HOME", self.home.join(".local/state"))
            .env("XDG_RUNTIME_DIR", self.home.join(".run"))
            .env("AWS_SECRET_ACCESS_KEY", "leaked-aws-secret")
            .env("MY_TOKEN", "token-value-123")
            .stdin(Stdio::null());
        c
    }

    fn cmd(&self, args: &[&OsStr]) -> Command {
        let mut c = self.program(OsStr::new(BIN));
        c.args(args);
        c
    }

    fn run_args(&self, args: &[&OsStr]) -> Out {
        Out(self.cmd(args).output().unwrap())
    }

    /// `agentbox run [flags] -- sh -c SCRIPT`.
    fn sh(&self, flags: &[&str], script: &str) -> Out {
        let mut args: Vec<&OsStr> = vec![OsStr::new("run")];
        args.extend(flags.iter().map(OsStr::new));
        args.extend(["--", "sh", "-c", script].map(OsStr::new));
        self.run_args(&args)
    }

    /// Every path below the base dir, for leftover checks.
    fn listing(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.base.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                if e.file_type().unwrap().is_dir() {
                    stack.push(p.clone());
                }
                out.push(p);
            }
        }
        out.sort();
        out
    }
}

struct Out(Output);

impl Out {
    fn code(&self) -> i32 {
        self.0.status.code().expect("agentbox itself was killed")
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    fn ok(&self) -> String {
        assert_eq!(
            self.code(),
            0,
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }
}

/// Runs `f` once per user; names the user in any failure.
fn each_user(f: impl Fn(&World)) {
    for user in users() {
        eprintln!(
            "scenario as {:?}",
            user.map_or("current user".into(), |u| u.uid.to_string())
        );
        f(&World::new(user));
    }
}

#[test]
fn project_is_writable_and_the_rest_is_not() {
    each_user(|w| {
        let out = w
            .sh(
                &[],
                "echo made > made.txt && echo project-ok; \
                 touch /usr/agentbox-x 2>/dev/null && echo usr-writable; \
                 touch /etc/agentbox-x 2>/dev/null && echo etc-writable; \
                 echo x > ~/inside-home && echo home-tmpfs-ok",
            )
            .ok();
        assert!(out.contains("project-ok"), "{out}");
        assert!(
            !out.contains("usr-writable") && !out.contains("etc-writable"),
            "{out}"
        );
        assert!(out.contains("home-tmpfs-ok"), "{out}");
        assert_eq!(
            fs::read_to_string(w.project.join("made.txt")).unwrap(),
            "made\n"
        );
        assert!(
            !w.home.join("inside-home").exists(),
            "the home tmpfs leaked to the host"
        );
        assert!(!Path::new("/usr/agentbox-x").exists());
    });
}

#[test]
fn home_secrets_are_invisible_but_git_config_is_there() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        w.write("home/.aws/credentials", "aws_secret");
        w.write("home/.gitconfig", "[user]\n\tname = Tester\n");
        let out = w
            .sh(
                &[],
                "cat ~/.ssh/id_rsa 2>&1; cat ~/.aws/credentials 2>&1; cat ~/.gitconfig",
            )
            .ok();
        assert!(
            !out.contains("PRIVATE KEY") && !out.contains("aws_secret"),
            "{out}"
        );
        assert!(out.contains("name = Tester"), "{out}");
        // Writing the git config fails; the host copy stays as it was.
        let out = w
            .sh(&[], "echo evil >> ~/.gitconfig && echo wrote; true")
            .ok();
        assert!(!out.contains("wrote"));
        assert!(
            !fs::read_to_string(w.home.join(".gitconfig"))
                .unwrap()
                .contains("evil")
        );
    });
}

#[test]
fn project_secrets_are_masked_at_any_depth() {
    each_user(|w| {
        w.write("home/src/project/a/b/c/.env", "DEEP_SECRET=1");
        w.write("home/src/project/.env.example", "EXAMPLE=1");
        w.write("home/src/project/keys/server.pem", "PEM SECRET");
        w.write("home/src/project/src/main.rs", "fn main() {}");
        let out = w
            .sh(
                &[],
                "printf '[%s]' \"$(cat a/b/c/.env)\"; cat .env.example; cat keys/server.pem; \
                 cat src/main.rs; echo x > a/b/c/.env && echo wrote-env; \
                 rm a/b/c/.env 2>/dev/null && echo removed-env; echo",
            )
            .ok();
        assert!(out.contains("[]"), "{out}");
        assert!(
            out.contains("EXAMPLE=1") && out.contains("fn main"),
            "{out}"
        );
        assert!(
            !out.contains("PEM SECRET") && !out.contains("DEEP_SECRET"),
            "{out}"
        );
        assert!(
            !out.contains("wrote-env") && !out.contains("removed-env"),
            "{out}"
        );
        let env = w.project.join("a/b/c/.env");
        assert_eq!(fs::read_to_string(env).unwrap(), "DEEP_SECRET=1");

        // --no-hide-env shows it (the control), --unhide one pattern, --hide adds one.
        let out = w.sh(&["--no-hide-env"], "cat a/b/c/.env").ok();
        assert_eq!(out, "DEEP_SECRET=1");
        let out = w
            .sh(&["--unhide", "*.pem"], "cat keys/server.pem a/b/c/.env")
            .ok();
        assert_eq!(out, "PEM SECRET");
        let out = w.sh(&["--hide", "src/*.rs"], "cat src/main.rs").ok();
        assert_eq!(out, "");
    });
}

#[test]
fn a_symlinked_secret_is_masked_not_followed() {
    each_user(|w| {
        w.write("home/src/project/config/real-secrets.txt", "LINKED SECRET");
        symlink("config/real-secrets.txt", w.project.join(".env")).unwrap();
        let out = w
            .sh(&[], "cat .env; cat config/real-secrets.txt; echo end")
            .ok();
        assert_eq!(out, "end\n");
        // Control: the same files without masking.
        let out = w.sh(&["--no-hide-env"], "cat .env").ok();
        assert_eq!(out, "LINKED SECRET");
    });
}

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

#[test]
fn git_hooks_and_config_are_read_only() {
    each_user(|w| {
        w.write("home/src/project/.git/config", "[core]\n");
        w.write("home/src/project/.git/HEAD", "ref: refs/heads/main\n");
        w.write("home/src/project/.envrc", "export A=1\n");
        let script = "echo x > .git/hooks/pre-commit 2>/dev/null && echo hook-written; \
             echo '[core] hooksPath=/tmp' >> .git/config 2>/dev/null && echo config-written; \
             echo x >> .envrc 2>/dev/null && echo envrc-written; \
             mv .git .git-old 2>/dev/null && echo git-moved; \
             echo ref > .git/ORIG_HEAD && echo git-writable";
        let out = w.sh(&[], script).ok();
        assert!(out.contains("git-writable"), "{out}");
        for bad in [
            "hook-written",
            "config-written",
            "envrc-written",
            "git-moved",
        ] {
            assert!(!out.contains(bad), "{bad}: {out}");
        }
        // .git/hooks did not exist: it was created empty, as git does, and stays empty.
        let hooks = w.project.join(".git/hooks");
        assert!(hooks.is_dir() && fs::read_dir(&hooks).unwrap().next().is_none());
        assert_eq!(
            fs::read_to_string(w.project.join(".envrc")).unwrap(),
            "export A=1\n"
        );
    });
}

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

/// A loopback server that accepts a bounded number of connections for a bounded time.
fn loopback_server(max_conns: usize) -> (u16, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < max_conns && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(b"hello-from-host\n");
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        served
    });
    (port, handle)
}

#[test]
fn network_is_off_unless_allowed() {
    each_user(|w| {
        let (port, server) = loopback_server(1);
        let probe = format!(
            "if exec 3<>/dev/tcp/127.0.0.1/{port}; then head -n1 <&3; else echo no-connect; fi"
        );
        let script = format!("bash -c '{probe}' 2>/dev/null");
        let out = w.sh(&[], &script).ok();
        assert!(
            out.contains("no-connect") && !out.contains("hello"),
            "{out}"
        );
        let out = w.sh(&["--allow-net"], &script).ok();
        assert!(out.contains("hello-from-host"), "{out}");
        let out = w
            .sh(
                &["--net", "host"],
                "cat /etc/resolv.conf >/dev/null && echo ok",
            )
            .ok();
        assert!(out.contains("ok"));
        assert_eq!(server.join().unwrap(), 1);
    });
}

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

#[test]
fn odd_project_paths_work() {
    for user in users() {
        let name = OsString::from_vec(b"my proj 'q\" \xff $x".to_vec());
        let w = World::with_project_name(user, &name);
        let out = w.sh(&[], "echo hi > out.txt && pwd");
        assert_eq!(out.code(), 0, "{}", out.stderr());
        let mut want = w.project.as_os_str().as_bytes().to_vec();
        want.push(b'\n');
        assert_eq!(out.0.stdout, want);
        assert_eq!(
            fs::read_to_string(w.project.join("out.txt")).unwrap(),
            "hi\n"
        );
        // The --dry-run script, saved and run with bash, starts the same sandbox.
        let script = w.run_args(&["run", "--dry-run", "--", "cat", "out.txt"].map(OsStr::new));
        let file = w.base.join("sandbox.sh");
        fs::write(&file, script.ok()).unwrap();
        let out = Out(w.program(OsStr::new("bash")).arg(&file).output().unwrap());
        assert_eq!(out.ok(), "hi\n");
    }
}

#[test]
fn dry_run_changes_nothing_and_a_run_leaves_no_stubs() {
    each_user(|w| {
        w.write("home/src/project/.git/config", "[core]\n");
        w.write("home/src/project/.env", "S=1");
        let before = w.listing();
        let out = w.run_args(&["run", "--dry-run", "--", "true"].map(OsStr::new));
        let script = out.ok();
        assert!(
            script.contains("--ro-bind-data") && script.contains("/.env"),
            "{script}"
        );
        assert!(script.contains("mkdir -p --"), "{script}");
        assert_eq!(before, w.listing(), "--dry-run changed the host");
        w.sh(&[], "true").ok();
        let mut after = w.listing();
        after.retain(|p| !p.ends_with(".git/hooks"));
        assert_eq!(before, after, "a run left files behind");
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
        let line = format!("exec 7</etc/hostname; exec {BIN} run -- sh -c '{inner}'");
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

fn processes_with(marker: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(mut f) = fs::File::open(e.path().join("cmdline")) else {
            continue;
        };
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        if buf.split(|&b| b == 0).any(|a| a == marker.as_bytes()) {
            v.push(pid);
        }
    }
    v
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

/// Runs `agentbox test --json [flags]` and returns its exit code and the ids per result.
fn escape_suite(w: &World, flags: &[&str]) -> (i32, Vec<String>, serde_json::Value) {
    let mut args = vec!["test", "--json"];
    args.extend_from_slice(flags);
    let out = w.run_args(&args.iter().map(OsStr::new).collect::<Vec<_>>());
    let doc: serde_json::Value = serde_json::from_slice(&out.0.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout(), out.stderr()));
    let not_passing: Vec<String> = doc["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["result"] != "PASS")
        .map(|p| {
            format!(
                "{}:{}",
                p["result"].as_str().unwrap(),
                p["id"].as_str().unwrap()
            )
        })
        .collect();
    (out.code(), not_passing, doc)
}

#[test]
fn escape_suite_passes_on_the_default_sandbox() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        w.write("home/src/project/.env", "S=1");
        let (code, not_passing, doc) = escape_suite(w, &[]);
        assert_eq!(not_passing, Vec::<String>::new());
        assert_eq!(code, 0);
        assert!(doc["total"].as_u64().unwrap() >= 50, "{doc}");
        assert_eq!(doc["passed"], true);
        // Every class that blocks something also has a positive control somewhere.
        let probes = doc["probes"].as_array().unwrap();
        let allowed = probes.iter().filter(|p| p["expected"] == "allowed").count();
        assert!(allowed >= 15, "only {allowed} positive controls");
    });
}

/// Whether the host itself has a route to `addr` (UDP connect sends nothing).
fn host_route(addr: &str) -> bool {
    let bind = if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(addr))
        .is_ok()
}

fn host_interfaces_beyond_lo() -> bool {
    fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .any(|l| l.split(':').next().unwrap().trim() != "lo")
}

fn leaks(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|i| format!("LEAK:{i}")).collect();
    v.sort();
    v
}

#[test]
fn escape_suite_reports_exactly_the_weakening() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        w.write("home/src/project/.env", "S=1");
        let check = |flags: &[&str], expected: Vec<String>| {
            let (code, mut got, _) = escape_suite(w, flags);
            got.sort();
            assert_eq!(got, expected, "flags {flags:?}");
            assert_eq!(code, 1, "flags {flags:?}");
        };

        let ssh = w.home.join(".ssh");
        check(&["--ro", ssh.to_str().unwrap()], leaks(&["home-ssh"]));

        check(
            &["--no-hide-env"],
            leaks(&[
                "canary-env",
                "canary-env-deep",
                "canary-key",
                "canary-secret-dir",
                "canary-symlink",
                "canary-hard-link",
                "canary-upper-case",
                "canary-private-pem",
                "canary-env-write",
                "project-secrets",
            ]),
        );

        // perf_event_open is still refused by the kernel where perf_event_paranoid > 2.
        let paranoid: i32 = fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
            .map_or(4, |s| s.trim().parse().unwrap_or(4));
        let mut debug = vec![
            "ptrace",
            "process-vm-readv",
            "process-vm-writev",
            "pidfd-getfd",
            "proc-mem-write",
        ];
        if paranoid <= 2 {
            debug.push("perf-event-open");
        }
        check(&["--allow-debug"], leaks(&debug));

        // Route probes only look up routes; what the host network offers decides them.
        let mut net = vec!["net-host-loopback", "unix-abstract-host"];
        let routes = [
            ("net-route", "192.0.2.1:9"),
            ("net-route-v6", "[2001:db8::1]:9"),
            ("net-metadata", "169.254.169.254:80"),
        ];
        for (id, addr) in routes {
            if host_route(addr) {
                net.push(id);
            }
        }
        if host_interfaces_beyond_lo() {
            net.push("net-interfaces");
        }
        let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let external = resolv
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .map(str::trim)
            .find(|s| !s.starts_with("127.") && *s != "::1");
        let dns = match external {
            Some(s) if s.contains(':') => host_route(&format!("[{s}]:53")),
            Some(s) => host_route(&format!("{s}:53")),
            None => host_interfaces_beyond_lo(),
        };
        if dns {
            net.push("net-dns");
        }
        check(&["--allow-net"], leaks(&net));
    });
}

/// Polls for a file with content, bounded in time.
fn wait_for(path: &Path, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(s) = fs::read_to_string(path)
            && !s.is_empty()
        {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// On a terminal (tmux), a full-screen program inside hears of a window resize (no
/// --new-session), while TIOCSTI is refused by the filter; the same TIOCSTI outside the
/// sandbox, in the same terminal, is the control.
#[test]
fn on_a_terminal_resize_reaches_the_sandbox_and_tiocsti_does_not() {
    each_user(|w| {
        let socket = w.home.join("tmux.sock");
        let tmux = |args: &[&str]| {
            let st = w
                .program(OsStr::new("tmux"))
                .arg("-S")
                .arg(&socket)
                .args(args)
                .env("TERM", "xterm")
                .status()
                .unwrap();
            assert!(st.success(), "tmux {args:?}");
        };
        let tiocsti = r#"perl -e 'my $c = "x"; if (ioctl(STDIN, 0x5412, $c)) { print "INJECTED\n" } else { print "refused: $!\n" }'"#;
        let inner = format!(
            "trap 'stty size > cols.txt' WINCH; {tiocsti} > inside.txt; echo ready > ready.txt; \
             i=0; while [ $i -lt 200 ] && [ ! -s cols.txt ]; do sleep 0.05; i=$((i+1)); done"
        );
        let pane = format!(
            "{tiocsti} > outside.txt; {BIN} run -- sh -c {}; sleep 30",
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
            let screen = w
                .program(OsStr::new("tmux"))
                .arg("-S")
                .arg(&socket)
                .args(["capture-pane", "-p", "-t", "t"])
                .output()
                .unwrap();
            panic!(
                "never started:\n{}",
                String::from_utf8_lossy(&screen.stdout)
            );
        }
        tmux(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
        let cols = wait_for(&w.project.join("cols.txt"), Duration::from_secs(10));
        let _ = w
            .program(OsStr::new("tmux"))
            .arg("-S")
            .arg(&socket)
            .arg("kill-server")
            .status();
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

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A symlink planted in the project (by an earlier run, say) is never followed to a host path
/// outside the sandbox on the next run; a link within the project is the control. A symlinked
/// `.git/hooks` (git on the host would follow it, and the agent could replace it) refuses.
#[test]
fn planted_symlinks_lead_nowhere() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        w.write("home/src/project/real.txt", "project file");
        let ssh = w.home.join(".ssh");
        symlink(ssh.join("id_rsa"), w.project.join(".env")).unwrap();
        symlink(&ssh, w.project.join("notes")).unwrap();
        symlink("real.txt", w.project.join("link.txt")).unwrap();
        let out = w.sh(&[], "cat .env notes/id_rsa 2>&1; cat link.txt");
        let stdout = out.ok();
        assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
        assert!(stdout.ends_with("project file"), "{stdout}");

        w.write("home/src/project/.git/config", "[core]\n");
        symlink(&ssh, w.project.join(".git/hooks")).unwrap();
        let out = w.sh(&[], "cat .git/hooks/id_rsa");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(
            out.stderr().contains(".git/hooks is a symlink"),
            "{}",
            out.stderr()
        );
        // Nothing was created on the host where the links point.
        assert_eq!(fs::read_dir(&ssh).unwrap().count(), 1);
    });
}

/// What an earlier run could plant in git's files to have the host run code, or to get a
/// broader sandbox next time, does not work.
#[test]
fn git_files_cannot_be_turned_against_the_host() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        // 1. A `.git` file naming the home as git's directory does not make it writable.
        w.sh(&[], "printf 'gitdir: ../..\\n' > .git").ok();
        let out = w
            .sh(
                &[],
                "cat ~/.ssh/id_rsa 2>&1; echo x >> ~/.bashrc 2>&1; true",
            )
            .ok();
        assert!(!out.contains("PRIVATE KEY"), "{out}");
        assert!(!w.home.join(".bashrc").exists());
        // ... and the .git file itself is read-only from then on.
        let out = w
            .sh(
                &[],
                "echo 'gitdir: /' > .git 2>/dev/null && echo rewrote; true",
            )
            .ok();
        assert_eq!(out, "");
        fs::remove_file(w.project.join(".git")).unwrap();

        // 2. A `commondir` in a repository's own .git redirects config and hooks: the next run
        //    refuses (git never writes one there).
        w.write("home/src/project/.git/config", "[core]\n");
        w.write("home/src/project/.git/HEAD", "ref: refs/heads/main\n");
        w.sh(&[], "echo ../evil > .git/commondir").ok();
        let out = w.sh(&[], "true");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("commondir"), "{}", out.stderr());
        fs::remove_file(w.project.join(".git/commondir")).unwrap();

        // 3. core.hooksPath into the work tree (husky): the hooks there are read-only too.
        w.write(
            "home/src/project/.git/config",
            "[core]\n\thooksPath = .husky\n",
        );
        w.write("home/src/project/.husky/pre-commit", "#!/bin/sh\n");
        let out = w
            .sh(
                &[],
                "echo evil >> .husky/pre-commit 2>/dev/null && echo wrote; echo ok > other.txt",
            )
            .ok();
        assert!(!out.contains("wrote"), "{out}");
        assert_eq!(
            fs::read_to_string(w.project.join(".husky/pre-commit")).unwrap(),
            "#!/bin/sh\n"
        );
        // The control: the same run could write beside the hooks.
        assert_eq!(
            fs::read_to_string(w.project.join("other.txt")).unwrap(),
            "ok\n"
        );
        // Where the hooks directory it names does not exist, the run refuses.
        fs::remove_dir_all(w.project.join(".husky")).unwrap();
        let out = w.sh(&[], "true");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(out.stderr().contains("does not exist"), "{}", out.stderr());
    });
}

/// Renaming a directory that holds a secret to `node_modules`, or planting `CACHEDIR.TAG` beside
/// it, does not hide the secret from the next scan.
#[test]
fn pruned_names_do_not_unmask_secrets() {
    each_user(|w| {
        w.write("home/src/project/config/.env", "DBPASS=hunter2");
        w.write("home/src/project/app/.env.local", "K=v");
        w.sh(&[], ": > config/CACHEDIR.TAG; mv app node_modules")
            .ok();
        let out = w
            .sh(&[], "cat config/.env node_modules/.env.local; echo end")
            .ok();
        assert_eq!(out, "end\n");
        // Control: both files are there and readable without masking.
        let out = w
            .sh(
                &["--no-hide-env"],
                "cat config/.env node_modules/.env.local",
            )
            .ok();
        assert_eq!(out, "DBPASS=hunter2K=v");
    });
}

/// A UNIX socket inside the project is masked (read-only mounts do not stop connect()), and
/// the user's git credential store is not among the git settings shown.
#[test]
fn sockets_in_the_project_and_git_credentials_stay_outside() {
    each_user(|w| {
        let path = w.project.join("dev.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        if let Some(u) = w.user {
            Command::new("chown")
                .arg(format!("{}:{}", u.uid, u.gid))
                .arg(&path)
                .status()
                .unwrap();
        }
        let connect = format!(
            "perl -MIO::Socket::UNIX -e 'my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]); \\
             print $s ? \"connected\\n\" : \"refused\\n\"' {}",
            path.display()
        );
        let out = w.sh(&[], &connect).ok();
        assert_eq!(out, "refused\n");
        // Control: unhidden, the socket is reachable.
        let out = w.sh(&["--unhide", "dev.sock"], &connect).ok();
        assert_eq!(out, "connected\n");
        drop(listener);

        w.write("home/.config/git/config", "[user]\n\tname = Tester\n");
        w.write(
            "home/.config/git/credentials",
            "https://u:ghp_SECRET@github.com\n",
        );
        let out = w
            .sh(
                &[],
                "cat ~/.config/git/config; cat ~/.config/git/credentials 2>&1; true",
            )
            .ok();
        assert!(out.contains("name = Tester"), "{out}");
        assert!(!out.contains("ghp_SECRET"), "{out}");
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

/// On a terminal, Ctrl-C reaches the agent (its handler runs and it carries on) instead of
/// killing bwrap and with it the whole sandbox; an agent without a handler still dies of it.
#[test]
fn ctrl_c_belongs_to_the_agent() {
    each_user(|w| {
        let socket = w.home.join("tmux.sock");
        let tmux = |args: &[&str]| {
            w.program(OsStr::new("tmux"))
                .arg("-S")
                .arg(&socket)
                .args(args)
                .env("TERM", "xterm")
                .status()
                .unwrap()
        };
        let agent = "trap 'echo got-int >> int.txt; stop=1' INT; echo ready > ready.txt; i=0; \
                     while [ $i -lt 300 ] && [ -z \"$stop\" ]; do sleep 0.05; i=$((i+1)); done; \
                     echo finished >> int.txt";
        // One terminal per case, each an interactive shell (with job control, as a user has)
        // that is given the command line: an agent with a Ctrl-C handler, and one without.
        let cases = [
            (
                "a",
                format!(
                    "{BIN} run -- sh -c {}; echo $? > exit1.txt",
                    shell_quote(agent)
                ),
            ),
            (
                "b",
                format!(
                    "{BIN} run -- sh -c 'echo ready > ready2.txt; sleep 20'; echo $? > exit2.txt"
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
        assert!(wait_for(&w.project.join("ready2.txt"), Duration::from_secs(20)).is_some());
        tmux(&["send-keys", "-t", "a", "C-c"]);
        tmux(&["send-keys", "-t", "b", "C-c"]);
        let exit1 = wait_for(&w.project.join("exit1.txt"), Duration::from_secs(10));
        let exit2 = wait_for(&w.project.join("exit2.txt"), Duration::from_secs(10));
        tmux(&["kill-server"]);
        assert_eq!(
            fs::read_to_string(w.project.join("int.txt")).unwrap(),
            "got-int\nfinished\n"
        );
        assert_eq!(exit1.as_deref(), Some("0\n"));
        assert_eq!(exit2.as_deref(), Some("130\n"));
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

/// `kill -TERM pid`, without unsafe code in the tests.
fn send_term(pid: u32) {
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}
