//! Ubuntu's AppArmor restriction of unprivileged user namespaces (23.10 and later): whether it
//! is on, whether an AppArmor profile lets this bwrap create user namespaces anyway, and the
//! profile that does, written out in full with the commands that install it. Reads
//! /etc/apparmor.d and, where it may, the kernel's list of loaded profiles; writes nothing.

use std::fs;
use std::path::{Path, PathBuf};

use super::kernel::{self, AA_RESTRICT};
use super::{Check, sudo};

const DIR: &str = "/etc/apparmor.d";
const LOADED: &str = "/sys/kernel/security/apparmor/profiles";
/// Ubuntu's own profile for bwrap (shipped with AppArmor 4, enforced from 25.04): bwrap may
/// create user namespaces, but what runs inside gets no capabilities at all.
pub(super) const STOCK: &str = "bwrap-userns-restrict";

/// An AppArmor profile that attaches to bwrap and allows user namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Coverage {
    pub file: PathBuf,
    pub profile: String,
    /// Ubuntu's stock profile, which denies capabilities to bwrap's children.
    pub stock: bool,
}

/// Splits a profile line into words; a double-quoted word may hold spaces.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in line.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The profile in `text` that attaches to `bwrap` and allows user namespaces: its name, and
/// whether it is Ubuntu's stock one. Pure.
pub(super) fn covers(text: &str, bwrap: &Path) -> Option<(String, bool)> {
    let target = bwrap.to_str()?;
    let rules = text.lines().map(str::trim).filter(|l| !l.starts_with('#'));
    let userns = rules.clone().any(|l| {
        let w = words(l.trim_end_matches(','));
        w.iter().any(|w| w == "userns" || w == "userns,") && !w.iter().any(|w| w == "deny")
    });
    if !userns {
        return None;
    }
    rules.map(words).find_map(|w| {
        let (name, attach) = match w.first().map(String::as_str) {
            Some("profile") => {
                let name = w.get(1)?;
                match w.get(2) {
                    Some(a) if a.starts_with('/') => (name.clone(), a.clone()),
                    _ => (name.clone(), name.clone()),
                }
            }
            Some(p) if p.starts_with('/') => (p.to_owned(), p.to_owned()),
            _ => return None,
        };
        (attach == target).then(|| (name, text.contains("unpriv_bwrap")))
    })
}

/// The name agentbox gives bwrap's profile: `bwrap` for /usr/bin/bwrap (as Ubuntu documents
/// it), else AppArmor's own convention for a path (`usr.local.bin.bwrap`).
pub(super) fn profile_name(bwrap: &Path) -> String {
    if bwrap == Path::new("/usr/bin/bwrap") {
        return "bwrap".to_owned();
    }
    bwrap
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '.',
            c if c.is_ascii_alphanumeric() || "._-".contains(c) => c,
            _ => '_',
        })
        .collect()
}

/// A path as an AppArmor attachment: quoted when it has spaces, globbing characters escaped.
fn attachment(bwrap: &Path) -> String {
    let p = bwrap.to_string_lossy();
    let mut out = String::new();
    for c in p.chars() {
        if "*?[]{}^\\\"".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    match out.chars().any(char::is_whitespace) {
        true => format!("\"{out}\""),
        false => out,
    }
}

/// The full profile that lets this bwrap, and only it, create user namespaces.
pub(super) fn profile_text(bwrap: &Path) -> String {
    let name = profile_name(bwrap);
    let attach = attachment(bwrap);
    format!(
        "abi <abi/4.0>,\n\
         include <tunables/global>\n\
         \n\
         # Lets {attach} create user namespaces under Ubuntu's restriction of unprivileged ones\n\
         # (kernel.apparmor_restrict_unprivileged_userns), for agentbox.\n\
         profile {name} {attach} flags=(unconfined) {{\n  \
           userns,\n\
         \n  \
           # Site-specific additions and overrides. See local/README for details.\n  \
           include if exists <local/{name}>\n\
         }}\n"
    )
}

/// The commands that install and load the profile.
pub(super) fn install_fix(bwrap: &Path, uid: u32) -> Vec<String> {
    let s = sudo(uid);
    let file = Path::new(DIR).join(profile_name(bwrap));
    vec![
        format!(
            "{s}tee {} >/dev/null <<'EOF'\n{}EOF",
            file.display(),
            profile_text(bwrap)
        ),
        format!("{s}apparmor_parser -r {}", file.display()),
    ]
}

/// The commands that take Ubuntu's stock bwrap profile out, for good.
pub(super) fn disable_stock_fix(file: &Path, uid: u32) -> Vec<String> {
    let s = sudo(uid);
    vec![
        format!("{s}ln -sf {} {DIR}/disable/", file.display()),
        format!("{s}apparmor_parser -R {}", file.display()),
    ]
}

/// The profile under /etc/apparmor.d (not disabled) that lets `bwrap` create user namespaces.
/// The likely files first: this is on `agentbox run`'s path when the restriction is on.
pub(super) fn coverage(bwrap: &Path) -> Option<Coverage> {
    let dir = Path::new(DIR);
    let mut likely: Vec<PathBuf> = [
        profile_name(bwrap).as_str(),
        "bwrap",
        STOCK,
        "usr.bin.bwrap",
    ]
    .iter()
    .map(|n| dir.join(n))
    .collect();
    likely.dedup();
    let rest = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !likely.contains(p));
    likely.clone().into_iter().chain(rest).find_map(|file| {
        let disabled = dir.join("disable").join(file.file_name()?).exists();
        if disabled || !fs::metadata(&file).is_ok_and(|m| m.is_file() && m.len() < 1 << 20) {
            return None;
        }
        let (profile, stock) = covers(&fs::read_to_string(&file).ok()?, bwrap)?;
        Some(Coverage {
            file,
            profile,
            stock,
        })
    })
}

/// Whether the kernel has the profile loaded; None where the list cannot be read (it takes
/// privileges on most systems).
pub(super) fn loaded(profile: &str) -> Option<bool> {
    let list = fs::read_to_string(LOADED).ok()?;
    let prefix = format!("{profile} (");
    Some(list.lines().any(|l| l.starts_with(&prefix)))
}

/// Whether the restriction stops this bwrap, for `preflight`: file reads only.
pub(super) fn blocks(bwrap: &Path, privileged: bool) -> bool {
    let restrict = kernel::sysctl(AA_RESTRICT);
    // Only look for a profile when it can matter.
    let covered = || coverage(bwrap).is_some_and(|c| loaded(&c.profile) != Some(false));
    kernel::apparmor_blocks(restrict, privileged, false) && !covered()
}

/// The doctor's check, and the profile found (the filtered-network check reads it).
pub(super) fn check(bwrap: &Path, uid: u32, setuid: bool) -> (Check, Option<Coverage>) {
    let restrict = kernel::sysctl(AA_RESTRICT);
    let cover = restrict.filter(|&r| r != 0).and_then(|_| coverage(bwrap));
    let state = cover.as_ref().and_then(|c| loaded(&c.profile));
    (
        judge(bwrap, uid, setuid, restrict, cover.as_ref(), state),
        cover,
    )
}

/// The check from what was read: the setting, the profile that covers bwrap and whether the
/// kernel has it loaded (None: unknown). Pure but for the sysctl files named in the fix.
fn judge(
    bwrap: &Path,
    uid: u32,
    setuid: bool,
    restrict: Option<u64>,
    cover: Option<&Coverage>,
    loaded: Option<bool>,
) -> Check {
    let name = "apparmor-userns";
    let key = "kernel.apparmor_restrict_unprivileged_userns";
    let restrict = match restrict {
        None => {
            let detail = format!("no AppArmor restriction of user namespaces ({key} absent)");
            return Check::ok(name, detail);
        }
        Some(0) => {
            let detail = format!("{key} = 0: AppArmor does not restrict user namespaces");
            return Check::ok(name, detail);
        }
        Some(r) => r,
    };
    let shown = bwrap.display();
    // Who the restriction spares, and how a problem is graded for them.
    let exempt = match (setuid, uid) {
        (true, _) => Some("a setuid bwrap is exempt"),
        (false, 0) => Some("root is exempt, but every other user's sandbox fails"),
        _ => None,
    };
    let grade = |detail: String, fix: Vec<String>| match exempt {
        Some(e) if setuid => Check::ok(name, format!("{detail}; {e}")),
        Some(e) => Check::warn(name, format!("{detail}: {e}"), fix),
        None => Check::fail(name, detail, fix),
    };
    match cover {
        Some(c) if loaded == Some(false) => grade(
            format!(
                "{key} = {restrict}; {} has the profile {} for {shown}, but it is not loaded",
                c.file.display(),
                c.profile
            ),
            vec![format!(
                "{}apparmor_parser -r {}",
                sudo(uid),
                c.file.display()
            )],
        ),
        Some(c) => {
            let state = match loaded {
                Some(_) => "loaded".to_owned(),
                None => format!("whether it is loaded cannot be read as uid {uid}"),
            };
            let stock = match c.stock {
                true => "; Ubuntu's stock profile: what runs inside gets no capabilities",
                false => "",
            };
            Check::ok(
                name,
                format!(
                    "{key} = {restrict}, and the AppArmor profile {} in {} lets {shown} create \
                     user namespaces ({state}){stock}",
                    c.profile,
                    c.file.display()
                ),
            )
        }
        None => {
            let mut fix = vec![format!(
                "either let {shown} alone create user namespaces, with this AppArmor profile:"
            )];
            fix.extend(install_fix(bwrap, uid));
            fix.push("or lift the restriction for every program:".to_owned());
            fix.extend(kernel::sysctl_fix(key, "0", uid));
            let mut detail = format!(
                "{key} = {restrict} and no AppArmor profile lets {shown} create user namespaces"
            );
            if exempt.is_none() {
                detail
                    .push_str(": every sandbox fails with `setting up uid map: Permission denied`");
            }
            grade(detail, fix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UBUNTU_STOCK: &str = "abi <abi/4.0>,\ninclude <tunables/global>\n\
        profile bwrap /usr/bin/bwrap flags=(attach_disconnected,mediate_deleted) {\n  \
        allow capability,\n  allow userns,\n  allow pix /** -> &bwrap//&unpriv_bwrap,\n}\n\
        profile unpriv_bwrap flags=(attach_disconnected,mediate_deleted) {\n  \
        allow userns,\n  audit deny capability,\n}\n";

    #[test]
    fn finds_profiles_for_bwrap() {
        let usr = Path::new("/usr/bin/bwrap");
        let ours = profile_text(usr);
        assert_eq!(covers(&ours, usr), Some(("bwrap".to_owned(), false)));
        assert_eq!(covers(UBUNTU_STOCK, usr), Some(("bwrap".to_owned(), true)));
        // Another path, the old syntax, no userns rule, a denied one, a comment.
        assert_eq!(covers(&ours, Path::new("/usr/local/bin/bwrap")), None);
        let old = "#include <tunables/global>\n/usr/bin/bwrap flags=(unconfined) {\n  userns,\n}\n";
        assert_eq!(covers(old, usr), Some(("/usr/bin/bwrap".to_owned(), false)));
        let none = "profile bwrap /usr/bin/bwrap flags=(unconfined) {\n}\n";
        assert_eq!(covers(none, usr), None);
        let denied = "profile bwrap /usr/bin/bwrap {\n  deny userns,\n}\n";
        assert_eq!(covers(denied, usr), None);
        let commented = "# profile bwrap /usr/bin/bwrap {\n  userns,\n}\n";
        assert_eq!(covers(commented, usr), None);
        let quoted = "profile \"my bwrap\" \"/opt/my tools/bwrap\" {\n  userns,\n}\n";
        assert_eq!(
            covers(quoted, Path::new("/opt/my tools/bwrap")),
            Some(("my bwrap".to_owned(), false))
        );
    }

    #[test]
    fn writes_the_profile_for_the_bwrap_found() {
        let usr = Path::new("/usr/bin/bwrap");
        assert_eq!(
            profile_text(usr),
            "abi <abi/4.0>,\n\
             include <tunables/global>\n\
             \n\
             # Lets /usr/bin/bwrap create user namespaces under Ubuntu's restriction of unprivileged ones\n\
             # (kernel.apparmor_restrict_unprivileged_userns), for agentbox.\n\
             profile bwrap /usr/bin/bwrap flags=(unconfined) {\n  \
               userns,\n\
             \n  \
               # Site-specific additions and overrides. See local/README for details.\n  \
               include if exists <local/bwrap>\n\
             }\n"
        );
        let local = Path::new("/usr/local/bin/bwrap");
        assert_eq!(profile_name(local), "usr.local.bin.bwrap");
        let text = profile_text(local);
        assert!(
            text.contains("profile usr.local.bin.bwrap /usr/local/bin/bwrap flags=(unconfined) {")
        );
        assert!(text.contains("include if exists <local/usr.local.bin.bwrap>"));
        assert_eq!(
            covers(&text, local),
            Some(("usr.local.bin.bwrap".to_owned(), false))
        );
        let odd = Path::new("/opt/my tools/bw*rap");
        assert!(profile_text(odd).contains(" \"/opt/my tools/bw\\*rap\" flags="));
        let fix = install_fix(usr, 1000);
        assert_eq!(
            fix[0],
            format!(
                "sudo tee /etc/apparmor.d/bwrap >/dev/null <<'EOF'\n{}EOF",
                profile_text(usr)
            )
        );
        assert_eq!(fix[1], "sudo apparmor_parser -r /etc/apparmor.d/bwrap");
        assert_eq!(
            install_fix(usr, 0)[1],
            "apparmor_parser -r /etc/apparmor.d/bwrap"
        );
    }

    #[test]
    fn judges_the_restriction() {
        let usr = Path::new("/usr/bin/bwrap");
        let ours = Coverage {
            file: "/etc/apparmor.d/bwrap".into(),
            profile: "bwrap".into(),
            stock: false,
        };
        let status = |uid, setuid, restrict, cover: Option<&Coverage>, loaded| {
            judge(usr, uid, setuid, restrict, cover, loaded).status
        };
        use crate::doctor::Status::*;
        assert_eq!(status(1000, false, None, None, None), Ok);
        assert_eq!(status(1000, false, Some(0), None, None), Ok);
        assert_eq!(status(1000, false, Some(1), None, None), Fail);
        assert_eq!(status(0, false, Some(1), None, None), Warn);
        assert_eq!(status(1000, true, Some(1), None, None), Ok);
        assert_eq!(status(1000, false, Some(1), Some(&ours), None), Ok);
        assert_eq!(status(1000, false, Some(1), Some(&ours), Some(true)), Ok);
        assert_eq!(status(1000, false, Some(1), Some(&ours), Some(false)), Fail);
        assert_eq!(status(0, false, Some(1), Some(&ours), Some(false)), Warn);
        // The fix: the profile in full with the commands that load it, then the sysctl.
        let c = judge(usr, 1000, false, Some(1), None, None);
        assert!(
            c.detail.contains("setting up uid map: Permission denied"),
            "{}",
            c.detail
        );
        assert_eq!(c.fix[1..3], install_fix(usr, 1000)[..]);
        assert!(c.fix[1].contains("profile bwrap /usr/bin/bwrap flags=(unconfined) {"));
        assert_eq!(c.fix[3], "or lift the restriction for every program:");
        assert_eq!(
            c.fix[4],
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
        );
        let c = judge(usr, 1000, false, Some(1), Some(&ours), Some(false));
        assert_eq!(c.fix, ["sudo apparmor_parser -r /etc/apparmor.d/bwrap"]);
    }
}
