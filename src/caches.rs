//! `agentbox cache`: agentbox's own package caches (`DATA/agentbox/cache/NAME`, one per tool,
//! see `toolchain::CACHES`), listed with their sizes; `agentbox cache clean [NAME...]` removes
//! them. The sandbox writes these directories, so nothing here follows a symlink in them:
//! sizes come from `lstat`, removal goes through `hostfs::remove_tree`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use crate::error::Fail;
use crate::hostenv::Env;
use crate::hostfs::{self, Untrusted};
use crate::text::printable;
use crate::toolchain::CACHES;

/// How deep the size walk goes: deeper entries are not counted (the total says "at least").
const MAX_DEPTH: usize = 64;

fn base(env: &Env) -> Result<(PathBuf, PathBuf)> {
    let home = crate::host::canonical(env.home()?, "home directory")?;
    let data = env.data_home(&home).join("agentbox");
    Ok((data.join("cache"), data))
}

/// The caches that exist, by name, in `CACHES` order.
fn existing(cache: &Path) -> Vec<(&'static str, PathBuf)> {
    CACHES
        .iter()
        .map(|c| (c.name, cache.join(c.name)))
        .filter(|(_, p)| fs::symlink_metadata(p).is_ok())
        .collect()
}

/// Bytes on disk under `path`, never following a symlink; `false` when some of it could not
/// be read (the size is then a lower bound).
fn size(path: &Path, depth: usize) -> (u64, bool) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return (0, false);
    };
    let mut total = meta.blocks() * 512;
    if !meta.is_dir() {
        return (total, true);
    }
    if depth >= MAX_DEPTH {
        return (total, false);
    }
    let Ok(rd) = fs::read_dir(path) else {
        return (total, false);
    };
    let mut whole = true;
    for e in rd.flatten() {
        let (n, ok) = size(&e.path(), depth + 1);
        total += n;
        whole &= ok;
    }
    (total, whole)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{v:.1} {}", UNITS[unit]),
    }
}

fn sized(path: &Path) -> String {
    match size(path, 0) {
        (n, true) => human(n),
        (n, false) => format!("at least {}", human(n)),
    }
}

/// `agentbox cache`: each cache, its size and where it is.
pub fn list(env: &Env) -> Result<ExitCode> {
    let (cache, _) = base(env)?;
    let mut out = std::io::stdout().lock();
    let found = existing(&cache);
    if found.is_empty() {
        writeln!(out, "no caches yet in {}", printable(cache.as_os_str()))?;
        return Ok(ExitCode::SUCCESS);
    }
    for (name, path) in found {
        writeln!(
            out,
            "{name:<8} {:>12}  {}",
            sized(&path),
            printable(path.as_os_str())
        )?;
    }
    writeln!(out, "\n`agentbox cache clean [NAME...]` removes them.")?;
    Ok(ExitCode::SUCCESS)
}

/// `agentbox cache clean [NAME...]`: removes the named caches (all without names) and says
/// what it removed.
pub fn clean(names: &[String], env: &Env) -> Result<ExitCode> {
    if let Some(bad) = names.iter().find(|n| !CACHES.iter().any(|c| c.name == *n)) {
        let all: Vec<&str> = CACHES.iter().map(|c| c.name).collect();
        return Err(Fail::hint(
            format!("no cache named {:?}", printable(bad.as_ref())),
            format!("one of: {}", all.join(", ")),
        )
        .into());
    }
    let (cache, data) = base(env)?;
    let areas = Untrusted::new([data]);
    let mut out = std::io::stdout().lock();
    let mut removed = 0;
    for (name, path) in existing(&cache) {
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        let was = sized(&path);
        hostfs::remove_tree(&path, &areas)?;
        writeln!(
            out,
            "removed {name} cache ({was}): {}",
            printable(path.as_os_str())
        )?;
        removed += 1;
    }
    if removed == 0 {
        writeln!(out, "nothing to remove in {}", printable(cache.as_os_str()))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_do() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn the_size_walk_does_not_follow_links() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big");
        fs::write(&big, vec![7u8; 1 << 20]).unwrap();
        let dir = t.path().join("cache");
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&big, dir.join("link")).unwrap();
        let (n, whole) = size(&dir, 0);
        assert!(whole && n < 1 << 20, "{n}");
        assert!(size(&big, 0).0 >= 1 << 20);
    }
}
