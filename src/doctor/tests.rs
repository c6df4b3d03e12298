use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};

use super::*;

fn current() -> Me {
    me().unwrap()
}

/// The unprivileged test user's name; as root, made first if it is missing (a plain `cargo
/// test` on a fresh machine). Every test that starts a sandbox as root calls this first, so
/// useradd's short-lived files in /etc never race a sandbox that is binding /etc.
fn test_user() -> String {
    static MADE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MADE.lock().unwrap_or_else(|p| p.into_inner());
    let name = std::env::var("AGENTBOX_TEST_USER").unwrap_or_else(|_| "agentbox-test".into());
    let known = |n: &str| {
        Command::new("id")
            .arg(n)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if current().uid == 0 && !known(&name) {
        let _ = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", &name])
            .status();
    }
    name
}

/// Here (Debian 12, bwrap 0.8, user namespaces on) nothing blocks `agentbox run`: the real
/// checks, trial sandboxes included, as whoever runs the tests.
#[test]
fn nothing_blocks_here() {
    test_user();
    let me = current();
    let checks = checks(None, me, &Env::read()).unwrap();
    let report = text_report(&checks, me.uid);
    println!("{report}");
    assert!(!blocked(&checks), "{report}");
    for name in [
        "bwrap",
        "user-namespaces",
        "sandbox",
        "seccomp",
        "filtered-network",
    ] {
        let c = checks.iter().find(|c| c.name == name).unwrap();
        assert_eq!(c.status, Status::Ok, "{report}");
    }
    assert_eq!(run(false, None, &Env::read()).unwrap(), ExitCode::SUCCESS);
    assert_eq!(run(true, None, &Env::read()).unwrap(), ExitCode::SUCCESS);
}

/// The same as the unprivileged test user, when the tests run as root: root passes checks that
/// users fail, and users are who run agents.
#[test]
fn nothing_blocks_here_unprivileged() {
    if current().uid != 0 {
        eprintln!("note: not root, so the unprivileged re-run is this run itself");
        return;
    }
    let name = std::env::var("AGENTBOX_TEST_USER").unwrap_or_else(|_| "agentbox-test".into());
    // A plain `cargo test` on a fresh machine: the user may be missing, and cargo's target dir
    // may lie where the user cannot enter (/root): make the one, copy the binary out of the other.
    let known = |n: &str| {
        Command::new("id")
            .arg(n)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !known(&name) {
        let _ = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", &name])
            .status();
    }
    let dir = tempfile::Builder::new()
        .prefix("agentbox-unit-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("tests");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args([format!("--reuid={name}"), format!("--regid={name}")])
        .args(["--clear-groups", "--"])
        .arg(&exe)
        .args([
            "--exact",
            "doctor::tests::nothing_blocks_here",
            "--nocapture",
        ])
        .current_dir("/")
        .output()
        .expect("setpriv (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "as {name} (create it with useradd -m {name}, and keep the test binary where it can \
         run it):\n{text}"
    );
    assert!(!text.contains("for uid 0"), "{text}");
}

#[test]
fn preflight_passes_here() {
    let bwrap = Path::new("/usr/bin/bwrap");
    preflight(bwrap, false, 0).unwrap();
    // As a user: reads the userns and AppArmor settings too.
    preflight(bwrap, false, 1000).unwrap();
    preflight(bwrap, true, 1000).unwrap();
}

#[test]
fn report_formats() {
    let checks = vec![
        Check::ok("bwrap", "/usr/bin/bwrap, bubblewrap 0.8.0"),
        Check::warn(
            "bwrap-permissions",
            "setuid",
            vec!["sudo chmod u-s /usr/bin/bwrap".into()],
        ),
        Check::fail(
            "apparmor-userns",
            "restricted",
            vec![
                "sudo tee /etc/apparmor.d/bwrap <<'EOF'\nabi <abi/4.0>,\nEOF".into(),
                "b".into(),
            ],
        ),
    ];
    assert_eq!(
        text_report(&checks, 1000),
        "[ok] bwrap: /usr/bin/bwrap, bubblewrap 0.8.0\n\
         [warn] bwrap-permissions: setuid\n  \
         fix: sudo chmod u-s /usr/bin/bwrap\n\
         [FAIL] apparmor-userns: restricted\n  \
         fix: sudo tee /etc/apparmor.d/bwrap <<'EOF'\n\
         abi <abi/4.0>,\n\
         EOF\n  \
         fix: b\n\
         \n\
         1 problem blocks `agentbox run` for uid 1000 (1 warning)\n"
    );
    assert!(
        text_report(&checks[..1], 0)
            .ends_with("nothing blocks `agentbox run` for uid 0 (0 warnings)\n")
    );
    let doc: serde_json::Value =
        serde_json::from_str(&json_report(&checks, 1000).unwrap()).unwrap();
    assert_eq!(doc["blocked"], true);
    assert_eq!(doc["uid"], 1000);
    assert_eq!(doc["checks"][0]["status"], "ok");
    assert!(doc["checks"][0].get("fix").is_none());
    assert_eq!(doc["checks"][2]["status"], "fail");
    assert_eq!(doc["checks"][2]["fix"][1], "b");
}

fn outcome(code: i32, stderr: &str) -> sandbox::Outcome {
    sandbox::Outcome {
        status: Some(ExitStatus::from_raw(code << 8)),
        stdout: String::new(),
        stderr: stderr.to_owned(),
    }
}

#[test]
fn failed_trials_carry_the_exact_fix() {
    let userns = Check::fail(
        "user-namespaces",
        "off",
        vec!["sudo sysctl -w kernel.unprivileged_userns_clone=1".into()],
    );
    let aa = Check::fail(
        "apparmor-userns",
        "restricted",
        vec!["profile".into(), "parser".into()],
    );
    let known = Known {
        userns: &userns,
        apparmor: &aa,
        cover: None,
        uid: 1000,
    };
    let c = failed(
        "sandbox",
        "does not start",
        &outcome(1, "bwrap: setting up uid map: Permission denied\n"),
        &known,
    );
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("AppArmor") && c.detail.contains("bwrap: setting up uid map"));
    assert_eq!(c.fix, ["profile", "parser"]);
    let c = failed(
        "sandbox",
        "does not start",
        &outcome(
            1,
            "bwrap: No permissions to creating new namespace, likely because...",
        ),
        &known,
    );
    assert_eq!(c.fix, ["sudo sysctl -w kernel.unprivileged_userns_clone=1"]);
    // A cause the checks above did not see: they found nothing to fix, so it is elsewhere.
    let ok = Check::ok("apparmor-userns", "absent");
    let known = Known {
        apparmor: &ok,
        ..known
    };
    let c = failed(
        "sandbox",
        "x",
        &outcome(
            1,
            "bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted",
        ),
        &known,
    );
    assert!(c.fix[0].contains("dmesg"), "{:?}", c.fix);
    // A profile was found, but whether the kernel loaded it could not be read.
    let cover = apparmor::Coverage {
        file: "/etc/apparmor.d/bwrap".into(),
        profile: "bwrap".into(),
        stock: false,
    };
    let with_cover = Known {
        cover: Some(&cover),
        ..known
    };
    let uid_map = outcome(1, "bwrap: setting up uid map: Permission denied");
    assert_eq!(
        failed("sandbox", "x", &uid_map, &with_cover).fix,
        [
            "the profile in /etc/apparmor.d/bwrap may not be loaded: sudo apparmor_parser -r \
          /etc/apparmor.d/bwrap"
        ]
    );
    // Causes no check looks at: explain's own hint.
    let c = failed(
        "sandbox",
        "x",
        &outcome(
            1,
            "bwrap: Can't mount proc on /newroot/proc: Operation not permitted",
        ),
        &known,
    );
    assert_eq!(c.fix, [Cause::ProcMount.text().1]);
    let c = failed("sandbox", "x", &outcome(1, "bwrap: something new"), &known);
    assert_eq!(c.detail, "x: bwrap: something new");
    assert!(c.fix[0].starts_with("no known fix"));
    let timed_out = sandbox::Outcome {
        status: None,
        stdout: String::new(),
        stderr: String::new(),
    };
    assert!(
        failed("sandbox", "x", &timed_out, &known)
            .detail
            .contains("no answer within 10 s")
    );
}

fn fake_bwrap(dir: &Path, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("bwrap");
    std::fs::write(&fake, format!("#!/bin/sh\n{script}")).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

/// A bwrap that fails as Ubuntu's AppArmor restriction makes it fail: the trial's failure is
/// explained, blocks, and the trials that need a sandbox are not tried.
#[test]
fn a_sandbox_that_fails_blocks() {
    let t = tempfile::tempdir().unwrap();
    let fake = fake_bwrap(
        t.path(),
        "[ \"$1\" = --version ] && { echo 'bubblewrap 0.8.0'; exit 0; }\n\
         echo 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n",
    );
    let checks = checks_of(Some(&fake));
    let get = |name: &str| checks.iter().find(|c| c.name == name).unwrap();
    let report = text_report(&checks, 0);
    assert!(blocked(&checks), "{report}");
    let sandbox = get("sandbox");
    assert_eq!(sandbox.status, Status::Fail, "{report}");
    assert!(sandbox.detail.contains("AppArmor"), "{report}");
    assert!(
        sandbox
            .detail
            .ends_with("(bwrap: setting up uid map: Permission denied)")
    );
    assert!(!sandbox.fix.is_empty(), "{report}");
    assert_eq!(get("seccomp").status, Status::Warn, "{report}");
    assert_eq!(get("filtered-network").status, Status::Warn, "{report}");

    let garbage = fake_bwrap(t.path(), "echo 'not me'\n");
    let wrong = checks_of(Some(&garbage));
    assert_eq!(wrong[0].status, Status::Fail);
    assert!(
        wrong[0].detail.contains("not a bubblewrap version"),
        "{:?}",
        wrong[0]
    );
    assert!(blocked(&wrong));
    let missing = checks_of(Some(&t.path().join("nope")));
    assert_eq!(missing[0].status, Status::Fail);
}

fn checks_of(bwrap: Option<&Path>) -> Vec<Check> {
    checks(bwrap, current(), &Env::read()).unwrap()
}
