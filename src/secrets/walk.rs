//! The walk of the secret scan: each directory opened relative to its parent's fd (never
//! following a symlink below the root, at any depth) and read with getdents64 into a large buffer, names
//! matched on the raw bytes, work shared between threads depth-first. It reads and never
//! writes.

use std::collections::VecDeque;
use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RawDir};
use rustix::io::Errno;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::*;

/// How many directories the scan reads on the calling thread before it starts more threads:
/// most projects are done by then, and starting threads costs more than they do.
pub(super) const SEQUENTIAL_DIRS: usize = 256;

/// At most this many threads read directories. Each is started by the calling thread, and early
/// on a walk has few large subtrees to hand out; 8 is a guess, measured only up to 2 cores.
pub(super) const MAX_THREADS: usize = 8;

/// At most this many directories stay open while their subdirectories wait to be read (those
/// are opened relative to them, which costs the kernel less than a path lookup: about 7% of a
/// whole scan). Deeper than that, a directory is opened from the nearest one held, one
/// component at a time. See `hold_below`.
pub(super) const MAX_HELD: u64 = 4096;

/// getdents64 buffer: large enough that nearly every directory is read in one call (plus the
/// call that finds the end). Allocated once per thread, never initialised.
pub(super) const DIR_BUF: usize = 64 * 1024;

/// The longest path bwrap can mount on (PATH_MAX, with its NUL).
pub(super) const PATH_MAX: usize = 4096;

/// A directory to read.
pub(super) struct Job {
    /// The nearest open directory above this one (its parent, unless too many are open), to
    /// open it from there by `rel`, one component at a time without following a symlink: no
    /// path lookup, so nothing above it can be swapped for a symlink while the walk is under
    /// way, and no PATH_MAX limit. `None` for the root.
    pub(super) anchor: Option<Arc<OwnedFd>>,
    /// The names from `anchor` to here.
    pub(super) rel: PathBuf,
    /// Real path: the root joined with the names that led here.
    pub(super) path: PathBuf,
    /// Levels below the root.
    pub(super) depth: usize,
    /// Only secrets are looked for inside (git's own directory).
    pub(super) secrets_only: bool,
    /// Inside installed packages (`PACKAGE_DIRS`): no runs-later names, but git repositories.
    pub(super) packages: bool,
}

/// Why part of the tree went unread. Any one refuses the launch: what the scan did not see, it
/// cannot mask or protect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub(super) path: PathBuf,
    pub(super) what: What,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum What {
    /// A directory that would not open (its mode, most often).
    Open(Errno),
    /// A directory that went away or changed type between its listing and its opening.
    Changed(Errno),
    /// Reading a directory failed part way.
    Read(Errno),
    /// An entry whose type the listing left out and that would not stat.
    Stat(Errno),
    /// A secret or protected entry whose path is too long for a mount.
    TooLong,
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
    /// (device, inode) of masked files with other names: every name of them is a secret.
    linked: &'a [(u64, u64)],
}

/// The descriptor number below which a directory is kept open for its subdirectories. The
/// kernel hands out the lowest free number, so holding only those below N holds at most N: a
/// deliberately deep tree cannot run the process out of descriptors (the directories past it
/// are opened from the nearest one held instead). Half the soft limit leaves room for the rest
/// of the process and each thread's one directory in reading.
pub(super) fn hold_below() -> RawFd {
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    RawFd::try_from((soft / 2).min(MAX_HELD)).unwrap_or(0)
}

/// Raises the soft descriptor limit to the hard one while it lives (a deep tree is then read
/// with more of its directories held open), and puts it back: the agent inherits the limit,
/// and programs that still use select() need the usual 1024.
struct MoreFds(Option<Rlimit>);

impl MoreFds {
    fn raise() -> MoreFds {
        let old = getrlimit(Resource::Nofile);
        if old.current >= old.maximum {
            return MoreFds(None);
        }
        let raised = Rlimit {
            current: old.maximum,
            maximum: old.maximum,
        };
        MoreFds(setrlimit(Resource::Nofile, raised).ok().map(|()| old))
    }
}

impl Drop for MoreFds {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            // Only fails if the hard limit was lowered meanwhile, which leaves less anyway.
            let _ = setrlimit(Resource::Nofile, old);
        }
    }
}

/// Scans `root` (canonical): sequentially, then in parallel if the tree turns out large. Hard
/// links to its secrets are found within it; `scan_roots` finds them across several roots.
/// Fails, naming the place and the fix, when any part of the tree cannot be read.
pub fn scan(root: &Path, matcher: &Matcher) -> Result<Report> {
    Ok(scan_roots(&[root], matcher, &[])?.remove(0))
}

/// Scans each root; then, if any masked file has other names (its own, or one of `linked`:
/// masked system files), every root again to find them: the common case reads nothing twice.
pub fn scan_roots(
    roots: &[&Path],
    matcher: &Matcher,
    linked: &[(u64, u64)],
) -> Result<Vec<Report>> {
    let _fds = MoreFds::raise();
    let hold = hold_below();
    let mut attempt = 1;
    loop {
        let reports = scan_roots_once(roots, matcher, linked, hold);
        let problems = || reports.iter().flat_map(|r| &r.problems);
        // A directory that vanished or changed type while it was read (a build running in
        // the project, say) is read again from the start: the whole walk, since what moved may
        // have moved to where the walk had been already. Only a tree that keeps changing, or
        // what cannot be read at all, refuses.
        let moving =
            problems().next().is_some() && problems().all(|p| matches!(p.what, What::Changed(_)));
        if moving && attempt < SCAN_ATTEMPTS {
            attempt += 1;
            continue;
        }
        for (root, r) in roots.iter().zip(&reports) {
            if let Some(first) = r.problems.first() {
                return Err(refusal(root, first, r.problems.len()));
            }
        }
        return Ok(reports);
    }
}

/// For the exit audit, where refusing helps nobody (the agent has run; an unreadable directory
/// must not cost the report on the rest): what `scan` finds in `root`, and the places it
/// could not read, to be named as unchecked. A changing tree is read again as in `scan_roots`.
pub fn scan_lenient(root: &Path, matcher: &Matcher) -> (Report, Vec<PathBuf>) {
    let _fds = MoreFds::raise();
    let hold = hold_below();
    let mut attempt = 1;
    loop {
        let mut r = scan_holding(root, matcher, hold, &[]);
        let moving = r
            .problems
            .iter()
            .any(|p| matches!(p.what, What::Changed(_)));
        if moving && attempt < SCAN_ATTEMPTS {
            attempt += 1;
            continue;
        }
        // Too long for a mount is no reason to leave a place unchecked.
        let unread = std::mem::take(&mut r.problems)
            .into_iter()
            .filter(|p| p.what != What::TooLong)
            .map(|p| p.path)
            .collect();
        return (r, unread);
    }
}

/// How many times a walk that met a changing tree is made before it refuses.
const SCAN_ATTEMPTS: usize = 3;

fn scan_roots_once(
    roots: &[&Path],
    matcher: &Matcher,
    linked: &[(u64, u64)],
    hold: RawFd,
) -> Vec<Report> {
    let mut reports = Vec::new();
    let mut links = linked.to_vec();
    for root in roots {
        let r = scan_holding(root, matcher, hold, &[]);
        links.extend(&r.links);
        reports.push(r);
    }
    links.sort_unstable();
    links.dedup();
    if !links.is_empty() {
        reports = roots
            .iter()
            .map(|root| scan_holding(root, matcher, hold, &links))
            .collect();
    }
    reports
}

pub(super) fn scan_holding(
    root: &Path,
    matcher: &Matcher,
    hold_below: RawFd,
    linked: &[(u64, u64)],
) -> Report {
    let scan = Scan {
        root,
        matcher,
        needs_rel: matcher.needs_rel(),
        runs_later: RunsLaterNames::new(),
        hold_below,
        linked,
    };
    let mut w = Worker::new();
    w.stack.push(Job {
        anchor: None,
        rel: PathBuf::new(),
        path: root.to_owned(),
        depth: 0,
        secrets_only: false,
        packages: false,
    });
    for _ in 0..SEQUENTIAL_DIRS {
        let Some(job) = w.stack.pop() else { break };
        scan.visit(job, &mut w);
    }
    let mut report = match w.stack.is_empty() {
        true => w.report,
        false => scan.parallel(w),
    };
    // A mount cannot be made on a path longer than PATH_MAX: what the plan must act on has to
    // be within it.
    let long = |f: &Found| f.path.as_os_str().len() >= PATH_MAX;
    let too_long: Vec<Problem> = (report.secrets.iter())
        .chain(&report.runs_later)
        .chain(&report.git)
        .filter(|f| long(f))
        .map(|f| Problem {
            path: f.path.clone(),
            what: What::TooLong,
        })
        .collect();
    report.problems.extend(too_long);
    report.secrets.sort();
    report.secrets.dedup_by(|a, b| a.path == b.path);
    report.runs_later.sort();
    report.watched.sort();
    report.git.sort();
    report.problems.sort_by(|a, b| a.path.cmp(&b.path));
    report
}

/// The error for what the scan could not read: the first place (of `count`), why, and the fix.
pub(super) fn refusal(root: &Path, p: &Problem, count: usize) -> anyhow::Error {
    // The escape hatch is to hide the place whole: a `--hide` directory is not descended. A
    // path glob, so it names this one place; its glob characters escaped.
    let top = match p.what {
        // The shallowest directory whose path still fits, within the deep part.
        What::TooLong => shallow_ancestor(root, &p.path),
        _ => p.path.clone(),
    };
    let rel = top.strip_prefix(root).unwrap_or(&top);
    let mut glob = String::new();
    for c in rel.to_string_lossy().chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            glob.push('\\');
        }
        glob.push(c);
    }
    // The root itself cannot be hidden: only its mode can be fixed.
    let hide = (!glob.is_empty()).then(|| {
        format!(
            "--hide {}",
            crate::text::shell_quote(OsStr::new(&format!("{glob}/")))
        )
    });
    let or_hide = |fix: String| match &hide {
        Some(hide) => format!("{hide} hides it whole, or {fix}"),
        None => fix,
    };
    let shown = crate::text::shell_quote(p.path.as_os_str());
    let shown = match shown.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &shown[..cut]),
        None => shown,
    };
    let more = match count {
        1 => String::new(),
        n => format!(" (and {} more place(s))", n - 1),
    };
    let why = "the secret scan must see every entry of a writable root";
    let (message, hint) = match p.what {
        What::Open(e) => (
            format!("refusing to start: cannot open {shown}: {e}; {why}{more}"),
            or_hide(format!(
                "make it readable: chmod u+rx {}",
                crate::text::shell_quote(p.path.as_os_str())
            )),
        ),
        What::Changed(e) => (
            format!("refusing to start: {shown} changed while it was scanned ({e}); {why}{more}"),
            or_hide("run again once nothing is changing it".to_owned()),
        ),
        What::Read(e) | What::Stat(e) => (
            format!("refusing to start: cannot read {shown}: {e}; {why}{more}"),
            or_hide("repair it (fsck)".to_owned()),
        ),
        What::TooLong => (
            format!(
                "refusing to start: {shown} must be masked or made read-only, but its path is \
                 longer than a mount allows (PATH_MAX){more}"
            ),
            or_hide("move it higher up".to_owned()),
        ),
    };
    Fail::hint(message, hint).into()
}

/// The shallowest directory below `root` on the way to `path`, whose path is short enough to
/// mask: hiding it hides the whole deep part.
fn shallow_ancestor(root: &Path, path: &Path) -> PathBuf {
    let rel = path.strip_prefix(root).unwrap_or(path);
    match rel.components().next() {
        Some(first) => root.join(first),
        None => path.to_owned(),
    }
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
                        report.git.append(&mut r.git);
                        report.links.append(&mut r.links);
                        report.problems.append(&mut r.problems);
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

    /// Reads one directory: records what it finds, pushes each subdirectory on `w.stack`, and
    /// records a `Problem` for anything it cannot read.
    ///
    /// Git's own directory is searched for secrets only (the git model finds what git runs
    /// later in it). Nothing is skipped outright, and no file in the tree changes what is
    /// looked for: an earlier run could name or mark a directory to hide what it holds.
    fn visit(&self, job: Job, w: &mut Worker) {
        let fd = match open_dir(&job, &mut w.noatime) {
            Ok(fd) => fd,
            Err(e) => {
                let what = match e {
                    Errno::NOENT | Errno::NOTDIR | Errno::LOOP => What::Changed(e),
                    _ => What::Open(e),
                };
                w.report.problems.push(Problem {
                    path: job.path,
                    what,
                });
                return;
            }
        };
        let Job {
            anchor,
            rel,
            path,
            depth,
            secrets_only,
            packages,
        } = job;
        let fd = Arc::new(fd);
        // Subdirectories open from this one if it is held, else from the same anchor as it.
        let held = anchor.is_none() || fd.as_raw_fd() < self.hold_below;
        let from = match (held, anchor) {
            (false, Some(anchor)) => From::Anchor(anchor, rel),
            // Open now, this one no longer needs its anchor: let it close as soon as no other
            // subdirectory of it is waiting.
            _ => From::Held,
        };
        let Worker {
            stack, report, buf, ..
        } = w;
        let dir = Dir {
            fd: &fd,
            from,
            path: &path,
            parent: path.file_name(),
            depth,
            secrets_only,
            packages,
        };
        let mut entries = RawDir::new(&*fd, buf.spare_capacity_mut());
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    report.problems.push(Problem {
                        path: path.clone(),
                        what: What::Read(e),
                    });
                    break;
                }
            };
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let ft = match entry.file_type() {
                // Some filesystems leave the type out of the listing.
                FileType::Unknown => match rfs::statat(&*fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(e) => {
                        report.problems.push(Problem {
                            path: path.join(OsStr::from_bytes(bytes)),
                            what: What::Stat(e),
                        });
                        continue;
                    }
                },
                ft => ft,
            };
            let linked = !self.linked.is_empty()
                && ft == FileType::RegularFile
                && self.linked.iter().any(|l| l.1 == entry.ino());
            self.entry(&dir, name, ft, linked, report, stack);
        }
    }

    /// One entry of `dir`. `linked`: its inode is one of `self.linked` (to confirm).
    fn entry(
        &self,
        dir: &Dir<'_>,
        cname: &CStr,
        ft: FileType,
        linked: bool,
        out: &mut Report,
        stack: &mut Vec<Job>,
    ) {
        let name = OsStr::from_bytes(cname.to_bytes());
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
            && !dir.packages
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
        let is_dir = kind == Kind::Dir;
        if let Some(p) = self.matcher.secret(rel, name, dir.parent, is_dir)
            && (is_dir || sniff::is_secret(dir.fd, cname, p.check, kind == Kind::Symlink))
        {
            out.secrets.push(found(p.why));
            match kind {
                Kind::File => self.note_links(dir, cname, out),
                // A masked directory hides its files: a hard link to one of them elsewhere is
                // found the same way. (`--hide` directories are not opened: hiding is also
                // the way out for what cannot be read.)
                Kind::Dir if !std::ptr::eq(p, &HIDDEN) => links_inside(dir.fd, cname, out),
                _ => {}
            }
            return;
        }
        if linked
            && let Ok(st) = rfs::statat(dir.fd.as_fd(), cname, AtFlags::SYMLINK_NOFOLLOW)
            && self.linked.contains(&(st.st_dev, st.st_ino))
        {
            out.secrets.push(found(
                "a hard link to a masked file (the same file by another name)",
            ));
            return;
        }
        if is_dir {
            let (anchor, rel) = match &dir.from {
                From::Held => (dir.fd.clone(), PathBuf::from(name)),
                From::Anchor(anchor, rel) => (anchor.clone(), rel.join(name)),
            };
            stack.push(Job {
                anchor: Some(anchor),
                rel,
                path: dir.path.join(name),
                depth: dir.depth + 1,
                secrets_only: dir.secrets_only || PRUNED_DIRS.iter().any(|p| name == *p),
                packages: dir.packages || PACKAGE_DIRS.iter().any(|p| name == *p),
            });
        }
    }

    /// A masked file with other names: note its identity, so that the other names are found
    /// and masked too (`scan_roots`). One stat per secret file found, none for other files.
    fn note_links(&self, dir: &Dir<'_>, name: &CStr, out: &mut Report) {
        match rfs::statat(dir.fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_nlink > 1 => out.links.push((st.st_dev, st.st_ino)),
            Ok(_) => {}
            // It was listed a moment ago: if it cannot be looked at now, the tree is changing.
            Err(e) => out.problems.push(Problem {
                path: dir.path.join(OsStr::from_bytes(name.to_bytes())),
                what: What::Changed(e),
            }),
        }
    }
}

/// Notes the identity of every file with other names below the masked directory `name`, within
/// bounds (secret directories such as `.ssh` are small). What cannot be read there is masked
/// with the directory, so it is passed over.
fn links_inside(parent: &OwnedFd, name: &CStr, out: &mut Report) {
    const MAX_ENTRIES: usize = 10_000;
    const MAX_DEPTH: usize = 8;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(top) = rfs::openat(parent.as_fd(), name, flags, Mode::empty()) else {
        return;
    };
    let mut buf = Vec::with_capacity(DIR_BUF);
    let mut stack = vec![(top, 0)];
    let mut seen = 0;
    while let Some((fd, depth)) = stack.pop() {
        let mut entries = RawDir::new(&fd, buf.spare_capacity_mut());
        let mut subdirs = Vec::new();
        while let Some(Ok(entry)) = entries.next() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return;
            }
            let name = entry.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            let Ok(st) = rfs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile if st.st_nlink > 1 => out.links.push((st.st_dev, st.st_ino)),
                FileType::Directory if depth < MAX_DEPTH => subdirs.push(name.to_owned()),
                _ => {}
            }
        }
        for sub in subdirs {
            if let Ok(sub) = rfs::openat(&fd, sub.as_c_str(), flags, Mode::empty()) {
                stack.push((sub, depth + 1));
            }
        }
    }
}

/// Where the subdirectories of a directory are opened from.
enum From {
    /// The directory itself, held open.
    Held,
    /// An ancestor held open, and the names from it to the directory.
    Anchor(Arc<OwnedFd>, PathBuf),
}

/// The directory being read, as `Scan::entry` needs it.
pub(super) struct Dir<'a> {
    fd: &'a Arc<OwnedFd>,
    from: From,
    path: &'a Path,
    /// Its own name, for the two-level `RUNS_LATER` entries and secret patterns.
    parent: Option<&'a OsStr>,
    depth: usize,
    secrets_only: bool,
    packages: bool,
}

/// Opens a directory to read. Below the root it must be a real directory, not a symlink to one
/// (`O_NOFOLLOW`), and every component from its anchor (the nearest directory held open above
/// it) is opened the same way, relative to the one before: no path is looked up again, so no
/// PATH_MAX limit and no symlink swapped in above it while the walk runs. The root is
/// canonical (the caller resolved it).
///
/// `O_NOATIME` keeps the scan from writing directory access times (it changes nothing on the
/// host) and saves the kernel the check; only the owner may ask for it, so after one refusal
/// (`noatime` turns false) this thread stops asking.
pub(super) fn open_dir(job: &Job, noatime: &mut bool) -> Result<OwnedFd, Errno> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if job.depth > 0 {
        flags |= OFlags::NOFOLLOW;
    }
    let mut open = |at: BorrowedFd<'_>, name: &Path| {
        if *noatime {
            match rfs::openat(at, name, flags | OFlags::NOATIME, Mode::empty()) {
                Err(Errno::PERM) => *noatime = false,
                opened => return opened,
            }
        }
        rfs::openat(at, name, flags, Mode::empty())
    };
    let Some(anchor) = &job.anchor else {
        return open(rfs::CWD, &job.path);
    };
    let mut names = job.rel.iter();
    let last = names.next_back().ok_or(Errno::NOENT)?;
    let mut cur: Option<OwnedFd> = None;
    for name in names {
        // O_PATH: passing through needs search permission only, as a path lookup does.
        let at = cur.as_ref().map_or(anchor.as_fd(), |c| c.as_fd());
        let step = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        cur = Some(rfs::openat(at, name, step, Mode::empty())?);
    }
    let at = cur.as_ref().map_or(anchor.as_fd(), |c| c.as_fd());
    open(at, Path::new(last))
}
