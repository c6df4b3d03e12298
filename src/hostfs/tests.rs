use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;

/// A fresh directory (canonical) with an untrusted area `area` in it and a file `outside`
/// that stands for the user's `~/.bashrc`.
struct T {
    dir: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        T {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn p(&self, rel: &str) -> PathBuf {
        fs::canonicalize(self.dir.path()).unwrap().join(rel)
    }
    fn areas(&self) -> Untrusted {
        fs::create_dir_all(self.p("area")).unwrap();
        Untrusted::new([self.p("area")])
    }
    fn bashrc(&self) -> PathBuf {
        let p = self.p("bashrc");
        fs::write(&p, "original\n").unwrap();
        p
    }
}

fn hint_of(e: &anyhow::Error) -> Option<String> {
    crate::error::classify(e).1.map(str::to_owned)
}

#[test]
fn appends_to_a_regular_file_and_creates_a_missing_one() {
    let t = T::new();
    let areas = t.areas();
    let log = t.p("area/log");
    for line in ["one\n", "two\n"] {
        let mut f = open_file(&log, Write::Append, &areas).unwrap();
        f.write_all(line.as_bytes()).unwrap();
    }
    assert_eq!(fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    assert_eq!(
        fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn symlink_at_the_last_component_is_refused() {
    let t = T::new();
    let areas = t.areas();
    let rc = t.bashrc();
    // Control: the same path through the link is writable by a plain open.
    let log = t.p("area/log");
    symlink(&rc, &log).unwrap();
    let e = open_file(&log, Write::Append, &areas).unwrap_err();
    assert!(format!("{e:#}").contains("is a symlink"), "{e:#}");
    assert!(hint_of(&e).is_some());
    // Even outside an untrusted area: the last component is never followed.
    let e = open_file(&log, Write::Append, &Untrusted::default()).unwrap_err();
    assert!(format!("{e:#}").contains("is a symlink"), "{e:#}");
    assert_eq!(fs::read_to_string(&rc).unwrap(), "original\n");
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    assert_eq!(fs::read_to_string(&rc).unwrap(), "original\nx");
}

#[test]
fn dangling_symlink_is_refused_and_nothing_is_created() {
    let t = T::new();
    let areas = t.areas();
    let target = t.p("not-yet");
    symlink(&target, t.p("area/log")).unwrap();
    assert!(open_file(&t.p("area/log"), Write::Append, &areas).is_err());
    assert!(!target.exists());
    symlink(t.p("gone"), t.p("area/.cache")).unwrap();
    let e = create_dir_all(&t.p("area/.cache/claude"), 0o700, &areas).unwrap_err();
    assert!(format!("{e:#}").contains("symlink"), "{e:#}");
    assert!(hint_of(&e).unwrap().contains("rm "));
    assert!(!t.p("gone").exists());
}

#[test]
fn symlink_in_a_middle_component_inside_an_area_is_refused() {
    let t = T::new();
    let areas = t.areas();
    fs::create_dir(t.p("ssh")).unwrap();
    symlink(t.p("ssh"), t.p("area/.cache")).unwrap();
    let e = create_dir_all(&t.p("area/.cache/claude"), 0o700, &areas).unwrap_err();
    assert!(format!("{e:#}").contains("symlink"), "{e:#}");
    assert!(!t.p("ssh/claude").exists());
    assert!(open_file(&t.p("area/.cache/log"), Write::Append, &areas).is_err());
    assert!(write_file(&t.p("area/.cache/rec"), b"x", &areas).is_err());
    assert!(create_dir(&t.p("area/.cache/hooks"), 0o755, &areas).is_err());
    assert_eq!(fs::read_dir(t.p("ssh")).unwrap().count(), 0);
    // Control: with no untrusted area there, the same link is followed.
    create_dir_all(&t.p("area/.cache/claude"), 0o700, &Untrusted::default()).unwrap();
    assert!(t.p("ssh/claude").is_dir());
}

#[test]
fn symlink_above_an_area_is_followed() {
    let t = T::new();
    fs::create_dir_all(t.p("real/area")).unwrap();
    symlink(t.p("real"), t.p("link")).unwrap();
    // The area named through the user's own link, as a config might name it.
    let areas = Untrusted::new([t.p("link/area")]);
    create_dir_all(&t.p("link/area/a/b"), 0o700, &areas).unwrap();
    assert!(t.p("real/area/a/b").is_dir());
    // `..` is taken from what was opened, not from the text.
    create_dir_all(&t.p("link/area/a/../c"), 0o700, &areas).unwrap();
    assert!(t.p("real/area/c").is_dir());
    // A relative link inside the area is refused as well.
    symlink("../..", t.p("real/area/up")).unwrap();
    assert!(create_dir_all(&t.p("link/area/up/x"), 0o700, &areas).is_err());
    assert!(!t.p("x").exists());
}

#[test]
fn fifo_is_refused_without_blocking() {
    let t = T::new();
    let areas = t.areas();
    let fifo = t.p("area/log");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let e = open_file(&fifo, Write::Append, &areas).unwrap_err();
    assert!(format!("{e:#}").contains("not a regular file"), "{e:#}");
}

#[test]
fn directory_and_hard_link_are_refused() {
    let t = T::new();
    let areas = t.areas();
    fs::create_dir(t.p("area/log")).unwrap();
    assert!(open_file(&t.p("area/log"), Write::Append, &areas).is_err());
    let rc = t.bashrc();
    fs::hard_link(&rc, t.p("area/log2")).unwrap();
    let e = open_file(&t.p("area/log2"), Write::Append, &areas).unwrap_err();
    assert!(format!("{e:#}").contains("hard links"), "{e:#}");
    assert_eq!(fs::read_to_string(&rc).unwrap(), "original\n");
}

#[test]
fn a_file_of_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let t = T::new();
    let areas = t.areas();
    let log = t.p("area/log");
    fs::write(&log, "").unwrap();
    // Control: ours is accepted.
    open_file(&log, Write::Append, &areas).unwrap();
    std::os::unix::fs::chown(&log, Some(65534), None).unwrap();
    let e = open_file(&log, Write::Append, &areas).unwrap_err();
    assert!(format!("{e:#}").contains("another user"), "{e:#}");
    fs::create_dir(t.p("area/d")).unwrap();
    std::os::unix::fs::chown(t.p("area/d"), Some(65534), None).unwrap();
    let e = create_dir(&t.p("area/d"), 0o700, &areas).unwrap_err();
    assert!(format!("{e:#}").contains("another user"), "{e:#}");
}

#[test]
fn replace_truncates_and_makes_parents() {
    let t = T::new();
    let areas = t.areas();
    let rec = t.p("area/trusted/abc");
    write_file(&rec, b"long contents\n", &areas).unwrap();
    write_file(&rec, b"short\n", &areas).unwrap();
    assert_eq!(fs::read_to_string(&rec).unwrap(), "short\n");
}

#[test]
fn remove_tree_whatever_the_modes_and_never_through_links() {
    let t = T::new();
    let areas = t.areas();
    let keep = t.bashrc();
    let run = t.p("area/net-1");
    fs::create_dir_all(run.join("a/b/c")).unwrap();
    fs::write(run.join("a/b/c/f"), "x").unwrap();
    symlink(&keep, run.join("a/link")).unwrap();
    symlink(t.p(""), run.join("a/dirlink")).unwrap();
    fs::set_permissions(run.join("a/b/c"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(run.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
    fs::set_permissions(run.join("a"), fs::Permissions::from_mode(0o000)).unwrap();
    remove_tree(&run, &areas).unwrap();
    assert!(!run.exists());
    assert_eq!(fs::read_to_string(&keep).unwrap(), "original\n");
    // Gone already is not an error.
    remove_tree(&run, &areas).unwrap();
}

#[test]
fn a_symlink_another_user_left_in_a_world_writable_dir_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to lchown");
        return;
    }
    let t = T::new();
    let tmp = t.p("tmp");
    fs::create_dir(&tmp).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(t.p("target")).unwrap();
    symlink(t.p("target"), tmp.join("ours")).unwrap();
    symlink(t.p("target"), tmp.join("theirs")).unwrap();
    std::os::unix::fs::lchown(tmp.join("theirs"), Some(65534), Some(65534)).unwrap();
    // Control: our own link there is followed.
    create_dir_all(&tmp.join("ours/a"), 0o700, &Untrusted::default()).unwrap();
    assert!(t.p("target/a").is_dir());
    let e = create_dir_all(&tmp.join("theirs/b"), 0o700, &Untrusted::default()).unwrap_err();
    assert!(format!("{e:#}").contains("symlink"), "{e:#}");
    assert!(!t.p("target/b").exists());
}

#[test]
fn read_regular_never_blocks_nor_reads_the_endless() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    assert_eq!(read_regular(&file, true, 16).unwrap(), None);
    fs::write(&file, "net = 1").unwrap();
    assert_eq!(read_regular(&file, false, 16).unwrap().unwrap(), b"net = 1");
    // Too large.
    assert!(read_regular(&file, true, 3).is_err());
    // A symlink: followed only when asked.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    assert!(read_regular(&link, true, 16).unwrap().is_some());
    assert!(read_regular(&link, false, 16).is_err());
    // A FIFO is refused at once (a plain read would wait for a writer forever), and so is a
    // device behind a link.
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    assert!(read_regular(&fifo, true, 16).is_err());
    let zero = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    assert!(read_regular(&zero, true, 16).is_err());
}
