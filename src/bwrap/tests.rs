//! Planner tests: `Policy` + `HostFacts` (made up, no I/O) -> whole argv.

use super::*;
use crate::host::git::Refusal;
use crate::host::{Agent, Bwrap, Candidate, GitRepo, Project, Root, System, User};
use crate::hostenv::Env;
use crate::policy::{Access, BroadProject, EnvPass, Home, Secrets};
use crate::seccomp;
use crate::secrets::{Found, Kind};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn policy(command: &[&str]) -> Policy {
    Policy {
        project: None,
        broad_project: BroadProject::Refused,
        net: NetMode::None,
        filter: Default::default(),
        secrets: Secrets::Hidden,
        hide: vec![],
        unhide: vec![],
        extra: vec![],
        env: vec![],
        bwrap: None,
        allow: seccomp::Allow::default(),
        bind_self: false,
        limits: Default::default(),
        profile: Default::default(),
        home: Home::Empty,
        handed: vec![],
        notes: vec![],
        command: command.iter().map(OsString::from).collect(),
        audit_json: None,
        toolchains: crate::policy::Toolchains::Off,
        credentials: vec![],
        ssh_filter: None,
        docker_filtered: false,
        gpu: false,
        ports: Vec::new(),
    }
}

fn found(path: &str, kind: Kind, why: &str) -> Found {
    Found {
        path: path.into(),
        kind,
        why: why.into(),
    }
}

fn exe(path: &str) -> Candidate {
    Candidate {
        path: path.into(),
        canonical: path.into(),
        executable: true,
    }
}

fn facts() -> HostFacts {
    HostFacts {
        user: User {
            env: Env::new(
                vec![
                    ("PATH".into(), "/usr/bin:/bin".into()),
                    ("HOME".into(), "/home/u".into()),
                    ("TERM".into(), "xterm".into()),
                    ("LC_ALL".into(), "C".into()),
                    ("AWS_SECRET_ACCESS_KEY".into(), "hunter2".into()),
                    ("TOKEN".into(), "t0k3n".into()),
                ],
                Path::new("/home/u/p/src"),
            ),
            git_config: vec![("/home/u/.gitconfig".into(), "/home/u/.gitconfig".into())],
            ..User::fixture("/home/u/p/src")
        },
        system: System {
            resolv_conf: Some("/run/systemd/resolve/stub-resolv.conf".into()),
            ..System::fixture()
        },
        project: Project {
            roots: vec![Root {
                secrets: vec![found("/home/u/p/a/.env", Kind::File, "dotenv")],
                runs_later: vec![found("/home/u/p/.envrc", Kind::File, "direnv")],
                git: vec![GitRepo {
                    dot_git: "/home/u/p/.git".into(),
                    dot_git_kind: Kind::Dir,
                    git_dir: Some("/home/u/p/.git".into()),
                    linked_common: None,
                    config_paths: vec![],
                    anomalies: vec![],
                    warnings: vec![],
                    control_absent: vec![],
                    entries: vec![
                        ("/home/u/p/.git/hooks".into(), None, "hooks"),
                        ("/home/u/p/.git/config".into(), Some(Kind::File), "config"),
                        ("/home/u/p/.git/config.worktree".into(), None, "wt"),
                    ],
                }],
                ..Root::fixture("/home/u/p")
            }],
            ..Project::fixture("/home/u/p")
        },
        bwrap: Bwrap::fixture(),
        agent: Agent {
            command: vec![exe("/usr/bin/claude")],
            ..Agent::default()
        },
        tools: Default::default(),
    }
}

fn argv(policy: &Policy, facts: &HostFacts) -> Vec<String> {
    let plan = plan(policy, facts).unwrap();
    let (argv, _) = to_argv(&plan);
    argv.iter()
        .map(|a| a.to_str().unwrap().to_owned())
        .collect()
}

fn pos(argv: &[String], window: &[&str]) -> usize {
    argv.windows(window.len())
        .position(|w| w == window)
        .unwrap_or_else(|| panic!("{window:?} not in {argv:?}"))
}

#[test]
fn default_plan_whole_argv() {
    let got = argv(&policy(&["claude", "-p", "hi"]), &facts());
    let want = [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "agentbox",
        "--unshare-cgroup-try",
        "--unshare-net",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--disable-userns",
        "SECCOMP",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/home/u",
        "--setenv",
        "TERM",
        "xterm",
        "--setenv",
        "LC_ALL",
        "C",
        "--setenv",
        "npm_config_fetch_retries",
        "0",
        "--setenv",
        "PIP_RETRIES",
        "0",
        "--setenv",
        "CARGO_NET_RETRY",
        "0",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--ro-bind",
        "/etc",
        "/etc",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        "1073741824",
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/proc",
        "--size",
        "4294967296",
        "--tmpfs",
        "/tmp",
        "--size",
        "4294967296",
        "--tmpfs",
        "/var/tmp",
        "--size",
        "67108864",
        "--tmpfs",
        "/run",
        "--ro-bind",
        "/usr/local/bin/agentbox",
        "/run/agentbox/agentbox",
        "--size",
        "4294967296",
        "--tmpfs",
        "/home/u",
        "--ro-bind",
        "/home/u/.gitconfig",
        "/home/u/.gitconfig",
        "--bind",
        "/home/u/p",
        "/home/u/p",
        "--ro-bind",
        "/home/u/p/.envrc",
        "/home/u/p/.envrc",
        "--bind",
        "/home/u/p/.git",
        "/home/u/p/.git",
        "--ro-bind",
        "/home/u/p/.git/config",
        "/home/u/p/.git/config",
        "--ro-bind",
        "/home/u/p/.git/hooks",
        "/home/u/p/.git/hooks",
        "--ro-bind-data",
        "MASK1",
        "/home/u/p/a/.env",
        "--perms",
        "0000",
        "--ro-bind-data",
        "MASK2",
        "/etc/shadow",
        "--remount-ro",
        "/",
        "--chdir",
        "/home/u/p/src",
        "--",
        // agentbox's shim: Landlock, writes only where the plan made them possible.
        "/run/agentbox/agentbox",
        "__exec",
        "--landlock",
        "--write",
        "/dev/full",
        "--write",
        "/dev/null",
        "--write",
        "/dev/pts",
        "--write",
        "/dev/random",
        "--write",
        "/dev/shm",
        "--write",
        "/dev/tty",
        "--write",
        "/dev/urandom",
        "--write",
        "/dev/zero",
        "--write",
        "/home/u",
        "--write",
        "/tmp",
        "--write",
        "/var/tmp",
        "--",
        "claude",
        "-p",
        "hi",
    ];
    // The seccomp programs take the first fds (one per errno group, plus the x32 guard on
    // x86_64), the masks the next ones.
    let programs = seccomp::programs(seccomp::Allow::default()).unwrap();
    let n = programs.len();
    let mut expanded: Vec<String> = Vec::new();
    for w in want {
        match w {
            "SECCOMP" => {
                for i in 0..n {
                    expanded.extend(["--add-seccomp-fd".into(), (3 + i).to_string()]);
                }
            }
            "MASK1" => expanded.push((3 + n).to_string()),
            "MASK2" => expanded.push((4 + n).to_string()),
            w => expanded.push(w.to_owned()),
        }
    }
    assert_eq!(got, expanded);
    let plan = plan(&policy(&["claude"]), &facts()).unwrap();
    assert_eq!(plan.prep, [Prep::CreateDir("/home/u/p/.git/hooks".into())]);
    let (_, fds) = to_argv(&plan);
    assert_eq!(fds.len(), n + 2);
    for (fd, p) in fds.iter().zip(&programs) {
        assert_eq!(*fd, FdData::Bytes(&p.bytes));
    }
    assert_eq!(fds[n..], [FdData::Empty, FdData::Empty]);
}

#[test]
fn masks_come_after_the_binds_they_mask() {
    let got = argv(&policy(&["claude"]), &facts());
    assert!(pos(&got, &["--tmpfs", "/home/u"]) < pos(&got, &["--bind", "/home/u/p"]));
    assert!(pos(&got, &["--bind", "/home/u/p"]) < pos(&got, &["/home/u/p/a/.env"]));
    assert!(pos(&got, &["--bind", "/home/u/p"]) < pos(&got, &["--bind", "/home/u/p/.git"]));
    let pin = pos(&got, &["--bind", "/home/u/p/.git"]);
    assert!(pin < pos(&got, &["--ro-bind", "/home/u/p/.git/hooks"]));
    assert!(pos(&got, &["--ro-bind", "/etc"]) < pos(&got, &["/etc/shadow"]));
    assert!(pos(&got, &["/etc/shadow"]) < pos(&got, &["--remount-ro", "/"]));
    assert_eq!(got[got.len() - 2..], ["--", "claude"]);
}

#[test]
fn environment_is_an_allowlist() {
    let mut p = policy(&["claude"]);
    p.env = vec![
        EnvPass::Inherit("TOKEN".into()),
        EnvPass::Set("TERM".into(), "dumb".into()),
        EnvPass::Inherit("UNSET".into()),
    ];
    let got = argv(&p, &facts()).join(" ");
    assert!(!got.contains("AWS_SECRET_ACCESS_KEY") && !got.contains("hunter2"));
    assert!(got.contains("--setenv TOKEN t0k3n"));
    assert!(got.contains("--setenv TERM dumb") && !got.contains("TERM xterm"));
    let plan = plan(&p, &facts()).unwrap();
    assert!(plan.warnings.iter().any(|w| w.contains("UNSET")));
    // The script reads host values from its environment: no token on the screen.
    let s = script(&plan);
    assert!(s.contains(r#"--setenv TOKEN "${TOKEN-}""#), "{s}");
    assert!(!s.contains("t0k3n"));
}

#[test]
fn host_network_shares_the_namespace_and_the_resolver() {
    let mut p = policy(&["claude"]);
    p.net = NetMode::Host;
    let got = argv(&p, &facts());
    assert!(!got.contains(&"--unshare-net".to_owned()));
    let resolv = "/run/systemd/resolve/stub-resolv.conf";
    let at = pos(&got, &["--ro-bind", resolv, resolv]);
    assert!(pos(&got, &["--tmpfs", "/run"]) < at);
}

#[test]
fn broad_projects_are_refused() {
    for (project, cwd) in [
        ("/", "/"),
        ("/home/u", "/home/u"),
        ("/home", "/home"),
        ("/usr", "/usr"),
        ("/proc/self", "/proc/self"),
    ] {
        let mut f = facts();
        f.project.dir = project.into();
        f.user.cwd = cwd.into();
        let err = plan(&policy(&["claude"]), &f).unwrap_err();
        let fail = err.downcast_ref::<Fail>().unwrap();
        assert_eq!(fail.code, 125, "{project}");
        assert!(
            fail.hint.as_deref().unwrap().contains("--project"),
            "{project}"
        );
        let mut p = policy(&["claude"]);
        p.broad_project = BroadProject::Allowed;
        let plan = plan(&p, &f).unwrap();
        assert!(
            plan.warnings[0].contains("--allow-broad-project"),
            "{project}"
        );
    }
    let mut f = facts();
    f.project.extra = vec![("/home/u".into(), Access::ReadWrite)];
    assert!(plan(&policy(&["claude"]), &f).is_err());
    // Read-only, the same places are refused too, and the kernel's and the sockets' ones,
    // while a narrower path inside them is shown.
    for (path, refused) in [
        ("/", true),
        ("/home/u", true),
        ("/home", true),
        ("/proc", true),
        ("/proc/1", true),
        ("/sys", true),
        ("/dev", true),
        ("/run", true),
        ("/run/user/1000", true),
        ("/run/docker.sock", true),
        ("/var/run/dbus", true),
        ("/tmp", true),
        ("/tmp/.X11-unix", true),
        ("/usr/share", false),
        ("/home/u/.cargo", false),
        ("/tmp/data", false),
    ] {
        f.project.extra = vec![(path.into(), Access::ReadOnly)];
        let got = plan(&policy(&["claude"]), &f);
        assert_eq!(got.is_err(), refused, "--ro {path}");
        if let Err(e) = got {
            let fail = e.downcast_ref::<Fail>().unwrap();
            assert_eq!(fail.code, 125, "{path}");
            assert!(fail.hint.as_deref().unwrap().contains("--ro"), "{path}");
        }
        let mut p = policy(&["claude"]);
        p.broad_project = BroadProject::Allowed;
        let plan = plan(&p, &f).unwrap();
        assert_eq!(
            plan.warnings
                .iter()
                .any(|w| w.contains("--allow-broad-project")),
            refused,
            "{path}"
        );
    }
}

#[test]
fn binds_go_parents_first() {
    let mut f = facts();
    f.project.extra = vec![
        ("/home/u/p/vendor".into(), Access::ReadOnly),
        ("/home/u/.nvm".into(), Access::ReadOnly),
        ("/home/u".into(), Access::ReadOnly),
    ];
    // `--ro $HOME` needs the override now; the order is what this test is about.
    let mut p = policy(&["claude"]);
    p.broad_project = BroadProject::Allowed;
    let got = argv(&p, &f);
    let home = pos(&got, &["--ro-bind", "/home/u", "/home/u"]);
    let project = pos(&got, &["--bind", "/home/u/p", "/home/u/p"]);
    let vendor = pos(&got, &["--ro-bind", "/home/u/p/vendor"]);
    assert!(home < project && project < vendor);
    assert!(home < pos(&got, &["--ro-bind", "/home/u/.nvm"]));
}

#[test]
fn cwd_outside_the_project_starts_in_the_project() {
    let mut f = facts();
    f.user.cwd = "/elsewhere".into();
    let got = argv(&policy(&["claude"]), &f);
    pos(&got, &["--chdir", "/home/u/p", "--"]);
}

#[test]
fn command_the_sandbox_cannot_see() {
    let mut f = facts();
    f.agent.command = vec![Candidate {
        path: "/home/u/.local/bin/claude".into(),
        canonical: "/home/u/.local/share/claude/versions/2.0".into(),
        executable: true,
    }];
    let err = plan(&policy(&["claude"]), &f).unwrap_err();
    let fail = err.downcast_ref::<Fail>().unwrap();
    assert_eq!(fail.code, 127);
    assert!(fail.message.contains("cannot see"), "{}", fail.message);
    let hint = fail.hint.as_deref().unwrap();
    assert!(hint.contains("--ro /home/u/.local/bin --ro /home/u/.local/share/claude/versions"));

    // With the hinted binds it resolves, and a visible later PATH entry is named in a warning.
    f.project.extra = vec![
        ("/home/u/.local/bin".into(), Access::ReadOnly),
        (
            "/home/u/.local/share/claude/versions".into(),
            Access::ReadOnly,
        ),
    ];
    assert!(plan(&policy(&["claude"]), &f).is_ok());
    f.project.extra.clear();
    f.agent.command.push(exe("/usr/bin/claude"));
    let plan = plan(&policy(&["claude"]), &f).unwrap();
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("inside it runs /usr/bin/claude"))
    );
}

#[test]
fn missing_and_non_executable_commands() {
    let mut f = facts();
    f.agent.command.clear();
    let err = plan(&policy(&["nope"]), &f).unwrap_err();
    assert_eq!(err.downcast_ref::<Fail>().unwrap().code, 127);
    let mut c = exe("/home/u/p/run.sh");
    c.executable = false;
    f.agent.command = vec![c];
    let err = plan(&policy(&["./run.sh"]), &f).unwrap_err();
    assert_eq!(err.downcast_ref::<Fail>().unwrap().code, 126);
}

#[test]
fn symlinked_secret_targets_are_masked_only_where_visible() {
    let mut f = facts();
    f.project.roots[0].secrets = vec![
        found("/home/u/p/config/real.txt", Kind::File, "via link"),
        found("/home/u/.aws/credentials", Kind::File, "via link"),
        found("/home/u/p/secrets", Kind::Dir, "dir"),
        found(
            "/home/u/p/secrets/inner.key",
            Kind::File,
            "inside a masked dir",
        ),
    ];
    let got = argv(&policy(&["claude"]), &f);
    let at = pos(&got, &["/home/u/p/config/real.txt"]);
    assert_eq!(got[at - 2], "--ro-bind-data");
    assert!(!got.contains(&"/home/u/.aws/credentials".to_owned()));
    let t = pos(&got, &["--size", "4096", "--tmpfs", "/home/u/p/secrets"]);
    assert_eq!(got[t + 4..t + 6], ["--remount-ro", "/home/u/p/secrets"]);
    assert!(!got.contains(&"/home/u/p/secrets/inner.key".to_owned()));
}

#[test]
fn runs_later_symlinks_warn_and_are_not_bound() {
    let mut f = facts();
    f.project.roots[0].git[0].entries[0] =
        ("/home/u/p/.git/hooks".into(), Some(Kind::Symlink), "hooks");
    let plan = plan(&policy(&["claude"]), &f).unwrap();
    let got: Vec<_> = to_argv(&plan).0;
    assert!(!got.contains(&OsString::from("/home/u/p/.git/hooks")));
    assert!(plan.prep.is_empty());
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains(".git/hooks is a symlink"))
    );
}

#[test]
fn git_tampering_and_unprotectable_config_refuse_to_start() {
    let mut f = facts();
    f.project.roots[0].git[0].anomalies = vec![Refusal {
        what: "/home/u/p/.git/commondir exists".into(),
        hint: "remove it".into(),
    }];
    let err = plan(&policy(&["claude"]), &f).unwrap_err();
    assert!(err.to_string().contains("commondir"), "{err}");
    let fail = err.downcast_ref::<Fail>().unwrap();
    assert_eq!(fail.code, 125);
    assert_eq!(fail.hint.as_deref(), Some("remove it"));

    // core.hooksPath inside the project: protected when it exists (here it cannot be checked
    // on disk, so a path outside any writable root is ignored and one inside refuses).
    let mut f = facts();
    f.project.roots[0].git[0].config_paths = vec![(
        "/home/u/p/.husky-missing".into(),
        None,
        "core.hookspath".into(),
    )];
    let err = plan(&policy(&["claude"]), &f).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    f.project.roots[0].git[0].config_paths =
        vec![("/usr/bin/cat".into(), None, "diff.x.textconv".into())];
    assert!(plan(&policy(&["claude"]), &f).is_ok());
    // A hooks path at the project itself (`core.hooksPath = .`) would make it read-only: refused.
    f.project.roots[0].git[0].config_paths =
        vec![("/home/u/p".into(), Some(Kind::Dir), "core.hookspath".into())];
    let err = plan(&policy(&["claude"]), &f).unwrap_err();
    assert!(err.to_string().contains("itself"), "{err}");
}

#[test]
fn a_linked_worktree_in_a_broad_place_is_not_bound() {
    let mut f = facts();
    f.project.roots[0].git[0].dot_git_kind = Kind::File;
    f.project.roots[0].git[0].linked_common = Some("/home/u".into());
    let got = argv(&policy(&["claude"]), &f);
    assert!(
        !got.windows(3)
            .any(|w| w == ["--bind", "/home/u", "/home/u"]),
        "{got:?}"
    );
}

#[test]
fn too_many_masks_is_refused_with_a_hint() {
    let mut f = facts();
    f.project.roots[0].secrets = (0..3000)
        .map(|i| found(&format!("/home/u/p/fixtures/k{i}.pem"), Kind::File, "key"))
        .collect();
    let err = plan(&policy(&["claude"]), &f).unwrap_err();
    let fail = err.downcast_ref::<Fail>().unwrap();
    assert_eq!(fail.code, 125);
    assert!(fail.hint.as_deref().unwrap().contains("--unhide"));
    f.project.roots[0].secrets.truncate(2000);
    assert!(plan(&policy(&["claude"]), &f).is_ok());
}

/// Every directory from the writable root down to a protected item is pinned, once, before
/// what is in it; a read-only item is not also pinned.
#[test]
fn every_directory_above_a_protected_item_is_pinned_once() {
    let mut f = facts();
    f.project.roots[0].runs_later = vec![
        found("/home/u/p/a/b/.vscode", Kind::Dir, "editor"),
        found("/home/u/p/a/b/c/.envrc", Kind::File, "direnv"),
        found("/home/u/p/a/.envrc", Kind::File, "direnv"),
    ];
    let got = argv(&policy(&["claude"]), &f);
    let binds = |flag: &str, p: &str| {
        got.windows(3)
            .filter(|w| w[0] == flag && w[1] == p && w[2] == p)
            .count()
    };
    for dir in [
        "/home/u/p/a",
        "/home/u/p/a/b",
        "/home/u/p/a/b/c",
        "/home/u/p/.git",
    ] {
        assert_eq!(binds("--bind", dir), 1, "{dir} pinned once: {got:?}");
    }
    assert_eq!(binds("--bind", "/home/u/p/a/b/.vscode"), 0);
    assert_eq!(binds("--ro-bind", "/home/u/p/a/b/.vscode"), 1);
    // The project itself is the writable root: bound read-write once, not pinned again.
    assert_eq!(binds("--bind", "/home/u/p"), 1);
    let a = pos(&got, &["--bind", "/home/u/p/a", "/home/u/p/a"]);
    let ab = pos(&got, &["--bind", "/home/u/p/a/b", "/home/u/p/a/b"]);
    assert!(a < pos(&got, &["--ro-bind", "/home/u/p/a/.envrc"]));
    assert!(a < ab && ab < pos(&got, &["--ro-bind", "/home/u/p/a/b/.vscode"]));
}

/// Thousands of nested repositories: more mounts than bwrap takes, refused with a hint.
#[test]
fn too_many_protected_paths_is_refused_with_a_hint() {
    let mut f = facts();
    let repo = f.project.roots[0].git[0].clone();
    f.project.roots[0].git = (0..1000)
        .map(|i| {
            let mut r = repo.clone();
            let d = format!("/home/u/p/vendor/r{i}/.git");
            r.dot_git = d.clone().into();
            r.entries = vec![
                (format!("{d}/hooks").into(), Some(Kind::Dir), "hooks"),
                (format!("{d}/config").into(), Some(Kind::File), "config"),
            ];
            r
        })
        .collect();
    let err = plan(&policy(&["claude"]), &f).unwrap_err();
    let fail = err.downcast_ref::<Fail>().unwrap();
    assert!(
        fail.hint.as_deref().unwrap().contains("--project"),
        "{fail:?}"
    );
    f.project.roots[0].git.truncate(500);
    assert!(plan(&policy(&["claude"]), &f).is_ok());
}

#[test]
fn worktree_common_dir_is_bound_and_protected() {
    let mut f = facts();
    f.project.roots[0].git = vec![GitRepo {
        dot_git: "/home/u/p/.git".into(),
        dot_git_kind: Kind::File,
        git_dir: Some("/home/u/main/.git/worktrees/p".into()),
        linked_common: Some("/home/u/main/.git".into()),
        config_paths: vec![],
        anomalies: vec![],
        warnings: vec![],
        control_absent: vec![],
        entries: vec![
            ("/home/u/main/.git/hooks".into(), Some(Kind::Dir), "hooks"),
            (
                "/home/u/main/.git/config".into(),
                Some(Kind::File),
                "config",
            ),
        ],
    }];
    let got = argv(&policy(&["claude"]), &f);
    let common = pos(&got, &["--bind", "/home/u/main/.git", "/home/u/main/.git"]);
    assert!(common < pos(&got, &["--ro-bind", "/home/u/main/.git/hooks"]));
    assert!(common < pos(&got, &["--ro-bind", "/home/u/main/.git/config"]));
}

#[test]
fn old_bwrap_is_refused_and_features_follow_the_version() {
    let mut f = facts();
    f.bwrap.version = (0, 5, 0);
    assert!(plan(&policy(&["claude"]), &f).is_err());
    f.bwrap.version = (0, 6, 1);
    let got = argv(&policy(&["claude"]), &f);
    assert!(!got.contains(&"--size".to_owned()));
    f.bwrap.version = (0, 11, 0);
    f.bwrap.setuid = true;
    let plan = plan(&policy(&["claude"]), &f).unwrap();
    assert!(!to_argv(&plan).0.contains(&OsString::from("--size")));
    assert!(plan.warnings.iter().any(|w| w.contains("setuid")));
}

#[test]
fn seen_replays_mounts() {
    let plan = plan(&policy(&["claude"]), &facts()).unwrap();
    let s = |p: &str| seen(&plan.steps, Path::new(p));
    assert_eq!(s("/usr/bin/sh"), Seen::Visible);
    assert_eq!(s("/bin/sh"), Seen::Visible);
    assert_eq!(s("/home/u/.ssh/id_rsa"), Seen::Absent);
    assert_eq!(s("/home/u/.gitconfig"), Seen::Visible);
    assert_eq!(s("/home/u/p/x.rs"), Seen::Visible);
    assert_eq!(s("/home/u/p/a/.env"), Seen::Masked);
    assert_eq!(s("/tmp/x"), Seen::Absent);
    assert_eq!(s("/srv/x"), Seen::Absent);
}

#[test]
fn script_quotes_every_word() {
    use std::os::unix::ffi::OsStringExt;
    let mut f = facts();
    let odd = OsString::from_vec(b"/home/u/it's a \xff dir".to_vec());
    f.project.dir = PathBuf::from(&odd);
    f.user.cwd = PathBuf::from(&odd);
    f.project.roots[0].path = PathBuf::from(&odd);
    f.project.roots[0].git.clear();
    f.project.roots[0].runs_later.clear();
    f.project.roots[0].secrets.clear();
    let plan = plan(&policy(&["claude", "a b", "$HOME"]), &f).unwrap();
    let s = script(&plan);
    assert!(s.contains(r"--bind $'/home/u/it\'s a \xff dir' $'/home/u/it\'s a \xff dir'"));
    assert!(s.contains(r#"-- claude 'a b' '$HOME'"#), "{s}");
    assert!(s.contains("3< <(base64 -d <<<'"), "{s}");
    assert!(s.contains("</dev/null"), "{s}");
    // The argv itself keeps the raw bytes.
    assert!(to_argv(&plan).0.contains(&odd));
}

#[test]
fn an_executable_in_a_shallow_home_dir_is_bound_alone() {
    use crate::host::agent::Exposed;
    let ex = |name: &str, canonical: &str| Exposed {
        name: name.into(),
        path: canonical.into(),
        canonical: canonical.into(),
    };
    for (canonical, bound) in [
        // Directly in the home: the file, never the home.
        ("/home/u/mytool", "/home/u/mytool"),
        // In a directory directly in the home (~/.ssh beside the keys): the file.
        ("/home/u/.ssh/helper", "/home/u/.ssh/helper"),
        // A package two levels down: its directory.
        (
            "/home/u/.nvm/v20/lib/node_modules/pkg/cli.js",
            "/home/u/.nvm/v20/lib/node_modules/pkg",
        ),
        (
            "/home/u/.local/share/claude/versions/2.0",
            "/home/u/.local/share/claude/versions",
        ),
    ] {
        let mut f = facts();
        f.agent.exposed = vec![ex("mytool", canonical), ex("sh", "/usr/bin/sh")];
        let mut p = policy(&["mytool"]);
        p.profile.name = "generic".into();
        let got = argv(&p, &f);
        pos(&got, &["--ro-bind", bound, bound]);
        assert!(
            !got.windows(3)
                .any(|w| w == ["--ro-bind", "/home/u", "/home/u"]),
            "{canonical}: {got:?}"
        );
        let link = "/run/agentbox/bin/mytool";
        pos(&got, &["--symlink", canonical, link]);
    }
}

#[test]
fn dev_and_proc_are_read_only_and_shm_is_bounded_where_bwrap_can() {
    let dev_part = |got: &[String]| {
        let start = pos(got, &["--dev", "/dev"]);
        let end = pos(got, &["--tmpfs", "/tmp"]);
        got[start..end].join(" ")
    };
    let got = argv(&policy(&["claude"]), &facts());
    assert_eq!(
        dev_part(&got),
        "--dev /dev --remount-ro /dev --size 1073741824 --tmpfs /dev/shm --remount-ro /proc --size 4294967296"
    );
    // A setuid or old bwrap has no --size: /dev/shm is still its own tmpfs, mounted after the
    // remount so it stays writable.
    for (version, setuid) in [((0, 8, 0), true), ((0, 6, 0), false)] {
        let mut f = facts();
        f.bwrap.version = version;
        f.bwrap.setuid = setuid;
        let got = argv(&policy(&["claude"]), &f);
        assert_eq!(
            dev_part(&got),
            "--dev /dev --remount-ro /dev --tmpfs /dev/shm --remount-ro /proc",
            "{version:?} setuid {setuid}"
        );
    }
    // Debugging and nesting keep /proc writable (uid maps, /proc/PID/mem on purpose); the
    // filtered network's relay remounts it itself.
    for tweak in [
        |p: &mut Policy| p.allow.debug = true,
        |p: &mut Policy| p.allow.nested = true,
        |p: &mut Policy| p.net = NetMode::Filtered,
    ] {
        let mut p = policy(&["claude"]);
        tweak(&mut p);
        let mut f = facts();
        let mut net = None;
        if p.net == NetMode::Filtered {
            net = Some(crate::net::session::NetSession {
                dir: "/run/user/1000/agentbox/net-1".into(),
                token: "t".into(),
                uid: 1000,
                gid: 1000,
                broker: vec![],
            });
            f.system.self_exe = Some("/usr/bin/agentbox".into());
        }
        let plan = plan_run(&p, &f, net.as_ref()).unwrap();
        let got: Vec<String> = to_argv(&plan)
            .0
            .iter()
            .map(|a| a.to_str().unwrap().to_owned())
            .collect();
        assert!(!got.windows(2).any(|w| w == ["--remount-ro", "/proc"]));
        pos(&got, &["--remount-ro", "/dev"]);
    }
}

#[test]
fn the_shim_always_runs_and_landlock_is_off_only_for_nested_sandboxes() {
    let mut f = facts();
    f.user.stdin_tty = true;
    let got = argv(&policy(&["claude"]), &f);
    let at = pos(
        &got,
        &["/run/agentbox/agentbox", "__exec", "--tty", "--landlock"],
    );
    assert_eq!(got.last().map(String::as_str), Some("claude"));
    assert!(at < pos(&got, &["--", "claude"]));
    let mut p = policy(&["claude"]);
    p.allow.nested = true;
    let got = argv(&p, &facts());
    pos(&got, &["/run/agentbox/agentbox", "__exec", "--", "claude"]);
    assert!(!got.contains(&"--landlock".to_owned()));
    // With --allow-debug, /proc is writable under Landlock too (a debugger writes PID/mem).
    let mut p = policy(&["claude"]);
    p.allow.debug = true;
    let got = argv(&p, &facts());
    pos(&got, &["--write", "/proc"]);
}

#[test]
fn a_kernel_without_usable_landlock_is_noted_and_landlock_asked_for_only_where_it_is() {
    // (noted, asked of the shim)
    let got = |abi: u32| {
        let mut f = facts();
        f.system.landlock_abi = abi;
        let plan = plan(&policy(&["claude"]), &f).unwrap();
        (
            plan.notes.iter().any(|n| n.contains("Landlock")),
            plan.command.iter().any(|w| w == "--landlock"),
        )
    };
    assert_eq!(got(0), (true, false));
    assert_eq!(got(1), (true, false));
    assert_eq!(got(2), (false, true));
}

#[test]
fn scripts_that_protected_files_launch_are_bound_read_only_with_their_reason() {
    let mut f = facts();
    f.project.roots[0].referenced = vec![found(
        "/home/u/p/tools/mcp.js",
        Kind::File,
        "run by .mcp.json",
    )];
    let plan = plan(&policy(&["claude"]), &f).unwrap();
    let got = argv(&policy(&["claude"]), &f);
    pos(
        &got,
        &[
            "--ro-bind",
            "/home/u/p/tools/mcp.js",
            "/home/u/p/tools/mcp.js",
        ],
    );
    assert!(
        plan.steps
            .iter()
            .any(|s| s.why == "read-only: run by .mcp.json")
    );
    // Without the reference, the same file is not bound (the control).
    f.project.roots[0].referenced.clear();
    let got = argv(&policy(&["claude"]), &f);
    assert!(!got.contains(&"/home/u/p/tools/mcp.js".to_owned()));
}

/// `want` with its placeholders filled in as `default_plan_whole_argv` does: SECCOMP is one
/// `--add-seccomp-fd` per program (their number depends on the architecture), MASKn the fd of
/// the n-th mask, after the programs'.
fn with_fds(want: &[&str]) -> Vec<String> {
    let n = seccomp::programs(seccomp::Allow::default()).unwrap().len();
    let mut expanded: Vec<String> = Vec::new();
    for w in want {
        match *w {
            "SECCOMP" => {
                for i in 0..n {
                    expanded.extend(["--add-seccomp-fd".into(), (3 + i).to_string()]);
                }
            }
            "MASK1" => expanded.push((3 + n).to_string()),
            "MASK2" => expanded.push((4 + n).to_string()),
            w => expanded.push(w.to_owned()),
        }
    }
    expanded
}

/// `--net filtered`: bwrap starts the relay as uid 0 with the three capabilities it drops
/// before the agent, no seccomp fds (the relay loads the programs after its network setup) and
/// no `--disable-userns` or `/proc` remount (the relay does both); the proxy's socket alone,
/// this run's token and the relay's resolver; the proxy variables; the relay's own command
/// line in front of the shim.
#[test]
fn filtered_plan_whole_argv() {
    let mut p = policy(&["claude", "-p", "hi"]);
    p.net = NetMode::Filtered;
    p.filter.allow = vec!["api.example.com".into()];
    p.filter.rules = crate::net::rules::NetPolicy::new(&p.filter.allow, &[]).unwrap();
    let f = facts();
    let net = crate::net::session::NetSession {
        dir: "/run/user/1000/agentbox/net-1".into(),
        token: "t0k3n".into(),
        uid: 1000,
        gid: 1000,
        broker: vec![],
    };
    let plan = plan_run(&p, &f, Some(&net)).unwrap();
    let (got, fds) = to_argv(&plan);
    let got: Vec<String> = got.iter().map(|a| a.to_str().unwrap().to_owned()).collect();
    let http = "http://127.0.0.1:3128";
    let socks = "socks5h://127.0.0.1:3128";
    let relay_ctx = r#"{"allow":["api.example.com"],"deny":[],"learn":false,"uid":1000,"gid":1000,"seccomp":{"debug":false,"nested":false},"interactive":false}"#;
    let want = [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "agentbox",
        "--unshare-cgroup-try",
        "--unshare-net",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        "0",
        "--gid",
        "0",
        "--cap-add",
        "CAP_NET_BIND_SERVICE",
        "--cap-add",
        "CAP_SYS_RESOURCE",
        "--cap-add",
        "CAP_SETFCAP",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/home/u",
        "--setenv",
        "TERM",
        "xterm",
        "--setenv",
        "LC_ALL",
        "C",
        "--setenv",
        "HTTP_PROXY",
        http,
        "--setenv",
        "HTTPS_PROXY",
        http,
        "--setenv",
        "http_proxy",
        http,
        "--setenv",
        "https_proxy",
        http,
        "--setenv",
        "ALL_PROXY",
        socks,
        "--setenv",
        "all_proxy",
        socks,
        "--setenv",
        "NO_PROXY",
        "localhost,127.0.0.1,::1,127.0.0.3",
        "--setenv",
        "no_proxy",
        "localhost,127.0.0.1,::1,127.0.0.3",
        "--setenv",
        "NODE_USE_ENV_PROXY",
        "1",
        "--setenv",
        "GLOBAL_AGENT_HTTP_PROXY",
        http,
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--ro-bind",
        "/etc",
        "/etc",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        "1073741824",
        "--tmpfs",
        "/dev/shm",
        "--size",
        "4294967296",
        "--tmpfs",
        "/tmp",
        "--size",
        "4294967296",
        "--tmpfs",
        "/var/tmp",
        "--size",
        "67108864",
        "--tmpfs",
        "/run",
        "--ro-bind",
        "/usr/local/bin/agentbox",
        "/run/agentbox/agentbox",
        "--ro-bind",
        "/run/user/1000/agentbox/net-1/proxy.sock",
        "/run/agentbox/net/proxy.sock",
        "--ro-bind-data",
        "3",
        "/run/agentbox/token",
        // /etc/resolv.conf is a symlink to here: the file it names is the one covered.
        "--ro-bind-data",
        "4",
        "/run/systemd/resolve/stub-resolv.conf",
        "--size",
        "4294967296",
        "--tmpfs",
        "/home/u",
        "--ro-bind",
        "/home/u/.gitconfig",
        "/home/u/.gitconfig",
        "--bind",
        "/home/u/p",
        "/home/u/p",
        "--ro-bind",
        "/home/u/p/.envrc",
        "/home/u/p/.envrc",
        "--bind",
        "/home/u/p/.git",
        "/home/u/p/.git",
        "--ro-bind",
        "/home/u/p/.git/config",
        "/home/u/p/.git/config",
        "--ro-bind",
        "/home/u/p/.git/hooks",
        "/home/u/p/.git/hooks",
        "--ro-bind-data",
        "5",
        "/home/u/p/a/.env",
        "--perms",
        "0000",
        "--ro-bind-data",
        "6",
        "/etc/shadow",
        "--remount-ro",
        "/",
        "--chdir",
        "/home/u/p/src",
        "--",
        // The relay: network setup, then seccomp, then your uid back, then the shim.
        "/run/agentbox/agentbox",
        "__relay",
        relay_ctx,
        "--",
        "/run/agentbox/agentbox",
        "__exec",
        "--landlock",
        "--write",
        "/dev/full",
        "--write",
        "/dev/null",
        "--write",
        "/dev/pts",
        "--write",
        "/dev/random",
        "--write",
        "/dev/shm",
        "--write",
        "/dev/tty",
        "--write",
        "/dev/urandom",
        "--write",
        "/dev/zero",
        "--write",
        "/home/u",
        "--write",
        "/tmp",
        "--write",
        "/var/tmp",
        "--",
        "claude",
        "-p",
        "hi",
    ];
    assert_eq!(got, want);
    assert_eq!(
        fds,
        [
            FdData::Bytes(b"t0k3n"),
            FdData::Bytes(b"nameserver 127.0.0.1\noptions timeout:2 attempts:2\n"),
            FdData::Empty,
            FdData::Empty,
        ]
    );
}

/// On a terminal: no `--new-session` (a full-screen program would never hear of a resize; the
/// seccomp filter refuses TIOCSTI instead) and the shim is told (`--tty`), so Ctrl-C reaches
/// the command; everything else as in the default plan.
#[test]
fn terminal_plan_whole_argv() {
    let mut f = facts();
    f.user.stdin_tty = true;
    let got = argv(&policy(&["claude", "-p", "hi"]), &f);
    let want = with_fds(&[
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "agentbox",
        "--unshare-cgroup-try",
        "--unshare-net",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--disable-userns",
        "SECCOMP",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/home/u",
        "--setenv",
        "TERM",
        "xterm",
        "--setenv",
        "LC_ALL",
        "C",
        "--setenv",
        "npm_config_fetch_retries",
        "0",
        "--setenv",
        "PIP_RETRIES",
        "0",
        "--setenv",
        "CARGO_NET_RETRY",
        "0",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--ro-bind",
        "/etc",
        "/etc",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        "1073741824",
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/proc",
        "--size",
        "4294967296",
        "--tmpfs",
        "/tmp",
        "--size",
        "4294967296",
        "--tmpfs",
        "/var/tmp",
        "--size",
        "67108864",
        "--tmpfs",
        "/run",
        "--ro-bind",
        "/usr/local/bin/agentbox",
        "/run/agentbox/agentbox",
        "--size",
        "4294967296",
        "--tmpfs",
        "/home/u",
        "--ro-bind",
        "/home/u/.gitconfig",
        "/home/u/.gitconfig",
        "--bind",
        "/home/u/p",
        "/home/u/p",
        "--ro-bind",
        "/home/u/p/.envrc",
        "/home/u/p/.envrc",
        "--bind",
        "/home/u/p/.git",
        "/home/u/p/.git",
        "--ro-bind",
        "/home/u/p/.git/config",
        "/home/u/p/.git/config",
        "--ro-bind",
        "/home/u/p/.git/hooks",
        "/home/u/p/.git/hooks",
        "--ro-bind-data",
        "MASK1",
        "/home/u/p/a/.env",
        "--perms",
        "0000",
        "--ro-bind-data",
        "MASK2",
        "/etc/shadow",
        "--remount-ro",
        "/",
        "--chdir",
        "/home/u/p/src",
        "--",
        "/run/agentbox/agentbox",
        "__exec",
        "--tty",
        "--landlock",
        "--write",
        "/dev/full",
        "--write",
        "/dev/null",
        "--write",
        "/dev/pts",
        "--write",
        "/dev/random",
        "--write",
        "/dev/shm",
        "--write",
        "/dev/tty",
        "--write",
        "/dev/urandom",
        "--write",
        "/dev/zero",
        "--write",
        "/home/u",
        "--write",
        "/tmp",
        "--write",
        "/var/tmp",
        "--",
        "claude",
        "-p",
        "hi",
    ]);
    assert_eq!(got, want);
    assert!(plan(&policy(&["claude"]), &f).unwrap().interactive);
}

/// The claude profile (with `--net none`, so that only the profile's part differs from the
/// default plan): the agent's own home bound over the home instead of a tmpfs, created with
/// its state directories before the launch; the profile's variables (a key only where the host
/// has it); the directory the command really runs from, read-only, and a symlink to it in the
/// shim directory, which comes first on PATH.
#[test]
fn agent_profile_plan_whole_argv() {
    let mut p = policy(&["claude", "-p", "hi"]);
    p.profile = crate::profile::builtin("claude").unwrap();
    p.home = Home::Agent;
    p.env = vec![
        EnvPass::IfSet("ANTHROPIC_API_KEY".into()),
        EnvPass::IfSet("ANTHROPIC_BASE_URL".into()),
        EnvPass::Set("DISABLE_TELEMETRY".into(), "1".into()),
        EnvPass::Set("DISABLE_AUTOUPDATER".into(), "1".into()),
    ];
    let mut f = facts();
    f.user.env.push("ANTHROPIC_API_KEY", "sk-test");
    let agent_home = PathBuf::from("/home/u/.local/share/agentbox/home/claude");
    f.agent.state_dirs = vec![agent_home.join(".claude"), agent_home.join(".cache/claude")];
    f.agent.home = Some(agent_home.clone());
    f.agent.exposed = vec![crate::host::agent::Exposed {
        name: "claude".into(),
        path: "/home/u/.local/bin/claude".into(),
        canonical: "/home/u/.local/share/claude/versions/2.0".into(),
    }];
    let got = argv(&p, &f);
    let want = with_fds(&[
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "agentbox",
        "--unshare-cgroup-try",
        "--unshare-net",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--disable-userns",
        "SECCOMP",
        "--clearenv",
        "--setenv",
        "PATH",
        "/run/agentbox/bin:/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/home/u",
        "--setenv",
        "TERM",
        "xterm",
        "--setenv",
        "LC_ALL",
        "C",
        "--setenv",
        "npm_config_fetch_retries",
        "0",
        "--setenv",
        "PIP_RETRIES",
        "0",
        "--setenv",
        "CARGO_NET_RETRY",
        "0",
        "--setenv",
        "ANTHROPIC_API_KEY",
        "sk-test",
        "--setenv",
        "DISABLE_TELEMETRY",
        "1",
        "--setenv",
        "DISABLE_AUTOUPDATER",
        "1",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--ro-bind",
        "/etc",
        "/etc",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        "1073741824",
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/proc",
        "--size",
        "4294967296",
        "--tmpfs",
        "/tmp",
        "--size",
        "4294967296",
        "--tmpfs",
        "/var/tmp",
        "--size",
        "67108864",
        "--tmpfs",
        "/run",
        "--ro-bind",
        "/usr/local/bin/agentbox",
        "/run/agentbox/agentbox",
        "--bind",
        "/home/u/.local/share/agentbox/home/claude",
        "/home/u",
        "--ro-bind",
        "/home/u/.gitconfig",
        "/home/u/.gitconfig",
        "--ro-bind",
        "/home/u/.local/share/claude/versions",
        "/home/u/.local/share/claude/versions",
        "--symlink",
        "/home/u/.local/share/claude/versions/2.0",
        "/run/agentbox/bin/claude",
        "--bind",
        "/home/u/p",
        "/home/u/p",
        "--ro-bind",
        "/home/u/p/.envrc",
        "/home/u/p/.envrc",
        "--bind",
        "/home/u/p/.git",
        "/home/u/p/.git",
        "--ro-bind",
        "/home/u/p/.git/config",
        "/home/u/p/.git/config",
        "--ro-bind",
        "/home/u/p/.git/hooks",
        "/home/u/p/.git/hooks",
        "--ro-bind-data",
        "MASK1",
        "/home/u/p/a/.env",
        "--perms",
        "0000",
        "--ro-bind-data",
        "MASK2",
        "/etc/shadow",
        "--remount-ro",
        "/",
        "--chdir",
        "/home/u/p/src",
        "--",
        "/run/agentbox/agentbox",
        "__exec",
        "--landlock",
        "--write",
        "/dev/full",
        "--write",
        "/dev/null",
        "--write",
        "/dev/pts",
        "--write",
        "/dev/random",
        "--write",
        "/dev/shm",
        "--write",
        "/dev/tty",
        "--write",
        "/dev/urandom",
        "--write",
        "/dev/zero",
        "--write",
        "/home/u",
        "--write",
        "/tmp",
        "--write",
        "/var/tmp",
        "--",
        "claude",
        "-p",
        "hi",
    ]);
    assert_eq!(got, want);
    let plan = plan(&p, &f).unwrap();
    assert_eq!(
        plan.prep,
        [
            Prep::CreateHome {
                dir: agent_home.clone(),
                subdirs: vec![agent_home.join(".claude"), agent_home.join(".cache/claude")],
            },
            Prep::CreateDir("/home/u/p/.git/hooks".into()),
        ]
    );
}

#[test]
fn toolchains_are_shown_read_only_and_caches_bound_outside_the_home() {
    use crate::host::toolchain::{CacheUse, Tools};
    let mut f = facts();
    f.tools = Tools {
        shown: vec![
            (
                "/home/u/.rustup".into(),
                "/home/u/.rustup".into(),
                "rustup".into(),
            ),
            (
                "/data/nvm".into(),
                "/home/u/.nvm/versions".into(),
                "nvm".into(),
            ),
        ],
        masked: vec![(
            "/home/u/.nvm/versions/node/v1/etc/npmrc".into(),
            Kind::File,
            "a credential".into(),
        )],
        env: vec![("RUSTUP_HOME".into(), "/home/u/.rustup".into(), "root")],
        path: vec!["/home/u/.cargo/bin".into()],
        caches: vec![CacheUse {
            name: "cargo".into(),
            host: "/home/u/.local/share/agentbox/cache/cargo".into(),
            inside: "/var/cache/agentbox/cargo".into(),
            vars: vec![("CARGO_HOME".into(), "/var/cache/agentbox/cargo".into())],
            path: vec!["/var/cache/agentbox/cargo/bin".into()],
            about: "cargo's home".into(),
        }],
        notes: vec!["toolchain x not shown".into()],
    };
    let p = policy(&["claude"]);
    let got = argv(&p, &f);
    // In order: the empty home, the toolchains over it, the credential over them, the cache
    // outside the home, then the project.
    let order = [
        pos(&got, &["--tmpfs", "/home/u"]),
        pos(&got, &["--ro-bind", "/home/u/.rustup", "/home/u/.rustup"]),
        pos(&got, &["--ro-bind", "/data/nvm", "/home/u/.nvm/versions"]),
        pos(&got, &["/home/u/.nvm/versions/node/v1/etc/npmrc"]),
        pos(
            &got,
            &[
                "--bind",
                "/home/u/.local/share/agentbox/cache/cargo",
                "/var/cache/agentbox/cargo",
            ],
        ),
        pos(&got, &["--bind", "/home/u/p"]),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(got[pos(&got, &["/home/u/.nvm/versions/node/v1/etc/npmrc"]) - 2] == "--ro-bind-data");
    pos(&got, &["--setenv", "RUSTUP_HOME", "/home/u/.rustup"]);
    pos(
        &got,
        &["--setenv", "CARGO_HOME", "/var/cache/agentbox/cargo"],
    );
    // PATH: the host's, then what it lacks.
    pos(
        &got,
        &[
            "--setenv",
            "PATH",
            "/usr/bin:/bin:/home/u/.cargo/bin:/var/cache/agentbox/cargo/bin",
        ],
    );
    // Landlock lets the cache be written; nothing else outside the home and scratch.
    pos(&got, &["--write", "/var/cache/agentbox/cargo"]);
    let plan = plan(&p, &f).unwrap();
    assert!(plan.prep.contains(&Prep::CreateCache(
        "/home/u/.local/share/agentbox/cache/cargo".into()
    )));
    assert!(plan.notes.iter().any(|n| n == "toolchain x not shown"));
    assert!(script(&plan).contains("mkdir -p -m 700 -- /home/u/.local/share/agentbox/cache/cargo"));
    // The tree says what each is and why.
    let tree = tree::render(&plan, false);
    assert!(
        tree.lines()
            .any(|l| l.contains(".rustup") && l.contains("[ro]") && l.contains("rustup")),
        "{tree}"
    );
    assert!(
        tree.lines()
            .any(|l| l.contains("var/cache/agentbox/cargo") && l.contains("[rw]")),
        "{tree}"
    );
    // Without toolchains, none of it.
    let bare = argv(&p, &facts());
    assert!(
        !bare
            .iter()
            .any(|a| a.contains(".rustup") || a.contains("agentbox/cache"))
    );
}

#[test]
fn ssh_agent_filtered_binds_agentboxs_socket_raw_binds_the_users() {
    let mut f = facts();
    f.agent.ssh_agent = Some("/run/user/1000/ssh.sock".into());
    let mut p = policy(&["x"]);
    p.handed = vec![crate::policy::Handed::SshAgent];
    let raw = argv(&p, &f);
    let at = pos(
        &raw,
        &[
            "--bind",
            "/run/user/1000/ssh.sock",
            crate::inside::SSH_AGENT_INSIDE,
        ],
    );
    assert!(at > 0);
    assert!(
        plan(&p, &f)
            .unwrap()
            .warnings
            .iter()
            .any(|w| w.contains("=raw"))
    );
    // Filtered: agentbox's socket in its place, the user's nowhere in the argv.
    let filter = crate::sshagent::KeyFilter {
        names: vec!["SHA256:k".into()],
        confirm: false,
        hosts: vec![],
    };
    f.agent.ssh_proxy = Some(crate::sshagent::Proxy {
        socket: "/run/user/1000/agentbox/ssh-1/agent.sock".into(),
        upstream: "/run/user/1000/ssh.sock".into(),
        filter: filter.clone(),
        askpass: None,
        host_keys: vec![],
    });
    p.ssh_filter = Some(filter);
    let filtered = argv(&p, &f);
    pos(
        &filtered,
        &[
            "--bind",
            "/run/user/1000/agentbox/ssh-1/agent.sock",
            crate::inside::SSH_AGENT_INSIDE,
        ],
    );
    assert!(!filtered.iter().any(|a| a == "/run/user/1000/ssh.sock"));
    let plan = plan(&p, &f).unwrap();
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert!(plan.notes.iter().any(|n| n.contains("SHA256:k")));
}

#[test]
fn gpu_adds_its_nodes_and_sysfs_and_nothing_else() {
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    crate::host::gpu::tests::fake_tree(&root);
    let p = policy(&["x"]);
    let without = argv(&p, &facts());
    let mut f = facts();
    f.agent.gpu = Some(crate::host::gpu::probe_in(&root));
    let with = argv(&p, &f);
    // The GPU's steps, in order, right after the minimal /dev and before it is made read-only.
    let at = pos(&with, &["--dev", "/dev"]) + 2;
    let mut added: Vec<&str> = Vec::new();
    for n in [
        "/dev/nvidia-caps",
        "/dev/nvidia-uvm",
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "/dev/dri",
        "/dev/kfd",
    ] {
        added.extend(["--dev-bind", n, n]);
    }
    for s in [
        "/sys/class/drm",
        "/sys/class/kfd",
        "/sys/dev/char",
        "/sys/devices/pci0000:00/0000:00:02.0",
        "/sys/devices/virtual/kfd",
    ] {
        added.extend(["--ro-bind", s, s]);
    }
    assert_eq!(with[at..at + added.len()], added[..]);
    assert!(pos(&with, &["--remount-ro", "/dev"]) > at);
    // Nothing else changed: not /dev/sda, not all of /sys.
    let mut rest = with.clone();
    rest.drain(at..at + added.len());
    assert_eq!(rest, without);
    assert!(
        !with
            .iter()
            .any(|a| a == "/dev/sda" || a == "/sys" || a == "/sys/devices")
    );
    let plan = plan(&p, &f).unwrap();
    assert!(
        plan.notes.iter().any(|n| n.starts_with("--gpu:")),
        "{:?}",
        plan.notes
    );
}
