//! The scan: what it finds, what it spares, and that it never follows a symlink.

use super::walk::*;
use super::*;
use rustix::io::Errno;
use std::fs;

fn write(root: &Path, rel: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, "x").unwrap();
}

fn rels(root: &Path, found: &[Found]) -> Vec<String> {
    found
        .iter()
        .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

#[test]
fn finds_secrets_at_any_depth_and_spares_templates() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for f in [
        ".env",
        "a/b/c/.env",
        "a/.env.local",
        "a/.env.example",
        ".env.sample",
        "keys/server.pem",
        "keys/server.pub",
        "id_ed25519",
        "id_ed25519.pub",
        "infra/prod.tfvars",
        "src/main.rs",
        "node_modules/pkg/.env",
        "target/CACHEDIR.TAG",
        "target/debug/.env",
        ".ssh/config",
    ] {
        write(root, f);
    }
    let m = Matcher::new(true, &[], &[]).unwrap();
    let r = scan(root, &m).unwrap();
    assert_eq!(
        rels(root, &r.secrets),
        [
            ".env",
            ".ssh",
            "a/.env.local",
            "a/b/c/.env",
            "id_ed25519",
            "infra/prod.tfvars",
            "keys/server.pem",
            // Searched for secrets too: a renamed directory must not hide one.
            "node_modules/pkg/.env",
            "target/debug/.env",
        ]
    );
    assert_eq!(r.secrets[1].kind, Kind::Dir);
}

#[test]
fn hide_and_unhide() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for f in [
        ".env",
        "conf/db.secret",
        "other/db.secret",
        "x.pem",
        "y.pem",
    ] {
        write(root, f);
    }
    let hide = ["conf/*.secret".to_owned()];
    let unhide = ["x.pem".to_owned(), ".env".to_owned()];
    let r = scan(root, &Matcher::new(true, &hide, &unhide).unwrap()).unwrap();
    assert_eq!(rels(root, &r.secrets), ["conf/db.secret", "y.pem"]);
    let r = scan(root, &Matcher::new(false, &hide, &[]).unwrap()).unwrap();
    assert_eq!(rels(root, &r.secrets), ["conf/db.secret"]);
}

#[test]
fn symlinks_are_reported_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("p");
    let outside = t.path().join("outside");
    write(&outside, ".env");
    fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join(".env"), root.join(".env")).unwrap();
    let r = scan(&root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    assert_eq!(rels(&root, &r.secrets), [".env"]);
    assert_eq!(r.secrets[0].kind, Kind::Symlink);
}

#[test]
fn finds_runs_later_and_git() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for f in [
        ".git/config",
        ".envrc",
        "sub/.vscode/tasks.json",
        ".claude/commands/x.md",
        ".claude/notes.md",
        "deep/er/.mcp.json",
        "sub/.git",
    ] {
        write(root, f);
    }
    let r = scan(root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    assert_eq!(
        rels(root, &r.runs_later),
        [
            ".claude/commands",
            ".envrc",
            "deep/er/.mcp.json",
            "sub/.vscode"
        ]
    );
    assert_eq!(rels(root, &r.git), [".git", "sub/.git"]);
    assert_eq!(r.git[1].kind, Kind::File);
}

#[test]
fn the_built_in_list_needs_no_regex() {
    for p in rules::SECRET_PATTERNS {
        assert!(
            Literal::of(p.glob).is_some(),
            "{} would need a compiled glob",
            p.glob
        );
    }
    assert_eq!(Literal::of("*.pem"), Some(Literal::Suffix(".pem")));
    assert_eq!(Literal::of(".env.*"), Some(Literal::Prefix(".env.")));
    assert_eq!(Literal::of("a*b*c"), None);
    // A bare suffix or prefix is not a match by itself.
    assert!(!Literal::Suffix(".pem").matches(b".pem", None));
    assert!(!Literal::Prefix(".env.").matches(b".env.", None));
    assert_eq!(
        Literal::of(".kube/config"),
        Some(Literal::InDir(".kube", "config"))
    );
    assert_eq!(Literal::of("a*b"), Some(Literal::Around("a", "b")));
    assert!(Literal::Around("client_secret", ".json").matches(b"client_secret.json", None));
    assert!(Literal::InDir(".kube", "config").matches(b"config", Some(b".KUBE")));
    assert!(!Literal::InDir(".kube", "config").matches(b"config", Some(b"etc")));
}

#[test]
fn large_trees_go_parallel_and_find_the_same() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for i in 0..400 {
        write(root, &format!("d{i}/sub/file.rs"));
    }
    write(root, "d17/sub/.env");
    write(root, "d399/.envrc");
    let r = scan(root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    assert_eq!(rels(root, &r.secrets), ["d17/sub/.env"]);
    assert_eq!(rels(root, &r.runs_later), ["d399/.envrc"]);
}

#[test]
fn the_byte_index_finds_what_the_list_finds() {
    let m = Matcher::new(true, &[], &[]).unwrap();
    assert!(m.index.is_some());
    let mut names: Vec<String> = rules::SECRET_PATTERNS
        .iter()
        .flat_map(|p| {
            let core = p.glob.replace('*', "");
            [
                core.clone(),
                format!("x{core}"),
                format!("{core}x"),
                format!("a.b{core}"),
            ]
        })
        .collect();
    names.extend(
        [
            "",
            "a",
            ".",
            "index.js",
            "id_rsa.pub",
            ".env.local.pem",
            "é.key",
        ]
        .map(String::from),
    );
    let glob = |p: Option<&SecretPattern>| p.map(|p| p.glob);
    for n in &names {
        for parent in [None, Some(&b".kube"[..]), Some(b".DOCKER"), Some(b"gh")] {
            for is_dir in [false, true] {
                let upper = n.to_ascii_uppercase();
                for n in [n.as_bytes(), upper.as_bytes()] {
                    assert_eq!(
                        glob(m.builtin(n, parent, is_dir)),
                        glob(m.builtin_linear(n, parent, is_dir)),
                        "{n:?}"
                    );
                }
            }
        }
    }
    // An empty suffix makes every name a candidate.
    let p = &rules::SECRET_PATTERNS[0];
    let star = [(Literal::Suffix(""), p), (Literal::Exact("a"), p)];
    let index = ByteIndex::new(&star).unwrap();
    assert_eq!(index.last[usize::from(b'z')], 1);
    assert_eq!(index.last[usize::from(b'a')], 0b11);
    assert_eq!(index.last[usize::from(b'A')], 0b11);
}

#[test]
fn no_file_or_name_in_the_tree_turns_a_check_off() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for f in [
        "CACHEDIR.TAG",
        ".envrc",
        "cache/CACHEDIR.TAG",
        "cache/.envrc",
        "cache/.vscode/x",
        "cache/deep/.mcp.json",
        "cache/deep/.env",
        "node_modules/pkg/.envrc",
        "__pycache__/.vscode/x",
        // Git's own directory is the git model's (runs-later files there are found as git
        // sees them); secrets in it are still found.
        "cache/.git/hooks/.envrc",
        "cache/.git/.env",
    ] {
        write(root, f);
    }
    let r = scan(root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    assert_eq!(
        rels(root, &r.runs_later),
        [
            ".envrc",
            "__pycache__/.vscode",
            "cache/.envrc",
            "cache/.vscode",
            "cache/deep/.mcp.json",
        ]
    );
    assert_eq!(rels(root, &r.git), ["cache/.git"]);
    assert_eq!(
        rels(root, &r.secrets),
        ["cache/.git/.env", "cache/deep/.env"]
    );
}

#[test]
fn sockets_are_secrets_unless_unhidden() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    fs::create_dir(root.join("run")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(root.join("run/agent.sock")).unwrap();
    let r = scan(root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    assert_eq!(rels(root, &r.secrets), ["run/agent.sock"]);
    assert_eq!(r.secrets[0].kind, Kind::Other);
    let unhide = ["agent.sock".to_owned()];
    let r = scan(root, &Matcher::new(true, &[], &unhide).unwrap()).unwrap();
    assert!(r.secrets.is_empty());
}

#[test]
fn deep_trees_are_read_to_the_bottom() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    // Each level has a subdirectory still to read while the walk goes down the other one,
    // so every level would stay open.
    let mut deep = String::new();
    for i in 0..300 {
        deep.push_str(&format!("d{i}/"));
        write(root, &format!("{deep}side/x.rs"));
    }
    write(root, &format!("{deep}.env"));
    write(root, &format!("{deep}sub/.envrc"));
    std::os::unix::fs::symlink(root, root.join(format!("{deep}loop"))).unwrap();
    let m = Matcher::new(true, &[], &[]).unwrap();
    let r = scan(root, &m).unwrap();
    assert_eq!(rels(root, &r.secrets), [format!("{deep}.env")]);
    assert_eq!(rels(root, &r.runs_later), [format!("{deep}sub/.envrc")]);
    // Holding none, or only a few, reads the same by path.
    for hold_below in [0, 8] {
        assert_eq!(scan_holding(root, &m, hold_below, &[]), r, "{hold_below}");
    }
}

#[test]
fn large_trees_keep_the_git_rules() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for i in 0..300 {
        write(root, &format!("src/d{i}/m.rs"));
        write(root, &format!("target/d{i}/o.rlib"));
    }
    for f in [
        "target/CACHEDIR.TAG",
        "target/d7/.envrc",
        "target/d8/.git/HEAD",
        "target/d9/key.pem",
        "src/d250/.envrc",
        "src/d251/.git/HEAD",
        "src/d252/.git/hooks/.envrc",
    ] {
        write(root, f);
    }
    let r = scan(root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    assert_eq!(rels(root, &r.secrets), ["target/d9/key.pem"]);
    assert_eq!(
        rels(root, &r.runs_later),
        ["src/d250/.envrc", "target/d7/.envrc"]
    );
    assert_eq!(
        rels(root, &r.git),
        ["src/d251/.git", "src/d252/.git", "target/d8/.git"]
    );
}

#[test]
fn bad_globs_are_refused() {
    for g in ["", "/abs", "a["] {
        assert!(check_glob(g).is_err(), "{g:?}");
    }
    assert!(check_glob("*.x").is_ok());
}

#[test]
fn finds_hook_frameworks_agent_config_and_watched_files() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for f in [
        ".husky/pre-commit",
        ".pre-commit-config.yaml",
        "web/lefthook.yml",
        ".config/lefthook.toml",
        ".devcontainer/devcontainer.json",
        ".gemini/settings.json",
        "opencode.json",
        ".cursor/mcp.json",
        "AGENTS.md",
        "CLAUDE.md",
        ".github/workflows/ci.yml",
        ".github/README.md",
        "src/main.rs",
    ] {
        write(root, f);
    }
    let r = scan(root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    assert_eq!(
        rels(root, &r.runs_later),
        [
            ".config/lefthook.toml",
            ".cursor",
            ".devcontainer",
            ".gemini",
            ".husky",
            ".pre-commit-config.yaml",
            "opencode.json",
            "web/lefthook.yml"
        ]
    );
    // Instruction files and CI workflows stay writable: watched only.
    assert_eq!(
        rels(root, &r.watched),
        [".github/workflows", "AGENTS.md", "CLAUDE.md"]
    );
}

/// Makes `levels` nested directories named `name` under `root` by fd (a path this deep is
/// beyond what a path lookup takes) and writes `file` at the bottom if given.
fn deep_chain(root: &Path, name: &str, levels: usize, file: Option<&str>) {
    use rustix::fs::{Mode, OFlags, mkdirat, openat};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd = openat(rustix::fs::CWD, root, flags, Mode::empty()).unwrap();
    for _ in 0..levels {
        mkdirat(&fd, name, Mode::from_raw_mode(0o755)).unwrap();
        fd = openat(&fd, name, flags, Mode::empty()).unwrap();
    }
    if let Some(f) = file {
        let w = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC;
        let file = openat(&fd, f, w, Mode::from_raw_mode(0o644)).unwrap();
        rustix::io::write(&file, b"SECRET=1").unwrap();
    }
}

#[test]
fn a_tree_deeper_than_path_max_is_read_and_a_secret_there_refuses() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let m = Matcher::new(true, &[], &[]).unwrap();
    // 1100 levels of 5 bytes: 5500 bytes, past PATH_MAX.
    fs::create_dir(root.join("deep")).unwrap();
    deep_chain(&root.join("deep"), "aaaa", 1100, None);
    write(root, "side/.env");
    let r = scan(root, &m).unwrap();
    assert_eq!(rels(root, &r.secrets), ["side/.env"]);
    // The same secret at the bottom: found (with every fd budget), but it cannot be masked
    // at that path, so the scan refuses, naming the directory to hide.
    fs::remove_dir_all(root.join("deep")).unwrap();
    fs::create_dir(root.join("deep")).unwrap();
    deep_chain(&root.join("deep"), "aaaa", 1100, Some(".env"));
    for hold in [0, 8, hold_below()] {
        let r = scan_holding(root, &m, hold, &[]);
        assert_eq!(r.secrets.len(), 2, "{hold}");
        assert_eq!(r.problems.len(), 1, "{hold}");
        assert_eq!(r.problems[0].what, What::TooLong);
    }
    let err = format!("{:#}", scan(root, &m).unwrap_err());
    assert!(err.contains("PATH_MAX"), "{err}");
    let (_, hint) = crate::error::classify(&scan(root, &m).unwrap_err())
        .1
        .map(|h| ((), h.to_owned()))
        .unwrap();
    assert!(hint.contains("--hide deep/"), "{hint}");
    // Hidden whole, the deep part is not descended.
    let hide = ["deep/".to_owned()];
    let r = scan(root, &Matcher::new(true, &hide, &[]).unwrap()).unwrap();
    assert_eq!(rels(root, &r.secrets), ["deep", "side/.env"]);
}

#[test]
fn a_directory_is_reached_only_through_real_directories() {
    let t = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(t.path()).unwrap();
    write(&root, "real/sub/.env");
    std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY;
    let anchor =
        rustix::fs::openat(rustix::fs::CWD, &root, flags, rustix::fs::Mode::empty()).unwrap();
    let job = |rel: &str| Job {
        anchor: Some(std::sync::Arc::new(anchor.try_clone().unwrap())),
        rel: PathBuf::from(rel),
        path: root.join(rel),
        depth: 2,
        secrets_only: false,
        packages: false,
    };
    let mut noatime = true;
    assert!(open_dir(&job("real/sub"), &mut noatime).is_ok());
    // A component swapped for a symlink since it was listed: refused, and the scan says so.
    let err = open_dir(&job("link/sub"), &mut noatime).unwrap_err();
    assert!(matches!(err, Errno::NOTDIR | Errno::LOOP), "{err}");
    let err = open_dir(&job("link"), &mut noatime).unwrap_err();
    assert!(matches!(err, Errno::NOTDIR | Errno::LOOP), "{err}");
}

#[test]
fn what_could_not_be_read_refuses_with_the_fix() {
    let root = Path::new("/p");
    let p = Problem {
        path: root.join("a/locked dir"),
        what: What::Open(rustix::io::Errno::ACCESS),
    };
    let err = refusal(root, &p, 3);
    let (code, hint) = crate::error::classify(&err);
    assert_eq!(code, 125);
    let hint = hint.unwrap();
    assert!(hint.contains("--hide 'a/locked dir/'"), "{hint}");
    assert!(hint.contains("chmod u+rx '/p/a/locked dir'"), "{hint}");
    let msg = err.to_string();
    assert!(
        msg.contains("/p/a/locked dir") && msg.contains("2 more"),
        "{msg}"
    );
    let p = Problem {
        path: root.join("gone"),
        what: What::Changed(rustix::io::Errno::NOENT),
    };
    assert!(refusal(root, &p, 1).to_string().contains("changed while"));
}

#[test]
fn a_hard_link_to_a_secret_is_a_secret() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    write(root, "a/.env");
    write(root, "b/c/notes.txt");
    fs::remove_file(root.join("b/c/notes.txt")).unwrap();
    fs::hard_link(root.join("a/.env"), root.join("b/c/notes.txt")).unwrap();
    // Control: a file with two names that is not a secret stays shown.
    write(root, "src/x.rs");
    fs::hard_link(root.join("src/x.rs"), root.join("src/y.rs")).unwrap();
    let m = Matcher::new(true, &[], &[]).unwrap();
    let r = scan(root, &m).unwrap();
    assert_eq!(rels(root, &r.secrets), ["a/.env", "b/c/notes.txt"]);
    // A file inside a masked directory, linked out of it.
    write(root, ".aws/credentials");
    fs::hard_link(root.join(".aws/credentials"), root.join("aws-notes")).unwrap();
    let r = scan(root, &m).unwrap();
    assert_eq!(
        rels(root, &r.secrets),
        [".aws", "a/.env", "aws-notes", "b/c/notes.txt"]
    );
    fs::remove_file(root.join("aws-notes")).unwrap();
    // Across roots: the link in one root, the secret in another.
    let other = tempfile::tempdir().unwrap();
    fs::hard_link(root.join("a/.env"), other.path().join("copy")).unwrap();
    let rs = scan_roots(&[root, other.path()], &m, &[]).unwrap();
    assert_eq!(rels(other.path(), &rs[1].secrets), ["copy"]);
    // And to a masked system file, by its identity.
    write(root, "shadow-like");
    let st = fs::metadata(root.join("src/x.rs")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let rs = scan_roots(&[root], &m, &[(st.dev(), st.ino())]).unwrap();
    assert_eq!(
        rels(root, &rs[0].secrets),
        [".aws", "a/.env", "b/c/notes.txt", "src/x.rs", "src/y.rs"]
    );
}

#[test]
fn names_as_users_expect_them() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let masked = [
        ".ENV",
        ".Env.local",
        "ID_RSA",
        "keys/id_rsa.bak",
        "keys/deploy_key",
        "keys/github_ed25519",
        "keys/work.ppk",
        "ops/kubeconfig",
        "ops/prod.kubeconfig",
        "ops/.kube/config",
        "ops/.docker/config.json",
        "ops/.vault-token",
        "ops/.cargo/credentials.toml",
        "ops/client_secret_1234.apps.json",
        "ops/service-account-prod.json",
        "ops/config/secrets.yml",
        "ops/.config/gh/hosts.yml",
        "ops/.config/gcloud",
        "ops/.azure",
        "ops/.s3cfg",
        "ops/.boto",
        "ops/.terraformrc",
    ];
    let shown = [
        "keys/id_rsa.pub",
        "keys/deploy_key.pub",
        ".ENV.EXAMPLE",
        "ops/config.json",
        "ops/.config/other/hosts.yml",
        "ops/kube/config",
        "src/crypto_rsa/mod.rs",
    ];
    for f in masked.iter().chain(&shown) {
        write(root, f);
    }
    // gcloud and azure are directories.
    for d in ["ops/.config/gcloud", "ops/.azure"] {
        fs::remove_file(root.join(d)).unwrap();
        write(root, &format!("{d}/credentials.db"));
    }
    let r = scan(root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    let mut want: Vec<String> = masked.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(rels(root, &r.secrets), want);
}

#[test]
fn key_and_certificate_files_are_decided_by_content() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let outside = tempfile::tempdir().unwrap();
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";
    let files = [
        ("venv/lib/certifi/cacert.pem", cert.repeat(100)),
        ("certs/ca.crt", cert.to_owned()),
        ("certs/server.pem", format!("{cert}{key}")),
        ("certs/server.key", key.to_owned()),
        ("certs/api.key", "sk-0123456789".to_owned()),
        (".yarnrc.yml", "nodeLinker: node-modules\n".to_owned()),
        ("sub/.yarnrc.yml", "npmAuthToken: abc\n".to_owned()),
    ];
    for (f, body) in &files {
        let p = root.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
    // Larger than can be checked: masked unread.
    let big = fs::File::create(root.join("certs/huge.pem")).unwrap();
    big.set_len(sniff::MAX_SNIFF + 1).unwrap();
    // A symlink is decided by what it points at (Debian links certifi to the system bundle).
    fs::write(outside.path().join("bundle.crt"), cert).unwrap();
    fs::write(outside.path().join("key.pem"), key).unwrap();
    std::os::unix::fs::symlink(outside.path().join("bundle.crt"), root.join("linked.pem")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("key.pem"), root.join("linked-key.pem"))
        .unwrap();
    let r = scan(root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    assert_eq!(
        rels(root, &r.secrets),
        [
            "certs/api.key",
            "certs/huge.pem",
            "certs/server.key",
            "certs/server.pem",
            "linked-key.pem",
            "sub/.yarnrc.yml",
        ]
    );
}

#[test]
fn a_git_repository_in_installed_packages_is_found_but_their_hook_dirs_are_not() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for f in [
        "node_modules/pkg/.husky/pre-commit",
        "node_modules/pkg/.git/config",
        ".husky/pre-commit",
    ] {
        write(root, f);
    }
    let r = scan(root, &Matcher::new(true, &[], &[]).unwrap()).unwrap();
    assert_eq!(rels(root, &r.runs_later), [".husky"]);
    assert_eq!(rels(root, &r.git), ["node_modules/pkg/.git"]);
}
