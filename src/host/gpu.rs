//! Host facts for `--gpu`: the GPU device nodes the vendors' user-space drivers open
//! (NVIDIA: `/dev/nvidia*` and `/dev/nvidia-caps`; AMD and Intel: `/dev/dri` and AMD's
//! `/dev/kfd`) and the few sysfs directories those drivers read to find their devices (the
//! PCI device of each DRM node, `/sys/class/drm`, `/sys/dev/char`, AMD's KFD topology). The
//! driver libraries live in the system directories, which the sandbox already shows
//! read-only, and `/proc/driver/nvidia` is in the sandbox's own `/proc`. Reads, never writes;
//! `probe_in` takes the root to look under, so a test can hand it a made-up tree.

use std::fs;
use std::path::{Path, PathBuf};

/// What `--gpu` hands over, as host paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gpu {
    /// Device nodes and directories of nodes, bound with device access.
    pub nodes: Vec<PathBuf>,
    /// sysfs directories shown read-only.
    pub sys: Vec<PathBuf>,
    /// The vendors found, for the note and `doctor`.
    pub vendors: Vec<&'static str>,
}

impl Gpu {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// The host's GPUs.
pub fn probe() -> Gpu {
    probe_in(Path::new("/"))
}

/// The GPUs of the tree at `root` (`/` on a real host); the paths returned are the host's
/// (`/dev/...`), whatever `root` is.
pub fn probe_in(root: &Path) -> Gpu {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let host = |p: &Path| -> PathBuf { Path::new("/").join(p.strip_prefix(root).unwrap_or(p)) };
    let mut g = Gpu::default();
    let mut names: Vec<String> = fs::read_dir(at("/dev"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    // nvidia0, nvidiactl, nvidia-uvm, nvidia-uvm-tools, nvidia-modeset, and the nvidia-caps
    // directory (MIG); a file or a device node, never a symlink out of /dev.
    let nvidia: Vec<&String> = names.iter().filter(|n| n.starts_with("nvidia")).collect();
    for n in &nvidia {
        let p = at("/dev").join(n);
        if fs::symlink_metadata(&p).is_ok_and(|m| !m.file_type().is_symlink()) {
            g.nodes.push(host(&p));
        }
    }
    if !g.nodes.is_empty() {
        g.vendors.push("nvidia");
    }
    let dri = at("/dev/dri");
    if fs::symlink_metadata(&dri).is_ok_and(|m| m.is_dir()) {
        g.nodes.push(host(&dri));
        g.sys.extend(drm_devices(root, &at("/sys/class/drm")));
        for d in ["/sys/class/drm", "/sys/dev/char"] {
            if at(d).is_dir() {
                g.sys.push(PathBuf::from(d));
            }
        }
        g.vendors.push("dri (AMD, Intel, Mesa)");
    }
    let kfd = at("/dev/kfd");
    if fs::symlink_metadata(&kfd).is_ok_and(|m| !m.is_dir() && !m.file_type().is_symlink()) {
        g.nodes.push(host(&kfd));
        if at("/sys/class/kfd").is_dir() {
            // ROCm reads the topology here; `class/kfd/kfd` links into /sys/devices/virtual.
            g.sys.push("/sys/class/kfd".into());
            if at("/sys/devices/virtual/kfd").is_dir() {
                g.sys.push("/sys/devices/virtual/kfd".into());
            }
        }
        g.vendors.push("kfd (AMD ROCm)");
    }
    g.sys.sort();
    g.sys.dedup();
    g
}

/// The PCI device directories of the DRM nodes: `/sys/class/drm/renderD128` links to
/// `../../devices/pci0000:00/0000:00:02.0/drm/renderD128`, whose device is two levels up.
fn drm_devices(root: &Path, class: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(class) else {
        return Vec::new();
    };
    let sys_devices = root.join("sys/devices");
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Ok(real) = fs::canonicalize(e.path()) else {
            continue;
        };
        // A node's directory is DEVICE/drm/NODE; anything else (a connector such as
        // card0-HDMI-A-1 sits below its card) is covered by its card's device.
        let Some(device) = real
            .parent()
            .filter(|p| p.ends_with("drm"))
            .and_then(Path::parent)
        else {
            continue;
        };
        // Only a device under /sys/devices, and never /sys/devices itself or a whole bus root.
        if device.starts_with(&sys_devices)
            && device.components().count() > sys_devices.components().count() + 1
        {
            out.push(Path::new("/").join(device.strip_prefix(root).unwrap_or(device)));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "").unwrap();
    }

    /// A made-up host: an NVIDIA card, an Intel iGPU with a connector, AMD's KFD.
    pub(crate) fn fake_tree(root: &Path) {
        for n in [
            "nvidia0",
            "nvidiactl",
            "nvidia-uvm",
            "nvidia-caps/nvidia-cap1",
            "null",
            "sda",
            "kfd",
        ] {
            touch(&root.join("dev").join(n));
        }
        touch(&root.join("dev/dri/renderD128"));
        touch(&root.join("dev/dri/card0"));
        let pci = root.join("sys/devices/pci0000:00/0000:00:02.0/drm");
        for n in ["renderD128", "card0", "card0/card0-HDMI-A-1"] {
            fs::create_dir_all(pci.join(n)).unwrap();
        }
        fs::create_dir_all(root.join("sys/class/drm")).unwrap();
        for n in ["renderD128", "card0"] {
            symlink(
                format!("../../devices/pci0000:00/0000:00:02.0/drm/{n}"),
                root.join("sys/class/drm").join(n),
            )
            .unwrap();
        }
        symlink(
            "../../devices/pci0000:00/0000:00:02.0/drm/card0/card0-HDMI-A-1",
            root.join("sys/class/drm/card0-HDMI-A-1"),
        )
        .unwrap();
        // A link that would lead to all of /sys/devices.
        symlink("../../devices/drm/x", root.join("sys/class/drm/odd")).unwrap();
        fs::create_dir_all(root.join("sys/devices/drm/x")).unwrap();
        fs::create_dir_all(root.join("sys/dev/char")).unwrap();
        fs::create_dir_all(root.join("sys/class/kfd/kfd")).unwrap();
        fs::create_dir_all(root.join("sys/devices/virtual/kfd")).unwrap();
    }

    #[test]
    fn finds_the_nodes_and_the_sysfs_the_drivers_read() {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap();
        fake_tree(&root);
        let g = probe_in(&root);
        let paths = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(&g.nodes),
            [
                "/dev/nvidia-caps",
                "/dev/nvidia-uvm",
                "/dev/nvidia0",
                "/dev/nvidiactl",
                "/dev/dri",
                "/dev/kfd"
            ]
        );
        assert_eq!(
            paths(&g.sys),
            [
                "/sys/class/drm",
                "/sys/class/kfd",
                "/sys/dev/char",
                "/sys/devices/pci0000:00/0000:00:02.0",
                "/sys/devices/virtual/kfd",
            ]
        );
        assert_eq!(g.vendors.len(), 3);
        // Control: a tree without GPUs hands over nothing.
        let empty = tempfile::tempdir().unwrap();
        touch(&empty.path().join("dev/null"));
        assert!(probe_in(empty.path()).is_empty());
    }
}
