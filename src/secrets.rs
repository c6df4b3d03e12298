//! The scan of a writable root: finds secret files to mask and "runs later" files to make
//! read-only, at any depth, in parallel. It reads directories and never follows a symlink, so
//! every path it reports is free of symlinks below the (canonical) root it was given. It changes
//! nothing on the host.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use anyhow::{Context, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RawDir};
use rustix::io::Errno;
use rustix::process::{Resource, getrlimit};

use crate::error::Fail;
use crate::rules::{self, CACHEDIR_TAG, PRUNED_DIRS, RUNS_LATER, SECRET_EXCEPTIONS};
use std::os::unix::ffi::OsStrExt;

/// What a directory entry is, from its own type (a symlink is never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Sockets, fifos, devices.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub path: PathBuf,
    pub kind: Kind,
    pub why: String,
}

/// Everything a scan of one root found, each list sorted by path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub secrets: Vec<Found>,
    pub runs_later: Vec<Found>,
    /// Entries named `.git` (directories, or files pointing at a git dir elsewhere).
    pub git: Vec<Found>,
}

fn compile(glob: &str) -> Result<Glob> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| {
            Fail::hint(
                format!("bad glob {glob:?}: {e}"),
                "use a name such as '*.secret' or a relative path such as 'config/*.key'",
            )
            .into()
        })
}

/// Checks that a user-supplied glob compiles.
pub fn check_glob(glob: &str) -> Result<()> {
    if glob.is_empty() || glob.starts_with('/') {
        return Err(Fail::hint(
            format!("bad glob {glob:?}: must be a name or a path relative to the project"),
            "use a name such as '*.secret' or a relative path such as 'config/*.key'",
        )
        .into());
    }
    compile(glob).map(|_| ())
}

/// A built-in name pattern in the form the scan checks without a regex: the list in
/// `rules.rs` stays globs for people to read, and every one of them has this shape (a test
/// holds it to that), so a launch compiles nothing for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literal {
    Exact(&'static str),
    /// `*.pem`
    Suffix(&'static str),
    /// `.env.*`
    Prefix(&'static str),
}

impl Literal {
    fn of(glob: &'static str) -> Option<Literal> {
        let meta = |s: &str| s.contains(['*', '?', '[', ']', '{', '}', '\\', '/']);
        if let Some(rest) = glob.strip_prefix('*') {
            (!meta(rest)).then_some(Literal::Suffix(rest))
        } else if let Some(rest) = glob.strip_suffix('*') {
            (!meta(rest)).then_some(Literal::Prefix(rest))
        } else {
            (!meta(glob)).then_some(Literal::Exact(glob))
        }
    }

    fn matches(self, name: &[u8]) -> bool {
        match self {
            Literal::Exact(e) => same(name, e.as_bytes()),
            Literal::Suffix(s) => {
                name.len() > s.len() && same(&name[name.len() - s.len()..], s.as_bytes())
            }
            Literal::Prefix(p) => name.len() > p.len() && same(&name[..p.len()], p.as_bytes()),
        }
    }
}

/// `a == b` without a call to libc's `memcmp`: the scan compares every name in the tree with
/// every pattern, nearly all differ in their first byte compared, and the calls were a visible
/// share of a scan's time.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// User globs (`--hide`, `--unhide`): names (no `/`) match the entry's name, paths match the
/// path relative to the scanned root. Compiled only when there are any.
#[derive(Default)]
struct UserGlobs {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
}

impl UserGlobs {
    fn new(globs: &[String]) -> Result<UserGlobs> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let (mut n, mut p) = (0, 0);
        for g in globs {
            if g.contains('/') {
                paths.add(compile(g.trim_end_matches('/'))?);
                p += 1;
            } else {
                names.add(compile(g)?);
                n += 1;
            }
        }
        Ok(UserGlobs {
            names: (n > 0).then(|| names.build()).transpose()?,
            paths: (p > 0).then(|| paths.build()).transpose()?,
        })
    }

    fn has_paths(&self) -> bool {
        self.paths.is_some()
    }

    fn matches(&self, rel: &Path, name: &OsStr) -> bool {
        self.names.as_ref().is_some_and(|s| s.is_match(name))
            || self.paths.as_ref().is_some_and(|s| s.is_match(rel))
    }
}

/// The secret patterns: the built-in list (unless `--no-hide-env`), `--hide`, and the
/// exceptions (templates such as `.env.example`, and `--unhide`).
pub struct Matcher {
    builtin: Vec<(Literal, &'static str)>,
    index: Option<Box<ByteIndex>>,
    hide: UserGlobs,
    unhide: UserGlobs,
}

impl Matcher {
    pub fn new(builtin: bool, hide: &[String], unhide: &[String]) -> Result<Matcher> {
        let builtin = match builtin {
            true => rules::SECRET_PATTERNS
                .iter()
                .map(|p| {
                    let lit = Literal::of(p.glob)
                        .with_context(|| format!("built-in pattern {:?} is not literal", p.glob))?;
                    Ok((lit, p.why))
                })
                .collect::<Result<Vec<_>>>()?,
            false => Vec::new(),
        };
        Ok(Matcher {
            index: ByteIndex::new(&builtin),
            builtin,
            hide: UserGlobs::new(hide)?,
            unhide: UserGlobs::new(unhide)?,
        })
    }

    /// Whether matching needs the relative path (only user globs with a `/` do).
    fn needs_rel(&self) -> bool {
        self.hide.has_paths() || self.unhide.has_paths()
    }

    /// Whether `--unhide` names this entry.
    pub fn unhidden(&self, rel: &Path, name: &OsStr) -> bool {
        self.unhide.matches(rel, name)
    }

    /// Why `rel` (named `name`) is a secret, or `None`.
    pub fn secret(&self, rel: &Path, name: &OsStr) -> Option<&'static str> {
        let bytes = name.as_bytes();
        let why = match self.builtin(bytes) {
            Some(why) => why,
            None if self.hide.matches(rel, name) => "--hide",
            None => return None,
        };
        let template = SECRET_EXCEPTIONS.iter().any(|e| bytes == e.as_bytes());
        (!template && !self.unhide.matches(rel, name)).then_some(why)
    }

    /// The first built-in pattern, in list order, that `name` matches.
    fn builtin(&self, name: &[u8]) -> Option<&'static str> {
        let (Some(index), Some(&first), Some(&last)) = (&self.index, name.first(), name.last())
        else {
            return self.builtin_linear(name);
        };
        let mut candidates = index.first[usize::from(first)] | index.last[usize::from(last)];
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if let Some(&(lit, why)) = self.builtin.get(i)
                && lit.matches(name)
            {
                return Some(why);
            }
        }
        None
    }

    fn builtin_linear(&self, name: &[u8]) -> Option<&'static str> {
        let hit = self.builtin.iter().find(|(l, _)| l.matches(name));
        hit.map(|&(_, why)| why)
    }
}

/// Which built-in patterns a name can match, as bits in list order: exact names and suffixes
/// by the name's last byte, prefixes by its first. One lookup rules out nearly every pattern
/// for nearly every name, and a scan checks every name in the tree.
struct ByteIndex {
    first: [u64; 256],
    last: [u64; 256],
}

impl ByteIndex {
    /// `None` if there are more patterns than bits (the list is then searched in full).
    fn new(builtin: &[(Literal, &'static str)]) -> Option<Box<ByteIndex>> {
        if builtin.len() > 64 {
            return None;
        }
        let mut index = Box::new(ByteIndex {
            first: [0; 256],
            last: [0; 256],
        });
        for (i, (lit, _)) in builtin.iter().enumerate() {
            let (table, byte) = match *lit {
                Literal::Exact(s) | Literal::Suffix(s) => (&mut index.last, s.as_bytes().last()),
                Literal::Prefix(p) => (&mut index.first, p.as_bytes().first()),
            };
            match byte {
                Some(&b) => table[usize::from(b)] |= 1 << i,
                // An empty suffix or prefix (`*`): a candidate for every name.
                None => table.iter_mut().for_each(|t| *t |= 1 << i),
            }
        }
        Some(index)
    }
}

/// `RUNS_LATER` split into (directory, name, why) once per scan, not once per entry.
struct RunsLaterNames(Vec<(Option<&'static str>, &'static str, &'static str)>);

impl RunsLaterNames {
    fn new() -> RunsLaterNames {
        let split = |path: &'static str| match path.split_once('/') {
            None => (None, path),
            Some((dir, file)) => (Some(dir), file),
        };
        RunsLaterNames(
            RUNS_LATER
                .iter()
                .map(|r| {
                    let (dir, file) = split(r.path);
                    (dir, file, r.why)
                })
                .collect(),
        )
    }

    /// The reason a `RUNS_LATER` entry matches `name` inside a directory called `parent`.
    fn find(&self, parent: Option<&OsStr>, name: &OsStr) -> Option<&'static str> {
        self.0.iter().find_map(|&(dir, file, why)| {
            let hit = same(name.as_bytes(), file.as_bytes())
                && dir.is_none_or(|d| parent == Some(OsStr::new(d)));
            hit.then_some(why)
        })
    }
}

/// How many directories the scan reads on the calling thread before it starts more threads:
/// most projects are done by then, and starting threads costs more than they do.
const SEQUENTIAL_DIRS: usize = 256;

/// At most this many threads read directories. Each is started by the calling thread, and early
/// on a walk has few large subtrees to hand out; 8 is a guess, measured only up to 2 cores.
const MAX_THREADS: usize = 8;

/// At most this many directories stay open while their subdirectories wait to be read (those
/// are opened relative to them, which costs the kernel less than a path lookup: about 7% of a
/// whole scan). See `hold_below`.
const MAX_HELD: u64 = 256;

/// getdents64 buffer: large enough that nearly every directory is read in one call (plus the
/// call that finds the end). Allocated once per thread, never initialised.
const DIR_BUF: usize = 64 * 1024;

/// A directory to read.
struct Job {
    /// The open directory that holds this one, to open it by name from there: no path lookup,
    /// so nothing above it can be swapped for a symlink while the walk is under way, and no
    /// PATH_MAX limit. `None` for the root and when too many are open already (`hold_below`).
    parent: Option<Arc<OwnedFd>>,
    /// Real path: the root joined with the names that led here.
    path: PathBuf,
    /// Levels below the root.
    depth: usize,
    /// Only secrets are looked for inside (git's own directory, `PRUNED_DIRS`, caches).
    secrets_only: bool,
}

/// What one thread carries: its stack of directories to read (depth first, so few stay open),
/// what it found, and its getdents buffer.
struct Worker {
    stack: Vec<Job>,
    report: Report,
    buf: Vec<u8>,
    /// Whether to open with `O_NOATIME`, until a directory we do not own refuses it.
    noatime: bool,
}

impl Worker {
    fn new() -> Worker {
        Worker {
            stack: Vec::new(),
            report: Report::default(),
            buf: Vec::with_capacity(DIR_BUF),
            noatime: true,
        }
    }
}

/// Directories handed between threads, and the count that says when the walk is over: every
/// thread idle with nothing left to hand out. Threads touch it only when one of them runs dry.
struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// A copy of `Queue::idle`, read without the lock after each directory.
    hungry: AtomicUsize,
}

struct Queue {
    jobs: VecDeque<Job>,
    workers: usize,
    idle: usize,
    done: bool,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the older half of `stack` (the shallowest directories: the largest pieces of work)
    /// to idle threads.
    fn give(&self, stack: &mut Vec<Job>) {
        let mut q = self.lock();
        q.jobs.extend(stack.drain(..stack.len() / 2));
        self.ready.notify_all();
    }

    /// The next directory handed out, or `None` once every thread is idle and none is left.
    fn take(&self) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.done {
                return None;
            }
            q.idle += 1;
            if q.idle == q.workers {
                q.done = true;
                self.ready.notify_all();
                return None;
            }
            self.hungry.store(q.idle, Ordering::Relaxed);
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            q.idle -= 1;
            self.hungry.store(q.idle, Ordering::Relaxed);
        }
    }
}

/// One scan: what stays the same for every directory.
struct Scan<'a> {
    root: &'a Path,
    matcher: &'a Matcher,
    needs_rel: bool,
    runs_later: RunsLaterNames,
    /// A directory whose descriptor is below this is kept open for its subdirectories.
    hold_below: RawFd,
}

/// The descriptor number below which a directory is kept open for its subdirectories. The
/// kernel hands out the lowest free number, so holding only those below N holds at most N: a
/// deliberately deep tree cannot run the process out of descriptors (a directory that fails
/// to open for want of one would go unread). Half the soft limit leaves room for the rest of
/// the process and each thread's one directory in reading.
fn hold_below() -> RawFd {
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    RawFd::try_from((soft / 2).min(MAX_HELD)).unwrap_or(0)
}

/// Scans `root` (canonical): sequentially, then in parallel if the tree turns out large.
pub fn scan(root: &Path, matcher: &Matcher) -> Report {
    scan_holding(root, matcher, hold_below())
}

fn scan_holding(root: &Path, matcher: &Matcher, hold_below: RawFd) -> Report {
    let scan = Scan {
        root,
        matcher,
        needs_rel: matcher.needs_rel(),
        runs_later: RunsLaterNames::new(),
        hold_below,
    };
    let mut w = Worker::new();
    w.stack.push(Job {
        parent: None,
        path: root.to_owned(),
        depth: 0,
        secrets_only: false,
    });
    for _ in 0..SEQUENTIAL_DIRS {
        let Some(job) = w.stack.pop() else { break };
        scan.visit(job, &mut w);
    }
    let mut report = match w.stack.is_empty() {
        true => w.report,
        false => scan.parallel(w),
    };
    report.secrets.sort();
    report.runs_later.sort();
    report.git.sort();
    report
}

impl Scan<'_> {
    /// Finishes the walk `first` started, on this thread and up to `MAX_THREADS - 1` more.
    fn parallel(&self, mut first: Worker) -> Report {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
        let pool = Pool {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                workers: 1,
                idle: 0,
                done: false,
            }),
            ready: Condvar::new(),
            hungry: AtomicUsize::new(0),
        };
        std::thread::scope(|s| {
            let mut others = Vec::new();
            for _ in 1..threads {
                // Counted before it starts, so that no thread can see all others idle and end
                // the walk while this one is still to take its first directory.
                pool.lock().workers += 1;
                let spawned = std::thread::Builder::new()
                    .name("agentbox-scan".into())
                    .spawn_scoped(s, || {
                        let mut w = Worker::new();
                        self.work(&pool, &mut w);
                        w.report
                    });
                match spawned {
                    Ok(handle) => others.push(handle),
                    // Fewer threads only make it slower.
                    Err(_) => pool.lock().workers -= 1,
                }
            }
            self.work(&pool, &mut first);
            let mut report = first.report;
            for handle in others {
                match handle.join() {
                    Ok(mut r) => {
                        report.secrets.append(&mut r.secrets);
                        report.runs_later.append(&mut r.runs_later);
                        report.git.append(&mut r.git);
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            report
        })
    }

    /// Reads directories until the whole tree is done.
    fn work(&self, pool: &Pool, w: &mut Worker) {
        loop {
            let job = match w.stack.pop() {
                Some(job) => job,
                None => match pool.take() {
                    Some(job) => job,
                    None => return,
                },
            };
            self.visit(job, w);
            if w.stack.len() > 1 && pool.hungry.load(Ordering::Relaxed) > 0 {
                pool.give(&mut w.stack);
            }
        }
    }

    /// Reads one directory: records what it finds, pushes each subdirectory on `w.stack`.
    ///
    /// Git's own directory, `node_modules` and the like, and cache directories (`CACHEDIR.TAG`)
    /// are searched for secrets only: the runs-later files are not looked for there. They are
    /// never skipped outright, because an earlier run could rename a directory holding a secret
    /// to one of those names (or plant a `CACHEDIR.TAG` beside it) to hide it from the next scan.
    fn visit(&self, job: Job, w: &mut Worker) {
        // A directory we cannot open is one the agent (same uid) cannot list either.
        let Some(fd) = open_dir(&job, &mut w.noatime) else {
            return;
        };
        let Job {
            parent,
            path,
            depth,
            secrets_only,
        } = job;
        // Open now, this one no longer needs its parent: let it close as soon as no other
        // subdirectory of it is waiting.
        drop(parent);
        let fd = Arc::new(fd);
        let hold = (fd.as_raw_fd() < self.hold_below).then_some(&fd);
        let Worker {
            stack, report, buf, ..
        } = w;
        // Whether this directory is a cache is known only once all of it is read; until then
        // its entries are recorded as if it were not, and taken back if it is.
        let (git_mark, later_mark, stack_mark) =
            (report.git.len(), report.runs_later.len(), stack.len());
        let mut cache = false;
        let dir = Dir {
            path: &path,
            parent: path.file_name(),
            depth,
            secrets_only,
        };
        let mut entries = RawDir::new(&*fd, buf.spare_capacity_mut());
        // An error ends the directory early, as it did for `read_dir`: getdents only fails when
        // the directory went away or its filesystem is broken.
        while let Some(Ok(entry)) = entries.next() {
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            cache |= bytes == CACHEDIR_TAG.as_bytes();
            let ft = match entry.file_type() {
                // Some filesystems leave the type out of the listing.
                FileType::Unknown => match rfs::statat(&*fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(_) => continue,
                },
                ft => ft,
            };
            self.entry(&dir, OsStr::from_bytes(bytes), ft, hold, report, stack);
        }
        if cache && depth > 0 && !secrets_only {
            report.git.truncate(git_mark);
            report.runs_later.truncate(later_mark);
            for sub in &mut stack[stack_mark..] {
                sub.secrets_only = true;
            }
        }
    }

    /// One entry of `dir`.
    fn entry(
        &self,
        dir: &Dir<'_>,
        name: &OsStr,
        ft: FileType,
        hold: Option<&Arc<OwnedFd>>,
        out: &mut Report,
        stack: &mut Vec<Job>,
    ) {
        let kind = match ft {
            FileType::Symlink => Kind::Symlink,
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            _ => Kind::Other,
        };
        let found = |why: &str| Found {
            path: dir.path.join(name),
            kind,
            why: why.to_owned(),
        };
        let git = name == ".git";
        if git && !dir.secrets_only {
            out.git.push(found("git directory"));
        }
        if !dir.secrets_only
            && !git
            && let Some(why) = self.runs_later.find(dir.parent, name)
        {
            out.runs_later.push(found(why));
        }
        let path;
        let rel = if self.needs_rel {
            path = dir.path.join(name);
            path.strip_prefix(self.root).unwrap_or(&path)
        } else {
            Path::new(name)
        };
        if ft == FileType::Socket && !self.matcher.unhidden(rel, name) {
            // Read-only mounts do not stop connect(): a listening socket in the project is a
            // door to whatever host process made it.
            out.secrets
                .push(found("a UNIX socket: it would reach a host process"));
            return;
        }
        if let Some(why) = self.matcher.secret(rel, name) {
            out.secrets.push(found(why));
            return;
        }
        if kind == Kind::Dir {
            let skip_later = git || PRUNED_DIRS.iter().any(|p| name == *p);
            stack.push(Job {
                parent: hold.cloned(),
                path: dir.path.join(name),
                depth: dir.depth + 1,
                secrets_only: dir.secrets_only || skip_later,
            });
        }
    }
}

/// The directory being read, as `Scan::entry` needs it.
struct Dir<'a> {
    path: &'a Path,
    /// Its own name, for the two-level `RUNS_LATER` entries.
    parent: Option<&'a OsStr>,
    depth: usize,
    secrets_only: bool,
}

/// Opens a directory to read. Below the root it must be a real directory, not a symlink to one
/// (`O_NOFOLLOW`); the root is canonical (the caller resolved it). The directories above are
/// held open already or, when too many are (`hold_below`), looked up again by path like
/// `read_dir` does (so within PATH_MAX, and through a symlink that something swaps in above
/// them while the walk runs).
///
/// `O_NOATIME` keeps the scan from writing directory access times (it changes nothing on the
/// host) and saves the kernel the check; only the owner may ask for it, so after one refusal
/// (`noatime` turns false) this thread stops asking.
fn open_dir(job: &Job, noatime: &mut bool) -> Option<OwnedFd> {
    let (at, path): (BorrowedFd<'_>, &Path) = match &job.parent {
        Some(parent) => (parent.as_fd(), Path::new(job.path.file_name()?)),
        None => (rfs::CWD, &job.path),
    };
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if job.depth > 0 {
        flags |= OFlags::NOFOLLOW;
    }
    if *noatime {
        match rfs::openat(at, path, flags | OFlags::NOATIME, Mode::empty()) {
            Err(Errno::PERM) => *noatime = false,
            opened => return opened.ok(),
        }
    }
    rfs::openat(at, path, flags, Mode::empty()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "x").unwrap();
    }

    fn rels(root: &Path, found: &[Found]) -> Vec<String> {
        found
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn finds_secrets_at_any_depth_and_spares_templates() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for f in [
            ".env",
            "a/b/c/.env",
            "a/.env.local",
            "a/.env.example",
            ".env.sample",
            "keys/server.pem",
            "keys/server.pub",
            "id_ed25519",
            "id_ed25519.pub",
            "infra/prod.tfvars",
            "src/main.rs",
            "node_modules/pkg/.env",
            "target/CACHEDIR.TAG",
            "target/debug/.env",
            ".ssh/config",
        ] {
            write(root, f);
        }
        let m = Matcher::new(true, &[], &[]).unwrap();
        let r = scan(root, &m);
        assert_eq!(
            rels(root, &r.secrets),
            [
                ".env",
                ".ssh",
                "a/.env.local",
                "a/b/c/.env",
                "id_ed25519",
                "infra/prod.tfvars",
                "keys/server.pem",
                // Searched for secrets too: a renamed directory must not hide one.
                "node_modules/pkg/.env",
                "target/debug/.env",
            ]
        );
        assert_eq!(r.secrets[1].kind, Kind::Dir);
    }

    #[test]
    fn hide_and_unhide() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for f in [
            ".env",
            "conf/db.secret",
            "other/db.secret",
            "x.pem",
            "y.pem",
        ] {
            write(root, f);
        }
        let hide = ["conf/*.secret".to_owned()];
        let unhide = ["x.pem".to_owned(), ".env".to_owned()];
        let r = scan(root, &Matcher::new(true, &hide, &unhide).unwrap());
        assert_eq!(rels(root, &r.secrets), ["conf/db.secret", "y.pem"]);
        let r = scan(root, &Matcher::new(false, &hide, &[]).unwrap());
        assert_eq!(rels(root, &r.secrets), ["conf/db.secret"]);
    }

    #[test]
    fn symlinks_are_reported_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("p");
        let outside = t.path().join("outside");
        write(&outside, ".env");
        fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join(".env"), root.join(".env")).unwrap();
        let r = scan(&root, &Matcher::new(true, &[], &[]).unwrap());
        assert_eq!(rels(&root, &r.secrets), [".env"]);
        assert_eq!(r.secrets[0].kind, Kind::Symlink);
    }

    #[test]
    fn finds_runs_later_and_git() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for f in [
            ".git/config",
            ".envrc",
            "sub/.vscode/tasks.json",
            ".claude/commands/x.md",
            ".claude/notes.md",
            "deep/er/.mcp.json",
            "sub/.git",
        ] {
            write(root, f);
        }
        let r = scan(root, &Matcher::new(true, &[], &[]).unwrap());
        assert_eq!(
            rels(root, &r.runs_later),
            [
                ".claude/commands",
                ".envrc",
                "deep/er/.mcp.json",
                "sub/.vscode"
            ]
        );
        assert_eq!(rels(root, &r.git), [".git", "sub/.git"]);
        assert_eq!(r.git[1].kind, Kind::File);
    }

    #[test]
    fn the_built_in_list_needs_no_regex() {
        for p in rules::SECRET_PATTERNS {
            assert!(
                Literal::of(p.glob).is_some(),
                "{} would need a compiled glob",
                p.glob
            );
        }
        assert_eq!(Literal::of("*.pem"), Some(Literal::Suffix(".pem")));
        assert_eq!(Literal::of(".env.*"), Some(Literal::Prefix(".env.")));
        assert_eq!(Literal::of("a*b"), None);
        // A bare suffix or prefix is not a match by itself.
        assert!(!Literal::Suffix(".pem").matches(b".pem"));
        assert!(!Literal::Prefix(".env.").matches(b".env."));
    }

    #[test]
    fn large_trees_go_parallel_and_find_the_same() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for i in 0..400 {
            write(root, &format!("d{i}/sub/file.rs"));
        }
        write(root, "d17/sub/.env");
        write(root, "d399/.envrc");
        let r = scan(root, &Matcher::new(true, &[], &[]).unwrap());
        assert_eq!(rels(root, &r.secrets), ["d17/sub/.env"]);
        assert_eq!(rels(root, &r.runs_later), ["d399/.envrc"]);
    }

    #[test]
    fn the_byte_index_finds_what_the_list_finds() {
        let m = Matcher::new(true, &[], &[]).unwrap();
        assert!(m.index.is_some());
        let mut names: Vec<String> = rules::SECRET_PATTERNS
            .iter()
            .flat_map(|p| {
                let core = p.glob.replace('*', "");
                [
                    core.clone(),
                    format!("x{core}"),
                    format!("{core}x"),
                    format!("a.b{core}"),
                ]
            })
            .collect();
        names.extend(
            [
                "",
                "a",
                ".",
                "index.js",
                "id_rsa.pub",
                ".env.local.pem",
                "é.key",
            ]
            .map(String::from),
        );
        for n in &names {
            assert_eq!(
                m.builtin(n.as_bytes()),
                m.builtin_linear(n.as_bytes()),
                "{n:?}"
            );
        }
        // An empty suffix makes every name a candidate.
        let star = [(Literal::Suffix(""), "any"), (Literal::Exact("a"), "a")];
        let index = ByteIndex::new(&star).unwrap();
        assert_eq!(index.last[usize::from(b'z')], 1);
        assert_eq!(index.last[usize::from(b'a')], 0b11);
    }

    #[test]
    fn a_cache_is_searched_for_secrets_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for f in [
            "CACHEDIR.TAG",
            ".envrc",
            "cache/CACHEDIR.TAG",
            "cache/.envrc",
            "cache/.git/config",
            "cache/.vscode/x",
            "cache/deep/.mcp.json",
            "cache/deep/.env",
            "cache/deep/er/id_rsa",
        ] {
            write(root, f);
        }
        let r = scan(root, &Matcher::new(true, &[], &[]).unwrap());
        // A tag at the root itself does not make the project a cache.
        assert_eq!(rels(root, &r.runs_later), [".envrc"]);
        assert!(r.git.is_empty());
        assert_eq!(
            rels(root, &r.secrets),
            ["cache/deep/.env", "cache/deep/er/id_rsa"]
        );
    }

    #[test]
    fn sockets_are_secrets_unless_unhidden() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir(root.join("run")).unwrap();
        let _listener =
            std::os::unix::net::UnixListener::bind(root.join("run/agent.sock")).unwrap();
        let r = scan(root, &Matcher::new(true, &[], &[]).unwrap());
        assert_eq!(rels(root, &r.secrets), ["run/agent.sock"]);
        assert_eq!(r.secrets[0].kind, Kind::Other);
        let unhide = ["agent.sock".to_owned()];
        let r = scan(root, &Matcher::new(true, &[], &unhide).unwrap());
        assert!(r.secrets.is_empty());
    }

    #[test]
    fn deep_trees_are_read_to_the_bottom() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // Each level has a subdirectory still to read while the walk goes down the other one,
        // so every level would stay open.
        let mut deep = String::new();
        for i in 0..300 {
            deep.push_str(&format!("d{i}/"));
            write(root, &format!("{deep}side/x.rs"));
        }
        write(root, &format!("{deep}.env"));
        write(root, &format!("{deep}sub/.envrc"));
        std::os::unix::fs::symlink(root, root.join(format!("{deep}loop"))).unwrap();
        let m = Matcher::new(true, &[], &[]).unwrap();
        let r = scan(root, &m);
        assert_eq!(rels(root, &r.secrets), [format!("{deep}.env")]);
        assert_eq!(rels(root, &r.runs_later), [format!("{deep}sub/.envrc")]);
        // Holding none, or only a few, reads the same by path.
        for hold_below in [0, 8] {
            assert_eq!(scan_holding(root, &m, hold_below), r, "{hold_below}");
        }
    }

    #[test]
    fn large_trees_keep_the_cache_and_git_rules() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for i in 0..300 {
            write(root, &format!("src/d{i}/m.rs"));
            write(root, &format!("target/d{i}/o.rlib"));
        }
        for f in [
            "target/CACHEDIR.TAG",
            "target/d7/.envrc",
            "target/d8/.git/HEAD",
            "target/d9/key.pem",
            "src/d250/.envrc",
            "src/d251/.git/HEAD",
            "src/d252/.git/hooks/.envrc",
        ] {
            write(root, f);
        }
        let r = scan(root, &Matcher::new(true, &[], &[]).unwrap());
        assert_eq!(rels(root, &r.secrets), ["target/d9/key.pem"]);
        assert_eq!(rels(root, &r.runs_later), ["src/d250/.envrc"]);
        assert_eq!(rels(root, &r.git), ["src/d251/.git", "src/d252/.git"]);
    }

    #[test]
    fn bad_globs_are_refused() {
        for g in ["", "/abs", "a["] {
            assert!(check_glob(g).is_err(), "{g:?}");
        }
        assert!(check_glob("*.x").is_ok());
    }
}
