//! Every file and directory agentbox writes on the host goes through here: the `--net-log`
//! file, the agent's home and state directories, `.git/hooks`, the per-run socket directory,
//! trust records. It must not be possible for the sandbox to redirect any of them.
//!
//! The rule: a path in a writable root, or in a directory the sandbox could write in this or
//! an earlier run (agent homes, runtime directories: the *untrusted areas*), is
//! attacker-controlled. So a path is resolved here one component at a time from `/`, each
//! directory opened relative to the one before (`O_PATH|O_NOFOLLOW|O_DIRECTORY`), so nothing
//! can be swapped in between. A symlink met in a directory that lies in an untrusted area is
//! refused; one outside them (the user's own `/home -> /data/home`) is followed by splicing its
//! target in and resolving that under the same rules. The last component is never followed:
//! a file is opened with `O_NOFOLLOW` and checked with `fstat` (a regular file of ours), a
//! directory is made with `mkdirat` relative to its parent and checked the same way. What
//! fails a check is refused (exit 125, with a hint), never worked around.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::Fail;
use crate::text::{printable, shell_quote};

/// How many symlinks one resolution follows (outside the untrusted areas), like the kernel's 40.
const MAX_LINKS: usize = 40;

/// How deep `remove_tree` goes: the directories it removes are agentbox's own, a few levels.
const MAX_DEPTH: usize = 64;

/// The directories in which no symlink is followed: the writable roots of this run and the
/// places the sandbox could have written before (agentbox's data directory with the agent
/// homes, the runtime directory).
#[derive(Debug, Clone, Default)]
pub struct Untrusted(Vec<PathBuf>);

impl Untrusted {
    /// `areas` as given and, where they exist, canonical (a symlink at an area itself was made
    /// by the user, not by the sandbox, which could only write beneath it).
    pub fn new(areas: impl IntoIterator<Item = PathBuf>) -> Untrusted {
        let mut v = Vec::new();
        for a in areas {
            if let Ok(c) = std::fs::canonicalize(&a) {
                v.push(c);
            }
            v.push(a);
        }
        v.sort();
        v.dedup();
        Untrusted(v)
    }

    /// Everything is an untrusted area: no symlink is followed anywhere.
    #[cfg(test)]
    pub fn everywhere() -> Untrusted {
        Untrusted(vec![PathBuf::from("/")])
    }

    fn contains(&self, dir: &Path) -> bool {
        self.0.iter().any(|a| dir.starts_with(a))
    }

    /// The deepest area that holds `path`, if any.
    fn holding(&self, path: &Path) -> Option<&Path> {
        self.0
            .iter()
            .filter(|a| path.starts_with(a))
            .max_by_key(|a| a.components().count())
            .map(PathBuf::as_path)
    }
}

/// Refuses when a path bwrap is about to mount at (or from) passes through a symlink below the
/// untrusted area that holds it: bwrap resolves mount paths by name, following symlinks, so a
/// link the sandbox planted where a protected directory was would carry a read-write pin or a
/// read-only bind to wherever it points (the user's home). Checked after the run's lock is
/// taken, when no other sandbox can change the tree; paths that do not exist are left to bwrap.
/// `seen` holds the directories already found not to be symlinks: pins share most of their
/// ancestors, and each is looked at once per launch.
pub fn no_symlink_below_area(
    path: &Path,
    areas: &Untrusted,
    seen: &mut std::collections::BTreeSet<PathBuf>,
) -> Result<()> {
    let Some(area) = areas.holding(path) else {
        return Ok(());
    };
    let Ok(rest) = path.strip_prefix(area) else {
        return Ok(());
    };
    let mut at = area.to_owned();
    for c in rest.components() {
        at.push(c);
        if seen.contains(&at) {
            continue;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(
                    &at,
                    "is a symlink where the sandbox could have put it, on the way to a path \
                     agentbox mounts",
                    &format!(
                        "look at it; remove it if you did not make it (rm {})",
                        shell_quote(at.as_os_str())
                    ),
                ));
            }
            Ok(_) => {
                seen.insert(at.clone());
            }
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// The refusal for something found where agentbox was about to write.
fn refuse(path: &Path, what: &str, hint: &str) -> anyhow::Error {
    anyhow!(Fail::hint(
        format!(
            "{}: {what}; agentbox does not write through it",
            printable(path.as_os_str())
        ),
        hint.to_owned(),
    ))
}

fn symlink_refused(path: &Path) -> anyhow::Error {
    refuse(
        path,
        "is a symlink where the sandbox (or another user) could have put it: it may point anywhere",
        &format!(
            "remove it (rm {}) or choose another path",
            shell_quote(path.as_os_str())
        ),
    )
}

/// An open directory and where it really is.
struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn open_dir_at(parent: &Dir, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        &parent.fd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The directory `path` (absolute), made where missing with `mkdir` (mode, before umask) when
/// it is `Some`. Every directory it makes is checked: a directory, ours.
fn resolve(path: &Path, areas: &Untrusted, mkdir: Option<u32>) -> Result<Dir> {
    if !path.is_absolute() {
        bail!("{}: not an absolute path", printable(path.as_os_str()));
    }
    let root = rfs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context("opening /")?;
    let mut stack = vec![Dir {
        fd: root,
        path: PathBuf::from("/"),
    }];
    let mut pending: Vec<OsString> = components(path)?;
    pending.reverse();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let here = stack.last().context("empty stack")?;
        let full = here.path.join(&name);
        let st = match rfs::statat(&here.fd, &*name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) if mkdir.is_some() => None,
            Err(e) => return Err(e).with_context(|| printable(full.as_os_str())),
        };
        let fd = match st.map(|s| FileType::from_raw_mode(s.st_mode)) {
            Some(FileType::Symlink) => {
                if areas.contains(&here.path) || !trusted_link(here, st.as_ref())? {
                    return Err(symlink_refused(&full));
                }
                links += 1;
                if links > MAX_LINKS {
                    bail!(
                        "{}: too many levels of symlinks",
                        printable(path.as_os_str())
                    );
                }
                let target = rfs::readlinkat(&here.fd, &*name, Vec::new())
                    .with_context(|| format!("reading {}", printable(full.as_os_str())))?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    stack.truncate(1);
                }
                let mut spliced = components(&target)?;
                spliced.reverse();
                pending.extend(spliced);
                continue;
            }
            Some(FileType::Directory) => open_dir_at(here, &name)
                .with_context(|| format!("opening {}", printable(full.as_os_str())))?,
            Some(_) => {
                return Err(refuse(
                    &full,
                    "is not a directory",
                    "remove it or choose another path",
                ));
            }
            None => make_dir(here, &name, &full, mkdir.unwrap_or(0o700))?,
        };
        stack.push(Dir { fd, path: full });
    }
    stack.pop().context("empty stack")
}

/// Whether a symlink outside the untrusted areas may be followed: not when another user could
/// have planted it in a directory anyone can write (`/tmp/agentbox-UID` made by someone else),
/// the rule of the kernel's `protected_symlinks`.
fn trusted_link(dir: &Dir, link: Option<&rfs::Stat>) -> Result<bool> {
    let st = rfs::fstat(&dir.fd)?;
    let link_uid = link.map_or(u32::MAX, |l| l.st_uid);
    let me = rustix::process::geteuid().as_raw();
    Ok(st.st_mode & 0o002 == 0 || link_uid == me || link_uid == st.st_uid)
}

/// The normal components of `path`, `..` kept (it is resolved against what was really opened).
fn components(path: &Path) -> Result<Vec<OsString>> {
    let mut v = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => v.push(n.to_owned()),
            Component::ParentDir => v.push(OsString::from("..")),
            Component::RootDir | Component::CurDir => {}
            Component::Prefix(_) => bail!("{}: unexpected prefix", path.display()),
        }
    }
    Ok(v)
}

/// `mkdirat` in `parent`, then the result opened without following and checked.
fn make_dir(parent: &Dir, name: &OsStr, full: &Path, mode: u32) -> Result<OwnedFd> {
    match rfs::mkdirat(&parent.fd, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => {
            return Err(e).with_context(|| format!("creating {}", printable(full.as_os_str())));
        }
    }
    let fd = open_dir_at(parent, name).map_err(|e| match e {
        Errno::LOOP | Errno::NOTDIR => refuse(
            full,
            "is not a directory (a symlink?)",
            "remove it or choose another path",
        ),
        e => anyhow!(e).context(format!("opening {}", printable(full.as_os_str()))),
    })?;
    let st = rfs::fstat(&fd)?;
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(refuse(
            full,
            "belongs to another user",
            "remove it, or run agentbox as its owner",
        ));
    }
    Ok(fd)
}

/// `mkdir -p path` (new directories get `mode`, before umask), never through a symlink inside
/// an untrusted area.
pub fn create_dir_all(path: &Path, mode: u32, areas: &Untrusted) -> Result<()> {
    resolve(path, areas, Some(mode)).map(|_| ())
}

/// `mkdir path` (its parent must exist), never through a symlink inside an untrusted area.
pub fn create_dir(path: &Path, mode: u32, areas: &Untrusted) -> Result<()> {
    let (parent, name) = split(path)?;
    let dir = resolve(parent, areas, None)?;
    make_dir(&dir, name, path, mode).map(|_| ())
}

fn split(path: &Path) -> Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => bail!("{}: not a file path", printable(path.as_os_str())),
    }
}

/// How `open_file` opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Append, creating the file (0600) if missing.
    Append,
    /// Replace the contents, creating the file (0600) if missing; its parent directories too.
    Replace,
    /// Create the file (0600), and its parent directories; refused when anything is there.
    CreateNew,
}

/// Opens `path` for writing: its last component never followed, the file checked to be a
/// regular file of ours before anything is written.
pub fn open_file(path: &Path, how: Write, areas: &Untrusted) -> Result<File> {
    let (parent, name) = split(path)?;
    let mkdir = (how != Write::Append).then_some(0o700);
    let dir = resolve(parent, areas, mkdir)?;
    let mut flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // A FIFO planted where the file was would block the open until someone reads it.
    flags |= OFlags::NONBLOCK;
    if how == Write::Append {
        flags |= OFlags::APPEND;
    }
    if how == Write::CreateNew {
        flags |= OFlags::EXCL;
    }
    let full = dir.path.join(name);
    let fd =
        rfs::openat(&dir.fd, name, flags, Mode::from_raw_mode(0o600)).map_err(|e| match e {
            Errno::LOOP => refuse(
                &full,
                "is a symlink",
                &format!(
                    "remove it (rm {}) or choose another path",
                    shell_quote(full.as_os_str())
                ),
            ),
            Errno::NXIO => refuse(&full, "is not a regular file", "choose another path"),
            Errno::EXIST => refuse(
                &full,
                "already exists",
                "look at it first; remove it to write it again",
            ),
            e => anyhow!(e).context(format!("opening {}", printable(full.as_os_str()))),
        })?;
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(refuse(
            &full,
            "is not a regular file",
            "choose another path",
        ));
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(refuse(
            &full,
            "belongs to another user",
            "choose a file of your own",
        ));
    }
    if st.st_nlink > 1 {
        // A hard link the sandbox made to a file elsewhere (the user's rc file) would be
        // written through just like a symlink.
        return Err(refuse(
            &full,
            "has other hard links",
            "remove it or choose another path",
        ));
    }
    rfs::fcntl_setfl(&fd, rfs::fcntl_getfl(&fd)? - OFlags::NONBLOCK)?;
    if how == Write::Replace {
        rfs::ftruncate(&fd, 0)?;
    }
    Ok(File::from(fd))
}

/// Replaces the contents of `path` with `bytes` (see `open_file`).
pub fn write_file(path: &Path, bytes: &[u8], areas: &Untrusted) -> Result<()> {
    use std::io::Write as _;
    let mut f = open_file(path, Write::Replace, areas)?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", printable(path.as_os_str())))
}

/// `rm -rf path` without following any symlink, whatever modes the sandbox left on what is
/// inside (a `chmod 000` directory is made ours to read again first). Its parent directories
/// are resolved with no symlink followed beneath `areas`.
pub fn remove_tree(path: &Path, areas: &Untrusted) -> Result<()> {
    let (parent, name) = split(path)?;
    let dir = resolve(parent, areas, None)?;
    remove_entry(dir.fd.as_fd(), name, 0)
        .with_context(|| format!("removing {}", printable(path.as_os_str())))
}

fn remove_entry(parent: std::os::fd::BorrowedFd<'_>, name: &OsStr, depth: usize) -> Result<()> {
    let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return match rfs::unlinkat(parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    if depth >= MAX_DEPTH {
        bail!("nested deeper than {MAX_DEPTH} directories");
    }
    // Read and write access to the directory, whatever mode it was left with: chmod through
    // an O_PATH descriptor (so a symlink swapped in cannot redirect the chmod).
    let path_fd = rfs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let via_proc = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&path_fd)
    );
    let _ = rfs::chmodat(
        rfs::CWD,
        via_proc.as_str(),
        Mode::from_raw_mode(0o700),
        AtFlags::empty(),
    );
    let fd = rfs::openat(
        &path_fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(&fd)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from(OsStr::from_bytes(n)));
        }
    }
    for n in names {
        remove_entry(fd.as_fd(), &n, depth + 1)?;
    }
    match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads a small regular file that may lie in an untrusted area (a project's config file):
/// never blocks on a FIFO planted there, refuses a device or directory, and reads at most
/// `max` bytes. With `follow` false a symlink at `path` is refused too. `None`: no file.
pub fn read_regular(path: &Path, follow: bool, max: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    let shown = printable(path.as_os_str());
    let fd = match rfs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) if !follow => {
            return Err(refuse(
                path,
                "is a symlink",
                "agentbox reads and edits only a regular file there",
            ));
        }
        Err(e) => return Err(anyhow!(e).context(format!("opening {shown}"))),
    };
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(refuse(path, "is not a regular file", "remove it"));
    }
    let mut bytes = Vec::new();
    File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {shown}"))?;
    if bytes.len() as u64 > max {
        return Err(refuse(
            path,
            &format!("is larger than {max} bytes"),
            "shorten it",
        ));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests;

/// Opens the directory `path` for reading (to lock it), resolved as everything here.
pub fn open_dir(path: &Path, areas: &Untrusted) -> Result<OwnedFd> {
    let dir = resolve(path, areas, None)?;
    rfs::openat(
        &dir.fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", printable(path.as_os_str())))
}

/// Removes `path` if it is still what bwrap leaves for a mount point: an empty directory, an
/// empty regular file of ours, or a symlink to `link_target`. Anything else stays, untouched.
/// Returns whether it was removed.
pub fn remove_if_empty(path: &Path, link_target: Option<&Path>, areas: &Untrusted) -> Result<bool> {
    let (parent, name) = split(path)?;
    let dir = resolve(parent, areas, None)?;
    let st = match rfs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e).with_context(|| printable(path.as_os_str())),
    };
    let ours = st.st_uid == rustix::process::geteuid().as_raw();
    let flags = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory if ours => AtFlags::REMOVEDIR,
        FileType::RegularFile if ours && st.st_size == 0 && st.st_nlink == 1 => AtFlags::empty(),
        FileType::Symlink
            if link_target.is_some_and(|t| {
                rfs::readlinkat(&dir.fd, name, Vec::new())
                    .is_ok_and(|l| Path::new(OsStr::from_bytes(l.as_bytes())) == t)
            }) =>
        {
            AtFlags::empty()
        }
        _ => return Ok(false),
    };
    match rfs::unlinkat(&dir.fd, name, flags) {
        Ok(()) => Ok(true),
        // Something was put in it: it is the agent's now.
        Err(Errno::NOTEMPTY | Errno::EXIST | Errno::BUSY) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", printable(path.as_os_str()))),
    }
}
