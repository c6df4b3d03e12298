//! The harness every scenario runs in: the users a scenario runs as, a temp world (a home and a
//! project owned by that user), agentbox's output, and the helpers several test files share
//! (loopback servers, process and file polling, the escape suite's report).

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// agentbox as every scenario runs it: the binary cargo built or, as root, a copy the
/// unprivileged test user can reach (cargo's target directory is often under a home it cannot
/// enter, /root's for a plain `cargo test`).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let built = env!("CARGO_BIN_EXE_agentbox");
        match current_uid() {
            0 => reachable_copy(Path::new(built)),
            _ => built.to_owned(),
        }
    })
}

/// A copy of `built` in a world-traversable directory, named by its size and time so that
/// concurrent test processes share it and a new build gets a new copy (stale ones removed).
fn reachable_copy(built: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(built).unwrap();
    let dir = Path::new("/tmp/agentbox-it-bin");
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let name = format!(
        "agentbox-{}-{}",
        meta.len(),
        meta.mtime_nsec() ^ meta.mtime()
    );
    let copy = dir.join(&name);
    if !copy.exists() {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        fs::copy(built, &tmp).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(&tmp, &copy).unwrap();
        // Older copies go, but only stale ones: another checkout's test run (a worktree, CI
        // beside a developer) may be using its own copy right now.
        let stale = std::time::Duration::from_secs(6 * 3600);
        for old in fs::read_dir(dir).unwrap().flatten() {
            let age = old
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok());
            if old.file_name() != name.as_str()
                && !old.file_name().to_string_lossy().starts_with('.')
                && age.is_some_and(|a| a > stale)
            {
                let _ = fs::remove_file(old.path());
            }
        }
    }
    copy.to_str().unwrap().to_owned()
}

pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Who runs agentbox in a scenario.
#[derive(Clone, Copy, Debug)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

pub fn current_uid() -> u32 {
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

pub fn lookup_user(name: &str) -> Option<User> {
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
pub fn users() -> Vec<Option<User>> {
    let mut v = vec![None];
    if current_uid() == 0 {
        let name = std::env::var("AGENTBOX_TEST_USER").unwrap_or_else(|_| "agentbox-test".into());
        let user = lookup_user(&name)
            .or_else(|| create_user(&name))
            .unwrap_or_else(|| {
                panic!(
                    "running as root, but the unprivileged test user {name:?} does not exist and \
                 useradd could not make it: create it (useradd -m {name}) or set \
                 AGENTBOX_TEST_USER"
                )
            });
        v.push(Some(user));
    } else {
        eprintln!("note: not root, so the root half of the scenarios is not run here");
    }
    v
}

/// Makes the unprivileged test user, as root, so that a plain `cargo test` on a fresh machine
/// runs both halves of every scenario. Concurrent tests may race to make it: whoever loses
/// finds it made.
fn create_user(name: &str) -> Option<User> {
    static MADE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MADE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(u) = lookup_user(name) {
        return Some(u);
    }
    let _ = Command::new("useradd")
        .args(["--create-home", "--shell", "/bin/sh", name])
        .status();
    lookup_user(name)
}

/// A temp world: a home and a project, owned by the scenario's user.
pub struct World {
    _dir: tempfile::TempDir,
    pub base: PathBuf,
    pub home: PathBuf,
    pub project: PathBuf,
    pub user: Option<User>,
}

impl World {
    pub fn new(user: Option<User>) -> World {
        Self::with_project_name(user, OsStr::new("project"))
    }

    pub fn with_project_name(user: Option<User>, name: &OsStr) -> World {
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

    /// Gives the whole home (the project is inside) to the scenario's user.
    pub fn chown_all(&self) {
        self.chown(&self.home);
    }

    /// Gives `path` (and, for a directory, all below it) to the scenario's user.
    pub fn chown(&self, path: &Path) {
        if let Some(u) = self.user {
            let st = Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", u.uid, u.gid))
                .arg(path)
                .status()
                .unwrap();
            assert!(st.success());
        }
    }

    /// Writes a file (relative to the base dir), owned by the scenario's user.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.base.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        self.chown_all();
        p
    }

    /// `program` as the scenario's user, with the scrubbed test environment, in the project.
    pub fn program(&self, program: &OsStr) -> Command {
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

    pub fn cmd(&self, args: &[&OsStr]) -> Command {
        let mut c = self.program(OsStr::new(bin()));
        c.args(args);
        c
    }

    pub fn run_args(&self, args: &[&OsStr]) -> Out {
        Out(self.cmd(args).output().unwrap())
    }

    /// `agentbox run [flags] -- sh -c SCRIPT`.
    pub fn sh(&self, flags: &[&str], script: &str) -> Out {
        let mut args: Vec<&OsStr> = vec![OsStr::new("run")];
        args.extend(flags.iter().map(OsStr::new));
        args.extend(["--", "sh", "-c", script].map(OsStr::new));
        self.run_args(&args)
    }

    /// `sh -c SCRIPT` on the host, unsandboxed, as the user, in the project.
    pub fn host_sh(&self, script: &str) -> Out {
        Out(self
            .program(OsStr::new("sh"))
            .args(["-c", script])
            .output()
            .unwrap())
    }

    /// tmux as the scenario's user, on a server of its own (its socket in the home).
    /// Kills this world's tmux server when dropped: a failed assertion must not leave one
    /// running on the host (hold it for as long as the test uses tmux).
    pub fn tmux_server(&self) -> TmuxServer<'_> {
        TmuxServer(self)
    }

    pub fn tmux(&self, args: &[&str]) -> Command {
        let mut c = self.program(OsStr::new("tmux"));
        c.arg("-S")
            .arg(self.home.join("tmux.sock"))
            .args(args)
            .env("TERM", "xterm");
        c
    }

    /// Every path below the base dir, for leftover checks; but for the run's lock files in the
    /// runtime directory, which stay by design (see `runlock`).
    pub fn listing(&self) -> Vec<PathBuf> {
        let runtime = self.home.join(".run/agentbox");
        let locks = runtime.join("locks");
        let mut out = Vec::new();
        let mut stack = vec![self.base.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                if p.starts_with(&locks) || p == runtime {
                    if p == runtime {
                        stack.push(p);
                    }
                    continue;
                }
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

pub struct Out(pub Output);

impl Out {
    pub fn code(&self) -> i32 {
        self.0.status.code().expect("agentbox itself was killed")
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    pub fn ok(&self) -> String {
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
pub fn each_user(f: impl Fn(&World)) {
    for user in users() {
        eprintln!(
            "scenario as {:?}",
            user.map_or("current user".into(), |u| u.uid.to_string())
        );
        f(&World::new(user));
    }
}

/// A loopback server that accepts a bounded number of connections for a bounded time.
pub fn loopback_server(max_conns: usize) -> (u16, std::thread::JoinHandle<usize>) {
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

/// An HTTP server on `ip` (a loopback address): for each request it reads the head and the
/// body (by Content-Length) and writes what `respond(head, body)` returns, then closes.
/// Bounded: `max` connections, two minutes, 30 s per read.
pub fn http_server(
    ip: IpAddr,
    max: usize,
    respond: impl Fn(&str, Vec<u8>) -> Vec<u8> + Send + 'static,
) -> u16 {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut served = 0;
        while served < max && Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            served += 1;
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                head.push_str(&line);
                line.clear();
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = reader.into_inner().write_all(&respond(&head, body));
        }
    });
    port
}

/// A `200 OK` answer carrying `body`, closing the connection.
pub fn http_ok(body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

pub fn processes_with(marker: &str) -> Vec<u32> {
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

/// Polls for a file with content, bounded in time.
pub fn wait_for(path: &Path, limit: Duration) -> Option<String> {
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

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `kill -TERM pid`, without unsafe code in the tests.
pub fn send_term(pid: u32) {
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// Runs `agentbox test --json [flags]` and returns its exit code and the ids per result.
pub fn escape_suite(w: &World, flags: &[&str]) -> (i32, Vec<String>, serde_json::Value) {
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

/// Whether the host itself has a route to `addr` (UDP connect sends nothing).
pub fn host_route(addr: &str) -> bool {
    let bind = if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(addr))
        .is_ok()
}

pub fn host_interfaces_beyond_lo() -> bool {
    fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .any(|l| l.split(':').next().unwrap().trim() != "lo")
}

pub fn leaks(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|i| format!("LEAK:{i}")).collect();
    v.sort();
    v
}

/// See `World::tmux_server`.
pub struct TmuxServer<'a>(&'a World);

impl Drop for TmuxServer<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .tmux(&["kill-server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A shell script standing in for the program `real`: it touches `marker`, then runs `real`
/// with its arguments, so a test sees whether the host ran it.
pub fn spy_script(marker: &Path, real: &str) -> String {
    format!(
        "#!/bin/sh\ntouch {}\nexec {real} \"$@\"\n",
        marker.display()
    )
}

/// A helper process of a test (a stand-in server, an agent), killed and reaped when dropped,
/// so a failed assertion leaves nothing running.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `ready` until it holds; fails the test after 10 s, saying `what` did not start.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
