//! The walk of the secret scan: each directory opened relative to its parent's fd (never
//! following a symlink below the root) and read with getdents64 into a large buffer, names
//! matched on the raw bytes, work shared between threads depth-first. It reads and never
//! writes.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RawDir};
use rustix::io::Errno;
use rustix::process::{Resource, getrlimit};

use super::*;

/// How many directories the scan reads on the calling thread before it starts more threads:
/// most projects are done by then, and starting threads costs more than they do.
pub(super) const SEQUENTIAL_DIRS: usize = 256;

/// At most this many threads read directories. Each is started by the calling thread, and early
/// on a walk has few large subtrees to hand out; 8 is a guess, measured only up to 2 cores.
pub(super) const MAX_THREADS: usize = 8;

/// At most this many directories stay open while their subdirectories wait to be read (those
/// are opened relative to them, which costs the kernel less than a path lookup: about 7% of a
/// whole scan). See `hold_below`.
pub(super) const MAX_HELD: u64 = 256;

/// getdents64 buffer: large enough that nearly every directory is read in one call (plus the
/// call that finds the end). Allocated once per thread, never initialised.
pub(super) const DIR_BUF: usize = 64 * 1024;

/// A directory to read.
pub(super) struct Job {
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
pub(super) struct Worker {
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
pub(super) struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// A copy of `Queue::idle`, read without the lock after each directory.
    hungry: AtomicUsize,
}

pub(super) struct Queue {
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
pub(super) struct Scan<'a> {
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
pub(super) fn hold_below() -> RawFd {
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    RawFd::try_from((soft / 2).min(MAX_HELD)).unwrap_or(0)
}

/// Scans `root` (canonical): sequentially, then in parallel if the tree turns out large.
pub fn scan(root: &Path, matcher: &Matcher) -> Report {
    scan_holding(root, matcher, hold_below())
}

pub(super) fn scan_holding(root: &Path, matcher: &Matcher, hold_below: RawFd) -> Report {
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
    report.watched.sort();
    report.caches.sort();
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
                        report.watched.append(&mut r.watched);
                        report.caches.append(&mut r.caches);
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
        let (git_mark, later_mark, watched_mark, stack_mark) = (
            report.git.len(),
            report.runs_later.len(),
            report.watched.len(),
            stack.len(),
        );
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
            report.watched.truncate(watched_mark);
            report.caches.push(path.clone());
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
            && let Some(r) = self.runs_later.find(dir.parent, name)
        {
            match r.guard {
                Guard::ReadOnly => out.runs_later.push(found(r.why)),
                Guard::Audit => out.watched.push(found(r.why)),
            }
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
pub(super) struct Dir<'a> {
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
pub(super) fn open_dir(job: &Job, noatime: &mut bool) -> Option<OwnedFd> {
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
