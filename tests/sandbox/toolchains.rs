//! Toolchains in the home and agentbox's package caches (issue 12, sections 1 and 2): real
//! builds and tests inside with no flags, caches that persist between runs and profiles, the
//! host's own caches and credentials out of reach, and toolchains the sandbox could have
//! written not trusted.
//!
//! Real toolchains: the rustup toolchain of the user running the tests (root's on the test
//! machines: not readable by the unprivileged user, so the Rust scenario runs as that user
//! only), pyenv's own code, and node, npm, python3 and go from the distribution. Managers that
//! cannot be installed here (nvm) are laid out in the scenario's temporary home in their own
//! directory shape, around the distribution's binaries: that is what agentbox looks at.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Out, PATH, World, current_uid, each_user};

/// `agentbox ARGS` as the scenario's user with `vars` added to its environment.
fn run(w: &World, vars: &[(&str, &OsStr)], args: &[&str]) -> Out {
    let mut c = w.cmd(&args.iter().map(OsStr::new).collect::<Vec<_>>());
    for (k, v) in vars {
        c.env(k, v);
    }
    Out(c.output().unwrap())
}

/// `agentbox run FLAGS -- sh -c SCRIPT` with `path` as PATH.
fn sh(w: &World, path: &str, flags: &[&str], script: &str) -> Out {
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.extend(["--", "sh", "-c", script]);
    run(w, &[("PATH", OsStr::new(path))], &args)
}

fn exe(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn caches(w: &World) -> PathBuf {
    w.home.join(".local/share/agentbox/cache")
}

/// The test process's own rustup toolchain and cargo proxies (the user's real ones).
fn real_rust() -> Option<(PathBuf, PathBuf)> {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap());
    let var = |v: &str, d: &str| std::env::var_os(v).map_or(home.join(d), PathBuf::from);
    let (rustup, cargo) = (var("RUSTUP_HOME", ".rustup"), var("CARGO_HOME", ".cargo"));
    if rustup.join("toolchains").is_dir() && cargo.join("bin/cargo").exists() {
        return Some((rustup, cargo));
    }
    // A distribution's cargo (in /usr/bin): the build is still proven, the home part not.
    assert!(
        Path::new("/usr/bin/cargo").exists(),
        "no rustup toolchain at {} and no /usr/bin/cargo: the Rust scenario needs the \
         toolchain the tests are built with",
        rustup.display()
    );
    eprintln!(
        "note: no rustup toolchain at {}: cargo test runs with the system's cargo, and the \
         home's toolchain is not exercised",
        rustup.display()
    );
    None
}

#[test]
fn cargo_test_runs_with_the_homes_rustup_and_no_flags() {
    // As the current user only: the toolchain is the test runner's own (root's /root is not
    // readable by the unprivileged user, and a second toolchain cannot be downloaded here).
    let w = World::new(None);
    let rust = real_rust();
    // The toolchain in the scenario's home, where rustup's installer puts it.
    fs::create_dir_all(w.home.join(".cargo")).unwrap();
    if let Some((rustup, cargo)) = &rust {
        symlink(rustup, w.home.join(".rustup")).unwrap();
        symlink(cargo.join("bin"), w.home.join(".cargo/bin")).unwrap();
    }
    w.write(
        "home/src/project/Cargo.toml",
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    w.write(
        "home/src/project/src/lib.rs",
        "pub fn add(a: u32, b: u32) -> u32 { a + b }\n\
         #[test]\nfn adds() { assert_eq!(add(2, 2), 4); }\n",
    );
    let path = format!("{}:{PATH}", w.home.join(".cargo/bin").display());
    let out = run(
        &w,
        &[("PATH", OsStr::new(&path))],
        &["run", "--", "cargo", "test"],
    );
    let text = format!("{}{}", out.stdout(), out.stderr());
    assert_eq!(out.code(), 0, "{text}");
    assert!(text.contains("test adds ... ok"), "{text}");
    // cargo's home inside is agentbox's cache: it wrote there, not in ~/.cargo.
    assert!(caches(&w).join("cargo").is_dir());
    assert!(!w.home.join(".cargo/registry").exists());
    // Control: without the toolchains, the proxies are not there to run.
    if rust.is_some() {
        let out = run(
            &w,
            &[("PATH", OsStr::new(&path))],
            &["run", "--no-toolchains", "--", "cargo", "test"],
        );
        assert_ne!(out.code(), 0, "{}", out.stdout());
    }
}

/// pyenv in the scenario's home, with one version that is the distribution's python3: the
/// layout pyenv's shims exec through. pyenv's real code where the test runner has it (the
/// test machines do); elsewhere (no package for it) its shape, laid out by hand: a shim that
/// execs `libexec/pyenv exec`, which runs the selected version's binary.
fn lay_out_pyenv(w: &World) -> PathBuf {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap());
    let real = std::env::var_os("PYENV_ROOT").map_or(home.join(".pyenv"), PathBuf::from);
    let root = w.home.join(".pyenv");
    fs::create_dir_all(&root).unwrap();
    if real.join("libexec/pyenv").is_file() {
        let st = Command::new("cp")
            .arg("-a")
            .args(["bin", "libexec", "pyenv.d"].map(|d| real.join(d)))
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success());
    } else {
        eprintln!(
            "note: no pyenv at {}: its layout is laid out by hand",
            real.display()
        );
        exe(
            &root.join("libexec/pyenv"),
            "#!/bin/sh
v=$(cat \"$PYENV_ROOT/version\")
case $1 in
             version-name) echo \"$v\" ;;
             exec) shift; p=$1; shift; exec \"$PYENV_ROOT/versions/$v/bin/$p\" \"$@\" ;;
esac
",
        );
        fs::create_dir_all(root.join("bin")).unwrap();
        symlink("../libexec/pyenv", root.join("bin/pyenv")).unwrap();
        let shim = format!(
            "#!/bin/sh
export PYENV_ROOT=\"{}\"
exec \"$PYENV_ROOT/libexec/pyenv\" exec python3 \"$@\"
",
            root.display()
        );
        exe(&root.join("shims/python3"), &shim);
    }
    fs::create_dir_all(root.join("versions/3.99/bin")).unwrap();
    symlink("/usr/bin/python3", root.join("versions/3.99/bin/python3")).unwrap();
    fs::write(root.join("version"), "3.99\n").unwrap();
    // A pip.conf with an index password: pip reads it from the version's prefix.
    w.write(
        "home/.pyenv/versions/3.99/pip.conf",
        "[global]\nindex-url = https://u:PIP-SECRET@index.example/simple\n",
    );
    if !root.join("shims/python3").exists() {
        let st = Command::new(root.join("bin/pyenv"))
            .arg("rehash")
            .env("PYENV_ROOT", &root)
            .status()
            .unwrap();
        assert!(st.success());
    }
    w.chown_all();
    root
}

#[test]
fn python_tests_run_through_a_pyenv_shim() {
    each_user(|w| {
        let root = lay_out_pyenv(w);
        w.write(
            "home/src/project/test_tiny.py",
            "import unittest\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        \
             self.assertEqual(1 + 1, 2)\n",
        );
        let path = format!("{}:{PATH}", root.join("shims").display());
        let script = "command -v python3; pyenv version-name; python3 -m unittest 2>&1; \
                      cat ~/.pyenv/versions/3.99/pip.conf 2>&1; true";
        let out = sh(w, &path, &[], script).ok();
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some(root.join("shims/python3").to_str().unwrap())
        );
        assert_eq!(lines.next(), Some("3.99"), "{out}");
        assert!(out.contains("Ran 1 test") && out.contains("\nOK"), "{out}");
        // The index password stays outside; on the host the file has it.
        assert!(!out.contains("PIP-SECRET"), "{out}");
        assert!(
            w.host_sh("cat ~/.pyenv/versions/3.99/pip.conf")
                .ok()
                .contains("PIP-SECRET")
        );
        // Read-only: the shims cannot be replaced from inside.
        let out = sh(
            w,
            &path,
            &[],
            "echo x > ~/.pyenv/shims/python3 && echo wrote; true",
        );
        assert!(!out.ok().contains("wrote"));
        // Control: without the toolchains the shim directory is not there.
        let out = sh(w, &path, &["--no-toolchains"], "command -v python3").ok();
        assert_eq!(out.trim(), "/usr/bin/python3");
    });
    // As root on the test machines, root's own pyenv named by PYENV_ROOT (outside the home):
    // its shims run the version it selects.
    if current_uid() == 0 && Path::new("/root/.pyenv/shims/python3").exists() {
        let w = World::new(None);
        let path = format!("/root/.pyenv/shims:{PATH}");
        let out = run(
            &w,
            &[
                ("PATH", OsStr::new(&path)),
                ("PYENV_ROOT", OsStr::new("/root/.pyenv")),
            ],
            &[
                "run",
                "--",
                "python3",
                "-c",
                "import sys; print(sys.prefix)",
            ],
        );
        assert!(
            out.ok().starts_with("/root/.pyenv/versions/"),
            "{}",
            out.stdout()
        );
    }
}

#[test]
fn npm_test_runs_with_an_nvm_node_and_its_token_stays_outside() {
    each_user(|w| {
        // nvm's shape, around the distribution's node.
        let bin = w.home.join(".nvm/versions/node/v20.0.0/bin");
        fs::create_dir_all(&bin).unwrap();
        symlink("/usr/bin/node", bin.join("node")).unwrap();
        w.write(
            "home/.nvm/versions/node/v20.0.0/etc/npmrc",
            "//registry.example/:_authToken=NVM-NPM-SECRET\n",
        );
        w.write(
            "home/.npmrc",
            "//registry.example/:_authToken=HOME-NPM-SECRET\n",
        );
        w.write(
            "home/src/project/package.json",
            r#"{"name":"tiny","version":"1.0.0","scripts":{"test":"node test.js"}}"#,
        );
        w.write(
            "home/src/project/test.js",
            "require('assert').strictEqual(1 + 1, 2); console.log('tiny ok ' + process.execPath)\n",
        );
        let path = format!("{}:{PATH}", bin.display());
        let out = run(
            w,
            &[("PATH", OsStr::new(&path))],
            &["run", "--", "npm", "test"],
        );
        let text = out.ok();
        assert!(text.contains("tiny ok"), "{text}");
        // npm wrote its logs in agentbox's npm cache.
        assert!(caches(w).join("npm/_logs").is_dir());
        let script =
            "command -v node; cat ~/.nvm/versions/node/v20.0.0/etc/npmrc ~/.npmrc 2>&1; true";
        let out = sh(w, &path, &[], script).ok();
        assert!(out.starts_with(bin.join("node").to_str().unwrap()), "{out}");
        assert!(!out.contains("NPM-SECRET"), "{out}");
        // Control: both files hold their tokens on the host.
        let host = w
            .host_sh("cat ~/.nvm/versions/node/v20.0.0/etc/npmrc ~/.npmrc")
            .ok();
        assert!(host.contains("NVM-NPM-SECRET") && host.contains("HOME-NPM-SECRET"));
        let out = sh(w, &path, &["--no-toolchains"], "command -v node").ok();
        assert_eq!(out.trim(), "/usr/bin/node");
    });
}

#[test]
fn go_test_runs_and_its_build_cache_persists() {
    each_user(|w| {
        w.write(
            "home/src/project/go.mod",
            "module example.com/tiny\n\ngo 1.19\n",
        );
        w.write(
            "home/src/project/tiny.go",
            "package tiny\n\nfunc Add(a, b int) int { return a + b }\n",
        );
        w.write(
            "home/src/project/tiny_test.go",
            "package tiny\n\nimport \"testing\"\n\n\
             func TestAdd(t *testing.T) {\n\tif Add(2, 2) != 4 {\n\t\tt.Fatal(\"no\")\n\t}\n}\n",
        );
        let go = |flags: &[&str]| {
            let mut args = vec!["run"];
            args.extend_from_slice(flags);
            args.extend(["--", "go", "test", "./..."]);
            run(w, &[], &args).ok()
        };
        let first = go(&[]);
        assert!(first.starts_with("ok "), "{first}");
        // Run 2 finds run 1's result in agentbox's Go cache.
        assert!(go(&[]).contains("(cached)"));
        assert!(caches(w).join("go/build").is_dir());
        // Control: without agentbox's cache, each run starts from an empty one.
        assert!(!go(&["--no-toolchains"]).contains("(cached)"));
        assert!(!go(&["--no-toolchains"]).contains("(cached)"));
        // What `go install` makes in run 1 runs in run 2 (found at the end of PATH).
        w.write(
            "home/src/project/cmd/hello/main.go",
            "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from go install\") }\n",
        );
        w.sh(&[], "go install ./cmd/hello").ok();
        assert_eq!(w.sh(&[], "hello").ok(), "hello from go install\n");
        assert!(caches(w).join("go/bin/hello").is_file());
    });
}

#[test]
fn caches_persist_across_runs_and_profiles_and_cache_clean_removes_them() {
    each_user(|w| {
        let out = w
            .sh(
                &[],
                "echo from-run-1 > \"$npm_config_cache/marker\" && echo \"$GOMODCACHE\"",
            )
            .ok();
        assert_eq!(out.trim(), "/var/cache/agentbox/go/mod");
        let marker = caches(w).join("npm/marker");
        assert_eq!(fs::read_to_string(&marker).unwrap(), "from-run-1\n");
        // Run 2, with an agent profile and its own home: the same cache.
        let out = w
            .sh(
                &["--profile", "claude", "--net", "none"],
                "cat \"$npm_config_cache/marker\"",
            )
            .ok();
        assert_eq!(out, "from-run-1\n");
        let listed = w.run_args(&[OsStr::new("cache")]).ok();
        assert!(listed.contains("npm") && listed.contains("go"), "{listed}");
        let out = w.run_args(&["cache", "clean", "npm"].map(OsStr::new)).ok();
        assert!(out.starts_with("removed npm cache"), "{out}");
        assert!(!marker.exists() && caches(w).join("go").exists());
        let out = w.run_args(&["cache", "clean"].map(OsStr::new)).ok();
        assert!(out.contains("removed go cache"), "{out}");
        assert!(!caches(w).join("go").exists());
        let out = w.run_args(&["cache", "clean", "nope"].map(OsStr::new));
        assert_eq!(out.code(), 125);
    });
}

#[test]
fn the_hosts_caches_and_credentials_stay_out_of_reach() {
    each_user(|w| {
        // The host's cargo home: proxies, a config, a credential, an extracted crate the
        // host's next build compiles.
        exe(
            &w.home.join(".cargo/bin/tool"),
            "#!/bin/sh\necho tool ran\n",
        );
        w.write(
            "home/.cargo/credentials.toml",
            "[registry]\ntoken = \"CARGO-SECRET\"\n",
        );
        w.write("home/.cargo/config.toml", "[net]\nretry = 7\n");
        let src = "home/.cargo/registry/src/index-0/foo-1.0.0/src/lib.rs";
        w.write(src, "pub fn foo() {}\n");
        w.write("home/.npm/_cacache/index", "entry\n");
        w.write("home/.pypirc", "[pypi]\npassword = PYPI-SECRET\n");
        let path = format!("{}:{PATH}", w.home.join(".cargo/bin").display());
        let edit = format!("echo 'evil();' >> ~/{}", src.trim_start_matches("home/"));
        let script = format!(
            "tool; cat ~/.cargo/config.toml; cat ~/.cargo/credentials.toml ~/.pypirc 2>&1; \
             {edit} && echo edited; echo x >> ~/.npm/_cacache/index && echo npm-edited; true"
        );
        let out = sh(w, &path, &[], &script).ok();
        assert!(
            out.contains("tool ran") && out.contains("retry = 7"),
            "{out}"
        );
        assert!(!out.contains("SECRET"), "{out}");
        assert!(!out.contains("edited"), "{out}");
        assert_eq!(
            fs::read_to_string(w.base.join(src)).unwrap(),
            "pub fn foo() {}\n"
        );
        // Control: the same edit on the host succeeds, and the secrets are there.
        let host = w
            .host_sh(&format!(
                "cat ~/.cargo/credentials.toml ~/.pypirc; {edit} && echo edited"
            ))
            .ok();
        assert!(host.contains("CARGO-SECRET") && host.contains("PYPI-SECRET"));
        assert!(host.contains("edited"));
        // A config that names a token is not shown either, and a note says so.
        w.write(
            "home/.cargo/config.toml",
            "[registry]\ntoken = \"CFG-SECRET\"\n",
        );
        let out = sh(w, &path, &[], "cat ~/.cargo/config.toml 2>&1; true");
        assert!(!out.ok().contains("CFG-SECRET"));
        assert!(
            out.stderr().contains("config.toml not shown"),
            "{}",
            out.stderr()
        );
    });
}

#[test]
fn a_toolchain_the_sandbox_could_have_written_is_not_trusted() {
    each_user(|w| {
        // The same nvm layout in the home (trusted) and in an agent's home (written by earlier
        // runs of that agent).
        let agent_nvm = w.home.join(".local/share/agentbox/home/claude/.nvm");
        for root in [w.home.join(".nvm"), agent_nvm.clone()] {
            fs::create_dir_all(root.join("versions/node/v1/bin")).unwrap();
            symlink("/usr/bin/node", root.join("versions/node/v1/bin/node")).unwrap();
        }
        w.chown_all();
        let with = |nvm: &Path, args: &[&str]| run(w, &[("NVM_DIR", nvm.as_os_str())], args);
        let tree = |nvm: &Path| with(nvm, &["run", "--dry-run", "--tree", "--", "true"]);
        // A real run prints the notes (the tree shows only what is there).
        let note = |nvm: &Path| with(nvm, &["run", "--", "true"]);
        let out = tree(&w.home.join(".nvm"));
        let text = out.ok();
        assert!(
            text.lines()
                .any(|l| l.contains("versions") && l.contains("toolchain nvm ($NVM_DIR)")),
            "{text}"
        );
        assert!(!note(&w.home.join(".nvm")).stderr().contains("not shown"));
        let text = tree(&agent_nvm).ok();
        assert!(!text.contains("toolchain nvm"), "{text}");
        let out = note(&agent_nvm);
        assert!(
            out.stderr().contains("toolchain nvm") && out.stderr().contains("not shown"),
            "{}",
            out.stderr()
        );
        // Nor one in the project.
        let in_project = w.project.join("nvm");
        fs::create_dir_all(in_project.join("versions")).unwrap();
        w.chown_all();
        let out = note(&in_project);
        assert!(out.stderr().contains("toolchain nvm"), "{}", out.stderr());
        assert!(out.stderr().contains("not shown"), "{}", out.stderr());
    });
}
