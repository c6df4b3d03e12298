//! Running the host's git to read a repository's configuration (see the parent module's doc):
//! the calls, started in parallel and finished with a timeout, and their output parsed.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{FIXED_PATH, GitHost, Job, Refusal, existing, expand};

/// The `git config` calls of a probe, by the git dir they read through.
#[derive(Default)]
pub struct Reads {
    pub(super) calls: std::collections::BTreeMap<PathBuf, Option<Call>>,
}

pub(super) enum Call {
    Running(Running),
    /// Read already, in a batch with other repositories.
    Done(Vec<Entry>),
    Failed(Refusal),
    NoGit,
}

impl Reads {
    /// Reads the configuration of all `jobs` not started yet with one `git config` call, when
    /// that gives what one call each would: each repository's config is passed as its own
    /// `-c include.path=FILE` (git prints that entry before the file's), and no `includeIf`
    /// appears anywhere (its condition would be evaluated for no repository or the wrong one).
    /// Otherwise, or on any failure, nothing is recorded and `start` runs one call each. One
    /// spawn costs about as much as the rest of a launch: a project with 50 nested
    /// repositories pays it once instead of 50 times.
    pub(super) fn batch(&mut self, jobs: &[&Job], host: &GitHost) {
        let Some(git) = &host.git else { return };
        let mut files: Vec<(PathBuf, usize)> = Vec::new();
        let mut todo: Vec<&Job> = Vec::new();
        for job in jobs {
            // Each file must mark one repository only (worktrees share their common config).
            if self.calls.contains_key(&job.config_dir)
                || files.iter().any(|(f, _)| *f == job.common.join("config"))
            {
                continue;
            }
            files.push((job.common.join("config"), todo.len()));
            files.extend(existing(job.config_dir.join("config.worktree")).map(|f| (f, todo.len())));
            todo.push(job);
        }
        if todo.len() < 2 {
            return;
        }
        let mut args = Vec::new();
        for (f, _) in &files {
            let mut arg = OsString::from("include.path=");
            arg.push(f);
            args.extend([OsString::from("-c"), arg]);
        }
        args.extend(["config", "--list", "--show-origin", "-z"].map(OsString::from));
        // A git dir that is no repository: no local config of any of them is read as such.
        let no_repo = Path::new("/nonexistent/agentbox-no-repository");
        let Ok(entries) = spawn_git(git, host, no_repo, args).and_then(|r| r.finish(host)) else {
            return;
        };
        if entries
            .iter()
            .any(|e| e.key.to_ascii_lowercase().starts_with("includeif."))
        {
            return;
        }
        let mut base = Vec::new();
        let mut each: Vec<Vec<Entry>> = vec![Vec::new(); todo.len()];
        let mut current: Option<usize> = None;
        for e in entries {
            let marker = (e.origin.is_none() && e.key == "include.path")
                .then(|| {
                    let v = Path::new(e.value.as_deref()?);
                    files.iter().find(|(f, _)| f == v).map(|(_, i)| *i)
                })
                .flatten();
            match (marker, current) {
                (Some(i), _) => current = Some(i),
                (None, Some(i)) => each[i].push(e),
                (None, None) => base.push(e),
            }
        }
        for (job, mut own) in todo.iter().zip(each) {
            let mut all = base.clone();
            all.append(&mut own);
            self.calls
                .insert(job.config_dir.clone(), Some(Call::Done(all)));
        }
    }

    pub(super) fn start(&mut self, job: &Job, host: &GitHost) {
        if self.calls.contains_key(&job.config_dir) {
            return;
        }
        let read = match &host.git {
            None => Call::NoGit,
            Some(git) => {
                let mut extra = vec![job.common.join("config")];
                extra.extend(existing(job.config_dir.join("config.worktree")));
                match spawn_config(git, host, &job.config_dir, &extra) {
                    Ok(r) => Call::Running(r),
                    Err(e) => Call::Failed(e),
                }
            }
        };
        self.calls.insert(job.config_dir.clone(), Some(read));
    }

    /// The call for this git dir, to the first who asks.
    pub(super) fn take(&mut self, config_dir: &Path) -> Option<Call> {
        self.calls.get_mut(config_dir).and_then(Option::take)
    }
}

impl Call {
    pub(super) fn finish(self, host: &GitHost) -> Result<Option<Vec<Entry>>, Refusal> {
        match self {
            Call::Running(r) => r.finish(host).map(Some),
            Call::Done(e) => Ok(Some(e)),
            Call::Failed(e) => Err(e),
            Call::NoGit => Ok(None),
        }
    }
}

/// One `name=value` of `git config --list`, with the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub origin: Option<PathBuf>,
    pub key: String,
    pub value: Option<OsString>,
}

/// `entries` and the entries of the files that `includeIf "onbranch:..."` names but git did
/// not read (the branch is another one now): the agent can switch branches, and git on the host
/// would then read them. Read with `git config --file F --includes`, nested up to 3 deep.
pub(super) fn with_branch_includes(
    mut entries: Vec<Entry>,
    config_dir: &Path,
    host: &GitHost,
) -> Result<Vec<Entry>, Refusal> {
    let Some(git) = &host.git else {
        return Ok(entries);
    };
    let mut done: Vec<PathBuf> = Vec::new();
    for _depth in 0..3 {
        let read: Vec<&Path> = entries.iter().filter_map(|e| e.origin.as_deref()).collect();
        let unread: Vec<PathBuf> = entries
            .iter()
            .filter(|e| {
                let k = e.key.to_ascii_lowercase();
                k.starts_with("includeif.onbranch:") && k.ends_with(".path")
            })
            .filter_map(|e| {
                let base = e.origin.as_deref()?.parent()?;
                let v = e.value.as_deref()?;
                expand(v.as_bytes(), &[base.to_owned()], &host.home).pop()
            })
            .filter(|f| f.is_file() && !read.contains(&f.as_path()) && !done.contains(f))
            .collect();
        if unread.is_empty() {
            break;
        }
        for f in unread {
            let args = [
                "config",
                "--list",
                "--show-origin",
                "-z",
                "--includes",
                "--file",
            ]
            .map(OsString::from)
            .into_iter()
            .chain([f.clone().into_os_string()])
            .collect();
            entries.extend(spawn_git(git, host, config_dir, args)?.finish(host)?);
            done.push(f);
        }
    }
    Ok(entries)
}

/// Starts `git config --list --show-origin -z` for the repository at `git_dir`, as described
/// in the module doc, with `extra` config files included as well.
fn spawn_config(
    git: &Path,
    host: &GitHost,
    git_dir: &Path,
    extra: &[PathBuf],
) -> Result<Running, Refusal> {
    let mut args = Vec::new();
    for f in extra {
        let mut arg = OsString::from("include.path=");
        arg.push(f);
        args.extend([OsString::from("-c"), arg]);
    }
    args.extend(["config", "--list", "--show-origin", "-z"].map(OsString::from));
    spawn_git(git, host, git_dir, args)
}

/// Starts git with `args` the way the module doc says: clean environment, `GIT_DIR` explicit,
/// stdin null.
fn spawn_git(
    git: &Path,
    host: &GitHost,
    git_dir: &Path,
    args: Vec<OsString>,
) -> Result<Running, Refusal> {
    let mut cmd = Command::new(git);
    cmd.args(args)
        .env_clear()
        .env("HOME", &host.home)
        .env("PATH", FIXED_PATH)
        .env("GIT_DIR", git_dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(x) = &host.xdg_config_home {
        cmd.env("XDG_CONFIG_HOME", x);
    }
    cmd.envs(host.config_env.iter().map(|(k, v)| (k, v)));
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| Refusal {
        what: format!("running {}: {e}", git.display()),
        hint: "check that git runs: git --version".to_owned(),
    })?;
    let stderr = child.stderr.take();
    let stderr = std::thread::spawn(move || drain(stderr));
    let (tx, stdout) = std::sync::mpsc::channel();
    let out = child.stdout.take();
    std::thread::spawn(move || {
        let _ = tx.send(drain(out));
    });
    Ok(Running {
        child,
        stdout,
        stderr: Some(stderr),
        started,
        git_dir: git_dir.to_owned(),
    })
}

fn drain(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    buf
}

/// A `git config` call under way: its output is read by two threads, so that a slow call
/// costs no more than its own time while the others run.
pub(super) struct Running {
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<Vec<u8>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    started: Instant,
    git_dir: PathBuf,
}

/// A call never finished (its repository was not in the scan after all, or probing stopped
/// early) is killed and reaped here: agentbox execs bwrap next, which would inherit a running
/// git as its child.
impl Drop for Running {
    fn drop(&mut self) {
        // After a wait, std knows the child is gone and sends no signal (the pid could be
        // another process's by then).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Its entries, or a refusal: git failed, or did not finish within the timeout from its
    /// start (it is killed then).
    fn finish(mut self, host: &GitHost) -> Result<Vec<Entry>, Refusal> {
        let git_dir = self.git_dir.display();
        let hint = format!("see what git says: GIT_DIR={git_dir} git config --list --show-origin");
        let left = host.timeout.saturating_sub(self.started.elapsed());
        let Ok(stdout) = self.stdout.recv_timeout(left) else {
            // Dropping `self` kills it: still ours and not reaped, the kill reaches this child
            // and no other process.
            return Err(Refusal {
                what: format!(
                    "reading the git configuration of {git_dir} took over {} s: an include may \
                     name a FIFO or a file that never ends (git on the host would hang the \
                     same way)",
                    host.timeout.as_secs_f32()
                ),
                hint: format!("look at the include.path and includeIf entries: {hint}"),
            });
        };
        let status = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        match status {
            Ok(st) if st.success() => Ok(parse_list(&stdout)),
            Ok(_) => Err(Refusal {
                what: format!(
                    "git cannot read the configuration of {git_dir}: {}",
                    String::from_utf8_lossy(&stderr).trim()
                ),
                hint,
            }),
            Err(e) => Err(Refusal {
                what: format!("waiting for git: {e}"),
                hint,
            }),
        }
    }
}

/// Parses `git config --list --show-origin -z`: records of `origin NUL key [LF value] NUL`.
pub fn parse_list(out: &[u8]) -> Vec<Entry> {
    let mut fields = out.split(|&b| b == 0);
    let mut entries = Vec::new();
    while let (Some(origin), Some(kv)) = (fields.next(), fields.next()) {
        if origin.is_empty() && kv.is_empty() {
            break;
        }
        let origin = origin
            .strip_prefix(b"file:")
            .map(|p| PathBuf::from(OsString::from_vec(p.to_vec())));
        let (key, value) = match kv.iter().position(|&b| b == b'\n') {
            Some(i) => (&kv[..i], Some(OsString::from_vec(kv[i + 1..].to_vec()))),
            None => (kv, None),
        };
        entries.push(Entry {
            origin,
            key: String::from_utf8_lossy(key).into_owned(),
            value,
        });
    }
    entries
}
