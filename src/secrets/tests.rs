//! The scan: what it finds, what it spares, and that it never follows a symlink.

use super::walk::*;
use super::*;
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
            "node_modules/pkg/.envrc",
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
