//! Leftovers named after the agentbox process that made them (`PREFIX-PID`): a cgroup, a socket
//! directory. A SIGKILLed agentbox cannot remove its own, so the next run sweeps them (with
//! `hostfs::remove_tree`, which copes with whatever modes were left inside). Only names are
//! read here: nothing is followed or opened.

use std::path::{Path, PathBuf};

/// The entries of `parent` named `PREFIX-PID` whose process is gone. An entry whose PID has
/// been reused stays until that process ends too: left behind a while, never removed early.
pub(crate) fn orphans(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| {
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix(prefix));
            pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists())
        })
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_of_dead_processes() {
        let dir = std::env::temp_dir().join(format!("agentbox-stale-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        // pid_max is at most 2^22, so this PID cannot exist.
        for name in [
            format!("net-{me}"),
            "net-99999999".into(),
            "other-99999999".into(),
        ] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
        }
        let found = orphans(&dir, "net-");
        std::fs::remove_dir_all(&dir).unwrap();
        // The live process's entry (the positive control) and the other prefix stay.
        assert_eq!(found, vec![dir.join("net-99999999")]);
    }
}
