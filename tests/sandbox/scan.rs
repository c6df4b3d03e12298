//! The secret and runs-later scan against what an earlier run can leave behind: each attack in
//! two runs (plant inside, exploit in the next), as root and as the unprivileged user, with
//! the control that shows the attack would work without the protection.

use std::fs;
use std::path::Path;

use crate::harness::{World, current_uid, each_user};

/// The deep directory a run builds: 1100 levels of `aaaa/` (5,500 bytes, past PATH_MAX), made
/// with relative `mkdir`/`cd -P` (a logical `cd` builds the full path), as an agent would.
const DEEP_LEVELS: usize = 1100;

fn descend(make: bool) -> String {
    let step = if make {
        "mkdir aaaa && cd -P aaaa"
    } else {
        "cd -P aaaa"
    };
    format!(
        "i=0; while [ $i -lt {DEEP_LEVELS} ]; do {step} 2>/dev/null || exit 3; i=$((i+1)); done"
    )
}

fn unprivileged(w: &World) -> bool {
    w.user.is_some() || current_uid() != 0
}

#[test]
fn a_directory_made_unreadable_refuses_the_next_run() {
    each_user(|w| {
        // Run 1, a normal tree: the agent hides a .env from the next scan.
        let out = w
            .sh(
                &[],
                "mkdir d && echo SECRET=1 > d/.env && chmod 000 d && echo planted",
            )
            .ok();
        assert!(out.contains("planted"), "{out}");
        // Run 2 would chmod it back and read the .env.
        let steal = "chmod 755 d 2>/dev/null; cat d/.env 2>/dev/null; echo end";
        let out = w.sh(&[], steal);
        if unprivileged(w) {
            assert_eq!(out.code(), 125, "{}", out.stdout());
            let err = out.stderr();
            assert!(err.contains("/d") && err.contains("cannot open"), "{err}");
            assert!(
                err.contains("--hide d/") && err.contains("chmod u+rx"),
                "{err}"
            );
            assert!(!out.stdout().contains("SECRET"));
        } else {
            // Root reads every directory, so its scan saw the .env and masked it.
            let s = out.ok();
            assert!(s.contains("end") && !s.contains("SECRET"), "{s}");
            fs::set_permissions(
                w.project.join("d"),
                std::os::unix::fs::PermissionsExt::from_mode(0o000),
            )
            .unwrap();
        }
        // Hidden whole, the run starts, and the directory shows nothing.
        let s = w.sh(&["--hide", "d/"], steal).ok();
        assert!(s.contains("end") && !s.contains("SECRET"), "{s}");
        // The control: without the sandbox the same uid gets the secret back.
        let s = w.host_sh("chmod 755 d; cat d/.env").stdout();
        assert_eq!(s, "SECRET=1\n");
    });
}

#[test]
fn a_path_deeper_than_path_max_is_read_to_the_bottom() {
    each_user(|w| {
        // Run 1 builds a tree deeper than PATH_MAX.
        let out = w
            .sh(
                &[],
                &format!("mkdir deep && cd deep && {}; echo built", descend(true)),
            )
            .ok();
        assert!(out.contains("built"), "{out}");
        // A deep tree with nothing to protect in it still runs (the control).
        assert_eq!(w.sh(&[], "echo started").ok(), "started\n");
        // Run 2 plants a .env at the bottom.
        let plant = format!(
            "cd deep && {} && echo SECRET=1 > .env && echo planted",
            descend(false)
        );
        assert!(w.sh(&[], &plant).ok().contains("planted"));
        // Run 3 is refused: the .env is found but cannot be masked that deep.
        let read = format!(
            "(cd deep && {} && cat .env) 2>/dev/null; echo end",
            descend(false)
        );
        let out = w.sh(&[], &read);
        assert_eq!(out.code(), 125, "{}", out.stdout());
        let err = out.stderr();
        assert!(
            err.contains("PATH_MAX") && err.contains("--hide deep/"),
            "{err}"
        );
        // Hidden whole, it starts, and the deep part shows nothing.
        let s = w.sh(&["--hide", "deep/"], &read).ok();
        assert!(s.contains("end") && !s.contains("SECRET"), "{s}");
        // The control: the secret is there to read without the sandbox.
        let s = w
            .host_sh(&format!("cd deep && {} && cat .env", descend(false)))
            .stdout();
        assert_eq!(s, "SECRET=1\n");
    });
}

#[test]
fn a_planted_cachedir_tag_does_not_unprotect_its_directory() {
    each_user(|w| {
        w.write("home/src/project/sub/.envrc", "export A=1\n");
        w.write("home/src/project/plain/.envrc", "export A=1\n");
        w.write("home/src/project/sub/.vscode/tasks.json", "{}\n");
        // Run 1 marks sub/ as a cache (the cross-tool convention).
        let out = w
            .sh(
                &[],
                "printf 'Signature: 8a477f597d28d172789f06886806bc55' > sub/CACHEDIR.TAG && \
                 echo planted",
            )
            .ok();
        assert!(out.contains("planted"), "{out}");
        // Run 2 tries to plant commands the host runs later.
        let out = w
            .sh(
                &[],
                "echo evil >> sub/.envrc && echo wrote-envrc; \
                 echo evil > sub/.vscode/tasks.json && echo wrote-vscode; \
                 echo evil >> plain/.envrc && echo wrote-plain; \
                 echo ok > sub/other && echo wrote-other; true",
            )
            .ok();
        // The control: the directory itself is writable.
        assert!(out.contains("wrote-other"), "{out}");
        for bad in ["wrote-envrc", "wrote-vscode", "wrote-plain"] {
            assert!(!out.contains(bad), "{bad}: {out}");
        }
        assert_eq!(
            fs::read_to_string(w.project.join("sub/.envrc")).unwrap(),
            "export A=1\n"
        );
    });
}

#[test]
fn a_hard_link_to_a_secret_is_masked() {
    each_user(|w| {
        w.write("home/src/project/.env", "SECRET=1\n");
        // Run 1, with masking off, links the secret under an innocent name.
        let out = w
            .sh(&["--no-hide-env"], "ln .env notes.txt && echo linked")
            .ok();
        assert!(out.contains("linked"), "{out}");
        // Run 2 reads it by that name.
        let s = w.sh(&[], "cat notes.txt; echo end").ok();
        assert_eq!(s, "end\n");
        // The control: the link holds the secret.
        let s = w.sh(&["--no-hide-env"], "cat notes.txt").ok();
        assert_eq!(s, "SECRET=1\n");
    });
}

#[test]
fn names_in_any_case_and_keys_by_content() {
    let bundle = fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")
        .expect("the test needs the system CA bundle, /etc/ssl/certs/ca-certificates.crt");
    each_user(|w| {
        let p = "home/src/project";
        w.write(&format!("{p}/.ENV"), "UPPER_SECRET=1\n");
        w.write(&format!("{p}/ops/.kube/config"), "token: KUBE_SECRET\n");
        w.write(
            &format!("{p}/venv/lib/python3/site-packages/certifi/cacert.pem"),
            &bundle,
        );
        w.write(
            &format!("{p}/certs/server.pem"),
            "-----BEGIN PRIVATE KEY-----\nKEY_SECRET\n-----END PRIVATE KEY-----\n",
        );
        let script = "cat .ENV ops/.kube/config certs/server.pem 2>/dev/null; \
             grep -c 'BEGIN CERTIFICATE' venv/lib/python3/site-packages/certifi/cacert.pem";
        let s = w.sh(&[], script).ok();
        assert!(!s.contains("SECRET"), "{s}");
        // A public CA bundle stays readable: TLS clients need it.
        let certs: usize = s.trim().parse().unwrap();
        assert!(certs > 10, "{s}");
        // The control: unmasked, all three are there.
        let s = w.sh(&["--no-hide-env"], script).ok();
        for secret in ["UPPER_SECRET", "KUBE_SECRET", "KEY_SECRET"] {
            assert!(s.contains(secret), "{secret}: {s}");
        }
    });
}

#[test]
fn masked_system_secrets_are_unreadable_as_on_the_host() {
    each_user(|w| {
        let s = w
            .sh(
                &[],
                "[ -r /etc/shadow ] && echo shadow-readable || echo shadow-unreadable; \
                 cat /etc/shadow 2>/dev/null | head -c 1 | wc -c; \
                 [ -r /etc/passwd ] && echo passwd-readable; \
                 ls -A /etc/ssl/private 2>/dev/null | wc -l",
            )
            .ok();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines,
            ["shadow-unreadable", "0", "passwd-readable", "0"],
            "{s}"
        );
    });
    // The control: on the host root reads both.
    if current_uid() == 0 {
        assert!(fs::File::open("/etc/shadow").is_ok());
        let private = Path::new("/etc/ssl/private");
        if private.is_dir() {
            assert!(fs::read_dir(private).unwrap().next().is_some());
        }
    }
}

/// Installed packages ship hook-framework and editor directories that no host tool obeys
/// there: they are not locked (nor pinned with every directory above them), so `npm ci` can
/// remove `node_modules`. Control: the project's own `.husky/` stays read-only. (Secrets in
/// packages are still masked: `pruned_names_do_not_unmask_secrets`.)
#[test]
fn installed_packages_can_be_removed() {
    each_user(|w| {
        w.write("home/src/project/.husky/pre-commit", "npm test\n");
        w.write("home/src/project/node_modules/foo/.husky/pre-commit", "x\n");
        w.write(
            "home/src/project/node_modules/foo/.vscode/settings.json",
            "{}\n",
        );
        let out = w
            .sh(
                &[],
                "echo evil >> .husky/pre-commit && echo wrote-husky; \
                 rm -rf node_modules && echo removed; true",
            )
            .ok();
        assert!(out.contains("removed"), "{out}");
        assert!(
            !out.contains("PKG_SECRET") && !out.contains("wrote-husky"),
            "{out}"
        );
        assert!(!w.project.join("node_modules/foo/.env").exists() || out.contains("removed"));
    });
}

/// A secret known by its directory's name (`.kube/config`) cannot be unmasked for the next run
/// by renaming its directory: the directory is pinned. Control: the same rename outside.
#[test]
fn a_secret_known_by_its_directory_cannot_be_renamed_out_of_its_mask() {
    each_user(|w| {
        w.write(
            "home/src/project/deploy/.kube/config",
            "token: KUBE_SECRET\n",
        );
        let out = w
            .sh(
                &[],
                "cat deploy/.kube/config; mv deploy/.kube deploy/kube2 && echo moved; true",
            )
            .ok();
        assert!(
            !out.contains("KUBE_SECRET") && !out.contains("moved"),
            "{out}"
        );
        let out = w
            .sh(
                &[],
                "cat deploy/kube2/config deploy/.kube/config 2>&1; true",
            )
            .ok();
        assert!(!out.contains("KUBE_SECRET"), "{out}");
        // Control: outside the sandbox the rename works, and unmasks it by name.
        let st = std::process::Command::new("mv")
            .arg(w.project.join("deploy/.kube"))
            .arg(w.project.join("deploy/kube2"))
            .status()
            .unwrap();
        assert!(st.success());
        let out = w.sh(&[], "cat deploy/kube2/config").ok();
        assert!(out.contains("KUBE_SECRET"), "{out}");
    });
}
